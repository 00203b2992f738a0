/*
 * test_signal.c - the "_signal" connection on the real relay: RegisterPresence and its
 * Ack, Ping/Pong, Reflect (the all-zero identity of Reflect probes included), a second
 * registration of one fingerprint replacing the first without the first's end removing
 * it, the registration deadline and the wrong first message, and an offer to a callee
 * that is not registered ended with a Hangup (calls themselves: test_dcall.c). Needs the relay's
 * patched GnuTLS (the system's refuses the name "_signal" in the handshake): skipped in a tree
 * built without it.
 */
#include "harness.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ev_loop *loop;
static struct relay_proc relay;

static void teardown(void)
{
    relay_finish_with_loop(&relay, &loop);
}

TestSuite(signal, .fini = teardown, .timeout = 60);

/* A _signal client and the last signals it received. */
struct sc {
    struct wzpc_client *c;
    enum wzp_signal_type last;
    unsigned received;
    bool ack_success;
    char build[64];
    uint64_t pong;
    char observed[64];
    bool hangup_has_call_id;
};

static void on_signal(struct wzpc_client *c, const struct wzp_signal *sig, void *ud)
{
    (void)c;
    struct sc *s = ud;
    s->last = sig->type;
    s->received++;
    if (sig->type == WZP_SIG_REGISTER_PRESENCE_ACK) {
        s->ack_success = sig->u.register_presence_ack.success;
        snprintf(s->build, sizeof s->build, "%s",
                 sig->u.register_presence_ack.relay_build ? sig->u.register_presence_ack.relay_build
                                                          : "");
    } else if (sig->type == WZP_SIG_PONG) {
        s->pong = sig->u.ping.timestamp_ms;
    } else if (sig->type == WZP_SIG_REFLECT_RESPONSE) {
        snprintf(s->observed, sizeof s->observed, "%s", sig->u.reflect_response.observed_addr);
    } else if (sig->type == WZP_SIG_HANGUP) {
        s->hangup_has_call_id = sig->u.hangup.call_id != NULL;
    }
}

static void start(void)
{
    if (!WZP_GNUTLS_PATCHED)
        cr_skip_test("built against the system's GnuTLS, which refuses \"_signal\"");
    relay_start(&relay, NULL);
    loop = ev_loop_new(EVFLAG_AUTO);
}

static void sc_connect(struct sc *s)
{
    memset(s, 0, sizeof *s);
    struct wzpc_config cfg = {.loop = loop,
                              .host = "127.0.0.1",
                              .port = relay.port,
                              .sni = "_signal",
                              .on_signal = on_signal,
                              .user_data = s};
    s->c = wzpc_connect(&cfg);
    cr_assert_not_null(s->c);
    for (int i = 0; i < 250 && wzpc_state(s->c) < WZPC_CONNECTED; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(wzpc_state(s->c), WZPC_CONNECTED, "the _signal handshake completes");
}

/* Send sig and wait until a signal of type want arrives. */
static void exchange(struct sc *s, const struct wzp_signal *sig, enum wzp_signal_type want)
{
    unsigned before = s->received;
    cr_assert_eq(wzpc_send_signal(s->c, sig), WZP_OK);
    for (int i = 0; i < 150 && !(s->received > before && s->last == want); i++)
        wzpc_run_for(loop, 20);
    cr_assert(s->received > before && s->last == want, "expected %s, last was %s",
              wzp_signal_type_name(want), wzp_signal_type_name(s->last));
}

static void do_register(struct sc *s, uint8_t key_byte, const char *alias)
{
    struct wzp_signal reg = {.type = WZP_SIG_REGISTER_PRESENCE};
    memset(reg.u.register_presence.identity_pub, key_byte, 32);
    reg.u.register_presence.alias = (char *)alias;
    exchange(s, &reg, WZP_SIG_REGISTER_PRESENCE_ACK);
    cr_assert(s->ack_success);
    cr_assert_str_eq(s->build, WZP_BUILD_HASH);
}

static double presence_gauge(void)
{
    static char scrape[256 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                 200);
    return scrape_value(scrape, "wzp_relay_presence_registered");
}

Test(signal, register_ping_and_reflect)
{
    start();
    struct sc a;
    sc_connect(&a);
    do_register(&a, 7, "alice\nFORGED");
    cr_assert_eq(presence_gauge(), 1);
    cr_assert(relay_log_wait(&relay, "\"alice\\nFORGED\" from 127.0.0.1", 1000),
              "registered, alias escaped");

    struct wzp_signal ping = {.type = WZP_SIG_PING};
    ping.u.ping.timestamp_ms = 1712345678901ull;
    exchange(&a, &ping, WZP_SIG_PONG);
    cr_assert_eq(a.pong, 1712345678901ull);

    struct wzp_signal reflect = {.type = WZP_SIG_REFLECT};
    exchange(&a, &reflect, WZP_SIG_REFLECT_RESPONSE);
    cr_assert_eq(strncmp(a.observed, "127.0.0.1:", 10), 0, "observed %s", a.observed);
    cr_assert_gt(atoi(a.observed + 10), 0);
    cr_assert_eq(relay_counter(&relay, "reflects"), 1);

    /* a call to a callee that is not registered ends at once (test_dcall.c: calls) */
    struct wzp_signal offer = {.type = WZP_SIG_DIRECT_CALL_OFFER};
    offer.u.direct_call_offer.caller_fingerprint = "x";
    offer.u.direct_call_offer.target_fingerprint = "y";
    offer.u.direct_call_offer.call_id = "c1";
    exchange(&a, &offer, WZP_SIG_HANGUP);
    cr_assert_not(a.hangup_has_call_id, "as upstream for an unreachable callee");

    wzpc_close(a.c, 0, "bye");
    for (int i = 0; i < 100 && presence_gauge() != 0; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(presence_gauge(), 0, "the presence ends with its connection");
    /* and the connection leaves nothing behind once its closing period is over */
    static char scrape[256 * 1024];
    double left = -1;
    for (int i = 0; i < 100 && left != 0; i++) {
        wzpc_run_for(loop, 50);
        cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                     200);
        left = scrape_value(scrape, "wzp_relay_connections") +
               scrape_sum(scrape, "wzp_relay_worker_cid_entries") +
               scrape_sum(scrape, "wzp_relay_worker_slots_used") +
               scrape_sum(scrape, "wzp_relay_worker_signal_bytes");
    }
    cr_assert_eq(left, 0, "connections, CID entries, slots and signal bytes back to 0");
    wzpc_free(a.c);
}

Test(signal, a_reflect_probe_with_the_zero_identity)
{
    start();
    struct sc p;
    sc_connect(&p);
    do_register(&p, 0, NULL);
    cr_assert(relay_log_wait(&relay, "presence: 6668:7aad:f862:bd77:6c8f:c18b:8e9f:8e20", 1000));
    struct wzp_signal reflect = {.type = WZP_SIG_REFLECT};
    exchange(&p, &reflect, WZP_SIG_REFLECT_RESPONSE);
    cr_assert(p.observed[0]);
    wzpc_free(p.c);
}

Test(signal, a_second_registration_replaces_the_first_and_outlives_it)
{
    start();
    struct sc a, b;
    sc_connect(&a);
    do_register(&a, 9, "phone");
    sc_connect(&b);
    do_register(&b, 9, "desktop");
    cr_assert_eq(presence_gauge(), 1, "one fingerprint, one entry");
    cr_assert_eq(relay_counter(&relay, "presence_replaced"), 1);
    /* the first connection ends: the entry is the second's and stays */
    wzpc_close(a.c, 0, "bye");
    for (int i = 0; i < 20; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(presence_gauge(), 1, "the old connection's end left the new entry");
    wzpc_close(b.c, 0, "bye");
    for (int i = 0; i < 100 && presence_gauge() != 0; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(presence_gauge(), 0);
    wzpc_free(a.c);
    wzpc_free(b.c);
}

Test(signal, registration_comes_first_and_in_time)
{
    start();
    struct sc a, slow;
    sc_connect(&a);
    struct wzp_signal ping = {.type = WZP_SIG_PING};
    cr_assert_eq(wzpc_send_signal(a.c, &ping), WZP_OK);
    for (int i = 0; i < 150 && wzpc_state(a.c) != WZPC_CLOSED; i++)
        wzpc_run_for(loop, 20);
    bool by_peer = false, is_app = false;
    uint64_t code = 1;
    char reason[160] = "";
    cr_assert(wzpc_close_info(a.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert_str_eq(reason, "expected RegisterPresence, got Ping");

    sc_connect(&slow); /* says nothing */
    for (int i = 0; i < 600 && wzpc_state(slow.c) != WZPC_CLOSED; i++)
        wzpc_run_for(loop, 20);
    cr_assert(wzpc_close_info(slow.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert_str_eq(reason, "no RegisterPresence within 10000 ms");
    cr_assert_eq(presence_gauge(), 0);
    wzpc_free(a.c);
    wzpc_free(slow.c);
}
