/*
 * test_endpoint.c - integration tests of the QUIC endpoint below the WZP layer: version
 * negotiation, stateless reset, the handshake bound, start-up errors, and IPv6 next to
 * IPv4 on one socket.
 */
#include "harness.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(endpoint, .fini = stop_relay, .timeout = 90);

/* Send one UDP datagram to the relay and wait up to 1 s for an answer. */
static ssize_t udp_exchange(const uint8_t *pkt, size_t len, uint8_t *reply, size_t replylen)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(relay.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(sendto(fd, pkt, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n = -1;
    if (poll(&p, 1, 1000) == 1)
        n = recv(fd, reply, replylen, 0);
    close(fd);
    return n;
}

Test(endpoint, unknown_version_gets_version_negotiation)
{
    relay_start(&relay, NULL);
    uint8_t pkt[1200] = {0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8, 1, 2, 3, 4, 5, 6,
                         7,    8,    8,    9,    9,    9, 9, 9, 9, 9, 9};
    uint8_t reply[1500];
    ssize_t n = udp_exchange(pkt, sizeof pkt, reply, sizeof reply);
    cr_assert_gt(n, 0, "an answer");
    cr_assert(reply[0] & 0x80, "long header");
    cr_assert_eq(wzp_get_u32be(reply + 1), 0, "version 0 = Version Negotiation");
    /* DCID of the reply = the client's SCID and vice versa */
    cr_assert_eq(reply[5], 8);
    cr_assert_eq(reply[6], 9);
    cr_assert_eq(reply[14], 8);
    cr_assert_eq(reply[15], 1);
    bool has_v1 = false;
    for (ssize_t off = 23; off + 4 <= n; off += 4)
        has_v1 |= wzp_get_u32be(reply + off) == 1;
    cr_assert(has_v1, "QUIC v1 is offered");
    cr_assert_eq(relay_counter(&relay, "version_negotiations"), 1);
}

Test(endpoint, version_negotiation_is_rate_limited)
{
    /* Spoofed sources could aim Version Negotiations at a victim: 100 per second and
     * worker at most, the rest counted. */
    static const char *const args[] = {"--threads", "1", NULL};
    relay_start(&relay, args);
    uint8_t pkt[1200] = {0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8, 1, 2, 3, 4, 5, 6,
                         7,    8,    8,    9,    9,    9, 9, 9, 9, 9, 9};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(relay.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint64_t t0 = wzp_now_ns();
    for (int i = 0; i < 300; i++)
        cr_assert_eq(sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to),
                     (ssize_t)sizeof pkt);
    uint64_t sent_ms = (wzp_now_ns() - t0) / 1000000;
    close(fd);
    uint64_t vn = 0, limited = 0;
    for (int i = 0; i < 50 && vn + limited < 300; i++) {
        usleep(20000);
        vn = relay_counter(&relay, "version_negotiations");
        limited = relay_counter(&relay, "replies_rate_limited");
    }
    cr_assert_geq(vn + limited, 200, "most reached the relay");
    cr_assert_gt(limited, 0);
    if (sent_ms < 900) /* all within one window */
        cr_assert_leq(vn, 100, "%llu answered", (unsigned long long)vn);
}

Test(endpoint, unknown_short_header_gets_stateless_reset)
{
    relay_start(&relay, NULL);
    uint8_t pkt[80];
    memset(pkt, 0x5a, sizeof pkt);
    pkt[0] = 0x41;
    pkt[1] = 0; /* DCID byte 0 names worker 0, which does not know this CID */
    uint8_t reply[1500];
    ssize_t n = udp_exchange(pkt, sizeof pkt, reply, sizeof reply);
    cr_assert_gt(n, 0, "an answer");
    cr_assert_lt(n, (ssize_t)sizeof pkt, "smaller than the packet that triggered it");
    cr_assert_geq(n, 21, "long enough to be a stateless reset");
    cr_assert_eq(reply[0] & 0xc0, 0x40, "looks like a short-header packet");
    cr_assert_eq(relay_counter(&relay, "stateless_resets"), 1);
    /* too small to answer without risking a loop: silence */
    n = udp_exchange(pkt, 21, reply, sizeof reply);
    cr_assert_eq(n, -1);
}

Test(endpoint, garbage_udp_is_ignored)
{
    relay_start(&relay, NULL);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc a;
    tc_connect(&a, loop, &relay, "room", 1, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    uint8_t junk[3] = {0x00, 0x01, 0x02};
    uint8_t reply[64];
    cr_assert_eq(udp_exchange(junk, sizeof junk, reply, sizeof reply), -1, "no answer");
    cr_assert_eq(relay_counter(&relay, "packets_undecodable"), 1);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED, "other calls unaffected");
    tc_free(&a);
}

/* A client Initial of 1200 bytes: DCID of dcidlen bytes, 8-byte SCID, then a token of
 * tokenlen bytes ("TOKENTOK..."), the rest random. */
static size_t craft_initial(uint8_t *pkt, size_t dcidlen, size_t tokenlen)
{
    size_t off = 0;
    pkt[off++] = 0xc3;
    wzp_put_u32be(pkt + off, 1);
    off += 4;
    pkt[off++] = (uint8_t)dcidlen;
    for (size_t i = 0; i < dcidlen; i++)
        pkt[off++] = (uint8_t)(0xd0 + i);
    pkt[off++] = 8;
    memcpy(pkt + off, "SCIDSCID", 8);
    off += 8;
    pkt[off++] = (uint8_t)tokenlen;
    for (size_t i = 0; i < tokenlen; i++)
        pkt[off++] = (uint8_t) "TOKENTOK"[i % 8];
    wzp_put_u16be(pkt + off, (uint16_t)(0x4000 | (1200 - off - 2)));
    off += 2;
    for (; off < 1200; off++)
        pkt[off] = (uint8_t)rand();
    return 1200;
}

static void send_udp(const uint8_t *pkt, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(relay.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(sendto(fd, pkt, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
    close(fd);
}

/* Regression: an Initial with a token and an empty DCID once left a CID table entry
 * pointing at a freed connection; the next long-header packet with an empty DCID found it
 * (heap use-after-free, exit 139). Now such Initials never get a connection. */
Test(endpoint, spoofed_initials_with_short_dcid_or_token_are_dropped)
{
    static const char *const args[] = {"--threads", "2", NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc a, b;
    tc_connect(&a, loop, &relay, "room", 1, NULL);
    tc_connect(&b, loop, &relay, "room", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    uint8_t pkt[1200];
    for (int round = 0; round < 3; round++) {
        send_udp(pkt, craft_initial(pkt, 0, 8)); /* token, empty DCID */
        wzpc_run_for(loop, 50);
        send_udp(pkt, craft_initial(pkt, 0, 0)); /* then any packet with an empty DCID */
        send_udp(pkt, craft_initial(pkt, 4, 8)); /* token, 4-byte DCID */
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 50);
    }
    send_udp(pkt, craft_initial(pkt, 8, 8)); /* a token on a normal DCID */
    wzpc_run_for(loop, 200);
    cr_assert_eq(relay_counter(&relay, "initials_short_dcid"), 6);
    cr_assert_eq(relay_counter(&relay, "initials_token_refused"), 1);
    cr_assert_eq(relay_counter(&relay, "conns_accepted"), 2, "only the two clients");
    cr_assert_eq(b.from[1], 3, "the call went on");
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED);
    tc_free(&a);
    tc_free(&b);
}

/* A real client Initial, captured on a socket of ours: replayed to the relay, it opens a
 * handshake that nobody ever completes. */
static void replay_one_initial(void)
{
    static uint8_t initial[1][FLOOD_PKT_MAX];
    size_t len;
    capture_initials("room", 1, initial, &len);
    int fake = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(relay.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(sendto(fake, initial[0], len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
    close(fake); /* the relay's answers go nowhere: its handshake stays open */
}

Test(endpoint, handshakes_in_progress_are_bounded)
{
    static const char *const args[] = {"--max-handshakes", "1", NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    replay_one_initial();
    cr_assert(relay_log_wait(&relay, "new connection", 1000));
    struct tc second;
    tc_connect(&second, loop, &relay, "room", 2, NULL);
    cr_assert_not(tc_wait_state(&second, loop, WZPC_JOINED, 1000),
                  "the second handshake waits while the first holds the only slot");
    cr_assert_gt(relay_counter(&relay, "conns_refused_handshakes"), 0);
    tc_free(&second);
}

Test(endpoint, corrupt_identity_is_a_clear_startup_error)
{
    int rc = relay_run_to_exit(&relay, "hello\n", NULL, 5000);
    cr_assert_neq(rc, 0);
    cr_assert(relay_log_count(&relay, "corrupt") > 0, "the error says the file is corrupt");
    char path[300];
    snprintf(path, sizeof path, "%s/identity", relay.dir);
    FILE *f = fopen(path, "r");
    char buf[16] = "";
    cr_assert(fgets(buf, sizeof buf, f));
    fclose(f);
    cr_assert_str_eq(buf, "hello\n", "the file is left as it was");
}

static void read_first_line(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert(fgets(out, (int)outlen, f));
    fclose(f);
}

/* The "tls certificate fingerprint xx:..." part of a relay log. */
static void log_fingerprint(struct relay_proc *r, char *out, size_t outlen)
{
    FILE *f = fopen(r->log_path, "r");
    char line[512];
    out[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "tls certificate fingerprint");
        if (p)
            snprintf(out, outlen, "%s", p);
    }
    fclose(f);
    cr_assert_neq(out[0], '\0');
}

Test(endpoint, identity_is_stable_across_restarts)
{
    char seed[128], fp1[256], fp2[256], id_path[300];
    relay_start(&relay, NULL);
    cr_assert_eq(relay_stop(&relay, 3000), 0);
    log_fingerprint(&relay, fp1, sizeof fp1);
    snprintf(id_path, sizeof id_path, "%s/identity", relay.dir);
    read_first_line(id_path, seed, sizeof seed);
    cr_assert_eq(strlen(seed), 65, "64 hex digits and a newline");

    relay_start_with_identity(&relay, seed, NULL);
    cr_assert_eq(relay_stop(&relay, 3000), 0);
    log_fingerprint(&relay, fp2, sizeof fp2);
    cr_assert_str_eq(fp1, fp2, "same seed, same certificate");

    relay_start(&relay, NULL); /* a fresh seed */
    cr_assert_eq(relay_stop(&relay, 3000), 0);
    log_fingerprint(&relay, fp2, sizeof fp2);
    cr_assert_str_neq(fp1, fp2);
}

Test(endpoint, bad_flags_are_usage_errors)
{
    static const char *const args[] = {"--threads", "zero", NULL};
    int rc = relay_run_to_exit(&relay, NULL, args, 5000);
    cr_assert_eq(rc, 2);
    cr_assert(relay_log_count(&relay, "--threads expects a number") > 0);
}

Test(endpoint, second_relay_on_the_same_port_refuses_to_start)
{
    relay_start(&relay, NULL);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", relay.port);
    const char *const args[] = {"--listen", listen, NULL};
    struct relay_proc second;
    int rc = relay_run_to_exit(&second, NULL, args, 5000);
    cr_assert_eq(rc, 1, "SO_REUSEPORT must not let a second relay share the port");
    cr_assert(relay_log_count(&second, "Address already in use") > 0);
}

/* A UDP port free on every address, IPv6 and IPv4 alike; 0 when this machine has no IPv6
 * (some containers turn it off). */
static uint16_t free_dual_stack_port(void)
{
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0)
        return 0;
    int off = 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) == 0 &&
        bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin6_port);
    close(fd);
    return port;
}

/* On [::] the relay takes IPv6 clients and IPv4 ones (as mapped addresses) on one socket:
 * one of each joins a room and both hear each other. */
Test(endpoint, ipv6_and_ipv4_clients_share_a_room_on_a_dual_stack_socket)
{
    uint16_t port = free_dual_stack_port();
    if (port == 0)
        cr_skip_test("no IPv6 on this machine");
    char listen[32];
    snprintf(listen, sizeof listen, "[::]:%u", port);
    const char *const args[] = {"--listen", listen, NULL};
    relay_start(&relay, args);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc v6, v4;
    struct wzpc_config c6 = {.host = "::1", .port = port, .sni = "both", .auto_join = true};
    struct wzpc_config c4 = {.host = "127.0.0.1", .port = port, .sni = "both", .auto_join = true};
    tc_connect(&v6, loop, &relay, "both", 1, &c6);
    cr_assert(tc_wait_state(&v6, loop, WZPC_JOINED, 5000), "the IPv6 client did not join");
    tc_connect(&v4, loop, &relay, "both", 2, &c4);
    cr_assert(tc_wait_state(&v4, loop, WZPC_JOINED, 5000), "the IPv4 client did not join");
    cr_assert(tc_wait_updates(&v6, loop, 2, 3000), "the IPv6 client did not see the other");
    for (unsigned i = 0; i < 10; i++) {
        tc_send_media(&v6, NULL);
        tc_send_media(&v4, NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 200);
    cr_expect_eq(v4.from[1], 10, "the IPv4 client got %u of 10", v4.from[1]);
    cr_expect_eq(v6.from[2], 10, "the IPv6 client got %u of 10", v6.from[2]);
    tc_free(&v6);
    tc_free(&v4);
    ev_loop_destroy(loop);
    loop = NULL;
}
