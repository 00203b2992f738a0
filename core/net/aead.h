/*
 * aead.h - AES-128-GCM (NIST SP 800-38D, 96-bit nonces, 16-byte tags) for 1-RTT packet
 * protection, and the AES block of its header protection, on the CPU's AES and carry-less
 * multiply instructions.
 *
 * Why the relay has its own: at 1 000 connections GnuTLS's AES-GCM handles (a handle, a
 * context with a 256-byte multiplication table, state rewritten per packet, spread over
 * separate allocations) cost 23.7 cache misses per delivered datagram (~9.5 per packet
 * protected or opened, 2.5 packets per datagram), and with header protection ~330 ns per
 * packet in a 40 x 5 profile (0.82 us per datagram). A context here is one
 * 256-byte aligned block (four cache lines: round keys and the hash key powers), read and
 * never written per packet. See doc/BENCHMARKS.md, "Which memory".
 *
 * Only x86-64 with AES-NI, PCLMULQDQ and SSE4.1 (checked at run time); elsewhere
 * wzp_aead_available() is false and the caller keeps GnuTLS's (tls.c: ngtcp2's helper).
 */
#ifndef WZP_AEAD_H
#define WZP_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_AEAD_KEYLEN   16
#define WZP_AEAD_NONCELEN 12
#define WZP_AEAD_TAGLEN   16

/* The first eight bytes of every context: not a canonical x86-64 or AArch64 address,
 * so a context is told apart from a GnuTLS handle (whose first word is a pointer). */
#define WZP_AEAD_MAGIC 0xfe11ae5d0ae5c0deull

struct wzp_aead;

/* Does this CPU have the instructions, and has the environment not turned the relay's
 * AES-GCM off (WZP_AEAD=gnutls: GnuTLS's everywhere, an escape hatch for operators and
 * how the tests reach the fallback)? Decided at the first call. */
bool wzp_aead_available(void);
bool wzp_aead_turned_off(void);

/* Which AES-GCM protects 1-RTT packets, and why, for the start-up log. */
const char *wzp_aead_status(void);

/* A context for key (NULL without memory or without CPU support). */
struct wzp_aead *wzp_aead_new(const uint8_t key[WZP_AEAD_KEYLEN]);

/* Wipe and free (NULL is fine). */
void wzp_aead_free(struct wzp_aead *a);

/* Is p (non-NULL, at least 8 readable bytes) a context made by wzp_aead_new? */
static inline bool wzp_aead_is(const void *p)
{
    return *(const uint64_t *)p == WZP_AEAD_MAGIC;
}

/* Encrypt len bytes of in to out and append the tag (out holds len + 16 bytes); out may
 * equal in. */
void wzp_aead_seal(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                   const uint8_t nonce[WZP_AEAD_NONCELEN], const uint8_t *ad, size_t adlen);

/* One AES-128 block of in with the context's key (QUIC header protection, RFC 9001
 * 5.4.3: a context made for the header protection key serves as its cipher). */
void wzp_aead_block(const struct wzp_aead *a, uint8_t out[16], const uint8_t in[16]);

/* Start fetching the context into the cache (p may be stale: prefetches do not fault):
 * all of it, or with block_only the lines wzp_aead_block reads. */
void wzp_aead_prefetch(const void *p, bool block_only);

/* Check and decrypt len bytes of in (ciphertext then tag, len >= 16) to out (len - 16
 * bytes; out may equal in). 0, or -1 if the tag does not match (out then holds
 * unauthenticated bytes the caller must drop). */
int wzp_aead_open(const struct wzp_aead *a, uint8_t *out, const uint8_t *in, size_t len,
                  const uint8_t nonce[WZP_AEAD_NONCELEN], const uint8_t *ad, size_t adlen);

#endif
