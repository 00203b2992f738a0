/* testutil.h - small assertion helpers shared by the unit tests (header-only). */
#ifndef WZP_TESTUTIL_H
#define WZP_TESTUTIL_H

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

/* Decode a hex test vector of exactly len bytes. */
static inline void unhex(const char *hex, uint8_t *out, size_t len)
{
    cr_assert_eq(wzp_hex_decode(hex, strlen(hex), out, len), WZP_OK, "bad test hex %s", hex);
}

/* Assert that len bytes (at most 64) equal a hex string. */
static inline void assert_bytes_hex(const uint8_t *got, size_t len, const char *want_hex)
{
    char hex[2 * 64 + 1];
    cr_assert(len <= 64);
    wzp_hex_encode(got, len, hex);
    cr_assert_str_eq(hex, want_hex);
}

#endif
