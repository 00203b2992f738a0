/*
 * worker.c - worker threads: socket, receive batches, CID demultiplexing, packet
 * steering between workers, cross-worker queues and batched transmit (see worker.h).
 */
#include "worker.h"

#include "affinity.h"
#include "common.h"
#include "auth.h"
#include "conn.h"
#include "dcall.h"
#include "initial.h"
#include "log.h"
#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stddef.h>
#include <string.h>
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, since Linux 5.0 */
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define MOD "worker"

#define CID_SLOTS             4096 /* initial (128 KiB); doubles at half full */
#define RX_BATCHES_PER_WAKEUP 8
#define REPLIES_PER_SECOND    100 /* Version Negotiations, and Stateless Resets, each */
#define HANDOVER_TTL_NS       (2ull * WZP_HANDSHAKE_TIMEOUT_MS * 1000000)
#define MIN_INITIAL_BYTES     1200 /* RFC 9000 14.1: smaller client Initials are dropped */

static _Thread_local struct wzp_worker *current_worker;

struct wzp_worker *wzp_worker_current(void)
{
    return current_worker;
}

/* ---------------------------------------------------------------- CID table */

int wzp_worker_cid_add(struct wzp_worker *w, const ngtcp2_cid *cid, struct wzp_conn *c)
{
    if (c->ncids >= WZP_CONN_CIDS) { /* more than ngtcp2 keeps: a bug, refused */
        WZP_ERROR(MOD, "a connection asked for a CID table key beyond its %d", WZP_CONN_CIDS);
        return WZP_EINVAL;
    }
    int rv = wzp_cidtab_add(&w->cids, cid->data, cid->datalen, c);
    if (rv)
        return rv;
    struct wzp_cid_key *k = &c->cids[c->ncids++];
    k->len = (uint8_t)cid->datalen;
    memcpy(k->data, cid->data, cid->datalen);
    WZP_GAUGE_ADD(&w->gauges, cid_entries, 1);
    return WZP_OK;
}

void wzp_worker_cid_remove(struct wzp_worker *w, const ngtcp2_cid *cid, struct wzp_conn *c)
{
    if (!wzp_cidtab_remove(&w->cids, cid->data, cid->datalen, c))
        return;
    for (unsigned i = 0; i < c->ncids; i++)
        if (c->cids[i].len == cid->datalen &&
            memcmp(c->cids[i].data, cid->data, cid->datalen) == 0) {
            c->cids[i] = c->cids[--c->ncids];
            break;
        }
    WZP_GAUGE_ADD(&w->gauges, cid_entries, -1);
}

void wzp_worker_cid_remove_conn(struct wzp_worker *w, struct wzp_conn *c)
{
    for (unsigned i = 0; i < c->ncids; i++) {
        bool removed = wzp_cidtab_remove(&w->cids, c->cids[i].data, c->cids[i].len, c);
        WZP_BUG_ON(!removed);
    }
    WZP_GAUGE_ADD(&w->gauges, cid_entries, -(int64_t)c->ncids);
    c->ncids = 0;
}

struct wzp_conn *wzp_worker_cid_find(struct wzp_worker *w, const uint8_t *cid, size_t len)
{
    return wzp_cidtab_find(&w->cids, cid, len);
}

/* ---------------------------------------------------------------- handles */

static int slot_alloc(struct wzp_worker *w, struct wzp_conn *c, uint32_t *slot, uint32_t *gen)
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

static void slot_free(struct wzp_worker *w, uint32_t slot)
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

/* ---------------------------------------------------------------- connection timers */

uint64_t wzp_worker_clock(struct wzp_worker *w)
{
    uint64_t now = wzp_now_ns();
    if (now > w->clock_ns) /* (CLOCK_MONOTONIC: always, but never let it go back) */
        w->clock_ns = now;
    return w->clock_ns;
}

static void arm_wheel(struct wzp_worker *w)
{
    uint64_t next = wzp_twheel_next_ns(&w->timers);
    if (next == w->wheel_at_ns && ev_is_active(&w->wheel_timer))
        return;
    ev_timer_stop(w->loop, &w->wheel_timer);
    w->wheel_at_ns = next;
    if (next == UINT64_MAX)
        return;
    uint64_t now = wzp_worker_clock(w);
    ev_timer_set(&w->wheel_timer, next > now ? (double)(next - now) / 1e9 : 0., 0.);
    ev_timer_start(w->loop, &w->wheel_timer);
}

void wzp_worker_timer_set(struct wzp_worker *w, struct wzp_tnode *n, uint64_t due_ns)
{
    if (wzp_twheel_set(&w->timers, n, due_ns))
        arm_wheel(w); /* the new earliest */
}

void wzp_worker_timer_cancel(struct wzp_worker *w, struct wzp_tnode *n)
{
    wzp_twheel_cancel(&w->timers, n); /* the wheel timer may fire for nothing, once */
}

static void fire_conn_timer(struct wzp_tnode *n, void *ctx)
{
    (void)ctx;
    wzp_conn_timer_fired((struct wzp_conn *)((char *)n - offsetof(struct wzp_conn, tnode)));
}

static void wheel_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = t->data;
    wzp_twheel_expire(&w->timers, wzp_worker_clock(w), fire_conn_timer, w);
    arm_wheel(w);
}

void wzp_worker_mark_dirty(struct wzp_worker *w, struct wzp_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = w->dirty;
    w->dirty = c;
}

int wzp_worker_attach(struct wzp_worker *w, struct wzp_conn *c)
{
    if (slot_alloc(w, c, &c->slot, &c->gen) != WZP_OK)
        return WZP_ENOMEM;
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    WZP_GAUGE_ADD(&w->gauges, conns, 1);
    WZP_GAUGE_ADD(&w->gauges, slots_used, 1);
    return WZP_OK;
}

void wzp_worker_detach(struct wzp_worker *w, struct wzp_conn *c)
{
    wzp_worker_cid_remove_conn(w, c);
    if (c->dirty) {
        struct wzp_conn **pp = &w->dirty;
        while (*pp && *pp != c)
            pp = &(*pp)->dirty_next;
        if (*pp)
            *pp = c->dirty_next;
        c->dirty = false;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    slot_free(w, c->slot);
    c->gen = 0;
    WZP_GAUGE_ADD(&w->gauges, conns, -1);
    WZP_GAUGE_ADD(&w->gauges, slots_used, -1);
    /* The last connection gone: nothing may be left that belonged to one. (Signal bytes
     * are released by the connection before it detaches.) */
    WZP_CHECK(w->conns || (atomic_load(&w->gauges.cid_entries) == 0 &&
                           atomic_load(&w->gauges.slots_used) == 0 && !w->dirty));
}

void wzp_worker_account_signal_bytes(struct wzp_worker *w, int64_t delta)
{
    WZP_GAUGE_ADD(&w->gauges, signal_bytes, delta);
}

/* ---------------------------------------------------------------- transmit */

uint8_t *wzp_worker_tx_buf(struct wzp_worker *w)
{
    if (wzp_txbatch_full(&w->tx))
        wzp_worker_tx_flush(w);
    return wzp_txbatch_tail(&w->tx);
}

void wzp_worker_tx_commit(struct wzp_worker *w, size_t len, const struct sockaddr *to,
                          socklen_t tolen)
{
    wzp_txbatch_commit(&w->tx, len, to, tolen);
}

void wzp_worker_tx_flush(struct wzp_worker *w)
{
    wzp_txbatch_send(&w->tx, w->fd, &w->stats, w->idx);
}

/* ---------------------------------------------------------------- receive */

/* One more stateless reply of this kind in the current second? (A spoofed source can
 * aim them at a victim: never more than REPLIES_PER_SECOND per worker.) */
static bool reply_allowed(struct wzp_worker *w, struct wzp_reply_rate *rate)
{
    uint64_t now = wzp_now_ns();
    if (now - rate->window_start_ns > 1000000000ull) {
        rate->window_start_ns = now;
        rate->sent = 0;
    }
    if (rate->sent < REPLIES_PER_SECOND) {
        rate->sent++;
        return true;
    }
    WZP_STAT_INC(&w->stats, replies_rate_limited);
    return false;
}

static void send_version_negotiation(struct wzp_worker *w, const ngtcp2_version_cid *vc,
                                     const struct sockaddr *from, socklen_t fromlen)
{
    static const uint32_t versions[] = {NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2_DRAFT};
    if (!reply_allowed(w, &w->vn_rate))
        return;
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

/* A short-header packet for a connection we do not know: answer with a Stateless Reset
 * (smaller than the trigger, so two relays can never loop). */
static void send_stateless_reset(struct wzp_worker *w, const ngtcp2_version_cid *vc, size_t len,
                                 const struct sockaddr *from, socklen_t fromlen)
{
    const size_t min_reset =
        1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN;
    if (len <= min_reset || !reply_allowed(w, &w->reset_rate))
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

#define PRESSURE_LOG_NS (10ull * 1000000000ull)

void wzp_worker_note_pressure(struct wzp_worker *w, const char *peer)
{
    uint64_t now = wzp_now_ns();
    if (!wzp_log_due(&w->pressure_logged_ns, now, PRESSURE_LOG_NS))
        return;
    uint64_t seen[3] = {
        atomic_load_explicit(&w->stats.retries_sent, memory_order_relaxed),
        atomic_load_explicit(&w->stats.retry_tokens_invalid, memory_order_relaxed),
        atomic_load_explicit(&w->stats.conns_refused_addr_handshakes, memory_order_relaxed) +
            atomic_load_explicit(&w->stats.conns_refused_addr_limit, memory_order_relaxed),
    };
    const struct wzp_quota *q = &w->relay->quota;
    WZP_WARN(MOD,
             "handshake pressure on worker %u: %u handshakes in progress (limit %u), retry %s; "
             "since the last such line: %llu Retry sent, %llu bad Retry tokens, %llu Initials "
             "over per-address limits; latest from %s",
             w->idx, wzp_quota_handshakes(q), q->max.handshakes,
             wzp_retry_mode_name(w->relay->cfg.retry),
             (unsigned long long)(seen[0] - w->pressure_seen[0]),
             (unsigned long long)(seen[1] - w->pressure_seen[1]),
             (unsigned long long)(seen[2] - w->pressure_seen[2]), peer);
    memcpy(w->pressure_seen, seen, sizeof seen);
}

static bool is_initial(const uint8_t *data, uint32_t version)
{
    /* Long header packet type bits: Initial is 0 in v1 and 1 in v2. */
    unsigned type = (data[0] >> 4) & 3;
    return version == NGTCP2_PROTO_VER_V2_DRAFT ? type == 1 : type == 0;
}

/* The slot of the hand-over table for a client-chosen connection ID. */
static struct wzp_handover *handover_slot(struct wzp_worker *w, const uint8_t *dcid, size_t len)
{
    return &w->handover[wzp_fnv1a(dcid, len) & (WZP_HANDOVER_SLOTS - 1)];
}

/*
 * Room affinity: the packets of a connection that does not exist yet go to the worker
 * serving its room. The first Initial names the room (its SNI, read by opening the
 * packet); the hand-over table remembers where its client-chosen connection ID went, so
 * the client's next Initials and 0-RTT packets follow without being opened (or screened)
 * again. Once the owner answers, the client addresses the owner's connection IDs, which
 * the kernel steers by their first byte (wzp_worker_steer_by_cid).
 */

/* A packet of a connection already handed over: the worker it went to, or -1. */
static int handed_over_to(struct wzp_worker *w, const ngtcp2_version_cid *vc, uint64_t now)
{
    const struct wzp_handover *h = handover_slot(w, vc->dcid, vc->dcidlen);
    if (h->dcidlen == vc->dcidlen && now < h->expires_ns &&
        memcmp(h->dcid, vc->dcid, vc->dcidlen) == 0)
        return h->worker;
    return -1;
}

/* A new connection's first Initial (screened): the worker serving its room, or this one. */
static unsigned pick_room_worker(struct wzp_worker *w, const ngtcp2_version_cid *vc,
                                 const uint8_t *data, size_t len, uint64_t now)
{
    char sni[WZP_SNI_MAX + 1];
    /* At the handshake limit the Initial will be dropped wherever it goes: do not
     * spend a decryption on it (a flood of Initials must stay cheap). */
    if (len < MIN_INITIAL_BYTES || !is_initial(data, vc->version) ||
        wzp_quota_handshakes_full(&w->relay->quota) ||
        wzp_initial_peek_sni(data, len, sni) != WZP_OK)
        return w->idx; /* accepted here, or refused here, as without affinity */
    unsigned dst = wzp_affinity_pick(w->relay->affinity, sni, now);
    if (dst != w->idx) {
        struct wzp_handover *h = handover_slot(w, vc->dcid, vc->dcidlen);
        memcpy(h->dcid, vc->dcid, vc->dcidlen);
        h->dcidlen = (uint8_t)vc->dcidlen;
        h->worker = (uint8_t)dst;
        h->expires_ns = now + HANDOVER_TTL_NS;
    }
    return dst;
}

static void hand_over(struct wzp_worker *w, unsigned dst, const uint8_t *data, size_t len,
                      const struct sockaddr *from, socklen_t fromlen)
{
    WZP_STAT_INC(&w->stats, packets_handed_over);
    wzp_mesh_send_packet(w->node, dst, data, len, from, fromlen);
}

/* routed: the packet came from another worker, which already chose this one. */
static void handle_packet(struct wzp_worker *w, const uint8_t *data, size_t len,
                          const struct sockaddr *from, socklen_t fromlen, bool routed)
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
        wzp_mesh_send_packet(w->node, vc.dcid[0], data, len, from, fromlen);
        return;
    }
    if (!long_hdr) {
        send_stateless_reset(w, &vc, len, from, fromlen);
        return;
    }
    if (!routed) {
        uint64_t now = wzp_now_ns();
        int dst = w->relay->affinity ? handed_over_to(w, &vc, now) : -1;
        if (dst >= 0 && (unsigned)dst != w->idx) {
            hand_over(w, (unsigned)dst, data, len, from, fromlen);
            return;
        }
        if (wzp_conn_screen_initial(w, data, len, from, fromlen) != WZP_SCREEN_PASS)
            return;
        if (w->relay->affinity) {
            unsigned to = pick_room_worker(w, &vc, data, len, now);
            if (to != w->idx) {
                hand_over(w, to, data, len, from, fromlen);
                return;
            }
        }
    }
    c = wzp_conn_accept(w, data, len, from, fromlen);
    if (c)
        wzp_conn_input(c, data, len, from, fromlen);
}

void wzp_worker_input(struct wzp_worker *w, const uint8_t *data, size_t len,
                      const struct sockaddr *from, socklen_t fromlen)
{
    wzp_worker_clock(w);
    handle_packet(w, data, len, from, fromlen, false);
}

static void flush_dirty(struct wzp_worker *w)
{
    while (w->dirty) {
        struct wzp_conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        wzp_conn_flush(c);
    }
}

static void flush_now(struct wzp_worker *w)
{
    flush_dirty(w);
    wzp_worker_tx_flush(w);
    wzp_mesh_kick_peers(w->node);
}

/* The kernel reports, with a received packet, how many packets it has dropped at the
 * socket so far (SO_RXQ_OVFL): the receive buffer was full because the worker fell
 * behind (overload, or a stall). Counted, and logged at most every 10 s. */
static void note_socket_overflow(struct wzp_worker *w, uint32_t total)
{
    uint32_t dropped = total - w->rx_overflow_seen; /* the kernel's count wraps */
    if (dropped == 0)
        return;
    w->rx_overflow_seen = total;
    WZP_STAT_ADD(&w->stats, packets_socket_overflow, dropped);
    if (wzp_log_due(&w->rx_overflow_logged_ns, wzp_now_ns(), PRESSURE_LOG_NS))
        WZP_WARN(MOD,
                 "worker %u: the kernel dropped %u packets, %u in all: its receive buffer was "
                 "full (the worker fell behind: too much load for --threads %u, or a stall); "
                 "see wzp_relay_packets_dropped_total{reason=\"socket_buffer_full\"}",
                 w->idx, dropped, total, w->relay->nworkers);
}

/* The segment size of a GRO receive (UDP_GRO control message), or 0: one packet. Notes
 * the socket's drop count (SO_RXQ_OVFL) on the way. */
static size_t rx_control(struct wzp_worker *w, struct msghdr *h)
{
    size_t seg = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO &&
            cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int v;
            memcpy(&v, CMSG_DATA(cm), sizeof v);
            seg = v > 0 ? (size_t)v : 0;
        } else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL &&
                   cm->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
            uint32_t total;
            memcpy(&total, CMSG_DATA(cm), sizeof total);
            note_socket_overflow(w, total);
        }
    }
    return seg;
}

/* One received message: a packet, or with GRO a train of equal-sized packets from one
 * sender (the last may be shorter), each handled as if received alone. */
static void rx_message(struct wzp_worker *w, struct mmsghdr *m)
{
    size_t len = m->msg_len, seg = rx_control(w, &m->msg_hdr);
    const uint8_t *p = m->msg_hdr.msg_iov->iov_base;
    const struct sockaddr *from = m->msg_hdr.msg_name;
    if (len == 0 || (m->msg_hdr.msg_flags & MSG_TRUNC)) {
        WZP_STAT_INC(&w->stats, udp_rx_packets);
        WZP_STAT_INC(&w->stats, packets_undecodable);
        return;
    }
    if (seg && seg < len) {
        WZP_STAT_INC(&w->stats, udp_rx_gro_messages);
        WZP_STAT_ADD(&w->stats, udp_rx_gro_segments, (len + seg - 1) / seg);
    } else {
        seg = len;
    }
    for (size_t off = 0; off < len; off += seg) {
        size_t n = WZP_MIN(seg, len - off);
        WZP_STAT_INC(&w->stats, udp_rx_packets);
        if (n > WZP_MAX_UDP_PAYLOAD) {
            WZP_STAT_INC(&w->stats, packets_undecodable);
            continue;
        }
        handle_packet(w, p + off, n, from, m->msg_hdr.msg_namelen, false);
    }
}

/*
 * The receive batch's message headers, set up once per worker. The kernel writes only the
 * address and control lengths (and the flags) of the messages it fills, so after a read
 * just those of the filled ones are set back, not all 32 headers.
 */
struct wzp_rx_slots {
    struct mmsghdr msgs[WZP_RX_BATCH];
    struct iovec iov[WZP_RX_BATCH];
    struct sockaddr_storage addrs[WZP_RX_BATCH];
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint32_t))];
    } ctl[WZP_RX_BATCH];
};

static void rx_slot_rearm(struct wzp_rx_slots *s, unsigned i)
{
    s->msgs[i].msg_hdr.msg_namelen = sizeof s->addrs[i];
    s->msgs[i].msg_hdr.msg_controllen = sizeof s->ctl[i].buf;
}

static struct wzp_rx_slots *rx_slots_new(uint8_t *bufs, size_t buf_len)
{
    struct wzp_rx_slots *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (unsigned i = 0; i < WZP_RX_BATCH; i++) {
        s->iov[i] = (struct iovec){bufs + i * buf_len, buf_len};
        s->msgs[i].msg_hdr.msg_name = &s->addrs[i];
        s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
        s->msgs[i].msg_hdr.msg_iovlen = 1;
        s->msgs[i].msg_hdr.msg_control = s->ctl[i].buf;
        rx_slot_rearm(s, i);
    }
    return s;
}

static void rx_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = io->data;
    struct wzp_rx_slots *s = w->rx_slots;
    for (int round = 0; round < RX_BATCHES_PER_WAKEUP; round++) {
        int n = recvmmsg(w->fd, s->msgs, WZP_RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        WZP_STAT_INC(&w->stats, udp_rx_batches);
        wzp_worker_clock(w); /* the batch's packets are read at this time */
        for (int i = 0; i < n; i++) {
            rx_message(w, &s->msgs[i]);
            rx_slot_rearm(s, (unsigned)i);
        }
        if (n < WZP_RX_BATCH)
            return;
        /* More is waiting: send what this batch produced before reading on, so the
         * first packets of a long burst do not wait for the whole burst. */
        flush_now(w);
    }
}

/* ---------------------------------------------------------------- queues in */

/* One message from another worker's ring: media for our connections, or a packet. */
static void ring_message(void *ctx, const void *m, size_t len)
{
    struct wzp_worker *w = ctx;
    (void)len;
    uint16_t type;
    memcpy(&type, m, sizeof type);
    if (type == WZP_XMSG_DATAGRAM) {
        const struct wzp_xdatagram *d = m;
        const uint8_t *payload = (const uint8_t *)&d->targets[d->ntargets];
        for (uint32_t i = 0; i < d->ntargets; i++) {
            struct wzp_conn *c = wzp_worker_slot_get(w, d->targets[i].slot, d->targets[i].gen);
            if (c && c->state == WZP_CONN_JOINED)
                wzp_conn_queue_datagram(c, payload, d->len);
        }
    } else {
        const struct wzp_xpacket *pk = m;
        WZP_STAT_INC(&w->stats, packets_steered_in);
        handle_packet(w, pk->data, pk->len, (const struct sockaddr *)&pk->addr, pk->addrlen, true);
    }
}

static void drain_rings(struct wzp_worker *w)
{
    wzp_mesh_drain_rings(w->node, ring_message, w);
}

static void drain_ctl(struct wzp_worker *w)
{
    struct wzp_ctlmsg *m = wzp_mesh_take_ctl(w->node);
    while (m) {
        struct wzp_ctlmsg *next = m->next;
        struct wzp_conn *c = wzp_worker_slot_get(w, m->slot, m->gen);
        if (c && m->type == WZP_CTL_SIGNAL)
            wzp_conn_queue_signal(c, m->data, m->len);
        else if (c && m->type == WZP_CTL_ROOM_UPDATE)
            wzp_conn_queue_room_update(c, m->data, m->len);
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
    ev_timer_stop(w->loop, &w->heartbeat);
    ev_timer_stop(w->loop, &w->wheel_timer);
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
    wzp_mesh_wake(&w->relay->mesh, w->idx);
}

void wzp_worker_offer_shadow(struct wzp_worker *w, struct wzp_policy *p)
{
    if (!p)
        atomic_store(&w->shadow_drop, true);
    struct wzp_policy *older = atomic_exchange(&w->shadow_pending, p);
    wzp_policy_free(older);
    wzp_mesh_wake(&w->relay->mesh, w->idx);
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
    if (atomic_exchange(&w->shadow_drop, false)) {
        wzp_policy_free(w->shadow);
        w->shadow = NULL;
    }
    struct wzp_policy *s = atomic_exchange(&w->shadow_pending, NULL);
    if (s) { /* the shadow runs no timers: it must not act, only decide */
        wzp_policy_free(w->shadow);
        w->shadow = s;
    }
    struct wzp_policy *p = atomic_exchange(&w->policy_pending, NULL);
    if (!p)
        return;
    wzp_policy_free(w->policy);
    wzp_policy_count_into(p, &w->policy_stats);
    w->policy = p;
    arm_policy_timer(w, wzp_policy_run_timers(p, 0)); /* now = 0: nothing due yet */
}

/* Another thread woke us (mesh.h): stop, a new policy, messages. */
static void wake_cb(void *ctx)
{
    struct wzp_worker *w = ctx;
    if (atomic_load(&w->stop_requested)) {
        worker_shutdown(w);
        return;
    }
    wzp_worker_clock(w); /* the rings may hold packets for our connections */
    switch_policy(w);
    drain_rings(w);
    drain_ctl(w);
}

/* Before the loop blocks: write every dirty connection once, send, wake peers. */
/* Waking the loop is the point (flush_cb then records that it ran); worker 0 also ends
 * direct calls past their deadlines and samples the refusal counters (recent.h). */
/*
 * Worker 0, once a second: after a burst of connections came or went, hand the heap's
 * free pages back to the kernel. Each handshake leaves freed memory (TLS and Initial /
 * Handshake state, RoomUpdates) between the connections' long-lived allocations, where
 * glibc keeps it: 8-9 KiB per participant after 1 000 joins. malloc_trim walks every
 * arena, so it runs only when at least HEAP_TRIM_CHURN connections were accepted or freed
 * since the last time, or HEAP_TRIM_SETTLED and then a second without any.
 */
#define HEAP_TRIM_CHURN   256
#define HEAP_TRIM_SETTLED 16

static void trim_heap_after_churn(struct wzp_relay *r, uint64_t *last, uint64_t *prev)
{
    uint64_t churn = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        churn += atomic_load_explicit(&r->workers[i]->stats.conns_accepted, memory_order_relaxed) +
                 atomic_load_explicit(&r->workers[i]->stats.conns_closed, memory_order_relaxed);
    bool settled = churn == *prev && churn - *last >= HEAP_TRIM_SETTLED;
    *prev = churn;
    if (churn - *last < HEAP_TRIM_CHURN && !settled)
        return;
    *last = churn;
    uint64_t t0 = wzp_now_ns();
    malloc_trim(0);
    WZP_DEBUG(MOD, "heap trimmed after connection churn in %.2f ms",
              (double)(wzp_now_ns() - t0) / 1e6);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = t->data;
    if (w->idx == 0) {
        wzp_dcall_expire(w, wzp_now_ns());
        struct wzp_relay *r = w->relay;
        struct wzp_stats *stats[WZP_MAX_WORKERS];
        for (unsigned i = 0; i < r->nworkers; i++)
            stats[i] = &r->workers[i]->stats;
        wzp_recent_sample(&r->recent, stats, r->nworkers);
        trim_heap_after_churn(r, &w->trim_churn, &w->trim_churn_prev);
    }
}

static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_worker *w = p->data;
    atomic_store_explicit(&w->loop_ns, wzp_worker_clock(w), memory_order_relaxed);
    for (;;) {
        flush_dirty(w);
        if (wzp_mesh_going_idle(w->node))
            break;
        drain_rings(w); /* queued by peers that saw us busy */
    }
    wzp_worker_tx_flush(w);
    wzp_mesh_kick_peers(w->node);
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
    /* QUIC packets must not be fragmented (RFC 9000 section 14): set DF. This also spares
     * the kernel choosing an IP ID for every packet. */
    int pmtu = IP_PMTUDISC_DO;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    if (fam == AF_INET6) {
        int pmtu6 = IPV6_PMTUDISC_DO;
        setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu6, sizeof pmtu6);
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    /* the kernel's count of packets dropped here comes with each received packet */
    if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0)
        WZP_INFO(MOD,
                 "worker %u: SO_RXQ_OVFL unavailable (%s): packets the kernel drops "
                 "when the worker falls behind will not be counted",
                 w->idx, strerror(errno));
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

/*
 * Kernel steering by connection ID: a classic BPF program on the SO_REUSEPORT group picks
 * the socket for each datagram. Our connection IDs are WZP_SCID_LEN bytes and their first
 * byte is the owning worker, which is also the socket's index in the group (workers bind
 * in order). Short header: that byte follows the first byte. Long header: the DCID length
 * is at offset 5 and the DCID at 6. A DCID of another length or whose first byte names no
 * worker, and a runt, get an index past the group: the kernel falls back to its 4-tuple
 * hash. (A client-chosen 16-byte DCID may happen to name a worker; that worker then
 * handles the Initial like any other.)
 */
int wzp_worker_steer_by_cid(struct wzp_relay *r, char *err, size_t errlen)
{
    struct sock_filter code[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 7, 0, 9), /* runt -> 11 */
        /* 2 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
        /* 3 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 0, 4), /* short -> 8 */
        /* 4 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 5),
        /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, WZP_SCID_LEN, 0, 5), /* not ours -> 11 */
        /* 6 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),
        /* 7 */ BPF_STMT(BPF_JMP | BPF_JA, 1), /* -> 9 */
        /* 8 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),
        /* 9 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, r->nworkers, 1, 0), /* -> 11 */
        /* 10 */ BPF_STMT(BPF_RET | BPF_A, 0),
        /* 11 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
    };
    struct sock_fprog prog = {.len = WZP_ARRAY_LEN(code), .filter = code};
    if (setsockopt(r->workers[0]->fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) !=
        0) {
        snprintf(err, errlen, "SO_ATTACH_REUSEPORT_CBPF: %s", strerror(errno));
        return WZP_EIO;
    }
    return WZP_OK;
}

/* A token validation finished: hand it to its connection, if that is still there. */
static void auth_done(void *ctx, uint32_t slot, uint32_t gen, const struct wzp_auth_result *res)
{
    struct wzp_worker *w = ctx;
    struct wzp_conn *c = wzp_worker_slot_get(w, slot, gen);
    if (c)
        wzp_conn_auth_done(c, res);
}

int wzp_worker_init(struct wzp_worker *w, struct wzp_relay *r, unsigned idx, char *err,
                    size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->relay = r;
    w->idx = idx;
    w->fd = -1;
    w->free_slot = UINT32_MAX;
    int cids_rv = wzp_cidtab_init(&w->cids, CID_SLOTS);
    w->handover = calloc(WZP_HANDOVER_SLOTS, sizeof *w->handover);
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (cids_rv || !w->handover || !w->loop || idx >= r->mesh.n) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    int rv = idx == 0 ? check_port_free(&r->cfg, err, errlen) : WZP_OK;
    if (rv == WZP_OK)
        rv = open_socket(w, err, errlen);
    if (rv)
        return rv;
    /* UDP GRO: the kernel may hand over a train of packets from one sender (a client
     * sending with GSO) in one receive, which needs room for up to 64 KiB. The buffers'
     * pages are only touched as far as packets fill them. */
    int on = 1;
    bool gro = setsockopt(w->fd, SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
    if (!gro)
        WZP_INFO(MOD, "worker %u: UDP GRO unavailable (%s); receiving packet by packet", idx,
                 strerror(errno));
    w->rx_buf_len = gro ? 65536 : 2048;
    w->rx_bufs = malloc(WZP_RX_BATCH * w->rx_buf_len);
    w->rx_slots = w->rx_bufs ? rx_slots_new(w->rx_bufs, w->rx_buf_len) : NULL;
    if (!w->rx_slots) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    wzp_txbatch_init(&w->tx, WZP_TX_GSO);
    wzp_txbatch_probe_gso(&w->tx, w->fd, idx);
    ev_io_init(&w->rx, rx_cb, w->fd, EV_READ);
    w->rx.data = w;
    ev_io_start(w->loop, &w->rx);
    /* --poll-every: libev sleeps out the rest of the interval after a short iteration
     * (never past a due timer), so a wake-up reads what arrived meanwhile. */
    ev_set_io_collect_interval(w->loop, r->cfg.poll_every_us * 1e-6);
    w->node = &r->mesh.nodes[idx];
    wzp_mesh_node_start(w->node, w->loop, &w->stats, wake_cb, w);
    ev_timer_init(&w->policy_timer, policy_timer_cb, 0., 0.);
    w->policy_timer.data = w;
    ev_prepare_init(&w->flush_prep, flush_cb);
    w->flush_prep.data = w;
    ev_prepare_start(w->loop, &w->flush_prep);
    wzp_twheel_init(&w->timers, wzp_worker_clock(w));
    ev_timer_init(&w->wheel_timer, wheel_cb, 0., 0.);
    w->wheel_timer.data = w;
    ev_timer_init(&w->heartbeat, heartbeat_cb, 1., 1.);
    w->heartbeat.data = w;
    ev_timer_start(w->loop, &w->heartbeat);
    if (r->cfg.auth_url[0] &&
        wzp_auth_new(&w->auth, w->loop, r->cfg.auth_url,
                     r->cfg.auth_ca_file[0] ? r->cfg.auth_ca_file : NULL, WZP_AUTH_MAX_IN_FLIGHT,
                     WZP_AUTH_TIMEOUT_MS, auth_done, w) != WZP_OK) {
        snprintf(err, errlen, "--auth-url %s: not an http:// or https:// URL (or out of memory)",
                 r->cfg.auth_url);
        return WZP_EINVAL;
    }
    return WZP_OK;
}

double wzp_worker_loop_age(const struct wzp_worker *w, uint64_t now_ns)
{
    uint64_t t = atomic_load_explicit(&w->loop_ns, memory_order_relaxed);
    return t && now_ns > t ? (double)(now_ns - t) / 1e9 : 0.;
}

static void *worker_main(void *arg)
{
    struct wzp_worker *w = arg;
    current_worker = w;
    char name[16]; /* shown by top -H, ps -L and /proc/PID/task/TID/comm */
    snprintf(name, sizeof name, "wzp-worker-%u", w->idx);
    pthread_setname_np(pthread_self(), name);
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
    wzp_mesh_wake(&w->relay->mesh, w->idx);
}

void wzp_worker_free(struct wzp_worker *w)
{
    while (w->conns)
        wzp_conn_destroy(w->conns);
    wzp_auth_free(w->auth); /* requests in flight are abandoned */
    w->auth = NULL;
    wzp_cidtab_free(&w->cids);
    free(w->handover);
    free(w->rx_slots);
    free(w->rx_bufs);
    wzp_policy_free(atomic_exchange(&w->policy_pending, NULL));
    wzp_policy_free(atomic_exchange(&w->shadow_pending, NULL));
    wzp_policy_free(w->shadow);
    wzp_policy_free(w->policy);
    free(w->slots);
    if (w->loop)
        ev_loop_destroy(w->loop);
    if (w->fd >= 0)
        close(w->fd);
}
