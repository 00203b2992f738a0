/* decisions.c - the policy decision log and its replay (see decisions.h). */
#include "decisions.h"

#include "common.h"
#include "log.h"

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

struct wzp_linelog wzp_decision_log = WZP_LINELOG_INIT("decision log");

#define INPUT_DEPTH    8            /* nesting of an argument table written to the log */
#define LINE_MAX_BYTES (256 * 1024) /* a longer logged line is not replayed */

/* ---------------------------------------------------------------- recording */

static json_t *lua_to_json(lua_State *L, int idx, int depth);

/* A table whose keys are exactly 1..n is a JSON array; any other table an object with
 * its string keys (other keys are not part of a hook's input). */
static json_t *table_to_json(lua_State *L, int idx, int depth)
{
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1; /* absolute: the loops below push */
    size_t n = lua_objlen(L, idx);
    size_t keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        keys++;
        lua_pop(L, 1);
    }
    if (n > 0 && keys == n) {
        json_t *a = json_array();
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (int)i);
            json_array_append_new(a, lua_to_json(L, -1, depth + 1));
            lua_pop(L, 1);
        }
        return a;
    }
    json_t *o = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING)
            json_object_set_new(o, lua_tostring(L, -2), lua_to_json(L, -1, depth + 1));
        lua_pop(L, 1);
    }
    return o;
}

static json_t *lua_to_json(lua_State *L, int idx, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return json_stringn(s, len);
    }
    case LUA_TNUMBER:
        return json_real(lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TTABLE:
        if (depth < INPUT_DEPTH)
            return table_to_json(L, idx, depth);
        return json_null();
    default:
        return json_null();
    }
}

static json_t *names_json(const char (*names)[WZP_GROUP_NAME_MAX + 1], unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, json_string(names[i]));
    return a;
}

static json_t *decision_json(const struct wzp_decision *d, int tier)
{
    if (!d)
        return json_pack("{s:s}", "tier", wzp_tier_name((enum wzp_tier)tier));
    json_t *o = json_pack("{s:b, s:s, s:s}", "allow", d->allow, "reason", d->reason, "role",
                          wzp_role_name(d->role));
    json_object_set_new(o, "max_tier",
                        d->max_tier >= 0 ? json_string(wzp_tier_name((enum wzp_tier)d->max_tier))
                                         : json_null());
    if (d->route.set) {
        json_object_set_new(o, "sends", names_json(d->route.sends, d->route.nsends));
        json_object_set_new(o, "hears",
                            d->route.hears_all ? json_string("all")
                                               : names_json(d->route.hears, d->route.nhears));
    }
    return o;
}

void wzp_decisions_record(struct lua_State *L, int idx, const char *policy_hash, const char *hook,
                          uint64_t now_ms, const struct wzp_decision *d, int tier)
{
    if (!wzp_linelog_enabled(&wzp_decision_log))
        return;
    char ts[32];
    wzp_log_timestamp(ts);
    json_t *line = json_pack("{s:s, s:s, s:s, s:I}", "ts", ts, "policy", policy_hash, "hook", hook,
                             "now_ms", (json_int_t)now_ms);
    json_object_set_new(line, "input", lua_to_json(L, idx, 0));
    json_object_set_new(line, "decision", decision_json(d, tier));
    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    char *buf = realloc(text, len + 2);
    if (buf) {
        buf[len] = '\n';
        wzp_linelog_write(&wzp_decision_log, buf, len + 1);
    }
    free(buf ? buf : text);
}

/* ---------------------------------------------------------------- replay */

static uint64_t replay_clock;

static size_t no_rooms(void *ctx, char (*names)[WZP_ROOM_NAME_MAX + 1], size_t *sizes, size_t max)
{
    (void)ctx;
    (void)names;
    (void)sizes;
    (void)max;
    return 0;
}

static size_t no_participants(void *ctx, const char *room, struct wzp_participant_view *out,
                              size_t max)
{
    (void)ctx;
    (void)room;
    (void)out;
    (void)max;
    return 0;
}

static int nobody(void *ctx, uint64_t id, const char *reason)
{
    (void)ctx;
    (void)id;
    (void)reason;
    return WZP_ENOTFOUND;
}

static int no_role(void *ctx, uint64_t id, enum wzp_role role)
{
    (void)ctx;
    (void)id;
    (void)role;
    return WZP_ENOTFOUND;
}

static int no_directive(void *ctx, const char *room, enum wzp_tier tier, const char *reason)
{
    (void)ctx;
    (void)room;
    (void)tier;
    (void)reason;
    return WZP_ENOTFOUND;
}

static int no_route(void *ctx, uint64_t id, const struct wzp_route *rt, char *why, size_t whylen)
{
    (void)ctx;
    (void)id;
    (void)rt;
    (void)why;
    (void)whylen;
    return WZP_ENOTFOUND;
}

static uint64_t recorded_clock(void *ctx)
{
    (void)ctx;
    return replay_clock;
}

static const struct wzp_policy_ops replay_ops = {
    .rooms = no_rooms,
    .participants = no_participants,
    .kick = nobody,
    .set_role = no_role,
    .send_directive = no_directive,
    .route = no_route,
    .now_ms = recorded_clock,
};

/* Who the input is about, for the report: room and fingerprint, or the address. */
static void subject(json_t *input, char *out, size_t outlen)
{
    const char *room = json_string_value(json_object_get(input, "room"));
    const char *fp = json_string_value(json_object_get(input, "fingerprint"));
    const char *caller = json_string_value(json_object_get(input, "caller"));
    const char *addr = json_string_value(json_object_get(input, "addr"));
    const char *sni = json_string_value(json_object_get(input, "sni"));
    snprintf(out, outlen, "%s%s%s%s%s%s%s", room ? "room " : "", room ? room : "",
             fp ? " fingerprint " : "", fp ? fp : "", caller ? " caller " : "",
             caller ? caller : "",
             (!room && !fp && !caller) ? (sni ? sni : (addr ? addr : "?")) : "");
}

struct hook_tally {
    char hook[16];
    unsigned calls, changed, now_refused, now_admitted;
};

/* Two decisions differ in what they decide: the reason of two refusals (or of two
 * admissions) may differ without the outcome changing, so it is left out. */
static bool differs(json_t *was, json_t *now)
{
    json_t *a = json_deep_copy(was), *b = json_deep_copy(now);
    json_object_del(a, "reason");
    json_object_del(b, "reason");
    bool same = json_equal(a, b);
    json_decref(a);
    json_decref(b);
    return !same;
}

static struct hook_tally *tally_of(struct hook_tally *t, size_t *n, const char *hook)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(t[i].hook, hook) == 0)
            return &t[i];
    if (*n >= 16)
        return &t[15];
    snprintf(t[*n].hook, sizeof t[*n].hook, "%s", hook);
    return &t[(*n)++];
}

static char *compact(json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

int wzp_decisions_replay(const char *log_path, const char *policy_path,
                         const struct wzp_policy_limits *lim, const struct wzp_policy_env *env,
                         FILE *out, char *err, size_t errlen)
{
    FILE *f = fopen(log_path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s", log_path);
        return 2;
    }
    struct wzp_policy_env e = *env;
    e.ops = &replay_ops;
    e.ops_ctx = NULL;
    struct wzp_policy *p;
    if (wzp_policy_load(&p, policy_path, lim, &e, err, errlen) != WZP_OK) {
        fclose(f);
        return 2;
    }
    struct hook_tally tally[16];
    memset(tally, 0, sizeof tally);
    size_t ntally = 0;
    unsigned lineno = 0, skipped = 0, changed = 0;
    char *line = malloc(LINE_MAX_BYTES);
    while (line && fgets(line, LINE_MAX_BYTES, f)) {
        lineno++;
        json_t *rec = json_loads(line, 0, NULL);
        const char *hook = json_string_value(json_object_get(rec, "hook"));
        json_t *input = json_object_get(rec, "input");
        json_t *was = json_object_get(rec, "decision");
        if (!hook || !json_is_object(input) || !json_is_object(was)) {
            skipped++;
            json_decref(rec);
            continue;
        }
        replay_clock = (uint64_t)json_integer_value(json_object_get(rec, "now_ms"));
        char *in = compact(input);
        struct wzp_decision d;
        int tier;
        int rv = in ? wzp_policy_call_json(p, hook, in, &d, &tier) : WZP_ENOMEM;
        free(in);
        if (rv != WZP_OK) {
            skipped++;
            json_decref(rec);
            continue;
        }
        json_t *now = decision_json(tier >= 0 ? NULL : &d, tier);
        struct hook_tally *t = tally_of(tally, &ntally, hook);
        t->calls++;
        if (differs(was, now)) {
            t->changed++;
            changed++;
            bool before = json_is_true(json_object_get(was, "allow"));
            bool after = json_is_true(json_object_get(now, "allow"));
            if (before && !after)
                t->now_refused++;
            else if (!before && after)
                t->now_admitted++;
            char who[512];
            subject(input, who, sizeof who);
            char *a = compact(was), *b = compact(now);
            fprintf(out, "line %u %s %s: %s\n  recorded %s\n  now      %s\n", lineno, hook, who,
                    before && !after   ? "would now be refused"
                    : !before && after ? "would now be admitted"
                                       : "would be decided otherwise",
                    a ? a : "?", b ? b : "?");
            free(a);
            free(b);
        }
        json_decref(now);
        json_decref(rec);
    }
    free(line);
    fclose(f);
    wzp_policy_free(p);
    fprintf(out, "replayed %u lines of %s against %s", lineno - skipped, log_path, policy_path);
    if (skipped)
        fprintf(out, " (%u lines skipped: not decision records)", skipped);
    fprintf(out, "\n");
    for (size_t i = 0; i < ntally; i++)
        fprintf(out, "  %-12s %u calls, %u would change (%u now refused, %u now admitted)\n",
                tally[i].hook, tally[i].calls, tally[i].changed, tally[i].now_refused,
                tally[i].now_admitted);
    fprintf(out, "%s\n", changed ? "decisions would change" : "no decision would change");
    return changed ? 1 : 0;
}
