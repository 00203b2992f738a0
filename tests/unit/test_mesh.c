/*
 * test_mesh.c - messages between workers: media fan-out (one message per destination and
 * chunk), steered packets, control messages, the bounded rings, and who gets woken.
 * Each node runs its own libev loop here, without threads: a wake-up is an ev_async that
 * becomes pending in the destination's loop.
 */
#include "mesh.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

enum { NNODES = 3 };

static struct wzp_mesh mesh;
static struct ev_loop *loops[NNODES];
static struct wzp_stats stats[NNODES];
static unsigned woken[NNODES];

static void on_wake(void *ctx)
{
    woken[(unsigned)(uintptr_t)ctx]++;
}

static void setup(void)
{
    memset(stats, 0, sizeof stats);
    memset(woken, 0, sizeof woken);
    cr_assert_eq(wzp_mesh_init(&mesh, NNODES), WZP_OK);
    for (unsigned i = 0; i < NNODES; i++) {
        loops[i] = ev_loop_new(EVFLAG_AUTO);
        wzp_mesh_node_start(&mesh.nodes[i], loops[i], &stats[i], on_wake, (void *)(uintptr_t)i);
    }
}

static void teardown(void)
{
    for (unsigned i = 0; i < NNODES; i++)
        ev_loop_destroy(loops[i]);
    wzp_mesh_free(&mesh);
}

TestSuite(mesh, .init = setup, .fini = teardown);

struct collected {
    const uint8_t *payload;
    size_t plen;
    struct wzp_xtarget targets[256];
    size_t ntargets;
    unsigned msgs, packets;
    uint8_t packet[64];
    size_t packet_len;
};

static void collect_one(void *ctx, const void *m, size_t len)
{
    struct collected *c = ctx;
    uint16_t type;
    memcpy(&type, m, sizeof type);
    if (type == WZP_XMSG_PACKET) {
        const struct wzp_xpacket *p = m;
        c->packets++;
        c->packet_len = p->len;
        memcpy(c->packet, p->data, p->len < sizeof c->packet ? p->len : sizeof c->packet);
        return;
    }
    const struct wzp_xdatagram *d = m;
    cr_assert_eq(d->type, WZP_XMSG_DATAGRAM);
    cr_assert_eq(d->len, c->plen);
    cr_assert_leq(d->ntargets, WZP_FANOUT_CHUNK);
    cr_assert_eq(len, sizeof *d + d->ntargets * sizeof d->targets[0] + c->plen);
    cr_assert_eq(memcmp(&d->targets[d->ntargets], c->payload, c->plen), 0, "payload intact");
    memcpy(c->targets + c->ntargets, d->targets, d->ntargets * sizeof d->targets[0]);
    c->ntargets += d->ntargets;
    c->msgs++;
}

/* Everything node dst has in its rings. */
static unsigned collect(unsigned dst, const uint8_t *payload, size_t plen, struct collected *c)
{
    memset(c, 0, sizeof *c);
    c->payload = payload;
    c->plen = plen;
    wzp_mesh_drain_rings(&mesh.nodes[dst], collect_one, c);
    return c->msgs;
}

/* Run node i's loop once without blocking: pending wake-ups call on_wake. */
static void run_once(unsigned i)
{
    ev_run(loops[i], EVRUN_NOWAIT);
}

Test(mesh, fanout_one_message_per_node_and_chunk)
{
    uint8_t payload[112];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    struct wzp_mesh_node *w = &mesh.nodes[0];
    /* 150 receivers on worker 1 and 5 on worker 2, interleaved as in a room. */
    wzp_mesh_fanout_begin(w, payload, sizeof payload);
    unsigned n1 = 0, n2 = 0;
    for (unsigned i = 0; i < 155; i++) {
        if (i % 31 == 0 && n2 < 5)
            wzp_mesh_fanout_add(w, 2, 1000 + n2, 7 * n2), n2++;
        else
            wzp_mesh_fanout_add(w, 1, n1, 3 * n1), n1++;
    }
    wzp_mesh_fanout_end(w);
    cr_assert_eq(n1, 150);
    cr_assert_eq(n2, 5);
    cr_assert_eq(w->ring_wake_pending, (1u << 1) | (1u << 2), "both destinations must be woken");

    static struct collected c;
    cr_assert_eq(collect(1, payload, sizeof payload, &c), 3, "64 + 64 + 22 receivers");
    cr_assert_eq(c.ntargets, 150);
    for (unsigned i = 0; i < 150; i++) {
        cr_assert_eq(c.targets[i].slot, i, "receivers in room order");
        cr_assert_eq(c.targets[i].gen, 3 * i);
    }
    cr_assert_eq(collect(2, payload, sizeof payload, &c), 1);
    cr_assert_eq(c.ntargets, 5);
    cr_assert_eq(c.targets[4].slot, 1004);
    cr_assert_eq(c.targets[4].gen, 28);
    cr_assert_eq(collect(0, payload, sizeof payload, &c), 0, "nothing went backwards");

    /* A second datagram reuses the buffers: no stale targets from the first. */
    wzp_mesh_fanout_begin(w, payload, 40);
    wzp_mesh_fanout_add(w, 2, 9, 9);
    wzp_mesh_fanout_end(w);
    cr_assert_eq(collect(1, payload, 40, &c), 0);
    cr_assert_eq(collect(2, payload, 40, &c), 1);
    cr_assert_eq(c.ntargets, 1);
    cr_assert_eq(c.targets[0].slot, 9);
}

Test(mesh, full_ring_drops_and_counts_every_receiver)
{
    uint8_t payload[1000] = {0};
    struct wzp_mesh_node *w = &mesh.nodes[0];
    uint64_t sent_receivers = 0;
    /* Nobody drains worker 1: keep fanning out 10 receivers per datagram. */
    for (unsigned k = 0; k < 2000; k++) {
        wzp_mesh_fanout_begin(w, payload, sizeof payload);
        for (unsigned i = 0; i < 10; i++)
            wzp_mesh_fanout_add(w, 1, i, 0);
        wzp_mesh_fanout_end(w);
        sent_receivers += 10;
    }
    uint64_t drops = atomic_load(&stats[0].datagrams_queue_drops);
    uint64_t queued = wzp_mesh_ring_depth(&mesh, 1);
    cr_assert_gt(drops, 0, "the ring is bounded");
    cr_assert_gt(queued, 0);
    cr_assert_eq(queued * 10 + drops, sent_receivers, "every receiver is queued or counted");
}

Test(mesh, ring_traffic_wakes_only_an_idle_node)
{
    uint8_t payload[20] = {1, 2, 3};
    struct wzp_mesh_node *self = &mesh.nodes[0];
    /* Node 1 is busy (not idle): it will drain before blocking, no wake-up needed. */
    wzp_mesh_fanout_begin(self, payload, sizeof payload);
    wzp_mesh_fanout_add(self, 1, 1, 1);
    wzp_mesh_fanout_end(self);
    wzp_mesh_kick_peers(self);
    run_once(1);
    cr_assert_eq(woken[1], 0);
    cr_assert_eq(atomic_load(&stats[0].peer_wakeups_skipped), 1);
    /* ... and indeed it does: going idle with messages waiting says "not yet". */
    cr_assert_not(wzp_mesh_going_idle(&mesh.nodes[1]));
    static struct collected c;
    cr_assert_eq(collect(1, payload, sizeof payload, &c), 1);
    cr_assert(wzp_mesh_going_idle(&mesh.nodes[1]), "nothing waiting: may block");
    /* Now idle: the next message wakes it. */
    wzp_mesh_fanout_begin(self, payload, sizeof payload);
    wzp_mesh_fanout_add(self, 1, 2, 2);
    wzp_mesh_fanout_end(self);
    wzp_mesh_kick_peers(self);
    run_once(1);
    cr_assert_eq(woken[1], 1);
    cr_assert_eq(atomic_load(&stats[0].peer_wakeups), 1);
    /* Its loop woke up: not idle any more (the check watcher ran). */
    cr_assert_not(atomic_load(&mesh.nodes[1].idle));
    cr_assert_eq(woken[2], 0, "node 2 was never sent anything");
}

Test(mesh, control_messages_always_wake_and_keep_order)
{
    struct wzp_mesh_node *self = &mesh.nodes[2];
    cr_assert_eq(wzp_mesh_send_ctl(self, 0, WZP_CTL_SIGNAL, 5, 6, "first", 6), WZP_OK);
    cr_assert_eq(wzp_mesh_send_ctl(self, 0, WZP_CTL_CLOSE, 5, 6, "second", 7), WZP_OK);
    cr_assert_eq(wzp_mesh_ctl_depth(&mesh, 0), 2);
    run_once(0);
    cr_assert_eq(woken[0], 0, "woken at kick_peers, not at each message");
    wzp_mesh_kick_peers(self);
    run_once(0);
    cr_assert_eq(woken[0], 1, "a busy node is woken for control messages");
    struct wzp_ctlmsg *m = wzp_mesh_take_ctl(&mesh.nodes[0]);
    cr_assert_not_null(m);
    cr_assert_str_eq((const char *)m->data, "first");
    cr_assert_eq(m->slot, 5);
    cr_assert_eq(m->gen, 6);
    cr_assert_not_null(m->next);
    cr_assert_str_eq((const char *)m->next->data, "second");
    cr_assert_eq(m->next->type, WZP_CTL_CLOSE);
    cr_assert_null(m->next->next);
    free(m->next);
    free(m);
    cr_assert_eq(wzp_mesh_ctl_depth(&mesh, 0), 0);
    /* From a thread that is no node: the wake-up is immediate. */
    cr_assert_eq(wzp_mesh_post_ctl(&mesh, 1, WZP_CTL_KICK, 1, 1, "x", 2), WZP_OK);
    run_once(1);
    cr_assert_eq(woken[1], 1);
    /* Unread messages are freed with the mesh (ASan would report a leak). */
}

Test(mesh, steered_packet_arrives_with_its_sender)
{
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(4242)};
    uint8_t pkt[40];
    memset(pkt, 0xab, sizeof pkt);
    cr_assert(wzp_mesh_send_packet(&mesh.nodes[1], 2, pkt, sizeof pkt, (struct sockaddr *)&from,
                                   sizeof from));
    cr_assert_eq(atomic_load(&stats[1].packets_steered_out), 1);
    static struct collected c;
    collect(2, NULL, 0, &c);
    cr_assert_eq(c.packets, 1);
    cr_assert_eq(c.packet_len, sizeof pkt);
    cr_assert_eq(memcmp(c.packet, pkt, sizeof pkt), 0);
}

Test(mesh, sizes_are_checked)
{
    struct wzp_mesh m;
    cr_assert_eq(wzp_mesh_init(&m, 0), WZP_EINVAL);
    wzp_mesh_free(&m);
    cr_assert_eq(wzp_mesh_init(&m, WZP_MESH_MAX_NODES + 1), WZP_EINVAL);
    wzp_mesh_free(&m);
    cr_assert_eq(wzp_mesh_init(&m, 1), WZP_OK);
    cr_assert_eq(wzp_mesh_ring_depth(&m, 0), 0, "a single node has no rings");
    wzp_mesh_free(&m);
}
