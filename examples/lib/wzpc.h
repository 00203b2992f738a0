/*
 * wzpc.h - a WarzonePhone client over ngtcp2 + GnuTLS + libev.
 *
 * Used by examples/wzp-client, the load generator and the integration tests. Several
 * clients may share one libev loop; everything runs on the thread that runs the loop.
 * A client is one QUIC connection: SNI = room (or "ping", "version", ...), ALPN "wzp",
 * signals as one JSON frame per bidi stream, media as QUIC DATAGRAMs.
 *
 * Room flow when cfg.auto_join is true: after the QUIC handshake the client sends
 * AuthToken (if cfg.auth_token) and a signed CallOffer, verifies the CallAnswer and
 * enters WZPC_JOINED. Every signal received (including the CallAnswer) is reported via
 * on_signal, in the order the relay opened the streams.
 */
#ifndef WZPC_H
#define WZPC_H

#include "signal_codec.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

enum wzpc_state {
    WZPC_CONNECTING = 0, /* QUIC/TLS handshake in progress */
    WZPC_CONNECTED,      /* QUIC handshake complete (ALPN wzp negotiated) */
    WZPC_JOINED,         /* CallAnswer received and its signature verified */
    WZPC_CLOSED,         /* closed by either side, timed out or failed */
};

struct wzpc_client;
struct wzpc_mux;

struct wzpc_config {
    struct ev_loop *loop;
    const char *host; /* IPv4 or IPv6 literal, e.g. "127.0.0.1" */
    uint16_t port;
    const char *sni;              /* TLS server name (room); NULL = send no SNI */
    const char *alpn;             /* NULL = "wzp"; "" = offer no ALPN (tests) */
    const uint8_t *seed;          /* 32-byte identity seed; NULL = random */
    const char *alias;            /* CallOffer alias; may be NULL */
    const char *auth_token;       /* send AuthToken before CallOffer; NULL = don't */
    bool auto_join;               /* send CallOffer after the handshake */
    bool corrupt_offer_signature; /* tests: flip a bit in the CallOffer signature */
    /* Acknowledge like quinn (what real WZP clients run): an ACK right after every
     * ack-eliciting packet, each written at once, instead of one ACK per received batch
     * and ngtcp2's every-second-packet rule (doc/BENCHMARKS.md, "Real clients"). */
    bool ack_every_packet;
    uint32_t idle_timeout_ms; /* 0 = 30000 */
    /* The largest DATAGRAM frame this client accepts (transport parameter); 0 = 65535. */
    uint32_t max_datagram_frame_size;

    /* Callbacks (any may be NULL). The signal is only valid during the call. */
    void (*on_state)(struct wzpc_client *c, enum wzpc_state state, void *user_data);
    void (*on_signal)(struct wzpc_client *c, const struct wzp_signal *sig, void *user_data);
    void (*on_datagram)(struct wzpc_client *c, const uint8_t *data, size_t len, void *user_data);
    /* Raw bytes of a unidirectional stream from the relay when it ends (SNI "version"). */
    void (*on_uni_stream)(struct wzpc_client *c, const uint8_t *data, size_t len, void *user_data);
    void *user_data;

    /* Optional: share the UDP sockets of this mux (see wzpc_mux_new) instead of opening
     * one per client. NULL = own socket (the default). Needs the same loop, host and
     * port as the mux. */
    struct wzpc_mux *mux;
};

struct wzpc_stats {
    uint64_t datagrams_sent;
    uint64_t datagrams_send_dropped; /* local queue full / too big / not allowed yet */
    uint64_t datagrams_received;
    uint64_t signals_sent;
    uint64_t signals_received;
    uint64_t signals_unparsable;
};

/*
 * Shared sockets, an opt-in for load generators: nsockets UDP sockets (each with its own
 * source port, connected to host:port) that any number of clients on this loop share.
 * A client's connection IDs encode its slot in the mux, so received packets are routed
 * by destination connection ID; each socket is drained with recvmmsg. The packets the
 * clients write queue per socket and go out with one sendmmsg (equal-sized ones as one
 * UDP GSO message) when a few have queued, and in any case before the loop blocks.
 * What the relay sees per connection is the same QUIC as with one socket per client,
 * except that several connections share a UDP 4-tuple and arrivals are burstier (the
 * relay routes by connection ID anyway; a relay with SO_REUSEPORT workers hashes the
 * 4-tuple, so use well more sockets than it has workers; fewer sockets batch more).
 * Limitation: a stateless reset is not recognised (it carries no usable connection ID);
 * such a client ends by its idle timeout.
 * The mux must outlive its clients: wzpc_free them all before wzpc_mux_free.
 */
struct wzpc_mux *wzpc_mux_new(struct ev_loop *loop, const char *host, uint16_t port,
                              unsigned nsockets);
void wzpc_mux_free(struct wzpc_mux *m);

/* Start connecting. NULL on immediate failure (bad address, socket error). */
struct wzpc_client *wzpc_connect(const struct wzpc_config *cfg);

enum wzpc_state wzpc_state(const struct wzpc_client *c);

/*
 * The send calls below only queue (and copy): the bytes go out on the next iteration of
 * the loop. Signals queued before WZPC_CONNECTED wait for the handshake.
 */

/* Send one signal on a new bidi stream (4-byte BE length + JSON, then FIN). */
int wzpc_send_signal(struct wzpc_client *c, const struct wzp_signal *sig);

/* Join now (the AuthToken if configured, then the signed CallOffer), for a client made
 * with auto_join false; WZP_ESTATE unless it is WZPC_CONNECTED. */
int wzpc_join(struct wzpc_client *c);

/* Tests: send arbitrary bytes on a new bidi stream, with or without FIN. */
int wzpc_send_stream_raw(struct wzpc_client *c, const uint8_t *data, size_t len, bool fin);

/* Queue one datagram (copied). WZP_EFULL when the local queue is full. */
int wzpc_send_datagram(struct wzpc_client *c, const uint8_t *data, size_t len);

/* Tests: send len bytes as a TLS message in 1-RTT CRYPTO frames, which no real client
 * does after the handshake (the relay must refuse it). */
int wzpc_send_crypto_after_handshake(struct wzpc_client *c, const uint8_t *data, size_t len);

/* Tests: start a QUIC key update (RFC 9001 6): the next packets use the next key phase.
 * WZP_ESTATE before the handshake is confirmed or while the last update is unconfirmed. */
int wzpc_initiate_key_update(struct wzpc_client *c);

/*
 * Tests: simulate a NAT rebinding. Moves to a new UDP socket (new source port) without
 * telling QUIC, so the relay sees the same connection arrive from a new address.
 * A client on a mux moves to the mux's next socket (WZP_ESTATE if it has only one).
 */
int wzpc_rebind(struct wzpc_client *c);

/* Close with an application error code and reason; the client ends in WZPC_CLOSED. */
void wzpc_close(struct wzpc_client *c, uint64_t app_code, const char *reason);

/*
 * After WZPC_CLOSED: how the connection ended. *by_peer is true if the relay sent
 * CONNECTION_CLOSE, false if this client sent it (wzpc_close, or a local QUIC/TLS
 * error); *is_app tells an application close from a transport one.
 * Returns false if no close frame was seen (idle or handshake timeout, stateless reset,
 * connection dropped).
 */
bool wzpc_close_info(const struct wzpc_client *c, bool *by_peer, bool *is_app, uint64_t *code,
                     char *reason, size_t reasonlen);

const struct wzpc_stats *wzpc_stats(const struct wzpc_client *c);

/* The latest RTT sample of the connection (ngtcp2's latest_rtt: send to ACK, the peer's
 * ACK delay included), or 0 before the handshake. */
uint64_t wzpc_latest_rtt_ns(const struct wzpc_client *c);

/* Only during on_datagram: when the kernel received the UDP packet that carried the
 * datagram (SO_TIMESTAMPNS, on wzp_now_ns()'s CLOCK_MONOTONIC), or 0 if unknown. Unlike
 * the time of the callback, it excludes how long the packet waited for this loop. */
uint64_t wzpc_rx_time_ns(const struct wzpc_client *c);

/* Kernel receive timestamps on any UDP socket (the raw-UDP baseline uses these too):
 * enable them (SO_TIMESTAMPNS); CLOCK_MONOTONIC minus CLOCK_REALTIME now; the receive
 * time carried by one received message (its control buffer must have room for a
 * struct timespec) moved to CLOCK_MONOTONIC, or 0 if it carries none. */
struct msghdr;
void wzpc_enable_rx_timestamps(int fd);
int64_t wzpc_mono_minus_real_ns(void);
uint64_t wzpc_msg_rx_time_ns(struct msghdr *h, int64_t mono_minus_real);

/* The client's identity fingerprint ("xxxx:...", 39 chars). */
const char *wzpc_fingerprint(const struct wzpc_client *c);

/* Release everything; sends nothing. Safe in any state (not from a callback). */
void wzpc_free(struct wzpc_client *c);

/*
 * Run the loop until done(arg) returns true or timeout_ms passes.
 * Returns true if done() became true.
 */
bool wzpc_run_until(struct ev_loop *loop, bool (*done)(void *arg), void *arg, uint32_t timeout_ms);

/* Run the loop for a fixed time (lets traffic settle). */
void wzpc_run_for(struct ev_loop *loop, uint32_t ms);

/*
 * The first Initial of n real clients (SNI sni, each with its own connection IDs and
 * key share) into pkts[i] / lens[i], captured on a socket of our own that never answers:
 * the datagrams a client sends before it hears from a server, for replaying as a
 * handshake flood in tests and load tools. Returns how many were captured within
 * timeout_ms (n unless something failed).
 */
#define WZPC_INITIAL_MAX 1500
size_t wzpc_capture_initials(const char *sni, size_t n, uint8_t (*pkts)[WZPC_INITIAL_MAX],
                             size_t *lens, uint32_t timeout_ms);

#endif
