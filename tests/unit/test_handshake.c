/*
 * test_handshake.c - the room handshake (doc/PROTOCOL.md, "Room join"): CallOffer construction
 * and verification against the §5.3 vectors, rejection of tampered offers, the relay's
 * CallAnswer (fresh ephemerals, GOOD profile, verifiable signature) and the session key /
 * SAS derivation vectors.
 */
#include "common.h"
#include "handshake.h"

#include <criterion/criterion.h>
#include "testutil.h"
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>

#define VEC_ED_PUBLIC "a37a947ca8cc01976b7859cfb52eec500627d4c1a1e13c5ee6f7aa3b5c706909"
#define VEC_E         "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13"
#define VEC_E2        "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20"
#define VEC_SHARED    "9e004098efc091d4ec2663b4e9f5cfd4d7064571690b4bea97ab146ab9f35056"
#define VEC_OFFER_SIG                                                                              \
    "420d9b9ea1d77724c83ec5017dbcaf48e8342323ca7c51384796bddda2d780ca"                             \
    "7112f4ad831c070ec75012cc02e5061afd44beb521634ea1f137f84645423c0d"
#define VEC_SESSION_KEY "b2fa5213ed350d8e9847b7e25dd3a79107a4ab6aa753832e3d00bb6660fcf666"

static void identity_for(struct wzp_identity *id, uint8_t byte)
{
    uint8_t seed[32];
    memset(seed, byte, sizeof(seed));
    cr_assert_eq(wzp_identity_from_seed(id, seed), WZP_OK);
}

/* The §5.3 offer: client seed 0x42 x 32, ephemeral 0x11 x 32, alias "alice". */
static void vector_offer(struct wzp_signal *offer)
{
    struct wzp_identity client;
    uint8_t eph[32];

    identity_for(&client, 0x42);
    memset(eph, 0x11, sizeof(eph));
    cr_assert_eq(wzp_handshake_make_offer(&client, eph, "alice", offer), WZP_OK);
    wzp_identity_free(&client);
}

static void assert_profile_eq(const struct wzp_quality_profile *a,
                              const struct wzp_quality_profile *b)
{
    cr_assert_eq(a->codec, b->codec);
    cr_assert_float_eq(a->fec_ratio, b->fec_ratio, 1e-6);
    cr_assert_eq(a->frame_duration_ms, b->frame_duration_ms);
    cr_assert_eq(a->frames_per_block, b->frames_per_block);
}

Test(offer, vector_offer_has_exact_fields_and_verifies)
{
    struct wzp_signal offer;

    vector_offer(&offer);
    cr_assert_eq(offer.type, WZP_SIG_CALL_OFFER);
    assert_bytes_hex(offer.u.call_offer.identity_pub, 32, VEC_ED_PUBLIC);
    assert_bytes_hex(offer.u.call_offer.ephemeral_pub, 32, VEC_E);
    cr_assert_eq(offer.u.call_offer.signature.len, 64);
    assert_bytes_hex(offer.u.call_offer.signature.data, 64, VEC_OFFER_SIG);
    cr_assert_str_eq(offer.u.call_offer.alias, "alice");
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_OK);
    wzp_signal_clear(&offer);
}

Test(offer, supported_profiles_in_upstream_order)
{
    const struct wzp_quality_profile *want[] = {
        &WZP_PROFILE_STUDIO_64K, &WZP_PROFILE_STUDIO_48K, &WZP_PROFILE_STUDIO_32K,
        &WZP_PROFILE_GOOD,       &WZP_PROFILE_DEGRADED,   &WZP_PROFILE_CATASTROPHIC,
    };
    struct wzp_signal offer;

    vector_offer(&offer);
    cr_assert_eq(offer.u.call_offer.supported_profiles.count, 6);
    for (size_t i = 0; i < 6; i++)
        assert_profile_eq(&offer.u.call_offer.supported_profiles.items[i], want[i]);
    cr_assert_eq(offer.u.call_offer.supported_profiles.items[0].codec, WZP_CODEC_OPUS64K);
    cr_assert_eq(offer.u.call_offer.supported_profiles.items[3].codec, WZP_CODEC_OPUS24K);
    wzp_signal_clear(&offer);
}

Test(offer, hand_built_spec_offer_verifies)
{
    struct wzp_signal offer;
    uint8_t sig[64];

    memset(&offer, 0, sizeof(offer));
    offer.type = WZP_SIG_CALL_OFFER;
    unhex(VEC_ED_PUBLIC, offer.u.call_offer.identity_pub, 32);
    unhex(VEC_E, offer.u.call_offer.ephemeral_pub, 32);
    unhex(VEC_OFFER_SIG, sig, 64);
    offer.u.call_offer.signature = (struct wzp_bytes){sig, 64};
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_OK);
    sig[63] ^= 0x01;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
}

Test(offer, random_ephemeral_and_null_alias)
{
    struct wzp_identity client;
    struct wzp_signal a, b;

    identity_for(&client, 0x05);
    cr_assert_eq(wzp_handshake_make_offer(&client, NULL, NULL, &a), WZP_OK);
    cr_assert_eq(wzp_handshake_make_offer(&client, NULL, NULL, &b), WZP_OK);
    cr_assert_null(a.u.call_offer.alias);
    cr_assert_arr_eq(a.u.call_offer.identity_pub, client.ed25519_public, 32);
    cr_assert_neq(memcmp(a.u.call_offer.ephemeral_pub, b.u.call_offer.ephemeral_pub, 32), 0);
    cr_assert_eq(wzp_handshake_verify_offer(&a), WZP_OK);
    cr_assert_eq(wzp_handshake_verify_offer(&b), WZP_OK);
    wzp_signal_clear(&a);
    wzp_signal_clear(&b);
    wzp_identity_free(&client);
}

Test(offer, any_flipped_signature_bit_is_rejected)
{
    struct wzp_signal offer;
    uint8_t *sig;

    vector_offer(&offer);
    sig = offer.u.call_offer.signature.data;
    for (int bit = 0; bit < 64 * 8; bit += 7) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO, "bit %d", bit);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_OK);
    wzp_signal_clear(&offer);
}

Test(offer, tampered_keys_are_rejected)
{
    struct wzp_signal offer;

    vector_offer(&offer);
    offer.u.call_offer.ephemeral_pub[5] ^= 0x10;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    offer.u.call_offer.ephemeral_pub[5] ^= 0x10;
    offer.u.call_offer.identity_pub[31] ^= 0x01;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    offer.u.call_offer.identity_pub[31] ^= 0x01;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_OK);
    wzp_signal_clear(&offer);
}

Test(offer, wrong_signature_length_is_rejected)
{
    struct wzp_signal offer;
    uint8_t *longer;

    vector_offer(&offer);
    offer.u.call_offer.signature.len = 63;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    offer.u.call_offer.signature.len = 0;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    longer = realloc(offer.u.call_offer.signature.data, 65);
    cr_assert_not_null(longer);
    longer[64] = 0;
    offer.u.call_offer.signature = (struct wzp_bytes){longer, 65};
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    offer.u.call_offer.signature.len = 64;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_OK);
    wzp_signal_clear(&offer);
}

Test(offer, wrong_type_or_missing_signature_is_rejected)
{
    struct wzp_signal offer;
    uint8_t *sig;

    vector_offer(&offer);
    offer.type = WZP_SIG_CALL_ANSWER;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    offer.type = WZP_SIG_CALL_OFFER;
    sig = offer.u.call_offer.signature.data;
    offer.u.call_offer.signature.data = NULL;
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    offer.u.call_offer.signature.data = sig;
    cr_assert_eq(wzp_handshake_verify_offer(NULL), WZP_ECRYPTO);
    wzp_signal_clear(&offer);
}

/* A signature over E || "call-answer" must not pass as an offer (domain separation). */
Test(offer, answer_label_signature_is_rejected)
{
    struct wzp_identity client;
    struct wzp_signal offer;
    uint8_t msg[43];

    identity_for(&client, 0x42);
    vector_offer(&offer);
    memcpy(msg, offer.u.call_offer.ephemeral_pub, 32);
    memcpy(msg + 32, "call-answer", 11);
    wzp_ed25519_sign(client.ed25519_secret, client.ed25519_public, msg, sizeof(msg),
                     offer.u.call_offer.signature.data);
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_ECRYPTO);
    wzp_signal_clear(&offer);
    wzp_identity_free(&client);
}

Test(answer, verifies_and_carries_relay_identity_and_good_profile)
{
    struct wzp_identity relay;
    struct wzp_signal answer;
    uint8_t msg[43];

    identity_for(&relay, 0x99);
    cr_assert_eq(wzp_handshake_make_answer(&relay, &answer), WZP_OK);
    cr_assert_eq(answer.type, WZP_SIG_CALL_ANSWER);
    cr_assert_arr_eq(answer.u.call_answer.identity_pub, relay.ed25519_public, 32);
    assert_profile_eq(&answer.u.call_answer.chosen_profile, &WZP_PROFILE_GOOD);
    cr_assert_eq(answer.u.call_answer.signature.len, 64);
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_OK);
    memcpy(msg, answer.u.call_answer.ephemeral_pub, 32);
    memcpy(msg + 32, "call-answer", 11);
    cr_assert_eq(
        wzp_ed25519_verify(relay.ed25519_public, msg, 43, answer.u.call_answer.signature.data, 64),
        WZP_OK);
    memcpy(msg + 32, "call-offer", 10);
    cr_assert_eq(
        wzp_ed25519_verify(relay.ed25519_public, msg, 42, answer.u.call_answer.signature.data, 64),
        WZP_ECRYPTO);
    wzp_signal_clear(&answer);
    wzp_identity_free(&relay);
}

Test(answer, fresh_ephemeral_every_call)
{
    struct wzp_identity relay;
    struct wzp_signal a, b;

    identity_for(&relay, 0x99);
    cr_assert_eq(wzp_handshake_make_answer(&relay, &a), WZP_OK);
    cr_assert_eq(wzp_handshake_make_answer(&relay, &b), WZP_OK);
    cr_assert_neq(memcmp(a.u.call_answer.ephemeral_pub, b.u.call_answer.ephemeral_pub, 32), 0);
    cr_assert_neq(memcmp(a.u.call_answer.signature.data, b.u.call_answer.signature.data, 64), 0);
    cr_assert_neq(a.u.call_answer.signature.data, b.u.call_answer.signature.data);
    wzp_signal_clear(&a);
    wzp_signal_clear(&b);
    wzp_identity_free(&relay);
}

Test(answer, tampered_answer_is_rejected)
{
    struct wzp_identity relay;
    struct wzp_signal answer;

    identity_for(&relay, 0x99);
    cr_assert_eq(wzp_handshake_make_answer(&relay, &answer), WZP_OK);
    answer.u.call_answer.ephemeral_pub[0] ^= 0x01;
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_ECRYPTO);
    answer.u.call_answer.ephemeral_pub[0] ^= 0x01;
    answer.u.call_answer.signature.data[20] ^= 0x04;
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_ECRYPTO);
    answer.u.call_answer.signature.data[20] ^= 0x04;
    answer.u.call_answer.signature.len = 63;
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_ECRYPTO);
    answer.u.call_answer.signature.len = 64;
    answer.type = WZP_SIG_CALL_OFFER;
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_ECRYPTO);
    answer.type = WZP_SIG_CALL_ANSWER;
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_OK);
    wzp_signal_clear(&answer);
    wzp_identity_free(&relay);
}

Test(flow, relay_accepts_client_offer_and_client_accepts_answer)
{
    struct wzp_identity client, relay;
    struct wzp_signal offer, answer;

    identity_for(&client, 0x01);
    identity_for(&relay, 0x02);
    cr_assert_eq(wzp_handshake_make_offer(&client, NULL, "bob", &offer), WZP_OK);
    cr_assert_eq(wzp_handshake_verify_offer(&offer), WZP_OK);
    cr_assert_eq(wzp_handshake_make_answer(&relay, &answer), WZP_OK);
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_OK);
    wzp_signal_clear(&offer);
    wzp_signal_clear(&answer);
    wzp_identity_free(&client);
    wzp_identity_free(&relay);
}

static void sha256_of(const uint8_t data[32], uint8_t out[32])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, 32, data);
    sha256_digest(&ctx, 32, out);
}

Test(session, key_sas_and_session_id_vectors)
{
    uint8_t e1[32], e2[32], p1[32], p2[32], shared[32], k12[32], k21[32], digest[32];

    memset(e1, 0x11, 32);
    memset(e2, 0x22, 32);
    wzp_x25519_public(e1, p1);
    wzp_x25519_public(e2, p2);
    assert_bytes_hex(p1, 32, VEC_E);
    assert_bytes_hex(p2, 32, VEC_E2);
    wzp_x25519_shared(e1, p2, shared);
    assert_bytes_hex(shared, 32, VEC_SHARED);
    wzp_session_key(e1, p2, k12);
    wzp_session_key(e2, p1, k21);
    assert_bytes_hex(k12, 32, VEC_SESSION_KEY);
    cr_assert_arr_eq(k12, k21, 32);
    cr_assert_eq(wzp_session_sas(e1, p2), 4812);
    cr_assert_eq(wzp_session_sas(e2, p1), 4812);
    sha256_of(k12, digest);
    assert_bytes_hex(digest, 4, "20dda32a"); /* session_id = SHA-256(key)[0..4] */
}

Test(session, sas_is_below_10000_and_varies)
{
    uint8_t e[32], peer_secret[32], peer[32];
    uint32_t first = 0;
    int distinct = 0;

    for (int i = 0; i < 8; i++) {
        memset(e, 0x30 + i, 32);
        memset(peer_secret, 0x60, 32);
        wzp_x25519_public(peer_secret, peer);
        uint32_t sas = wzp_session_sas(e, peer);
        cr_assert_lt(sas, 10000);
        if (i == 0)
            first = sas;
        distinct += sas != first;
    }
    cr_assert_gt(distinct, 0);
}

/* RegisterPresence: Ed25519 over identity_pub || "register-presence". */
Test(registration, signed_registration_verifies_and_tampering_is_rejected)
{
    struct wzp_identity client, other;
    identity_for(&client, 0x42);
    identity_for(&other, 0x43);
    struct wzp_signal reg = {.type = WZP_SIG_REGISTER_PRESENCE};
    memcpy(reg.u.register_presence.identity_pub, client.ed25519_public, 32);
    cr_assert_eq(wzp_handshake_sign_registration(&client, &reg.u.register_presence.signature),
                 WZP_OK);
    cr_assert_eq(reg.u.register_presence.signature.len, 64);
    cr_assert_eq(wzp_handshake_verify_registration(&reg), WZP_OK);
    reg.u.register_presence.signature.data[10] ^= 1;
    cr_assert_eq(wzp_handshake_verify_registration(&reg), WZP_ECRYPTO, "flipped bit");
    reg.u.register_presence.signature.data[10] ^= 1;
    memcpy(reg.u.register_presence.identity_pub, other.ed25519_public, 32);
    cr_assert_eq(wzp_handshake_verify_registration(&reg), WZP_ECRYPTO, "another key");
    /* a CallOffer-style signature (another label) does not pass as a registration */
    free(reg.u.register_presence.signature.data);
    struct wzp_signal offer;
    vector_offer(&offer);
    struct wzp_signal forged = {.type = WZP_SIG_REGISTER_PRESENCE};
    memcpy(forged.u.register_presence.identity_pub, offer.u.call_offer.identity_pub, 32);
    forged.u.register_presence.signature = offer.u.call_offer.signature;
    cr_assert_eq(wzp_handshake_verify_registration(&forged), WZP_ECRYPTO);
    wzp_signal_clear(&offer);
    wzp_identity_free(&client);
    wzp_identity_free(&other);
}
