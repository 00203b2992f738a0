/*
 * common.h - the status vocabulary and small helpers every core module shares.
 *
 * Functions return WZP_OK (0) on success or a negative WZP_E* code. A function that
 * returns an error has not taken ownership of its arguments and has not invoked any
 * callback it was given.
 */
#ifndef WZP_COMMON_H
#define WZP_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum wzp_status {
    WZP_OK = 0,
    WZP_EINVAL = -1,    /* malformed input: the caller must reject it */
    WZP_ENOMEM = -2,    /* allocation failed */
    WZP_ETOOBIG = -3,   /* input exceeds a documented limit */
    WZP_EAGAIN = -4,    /* incomplete: call again with more input */
    WZP_EIO = -5,       /* system call or file error (errno is set) */
    WZP_ECRYPTO = -6,   /* signature, key or TLS failure */
    WZP_ENOTFOUND = -7, /* lookup found nothing */
    WZP_EFULL = -8,     /* a bounded queue or table is full */
    WZP_ESTATE = -9,    /* call not valid in the current state */
    WZP_EEXIST = -10,   /* the key is already in use */
    WZP_EPERM = -11,    /* the caller may not do this to that object */
};

/* A short, static description of a WZP_E* code. */
const char *wzp_strerror(int status);

/* A macro's value as a string literal. */
#define WZP_STR_(x)      #x
#define WZP_STR(x)       WZP_STR_(x)
#define WZP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define WZP_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define WZP_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* Invariant that must hold; a violation is a bug: report file:line and abort. */
#define WZP_BUG_ON(cond)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            fprintf(stderr, "BUG at %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* An invariant checked only in builds with WZP_INVARIANTS (Debug, sanitizers, fuzzers):
 * for checks that walk or sum state, too costly for every release build. */
#ifdef WZP_CHECK_INVARIANTS
#define WZP_CHECK(cond) WZP_BUG_ON(!(cond))
#else
#define WZP_CHECK(cond) ((void)0)
#endif

static inline void wzp_put_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void wzp_put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint16_t wzp_get_u16be(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t wzp_get_u32be(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Parse a decimal integer in [min, max] with nothing else around it. false if invalid. */
bool wzp_parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out);

/* FNV-1a over len bytes: for hash tables keyed by short names and connection IDs. */
uint64_t wzp_fnv1a(const void *data, size_t len);

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
uint64_t wzp_now_ns(void);
/* CPU time the calling thread has used (a system call: not for per-packet paths). */
uint64_t wzp_thread_cpu_ns(void);

/* Lower-case hex of len bytes into out (2*len+1 bytes, NUL-terminated). */
void wzp_hex_encode(const uint8_t *in, size_t len, char *out);

/* Value of one hex digit (either case), or -1. */
int wzp_hex_digit(int c);

/* Parse exactly 2*len hex digits (either case) into out. WZP_EINVAL on any other input. */
int wzp_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t len);

#endif
