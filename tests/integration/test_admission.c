/*
 * test_admission.c - integration tests for what the relay refuses and why: SNI kinds,
 * ALPN, session limit, join timeout, AuthToken without auth, and the logs and counters
 * each refusal leaves.
 */
#include "harness.h"

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

static struct ev_loop *loop;
static struct relay_proc relay;

/* Every test ends with a clean relay exit: a crash, a sanitizer report or a hang fails it. */
static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(admission, .fini = stop_relay, .timeout = 90);

static void setup(const char *const *args)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
}

/* Connect with only the given SNI/ALPN (no join) and wait until closed. */
static void connect_raw(struct tc *t, const char *sni, const char *alpn, bool join)
{
    struct wzpc_config cfg = {.sni = sni, .alpn = alpn, .auto_join = join};
    tc_connect(t, loop, &relay, sni, 9, &cfg);
}

static void expect_app_close(struct tc *t, const char *reason_part)
{
    cr_assert(tc_wait_state(t, loop, WZPC_CLOSED, 5000), "client closed");
    bool by_peer, is_app;
    uint64_t code;
    char reason[160];
    cr_assert(wzpc_close_info(t->c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer, "closed by the relay");
    cr_assert(is_app, "application close");
    cr_assert_eq(code, 0, "application code 0, as upstream");
    if (reason_part)
        cr_assert(strstr(reason, reason_part), "reason \"%s\" mentions \"%s\"", reason,
                  reason_part);
}

Test(admission, ping_is_closed_at_once)
{
    setup(NULL);
    struct tc t;
    connect_raw(&t, "ping", NULL, false);
    expect_app_close(&t, NULL);
    tc_free(&t);
}

Test(admission, version_returns_build_hash_on_a_uni_stream)
{
    setup(NULL);
    struct tc t;
    connect_raw(&t, "version", NULL, false);
    cr_assert(tc_wait_state(&t, loop, WZPC_CLOSED, 5000));
    cr_assert_gt(t.uni_len, 0, "a uni stream with the build hash");
    cr_assert_str_eq(t.uni, WZP_BUILD_HASH);
    tc_free(&t);
}

/* Whether the relay's GnuTLS lets names with '_' through (its start-up probe, exported
 * on /metrics): the build says which it must be (WZP_GNUTLS_PATCHED). */
static bool underscore_names_pass(void)
{
    static char scrape[256 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                 200);
    double v = scrape_value(scrape, "wzp_relay_tls_underscore_names");
    cr_assert_eq(v, WZP_GNUTLS_PATCHED, "the probe says %g, the build expects %d", v,
                 WZP_GNUTLS_PATCHED);
    return v == 1;
}

/* The system's GnuTLS aborts the handshake for any SNI with '_' (see core/net/tls.h): the
 * reserved names are refused during the handshake, and the relay logs the name and why. */
static void expect_tls_refusal(struct tc *t)
{
    cr_assert(tc_wait_state(t, loop, WZPC_CLOSED, 5000));
    cr_assert_neq(t->answers + t->room_updates, 1);
    bool by_peer, is_app;
    uint64_t code;
    char reason[128];
    cr_assert(wzpc_close_info(t->c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && !is_app);
    cr_assert_eq(code, 0x100 + 47, "crypto error illegal_parameter, got 0x%llx",
                 (unsigned long long)code);
}

Test(admission, reserved_sni_refused_with_reason)
{
    setup(NULL);
    bool pass = underscore_names_pass();
    /* "_signal" is served (test_signal.c) once the TLS layer lets it through */
    const char *names[] = {"_signal", "_probe", "_federation"};
    for (int i = pass ? 1 : 0; i < 3; i++) {
        struct tc t;
        connect_raw(&t, names[i], NULL, true);
        if (pass) { /* the handshake completes: the relay answers for itself */
            char want[160];
            snprintf(want, sizeof want,
                     "SNI %s is reserved for a service this relay does not offer yet", names[i]);
            expect_app_close(&t, want);
        } else {
            expect_tls_refusal(&t);
        }
        tc_free(&t);
    }
    cr_assert_eq(relay_counter(&relay, "conns_refused_sni"), pass ? 2 : 3);
    cr_assert(relay_log_wait(&relay, pass ? "SNI _probe is reserved" : "SNI \"_probe\" is reserved",
                             1000));
}

Test(admission, room_names_with_underscores)
{
    setup(NULL);
    struct tc t;
    if (underscore_names_pass()) {
        tc_connect(&t, loop, &relay, "my_room", 1, NULL);
        cr_assert(tc_wait_state(&t, loop, WZPC_JOINED, 5000), "my_room joins");
        cr_assert(relay_log_wait(&relay, "joined room my_room", 1000));
    } else {
        connect_raw(&t, "my_room", NULL, true);
        expect_tls_refusal(&t);
        cr_assert(relay_log_wait(&relay, "SNI \"my_room\" is not a valid room name", 1000));
    }
    tc_free(&t);
}

Test(admission, uppercase_sni_is_the_lowercase_room)
{
    setup(NULL);
    struct tc a, b;
    tc_connect(&a, loop, &relay, "MixedCase", 1, NULL);
    tc_connect(&b, loop, &relay, "mixedcase", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    /* Both end with a RoomUpdate listing both (the first joiner's update listing only
     * itself may have been replaced by the newer one if both joined at once). */
    for (unsigned waited = 0; waited < 3000; waited += 20) {
        if (a.last_update_count == 2 && b.last_update_count == 2)
            break;
        wzpc_run_for(loop, 20);
    }
    cr_assert_eq(a.last_update_count, 2, "both are in one room");
    cr_assert_eq(b.last_update_count, 2, "both are in one room");
    cr_assert(relay_log_wait(&relay, "joined room mixedcase (2 participants)", 1000));
    tc_free(&a);
    tc_free(&b);
}

Test(admission, no_sni_joins_room_default)
{
    setup(NULL);
    struct tc a;
    struct wzpc_config cfg = {.sni = NULL, .auto_join = true};
    tc_connect(&a, loop, &relay, NULL, 1, &cfg);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(relay_log_wait(&relay, "joined room default", 2000));
    tc_free(&a);
}

Test(admission, wrong_alpn_refused)
{
    setup(NULL);
    struct tc h3, none;
    connect_raw(&h3, "room", "h3", true);
    connect_raw(&none, "room", "", true);
    cr_assert(tc_wait_state(&h3, loop, WZPC_CLOSED, 5000));
    cr_assert(tc_wait_state(&none, loop, WZPC_CLOSED, 5000));
    cr_assert_neq(wzpc_state(h3.c), WZPC_JOINED);
    bool by_peer, is_app;
    uint64_t code;
    char reason[128];
    cr_assert(wzpc_close_info(none.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && !is_app);
    cr_assert_eq(code, 0x178, "crypto error no_application_protocol, got 0x%llx",
                 (unsigned long long)code);
    cr_assert_eq(relay_counter(&relay, "conns_refused_alpn"), 2);
    tc_free(&h3);
    tc_free(&none);
}

Test(admission, max_sessions_enforced_before_the_handshake)
{
    static const char *const args[] = {"--max-sessions", "2", NULL};
    setup(args);
    struct tc a, b, c;
    tc_connect(&a, loop, &relay, "room", 1, NULL);
    tc_connect(&b, loop, &relay, "room", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    tc_connect(&c, loop, &relay, "room", 3, NULL);
    expect_app_close(&c, "max sessions (2)");
    cr_assert_eq(c.answers, 0, "no CallAnswer work for a refused session");
    cr_assert_eq(relay_counter(&relay, "join_refused_sessions"), 1);
    /* a slot frees when someone leaves */
    wzpc_close(a.c, 0, "hangup");
    wzpc_run_for(loop, 300);
    struct tc d;
    tc_connect(&d, loop, &relay, "room", 4, NULL);
    cr_assert(tc_wait_state(&d, loop, WZPC_JOINED, 5000));
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
    tc_free(&d);
}

Test(admission, join_timeout_closes_silent_clients)
{
    static const char *const args[] = {"--join-timeout", "400", NULL};
    setup(args);
    struct tc t;
    connect_raw(&t, "room", NULL, false);
    cr_assert(tc_wait_state(&t, loop, WZPC_CONNECTED, 5000));
    uint64_t t0 = wzp_now_ns();
    expect_app_close(&t, "no CallOffer within 400 ms");
    uint64_t waited_ms = (wzp_now_ns() - t0) / 1000000;
    cr_assert_lt(waited_ms, 3000, "closed after %llu ms", (unsigned long long)waited_ms);
    cr_assert_eq(relay_counter(&relay, "join_timeouts"), 1);
    tc_free(&t);
}

Test(admission, auth_token_refused_when_auth_is_off)
{
    setup(NULL);
    struct tc t;
    struct wzpc_config cfg = {.sni = "room", .auto_join = true, .auth_token = "secret"};
    tc_connect(&t, loop, &relay, "room", 1, &cfg);
    expect_app_close(&t, "authentication is not enabled");
    cr_assert_eq(relay_counter(&relay, "join_refused_auth"), 1);
    tc_free(&t);
}

Test(admission, invalid_room_name_refused)
{
    setup(NULL);
    struct tc t;
    connect_raw(&t, "bad!room", NULL, true);
    expect_tls_refusal(&t);
    cr_assert(relay_log_wait(&relay, "SNI \"bad!room\" is not a valid room name", 1000));
    cr_assert_eq(relay_counter(&relay, "conns_refused_sni"), 1);
    tc_free(&t);
}

Test(admission, expected_call_offer_got_something_else)
{
    setup(NULL);
    struct tc t;
    connect_raw(&t, "room", NULL, false);
    cr_assert(tc_wait_state(&t, loop, WZPC_CONNECTED, 5000));
    struct wzp_signal ping = {.type = WZP_SIG_PING};
    ping.u.ping.timestamp_ms = 1;
    wzpc_send_signal(t.c, &ping);
    expect_app_close(&t, "expected CallOffer, got Ping");
    tc_free(&t);
}
