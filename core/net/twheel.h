/*
 * twheel.h - a hashed timing wheel: one-shot timers at millisecond resolution, set, moved
 * and cancelled in constant time.
 *
 * A worker holds one for all its connections' timers. Each connection's expiry moves on
 * nearly every packet (a write arms the loss timer, an ACK clears it); with a binary heap
 * of 10 000 timers every move is a logarithmic sift over cold memory, which showed as 4 %
 * of the relay's CPU at 10 000 connections. Here a timer is a node on the list of the
 * slot its due millisecond hashes to; moving it is an unlink and a link.
 *
 * Due times are rounded up to the next millisecond boundary (a timer never fires early).
 * Slots cover WZP_TWHEEL_SLOTS ms; a timer further out sits in its slot and is skipped by
 * the sweeps until its round comes. The owner drives the wheel: wzp_twheel_next_ns() says
 * when the earliest timer is due, wzp_twheel_expire() runs the due ones. Single-threaded.
 */
#ifndef WZP_TWHEEL_H
#define WZP_TWHEEL_H

#include <stdbool.h>
#include <stdint.h>

#define WZP_TWHEEL_SLOTS   1024u /* a power of two: ~1 s of 1 ms slots */
#define WZP_TWHEEL_TICK_NS 1000000ull

struct wzp_tnode {
    struct wzp_tnode *next, **pprev; /* pprev NULL: not armed */
    uint64_t due_tick;               /* ms since the epoch of wzp_now_ns() */
};

struct wzp_twheel {
    struct wzp_tnode *slots[WZP_TWHEEL_SLOTS];
    uint64_t tick;      /* every tick before this has been expired */
    uint64_t next_tick; /* no timer is due before this (a lower bound; UINT64_MAX: none) */
    unsigned armed;
};

void wzp_twheel_init(struct wzp_twheel *tw, uint64_t now_ns);

/* Arm (or move) n to fire at the first millisecond boundary at or after due_ns. Returns
 * true when n became the earliest timer (the owner may have to wake up sooner). */
bool wzp_twheel_set(struct wzp_twheel *tw, struct wzp_tnode *n, uint64_t due_ns);

void wzp_twheel_cancel(struct wzp_twheel *tw, struct wzp_tnode *n);

static inline bool wzp_twheel_armed(const struct wzp_tnode *n)
{
    return n->pprev != 0;
}

/* When the earliest armed timer is due (ns), or UINT64_MAX when none is armed. Scans at
 * most one turn of the wheel. */
uint64_t wzp_twheel_next_ns(struct wzp_twheel *tw);

/* Fire every timer due at or before now_ns, in due order, each disarmed before fire(node,
 * ctx) runs; fire may set or cancel any timer, this one included. Returns the number
 * fired. */
unsigned wzp_twheel_expire(struct wzp_twheel *tw, uint64_t now_ns,
                           void (*fire)(struct wzp_tnode *n, void *ctx), void *ctx);

#endif
