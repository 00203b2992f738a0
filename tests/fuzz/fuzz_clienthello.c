/* fuzz_clienthello.c - libFuzzer target: our ClientHello / server_name parser. */
#include "tls.h"

#include <stdlib.h>
#include <string.h>

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wzp_tls_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    (void)wzp_tls_client_hello_sni(&ctx, data, size);
    if (ctx.sni_present && !ctx.sni_invalid && strlen(ctx.sni) > WZP_SNI_MAX)
        abort();
    memset(&ctx, 0, sizeof ctx);
    (void)wzp_tls_parse_sni(&ctx, data, size);
    return 0;
}
