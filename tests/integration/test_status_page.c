/*
 * test_status_page.c - the status page (/status and its data, /status.json) on the real
 * relay: served as one self-contained page, behind the admin token when one is set (a
 * bearer token, or HTTP Basic with the token as password, which a browser asks for), and
 * drawn by a real browser: headless Chromium loads the page against a relay with clients
 * in two rooms, and the rendered DOM must show both rooms with their participant counts.
 * The browser's screenshot is kept in the build tree (artifacts/status-page.png).
 * Without Chromium the browser test is skipped, unless WZP_REQUIRE_BROWSER=1 (CI).
 */
#include "harness.h"

#include "common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ev_loop *loop;
static struct relay_proc relay;

static void teardown(void)
{
    relay_finish_with_loop(&relay, &loop);
}

TestSuite(status_page, .fini = teardown, .timeout = 90);

Test(status_page, served_and_its_data)
{
    relay_start(&relay, NULL);
    static char body[256 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/status", NULL, body, sizeof body), 200);
    cr_assert(strstr(body, "<title>wzp-relay status</title>"));
    cr_assert_null(strstr(body, "http://"), "no external assets");
    cr_assert_null(strstr(body, "https://"), "no external assets");
    cr_assert_eq(http_request(relay.http_port, "GET", "/status.json", NULL, body, sizeof body),
                 200);
    json_t *doc = json_loads(body, 0, NULL);
    cr_assert_not_null(doc, "%s", body);
    json_t *r = json_object_get(doc, "relay");
    cr_assert_str_eq(json_string_value(json_object_get(r, "build")), WZP_BUILD_HASH);
    cr_assert_eq(json_integer_value(json_object_get(r, "sessions")), 0);
    cr_assert(json_is_array(json_object_get(doc, "rooms")));
    json_decref(doc);
}

/* GET /status.json with HTTP Basic credentials (base64); the status code. */
static int raw_status(unsigned port, const char *basic)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET /status.json HTTP/1.0\r\nAuthorization: Basic %s\r\n\r\n", basic);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    char resp[512] = "";
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 3000), 1);
    cr_assert_gt(read(fd, resp, sizeof resp - 1), 0);
    close(fd);
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    return status;
}

Test(status_page, behind_the_admin_token_when_one_is_set)
{
    static const char *const args[] = {"--admin-token", "s3cret", NULL};
    relay_start(&relay, args);
    static char body[256 * 1024];
    cr_assert_eq(http_request(relay.http_port, "GET", "/status", NULL, body, sizeof body), 401);
    cr_assert_eq(http_request(relay.http_port, "GET", "/status.json", "wrong", body, sizeof body),
                 401);
    cr_assert_eq(http_request(relay.http_port, "GET", "/status", "s3cret", body, sizeof body), 200);
    /* what a browser sends once it asked: Basic, any user, the token as password */
    cr_assert_eq(raw_status(relay.http_port, "b3A6czNjcmV0"), 200); /* "op:s3cret" */
    cr_assert_eq(raw_status(relay.http_port, "b3A6d3Jvbmc="), 401); /* "op:wrong" */
}

/* Run a command while the loop keeps the clients alive; its stdout in out. */
static int run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t len = 0;
    int fd = fileno(p);
    for (;;) {
        wzpc_run_for(loop, 10);
        ssize_t n = read(fd, out + len, outlen - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return pclose(p);
}

Test(status_page, a_real_browser_draws_the_rooms)
{
    if (system("command -v chromium >/dev/null 2>&1") != 0) {
        const char *req = getenv("WZP_REQUIRE_BROWSER");
        cr_assert(!req || strcmp(req, "1") != 0, "WZP_REQUIRE_BROWSER=1 but no chromium");
        cr_skip_test("no chromium (apt-get install chromium)");
    }
    relay_start(&relay, NULL);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc a, b, c;
    tc_connect(&a, loop, &relay, "alpha", 1, NULL);
    tc_connect(&b, loop, &relay, "alpha", 2, NULL);
    tc_connect(&c, loop, &relay, "beta", 3, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&c, loop, WZPC_JOINED, 5000));
    char browser[512];
    snprintf(browser, sizeof browser,
             "timeout 60 chromium --headless=new --no-sandbox --disable-gpu "
             "--disable-dev-shm-usage --user-data-dir=%s/chromium --virtual-time-budget=5000",
             relay.dir);
    static char dom[512 * 1024];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --dump-dom http://127.0.0.1:%u/status 2>/dev/null", browser,
             relay.http_port);
    cr_assert_eq(run(cmd, dom, sizeof dom), 0, "chromium ran");
    cr_assert(strstr(dom, "data-room=\"alpha\">alpha <span class=\"count\">2 participants"),
              "alpha and its two participants are drawn:\n%.2000s", dom);
    cr_assert(strstr(dom, "data-room=\"beta\">beta <span class=\"count\">1 participant<"),
              "beta and its participant are drawn");
    cr_assert(strstr(dom, "client-1") && strstr(dom, "client-3"), "aliases are drawn");
    mkdir("artifacts", 0755);
    snprintf(cmd, sizeof cmd,
             "%s --window-size=1200,700 --screenshot=artifacts/status-page.png "
             "http://127.0.0.1:%u/status >/dev/null 2>&1",
             browser, relay.http_port);
    cr_assert_eq(run(cmd, dom, sizeof dom), 0);
    struct stat st;
    cr_assert_eq(stat("artifacts/status-page.png", &st), 0, "the screenshot is kept");
    cr_assert_gt(st.st_size, 10000);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
}
