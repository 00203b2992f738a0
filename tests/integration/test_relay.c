/*
 * test_relay.c - integration tests: the real wzp-relay binary on loopback, driven by
 * real QUIC clients (examples/lib). Each test starts its own relay.
 */
#include "harness.h"

#include "common.h"
#include "media.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

static struct ev_loop *loop;
static struct relay_proc relay;

/* Every test ends with a clean relay exit: a crash, a sanitizer report or a hang fails it. */
static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(relay, .init = NULL, .fini = stop_relay, .timeout = 90);

static void setup(const char *const *args)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
}

static void join(struct tc *t, const char *room, uint8_t id)
{
    tc_connect(t, loop, &relay, room, id, NULL);
    if (!tc_wait_state(t, loop, WZPC_JOINED, 5000)) {
        relay_dump_log(&relay);
        cr_assert_fail("client %u did not join %s", id, room);
    }
    cr_assert(tc_wait_updates(t, loop, 1, 3000), "client %u got no RoomUpdate", id);
}

/* Each client sends n packets, spread over a few loop iterations. */
static void send_round(struct tc **clients, size_t nclients, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        for (size_t k = 0; k < nclients; k++)
            tc_send_media(clients[k], NULL);
        if (i % 10 == 9)
            wzpc_run_for(loop, 20);
    }
}

struct media_goal {
    struct tc **clients;
    size_t n;
    const unsigned *expect;
};

static bool all_received(void *arg)
{
    struct media_goal *g = arg;
    for (size_t i = 0; i < g->n; i++)
        if (g->clients[i]->media_total < g->expect[i])
            return false;
    return true;
}

static void run_fanout(const char *const *args)
{
    setup(args);
    struct tc a, b, c, d, e;
    join(&a, "alpha", 1);
    join(&b, "alpha", 2);
    join(&c, "alpha", 3);
    join(&d, "beta", 4);
    join(&e, "beta", 5);
    struct tc *all[] = {&a, &b, &c, &d, &e};
    const unsigned per_sender = 60;
    send_round(all, 5, per_sender);
    const unsigned expect[] = {2 * per_sender, 2 * per_sender, 2 * per_sender, per_sender,
                               per_sender};
    struct media_goal g = {all, 5, expect};
    wzpc_run_until(loop, all_received, &g, 5000);
    wzpc_run_for(loop, 200); /* anything extra (echo, cross-room) would show up now */
    for (size_t i = 0; i < 5; i++) {
        struct tc *t = all[i];
        bool in_alpha = i < 3;
        cr_assert_eq(t->media_malformed, 0);
        for (uint8_t src = 1; src <= 5; src++) {
            bool same_room = in_alpha == (src <= 3);
            unsigned want = (src == t->id || !same_room) ? 0 : per_sender;
            cr_expect_eq(t->from[src], want, "client %u got %u packets from %u, want %u", t->id,
                         t->from[src], src, want);
        }
    }
    for (size_t i = 0; i < 5; i++)
        tc_free(all[i]);
    cr_assert_eq(relay_stop(&relay, 3000), 0);
}

Test(relay, fanout_exact_one_worker)
{
    static const char *const args[] = {"--threads", "1", NULL};
    run_fanout(args);
}

Test(relay, fanout_exact_two_workers)
{
    static const char *const args[] = {"--threads", "2", NULL};
    run_fanout(args);
}

/* The room spread over both workers: fan-out through the cross-worker rings. */
Test(relay, fanout_exact_two_workers_spread)
{
    static const char *const args[] = {"--threads", "2", "--no-room-affinity", NULL};
    run_fanout(args);
}

Test(relay, room_updates_in_join_order)
{
    setup(NULL);
    struct tc a, b, c;
    join(&a, "room", 1);
    join(&b, "room", 2);
    join(&c, "room", 3);
    cr_assert(tc_wait_updates(&a, loop, 3, 3000));
    cr_assert(tc_wait_updates(&b, loop, 2, 3000));
    wzpc_run_for(loop, 200);
    cr_assert_eq(a.room_updates, 3);
    cr_assert_eq(b.room_updates, 2);
    cr_assert_eq(c.room_updates, 1);
    cr_assert_eq(a.update_counts[0], 1);
    cr_assert_eq(a.update_counts[1], 2);
    cr_assert_eq(a.update_counts[2], 3);
    cr_assert_eq(b.update_counts[0], 2);
    cr_assert_eq(b.update_counts[1], 3);
    cr_assert_eq(c.update_counts[0], 3);
    /* participants are listed in join order, identified by their key fingerprints */
    cr_assert_str_eq(c.last_update[0], wzpc_fingerprint(a.c));
    cr_assert_str_eq(c.last_update[1], wzpc_fingerprint(b.c));
    cr_assert_str_eq(c.last_update[2], wzpc_fingerprint(c.c));
    cr_assert_eq(a.answers, 1);
    /* a leave updates the rest */
    wzpc_close(b.c, 0, "hangup");
    cr_assert(tc_wait_updates(&a, loop, 4, 3000));
    cr_assert(tc_wait_updates(&c, loop, 2, 3000));
    cr_assert_eq(a.update_counts[3], 2);
    cr_assert_str_eq(a.last_update[1], wzpc_fingerprint(c.c));
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

Test(relay, bad_signature_refused_without_room_update)
{
    setup(NULL);
    struct tc a, bad;
    join(&a, "room", 1);
    struct wzpc_config cfg = {.sni = "room", .auto_join = true, .corrupt_offer_signature = true};
    tc_connect(&bad, loop, &relay, "room", 2, &cfg);
    cr_assert(tc_wait_state(&bad, loop, WZPC_CLOSED, 5000));
    bool by_peer, is_app;
    uint64_t code;
    char reason[128];
    cr_assert(wzpc_close_info(bad.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && is_app && code == 0, "closed with application code 0 by the relay");
    cr_assert_eq(bad.answers, 0);
    wzpc_run_for(loop, 300);
    cr_assert_eq(a.room_updates, 1, "no RoomUpdate for a refused join");
    cr_assert(relay_log_wait(&relay, "CallOffer signature does not verify", 1000));
    cr_assert_eq(relay_counter(&relay, "join_refused_signature"), 1);
    tc_free(&a);
    tc_free(&bad);
}

/* The relay frees a connection's TLS session after the handshake (ngtcp2 keeps the
 * keys): a client that then sends TLS data in 1-RTT CRYPTO frames is closed with a
 * reason, and the room carries on. */
Test(relay, tls_data_after_the_handshake_is_refused)
{
    setup(NULL);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);
    static const uint8_t msg[] = {4, 0, 0, 4, 0, 0, 0, 0}; /* a NewSessionTicket-like header */
    cr_assert_eq(wzpc_send_crypto_after_handshake(b.c, msg, sizeof msg), WZP_OK);
    cr_assert(tc_wait_state(&b, loop, WZPC_CLOSED, 5000), "the relay did not close it");
    cr_assert(relay_log_wait(&relay, "TLS data after the handshake", 1000));
    tc_send_media(&a, NULL);
    wzpc_run_for(loop, 200);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED, "the other participant was affected");
    tc_free(&a);
    tc_free(&b);
}

static bool media_at_least(void *arg)
{
    struct tc **p = arg;
    return p[0]->media_total >= 20 && p[1]->media_total >= 20;
}

Test(relay, garbage_and_oversize_signals_refused_others_unaffected)
{
    setup(NULL);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);

    /* garbage before the CallOffer */
    struct tc g, big;
    struct wzpc_config raw = {.sni = "room"};
    tc_connect(&g, loop, &relay, "room", 3, &raw);
    cr_assert(tc_wait_state(&g, loop, WZPC_CONNECTED, 5000));
    static const uint8_t garbage[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    wzpc_send_stream_raw(g.c, garbage, sizeof garbage, true);

    /* a frame that announces 2 MiB */
    tc_connect(&big, loop, &relay, "room", 4, &raw);
    cr_assert(tc_wait_state(&big, loop, WZPC_CONNECTED, 5000));
    static const uint8_t huge[] = {0, 0x20, 0, 0, '{'};
    wzpc_send_stream_raw(big.c, huge, sizeof huge, false);

    /* meanwhile a and b keep talking */
    for (int round = 0; round < 5; round++) {
        struct tc *pair[] = {&a, &b};
        send_round(pair, 2, 5);
        wzpc_run_for(loop, 50);
    }
    cr_assert(tc_wait_state(&g, loop, WZPC_CLOSED, 3000), "garbage sender closed");
    cr_assert(tc_wait_state(&big, loop, WZPC_CLOSED, 3000), "oversize sender closed");
    struct tc *pair[] = {&a, &b};
    cr_assert(wzpc_run_until(loop, media_at_least, pair, 3000));
    cr_assert_eq(a.from[2], 25);
    cr_assert_eq(b.from[1], 25);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    cr_assert(relay_log_wait(&relay, "malformed signal", 1000));
    cr_assert(relay_log_wait(&relay, "larger than 1 MiB", 1000));
    cr_assert_eq(relay_counter(&relay, "signals_oversize"), 1);
    cr_assert_eq(relay_counter(&relay, "join_refused_protocol"), 1);
    cr_assert_eq(a.room_updates, 2, "refused clients never appear in the room");
    tc_free(&a);
    tc_free(&b);
    tc_free(&g);
    tc_free(&big);
}

Test(relay, invalid_datagrams_never_forwarded)
{
    setup(NULL);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);
    uint8_t pkt[32];
    memset(pkt, 0, sizeof pkt);
    /* short: 11 bytes */
    wzpc_send_datagram(a.c, pkt, 11);
    /* codec 12 */
    pkt[0] = 12 << 2;
    wzpc_send_datagram(a.c, pkt, 20);
    /* Q flag set but only 15 bytes: no room for the trailer */
    pkt[0] = 0x02;
    wzpc_send_datagram(a.c, pkt, 15);
    for (int i = 0; i < 10; i++)
        tc_send_media(&a, NULL);
    wzpc_run_for(loop, 500);
    cr_assert_eq(b.media_total, 10, "only the 10 valid datagrams reach b");
    cr_assert_eq(b.media_malformed, 0);
    cr_assert_eq(relay_counter(&relay, "datagrams_invalid"), 3);
    tc_free(&a);
    tc_free(&b);
}

/* A receiver whose client takes only small DATAGRAM frames misses the large datagrams,
 * counted, while the others get everything; the bound the relay keeps per receiver is
 * asked again when a larger datagram comes, so the small ones after a large one pass. */
Test(relay, datagrams_too_big_for_one_receiver_are_dropped_for_it_alone)
{
    setup(NULL);
    struct tc a, b, c;
    join(&a, "room", 1);
    struct wzpc_config small = {.sni = "room", .auto_join = true, .max_datagram_frame_size = 300};
    tc_connect(&b, loop, &relay, "room", 2, &small);
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000), "b did not join");
    join(&c, "room", 3);
    for (unsigned i = 0; i < 12; i++) {
        tc_send_media_size(&a, i % 3 == 1 ? 600 : 100); /* 4 large, 8 small */
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 500);
    cr_assert_eq(c.from[1], 12, "a receiver taking large frames gets all 12");
    cr_assert_eq(b.from[1], 8, "b gets the 8 small ones, before and after the large");
    cr_assert_eq(b.media_malformed, 0);
    cr_assert_eq(relay_counter(&relay, "datagrams_too_big_for_path"), 4);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

/* A client's key update (new AEAD keys both ways, header protection keys kept) leaves
 * media flowing in both directions: a sends with the next key phase at once, so b's 30
 * show the relay decrypting it, and a's 30 the relay answering in it. */
/* Also run with WZP_AEAD=gnutls (integration/test_relay_gnutls_aead): the fallback a CPU
 * without AES-NI takes, 1-RTT keys, header protection and key updates all through
 * ngtcp2's helper and GnuTLS's contexts. */
Test(relay, media_flows_both_ways_across_a_key_update)
{
    setup(NULL);
    const char *aead = getenv("WZP_AEAD");
    bool gnutls = aead && strcmp(aead, "gnutls") == 0;
    cr_assert(relay_log_count(&relay, gnutls ? "packet protection: GnuTLS's (WZP_AEAD"
                                             : "packet protection: the relay's own") == 1,
              "the start-up log names the packet protection in use");
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);
    struct tc *both[] = {&a, &b};
    send_round(both, 2, 10);
    wzpc_run_for(loop, 300);
    cr_assert_eq(b.from[1], 10);
    cr_assert_eq(a.from[2], 10);
    cr_assert_eq(wzpc_initiate_key_update(a.c), WZP_OK, "the handshake is confirmed");
    send_round(both, 2, 20);
    wzpc_run_for(loop, 500);
    cr_assert_eq(b.from[1], 30, "a's media after its key update reaches b");
    cr_assert_eq(a.from[2], 30, "and the relay's packets to a decrypt with the new keys");
    tc_free(&a);
    tc_free(&b);
}

static bool has_directive(void *arg)
{
    struct tc *t = arg;
    return t->directives > 0;
}

static void send_reports(struct tc *t, unsigned n, uint8_t loss, uint8_t rtt4)
{
    struct wzp_quality_report r = {loss, rtt4, 0, 200};
    for (unsigned i = 0; i < n; i++) {
        tc_send_media(t, &r);
        wzpc_run_for(loop, 10);
    }
}

Test(relay, quality_directive_on_heavy_loss_then_recovered_on_leave)
{
    setup(NULL);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);
    /* 50 % loss: CATASTROPHIC after 3 consecutive reports */
    send_reports(&a, 2, 128, 5);
    wzpc_run_for(loop, 200);
    cr_assert_eq(b.directives, 0, "2 bad reports are not enough");
    send_reports(&a, 1, 128, 5);
    cr_assert(wzpc_run_until(loop, has_directive, &b, 3000));
    cr_assert(wzpc_run_until(loop, has_directive, &a, 3000), "the reporter is told too");
    cr_assert_str_eq(b.directive_reasons[0], "weakest link: Catastrophic");
    cr_assert_str_eq(a.directive_reasons[0], "weakest link: Catastrophic");

    /* late joiner gets the current directive */
    struct tc c;
    join(&c, "room", 3);
    cr_assert(wzpc_run_until(loop, has_directive, &c, 3000), "late joiner gets the directive");
    cr_assert_str_eq(c.directive_reasons[0], "weakest link: Catastrophic");

    /* the weakest participant leaves: the room recovers */
    wzpc_close(a.c, 0, "hangup");
    cr_assert(tc_wait_updates(&b, loop, 3, 3000));
    wzpc_run_for(loop, 300);
    cr_assert_eq(b.directives, 2);
    cr_assert_str_eq(b.directive_reasons[1], "weakest link: Good");
    cr_assert_eq(c.directives, 2);
    cr_assert_str_eq(c.directive_reasons[1], "weakest link: Good");
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

Test(relay, clean_shutdown_closes_calls_and_exits_zero)
{
    setup(NULL);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "other", 2);
    uint64_t t0 = wzp_now_ns();
    kill(relay.pid, SIGTERM);
    cr_assert(tc_wait_state(&a, loop, WZPC_CLOSED, 2000));
    cr_assert(tc_wait_state(&b, loop, WZPC_CLOSED, 2000));
    bool by_peer, is_app;
    uint64_t code;
    char reason[64];
    cr_assert(wzpc_close_info(a.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && is_app);
    cr_assert_eq(code, 0);
    cr_assert_str_eq(reason, "shutdown");
    int status;
    pid_t p = 0;
    while (p == 0 && wzp_now_ns() - t0 < 2000000000ull) {
        p = waitpid(relay.pid, &status, WNOHANG);
        wzpc_run_for(loop, 10);
    }
    cr_assert_eq(p, relay.pid, "relay exits within 2 s");
    relay.pid = 0;
    relay.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    cr_assert_eq(relay.exit_status, 0);
    tc_free(&a);
    tc_free(&b);
}

static bool got_n(void *arg)
{
    struct tc **p = arg;
    return p[0]->from[p[1]->id] >= 200;
}

Test(relay, slow_receiver_drops_its_own_oldest_and_never_stalls_the_sender)
{
    setup(NULL);
    struct ev_loop *frozen = ev_loop_new(EVFLAG_AUTO);
    struct tc a, b, c;
    join(&a, "room", 1);
    join(&c, "room", 3);
    /* b joins on its own loop, which we then stop running: it reads and ACKs nothing */
    tc_connect(&b, frozen, &relay, "room", 2, NULL);
    cr_assert(tc_wait_state(&b, frozen, WZPC_JOINED, 5000));
    cr_assert(tc_wait_updates(&a, loop, 3, 3000));
    for (int i = 0; i < 200; i++) {
        tc_send_media_size(&a, 1000);
        if (i % 4 == 3)
            wzpc_run_for(loop, 5);
    }
    struct tc *pair[] = {&c, &a};
    cr_assert(wzpc_run_until(loop, got_n, pair, 10000), "c got %u of 200", c.from[1]);
    cr_assert_eq(c.from[1], 200, "the fast receiver gets everything");
    cr_assert_gt(relay_counter(&relay, "datagrams_queue_drops"), 0,
                 "the frozen receiver's queue dropped");
    /* b wakes up: it is still in the room and receives fresh media */
    wzpc_run_for(frozen, 300);
    unsigned before = b.from[1];
    for (int i = 0; i < 20; i++)
        tc_send_media(&a, NULL);
    for (int i = 0; i < 30; i++) {
        wzpc_run_for(loop, 10);
        wzpc_run_for(frozen, 10);
    }
    cr_assert_eq(wzpc_state(b.c), WZPC_JOINED);
    cr_assert_geq(b.from[1] - before, 20, "b receives again after catching up");
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
    ev_loop_destroy(frozen);
}

/* Without room affinity the kernel hashes the 4-tuple, so a rebinding can land on the
 * other worker, which steers the packets to the owner through its ring. */
Test(relay, rebinding_to_another_worker_reaches_the_owner)
{
    static const char *const args[] = {"--threads", "2", "--no-room-affinity", NULL};
    setup(args);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);
    /* Each rebinding picks a new source port; SO_REUSEPORT hashes it to either worker.
     * Keep rebinding until packets are steered (each try has about even odds). */
    bool steered = false;
    for (int attempt = 0; attempt < 24 && !steered; attempt++) {
        cr_assert_eq(wzpc_rebind(a.c), WZP_OK);
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 100);
        steered = relay_counter(&relay, "packets_steered_in") > 0;
    }
    cr_assert(steered, "no packet was ever steered between workers");
    unsigned a0 = a.from[2], b0 = b.from[1];
    for (int i = 0; i < 20; i++) {
        tc_send_media(&a, NULL);
        tc_send_media(&b, NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 500);
    cr_assert_eq(a.from[2] - a0, 20, "b -> a after the move");
    cr_assert_geq(b.from[1] - b0, 20, "a -> b after the move");
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    tc_free(&a);
    tc_free(&b);
}

Test(relay, client_stream_credit_is_renewed)
{
    setup(NULL);
    struct tc a;
    join(&a, "room", 1);
    /* 150 signals: more than the 100 bidi streams the relay grants at first */
    struct wzp_signal ping = {.type = WZP_SIG_PING};
    for (int i = 0; i < 150; i++) {
        ping.u.ping.timestamp_ms = (uint64_t)i;
        cr_assert_eq(wzpc_send_signal(a.c, &ping), WZP_OK);
        if (i % 20 == 19)
            wzpc_run_for(loop, 30);
    }
    for (int i = 0; i < 100 && relay_counter(&relay, "signals_received") < 151; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(relay_counter(&relay, "signals_received"), 151, "CallOffer + 150 pings");
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    tc_free(&a);
}

Test(relay, room_updates_stay_in_order_across_workers)
{
    static const char *const args[] = {"--threads", "2", "--no-room-affinity", NULL};
    setup(args);
    enum { N = 12 };
    static struct tc t[N];
    for (int i = 0; i < N; i++)
        tc_connect(&t[i], loop, &relay, "big", (uint8_t)(i + 1), NULL); /* concurrent joins */
    for (int i = 0; i < N; i++)
        cr_assert(tc_wait_updates(&t[i], loop, 1, 5000));
    wzpc_run_for(loop, 500);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(t[i].update_counts[t[i].room_updates - 1], N, "client %d sees the full room",
                     i);
        for (unsigned k = 1; k < t[i].room_updates; k++)
            cr_assert_gt(t[i].update_counts[k], t[i].update_counts[k - 1],
                         "client %d: update %u has count %u after %u", i, k, t[i].update_counts[k],
                         t[i].update_counts[k - 1]);
    }
    cr_assert_gt(relay_counter(&relay, "packets_steered_out") + 1, 0);
    for (int i = 0; i < N; i++)
        tc_free(&t[i]);
}

/*
 * A join storm: RoomUpdates that have not left yet are replaced by newer ones. Whatever
 * was replaced, every client still sees the room only grow and ends with all N members,
 * and updates received + updates replaced = the N(N+1)/2 the joins produced. The relay is
 * stopped while the CallOffers are sent, so it finds them all waiting and handles many in
 * one loop iteration: replacements must happen.
 */
Test(relay, join_storm_coalesces_room_updates)
{
    static const char *const args[] = {"--threads", "1", NULL};
    setup(args);
    enum { N = 60 };
    static struct tc t[N];
    struct wzpc_config manual = {.sni = "storm", .auto_join = false};
    for (int i = 0; i < N; i++)
        tc_connect(&t[i], loop, &relay, "storm", (uint8_t)(i + 1), &manual);
    for (int i = 0; i < N; i++)
        cr_assert(tc_wait_state(&t[i], loop, WZPC_CONNECTED, 10000), "client %d connected", i);
    cr_assert_eq(kill(relay.pid, SIGSTOP), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(wzpc_join(t[i].c), WZP_OK);
    wzpc_run_for(loop, 100); /* the CallOffers wait in the relay's socket */
    cr_assert_eq(kill(relay.pid, SIGCONT), 0);
    for (int i = 0; i < N; i++)
        cr_assert(tc_wait_state(&t[i], loop, WZPC_JOINED, 10000), "client %d joined", i);
    for (unsigned waited = 0; waited < 5000; waited += 50) {
        int full = 0;
        for (int i = 0; i < N; i++)
            full += t[i].last_update_count == N;
        if (full == N)
            break;
        wzpc_run_for(loop, 50);
    }
    wzpc_run_for(loop, 200);
    uint64_t received = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_leq(t[i].room_updates, TC_MAX_EVENTS);
        cr_assert_eq(t[i].last_update_count, N, "client %d sees the full room", i);
        for (unsigned k = 1; k < t[i].room_updates; k++)
            cr_assert_gt(t[i].update_counts[k], t[i].update_counts[k - 1]);
        received += t[i].room_updates;
    }
    uint64_t coalesced = relay_counter(&relay, "room_updates_coalesced");
    cr_log_info("join storm of %d: %llu RoomUpdates received, %llu replaced", N,
                (unsigned long long)received, (unsigned long long)coalesced);
    cr_assert_eq(received + coalesced, (uint64_t)N * (N + 1) / 2);
    cr_assert_gt(coalesced, 0, "concurrent joins must coalesce some updates");
    for (int i = 0; i < N; i++)
        tc_free(&t[i]);
}

/* An alias is client-controlled text: a newline or an escape sequence in it must not start
 * a forged line in the text log or reach the operator's terminal. */
Test(relay, control_characters_in_an_alias_cannot_forge_log_lines)
{
    setup(NULL);
    struct wzpc_config cfg = {.sni = "room",
                              .auto_join = true,
                              .alias = "eve\n2026-12-06T00:00:00.000Z INFO  room: FORGED\x1b[2J"};
    struct tc t;
    tc_connect(&t, loop, &relay, "room", 1, &cfg);
    cr_assert(tc_wait_state(&t, loop, WZPC_JOINED, 5000));
    cr_assert(
        relay_log_wait(&relay, "eve\\n2026-12-06T00:00:00.000Z INFO  room: FORGED\\x1b[2J", 2000),
        "the alias is logged, escaped");
    cr_assert_eq(relay_log_count(&relay, "\n2026-12-06T00:00:00.000Z INFO  room: FORGED"), 0,
                 "no forged line");
    cr_assert_eq(relay_log_count(&relay, "\x1b"), 0, "no escape character");
    tc_free(&t);
}

Test(relay, a_signal_frame_trickled_after_the_join_times_out, .timeout = 60)
{
    setup(NULL);
    struct tc a, b;
    join(&a, "room", 1);
    join(&b, "room", 2);
    /* b begins a 1000-byte frame after joining and never finishes it */
    static const uint8_t start[] = {0, 0, 0x03, 0xe8, '{', '"'};
    cr_assert_eq(wzpc_send_stream_raw(b.c, start, sizeof start, false), WZP_OK);
    uint64_t t0 = wzp_now_ns();
    for (int i = 0; i < 60 && wzpc_state(b.c) != WZPC_CLOSED; i++) {
        struct tc *pair[] = {&a};
        send_round(pair, 1, 1); /* a keeps talking meanwhile */
        wzpc_run_for(loop, 200);
    }
    double s = (double)(wzp_now_ns() - t0) / 1e9;
    cr_assert_eq(wzpc_state(b.c), WZPC_CLOSED, "closed after %.1f s", s);
    cr_assert(s >= 9.5 && s < 12.5, "at the 10 s frame deadline, not %.1f s", s);
    bool by_peer = false, is_app = false;
    uint64_t code = 1;
    char reason[160] = "";
    cr_assert(wzpc_close_info(b.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert_str_eq(reason, "a signal frame was not completed within 10000 ms");
    cr_assert_eq(relay_counter(&relay, "signal_frame_timeouts"), 1);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED, "the other caller is unaffected");
    tc_free(&a);
    tc_free(&b);
}

Test(relay, the_relay_wide_signal_buffer_is_bounded, .timeout = 120)
{
    /* 40 clients, each part of the way into a 1 MiB frame: together past the relay's
     * 32 MiB bound for buffered incoming signals, so the last ones are refused, while a
     * call in another room goes on. */
    static const char *const args[] = {"--max-sessions", "200", NULL};
    setup(args);
    struct tc a, b;
    join(&a, "calm", 1);
    join(&b, "calm", 2);
    enum { N = 40 };
    static struct tc heavy[N];
    static uint8_t chunk[900 * 1024];
    memset(chunk, ' ', sizeof chunk);
    wzp_put_u32be(chunk, 1u << 20); /* announces 1 MiB; 900 KiB arrive */
    struct wzpc_config raw = {.sni = "heavy"};
    for (int i = 0; i < N; i++) {
        tc_connect(&heavy[i], loop, &relay, "heavy", (uint8_t)(10 + i), &raw);
        cr_assert(tc_wait_state(&heavy[i], loop, WZPC_CONNECTED, 5000));
        cr_assert_eq(wzpc_send_stream_raw(heavy[i].c, chunk, sizeof chunk, false), WZP_OK);
    }
    for (int i = 0; i < 100 && relay_counter(&relay, "signals_relay_full") == 0; i++) {
        struct tc *pair[] = {&a, &b};
        send_round(pair, 2, 1);
        wzpc_run_for(loop, 50);
    }
    uint64_t refused = relay_counter(&relay, "signals_relay_full");
    fprintf(stderr, "signals: %llu of %d heavy senders refused at the relay-wide bound\n",
            (unsigned long long)refused, N);
    cr_assert_gt(refused, 0);
    cr_assert_lt(refused, N, "those under the bound were kept");
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    cr_assert_eq(wzpc_state(b.c), WZPC_JOINED);
    for (int i = 0; i < N; i++)
        tc_free(&heavy[i]);
    tc_free(&a);
    tc_free(&b);
}
