/*
 * test_gso.c - integration: UDP GSO in the relay's transmit path, and GRO in its receive
 * path. A sender bursts full-size media datagrams to one receiver in the same room, so
 * the relay has several packets for the same address in one flush and sends them as one
 * GSO message; the receiver must get every datagram exactly once with its bytes intact,
 * and the relay's counters must show GSO segments. When the sender shares a socket
 * (wzpc_mux), it too sends its equal-sized packets as GSO messages, which the relay's
 * socket receives as GRO trains and must split back into the same packets.
 */
#include "harness.h"

#include "common.h"
#include "media.h"

#include <criterion/criterion.h>
#include <string.h>

#define N_DGRAMS      200
#define PAYLOAD_BYTES 1000 /* + 12-byte header: one datagram per QUIC packet */
#define BURST         8    /* datagrams queued per client loop iteration */
#define DGRAM_BYTES   (WZP_MEDIA_HEADER_BYTES + PAYLOAD_BYTES)

static struct ev_loop *loop;
static struct relay_proc relay;

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(gso, .fini = stop_relay, .timeout = 90);

/* Datagram number i: a valid header with seq = i, then bytes that depend on i and the
 * position, so a byte from another datagram or a shifted segment boundary shows. */
static void make_dgram(unsigned i, uint8_t *out)
{
    struct wzp_media_header h = {
        .codec = WZP_CODEC_OPUS64K, .seq = (uint16_t)i, .timestamp_ms = i * 20u};
    wzp_media_write_header(&h, out);
    for (size_t k = 0; k < PAYLOAD_BYTES; k++)
        out[WZP_MEDIA_HEADER_BYTES + k] = (uint8_t)((i * 131u) ^ (k * 7u) ^ (k >> 8));
}

struct receiver {
    struct wzpc_client *c;
    unsigned seen[N_DGRAMS];
    unsigned distinct, duplicates, corrupt, other;
};

static void on_datagram(struct wzpc_client *c, const uint8_t *data, size_t len, void *ud)
{
    (void)c;
    struct receiver *r = ud;
    uint8_t want[DGRAM_BYTES];
    if (len != DGRAM_BYTES) {
        r->other++;
        return;
    }
    unsigned i = (unsigned)data[2] << 8 | data[3]; /* seq, big-endian */
    if (i >= N_DGRAMS) {
        r->corrupt++;
        return;
    }
    make_dgram(i, want);
    if (memcmp(data, want, DGRAM_BYTES) != 0) {
        r->corrupt++;
        return;
    }
    if (r->seen[i]++)
        r->duplicates++;
    else
        r->distinct++;
}

static bool receiver_state(void *arg)
{
    struct receiver *r = arg;
    enum wzpc_state s = wzpc_state(r->c);
    return s == WZPC_JOINED || s == WZPC_CLOSED;
}

static bool received_all(void *arg)
{
    struct receiver *r = arg;
    return r->distinct == N_DGRAMS || wzpc_state(r->c) == WZPC_CLOSED;
}

static void run_burst_test(const char *threads, bool mux_sender)
{
    const char *const args[] = {"--threads", threads, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);

    static struct receiver rx;
    memset(&rx, 0, sizeof rx);
    struct wzpc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.loop = loop;
    cfg.host = "127.0.0.1";
    cfg.port = relay.port;
    cfg.sni = "gso";
    cfg.alias = "receiver";
    cfg.auto_join = true;
    cfg.on_datagram = on_datagram;
    cfg.user_data = &rx;
    rx.c = wzpc_connect(&cfg);
    cr_assert_not_null(rx.c);
    wzpc_run_until(loop, receiver_state, &rx, 5000);
    cr_assert_eq(wzpc_state(rx.c), WZPC_JOINED, "receiver did not join");

    struct tc tx;
    struct wzpc_mux *mux = mux_sender ? wzpc_mux_new(loop, "127.0.0.1", relay.port, 1) : NULL;
    struct wzpc_config txcfg = {.sni = "gso", .auto_join = true, .mux = mux};
    cr_assert(!mux_sender || mux);
    tc_connect(&tx, loop, &relay, "gso", 1, &txcfg);
    cr_assert(tc_wait_state(&tx, loop, WZPC_JOINED, 5000), "sender did not join");
    cr_assert(tc_wait_updates(&tx, loop, 1, 3000));
    cr_assert_eq(tx.update_counts[0], 2, "the sender's first RoomUpdate lists both");

    /* Bursts of BURST datagrams: each burst reaches the relay within one of its loop
     * iterations, so it writes several packets to the receiver in one flush. A burst
     * (~8 KB) fits the receiver's 16 KiB media queue at the relay, so nothing may drop. */
    uint8_t d[DGRAM_BYTES];
    for (unsigned i = 0; i < N_DGRAMS; i++) {
        make_dgram(i, d);
        cr_assert_eq(wzpc_send_datagram(tx.c, d, sizeof d), WZP_OK);
        if (i % BURST == BURST - 1)
            wzpc_run_for(loop, 30);
    }
    wzpc_run_until(loop, received_all, &rx, 10000);
    wzpc_run_for(loop, 100); /* duplicates would show up now */

    uint64_t packets = relay_counter(&relay, "udp_tx_packets");
    uint64_t gso_msgs = relay_counter(&relay, "udp_tx_gso_messages");
    uint64_t gso_segs = relay_counter(&relay, "udp_tx_gso_segments");
    uint64_t drops = relay_counter(&relay, "datagrams_queue_drops");
    uint64_t errors = relay_counter(&relay, "udp_tx_errors");
    uint64_t gro_msgs = relay_counter(&relay, "udp_rx_gro_messages");
    uint64_t gro_segs = relay_counter(&relay, "udp_rx_gro_segments");
    cr_log_info("threads=%s mux=%d: udp_rx_gro_messages=%llu udp_rx_gro_segments=%llu", threads,
                mux_sender, (unsigned long long)gro_msgs, (unsigned long long)gro_segs);
    if (mux_sender) {
        cr_expect_gt(gro_msgs, 0, "the relay received no GRO train from a GSO sender");
        cr_expect_geq(gro_segs, 2 * gro_msgs, "a GRO train has at least 2 packets");
    }
    cr_log_info("threads=%s: udp_tx_packets=%llu udp_tx_gso_messages=%llu "
                "udp_tx_gso_segments=%llu datagrams_queue_drops=%llu udp_tx_errors=%llu",
                threads, (unsigned long long)packets, (unsigned long long)gso_msgs,
                (unsigned long long)gso_segs, (unsigned long long)drops,
                (unsigned long long)errors);

    cr_expect_eq(rx.corrupt, 0, "%u datagrams with wrong bytes", rx.corrupt);
    cr_expect_eq(rx.other, 0, "%u datagrams of another size", rx.other);
    cr_expect_eq(rx.duplicates, 0);
    cr_expect_eq(rx.distinct, N_DGRAMS, "received %u of %u datagrams (relay dropped %llu)",
                 rx.distinct, N_DGRAMS, (unsigned long long)drops);
    cr_expect_eq(errors, 0);
    cr_expect_eq(relay_log_count(&relay, "UDP GSO off"), 0, "loopback supports GSO");
    cr_expect_gt(gso_segs, 0, "the relay sent no GSO message");
    cr_expect_geq(gso_segs, 2 * gso_msgs, "a GSO message has at least 2 segments");
    cr_expect_geq(packets, gso_segs);

    tc_free(&tx);
    wzpc_mux_free(mux);
    wzpc_free(rx.c);
    cr_assert_eq(relay_stop(&relay, 3000), 0);
    ev_loop_destroy(loop);
}

Test(gso, burst_arrives_intact_one_worker)
{
    run_burst_test("1", false);
}

Test(gso, burst_arrives_intact_two_workers)
{
    run_burst_test("2", false);
}

Test(gso, gro_train_from_a_gso_sender_is_split_back)
{
    run_burst_test("1", true);
}
