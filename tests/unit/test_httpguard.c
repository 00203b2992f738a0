/*
 * test_httpguard.c - request-head deadlines: a connection whose request head is late has
 * its socket shut down (the peer reads the end), one whose head arrived is left alone
 * until its response completes and the next head is due, a slot comes back when the
 * server closes the connection, and the sweeper thread does it by itself.
 */
#include "httpguard.h"

#include "common.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct wzp_httpguard g;
static int pairs[4][2];

static void setup(void)
{
    wzp_httpguard_init(&g, 5000);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]), 0);
}

static void teardown(void)
{
    wzp_httpguard_stop(&g);
    for (int i = 0; i < 4; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
}

TestSuite(httpguard, .init = setup, .fini = teardown, .timeout = 20);

/* The peer of pair i sees the end of the stream (within ms). */
static bool ended(int i, int ms)
{
    struct pollfd p = {.fd = pairs[i][1], .events = POLLIN};
    char c;
    return poll(&p, 1, ms) == 1 && recv(pairs[i][1], &c, 1, MSG_DONTWAIT) == 0;
}

#define S 1000000000ull

Test(httpguard, a_late_head_ends_the_connection_once)
{
    int slot = wzp_httpguard_open(&g, pairs[0][0], "192.0.2.1", 100 * S);
    cr_assert_geq(slot, 0);
    cr_assert_eq(wzp_httpguard_sweep(&g, 104 * S), 0, "not yet due");
    cr_assert_not(ended(0, 0));
    cr_assert_eq(wzp_httpguard_sweep(&g, 105 * S), 1);
    cr_assert(ended(0, 100), "the peer reads the end");
    cr_assert_eq(wzp_httpguard_sweep(&g, 106 * S), 0, "shut down once");
    cr_assert_eq(atomic_load(&g.closed_slow), 1);
}

Test(httpguard, a_head_that_arrived_is_left_alone_until_the_next_is_due)
{
    int slot = wzp_httpguard_open(&g, pairs[0][0], "192.0.2.1", 100 * S);
    wzp_httpguard_head_done(&g, slot);
    cr_assert_eq(wzp_httpguard_sweep(&g, 200 * S), 0, "a slow response is not a slow head");
    wzp_httpguard_request_done(&g, slot, 200 * S); /* keep-alive: the next request is due */
    cr_assert_eq(wzp_httpguard_sweep(&g, 204 * S), 0);
    cr_assert_eq(wzp_httpguard_sweep(&g, 205 * S), 1);
    cr_assert(ended(0, 100));
}

Test(httpguard, a_closed_connection_is_forgotten_and_its_slot_reused)
{
    int a = wzp_httpguard_open(&g, pairs[0][0], "192.0.2.1", 100 * S);
    wzp_httpguard_close(&g, a);
    cr_assert_eq(wzp_httpguard_sweep(&g, 200 * S), 0, "a closed socket is never touched");
    cr_assert_not(ended(0, 0));
    int b = wzp_httpguard_open(&g, pairs[1][0], "192.0.2.2", 200 * S);
    cr_assert_eq(b, a, "the slot came back");
}

Test(httpguard, every_slot_taken_refuses_the_next)
{
    for (int i = 0; i < WZP_HTTPGUARD_MAX; i++)
        cr_assert_geq(wzp_httpguard_open(&g, 1000 + i, "x", 0), 0);
    cr_assert_eq(wzp_httpguard_open(&g, pairs[0][0], "x", 0), -1);
    for (int i = 0; i < WZP_HTTPGUARD_MAX; i++)
        wzp_httpguard_close(&g, i); /* the fake descriptors are never shut down */
}

Test(httpguard, the_sweeper_thread_enforces_the_deadline)
{
    wzp_httpguard_stop(&g);
    wzp_httpguard_init(&g, 300);
    cr_assert_eq(wzp_httpguard_start(&g), WZP_OK);
    int slow = wzp_httpguard_open(&g, pairs[0][0], "192.0.2.1", wzp_now_ns());
    int fine = wzp_httpguard_open(&g, pairs[1][0], "192.0.2.2", wzp_now_ns());
    wzp_httpguard_head_done(&g, fine);
    cr_assert(ended(0, 2000), "shut down within the deadline and a sweep");
    cr_assert_not(ended(1, 0));
    (void)slow;
}
