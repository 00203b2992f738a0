/* fuzz_signal.c - libFuzzer target: signal frames and JSON. Anything that parses must
 * re-encode, and the re-encoding must parse to the same encoding again. The first four
 * bytes, read as a float, must also survive encode -> parse bit for bit when finite
 * (both zeros included). */
#include "common.h"
#include "signal_codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A finite f32 written into a QualityDirective and read back is the same float. */
static void float_round_trip(const uint8_t *data)
{
    float f;
    memcpy(&f, data, sizeof f);
    if (!isfinite(f))
        return;
    struct wzp_signal s = {.type = WZP_SIG_QUALITY_DIRECTIVE};
    s.u.quality_directive.recommended_profile.codec = WZP_CODEC_OPUS24K;
    s.u.quality_directive.recommended_profile.fec_ratio = f;
    struct wzp_buf b = WZP_BUF_INIT;
    if (wzp_signal_encode(&s, &b) != WZP_OK)
        abort();
    struct wzp_signal back;
    if (wzp_signal_parse(b.data, b.len, &back, NULL, 0) != WZP_OK)
        abort();
    float g = back.u.quality_directive.recommended_profile.fec_ratio;
    if (memcmp(&f, &g, sizeof f) != 0)
        abort();
    wzp_signal_clear(&back);
    wzp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4)
        float_round_trip(data);
    const uint8_t *body;
    size_t len;
    (void)wzp_signal_frame_peek(data, size, &body, &len);
    struct wzp_signal sig;
    char err[256];
    if (wzp_signal_parse(data, size, &sig, err, sizeof err) != WZP_OK)
        return 0;
    struct wzp_buf a = WZP_BUF_INIT, b = WZP_BUF_INIT;
    if (wzp_signal_encode(&sig, &a) == WZP_OK) {
        struct wzp_signal again;
        if (wzp_signal_parse(a.data, a.len, &again, err, sizeof err) != WZP_OK)
            abort(); /* our own output must parse */
        if (wzp_signal_encode(&again, &b) != WZP_OK || a.len != b.len ||
            memcmp(a.data, b.data, a.len) != 0)
            abort(); /* and be stable */
        wzp_signal_clear(&again);
    }
    wzp_buf_free(&a);
    wzp_buf_free(&b);
    wzp_signal_clear(&sig);
    return 0;
}
