/*
 * test_calls.c - the call table: offer, answer (only by the callee, only once), reject,
 * peers and hang-ups only for the two parties, ending every call of a party, ring and
 * set-up expiry, call-room admission, ids compared ignoring case, and the bounds (table
 * size, calls per party).
 */
#include "calls.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct wzp_calls t;

static void setup(void)
{
    cr_assert_eq(wzp_calls_init(&t, 6, 3), WZP_OK);
}

static void teardown(void)
{
    wzp_calls_free(&t);
}

TestSuite(calls, .init = setup, .fini = teardown);

static const char *const A = "aaaa:0000:0000:0000:0000:0000:0000:0001";
static const char *const B = "bbbb:0000:0000:0000:0000:0000:0000:0002";
static const char *const C = "cccc:0000:0000:0000:0000:0000:0000:0003";

static int offer(const char *id, const char *caller, const char *callee, uint64_t deadline)
{
    struct wzp_call c = {0};
    snprintf(c.id, sizeof c.id, "%.*s", WZP_CALL_ID_MAX, id);
    snprintf(c.caller, sizeof c.caller, "%s", caller);
    snprintf(c.callee, sizeof c.callee, "%s", callee);
    snprintf(c.caller_addrs.reflexive, sizeof c.caller_addrs.reflexive, "198.51.100.1:5000");
    c.created_ns = 1;
    c.deadline_ns = deadline;
    return wzp_calls_offer(&t, &c, NULL);
}

static void counts(size_t ringing, size_t active)
{
    size_t r, a;
    wzp_calls_counts(&t, &r, &a);
    cr_assert_eq(r, ringing, "ringing %zu, expected %zu", r, ringing);
    cr_assert_eq(a, active, "active %zu, expected %zu", a, active);
}

Test(calls, offer_accept_and_hang_up)
{
    cr_assert_eq(offer("c1", A, B, 100), WZP_OK);
    counts(1, 0);
    cr_assert_eq(wzp_calls_admit(&t, "c1", A), WZP_ESTATE, "no room before the answer");
    struct wzp_call_addrs bx = {.reflexive = "203.0.113.9:6000", .nlocal = 1};
    snprintf(bx.local[0], sizeof bx.local[0], "10.0.0.2:6000");
    struct wzp_call out;
    cr_assert_eq(wzp_calls_answer(&t, "c1", B, true, &bx, 500, &out), WZP_OK);
    cr_assert_eq(out.state, WZP_CALL_ACTIVE);
    cr_assert_eq(out.deadline_ns, 500);
    cr_assert_str_eq(out.caller_addrs.reflexive, "198.51.100.1:5000");
    cr_assert_str_eq(out.callee_addrs.reflexive, "203.0.113.9:6000");
    cr_assert_str_eq(out.callee_addrs.local[0], "10.0.0.2:6000");
    counts(0, 1);
    cr_assert_eq(wzp_calls_answer(&t, "c1", B, true, &bx, 500, NULL), WZP_ESTATE);

    char peer[WZP_FINGERPRINT_LEN + 1];
    cr_assert_eq(wzp_calls_peer(&t, "c1", A, false, peer), WZP_OK);
    cr_assert_str_eq(peer, B);
    cr_assert_eq(wzp_calls_peer(&t, "c1", B, false, peer), WZP_OK);
    cr_assert_str_eq(peer, A);
    cr_assert_eq(wzp_calls_peer(&t, "c1", C, false, peer), WZP_EPERM);
    cr_assert_eq(wzp_calls_peer(&t, "nope", A, false, peer), WZP_ENOTFOUND);

    cr_assert_eq(wzp_calls_end(&t, "c1", C, &out), WZP_EPERM, "a third party cannot hang up");
    cr_assert_eq(wzp_calls_end(&t, "c1", B, &out), WZP_OK);
    cr_assert_str_eq(out.caller, A);
    counts(0, 0);
    cr_assert_eq(wzp_calls_end(&t, "c1", A, &out), WZP_ENOTFOUND);
}

Test(calls, only_the_callee_answers)
{
    cr_assert_eq(offer("c1", A, B, 100), WZP_OK);
    cr_assert_eq(wzp_calls_answer(&t, "c1", A, true, NULL, 500, NULL), WZP_EPERM);
    cr_assert_eq(wzp_calls_answer(&t, "c1", C, true, NULL, 500, NULL), WZP_EPERM);
    cr_assert_eq(wzp_calls_answer(&t, "c2", B, true, NULL, 500, NULL), WZP_ENOTFOUND);
    counts(1, 0);
    struct wzp_call out;
    cr_assert_eq(wzp_calls_answer(&t, "c1", B, false, NULL, 500, &out), WZP_OK, "reject");
    cr_assert_str_eq(out.caller, A);
    counts(0, 0);
}

Test(calls, the_call_room_admits_only_the_parties_of_an_accepted_call)
{
    cr_assert_eq(offer("c1", A, B, 100), WZP_OK);
    cr_assert_eq(wzp_calls_answer(&t, "c1", B, true, NULL, 500, NULL), WZP_OK);
    cr_assert_eq(wzp_calls_admit(&t, "c1", C), WZP_EPERM);
    cr_assert_eq(wzp_calls_admit(&t, "c9", A), WZP_ENOTFOUND);
    cr_assert_eq(wzp_calls_admit(&t, "c1", A), WZP_OK);
    /* admitted: the call is set up and no longer expires */
    struct wzp_call out[4];
    cr_assert_eq(wzp_calls_expire(&t, 1000, out, 4), 0);
    cr_assert_eq(wzp_calls_admit(&t, "c1", B), WZP_OK);
    cr_assert_str_eq(wzp_call_room_id("call-c1"), "c1");
    cr_assert_null(wzp_call_room_id("lobby"));
    cr_assert_null(wzp_call_room_id("cal"));
}

Test(calls, ids_ignore_case_and_must_make_a_room_name)
{
    cr_assert_eq(offer("Ab-12.x_y", A, B, 100), WZP_OK);
    cr_assert_eq(offer("ab-12.X_Y", C, B, 100), WZP_EEXIST);
    cr_assert_eq(wzp_calls_answer(&t, "ab-12.x_y", B, true, NULL, 500, NULL), WZP_OK);
    cr_assert_eq(wzp_calls_admit(&t, "ab-12.x_y", A), WZP_OK);
    cr_assert_eq(offer("", A, C, 100), WZP_EINVAL);
    cr_assert_eq(offer("a b", A, C, 100), WZP_EINVAL);
    cr_assert_eq(offer("a/b", A, C, 100), WZP_EINVAL);
    char longid[WZP_CALL_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    cr_assert_not(wzp_call_id_valid(longid));
    longid[WZP_CALL_ID_MAX] = '\0';
    cr_assert(wzp_call_id_valid(longid));
    cr_assert_eq(offer(longid, A, C, 100), WZP_OK, "exactly the longest id");
    cr_assert_eq(offer("self", A, A, 100), WZP_EINVAL, "calling oneself");
}

Test(calls, ringing_and_set_up_expire)
{
    cr_assert_eq(offer("r1", A, B, 100), WZP_OK);
    cr_assert_eq(offer("r2", A, C, 300), WZP_OK);
    cr_assert_eq(wzp_calls_answer(&t, "r2", C, true, NULL, 400, NULL), WZP_OK);
    struct wzp_call out[4];
    cr_assert_eq(wzp_calls_expire(&t, 99, out, 4), 0);
    cr_assert_eq(wzp_calls_expire(&t, 100, out, 4), 1);
    cr_assert_str_eq(out[0].id, "r1");
    cr_assert_eq(out[0].state, WZP_CALL_RINGING);
    counts(0, 1);
    cr_assert_eq(wzp_calls_expire(&t, 399, out, 4), 0, "the answer moved the deadline");
    cr_assert_eq(wzp_calls_expire(&t, 400, out, 4), 1);
    cr_assert_str_eq(out[0].id, "r2");
    cr_assert_eq(out[0].state, WZP_CALL_ACTIVE);
    counts(0, 0);
}

Test(calls, a_media_path_report_sets_a_call_up)
{
    cr_assert_eq(offer("c1", A, B, 100), WZP_OK);
    cr_assert_eq(wzp_calls_answer(&t, "c1", B, true, NULL, 400, NULL), WZP_OK);
    char peer[WZP_FINGERPRINT_LEN + 1];
    cr_assert_eq(wzp_calls_peer(&t, "c1", B, true, peer), WZP_OK);
    struct wzp_call out[2];
    cr_assert_eq(wzp_calls_expire(&t, UINT64_MAX, out, 2), 0);
    counts(0, 1);
}

Test(calls, a_party_going_ends_all_its_calls_in_batches)
{
    cr_assert_eq(offer("1", A, B, 100), WZP_OK);
    cr_assert_eq(offer("2", C, A, 100), WZP_OK);
    cr_assert_eq(offer("3", B, C, 100), WZP_OK);
    cr_assert_eq(offer("4", A, C, 100), WZP_OK);
    struct wzp_call out[2];
    size_t n = wzp_calls_end_party(&t, A, out, 2);
    cr_assert_eq(n, 2);
    n = wzp_calls_end_party(&t, A, out, 2);
    cr_assert_eq(n, 1, "the third call of A in the second batch");
    cr_assert_eq(wzp_calls_end_party(&t, A, out, 2), 0);
    char peer[WZP_FINGERPRINT_LEN + 1];
    cr_assert_eq(wzp_calls_peer(&t, "3", B, false, peer), WZP_OK, "B-C is untouched");
    counts(1, 0);
}

Test(calls, bounds_per_party_and_in_all)
{
    int busy = -1;
    cr_assert_eq(offer("1", A, B, 100), WZP_OK);
    cr_assert_eq(offer("2", A, C, 100), WZP_OK);
    cr_assert_eq(offer("3", C, A, 100), WZP_OK);
    struct wzp_call c = {.id = "4", .deadline_ns = 100};
    snprintf(c.caller, sizeof c.caller, "%s", A);
    snprintf(c.callee, sizeof c.callee, "%s", B);
    cr_assert_eq(wzp_calls_offer(&t, &c, &busy), WZP_ESTATE, "A has 3 calls");
    cr_assert_eq(busy, 0, "the caller is the busy one");
    snprintf(c.caller, sizeof c.caller, "dddd");
    snprintf(c.callee, sizeof c.callee, "%s", A);
    cr_assert_eq(wzp_calls_offer(&t, &c, &busy), WZP_ESTATE);
    cr_assert_eq(busy, 1, "the callee is the busy one");
    /* the table itself: 6 calls */
    char id[8], caller[8], callee[8];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "x%d", i);
        snprintf(caller, sizeof caller, "p%d", i);
        snprintf(callee, sizeof callee, "q%d", i);
        cr_assert_eq(offer(id, caller, callee, 100), WZP_OK);
    }
    cr_assert_eq(offer("y", "e", "f", 100), WZP_EFULL);
    counts(6, 0);
}
