/*
 * decisions.h - the policy decision log (--decision-log PATH) and its replay
 * (wzp-relay --replay LOG -s FILE).
 *
 * Every admission hook call (on_connect, on_join, on_action, on_register, on_call) and
 * every on_quality call is one JSON line: the table the hook saw, the policy clock, the
 * policy file's hash and the decision:
 *
 *   {"ts":"...","policy":"3f2a...","hook":"on_join","now_ms":123,"input":{...},
 *    "decision":{"allow":false,"reason":"closed","role":"speaker","max_tier":null}}
 *   {"ts":"...","policy":"...","hook":"on_quality","now_ms":...,"input":{...},
 *    "decision":{"tier":"Degraded"}}
 *
 * Replay feeds each recorded input to a candidate policy, with the recorded clock, and
 * reports every decision that would differ. The room API (wzp.rooms, wzp.participants,
 * ...) sees no rooms during a replay, and wzp.shared starts empty: decisions that depend
 * on them can differ for that reason alone (the report says which hook and line).
 */
#ifndef WZP_DECISIONS_H
#define WZP_DECISIONS_H

#include "eventlog.h"
#include "policy.h"

#include <stdint.h>
#include <stdio.h>

/* The process's decision log (closed unless --decision-log). */
extern struct wzp_linelog wzp_decision_log;

struct lua_State;

/* Record one call: input is the hook's argument table at stack index idx. d for
 * admission hooks, or tier >= 0 for on_quality. Does nothing while the log is closed. */
void wzp_decisions_record(struct lua_State *L, int idx, const char *policy_hash, const char *hook,
                          uint64_t now_ms, const struct wzp_decision *d, int tier);

/*
 * Replay the decision log at log_path against the policy at policy_path (loaded with
 * lim and env; env->ops is replaced by an empty room API with the recorded clock).
 * Writes each difference and a summary to out. Returns 0 when nothing would change, 1
 * when something would, 2 when a file cannot be read or the policy does not load (err).
 */
int wzp_decisions_replay(const char *log_path, const char *policy_path,
                         const struct wzp_policy_limits *lim, const struct wzp_policy_env *env,
                         FILE *out, char *err, size_t errlen);

#endif
