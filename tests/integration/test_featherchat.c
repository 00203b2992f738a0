/*
 * test_featherchat.c - featherChat authentication (--auth-url) on the real relay, against a real
 * HTTP validator the test starts on loopback (tests/validator.h): a valid token joins and
 * the validator's fingerprint names the participant in RoomUpdate; no token, an invalid
 * one, HTTP 500, a body that is not JSON and a validator slower than the 5 s deadline are
 * refused with the reason, counted, and leave other calls alone; a validator nobody
 * listens on; a bad --auth-url stops the start. (_signal with authentication, and a call
 * between authenticated clients: test_dcall.c.)
 */
#include "harness.h"

#include "common.h"
#include "../validator.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct ev_loop *loop;
static struct relay_proc relay;
static struct validator val;

static void teardown(void)
{
    relay_finish_with_loop(&relay, &loop);
    validator_stop(&val);
}

TestSuite(featherchat, .fini = teardown, .timeout = 90);

static void start(const char *url)
{
    const char *args[] = {"--auth-url", url, "--threads", "2", NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
}

static void connect_with(struct tc *t, const char *room, uint8_t id, const char *token)
{
    struct wzpc_config cfg = {.sni = room, .auto_join = true, .auth_token = token};
    tc_connect(t, loop, &relay, room, id, &cfg);
}

static void expect_refused(struct tc *t, const char *reason_part)
{
    cr_assert(tc_wait_state(t, loop, WZPC_CLOSED, 9000));
    bool by_peer = false, is_app = false;
    uint64_t code = 1;
    char reason[256] = "";
    cr_assert(wzpc_close_info(t->c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && is_app && code == 0);
    cr_assert_not_null(strstr(reason, reason_part), "reason \"%s\" has \"%s\"", reason,
                       reason_part);
    cr_assert_eq(t->answers, 0, "no CallAnswer for a client that is not authenticated");
}

Test(featherchat, tokens_decide_who_joins_and_the_validator_names_them)
{
    cr_assert_eq(validator_start(&val), 0);
    start(val.url);
    struct tc a, b;
    connect_with(&a, "lobby", 1, "ok:fc01:0000:0000:0000:0000:0000:0000:0001|Alice");
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_updates(&a, loop, 1, 3000));
    cr_assert_str_eq(a.last_update[0], "fc01:0000:0000:0000:0000:0000:0000:0001",
                     "featherChat's fingerprint, not the key's");
    cr_assert(relay_log_wait(&relay, "authenticated by featherChat as fc01:", 1000));

    /* refusals, each with its reason; A's call is unaffected throughout */
    static const struct {
        const char *token, *reason, *counter;
    } cases[] = {
        {NULL, "expected AuthToken, got CallOffer", "auth_fail_no_token"},
        {"invalid", "featherChat authentication failed (invalid)", "auth_fail_invalid"},
        {"nofp", "gave no fingerprint", "auth_fail_invalid"},
        {"500", "featherChat authentication failed (http_error): the validator answered HTTP 500",
         "auth_fail_http_error"},
        {"garbage", "(bad_response)", "auth_fail_bad_response"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        connect_with(&b, "lobby", 2, cases[i].token);
        expect_refused(&b, cases[i].reason);
        cr_assert_geq(relay_counter(&relay, cases[i].counter), 1, "%s", cases[i].counter);
        tc_free(&b);
    }
    cr_assert_eq(relay_counter(&relay, "auth_fail"), 5);
    cr_assert_eq(relay_counter(&relay, "auth_ok"), 1);
    cr_assert_eq(atomic_load(&val.bad_requests), 0, "every request was a proper POST");
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    tc_free(&a);
}

Test(featherchat, a_slow_validator_is_cut_off_at_five_seconds)
{
    cr_assert_eq(validator_start(&val), 0);
    start(val.url);
    struct tc a, slow;
    connect_with(&a, "lobby", 1, "ok:fc01:0000:0000:0000:0000:0000:0000:0001");
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    uint64_t t0 = wzp_now_ns();
    connect_with(&slow, "lobby", 2, "slow:8000");
    expect_refused(&slow, "featherChat authentication failed (timeout): no answer within 5000 ms");
    uint64_t ms = (wzp_now_ns() - t0) / 1000000;
    cr_assert(ms >= 4500 && ms < 7500, "refused after %llu ms", (unsigned long long)ms);
    /* the worker never waited: A's call went on meanwhile */
    for (int i = 0; i < 5; i++)
        tc_send_media(&a, NULL);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    cr_assert_eq(relay_counter(&relay, "auth_fail_timeout"), 1);
    tc_free(&a);
    tc_free(&slow);
}

Test(featherchat, nobody_listening_at_the_validator)
{
    char url[96];
    validator_refused_url(url, sizeof url);
    start(url);
    struct tc a;
    connect_with(&a, "lobby", 1, "ok:x");
    expect_refused(&a, "featherChat authentication failed (unreachable)");
    cr_assert_eq(relay_counter(&relay, "auth_fail_unreachable"), 1);
    tc_free(&a);
}

Test(featherchat, a_bad_auth_url_stops_the_start)
{
    const char *const args[] = {"--auth-url", "ftp://chat.example.org/validate", NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args, 5000), 2);
    cr_assert(relay_log_count(&relay, "must be an http:// or https:// URL") > 0);
}

Test(featherchat, an_https_validator_with_its_own_ca)
{
    cr_assert_eq(validator_start_https(&val), 0, "certtool or the TLS validator failed");
    const char *args[] = {"--auth-url", val.url, "--auth-ca-file", val.ca_file, NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc a;
    connect_with(&a, "lobby", 1, "ok:fc02:0000:0000:0000:0000:0000:0000:0001");
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert_eq(relay_counter(&relay, "auth_ok"), 1);
    tc_free(&a);
}

Test(featherchat, an_unreadable_ca_file_stops_the_start)
{
    const char *const args[] = {"--auth-url", "https://127.0.0.1:1/", "--auth-ca-file",
                                "/nonexistent/ca.pem", NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args, 5000), 2);
    cr_assert(relay_log_count(&relay, "cannot read the CA file \"/nonexistent/ca.pem\"") > 0);
}
