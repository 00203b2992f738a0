/*
 * fake_relay.h - a relay of a few workers without sockets, threads or loops, for unit
 * tests of what sits above the worker (room logic, /metrics). Each worker has its mesh
 * node, counters and handle table; nothing else of the relay is set up except the room
 * table and an identity. Header-only.
 */
#ifndef WZP_FAKE_RELAY_H
#define WZP_FAKE_RELAY_H

#include "common.h"
#include "relay_state.h"
#include "worker.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_RELAY_MAX_WORKERS 4

struct fake_relay {
    struct wzp_relay relay;
    struct wzp_worker workers[FAKE_RELAY_MAX_WORKERS];
    struct wzp_worker *ptrs[FAKE_RELAY_MAX_WORKERS];
};

static inline void fake_relay_init(struct fake_relay *f, unsigned nworkers)
{
    cr_assert_leq(nworkers, FAKE_RELAY_MAX_WORKERS);
    memset(f, 0, sizeof *f);
    f->relay.nworkers = nworkers;
    f->relay.workers = f->ptrs;
    const struct wzp_quota_limits limits = {100, 256, 10000, 0, 0, WZP_QUOTA_SIGNAL_BYTES};
    cr_assert_eq(wzp_quota_init(&f->relay.quota, &limits), WZP_OK);
    uint8_t seed[32] = {7};
    cr_assert_eq(wzp_identity_from_seed(&f->relay.identity, seed), WZP_OK);
    cr_assert_eq(wzp_room_table_init(&f->relay.rooms, 64), WZP_OK);
    wzp_policy_metrics_init(&f->relay.policy_metrics);
    cr_assert_eq(wzp_mesh_init(&f->relay.mesh, nworkers), WZP_OK);
    for (unsigned i = 0; i < nworkers; i++) {
        struct wzp_worker *w = &f->workers[i];
        f->ptrs[i] = w;
        w->relay = &f->relay;
        w->idx = i;
        w->free_slot = UINT32_MAX;
        w->node = &f->relay.mesh.nodes[i];
        w->node->stats = &w->stats; /* no loop: nothing is woken */
    }
}

/* Connections must be detached first. */
static inline void fake_relay_free(struct fake_relay *f)
{
    for (unsigned i = 0; i < f->relay.nworkers; i++)
        free(f->workers[i].slots);
    wzp_mesh_free(&f->relay.mesh);
    wzp_room_table_destroy(&f->relay.rooms);
    wzp_identity_free(&f->relay.identity);
}

#endif
