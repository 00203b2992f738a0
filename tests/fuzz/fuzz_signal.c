/* fuzz_signal.c - libFuzzer target: signal frames and JSON. Anything that parses must
 * re-encode, and the re-encoding must parse to the same encoding again. */
#include "common.h"
#include "signal_codec.h"

#include <stdlib.h>
#include <string.h>

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
