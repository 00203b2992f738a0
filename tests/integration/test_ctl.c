/*
 * test_ctl.c - wzp-ctl against the real relay: status as a table and as JSON (two
 * clients in one room), kick, drain and reload with the token from a file or the
 * environment, and the exit codes a script relies on.
 */
#include "harness.h"

#include "common.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;
static char addr[64];

static void teardown(void)
{
    relay_finish_with_loop(&relay, &loop);
}

TestSuite(ctl, .fini = teardown, .timeout = 60);

/* Run wzp-ctl with args (a shell fragment); its exit status, and stdout in out. The
 * relay's clients keep running while it waits. */
static int ctl(const char *env, const char *args, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s --addr %s %s 2>&1", env ? env : "", WZP_CTL_BIN, addr, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t len = 0;
    int fd = fileno(p);
    for (;;) { /* keep the loop turning so the clients stay alive */
        wzpc_run_for(loop, 10);
        ssize_t n = read(fd, out + len, outlen - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void start(struct tc *a, struct tc *b)
{
    static const char *const args[] = {"--admin-token", "s3cret", NULL};
    relay_start(&relay, args);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", relay.http_port);
    loop = ev_loop_new(EVFLAG_AUTO);
    tc_connect(a, loop, &relay, "lobby", 1, NULL);
    tc_connect(b, loop, &relay, "lobby", 2, NULL);
    cr_assert(tc_wait_state(a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(b, loop, WZPC_JOINED, 5000));
}

Test(ctl, status_as_a_table_and_as_json)
{
    struct tc a, b;
    start(&a, &b);
    static char out[65536];
    cr_assert_eq(ctl(NULL, "status --interval 0.2", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "sessions 2  rooms 1"), "%s", out);
    cr_assert(strstr(out, "room lobby  (2 participants"), "%s", out);
    cr_assert(strstr(out, "client-1") && strstr(out, "client-2"), "aliases listed: %s", out);
    cr_assert(strstr(out, "refused in the last minute: 0"), "%s", out);

    /* a join with a bad signature is refused; the relay's minute shows it */
    struct tc bad;
    struct wzpc_config cfg = {.sni = "lobby", .auto_join = true, .corrupt_offer_signature = true};
    tc_connect(&bad, loop, &relay, "lobby", 3, &cfg);
    cr_assert(tc_wait_state(&bad, loop, WZPC_CLOSED, 5000));
    wzpc_run_for(loop, 1200); /* worker 0 samples the counters every second */
    cr_assert_eq(ctl(NULL, "status --interval 0.2", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "refused in the last minute: 1"), "%s", out);
    cr_assert(strstr(out, "signature "), "the reason is listed: %s", out);
    tc_free(&bad);

    cr_assert_eq(ctl(NULL, "status --json --interval 0.2", out, sizeof out), 0, "%s", out);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    cr_assert_not_null(doc, "JSON: %s", jerr.text);
    cr_assert_eq(json_real_value(json_object_get(doc, "sessions")), 2.0);
    json_t *room = json_array_get(json_object_get(doc, "room_list"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(room, "name")), "lobby");
    cr_assert_eq(json_array_size(json_object_get(room, "participants")), 2);
    json_t *minute = json_object_get(doc, "refusals_last_minute");
    cr_assert_eq(json_real_value(json_object_get(minute, "total")), 1.0);
    cr_assert_eq(
        json_real_value(json_object_get(json_object_get(minute, "by_reason"), "signature")), 1.0);
    json_decref(doc);
    tc_free(&a);
    tc_free(&b);
}

Test(ctl, admin_commands_and_exit_codes)
{
    struct tc a, b;
    start(&a, &b);
    static char out[8192];
    cr_assert_eq(ctl(NULL, "kick 1", out, sizeof out), 3, "no token: %s", out);
    cr_assert_eq(ctl("WZP_ADMIN_TOKEN=wrong", "kick 1", out, sizeof out), 3, "%s", out);
    cr_assert_eq(ctl("WZP_ADMIN_TOKEN=s3cret", "kick 999", out, sizeof out), 4, "%s", out);
    char file[] = "/tmp/wzp-ctl-token-XXXXXX";
    int fd = mkstemp(file);
    cr_assert_eq(write(fd, "s3cret\n", 7), 7);
    close(fd);
    char args[256];
    snprintf(args, sizeof args, "--token-file %s kick 1 --reason 'too loud'", file);
    cr_assert_eq(ctl(NULL, args, out, sizeof out), 0, "%s", out);
    /* participant 1 is whichever of the two joined first */
    for (int i = 0; i < 150 && wzpc_state(a.c) != WZPC_CLOSED && wzpc_state(b.c) != WZPC_CLOSED;
         i++)
        wzpc_run_for(loop, 20);
    cr_assert(wzpc_state(a.c) == WZPC_CLOSED || wzpc_state(b.c) == WZPC_CLOSED,
              "participant 1 was kicked");
    cr_assert(relay_log_wait(&relay, "too loud", 1000));
    snprintf(args, sizeof args, "--token-file %s reload", file);
    cr_assert_eq(ctl(NULL, args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "--token-file %s drain", file);
    cr_assert_eq(ctl(NULL, args, out, sizeof out), 0, "%s", out);
    char body[256];
    cr_assert_eq(http_request(relay.http_port, "GET", "/ready", NULL, body, sizeof body), 503);
    unlink(file);
    cr_assert_eq(ctl(NULL, "frobnicate", out, sizeof out), 2, "usage");
    snprintf(addr, sizeof addr, "127.0.0.1:1");
    cr_assert_eq(ctl(NULL, "status", out, sizeof out), 1, "unreachable: %s", out);
    tc_free(&a);
    tc_free(&b);
}
