/*
 * sfu.h - what a room connection does once QUIC is up: join a room after a valid
 * CallOffer, fan media out to the other participants, run the quality controller, and
 * leave. RoomUpdate and QualityDirective are sent under the room's write lock so every
 * participant sees them in the order the room changed.
 */
#ifndef WZP_SFU_H
#define WZP_SFU_H

#include "policy.h"
#include "signal_codec.h"

struct wzp_conn;

#define WZP_SFU_REASON_MAX (WZP_POLICY_REASON_MAX + 16) /* "denied: " + the policy's reason */

/*
 * Verify the CallOffer, answer it and join the room named by the SNI. WZP_OK: c is in the
 * room (the caller marks it joined). Otherwise (WZP_EINVAL refused, WZP_ENOMEM) reason
 * holds what to tell the client and c is in no room; the refusal is already logged and
 * counted, and the caller closes c.
 */
int wzp_sfu_join(struct wzp_conn *c, const struct wzp_signal *offer, char *reason,
                 size_t reasonlen);

/* Leave the room if in one (idempotent): RoomUpdate and a tier recompute for the rest.
 * Only the room changes; the caller owns c's state and its session. */
void wzp_sfu_leave(struct wzp_conn *c, const char *why);

/*
 * A DATAGRAM from c: validate, read the quality trailer, forward to the room. No Lua and
 * no write lock: safe inside an ngtcp2 callback. Returns true when the trailer moved c's
 * quality controller to another tier; *tier_report then holds that report and the caller
 * must call wzp_sfu_tier_changed once it is outside ngtcp2 (it runs the policy's
 * on_quality and takes the room's write lock).
 */
bool wzp_sfu_on_datagram(struct wzp_conn *c, const uint8_t *data, size_t len,
                         struct wzp_quality_report *tier_report);

/* c's controller changed tier on rep: apply the policy and the cap, recompute the room's
 * tier, send directives. Nothing if c is no longer in a room. */
void wzp_sfu_tier_changed(struct wzp_conn *c, const struct wzp_quality_report *rep);

struct wzp_relay;

/* Event log line for a refused connection or join (fields may be NULL). */
void wzp_sfu_event_refusal(const char *addr, const char *sni, const char *fingerprint,
                           const char *reason);

/* Close participant id's connection (reason in the close and the log), from any thread.
 * WZP_ENOTFOUND if no such participant. */
int wzp_sfu_kick(struct wzp_relay *relay, uint64_t id, const char *reason);

/* The room API behind the policies' wzp.* functions (ctx: struct wzp_relay *). Must be
 * called from a worker thread, with no room lock held (hooks and timers satisfy this). */
extern const struct wzp_policy_ops wzp_sfu_policy_ops;
/* For the shadow policy: the same reads, writes that change nothing (shadow.h). */
extern const struct wzp_policy_ops wzp_sfu_shadow_policy_ops;

#endif
