/*
 * test_signal_codec.c - signal framing and the serde-compatible JSON codec
 * (doc/PROTOCOL.md, "Signals"): one example of every SignalMessage variant as upstream's
 * serde writes it must parse and re-encode byte for byte, plus parse checks, rejections,
 * framing, escaping and float formatting.
 */
#include <criterion/criterion.h>

#include "signal_codec.h"

#include "common.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Concrete arrays standing in for the spec's "[…]" abbreviations. */
#define KEY_0 "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]"
#define KEY_1 "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]"
#define KEY_2 "[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]"
#define KEY_7 "[7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7]"
#define KEY_SEQ                                                                                    \
    "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31]"
#define KEY_FF                                                                                     \
    "[255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,"    \
    "255,255,255,255,255,255,255,255,255,255]"
#define KEY_31 "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]"
#define SIG_64                                                                                     \
    "[192,193,194,195,196,197,198,199,200,201,202,203,204,205,206,207,208,209,210,211,212,213,"    \
    "214,215,216,217,218,219,220,221,222,223,224,225,226,227,228,229,230,231,232,233,234,235,"     \
    "236,237,238,239,240,241,242,243,244,245,246,247,248,249,250,251,252,253,254,255]"

#define P_S64K                                                                                     \
    "{\"codec\":\"Opus64k\",\"fec_ratio\":0.1,\"frame_duration_ms\":20,\"frames_per_block\":5}"
#define P_S48K                                                                                     \
    "{\"codec\":\"Opus48k\",\"fec_ratio\":0.1,\"frame_duration_ms\":20,\"frames_per_block\":5}"
#define P_S32K                                                                                     \
    "{\"codec\":\"Opus32k\",\"fec_ratio\":0.1,\"frame_duration_ms\":20,\"frames_per_block\":5}"
#define P_GOOD                                                                                     \
    "{\"codec\":\"Opus24k\",\"fec_ratio\":0.2,\"frame_duration_ms\":20,\"frames_per_block\":5}"
#define P_DEGRADED                                                                                 \
    "{\"codec\":\"Opus6k\",\"fec_ratio\":0.5,\"frame_duration_ms\":40,\"frames_per_block\":10}"
#define P_CATASTROPHIC                                                                             \
    "{\"codec\":\"Codec2_1200\",\"fec_ratio\":1.0,\"frame_duration_ms\":40,\"frames_per_block\":"  \
    "8}"

/* One message of each variant, exactly as serde writes it (the protocol's published
 * examples, abbreviated arrays filled in). */
static const char *const spec_examples[] = {
    "{\"CallOffer\":{\"identity_pub\":" KEY_1 ",\"ephemeral_pub\":" KEY_2
    ",\"signature\":[3,4],\"supported_profiles\":[" P_S64K "," P_S48K "," P_S32K "," P_GOOD
    "," P_DEGRADED "," P_CATASTROPHIC "],\"alias\":\"alice\"}}",
    "{\"CallOffer\":{\"identity_pub\":" KEY_SEQ ",\"ephemeral_pub\":" KEY_FF
    ",\"signature\":[],\"supported_profiles\":[],\"alias\":null}}",
    "{\"CallAnswer\":{\"identity_pub\":" KEY_SEQ ",\"ephemeral_pub\":" KEY_FF
    ",\"signature\":" SIG_64 ",\"chosen_profile\":" P_GOOD "}}",
    "{\"IceCandidate\":{\"candidate\":\"c\"}}",
    "{\"Rekey\":{\"new_ephemeral_pub\":" KEY_7 ",\"signature\":[1]}}",
    "{\"QualityUpdate\":{\"report\":{\"loss_pct\":1,\"rtt_4ms\":2,\"jitter_ms\":3,"
    "\"bitrate_cap_kbps\":200},\"recommended_profile\":" P_DEGRADED "}}",
    "{\"LossRecoveryUpdate\":{\"dred_reconstructions\":1,\"classical_plc_invocations\":2,"
    "\"frames_decoded\":3}}",
    "{\"Ping\":{\"timestamp_ms\":1712345678901}}",
    "{\"Pong\":{\"timestamp_ms\":1712345678901}}",
    "{\"Hangup\":{\"reason\":\"Normal\"}}",
    "{\"Hangup\":{\"reason\":\"Busy\",\"call_id\":\"c1\"}}",
    "{\"AuthToken\":{\"token\":\"tok\\\"en\\\\/\\n\\u0001é\"}}",
    "\"Hold\"",
    "\"Unhold\"",
    "\"Mute\"",
    "\"Unmute\"",
    "\"TransferAck\"",
    "\"Reflect\"",
    "{\"Transfer\":{\"target_fingerprint\":\"fp\",\"relay_addr\":null}}",
    "{\"PresenceUpdate\":{\"fingerprints\":[\"a\"],\"relay_addr\":\"1.2.3.4:4433\"}}",
    "{\"RouteQuery\":{\"fingerprint\":\"f\",\"ttl\":3}}",
    "{\"RouteResponse\":{\"fingerprint\":\"f\",\"found\":true,\"relay_chain\":[\"1.2.3.4:4433\"]}}",
    "{\"SessionForward\":{\"session_id\":\"s\",\"target_fingerprint\":\"t\",\"source_relay\":\"r\"}"
    "}",
    "{\"SessionForwardAck\":{\"session_id\":\"s\",\"room_name\":\"r\"}}",
    "{\"RoomUpdate\":{\"count\":2,\"participants\":[{\"fingerprint\":\"aaaa:bbbb\",\"alias\":\"A\","
    "\"relay_label\":null},{\"fingerprint\":\"\",\"alias\":null,\"relay_label\":\"Relay B\"}]}}",
    "{\"FederationHello\":{\"tls_fingerprint\":\"ab:cd\"}}",
    "{\"GlobalRoomActive\":{\"room\":\"podcast\",\"participants\":[]}}",
    "{\"GlobalRoomInactive\":{\"room\":\"podcast\"}}",
    "{\"RegisterPresence\":{\"identity_pub\":" KEY_0 ",\"signature\":[],\"alias\":null}}",
    "{\"RegisterPresenceAck\":{\"success\":true,\"relay_build\":\"9377a90\"}}",
    "{\"RegisterPresenceAck\":{\"success\":false,\"error\":\"x\"}}",
    "{\"DirectCallOffer\":{\"caller_fingerprint\":\"cf\",\"caller_alias\":null,"
    "\"target_fingerprint\":\"tf\",\"call_id\":\"cid\",\"identity_pub\":" KEY_1
    ",\"ephemeral_pub\":" KEY_2 ",\"signature\":[5],\"supported_profiles\":[" P_GOOD "]}}",
    "{\"DirectCallOffer\":{\"caller_fingerprint\":\"cf\",\"caller_alias\":\"A\","
    "\"target_fingerprint\":\"tf\",\"call_id\":\"cid\",\"identity_pub\":" KEY_1
    ",\"ephemeral_pub\":" KEY_2 ",\"signature\":[5],\"supported_profiles\":[],"
    "\"caller_reflexive_addr\":\"203.0.113.1:5000\",\"caller_local_addrs\":[\"192.168.1.2:5000\"],"
    "\"caller_build_version\":\"abc\"}}",
    "{\"DirectCallAnswer\":{\"call_id\":\"cid\",\"accept_mode\":\"Reject\"}}",
    "{\"DirectCallAnswer\":{\"call_id\":\"cid\",\"accept_mode\":\"AcceptTrusted\",\"identity_"
    "pub\":" KEY_SEQ ",\"ephemeral_pub\":" KEY_FF ",\"signature\":[7],\"chosen_profile\":" P_GOOD
    ",\"callee_reflexive_addr\":\"[2001:db8::1]:4433\",\"callee_local_addrs\":[\"10.0.0.2:1\"]}}",
    "{\"CallSetup\":{\"call_id\":\"cid\",\"room\":\"call-cid\",\"relay_addr\":\"203.0.113.5:4433\"}"
    "}",
    "{\"CallSetup\":{\"call_id\":\"cid\",\"room\":\"call-cid\",\"relay_addr\":\"203.0.113.5:4433\","
    "\"peer_direct_addr\":\"198.51.100.2:6000\",\"peer_local_addrs\":[\"192.168.0.5:6000\"]}}",
    "{\"CallRinging\":{\"call_id\":\"cid\"}}",
    "{\"ReflectResponse\":{\"observed_addr\":\"192.0.2.17:4433\"}}",
    "{\"MediaPathReport\":{\"call_id\":\"cid\",\"direct_ok\":false,\"race_winner\":\"Relay\"}}",
    "{\"FederatedSignalForward\":{\"inner\":{\"CallRinging\":{\"call_id\":\"cid\"}},"
    "\"origin_relay_fp\":\"ab:cd\"}}",
    "{\"QualityDirective\":{\"recommended_profile\":" P_CATASTROPHIC
    ",\"reason\":\"weakest link: Catastrophic\"}}",
    "{\"QualityDirective\":{\"recommended_profile\":" P_S64K "}}",
};

/* §5.3: a complete, validly signed CallOffer for seed 0x42×32 / ephemeral 0x11×32. */
static const char call_offer_5_3[] =
    "{\"CallOffer\":{\"identity_pub\":[163,122,148,124,168,204,1,151,107,120,89,207,181,46,236,80,"
    "6,39,212,193,161,225,60,94,230,247,170,59,92,112,105,9],\"ephemeral_pub\":[123,78,144,155,"
    "190,127,254,68,196,101,162,32,3,125,96,142,227,88,151,211,30,249,114,240,127,116,137,44,176,"
    "247,63,19],\"signature\":[66,13,155,158,161,215,119,36,200,62,197,1,125,188,175,72,232,52,"
    "35,35,202,124,81,56,71,150,189,221,162,215,128,202,113,18,244,173,131,28,7,14,199,80,18,"
    "204,2,229,6,26,253,68,190,181,33,99,78,161,241,55,248,70,69,66,60,13],\"supported_profiles\""
    ":[{\"codec\":\"Opus24k\",\"fec_ratio\":0.2,\"frame_duration_ms\":20,\"frames_per_block\":5}],"
    "\"alias\":\"alice\"}}";

static char errbuf[256];

static int parse(const char *json, struct wzp_signal *s)
{
    return wzp_signal_parse((const uint8_t *)json, strlen(json), s, errbuf, sizeof(errbuf));
}

static void parse_ok(const char *json, struct wzp_signal *s)
{
    int rv = parse(json, s);
    cr_assert_eq(rv, WZP_OK, "parse failed (%d): %s\ninput: %s", rv, errbuf, json);
}

static bool is_zeroed(const struct wzp_signal *s)
{
    static const struct wzp_signal zero;
    return memcmp(s, &zero, sizeof(zero)) == 0;
}

/* The parse must fail with WZP_EINVAL, leave the struct zeroed and mention `needle`. */
static void parse_fails(const char *json, const char *needle)
{
    struct wzp_signal s;
    memset(&s, 0xa5, sizeof(s));
    int rv = parse(json, &s);
    cr_assert_eq(rv, WZP_EINVAL, "accepted (%d): %s", rv, json);
    cr_assert(is_zeroed(&s), "struct not cleared after failure: %s", json);
    cr_assert_neq(errbuf[0], '\0', "no error message for %s", json);
    if (needle)
        cr_assert(strstr(errbuf, needle), "error \"%s\" lacks \"%s\"", errbuf, needle);
}

/* Encoded JSON as a malloc'd C string; fails the test if encoding fails. */
static char *encode(const struct wzp_signal *s)
{
    struct wzp_buf b = WZP_BUF_INIT;
    int rv = wzp_signal_encode(s, &b);
    cr_assert_eq(rv, WZP_OK, "encode failed: %d", rv);
    cr_assert_eq(wzp_buf_append(&b, "", 1), WZP_OK);
    return (char *)b.data;
}

/* The §3.3 example that starts with prefix. */
static const char *example(const char *prefix)
{
    for (size_t i = 0; i < WZP_ARRAY_LEN(spec_examples); i++)
        if (strncmp(spec_examples[i], prefix, strlen(prefix)) == 0)
            return spec_examples[i];
    cr_assert_fail("no example starts with %s", prefix);
    return NULL;
}

static void expect_roundtrip(const char *json)
{
    struct wzp_signal s;
    parse_ok(json, &s);
    char *out = encode(&s);
    cr_expect_str_eq(out, json);
    free(out);
    wzp_signal_clear(&s);
}

static void expect_encode_rejected(const struct wzp_signal *s)
{
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_buf_append(&b, "xy", 2), WZP_OK);
    cr_expect_eq(wzp_signal_encode(s, &b), WZP_EINVAL);
    cr_expect_eq(b.len, 2, "a failed encode must not leave partial output");
    wzp_buf_free(&b);
}

static void expect_hex(const uint8_t *data, size_t len, const char *hex)
{
    char got[2 * 256 + 1];
    cr_assert_leq(len, 256);
    wzp_hex_encode(data, len, got);
    cr_expect_str_eq(got, hex);
}

/* ---------------------------------------------------------------------------------- */

Test(signal_spec, every_3_3_example_round_trips_byte_exact)
{
    for (size_t i = 0; i < WZP_ARRAY_LEN(spec_examples); i++)
        expect_roundtrip(spec_examples[i]);
}

Test(signal_spec, call_offer_5_3_round_trips_and_decodes)
{
    struct wzp_signal s;
    parse_ok(call_offer_5_3, &s);
    cr_assert_eq(s.type, WZP_SIG_CALL_OFFER);
    char hex[129];
    wzp_hex_encode(s.u.call_offer.identity_pub, 32, hex);
    cr_expect_str_eq(hex, "a37a947ca8cc01976b7859cfb52eec500627d4c1a1e13c5ee6f7aa3b5c706909");
    wzp_hex_encode(s.u.call_offer.ephemeral_pub, 32, hex);
    cr_expect_str_eq(hex, "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13");
    cr_assert_eq(s.u.call_offer.signature.len, 64);
    wzp_hex_encode(s.u.call_offer.signature.data, 64, hex);
    cr_expect_str_eq(hex, "420d9b9ea1d77724c83ec5017dbcaf48e8342323ca7c51384796bddda2d780ca"
                          "7112f4ad831c070ec75012cc02e5061afd44beb521634ea1f137f84645423c0d");
    cr_expect_str_eq(s.u.call_offer.alias, "alice");
    char *out = encode(&s);
    cr_expect_str_eq(out, call_offer_5_3);
    free(out);
    wzp_signal_clear(&s);
}

static void expect_profile(const struct wzp_quality_profile *got,
                           const struct wzp_quality_profile *want)
{
    cr_expect_eq(got->codec, want->codec);
    cr_expect_float_eq(got->fec_ratio, want->fec_ratio, 0.0);
    cr_expect_eq(got->frame_duration_ms, want->frame_duration_ms);
    cr_expect_eq(got->frames_per_block, want->frames_per_block);
}

Test(signal_spec, call_offer_fields_decode)
{
    struct wzp_signal s;
    parse_ok(spec_examples[0], &s);
    for (int i = 0; i < 32; i++) {
        cr_expect_eq(s.u.call_offer.identity_pub[i], 1);
        cr_expect_eq(s.u.call_offer.ephemeral_pub[i], 2);
    }
    cr_assert_eq(s.u.call_offer.signature.len, 2);
    cr_expect_eq(s.u.call_offer.signature.data[0], 3);
    cr_expect_eq(s.u.call_offer.signature.data[1], 4);
    const struct wzp_quality_profile *want[] = {
        &WZP_PROFILE_STUDIO_64K, &WZP_PROFILE_STUDIO_48K, &WZP_PROFILE_STUDIO_32K,
        &WZP_PROFILE_GOOD,       &WZP_PROFILE_DEGRADED,   &WZP_PROFILE_CATASTROPHIC,
    };
    cr_assert_eq(s.u.call_offer.supported_profiles.count, 6);
    for (int i = 0; i < 6; i++)
        expect_profile(&s.u.call_offer.supported_profiles.items[i], want[i]);
    wzp_signal_clear(&s);

    parse_ok(spec_examples[1], &s);
    cr_expect_null(s.u.call_offer.alias);
    cr_expect_eq(s.u.call_offer.signature.len, 0);
    cr_expect_eq(s.u.call_offer.supported_profiles.count, 0);
    cr_expect_eq(s.u.call_offer.identity_pub[31], 31);
    cr_expect_eq(s.u.call_offer.ephemeral_pub[0], 255);
    wzp_signal_clear(&s);
}

Test(signal_spec, other_fields_decode)
{
    struct wzp_signal s;
    parse_ok("{\"Hangup\":{\"reason\":\"Busy\",\"call_id\":\"c1\"}}", &s);
    cr_expect_eq(s.type, WZP_SIG_HANGUP);
    cr_expect_eq(s.u.hangup.reason, WZP_HANGUP_BUSY);
    cr_expect_str_eq(s.u.hangup.call_id, "c1");
    wzp_signal_clear(&s);

    parse_ok("{\"Pong\":{\"timestamp_ms\":1712345678901}}", &s);
    cr_expect_eq(s.type, WZP_SIG_PONG);
    cr_expect_eq(s.u.ping.timestamp_ms, 1712345678901ull);
    wzp_signal_clear(&s);

    parse_ok("{\"AuthToken\":{\"token\":\"tok\\\"en\\\\/\\n\\u0001é\"}}", &s);
    cr_expect_str_eq(s.u.auth_token.token, "tok\"en\\/\n\x01\xc3\xa9");
    wzp_signal_clear(&s);

    parse_ok("{\"QualityUpdate\":{\"report\":{\"loss_pct\":1,\"rtt_4ms\":2,\"jitter_ms\":3,"
             "\"bitrate_cap_kbps\":200},\"recommended_profile\":" P_DEGRADED "}}",
             &s);
    cr_expect_eq(s.u.quality_update.report.loss_pct, 1);
    cr_expect_eq(s.u.quality_update.report.rtt_4ms, 2);
    cr_expect_eq(s.u.quality_update.report.jitter_ms, 3);
    cr_expect_eq(s.u.quality_update.report.bitrate_cap_kbps, 200);
    expect_profile(&s.u.quality_update.recommended_profile, &WZP_PROFILE_DEGRADED);
    wzp_signal_clear(&s);

    parse_ok(example("{\"RoomUpdate\""), &s);
    cr_assert_eq(s.type, WZP_SIG_ROOM_UPDATE);
    cr_expect_eq(s.u.room_update.count, 2);
    cr_assert_eq(s.u.room_update.participants.count, 2);
    cr_expect_str_eq(s.u.room_update.participants.items[0].fingerprint, "aaaa:bbbb");
    cr_expect_str_eq(s.u.room_update.participants.items[0].alias, "A");
    cr_expect_null(s.u.room_update.participants.items[0].relay_label);
    cr_expect_str_eq(s.u.room_update.participants.items[1].fingerprint, "");
    cr_expect_null(s.u.room_update.participants.items[1].alias);
    cr_expect_str_eq(s.u.room_update.participants.items[1].relay_label, "Relay B");
    wzp_signal_clear(&s);

    parse_ok("{\"DirectCallAnswer\":{\"call_id\":\"cid\",\"accept_mode\":\"Reject\"}}", &s);
    cr_expect_eq(s.u.direct_call_answer.accept_mode, WZP_ACCEPT_REJECT);
    cr_expect_not(s.u.direct_call_answer.has_identity_pub);
    cr_expect_not(s.u.direct_call_answer.has_ephemeral_pub);
    cr_expect_not(s.u.direct_call_answer.has_signature);
    cr_expect_not(s.u.direct_call_answer.has_chosen_profile);
    cr_expect_eq(s.u.direct_call_answer.callee_local_addrs.count, 0);
    wzp_signal_clear(&s);

    parse_ok(example("{\"FederatedSignalForward\""), &s);
    cr_assert_eq(s.type, WZP_SIG_FEDERATED_SIGNAL_FORWARD);
    cr_assert_not_null(s.u.federated_signal_forward.inner);
    cr_expect_eq(s.u.federated_signal_forward.inner->type, WZP_SIG_CALL_RINGING);
    cr_expect_str_eq(s.u.federated_signal_forward.inner->u.call_ringing.call_id, "cid");
    cr_expect_str_eq(s.u.federated_signal_forward.origin_relay_fp, "ab:cd");
    wzp_signal_clear(&s);
}

Test(signal_spec, profile_constants_encode_as_3_1)
{
    const struct {
        const struct wzp_quality_profile *p;
        const char *json;
    } cases[] = {
        {&WZP_PROFILE_GOOD, P_GOOD},
        {&WZP_PROFILE_DEGRADED, P_DEGRADED},
        {&WZP_PROFILE_CATASTROPHIC, P_CATASTROPHIC},
        {&WZP_PROFILE_STUDIO_32K, P_S32K},
        {&WZP_PROFILE_STUDIO_48K, P_S48K},
        {&WZP_PROFILE_STUDIO_64K, P_S64K},
    };
    for (size_t i = 0; i < WZP_ARRAY_LEN(cases); i++) {
        struct wzp_signal s = {.type = WZP_SIG_QUALITY_DIRECTIVE};
        s.u.quality_directive.recommended_profile = *cases[i].p;
        char want[256];
        snprintf(want, sizeof(want), "{\"QualityDirective\":{\"recommended_profile\":%s}}",
                 cases[i].json);
        char *out = encode(&s);
        cr_expect_str_eq(out, want);
        free(out);
    }
}

/* ---------------------------------------------------------------------------------- */
/* §3.3 parse checks                                                                   */

Test(signal_parse, unit_variant_as_object_with_null)
{
    struct wzp_signal s;
    parse_ok("{\"Hold\":null}", &s);
    cr_expect_eq(s.type, WZP_SIG_HOLD);
    char *out = encode(&s);
    cr_expect_str_eq(out, "\"Hold\"");
    free(out);
    wzp_signal_clear(&s);
}

Test(signal_parse, unit_variant_with_object_rejected)
{
    parse_fails("{\"Reflect\":{}}", "Reflect");
    parse_fails("{\"Reflect\":[]}", "Reflect");
    parse_fails("{\"Reflect\":0}", "Reflect");
}

Test(signal_parse, extra_keys_ignored)
{
    struct wzp_signal s;
    parse_ok("{\"Ping\":{\"extra\":[1,{\"x\":null}],\"timestamp_ms\":5,\"z\":\"\\u0000\"}}", &s);
    cr_expect_eq(s.u.ping.timestamp_ms, 5);
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"Ping\":{\"timestamp_ms\":5}}");
    free(out);
    wzp_signal_clear(&s);

    parse_ok("{\"RoomUpdate\":{\"participants\":[{\"fingerprint\":\"f\",\"more\":1}],\"count\":1}}",
             &s);
    out = encode(&s);
    cr_expect_str_eq(out, "{\"RoomUpdate\":{\"count\":1,\"participants\":[{\"fingerprint\":\"f\","
                          "\"alias\":null,\"relay_label\":null}]}}");
    free(out);
    wzp_signal_clear(&s);
}

Test(signal_parse, loss_recovery_update_defaults_to_zero)
{
    struct wzp_signal s;
    parse_ok("{\"LossRecoveryUpdate\":{}}", &s);
    cr_expect_eq(s.type, WZP_SIG_LOSS_RECOVERY_UPDATE);
    cr_expect_eq(s.u.loss_recovery_update.dred_reconstructions, 0);
    cr_expect_eq(s.u.loss_recovery_update.classical_plc_invocations, 0);
    cr_expect_eq(s.u.loss_recovery_update.frames_decoded, 0);
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"LossRecoveryUpdate\":{\"dred_reconstructions\":0,"
                          "\"classical_plc_invocations\":0,\"frames_decoded\":0}}");
    free(out);
    parse_fails("{\"LossRecoveryUpdate\":{\"frames_decoded\":null}}", "frames_decoded");
}

Test(signal_parse, identity_pub_of_31_rejected)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"CallOffer\":{\"identity_pub\":%s,\"ephemeral_pub\":%s,\"signature\":[],"
             "\"supported_profiles\":[]}}",
             KEY_31, KEY_2);
    parse_fails(json, NULL);
    cr_expect_str_eq(errbuf, "CallOffer.identity_pub: expected 32 integers, got 31");

    snprintf(json, sizeof(json),
             "{\"CallOffer\":{\"identity_pub\":%s,\"ephemeral_pub\":[2,%s,\"signature\":[],"
             "\"supported_profiles\":[]}}",
             KEY_1, &KEY_31[1]); /* "[2," + 31 ones: 32 items */
    struct wzp_signal s;
    parse_ok(json, &s);
    wzp_signal_clear(&s);

    snprintf(json, sizeof(json),
             "{\"CallOffer\":{\"identity_pub\":%s,\"ephemeral_pub\":[2,2,%s,\"signature\":[],"
             "\"supported_profiles\":[]}}",
             KEY_1, &KEY_31[1]);
    parse_fails(json, "CallOffer.ephemeral_pub: expected 32 integers, got 33");
}

Test(signal_parse, peer_local_addrs_null_rejected_peer_direct_addr_null_ok)
{
    parse_fails("{\"CallSetup\":{\"call_id\":\"c\",\"room\":\"r\",\"relay_addr\":\"a\","
                "\"peer_local_addrs\":null}}",
                "CallSetup.peer_local_addrs");

    struct wzp_signal s;
    parse_ok("{\"CallSetup\":{\"call_id\":\"c\",\"room\":\"r\",\"relay_addr\":\"a\","
             "\"peer_direct_addr\":null}}",
             &s);
    cr_expect_null(s.u.call_setup.peer_direct_addr);
    char *out = encode(&s);
    cr_expect_str_eq(out,
                     "{\"CallSetup\":{\"call_id\":\"c\",\"room\":\"r\",\"relay_addr\":\"a\"}}");
    free(out);
    wzp_signal_clear(&s);
}

Test(signal_parse, media_path_report_race_winner_defaults_to_empty)
{
    struct wzp_signal s;
    parse_ok("{\"MediaPathReport\":{\"call_id\":\"c\",\"direct_ok\":true}}", &s);
    cr_expect_str_eq(s.u.media_path_report.race_winner, "");
    cr_expect(s.u.media_path_report.direct_ok);
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"MediaPathReport\":{\"call_id\":\"c\",\"direct_ok\":true,"
                          "\"race_winner\":\"\"}}");
    free(out);
    wzp_signal_clear(&s);
    parse_fails("{\"MediaPathReport\":{\"call_id\":\"c\",\"direct_ok\":true,\"race_winner\":null}}",
                "race_winner");
}

/* ---------------------------------------------------------------------------------- */
/* Rejections                                                                          */

Test(signal_parse, float_for_integer_rejected)
{
    parse_fails("{\"RouteQuery\":{\"fingerprint\":\"f\",\"ttl\":3.0}}",
                "RouteQuery.ttl: expected integer, got float");
    parse_fails("{\"RouteQuery\":{\"fingerprint\":\"f\",\"ttl\":3e0}}", "RouteQuery.ttl");
    parse_fails("{\"Ping\":{\"timestamp_ms\":1.5}}", "Ping.timestamp_ms");
    parse_fails("{\"Rekey\":{\"new_ephemeral_pub\":" KEY_7 ",\"signature\":[1.0]}}",
                "Rekey.signature[0]: expected integer, got float");
}

Test(signal_parse, integer_ranges)
{
    parse_fails("{\"RouteQuery\":{\"fingerprint\":\"f\",\"ttl\":-1}}", "out of range");
    parse_fails("{\"RouteQuery\":{\"fingerprint\":\"f\",\"ttl\":256}}", "out of range");
    parse_fails("{\"RoomUpdate\":{\"count\":4294967296,\"participants\":[]}}", "RoomUpdate.count");
    parse_fails("{\"Rekey\":{\"new_ephemeral_pub\":" KEY_7 ",\"signature\":[1,256]}}",
                "Rekey.signature[1]");
    parse_fails("{\"Rekey\":{\"new_ephemeral_pub\":" KEY_7 ",\"signature\":[0,1,2,3,4,5,6,7,8,9,"
                "10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,"
                "37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,"
                "64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,"
                "91,92,93,94,95,96,97,98,99,100,-1]}}",
                "Rekey.signature[101]: integer -1 out of range");

    struct wzp_signal s;
    parse_ok("{\"RoomUpdate\":{\"count\":4294967295,\"participants\":[]}}", &s);
    cr_expect_eq(s.u.room_update.count, UINT32_MAX);
    wzp_signal_clear(&s);

    /* u64: jansson parses up to 2^63-1; larger values are a documented limitation. */
    expect_roundtrip("{\"Ping\":{\"timestamp_ms\":9223372036854775807}}");
    parse_fails("{\"Ping\":{\"timestamp_ms\":9223372036854775808}}", NULL);
    parse_fails("{\"Ping\":{\"timestamp_ms\":-1}}", "out of range");
}

Test(signal_parse, top_level_shape)
{
    parse_fails("{\"Hold\":null,\"Mute\":null}", "expected an object with 1 key, got 2");
    parse_fails("{\"Ping\":{\"timestamp_ms\":1},\"x\":1}", "got 2");
    parse_fails("{}", "got 0");
    parse_fails("42", "expected string or object");
    parse_fails("[\"Hold\"]", "expected string or object");
    parse_fails("null", "expected string or object");
    parse_fails("\"Ping\"", "Ping: struct variant written as a bare string");
    parse_fails("{\"Ping\":null}", "Ping");

    struct wzp_signal s;
    parse_ok(" \n\"Reflect\"\t ", &s); /* surrounding whitespace is fine */
    cr_expect_eq(s.type, WZP_SIG_REFLECT);
    parse_fails("\"Reflect\" x", "invalid JSON");
    parse_fails("\"Reflect\"\"Hold\"", "invalid JSON");
}

Test(signal_parse, unknown_variant_rejected)
{
    parse_fails("\"Bogus\"", "unknown variant \"Bogus\"");
    parse_fails("{\"Bogus\":{}}", "unknown variant");
    parse_fails("\"reflect\"", "unknown variant"); /* names are case-sensitive */
    parse_fails("\"Reflect\\u0000\"", "unknown variant");
    parse_fails("{\"Hangup\":{\"reason\":\"Angry\"}}", "Hangup.reason: unknown variant \"Angry\"");
    parse_fails("{\"DirectCallAnswer\":{\"call_id\":\"c\",\"accept_mode\":\"Maybe\"}}",
                "accept_mode");
    parse_fails("{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus99k\","
                "\"fec_ratio\":0.1,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
                "QualityDirective.recommended_profile.codec: unknown variant");
    parse_fails("{\"QualityDirective\":{\"recommended_profile\":{\"codec\":0,"
                "\"fec_ratio\":0.1,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
                "codec");
}

Test(signal_parse, field_less_enum_in_object_form)
{
    struct wzp_signal s;
    parse_ok("{\"Hangup\":{\"reason\":{\"Timeout\":null}}}", &s);
    cr_expect_eq(s.u.hangup.reason, WZP_HANGUP_TIMEOUT);
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"Hangup\":{\"reason\":\"Timeout\"}}");
    free(out);
    parse_fails("{\"Hangup\":{\"reason\":{\"Timeout\":{}}}}", "Hangup.reason");
}

Test(signal_parse, truncated_json_rejected)
{
    for (size_t n = 0; n < strlen(call_offer_5_3); n++) {
        struct wzp_signal s;
        int rv = wzp_signal_parse((const uint8_t *)call_offer_5_3, n, &s, errbuf, sizeof(errbuf));
        cr_assert_eq(rv, WZP_EINVAL, "prefix of %zu bytes accepted", n);
        cr_assert(is_zeroed(&s));
    }
    parse_fails("\"Reflect", "invalid JSON");
    parse_fails("", "invalid JSON");
}

Test(signal_parse, missing_and_mistyped_fields)
{
    parse_fails("{\"IceCandidate\":{}}", "IceCandidate.candidate: missing field");
    parse_fails("{\"IceCandidate\":{\"candidate\":null}}", "expected string, got null");
    parse_fails("{\"IceCandidate\":{\"candidate\":1}}", "expected string, got integer");
    parse_fails("{\"IceCandidate\":[\"c\"]}", "IceCandidate: expected object, got array");
    parse_fails("{\"RouteResponse\":{\"fingerprint\":\"f\",\"found\":1,\"relay_chain\":[]}}",
                "RouteResponse.found: expected bool");
    parse_fails("{\"PresenceUpdate\":{\"fingerprints\":null,\"relay_addr\":\"a\"}}",
                "PresenceUpdate.fingerprints");
    parse_fails("{\"PresenceUpdate\":{\"relay_addr\":\"a\"}}",
                "PresenceUpdate.fingerprints: missing field");
    parse_fails("{\"PresenceUpdate\":{\"fingerprints\":[\"a\",2],\"relay_addr\":\"a\"}}",
                "PresenceUpdate.fingerprints[1]: expected string");
    parse_fails("{\"CallOffer\":{\"identity_pub\":" KEY_1 ",\"ephemeral_pub\":" KEY_2
                ",\"signature\":[],\"supported_profiles\":[" P_GOOD ",{\"codec\":\"Opus6k\","
                "\"fec_ratio\":\"x\",\"frame_duration_ms\":40,\"frames_per_block\":10}]}}",
                "CallOffer.supported_profiles[1].fec_ratio: expected number, got string");
    parse_fails("{\"CallOffer\":{\"identity_pub\":" KEY_1 ",\"ephemeral_pub\":" KEY_2
                ",\"signature\":[],\"supported_profiles\":[{\"codec\":\"Opus6k\","
                "\"fec_ratio\":0.5,\"frame_duration_ms\":40}]}}",
                "CallOffer.supported_profiles[0].frames_per_block: missing field");
    parse_fails("{\"GlobalRoomActive\":{\"room\":\"r\",\"participants\":[{\"alias\":\"a\"}]}}",
                "GlobalRoomActive.participants[0].fingerprint: missing field");
    parse_fails("{\"GlobalRoomActive\":{\"room\":\"r\",\"participants\":null}}", "participants");
}

Test(signal_parse, duplicate_field_rejected)
{
    parse_fails("{\"Ping\":{\"timestamp_ms\":1,\"timestamp_ms\":2}}", "invalid JSON");
}

Test(signal_parse, embedded_nul_rejected)
{
    parse_fails("{\"AuthToken\":{\"token\":\"a\\u0000b\"}}", "AuthToken.token: string contains");
    parse_fails("{\"PresenceUpdate\":{\"fingerprints\":[\"\\u0000\"],\"relay_addr\":\"a\"}}",
                "PresenceUpdate.fingerprints[0]");
}

Test(signal_parse, invalid_unicode_rejected)
{
    parse_fails("{\"AuthToken\":{\"token\":\"\\ud800\"}}", "invalid JSON");
    parse_fails("{\"AuthToken\":{\"token\":\"\xff\"}}", "invalid JSON");
}

Test(signal_parse, f32_accepts_integers_and_long_decimals)
{
    struct wzp_signal s;
    parse_ok("{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus24k\","
             "\"fec_ratio\":0.20000000298023224,\"frame_duration_ms\":20,\"frames_per_block\":5}"
             "}}",
             &s);
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"QualityDirective\":{\"recommended_profile\":" P_GOOD "}}");
    free(out);
    wzp_signal_clear(&s);

    parse_ok("{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Codec2_1200\","
             "\"fec_ratio\":1,\"frame_duration_ms\":40,\"frames_per_block\":8}}}",
             &s);
    out = encode(&s);
    cr_expect_str_eq(out, "{\"QualityDirective\":{\"recommended_profile\":" P_CATASTROPHIC "}}");
    free(out);
    wzp_signal_clear(&s);

    parse_fails("{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus24k\","
                "\"fec_ratio\":1e39,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
                "fec_ratio");
}

/* The fec_ratio serde reads from a QualityDirective carrying text, re-encoded. */
static void f32_round_trip(const char *text, const char *want)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus24k\","
             "\"fec_ratio\":%s,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
             text);
    struct wzp_signal s;
    parse_ok(json, &s);
    char *out = encode(&s);
    char exp[256];
    snprintf(exp, sizeof exp,
             "{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus24k\","
             "\"fec_ratio\":%s,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
             want);
    cr_expect_str_eq(out, exp, "%s", text);
    free(out);
    wzp_signal_clear(&s);
}

Test(signal_parse, f32_range_is_what_rounds_to_a_finite_float)
{
    f32_round_trip("3.4028235e+38", "3.4028235e+38"); /* serde's f32::MAX, above FLT_MAX */
    f32_round_trip("-3.4028235e+38", "-3.4028235e+38");
    f32_round_trip("3.40282356e38", "3.4028235e+38"); /* just below the midpoint */
    f32_round_trip("1e+26", "1e+26");
    f32_round_trip("1e26", "1e+26");
    f32_round_trip("1E-7", "1e-7");
    /* a 19-digit decimal at a rounding boundary: rounded exactly (serde: 60152.105) */
    f32_round_trip("6.015210742187500000e+4", "60152.11");
    parse_fails("{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus24k\","
                "\"fec_ratio\":3.4028236e38,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
                "number out of f32 range"); /* past the midpoint: serde's infinity */
}

Test(signal_parse, finite_floats_survive_encode_and_parse)
{
    /* Random bit patterns (fixed seed): every finite float comes back bit for bit. */
    uint32_t x = 0x12345678;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        float f;
        memcpy(&f, &x, sizeof f);
        if (!isfinite(f))
            continue;
        struct wzp_signal s = {.type = WZP_SIG_QUALITY_DIRECTIVE};
        s.u.quality_directive.recommended_profile.fec_ratio = f;
        char *out = encode(&s);
        struct wzp_signal back;
        parse_ok(out, &back);
        float g = back.u.quality_directive.recommended_profile.fec_ratio;
        cr_assert_eq(memcmp(&f, &g, sizeof f), 0, "%a became %a via %s", (double)f, (double)g, out);
        free(out);
        wzp_signal_clear(&back);
    }
}

Test(signal_parse, negative_zero_is_a_float_as_in_serde)
{
    f32_round_trip("-0", "-0.0");
    f32_round_trip("-0.0", "-0.0");
    f32_round_trip("-0e3", "-0.0");
    f32_round_trip("0", "0.0");
    parse_fails("{\"Ping\":{\"timestamp_ms\":-0}}", "expected integer");
    parse_fails("{\"Ping\":{\"timestamp_ms\":-0 }}", "expected integer");
    struct wzp_signal s;
    parse_ok("{\"Ping\":{\"timestamp_ms\":0}}", &s);
    wzp_signal_clear(&s);
    /* inside strings nothing changes, escaped quotes included */
    parse_ok("{\"AuthToken\":{\"token\":\"a\\\"-0,-0\"}}", &s);
    cr_expect_str_eq(s.u.auth_token.token, "a\"-0,-0");
    wzp_signal_clear(&s);
}

Test(signal_parse, error_buffer_optional)
{
    struct wzp_signal s;
    cr_expect_eq(wzp_signal_parse((const uint8_t *)"\"Bogus\"", 7, &s, NULL, 0), WZP_EINVAL);
    char tiny[4] = "zzz";
    cr_expect_eq(wzp_signal_parse((const uint8_t *)"\"Bogus\"", 7, &s, tiny, sizeof(tiny)),
                 WZP_EINVAL);
    cr_expect_eq(strlen(tiny), 3); /* truncated, still terminated */
    cr_expect_eq(wzp_signal_parse((const uint8_t *)"\"Hold\"", 6, &s, tiny, sizeof(tiny)), WZP_OK);
    cr_expect_str_eq(tiny, "");
}

/* ---------------------------------------------------------------------------------- */
/* Optional / default fields                                                           */

Test(signal_options, by_value_options)
{
    struct wzp_signal s;
    const char *json = "{\"DirectCallAnswer\":{\"call_id\":\"c\",\"accept_mode\":\"AcceptGeneric\","
                       "\"signature\":[],\"chosen_profile\":" P_DEGRADED "}}";
    parse_ok(json, &s);
    cr_expect(s.u.direct_call_answer.has_signature);
    cr_expect_eq(s.u.direct_call_answer.signature.len, 0);
    cr_expect(s.u.direct_call_answer.has_chosen_profile);
    cr_expect_not(s.u.direct_call_answer.has_identity_pub);
    cr_expect_eq(s.u.direct_call_answer.accept_mode, WZP_ACCEPT_GENERIC);
    char *out = encode(&s);
    cr_expect_str_eq(out, json); /* Some(vec![]) is kept, None is omitted */
    free(out);
    wzp_signal_clear(&s);

    parse_ok("{\"DirectCallAnswer\":{\"call_id\":\"c\",\"accept_mode\":\"Reject\","
             "\"identity_pub\":null,\"callee_build_version\":null,\"callee_local_addrs\":[]}}",
             &s);
    cr_expect_not(s.u.direct_call_answer.has_identity_pub);
    out = encode(&s);
    cr_expect_str_eq(out, "{\"DirectCallAnswer\":{\"call_id\":\"c\",\"accept_mode\":\"Reject\"}}");
    free(out);
    wzp_signal_clear(&s);
}

Test(signal_options, null_emitted_for_plain_options)
{
    struct wzp_signal s = {.type = WZP_SIG_TRANSFER};
    s.u.transfer.target_fingerprint = "fp";
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"Transfer\":{\"target_fingerprint\":\"fp\",\"relay_addr\":null}}");
    free(out);

    struct wzp_signal r = {.type = WZP_SIG_REGISTER_PRESENCE};
    out = encode(&r);
    cr_expect_str_eq(out, "{\"RegisterPresence\":{\"identity_pub\":" KEY_0
                          ",\"signature\":[],\"alias\":null}}");
    free(out);

    struct wzp_signal g = {.type = WZP_SIG_GLOBAL_ROOM_ACTIVE};
    g.u.global_room_active.room = "podcast";
    out = encode(&g);
    cr_expect_str_eq(out, "{\"GlobalRoomActive\":{\"room\":\"podcast\",\"participants\":[]}}");
    free(out);

    struct wzp_signal m = {.type = WZP_SIG_MEDIA_PATH_REPORT};
    m.u.media_path_report.call_id = "c";
    out = encode(&m);
    cr_expect_str_eq(out, "{\"MediaPathReport\":{\"call_id\":\"c\",\"direct_ok\":false,"
                          "\"race_winner\":\"\"}}");
    free(out);
}

Test(signal_options, missing_options_parse_as_none)
{
    struct wzp_signal s;
    parse_ok("{\"CallOffer\":{\"identity_pub\":" KEY_1 ",\"ephemeral_pub\":" KEY_2
             ",\"signature\":[],\"supported_profiles\":[]}}",
             &s);
    cr_expect_null(s.u.call_offer.alias);
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"CallOffer\":{\"identity_pub\":" KEY_1 ",\"ephemeral_pub\":" KEY_2
                          ",\"signature\":[],\"supported_profiles\":[],\"alias\":null}}");
    free(out);
    wzp_signal_clear(&s);

    parse_ok("{\"GlobalRoomActive\":{\"room\":\"r\"}}", &s);
    cr_expect_eq(s.u.global_room_active.participants.count, 0);
    wzp_signal_clear(&s);
}

/* ---------------------------------------------------------------------------------- */
/* Nesting                                                                             */

/* `levels` SignalMessages: levels-1 FederatedSignalForward around a CallRinging. */
static char *nested(int levels)
{
    struct wzp_buf b = WZP_BUF_INIT;
    for (int i = 1; i < levels; i++)
        wzp_buf_append_str(&b, "{\"FederatedSignalForward\":{\"inner\":");
    wzp_buf_append_str(&b, "{\"CallRinging\":{\"call_id\":\"cid\"}}");
    for (int i = 1; i < levels; i++)
        wzp_buf_printf(&b, ",\"origin_relay_fp\":\"r%d\"}}", i);
    wzp_buf_append(&b, "", 1);
    return (char *)b.data;
}

Test(signal_nesting, four_levels_round_trip)
{
    char *json = nested(4);
    expect_roundtrip(json);
    struct wzp_signal s;
    parse_ok(json, &s);
    const struct wzp_signal *p = &s;
    for (int i = 1; i < 4; i++) {
        cr_assert_eq(p->type, WZP_SIG_FEDERATED_SIGNAL_FORWARD);
        p = p->u.federated_signal_forward.inner;
    }
    cr_expect_eq(p->type, WZP_SIG_CALL_RINGING);
    wzp_signal_clear(&s);
    free(json);
}

Test(signal_nesting, deeper_rejected)
{
    char *json = nested(5);
    parse_fails(json, "nested more than 4 deep");
    free(json);
    json = nested(200);
    parse_fails(json, "nested");
    free(json);
}

Test(signal_nesting, inner_errors_carry_the_path)
{
    parse_fails("{\"FederatedSignalForward\":{\"inner\":{\"CallRinging\":{}},"
                "\"origin_relay_fp\":\"x\"}}",
                "FederatedSignalForward.inner.CallRinging.call_id: missing field");
    parse_fails("{\"FederatedSignalForward\":{\"inner\":\"Reflect\"}}",
                "FederatedSignalForward.origin_relay_fp: missing field");
    parse_fails("{\"FederatedSignalForward\":{\"inner\":null,\"origin_relay_fp\":\"x\"}}",
                "FederatedSignalForward.inner");
}

Test(signal_nesting, encode_depth_bounded)
{
    struct wzp_signal chain[5];
    memset(chain, 0, sizeof(chain));
    chain[4].type = WZP_SIG_REFLECT;
    for (int i = 0; i < 4; i++) {
        chain[i].type = WZP_SIG_FEDERATED_SIGNAL_FORWARD;
        chain[i].u.federated_signal_forward.inner = &chain[i + 1];
        chain[i].u.federated_signal_forward.origin_relay_fp = "r";
    }
    expect_encode_rejected(&chain[0]); /* 5 levels */
    char *out = encode(&chain[1]);     /* 4 levels */
    cr_expect_str_eq(out, "{\"FederatedSignalForward\":{\"inner\":{\"FederatedSignalForward\":{"
                          "\"inner\":{\"FederatedSignalForward\":{\"inner\":\"Reflect\","
                          "\"origin_relay_fp\":\"r\"}},\"origin_relay_fp\":\"r\"}},"
                          "\"origin_relay_fp\":\"r\"}}");
    free(out);
    chain[0].u.federated_signal_forward.inner = &chain[0]; /* a cycle */
    expect_encode_rejected(&chain[0]);
}

/* ---------------------------------------------------------------------------------- */
/* Encoding details                                                                    */

Test(signal_encode, string_escaping)
{
    char token[64], *p = token;
    for (int c = 1; c < 0x20; c++)
        *p++ = (char)c;
    strcpy(p, "\"\\/\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    struct wzp_signal s = {.type = WZP_SIG_AUTH_TOKEN};
    s.u.auth_token.token = token;
    char *out = encode(&s);
    cr_expect_str_eq(out, "{\"AuthToken\":{\"token\":\""
                          "\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
                          "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
                          "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"
                          "\\\"\\\\/\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}");
    /* and it reads back to the same bytes */
    struct wzp_signal back;
    parse_ok(out, &back);
    cr_expect_str_eq(back.u.auth_token.token, token);
    wzp_signal_clear(&back);
    free(out);
}

Test(signal_encode, invalid_utf8_rejected)
{
    const char *bad[] = {"\xff",     "a\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "\xe2\x82", "\x80"};
    for (size_t i = 0; i < WZP_ARRAY_LEN(bad); i++) {
        struct wzp_signal s = {.type = WZP_SIG_ICE_CANDIDATE};
        s.u.ice_candidate.candidate = (char *)bad[i];
        expect_encode_rejected(&s);
    }
    struct wzp_signal ok = {.type = WZP_SIG_ICE_CANDIDATE};
    ok.u.ice_candidate.candidate = "\xf4\x8f\xbf\xbf\xed\x9f\xbf"; /* U+10FFFF, U+D7FF */
    char *out = encode(&ok);
    cr_expect_str_eq(out, "{\"IceCandidate\":{\"candidate\":\"\xf4\x8f\xbf\xbf\xed\x9f\xbf\"}}");
    free(out);
}

Test(signal_encode, unencodable_structs_rejected)
{
    struct wzp_signal s = {0};
    expect_encode_rejected(&s); /* type 0 */
    s.type = WZP_SIG_TYPE_END;
    expect_encode_rejected(&s);

    struct wzp_signal ice = {.type = WZP_SIG_ICE_CANDIDATE}; /* required string NULL */
    expect_encode_rejected(&ice);

    struct wzp_signal fsf = {.type = WZP_SIG_FEDERATED_SIGNAL_FORWARD};
    fsf.u.federated_signal_forward.origin_relay_fp = "x"; /* inner NULL */
    expect_encode_rejected(&fsf);

    struct wzp_signal rk = {.type = WZP_SIG_REKEY};
    rk.u.rekey.signature.len = 3; /* data NULL */
    expect_encode_rejected(&rk);

    struct wzp_signal pu = {.type = WZP_SIG_PRESENCE_UPDATE};
    char *items[] = {"a", NULL};
    pu.u.presence_update.relay_addr = "r";
    pu.u.presence_update.fingerprints = (struct wzp_strings){items, 2};
    expect_encode_rejected(&pu);

    struct wzp_signal qd = {.type = WZP_SIG_QUALITY_DIRECTIVE};
    qd.u.quality_directive.recommended_profile = WZP_PROFILE_GOOD;
    qd.u.quality_directive.recommended_profile.codec = WZP_CODEC_COUNT;
    expect_encode_rejected(&qd);
    qd.u.quality_directive.recommended_profile = WZP_PROFILE_GOOD;
    qd.u.quality_directive.recommended_profile.fec_ratio = NAN;
    expect_encode_rejected(&qd);
    qd.u.quality_directive.recommended_profile.fec_ratio = INFINITY;
    expect_encode_rejected(&qd);

    struct wzp_signal h = {.type = WZP_SIG_HANGUP};
    h.u.hangup.reason = (enum wzp_hangup_reason)5;
    expect_encode_rejected(&h);
}

Test(signal_encode, appends_to_buffer)
{
    struct wzp_signal a = {.type = WZP_SIG_MUTE}, b = {.type = WZP_SIG_PING};
    b.u.ping.timestamp_ms = UINT64_MAX;
    struct wzp_buf out = WZP_BUF_INIT;
    cr_assert_eq(wzp_signal_encode(&a, &out), WZP_OK);
    cr_assert_eq(wzp_signal_encode(&b, &out), WZP_OK);
    cr_assert_eq(out.len, strlen("\"Mute\"{\"Ping\":{\"timestamp_ms\":18446744073709551615}}"));
    cr_expect_arr_eq(out.data, "\"Mute\"{\"Ping\":{\"timestamp_ms\":18446744073709551615}}",
                     out.len);
    wzp_buf_free(&out);
}

static void expect_f32(float f, const char *want)
{
    struct wzp_signal s = {.type = WZP_SIG_QUALITY_DIRECTIVE};
    s.u.quality_directive.recommended_profile = WZP_PROFILE_GOOD;
    s.u.quality_directive.recommended_profile.fec_ratio = f;
    char *out = encode(&s);
    char exp[256];
    snprintf(exp, sizeof(exp),
             "{\"QualityDirective\":{\"recommended_profile\":{\"codec\":\"Opus24k\","
             "\"fec_ratio\":%s,\"frame_duration_ms\":20,\"frames_per_block\":5}}}",
             want);
    cr_expect_str_eq(out, exp, "fec_ratio %a", (double)f);
    free(out);
}

/* Expected strings are what serde_json 1.0.149 (the version upstream pins) prints: ryu's
 * shortest digits, and since 1.0.147 a "+" in positive exponents. */
Test(signal_encode, f32_like_ryu)
{
    expect_f32(0.1f, "0.1");
    expect_f32(0.2f, "0.2");
    expect_f32(0.5f, "0.5");
    expect_f32(1.0f, "1.0");
    expect_f32(2.0f, "2.0");
    expect_f32(0.0f, "0.0");
    expect_f32(-0.0f, "-0.0");
    expect_f32(-2.5f, "-2.5");
    expect_f32(100.0f, "100.0");
    expect_f32(16777216.0f, "16777216.0");
    expect_f32(1e10f, "10000000000.0");
    expect_f32(1e12f, "1000000000000.0");
    expect_f32(9999999e6f, "9999999000000.0"); /* last below 1e13 */
    expect_f32(1e13f, "1e+13");
    expect_f32(123456.79f, "123456.79");
    expect_f32(0.001f, "0.001");
    expect_f32(1e-6f, "0.000001");
    expect_f32(1e-7f, "1e-7");
    expect_f32(1.5e-7f, "1.5e-7");
    expect_f32(FLT_MAX, "3.4028235e+38");
    expect_f32(-FLT_MAX, "-3.4028235e+38");
    expect_f32(FLT_MIN, "1.1754944e-38");
    expect_f32(0x1p-149f, "1e-45");
    expect_f32(0x1p-12f, "0.00024414062"); /* a tie: rounds half to even */
    expect_f32(1048576.25f, "1048576.2");  /* likewise */
    expect_f32(0x1p-96f, "1.2621775e-29"); /* powers of two: narrower interval below */
    expect_f32(0x1p87f, "1.5474251e+26");
    expect_f32(0x1p90f, "1.2379401e+27");
    expect_f32(1e26f, "1e+26");
}

/* ---------------------------------------------------------------------------------- */
/* Framing                                                                             */

Test(signal_frame, reflect_frame_bytes)
{
    struct wzp_signal s = {.type = WZP_SIG_REFLECT};
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_signal_encode_frame(&s, &b), WZP_OK);
    expect_hex(b.data, b.len, "00000009225265666c65637422");
    wzp_buf_free(&b);
}

Test(signal_frame, ping_frame_bytes)
{
    struct wzp_signal s;
    parse_ok("{\"Ping\":{\"timestamp_ms\":1712345678901}}", &s);
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_buf_append(&b, "AB", 2), WZP_OK); /* appends after existing bytes */
    cr_assert_eq(wzp_signal_encode_frame(&s, &b), WZP_OK);
    cr_assert_eq(b.len, 2 + 4 + 39);
    expect_hex(b.data + 2, 10, "000000277b2250696e67");
    expect_hex(b.data + b.len - 2, 2, "7d7d");

    const uint8_t *body;
    size_t body_len;
    cr_assert_eq(wzp_signal_frame_peek(b.data + 2, b.len - 2, &body, &body_len), WZP_OK);
    cr_expect_eq(body, b.data + 6);
    cr_expect_eq(body_len, 39);
    cr_expect_arr_eq(body, "{\"Ping\":{\"timestamp_ms\":1712345678901}}", 39);
    wzp_buf_free(&b);
}

Test(signal_frame, encode_failure_leaves_buffer_untouched)
{
    struct wzp_signal s = {.type = WZP_SIG_ICE_CANDIDATE}; /* candidate NULL */
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_buf_append(&b, "AB", 2), WZP_OK);
    cr_expect_eq(wzp_signal_encode_frame(&s, &b), WZP_EINVAL);
    cr_expect_eq(b.len, 2);
    wzp_buf_free(&b);
}

Test(signal_frame, peek_incomplete_complete_oversize)
{
    const uint8_t frame[] = {0, 0, 0, 9, '"', 'R', 'e', 'f', 'l', 'e', 'c', 't', '"', 0xee};
    const uint8_t *body = NULL;
    size_t body_len = 0;
    for (size_t n = 0; n < 13; n++)
        cr_expect_eq(wzp_signal_frame_peek(frame, n, &body, &body_len), WZP_EAGAIN, "n=%zu", n);
    cr_assert_eq(wzp_signal_frame_peek(frame, 13, &body, &body_len), WZP_OK);
    cr_expect_eq(body, frame + 4);
    cr_expect_eq(body_len, 9);
    body = NULL;
    cr_assert_eq(wzp_signal_frame_peek(frame, sizeof(frame), &body, &body_len), WZP_OK);
    cr_expect_eq(body, frame + 4); /* trailing bytes are not part of the frame */
    cr_expect_eq(body_len, 9);

    struct wzp_signal s;
    cr_assert_eq(wzp_signal_parse(body, body_len, &s, errbuf, sizeof(errbuf)), WZP_OK);
    cr_expect_eq(s.type, WZP_SIG_REFLECT);

    const uint8_t empty[] = {0, 0, 0, 0};
    cr_expect_eq(wzp_signal_frame_peek(empty, 4, &body, &body_len), WZP_OK);
    cr_expect_eq(body_len, 0);

    /* The announced length is checked as soon as the 4 header bytes are in. */
    const uint8_t over[] = {0x00, 0x10, 0x00, 0x01}; /* 1 MiB + 1 */
    cr_expect_eq(wzp_signal_frame_peek(over, 3, &body, &body_len), WZP_EAGAIN);
    cr_expect_eq(wzp_signal_frame_peek(over, 4, &body, &body_len), WZP_ETOOBIG);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    cr_expect_eq(wzp_signal_frame_peek(huge, 4, &body, &body_len), WZP_ETOOBIG);
    const uint8_t max[] = {0x00, 0x10, 0x00, 0x00}; /* exactly 1 MiB: allowed, incomplete */
    cr_expect_eq(wzp_signal_frame_peek(max, 4, &body, &body_len), WZP_EAGAIN);
}

Test(signal_frame, oversize_body_not_framed)
{
    size_t n = WZP_SIGNAL_MAX_BYTES;
    char *big = malloc(n + 1);
    cr_assert_not_null(big);
    memset(big, 'a', n);
    big[n] = '\0';
    struct wzp_signal s = {.type = WZP_SIG_AUTH_TOKEN};
    s.u.auth_token.token = big;
    struct wzp_buf b = WZP_BUF_INIT;
    cr_expect_eq(wzp_signal_encode_frame(&s, &b), WZP_ETOOBIG);
    cr_expect_eq(b.len, 0);
    wzp_buf_free(&b);
    free(big);
}

/* ---------------------------------------------------------------------------------- */
/* Housekeeping                                                                        */

Test(signal_misc, clear_is_idempotent)
{
    struct wzp_signal s = {0};
    wzp_signal_clear(&s);
    cr_expect(is_zeroed(&s));
    parse_ok(spec_examples[0], &s);
    wzp_signal_clear(&s);
    cr_expect(is_zeroed(&s));
    wzp_signal_clear(&s);
    cr_expect(is_zeroed(&s));
}

Test(signal_misc, type_names)
{
    cr_expect_str_eq(wzp_signal_type_name(WZP_SIG_CALL_OFFER), "CallOffer");
    cr_expect_str_eq(wzp_signal_type_name(WZP_SIG_LOSS_RECOVERY_UPDATE), "LossRecoveryUpdate");
    cr_expect_str_eq(wzp_signal_type_name(WZP_SIG_TRANSFER_ACK), "TransferAck");
    cr_expect_str_eq(wzp_signal_type_name(WZP_SIG_QUALITY_DIRECTIVE), "QualityDirective");
    cr_expect_null(wzp_signal_type_name(0));
    cr_expect_null(wzp_signal_type_name(WZP_SIG_TYPE_END));
    cr_expect_null(wzp_signal_type_name((enum wzp_signal_type) - 1));

    /* Every type has a distinct name that the parser maps back to the same type. */
    for (int t = 1; t < WZP_SIG_TYPE_END; t++) {
        const char *name = wzp_signal_type_name((enum wzp_signal_type)t);
        cr_assert_not_null(name, "type %d", t);
        char json[64];
        snprintf(json, sizeof(json), "{\"%s\":{}}", name);
        struct wzp_signal s;
        int rv = parse(json, &s);
        if (rv == WZP_OK)
            cr_expect_eq((int)s.type, t);
        else
            cr_expect_null(strstr(errbuf, "unknown variant"), "%s: %s", name, errbuf);
        wzp_signal_clear(&s);
    }
}
