/*
 * media.h - the WZP media datagram: 12-byte MediaHeader, payload, optional 4-byte
 * QualityReport trailer (doc/PROTOCOL.md, "Media"). The relay forwards datagram bytes
 * unchanged; it only validates the header and reads the trailer.
 *
 * Byte 0: V(7) T(6) CodecID(5..2) Q(1) FecRatio[6](0)   Byte 1: FecRatio[5..0](7..2)
 * Bytes 2-3 seq u16 BE, 4-7 timestamp u32 BE, 8 fec_block, 9 fec_symbol, 10 reserved,
 * 11 csrc_count.
 */
#ifndef WZP_MEDIA_H
#define WZP_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_MEDIA_HEADER_BYTES   12
#define WZP_QUALITY_REPORT_BYTES 4
/* Largest datagram the relay accepts or forwards: fits the 1200-byte QUIC minimum path
 * MTU with room for the short header and DATAGRAM frame overhead. */
#define WZP_MEDIA_MAX_DATAGRAM_BYTES 1150

enum wzp_codec {
    WZP_CODEC_OPUS24K = 0,
    WZP_CODEC_OPUS16K = 1,
    WZP_CODEC_OPUS6K = 2,
    WZP_CODEC_CODEC2_3200 = 3,
    WZP_CODEC_CODEC2_1200 = 4,
    WZP_CODEC_COMFORT_NOISE = 5,
    WZP_CODEC_OPUS32K = 6,
    WZP_CODEC_OPUS48K = 7,
    WZP_CODEC_OPUS64K = 8,
    WZP_CODEC_COUNT = 9,
};

/* serde name of a codec ("Opus24k", "Codec2_1200", ...); NULL when out of range. */
const char *wzp_codec_name(enum wzp_codec codec);
/* Inverse of wzp_codec_name; WZP_EINVAL for an unknown name. */
int wzp_codec_from_name(const char *name, size_t len, enum wzp_codec *out);

struct wzp_quality_profile {
    enum wzp_codec codec;
    float fec_ratio;
    uint8_t frame_duration_ms;
    uint8_t frames_per_block;
};

struct wzp_quality_report {
    uint8_t loss_pct; /* 0..255 maps to 0..100 % */
    uint8_t rtt_4ms;  /* RTT in units of 4 ms */
    uint8_t jitter_ms;
    uint8_t bitrate_cap_kbps;
};

struct wzp_media_header {
    bool version; /* V bit */
    bool repair;  /* T bit */
    enum wzp_codec codec;
    bool has_quality;      /* Q bit */
    uint8_t fec_ratio_raw; /* 7 bits */
    uint16_t seq;
    uint32_t timestamp_ms;
    uint8_t fec_block;
    uint8_t fec_symbol;
    uint8_t reserved;
    uint8_t csrc_count;
};

/* Why a datagram was refused; indexes the relay's drop counters. */
enum wzp_media_verdict {
    WZP_MEDIA_OK = 0,
    WZP_MEDIA_SHORT,      /* fewer than 12 bytes */
    WZP_MEDIA_BAD_CODEC,  /* codec id 9..15 */
    WZP_MEDIA_NO_TRAILER, /* Q set but fewer than 16 bytes */
    WZP_MEDIA_TOO_BIG,    /* more than WZP_MEDIA_MAX_DATAGRAM_BYTES */
    WZP_MEDIA_VERDICT_COUNT,
};

const char *wzp_media_verdict_name(enum wzp_media_verdict v);

/*
 * Validate a datagram and decode its header. On WZP_MEDIA_OK *hdr is filled and, when
 * the Q bit is set, *report holds the trailer (report may be NULL). Never reads past len.
 */
enum wzp_media_verdict wzp_media_parse(const uint8_t *data, size_t len,
                                       struct wzp_media_header *hdr,
                                       struct wzp_quality_report *report);

/* Cheap check used on the forwarding path: same rules as wzp_media_parse, no decode. */
enum wzp_media_verdict wzp_media_check(const uint8_t *data, size_t len);

/* Bits of byte 0 the forwarding path reads without decoding the header (only after
 * wzp_media_check said WZP_MEDIA_OK): the Q bit, and the codec id. */
static inline bool wzp_media_has_report(const uint8_t *data)
{
    return data[0] & 0x02;
}
static inline enum wzp_codec wzp_media_codec(const uint8_t *data)
{
    return (enum wzp_codec)((data[0] >> 2) & 0x0f);
}
/* The trailer of a datagram of len bytes whose Q bit is set. */
static inline struct wzp_quality_report wzp_media_report(const uint8_t *data, size_t len)
{
    const uint8_t *t = data + len - WZP_QUALITY_REPORT_BYTES;
    return (struct wzp_quality_report){t[0], t[1], t[2], t[3]};
}

/* Write a 12-byte header into out (client side, tests). */
void wzp_media_write_header(const struct wzp_media_header *hdr, uint8_t out[12]);
void wzp_media_write_report(const struct wzp_quality_report *r, uint8_t out[4]);

/* Loss in percent (0..100) and RTT in ms of a report. */
double wzp_report_loss_percent(const struct wzp_quality_report *r);
unsigned wzp_report_rtt_ms(const struct wzp_quality_report *r);

#endif
