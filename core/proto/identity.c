/*
 * identity.c - the relay's long-term identity: HKDF-SHA256 key schedule (nettle), Ed25519 and
 * X25519 (libsodium: under half of nettle's cost to verify and sign, doc/ARCHITECTURE.md), the
 * seed file (~/.wzp/relay-identity, 64 hex digits, mode 0600) and a deterministic self-signed
 * Ed25519 TLS certificate built with GnuTLS (doc/PROTOCOL.md, "Identity"), whose handshake
 * signatures libsodium makes too.
 *
 * Unlike upstream, a corrupt seed file is an error and is never replaced: replacing it
 * would silently change the relay's TLS fingerprint and break federation pins.
 */
#include "identity.h"
#include "common.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <nettle/hkdf.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEED_HEX_LEN      64
#define SEED_FILE_MAX     4096 /* anything bigger cannot be 64 hex digits plus whitespace */
#define CERT_ACTIVATION   ((time_t)1577836800)  /* 2020-01-01T00:00:00Z */
#define CERT_EXPIRATION   ((time_t)67090118400) /* 4096-01-01T00:00:00Z (rcgen's default) */
#define CERT_DN           "CN=wzp-relay"
#define CERT_SAN          "localhost"
#define CERT_SERIAL_BYTES 16

/* ---- key schedule and primitives ---- */

void wzp_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const char *info, uint8_t *out,
                     size_t out_len)
{
    static const uint8_t zero_salt[SHA256_DIGEST_SIZE];
    struct hmac_sha256_ctx ctx;
    uint8_t prk[SHA256_DIGEST_SIZE];

    WZP_BUG_ON(out_len > 255 * SHA256_DIGEST_SIZE);
    hmac_sha256_set_key(&ctx, sizeof(zero_salt), zero_salt);
    hkdf_extract(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
                 (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE, ikm_len, ikm,
                 prk);
    hmac_sha256_set_key(&ctx, sizeof(prk), prk);
    hkdf_expand(&ctx, (nettle_hash_update_func *)hmac_sha256_update,
                (nettle_hash_digest_func *)hmac_sha256_digest, SHA256_DIGEST_SIZE, strlen(info),
                (const uint8_t *)info, out_len, out);
    gnutls_memset(prk, 0, sizeof(prk));
    gnutls_memset(&ctx, 0, sizeof(ctx));
}

/* sodium_init picks the fastest X25519 code this CPU runs; the curve functions work without
 * it, only slower, so a failure (it has none on Linux) is not fatal. */
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_setup(void)
{
    if (sodium_init() < 0)
        WZP_WARN("identity", "libsodium did not initialise; using its portable code");
}

static void sodium_ready(void)
{
    pthread_once(&sodium_once, sodium_setup);
}

void wzp_ed25519_public(const uint8_t secret[32], uint8_t pub[32])
{
    uint8_t sk[crypto_sign_ed25519_SECRETKEYBYTES];

    sodium_ready();
    crypto_sign_ed25519_seed_keypair(pub, sk, secret);
    sodium_memzero(sk, sizeof(sk));
}

void wzp_ed25519_sign(const uint8_t secret[32], const uint8_t pub[32], const uint8_t *msg,
                      size_t len, uint8_t sig[64])
{
    /* libsodium's secret key is the RFC 8032 seed followed by the public key: assembling it
     * here skips the base-point multiplication crypto_sign_ed25519_seed_keypair would do. */
    uint8_t sk[crypto_sign_ed25519_SECRETKEYBYTES];

    sodium_ready();
    memcpy(sk, secret, 32);
    memcpy(sk + 32, pub, 32);
    crypto_sign_ed25519_detached(sig, NULL, msg, len, sk);
    sodium_memzero(sk, sizeof(sk));
}

int wzp_ed25519_verify(const uint8_t pub[32], const uint8_t *msg, size_t len, const uint8_t *sig,
                       size_t sig_len)
{
    if (sig == NULL || sig_len != crypto_sign_ed25519_BYTES)
        return WZP_ECRYPTO;
    sodium_ready();
    /* Stricter than RFC 8032's minimum: a non-canonical S (dalek, upstream's library, also
     * refuses it) and small-order R or public keys (refused by dalek's verify_strict, not
     * by nettle) fail. Honest signers never produce them. */
    return crypto_sign_ed25519_verify_detached(sig, msg, len, pub) == 0 ? WZP_OK : WZP_ECRYPTO;
}

void wzp_x25519_public(const uint8_t secret[32], uint8_t pub[32])
{
    sodium_ready();
    crypto_scalarmult_curve25519_base(pub, secret);
}

void wzp_x25519_shared(const uint8_t secret[32], const uint8_t peer[32], uint8_t out[32])
{
    sodium_ready();
    /* A small-order peer key gives the all-zero secret, which libsodium reports as -1; the
     * output is all zero then, as RFC 7748's function gives (the check is the caller's). */
    if (crypto_scalarmult_curve25519(out, secret, peer) != 0)
        memset(out, 0, 32);
}

int wzp_random(void *buf, size_t len)
{
    return gnutls_rnd(GNUTLS_RND_KEY, buf, len) == 0 ? WZP_OK : WZP_ECRYPTO;
}

static void sha256_of(const uint8_t *data, size_t len, uint8_t out[SHA256_DIGEST_SIZE])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, data);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

void wzp_fingerprint(const uint8_t pub[32], char *out)
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    char hex[2 * 16 + 1];
    size_t o = 0;

    sha256_of(pub, 32, digest);
    wzp_hex_encode(digest, 16, hex);
    for (size_t i = 0; i < 32; i++) {
        if (i > 0 && i % 4 == 0)
            out[o++] = ':';
        out[o++] = hex[i];
    }
    out[o] = '\0';
}

/* ---- TLS certificate ---- */

static void tls_fingerprint(const uint8_t *der, size_t len, char *out)
{
    uint8_t digest[SHA256_DIGEST_SIZE];

    sha256_of(der, len, digest);
    for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
        wzp_hex_encode(&digest[i], 1, &out[3 * i]);
        out[3 * i + 2] = (i + 1 < SHA256_DIGEST_SIZE) ? ':' : '\0';
    }
}

/* GnuTLS x509 private key from a raw Ed25519 secret and its public key. */
static int tls_privkey(const struct wzp_identity *id, gnutls_x509_privkey_t *out)
{
    gnutls_datum_t x = {(unsigned char *)id->tls_public, 32};
    gnutls_datum_t k = {(unsigned char *)id->tls_secret, 32};

    if (gnutls_x509_privkey_init(out) < 0)
        return WZP_ENOMEM;
    if (gnutls_x509_privkey_import_ecc_raw(*out, GNUTLS_ECC_CURVE_ED25519, &x, NULL, &k) < 0) {
        gnutls_x509_privkey_deinit(*out);
        *out = NULL;
        return WZP_ECRYPTO;
    }
    return WZP_OK;
}

/* Positive, minimal-DER serial derived from the key: stable for a given seed. */
static void cert_serial(const uint8_t tls_public[32], uint8_t serial[CERT_SERIAL_BYTES])
{
    uint8_t digest[SHA256_DIGEST_SIZE];

    sha256_of(tls_public, 32, digest);
    memcpy(serial, digest, CERT_SERIAL_BYTES);
    serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x40);
}

/* Every field of the certificate except the signature. */
static int cert_fill(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, const uint8_t pub[32])
{
    uint8_t serial[CERT_SERIAL_BYTES];

    cert_serial(pub, serial);
    if (gnutls_x509_crt_set_version(crt, 3) < 0 ||
        gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)) < 0 ||
        gnutls_x509_crt_set_activation_time(crt, CERT_ACTIVATION) < 0 ||
        gnutls_x509_crt_set_expiration_time(crt, CERT_EXPIRATION) < 0 ||
        gnutls_x509_crt_set_dn(crt, CERT_DN, NULL) < 0 ||
        gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, CERT_SAN, strlen(CERT_SAN),
                                             GNUTLS_FSAN_SET) < 0 ||
        gnutls_x509_crt_set_key(crt, key) < 0 ||
        gnutls_x509_crt_set_basic_constraints(crt, 0, -1) < 0 ||
        gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE) < 0 ||
        gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0) < 0)
        return WZP_ECRYPTO;
    return WZP_OK;
}

/* Sign and export as DER into id->cert_der (malloc'd). */
static int cert_sign_export(struct wzp_identity *id, gnutls_x509_crt_t crt,
                            gnutls_x509_privkey_t key)
{
    gnutls_datum_t der = {NULL, 0};

    if (gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA512, 0) < 0)
        return WZP_ECRYPTO;
    if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der) < 0)
        return WZP_ECRYPTO;
    id->cert_der = malloc(der.size);
    if (id->cert_der == NULL) {
        gnutls_free(der.data);
        return WZP_ENOMEM;
    }
    memcpy(id->cert_der, der.data, der.size);
    id->cert_der_len = der.size;
    gnutls_free(der.data);
    return WZP_OK;
}

static int make_certificate(struct wzp_identity *id)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    int rc = tls_privkey(id, &key);

    if (rc != WZP_OK)
        return rc;
    if (gnutls_x509_crt_init(&crt) < 0) {
        gnutls_x509_privkey_deinit(key);
        return WZP_ENOMEM;
    }
    rc = cert_fill(crt, key, id->tls_public);
    if (rc == WZP_OK)
        rc = cert_sign_export(id, crt, key);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    if (rc == WZP_OK)
        tls_fingerprint(id->cert_der, id->cert_der_len, id->tls_fingerprint);
    return rc;
}

int wzp_identity_from_seed(struct wzp_identity *id, const uint8_t seed[32])
{
    int rc;

    memset(id, 0, sizeof(*id));
    memcpy(id->seed, seed, 32);
    wzp_hkdf_sha256(seed, 32, "warzone-ed25519", id->ed25519_secret, 32);
    wzp_ed25519_public(id->ed25519_secret, id->ed25519_public);
    wzp_hkdf_sha256(seed, 32, "wzp-tls-ed25519", id->tls_secret, 32);
    wzp_ed25519_public(id->tls_secret, id->tls_public);
    wzp_fingerprint(id->ed25519_public, id->fingerprint);
    rc = make_certificate(id);
    if (rc != WZP_OK)
        wzp_identity_free(id);
    return rc;
}

/*
 * The TLS key as GnuTLS sees it: an external key whose signatures (one CertificateVerify
 * per handshake) libsodium makes, at under half of nettle's cost. GnuTLS frees it with the
 * credentials.
 */
struct tls_signer {
    uint8_t secret[32], pub[32];
};

static int tls_signer_sign(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                           unsigned flags, const gnutls_datum_t *data, gnutls_datum_t *sig)
{
    (void)key, (void)flags;
    const struct tls_signer *s = userdata;
    if (algo != GNUTLS_SIGN_EDDSA_ED25519)
        return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
    sig->data = gnutls_malloc(64);
    if (!sig->data)
        return GNUTLS_E_MEMORY_ERROR;
    wzp_ed25519_sign(s->secret, s->pub, data->data, data->size, sig->data);
    sig->size = 64;
    return 0;
}

static void tls_signer_free(gnutls_privkey_t key, void *userdata)
{
    (void)key;
    sodium_memzero(userdata, sizeof(struct tls_signer));
    free(userdata);
}

static int tls_signer_info(gnutls_privkey_t key, unsigned flags, void *userdata)
{
    (void)key, (void)userdata;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
        return GNUTLS_PK_EDDSA_ED25519;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
        return 256;
    if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
        return GNUTLS_FLAGS_TO_SIGN_ALGO(flags) == GNUTLS_SIGN_EDDSA_ED25519;
    if (flags & GNUTLS_PRIVKEY_INFO_SIGN_ALGO)
        return GNUTLS_SIGN_EDDSA_ED25519;
    return -1;
}

static int tls_signer_key(const struct wzp_identity *id, gnutls_privkey_t *out)
{
    struct tls_signer *s = malloc(sizeof *s);
    if (!s)
        return WZP_ENOMEM;
    memcpy(s->secret, id->tls_secret, 32);
    memcpy(s->pub, id->tls_public, 32);
    if (gnutls_privkey_init(out) < 0) {
        tls_signer_free(NULL, s);
        return WZP_ENOMEM;
    }
    /* on success the key owns s (GnuTLS calls tls_signer_free); on failure it does not */
    if (gnutls_privkey_import_ext4(*out, s, tls_signer_sign, NULL, NULL, tls_signer_free,
                                   tls_signer_info, 0) < 0) {
        gnutls_privkey_deinit(*out);
        *out = NULL;
        tls_signer_free(NULL, s);
        return WZP_ECRYPTO;
    }
    return WZP_OK;
}

int wzp_identity_set_credentials(const struct wzp_identity *id,
                                 gnutls_certificate_credentials_t cred)
{
    gnutls_datum_t der = {id->cert_der, (unsigned int)id->cert_der_len};
    gnutls_pcert_st pcert;
    gnutls_privkey_t key = NULL;
    int rc = tls_signer_key(id, &key);

    if (rc != WZP_OK)
        return rc;
    if (gnutls_pcert_import_x509_raw(&pcert, &der, GNUTLS_X509_FMT_DER, 0) < 0) {
        gnutls_privkey_deinit(key);
        return WZP_ECRYPTO;
    }
    /* on success the credentials own the certificate and the key */
    if (gnutls_certificate_set_key(cred, NULL, 0, &pcert, 1, key) < 0) {
        gnutls_pcert_deinit(&pcert);
        gnutls_privkey_deinit(key);
        return WZP_ECRYPTO;
    }
    return WZP_OK;
}

void wzp_identity_free(struct wzp_identity *id)
{
    if (id == NULL)
        return;
    free(id->cert_der);
    gnutls_memset(id, 0, sizeof(*id));
}

/* ---- seed file ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void wzp_identity_default_path(char *out, size_t outlen)
{
    const char *home = getenv("HOME");

    if (home != NULL && home[0] != '\0')
        snprintf(out, outlen, "%s/.wzp/relay-identity", home);
    else
        snprintf(out, outlen, "./.wzp/relay-identity");
}

/* Parse the file contents: 64 hex digits, surrounding whitespace allowed. */
static int parse_seed(const char *text, size_t len, uint8_t seed[32])
{
    while (len > 0 && isspace((unsigned char)text[0])) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    return wzp_hex_decode(text, len, seed, 32);
}

/* Read at most SEED_FILE_MAX bytes; *len = SEED_FILE_MAX + 1 means "too big". */
static int read_small_file(int fd, char *buf, size_t *len)
{
    size_t n = 0;

    while (n < SEED_FILE_MAX + 1) {
        ssize_t r = read(fd, buf + n, SEED_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return WZP_EIO;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return WZP_OK;
}

/* Load an existing seed file. WZP_ENOTFOUND if it does not exist. */
static int load_seed(const char *path, uint8_t seed[32], char *err, size_t errlen)
{
    char buf[SEED_FILE_MAX + 1];
    size_t len = 0;
    /* O_NONBLOCK: a FIFO or a device in its place must not hang the start-up. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    int rc;

    if (fd < 0 && errno == ENOENT)
        return WZP_ENOTFOUND;
    if (fd < 0 || fstat(fd, &st) != 0) {
        set_err(err, errlen, "cannot open identity file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return WZP_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "identity file %s is not a regular file", path);
        close(fd);
        return WZP_EINVAL;
    }
    if (st.st_mode & 077) /* the seed is the relay's private key */
        WZP_WARN("identity",
                 "identity file %s is readable or writable by others (mode %04o): anyone who "
                 "reads it can impersonate this relay; chmod 600 it",
                 path, (unsigned)(st.st_mode & 07777));
    rc = read_small_file(fd, buf, &len);
    if (rc != WZP_OK)
        set_err(err, errlen, "cannot read identity file %s: %s", path, strerror(errno));
    close(fd);
    if (rc == WZP_OK && (len > SEED_FILE_MAX || parse_seed(buf, len, seed) != WZP_OK)) {
        set_err(err, errlen,
                "identity file %s is corrupt (expected 64 hex digits): fix it or move it "
                "away to generate a new identity",
                path);
        rc = WZP_EINVAL;
    }
    gnutls_memset(buf, 0, sizeof(buf));
    return rc;
}

/* mkdir -p for the directory part of path; new directories get mode 0700. */
static int make_parent_dirs(const char *path)
{
    char dir[4096];
    size_t len = strlen(path);

    if (len >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return WZP_EIO;
    }
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return WZP_OK;
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return WZP_EIO;
        *p = '/';
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return WZP_EIO;
    return WZP_OK;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return WZP_EIO;
        data += w;
        len -= (size_t)w;
    }
    return WZP_OK;
}

/* Write "<hex>\n" to a fresh 0600 temp file next to path and fsync it. */
static int write_temp_seed(const uint8_t seed[32], char *tmp)
{
    char line[SEED_HEX_LEN + 2];
    int fd = mkostemp(tmp, O_CLOEXEC);
    int rc;

    if (fd < 0)
        return WZP_EIO;
    wzp_hex_encode(seed, 32, line);
    line[SEED_HEX_LEN] = '\n';
    rc = write_all(fd, line, SEED_HEX_LEN + 1);
    if (rc == WZP_OK && (fchmod(fd, 0600) < 0 || fsync(fd) < 0))
        rc = WZP_EIO;
    gnutls_memset(line, 0, sizeof(line));
    if (close(fd) < 0 && rc == WZP_OK)
        rc = WZP_EIO;
    if (rc != WZP_OK)
        unlink(tmp);
    return rc;
}

static void fsync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : (size_t)(slash - path);
    int fd;

    if (len >= sizeof(dir))
        return;
    if (len == 0)
        snprintf(dir, sizeof(dir), "%s", slash == NULL ? "." : "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)len, path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/*
 * Create path holding a new seed. link() publishes the complete temp file atomically and,
 * like O_EXCL, fails with EEXIST instead of replacing a file created meanwhile.
 */
static int create_seed(const char *path, const uint8_t seed[32])
{
    char tmp[4096];
    int rc, saved;

    if (make_parent_dirs(path) != WZP_OK)
        return WZP_EIO;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return WZP_EIO;
    }
    rc = write_temp_seed(seed, tmp);
    if (rc != WZP_OK)
        return rc;
    rc = link(tmp, path) < 0 ? WZP_EIO : WZP_OK;
    saved = errno;
    unlink(tmp);
    errno = saved;
    if (rc == WZP_OK)
        fsync_parent(path);
    return rc;
}

/* Generate and store a new seed; if another process created the file first, load it. */
static int create_or_load_seed(const char *path, uint8_t seed[32], char *err, size_t errlen)
{
    if (wzp_random(seed, 32) != WZP_OK) {
        set_err(err, errlen, "cannot generate a random identity seed");
        return WZP_ECRYPTO;
    }
    if (create_seed(path, seed) == WZP_OK)
        return WZP_OK;
    if (errno == EEXIST) {
        int rc = load_seed(path, seed, err, errlen);
        if (rc != WZP_ENOTFOUND)
            return rc;
        errno = ENOENT; /* created and removed again meanwhile */
    }
    set_err(err, errlen, "cannot create identity file %s: %s", path, strerror(errno));
    return WZP_EIO;
}

int wzp_identity_load_or_create(struct wzp_identity *id, const char *path, char *err, size_t errlen)
{
    uint8_t seed[32];
    int rc;

    memset(id, 0, sizeof(*id));
    rc = load_seed(path, seed, err, errlen);
    if (rc == WZP_ENOTFOUND)
        rc = create_or_load_seed(path, seed, err, errlen);
    if (rc != WZP_OK)
        return rc;
    rc = wzp_identity_from_seed(id, seed);
    gnutls_memset(seed, 0, sizeof(seed));
    if (rc != WZP_OK)
        set_err(err, errlen, "cannot build the TLS certificate from %s: %s", path,
                wzp_strerror(rc));
    return rc;
}
