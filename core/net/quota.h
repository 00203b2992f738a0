/*
 * quota.h - the relay-wide admission counters: room sessions, QUIC handshakes in progress
 * and connections of any kind, each against its configured limit. The one place they are
 * counted: conn.c takes and gives back, the worker and the HTTP server only read.
 *
 * Every take either succeeds and must be matched by exactly one give-back, or fails and
 * leaves the counters as they were. Lock-free (atomics); any thread.
 */
#ifndef WZP_QUOTA_H
#define WZP_QUOTA_H

#include <stdatomic.h>
#include <stdbool.h>

struct wzp_quota {
    unsigned max_sessions, max_handshakes, max_connections;
    _Atomic unsigned sessions;   /* reserved room slots (joining or joined) */
    _Atomic unsigned handshakes; /* QUIC handshakes in progress */
    _Atomic unsigned connections;
};

enum wzp_quota_refusal {
    WZP_QUOTA_GRANTED = 0,
    WZP_QUOTA_NO_CONNECTION, /* max_connections reached */
    WZP_QUOTA_NO_HANDSHAKE,  /* max_handshakes reached */
};

void wzp_quota_init(struct wzp_quota *q, unsigned max_sessions, unsigned max_handshakes,
                    unsigned max_connections);

/* A new connection starting its handshake takes one connection and one handshake, or
 * nothing. *inuse (may be NULL) gets the count that refused it. */
enum wzp_quota_refusal wzp_quota_take_connection(struct wzp_quota *q, unsigned *inuse);
void wzp_quota_give_handshake(struct wzp_quota *q);  /* handshake over (done or failed) */
void wzp_quota_give_connection(struct wzp_quota *q); /* connection freed */

/* One room session, or false when max_sessions are taken. */
bool wzp_quota_take_session(struct wzp_quota *q);
void wzp_quota_give_session(struct wzp_quota *q);

/* A cheap read for the packet path: would a new handshake be refused now? */
static inline bool wzp_quota_handshakes_full(const struct wzp_quota *q)
{
    return atomic_load_explicit(&q->handshakes, memory_order_relaxed) >= q->max_handshakes;
}

static inline unsigned wzp_quota_sessions(const struct wzp_quota *q)
{
    return atomic_load(&q->sessions);
}
static inline unsigned wzp_quota_handshakes(const struct wzp_quota *q)
{
    return atomic_load(&q->handshakes);
}
static inline unsigned wzp_quota_connections(const struct wzp_quota *q)
{
    return atomic_load(&q->connections);
}

#endif
