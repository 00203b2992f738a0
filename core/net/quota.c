/*
 * quota.c - admission counters (quota.h). A take is an increment that is undone when it
 * overshoots the limit: the counter may exceed its limit for an instant, never for
 * longer, and a refused take never blocks a give-back.
 */
#include "quota.h"

void wzp_quota_init(struct wzp_quota *q, unsigned max_sessions, unsigned max_handshakes,
                    unsigned max_connections)
{
    q->max_sessions = max_sessions;
    q->max_handshakes = max_handshakes;
    q->max_connections = max_connections;
    atomic_init(&q->sessions, 0);
    atomic_init(&q->handshakes, 0);
    atomic_init(&q->connections, 0);
}

static bool take(_Atomic unsigned *count, unsigned max, unsigned *inuse)
{
    unsigned n = atomic_fetch_add(count, 1);
    if (n < max)
        return true;
    atomic_fetch_sub(count, 1);
    if (inuse)
        *inuse = n;
    return false;
}

enum wzp_quota_refusal wzp_quota_take_connection(struct wzp_quota *q, unsigned *inuse)
{
    if (!take(&q->connections, q->max_connections, inuse))
        return WZP_QUOTA_NO_CONNECTION;
    if (!take(&q->handshakes, q->max_handshakes, inuse)) {
        atomic_fetch_sub(&q->connections, 1);
        return WZP_QUOTA_NO_HANDSHAKE;
    }
    return WZP_QUOTA_GRANTED;
}

void wzp_quota_give_handshake(struct wzp_quota *q)
{
    atomic_fetch_sub(&q->handshakes, 1);
}

void wzp_quota_give_connection(struct wzp_quota *q)
{
    atomic_fetch_sub(&q->connections, 1);
}

/* Sessions never overshoot, even for an instant: /ready and the drain read them. */
bool wzp_quota_take_session(struct wzp_quota *q)
{
    unsigned n = atomic_load(&q->sessions);
    do {
        if (n >= q->max_sessions)
            return false;
    } while (!atomic_compare_exchange_weak(&q->sessions, &n, n + 1));
    return true;
}

void wzp_quota_give_session(struct wzp_quota *q)
{
    atomic_fetch_sub(&q->sessions, 1);
}
