/*
 * conn.c - one QUIC connection on the server side (see conn.h).
 *
 * ngtcp2 callbacks only record what happened (buffer stream bytes, set flags, queue
 * media to other connections); the work that needs ngtcp2 calls on this connection
 * (dispatching signals, closing) or Lua (a quality tier change: the policy's on_quality)
 * runs after ngtcp2_conn_read_pkt() returns. Writing happens once per loop iteration in
 * wzp_conn_flush(). One deliberate exception: the policy's on_connect runs in the TLS
 * ClientHello hook (conn_on_client_hello), because refusing before the key exchange is
 * its purpose and GnuTLS cannot pause a handshake; it only decides, and nothing it may
 * call touches a connection synchronously.
 */
#include "conn.h"

#include "aead.h"
#include "affinity.h"
#include "auth.h"

#include "common.h"
#include "dcall.h"
#include "log.h"
#include "retry.h"
#include "sfu.h"
#include "shadow.h"
#include "signal_codec.h"
#include "tls.h"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MOD "conn"

static uint64_t closing_period_ns(struct wzp_conn *c)
{
    uint64_t pto = ngtcp2_conn_get_pto(c->qc) * 3;
    return WZP_MAX(WZP_MIN(pto, 3 * NGTCP2_SECONDS), 300 * NGTCP2_MILLISECONDS);
}

static void format_addr(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "?");
    }
}

void wzp_conn_path_addr(struct wzp_conn *c, char *out, size_t outlen)
{
    const ngtcp2_path *path = ngtcp2_conn_get_path(c->qc);
    format_addr((const struct sockaddr *)path->remote.addr, out, outlen);
}

static void conn_path(struct wzp_conn *c, ngtcp2_path *path, const struct sockaddr *remote,
                      socklen_t remotelen)
{
    struct wzp_config *cfg = &c->w->relay->cfg;
    path->local.addr = (ngtcp2_sockaddr *)&cfg->listen_addr;
    path->local.addrlen = cfg->listen_addrlen;
    path->remote.addr = (ngtcp2_sockaddr *)remote;
    path->remote.addrlen = remotelen;
    path->user_data = NULL;
}

/* ---------------------------------------------------------------- ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((struct wzp_conn *)ref->user_data)->qc;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int make_cid(struct wzp_worker *w, ngtcp2_cid *cid, uint8_t *token)
{
    cid->datalen = WZP_SCID_LEN;
    if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, WZP_SCID_LEN) != 0)
        return WZP_ECRYPTO;
    cid->data[0] = (uint8_t)w->idx;
    if (ngtcp2_crypto_generate_stateless_reset_token(token, w->relay->reset_secret,
                                                     sizeof w->relay->reset_secret, cid) != 0)
        return WZP_ECRYPTO;
    return WZP_OK;
}

static int cb_get_new_cid(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
    struct wzp_conn *c = ud;
    (void)qc;
    (void)cidlen;
    if (make_cid(c->w, cid, token) != WZP_OK || wzp_worker_cid_add(c->w, cid, c) != WZP_OK)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    c->write_wanted = true; /* NEW_CONNECTION_ID */
    return 0;
}

static int cb_remove_cid(ngtcp2_conn *qc, const ngtcp2_cid *cid, void *ud)
{
    struct wzp_conn *c = ud;
    (void)qc;
    wzp_worker_cid_remove(c->w, cid, c);
    return 0;
}

/* ClientHello read, no key exchange yet: the cheap place to refuse (policy on_connect). */
static int conn_on_client_hello(struct wzp_tls_ctx *ctx)
{
    struct wzp_conn *c = (struct wzp_conn *)ctx; /* tlsctx is the first member */
    struct wzp_affinity *aff = c->w->relay->affinity;
    if (aff && !c->affinity_ref && ctx->sni_present && !ctx->sni_invalid) {
        wzp_affinity_ref(aff, ctx->sni, c->w->idx, wzp_now_ns());
        c->affinity_ref = true;
    }
    if (!c->w->policy && !c->w->shadow)
        return 0;
    struct wzp_connect_info info = {.addr = c->peer,
                                    .sni = ctx->sni_present && !ctx->sni_invalid ? ctx->sni : NULL};
    struct wzp_decision d;
    if (c->w->policy)
        wzp_policy_on_connect(c->w->policy, &info, &d);
    else
        wzp_decision_upstream(&d);
    if (!d.allow) {
        c->policy_refused = true;
        snprintf(c->fatal_reason, sizeof c->fatal_reason, "%s", d.reason);
        WZP_STAT_INC(&c->w->stats, conns_refused_policy);
    }
    wzp_shadow_connect(c->w, &info, &d); /* after the live decision is made and applied */
    return d.allow ? 0 : -1;
}

/* After the handshake the TLS session is gone (conn_on_handshake_done): CRYPTO data then
 * would be a post-handshake TLS message, which QUIC clients do not send (KeyUpdate is
 * forbidden, tickets go the other way). Refuse it rather than hand it to no session. */
static int cb_recv_crypto_data(ngtcp2_conn *qc, ngtcp2_crypto_level level, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud)
{
    struct wzp_conn *c = ud;
    if (!c->tls) {
        snprintf(c->fatal_reason, sizeof c->fatal_reason, "TLS data after the handshake");
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    return ngtcp2_crypto_recv_crypto_data_cb(qc, level, offset, data, len, ud);
}

static int cb_handshake_completed(ngtcp2_conn *qc, void *ud)
{
    struct wzp_conn *c = ud;
    (void)qc;
    if (!wzp_tls_alpn_ok(c->tls)) {
        /* GnuTLS refuses a wrong ALPN itself, but lets a ClientHello without one through. */
        snprintf(c->fatal_reason, sizeof c->fatal_reason, "client did not offer ALPN \"wzp\"");
        WZP_STAT_INC(&c->w->stats, conns_refused_alpn);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    c->handshake_done_pending = true;
    return 0;
}

static struct wzp_in_stream *in_stream_get(struct wzp_conn *c, int64_t id, bool create)
{
    struct wzp_in_stream *free_slot = NULL;
    for (size_t i = 0; i < c->in_cap; i++) {
        if (c->in[i].used && c->in[i].id == id)
            return &c->in[i];
        if (!c->in[i].used && !free_slot)
            free_slot = &c->in[i];
    }
    if (!create)
        return NULL;
    if (!free_slot) {
        /* Most connections have one or two signal streams open: grow on demand. */
        if (c->in_cap >= WZP_CONN_MAX_IN_STREAMS)
            return NULL;
        unsigned cap = c->in_cap ? c->in_cap * 2 : 4;
        if (cap > WZP_CONN_MAX_IN_STREAMS)
            cap = WZP_CONN_MAX_IN_STREAMS;
        struct wzp_in_stream *in = realloc(c->in, cap * sizeof *in);
        if (!in)
            return NULL;
        memset(in + c->in_cap, 0, (cap - c->in_cap) * sizeof *in);
        free_slot = in + c->in_cap;
        c->in = in;
        c->in_cap = cap;
    }
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->used = true;
    free_slot->id = id;
    free_slot->started_ns = wzp_now_ns();
    return free_slot;
}

/* When the oldest incomplete frame began (the connection's timer watches it). */
static void in_partial_update(struct wzp_conn *c)
{
    uint64_t oldest = 0;
    for (unsigned i = 0; i < c->in_cap; i++) {
        const struct wzp_in_stream *s = &c->in[i];
        if (s->used && !s->complete && (!oldest || s->started_ns < oldest))
            oldest = s->started_ns;
    }
    c->partial_since_ns = oldest;
}

static void in_stream_release(struct wzp_conn *c, struct wzp_in_stream *s)
{
    c->in_bytes -= s->buf.len;
    wzp_worker_account_signal_bytes(c->w, -(int64_t)s->buf.len);
    wzp_quota_give_signal_bytes(&c->w->relay->quota, s->buf.len);
    wzp_buf_free(&s->buf);
    s->used = false;
    in_partial_update(c);
}

static void fail_later(struct wzp_conn *c, const char *reason)
{
    if (!c->fatal_pending) {
        c->fatal_pending = true;
        snprintf(c->fatal_reason, sizeof c->fatal_reason, "%s", reason);
    }
}

/* Buffer bytes of a client bidi stream until one whole frame is there. */
static void in_stream_data(struct wzp_conn *c, int64_t id, const uint8_t *data, size_t len,
                           bool fin)
{
    if (id < c->next_in_id || c->fatal_pending)
        return; /* already dispatched: the rest of the stream is ignored */
    struct wzp_in_stream *s = in_stream_get(c, id, true);
    if (!s) {
        fail_later(c, c->in_cap < WZP_CONN_MAX_IN_STREAMS ? "out of memory for signal streams"
                                                          : "too many signal streams open at once");
        return;
    }
    if (s->complete)
        return;
    if (c->in_bytes + len > WZP_CONN_MAX_IN_BYTES) {
        WZP_STAT_INC(&c->w->stats, signals_oversize);
        fail_later(c, "signal buffer limit exceeded");
        return;
    }
    if (!wzp_quota_take_signal_bytes(&c->w->relay->quota, len)) {
        WZP_STAT_INC(&c->w->stats, signals_relay_full);
        fail_later(c, "the relay's signal buffers are full: try again later");
        return;
    }
    if (wzp_buf_append(&s->buf, data, len)) {
        wzp_quota_give_signal_bytes(&c->w->relay->quota, len);
        fail_later(c, "out of memory for signals");
        return;
    }
    c->in_bytes += len;
    wzp_worker_account_signal_bytes(c->w, (int64_t)len);
    const uint8_t *body;
    size_t body_len;
    int rv = wzp_signal_frame_peek(s->buf.data, s->buf.len, &body, &body_len);
    if (rv == WZP_OK) {
        s->complete = true;
        c->frames_waiting = true;
        in_partial_update(c);
    } else if (!c->partial_since_ns) {
        c->partial_since_ns = s->started_ns;
    }
    if (rv == WZP_ETOOBIG) {
        WZP_STAT_INC(&c->w->stats, signals_oversize);
        fail_later(c, "signal frame larger than 1 MiB");
    } else if (rv != WZP_OK && fin) {
        WZP_STAT_INC(&c->w->stats, signals_malformed);
        fail_later(c, "signal stream ended before the frame was complete");
    }
}

static int cb_recv_stream_data(ngtcp2_conn *qc, uint32_t flags, int64_t id, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud)
{
    struct wzp_conn *c = ud;
    (void)offset;
    (void)sud;
    /* Client-initiated bidi streams carry signals; bytes on any other stream are read and
     * dropped so the client's flow control never stalls. */
    if ((id & 3) == 0)
        in_stream_data(c, id, data, len, flags & NGTCP2_STREAM_DATA_FLAG_FIN);
    ngtcp2_conn_extend_max_stream_offset(qc, id, len);
    ngtcp2_conn_extend_max_offset(qc, len);
    c->write_wanted = true; /* flow control credit, and the ACK of a signal */
    return 0;
}

static struct wzp_out_stream *out_stream_find(struct wzp_conn *c, int64_t id)
{
    for (struct wzp_out_stream *s = c->out_head; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static int cb_acked_stream_data_offset(ngtcp2_conn *qc, int64_t id, uint64_t offset, uint64_t len,
                                       void *ud, void *sud)
{
    (void)qc;
    (void)offset;
    (void)sud;
    struct wzp_out_stream *s = out_stream_find(ud, id);
    if (s)
        s->acked += len;
    return 0;
}

static int cb_stream_close(ngtcp2_conn *qc, uint32_t flags, int64_t id, uint64_t code, void *ud,
                           void *sud)
{
    struct wzp_conn *c = ud;
    (void)flags;
    (void)code;
    (void)sud;
    /* A client bidi stream is done: give the client credit for a new one, so it can send
     * one signal per stream forever (ngtcp2 0.12 does not renew remote credit itself). */
    if ((id & 3) == 0)
        ngtcp2_conn_extend_max_streams_bidi(qc, 1);
    c->write_wanted = true; /* MAX_STREAMS */
    struct wzp_out_stream *s = out_stream_find(c, id);
    if (s) {
        s->acked = s->data.len; /* nothing more will be sent; sweep it */
        s->fin_sent = true;
        if (s->uni && c->state == WZP_CONN_SERVING)
            c->deadline_ns = wzp_now_ns(); /* version reply delivered: close now */
    }
    return 0;
}

static int cb_extend_max_local_streams(ngtcp2_conn *qc, uint64_t max, void *ud)
{
    (void)qc;
    (void)max;
    struct wzp_conn *c = ud;
    c->write_wanted = true;
    wzp_worker_mark_dirty(c->w, c);
    return 0;
}

static int cb_recv_datagram(ngtcp2_conn *qc, uint32_t flags, const uint8_t *data, size_t len,
                            void *ud)
{
    struct wzp_conn *c = ud;
    (void)qc;
    (void)flags;
    struct wzp_quality_report rep;
    if (wzp_sfu_on_datagram(c, data, len, &rep)) {
        c->tier_report = rep; /* the latest change wins; applied after read_pkt */
        c->tier_change_pending = true;
    }
    return 0;
}

/* Every timestamp given to ngtcp2 for c passes here: builds with invariant checks verify
 * that they never go back (ngtcp2's arithmetic assumes it; wzp_worker_now). */
static inline uint64_t conn_ts(struct wzp_conn *c, uint64_t ts)
{
#ifdef WZP_CHECK_INVARIANTS
    WZP_BUG_ON(ts < c->ts_last);
    c->ts_last = ts;
#else
    (void)c;
#endif
    return ts;
}

/* The fields every packet touches fit three cache lines (conn.h). */
_Static_assert(offsetof(struct wzp_conn, dirty_next) + sizeof(struct wzp_conn *) <=
                   offsetof(struct wzp_conn, w) + 192,
               "the per-packet fields outgrew three cache lines");

struct wzp_conn *wzp_conn_zalloc(void)
{
    struct wzp_conn *c = aligned_alloc(alignof(struct wzp_conn), sizeof *c);
    if (c)
        memset(c, 0, sizeof *c);
    return c;
}

static const ngtcp2_callbacks server_callbacks = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = cb_recv_crypto_data,
    .handshake_completed = cb_handshake_completed,
    .encrypt = wzp_tls_encrypt,
    .decrypt = wzp_tls_decrypt,
    .hp_mask = wzp_tls_hp_mask,
    .recv_stream_data = cb_recv_stream_data,
    .acked_stream_data_offset = cb_acked_stream_data_offset,
    .stream_close = cb_stream_close,
    .rand = cb_rand,
    .get_new_connection_id = cb_get_new_cid,
    .remove_connection_id = cb_remove_cid,
    .update_key = wzp_tls_update_key,
    .extend_max_local_streams_bidi = cb_extend_max_local_streams,
    .extend_max_local_streams_uni = cb_extend_max_local_streams,
    .delete_crypto_aead_ctx = wzp_tls_delete_aead_ctx,
    .delete_crypto_cipher_ctx = wzp_tls_delete_cipher_ctx,
    .recv_datagram = cb_recv_datagram,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---------------------------------------------------------------- timers */

static bool conn_is_closed(const struct wzp_conn *c)
{
    return c->state == WZP_CONN_CLOSING || c->state == WZP_CONN_DRAINING;
}

/*
 * Arm the timer for the earlier of ngtcp2's expiry and our deadline. Every state has one
 * of them (closing states and joins a deadline, a joined connection ngtcp2's idle timer),
 * so a connection can never wait forever; the timer callback re-arms whenever it fires
 * before that time (libev measures from its cached loop time, so it may fire early).
 */
static uint64_t ack_hold_until(const struct wzp_conn *c)
{
    return c->ack_hold_ns + (uint64_t)c->w->relay->cfg.ack_delay_ms * NGTCP2_MILLISECONDS;
}

static uint64_t coalesce_until(const struct wzp_conn *c)
{
    return c->coalesce_ns + (uint64_t)c->w->relay->cfg.coalesce_ms * NGTCP2_MILLISECONDS;
}

/* exp: ngtcp2_conn_get_expiry() now (ignored in the closing states). No clock read: the
 * deadlines are absolute (this runs after every flush that writes). */
static void conn_arm_timer_at(struct wzp_conn *c, uint64_t exp)
{
    if (conn_is_closed(c)) {
        exp = UINT64_MAX;
    } else if (c->ack_hold_ns || c->coalesce_ns) {
        /* what is due waits for a datagram, or queued datagrams for more (see
         * conn_write_can_wait) */
        exp = c->ack_hold_ns ? ack_hold_until(c) : UINT64_MAX;
        if (c->coalesce_ns && coalesce_until(c) < exp)
            exp = coalesce_until(c);
        /* On a millisecond boundary: the connections whose wait ends in the same
         * millisecond wake the worker once and leave in one sendmmsg. */
        exp = (exp / NGTCP2_MILLISECONDS + 1) * NGTCP2_MILLISECONDS;
    }
    if (c->deadline_ns && c->deadline_ns < exp)
        exp = c->deadline_ns;
    uint64_t frame_due = c->partial_since_ns + WZP_CONN_FRAME_DEADLINE_MS * 1000000ull;
    if (c->partial_since_ns && !conn_is_closed(c) && frame_due < exp)
        exp = frame_due;
    WZP_CHECK(exp != UINT64_MAX); /* a state without a deadline is a bug ... */
    if (exp == UINT64_MAX)        /* ... which a release build survives: never wait forever */
        exp = wzp_now_ns() + (uint64_t)c->w->relay->cfg.idle_timeout_ms * 1000000ull;
    wzp_worker_timer_set(c->w, &c->tnode, exp); /* a no-op when its millisecond is unchanged */
}

/*
 * ngtcp2's expiry changes only when ngtcp2 does something: reads a packet, writes one or
 * handles an expiry. So the value taken after a flush's writes still holds at the next
 * flush unless a packet or a timer came in between; for a receiver, whose flushes follow
 * datagrams fanned out to it, that saves one of its three expiry computations per
 * datagram (each walks ngtcp2's timers: 3.9 % of the relay's CPU for all three). Every
 * ngtcp2 call that can move the expiry clears the cached value (conn_expiry_unknown);
 * writes are followed by conn_arm_timer, which takes it afresh.
 */
static void conn_expiry_unknown(struct wzp_conn *c)
{
    c->qc_expiry = 0;
}

static uint64_t conn_expiry(struct wzp_conn *c)
{
    uint64_t exp = c->qc_expiry;
    if (exp == 0)
        exp = c->qc_expiry = ngtcp2_conn_get_expiry(c->qc);
    WZP_CHECK(exp == ngtcp2_conn_get_expiry(c->qc)); /* a call that moved it did not clear it */
    return exp;
}

static void conn_arm_timer(struct wzp_conn *c)
{
    if (conn_is_closed(c)) {
        conn_arm_timer_at(c, UINT64_MAX);
        return;
    }
    conn_expiry_unknown(c); /* after a write */
    conn_arm_timer_at(c, conn_expiry(c));
}

/* ---------------------------------------------------------------- lifecycle */

/*
 * ngtcp2's allocator. ngtcp2 takes its per-connection objects from blocks sized for many
 * (64 streams, 64 sent packets, 64 frames, 8 skip-list nodes of 31 keys at once), and a
 * connection uses a handful of each; but a block carved from heap memory that an earlier
 * connection or handshake used arrives with all its pages resident. For a large block
 * the pages wholly inside it are handed back to the kernel (MADV_DONTNEED) before ngtcp2
 * sees it: they read as zero and only those ngtcp2 touches become resident again. A
 * large calloc gets the same, with only its partial edge pages cleared by hand.
 */
#define NGMEM_RELEASE_BYTES (8 * 1024)

/* Hand back the pages wholly inside [p, p + n); *lo and *hi receive their bounds.
 * Returns false if there were none or madvise refused (the memory is then unchanged). */
static bool ngmem_release_inside(void *p, size_t n, uint8_t **lo, uint8_t **hi)
{
    const uintptr_t page = 4096;
    *lo = (uint8_t *)(((uintptr_t)p + page - 1) & ~(page - 1));
    *hi = (uint8_t *)(((uintptr_t)p + n) & ~(page - 1));
    return *hi > *lo && madvise(*lo, (size_t)(*hi - *lo), MADV_DONTNEED) == 0;
}

static void *ngmem_malloc(size_t n, void *ud)
{
    (void)ud;
    void *p = malloc(n);
    uint8_t *lo, *hi;
    if (p && n >= NGMEM_RELEASE_BYTES)
        ngmem_release_inside(p, n, &lo, &hi); /* malloc'd bytes are undefined anyway */
    return p;
}

static void *ngmem_calloc(size_t nmemb, size_t size, void *ud)
{
    (void)ud;
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    size_t n = nmemb * size;
    if (n < NGMEM_RELEASE_BYTES)
        return calloc(nmemb, size);
    uint8_t *p = malloc(n);
    if (!p)
        return NULL;
    uint8_t *lo, *hi;
    if (!ngmem_release_inside(p, n, &lo, &hi)) {
        memset(p, 0, n);
        return p;
    }
    memset(p, 0, (size_t)(lo - p));      /* the partial page at the start */
    memset(hi, 0, (size_t)(p + n - hi)); /* and at the end; released pages read as 0 */
    return p;
}

static void ngmem_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static void *ngmem_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return realloc(p, n);
}

static const ngtcp2_mem conn_mem = {
    .malloc = ngmem_malloc, .free = ngmem_free, .calloc = ngmem_calloc, .realloc = ngmem_realloc};

/* odcid: the client's first DCID from its Retry token, or NULL when there was no Retry. */
static int conn_set_params(struct wzp_conn *c, const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                           const ngtcp2_cid *scid, ngtcp2_transport_params *p)
{
    ngtcp2_transport_params_default(p);
    p->initial_max_stream_data_bidi_local = 64 * 1024;
    p->initial_max_stream_data_bidi_remote = 64 * 1024;
    p->initial_max_stream_data_uni = 64 * 1024;
    p->initial_max_data = 256 * 1024;
    p->initial_max_streams_bidi = WZP_CONN_MAX_IN_STREAMS;
    p->initial_max_streams_uni = 3;
    p->max_idle_timeout = (uint64_t)c->w->relay->cfg.idle_timeout_ms * NGTCP2_MILLISECONDS;
    p->max_datagram_frame_size = 65535;
    if (odcid) { /* after a Retry: the client checks both (RFC 9000 7.3) */
        p->original_dcid = *odcid;
        p->retry_scid = hd->dcid;
        p->retry_scid_present = 1;
    } else {
        p->original_dcid = hd->dcid;
    }
    p->stateless_reset_token_present = 1;
    if (ngtcp2_crypto_generate_stateless_reset_token(p->stateless_reset_token,
                                                     c->w->relay->reset_secret,
                                                     sizeof c->w->relay->reset_secret, scid))
        return WZP_ECRYPTO;
    return WZP_OK;
}

static int conn_create_quic(struct wzp_conn *c, const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                            uint64_t handshake_timeout_ms, const ngtcp2_path *path)
{
    ngtcp2_cid scid;
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (make_cid(c->w, &scid, token))
        return WZP_ECRYPTO;
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = conn_ts(c, wzp_worker_clock(c->w));
    /* A token only after we verified it (a Retry token): it tells ngtcp2 the address is
     * validated, which lifts the anti-amplification limit. */
    if (odcid)
        settings.token = hd->token;
    settings.handshake_timeout = handshake_timeout_ms * NGTCP2_MILLISECONDS;
    ngtcp2_transport_params params;
    if (conn_set_params(c, hd, odcid, &scid, &params))
        return WZP_ECRYPTO;
    if (ngtcp2_conn_server_new(&c->qc, &hd->scid, &scid, path, hd->version, &server_callbacks,
                               &settings, &params, &conn_mem, c) != 0)
        return WZP_ENOMEM;
    ngtcp2_conn_set_keep_alive_timeout(c->qc, (uint64_t)WZP_KEEPALIVE_MS * NGTCP2_MILLISECONDS);
    struct wzp_relay *r = c->w->relay;
    if (wzp_tls_server_session(&c->tls, r->cred, r->priority, &c->tlsctx))
        return WZP_ECRYPTO;
    ngtcp2_conn_set_tls_native_handle(c->qc, c->tls);
    /* Both keys go on c's own list in the table, so wzp_worker_detach removes them. */
    if (wzp_worker_cid_add(c->w, &scid, c) || wzp_worker_cid_add(c->w, &hd->dcid, c))
        return WZP_ENOMEM;
    return WZP_OK;
}

/* A stateless CONNECTION_CLOSE for the Initial hd (retry.h). */
static void send_refusal(struct wzp_worker *w, const ngtcp2_pkt_hd *hd, const struct sockaddr *to,
                         socklen_t tolen, uint64_t code, const char *reason)
{
    uint8_t *buf = wzp_worker_tx_buf(w);
    size_t n = wzp_retry_write_refusal(buf, WZP_TX_PACKET_BYTES, hd, code, reason);
    if (n)
        wzp_worker_tx_commit(w, n, to, tolen);
}

/* Take the quota for a new connection from key; the refusal (if any) is counted, logged
 * and returned. */
static enum wzp_quota_refusal admit_new_connection(struct wzp_worker *w,
                                                   const struct wzp_addr_key *key, const char *peer)
{
    unsigned inuse = 0;
    struct wzp_quota *q = &w->relay->quota;
    enum wzp_quota_refusal rv = wzp_quota_take_connection(q, key, &inuse);
    switch (rv) {
    case WZP_QUOTA_GRANTED:
        break;
    case WZP_QUOTA_NO_CONNECTION:
        WZP_STAT_INC(&w->stats, conns_refused_limit);
        WZP_DEBUG(MOD, "%s: Initial dropped: %u connections (limit --max-connections)", peer,
                  inuse);
        break;
    case WZP_QUOTA_NO_HANDSHAKE:
        WZP_STAT_INC(&w->stats, conns_refused_handshakes);
        WZP_DEBUG(MOD, "%s: Initial dropped: %u handshakes in progress (limit --max-handshakes)",
                  peer, inuse);
        break;
    case WZP_QUOTA_ADDR_NO_CONNECTION:
        WZP_STAT_INC(&w->stats, conns_refused_addr_limit);
        wzp_worker_note_pressure(w, peer);
        WZP_DEBUG(MOD,
                  "%s: connection refused: %u connections from this address "
                  "(limit --max-connections-per-addr)",
                  peer, inuse);
        break;
    case WZP_QUOTA_ADDR_NO_HANDSHAKE:
        WZP_STAT_INC(&w->stats, conns_refused_addr_handshakes);
        wzp_worker_note_pressure(w, peer);
        WZP_DEBUG(MOD,
                  "%s: Initial dropped: %u handshakes from this address "
                  "(limit --max-handshakes-per-addr)",
                  peer, inuse);
        break;
    }
    return rv;
}

/* Handshakes in progress from which mode "auto" asks new connections for a Retry, and
 * gives them the short first-flight timeout. */
static unsigned pressure_threshold(const struct wzp_relay *r)
{
    return WZP_MAX(r->quota.max.handshakes / 4, 1u);
}

/* Should this Initial (no token) prove its address first? See retry.h. */
static bool retry_wanted(struct wzp_worker *w, const struct wzp_addr_key *key)
{
    struct wzp_relay *r = w->relay;
    if (r->cfg.retry != WZP_RETRY_AUTO)
        return r->cfg.retry == WZP_RETRY_ALWAYS;
    if (wzp_quota_handshakes(&r->quota) >= pressure_threshold(r))
        return true;
    unsigned per_addr = r->quota.max.handshakes_per_addr;
    return per_addr && wzp_quota_addr_handshakes(&r->quota, key) >= (per_addr + 1) / 2;
}

static void send_retry(struct wzp_worker *w, const ngtcp2_pkt_hd *hd, const struct sockaddr *from,
                       socklen_t fromlen)
{
    ngtcp2_cid scid; /* ours, so the client's next Initial is steered back to this worker */
    uint8_t unused[NGTCP2_STATELESS_RESET_TOKENLEN];
    if (make_cid(w, &scid, unused) != WZP_OK)
        return;
    uint8_t *buf = wzp_worker_tx_buf(w);
    size_t n = wzp_retry_write(buf, WZP_TX_PACKET_BYTES, w->relay->retry_secret, hd, from, fromlen,
                               &scid, wzp_retry_clock_ns());
    if (n) {
        wzp_worker_tx_commit(w, n, from, fromlen);
        WZP_STAT_INC(&w->stats, retries_sent);
    }
    if (w->relay->cfg.retry == WZP_RETRY_AUTO) { /* "always" is no news */
        char peer[64];
        format_addr(from, peer, sizeof peer);
        wzp_worker_note_pressure(w, peer);
    }
}

enum wzp_screen wzp_conn_screen_initial(struct wzp_worker *w, const uint8_t *pkt, size_t len,
                                        const struct sockaddr *from, socklen_t fromlen)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, len) != 0)
        return WZP_SCREEN_DROP; /* not an Initial we can take; stray packets are dropped */
    char peer[64];
    if (hd.dcid.datalen < NGTCP2_MIN_INITIAL_DCIDLEN) {
        WZP_STAT_INC(&w->stats, initials_short_dcid);
        format_addr(from, peer, sizeof peer);
        WZP_DEBUG(MOD, "%s: Initial dropped: client DCID of %zu bytes (at least %u)", peer,
                  hd.dcid.datalen, (unsigned)NGTCP2_MIN_INITIAL_DCIDLEN);
        return WZP_SCREEN_DROP;
    }
    ngtcp2_cid odcid;
    switch (wzp_retry_token_kind(&hd)) {
    case WZP_TOKEN_FOREIGN:
        /* We send no NEW_TOKEN, so only a Retry token can be ours. (A token also lets a
         * DCID shorter than 8 bytes past ngtcp2_accept: refused above.) */
        WZP_STAT_INC(&w->stats, initials_token_refused);
        format_addr(from, peer, sizeof peer);
        WZP_DEBUG(MOD, "%s: Initial dropped: it carries a token this relay never issued", peer);
        return WZP_SCREEN_DROP;
    case WZP_TOKEN_RETRY:
        if (wzp_retry_verify(w->relay->retry_secret, &hd, from, fromlen, wzp_retry_clock_ns(),
                             &odcid)) {
            WZP_STAT_INC(&w->stats, retry_tokens_valid);
            return WZP_SCREEN_PASS;
        }
        WZP_STAT_INC(&w->stats, retry_tokens_invalid);
        format_addr(from, peer, sizeof peer);
        wzp_worker_note_pressure(w, peer);
        WZP_DEBUG(MOD, "%s: Initial refused: invalid or expired Retry token", peer);
        send_refusal(w, &hd, from, fromlen, NGTCP2_INVALID_TOKEN, "invalid Retry token");
        return WZP_SCREEN_ANSWERED;
    case WZP_TOKEN_NONE:
        break;
    }
    struct wzp_addr_key key;
    wzp_addr_key_of(&key, from);
    if (!retry_wanted(w, &key))
        return WZP_SCREEN_PASS;
    send_retry(w, &hd, from, fromlen);
    return WZP_SCREEN_ANSWERED;
}

struct wzp_conn *wzp_conn_accept(struct wzp_worker *w, const uint8_t *pkt, size_t len,
                                 const struct sockaddr *from, socklen_t fromlen)
{
    /* The worker that received the packet screened it (wzp_conn_screen_initial); what
     * is checked again here is what this connection needs to know. */
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, pkt, len) != 0 || hd.dcid.datalen < NGTCP2_MIN_INITIAL_DCIDLEN)
        return NULL;
    char peer[64];
    format_addr(from, peer, sizeof peer);
    ngtcp2_cid odcid;
    const ngtcp2_cid *retried = NULL;
    if (hd.token.len > 0) {
        if (!wzp_retry_verify(w->relay->retry_secret, &hd, from, fromlen, wzp_retry_clock_ns(),
                              &odcid)) {
            WZP_DEBUG(MOD, "%s: Initial dropped: its token expired on the way", peer);
            return NULL;
        }
        retried = &odcid;
    }
    struct wzp_relay *r = w->relay;
    /* Under pressure a client gets less time for its first flight: slots held by
     * senders that never finish come back sooner. */
    uint64_t timeout_ms = wzp_quota_handshakes(&r->quota) >= pressure_threshold(r)
                              ? WZP_HANDSHAKE_TIMEOUT_PRESSURE_MS
                              : WZP_HANDSHAKE_TIMEOUT_MS;
    struct wzp_addr_key key;
    wzp_addr_key_of(&key, from);
    enum wzp_quota_refusal refusal = admit_new_connection(w, &key, peer);
    if (refusal == WZP_QUOTA_ADDR_NO_CONNECTION) /* lasting: say so, or the client retries */
        send_refusal(w, &hd, from, fromlen, NGTCP2_CONNECTION_REFUSED,
                     "too many connections from this address");
    if (refusal != WZP_QUOTA_GRANTED)
        return NULL;
    struct wzp_conn *c = wzp_conn_zalloc();
    if (!c || wzp_worker_attach(w, c) != WZP_OK) {
        free(c);
        wzp_quota_give_handshake(&r->quota, &key);
        wzp_quota_give_connection(&r->quota, &key);
        return NULL;
    }
    c->quota_key = key;
    wzp_dgq_init(&c->dgq, WZP_CONN_DGQ_BYTES);
    c->w = w;
    c->tlsctx.conn_ref.get_conn = get_conn;
    c->tlsctx.conn_ref.user_data = c;
    c->tlsctx.on_client_hello = conn_on_client_hello;
    c->tlsctx.tx_contexts = c->tx_crypto;
    c->max_tier = -1;
    c->handshake_counted = true;
    c->created_ns = wzp_now_ns();
    /* Backstop: ngtcp2's handshake timeout should fire first. */
    c->deadline_ns = c->created_ns + (timeout_ms + 1000ull) * 1000000ull;
    memcpy(&c->remote, from, fromlen);
    c->remote_len = fromlen;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    ngtcp2_path path;
    conn_path(c, &path, from, fromlen);
    if (conn_create_quic(c, &hd, retried, timeout_ms, &path)) {
        WZP_WARN(MOD, "%s: could not set up a new connection", peer);
        wzp_conn_destroy(c);
        return NULL;
    }
    WZP_STAT_INC(&w->stats, conns_accepted);
    WZP_DEBUG(MOD, "%s: new connection (worker %u%s)", peer, w->idx,
              retried ? ", address validated" : "");
    return c;
}

static void release_handshake(struct wzp_conn *c)
{
    if (c->handshake_counted) {
        c->handshake_counted = false;
        wzp_quota_give_handshake(&c->w->relay->quota, &c->quota_key);
    }
}

/* A queued outgoing stream record with a copy of data (len may be 0). */
static struct wzp_out_stream *out_stream_new(struct wzp_conn *c, const void *data, size_t len)
{
    struct wzp_out_stream *s = calloc(1, sizeof *s);
    if (!s || (len && wzp_buf_append(&s->data, data, len))) {
        free(s);
        return NULL;
    }
    s->id = -1;
    wzp_worker_account_signal_bytes(c->w, (int64_t)len);
    return s;
}

static void out_stream_free(struct wzp_conn *c, struct wzp_out_stream *s)
{
    wzp_worker_account_signal_bytes(c->w, -(int64_t)s->data.len);
    wzp_buf_free(&s->data);
    free(s);
}

static void out_stream_append(struct wzp_conn *c, struct wzp_out_stream *s)
{
    if (c->out_tail)
        c->out_tail->next = s;
    else
        c->out_head = s;
    c->out_tail = s;
}

/* Free every signal buffer, in and out: once closing, nothing is read or sent again. */
static void conn_free_signal_buffers(struct wzp_conn *c)
{
    for (size_t i = 0; i < c->in_cap; i++)
        if (c->in[i].used)
            in_stream_release(c, &c->in[i]);
    free(c->in);
    c->in = NULL;
    c->in_cap = 0;
    c->frames_waiting = false;
    c->partial_since_ns = 0;
    while (c->out_head) {
        struct wzp_out_stream *s = c->out_head;
        c->out_head = s->next;
        out_stream_free(c, s);
    }
    c->out_tail = NULL;
    c->out_count = 0;
}

/*
 * The connection stops being a room member: it leaves its room (if joined) and gives back
 * its session (if it held one, joined or waiting for its CallOffer). The one place either
 * happens; called on every path out of AWAIT_OFFER and JOINED.
 */
static void conn_end_session(struct wzp_conn *c, const char *why)
{
    wzp_sfu_leave(c, why);
    if (c->session_reserved) {
        c->session_reserved = false;
        wzp_quota_give_session(&c->w->relay->quota);
    }
    wzp_dcall_gone(c); /* a _signal connection: unreachable, its calls hung up */
}

/* Enter CLOSING or DRAINING: no more input or output, freed by the timer at the deadline. */
static void conn_enter_closed(struct wzp_conn *c, enum wzp_conn_state state, uint64_t deadline_ns)
{
    c->state = state;
    c->deadline_ns = deadline_ns;
    conn_free_signal_buffers(c);
    wzp_dgq_destroy(&c->dgq);
    wzp_dgq_init(&c->dgq, WZP_CONN_DGQ_BYTES);
    conn_arm_timer(c);
}

void wzp_conn_destroy(struct wzp_conn *c)
{
    struct wzp_worker *w = c->w;
    conn_end_session(c, "error");
    if (c->state == WZP_CONN_HANDSHAKE && c->qc && !ngtcp2_conn_get_handshake_completed(c->qc))
        WZP_STAT_INC(&w->stats, handshake_failures);
    release_handshake(c);
    if (c->affinity_ref)
        wzp_affinity_unref(w->relay->affinity, c->tlsctx.sni, w->idx);
    wzp_worker_timer_cancel(w, &c->tnode);
    wzp_worker_detach(w, c); /* every CID key of c, whatever ngtcp2 still lists */
    if (c->qc)
        ngtcp2_conn_del(c->qc);
    if (c->tls)
        gnutls_deinit(c->tls);
    conn_free_signal_buffers(c);
    WZP_CHECK(w->conns || atomic_load(&w->gauges.signal_bytes) == 0);
    wzp_dgq_destroy(&c->dgq);
    free(c->close_pkt);
    free(c->auth_claims);
    wzp_quota_give_connection(&w->relay->quota, &c->quota_key);
    free(c);
    WZP_STAT_INC(&w->stats, conns_closed);
}

/*
 * Send CONNECTION_CLOSE built from ccerr and enter the closing period. Never frees c: if
 * no close packet can be built, the closing period is zero and the timer frees it.
 */
static void conn_close_with(struct wzp_conn *c, const ngtcp2_connection_close_error *ccerr)
{
    if (conn_is_closed(c))
        return;
    conn_end_session(c, c->close_cause ? c->close_cause : "error");
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    uint8_t *buf = wzp_worker_tx_buf(c->w);
    uint64_t now = wzp_worker_clock(c->w);
    conn_ts(c, now);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->qc, &ps.path, &pi, buf,
                                                        WZP_TX_PACKET_BYTES, ccerr, now);
    if (n <= 0) {
        conn_enter_closed(c, WZP_CONN_CLOSING, now);
        return;
    }
    c->close_pkt = malloc((size_t)n);
    if (c->close_pkt) {
        memcpy(c->close_pkt, buf, (size_t)n);
        c->close_len = (size_t)n;
    }
    wzp_worker_tx_commit(c->w, (size_t)n, (struct sockaddr *)ps.path.remote.addr,
                         ps.path.remote.addrlen);
    c->close_last_sent_ns = now;
    conn_enter_closed(c, WZP_CONN_CLOSING, now + closing_period_ns(c));
}

void wzp_conn_close(struct wzp_conn *c, const char *reason)
{
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_application_error(&ccerr, 0, (const uint8_t *)reason,
                                                        strlen(reason));
    conn_close_with(c, &ccerr);
}

static bool sni_is_reserved(const char *sni)
{
    return strcmp(sni, "_signal") == 0 || strcmp(sni, "_probe") == 0 ||
           strcmp(sni, "_federation") == 0;
}

static bool sni_is_hostname(const char *sni)
{
    return strspn(sni, "abcdefghijklmnopqrstuvwxyz0123456789-.") == strlen(sni);
}

static void conn_close_transport(struct wzp_conn *c, int liberr, const char *why)
{
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    if (c->policy_refused) {
        ngtcp2_connection_close_error_set_transport_error(&ccerr, NGTCP2_CONNECTION_REFUSED,
                                                          (const uint8_t *)c->fatal_reason,
                                                          strlen(c->fatal_reason));
        WZP_INFO(MOD, "%s: refused by policy (on_connect, sni %s): %s", c->peer,
                 c->tlsctx.sni_present ? c->tlsctx.sni : "-", c->fatal_reason);
        wzp_sfu_event_refusal(c->peer, c->tlsctx.sni_present ? c->tlsctx.sni : NULL, NULL,
                              c->fatal_reason);
    } else if (liberr == NGTCP2_ERR_CRYPTO) {
        uint8_t alert = ngtcp2_conn_get_tls_alert(c->qc);
        ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, NULL, 0);
        if (alert == GNUTLS_A_NO_APPLICATION_PROTOCOL)
            WZP_STAT_INC(&c->w->stats, conns_refused_alpn);
        if (alert == GNUTLS_A_ILLEGAL_PARAMETER && c->tlsctx.sni_present &&
            !sni_is_hostname(c->tlsctx.sni)) {
            /* GnuTLS refuses the name itself; see tls.h. */
            WZP_STAT_INC(&c->w->stats, conns_refused_sni);
            WZP_INFO(MOD,
                     "%s: refused: SNI \"%s\" %s; the TLS library accepts only letters, "
                     "digits, '-' and '.' in server names",
                     c->peer, c->tlsctx.sni,
                     sni_is_reserved(c->tlsctx.sni)
                         ? "is reserved for a service this relay does not offer yet"
                         : "is not a valid room name");
        } else {
            WZP_INFO(MOD, "%s: refused: TLS handshake failed (alert %u: %s)", c->peer, alert,
                     gnutls_alert_get_name((gnutls_alert_description_t)alert));
        }
    } else if (why) {
        ngtcp2_connection_close_error_set_transport_error(
            &ccerr, NGTCP2_CRYPTO_ERROR | GNUTLS_A_NO_APPLICATION_PROTOCOL, (const uint8_t *)why,
            strlen(why));
        WZP_INFO(MOD, "%s: refused: %s", c->peer, why);
    } else {
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
        WZP_INFO(MOD, "%s: connection error: %s", c->peer, ngtcp2_strerror(liberr));
    }
    conn_close_with(c, &ccerr);
}

/* ---------------------------------------------------------------- signals in */

static void conn_refuse(struct wzp_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_refuse(struct wzp_conn *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    WZP_INFO(MOD, "%s: refused (sni %s): %s", c->peer, c->sni[0] ? c->sni : "-", why);
    wzp_sfu_event_refusal(c->peer, c->sni, c->fingerprint[0] ? c->fingerprint : NULL, why);
    wzp_conn_close(c, why);
}

/* Empty FIN on our half of a client stream, as a quinn receiver does when it drops it. */
static void finish_client_stream(struct wzp_conn *c, int64_t id)
{
    struct wzp_out_stream *s = out_stream_new(c, NULL, 0);
    if (!s)
        return;
    s->id = id;
    out_stream_append(c, s);
}

/* The CallOffer: the room decides, the connection changes state (or closes). */
static void conn_join(struct wzp_conn *c, const struct wzp_signal *offer)
{
    char reason[WZP_SFU_REASON_MAX];
    if (wzp_sfu_join(c, offer, reason, sizeof reason) != WZP_OK) {
        wzp_conn_close(c, reason);
        return;
    }
    c->state = WZP_CONN_JOINED;
    c->deadline_ns = 0; /* ngtcp2's idle timeout bounds a joined connection */
}

/* An AuthToken, first signal of a room or "_signal" connection: validate it (auth.h). */
static void conn_start_auth(struct wzp_conn *c, const struct wzp_signal *sig)
{
    struct wzp_worker *w = c->w;
    if (!w->auth) {
        WZP_STAT_INC(&w->stats, join_refused_auth);
        conn_refuse(c, "AuthToken received but authentication is not enabled on this relay");
        return;
    }
    if (c->authenticated) {
        WZP_STAT_INC(&w->stats, join_refused_protocol);
        conn_refuse(c, "a second AuthToken");
        return;
    }
    int rv = wzp_auth_start(w->auth, sig->u.auth_token.token, c->slot, c->gen);
    if (rv == WZP_OK) {
        c->auth_pending = true;
        return;
    }
    WZP_STAT_INC(&w->stats, auth_fail);
    if (rv == WZP_EFULL) {
        WZP_STAT_INC(&w->stats, auth_fail_busy);
        conn_refuse(c, "the relay is validating %u tokens already: try again in a moment",
                    wzp_auth_in_flight(w->auth));
    } else if (rv == WZP_ETOOBIG) {
        WZP_STAT_INC(&w->stats, auth_fail_too_long);
        conn_refuse(c, "AuthToken longer than %d bytes", WZP_AUTH_TOKEN_MAX);
    } else {
        conn_refuse(c, "out of memory for token validation");
    }
}

static void conn_dispatch_signals(struct wzp_conn *c);

void wzp_conn_auth_done(struct wzp_conn *c, const struct wzp_auth_result *res)
{
    if (!c->auth_pending || conn_is_closed(c))
        return;
    c->auth_pending = false;
    struct wzp_worker *w = c->w;
    if (res->status != WZP_AUTH_OK) {
        WZP_STAT_INC(&w->stats, auth_fail);
        switch (res->status) {
        case WZP_AUTH_INVALID:
            WZP_STAT_INC(&w->stats, auth_fail_invalid);
            break;
        case WZP_AUTH_HTTP_ERROR:
            WZP_STAT_INC(&w->stats, auth_fail_http_error);
            break;
        case WZP_AUTH_TIMEOUT:
            WZP_STAT_INC(&w->stats, auth_fail_timeout);
            break;
        case WZP_AUTH_UNREACHABLE:
            WZP_STAT_INC(&w->stats, auth_fail_unreachable);
            break;
        default:
            WZP_STAT_INC(&w->stats, auth_fail_bad_response);
            break;
        }
        conn_refuse(c, "featherChat authentication failed (%s): %s",
                    wzp_auth_status_name(res->status), res->detail);
        wzp_worker_mark_dirty(w, c);
        return;
    }
    WZP_STAT_INC(&w->stats, auth_ok);
    c->authenticated = true;
    memcpy(c->auth_fp, res->fingerprint, sizeof c->auth_fp);
    free(c->auth_claims);
    c->auth_claims = res->claims ? strdup(res->claims) : NULL;
    char esc[2 * WZP_FINGERPRINT_LEN + 8];
    wzp_log_escape_text(c->auth_fp, esc, sizeof esc);
    WZP_INFO(MOD, "%s: authenticated by featherChat as %s (sni %s)", c->peer, esc, c->sni);
    c->frames_waiting = true; /* what arrived meanwhile */
    conn_dispatch_signals(c);
    wzp_worker_mark_dirty(w, c);
}

static void conn_handle_frame(struct wzp_conn *c, const uint8_t *body, size_t len)
{
    struct wzp_signal sig;
    char err[160];
    WZP_STAT_INC(&c->w->stats, signals_received);
    if (wzp_signal_parse(body, len, &sig, err, sizeof err) != WZP_OK) {
        WZP_STAT_INC(&c->w->stats, signals_malformed);
        if (c->state == WZP_CONN_AWAIT_OFFER || c->state == WZP_CONN_SIGNAL_REGISTER) {
            WZP_STAT_INC(&c->w->stats, join_refused_protocol);
            conn_refuse(c, "malformed signal: %s", err);
        } else {
            WZP_DEBUG(MOD, "%s: ignoring malformed signal: %s", c->peer, err);
        }
        return;
    }
    bool first = c->state == WZP_CONN_SIGNAL_REGISTER || c->state == WZP_CONN_AWAIT_OFFER;
    if (first && sig.type == WZP_SIG_AUTH_TOKEN) {
        conn_start_auth(c, &sig);
    } else if (first && c->w->auth && !c->authenticated) {
        WZP_STAT_INC(&c->w->stats, auth_fail);
        WZP_STAT_INC(&c->w->stats, auth_fail_no_token);
        conn_refuse(c,
                    "expected AuthToken, got %s: this relay requires featherChat "
                    "authentication",
                    wzp_signal_type_name(sig.type));
    } else if (c->state == WZP_CONN_SIGNAL_REGISTER) {
        if (sig.type == WZP_SIG_REGISTER_PRESENCE) {
            wzp_dcall_register(c, &sig);
        } else {
            WZP_STAT_INC(&c->w->stats, join_refused_protocol);
            conn_refuse(c, "expected RegisterPresence, got %s", wzp_signal_type_name(sig.type));
        }
    } else if (c->state == WZP_CONN_SIGNAL) {
        wzp_dcall_message(c, &sig);
    } else if (c->state == WZP_CONN_AWAIT_OFFER) {
        if (sig.type == WZP_SIG_CALL_OFFER) {
            conn_join(c, &sig);
        } else {
            WZP_STAT_INC(&c->w->stats, join_refused_protocol);
            conn_refuse(c, "expected CallOffer, got %s", wzp_signal_type_name(sig.type));
        }
    } else {
        WZP_DEBUG(MOD, "%s: ignoring %s on a room connection", c->peer,
                  wzp_signal_type_name(sig.type));
    }
    wzp_signal_clear(&sig);
}

/* Dispatch complete frames strictly in client stream-ID order (0, 4, 8, ...). Only after
 * a frame completed: a media packet does not touch the stream slots. */
static void conn_dispatch_signals(struct wzp_conn *c)
{
    if (!c->frames_waiting)
        return;
    for (;;) {
        if (c->auth_pending)
            return; /* the frames wait for the validator's answer */
        if (c->state != WZP_CONN_AWAIT_OFFER && c->state != WZP_CONN_JOINED &&
            c->state != WZP_CONN_SIGNAL_REGISTER && c->state != WZP_CONN_SIGNAL)
            return; /* frames_waiting stays set until they can be dispatched */
        struct wzp_in_stream *s = in_stream_get(c, c->next_in_id, false);
        if (!s || !s->complete) {
            c->frames_waiting = false; /* the next completed frame sets it again */
            return;
        }
        const uint8_t *body;
        size_t len;
        wzp_signal_frame_peek(s->buf.data, s->buf.len, &body, &len);
        int64_t id = s->id;
        c->next_in_id += 4;
        conn_handle_frame(c, body, len);
        if (conn_is_closed(c))
            return; /* refused: closing freed every stream buffer, s included */
        in_stream_release(c, s);
        finish_client_stream(c, id);
    }
}

/* ---------------------------------------------------------------- SNI dispatch */

static bool room_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > WZP_ROOM_NAME_LEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return false;
    }
    return true;
}

void wzp_conn_close_after_send(struct wzp_conn *c, const char *reason)
{
    snprintf(c->linger_reason, sizeof c->linger_reason, "%s", reason);
    c->state = WZP_CONN_SERVING;
    c->deadline_ns = wzp_now_ns() + (uint64_t)WZP_CONN_VERSION_LINGER_MS * 1000000ull;
    conn_arm_timer(c);
}

static void conn_serve_version(struct wzp_conn *c)
{
    struct wzp_out_stream *s = out_stream_new(c, WZP_BUILD_HASH, strlen(WZP_BUILD_HASH));
    if (!s) {
        wzp_conn_close(c, "");
        return;
    }
    s->uni = true;
    s->next = c->out_head;
    c->out_head = s;
    if (!c->out_tail)
        c->out_tail = s;
    wzp_conn_close_after_send(c, "");
}

static void conn_on_handshake_done(struct wzp_conn *c)
{
    struct wzp_relay *r = c->w->relay;
    release_handshake(c);
    /* The TLS session has done its work: ngtcp2 holds the keys (key updates derive from
     * them) and has copied every handshake message it still has to send. Freeing it
     * saves ~11 KiB per connection. */
    ngtcp2_conn_set_tls_native_handle(c->qc, NULL);
    gnutls_deinit(c->tls);
    c->tls = NULL;
    if (c->tlsctx.sni_invalid) {
        WZP_STAT_INC(&c->w->stats, conns_refused_sni);
        conn_refuse(c, "malformed TLS server name");
        return;
    }
    snprintf(c->sni, sizeof c->sni, "%s", c->tlsctx.sni_present ? c->tlsctx.sni : "default");
    if (strcmp(c->sni, "ping") == 0) {
        WZP_DEBUG(MOD, "%s: ping", c->peer);
        wzp_conn_close(c, "");
        return;
    }
    if (strcmp(c->sni, "version") == 0) {
        conn_serve_version(c);
        return;
    }
    if (strcmp(c->sni, "_signal") == 0) {
        c->state = WZP_CONN_SIGNAL_REGISTER;
        c->deadline_ns = wzp_now_ns() + (uint64_t)WZP_CONN_REGISTER_MS * 1000000ull;
        return;
    }
    if (sni_is_reserved(c->sni)) {
        WZP_STAT_INC(&c->w->stats, conns_refused_sni);
        conn_refuse(c, "SNI %s is reserved for a service this relay does not offer yet", c->sni);
        return;
    }
    if (!room_name_valid(c->sni)) {
        WZP_STAT_INC(&c->w->stats, conns_refused_sni);
        conn_refuse(c, "invalid room name (allowed: a-z 0-9 - _ . up to %u characters)",
                    WZP_ROOM_NAME_LEN_MAX);
        return;
    }
    if (atomic_load(&r->draining)) {
        WZP_STAT_INC(&c->w->stats, join_refused_draining);
        conn_refuse(c, "relay is draining: connect to another relay");
        return;
    }
    if (!wzp_quota_take_session(&r->quota)) {
        WZP_STAT_INC(&c->w->stats, join_refused_sessions);
        conn_refuse(c, "max sessions (%u) reached", r->cfg.max_sessions);
        return;
    }
    c->session_reserved = true;
    c->state = WZP_CONN_AWAIT_OFFER;
    c->deadline_ns = wzp_now_ns() + (uint64_t)r->cfg.join_timeout_ms * 1000000ull;
}

/* ---------------------------------------------------------------- input */

static void conn_read_error(struct wzp_conn *c, int rv)
{
    switch (rv) {
    case NGTCP2_ERR_DRAINING: {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_conn_get_connection_close_error(c->qc, &ccerr);
        WZP_DEBUG(MOD, "%s: closed by peer (code %llu)", c->peer,
                  (unsigned long long)ccerr.error_code);
        conn_end_session(c, "closed");
        conn_enter_closed(c, WZP_CONN_DRAINING, wzp_now_ns() + closing_period_ns(c));
        return;
    }
    case NGTCP2_ERR_DROP_CONN:
    case NGTCP2_ERR_RETRY:
        wzp_conn_destroy(c);
        return;
    case NGTCP2_ERR_CALLBACK_FAILURE:
        if (c->fatal_reason[0]) {
            conn_close_transport(c, rv, c->fatal_reason);
            return;
        }
        /* fall through */
    default:
        conn_close_transport(c, rv, NULL);
    }
}

void wzp_conn_input(struct wzp_conn *c, const uint8_t *pkt, size_t len, const struct sockaddr *from,
                    socklen_t fromlen)
{
    if (c->state == WZP_CONN_DRAINING)
        return;
    uint64_t now = wzp_worker_now(c->w);
    if (c->state == WZP_CONN_CLOSING) {
        if (c->close_pkt && now - c->close_last_sent_ns > 50 * NGTCP2_MILLISECONDS) {
            memcpy(wzp_worker_tx_buf(c->w), c->close_pkt, c->close_len);
            wzp_worker_tx_commit(c->w, c->close_len, from, fromlen);
            c->close_last_sent_ns = now;
        }
        return;
    }
    ngtcp2_path path;
    conn_path(c, &path, from, fromlen);
    const ngtcp2_path *cur = ngtcp2_conn_get_path(c->qc);
    if (cur->remote.addrlen != fromlen || memcmp(cur->remote.addr, from, fromlen) != 0) {
        c->write_wanted = true; /* another path: PATH_CHALLENGE/RESPONSE go out at once */
        c->dg_max = 0;          /* and its own size */
    }
    ngtcp2_pkt_info pi = {0};
    int rv = ngtcp2_conn_read_pkt(c->qc, &path, &pi, pkt, len, conn_ts(c, now));
    conn_expiry_unknown(c); /* (a callback may have armed the timer in the middle) */
    if (rv != 0) {
        conn_read_error(c, rv);
        return;
    }
    if (c->handshake_done_pending) {
        c->handshake_done_pending = false;
        conn_on_handshake_done(c);
    }
    if (c->fatal_pending && c->state != WZP_CONN_CLOSING) {
        conn_refuse(c, "%s", c->fatal_reason);
        return;
    }
    if (c->tier_change_pending) {
        c->tier_change_pending = false;
        wzp_sfu_tier_changed(c, &c->tier_report);
    }
    conn_dispatch_signals(c);
    wzp_worker_mark_dirty(c->w, c);
}

/* ---------------------------------------------------------------- output */

int wzp_conn_queue_signal(struct wzp_conn *c, const uint8_t *frame, size_t len)
{
    if (c->state == WZP_CONN_CLOSING || c->state == WZP_CONN_DRAINING)
        return WZP_ESTATE;
    if (c->out_count >= WZP_CONN_MAX_OUT_SIGNALS) {
        WZP_STAT_INC(&c->w->stats, signal_backlog_closes);
        conn_refuse(c, "client is not reading signals (%u queued)", c->out_count);
        return WZP_EFULL;
    }
    struct wzp_out_stream *s = out_stream_new(c, frame, len);
    if (!s)
        return WZP_ENOMEM;
    out_stream_append(c, s);
    c->out_count++;
    WZP_STAT_INC(&c->w->stats, signals_sent);
    wzp_worker_mark_dirty(c->w, c);
    return WZP_OK;
}

int wzp_conn_queue_room_update(struct wzp_conn *c, const uint8_t *frame, size_t len)
{
    struct wzp_out_stream *prev = NULL;
    for (struct wzp_out_stream *s = c->out_head; s; prev = s, s = s->next) {
        if (!s->room_update || s->id >= 0)
            continue;
        if (prev)
            prev->next = s->next;
        else
            c->out_head = s->next;
        if (c->out_tail == s)
            c->out_tail = prev;
        c->out_count--;
        out_stream_free(c, s);
        WZP_STAT_INC(&c->w->stats, room_updates_coalesced);
        break; /* there is never more than one unopened RoomUpdate */
    }
    int rv = wzp_conn_queue_signal(c, frame, len);
    if (rv == WZP_OK)
        c->out_tail->room_update = true;
    return rv;
}

void wzp_conn_queue_datagram(struct wzp_conn *c, const uint8_t *data, size_t len)
{
    if (!c->dirty && c->tx_crypto[0]) {
        /* The flush after this batch seals c's packet: start fetching its keys (the AEAD
         * context's four lines, the header-protection round keys' three), which at
         * thousands of connections have left the cache (BENCHMARKS.md, "Prefetching the
         * receivers' keys"). After a key update (quinn 0.9 clients start one near 2^23
         * packets sent, rustls's AES-GCM confidentiality limit) [0] names the retired
         * context: a prefetch of it is wasted, never harmful (prefetches do not fault). */
        wzp_aead_prefetch(c->tx_crypto[0], false);
        wzp_aead_prefetch(c->tx_crypto[1], true);
    }
    unsigned dropped = wzp_dgq_push(&c->dgq, data, len);
    if (dropped)
        WZP_STAT_ADD(&c->w->stats, datagrams_queue_drops, dropped);
    wzp_worker_mark_dirty(c->w, c);
}

/* Open server streams for queued signals, in queue order, as far as credit allows. */
static void open_pending_streams(struct wzp_conn *c)
{
    for (struct wzp_out_stream *s = c->out_head; s; s = s->next) {
        if (s->id >= 0)
            continue;
        int rv = s->uni ? ngtcp2_conn_open_uni_stream(c->qc, &s->id, NULL)
                        : ngtcp2_conn_open_bidi_stream(c->qc, &s->id, NULL);
        if (rv != 0) {
            s->id = -1;
            return; /* NGTCP2_ERR_STREAM_ID_BLOCKED: wait for more credit, keep order */
        }
    }
}

static struct wzp_out_stream *next_writable(struct wzp_out_stream *s)
{
    for (; s; s = s->next)
        if (s->id >= 0 && (s->sent < s->data.len || !s->fin_sent))
            return s;
    return NULL;
}

/* Drop records whose bytes are all acknowledged (ngtcp2 no longer references them). */
static void sweep_out_streams(struct wzp_conn *c)
{
    struct wzp_out_stream **pp = &c->out_head, *last = NULL;
    while (*pp) {
        struct wzp_out_stream *s = *pp;
        if (s->id >= 0 && s->fin_sent && s->acked >= s->data.len) {
            *pp = s->next;
            if (s->data.len)
                c->out_count--;
            out_stream_free(c, s);
            continue;
        }
        last = s;
        pp = &s->next;
    }
    c->out_tail = last;
}

/*
 * The largest datagram payload the client takes on the current path. The client's
 * transport parameters are fixed after the handshake and path MTU discovery only raises
 * the path's size, so the value the last check found stays a safe bound until a datagram
 * exceeds it (then it is asked again: the path may have grown) or the path changes
 * (wzp_conn_input clears it). Voice datagrams never come near it, so a flush does not
 * ask ngtcp2 for it (the cache misses those two calls took at 1 000 connections move to
 * ngtcp2's packet writing, which reads the same lines: measured, no net saving in misses).
 */
static size_t max_datagram_payload(struct wzp_conn *c)
{
    const ngtcp2_transport_params *p = ngtcp2_conn_get_remote_transport_params(c->qc);
    if (!p || p->max_datagram_frame_size == 0)
        return 0;
    /* short header (1 + DCID 20 + PN 4), AEAD tag 16, DATAGRAM frame type + length 3 */
    size_t path = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
    size_t room = path > 44 ? path - 44 : 0;
    return WZP_MIN(room, (size_t)p->max_datagram_frame_size - 3);
}

/*
 * Write what ngtcp2 and our queues have, one packet per round. only_datagrams: nothing
 * but queued datagrams can be pending (conn_write_can_wait's conditions held), so the
 * packet carrying the last of them ends the loop without another call to learn that.
 */
static int conn_write_loop(struct wzp_conn *c, uint64_t ts, bool only_datagrams)
{
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi;
    bool joined = c->state == WZP_CONN_JOINED;
    size_t dg_max = joined ? c->dg_max : 0;
    bool dg_blocked = !joined;
    open_pending_streams(c);
    struct wzp_out_stream *s = next_writable(c->out_head);
    for (unsigned guard = 0; guard < 4096; guard++) {
        uint8_t *buf = wzp_worker_tx_buf(c->w);
        ngtcp2_ssize nwrite, ndatalen = -1;
        int accepted = 0;
        size_t dlen = 0;
        const uint8_t *d = dg_blocked ? NULL : wzp_dgq_peek(&c->dgq, &dlen);
        if (d && dlen > dg_max)
            dg_max = c->dg_max = (uint32_t)max_datagram_payload(c);
        WZP_CHECK(!d || dlen > dg_max || dg_max <= max_datagram_payload(c));
        if (d && dlen > dg_max) {
            wzp_dgq_pop(&c->dgq);
            WZP_STAT_INC(&c->w->stats, datagrams_too_big_for_path);
            continue;
        }
        if (s) {
            ngtcp2_vec v = {s->data.data + s->sent, s->data.len - s->sent};
            nwrite = ngtcp2_conn_writev_stream(
                c->qc, &ps.path, &pi, buf, WZP_TX_PACKET_BYTES, &ndatalen,
                NGTCP2_WRITE_STREAM_FLAG_MORE | NGTCP2_WRITE_STREAM_FLAG_FIN, s->id, &v, 1, ts);
        } else if (d) {
            ngtcp2_vec v = {(uint8_t *)d, dlen};
            /* The last one queued closes the packet: no further call to finish it. */
            uint32_t more =
                c->dgq.count > 1 || !only_datagrams ? NGTCP2_WRITE_DATAGRAM_FLAG_MORE : 0;
            nwrite = ngtcp2_conn_writev_datagram(c->qc, &ps.path, &pi, buf, WZP_TX_PACKET_BYTES,
                                                 &accepted, more, 0, &v, 1, ts);
        } else {
            nwrite = ngtcp2_conn_writev_stream(c->qc, &ps.path, &pi, buf, WZP_TX_PACKET_BYTES, NULL,
                                               0, -1, NULL, 0, ts);
        }
        if (s && ndatalen >= 0) {
            s->sent += (size_t)ndatalen;
            if (s->sent == s->data.len)
                s->fin_sent = true;
            s = next_writable(s);
        }
        if (accepted) {
            wzp_dgq_pop(&c->dgq);
            WZP_STAT_INC(&c->w->stats, datagrams_forwarded);
            WZP_STAT_ADD(&c->w->stats, bytes_forwarded, dlen);
        }
        if (nwrite == NGTCP2_ERR_WRITE_MORE)
            continue;
        if (s && (nwrite == NGTCP2_ERR_STREAM_SHUT_WR || nwrite == NGTCP2_ERR_STREAM_NOT_FOUND)) {
            s->fin_sent = true; /* the peer reset it: nothing more to send, sweep it */
            s->acked = s->sent = s->data.len;
            s = next_writable(s->next);
            continue;
        }
        if (s && nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
            s = next_writable(s->next); /* flow control: retry on a later flush */
            continue;
        }
        if (nwrite < 0)
            return (int)nwrite;
        if (nwrite == 0) {
            if (d && !accepted && !s) {
                dg_blocked = true; /* congestion window or packet full: retry after ACKs */
                continue;
            }
            if (s) {
                s = NULL; /* blocked by congestion control; flush what we have */
                continue;
            }
            return 0;
        }
        wzp_worker_tx_commit(c->w, (size_t)nwrite, (struct sockaddr *)ps.path.remote.addr,
                             ps.path.remote.addrlen);
        if (only_datagrams && accepted && !s && c->dgq.count == 0)
            return 0; /* that packet carried the last datagram (and any ACK) */
    }
    return 0;
}

/*
 * Whether a joined connection's flush may leave ngtcp2 alone. When nothing of ours waits
 * (no datagram, no signal unacknowledged, no callback asked for a write), ngtcp2 could
 * only write what its timers make due: an ACK, a keep-alive PING, a loss probe. Nothing
 * due (most flushes after a client's ACK-only packet): nothing to write. Something due
 * now or within --ack-delay (the ACK of a media packet is due after RTT/8): it waits
 * until --ack-delay from now for a datagram to this client, whose packet then carries
 * it; clients acknowledging every packet would otherwise get an ACK-only packet back for
 * each datagram they send, and the relay a timer event for each. The wait stays below
 * the max_ack_delay we announce (25 ms), which the client's loss detection allows for; a
 * PTO probe or keep-alive PING waits as long at most.
 */
static bool conn_nothing_but_datagrams(const struct wzp_conn *c)
{
    return c->state == WZP_CONN_JOINED && !c->write_wanted && !c->out_head;
}

static bool conn_write_can_wait(struct wzp_conn *c, uint64_t now, uint64_t exp)
{
    if (!conn_nothing_but_datagrams(c))
        return false;
    if (c->dgq.count) { /* --coalesce: wait for more, up to a packet's worth */
        if (c->w->relay->cfg.coalesce_ms == 0)
            return false;
        if (!c->coalesce_ns)
            c->coalesce_ns = now;
        if (c->ack_hold_ns && now >= ack_hold_until(c))
            return false;
        return now < coalesce_until(c) && wzp_dgq_bytes(&c->dgq) < WZP_COALESCE_FULL_BYTES;
    }
    bool due = c->expiry_handled || exp <= now;
    uint64_t hold = (uint64_t)c->w->relay->cfg.ack_delay_ms * NGTCP2_MILLISECONDS;
    if (hold == 0)
        return !due;
    if (c->ack_hold_ns) {
        if (now < ack_hold_until(c))
            return true;
        c->ack_hold_ns = 0; /* no datagram came */
        return !due;
    }
    if (!due && exp > now + hold)
        return true;
    c->ack_hold_ns = now;
    return true;
}

void wzp_conn_flush(struct wzp_conn *c)
{
    if (c->state == WZP_CONN_CLOSING || c->state == WZP_CONN_DRAINING)
        return;
    uint64_t now = wzp_worker_now(c->w);
    uint64_t exp = conn_expiry(c);
    if (conn_write_can_wait(c, now, exp)) {
        conn_arm_timer_at(c, exp);
        return;
    }
    bool only_datagrams = conn_nothing_but_datagrams(c) && !c->expiry_handled && exp > now;
    c->write_wanted = false;
    c->expiry_handled = false;
    c->ack_hold_ns = 0;
    int rv = conn_write_loop(c, conn_ts(c, now), only_datagrams);
    if (rv != 0) {
        conn_close_transport(c, rv, NULL);
        return;
    }
    if (c->dgq.count == 0)
        c->coalesce_ns = 0; /* (datagrams left by congestion control go at the next flush) */
    sweep_out_streams(c);
    if (c->state == WZP_CONN_SERVING && !c->out_head)
        c->deadline_ns = now; /* everything delivered and acknowledged: close */
    conn_arm_timer(c);
}

/* The state's deadline passed. Returns true if c was freed. */
static bool conn_deadline(struct wzp_conn *c)
{
    c->deadline_ns = 0;
    switch (c->state) {
    case WZP_CONN_CLOSING:
    case WZP_CONN_DRAINING:
        wzp_conn_destroy(c);
        return true;
    case WZP_CONN_HANDSHAKE:
        WZP_DEBUG(MOD, "%s: handshake not finished in time", c->peer);
        wzp_conn_destroy(c);
        return true;
    case WZP_CONN_AWAIT_OFFER:
        WZP_STAT_INC(&c->w->stats, join_timeouts);
        conn_refuse(c, "no CallOffer within %u ms", c->w->relay->cfg.join_timeout_ms);
        return false;
    case WZP_CONN_SERVING:
        wzp_conn_close(c, c->linger_reason);
        return false;
    case WZP_CONN_SIGNAL_REGISTER:
        WZP_STAT_INC(&c->w->stats, join_timeouts);
        conn_refuse(c, "no RegisterPresence within %u ms", (unsigned)WZP_CONN_REGISTER_MS);
        return false;
    case WZP_CONN_JOINED:
    case WZP_CONN_SIGNAL:
        return false;
    }
    return false;
}

void wzp_conn_timer_fired(struct wzp_conn *c)
{
    uint64_t now = wzp_worker_now(c->w); /* read by the wheel as it fired */
    if (c->deadline_ns && now >= c->deadline_ns && conn_deadline(c))
        return; /* freed */
    if (conn_is_closed(c)) {
        conn_arm_timer(c); /* fired early, or just entered a closing state */
        return;
    }
    if (c->partial_since_ns &&
        now >= c->partial_since_ns + WZP_CONN_FRAME_DEADLINE_MS * 1000000ull) {
        WZP_STAT_INC(&c->w->stats, signal_frame_timeouts);
        conn_refuse(c, "a signal frame was not completed within %u ms",
                    (unsigned)WZP_CONN_FRAME_DEADLINE_MS);
        return;
    }
    if (conn_expiry(c) <= now) {
        int rv = ngtcp2_conn_handle_expiry(c->qc, conn_ts(c, now));
        conn_expiry_unknown(c);
        if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
            WZP_DEBUG(MOD, "%s: %s", c->peer,
                      rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
            conn_end_session(c, "timed_out");
            wzp_conn_destroy(c);
            return;
        }
        if (rv != 0) {
            conn_close_transport(c, rv, NULL);
            return;
        }
        c->expiry_handled = true;
    }
    conn_arm_timer(c); /* the flush re-arms too; this keeps an early wake-up harmless */
    wzp_worker_mark_dirty(c->w, c);
}
