/* test_policytest.c - the policy test mode (wzp-relay --test-policy): results and counts,
 * load errors, budgets, and the synthetic world behind the room API. */
#include "policytest.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static struct wzp_policy_limits limits;
static char *out_text, *err_text;
static size_t out_len, err_len;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/wzp-policytest-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    limits = (struct wzp_policy_limits){.budget_ms = 50, .memory_bytes = 16u << 20};
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    free(out_text);
    free(err_text);
    out_text = err_text = NULL;
}

TestSuite(policytest, .init = setup, .fini = teardown, .timeout = 30);

static const char *write_file(const char *name, const char *text)
{
    static char paths[2][128];
    static int which;
    char *path = paths[which++ % 2];
    snprintf(path, 128, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Run the harness on a policy and a test file; the outputs land in out_text/err_text. */
static int run_budget(const char *policy, const char *tests, unsigned budget_ms)
{
    const char *pp = write_file("policy.lua", policy);
    const char *tp = write_file("tests.lua", tests);
    free(out_text);
    free(err_text);
    FILE *out = open_memstream(&out_text, &out_len);
    FILE *err = open_memstream(&err_text, &err_len);
    int rv = wzp_policytest_run(pp, tp, &limits, NULL, budget_ms, out, err);
    fclose(out);
    fclose(err);
    return rv;
}

static int run(const char *policy, const char *tests)
{
    return run_budget(policy, tests, 0);
}

#define ASSERT_OUT_HAS(s) cr_assert(strstr(out_text, s), "output lacks \"%s\":\n%s", s, out_text)
#define ASSERT_ERR_HAS(s) cr_assert(strstr(err_text, s), "errors lack \"%s\":\n%s", s, err_text)

static const char deny_policy[] =
    "function on_join(j)\n"
    "  if j.room == 'closed' then return false, 'room closed' end\n"
    "  return { role = j.alias == 'mod' and 'speaker' or 'listener' }\n"
    "end\n";

Test(policytest, passing_file)
{
    int rv = run(deny_policy, "test('closed room is refused', function()\n"
                              "  local d = join{room = 'closed'}\n"
                              "  expect(not d.allow)\n"
                              "  expect_eq(d.reason, 'room closed')\n"
                              "end)\n"
                              "test('roles', function()\n"
                              "  local m = join{room = 'r', alias = 'mod'}\n"
                              "  local l = join{room = 'r'}\n"
                              "  expect_eq(m.role, 'speaker')\n"
                              "  expect_eq(participant(l.id).role, 'listener')\n"
                              "end)\n");
    cr_assert_eq(rv, 0, "out:\n%s\nerr:\n%s", out_text, err_text);
    cr_assert_str_eq(out_text, "ok - closed room is refused\nok - roles\n2 passed, 0 failed\n");
    cr_assert_str_eq(err_text, "");
}

Test(policytest, failing_file_counts_and_reports_file_line_and_values)
{
    int rv = run(deny_policy, "test('one', function() expect(true) end)\n"
                              "test('wrong reason', function()\n"
                              "  expect_eq(join{room = 'closed'}.reason, 'nope', 'reason')\n"
                              "end)\n"
                              "test('two', function() expect_eq(1 + 1, 2) end)\n"
                              "test('plain expect', function() expect(false, 'must hold') end)\n"
                              "test('runtime error', function() local t; return t.x end)\n");
    cr_assert_eq(rv, 1);
    ASSERT_OUT_HAS("ok - one\n");
    ASSERT_OUT_HAS("FAIL - wrong reason: ");
    ASSERT_OUT_HAS("tests.lua:3: reason: expected \"nope\", got \"room closed\"\n");
    ASSERT_OUT_HAS("ok - two\n");
    ASSERT_OUT_HAS("tests.lua:6: expectation failed: must hold\n");
    ASSERT_OUT_HAS("FAIL - runtime error: ");
    ASSERT_OUT_HAS("tests.lua:7: attempt to index local 't'");
    cr_assert(strstr(out_text, "\n2 passed, 3 failed\n"), "%s", out_text);
}

Test(policytest, syntax_error_in_the_test_file)
{
    int rv = run(deny_policy, "test('a', function()\n  local x = (\nend)\n");
    cr_assert_eq(rv, 2);
    cr_assert_str_eq(out_text, "", "no test ran");
    ASSERT_ERR_HAS("tests.lua:3:");
}

Test(policytest, load_errors_exit_2)
{
    cr_assert_eq(run("function on_join(j)\n  return (\nend\n", "test('a', function() end)\n"), 2);
    ASSERT_ERR_HAS("policy error");
    ASSERT_ERR_HAS("policy.lua:3:");
    cr_assert_eq(run(deny_policy, "error('setup broke')\n"), 2);
    ASSERT_ERR_HAS("tests.lua:1: setup broke");
    cr_assert_eq(run(deny_policy, "-- no tests\n"), 2);
    ASSERT_ERR_HAS("registers no test");
    cr_assert_eq(run(deny_policy, "test('nested', function() test('x', function() end) end)\n"), 1,
                 "test() inside a test is an error");
}

Test(policytest, runaway_test_is_stopped_and_the_next_one_runs)
{
    int rv = run_budget(deny_policy,
                        "test('spins', function() local n = 0 while true do n = n + 1 end end)\n"
                        "test('after', function() expect(join{room = 'x'}.allow) end)\n",
                        200);
    cr_assert_eq(rv, 1);
    ASSERT_OUT_HAS("FAIL - spins: ");
    ASSERT_OUT_HAS("tests.lua:1: the test ran longer than its time budget of 200 ms");
    ASSERT_OUT_HAS("ok - after\n");
    ASSERT_OUT_HAS("1 passed, 1 failed\n");
}

Test(policytest, advancing_far_stops_at_the_test_budget)
{
    int rv = run_budget("n = 0\nwzp.every(10, function() n = n + 1 end)\n",
                        "test('a year of 10 ms ticks', function() advance(365 * 86400000) end)\n"
                        "test('after', function() expect(n > 0) end)\n",
                        300);
    cr_assert_eq(rv, 1);
    ASSERT_OUT_HAS("FAIL - a year of 10 ms ticks: ");
    ASSERT_OUT_HAS("the test ran longer than its time budget of 300 ms");
    ASSERT_OUT_HAS("ok - after\n");
}

Test(policytest, hooks_keep_their_own_budget_inside_a_test)
{
    int rv = run("function on_join(j) if j.room == 'loop' then while true do end end end\n",
                 "test('a runaway hook fails closed', function()\n"
                 "  local d = join{room = 'loop'}\n"
                 "  expect_eq(d.allow, false)\n"
                 "  expect_eq(d.reason, 'policy error')\n"
                 "  expect(join{room = 'fine'}.allow)\n"
                 "end)\n");
    cr_assert_eq(rv, 0, "%s", out_text);
}

Test(policytest, synthetic_world)
{
    int rv = run("ticks, leaves = 0, {}\n"
                 "function on_leave(l) leaves[#leaves + 1] = l.fingerprint .. ' ' .. l.reason end\n"
                 "function on_quality(q) if q.loss_pct >= 50 then return 'Catastrophic' end end\n"
                 "function on_join(j)\n"
                 "  if j.alias == 'capped' then return { max_tier = 'Degraded' } end\n"
                 "end\n"
                 "wzp.every(100, function()\n"
                 "  ticks = ticks + 1\n"
                 "  for _, r in ipairs(wzp.rooms()) do\n"
                 "    for _, p in ipairs(wzp.participants(r.name)) do\n"
                 "      if p.packets > 100 then wzp.kick(p.id, 'too loud') end\n"
                 "    end\n"
                 "  end\n"
                 "end)\n",
                 "test('clock and timers', function()\n"
                 "  expect_eq(wzp.now_ms(), 1000000)\n"
                 "  expect_eq(advance(250), 1000250)\n"
                 "  expect_eq(ticks, 2, 'a timer runs at each due time')\n"
                 "end)\n"
                 "test('join order, room sizes, leave', function()\n"
                 "  local a = join{room = 'r', fingerprint = 'aaaa', alias = 'a', addr = "
                 "'10.0.0.1:1'}\n"
                 "  local b = join{room = 'r'}\n"
                 "  local ps = wzp.participants('r')\n"
                 "  expect_eq(#ps, 2)\n"
                 "  expect_eq(ps[1].id, a.id)\n"
                 "  expect_eq(ps[1].alias, 'a')\n"
                 "  expect_eq(ps[2].id, b.id)\n"
                 "  expect_eq(wzp.rooms(), {{name = 'r', size = 2}})\n"
                 "  leave(a.id)\n"
                 "  expect_eq(leaves[#leaves], 'aaaa closed')\n"
                 "  expect_eq(participant(a.id), nil)\n"
                 "  leave(b.id, 'timed_out')\n"
                 "  expect_eq(wzp.rooms(), {}, 'an empty room goes away')\n"
                 "end)\n"
                 "test('activity and kicks', function()\n"
                 "  local p = join{room = 'k', fingerprint = 'bbbb'}\n"
                 "  advance(30)\n"
                 "  media(p.id, 101)\n"
                 "  local v = participant(p.id)\n"
                 "  expect_eq(v.packets, 101)\n"
                 "  expect_eq(v.last_media_ms, wzp.now_ms())\n"
                 "  advance(100)\n"
                 "  expect_eq(kicked(p.id), 'too loud')\n"
                 "  expect_eq(participant(p.id), nil)\n"
                 "  expect_eq(leaves[#leaves], 'bbbb kicked')\n"
                 "end)\n"
                 "test('quality, caps and directives', function()\n"
                 "  local p = join{room = 'q'}\n"
                 "  local c = join{room = 'q', alias = 'capped'}\n"
                 "  expect_eq(c.max_tier, 'Degraded')\n"
                 "  expect_eq(participant(c.id).tier, 'Degraded')\n"
                 "  expect_eq({quality{id = p.id, loss_pct = 60}}, {'Catastrophic', "
                 "'Catastrophic'})\n"
                 "  expect_eq({quality{id = p.id, rtt_ms = 10}}, {'Studio64k', 'Studio64k'})\n"
                 "  expect_eq({quality{id = c.id, tier = 'Good'}}, {'Good', 'Degraded'})\n"
                 "  expect(wzp.send_directive('q', 'Good', 'why'))\n"
                 "  expect(not wzp.send_directive('nowhere', 'Good'))\n"
                 "  expect_eq(directives(), {{room = 'q', tier = 'Good', reason = 'why'}})\n"
                 "  expect(wzp.set_role(p.id, 'muted'))\n"
                 "  expect_eq(participant(p.id).role, 'muted')\n"
                 "end)\n");
    cr_assert_eq(rv, 0, "out:\n%s\nerr:\n%s", out_text, err_text);
    ASSERT_OUT_HAS("4 passed, 0 failed\n");
}

Test(policytest, test_globals_do_not_replace_the_policys)
{
    int rv = run("settings = { room = 'closed' }\n"
                 "function helper(j) return j.room ~= settings.room end\n"
                 "function on_join(j) return helper(j), 'closed' end\n",
                 "function helper() return true end -- the test file's own\n"
                 "test('the policy still uses its helper', function()\n"
                 "  expect(not join{room = 'closed'}.allow)\n"
                 "end)\n"
                 "test('settings can be changed field by field', function()\n"
                 "  settings.room = 'other'\n"
                 "  expect(join{room = 'closed'}.allow)\n"
                 "  expect(not join{room = 'other'}.allow)\n"
                 "end)\n");
    cr_assert_eq(rv, 0, "%s", out_text);
}
