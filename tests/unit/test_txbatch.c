/*
 * test_txbatch.c - the worker's transmit batch: which packets become segments of one UDP
 * GSO message (pure decisions, no socket), then real sends on loopback sockets: every
 * packet arrives as its own datagram with its bytes, GSO is counted, and a socket that
 * refuses GSO (SO_NO_CHECK makes the kernel answer EINVAL) falls back to one packet per
 * message without losing any.
 */
#include "txbatch.h"
#include "worker.h" /* the worker's tx_buf/commit/flush over its batch */

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

static struct wzp_txbatch *new_batch(bool gso)
{
    struct wzp_txbatch *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    wzp_txbatch_init(b, gso);
    return b;
}

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

/* Write a packet of len bytes (content derived from tag) at the tail and commit it. */
static bool put(struct wzp_txbatch *b, size_t len, const void *to, socklen_t tolen, unsigned tag)
{
    cr_assert(!wzp_txbatch_full(b), "batch full before packet %u", tag);
    uint8_t *p = wzp_txbatch_tail(b);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(tag * 31u + i);
    return wzp_txbatch_commit(b, len, (const struct sockaddr *)to, tolen);
}

static uint16_t cmsg_segment(const struct wzp_txbatch *b, unsigned i)
{
    const struct msghdr *h = &b->msgs[i].msg_hdr;
    cr_assert_not_null(h->msg_control, "message %u has no UDP_SEGMENT", i);
    const struct cmsghdr *cm = CMSG_FIRSTHDR(h);
    cr_assert_not_null(cm);
    cr_assert_eq(cm->cmsg_level, SOL_UDP);
    cr_assert_eq(cm->cmsg_type, UDP_SEGMENT);
    cr_assert_eq(cm->cmsg_len, CMSG_LEN(sizeof(uint16_t)));
    uint16_t v;
    memcpy(&v, CMSG_DATA(cm), sizeof v);
    return v;
}

/* ------------------------------------------------------------ decisions, no socket */

Test(txbatch, same_destination_equal_sizes_coalesce)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    cr_assert_not(put(b, 1000, &a, sizeof a, 0), "the first packet starts a message");
    cr_assert(put(b, 1000, &a, sizeof a, 1));
    cr_assert(put(b, 1000, &a, sizeof a, 2));
    cr_assert_eq(b->nmsgs, 1);
    cr_assert_eq(b->nseg[0], 3);
    cr_assert_eq(b->seg[0], 1000);
    cr_assert_eq(b->iov[0].iov_len, 3000);
    cr_assert_eq(b->iov[0].iov_base, b->arena, "the segments are contiguous from the start");
    cr_assert_eq(b->used, 3000);
    cr_assert_eq(cmsg_segment(b, 0), 1000);
    free(b);
}

Test(txbatch, single_segment_message_has_no_cmsg)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000), c = v4("10.0.0.2", 5000);
    put(b, 500, &a, sizeof a, 0);
    put(b, 500, &c, sizeof c, 1);
    cr_assert_eq(b->nmsgs, 2);
    for (unsigned i = 0; i < 2; i++) {
        cr_assert_null(b->msgs[i].msg_hdr.msg_control);
        cr_assert_eq(b->msgs[i].msg_hdr.msg_controllen, 0);
    }
    free(b);
}

Test(txbatch, different_destination_starts_a_message)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000), port = v4("10.0.0.1", 5001),
                       host = v4("10.0.0.2", 5000);
    put(b, 800, &a, sizeof a, 0);
    cr_assert_not(wzp_txbatch_can_append(b, 800, (struct sockaddr *)&port, sizeof port));
    cr_assert_not(wzp_txbatch_can_append(b, 800, (struct sockaddr *)&host, sizeof host));
    cr_assert(wzp_txbatch_can_append(b, 800, (struct sockaddr *)&a, sizeof a));
    cr_assert_not(put(b, 800, &port, sizeof port, 1));
    cr_assert_not(put(b, 800, &a, sizeof a, 2), "not the last message any more");
    cr_assert_eq(b->nmsgs, 3);

    /* IPv6: same address and port coalesce, another scope id does not */
    struct sockaddr_in6 x = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
    inet_pton(AF_INET6, "fe80::1", &x.sin6_addr);
    struct sockaddr_in6 y = x;
    y.sin6_scope_id = 2;
    cr_assert_not(put(b, 800, &x, sizeof x, 3));
    cr_assert(put(b, 800, &x, sizeof x, 4));
    cr_assert_not(put(b, 800, &y, sizeof y, 5));
    cr_assert_eq(b->nmsgs, 5);
    cr_assert_eq(b->nseg[3], 2);
    free(b);
}

Test(txbatch, larger_packet_starts_a_message)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    put(b, 1000, &a, sizeof a, 0);
    put(b, 1000, &a, sizeof a, 1);
    cr_assert_not(put(b, 1001, &a, sizeof a, 2));
    cr_assert_eq(b->nmsgs, 2);
    cr_assert_eq(b->nseg[0], 2);
    cr_assert_eq(b->seg[1], 1001);
    cr_assert_eq((uint8_t *)b->iov[1].iov_base, b->arena + 2000);
    free(b);
}

Test(txbatch, short_segment_ends_the_message)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    put(b, 1000, &a, sizeof a, 0);
    cr_assert(put(b, 700, &a, sizeof a, 1), "a shorter packet is the last segment");
    cr_assert_not(put(b, 700, &a, sizeof a, 2), "nothing may follow a short segment");
    cr_assert_eq(b->nmsgs, 2);
    cr_assert_eq(b->nseg[0], 2);
    cr_assert_eq(b->iov[0].iov_len, 1700);
    cr_assert_eq(cmsg_segment(b, 0), 1000);
    cr_assert(put(b, 700, &a, sizeof a, 3), "the new message takes equal packets");
    free(b);
}

Test(txbatch, segment_count_limit)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    for (unsigned i = 0; i < WZP_GSO_MAX_SEGMENTS; i++)
        put(b, 100, &a, sizeof a, i);
    cr_assert_eq(b->nmsgs, 1);
    cr_assert_eq(b->nseg[0], WZP_GSO_MAX_SEGMENTS);
    cr_assert_not(put(b, 100, &a, sizeof a, 99), "segment 65 starts a new message");
    cr_assert_eq(b->nmsgs, 2);
    cr_assert_eq(b->nseg[1], 1);
    free(b);
}

Test(txbatch, byte_limit)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    unsigned fit = WZP_GSO_MAX_BYTES / WZP_TX_PACKET_BYTES; /* 45 */
    for (unsigned i = 0; i < fit; i++)
        put(b, WZP_TX_PACKET_BYTES, &a, sizeof a, i);
    cr_assert_eq(b->nmsgs, 1);
    cr_assert_eq(b->nseg[0], fit);
    cr_assert_leq(b->iov[0].iov_len, WZP_GSO_MAX_BYTES);
    cr_assert_not(put(b, WZP_TX_PACKET_BYTES, &a, sizeof a, 99));
    cr_assert_eq(b->nmsgs, 2);
    free(b);
}

Test(txbatch, arena_full)
{
    struct wzp_txbatch *b = new_batch(true);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    unsigned n = 0;
    while (!wzp_txbatch_full(b))
        put(b, WZP_TX_PACKET_BYTES, &a, sizeof a, n++);
    cr_assert_eq(n, WZP_TX_ARENA_BYTES / WZP_TX_PACKET_BYTES);
    cr_assert_lt(WZP_TX_ARENA_BYTES - b->used, WZP_TX_PACKET_BYTES);
    cr_assert_eq(b->nmsgs, (n + 44) / 45, "messages of at most 45 full segments");
    free(b);
}

Test(txbatch, every_message_in_use_is_full)
{
    struct wzp_txbatch *b = new_batch(true);
    for (unsigned i = 0; i < WZP_TX_BATCH; i++) {
        struct sockaddr_in a = v4("10.0.0.1", (uint16_t)(1000 + i));
        put(b, 60, &a, sizeof a, i);
    }
    cr_assert_eq(b->nmsgs, WZP_TX_BATCH);
    cr_assert(wzp_txbatch_full(b), "64 messages: flush before the next packet");
    free(b);
}

Test(txbatch, gso_off_never_coalesces)
{
    struct wzp_txbatch *b = new_batch(false);
    struct sockaddr_in a = v4("10.0.0.1", 5000);
    for (unsigned i = 0; i < 5; i++)
        cr_assert_not(put(b, 1000, &a, sizeof a, i));
    cr_assert_eq(b->nmsgs, 5);
    for (unsigned i = 0; i < 5; i++) {
        cr_assert_eq(b->nseg[i], 1);
        cr_assert_null(b->msgs[i].msg_hdr.msg_control);
    }
    free(b);
}

/* ------------------------------------------------------------ real sends on loopback */

static int udp_socket(struct sockaddr_in *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    int big = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    *bound = v4("127.0.0.1", 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)bound, sizeof *bound), 0);
    socklen_t len = sizeof *bound;
    getsockname(fd, (struct sockaddr *)bound, &len);
    return fd;
}

/* Receive exactly the packets (len, tag) in order on fd, each its own datagram. */
static void expect_packets(int fd, const size_t *lens, const unsigned *tags, unsigned n)
{
    static uint8_t buf[65536];
    for (unsigned k = 0; k < n; k++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 2000), 1, "packet %u of %u did not arrive", k, n);
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        cr_assert_eq(got, (ssize_t)lens[k], "packet %u: %zd bytes, want %zu", k, got, lens[k]);
        for (size_t i = 0; i < lens[k]; i++)
            cr_assert_eq(buf[i], (uint8_t)(tags[k] * 31u + i), "packet %u byte %zu", k, i);
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 50), 0, "more datagrams than packets");
}

struct mix {
    size_t lens[2][200];
    unsigned tags[2][200];
    unsigned n[2];
};

/* A mix that exercises every rule: runs of equal packets, a short last segment, a larger
 * packet, alternating receivers, and a run longer than the segment limit. */
static void fill_mix(struct wzp_txbatch *b, const struct sockaddr_in *to, struct mix *m)
{
    memset(m, 0, sizeof *m);
    unsigned tag = 0;
    const struct {
        unsigned dst, count;
        size_t len;
    } runs[] = {{0, 5, 1200}, {0, 1, 300}, {0, 3, 300}, {1, 2, 1452}, {0, 1, 1300},
                {1, 70, 200}, {0, 1, 50},  {1, 1, 60},  {0, 4, 1000}};
    for (size_t r = 0; r < WZP_ARRAY_LEN(runs); r++)
        for (unsigned i = 0; i < runs[r].count; i++) {
            unsigned d = runs[r].dst;
            m->lens[d][m->n[d]] = runs[r].len;
            m->tags[d][m->n[d]++] = tag;
            put(b, runs[r].len, &to[d], sizeof to[d], tag++);
        }
}

Test(txbatch, gso_send_delivers_every_packet)
{
    struct sockaddr_in s_addr, to[2];
    int s = udp_socket(&s_addr), r0 = udp_socket(&to[0]), r1 = udp_socket(&to[1]);
    struct wzp_txbatch *b = new_batch(true);
    wzp_txbatch_probe_gso(b, s, 0);
    cr_assert(b->gso, "this kernel supports UDP_SEGMENT");
    struct mix m;
    fill_mix(b, to, &m);
    /* 5x1200+300 | 300x3 | 1452x2 | 1300 | 200x64 | 200x6 | 50 | 60 | 1000x4 */
    cr_assert_eq(b->nmsgs, 9);
    struct wzp_stats st;
    memset(&st, 0, sizeof st);
    wzp_txbatch_send(b, s, &st, 0);
    cr_assert_eq(b->nmsgs, 0);
    cr_assert_eq(b->used, 0);
    expect_packets(r0, m.lens[0], m.tags[0], m.n[0]);
    expect_packets(r1, m.lens[1], m.tags[1], m.n[1]);
    cr_assert_eq(st.udp_tx_packets, m.n[0] + m.n[1], "packets are counted, not messages");
    cr_assert_eq(st.udp_tx_errors, 0);
    cr_assert_eq(st.udp_tx_gso_messages, 6);
    cr_assert_eq(st.udp_tx_gso_segments, 6 + 3 + 2 + 64 + 6 + 4);
    cr_assert(b->gso);
    free(b);
    close(s);
    close(r0);
    close(r1);
}

Test(txbatch, refused_gso_falls_back_without_loss)
{
    struct sockaddr_in s_addr, to[2];
    int s = udp_socket(&s_addr), r0 = udp_socket(&to[0]), r1 = udp_socket(&to[1]);
    /* No UDP checksum: the kernel refuses every GSO send with EINVAL. */
    int one = 1;
    cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one), 0);
    struct wzp_txbatch *b = new_batch(true);
    wzp_txbatch_probe_gso(b, s, 0);
    cr_assert(b->gso, "the option itself is there; the send is what fails");
    struct mix m;
    fill_mix(b, to, &m);
    cr_assert_eq(b->nmsgs, 9);
    struct wzp_stats st;
    memset(&st, 0, sizeof st);
    wzp_txbatch_send(b, s, &st, 0);
    cr_assert_not(b->gso, "GSO is off after the refusal");
    cr_assert(b->gso_warned);
    expect_packets(r0, m.lens[0], m.tags[0], m.n[0]);
    expect_packets(r1, m.lens[1], m.tags[1], m.n[1]);
    cr_assert_eq(st.udp_tx_packets, m.n[0] + m.n[1]);
    cr_assert_eq(st.udp_tx_errors, 0);
    cr_assert_eq(st.udp_tx_gso_messages, 0);
    cr_assert_eq(st.udp_tx_gso_segments, 0);

    /* From now on nothing coalesces. */
    cr_assert_not(put(b, 100, &to[0], sizeof to[0], 1));
    cr_assert_not(put(b, 100, &to[0], sizeof to[0], 2));
    cr_assert_eq(b->nmsgs, 2);
    wzp_txbatch_send(b, s, &st, 0);
    size_t lens[] = {100, 100};
    unsigned tags[] = {1, 2};
    expect_packets(r0, lens, tags, 2);
    free(b);
    close(s);
    close(r0);
    close(r1);
}

Test(txbatch, probe_without_udp_segment_turns_gso_off)
{
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* no SOL_UDP options */
    cr_assert(tcp >= 0);
    struct wzp_txbatch *b = new_batch(true);
    wzp_txbatch_probe_gso(b, tcp, 0);
    cr_assert_not(b->gso);
    cr_assert(b->gso_warned);
    free(b);
    close(tcp);
}

/* The worker's calls: tx_buf hands out the same tail until a commit, and sends the batch
 * first when the arena cannot take one more packet. */
Test(txbatch, worker_tx_buf_flushes_when_full)
{
    struct sockaddr_in s_addr, to;
    int s = udp_socket(&s_addr), r = udp_socket(&to);
    struct wzp_worker *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    w->fd = s;
    wzp_txbatch_init(&w->tx, true);
    static size_t lens[200];
    static unsigned tags[200];
    unsigned n = WZP_TX_ARENA_BYTES / WZP_TX_PACKET_BYTES + 10;
    for (unsigned k = 0; k < n; k++) {
        uint8_t *p = wzp_worker_tx_buf(w);
        cr_assert_eq(wzp_worker_tx_buf(w), p, "same buffer until the commit");
        if (k == WZP_TX_ARENA_BYTES / WZP_TX_PACKET_BYTES)
            cr_assert_eq(p, w->tx.arena, "the full batch was sent first");
        for (size_t i = 0; i < WZP_TX_PACKET_BYTES; i++)
            p[i] = (uint8_t)(k * 31u + i);
        wzp_worker_tx_commit(w, WZP_TX_PACKET_BYTES, (struct sockaddr *)&to, sizeof to);
        lens[k] = WZP_TX_PACKET_BYTES;
        tags[k] = k;
    }
    cr_assert_eq(w->stats.udp_tx_packets, WZP_TX_ARENA_BYTES / WZP_TX_PACKET_BYTES);
    wzp_worker_tx_flush(w);
    cr_assert_eq(w->stats.udp_tx_packets, n);
    cr_assert_gt(w->stats.udp_tx_gso_messages, 0);
    expect_packets(r, lens, tags, n);
    free(w);
    close(s);
    close(r);
}
