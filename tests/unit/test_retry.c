/*
 * test_retry.c - Retry packets and tokens: a Retry parses as one, with our connection ID
 * and a token that verifies for the same address, port and DCID within its lifetime and
 * for nothing else; relays sharing a secret accept each other's tokens; an invalid token
 * gets a stateless CONNECTION_CLOSE; mode names round-trip.
 */
#include "retry.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <netinet/in.h>
#include <string.h>

static uint8_t secret[WZP_RETRY_SECRET_LEN] = {1, 2, 3};
static struct sockaddr_in client;
static ngtcp2_pkt_hd initial;

static void setup(void)
{
    memset(&client, 0, sizeof client);
    client.sin_family = AF_INET;
    client.sin_port = htons(40000);
    inet_pton(AF_INET, "192.0.2.10", &client.sin_addr);
    memset(&initial, 0, sizeof initial);
    initial.version = NGTCP2_PROTO_VER_V1;
    uint8_t dcid[8] = {0xd0, 1, 2, 3, 4, 5, 6, 7}, scid[8] = {0x5c, 9, 9, 9, 9, 9, 9, 9};
    ngtcp2_cid_init(&initial.dcid, dcid, sizeof dcid);
    ngtcp2_cid_init(&initial.scid, scid, sizeof scid);
}

TestSuite(retry, .init = setup);

/* Send a Retry for `initial`, then build the client's next Initial header: DCID = the
 * Retry's SCID, token = the Retry's token (copied into tokbuf). */
static void retry_round_trip(uint64_t now, ngtcp2_pkt_hd *next, uint8_t *tokbuf)
{
    uint8_t rscid_data[16] = {0};
    rscid_data[0] = 3; /* worker 3 */
    ngtcp2_cid rscid;
    ngtcp2_cid_init(&rscid, rscid_data, sizeof rscid_data);
    uint8_t pkt[256];
    size_t n = wzp_retry_write(pkt, sizeof pkt, secret, &initial, (struct sockaddr *)&client,
                               sizeof client, &rscid, now);
    cr_assert_gt(n, 0);
    cr_assert_lt(n, 1200, "a Retry is smaller than the Initial that caused it");
    ngtcp2_pkt_hd hd;
    cr_assert_geq(ngtcp2_pkt_decode_hd_long(&hd, pkt, n), 0);
    cr_assert_eq(hd.type, NGTCP2_PKT_RETRY);
    cr_assert(ngtcp2_cid_eq(&hd.dcid, &initial.scid), "addressed to the client's SCID");
    cr_assert(ngtcp2_cid_eq(&hd.scid, &rscid));
    /* The token sits between the header and the 16-byte integrity tag. */
    size_t hdrlen = 1 + 4 + 1 + hd.dcid.datalen + 1 + hd.scid.datalen;
    size_t toklen = n - hdrlen - 16;
    cr_assert_gt(toklen, 0);
    memcpy(tokbuf, pkt + hdrlen, toklen);
    cr_assert_eq(tokbuf[0], NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY);
    *next = initial;
    next->dcid = rscid;
    next->token.base = tokbuf;
    next->token.len = toklen;
}

Test(retry, a_token_verifies_for_its_address_and_gives_the_first_dcid)
{
    uint64_t now = wzp_retry_clock_ns();
    ngtcp2_pkt_hd next;
    uint8_t tok[256];
    retry_round_trip(now, &next, tok);
    cr_assert_eq(wzp_retry_token_kind(&next), WZP_TOKEN_RETRY);
    ngtcp2_cid odcid;
    cr_assert(wzp_retry_verify(secret, &next, (struct sockaddr *)&client, sizeof client,
                               now + 1000000000ull, &odcid));
    cr_assert(ngtcp2_cid_eq(&odcid, &initial.dcid));
}

Test(retry, a_token_fails_elsewhere_later_or_altered)
{
    uint64_t now = wzp_retry_clock_ns();
    ngtcp2_pkt_hd next;
    uint8_t tok[256];
    retry_round_trip(now, &next, tok);
    ngtcp2_cid odcid;
    struct sockaddr_in other = client;
    other.sin_port = htons(40001);
    cr_assert_not(
        wzp_retry_verify(secret, &next, (struct sockaddr *)&other, sizeof other, now, &odcid),
        "another port");
    other = client;
    inet_pton(AF_INET, "192.0.2.11", &other.sin_addr);
    cr_assert_not(
        wzp_retry_verify(secret, &next, (struct sockaddr *)&other, sizeof other, now, &odcid),
        "another address");
    cr_assert_not(wzp_retry_verify(secret, &next, (struct sockaddr *)&client, sizeof client,
                                   now + WZP_RETRY_TOKEN_TTL_NS + 1, &odcid),
                  "expired");
    uint8_t other_secret[WZP_RETRY_SECRET_LEN] = {9};
    cr_assert_not(wzp_retry_verify(other_secret, &next, (struct sockaddr *)&client, sizeof client,
                                   now, &odcid),
                  "another relay's key");
    ngtcp2_pkt_hd wrong_dcid = next;
    wrong_dcid.dcid = initial.dcid;
    cr_assert_not(wzp_retry_verify(secret, &wrong_dcid, (struct sockaddr *)&client, sizeof client,
                                   now, &odcid),
                  "not the Retry's SCID");
    tok[10] ^= 1;
    cr_assert_not(
        wzp_retry_verify(secret, &next, (struct sockaddr *)&client, sizeof client, now, &odcid),
        "a flipped bit");
}

Test(retry, relays_sharing_a_secret_accept_each_others_tokens)
{
    /* The secret is all that is shared: a second relay (or a restarted one) with the same
     * identity seed derives the same secret and verifies without any state. */
    uint64_t now = wzp_retry_clock_ns();
    ngtcp2_pkt_hd next;
    uint8_t tok[256];
    retry_round_trip(now, &next, tok);
    uint8_t copy[WZP_RETRY_SECRET_LEN];
    memcpy(copy, secret, sizeof copy);
    ngtcp2_cid odcid;
    cr_assert(wzp_retry_verify(copy, &next, (struct sockaddr *)&client, sizeof client,
                               now + 5000000000ull, &odcid));
}

Test(retry, token_kinds)
{
    cr_assert_eq(wzp_retry_token_kind(&initial), WZP_TOKEN_NONE);
    uint8_t regular[40] = {NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR};
    ngtcp2_pkt_hd hd = initial;
    hd.token.base = regular;
    hd.token.len = sizeof regular;
    cr_assert_eq(wzp_retry_token_kind(&hd), WZP_TOKEN_FOREIGN);
    ngtcp2_cid odcid;
    cr_assert_not(wzp_retry_verify(secret, &hd, (struct sockaddr *)&client, sizeof client,
                                   wzp_retry_clock_ns(), &odcid));
}

Test(retry, an_invalid_token_gets_a_stateless_close)
{
    uint8_t pkt[1500];
    size_t n = wzp_retry_write_refusal(pkt, sizeof pkt, &initial, NGTCP2_INVALID_TOKEN, "x");
    cr_assert_gt(n, 0);
    ngtcp2_pkt_hd hd;
    cr_assert_geq(ngtcp2_pkt_decode_hd_long(&hd, pkt, n), 0);
    cr_assert_eq(hd.type, NGTCP2_PKT_INITIAL);
    cr_assert(ngtcp2_cid_eq(&hd.dcid, &initial.scid));
    cr_assert(ngtcp2_cid_eq(&hd.scid, &initial.dcid));
}

Test(retry, mode_names)
{
    const char *names[] = {"auto", "always", "off"};
    for (unsigned i = 0; i < 3; i++) {
        enum wzp_retry_mode m;
        cr_assert_eq(wzp_retry_mode_parse(names[i], &m), WZP_OK);
        cr_assert_str_eq(wzp_retry_mode_name(m), names[i]);
    }
    enum wzp_retry_mode m = WZP_RETRY_OFF;
    cr_assert_eq(wzp_retry_mode_parse("Auto", &m), WZP_EINVAL);
    cr_assert_eq(m, WZP_RETRY_OFF);
}
