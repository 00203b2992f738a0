/*
 * initial.c - open a client Initial packet and read the SNI (see initial.h).
 */
#include "initial.h"

#include "common.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>

#define QUIC_V1           0x00000001u
#define AEAD_KEY_LEN      16
#define AEAD_IV_LEN       12
#define AEAD_TAG_LEN      16
#define HP_SAMPLE_LEN     16
#define SECRET_LEN        32 /* SHA-256 */
#define MAX_PACKET        2048
#define MAX_CRYPTO_FRAMES 32
#define MAX_HELLO_BYTES   MAX_PACKET

/* RFC 9001 section 5.2: the salt of QUIC version 1. */
static const uint8_t initial_salt_v1[20] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34,
                                            0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                                            0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};

/* A QUIC variable-length integer at *off (RFC 9000 section 16). false if it overruns. */
static bool get_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *out)
{
    if (*off >= len)
        return false;
    size_t n = (size_t)1 << (p[*off] >> 6);
    if (*off + n > len)
        return false;
    uint64_t v = p[*off] & 0x3f;
    for (size_t i = 1; i < n; i++)
        v = (v << 8) | p[*off + i];
    *off += n;
    *out = v;
    return true;
}

/* TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 section 7.1). */
static int expand_label(const uint8_t *secret, const char *label, uint8_t *out, size_t outlen)
{
    uint8_t info[2 + 1 + 6 + 16 + 1];
    size_t llen = strlen(label);
    if (llen > 16)
        return WZP_EINVAL;
    wzp_put_u16be(info, (uint16_t)outlen);
    info[2] = (uint8_t)(6 + llen);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, llen);
    info[9 + llen] = 0;
    gnutls_datum_t key = {(unsigned char *)secret, SECRET_LEN};
    gnutls_datum_t inf = {info, (unsigned)(10 + llen)};
    return gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &key, &inf, out, outlen) == 0 ? WZP_OK
                                                                               : WZP_ECRYPTO;
}

struct initial_keys {
    uint8_t key[AEAD_KEY_LEN], iv[AEAD_IV_LEN], hp[AEAD_KEY_LEN];
};

static int derive_client_keys(const uint8_t *dcid, size_t dcidlen, struct initial_keys *k)
{
    uint8_t initial[SECRET_LEN], client[SECRET_LEN];
    gnutls_datum_t ikm = {(unsigned char *)dcid, (unsigned)dcidlen};
    gnutls_datum_t salt = {(unsigned char *)initial_salt_v1, sizeof initial_salt_v1};
    if (gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &salt, initial) != 0)
        return WZP_ECRYPTO;
    int rv = expand_label(initial, "client in", client, sizeof client);
    if (rv == WZP_OK)
        rv = expand_label(client, "quic key", k->key, sizeof k->key);
    if (rv == WZP_OK)
        rv = expand_label(client, "quic iv", k->iv, sizeof k->iv);
    if (rv == WZP_OK)
        rv = expand_label(client, "quic hp", k->hp, sizeof k->hp);
    return rv;
}

/* Header protection mask: AES-128 of the sample (one CBC block with a zero IV is ECB). */
static int hp_mask(const uint8_t *hp, const uint8_t *sample, uint8_t mask[HP_SAMPLE_LEN])
{
    uint8_t zero_iv[16] = {0};
    gnutls_datum_t key = {(unsigned char *)hp, AEAD_KEY_LEN};
    gnutls_datum_t iv = {zero_iv, sizeof zero_iv};
    gnutls_cipher_hd_t h;
    if (gnutls_cipher_init(&h, GNUTLS_CIPHER_AES_128_CBC, &key, &iv) != 0)
        return WZP_ECRYPTO;
    int rv = gnutls_cipher_encrypt2(h, sample, HP_SAMPLE_LEN, mask, HP_SAMPLE_LEN);
    gnutls_cipher_deinit(h);
    return rv == 0 ? WZP_OK : WZP_ECRYPTO;
}

struct crypto_frag {
    uint64_t offset;
    size_t len;
    const uint8_t *data;
};

/* Frames allowed in an Initial: PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE. Collects
 * the CRYPTO fragments; false on anything else or a frame that overruns. */
static bool collect_crypto(const uint8_t *p, size_t len, struct crypto_frag *frags, size_t *nfrags)
{
    size_t off = 0;
    uint64_t v, n;
    *nfrags = 0;
    while (off < len) {
        uint8_t type = p[off++];
        switch (type) {
        case 0x00: /* PADDING */
        case 0x01: /* PING */
            break;
        case 0x02: /* ACK */
        case 0x03: /* ACK with ECN counts */
            if (!get_varint(p, len, &off, &v) || !get_varint(p, len, &off, &v) ||
                !get_varint(p, len, &off, &n) || !get_varint(p, len, &off, &v))
                return false;
            if (n > len)
                return false;
            for (uint64_t i = 0; i < 2 * n + (type == 0x03 ? 3 : 0); i++)
                if (!get_varint(p, len, &off, &v))
                    return false;
            break;
        case 0x06: /* CRYPTO */
            if (!get_varint(p, len, &off, &v) || !get_varint(p, len, &off, &n) || n > len - off)
                return false;
            if (*nfrags < MAX_CRYPTO_FRAMES)
                frags[(*nfrags)++] = (struct crypto_frag){v, (size_t)n, p + off};
            off += (size_t)n;
            break;
        case 0x1c: /* CONNECTION_CLOSE */
            if (!get_varint(p, len, &off, &v) || !get_varint(p, len, &off, &v) ||
                !get_varint(p, len, &off, &n) || n > len - off)
                return false;
            off += (size_t)n;
            break;
        default:
            return false;
        }
    }
    return true;
}

int wzp_initial_payload_sni(const uint8_t *payload, size_t len, char sni[WZP_SNI_MAX + 1])
{
    struct crypto_frag frags[MAX_CRYPTO_FRAMES];
    size_t nfrags;
    if (!collect_crypto(payload, len, frags, &nfrags))
        return WZP_EINVAL;
    /* The CRYPTO stream from offset 0 as far as it is contiguous in this packet; the
     * fragments may come in any order and overlap. */
    static _Thread_local uint8_t hello[MAX_HELLO_BYTES];
    size_t have = 0;
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < nfrags; i++) {
            uint64_t end = frags[i].offset + frags[i].len;
            if (frags[i].offset > have || end <= have)
                continue;
            size_t take = (size_t)WZP_MIN(end, (uint64_t)sizeof hello) - have;
            memcpy(hello + have, frags[i].data + (have - frags[i].offset), take);
            have += take;
            if (take)
                grew = true;
        }
    }
    /* Handshake message: type 1 (ClientHello), 24-bit length, body. */
    if (have < 4)
        return WZP_ENOTFOUND;
    if (hello[0] != 1)
        return WZP_EINVAL;
    size_t body = ((size_t)hello[1] << 16) | ((size_t)hello[2] << 8) | hello[3];
    struct wzp_tls_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int rv = body <= have - 4 ? wzp_tls_client_hello_sni(&ctx, hello + 4, body)
                              : wzp_tls_client_hello_sni_prefix(&ctx, hello + 4, have - 4);
    if (rv != WZP_OK)
        return WZP_EINVAL;
    if (!ctx.sni_present || ctx.sni_invalid)
        return WZP_ENOTFOUND;
    memcpy(sni, ctx.sni, strlen(ctx.sni) + 1);
    return WZP_OK;
}

int wzp_initial_peek_sni(const uint8_t *pkt, size_t len, char sni[WZP_SNI_MAX + 1])
{
    /* Long header, type Initial (0 in v1), version 1. */
    if (len < 7 || len > MAX_PACKET || !(pkt[0] & 0x80) || ((pkt[0] >> 4) & 3) != 0 ||
        wzp_get_u32be(pkt + 1) != QUIC_V1)
        return WZP_EINVAL;
    size_t off = 5;
    size_t dcidlen = pkt[off++];
    if (dcidlen > 20 || off + dcidlen >= len)
        return WZP_EINVAL;
    const uint8_t *dcid = pkt + off;
    off += dcidlen;
    size_t scidlen = pkt[off++];
    if (scidlen > 20 || off + scidlen > len)
        return WZP_EINVAL;
    off += scidlen;
    uint64_t tokenlen, length;
    if (!get_varint(pkt, len, &off, &tokenlen) || tokenlen > len - off)
        return WZP_EINVAL;
    off += (size_t)tokenlen;
    if (!get_varint(pkt, len, &off, &length) || length > len - off)
        return WZP_EINVAL;
    size_t pn_off = off;
    /* The sample starts 4 bytes after the packet number's start (RFC 9001 5.4.2). */
    if (length < 4 + HP_SAMPLE_LEN || pn_off + 4 + HP_SAMPLE_LEN > len)
        return WZP_EINVAL;

    struct initial_keys k;
    uint8_t mask[HP_SAMPLE_LEN];
    int rv = derive_client_keys(dcid, dcidlen, &k);
    if (rv == WZP_OK)
        rv = hp_mask(k.hp, pkt + pn_off + 4, mask);
    if (rv != WZP_OK)
        return rv;

    /* The header with protection removed is the AEAD's associated data. */
    static _Thread_local uint8_t hdr[MAX_PACKET], plain[MAX_PACKET];
    size_t pnlen = (size_t)((pkt[0] ^ mask[0]) & 0x03) + 1;
    size_t hdrlen = pn_off + pnlen;
    if (length < pnlen + AEAD_TAG_LEN)
        return WZP_EINVAL;
    memcpy(hdr, pkt, hdrlen);
    hdr[0] ^= mask[0] & 0x0f;
    uint64_t pn = 0;
    for (size_t i = 0; i < pnlen; i++) {
        hdr[pn_off + i] ^= mask[1 + i];
        pn = (pn << 8) | hdr[pn_off + i];
    }
    /* A client's early Initials have small packet numbers: the truncated number is the
     * full one. The nonce is the IV with the packet number XORed into its tail. */
    uint8_t nonce[AEAD_IV_LEN];
    memcpy(nonce, k.iv, sizeof nonce);
    for (size_t i = 0; i < 8; i++)
        nonce[AEAD_IV_LEN - 1 - i] ^= (uint8_t)(pn >> (8 * i));

    gnutls_datum_t key = {k.key, sizeof k.key};
    gnutls_aead_cipher_hd_t aead;
    if (gnutls_aead_cipher_init(&aead, GNUTLS_CIPHER_AES_128_GCM, &key) != 0)
        return WZP_ECRYPTO;
    size_t ctlen = (size_t)length - pnlen, ptlen = sizeof plain;
    rv = gnutls_aead_cipher_decrypt(aead, nonce, sizeof nonce, hdr, hdrlen, AEAD_TAG_LEN,
                                    pkt + hdrlen, ctlen, plain, &ptlen);
    gnutls_aead_cipher_deinit(aead);
    if (rv != 0)
        return WZP_EINVAL;
    return wzp_initial_payload_sni(plain, ptlen, sni);
}
