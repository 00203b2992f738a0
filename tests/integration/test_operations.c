/*
 * test_operations.c - the HTTP metrics/admin server and drain, on the real relay.
 */
#include "harness.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
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

static unsigned free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void start(const char *token)
{
    static char port[16];
    http_port = free_tcp_port();
    snprintf(port, sizeof port, "%u", http_port);
    const char *const with_token[] = {"--metrics-port", port, "--admin-token", token, NULL};
    const char *const without[] = {"--metrics-port", port, NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, token ? with_token : without);
}

/* One HTTP/1.0 request on loopback; returns the status, body copied into body. */
static int http(const char *method, const char *path, const char *token, char *body, size_t bodylen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect to /metrics port");
    char req[512];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n%s%s%s\r\n", method, path,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    cr_assert_eq(write(fd, req, (size_t)n), n);
    static char resp[256 * 1024];
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 3000), 1, "HTTP reply within 3 s");
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(body, bodylen, "%s", b ? b + 4 : "");
    return status;
}

/* Value of a metric line "name value" (or "name{labels} value") in a scrape. */
static double metric_value(const char *scrape, const char *series)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = strstr(scrape, key);
    cr_assert_not_null(p, "series %s in /metrics", series);
    return strtod(p + strlen(key), NULL);
}

static void join(struct tc *t, const char *room, uint8_t id)
{
    tc_connect(t, loop, &relay, room, id, NULL);
    cr_assert(tc_wait_state(t, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_updates(t, loop, 1, 3000));
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
