/* test_xq.c - SPSC ring, control queue and the per-connection media queue. */
#include "xq.h"

#include "common.h"
#include "concurrency.h"

#include <criterion/criterion.h>
#include <string.h>

Test(dgq, fifo_and_wraparound)
{
    struct wzp_dgq q;
    wzp_dgq_init(&q, 4096);
    uint8_t data[1000];
    size_t len;
    /* Many rounds of push/pop of varying odd and even sizes cross the ring end often. */
    for (unsigned round = 0; round < 500; round++) {
        size_t n = 1 + (round * 37) % 999;
        memset(data, (int)(round & 0xff), n);
        cr_assert_eq(wzp_dgq_push(&q, data, n), 0);
        const uint8_t *p = wzp_dgq_peek(&q, &len);
        cr_assert_not_null(p);
        cr_assert_eq(len, n);
        cr_assert_eq(p[0], round & 0xff);
        cr_assert_eq(p[n - 1], round & 0xff);
        wzp_dgq_pop(&q);
        cr_assert_null(wzp_dgq_peek(&q, &len));
    }
    cr_assert_eq(q.count, 0);
    wzp_dgq_destroy(&q);
}

Test(dgq, full_queue_drops_oldest)
{
    struct wzp_dgq q;
    wzp_dgq_init(&q, 4096);
    uint8_t data[100];
    unsigned dropped = 0;
    for (unsigned i = 0; i < 100; i++) {
        memset(data, (int)i, sizeof data);
        dropped += wzp_dgq_push(&q, data, sizeof data);
    }
    /* 102 bytes per entry: 40 fit in 4096; the first 60 were dropped, oldest first. */
    cr_assert_eq(dropped, 60);
    cr_assert_eq(q.count, 40);
    size_t len;
    const uint8_t *p = wzp_dgq_peek(&q, &len);
    cr_assert_eq(p[0], 60, "oldest kept entry is #60");
    unsigned expect = 60;
    while ((p = wzp_dgq_peek(&q, &len))) {
        cr_assert_eq(p[0], expect++);
        wzp_dgq_pop(&q);
    }
    cr_assert_eq(expect, 100);
    wzp_dgq_destroy(&q);
}

Test(dgq, allocates_on_first_push_and_stays_small_when_drained)
{
    struct wzp_dgq q;
    wzp_dgq_init(&q, 16384);
    cr_assert_eq(wzp_dgq_capacity(&q), 0, "no memory before the first datagram");
    uint8_t data[112] = {0};
    size_t len;
    /* A receiver drained every loop iteration: 4 datagrams per iteration, 1000 times. */
    for (unsigned it = 0; it < 1000; it++) {
        for (unsigned k = 0; k < 4; k++)
            cr_assert_eq(wzp_dgq_push(&q, data, sizeof data), 0);
        while (wzp_dgq_peek(&q, &len))
            wzp_dgq_pop(&q);
    }
    cr_assert_eq(wzp_dgq_capacity(&q), WZP_DGQ_MIN_CAP);
    cr_assert_eq(q.grows, 0);
    wzp_dgq_destroy(&q);
    cr_assert_eq(wzp_dgq_capacity(&q), 0);
}

Test(dgq, growth_keeps_order_across_the_wrap_point)
{
    struct wzp_dgq q;
    wzp_dgq_init(&q, 16384);
    uint8_t data[300];
    size_t len;
    unsigned next_push = 0, next_pop = 0;
    /* Move the head so the live entries wrap around the end of the first ring. */
    for (unsigned i = 0; i < 11; i++) {
        memset(data, (int)(next_push & 0xff), sizeof data);
        cr_assert_eq(wzp_dgq_push(&q, data, sizeof data - (next_push % 3)), 0);
        next_push++;
        if (i % 2) {
            wzp_dgq_pop(&q);
            next_pop++;
        }
    }
    cr_assert_eq(wzp_dgq_capacity(&q), WZP_DGQ_MIN_CAP);
    /* Now fill without draining: the ring must grow (no drops) up to 16 KiB. */
    while (wzp_dgq_capacity(&q) < 16384 || q.count < 40) {
        memset(data, (int)(next_push & 0xff), sizeof data);
        cr_assert_eq(wzp_dgq_push(&q, data, sizeof data - (next_push % 3)), 0,
                     "no drop while the ring can still grow (entry %u)", next_push);
        next_push++;
    }
    cr_assert_eq(wzp_dgq_capacity(&q), 16384);
    cr_assert_eq(q.grows, 3, "2 KiB -> 4 -> 8 -> 16 KiB");
    const uint8_t *p;
    while ((p = wzp_dgq_peek(&q, &len))) {
        cr_assert_eq(len, sizeof data - (next_pop % 3));
        cr_assert_eq(p[0], next_pop & 0xff);
        cr_assert_eq(p[len - 1], next_pop & 0xff);
        wzp_dgq_pop(&q);
        next_pop++;
    }
    cr_assert_eq(next_pop, next_push, "every entry came out, in order");
    wzp_dgq_destroy(&q);
}

Test(dgq, never_grows_past_its_limit)
{
    struct wzp_dgq q;
    wzp_dgq_init(&q, 8192);
    uint8_t data[1000] = {0};
    unsigned dropped = 0;
    for (unsigned i = 0; i < 200; i++)
        dropped += wzp_dgq_push(&q, data, sizeof data);
    cr_assert_eq(wzp_dgq_capacity(&q), 8192);
    cr_assert_eq(q.count + dropped, 200);
    cr_assert_geq(q.count, 7, "8192 bytes hold at least 7 entries of 1002");
    wzp_dgq_destroy(&q);
}

Test(spsc, bounded_by_bytes)
{
    struct wzp_spsc q;
    cr_assert_eq(wzp_spsc_init(&q, 4096), WZP_OK);
    /* 1000-byte messages take 1008 bytes each: 4 fit in 4096, the fifth does not. */
    for (int i = 0; i < 4; i++) {
        uint8_t *m = wzp_spsc_push_begin(&q, 1000);
        cr_assert_not_null(m);
        memset(m, i, 1000);
        wzp_spsc_push_commit(&q);
    }
    cr_assert_eq(wzp_spsc_depth(&q), 4);
    cr_assert_null(wzp_spsc_push_begin(&q, 1000), "full ring refuses");
    cr_assert_not_null(wzp_spsc_push_begin(&q, 40), "a small message still fits");
    size_t len;
    const uint8_t *m = wzp_spsc_peek(&q, &len);
    cr_assert_eq(len, 1000);
    cr_assert_eq(m[0], 0);
    cr_assert_eq(m[999], 0);
    wzp_spsc_pop_commit(&q);
    cr_assert_eq(wzp_spsc_depth(&q), 3);
    cr_assert_not_null(wzp_spsc_push_begin(&q, 1000), "room again after a pop");
    wzp_spsc_destroy(&q);
}

Test(spsc, variable_sizes_wrap_in_order)
{
    static uint16_t sizes[5000];
    struct wzp_spsc q;
    wzp_spsc_init(&q, 4096);
    size_t len;
    unsigned pushed = 0, popped = 0;
    /* Sizes from 1 to 1023 bytes with up to 3 messages queued, so the ring's end is
     * crossed and padded often; every message must come out whole and in order. */
    for (unsigned round = 0; round < 5000; round++) {
        size_t n = 1 + (round * 131) % 1023;
        uint8_t *m = wzp_spsc_push_begin(&q, n);
        if (m) {
            memset(m, (int)(pushed & 0xff), n);
            sizes[pushed++] = (uint16_t)n;
            wzp_spsc_push_commit(&q);
        }
        while (wzp_spsc_depth(&q) > (m ? 2u : 0u)) {
            const uint8_t *p = wzp_spsc_peek(&q, &len);
            cr_assert_not_null(p);
            cr_assert_eq(len, sizes[popped], "message %u has its length", popped);
            cr_assert_eq(p[0], popped & 0xff);
            cr_assert_eq(p[len - 1], popped & 0xff, "message %u intact", popped);
            wzp_spsc_pop_commit(&q);
            popped++;
        }
    }
    while (wzp_spsc_peek(&q, &len)) {
        cr_assert_eq(len, sizes[popped]);
        wzp_spsc_pop_commit(&q);
        popped++;
    }
    cr_assert_gt(pushed, 4000);
    cr_assert_eq(popped, pushed);
    wzp_spsc_destroy(&q);
}

Test(spsc, threads_in_order, .timeout = 60)
{
    cr_assert_eq(stress_spsc(200000), 0);
}

Test(ctlq, many_producers_in_order, .timeout = 60)
{
    cr_assert_eq(stress_ctlq(4, 10000), 0);
}

Test(ctlq, fifo_and_limit)
{
    struct wzp_ctlq q;
    wzp_ctlq_init(&q, 3);
    cr_assert_eq(wzp_ctlq_push(&q, WZP_CTL_SIGNAL, 1, 1, "a", 1), WZP_OK);
    cr_assert_eq(wzp_ctlq_push(&q, WZP_CTL_SIGNAL, 2, 1, "bb", 2), WZP_OK);
    cr_assert_eq(wzp_ctlq_push(&q, WZP_CTL_CLOSE, 3, 1, "ccc", 3), WZP_OK);
    cr_assert_eq(wzp_ctlq_push(&q, WZP_CTL_CLOSE, 4, 1, "d", 1), WZP_EFULL);
    struct wzp_ctlmsg *m = wzp_ctlq_take_all(&q);
    for (uint32_t slot = 1; slot <= 3; slot++) {
        cr_assert_not_null(m);
        cr_assert_eq(m->slot, slot);
        cr_assert_eq(m->len, slot);
        struct wzp_ctlmsg *next = m->next;
        free(m);
        m = next;
    }
    cr_assert_null(m);
    cr_assert_eq(wzp_ctlq_push(&q, WZP_CTL_SIGNAL, 5, 1, "e", 1), WZP_OK, "limit resets");
    wzp_ctlq_destroy(&q);
}
