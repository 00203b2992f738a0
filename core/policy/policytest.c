/*
 * policytest.c - the policy test mode: a synthetic relay behind the policy room API and
 * the Lua functions a test file uses (see policytest.h and doc/POLICY.md).
 *
 * The world mirrors what the SFU shows a policy: participants in join order with ids
 * that are never reused, rooms that exist while they have participants, roles, tiers,
 * activity counters. A kick is recorded at once and takes effect when the hook that
 * asked for it has returned, as in the relay (where the kicked connection closes on its
 * own worker later): the participant leaves its room and on_leave runs with reason
 * "kicked".
 */
#include "policytest.h"

#include "common.h"
#include "quality.h"

#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#define ROOM_MAX      (WZP_ROOM_NAME_MAX + 1)
#define ADDR_MAX      64
#define KICK_REASON   256
#define DEFAULT_LEAVE "closed"

struct pt_part {
    uint64_t id;
    char room[ROOM_MAX];
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    char alias[WZP_ALIAS_MAX + 1];
    bool has_alias;
    char addr[ADDR_MAX];
    enum wzp_role role;
    enum wzp_tier tier;
    int max_tier; /* -1: none */
    uint64_t packets, last_media_ms;
    bool kick_pending;
    uint64_t sends, hears; /* routing groups, as the relay keeps them (groups.h) */
};

struct pt_kick {
    uint64_t id;
    char reason[KICK_REASON];
};

struct pt_directive {
    char room[ROOM_MAX];
    enum wzp_tier tier;
    bool has_reason;
    char reason[KICK_REASON];
};

struct pt_world {
    struct wzp_policy *policy;
    uint64_t now_ms;
    uint64_t next_id;
    struct pt_part *parts; /* join order, every room */
    size_t nparts, capparts;
    char (*rooms)[ROOM_MAX];   /* creation order; removed when empty */
    struct wzp_groups *groups; /* [i]: the routing group names of rooms[i] */
    size_t nrooms, caprooms;
    struct pt_kick *kicks;
    size_t nkicks, capkicks;
    struct pt_directive *dirs;
    size_t ndirs, capdirs;
    bool flushing, running;
    uint64_t deadline_ns; /* of the test (or file load) running; C loops check it too */
    int tests_ref;        /* registry: list of {name, fn} */
};

/* Grow *arr (of elem bytes each) to hold n + 1 elements; aborts on OOM (test tool). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *q = realloc(arr, ncap * elem);
    WZP_BUG_ON(!q);
    *cap = ncap;
    return q;
}

static ssize_t find_part(const struct pt_world *w, uint64_t id)
{
    for (size_t i = 0; i < w->nparts; i++)
        if (w->parts[i].id == id)
            return (ssize_t)i;
    return -1;
}

static size_t room_size(const struct pt_world *w, const char *room)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nparts; i++)
        n += strcmp(w->parts[i].room, room) == 0;
    return n;
}

static ssize_t find_room(const struct pt_world *w, const char *room)
{
    for (size_t i = 0; i < w->nrooms; i++)
        if (strcmp(w->rooms[i], room) == 0)
            return (ssize_t)i;
    return -1;
}

static void add_room(struct pt_world *w, const char *room)
{
    if (find_room(w, room) >= 0)
        return;
    size_t cap = w->caprooms;
    w->rooms = grow(w->rooms, &w->caprooms, w->nrooms, sizeof *w->rooms);
    if (w->caprooms != cap || !w->groups) {
        w->groups = realloc(w->groups, w->caprooms * sizeof *w->groups);
        if (!w->groups)
            abort();
    }
    wzp_groups_init(&w->groups[w->nrooms]);
    snprintf(w->rooms[w->nrooms++], ROOM_MAX, "%s", room);
}

/* Remove parts[i]; its room goes when it was the last one in it. */
static void remove_part(struct pt_world *w, size_t i)
{
    char room[ROOM_MAX];
    snprintf(room, sizeof room, "%s", w->parts[i].room);
    memmove(&w->parts[i], &w->parts[i + 1], (w->nparts - i - 1) * sizeof *w->parts);
    w->nparts--;
    ssize_t r = find_room(w, room);
    if (r >= 0 && room_size(w, room) == 0) {
        memmove(&w->rooms[r], &w->rooms[r + 1], (w->nrooms - (size_t)r - 1) * sizeof *w->rooms);
        memmove(&w->groups[r], &w->groups[r + 1], (w->nrooms - (size_t)r - 1) * sizeof *w->groups);
        w->nrooms--;
    }
}

/* Participant i leaves: removed, then on_leave (with copies: the array may change). */
static void leave_part(struct pt_world *w, size_t i, const char *reason)
{
    char room[ROOM_MAX], fp[WZP_FINGERPRINT_LEN + 1], addr[ADDR_MAX];
    snprintf(room, sizeof room, "%s", w->parts[i].room);
    snprintf(fp, sizeof fp, "%s", w->parts[i].fingerprint);
    snprintf(addr, sizeof addr, "%s", w->parts[i].addr);
    uint64_t pid = w->parts[i].id;
    remove_part(w, i);
    struct wzp_leave_info info = {
        .id = pid, .room = room, .fingerprint = fp, .addr = addr, .reason = reason};
    wzp_policy_on_leave(w->policy, &info);
}

/* Kicks take effect once the hook that asked for them has returned. */
static void flush_kicks(struct pt_world *w)
{
    if (w->flushing)
        return;
    w->flushing = true;
    for (;;) {
        size_t i = 0;
        while (i < w->nparts && !w->parts[i].kick_pending)
            i++;
        if (i == w->nparts)
            break;
        leave_part(w, i, "kicked");
    }
    w->flushing = false;
}

/* ---------------------------------------------------------------- policy ops */

static size_t op_rooms(void *ctx, char (*names)[WZP_ROOM_NAME_MAX + 1], size_t *sizes, size_t max)
{
    struct pt_world *w = ctx;
    size_t n = WZP_MIN(w->nrooms, max);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], 256, "%s", w->rooms[i]);
        sizes[i] = room_size(w, w->rooms[i]);
    }
    return n;
}

static void fill_view(const struct pt_part *p, struct wzp_participant_view *v)
{
    memset(v, 0, sizeof *v);
    v->id = p->id;
    snprintf(v->fingerprint, sizeof v->fingerprint, "%s", p->fingerprint);
    snprintf(v->alias, sizeof v->alias, "%s", p->alias);
    v->has_alias = p->has_alias;
    v->role = p->role;
    v->tier = p->tier;
    v->packets = p->packets;
    v->last_media_ms = p->last_media_ms;
}

static size_t op_participants(void *ctx, const char *room, struct wzp_participant_view *out,
                              size_t max)
{
    struct pt_world *w = ctx;
    size_t n = 0;
    for (size_t i = 0; i < w->nparts && n < max; i++)
        if (strcmp(w->parts[i].room, room) == 0)
            fill_view(&w->parts[i], &out[n++]);
    return n;
}

static int op_kick(void *ctx, uint64_t id, const char *reason)
{
    struct pt_world *w = ctx;
    ssize_t i = find_part(w, id);
    if (i < 0)
        return WZP_ENOTFOUND;
    if (!w->parts[i].kick_pending) { /* as in the relay, a second kick changes nothing */
        w->parts[i].kick_pending = true;
        w->kicks = grow(w->kicks, &w->capkicks, w->nkicks, sizeof *w->kicks);
        w->kicks[w->nkicks].id = id;
        snprintf(w->kicks[w->nkicks].reason, KICK_REASON, "%s", reason);
        w->nkicks++;
    }
    return WZP_OK;
}

static int op_set_role(void *ctx, uint64_t id, enum wzp_role role)
{
    struct pt_world *w = ctx;
    ssize_t i = find_part(w, id);
    if (i < 0)
        return WZP_ENOTFOUND;
    w->parts[i].role = role;
    return WZP_OK;
}

static int op_send_directive(void *ctx, const char *room, enum wzp_tier tier, const char *reason)
{
    struct pt_world *w = ctx;
    if (find_room(w, room) < 0)
        return WZP_ENOTFOUND;
    w->dirs = grow(w->dirs, &w->capdirs, w->ndirs, sizeof *w->dirs);
    struct pt_directive *d = &w->dirs[w->ndirs++];
    snprintf(d->room, sizeof d->room, "%s", room);
    d->tier = tier;
    d->has_reason = reason != NULL;
    snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
    return WZP_OK;
}

/* As the relay: the participant's groups in its room, names created on first use. */
static int route_part(struct pt_world *w, struct pt_part *p, const struct wzp_route *rt, char *why,
                      size_t whylen)
{
    if (!rt->set) {
        p->sends = WZP_GROUP_ROOM;
        p->hears = WZP_GROUPS_ALL;
        return WZP_OK;
    }
    ssize_t r = find_room(w, p->room);
    if (r < 0)
        return WZP_ENOTFOUND;
    return wzp_groups_resolve(&w->groups[r], rt, &p->sends, &p->hears, why, whylen);
}

static int op_route(void *ctx, uint64_t id, const struct wzp_route *rt, char *why, size_t whylen)
{
    struct pt_world *w = ctx;
    ssize_t i = find_part(w, id);
    if (i < 0)
        return WZP_ENOTFOUND;
    return route_part(w, &w->parts[i], rt, why, whylen);
}

static uint64_t op_now_ms(void *ctx)
{
    return ((struct pt_world *)ctx)->now_ms;
}

static const struct wzp_policy_ops world_ops = {
    .rooms = op_rooms,
    .participants = op_participants,
    .kick = op_kick,
    .set_role = op_set_role,
    .send_directive = op_send_directive,
    .route = op_route,
    .now_ms = op_now_ms,
};

/* ---------------------------------------------------------------- Lua helpers */

static struct pt_world *world_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* Optional string field of the table at idx; NULL if absent, an error if not a string. */
static const char *opt_field_str(lua_State *L, int idx, const char *fn, const char *k)
{
    lua_getfield(L, idx, k);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "%s: field '%s' must be a string, got %s", fn, k, luaL_typename(L, -1));
    lua_pop(L, 1); /* the string stays alive: the table at idx holds it */
    return s;
}

static double opt_field_num(lua_State *L, int idx, const char *fn, const char *k, double def)
{
    lua_getfield(L, idx, k);
    double v = def;
    if (lua_type(L, -1) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "%s: field '%s' must be a number, got %s", fn, k, luaL_typename(L, -1));
    lua_pop(L, 1);
    if (v < 0)
        luaL_error(L, "%s: field '%s' must be >= 0", fn, k);
    return v;
}

static bool opt_field_bool(lua_State *L, int idx, const char *fn, const char *k)
{
    lua_getfield(L, idx, k);
    bool v = false;
    if (lua_type(L, -1) == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "%s: field '%s' must be a boolean, got %s", fn, k, luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

static uint64_t check_id(lua_State *L, int idx, const char *fn)
{
    lua_Number n = luaL_checknumber(L, idx);
    if (n < 1 || n != (lua_Number)(uint64_t)n)
        luaL_error(L, "%s: participant id must be a positive integer", fn);
    return (uint64_t)n;
}

static size_t check_present(lua_State *L, struct pt_world *w, uint64_t id, const char *fn)
{
    ssize_t i = find_part(w, id);
    if (i < 0)
        luaL_error(L, "%s: no participant %llu in any room", fn, (unsigned long long)id);
    return (size_t)i;
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void push_decision(lua_State *L, const struct wzp_decision *d)
{
    lua_createtable(L, 0, 5);
    lua_pushboolean(L, d->allow);
    lua_setfield(L, -2, "allow");
    if (d->reason[0])
        set_str(L, "reason", d->reason);
}

/* ---------------------------------------------------------------- test functions */

/* test(name, fn) */
static int t_test(lua_State *L)
{
    struct pt_world *w = world_of(L);
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (w->running)
        return luaL_error(L, "test: call test() at the top level of the file, not inside a test");
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->tests_ref);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    return 0;
}

/* connect{addr=, sni=} -> {allow=, reason=} */
static int t_connect(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *addr = opt_field_str(L, 1, "connect", "addr");
    const char *sni = opt_field_str(L, 1, "connect", "sni");
    struct wzp_connect_info info = {.addr = addr ? addr : "192.0.2.1:40000", .sni = sni};
    struct wzp_decision d;
    wzp_policy_on_connect(w->policy, &info, &d);
    flush_kicks(w);
    push_decision(L, &d);
    return 1;
}

/* register{fingerprint=, alias=, addr=, signed=, authenticated=} -> {allow=, reason=} */
static int t_register(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *fp = opt_field_str(L, 1, "register", "fingerprint");
    if (!fp || !fp[0])
        return luaL_error(L, "register: field 'fingerprint' is required");
    const char *addr = opt_field_str(L, 1, "register", "addr");
    struct wzp_register_info info = {
        .fingerprint = fp,
        .alias = opt_field_str(L, 1, "register", "alias"),
        .addr = addr ? addr : "192.0.2.1:40000",
        .is_signed = opt_field_bool(L, 1, "register", "signed"),
        .authenticated = opt_field_bool(L, 1, "register", "authenticated"),
    };
    struct wzp_decision d;
    wzp_policy_on_register(w->policy, &info, &d);
    flush_kicks(w);
    push_decision(L, &d);
    return 1;
}

/* call{caller=, callee=, call_id=, addr=} -> {allow=, reason=} */
static int t_call(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *caller = opt_field_str(L, 1, "call", "caller");
    const char *callee = opt_field_str(L, 1, "call", "callee");
    if (!caller || !callee)
        return luaL_error(L, "call: fields 'caller' and 'callee' (fingerprints) are required");
    const char *id = opt_field_str(L, 1, "call", "call_id");
    const char *addr = opt_field_str(L, 1, "call", "addr");
    char idbuf[32];
    if (!id) {
        snprintf(idbuf, sizeof idbuf, "call%llu", (unsigned long long)w->next_id++);
        id = idbuf;
    }
    struct wzp_call_info info = {
        .call_id = id, .caller = caller, .callee = callee, .addr = addr ? addr : "192.0.2.1:40000"};
    struct wzp_decision d;
    wzp_policy_on_call(w->policy, &info, &d);
    flush_kicks(w);
    push_decision(L, &d);
    return 1;
}

/* join{room=, fingerprint=, alias=, addr=} -> {allow=, reason=, role=, max_tier=, id=} */
static int t_join(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *room = opt_field_str(L, 1, "join", "room");
    if (!room || !room[0] || strlen(room) >= ROOM_MAX)
        return luaL_error(L, "join: field 'room' (a room name) is required");
    const char *fp = opt_field_str(L, 1, "join", "fingerprint");
    const char *alias = opt_field_str(L, 1, "join", "alias");
    const char *addr = opt_field_str(L, 1, "join", "addr");
    uint64_t id = w->next_id++; /* the relay numbers every join attempt */
    char fpbuf[WZP_FINGERPRINT_LEN + 1], addrbuf[ADDR_MAX];
    if (!fp) {
        snprintf(fpbuf, sizeof fpbuf, "0000:0000:0000:0000:0000:0000:%04x:%04x",
                 (unsigned)(id >> 16) & 0xffff, (unsigned)id & 0xffff);
        fp = fpbuf;
    }
    if (!addr) {
        snprintf(addrbuf, sizeof addrbuf, "192.0.2.1:%u", (unsigned)(40000 + id % 20000));
        addr = addrbuf;
    }
    if (strlen(fp) >= sizeof fpbuf || strlen(addr) >= ADDR_MAX)
        return luaL_error(L, "join: fingerprint or addr too long");
    struct wzp_join_info info = {.id = id,
                                 .room = room,
                                 .fingerprint = fp,
                                 .alias = alias,
                                 .addr = addr,
                                 .room_size = (unsigned)room_size(w, room)};
    struct wzp_decision d;
    wzp_policy_on_join(w->policy, &info, &d);
    if (d.allow) {
        w->parts = grow(w->parts, &w->capparts, w->nparts, sizeof *w->parts);
        struct pt_part *p = &w->parts[w->nparts++];
        memset(p, 0, sizeof *p);
        p->id = id;
        snprintf(p->room, sizeof p->room, "%s", room);
        snprintf(p->fingerprint, sizeof p->fingerprint, "%s", fp);
        p->has_alias = alias != NULL;
        snprintf(p->alias, sizeof p->alias, "%s", alias ? alias : "");
        snprintf(p->addr, sizeof p->addr, "%s", addr);
        p->role = d.role;
        p->max_tier = d.max_tier;
        p->tier = WZP_TIER_GOOD; /* as the relay: start at GOOD, under the cap */
        if (d.max_tier >= 0 && (enum wzp_tier)d.max_tier < p->tier)
            p->tier = (enum wzp_tier)d.max_tier;
        add_room(w, room);
        char why[128];
        if (route_part(w, p, &d.route, why, sizeof why) != WZP_OK) {
            /* as the relay: a routing it cannot apply refuses the join */
            remove_part(w, w->nparts - 1);
            d.allow = false;
            snprintf(d.reason, sizeof d.reason, "policy routing: %.100s", why);
        }
    }
    flush_kicks(w);
    push_decision(L, &d);
    set_str(L, "role", wzp_role_name(d.role));
    if (d.max_tier >= 0)
        set_str(L, "max_tier", wzp_tier_name((enum wzp_tier)d.max_tier));
    set_num(L, "id", (double)id);
    return 1;
}

/* leave(id [, reason]) */
static int t_leave(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    uint64_t id = check_id(L, 1, "leave");
    const char *reason = luaL_optstring(L, 2, DEFAULT_LEAVE);
    leave_part(w, check_present(L, w, id, "leave"), reason);
    flush_kicks(w);
    return 0;
}

static uint8_t clamp_u8(double v)
{
    return v >= 255 ? 255 : (uint8_t)(v + 0.5);
}

/* quality{id=, loss_pct=, rtt_ms=, jitter_ms=, tier=} -> on_quality's tier, effective tier */
/* room_tier{room=, tiers={...}} -> the tier on_room_tier picks (the weakest by default). */
static int t_room_tier(lua_State *L)
{
    struct pt_world *w = world_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "room");
    const char *room = luaL_optstring(L, -1, "room");
    lua_getfield(L, 1, "tiers");
    luaL_checktype(L, -1, LUA_TTABLE);
    enum wzp_tier tiers[256];
    size_t n = 0;
    enum wzp_tier weakest = WZP_TIER_GOOD;
    for (; n < WZP_ARRAY_LEN(tiers); n++) {
        lua_rawgeti(L, -1, (int)n + 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        int t = wzp_tier_from_name(luaL_checkstring(L, -1));
        if (t < 0)
            return luaL_error(L, "room_tier: unknown tier '%s'", lua_tostring(L, -1));
        tiers[n] = (enum wzp_tier)t;
        if (n == 0 || tiers[n] < weakest)
            weakest = tiers[n];
        lua_pop(L, 1);
    }
    enum wzp_tier t = wzp_policy_on_room_tier(w->policy, room, tiers, n, weakest);
    lua_pushstring(L, wzp_tier_name(t));
    return 1;
}

static int t_quality(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "id");
    uint64_t id = check_id(L, -1, "quality");
    lua_pop(L, 1);
    size_t i = check_present(L, w, id, "quality");
    double loss = opt_field_num(L, 1, "quality", "loss_pct", 0);
    if (loss > 100)
        return luaL_error(L, "quality: loss_pct is a percentage (0 to 100)");
    struct wzp_quality_report rep = {
        .loss_pct = clamp_u8(loss * 255.0 / 100.0),
        .rtt_4ms = clamp_u8(opt_field_num(L, 1, "quality", "rtt_ms", 0) / 4.0),
        .jitter_ms = clamp_u8(opt_field_num(L, 1, "quality", "jitter_ms", 0)),
    };
    const char *tier_name = opt_field_str(L, 1, "quality", "tier");
    enum wzp_tier computed = wzp_quality_classify(&rep);
    if (tier_name) {
        int t = wzp_tier_from_name(tier_name);
        if (t < 0)
            return luaL_error(L, "quality: unknown tier '%s'", tier_name);
        computed = (enum wzp_tier)t;
    }
    char room[ROOM_MAX], fp[WZP_FINGERPRINT_LEN + 1];
    snprintf(room, sizeof room, "%s", w->parts[i].room);
    snprintf(fp, sizeof fp, "%s", w->parts[i].fingerprint);
    struct wzp_quality_info info = {.id = id,
                                    .room = room,
                                    .fingerprint = fp,
                                    .report = &rep,
                                    .computed = computed,
                                    .previous = w->parts[i].tier};
    enum wzp_tier t = wzp_policy_on_quality(w->policy, &info);
    enum wzp_tier eff = t;
    ssize_t j = find_part(w, id); /* the hook may have changed the world */
    if (j >= 0) {
        if (w->parts[j].max_tier >= 0 && (enum wzp_tier)w->parts[j].max_tier < eff)
            eff = (enum wzp_tier)w->parts[j].max_tier;
        w->parts[j].tier = eff;
    }
    flush_kicks(w);
    lua_pushstring(L, wzp_tier_name(t));
    lua_pushstring(L, wzp_tier_name(eff));
    return 2;
}

/* media(id [, packets]): activity at the current synthetic time */
static int t_media(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    uint64_t id = check_id(L, 1, "media");
    lua_Number n = luaL_optnumber(L, 2, 1);
    if (n < 0 || n != (lua_Number)(uint64_t)n)
        return luaL_error(L, "media: packets must be an integer >= 0");
    struct pt_part *p = &w->parts[check_present(L, w, id, "media")];
    p->packets += (uint64_t)n;
    if (n > 0)
        p->last_media_ms = w->now_ms;
    return 0;
}

/* advance(ms) -> now: move the clock, running every timer at the time it is due */
static int t_advance(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    lua_Number ms = luaL_checknumber(L, 1);
    if (ms < 0 || ms != (lua_Number)(uint64_t)ms)
        return luaL_error(L, "advance: ms must be an integer >= 0");
    uint64_t target = w->now_ms + (uint64_t)ms;
    uint64_t next = wzp_policy_run_timers(w->policy, w->now_ms);
    flush_kicks(w);
    while (next <= target) {
        if (wzp_now_ns() > w->deadline_ns) /* the timers fail at once then: do not spin */
            return luaL_error(L, "advance: time budget of the test exceeded");
        w->now_ms = next;
        next = wzp_policy_run_timers(w->policy, w->now_ms);
        flush_kicks(w);
    }
    w->now_ms = target;
    lua_pushnumber(L, (lua_Number)w->now_ms);
    return 1;
}

/* participant(id) -> view table or nil */
static int t_participant(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    ssize_t i = find_part(w, check_id(L, 1, "participant"));
    if (i < 0) {
        lua_pushnil(L);
        return 1;
    }
    const struct pt_part *p = &w->parts[i];
    lua_createtable(L, 0, 10);
    set_num(L, "id", (double)p->id);
    set_str(L, "room", p->room);
    set_str(L, "fingerprint", p->fingerprint);
    if (p->has_alias)
        set_str(L, "alias", p->alias);
    set_str(L, "addr", p->addr);
    set_str(L, "role", wzp_role_name(p->role));
    set_str(L, "tier", wzp_tier_name(p->tier));
    if (p->max_tier >= 0)
        set_str(L, "max_tier", wzp_tier_name((enum wzp_tier)p->max_tier));
    set_num(L, "packets", (double)p->packets);
    set_num(L, "last_media_ms", (double)p->last_media_ms);
    ssize_t r = find_room(w, p->room);
    char names[WZP_GROUPS_MAX * (WZP_GROUP_NAME_MAX + 1) + 2];
    wzp_groups_describe(&w->groups[r], p->sends, names, sizeof names);
    set_str(L, "sends", names);
    wzp_groups_describe(&w->groups[r], p->hears, names, sizeof names);
    set_str(L, "hears", names);
    return 1;
}

/* deliveries(id) -> the ids that receive a media packet id sends now, in join order (as
 * the relay's fan-out: not itself, not when id is a listener or muted, a shared group). */
static int t_deliveries(lua_State *L)
{
    struct pt_world *w = world_of(L);
    flush_kicks(w);
    uint64_t id = check_id(L, 1, "deliveries");
    ssize_t i = find_part(w, id);
    if (i < 0)
        return luaL_error(L, "deliveries: no participant %llu in any room", (unsigned long long)id);
    const struct pt_part *s = &w->parts[i];
    lua_newtable(L);
    if (s->role != WZP_ROLE_SPEAKER)
        return 1;
    int n = 0;
    for (size_t k = 0; k < w->nparts; k++) {
        const struct pt_part *p = &w->parts[k];
        if (p->id != s->id && strcmp(p->room, s->room) == 0 &&
            wzp_route_delivers(s->sends, p->hears)) {
            lua_pushnumber(L, (lua_Number)p->id);
            lua_rawseti(L, -2, ++n);
        }
    }
    return 1;
}

/* kicked(id) -> reason or nil */
static int t_kicked(lua_State *L)
{
    struct pt_world *w = world_of(L);
    uint64_t id = check_id(L, 1, "kicked");
    for (size_t i = 0; i < w->nkicks; i++)
        if (w->kicks[i].id == id) {
            lua_pushstring(L, w->kicks[i].reason);
            return 1;
        }
    lua_pushnil(L);
    return 1;
}

/* directives() -> list of {room=, tier=, reason=}, oldest first */
static int t_directives(lua_State *L)
{
    struct pt_world *w = world_of(L);
    lua_createtable(L, (int)w->ndirs, 0);
    for (size_t i = 0; i < w->ndirs; i++) {
        lua_createtable(L, 0, 3);
        set_str(L, "room", w->dirs[i].room);
        set_str(L, "tier", wzp_tier_name(w->dirs[i].tier));
        if (w->dirs[i].has_reason)
            set_str(L, "reason", w->dirs[i].reason);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/* The assertions, in Lua: error(..., 2) points at the test line that called them. */
static const char prelude[] =
    "local function show(v, depth)\n"
    "  depth = depth or 0\n"
    "  if type(v) == 'string' then\n"
    "    return (string.format('%q', v):gsub('\\\\\\n', '\\\\n'))\n"
    "  elseif type(v) ~= 'table' then\n"
    "    return tostring(v)\n"
    "  elseif depth > 2 then\n"
    "    return '{...}'\n"
    "  end\n"
    "  local out, n = {}, #v\n"
    "  for i = 1, n do out[#out + 1] = show(v[i], depth + 1) end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do\n"
    "    if not (type(k) == 'number' and k >= 1 and k <= n and k % 1 == 0) then\n"
    "      keys[#keys + 1] = k\n"
    "    end\n"
    "  end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  for _, k in ipairs(keys) do\n"
    "    local name = type(k) == 'string' and k:match('^[%a_][%w_]*$') and k\n"
    "                 or '[' .. show(k, depth + 1) .. ']'\n"
    "    out[#out + 1] = name .. ' = ' .. show(v[k], depth + 1)\n"
    "  end\n"
    "  return '{' .. table.concat(out, ', ') .. '}'\n"
    "end\n"
    "local function equal(a, b, depth)\n"
    "  if a == b then return true end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' or depth > 20 then return false end\n"
    "  for k, v in pairs(a) do if not equal(v, b[k], depth + 1) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function expect(cond, msg)\n"
    "  if not cond then\n"
    "    error('expectation failed' .. (msg ~= nil and ': ' .. tostring(msg) or ''), 2)\n"
    "  end\n"
    "  return cond\n"
    "end\n"
    "function expect_eq(actual, expected, msg)\n"
    "  if not equal(actual, expected, 0) then\n"
    "    error((msg ~= nil and tostring(msg) .. ': ' or '') .. 'expected ' .. show(expected)\n"
    "          .. ', got ' .. show(actual), 2)\n"
    "  end\n"
    "end\n";

/* ---------------------------------------------------------------- running */

/* The error message at the top of the stack, on one line, in buf. */
static const char *error_text(lua_State *L, char *buf, size_t len)
{
    const char *msg = lua_tostring(L, -1);
    if (!msg)
        snprintf(buf, len, "(error object is a %s value)", luaL_typename(L, -1));
    else
        snprintf(buf, len, "%s", msg);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    lua_pop(L, 1);
    return buf;
}

/* "file:line:" at the start of msg? */
static bool has_location(const char *msg)
{
    const char *colon = strchr(msg, ':');
    if (!colon || colon == msg)
        return false;
    size_t digits = strspn(colon + 1, "0123456789");
    return digits > 0 && colon[1 + digits] == ':';
}

/*
 * Message handler: an error without a location (a time budget stop, error(x, 0), a
 * non-string error) gets the file:line of the innermost Lua function running.
 */
static int locate_error(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg && has_location(msg))
        return 1;
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || strcmp(ar.what, "C") == 0)
            continue;
        if (msg)
            lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
        else
            lua_pushfstring(L, "%s:%d: (error object is a %s value)", ar.short_src, ar.currentline,
                            luaL_typename(L, 1));
        return 1;
    }
    return 1;
}

/* The test environment: the test functions, reading the policy's globals through __index. */
static void push_test_env(lua_State *L, struct pt_world *w)
{
    static const luaL_Reg fns[] = {
        {"test", t_test},     {"connect", t_connect},       {"join", t_join},
        {"leave", t_leave},   {"quality", t_quality},       {"room_tier", t_room_tier},
        {"media", t_media},   {"advance", t_advance},       {"participant", t_participant},
        {"kicked", t_kicked}, {"directives", t_directives}, {"register", t_register},
        {"call", t_call},     {"deliveries", t_deliveries}, {NULL, NULL},
    };
    lua_newtable(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushlightuserdata(L, w);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
}

static int run_tests(struct pt_world *w, lua_State *L, const char *tests_path, unsigned budget_ms,
                     FILE *out, FILE *err)
{
    char msg[1024];
    lua_newtable(L);
    w->tests_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    push_test_env(L, w);
    int env = lua_gettop(L);
    if (luaL_loadbuffer(L, prelude, sizeof prelude - 1, "=policytest") != 0) {
        fprintf(err, "wzp-relay: --test-policy: internal error: %s\n",
                error_text(L, msg, sizeof msg));
        return 2;
    }
    lua_pushvalue(L, env);
    lua_setfenv(L, -2);
    if (wzp_policy_pcall_budget(w->policy, 0, 0, 0, budget_ms) != 0) {
        fprintf(err, "wzp-relay: --test-policy: internal error: %s\n",
                error_text(L, msg, sizeof msg));
        return 2;
    }
    if (luaL_loadfilex(L, tests_path, "t") != 0) {
        fprintf(err, "wzp-relay: --test-policy: test file error: %s\n",
                error_text(L, msg, sizeof msg));
        return 2;
    }
    lua_pushvalue(L, env);
    lua_setfenv(L, -2);
    lua_pushcfunction(L, locate_error);
    lua_insert(L, -2);
    w->deadline_ns = wzp_now_ns() + (uint64_t)budget_ms * 1000000ull;
    if (wzp_policy_pcall_budget(w->policy, 0, 0, -2, budget_ms) != 0) {
        fprintf(err, "wzp-relay: --test-policy: test file error while loading: %s\n",
                error_text(L, msg, sizeof msg));
        return 2;
    }
    lua_pop(L, 1); /* the handler */
    flush_kicks(w);
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->tests_ref);
    int tests = lua_gettop(L);
    int ntests = (int)lua_objlen(L, tests);
    if (ntests == 0) {
        fprintf(err, "wzp-relay: --test-policy: %s registers no test (use test(name, fn))\n",
                tests_path);
        return 2;
    }
    unsigned passed = 0, failed = 0;
    w->running = true;
    for (int i = 1; i <= ntests; i++) {
        lua_rawgeti(L, tests, i);
        lua_rawgeti(L, -1, 1);
        char name[256];
        snprintf(name, sizeof name, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_rawgeti(L, -1, 2);
        lua_remove(L, -2);
        lua_pushcfunction(L, locate_error);
        lua_insert(L, -2);
        uint64_t t0 = wzp_now_ns();
        w->deadline_ns = t0 + (uint64_t)budget_ms * 1000000ull;
        int rv = wzp_policy_pcall_budget(w->policy, 0, 0, -2, budget_ms);
        lua_remove(L, rv == 0 ? -1 : -2); /* the handler */
        flush_kicks(w);
        if (rv == 0) {
            passed++;
            fprintf(out, "ok - %s\n", name);
        } else {
            failed++;
            error_text(L, msg, sizeof msg);
            char *budget = strstr(msg, "time budget of ");
            if (budget && (wzp_now_ns() - t0) / 1000000 >= budget_ms)
                snprintf(budget, sizeof msg - (size_t)(budget - msg),
                         "the test ran longer than its time budget of %u ms", budget_ms);
            fprintf(out, "FAIL - %s: %s\n", name, msg);
        }
        fflush(out);
    }
    w->running = false;
    fprintf(out, "%u passed, %u failed\n", passed, failed);
    fflush(out);
    return failed ? 1 : 0;
}

int wzp_policytest_run(const char *policy_path, const char *tests_path,
                       const struct wzp_policy_limits *lim, const char *lua_dir,
                       unsigned test_budget_ms, FILE *out, FILE *err)
{
    struct wzp_shdict shared;
    if (wzp_shdict_init(&shared, WZP_SHARED_MAX_KEYS, WZP_SHARED_MAX_BYTES) != WZP_OK) {
        fprintf(err, "wzp-relay: --test-policy: out of memory\n");
        return 2;
    }
    struct pt_world w = {
        .now_ms = WZP_POLICYTEST_START_MS, .next_id = 1, .deadline_ns = UINT64_MAX};
    static struct wzp_policy_metrics metrics;
    wzp_policy_metrics_init(&metrics);
    struct wzp_policy_env env = {.shared = &shared,
                                 .lua_dir = lua_dir,
                                 .ops = &world_ops,
                                 .ops_ctx = &w,
                                 .metrics = &metrics};
    char msg[1024];
    int rv;
    /* Synthetic time runs far faster than the real one: the per-second share would skip
     * timers the policy's own tests expect to run. */
    struct wzp_policy_limits test_lim = *lim;
    test_lim.share_ms = 0;
    if (wzp_policy_load(&w.policy, policy_path, &test_lim, &env, msg, sizeof msg) != WZP_OK) {
        fprintf(err, "wzp-relay: --test-policy: policy error: %s\n", msg);
        rv = 2;
    } else {
        lua_State *L = wzp_policy_lua_state(w.policy);
        int top = lua_gettop(L);
        rv = run_tests(&w, L, tests_path,
                       test_budget_ms ? test_budget_ms : WZP_POLICYTEST_BUDGET_MS, out, err);
        lua_settop(L, top);
        wzp_policy_free(w.policy);
    }
    free(w.parts);
    free(w.rooms);
    free(w.groups);
    free(w.kicks);
    free(w.dirs);
    wzp_shdict_destroy(&shared);
    return rv;
}
