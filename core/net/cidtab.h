/*
 * cidtab.h - the worker's routing table from connection ID to connection: an open-addressing
 * hash table whose slots hold the CID bytes themselves.
 *
 * Every packet a worker receives starts with a lookup here. A chained table with one
 * allocated entry per CID cost two cache misses per lookup (bucket, then entry), which
 * showed at 10 000 connections; here a lookup reads one 32-byte slot, two to a cache line,
 * and probes on linearly (the load stays at most one half, so a probe sequence is short).
 * Removal shifts the entries behind it back, so there are no tombstones.
 *
 * Keys are 1..20 bytes; the table hashes them with a random key of its own, because a
 * client chooses its first DCID and could otherwise pick keys that all land in one run.
 * Values are opaque non-NULL pointers. Single-threaded (its worker's).
 */
#ifndef WZP_CIDTAB_H
#define WZP_CIDTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_CIDTAB_KEY_MAX 20 /* NGTCP2_MAX_CIDLEN, RFC 9000 17.2 */

struct wzp_cidtab_slot {
    void *val; /* NULL: empty */
    uint8_t len;
    uint8_t key[WZP_CIDTAB_KEY_MAX];
};

struct wzp_cidtab {
    struct wzp_cidtab_slot *slots;
    size_t mask; /* capacity - 1; the capacity is a power of two */
    size_t count;
    uint64_t seed;
};

/* An empty table of at least min_capacity slots (rounded up to a power of two, 16 at
 * least). WZP_OK, WZP_ENOMEM or WZP_ECRYPTO (no random seed). */
int wzp_cidtab_init(struct wzp_cidtab *t, size_t min_capacity);
void wzp_cidtab_free(struct wzp_cidtab *t);

/* The value stored under key, or NULL. */
void *wzp_cidtab_find(const struct wzp_cidtab *t, const uint8_t *key, size_t len);

/* Store val (non-NULL) under key. WZP_EINVAL: empty or over-long key, or the key is
 * present; WZP_ENOMEM: the table is half full and could not grow. */
int wzp_cidtab_add(struct wzp_cidtab *t, const uint8_t *key, size_t len, void *val);

/* Remove key if it maps to val (any value when val is NULL). True if it was removed. */
bool wzp_cidtab_remove(struct wzp_cidtab *t, const uint8_t *key, size_t len, const void *val);

size_t wzp_cidtab_capacity(const struct wzp_cidtab *t);

#endif
