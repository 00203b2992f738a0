/*
 * test_quota.c - admission counters: relay-wide limits, per-address limits (IPv4 address,
 * IPv6 /64), refusals that change nothing, entries that go away with their last
 * connection, and concurrent takes (concurrency.h).
 */
#include "quota.h"

#include "common.h"
#include "concurrency.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

static struct wzp_quota q;
static struct wzp_addr_key k1, k2;

static void init(unsigned sessions, unsigned handshakes, unsigned connections, unsigned hs_per_addr,
                 unsigned conns_per_addr)
{
    const struct wzp_quota_limits l = {sessions,    handshakes,     connections,
                                       hs_per_addr, conns_per_addr, 1000};
    cr_assert_eq(wzp_quota_init(&q, &l), WZP_OK);
    memset(&k1, 0, sizeof k1);
    memset(&k2, 0, sizeof k2);
    k1.b[15] = 1;
    k2.b[15] = 2;
}

static void fini(void)
{
    wzp_quota_free(&q);
}

TestSuite(quota, .fini = fini);

Test(quota, sessions_stop_at_the_limit_and_come_back)
{
    init(2, 10, 10, 0, 0);
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
    init(1, 5, 1, 0, 0);
    unsigned inuse = 99;
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, &inuse), WZP_QUOTA_GRANTED);
    cr_assert_eq(inuse, 99, "a grant does not report a count");
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, &inuse), WZP_QUOTA_NO_CONNECTION);
    cr_assert_eq(inuse, 1);
    cr_assert_eq(wzp_quota_connections(&q), 1);
    cr_assert_eq(wzp_quota_handshakes(&q), 1);
}

Test(quota, a_refused_handshake_gives_its_connection_back)
{
    init(1, 1, 5, 0, 0);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    cr_assert(wzp_quota_handshakes_full(&q));
    unsigned inuse = 0;
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, &inuse), WZP_QUOTA_NO_HANDSHAKE);
    cr_assert_eq(inuse, 1);
    cr_assert_eq(wzp_quota_connections(&q), 1, "the refused take left a connection");
    /* Handshake done: the connection stays, a new one may start its handshake. */
    wzp_quota_give_handshake(&q, &k1);
    cr_assert_not(wzp_quota_handshakes_full(&q));
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    cr_assert_eq(wzp_quota_connections(&q), 2);
    wzp_quota_give_handshake(&q, &k1);
    wzp_quota_give_connection(&q, &k1);
    wzp_quota_give_connection(&q, &k1);
    cr_assert_eq(wzp_quota_connections(&q) + wzp_quota_handshakes(&q), 0);
}

Test(quota, a_zero_limit_refuses_everything)
{
    init(0, 0, 0, 0, 0);
    cr_assert_not(wzp_quota_take_session(&q));
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_NO_CONNECTION);
    cr_assert_eq(wzp_quota_connections(&q), 0);
}

Test(quota, per_address_handshakes_are_limited_per_address)
{
    init(10, 100, 100, 2, 0);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    unsigned inuse = 0;
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, &inuse), WZP_QUOTA_ADDR_NO_HANDSHAKE);
    cr_assert_eq(inuse, 2);
    cr_assert_eq(wzp_quota_addr_handshakes(&q, &k1), 2);
    cr_assert_eq(wzp_quota_handshakes(&q), 2, "the refusal gave the relay-wide take back");
    cr_assert_eq(wzp_quota_connections(&q), 2);
    /* Another address is not affected. */
    cr_assert_eq(wzp_quota_take_connection(&q, &k2, NULL), WZP_QUOTA_GRANTED);
    /* A finished handshake makes room; the connection stays. */
    wzp_quota_give_handshake(&q, &k1);
    cr_assert_eq(wzp_quota_addr_handshakes(&q, &k1), 1);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
}

Test(quota, per_address_connections_are_limited_and_entries_go_away)
{
    init(10, 100, 100, 0, 2);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    wzp_quota_give_handshake(&q, &k1);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    wzp_quota_give_handshake(&q, &k1);
    unsigned inuse = 0;
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, &inuse), WZP_QUOTA_ADDR_NO_CONNECTION);
    cr_assert_eq(inuse, 2);
    cr_assert_eq(atomic_load(&q.addresses), 1);
    /* A refused first take from a new address leaves no entry. */
    wzp_quota_free(&q);
    init(10, 100, 100, 1, 1);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_ADDR_NO_CONNECTION);
    cr_assert_eq(atomic_load(&q.addresses), 1);
    wzp_quota_give_handshake(&q, &k1);
    wzp_quota_give_connection(&q, &k1);
    cr_assert_eq(atomic_load(&q.addresses), 0, "the last connection took its entry along");
    cr_assert_eq(wzp_quota_addr_handshakes(&q, &k1), 0);
}

Test(quota, without_per_address_limits_no_table_is_kept)
{
    init(10, 100, 100, 0, 0);
    cr_assert_null(q.shards);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(wzp_quota_take_connection(&q, &k1, NULL), WZP_QUOTA_GRANTED);
    cr_assert_eq(wzp_quota_addr_handshakes(&q, &k1), 0);
}

Test(quota, addresses_are_ipv4_or_an_ipv6_slash_64)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(2)};
    inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
    inet_pton(AF_INET, "192.0.2.7", &b.sin_addr);
    struct wzp_addr_key ka, kb;
    wzp_addr_key_of(&ka, (struct sockaddr *)&a);
    wzp_addr_key_of(&kb, (struct sockaddr *)&b);
    cr_assert_eq(memcmp(&ka, &kb, sizeof ka), 0, "the port is not part of the address");
    struct sockaddr_in6 m = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
    struct wzp_addr_key km;
    wzp_addr_key_of(&km, (struct sockaddr *)&m);
    cr_assert_eq(memcmp(&ka, &km, sizeof ka), 0, "a v4-mapped address is its IPv4 address");
    struct sockaddr_in6 x = {.sin6_family = AF_INET6}, y = {.sin6_family = AF_INET6},
                        z = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8:1:2::1", &x.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &y.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:3::1", &z.sin6_addr);
    struct wzp_addr_key kx, ky, kz;
    wzp_addr_key_of(&kx, (struct sockaddr *)&x);
    wzp_addr_key_of(&ky, (struct sockaddr *)&y);
    wzp_addr_key_of(&kz, (struct sockaddr *)&z);
    cr_assert_eq(memcmp(&kx, &ky, sizeof kx), 0, "one /64 is one address");
    cr_assert_neq(memcmp(&kx, &kz, sizeof kx), 0);
}

Test(quota, signal_bytes_stop_at_the_relay_wide_bound)
{
    init(1, 1, 1, 0, 0);
    cr_assert(wzp_quota_take_signal_bytes(&q, 600));
    cr_assert_not(wzp_quota_take_signal_bytes(&q, 401), "would pass 1000");
    cr_assert_eq(atomic_load(&q.signal_bytes), 600, "a refused take changes nothing");
    cr_assert(wzp_quota_take_signal_bytes(&q, 400));
    wzp_quota_give_signal_bytes(&q, 1000);
    cr_assert_eq(atomic_load(&q.signal_bytes), 0);
}

Test(quota, concurrent_takes_keep_the_limits)
{
    init(1, 1, 1, 0, 0);
    cr_assert_eq(stress_quota(4, 20000), 0);
}
