/*
 * identity.h - the relay's long-term identity and the WZP key schedule
 * (doc/PROTOCOL.md, "Identity").
 *
 * A 32-byte seed, stored as 64 hex characters in a file (mode 0600), yields:
 *   - Ed25519 signing key   = HKDF-SHA256(salt none, ikm seed, info "warzone-ed25519", 32)
 *   - TLS Ed25519 key       = HKDF-SHA256(salt none, ikm seed, info "wzp-tls-ed25519", 32)
 *   - fingerprint           = SHA-256(Ed25519 pub)[0..16] as "xxxx:xxxx:...:xxxx" (39 chars)
 *   - a self-signed TLS certificate (SAN DNS:localhost) whose DER is identical on every
 *     start with the same seed, so clients' TOFU checks and federation pins stay valid.
 *   - tls fingerprint       = SHA-256(cert DER) as 32 lowercase "xx" pairs joined by ':'
 */
#ifndef WZP_IDENTITY_H
#define WZP_IDENTITY_H

#include "sizes.h"

#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_TLS_FINGERPRINT_LEN 95 /* "xx:" x 32 minus the last colon */

struct wzp_identity {
    uint8_t seed[32];
    uint8_t ed25519_secret[32];
    uint8_t ed25519_public[32];
    uint8_t tls_secret[32];
    uint8_t tls_public[32];
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    char tls_fingerprint[WZP_TLS_FINGERPRINT_LEN + 1];
    uint8_t *cert_der; /* owned; freed by wzp_identity_free */
    size_t cert_der_len;
};

/* HKDF-SHA256 with an empty salt (RFC 5869: a HashLen string of zeros), L <= 255*32. */
void wzp_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t *out,
                     size_t out_len);

/* Derive every key and the certificate from a seed. WZP_ECRYPTO if GnuTLS refuses. */
int wzp_identity_from_seed(struct wzp_identity *id, const uint8_t seed[32]);

/*
 * Load the seed file at path, or create it (and its directory, mode 0700) with a fresh
 * random seed and mode 0600 if it does not exist. A file that exists but does not hold
 * exactly 64 hex digits (surrounding whitespace allowed) is an error: it is never
 * replaced. On error, err receives a message that says what to do.
 */
int wzp_identity_load_or_create(struct wzp_identity *id, const char *path, char *err,
                                size_t errlen);

/* Default seed path: $HOME/.wzp/relay-identity, or ./.wzp/relay-identity without HOME. */
void wzp_identity_default_path(char *out, size_t outlen);

/* Load the certificate and TLS key into GnuTLS credentials (used by the TLS layer). */
int wzp_identity_set_credentials(const struct wzp_identity *id,
                                 gnutls_certificate_credentials_t cred);

void wzp_identity_free(struct wzp_identity *id);

/* Fingerprint string of any Ed25519 public key (out: WZP_FINGERPRINT_LEN + 1 bytes). */
void wzp_fingerprint(const uint8_t pub[32], char *out);

/* Ed25519 helpers over libsodium. verify returns WZP_OK or WZP_ECRYPTO. */
void wzp_ed25519_public(const uint8_t secret[32], uint8_t pub[32]);
void wzp_ed25519_sign(const uint8_t secret[32], const uint8_t pub[32], const uint8_t *msg,
                      size_t len, uint8_t sig[64]);
int wzp_ed25519_verify(const uint8_t pub[32], const uint8_t *msg, size_t len, const uint8_t *sig,
                       size_t sig_len);

/* X25519: public = secret * G; shared = secret * peer. */
void wzp_x25519_public(const uint8_t secret[32], uint8_t pub[32]);
void wzp_x25519_shared(const uint8_t secret[32], const uint8_t peer[32], uint8_t out[32]);

/* Fill buf with cryptographically random bytes (gnutls_rnd, GNUTLS_RND_KEY). */
int wzp_random(void *buf, size_t len);

#endif
