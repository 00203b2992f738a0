/*
 * dcall.c - presence and direct calls on "_signal" connections (see dcall.h).
 *
 * What differs from upstream, on purpose: the caller fingerprint in a forwarded offer is
 * the caller's registered one (not what the client wrote); only the callee may answer,
 * only the two parties may report, hang up or join the call room, and that room holds
 * at most the two of them; ringing and set-up expire; calls and their addresses are
 * bounded; a Hangup without call_id is forwarded to each peer with its call's id.
 */
#include "dcall.h"

#include "calls.h"
#include "common.h"
#include "conn.h"
#include "eventlog.h"
#include "handshake.h"
#include "log.h"
#include "policy.h"
#include "sfu.h"
#include "shadow.h"

#include <stdio.h>
#include <string.h>

#define MOD "call"

#define END_BATCH 16 /* calls ended per table pass (a party going, expiry) */

/* ---------------------------------------------------------------- delivery */

/* Queue sig on c itself. */
static void send_self(struct wzp_conn *c, const struct wzp_signal *sig)
{
    struct wzp_buf frame = WZP_BUF_INIT;
    if (wzp_signal_encode_frame(sig, &frame) == WZP_OK)
        wzp_conn_queue_signal(c, frame.data, frame.len);
    else
        WZP_WARN(MOD, "%s: could not encode %s", c->peer, wzp_signal_type_name(sig->type));
    wzp_buf_free(&frame);
}

/*
 * Send sig to the "_signal" connection registered under fp, on whichever worker it is
 * (through that worker's control queue, also for our own: one FIFO per receiver keeps a
 * call's signals in order). false if fp is not registered or the queue is full.
 */
static bool send_to(struct wzp_worker *w, const char *fp, const struct wzp_signal *sig)
{
    struct wzp_presence_handle h;
    if (!wzp_presence_lookup(&w->relay->presence, fp, &h))
        return false;
    struct wzp_buf frame = WZP_BUF_INIT;
    bool ok = false;
    if (wzp_signal_encode_frame(sig, &frame) != WZP_OK)
        WZP_WARN(MOD, "could not encode %s for %s", wzp_signal_type_name(sig->type), fp);
    else if (wzp_mesh_send_ctl(w->node, h.worker, WZP_CTL_SIGNAL, h.slot, h.gen, frame.data,
                               frame.len) != WZP_OK)
        WZP_WARN(MOD, "control queue to worker %u full: %s to %s dropped", h.worker,
                 wzp_signal_type_name(sig->type), fp);
    else
        ok = true;
    wzp_buf_free(&frame);
    return ok;
}

static void send_hangup(struct wzp_worker *w, const char *fp, enum wzp_hangup_reason reason,
                        const char *call_id)
{
    struct wzp_signal h = {.type = WZP_SIG_HANGUP};
    h.u.hangup.reason = reason;
    h.u.hangup.call_id = (char *)call_id;
    send_to(w, fp, &h);
}

static void hangup_self(struct wzp_conn *c, enum wzp_hangup_reason reason, const char *call_id)
{
    struct wzp_signal h = {.type = WZP_SIG_HANGUP};
    h.u.hangup.reason = reason;
    h.u.hangup.call_id = (char *)call_id;
    send_self(c, &h);
}

static void call_event(const char *what, const char *call_id, const char *caller,
                       const char *callee, const char *by, const char *reason)
{
    if (!wzp_eventlog_enabled())
        return;
    struct wzp_event ev;
    wzp_event_begin(&ev, what);
    wzp_event_str(&ev, "call_id", call_id);
    wzp_event_str(&ev, "caller", caller);
    wzp_event_str(&ev, "callee", callee);
    wzp_event_str(&ev, "by", by);
    wzp_event_str(&ev, "reason", reason);
    wzp_event_emit(&ev);
}

/* ---------------------------------------------------------------- registration */

/* Refuse a registration: RegisterPresenceAck{success: false, error}, which today's clients
 * report ("registration failed: ..."), then close once it is delivered. */
static void refuse_registration(struct wzp_conn *c, const char *why)
{
    WZP_INFO(MOD, "%s: registration of %s refused: %s", c->peer, c->fingerprint, why);
    wzp_sfu_event_refusal(c->peer, "_signal", c->fingerprint, why);
    struct wzp_signal ack = {.type = WZP_SIG_REGISTER_PRESENCE_ACK};
    ack.u.register_presence_ack.success = false;
    ack.u.register_presence_ack.error = (char *)why;
    send_self(c, &ack);
    wzp_conn_close_after_send(c, why);
}

/* The policy's on_register; false (connection refused) if it says no. */
static bool policy_admits_registration(struct wzp_conn *c, const struct wzp_signal *reg,
                                       bool is_signed)
{
    struct wzp_worker *w = c->w;
    if (!w->policy && !w->shadow)
        return true;
    struct wzp_register_info info = {.fingerprint = c->fingerprint,
                                     .alias = reg->u.register_presence.alias,
                                     .addr = c->peer,
                                     .is_signed = is_signed,
                                     .authenticated = c->authenticated,
                                     .auth = c->auth_claims};
    struct wzp_decision d;
    if (w->policy)
        wzp_policy_on_register(w->policy, &info, &d);
    else
        wzp_decision_upstream(&d);
    if (!d.allow) {
        WZP_STAT_INC(&w->stats, presence_refused_policy);
        char why[WZP_POLICY_REASON_MAX + 16];
        snprintf(why, sizeof why, "denied: %s", d.reason);
        refuse_registration(c, why);
    }
    wzp_shadow_register(w, &info, &d); /* after the live decision is applied */
    return d.allow;
}

void wzp_dcall_register(struct wzp_conn *c, const struct wzp_signal *reg)
{
    struct wzp_relay *r = c->w->relay;
    if (c->authenticated) /* featherChat's fingerprint is the identity, as upstream */
        memcpy(c->fingerprint, c->auth_fp, sizeof c->fingerprint);
    else
        wzp_fingerprint(reg->u.register_presence.identity_pub, c->fingerprint);
    bool is_signed = reg->u.register_presence.signature.len > 0;
    if (is_signed && wzp_handshake_verify_registration(reg) != WZP_OK) {
        WZP_STAT_INC(&c->w->stats, presence_bad_signature);
        refuse_registration(c, "RegisterPresence signature does not verify");
        return;
    }
    if (!policy_admits_registration(c, reg, is_signed))
        return;
    struct wzp_presence_handle me = {c->w->idx, c->slot, c->gen}, old;
    bool replaced = false;
    int rv = wzp_presence_register(&r->presence, c->fingerprint, reg->u.register_presence.alias, me,
                                   &c->presence_reg, &old, &replaced);
    if (rv != WZP_OK) {
        WZP_STAT_INC(&c->w->stats, presence_refused);
        char why[96];
        snprintf(why, sizeof why, "presence registry full (%zu)", r->presence.max);
        refuse_registration(c, why);
        return;
    }
    c->state = WZP_CONN_SIGNAL;
    c->deadline_ns = 0; /* ngtcp2's idle timeout bounds it, as a joined connection */
    WZP_STAT_INC(&c->w->stats, presence_registered);
    if (replaced)
        WZP_STAT_INC(&c->w->stats, presence_replaced);
    char alias[2 * WZP_ALIAS_MAX + 8] = "(no alias)";
    if (reg->u.register_presence.alias) {
        char esc[2 * WZP_ALIAS_MAX];
        wzp_log_escape_text(reg->u.register_presence.alias, esc, sizeof esc);
        snprintf(alias, sizeof alias, "\"%s\"", esc);
    }
    WZP_INFO(MOD, "presence: %s %s from %s registered%s", c->fingerprint, alias, c->peer,
             replaced ? " (replacing its previous connection)" : "");
    if (wzp_eventlog_enabled()) {
        struct wzp_event ev;
        wzp_event_begin(&ev, "register");
        wzp_event_str(&ev, "fingerprint", c->fingerprint);
        wzp_event_str(&ev, "alias", reg->u.register_presence.alias);
        wzp_event_str(&ev, "addr", c->peer);
        wzp_event_int(&ev, "replaced", replaced);
        wzp_event_emit(&ev);
    }
    struct wzp_signal ack = {.type = WZP_SIG_REGISTER_PRESENCE_ACK};
    ack.u.register_presence_ack.success = true;
    ack.u.register_presence_ack.relay_build = (char *)WZP_BUILD_HASH;
    send_self(c, &ack);
}

/* ---------------------------------------------------------------- calls */

/* Copy a client's addresses into a; false (why filled) if they exceed the bounds. */
static bool take_addrs(struct wzp_call_addrs *a, const char *reflexive,
                       const struct wzp_strings *local, char *why, size_t whylen)
{
    memset(a, 0, sizeof *a);
    if (reflexive) {
        if (strlen(reflexive) > WZP_CALL_ADDR_MAX) {
            snprintf(why, whylen, "reflexive address longer than %d bytes", WZP_CALL_ADDR_MAX);
            return false;
        }
        snprintf(a->reflexive, sizeof a->reflexive, "%s", reflexive);
    }
    if (local->count > WZP_CALL_LOCAL_ADDRS) {
        snprintf(why, whylen, "%zu LAN addresses (at most %d)", local->count, WZP_CALL_LOCAL_ADDRS);
        return false;
    }
    for (size_t i = 0; i < local->count; i++) {
        if (strlen(local->items[i]) > WZP_CALL_ADDR_MAX) {
            snprintf(why, whylen, "LAN address longer than %d bytes", WZP_CALL_ADDR_MAX);
            return false;
        }
        snprintf(a->local[i], sizeof a->local[i], "%s", local->items[i]);
    }
    a->nlocal = (unsigned)local->count;
    return true;
}

/* The call id to quote back to a client: its own, unless it is too long to echo. */
static const char *echo_id(const char *id)
{
    return id && strlen(id) <= WZP_CALL_ID_MAX ? id : NULL;
}

static void refuse_offer(struct wzp_conn *c, const char *id, enum wzp_hangup_reason reason,
                         const char *why)
{
    char esc[2 * WZP_CALL_ID_MAX + 8];
    wzp_log_escape_text(echo_id(id) ? id : "(too long)", esc, sizeof esc);
    WZP_INFO(MOD, "call %s from %s refused: %s", esc, c->fingerprint, why);
    call_event("call_refused", echo_id(id), c->fingerprint, NULL, NULL, why);
    hangup_self(c, reason, echo_id(id));
}

static void on_offer(struct wzp_conn *c, const struct wzp_signal *sig)
{
    struct wzp_worker *w = c->w;
    struct wzp_relay *r = w->relay;
    const char *id = sig->u.direct_call_offer.call_id;
    const char *target = sig->u.direct_call_offer.target_fingerprint;
    char why[96];
    struct wzp_call call;
    memset(&call, 0, sizeof call);
    if (!wzp_call_id_valid(id)) {
        WZP_STAT_INC(&w->stats, calls_invalid);
        snprintf(why, sizeof why,
                 "call id must be 1-%d letters, digits, '-', '.' or '_' (it names the room)",
                 WZP_CALL_ID_MAX);
        refuse_offer(c, id, WZP_HANGUP_ERROR, why);
        return;
    }
    if (!take_addrs(&call.caller_addrs, sig->u.direct_call_offer.caller_reflexive_addr,
                    &sig->u.direct_call_offer.caller_local_addrs, why, sizeof why)) {
        WZP_STAT_INC(&w->stats, calls_invalid);
        refuse_offer(c, id, WZP_HANGUP_ERROR, why);
        return;
    }
    if (strlen(target) > WZP_FINGERPRINT_LEN || !wzp_presence_lookup(&r->presence, target, NULL)) {
        /* as upstream for a callee it cannot reach: a Hangup without call_id */
        WZP_STAT_INC(&w->stats, calls_offline);
        char esc[2 * WZP_FINGERPRINT_LEN + 8];
        wzp_log_escape_text(strlen(target) > WZP_FINGERPRINT_LEN ? "(too long)" : target, esc,
                            sizeof esc);
        WZP_INFO(MOD, "call %s from %s to %s: callee not registered here", id, c->fingerprint, esc);
        call_event("call_refused", id, c->fingerprint, esc, NULL, "callee not registered");
        hangup_self(c, WZP_HANGUP_NORMAL, NULL);
        return;
    }
    if (strcmp(target, c->fingerprint) == 0) {
        WZP_STAT_INC(&w->stats, calls_invalid);
        refuse_offer(c, id, WZP_HANGUP_ERROR, "a client cannot call itself");
        return;
    }
    if (w->policy || w->shadow) {
        struct wzp_call_info info = {.call_id = id,
                                     .caller = c->fingerprint,
                                     .callee = target,
                                     .addr = c->peer,
                                     .auth = c->auth_claims};
        struct wzp_decision d;
        if (w->policy)
            wzp_policy_on_call(w->policy, &info, &d);
        else
            wzp_decision_upstream(&d);
        if (!d.allow) {
            WZP_STAT_INC(&w->stats, calls_refused_policy);
            char denied[WZP_POLICY_REASON_MAX + 16];
            snprintf(denied, sizeof denied, "denied: %s", d.reason);
            refuse_offer(c, id, WZP_HANGUP_DECLINED, denied);
        }
        wzp_shadow_call(w, &info, &d); /* after the live decision is applied */
        if (!d.allow)
            return;
    }
    snprintf(call.id, sizeof call.id, "%s", id);
    memcpy(call.caller, c->fingerprint, sizeof call.caller);
    snprintf(call.callee, sizeof call.callee, "%s", target);
    call.created_ns = wzp_now_ns();
    call.deadline_ns = call.created_ns + (uint64_t)r->cfg.ring_timeout_s * 1000000000ull;
    int busy = 0;
    switch (wzp_calls_offer(&r->calls, &call, &busy)) {
    case WZP_OK:
        break;
    case WZP_EEXIST:
        WZP_STAT_INC(&w->stats, calls_invalid);
        refuse_offer(c, id, WZP_HANGUP_ERROR, "call id in use");
        return;
    case WZP_ESTATE:
        WZP_STAT_INC(&w->stats, calls_busy);
        snprintf(why, sizeof why, "%s has %u calls already", busy ? "the callee" : "the caller",
                 r->calls.max_per_party);
        refuse_offer(c, id, WZP_HANGUP_BUSY, why);
        return;
    default:
        WZP_STAT_INC(&w->stats, calls_relay_full);
        snprintf(why, sizeof why, "the relay's call table is full (%zu calls)", r->calls.max);
        refuse_offer(c, id, WZP_HANGUP_BUSY, why);
        return;
    }
    /* Forward the offer as the client wrote it, but with the caller's registered
     * fingerprint: the callee must see who is really calling. */
    struct wzp_signal fwd = *sig;
    fwd.u.direct_call_offer.caller_fingerprint = c->fingerprint;
    if (!send_to(w, target, &fwd)) {
        wzp_calls_end(&r->calls, id, c->fingerprint, NULL);
        WZP_STAT_INC(&w->stats, calls_offline);
        WZP_INFO(MOD, "call %s from %s to %s: callee unreachable", id, c->fingerprint, target);
        hangup_self(c, WZP_HANGUP_NORMAL, id);
        return;
    }
    WZP_STAT_INC(&w->stats, calls_ringing);
    WZP_INFO(MOD, "call %s: %s calls %s (ringing)", id, c->fingerprint, target);
    call_event("call", id, c->fingerprint, target, NULL, NULL);
    struct wzp_signal ringing = {.type = WZP_SIG_CALL_RINGING};
    ringing.u.call_ringing.call_id = (char *)id;
    send_self(c, &ringing);
}

/* Count a call signal that names an unknown call, or comes from a non-party. */
static void ignore_call_signal(struct wzp_conn *c, const char *what, const char *id, int rv)
{
    char esc[2 * WZP_CALL_ID_MAX + 8];
    wzp_log_escape_text(echo_id(id) ? id : "(too long)", esc, sizeof esc);
    if (rv == WZP_EPERM) {
        WZP_STAT_INC(&c->w->stats, call_signals_not_party);
        WZP_INFO(MOD, "%s from %s (%s) for call %s ignored: %s", what, c->fingerprint, c->peer, esc,
                 strcmp(what, "DirectCallAnswer") == 0 ? "not its callee" : "not a party");
    } else if (rv == WZP_ESTATE) {
        WZP_STAT_INC(&c->w->stats, call_signals_answered);
        WZP_DEBUG(MOD, "%s from %s for call %s ignored: answered already", what, c->fingerprint,
                  esc);
    } else {
        WZP_STAT_INC(&c->w->stats, call_signals_unknown);
        WZP_DEBUG(MOD, "%s from %s for unknown call %s ignored", what, c->fingerprint, esc);
    }
}

/* CallSetup to fp: the room, the relay, and the other party's addresses. */
static void send_setup(struct wzp_worker *w, const struct wzp_call *call, const char *fp,
                       const struct wzp_call_addrs *peer)
{
    char room[WZP_ROOM_NAME_MAX + 1];
    snprintf(room, sizeof room, "%s%s", WZP_CALL_ROOM_PREFIX, call->id);
    char *locals[WZP_CALL_LOCAL_ADDRS];
    for (unsigned i = 0; i < peer->nlocal; i++)
        locals[i] = (char *)peer->local[i];
    struct wzp_signal s = {.type = WZP_SIG_CALL_SETUP};
    s.u.call_setup.call_id = (char *)call->id;
    s.u.call_setup.room = room;
    s.u.call_setup.relay_addr = w->relay->advertise_addr;
    s.u.call_setup.peer_direct_addr = peer->reflexive[0] ? (char *)peer->reflexive : NULL;
    s.u.call_setup.peer_local_addrs.items = locals;
    s.u.call_setup.peer_local_addrs.count = peer->nlocal;
    send_to(w, fp, &s);
}

static void on_answer(struct wzp_conn *c, const struct wzp_signal *sig)
{
    struct wzp_worker *w = c->w;
    struct wzp_relay *r = w->relay;
    const char *id = sig->u.direct_call_answer.call_id;
    bool accept = sig->u.direct_call_answer.accept_mode != WZP_ACCEPT_REJECT;
    struct wzp_call_addrs mine;
    char why[96];
    if (!take_addrs(&mine, sig->u.direct_call_answer.callee_reflexive_addr,
                    &sig->u.direct_call_answer.callee_local_addrs, why, sizeof why)) {
        /* a malformed answer ends the call: both sides learn it at once */
        struct wzp_call call; /* ended as a rejection would: only its callee, only once */
        int rv = wzp_calls_answer(&r->calls, id, c->fingerprint, false, NULL, 0, &call);
        if (rv != WZP_OK) {
            ignore_call_signal(c, "DirectCallAnswer", id, rv);
            return;
        }
        WZP_STAT_INC(&w->stats, calls_invalid);
        WZP_INFO(MOD, "call %s: answer from %s refused: %s", call.id, c->fingerprint, why);
        call_event("hangup", call.id, call.caller, call.callee, c->fingerprint, why);
        hangup_self(c, WZP_HANGUP_ERROR, call.id);
        send_hangup(w, call.caller, WZP_HANGUP_ERROR, call.id);
        return;
    }
    uint64_t setup_deadline = wzp_now_ns() + (uint64_t)r->cfg.call_setup_timeout_s * 1000000000ull;
    struct wzp_call call;
    int rv = wzp_calls_answer(&r->calls, id, c->fingerprint, accept, &mine, setup_deadline, &call);
    if (rv != WZP_OK) {
        ignore_call_signal(c, "DirectCallAnswer", id, rv);
        return;
    }
    if (!accept) {
        WZP_STAT_INC(&w->stats, calls_rejected);
        WZP_INFO(MOD, "call %s: %s rejected the call from %s", call.id, call.callee, call.caller);
        call_event("answer", call.id, call.caller, call.callee, call.callee, "rejected");
        send_hangup(w, call.caller, WZP_HANGUP_NORMAL, call.id);
        return;
    }
    WZP_STAT_INC(&w->stats, calls_accepted);
    WZP_INFO(MOD, "call %s: %s accepted the call from %s (room %s%s)", call.id, call.callee,
             call.caller, WZP_CALL_ROOM_PREFIX, call.id);
    call_event("answer", call.id, call.caller, call.callee, call.callee, "accepted");
    send_to(w, call.caller, sig); /* the answer itself, as the callee wrote it */
    send_setup(w, &call, call.caller, &call.callee_addrs);
    send_setup(w, &call, call.callee, &call.caller_addrs);
}

/* End a call that c's client hung up, telling the peer with the client's reason. */
static void hang_up_one(struct wzp_conn *c, const struct wzp_call *call,
                        enum wzp_hangup_reason reason)
{
    const char *peer = strcmp(call->caller, c->fingerprint) == 0 ? call->callee : call->caller;
    WZP_STAT_INC(&c->w->stats, calls_hung_up);
    WZP_INFO(MOD, "call %s: %s hung up (%s)", call->id, c->fingerprint,
             call->state == WZP_CALL_RINGING ? "while ringing" : "active");
    call_event("hangup", call->id, call->caller, call->callee, c->fingerprint, NULL);
    send_hangup(c->w, peer, reason, call->id);
}

static void on_hangup(struct wzp_conn *c, const struct wzp_signal *sig)
{
    struct wzp_calls *t = &c->w->relay->calls;
    enum wzp_hangup_reason reason = sig->u.hangup.reason;
    if (sig->u.hangup.call_id) {
        struct wzp_call call;
        int rv = wzp_calls_end(t, sig->u.hangup.call_id, c->fingerprint, &call);
        if (rv == WZP_OK)
            hang_up_one(c, &call, reason);
        else
            ignore_call_signal(c, "Hangup", sig->u.hangup.call_id, rv);
        return;
    }
    /* no call_id (older clients): every call of the sender */
    struct wzp_call calls[END_BATCH];
    size_t n;
    do {
        n = wzp_calls_end_party(t, c->fingerprint, calls, END_BATCH);
        for (size_t i = 0; i < n; i++)
            hang_up_one(c, &calls[i], reason);
    } while (n == END_BATCH);
}

static void on_path_report(struct wzp_conn *c, const struct wzp_signal *sig)
{
    const char *id = sig->u.media_path_report.call_id;
    char peer[WZP_FINGERPRINT_LEN + 1];
    int rv = wzp_calls_peer(&c->w->relay->calls, id, c->fingerprint, true, peer);
    if (rv != WZP_OK) {
        ignore_call_signal(c, "MediaPathReport", id, rv);
        return;
    }
    WZP_DEBUG(MOD, "call %s: %s reports direct_ok=%d", id, c->fingerprint,
              sig->u.media_path_report.direct_ok);
    send_to(c->w, peer, sig);
}

/* ---------------------------------------------------------------- dispatch */

void wzp_dcall_message(struct wzp_conn *c, const struct wzp_signal *sig)
{
    switch (sig->type) {
    case WZP_SIG_PING: {
        struct wzp_signal pong = {.type = WZP_SIG_PONG};
        pong.u.ping.timestamp_ms = sig->u.ping.timestamp_ms;
        send_self(c, &pong);
        break;
    }
    case WZP_SIG_REFLECT: {
        char addr[64];
        wzp_conn_path_addr(c, addr, sizeof addr);
        struct wzp_signal resp = {.type = WZP_SIG_REFLECT_RESPONSE};
        resp.u.reflect_response.observed_addr = addr;
        WZP_STAT_INC(&c->w->stats, reflects);
        send_self(c, &resp);
        break;
    }
    case WZP_SIG_DIRECT_CALL_OFFER:
        on_offer(c, sig);
        break;
    case WZP_SIG_DIRECT_CALL_ANSWER:
        on_answer(c, sig);
        break;
    case WZP_SIG_HANGUP:
        on_hangup(c, sig);
        break;
    case WZP_SIG_MEDIA_PATH_REPORT:
        on_path_report(c, sig);
        break;
    default:
        WZP_DEBUG(MOD, "%s: ignoring %s on a _signal connection", c->peer,
                  wzp_signal_type_name(sig->type));
        break;
    }
}

void wzp_dcall_gone(struct wzp_conn *c)
{
    if (!c->presence_reg)
        return;
    struct wzp_relay *r = c->w->relay;
    bool mine = wzp_presence_unregister(&r->presence, c->fingerprint, c->presence_reg);
    c->presence_reg = 0;
    if (!mine)
        return; /* replaced by a newer connection of the same client: its calls go on */
    WZP_DEBUG(MOD, "%s: presence of %s ends", c->peer, c->fingerprint);
    struct wzp_call calls[END_BATCH];
    size_t n;
    do {
        n = wzp_calls_end_party(&r->calls, c->fingerprint, calls, END_BATCH);
        for (size_t i = 0; i < n; i++) {
            const struct wzp_call *call = &calls[i];
            const char *peer =
                strcmp(call->caller, c->fingerprint) == 0 ? call->callee : call->caller;
            WZP_STAT_INC(&c->w->stats, calls_party_gone);
            WZP_INFO(MOD, "call %s ends: %s is gone", call->id, c->fingerprint);
            call_event("hangup", call->id, call->caller, call->callee, c->fingerprint,
                       "party gone");
            send_hangup(c->w, peer, WZP_HANGUP_NORMAL, call->id);
        }
    } while (n == END_BATCH);
}

void wzp_dcall_expire(struct wzp_worker *w, uint64_t now_ns)
{
    struct wzp_call calls[END_BATCH];
    size_t n;
    do {
        n = wzp_calls_expire(&w->relay->calls, now_ns, calls, END_BATCH);
        for (size_t i = 0; i < n; i++) {
            const struct wzp_call *call = &calls[i];
            bool ringing = call->state == WZP_CALL_RINGING;
            if (ringing)
                WZP_STAT_INC(&w->stats, calls_ring_timeout);
            else
                WZP_STAT_INC(&w->stats, calls_setup_timeout);
            WZP_INFO(MOD, "call %s from %s to %s expired: %s", call->id, call->caller, call->callee,
                     ringing ? "not answered in time"
                             : "accepted, but neither the call room nor a media path report "
                               "followed in time");
            call_event("hangup", call->id, call->caller, call->callee, NULL,
                       ringing ? "ring timeout" : "setup timeout");
            send_hangup(w, call->caller, WZP_HANGUP_TIMEOUT, call->id);
            send_hangup(w, call->callee, WZP_HANGUP_TIMEOUT, call->id);
        }
    } while (n == END_BATCH);
}

/* ---------------------------------------------------------------- call rooms */

static int admit(struct wzp_worker *w, const char *id, const char *fp, char *reason,
                 size_t reasonlen)
{
    int rv = wzp_calls_admit(&w->relay->calls, id, fp);
    if (rv == WZP_EPERM)
        snprintf(reason, reasonlen, "not a party of call %s", id);
    else if (rv == WZP_ESTATE)
        snprintf(reason, reasonlen, "call %s is not accepted yet", id);
    else if (rv != WZP_OK)
        snprintf(reason, reasonlen, "no call %s on this relay", id);
    return rv;
}

int wzp_dcall_precheck_join(struct wzp_worker *w, const char *room, const char *fp, char *reason,
                            size_t reasonlen)
{
    const char *id = wzp_call_room_id(room);
    return id ? admit(w, id, fp, reason, reasonlen) : WZP_OK;
}

int wzp_dcall_admit_locked(struct wzp_worker *w, const struct wzp_room *r, const char *fp,
                           char *reason, size_t reasonlen)
{
    const char *id = wzp_call_room_id(r->name);
    if (!id)
        return WZP_OK;
    int rv = admit(w, id, fp, reason, reasonlen);
    if (rv != WZP_OK)
        return rv;
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->parts[i].fingerprint, fp) == 0) {
            snprintf(reason, reasonlen, "already in call room %s", r->name);
            return WZP_EEXIST;
        }
    if (r->count >= 2) {
        snprintf(reason, reasonlen, "call room %s is full", r->name);
        return WZP_EFULL;
    }
    return WZP_OK;
}
