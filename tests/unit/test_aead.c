/*
 * test_aead.c - the relay's AES-128-GCM: published vectors, then agreement with nettle's
 * implementation over every length a short QUIC packet can have (whole blocks, four-block
 * chunks and partial tails, with and without associated data), in place and not, and
 * every kind of tampering refused.
 */
#include "aead.h"

#include "common.h"

#include <criterion/criterion.h>
#include <nettle/aes.h>
#include <nettle/gcm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void need_cpu(void)
{
    if (!wzp_aead_available())
        cr_skip_test("no AES-NI/PCLMULQDQ on this CPU: the relay keeps GnuTLS's AES-GCM");
}

/* Test case 4 of the GCM specification (McGrew and Viega): 60 bytes, 20 bytes of AD. */
Test(aead, gcm_specification_test_case_4)
{
    need_cpu();
    uint8_t key[16], iv[12], pt[64], ad[20], ct[64], tag[16], out[80], back[64];
    unhex(key, "feffe9928665731c6d6a8f9467308308");
    unhex(iv, "cafebabefacedbaddecaf888");
    size_t n = unhex(pt, "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                         "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    unhex(ad, "feedfacedeadbeeffeedfacedeadbeefabaddad2");
    unhex(ct, "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
              "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091");
    unhex(tag, "5bc94fbc3221a5db94fae95ae7121a47");
    cr_assert_eq(n, 60);
    struct wzp_aead *a = wzp_aead_new(key);
    cr_assert_not_null(a);
    cr_assert(wzp_aead_is(a));
    wzp_aead_seal(a, out, pt, n, iv, ad, sizeof ad);
    cr_assert_arr_eq(out, ct, n);
    cr_assert_arr_eq(out + n, tag, 16);
    cr_assert_eq(wzp_aead_open(a, back, out, n + 16, iv, ad, sizeof ad), 0);
    cr_assert_arr_eq(back, pt, n);
    wzp_aead_free(a);
}

/* The block function header protection uses: FIPS-197 Appendix C.1, then nettle's
 * AES-128 on blocks of a simple generator, under several keys. */
Test(aead, aes_block_matches_fips197_and_nettle)
{
    need_cpu();
    uint8_t key[16], in[16], want[16], out[16];
    unhex(key, "000102030405060708090a0b0c0d0e0f");
    unhex(in, "00112233445566778899aabbccddeeff");
    unhex(want, "69c4e0d86a7b0430d8cdb78070b4c55a");
    struct wzp_aead *a = wzp_aead_new(key);
    cr_assert_not_null(a);
    wzp_aead_block(a, out, in);
    cr_assert_arr_eq(out, want, 16);
    wzp_aead_block(a, in, in); /* in place */
    cr_assert_arr_eq(in, want, 16);
    wzp_aead_free(a);
    uint32_t x = 0x9e3779b9u;
    for (int k = 0; k < 8; k++) {
        for (int i = 0; i < 16; i++)
            key[i] = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
        struct aes128_ctx ref;
        aes128_set_encrypt_key(&ref, key);
        a = wzp_aead_new(key);
        cr_assert_not_null(a);
        for (int b = 0; b < 64; b++) {
            for (int i = 0; i < 16; i++)
                in[i] = (uint8_t)((x = x * 1664525u + 1013904223u) >> 24);
            aes128_encrypt(&ref, 16, want, in);
            wzp_aead_block(a, out, in);
            cr_assert_arr_eq(out, want, 16, "key %d block %d", k, b);
        }
        wzp_aead_free(a);
    }
}

/* Test cases 1 and 2: the empty message, then one zero block, under the zero key. */
Test(aead, gcm_specification_test_cases_1_and_2)
{
    need_cpu();
    uint8_t key[16] = {0}, iv[12] = {0}, zero[16] = {0}, out[32], want[32];
    struct wzp_aead *a = wzp_aead_new(key);
    cr_assert_not_null(a);
    wzp_aead_seal(a, out, zero, 0, iv, NULL, 0);
    unhex(want, "58e2fccefa7e3061367f1d57a4e7455a");
    cr_assert_arr_eq(out, want, 16);
    wzp_aead_seal(a, out, zero, 16, iv, NULL, 0);
    unhex(want, "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf");
    cr_assert_arr_eq(out, want, 32);
    wzp_aead_free(a);
}

static uint32_t rng = 12345;
static uint8_t rnd(void)
{
    rng = rng * 1103515245u + 12345u;
    return (uint8_t)(rng >> 16);
}

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = rnd();
}

/* nettle's GCM: what ours must match byte for byte. */
static void reference_seal(const uint8_t key[16], const uint8_t iv[12], const uint8_t *ad,
                           size_t adlen, const uint8_t *pt, size_t len, uint8_t *out)
{
    struct gcm_aes128_ctx g;
    gcm_aes128_set_key(&g, key);
    gcm_aes128_set_iv(&g, 12, iv);
    gcm_aes128_update(&g, adlen, ad);
    gcm_aes128_encrypt(&g, len, out, pt);
    gcm_aes128_digest(&g, 16, out + len);
}

Test(aead, agrees_with_nettle_for_every_short_length)
{
    need_cpu();
    static const size_t adlens[] = {0, 1, 9, 15, 16, 17, 21, 32, 47, 64, 65, 130};
    uint8_t key[16], iv[12], ad[160], pt[320], want[340], got[340], back[340];
    for (size_t len = 0; len <= 300; len++) {
        for (size_t k = 0; k < WZP_ARRAY_LEN(adlens); k++) {
            size_t adlen = adlens[k];
            fill(key, sizeof key);
            fill(iv, sizeof iv);
            fill(ad, adlen);
            fill(pt, len);
            reference_seal(key, iv, ad, adlen, pt, len, want);
            struct wzp_aead *a = wzp_aead_new(key);
            cr_assert_not_null(a);
            wzp_aead_seal(a, got, pt, len, iv, ad, adlen);
            cr_assert_arr_eq(got, want, len + 16, "seal differs: %zu bytes, %zu of AD", len, adlen);
            cr_assert_eq(wzp_aead_open(a, back, got, len + 16, iv, ad, adlen), 0,
                         "open refused: %zu bytes, %zu of AD", len, adlen);
            cr_assert_arr_eq(back, pt, len);
            /* In place, both ways. */
            memcpy(back, pt, len);
            wzp_aead_seal(a, back, back, len, iv, ad, adlen);
            cr_assert_arr_eq(back, want, len + 16);
            cr_assert_eq(wzp_aead_open(a, back, back, len + 16, iv, ad, adlen), 0);
            cr_assert_arr_eq(back, pt, len);
            wzp_aead_free(a);
        }
    }
}

Test(aead, any_changed_bit_is_refused)
{
    need_cpu();
    uint8_t key[16], iv[12], ad[21], pt[100], sealed[116], out[116];
    fill(key, sizeof key);
    fill(iv, sizeof iv);
    fill(ad, sizeof ad);
    fill(pt, sizeof pt);
    struct wzp_aead *a = wzp_aead_new(key);
    cr_assert_not_null(a);
    wzp_aead_seal(a, sealed, pt, sizeof pt, iv, ad, sizeof ad);
    for (size_t bit = 0; bit < 8 * sizeof sealed; bit++) {
        sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_eq(wzp_aead_open(a, out, sealed, sizeof sealed, iv, ad, sizeof ad), -1,
                     "bit %zu of the packet", bit);
        sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 8 * sizeof ad; bit++) {
        ad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_eq(wzp_aead_open(a, out, sealed, sizeof sealed, iv, ad, sizeof ad), -1);
        ad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    iv[11] ^= 1;
    cr_assert_eq(wzp_aead_open(a, out, sealed, sizeof sealed, iv, ad, sizeof ad), -1);
    iv[11] ^= 1;
    cr_assert_eq(wzp_aead_open(a, out, sealed, 15, iv, ad, sizeof ad), -1, "shorter than a tag");
    cr_assert_eq(wzp_aead_open(a, out, sealed, sizeof sealed, iv, ad, sizeof ad), 0);
    cr_assert_arr_eq(out, pt, sizeof pt);
    wzp_aead_free(a);
}

Test(aead, a_context_is_told_apart_from_other_handles)
{
    need_cpu();
    uint8_t key[16] = {1};
    struct wzp_aead *a = wzp_aead_new(key);
    cr_assert_not_null(a);
    cr_assert(wzp_aead_is(a));
    cr_assert_eq((uintptr_t)a % 64, 0, "cache-line aligned");
    void *handle[2] = {&handle, NULL}; /* a handle whose first word is a pointer */
    cr_assert_not(wzp_aead_is(handle));
    wzp_aead_free(a);
    wzp_aead_free(NULL);
}

/* The operators' escape hatch (and the tests' way to the fallback): WZP_AEAD=gnutls. Each
 * test runs in its own process, so the decision is made afresh here. */
Test(aead, the_environment_can_turn_it_off)
{
    setenv("WZP_AEAD", "gnutls", 1);
    cr_assert(wzp_aead_turned_off());
    cr_assert_not(wzp_aead_available());
    uint8_t key[16] = {0};
    cr_assert_null(wzp_aead_new(key), "no context: the relay keeps GnuTLS's");
    cr_assert_not_null(strstr(wzp_aead_status(), "WZP_AEAD=gnutls"));
}
