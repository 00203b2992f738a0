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

#define WZP_ALPN "wzp"

/* The priority string QUIC needs (TLS 1.3, AEADs ngtcp2 supports). */
extern const char *const wzp_tls_priority;

/*
 * Create a server session bound to conn_ref (which must outlive the session).
 * WZP_ECRYPTO on failure.
 */
int wzp_tls_server_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                           gnutls_priority_t prio, ngtcp2_crypto_conn_ref *conn_ref);

/* True if the negotiated ALPN is exactly "wzp". */
bool wzp_tls_alpn_ok(gnutls_session_t s);

/*
 * The SNI the client sent, lower-cased into out (NUL-terminated). Returns false if the
 * client sent none, or it does not fit.
 */
bool wzp_tls_sni(gnutls_session_t s, char *out, size_t outlen);

#endif
