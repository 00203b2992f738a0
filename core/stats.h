/*
 * stats.h - relay counters. Each worker owns one struct wzp_stats and is its only
 * writer; readers (the stats log, later /metrics) sum over workers with relaxed loads.
 * The X-macro list is the single place a counter is declared, named and described.
 */
#ifndef WZP_STATS_H
#define WZP_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define WZP_STATS_FIELDS(X)                                                                        \
    X(udp_rx_packets, "UDP packets received")                                                      \
    X(udp_tx_packets, "UDP packets sent (each GSO segment counts)")                                \
    X(udp_tx_gso_messages, "GSO sends: several packets to one receiver in one message")            \
    X(udp_tx_gso_segments, "UDP packets sent inside GSO sends")                                    \
    X(udp_tx_errors, "UDP packets not sent: the send failed")                                      \
    X(packets_undecodable, "UDP packets that are not QUIC")                                        \
    X(packets_steered_out, "packets handed to the owning worker")                                  \
    X(packets_steered_in, "packets received from another worker")                                  \
    X(packets_handed_over, "packets of new connections handed to the worker serving their room")   \
    X(fanout_messages_out, "media messages to another worker (one payload, its receivers there)")  \
    X(peer_wakeups, "wake-ups sent to another worker")                                             \
    X(peer_wakeups_skipped, "wake-ups not needed: the other worker was busy and drains first")     \
    X(steer_queue_full, "packets dropped: cross-worker queue full")                                \
    X(version_negotiations, "Version Negotiation packets sent")                                    \
    X(stateless_resets, "Stateless Reset packets sent")                                            \
    X(initials_token_refused, "Initials dropped: they carry a token this relay never issued")      \
    X(initials_short_dcid, "Initials dropped: client DCID shorter than 8 bytes")                   \
    X(conns_accepted, "QUIC connections accepted")                                                 \
    X(conns_refused_handshakes, "Initials dropped: too many concurrent handshakes")                \
    X(conns_refused_limit, "Initials dropped: connection limit")                                   \
    X(conns_refused_alpn, "connections refused: ALPN is not wzp")                                  \
    X(conns_refused_sni, "connections refused: reserved or invalid SNI")                           \
    X(conns_refused_policy, "connections refused by the policy's on_connect")                      \
    X(conns_closed, "connections freed")                                                           \
    X(handshake_failures, "QUIC/TLS handshakes that failed or timed out")                          \
    X(joins, "participants joined a room")                                                         \
    X(leaves, "participants left a room")                                                          \
    X(join_refused_sessions, "joins refused: max sessions reached")                                \
    X(join_refused_signature, "joins refused: bad CallOffer signature")                            \
    X(join_refused_protocol, "joins refused: unexpected or malformed signal")                      \
    X(join_refused_auth, "joins refused: AuthToken while auth is off")                             \
    X(join_refused_policy, "joins refused by the policy (on_join / on_action)")                    \
    X(join_refused_draining, "joins refused: the relay is draining")                               \
    X(join_timeouts, "joins refused: no CallOffer in time")                                        \
    X(signals_received, "signal frames received")                                                  \
    X(signals_malformed, "signal frames that failed to parse")                                     \
    X(signals_oversize, "signal frames over 1 MiB")                                                \
    X(signals_sent, "signal frames queued to clients")                                             \
    X(room_updates_coalesced, "RoomUpdates replaced by a newer one before they were sent")         \
    X(signal_backlog_closes, "connections closed: client not reading signals")                     \
    X(datagrams_received, "media datagrams received")                                              \
    X(datagrams_forwarded, "media datagrams written to receivers")                                 \
    X(bytes_forwarded, "bytes of media datagrams written to receivers")                            \
    X(datagrams_invalid, "media datagrams dropped: invalid header")                                \
    X(datagrams_not_joined, "media datagrams dropped: sender not in a room")                       \
    X(datagrams_not_forwarded, "media datagrams of listeners and muted participants (not sent)")   \
    X(datagrams_queue_drops, "media datagrams dropped: receiver queue full (oldest first)")        \
    X(datagrams_too_big_for_path, "media datagrams dropped: larger than the receiver's path")      \
    X(quality_reports, "quality report trailers processed")                                        \
    X(tier_changes, "participant tier changes")                                                    \
    X(directives_sent, "QualityDirective messages queued")

/*
 * Gauges: what a worker holds right now. The owning worker is the only writer; readers
 * sum over workers. After every client has gone and the closing period has passed, each
 * of them is back at zero (tests/integration/test_churn.c checks it through /metrics).
 */
#define WZP_GAUGE_FIELDS(X)                                                                        \
    X(conns, "QUIC connections the worker owns (any state)")                                       \
    X(cid_entries, "connection IDs in the worker's routing table")                                 \
    X(slots_used, "connection handles in use")                                                     \
    X(signal_bytes, "signal bytes buffered, received and not yet sent")

struct wzp_gauges {
#define WZP_GAUGE_DECLARE(name, help) _Atomic int64_t name;
    WZP_GAUGE_FIELDS(WZP_GAUGE_DECLARE)
#undef WZP_GAUGE_DECLARE
};

/* Upper bounds (seconds) of the handshake-duration histogram, as upstream's. */
#define WZP_HANDSHAKE_BUCKETS                                                                      \
    {                                                                                              \
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5                                    \
    }
#define WZP_HANDSHAKE_NBUCKETS 10

struct wzp_stats {
#define WZP_STATS_DECLARE(name, help) _Atomic uint64_t name;
    WZP_STATS_FIELDS(WZP_STATS_DECLARE)
#undef WZP_STATS_DECLARE
    /* first Initial -> CallAnswer queued, for joined participants */
    _Atomic uint64_t handshake_bucket[WZP_HANDSHAKE_NBUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t handshake_ns_sum;
};

/* Single-writer increment: no locked instruction on the hot path. */
#define WZP_STAT_ADD(st, field, n)                                                                 \
    atomic_store_explicit(&(st)->field,                                                            \
                          atomic_load_explicit(&(st)->field, memory_order_relaxed) + (n),          \
                          memory_order_relaxed)
#define WZP_STAT_INC(st, field) WZP_STAT_ADD(st, field, 1)
#define WZP_GAUGE_ADD(g, field, n)                                                                 \
    atomic_store_explicit(&(g)->field,                                                             \
                          atomic_load_explicit(&(g)->field, memory_order_relaxed) + (n),           \
                          memory_order_relaxed)

#endif
