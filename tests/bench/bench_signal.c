/*
 * bench_signal.c - what the relay spends on a join's signals outside QUIC and TLS: parsing
 * a client's CallOffer (JSON), checking its signature, and building the CallAnswer (fresh
 * X25519 key, signature, JSON). Prints microseconds per operation, median of 5 rounds.
 *
 *   build/bench_signal [iterations per round]
 *
 * A benchmark, not a test: it prints figures. Under valgrind --tool=callgrind (few
 * iterations) it gives instruction counts that do not depend on the machine's noise.
 */
#include "handshake.h"
#include "identity.h"
#include "signal_codec.h"

#include "buf.h"
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 5

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum op { OP_PARSE, OP_VERIFY, OP_ANSWER };

static const char *const op_names[] = {"parse a CallOffer", "check its signature",
                                       "build the CallAnswer (key, signature, JSON)"};

static int run_op(enum op op, const struct wzp_buf *offer_json, const struct wzp_signal *offer,
                  const struct wzp_identity *relay_id)
{
    char err[256];
    struct wzp_signal s;
    struct wzp_buf out = {0};
    int rc = WZP_OK;
    switch (op) {
    case OP_PARSE:
        rc = wzp_signal_parse(offer_json->data, offer_json->len, &s, err, sizeof err);
        if (rc == WZP_OK)
            wzp_signal_clear(&s);
        break;
    case OP_VERIFY:
        rc = wzp_handshake_verify_offer(offer);
        break;
    case OP_ANSWER:
        rc = wzp_handshake_make_answer(relay_id, &s);
        if (rc == WZP_OK)
            rc = wzp_signal_encode(&s, &out);
        wzp_signal_clear(&s);
        wzp_buf_free(&out);
        break;
    }
    return rc;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 2000;
    if (iters < 1)
        iters = 1;
    static const uint8_t client_seed[32] = {7}, relay_seed[32] = {9};
    struct wzp_identity client, relay_id;
    struct wzp_signal offer;
    struct wzp_buf offer_json = {0};
    if (wzp_identity_from_seed(&client, client_seed) != WZP_OK ||
        wzp_identity_from_seed(&relay_id, relay_seed) != WZP_OK ||
        wzp_handshake_make_offer(&client, NULL, "bench", &offer) != WZP_OK ||
        wzp_signal_encode(&offer, &offer_json) != WZP_OK) {
        fprintf(stderr, "bench_signal: cannot build a CallOffer\n");
        return 1;
    }
    printf("join signals: %ld iterations per round, median of %d rounds; CallOffer %zu bytes\n\n",
           iters, ROUNDS, offer_json.len);
    printf("| operation | us each |\n|---|---|\n");
    for (enum op op = OP_PARSE; op <= OP_ANSWER; op++) {
        double us[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) {
            double t0 = now_us();
            for (long i = 0; i < iters; i++)
                if (run_op(op, &offer_json, &offer, &relay_id) != WZP_OK) {
                    fprintf(stderr, "bench_signal: %s failed\n", op_names[op]);
                    return 1;
                }
            us[r] = (now_us() - t0) / (double)iters;
        }
        qsort(us, ROUNDS, sizeof us[0], cmp_double);
        printf("| %s | %.2f |\n", op_names[op], us[ROUNDS / 2]);
    }
    wzp_signal_clear(&offer);
    wzp_buf_free(&offer_json);
    wzp_identity_free(&client);
    wzp_identity_free(&relay_id);
    return 0;
}
