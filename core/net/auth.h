/*
 * auth.h - featherChat token validation (--auth-url): POST {"token": ...} to the
 * validator and read {"valid": true, "fingerprint": ..., "alias": ...}.
 *
 * One struct wzp_auth per worker, driven by that worker's libev loop through libcurl's
 * multi interface: no thread per request and no worker ever waits on the network. Every
 * request has a deadline (timeout_ms, connection included) and at most max_in_flight run
 * at once; a request beyond that is refused at once (WZP_AUTH_BUSY), never queued.
 * Results come back through done(), on the loop's thread, with the (slot, gen) handle
 * the request was started with: the connection may be gone by then.
 *
 * A leaf: it knows HTTP and JSON, not connections.
 */
#ifndef WZP_AUTH_H
#define WZP_AUTH_H

#include "sizes.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_AUTH_TIMEOUT_MS    5000
#define WZP_AUTH_MAX_IN_FLIGHT 64    /* per worker */
#define WZP_AUTH_TOKEN_MAX     4096  /* bytes of an AuthToken's token */
#define WZP_AUTH_RESPONSE_MAX  65536 /* bytes of a validator's answer we read */
#define WZP_AUTH_CLAIMS_MAX    4096  /* bytes of the validator's JSON kept for policies */
#define WZP_AUTH_DETAIL_MAX    288   /* libcurl's error text (256) and a few words */

enum wzp_auth_status {
    WZP_AUTH_OK = 0,
    WZP_AUTH_INVALID,      /* 2xx, but not {"valid": true, "fingerprint": "..."} */
    WZP_AUTH_HTTP_ERROR,   /* the validator answered with a status that is not 2xx */
    WZP_AUTH_TIMEOUT,      /* no complete answer within the deadline */
    WZP_AUTH_UNREACHABLE,  /* connection refused, name not resolved, TLS failed */
    WZP_AUTH_BAD_RESPONSE, /* not JSON, or larger than WZP_AUTH_RESPONSE_MAX */
    WZP_AUTH_BUSY,         /* max_in_flight requests are running */
    WZP_AUTH_STATUS_COUNT,
};

/* "ok", "invalid", "http_error", "timeout", "unreachable", "bad_response", "busy". */
const char *wzp_auth_status_name(enum wzp_auth_status s);

struct wzp_auth_result {
    enum wzp_auth_status status;
    char fingerprint[WZP_FINGERPRINT_LEN + 1]; /* OK: featherChat's, verbatim */
    char alias[WZP_ALIAS_MAX + 1];
    bool has_alias;
    const char *claims; /* OK: the validator's JSON object as text (valid during done()),
                         * or NULL when it is larger than WZP_AUTH_CLAIMS_MAX */
    char detail[WZP_AUTH_DETAIL_MAX]; /* for the log: HTTP status, libcurl's error, ... */
};

typedef void (*wzp_auth_done_fn)(void *ctx, uint32_t slot, uint32_t gen,
                                 const struct wzp_auth_result *res);

struct wzp_auth;

/* Call once per process before any wzp_auth_new (not thread-safe: libcurl's global
 * init); WZP_EIO if libcurl cannot start. */
int wzp_auth_global_init(void);
void wzp_auth_global_cleanup(void);

/* ca_file: PEM certificates to verify an https:// validator with, instead of the system's
 * (NULL: the system's). Certificates are always verified. WZP_EINVAL for a URL that is not
 * http:// or https://, WZP_ENOMEM. */
int wzp_auth_new(struct wzp_auth **out, struct ev_loop *loop, const char *url, const char *ca_file,
                 unsigned max_in_flight, unsigned timeout_ms, wzp_auth_done_fn done, void *ctx);

/* Abandon every request in flight (no done() for them) and free. */
void wzp_auth_free(struct wzp_auth *a);

/*
 * Validate token for the connection behind (slot, gen). WZP_OK: done() follows exactly
 * once, later (never from inside this call). WZP_EFULL: max_in_flight requests are
 * running; WZP_ETOOBIG: token over WZP_AUTH_TOKEN_MAX; WZP_ENOMEM: nothing started.
 */
int wzp_auth_start(struct wzp_auth *a, const char *token, uint32_t slot, uint32_t gen);

unsigned wzp_auth_in_flight(const struct wzp_auth *a);

#endif
