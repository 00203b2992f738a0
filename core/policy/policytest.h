/*
 * policytest.h - the policy test mode (wzp-relay --test-policy POLICY.lua TESTS.lua).
 *
 * Runs a policy against synthetic events, without any network: the policy is loaded
 * with wzp_policy_load whose room API (struct wzp_policy_ops) is a synthetic world kept
 * here (rooms with participants in join order, roles, tiers, activity, kicks, directives
 * and a clock that starts at WZP_POLICYTEST_START_MS and moves only when a test calls
 * advance()), and a fresh shared dictionary. The test file is then loaded into the same
 * Lua state, in an environment of its own that adds the test functions (test, connect,
 * join, leave, quality, media, advance, participant, kicked, directives, expect,
 * expect_eq; doc/POLICY.md describes each) and reads the policy's globals through
 * __index. The tests it registers then run in order, each in a protected call with a
 * budget of its own (hooks called from a test keep their per-hook budget).
 *
 * Output (to out): "ok - NAME" or "FAIL - NAME: MESSAGE" per test, then
 * "N passed, N failed". Errors that stop the run (policy or test file does not load,
 * no tests) go to err.
 */
#ifndef WZP_POLICYTEST_H
#define WZP_POLICYTEST_H

#include "policy.h"

#include <stdio.h>

#define WZP_POLICYTEST_START_MS  1000000 /* the synthetic clock at load */
#define WZP_POLICYTEST_BUDGET_MS 10000   /* per test, and for loading the test file */

/*
 * Returns the exit status: 0 every test passed, 1 some failed, 2 the run could not
 * start (the policy or the test file does not load, or it registers no test).
 * lua_dir: the relay's Lua helpers for require (may be NULL).
 */
int wzp_policytest_run(const char *policy_path, const char *tests_path,
                       const struct wzp_policy_limits *lim, const char *lua_dir,
                       unsigned test_budget_ms, FILE *out, FILE *err);

#endif
