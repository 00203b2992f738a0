/*
 * sfu.c - room membership, media fan-out and weakest-link quality (see sfu.h).
 *
 * Hot path (wzp_sfu_on_datagram): one header check, the room's read lock, and per
 * receiver either a copy into its queue (same worker) or into the SPSC ring to its
 * worker. No allocation, no global lock, no Lua. The write lock is taken only on join,
 * leave, and when a participant's own tier changes.
 */
#include "sfu.h"

#include "common.h"
#include "conn.h"
#include "dcall.h"
#include "handshake.h"
#include "eventlog.h"
#include "log.h"
#include "policy.h"
#include "shadow.h"

#include <stdlib.h>
#include <string.h>

#define MOD "room"

static uint64_t now_ms(void)
{
    return wzp_now_ns() / 1000000ull;
}

/* Deliver a complete signal frame to one participant, wherever its connection lives. */
/*
 * Every room signal goes through the owning worker's control queue, also when that is our
 * own worker: one FIFO per worker, filled under the room's write lock, is what keeps each
 * receiver's RoomUpdates in the order the room changed. (Queueing same-worker receivers
 * directly let an update from a later join overtake one still in the queue.)
 */
static void deliver_ctl(struct wzp_worker *w, uint16_t type, const struct wzp_participant *p,
                        const struct wzp_buf *frame)
{
    if (wzp_mesh_send_ctl(w->node, p->worker, type, p->slot, p->gen, frame->data, frame->len) !=
        WZP_OK)
        WZP_WARN(MOD, "control queue to worker %u full: signal to %s dropped", p->worker,
                 p->fingerprint);
}

static void deliver_frame(struct wzp_worker *w, const struct wzp_participant *p,
                          const struct wzp_buf *frame)
{
    deliver_ctl(w, WZP_CTL_SIGNAL, p, frame);
}

static void broadcast_ctl_locked(struct wzp_worker *w, uint16_t type, struct wzp_room *r,
                                 const struct wzp_buf *frame)
{
    for (size_t i = 0; i < r->count; i++)
        deliver_ctl(w, type, &r->parts[i], frame);
}

static void broadcast_locked(struct wzp_worker *w, struct wzp_room *r, const struct wzp_buf *frame)
{
    broadcast_ctl_locked(w, WZP_CTL_SIGNAL, r, frame);
}

/* The member list is on the heap: a room may hold every session (--max-sessions), too
 * many entries for a worker's stack. */
static int encode_room_update_locked(const struct wzp_room *r, struct wzp_buf *out)
{
    struct wzp_room_participant *list = calloc(r->count ? r->count : 1, sizeof *list);
    if (!list)
        return WZP_ENOMEM;
    for (size_t i = 0; i < r->count; i++) {
        list[i].fingerprint = (char *)r->parts[i].fingerprint;
        list[i].alias = r->parts[i].has_alias ? (char *)r->parts[i].alias : NULL;
        list[i].relay_label = NULL;
    }
    struct wzp_signal sig = {.type = WZP_SIG_ROOM_UPDATE};
    sig.u.room_update.count = (uint32_t)r->count;
    sig.u.room_update.participants.items = list;
    sig.u.room_update.participants.count = r->count;
    int rv = wzp_signal_encode_frame(&sig, out);
    free(list);
    return rv;
}

static int encode_directive(enum wzp_tier tier, const char *why, struct wzp_buf *out)
{
    char reason[64];
    snprintf(reason, sizeof reason, "%s: %s", why, wzp_tier_name(tier));
    struct wzp_signal sig = {.type = WZP_SIG_QUALITY_DIRECTIVE};
    sig.u.quality_directive.recommended_profile = *wzp_tier_profile(tier);
    sig.u.quality_directive.reason = reason;
    return wzp_signal_encode_frame(&sig, out);
}

static void send_room_update_locked(struct wzp_worker *w, struct wzp_room *r)
{
    if (atomic_load_explicit(&r->tap, memory_order_relaxed))
        WZP_INFO("tap", "room %s: RoomUpdate count %zu to %zu participants", r->name, r->count,
                 r->count);
    struct wzp_buf frame = WZP_BUF_INIT;
    if (encode_room_update_locked(r, &frame) == WZP_OK)
        broadcast_ctl_locked(w, WZP_CTL_ROOM_UPDATE, r, &frame);
    else
        WZP_ERROR(MOD, "room %s: could not encode RoomUpdate", r->name);
    wzp_buf_free(&frame);
}

static bool has_room_tier_hook(struct wzp_worker *w)
{
    return w->policy && wzp_policy_has_hook(w->policy, "on_room_tier");
}

/*
 * Make tier the room's tier (write lock held). If it changed, tell everyone; otherwise,
 * if a joiner is given and the room is not at the default tier, tell just the joiner.
 */
static void set_room_tier_locked(struct wzp_worker *w, struct wzp_room *r, enum wzp_tier tier,
                                 const char *why, const struct wzp_participant *joiner)
{
    bool changed = tier != r->tier;
    if (!changed && (!joiner || r->tier == WZP_TIER_GOOD))
        return;
    struct wzp_buf frame = WZP_BUF_INIT;
    if (encode_directive(tier, why, &frame) != WZP_OK) {
        wzp_buf_free(&frame);
        return;
    }
    if (changed) {
        WZP_INFO(MOD, "room %s: tier %s -> %s (%s)", r->name, wzp_tier_name(r->tier),
                 wzp_tier_name(tier), why);
        struct wzp_event ev;
        wzp_event_begin(&ev, "tier");
        wzp_event_str(&ev, "room", r->name);
        wzp_event_str(&ev, "from", wzp_tier_name(r->tier));
        wzp_event_str(&ev, "to", wzp_tier_name(tier));
        wzp_event_str(&ev, "by", why);
        wzp_event_emit(&ev);
        r->tier = tier;
        r->version++;
        broadcast_locked(w, r, &frame);
        WZP_STAT_ADD(&w->stats, directives_sent, r->count);
    } else {
        deliver_frame(w, joiner, &frame);
        WZP_STAT_INC(&w->stats, directives_sent);
    }
    wzp_buf_free(&frame);
}

/*
 * The room changed (write lock held): recompute its tier. With an on_room_tier hook the
 * decision is left to decide_room_tier(), which runs the hook without the lock.
 */
static void retier_locked(struct wzp_worker *w, struct wzp_room *r,
                          const struct wzp_participant *joiner)
{
    r->version++;
    if (has_room_tier_hook(w)) {
        set_room_tier_locked(w, r, r->tier, "room tier", joiner); /* the joiner's directive */
        return;
    }
    set_room_tier_locked(w, r, wzp_room_weakest_locked(r), "weakest link", joiner);
}

/*
 * With an on_room_tier hook: snapshot the tiers under the read lock, ask the policy with
 * no lock held, and apply its answer if the room has not changed meanwhile (if it has,
 * whoever changed it runs this again). Call with no room lock, holding a reference.
 */
static void decide_room_tier(struct wzp_worker *w, struct wzp_room *r)
{
    if (!has_room_tier_hook(w))
        return;
    enum wzp_tier small[64], *tiers = small;
    wzp_room_rdlock(r);
    size_t n = r->count;
    if (n > WZP_ARRAY_LEN(small) && !(tiers = malloc(n * sizeof *tiers))) {
        wzp_room_unlock(r);
        return;
    }
    for (size_t i = 0; i < n; i++)
        tiers[i] = r->parts[i].tier;
    uint64_t version = r->version;
    enum wzp_tier weakest = wzp_room_weakest_locked(r);
    wzp_room_unlock(r);
    if (n > 0) {
        enum wzp_tier t = wzp_policy_on_room_tier(w->policy, r->name, tiers, n, weakest);
        wzp_room_wrlock(r);
        if (r->version == version)
            set_room_tier_locked(w, r, t, t == weakest ? "weakest link" : "policy", NULL);
        wzp_room_unlock(r);
    }
    if (tiers != small)
        free(tiers);
}

static void record_handshake(struct wzp_worker *w, uint64_t ns)
{
    static const double bounds[WZP_HANDSHAKE_NBUCKETS] = WZP_HANDSHAKE_BUCKETS;
    size_t i = 0;
    while (i < WZP_HANDSHAKE_NBUCKETS && (double)ns / 1e9 > bounds[i])
        i++;
    WZP_STAT_INC(&w->stats, handshake_bucket[i]);
    WZP_STAT_ADD(&w->stats, handshake_ns_sum, ns);
}

static int send_answer(struct wzp_conn *c)
{
    struct wzp_signal answer;
    struct wzp_buf frame = WZP_BUF_INIT;
    int rv = wzp_handshake_make_answer(&c->w->relay->identity, &answer);
    if (rv == WZP_OK) {
        rv = wzp_signal_encode_frame(&answer, &frame);
        wzp_signal_clear(&answer);
    }
    if (rv == WZP_OK)
        rv = wzp_conn_queue_signal(c, frame.data, frame.len);
    wzp_buf_free(&frame);
    return rv;
}

static void fill_participant(struct wzp_conn *c, const struct wzp_signal *offer,
                             struct wzp_participant *p)
{
    memset(p, 0, sizeof *p);
    p->id = wzp_participant_next_id();
    p->sends = WZP_GROUP_ROOM;
    p->hears = WZP_GROUPS_ALL;
    p->conn = c;
    p->worker = c->w->idx;
    p->slot = c->slot;
    p->gen = c->gen;
    p->tier = WZP_TIER_GOOD;
    if (c->authenticated) /* featherChat's fingerprint is the identity, as upstream */
        memcpy(p->fingerprint, c->auth_fp, sizeof p->fingerprint);
    else
        wzp_fingerprint(offer->u.call_offer.identity_pub, p->fingerprint);
    if (offer->u.call_offer.alias) {
        p->has_alias = true;
        snprintf(p->alias, sizeof p->alias, "%s", offer->u.call_offer.alias);
    }
}

void wzp_sfu_event_refusal(const char *addr, const char *sni, const char *fingerprint,
                           const char *reason)
{
    if (!wzp_eventlog_enabled())
        return;
    struct wzp_event ev;
    wzp_event_begin(&ev, "refusal");
    wzp_event_str(&ev, "addr", addr);
    wzp_event_str(&ev, "sni", sni && sni[0] ? sni : NULL);
    wzp_event_str(&ev, "fingerprint", fingerprint);
    wzp_event_str(&ev, "reason", reason);
    wzp_event_emit(&ev);
}

/* Ask the policy (when there is one, or a shadow that will be asked later); false
 * (reason filled) if it refuses the join. *info gets what it saw, *d its decision
 * (upstream's without a policy), routing included. */
static bool policy_admits(struct wzp_conn *c, struct wzp_participant *p, struct wzp_join_info *info,
                          struct wzp_decision *d, char *reason, size_t reasonlen)
{
    struct wzp_worker *w = c->w;
    wzp_decision_upstream(d);
    if (!w->policy && !w->shadow)
        return true;
    struct wzp_room *r = wzp_room_acquire(&w->relay->rooms, c->sni);
    unsigned size = 0;
    if (r) {
        size = (unsigned)wzp_room_size(r);
        wzp_room_release(&w->relay->rooms, r);
    }
    *info = (struct wzp_join_info){.id = p->id,
                                   .room = c->sni,
                                   .fingerprint = p->fingerprint,
                                   .alias = p->has_alias ? p->alias : NULL,
                                   .addr = c->peer,
                                   .room_size = size,
                                   .auth = c->auth_claims};
    if (!w->policy)
        return true;
    wzp_policy_on_join(w->policy, info, d);
    if (!d->allow) {
        WZP_STAT_INC(&w->stats, join_refused_policy);
        WZP_INFO(MOD, "%s: refused by policy: %s joining room %s: %s", c->peer, p->fingerprint,
                 c->sni, d->reason);
        wzp_sfu_event_refusal(c->peer, c->sni, p->fingerprint, d->reason);
        snprintf(reason, reasonlen, "denied: %s", d->reason);
        return false;
    }
    p->role = (uint8_t)d->role;
    if (d->role != WZP_ROLE_SPEAKER)
        p->flags |= WZP_PART_NO_SEND;
    c->max_tier = d->max_tier;
    if (d->max_tier >= 0 && (enum wzp_tier)d->max_tier < p->tier)
        p->tier = (enum wzp_tier)d->max_tier;
    return true;
}

/* Give p the groups rt names in room r (write lock held); the room's names are created on
 * first use. WZP_OK, or an error with why filled. */
static int route_locked(struct wzp_room *r, const struct wzp_route *rt, uint64_t *sends,
                        uint64_t *hears, char *why, size_t whylen)
{
    if (!rt->set) {
        *sends = WZP_GROUP_ROOM;
        *hears = WZP_GROUPS_ALL;
        return WZP_OK;
    }
    if (!r->groups) {
        r->groups = malloc(sizeof *r->groups);
        if (!r->groups) {
            snprintf(why, whylen, "out of memory");
            return WZP_ENOMEM;
        }
        wzp_groups_init(r->groups);
    }
    return wzp_groups_resolve(r->groups, rt, sends, hears, why, whylen);
}

/* A call room refused a join (dcall.h); reason says why. */
static int refuse_call_room(struct wzp_conn *c, const struct wzp_participant *p, const char *reason)
{
    WZP_STAT_INC(&c->w->stats, join_refused_call_room);
    WZP_INFO(MOD, "%s: refused: %s joining room %s: %s", c->peer, p->fingerprint, c->sni, reason);
    wzp_sfu_event_refusal(c->peer, c->sni, p->fingerprint, reason);
    return WZP_EPERM;
}

int wzp_sfu_join(struct wzp_conn *c, const struct wzp_signal *offer, char *reason, size_t reasonlen)
{
    struct wzp_worker *w = c->w;
    if (wzp_handshake_verify_offer(offer) != WZP_OK) {
        WZP_STAT_INC(&w->stats, join_refused_signature);
        WZP_INFO(MOD, "%s: refused (room %s): CallOffer signature does not verify", c->peer,
                 c->sni);
        wzp_sfu_event_refusal(c->peer, c->sni, NULL, "bad CallOffer signature");
        snprintf(reason, reasonlen, "bad CallOffer signature");
        return WZP_EINVAL;
    }
    struct wzp_participant p;
    struct wzp_join_info info;
    struct wzp_decision live;
    fill_participant(c, offer, &p);
    if (wzp_dcall_precheck_join(w, c->sni, p.fingerprint, reason, reasonlen) != WZP_OK)
        return refuse_call_room(c, &p, reason);
    if (!policy_admits(c, &p, &info, &live, reason, reasonlen)) {
        wzp_shadow_join(w, &info, &live); /* after the live refusal */
        return WZP_EINVAL;
    }
    snprintf(reason, reasonlen, "internal error");
    if (send_answer(c) != WZP_OK) {
        WZP_ERROR(MOD, "%s: could not build CallAnswer", c->peer);
        return WZP_ENOMEM;
    }
    struct wzp_room *r = wzp_room_acquire(&w->relay->rooms, c->sni);
    if (!r)
        return WZP_ENOMEM;
    wzp_room_wrlock(r);
    if (wzp_dcall_admit_locked(w, r, p.fingerprint, reason, reasonlen) != WZP_OK) {
        wzp_room_unlock(r);
        wzp_room_release(&w->relay->rooms, r);
        return refuse_call_room(c, &p, reason);
    }
    char why[128];
    if (route_locked(r, &live.route, &p.sends, &p.hears, why, sizeof why) != WZP_OK) {
        wzp_room_unlock(r);
        wzp_room_release(&w->relay->rooms, r);
        WZP_STAT_INC(&w->stats, join_refused_policy);
        WZP_WARN(MOD, "%s: refused: the policy's routing for room %s: %s", c->peer, c->sni, why);
        snprintf(reason, reasonlen, "policy routing: %s", why);
        return WZP_EINVAL;
    }
    if (wzp_room_add_locked(r, &p) != WZP_OK) {
        wzp_room_unlock(r);
        wzp_room_release(&w->relay->rooms, r);
        return WZP_ENOMEM;
    }
    c->room = r;
    c->pid = p.id;
    c->part_hint = (uint32_t)(r->count - 1);
    memcpy(c->fingerprint, p.fingerprint, sizeof c->fingerprint);
    wzp_quality_init(&c->quality, now_ms());
    c->tier = p.tier;
    size_t count = r->count;
    send_room_update_locked(w, r);
    retier_locked(w, r, &p);
    wzp_room_unlock(r);
    decide_room_tier(w, r);
    if (w->relay->cfg.debug_tap[0] && (strcmp(w->relay->cfg.debug_tap, "*") == 0 ||
                                       strcmp(w->relay->cfg.debug_tap, r->name) == 0))
        atomic_store(&r->tap, true);
    WZP_STAT_INC(&w->stats, joins);
    struct wzp_event ev;
    wzp_event_begin(&ev, "join");
    wzp_event_int(&ev, "id", (long long)p.id);
    wzp_event_str(&ev, "room", r->name);
    wzp_event_str(&ev, "fingerprint", p.fingerprint);
    wzp_event_str(&ev, "alias", p.has_alias ? p.alias : NULL);
    wzp_event_str(&ev, "addr", c->peer);
    wzp_event_str(&ev, "role", wzp_role_name((enum wzp_role)p.role));
    wzp_event_int(&ev, "participants", (long long)count);
    wzp_event_emit(&ev);
    record_handshake(w, wzp_now_ns() - c->created_ns);
    wzp_shadow_join(w, &info, &live); /* after the join the live decision allowed */
    WZP_INFO(MOD, "join: %s (%s%s%s) from %s joined room %s (%zu participants)%s", p.fingerprint,
             p.has_alias ? "alias \"" : "no alias", p.has_alias ? p.alias : "",
             p.has_alias ? "\"" : "", c->peer, r->name, count,
             p.role == WZP_ROLE_LISTENER ? " as a listener"
             : p.role == WZP_ROLE_MUTED  ? " muted"
                                         : "");
    return WZP_OK;
}

void wzp_sfu_leave(struct wzp_conn *c, const char *why)
{
    struct wzp_room *r = c->room;
    if (!r)
        return;
    struct wzp_worker *w = c->w;
    wzp_room_wrlock(r);
    wzp_room_remove_locked(r, c->pid);
    size_t left = r->count;
    if (left > 0) {
        send_room_update_locked(w, r);
        retier_locked(w, r, NULL);
    }
    r->version++;
    wzp_room_unlock(r);
    if (left > 0)
        decide_room_tier(w, r);
    WZP_INFO(MOD, "leave: %s from %s left room %s (%s; %zu remain)", c->fingerprint, c->peer,
             r->name, why, left);
    struct wzp_event ev;
    wzp_event_begin(&ev, "leave");
    wzp_event_int(&ev, "id", (long long)c->pid);
    wzp_event_str(&ev, "room", r->name);
    wzp_event_str(&ev, "fingerprint", c->fingerprint);
    wzp_event_str(&ev, "addr", c->peer);
    wzp_event_str(&ev, "reason", why);
    wzp_event_int(&ev, "remaining", (long long)left);
    wzp_event_emit(&ev);
    if (w->policy) {
        struct wzp_leave_info info = {.id = c->pid,
                                      .room = r->name,
                                      .fingerprint = c->fingerprint,
                                      .addr = c->peer,
                                      .reason = why};
        wzp_policy_on_leave(w->policy, &info);
    }
    wzp_room_release(&w->relay->rooms, r);
    c->room = NULL;
    WZP_STAT_INC(&w->stats, leaves);
}

/* The tier the room sees for c: the controller's, as the policy may override it, under
 * the participant's cap. */
static enum wzp_tier effective_tier(struct wzp_conn *c, const struct wzp_quality_report *rep)
{
    enum wzp_tier t = c->quality.tier;
    if (c->w->policy) {
        struct wzp_quality_info info = {.id = c->pid,
                                        .room = c->sni,
                                        .fingerprint = c->fingerprint,
                                        .report = rep,
                                        .computed = t,
                                        .previous = c->tier};
        t = wzp_policy_on_quality(c->w->policy, &info);
    }
    if (c->max_tier >= 0 && (enum wzp_tier)c->max_tier < t)
        t = (enum wzp_tier)c->max_tier;
    return t;
}

void wzp_sfu_tier_changed(struct wzp_conn *c, const struct wzp_quality_report *rep)
{
    if (!c->room)
        return; /* left since the report arrived */
    struct wzp_room *r = c->room;
    WZP_STAT_INC(&c->w->stats, tier_changes);
    enum wzp_tier t = effective_tier(c, rep);
    c->tier = t;
    wzp_room_wrlock(r);
    ssize_t i = wzp_room_find_locked(r, c->pid);
    if (i >= 0)
        r->parts[i].tier = t;
    retier_locked(c->w, r, NULL);
    wzp_room_unlock(r);
    decide_room_tier(c->w, r);
}

/* --debug-tap: one line per media packet of a tapped room (read lock held). */
static void tap_packet(const struct wzp_conn *c, const struct wzp_room *r, const uint8_t *data,
                       size_t len)
{
    struct wzp_media_header h;
    struct wzp_quality_report q;
    if (wzp_media_parse(data, len, &h, &q) != WZP_MEDIA_OK)
        return;
    WZP_INFO("tap", "room %s from %s (%s): seq %u codec %s ts %u fec %u/%u%s len %zu fanout %zu%s",
             r->name, c->fingerprint, c->peer, h.seq, wzp_codec_name(h.codec), h.timestamp_ms,
             h.fec_block, h.fec_symbol, h.repair ? " repair" : "", len, r->count ? r->count - 1 : 0,
             h.has_quality ? " +quality" : "");
}

/* Our entry's index: the cached hint when it still points at us, else a search. */
static ssize_t find_self_locked(struct wzp_conn *c, const struct wzp_room *r)
{
    if (c->part_hint < r->count && r->parts[c->part_hint].id == c->pid)
        return (ssize_t)c->part_hint;
    ssize_t i = wzp_room_find_locked(r, c->pid);
    if (i >= 0)
        c->part_hint = (uint32_t)i;
    return i;
}

bool wzp_sfu_on_datagram(struct wzp_conn *c, const uint8_t *data, size_t len,
                         struct wzp_quality_report *tier_report)
{
    struct wzp_worker *w = c->w;
    bool tier_changed = false;
    WZP_STAT_INC(&w->stats, datagrams_received);
    if (c->state != WZP_CONN_JOINED) {
        WZP_STAT_INC(&w->stats, datagrams_not_joined);
        return false;
    }
    enum wzp_media_verdict v = wzp_media_check(data, len);
    if (v != WZP_MEDIA_OK) {
        WZP_STAT_INC(&w->stats, datagrams_invalid);
        WZP_DEBUG(MOD, "%s: dropped datagram of %zu bytes: %s", c->peer, len,
                  wzp_media_verdict_name(v));
        return false;
    }
    bool has_report = wzp_media_has_report(data);
    struct wzp_quality_report rep = {0};
    if (has_report) {
        rep = wzp_media_report(data, len);
        WZP_STAT_INC(&w->stats, quality_reports);
        if (wzp_quality_observe(&c->quality, &rep, now_ms())) {
            *tier_report = rep; /* acted on by the caller, outside ngtcp2 */
            tier_changed = true;
        }
    }
    struct wzp_room *r = c->room;
    wzp_room_rdlock(r);
    ssize_t self = find_self_locked(c, r);
    if (self >= 0 && wzp_media_codec(data) != WZP_CODEC_COMFORT_NOISE) {
        /* activity for policies (last-N speakers): we are the only writer of our entry */
        struct wzp_participant *me = &r->parts[self];
        atomic_store_explicit(&me->packets,
                              atomic_load_explicit(&me->packets, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&me->last_media_ms, wzp_worker_now(c->w) / 1000000u,
                              memory_order_relaxed);
    }
    if (self >= 0 && has_report) {
        struct wzp_participant *me = &r->parts[self];
        atomic_store_explicit(&me->loss_pct, rep.loss_pct, memory_order_relaxed);
        atomic_store_explicit(&me->rtt_4ms, rep.rtt_4ms, memory_order_relaxed);
        atomic_store_explicit(&me->has_report, true, memory_order_relaxed);
    }
    if (self < 0 || (r->parts[self].flags & WZP_PART_NO_SEND)) {
        wzp_room_unlock(r);
        WZP_STAT_INC(&w->stats, datagrams_not_forwarded);
        return tier_changed;
    }
    if (atomic_load_explicit(&r->tap, memory_order_relaxed))
        tap_packet(c, r, data, len);
    wzp_mesh_fanout_begin(w->node, data, len);
    uint64_t sends = r->parts[self].sends;
    for (size_t i = 0; i < r->count; i++) {
        const struct wzp_participant *p = &r->parts[i];
        if (p->id == c->pid || (p->flags & WZP_PART_NO_RECV) ||
            !wzp_route_delivers(sends, p->hears))
            continue;
        if (p->worker == w->idx)
            wzp_conn_queue_datagram(p->conn, data, len);
        else
            wzp_mesh_fanout_add(w->node, p->worker, p->slot, p->gen);
    }
    wzp_mesh_fanout_end(w->node);
    wzp_room_unlock(r);
    return tier_changed;
}

/* ---------------------------------------------------------------- policy room API */

static size_t api_rooms(void *ctx, char (*names)[WZP_ROOM_NAME_MAX + 1], size_t *sizes, size_t max)
{
    struct wzp_relay *r = ctx;
    return wzp_room_table_list(&r->rooms, names, sizes, max);
}

static size_t api_participants(void *ctx, const char *name, struct wzp_participant_view *out,
                               size_t max)
{
    struct wzp_relay *relay = ctx;
    struct wzp_room *r = wzp_room_lookup(&relay->rooms, name);
    if (!r)
        return 0;
    struct wzp_member *m = malloc((max ? max : 1) * sizeof *m);
    size_t n = m ? wzp_room_members(r, m, max, NULL) : 0;
    wzp_room_release(&relay->rooms, r);
    for (size_t i = 0; i < n; i++) {
        struct wzp_participant_view *v = &out[i];
        v->id = m[i].id;
        snprintf(v->fingerprint, sizeof v->fingerprint, "%s", m[i].fingerprint);
        snprintf(v->alias, sizeof v->alias, "%s", m[i].alias);
        v->has_alias = m[i].has_alias;
        v->role = (enum wzp_role)m[i].role;
        v->tier = m[i].tier;
        v->packets = m[i].packets;
        v->last_media_ms = m[i].last_media_ms;
    }
    free(m);
    return n;
}

int wzp_sfu_kick(struct wzp_relay *relay, uint64_t id, const char *reason)
{
    struct wzp_room *r = wzp_room_of_participant(&relay->rooms, id);
    if (!r)
        return WZP_ENOTFOUND;
    int rv = WZP_ENOTFOUND;
    wzp_room_rdlock(r);
    ssize_t i = wzp_room_find_locked(r, id);
    if (i >= 0) {
        const struct wzp_participant *p = &r->parts[i];
        rv = wzp_mesh_post_ctl(&relay->mesh, p->worker, WZP_CTL_KICK, p->slot, p->gen, reason,
                               strlen(reason) + 1);
        WZP_INFO(MOD, "kick: %s from room %s: %s", p->fingerprint, r->name, reason);
    }
    wzp_room_unlock(r);
    wzp_room_release(&relay->rooms, r);
    return rv;
}

static int api_kick(void *ctx, uint64_t id, const char *reason)
{
    return wzp_sfu_kick(ctx, id, reason);
}

/* Participant id's room, write-locked, and its index there (-1 if it left meanwhile);
 * NULL if it is in no room. unlock_participant releases both. */
static struct wzp_room *lock_participant(struct wzp_relay *relay, uint64_t id, ssize_t *i)
{
    struct wzp_room *r = wzp_room_of_participant(&relay->rooms, id);
    if (!r)
        return NULL;
    wzp_room_wrlock(r);
    *i = wzp_room_find_locked(r, id);
    return r;
}

static void unlock_participant(struct wzp_relay *relay, struct wzp_room *r)
{
    wzp_room_unlock(r);
    wzp_room_release(&relay->rooms, r);
}

static int api_set_role(void *ctx, uint64_t id, enum wzp_role role)
{
    struct wzp_relay *relay = ctx;
    ssize_t i;
    struct wzp_room *r = lock_participant(relay, id, &i);
    if (!r)
        return WZP_ENOTFOUND;
    if (i >= 0) {
        struct wzp_participant *p = &r->parts[i];
        if (p->role != role)
            WZP_DEBUG(MOD, "policy: %s in room %s is now a %s", p->fingerprint, r->name,
                      wzp_role_name(role));
        p->role = (uint8_t)role;
        if (role == WZP_ROLE_SPEAKER)
            p->flags &= ~(uint32_t)WZP_PART_NO_SEND;
        else
            p->flags |= WZP_PART_NO_SEND;
    }
    unlock_participant(relay, r);
    return i >= 0 ? WZP_OK : WZP_ENOTFOUND;
}

static int api_route(void *ctx, uint64_t id, const struct wzp_route *rt, char *why, size_t whylen)
{
    struct wzp_relay *relay = ctx;
    ssize_t i;
    struct wzp_room *r = lock_participant(relay, id, &i);
    if (!r)
        return WZP_ENOTFOUND;
    int rv = WZP_ENOTFOUND;
    if (i >= 0) {
        struct wzp_participant *p = &r->parts[i];
        rv = route_locked(r, rt, &p->sends, &p->hears, why, whylen);
        if (rv == WZP_OK && r->groups) {
            char s[256], h[256];
            wzp_groups_describe(r->groups, p->sends, s, sizeof s);
            wzp_groups_describe(r->groups, p->hears, h, sizeof h);
            WZP_DEBUG(MOD, "policy: %s in room %s sends into %s, hears %s", p->fingerprint, r->name,
                      s, h);
        }
    }
    unlock_participant(relay, r);
    return rv;
}

static int api_send_directive(void *ctx, const char *name, enum wzp_tier tier, const char *reason)
{
    struct wzp_relay *relay = ctx;
    struct wzp_worker *w = wzp_worker_current();
    struct wzp_room *r = wzp_room_lookup(&relay->rooms, name);
    if (!r || !w) {
        if (r)
            wzp_room_release(&relay->rooms, r);
        return WZP_ENOTFOUND;
    }
    struct wzp_signal sig = {.type = WZP_SIG_QUALITY_DIRECTIVE};
    sig.u.quality_directive.recommended_profile = *wzp_tier_profile(tier);
    sig.u.quality_directive.reason = (char *)reason;
    struct wzp_buf frame = WZP_BUF_INIT;
    int rv = wzp_signal_encode_frame(&sig, &frame);
    if (rv == WZP_OK) {
        wzp_room_wrlock(r);
        broadcast_locked(w, r, &frame);
        WZP_STAT_ADD(&w->stats, directives_sent, r->count);
        wzp_room_unlock(r);
    }
    wzp_buf_free(&frame);
    wzp_room_release(&relay->rooms, r);
    return rv;
}

/* The shadow policy's room API (shadow.h): it reads the real rooms, and changes nothing. */
static int shadow_kick(void *ctx, uint64_t id, const char *reason)
{
    (void)ctx;
    (void)reason;
    WZP_DEBUG(MOD, "shadow policy: wzp.kick(%llu) not carried out", (unsigned long long)id);
    return WZP_OK;
}

static int shadow_set_role(void *ctx, uint64_t id, enum wzp_role role)
{
    (void)ctx;
    (void)id;
    (void)role;
    return WZP_OK;
}

static int shadow_route(void *ctx, uint64_t id, const struct wzp_route *rt, char *why,
                        size_t whylen)
{
    (void)ctx;
    (void)id;
    (void)rt;
    (void)why;
    (void)whylen;
    return WZP_OK;
}

static int shadow_directive(void *ctx, const char *name, enum wzp_tier tier, const char *reason)
{
    (void)ctx;
    (void)name;
    (void)tier;
    (void)reason;
    return WZP_OK;
}

const struct wzp_policy_ops wzp_sfu_shadow_policy_ops = {
    .rooms = api_rooms,
    .participants = api_participants,
    .kick = shadow_kick,
    .set_role = shadow_set_role,
    .send_directive = shadow_directive,
    .route = shadow_route,
};

const struct wzp_policy_ops wzp_sfu_policy_ops = {
    .rooms = api_rooms,
    .participants = api_participants,
    .kick = api_kick,
    .set_role = api_set_role,
    .send_directive = api_send_directive,
    .route = api_route,
};
