/* aead.c - see aead.h.
 *
 * GHASH works on byte-reversed blocks: reversing the bytes of a GCM block leaves its bits
 * in the order PCLMULQDQ multiplies them in except for a one-bit shift, so a product is
 * four carry-less 64x64 multiplications, a shift left by one and a reduction modulo
 * x^128 + x^7 + x^2 + x + 1 (Gueron and Kounavis, "Intel Carry-Less Multiplication
 * Instruction and its Usage for Computing the GCM Mode", algorithms 1 and 4). Four blocks
 * are absorbed per reduction with H, H^2, H^3, H^4 (the reduction is linear, so the
 * products can be summed first). Counter blocks go through AES four at a time.
 */
#include "aead.h"

#include "common.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

bool wzp_aead_turned_off(void)
{
    const char *v = getenv("WZP_AEAD");
    return v && strcmp(v, "gnutls") == 0;
}

struct wzp_aead {
    uint64_t magic; /* WZP_AEAD_MAGIC, first */
    uint64_t unused;
    alignas(16) uint8_t rk[11][16]; /* AES-128 round keys */
    alignas(16) uint8_t h[4][16];   /* H, H^2, H^3, H^4, byte-reversed */
};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TGT __attribute__((target("aes,pclmul,sse4.1")))

_Static_assert(sizeof(struct wzp_aead) == 256, "four cache lines");

static bool cpu_has_instructions(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
           __builtin_cpu_supports("sse4.1");
}

bool wzp_aead_available(void)
{
    /* Workers ask concurrently; each would find the same answer. */
    static _Atomic int have = -1;
    int h = atomic_load_explicit(&have, memory_order_relaxed);
    if (h < 0) {
        h = cpu_has_instructions() && !wzp_aead_turned_off();
        atomic_store_explicit(&have, h, memory_order_relaxed);
    }
    return h;
}

const char *wzp_aead_status(void)
{
    if (wzp_aead_available())
        return "the relay's own AES-128-GCM and header protection (AES-NI, PCLMULQDQ)";
    return wzp_aead_turned_off() ? "GnuTLS's (WZP_AEAD=gnutls)"
                                 : "GnuTLS's (this CPU lacks AES-NI or PCLMULQDQ)";
}

TGT static inline __m128i rk_at(const struct wzp_aead *a, int i)
{
    return _mm_load_si128((const __m128i *)a->rk[i]);
}

TGT static inline __m128i h_at(const struct wzp_aead *a, int i)
{
    return _mm_load_si128((const __m128i *)a->h[i]);
}

TGT static inline __m128i bswap128(__m128i v)
{
    return _mm_shuffle_epi8(v, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* One step of the AES-128 key schedule: the previous round key and the word
 * AESKEYGENASSIST made from it (SubWord(RotWord(w3)) ^ rcon in its top lane). */
TGT static inline __m128i next_round_key(__m128i prev, __m128i assist)
{
    assist = _mm_shuffle_epi32(assist, 0xff);
    prev = _mm_xor_si128(prev, _mm_slli_si128(prev, 4));
    prev = _mm_xor_si128(prev, _mm_slli_si128(prev, 8)); /* w0, w0^w1, w0^w1^w2, ... */
    return _mm_xor_si128(prev, assist);
}

/* The instruction takes its round constant as an immediate. */
#define ROUND_KEY(rk, i, rcon)                                                                     \
    rk[i] = next_round_key(rk[(i)-1], _mm_aeskeygenassist_si128(rk[(i)-1], rcon))

TGT static void expand_key(__m128i rk[11], const uint8_t key[16])
{
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    ROUND_KEY(rk, 1, 0x01);
    ROUND_KEY(rk, 2, 0x02);
    ROUND_KEY(rk, 3, 0x04);
    ROUND_KEY(rk, 4, 0x08);
    ROUND_KEY(rk, 5, 0x10);
    ROUND_KEY(rk, 6, 0x20);
    ROUND_KEY(rk, 7, 0x40);
    ROUND_KEY(rk, 8, 0x80);
    ROUND_KEY(rk, 9, 0x1b);
    ROUND_KEY(rk, 10, 0x36);
}

TGT static inline __m128i aes_block(const struct wzp_aead *a, __m128i b)
{
    b = _mm_xor_si128(b, rk_at(a, 0));
#pragma GCC unroll 9
    for (int i = 1; i < 10; i++)
        b = _mm_aesenc_si128(b, rk_at(a, i));
    return _mm_aesenclast_si128(b, rk_at(a, 10));
}

/* Four independent blocks, round by round, so the AES unit's latency overlaps (in
 * registers: an array indexed in the round loop would go through memory every round). */
TGT static inline void aes_4(const struct wzp_aead *a, __m128i b[4])
{
    __m128i k = rk_at(a, 0);
    __m128i x0 = _mm_xor_si128(b[0], k), x1 = _mm_xor_si128(b[1], k);
    __m128i x2 = _mm_xor_si128(b[2], k), x3 = _mm_xor_si128(b[3], k);
#pragma GCC unroll 9
    for (int i = 1; i < 10; i++) {
        k = rk_at(a, i);
        x0 = _mm_aesenc_si128(x0, k);
        x1 = _mm_aesenc_si128(x1, k);
        x2 = _mm_aesenc_si128(x2, k);
        x3 = _mm_aesenc_si128(x3, k);
    }
    k = rk_at(a, 10);
    b[0] = _mm_aesenclast_si128(x0, k);
    b[1] = _mm_aesenclast_si128(x1, k);
    b[2] = _mm_aesenclast_si128(x2, k);
    b[3] = _mm_aesenclast_si128(x3, k);
}

/* A 256-bit carry-less product, kept as low, middle and high parts so several can be
 * summed before one fold. */
struct wide {
    __m128i lo, mid, hi;
};

TGT static inline void mul_add(struct wide *w, __m128i x, __m128i y)
{
    w->lo = _mm_xor_si128(w->lo, _mm_clmulepi64_si128(x, y, 0x00));
    w->hi = _mm_xor_si128(w->hi, _mm_clmulepi64_si128(x, y, 0x11));
    w->mid = _mm_xor_si128(w->mid, _mm_clmulepi64_si128(x, y, 0x01));
    w->mid = _mm_xor_si128(w->mid, _mm_clmulepi64_si128(x, y, 0x10));
}

/* (x >> n) for the 128-bit value x, 0 < n < 64. */
TGT static inline __m128i shr128(__m128i x, int n)
{
    return _mm_or_si128(_mm_srli_epi64(x, n), _mm_srli_si128(_mm_slli_epi64(x, 64 - n), 8));
}

/* The 256-bit sum to a field element: shift left by one bit (the reflection), then
 * reduce the low half into the high half. */
TGT static inline __m128i fold(struct wide w)
{
    __m128i lo = _mm_xor_si128(w.lo, _mm_slli_si128(w.mid, 8));
    __m128i hi = _mm_xor_si128(w.hi, _mm_srli_si128(w.mid, 8));
    /* [hi:lo] <<= 1 across the four 64-bit words */
    __m128i clo = _mm_srli_epi64(lo, 63), chi = _mm_srli_epi64(hi, 63);
    lo = _mm_or_si128(_mm_slli_epi64(lo, 1), _mm_slli_si128(clo, 8));
    hi = _mm_or_si128(_mm_slli_epi64(hi, 1),
                      _mm_or_si128(_mm_slli_si128(chi, 8), _mm_srli_si128(clo, 8)));
    /* Low word X0 shifted by 63, 62, 57 folds into X1; then [X1':X0] shifted right by
     * 1, 2 and 7 (and itself) folds into the high half. */
    __m128i t = _mm_xor_si128(_mm_slli_epi64(lo, 63),
                              _mm_xor_si128(_mm_slli_epi64(lo, 62), _mm_slli_epi64(lo, 57)));
    __m128i d = _mm_xor_si128(lo, _mm_slli_si128(t, 8));
    __m128i r =
        _mm_xor_si128(d, _mm_xor_si128(shr128(d, 1), _mm_xor_si128(shr128(d, 2), shr128(d, 7))));
    return _mm_xor_si128(hi, r);
}

TGT static inline __m128i gf_mul(__m128i x, __m128i y)
{
    struct wide w = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
    mul_add(&w, x, y);
    return fold(w);
}

/* Absorb n (1..4) blocks (as stored in memory) with one reduction:
 * (x ^ b0) H^n + b1 H^(n-1) + ... + b(n-1) H. */
TGT static inline __m128i ghash_n(const struct wzp_aead *a, __m128i x, const __m128i *b, int n)
{
    struct wide w = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
    mul_add(&w, _mm_xor_si128(x, bswap128(b[0])), h_at(a, n - 1));
    for (int j = 1; j < n; j++)
        mul_add(&w, bswap128(b[j]), h_at(a, n - 1 - j));
    return fold(w);
}

/* The hash over a stream of blocks, reduced once per four. */
struct ghash {
    __m128i x;
    __m128i pend[4];
    int n;
};

TGT static inline void gh_push(const struct wzp_aead *a, struct ghash *g, __m128i b)
{
    g->pend[g->n++] = b;
    if (g->n == 4) {
        g->x = ghash_n(a, g->x, g->pend, 4);
        g->n = 0;
    }
}

/* Bytes p[0..n), 0 <= n <= 8, little-endian in a word: overlapping loads, no loop. */
static inline uint64_t load_le_upto8(const uint8_t *p, size_t n)
{
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4); /* overlaps lo where n < 8: the same bytes */
        return lo | (uint64_t)hi << (8 * (n - 4));
    }
    if (n == 0)
        return 0;
    return p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) | (uint64_t)p[n - 1] << (8 * (n - 1));
}

/* The first n < 16 bytes of p, zero-padded. */
TGT static inline __m128i load_partial(const uint8_t *p, size_t n)
{
    uint64_t lo, hi = 0;
    if (n >= 8) {
        memcpy(&lo, p, 8);
        hi = load_le_upto8(p + 8, n - 8);
    } else {
        lo = load_le_upto8(p, n);
    }
    return _mm_set_epi64x((long long)hi, (long long)lo);
}

TGT static void gh_bytes(const struct wzp_aead *a, struct ghash *g, const uint8_t *p, size_t n)
{
    for (; n >= 16; p += 16, n -= 16)
        gh_push(a, g, _mm_loadu_si128((const __m128i *)p));
    if (n)
        gh_push(a, g, load_partial(p, n));
}

/* Counter block i for the 96-bit nonce whose counter-less block is base. */
TGT static inline __m128i counter(__m128i base, uint32_t i)
{
    return _mm_insert_epi32(base, (int)__builtin_bswap32(i), 3);
}

/*
 * GCM over len bytes of in to out: GHASH over ad, the ciphertext (the input when opening,
 * the output when sealing) and the lengths; the tag is that XOR the encrypted counter
 * block 1. Counter blocks are encrypted four at a time from 1 on, so the tag's mask is
 * made with the first data blocks. Each block is loaded before it is stored: out may
 * equal in.
 */
TGT static __m128i gcm(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                       const uint8_t nonce[12], const uint8_t *ad, size_t adlen, bool sealing)
{
    alignas(16) uint8_t nb[16] = {0};
    memcpy(nb, nonce, 12);
    __m128i base = _mm_load_si128((const __m128i *)nb);
    const size_t total = len;
    struct ghash g; /* pend[] is read only up to n: not cleared */
    g.x = _mm_setzero_si128();
    g.n = 0;
    gh_bytes(a, &g, ad, adlen);
    __m128i ks[4];
    for (int j = 0; j < 4; j++)
        ks[j] = counter(base, 1 + (uint32_t)j);
    aes_4(a, ks);
    __m128i mask = ks[0];
    uint32_t next = 5;
    int used = 1;
    for (; len; in += 16, out += 16) {
        if (used == 4) {
            for (int j = 0; j < 4; j++)
                ks[j] = counter(base, next + (uint32_t)j);
            aes_4(a, ks);
            next += 4;
            used = 0;
        }
        size_t n = len < 16 ? len : 16;
        __m128i d = n == 16 ? _mm_loadu_si128((const __m128i *)in) : load_partial(in, n);
        __m128i c = _mm_xor_si128(d, ks[used++]);
        if (n == 16) {
            _mm_storeu_si128((__m128i *)out, c);
        } else {
            alignas(16) uint8_t b[16];
            _mm_store_si128((__m128i *)b, c);
            memcpy(out, b, n);
            c = load_partial(b, n); /* the hash takes the ciphertext zero-padded */
        }
        gh_push(a, &g, sealing ? c : d);
        len -= n;
    }
    gh_push(a, &g,
            _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)total * 8),
                           (long long)__builtin_bswap64((uint64_t)adlen * 8)));
    if (g.n)
        g.x = ghash_n(a, g.x, g.pend, g.n);
    return _mm_xor_si128(bswap128(g.x), mask);
}

TGT static void setup(struct wzp_aead *a, const uint8_t key[16])
{
    __m128i rk[11];
    expand_key(rk, key);
    for (int i = 0; i < 11; i++)
        _mm_store_si128((__m128i *)a->rk[i], rk[i]);
    __m128i h = bswap128(aes_block(a, _mm_setzero_si128()));
    __m128i p = h;
    for (int i = 0; i < 4; i++) {
        _mm_store_si128((__m128i *)a->h[i], p);
        p = gf_mul(p, h);
    }
    memset(rk, 0, sizeof rk);
}

TGT void wzp_aead_seal(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                       const uint8_t nonce[WZP_AEAD_NONCELEN], const uint8_t *ad, size_t adlen)
{
    __m128i tag = gcm(a, out, in, len, nonce, ad, adlen, true);
    _mm_storeu_si128((__m128i *)(out + len), tag);
}

TGT void wzp_aead_block(const struct wzp_aead *a, uint8_t out[16], const uint8_t in[16])
{
    _mm_storeu_si128((__m128i *)out, aes_block(a, _mm_loadu_si128((const __m128i *)in)));
}

TGT int wzp_aead_open(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                      const uint8_t nonce[WZP_AEAD_NONCELEN], const uint8_t *ad, size_t adlen)
{
    if (len < WZP_AEAD_TAGLEN)
        return -1;
    len -= WZP_AEAD_TAGLEN;
    __m128i got = _mm_loadu_si128((const __m128i *)(in + len)); /* before out overwrites it */
    __m128i want = gcm(a, out, in, len, nonce, ad, adlen, false);
    __m128i diff = _mm_xor_si128(got, want);
    return _mm_testz_si128(diff, diff) ? 0 : -1; /* no early exit: constant time */
}

#else /* no AES-NI path on this architecture: the caller keeps GnuTLS's */

bool wzp_aead_available(void)
{
    return false;
}

const char *wzp_aead_status(void)
{
    return "GnuTLS's (no AES-NI code for this architecture)";
}

static void setup(struct wzp_aead *a, const uint8_t key[16])
{
    (void)a;
    (void)key;
}

void wzp_aead_seal(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                   const uint8_t nonce[WZP_AEAD_NONCELEN], const uint8_t *ad, size_t adlen)
{
    (void)a, (void)out, (void)in, (void)len, (void)nonce, (void)ad, (void)adlen;
    WZP_BUG_ON(1); /* no context can exist here */
}

void wzp_aead_block(const struct wzp_aead *a, uint8_t out[16], const uint8_t in[16])
{
    (void)a, (void)out, (void)in;
    WZP_BUG_ON(1);
}

int wzp_aead_open(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                  const uint8_t nonce[WZP_AEAD_NONCELEN], const uint8_t *ad, size_t adlen)
{
    (void)a, (void)out, (void)in, (void)len, (void)nonce, (void)ad, (void)adlen;
    WZP_BUG_ON(1);
    return -1;
}
#endif

struct wzp_aead *wzp_aead_new(const uint8_t key[WZP_AEAD_KEYLEN])
{
    if (!wzp_aead_available())
        return NULL;
    struct wzp_aead *a = aligned_alloc(64, sizeof *a);
    if (!a)
        return NULL;
    a->magic = WZP_AEAD_MAGIC;
    a->unused = 0;
    setup(a, key);
    return a;
}

void wzp_aead_prefetch(const void *p, bool block_only)
{
    size_t end = block_only ? offsetof(struct wzp_aead, h) : sizeof(struct wzp_aead);
    for (size_t off = 0; off < end; off += 64)
        __builtin_prefetch((const char *)p + off, 0, 3);
}

void wzp_aead_free(struct wzp_aead *a)
{
    if (!a)
        return;
    memset(a, 0, sizeof *a);
    __asm__ __volatile__("" : : "r"(a) : "memory"); /* the round keys are really wiped */
    free(a);
}
