/*
 * fuzz_initial.c - libFuzzer target: reading the SNI out of a client Initial before a
 * connection exists. The first input byte picks the layer: the decrypted frames of an
 * Initial (CRYPTO reassembly and the ClientHello prefix), the packet itself (header
 * parsing and header protection; the AEAD then fails on anything the fuzzer makes up),
 * or a ClientHello cut anywhere.
 */
#include "initial.h"

#include <stdlib.h>
#include <string.h>

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char sni[WZP_SNI_MAX + 1];
    int rv;
    switch (data[0] % 3) {
    case 0:
        rv = wzp_initial_payload_sni(data + 1, size - 1, sni);
        break;
    case 1:
        rv = wzp_initial_peek_sni(data + 1, size - 1, sni);
        break;
    default: {
        struct wzp_tls_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        (void)wzp_tls_client_hello_sni_prefix(&ctx, data + 1, size - 1);
        if (ctx.sni_present && !ctx.sni_invalid && strlen(ctx.sni) > WZP_SNI_MAX)
            abort();
        return 0;
    }
    }
    if (rv == 0 && (sni[0] == '\0' || strlen(sni) > WZP_SNI_MAX))
        abort();
    return 0;
}
