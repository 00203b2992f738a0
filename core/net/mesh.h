/*
 * mesh.h - every message between worker threads, and the wake-ups that go with them.
 *
 * Each worker is one node of the relay's mesh. A node receives through
 *  - one SPSC byte ring per other node: media fan-out (one payload and the receivers on
 *    the destination, up to WZP_FANOUT_CHUNK per message) and QUIC packets that reached
 *    the wrong worker's socket. Lock-free; a full ring drops the message and counts it.
 *  - one control queue (mutex, bounded by count): signal frames to send, close and kick
 *    requests. Rare, ordered (one FIFO per node), and open to any thread.
 * The mesh knows nothing of connections: a receiver is a (slot, gen) handle that only
 * the destination interprets.
 *
 * Wake-ups. A node that queued to others during a loop iteration wakes them once, when
 * its loop is about to block (wzp_mesh_kick_peers). Control messages always wake the
 * destination. Ring messages wake it only if it is idle: a node announces it is about to
 * block with wzp_mesh_going_idle, which sets its idle flag, fences, and reports ring
 * messages that arrived meanwhile; a sender fences between its pushes and reading that
 * flag. So either the sender sees the node idle and wakes it, or the node sees the
 * messages before it blocks; no message waits for a wake-up that never comes.
 *
 * Threads: a node's sending calls (fanout, send_packet, send_ctl, kick_peers) and its
 * receiving calls run on its own worker's thread; post_ctl and wake run on any thread;
 * the depth readers on any thread.
 */
#ifndef WZP_MESH_H
#define WZP_MESH_H

#include "stats.h"
#include "xq.h"

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define WZP_MESH_MAX_NODES 64 /* pending-wake bitmaps are 64 bits */
#define WZP_FANOUT_CHUNK   64 /* receivers per cross-worker media message, at most */
#define WZP_CTLQ_LIMIT     16384

struct wzp_mesh;

struct wzp_mesh_node {
    struct wzp_mesh *mesh;
    unsigned idx;
    struct wzp_stats *stats; /* where this node counts (its worker's counters) */

    /* inbound: filled by other nodes */
    struct wzp_spsc *inq; /* [n] rings, indexed by source; [idx] unused */
    struct wzp_ctlq ctl;
    _Atomic bool idle; /* set just before the owner's loop blocks, cleared when it wakes */

    /* the owner's loop */
    struct ev_loop *loop;
    ev_async wake;
    ev_check woke;
    void (*on_wake)(void *ctx);
    void *ctx;

    /* outbound, owner thread only */
    uint64_t wake_pending;      /* bit i: node i has new control messages from us */
    uint64_t ring_wake_pending; /* bit i: node i has new ring messages from us */
    const uint8_t *fan_data;
    size_t fan_len;
    uint64_t fan_mask;               /* bit i: fan_targets for node i has entries */
    uint32_t *fan_n;                 /* [n] targets collected per destination */
    struct wzp_xtarget *fan_targets; /* [n][WZP_FANOUT_CHUNK] */
};

struct wzp_mesh {
    unsigned n;
    struct wzp_mesh_node *nodes; /* [n] */
};

/* n nodes (1..WZP_MESH_MAX_NODES), rings sized for n. WZP_ENOMEM, WZP_EINVAL. On failure
 * the mesh is still safe to free. */
int wzp_mesh_init(struct wzp_mesh *m, unsigned n);
/* Frees the rings and every queued message; the nodes' loops must no longer run. */
void wzp_mesh_free(struct wzp_mesh *m);

/* Node idx's owner binds it to its loop before the loop runs: on_wake(ctx) runs in that
 * loop whenever another thread woke the node; stats receive the node's counters. */
void wzp_mesh_node_start(struct wzp_mesh_node *n, struct ev_loop *loop, struct wzp_stats *stats,
                         void (*on_wake)(void *ctx), void *ctx);

/*
 * Media fan-out of one datagram from node self: begin with the payload, add every
 * receiver on another node, end. Each destination gets one message holding the payload
 * once and its receivers. The payload must stay valid until end. A full ring drops the
 * message and counts its receivers in datagrams_queue_drops.
 */
void wzp_mesh_fanout_begin(struct wzp_mesh_node *self, const uint8_t *data, size_t len);
void wzp_mesh_fanout_add(struct wzp_mesh_node *self, unsigned dst, uint32_t slot, uint32_t gen);
void wzp_mesh_fanout_end(struct wzp_mesh_node *self);

/* A received UDP payload (<= WZP_MAX_UDP_PAYLOAD) to node dst, with its sender. false if
 * dst's ring from us is full (counted in steer_queue_full). */
bool wzp_mesh_send_packet(struct wzp_mesh_node *self, unsigned dst, const uint8_t *data, size_t len,
                          const struct sockaddr *from, socklen_t fromlen);

/* A control message (copied) to node dst, from node self's thread; dst is woken at the
 * next kick_peers. WZP_EFULL (queue at WZP_CTLQ_LIMIT), WZP_ENOMEM. */
int wzp_mesh_send_ctl(struct wzp_mesh_node *self, unsigned dst, uint16_t type, uint32_t slot,
                      uint32_t gen, const void *data, size_t len);

/* The same from any thread, waking dst at once. */
int wzp_mesh_post_ctl(struct wzp_mesh *m, unsigned dst, uint16_t type, uint32_t slot, uint32_t gen,
                      const void *data, size_t len);

/* Wake node dst (any thread): its on_wake runs soon. */
void wzp_mesh_wake(struct wzp_mesh *m, unsigned dst);

/* Wake the nodes self queued to since the last call (see the header comment). */
void wzp_mesh_kick_peers(struct wzp_mesh_node *self);

/* Receiving, on the node's thread: every ring message waiting, oldest first per source,
 * each passed to fn and released after it returns. */
void wzp_mesh_drain_rings(struct wzp_mesh_node *self,
                          void (*fn)(void *ctx, const void *msg, size_t len), void *ctx);
/* Every control message waiting, in FIFO order; the caller frees each with free(). */
struct wzp_ctlmsg *wzp_mesh_take_ctl(struct wzp_mesh_node *self);

/* The owner's loop is about to block. Returns true if it may (idle is now set); false if
 * ring messages arrived meanwhile: drain them and ask again. */
bool wzp_mesh_going_idle(struct wzp_mesh_node *self);

/* Snapshots for /metrics (any thread): control messages and ring messages waiting. */
size_t wzp_mesh_ctl_depth(struct wzp_mesh *m, unsigned idx);
uint64_t wzp_mesh_ring_depth(struct wzp_mesh *m, unsigned idx);

#endif
