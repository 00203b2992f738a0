/*
 * handshake.h - the room handshake: CallOffer verification and the relay's CallAnswer
 * (doc/PROTOCOL.md, "Room join"), plus the client side used by examples and tests.
 *
 *   client: sig_c = Ed25519(id_c, E_c || "call-offer")
 *   relay : verify sig_c (exactly 64 bytes) under CallOffer.identity_pub;
 *           fresh X25519 (e_r, E_r); sig_r = Ed25519(id_relay, E_r || "call-answer");
 *           CallAnswer{ID_relay, E_r, sig_r, chosen_profile = GOOD}
 */
#ifndef WZP_HANDSHAKE_H
#define WZP_HANDSHAKE_H

#include "identity.h"
#include "signal_codec.h"

/* WZP_OK if the CallOffer's signature is valid, WZP_ECRYPTO otherwise. */
int wzp_handshake_verify_offer(const struct wzp_signal *offer);

/*
 * Build the relay's CallAnswer into *answer (type set, signature bytes owned by *answer:
 * release with wzp_signal_clear). Uses a fresh random ephemeral key.
 */
int wzp_handshake_make_answer(const struct wzp_identity *relay, struct wzp_signal *answer);

/*
 * Client side: build a signed CallOffer from the client's identity and an ephemeral
 * secret (random if ephemeral_secret is NULL). alias may be NULL. Strings and arrays
 * are allocated: release with wzp_signal_clear.
 */
int wzp_handshake_make_offer(const struct wzp_identity *client, const uint8_t *ephemeral_secret,
                             const char *alias, struct wzp_signal *offer);

/*
 * A signed RegisterPresence ("_signal"): signature = Ed25519(id, identity_pub ||
 * "register-presence"). Today's clients send an empty signature; the relay verifies one
 * that is present. verify: WZP_OK or WZP_ECRYPTO. sign (client side): a malloc'd 64-byte
 * signature in *sig.
 */
int wzp_handshake_verify_registration(const struct wzp_signal *reg);
int wzp_handshake_sign_registration(const struct wzp_identity *client, struct wzp_bytes *sig);

/* Client side: WZP_OK if a CallAnswer's signature is valid under its own identity_pub. */
int wzp_handshake_verify_answer(const struct wzp_signal *answer);

/* Session derivation (§5.2): key = HKDF(X25519(e, E_peer), "warzone-session-key"). */
void wzp_session_key(const uint8_t eph_secret[32], const uint8_t peer_eph_pub[32], uint8_t key[32]);
/* SAS = u32be(HKDF(shared, "warzone-sas-code", 4)) mod 10000. */
uint32_t wzp_session_sas(const uint8_t eph_secret[32], const uint8_t peer_eph_pub[32]);

#endif
