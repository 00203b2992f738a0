/*
 * test_initial.c - reading the SNI from a client Initial without a connection.
 *
 * The packets come from a real ngtcp2 + GnuTLS client (the example client library)
 * sending to a plain UDP socket, so key derivation, header protection and the AEAD are
 * checked against an independent implementation: a wrong key fails the AEAD tag.
 */
#include "initial.h"
#include "testutil.h"
#include "wzpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* The first UDP payload a client with this SNI sends to a socket that never answers. */
static size_t capture_initial(const char *sni, uint8_t *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct wzpc_config cfg = {
        .loop = loop, .host = "127.0.0.1", .port = ntohs(a.sin_port), .sni = sni};
    struct wzpc_client *c = wzpc_connect(&cfg);
    cr_assert_not_null(c);
    ssize_t n = -1;
    for (int i = 0; i < 100 && n < 0; i++) {
        wzpc_run_for(loop, 10);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            n = recv(fd, out, cap, 0);
    }
    cr_assert_gt(n, 0, "the client sent no Initial");
    wzpc_free(c);
    ev_loop_destroy(loop);
    close(fd);
    return (size_t)n;
}

Test(initial, reads_the_sni_of_a_real_client_initial)
{
    uint8_t pkt[2048];
    size_t len = capture_initial("Room-Alpha.example", pkt, sizeof pkt);
    cr_assert_geq(len, 1200, "a client Initial is padded to 1200 bytes");
    char sni[WZP_SNI_MAX + 1];
    cr_assert_eq(wzp_initial_peek_sni(pkt, len, sni), WZP_OK);
    cr_assert_str_eq(sni, "room-alpha.example", "lower-cased like the TLS hook does");
}

Test(initial, reads_a_name_of_maximum_length)
{
    char name[64 + 1];
    memset(name, 'r', 63);
    name[63] = '\0';
    uint8_t pkt[2048];
    size_t len = capture_initial(name, pkt, sizeof pkt);
    char sni[WZP_SNI_MAX + 1];
    cr_assert_eq(wzp_initial_peek_sni(pkt, len, sni), WZP_OK);
    cr_assert_str_eq(sni, name);
}

Test(initial, a_client_without_sni_is_not_found)
{
    uint8_t pkt[2048];
    size_t len = capture_initial(NULL, pkt, sizeof pkt);
    char sni[WZP_SNI_MAX + 1];
    cr_assert_eq(wzp_initial_peek_sni(pkt, len, sni), WZP_ENOTFOUND);
}

Test(initial, any_flipped_byte_after_the_header_fails_the_tag)
{
    uint8_t pkt[2048], bad[2048];
    size_t len = capture_initial("room", pkt, sizeof pkt);
    char sni[WZP_SNI_MAX + 1];
    /* Positions in the payload and the tag; the header's own bytes are covered below. */
    size_t positions[] = {60, 200, 700, len - 17, len - 1};
    for (size_t i = 0; i < WZP_ARRAY_LEN(positions); i++) {
        memcpy(bad, pkt, len);
        bad[positions[i]] ^= 0x40;
        cr_assert_eq(wzp_initial_peek_sni(bad, len, sni), WZP_EINVAL, "flip at %zu", positions[i]);
    }
    /* A different DCID derives different keys. */
    memcpy(bad, pkt, len);
    bad[6] ^= 1;
    cr_assert_eq(wzp_initial_peek_sni(bad, len, sni), WZP_EINVAL);
}

Test(initial, refuses_what_is_not_a_v1_initial)
{
    uint8_t pkt[2048], bad[2048];
    size_t len = capture_initial("room", pkt, sizeof pkt);
    char sni[WZP_SNI_MAX + 1];
    memcpy(bad, pkt, len);
    bad[0] = (uint8_t)((bad[0] & ~0x30) | 0x20); /* Handshake */
    cr_assert_eq(wzp_initial_peek_sni(bad, len, sni), WZP_EINVAL);
    memcpy(bad, pkt, len);
    bad[4] = 2; /* version 2 */
    cr_assert_eq(wzp_initial_peek_sni(bad, len, sni), WZP_EINVAL);
    memcpy(bad, pkt, len);
    bad[0] &= 0x7f; /* short header */
    cr_assert_eq(wzp_initial_peek_sni(bad, len, sni), WZP_EINVAL);
    memcpy(bad, pkt, len);
    bad[5] = 21; /* DCID longer than QUIC allows */
    cr_assert_eq(wzp_initial_peek_sni(bad, len, sni), WZP_EINVAL);
    /* Every truncation is refused without reading past the end. */
    for (size_t cut = 0; cut < len; cut += 7)
        cr_assert_neq(wzp_initial_peek_sni(pkt, cut, sni), WZP_OK, "cut at %zu", cut);
}

/* A ClientHello body: version, random, empty session id, one suite, null compression,
 * then the given extensions. Returns the handshake message length (header included). */
static size_t client_hello(uint8_t *out, const uint8_t *ext, size_t extlen)
{
    size_t off = 4;
    out[off++] = 3;
    out[off++] = 3;
    memset(out + off, 0xab, 32);
    off += 32;
    out[off++] = 0;                       /* session id */
    out[off++] = 0, out[off++] = 2;       /* cipher suites */
    out[off++] = 0x13, out[off++] = 0x01; /* TLS_AES_128_GCM_SHA256 */
    out[off++] = 1, out[off++] = 0;       /* compression: null */
    wzp_put_u16be(out + off, (uint16_t)extlen);
    off += 2;
    memcpy(out + off, ext, extlen);
    off += extlen;
    out[0] = 1;
    out[1] = 0, out[2] = (uint8_t)((off - 4) >> 8), out[3] = (uint8_t)(off - 4);
    return off;
}

static const uint8_t sni_ext[] = {0x00, 0x00, 0x00, 0x09, 0x00, 0x07, 0x00,
                                  0x00, 0x04, 'R',  'o',  'o',  'm'};

/* CRYPTO frame: type 6, offset and length as 2-byte varints. */
static size_t crypto_frame(uint8_t *out, size_t offset, const uint8_t *data, size_t len)
{
    out[0] = 0x06;
    wzp_put_u16be(out + 1, (uint16_t)(0x4000 | offset));
    wzp_put_u16be(out + 3, (uint16_t)(0x4000 | len));
    memcpy(out + 5, data, len);
    return 5 + len;
}

Test(initial, reassembles_crypto_fragments_in_any_order)
{
    uint8_t hello[256], payload[512];
    size_t hlen = client_hello(hello, sni_ext, sizeof sni_ext);
    size_t cut = 30, off = 0;
    /* PING, the second half, an ACK, the first half, padding */
    payload[off++] = 0x01;
    off += crypto_frame(payload + off, cut, hello + cut, hlen - cut);
    const uint8_t ack[] = {0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};
    memcpy(payload + off, ack, sizeof ack);
    off += sizeof ack;
    off += crypto_frame(payload + off, 0, hello, cut);
    memset(payload + off, 0, 20);
    off += 20;
    char sni[WZP_SNI_MAX + 1];
    cr_assert_eq(wzp_initial_payload_sni(payload, off, sni), WZP_OK);
    cr_assert_str_eq(sni, "room");
}

Test(initial, a_hello_cut_after_its_sni_still_names_the_room)
{
    uint8_t ext[64], hello[256], payload[512];
    /* server_name first, then an extension whose rest is in the next packet */
    memcpy(ext, sni_ext, sizeof sni_ext);
    const uint8_t alpn[] = {0x00, 0x10, 0x00, 0x06, 0x00, 0x04, 0x03, 'w', 'z', 'p'};
    memcpy(ext + sizeof sni_ext, alpn, sizeof alpn);
    size_t hlen = client_hello(hello, ext, sizeof sni_ext + sizeof alpn);
    size_t sent = hlen - 4; /* the last bytes of the ALPN extension are missing */
    size_t off = crypto_frame(payload, 0, hello, sent);
    char sni[WZP_SNI_MAX + 1];
    cr_assert_eq(wzp_initial_payload_sni(payload, off, sni), WZP_OK);
    cr_assert_str_eq(sni, "room");
    /* Without offset 0 there is nothing to read. */
    off = crypto_frame(payload, 10, hello + 10, sent - 10);
    cr_assert_eq(wzp_initial_payload_sni(payload, off, sni), WZP_ENOTFOUND);
}

Test(initial, refuses_frames_an_initial_cannot_carry)
{
    char sni[WZP_SNI_MAX + 1];
    const uint8_t stream[] = {0x08, 0x00, 0x01, 'x'};
    cr_assert_eq(wzp_initial_payload_sni(stream, sizeof stream, sni), WZP_EINVAL);
    const uint8_t overrun[] = {0x06, 0x00, 0x40, 0x50, 1, 2, 3};
    cr_assert_eq(wzp_initial_payload_sni(overrun, sizeof overrun, sni), WZP_EINVAL);
    const uint8_t not_hello[] = {0x06, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
    cr_assert_eq(wzp_initial_payload_sni(not_hello, sizeof not_hello, sni), WZP_EINVAL);
    const uint8_t padding[] = {0, 0, 0, 0};
    cr_assert_eq(wzp_initial_payload_sni(padding, sizeof padding, sni), WZP_ENOTFOUND);
}
