/*
 * worker.h - one worker thread: a libev loop, a UDP socket bound with SO_REUSEPORT to
 * the listen address, the connections it accepted, and its end of the cross-worker
 * queues.
 *
 * Ownership: a connection is created, touched and freed only by its worker. Other
 * workers reach it through (slot, gen) handles: media via the SPSC ring from that worker,
 * signals and close requests via the control queue. Handles of freed connections fail
 * the generation check and the message is dropped.
 *
 * Per loop iteration the worker reads a batch of packets (recvmmsg), handles them
 * (which fills receivers' queues and marks them dirty), drains cross-worker queues,
 * then writes every dirty connection once and sends all packets with sendmmsg.
 */
#ifndef WZP_WORKER_H
#define WZP_WORKER_H

#include "relay.h"
#include "stats.h"
#include "xq.h"

#include <ev.h>
#include <ngtcp2/ngtcp2.h>
#include <pthread.h>

#define WZP_SCID_LEN        16 /* our connection IDs; byte 0 is the owning worker */
#define WZP_RX_BATCH        32
#define WZP_TX_BATCH        64
#define WZP_TX_PACKET_BYTES 1452
#define WZP_SPSC_SLOTS      1024 /* per (source, destination) worker pair */
#define WZP_CTLQ_LIMIT      16384

struct wzp_conn;

struct wzp_cid_entry {
    struct wzp_cid_entry *next;
    ngtcp2_cid cid;
    struct wzp_conn *conn;
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
    ev_async wake;
    ev_prepare flush_prep; /* writes dirty connections before the loop blocks */
    ev_timer policy_timer; /* worker 0: the policy's wzp.every timers */
    _Atomic bool stop_requested;
    bool stopped;

    /* connections */
    struct wzp_cid_entry **cid_buckets;
    size_t cid_nbuckets;
    struct wzp_slot *slots;
    uint32_t nslots, free_slot;
    struct wzp_conn *conns; /* every live connection (doubly linked) */
    struct wzp_conn *dirty; /* connections with something to write */
    unsigned nconns;

    /* queues from every other worker (indexed by source) and the control queue */
    struct wzp_spsc *inq; /* array of nworkers rings; [idx] unused */
    struct wzp_ctlq ctl;
    uint64_t wake_pending; /* bit i: worker i has new messages from us */

    /* stateless reset rate limit */
    uint64_t reset_window_start_ns;
    unsigned resets_in_window;

    /* batched transmit */
    struct mmsghdr tx_msgs[WZP_TX_BATCH];
    struct iovec tx_iov[WZP_TX_BATCH];
    struct sockaddr_storage tx_addr[WZP_TX_BATCH];
    uint8_t tx_buf[WZP_TX_BATCH][WZP_TX_PACKET_BYTES];
    unsigned tx_count;

    /* policy: the state this worker uses, and the next one waiting to be switched in */
    struct wzp_policy *policy;
    _Atomic(struct wzp_policy *) policy_pending;
    struct wzp_policy_stats policy_stats; /* every state this worker ran, cumulative */

    struct wzp_stats stats;
};

int wzp_worker_init(struct wzp_worker *w, struct wzp_relay *r, unsigned idx, char *err,
                    size_t errlen);
int wzp_worker_start(struct wzp_worker *w);
void wzp_worker_request_stop(struct wzp_worker *w);
void wzp_worker_free(struct wzp_worker *w);

/* The worker running on the calling thread, or NULL. */
struct wzp_worker *wzp_worker_current(void);

/* CID table (owner thread only). */
int wzp_worker_cid_add(struct wzp_worker *w, const ngtcp2_cid *cid, struct wzp_conn *c);
void wzp_worker_cid_remove(struct wzp_worker *w, const ngtcp2_cid *cid);
struct wzp_conn *wzp_worker_cid_find(struct wzp_worker *w, const uint8_t *cid, size_t len);

/* Handles (owner thread only). */
int wzp_worker_slot_alloc(struct wzp_worker *w, struct wzp_conn *c, uint32_t *slot, uint32_t *gen);
void wzp_worker_slot_free(struct wzp_worker *w, uint32_t slot);
struct wzp_conn *wzp_worker_slot_get(struct wzp_worker *w, uint32_t slot, uint32_t gen);

/* Mark a connection as having something to write in this iteration. */
void wzp_worker_mark_dirty(struct wzp_worker *w, struct wzp_conn *c);

/* Transmit: a buffer for the next packet, then commit it with its destination. */
uint8_t *wzp_worker_tx_buf(struct wzp_worker *w);
void wzp_worker_tx_commit(struct wzp_worker *w, size_t len, const struct sockaddr *to,
                          socklen_t tolen);
void wzp_worker_tx_flush(struct wzp_worker *w);

/*
 * Deliver to the connection (worker, slot, gen), from any worker thread.
 * Media: copied into the destination's ring (dropped and counted when full).
 * Signal frame / close: through the destination's control queue.
 */
void wzp_worker_forward_datagram(struct wzp_worker *self, unsigned dst, uint32_t slot, uint32_t gen,
                                 const uint8_t *data, size_t len);
int wzp_worker_send_ctl(struct wzp_worker *self, unsigned dst, uint16_t type, uint32_t slot,
                        uint32_t gen, const void *data, size_t len);

/* Hand a new policy state to the worker (any thread); it switches at its next wake-up. */
void wzp_worker_offer_policy(struct wzp_worker *w, struct wzp_policy *p);

/* Wake the workers we queued messages to since the last call. */
void wzp_worker_kick_peers(struct wzp_worker *w);

#endif
