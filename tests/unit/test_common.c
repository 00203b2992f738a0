/* test_common.c - status strings, hex, unsigned parsing and the FNV-1a hash. */
#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

Test(common, every_status_has_a_description)
{
    int codes[] = {WZP_OK,      WZP_EINVAL,    WZP_ENOMEM, WZP_ETOOBIG, WZP_EAGAIN, WZP_EIO,
                   WZP_ECRYPTO, WZP_ENOTFOUND, WZP_EFULL,  WZP_ESTATE,  WZP_EEXIST, WZP_EPERM};
    for (size_t i = 0; i < WZP_ARRAY_LEN(codes); i++)
        cr_assert_str_neq(wzp_strerror(codes[i]), "unknown error", "code %d", codes[i]);
    cr_assert_str_eq(wzp_strerror(-12345), "unknown error");
}

Test(common, hex_round_trip_and_refusals)
{
    uint8_t in[4] = {0x00, 0x7f, 0xab, 0xff}, out[4];
    char hex[9];
    wzp_hex_encode(in, sizeof in, hex);
    cr_assert_str_eq(hex, "007fabff");
    cr_assert_eq(wzp_hex_decode("007FABff", 8, out, 4), WZP_OK, "either case");
    cr_assert_eq(memcmp(in, out, 4), 0);
    cr_assert_eq(wzp_hex_decode("007fab", 6, out, 4), WZP_EINVAL, "too short");
    cr_assert_eq(wzp_hex_decode("007fabgg", 8, out, 4), WZP_EINVAL, "not hex");
}

Test(common, parse_uint_takes_only_plain_decimal_in_range)
{
    unsigned long v = 0;
    cr_assert(wzp_parse_uint("42", 1, 100, &v));
    cr_assert_eq(v, 42);
    cr_assert_not(wzp_parse_uint("0", 1, 100, &v), "below min");
    cr_assert_not(wzp_parse_uint("101", 1, 100, &v), "above max");
    cr_assert_not(wzp_parse_uint("-1", 0, 100, &v), "no sign");
    cr_assert_not(wzp_parse_uint(" 5", 0, 100, &v), "no blanks");
    cr_assert_not(wzp_parse_uint("5x", 0, 100, &v), "no trailing text");
    cr_assert_not(wzp_parse_uint("", 0, 100, &v));
    cr_assert_not(wzp_parse_uint("99999999999999999999999", 0, ~0ul, &v), "overflow");
}

Test(common, fnv1a_matches_the_reference_values)
{
    cr_assert_eq(wzp_fnv1a("", 0), 0xcbf29ce484222325ull);
    cr_assert_eq(wzp_fnv1a("a", 1), 0xaf63dc4c8601ec8cull);
    cr_assert_eq(wzp_fnv1a("foobar", 6), 0x85944171f73967e8ull);
}

Test(common, big_endian_helpers)
{
    uint8_t b[4];
    wzp_put_u32be(b, 0x01020304);
    cr_assert_eq(b[0], 1);
    cr_assert_eq(b[3], 4);
    cr_assert_eq(wzp_get_u32be(b), 0x01020304);
    wzp_put_u16be(b, 0xa1b2);
    cr_assert_eq(b[0], 0xa1);
    cr_assert_eq(b[1], 0xb2);
}
