/* admin.c - HTTP metrics, health and administration (see admin.h). */
#include "admin.h"

#include "affinity.h"

#include "buf.h"
#include "common.h"
#include "httpguard.h"
#include "log.h"
#include "relay_state.h"
#include "sfu.h"
#include "worker.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOD                        "admin"
#define ADMIN_MAX_CONNECTIONS      WZP_HTTPGUARD_MAX /* all at once */
#define ADMIN_MAX_PER_ADDRESS      8                 /* from one client address */
#define ADMIN_CONNECTION_TIMEOUT_S 10                /* idle connections end */
#define ADMIN_HEAD_DEADLINE_MS     5000 /* a request head arrives within this, or the end */
#define AUTH_LOG_EVERY_NS          (10ull * 1000000000ull)
#define METRICS_MAX_SESSIONS       200  /* bound on per-session series */
#define ADMIN_MAX_ROOMS            1024 /* rooms /rooms and /metrics look at, at most */

/* The rooms now (names and sizes), at most ADMIN_MAX_ROOMS; the caller frees names. */
struct room_list {
    char (*names)[WZP_ROOM_NAME_MAX + 1];
    size_t sizes[ADMIN_MAX_ROOMS];
    size_t n;
};

static bool list_rooms(struct wzp_relay *r, struct room_list *l)
{
    l->names = malloc(ADMIN_MAX_ROOMS * sizeof *l->names);
    if (!l->names)
        return false;
    l->n = WZP_MIN(wzp_room_table_list(&r->rooms, l->names, l->sizes, ADMIN_MAX_ROOMS),
                   (size_t)ADMIN_MAX_ROOMS);
    return true;
}

struct wzp_admin {
    struct MHD_Daemon *daemon;
    struct wzp_relay *relay;
    struct wzp_httpguard guard;
    _Atomic uint64_t auth_failures;
    uint64_t auth_logged_ns, auth_logged_at; /* MHD's thread only */
};

/* ---------------------------------------------------------------- metrics */

static uint64_t sum_stat(struct wzp_relay *r, size_t offset)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < r->nworkers; i++) {
        _Atomic uint64_t *f = (_Atomic uint64_t *)((char *)&r->workers[i]->stats + offset);
        sum += atomic_load_explicit(f, memory_order_relaxed);
    }
    return sum;
}

#define STAT(r, field) sum_stat(r, offsetof(struct wzp_stats, field))

static void metric(struct wzp_buf *b, const char *name, const char *type, const char *help,
                   double value)
{
    wzp_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                   value);
}

static void metric_header(struct wzp_buf *b, const char *name, const char *type, const char *help)
{
    wzp_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Every counter of stats.h, as the series of its family (one list, nothing to forget). */
struct stat_series {
    const char *family, *label;
    size_t offset;
};

static const struct stat_series stat_series[] = {
#define WZP_STAT_SERIES(field, family, label, help)                                                \
    {#family, label, offsetof(struct wzp_stats, field)},
    WZP_STATS_FIELDS(WZP_STAT_SERIES)
#undef WZP_STAT_SERIES
};

struct stat_family {
    const char *name, *label;
    bool per_worker;
    const char *help;
};

static const struct stat_family stat_families[] = {
#define WZP_STAT_FAMILY(family, label, per_worker, help) {#family, label, per_worker, help},
    WZP_STATS_FAMILIES(WZP_STAT_FAMILY)
#undef WZP_STAT_FAMILY
};

static void counter_metrics(struct wzp_buf *b, struct wzp_relay *r)
{
    for (size_t f = 0; f < WZP_ARRAY_LEN(stat_families); f++) {
        const struct stat_family *fam = &stat_families[f];
        char name[96];
        snprintf(name, sizeof name, "wzp_relay_%s_total", fam->name);
        metric_header(b, name, "counter", fam->help);
        for (size_t i = 0; i < WZP_ARRAY_LEN(stat_series); i++) {
            const struct stat_series *ser = &stat_series[i];
            if (strcmp(ser->family, fam->name) != 0)
                continue;
            if (fam->per_worker) {
                for (unsigned k = 0; k < r->nworkers; k++) {
                    _Atomic uint64_t *v =
                        (_Atomic uint64_t *)((char *)&r->workers[k]->stats + ser->offset);
                    wzp_buf_printf(
                        b, "%s{worker=\"%u\"} %llu\n", name, k,
                        (unsigned long long)atomic_load_explicit(v, memory_order_relaxed));
                }
            } else if (fam->label[0]) {
                wzp_buf_printf(b, "%s{%s=\"%s\"} %llu\n", name, fam->label, ser->label,
                               (unsigned long long)sum_stat(r, ser->offset));
            } else {
                wzp_buf_printf(b, "%s %llu\n", name, (unsigned long long)sum_stat(r, ser->offset));
            }
        }
    }
}

static void upstream_metrics(struct wzp_buf *b, struct wzp_relay *r)
{
    metric(b, "wzp_relay_active_sessions", "gauge", "Room sessions (joined or joining).",
           wzp_quota_sessions(&r->quota));
    metric(b, "wzp_relay_active_rooms", "gauge", "Rooms with at least one participant.",
           (double)wzp_room_table_count(&r->rooms));
    static const double bounds[WZP_HANDSHAKE_NBUCKETS] = WZP_HANDSHAKE_BUCKETS;
    metric_header(b, "wzp_relay_handshake_duration_seconds", "histogram",
                  "From a client's first packet to its CallAnswer, for joined participants.");
    uint64_t cum = 0;
    for (size_t i = 0; i <= WZP_HANDSHAKE_NBUCKETS; i++) {
        cum += STAT(r, handshake_bucket[i]);
        if (i < WZP_HANDSHAKE_NBUCKETS)
            wzp_buf_printf(b, "wzp_relay_handshake_duration_seconds_bucket{le=\"%g\"} %llu\n",
                           bounds[i], (unsigned long long)cum);
        else
            wzp_buf_printf(b, "wzp_relay_handshake_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                           (unsigned long long)cum);
    }
    wzp_buf_printf(b, "wzp_relay_handshake_duration_seconds_sum %.9f\n",
                   (double)STAT(r, handshake_ns_sum) / 1e9);
    wzp_buf_printf(b, "wzp_relay_handshake_duration_seconds_count %llu\n", (unsigned long long)cum);
}

/* A copy of room name's members (NULL if there is no such room or no memory); the caller
 * frees it. *tier gets the room's tier if not NULL. */
static struct wzp_member *room_members(struct wzp_relay *r, const char *name, size_t *count,
                                       enum wzp_tier *tier, struct wzp_groups *groups, bool *routed)
{
    *count = 0;
    struct wzp_room *room = wzp_room_lookup(&r->rooms, name);
    if (!room)
        return NULL;
    size_t max = wzp_room_size(room) + 16; /* room for joins in between; more are cut */
    struct wzp_member *m = malloc(max * sizeof *m);
    if (m)
        *count = wzp_room_members(room, m, max, tier);
    if (groups) /* after the members: their masks name no group missing here */
        *routed = wzp_room_groups(room, groups);
    wzp_room_release(&r->rooms, room);
    return m;
}

/* Per-session loss and RTT from each participant's last QualityReport, labelled by
 * participant id, at most METRICS_MAX_SESSIONS series (bounded cardinality). */
static void session_metrics(struct wzp_buf *b, struct wzp_relay *r)
{
    struct wzp_buf loss = WZP_BUF_INIT, rtt = WZP_BUF_INIT;
    size_t emitted = 0;
    static struct room_list rooms; /* MHD serves one request at a time */
    if (!list_rooms(r, &rooms))
        rooms.n = 0;
    char(*names)[WZP_ROOM_NAME_MAX + 1] = rooms.names;
    for (size_t i = 0; i < rooms.n && emitted < METRICS_MAX_SESSIONS; i++) {
        size_t count;
        struct wzp_member *m = room_members(r, names[i], &count, NULL, NULL, NULL);
        for (size_t k = 0; m && k < count && emitted < METRICS_MAX_SESSIONS; k++) {
            if (!m[k].has_report)
                continue;
            wzp_buf_printf(&loss, "wzp_relay_session_loss_pct{session_id=\"%llu\"} %.2f\n",
                           (unsigned long long)m[k].id, m[k].loss_pct / 255.0 * 100.0);
            wzp_buf_printf(&rtt, "wzp_relay_session_rtt_ms{session_id=\"%llu\"} %u\n",
                           (unsigned long long)m[k].id, m[k].rtt_4ms * 4u);
            emitted++;
        }
        free(m);
    }
    free(rooms.names);
    metric_header(b, "wzp_relay_session_loss_pct", "gauge",
                  "Loss a participant last reported (at most 200 sessions).");
    wzp_buf_append(b, loss.data, loss.len);
    metric_header(b, "wzp_relay_session_rtt_ms", "gauge",
                  "RTT a participant last reported (at most 200 sessions).");
    wzp_buf_append(b, rtt.data, rtt.len);
    wzp_buf_free(&loss);
    wzp_buf_free(&rtt);
}

static void labelled(struct wzp_buf *b, const char *name, const char *label, const char *value,
                     uint64_t v)
{
    wzp_buf_printf(b, "%s{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)v);
}

static void worker_metrics(struct wzp_buf *b, struct wzp_relay *r)
{
    metric_header(b, "wzp_relay_worker_control_queue_depth", "gauge",
                  "Control messages waiting for each worker.");
    for (unsigned i = 0; i < r->nworkers; i++)
        wzp_buf_printf(b, "wzp_relay_worker_control_queue_depth{worker=\"%u\"} %zu\n", i,
                       wzp_mesh_ctl_depth(&r->mesh, i));
    metric_header(b, "wzp_relay_worker_media_queue_depth", "gauge",
                  "Media messages from other workers waiting in each worker's rings.");
    for (unsigned i = 0; i < r->nworkers; i++)
        wzp_buf_printf(b, "wzp_relay_worker_media_queue_depth{worker=\"%u\"} %llu\n", i,
                       (unsigned long long)wzp_mesh_ring_depth(&r->mesh, i));
#define WZP_GAUGE_METRIC(field, help)                                                              \
    metric_header(b, "wzp_relay_worker_" #field, "gauge", help ", per worker.");                   \
    for (unsigned i = 0; i < r->nworkers; i++)                                                     \
        wzp_buf_printf(b, "wzp_relay_worker_" #field "{worker=\"%u\"} %lld\n", i,                  \
                       (long long)atomic_load(&r->workers[i]->gauges.field));
    WZP_GAUGE_FIELDS(WZP_GAUGE_METRIC)
#undef WZP_GAUGE_METRIC
    metric_header(b, "wzp_relay_worker_loop_age_seconds", "gauge",
                  "Seconds since each worker's loop last went round (about 1 at most when "
                  "healthy; from 5 /health and /ready fail).");
    uint64_t now = wzp_now_ns();
    for (unsigned i = 0; i < r->nworkers; i++)
        wzp_buf_printf(b, "wzp_relay_worker_loop_age_seconds{worker=\"%u\"} %.3f\n", i,
                       wzp_worker_loop_age(r->workers[i], now));
    metric(b, "wzp_relay_presence_registered", "gauge",
           "_signal connections registered (reachable for calls) now.",
           (double)wzp_presence_count(&r->presence));
    uint64_t recent[WZP_RECENT_MAX_SERIES];
    wzp_recent_refusals(&r->recent, recent);
    const char *const *reasons;
    size_t nreasons = wzp_recent_reasons(&reasons);
    metric_header(b, "wzp_relay_refusals_last_minute", "gauge",
                  "Refusals in the last 60 s (since the start when younger), by reason.");
    for (size_t i = 0; i < nreasons; i++)
        wzp_buf_printf(b, "wzp_relay_refusals_last_minute{reason=\"%s\"} %llu\n", reasons[i],
                       (unsigned long long)recent[i]);
    size_t ringing, active;
    wzp_calls_counts(&r->calls, &ringing, &active);
    metric_header(b, "wzp_relay_direct_calls", "gauge", "Direct calls now, by state.");
    wzp_buf_printf(b, "wzp_relay_direct_calls{state=\"ringing\"} %zu\n", ringing);
    wzp_buf_printf(b, "wzp_relay_direct_calls{state=\"active\"} %zu\n", active);
    metric(b, "wzp_relay_tls_underscore_names", "gauge",
           "1 if the TLS library lets server names with '_' (_signal) through.",
           r->tls_underscore_names ? 1.0 : 0.0);
    metric(b, "wzp_relay_room_affinity", "gauge",
           "1 if each room is served by one worker, 0 if rooms are spread over the workers.",
           r->affinity ? 1.0 : 0.0);
    metric(b, "wzp_relay_affinity_rooms", "gauge",
           "Rooms in the room affinity table (with connections or about to have some).",
           r->affinity ? (double)wzp_affinity_rooms(r->affinity) : 0.0);
}

static uint64_t sum_policy(struct wzp_relay *r, size_t offset)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        sum += atomic_load_explicit(
            (_Atomic uint64_t *)((char *)&r->workers[i]->policy_stats + offset),
            memory_order_relaxed);
    return sum;
}

#define PSTAT(r, field) sum_policy(r, offsetof(struct wzp_policy_stats, field))

static void policy_metrics(struct wzp_buf *b, struct wzp_relay *r)
{
    metric(b, "wzp_relay_policy_calls_total", "counter", "Policy hook and timer calls.",
           (double)PSTAT(r, calls));
    metric(b, "wzp_relay_policy_errors_total", "counter",
           "Policy calls that raised an error (including budget and memory).",
           (double)PSTAT(r, errors));
    metric(b, "wzp_relay_policy_budget_exceeded_total", "counter",
           "Policy calls stopped by the time budget.", (double)PSTAT(r, budget_exceeded));
    metric(b, "wzp_relay_policy_memory_errors_total", "counter",
           "Policy calls that hit the memory cap.", (double)PSTAT(r, memory_errors));
    metric(b, "wzp_relay_policy_call_seconds_total", "counter", "Time spent in policy calls.",
           (double)PSTAT(r, latency_ns_total) / 1e9);
    metric(b, "wzp_relay_policy_timers_skipped_total", "counter",
           "Policy timer runs skipped: the state had used its share of the second.",
           (double)PSTAT(r, timers_skipped));
    uint64_t streak = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        streak = WZP_MAX(streak,
                         atomic_load_explicit(&r->workers[i]->policy_stats.admission_error_streak,
                                              memory_order_relaxed));
    metric(b, "wzp_relay_policy_admission_error_streak", "gauge",
           "Admission calls in a row that raised an error, on the worst worker (from 20 "
           "/ready fails: the policy refuses everyone).",
           (double)streak);
    metric_header(b, "wzp_relay_policy_metric_total", "counter",
                  "Counters policies keep with wzp.metric(name, n).");
    for (size_t i = 0; i < WZP_POLICY_MAX_METRICS; i++) {
        const char *name = wzp_policy_metric_name(&r->policy_metrics, i);
        if (name)
            wzp_buf_printf(b, "wzp_relay_policy_metric_total{name=\"%s\"} %.17g\n", name,
                           wzp_policy_metric_value(&r->policy_metrics, i));
    }
    metric_header(b, "wzp_relay_policy_reloads_total", "counter", "Policy reloads by result.");
    labelled(b, "wzp_relay_policy_reloads_total", "result", "ok",
             atomic_load(&r->policy_reloads_ok));
    labelled(b, "wzp_relay_policy_reloads_total", "result", "failed",
             atomic_load(&r->policy_reloads_failed));
}

/* The HTTP server's own counters (a: NULL when rendered without a server, in tests). */
static void http_metrics(struct wzp_buf *b, struct wzp_admin *a)
{
    metric(b, "wzp_relay_http_slow_requests_total", "counter",
           "HTTP connections closed because no request arrived within 5 s.",
           a ? atomic_load(&a->guard.closed_slow) : 0);
    metric(b, "wzp_relay_admin_auth_failures_total", "counter",
           "Admin requests refused for a missing or wrong bearer token.",
           a ? atomic_load(&a->auth_failures) : 0);
}

static char *metrics_text(struct wzp_relay *r, struct wzp_admin *a, size_t *len)
{
    struct wzp_buf b = WZP_BUF_INIT;
    http_metrics(&b, a);
    upstream_metrics(&b, r);
    session_metrics(&b, r);
    counter_metrics(&b, r);
    worker_metrics(&b, r);
    policy_metrics(&b, r);
    metric(&b, "wzp_relay_connections", "gauge", "QUIC connections of any kind.",
           wzp_quota_connections(&r->quota));
    metric(&b, "wzp_relay_handshakes_in_progress", "gauge",
           "QUIC handshakes in progress (limit --max-handshakes).",
           wzp_quota_handshakes(&r->quota));
    metric(&b, "wzp_relay_draining", "gauge", "1 while the relay drains.",
           atomic_load(&r->draining) ? 1 : 0);
    *len = b.len;
    wzp_buf_append(&b, "", 1);
    return (char *)b.data;
}

char *wzp_admin_metrics_text(struct wzp_relay *r, size_t *len)
{
    return metrics_text(r, NULL, len);
}

/* ---------------------------------------------------------------- JSON views */

static char *rooms_json(struct wzp_relay *r)
{
    static struct room_list rooms; /* MHD serves one request at a time */
    if (!list_rooms(r, &rooms))
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < rooms.n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I}", "name", rooms.names[i], "participants",
                                             (json_int_t)rooms.sizes[i]));
    free(rooms.names);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

/* Registered _signal clients; fingerprints and aliases identify users: token only. */
static char *presence_json(struct wzp_relay *r)
{
    size_t max = wzp_presence_count(&r->presence) + 16; /* room for a few racing registrations */
    struct wzp_presence_view *v = calloc(max, sizeof *v);
    if (!v)
        return NULL;
    size_t n = wzp_presence_list(&r->presence, v, max);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s?, s:I}", "fingerprint", v[i].fingerprint,
                                             "alias", v[i].has_alias ? v[i].alias : NULL, "since",
                                             (json_int_t)v[i].since));
    free(v);
    size_t ringing, active;
    wzp_calls_counts(&r->calls, &ringing, &active);
    json_t *root = json_pack("{s:I, s:o, s:{s:I, s:I}}", "count", (json_int_t)n, "registered", arr,
                             "calls", "ringing", (json_int_t)ringing, "active", (json_int_t)active);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static char *room_json(struct wzp_relay *r, const char *name)
{
    size_t count;
    enum wzp_tier tier;
    static struct wzp_groups groups; /* MHD serves one request at a time */
    bool routed = false;
    struct wzp_member *m = room_members(r, name, &count, &tier, &groups, &routed);
    if (!m)
        return NULL;
    json_t *parts = json_array();
    for (size_t i = 0; i < count; i++) {
        const struct wzp_member *p = &m[i];
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I}", "id", (json_int_t)p->id, "fingerprint",
                              p->fingerprint, "role", wzp_role_name((enum wzp_role)p->role), "tier",
                              wzp_tier_name(p->tier), "packets", (json_int_t)p->packets);
        json_object_set_new(o, "alias", p->has_alias ? json_string(p->alias) : json_null());
        json_object_set_new(o, "worker", json_integer(p->worker));
        if (routed) { /* a policy routes this room: who hears whom */
            static char names[WZP_GROUPS_MAX * (WZP_GROUP_NAME_MAX + 1) + 2];
            wzp_groups_describe(&groups, p->sends, names, sizeof names);
            json_object_set_new(o, "sends", json_string(names));
            wzp_groups_describe(&groups, p->hears, names, sizeof names);
            json_object_set_new(o, "hears", json_string(names));
        }
        if (p->has_report) {
            json_object_set_new(o, "loss_pct", json_real(p->loss_pct / 2.55));
            json_object_set_new(o, "rtt_ms", json_integer(p->rtt_4ms * 4));
        }
        json_array_append_new(parts, o);
    }
    free(m);
    json_t *doc = json_pack("{s:s, s:s, s:o}", "name", name, "tier", wzp_tier_name(tier),
                            "participants", parts);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

/* The status page's data: the relay, then every room with its participants. */
static char *status_json(struct wzp_relay *r)
{
    char policy[PATH_MAX];
    pthread_mutex_lock(&r->policy_paths_lock); /* a promotion may change it (main thread) */
    snprintf(policy, sizeof policy, "%s", r->cfg.policy_path[0] ? r->cfg.policy_path : "(none)");
    pthread_mutex_unlock(&r->policy_paths_lock);
    static struct room_list rooms; /* MHD serves one request at a time */
    if (!list_rooms(r, &rooms))
        return NULL;
    const struct wzp_quota *q = &r->quota;
    json_t *relay = json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:b, s:i, s:i, s:i, s:i, s:i}", "version",
        WZP_VERSION, "build", WZP_BUILD_HASH, "listen", r->cfg.listen, "workers", (int)r->nworkers,
        "policy", policy, "policy_loaded_at", (json_int_t)atomic_load(&r->policy_loaded_at),
        "policy_reloads_ok", (json_int_t)atomic_load(&r->policy_reloads_ok),
        "policy_reloads_failed", (json_int_t)atomic_load(&r->policy_reloads_failed), "draining",
        (int)atomic_load(&r->draining), "sessions", (int)wzp_quota_sessions(q), "max_sessions",
        (int)q->max.sessions, "connections", (int)wzp_quota_connections(q), "handshakes",
        (int)wzp_quota_handshakes(q), "presence", (int)wzp_presence_count(&r->presence));
    uint64_t recent[WZP_RECENT_MAX_SERIES];
    json_object_set_new(relay, "refusals_last_minute",
                        json_integer((json_int_t)wzp_recent_refusals(&r->recent, recent)));
    size_t ringing, active;
    wzp_calls_counts(&r->calls, &ringing, &active);
    json_object_set_new(relay, "calls_ringing", json_integer((json_int_t)ringing));
    json_object_set_new(relay, "calls_active", json_integer((json_int_t)active));
    json_t *list = json_array();
    for (size_t i = 0; i < rooms.n; i++) {
        char *one = room_json(r, rooms.names[i]);
        json_t *room = one ? json_loads(one, 0, NULL) : NULL;
        free(one);
        if (room)
            json_array_append_new(list, room);
    }
    free(rooms.names);
    json_t *doc = json_pack("{s:o, s:o}", "relay", relay, "rooms", list);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

/* One self-contained page (no external assets) that draws /status.json every 2 s. */
static const char status_html[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>wzp-relay status</title><style>"
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}"
    "h1{font-size:1.3em}h2{font-size:1.1em;margin:1.2em 0 .4em}"
    "table{border-collapse:collapse;background:#fff}"
    "td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}"
    "th{background:#f0f0f0}.num{text-align:right}.muted{color:#888}"
    ".bad{color:#b00;font-weight:bold}#totals td{min-width:6em}"
    "</style></head><body><h1>wzp-relay <span id=\"build\" class=\"muted\"></span></h1>"
    "<table id=\"totals\"><tr><th>sessions</th><th>rooms</th><th>connections</th>"
    "<th>handshakes</th><th>reachable (_signal)</th><th>direct calls</th>"
    "<th>refused, last minute</th><th>state</th></tr>"
    "<tr><td id=\"sessions\"></td><td id=\"nrooms\"></td><td id=\"connections\"></td>"
    "<td id=\"handshakes\"></td><td id=\"presence\"></td><td id=\"calls\"></td>"
    "<td id=\"refused\"></td><td id=\"state\"></td></tr>"
    "</table><p id=\"policy\" class=\"muted\"></p><div id=\"rooms\"></div>"
    "<p class=\"muted\">Refreshes every 2 s. <span id=\"error\" class=\"bad\"></span></p>"
    "<script>\n"
    "function esc(s){return String(s===null||s===undefined?'-':s).replace(/[&<>\"]/g,"
    "c=>({'&':'&amp;','<':'&lt;','>':'&gt;','\"':'&quot;'}[c]));}\n"
    "function set(id,v){document.getElementById(id).textContent=v;}\n"
    "function draw(d){const r=d.relay;set('build',r.version+' ('+r.build+') on '+r.listen+', '+"
    "r.workers+' workers');set('sessions',r.sessions+' / '+r.max_sessions);"
    "set('nrooms',d.rooms.length);set('connections',r.connections);set('handshakes',r.handshakes);"
    "set('presence',r.presence);set('state',r.draining?'draining':'serving');"
    "set('calls',r.calls_active+' active, '+r.calls_ringing+' ringing');"
    "set('refused',r.refusals_last_minute);"
    "set('policy','policy '+r.policy+', loaded '+new Date(r.policy_loaded_at*1000).toISOString()+"
    "', reloads '+r.policy_reloads_ok+' ok, '+r.policy_reloads_failed+' failed');"
    "let h='';for(const room of d.rooms){h+='<h2 class=\"room\" data-room=\"'+esc(room.name)+"
    "'\">'+esc(room.name)+' <span class=\"count\">'+room.participants.length+"
    "' participant'+(room.participants.length==1?'':'s')+'</span> <span class=\"muted\">tier '"
    "+esc(room.tier)+'</span></h2><table><tr><th>id</th><th>alias</th><th>fingerprint</th>"
    "<th>role</th><th>tier</th><th>packets</th><th>worker</th><th>loss %</th><th>rtt ms</th></tr>';"
    "for(const p of room.participants){h+='<tr><td class=\"num\">'+p.id+'</td><td>'+esc(p.alias)+"
    "'</td><td><code>'+esc(p.fingerprint)+'</code></td><td>'+esc(p.role)+'</td><td>'+esc(p.tier)+"
    "'</td><td class=\"num\">'+p.packets+'</td><td class=\"num\">'+p.worker+"
    "'</td><td class=\"num\">'+(p.loss_pct===undefined?'-':p.loss_pct.toFixed(1))+"
    "'</td><td class=\"num\">'+(p.rtt_ms===undefined?'-':p.rtt_ms)+'</td></tr>';}h+='</table>';}"
    "if(!d.rooms.length)h='<p class=\"muted\">No rooms.</p>';"
    "document.getElementById('rooms').innerHTML=h;set('error','');}\n"
    "function tick(){fetch('status.json',{credentials:'same-origin'}).then(r=>{if(!r.ok)"
    "throw new Error('HTTP '+r.status);return r.json();}).then(draw).catch(e=>set('error',"
    "'cannot read status.json: '+e.message));}\n"
    "tick();setInterval(tick,2000);\n"
    "</script></body></html>\n";

/* ---------------------------------------------------------------- HTTP */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result rv = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rv;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return reply(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, char *json)
{
    if (!json)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "no such room\n");
    enum MHD_Result rv = reply(conn, MHD_HTTP_OK, "application/json", json, strlen(json));
    free(json);
    return rv;
}

/* The bearer token matches: compared in time that depends on neither the token's
 * content nor where a guess first differs (always WZP_ADMIN_TOKEN_MAX bytes). */
static bool token_matches(const char *token, const char *h)
{
    size_t given = strnlen(h, WZP_ADMIN_TOKEN_MAX + 1), want = strlen(token);
    unsigned diff = given != want;
    for (size_t i = 0; i < WZP_ADMIN_TOKEN_MAX; i++) {
        unsigned char g = i < given ? (unsigned char)h[i] : 0;
        unsigned char w = i < want ? (unsigned char)token[i] : 0;
        diff |= (unsigned)(g ^ w);
    }
    return diff == 0;
}

static bool authorized(struct wzp_admin *a, struct MHD_Connection *conn)
{
    const char *token = a->relay->cfg.admin_token;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!token[0] || !h || strncmp(h, "Bearer ", 7) != 0)
        return false;
    return token_matches(token, h + 7);
}

static void auth_failed(struct wzp_admin *a, struct MHD_Connection *conn, const char *url);

/* The status page: open when no admin token is set; otherwise the token, as a bearer
 * token or as the password of HTTP Basic authentication (which a browser asks for). */
static bool status_allowed(struct wzp_admin *a, struct MHD_Connection *conn)
{
    const char *token = a->relay->cfg.admin_token;
    if (!token[0] || authorized(a, conn))
        return true;
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    bool ok = pass && token_matches(token, pass);
    MHD_free(user);
    MHD_free(pass);
    return ok;
}

static enum MHD_Result status_page(struct wzp_admin *a, struct MHD_Connection *conn, bool json)
{
    if (!status_allowed(a, conn)) {
        auth_failed(a, conn, json ? "/status.json" : "/status");
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            22, (void *)"admin token required\n", MHD_RESPMEM_PERSISTENT);
        enum MHD_Result rv = MHD_queue_basic_auth_fail_response(conn, "wzp-relay status", resp);
        MHD_destroy_response(resp);
        return rv;
    }
    if (json)
        return reply_json(conn, status_json(a->relay));
    return reply(conn, MHD_HTTP_OK, "text/html; charset=utf-8", status_html,
                 sizeof status_html - 1);
}

static void peer_of(struct MHD_Connection *conn, char *out, size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, outlen, "?");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    snprintf(out, outlen, "%s", ip);
}

/* Count a failed authorization; log the first and then at most one line per 10 s. */
static void auth_failed(struct wzp_admin *a, struct MHD_Connection *conn, const char *url)
{
    uint64_t n = atomic_fetch_add(&a->auth_failures, 1) + 1, now = wzp_now_ns();
    if (!wzp_log_due(&a->auth_logged_ns, now, AUTH_LOG_EVERY_NS))
        return;
    char peer[INET6_ADDRSTRLEN], esc[160];
    peer_of(conn, peer, sizeof peer);
    wzp_log_escape_text(url, esc, sizeof esc);
    WZP_WARN(MOD,
             "refused %s from %s: missing or wrong bearer token (%llu refusal%s since the "
             "last such line)",
             esc, peer, (unsigned long long)(n - a->auth_logged_at),
             n - a->auth_logged_at == 1 ? "" : "s");
    a->auth_logged_at = n;
}

#define JSTAT(r, field) ((json_int_t)STAT(r, field))

/* GET /admin/policy: the live and the shadow policy, and how often they disagree. */
static char *policy_json(struct wzp_relay *r)
{
    pthread_mutex_lock(&r->policy_paths_lock);
    json_t *live =
        json_pack("{s:s, s:I}", "path", r->cfg.policy_path[0] ? r->cfg.policy_path : "(none)",
                  "loaded_at", (json_int_t)atomic_load(&r->policy_loaded_at));
    json_t *shadow = r->cfg.shadow_path[0]
                         ? json_pack("{s:s, s:I}", "path", r->cfg.shadow_path, "loaded_at",
                                     (json_int_t)atomic_load(&r->shadow_loaded_at))
                         : json_null();
    pthread_mutex_unlock(&r->policy_paths_lock);
    json_t *doc = json_pack(
        "{s:o, s:o, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}}", "live", live, "shadow", shadow,
        "shadow_calls", "agreed", JSTAT(r, shadow_agreed), "disagreed", JSTAT(r, shadow_disagreed),
        "skipped", JSTAT(r, shadow_skipped), "disagreements", "on_connect",
        JSTAT(r, shadow_disagree_connect), "on_join", JSTAT(r, shadow_disagree_join), "on_register",
        JSTAT(r, shadow_disagree_register), "on_call", JSTAT(r, shadow_disagree_call));
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

static enum MHD_Result admin_action(struct wzp_admin *a, struct MHD_Connection *conn,
                                    const char *url)
{
    if (!a->relay->cfg.admin_token[0])
        return reply_text(conn, MHD_HTTP_FORBIDDEN,
                          "admin actions are disabled: start the relay with --admin-token\n");
    if (!authorized(a, conn)) {
        auth_failed(a, conn, url);
        return reply_text(conn, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token\n");
    }
    if (strcmp(url, "/admin/drain") == 0) {
        kill(getpid(), SIGUSR2); /* the main thread runs the drain */
        return reply_text(conn, MHD_HTTP_ACCEPTED, "draining\n");
    }
    if (strcmp(url, "/admin/reload") == 0) {
        kill(getpid(), SIGHUP); /* the main thread reloads, as for the signal */
        return reply_text(conn, MHD_HTTP_ACCEPTED, "reloading; see the log for the result\n");
    }
    if (strcmp(url, "/admin/policy/promote") == 0) {
        pthread_mutex_lock(&a->relay->policy_paths_lock);
        bool shadow = a->relay->cfg.shadow_path[0] != '\0';
        pthread_mutex_unlock(&a->relay->policy_paths_lock);
        if (!shadow)
            return reply_text(conn, MHD_HTTP_CONFLICT,
                              "no shadow policy to promote (start with --shadow-policy)\n");
        atomic_store(&a->relay->promote_requested, true);
        kill(getpid(), SIGHUP); /* the main thread promotes, as it reloads */
        return reply_text(conn, MHD_HTTP_ACCEPTED, "promoting; see the log for the result\n");
    }
    if (strcmp(url, "/admin/kick") == 0) {
        const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
        unsigned long v;
        if (!id || !wzp_parse_uint(id, 1, ~0ul, &v))
            return reply_text(conn, MHD_HTTP_BAD_REQUEST, "kick needs ?id=<participant id>\n");
        const char *reason = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "reason");
        if (wzp_sfu_kick(a->relay, v, reason ? reason : "kicked by an administrator") != WZP_OK)
            return reply_text(conn, MHD_HTTP_NOT_FOUND, "no such participant\n");
        return reply_text(conn, MHD_HTTP_OK, "kicked\n");
    }
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "unknown admin action\n");
}

/* A worker whose loop has not gone round for WZP_WORKER_STUCK_S: why holds which. */
static bool stuck_worker(struct wzp_relay *r, char *why, size_t whylen)
{
    uint64_t now = wzp_now_ns();
    for (unsigned i = 0; i < r->nworkers; i++) {
        double age = wzp_worker_loop_age(r->workers[i], now);
        if (age >= WZP_WORKER_STUCK_S) {
            snprintf(why, whylen, "stuck: worker %u has not run its loop for %.0f s\n", i, age);
            return true;
        }
    }
    return false;
}

/* Whether a load balancer should send new clients elsewhere, and why. */
/* A worker whose policy ended its last WZP_POLICY_ERROR_STREAK admission calls in an error
 * refuses everyone (admission fails closed). Errors, not denials: a policy that denies is
 * doing its job, and clients could drive a denial count up; only a policy bug makes every
 * call raise, and one call that decides resets the streak. */
static bool policy_failing(struct wzp_relay *r, char *why, size_t whylen)
{
    for (unsigned i = 0; i < r->nworkers; i++) {
        uint64_t n = atomic_load_explicit(&r->workers[i]->policy_stats.admission_error_streak,
                                          memory_order_relaxed);
        if (n >= WZP_POLICY_ERROR_STREAK) {
            snprintf(why, whylen,
                     "policy failing: the last %llu admission calls on worker %u raised an "
                     "error, so every client is refused (see the log; fix and reload)\n",
                     (unsigned long long)n, i);
            return true;
        }
    }
    return false;
}

static bool not_ready(struct wzp_relay *r, char *why, size_t whylen)
{
    const struct wzp_quota *q = &r->quota;
    if (atomic_load(&r->draining))
        snprintf(why, whylen, "draining\n");
    else if (stuck_worker(r, why, whylen))
        return true;
    else if (wzp_quota_sessions(q) >= q->max.sessions)
        snprintf(why, whylen, "full: %u of %u sessions in use (--max-sessions)\n",
                 wzp_quota_sessions(q), q->max.sessions);
    else if (wzp_quota_handshakes_full(q))
        snprintf(why, whylen, "busy: %u handshakes in progress (--max-handshakes)\n",
                 wzp_quota_handshakes(q));
    else if (policy_failing(r, why, whylen))
        return true;
    else
        return false;
    return true;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)version;
    (void)upload;
    struct wzp_admin *a = cls;
    if (!*state) { /* first call: the request head is complete */
        *state = a;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context)
            wzp_httpguard_head_done(&a->guard, (int)(intptr_t)ci->socket_context - 1);
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* bodies are ignored */
        return MHD_YES;
    }
    struct wzp_relay *r = a->relay;
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (get && strcmp(url, "/admin/policy") == 0) {
        if (!r->cfg.admin_token[0])
            return reply_text(conn, MHD_HTTP_FORBIDDEN,
                              "admin views are disabled: start the relay with --admin-token\n");
        if (!authorized(a, conn)) {
            auth_failed(a, conn, url);
            return reply_text(conn, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token\n");
        }
        return reply_json(conn, policy_json(r));
    }
    if (strncmp(url, "/admin/", 7) == 0)
        return post ? admin_action(a, conn, url)
                    : reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "admin actions need POST\n");
    if (!get)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp(url, "/metrics") == 0) {
        size_t len;
        char *text = metrics_text(r, a, &len);
        enum MHD_Result rv = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len);
        free(text);
        return rv;
    }
    if (strcmp(url, "/health") == 0) {
        char why[160];
        if (stuck_worker(r, why, sizeof why))
            return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
        return reply_text(conn, MHD_HTTP_OK, atomic_load(&r->draining) ? "ok draining\n" : "ok\n");
    }
    if (strcmp(url, "/ready") == 0) {
        char why[160];
        if (not_ready(r, why, sizeof why))
            return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
        return reply_text(conn, MHD_HTTP_OK, "ready\n");
    }
    if (strcmp(url, "/status") == 0 || strcmp(url, "/status.json") == 0)
        return status_page(a, conn, url[7] == '.');
    if (strcmp(url, "/rooms") == 0)
        return reply_json(conn, rooms_json(r));
    if (strcmp(url, "/presence") == 0) {
        if (!r->cfg.admin_token[0])
            return reply_text(conn, MHD_HTTP_FORBIDDEN,
                              "/presence lists who is reachable: it needs an admin token "
                              "(--admin-token-file)\n");
        if (!authorized(a, conn)) {
            auth_failed(a, conn, url);
            return reply_text(conn, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token\n");
        }
        return reply_json(conn, presence_json(r));
    }
    if (strncmp(url, "/rooms/", 7) == 0)
        return reply_json(conn, room_json(r, url + 7));
    return reply_text(conn, MHD_HTTP_NOT_FOUND,
                      "not found: /metrics /health /ready /status /rooms /rooms/NAME "
                      "/presence /admin/...\n");
}

/* Connections come and go: the guard tracks each (socket context = its slot + 1). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode what)
{
    struct wzp_admin *a = cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        char peer[INET6_ADDRSTRLEN];
        peer_of(conn, peer, sizeof peer);
        int slot = ci ? wzp_httpguard_open(&a->guard, ci->connect_fd, peer, wzp_now_ns()) : -1;
        *socket_context = (void *)(intptr_t)(slot + 1);
    } else if (what == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        wzp_httpguard_close(&a->guard, (int)(intptr_t)*socket_context - 1);
        *socket_context = NULL;
    }
}

/* A response went out: the next request on the connection has its own deadline. */
static void on_request_done(void *cls, struct MHD_Connection *conn, void **state,
                            enum MHD_RequestTerminationCode how)
{
    (void)state;
    (void)how;
    struct wzp_admin *a = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context)
        wzp_httpguard_request_done(&a->guard, (int)(intptr_t)ci->socket_context - 1, wzp_now_ns());
}

int wzp_admin_start(struct wzp_admin **out, struct wzp_relay *relay, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (inet_pton(AF_INET, relay->cfg.metrics_bind, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)relay->cfg.metrics_port);
    } else if (inet_pton(AF_INET6, relay->cfg.metrics_bind, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)relay->cfg.metrics_port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "--metrics-bind: not an IP address: %s", relay->cfg.metrics_bind);
        return WZP_EINVAL;
    }
    struct wzp_admin *a = calloc(1, sizeof *a);
    if (!a)
        return WZP_ENOMEM;
    a->relay = relay;
    wzp_httpguard_init(&a->guard, ADMIN_HEAD_DEADLINE_MS);
    if (wzp_httpguard_start(&a->guard) != WZP_OK) {
        wzp_httpguard_stop(&a->guard);
        free(a);
        snprintf(err, errlen, "cannot start the HTTP server's sweeper thread");
        return WZP_ENOMEM;
    }
    a->daemon = MHD_start_daemon(
        flags, (uint16_t)relay->cfg.metrics_port, NULL, NULL, handle, a, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)ADMIN_MAX_PER_ADDRESS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_CONNECTION_TIMEOUT_S,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, a, MHD_OPTION_NOTIFY_COMPLETED,
        on_request_done, a, MHD_OPTION_END);
    if (!a->daemon) {
        wzp_httpguard_stop(&a->guard);
        snprintf(err, errlen,
                 "cannot start the HTTP server on %s port %u (in use? try another "
                 "--metrics-port)",
                 relay->cfg.metrics_bind, relay->cfg.metrics_port);
        free(a);
        return WZP_EIO;
    }
    *out = a;
    return WZP_OK;
}

void wzp_admin_stop(struct wzp_admin *a)
{
    if (!a)
        return;
    MHD_stop_daemon(a->daemon); /* closes every connection, telling the guard */
    wzp_httpguard_stop(&a->guard);
    free(a);
}
