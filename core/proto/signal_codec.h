/*
 * signal_codec.h - WZP signal messages: framing (u32 BE length + JSON, one message per QUIC
 * bidi stream) and a JSON codec for every SignalMessage variant, byte-exact to serde's
 * output (doc/PROTOCOL.md, "Signals").
 *
 * Ownership: wzp_signal_parse() fills a caller-provided struct and allocates its
 * strings and arrays; release them with wzp_signal_clear(). Structs built by hand for
 * encoding may point at caller-owned memory as long as the caller does not call
 * wzp_signal_clear() on them. Strings are NUL-terminated UTF-8; NULL means None.
 */
#ifndef WZP_SIGNAL_H
#define WZP_SIGNAL_H

#include "buf.h"
#include "media.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_SIGNAL_MAX_BYTES          (1024 * 1024) /* JSON body cap, as upstream (reliable.rs) */
#define WZP_SIGNAL_FRAME_HEADER_BYTES 4

enum wzp_signal_type {
    WZP_SIG_CALL_OFFER = 1,
    WZP_SIG_CALL_ANSWER,
    WZP_SIG_ICE_CANDIDATE,
    WZP_SIG_REKEY,
    WZP_SIG_QUALITY_UPDATE,
    WZP_SIG_LOSS_RECOVERY_UPDATE,
    WZP_SIG_PING,
    WZP_SIG_PONG,
    WZP_SIG_HANGUP,
    WZP_SIG_AUTH_TOKEN,
    WZP_SIG_HOLD,
    WZP_SIG_UNHOLD,
    WZP_SIG_MUTE,
    WZP_SIG_UNMUTE,
    WZP_SIG_TRANSFER,
    WZP_SIG_TRANSFER_ACK,
    WZP_SIG_PRESENCE_UPDATE,
    WZP_SIG_ROUTE_QUERY,
    WZP_SIG_ROUTE_RESPONSE,
    WZP_SIG_SESSION_FORWARD,
    WZP_SIG_SESSION_FORWARD_ACK,
    WZP_SIG_ROOM_UPDATE,
    WZP_SIG_FEDERATION_HELLO,
    WZP_SIG_GLOBAL_ROOM_ACTIVE,
    WZP_SIG_GLOBAL_ROOM_INACTIVE,
    WZP_SIG_REGISTER_PRESENCE,
    WZP_SIG_REGISTER_PRESENCE_ACK,
    WZP_SIG_DIRECT_CALL_OFFER,
    WZP_SIG_DIRECT_CALL_ANSWER,
    WZP_SIG_CALL_SETUP,
    WZP_SIG_CALL_RINGING,
    WZP_SIG_REFLECT,
    WZP_SIG_REFLECT_RESPONSE,
    WZP_SIG_MEDIA_PATH_REPORT,
    WZP_SIG_FEDERATED_SIGNAL_FORWARD,
    WZP_SIG_QUALITY_DIRECTIVE,
    WZP_SIG_TYPE_END,
};

/* serde variant name ("CallOffer", ...) or NULL. */
const char *wzp_signal_type_name(enum wzp_signal_type t);

enum wzp_hangup_reason {
    WZP_HANGUP_NORMAL = 0,
    WZP_HANGUP_BUSY,
    WZP_HANGUP_DECLINED,
    WZP_HANGUP_TIMEOUT,
    WZP_HANGUP_ERROR,
};

enum wzp_accept_mode {
    WZP_ACCEPT_REJECT = 0,
    WZP_ACCEPT_TRUSTED,
    WZP_ACCEPT_GENERIC,
};

struct wzp_bytes {
    uint8_t *data;
    size_t len;
};

struct wzp_strings {
    char **items;
    size_t count;
};

struct wzp_profiles {
    struct wzp_quality_profile *items;
    size_t count;
};

struct wzp_room_participant {
    char *fingerprint;
    char *alias;       /* NULL = null */
    char *relay_label; /* NULL = null */
};

struct wzp_participants {
    struct wzp_room_participant *items;
    size_t count;
};

struct wzp_signal {
    enum wzp_signal_type type;
    union {
        struct {
            uint8_t identity_pub[32];
            uint8_t ephemeral_pub[32];
            struct wzp_bytes signature;
            struct wzp_profiles supported_profiles;
            char *alias; /* emitted as null when NULL */
        } call_offer;
        struct {
            uint8_t identity_pub[32];
            uint8_t ephemeral_pub[32];
            struct wzp_bytes signature;
            struct wzp_quality_profile chosen_profile;
        } call_answer;
        struct {
            char *candidate;
        } ice_candidate;
        struct {
            uint8_t new_ephemeral_pub[32];
            struct wzp_bytes signature;
        } rekey;
        struct {
            struct wzp_quality_report report;
            struct wzp_quality_profile recommended_profile;
        } quality_update;
        struct {
            uint64_t dred_reconstructions;
            uint64_t classical_plc_invocations;
            uint64_t frames_decoded;
        } loss_recovery_update;
        struct {
            uint64_t timestamp_ms;
        } ping; /* also Pong */
        struct {
            enum wzp_hangup_reason reason;
            char *call_id; /* omitted when NULL */
        } hangup;
        struct {
            char *token;
        } auth_token;
        struct {
            char *target_fingerprint;
            char *relay_addr; /* emitted as null when NULL */
        } transfer;
        struct {
            struct wzp_strings fingerprints;
            char *relay_addr;
        } presence_update;
        struct {
            char *fingerprint;
            uint8_t ttl;
        } route_query;
        struct {
            char *fingerprint;
            bool found;
            struct wzp_strings relay_chain;
        } route_response;
        struct {
            char *session_id;
            char *target_fingerprint;
            char *source_relay;
        } session_forward;
        struct {
            char *session_id;
            char *room_name;
        } session_forward_ack;
        struct {
            uint32_t count;
            struct wzp_participants participants;
        } room_update;
        struct {
            char *tls_fingerprint;
        } federation_hello;
        struct {
            char *room;
            struct wzp_participants participants; /* default [] */
        } global_room_active;
        struct {
            char *room;
        } global_room_inactive;
        struct {
            uint8_t identity_pub[32];
            struct wzp_bytes signature;
            char *alias; /* emitted as null when NULL */
        } register_presence;
        struct {
            bool success;
            char *error;       /* omitted when NULL */
            char *relay_build; /* omitted when NULL */
        } register_presence_ack;
        struct {
            char *caller_fingerprint;
            char *caller_alias; /* emitted as null when NULL */
            char *target_fingerprint;
            char *call_id;
            uint8_t identity_pub[32];
            uint8_t ephemeral_pub[32];
            struct wzp_bytes signature;
            struct wzp_profiles supported_profiles;
            char *caller_reflexive_addr;           /* omitted when NULL */
            struct wzp_strings caller_local_addrs; /* omitted when empty */
            char *caller_build_version;            /* omitted when NULL */
        } direct_call_offer;
        struct {
            char *call_id;
            enum wzp_accept_mode accept_mode;
            bool has_identity_pub;
            uint8_t identity_pub[32]; /* omitted unless has_identity_pub */
            bool has_ephemeral_pub;
            uint8_t ephemeral_pub[32];
            bool has_signature;
            struct wzp_bytes signature;
            bool has_chosen_profile;
            struct wzp_quality_profile chosen_profile;
            char *callee_reflexive_addr;           /* omitted when NULL */
            struct wzp_strings callee_local_addrs; /* omitted when empty */
            char *callee_build_version;            /* omitted when NULL */
        } direct_call_answer;
        struct {
            char *call_id;
            char *room;
            char *relay_addr;
            char *peer_direct_addr;              /* omitted when NULL */
            struct wzp_strings peer_local_addrs; /* omitted when empty */
        } call_setup;
        struct {
            char *call_id;
        } call_ringing;
        struct {
            char *observed_addr;
        } reflect_response;
        struct {
            char *call_id;
            bool direct_ok;
            char *race_winner; /* default "" when missing */
        } media_path_report;
        struct {
            struct wzp_signal *inner;
            char *origin_relay_fp;
        } federated_signal_forward;
        struct {
            struct wzp_quality_profile recommended_profile;
            char *reason; /* omitted when NULL */
        } quality_directive;
    } u;
};

/*
 * Parse one JSON SignalMessage. Accepts what serde accepts (any key order, unknown keys
 * ignored, `{"Hold":null}` for unit variants, null for Option fields) and rejects what it
 * rejects (wrong array lengths, floats for integers, two top-level keys, unknown variant).
 * On error returns WZP_EINVAL, leaves *out cleared, and writes a one-line reason to err.
 */
int wzp_signal_parse(const uint8_t *json, size_t len, struct wzp_signal *out, char *err,
                     size_t errlen);

/* Append the exact serde_json encoding of s to out. WZP_EINVAL if s is not encodable. */
int wzp_signal_encode(const struct wzp_signal *s, struct wzp_buf *out);

/* Append the 4-byte length prefix and the JSON body (a complete stream payload). */
int wzp_signal_encode_frame(const struct wzp_signal *s, struct wzp_buf *out);

/*
 * Inspect a stream's receive buffer. Returns WZP_OK and sets *body and *body_len when a whole
 * frame is present, WZP_EAGAIN if more bytes are needed, WZP_ETOOBIG if the announced
 * length exceeds WZP_SIGNAL_MAX_BYTES.
 */
int wzp_signal_frame_peek(const uint8_t *data, size_t len, const uint8_t **body, size_t *body_len);

/* Free everything wzp_signal_parse() allocated and zero the struct. */
void wzp_signal_clear(struct wzp_signal *s);

/* Well-known profiles (codec_id.rs). */
extern const struct wzp_quality_profile WZP_PROFILE_GOOD;
extern const struct wzp_quality_profile WZP_PROFILE_DEGRADED;
extern const struct wzp_quality_profile WZP_PROFILE_CATASTROPHIC;
extern const struct wzp_quality_profile WZP_PROFILE_STUDIO_32K;
extern const struct wzp_quality_profile WZP_PROFILE_STUDIO_48K;
extern const struct wzp_quality_profile WZP_PROFILE_STUDIO_64K;

#endif
