/*
 * test_quota.c - admission counters: limits, refusals that change nothing, the order of
 * the connection and handshake checks, and concurrent takes (concurrency.h).
 */
#include "quota.h"

#include "concurrency.h"

#include <criterion/criterion.h>

static struct wzp_quota q;

Test(quota, sessions_stop_at_the_limit_and_come_back)
{
    wzp_quota_init(&q, 2, 10, 10);
    cr_assert(wzp_quota_take_session(&q));
    cr_assert(wzp_quota_take_session(&q));
    cr_assert_not(wzp_quota_take_session(&q));
    cr_assert_eq(wzp_quota_sessions(&q), 2);
    wzp_quota_give_session(&q);
    cr_assert(wzp_quota_take_session(&q));
    wzp_quota_give_session(&q);
    wzp_quota_give_session(&q);
    cr_assert_eq(wzp_quota_sessions(&q), 0);
}

Test(quota, connection_limit_refuses_before_the_handshake_limit)
{
    wzp_quota_init(&q, 1, 5, 1);
    unsigned inuse = 99;
    cr_assert_eq(wzp_quota_take_connection(&q, &inuse), WZP_QUOTA_GRANTED);
    cr_assert_eq(inuse, 99, "a grant does not report a count");
    cr_assert_eq(wzp_quota_take_connection(&q, &inuse), WZP_QUOTA_NO_CONNECTION);
    cr_assert_eq(inuse, 1);
    cr_assert_eq(wzp_quota_connections(&q), 1);
    cr_assert_eq(wzp_quota_handshakes(&q), 1);
}

Test(quota, a_refused_handshake_gives_its_connection_back)
{
    wzp_quota_init(&q, 1, 1, 5);
    cr_assert_eq(wzp_quota_take_connection(&q, NULL), WZP_QUOTA_GRANTED);
    cr_assert(wzp_quota_handshakes_full(&q));
    unsigned inuse = 0;
    cr_assert_eq(wzp_quota_take_connection(&q, &inuse), WZP_QUOTA_NO_HANDSHAKE);
    cr_assert_eq(inuse, 1);
    cr_assert_eq(wzp_quota_connections(&q), 1, "the refused take left a connection");
    /* Handshake done: the connection stays, a new one may start its handshake. */
    wzp_quota_give_handshake(&q);
    cr_assert_not(wzp_quota_handshakes_full(&q));
    cr_assert_eq(wzp_quota_take_connection(&q, NULL), WZP_QUOTA_GRANTED);
    cr_assert_eq(wzp_quota_connections(&q), 2);
    wzp_quota_give_handshake(&q);
    wzp_quota_give_connection(&q);
    wzp_quota_give_connection(&q);
    cr_assert_eq(wzp_quota_connections(&q) + wzp_quota_handshakes(&q), 0);
}

Test(quota, a_zero_limit_refuses_everything)
{
    wzp_quota_init(&q, 0, 0, 0);
    cr_assert_not(wzp_quota_take_session(&q));
    cr_assert_eq(wzp_quota_take_connection(&q, NULL), WZP_QUOTA_NO_CONNECTION);
    cr_assert_eq(wzp_quota_connections(&q), 0);
}

Test(quota, concurrent_takes_keep_the_limits)
{
    cr_assert_eq(stress_quota(4, 20000), 0);
}
