/* mesh.c - messages and wake-ups between worker threads (see mesh.h). */
#include "mesh.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of each (source, destination) ring: 512 KiB shared by a node's peers, each ring
 * between 64 and 256 KiB (a few thousand media messages). */
static size_t ring_bytes(unsigned n)
{
    size_t per_peer = n > 1 ? (512u * 1024) / (n - 1) : 0;
    size_t bytes = 64 * 1024;
    while (bytes * 2 <= per_peer && bytes < 256 * 1024)
        bytes *= 2;
    return bytes;
}

int wzp_mesh_init(struct wzp_mesh *m, unsigned n)
{
    memset(m, 0, sizeof *m);
    if (n == 0 || n > WZP_MESH_MAX_NODES)
        return WZP_EINVAL;
    m->nodes = calloc(n, sizeof *m->nodes);
    if (!m->nodes)
        return WZP_ENOMEM;
    m->n = n;
    for (unsigned i = 0; i < n; i++) /* first, so wzp_mesh_free may destroy them all */
        wzp_ctlq_init(&m->nodes[i].ctl, WZP_CTLQ_LIMIT);
    for (unsigned i = 0; i < n; i++) {
        struct wzp_mesh_node *node = &m->nodes[i];
        node->mesh = m;
        node->idx = i;
        node->inq = calloc(n, sizeof *node->inq);
        node->fan_n = calloc(n, sizeof *node->fan_n);
        node->fan_targets = calloc((size_t)n * WZP_FANOUT_CHUNK, sizeof *node->fan_targets);
        if (!node->inq || !node->fan_n || !node->fan_targets)
            return WZP_ENOMEM;
        for (unsigned src = 0; src < n; src++)
            if (src != i && wzp_spsc_init(&node->inq[src], ring_bytes(n)))
                return WZP_ENOMEM;
    }
    return WZP_OK;
}

void wzp_mesh_free(struct wzp_mesh *m)
{
    for (unsigned i = 0; m->nodes && i < m->n; i++) {
        struct wzp_mesh_node *node = &m->nodes[i];
        if (node->inq)
            for (unsigned src = 0; src < m->n; src++)
                wzp_spsc_destroy(&node->inq[src]);
        free(node->inq);
        free(node->fan_n);
        free(node->fan_targets);
        wzp_ctlq_destroy(&node->ctl); /* frees what is still queued */
    }
    free(m->nodes);
    memset(m, 0, sizeof *m);
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_mesh_node *node = a->data;
    node->on_wake(node->ctx);
}

/* The loop woke up: peers may queue to us without a wake-up until we block again. */
static void woke_cb(struct ev_loop *loop, ev_check *ck, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_mesh_node *node = ck->data;
    atomic_store_explicit(&node->idle, false, memory_order_relaxed);
}

void wzp_mesh_node_start(struct wzp_mesh_node *n, struct ev_loop *loop, struct wzp_stats *stats,
                         void (*on_wake)(void *ctx), void *ctx)
{
    n->loop = loop;
    n->stats = stats;
    n->on_wake = on_wake;
    n->ctx = ctx;
    ev_async_init(&n->wake, wake_cb);
    n->wake.data = n;
    ev_async_start(loop, &n->wake);
    ev_check_init(&n->woke, woke_cb);
    n->woke.data = n;
    ev_check_start(loop, &n->woke);
}

/* ---------------------------------------------------------------- sending */

static struct wzp_spsc *ring_to(struct wzp_mesh_node *self, unsigned dst)
{
    return &self->mesh->nodes[dst].inq[self->idx];
}

static void fanout_flush(struct wzp_mesh_node *self, unsigned dst)
{
    uint32_t n = self->fan_n[dst];
    struct wzp_xtarget *t = self->fan_targets + (size_t)dst * WZP_FANOUT_CHUNK;
    size_t hdr = sizeof(struct wzp_xdatagram) + n * sizeof *t;
    struct wzp_spsc *q = ring_to(self, dst);
    struct wzp_xdatagram *m = wzp_spsc_push_begin(q, hdr + self->fan_len);
    self->fan_n[dst] = 0;
    self->fan_mask &= ~(1ull << dst);
    if (!m) {
        WZP_STAT_ADD(self->stats, datagrams_queue_drops, n);
        return;
    }
    m->type = WZP_XMSG_DATAGRAM;
    m->len = (uint16_t)self->fan_len;
    m->ntargets = n;
    memcpy(m->targets, t, n * sizeof *t);
    memcpy((uint8_t *)m + hdr, self->fan_data, self->fan_len);
    wzp_spsc_push_commit(q);
    WZP_STAT_INC(self->stats, fanout_messages_out);
    self->ring_wake_pending |= 1ull << dst;
}

void wzp_mesh_fanout_begin(struct wzp_mesh_node *self, const uint8_t *data, size_t len)
{
    self->fan_data = data;
    self->fan_len = len;
}

void wzp_mesh_fanout_add(struct wzp_mesh_node *self, unsigned dst, uint32_t slot, uint32_t gen)
{
    uint32_t i = self->fan_n[dst]++;
    self->fan_targets[(size_t)dst * WZP_FANOUT_CHUNK + i] = (struct wzp_xtarget){slot, gen};
    self->fan_mask |= 1ull << dst;
    if (i + 1 == WZP_FANOUT_CHUNK)
        fanout_flush(self, dst);
}

void wzp_mesh_fanout_end(struct wzp_mesh_node *self)
{
    while (self->fan_mask)
        fanout_flush(self, (unsigned)__builtin_ctzll(self->fan_mask));
}

bool wzp_mesh_send_packet(struct wzp_mesh_node *self, unsigned dst, const uint8_t *data, size_t len,
                          const struct sockaddr *from, socklen_t fromlen)
{
    struct wzp_spsc *q = ring_to(self, dst);
    struct wzp_xpacket *m = wzp_spsc_push_begin(q, sizeof *m + len);
    if (!m) {
        WZP_STAT_INC(self->stats, steer_queue_full);
        return false;
    }
    m->type = WZP_XMSG_PACKET;
    m->len = (uint16_t)len;
    m->addrlen = fromlen;
    memcpy(&m->addr, from, fromlen);
    memcpy(m->data, data, len);
    wzp_spsc_push_commit(q);
    self->ring_wake_pending |= 1ull << dst;
    WZP_STAT_INC(self->stats, packets_steered_out);
    return true;
}

int wzp_mesh_send_ctl(struct wzp_mesh_node *self, unsigned dst, uint16_t type, uint32_t slot,
                      uint32_t gen, const void *data, size_t len)
{
    int rv = wzp_ctlq_push(&self->mesh->nodes[dst].ctl, type, slot, gen, data, len);
    if (rv == WZP_OK)
        self->wake_pending |= 1ull << dst;
    return rv;
}

int wzp_mesh_post_ctl(struct wzp_mesh *m, unsigned dst, uint16_t type, uint32_t slot, uint32_t gen,
                      const void *data, size_t len)
{
    int rv = wzp_ctlq_push(&m->nodes[dst].ctl, type, slot, gen, data, len);
    if (rv == WZP_OK)
        wzp_mesh_wake(m, dst);
    return rv;
}

void wzp_mesh_wake(struct wzp_mesh *m, unsigned dst)
{
    struct wzp_mesh_node *node = &m->nodes[dst];
    if (node->loop)
        ev_async_send(node->loop, &node->wake);
}

void wzp_mesh_kick_peers(struct wzp_mesh_node *self)
{
    uint64_t always = self->wake_pending, lazy = self->ring_wake_pending & ~self->wake_pending;
    self->wake_pending = self->ring_wake_pending = 0;
    /* Our ring pushes before the peer's idle flag: pairs with the fence in
     * wzp_mesh_going_idle, so either we see it idle and wake it, or it sees our messages
     * before it blocks. */
    if (lazy)
        atomic_thread_fence(memory_order_seq_cst);
    uint64_t m = always | lazy;
    while (m) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        m &= m - 1;
        struct wzp_mesh_node *peer = &self->mesh->nodes[i];
        if (((lazy >> i) & 1) && !atomic_load_explicit(&peer->idle, memory_order_relaxed)) {
            WZP_STAT_INC(self->stats, peer_wakeups_skipped);
            continue;
        }
        WZP_STAT_INC(self->stats, peer_wakeups);
        wzp_mesh_wake(self->mesh, i);
    }
}

/* ---------------------------------------------------------------- receiving */

void wzp_mesh_drain_rings(struct wzp_mesh_node *self,
                          void (*fn)(void *ctx, const void *msg, size_t len), void *ctx)
{
    for (unsigned src = 0; src < self->mesh->n; src++) {
        if (src == self->idx)
            continue;
        struct wzp_spsc *q = &self->inq[src];
        const void *msg;
        size_t len;
        while ((msg = wzp_spsc_peek(q, &len))) {
            fn(ctx, msg, len);
            wzp_spsc_pop_commit(q);
        }
    }
}

struct wzp_ctlmsg *wzp_mesh_take_ctl(struct wzp_mesh_node *self)
{
    return wzp_ctlq_take_all(&self->ctl);
}

static bool rings_pending(struct wzp_mesh_node *self)
{
    for (unsigned src = 0; src < self->mesh->n; src++)
        if (src != self->idx && wzp_spsc_pending(&self->inq[src]))
            return true;
    return false;
}

bool wzp_mesh_going_idle(struct wzp_mesh_node *self)
{
    /* Say so, then take what peers queued without waking us (they saw us busy). Pairs
     * with the fence in wzp_mesh_kick_peers. */
    atomic_store_explicit(&self->idle, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (!rings_pending(self))
        return true;
    atomic_store_explicit(&self->idle, false, memory_order_relaxed);
    return false;
}

/* ---------------------------------------------------------------- observing */

size_t wzp_mesh_ctl_depth(struct wzp_mesh *m, unsigned idx)
{
    struct wzp_ctlq *q = &m->nodes[idx].ctl;
    pthread_mutex_lock(&q->lock);
    size_t depth = q->count;
    pthread_mutex_unlock(&q->lock);
    return depth;
}

uint64_t wzp_mesh_ring_depth(struct wzp_mesh *m, unsigned idx)
{
    uint64_t depth = 0;
    for (unsigned src = 0; src < m->n; src++)
        if (src != idx)
            depth += wzp_spsc_depth(&m->nodes[idx].inq[src]);
    return depth;
}
