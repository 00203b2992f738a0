/*
 * test_dashboard.c - the Grafana dashboard (examples/grafana/wzp-relay.json) cannot rot:
 * every metric any of its queries names is exported by the real relay's /metrics, with two
 * clients in a call (so the per-session series exist), and every query uses the
 * dashboard's data source variable.
 */
#include "harness.h"

#include "common.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static struct ev_loop *loop;
static struct relay_proc relay;

static void teardown(void)
{
    relay_finish_with_loop(&relay, &loop);
}

TestSuite(dashboard, .fini = teardown, .timeout = 60);

/* Every "expr" string anywhere under v. */
static void collect_exprs(json_t *v, const char **out, size_t *n, size_t max)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach(v, key, child)
        {
            if (strcmp(key, "expr") == 0 && json_is_string(child) && *n < max)
                out[(*n)++] = json_string_value(child);
            else
                collect_exprs(child, out, n, max);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) collect_exprs(child, out, n, max);
    }
}

/* Is name a metric of the scrape (a sample line "name{..." or "name value")? */
static bool exported(const char *scrape, const char *name)
{
    char a[160], b[160];
    snprintf(a, sizeof a, "\n%s{", name);
    snprintf(b, sizeof b, "\n%s ", name);
    return strstr(scrape, a) || strstr(scrape, b);
}

Test(dashboard, every_queried_metric_exists)
{
    json_error_t jerr;
    json_t *dash = json_load_file(WZP_SOURCE_DIR "/examples/grafana/wzp-relay.json", 0, &jerr);
    cr_assert_not_null(dash, "the dashboard is JSON: %s at line %d", jerr.text, jerr.line);
    cr_assert(json_is_array(json_object_get(dash, "panels")));

    relay_start(&relay, NULL);
    loop = ev_loop_new(EVFLAG_AUTO);
    struct tc a, b;
    tc_connect(&a, loop, &relay, "room", 1, NULL);
    tc_connect(&b, loop, &relay, "room", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    struct wzp_quality_report rep = {.loss_pct = 5, .rtt_4ms = 10};
    for (int i = 0; i < 5; i++) {
        tc_send_media(&a, &rep);
        tc_send_media(&b, &rep);
        wzpc_run_for(loop, 20);
    }
    static char scrape[512 * 1024];
    scrape[0] = '\n';
    cr_assert_eq(
        http_request(relay.http_port, "GET", "/metrics", NULL, scrape + 1, sizeof scrape - 1), 200);

    static const char *exprs[256];
    size_t n = 0;
    collect_exprs(dash, exprs, &n, 256);
    cr_assert_gt(n, 20, "the dashboard has its queries (%zu)", n);
    unsigned names = 0, missing = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(strstr(exprs[i], "instance=~\"$instance\""), "query %s filters by $instance",
                  exprs[i]);
        for (const char *p = strstr(exprs[i], "wzp_relay_"); p; p = strstr(p + 1, "wzp_relay_")) {
            char name[128];
            size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
            cr_assert_lt(len, sizeof name);
            memcpy(name, p, len);
            name[len] = '\0';
            names++;
            if (!exported(scrape, name)) {
                fprintf(stderr, "dashboard: %s is not on /metrics\n", name);
                missing++;
            }
            p += len - 1;
        }
    }
    fprintf(stderr, "dashboard: %zu queries naming %u metrics, %u missing\n", n, names, missing);
    cr_assert_eq(missing, 0);
    json_decref(dash);
    tc_free(&a);
    tc_free(&b);
}
