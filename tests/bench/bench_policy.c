/*
 * bench_policy.c - policy hook latency: median and p99 of on_join and on_quality calls,
 * for a few representative policies, with the JIT off (the default: budgets hold) and on.
 *
 *   build/bench_policy [iterations]
 *
 * Prints a table; it is a benchmark, not a test (nothing here can fail on timings).
 */
#include "common.h"
#include "policy.h"
#include "shdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct policy_case {
    const char *name;
    const char *text;
};

static const struct policy_case cases[] = {
    {"no hooks (default.lua)", "-- upstream behaviour\n"},
    {"acl (table lookups)", "local deny = { ['dead:beef'] = true }\n"
                            "local rooms = { lobby = true, stage = true }\n"
                            "function on_join(j)\n"
                            "  if deny[j.fingerprint] then return false, 'denied' end\n"
                            "  if not rooms[j.room] then return false, 'unknown room' end\n"
                            "  return { role = j.alias == 'guest' and 'listener' or 'speaker' }\n"
                            "end\n"
                            "function on_quality(q)\n"
                            "  if q.loss_pct > 50 then return 'Catastrophic' end\n"
                            "end\n"},
    {"rate limit (shared dict)", "function on_join(j)\n"
                                 "  local ip = j.addr:match('^(.*):%d+$')\n"
                                 "  local n = wzp.shared.incr('join:' .. ip, 1, 0, 10)\n"
                                 "  if n > 1e9 then return false, 'slow down' end\n"
                                 "end\n"
                                 "function on_quality(q) return nil end\n"},
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *policy, const char *hook, bool jit, uint64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_u64);
    printf("| %-26s | %-10s | %-3s | %8.2f | %8.2f | %8.2f |\n", policy, hook, jit ? "on" : "off",
           ns[n / 2] / 1e3, ns[n * 99 / 100] / 1e3, ns[n - 1] / 1e3);
}

static void run_case(const struct policy_case *pc, bool jit, size_t iterations)
{
    char path[] = "/tmp/wzp-bench-policy-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, pc->text, strlen(pc->text)) < 0) {
        perror("policy file");
        exit(1);
    }
    close(fd);
    struct wzp_shdict shared;
    wzp_shdict_init(&shared, 100000, 16u << 20);
    struct wzp_policy_env env = {.shared = &shared};
    struct wzp_policy_limits lim = {.budget_ms = 1000, .memory_bytes = 64u << 20, .jit = jit};
    struct wzp_policy *p;
    char err[512];
    if (wzp_policy_load(&p, path, &lim, &env, err, sizeof err) != WZP_OK) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    uint64_t *ns = malloc(iterations * sizeof *ns);
    struct wzp_join_info j = {.id = 1,
                              .room = "lobby",
                              .fingerprint = "aaaa:bbbb",
                              .alias = "guest",
                              .addr = "192.0.2.7:5000",
                              .room_size = 4};
    for (size_t i = 0; i < iterations; i++) {
        struct wzp_decision d;
        uint64_t t0 = wzp_now_ns();
        wzp_policy_on_join(p, &j, &d);
        ns[i] = wzp_now_ns() - t0;
    }
    report(pc->name, "on_join", jit, ns, iterations);
    struct wzp_quality_report r = {40, 30, 5, 200};
    struct wzp_quality_info q = {1, "lobby", "aaaa:bbbb", &r, WZP_TIER_DEGRADED, WZP_TIER_GOOD};
    for (size_t i = 0; i < iterations; i++) {
        uint64_t t0 = wzp_now_ns();
        (void)wzp_policy_on_quality(p, &q);
        ns[i] = wzp_now_ns() - t0;
    }
    report(pc->name, "on_quality", jit, ns, iterations);
    free(ns);
    wzp_policy_free(p);
    wzp_shdict_destroy(&shared);
    unlink(path);
}

int main(int argc, char **argv)
{
    size_t iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    if (iterations < 100)
        iterations = 100;
    printf("policy hook latency, %zu calls each (µs; one thread)\n\n", iterations);
    printf("| %-26s | %-10s | %-3s | %8s | %8s | %8s |\n", "policy", "hook", "jit", "median", "p99",
           "max");
    printf("|%s|%s|%s|%s|%s|%s|\n", "----------------------------", "------------", "-----",
           "----------", "----------", "----------");
    for (size_t i = 0; i < WZP_ARRAY_LEN(cases); i++) {
        run_case(&cases[i], false, iterations);
        run_case(&cases[i], true, iterations);
    }
    return 0;
}
