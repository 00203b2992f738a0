/* test_fanout.c - cross-worker media fan-out: one message per destination worker. */
#include "worker.h"

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

enum { NWORKERS = 3 };

static struct wzp_relay relay;
static struct wzp_worker workers[NWORKERS];
static struct wzp_worker *worker_ptrs[NWORKERS];

static void setup(void)
{
    memset(&relay, 0, sizeof relay);
    relay.nworkers = NWORKERS;
    relay.workers = worker_ptrs;
    for (unsigned i = 0; i < NWORKERS; i++) {
        memset(&workers[i], 0, sizeof workers[i]);
        worker_ptrs[i] = &workers[i];
        cr_assert_eq(wzp_worker_init_queues(&workers[i], &relay, i), WZP_OK);
    }
}

static void teardown(void)
{
    for (unsigned i = 0; i < NWORKERS; i++)
        wzp_worker_free_queues(&workers[i]);
}

TestSuite(fanout, .init = setup, .fini = teardown);

/* Read every datagram message worker dst has from worker src; check the payload and
 * append the targets to out. Returns the number of messages. */
static unsigned collect(unsigned dst, unsigned src, const uint8_t *payload, size_t plen,
                        struct wzp_xtarget *out, size_t *nout)
{
    struct wzp_spsc *q = &workers[dst].inq[src];
    unsigned msgs = 0;
    const void *m;
    size_t len;
    while ((m = wzp_spsc_peek(q, &len))) {
        const struct wzp_xdatagram *d = m;
        cr_assert_eq(d->type, WZP_XMSG_DATAGRAM);
        cr_assert_eq(d->len, plen);
        cr_assert_leq(d->ntargets, WZP_FANOUT_CHUNK);
        cr_assert_eq(len, sizeof *d + d->ntargets * sizeof d->targets[0] + plen);
        cr_assert_eq(memcmp(&d->targets[d->ntargets], payload, plen), 0, "payload intact");
        memcpy(out + *nout, d->targets, d->ntargets * sizeof d->targets[0]);
        *nout += d->ntargets;
        wzp_spsc_pop_commit(q);
        msgs++;
    }
    return msgs;
}

Test(fanout, one_message_per_worker_and_chunk)
{
    uint8_t payload[112];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    struct wzp_worker *w = &workers[0];
    /* 150 receivers on worker 1 and 5 on worker 2, interleaved as in a room. */
    wzp_worker_fanout_begin(w, payload, sizeof payload);
    unsigned n1 = 0, n2 = 0;
    for (unsigned i = 0; i < 155; i++) {
        if (i % 31 == 0 && n2 < 5)
            wzp_worker_fanout_add(w, 2, 1000 + n2, 7 * n2), n2++;
        else
            wzp_worker_fanout_add(w, 1, n1, 3 * n1), n1++;
    }
    wzp_worker_fanout_end(w);
    cr_assert_eq(n1, 150);
    cr_assert_eq(n2, 5);
    cr_assert_eq(w->ring_wake_pending, (1u << 1) | (1u << 2), "both destinations must be woken");

    static struct wzp_xtarget got[256];
    size_t n = 0;
    cr_assert_eq(collect(1, 0, payload, sizeof payload, got, &n), 3, "64 + 64 + 22 receivers");
    cr_assert_eq(n, 150);
    for (unsigned i = 0; i < 150; i++) {
        cr_assert_eq(got[i].slot, i, "receivers in room order");
        cr_assert_eq(got[i].gen, 3 * i);
    }
    n = 0;
    cr_assert_eq(collect(2, 0, payload, sizeof payload, got, &n), 1);
    cr_assert_eq(n, 5);
    cr_assert_eq(got[4].slot, 1004);
    cr_assert_eq(got[4].gen, 28);
    n = 0;
    cr_assert_eq(collect(0, 1, payload, sizeof payload, got, &n), 0, "nothing went backwards");

    /* A second datagram reuses the buffers: no stale targets from the first. */
    wzp_worker_fanout_begin(w, payload, 40);
    wzp_worker_fanout_add(w, 2, 9, 9);
    wzp_worker_fanout_end(w);
    n = 0;
    cr_assert_eq(collect(1, 0, payload, 40, got, &n), 0);
    cr_assert_eq(collect(2, 0, payload, 40, got, &n), 1);
    cr_assert_eq(n, 1);
    cr_assert_eq(got[0].slot, 9);
}

Test(fanout, full_ring_drops_and_counts_every_receiver)
{
    uint8_t payload[1000] = {0};
    struct wzp_worker *w = &workers[0];
    uint64_t sent_receivers = 0;
    /* Nobody drains worker 1: keep fanning out 10 receivers per datagram. */
    for (unsigned k = 0; k < 2000; k++) {
        wzp_worker_fanout_begin(w, payload, sizeof payload);
        for (unsigned i = 0; i < 10; i++)
            wzp_worker_fanout_add(w, 1, i, 0);
        wzp_worker_fanout_end(w);
        sent_receivers += 10;
    }
    uint64_t drops = atomic_load(&w->stats.datagrams_queue_drops);
    uint64_t queued = wzp_spsc_depth(&workers[1].inq[0]);
    cr_assert_gt(drops, 0, "the ring is bounded");
    cr_assert_gt(queued, 0);
    cr_assert_eq(queued * 10 + drops, sent_receivers, "every receiver is queued or counted");
}
