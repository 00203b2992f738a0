/*
 * test_dcall.c - direct calls through the real relay: two clients register on "_signal",
 * A calls B (B sees A's registered fingerprint, whatever A claimed), B accepts, both get
 * CallSetup with the other's addresses cross-wired and the relay's address, both join
 * call-<id> with the normal room handshake and exchange media; a third client can neither
 * answer, hang up, report nor join; a party cannot join twice; reject; hang-up both ways,
 * with and without call_id; the caller's _signal connection dying mid-ring; a
 * re-registration keeping its calls; ringing and set-up expiry. On one and two workers.
 * Needs the relay's patched GnuTLS (the system's refuses "_signal").
 */
#include "harness.h"

#include "common.h"
#include "handshake.h"
#include "identity.h"
#include "../validator.h"

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

TestSuite(dcall, .fini = teardown, .timeout = 60);

/* A client: its identity, its _signal connection and what arrived there. */
struct party {
    uint8_t seed[32];
    struct wzp_identity id;
    char fp[WZP_FINGERPRINT_LEN + 1];
    struct wzpc_client *sig;
    unsigned count[WZP_SIG_TYPE_END];
    enum wzp_signal_type last;
    char offer_caller[64], offer_call_id[80];
    char ringing[80];
    char answer_call_id[80];
    char setup_room[128], setup_relay[64], setup_direct[64], setup_local[2][64];
    size_t setup_nlocal;
    bool hangup_has_id;
    char hangup_id[80];
    enum wzp_hangup_reason hangup_reason;
    bool report_direct_ok;
    bool ack_success;
    char ack_error[160];
    const char *token; /* featherChat: AuthToken sent first on every connection */
};

static void on_signal(struct wzpc_client *c, const struct wzp_signal *s, void *ud)
{
    (void)c;
    struct party *p = ud;
    p->last = s->type;
    if (s->type < WZP_SIG_TYPE_END)
        p->count[s->type]++;
    switch (s->type) {
    case WZP_SIG_DIRECT_CALL_OFFER:
        snprintf(p->offer_caller, sizeof p->offer_caller, "%s",
                 s->u.direct_call_offer.caller_fingerprint);
        snprintf(p->offer_call_id, sizeof p->offer_call_id, "%s", s->u.direct_call_offer.call_id);
        break;
    case WZP_SIG_CALL_RINGING:
        snprintf(p->ringing, sizeof p->ringing, "%s", s->u.call_ringing.call_id);
        break;
    case WZP_SIG_DIRECT_CALL_ANSWER:
        snprintf(p->answer_call_id, sizeof p->answer_call_id, "%s",
                 s->u.direct_call_answer.call_id);
        break;
    case WZP_SIG_CALL_SETUP:
        snprintf(p->setup_room, sizeof p->setup_room, "%s", s->u.call_setup.room);
        snprintf(p->setup_relay, sizeof p->setup_relay, "%s", s->u.call_setup.relay_addr);
        snprintf(p->setup_direct, sizeof p->setup_direct, "%s",
                 s->u.call_setup.peer_direct_addr ? s->u.call_setup.peer_direct_addr : "");
        p->setup_nlocal = s->u.call_setup.peer_local_addrs.count;
        for (size_t i = 0; i < p->setup_nlocal && i < 2; i++)
            snprintf(p->setup_local[i], sizeof p->setup_local[i], "%s",
                     s->u.call_setup.peer_local_addrs.items[i]);
        break;
    case WZP_SIG_HANGUP:
        p->hangup_has_id = s->u.hangup.call_id != NULL;
        snprintf(p->hangup_id, sizeof p->hangup_id, "%s",
                 s->u.hangup.call_id ? s->u.hangup.call_id : "");
        p->hangup_reason = s->u.hangup.reason;
        break;
    case WZP_SIG_MEDIA_PATH_REPORT:
        p->report_direct_ok = s->u.media_path_report.direct_ok;
        break;
    case WZP_SIG_REGISTER_PRESENCE_ACK:
        p->ack_success = s->u.register_presence_ack.success;
        snprintf(p->ack_error, sizeof p->ack_error, "%s",
                 s->u.register_presence_ack.error ? s->u.register_presence_ack.error : "");
        break;
    default:
        break;
    }
}

static void start(const char *threads, const char *const *more)
{
    if (!WZP_GNUTLS_PATCHED)
        cr_skip_test("built against the system's GnuTLS, which refuses \"_signal\"");
    const char *args[16] = {"--threads", threads};
    size_t n = 2;
    for (; more && *more && n < 15; more++)
        args[n++] = *more;
    args[n] = NULL;
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
}

static void run_until_count(struct party *p, enum wzp_signal_type t, unsigned n)
{
    for (int i = 0; i < 250 && p->count[t] < n; i++)
        wzpc_run_for(loop, 20);
    cr_assert_geq(p->count[t], n, "%s: expected %u x %s, got %u (last %s)", p->fp, n,
                  wzp_signal_type_name(t), p->count[t], wzp_signal_type_name(p->last));
}

/* Connect p's _signal connection and register its identity: unsigned as today's apps,
 * signed, or with a signature by another key. */
enum reg_kind { REG_UNSIGNED, REG_SIGNED, REG_BAD_SIGNATURE };

static void sig_up_as(struct party *p, enum reg_kind kind)
{
    memset(p->count, 0, sizeof p->count);
    struct wzpc_config cfg = {.loop = loop,
                              .host = "127.0.0.1",
                              .port = relay.port,
                              .sni = "_signal",
                              .on_signal = on_signal,
                              .user_data = p};
    p->sig = wzpc_connect(&cfg);
    cr_assert_not_null(p->sig);
    for (int i = 0; i < 250 && wzpc_state(p->sig) < WZPC_CONNECTED; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(wzpc_state(p->sig), WZPC_CONNECTED);
    if (p->token) {
        struct wzp_signal at = {.type = WZP_SIG_AUTH_TOKEN};
        at.u.auth_token.token = (char *)p->token;
        cr_assert_eq(wzpc_send_signal(p->sig, &at), WZP_OK);
    }
    struct wzp_signal reg = {.type = WZP_SIG_REGISTER_PRESENCE};
    memcpy(reg.u.register_presence.identity_pub, p->id.ed25519_public, 32);
    if (kind != REG_UNSIGNED) {
        cr_assert_eq(wzp_handshake_sign_registration(&p->id, &reg.u.register_presence.signature),
                     WZP_OK);
        if (kind == REG_BAD_SIGNATURE)
            reg.u.register_presence.signature.data[0] ^= 1;
    }
    cr_assert_eq(wzpc_send_signal(p->sig, &reg), WZP_OK);
    free(reg.u.register_presence.signature.data);
    run_until_count(p, WZP_SIG_REGISTER_PRESENCE_ACK, 1);
}

static void sig_up(struct party *p)
{
    sig_up_as(p, REG_UNSIGNED);
    cr_assert(p->ack_success, "registered: %s", p->ack_error);
}

/* token: featherChat's, sent before RegisterPresence (and before every room join); NULL
 * without authentication. "ok:FP|..." tokens make FP the party's fingerprint. */
static void party_setup(struct party *p, uint8_t seed_byte, enum reg_kind kind, const char *token)
{
    memset(p, 0, sizeof *p);
    p->token = token;
    memset(p->seed, seed_byte, sizeof p->seed);
    cr_assert_eq(wzp_identity_from_seed(&p->id, p->seed), WZP_OK);
    if (token && strncmp(token, "ok:", 3) == 0)
        snprintf(p->fp, sizeof p->fp, "%.*s", (int)strcspn(token + 3, "|"), token + 3);
    else
        wzp_fingerprint(p->id.ed25519_public, p->fp);
    sig_up_as(p, kind);
}

static void party_init_as(struct party *p, uint8_t seed_byte, enum reg_kind kind)
{
    party_setup(p, seed_byte, kind, NULL);
}

static void party_init(struct party *p, uint8_t seed_byte)
{
    party_init_as(p, seed_byte, REG_UNSIGNED);
    cr_assert(p->ack_success, "registered: %s", p->ack_error);
}

static void party_free(struct party *p)
{
    wzpc_free(p->sig);
    wzp_identity_free(&p->id);
}

static void send_sig(struct party *p, const struct wzp_signal *s)
{
    cr_assert_eq(wzpc_send_signal(p->sig, s), WZP_OK);
}

/* from calls to: the caller claims a fingerprint that is not its own, and gives its
 * addresses for hole punching */
static void offer(struct party *from, const struct party *to, const char *call_id)
{
    char *locals[] = {"192.168.1.10:5000", "10.1.1.10:5000"};
    struct wzp_signal s = {.type = WZP_SIG_DIRECT_CALL_OFFER};
    s.u.direct_call_offer.caller_fingerprint = "forged:fingerprint";
    s.u.direct_call_offer.target_fingerprint = (char *)to->fp;
    s.u.direct_call_offer.call_id = (char *)call_id;
    memcpy(s.u.direct_call_offer.identity_pub, from->id.ed25519_public, 32);
    s.u.direct_call_offer.caller_reflexive_addr = "198.51.100.10:5000";
    s.u.direct_call_offer.caller_local_addrs.items = locals;
    s.u.direct_call_offer.caller_local_addrs.count = 2;
    send_sig(from, &s);
}

static void answer(struct party *p, const char *call_id, enum wzp_accept_mode mode)
{
    char *locals[] = {"192.168.2.20:6000"};
    struct wzp_signal s = {.type = WZP_SIG_DIRECT_CALL_ANSWER};
    s.u.direct_call_answer.call_id = (char *)call_id;
    s.u.direct_call_answer.accept_mode = mode;
    if (mode != WZP_ACCEPT_REJECT) {
        s.u.direct_call_answer.callee_reflexive_addr = "203.0.113.20:6000";
        s.u.direct_call_answer.callee_local_addrs.items = locals;
        s.u.direct_call_answer.callee_local_addrs.count = 1;
    }
    send_sig(p, &s);
}

static void hangup(struct party *p, const char *call_id)
{
    struct wzp_signal s = {.type = WZP_SIG_HANGUP};
    s.u.hangup.reason = WZP_HANGUP_NORMAL;
    s.u.hangup.call_id = (char *)call_id;
    send_sig(p, &s);
}

/* A calls B and B's phone rings. */
static void ring(struct party *a, struct party *b, const char *call_id)
{
    unsigned offers = b->count[WZP_SIG_DIRECT_CALL_OFFER];
    unsigned rings = a->count[WZP_SIG_CALL_RINGING];
    offer(a, b, call_id);
    run_until_count(b, WZP_SIG_DIRECT_CALL_OFFER, offers + 1);
    cr_assert_str_eq(b->offer_caller, a->fp, "the callee sees the registered caller");
    cr_assert_str_eq(b->offer_call_id, call_id);
    run_until_count(a, WZP_SIG_CALL_RINGING, rings + 1);
    cr_assert_str_eq(a->ringing, call_id);
}

static double gauge(const char *series)
{
    static char scrape[256 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                 200);
    return scrape_value(scrape, series);
}

/* Join room as party p (its identity, the normal room handshake). */
static void join_room(struct tc *t, struct party *p, const char *room, uint8_t id)
{
    struct wzpc_config cfg = {
        .sni = room, .auto_join = true, .seed = p->seed, .auth_token = p->token};
    tc_connect(t, loop, &relay, room, id, &cfg);
}

static void full_call(const char *threads)
{
    const char *more[] = {"--admin-token", "t0k", NULL};
    start(threads, more);
    struct party a, b, c;
    party_init(&a, 1);
    party_init(&b, 2);
    party_init(&c, 3);
    /* /presence lists who is reachable, for the token holder only */
    static char body[64 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/presence", NULL, body, sizeof body), 401);
    cr_assert_eq(http_request(relay.http_port, "GET", "/presence", "t0k", body, sizeof body), 200);
    cr_assert_not_null(strstr(body, "\"count\":3"), "%s", body);
    cr_assert_not_null(strstr(body, a.fp), "%s", body);
    ring(&a, &b, "c0ffee-1");
    cr_assert_eq(gauge("wzp_relay_direct_calls{state=\"ringing\"}"), 1);

    /* nobody but the callee answers, reports or hangs up */
    answer(&c, "c0ffee-1", WZP_ACCEPT_TRUSTED);
    answer(&a, "c0ffee-1", WZP_ACCEPT_TRUSTED);
    hangup(&c, "c0ffee-1");
    struct wzp_signal rep = {.type = WZP_SIG_MEDIA_PATH_REPORT};
    rep.u.media_path_report.call_id = "c0ffee-1";
    send_sig(&c, &rep);
    for (int i = 0; i < 50 && relay_counter(&relay, "call_signals_not_party") < 4; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(relay_counter(&relay, "call_signals_not_party"), 4);
    cr_assert_eq(b.count[WZP_SIG_HANGUP] + a.count[WZP_SIG_HANGUP], 0);

    /* a call room opens only once the call is accepted */
    struct tc early;
    join_room(&early, &a, "call-c0ffee-1", 9);
    cr_assert(tc_wait_state(&early, loop, WZPC_CLOSED, 3000));
    cr_assert(relay_log_wait(&relay, "call c0ffee-1 is not accepted yet", 1000));
    tc_free(&early);

    answer(&b, "c0ffee-1", WZP_ACCEPT_TRUSTED);
    run_until_count(&a, WZP_SIG_DIRECT_CALL_ANSWER, 1);
    run_until_count(&a, WZP_SIG_CALL_SETUP, 1);
    run_until_count(&b, WZP_SIG_CALL_SETUP, 1);
    char relay_addr[64];
    snprintf(relay_addr, sizeof relay_addr, "127.0.0.1:%u", relay.port);
    cr_assert_str_eq(a.setup_room, "call-c0ffee-1");
    cr_assert_str_eq(b.setup_room, "call-c0ffee-1");
    cr_assert_str_eq(a.setup_relay, relay_addr);
    cr_assert_str_eq(a.setup_direct, "203.0.113.20:6000", "the caller gets the callee's");
    cr_assert_eq(a.setup_nlocal, 1);
    cr_assert_str_eq(a.setup_local[0], "192.168.2.20:6000");
    cr_assert_str_eq(b.setup_direct, "198.51.100.10:5000", "the callee gets the caller's");
    cr_assert_eq(b.setup_nlocal, 2);
    cr_assert_str_eq(b.setup_local[1], "10.1.1.10:5000");
    cr_assert_eq(gauge("wzp_relay_direct_calls{state=\"active\"}"), 1);

    /* media path reports reach the peer */
    rep.u.media_path_report.direct_ok = true;
    send_sig(&a, &rep);
    run_until_count(&b, WZP_SIG_MEDIA_PATH_REPORT, 1);
    cr_assert(b.report_direct_ok);

    /* both join the call room and hear each other; the third client cannot get in,
     * nor can a party join twice */
    struct tc ta, tb, tc3, ta2;
    join_room(&ta, &a, "call-c0ffee-1", 1);
    join_room(&tb, &b, "call-c0ffee-1", 2);
    cr_assert(tc_wait_state(&ta, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&tb, loop, WZPC_JOINED, 5000));
    join_room(&tc3, &c, "call-c0ffee-1", 3);
    cr_assert(tc_wait_state(&tc3, loop, WZPC_CLOSED, 5000));
    cr_assert(relay_log_wait(&relay, "not a party of call c0ffee-1", 1000));
    join_room(&ta2, &a, "call-C0FFEE-1", 4); /* the same room: names are lower-cased */
    cr_assert(tc_wait_state(&ta2, loop, WZPC_CLOSED, 5000));
    cr_assert(relay_log_wait(&relay, "already in call room call-c0ffee-1", 1000));
    cr_assert_eq(relay_counter(&relay, "join_refused_call_room"), 3);
    for (int i = 0; i < 5; i++)
        tc_send_media(&ta, NULL);
    for (int i = 0; i < 100 && tb.from[1] < 5; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(tb.from[1], 5, "B hears A through the call room");

    /* A hangs up: B is told with the call id, the call is gone */
    hangup(&a, "c0ffee-1");
    run_until_count(&b, WZP_SIG_HANGUP, 1);
    cr_assert(b.hangup_has_id);
    cr_assert_str_eq(b.hangup_id, "c0ffee-1");
    cr_assert_eq(gauge("wzp_relay_direct_calls{state=\"active\"}"), 0);
    cr_assert_eq(relay_counter(&relay, "calls_accepted"), 1);
    cr_assert_eq(relay_counter(&relay, "calls_hung_up"), 1);
    tc_free(&ta);
    tc_free(&tb);
    tc_free(&tc3);
    tc_free(&ta2);
    party_free(&a);
    party_free(&b);
    party_free(&c);
}

Test(dcall, a_full_call_on_one_worker)
{
    full_call("1");
}

Test(dcall, a_full_call_on_two_workers)
{
    full_call("2");
}

Test(dcall, reject_and_offline_and_invalid)
{
    start("2", NULL);
    struct party a, b;
    party_init(&a, 1);
    party_init(&b, 2);
    static char body[4096];
    cr_assert_eq(http_request(relay.http_port, "GET", "/presence", NULL, body, sizeof body), 403,
                 "no admin token configured: /presence is off");
    ring(&a, &b, "r1");
    answer(&b, "r1", WZP_ACCEPT_REJECT);
    run_until_count(&a, WZP_SIG_HANGUP, 1);
    cr_assert_str_eq(a.hangup_id, "r1");
    cr_assert_eq(a.count[WZP_SIG_DIRECT_CALL_ANSWER], 0, "a Reject is not forwarded");
    cr_assert_eq(relay_counter(&relay, "calls_rejected"), 1);

    /* a callee that is not registered: a Hangup without call_id, as upstream */
    struct party nobody = {0};
    snprintf(nobody.fp, sizeof nobody.fp, "0000:1111:2222:3333:4444:5555:6666:7777");
    offer(&a, &nobody, "r2");
    run_until_count(&a, WZP_SIG_HANGUP, 2);
    cr_assert_not(a.hangup_has_id);
    cr_assert_eq(relay_counter(&relay, "calls_offline"), 1);

    /* a call id that cannot name a room, and calling oneself: Hangup{Error} */
    offer(&a, &b, "no spaces/please");
    run_until_count(&a, WZP_SIG_HANGUP, 3);
    cr_assert_eq(a.hangup_reason, WZP_HANGUP_ERROR);
    offer(&a, &a, "self");
    run_until_count(&a, WZP_SIG_HANGUP, 4);
    cr_assert_eq(a.hangup_reason, WZP_HANGUP_ERROR);
    cr_assert_eq(relay_counter(&relay, "calls_invalid"), 2);
    /* the callee hangs up while it rings: the caller is told */
    ring(&a, &b, "r3");
    unsigned before = a.count[WZP_SIG_HANGUP];
    hangup(&b, "r3");
    run_until_count(&a, WZP_SIG_HANGUP, before + 1);
    cr_assert_str_eq(a.hangup_id, "r3");
    /* a malformed answer (more than 8 LAN addresses) ends the call for both */
    ring(&a, &b, "bad1");
    char *many[9];
    for (int i = 0; i < 9; i++)
        many[i] = "10.0.0.9:1";
    struct wzp_signal ans = {.type = WZP_SIG_DIRECT_CALL_ANSWER};
    ans.u.direct_call_answer.call_id = "bad1";
    ans.u.direct_call_answer.accept_mode = WZP_ACCEPT_TRUSTED;
    ans.u.direct_call_answer.callee_local_addrs.items = many;
    ans.u.direct_call_answer.callee_local_addrs.count = 9;
    unsigned ah = a.count[WZP_SIG_HANGUP], bh = b.count[WZP_SIG_HANGUP];
    send_sig(&b, &ans);
    run_until_count(&a, WZP_SIG_HANGUP, ah + 1);
    run_until_count(&b, WZP_SIG_HANGUP, bh + 1);
    cr_assert_eq(a.hangup_reason, WZP_HANGUP_ERROR);
    cr_assert_str_eq(b.hangup_id, "bad1");
    cr_assert(relay_log_wait(&relay, "9 LAN addresses (at most 8)", 1000));
    /* an id in use */
    ring(&a, &b, "dup");
    bh = b.count[WZP_SIG_HANGUP];
    offer(&b, &a, "dup");
    run_until_count(&b, WZP_SIG_HANGUP, bh + 1);
    cr_assert_eq(b.hangup_reason, WZP_HANGUP_ERROR);
    cr_assert(relay_log_wait(&relay, "call id in use", 1000));
    party_free(&a);
    party_free(&b);
}

Test(dcall, a_hangup_without_call_id_ends_every_call_of_the_sender)
{
    start("1", NULL);
    struct party a, b, c;
    party_init(&a, 1);
    party_init(&b, 2);
    party_init(&c, 3);
    ring(&a, &b, "h1");
    ring(&a, &c, "h2");
    hangup(&a, NULL);
    run_until_count(&b, WZP_SIG_HANGUP, 1);
    run_until_count(&c, WZP_SIG_HANGUP, 1);
    cr_assert_str_eq(b.hangup_id, "h1", "each peer learns which call ended");
    cr_assert_str_eq(c.hangup_id, "h2");
    cr_assert_eq(gauge("wzp_relay_direct_calls{state=\"ringing\"}"), 0);
    party_free(&a);
    party_free(&b);
    party_free(&c);
}

Test(dcall, the_callers_signal_connection_dies_mid_ring)
{
    start("2", NULL);
    struct party a, b;
    party_init(&a, 1);
    party_init(&b, 2);
    ring(&a, &b, "k1");
    wzpc_close(a.sig, 0, "gone");
    run_until_count(&b, WZP_SIG_HANGUP, 1);
    cr_assert_str_eq(b.hangup_id, "k1");
    cr_assert_eq(relay_counter(&relay, "calls_party_gone"), 1);
    cr_assert_eq(gauge("wzp_relay_direct_calls{state=\"ringing\"}"), 0);
    party_free(&a);
    party_free(&b);
}

Test(dcall, a_re_registration_keeps_the_call)
{
    start("2", NULL);
    struct party a, b;
    party_init(&a, 1);
    party_init(&b, 2);
    ring(&a, &b, "m1");
    /* B's app reconnects: a new _signal connection registers the same identity, then the
     * old one goes; the call rings on and the new connection answers it */
    struct wzpc_client *old = b.sig;
    sig_up(&b);
    wzpc_close(old, 0, "replaced");
    for (int i = 0; i < 25; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(a.count[WZP_SIG_HANGUP], 0, "the old connection's end hung nothing up");
    answer(&b, "m1", WZP_ACCEPT_GENERIC);
    run_until_count(&a, WZP_SIG_CALL_SETUP, 1);
    run_until_count(&b, WZP_SIG_CALL_SETUP, 1);
    wzpc_free(old);
    party_free(&a);
    party_free(&b);
}

Test(dcall, ringing_and_set_up_expire)
{
    const char *more[] = {"--ring-timeout", "1", "--call-setup-timeout", "1", NULL};
    start("1", more);
    struct party a, b;
    party_init(&a, 1);
    party_init(&b, 2);
    ring(&a, &b, "t1");
    run_until_count(&a, WZP_SIG_HANGUP, 1);
    run_until_count(&b, WZP_SIG_HANGUP, 1);
    cr_assert_eq(a.hangup_reason, WZP_HANGUP_TIMEOUT);
    cr_assert_eq(b.hangup_reason, WZP_HANGUP_TIMEOUT);
    cr_assert_eq(relay_counter(&relay, "calls_ring_timeout"), 1);

    ring(&a, &b, "t2");
    answer(&b, "t2", WZP_ACCEPT_TRUSTED);
    run_until_count(&a, WZP_SIG_CALL_SETUP, 1);
    /* neither joins the room nor reports a path */
    run_until_count(&a, WZP_SIG_HANGUP, 2);
    cr_assert_str_eq(a.hangup_id, "t2");
    cr_assert_eq(a.hangup_reason, WZP_HANGUP_TIMEOUT);
    cr_assert_eq(relay_counter(&relay, "calls_setup_timeout"), 1);

    /* a call whose parties joined the room does not expire */
    ring(&a, &b, "t3");
    answer(&b, "t3", WZP_ACCEPT_TRUSTED);
    run_until_count(&a, WZP_SIG_CALL_SETUP, 2);
    struct tc ta;
    join_room(&ta, &a, "call-t3", 1);
    cr_assert(tc_wait_state(&ta, loop, WZPC_JOINED, 5000));
    wzpc_run_for(loop, 2500);
    cr_assert_eq(gauge("wzp_relay_direct_calls{state=\"active\"}"), 1);
    tc_free(&ta);
    party_free(&a);
    party_free(&b);
}

Test(dcall, advertise_names_the_relay_in_call_setup)
{
    const char *more[] = {"--advertise", "2001:db8::5", NULL};
    start("1", more);
    char want[64];
    snprintf(want, sizeof want, "[2001:db8::5]:%u", relay.port);
    cr_assert(relay_log_wait(&relay, want, 1000), "the start-up log names %s", want);
    struct party a, b;
    party_init(&a, 1);
    party_init(&b, 2);
    ring(&a, &b, "adv");
    answer(&b, "adv", WZP_ACCEPT_TRUSTED);
    run_until_count(&a, WZP_SIG_CALL_SETUP, 1);
    run_until_count(&b, WZP_SIG_CALL_SETUP, 1);
    cr_assert_str_eq(a.setup_relay, want, "IPv6 in brackets, with the listen port");
    cr_assert_str_eq(b.setup_relay, want);
    party_free(&a);
    party_free(&b);
}

Test(dcall, a_bad_advertise_address_stops_the_start)
{
    const char *const args[] = {"--advertise", "relay.example.org:4433", NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args, 5000), 2);
    cr_assert(relay_log_count(&relay, "--advertise expects IP:PORT") > 0);
    const char *const args2[] = {"--advertise", "10.0.0.1:99999", NULL};
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args2, 5000), 2);
}

/* The policy decides about registrations and calls: on_register sees whether the
 * registration was signed, on_call sees caller and callee. */
Test(dcall, policy_hooks_and_signed_registrations)
{
    char dir[64];
    scratch_dir(dir, sizeof dir, "dcall");
    char path[128];
    snprintf(path, sizeof path, "%s/policy.lua", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("function on_register(r)\n"
          "  if r.alias == nil and not r.signed and r.fingerprint:sub(1, 4) == BARRED then\n"
          "    return false, 'barred'\n"
          "  end\n"
          "  wzp.metric(r.signed and 'signed' or 'unsigned', 1)\n"
          "end\n"
          "function on_call(c)\n"
          "  if c.callee == NO_CALLS then return false, 'not taking calls' end\n"
          "end\n",
          f);
    fclose(f);
    /* which identities are barred and which take no calls: seed bytes 3 and 2 */
    struct party a, b, c, c2, d;
    struct wzp_identity tmp;
    char fp3[WZP_FINGERPRINT_LEN + 1], fp2[WZP_FINGERPRINT_LEN + 1];
    uint8_t seed[32];
    memset(seed, 3, sizeof seed);
    cr_assert_eq(wzp_identity_from_seed(&tmp, seed), WZP_OK);
    wzp_fingerprint(tmp.ed25519_public, fp3);
    wzp_identity_free(&tmp);
    memset(seed, 2, sizeof seed);
    cr_assert_eq(wzp_identity_from_seed(&tmp, seed), WZP_OK);
    wzp_fingerprint(tmp.ed25519_public, fp2);
    wzp_identity_free(&tmp);
    f = fopen(path, "a");
    fprintf(f, "BARRED = '%.4s'\nNO_CALLS = '%s'\n", fp3, fp2);
    fclose(f);
    const char *more[] = {"-s", path, NULL};
    start("2", more);

    party_init_as(&c, 3, REG_UNSIGNED);
    cr_assert_not(c.ack_success);
    cr_assert_str_eq(c.ack_error, "denied: barred", "the client learns why");
    for (int i = 0; i < 150 && wzpc_state(c.sig) != WZPC_CLOSED; i++)
        wzpc_run_for(loop, 20);
    bool by_peer = false, is_app = false;
    uint64_t code = 1;
    char reason[160] = "";
    cr_assert(wzpc_close_info(c.sig, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert_str_eq(reason, "denied: barred");
    cr_assert_eq(relay_counter(&relay, "presence_refused_policy"), 1);
    /* the same identity, signed: the policy lets it in */
    party_init_as(&c2, 3, REG_SIGNED);
    cr_assert(c2.ack_success, "%s", c2.ack_error);
    /* a signature that does not verify is refused whatever the policy says */
    party_init_as(&d, 4, REG_BAD_SIGNATURE);
    cr_assert_not(d.ack_success);
    cr_assert_str_eq(d.ack_error, "RegisterPresence signature does not verify");
    cr_assert_eq(relay_counter(&relay, "presence_bad_signature"), 1);

    party_init(&a, 1);
    party_init(&b, 2);
    offer(&a, &b, "p1");
    run_until_count(&a, WZP_SIG_HANGUP, 1);
    cr_assert_eq(a.hangup_reason, WZP_HANGUP_DECLINED);
    cr_assert_str_eq(a.hangup_id, "p1");
    cr_assert_eq(b.count[WZP_SIG_DIRECT_CALL_OFFER], 0, "the callee never rang");
    cr_assert_eq(relay_counter(&relay, "calls_refused_policy"), 1);
    ring(&b, &a, "p2"); /* the other way round is allowed */
    cr_assert_eq(gauge("wzp_relay_policy_metric_total{name=\"signed\"}"), 1);
    cr_assert_eq(gauge("wzp_relay_policy_metric_total{name=\"unsigned\"}"), 2);
    party_free(&a);
    party_free(&b);
    party_free(&c);
    party_free(&c2);
    party_free(&d);
}

/* With featherChat authentication the validator's fingerprint is the identity on _signal
 * and in call rooms: registration, the caller seen by the callee, and the call room's
 * admission all use it. */
Test(dcall, a_call_between_authenticated_clients)
{
    static struct validator val;
    cr_assert_eq(validator_start(&val), 0);
    const char *more[] = {"--auth-url", val.url, NULL};
    start("2", more);
    struct party a, b, x = {0};
    party_setup(&a, 1, REG_UNSIGNED, "ok:fa00:0000:0000:0000:0000:0000:0000:000a|Ann");
    party_setup(&b, 2, REG_UNSIGNED, "ok:fa00:0000:0000:0000:0000:0000:0000:000b");
    cr_assert(a.ack_success && b.ack_success);
    cr_assert(relay_log_wait(&relay, "presence: fa00:0000:0000:0000:0000:0000:0000:000a", 1000));
    ring(&a, &b, "auth-1"); /* checks the callee saw fa00:..:000a as the caller */
    answer(&b, "auth-1", WZP_ACCEPT_TRUSTED);
    run_until_count(&a, WZP_SIG_CALL_SETUP, 1);
    struct tc ta, tb;
    join_room(&ta, &a, "call-auth-1", 1);
    join_room(&tb, &b, "call-auth-1", 2);
    cr_assert(tc_wait_state(&ta, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&tb, loop, WZPC_JOINED, 5000));
    for (int i = 0; i < 3; i++)
        tc_send_media(&tb, NULL);
    for (int i = 0; i < 100 && ta.from[2] < 3; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(ta.from[2], 3);
    /* a _signal connection without a token is refused */
    struct wzpc_config cfg = {.loop = loop,
                              .host = "127.0.0.1",
                              .port = relay.port,
                              .sni = "_signal",
                              .on_signal = on_signal,
                              .user_data = &x};
    x.sig = wzpc_connect(&cfg);
    for (int i = 0; i < 250 && wzpc_state(x.sig) < WZPC_CONNECTED; i++)
        wzpc_run_for(loop, 20);
    struct wzp_signal reg = {.type = WZP_SIG_REGISTER_PRESENCE};
    cr_assert_eq(wzpc_send_signal(x.sig, &reg), WZP_OK);
    for (int i = 0; i < 150 && wzpc_state(x.sig) != WZPC_CLOSED; i++)
        wzpc_run_for(loop, 20);
    char reason[200] = "";
    bool by_peer, is_app;
    uint64_t code;
    cr_assert(wzpc_close_info(x.sig, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert_not_null(strstr(reason, "expected AuthToken, got RegisterPresence"), "%s", reason);
    cr_assert_eq(relay_counter(&relay, "auth_ok"), 4, "two _signal and two room connections");
    tc_free(&ta);
    tc_free(&tb);
    wzpc_free(x.sig);
    party_free(&a);
    party_free(&b);
    relay_finish_with_loop(&relay, &loop);
    validator_stop(&val);
}
