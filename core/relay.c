/*
 * relay.c - builds the relay from its configuration, starts and stops the workers,
 * and owns the process-wide admission counters (see relay.h).
 */
#include "relay.h"

#include "affinity.h"
#include "auth.h"
#include "common.h"
#include "eventlog.h"
#include "log.h"
#include "sfu.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MOD "relay"

void wzp_config_defaults(struct wzp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    wzp_config_set_listen(cfg, "0.0.0.0:4433");
    wzp_identity_default_path(cfg->identity_path, sizeof cfg->identity_path);
    cfg->max_sessions = WZP_DEFAULT_MAX_SESSIONS;
    cfg->max_handshakes = WZP_DEFAULT_MAX_HANDSHAKES;
    cfg->max_connections = WZP_DEFAULT_MAX_CONNECTIONS;
    cfg->max_handshakes_per_addr = WZP_DEFAULT_MAX_HANDSHAKES_PER_ADDR;
    cfg->max_connections_per_addr = WZP_DEFAULT_MAX_CONNECTIONS_PER_ADDR;
    cfg->retry = WZP_RETRY_AUTO;
    cfg->join_timeout_ms = WZP_DEFAULT_JOIN_TIMEOUT_MS;
    cfg->ring_timeout_s = WZP_DEFAULT_RING_TIMEOUT_S;
    cfg->call_setup_timeout_s = WZP_DEFAULT_CALL_SETUP_TIMEOUT_S;
    cfg->max_calls = WZP_DEFAULT_MAX_CALLS;
    cfg->idle_timeout_ms = WZP_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->ack_delay_ms = WZP_DEFAULT_ACK_DELAY_MS;
    cfg->coalesce_ms = 0;
    cfg->poll_every_us = WZP_DEFAULT_POLL_EVERY_US;
    snprintf(cfg->metrics_bind, sizeof cfg->metrics_bind, "127.0.0.1");
    cfg->drain_timeout_s = WZP_DEFAULT_DRAIN_TIMEOUT_S;
    cfg->policy_limits.budget_ms = WZP_POLICY_DEFAULT_BUDGET_MS;
    cfg->policy_limits.share_ms = WZP_POLICY_DEFAULT_SHARE_MS;
    cfg->policy_limits.memory_bytes = (size_t)WZP_POLICY_DEFAULT_MEMORY_MB << 20;
}

int wzp_config_set_listen(struct wzp_config *cfg, const char *text)
{
    char host[128];
    const char *orig = text;
    const char *colon = strrchr(text, ':');
    if (!colon || strlen(text) >= sizeof cfg->listen)
        return WZP_EINVAL;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '\0' || port < 0 || port > 65535)
        return WZP_EINVAL;
    size_t hlen = (size_t)(colon - text);
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
        text++;
        hlen -= 2;
    }
    if (hlen >= sizeof host)
        return WZP_EINVAL;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (hlen == 0 || inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        len = sizeof *in;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof *in6;
    } else {
        return WZP_EINVAL;
    }
    snprintf(cfg->listen, sizeof cfg->listen, "%s", orig);
    cfg->listen_addr = ss;
    cfg->listen_addrlen = len;
    return WZP_OK;
}

/* Split "IP:PORT", "[IPv6]:PORT" or a bare IP into a normalised address text and a port
 * (-1 when none was given). */
static int parse_ip_port(const char *text, char *ip, size_t iplen, int *family, long *port)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    uint8_t buf[16];
    *port = -1;
    if (text[0] != '[' && inet_pton(AF_INET6, text, buf) == 1) { /* bare IPv6 */
        *family = AF_INET6;
        return inet_ntop(AF_INET6, buf, ip, (socklen_t)iplen) ? WZP_OK : WZP_EINVAL;
    }
    size_t hlen = colon ? (size_t)(colon - text) : strlen(text);
    if (colon) {
        char *end;
        errno = 0;
        *port = strtol(colon + 1, &end, 10);
        if (errno || *end || colon[1] == '\0' || *port < 1 || *port > 65535)
            return WZP_EINVAL;
    }
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
        text++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host)
        return WZP_EINVAL;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    *family = inet_pton(AF_INET, host, buf) == 1    ? AF_INET
              : inet_pton(AF_INET6, host, buf) == 1 ? AF_INET6
                                                    : 0;
    if (!*family || !inet_ntop(*family, buf, ip, (socklen_t)iplen))
        return WZP_EINVAL;
    return WZP_OK;
}

int wzp_config_set_advertise(struct wzp_config *cfg, const char *text)
{
    char ip[INET6_ADDRSTRLEN];
    int family;
    long port;
    if (parse_ip_port(text, ip, sizeof ip, &family, &port) != WZP_OK)
        return WZP_EINVAL;
    if (port < 0)
        snprintf(cfg->advertise, sizeof cfg->advertise, "%s", ip);
    else
        snprintf(cfg->advertise, sizeof cfg->advertise, family == AF_INET6 ? "[%s]:%ld" : "%s:%ld",
                 ip, port);
    return WZP_OK;
}

/* The local address the kernel would use towards a public address (nothing is sent), or
 * false. */
static bool outbound_ip(int family, char *ip, size_t iplen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(53);
        inet_pton(AF_INET, "192.0.2.1", &in->sin_addr); /* TEST-NET-1: routed, never used */
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(53);
        inet_pton(AF_INET6, "2001:db8::1", &in6->sin6_addr);
        len = sizeof *in6;
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = false;
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    if (connect(fd, (struct sockaddr *)&ss, len) == 0 &&
        getsockname(fd, (struct sockaddr *)&local, &llen) == 0) {
        const void *a = family == AF_INET
                            ? (const void *)&((struct sockaddr_in *)&local)->sin_addr
                            : (const void *)&((struct sockaddr_in6 *)&local)->sin6_addr;
        ok = inet_ntop(family, a, ip, (socklen_t)iplen) != NULL;
    }
    close(fd);
    return ok;
}

/*
 * The relay address clients are told in CallSetup: --advertise (with the listen port if
 * it has none); else the listen address if it is specific; else the address of the
 * interface towards the Internet; else loopback. IPv6 in brackets.
 */
static void derive_advertise(struct wzp_relay *r)
{
    const struct sockaddr_storage *la = &r->cfg.listen_addr;
    int family = la->ss_family;
    unsigned port = ntohs(family == AF_INET6 ? ((const struct sockaddr_in6 *)la)->sin6_port
                                             : ((const struct sockaddr_in *)la)->sin_port);
    char ip[WZP_ADVERTISE_MAX + 1] = "";
    const char *how = "--advertise";
    if (r->cfg.advertise[0]) {
        /* normalised by wzp_config_set_advertise: a port follows "]" or the one ':' of
         * an IPv4 address; a bare IPv6 address has several ':' and no brackets */
        if (strchr(r->cfg.advertise, ']') ||
            (strchr(r->cfg.advertise, ':') && !strchr(strchr(r->cfg.advertise, ':') + 1, ':'))) {
            snprintf(r->advertise_addr, sizeof r->advertise_addr, "%s", r->cfg.advertise);
            WZP_INFO(MOD, "direct calls: relay address %s (--advertise)", r->advertise_addr);
            return;
        }
        snprintf(ip, sizeof ip, "%s", r->cfg.advertise);
        family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    } else {
        const void *a = family == AF_INET6
                            ? (const void *)&((const struct sockaddr_in6 *)la)->sin6_addr
                            : (const void *)&((const struct sockaddr_in *)la)->sin_addr;
        static const uint8_t zero[16];
        bool any = memcmp(a, zero, family == AF_INET6 ? 16 : 4) == 0;
        how = "the listen address";
        if (!any) {
            inet_ntop(family, a, ip, sizeof ip);
        } else if (outbound_ip(family, ip, sizeof ip)) {
            how = "the outbound interface; set --advertise if clients reach the relay "
                  "at another address (NAT)";
        } else {
            snprintf(ip, sizeof ip, "%s", family == AF_INET6 ? "::1" : "127.0.0.1");
            how = "no route found, loopback; set --advertise";
        }
    }
    snprintf(r->advertise_addr, sizeof r->advertise_addr, family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             ip, port);
    WZP_INFO(MOD, "direct calls: relay address %s (%s)", r->advertise_addr, how);
}

static int init_tls(struct wzp_relay *r, char *err, size_t errlen)
{
    if (gnutls_certificate_allocate_credentials(&r->cred) != 0 ||
        wzp_identity_set_credentials(&r->identity, r->cred) != WZP_OK) {
        snprintf(err, errlen, "cannot load the TLS certificate into GnuTLS");
        return WZP_ECRYPTO;
    }
    if (gnutls_priority_init(&r->priority, wzp_tls_priority, NULL) != 0) {
        snprintf(err, errlen, "GnuTLS rejected the TLS 1.3 priority string");
        return WZP_ECRYPTO;
    }
    r->tls_underscore_names = wzp_tls_probe_reserved_names(r->cred) == WZP_OK;
    return WZP_OK;
}

/* One state per worker of the file at path, all or nothing; handed to the workers on
 * success, as their live policy or their shadow. */
static int load_states(struct wzp_relay *r, const char *path, bool shadow, char *err, size_t errlen)
{
    struct wzp_policy *states[WZP_MAX_WORKERS] = {0};
    for (unsigned i = 0; i < r->nworkers; i++) {
        if (wzp_policy_load(&states[i], path, &r->cfg.policy_limits,
                            shadow ? &r->shadow_env : &r->policy_env, err, errlen) != WZP_OK) {
            for (unsigned k = 0; k < i; k++)
                wzp_policy_free(states[k]);
            return WZP_EINVAL;
        }
    }
    for (unsigned i = 0; i < r->nworkers; i++) {
        if (shadow)
            wzp_worker_offer_shadow(r->workers[i], states[i]);
        else
            wzp_worker_offer_policy(r->workers[i], states[i]);
    }
    return WZP_OK;
}

static int load_policies(struct wzp_relay *r, char *err, size_t errlen)
{
    return load_states(r, r->cfg.policy_path, false, err, errlen);
}

/* The shadow (if any) is reloaded with the live policy; a shadow that fails to load is
 * reported and the running one stays. */
static void reload_shadow(struct wzp_relay *r)
{
    char err[1024];
    if (!r->cfg.shadow_path[0])
        return;
    if (load_states(r, r->cfg.shadow_path, true, err, sizeof err) != WZP_OK) {
        WZP_ERROR(MOD, "shadow policy reload failed, keeping the running shadow: %s", err);
        return;
    }
    atomic_store(&r->shadow_loaded_at, (int64_t)time(NULL));
    WZP_INFO(MOD, "shadow policy (re)loaded from %s: its decisions are compared, never applied",
             r->cfg.shadow_path);
}

int wzp_relay_promote_shadow(struct wzp_relay *r)
{
    char err[1024], old[PATH_MAX];
    if (!r->cfg.shadow_path[0]) {
        WZP_WARN(MOD, "promote: there is no shadow policy to promote");
        return WZP_ESTATE;
    }
    pthread_mutex_lock(&r->policy_paths_lock);
    memcpy(old, r->cfg.policy_path, sizeof old);
    memcpy(r->cfg.policy_path, r->cfg.shadow_path, sizeof r->cfg.policy_path);
    pthread_mutex_unlock(&r->policy_paths_lock);
    struct wzp_event ev;
    wzp_event_begin(&ev, "promote");
    wzp_event_str(&ev, "policy", r->cfg.policy_path);
    wzp_event_str(&ev, "replaced", old[0] ? old : NULL);
    if (load_policies(r, err, sizeof err) != WZP_OK) {
        pthread_mutex_lock(&r->policy_paths_lock);
        memcpy(r->cfg.policy_path, old, sizeof old);
        pthread_mutex_unlock(&r->policy_paths_lock);
        atomic_fetch_add(&r->policy_reloads_failed, 1);
        WZP_ERROR(MOD, "promote failed, the live policy stays %s: %s", old, err);
        wzp_event_str(&ev, "result", "failed");
        wzp_event_str(&ev, "error", err);
        wzp_event_emit(&ev);
        return WZP_EINVAL;
    }
    pthread_mutex_lock(&r->policy_paths_lock);
    r->cfg.shadow_path[0] = '\0';
    pthread_mutex_unlock(&r->policy_paths_lock);
    for (unsigned i = 0; i < r->nworkers; i++)
        wzp_worker_offer_shadow(r->workers[i], NULL);
    atomic_fetch_add(&r->policy_reloads_ok, 1);
    atomic_store(&r->policy_loaded_at, (int64_t)time(NULL));
    WZP_INFO(MOD, "shadow policy promoted: %s is live (was %s); no shadow now", r->cfg.policy_path,
             old[0] ? old : "none");
    wzp_event_str(&ev, "result", "ok");
    wzp_event_emit(&ev);
    return WZP_OK;
}

int wzp_relay_reload_policy(struct wzp_relay *r)
{
    char err[1024];
    reload_shadow(r);
    if (!r->cfg.policy_path[0]) {
        WZP_INFO(MOD, "SIGHUP: no policy file configured (-s); nothing to reload");
        return WZP_OK;
    }
    struct wzp_event ev;
    wzp_event_begin(&ev, "reload");
    wzp_event_str(&ev, "policy", r->cfg.policy_path);
    if (load_policies(r, err, sizeof err) != WZP_OK) {
        atomic_fetch_add(&r->policy_reloads_failed, 1);
        WZP_ERROR(MOD, "policy reload failed, keeping the running policy: %s", err);
        wzp_event_str(&ev, "result", "failed");
        wzp_event_str(&ev, "error", err);
        wzp_event_emit(&ev);
        return WZP_EINVAL;
    }
    atomic_fetch_add(&r->policy_reloads_ok, 1);
    atomic_store(&r->policy_loaded_at, (int64_t)time(NULL));
    WZP_INFO(MOD, "policy reloaded from %s", r->cfg.policy_path);
    wzp_event_str(&ev, "result", "ok");
    wzp_event_emit(&ev);
    return WZP_OK;
}

/* Room affinity needs several workers and the kernel's steering by connection ID. */
static int init_affinity(struct wzp_relay *r, char *err, size_t errlen)
{
    if (r->nworkers < 2 || r->cfg.no_room_affinity) {
        if (r->nworkers > 1)
            WZP_INFO(MOD,
                     "room affinity off (--no-room-affinity): a room's connections are "
                     "spread over the %u workers",
                     r->nworkers);
        return WZP_OK;
    }
    char why[256];
    if (wzp_worker_steer_by_cid(r, why, sizeof why) != WZP_OK) {
        WZP_WARN(MOD,
                 "room affinity off: the kernel refused connection-ID steering (%s); "
                 "rooms are spread over the workers and served through cross-worker "
                 "queues",
                 why);
        return WZP_OK;
    }
    r->affinity = malloc(sizeof *r->affinity);
    if (!r->affinity || wzp_affinity_init(r->affinity, r->nworkers, r->cfg.max_connections)) {
        free(r->affinity);
        r->affinity = NULL;
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    WZP_INFO(MOD, "room affinity on: each room is served by one of the %u workers", r->nworkers);
    return WZP_OK;
}

int wzp_relay_init(struct wzp_relay *r, const struct wzp_config *cfg, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    const struct wzp_quota_limits limits = {
        .sessions = cfg->max_sessions,
        .handshakes = cfg->max_handshakes,
        .connections = cfg->max_connections,
        .handshakes_per_addr = cfg->max_handshakes_per_addr,
        .connections_per_addr = cfg->max_connections_per_addr,
        .signal_bytes = WZP_QUOTA_SIGNAL_BYTES,
    };
    if (wzp_quota_init(&r->quota, &limits) != WZP_OK) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    if (r->cfg.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        r->cfg.threads = n > 0 ? (unsigned)n : 1;
    }
    if (r->cfg.threads > WZP_MAX_WORKERS)
        r->cfg.threads = WZP_MAX_WORKERS;
    int rv = wzp_identity_load_or_create(&r->identity, r->cfg.identity_path, err, errlen);
    if (rv)
        return rv;
    wzp_hkdf_sha256(r->identity.seed, sizeof r->identity.seed, "wzp-relay-stateless-reset",
                    r->reset_secret, sizeof r->reset_secret);
    wzp_hkdf_sha256(r->identity.seed, sizeof r->identity.seed, "wzp-relay-retry-token",
                    r->retry_secret, sizeof r->retry_secret);
    if ((rv = init_tls(r, err, errlen)))
        return rv;
    derive_advertise(r);
    pthread_mutex_init(&r->policy_paths_lock, NULL);
    if (wzp_shdict_init(&r->shared, WZP_SHARED_MAX_KEYS, WZP_SHARED_MAX_BYTES) ||
        wzp_shdict_init(&r->shadow_shared, WZP_SHARED_MAX_KEYS, WZP_SHARED_MAX_BYTES) ||
        wzp_room_table_init(&r->rooms, 1024) ||
        wzp_presence_init(&r->presence, r->cfg.max_connections) ||
        wzp_calls_init(&r->calls, r->cfg.max_calls, WZP_CALLS_PER_PARTY)) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    if (r->cfg.auth_url[0]) {
        if (wzp_auth_global_init() != WZP_OK) {
            snprintf(err, errlen, "libcurl could not start (needed by --auth-url)");
            return WZP_EIO;
        }
        r->auth_global = true;
        WZP_INFO(MOD,
                 "featherChat authentication on: every room and _signal connection "
                 "starts with an AuthToken, validated at %s",
                 strchr(r->cfg.auth_url, '@') ? "(a URL with credentials)" : r->cfg.auth_url);
    }
    r->nworkers = r->cfg.threads;
    r->workers = calloc(r->nworkers, sizeof *r->workers);
    if (!r->workers || wzp_mesh_init(&r->mesh, r->nworkers) != WZP_OK) {
        snprintf(err, errlen, "out of memory");
        return WZP_ENOMEM;
    }
    for (unsigned i = 0; i < r->nworkers; i++) {
        r->workers[i] = malloc(sizeof *r->workers[i]);
        if (!r->workers[i]) {
            snprintf(err, errlen, "out of memory");
            return WZP_ENOMEM;
        }
        if ((rv = wzp_worker_init(r->workers[i], r, i, err, errlen)))
            return rv;
    }
    if ((rv = init_affinity(r, err, errlen)))
        return rv;
    r->policy_env.shared = &r->shared;
    r->policy_env.lua_dir = r->cfg.lua_dir[0] ? r->cfg.lua_dir : NULL;
    wzp_policy_metrics_init(&r->policy_metrics);
    r->policy_env.metrics = &r->policy_metrics;
    r->policy_env.ops = &wzp_sfu_policy_ops;
    r->policy_env.ops_ctx = r;
    atomic_store(&r->policy_loaded_at, (int64_t)time(NULL));
    if (r->cfg.policy_path[0] && load_policies(r, err, errlen) != WZP_OK)
        return WZP_EINVAL;
    r->shadow_env = r->policy_env;
    r->shadow_env.shared = &r->shadow_shared;
    wzp_policy_metrics_init(&r->shadow_metrics);
    r->shadow_env.metrics = &r->shadow_metrics;
    r->shadow_env.ops = &wzp_sfu_shadow_policy_ops;
    if (r->cfg.shadow_path[0]) {
        if (load_states(r, r->cfg.shadow_path, true, err, errlen) != WZP_OK)
            return WZP_EINVAL;
        atomic_store(&r->shadow_loaded_at, (int64_t)time(NULL));
    }
    return WZP_OK;
}

int wzp_relay_start(struct wzp_relay *r)
{
    for (unsigned i = 0; i < r->nworkers; i++)
        if (wzp_worker_start(r->workers[i]) != WZP_OK)
            return WZP_EIO;
    return WZP_OK;
}

int wzp_relay_stop(struct wzp_relay *r, unsigned timeout_ms)
{
    atomic_store(&r->stopping, true);
    for (unsigned i = 0; i < r->nworkers; i++)
        wzp_worker_request_stop(r->workers[i]);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rv = WZP_OK;
    for (unsigned i = 0; i < r->nworkers; i++) {
        if (pthread_timedjoin_np(r->workers[i]->thread, NULL, &deadline) != 0) {
            WZP_ERROR(MOD, "worker %u did not stop within %u ms", i, timeout_ms);
            rv = WZP_ESTATE;
        }
    }
    return rv;
}

void wzp_relay_free(struct wzp_relay *r)
{
    if (r->workers) {
        for (unsigned i = 0; i < r->nworkers; i++)
            if (r->workers[i]) {
                wzp_worker_free(r->workers[i]);
                free(r->workers[i]);
            }
        free(r->workers);
    }
    wzp_mesh_free(&r->mesh); /* after the workers: their loops no longer run */
    if (r->auth_global)
        wzp_auth_global_cleanup(); /* after the workers freed their validators */
    if (r->affinity) {
        wzp_affinity_free(r->affinity);
        free(r->affinity);
    }
    if (r->rooms.buckets)
        wzp_room_table_destroy(&r->rooms);
    wzp_presence_free(&r->presence);
    wzp_calls_free(&r->calls);
    if (r->shared.buckets)
        wzp_shdict_destroy(&r->shared);
    if (r->shadow_shared.buckets)
        wzp_shdict_destroy(&r->shadow_shared);
    wzp_quota_free(&r->quota); /* after the workers: their connections gave everything back */
    if (r->priority)
        gnutls_priority_deinit(r->priority);
    if (r->cred)
        gnutls_certificate_free_credentials(r->cred);
    wzp_identity_free(&r->identity);
    memset(r, 0, sizeof *r);
}

void wzp_relay_log_stats(struct wzp_relay *r)
{
    char line[4096];
    size_t off = 0;
#define WZP_STATS_SUM(name, family, label, help)                                                   \
    {                                                                                              \
        uint64_t sum = 0;                                                                          \
        for (unsigned i = 0; i < r->nworkers; i++)                                                 \
            sum += atomic_load_explicit(&r->workers[i]->stats.name, memory_order_relaxed);         \
        if (off < sizeof line)                                                                     \
            off += (size_t)snprintf(line + off, sizeof line - off, " %s=%llu", #name,              \
                                    (unsigned long long)sum);                                      \
    }
    WZP_STATS_FIELDS(WZP_STATS_SUM)
#undef WZP_STATS_SUM
    if (off < sizeof line)
        snprintf(line + off, sizeof line - off,
                 " policy_reloads_ok=%llu policy_reloads_failed=%llu",
                 (unsigned long long)atomic_load(&r->policy_reloads_ok),
                 (unsigned long long)atomic_load(&r->policy_reloads_failed));
    off = strlen(line);
    for (size_t i = 0; i < WZP_POLICY_MAX_METRICS && off < sizeof line; i++) {
        const char *name = wzp_policy_metric_name(&r->policy_metrics, i);
        if (!name)
            break;
        off += (size_t)snprintf(line + off, sizeof line - off, "%s %s=%.17g",
                                i == 0 ? " policy_metric" : "", name,
                                wzp_policy_metric_value(&r->policy_metrics, i));
    }
    WZP_INFO(MOD, "stats:%s", line);
}
