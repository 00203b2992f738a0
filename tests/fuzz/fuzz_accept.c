/*
 * fuzz_accept.c - libFuzzer target: the path a packet takes before and into a connection
 * (version/CID decoding, CID table lookup, ngtcp2_accept, our Initial checks, connection
 * set-up and tear-down), on a real relay with one worker and no thread.
 *
 * An input is a sequence of records, each one packet from one of 8 source addresses:
 *   op 0  a client Initial built from fields: DCID length 0..20, SCID length 0..20,
 *         token length 0..31 (their bytes follow), padded to 1200 bytes
 *   op 1  another long-header type (0-RTT, Handshake, Retry) with a chosen DCID length
 *   op 2  a short-header packet to a CID seen earlier in this input, or a 16-byte one
 *   op 3  raw bytes (2-byte length, then the bytes): e.g. a real client Initial
 * After each packet the worker's loop runs once (timers due now). At the end every
 * connection is destroyed, and everything the worker and the relay count must be back at
 * zero (per-address quota entries too): a CID key left behind is the use-after-free the
 * relay once had. Tokens starting with 0xb6 take the Retry-token check and its refusal.
 */
#include "common.h"
#include "conn.h"
#include "log.h"
#include "relay.h"
#include "worker.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct wzp_relay relay;
static struct wzp_worker *worker;

static char dir[] = "/tmp/wzp-fuzz-accept-XXXXXX";
static char identity[sizeof dir + 16];

static void remove_dir(void)
{
    unlink(identity);
    rmdir(dir);
}

static void setup(void)
{
    if (!mkdtemp(dir))
        abort();
    snprintf(identity, sizeof identity, "%s/identity", dir);
    atexit(remove_dir);
    struct wzp_config cfg;
    wzp_config_defaults(&cfg);
    if (wzp_config_set_listen(&cfg, "127.0.0.1:0") != WZP_OK)
        abort();
    snprintf(cfg.identity_path, sizeof cfg.identity_path, "%s", identity);
    cfg.threads = 1;
    cfg.policy_path[0] = '\0';
    char err[512];
    if (wzp_relay_init(&relay, &cfg, err, sizeof err) != WZP_OK) {
        fprintf(stderr, "fuzz_accept: relay init: %s\n", err);
        abort();
    }
    worker = relay.workers[0];
    wzp_log_threshold = WZP_LOG_ERROR;
}

struct reader {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static void take_bytes(struct reader *r, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = take(r);
}

/* Long header: first byte, version 1, DCID, SCID. Returns the offset after the SCID. */
static size_t long_header(uint8_t *pkt, uint8_t first, struct reader *r, uint8_t *dcid,
                          size_t *dcidlen)
{
    size_t off = 0;
    pkt[off++] = first;
    wzp_put_u32be(pkt + off, 1);
    off += 4;
    *dcidlen = take(r) % 21;
    pkt[off++] = (uint8_t)*dcidlen;
    take_bytes(r, dcid, *dcidlen);
    memcpy(pkt + off, dcid, *dcidlen);
    off += *dcidlen;
    size_t scidlen = take(r) % 21;
    pkt[off++] = (uint8_t)scidlen;
    take_bytes(r, pkt + off, scidlen);
    return off + scidlen;
}

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!worker)
        setup();
    struct reader r = {data, size};
    static uint8_t seen[8][NGTCP2_MAX_CIDLEN];
    size_t seen_len[8] = {0}, nseen = 0;
    for (unsigned records = 0; r.n > 0 && records < 64; records++) {
        uint8_t op = take(&r), src = take(&r);
        struct sockaddr_in from = {.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)(40000 + (src & 7))),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        uint8_t pkt[1500];
        memset(pkt, 0, sizeof pkt);
        size_t len = 0;
        uint8_t dcid[NGTCP2_MAX_CIDLEN];
        size_t dcidlen = 0;
        switch (op % 4) {
        case 0: {
            len = long_header(pkt, 0xc3, &r, dcid, &dcidlen);
            size_t tokenlen = take(&r) % 32;
            pkt[len++] = (uint8_t)tokenlen;
            take_bytes(&r, pkt + len, tokenlen);
            len += tokenlen;
            size_t rest = 1200 - len - 2;
            wzp_put_u16be(pkt + len, (uint16_t)(0x4000 | rest));
            len += 2;
            size_t fill = WZP_MIN(r.n, rest);
            take_bytes(&r, pkt + len, fill);
            len = 1200;
            break;
        }
        case 1: {
            static const uint8_t types[] = {0xd3, 0xe3, 0xf0};
            len = long_header(pkt, types[take(&r) % 3], &r, dcid, &dcidlen);
            wzp_put_u16be(pkt + len, 0x4000 | 100);
            len += 2 + 100;
            break;
        }
        case 2: {
            pkt[0] = 0x40 | (take(&r) & 0x3f);
            uint8_t pick = take(&r);
            if (nseen && pick & 1) {
                dcidlen = seen_len[pick / 2 % nseen];
                memcpy(dcid, seen[pick / 2 % nseen], dcidlen);
            } else {
                dcidlen = WZP_SCID_LEN;
                take_bytes(&r, dcid, dcidlen);
                dcid[0] = 0; /* names worker 0 */
            }
            memcpy(pkt + 1, dcid, dcidlen);
            len = 1 + dcidlen + 40;
            take_bytes(&r, pkt + 1 + dcidlen, 40);
            break;
        }
        default:
            len = ((size_t)take(&r) << 8 | take(&r)) % sizeof pkt;
            take_bytes(&r, pkt, len);
            break;
        }
        if (dcidlen && nseen < 8) {
            memcpy(seen[nseen], dcid, dcidlen);
            seen_len[nseen++] = dcidlen;
        }
        if (len == 0)
            continue;
        wzp_worker_input(worker, pkt, len, (struct sockaddr *)&from, sizeof from);
        ev_run(worker->loop, EVRUN_NOWAIT);
    }
    while (worker->conns)
        wzp_conn_destroy(worker->conns);
    wzp_worker_tx_flush(worker); /* to ports on loopback that nobody reads */
    if (atomic_load(&worker->gauges.cid_entries) || atomic_load(&worker->gauges.slots_used) ||
        atomic_load(&worker->gauges.conns) || atomic_load(&worker->gauges.signal_bytes) ||
        wzp_quota_connections(&relay.quota) || wzp_quota_handshakes(&relay.quota) ||
        wzp_quota_sessions(&relay.quota) || atomic_load(&relay.quota.addresses))
        abort();
    return 0;
}
