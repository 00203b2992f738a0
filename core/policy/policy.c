/*
 * policy.c - LuaJIT policy states: sandbox, budgets, memory cap, hooks and the wzp API
 * (see policy.h for the contract).
 */
#include "policy.h"

#include "common.h"
#include "decisions.h"
#include "log.h"
#include "stats.h"

#include <jansson.h>
#include <nettle/sha2.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#define MOD                   "policy"
#define HOOK_COUNT_INSNS      1000 /* how often the budget check runs, in VM instructions */
#define REQUIRE_NAME_MAX      128
#define ERROR_LOG_WINDOW_NS   (10ull * 1000000000) /* error lines: at most ... */
#define ERROR_LOGS_PER_WINDOW 10                   /* ... this many per window and state */

static const char *const hook_names[] = {"on_connect", "on_join",      "on_leave",    "on_quality",
                                         "on_action",  "on_room_tier", "on_register", "on_call"};
enum { H_CONNECT, H_JOIN, H_LEAVE, H_QUALITY, H_ACTION, H_ROOM_TIER, H_REGISTER, H_CALL, H_COUNT };

struct wzp_policy {
    lua_State *L;
    char path[4096];
    char dir[4096];
    char hash[17]; /* the file's SHA-256, first 16 hex digits (decision log) */
    struct wzp_policy_limits lim;
    struct wzp_policy_env env;
    size_t mem_used;
    bool mem_refused;          /* the allocator refused a request during the current call */
    bool in_lua;               /* policy code is running (its allocations stop short of the cap) */
    uint64_t share_window_ns;  /* start of the current second of call time */
    uint64_t share_used_ns;    /* call time spent in it */
    uint64_t share_logged_ns;  /* when the last "share used up" warning was logged */
    uint64_t errlog_window_ns; /* start of the current error-log window */
    unsigned errlog_lines, errlog_suppressed;
    uint64_t deadline_ns;     /* wall clock: checked cheaply every HOOK_COUNT_INSNS */
    uint64_t cpu_deadline_ns; /* thread CPU time: what the budget really bounds */
    bool over_budget;         /* the running call passed its deadline: it is being unwound */
    char last_error[512];     /* first line of the last error, for load-time messages */
    int hooks[H_COUNT];       /* registry refs, LUA_NOREF when absent */
    unsigned hook_budget_ms[H_COUNT]; /* from the policy's `budgets` table, else the default */
    unsigned call_budget_ms;          /* budget of the call being made (push_hook sets it) */
    unsigned active_budget_ms;        /* budget of the call running now (for messages) */
    struct {
        uint64_t interval_ms, next_ms;
        int ref;
    } timers[WZP_POLICY_MAX_TIMERS];
    size_t ntimers;
    struct wzp_policy_stats own_stats;
    struct wzp_policy_stats *stats; /* own_stats, or the worker's (wzp_policy_count_into) */
};

#define PSTAT_ADD(p, field, n) WZP_STAT_ADD((p)->stats, field, n)

/* ---------------------------------------------------------------- allocator */

/*
 * Memory kept back from policy code: what the relay's own calls into the state (building
 * a hook's argument table, reading its result, reading `budgets`) may use even when the
 * policy has filled everything it may. Those calls are not protected, and an allocation
 * failure there would end the process (LuaJIT's panic), so policy code stops this much
 * short of the cap.
 */
static size_t memory_reserve(const struct wzp_policy *p)
{
    return WZP_MIN(p->lim.memory_bytes / 8, (size_t)1 << 20);
}

static void *policy_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct wzp_policy *p = ud;
    if (nsize == 0) {
        p->mem_used -= osize;
        free(ptr);
        return NULL;
    }
    size_t limit = p->lim.memory_bytes - (p->in_lua ? memory_reserve(p) : 0);
    if (nsize > osize && p->mem_used + (nsize - osize) > limit) {
        p->mem_refused = true;
        return NULL;
    }
    void *q = realloc(ptr, nsize);
    if (!q)
        return NULL;
    p->mem_used = p->mem_used - osize + nsize;
    return q;
}

/* ---------------------------------------------------------------- budget */

static struct wzp_policy *policy_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* The policy's clock: the ops' one when given (synthetic time in policy tests). */
static uint64_t policy_now_ms(const struct wzp_policy *p)
{
    if (p->env.ops && p->env.ops->now_ms)
        return p->env.ops->now_ms(p->env.ops_ctx);
    return wzp_now_ns() / 1000000;
}

/*
 * Whether the running call is past its budget. The budget is CPU time of this thread,
 * so a call the OS preempted (a busy machine, a sanitizer build) is not charged for the
 * wait. Reading that clock is a system call, so the cheap wall clock is checked first:
 * CPU time never runs ahead of it, and only once the wall deadline has passed is the CPU
 * time read, and the wall deadline moved by what is left of the CPU budget.
 */
static bool past_budget(struct wzp_policy *p)
{
    uint64_t now = wzp_now_ns();
    if (now <= p->deadline_ns)
        return false;
    uint64_t cpu = wzp_thread_cpu_ns();
    if (cpu >= p->cpu_deadline_ns)
        return true;
    p->deadline_ns = now + (p->cpu_deadline_ns - cpu);
    return false;
}

/*
 * The time budget. Checked every HOOK_COUNT_INSNS instructions; once the deadline has
 * passed, the error is raised again at every instruction until the call has unwound to
 * the relay (policy_pcall), so a pcall, xpcall or coroutine.resume in the policy only
 * delays the end by the few instructions between the catch and the next one: the hook
 * is global to the state, coroutines included, and an error raised in an unprotected
 * frame ends the call.
 */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct wzp_policy *p = policy_of(L);
    if (p->over_budget || past_budget(p)) {
        if (!p->over_budget) {
            p->over_budget = true;
            PSTAT_ADD(p, budget_exceeded, 1);
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
        }
        lua_Debug where;
        if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
            luaL_error(L, "%s:%d: time budget of %u ms exceeded", where.short_src,
                       where.currentline, p->active_budget_ms);
        luaL_error(L, "time budget of %u ms exceeded", p->active_budget_ms);
    }
}

/*
 * lua_pcall with deadline_ns armed (or the caller's, if earlier). Afterwards the caller's
 * deadline is back and, if this call ran over budget, the hook is back to a check every
 * HOOK_COUNT_INSNS for the next call. A call nested in an over-budget one stays over.
 */
static int pcall_until(struct wzp_policy *p, int nargs, int nresults, int errfunc,
                       uint64_t deadline_ns)
{
    uint64_t outer_deadline = p->deadline_ns, outer_cpu_deadline = p->cpu_deadline_ns;
    bool outer_over = p->over_budget;
    p->deadline_ns = WZP_MIN(outer_deadline, deadline_ns);
    if (deadline_ns != UINT64_MAX) { /* the same allowance in CPU time */
        uint64_t now = wzp_now_ns(), cpu = wzp_thread_cpu_ns();
        uint64_t allowance = deadline_ns > now ? deadline_ns - now : 0;
        p->cpu_deadline_ns = WZP_MIN(outer_cpu_deadline, cpu + allowance);
    }
    p->mem_refused = false;
    bool outer_in_lua = p->in_lua;
    p->in_lua = true;
    int rv = lua_pcall(p->L, nargs, nresults, errfunc);
    p->in_lua = outer_in_lua;
    if (p->over_budget && !outer_over) {
        p->over_budget = false;
        lua_sethook(p->L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT_INSNS);
    }
    p->deadline_ns = outer_deadline;
    p->cpu_deadline_ns = outer_cpu_deadline;
    return rv;
}

/* Message handler: the error and a traceback. An error object that is not a string
 * (error({}) say) is named by its type and where it was raised. */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    char what[256];
    if (!msg) {
        lua_Debug ar;
        int level = 1; /* the first Lua frame above error() */
        while (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline <= 0 &&
               level < 4)
            level++;
        if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
            snprintf(what, sizeof what, "%s:%d: error object is a %s, not a string", ar.short_src,
                     ar.currentline, luaL_typename(L, 1));
        else
            snprintf(what, sizeof what, "error object is a %s, not a string", luaL_typename(L, 1));
        msg = what;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/*
 * Call the function below nargs arguments on the stack with the budget armed. On error
 * logs "<what>: <message + traceback>", counts it and returns false (stack: nothing);
 * on success leaves nresults values.
 */
/*
 * Whether one more policy error may be logged: at most ERROR_LOGS_PER_WINDOW lines per
 * window and state (a policy failing on every packet's quality report would otherwise
 * write thousands of tracebacks a second). The errors are all counted either way; the
 * first line of the next window says how many were not logged.
 */
static bool error_log_allowed(struct wzp_policy *p)
{
    uint64_t now = wzp_now_ns();
    if (now - p->errlog_window_ns >= ERROR_LOG_WINDOW_NS) {
        if (p->errlog_suppressed)
            WZP_WARN(MOD,
                     "%s: %u more policy errors in the last %llu s were not logged "
                     "(wzp_relay_policy_errors_total counts them all)",
                     p->path, p->errlog_suppressed,
                     (unsigned long long)(ERROR_LOG_WINDOW_NS / 1000000000));
        p->errlog_window_ns = now;
        p->errlog_lines = p->errlog_suppressed = 0;
    }
    if (p->errlog_lines < ERROR_LOGS_PER_WINDOW) {
        p->errlog_lines++;
        return true;
    }
    p->errlog_suppressed++;
    return false;
}

static bool policy_pcall(struct wzp_policy *p, const char *what, int nargs, int nresults)
{
    lua_State *L = p->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    uint64_t t0 = wzp_now_ns();
    unsigned budget = p->call_budget_ms ? p->call_budget_ms : p->lim.budget_ms;
    unsigned outer_budget = p->active_budget_ms; /* a hook called from Lua (policy tests) */
    p->call_budget_ms = 0;
    p->active_budget_ms = budget;
    int rv = pcall_until(p, nargs, nresults, base, t0 + (uint64_t)budget * 1000000ull);
    p->active_budget_ms = outer_budget;
    uint64_t t1 = wzp_now_ns();
    PSTAT_ADD(p, calls, 1);
    PSTAT_ADD(p, latency_ns_total, t1 - t0);
    if (t1 - p->share_window_ns >= 1000000000ull) {
        p->share_window_ns = t1;
        p->share_used_ns = 0;
    }
    p->share_used_ns += t1 - t0;
    lua_remove(L, base);
    if (rv == 0)
        return true;
    PSTAT_ADD(p, errors, 1);
    if (rv == LUA_ERRMEM || p->mem_refused)
        PSTAT_ADD(p, memory_errors, 1);
    const char *msg = lua_tostring(L, -1) ? lua_tostring(L, -1) : "error";
    snprintf(p->last_error, sizeof p->last_error, "%.*s", (int)strcspn(msg, "\n"), msg);
    if (error_log_allowed(p))
        WZP_WARN(MOD, "%s: %s%s", what, msg,
                 rv == LUA_ERRMEM || p->mem_refused ? " (memory cap reached)" : "");
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return false;
}

/* ---------------------------------------------------------------- wzp API */

static int api_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    int lvl = wzp_log_parse_level(level);
    if (lvl < 0)
        return luaL_error(L, "wzp.log: unknown level '%s' (error, warn, info, debug)", level);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = lua_gettop(L);
    for (int i = 2; i <= n; i++) {
        if (i > 2)
            luaL_addchar(&b, ' ');
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    WZP_LOG(lvl, "policy", "%s", lua_tostring(L, -1));
    return 0;
}

static int api_now_ms(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)policy_now_ms(policy_of(L)));
    return 1;
}

static uint64_t ttl_arg(lua_State *L, int idx)
{
    lua_Number t = luaL_optnumber(L, idx, 0);
    if (t < 0)
        luaL_error(L, "ttl must be >= 0 (seconds)");
    return (uint64_t)(t * 1000.0);
}

static struct wzp_shdict *shared_of(lua_State *L)
{
    struct wzp_policy *p = policy_of(L);
    if (!p->env.shared)
        luaL_error(L, "wzp.shared is not available here");
    return p->env.shared;
}

static int shdict_error(lua_State *L, int rv, const char *key)
{
    if (rv == WZP_EFULL)
        return luaL_error(L, "wzp.shared is full (key '%s')", key);
    if (rv == WZP_EINVAL)
        return luaL_error(L, "wzp.shared: bad key or value for '%s'", key);
    return luaL_error(L, "wzp.shared: %s", wzp_strerror(rv));
}

/* wzp.shared.set(key, value [, ttl_seconds]) */
static int api_shared_set(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    struct wzp_shval v = {0};
    switch (lua_type(L, 2)) {
    case LUA_TNUMBER:
        v.type = WZP_SHVAL_NUMBER;
        v.number = lua_tonumber(L, 2);
        break;
    case LUA_TBOOLEAN:
        v.type = WZP_SHVAL_BOOLEAN;
        v.boolean = lua_toboolean(L, 2);
        break;
    case LUA_TSTRING:
        v.type = WZP_SHVAL_STRING;
        v.string = lua_tolstring(L, 2, &v.len);
        break;
    case LUA_TNIL:
        wzp_shdict_delete(shared_of(L), key, policy_now_ms(policy_of(L)));
        return 0;
    default:
        return luaL_error(L, "wzp.shared.set: values are numbers, strings or booleans");
    }
    int rv = wzp_shdict_set(shared_of(L), key, &v, ttl_arg(L, 3), policy_now_ms(policy_of(L)));
    return rv ? shdict_error(L, rv, key) : 0;
}

static int api_shared_get(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    struct wzp_shval v;
    int rv = wzp_shdict_get(shared_of(L), key, &v, policy_now_ms(policy_of(L)));
    if (rv == WZP_ENOTFOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rv)
        return shdict_error(L, rv, key);
    if (v.type == WZP_SHVAL_NUMBER)
        lua_pushnumber(L, v.number);
    else if (v.type == WZP_SHVAL_BOOLEAN)
        lua_pushboolean(L, v.boolean);
    else if (v.type == WZP_SHVAL_STRING)
        lua_pushlstring(L, v.string, v.len);
    else
        lua_pushnil(L);
    free((void *)v.string);
    return 1;
}

/* wzp.shared.incr(key, delta [, init [, ttl_seconds]]) -> new value */
static int api_shared_incr(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    double delta = luaL_checknumber(L, 2), out;
    double init = luaL_optnumber(L, 3, 0);
    int rv = wzp_shdict_incr(shared_of(L), key, delta, init, ttl_arg(L, 4),
                             policy_now_ms(policy_of(L)), &out);
    if (rv)
        return shdict_error(L, rv, key);
    lua_pushnumber(L, out);
    return 1;
}

static int api_shared_delete(lua_State *L)
{
    lua_pushboolean(L, wzp_shdict_delete(shared_of(L), luaL_checkstring(L, 1),
                                         policy_now_ms(policy_of(L))) == WZP_OK);
    return 1;
}

/* wzp.shared.ttl(key) -> seconds left, -1 without expiry, nil if absent */
static int api_shared_ttl(lua_State *L)
{
    int64_t ttl;
    if (wzp_shdict_ttl(shared_of(L), luaL_checkstring(L, 1), policy_now_ms(policy_of(L)), &ttl)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushnumber(L, ttl < 0 ? -1 : (lua_Number)ttl / 1000.0);
    return 1;
}

/* require(name): Lua files from the policy's directory, then the relay's lua/ directory. */
static int api_require(lua_State *L)
{
    struct wzp_policy *p = policy_of(L);
    const char *name = luaL_checkstring(L, 1);
    size_t n = strlen(name);
    if (n == 0 || n > REQUIRE_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != n)
        return luaL_error(L, "require: invalid module name '%s'", name);
    lua_getfield(L, LUA_REGISTRYINDEX, "wzp.loaded");
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    char rel[REQUIRE_NAME_MAX + 8], path[8300];
    snprintf(rel, sizeof rel, "%s", name);
    for (char *c = rel; *c; c++)
        if (*c == '.')
            *c = '/';
    const char *dirs[] = {p->dir, p->env.lua_dir};
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        if (!dirs[i])
            continue;
        snprintf(path, sizeof path, "%s/%s.lua", dirs[i], rel);
        if (stat(path, &st) != 0)
            continue;
        if (luaL_loadfilex(L, path, "t") != 0)
            return lua_error(L);
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        return 1;
    }
    return luaL_error(L, "require: module '%s' not found in %s or %s", name, p->dir,
                      p->env.lua_dir ? p->env.lua_dir : "(no lua dir)");
}

/* ---- room API */

static const char *const role_names[WZP_ROLE_COUNT] = {"speaker", "listener", "muted"};

const char *wzp_role_name(enum wzp_role role)
{
    return (unsigned)role < WZP_ROLE_COUNT ? role_names[role] : "?";
}

static const struct wzp_policy_ops *ops_of(lua_State *L, void **ctx)
{
    struct wzp_policy *p = policy_of(L);
    if (!p->env.ops)
        luaL_error(L, "the room API is not available here");
    *ctx = p->env.ops_ctx;
    return p->env.ops;
}

#define API_MAX_ROOMS        1024
#define API_MAX_PARTICIPANTS 4096

static int api_rooms(lua_State *L)
{
    void *ctx;
    const struct wzp_policy_ops *ops = ops_of(L, &ctx);
    /* scratch space owned by Lua's GC, so an error on the way cannot leak it */
    char(*names)[WZP_ROOM_NAME_MAX + 1] = lua_newuserdata(L, API_MAX_ROOMS * sizeof *names);
    size_t *sizes = lua_newuserdata(L, API_MAX_ROOMS * sizeof *sizes);
    size_t n = WZP_MIN(ops->rooms(ctx, names, sizes, API_MAX_ROOMS), (size_t)API_MAX_ROOMS);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, names[i]);
        lua_setfield(L, -2, "name");
        lua_pushnumber(L, (lua_Number)sizes[i]);
        lua_setfield(L, -2, "size");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1; /* the table; the scratch userdata below it is garbage */
}

static void push_participant(lua_State *L, const struct wzp_participant_view *v)
{
    lua_createtable(L, 0, 7);
    lua_pushnumber(L, (lua_Number)v->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, v->fingerprint);
    lua_setfield(L, -2, "fingerprint");
    if (v->has_alias) {
        lua_pushstring(L, v->alias);
        lua_setfield(L, -2, "alias");
    }
    lua_pushstring(L, wzp_role_name(v->role));
    lua_setfield(L, -2, "role");
    lua_pushstring(L, wzp_tier_name(v->tier));
    lua_setfield(L, -2, "tier");
    lua_pushnumber(L, (lua_Number)v->packets);
    lua_setfield(L, -2, "packets");
    lua_pushnumber(L, (lua_Number)v->last_media_ms);
    lua_setfield(L, -2, "last_media_ms");
}

static int api_participants(lua_State *L)
{
    void *ctx;
    const struct wzp_policy_ops *ops = ops_of(L, &ctx);
    const char *room = luaL_checkstring(L, 1);
    struct wzp_participant_view *v = lua_newuserdata(L, API_MAX_PARTICIPANTS * sizeof *v);
    size_t n = WZP_MIN(ops->participants(ctx, room, v, API_MAX_PARTICIPANTS),
                       (size_t)API_MAX_PARTICIPANTS);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_participant(L, &v[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static uint64_t id_arg(lua_State *L, int idx)
{
    lua_Number n = luaL_checknumber(L, idx);
    if (n < 1 || n != (lua_Number)(uint64_t)n)
        luaL_error(L, "participant id must be a positive integer");
    return (uint64_t)n;
}

static int api_kick(lua_State *L)
{
    void *ctx;
    const struct wzp_policy_ops *ops = ops_of(L, &ctx);
    uint64_t id = id_arg(L, 1);
    const char *reason = luaL_optstring(L, 2, "kicked by policy");
    lua_pushboolean(L, ops->kick(ctx, id, reason) == WZP_OK);
    return 1;
}

static int api_set_role(lua_State *L)
{
    void *ctx;
    const struct wzp_policy_ops *ops = ops_of(L, &ctx);
    uint64_t id = id_arg(L, 1);
    const char *name = luaL_checkstring(L, 2);
    for (int r = 0; r < WZP_ROLE_COUNT; r++)
        if (strcmp(name, role_names[r]) == 0) {
            lua_pushboolean(L, ops->set_role(ctx, id, (enum wzp_role)r) == WZP_OK);
            return 1;
        }
    return luaL_error(L, "wzp.set_role: unknown role '%s' (speaker, listener, muted)", name);
}

static bool read_route(lua_State *L, struct wzp_route *rt);

/* wzp.route(id [, {sends = {...}, hears = {...} | "all"}]): no table = the default. */
static int api_route(lua_State *L)
{
    void *ctx;
    const struct wzp_policy_ops *ops = ops_of(L, &ctx);
    uint64_t id = id_arg(L, 1);
    struct wzp_route rt;
    memset(&rt, 0, sizeof rt);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushvalue(L, 2);
        bool ok = read_route(L, &rt);
        lua_pop(L, 1);
        if (!ok)
            return luaL_error(L,
                              "wzp.route: sends and hears must be lists of up to %d group "
                              "names (letters, digits, '-', '_', '.'), hears may be \"all\"",
                              WZP_ROUTE_NAMES_MAX);
    }
    if (!ops->route)
        return luaL_error(L, "wzp.route is not available here");
    char why[128] = "";
    int rv = ops->route(ctx, id, &rt, why, sizeof why);
    if (rv == WZP_EINVAL || rv == WZP_EFULL)
        return luaL_error(L, "wzp.route: %s", why);
    lua_pushboolean(L, rv == WZP_OK);
    return 1;
}

static int api_send_directive(lua_State *L)
{
    void *ctx;
    const struct wzp_policy_ops *ops = ops_of(L, &ctx);
    const char *room = luaL_checkstring(L, 1);
    const char *tier = luaL_checkstring(L, 2);
    int t = wzp_tier_from_name(tier);
    if (t < 0)
        return luaL_error(L, "wzp.send_directive: unknown tier '%s'", tier);
    lua_pushboolean(
        L, ops->send_directive(ctx, room, (enum wzp_tier)t, luaL_optstring(L, 3, NULL)) == WZP_OK);
    return 1;
}

void wzp_policy_metrics_init(struct wzp_policy_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
}

const char *wzp_policy_metric_name(struct wzp_policy_metrics *m, size_t i)
{
    pthread_mutex_lock(&m->lock);
    const char *name = i < m->count ? m->names[i] : NULL;
    pthread_mutex_unlock(&m->lock);
    return name;
}

double wzp_policy_metric_value(struct wzp_policy_metrics *m, size_t i)
{
    pthread_mutex_lock(&m->lock);
    double v = i < m->count ? m->values[i] : 0;
    pthread_mutex_unlock(&m->lock);
    return v;
}

/* wzp.metric(name [, n]): add n (default 1) to a policy counter; returns the new value. */
static int api_metric(lua_State *L)
{
    struct wzp_policy_metrics *m = policy_of(L)->env.metrics;
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_Number n = luaL_optnumber(L, 2, 1);
    if (!m)
        return luaL_error(L, "wzp.metric is not available here");
    if (len == 0 || len > WZP_POLICY_METRIC_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != len)
        return luaL_error(L, "wzp.metric: name '%s' must be 1-%d letters, digits or '_'", name,
                          WZP_POLICY_METRIC_NAME_MAX);
    pthread_mutex_lock(&m->lock);
    size_t i = 0;
    while (i < m->count && strcmp(m->names[i], name) != 0)
        i++;
    if (i == m->count && m->count < WZP_POLICY_MAX_METRICS)
        memcpy(m->names[m->count++], name, len + 1);
    double v = 0;
    bool ok = i < m->count;
    if (ok)
        v = m->values[i] += n;
    pthread_mutex_unlock(&m->lock);
    if (!ok)
        return luaL_error(L, "wzp.metric: at most %d names", WZP_POLICY_MAX_METRICS);
    lua_pushnumber(L, v);
    return 1;
}

/* wzp.every(ms, fn): call fn every ms milliseconds (on the timer worker). */
static int api_every(lua_State *L)
{
    struct wzp_policy *p = policy_of(L);
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    /* also refuses NaN and infinity: 2^64 or 1e300 "to turn a timer off" wrapped to 0 */
    if (!(ms >= WZP_POLICY_MIN_TIMER_MS && ms <= WZP_POLICY_MAX_TIMER_MS))
        return luaL_error(L, "wzp.every: the interval must be %d to %d ms, got %g",
                          WZP_POLICY_MIN_TIMER_MS, WZP_POLICY_MAX_TIMER_MS, (double)ms);
    if (p->ntimers >= WZP_POLICY_MAX_TIMERS)
        return luaL_error(L, "wzp.every: at most %d timers", WZP_POLICY_MAX_TIMERS);
    lua_pushvalue(L, 2);
    p->timers[p->ntimers].ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->timers[p->ntimers].interval_ms = (uint64_t)ms;
    p->timers[p->ntimers].next_ms = policy_now_ms(p) + (uint64_t)ms;
    p->ntimers++;
    return 0;
}

/*
 * Whether this state has used its share of the current second (hooks and timers
 * together): its timers then wait for the next second, so timers alone can never take
 * more than a share of a worker that also forwards media. Hooks still run (a join needs
 * its answer). Logged at most every 10 s.
 */
static bool share_used_up(struct wzp_policy *p)
{
    uint64_t now = wzp_now_ns();
    if (!p->lim.share_ms || now - p->share_window_ns >= 1000000000ull)
        return false;
    if (p->share_used_ns < (uint64_t)p->lim.share_ms * 1000000ull)
        return false;
    if (wzp_log_due(&p->share_logged_ns, now, ERROR_LOG_WINDOW_NS)) {
        WZP_WARN(MOD,
                 "%s: policy calls took %llu ms of this worker's last second (share %u ms): "
                 "timers are skipped until the next second (wzp_relay_policy_timers_skipped_total)",
                 p->path, (unsigned long long)(p->share_used_ns / 1000000), p->lim.share_ms);
    }
    return true;
}

static void decision_default(struct wzp_decision *d);

void wzp_decision_upstream(struct wzp_decision *d)
{
    decision_default(d);
}

bool wzp_policy_share_used_up(struct wzp_policy *p)
{
    return share_used_up(p);
}

static bool same_names(const char (*a)[WZP_GROUP_NAME_MAX + 1], unsigned na,
                       const char (*b)[WZP_GROUP_NAME_MAX + 1], unsigned nb)
{
    if (na != nb)
        return false;
    for (unsigned i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

bool wzp_decision_same(const struct wzp_decision *a, const struct wzp_decision *b)
{
    if (a->allow != b->allow || a->role != b->role || a->max_tier != b->max_tier ||
        a->route.set != b->route.set)
        return false;
    if (!a->route.set)
        return true;
    return a->route.hears_all == b->route.hears_all &&
           same_names(a->route.sends, a->route.nsends, b->route.sends, b->route.nsends) &&
           (a->route.hears_all ||
            same_names(a->route.hears, a->route.nhears, b->route.hears, b->route.nhears));
}

uint64_t wzp_policy_run_timers(struct wzp_policy *p, uint64_t now_ms)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < p->ntimers; i++) {
        if (p->timers[i].next_ms <= now_ms) {
            if (share_used_up(p)) {
                PSTAT_ADD(p, timers_skipped, 1);
            } else {
                lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->timers[i].ref);
                policy_pcall(p, "timer", 0, 0); /* errors are logged; the timer keeps running */
            }
            p->timers[i].next_ms = now_ms + p->timers[i].interval_ms;
        }
        next = WZP_MIN(next, p->timers[i].next_ms);
    }
    return next;
}

static void register_api(lua_State *L)
{
    static const luaL_Reg wzp_fns[] = {
        {"log", api_log},     {"now_ms", api_now_ms},
        {"rooms", api_rooms}, {"participants", api_participants},
        {"kick", api_kick},   {"set_role", api_set_role},
        {"route", api_route}, {"send_directive", api_send_directive},
        {"every", api_every}, {"metric", api_metric},
        {NULL, NULL},
    };
    static const luaL_Reg shared_fns[] = {
        {"get", api_shared_get},       {"set", api_shared_set}, {"incr", api_shared_incr},
        {"delete", api_shared_delete}, {"ttl", api_shared_ttl}, {NULL, NULL},
    };
    lua_newtable(L);
    luaL_register(L, NULL, wzp_fns);
    lua_newtable(L);
    luaL_register(L, NULL, shared_fns);
    lua_setfield(L, -2, "shared");
    lua_setglobal(L, "wzp");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "wzp.loaded");
}

/* ---------------------------------------------------------------- sandbox */

static void sandbox(lua_State *L, bool unsafe)
{
    luaL_openlibs(L);
    if (unsafe)
        return;
    static const char *const remove_globals[] = {
        "io",         "debug",   "ffi",    "package",  "dofile", "loadfile", "load",
        "loadstring", "require", "module", "newproxy", "gcinfo", "jit"};
    for (size_t i = 0; i < WZP_ARRAY_LEN(remove_globals); i++) {
        lua_pushnil(L);
        lua_setglobal(L, remove_globals[i]);
    }
    /* os: keep only the clock and time functions */
    lua_getglobal(L, "os");
    lua_newtable(L);
    static const char *const keep_os[] = {"time", "clock", "date", "difftime"};
    for (size_t i = 0; i < WZP_ARRAY_LEN(keep_os); i++) {
        lua_getfield(L, -2, keep_os[i]);
        lua_setfield(L, -2, keep_os[i]);
    }
    lua_setglobal(L, "os");
    lua_pop(L, 1);
    /* ffi and jit must not be reachable through package.loaded either */
    lua_pushcfunction(L, api_require);
    lua_setglobal(L, "require");
    /*
     * Library functions replaced by Lua versions that keep a policy inside its limits
     * (this chunk is ours and trusted; it runs before the policy's file):
     * - xpcall: its message handler runs before the stack unwinds, inside the error that
     *   the time budget raises from its hook, where LuaJIT runs no hooks, so a handler
     *   that loops would never be stopped. This one calls the handler after unwinding, as
     *   ordinary budgeted code (a traceback taken there shows the handler's stack).
     * - string.gsub with a replacement function re-enters Lua from C; a replacement that
     *   calls gsub again recursed on the C stack until SIGSEGV. Nesting is bounded.
     * - string.find, match, gmatch and gsub: one call is C the time budget cannot stop,
     *   and a pattern with several "." repetitions backtracks in time polynomial in the
     *   subject's length ("a" * 300 against ".-.-.-b": 3 s). A pattern with two or more
     *   is refused when (length + 1) ^ (repetitions, + 1 unless anchored) passes
     *   WZP_POLICY_PATTERN_STEPS, an upper bound of the steps it could take.
     */
    static const char sandbox_fmt[] =
        "local pcall, error, type, byte, sub = pcall, error, type, string.byte, string.sub\n"
        "local find, match, gmatch, gsub = string.find, string.match, string.gmatch, "
        "string.gsub\n"
        "local function finish(h, ok, ...)\n"
        "  if ok then return true, ... end\n"
        "  local _, r = pcall(h, (...))\n"
        "  return false, r\n"
        "end\n"
        "xpcall = function(f, h, ...) return finish(h, pcall(f, ...)) end\n"
        "local function dot_reps(p)\n"
        "  local n, i, len = 0, 1, #p\n"
        "  while i <= len do\n"
        "    local c = byte(p, i)\n"
        "    if c == 37 then\n" /* %x; %bxy */
        "      i = i + (byte(p, i + 1) == 98 and 4 or 2)\n"
        "    elseif c == 91 then\n" /* a set: skip to its ] */
        "      i = i + 1\n"
        "      if byte(p, i) == 94 then i = i + 1 end\n"
        "      if byte(p, i) == 93 then i = i + 1 end\n"
        "      while i <= len and byte(p, i) ~= 93 do\n"
        "        if byte(p, i) == 37 then i = i + 1 end\n"
        "        i = i + 1\n"
        "      end\n"
        "      i = i + 1\n"
        "    elseif c == 46 then\n" /* . followed by * + or - */
        "      local q = byte(p, i + 1)\n"
        "      if q == 42 or q == 43 or q == 45 then n = n + 1; i = i + 2 else i = i + 1 end\n"
        "    else\n"
        "      i = i + 1\n"
        "    end\n"
        "  end\n"
        "  return n\n"
        "end\n"
        "local function check(name, s, p, plain)\n"
        "  if plain or type(s) ~= 'string' or type(p) ~= 'string' then return end\n"
        "  local k = dot_reps(p)\n"
        "  if k < 2 then return end\n"
        "  local e = k + (byte(p, 1) == 94 and 0 or 1)\n"
        "  if (#s + 1) ^ e > %.0f then\n"
        "    error(name .. ': pattern \"' .. sub(p, 1, 40) .. '\" has ' .. k .. ' \".\" "
        "repetitions and could backtrack for seconds on ' .. #s .. ' bytes; use fewer, a "
        "shorter subject, or lua/glob.lua (linear)', 3)\n"
        "  end\n"
        "end\n"
        "string.find = function(s, p, init, plain)\n"
        "  check('string.find', s, p, plain)\n"
        "  return find(s, p, init, plain)\n"
        "end\n"
        "string.match = function(s, p, init) check('string.match', s, p) return match(s, p, "
        "init) end\n"
        "string.gmatch = function(s, p) check('string.gmatch', s, p) return gmatch(s, p) end\n"
        "local depth = 0\n"
        "local function unnest(ok, ...)\n"
        "  depth = depth - 1\n"
        "  if not ok then error((...), 0) end\n"
        "  return ...\n"
        "end\n"
        "string.gsub = function(s, p, r, n)\n"
        "  check('string.gsub', s, p)\n"
        "  if type(r) ~= 'function' then return gsub(s, p, r, n) end\n"
        "  if depth >= %d then\n"
        "    error('string.gsub: replacement functions nested more than %d deep', 2)\n"
        "  end\n"
        "  depth = depth + 1\n"
        "  return unnest(pcall(gsub, s, p, r, n))\n"
        "end\n";
    char code[sizeof sandbox_fmt + 64];
    snprintf(code, sizeof code, sandbox_fmt, (double)WZP_POLICY_PATTERN_STEPS,
             WZP_POLICY_MAX_CALLBACK_DEPTH, WZP_POLICY_MAX_CALLBACK_DEPTH);
    if (luaL_loadbuffer(L, code, strlen(code), "=[relay sandbox]") == 0)
        lua_call(L, 0, 0);
}

/* ---------------------------------------------------------------- load */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Optional global `budgets = { on_join = 50, ... }`: per-hook time budgets in ms. */
static bool read_budgets(struct wzp_policy *p, char *err, size_t errlen)
{
    lua_State *L = p->L;
    for (int i = 0; i < H_COUNT; i++)
        p->hook_budget_ms[i] = p->lim.budget_ms;
    lua_getglobal(L, "budgets");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    bool ok = lua_istable(L, -1);
    for (lua_pushnil(L); ok && lua_next(L, -2); lua_pop(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int h = -1;
        for (int i = 0; k && i < H_COUNT; i++)
            if (strcmp(k, hook_names[i]) == 0)
                h = i;
        lua_Number ms = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
        if (h < 0 || ms < 1 || ms > 60000) {
            snprintf(err, errlen,
                     "%s: budgets.%s must be a hook name with a budget of 1 to 60000 ms", p->path,
                     k ? k : "?");
            lua_pop(L, 3); /* value, key, budgets */
            return false;
        }
        p->hook_budget_ms[h] = (unsigned)ms;
    }
    if (!ok)
        snprintf(err, errlen, "%s: budgets must be a table of hook name = milliseconds", p->path);
    lua_pop(L, 1);
    return ok;
}

static bool check_hooks(struct wzp_policy *p, char *err, size_t errlen)
{
    lua_State *L = p->L;
    if (!read_budgets(p, err, errlen))
        return false;
    for (int i = 0; i < H_COUNT; i++) {
        p->hooks[i] = LUA_NOREF;
        lua_getglobal(L, hook_names[i]);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (!lua_isfunction(L, -1)) {
            set_err(err, errlen, "%s: %s must be a function", p->path, hook_names[i]);
            lua_pop(L, 1);
            return false;
        }
        p->hooks[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return true;
}

static bool run_self_check(struct wzp_policy *p, char *err, size_t errlen)
{
    lua_State *L = p->L;
    lua_getglobal(L, "self_check");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        set_err(err, errlen, "%s: self_check must be a function", p->path);
        return false;
    }
    if (!policy_pcall(p, "self_check", 0, 2)) {
        set_err(err, errlen, "%s: self_check raised an error: %s", p->path, p->last_error);
        return false;
    }
    bool ok = !(lua_isboolean(L, -2) && !lua_toboolean(L, -2));
    if (!ok)
        snprintf(err, errlen, "%s: self_check failed: %s", p->path,
                 lua_isstring(L, -1) ? lua_tostring(L, -1) : "returned false");
    lua_pop(L, 2);
    return ok;
}

/* An error outside any protected call: LuaJIT exits the process after this returns. The
 * memory reserve is there so this never happens; if it does, say why before dying. */
static int policy_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    WZP_ERROR(MOD, "Lua error outside a protected call (a relay bug, please report): %s",
              msg ? msg : "?");
    return 0;
}

/* The first 16 hex digits of the file's SHA-256 ("?" if it cannot be read): which policy
 * made a logged decision. */
static void file_hash(const char *path, char out[17])
{
    FILE *f = fopen(path, "rb");
    snprintf(out, 17, "?");
    if (!f)
        return;
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    uint8_t buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(&ctx, n, buf);
    fclose(f);
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof digest, digest);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

int wzp_policy_load(struct wzp_policy **out, const char *path, const struct wzp_policy_limits *lim,
                    const struct wzp_policy_env *env, char *err, size_t errlen)
{
    *out = NULL;
    struct wzp_policy *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    p->lim = *lim;
    p->env = *env;
    p->stats = &p->own_stats;
    p->deadline_ns = UINT64_MAX;
    p->cpu_deadline_ns = UINT64_MAX;
    snprintf(p->path, sizeof p->path, "%s", path);
    file_hash(path, p->hash);
    snprintf(p->dir, sizeof p->dir, "%s", path);
    char *slash = strrchr(p->dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(p->dir, sizeof p->dir, ".");
    p->L = lua_newstate(policy_alloc, p);
    if (!p->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        free(p);
        return WZP_ENOMEM;
    }
    lua_State *L = p->L;
    lua_atpanic(L, policy_panic);
    sandbox(L, lim->unsafe);
    register_api(L);
    if (!lim->jit)
        luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT_INSNS);
    if (luaL_loadfilex(L, path, "t") != 0) {
        const char *why = lua_tostring(L, -1);
        if (why && strstr(why, "wrong mode"))
            snprintf(err, errlen,
                     "%s: precompiled (bytecode) policies are refused: load the "
                     "Lua source",
                     path);
        else if (why && strncmp(why, path, strlen(path)) != 0)
            snprintf(err, errlen, "%s: %s", path, why);
        else
            snprintf(err, errlen, "%s", why ? why : "cannot load");
        wzp_policy_free(p);
        return WZP_EINVAL;
    }
    if (!policy_pcall(p, path, 0, 0)) {
        snprintf(err, errlen, "%s: error while loading: %s", path, p->last_error);
        wzp_policy_free(p);
        return WZP_EINVAL;
    }
    if (!check_hooks(p, err, errlen) || !run_self_check(p, err, errlen)) {
        wzp_policy_free(p);
        return WZP_EINVAL;
    }
    /* A state that keeps (nearly) all its memory after loading would fail every hook. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    size_t usable = p->lim.memory_bytes - memory_reserve(p);
    if (p->mem_used > usable / 10 * 9) {
        snprintf(err, errlen,
                 "%s: keeps %.1f MiB after loading, %.0f %% of the %.1f MiB policy code may "
                 "use: hooks would run out of memory (raise --policy-memory-mb or keep less)",
                 path, p->mem_used / 1048576.0, 100.0 * (double)p->mem_used / (double)usable,
                 usable / 1048576.0);
        wzp_policy_free(p);
        return WZP_EINVAL;
    }
    *out = p;
    return WZP_OK;
}

void wzp_policy_free(struct wzp_policy *p)
{
    if (!p)
        return;
    if (p->L)
        lua_close(p->L);
    free(p);
}

const char *wzp_policy_path(const struct wzp_policy *p)
{
    return p->path;
}

const struct wzp_policy_stats *wzp_policy_stats(const struct wzp_policy *p)
{
    return p->stats;
}

void wzp_policy_count_into(struct wzp_policy *p, struct wzp_policy_stats *sink)
{
    p->stats = sink;
}

bool wzp_policy_has_hook(const struct wzp_policy *p, const char *name)
{
    for (int i = 0; i < H_COUNT; i++)
        if (strcmp(hook_names[i], name) == 0)
            return p->hooks[i] != LUA_NOREF;
    return false;
}

void wzp_policy_describe(const struct wzp_policy *p, char *out, size_t outlen)
{
    size_t off = (size_t)snprintf(out, outlen, "%s: hooks", p->path);
    bool any = false;
    for (int i = 0; i < H_COUNT && off < outlen; i++) {
        if (p->hooks[i] == LUA_NOREF)
            continue;
        off += (size_t)snprintf(out + off, outlen - off, " %s", hook_names[i]);
        any = true;
    }
    if (!any && off < outlen)
        off += (size_t)snprintf(out + off, outlen - off, " (none: upstream behaviour)");
    if (p->ntimers && off < outlen)
        snprintf(out + off, outlen - off, "; %zu timer%s", p->ntimers, p->ntimers == 1 ? "" : "s");
}

/* ---------------------------------------------------------------- hooks */

static void set_field_str(lua_State *L, const char *k, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

#define AUTH_JSON_DEPTH 8 /* nesting of featherChat's answer turned into Lua tables */

/* Push a JSON value as Lua (objects and arrays as tables, null as nil). */
static void push_json(lua_State *L, json_t *v, int depth)
{
    if (json_is_object(v) && depth < AUTH_JSON_DEPTH) {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            push_json(L, x, depth + 1);
            lua_setfield(L, -2, k);
        }
    } else if (json_is_array(v) && depth < AUTH_JSON_DEPTH) {
        lua_createtable(L, (int)json_array_size(v), 0);
        for (size_t i = 0; i < json_array_size(v); i++) {
            push_json(L, json_array_get(v, i), depth + 1);
            lua_rawseti(L, -2, (int)i + 1);
        }
    } else if (json_is_string(v)) {
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
    } else if (json_is_number(v)) {
        lua_pushnumber(L, json_number_value(v));
    } else if (json_is_boolean(v)) {
        lua_pushboolean(L, json_is_true(v));
    } else {
        lua_pushnil(L); /* null, or nested deeper than AUTH_JSON_DEPTH */
    }
}

/* Field "auth": featherChat's answer for this client as a table (absent: not
 * authenticated, or the answer was too large to keep). */
static void set_field_auth(lua_State *L, const char *json)
{
    if (!json)
        return;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(root)) {
        push_json(L, root, 0);
        lua_setfield(L, -2, "auth");
    }
    json_decref(root);
}

static void set_field_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static bool push_hook(struct wzp_policy *p, int hook)
{
    if (!p || p->hooks[hook] == LUA_NOREF)
        return false;
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, p->hooks[hook]);
    p->call_budget_ms = p->hook_budget_ms[hook];
    return true;
}

static void decision_default(struct wzp_decision *d)
{
    memset(d, 0, sizeof *d);
    d->allow = true;
    d->role = WZP_ROLE_SPEAKER;
    d->max_tier = -1;
}

static void deny(struct wzp_decision *d, const char *reason)
{
    d->allow = false;
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}

static bool parse_role(const char *s, enum wzp_role *out)
{
    for (int i = 0; i < WZP_ROLE_COUNT; i++)
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum wzp_role)i;
            return true;
        }
    return false;
}

/* Read a decision table at the top of the stack. false (with d->reason) if malformed. */
static void raw_field(lua_State *L, const char *name)
{
    lua_pushstring(L, name);
    lua_rawget(L, -2); /* no __index: no policy code runs outside a protected call */
}

/* A list of group names at the top of the stack into names/n; false if it is not a list
 * of at most WZP_ROUTE_NAMES_MAX valid names. Raw access only (no metamethods run). */
static bool read_names(lua_State *L, char (*names)[WZP_GROUP_NAME_MAX + 1], unsigned *n)
{
    if (!lua_istable(L, -1))
        return false;
    size_t len = lua_objlen(L, -1);
    if (len > WZP_ROUTE_NAMES_MAX)
        return false;
    for (size_t i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, (int)i);
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        bool ok = s && wzp_group_name_valid(s);
        if (ok)
            snprintf(names[i - 1], WZP_GROUP_NAME_MAX + 1, "%s", s);
        lua_pop(L, 1);
        if (!ok)
            return false;
    }
    *n = (unsigned)len;
    return true;
}

/* sends = {names} and hears = {names} | "all" of the table at the top of the stack into rt
 * (absent: default, sends "room" and hears all). false if malformed. */
static bool read_route(lua_State *L, struct wzp_route *rt)
{
    memset(rt, 0, sizeof *rt);
    rt->set = true;
    raw_field(L, "sends");
    bool ok = true;
    if (lua_isnil(L, -1)) {
        snprintf(rt->sends[0], sizeof rt->sends[0], "room");
        rt->nsends = 1;
    } else {
        ok = read_names(L, rt->sends, &rt->nsends);
    }
    lua_pop(L, 1);
    raw_field(L, "hears");
    if (lua_isnil(L, -1) ||
        (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "all") == 0))
        rt->hears_all = true;
    else
        ok = ok && read_names(L, rt->hears, &rt->nhears);
    lua_pop(L, 1);
    return ok;
}

static bool parse_decision_table(lua_State *L, struct wzp_decision *d)
{
    raw_field(L, "allow");
    int allow_type = lua_type(L, -1);
    if (allow_type == LUA_TBOOLEAN)
        d->allow = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (allow_type != LUA_TNIL && allow_type != LUA_TBOOLEAN) {
        /* {allow = "no"} or {allow = 0} would admit in Lua's truthiness: refuse instead */
        deny(d, "policy returned allow that is not true or false");
        return false;
    }
    raw_field(L, "reason");
    if (lua_isstring(L, -1))
        snprintf(d->reason, sizeof d->reason, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    raw_field(L, "role");
    bool ok = true;
    if (!lua_isnil(L, -1) && !(lua_isstring(L, -1) && parse_role(lua_tostring(L, -1), &d->role))) {
        deny(d, "policy returned an unknown role (speaker, listener, muted)");
        ok = false;
    }
    lua_pop(L, 1);
    raw_field(L, "sends");
    bool routed = !lua_isnil(L, -1);
    lua_pop(L, 1);
    raw_field(L, "hears");
    routed = routed || !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (ok && routed && !read_route(L, &d->route)) {
        deny(d, "policy returned sends or hears that are not lists of up to 16 group names");
        ok = false;
    }
    raw_field(L, "max_tier");
    if (ok && !lua_isnil(L, -1)) {
        int t = lua_isstring(L, -1) ? wzp_tier_from_name(lua_tostring(L, -1)) : -1;
        if (t < 0) {
            deny(d, "policy returned an unknown max_tier");
            ok = false;
        }
        d->max_tier = t;
    }
    lua_pop(L, 1);
    return ok;
}

/*
 * Turn the two results of an admission hook into a decision: nil or true = allow,
 * false [, reason] = deny, a table = allow/reason/role/max_tier fields.
 */
static void parse_admission(lua_State *L, struct wzp_decision *d)
{
    int t = lua_type(L, -2);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && lua_toboolean(L, -2))) {
        /* allowed */
    } else if (t == LUA_TBOOLEAN) {
        deny(d, lua_isstring(L, -1) ? lua_tostring(L, -1) : "denied by policy");
    } else if (t == LUA_TTABLE) {
        lua_pushvalue(L, -2);
        parse_decision_table(L, d);
        lua_pop(L, 1);
        if (!d->allow && !d->reason[0])
            snprintf(d->reason, sizeof d->reason, "denied by policy");
    } else {
        deny(d, "policy returned neither a boolean nor a table");
    }
    lua_pop(L, 2);
}

/* While the decision log is open: keep the hook's argument table (top of the stack) for
 * the record made after the call. LUA_NOREF otherwise. */
static int keep_input(struct wzp_policy *p)
{
    if (!wzp_linelog_enabled(&wzp_decision_log))
        return LUA_NOREF;
    lua_pushvalue(p->L, -1);
    return luaL_ref(p->L, LUA_REGISTRYINDEX);
}

static void record(struct wzp_policy *p, int input_ref, const char *hook,
                   const struct wzp_decision *d, int tier)
{
    if (input_ref == LUA_NOREF || input_ref == LUA_REFNIL)
        return;
    lua_rawgeti(p->L, LUA_REGISTRYINDEX, input_ref);
    wzp_decisions_record(p->L, -1, p->hash, hook, policy_now_ms(p), d, tier);
    lua_pop(p->L, 1);
    luaL_unref(p->L, LUA_REGISTRYINDEX, input_ref);
}

static void call_admission(struct wzp_policy *p, const char *what, struct wzp_decision *d)
{
    _Atomic uint64_t *streak = &p->stats->admission_error_streak;
    int input = keep_input(p);
    if (policy_pcall(p, what, 1, 2)) {
        parse_admission(p->L, d);
        atomic_store_explicit(streak, 0, memory_order_relaxed);
    } else {
        deny(d, "policy error"); /* admission fails closed */
        atomic_store_explicit(streak, atomic_load_explicit(streak, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    record(p, input, what, d, -1);
}

void wzp_policy_on_connect(struct wzp_policy *p, const struct wzp_connect_info *c,
                           struct wzp_decision *d)
{
    decision_default(d);
    if (!push_hook(p, H_CONNECT))
        return;
    lua_createtable(p->L, 0, 2);
    set_field_str(p->L, "addr", c->addr);
    set_field_str(p->L, "sni", c->sni);
    call_admission(p, "on_connect", d);
}

static void push_join_info(lua_State *L, const struct wzp_join_info *j, const char *action)
{
    lua_createtable(L, 0, 7);
    set_field_num(L, "id", (double)j->id);
    set_field_str(L, "action", action);
    set_field_str(L, "room", j->room);
    set_field_str(L, "fingerprint", j->fingerprint);
    set_field_str(L, "alias", j->alias);
    set_field_str(L, "addr", j->addr);
    set_field_num(L, "room_size", j->room_size);
    set_field_auth(L, j->auth);
}

/* on_action for "join" and "send_media"; a refused send_media makes a listener. */
static void apply_actions(struct wzp_policy *p, const struct wzp_join_info *j,
                          struct wzp_decision *d)
{
    static const char *const actions[] = {"join", "send_media"};
    for (int i = 0; i < 2 && d->allow; i++) {
        if (!push_hook(p, H_ACTION))
            return;
        push_join_info(p->L, j, actions[i]);
        struct wzp_decision a;
        decision_default(&a);
        call_admission(p, "on_action", &a);
        if (a.allow)
            continue;
        if (i == 0)
            *d = a;
        else if (d->role == WZP_ROLE_SPEAKER)
            d->role = WZP_ROLE_LISTENER;
    }
}

void wzp_policy_on_join(struct wzp_policy *p, const struct wzp_join_info *j, struct wzp_decision *d)
{
    decision_default(d);
    if (push_hook(p, H_JOIN)) {
        push_join_info(p->L, j, "join");
        call_admission(p, "on_join", d);
    }
    if (d->allow)
        apply_actions(p, j, d);
}

void wzp_policy_on_register(struct wzp_policy *p, const struct wzp_register_info *r,
                            struct wzp_decision *d)
{
    decision_default(d);
    if (!push_hook(p, H_REGISTER))
        return;
    lua_createtable(p->L, 0, 5);
    set_field_str(p->L, "fingerprint", r->fingerprint);
    set_field_str(p->L, "alias", r->alias);
    set_field_str(p->L, "addr", r->addr);
    lua_pushboolean(p->L, r->is_signed);
    lua_setfield(p->L, -2, "signed");
    lua_pushboolean(p->L, r->authenticated);
    lua_setfield(p->L, -2, "authenticated");
    set_field_auth(p->L, r->auth);
    call_admission(p, "on_register", d);
}

void wzp_policy_on_call(struct wzp_policy *p, const struct wzp_call_info *c, struct wzp_decision *d)
{
    decision_default(d);
    if (!push_hook(p, H_CALL))
        return;
    lua_createtable(p->L, 0, 4);
    set_field_str(p->L, "call_id", c->call_id);
    set_field_str(p->L, "caller", c->caller);
    set_field_str(p->L, "callee", c->callee);
    set_field_str(p->L, "addr", c->addr);
    set_field_auth(p->L, c->auth);
    call_admission(p, "on_call", d);
}

void wzp_policy_on_leave(struct wzp_policy *p, const struct wzp_leave_info *l)
{
    if (!push_hook(p, H_LEAVE))
        return;
    lua_createtable(p->L, 0, 5);
    set_field_num(p->L, "id", (double)l->id);
    set_field_str(p->L, "room", l->room);
    set_field_str(p->L, "fingerprint", l->fingerprint);
    set_field_str(p->L, "addr", l->addr);
    set_field_str(p->L, "reason", l->reason);
    policy_pcall(p, "on_leave", 1, 0);
}

static enum wzp_tier call_quality(struct wzp_policy *p, enum wzp_tier computed,
                                  enum wzp_tier previous);

enum wzp_tier wzp_policy_on_quality(struct wzp_policy *p, const struct wzp_quality_info *q)
{
    if (!push_hook(p, H_QUALITY))
        return q->computed;
    lua_State *L = p->L;
    lua_createtable(L, 0, 8);
    set_field_num(L, "id", (double)q->id);
    set_field_str(L, "room", q->room);
    set_field_str(L, "fingerprint", q->fingerprint);
    set_field_num(L, "loss_pct", wzp_report_loss_percent(q->report));
    set_field_num(L, "rtt_ms", wzp_report_rtt_ms(q->report));
    set_field_num(L, "jitter_ms", q->report->jitter_ms);
    set_field_str(L, "tier", wzp_tier_name(q->computed));
    return call_quality(p, q->computed, q->previous);
}

/* on_quality's call, its argument table on the stack: the tier to use. */
static enum wzp_tier call_quality(struct wzp_policy *p, enum wzp_tier computed,
                                  enum wzp_tier previous)
{
    lua_State *L = p->L;
    int input = keep_input(p);
    if (!policy_pcall(p, "on_quality", 1, 1)) {
        record(p, input, "on_quality", NULL, (int)previous);
        return previous; /* quality fails open: the last decision stands */
    }
    enum wzp_tier t = computed;
    if (lua_isstring(L, -1)) {
        int parsed = wzp_tier_from_name(lua_tostring(L, -1));
        if (parsed >= 0)
            t = (enum wzp_tier)parsed;
        else
            WZP_WARN(MOD, "on_quality returned unknown tier '%s'; keeping %s", lua_tostring(L, -1),
                     wzp_tier_name(computed));
    }
    lua_pop(L, 1);
    record(p, input, "on_quality", NULL, (int)t);
    return t;
}

int wzp_policy_call_json(struct wzp_policy *p, const char *hook, const char *input_json,
                         struct wzp_decision *d, int *tier)
{
    int h = -1;
    for (int i = 0; i < H_COUNT; i++)
        if (strcmp(hook_names[i], hook) == 0)
            h = i;
    bool admission =
        h == H_CONNECT || h == H_JOIN || h == H_ACTION || h == H_REGISTER || h == H_CALL;
    if (!admission && h != H_QUALITY)
        return WZP_EINVAL;
    json_t *in = json_loads(input_json, 0, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return WZP_EINVAL;
    }
    decision_default(d);
    *tier = -1;
    json_t *tier_in = json_object_get(in, "tier");
    int computed = json_is_string(tier_in) ? wzp_tier_from_name(json_string_value(tier_in)) : -1;
    if (!push_hook(p, h)) { /* the policy does not define it: upstream's behaviour */
        if (h == H_QUALITY)
            *tier = computed;
        json_decref(in);
        return WZP_OK;
    }
    push_json(p->L, in, 0);
    json_decref(in);
    if (admission)
        call_admission(p, hook_names[h], d);
    else
        *tier = (int)call_quality(p, computed < 0 ? WZP_TIER_GOOD : (enum wzp_tier)computed,
                                  computed < 0 ? WZP_TIER_GOOD : (enum wzp_tier)computed);
    return WZP_OK;
}

/* ---------------------------------------------------------------- test harness */

lua_State *wzp_policy_lua_state(struct wzp_policy *p)
{
    return p->L;
}

int wzp_policy_pcall_budget(struct wzp_policy *p, int nargs, int nresults, int errfunc,
                            unsigned budget_ms)
{
    int rv =
        pcall_until(p, nargs, nresults, errfunc, wzp_now_ns() + (uint64_t)budget_ms * 1000000ull);
    if (rv != 0)
        lua_gc(p->L, LUA_GCCOLLECT, 0);
    return rv;
}

enum wzp_tier wzp_policy_on_room_tier(struct wzp_policy *p, const char *room,
                                      const enum wzp_tier *tiers, size_t n, enum wzp_tier weakest)
{
    if (!push_hook(p, H_ROOM_TIER))
        return weakest;
    lua_State *L = p->L;
    lua_createtable(L, 0, 4);
    set_field_str(L, "room", room);
    set_field_str(L, "weakest", wzp_tier_name(weakest));
    set_field_num(L, "size", (double)n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, wzp_tier_name(tiers[i]));
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "tiers");
    if (!policy_pcall(p, "on_room_tier", 1, 1))
        return weakest; /* quality decisions fail open */
    enum wzp_tier t = weakest;
    if (lua_isstring(L, -1)) {
        int parsed = wzp_tier_from_name(lua_tostring(L, -1));
        if (parsed >= 0)
            t = (enum wzp_tier)parsed;
        else
            WZP_WARN(MOD, "on_room_tier returned unknown tier '%s'; using %s", lua_tostring(L, -1),
                     wzp_tier_name(weakest));
    }
    lua_pop(L, 1);
    return t;
}
