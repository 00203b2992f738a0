/*
 * tls.h - GnuTLS wiring for the QUIC server side: TLS 1.3 only, ALPN "wzp" mandatory,
 * the identity's Ed25519 certificate. One gnutls_session_t per connection.
 */
#ifndef WZP_TLS_H
#define WZP_TLS_H

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_ALPN "wzp"

/* The priority string QUIC needs (TLS 1.3, AEADs ngtcp2 supports). */
extern const char *const wzp_tls_priority;

#define WZP_SNI_MAX 255

/*
 * Per-connection TLS context. The connection embeds it as its FIRST member, so the
 * conn_ref GnuTLS hands to ngtcp2 is also the connection's address.
 *
 * SNI: we read the server_name extension from the ClientHello ourselves (a GnuTLS
 * handshake hook runs before GnuTLS parses it) and keep the first host_name entry,
 * lower-cased as rustls does on the server side. GnuTLS 3.7 then still validates the
 * name itself and aborts the handshake (illegal_parameter) when it holds anything but
 * letters, digits, '-' and '.': "_signal", "_probe" and "_federation" can never complete
 * a handshake. Its server_name handler cannot be overridden (GNUTLS_E_ALREADY_REGISTERED),
 * so with our own copy of the name the relay can at least log who was refused and why.
 */
struct wzp_tls_ctx {
    ngtcp2_crypto_conn_ref conn_ref; /* first */
    char sni[WZP_SNI_MAX + 1];
    bool sni_present; /* a host_name entry was received */
    bool sni_invalid; /* present but malformed, too long or with a NUL byte */
    /* Called once the ClientHello is read, before any key exchange; non-zero refuses the
     * handshake (the callee records why). May be NULL. */
    int (*on_client_hello)(struct wzp_tls_ctx *ctx);
    /* Where install records the 1-RTT transmit contexts when they are the relay's own ([0]
     * AEAD, [1] header protection), for the connection to prefetch; NULL: nowhere. Key
     * updates do not touch it. */
    const void **tx_contexts;
};

/* Create a server session for ctx (which must outlive it). WZP_ECRYPTO on failure. */
int wzp_tls_server_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                           gnutls_priority_t prio, struct wzp_tls_ctx *ctx);

/* Parse a server_name extension body into ctx (exposed for unit tests). 0 or a
 * GNUTLS_E_* code. */
int wzp_tls_parse_sni(struct wzp_tls_ctx *ctx, const uint8_t *data, size_t len);

/* Find the server_name extension in a ClientHello body and parse it into ctx. */
int wzp_tls_client_hello_sni(struct wzp_tls_ctx *ctx, const uint8_t *hello, size_t len);

/* The same for the first len bytes of a ClientHello whose rest has not arrived: an
 * extension cut off at len is ignored. WZP_OK leaves ctx->sni_present false when the
 * server_name extension is not in those bytes. */
int wzp_tls_client_hello_sni_prefix(struct wzp_tls_ctx *ctx, const uint8_t *hello, size_t len);

/*
 * Does this GnuTLS let a client's server name "_signal" through? An in-memory TLS 1.3
 * handshake (server with server_cred) is run up to the server's answer to the
 * ClientHello. WZP_OK: the name passes and the relay decides itself; WZP_EINVAL: the
 * library refuses it (alert 47), as the system's GnuTLS does; WZP_ECRYPTO: the probe
 * itself failed. Start-up only.
 */
int wzp_tls_probe_reserved_names(gnutls_certificate_credentials_t server_cred);

/* "GnuTLS <version> (<path of the loaded library>)", for the start-up log. */
const char *wzp_tls_library(void);

/*
 * 1-RTT packet protection (QUIC v1, TLS_AES_128_GCM_SHA256, the suite the relay prefers):
 * the relay installs those keys itself (the session's secret function) with contexts of
 * its own (aead.h): AES-128-GCM on the CPU's AES and carry-less multiply instructions, one
 * 256-byte block per key, and for header protection the same kind of context made for the
 * header protection key (its AES round keys). Without those instructions, or with
 * WZP_AEAD=gnutls, ngtcp2's helper keeps the whole level. Both are read and never written
 * per packet; GnuTLS's
 * handles are spread over several allocations, rewritten per packet and cost ~17 cache
 * misses per packet at 1 000 connections (43.3 per delivered datagram of 2.5 packets)
 * (doc/BENCHMARKS.md, "Which memory"). Other levels and suites stay with ngtcp2's helper. ngtcp2's
 * encrypt, decrypt, hp_mask, update_key and delete callbacks must be these, which tell the contexts
 * apart.
 */
int wzp_tls_encrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                    const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *plaintext,
                    size_t plaintextlen, const uint8_t *nonce, size_t noncelen, const uint8_t *aad,
                    size_t aadlen);
int wzp_tls_decrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                    const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *ciphertext,
                    size_t ciphertextlen, const uint8_t *nonce, size_t noncelen, const uint8_t *aad,
                    size_t aadlen);
int wzp_tls_update_key(ngtcp2_conn *conn, uint8_t *rx_secret, uint8_t *tx_secret,
                       ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                       ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                       const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                       size_t secretlen, void *user_data);
void wzp_tls_delete_aead_ctx(ngtcp2_conn *conn, ngtcp2_crypto_aead_ctx *aead_ctx, void *user_data);
int wzp_tls_hp_mask(uint8_t *dest, const ngtcp2_crypto_cipher *hp,
                    const ngtcp2_crypto_cipher_ctx *hp_ctx, const uint8_t *sample);
void wzp_tls_delete_cipher_ctx(ngtcp2_conn *conn, ngtcp2_crypto_cipher_ctx *cipher_ctx,
                               void *user_data);

/* Exposed for unit tests. HKDF-Expand-Label (RFC 8446 7.1, empty context) with
 * HMAC-SHA256, out_len <= 32. */
void wzp_tls_expand_label_sha256(const uint8_t secret[32], const char *label, uint8_t *out,
                                 size_t out_len);

/* True if the negotiated ALPN is exactly "wzp". */
bool wzp_tls_alpn_ok(gnutls_session_t s);

#endif
