/*
 * test_auth.c - featherChat token validation against a real HTTP validator on loopback
 * (tests/validator.h): a valid token and what it carries back, an invalid one, valid
 * without a fingerprint, a slow validator past the deadline, HTTP 500, a body that is not
 * JSON, one that is too big, nobody listening; the bound on requests in flight, the token
 * size limit, and freeing with requests in flight (no callback, nothing leaked).
 */
#include "auth.h"

#include "common.h"
#include "../validator.h"

#include <criterion/criterion.h>
#include <ev.h>
#include <string.h>

static struct validator val;
static struct ev_loop *loop;

static void setup(void)
{
    cr_assert_eq(wzp_auth_global_init(), WZP_OK);
    cr_assert_eq(validator_start(&val), 0, "validator did not start");
    loop = ev_loop_new(EVFLAG_AUTO);
}

static void teardown(void)
{
    validator_stop(&val);
    ev_loop_destroy(loop);
    wzp_auth_global_cleanup();
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 30);

struct outcome {
    unsigned calls;
    uint32_t slot, gen;
    struct wzp_auth_result res;
    char claims[WZP_AUTH_CLAIMS_MAX + 1];
};

static void on_done(void *ctx, uint32_t slot, uint32_t gen, const struct wzp_auth_result *res)
{
    struct outcome *o = ctx;
    o->calls++;
    o->slot = slot;
    o->gen = gen;
    o->res = *res;
    snprintf(o->claims, sizeof o->claims, "%s", res->claims ? res->claims : "");
    o->res.claims = NULL;
}

/* Validate one token and wait for the outcome. */
static const char *ca_file; /* NULL: the system's CA certificates */

static struct outcome check(const char *url, const char *token, unsigned timeout_ms)
{
    struct outcome o = {0};
    struct wzp_auth *a;
    cr_assert_eq(wzp_auth_new(&a, loop, url, ca_file, 4, timeout_ms, on_done, &o), WZP_OK);
    cr_assert_eq(wzp_auth_start(a, token, 7, 9), WZP_OK);
    cr_assert_eq(o.calls, 0, "never reported from inside wzp_auth_start");
    for (int i = 0; i < 1000 && o.calls == 0; i++)
        ev_run(loop, EVRUN_ONCE);
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(wzp_auth_in_flight(a), 0);
    wzp_auth_free(a);
    cr_assert_eq(o.slot, 7);
    cr_assert_eq(o.gen, 9);
    return o;
}

Test(auth, a_valid_token_gives_the_fingerprint_alias_and_claims)
{
    struct outcome o = check(val.url, "ok:fc01:0002:0003:0004:0005:0006:0007:0008|Alice", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_OK, "%s", o.res.detail);
    cr_assert_str_eq(o.res.fingerprint, "fc01:0002:0003:0004:0005:0006:0007:0008");
    cr_assert(o.res.has_alias);
    cr_assert_str_eq(o.res.alias, "Alice");
    cr_assert_not_null(strstr(o.claims, "\"team\":\"blue\""), "%s", o.claims);
    cr_assert_eq(atomic_load(&val.bad_requests), 0, "POST, JSON content type, {\"token\"}");
}

Test(auth, a_token_with_quotes_and_backslashes_is_sent_as_json)
{
    struct outcome o = check(val.url, "ok:a\"b\\c", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_OK, "%s", o.res.detail);
    cr_assert_str_eq(o.res.fingerprint, "a\"b\\c");
}

Test(auth, refusals_say_why)
{
    struct outcome o = check(val.url, "invalid", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_INVALID);
    o = check(val.url, "nofp", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_INVALID);
    cr_assert_str_eq(o.res.detail, "the validator said valid but gave no fingerprint");
    o = check(val.url, "ok:0123456789012345678901234567890123456789x", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_INVALID, "a fingerprint over 39 characters");
    o = check(val.url, "500", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_HTTP_ERROR);
    cr_assert_str_eq(o.res.detail, "the validator answered HTTP 500");
    o = check(val.url, "unknown", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_HTTP_ERROR);
    o = check(val.url, "garbage", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_BAD_RESPONSE);
    o = check(val.url, "big", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_BAD_RESPONSE);
    cr_assert_str_eq(o.res.detail, "the validator's answer is over 65536 bytes");
}

Test(auth, a_slow_validator_times_out_and_a_missing_one_is_unreachable)
{
    uint64_t t0 = wzp_now_ns();
    struct outcome o = check(val.url, "slow:1500", 300);
    uint64_t ms = (wzp_now_ns() - t0) / 1000000;
    cr_assert_eq(o.res.status, WZP_AUTH_TIMEOUT, "%s", o.res.detail);
    cr_assert_lt(ms, 1400, "reported at the deadline (%llu ms), not when the answer came",
                 (unsigned long long)ms);
    char url[96];
    validator_refused_url(url, sizeof url);
    o = check(url, "ok:x", 2000);
    cr_assert_eq(o.res.status, WZP_AUTH_UNREACHABLE, "%s", o.res.detail);
}

static void count_done(void *ctx, uint32_t slot, uint32_t gen, const struct wzp_auth_result *res)
{
    (void)slot;
    (void)gen;
    (void)res;
    (*(unsigned *)ctx)++;
}

Test(auth, bounds_and_free_with_requests_in_flight)
{
    unsigned calls = 0;
    struct wzp_auth *a;
    cr_assert_eq(wzp_auth_new(&a, loop, "ftp://127.0.0.1/", NULL, 2, 1000, count_done, &calls),
                 WZP_EINVAL);
    cr_assert_eq(wzp_auth_new(&a, loop, val.url, NULL, 2, 1000, count_done, &calls), WZP_OK);
    cr_assert_eq(wzp_auth_start(a, "slow:800", 1, 1), WZP_OK);
    cr_assert_eq(wzp_auth_start(a, "slow:800", 2, 1), WZP_OK);
    cr_assert_eq(wzp_auth_start(a, "ok:x", 3, 1), WZP_EFULL, "two in flight at most");
    char token[WZP_AUTH_TOKEN_MAX + 2];
    memset(token, 'x', sizeof token - 1);
    token[sizeof token - 1] = '\0';
    cr_assert_eq(wzp_auth_start(a, token, 4, 1), WZP_ETOOBIG);
    for (int i = 0; i < 20; i++)
        ev_run(loop, EVRUN_NOWAIT);
    cr_assert_eq(wzp_auth_in_flight(a), 2);
    wzp_auth_free(a); /* both abandoned: no callback */
    cr_assert_eq(calls, 0);
}

/* https:// with libcurl's GnuTLS: the validator's certificate is verified, against the
 * system's CAs unless a CA file is given. */
Test(auth, https_validators_are_verified)
{
    static struct validator tls;
    cr_assert_eq(validator_start_https(&tls), 0, "certtool or the TLS validator failed");
    ca_file = NULL;
    struct outcome o = check(tls.url, "ok:secure", 3000);
    cr_assert_eq(o.res.status, WZP_AUTH_UNREACHABLE, "a self-signed certificate is refused");
    cr_assert_not_null(strstr(o.res.detail, "certificate"), "%s", o.res.detail);
    ca_file = tls.ca_file;
    o = check(tls.url, "ok:secure", 3000);
    cr_assert_eq(o.res.status, WZP_AUTH_OK, "%s", o.res.detail);
    cr_assert_str_eq(o.res.fingerprint, "secure");
    ca_file = NULL;
    validator_stop(&tls);
}
