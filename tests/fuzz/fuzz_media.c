/* fuzz_media.c - libFuzzer target: media datagram validation and decoding. */
#include "media.h"

#include <stdlib.h>

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wzp_media_header h;
    struct wzp_quality_report r;
    enum wzp_media_verdict v = wzp_media_parse(data, size, &h, &r);
    if (v != wzp_media_check(data, size))
        abort(); /* the fast check and the full parse must agree */
    if (v == WZP_MEDIA_OK) {
        uint8_t hdr[12];
        wzp_media_write_header(&h, hdr);
        for (int i = 0; i < 12; i++)
            if (i != 1 && hdr[i] != data[i])
                abort(); /* the header round-trips (byte 1's two unused bits aside) */
    }
    return 0;
}
