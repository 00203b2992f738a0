/*
 * validator.h - a featherChat token validator for tests: a real HTTP server (libmicrohttpd,
 * its own thread) on a free loopback port, answering POST {"token": T} by what T says:
 *
 *   "ok:FP[|ALIAS]"  200 {"valid": true, "fingerprint": FP, "alias": ALIAS, "expires_at": 1,
 *                         "team": "blue"}
 *   "invalid"        200 {"valid": false, "fingerprint": null}
 *   "nofp"           200 {"valid": true}
 *   "slow:MS"        waits MS milliseconds, then as "ok:slow"
 *   "500"            500 {"error": "boom"}
 *   "garbage"        200 "this is not json"
 *   "big"            200, a 70 000-byte JSON string
 *   anything else    403
 *
 * It checks what every request must carry (POST, Content-Type: application/json, a JSON
 * body {"token": string}) and counts requests that do not (bad_requests). Header-only: the
 * unit and integration tests include it.
 */
#ifndef WZP_TEST_VALIDATOR_H
#define WZP_TEST_VALIDATOR_H

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct validator {
    struct MHD_Daemon *d;
    unsigned port;
    char url[64];
    _Atomic unsigned requests, bad_requests;
};

struct validator_req {
    char body[8192];
    size_t len;
    int too_long;
};

static enum MHD_Result validator_reply(struct MHD_Connection *conn, unsigned status,
                                       const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rv = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rv;
}

static enum MHD_Result validator_answer(struct validator *v, struct MHD_Connection *conn,
                                        const char *token)
{
    char buf[512];
    if (strncmp(token, "ok:", 3) == 0) {
        char fp[128] = "", alias[128] = "";
        const char *colon = strchr(token + 3, '|');
        if (colon) {
            snprintf(fp, sizeof fp, "%.*s", (int)(colon - token - 3), token + 3);
            snprintf(alias, sizeof alias, "%s", colon + 1);
        } else {
            snprintf(fp, sizeof fp, "%s", token + 3);
        }
        json_t *o = json_pack("{s:b, s:s, s:s?, s:i, s:s}", "valid", 1, "fingerprint", fp, "alias",
                              alias[0] ? alias : NULL, "expires_at", 1, "team", "blue");
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        enum MHD_Result rv = validator_reply(conn, 200, s);
        free(s);
        return rv;
    }
    if (strcmp(token, "invalid") == 0)
        return validator_reply(conn, 200, "{\"valid\":false,\"fingerprint\":null}");
    if (strcmp(token, "nofp") == 0)
        return validator_reply(conn, 200, "{\"valid\":true}");
    if (strncmp(token, "slow:", 5) == 0) {
        usleep((useconds_t)atoi(token + 5) * 1000);
        return validator_reply(conn, 200, "{\"valid\":true,\"fingerprint\":\"slow\"}");
    }
    if (strcmp(token, "500") == 0)
        return validator_reply(conn, 500, "{\"error\":\"boom\"}");
    if (strcmp(token, "garbage") == 0)
        return validator_reply(conn, 200, "this is not json");
    if (strcmp(token, "big") == 0) {
        char *big = malloc(70002);
        memset(big, 'x', 70001);
        big[0] = '"';
        big[70000] = '"';
        big[70001] = '\0';
        enum MHD_Result rv = validator_reply(conn, 200, big);
        free(big);
        return rv;
    }
    (void)v;
    snprintf(buf, sizeof buf, "{\"valid\":false}");
    return validator_reply(conn, 403, buf);
}

static enum MHD_Result validator_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                         const char *method, const char *version,
                                         const char *upload, size_t *upload_len, void **state)
{
    (void)url;
    (void)version;
    struct validator *v = cls;
    struct validator_req *rq = *state;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        *state = rq;
        return MHD_YES;
    }
    if (*upload_len) {
        if (rq->len + *upload_len < sizeof rq->body) {
            memcpy(rq->body + rq->len, upload, *upload_len);
            rq->len += *upload_len;
        } else {
            rq->too_long = 1;
        }
        *upload_len = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&v->requests, 1);
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    json_t *root = rq->too_long ? NULL : json_loadb(rq->body, rq->len, 0, NULL);
    json_t *tok = root ? json_object_get(root, "token") : NULL;
    enum MHD_Result rv;
    if (strcmp(method, "POST") != 0 || !ct || strcasecmp(ct, "application/json") != 0 ||
        !json_is_string(tok) || json_object_size(root) != 1) {
        atomic_fetch_add(&v->bad_requests, 1);
        rv = validator_reply(conn, 400, "{\"error\":\"bad request\"}");
    } else {
        rv = validator_answer(v, conn, json_string_value(tok));
    }
    json_decref(root);
    return rv;
}

static void validator_done(void *cls, struct MHD_Connection *conn, void **state,
                           enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)conn;
    (void)code;
    free(*state);
    *state = NULL;
}

/* Start on a free loopback port; 0 on success. */
static inline int validator_start(struct validator *v)
{
    memset(v, 0, sizeof *v);
    static struct sockaddr_in lo; /* MHD keeps the pointer until it has bound */
    lo.sin_family = AF_INET;
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lo.sin_port = 0;
    v->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, validator_handler, v, MHD_OPTION_SOCK_ADDR, &lo,
                            MHD_OPTION_NOTIFY_COMPLETED, validator_done, NULL, MHD_OPTION_END);
    if (!v->d)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(v->d, MHD_DAEMON_INFO_BIND_PORT);
    v->port = info ? info->port : 0;
    snprintf(v->url, sizeof v->url, "http://127.0.0.1:%u/v1/auth/validate", v->port);
    return v->port ? 0 : -1;
}

static inline void validator_stop(struct validator *v)
{
    if (v->d)
        MHD_stop_daemon(v->d);
    v->d = NULL;
}

/* A loopback URL where nothing listens (a port just bound and released). */
static inline void validator_refused_url(char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    snprintf(out, outlen, "http://127.0.0.1:%u/v1/auth/validate", ntohs(a.sin_port));
}

#endif
