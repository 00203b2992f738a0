/*
 * test_identity.c - the identity module: HKDF (RFC 5869), Ed25519 (RFC 8032), X25519, the
 * WarzonePhone protocol's crypto test vectors (the published values upstream's tests
 * check; doc/PROTOCOL.md, "Identity"), the deterministic self-signed TLS
 * certificate (including a real in-memory TLS 1.3 handshake with it) and the seed file
 * (creation, permissions, reload, corrupt files never replaced).
 */
#include "common.h"
#include "identity.h"
#include "tls.h"

#include <criterion/criterion.h>
#include "testutil.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gnutls/x509.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

static void seed_fill(uint8_t seed[32], uint8_t byte)
{
    memset(seed, byte, 32);
}

/* ---- §5.3 vectors and primitives ---- */

#define VEC_ED_SECRET  "c420846dcde8fecab9b1fba9ce5186e5dad835391ad615d2f42cfdd6f52033f9"
#define VEC_ED_PUBLIC  "a37a947ca8cc01976b7859cfb52eec500627d4c1a1e13c5ee6f7aa3b5c706909"
#define VEC_FP         "518e:b935:62fa:9e34:e59c:28b6:7fc2:d384"
#define VEC_X25519_ST  "2fddc15638b1e96c6c88b343bad30fb4972bc942d1e1dafefd0c3412691a138f"
#define VEC_TLS_SECRET "9c4f8c388f636ec07e3d7d942d0fbf715b44a856077a553d73559ed128e48a53"
#define VEC_E          "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13"
#define VEC_E2         "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20"
#define VEC_SHARED     "9e004098efc091d4ec2663b4e9f5cfd4d7064571690b4bea97ab146ab9f35056"
#define VEC_OFFER_SIG                                                                              \
    "420d9b9ea1d77724c83ec5017dbcaf48e8342323ca7c51384796bddda2d780ca"                             \
    "7112f4ad831c070ec75012cc02e5061afd44beb521634ea1f137f84645423c0d"
#define VEC_FP_ZERO "6668:7aad:f862:bd77:6c8f:c18b:8e9f:8e20"

Test(hkdf, rfc5869_case3_empty_salt_and_info)
{
    uint8_t ikm[22], okm[42];
    char hex[2 * 42 + 1];

    memset(ikm, 0x0b, sizeof(ikm));
    wzp_hkdf_sha256(ikm, sizeof(ikm), "", okm, sizeof(okm));
    wzp_hex_encode(okm, sizeof(okm), hex);
    cr_assert_str_eq(hex, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                          "9d201395faa4b61a96c8");
}

Test(hkdf, seed_derivations_match_vectors)
{
    uint8_t seed[32], out[32];

    seed_fill(seed, 0x42);
    wzp_hkdf_sha256(seed, 32, "warzone-ed25519", out, 32);
    assert_bytes_hex(out, 32, VEC_ED_SECRET);
    wzp_hkdf_sha256(seed, 32, "warzone-x25519", out, 32);
    assert_bytes_hex(out, 32, VEC_X25519_ST);
    wzp_hkdf_sha256(seed, 32, "wzp-tls-ed25519", out, 32);
    assert_bytes_hex(out, 32, VEC_TLS_SECRET);
}

Test(identity, from_seed_matches_vectors)
{
    struct wzp_identity id;
    uint8_t seed[32], tls_pub[32];

    seed_fill(seed, 0x42);
    cr_assert_eq(wzp_identity_from_seed(&id, seed), WZP_OK);
    cr_assert_arr_eq(id.seed, seed, 32);
    assert_bytes_hex(id.ed25519_secret, 32, VEC_ED_SECRET);
    assert_bytes_hex(id.ed25519_public, 32, VEC_ED_PUBLIC);
    cr_assert_str_eq(id.fingerprint, VEC_FP);
    assert_bytes_hex(id.tls_secret, 32, VEC_TLS_SECRET);
    wzp_ed25519_public(id.tls_secret, tls_pub);
    cr_assert_arr_eq(id.tls_public, tls_pub, 32);
    cr_assert_neq(memcmp(id.tls_public, id.ed25519_public, 32), 0);
    wzp_identity_free(&id);
    cr_assert_null(id.cert_der);
}

Test(identity, fingerprint_of_zero_key)
{
    uint8_t zero[32] = {0};
    char fp[WZP_FINGERPRINT_LEN + 1];

    memset(fp, 'X', sizeof(fp));
    wzp_fingerprint(zero, fp);
    cr_assert_str_eq(fp, VEC_FP_ZERO);
    cr_assert_eq(strlen(fp), WZP_FINGERPRINT_LEN);
}

Test(x25519, ephemeral_publics_and_shared_secret)
{
    uint8_t e1[32], e2[32], p1[32], p2[32], s12[32], s21[32];

    memset(e1, 0x11, 32);
    memset(e2, 0x22, 32);
    wzp_x25519_public(e1, p1);
    wzp_x25519_public(e2, p2);
    assert_bytes_hex(p1, 32, VEC_E);
    assert_bytes_hex(p2, 32, VEC_E2);
    wzp_x25519_shared(e1, p2, s12);
    wzp_x25519_shared(e2, p1, s21);
    assert_bytes_hex(s12, 32, VEC_SHARED);
    cr_assert_arr_eq(s12, s21, 32);
}

Test(ed25519, offer_signature_vector)
{
    uint8_t secret[32], pub[32], e_secret[32], msg[42], sig[64];

    unhex(VEC_ED_SECRET, secret, 32);
    wzp_ed25519_public(secret, pub);
    assert_bytes_hex(pub, 32, VEC_ED_PUBLIC);
    memset(e_secret, 0x11, 32);
    wzp_x25519_public(e_secret, msg);
    memcpy(msg + 32, "call-offer", 10);
    wzp_ed25519_sign(secret, pub, msg, sizeof(msg), sig);
    assert_bytes_hex(sig, 64, VEC_OFFER_SIG);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 64), WZP_OK);
}

Test(ed25519, rfc8032_test1)
{
    uint8_t secret[32], pub[32], sig[64];

    unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", secret, 32);
    wzp_ed25519_public(secret, pub);
    assert_bytes_hex(pub, 32, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    wzp_ed25519_sign(secret, pub, (const uint8_t *)"", 0, sig);
    assert_bytes_hex(sig, 64,
                     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    cr_assert_eq(wzp_ed25519_verify(pub, (const uint8_t *)"", 0, sig, 64), WZP_OK);
}

Test(ed25519, verify_rejects_bad_signatures)
{
    uint8_t secret[32], pub[32], other[32], msg[16] = "hello, relay!!!", sig[65];

    seed_fill(secret, 0x07);
    wzp_ed25519_public(secret, pub);
    wzp_ed25519_sign(secret, pub, msg, sizeof(msg), sig);
    sig[64] = 0;
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 64), WZP_OK);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 63), WZP_ECRYPTO);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 65), WZP_ECRYPTO);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 0), WZP_ECRYPTO);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), NULL, 64), WZP_ECRYPTO);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg) - 1, sig, 64), WZP_ECRYPTO);
    msg[3] ^= 0x01;
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 64), WZP_ECRYPTO);
    msg[3] ^= 0x01;
    sig[10] ^= 0x80;
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 64), WZP_ECRYPTO);
    sig[10] ^= 0x80;
    seed_fill(secret, 0x08);
    wzp_ed25519_public(secret, other);
    cr_assert_eq(wzp_ed25519_verify(other, msg, sizeof(msg), sig, 64), WZP_ECRYPTO);
}

/* The neutral point as a public key with R = neutral, S = 0 satisfies the bare verification
 * equation for every message (nettle accepted it); a non-canonical S (S + L) is the same
 * signature spelt twice. Both are refused. */
Test(ed25519, verify_rejects_small_order_keys_and_non_canonical_s)
{
    static const uint8_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,       0xd6,
                                  0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, [31] = 0x10};
    uint8_t neutral[32] = {1}, forged[64] = {1}, secret[32], pub[32], sig[64];
    const uint8_t msg[] = "any message";

    cr_assert_eq(wzp_ed25519_verify(neutral, msg, sizeof(msg), forged, 64), WZP_ECRYPTO);

    seed_fill(secret, 0x09);
    wzp_ed25519_public(secret, pub);
    wzp_ed25519_sign(secret, pub, msg, sizeof(msg), sig);
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 64), WZP_OK);
    unsigned carry = 0;
    for (int i = 0; i < 32; i++) { /* S += L, little-endian; S < L so this stays below 2^253 */
        unsigned v = sig[32 + i] + L[i] + carry;
        sig[32 + i] = (uint8_t)v;
        carry = v >> 8;
    }
    cr_assert_eq(wzp_ed25519_verify(pub, msg, sizeof(msg), sig, 64), WZP_ECRYPTO);
}

Test(random, fills_buffers_differently)
{
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};

    cr_assert_eq(wzp_random(a, sizeof(a)), WZP_OK);
    cr_assert_eq(wzp_random(b, sizeof(b)), WZP_OK);
    cr_assert_neq(memcmp(a, zero, 32), 0);
    cr_assert_neq(memcmp(a, b, 32), 0);
}

/* ---- certificate ---- */

static void identity_for(struct wzp_identity *id, uint8_t byte)
{
    uint8_t seed[32];
    seed_fill(seed, byte);
    cr_assert_eq(wzp_identity_from_seed(id, seed), WZP_OK);
    cr_assert_not_null(id->cert_der);
    cr_assert_gt(id->cert_der_len, 100);
}

static gnutls_x509_crt_t import_cert(const struct wzp_identity *id)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t der = {id->cert_der, (unsigned int)id->cert_der_len};

    cr_assert_eq(gnutls_x509_crt_init(&crt), 0);
    cr_assert_eq(gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER), 0);
    return crt;
}

Test(certificate, der_is_deterministic_per_seed)
{
    struct wzp_identity a, b, c;

    identity_for(&a, 0x42);
    identity_for(&b, 0x42);
    identity_for(&c, 0x43);
    cr_assert_eq(a.cert_der_len, b.cert_der_len);
    cr_assert_arr_eq(a.cert_der, b.cert_der, a.cert_der_len);
    cr_assert_str_eq(a.tls_fingerprint, b.tls_fingerprint);
    cr_assert(a.cert_der_len != c.cert_der_len ||
              memcmp(a.cert_der, c.cert_der, a.cert_der_len) != 0);
    cr_assert_str_neq(a.tls_fingerprint, c.tls_fingerprint);
    wzp_identity_free(&a);
    wzp_identity_free(&b);
    wzp_identity_free(&c);
}

Test(certificate, tls_fingerprint_is_sha256_of_der)
{
    struct wzp_identity id;
    gnutls_datum_t der;
    uint8_t digest[32];
    size_t size = sizeof(digest);
    char want[WZP_TLS_FINGERPRINT_LEN + 1];

    identity_for(&id, 0x42);
    der.data = id.cert_der;
    der.size = (unsigned int)id.cert_der_len;
    cr_assert_eq(gnutls_fingerprint(GNUTLS_DIG_SHA256, &der, digest, &size), 0);
    for (size_t i = 0; i < 32; i++)
        snprintf(want + 3 * i, sizeof(want) - 3 * i, i < 31 ? "%02x:" : "%02x", digest[i]);
    cr_assert_str_eq(id.tls_fingerprint, want);
    cr_assert_eq(strlen(id.tls_fingerprint), WZP_TLS_FINGERPRINT_LEN);
    wzp_identity_free(&id);
}

static void assert_cert_key_and_san(gnutls_x509_crt_t crt, const struct wzp_identity *id)
{
    gnutls_datum_t x = {NULL, 0};
    gnutls_ecc_curve_t curve;
    char san[64];
    size_t san_len = sizeof(san);

    cr_assert_eq(gnutls_x509_crt_get_pk_algorithm(crt, NULL), GNUTLS_PK_EDDSA_ED25519);
    cr_assert_eq(gnutls_x509_crt_get_pk_ecc_raw(crt, &curve, &x, NULL), 0);
    cr_assert_eq(curve, GNUTLS_ECC_CURVE_ED25519);
    cr_assert_eq(x.size, 32);
    cr_assert_arr_eq(x.data, id->tls_public, 32);
    gnutls_free(x.data);
    cr_assert_eq(gnutls_x509_crt_get_subject_alt_name(crt, 0, san, &san_len, NULL),
                 GNUTLS_SAN_DNSNAME);
    cr_assert_str_eq(san, "localhost");
    cr_assert_eq(gnutls_x509_crt_check_hostname(crt, "localhost"), 1);
}

static void assert_cert_extensions(gnutls_x509_crt_t crt)
{
    unsigned int ca = 1, critical = 0, usage = 0;
    char oid[64];
    size_t oid_len = sizeof(oid);

    cr_assert_eq(gnutls_x509_crt_get_version(crt), 3);
    cr_assert_eq(gnutls_x509_crt_get_basic_constraints(crt, &critical, &ca, NULL), 0);
    cr_assert_eq(ca, 0);
    cr_assert_eq(gnutls_x509_crt_get_key_usage(crt, &usage, &critical), 0);
    cr_assert_eq(usage, GNUTLS_KEY_DIGITAL_SIGNATURE);
    cr_assert_eq(gnutls_x509_crt_get_key_purpose_oid(crt, 0, oid, &oid_len, NULL), 0);
    cr_assert_str_eq(oid, GNUTLS_KP_TLS_WWW_SERVER);
    cr_assert_eq(gnutls_x509_crt_get_activation_time(crt), (time_t)1577836800);
    cr_assert_eq(gnutls_x509_crt_get_expiration_time(crt), (time_t)67090118400);
    cr_assert_eq(gnutls_x509_crt_get_signature_algorithm(crt), GNUTLS_SIGN_EDDSA_ED25519);
}

Test(certificate, contents_and_self_signature)
{
    struct wzp_identity id;
    gnutls_x509_crt_t crt;
    unsigned int status = ~0u;

    identity_for(&id, 0x42);
    crt = import_cert(&id);
    assert_cert_key_and_san(crt, &id);
    assert_cert_extensions(crt);
    cr_assert_eq(gnutls_x509_crt_check_issuer(crt, crt), 1);
    cr_assert_eq(gnutls_x509_crt_verify(crt, &crt, 1, GNUTLS_VERIFY_DISABLE_CA_SIGN, &status), 0);
    cr_assert_eq(status, 0, "self-signature status 0x%x", status);
    gnutls_x509_crt_deinit(crt);
    wzp_identity_free(&id);
}

Test(certificate, serial_is_positive_and_stable)
{
    struct wzp_identity a, b;
    gnutls_x509_crt_t ca, cb;
    uint8_t sa[32], sb[32];
    size_t la = sizeof(sa), lb = sizeof(sb);

    identity_for(&a, 0x42);
    identity_for(&b, 0x43);
    ca = import_cert(&a);
    cb = import_cert(&b);
    cr_assert_eq(gnutls_x509_crt_get_serial(ca, sa, &la), 0);
    cr_assert_eq(gnutls_x509_crt_get_serial(cb, sb, &lb), 0);
    cr_assert_eq(la, 16);
    cr_assert_eq(sa[0] & 0x80, 0);
    cr_assert_neq(sa[0], 0);
    cr_assert(la != lb || memcmp(sa, sb, la) != 0);
    gnutls_x509_crt_deinit(ca);
    gnutls_x509_crt_deinit(cb);
    wzp_identity_free(&a);
    wzp_identity_free(&b);
}

/* ---- TLS 1.3 handshake in memory ---- */

struct pipe {
    uint8_t data[1 << 16];
    size_t len;
};

struct end {
    gnutls_session_t s;
    struct pipe *in, *out;
};

static ssize_t mem_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    struct end *e = p;
    if (len > sizeof(e->out->data) - e->out->len) {
        gnutls_transport_set_errno(e->s, ENOBUFS);
        return -1;
    }
    memcpy(e->out->data + e->out->len, data, len);
    e->out->len += len;
    return (ssize_t)len;
}

static ssize_t mem_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
    struct end *e = p;
    size_t n = WZP_MIN(len, e->in->len);
    if (n == 0) {
        gnutls_transport_set_errno(e->s, EAGAIN);
        return -1;
    }
    memcpy(data, e->in->data, n);
    memmove(e->in->data, e->in->data + n, e->in->len - n);
    e->in->len -= n;
    return (ssize_t)n;
}

static int mem_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    struct end *e = p;
    return e->in->len > 0 ? 1 : 0;
}

static void end_init(struct end *e, unsigned int flags, gnutls_certificate_credentials_t cred)
{
    cr_assert_eq(gnutls_init(&e->s, flags | GNUTLS_NONBLOCK), 0);
    cr_assert_eq(gnutls_priority_set_direct(e->s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL), 0);
    cr_assert_eq(gnutls_credentials_set(e->s, GNUTLS_CRD_CERTIFICATE, cred), 0);
    gnutls_transport_set_ptr(e->s, e);
    gnutls_transport_set_push_function(e->s, mem_push);
    gnutls_transport_set_pull_function(e->s, mem_pull);
    gnutls_transport_set_pull_timeout_function(e->s, mem_pull_timeout);
    gnutls_handshake_set_timeout(e->s, 0);
}

/* Drive both handshakes until done or fatal; returns the client's final code. */
static int run_handshake(struct end *c, struct end *s)
{
    int rc_c = GNUTLS_E_AGAIN, rc_s = GNUTLS_E_AGAIN;

    for (int i = 0; i < 50 && (rc_c != 0 || rc_s != 0); i++) {
        if (rc_c != 0)
            rc_c = gnutls_handshake(c->s);
        if (rc_s != 0)
            rc_s = gnutls_handshake(s->s);
        if (gnutls_error_is_fatal(rc_c) || gnutls_error_is_fatal(rc_s))
            return rc_c != 0 ? rc_c : rc_s;
    }
    return rc_c != 0 ? rc_c : rc_s;
}

struct tls_pair {
    struct pipe c2s, s2c;
    struct end client, server;
    gnutls_certificate_credentials_t ccred, scred;
};

/* Server presents server_id; the client trusts only trusted_id's certificate. */
static struct tls_pair *tls_pair_new(const struct wzp_identity *server_id,
                                     const struct wzp_identity *trusted_id)
{
    struct tls_pair *t = calloc(1, sizeof(*t));
    gnutls_datum_t trust = {trusted_id->cert_der, (unsigned int)trusted_id->cert_der_len};

    cr_assert_not_null(t);
    cr_assert_eq(gnutls_certificate_allocate_credentials(&t->scred), 0);
    cr_assert_eq(gnutls_certificate_allocate_credentials(&t->ccred), 0);
    cr_assert_eq(wzp_identity_set_credentials(server_id, t->scred), WZP_OK);
    cr_assert_eq(gnutls_certificate_set_x509_trust_mem(t->ccred, &trust, GNUTLS_X509_FMT_DER), 1);
    t->client = (struct end){NULL, &t->s2c, &t->c2s};
    t->server = (struct end){NULL, &t->c2s, &t->s2c};
    end_init(&t->client, GNUTLS_CLIENT, t->ccred);
    end_init(&t->server, GNUTLS_SERVER, t->scred);
    gnutls_session_set_verify_cert(t->client.s, "localhost", 0);
    return t;
}

static void tls_pair_free(struct tls_pair *t)
{
    gnutls_deinit(t->client.s);
    gnutls_deinit(t->server.s);
    gnutls_certificate_free_credentials(t->ccred);
    gnutls_certificate_free_credentials(t->scred);
    free(t);
}

static void assert_peer_cert(gnutls_session_t s, const struct wzp_identity *id)
{
    unsigned int n = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);

    cr_assert_eq(n, 1);
    cr_assert_eq(peers[0].size, id->cert_der_len);
    cr_assert_arr_eq(peers[0].data, id->cert_der, id->cert_der_len);
}

Test(tls, handshake_with_identity_certificate)
{
    struct wzp_identity id;
    struct tls_pair *t;
    char buf[16] = {0};

    identity_for(&id, 0x42);
    t = tls_pair_new(&id, &id);
    cr_assert_eq(run_handshake(&t->client, &t->server), 0);
    cr_assert_eq(gnutls_protocol_get_version(t->client.s), GNUTLS_TLS1_3);
    cr_assert_eq(gnutls_sign_algorithm_get(t->client.s), GNUTLS_SIGN_EDDSA_ED25519);
    assert_peer_cert(t->client.s, &id);
    cr_assert_eq(gnutls_record_send(t->client.s, "ping", 4), 4);
    cr_assert_eq(gnutls_record_recv(t->server.s, buf, sizeof(buf)), 4);
    cr_assert_str_eq(buf, "ping");
    tls_pair_free(t);
    wzp_identity_free(&id);
}

/* rustls (quinn's TLS) lists AES-256-GCM first; the relay's own order decides, so real
 * clients get AES-128-GCM with SHA-256: cheaper packet protection and key schedule. */
Test(tls, relay_priority_picks_aes_128_over_a_client_preferring_aes_256)
{
    static const char *const client_prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:"
                                           "+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM";
    struct wzp_identity id;
    struct tls_pair *t;

    identity_for(&id, 0x43);
    t = tls_pair_new(&id, &id);
    cr_assert_eq(gnutls_priority_set_direct(t->client.s, client_prio, NULL), 0);
    cr_assert_eq(gnutls_priority_set_direct(t->server.s, wzp_tls_priority, NULL), 0);
    cr_assert_eq(run_handshake(&t->client, &t->server), 0);
    cr_assert_eq(gnutls_cipher_get(t->server.s), GNUTLS_CIPHER_AES_128_GCM);
    cr_assert_eq(gnutls_mac_get(t->server.s), GNUTLS_MAC_AEAD);
    cr_assert_eq(gnutls_prf_hash_get(t->server.s), GNUTLS_DIG_SHA256);
    tls_pair_free(t);
    wzp_identity_free(&id);
}

Test(tls, client_pinning_another_certificate_fails)
{
    struct wzp_identity id, other;
    struct tls_pair *t;

    identity_for(&id, 0x42);
    identity_for(&other, 0x43);
    t = tls_pair_new(&id, &other);
    cr_assert_eq(run_handshake(&t->client, &t->server), GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR);
    tls_pair_free(t);
    wzp_identity_free(&id);
    wzp_identity_free(&other);
}

/* ---- seed file ---- */

static char tmpdir[64];

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/wzp-identity-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void tmp_teardown(void)
{
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void tmp_path(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", tmpdir, rel);
}

static size_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;

    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    n = read(fd, buf, cap - 1);
    close(fd);
    cr_assert_geq(n, 0);
    buf[n] = '\0';
    return (size_t)n;
}

static void spit(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    cr_assert_not_null(d);
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

TestSuite(seed_file, .init = tmp_setup, .fini = tmp_teardown);

Test(seed_file, created_with_parents_mode_0600_and_hex_line)
{
    struct wzp_identity id;
    char path[128], dir[128], text[256], err[256] = "";
    uint8_t seed[32];
    struct stat st;

    tmp_path(path, sizeof(path), "a/b/relay-identity");
    tmp_path(dir, sizeof(dir), "a/b");
    cr_assert_eq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0700, "dir mode %o", st.st_mode & 07777);
    cr_assert_eq(slurp(path, text, sizeof(text)), 65);
    cr_assert_eq(text[64], '\n');
    cr_assert_eq(wzp_hex_decode(text, 64, seed, 32), WZP_OK);
    cr_assert_arr_eq(seed, id.seed, 32);
    cr_assert_eq(count_entries(dir), 1, "temporary file left behind");
    wzp_identity_free(&id);
}

Test(seed_file, reload_gives_same_identity_and_certificate)
{
    struct wzp_identity a, b;
    char path[128], err[256] = "";

    tmp_path(path, sizeof(path), "relay-identity");
    cr_assert_eq(wzp_identity_load_or_create(&a, path, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_eq(wzp_identity_load_or_create(&b, path, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_arr_eq(a.seed, b.seed, 32);
    cr_assert_str_eq(a.fingerprint, b.fingerprint);
    cr_assert_eq(a.cert_der_len, b.cert_der_len);
    cr_assert_arr_eq(a.cert_der, b.cert_der, a.cert_der_len);
    cr_assert_str_eq(a.tls_fingerprint, b.tls_fingerprint);
    wzp_identity_free(&a);
    wzp_identity_free(&b);
}

Test(seed_file, two_new_files_get_different_seeds)
{
    struct wzp_identity a, b;
    char p1[128], p2[128], err[256] = "";

    tmp_path(p1, sizeof(p1), "one");
    tmp_path(p2, sizeof(p2), "two");
    cr_assert_eq(wzp_identity_load_or_create(&a, p1, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_eq(wzp_identity_load_or_create(&b, p2, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_neq(memcmp(a.seed, b.seed, 32), 0);
    wzp_identity_free(&a);
    wzp_identity_free(&b);
}

Test(seed_file, existing_seed_with_whitespace_and_uppercase_loads)
{
    struct wzp_identity id;
    char path[128], text[160], err[256] = "";

    tmp_path(path, sizeof(path), "relay-identity");
    snprintf(text, sizeof(text), "  \n%s\r\n\t\n",
             "4242424242424242424242424242424242424242424242424242424242424242");
    spit(path, text, 0644);
    cr_assert_eq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_str_eq(id.fingerprint, VEC_FP);
    wzp_identity_free(&id);
    spit(path, "ABCDEFabcdef0123456789ABCDEFabcdef0123456789ABCDEFabcdef01234567", 0600);
    cr_assert_eq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_OK, "%s", err);
    cr_assert_eq(id.seed[0], 0xab);
    cr_assert_eq(id.seed[31], 0x67);
    wzp_identity_free(&id);
}

static void assert_corrupt_kept(const char *content)
{
    struct wzp_identity id;
    char path[128], text[8192], err[512] = "";

    tmp_path(path, sizeof(path), "relay-identity");
    spit(path, content, 0600);
    cr_assert_neq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_OK,
                  "accepted \"%s\"", content);
    cr_assert_null(id.cert_der);
    cr_assert_not_null(strstr(err, path), "err: %s", err);
    cr_assert_not_null(strstr(err, "corrupt"), "err: %s", err);
    cr_assert_not_null(strstr(err, "64 hex digits"), "err: %s", err);
    slurp(path, text, sizeof(text));
    cr_assert_str_eq(text, content, "corrupt file was modified");
    cr_assert_eq(count_entries(tmpdir), 1);
}

Test(seed_file, corrupt_file_is_an_error_and_left_alone)
{
    char big[5001];

    assert_corrupt_kept("hello");
    assert_corrupt_kept("");
    assert_corrupt_kept("\n");
    assert_corrupt_kept("424242424242424242424242424242424242424242424242424242424242424\n");
    assert_corrupt_kept("42424242424242424242424242424242424242424242424242424242424242424\n");
    assert_corrupt_kept("4242424242424242424242424242424242 424242424242424242424242424242\n");
    assert_corrupt_kept("g242424242424242424242424242424242424242424242424242424242424242\n");
    memset(big, '4', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_corrupt_kept(big);
}

Test(seed_file, path_is_a_directory)
{
    struct wzp_identity id;
    char path[128], err[256] = "";

    tmp_path(path, sizeof(path), "relay-identity");
    cr_assert_eq(mkdir(path, 0700), 0);
    cr_assert_neq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_OK);
    cr_assert_not_null(strstr(err, path), "err: %s", err);
}

Test(seed_file, a_fifo_is_refused_without_waiting, .timeout = 10)
{
    struct wzp_identity id;
    char path[128], err[256] = "";

    tmp_path(path, sizeof(path), "relay-identity");
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_EINVAL,
                 "no writer ever comes: opening must not wait for one");
    cr_assert_not_null(strstr(err, "not a regular file"), "err: %s", err);
}

Test(seed_file, parent_cannot_be_created)
{
    struct wzp_identity id;
    char file[128], path[160], err[256] = "";

    tmp_path(file, sizeof(file), "plainfile");
    spit(file, "x", 0600);
    snprintf(path, sizeof(path), "%s/sub/relay-identity", file);
    cr_assert_eq(wzp_identity_load_or_create(&id, path, err, sizeof(err)), WZP_EIO);
    cr_assert_not_null(strstr(err, path), "err: %s", err);
    cr_assert_not_null(strstr(err, "Not a directory"), "err: %s", err);
    cr_assert_eq(count_entries(tmpdir), 1);
}

Test(seed_file, null_err_buffer_is_allowed)
{
    struct wzp_identity id;
    char path[128];

    tmp_path(path, sizeof(path), "relay-identity");
    spit(path, "hello", 0600);
    cr_assert_eq(wzp_identity_load_or_create(&id, path, NULL, 0), WZP_EINVAL);
}

Test(seed_file, default_path_uses_home)
{
    char out[256];

    cr_assert_eq(setenv("HOME", "/home/relay", 1), 0);
    wzp_identity_default_path(out, sizeof(out));
    cr_assert_str_eq(out, "/home/relay/.wzp/relay-identity");
    cr_assert_eq(unsetenv("HOME"), 0);
    wzp_identity_default_path(out, sizeof(out));
    cr_assert_str_eq(out, "./.wzp/relay-identity");
}
