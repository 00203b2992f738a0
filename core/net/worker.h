/*
 * worker.h - one worker thread: a libev loop, a UDP socket bound with SO_REUSEPORT to
 * the listen address, the connections it accepted, and its end of the cross-worker
 * queues.
 *
 * Ownership: a connection is created, touched and freed only by its worker. Other
 * workers reach it through (slot, gen) handles, in messages of the mesh (mesh.h): media
 * and steered packets through rings, signals and close requests through the control
 * queue. Handles of freed connections fail the generation check and the message is
 * dropped.
 *
 * Per loop iteration the worker reads batches of packets (recvmmsg), handles them
 * (which fills receivers' queues and marks them dirty), drains cross-worker queues,
 * then writes every dirty connection once and sends all packets with sendmmsg; when a
 * receive batch was full it also writes and sends before reading the next one.
 *
 * Transmit: txbatch.h (one batch per worker, sent with sendmmsg and UDP GSO).
 */
#ifndef WZP_WORKER_H
#define WZP_WORKER_H

#include "cidtab.h"
#include "relay_state.h"
#include "stats.h"
#include "twheel.h"
#include "txbatch.h"
#include "mesh.h"
#include "xq.h"

#include <ev.h>
#include <ngtcp2/ngtcp2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define WZP_SCID_LEN 16 /* our connection IDs; byte 0 is the owning worker */
#define WZP_RX_BATCH 32

struct wzp_conn;

/* A connection's CIDs in the worker's table, kept by the connection so they are removed
 * together whatever ngtcp2 still reports. ngtcp2 keeps at most 8 of our SCIDs at a time
 * (retired ones included, NGTCP2_MAX_SCID_POOL_SIZE), and the table also holds the
 * client's first DCID. */
#define WZP_CONN_CIDS 10
struct wzp_cid_key {
    uint8_t len;
    uint8_t data[WZP_CIDTAB_KEY_MAX];
};

/* Where a new connection's packets were handed (room affinity), by client-chosen DCID. */
#define WZP_HANDOVER_SLOTS 1024
struct wzp_handover {
    uint8_t dcid[NGTCP2_MAX_CIDLEN];
    uint8_t dcidlen;
    uint8_t worker;
    uint64_t expires_ns;
};

struct wzp_slot {
    struct wzp_conn *conn; /* NULL when free */
    uint32_t gen;
    uint32_t next_free;
};

struct wzp_worker {
    struct wzp_relay *relay;
    unsigned idx;
    pthread_t thread;
    struct ev_loop *loop;
    int fd;
    ev_io rx;
    uint8_t *rx_bufs;              /* WZP_RX_BATCH receive buffers of rx_buf_len bytes */
    struct wzp_rx_slots *rx_slots; /* the receive batch's message headers (worker.c) */
    size_t rx_buf_len;             /* 64 KiB with UDP GRO (a train of packets), else one packet's */
    ev_prepare flush_prep;         /* writes dirty connections before the loop blocks */
    ev_timer policy_timer;         /* worker 0: the policy's wzp.every timers */
    ev_timer heartbeat;            /* wakes an idle loop every second, so loop_ns stays fresh */
    struct wzp_twheel timers;      /* every connection's timer (twheel.h) */
    ev_timer wheel_timer;          /* fires when the wheel's earliest timer is due */
    uint64_t wheel_at_ns;          /* when wheel_timer is set to fire */
    uint64_t trim_churn, trim_churn_prev; /* worker 0: connections accepted + freed at the
                                           * last heap trim, and a second ago */
    _Atomic uint64_t loop_ns;             /* when the loop last went round (0: not started yet) */
    uint64_t clock_ns; /* the connections' clock (wzp_worker_clock, wzp_worker_now) */
    _Atomic bool stop_requested;
    bool stopped;

    /* connections */
    struct wzp_cidtab cids; /* every connection's CIDs; each also on its conn->cids */
    struct wzp_slot *slots;
    uint32_t nslots, free_slot;
    struct wzp_conn *conns; /* every live connection (doubly linked) */
    struct wzp_conn *dirty; /* connections with something to write */

    /* this worker's node of the relay's mesh: every message to and from other workers */
    struct wzp_mesh_node *node;
    struct wzp_auth *auth; /* featherChat token validation (auth.h); NULL when off */

    /* room affinity: new connections handed to the worker serving their room */
    struct wzp_handover *handover; /* [WZP_HANDOVER_SLOTS], direct-mapped, overwritten */

    /* the kernel's count of packets dropped at this socket, as last reported
     * (SO_RXQ_OVFL), and when a line about them was last logged */
    uint32_t rx_overflow_seen;
    uint64_t rx_overflow_logged_ns;

    /* handshake pressure: at most one log line per WZP_PRESSURE_LOG_NS, with what
     * changed since the last one (wzp_worker_note_pressure) */
    uint64_t pressure_logged_ns;
    uint64_t pressure_seen[3]; /* retries_sent, retry_tokens_invalid, per-address refusals */

    /* rate limits of the stateless replies to packets of no connection (each per second) */
    struct wzp_reply_rate {
        uint64_t window_start_ns;
        unsigned sent;
    } reset_rate, vn_rate;

    /* batched transmit */
    struct wzp_txbatch tx;

    /* policy: the state this worker uses, and the next one waiting to be switched in */
    struct wzp_policy *policy;
    _Atomic(struct wzp_policy *) policy_pending;
    /* the shadow policy (--shadow-policy; shadow.h): asked after the live one, never obeyed */
    struct wzp_policy *shadow;
    _Atomic(struct wzp_policy *) shadow_pending;
    _Atomic bool shadow_drop;  /* promoted or removed: free it at the next loop boundary */
    uint64_t shadow_logged_ns; /* the last disagreement written to the event log */
    struct wzp_policy_stats policy_stats; /* every state this worker ran, cumulative */

    struct wzp_stats stats;
    struct wzp_gauges gauges;
};

int wzp_worker_init(struct wzp_worker *w, struct wzp_relay *r, unsigned idx, char *err,
                    size_t errlen);
int wzp_worker_start(struct wzp_worker *w);
void wzp_worker_request_stop(struct wzp_worker *w);
void wzp_worker_free(struct wzp_worker *w);

/* Attach the kernel program that delivers each packet addressed to one of our connection
 * IDs to the socket of the worker owning it (every worker socket must be bound, in worker
 * order). Room affinity depends on it. */
int wzp_worker_steer_by_cid(struct wzp_relay *r, char *err, size_t errlen);

/* The worker running on the calling thread, or NULL. */
struct wzp_worker *wzp_worker_current(void);

/*
 * CID table (owner thread only). add: WZP_EINVAL for an empty CID, one already in the
 * table (a key never maps to two connections) or one past c's WZP_CONN_CIDS, WZP_ENOMEM.
 * remove: key cid of c, if c has it. remove_conn: every key of c, also those ngtcp2 no
 * longer lists; call before freeing c.
 */
int wzp_worker_cid_add(struct wzp_worker *w, const ngtcp2_cid *cid, struct wzp_conn *c);
void wzp_worker_cid_remove(struct wzp_worker *w, const ngtcp2_cid *cid, struct wzp_conn *c);
void wzp_worker_cid_remove_conn(struct wzp_worker *w, struct wzp_conn *c);
struct wzp_conn *wzp_worker_cid_find(struct wzp_worker *w, const uint8_t *cid, size_t len);

/*
 * A connection's place in its worker (owner thread only): attach puts c on the worker's
 * list and gives it a handle (c->slot, c->gen); WZP_ENOMEM leaves c unattached. detach
 * takes it off every worker structure: the list, the dirty list, its handle and all its
 * CID table entries. Both touch only those worker fields of c (conn.h says which).
 */
int wzp_worker_attach(struct wzp_worker *w, struct wzp_conn *c);
void wzp_worker_detach(struct wzp_worker *w, struct wzp_conn *c);

/* The connection behind a handle, or NULL once it was detached (owner thread only). */
struct wzp_conn *wzp_worker_slot_get(struct wzp_worker *w, uint32_t slot, uint32_t gen);

/* Signal bytes a connection of this worker buffered (> 0) or released (< 0). */
void wzp_worker_account_signal_bytes(struct wzp_worker *w, int64_t delta);

/* Handle one UDP payload (1..WZP_MAX_UDP_PAYLOAD bytes) as if this worker's socket had
 * received it (owner thread): what rx_cb does per packet. For fuzzers and tests. */
void wzp_worker_input(struct wzp_worker *w, const uint8_t *data, size_t len,
                      const struct sockaddr *from, socklen_t fromlen);

/* Something was refused or answered because of handshake pressure (Retry, per-address
 * limits, a bad token; peer: the latest sender): log one line about it, at most every
 * 10 s per worker, with the counts since the last line. */
void wzp_worker_note_pressure(struct wzp_worker *w, const char *peer);

/*
 * The clock of the worker's connections. ngtcp2 wants a connection's timestamps never to
 * go back, and reading the system clock for every packet added up (4.9 reads per
 * delivered datagram, ~1.6 % of the relay's CPU). wzp_worker_clock() reads the monotonic
 * clock and keeps the reading; wzp_worker_now() returns the last reading without a system
 * call. The worker reads the clock per batch of received packets, before each flush pass,
 * when its timer wheel fires and when another thread wakes it, so what packet input,
 * flushes and timers take is at most one batch old; cold paths read it themselves. Every
 * timestamp handed to ngtcp2 comes from one of the two.
 */
uint64_t wzp_worker_clock(struct wzp_worker *w);
static inline uint64_t wzp_worker_now(const struct wzp_worker *w)
{
    return w->clock_ns;
}

/* Mark a connection as having something to write in this iteration. */
void wzp_worker_mark_dirty(struct wzp_worker *w, struct wzp_conn *c);

/* A connection's timer on the worker's wheel: (re)armed for due_ns, or cancelled. When it
 * fires the worker calls wzp_conn_timer_fired(). */
void wzp_worker_timer_set(struct wzp_worker *w, struct wzp_tnode *n, uint64_t due_ns);
void wzp_worker_timer_cancel(struct wzp_worker *w, struct wzp_tnode *n);

/*
 * Transmit: a buffer of WZP_TX_PACKET_BYTES for the next packet (the arena's tail; the
 * batch is sent first if it is full), then commit it with its destination. Until the
 * commit, repeated calls return the same buffer. Flush sends the batch.
 */
uint8_t *wzp_worker_tx_buf(struct wzp_worker *w);
void wzp_worker_tx_commit(struct wzp_worker *w, size_t len, const struct sockaddr *to,
                          socklen_t tolen);
void wzp_worker_tx_flush(struct wzp_worker *w);

/* Seconds since the worker's loop last went round: about 1 at most when healthy; more
 * means it is stuck in something (a long C call of a policy, a deadlock). 0 before the
 * worker started. Any thread. */
double wzp_worker_loop_age(const struct wzp_worker *w, uint64_t now_ns);
#define WZP_WORKER_STUCK_S 5.0 /* a loop age from which /health and /ready fail */

/* Hand a new policy state to the worker (any thread); it switches at its next wake-up. */
void wzp_worker_offer_policy(struct wzp_worker *w, struct wzp_policy *p);
/* The same for the shadow policy; p NULL: the worker drops its shadow. */
void wzp_worker_offer_shadow(struct wzp_worker *w, struct wzp_policy *p);

#endif
