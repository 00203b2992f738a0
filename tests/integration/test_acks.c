/*
 * test_acks.c - integration: the relay's acknowledgements ride on the datagrams it sends
 * (--ack-delay). Clients acknowledge every packet at once, as quinn does. Two clients who
 * both speak: each client's media is acknowledged in the packet carrying the other's
 * next datagram, so the relay sends about one packet per forwarded datagram; with
 * --ack-delay 0 it also sends an ACK-only packet for nearly every media packet. A
 * client whose room is silent still gets its ACKs, after about --ack-delay, and with
 * the default wait one ACK covers two of its media packets. With --poll-every the
 * worker reads packets that arrive spread out in fewer socket reads and loses none.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>

#define ROUNDS 60

static struct ev_loop *loop;
static struct relay_proc relay;

static void stop_relay(void)
{
    relay_finish_with_loop(&relay, &loop);
}

TestSuite(acks, .fini = stop_relay, .timeout = 90);

static void join(struct tc *t, const char *room, uint8_t id)
{
    struct wzpc_config cfg = {.sni = room, .auto_join = true, .ack_every_packet = true};
    tc_connect(t, loop, &relay, room, id, &cfg);
    cr_assert(tc_wait_state(t, loop, WZPC_JOINED, 5000), "client %u did not join", id);
}

/* A relay started with "--FLAG VALUE" (flag NULL: the defaults), and two clients joined
 * to room, settled. */
static void start_pair(const char *flag, const char *value, const char *room, struct tc *a,
                       struct tc *b)
{
    const char *const args[] = {flag, flag ? value : NULL, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    join(a, room, 1);
    join(b, room, 2);
    cr_assert(tc_wait_updates(a, loop, 2, 3000), "a did not see b join");
    wzpc_run_for(loop, 200); /* handshake leftovers (HANDSHAKE_DONE, tokens) are sent */
}

/* Relay packets sent per datagram forwarded while two speakers alternate 5 ms apart. */
static double packets_per_forwarded(const char *ack_delay)
{
    struct tc a, b;
    start_pair("--ack-delay", ack_delay, "acks", &a, &b);

    uint64_t tx0 = relay_counter(&relay, "udp_tx_packets");
    uint64_t fwd0 = relay_counter(&relay, "datagrams_forwarded");
    for (unsigned i = 0; i < ROUNDS; i++) {
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 5);
        tc_send_media(&b, NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 300);
    uint64_t tx = relay_counter(&relay, "udp_tx_packets") - tx0;
    uint64_t fwd = relay_counter(&relay, "datagrams_forwarded") - fwd0;
    cr_log_info("--ack-delay %s: %llu packets for %llu forwarded datagrams", ack_delay,
                (unsigned long long)tx, (unsigned long long)fwd);
    cr_expect_eq(a.from[2], ROUNDS, "a got %u of b's %u datagrams", a.from[2], ROUNDS);
    cr_expect_eq(b.from[1], ROUNDS, "b got %u of a's %u datagrams", b.from[1], ROUNDS);
    cr_assert_eq(fwd, 2 * ROUNDS);
    tc_free(&a);
    tc_free(&b);
    return (double)tx / (double)fwd;
}

Test(acks, ride_on_datagrams)
{
    double r = packets_per_forwarded("10");
    cr_expect_leq(r, 1.25, "%.2f packets per forwarded datagram: ACKs did not ride along", r);
}

Test(acks, without_the_wait_every_media_packet_costs_an_ack)
{
    double r = packets_per_forwarded("0");
    cr_expect_geq(r, 1.5, "%.2f packets per forwarded datagram with --ack-delay 0", r);
}

/* a speaks into a room where b never does: nothing goes back to a for its ACKs to ride
 * on, so each waits the full --ack-delay and then leaves on its own. */
Test(acks, wait_no_longer_than_the_ack_delay)
{
    struct tc a, b;
    start_pair("--ack-delay", "6", "quiet", &a, &b);
    unsigned held = 0;
    for (unsigned i = 0; i < 20; i++) {
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 60);
        uint64_t rtt_ms = wzpc_latest_rtt_ns(a.c) / 1000000;
        cr_expect_leq(rtt_ms, 6 + 40, "an ACK took %llu ms", (unsigned long long)rtt_ms);
        held += rtt_ms >= 5;
    }
    /* Loopback round trips are well below a millisecond: the samples show the wait. */
    cr_expect_geq(held, 15, "only %u of 20 ACKs waited about --ack-delay", held);
    cr_expect_eq(b.from[1], 20);
    cr_expect_eq(wzpc_state(a.c), WZPC_JOINED);
    tc_free(&a);
    tc_free(&b);
}

/* Relay packets other than forwarded datagrams (ACK-only packets, nearly all to a) while a
 * speaks every 15 ms into a room where b never does; flag NULL: the defaults. */
static double lone_speaker_acks_per_packet(const char *flag, const char *value)
{
    struct tc a, b;
    start_pair(flag, value, "lone", &a, &b);
    uint64_t tx0 = relay_counter(&relay, "udp_tx_packets");
    uint64_t fwd0 = relay_counter(&relay, "datagrams_forwarded");
    for (unsigned i = 0; i < ROUNDS; i++) {
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 15);
    }
    wzpc_run_for(loop, 100);
    uint64_t tx = relay_counter(&relay, "udp_tx_packets") - tx0;
    uint64_t fwd = relay_counter(&relay, "datagrams_forwarded") - fwd0;
    cr_assert_eq(fwd, ROUNDS);
    cr_expect_eq(b.from[1], ROUNDS);
    tc_free(&a);
    tc_free(&b);
    double r = (double)(tx - fwd) / ROUNDS;
    cr_log_info("lone speaker, %s %s: %.2f packets besides datagrams per media packet",
                flag ? flag : "defaults", flag ? value : "", r);
    return r;
}

/* A speaker whose listeners are silent (the usual case in a call: one talks at a time)
 * has no datagrams for its ACKs to ride on. With the default wait (20 ms) one ACK-only
 * packet covers two media packets 15 ms apart; with 10 ms each gets its own. */
Test(acks, a_lone_speaker_gets_one_ack_for_two_packets)
{
    double r = lone_speaker_acks_per_packet(NULL, NULL);
    cr_expect_leq(r, 0.7, "%.2f ACK-only packets per media packet with the default wait", r);
}

Test(acks, a_lone_speaker_gets_an_ack_per_packet_with_a_10_ms_wait)
{
    double r = lone_speaker_acks_per_packet("--ack-delay", "10");
    cr_expect_geq(r, 0.85, "%.2f ACK-only packets per media packet with --ack-delay 10", r);
}

/* --coalesce: datagrams to one client a few ms apart share packets, and every one
 * arrives. */
Test(acks, coalesce_packs_a_burst)
{
    struct tc a, b;
    start_pair("--coalesce", "10", "burst", &a, &b);
    uint64_t tx0 = relay_counter(&relay, "udp_tx_packets");
    for (unsigned round = 0; round < 5; round++) {
        for (unsigned i = 0; i < 4; i++) { /* 4 x 112 bytes 2 ms apart: below a packet */
            tc_send_media(&a, NULL);
            wzpc_run_for(loop, 2);
        }
        wzpc_run_for(loop, 60); /* window 10 ms, and a's ACK's 10 ms */
        cr_expect_eq(b.from[1], 4 * (round + 1), "round %u: b got %u", round, b.from[1]);
    }
    uint64_t tx = relay_counter(&relay, "udp_tx_packets") - tx0;
    /* Without the window: 20 packets to b and 5 ACK-only packets to a (25-30 measured).
     * With it: one packet per burst to b plus a's ACK (10-11 measured); a slow build
     * (sanitizers) may split a burst, so allow two packets per burst to b. */
    cr_log_info("--coalesce 10: %llu packets for 5 bursts of 4", (unsigned long long)tx);
    cr_expect_leq(tx, 15, "%llu packets for 5 bursts of 4", (unsigned long long)tx);
    tc_free(&a);
    tc_free(&b);
}

/* Socket reads while a speaks every millisecond for 200 ms and b acknowledges each
 * datagram at once, with --poll-every us; *ms: how long that took. */
static uint64_t reads_while_speaking(const char *us, double *ms)
{
    struct tc a, b;
    start_pair("--poll-every", us, "poll", &a, &b);
    uint64_t reads0 = relay_counter(&relay, "udp_rx_batches");
    double t0 = ev_time();
    for (unsigned i = 0; i < 200; i++) {
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 1);
    }
    *ms = (ev_time() - t0) * 1e3;
    wzpc_run_for(loop, 100);
    uint64_t reads = relay_counter(&relay, "udp_rx_batches") - reads0;
    cr_expect_eq(b.from[1], 200, "b got %u of 200 datagrams", b.from[1]);
    cr_log_info("--poll-every %s: %llu socket reads in %.0f ms", us, (unsigned long long)reads,
                *ms);
    tc_free(&a);
    tc_free(&b);
    relay_finish_with_loop(&relay, &loop);
    return reads;
}

/* --poll-every 5000: the worker reads its socket at most every 5 ms however the packets
 * are spaced (a timer falling due sooner, here the ACK waits, ends a sleep early), and
 * loses none of them; with 0 it reads them as they come. */
Test(acks, poll_every_reads_packets_together)
{
    double ms, ms_moderated;
    uint64_t reads = reads_while_speaking("0", &ms);
    uint64_t moderated = reads_while_speaking("5000", &ms_moderated);
    /* the window and 100 ms of settling, at one read per 5 ms, half as many again for
     * reads after a timer (75-95 measured for 350 ms, against 400 with 0) */
    double bound = (ms_moderated + 100) / 5 * 1.5 + 10;
    cr_expect_leq((double)moderated, bound, "%llu reads in %.0f ms with --poll-every 5000",
                  (unsigned long long)moderated, ms_moderated);
    cr_expect_geq(reads, 3 * moderated, "%llu reads without, %llu with --poll-every",
                  (unsigned long long)reads, (unsigned long long)moderated);
}
