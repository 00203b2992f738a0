/* tls.c - see tls.h. */
#include "tls.h"

#include "aead.h"
#include "common.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <nettle/hmac.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdlib.h>
#include <string.h>

/* The relay's order decides the cipher (%SERVER_PRECEDENCE): rustls, which real clients run,
 * prefers AES-256-GCM/SHA-384, and AES-128-GCM/SHA-256 is cheaper for every packet's
 * protection and for the handshake's key schedule (SHA-256 has CPU instructions here). */
const char *const wzp_tls_priority =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"
    "+GROUP-SECP384R1:%DISABLE_TLS13_COMPAT_MODE:%SERVER_PRECEDENCE";

int wzp_tls_parse_sni(struct wzp_tls_ctx *ctx, const uint8_t *data, size_t len)
{
    /* ServerNameList: u16 length, then entries of u8 type, u16 length, name. */
    if (len < 2 || (size_t)((data[0] << 8) | data[1]) != len - 2)
        return GNUTLS_E_UNEXPECTED_EXTENSIONS_LENGTH;
    size_t off = 2;
    while (off + 3 <= len) {
        unsigned type = data[off];
        size_t n = (size_t)((data[off + 1] << 8) | data[off + 2]);
        off += 3;
        if (off + n > len)
            return GNUTLS_E_UNEXPECTED_EXTENSIONS_LENGTH;
        if (type == 0 && !ctx->sni_present) {
            ctx->sni_present = true;
            if (n == 0 || n > WZP_SNI_MAX || memchr(data + off, 0, n)) {
                ctx->sni_invalid = true;
            } else {
                for (size_t i = 0; i < n; i++)
                    ctx->sni[i] = (char)tolower(data[off + i]);
                ctx->sni[n] = '\0';
            }
        }
        off += n;
    }
    return off == len ? 0 : GNUTLS_E_UNEXPECTED_EXTENSIONS_LENGTH;
}

/* Skip a length-prefixed vector of lenbytes (1 or 2) at *off; false if it overruns. */
static bool skip_vec(const uint8_t *p, size_t len, size_t *off, unsigned lenbytes)
{
    if (*off + lenbytes > len)
        return false;
    size_t n = lenbytes == 1 ? p[*off] : (size_t)((p[*off] << 8) | p[*off + 1]);
    *off += lenbytes + n;
    return *off <= len;
}

static int client_hello_sni(struct wzp_tls_ctx *ctx, const uint8_t *p, size_t len, bool prefix)
{
    /* legacy_version(2) random(32) session_id<1> cipher_suites<2> compression<1> ext<2> */
    size_t off = 34;
    if (off > len || !skip_vec(p, len, &off, 1) || !skip_vec(p, len, &off, 2) ||
        !skip_vec(p, len, &off, 1) || off + 2 > len)
        return WZP_EINVAL;
    size_t end = off + 2 + (size_t)((p[off] << 8) | p[off + 1]);
    off += 2;
    if (end > len && prefix)
        end = len; /* the rest of the hello is in a later packet */
    if (end > len)
        return WZP_EINVAL;
    while (off + 4 <= end) {
        unsigned type = (unsigned)((p[off] << 8) | p[off + 1]);
        size_t n = (size_t)((p[off + 2] << 8) | p[off + 3]);
        off += 4;
        if (off + n > end)
            return prefix && end == len ? WZP_OK : WZP_EINVAL; /* cut off: not here yet */
        if (type == 0)
            return wzp_tls_parse_sni(ctx, p + off, n) == 0 ? WZP_OK : WZP_EINVAL;
        off += n;
    }
    return WZP_OK;
}

int wzp_tls_client_hello_sni(struct wzp_tls_ctx *ctx, const uint8_t *p, size_t len)
{
    return client_hello_sni(ctx, p, len, false);
}

int wzp_tls_client_hello_sni_prefix(struct wzp_tls_ctx *ctx, const uint8_t *p, size_t len)
{
    return client_hello_sni(ctx, p, len, true);
}

static int client_hello_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                             const gnutls_datum_t *msg)
{
    (void)htype;
    (void)when;
    if (incoming && msg && msg->size) {
        struct wzp_tls_ctx *ctx = gnutls_session_get_ptr(s);
        if (wzp_tls_client_hello_sni(ctx, msg->data, msg->size) != WZP_OK)
            ctx->sni_invalid = true;
        if (ctx->on_client_hello && ctx->on_client_hello(ctx) != 0)
            return GNUTLS_E_USER_ERROR;
    }
    return 0;
}

/* ---------------------------------------------------------------- 1-RTT keys */

/* Header protection contexts of 1-RTT keys are aead.c's contexts (made for the header
 * protection key, used for its AES block only); those of other levels are GnuTLS's.
 * Either kind of context is freed here if it is ours (true), else left to the helper. */
static bool free_own_ctx(void **native_handle)
{
    if (!*native_handle || !wzp_aead_is(*native_handle))
        return false;
    wzp_aead_free(*native_handle);
    *native_handle = NULL;
    return true;
}

int wzp_tls_hp_mask(uint8_t *dest, const ngtcp2_crypto_cipher *hp,
                    const ngtcp2_crypto_cipher_ctx *hp_ctx, const uint8_t *sample)
{
    if (!wzp_aead_is(hp_ctx->native_handle))
        return ngtcp2_crypto_hp_mask_cb(dest, hp, hp_ctx, sample);
    uint8_t block[16];
    wzp_aead_block(hp_ctx->native_handle, block, sample); /* RFC 9001 5.4.3 */
    memcpy(dest, block, NGTCP2_HP_MASKLEN);
    return 0;
}

void wzp_tls_delete_cipher_ctx(ngtcp2_conn *conn, ngtcp2_crypto_cipher_ctx *cipher_ctx,
                               void *user_data)
{
    if (!free_own_ctx(&cipher_ctx->native_handle))
        ngtcp2_crypto_delete_crypto_cipher_ctx_cb(conn, cipher_ctx, user_data);
}

void wzp_tls_expand_label_sha256(const uint8_t secret[32], const char *label, uint8_t *out,
                                 size_t out_len)
{
    /* HkdfLabel: u16 length, u8 label length, "tls13 " label, u8 context length (0); with
     * out_len <= 32 HKDF-Expand is the one block HMAC(secret, HkdfLabel || 0x01). */
    uint8_t info[2 + 1 + 255 + 1 + 1];
    size_t n = strlen(label);
    WZP_BUG_ON(out_len > SHA256_DIGEST_SIZE || n > 249);
    info[0] = 0;
    info[1] = (uint8_t)out_len;
    info[2] = (uint8_t)(6 + n);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, n);
    info[9 + n] = 0;
    info[10 + n] = 1;
    struct hmac_sha256_ctx h;
    uint8_t t[SHA256_DIGEST_SIZE];
    hmac_sha256_set_key(&h, 32, secret);
    hmac_sha256_update(&h, 11 + n, info);
    hmac_sha256_digest(&h, sizeof t, t);
    memcpy(out, t, out_len);
    memset(t, 0, sizeof t);
    memset(&h, 0, sizeof h);
}

/* ngtcp2 passes AEAD contexts of every level here: ours (1-RTT) are told apart by their
 * first word, GnuTLS's (Initial, Handshake, or a CPU without AES-NI) go to the helper. */
int wzp_tls_encrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                    const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *plaintext,
                    size_t plaintextlen, const uint8_t *nonce, size_t noncelen, const uint8_t *aad,
                    size_t aadlen)
{
    if (!wzp_aead_is(aead_ctx->native_handle))
        return ngtcp2_crypto_encrypt_cb(dest, aead, aead_ctx, plaintext, plaintextlen, nonce,
                                        noncelen, aad, aadlen);
    if (noncelen != WZP_AEAD_NONCELEN)
        return -1;
    wzp_aead_seal(aead_ctx->native_handle, dest, plaintext, plaintextlen, nonce, aad, aadlen);
    return 0;
}

int wzp_tls_decrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                    const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *ciphertext,
                    size_t ciphertextlen, const uint8_t *nonce, size_t noncelen, const uint8_t *aad,
                    size_t aadlen)
{
    if (!wzp_aead_is(aead_ctx->native_handle))
        return ngtcp2_crypto_decrypt_cb(dest, aead, aead_ctx, ciphertext, ciphertextlen, nonce,
                                        noncelen, aad, aadlen);
    if (noncelen != WZP_AEAD_NONCELEN)
        return -1;
    return wzp_aead_open(aead_ctx->native_handle, dest, ciphertext, ciphertextlen, nonce, aad,
                         aadlen);
}

void wzp_tls_delete_aead_ctx(ngtcp2_conn *conn, ngtcp2_crypto_aead_ctx *aead_ctx, void *user_data)
{
    if (!free_own_ctx(&aead_ctx->native_handle))
        ngtcp2_crypto_delete_crypto_aead_ctx_cb(conn, aead_ctx, user_data);
}

/* Does the relay protect conn's 1-RTT packets itself: QUIC v1 with TLS_AES_128_GCM_SHA256
 * (32-byte secrets), on a CPU with the instructions aead.c needs and not turned off
 * (WZP_AEAD=gnutls)? Otherwise ngtcp2's helper does it all with GnuTLS. */
static bool own_suite(ngtcp2_conn *conn, size_t secretlen)
{
    const ngtcp2_crypto_ctx *ctx = ngtcp2_conn_get_crypto_ctx(conn);
    return wzp_aead_available() &&
           ngtcp2_conn_get_negotiated_version(conn) == NGTCP2_PROTO_VER_V1 && secretlen == 32 &&
           ctx->aead.native_handle == (void *)GNUTLS_CIPHER_AES_128_GCM &&
           ctx->hp.native_handle == (void *)GNUTLS_CIPHER_AES_128_CBC &&
           ctx->md.native_handle == (void *)GNUTLS_DIG_SHA256;
}

/* Packet protection key and IV of a 1-RTT secret (RFC 9001 5.1), and our AEAD context for
 * the key. */
static int packet_keys(const uint8_t secret[32], ngtcp2_crypto_aead_ctx *aead_ctx, uint8_t iv[12])
{
    uint8_t key[16];
    wzp_tls_expand_label_sha256(secret, "quic key", key, sizeof key);
    wzp_tls_expand_label_sha256(secret, "quic iv", iv, 12);
    aead_ctx->native_handle = wzp_aead_new(key);
    memset(key, 0, sizeof key);
    return aead_ctx->native_handle ? 0 : -1;
}

/*
 * A key update (RFC 9001 6): the next secrets ("quic ku") and their keys, for our suite
 * with our contexts; other suites to the helper. On failure nothing is left allocated.
 */
int wzp_tls_update_key(ngtcp2_conn *conn, uint8_t *rx_secret, uint8_t *tx_secret,
                       ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                       ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                       const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                       size_t secretlen, void *user_data)
{
    if (!own_suite(conn, secretlen))
        return ngtcp2_crypto_update_key_cb(conn, rx_secret, tx_secret, rx_aead_ctx, rx_iv,
                                           tx_aead_ctx, tx_iv, current_rx_secret, current_tx_secret,
                                           secretlen, user_data);
    wzp_tls_expand_label_sha256(current_rx_secret, "quic ku", rx_secret, 32);
    wzp_tls_expand_label_sha256(current_tx_secret, "quic ku", tx_secret, 32);
    if (packet_keys(rx_secret, rx_aead_ctx, rx_iv) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (packet_keys(tx_secret, tx_aead_ctx, tx_iv) != 0) {
        wzp_tls_delete_aead_ctx(conn, rx_aead_ctx, user_data);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

/*
 * Install one direction's 1-RTT keys with our contexts, or return 1 to leave the level to
 * ngtcp2's helper (another suite or QUIC version, or no AES-NI). Header protection keys never
 * change; key updates (wzp_tls_update_key) make new AEAD contexts.
 */
static int install_1rtt(struct wzp_tls_ctx *ctx, ngtcp2_conn *conn, bool rx, const uint8_t *secret,
                        size_t secretlen)
{
    if (!own_suite(conn, secretlen))
        return 1;
    uint8_t iv[12], hp_key[16];
    wzp_tls_expand_label_sha256(secret, "quic hp", hp_key, sizeof hp_key);
    ngtcp2_crypto_aead_ctx aead_ctx = {0};
    ngtcp2_crypto_cipher_ctx hp_ctx = {wzp_aead_new(hp_key)}; /* its AES block only */
    int rv = -1;
    if (hp_ctx.native_handle && packet_keys(secret, &aead_ctx, iv) == 0)
        rv = rx ? ngtcp2_conn_install_rx_key(conn, secret, secretlen, &aead_ctx, iv, sizeof iv,
                                             &hp_ctx)
                : ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, iv, sizeof iv,
                                             &hp_ctx);
    if (rv != 0) {
        if (aead_ctx.native_handle)
            wzp_tls_delete_aead_ctx(conn, &aead_ctx, NULL);
        wzp_tls_delete_cipher_ctx(conn, &hp_ctx, NULL);
        rv = -1;
    } else if (!rx && ctx->tx_contexts) {
        ctx->tx_contexts[0] = aead_ctx.native_handle;
        ctx->tx_contexts[1] = hp_ctx.native_handle;
    }
    memset(hp_key, 0, sizeof hp_key);
    return rv;
}

/* One direction of one level: 1-RTT to install_1rtt, the rest (and what it declines) to
 * ngtcp2's helper, as the helper's own secret function would. */
static int install_secret(struct wzp_tls_ctx *ctx, ngtcp2_conn *conn, bool rx,
                          ngtcp2_crypto_level level, const uint8_t *secret, size_t secretlen)
{
    int rv = level == NGTCP2_CRYPTO_LEVEL_APPLICATION
                 ? install_1rtt(ctx, conn, rx, secret, secretlen)
                 : 1;
    if (rv == 1)
        rv = rx ? ngtcp2_crypto_derive_and_install_rx_key(conn, NULL, NULL, NULL, level, secret,
                                                          secretlen)
                : ngtcp2_crypto_derive_and_install_tx_key(conn, NULL, NULL, NULL, level, secret,
                                                          secretlen);
    return rv;
}

/* GnuTLS hands over each level's secrets, either direction possibly absent. */
static int secret_func(gnutls_session_t session, gnutls_record_encryption_level_t gtls_level,
                       const void *rx_secret, const void *tx_secret, size_t secretlen)
{
    ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
    ngtcp2_conn *conn = ref->get_conn(ref);
    ngtcp2_crypto_level level =
        ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(gtls_level);
    struct wzp_tls_ctx *ctx = (struct wzp_tls_ctx *)ref; /* conn_ref is its first member */
    if (rx_secret && install_secret(ctx, conn, true, level, rx_secret, secretlen) != 0)
        return -1;
    if (tx_secret && install_secret(ctx, conn, false, level, tx_secret, secretlen) != 0)
        return -1;
    return 0;
}

int wzp_tls_server_session(gnutls_session_t *out, gnutls_certificate_credentials_t cred,
                           gnutls_priority_t prio, struct wzp_tls_ctx *ctx)
{
    gnutls_session_t s;
    if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_AUTO_SEND_TICKET |
                            GNUTLS_NO_END_OF_EARLY_DATA) != 0)
        return WZP_ECRYPTO;
    gnutls_datum_t alpn = {(unsigned char *)WZP_ALPN, sizeof WZP_ALPN - 1};
    if (gnutls_priority_set(s, prio) != 0 || ngtcp2_crypto_gnutls_configure_server_session(s) ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) != 0 ||
        gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0) {
        gnutls_deinit(s);
        return WZP_ECRYPTO;
    }
    gnutls_session_set_ptr(s, &ctx->conn_ref);
    gnutls_handshake_set_secret_function(s, secret_func); /* after the helper's: replaces it */
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_PRE,
                                       client_hello_hook);
    *out = s;
    return WZP_OK;
}

bool wzp_tls_alpn_ok(gnutls_session_t s)
{
    gnutls_datum_t p;
    if (gnutls_alpn_get_selected_protocol(s, &p) != 0)
        return false;
    return p.size == sizeof WZP_ALPN - 1 && memcmp(p.data, WZP_ALPN, p.size) == 0;
}

/* ---------------------------------------------------------------- reserved-name probe */

/* One direction of the in-memory handshake: bytes written by one side, read by the other. */
struct pipe {
    uint8_t buf[16384];
    size_t len;
};

struct probe_end {
    struct pipe *in, *out;
};

static ssize_t probe_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    struct probe_end *e = p;
    if (len > sizeof e->out->buf - e->out->len)
        len = sizeof e->out->buf - e->out->len;
    memcpy(e->out->buf + e->out->len, data, len);
    e->out->len += len;
    return (ssize_t)len;
}

static ssize_t probe_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
    struct probe_end *e = p;
    if (e->in->len == 0) {
        errno = EAGAIN;
        return -1;
    }
    if (len > e->in->len)
        len = e->in->len;
    memcpy(data, e->in->buf, len);
    memmove(e->in->buf, e->in->buf + len, e->in->len - len);
    e->in->len -= len;
    return (ssize_t)len;
}

static int probe_session(gnutls_session_t *s, unsigned flags, gnutls_certificate_credentials_t cred,
                         struct probe_end *end)
{
    if (gnutls_init(s, flags | GNUTLS_NONBLOCK) != 0)
        return WZP_ECRYPTO;
    gnutls_transport_set_ptr(*s, end);
    gnutls_transport_set_push_function(*s, probe_push);
    gnutls_transport_set_pull_function(*s, probe_pull);
    if (gnutls_priority_set_direct(*s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL) != 0 ||
        gnutls_credentials_set(*s, GNUTLS_CRD_CERTIFICATE, cred) != 0)
        return WZP_ECRYPTO;
    return WZP_OK;
}

int wzp_tls_probe_reserved_names(gnutls_certificate_credentials_t server_cred)
{
    gnutls_certificate_credentials_t client_cred = NULL;
    gnutls_session_t client = NULL, server = NULL;
    static struct pipe to_server, to_client;
    to_server.len = to_client.len = 0;
    struct probe_end client_end = {&to_client, &to_server}, server_end = {&to_server, &to_client};
    int rv = WZP_ECRYPTO;
    if (gnutls_certificate_allocate_credentials(&client_cred) != 0 ||
        probe_session(&client, GNUTLS_CLIENT, client_cred, &client_end) != WZP_OK ||
        probe_session(&server, GNUTLS_SERVER, server_cred, &server_end) != WZP_OK ||
        gnutls_server_name_set(client, GNUTLS_NAME_DNS, "_signal", 7) != 0)
        goto out;
    /* The client's ClientHello, then the server's answer to it: a library that refuses
     * the name fails right there; one that accepts it answers with its ServerHello. */
    int crv = gnutls_handshake(client);
    if (crv != GNUTLS_E_AGAIN || to_server.len == 0)
        goto out;
    int srv = gnutls_handshake(server);
    if (srv == GNUTLS_E_AGAIN && to_client.len > 0)
        rv = WZP_OK;
    else if (srv == GNUTLS_E_RECEIVED_DISALLOWED_NAME || srv == GNUTLS_E_ILLEGAL_PARAMETER ||
             srv == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER || srv < 0)
        rv = WZP_EINVAL;
out:
    if (client)
        gnutls_deinit(client);
    if (server)
        gnutls_deinit(server);
    if (client_cred)
        gnutls_certificate_free_credentials(client_cred);
    return rv;
}

const char *wzp_tls_library(void)
{
    static char where[512];
    Dl_info info;
    const char *file =
        dladdr((void *)gnutls_global_init, &info) && info.dli_fname ? info.dli_fname : "?";
    snprintf(where, sizeof where, "GnuTLS %s (%s)", gnutls_check_version(NULL), file);
    return where;
}
