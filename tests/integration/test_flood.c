/*
 * test_flood.c - address validation and per-address limits on the real relay:
 *  - a handshake flood (2 000 real client Initials per second from 300 loopback
 *    addresses that never answer, as spoofed sources) while two bystanders stream in
 *    another room: new clients still join within 3 s, the bystanders lose nothing, and
 *    the relay's handshake slots come back once the flood stops;
 *  - --retry always: a real client joins through a Retry;
 *  - an Initial with a forged Retry token is refused, statelessly;
 *  - the per-address handshake and connection limits, and the Retry that protects an
 *    address at half its handshake limit.
 * Figures of the flood run are printed (stderr) so CI logs show them.
 */
#include "harness.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;

static void teardown(void)
{
    relay_finish_with_loop(&relay, &loop);
}

TestSuite(flood, .fini = teardown, .timeout = 180);

enum { NCAPTURED = 2000, FLOOD_RATE = 2000, FLOOD_MS = 6000, FLOOD_SOURCES = 300 };
static uint8_t captured[NCAPTURED][FLOOD_PKT_MAX];
static size_t captured_len[NCAPTURED];

static double ms_since(uint64_t t0)
{
    return (double)(wzp_now_ns() - t0) / 1e6;
}

Test(flood, clients_join_and_bystanders_lose_nothing_during_a_handshake_flood)
{
    static const char *const args[] = {"--threads", "2", NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    capture_initials("flooded", NCAPTURED, captured, captured_len);

    struct tc a, b;
    tc_connect(&a, loop, &relay, "calm", 1, NULL);
    tc_connect(&b, loop, &relay, "calm", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    for (int i = 0; i < 100 && a.last_update_count < 2; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(a.last_update_count, 2, "both bystanders in the room");

    struct flood *f =
        flood_start(&relay, captured, captured_len, NCAPTURED, FLOOD_RATE, FLOOD_MS, FLOOD_SOURCES);
    uint64_t t0 = wzp_now_ns();
    unsigned sent = 0;
    enum { NJOIN = 4 };
    struct tc joiners[NJOIN];
    double join_ms[NJOIN];
    unsigned joined = 0;
    /* 50 packets/s each way; a new client every second from 1 s into the flood. */
    while (ms_since(t0) < FLOOD_MS + 500) {
        tc_send_media(&a, NULL);
        tc_send_media(&b, NULL);
        sent++;
        if (joined < NJOIN && ms_since(t0) >= 1000.0 * (joined + 1)) {
            char room[16];
            snprintf(room, sizeof room, "late-%u", joined);
            uint64_t tj = wzp_now_ns();
            tc_connect(&joiners[joined], loop, &relay, room, (uint8_t)(10 + joined), NULL);
            /* Wait for it while the bystanders keep streaming. */
            while (wzpc_state(joiners[joined].c) < WZPC_JOINED && ms_since(tj) < 5000) {
                wzpc_run_for(loop, 20);
                tc_send_media(&a, NULL);
                tc_send_media(&b, NULL);
                sent++;
            }
            join_ms[joined] = ms_since(tj);
            cr_assert_eq(wzpc_state(joiners[joined].c), WZPC_JOINED,
                         "client %u joined during the flood", joined);
            joined++;
            continue;
        }
        wzpc_run_for(loop, 20);
    }
    struct flood_stats fs;
    flood_join(f, &fs);
    wzpc_run_for(loop, 500); /* media still in flight */

    uint64_t retries = relay_counter(&relay, "retries_sent");
    uint64_t accepted = relay_counter(&relay, "conns_accepted");
    uint64_t addr_refused = relay_counter(&relay, "conns_refused_addr_handshakes") +
                            relay_counter(&relay, "conns_refused_addr_limit");
    uint64_t hs_refused = relay_counter(&relay, "conns_refused_handshakes");
    fprintf(stderr,
            "flood: %llu Initials sent from %u addresses in %u ms (%llu send errors); relay sent "
            "%llu Retry, accepted %llu connections, dropped %llu at the handshake limit and "
            "%llu at per-address limits; %llu packets (%llu bytes) came back to the flooders\n",
            (unsigned long long)fs.sent, FLOOD_SOURCES, FLOOD_MS,
            (unsigned long long)fs.send_errors, (unsigned long long)retries,
            (unsigned long long)accepted, (unsigned long long)hs_refused,
            (unsigned long long)addr_refused, (unsigned long long)fs.replies,
            (unsigned long long)fs.reply_bytes);
    for (unsigned i = 0; i < NJOIN; i++)
        fprintf(stderr, "flood: client %u joined in %.0f ms\n", i, join_ms[i]);
    fprintf(stderr, "flood: bystanders sent %u each, received %u and %u\n", sent, a.from[2],
            b.from[1]);

    for (unsigned i = 0; i < NJOIN; i++)
        cr_assert_lt(join_ms[i], 3000.0, "client %u joined in %.0f ms", i, join_ms[i]);
    cr_assert_eq(a.from[2], sent, "bystander a lost media: %u of %u", a.from[2], sent);
    cr_assert_eq(b.from[1], sent, "bystander b lost media: %u of %u", b.from[1], sent);
    cr_assert_gt(retries, 0, "the flood was met with Retry");
    cr_assert_lt(fs.reply_bytes, fs.sent * 1200, "the relay never amplified the flood");
    /* The slots the flood took come back: handshakes of connections nobody completes end
     * at the (pressure-shortened) handshake timeout. */
    char scrape[65536];
    double in_progress = -1;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                     200);
        in_progress = scrape_value(scrape, "wzp_relay_handshakes_in_progress");
        if (in_progress == 0)
            break;
        wzpc_run_for(loop, 100);
    }
    cr_assert_eq(in_progress, 0, "handshakes in progress after the flood: %g", in_progress);
    for (unsigned i = 0; i < NJOIN; i++)
        tc_free(&joiners[i]);
    tc_free(&a);
    tc_free(&b);
}

Test(flood, retry_always_validates_every_new_client)
{
    static const char *const args[] = {"--retry", "always", NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc a;
    tc_connect(&a, loop, &relay, "room", 1, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert_eq(relay_counter(&relay, "retries_sent"), 1);
    cr_assert_geq(relay_counter(&relay, "retry_tokens_valid"), 1);
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 1);
    cr_assert(relay_log_wait(&relay, "address validated", 1000));
    tc_free(&a);
}

/* Send pkt from fd to the relay; return the first reply within ms (its length, or -1). */
static ssize_t exchange(int fd, const uint8_t *pkt, size_t len, uint8_t *reply, size_t cap, int ms)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(relay.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(sendto(fd, pkt, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return -1;
    return recv(fd, reply, cap, 0);
}

static int bound_socket(const char *ip)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send captured Initials [first, first + count) from fd, waiting up to ms for each answer. */
static void replay(int fd, size_t first, size_t count, int ms)
{
    uint8_t reply[1500];
    for (size_t i = first; i < first + count; i++)
        exchange(fd, captured[i], captured_len[i], reply, sizeof reply, ms);
}

Test(flood, a_forged_retry_token_is_refused_without_state)
{
    relay_start(&relay, NULL);
    capture_initials("room", 1, captured, captured_len);
    /* Put a token that looks like ours (magic byte first) into the Initial's header:
     * the token length varint (0) sits after the two connection IDs. */
    uint8_t *p = captured[0];
    size_t off = 6 + p[5];
    off += 1 + p[off];
    cr_assert_eq(p[off], 0, "the captured Initial carries no token");
    uint8_t forged[FLOOD_PKT_MAX];
    memcpy(forged, p, off);
    forged[off] = 40; /* one-byte varint */
    forged[off + 1] = 0xb6;
    memset(forged + off + 2, 0x5a, 39);
    memcpy(forged + off + 41, p + off + 1, captured_len[0] - off - 1);
    int fd = bound_socket("127.0.0.1");
    uint8_t reply[1500];
    ssize_t n = exchange(fd, forged, captured_len[0] + 40, reply, sizeof reply, 1000);
    cr_assert_gt(n, 0, "the refusal is answered");
    cr_assert_eq(reply[0] & 0xf0, 0xc0, "an Initial (carrying CONNECTION_CLOSE)");
    cr_assert_lt(n, 1200, "smaller than what caused it");
    cr_assert_eq(relay_counter(&relay, "retry_tokens_invalid"), 1);
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 0);
    close(fd);
}

Test(flood, per_address_handshake_limit)
{
    /* Retry off: the limit itself. 3 Initials from one address, limit 2. */
    static const char *const args[] = {"--retry", "off", "--max-handshakes-per-addr", "2", NULL};
    relay_start(&relay, args);
    capture_initials("room", 4, captured, captured_len);
    int fd = bound_socket("127.0.0.1");
    replay(fd, 0, 3, 200);
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 2);
    cr_assert_eq(relay_counter(&relay, "conns_refused_addr_handshakes"), 1);
    cr_assert(relay_log_wait(&relay, "over per-address limits", 1000), "one pressure line");
    /* Another address is not affected. */
    int other = bound_socket("127.0.0.2");
    replay(other, 3, 1, 200);
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 3);
    close(fd);
    close(other);
}

Test(flood, an_address_at_half_its_limit_must_prove_itself)
{
    /* Retry auto, 4 handshakes per address: from the third one on (half the limit held),
     * an Initial without a token gets a Retry, not a connection. */
    static const char *const args[] = {"--max-handshakes-per-addr", "4", NULL};
    relay_start(&relay, args);
    capture_initials("room", 3, captured, captured_len);
    int fd = bound_socket("127.0.0.1");
    replay(fd, 0, 2, 200);
    uint8_t reply[1500];
    ssize_t n = exchange(fd, captured[2], captured_len[2], reply, sizeof reply, 1000);
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 2);
    cr_assert_eq(relay_counter(&relay, "retries_sent"), 1);
    cr_assert_gt(n, 0);
    cr_assert_eq(reply[0] & 0xf0, 0xf0, "the answer is a Retry (long header, type 3)");
    close(fd);
}

Test(flood, per_address_connection_limit)
{
    static const char *const args[] = {"--max-connections-per-addr", "2", NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc c[4];
    tc_connect(&c[0], loop, &relay, "room", 1, NULL);
    tc_connect(&c[1], loop, &relay, "room", 2, NULL);
    cr_assert(tc_wait_state(&c[0], loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&c[1], loop, WZPC_JOINED, 5000));
    /* A third is refused at once, with a reason, not left to retry. */
    tc_connect(&c[2], loop, &relay, "room", 3, NULL);
    cr_assert(tc_wait_state(&c[2], loop, WZPC_CLOSED, 2000), "refused at once");
    bool by_peer = false, is_app = true;
    uint64_t code = 0;
    char reason[128] = "";
    cr_assert(wzpc_close_info(c[2].c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && !is_app);
    cr_assert_eq(code, 0x2, "CONNECTION_REFUSED");
    cr_assert_str_eq(reason, "too many connections from this address");
    cr_assert_eq(relay_counter(&relay, "conns_refused_addr_limit"), 1);
    /* Once one leaves (and its closing period ends), the next is let in. */
    wzpc_close(c[0].c, 0, "bye");
    for (int i = 0; i < 100 && relay_counter(&relay, "conns_closed") < 1; i++)
        wzpc_run_for(loop, 50);
    cr_assert_eq(relay_counter(&relay, "conns_closed"), 1);
    tc_connect(&c[3], loop, &relay, "room", 4, NULL);
    cr_assert(tc_wait_state(&c[3], loop, WZPC_JOINED, 5000), "let in once one left");
    tc_free(&c[0]);
    tc_free(&c[1]);
    tc_free(&c[2]);
    tc_free(&c[3]);
}

Test(flood, under_pressure_a_first_flight_gets_less_time)
{
    /* --max-handshakes 8: pressure from 2 handshakes in progress. Of 6 handshakes nobody
     * completes, the first 2 keep the full 10 s, the 4 started under pressure end after
     * about 3 s. */
    static const char *const args[] = {"--max-handshakes",          "8", "--retry", "off",
                                       "--max-handshakes-per-addr", "0", NULL};
    relay_start(&relay, args);
    capture_initials("room", 6, captured, captured_len);
    int fd = bound_socket("127.0.0.1");
    replay(fd, 0, 6, 100);
    close(fd); /* nobody answers the relay */
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 6);
    char scrape[65536];
    usleep(5000 * 1000);
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                 200);
    cr_assert_eq(scrape_value(scrape, "wzp_relay_handshakes_in_progress"), 2);
    cr_assert_eq(relay_counter(&relay, "handshake_failures"), 4);
}

/* A worker that falls behind (here: the whole relay stopped) leaves the kernel to drop
 * what its receive buffer cannot hold. The kernel reports its count with the next packet
 * it queues; the relay counts the drops and says so in its log, so every packet sent is
 * accounted for: read (here: refused as undecodable) or dropped at the socket. */
Test(flood, packets_the_kernel_drops_for_a_stalled_worker_are_counted)
{
    static const char *const args[] = {"--threads", "1", NULL};
    relay_start(&relay, args);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(relay.port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    /* a long header whose DCID length (255) no QUIC version allows: dropped, unanswered */
    uint8_t junk[1200] = {0xc0, 0, 0, 0, 1, 0xff};
    uint64_t undecodable0 = relay_counter(&relay, "packets_undecodable");
    cr_assert_eq(kill(relay.pid, SIGSTOP), 0);
    enum { BURST = 20000, AFTER = 10 };
    unsigned sent = 0;
    for (unsigned i = 0; i < BURST; i++)
        sent += send(fd, junk, sizeof junk, 0) == (ssize_t)sizeof junk;
    cr_assert_eq(kill(relay.pid, SIGCONT), 0);
    poll(NULL, 0, 300);                  /* the worker drains its buffer */
    for (unsigned i = 0; i < AFTER; i++) /* these carry the kernel's count */
        sent += send(fd, junk, sizeof junk, 0) == (ssize_t)sizeof junk;
    close(fd);
    uint64_t dropped = 0, read = 0;
    for (int i = 0; i < 100; i++) {
        dropped = relay_counter(&relay, "packets_socket_overflow");
        read = relay_counter(&relay, "packets_undecodable") - undecodable0;
        if (dropped + read == sent)
            break;
        poll(NULL, 0, 20);
    }
    cr_log_info("stalled worker: %u sent, %llu read, %llu dropped by the kernel", sent,
                (unsigned long long)read, (unsigned long long)dropped);
    cr_assert_gt(dropped, 0, "a 4 MiB buffer cannot hold %u packets of 1200 bytes", BURST);
    cr_assert_eq(dropped + read, sent, "every packet is read or counted as dropped");
    cr_assert(relay_log_wait(&relay, "receive buffer was full", 2000));
}
