/*
 * retry.c - Retry packets and tokens (retry.h), on ngtcp2's crypto helpers: the token
 * is AEAD-sealed by ngtcp2_crypto_generate_retry_token with our secret, and the Retry
 * packet's integrity tag is the version's fixed one.
 */
#include "retry.h"

#include "common.h"

#include <ngtcp2/ngtcp2_crypto.h>
#include <string.h>
#include <time.h>

int wzp_retry_mode_parse(const char *text, enum wzp_retry_mode *mode)
{
    static const char *const names[] = {"auto", "always", "off"};
    for (unsigned i = 0; i < WZP_ARRAY_LEN(names); i++)
        if (strcmp(text, names[i]) == 0) {
            *mode = (enum wzp_retry_mode)i;
            return WZP_OK;
        }
    return WZP_EINVAL;
}

const char *wzp_retry_mode_name(enum wzp_retry_mode mode)
{
    return mode == WZP_RETRY_ALWAYS ? "always" : mode == WZP_RETRY_OFF ? "off" : "auto";
}

enum wzp_token_kind wzp_retry_token_kind(const ngtcp2_pkt_hd *hd)
{
    if (hd->token.len == 0)
        return WZP_TOKEN_NONE;
    return hd->token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY ? WZP_TOKEN_RETRY
                                                                : WZP_TOKEN_FOREIGN;
}

uint64_t wzp_retry_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t wzp_retry_write(uint8_t *buf, size_t cap, const uint8_t secret[WZP_RETRY_SECRET_LEN],
                       const ngtcp2_pkt_hd *hd, const struct sockaddr *addr, socklen_t addrlen,
                       const ngtcp2_cid *retry_scid, uint64_t wall_ns)
{
    uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
    ngtcp2_ssize tlen = ngtcp2_crypto_generate_retry_token(
        token, secret, WZP_RETRY_SECRET_LEN, hd->version, (const ngtcp2_sockaddr *)addr,
        (ngtcp2_socklen)addrlen, retry_scid, &hd->dcid, wall_ns);
    if (tlen < 0)
        return 0;
    /* The client's SCID becomes the Retry's DCID; our retry_scid its SCID. */
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, cap, hd->version, &hd->scid, retry_scid,
                                               &hd->dcid, token, (size_t)tlen);
    return n > 0 ? (size_t)n : 0;
}

bool wzp_retry_verify(const uint8_t secret[WZP_RETRY_SECRET_LEN], const ngtcp2_pkt_hd *hd,
                      const struct sockaddr *addr, socklen_t addrlen, uint64_t wall_ns,
                      ngtcp2_cid *odcid)
{
    if (wzp_retry_token_kind(hd) != WZP_TOKEN_RETRY)
        return false;
    return ngtcp2_crypto_verify_retry_token(odcid, hd->token.base, hd->token.len, secret,
                                            WZP_RETRY_SECRET_LEN, hd->version,
                                            (const ngtcp2_sockaddr *)addr, (ngtcp2_socklen)addrlen,
                                            &hd->dcid, WZP_RETRY_TOKEN_TTL_NS, wall_ns) == 0;
}

size_t wzp_retry_write_refusal(uint8_t *buf, size_t cap, const ngtcp2_pkt_hd *hd,
                               uint64_t error_code, const char *reason)
{
    /* Keys come from the DCID the client used; as our SCID it is what the client expects. */
    ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
        buf, cap, hd->version, &hd->scid, &hd->dcid, error_code, (const uint8_t *)reason,
        reason ? strlen(reason) : 0);
    return n > 0 ? (size_t)n : 0;
}
