/*
 * test_tls.c - our own read of the SNI: the server_name list, its place in a ClientHello,
 * a ClientHello cut short (the first Initial), and every malformed length refused. The
 * handshake itself is exercised by the integration tests with a real client.
 */
#include "tls.h"

#include "aead.h"
#include "common.h"
#include "identity.h"

#include <criterion/criterion.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <string.h>

struct hello {
    uint8_t b[2048];
    size_t len;
};

static void put(struct hello *h, const void *p, size_t n)
{
    cr_assert_leq(h->len + n, sizeof h->b);
    memcpy(h->b + h->len, p, n);
    h->len += n;
}

static void put16(struct hello *h, size_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(h, b, 2);
}

/* A server_name extension body naming each of names (type 0 host_name). */
static size_t sni_body(uint8_t *out, const char *const *names, size_t count)
{
    size_t off = 2;
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        out[off] = 0;
        out[off + 1] = (uint8_t)(n >> 8);
        out[off + 2] = (uint8_t)n;
        memcpy(out + off + 3, names[i], n);
        off += 3 + n;
    }
    out[0] = (uint8_t)((off - 2) >> 8);
    out[1] = (uint8_t)(off - 2);
    return off;
}

/* A ClientHello body: a 16-byte session id, two suites, then extensions: one unknown
 * before server_name (when sni is non-NULL), one after it. */
static void client_hello(struct hello *h, const char *sni)
{
    memset(h, 0, sizeof *h);
    uint8_t random[34] = {3, 3};
    put(h, random, sizeof random);
    uint8_t sid[17] = {16};
    put(h, sid, sizeof sid);
    put16(h, 4);
    put(h, "\x13\x01\x13\x02", 4);
    put(h, "\x01\x00", 2); /* compression: null */
    size_t ext_len_at = h->len;
    put16(h, 0);
    put16(h, 0x002b); /* supported_versions */
    put16(h, 3);
    put(h, "\x02\x03\x04", 3);
    if (sni) {
        uint8_t body[600];
        const char *names[] = {sni};
        size_t n = sni_body(body, names, 1);
        put16(h, 0);
        put16(h, n);
        put(h, body, n);
    }
    put16(h, 0x0010); /* alpn */
    put16(h, 6);
    put(h, "\x00\x04\x03wzp", 6);
    size_t ext = h->len - ext_len_at - 2;
    h->b[ext_len_at] = (uint8_t)(ext >> 8);
    h->b[ext_len_at + 1] = (uint8_t)ext;
}

Test(tls, sni_is_read_and_lower_cased)
{
    struct hello h;
    client_hello(&h, "Lobby.Example");
    struct wzp_tls_ctx ctx = {0};
    cr_assert_eq(wzp_tls_client_hello_sni(&ctx, h.b, h.len), WZP_OK);
    cr_assert(ctx.sni_present);
    cr_assert_not(ctx.sni_invalid);
    cr_assert_str_eq(ctx.sni, "lobby.example");
}

Test(tls, no_server_name_leaves_sni_absent)
{
    struct hello h;
    client_hello(&h, NULL);
    struct wzp_tls_ctx ctx = {0};
    cr_assert_eq(wzp_tls_client_hello_sni(&ctx, h.b, h.len), WZP_OK);
    cr_assert_not(ctx.sni_present);
}

Test(tls, the_first_host_name_wins)
{
    uint8_t body[64];
    const char *names[] = {"first", "second"};
    size_t n = sni_body(body, names, 2);
    struct wzp_tls_ctx ctx = {0};
    cr_assert_eq(wzp_tls_parse_sni(&ctx, body, n), 0);
    cr_assert_str_eq(ctx.sni, "first");
}

Test(tls, empty_embedded_nul_and_overlong_names_are_invalid)
{
    static char longname[WZP_SNI_MAX + 2];
    memset(longname, 'a', WZP_SNI_MAX + 1);
    const char *cases[] = {"", longname};
    for (size_t i = 0; i < 2; i++) {
        uint8_t body[600];
        size_t n = sni_body(body, &cases[i], 1);
        struct wzp_tls_ctx ctx = {0};
        cr_assert_eq(wzp_tls_parse_sni(&ctx, body, n), 0);
        cr_assert(ctx.sni_present && ctx.sni_invalid, "case %zu", i);
    }
    uint8_t nul[] = {0, 6, 0, 0, 3, 'a', 0, 'b'};
    struct wzp_tls_ctx ctx = {0};
    cr_assert_eq(wzp_tls_parse_sni(&ctx, nul, sizeof nul), 0);
    cr_assert(ctx.sni_invalid);
    /* The longest allowed name is kept whole. */
    longname[WZP_SNI_MAX] = '\0';
    const char *max[] = {longname};
    uint8_t body[600];
    size_t n = sni_body(body, max, 1);
    struct wzp_tls_ctx ok = {0};
    cr_assert_eq(wzp_tls_parse_sni(&ok, body, n), 0);
    cr_assert_not(ok.sni_invalid);
    cr_assert_eq(strlen(ok.sni), WZP_SNI_MAX);
}

Test(tls, malformed_lengths_are_refused)
{
    uint8_t body[64];
    const char *names[] = {"room"};
    size_t n = sni_body(body, names, 1);
    struct wzp_tls_ctx ctx = {0};
    cr_assert_neq(wzp_tls_parse_sni(&ctx, body, n - 1), 0, "list length past the end");
    cr_assert_neq(wzp_tls_parse_sni(&ctx, body, 1), 0);
    body[4] = 200; /* entry longer than the list */
    cr_assert_neq(wzp_tls_parse_sni(&ctx, body, n), 0);

    struct hello h;
    client_hello(&h, "room");
    for (size_t cut = 0; cut < h.len; cut++) {
        struct wzp_tls_ctx c = {0};
        int rv = wzp_tls_client_hello_sni(&c, h.b, cut);
        cr_assert(rv != WZP_OK || !c.sni_present || strcmp(c.sni, "room") == 0,
                  "a hello cut at %zu never yields a wrong name", cut);
    }
    struct wzp_tls_ctx c = {0};
    cr_assert_eq(wzp_tls_client_hello_sni(&c, h.b, 40), WZP_EINVAL, "cut in the suites");
}

Test(tls, a_hello_cut_short_is_read_as_far_as_it_goes)
{
    struct hello h;
    client_hello(&h, "lobby");
    /* server_name whole, alpn cut: the prefix read finds the name. */
    struct wzp_tls_ctx ctx = {0};
    cr_assert_eq(wzp_tls_client_hello_sni_prefix(&ctx, h.b, h.len - 3), WZP_OK);
    cr_assert_str_eq(ctx.sni, "lobby");
    /* The same bytes as a complete hello are malformed. */
    struct wzp_tls_ctx whole = {0};
    cr_assert_eq(wzp_tls_client_hello_sni(&whole, h.b, h.len - 3), WZP_EINVAL);
    /* Cut inside server_name: not there yet, not an error. */
    struct wzp_tls_ctx cut = {0};
    cr_assert_eq(wzp_tls_client_hello_sni_prefix(&cut, h.b, h.len - 12), WZP_OK);
    cr_assert_not(cut.sni_present);
}

/* Exactly one GnuTLS is mapped into the process (the ngtcp2 helper binds to the relay's),
 * and the probe's answer is the one the build promises: names with '_' pass with the
 * library of scripts/gnutls/build.sh, and fail with the system's. */
Test(tls, one_gnutls_and_the_probe_matches_the_build)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    cr_assert_not_null(maps);
    char line[1024], first[512] = "";
    unsigned other = 0;
    while (fgets(line, sizeof line, maps)) {
        const char *path = strchr(line, '/');
        if (!path || !strstr(path, "libgnutls.so"))
            continue;
        if (!first[0])
            snprintf(first, sizeof first, "%s", path);
        else if (strcmp(first, path) != 0)
            other++;
    }
    fclose(maps);
    cr_assert(first[0], "GnuTLS is loaded");
    cr_assert_eq(other, 0, "a second GnuTLS is mapped besides %s", first);

    struct wzp_identity id;
    uint8_t seed[32] = {5};
    cr_assert_eq(wzp_identity_from_seed(&id, seed), WZP_OK);
    gnutls_certificate_credentials_t cred;
    cr_assert_eq(gnutls_certificate_allocate_credentials(&cred), 0);
    cr_assert_eq(wzp_identity_set_credentials(&id, cred), WZP_OK);
    int rv = wzp_tls_probe_reserved_names(cred);
    cr_assert_eq(rv, WZP_GNUTLS_PATCHED ? WZP_OK : WZP_EINVAL, "probe %d with %s", rv,
                 wzp_tls_library());
    gnutls_certificate_free_credentials(cred);
    wzp_identity_free(&id);
}

/* ---- 1-RTT header protection (RFC 9001 Appendix A: the client's Initial keys, which
 * are derived and protected the same way as 1-RTT ones) ---- */

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(wzp_hex_digit(hex[2 * i]) << 4 | wzp_hex_digit(hex[2 * i + 1]));
}

Test(tls, quic_key_iv_and_hp_key_follow_rfc9001)
{
    uint8_t secret[32], key[16], iv[12], hp[16], want[16];
    unhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea", secret, 32);
    wzp_tls_expand_label_sha256(secret, "quic key", key, sizeof key);
    unhex("1f369613dd76d5467730efcbe3b1a22d", want, 16);
    cr_assert_arr_eq(key, want, 16);
    wzp_tls_expand_label_sha256(secret, "quic iv", iv, sizeof iv);
    unhex("fa044b2f42a3fd3b46fb255c", want, 12);
    cr_assert_arr_eq(iv, want, 12);
    wzp_tls_expand_label_sha256(secret, "quic hp", hp, sizeof hp);
    unhex("9f50449e04a0e810283a1e9933adedd2", want, 16);
    cr_assert_arr_eq(hp, want, 16);
}

Test(tls, our_header_protection_mask_matches_rfc9001_and_the_helper)
{
    if (!wzp_aead_available())
        cr_skip_test("no AES-NI/PCLMULQDQ on this CPU: ngtcp2's helper protects headers");
    uint8_t hp_key[16], sample[16], want[5], mask[5] = {0}, helper_mask[5] = {0};
    unhex("9f50449e04a0e810283a1e9933adedd2", hp_key, 16);
    unhex("d1b1c98dd7689fb8ec11d242b123dc9b", sample, 16);
    unhex("437b9aec36", want, 5);
    ngtcp2_crypto_cipher hp = {(void *)GNUTLS_CIPHER_AES_128_CBC};
    ngtcp2_crypto_cipher_ctx ours = {wzp_aead_new(hp_key)}; /* as tls.c installs it */
    cr_assert_not_null(ours.native_handle);
    cr_assert_eq(wzp_tls_hp_mask(mask, &hp, &ours, sample), 0);
    cr_assert_arr_eq(mask, want, 5);
    /* A GnuTLS context (Initial, Handshake, other suites) goes to ngtcp2's helper. */
    gnutls_cipher_hd_t hd; /* as the helper makes them */
    gnutls_datum_t k = {hp_key, sizeof hp_key};
    cr_assert_eq(gnutls_cipher_init(&hd, GNUTLS_CIPHER_AES_128_CBC, &k, NULL), 0);
    ngtcp2_crypto_cipher_ctx theirs = {hd};
    cr_assert_eq(wzp_tls_hp_mask(helper_mask, &hp, &theirs, sample), 0);
    cr_assert_arr_eq(helper_mask, want, 5);
    /* Each is freed by its own owner (the sanitizer builds would report a leak). */
    wzp_tls_delete_cipher_ctx(NULL, &ours, NULL);
    cr_assert_null(ours.native_handle);
    wzp_tls_delete_cipher_ctx(NULL, &theirs, NULL);
}

/* ---- 1-RTT packet protection: our AES-GCM context and GnuTLS's, through the same
 * callbacks (RFC 9001 Appendix A.4: the Retry integrity tag, an AEAD over an empty
 * plaintext with the Retry pseudo-packet as associated data) ---- */

/* Seal 100 bytes with one context and open them with the other, through the callbacks. */
static void crosses(const ngtcp2_crypto_aead *aead, const ngtcp2_crypto_aead_ctx *seal,
                    const ngtcp2_crypto_aead_ctx *open, const uint8_t *nonce, const uint8_t *ad)
{
    uint8_t pkt[100 + 16], back[100];
    for (size_t j = 0; j < 100; j++)
        pkt[j] = (uint8_t)j;
    cr_assert_eq(wzp_tls_encrypt(pkt, aead, seal, pkt, 100, nonce, 12, ad, 9), 0);
    cr_assert_eq(wzp_tls_decrypt(back, aead, open, pkt, sizeof pkt, nonce, 12, ad, 9), 0);
    for (size_t j = 0; j < 100; j++)
        cr_assert_eq(back[j], (uint8_t)j);
    pkt[50] ^= 1;
    cr_assert_neq(wzp_tls_decrypt(back, aead, open, pkt, sizeof pkt, nonce, 12, ad, 9), 0,
                  "a changed byte is refused");
}

Test(tls, our_aead_and_the_helpers_agree_through_the_callbacks)
{
    uint8_t key[16], nonce[12], ad[29], want[16], tag[16];
    unhex("be0c690b9f66575a1d766b54e368c84e", key, 16);
    unhex("461599d35d632bf2239825bb", nonce, 12);
    unhex("088394c8f03e515708ff000000010008f067a5502a4262b5746f6b656e", ad, 29);
    unhex("04a265ba2eff4d829058fb3f0f2496ba", want, 16);
    ngtcp2_crypto_aead aead = {(void *)GNUTLS_CIPHER_AES_128_GCM, 16}; /* as the helper's */
    /* GnuTLS's context (Initial, Handshake, a CPU without AES-NI) goes to the helper. */
    ngtcp2_crypto_aead_ctx theirs = {0};
    cr_assert_eq(ngtcp2_crypto_aead_ctx_encrypt_init(&theirs, &aead, key, 12), 0);
    cr_assert_eq(wzp_tls_encrypt(tag, &aead, &theirs, NULL, 0, nonce, 12, ad, sizeof ad), 0);
    cr_assert_arr_eq(tag, want, 16);
    if (wzp_aead_available()) {
        ngtcp2_crypto_aead_ctx ours = {wzp_aead_new(key)};
        cr_assert_not_null(ours.native_handle);
        memset(tag, 0, sizeof tag);
        cr_assert_eq(wzp_tls_encrypt(tag, &aead, &ours, NULL, 0, nonce, 12, ad, sizeof ad), 0);
        cr_assert_arr_eq(tag, want, 16);
        crosses(&aead, &ours, &theirs, nonce, ad);
        crosses(&aead, &theirs, &ours, nonce, ad);
        /* Each is freed by its own owner (the sanitizer builds would report a leak). */
        wzp_tls_delete_aead_ctx(NULL, &ours, NULL);
        cr_assert_null(ours.native_handle);
    }
    wzp_tls_delete_aead_ctx(NULL, &theirs, NULL);
}
