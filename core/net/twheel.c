/*
 * twheel.c - hashed timing wheel (see twheel.h).
 */
#include "twheel.h"

#include <stddef.h>
#include <string.h>

#define MASK (WZP_TWHEEL_SLOTS - 1)

void wzp_twheel_init(struct wzp_twheel *tw, uint64_t now_ns)
{
    memset(tw, 0, sizeof *tw);
    tw->tick = now_ns / WZP_TWHEEL_TICK_NS;
    tw->next_tick = UINT64_MAX;
}

static void link_node(struct wzp_tnode **head, struct wzp_tnode *n)
{
    n->next = *head;
    if (n->next)
        n->next->pprev = &n->next;
    *head = n;
    n->pprev = head;
}

static void unlink_node(struct wzp_tnode *n)
{
    *n->pprev = n->next;
    if (n->next)
        n->next->pprev = n->pprev;
    n->next = NULL;
    n->pprev = NULL;
}

bool wzp_twheel_set(struct wzp_twheel *tw, struct wzp_tnode *n, uint64_t due_ns)
{
    uint64_t due = due_ns / WZP_TWHEEL_TICK_NS + (due_ns % WZP_TWHEEL_TICK_NS != 0);
    if (due < tw->tick)
        due = tw->tick; /* overdue: the next expiry runs it */
    if (n->pprev) {
        if (n->due_tick == due)
            return false;
        unlink_node(n);
    } else {
        tw->armed++;
    }
    n->due_tick = due;
    link_node(&tw->slots[due & MASK], n);
    if (due < tw->next_tick) {
        tw->next_tick = due;
        return true;
    }
    return false;
}

void wzp_twheel_cancel(struct wzp_twheel *tw, struct wzp_tnode *n)
{
    if (!n->pprev)
        return;
    unlink_node(n);
    tw->armed--;
}

uint64_t wzp_twheel_next_ns(struct wzp_twheel *tw)
{
    if (tw->armed == 0) {
        tw->next_tick = UINT64_MAX;
        return UINT64_MAX;
    }
    uint64_t from =
        tw->next_tick != UINT64_MAX && tw->next_tick > tw->tick ? tw->next_tick : tw->tick;
    uint64_t later = UINT64_MAX; /* the earliest timer of a later turn, if none in this one */
    for (uint64_t t = from; t < from + WZP_TWHEEL_SLOTS; t++)
        for (struct wzp_tnode *n = tw->slots[t & MASK]; n; n = n->next) {
            if (n->due_tick == t) {
                tw->next_tick = t;
                return t * WZP_TWHEEL_TICK_NS;
            }
            if (n->due_tick < later)
                later = n->due_tick;
        }
    tw->next_tick = later;
    return later == UINT64_MAX ? UINT64_MAX : later * WZP_TWHEEL_TICK_NS;
}

unsigned wzp_twheel_expire(struct wzp_twheel *tw, uint64_t now_ns,
                           void (*fire)(struct wzp_tnode *n, void *ctx), void *ctx)
{
    uint64_t now = now_ns / WZP_TWHEEL_TICK_NS;
    unsigned fired = 0;
    /* Jump over empty stretches: nothing is due before next_tick. */
    if (tw->next_tick != UINT64_MAX && tw->next_tick > tw->tick)
        tw->tick = tw->next_tick <= now ? tw->next_tick : now + 1;
    if (tw->armed == 0)
        tw->tick = now + 1;
    while (tw->tick <= now) {
        uint64_t t = tw->tick;
        /* Detach this tick's timers first: a timer set from fire() for now or earlier
         * lands on the next tick (tick advanced below), never on the list being run. */
        struct wzp_tnode *due = NULL;
        struct wzp_tnode **pp = &tw->slots[t & MASK];
        while (*pp) {
            struct wzp_tnode *n = *pp;
            if (n->due_tick <= t) {
                unlink_node(n);
                link_node(&due, n);
            } else {
                pp = &n->next;
            }
        }
        tw->tick = t + 1;
        while (due) { /* fire() may cancel or move any of these: they stay linked here */
            struct wzp_tnode *n = due;
            unlink_node(n);
            tw->armed--;
            fired++;
            fire(n, ctx);
        }
    }
    if (tw->next_tick != UINT64_MAX && tw->next_tick < tw->tick)
        tw->next_tick = tw->tick; /* a lower bound again */
    return fired;
}
