/*
 * stats.h - relay counters. Each worker owns one struct wzp_stats and is its only
 * writer; readers (the stats log line, /metrics) sum over workers with relaxed loads.
 *
 * The X-macro list below is the single place a counter is declared, named, described and
 * exported: X(field, family, label, help). The field is the C name (also the key of the
 * SIGUSR1 stats line); family names the Prometheus metric it is a series of, one of
 * WZP_STATS_FAMILIES; label is the value of that family's label ("" for a family without
 * one). /metrics is generated from these two lists (admin.c), so a counter added here is
 * exported without another edit.
 */
#ifndef WZP_STATS_H
#define WZP_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/*
 * Metric families: F(family, label_name, per_worker, help). The metric is
 * wzp_relay_<family>_total (a counter). label_name names the label whose value each
 * series gives ("" = no label). per_worker: one series per worker, labelled worker="N",
 * instead of the sum. Families print in this order.
 */
#define WZP_STATS_FAMILIES(F)                                                                      \
    F(packets_forwarded, "", 0, "Media datagrams written to receivers (one per receiver).")        \
    F(bytes_forwarded, "", 0, "Bytes of media datagrams written to receivers (whole datagrams).")  \
    F(datagrams_received, "", 0, "Media datagrams received from participants.")                    \
    F(datagrams_dropped, "reason", 0, "Media datagrams not forwarded, by reason.")                 \
    F(refusals, "reason", 0, "Connections and joins refused, by reason.")                          \
    F(initials_dropped, "reason", 0,                                                               \
      "Client Initials dropped before any connection state, by reason.")                           \
    F(packets_dropped, "reason", 0,                                                                \
      "UDP packets dropped before reaching a connection, by reason.")                              \
    F(worker_packets_received, "", 1, "UDP packets received, per worker.")                         \
    F(worker_packets_sent, "", 1, "UDP packets sent (each GSO segment counts), per worker.")       \
    F(worker_gso_messages, "", 1,                                                                  \
      "GSO sends (several packets to one receiver in one message), per worker.")                   \
    F(worker_gso_segments, "", 1, "UDP packets sent inside GSO sends, per worker.")                \
    F(worker_send_errors, "", 1, "UDP packets not sent because the send failed, per worker.")      \
    F(worker_gro_messages, "", 1,                                                                  \
      "GRO receives (several packets from one sender in one message), per worker.")                \
    F(worker_gro_segments, "", 1, "UDP packets received inside GRO receives, per worker.")         \
    F(worker_receive_batches, "", 1,                                                               \
      "Socket reads that returned packets (packets received / this = packets per read).")          \
    F(packets_steered, "", 0, "Packets handed to the worker that owns their connection.")          \
    F(packets_steered_in, "", 0, "Packets received from another worker's socket.")                 \
    F(packets_handed_over, "", 0,                                                                  \
      "Packets of new connections handed to the worker serving their room.")                       \
    F(cross_worker_media_messages, "", 0,                                                          \
      "Media messages sent to another worker (one payload, its receivers there).")                 \
    F(peer_wakeups, "result", 0,                                                                   \
      "Wake-ups of another worker: sent, or skipped because it was busy and drains first.")        \
    F(version_negotiations, "", 0, "Version Negotiation packets sent.")                            \
    F(retries_sent, "", 0, "Retry packets sent: new connections asked to prove their address.")    \
    F(retry_tokens, "result", 0, "Initials carrying a Retry token, by result (valid, invalid).")   \
    F(stateless_resets, "", 0, "Stateless Reset packets sent.")                                    \
    F(connections_accepted, "", 0, "QUIC connections accepted.")                                   \
    F(connections_closed, "", 0, "QUIC connections freed.")                                        \
    F(handshake_failures, "", 0, "QUIC/TLS handshakes that failed or timed out.")                  \
    F(joins, "", 0, "Participants that joined a room.")                                            \
    F(presence, "event", 0, "_signal presence registrations, by event.")                           \
    F(reflects, "", 0, "Reflect requests answered (a client's address as seen here).")             \
    F(direct_calls, "outcome", 0, "Direct calls through _signal, by outcome.")                     \
    F(policy_shadow_calls, "result", 0,                                                            \
      "Shadow policy calls: agreed or disagreed with the live policy, or skipped.")                \
    F(policy_shadow_disagreements, "hook", 0, "Shadow policy decisions that differ, by hook.")     \
    F(auth_attempts, "result", 0, "featherChat token validations, by result (ok, fail).")          \
    F(auth_failures, "reason", 0, "featherChat authentications that failed, by reason.")           \
    F(call_signals_ignored, "reason", 0,                                                           \
      "Direct-call signals not acted on (unknown call, sender not a party, answered already).")    \
    F(leaves, "", 0, "Participants that left a room.")                                             \
    F(signals_received, "", 0, "Signal frames received.")                                          \
    F(signals_malformed, "", 0, "Signal frames that failed to parse.")                             \
    F(signals_sent, "", 0, "Signal frames queued to clients.")                                     \
    F(room_updates_coalesced, "", 0, "RoomUpdates replaced by a newer one before they were sent.") \
    F(quality_reports, "", 0, "Quality report trailers processed.")                                \
    F(tier_changes, "", 0, "Participant quality tier changes.")                                    \
    F(directives_sent, "", 0, "QualityDirective messages queued.")

#define WZP_STATS_FIELDS(X)                                                                        \
    X(udp_rx_packets, worker_packets_received, "", "UDP packets received")                         \
    X(udp_tx_packets, worker_packets_sent, "", "UDP packets sent (each GSO segment counts)")       \
    X(udp_tx_gso_messages, worker_gso_messages, "",                                                \
      "GSO sends: several packets to one receiver in one message")                                 \
    X(udp_tx_gso_segments, worker_gso_segments, "", "UDP packets sent inside GSO sends")           \
    X(udp_tx_errors, worker_send_errors, "", "UDP packets not sent: the send failed")              \
    X(udp_rx_gro_messages, worker_gro_messages, "",                                                \
      "GRO receives: several packets from one sender in one message")                              \
    X(udp_rx_gro_segments, worker_gro_segments, "", "UDP packets received inside GRO receives")    \
    X(udp_rx_batches, worker_receive_batches, "", "socket reads (recvmmsg) that returned packets") \
    X(packets_undecodable, packets_dropped, "undecodable", "UDP packets that are not QUIC")        \
    X(packets_socket_overflow, packets_dropped, "socket_buffer_full",                              \
      "UDP packets the kernel dropped: the worker's receive buffer was full")                      \
    X(packets_steered_out, packets_steered, "", "packets handed to the owning worker")             \
    X(packets_steered_in, packets_steered_in, "", "packets received from another worker")          \
    X(packets_handed_over, packets_handed_over, "",                                                \
      "packets of new connections handed to the worker serving their room")                        \
    X(fanout_messages_out, cross_worker_media_messages, "",                                        \
      "media messages to another worker (one payload, its receivers there)")                       \
    X(peer_wakeups, peer_wakeups, "sent", "wake-ups sent to another worker")                       \
    X(peer_wakeups_skipped, peer_wakeups, "skipped",                                               \
      "wake-ups not needed: the other worker was busy and drains first")                           \
    X(steer_queue_full, packets_dropped, "cross_worker_queue_full",                                \
      "packets dropped: cross-worker queue full")                                                  \
    X(version_negotiations, version_negotiations, "", "Version Negotiation packets sent")          \
    X(replies_rate_limited, packets_dropped, "reply_rate_limit",                                   \
      "packets not answered: Version Negotiation / Stateless Reset over 100/s per worker")         \
    X(stateless_resets, stateless_resets, "", "Stateless Reset packets sent")                      \
    X(retries_sent, retries_sent, "", "Retry packets sent (address validation)")                   \
    X(retry_tokens_valid, retry_tokens, "valid", "Initials with a valid Retry token")              \
    X(retry_tokens_invalid, retry_tokens, "invalid",                                               \
      "Initials refused: forged, expired or misaddressed Retry token")                             \
    X(initials_token_refused, initials_dropped, "token",                                           \
      "Initials dropped: they carry a token this relay never issued")                              \
    X(initials_short_dcid, initials_dropped, "short_dcid",                                         \
      "Initials dropped: client DCID shorter than 8 bytes")                                        \
    X(conns_accepted, connections_accepted, "", "QUIC connections accepted")                       \
    X(conns_refused_handshakes, refusals, "handshake_limit",                                       \
      "Initials dropped: too many concurrent handshakes")                                          \
    X(conns_refused_limit, refusals, "connection_limit", "Initials dropped: connection limit")     \
    X(conns_refused_addr_handshakes, refusals, "addr_handshake_limit",                             \
      "Initials dropped: too many handshakes from one address")                                    \
    X(conns_refused_addr_limit, refusals, "addr_connection_limit",                                 \
      "Initials dropped: too many connections from one address")                                   \
    X(conns_refused_alpn, refusals, "alpn", "connections refused: ALPN is not wzp")                \
    X(conns_refused_sni, refusals, "sni", "connections refused: reserved or invalid SNI")          \
    X(conns_refused_policy, refusals, "policy_connect",                                            \
      "connections refused by the policy's on_connect")                                            \
    X(conns_closed, connections_closed, "", "connections freed")                                   \
    X(handshake_failures, handshake_failures, "", "QUIC/TLS handshakes that failed or timed out")  \
    X(joins, joins, "", "participants joined a room")                                              \
    X(presence_registered, presence, "registered", "_signal connections registered")               \
    X(presence_replaced, presence, "replaced",                                                     \
      "registrations that replaced the same fingerprint's previous connection")                    \
    X(presence_refused, presence, "refused", "registrations refused: the registry is full")        \
    X(presence_refused_policy, presence, "refused_policy",                                         \
      "registrations refused by the policy (on_register)")                                         \
    X(presence_bad_signature, presence, "bad_signature",                                           \
      "registrations refused: a signature that does not verify")                                   \
    X(reflects, reflects, "", "Reflect requests answered")                                         \
    X(shadow_agreed, policy_shadow_calls, "agreed", "shadow decisions equal to the live ones")     \
    X(shadow_disagreed, policy_shadow_calls, "disagreed", "shadow decisions that differ")          \
    X(shadow_skipped, policy_shadow_calls, "skipped",                                              \
      "shadow calls skipped: the shadow had used its share of the second")                         \
    X(shadow_disagree_connect, policy_shadow_disagreements, "on_connect",                          \
      "on_connect decisions of the shadow that differ")                                            \
    X(shadow_disagree_join, policy_shadow_disagreements, "on_join",                                \
      "on_join decisions of the shadow that differ")                                               \
    X(shadow_disagree_register, policy_shadow_disagreements, "on_register",                        \
      "on_register decisions of the shadow that differ")                                           \
    X(shadow_disagree_call, policy_shadow_disagreements, "on_call",                                \
      "on_call decisions of the shadow that differ")                                               \
    X(auth_ok, auth_attempts, "ok", "AuthTokens the validator accepted")                           \
    X(auth_fail, auth_attempts, "fail", "AuthTokens refused, or no AuthToken where one is needed") \
    X(auth_fail_invalid, auth_failures, "invalid",                                                 \
      "the validator said not valid, or gave no usable fingerprint")                               \
    X(auth_fail_http_error, auth_failures, "http_error",                                           \
      "the validator answered a non-2xx status")                                                   \
    X(auth_fail_timeout, auth_failures, "timeout", "no answer from the validator within 5 s")      \
    X(auth_fail_unreachable, auth_failures, "unreachable",                                         \
      "the validator could not be reached (refused, DNS, TLS)")                                    \
    X(auth_fail_bad_response, auth_failures, "bad_response",                                       \
      "the validator's answer was not JSON or over 64 KiB")                                        \
    X(auth_fail_busy, auth_failures, "busy", "refused: 64 validations in flight on the worker")    \
    X(auth_fail_too_long, auth_failures, "too_long", "AuthToken over 4096 bytes")                  \
    X(auth_fail_no_token, auth_failures, "no_token",                                               \
      "the first signal was not an AuthToken while authentication is on")                          \
    X(calls_ringing, direct_calls, "ringing", "offers forwarded to a registered callee")           \
    X(calls_offline, direct_calls, "offline", "offers to a callee not registered here")            \
    X(calls_busy, direct_calls, "busy", "offers refused: a party is at its call limit")            \
    X(calls_invalid, direct_calls, "invalid",                                                      \
      "offers or answers refused: bad call id or addresses, id in use, calling oneself")           \
    X(calls_relay_full, direct_calls, "relay_full", "offers refused: the call table is full")      \
    X(calls_refused_policy, direct_calls, "policy", "offers refused by the policy (on_call)")      \
    X(calls_accepted, direct_calls, "accepted", "calls accepted by the callee")                    \
    X(calls_rejected, direct_calls, "rejected", "calls rejected by the callee")                    \
    X(calls_ring_timeout, direct_calls, "ring_timeout", "calls not answered in time")              \
    X(calls_setup_timeout, direct_calls, "setup_timeout",                                          \
      "accepted calls that neither joined the call room nor reported a media path in time")        \
    X(calls_hung_up, direct_calls, "hung_up", "calls ended by a Hangup of a party")                \
    X(calls_party_gone, direct_calls, "party_gone",                                                \
      "calls ended because a party's _signal connection went")                                     \
    X(call_signals_unknown, call_signals_ignored, "unknown_call",                                  \
      "call signals naming a call this relay does not know")                                       \
    X(call_signals_not_party, call_signals_ignored, "not_a_party",                                 \
      "call signals from a client that is not a party of the call (or not its callee)")            \
    X(call_signals_answered, call_signals_ignored, "answered_already",                             \
      "answers to a call that was answered already")                                               \
    X(join_refused_call_room, refusals, "call_room",                                               \
      "joins of a call room refused: not a party of an accepted call, or the room is full")        \
    X(leaves, leaves, "", "participants left a room")                                              \
    X(join_refused_sessions, refusals, "max_sessions", "joins refused: max sessions reached")      \
    X(join_refused_signature, refusals, "signature", "joins refused: bad CallOffer signature")     \
    X(join_refused_protocol, refusals, "protocol",                                                 \
      "joins refused: unexpected or malformed signal")                                             \
    X(join_refused_auth, refusals, "auth", "joins refused: AuthToken while auth is off")           \
    X(join_refused_policy, refusals, "policy_join",                                                \
      "joins refused by the policy (on_join / on_action)")                                         \
    X(join_refused_draining, refusals, "draining", "joins refused: the relay is draining")         \
    X(join_timeouts, refusals, "join_timeout", "joins refused: no CallOffer in time")              \
    X(signals_received, signals_received, "", "signal frames received")                            \
    X(signals_malformed, signals_malformed, "", "signal frames that failed to parse")              \
    X(signals_oversize, refusals, "signal_oversize", "signal frames over 1 MiB")                   \
    X(signals_sent, signals_sent, "", "signal frames queued to clients")                           \
    X(room_updates_coalesced, room_updates_coalesced, "",                                          \
      "RoomUpdates replaced by a newer one before they were sent")                                 \
    X(signal_frame_timeouts, refusals, "signal_timeout",                                           \
      "connections closed: a signal frame not completed within 10 s")                              \
    X(signals_relay_full, refusals, "signal_buffers_full",                                         \
      "connections closed: the relay's buffers for incoming signals were full")                    \
    X(signal_backlog_closes, refusals, "signal_backlog",                                           \
      "connections closed: client not reading signals")                                            \
    X(datagrams_received, datagrams_received, "", "media datagrams received")                      \
    X(datagrams_forwarded, packets_forwarded, "", "media datagrams written to receivers")          \
    X(bytes_forwarded, bytes_forwarded, "", "bytes of media datagrams written to receivers")       \
    X(datagrams_invalid, datagrams_dropped, "invalid", "media datagrams dropped: invalid header")  \
    X(datagrams_not_joined, datagrams_dropped, "not_joined",                                       \
      "media datagrams dropped: sender not in a room")                                             \
    X(datagrams_not_forwarded, datagrams_dropped, "listener",                                      \
      "media datagrams of listeners and muted participants (not sent)")                            \
    X(datagrams_queue_drops, datagrams_dropped, "receiver_queue_full",                             \
      "media datagrams dropped: receiver queue full (oldest first)")                               \
    X(datagrams_too_big_for_path, datagrams_dropped, "too_big_for_path",                           \
      "media datagrams dropped: larger than the receiver's path")                                  \
    X(quality_reports, quality_reports, "", "quality report trailers processed")                   \
    X(tier_changes, tier_changes, "", "participant tier changes")                                  \
    X(directives_sent, directives_sent, "", "QualityDirective messages queued")

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
#define WZP_STATS_DECLARE(name, family, label, help) _Atomic uint64_t name;
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
