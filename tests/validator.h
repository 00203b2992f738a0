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
 * validator_start_https serves the same over TLS with a fresh self-signed certificate for
 * 127.0.0.1 (made with certtool), whose file is then the CA file that verifies it.
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
    char dir[64];     /* https: where the key and certificate are */
    char ca_file[96]; /* https: the certificate, as a CA file */
    char *key, *cert; /* https: PEM, kept for the daemon's lifetime */
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

static inline char *validator_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static const size_t max = 65536;
    char *buf = calloc(1, max);
    size_t n = buf ? fread(buf, 1, max - 1, f) : 0;
    fclose(f);
    if (buf && n == 0) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

static inline int validator_listen(struct validator *v, unsigned flags, const char *scheme);

/* Start on a free loopback port; 0 on success. */
static inline int validator_start(struct validator *v)
{
    memset(v, 0, sizeof *v);
    return validator_listen(v, 0, "http");
}

/* The same over TLS; 0 on success, -1 if certtool or the TLS daemon failed. */
static inline int validator_start_https(struct validator *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->dir, sizeof v->dir, "/tmp/wzp-validator-XXXXXX");
    if (!mkdtemp(v->dir))
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/tmpl", v->dir);
    FILE *t = fopen(cmd, "w");
    if (!t)
        return -1;
    fputs("cn = \"127.0.0.1\"\nip_address = \"127.0.0.1\"\nca\nsigning_key\n"
          "cert_signing_key\ntls_www_server\nexpiration_days = 2\n",
          t);
    fclose(t);
    snprintf(cmd, sizeof cmd,
             "cd %s && certtool --generate-privkey --key-type=ecdsa --outfile key.pem "
             ">/dev/null 2>&1 && certtool --generate-self-signed --load-privkey key.pem "
             "--template tmpl --outfile cert.pem >/dev/null 2>&1",
             v->dir);
    if (system(cmd) != 0)
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/key.pem", v->dir);
    v->key = validator_slurp(path);
    snprintf(v->ca_file, sizeof v->ca_file, "%s/cert.pem", v->dir);
    v->cert = validator_slurp(v->ca_file);
    if (!v->key || !v->cert)
        return -1;
    return validator_listen(v, MHD_USE_TLS, "https");
}

static inline int validator_listen(struct validator *v, unsigned flags, const char *scheme)
{
    static struct sockaddr_in lo; /* MHD keeps the pointer until it has bound */
    lo.sin_family = AF_INET;
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lo.sin_port = 0;
    if (flags & MHD_USE_TLS)
        v->d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | flags, 0, NULL, NULL,
            validator_handler, v, MHD_OPTION_SOCK_ADDR, &lo, MHD_OPTION_NOTIFY_COMPLETED,
            validator_done, NULL, MHD_OPTION_HTTPS_MEM_KEY, v->key, MHD_OPTION_HTTPS_MEM_CERT,
            v->cert, MHD_OPTION_END);
    else
        v->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                                NULL, NULL, validator_handler, v, MHD_OPTION_SOCK_ADDR, &lo,
                                MHD_OPTION_NOTIFY_COMPLETED, validator_done, NULL, MHD_OPTION_END);
    if (!v->d)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(v->d, MHD_DAEMON_INFO_BIND_PORT);
    v->port = info ? info->port : 0;
    snprintf(v->url, sizeof v->url, "%s://127.0.0.1:%u/v1/auth/validate", scheme, v->port);
    return v->port ? 0 : -1;
}

static inline void validator_stop(struct validator *v)
{
    if (v->d)
        MHD_stop_daemon(v->d);
    v->d = NULL;
    free(v->key);
    free(v->cert);
    v->key = v->cert = NULL;
    if (v->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", v->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "validator: could not remove %s\n", v->dir);
        v->dir[0] = '\0';
    }
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
