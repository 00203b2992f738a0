/*
 * test_http.c - the HTTP server stays reachable when clients misbehave, and the admin
 * token is handled with care, on the real relay:
 *  - 100 clients trickling a header line every second (from 100 addresses) neither block
 *    /metrics nor keep their sockets past the 5 s request-head deadline;
 *  - one address gets at most 8 connections;
 *  - failed admin authorizations are counted, and logged with the client's address at
 *    most once per 10 s;
 *  - the token comes from a file or the environment; a token that does not fit, a file
 *    that is not a regular file, and a metrics address that is not an IP are refused at
 *    start (exit 2); a world-readable token file and an HTTP server on every interface
 *    are warned about.
 */
#include "harness.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct relay_proc relay;
static unsigned http_port;
static char port_arg[16];

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(http, .fini = stop_relay, .timeout = 90);

static void start(const char *const *more)
{
    http_port = tcp_free_port();
    snprintf(port_arg, sizeof port_arg, "%u", http_port);
    const char *args[16] = {"--metrics-port", port_arg};
    size_t n = 2;
    for (; more && *more && n < 15; more++)
        args[n++] = *more;
    args[n] = NULL;
    relay_start(&relay, args);
}

/* A TCP connection to the HTTP server from the loopback address ip. */
static int connect_from(const char *ip)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &src.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&src, sizeof src), 0, "bind %s", ip);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)http_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    return fd;
}

/* The server ended the connection (EOF or reset) within ms. */
static bool ended(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return false;
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static double metric(const char *series)
{
    static char scrape[256 * 1024];
    cr_assert_eq(http_request(http_port, "GET", "/metrics", NULL, scrape, sizeof scrape), 200);
    return scrape_value(scrape, series);
}

Test(http, trickling_clients_neither_block_metrics_nor_stay)
{
    start(NULL);
    enum { N = 100 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "127.0.2.%d", i + 1);
        fds[i] = connect_from(ip);
        const char *head = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
        cr_assert_eq(write(fds[i], head, strlen(head)), (ssize_t)strlen(head));
    }
    uint64_t t0 = wzp_now_ns();
    double worst_ms = 0;
    unsigned scrapes = 0;
    /* 7 s: a header line from every slow client each second, a scrape every 250 ms. */
    for (int tick = 0; tick < 28; tick++) {
        if (tick % 4 == 0)
            for (int i = 0; i < N; i++)
                (void)!write(fds[i], "X-Slow: 1\r\n", 11);
        uint64_t s = wzp_now_ns();
        cr_assert(metric("wzp_relay_connections") >= 0);
        double ms = (double)(wzp_now_ns() - s) / 1e6;
        worst_ms = ms > worst_ms ? ms : worst_ms;
        scrapes++;
        usleep(250000);
    }
    unsigned closed = 0;
    for (int i = 0; i < N; i++)
        closed += ended(fds[i], 0);
    fprintf(stderr,
            "http: %u scrapes during %u trickling clients, slowest %.1f ms; %u of them "
            "closed after %.1f s\n",
            scrapes, N, worst_ms, closed, (double)(wzp_now_ns() - t0) / 1e9);
    cr_assert_lt(worst_ms, 1000, "every scrape answered at once (slowest %.0f ms)", worst_ms);
    cr_assert_eq(closed, N, "every trickling client was closed at its deadline");
    cr_assert_eq(metric("wzp_relay_http_slow_requests_total"), N);
    cr_assert_eq(relay_log_count(&relay, "did not send a request within 5000 ms"), 1,
                 "one warning for the lot");
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

Test(http, one_address_gets_eight_connections)
{
    start(NULL);
    enum { N = 30 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = connect_from("127.0.3.1");
    usleep(300000);
    unsigned open = 0;
    for (int i = 0; i < N; i++)
        open += !ended(fds[i], 0);
    cr_assert_eq(open, 8, "%u connections from one address kept", open);
    cr_assert_eq(metric("wzp_relay_draining"), 0, "others are still served");
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

Test(http, failed_admin_authorizations_are_counted_and_logged_sparingly)
{
    const char *const more[] = {"--admin-token", "right-token", NULL};
    start(more);
    char body[512];
    for (int i = 0; i < 5; i++)
        cr_assert_eq(
            http_request(http_port, "POST", "/admin/kick?id=1", "wrong", body, sizeof body), 401);
    cr_assert_eq(
        http_request(http_port, "POST", "/admin/kick?id=999", "right-token", body, sizeof body),
        404, "the right token is let through");
    cr_assert_eq(metric("wzp_relay_admin_auth_failures_total"), 5);
    cr_assert_eq(relay_log_count(&relay, "missing or wrong bearer token"), 1, "one line per 10 s");
    cr_assert(relay_log_wait(&relay, "from 127.0.0.1", 0), "the line names the client");
    cr_assert(relay_log_wait(&relay, "prefer --admin-token-file", 0),
              "a token on the command line is warned about");
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

Test(http, the_token_comes_from_a_file_or_the_environment)
{
    char path[] = "/tmp/wzp-token-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    write_file(path, "from-a-file\n", 0644);
    const char *const more[] = {"--admin-token-file", path, NULL};
    start(more);
    char body[512];
    cr_assert_eq(
        http_request(http_port, "POST", "/admin/kick?id=999", "from-a-file", body, sizeof body),
        404);
    cr_assert(relay_log_wait(&relay, "is readable by others", 0), "mode 0644 is warned about");
    cr_assert_eq(relay_log_count(&relay, "prefer --admin-token-file"), 0);
    relay_finish(&relay);
    unlink(path);

    setenv("WZP_ADMIN_TOKEN", "from-the-environment", 1);
    start(NULL);
    unsetenv("WZP_ADMIN_TOKEN");
    cr_assert_eq(http_request(http_port, "POST", "/admin/kick?id=999", "from-the-environment", body,
                              sizeof body),
                 404);
}

/* Run the relay with args expecting exit 2 and a message containing needle. */
static void refused_at_start(const char *const *args, const char *needle)
{
    cr_assert_eq(relay_run_to_exit(&relay, NULL, args, 5000), 2, "exit 2 for %s", needle);
    cr_assert(relay_log_wait(&relay, needle, 0), "the refusal says: %s", needle);
}

Test(http, bad_tokens_and_addresses_are_refused_at_start)
{
    static char longtoken[300];
    memset(longtoken, 'a', 256);
    const char *const too_long[] = {"--admin-token", longtoken, NULL};
    refused_at_start(too_long, "must be 1 to 255 characters long, not 256");
    const char *const spaces[] = {"--admin-token", "two words", NULL};
    refused_at_start(spaces, "printable ASCII without spaces");
    char fifo[] = "/tmp/wzp-fifo-XXXXXX";
    cr_assert_not_null(mkdtemp(fifo));
    char fifo_path[64];
    snprintf(fifo_path, sizeof fifo_path, "%s/token", fifo);
    cr_assert_eq(mkfifo(fifo_path, 0600), 0);
    const char *const from_fifo[] = {"--admin-token-file", fifo_path, NULL};
    refused_at_start(from_fifo, "not a regular file");
    unlink(fifo_path);
    rmdir(fifo);
    const char *const missing[] = {"--admin-token-file", "/nonexistent/token", NULL};
    refused_at_start(missing, "No such file or directory");
    const char *const host[] = {"--metrics-port", "9", "--metrics-bind", "localhost", NULL};
    refused_at_start(host, "--metrics-bind expects an IP address");
}

Test(http, every_interface_is_warned_about)
{
    const char *const more[] = {"--metrics-bind", "0.0.0.0", NULL};
    start(more);
    cr_assert(relay_log_wait(&relay, "listens on every interface", 1000));
}

Test(http, a_stuck_worker_fails_health_and_readiness)
{
    /* An unsafe policy whose on_join blocks in a C call for 7 s: the time budget cannot
     * interrupt it, so the worker's loop stops going round. */
    char path[] = "/tmp/wzp-stuck-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *lua = "function on_join(j) os.execute('sleep 7') return true end\n";
    cr_assert_eq(write(fd, lua, strlen(lua)), (ssize_t)strlen(lua));
    close(fd);
    const char *const more[] = {"--threads", "1", "--policy-unsafe", "-s", path, NULL};
    start(more);
    char body[512];
    cr_assert_eq(http_request(http_port, "GET", "/health", NULL, body, sizeof body), 200);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tc t;
    tc_connect(&t, loop, &relay, "room", 1, NULL);
    wzpc_run_for(loop, 5800); /* the join blocks the only worker */
    cr_assert_eq(http_request(http_port, "GET", "/health", NULL, body, sizeof body), 503);
    cr_assert(strstr(body, "stuck: worker 0"), "%s", body);
    cr_assert_eq(http_request(http_port, "GET", "/ready", NULL, body, sizeof body), 503);
    cr_assert_geq(metric("wzp_relay_worker_loop_age_seconds{worker=\"0\"}"), 5.0);
    cr_assert(relay_log_wait(&relay, "worker 0 has not run its loop for", 1000),
              "the stuck worker is named in the log");
    cr_assert(tc_wait_state(&t, loop, WZPC_JOINED, 5000), "the join completes afterwards");
    cr_assert_eq(http_request(http_port, "GET", "/health", NULL, body, sizeof body), 200);
    cr_assert_lt(metric("wzp_relay_worker_loop_age_seconds{worker=\"0\"}"), 2.0);
    cr_assert(relay_log_wait(&relay, "worker 0 runs its loop again", 1000));
    tc_free(&t);
    ev_loop_destroy(loop);
    unlink(path);
}

Test(http, a_full_relay_is_not_ready)
{
    const char *const more[] = {"--max-sessions", "1", NULL};
    start(more);
    char body[512];
    cr_assert_eq(http_request(http_port, "GET", "/ready", NULL, body, sizeof body), 200);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tc t;
    tc_connect(&t, loop, &relay, "room", 1, NULL);
    cr_assert(tc_wait_state(&t, loop, WZPC_JOINED, 5000));
    cr_assert_eq(http_request(http_port, "GET", "/ready", NULL, body, sizeof body), 503);
    cr_assert_str_eq(body, "full: 1 of 1 sessions in use (--max-sessions)\n");
    cr_assert_eq(http_request(http_port, "GET", "/health", NULL, body, sizeof body), 200,
                 "full is not unhealthy");
    tc_free(&t);
    ev_loop_destroy(loop);
}
