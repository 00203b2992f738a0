/*
 * conn.h - one QUIC connection: ngtcp2 state, TLS session, signal streams, outgoing
 * media queue, and its place in a room.
 *
 * Lifecycle: HANDSHAKE -> (SNI dispatch) -> AWAIT_OFFER -> JOINED for rooms; PING and
 * VERSION connections close themselves. Any state -> CLOSING (we sent CONNECTION_CLOSE)
 * or DRAINING (the peer did) -> freed after the closing period. A connection leaves its
 * room the moment it stops being JOINED.
 *
 * Threading: owned by one worker; see worker.h.
 */
#ifndef WZP_CONN_H
#define WZP_CONN_H

#include "buf.h"
#include "quality.h"
#include "quota.h"
#include "room.h"
#include "tls.h"
#include "worker.h"

#include <ev.h>
#include <stdalign.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

/* Client signal streams buffered at once: the bidi stream credit we grant (conn.c), so a
 * client within its credit is never refused for the count; the byte cap bounds memory. */
#define WZP_CONN_MAX_IN_STREAMS    100
#define WZP_CONN_MAX_IN_BYTES      (WZP_SIGNAL_MAX_BYTES + 64 * 1024)
#define WZP_CONN_MAX_OUT_SIGNALS   256   /* queued outgoing signal frames */
#define WZP_CONN_FRAME_DEADLINE_MS 10000 /* a signal frame, once begun, completes in this */
#define WZP_CONN_REGISTER_MS       10000 /* "_signal": handshake done -> RegisterPresence */
#define WZP_CONN_DGQ_BYTES         16384 /* outgoing media queue per receiver, at most */
#define WZP_CONN_VERSION_LINGER_MS 2000  /* "version": close when acked or after this */

enum wzp_conn_state {
    WZP_CONN_HANDSHAKE = 0,
    WZP_CONN_AWAIT_OFFER,
    WZP_CONN_JOINED,
    WZP_CONN_SERVING,         /* a last reply in flight (version, a refused registration) */
    WZP_CONN_SIGNAL_REGISTER, /* "_signal": waiting for RegisterPresence */
    WZP_CONN_SIGNAL,          /* "_signal": registered (presence, calls; dcall.h) */
    WZP_CONN_CLOSING,
    WZP_CONN_DRAINING,
};

struct wzp_in_stream {
    int64_t id;
    uint64_t started_ns; /* the frame's first byte arrived */
    struct wzp_buf buf;
    bool complete; /* a whole frame is buffered */
    bool used;
};

struct wzp_out_stream {
    struct wzp_out_stream *next;
    int64_t id; /* -1 until opened */
    bool uni;
    bool room_update; /* a RoomUpdate: a newer one replaces it while it is unopened */
    size_t sent, acked;
    bool fin_sent;
    struct wzp_buf data;
};

struct wzp_conn {
    struct wzp_tls_ctx tlsctx; /* first: the TLS layer finds us through its conn_ref */

    /* Read or written for every packet (input, fan-out, flush, timer): kept together so
     * a packet to a connection whose state has left the cache fetches three or four lines,
     * not ten (doc/BENCHMARKS.md, "Which memory"): they start a cache line (the
     * connection is allocated 64-byte aligned). Cold fields follow. */
    alignas(64) struct wzp_worker *w;
    ngtcp2_conn *qc;
    enum wzp_conn_state state;
    uint32_t slot, gen;
    bool fatal_pending;          /* set inside a callback: close after read_pkt returns */
    bool frames_waiting;         /* a signal frame completed and may be dispatchable */
    bool handshake_done_pending; /* the handshake completed inside read_pkt */
    bool tier_change_pending;    /* set in the datagram callback, applied after read_pkt */
    struct wzp_quality_report tier_report;
    struct wzp_tnode tnode; /* its timer, on the worker's wheel (twheel.h) */
    uint64_t deadline_ns;   /* every state has one: handshake, join, linger, closing period;
                             * 0 only while JOINED (ngtcp2's idle timeout bounds it) */
    /* media */
    struct wzp_dgq dgq;
    /* writing (wzp_conn_flush) */
    bool write_wanted;    /* ngtcp2 may have frames to send that no timer covers */
    bool expiry_handled;  /* ngtcp2 handled an expiry and wants a write (it then stops
                           * reporting an expired ACK delay in its expiry time) */
    bool dirty;           /* owned by the worker, as dirty_next (here: a padding hole) */
    uint64_t ack_hold_ns; /* since then a write waits for a datagram (0: not waiting) */
    uint64_t coalesce_ns; /* --coalesce: queued datagrams wait since then (0: none) */
    uint64_t qc_expiry;   /* ngtcp2_conn_get_expiry() as of the last timer arming, valid
                           * until ngtcp2 reads or handles an expiry (0: not known) */
    uint32_t dg_max;      /* a bound on the datagram payload the path takes (0: ask) */
    uint32_t part_hint;   /* room: likely index of our entry in room->parts */
    /* room */
    struct wzp_room *room;
    uint64_t pid;
    int max_tier;             /* -1 or the policy's cap (enum wzp_tier) */
    enum wzp_tier tier;       /* the tier the room sees for us (after policy and cap) */
    const void *tx_crypto[2]; /* 1-RTT transmit AEAD and header protection contexts, which
                               * the fan-out prefetches for the flush (tls.h) */
    /* Owned by the worker (mark_dirty, detach; and dirty, above): conn.c never writes
     * these. */
    struct wzp_conn *dirty_next;

    /* cold: set up once, or used by signals, logs and closing */
    gnutls_session_t tls;
    struct sockaddr_storage remote;
    socklen_t remote_len;
    char peer[64];             /* "ip:port" for logs */
    char sni[WZP_SNI_MAX + 1]; /* lower-cased; the room name for room connections */
    uint64_t created_ns;
    struct wzp_addr_key quota_key; /* the source address the quota counts c under */
    bool handshake_counted;        /* holds one handshake of the quota */
    bool session_reserved;         /* holds one session of the quota */
    uint64_t presence_reg;         /* "_signal": our registration (0: none); see presence.h */
    /* featherChat authentication (--auth-url; auth.h) */
    bool auth_pending;                     /* a validation is running: frames wait */
    bool authenticated;                    /* auth_fp replaces the key-derived fingerprint */
    char auth_fp[WZP_FINGERPRINT_LEN + 1]; /* the validator's fingerprint */
    char *auth_claims;                     /* the validator's JSON, for the policy; or NULL */

    /* signals */
    struct wzp_in_stream *in; /* grows on demand up to WZP_CONN_MAX_IN_STREAMS */
    unsigned in_cap;
    uint64_t partial_since_ns; /* oldest incomplete frame began (0: none) */
    size_t in_bytes;
    int64_t next_in_id;
    struct wzp_out_stream *out_head, *out_tail;
    unsigned out_count;
    char fatal_reason[160];
    char linger_reason[96];  /* SERVING: the close reason once the reply is delivered */
    bool policy_refused;     /* on_connect said no; fatal_reason says why */
    bool affinity_ref;       /* counted in the room affinity table under tlsctx.sni */
    const char *close_cause; /* leave reason for the policy: "shutdown", "kicked"; NULL = error */

    /* room, cold */
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    struct wzp_quality_ctl quality;

    /* closing */
    uint8_t *close_pkt;
    size_t close_len;
    uint64_t close_last_sent_ns;

#ifdef WZP_CHECK_INVARIANTS
    uint64_t ts_last; /* the latest timestamp given to ngtcp2 (conn_ts) */
#endif

    /* Owned by the worker (wzp_worker_attach/detach, the CID table): conn.c never writes
     * these. */
    struct wzp_conn *next, *prev;
    uint8_t ncids;
    struct wzp_cid_key cids[WZP_CONN_CIDS]; /* every CID table key of this connection */
};

/* A zeroed connection, aligned as its hot lines need (64 bytes); free() frees it. NULL
 * without memory. */
struct wzp_conn *wzp_conn_zalloc(void);

/*
 * First look at an Initial whose DCID matched no connection, by the worker that received
 * it, before it is handed to another worker or accepted; no state is created. DROP:
 * nothing ngtcp2_accept would take, a client DCID shorter than 8 bytes (RFC 9000 7.2), a
 * token we never issued (counted). ANSWERED: a Retry was sent (retry.h), or the refusal
 * of an invalid Retry token. PASS: accept it (wzp_conn_accept), here or on the worker
 * serving its room.
 */
enum wzp_screen { WZP_SCREEN_PASS, WZP_SCREEN_ANSWERED, WZP_SCREEN_DROP };
enum wzp_screen wzp_conn_screen_initial(struct wzp_worker *w, const uint8_t *pkt, size_t len,
                                        const struct sockaddr *from, socklen_t fromlen);

/*
 * Accept a new connection for an Initial that passed the screen, if the limits allow it
 * (quota.h: relay-wide and per source address, each refusal counted). Returns the new
 * connection or NULL.
 */
struct wzp_conn *wzp_conn_accept(struct wzp_worker *w, const uint8_t *pkt, size_t len,
                                 const struct sockaddr *from, socklen_t fromlen);

/* Feed one UDP payload to the connection. It may be freed: do not touch it after. */
void wzp_conn_input(struct wzp_conn *c, const uint8_t *pkt, size_t len, const struct sockaddr *from,
                    socklen_t fromlen);

/* Write everything pending (called once per loop iteration for dirty connections). */
void wzp_conn_flush(struct wzp_conn *c);

/* The connection's timer (wzp_worker_timer_set) fired: deadlines, ngtcp2's expiry. */
void wzp_conn_timer_fired(struct wzp_conn *c);

/* Queue media for this receiver (owner thread). */
void wzp_conn_queue_datagram(struct wzp_conn *c, const uint8_t *data, size_t len);

/* Queue a complete signal frame on a new server stream (owner thread). */
int wzp_conn_queue_signal(struct wzp_conn *c, const uint8_t *frame, size_t len);
/* The same for a RoomUpdate frame; a RoomUpdate still waiting for its stream is dropped,
 * since only the newest member list matters (joining a room of N then costs O(N) queued
 * updates per receiver at most once per loop iteration, not O(N) held in memory). */
int wzp_conn_queue_room_update(struct wzp_conn *c, const uint8_t *frame, size_t len);

/* A token validation this connection started has finished (the worker routes it here):
 * go on with the signals that waited for it, or refuse the connection. */
struct wzp_auth_result;
void wzp_conn_auth_done(struct wzp_conn *c, const struct wzp_auth_result *res);
/* The client's address on the connection's current path, "ip:port" or "[ipv6]:port". */
void wzp_conn_path_addr(struct wzp_conn *c, char *out, size_t outlen);
/* Let what is queued reach the client (acknowledged, or WZP_CONN_VERSION_LINGER_MS at
 * most), reading nothing more, then close with application code 0 and reason. */
void wzp_conn_close_after_send(struct wzp_conn *c, const char *reason);
/* Close with application code 0 and reason; leaves the room; logs why. */
void wzp_conn_close(struct wzp_conn *c, const char *reason);

/* Free immediately (owner thread): leaves the room, releases the session and every
 * admission count, detaches from the worker. */
void wzp_conn_destroy(struct wzp_conn *c);

#endif
