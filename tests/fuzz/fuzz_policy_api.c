/*
 * fuzz_policy_api.c - libFuzzer target: the policy API as a hostile or careless policy
 * would call it. Each input becomes a policy file of up to 48 calls into wzp.*,
 * wzp.shared.* and the sandbox's replaced string functions, each with up to 3 arguments
 * drawn from a menu of awkward values (nil, NaN, infinities, huge and negative numbers,
 * empty, long and binary strings, tables, functions, the wzp table itself). Every call is
 * made once at load time (raw, so an error may end the load) or inside pcall, and the
 * timers it registered run once. The relay must never crash, whatever fails: a load error
 * or a failed call is the expected answer to bad arguments.
 *
 * The room API answers from a small synthetic world (2 rooms, 3 participants).
 */
#include "common.h"
#include "log.h"
#include "policy.h"
#include "shdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct wzp_shdict shared;
static struct wzp_policy_metrics metrics;
static uint64_t clock_ms = 1000000;
static char path[64];

static size_t op_rooms(void *ctx, char (*names)[WZP_ROOM_NAME_MAX + 1], size_t *sizes, size_t max)
{
    (void)ctx;
    static const char *const rooms[] = {"lobby", "stage"};
    size_t n = 0;
    for (; n < max && n < 2; n++) {
        snprintf(names[n], WZP_ROOM_NAME_MAX + 1, "%s", rooms[n]);
        sizes[n] = n + 2;
    }
    return n;
}

static size_t op_participants(void *ctx, const char *room, struct wzp_participant_view *out,
                              size_t max)
{
    (void)ctx;
    if (strcmp(room, "lobby") != 0)
        return 0;
    size_t n = 0;
    for (; n < max && n < 3; n++) {
        memset(&out[n], 0, sizeof out[n]);
        out[n].id = n + 1;
        snprintf(out[n].fingerprint, sizeof out[n].fingerprint, "%04zx:0000:0000:0000", n);
        out[n].has_alias = n != 1;
        snprintf(out[n].alias, sizeof out[n].alias, "alias\n%zu", n);
        out[n].role = (enum wzp_role)(n % WZP_ROLE_COUNT);
        out[n].tier = WZP_TIER_GOOD;
    }
    return n;
}

static int op_kick(void *ctx, uint64_t id, const char *reason)
{
    (void)ctx;
    (void)reason;
    return id >= 1 && id <= 3 ? WZP_OK : WZP_ENOTFOUND;
}

static int op_set_role(void *ctx, uint64_t id, enum wzp_role role)
{
    (void)ctx;
    return id >= 1 && id <= 3 && role < WZP_ROLE_COUNT ? WZP_OK : WZP_ENOTFOUND;
}

static int op_send_directive(void *ctx, const char *room, enum wzp_tier tier, const char *reason)
{
    (void)ctx;
    (void)tier;
    (void)reason;
    return strcmp(room, "lobby") == 0 ? WZP_OK : WZP_ENOTFOUND;
}

static uint64_t op_now_ms(void *ctx)
{
    (void)ctx;
    return clock_ms;
}

static const struct wzp_policy_ops ops = {
    .rooms = op_rooms,
    .participants = op_participants,
    .kick = op_kick,
    .set_role = op_set_role,
    .send_directive = op_send_directive,
    .now_ms = op_now_ms,
};

static const char *const functions[] = {
    "wzp.log",
    "wzp.now_ms",
    "wzp.rooms",
    "wzp.participants",
    "wzp.kick",
    "wzp.set_role",
    "wzp.send_directive",
    "wzp.every",
    "wzp.metric",
    "wzp.shared.get",
    "wzp.shared.set",
    "wzp.shared.incr",
    "wzp.shared.delete",
    "wzp.shared.ttl",
    "string.find",
    "string.match",
    "string.gsub",
    "string.gmatch",
    "require",
    "xpcall",
    "pcall",
    "tostring",
    "string.rep",
    "os.date",
};

static const char *const values[] = {
    "nil",
    "true",
    "0",
    "-1",
    "1",
    "3",
    "2^53",
    "2^64",
    "-2^63",
    "1e308",
    "1/0",
    "-1/0",
    "0/0",
    "0.5",
    "10",
    "86400000",
    "\"\"",
    "\"lobby\"",
    "\"stage\"",
    "\"speaker\"",
    "\"listener\"",
    "\"muted\"",
    "\"good\"",
    "\"catastrophic\"",
    "\"studio_64k\"",
    "\"info\"",
    "\"error\"",
    "\"warn\"",
    "\"%d+\"",
    "\".-.-.-b\"",
    "\"[\"",
    "\"%\"",
    "\"glob\"",
    "\"nonexistent_module\"",
    "\"a\\0b\\n\\27[31m\"",
    "(\"x\"):rep(300)",
    "(\"a\"):rep(5000)",
    "{}",
    "{1, 2, 3}",
    "{allow = \"no\"}",
    "function() end",
    "function() error({}) end",
    "function() local t = {} for i = 1, 1e9 do t[i] = i end end",
    "function(...) return ... end",
    "wzp",
    "string",
    "setmetatable({}, {__tostring = function() error('x') end})",
    "coroutine.create(function() end)",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void remove_policy(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        wzp_log_threshold = -1; /* quiet: errors are the expected answer to bad calls */
        wzp_shdict_init(&shared, 1000, 1 << 20);
        wzp_policy_metrics_init(&metrics);
        snprintf(path, sizeof path, "/tmp/wzp-fuzz-policy-%d.lua", (int)getpid());
        atexit(remove_policy);
    }
    static char text[64 * 1024];
    size_t len = 0, i = 0;
    for (unsigned call = 0; call < 48 && i + 2 <= size && len < sizeof text - 1024; call++) {
        uint8_t fn = data[i++], shape = data[i++];
        unsigned nargs = shape & 3;
        bool raw = shape & 4; /* an unprotected call: an error ends the load */
        const char *name = functions[fn % WZP_ARRAY_LEN(functions)];
        len += (size_t)snprintf(text + len, sizeof text - len, raw ? "%s(" : "pcall(%s", name);
        for (unsigned a = 0; a < nargs && i < size; a++)
            len +=
                (size_t)snprintf(text + len, sizeof text - len, "%s%s", raw && a == 0 ? "" : ", ",
                                 values[data[i++] % WZP_ARRAY_LEN(values)]);
        len += (size_t)snprintf(text + len, sizeof text - len, ")\n");
    }
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fwrite(text, 1, len, f);
    fclose(f);
    struct wzp_policy_limits lim = {.budget_ms = 5, .memory_bytes = 8u << 20};
    struct wzp_policy_env env = {
        .shared = &shared, .lua_dir = WZP_SOURCE_DIR "/lua", .ops = &ops, .metrics = &metrics};
    struct wzp_policy *p = NULL;
    char err[1024];
    if (wzp_policy_load(&p, path, &lim, &env, err, sizeof err) == WZP_OK) {
        clock_ms += 100000000; /* every timer is due */
        wzp_policy_run_timers(p, clock_ms);
        wzp_policy_free(p);
    }
    return 0;
}
