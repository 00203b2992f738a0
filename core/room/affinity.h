/*
 * affinity.h - room affinity: which worker serves the connections of each room.
 *
 * With every participant of a room on one worker, fan-out is a loop over local
 * receivers: no cross-worker ring, no copy to another thread, no wake-up. A new room goes
 * to the worker with the least load (connections plus rooms assigned but not yet
 * connected); the room stays there while it has connections. The table is consulted
 * once per new connection (by the worker that received its first Initial) and updated
 * once when a connection reads its ClientHello and once when it is freed: never per
 * packet. One mutex guards it.
 *
 * Routing by this table is an optimisation, never a requirement: a connection that ends
 * up on another worker (table full, a race between two first joins) is served through
 * the cross-worker fan-out as before.
 */
#ifndef WZP_AFFINITY_H
#define WZP_AFFINITY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_AFFINITY_PENDING_NS (10ull * 1000000000) /* a room picked but never connected */

struct wzp_aff_entry;

struct wzp_affinity {
    pthread_mutex_t lock;
    unsigned nworkers;
    size_t cap; /* rooms at most; past it, new rooms are placed by name hash */
    size_t nentries;
    size_t nbuckets;
    struct wzp_aff_entry **buckets;
    uint64_t *load;           /* [nworkers]: connections + pending rooms */
    uint64_t next_sweep_ns;   /* pending rooms older than WZP_AFFINITY_PENDING_NS go */
    uint64_t hashed_overflow; /* picks past cap (for tests and the stats log) */
};

int wzp_affinity_init(struct wzp_affinity *a, unsigned nworkers, size_t cap);
void wzp_affinity_free(struct wzp_affinity *a);

/* The worker for a new connection to room `name`: the room's worker if it has one,
 * otherwise the least loaded one, which the room is then pending on until its first
 * connection takes a reference (or WZP_AFFINITY_PENDING_NS passes). */
unsigned wzp_affinity_pick(struct wzp_affinity *a, const char *name, uint64_t now_ns);

/* A connection to room `name` lives on `worker` (ClientHello read) / was freed. Every
 * ref is matched by exactly one unref with the same name and worker. */
void wzp_affinity_ref(struct wzp_affinity *a, const char *name, unsigned worker, uint64_t now_ns);
void wzp_affinity_unref(struct wzp_affinity *a, const char *name, unsigned worker);

/* Introspection (takes the lock): rooms in the table, a worker's load. */
size_t wzp_affinity_rooms(struct wzp_affinity *a);
uint64_t wzp_affinity_load(struct wzp_affinity *a, unsigned worker);

#endif
