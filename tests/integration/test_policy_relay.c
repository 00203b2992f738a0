/*
 * test_policy_relay.c - policies in the real relay: admission, roles, reloads.
 */
#include "harness.h"

#include "common.h"
#include "identity.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;
static char policy_path[128];

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(policy_relay, .fini = stop_relay, .timeout = 120);

/* Write the policy file (atomically, as an operator's deploy would). */
static void write_policy(const char *text)
{
    if (!policy_path[0]) {
        char dir[64];
        scratch_dir(dir, sizeof dir, "pol");
        snprintf(policy_path, sizeof policy_path, "%s/policy.lua", dir);
    }
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.new", policy_path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(rename(tmp, policy_path), 0);
}

static void start_with_policy(const char *text, const char *threads)
{
    policy_path[0] = '\0';
    write_policy(text);
    const char *const args[] = {"-s", policy_path, "--threads", threads, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
}

static void expect_app_close(struct tc *t, const char *reason_part)
{
    cr_assert(tc_wait_state(t, loop, WZPC_CLOSED, 5000));
    bool by_peer, is_app;
    uint64_t code;
    char reason[200];
    cr_assert(wzpc_close_info(t->c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && is_app && code == 0);
    cr_assert(strstr(reason, reason_part), "reason \"%s\" has \"%s\"", reason, reason_part);
}

static void join(struct tc *t, const char *room, uint8_t id)
{
    tc_connect(t, loop, &relay, room, id, NULL);
    cr_assert(tc_wait_state(t, loop, WZPC_JOINED, 5000), "client %u joins %s", id, room);
    cr_assert(tc_wait_updates(t, loop, 1, 3000));
}

Test(policy_relay, deny_policy_refuses_with_the_reason_in_the_log)
{
    start_with_policy("function on_join(j)\n"
                      "  wzp.metric('joins_seen')\n"
                      "  if j.room == 'closed' then\n"
                      "    wzp.metric('joins_denied', 1)\n"
                      "    return false, 'closed for maintenance'\n"
                      "  end\n"
                      "end\n",
                      "1");
    struct tc ok, no;
    join(&ok, "open", 1);
    tc_connect(&no, loop, &relay, "closed", 2, NULL);
    expect_app_close(&no, "denied: closed for maintenance");
    cr_assert_eq(no.answers, 0, "no CallAnswer for a denied join");
    cr_assert(relay_log_wait(&relay, "refused by policy", 1000));
    cr_assert(relay_log_count(&relay, "closed for maintenance") > 0);
    cr_assert_eq(relay_counter(&relay, "join_refused_policy"), 1);
    cr_assert_eq(wzpc_state(ok.c), WZPC_JOINED);
    static char scrape[256 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                 200);
    cr_assert_eq(scrape_value(scrape, "wzp_relay_policy_metric_total{name=\"joins_seen\"}"), 2);
    cr_assert_eq(scrape_value(scrape, "wzp_relay_policy_metric_total{name=\"joins_denied\"}"), 1);
    /* the SIGUSR1 stats line has them too */
    cr_assert_eq(relay_log_counter(&relay, "join_refused_policy"), 1);
    cr_assert(relay_log_count(&relay, "policy_metric joins_seen=2 joins_denied=1") > 0,
              "wzp.metric counters in the stats line");
    tc_free(&ok);
    tc_free(&no);
}

Test(policy_relay, on_connect_refuses_before_the_handshake)
{
    start_with_policy("function on_connect(c)\n"
                      "  if c.sni == 'blocked' then return false, 'room blocked' end\n"
                      "end\n",
                      "1");
    struct tc t;
    tc_connect(&t, loop, &relay, "blocked", 1, NULL);
    cr_assert(tc_wait_state(&t, loop, WZPC_CLOSED, 5000));
    bool by_peer, is_app;
    uint64_t code;
    char reason[64];
    cr_assert(wzpc_close_info(t.c, &by_peer, &is_app, &code, reason, sizeof reason));
    cr_assert(by_peer && !is_app);
    cr_assert_eq(code, 0x2, "CONNECTION_REFUSED, got 0x%llx", (unsigned long long)code);
    cr_assert(
        relay_log_wait(&relay, "refused by policy (on_connect, sni blocked): room blocked", 1000));
    cr_assert_eq(relay_counter(&relay, "conns_refused_policy"), 1);
    tc_free(&t);
}

Test(policy_relay, listener_media_reaches_nobody)
{
    start_with_policy("function on_join(j)\n"
                      "  if j.alias == 'client-1' then return { role = 'listener' } end\n"
                      "end\n",
                      "2");
    struct tc a, b, c;
    join(&a, "stage", 1);
    join(&b, "stage", 2);
    join(&c, "stage", 3);
    for (int i = 0; i < 30; i++) {
        tc_send_media(&a, NULL);
        tc_send_media(&b, NULL);
        wzpc_run_for(loop, 3);
    }
    wzpc_run_for(loop, 400);
    cr_assert_eq(b.from[1], 0, "the listener is not heard");
    cr_assert_eq(c.from[1], 0);
    cr_assert_eq(a.from[2], 30, "the listener hears the speakers");
    cr_assert_eq(c.from[2], 30);
    cr_assert_eq(relay_counter(&relay, "datagrams_not_forwarded"), 30);
    cr_assert(relay_log_count(&relay, "as a listener") == 1);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

Test(policy_relay, broken_reload_keeps_the_running_policy)
{
    start_with_policy("function on_join(j) return j.room ~= 'x', 'x is closed' end\n", "2");
    write_policy("function on_join(j)\n  return (\nend\n");
    kill(relay.pid, SIGHUP);
    cr_assert(relay_log_wait(&relay, "policy reload failed", 2000));
    cr_assert(relay_log_count(&relay, "policy.lua:3:") > 0, "file:line in the log");
    cr_assert_eq(relay_counter(&relay, "policy_reloads_failed"), 1);
    struct tc t;
    tc_connect(&t, loop, &relay, "x", 1, NULL);
    expect_app_close(&t, "x is closed"); /* the old policy still runs */
    tc_free(&t);

    write_policy("function on_join(j) return true end\n");
    kill(relay.pid, SIGHUP);
    cr_assert(relay_log_wait(&relay, "policy reloaded", 2000));
    cr_assert_eq(relay_counter(&relay, "policy_reloads_ok"), 1);
    wzpc_run_for(loop, 100);
    join(&t, "x", 2);
    tc_free(&t);
}

Test(policy_relay, runaway_hook_is_stopped_and_others_continue)
{
    start_with_policy("function on_join(j)\n"
                      "  if j.room == 'loop' then while true do end end\n"
                      "end\n",
                      "1");
    struct tc a, b, bad;
    join(&a, "room", 1);
    join(&b, "room", 2);
    tc_connect(&bad, loop, &relay, "loop", 3, NULL);
    expect_app_close(&bad, "denied: policy error");
    cr_assert(relay_log_wait(&relay, "time budget of 20 ms exceeded", 1000));
    for (int i = 0; i < 10; i++)
        tc_send_media(&a, NULL);
    wzpc_run_for(loop, 300);
    cr_assert_eq(b.from[1], 10, "calls continue");
    tc_free(&a);
    tc_free(&b);
    tc_free(&bad);
}

/* 20 clients stream while the policy is reloaded 50 times: no session is lost, and no
 * packet (loopback loses none without reloads either). */
Test(policy_relay, twenty_clients_through_fifty_reloads)
{
    start_with_policy("n = 0\nfunction on_join(j) n = n + 1 end\n", "2");
    enum { CLIENTS = 20, PACKETS = 100 };
    static struct tc t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        tc_connect(&t[i], loop, &relay, i < 10 ? "ra" : "rb", (uint8_t)(i % 10 + 1), NULL);
    for (int i = 0; i < CLIENTS; i++)
        cr_assert(tc_wait_state(&t[i], loop, WZPC_JOINED, 10000));
    wzpc_run_for(loop, 300);
    int reloads = 0;
    for (int round = 0; round < PACKETS; round++) {
        for (int i = 0; i < CLIENTS; i++)
            tc_send_media(&t[i], NULL);
        if (round % 2 == 0 && reloads < 50) {
            write_policy(round % 4 ? "n = 0\nfunction on_join(j) n = n + 1 end\n"
                                   : "function on_join(j) return true end\n");
            kill(relay.pid, SIGHUP);
            reloads++;
            /* signals sent faster than the relay takes them would merge: wait for this one */
            for (int w = 0;
                 w < 500 && relay_log_count(&relay, "policy reloaded") < (unsigned)reloads; w++)
                wzpc_run_for(loop, 2);
        }
        wzpc_run_for(loop, 10);
    }
    wzpc_run_for(loop, 1000);
    cr_assert_eq(reloads, 50);
    for (int i = 0; i < CLIENTS; i++) {
        cr_assert_eq(wzpc_state(t[i].c), WZPC_JOINED, "client %d still in its call", i);
        cr_assert_eq(t[i].media_total, 9 * PACKETS, "client %d got %u of %u", i, t[i].media_total,
                     9 * PACKETS);
    }
    cr_assert_eq(relay_counter(&relay, "leaves"), 0);
    cr_assert_eq(relay_counter(&relay, "policy_reloads_ok"), 50);
    for (int i = 0; i < CLIENTS; i++)
        tc_free(&t[i]);
}

static bool closed(void *arg)
{
    return wzpc_state(((struct tc *)arg)->c) == WZPC_CLOSED;
}

Test(policy_relay, timers_kick_mute_and_see_activity)
{
    start_with_policy(
        "done = {}\n"
        "wzp.every(50, function()\n"
        "  for _, r in ipairs(wzp.rooms()) do\n"
        "    for _, p in ipairs(wzp.participants(r.name)) do\n"
        "      if p.alias == 'client-3' and not done[p.id] then\n"
        "        done[p.id] = wzp.kick(p.id, 'bye 3')\n"
        "      elseif p.alias == 'client-2' and p.role == 'speaker' then\n"
        "        wzp.set_role(p.id, 'muted')\n"
        "      elseif p.alias == 'client-1' and p.packets >= 10 and not done.seen then\n"
        "        done.seen = true\n"
        "        wzp.log('info', 'activity', p.alias, p.packets, p.last_media_ms > 0)\n"
        "      end\n"
        "    end\n"
        "  end\n"
        "end)\n"
        "function on_leave(l) wzp.log('info', 'left', l.reason) end\n",
        "2");
    struct tc a, b, c;
    join(&a, "room", 1);
    join(&b, "room", 2);
    join(&c, "room", 3);
    cr_assert(wzpc_run_until(loop, closed, &c, 3000), "the timer kicked client 3");
    expect_app_close(&c, "bye 3");
    cr_assert(relay_log_wait(&relay, "left kicked", 1000), "on_leave saw reason kicked");
    wzpc_run_for(loop, 200); /* the timer has muted client 2 by now */
    for (int i = 0; i < 10; i++) {
        tc_send_media(&a, NULL);
        tc_send_media(&b, NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 300);
    cr_assert_eq(a.from[2], 0, "muted by the timer");
    cr_assert_eq(b.from[1], 10, "the muted participant still hears");
    cr_assert(relay_log_wait(&relay, "activity client-1 10 true", 2000));
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

static bool has_directives(void *arg)
{
    struct tc *t = arg;
    return t->directives > 0;
}

Test(policy_relay, room_tier_hook_overrides_the_weakest_link)
{
    start_with_policy("function on_room_tier(r)\n"
                      "  if r.weakest == 'Catastrophic' then return 'Degraded' end\n"
                      "end\n",
                      "2");
    struct tc a, b, c;
    join(&a, "room", 1);
    join(&b, "room", 2);
    struct wzp_quality_report heavy = {128, 5, 0, 200}; /* 50 % loss: Catastrophic */
    for (int i = 0; i < 3; i++) {
        tc_send_media(&a, &heavy);
        wzpc_run_for(loop, 10);
    }
    cr_assert(wzpc_run_until(loop, has_directives, &b, 3000));
    cr_assert_str_eq(b.directive_reasons[0], "policy: Degraded", "the policy's floor");
    cr_assert(relay_log_wait(&relay, "room room: tier Good -> Degraded (policy)", 1000));
    join(&c, "room", 3);
    cr_assert(wzpc_run_until(loop, has_directives, &c, 3000), "a late joiner gets it too");
    cr_assert_str_eq(c.directive_reasons[0], "room tier: Degraded");
    wzpc_run_for(loop, 200);
    cr_assert_eq(b.directives, 1, "no flapping: one directive");
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

/* A hook that catches its own time-budget error (pcall in a loop) used to hold its worker
 * for good: bystanders stopped hearing each other and SIGTERM could not stop the relay. */
Test(policy_relay, a_hook_cannot_swallow_its_time_budget)
{
    start_with_policy("budgets = { on_join = 30 }\n"
                      "function on_join(j)\n"
                      "  if j.room ~= 'trap' then return true end\n"
                      "  while true do pcall(function() while true do end end) end\n"
                      "end\n",
                      "1");
    struct tc a, b, t;
    join(&a, "calm", 1);
    join(&b, "calm", 2);
    tc_connect(&t, loop, &relay, "trap", 3, NULL);
    /* the trapped join fails closed after its budget, while the call next door goes on */
    for (int i = 0; i < 25; i++) {
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 20);
    }
    expect_app_close(&t, "denied");
    tc_send_media(&a, NULL);
    wzpc_run_for(loop, 200);
    cr_assert_eq(b.from[1], 26, "the bystander heard every packet");
    cr_assert_geq(relay_counter(&relay, "join_refused_policy"), 1);
    /* the worker is free: a new join on it succeeds */
    struct tc c;
    join(&c, "calm", 4);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
    tc_free(&t);
    cr_assert_eq(relay_stop(&relay, 2000), 0, "SIGTERM ends the relay within 2 s");
    relay.exit_checked = true;
}

/* --check on a hostile file: exit 1 with the reason within seconds, no crash, no hang. */
static void check_refuses(const char *text, const char *reason)
{
    policy_path[0] = '\0';
    write_policy(text);
    const char *const args[] = {"--check", policy_path, NULL};
    uint64_t t0 = wzp_now_ns();
    int rc = relay_run_to_exit(&relay, NULL, args, 10000);
    cr_assert_eq(rc, 1, "--check refuses it (exit %d)", rc);
    cr_assert_lt((wzp_now_ns() - t0) / 1000000, 5000);
    cr_assert(relay_log_count(&relay, reason) > 0, "the output says \"%s\"", reason);
}

Test(policy_relay, check_refuses_a_file_that_swallows_its_budget_at_load)
{
    check_refuses("while true do pcall(function() while true do end end) end\n", "time budget of");
}

Test(policy_relay, check_refuses_recursion_through_gsub)
{
    check_refuses("local function f(s) return (s:gsub('.', f)) end\nf('ab')\n",
                  "nested more than 64 deep");
}

static char scrape_buf[256 * 1024];

/* A policy whose admission hook raises on every call refuses everyone: /ready says so
 * (from 20 errors in a row on a worker); one call that decides clears it. */
Test(policy_relay, ready_fails_while_the_policy_errors_on_every_admission)
{
    start_with_policy("function on_connect(c)\n"
                      "  if c.sni == 'broken' then error('a bug') end\n"
                      "end\n",
                      "1");
    static char body[1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/ready", NULL, body, sizeof body), 200);
    for (uint8_t i = 0; i < 20; i++) { /* WZP_POLICY_ERROR_STREAK */
        struct tc t;
        tc_connect(&t, loop, &relay, "broken", i, NULL);
        cr_assert(tc_wait_state(&t, loop, WZPC_CLOSED, 5000));
        tc_free(&t);
    }
    cr_assert_eq(http_request(relay.http_port, "GET", "/ready", NULL, body, sizeof body), 503);
    cr_assert_not_null(strstr(body, "policy failing: the last 20 admission calls on worker 0"),
                       "%s", body);
    cr_assert_eq(
        http_request(relay.http_port, "GET", "/metrics", NULL, scrape_buf, sizeof scrape_buf), 200);
    cr_assert_eq(scrape_value(scrape_buf, "wzp_relay_policy_admission_error_streak"), 20);
    struct tc ok;
    join(&ok, "fine", 99);
    cr_assert_eq(http_request(relay.http_port, "GET", "/ready", NULL, body, sizeof body), 200,
                 "a decision clears the streak: %s", body);
    tc_free(&ok);
}

/* A shipped policy file with settings appended (they win: hooks read them at call time). */
static void start_with_shipped(const char *name, const char *settings, const char *threads)
{
    char path[512];
    snprintf(path, sizeof path, "%s/policies/%s", WZP_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char text[64 * 1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    snprintf(text + n, sizeof text - n, "\n%s\n", settings);
    start_with_policy(text, threads);
}

static void fingerprint_of(uint8_t seed_byte, char out[WZP_FINGERPRINT_LEN + 1])
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof seed);
    struct wzp_identity id;
    cr_assert_eq(wzp_identity_from_seed(&id, seed), WZP_OK);
    wzp_fingerprint(id.ed25519_public, out);
    wzp_identity_free(&id);
}

static void join_as(struct tc *t, const char *room, uint8_t id, uint8_t seed_byte)
{
    static uint8_t seeds[256][32];
    memset(seeds[id], seed_byte, 32);
    struct wzpc_config cfg = {.sni = room, .auto_join = true, .seed = seeds[id]};
    tc_connect(t, loop, &relay, room, id, &cfg);
    cr_assert(tc_wait_state(t, loop, WZPC_JOINED, 5000), "client %u joins %s", id, room);
}

static void send_n(struct tc *t, int n)
{
    for (int i = 0; i < n; i++)
        tc_send_media(t, NULL);
}

/* policies/stage.lua on the real relay: the audience hears only the stage, the stage and
 * the moderator hear every speaker, and /rooms/NAME shows the routing. */
Test(policy_relay, a_stage_room_routes_by_role)
{
    char s1[WZP_FINGERPRINT_LEN + 1], s2[WZP_FINGERPRINT_LEN + 1], mod[WZP_FINGERPRINT_LEN + 1];
    fingerprint_of(1, s1);
    fingerprint_of(2, s2);
    fingerprint_of(3, mod);
    char settings[512];
    snprintf(settings, sizeof settings,
             "settings.rooms = { 'town-hall' }\nsettings.stage = { '%s', '%s' }\n"
             "settings.moderators = { '%s' }\n",
             s1, s2, mod);
    start_with_shipped("stage.lua", settings, "2");
    struct tc st1, st2, m, a1, a2;
    join_as(&st1, "town-hall", 1, 1);
    join_as(&st2, "town-hall", 2, 2);
    join_as(&m, "town-hall", 3, 3);
    join_as(&a1, "town-hall", 4, 4);
    join_as(&a2, "town-hall", 5, 5);
    send_n(&st1, 10);
    send_n(&m, 10);
    send_n(&a1, 10);
    for (int i = 0; i < 100 && (a2.from[1] < 10 || st2.from[3] < 10); i++)
        wzpc_run_for(loop, 20);
    wzpc_run_for(loop, 200); /* anything misrouted would have arrived by now */
    cr_assert_eq(a2.from[1], 10, "the audience hears the stage");
    cr_assert_eq(a2.from[3], 0, "but not the moderator");
    cr_assert_eq(st2.from[1], 10, "the stage hears the stage");
    cr_assert_eq(st2.from[3], 10, "and the moderator");
    cr_assert_eq(m.from[1], 10, "the moderator hears the stage");
    cr_assert_eq(st2.from[4] + m.from[4] + a2.from[4], 0, "the audience is not forwarded");
    static char body[16384];
    cr_assert_eq(http_request(relay.http_port, "GET", "/rooms/town-hall", NULL, body, sizeof body),
                 200);
    cr_assert_not_null(strstr(body, "\"sends\":\"moderators\",\"hears\":\"*\""), "%s", body);
    cr_assert_not_null(strstr(body, "\"hears\":\"stage\""), "%s", body);
    tc_free(&st1);
    tc_free(&st2);
    tc_free(&m);
    tc_free(&a1);
    tc_free(&a2);
}

/* policies/breakout.lua: two participants in different groups do not hear each other;
 * when the breakout ends the policy's timer re-routes them, and from then on every packet
 * arrives (no reconnect, nothing lost). */
Test(policy_relay, routing_changed_by_a_timer_applies_to_the_next_packet)
{
    start_with_shipped("breakout.lua",
                       "settings.rooms = { 'workshop' }\nsettings.groups = 2\n"
                       "settings.duration_s = 2\n",
                       "2");
    struct tc a, b;
    join_as(&a, "workshop", 1, 1);
    join_as(&b, "workshop", 2, 2);
    send_n(&a, 10);
    wzpc_run_for(loop, 300);
    cr_assert_eq(b.from[1], 0, "different breakout groups");
    cr_assert(relay_log_wait(&relay, "breakout: room workshop is back together", 5000));
    send_n(&a, 20);
    for (int i = 0; i < 100 && b.from[1] < 20; i++)
        wzpc_run_for(loop, 20);
    cr_assert_eq(b.from[1], 20, "every packet after the change arrives");
    tc_free(&a);
    tc_free(&b);
}

/* --decision-log records every decision; --replay of that log against the same policy
 * finds nothing to change, and against a stricter one lists exactly the joins it would
 * refuse (exit 1). */
Test(policy_relay, decision_log_and_replay)
{
    policy_path[0] = '\0';
    write_policy("function on_join(j)\n"
                 "  if j.room == 'closed' then return false, 'closed' end\n"
                 "end\n");
    char log[192], strict[192];
    snprintf(log, sizeof log, "%s.decisions", policy_path);
    const char *args[] = {"-s", policy_path, "--decision-log", log, "--threads", "1", NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    struct tc a, b, c;
    join(&a, "lobby", 1);
    join(&b, "lobby", 2);
    tc_connect(&c, loop, &relay, "closed", 3, NULL);
    expect_app_close(&c, "denied: closed");
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
    cr_assert_eq(relay_stop(&relay, 3000), 0);

    FILE *f = fopen(log, "r");
    cr_assert_not_null(f, "the decision log exists");
    char line[4096];
    unsigned joins = 0, refused = 0;
    while (fgets(line, sizeof line, f)) {
        joins += strstr(line, "\"hook\":\"on_join\"") != NULL;
        refused += strstr(line, "\"allow\":false,\"reason\":\"closed\"") != NULL;
        cr_assert_not_null(strstr(line, "\"policy\":\""), "the policy's hash: %s", line);
    }
    fclose(f);
    cr_assert_eq(joins, 3, "one line per on_join");
    cr_assert_eq(refused, 1);

    static struct relay_proc replayer;
    const char *same[] = {"--replay", log, "-s", policy_path, NULL};
    cr_assert_eq(relay_run_to_exit(&replayer, NULL, same, 10000), 0);
    cr_assert(relay_log_count(&replayer, "no decision would change") > 0);
    cr_assert(relay_log_count(&replayer, "on_join      3 calls, 0 would change") > 0);

    snprintf(strict, sizeof strict, "%s.strict.lua", policy_path);
    f = fopen(strict, "w");
    fputs("function on_join(j) return false, 'maintenance' end\n", f);
    fclose(f);
    const char *stricter[] = {"--replay", log, "-s", strict, NULL};
    cr_assert_eq(relay_run_to_exit(&replayer, NULL, stricter, 10000), 1);
    cr_assert_eq(relay_log_count(&replayer, "would now be refused"), 2,
                 "exactly the two lobby joins (the closed room stays refused)");
    cr_assert_eq(relay_log_count(&replayer, "on_join room lobby"), 2);
    cr_assert(relay_log_count(&replayer, "on_join      3 calls, 2 would change (2 now refused, 0 "
                                         "now admitted)") > 0);
}

/* A shadow policy that refuses everyone changes nothing for clients and counts every
 * disagreement; promoting it makes it live without dropping a call. */
Test(policy_relay, a_shadow_policy_is_compared_then_promoted)
{
    policy_path[0] = '\0';
    write_policy("function on_join(j) return true end\n");
    char shadow[192], events[192];
    snprintf(shadow, sizeof shadow, "%s.next.lua", policy_path);
    snprintf(events, sizeof events, "%s.events", policy_path);
    FILE *f = fopen(shadow, "w");
    fputs("function on_connect(c) return c.sni ~= 'closed', 'closed' end\n"
          "function on_join(j) wzp.kick(j.id) return false, 'not today' end\n",
          f);
    fclose(f);
    const char *args[] = {"-s",
                          policy_path,
                          "--shadow-policy",
                          shadow,
                          "--admin-token",
                          "t0k",
                          "--event-log",
                          events,
                          "--threads",
                          "2",
                          NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    struct tc a, b;
    join(&a, "lobby", 1);
    join(&b, "lobby", 2);
    wzpc_run_for(loop, 300);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED, "the shadow's refusal and kick change nothing");
    cr_assert_eq(wzpc_state(b.c), WZPC_JOINED);
    static char body[8192];
    cr_assert_eq(
        http_request(relay.http_port, "GET", "/metrics", NULL, scrape_buf, sizeof scrape_buf), 200);
    cr_assert_eq(
        scrape_value(scrape_buf, "wzp_relay_policy_shadow_disagreements_total{hook=\"on_join\"}"),
        2);
    cr_assert_eq(scrape_value(scrape_buf, "wzp_relay_policy_shadow_calls_total{result=\"agreed\"}"),
                 2, "on_connect agreed for lobby");
    cr_assert_eq(http_request(relay.http_port, "GET", "/admin/policy", NULL, body, sizeof body),
                 401);
    cr_assert_eq(http_request(relay.http_port, "GET", "/admin/policy", "t0k", body, sizeof body),
                 200);
    cr_assert_not_null(strstr(body, "\"on_join\":2"), "%s", body);
    cr_assert_not_null(strstr(body, ".next.lua"), "%s", body);
    cr_assert(relay_log_count(&relay, "shadow policy (re)loaded") == 0, "loaded at start");

    /* promote: the calls in progress go on, new joins meet the promoted policy */
    cr_assert_eq(
        http_request(relay.http_port, "POST", "/admin/policy/promote", "t0k", body, sizeof body),
        202);
    cr_assert(relay_log_wait(&relay, "shadow policy promoted", 3000));
    wzpc_run_for(loop, 200);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED, "no call dropped by the promotion");
    struct tc c;
    tc_connect(&c, loop, &relay, "lobby", 3, NULL);
    expect_app_close(&c, "denied: not today");
    cr_assert_eq(http_request(relay.http_port, "GET", "/admin/policy", "t0k", body, sizeof body),
                 200);
    cr_assert_not_null(strstr(body, "\"shadow\":null"), "%s", body);
    cr_assert_eq(
        http_request(relay.http_port, "POST", "/admin/policy/promote", "t0k", body, sizeof body),
        409, "nothing left to promote");
    f = fopen(events, "r");
    cr_assert_not_null(f);
    char line[2048];
    unsigned sampled = 0, promoted = 0;
    while (fgets(line, sizeof line, f)) {
        sampled += strstr(line, "\"event\":\"shadow_disagreement\"") != NULL;
        promoted += strstr(line, "\"event\":\"promote\"") != NULL;
    }
    fclose(f);
    cr_assert_geq(sampled, 1, "a sample of the disagreements in the event log");
    cr_assert_eq(promoted, 1);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}
