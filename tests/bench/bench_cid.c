/*
 * bench_cid.c - the worker's CID table under many connections: every packet's first step
 * is a lookup there. Fills a worker with N connections of 3 CIDs each (random 16-byte
 * SCIDs as the relay issues, byte 0 the worker), then times lookups of existing CIDs in
 * random order, and prints ns per lookup and the table's slots.
 *
 *   build/bench_cid [lookups]
 *
 * A benchmark, not a test: it prints figures.
 */
#include "relay.h"
#include "worker.h"

#include "common.h"
#include "conn.h"
#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    long lookups = argc > 1 ? atol(argv[1]) : 2000000;
    static const unsigned sizes[] = {1000, 3000, 10000, 30000};
    printf("CID table: %ld lookups of existing CIDs per size, random order\n\n", lookups);
    printf("| connections | CIDs | slots | ns/lookup |\n|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        static struct wzp_relay relay;
        static struct wzp_worker worker, *wp = &worker;
        memset(&relay, 0, sizeof relay);
        wzp_config_defaults(&relay.cfg);
        wzp_config_set_listen(&relay.cfg, "127.0.0.1:0");
        relay.nworkers = 1;
        relay.workers = &wp;
        char err[256];
        if (wzp_mesh_init(&relay.mesh, 1) || wzp_worker_init(&worker, &relay, 0, err, sizeof err)) {
            fprintf(stderr, "bench_cid: %s\n", err);
            return 1;
        }
        unsigned n = sizes[s];
        size_t ncids = (size_t)n * 3;
        uint8_t(*keys)[16] = malloc(ncids * 16);
        struct wzp_conn **conns = calloc(n, sizeof *conns);
        for (unsigned i = 0; i < n; i++) {
            conns[i] = calloc(1, sizeof *conns[i]);
            conns[i]->w = &worker;
            wzp_worker_attach(&worker, conns[i]);
            for (unsigned k = 0; k < 3; k++) {
                uint8_t *key = keys[i * 3 + k];
                wzp_random(key, 16);
                key[0] = 0;
                ngtcp2_cid cid;
                ngtcp2_cid_init(&cid, key, 16);
                wzp_worker_cid_add(&worker, &cid, conns[i]);
            }
        }
        uint32_t *order = malloc((size_t)lookups * sizeof *order);
        for (long i = 0; i < lookups; i++)
            order[i] = (uint32_t)((uint64_t)rand() * ncids / ((uint64_t)RAND_MAX + 1));
        uint64_t t0 = wzp_now_ns();
        size_t found = 0;
        for (long i = 0; i < lookups; i++)
            found += wzp_worker_cid_find(&worker, keys[order[i]], 16) != NULL;
        uint64_t ns = wzp_now_ns() - t0;
        printf("| %u | %zu | %zu | %.1f |\n", n, ncids, wzp_cidtab_capacity(&worker.cids),
               (double)ns / (double)lookups);
        if (found != (size_t)lookups)
            fprintf(stderr, "bench_cid: %zu of %ld lookups found their connection\n", found,
                    lookups);
        while (worker.conns) {
            struct wzp_conn *c = worker.conns;
            wzp_worker_detach(&worker, c);
            free(c);
        }
        wzp_worker_free(&worker);
        wzp_mesh_free(&relay.mesh);
        free(order);
        free(conns);
        free(keys);
    }
    return 0;
}
