/* media.c - MediaHeader / QualityReport codec. See media.h and doc/PROTOCOL.md, "Media". */
#include "media.h"

#include "common.h"

#include <string.h>

static const char *const codec_names[WZP_CODEC_COUNT] = {
    "Opus24k",      "Opus16k", "Opus6k",  "Codec2_3200", "Codec2_1200",
    "ComfortNoise", "Opus32k", "Opus48k", "Opus64k",
};

const char *wzp_codec_name(enum wzp_codec codec)
{
    return (unsigned)codec < WZP_CODEC_COUNT ? codec_names[codec] : NULL;
}

int wzp_codec_from_name(const char *name, size_t len, enum wzp_codec *out)
{
    for (unsigned i = 0; i < WZP_CODEC_COUNT; i++) {
        if (strlen(codec_names[i]) == len && memcmp(codec_names[i], name, len) == 0) {
            *out = (enum wzp_codec)i;
            return WZP_OK;
        }
    }
    return WZP_EINVAL;
}

const char *wzp_media_verdict_name(enum wzp_media_verdict v)
{
    static const char *const names[WZP_MEDIA_VERDICT_COUNT] = {"ok", "short", "bad_codec",
                                                               "no_trailer", "too_big"};
    return (unsigned)v < WZP_MEDIA_VERDICT_COUNT ? names[v] : "unknown";
}

enum wzp_media_verdict wzp_media_check(const uint8_t *data, size_t len)
{
    if (len < WZP_MEDIA_HEADER_BYTES)
        return WZP_MEDIA_SHORT;
    if (len > WZP_MEDIA_MAX_DATAGRAM_BYTES)
        return WZP_MEDIA_TOO_BIG;
    if (((data[0] >> 2) & 0x0f) >= WZP_CODEC_COUNT)
        return WZP_MEDIA_BAD_CODEC;
    if ((data[0] & 0x02) && len < WZP_MEDIA_HEADER_BYTES + WZP_QUALITY_REPORT_BYTES)
        return WZP_MEDIA_NO_TRAILER;
    return WZP_MEDIA_OK;
}

enum wzp_media_verdict wzp_media_parse(const uint8_t *data, size_t len,
                                       struct wzp_media_header *hdr,
                                       struct wzp_quality_report *report)
{
    enum wzp_media_verdict v = wzp_media_check(data, len);
    if (v != WZP_MEDIA_OK)
        return v;
    hdr->version = (data[0] >> 7) & 1;
    hdr->repair = (data[0] >> 6) & 1;
    hdr->codec = (enum wzp_codec)((data[0] >> 2) & 0x0f);
    hdr->has_quality = (data[0] >> 1) & 1;
    hdr->fec_ratio_raw = (uint8_t)(((data[0] & 1) << 6) | (data[1] >> 2));
    hdr->seq = wzp_get_u16be(data + 2);
    hdr->timestamp_ms = wzp_get_u32be(data + 4);
    hdr->fec_block = data[8];
    hdr->fec_symbol = data[9];
    hdr->reserved = data[10];
    hdr->csrc_count = data[11];
    if (hdr->has_quality && report) {
        const uint8_t *t = data + len - WZP_QUALITY_REPORT_BYTES;
        report->loss_pct = t[0];
        report->rtt_4ms = t[1];
        report->jitter_ms = t[2];
        report->bitrate_cap_kbps = t[3];
    }
    return WZP_MEDIA_OK;
}

void wzp_media_write_header(const struct wzp_media_header *hdr, uint8_t out[12])
{
    uint8_t fec = hdr->fec_ratio_raw & 0x7f;
    out[0] = (uint8_t)((hdr->version ? 0x80 : 0) | (hdr->repair ? 0x40 : 0) |
                       ((hdr->codec & 0x0f) << 2) | (hdr->has_quality ? 0x02 : 0) | (fec >> 6));
    out[1] = (uint8_t)((fec & 0x3f) << 2);
    wzp_put_u16be(out + 2, hdr->seq);
    wzp_put_u32be(out + 4, hdr->timestamp_ms);
    out[8] = hdr->fec_block;
    out[9] = hdr->fec_symbol;
    out[10] = hdr->reserved;
    out[11] = hdr->csrc_count;
}

void wzp_media_write_report(const struct wzp_quality_report *r, uint8_t out[4])
{
    out[0] = r->loss_pct;
    out[1] = r->rtt_4ms;
    out[2] = r->jitter_ms;
    out[3] = r->bitrate_cap_kbps;
}

double wzp_report_loss_percent(const struct wzp_quality_report *r)
{
    return (double)r->loss_pct / 255.0 * 100.0;
}

unsigned wzp_report_rtt_ms(const struct wzp_quality_report *r)
{
    return (unsigned)r->rtt_4ms * 4u;
}
