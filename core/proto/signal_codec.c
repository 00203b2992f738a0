/*
 * signal_codec.c - WZP signal messages: framing and a serde-compatible JSON codec for every
 * SignalMessage variant (doc/PROTOCOL.md, "Signals").
 *
 * Each variant is described once, as a table of fields: JSON name, value kind, serde's
 * Option/default rule, and the offset of the value inside struct wzp_signal. Three
 * walkers share the tables:
 *   - the parser, on top of jansson, which checks types and presence the way serde does;
 *   - a compact JSON emitter that reproduces serde_json's bytes exactly (declaration key
 *     order, serde's string escapes, the f32 format of serde_json 1.0.149) - jansson's
 *     dump differs on both escapes and floats, so it is not used;
 *   - wzp_signal_clear(), which frees what the parser allocated.
 *
 * Known, deliberate differences from serde_json (none of them reachable by a real peer):
 *   - strings containing U+0000 are rejected in fields we keep (we hand out C strings);
 *   - u64 values above 2^63-1 are rejected: jansson's json_int_t is long long and its
 *     loader fails on larger integers ("too big integer");
 *   - a duplicated key is rejected even when serde would ignore it (unknown keys);
 *   - structs written as JSON arrays of field values (serde's "seq" form) are rejected;
 *   - FederatedSignalForward nesting is capped at MAX_NESTING messages (serde: 128);
 *   - an f32 beyond the float range is rejected (serde turns it into infinity, which it
 *     writes back as null);
 *   - decimals of 17+ digits at an f32 rounding boundary are rounded exactly (serde_json's
 *     parser can be one float off there);
 *   - values under unknown keys are validated by jansson (serde skips them unread).
 * doc/PROTOCOL.md, "Signals", keeps the same list.
 */
#include "signal_codec.h"

#include "common.h"

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Messages, counting the outermost one, that FederatedSignalForward may nest. */
#define MAX_NESTING 4

/* ---------------------------------------------------------------------------------- */
/* Descriptor tables                                                                   */
/* ---------------------------------------------------------------------------------- */

enum kind {
    K_STR,          /* String                   -> char *            */
    K_BOOL,         /* bool                     -> bool              */
    K_U8,           /* u8                       -> uint8_t           */
    K_U32,          /* u32                      -> uint32_t          */
    K_U64,          /* u64                      -> uint64_t          */
    K_F32,          /* f32                      -> float             */
    K_KEY32,        /* [u8; 32]                 -> uint8_t[32]       */
    K_BYTES,        /* Vec<u8>                  -> struct wzp_bytes  */
    K_STRS,         /* Vec<String>              -> struct wzp_strings */
    K_CODEC,        /* CodecId                  -> enum wzp_codec    */
    K_REASON,       /* HangupReason             -> enum wzp_hangup_reason */
    K_ACCEPT,       /* CallAcceptMode           -> enum wzp_accept_mode */
    K_PROFILE,      /* QualityProfile           -> struct wzp_quality_profile */
    K_REPORT,       /* QualityReport            -> struct wzp_quality_report */
    K_PROFILES,     /* Vec<QualityProfile>      -> struct wzp_profiles */
    K_PARTICIPANTS, /* Vec<RoomParticipant>     -> struct wzp_participants */
    K_SIGNAL,       /* Box<SignalMessage>       -> struct wzp_signal * */
};

enum rule {
    R_REQ,       /* required; null rejected */
    R_OPT,       /* Option<T>: missing/null -> None; None emitted as null */
    R_OPT_SKIP,  /* Option<T> with skip_serializing_if: None omitted */
    R_DFLT,      /* #[serde(default)]: missing -> default; always emitted */
    R_DFLT_SKIP, /* #[serde(default, skip_serializing_if = "Vec::is_empty")] */
};

struct field {
    const char *name; /* JSON key */
    enum kind kind;
    enum rule rule;
    size_t off; /* offset of the value from the struct base */
    long has;   /* offset of the bool "is Some" flag for by-value Options, or NO_FLAG */
};

#define NO_FLAG (-1L)

struct variant {
    const char *name;
    const struct field *fields; /* NULL: unit variant, a bare JSON string */
    size_t nfields;
};

/* A field of signal variant v, named like its struct member. */
#define SF(v, m, kind, rule)                                                                       \
    {                                                                                              \
#m, kind, rule, offsetof(struct wzp_signal, u.v.m), NO_FLAG                                \
    }
/* An Option<T> by value, with its has_<m> presence flag; always skip_serializing_if. */
#define SF_HAS(v, m, kind)                                                                         \
    {                                                                                              \
#m, kind, R_OPT_SKIP, offsetof(struct wzp_signal, u.v.m),                                  \
            (long)offsetof(struct wzp_signal, u.v.has_##m)                                         \
    }
/* A field of a shared struct type. */
#define XF(type, m, kind, rule)                                                                    \
    {                                                                                              \
#m, kind, rule, offsetof(type, m), NO_FLAG                                                 \
    }

#define VARIANT(name, f)                                                                           \
    {                                                                                              \
        name, f, WZP_ARRAY_LEN(f)                                                                  \
    }
#define UNIT(name)                                                                                 \
    {                                                                                              \
        name, NULL, 0                                                                              \
    }

static const struct field profile_fields[] = {
    XF(struct wzp_quality_profile, codec, K_CODEC, R_REQ),
    XF(struct wzp_quality_profile, fec_ratio, K_F32, R_REQ),
    XF(struct wzp_quality_profile, frame_duration_ms, K_U8, R_REQ),
    XF(struct wzp_quality_profile, frames_per_block, K_U8, R_REQ),
};

static const struct field report_fields[] = {
    XF(struct wzp_quality_report, loss_pct, K_U8, R_REQ),
    XF(struct wzp_quality_report, rtt_4ms, K_U8, R_REQ),
    XF(struct wzp_quality_report, jitter_ms, K_U8, R_REQ),
    XF(struct wzp_quality_report, bitrate_cap_kbps, K_U8, R_REQ),
};

static const struct field participant_fields[] = {
    XF(struct wzp_room_participant, fingerprint, K_STR, R_REQ),
    XF(struct wzp_room_participant, alias, K_STR, R_OPT),
    XF(struct wzp_room_participant, relay_label, K_STR, R_OPT),
};

static const struct field call_offer_fields[] = {
    SF(call_offer, identity_pub, K_KEY32, R_REQ),
    SF(call_offer, ephemeral_pub, K_KEY32, R_REQ),
    SF(call_offer, signature, K_BYTES, R_REQ),
    SF(call_offer, supported_profiles, K_PROFILES, R_REQ),
    SF(call_offer, alias, K_STR, R_OPT),
};

static const struct field call_answer_fields[] = {
    SF(call_answer, identity_pub, K_KEY32, R_REQ),
    SF(call_answer, ephemeral_pub, K_KEY32, R_REQ),
    SF(call_answer, signature, K_BYTES, R_REQ),
    SF(call_answer, chosen_profile, K_PROFILE, R_REQ),
};

static const struct field ice_candidate_fields[] = {
    SF(ice_candidate, candidate, K_STR, R_REQ),
};

static const struct field rekey_fields[] = {
    SF(rekey, new_ephemeral_pub, K_KEY32, R_REQ),
    SF(rekey, signature, K_BYTES, R_REQ),
};

static const struct field quality_update_fields[] = {
    SF(quality_update, report, K_REPORT, R_REQ),
    SF(quality_update, recommended_profile, K_PROFILE, R_REQ),
};

static const struct field loss_recovery_update_fields[] = {
    SF(loss_recovery_update, dred_reconstructions, K_U64, R_DFLT),
    SF(loss_recovery_update, classical_plc_invocations, K_U64, R_DFLT),
    SF(loss_recovery_update, frames_decoded, K_U64, R_DFLT),
};

static const struct field ping_fields[] = {
    SF(ping, timestamp_ms, K_U64, R_REQ),
};

static const struct field hangup_fields[] = {
    SF(hangup, reason, K_REASON, R_REQ),
    SF(hangup, call_id, K_STR, R_OPT_SKIP),
};

static const struct field auth_token_fields[] = {
    SF(auth_token, token, K_STR, R_REQ),
};

static const struct field transfer_fields[] = {
    SF(transfer, target_fingerprint, K_STR, R_REQ),
    SF(transfer, relay_addr, K_STR, R_OPT),
};

static const struct field presence_update_fields[] = {
    SF(presence_update, fingerprints, K_STRS, R_REQ),
    SF(presence_update, relay_addr, K_STR, R_REQ),
};

static const struct field route_query_fields[] = {
    SF(route_query, fingerprint, K_STR, R_REQ),
    SF(route_query, ttl, K_U8, R_REQ),
};

static const struct field route_response_fields[] = {
    SF(route_response, fingerprint, K_STR, R_REQ),
    SF(route_response, found, K_BOOL, R_REQ),
    SF(route_response, relay_chain, K_STRS, R_REQ),
};

static const struct field session_forward_fields[] = {
    SF(session_forward, session_id, K_STR, R_REQ),
    SF(session_forward, target_fingerprint, K_STR, R_REQ),
    SF(session_forward, source_relay, K_STR, R_REQ),
};

static const struct field session_forward_ack_fields[] = {
    SF(session_forward_ack, session_id, K_STR, R_REQ),
    SF(session_forward_ack, room_name, K_STR, R_REQ),
};

static const struct field room_update_fields[] = {
    SF(room_update, count, K_U32, R_REQ),
    SF(room_update, participants, K_PARTICIPANTS, R_REQ),
};

static const struct field federation_hello_fields[] = {
    SF(federation_hello, tls_fingerprint, K_STR, R_REQ),
};

static const struct field global_room_active_fields[] = {
    SF(global_room_active, room, K_STR, R_REQ),
    SF(global_room_active, participants, K_PARTICIPANTS, R_DFLT),
};

static const struct field global_room_inactive_fields[] = {
    SF(global_room_inactive, room, K_STR, R_REQ),
};

static const struct field register_presence_fields[] = {
    SF(register_presence, identity_pub, K_KEY32, R_REQ),
    SF(register_presence, signature, K_BYTES, R_REQ),
    SF(register_presence, alias, K_STR, R_OPT),
};

static const struct field register_presence_ack_fields[] = {
    SF(register_presence_ack, success, K_BOOL, R_REQ),
    SF(register_presence_ack, error, K_STR, R_OPT_SKIP),
    SF(register_presence_ack, relay_build, K_STR, R_OPT_SKIP),
};

static const struct field direct_call_offer_fields[] = {
    SF(direct_call_offer, caller_fingerprint, K_STR, R_REQ),
    SF(direct_call_offer, caller_alias, K_STR, R_OPT),
    SF(direct_call_offer, target_fingerprint, K_STR, R_REQ),
    SF(direct_call_offer, call_id, K_STR, R_REQ),
    SF(direct_call_offer, identity_pub, K_KEY32, R_REQ),
    SF(direct_call_offer, ephemeral_pub, K_KEY32, R_REQ),
    SF(direct_call_offer, signature, K_BYTES, R_REQ),
    SF(direct_call_offer, supported_profiles, K_PROFILES, R_REQ),
    SF(direct_call_offer, caller_reflexive_addr, K_STR, R_OPT_SKIP),
    SF(direct_call_offer, caller_local_addrs, K_STRS, R_DFLT_SKIP),
    SF(direct_call_offer, caller_build_version, K_STR, R_OPT_SKIP),
};

static const struct field direct_call_answer_fields[] = {
    SF(direct_call_answer, call_id, K_STR, R_REQ),
    SF(direct_call_answer, accept_mode, K_ACCEPT, R_REQ),
    SF_HAS(direct_call_answer, identity_pub, K_KEY32),
    SF_HAS(direct_call_answer, ephemeral_pub, K_KEY32),
    SF_HAS(direct_call_answer, signature, K_BYTES),
    SF_HAS(direct_call_answer, chosen_profile, K_PROFILE),
    SF(direct_call_answer, callee_reflexive_addr, K_STR, R_OPT_SKIP),
    SF(direct_call_answer, callee_local_addrs, K_STRS, R_DFLT_SKIP),
    SF(direct_call_answer, callee_build_version, K_STR, R_OPT_SKIP),
};

static const struct field call_setup_fields[] = {
    SF(call_setup, call_id, K_STR, R_REQ),
    SF(call_setup, room, K_STR, R_REQ),
    SF(call_setup, relay_addr, K_STR, R_REQ),
    SF(call_setup, peer_direct_addr, K_STR, R_OPT_SKIP),
    SF(call_setup, peer_local_addrs, K_STRS, R_DFLT_SKIP),
};

static const struct field call_ringing_fields[] = {
    SF(call_ringing, call_id, K_STR, R_REQ),
};

static const struct field reflect_response_fields[] = {
    SF(reflect_response, observed_addr, K_STR, R_REQ),
};

static const struct field media_path_report_fields[] = {
    SF(media_path_report, call_id, K_STR, R_REQ),
    SF(media_path_report, direct_ok, K_BOOL, R_REQ),
    SF(media_path_report, race_winner, K_STR, R_DFLT),
};

static const struct field federated_signal_forward_fields[] = {
    SF(federated_signal_forward, inner, K_SIGNAL, R_REQ),
    SF(federated_signal_forward, origin_relay_fp, K_STR, R_REQ),
};

static const struct field quality_directive_fields[] = {
    SF(quality_directive, recommended_profile, K_PROFILE, R_REQ),
    SF(quality_directive, reason, K_STR, R_OPT_SKIP),
};

static const struct variant variants[WZP_SIG_TYPE_END] = {
    [WZP_SIG_CALL_OFFER] = VARIANT("CallOffer", call_offer_fields),
    [WZP_SIG_CALL_ANSWER] = VARIANT("CallAnswer", call_answer_fields),
    [WZP_SIG_ICE_CANDIDATE] = VARIANT("IceCandidate", ice_candidate_fields),
    [WZP_SIG_REKEY] = VARIANT("Rekey", rekey_fields),
    [WZP_SIG_QUALITY_UPDATE] = VARIANT("QualityUpdate", quality_update_fields),
    [WZP_SIG_LOSS_RECOVERY_UPDATE] = VARIANT("LossRecoveryUpdate", loss_recovery_update_fields),
    [WZP_SIG_PING] = VARIANT("Ping", ping_fields),
    [WZP_SIG_PONG] = VARIANT("Pong", ping_fields),
    [WZP_SIG_HANGUP] = VARIANT("Hangup", hangup_fields),
    [WZP_SIG_AUTH_TOKEN] = VARIANT("AuthToken", auth_token_fields),
    [WZP_SIG_HOLD] = UNIT("Hold"),
    [WZP_SIG_UNHOLD] = UNIT("Unhold"),
    [WZP_SIG_MUTE] = UNIT("Mute"),
    [WZP_SIG_UNMUTE] = UNIT("Unmute"),
    [WZP_SIG_TRANSFER] = VARIANT("Transfer", transfer_fields),
    [WZP_SIG_TRANSFER_ACK] = UNIT("TransferAck"),
    [WZP_SIG_PRESENCE_UPDATE] = VARIANT("PresenceUpdate", presence_update_fields),
    [WZP_SIG_ROUTE_QUERY] = VARIANT("RouteQuery", route_query_fields),
    [WZP_SIG_ROUTE_RESPONSE] = VARIANT("RouteResponse", route_response_fields),
    [WZP_SIG_SESSION_FORWARD] = VARIANT("SessionForward", session_forward_fields),
    [WZP_SIG_SESSION_FORWARD_ACK] = VARIANT("SessionForwardAck", session_forward_ack_fields),
    [WZP_SIG_ROOM_UPDATE] = VARIANT("RoomUpdate", room_update_fields),
    [WZP_SIG_FEDERATION_HELLO] = VARIANT("FederationHello", federation_hello_fields),
    [WZP_SIG_GLOBAL_ROOM_ACTIVE] = VARIANT("GlobalRoomActive", global_room_active_fields),
    [WZP_SIG_GLOBAL_ROOM_INACTIVE] = VARIANT("GlobalRoomInactive", global_room_inactive_fields),
    [WZP_SIG_REGISTER_PRESENCE] = VARIANT("RegisterPresence", register_presence_fields),
    [WZP_SIG_REGISTER_PRESENCE_ACK] = VARIANT("RegisterPresenceAck", register_presence_ack_fields),
    [WZP_SIG_DIRECT_CALL_OFFER] = VARIANT("DirectCallOffer", direct_call_offer_fields),
    [WZP_SIG_DIRECT_CALL_ANSWER] = VARIANT("DirectCallAnswer", direct_call_answer_fields),
    [WZP_SIG_CALL_SETUP] = VARIANT("CallSetup", call_setup_fields),
    [WZP_SIG_CALL_RINGING] = VARIANT("CallRinging", call_ringing_fields),
    [WZP_SIG_REFLECT] = UNIT("Reflect"),
    [WZP_SIG_REFLECT_RESPONSE] = VARIANT("ReflectResponse", reflect_response_fields),
    [WZP_SIG_MEDIA_PATH_REPORT] = VARIANT("MediaPathReport", media_path_report_fields),
    [WZP_SIG_FEDERATED_SIGNAL_FORWARD] =
        VARIANT("FederatedSignalForward", federated_signal_forward_fields),
    [WZP_SIG_QUALITY_DIRECTIVE] = VARIANT("QualityDirective", quality_directive_fields),
};

const struct wzp_quality_profile WZP_PROFILE_GOOD = {WZP_CODEC_OPUS24K, 0.2f, 20, 5};
const struct wzp_quality_profile WZP_PROFILE_DEGRADED = {WZP_CODEC_OPUS6K, 0.5f, 40, 10};
const struct wzp_quality_profile WZP_PROFILE_CATASTROPHIC = {WZP_CODEC_CODEC2_1200, 1.0f, 40, 8};
const struct wzp_quality_profile WZP_PROFILE_STUDIO_32K = {WZP_CODEC_OPUS32K, 0.1f, 20, 5};
const struct wzp_quality_profile WZP_PROFILE_STUDIO_48K = {WZP_CODEC_OPUS48K, 0.1f, 20, 5};
const struct wzp_quality_profile WZP_PROFILE_STUDIO_64K = {WZP_CODEC_OPUS64K, 0.1f, 20, 5};

static const struct variant *variant_of(enum wzp_signal_type t)
{
    return (unsigned)t < WZP_SIG_TYPE_END && variants[t].name ? &variants[t] : NULL;
}

const char *wzp_signal_type_name(enum wzp_signal_type t)
{
    const struct variant *v = variant_of(t);
    return v ? v->name : NULL;
}

/* Field tables of the nested struct kinds. */
static const struct field *struct_fields(enum kind k, size_t *n)
{
    switch (k) {
    case K_PROFILE:
    case K_PROFILES:
        *n = WZP_ARRAY_LEN(profile_fields);
        return profile_fields;
    case K_REPORT:
        *n = WZP_ARRAY_LEN(report_fields);
        return report_fields;
    case K_PARTICIPANTS:
        *n = WZP_ARRAY_LEN(participant_fields);
        return participant_fields;
    default:
        *n = 0;
        return NULL;
    }
}

/* Field-less enums: serde name of value i, NULL past the last one. */
static const char *enum_name(enum kind k, unsigned i)
{
    static const char *const reasons[] = {"Normal", "Busy", "Declined", "Timeout", "Error"};
    static const char *const modes[] = {"Reject", "AcceptTrusted", "AcceptGeneric"};
    switch (k) {
    case K_CODEC:
        return wzp_codec_name((enum wzp_codec)i);
    case K_REASON:
        return i < WZP_ARRAY_LEN(reasons) ? reasons[i] : NULL;
    case K_ACCEPT:
        return i < WZP_ARRAY_LEN(modes) ? modes[i] : NULL;
    default:
        return NULL;
    }
}

static unsigned enum_load(enum kind k, const void *p)
{
    switch (k) {
    case K_CODEC:
        return (unsigned)*(const enum wzp_codec *)p;
    case K_REASON:
        return (unsigned)*(const enum wzp_hangup_reason *)p;
    default:
        return (unsigned)*(const enum wzp_accept_mode *)p;
    }
}

static void enum_store(enum kind k, void *p, unsigned v)
{
    switch (k) {
    case K_CODEC:
        *(enum wzp_codec *)p = (enum wzp_codec)v;
        break;
    case K_REASON:
        *(enum wzp_hangup_reason *)p = (enum wzp_hangup_reason)v;
        break;
    default:
        *(enum wzp_accept_mode *)p = (enum wzp_accept_mode)v;
        break;
    }
}

static void *at(void *base, size_t off)
{
    return (char *)base + off;
}

static const void *cat(const void *base, size_t off)
{
    return (const char *)base + off;
}

/* ---------------------------------------------------------------------------------- */
/* Freeing                                                                             */
/* ---------------------------------------------------------------------------------- */

static void clear_fields(void *base, const struct field *fields, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void *p = at(base, fields[i].off);
        switch (fields[i].kind) {
        case K_STR:
            free(*(char **)p);
            break;
        case K_BYTES:
            free(((struct wzp_bytes *)p)->data);
            break;
        case K_STRS: {
            struct wzp_strings *v = p;
            for (size_t j = 0; j < v->count && v->items; j++)
                free(v->items[j]);
            free(v->items);
            break;
        }
        case K_PROFILES:
            free(((struct wzp_profiles *)p)->items);
            break;
        case K_PARTICIPANTS: {
            struct wzp_participants *v = p;
            for (size_t j = 0; j < v->count && v->items; j++)
                clear_fields(&v->items[j], participant_fields, WZP_ARRAY_LEN(participant_fields));
            free(v->items);
            break;
        }
        case K_SIGNAL: {
            struct wzp_signal *inner = *(struct wzp_signal **)p;
            if (inner) {
                wzp_signal_clear(inner);
                free(inner);
            }
            break;
        }
        default:
            break; /* plain values */
        }
    }
}

void wzp_signal_clear(struct wzp_signal *s)
{
    const struct variant *v = variant_of(s->type);
    if (v && v->fields)
        clear_fields(s, v->fields, v->nfields);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------------------------- */
/* Parsing                                                                             */
/* ---------------------------------------------------------------------------------- */

struct pctx {
    char *err;
    size_t errlen;
    char path[192]; /* "CallOffer.supported_profiles[2].fec_ratio", for messages */
    size_t plen;
    int depth; /* SignalMessage nesting */
};

/* Append to the error path, cut at its size; returns the previous length for path_pop().
 * Pushed for every field and array element, so no printf: a CallOffer has 128 elements. */
static void path_append(struct pctx *c, const char *s, size_t n)
{
    n = WZP_MIN(n, sizeof(c->path) - 1 - c->plen);
    memcpy(c->path + c->plen, s, n);
    c->plen += n;
    c->path[c->plen] = '\0';
}

/* ".name", or "name" at the start of the path. */
static size_t path_push_name(struct pctx *c, const char *name)
{
    size_t old = c->plen;
    if (old)
        path_append(c, ".", 1);
    path_append(c, name, strlen(name));
    return old;
}

/* "[index]" */
static size_t path_push_index(struct pctx *c, size_t index)
{
    char digits[24], *p = digits + sizeof(digits);
    size_t old = c->plen;

    *--p = ']';
    do
        *--p = (char)('0' + index % 10);
    while ((index /= 10) != 0);
    *--p = '[';
    path_append(c, p, (size_t)(digits + sizeof(digits) - p));
    return old;
}

static void path_pop(struct pctx *c, size_t len)
{
    c->plen = len;
    c->path[len] = '\0';
}

__attribute__((format(printf, 2, 3))) static int fail(struct pctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        int n = c->plen ? snprintf(c->err, c->errlen, "%s: ", c->path) : 0;
        if (n < 0 || (size_t)n >= c->errlen)
            return WZP_EINVAL;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return WZP_EINVAL;
}

static int oom(struct pctx *c)
{
    fail(c, "out of memory");
    return WZP_ENOMEM;
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "float";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    default:
        return "null";
    }
}

/* Printable excerpt of untrusted text for an error message. */
static const char *excerpt(const char *s, size_t len, char out[40])
{
    size_t n = WZP_MIN(len, (size_t)39);
    for (size_t i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    out[n] = '\0';
    return out;
}

/*
 * Name of an externally tagged unit variant: a bare string, or a one-key object whose
 * value is null (serde accepts both). NULL for anything else.
 */
static const char *unit_name(json_t *v, size_t *len)
{
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return json_string_value(v);
    }
    if (json_is_object(v) && json_object_size(v) == 1) {
        void *it = json_object_iter(v);
        if (json_is_null(json_object_iter_value(it))) {
            const char *key = json_object_iter_key(it);
            *len = strlen(key); /* jansson refuses NUL bytes in keys */
            return key;
        }
    }
    return NULL;
}

static int parse_message(struct pctx *c, json_t *v, struct wzp_signal *out);

/* Is text[i] the start of a "-0" number token with nothing after the 0 (no digit,
 * fraction or exponent)? */
static bool negative_zero_at(const char *text, size_t len, size_t i)
{
    if (i + 1 >= len || text[i] != '-' || text[i + 1] != '0')
        return false;
    if (i + 2 == len)
        return true;
    char next = text[i + 2];
    return !(next >= '0' && next <= '9') && next != '.' && next != 'e' && next != 'E';
}

/*
 * serde reads the JSON number -0 as a float: refused where an integer is expected, kept
 * as -0.0 in an f32. jansson makes it the integer 0, losing both. So each "-0" token
 * outside strings is written as "-0.0" before jansson sees it, which then gives a real
 * with its sign. Returns a new copy, or NULL when there is no such token (the usual case:
 * one pass over the text, no allocation).
 */
static char *negative_zero_as_float(const char *text, size_t len, size_t *outlen)
{
    size_t count = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            if (text[i] == '\\')
                i++;
            else if (text[i] == '"')
                in_string = false;
        } else if (text[i] == '"') {
            in_string = true;
        } else if (negative_zero_at(text, len, i)) {
            count++;
        }
    }
    if (!count)
        return NULL;
    char *out = malloc(len + 2 * count);
    if (!out)
        return NULL; /* parsed as is: -0 reads as 0 */
    size_t o = 0;
    in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        out[o++] = ch;
        if (in_string) {
            if (ch == '\\' && i + 1 < len)
                out[o++] = text[++i];
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (negative_zero_at(text, len, i)) {
            out[o++] = text[++i]; /* the 0 */
            out[o++] = '.';
            out[o++] = '0';
        }
    }
    *outlen = o;
    return out;
}

/* Integers: JSON integers only (no 20.0, no 1e2), 0..max. */
static int parse_uint(struct pctx *c, json_t *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v))
        return fail(c, "expected integer, got %s", jtype(v));
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > max)
        return fail(c, "integer %" JSON_INTEGER_FORMAT " out of range 0..%" PRIu64, i, max);
    *out = (uint64_t)i;
    return WZP_OK;
}

static int parse_f32(struct pctx *c, json_t *v, float *out)
{
    if (!json_is_number(v))
        return fail(c, "expected number, got %s", jtype(v));
    double d = json_number_value(v);
    /* In range is what rounds to a finite float: up to, not including, the midpoint
     * between FLT_MAX and 2^128 (serde's "3.4028235e+38" for f32::MAX is just above
     * FLT_MAX as a double). Beyond, serde makes an infinity: we refuse. */
    if (fabs(d) >= 0x1.ffffffp127)
        return fail(c, "number out of f32 range");
    *out = d > FLT_MAX ? FLT_MAX : d < -FLT_MAX ? -FLT_MAX : (float)d;
    return WZP_OK;
}

/* Strings: copied NUL-terminated; an embedded U+0000 is refused (C strings). */
static int parse_string(struct pctx *c, json_t *v, char **out)
{
    if (!json_is_string(v))
        return fail(c, "expected string, got %s", jtype(v));
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len))
        return fail(c, "string contains U+0000 (not supported)");
    char *copy = malloc(len + 1);
    if (!copy)
        return oom(c);
    memcpy(copy, s, len + 1);
    *out = copy;
    return WZP_OK;
}

static int parse_u8_items(struct pctx *c, json_t *arr, uint8_t *out)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        uint64_t x = 0; /* parse_uint sets it on success; gcc -O3 cannot see that */
        size_t mark = path_push_index(c, i);
        int rv = parse_uint(c, json_array_get(arr, i), UINT8_MAX, &x);
        path_pop(c, mark);
        if (rv)
            return rv;
        out[i] = (uint8_t)x;
    }
    return WZP_OK;
}

static int parse_key32(struct pctx *c, json_t *v, uint8_t out[32])
{
    if (!json_is_array(v))
        return fail(c, "expected array of 32 integers, got %s", jtype(v));
    if (json_array_size(v) != 32)
        return fail(c, "expected 32 integers, got %zu", json_array_size(v));
    return parse_u8_items(c, v, out);
}

static int parse_bytes(struct pctx *c, json_t *v, struct wzp_bytes *out)
{
    if (!json_is_array(v))
        return fail(c, "expected array of integers, got %s", jtype(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return WZP_OK;
    if (!(out->data = malloc(n)))
        return oom(c);
    out->len = n;
    return parse_u8_items(c, v, out->data);
}

static int parse_enum(struct pctx *c, enum kind k, json_t *v, void *out)
{
    size_t len;
    const char *name = unit_name(v, &len);
    if (!name)
        return fail(c, "expected variant name, got %s", jtype(v));
    for (unsigned i = 0; enum_name(k, i); i++) {
        const char *cand = enum_name(k, i);
        if (strlen(cand) == len && memcmp(cand, name, len) == 0) {
            enum_store(k, out, i);
            return WZP_OK;
        }
    }
    char buf[40];
    return fail(c, "unknown variant \"%s\"", excerpt(name, len, buf));
}

static int parse_struct(struct pctx *c, json_t *obj, void *base, const struct field *fields,
                        size_t n);

/*
 * JSON array -> calloc'd array of count elements. The caller stores items/count before
 * filling them, so wzp_signal_clear() can free a partly filled array.
 */
static int alloc_items(struct pctx *c, json_t *v, size_t elem, void **items, size_t *count)
{
    if (!json_is_array(v))
        return fail(c, "expected array, got %s", jtype(v));
    *count = json_array_size(v);
    *items = NULL;
    if (*count && !(*items = calloc(*count, elem)))
        return oom(c);
    return WZP_OK;
}

static int parse_strings(struct pctx *c, json_t *v, struct wzp_strings *out)
{
    void *items;
    size_t n;
    int rv = alloc_items(c, v, sizeof(char *), &items, &n);
    if (rv)
        return rv;
    out->items = items;
    out->count = n;
    for (size_t i = 0; i < n && !rv; i++) {
        size_t mark = path_push_index(c, i);
        rv = parse_string(c, json_array_get(v, i), &out->items[i]);
        path_pop(c, mark);
    }
    return rv;
}

/* Vec<QualityProfile> / Vec<RoomParticipant>: arrays of objects. */
static int parse_struct_array(struct pctx *c, enum kind k, json_t *v, void *out)
{
    size_t nf, elem = k == K_PROFILES ? sizeof(struct wzp_quality_profile)
                                      : sizeof(struct wzp_room_participant);
    const struct field *fields = struct_fields(k, &nf);
    void *items;
    size_t n;
    int rv = alloc_items(c, v, elem, &items, &n);
    if (rv)
        return rv;
    if (k == K_PROFILES)
        *(struct wzp_profiles *)out = (struct wzp_profiles){items, n};
    else
        *(struct wzp_participants *)out = (struct wzp_participants){items, n};
    for (size_t i = 0; i < n && !rv; i++) {
        size_t mark = path_push_index(c, i);
        rv = parse_struct(c, json_array_get(v, i), at(items, i * elem), fields, nf);
        path_pop(c, mark);
    }
    return rv;
}

/* Box<SignalMessage>: allocated (and linked) first so a failure below is freed. */
static int parse_inner(struct pctx *c, json_t *v, struct wzp_signal **out)
{
    if (!(*out = calloc(1, sizeof(**out))))
        return oom(c);
    return parse_message(c, v, *out);
}

static int parse_value(struct pctx *c, enum kind k, json_t *v, void *p)
{
    size_t nf;
    uint64_t x;
    int rv;
    switch (k) {
    case K_STR:
        return parse_string(c, v, p);
    case K_BOOL:
        if (!json_is_boolean(v))
            return fail(c, "expected bool, got %s", jtype(v));
        *(bool *)p = json_is_true(v);
        return WZP_OK;
    case K_U8:
        if (!(rv = parse_uint(c, v, UINT8_MAX, &x)))
            *(uint8_t *)p = (uint8_t)x;
        return rv;
    case K_U32:
        if (!(rv = parse_uint(c, v, UINT32_MAX, &x)))
            *(uint32_t *)p = (uint32_t)x;
        return rv;
    case K_U64: /* jansson caps integers at 2^63-1, see the top of the file */
        return parse_uint(c, v, UINT64_MAX, p);
    case K_F32:
        return parse_f32(c, v, p);
    case K_KEY32:
        return parse_key32(c, v, p);
    case K_BYTES:
        return parse_bytes(c, v, p);
    case K_STRS:
        return parse_strings(c, v, p);
    case K_CODEC:
    case K_REASON:
    case K_ACCEPT:
        return parse_enum(c, k, v, p);
    case K_PROFILE:
    case K_REPORT: {
        const struct field *fields = struct_fields(k, &nf);
        return parse_struct(c, v, p, fields, nf);
    }
    case K_PROFILES:
    case K_PARTICIPANTS:
        return parse_struct_array(c, k, v, p);
    case K_SIGNAL:
        return parse_inner(c, v, p);
    }
    return fail(c, "internal: unknown field kind");
}

static bool is_option(const struct field *f)
{
    return f->rule == R_OPT || f->rule == R_OPT_SKIP;
}

/* One field of an object; v is NULL when the key is absent. The target is zeroed. */
static int parse_field(struct pctx *c, const struct field *f, json_t *v, void *base)
{
    void *p = at(base, f->off);
    if (!v) {
        if (f->rule == R_REQ)
            return fail(c, "missing field");
        if (f->rule == R_DFLT && f->kind == K_STR && !(*(char **)p = strdup("")))
            return oom(c);
        return WZP_OK; /* None, 0, empty Vec */
    }
    if (json_is_null(v) && is_option(f))
        return WZP_OK;
    int rv = parse_value(c, f->kind, v, p);
    if (!rv && f->has != NO_FLAG)
        *(bool *)at(base, (size_t)f->has) = true;
    return rv;
}

static int parse_struct(struct pctx *c, json_t *obj, void *base, const struct field *fields,
                        size_t n)
{
    if (!json_is_object(obj))
        return fail(c, "expected object, got %s", jtype(obj));
    for (size_t i = 0; i < n; i++) {
        size_t mark = path_push_name(c, fields[i].name);
        int rv = parse_field(c, &fields[i], json_object_get(obj, fields[i].name), base);
        path_pop(c, mark);
        if (rv)
            return rv;
    }
    return WZP_OK;
}

static enum wzp_signal_type find_variant(const char *name, size_t len)
{
    for (unsigned t = 1; t < WZP_SIG_TYPE_END; t++)
        if (strlen(variants[t].name) == len && memcmp(variants[t].name, name, len) == 0)
            return (enum wzp_signal_type)t;
    return 0;
}

/* An externally tagged SignalMessage: "Unit", {"Unit":null} or {"Variant":{...}}. */
static int parse_message(struct pctx *c, json_t *v, struct wzp_signal *out)
{
    const char *name;
    size_t len;
    json_t *body = NULL;
    if (json_is_string(v)) {
        name = json_string_value(v);
        len = json_string_length(v);
    } else if (json_is_object(v)) {
        if (json_object_size(v) != 1)
            return fail(c, "expected an object with 1 key, got %zu", json_object_size(v));
        void *it = json_object_iter(v);
        name = json_object_iter_key(it);
        len = strlen(name);
        body = json_object_iter_value(it);
    } else {
        return fail(c, "expected string or object, got %s", jtype(v));
    }
    char buf[40];
    enum wzp_signal_type t = find_variant(name, len);
    if (!t)
        return fail(c, "unknown variant \"%s\"", excerpt(name, len, buf));
    if (c->depth == MAX_NESTING)
        return fail(c, "messages nested more than %d deep", MAX_NESTING);
    c->depth++;

    const struct variant *var = &variants[t];
    out->type = t;
    size_t mark = path_push_name(c, var->name);
    int rv = WZP_OK;
    if (!var->fields && body && !json_is_null(body))
        rv = fail(c, "unit variant takes no value, got %s", jtype(body));
    else if (var->fields && !body)
        rv = fail(c, "struct variant written as a bare string");
    else if (var->fields)
        rv = parse_struct(c, body, out, var->fields, var->nfields);
    path_pop(c, mark);
    c->depth--;
    return rv;
}

int wzp_signal_parse(const uint8_t *json, size_t len, struct wzp_signal *out, char *err,
                     size_t errlen)
{
    struct pctx c = {.err = err, .errlen = errlen};
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';

    /*
     * DECODE_ANY: unit variants are bare top-level strings. REJECT_DUPLICATES: serde
     * rejects a repeated field. ALLOW_NUL: let U+0000 through jansson so that it only
     * fails in the fields we keep (parse_string), as close to serde as C strings allow.
     */
    json_error_t jerr;
    size_t fixed_len;
    char *fixed = negative_zero_as_float((const char *)json, len, &fixed_len);
    json_t *root = json_loadb(fixed ? fixed : (const char *)json, fixed ? fixed_len : len,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    free(fixed);
    if (!root)
        return fail(&c, "invalid JSON at byte %d: %s", jerr.position, jerr.text);

    int rv = parse_message(&c, root, out);
    json_decref(root);
    if (rv)
        wzp_signal_clear(out);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Encoding                                                                            */
/* ---------------------------------------------------------------------------------- */

/* Emitter with a sticky status: after the first failure every emit is a no-op. */
struct enc {
    struct wzp_buf *out;
    int rv;
    int depth;
};

static void emit(struct enc *e, const void *p, size_t n)
{
    if (!e->rv)
        e->rv = wzp_buf_append(e->out, p, n);
}

static void emit_raw(struct enc *e, const char *s)
{
    emit(e, s, strlen(s));
}

static void reject(struct enc *e)
{
    if (!e->rv)
        e->rv = WZP_EINVAL;
}

static void emit_u64(struct enc *e, uint64_t v)
{
    char buf[24];
    emit(e, buf, (size_t)snprintf(buf, sizeof(buf), "%" PRIu64, v));
}

/* Length of the UTF-8 sequence a lead byte starts; 0 if it cannot start one. */
static int utf8_seq_len(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        return 2;
    if (b >= 0xe0 && b <= 0xef)
        return 3;
    if (b >= 0xf0 && b <= 0xf4)
        return 4;
    return 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), like Rust's str. */
static bool utf8_valid(const unsigned char *s)
{
    while (*s) {
        int n = utf8_seq_len(*s);
        if (!n)
            return false;
        uint32_t cp = n == 1 ? *s : *s & (0xffu >> (n + 1));
        for (int i = 1; i < n; i++) {
            if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
                return false;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        s += n;
    }
    return true;
}

static const char *short_escape(unsigned char ch)
{
    switch (ch) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        return NULL;
    }
}

/* serde_json escapes: \" \\ \b \f \n \r \t, other C0 controls as \u00xx (lowercase). */
static void emit_string(struct enc *e, const char *s)
{
    if (!s || !utf8_valid((const unsigned char *)s)) {
        reject(e);
        return;
    }
    emit(e, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        emit(e, run, (size_t)(p - run));
        run = p + 1;
        const char *esc = short_escape(ch);
        char u[8];
        if (!esc) {
            snprintf(u, sizeof(u), "\\u%04x", ch);
            esc = u;
        }
        emit_raw(e, esc);
    }
    emit(e, run, strlen(run));
    emit(e, "\"", 1);
}

/* Does m * 10^e read back as f? (strtof rounds correctly, ties to even, as ryu does.) */
static bool reads_back(uint32_t m, int e, float f)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%" PRIu32 "e%d", m, e);
    return strtof(tmp, NULL) == f;
}

/*
 * Shortest decimal m * 10^e that reads back as f > 0, the one ryu picks: for 1..9
 * significant digits, the correctly rounded %.*e; if it misses, its neighbour on the
 * other side of f (at powers of two the rounding interval below f is half as wide as
 * the one above, so the nearest decimal can miss while the next one up still fits).
 * Checked against the ryu crate on all powers of two and ~9 million other floats.
 */
static void shortest_decimal(float f, uint32_t *mant, int *exp)
{
    char tmp[32];
    uint32_t m = 0;
    int e = 0;
    for (int prec = 0; prec < 9; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, (double)f); /* "d.ddde+xx" */
        const char *p = tmp;
        for (m = 0; *p != 'e'; p++)
            if (*p != '.')
                m = m * 10 + (uint32_t)(*p - '0');
        e = atoi(p + 1) - prec;
        if (strtof(tmp, NULL) == f)
            break;
        uint32_t other = strtod(tmp, NULL) < (double)f ? m + 1 : m - 1;
        if (reads_back(other, e, f)) {
            m = other;
            break;
        }
    }
    for (; m % 10 == 0; m /= 10)
        e++;
    *mant = m;
    *exp = e;
}

/*
 * serde_json's f32 layout, with kk the position of the decimal point relative to the
 * first digit: 1234e7 -> "12340000000.0", 1234e-2 -> "12.34", 1234e-6 -> "0.001234",
 * 1e30 -> "1e+30", 1234e30 -> "1.234e+33", 1e-7 -> "1e-7". Since serde_json 1.0.147
 * (the version upstream pins) a positive exponent carries its "+"; the digits are ryu's
 * shortest. Needs 32 bytes.
 */
static void format_f32(float f, char *out)
{
    if (f == 0.0f) {
        strcpy(out, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    uint32_t m;
    int k; /* value = d * 10^k, d the digit string */
    shortest_decimal(fabsf(f), &m, &k);
    char d[16];
    int len = snprintf(d, sizeof(d), "%" PRIu32, m);
    int kk = len + k; /* 10^(kk-1) <= |f| < 10^kk */
    char *o = out;
    if (signbit(f))
        *o++ = '-';
    if (k >= 0 && kk <= 13) {
        o += sprintf(o, "%s", d);
        memset(o, '0', (size_t)k);
        strcpy(o + k, ".0");
    } else if (kk > 0 && kk <= 13) {
        sprintf(o, "%.*s.%s", kk, d, d + kk);
    } else if (kk > -6 && kk <= 0) {
        memcpy(o, "0.", 2);
        memset(o + 2, '0', (size_t)-kk);
        strcpy(o + 2 - kk, d);
    } else if (len == 1) {
        sprintf(o, "%se%s%d", d, kk > 0 ? "+" : "", kk - 1);
    } else {
        sprintf(o, "%c.%se%s%d", d[0], d + 1, kk > 0 ? "+" : "", kk - 1);
    }
}

static void emit_f32(struct enc *e, float f)
{
    if (!isfinite(f)) { /* serde_json would write null, which no peer can read back */
        reject(e);
        return;
    }
    char buf[32];
    format_f32(f, buf);
    emit_raw(e, buf);
}

static void emit_u8_array(struct enc *e, const uint8_t *d, size_t n)
{
    if (n && !d) {
        reject(e);
        return;
    }
    emit(e, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            emit(e, ",", 1);
        emit_u64(e, d[i]);
    }
    emit(e, "]", 1);
}

static void emit_message(struct enc *e, const struct wzp_signal *s);
static void emit_struct(struct enc *e, const void *base, const struct field *fields, size_t n);

static void emit_strings(struct enc *e, const struct wzp_strings *v)
{
    if (v->count && !v->items) {
        reject(e);
        return;
    }
    emit(e, "[", 1);
    for (size_t i = 0; i < v->count; i++) {
        if (i)
            emit(e, ",", 1);
        emit_string(e, v->items[i]);
    }
    emit(e, "]", 1);
}

static void emit_struct_array(struct enc *e, enum kind k, const void *p)
{
    size_t nf, count, elem;
    const void *items;
    const struct field *fields = struct_fields(k, &nf);
    if (k == K_PROFILES) {
        items = ((const struct wzp_profiles *)p)->items;
        count = ((const struct wzp_profiles *)p)->count;
        elem = sizeof(struct wzp_quality_profile);
    } else {
        items = ((const struct wzp_participants *)p)->items;
        count = ((const struct wzp_participants *)p)->count;
        elem = sizeof(struct wzp_room_participant);
    }
    if (count && !items) {
        reject(e);
        return;
    }
    emit(e, "[", 1);
    for (size_t i = 0; i < count; i++) {
        if (i)
            emit(e, ",", 1);
        emit_struct(e, cat(items, i * elem), fields, nf);
    }
    emit(e, "]", 1);
}

static void emit_value(struct enc *e, enum kind k, const void *p)
{
    size_t nf;
    const struct field *fields;
    switch (k) {
    case K_STR:
        emit_string(e, *(char *const *)p);
        break;
    case K_BOOL:
        emit_raw(e, *(const bool *)p ? "true" : "false");
        break;
    case K_U8:
        emit_u64(e, *(const uint8_t *)p);
        break;
    case K_U32:
        emit_u64(e, *(const uint32_t *)p);
        break;
    case K_U64:
        emit_u64(e, *(const uint64_t *)p);
        break;
    case K_F32:
        emit_f32(e, *(const float *)p);
        break;
    case K_KEY32:
        emit_u8_array(e, p, 32);
        break;
    case K_BYTES:
        emit_u8_array(e, ((const struct wzp_bytes *)p)->data, ((const struct wzp_bytes *)p)->len);
        break;
    case K_STRS:
        emit_strings(e, p);
        break;
    case K_CODEC:
    case K_REASON:
    case K_ACCEPT: {
        const char *name = enum_name(k, enum_load(k, p));
        if (name)
            emit_string(e, name);
        else
            reject(e);
        break;
    }
    case K_PROFILE:
    case K_REPORT:
        fields = struct_fields(k, &nf);
        emit_struct(e, p, fields, nf);
        break;
    case K_PROFILES:
    case K_PARTICIPANTS:
        emit_struct_array(e, k, p);
        break;
    case K_SIGNAL: {
        const struct wzp_signal *inner = *(struct wzp_signal *const *)p;
        if (inner)
            emit_message(e, inner);
        else
            reject(e);
        break;
    }
    }
}

static bool is_none(const void *base, const struct field *f)
{
    if (f->has != NO_FLAG)
        return !*(const bool *)cat(base, (size_t)f->has);
    if (f->kind == K_STR)
        return *(char *const *)cat(base, f->off) == NULL;
    return false;
}

static bool is_skipped(const void *base, const struct field *f)
{
    if (f->rule == R_OPT_SKIP)
        return is_none(base, f);
    if (f->rule == R_DFLT_SKIP) /* only Vec<String> uses it */
        return ((const struct wzp_strings *)cat(base, f->off))->count == 0;
    return false;
}

static void emit_struct(struct enc *e, const void *base, const struct field *fields, size_t n)
{
    bool first = true;
    emit(e, "{", 1);
    for (size_t i = 0; i < n && !e->rv; i++) {
        const struct field *f = &fields[i];
        if (is_skipped(base, f))
            continue;
        emit_raw(e, first ? "\"" : ",\"");
        emit_raw(e, f->name);
        emit_raw(e, "\":");
        first = false;
        if (!is_none(base, f))
            emit_value(e, f->kind, cat(base, f->off));
        else if (f->rule == R_OPT)
            emit_raw(e, "null");
        else if (f->rule == R_DFLT && f->kind == K_STR)
            emit_raw(e, "\"\""); /* race_winner's default */
        else
            reject(e); /* a required string is NULL */
    }
    emit(e, "}", 1);
}

static void emit_message(struct enc *e, const struct wzp_signal *s)
{
    const struct variant *v = variant_of(s->type);
    if (!v || e->depth >= MAX_NESTING) {
        reject(e);
        return;
    }
    e->depth++;
    if (!v->fields) {
        emit_string(e, v->name);
    } else {
        emit_raw(e, "{\"");
        emit_raw(e, v->name);
        emit_raw(e, "\":");
        emit_struct(e, s, v->fields, v->nfields);
        emit(e, "}", 1);
    }
    e->depth--;
}

int wzp_signal_encode(const struct wzp_signal *s, struct wzp_buf *out)
{
    struct enc e = {.out = out};
    size_t start = out->len;
    emit_message(&e, s);
    if (e.rv)
        out->len = start;
    return e.rv;
}

/* ---------------------------------------------------------------------------------- */
/* Framing                                                                             */
/* ---------------------------------------------------------------------------------- */

int wzp_signal_encode_frame(const struct wzp_signal *s, struct wzp_buf *out)
{
    static const uint8_t placeholder[WZP_SIGNAL_FRAME_HEADER_BYTES];
    size_t start = out->len;
    int rv = wzp_buf_append(out, placeholder, sizeof(placeholder));
    if (rv)
        return rv;
    rv = wzp_signal_encode(s, out);
    size_t body = out->len - start - WZP_SIGNAL_FRAME_HEADER_BYTES;
    if (!rv && body > WZP_SIGNAL_MAX_BYTES)
        rv = WZP_ETOOBIG;
    if (rv) {
        out->len = start;
        return rv;
    }
    wzp_put_u32be(out->data + start, (uint32_t)body);
    return WZP_OK;
}

int wzp_signal_frame_peek(const uint8_t *data, size_t len, const uint8_t **body, size_t *body_len)
{
    if (len < WZP_SIGNAL_FRAME_HEADER_BYTES)
        return WZP_EAGAIN;
    uint32_t n = wzp_get_u32be(data);
    if (n > WZP_SIGNAL_MAX_BYTES)
        return WZP_ETOOBIG;
    if (len - WZP_SIGNAL_FRAME_HEADER_BYTES < n)
        return WZP_EAGAIN;
    *body = data + WZP_SIGNAL_FRAME_HEADER_BYTES;
    *body_len = n;
    return WZP_OK;
}
