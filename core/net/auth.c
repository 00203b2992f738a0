/*
 * auth.c - featherChat token validation over libcurl's multi interface on a libev loop
 * (see auth.h).
 *
 * libcurl tells us which sockets to watch (socket callback: one ev_io each) and when to
 * call it back (timer callback: one ev_timer); we hand every readiness and timeout to
 * curl_multi_socket_action and collect finished transfers from curl_multi_info_read right
 * after it. Even a transfer that fails at once is reported from the loop (libcurl asks
 * for a timer of 0 ms), never from inside wzp_auth_start.
 */
#include "auth.h"

#include "common.h"
#include "log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MOD "auth"

struct request {
    struct request *next, *prev;
    struct wzp_auth *a;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* the POSTed JSON */
    uint32_t slot, gen;
    char *resp;
    size_t resp_len;
    bool resp_too_big;
    char errbuf[CURL_ERROR_SIZE];
};

struct sock {
    ev_io io;
    struct wzp_auth *a;
};

struct wzp_auth {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    char *url;
    char *ca_file; /* NULL: the system's CA certificates */
    unsigned max_in_flight, timeout_ms, in_flight;
    struct request *requests; /* in flight */
    wzp_auth_done_fn done;
    void *ctx;
    bool reporting; /* inside check_done: a done() may start requests, not report them */
};

static const char *const status_names[WZP_AUTH_STATUS_COUNT] = {
    "ok", "invalid", "http_error", "timeout", "unreachable", "bad_response", "busy"};

const char *wzp_auth_status_name(enum wzp_auth_status s)
{
    return s < WZP_AUTH_STATUS_COUNT ? status_names[s] : "?";
}

int wzp_auth_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? WZP_OK : WZP_EIO;
}

void wzp_auth_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---------------------------------------------------------------- requests */

static void request_free(struct request *r)
{
    struct wzp_auth *a = r->a;
    if (r->prev)
        r->prev->next = r->next;
    else
        a->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->easy) {
        curl_multi_remove_handle(a->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->resp);
    free(r);
    a->in_flight--;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct request *r = ud;
    size_t len = size * n;
    if (r->resp_len + len > WZP_AUTH_RESPONSE_MAX) {
        r->resp_too_big = true;
        return 0; /* abort the transfer: CURLE_WRITE_ERROR */
    }
    char *grown = realloc(r->resp, r->resp_len + len + 1);
    if (!grown)
        return 0;
    r->resp = grown;
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    r->resp[r->resp_len] = '\0';
    return len;
}

/* Read {"valid": true, "fingerprint": "...", "alias": "..."} into res. */
static void parse_answer(struct request *r, struct wzp_auth_result *res)
{
    json_error_t jerr;
    json_t *root = r->resp ? json_loadb(r->resp, r->resp_len, 0, &jerr) : NULL;
    if (!root || !json_is_object(root)) {
        res->status = WZP_AUTH_BAD_RESPONSE;
        snprintf(res->detail, sizeof res->detail, "the validator's answer is not a JSON object");
        json_decref(root);
        return;
    }
    json_t *valid = json_object_get(root, "valid");
    json_t *fp = json_object_get(root, "fingerprint");
    json_t *alias = json_object_get(root, "alias");
    if (!json_is_true(valid)) {
        res->status = WZP_AUTH_INVALID;
        snprintf(res->detail, sizeof res->detail, "the validator says the token is not valid");
    } else if (!json_is_string(fp) || json_string_length(fp) == 0) {
        res->status = WZP_AUTH_INVALID;
        snprintf(res->detail, sizeof res->detail,
                 "the validator said valid but gave no fingerprint");
    } else if (json_string_length(fp) > WZP_FINGERPRINT_LEN ||
               strlen(json_string_value(fp)) != json_string_length(fp)) {
        res->status = WZP_AUTH_INVALID;
        snprintf(res->detail, sizeof res->detail,
                 "the validator's fingerprint is longer than %d characters (or holds a NUL)",
                 WZP_FINGERPRINT_LEN);
    } else {
        res->status = WZP_AUTH_OK;
        snprintf(res->fingerprint, sizeof res->fingerprint, "%s", json_string_value(fp));
        if (json_is_string(alias)) {
            res->has_alias = true;
            snprintf(res->alias, sizeof res->alias, "%s", json_string_value(alias));
        }
        res->claims = r->resp_len <= WZP_AUTH_CLAIMS_MAX ? r->resp : NULL;
        snprintf(res->detail, sizeof res->detail, "valid");
    }
    json_decref(root);
}

static void finish(struct request *r, CURLcode code)
{
    struct wzp_auth_result res;
    memset(&res, 0, sizeof res);
    long http = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http);
    if (code == CURLE_OPERATION_TIMEDOUT) {
        res.status = WZP_AUTH_TIMEOUT;
        snprintf(res.detail, sizeof res.detail, "no answer within %u ms", r->a->timeout_ms);
    } else if (code == CURLE_WRITE_ERROR && r->resp_too_big) {
        res.status = WZP_AUTH_BAD_RESPONSE;
        snprintf(res.detail, sizeof res.detail, "the validator's answer is over %d bytes",
                 WZP_AUTH_RESPONSE_MAX);
    } else if (code != CURLE_OK) {
        res.status = WZP_AUTH_UNREACHABLE;
        snprintf(res.detail, sizeof res.detail, "%s",
                 r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
    } else if (http < 200 || http > 299) {
        res.status = WZP_AUTH_HTTP_ERROR;
        snprintf(res.detail, sizeof res.detail, "the validator answered HTTP %ld", http);
    } else {
        parse_answer(r, &res);
    }
    uint32_t slot = r->slot, gen = r->gen;
    struct wzp_auth *a = r->a;
    /* report after freeing nothing the callback needs: res.claims points into r->resp */
    a->done(a->ctx, slot, gen, &res);
    request_free(r);
}

/* Report every finished transfer. */
static void check_done(struct wzp_auth *a)
{
    if (a->reporting)
        return;
    a->reporting = true;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(a->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct request *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r)
            finish(r, m->data.result);
    }
    a->reporting = false;
}

/* ---------------------------------------------------------------- libev glue */

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sock *s = (struct sock *)w;
    struct wzp_auth *a = s->a;
    int mask =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(a->multi, w->fd, mask, &running);
    check_done(a);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct wzp_auth *a = t->data;
    int running;
    curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(a);
}

/* libcurl: watch (or stop watching) socket fd. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct wzp_auth *a = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(a->loop, &s->io);
            curl_multi_assign(a->multi, fd, NULL);
            free(s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->a = a;
        curl_multi_assign(a->multi, fd, s);
    } else {
        ev_io_stop(a->loop, &s->io);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_init(&s->io, on_io, fd, events);
    ev_io_start(a->loop, &s->io);
    return 0;
}

/* libcurl: call socket_action(TIMEOUT) in timeout_ms (-1: no timer). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct wzp_auth *a = userp;
    ev_timer_stop(a->loop, &a->timer);
    if (timeout_ms >= 0) {
        /* 0 means "now": still through the loop, so nothing is reported from inside
         * wzp_auth_start */
        ev_timer_set(&a->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(a->loop, &a->timer);
    }
    return 0;
}

/* ---------------------------------------------------------------- API */

int wzp_auth_new(struct wzp_auth **out, struct ev_loop *loop, const char *url, const char *ca_file,
                 unsigned max_in_flight, unsigned timeout_ms, wzp_auth_done_fn done, void *ctx)
{
    *out = NULL;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return WZP_EINVAL;
    struct wzp_auth *a = calloc(1, sizeof *a);
    if (!a)
        return WZP_ENOMEM;
    a->loop = loop;
    a->url = strdup(url);
    a->multi = curl_multi_init();
    a->max_in_flight = max_in_flight;
    a->timeout_ms = timeout_ms;
    a->done = done;
    a->ctx = ctx;
    a->ca_file = ca_file ? strdup(ca_file) : NULL;
    if (!a->url || !a->multi || (ca_file && !a->ca_file)) {
        wzp_auth_free(a);
        return WZP_ENOMEM;
    }
    ev_timer_init(&a->timer, on_timer, 0., 0.);
    a->timer.data = a;
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
    *out = a;
    return WZP_OK;
}

void wzp_auth_free(struct wzp_auth *a)
{
    if (!a)
        return;
    while (a->requests)
        request_free(a->requests); /* removing the handle closes its sockets: socket_cb */
    if (a->multi)
        curl_multi_cleanup(a->multi);
    if (a->loop)
        ev_timer_stop(a->loop, &a->timer);
    free(a->url);
    free(a->ca_file);
    free(a);
}

int wzp_auth_start(struct wzp_auth *a, const char *token, uint32_t slot, uint32_t gen)
{
    if (strlen(token) > WZP_AUTH_TOKEN_MAX)
        return WZP_ETOOBIG;
    if (a->in_flight >= a->max_in_flight)
        return WZP_EFULL;
    struct request *r = calloc(1, sizeof *r);
    if (!r)
        return WZP_ENOMEM;
    r->a = a;
    r->slot = slot;
    r->gen = gen;
    json_t *body = json_pack("{s:s}", "token", token);
    r->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    r->easy = curl_easy_init();
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    a->in_flight++;
    r->next = a->requests;
    if (a->requests)
        a->requests->prev = r;
    a->requests = r;
    if (!r->body || !r->easy || !r->headers) {
        request_free(r);
        return WZP_ENOMEM;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, a->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)a->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)a->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "wzp-relay/" WZP_VERSION);
    if (a->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, a->ca_file);
    if (curl_multi_add_handle(a->multi, e) != CURLM_OK) {
        request_free(r);
        return WZP_ENOMEM;
    }
    return WZP_OK;
}

unsigned wzp_auth_in_flight(const struct wzp_auth *a)
{
    return a->in_flight;
}
