/*
 * test_twheel.c - the timing wheel: never early, in due order, far timers, moves and
 * cancels from inside a firing, and a random run against a plain list.
 */
#include "twheel.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define MS 1000000ull

struct t {
    struct wzp_tnode node; /* first: the fire callback casts back */
    int id;
    uint64_t fired_at;
};

static int order[512], norder;
static uint64_t now_ns;

static void record(struct wzp_tnode *n, void *ctx)
{
    (void)ctx;
    struct t *t = (struct t *)n;
    t->fired_at = now_ns;
    order[norder++] = t->id;
}

static unsigned run(struct wzp_twheel *tw, uint64_t at)
{
    now_ns = at;
    return wzp_twheel_expire(tw, at, record, NULL);
}

Test(twheel, fires_in_due_order_and_never_early)
{
    struct wzp_twheel tw;
    wzp_twheel_init(&tw, 1000 * MS);
    struct t a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    norder = 0;
    cr_assert(wzp_twheel_set(&tw, &a.node, 1005 * MS));
    cr_assert(wzp_twheel_set(&tw, &b.node, 1003 * MS + 200000)); /* rounds up to 1004 */
    cr_assert_not(wzp_twheel_set(&tw, &c.node, 1010 * MS));
    cr_assert_eq(wzp_twheel_next_ns(&tw), 1004 * MS);
    cr_assert_eq(run(&tw, 1003 * MS + 900000), 0, "b is due at 1004 ms, not before");
    cr_assert_eq(run(&tw, 1004 * MS), 1);
    cr_assert_eq(order[0], 2);
    cr_assert_eq(wzp_twheel_next_ns(&tw), 1005 * MS);
    cr_assert_eq(run(&tw, 1020 * MS), 2);
    cr_assert_eq(order[1], 1);
    cr_assert_eq(order[2], 3);
    cr_assert_not(wzp_twheel_armed(&a.node));
    cr_assert_eq(wzp_twheel_next_ns(&tw), UINT64_MAX);
}

Test(twheel, a_timer_beyond_one_turn_waits_for_its_round)
{
    struct wzp_twheel tw;
    wzp_twheel_init(&tw, 0);
    struct t far = {.id = 1}, near = {.id = 2};
    norder = 0;
    wzp_twheel_set(&tw, &far.node, 5000 * MS); /* shares a slot with 5000 - k * 1024 ms */
    wzp_twheel_set(&tw, &near.node, (5000 - 2 * WZP_TWHEEL_SLOTS) * MS);
    cr_assert_eq(wzp_twheel_next_ns(&tw), (5000 - 2 * WZP_TWHEEL_SLOTS) * MS);
    cr_assert_eq(run(&tw, 4000 * MS), 1);
    cr_assert_eq(order[0], 2);
    cr_assert_eq(wzp_twheel_next_ns(&tw), 5000 * MS, "found past one turn of empty slots");
    cr_assert_eq(run(&tw, 4999 * MS), 0);
    cr_assert_eq(run(&tw, 5000 * MS), 1);
    cr_assert_eq(far.fired_at, 5000 * MS);
}

Test(twheel, move_and_cancel)
{
    struct wzp_twheel tw;
    wzp_twheel_init(&tw, 0);
    struct t a = {.id = 1}, b = {.id = 2};
    norder = 0;
    wzp_twheel_set(&tw, &a.node, 10 * MS);
    wzp_twheel_set(&tw, &b.node, 20 * MS);
    wzp_twheel_set(&tw, &a.node, 30 * MS); /* moved later */
    wzp_twheel_cancel(&tw, &b.node);
    wzp_twheel_cancel(&tw, &b.node); /* twice is harmless */
    cr_assert_eq(run(&tw, 25 * MS), 0);
    cr_assert_eq(wzp_twheel_next_ns(&tw), 30 * MS);
    cr_assert_eq(run(&tw, 30 * MS), 1);
    cr_assert_eq(order[0], 1);
    cr_assert_eq(tw.armed, 0);
}

/* A firing that re-arms its own timer for "now" and cancels another due timer. */
static struct t *victim;
static unsigned refires;
static void rearm_and_cancel(struct wzp_tnode *n, void *ctx)
{
    struct wzp_twheel *tw = ctx;
    struct t *t = (struct t *)n;
    order[norder++] = t->id;
    if (victim && victim != t) {
        wzp_twheel_cancel(tw, &victim->node);
        victim = NULL;
    }
    if (t->id == 1 && refires++ == 0)
        wzp_twheel_set(tw, n, now_ns); /* overdue at once: the next expiry runs it */
}

Test(twheel, firing_may_rearm_and_cancel)
{
    struct wzp_twheel tw;
    wzp_twheel_init(&tw, 0);
    struct t a = {.id = 1}, b = {.id = 2};
    norder = 0;
    refires = 0;
    wzp_twheel_set(&tw, &a.node, 5 * MS);
    wzp_twheel_set(&tw, &b.node, 5 * MS);
    victim = &b; /* whichever fires first cancels the other one... */
    now_ns = 5 * MS;
    unsigned n = wzp_twheel_expire(&tw, now_ns, rearm_and_cancel, &tw);
    cr_assert_eq(n, 1, "the cancelled one must not fire (%u fired)", n);
    victim = NULL;
    if (order[0] == 1) { /* ...and a re-armed itself for now: not in this run */
        cr_assert(wzp_twheel_armed(&a.node));
        now_ns = 5 * MS;
        cr_assert_eq(wzp_twheel_expire(&tw, 6 * MS, rearm_and_cancel, &tw), 1);
    }
    cr_assert_eq(tw.armed, 0);
}

/* Random sets, moves and cancels against a plain array: same timers fire, none early,
 * none late by more than the tick, in due order. */
Test(twheel, random_against_a_list)
{
    enum { N = 300 };
    static struct t ts[N];
    static uint64_t due[N]; /* 0: not armed */
    struct wzp_twheel tw;
    uint64_t clock = 123456789;
    wzp_twheel_init(&tw, clock);
    srand(7);
    for (int i = 0; i < N; i++)
        ts[i].id = i;
    for (int round = 0; round < 3000; round++) {
        int k = rand() % N;
        int op = rand() % 10;
        if (op < 6) {
            uint64_t d = clock + (uint64_t)(rand() % 3000) * 1000000ull / 7;
            wzp_twheel_set(&tw, &ts[k].node, d);
            due[k] = (d + MS - 1) / MS * MS;
            if (due[k] < tw.tick * MS)
                due[k] = tw.tick * MS; /* overdue: runs at the next expiry */
        } else if (op < 7) {
            wzp_twheel_cancel(&tw, &ts[k].node);
            due[k] = 0;
        } else {
            uint64_t next = wzp_twheel_next_ns(&tw);
            uint64_t want = UINT64_MAX;
            for (int i = 0; i < N; i++)
                if (due[i] && due[i] < want)
                    want = due[i];
            cr_assert_eq(next, want, "round %d: next %llu, want %llu", round,
                         (unsigned long long)next, (unsigned long long)want);
            clock += (uint64_t)(rand() % 40) * 100000ull;
            norder = 0;
            now_ns = clock;
            uint64_t last = 0;
            unsigned fired = 0;
            for (;;) {
                unsigned f = wzp_twheel_expire(&tw, clock, record, NULL);
                fired += f;
                for (int j = 0; j < norder; j++) {
                    int id = order[j];
                    cr_assert_neq(due[id], 0, "round %d: %d fired while not armed", round, id);
                    cr_assert_leq(due[id], clock, "round %d: %d fired early", round, id);
                    cr_assert_geq(due[id], last, "round %d: out of order", round);
                    last = due[id];
                    due[id] = 0;
                }
                norder = 0;
                if (f == 0)
                    break;
            }
            for (int i = 0; i < N; i++)
                cr_assert(due[i] == 0 || due[i] > clock, "round %d: %d is due, not fired", round,
                          i);
            (void)fired;
        }
    }
}
