/*
 * handshake.c - the room handshake (doc/PROTOCOL.md, "Room join"): the relay verifies a client's
 * CallOffer signature (Ed25519 over E_c || "call-offer") and answers with a fresh X25519
 * ephemeral signed as E_r || "call-answer", always choosing the GOOD profile. Also the
 * client side (make_offer / verify_answer) and the session key / SAS derivation.
 */
#include "handshake.h"
#include "common.h"

#include <gnutls/gnutls.h>
#include <string.h>

#define OFFER_LABEL    "call-offer"
#define ANSWER_LABEL   "call-answer"
#define REGISTER_LABEL "register-presence"
#define LABEL_MAX      (sizeof(REGISTER_LABEL) - 1) /* the longest label */
#define SIG_BYTES      64

/* msg = ephemeral_pub || label (no NUL); returns the message length. */
static size_t signed_message(const uint8_t eph_pub[32], const char *label,
                             uint8_t msg[32 + LABEL_MAX])
{
    size_t label_len = strlen(label);

    memcpy(msg, eph_pub, 32);
    memcpy(msg + 32, label, label_len);
    return 32 + label_len;
}

static int verify_labelled(const uint8_t id_pub[32], const uint8_t eph_pub[32],
                           const struct wzp_bytes *sig, const char *label)
{
    uint8_t msg[32 + LABEL_MAX];
    size_t len = signed_message(eph_pub, label, msg);

    return wzp_ed25519_verify(id_pub, msg, len, sig->data, sig->len);
}

/* Sign eph_pub || label with id's Ed25519 key into a malloc'd 64-byte wzp_bytes. */
static int sign_labelled(const struct wzp_identity *id, const uint8_t eph_pub[32],
                         const char *label, struct wzp_bytes *sig)
{
    uint8_t msg[32 + LABEL_MAX];
    size_t len = signed_message(eph_pub, label, msg);

    sig->data = malloc(SIG_BYTES);
    if (sig->data == NULL)
        return WZP_ENOMEM;
    wzp_ed25519_sign(id->ed25519_secret, id->ed25519_public, msg, len, sig->data);
    sig->len = SIG_BYTES;
    return WZP_OK;
}

/* A given or fresh random ephemeral secret, and its X25519 public key. */
static int ephemeral_key(const uint8_t *given, uint8_t secret[32], uint8_t pub[32])
{
    if (given != NULL)
        memcpy(secret, given, 32);
    else if (wzp_random(secret, 32) != WZP_OK)
        return WZP_ECRYPTO;
    wzp_x25519_public(secret, pub);
    return WZP_OK;
}

int wzp_handshake_verify_offer(const struct wzp_signal *offer)
{
    if (offer == NULL || offer->type != WZP_SIG_CALL_OFFER)
        return WZP_ECRYPTO;
    return verify_labelled(offer->u.call_offer.identity_pub, offer->u.call_offer.ephemeral_pub,
                           &offer->u.call_offer.signature, OFFER_LABEL);
}

int wzp_handshake_verify_answer(const struct wzp_signal *answer)
{
    if (answer == NULL || answer->type != WZP_SIG_CALL_ANSWER)
        return WZP_ECRYPTO;
    return verify_labelled(answer->u.call_answer.identity_pub, answer->u.call_answer.ephemeral_pub,
                           &answer->u.call_answer.signature, ANSWER_LABEL);
}

int wzp_handshake_verify_registration(const struct wzp_signal *reg)
{
    if (reg == NULL || reg->type != WZP_SIG_REGISTER_PRESENCE)
        return WZP_ECRYPTO;
    return verify_labelled(reg->u.register_presence.identity_pub,
                           reg->u.register_presence.identity_pub,
                           &reg->u.register_presence.signature, REGISTER_LABEL);
}

int wzp_handshake_sign_registration(const struct wzp_identity *client, struct wzp_bytes *sig)
{
    return sign_labelled(client, client->ed25519_public, REGISTER_LABEL, sig);
}

int wzp_handshake_make_answer(const struct wzp_identity *relay, struct wzp_signal *answer)
{
    uint8_t secret[32];
    int rc;

    memset(answer, 0, sizeof(*answer));
    answer->type = WZP_SIG_CALL_ANSWER;
    memcpy(answer->u.call_answer.identity_pub, relay->ed25519_public, 32);
    answer->u.call_answer.chosen_profile = WZP_PROFILE_GOOD;
    /* The session derived from e_r is discarded upstream too (main.rs:1522). */
    rc = ephemeral_key(NULL, secret, answer->u.call_answer.ephemeral_pub);
    gnutls_memset(secret, 0, sizeof(secret));
    if (rc == WZP_OK)
        rc = sign_labelled(relay, answer->u.call_answer.ephemeral_pub, ANSWER_LABEL,
                           &answer->u.call_answer.signature);
    if (rc != WZP_OK)
        memset(answer, 0, sizeof(*answer));
    return rc;
}

/* The client's offer list, in upstream order (wzp-client handshake.rs). */
static int offer_profiles(struct wzp_profiles *out)
{
    const struct wzp_quality_profile *list[] = {
        &WZP_PROFILE_STUDIO_64K, &WZP_PROFILE_STUDIO_48K, &WZP_PROFILE_STUDIO_32K,
        &WZP_PROFILE_GOOD,       &WZP_PROFILE_DEGRADED,   &WZP_PROFILE_CATASTROPHIC,
    };

    out->items = malloc(WZP_ARRAY_LEN(list) * sizeof(*out->items));
    if (out->items == NULL)
        return WZP_ENOMEM;
    for (size_t i = 0; i < WZP_ARRAY_LEN(list); i++)
        out->items[i] = *list[i];
    out->count = WZP_ARRAY_LEN(list);
    return WZP_OK;
}

static void free_offer(struct wzp_signal *offer)
{
    free(offer->u.call_offer.signature.data);
    free(offer->u.call_offer.supported_profiles.items);
    free(offer->u.call_offer.alias);
    memset(offer, 0, sizeof(*offer));
}

int wzp_handshake_make_offer(const struct wzp_identity *client, const uint8_t *ephemeral_secret,
                             const char *alias, struct wzp_signal *offer)
{
    uint8_t secret[32];
    int rc;

    memset(offer, 0, sizeof(*offer));
    offer->type = WZP_SIG_CALL_OFFER;
    memcpy(offer->u.call_offer.identity_pub, client->ed25519_public, 32);
    rc = ephemeral_key(ephemeral_secret, secret, offer->u.call_offer.ephemeral_pub);
    gnutls_memset(secret, 0, sizeof(secret));
    if (rc == WZP_OK)
        rc = sign_labelled(client, offer->u.call_offer.ephemeral_pub, OFFER_LABEL,
                           &offer->u.call_offer.signature);
    if (rc == WZP_OK)
        rc = offer_profiles(&offer->u.call_offer.supported_profiles);
    if (rc == WZP_OK && alias != NULL) {
        offer->u.call_offer.alias = strdup(alias);
        if (offer->u.call_offer.alias == NULL)
            rc = WZP_ENOMEM;
    }
    if (rc != WZP_OK)
        free_offer(offer);
    return rc;
}

void wzp_session_key(const uint8_t eph_secret[32], const uint8_t peer_eph_pub[32], uint8_t key[32])
{
    uint8_t shared[32];

    wzp_x25519_shared(eph_secret, peer_eph_pub, shared);
    wzp_hkdf_sha256(shared, sizeof(shared), "warzone-session-key", key, 32);
    gnutls_memset(shared, 0, sizeof(shared));
}

uint32_t wzp_session_sas(const uint8_t eph_secret[32], const uint8_t peer_eph_pub[32])
{
    uint8_t shared[32], code[4];

    wzp_x25519_shared(eph_secret, peer_eph_pub, shared);
    wzp_hkdf_sha256(shared, sizeof(shared), "warzone-sas-code", code, sizeof(code));
    gnutls_memset(shared, 0, sizeof(shared));
    return wzp_get_u32be(code) % 10000;
}
