/*
 * relay.h - the process-wide relay: configuration, identity, TLS credentials, the room
 * table, the workers and the global admission counters.
 *
 * Threads: main() builds the relay, starts one worker thread per configured thread and
 * then only waits for signals. Everything here is immutable after wzp_relay_start()
 * except the atomics and the room table (which has its own locks).
 */
#ifndef WZP_RELAY_H
#define WZP_RELAY_H

#include "identity.h"
#include "mesh.h"
#include "policy.h"
#include "room.h"
#include "shdict.h"

#include <gnutls/gnutls.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#define WZP_DEFAULT_PORT            4433
#define WZP_DEFAULT_MAX_SESSIONS    100
#define WZP_DEFAULT_MAX_HANDSHAKES  256
#define WZP_DEFAULT_MAX_CONNECTIONS 10000
#define WZP_DEFAULT_JOIN_TIMEOUT_MS 10000
#define WZP_DEFAULT_IDLE_TIMEOUT_MS 30000
#define WZP_HANDSHAKE_TIMEOUT_MS    10000
#define WZP_KEEPALIVE_MS            5000
#define WZP_DEFAULT_DRAIN_TIMEOUT_S 600
#define WZP_MAX_WORKERS             64
#define WZP_SHARED_MAX_KEYS         100000
#define WZP_SHARED_MAX_BYTES        (16u << 20)

struct wzp_config {
    char listen[128]; /* as given: "0.0.0.0:4433", "[::]:4433" */
    struct sockaddr_storage listen_addr;
    socklen_t listen_addrlen;
    char identity_path[PATH_MAX];
    unsigned threads;         /* workers; 0 = online CPUs */
    bool no_room_affinity;    /* spread a room's connections over the workers */
    unsigned max_sessions;    /* room participants (joined or joining) */
    unsigned max_handshakes;  /* QUIC handshakes in progress */
    unsigned max_connections; /* QUIC connections of any kind */
    unsigned join_timeout_ms; /* handshake done -> CallOffer */
    unsigned idle_timeout_ms;
    char policy_path[PATH_MAX];            /* "" = no policy file: upstream behaviour */
    unsigned metrics_port;                 /* 0: no HTTP server */
    char metrics_bind[64];                 /* address of the HTTP server (default 127.0.0.1) */
    char admin_token[256];                 /* "" = admin actions disabled */
    unsigned drain_timeout_s;              /* drain: exit at the latest after this */
    char debug_tap[WZP_ROOM_NAME_MAX + 1]; /* room name or "*": log every packet there */
    char event_log[PATH_MAX];              /* "" = no event log */
    char lua_dir[PATH_MAX];                /* helpers for require() */
    struct wzp_policy_limits policy_limits;
};

/* Fill defaults (listen 0.0.0.0:4433, identity ~/.wzp/relay-identity, ...). */
void wzp_config_defaults(struct wzp_config *cfg);

/* Parse "host:port", "[v6]:port" or ":port" into cfg->listen_addr. WZP_EINVAL if bad. */
int wzp_config_set_listen(struct wzp_config *cfg, const char *text);

struct wzp_worker;
struct wzp_admin;
struct wzp_affinity;

struct wzp_relay {
    struct wzp_config cfg;
    struct wzp_identity identity;
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t priority;
    uint8_t reset_secret[32]; /* stateless reset tokens; derived from the identity seed */
    struct wzp_room_table rooms;
    struct wzp_worker **workers;
    unsigned nworkers;
    struct wzp_mesh mesh;        /* every message between workers (one node per worker) */
    _Atomic unsigned sessions;   /* reserved room slots (joining or joined) */
    _Atomic unsigned handshakes; /* QUIC handshakes in progress */
    _Atomic unsigned connections;
    _Atomic bool stopping;
    struct wzp_shdict shared; /* the policies' shared dictionary (kept across reloads) */
    struct wzp_policy_env policy_env;
    struct wzp_policy_metrics policy_metrics; /* wzp.metric counters (kept across reloads) */
    _Atomic uint64_t policy_reloads_ok, policy_reloads_failed;
    _Atomic bool draining;   /* new joins refused; exit when the last call ends */
    struct wzp_admin *admin; /* HTTP metrics/admin server, or NULL */
    /* Room affinity (affinity.h): NULL when off (one worker, --no-room-affinity, or the
     * kernel refused the connection-ID steering program it needs). */
    struct wzp_affinity *affinity;
};

/* Load identity, set up TLS, bind every worker socket. err gets a message on failure. */
int wzp_relay_init(struct wzp_relay *r, const struct wzp_config *cfg, char *err, size_t errlen);
/* Start the worker threads. */
int wzp_relay_start(struct wzp_relay *r);
/*
 * Close every connection (application code 0, reason "shutdown"), stop the workers and
 * join them. Waits at most timeout_ms; returns WZP_OK if every worker stopped in time.
 */
int wzp_relay_stop(struct wzp_relay *r, unsigned timeout_ms);
void wzp_relay_free(struct wzp_relay *r);

/*
 * Load the configured policy aside (one state per worker); if every state loads and
 * passes its self-check, hand them to the workers, which switch at their next loop
 * iteration. On failure the running policy stays, the error is logged with file:line
 * and counted. Called from the main thread (start-up and SIGHUP).
 */
int wzp_relay_reload_policy(struct wzp_relay *r);

/* Log one line with the counters summed over workers. */
void wzp_relay_log_stats(struct wzp_relay *r);

/* Try to reserve one room session; false when max_sessions is reached. */
bool wzp_relay_reserve_session(struct wzp_relay *r);
void wzp_relay_release_session(struct wzp_relay *r);

#endif
