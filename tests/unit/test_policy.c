/* test_policy.c - the LuaJIT policy engine: loading, decisions, failure modes, budgets,
 * memory cap, sandbox, require, and the shared dictionary across threads. */
#include "policy.h"

#include "common.h"
#include "shdict.h"

#include <lauxlib.h>
#include <lua.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static struct wzp_shdict shared;
static struct wzp_policy_env env;
static struct wzp_policy_limits limits;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/wzp-policy-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    wzp_shdict_init(&shared, 1000, 1 << 20);
    env = (struct wzp_policy_env){.shared = &shared, .lua_dir = NULL};
    limits = (struct wzp_policy_limits){.budget_ms = 50, .memory_bytes = 16u << 20};
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    wzp_shdict_destroy(&shared);
}

TestSuite(policy, .init = setup, .fini = teardown, .timeout = 30);

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static struct wzp_policy *load(const char *text)
{
    struct wzp_policy *p;
    char err[512];
    int rv = wzp_policy_load(&p, write_file("p.lua", text), &limits, &env, err, sizeof err);
    cr_assert_eq(rv, WZP_OK, "load failed: %s", err);
    return p;
}

static void load_fails(const char *text, const char *expect)
{
    struct wzp_policy *p;
    char err[512] = "";
    int rv = wzp_policy_load(&p, write_file("p.lua", text), &limits, &env, err, sizeof err);
    cr_assert_eq(rv, WZP_EINVAL);
    cr_assert_null(p);
    cr_assert(strstr(err, expect), "error \"%s\" should mention \"%s\"", err, expect);
}

static const struct wzp_join_info join_info = {.room = "lobby",
                                               .fingerprint = "aaaa:bbbb",
                                               .alias = "alice",
                                               .addr = "1.2.3.4:5",
                                               .room_size = 3};

static struct wzp_decision join(struct wzp_policy *p)
{
    struct wzp_decision d;
    wzp_policy_on_join(p, &join_info, &d);
    return d;
}

Test(policy, empty_policy_allows_everything)
{
    struct wzp_policy *p = load("-- nothing\n");
    uint64_t calls = wzp_policy_stats(p)->calls; /* loading the file ran the chunk */
    struct wzp_decision d = join(p);
    cr_assert(d.allow);
    cr_assert_eq(d.role, WZP_ROLE_SPEAKER);
    cr_assert_eq(d.max_tier, -1);
    cr_assert_eq(wzp_policy_stats(p)->calls, calls, "no hook, no call");
    wzp_policy_free(p);
}

Test(policy, syntax_error_reports_file_and_line)
{
    load_fails("local x = 1\nfunction on_join(j)\n  return (\nend\n", "p.lua:4:");
}

Test(policy, runtime_error_while_loading)
{
    load_fails("local t = nil\nlocal y = t.x\n", "p.lua:2: attempt to index local 't'");
}

Test(policy, hook_must_be_a_function)
{
    load_fails("on_join = 42\n", "on_join must be a function");
}

Test(policy, self_check_can_refuse)
{
    load_fails("function self_check() return false, 'rooms table empty' end\n",
               "self_check failed: rooms table empty");
    struct wzp_policy *p = load("function self_check() return true end\n");
    wzp_policy_free(p);
}

Test(policy, join_arguments_reach_lua)
{
    struct wzp_policy *p =
        load("function on_join(j)\n"
             "  if j.room == 'lobby' and j.fingerprint == 'aaaa:bbbb' and j.alias == 'alice'\n"
             "     and j.addr == '1.2.3.4:5' and j.room_size == 3 and j.action == 'join' then\n"
             "    return true end\n"
             "  return false, 'bad args'\n"
             "end\n");
    cr_assert(join(p).allow);
    wzp_policy_free(p);
}

Test(policy, deny_with_reason)
{
    struct wzp_policy *p = load("function on_join(j) return false, 'room is closed' end\n");
    struct wzp_decision d = join(p);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "room is closed");
    wzp_policy_free(p);
    p = load("function on_join(j) return false end\n");
    cr_assert_str_eq(join(p).reason, "denied by policy");
    wzp_policy_free(p);
}

Test(policy, table_decision_role_and_tier_cap)
{
    struct wzp_policy *p =
        load("function on_join(j) return { role = 'listener', max_tier = 'Degraded' } end\n");
    struct wzp_decision d = join(p);
    cr_assert(d.allow);
    cr_assert_eq(d.role, WZP_ROLE_LISTENER);
    cr_assert_eq(d.max_tier, WZP_TIER_DEGRADED);
    wzp_policy_free(p);
    p = load("function on_join(j) return { allow = false, reason = 'full' } end\n");
    d = join(p);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "full");
    wzp_policy_free(p);
}

Test(policy, malformed_decisions_fail_closed)
{
    struct wzp_policy *p = load("function on_join(j) return { role = 'boss' } end\n");
    struct wzp_decision d = join(p);
    cr_assert_not(d.allow);
    cr_assert(strstr(d.reason, "unknown role"));
    wzp_policy_free(p);
    p = load("function on_join(j) return 42 end\n");
    cr_assert_not(join(p).allow);
    wzp_policy_free(p);
    p = load("function on_join(j) return { max_tier = 'Ultra' } end\n");
    cr_assert_not(join(p).allow);
    wzp_policy_free(p);
}

Test(policy, script_error_fails_closed_and_is_counted)
{
    struct wzp_policy *p = load("function on_join(j) error('boom') end\n");
    uint64_t calls = wzp_policy_stats(p)->calls;
    struct wzp_decision d = join(p);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "policy error");
    cr_assert_eq(wzp_policy_stats(p)->errors, 1);
    cr_assert_eq(wzp_policy_stats(p)->calls, calls + 1);
    wzp_policy_free(p);
}

Test(policy, on_action_refusing_send_media_makes_a_listener)
{
    struct wzp_policy *p = load("function on_action(a)\n"
                                "  if a.action == 'send_media' then return false end\n"
                                "  return true\n"
                                "end\n");
    struct wzp_decision d = join(p);
    cr_assert(d.allow);
    cr_assert_eq(d.role, WZP_ROLE_LISTENER);
    wzp_policy_free(p);
    p = load("function on_action(a) return a.action ~= 'join', 'no joins today' end\n");
    d = join(p);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "no joins today");
    wzp_policy_free(p);
}

Test(policy, on_connect)
{
    struct wzp_policy *p = load("function on_connect(c)\n"
                                "  if c.addr:match('^10%.') then return false, 'no private' end\n"
                                "  return c.sni ~= 'forbidden'\n"
                                "end\n");
    struct wzp_decision d;
    wzp_policy_on_connect(p, &(struct wzp_connect_info){"10.0.0.1:4", "room"}, &d);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "no private");
    wzp_policy_on_connect(p, &(struct wzp_connect_info){"1.2.3.4:4", "forbidden"}, &d);
    cr_assert_not(d.allow);
    wzp_policy_on_connect(p, &(struct wzp_connect_info){"1.2.3.4:4", NULL}, &d);
    cr_assert(d.allow, "no SNI: c.sni is nil, not 'forbidden'");
    wzp_policy_free(p);
}

Test(policy, on_register_and_on_call_see_their_fields_and_fail_closed)
{
    struct wzp_policy *p =
        load("function on_register(r)\n"
             "  if not r.signed then return false, 'unsigned ' .. r.fingerprint end\n"
             "  if r.authenticated then\n"
             "    return r.auth.team == 'blue' and #r.auth.groups == 2 and r.auth.n == nil\n"
             "      and r.auth.deep.a.b == 1\n"
             "  end\n"
             "  return r.alias == 'ok' and r.addr == '1.2.3.4:5' and r.auth == nil\n"
             "end\n"
             "function on_call(c)\n"
             "  if c.call_id == 'boom' then error('oops') end\n"
             "  return c.caller ~= c.callee and c.addr == '1.2.3.4:5'\n"
             "end\n");
    struct wzp_decision d;
    struct wzp_register_info r = {"aaaa", "ok", "1.2.3.4:5", false, false, NULL};
    wzp_policy_on_register(p, &r, &d);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "unsigned aaaa");
    r.is_signed = true;
    wzp_policy_on_register(p, &r, &d);
    cr_assert(d.allow);
    r.alias = NULL;
    wzp_policy_on_register(p, &r, &d);
    cr_assert_not(d.allow, "alias nil");
    r.authenticated = true; /* featherChat's answer reaches the policy as r.auth */
    r.auth = "{\"valid\":true,\"fingerprint\":\"aaaa\",\"team\":\"blue\","
             "\"groups\":[\"a\",\"b\"],\"n\":null,\"deep\":{\"a\":{\"b\":1}}}";
    wzp_policy_on_register(p, &r, &d);
    cr_assert(d.allow, "%s", d.reason);
    struct wzp_call_info c = {"c1", "aaaa", "bbbb", "1.2.3.4:5", NULL};
    wzp_policy_on_call(p, &c, &d);
    cr_assert(d.allow);
    c.callee = "aaaa";
    wzp_policy_on_call(p, &c, &d);
    cr_assert_not(d.allow);
    c.call_id = "boom";
    wzp_policy_on_call(p, &c, &d);
    cr_assert_not(d.allow, "an error fails closed");
    cr_assert_str_eq(d.reason, "policy error");
    wzp_policy_free(p);
}

static enum wzp_tier quality(struct wzp_policy *p, enum wzp_tier computed)
{
    struct wzp_quality_report r = {51, 25, 3, 200}; /* 20 % loss, 100 ms */
    struct wzp_quality_info q = {7, "lobby", "aaaa:bbbb", &r, computed, WZP_TIER_GOOD};
    return wzp_policy_on_quality(p, &q);
}

Test(policy, on_quality_override_and_fail_open)
{
    struct wzp_policy *p = load("function on_quality(q)\n"
                                "  if q.loss_pct > 19 and q.loss_pct < 21 and q.rtt_ms == 100 and "
                                "q.tier == 'Catastrophic'\n"
                                "  then return 'Degraded' end\n"
                                "end\n");
    cr_assert_eq(quality(p, WZP_TIER_CATASTROPHIC), WZP_TIER_DEGRADED);
    cr_assert_eq(quality(p, WZP_TIER_GOOD), WZP_TIER_GOOD, "nil keeps the computed tier");
    wzp_policy_free(p);
    p = load("function on_quality(q) error('oops') end\n");
    cr_assert_eq(quality(p, WZP_TIER_DEGRADED), WZP_TIER_GOOD,
                 "errors fail open: the last decision (GOOD) stands");
    wzp_policy_free(p);
    p = load("function on_quality(q) return 'Fantastic' end\n");
    cr_assert_eq(quality(p, WZP_TIER_GOOD), WZP_TIER_GOOD, "unknown tier ignored");
    wzp_policy_free(p);
}

Test(policy, on_room_tier_sees_the_room_and_may_choose)
{
    struct wzp_policy *p =
        load("function on_room_tier(r)\n"
             "  assert(r.room == 'lobby' and r.size == 3 and #r.tiers == 3)\n"
             "  assert(r.tiers[2] == 'Catastrophic' and r.weakest == 'Catastrophic')\n"
             "  return 'Degraded'\n"
             "end\n");
    enum wzp_tier tiers[] = {WZP_TIER_GOOD, WZP_TIER_CATASTROPHIC, WZP_TIER_STUDIO_64K};
    cr_assert_eq(wzp_policy_on_room_tier(p, "lobby", tiers, 3, WZP_TIER_CATASTROPHIC),
                 WZP_TIER_DEGRADED);
    cr_assert_eq(wzp_policy_on_room_tier(p, "other", tiers, 3, WZP_TIER_CATASTROPHIC),
                 WZP_TIER_CATASTROPHIC, "an error (failed assert) keeps the weakest link");
    wzp_policy_free(p);
    p = load("-- no hook\n");
    cr_assert_eq(wzp_policy_on_room_tier(p, "lobby", tiers, 3, WZP_TIER_CATASTROPHIC),
                 WZP_TIER_CATASTROPHIC);
    wzp_policy_free(p);
}

Test(policy, time_budget_stops_a_runaway_hook)
{
    limits.budget_ms = 30;
    struct wzp_policy *p = load("function on_join(j) while true do end end\n");
    uint64_t t0 = wzp_now_ns();
    struct wzp_decision d = join(p);
    uint64_t ms = (wzp_now_ns() - t0) / 1000000;
    cr_assert_not(d.allow, "a runaway admission hook fails closed");
    cr_assert_geq(ms, 30);
    cr_assert_lt(ms, 1000, "stopped near the budget, took %llu ms", (unsigned long long)ms);
    cr_assert_eq(wzp_policy_stats(p)->budget_exceeded, 1);
    wzp_policy_free(p);
}

Test(policy, budgets_per_hook)
{
    limits.budget_ms = 1000;
    struct wzp_policy *p = load("budgets = { on_join = 25 }\n"
                                "function on_join(j) while true do end end\n"
                                "function on_leave(l) local t = wzp.now_ms()\n"
                                "  while wzp.now_ms() - t < 60 do end end\n");
    uint64_t t0 = wzp_now_ns();
    cr_assert_not(join(p).allow);
    uint64_t ms = (wzp_now_ns() - t0) / 1000000;
    cr_assert(ms >= 25 && ms < 500, "on_join stopped by its own 25 ms budget, took %llu",
              (unsigned long long)ms);
    uint64_t errors = wzp_policy_stats(p)->errors;
    struct wzp_leave_info l = {7, "lobby", "aaaa:bbbb", "1.2.3.4:5", "closed"};
    wzp_policy_on_leave(p, &l);
    cr_assert_eq(wzp_policy_stats(p)->errors, errors, "on_leave keeps the 1000 ms default");
    wzp_policy_free(p);
    load_fails("budgets = { on_joins = 5 }\n", "budgets.on_joins must be a hook name");
    load_fails("budgets = { on_join = 0 }\n", "1 to 60000 ms");
}

Test(policy, time_budget_holds_for_loops_that_would_be_jit_compiled)
{
    /* A hot numeric loop is exactly what LuaJIT compiles (and then skips count hooks). */
    limits.budget_ms = 30;
    struct wzp_policy *p = load("function on_join(j)\n"
                                "  local x = 0\n"
                                "  for i = 1, 1e12 do x = x + i % 7 end\n"
                                "  return true\n"
                                "end\n");
    uint64_t t0 = wzp_now_ns();
    cr_assert_not(join(p).allow);
    cr_assert_lt((wzp_now_ns() - t0) / 1000000, 1000);
    wzp_policy_free(p);
}

Test(policy, state_survives_a_budget_error)
{
    limits.budget_ms = 20;
    struct wzp_policy *p = load("n = 0\n"
                                "function on_join(j)\n"
                                "  n = n + 1\n"
                                "  if n == 1 then while true do end end\n"
                                "  return true\n"
                                "end\n");
    cr_assert_not(join(p).allow);
    cr_assert(join(p).allow, "the next call runs normally");
    wzp_policy_free(p);
}

Test(policy, memory_cap_holds_and_state_recovers)
{
    limits.memory_bytes = 8u << 20;
    limits.budget_ms = 20000; /* the cap, not the clock, must stop it (even on a slow box) */
    struct wzp_policy *p = load("function on_join(j)\n"
                                "  local t = {}\n"
                                "  for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end\n"
                                "end\n"
                                "function on_leave(l) ok = true end\n");
    cr_assert_not(join(p).allow);
    cr_assert_eq(wzp_policy_stats(p)->memory_errors, 1);
    struct wzp_leave_info l = {7, "lobby", "aaaa:bbbb", "1.2.3.4:5", "closed"};
    wzp_policy_on_leave(p, &l);
    cr_assert_eq(wzp_policy_stats(p)->errors, 1, "after the cap, calls work again");
    wzp_policy_free(p);
}

Test(policy, sandbox_hides_dangerous_libraries)
{
    struct wzp_policy *p =
        load("function self_check()\n"
             "  for _, name in ipairs({'io', 'ffi', 'debug', 'package', 'dofile', 'loadfile',\n"
             "                         'load', 'loadstring', 'module'}) do\n"
             "    if _G[name] ~= nil then return false, name .. ' is visible' end\n"
             "  end\n"
             "  if os.execute or os.exit or os.getenv or os.remove then return false, 'os' end\n"
             "  if type(os.time()) ~= 'number' then return false, 'os.time' end\n"
             "  if jit ~= nil then return false, 'jit is reachable' end\n"
             "  return true\n"
             "end\n");
    wzp_policy_free(p);
}

Test(policy, leave_and_quality_carry_the_participant_id)
{
    struct wzp_policy *p =
        load("function on_quality(q) if q.id == 7 then return 'Degraded' end end\n"
             "function on_leave(l) if l.id ~= 7 then error('no id') end end\n");
    cr_assert_eq(quality(p, WZP_TIER_GOOD), WZP_TIER_DEGRADED);
    struct wzp_leave_info l = {7, "lobby", "aaaa:bbbb", "1.2.3.4:5", "closed"};
    uint64_t errors = wzp_policy_stats(p)->errors;
    wzp_policy_on_leave(p, &l);
    cr_assert_eq(wzp_policy_stats(p)->errors, errors);
    wzp_policy_free(p);
}

Test(policy, budget_errors_name_the_line)
{
    limits.budget_ms = 20;
    struct wzp_policy *p = load("function on_join(j)\n"
                                "  local x = 0\n"
                                "  while true do x = x + 1 end\n"
                                "end\n");
    cr_assert_not(join(p).allow);
    wzp_policy_free(p);
    /* the message is in the log; the describe of a timer-only policy lists its timer */
    p = load("wzp.every(1000, function() end)\n");
    char desc[256];
    wzp_policy_describe(p, desc, sizeof desc);
    cr_assert(strstr(desc, "1 timer"), "%s", desc);
    wzp_policy_free(p);
}

Test(policy, unsafe_opt_in)
{
    limits.unsafe = true;
    struct wzp_policy *p =
        load("function self_check() return io ~= nil and os.getenv ~= nil end\n");
    wzp_policy_free(p);
}

Test(policy, require_loads_lua_files_beside_the_policy_only)
{
    write_file("helpers.lua", "return { answer = function() return 42 end }\n");
    struct wzp_policy *p = load("local h = require('helpers')\n"
                                "function self_check() return h.answer() == 42 end\n");
    wzp_policy_free(p);
    load_fails("require('../etc/passwd')\n", "invalid module name");
    load_fails("require('nothere')\n", "not found");
}

Test(policy, log_and_clock)
{
    struct wzp_policy *p = load("function self_check()\n"
                                "  wzp.log('debug', 'hello', 1, true)\n"
                                "  return wzp.now_ms() > 0\n"
                                "end\n");
    wzp_policy_free(p);
    load_fails("wzp.log('loud', 'x')\n", "error while loading");
}

Test(policy, shared_dictionary_from_lua)
{
    struct wzp_policy *p =
        load("function self_check()\n"
             "  wzp.shared.set('s', 'v')\n"
             "  wzp.shared.set('b', true)\n"
             "  assert(wzp.shared.get('s') == 'v' and wzp.shared.get('b') == true)\n"
             "  assert(wzp.shared.incr('n', 2) == 2 and wzp.shared.incr('n', 3) == 5)\n"
             "  assert(wzp.shared.incr('fresh', 1, 10) == 11)\n"
             "  wzp.shared.set('t', 1, 60)\n"
             "  local ttl = wzp.shared.ttl('t')\n"
             "  assert(ttl > 59 and ttl <= 60)\n"
             "  assert(wzp.shared.ttl('s') == -1 and wzp.shared.ttl('none') == nil)\n"
             "  assert(wzp.shared.delete('s') and wzp.shared.get('s') == nil)\n"
             "  assert(not pcall(wzp.shared.incr, 'b', 1))\n"
             "  return true\n"
             "end\n");
    wzp_policy_free(p);
    struct wzp_shval v;
    cr_assert_eq(wzp_shdict_get(&shared, "n", &v, 0), WZP_OK, "visible from C");
    cr_assert_eq(v.number, 5);
}

struct thread_arg {
    struct wzp_policy *p;
};

static void *join_many(void *arg)
{
    struct wzp_policy *p = arg;
    for (int i = 0; i < 5000; i++) {
        struct wzp_decision d;
        wzp_policy_on_join(p, &join_info, &d);
    }
    return NULL;
}

Test(policy, shared_dictionary_across_worker_states)
{
    const char *text = "function on_join(j) wzp.shared.incr('joins', 1) end\n";
    struct wzp_policy *a = load(text), *b = load(text);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, join_many, a);
    pthread_create(&tb, NULL, join_many, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    struct wzp_shval v;
    cr_assert_eq(wzp_shdict_get(&shared, "joins", &v, 0), WZP_OK);
    cr_assert_eq(v.number, 10000, "two states in two threads, one dictionary");
    wzp_policy_free(a);
    wzp_policy_free(b);
}

/* A policy cannot swallow its time budget: pcall, xpcall and coroutines each catch the
 * error once, but it is raised again at every instruction until the hook returns. */
static void budget_is_not_catchable(const char *body)
{
    limits.budget_ms = 20;
    char text[512];
    snprintf(text, sizeof text, "function on_join(j)\n%s\nend\n", body);
    struct wzp_policy *p = load(text);
    for (int round = 0; round < 2; round++) { /* and the next call gets its whole budget */
        uint64_t t0 = wzp_now_ns();
        struct wzp_decision d = join(p);
        uint64_t ms = (wzp_now_ns() - t0) / 1000000;
        cr_assert_not(d.allow, "fails closed");
        cr_assert_geq(ms, 20);
        cr_assert_lt(ms, 1000, "%s: stopped near the budget, took %llu ms", body,
                     (unsigned long long)ms);
    }
    cr_assert_eq(wzp_policy_stats(p)->budget_exceeded, 2);
    wzp_policy_free(p);
}

Test(policy, budget_survives_pcall)
{
    budget_is_not_catchable("while true do pcall(function() while true do end end) end");
}

Test(policy, budget_survives_xpcall_with_a_looping_handler)
{
    budget_is_not_catchable("while true do xpcall(function() while true do end end,\n"
                            "  function(e) while true do end end) end");
}

Test(policy, budget_survives_coroutines)
{
    budget_is_not_catchable("while true do local co = coroutine.create(function()\n"
                            "  while true do end end) coroutine.resume(co) end");
}

Test(policy, budget_survives_pcall_at_load_and_in_self_check)
{
    limits.budget_ms = 20;
    uint64_t t0 = wzp_now_ns();
    load_fails("while true do pcall(function() while true do end end) end\n",
               "time budget of 20 ms exceeded");
    load_fails("function self_check()\n"
               "  while true do pcall(function() while true do end end) end\n"
               "end\n",
               "time budget of 20 ms exceeded");
    cr_assert_lt((wzp_now_ns() - t0) / 1000000, 2000);
}

/* A gsub replacement that calls gsub again recursed on the C stack until SIGSEGV (a
 * template expander with a cycle looks exactly like this). */
Test(policy, gsub_recursion_is_an_error_not_a_crash)
{
    load_fails("local function f(s) return (s:gsub('.', f)) end\nf('ab')\n",
               "replacement functions nested more than 64 deep");
    struct wzp_policy *p = load("local function f(s) return (s:gsub('.', f)) end\n"
                                "function on_join(j) f(j.room) end\n");
    cr_assert_not(join(p).allow, "fails closed");
    cr_assert_eq(wzp_policy_stats(p)->errors, 1);
    /* the counter unwound with the error: gsub with a function still works */
    wzp_policy_free(p);
    p = load("function on_join(j)\n"
             "  pcall(function() local function f(s) return (s:gsub('.', f)) end f('ab') end)\n"
             "  local s = ('abc'):gsub('.', function(c) return c:upper() end)\n"
             "  return s == 'ABC', 'gsub broken'\n"
             "end\n");
    cr_assert(join(p).allow);
    cr_assert(join(p).allow, "and again");
    wzp_policy_free(p);
}

Test(policy, xpcall_calls_its_handler_with_the_error)
{
    struct wzp_policy *p =
        load("function on_join(j)\n"
             "  local ok, msg = xpcall(function(a) error('boom ' .. a, 0) end,\n"
             "                         function(e) return 'handled: ' .. e end,\n"
             "                         'x')\n"
             "  local ok2, v = xpcall(function() return 42 end, print)\n"
             "  return not ok and msg == 'handled: boom x' and ok2 and v == 42,\n"
             "         tostring(msg)\n"
             "end\n");
    cr_assert(join(p).allow);
    wzp_policy_free(p);
}

/* A typo must not fail open: allow is true, false or absent. */
Test(policy, allow_must_be_a_boolean)
{
    const char *const bad[] = {"'no'", "0", "1", "'false'", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[160];
        snprintf(text, sizeof text, "function on_join(j) return {allow = %s} end\n", bad[i]);
        struct wzp_policy *p = load(text);
        struct wzp_decision d = join(p);
        cr_assert_not(d.allow, "allow = %s refuses", bad[i]);
        cr_assert_str_eq(d.reason, "policy returned allow that is not true or false");
        wzp_policy_free(p);
    }
    struct wzp_policy *p =
        load("function on_join(j) return {allow = true, role = 'listener'} end\n");
    cr_assert(join(p).allow);
    wzp_policy_free(p);
    p = load("function on_join(j) return {role = 'listener'} end\n");
    cr_assert(join(p).allow, "absent allow admits");
    wzp_policy_free(p);
    /* a decision table's metatable is not consulted (no policy code outside protection) */
    p = load("function on_join(j)\n"
             "  return setmetatable({}, {__index = function() error('never called') end})\n"
             "end\n");
    cr_assert(join(p).allow);
    wzp_policy_free(p);
}

Test(policy, timer_intervals_are_finite_and_in_range)
{
    const char *const bad[] = {"2^64", "1/0", "0/0", "1e300", "-5", "5", "86400001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[160];
        snprintf(text, sizeof text, "wzp.every(%s, function() end)\n", bad[i]);
        load_fails(text, "wzp.every: the interval must be 10 to 86400000 ms");
    }
    struct wzp_policy *p = load("wzp.every(86400000, function() end)\n");
    wzp_policy_free(p);
}

Test(policy, timers_beyond_the_share_of_a_second_are_skipped)
{
    /* Each run busies the CPU for about 4 ms, well within its 50 ms budget; with a share of
     * 10 ms per second, the fourth run in the same second is skipped and counted. */
    limits.share_ms = 10;
    struct wzp_policy *p = load("runs = 0\n"
                                "wzp.every(10, function()\n"
                                "  runs = runs + 1\n"
                                "  local t = os.clock() + 0.004\n"
                                "  while os.clock() < t do end\n"
                                "end)\n");
    uint64_t now_ms = wzp_now_ns() / 1000000; /* the clock timers start from */
    for (int i = 0; i < 6; i++) {
        now_ms += 10;
        wzp_policy_run_timers(p, now_ms);
    }
    const struct wzp_policy_stats *st = wzp_policy_stats(p);
    uint64_t skipped = atomic_load(&st->timers_skipped), calls = atomic_load(&st->calls);
    cr_assert_geq(skipped, 1, "calls %llu", (unsigned long long)calls);
    cr_assert_leq(calls, 4 + 1 /* the load */, "no more than the share allows");
    cr_assert_eq(calls - 1 + skipped, 6, "every due run either ran or was counted");
    wzp_policy_free(p);
}

Test(policy, backtracking_patterns_on_long_subjects_are_refused_quickly)
{
    uint64_t t0 = wzp_now_ns();
    load_fails("local s = ('a'):rep(300)\nlocal x = s:find('.-.-.-b')\n",
               "p.lua:2: string.find: pattern \".-.-.-b\" has 3 \".\" repetitions");
    cr_assert_lt(wzp_now_ns() - t0, 500000000ull, "refused without running the match");
    load_fails("local x = string.match(('a'):rep(2000), '(.*)x(.*)y')\n", "string.match");
    load_fails("for w in string.gmatch(('a'):rep(2000), '.-.-c') do end\n", "string.gmatch");
    load_fails("local x = string.gsub(('a'):rep(2000), '.*.*b', '')\n", "string.gsub");
    /* What stays allowed: anchored patterns on client-sized data, single repetitions,
     * classes, sets with '.' and '-', short subjects, plain finds. */
    struct wzp_policy *p = load("local s = ('a'):rep(300)\n"
                                "assert(s:find('^(.-)@(.-)$') == nil)\n"
                                "assert(('k=v'):match('(%w+)=(%w+)') == 'k')\n"
                                "assert(s:find('.*b') == nil)\n"
                                "assert(('x.y-z'):gsub('[.-]', '') == 'xyz')\n"
                                "assert(('ab'):find('.-.-.-b') == 1)\n"
                                "assert(s:find('.-.-.-b', 1, true) == nil)\n");
    wzp_policy_free(p);
}

Test(policy, errors_that_are_not_strings_say_where)
{
    load_fails("local x = 1\nerror({code = 7})\n",
               "p.lua:2: error object is a table, not a string");
    struct wzp_policy *p = load("function on_join(j)\n  error(nil)\nend\n");
    cr_assert_not(join(p).allow);
    wzp_policy_free(p);
}

static int dump_writer(lua_State *L, const void *data, size_t len, void *ud)
{
    (void)L;
    return fwrite(data, 1, len, ud) == len ? 0 : 1;
}

Test(policy, bytecode_is_refused_with_the_file_named)
{
    lua_State *L = luaL_newstate();
    cr_assert_eq(luaL_loadstring(L, "function on_join() end"), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/compiled.lua", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_eq(lua_dump(L, dump_writer, f), 0);
    fclose(f);
    lua_close(L);
    struct wzp_policy *p;
    char err[512] = "";
    cr_assert_eq(wzp_policy_load(&p, path, &limits, &env, err, sizeof err), WZP_EINVAL);
    cr_assert(strstr(err, path) && strstr(err, "precompiled (bytecode) policies are refused"), "%s",
              err);
}

/* A policy that keeps its data at the memory cap made a later unprotected call inside the
 * relay (building a hook's arguments, reading its result) fail, and LuaJIT exited the
 * process with nothing logged. */
Test(policy, memory_kept_at_the_cap_never_ends_the_process)
{
    limits.memory_bytes = 4u << 20;
    limits.budget_ms = 20000;
    /* at load: refused with a reason, not a silent exit */
    load_fails(
        "keep = {}\n"
        "pcall(function() while true do keep[#keep + 1] = ('x'):rep(500) .. #keep end end)\n",
        "hooks would run out of memory");
    /* in a hook: every later call still returns (fails closed), the state is not lost */
    struct wzp_policy *p = load("keep = {}\n"
                                "function on_join(j)\n"
                                "  pcall(function()\n"
                                "    while true do keep[#keep + 1] = ('y'):rep(500) .. #keep end\n"
                                "  end)\n"
                                "  return {allow = true, reason = ('r'):rep(100)}\n"
                                "end\n"
                                "function on_leave(l) keep = {} end\n");
    for (int i = 0; i < 50; i++)
        join(p); /* allowed or refused, but returning */
    struct wzp_leave_info l = {7, "lobby", "aaaa:bbbb", "1.2.3.4:5", "closed"};
    wzp_policy_on_leave(p, &l); /* drops the data */
    uint64_t errors = wzp_policy_stats(p)->errors;
    wzp_policy_on_leave(p, &l);
    cr_assert_eq(wzp_policy_stats(p)->errors, errors, "once emptied, calls work again");
    wzp_policy_free(p);
}

/* Replay's entry point: a hook called with its argument table given as JSON. */
Test(policy, hooks_called_from_recorded_json)
{
    struct wzp_policy *p = load("function on_join(j)\n"
                                "  if j.room == 'x' and j.auth.team == 'red' then\n"
                                "    return {allow = true, role = 'listener', hears = {'stage'}}\n"
                                "  end\n"
                                "  return false, 'no'\n"
                                "end\n"
                                "function on_quality(q) if q.loss_pct > 10 then return "
                                "'Degraded' end end\n");
    struct wzp_decision d;
    int tier;
    cr_assert_eq(wzp_policy_call_json(p, "on_join",
                                      "{\"room\":\"x\",\"id\":3,\"auth\":{\"team\":\"red\"}}", &d,
                                      &tier),
                 WZP_OK);
    cr_assert(d.allow);
    cr_assert_eq(d.role, WZP_ROLE_LISTENER);
    cr_assert(d.route.set);
    cr_assert_str_eq(d.route.hears[0], "stage");
    cr_assert_eq(tier, -1);
    cr_assert_eq(wzp_policy_call_json(p, "on_join", "{\"room\":\"y\"}", &d, &tier), WZP_OK);
    cr_assert_not(d.allow);
    cr_assert_str_eq(d.reason, "no");
    cr_assert_eq(
        wzp_policy_call_json(p, "on_quality", "{\"loss_pct\":20,\"tier\":\"Good\"}", &d, &tier),
        WZP_OK);
    cr_assert_eq(tier, WZP_TIER_DEGRADED);
    cr_assert_eq(wzp_policy_call_json(p, "on_leave", "{}", &d, &tier), WZP_EINVAL);
    cr_assert_eq(wzp_policy_call_json(p, "on_join", "[1]", &d, &tier), WZP_EINVAL);
    cr_assert_eq(wzp_policy_call_json(p, "on_connect", "{\"addr\":\"1.2.3.4:5\"}", &d, &tier),
                 WZP_OK, "a hook the policy does not define decides as upstream");
    cr_assert(d.allow);
    wzp_policy_free(p);
}
