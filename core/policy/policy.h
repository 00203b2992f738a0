/*
 * policy.h - operator policy in LuaJIT.
 *
 * One struct wzp_policy is one Lua state running one policy file. Each worker owns its
 * own (no global Lua lock); a state is only ever used by one thread at a time. Hooks run
 * at events (connect, join, leave, quality change, timers), never per packet: their
 * decisions land in participant flags that the C fan-out reads.
 *
 * Safety: every call is a lua_pcall with a traceback. Policy code runs with the JIT off
 * so an instruction-count hook can enforce a per-call time budget (LuaJIT never runs
 * count hooks inside compiled traces), and under a memory cap enforced by the state's
 * allocator. By default the sandbox has no io, os (but os.time/os.clock/os.date), ffi,
 * debug, package.loadlib, load/loadstring/dofile/loadfile; `require` loads only Lua
 * files from the policy's directory and the relay's lua/ directory.
 *
 * Failure modes: admission hooks (on_connect, on_join, on_action, on_register, on_call)
 * fail closed with a reason; on_quality fails open (the computed tier stands); on_leave
 * and timers only log. Every error is logged with the traceback and counted.
 */
#ifndef WZP_POLICY_H
#define WZP_POLICY_H

#include "sizes.h"
#include "groups.h"
#include "quality.h"
#include "shdict.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_POLICY_DEFAULT_BUDGET_MS  20
#define WZP_POLICY_DEFAULT_MEMORY_MB  64
#define WZP_POLICY_MAX_CALLBACK_DEPTH 64 /* string.gsub replacement functions nested */
/* Upper bound of the backtracking steps a pattern with several "." repetitions may risk
 * on its subject before string.find/match/gmatch/gsub refuse it (about 25 ms). */
#define WZP_POLICY_PATTERN_STEPS 1e7
#define WZP_POLICY_REASON_MAX    128
#define WZP_POLICY_MAX_METRICS   64

#define WZP_POLICY_DEFAULT_SHARE_MS 250 /* of each second of a worker: a quarter of a core */

struct wzp_policy_limits {
    unsigned budget_ms;  /* per hook call */
    unsigned share_ms;   /* per second of a state's calls, from which its timers are skipped
                          * (0: no such limit, as in the synthetic time of --test-policy) */
    size_t memory_bytes; /* per Lua state */
    bool unsafe;         /* opt in to io, os, ffi, debug, package.loadlib */
    bool jit;            /* opt in to the JIT (budgets then miss compiled loops) */
};

/* Role a join decision gives a participant. */
enum wzp_role {
    WZP_ROLE_SPEAKER = 0, /* sends and receives (default) */
    WZP_ROLE_LISTENER,    /* receives; its media is not forwarded */
    WZP_ROLE_MUTED,       /* as listener, set by a moderator */
    WZP_ROLE_COUNT,
};

const char *wzp_role_name(enum wzp_role role);

/* What the room API shows of a participant. */
struct wzp_participant_view {
    uint64_t id;
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    char alias[WZP_ALIAS_MAX + 1];
    bool has_alias;
    enum wzp_role role;
    enum wzp_tier tier;
    uint64_t packets;       /* media packets sent (comfort noise excluded) */
    uint64_t last_media_ms; /* wzp.now_ms() clock; 0 = never */
};

/*
 * The relay behind the room API (wzp.rooms, wzp.participants, wzp.kick, wzp.set_role,
 * wzp.send_directive). Implemented by the SFU for the running relay, and by the policy
 * test harness with synthetic rooms. Returns follow the WZP_E* convention.
 */
struct wzp_policy_ops {
    size_t (*rooms)(void *ctx, char (*names)[WZP_ROOM_NAME_MAX + 1], size_t *sizes, size_t max);
    size_t (*participants)(void *ctx, const char *room, struct wzp_participant_view *out,
                           size_t max);
    int (*kick)(void *ctx, uint64_t id, const char *reason);
    int (*set_role)(void *ctx, uint64_t id, enum wzp_role role);
    int (*send_directive)(void *ctx, const char *room, enum wzp_tier tier, const char *reason);
    /* wzp.route: the participant's groups (rt->set false: back to the default). WZP_OK,
     * WZP_ENOTFOUND, or WZP_EINVAL / WZP_EFULL with why filled (groups.h). */
    int (*route)(void *ctx, uint64_t id, const struct wzp_route *rt, char *why, size_t whylen);
    /* optional: the clock wzp.now_ms and wzp.every use (default: monotonic ms) */
    uint64_t (*now_ms)(void *ctx);
};

/*
 * Counters policies keep with wzp.metric(name, n): at most WZP_POLICY_MAX_METRICS names
 * (letters, digits, '_', up to 48 characters), registered on first use, kept across
 * reloads, exported by /metrics. Values are doubles updated under a mutex (control plane).
 */
#define WZP_POLICY_METRIC_NAME_MAX 48

struct wzp_policy_metrics {
    pthread_mutex_t lock;
    char names[WZP_POLICY_MAX_METRICS][WZP_POLICY_METRIC_NAME_MAX + 1];
    double values[WZP_POLICY_MAX_METRICS];
    size_t count;
};

void wzp_policy_metrics_init(struct wzp_policy_metrics *m);
/* The i-th registered name, or NULL; its current value. */
const char *wzp_policy_metric_name(struct wzp_policy_metrics *m, size_t i);
double wzp_policy_metric_value(struct wzp_policy_metrics *m, size_t i);

/* Process-wide things every policy state shares. */
struct wzp_policy_env {
    struct wzp_shdict *shared;          /* wzp.shared */
    const char *lua_dir;                /* the relay's lua/ helpers, for require */
    const struct wzp_policy_ops *ops;   /* NULL: the room API raises an error */
    struct wzp_policy_metrics *metrics; /* wzp.metric; NULL: it raises an error */
    void *ops_ctx;
};

/*
 * Counters of policy calls. Written only by the thread that runs the state (relaxed
 * atomic stores), readable from any thread. A worker points every state it runs at its
 * own counters (wzp_policy_count_into), so they add up across reloads.
 */
struct wzp_policy_stats {
    _Atomic uint64_t calls, errors, budget_exceeded, memory_errors;
    _Atomic uint64_t latency_ns_total;
    _Atomic uint64_t timers_skipped; /* the state had used its share of the second */
    /* Admission calls (on_connect, on_join, on_action, on_register, on_call) in a row
     * that ended in an error, not a decision; 0 after any call that decided. A policy
     * bug, not a client, makes it grow: /ready reports it (WZP_POLICY_ERROR_STREAK). */
    _Atomic uint64_t admission_error_streak;
};

#define WZP_POLICY_ERROR_STREAK 20 /* from this many, /ready says the policy is failing */

struct wzp_policy;

/*
 * Create a state, load path (file:line on syntax errors), check that the hooks it
 * defines are functions and run its self_check() if it defines one. On error returns
 * WZP_EINVAL with a message in err and creates nothing.
 */
int wzp_policy_load(struct wzp_policy **out, const char *path, const struct wzp_policy_limits *lim,
                    const struct wzp_policy_env *env, char *err, size_t errlen);
void wzp_policy_free(struct wzp_policy *p);
const char *wzp_policy_path(const struct wzp_policy *p);
const struct wzp_policy_stats *wzp_policy_stats(const struct wzp_policy *p);
/* Count this state's calls into sink from now on (sink must outlive the state). */
void wzp_policy_count_into(struct wzp_policy *p, struct wzp_policy_stats *sink);

/* on_connect: before the TLS handshake does any key exchange. */
struct wzp_connect_info {
    const char *addr; /* "ip:port" */
    const char *sni;  /* lower-cased; NULL if none */
};

struct wzp_join_info {
    uint64_t id; /* the participant id the room API uses */
    const char *room;
    const char *fingerprint;
    const char *alias; /* NULL if none */
    const char *addr;
    unsigned room_size; /* participants already in the room */
    const char *auth;   /* featherChat's JSON answer for this client (j.auth), or NULL */
};

struct wzp_decision {
    bool allow;
    char reason[WZP_POLICY_REASON_MAX];
    enum wzp_role role;
    int max_tier;           /* -1: no cap, else enum wzp_tier */
    struct wzp_route route; /* on_join: the groups it sends into and hears (groups.h) */
};

struct wzp_leave_info {
    uint64_t id;
    const char *room;
    const char *fingerprint;
    const char *addr;
    const char *reason; /* "closed", "timed_out", "kicked", "shutdown", "error" */
};

struct wzp_quality_info {
    uint64_t id;
    const char *room;
    const char *fingerprint;
    const struct wzp_quality_report *report;
    enum wzp_tier computed; /* what the controller decided */
    enum wzp_tier previous; /* the participant's tier so far (kept if the hook fails) */
};

/* on_register: a "_signal" connection registers its fingerprint (presence). */
struct wzp_register_info {
    const char *fingerprint;
    const char *alias; /* NULL if none */
    const char *addr;
    bool is_signed;     /* RegisterPresence carried a signature, and it verified */
    bool authenticated; /* featherChat vouched for the fingerprint (--auth-url) */
    const char *auth;   /* featherChat's JSON answer (r.auth), or NULL */
};

/* on_call: a registered client calls another (DirectCallOffer). */
struct wzp_call_info {
    const char *call_id;
    const char *caller; /* the caller's registered fingerprint */
    const char *callee;
    const char *addr; /* the caller's address */
    const char *auth; /* featherChat's JSON answer for the caller (c.auth), or NULL */
};

/* Each hook returns the decision; if the policy does not define it, upstream's behaviour. */
void wzp_policy_on_connect(struct wzp_policy *p, const struct wzp_connect_info *c,
                           struct wzp_decision *d);
void wzp_policy_on_join(struct wzp_policy *p, const struct wzp_join_info *j,
                        struct wzp_decision *d);
void wzp_policy_on_leave(struct wzp_policy *p, const struct wzp_leave_info *l);
/* Admission like on_join (fails closed); role and max_tier are ignored. */
void wzp_policy_on_register(struct wzp_policy *p, const struct wzp_register_info *r,
                            struct wzp_decision *d);
void wzp_policy_on_call(struct wzp_policy *p, const struct wzp_call_info *c,
                        struct wzp_decision *d);
/* Returns the tier to use (the computed one unless the policy overrides it). */
enum wzp_tier wzp_policy_on_quality(struct wzp_policy *p, const struct wzp_quality_info *q);

/*
 * The room's tier: weakest is the relay's weakest-link choice over the participants'
 * tiers; on_room_tier may pick another. Errors and nil keep weakest (fail open).
 */
enum wzp_tier wzp_policy_on_room_tier(struct wzp_policy *p, const char *room,
                                      const enum wzp_tier *tiers, size_t n, enum wzp_tier weakest);

bool wzp_policy_has_hook(const struct wzp_policy *p, const char *name);

/* The decision of a relay without a policy (upstream's): allow, speaker, no cap. */
void wzp_decision_upstream(struct wzp_decision *d);

/* Whether the state has used its share of the current second (limits.share_ms). */
bool wzp_policy_share_used_up(struct wzp_policy *p);

/* Two decisions decide the same: allow, role, tier cap and routing (not the reason). */
bool wzp_decision_same(const struct wzp_decision *a, const struct wzp_decision *b);

/*
 * Replay (decisions.h): call hook (an admission hook or "on_quality") with the argument
 * table given as JSON, as the relay would. d gets an admission hook's decision, *tier
 * on_quality's tier (else -1). WZP_EINVAL for another hook or input that is not a JSON
 * object.
 */
int wzp_policy_call_json(struct wzp_policy *p, const char *hook, const char *input_json,
                         struct wzp_decision *d, int *tier);

#define WZP_POLICY_MAX_TIMERS   32
#define WZP_POLICY_MIN_TIMER_MS 10
#define WZP_POLICY_MAX_TIMER_MS 86400000 /* one day */

/* Run the timers (wzp.every) that are due; returns when the next one is due
 * (UINT64_MAX: none). Only one worker runs timers (see doc/POLICY.md). */
uint64_t wzp_policy_run_timers(struct wzp_policy *p, uint64_t now_ms);

/* Log a one-line summary of what the policy defines (hooks, timers). */
void wzp_policy_describe(const struct wzp_policy *p, char *out, size_t outlen);

/*
 * Test harness only (core/policy/policytest.c, wzp-relay --test-policy): the policy's Lua
 * state, so that a test file can be loaded into it and call the hooks; and lua_pcall of
 * the function below nargs arguments on that state with a time budget of budget_ms
 * instead of the per-hook one (hooks it calls get their own budget, capped by this one).
 * Returns lua_pcall's status; errfunc as in lua_pcall. Not for the relay's use.
 */
struct lua_State;
struct lua_State *wzp_policy_lua_state(struct wzp_policy *p);
int wzp_policy_pcall_budget(struct wzp_policy *p, int nargs, int nresults, int errfunc,
                            unsigned budget_ms);

#endif
