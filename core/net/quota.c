/*
 * quota.c - admission counters (quota.h). A relay-wide take is an increment that is
 * undone when it overshoots the limit: a counter may exceed its limit for an instant,
 * never for longer, and a refused take never blocks a give-back. Per-address counts are
 * chained hash entries in 64 mutex-guarded shards; an entry exists while its address
 * has a connection, so the table never holds more entries than there are connections.
 */
#include "quota.h"

#include "common.h"

#include <gnutls/crypto.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct addr_entry {
    struct addr_entry *next;
    struct wzp_addr_key key;
    unsigned handshakes, connections;
};

struct wzp_quota_shard {
    pthread_mutex_t lock;
    struct addr_entry **buckets;
    size_t nbuckets; /* a power of two */
};

int wzp_quota_init(struct wzp_quota *q, const struct wzp_quota_limits *max)
{
    memset(q, 0, sizeof *q);
    q->max = *max;
    atomic_init(&q->sessions, 0);
    atomic_init(&q->handshakes, 0);
    atomic_init(&q->connections, 0);
    atomic_init(&q->addresses, 0);
    atomic_init(&q->signal_bytes, 0);
    if (!max->handshakes_per_addr && !max->connections_per_addr)
        return WZP_OK;
    if (gnutls_rnd(GNUTLS_RND_NONCE, &q->hash_seed, sizeof q->hash_seed) != 0)
        return WZP_ECRYPTO;
    q->shards = calloc(WZP_QUOTA_SHARDS, sizeof *q->shards);
    if (!q->shards)
        return WZP_ENOMEM;
    /* Chains stay short up to the connection limit; beyond 2^20 addresses they grow. */
    size_t per_shard = WZP_MAX((size_t)max->connections / WZP_QUOTA_SHARDS, (size_t)16);
    size_t n = 16;
    while (n < per_shard && n < (1u << 14))
        n <<= 1;
    for (unsigned i = 0; i < WZP_QUOTA_SHARDS; i++) {
        struct wzp_quota_shard *s = &q->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = n;
        s->buckets = calloc(n, sizeof *s->buckets);
        if (!s->buckets) {
            wzp_quota_free(q);
            return WZP_ENOMEM;
        }
    }
    return WZP_OK;
}

void wzp_quota_free(struct wzp_quota *q)
{
    if (!q->shards)
        return;
    for (unsigned i = 0; i < WZP_QUOTA_SHARDS; i++) {
        struct wzp_quota_shard *s = &q->shards[i];
        for (size_t b = 0; s->buckets && b < s->nbuckets; b++)
            while (s->buckets[b]) {
                struct addr_entry *e = s->buckets[b];
                s->buckets[b] = e->next;
                free(e);
            }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(q->shards);
    q->shards = NULL;
}

void wzp_addr_key_of(struct wzp_addr_key *k, const struct sockaddr *sa)
{
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        k->b[10] = k->b[11] = 0xff;
        memcpy(k->b + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(k->b, &in6->sin6_addr, 16);
        if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            memset(k->b + 8, 0, 8); /* the /64 */
    }
}

/* The shard and bucket of a key: FNV-1a over the key, mixed with a per-process seed so a
 * sender cannot pick addresses that share one chain. */
static struct addr_entry **bucket_of(struct wzp_quota *q, const struct wzp_addr_key *k,
                                     struct wzp_quota_shard **shard)
{
    uint64_t h = 1469598103934665603ull ^ q->hash_seed;
    for (size_t i = 0; i < sizeof k->b; i++)
        h = (h ^ k->b[i]) * 1099511628211ull;
    h ^= h >> 29;
    struct wzp_quota_shard *s = &q->shards[h % WZP_QUOTA_SHARDS];
    *shard = s;
    return &s->buckets[(h >> 8) & (s->nbuckets - 1)];
}

/* The link pointing at k's entry, or at the NULL ending its chain. Shard lock held. */
static struct addr_entry **find(struct addr_entry **pp, const struct wzp_addr_key *k)
{
    while (*pp && memcmp((*pp)->key.b, k->b, sizeof k->b) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Drop the entry at *pp once its address has nothing left. Shard lock held. */
static void prune(struct wzp_quota *q, struct addr_entry **pp)
{
    struct addr_entry *e = *pp;
    if (e && e->connections == 0 && e->handshakes == 0) {
        *pp = e->next;
        free(e);
        atomic_fetch_sub(&q->addresses, 1);
    }
}

static bool take(_Atomic unsigned *count, unsigned max, unsigned *inuse)
{
    unsigned n = atomic_fetch_add(count, 1);
    if (n < max)
        return true;
    atomic_fetch_sub(count, 1);
    if (inuse)
        *inuse = n;
    return false;
}

static enum wzp_quota_refusal take_addr(struct wzp_quota *q, const struct wzp_addr_key *k,
                                        unsigned *inuse)
{
    struct wzp_quota_shard *s;
    struct addr_entry **head = bucket_of(q, k, &s);
    enum wzp_quota_refusal rv = WZP_QUOTA_GRANTED;
    pthread_mutex_lock(&s->lock);
    struct addr_entry **pp = find(head, k);
    if (!*pp) {
        struct addr_entry *e = calloc(1, sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&s->lock);
            return WZP_QUOTA_ADDR_NO_CONNECTION;
        }
        e->key = *k;
        *pp = e;
        atomic_fetch_add(&q->addresses, 1);
    }
    struct addr_entry *e = *pp;
    if (q->max.connections_per_addr && e->connections >= q->max.connections_per_addr) {
        rv = WZP_QUOTA_ADDR_NO_CONNECTION;
        if (inuse)
            *inuse = e->connections;
    } else if (q->max.handshakes_per_addr && e->handshakes >= q->max.handshakes_per_addr) {
        rv = WZP_QUOTA_ADDR_NO_HANDSHAKE;
        if (inuse)
            *inuse = e->handshakes;
    } else {
        e->connections++;
        e->handshakes++;
    }
    prune(q, pp); /* a refused first take leaves no entry behind */
    pthread_mutex_unlock(&s->lock);
    return rv;
}

/* Give back one handshake and/or one connection of k. */
static void give_addr(struct wzp_quota *q, const struct wzp_addr_key *k, unsigned handshakes,
                      unsigned connections)
{
    if (!q->shards)
        return;
    struct wzp_quota_shard *s;
    struct addr_entry **head = bucket_of(q, k, &s);
    pthread_mutex_lock(&s->lock);
    struct addr_entry **pp = find(head, k);
    struct addr_entry *e = *pp;
    WZP_CHECK(e && e->handshakes >= handshakes && e->connections >= connections);
    if (e) { /* a give-back without its take is a bug; a release build survives it */
        e->handshakes -= WZP_MIN(e->handshakes, handshakes);
        e->connections -= WZP_MIN(e->connections, connections);
        prune(q, pp);
    }
    pthread_mutex_unlock(&s->lock);
}

unsigned wzp_quota_addr_handshakes(struct wzp_quota *q, const struct wzp_addr_key *k)
{
    if (!q->shards)
        return 0;
    struct wzp_quota_shard *s;
    struct addr_entry **head = bucket_of(q, k, &s);
    pthread_mutex_lock(&s->lock);
    struct addr_entry *e = *find(head, k);
    unsigned n = e ? e->handshakes : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

enum wzp_quota_refusal wzp_quota_take_connection(struct wzp_quota *q, const struct wzp_addr_key *k,
                                                 unsigned *inuse)
{
    if (!take(&q->connections, q->max.connections, inuse))
        return WZP_QUOTA_NO_CONNECTION;
    if (!take(&q->handshakes, q->max.handshakes, inuse)) {
        atomic_fetch_sub(&q->connections, 1);
        return WZP_QUOTA_NO_HANDSHAKE;
    }
    enum wzp_quota_refusal rv = q->shards ? take_addr(q, k, inuse) : WZP_QUOTA_GRANTED;
    if (rv != WZP_QUOTA_GRANTED) {
        atomic_fetch_sub(&q->handshakes, 1);
        atomic_fetch_sub(&q->connections, 1);
    }
    return rv;
}

void wzp_quota_give_handshake(struct wzp_quota *q, const struct wzp_addr_key *k)
{
    give_addr(q, k, 1, 0);
    atomic_fetch_sub(&q->handshakes, 1);
}

void wzp_quota_give_connection(struct wzp_quota *q, const struct wzp_addr_key *k)
{
    give_addr(q, k, 0, 1);
    atomic_fetch_sub(&q->connections, 1);
}

bool wzp_quota_take_signal_bytes(struct wzp_quota *q, uint64_t n)
{
    uint64_t was = atomic_fetch_add(&q->signal_bytes, n);
    if (was + n <= q->max.signal_bytes)
        return true;
    atomic_fetch_sub(&q->signal_bytes, n);
    return false;
}

void wzp_quota_give_signal_bytes(struct wzp_quota *q, uint64_t n)
{
    atomic_fetch_sub(&q->signal_bytes, n);
}

/* Sessions never overshoot, even for an instant: /ready and the drain read them. */
bool wzp_quota_take_session(struct wzp_quota *q)
{
    unsigned n = atomic_load(&q->sessions);
    do {
        if (n >= q->max.sessions)
            return false;
    } while (!atomic_compare_exchange_weak(&q->sessions, &n, n + 1));
    return true;
}

void wzp_quota_give_session(struct wzp_quota *q)
{
    atomic_fetch_sub(&q->sessions, 1);
}
