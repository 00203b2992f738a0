/*
 * worker.c - worker threads: socket, receive batches, CID demultiplexing, packet
 * steering between workers, cross-worker queues and batched transmit (see worker.h).
 */
#include "worker.h"

#include "common.h"
#include "conn.h"
#include "log.h"
#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MOD "worker"

#define CID_BUCKETS           4096
#define RX_BATCHES_PER_WAKEUP 8
#define RESETS_PER_SECOND     100

static _Thread_local struct wzp_worker *current_worker;

struct wzp_worker *wzp_worker_current(void)
{
    return current_worker;
}

/* ---------------------------------------------------------------- CID table */

static size_t cid_hash(const uint8_t *cid, size_t len)
{
    uint64_t h = wzp_fnv1a(cid, len);
    return (size_t)(h ^ (h >> 29));
}

int wzp_worker_cid_add(struct wzp_worker *w, const ngtcp2_cid *cid, struct wzp_conn *c)
{
    struct wzp_cid_entry *e = malloc(sizeof *e);
    if (!e)
        return WZP_ENOMEM;
    size_t b = cid_hash(cid->data, cid->datalen) & (w->cid_nbuckets - 1);
    e->cid = *cid;
    e->conn = c;
    e->next = w->cid_buckets[b];
    w->cid_buckets[b] = e;
    return WZP_OK;
}

void wzp_worker_cid_remove(struct wzp_worker *w, const ngtcp2_cid *cid)
{
    size_t b = cid_hash(cid->data, cid->datalen) & (w->cid_nbuckets - 1);
    for (struct wzp_cid_entry **pp = &w->cid_buckets[b]; *pp; pp = &(*pp)->next) {
        struct wzp_cid_entry *e = *pp;
        if (e->cid.datalen == cid->datalen && memcmp(e->cid.data, cid->data, cid->datalen) == 0) {
            *pp = e->next;
            free(e);
            return;
        }
    }
}

struct wzp_conn *wzp_worker_cid_find(struct wzp_worker *w, const uint8_t *cid, size_t len)
{
    size_t b = cid_hash(cid, len) & (w->cid_nbuckets - 1);
    for (struct wzp_cid_entry *e = w->cid_buckets[b]; e; e = e->next)
        if (e->cid.datalen == len && memcmp(e->cid.data, cid, len) == 0)
            return e->conn;
    return NULL;
}

/* ---------------------------------------------------------------- handles */

int wzp_worker_slot_alloc(struct wzp_worker *w, struct wzp_conn *c, uint32_t *slot, uint32_t *gen)
{
    if (w->free_slot == UINT32_MAX) {
        uint32_t n = w->nslots ? w->nslots * 2 : 256;
        struct wzp_slot *s = realloc(w->slots, n * sizeof *s);
        if (!s)
            return WZP_ENOMEM;
        for (uint32_t i = w->nslots; i < n; i++) {
            s[i].conn = NULL;
            s[i].gen = 0;
            s[i].next_free = i + 1 < n ? i + 1 : UINT32_MAX;
        }
        w->slots = s;
        w->free_slot = w->nslots;
        w->nslots = n;
    }
    uint32_t i = w->free_slot;
    w->free_slot = w->slots[i].next_free;
    w->slots[i].conn = c;
    w->slots[i].gen++;
    if (w->slots[i].gen == 0)
        w->slots[i].gen = 1; /* 0 means "no handle" */
    *slot = i;
    *gen = w->slots[i].gen;
    return WZP_OK;
}

void wzp_worker_slot_free(struct wzp_worker *w, uint32_t slot)
{
    w->slots[slot].conn = NULL;
    w->slots[slot].next_free = w->free_slot;
    w->free_slot = slot;
}

struct wzp_conn *wzp_worker_slot_get(struct wzp_worker *w, uint32_t slot, uint32_t gen)
{
    if (slot >= w->nslots || w->slots[slot].gen != gen)
        return NULL;
    return w->slots[slot].conn;
}

void wzp_worker_mark_dirty(struct wzp_worker *w, struct wzp_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = w->dirty;
    w->dirty = c;
}

/* ---------------------------------------------------------------- transmit */

uint8_t *wzp_worker_tx_buf(struct wzp_worker *w)
{
    if (w->tx_count == WZP_TX_BATCH)
        wzp_worker_tx_flush(w);
    return w->tx_buf[w->tx_count];
}

void wzp_worker_tx_commit(struct wzp_worker *w, size_t len, const struct sockaddr *to,
                          socklen_t tolen)
{
    unsigned i = w->tx_count++;
    memcpy(&w->tx_addr[i], to, tolen);
    w->tx_iov[i].iov_base = w->tx_buf[i];
    w->tx_iov[i].iov_len = len;
    memset(&w->tx_msgs[i], 0, sizeof w->tx_msgs[i]);
    w->tx_msgs[i].msg_hdr.msg_name = &w->tx_addr[i];
    w->tx_msgs[i].msg_hdr.msg_namelen = tolen;
    w->tx_msgs[i].msg_hdr.msg_iov = &w->tx_iov[i];
    w->tx_msgs[i].msg_hdr.msg_iovlen = 1;
}

void wzp_worker_tx_flush(struct wzp_worker *w)
{
    unsigned done = 0;
    while (done < w->tx_count) {
        int n = sendmmsg(w->fd, w->tx_msgs + done, w->tx_count - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* Socket buffer full or a per-destination error: drop this packet (QUIC
             * recovers) and carry on with the rest. */
            WZP_STAT_INC(&w->stats, udp_tx_errors);
            done++;
            continue;
        }
        done += (unsigned)n;
        WZP_STAT_ADD(&w->stats, udp_tx_packets, (unsigned)n);
    }
    w->tx_count = 0;
}

/* ---------------------------------------------------------------- cross-worker */

static struct wzp_spsc *ring_to(struct wzp_worker *self, unsigned dst)
{
    return &self->relay->workers[dst]->inq[self->idx];
}

/* Copy a message into our ring to worker dst; false (nothing queued) when it is full. */
static bool ring_push(struct wzp_worker *self, unsigned dst, uint16_t type, uint32_t slot,
                      uint32_t gen, const uint8_t *data, size_t len, const struct sockaddr *from,
                      socklen_t fromlen)
{
    struct wzp_spsc *q = ring_to(self, dst);
    struct wzp_xmsg *m = wzp_spsc_push_begin(q);
    if (!m)
        return false;
    m->type = type;
    m->slot = slot;
    m->gen = gen;
    m->len = (uint16_t)len;
    if (from)
        memcpy(&m->addr, from, fromlen);
    m->addrlen = fromlen;
    memcpy(m->data, data, len);
    wzp_spsc_push_commit(q);
    self->wake_pending |= 1ull << dst;
    return true;
}

void wzp_worker_forward_datagram(struct wzp_worker *self, unsigned dst, uint32_t slot, uint32_t gen,
                                 const uint8_t *data, size_t len)
{
    if (!ring_push(self, dst, WZP_XMSG_DATAGRAM, slot, gen, data, len, NULL, 0))
        WZP_STAT_INC(&self->stats, datagrams_queue_drops);
}

static void steer_packet(struct wzp_worker *self, unsigned dst, const uint8_t *data, size_t len,
                         const struct sockaddr *from, socklen_t fromlen)
{
    if (ring_push(self, dst, WZP_XMSG_PACKET, 0, 0, data, len, from, fromlen))
        WZP_STAT_INC(&self->stats, packets_steered_out);
    else
        WZP_STAT_INC(&self->stats, steer_queue_full);
}

int wzp_worker_send_ctl(struct wzp_worker *self, unsigned dst, uint16_t type, uint32_t slot,
                        uint32_t gen, const void *data, size_t len)
{
    int rv = wzp_ctlq_push(&self->relay->workers[dst]->ctl, type, slot, gen, data, len);
    if (rv == WZP_OK)
        self->wake_pending |= 1ull << dst;
    return rv;
}

void wzp_worker_kick_peers(struct wzp_worker *w)
{
    uint64_t m = w->wake_pending;
    w->wake_pending = 0;
    while (m) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        m &= m - 1;
        ev_async_send(w->relay->workers[i]->loop, &w->relay->workers[i]->wake);
    }
}

/* ---------------------------------------------------------------- receive */

static void send_version_negotiation(struct wzp_worker *w, const ngtcp2_version_cid *vc,
                                     const struct sockaddr *from, socklen_t fromlen)
{
    static const uint32_t versions[] = {NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2_DRAFT};
    uint8_t *buf = wzp_worker_tx_buf(w);
    uint8_t unused;
    gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
        buf, WZP_TX_PACKET_BYTES, unused, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, versions,
        WZP_ARRAY_LEN(versions));
    if (n > 0) {
        wzp_worker_tx_commit(w, (size_t)n, from, fromlen);
        WZP_STAT_INC(&w->stats, version_negotiations);
    }
}

static bool reset_allowed(struct wzp_worker *w)
{
    uint64_t now = wzp_now_ns();
    if (now - w->reset_window_start_ns > 1000000000ull) {
        w->reset_window_start_ns = now;
        w->resets_in_window = 0;
    }
    return w->resets_in_window++ < RESETS_PER_SECOND;
}

/* A short-header packet for a connection we do not know: answer with a Stateless Reset
 * (smaller than the trigger, so two relays can never loop). */
static void send_stateless_reset(struct wzp_worker *w, const ngtcp2_version_cid *vc, size_t len,
                                 const struct sockaddr *from, socklen_t fromlen)
{
    const size_t min_reset =
        1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN;
    if (len <= min_reset || !reset_allowed(w))
        return;
    ngtcp2_cid cid;
    ngtcp2_cid_init(&cid, vc->dcid, vc->dcidlen);
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (ngtcp2_crypto_generate_stateless_reset_token(token, w->relay->reset_secret,
                                                     sizeof w->relay->reset_secret, &cid))
        return;
    size_t randlen = WZP_MIN(len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN, (size_t)43) - 1;
    uint8_t rnd[64];
    gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
    uint8_t *buf = wzp_worker_tx_buf(w);
    ngtcp2_ssize n =
        ngtcp2_pkt_write_stateless_reset(buf, WZP_TX_PACKET_BYTES, token, rnd, randlen);
    if (n > 0) {
        wzp_worker_tx_commit(w, (size_t)n, from, fromlen);
        WZP_STAT_INC(&w->stats, stateless_resets);
    }
}

static bool is_initial(const uint8_t *data, uint32_t version)
{
    /* Long header packet type bits: Initial is 0 in v1 and 1 in v2. */
    unsigned type = (data[0] >> 4) & 3;
    return version == NGTCP2_PROTO_VER_V2_DRAFT ? type == 1 : type == 0;
}

static void handle_packet(struct wzp_worker *w, const uint8_t *data, size_t len,
                          const struct sockaddr *from, socklen_t fromlen)
{
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, WZP_SCID_LEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        send_version_negotiation(w, &vc, from, fromlen);
        return;
    }
    if (rv != 0) {
        WZP_STAT_INC(&w->stats, packets_undecodable);
        return;
    }
    struct wzp_conn *c = wzp_worker_cid_find(w, vc.dcid, vc.dcidlen);
    if (c) {
        wzp_conn_input(c, data, len, from, fromlen);
        return;
    }
    bool long_hdr = data[0] & 0x80;
    bool ours = vc.dcidlen == WZP_SCID_LEN && vc.dcid[0] < w->relay->nworkers;
    if (ours && vc.dcid[0] != w->idx && !(long_hdr && is_initial(data, vc.version))) {
        /* A connection of another worker, reached us after a NAT rebinding. */
        steer_packet(w, vc.dcid[0], data, len, from, fromlen);
        return;
    }
    if (!long_hdr) {
        send_stateless_reset(w, &vc, len, from, fromlen);
        return;
    }
    c = wzp_conn_accept(w, data, len, from, fromlen);
    if (c)
        wzp_conn_input(c, data, len, from, fromlen);
}

static void rx_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = io->data;
    static _Thread_local uint8_t bufs[WZP_RX_BATCH][2048];
    static _Thread_local struct sockaddr_storage addrs[WZP_RX_BATCH];
    struct mmsghdr msgs[WZP_RX_BATCH];
    struct iovec iov[WZP_RX_BATCH];
    for (int round = 0; round < RX_BATCHES_PER_WAKEUP; round++) {
        for (unsigned i = 0; i < WZP_RX_BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = sizeof bufs[i];
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(w->fd, msgs, WZP_RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        WZP_STAT_ADD(&w->stats, udp_rx_packets, (unsigned)n);
        for (int i = 0; i < n; i++) {
            size_t len = msgs[i].msg_len;
            if (len == 0 || len > WZP_MAX_UDP_PAYLOAD || (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                WZP_STAT_INC(&w->stats, packets_undecodable);
                continue;
            }
            handle_packet(w, bufs[i], len, (struct sockaddr *)&addrs[i],
                          msgs[i].msg_hdr.msg_namelen);
        }
        if (n < WZP_RX_BATCH)
            return;
    }
}

/* ---------------------------------------------------------------- queues in */

static void drain_rings(struct wzp_worker *w)
{
    for (unsigned src = 0; src < w->relay->nworkers; src++) {
        if (src == w->idx)
            continue;
        struct wzp_spsc *q = &w->inq[src];
        struct wzp_xmsg *m;
        while ((m = wzp_spsc_peek(q))) {
            if (m->type == WZP_XMSG_DATAGRAM) {
                struct wzp_conn *c = wzp_worker_slot_get(w, m->slot, m->gen);
                if (c && c->state == WZP_CONN_JOINED)
                    wzp_conn_queue_datagram(c, m->data, m->len);
            } else {
                WZP_STAT_INC(&w->stats, packets_steered_in);
                handle_packet(w, m->data, m->len, (struct sockaddr *)&m->addr, m->addrlen);
            }
            wzp_spsc_pop_commit(q);
        }
    }
}

static void drain_ctl(struct wzp_worker *w)
{
    struct wzp_ctlmsg *m = wzp_ctlq_take_all(&w->ctl);
    while (m) {
        struct wzp_ctlmsg *next = m->next;
        struct wzp_conn *c = wzp_worker_slot_get(w, m->slot, m->gen);
        if (c && m->type == WZP_CTL_SIGNAL)
            wzp_conn_queue_signal(c, m->data, m->len);
        else if (c && (m->type == WZP_CTL_CLOSE || m->type == WZP_CTL_KICK)) {
            if (m->type == WZP_CTL_KICK)
                c->close_cause = "kicked";
            wzp_conn_close(c, (const char *)m->data);
        }
        free(m);
        m = next;
    }
}

static void worker_shutdown(struct wzp_worker *w)
{
    if (w->stopped)
        return;
    w->stopped = true;
    ev_io_stop(w->loop, &w->rx);
    ev_timer_stop(w->loop, &w->policy_timer);
    struct wzp_conn *c = w->conns;
    while (c) {
        struct wzp_conn *next = c->next;
        if (c->state != WZP_CONN_CLOSING && c->state != WZP_CONN_DRAINING) {
            c->close_cause = "shutdown";
            wzp_conn_close(c, "shutdown");
        }
        c = next;
    }
    wzp_worker_tx_flush(w);
    while (w->conns)
        wzp_conn_destroy(w->conns);
    ev_break(w->loop, EVBREAK_ALL);
}

void wzp_worker_offer_policy(struct wzp_worker *w, struct wzp_policy *p)
{
    struct wzp_policy *older = atomic_exchange(&w->policy_pending, p);
    wzp_policy_free(older); /* never switched in: no worker used it */
    ev_async_send(w->loop, &w->wake);
}

/* Worker 0 runs the policy's timers (wzp.every); the timer fires at the next due one. */
static void arm_policy_timer(struct wzp_worker *w, uint64_t next_ms)
{
    ev_timer_stop(w->loop, &w->policy_timer);
    if (w->idx != 0 || next_ms == UINT64_MAX)
        return;
    uint64_t now = wzp_now_ns() / 1000000;
    ev_timer_set(&w->policy_timer, next_ms > now ? (double)(next_ms - now) / 1e3 : 0., 0.);
    ev_timer_start(w->loop, &w->policy_timer);
}

static void policy_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = t->data;
    if (w->policy)
        arm_policy_timer(w, wzp_policy_run_timers(w->policy, wzp_now_ns() / 1000000));
}

/* At a loop boundary: no hook of the old policy is running. */
static void switch_policy(struct wzp_worker *w)
{
    struct wzp_policy *p = atomic_exchange(&w->policy_pending, NULL);
    if (!p)
        return;
    wzp_policy_free(w->policy);
    wzp_policy_count_into(p, &w->policy_stats);
    w->policy = p;
    arm_policy_timer(w, wzp_policy_run_timers(p, 0)); /* now = 0: nothing due yet */
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = a->data;
    if (atomic_load(&w->stop_requested)) {
        worker_shutdown(w);
        return;
    }
    switch_policy(w);
    drain_rings(w);
    drain_ctl(w);
}

/* Before the loop blocks: write every dirty connection once, send, wake peers. */
static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = p->data;
    while (w->dirty) {
        struct wzp_conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        wzp_conn_flush(c);
    }
    wzp_worker_tx_flush(w);
    wzp_worker_kick_peers(w);
}

/* ---------------------------------------------------------------- setup */

/*
 * SO_REUSEPORT lets every worker bind the same port, but it would also let a second relay
 * (same user) join the group and silently take half the clients. A socket bound without
 * SO_REUSEPORT fails if anyone holds the port, so worker 0 binds one first, briefly.
 */
static int check_port_free(const struct wzp_config *cfg, char *err, size_t errlen)
{
    int fd = socket(cfg->listen_addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return WZP_EIO;
    }
    int rv = bind(fd, (const struct sockaddr *)&cfg->listen_addr, cfg->listen_addrlen);
    int e = errno;
    close(fd);
    if (rv != 0) {
        snprintf(err, errlen,
                 "cannot bind UDP %s: %s (is another relay running on this port? "
                 "use --listen to pick another)",
                 cfg->listen, strerror(e));
        return WZP_EIO;
    }
    return WZP_OK;
}

static int open_socket(struct wzp_worker *w, char *err, size_t errlen)
{
    const struct wzp_config *cfg = &w->relay->cfg;
    int fam = cfg->listen_addr.ss_family;
    int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return WZP_EIO;
    }
    int one = 1, zero = 0, bufsize = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
    if (bind(fd, (const struct sockaddr *)&cfg->listen_addr, cfg->listen_addrlen) != 0) {
        snprintf(err, errlen,
                 "cannot bind UDP %s: %s (is another relay running on this port? "
                 "use --listen to pick another)",
                 cfg->listen, strerror(errno));
        close(fd);
        return WZP_EIO;
    }
    w->fd = fd;
    return WZP_OK;
}

static size_t ring_slots(unsigned nworkers)
{
    size_t per_peer = nworkers > 1 ? 2048 / (nworkers - 1) : 0;
    size_t slots = 128;
    while (slots * 2 <= per_peer)
        slots *= 2;
    return slots;
}

int wzp_worker_init(struct wzp_worker *w, struct wzp_relay *r, unsigned idx, char *err,
                    size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->relay = r;
    w->idx = idx;
    w->fd = -1;
    w->free_slot = UINT32_MAX;
    w->cid_nbuckets = CID_BUCKETS;
    w->cid_buckets = calloc(CID_BUCKETS, sizeof *w->cid_buckets);
    w->inq = calloc(r->nworkers, sizeof *w->inq);
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!w->cid_buckets || !w->inq || !w->loop) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    for (unsigned i = 0; i < r->nworkers; i++)
        if (i != idx && wzp_spsc_init(&w->inq[i], ring_slots(r->nworkers))) {
            snprintf(err, errlen, "out of memory");
            return WZP_ENOMEM;
        }
    wzp_ctlq_init(&w->ctl, WZP_CTLQ_LIMIT);
    int rv = idx == 0 ? check_port_free(&r->cfg, err, errlen) : WZP_OK;
    if (rv == WZP_OK)
        rv = open_socket(w, err, errlen);
    if (rv)
        return rv;
    ev_io_init(&w->rx, rx_cb, w->fd, EV_READ);
    w->rx.data = w;
    ev_io_start(w->loop, &w->rx);
    ev_async_init(&w->wake, wake_cb);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_timer_init(&w->policy_timer, policy_timer_cb, 0., 0.);
    w->policy_timer.data = w;
    ev_prepare_init(&w->flush_prep, flush_cb);
    w->flush_prep.data = w;
    ev_prepare_start(w->loop, &w->flush_prep);
    return WZP_OK;
}

static void *worker_main(void *arg)
{
    struct wzp_worker *w = arg;
    current_worker = w;
    switch_policy(w);
    ev_run(w->loop, 0);
    return NULL;
}

int wzp_worker_start(struct wzp_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? WZP_OK : WZP_EIO;
}

void wzp_worker_request_stop(struct wzp_worker *w)
{
    atomic_store(&w->stop_requested, true);
    ev_async_send(w->loop, &w->wake);
}

void wzp_worker_free(struct wzp_worker *w)
{
    while (w->conns)
        wzp_conn_destroy(w->conns);
    for (size_t i = 0; i < w->cid_nbuckets && w->cid_buckets; i++) {
        struct wzp_cid_entry *e = w->cid_buckets[i];
        while (e) {
            struct wzp_cid_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(w->cid_buckets);
    if (w->inq)
        for (unsigned i = 0; i < w->relay->nworkers; i++)
            wzp_spsc_destroy(&w->inq[i]);
    free(w->inq);
    wzp_ctlq_destroy(&w->ctl);
    wzp_policy_free(atomic_exchange(&w->policy_pending, NULL));
    wzp_policy_free(w->policy);
    free(w->slots);
    if (w->loop)
        ev_loop_destroy(w->loop);
    if (w->fd >= 0)
        close(w->fd);
}
