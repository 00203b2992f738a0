/*
 * test_operations.c - the HTTP metrics/admin server and drain, on the real relay.
 */
#include "harness.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;
static unsigned http_port;

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(operations, .fini = stop_relay, .timeout = 90);

static void start(const char *token)
{
    static char port[16];
    http_port = tcp_free_port();
    snprintf(port, sizeof port, "%u", http_port);
    const char *const with_token[] = {"--metrics-port", port, "--admin-token", token, NULL};
    const char *const without[] = {"--metrics-port", port, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, token ? with_token : without);
}

static int http(const char *method, const char *path, const char *token, char *body, size_t bodylen)
{
    return http_request(http_port, method, path, token, body, bodylen);
}

/* Value of a metric line "name value" (or "name{labels} value") in a scrape. */
static double metric_value(const char *scrape, const char *series)
{
    double v = scrape_value(scrape, series);
    cr_assert(!isnan(v), "series %s in /metrics", series);
    return v;
}

static void join(struct tc *t, const char *room, uint8_t id)
{
    tc_connect(t, loop, &relay, room, id, NULL);
    cr_assert(tc_wait_state(t, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_updates(t, loop, 1, 3000));
}

struct scrape_goal {
    const char *series;
    double want;
};

static bool metric_reaches(void *arg)
{
    const struct scrape_goal *g = arg;
    static char scrape[256 * 1024];
    return http("GET", "/metrics", NULL, scrape, sizeof scrape) == 200 &&
           metric_value(scrape, g->series) == g->want;
}

Test(operations, room_affinity_table_follows_the_connections)
{
    static char port[16];
    http_port = tcp_free_port();
    snprintf(port, sizeof port, "%u", http_port);
    const char *const args[] = {"--metrics-port", port, "--threads", "2", NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    static char scrape[256 * 1024];
    cr_assert_eq(http("GET", "/metrics", NULL, scrape, sizeof scrape), 200);
    cr_assert_eq(metric_value(scrape, "wzp_relay_room_affinity"), 1);
    cr_assert_eq(metric_value(scrape, "wzp_relay_affinity_rooms"), 0);
    struct tc a, b, c;
    join(&a, "red", 1);
    join(&b, "red", 2);
    join(&c, "blue", 3);
    cr_assert_eq(http("GET", "/metrics", NULL, scrape, sizeof scrape), 200);
    cr_assert_eq(metric_value(scrape, "wzp_relay_affinity_rooms"), 2);
    cr_assert_eq(metric_value(scrape, "wzp_relay_cross_worker_media_messages_total"), 0);
    /* The last connection of a room gone, the room leaves the table. */
    wzpc_close(c.c, 0, "hangup");
    struct scrape_goal one = {"wzp_relay_affinity_rooms", 1};
    cr_assert(wzpc_run_until(loop, metric_reaches, &one, 3000), "blue left the table");
    wzpc_close(a.c, 0, "hangup");
    wzpc_close(b.c, 0, "hangup");
    struct scrape_goal none = {"wzp_relay_affinity_rooms", 0};
    cr_assert(wzpc_run_until(loop, metric_reaches, &none, 3000), "red left the table");
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

Test(operations, metrics_move_by_the_expected_amounts_during_a_call)
{
    start(NULL);
    static char before[256 * 1024], after[256 * 1024];
    cr_assert_eq(http("GET", "/metrics", NULL, before, sizeof before), 200);
    cr_assert_eq(metric_value(before, "wzp_relay_active_sessions"), 0);
    struct tc a, b, c;
    join(&a, "room", 1);
    join(&b, "room", 2);
    join(&c, "room", 3);
    struct wzp_quality_report rep = {51, 10, 0, 200}; /* 20 % loss, 40 ms */
    for (int i = 0; i < 25; i++) {
        tc_send_media(&a, i == 0 ? &rep : NULL);
        wzpc_run_for(loop, 4);
    }
    wzpc_run_for(loop, 300);
    cr_assert_eq(b.from[1] + c.from[1], 50);
    cr_assert_eq(http("GET", "/metrics", NULL, after, sizeof after), 200);
    cr_assert_eq(metric_value(after, "wzp_relay_active_sessions"), 3);
    cr_assert_eq(metric_value(after, "wzp_relay_active_rooms"), 1);
    double fwd = metric_value(after, "wzp_relay_packets_forwarded_total") -
                 metric_value(before, "wzp_relay_packets_forwarded_total");
    cr_assert_eq(fwd, 50, "25 packets to 2 receivers, got %g", fwd);
    double bytes = metric_value(after, "wzp_relay_bytes_forwarded_total");
    cr_assert_eq(bytes, 2 * (24 * 15 + 19), "whole datagrams, got %g", bytes);
    cr_assert_eq(metric_value(after, "wzp_relay_handshake_duration_seconds_count"), 3);
    cr_assert_eq(metric_value(after, "wzp_relay_joins_total"), 3);
    cr_assert(strstr(after, "wzp_relay_session_loss_pct{session_id="), "per-session loss");
    cr_assert(strstr(after, "} 20.00\n"), "20 %% loss reported");
    cr_assert(strstr(after, "wzp_relay_session_rtt_ms{session_id="));
    cr_assert(strstr(after, "# TYPE wzp_relay_handshake_duration_seconds histogram"));
    cr_assert(strstr(after, "wzp_relay_worker_media_queue_depth{worker=\"0\"} 0"));
    /* JSON views */
    static char json[64 * 1024];
    cr_assert_eq(http("GET", "/rooms", NULL, json, sizeof json), 200);
    cr_assert(strstr(json, "{\"name\":\"room\",\"participants\":3}"), "%s", json);
    cr_assert_eq(http("GET", "/rooms/room", NULL, json, sizeof json), 200);
    cr_assert(strstr(json, "\"alias\":\"client-2\""), "%s", json);
    cr_assert_eq(http("GET", "/rooms/nope", NULL, json, sizeof json), 404);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}

Test(operations, admin_token_is_enforced)
{
    start("s3cret");
    static char body[4096];
    struct tc a;
    join(&a, "room", 1);
    cr_assert_eq(http("POST", "/admin/kick?id=1", NULL, body, sizeof body), 401);
    cr_assert_eq(http("POST", "/admin/kick?id=1", "wrong", body, sizeof body), 401);
    cr_assert_eq(wzpc_state(a.c), WZPC_JOINED, "refused actions do nothing");
    cr_assert_eq(http("POST", "/admin/kick?id=999", "s3cret", body, sizeof body), 404);
    cr_assert_eq(http("POST", "/admin/kick?id=1&reason=bye", "s3cret", body, sizeof body), 200);
    cr_assert(tc_wait_state(&a, loop, WZPC_CLOSED, 3000), "kicked");
    cr_assert(relay_log_wait(&relay, "missing or wrong bearer token", 1000));
    cr_assert_eq(http("GET", "/admin/kick", "s3cret", body, sizeof body), 405, "POST only");
    tc_free(&a);
}

Test(operations, admin_actions_disabled_without_a_token)
{
    start(NULL);
    static char body[4096];
    cr_assert_eq(http("POST", "/admin/drain", "anything", body, sizeof body), 403);
    cr_assert(strstr(body, "--admin-token"), "the refusal says how to enable it");
    cr_assert_eq(http("GET", "/ready", NULL, body, sizeof body), 200, "not draining");
}

Test(operations, drain_refuses_new_joins_keeps_calls_and_exits)
{
    start("tok");
    static char body[4096];
    struct tc a, b, late;
    join(&a, "room", 1);
    join(&b, "room", 2);
    cr_assert_eq(http("GET", "/health", NULL, body, sizeof body), 200);
    cr_assert_eq(http("GET", "/ready", NULL, body, sizeof body), 200);
    cr_assert_eq(http("POST", "/admin/drain", "tok", body, sizeof body), 202);
    cr_assert(relay_log_wait(&relay, "draining: new joins are refused", 2000));
    cr_assert_eq(http("GET", "/ready", NULL, body, sizeof body), 503);
    cr_assert_eq(http("GET", "/health", NULL, body, sizeof body), 200, "alive while draining");
    tc_connect(&late, loop, &relay, "room", 3, NULL);
    cr_assert(tc_wait_state(&late, loop, WZPC_CLOSED, 3000), "a new join is refused");
    cr_assert(relay_log_wait(&relay, "relay is draining", 1000));
    for (int i = 0; i < 20; i++) {
        tc_send_media(&a, NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 200);
    cr_assert_eq(b.from[1], 20, "the existing call keeps flowing");
    /* the last call ends: the relay exits 0 by itself */
    wzpc_close(a.c, 0, "hangup");
    wzpc_close(b.c, 0, "hangup");
    int status = -1;
    for (int i = 0; i < 300 && waitpid(relay.pid, &status, WNOHANG) == 0; i++)
        wzpc_run_for(loop, 10);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exits 0 after the last call");
    relay.pid = 0;
    relay.exit_status = 0;
    cr_assert(relay_log_count(&relay, "drain complete") > 0);
    tc_free(&a);
    tc_free(&b);
    tc_free(&late);
}

#include <jansson.h>

/* Every line of a file parses as a JSON object with "ts" and the key `must`. Returns the
 * number of lines; counts lines whose `must` field equals `value` into *matches. */
static unsigned json_lines(const char *path, const char *must, const char *value, unsigned *matches)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s exists", path);
    char line[8192];
    unsigned n = 0;
    *matches = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        cr_assert_not_null(o, "line %u of %s is JSON: %s (%s)", n + 1, path, e.text, line);
        cr_assert(json_is_string(json_object_get(o, "ts")));
        json_t *v = json_object_get(o, must);
        cr_assert(json_is_string(v), "has \"%s\": %s", must, line);
        if (value && strcmp(json_string_value(v), value) == 0)
            (*matches)++;
        json_decref(o);
        n++;
    }
    fclose(f);
    return n;
}

Test(operations, event_log_is_json_lines_and_survives_rotation)
{
    char dir[64], path[128], rotated[140];
    scratch_dir(dir, sizeof dir, "ev");
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    snprintf(rotated, sizeof rotated, "%s.1", path);
    const char *const args[] = {"--event-log", path, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    struct tc a, b, bad;
    join(&a, "room", 1);
    join(&b, "room", 2);
    struct wzpc_config cfg = {.sni = "room", .auto_join = true, .corrupt_offer_signature = true};
    tc_connect(&bad, loop, &relay, "room", 3, &cfg);
    cr_assert(tc_wait_state(&bad, loop, WZPC_CLOSED, 5000));
    wzpc_close(b.c, 0, "hangup");
    cr_assert(tc_wait_updates(&a, loop, 3, 3000));
    cr_assert_eq(rename(path, rotated), 0); /* logrotate moves the file ... */
    kill(relay.pid, SIGHUP);                /* ... and signals the relay */
    cr_assert(relay_log_wait(&relay, "policy reloaded", 2000));
    struct tc c;
    join(&c, "room", 4);
    unsigned m;
    cr_assert_geq(json_lines(rotated, "event", "start", &m), 5);
    cr_assert_eq(m, 1);
    json_lines(rotated, "event", "join", &m);
    cr_assert_eq(m, 2, "two joins before the rotation");
    json_lines(rotated, "event", "refusal", &m);
    cr_assert_eq(m, 1, "the bad signature");
    json_lines(rotated, "event", "leave", &m);
    cr_assert_eq(m, 1);
    json_lines(path, "event", "join", &m);
    cr_assert_eq(m, 1, "the join after the rotation is in the new file");
    json_lines(path, "event", "reload", &m);
    cr_assert_eq(m, 1);
    tc_free(&a);
    tc_free(&b);
    tc_free(&bad);
    tc_free(&c);
}

Test(operations, json_log_format_and_debug_tap)
{
    const char *const args[] = {"--log-format", "json", "--debug-tap", "tapped", NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    struct tc a, b, other;
    join(&a, "tapped", 1);
    join(&b, "tapped", 2);
    join(&other, "quiet", 3);
    for (int i = 0; i < 5; i++) {
        tc_send_media(&a, NULL);
        tc_send_media(&other, NULL);
    }
    wzpc_run_for(loop, 300);
    cr_assert(relay_log_wait(&relay, "room tapped from", 2000));
    cr_assert_eq(relay_log_count(&relay, "room tapped from"), 5, "one tap line per packet");
    cr_assert_eq(relay_log_count(&relay, "room quiet from"), 0, "other rooms are not tapped");
    cr_assert_eq(relay_stop(&relay, 3000), 0);
    unsigned m;
    json_lines(relay.log_path, "level", "info", &m);
    cr_assert_gt(m, 5, "every relay log line is a JSON object");
    tc_free(&a);
    tc_free(&b);
    tc_free(&other);
}
