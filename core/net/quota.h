/*
 * quota.h - the relay's admission counters: room sessions, QUIC handshakes in progress
 * and connections of any kind, each against its relay-wide limit, and handshakes and
 * connections per source address against theirs. The one place admission is counted:
 * conn.c takes and gives back; the worker, /metrics and the drain only read.
 *
 * A source address is an IPv4 address, or the /64 prefix of an IPv6 address (one
 * subscriber's network). Per-address counts live in a table of 64 shards, each under its
 * own mutex, touched when a connection starts, ends its handshake or is freed, and when
 * an Initial without a token asks how busy its address is; never per media packet.
 *
 * Every take either succeeds and must be matched by exactly one give-back of the same
 * kind and key, or fails and leaves every counter as it was. Any thread.
 */
#ifndef WZP_QUOTA_H
#define WZP_QUOTA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct wzp_quota_limits {
    unsigned sessions, handshakes, connections;
    unsigned handshakes_per_addr, connections_per_addr; /* 0 = no limit */
    uint64_t signal_bytes; /* signal bytes received and not yet dispatched, relay-wide */
};

/* Default relay-wide bound of buffered incoming signal bytes: room for about 30 clients
 * each halfway through a maximum-size (1 MiB) frame, and for thousands of normal ones. */
#define WZP_QUOTA_SIGNAL_BYTES (32ull << 20)

/* A source address as the per-address limits see it. */
struct wzp_addr_key {
    uint8_t b[16]; /* IPv4-mapped IPv6, or an IPv6 /64 prefix followed by zeros */
};

#define WZP_QUOTA_SHARDS 64

struct wzp_quota_shard;

struct wzp_quota {
    struct wzp_quota_limits max;
    _Atomic unsigned sessions;   /* reserved room slots (joining or joined) */
    _Atomic unsigned handshakes; /* QUIC handshakes in progress */
    _Atomic unsigned connections;
    _Atomic unsigned addresses; /* entries in the per-address table */
    _Atomic uint64_t signal_bytes;
    uint64_t hash_seed;
    struct wzp_quota_shard *shards; /* NULL when both per-address limits are off */
};

enum wzp_quota_refusal {
    WZP_QUOTA_GRANTED = 0,
    WZP_QUOTA_NO_CONNECTION,      /* connections reached */
    WZP_QUOTA_NO_HANDSHAKE,       /* handshakes reached */
    WZP_QUOTA_ADDR_NO_CONNECTION, /* connections_per_addr reached for this address */
    WZP_QUOTA_ADDR_NO_HANDSHAKE,  /* handshakes_per_addr reached for this address */
};

/* WZP_ENOMEM if the per-address table cannot be allocated. */
int wzp_quota_init(struct wzp_quota *q, const struct wzp_quota_limits *max);
void wzp_quota_free(struct wzp_quota *q);

void wzp_addr_key_of(struct wzp_addr_key *k, const struct sockaddr *sa);

/*
 * A new connection starting its handshake takes one connection and one handshake, both
 * relay-wide and for its address, or nothing. *inuse (may be NULL) gets the count that
 * refused it. The per-address entry is allocated here (WZP_QUOTA_ADDR_NO_CONNECTION if
 * that fails).
 */
enum wzp_quota_refusal wzp_quota_take_connection(struct wzp_quota *q, const struct wzp_addr_key *k,
                                                 unsigned *inuse);
void wzp_quota_give_handshake(struct wzp_quota *q, const struct wzp_addr_key *k);
void wzp_quota_give_connection(struct wzp_quota *q, const struct wzp_addr_key *k);

/* Handshakes in progress from this address (0 when per-address limits are off). */
unsigned wzp_quota_addr_handshakes(struct wzp_quota *q, const struct wzp_addr_key *k);

/* n more bytes of incoming signal frames buffered, or false (nothing taken) when that
 * would pass the relay-wide bound. */
bool wzp_quota_take_signal_bytes(struct wzp_quota *q, uint64_t n);
void wzp_quota_give_signal_bytes(struct wzp_quota *q, uint64_t n);

/* One room session, or false when the session limit is reached. */
bool wzp_quota_take_session(struct wzp_quota *q);
void wzp_quota_give_session(struct wzp_quota *q);

/* Cheap reads for the packet path and the HTTP server. */
static inline unsigned wzp_quota_sessions(const struct wzp_quota *q)
{
    return atomic_load_explicit(&q->sessions, memory_order_relaxed);
}
static inline unsigned wzp_quota_handshakes(const struct wzp_quota *q)
{
    return atomic_load_explicit(&q->handshakes, memory_order_relaxed);
}
static inline unsigned wzp_quota_connections(const struct wzp_quota *q)
{
    return atomic_load_explicit(&q->connections, memory_order_relaxed);
}
static inline bool wzp_quota_handshakes_full(const struct wzp_quota *q)
{
    return wzp_quota_handshakes(q) >= q->max.handshakes;
}

#endif
