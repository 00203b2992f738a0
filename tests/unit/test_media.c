/* test_media.c - MediaHeader / QualityReport codec (media.c, doc/PROTOCOL.md "Media"). */
#include "media.h"

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

/* Decode a hex string (spaces ignored) into out; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    char digits[512];
    size_t n = 0;
    for (const char *p = hex; *p; p++) {
        if (*p != ' ')
            digits[n++] = *p;
    }
    cr_assert(n % 2 == 0 && n / 2 <= cap);
    cr_assert_eq(wzp_hex_decode(digits, n, out, n / 2), WZP_OK);
    return n / 2;
}

/* ---- §2.5 test vectors ---- */

Test(vectors, opus24k_source_with_report)
{
    uint8_t d[64], hdr_bytes[12], qr[4];
    size_t len = unhex("02 00 1234 000186a0 00 00 00 00 aabbcc 191914c8", d, sizeof(d));
    struct wzp_media_header h;
    struct wzp_quality_report r;
    cr_assert_eq(len, 19);
    cr_assert_eq(wzp_media_parse(d, len, &h, &r), WZP_MEDIA_OK);
    cr_assert_eq(wzp_media_check(d, len), WZP_MEDIA_OK);
    cr_assert_not(h.version);
    cr_assert_not(h.repair);
    cr_assert_eq(h.codec, WZP_CODEC_OPUS24K);
    cr_assert(h.has_quality);
    cr_assert_eq(h.fec_ratio_raw, 0);
    cr_assert_eq(h.seq, 0x1234);
    cr_assert_eq(h.timestamp_ms, 100000);
    cr_assert_eq(h.fec_block, 0);
    cr_assert_eq(h.fec_symbol, 0);
    cr_assert_eq(h.reserved, 0);
    cr_assert_eq(h.csrc_count, 0);
    cr_assert_eq(r.loss_pct, 25);
    cr_assert_eq(r.rtt_4ms, 25);
    cr_assert_eq(r.jitter_ms, 20);
    cr_assert_eq(r.bitrate_cap_kbps, 200);
    wzp_media_write_header(&h, hdr_bytes);
    cr_assert_arr_eq(hdr_bytes, d, 12);
    wzp_media_write_report(&r, qr);
    cr_assert_arr_eq(qr, d + len - 4, 4);
}

Test(vectors, codec2_1200_repair_fec127)
{
    uint8_t d[64], hdr_bytes[12];
    size_t len = unhex("51 fc ffff ffffffff ff 03 00 00 0102", d, sizeof(d));
    struct wzp_media_header h;
    struct wzp_quality_report r = {1, 2, 3, 4};
    cr_assert_eq(len, 14);
    cr_assert_eq(wzp_media_parse(d, len, &h, &r), WZP_MEDIA_OK);
    cr_assert_not(h.version);
    cr_assert(h.repair);
    cr_assert_eq(h.codec, WZP_CODEC_CODEC2_1200);
    cr_assert_not(h.has_quality);
    cr_assert_eq(h.fec_ratio_raw, 127);
    cr_assert_eq(h.seq, 0xffff);
    cr_assert_eq(h.timestamp_ms, 0xffffffffu);
    cr_assert_eq(h.fec_block, 0xff);
    cr_assert_eq(h.fec_symbol, 3);
    cr_assert_eq(h.reserved, 0);
    cr_assert_eq(h.csrc_count, 0);
    cr_assert(r.loss_pct == 1 && r.rtt_4ms == 2 && r.jitter_ms == 3 && r.bitrate_cap_kbps == 4,
              "report untouched without Q");
    wzp_media_write_header(&h, hdr_bytes);
    cr_assert_arr_eq(hdr_bytes, d, 12);
}

Test(vectors, comfort_noise)
{
    uint8_t d[64], hdr_bytes[12];
    size_t len = unhex("14 00 0007 0000008c 00 00 00 00 10", d, sizeof(d));
    struct wzp_media_header h;
    cr_assert_eq(len, 13);
    cr_assert_eq(wzp_media_parse(d, len, &h, NULL), WZP_MEDIA_OK);
    cr_assert_not(h.version);
    cr_assert_not(h.repair);
    cr_assert_eq(h.codec, WZP_CODEC_COMFORT_NOISE);
    cr_assert_not(h.has_quality);
    cr_assert_eq(h.fec_ratio_raw, 0);
    cr_assert_eq(h.seq, 7);
    cr_assert_eq(h.timestamp_ms, 140);
    cr_assert_eq(h.fec_block, 0);
    cr_assert_eq(h.fec_symbol, 0);
    wzp_media_write_header(&h, hdr_bytes);
    cr_assert_arr_eq(hdr_bytes, d, 12);
}

/* ---- header bit layout ---- */

Test(header, round_trip_all_fields)
{
    struct wzp_media_header in =
                                {
                                    .version = true,
                                    .repair = true,
                                    .codec = WZP_CODEC_OPUS64K,
                                    .has_quality = false,
                                    .fec_ratio_raw = 0x55, /* 1010101: bit 6 goes to byte 0 */
                                    .seq = 0xbeef,
                                    .timestamp_ms = 0x01020304,
                                    .fec_block = 9,
                                    .fec_symbol = 10,
                                    .reserved = 11,
                                    .csrc_count = 12,
                                },
                            out;
    uint8_t b[12];
    wzp_media_write_header(&in, b);
    cr_assert_eq(b[0], 0x80 | 0x40 | (8 << 2) | 0x01);
    cr_assert_eq(b[1], (0x55 & 0x3f) << 2);
    cr_assert_eq(wzp_media_parse(b, sizeof(b), &out, NULL), WZP_MEDIA_OK);
    cr_assert(out.version && out.repair && !out.has_quality);
    cr_assert_eq(out.codec, WZP_CODEC_OPUS64K);
    cr_assert_eq(out.fec_ratio_raw, 0x55);
    cr_assert_eq(out.seq, 0xbeef);
    cr_assert_eq(out.timestamp_ms, 0x01020304);
    cr_assert_eq(out.fec_block, 9);
    cr_assert_eq(out.fec_symbol, 10);
    cr_assert_eq(out.reserved, 11);
    cr_assert_eq(out.csrc_count, 12);
}

Test(header, every_fec_ratio_round_trips)
{
    for (unsigned f = 0; f < 128; f++) {
        struct wzp_media_header in = {.codec = WZP_CODEC_OPUS6K, .fec_ratio_raw = (uint8_t)f};
        struct wzp_media_header out;
        uint8_t b[12];
        wzp_media_write_header(&in, b);
        cr_assert_eq(b[1] & 0x03, 0, "unused bits written 0");
        cr_assert_eq(wzp_media_parse(b, sizeof(b), &out, NULL), WZP_MEDIA_OK);
        cr_assert_eq(out.fec_ratio_raw, f);
        cr_assert_eq(out.codec, WZP_CODEC_OPUS6K);
    }
}

Test(header, fec_ratio_masked_to_7_bits_on_write)
{
    struct wzp_media_header in = {.codec = WZP_CODEC_OPUS24K, .fec_ratio_raw = 0x80};
    uint8_t b[12];
    wzp_media_write_header(&in, b);
    cr_assert_eq(b[0], 0x00, "bit 7 of fec must not leak into Q or codec");
    cr_assert_eq(b[1], 0x00);
}

Test(header, unused_bits_of_byte1_ignored)
{
    uint8_t b[12] = {0x00, 0x07}; /* fec 1, plus both unused bits set */
    struct wzp_media_header h;
    cr_assert_eq(wzp_media_parse(b, sizeof(b), &h, NULL), WZP_MEDIA_OK);
    cr_assert_eq(h.fec_ratio_raw, 1);
}

/* ---- verdicts ---- */

Test(verdict, short)
{
    uint8_t b[16] = {0};
    struct wzp_media_header h;
    for (size_t len = 0; len < 12; len++) {
        cr_assert_eq(wzp_media_parse(b, len, &h, NULL), WZP_MEDIA_SHORT);
        cr_assert_eq(wzp_media_check(b, len), WZP_MEDIA_SHORT);
    }
    cr_assert_eq(wzp_media_check(b, 12), WZP_MEDIA_OK);
}

Test(verdict, bad_codec)
{
    uint8_t b[12] = {0};
    struct wzp_media_header h;
    for (unsigned c = 0; c < 16; c++) {
        enum wzp_media_verdict want = c <= 8 ? WZP_MEDIA_OK : WZP_MEDIA_BAD_CODEC;
        b[0] = (uint8_t)(c << 2);
        cr_assert_eq(wzp_media_parse(b, sizeof(b), &h, NULL), want, "codec %u", c);
        cr_assert_eq(wzp_media_check(b, sizeof(b)), want, "codec %u", c);
        if (want == WZP_MEDIA_OK)
            cr_assert_eq(h.codec, c);
    }
}

Test(verdict, quality_trailer_length)
{
    uint8_t b[16] = {0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa1, 0xa2, 0xa3, 0xa4};
    struct wzp_media_header h;
    struct wzp_quality_report r;
    cr_assert_eq(wzp_media_parse(b, 12, &h, &r), WZP_MEDIA_NO_TRAILER);
    cr_assert_eq(wzp_media_parse(b, 15, &h, &r), WZP_MEDIA_NO_TRAILER);
    cr_assert_eq(wzp_media_check(b, 15), WZP_MEDIA_NO_TRAILER);
    cr_assert_eq(wzp_media_check(b, 16), WZP_MEDIA_OK);
    cr_assert_eq(wzp_media_parse(b, 16, &h, &r), WZP_MEDIA_OK);
    cr_assert(h.has_quality);
    cr_assert_eq(r.loss_pct, 0xa1);
    cr_assert_eq(r.rtt_4ms, 0xa2);
    cr_assert_eq(r.jitter_ms, 0xa3);
    cr_assert_eq(r.bitrate_cap_kbps, 0xa4);
    cr_assert_eq(wzp_media_parse(b, 16, &h, NULL), WZP_MEDIA_OK, "report may be NULL");
}

Test(verdict, trailer_is_last_four_bytes)
{
    uint8_t b[40];
    struct wzp_media_header h;
    struct wzp_quality_report r;
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (uint8_t)i;
    b[0] = 0x02 | (WZP_CODEC_OPUS16K << 2);
    cr_assert_eq(wzp_media_parse(b, 30, &h, &r), WZP_MEDIA_OK);
    cr_assert_eq(h.codec, WZP_CODEC_OPUS16K);
    cr_assert_eq(r.loss_pct, 26);
    cr_assert_eq(r.rtt_4ms, 27);
    cr_assert_eq(r.jitter_ms, 28);
    cr_assert_eq(r.bitrate_cap_kbps, 29);
}

Test(verdict, too_big)
{
    static uint8_t b[WZP_MEDIA_MAX_DATAGRAM_BYTES + 1];
    struct wzp_media_header h;
    struct wzp_quality_report r;
    cr_assert_eq(wzp_media_parse(b, WZP_MEDIA_MAX_DATAGRAM_BYTES, &h, NULL), WZP_MEDIA_OK);
    cr_assert_eq(wzp_media_parse(b, sizeof(b), &h, NULL), WZP_MEDIA_TOO_BIG);
    cr_assert_eq(wzp_media_check(b, sizeof(b)), WZP_MEDIA_TOO_BIG);
    b[0] = 0x02;
    b[WZP_MEDIA_MAX_DATAGRAM_BYTES - 1] = 0x42;
    cr_assert_eq(wzp_media_parse(b, WZP_MEDIA_MAX_DATAGRAM_BYTES, &h, &r), WZP_MEDIA_OK);
    cr_assert_eq(r.bitrate_cap_kbps, 0x42);
    cr_assert_eq(wzp_media_check(b, sizeof(b)), WZP_MEDIA_TOO_BIG);
}

Test(verdict, names)
{
    cr_assert_str_eq(wzp_media_verdict_name(WZP_MEDIA_OK), "ok");
    cr_assert_str_eq(wzp_media_verdict_name(WZP_MEDIA_SHORT), "short");
    cr_assert_str_eq(wzp_media_verdict_name(WZP_MEDIA_BAD_CODEC), "bad_codec");
    cr_assert_str_eq(wzp_media_verdict_name(WZP_MEDIA_NO_TRAILER), "no_trailer");
    cr_assert_str_eq(wzp_media_verdict_name(WZP_MEDIA_TOO_BIG), "too_big");
    cr_assert_str_eq(wzp_media_verdict_name(WZP_MEDIA_VERDICT_COUNT), "unknown");
}

/* ---- codec names ---- */

Test(codec, names_round_trip)
{
    static const char *const names[WZP_CODEC_COUNT] = {"Opus24k",     "Opus16k",     "Opus6k",
                                                       "Codec2_3200", "Codec2_1200", "ComfortNoise",
                                                       "Opus32k",     "Opus48k",     "Opus64k"};
    for (int c = 0; c < WZP_CODEC_COUNT; c++) {
        enum wzp_codec out = WZP_CODEC_COUNT;
        cr_assert_str_eq(wzp_codec_name((enum wzp_codec)c), names[c]);
        cr_assert_eq(wzp_codec_from_name(names[c], strlen(names[c]), &out), WZP_OK);
        cr_assert_eq((int)out, c);
    }
    cr_assert_null(wzp_codec_name(WZP_CODEC_COUNT));
}

Test(codec, from_name_uses_length)
{
    enum wzp_codec out = WZP_CODEC_COUNT;
    cr_assert_eq(wzp_codec_from_name("Opus6kXYZ", 6, &out), WZP_OK, "not NUL-terminated");
    cr_assert_eq(out, WZP_CODEC_OPUS6K);
    cr_assert_eq(wzp_codec_from_name("Opus64k", 4, &out), WZP_EINVAL, "prefix");
    cr_assert_eq(wzp_codec_from_name("Opus24k", 8, &out), WZP_EINVAL, "includes NUL");
    cr_assert_eq(wzp_codec_from_name("opus24k", 7, &out), WZP_EINVAL, "case-sensitive");
    cr_assert_eq(wzp_codec_from_name("", 0, &out), WZP_EINVAL);
}

/* ---- report conversions ---- */

Test(report, loss_and_rtt)
{
    struct wzp_quality_report r = {0, 0, 0, 0};
    cr_assert_float_eq(wzp_report_loss_percent(&r), 0.0, 1e-12);
    cr_assert_eq(wzp_report_rtt_ms(&r), 0);
    r = (struct wzp_quality_report){255, 255, 0, 0};
    cr_assert_float_eq(wzp_report_loss_percent(&r), 100.0, 1e-12);
    cr_assert_eq(wzp_report_rtt_ms(&r), 1020);
    r = (struct wzp_quality_report){38, 49, 0, 0};
    cr_assert_float_eq(wzp_report_loss_percent(&r), 3800.0 / 255.0, 1e-9);
    cr_assert_lt(wzp_report_loss_percent(&r), 15.0);
    cr_assert_eq(wzp_report_rtt_ms(&r), 196);
    r = (struct wzp_quality_report){39, 50, 0, 0};
    cr_assert_gt(wzp_report_loss_percent(&r), 15.0);
    cr_assert_float_eq(wzp_report_loss_percent(&r), 3900.0 / 255.0, 1e-9);
    cr_assert_eq(wzp_report_rtt_ms(&r), 200);
}

Test(report, write_order)
{
    struct wzp_quality_report r = {25, 25, 20, 200};
    uint8_t b[4];
    static const uint8_t want[4] = {0x19, 0x19, 0x14, 0xc8};
    wzp_media_write_report(&r, b);
    cr_assert_arr_eq(b, want, 4);
}
