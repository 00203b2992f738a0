/*
 * wzpc.c - the WarzonePhone client library (see wzpc.h): one QUIC connection over
 * ngtcp2 0.12 + GnuTLS, driven by libev on the caller's loop.
 *
 * Structure:
 *   - ngtcp2 callbacks only record things: stream bytes go into per-stream buffers,
 *     datagrams into a receive queue, handshake completion into a flag.
 *   - After every ngtcp2_conn_read_pkt() the client "dispatches": it reports state
 *     changes, datagrams, finished uni streams and signals (in relay stream-ID order
 *     1, 5, 9, ...) to the user. User callbacks therefore never run inside ngtcp2.
 *   - Everything the user queues (signals, raw streams, datagrams) is written by
 *     flush(), run from the read/timer watchers or from an ev_prepare watcher that a
 *     send call arms, so several sends in one loop iteration share packets.
 *
 * Streams: every signal we send uses a new bidi stream (frame + FIN). On a bidi stream
 * the relay opens we read one frame and FIN our own half with an empty STREAM frame.
 * Stream data handed to ngtcp2 stays allocated until it is acknowledged or the stream
 * closes, because ngtcp2 does not copy it.
 *
 * Datagrams are congestion controlled by ngtcp2: they wait in a bounded FIFO
 * (WZPC_DGRAM_QUEUE_MAX) while the congestion window is full; a full queue refuses new
 * ones and counts the drop. Their blocks are recycled per client (no malloc per
 * datagram in the steady state).
 *
 * I/O cost (the load generator drives hundreds of clients from one thread): a socket
 * is drained with recvmmsg (a short batch means it is empty, so there is no failing
 * call), the packets of a batch share one clock reading, and received datagrams are
 * queued in a per-thread scratch buffer that stays in cache. A flush that writes
 * several packets sends them with one sendmmsg. None of this changes what goes on the
 * wire: the client still reads everything available before it writes, as before.
 *
 * Shared sockets (wzpc_mux, opt-in): the clients of one loop share a few UDP sockets.
 * Our connection IDs carry the client's slot, which routes received packets; clients
 * that got packets write once after the batch. Written packets queue per socket and go
 * out with one sendmmsg, groups of equal-sized packets as one UDP GSO message each
 * (the kernel splits them back into the same datagrams before the relay's socket).
 */
#include "wzpc.h"

#include "common.h"
#include "handshake.h"
#include "identity.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MOD "wzpc"

#define WZPC_DCID_LEN        18
#define WZPC_SCID_LEN        16
#define WZPC_DGRAM_QUEUE_MAX 1024
#define WZPC_UNI_MAX_BYTES   (1024 * 1024) /* larger uni streams are truncated */
#define WZPC_RECV_BATCH      64            /* packets per read callback (fairness) */
#define WZPC_RX_MMSG         16            /* packets per recvmmsg() */
#define WZPC_TX_BUF_BYTES    NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE
#define WZPC_TX_BATCH        8 /* packets per sendmmsg() in one flush */
#define WZPC_RX_BUF_BYTES    65536
/* Receive slots hold a whole UDP datagram; the extra 256 bytes keep the slots' first
 * (the only touched) cache lines from all landing in the same cache set. */
#define WZPC_RX_SLOT_BYTES   (WZPC_RX_BUF_BYTES + 256)
#define WZPC_DGRAM_MIN_CAP   256 /* smallest reusable datagram block */
#define WZPC_DGRAM_FREE_MAX  16  /* reusable blocks kept per client */
#define WZPC_MUX_MAX_SOCKETS 4096
/* Packets a shared socket queues before it sends them; all queues are also sent before
 * the loop blocks. Packets with application data (datagrams, stream data) go out once
 * WZPC_MUX_TX_DATA_BATCH of them wait, so batching adds little latency to media; ACK
 * and other control packets batch up to the full WZPC_MUX_TX_BATCH. */
#define WZPC_MUX_TX_BATCH      32
#define WZPC_MUX_TX_DATA_BATCH 8
#define WZPC_MUX_RECV_BATCH    128               /* packets per shared-socket read callback */
#define WZPC_MUX_RCVBUF        (4 * 1024 * 1024) /* asked for; the kernel may cap it */
#define WZPC_MUX_CID_PREFIX    8                 /* slot (4 bytes, masked) + tag (4 bytes) */
#define WZPC_GSO_MAX_SEGMENTS  64                /* the kernel's UDP_MAX_SEGMENTS */
#define WZPC_GSO_MAX_BYTES     60000
#define WZPC_DEFAULT_IDLE_MS   30000
#define WZPC_KEEPALIVE         (5 * NGTCP2_SECONDS)
#define WZPC_TLS_ALERT_NO_ALPN 120 /* no_application_protocol */
/* Short header + longest CID + packet number + AEAD tag + DATAGRAM frame header. */
#define WZPC_DGRAM_OVERHEAD (1 + NGTCP2_MAX_CIDLEN + 4 + 16 + 1 + 4)

static const char tls_priority[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:"
    "+SIGN-EDDSA-ED25519:%DISABLE_TLS13_COMPAT_MODE";

enum stream_kind {
    STREAM_LOCAL_BIDI,  /* we opened it: one outgoing frame, incoming bytes discarded */
    STREAM_REMOTE_BIDI, /* the relay opened it: one incoming frame, our half gets a FIN */
    STREAM_REMOTE_UNI,  /* the relay's uni stream: all bytes reported at FIN */
};

struct wzpc_stream {
    struct wzpc_stream *next;
    int64_t id; /* -1 while a local stream waits for stream credit */
    enum stream_kind kind;

    /* Send half. tx stays allocated until acknowledged (ngtcp2 does not copy it). */
    uint8_t *tx;
    size_t tx_len;
    size_t tx_off;   /* bytes handed to ngtcp2 */
    size_t tx_acked; /* bytes acknowledged (contiguous prefix) */
    bool tx_fin;     /* end the half after tx */
    bool tx_fin_sent;
    bool tx_blocked; /* flow-control blocked during the current flush */
    bool tx_dead;    /* reset by the peer (STOP_SENDING) or unknown to ngtcp2 */

    /* Receive half. */
    struct wzp_buf rx;
    bool rx_full;      /* frame complete, oversized or capped: drop further bytes */
    bool rx_end;       /* FIN or RESET_STREAM seen */
    bool rx_delivered; /* reported to the user (or found malformed) */
    bool closed;       /* ngtcp2 closed it: no more callbacks for this id */
};

/* A queued outgoing datagram. Blocks are recycled through a per-client free list, so
 * the steady state needs no malloc per datagram. */
struct wzpc_dgram {
    struct wzpc_dgram *next_free;
    size_t cap;
    size_t len;
    uint8_t data[];
};

/* One shared UDP socket of a mux, with the packets queued for it. */
struct wzpc_mux_sock {
    struct wzpc_mux *mux;
    int fd;
    ev_io rev;
    struct sockaddr_storage local_addr;
    socklen_t local_addrlen;
    struct wzpc_mux_sock *tx_next; /* on mux->tx_socks */
    bool tx_listed;
    unsigned ntx, ntx_data; /* queued packets, of which carry application data */
    struct wzpc_client *tx_owner[WZPC_MUX_TX_BATCH]; /* valid until the queue is sent */
    size_t tx_len[WZPC_MUX_TX_BATCH];
    uint8_t tx[WZPC_MUX_TX_BATCH][WZPC_TX_BUF_BYTES];
};

struct wzpc_mux {
    struct ev_loop *loop;
    struct sockaddr_storage remote_addr;
    socklen_t remote_addrlen;
    struct wzpc_mux_sock *socks;
    unsigned nsocks, next_sock;
    uint32_t key;               /* XORed onto slot numbers in connection IDs */
    struct wzpc_client **slots; /* by slot number; NULL = free */
    uint32_t nslots, slot_hint; /* slot_hint: no free slot below it */
    struct wzpc_client *dirty;  /* clients to flush after a receive batch */
    struct wzpc_mux_sock *tx_socks;
    ev_prepare prepare; /* sends the queued packets before the loop blocks */
    bool gso_off;       /* the kernel refused UDP_SEGMENT: one datagram per message */
    uint32_t gso_gen;   /* numbers the queue sends, see mux_sock_send */
};

struct wzpc_client {
    ngtcp2_crypto_conn_ref conn_ref; /* gnutls session ptr -> ngtcp2_conn */
    struct ev_loop *loop;
    struct wzpc_config cfg; /* string members point at the copies below */
    char *alias;
    char *auth_token;
    uint8_t alpn[255];
    size_t alpn_len; /* 0 = offer no ALPN */

    int fd; /* own socket; -1 on a mux */
    struct wzpc_mux *mux;
    struct wzpc_mux_sock *msock; /* the shared socket used, on a mux */
    uint32_t mux_slot, cid_tag;
    bool dirty; /* on mux->dirty */
    struct wzpc_client *dirty_next;
    uint32_t gso_gen;   /* mux->gso_gen of the send that placed our last packet */
    unsigned gso_group; /* ... and the group it went into */
    struct sockaddr_storage local_addr, remote_addr;
    socklen_t local_addrlen, remote_addrlen;
    gnutls_certificate_credentials_t cred;
    gnutls_session_t session;
    ngtcp2_conn *conn;
    ev_io rev;
    ev_timer timer;
    ev_prepare prepare;

    enum wzpc_state state;
    struct wzp_identity id;

    /* Set from ngtcp2 callbacks, acted on after read_pkt returns. */
    bool hs_completed;
    bool alpn_mismatch;
    bool got_stateless_reset;

    bool dead; /* the QUIC connection is closing/draining/gone: no more I/O */

    struct wzpc_stream *streams; /* in creation order */
    struct wzpc_stream **streams_tail;
    int64_t next_rx_bidi; /* next relay-opened bidi stream to deliver: 1, 5, 9, ... */

    struct wzpc_dgram *dq[WZPC_DGRAM_QUEUE_MAX]; /* outgoing datagram ring */
    size_t dq_head, dq_count;
    struct wzpc_dgram *dfree; /* recycled blocks (at most WZPC_DGRAM_FREE_MAX) */
    unsigned dfree_count;
    uint64_t peer_max_dgram;  /* the relay's max_datagram_frame_size, once connected */
    uint64_t rx_kernel_ns;    /* kernel receive time of the packet being handled, or 0 */
    struct wzp_buf rx_dgrams; /* [size_t len][bytes]... received during read_pkt */
    struct wzp_buf *rx_dq;    /* where cb_recv_datagram appends: rx_dgrams or the
                                 thread's receive scratch during read_cb */

    bool close_seen, close_by_peer, close_is_app;
    uint64_t close_code;
    char close_reason[256];

    struct wzpc_stats stats;
};

static void flush(struct wzpc_client *c);
static void enter_closed(struct wzpc_client *c);

/* ------------------------------------------------------------------ streams */

static struct wzpc_stream *stream_find(struct wzpc_client *c, int64_t id)
{
    for (struct wzpc_stream *s = c->streams; s != NULL; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static struct wzpc_stream *stream_add(struct wzpc_client *c, int64_t id, enum stream_kind kind)
{
    struct wzpc_stream *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->id = id;
    s->kind = kind;
    *c->streams_tail = s;
    c->streams_tail = &s->next;
    return s;
}

static void stream_free(struct wzpc_stream *s)
{
    free(s->tx);
    wzp_buf_free(&s->rx);
    free(s);
}

static bool stream_tx_done(const struct wzpc_stream *s)
{
    if (s->tx_dead)
        return true;
    return s->tx_acked >= s->tx_len && (s->tx_fin_sent || !s->tx_fin);
}

/*
 * A local stream is released once its bytes are acknowledged (the relay may keep its
 * own half open); a relay stream only once ngtcp2 closed it, so no late callback can
 * recreate it, and after its frame was delivered.
 */
static bool stream_releasable(const struct wzpc_stream *s)
{
    switch (s->kind) {
    case STREAM_LOCAL_BIDI:
        return s->id >= 0 && (s->closed || stream_tx_done(s));
    case STREAM_REMOTE_BIDI:
        return s->closed && s->rx_delivered;
    case STREAM_REMOTE_UNI:
        return s->closed && (s->rx_delivered || !s->rx_end);
    }
    return false;
}

static void sweep_streams(struct wzpc_client *c)
{
    struct wzpc_stream **pp = &c->streams;

    while (*pp != NULL) {
        struct wzpc_stream *s = *pp;

        if (stream_releasable(s)) {
            *pp = s->next;
            stream_free(s);
        } else {
            pp = &s->next;
        }
    }
    c->streams_tail = &c->streams;
    while (*c->streams_tail != NULL)
        c->streams_tail = &(*c->streams_tail)->next;
}

/* Queue bytes (ownership taken) on a new local bidi stream; it opens during flush(). */
static int queue_local_stream(struct wzpc_client *c, uint8_t *data, size_t len, bool fin)
{
    struct wzpc_stream *s = stream_add(c, -1, STREAM_LOCAL_BIDI);

    if (s == NULL) {
        free(data);
        return WZP_ENOMEM;
    }
    s->tx = data;
    s->tx_len = len;
    s->tx_fin = fin;
    return WZP_OK;
}

static bool is_remote_bidi(int64_t id)
{
    return (id & 3) == 1;
}

static bool is_remote_uni(int64_t id)
{
    return (id & 3) == 3;
}

/*
 * The stream a relay-side event refers to, created on first sight. Returns NULL for
 * our own streams that are already released, relay bidi streams already delivered and
 * on allocation failure: their bytes are simply dropped.
 */
static struct wzpc_stream *stream_for_event(struct wzpc_client *c, int64_t id)
{
    struct wzpc_stream *s = stream_find(c, id);

    if (s != NULL || (!is_remote_bidi(id) && !is_remote_uni(id)))
        return s;
    if (is_remote_bidi(id) && id < c->next_rx_bidi)
        return NULL;
    s = stream_add(c, id, is_remote_bidi(id) ? STREAM_REMOTE_BIDI : STREAM_REMOTE_UNI);
    if (s != NULL && s->kind == STREAM_REMOTE_BIDI)
        s->tx_fin = true; /* answer with an empty FIN on our half, like quinn */
    return s;
}

/* Buffer bytes of a relay stream as far as they are useful. */
static void stream_take_bytes(struct wzpc_stream *s, const uint8_t *data, size_t len)
{
    const uint8_t *body;
    size_t body_len;

    if (s->kind == STREAM_LOCAL_BIDI || s->rx_full || len == 0)
        return;
    if (s->kind == STREAM_REMOTE_UNI && s->rx.len + len > WZPC_UNI_MAX_BYTES) {
        len = WZPC_UNI_MAX_BYTES - s->rx.len;
        s->rx_full = true;
    }
    if (wzp_buf_append(&s->rx, data, len) != WZP_OK) {
        s->rx_full = true; /* delivered as malformed / truncated */
        return;
    }
    if (s->kind == STREAM_REMOTE_BIDI &&
        wzp_signal_frame_peek(s->rx.data, s->rx.len, &body, &body_len) != WZP_EAGAIN)
        s->rx_full = true;
}

/* ------------------------------------------------------------ state & close */

static void set_state(struct wzpc_client *c, enum wzpc_state state)
{
    if (c->state == state || c->state == WZPC_CLOSED)
        return;
    WZP_DEBUG(MOD, "%s: state %d -> %d", c->id.fingerprint, c->state, state);
    c->state = state;
    if (c->cfg.on_state != NULL)
        c->cfg.on_state(c, state, c->cfg.user_data);
}

static void enter_closed(struct wzpc_client *c)
{
    if (c->state == WZPC_CLOSED)
        return;
    c->dead = true;
    ev_io_stop(c->loop, &c->rev);
    ev_timer_stop(c->loop, &c->timer);
    ev_prepare_stop(c->loop, &c->prepare);
    set_state(c, WZPC_CLOSED);
}

static void record_close(struct wzpc_client *c, bool by_peer,
                         const ngtcp2_connection_close_error *ccerr)
{
    size_t n = WZP_MIN(ccerr->reasonlen, sizeof(c->close_reason) - 1);

    c->close_seen = true;
    c->close_by_peer = by_peer;
    c->close_is_app = ccerr->type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
    c->close_code = ccerr->error_code;
    if (n > 0)
        memcpy(c->close_reason, ccerr->reason, n);
    c->close_reason[n] = '\0';
}

static int client_fd(const struct wzpc_client *c)
{
    return c->msock != NULL ? c->msock->fd : c->fd;
}

static void mux_sock_send(struct wzpc_mux_sock *ms);

static void send_one_packet(int fd, const uint8_t *pkt, size_t len)
{
    ssize_t n;

    do {
        n = send(fd, pkt, len, 0);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the packet is lost and QUIC recovers. ECONNREFUSED: an ICMP error from
     * an earlier packet, ignored like quinn does (the idle timer decides). */
    if (n < 0)
        WZP_DEBUG(MOD, "send: %s", strerror(errno));
}

/* Send one packet now (on a mux: after what is queued on the socket, to keep order). */
static void send_packet(struct wzpc_client *c, const uint8_t *pkt, size_t len)
{
    if (c->msock != NULL)
        mux_sock_send(c->msock);
    send_one_packet(client_fd(c), pkt, len);
}

_Static_assert(WZPC_TX_BATCH <= WZPC_MUX_TX_BATCH, "send_batch takes either queue");

/*
 * Send npkt packets on a connected socket with as few system calls as possible
 * (npkt <= WZPC_MUX_TX_BATCH). A packet the kernel refuses is lost; QUIC recovers.
 */
static void send_batch(int fd, uint8_t (*bufs)[WZPC_TX_BUF_BYTES], const size_t *lens, size_t npkt)
{
    struct mmsghdr msgs[WZPC_MUX_TX_BATCH];
    struct iovec iov[WZPC_MUX_TX_BATCH];
    size_t done = 0;

    if (npkt == 1) {
        send_one_packet(fd, bufs[0], lens[0]);
        return;
    }
    memset(msgs, 0, npkt * sizeof(msgs[0]));
    for (size_t i = 0; i < npkt; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = lens[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (done < npkt) {
        int n = sendmmsg(fd, msgs + done, (unsigned)(npkt - done), 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* The first remaining packet failed (see send_packet): it is lost. */
            WZP_DEBUG(MOD, "sendmmsg: %s", n < 0 ? strerror(errno) : "sent nothing");
            done++;
            continue;
        }
        done += (size_t)n;
    }
}

/* Send CONNECTION_CLOSE (unless the connection is already gone) and stop all I/O. */
static void close_with(struct wzpc_client *c, const ngtcp2_connection_close_error *ccerr)
{
    uint8_t buf[WZPC_TX_BUF_BYTES];
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n;

    if (c->dead)
        return;
    c->dead = true;
    record_close(c, false, ccerr);
    if (ngtcp2_conn_is_in_closing_period(c->conn) || ngtcp2_conn_is_in_draining_period(c->conn))
        return;
    ngtcp2_path_storage_zero(&ps);
    n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, buf, sizeof(buf), ccerr,
                                           wzp_now_ns());
    if (n > 0)
        send_packet(c, buf, (size_t)n);
    else if (n < 0)
        WZP_DEBUG(MOD, "write_connection_close: %s", ngtcp2_strerror((int)n));
}

static void close_liberr(struct wzpc_client *c, int liberr)
{
    ngtcp2_connection_close_error ccerr;

    WZP_DEBUG(MOD, "%s: closing after ngtcp2 error: %s", c->id.fingerprint,
              ngtcp2_strerror(liberr));
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
    close_with(c, &ccerr);
}

static void close_tls_alert(struct wzpc_client *c, uint8_t alert)
{
    ngtcp2_connection_close_error ccerr;

    WZP_DEBUG(MOD, "%s: closing after TLS alert %u", c->id.fingerprint, alert);
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, NULL, 0);
    close_with(c, &ccerr);
}

/* ------------------------------------------------------------ ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    struct wzpc_client *c = ref->user_data;

    return c->conn;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

/*
 * A connection ID of ours: random, except on a mux, where it starts with the client's
 * slot (masked with the mux's key) and its tag, so received packets find the client.
 */
static int fill_cid(const struct wzpc_client *c, uint8_t *data, size_t len)
{
    if (gnutls_rnd(GNUTLS_RND_RANDOM, data, len) != 0)
        return WZP_ECRYPTO;
    if (c->mux != NULL) {
        if (len < WZPC_MUX_CID_PREFIX)
            return WZP_EINVAL;
        wzp_put_u32be(data, c->mux_slot ^ c->mux->key);
        wzp_put_u32be(data + 4, c->cid_tag);
    }
    return WZP_OK;
}

static int cb_new_connection_id(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                                void *user_data)
{
    if (fill_cid(user_data, cid->data, cidlen) != WZP_OK ||
        gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    cid->datalen = cidlen;
    return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *user_data)
{
    struct wzpc_client *c = user_data;
    gnutls_datum_t sel;

    if (c->alpn_len > 0 && (gnutls_alpn_get_selected_protocol(c->session, &sel) != 0 ||
                            sel.size != c->alpn_len || memcmp(sel.data, c->alpn, sel.size))) {
        c->alpn_mismatch = true;
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    c->hs_completed = true;
    return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                               uint64_t offset, const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data)
{
    struct wzpc_client *c = user_data;
    struct wzpc_stream *s = stream_for_event(c, stream_id);

    if (s != NULL) {
        stream_take_bytes(s, data, datalen);
        if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
            s->rx_end = true;
    }
    /* Everything is consumed right away (buffered or dropped): return the credit. */
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
}

static int cb_acked_stream_data_offset(ngtcp2_conn *conn, int64_t stream_id, uint64_t offset,
                                       uint64_t datalen, void *user_data, void *stream_user_data)
{
    struct wzpc_stream *s = stream_find(user_data, stream_id);

    if (s != NULL && offset + datalen > s->tx_acked)
        s->tx_acked = (size_t)(offset + datalen);
    return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                           uint64_t app_error_code, void *user_data, void *stream_user_data)
{
    struct wzpc_client *c = user_data;
    struct wzpc_stream *s = stream_find(c, stream_id);

    /* the relay opens a stream per signal: renew its credit (ngtcp2 0.12 does not) */
    if (is_remote_bidi(stream_id))
        ngtcp2_conn_extend_max_streams_bidi(conn, 1);
    if (s == NULL && is_remote_bidi(stream_id))
        s = stream_for_event(c, stream_id); /* reset before any byte: skip it in order */
    if (s != NULL) {
        s->closed = true;
        s->rx_end = true;
        s->tx_dead = true;
    }
    return 0;
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t stream_id, uint64_t final_size,
                           uint64_t app_error_code, void *user_data, void *stream_user_data)
{
    struct wzpc_stream *s = stream_for_event(user_data, stream_id);

    if (s != NULL)
        s->rx_end = true;
    return 0;
}

static int cb_stream_stop_sending(ngtcp2_conn *conn, int64_t stream_id, uint64_t app_error_code,
                                  void *user_data, void *stream_user_data)
{
    struct wzpc_stream *s = stream_find(user_data, stream_id);

    if (s != NULL)
        s->tx_dead = true; /* ngtcp2 resets our half itself */
    return 0;
}

static int cb_recv_datagram(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t datalen,
                            void *user_data)
{
    struct wzpc_client *c = user_data;
    struct wzp_buf *q = c->rx_dq;

    if (wzp_buf_reserve(q, sizeof(datalen) + datalen) != WZP_OK)
        return 0; /* dropped, like a datagram lost on the way */
    memcpy(q->data + q->len, &datalen, sizeof(datalen));
    if (datalen > 0)
        memcpy(q->data + q->len + sizeof(datalen), data, datalen);
    q->len += sizeof(datalen) + datalen;
    return 0;
}

static int cb_recv_stateless_reset(ngtcp2_conn *conn, const ngtcp2_pkt_stateless_reset *sr,
                                   void *user_data)
{
    struct wzpc_client *c = user_data;

    c->got_stateless_reset = true;
    return 0;
}

static void log_ngtcp2(void *user_data, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_ngtcp2(void *user_data, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    WZP_TRACE("ngtcp2", "%s", line);
}

static void fill_callbacks(ngtcp2_callbacks *cb)
{
    memset(cb, 0, sizeof(*cb));
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb->encrypt = ngtcp2_crypto_encrypt_cb;
    cb->decrypt = ngtcp2_crypto_decrypt_cb;
    cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb->update_key = ngtcp2_crypto_update_key_cb;
    cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb->rand = cb_rand;
    cb->get_new_connection_id = cb_new_connection_id;
    cb->handshake_completed = cb_handshake_completed;
    cb->recv_stream_data = cb_recv_stream_data;
    cb->acked_stream_data_offset = cb_acked_stream_data_offset;
    cb->stream_close = cb_stream_close;
    cb->stream_reset = cb_stream_reset;
    cb->stream_stop_sending = cb_stream_stop_sending;
    cb->recv_datagram = cb_recv_datagram;
    cb->recv_stateless_reset = cb_recv_stateless_reset;
    /* No stream_open: ngtcp2 then re-issues remote stream credit as streams close. */
}

/* ------------------------------------------------------------------ setup */

static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (host != NULL && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof(*v4);
    } else if (host != NULL && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof(*v6);
    } else {
        WZP_ERROR(MOD, "not an IPv4 or IPv6 literal: %s", host ? host : "(null)");
        return WZP_EINVAL;
    }
    return WZP_OK;
}

/* The kernel stamps each received packet (SO_TIMESTAMPNS), so latency measurements can
 * use the arrival time rather than when this loop got round to the packet. */
void wzpc_enable_rx_timestamps(int fd)
{
    int one = 1;

    (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
}

/* A non-blocking UDP socket connected to remote; its local address in *local. */
static int open_connected_socket(const struct sockaddr_storage *remote, socklen_t remotelen,
                                 struct sockaddr_storage *local, socklen_t *locallen)
{
    int fd = socket(remote->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    wzpc_enable_rx_timestamps(fd);
    *locallen = sizeof(*local);
    if (connect(fd, (const struct sockaddr *)remote, remotelen) != 0 ||
        getsockname(fd, (struct sockaddr *)local, locallen) != 0) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int setup_socket(struct wzpc_client *c, const char *host, uint16_t port)
{
    int rc = parse_addr(host, port, &c->remote_addr, &c->remote_addrlen);

    if (rc != WZP_OK)
        return rc;
    c->fd = open_connected_socket(&c->remote_addr, c->remote_addrlen, &c->local_addr,
                                  &c->local_addrlen);
    if (c->fd < 0) {
        WZP_ERROR(MOD, "connect %s:%u: %s", host, port, strerror(errno));
        return WZP_EIO;
    }
    return WZP_OK;
}

static int setup_tls(struct wzpc_client *c, const char *sni)
{
    gnutls_datum_t alpn = {c->alpn, (unsigned int)c->alpn_len};

    /* No trust store and no gnutls_session_set_verify_cert(): like every WZP client,
     * any relay certificate is accepted. */
    if (gnutls_certificate_allocate_credentials(&c->cred) != 0)
        return WZP_ENOMEM;
    if (gnutls_init(&c->session,
                    GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA) != 0)
        return WZP_ECRYPTO;
    if (gnutls_priority_set_direct(c->session, tls_priority, NULL) != 0 ||
        ngtcp2_crypto_gnutls_configure_client_session(c->session) != 0 ||
        gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, c->cred) != 0)
        return WZP_ECRYPTO;
    gnutls_session_set_ptr(c->session, &c->conn_ref);
    if (c->alpn_len > 0 &&
        gnutls_alpn_set_protocols(c->session, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
        return WZP_ECRYPTO;
    if (sni != NULL && gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, sni, strlen(sni)) != 0)
        return WZP_EINVAL;
    return WZP_OK;
}

static void fill_transport_params(ngtcp2_transport_params *p, uint32_t idle_ms)
{
    ngtcp2_transport_params_default(p);
    p->initial_max_streams_bidi = 100;
    p->initial_max_streams_uni = 100;
    p->initial_max_data = 256 * 1024;
    p->initial_max_stream_data_bidi_local = 64 * 1024;
    p->initial_max_stream_data_bidi_remote = 64 * 1024;
    p->initial_max_stream_data_uni = 64 * 1024;
    p->max_idle_timeout = (uint64_t)idle_ms * NGTCP2_MILLISECONDS;
    p->max_datagram_frame_size = 65535;
}

static int random_cid(ngtcp2_cid *cid, size_t len)
{
    cid->datalen = len;
    return wzp_random(cid->data, len);
}

static int setup_quic(struct wzpc_client *c)
{
    ngtcp2_path path = {
        {(struct sockaddr *)&c->local_addr, c->local_addrlen},
        {(struct sockaddr *)&c->remote_addr, c->remote_addrlen},
        NULL,
    };
    uint32_t idle_ms = c->cfg.idle_timeout_ms ? c->cfg.idle_timeout_ms : WZPC_DEFAULT_IDLE_MS;
    ngtcp2_transport_params params;
    ngtcp2_settings settings;
    ngtcp2_callbacks cb;
    ngtcp2_cid dcid, scid;

    if (random_cid(&dcid, WZPC_DCID_LEN) != WZP_OK ||
        fill_cid(c, scid.data, WZPC_SCID_LEN) != WZP_OK)
        return WZP_ECRYPTO;
    scid.datalen = WZPC_SCID_LEN;
    fill_callbacks(&cb);
    ngtcp2_settings_default(&settings);
    settings.initial_ts = wzp_now_ns();
    if (c->cfg.ack_every_packet)
        settings.ack_thresh = 1; /* every ack-eliciting packet makes an ACK due at once */
    if (wzp_log_threshold >= WZP_LOG_TRACE)
        settings.log_printf = log_ngtcp2;
    fill_transport_params(&params, idle_ms);
    if (c->cfg.max_datagram_frame_size)
        params.max_datagram_frame_size = c->cfg.max_datagram_frame_size;
    if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings,
                               &params, NULL, c) != 0)
        return WZP_ENOMEM;
    ngtcp2_conn_set_tls_native_handle(c->conn, c->session);
    ngtcp2_conn_set_keep_alive_timeout(c->conn, WZPC_KEEPALIVE);
    return WZP_OK;
}

static int setup_identity(struct wzpc_client *c, const uint8_t *seed)
{
    uint8_t fresh[32];
    int rc;

    if (seed == NULL) {
        rc = wzp_random(fresh, sizeof(fresh));
        if (rc != WZP_OK)
            return rc;
        seed = fresh;
    }
    rc = wzp_identity_from_seed(&c->id, seed);
    gnutls_memset(fresh, 0, sizeof(fresh));
    return rc;
}

/* Copy what the config points at that is needed after wzpc_connect() returns. */
static int copy_config(struct wzpc_client *c, const struct wzpc_config *cfg)
{
    const char *alpn = cfg->alpn != NULL ? cfg->alpn : "wzp";

    c->cfg = *cfg;
    c->cfg.host = NULL;
    c->cfg.seed = NULL;
    c->alpn_len = strlen(alpn);
    if (c->alpn_len > sizeof(c->alpn))
        return WZP_EINVAL;
    memcpy(c->alpn, alpn, c->alpn_len);
    c->cfg.alpn = NULL;
    c->alias = cfg->alias ? strdup(cfg->alias) : NULL;
    c->auth_token = cfg->auth_token ? strdup(cfg->auth_token) : NULL;
    if ((cfg->alias && !c->alias) || (cfg->auth_token && !c->auth_token))
        return WZP_ENOMEM;
    c->cfg.alias = c->alias;
    c->cfg.auth_token = c->auth_token;
    c->cfg.sni = NULL; /* only setup_tls() uses it; GnuTLS keeps a copy */
    return WZP_OK;
}

/* ------------------------------------------------------------------ write path */

static void open_pending_streams(struct wzpc_client *c)
{
    for (struct wzpc_stream *s = c->streams; s != NULL; s = s->next) {
        if (s->id >= 0)
            continue;
        if (ngtcp2_conn_open_bidi_stream(c->conn, &s->id, NULL) != 0) {
            s->id = -1;
            return; /* no stream credit yet: keep the FIFO order */
        }
    }
}

static bool stream_wants_write(const struct wzpc_stream *s)
{
    if (s->id < 0 || s->tx_dead || s->tx_blocked)
        return false;
    return s->tx_off < s->tx_len || (s->tx_fin && !s->tx_fin_sent);
}

static struct wzpc_stream *next_writable_stream(struct wzpc_client *c)
{
    for (struct wzpc_stream *s = c->streams; s != NULL; s = s->next)
        if (stream_wants_write(s))
            return s;
    return NULL;
}

static void account_stream_write(struct wzpc_stream *s, ngtcp2_ssize ndata)
{
    if (ndata < 0)
        return;
    s->tx_off += (size_t)ndata;
    if (s->tx_fin && s->tx_off == s->tx_len)
        s->tx_fin_sent = true;
}

/*
 * State of one flush(): where ngtcp2 writes, and what may still be tried. With an own
 * socket, packets are collected in bufs and go out together (one sendmmsg) when the
 * batch is full or the flush ends. On a mux, ngtcp2 writes straight into the shared
 * socket's queue, which is sent before the loop blocks.
 */
struct flush_ctx {
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    ngtcp2_tstamp ts;
    size_t npkt;
    bool dgram_blocked;
    bool pkt_has_data; /* the packet being written carries datagram or stream data */
    size_t lens[WZPC_TX_BATCH];
    uint8_t bufs[WZPC_TX_BATCH][WZPC_TX_BUF_BYTES];
};

/* Where ngtcp2 writes the next packet. */
static uint8_t *flush_buf(struct wzpc_client *c, struct flush_ctx *f)
{
    if (c->msock != NULL)
        return c->msock->tx[c->msock->ntx];
    return f->bufs[f->npkt];
}

static void flush_send(struct wzpc_client *c, struct flush_ctx *f)
{
    if (f->npkt > 0)
        send_batch(c->fd, f->bufs, f->lens, f->npkt);
    f->npkt = 0;
}

/* Queue the packet just written into flush_buf(). */
static void flush_commit(struct wzpc_client *c, struct flush_ctx *f, size_t len)
{
    struct wzpc_mux_sock *ms = c->msock;

    if (ms == NULL) {
        f->lens[f->npkt++] = len;
        if (f->npkt == WZPC_TX_BATCH)
            flush_send(c, f);
        return;
    }
    if (!ms->tx_listed) {
        ms->tx_listed = true;
        ms->tx_next = ms->mux->tx_socks;
        ms->mux->tx_socks = ms;
    }
    ms->tx_owner[ms->ntx] = c;
    ms->tx_len[ms->ntx++] = len;
    ms->ntx_data += f->pkt_has_data;
    if (ms->ntx == WZPC_MUX_TX_BATCH || ms->ntx_data == WZPC_MUX_TX_DATA_BATCH)
        mux_sock_send(ms);
}

/* Returns the packet length to send, 0 to go on, or a fatal ngtcp2 error. */
static ngtcp2_ssize write_stream_step(struct wzpc_client *c, struct flush_ctx *f,
                                      struct wzpc_stream *s)
{
    ngtcp2_vec vec = {s->tx + s->tx_off, s->tx_len - s->tx_off};
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE | (s->tx_fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0);
    ngtcp2_ssize ndata = -1;
    ngtcp2_ssize n =
        ngtcp2_conn_writev_stream(c->conn, &f->ps.path, &f->pi, flush_buf(c, f), WZPC_TX_BUF_BYTES,
                                  &ndata, flags, s->id, &vec, vec.len ? 1 : 0, f->ts);

    if (ndata > 0 || (ndata == 0 && s->tx_fin))
        f->pkt_has_data = true;
    switch (n) {
    case NGTCP2_ERR_WRITE_MORE:
        account_stream_write(s, ndata);
        return 0;
    case NGTCP2_ERR_STREAM_DATA_BLOCKED:
        s->tx_blocked = true;
        return 0;
    case NGTCP2_ERR_STREAM_SHUT_WR:
    case NGTCP2_ERR_STREAM_NOT_FOUND:
        s->tx_dead = true;
        return 0;
    default:
        break;
    }
    if (n >= 0)
        account_stream_write(s, ndata);
    if (n == 0)
        s->tx_blocked = true; /* nothing fit (congestion): try again on the next flush */
    return n;
}

/* A block for an outgoing datagram of len bytes: recycled if one is big enough. */
static struct wzpc_dgram *dgram_alloc(struct wzpc_client *c, size_t len)
{
    struct wzpc_dgram *d = c->dfree;

    if (d != NULL && d->cap >= len) {
        c->dfree = d->next_free;
        c->dfree_count--;
        return d;
    }
    d = malloc(sizeof(*d) + WZP_MAX(len, (size_t)WZPC_DGRAM_MIN_CAP));
    if (d != NULL)
        d->cap = WZP_MAX(len, (size_t)WZPC_DGRAM_MIN_CAP);
    return d;
}

static void dgram_release(struct wzpc_client *c, struct wzpc_dgram *d)
{
    if (c->dfree_count >= WZPC_DGRAM_FREE_MAX) {
        free(d);
        return;
    }
    d->next_free = c->dfree;
    c->dfree = d;
    c->dfree_count++;
}

static void dq_pop(struct wzpc_client *c)
{
    dgram_release(c, c->dq[c->dq_head]);
    c->dq[c->dq_head] = NULL;
    c->dq_head = (c->dq_head + 1) % WZPC_DGRAM_QUEUE_MAX;
    c->dq_count--;
}

static void dq_clear(struct wzpc_client *c)
{
    while (c->dq_count > 0)
        dq_pop(c);
    while (c->dfree != NULL) {
        struct wzpc_dgram *d = c->dfree;

        c->dfree = d->next_free;
        free(d);
    }
    c->dfree_count = 0;
}

static bool dgram_fits_path(struct wzpc_client *c, size_t len)
{
    return len + WZPC_DGRAM_OVERHEAD <= ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
}

/* Returns the packet length to send, 0 to go on, or a fatal ngtcp2 error. */
static ngtcp2_ssize write_dgram_step(struct wzpc_client *c, struct flush_ctx *f)
{
    struct wzpc_dgram *d = c->dq[c->dq_head];
    ngtcp2_vec vec = {d->data, d->len};
    int accepted = 0;
    ngtcp2_ssize n = ngtcp2_conn_writev_datagram(
        c->conn, &f->ps.path, &f->pi, flush_buf(c, f), WZPC_TX_BUF_BYTES, &accepted,
        NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &vec, 1, f->ts);

    if (n == NGTCP2_ERR_INVALID_STATE || n == NGTCP2_ERR_INVALID_ARGUMENT) {
        /* The relay takes no datagrams at all, or none this large. */
        c->stats.datagrams_send_dropped++;
        dq_pop(c);
        return 0;
    }
    if (accepted) {
        f->pkt_has_data = true;
        c->stats.datagrams_sent++;
        dq_pop(c);
    }
    if (n == NGTCP2_ERR_WRITE_MORE)
        return 0;
    if (n == 0 && !accepted) {
        f->dgram_blocked = true; /* congestion window full: keep it for later */
        if (!dgram_fits_path(c, d->len)) {
            c->stats.datagrams_send_dropped++; /* would never fit a packet */
            dq_pop(c);
        }
    }
    return n;
}

/* Finish a coalesced packet or write control frames (ACK, PING, retransmissions). */
static ngtcp2_ssize write_plain_step(struct wzpc_client *c, struct flush_ctx *f)
{
    return ngtcp2_conn_writev_stream(c->conn, &f->ps.path, &f->pi, flush_buf(c, f),
                                     WZPC_TX_BUF_BYTES, NULL, NGTCP2_WRITE_STREAM_FLAG_NONE, -1,
                                     NULL, 0, f->ts);
}

static void update_timer(struct wzpc_client *c, ngtcp2_tstamp now)
{
    ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(c->conn);

    if (expiry == UINT64_MAX) {
        ev_timer_stop(c->loop, &c->timer);
        return;
    }
    c->timer.repeat = expiry <= now ? 1e-9 : (ev_tstamp)(expiry - now) / NGTCP2_SECONDS;
    ev_timer_again(c->loop, &c->timer);
}

static void clear_tx_blocked(struct wzpc_client *c)
{
    for (struct wzpc_stream *s = c->streams; s != NULL; s = s->next)
        s->tx_blocked = false;
}

/*
 * The write loop: stream data first, then queued datagrams, then whatever ngtcp2 has
 * on its own, coalescing with the MORE flags until ngtcp2 has nothing more to write.
 * now is the caller's timestamp (one per read batch or timer event is precise enough).
 */
static void flush_at(struct wzpc_client *c, ngtcp2_tstamp now)
{
    struct flush_ctx f;
    bool can_send = c->state == WZPC_CONNECTED || c->state == WZPC_JOINED;

    if (c->dead)
        return;
    ngtcp2_path_storage_zero(&f.ps);
    memset(&f.pi, 0, sizeof(f.pi));
    f.ts = now;
    f.npkt = 0;
    f.dgram_blocked = false;
    f.pkt_has_data = false;
    if (c->streams != NULL) {
        if (can_send)
            open_pending_streams(c);
        clear_tx_blocked(c);
    }
    for (;;) {
        struct wzpc_stream *s = can_send ? next_writable_stream(c) : NULL;
        ngtcp2_ssize n;

        if (s != NULL)
            n = write_stream_step(c, &f, s);
        else if (can_send && c->dq_count > 0 && !f.dgram_blocked)
            n = write_dgram_step(c, &f);
        else if ((n = write_plain_step(c, &f)) == 0)
            break;
        if (n < 0) {
            flush_send(c, &f); /* what was written before the error still goes out */
            close_liberr(c, (int)n);
            enter_closed(c);
            return;
        }
        if (n > 0) {
            flush_commit(c, &f, (size_t)n);
            f.pkt_has_data = false;
        }
    }
    flush_send(c, &f);
    /* No ngtcp2_conn_update_pkt_tx_time: we do not pace, and telling ngtcp2 we do held
     * the handshake's last flight back until a timer (about 21 ms per join). */
    update_timer(c, f.ts);
}

static void flush(struct wzpc_client *c)
{
    flush_at(c, wzp_now_ns());
}

/* Arm a flush for the next loop iteration (user sends made outside our watchers). */
static void schedule_flush(struct wzpc_client *c)
{
    if (!c->dead)
        ev_prepare_start(c->loop, &c->prepare);
}

/* ------------------------------------------------------------------ dispatch */

static int queue_signal(struct wzpc_client *c, const struct wzp_signal *sig)
{
    struct wzp_buf frame = WZP_BUF_INIT;
    int rc = wzp_signal_encode_frame(sig, &frame);

    if (rc != WZP_OK) {
        wzp_buf_free(&frame);
        return rc;
    }
    rc = queue_local_stream(c, frame.data, frame.len, true);
    if (rc == WZP_OK)
        c->stats.signals_sent++;
    return rc;
}

static int queue_offer(struct wzpc_client *c)
{
    struct wzp_signal offer;
    int rc = wzp_handshake_make_offer(&c->id, NULL, c->alias, &offer);

    if (rc != WZP_OK)
        return rc;
    if (c->cfg.corrupt_offer_signature && offer.u.call_offer.signature.len > 0)
        offer.u.call_offer.signature.data[0] ^= 0x01;
    rc = queue_signal(c, &offer);
    wzp_signal_clear(&offer);
    return rc;
}

/* Room join: optional AuthToken, then the signed CallOffer, on streams 0 (and 4). */
static void send_join(struct wzpc_client *c)
{
    int rc = WZP_OK;

    if (c->auth_token != NULL) {
        struct wzp_signal tok = {.type = WZP_SIG_AUTH_TOKEN};

        tok.u.auth_token.token = c->auth_token;
        rc = queue_signal(c, &tok);
    }
    if (rc == WZP_OK)
        rc = queue_offer(c);
    if (rc != WZP_OK) {
        WZP_ERROR(MOD, "cannot build the join signals: %s", wzp_strerror(rc));
        wzpc_close(c, 0, "client error");
    }
}

static void on_handshake_done(struct wzpc_client *c)
{
    WZP_DEBUG(MOD, "%s: QUIC handshake complete", c->id.fingerprint);
    {
        const ngtcp2_transport_params *tp = ngtcp2_conn_get_remote_transport_params(c->conn);

        c->peer_max_dgram = tp != NULL ? tp->max_datagram_frame_size : 0;
    }
    set_state(c, WZPC_CONNECTED);
    if (c->state == WZPC_CONNECTED && c->cfg.auto_join)
        send_join(c);
}

static void deliver_datagrams(struct wzpc_client *c)
{
    struct wzp_buf *q = c->rx_dq;
    size_t off = 0;

    while (off < q->len && c->state != WZPC_CLOSED) {
        size_t len;

        memcpy(&len, q->data + off, sizeof(len));
        off += sizeof(len);
        c->stats.datagrams_received++;
        if (c->cfg.on_datagram != NULL)
            c->cfg.on_datagram(c, q->data + off, len, c->cfg.user_data);
        off += len;
    }
    wzp_buf_reset(q);
}

static void deliver_uni_streams(struct wzpc_client *c)
{
    for (struct wzpc_stream *s = c->streams; s != NULL && c->state != WZPC_CLOSED; s = s->next) {
        if (s->kind != STREAM_REMOTE_UNI || !s->rx_end || s->rx_delivered)
            continue;
        s->rx_delivered = true;
        if (c->cfg.on_uni_stream != NULL)
            c->cfg.on_uni_stream(c, s->rx.data, s->rx.len, c->cfg.user_data);
    }
}

/* A CallAnswer while CONNECTED: verify it and join, or hang up. */
static void handle_answer(struct wzpc_client *c, const struct wzp_signal *sig)
{
    if (c->state != WZPC_CONNECTED || c->dead)
        return;
    if (wzp_handshake_verify_answer(sig) != WZP_OK) {
        WZP_WARN(MOD, "%s: CallAnswer signature does not verify", c->id.fingerprint);
        wzpc_close(c, 0, "bad answer");
        return;
    }
    set_state(c, WZPC_JOINED);
}

static void handle_frame(struct wzpc_client *c, int64_t id, const uint8_t *body, size_t len)
{
    struct wzp_signal sig;
    char err[160];

    if (wzp_signal_parse(body, len, &sig, err, sizeof(err)) != WZP_OK) {
        c->stats.signals_unparsable++;
        WZP_WARN(MOD, "%s: unparsable signal on stream %lld: %s", c->id.fingerprint, (long long)id,
                 err);
        return;
    }
    c->stats.signals_received++;
    WZP_DEBUG(MOD, "%s: signal %s on stream %lld", c->id.fingerprint,
              wzp_signal_type_name(sig.type), (long long)id);
    if (c->cfg.on_signal != NULL)
        c->cfg.on_signal(c, &sig, c->cfg.user_data);
    if (sig.type == WZP_SIG_CALL_ANSWER && c->state != WZPC_CLOSED)
        handle_answer(c, &sig);
    wzp_signal_clear(&sig);
}

/* Deliver relay signals strictly in the order the relay opened the streams. */
static void deliver_signals(struct wzpc_client *c)
{
    while (c->state != WZPC_CLOSED) {
        struct wzpc_stream *s = stream_find(c, c->next_rx_bidi);
        const uint8_t *body = NULL;
        size_t len = 0;
        int rc;

        if (s == NULL)
            return;
        rc = wzp_signal_frame_peek(s->rx.data, s->rx.len, &body, &len);
        if (rc == WZP_EAGAIN && !s->rx_end && !s->rx_full)
            return;
        c->next_rx_bidi += 4;
        s->rx_delivered = true;
        if (rc == WZP_OK) {
            handle_frame(c, s->id, body, len);
        } else {
            c->stats.signals_unparsable++;
            WZP_WARN(MOD, "%s: stream %lld ended without a valid frame (%s)", c->id.fingerprint,
                     (long long)s->id, wzp_strerror(rc));
        }
        wzp_buf_free(&s->rx);
    }
}

/* Report what the last read_pkt()/handle_expiry() produced; runs outside ngtcp2. */
static void dispatch(struct wzpc_client *c)
{
    if (c->hs_completed && c->state == WZPC_CONNECTING && !c->dead)
        on_handshake_done(c);
    deliver_datagrams(c);
    deliver_uni_streams(c);
    deliver_signals(c);
    sweep_streams(c);
}

/* ------------------------------------------------------------------ read path */

static void handle_read_error(struct wzpc_client *c, int rv)
{
    ngtcp2_connection_close_error ccerr;

    switch (rv) {
    case NGTCP2_ERR_DRAINING:
        if (!c->got_stateless_reset) {
            ngtcp2_conn_get_connection_close_error(c->conn, &ccerr);
            record_close(c, true, &ccerr);
            WZP_DEBUG(MOD, "%s: relay closed: %s code 0x%llx \"%s\"", c->id.fingerprint,
                      c->close_is_app ? "application" : "transport",
                      (unsigned long long)c->close_code, c->close_reason);
        }
        c->dead = true;
        break;
    case NGTCP2_ERR_DROP_CONN:
    case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
        WZP_DEBUG(MOD, "%s: connection dropped: %s", c->id.fingerprint, ngtcp2_strerror(rv));
        c->dead = true;
        break;
    case NGTCP2_ERR_CRYPTO:
        close_tls_alert(c, ngtcp2_conn_get_tls_alert(c->conn));
        break;
    case NGTCP2_ERR_CALLBACK_FAILURE:
        if (c->alpn_mismatch) {
            WZP_WARN(MOD, "relay did not select ALPN \"%.*s\"", (int)c->alpn_len, c->alpn);
            close_tls_alert(c, WZPC_TLS_ALERT_NO_ALPN);
            break;
        }
        /* fall through */
    default:
        close_liberr(c, rv);
        break;
    }
}

/* One UDP datagram from the relay: feed ngtcp2, then report the results. */
static void handle_packet(struct wzpc_client *c, const uint8_t *pkt, size_t len, ngtcp2_tstamp now)
{
    ngtcp2_path path = {
        {(struct sockaddr *)&c->local_addr, c->local_addrlen},
        {(struct sockaddr *)&c->remote_addr, c->remote_addrlen},
        NULL,
    };
    ngtcp2_pkt_info pi = {0};
    int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, pkt, len, now);

    if (rv != 0)
        handle_read_error(c, rv);
    dispatch(c);
    if (c->dead)
        enter_closed(c);
    else if (c->cfg.ack_every_packet && c->state != WZPC_CLOSED)
        flush_at(c, now); /* quinn-like: this packet's ACK leaves now, on its own */
}

/*
 * Per-thread receive scratch: recvmmsg slots and the queue of datagrams that one
 * read_pkt produced. One per thread (all clients of a loop take turns); "busy" guards
 * against a user callback that runs a nested loop, which then reads the old way.
 */
struct rx_scratch {
    bool busy;
    struct wzp_buf dgrams;
    struct mmsghdr msgs[WZPC_RX_MMSG];
    struct iovec iov[WZPC_RX_MMSG];
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(struct timespec))];
    } ctl[WZPC_RX_MMSG]; /* SCM_TIMESTAMPNS */
    uint8_t *slots;      /* WZPC_RX_MMSG x WZPC_RX_SLOT_BYTES */
};

static pthread_key_t rx_key;
static pthread_once_t rx_key_once = PTHREAD_ONCE_INIT;
static bool rx_key_ok;

static void rx_scratch_destroy(void *arg)
{
    struct rx_scratch *rx = arg;

    wzp_buf_free(&rx->dgrams);
    free(rx->slots);
    free(rx);
}

static void rx_key_init(void)
{
    rx_key_ok = pthread_key_create(&rx_key, rx_scratch_destroy) == 0;
}

/* The calling thread's scratch, marked busy; NULL if in use or out of memory. */
static struct rx_scratch *rx_scratch_acquire(void)
{
    struct rx_scratch *rx;

    pthread_once(&rx_key_once, rx_key_init);
    if (!rx_key_ok)
        return NULL;
    rx = pthread_getspecific(rx_key);
    if (rx == NULL) {
        rx = calloc(1, sizeof(*rx));
        if (rx == NULL)
            return NULL;
        rx->slots = malloc((size_t)WZPC_RX_MMSG * WZPC_RX_SLOT_BYTES);
        if (rx->slots == NULL || pthread_setspecific(rx_key, rx) != 0) {
            free(rx->slots);
            free(rx);
            return NULL;
        }
        for (int i = 0; i < WZPC_RX_MMSG; i++) {
            rx->iov[i].iov_base = rx->slots + (size_t)i * WZPC_RX_SLOT_BYTES;
            rx->iov[i].iov_len = WZPC_RX_BUF_BYTES;
            rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
            rx->msgs[i].msg_hdr.msg_iovlen = 1;
            rx->msgs[i].msg_hdr.msg_control = rx->ctl[i].buf;
        }
    }
    if (rx->busy)
        return NULL;
    rx->busy = true;
    return rx;
}

/* recvmmsg overwrites each control length: give every slot its full buffer back. */
static void rx_reset_control(struct rx_scratch *rx)
{
    for (int i = 0; i < WZPC_RX_MMSG; i++)
        rx->msgs[i].msg_hdr.msg_controllen = sizeof(rx->ctl[i].buf);
}

int64_t wzpc_mono_minus_real_ns(void)
{
    struct timespec rt;

    clock_gettime(CLOCK_REALTIME, &rt);
    return (int64_t)wzp_now_ns() - ((int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec);
}

uint64_t wzpc_msg_rx_time_ns(struct msghdr *h, int64_t mono_minus_real)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm != NULL; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            int64_t t;

            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + mono_minus_real;
            return t > 0 ? (uint64_t)t : 0;
        }
    }
    return 0;
}

uint64_t wzpc_rx_time_ns(const struct wzpc_client *c)
{
    return c->rx_kernel_ns;
}

static void log_recv_error(const char *what)
{
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        WZP_DEBUG(MOD, "%s: %s", what, strerror(errno)); /* e.g. ICMP unreachable */
}

/*
 * One recvmmsg of up to WZPC_RX_MMSG packets into rx. Returns how many (0 when the socket
 * is empty or failed), with the batch's timestamp in *now and the clock offset that moves
 * each packet's kernel stamp to our clock in *clock_off (see wzpc_msg_rx_time_ns).
 */
static int rx_read_batch(int fd, struct rx_scratch *rx, ngtcp2_tstamp *now, int64_t *clock_off)
{
    rx_reset_control(rx);
    int n = recvmmsg(fd, rx->msgs, WZPC_RX_MMSG, MSG_DONTWAIT, NULL);

    if (n <= 0) {
        if (n < 0)
            log_recv_error("recvmmsg");
        return 0;
    }
    *now = wzp_now_ns();
    *clock_off = wzpc_mono_minus_real_ns();
    return n;
}

/* Fallback: one recv() per packet into a stack buffer. */
static void read_one_by_one(struct wzpc_client *c)
{
    uint8_t buf[WZPC_RX_BUF_BYTES];

    for (int i = 0; i < WZPC_RECV_BATCH && c->state != WZPC_CLOSED; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0) {
            log_recv_error("recv");
            break;
        }
        handle_packet(c, buf, (size_t)n, wzp_now_ns());
    }
}

/*
 * Drain the socket with recvmmsg: a batch shorter than WZPC_RX_MMSG means the socket
 * was empty, so no failing call is needed to find out. All packets of one batch share
 * a timestamp, and the client writes (ACKs, queued data) once after all of them, as
 * before.
 */
static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct wzpc_client *c = w->data;
    struct rx_scratch *rx = rx_scratch_acquire();
    ngtcp2_tstamp now = 0;

    if (rx == NULL) {
        read_one_by_one(c);
        if (c->state != WZPC_CLOSED)
            flush(c);
        return;
    }
    c->rx_dq = &rx->dgrams;
    for (int got = 0; got < WZPC_RECV_BATCH && c->state != WZPC_CLOSED;) {
        int64_t clock_off;
        int n = rx_read_batch(c->fd, rx, &now, &clock_off);

        if (n == 0)
            break;
        for (int i = 0; i < n && c->state != WZPC_CLOSED; i++) {
            c->rx_kernel_ns = wzpc_msg_rx_time_ns(&rx->msgs[i].msg_hdr, clock_off);
            handle_packet(c, rx->iov[i].iov_base, rx->msgs[i].msg_len, now);
        }
        got += n;
        if (n < WZPC_RX_MMSG)
            break;
    }
    c->rx_kernel_ns = 0;
    c->rx_dq = &c->rx_dgrams;
    wzp_buf_reset(&rx->dgrams);
    rx->busy = false;
    if (c->state != WZPC_CLOSED)
        flush_at(c, now != 0 ? now : wzp_now_ns());
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct wzpc_client *c = w->data;
    ngtcp2_tstamp now = wzp_now_ns();
    int rv = ngtcp2_conn_handle_expiry(c->conn, now);

    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        WZP_DEBUG(MOD, "%s: %s", c->id.fingerprint, ngtcp2_strerror(rv));
        c->dead = true; /* closes silently: nothing to send */
    } else if (rv != 0) {
        close_liberr(c, rv);
    }
    dispatch(c);
    if (c->dead) {
        enter_closed(c);
        return;
    }
    if (c->state != WZPC_CLOSED)
        flush_at(c, now);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct wzpc_client *c = w->data;

    ev_prepare_stop(loop, w);
    flush(c);
}

static void init_watchers(struct wzpc_client *c)
{
    ev_io_init(&c->rev, read_cb, c->fd, EV_READ);
    c->rev.data = c;
    ev_timer_init(&c->timer, timer_cb, 0., 0.);
    c->timer.data = c;
    ev_prepare_init(&c->prepare, prepare_cb);
    c->prepare.data = c;
    if (c->mux == NULL)
        ev_io_start(c->loop, &c->rev);      /* on a mux, the shared socket's watcher reads */
    ev_prepare_start(c->loop, &c->prepare); /* sends the first Initial */
}

/* ------------------------------------------------------------------ shared sockets */

/* The client a packet on a mux socket is for, from its destination connection ID. */
static struct wzpc_client *mux_lookup(const struct wzpc_mux *m, const uint8_t *pkt, size_t len)
{
    const uint8_t *dcid;
    size_t dcidlen;
    uint32_t slot;
    struct wzpc_client *c;

    if (len == 0)
        return NULL;
    if (pkt[0] & 0x80) { /* long header: flags, version (4), DCID length, DCID */
        if (len < 6)
            return NULL;
        dcidlen = pkt[5];
        dcid = pkt + 6;
        if (len < 6 + dcidlen)
            return NULL;
    } else { /* short header: our own CID length */
        dcidlen = WZPC_SCID_LEN;
        dcid = pkt + 1;
        if (len < 1 + dcidlen)
            return NULL;
    }
    if (dcidlen < WZPC_MUX_CID_PREFIX)
        return NULL;
    slot = wzp_get_u32be(dcid) ^ m->key;
    if (slot >= m->nslots || (c = m->slots[slot]) == NULL || c->cid_tag != wzp_get_u32be(dcid + 4))
        return NULL;
    return c;
}

/* One GSO message of a queue send: packets of equal size, sent as one UDP_SEGMENT send. */
struct gso_group {
    size_t seg;     /* size of every packet in it */
    size_t bytes;   /* their total */
    unsigned n;     /* how many */
    unsigned first; /* where its packets start in the iovec array */
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
};

/*
 * Sort the queue into groups of equal-sized packets, keeping every client's packets in
 * their order (a client's packet only joins a group at or after the one that took its
 * previous packet; groups go out in the order they were opened). Returns the number of
 * groups; grp[i] is packet i's group.
 */
static unsigned gso_plan(struct wzpc_mux_sock *ms, struct gso_group *g, unsigned char *grp)
{
    struct wzpc_mux *m = ms->mux;
    unsigned ngroups = 0;

    m->gso_gen++;
    for (unsigned i = 0; i < ms->ntx; i++) {
        struct wzpc_client *c = ms->tx_owner[i];
        size_t len = ms->tx_len[i];
        unsigned k = c->gso_gen == m->gso_gen ? c->gso_group : 0;

        while (k < ngroups && (g[k].seg != len || g[k].n == WZPC_GSO_MAX_SEGMENTS ||
                               g[k].bytes + len > WZPC_GSO_MAX_BYTES))
            k++;
        if (k == ngroups) {
            g[k].seg = len;
            g[k].bytes = 0;
            g[k].n = 0;
            ngroups++;
        }
        g[k].n++;
        g[k].bytes += len;
        grp[i] = (unsigned char)k;
        c->gso_gen = m->gso_gen;
        c->gso_group = k;
    }
    return ngroups;
}

/* The kernel cannot segment on this path (no checksum offload, old kernel, ...). */
static bool gso_refused(int err)
{
    return err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT;
}

/*
 * Send a queue of 2+ packets with UDP GSO: each group of equal-sized packets is one
 * message whose segments the kernel splits back into the same UDP datagrams, so the
 * relay receives exactly what separate sends would give it, at a fraction of the
 * kernel's per-packet cost on the sending side.
 */
static void send_gso(struct wzpc_mux_sock *ms)
{
    struct gso_group g[WZPC_MUX_TX_BATCH];
    unsigned char grp[WZPC_MUX_TX_BATCH];
    struct iovec iov[WZPC_MUX_TX_BATCH];
    struct mmsghdr msgs[WZPC_MUX_TX_BATCH];
    unsigned fill[WZPC_MUX_TX_BATCH];
    unsigned ngroups = gso_plan(ms, g, grp), at = 0, done = 0;

    for (unsigned k = 0; k < ngroups; k++) {
        g[k].first = at;
        fill[k] = 0;
        at += g[k].n;
    }
    for (unsigned i = 0; i < ms->ntx; i++) {
        unsigned k = grp[i];
        struct iovec *v = &iov[g[k].first + fill[k]++];

        v->iov_base = ms->tx[i];
        v->iov_len = ms->tx_len[i];
    }
    memset(msgs, 0, ngroups * sizeof(msgs[0]));
    for (unsigned k = 0; k < ngroups; k++) {
        struct msghdr *h = &msgs[k].msg_hdr;

        h->msg_iov = &iov[g[k].first];
        h->msg_iovlen = g[k].n;
        if (g[k].n > 1) {
            struct cmsghdr *cm;
            uint16_t seg = (uint16_t)g[k].seg;

            memset(&g[k].ctl, 0, sizeof(g[k].ctl));
            h->msg_control = g[k].ctl.buf;
            h->msg_controllen = sizeof(g[k].ctl.buf);
            cm = CMSG_FIRSTHDR(h);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(seg));
            memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
        }
    }
    while (done < ngroups) {
        int n = sendmmsg(ms->fd, msgs + done, ngroups - done, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            done += (unsigned)n;
            continue;
        }
        if (n < 0 && g[done].n > 1 && gso_refused(errno)) {
            WZP_WARN(MOD, "UDP GSO refused (%s): sending one datagram per packet", strerror(errno));
            ms->mux->gso_off = true;
            break;
        }
        WZP_DEBUG(MOD, "sendmmsg: %s", n < 0 ? strerror(errno) : "sent nothing");
        done++; /* that message is lost; QUIC recovers */
    }
    for (; done < ngroups; done++) /* GSO refused: the rest one datagram at a time */
        for (unsigned j = 0; j < g[done].n; j++)
            send_one_packet(ms->fd, iov[g[done].first + j].iov_base,
                            iov[g[done].first + j].iov_len);
}

/* Send everything queued on one shared socket. */
static void mux_sock_send(struct wzpc_mux_sock *ms)
{
    if (ms->ntx == 0)
        return;
    if (ms->ntx == 1 || ms->mux->gso_off)
        send_batch(ms->fd, ms->tx, ms->tx_len, ms->ntx);
    else
        send_gso(ms);
    ms->ntx = 0; /* the socket stays listed until the prepare watcher walks the list */
    ms->ntx_data = 0;
}

/*
 * Before the loop blocks: send every shared socket's queue. This watcher is always
 * active: one started from inside the prepare phase (by a client's prepare watcher
 * flushing) would only run in the next iteration, after the loop slept.
 */
static void mux_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct wzpc_mux *m = w->data;

    while (m->tx_socks != NULL) {
        struct wzpc_mux_sock *ms = m->tx_socks;

        m->tx_socks = ms->tx_next;
        ms->tx_next = NULL;
        ms->tx_listed = false;
        mux_sock_send(ms);
    }
}

static void mux_mark_dirty(struct wzpc_mux *m, struct wzpc_client *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = m->dirty;
    m->dirty = c;
}

/* After a receive batch: every client that got packets writes once (ACKs etc.). */
static void mux_flush_dirty(struct wzpc_mux *m, ngtcp2_tstamp now)
{
    while (m->dirty != NULL) {
        struct wzpc_client *c = m->dirty;

        m->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->state != WZPC_CLOSED)
            flush_at(c, now);
    }
}

static void mux_deliver(struct wzpc_mux *m, struct wzp_buf *dq, const uint8_t *pkt, size_t len,
                        ngtcp2_tstamp now, uint64_t rx_kernel_ns)
{
    struct wzpc_client *c = mux_lookup(m, pkt, len);

    if (c == NULL || c->state == WZPC_CLOSED)
        return; /* unknown CID (old connection, stateless reset): dropped */
    c->rx_dq = dq != NULL ? dq : &c->rx_dgrams;
    c->rx_kernel_ns = rx_kernel_ns;
    handle_packet(c, pkt, len, now);
    c->rx_kernel_ns = 0;
    c->rx_dq = &c->rx_dgrams;
    mux_mark_dirty(m, c);
}

static void mux_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct wzpc_mux_sock *ms = w->data;
    struct wzpc_mux *m = ms->mux;
    struct rx_scratch *rx = rx_scratch_acquire();
    ngtcp2_tstamp now = 0;

    if (rx == NULL) { /* nested loop: one packet at a time */
        uint8_t buf[WZPC_RX_BUF_BYTES];

        for (int i = 0; i < WZPC_RECV_BATCH; i++) {
            ssize_t n = recv(ms->fd, buf, sizeof(buf), MSG_DONTWAIT);

            if (n < 0) {
                log_recv_error("recv");
                break;
            }
            now = wzp_now_ns();
            mux_deliver(m, NULL, buf, (size_t)n, now, 0);
        }
    } else {
        for (int got = 0; got < WZPC_MUX_RECV_BATCH;) {
            int64_t clock_off;
            int n = rx_read_batch(ms->fd, rx, &now, &clock_off);

            if (n == 0)
                break;
            for (int i = 0; i < n; i++)
                mux_deliver(m, &rx->dgrams, rx->iov[i].iov_base, rx->msgs[i].msg_len, now,
                            wzpc_msg_rx_time_ns(&rx->msgs[i].msg_hdr, clock_off));
            got += n;
            if (n < WZPC_RX_MMSG)
                break;
        }
        wzp_buf_reset(&rx->dgrams);
        rx->busy = false;
    }
    mux_flush_dirty(m, now != 0 ? now : wzp_now_ns());
}

static void mux_sock_close(struct wzpc_mux *m, struct wzpc_mux_sock *ms)
{
    if (ms->fd < 0)
        return;
    ev_io_stop(m->loop, &ms->rev);
    close(ms->fd);
    ms->fd = -1;
}

void wzpc_mux_free(struct wzpc_mux *m)
{
    if (m == NULL)
        return;
    if (ev_is_active(&m->prepare)) {
        ev_ref(m->loop);
        ev_prepare_stop(m->loop, &m->prepare);
    }
    for (unsigned i = 0; m->socks != NULL && i < m->nsocks; i++) {
        mux_sock_send(&m->socks[i]);
        mux_sock_close(m, &m->socks[i]);
    }
    free(m->socks);
    free(m->slots);
    free(m);
}

/* Ask for a big receive buffer: one socket carries many clients' bursts. */
static void mux_grow_rcvbuf(int fd)
{
    int want = WZPC_MUX_RCVBUF;

    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
}

struct wzpc_mux *wzpc_mux_new(struct ev_loop *loop, const char *host, uint16_t port,
                              unsigned nsockets)
{
    struct wzpc_mux *m;

    if (nsockets == 0 || nsockets > WZPC_MUX_MAX_SOCKETS)
        return NULL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->loop = loop != NULL ? loop : EV_DEFAULT;
    ev_prepare_init(&m->prepare, mux_prepare_cb);
    ev_set_priority(&m->prepare, EV_MINPRI); /* after the clients' own prepare watchers */
    m->prepare.data = m;
    ev_prepare_start(m->loop, &m->prepare);
    ev_unref(m->loop); /* it must not keep ev_run() going by itself */
    m->socks = calloc(nsockets, sizeof(*m->socks));
    if (m->socks == NULL || parse_addr(host, port, &m->remote_addr, &m->remote_addrlen) != WZP_OK ||
        wzp_random((uint8_t *)&m->key, sizeof(m->key)) != WZP_OK) {
        wzpc_mux_free(m);
        return NULL;
    }
    for (unsigned i = 0; i < nsockets; i++)
        m->socks[i].fd = -1;
    m->nsocks = nsockets;
    for (unsigned i = 0; i < nsockets; i++) {
        struct wzpc_mux_sock *ms = &m->socks[i];

        ms->mux = m;
        ms->fd = open_connected_socket(&m->remote_addr, m->remote_addrlen, &ms->local_addr,
                                       &ms->local_addrlen);
        if (ms->fd < 0) {
            WZP_ERROR(MOD, "shared socket to %s:%u: %s", host, port, strerror(errno));
            wzpc_mux_free(m);
            return NULL;
        }
        mux_grow_rcvbuf(ms->fd);
        ev_io_init(&ms->rev, mux_read_cb, ms->fd, EV_READ);
        ms->rev.data = ms;
        ev_io_start(m->loop, &ms->rev);
    }
    return m;
}

/* Give the client a slot and a socket of its mux (before its connection IDs exist). */
static int mux_attach(struct wzpc_client *c, struct wzpc_mux *m, const char *host, uint16_t port)
{
    struct sockaddr_storage want;
    socklen_t wantlen;
    uint32_t slot = m->slot_hint;
    int rc = parse_addr(host, port, &want, &wantlen);

    if (rc != WZP_OK)
        return rc;
    if (wantlen != m->remote_addrlen || memcmp(&want, &m->remote_addr, wantlen) != 0 ||
        c->loop != m->loop) {
        WZP_ERROR(MOD, "a client must use its mux's loop and relay address");
        return WZP_EINVAL;
    }
    while (slot < m->nslots && m->slots[slot] != NULL)
        slot++;
    if (slot == m->nslots) {
        uint32_t n = m->nslots ? m->nslots * 2 : 64;
        struct wzpc_client **slots = realloc(m->slots, n * sizeof(*slots));

        if (slots == NULL)
            return WZP_ENOMEM;
        memset(slots + m->nslots, 0, (n - m->nslots) * sizeof(*slots));
        m->slots = slots;
        m->nslots = n;
    }
    rc = wzp_random((uint8_t *)&c->cid_tag, sizeof(c->cid_tag));
    if (rc != WZP_OK)
        return rc;
    m->slots[slot] = c;
    m->slot_hint = slot + 1;
    c->mux = m;
    c->mux_slot = slot;
    c->msock = &m->socks[m->next_sock++ % m->nsocks];
    c->remote_addr = m->remote_addr;
    c->remote_addrlen = m->remote_addrlen;
    c->local_addr = c->msock->local_addr;
    c->local_addrlen = c->msock->local_addrlen;
    return WZP_OK;
}

static void mux_detach(struct wzpc_client *c)
{
    struct wzpc_mux *m = c->mux;

    if (m == NULL)
        return;
    mux_sock_send(c->msock); /* the queue may hold our packets (and points at us) */
    if (c->dirty) {          /* only if freed from a callback, which the API forbids; be safe */
        struct wzpc_client **pp = &m->dirty;

        while (*pp != NULL && *pp != c)
            pp = &(*pp)->dirty_next;
        if (*pp == c)
            *pp = c->dirty_next;
        c->dirty = false;
    }
    if (c->mux_slot < m->nslots && m->slots[c->mux_slot] == c) {
        m->slots[c->mux_slot] = NULL;
        if (c->mux_slot < m->slot_hint)
            m->slot_hint = c->mux_slot;
    }
    c->mux = NULL;
    c->msock = NULL;
}

/* ------------------------------------------------------------------ public API */

int wzpc_rebind(struct wzpc_client *c)
{
    int fd;

    if (c->mux != NULL) {
        struct wzpc_mux *m = c->mux;

        if (m->nsocks < 2)
            return WZP_ESTATE;
        /* Packets already queued on the old socket go out first, in order. */
        mux_sock_send(c->msock);
        c->msock = &m->socks[(size_t)(c->msock - m->socks + 1) % m->nsocks];
        return WZP_OK;
    }
    fd = socket(c->remote_addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return WZP_EIO;
    wzpc_enable_rx_timestamps(fd);
    if (connect(fd, (struct sockaddr *)&c->remote_addr, c->remote_addrlen) != 0) {
        close(fd);
        return WZP_EIO;
    }
    /* Like a NAT rebinding: QUIC is not told; the relay sees a new source port. */
    ev_io_stop(c->loop, &c->rev);
    close(c->fd);
    c->fd = fd;
    ev_io_set(&c->rev, fd, EV_READ);
    ev_io_start(c->loop, &c->rev);
    return WZP_OK;
}

struct wzpc_client *wzpc_connect(const struct wzpc_config *cfg)
{
    struct wzpc_client *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return NULL;
    c->fd = -1;
    c->streams_tail = &c->streams;
    c->rx_dq = &c->rx_dgrams;
    c->next_rx_bidi = 1;
    c->conn_ref.get_conn = get_conn;
    c->conn_ref.user_data = c;
    c->loop = cfg->loop != NULL ? cfg->loop : EV_DEFAULT;
    rc = copy_config(c, cfg);
    if (rc == WZP_OK)
        rc = setup_identity(c, cfg->seed);
    if (rc == WZP_OK)
        rc = cfg->mux != NULL ? mux_attach(c, cfg->mux, cfg->host, cfg->port)
                              : setup_socket(c, cfg->host, cfg->port);
    if (rc == WZP_OK)
        rc = setup_tls(c, cfg->sni);
    if (rc == WZP_OK)
        rc = setup_quic(c);
    if (rc != WZP_OK) {
        WZP_ERROR(MOD, "cannot start a client: %s", wzp_strerror(rc));
        wzpc_free(c);
        return NULL;
    }
    init_watchers(c);
    return c;
}

enum wzpc_state wzpc_state(const struct wzpc_client *c)
{
    return c->state;
}

int wzpc_send_signal(struct wzpc_client *c, const struct wzp_signal *sig)
{
    int rc;

    if (c->state == WZPC_CLOSED)
        return WZP_ESTATE;
    rc = queue_signal(c, sig);
    if (rc == WZP_OK)
        schedule_flush(c);
    return rc;
}

int wzpc_join(struct wzpc_client *c)
{
    if (c->state != WZPC_CONNECTED)
        return WZP_ESTATE;
    send_join(c);
    schedule_flush(c);
    return c->state == WZPC_CONNECTED ? WZP_OK : WZP_ESTATE;
}

int wzpc_send_stream_raw(struct wzpc_client *c, const uint8_t *data, size_t len, bool fin)
{
    uint8_t *copy = NULL;
    int rc;

    if (c->state == WZPC_CLOSED)
        return WZP_ESTATE;
    if (len == 0 && !fin)
        return WZP_EINVAL;
    if (len > 0) {
        copy = malloc(len);
        if (copy == NULL)
            return WZP_ENOMEM;
        memcpy(copy, data, len);
    }
    rc = queue_local_stream(c, copy, len, fin);
    if (rc == WZP_OK)
        schedule_flush(c);
    return rc;
}

int wzpc_send_crypto_after_handshake(struct wzpc_client *c, const uint8_t *data, size_t len)
{
    if (c->state != WZPC_CONNECTED && c->state != WZPC_JOINED)
        return WZP_ESTATE;
    if (ngtcp2_conn_submit_crypto_data(c->conn, NGTCP2_CRYPTO_LEVEL_APPLICATION, data, len) != 0)
        return WZP_EINVAL;
    schedule_flush(c);
    return WZP_OK;
}

int wzpc_initiate_key_update(struct wzpc_client *c)
{
    if (c->state != WZPC_CONNECTED && c->state != WZPC_JOINED)
        return WZP_ESTATE;
    if (ngtcp2_conn_initiate_key_update(c->conn, wzp_now_ns()) != 0)
        return WZP_ESTATE;
    schedule_flush(c);
    return WZP_OK;
}

int wzpc_send_datagram(struct wzpc_client *c, const uint8_t *data, size_t len)
{
    struct wzpc_dgram *d;

    if (c->state != WZPC_CONNECTED && c->state != WZPC_JOINED) {
        c->stats.datagrams_send_dropped++;
        return WZP_ESTATE;
    }
    if (c->peer_max_dgram == 0) {
        c->stats.datagrams_send_dropped++; /* the relay did not offer DATAGRAM support */
        return WZP_ESTATE;
    }
    if (c->dq_count == WZPC_DGRAM_QUEUE_MAX) {
        c->stats.datagrams_send_dropped++;
        return WZP_EFULL;
    }
    d = dgram_alloc(c, len);
    if (d == NULL) {
        c->stats.datagrams_send_dropped++;
        return WZP_ENOMEM;
    }
    d->len = len;
    if (len > 0)
        memcpy(d->data, data, len);
    c->dq[(c->dq_head + c->dq_count) % WZPC_DGRAM_QUEUE_MAX] = d;
    c->dq_count++;
    schedule_flush(c);
    return WZP_OK;
}

void wzpc_close(struct wzpc_client *c, uint64_t app_code, const char *reason)
{
    ngtcp2_connection_close_error ccerr;
    const char *r = reason != NULL ? reason : "";

    if (c->state == WZPC_CLOSED)
        return;
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_application_error(&ccerr, app_code, (const uint8_t *)r,
                                                        strlen(r));
    close_with(c, &ccerr);
    enter_closed(c);
}

/*
 * A close we sent (wzpc_close, or a local protocol/TLS error) also counts as a close
 * frame: it returns true with *by_peer false.
 */
bool wzpc_close_info(const struct wzpc_client *c, bool *by_peer, bool *is_app, uint64_t *code,
                     char *reason, size_t reasonlen)
{
    if (!c->close_seen)
        return false;
    if (by_peer != NULL)
        *by_peer = c->close_by_peer;
    if (is_app != NULL)
        *is_app = c->close_is_app;
    if (code != NULL)
        *code = c->close_code;
    if (reason != NULL && reasonlen > 0)
        snprintf(reason, reasonlen, "%s", c->close_reason);
    return true;
}

const struct wzpc_stats *wzpc_stats(const struct wzpc_client *c)
{
    return &c->stats;
}

uint64_t wzpc_latest_rtt_ns(const struct wzpc_client *c)
{
    if (!c->conn)
        return 0;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    return st.latest_rtt;
}

const char *wzpc_fingerprint(const struct wzpc_client *c)
{
    return c->id.fingerprint;
}

void wzpc_free(struct wzpc_client *c)
{
    if (c == NULL)
        return;
    if (c->loop != NULL) {
        ev_io_stop(c->loop, &c->rev);
        ev_timer_stop(c->loop, &c->timer);
        ev_prepare_stop(c->loop, &c->prepare);
    }
    if (c->conn != NULL)
        ngtcp2_conn_del(c->conn);
    if (c->session != NULL)
        gnutls_deinit(c->session);
    if (c->cred != NULL)
        gnutls_certificate_free_credentials(c->cred);
    if (c->fd >= 0)
        close(c->fd);
    mux_detach(c);
    while (c->streams != NULL) {
        struct wzpc_stream *s = c->streams;

        c->streams = s->next;
        stream_free(s);
    }
    dq_clear(c);
    wzp_buf_free(&c->rx_dgrams);
    wzp_identity_free(&c->id);
    free(c->alias);
    free(c->auth_token);
    free(c);
}

/* ------------------------------------------------------------------ loop helpers */

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(bool *)w->data = true;
}

bool wzpc_run_until(struct ev_loop *loop, bool (*done)(void *arg), void *arg, uint32_t timeout_ms)
{
    bool expired = false;
    ev_timer deadline;

    if (done != NULL && done(arg))
        return true;
    ev_now_update(loop);
    ev_timer_init(&deadline, deadline_cb, timeout_ms / 1000.0, 0.);
    deadline.data = &expired;
    ev_timer_start(loop, &deadline);
    while (!expired && !(done != NULL && done(arg)))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &deadline);
    return done != NULL && done(arg);
}

void wzpc_run_for(struct ev_loop *loop, uint32_t ms)
{
    wzpc_run_until(loop, NULL, NULL, ms);
}

/* ---------------------------------------------------------------- captured Initials */

/* Whether pkt's DCID (long header) is that of one of the last few captured packets. */
static bool seen_dcid(uint8_t (*pkts)[WZPC_INITIAL_MAX], size_t got, const uint8_t *pkt)
{
    for (size_t j = got > 256 ? got - 256 : 0; j < got; j++)
        if (pkts[j][5] == pkt[5] && memcmp(pkts[j] + 6, pkt + 6, pkt[5]) == 0)
            return true;
    return false;
}

size_t wzpc_capture_initials(const char *sni, size_t n, uint8_t (*pkts)[WZPC_INITIAL_MAX],
                             size_t *lens, uint32_t timeout_ms)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    size_t got = 0;
    if (!loop || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        goto out;
    enum { BATCH = 64 };
    struct wzpc_client *batch[BATCH];
    uint64_t deadline = wzp_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (got < n && wzp_now_ns() < deadline) {
        size_t want = WZP_MIN(n - got, (size_t)BATCH), made = 0;
        for (; made < want; made++) {
            struct wzpc_config cfg = {
                .loop = loop, .host = "127.0.0.1", .port = ntohs(a.sin_port), .sni = sni};
            if (!(batch[made] = wzpc_connect(&cfg)))
                break;
        }
        wzpc_run_for(loop, 20);
        /* A padded client Initial (long header, at least 1200 bytes), the first per DCID:
         * a client that has sent twice by now repeats its connection ID. */
        uint8_t buf[WZPC_INITIAL_MAX];
        ssize_t len;
        while (got < n && (len = recv(fd, buf, sizeof buf, 0)) > 0) {
            if (len >= 1200 && (buf[0] & 0x80) && len >= 6 + buf[5] && !seen_dcid(pkts, got, buf)) {
                memcpy(pkts[got], buf, (size_t)len);
                lens[got++] = (size_t)len;
            }
        }
        for (size_t i = 0; i < made; i++)
            wzpc_free(batch[i]);
        if (made < want)
            break;
    }
out:
    if (loop)
        ev_loop_destroy(loop);
    close(fd);
    return got;
}
