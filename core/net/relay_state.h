/*
 * relay_state.h - the process-wide state of the relay: configuration, identity, TLS
 * credentials, the room table, the workers, the mesh between them and the admission
 * quota. relay.c (the layer above) builds it; every worker reads it.
 *
 * Threads: main() builds the relay, starts one worker thread per configured thread and
 * then only waits for signals. Everything here is immutable after wzp_relay_start()
 * except the atomics, the quota and the room table (each has its own synchronisation).
 */
#ifndef WZP_RELAY_STATE_H
#define WZP_RELAY_STATE_H

#include "calls.h"
#include "identity.h"
#include "mesh.h"
#include "policy.h"
#include "presence.h"
#include "quota.h"
#include "recent.h"
#include "retry.h"
#include "room.h"
#include "shdict.h"

#include <gnutls/gnutls.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

#define WZP_DEFAULT_PORT                     4433
#define WZP_DEFAULT_MAX_SESSIONS             100
#define WZP_DEFAULT_MAX_HANDSHAKES           256
#define WZP_DEFAULT_MAX_CONNECTIONS          10000
#define WZP_DEFAULT_JOIN_TIMEOUT_MS          10000
#define WZP_DEFAULT_IDLE_TIMEOUT_MS          30000
#define WZP_HANDSHAKE_TIMEOUT_MS             10000
#define WZP_HANDSHAKE_TIMEOUT_PRESSURE_MS    3000 /* first flight under handshake pressure */
#define WZP_DEFAULT_MAX_HANDSHAKES_PER_ADDR  32
#define WZP_DEFAULT_MAX_CONNECTIONS_PER_ADDR 256
#define WZP_KEEPALIVE_MS                     5000
#define WZP_DEFAULT_ACK_DELAY_MS             20   /* --ack-delay: hold an ACK for a datagram */
#define WZP_MAX_ACK_DELAY_MS                 20   /* below the 25 ms max_ack_delay we announce */
#define WZP_MAX_COALESCE_MS                  20   /* --coalesce: the same bound */
#define WZP_COALESCE_FULL_BYTES              1000 /* queued media that fills a packet */
#define WZP_DEFAULT_POLL_EVERY_US            100 /* --poll-every: fewer wake-ups, +0.1 ms at most */
#define WZP_MAX_POLL_EVERY_US                5000 /* a quarter of a 20 ms voice frame */
#define WZP_DEFAULT_DRAIN_TIMEOUT_S          600
#define WZP_MAX_WORKERS                      64

#define WZP_ADMIN_TOKEN_MAX 255 /* bytes of the admin bearer token */

#define WZP_DEFAULT_RING_TIMEOUT_S       60   /* a direct call rings at most this long */
#define WZP_DEFAULT_CALL_SETUP_TIMEOUT_S 30   /* accepted -> call room joined or path reported */
#define WZP_DEFAULT_MAX_CALLS            4096 /* direct calls ringing or active */
#define WZP_CALLS_PER_PARTY              8    /* calls one fingerprint takes part in at once */
#define WZP_ADVERTISE_MAX                80   /* "[v6 address]:port" */

struct wzp_config {
    char listen[128]; /* as given: "0.0.0.0:4433", "[::]:4433" */
    struct sockaddr_storage listen_addr;
    socklen_t listen_addrlen;
    char identity_path[PATH_MAX];
    unsigned threads;                  /* workers; 0 = online CPUs */
    bool no_room_affinity;             /* spread a room's connections over the workers */
    unsigned max_sessions;             /* room participants (joined or joining) */
    unsigned max_handshakes;           /* QUIC handshakes in progress */
    unsigned max_connections;          /* QUIC connections of any kind */
    unsigned max_handshakes_per_addr;  /* from one source address (IPv6: /64); 0 = no limit */
    unsigned max_connections_per_addr; /* the same for connections */
    enum wzp_retry_mode retry;         /* address validation (retry.h) */
    unsigned join_timeout_ms;          /* handshake done -> CallOffer */
    unsigned idle_timeout_ms;
    unsigned ack_delay_ms;  /* a joined connection's ACK waits this long for a datagram (conn.h) */
    unsigned coalesce_ms;   /* datagrams to one client wait this long to share a packet; 0 = off */
    unsigned poll_every_us; /* a worker polls its sockets at most this often; 0 = at once */
    char policy_path[PATH_MAX];                /* "" = no policy file: upstream behaviour */
    char shadow_path[PATH_MAX];                /* "" = no shadow policy (shadow.h) */
    unsigned metrics_port;                     /* 0: no HTTP server */
    char metrics_bind[64];                     /* address of the HTTP server (default 127.0.0.1) */
    char admin_token[WZP_ADMIN_TOKEN_MAX + 1]; /* "" = admin actions disabled */
    unsigned drain_timeout_s;                  /* drain: exit at the latest after this */
    char debug_tap[WZP_ROOM_NAME_MAX + 1];     /* room name or "*": log every packet there */
    char event_log[PATH_MAX];                  /* "" = no event log */
    char decision_log[PATH_MAX];               /* "" = no policy decision log */
    char lua_dir[PATH_MAX];                    /* helpers for require() */
    char advertise[WZP_ADVERTISE_MAX + 1];     /* relay address in CallSetup; "" = derived */
    unsigned ring_timeout_s;                   /* direct calls: offer -> answer */
    unsigned call_setup_timeout_s;             /* accept -> call room joined or path report */
    unsigned max_calls;                        /* direct calls ringing or active */
    char auth_url[1024];         /* featherChat validator; "" = no authentication (auth.h) */
    char auth_ca_file[PATH_MAX]; /* CA certificates for an https validator; "" = system's */
    struct wzp_policy_limits policy_limits;
};

struct wzp_worker;
struct wzp_admin;
struct wzp_affinity;

struct wzp_relay {
    struct wzp_config cfg;
    struct wzp_identity identity;
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t priority;
    bool tls_underscore_names; /* the TLS library lets "_signal" through (tls.h, probe) */
    bool auth_global;          /* libcurl's global state is initialised (--auth-url) */
    uint8_t reset_secret[32];  /* stateless reset tokens; derived from the identity seed */
    uint8_t retry_secret[WZP_RETRY_SECRET_LEN]; /* Retry tokens; from the seed as well */
    struct wzp_room_table rooms;
    struct wzp_presence presence; /* registered _signal connections, by fingerprint */
    struct wzp_calls calls;       /* direct calls ringing or active (calls.h) */
    struct wzp_recent recent;     /* refusals of the last minute (worker 0 samples them) */
    char advertise_addr[WZP_ADVERTISE_MAX + 1]; /* relay_addr of CallSetup: --advertise, or
                                                 * derived from the listen address */
    struct wzp_worker **workers;
    unsigned nworkers;
    struct wzp_mesh mesh;   /* every message between workers (one node per worker) */
    struct wzp_quota quota; /* sessions, handshakes, connections against their limits */
    _Atomic bool stopping;
    struct wzp_shdict shared; /* the policies' shared dictionary (kept across reloads) */
    struct wzp_policy_env policy_env;
    /* The shadow policy has its own dictionary and counters: nothing it does reaches the
     * live one. The paths (cfg.policy_path, cfg.shadow_path) change at a promotion, on
     * the main thread; readers on other threads take policy_paths_lock. */
    struct wzp_shdict shadow_shared;
    struct wzp_policy_metrics shadow_metrics;
    struct wzp_policy_env shadow_env;
    pthread_mutex_t policy_paths_lock;
    _Atomic bool promote_requested; /* POST /admin/policy/promote, carried out on SIGHUP */
    _Atomic int64_t shadow_loaded_at;
    struct wzp_policy_metrics policy_metrics; /* wzp.metric counters (kept across reloads) */
    _Atomic uint64_t policy_reloads_ok, policy_reloads_failed;
    _Atomic int64_t policy_loaded_at; /* wall-clock seconds of the running policy's load */
    _Atomic bool draining;            /* new joins refused; exit when the last call ends */
    struct wzp_admin *admin;          /* HTTP metrics/admin server, or NULL */
    /* Room affinity (affinity.h): NULL when off (one worker, --no-room-affinity, or the
     * kernel refused the connection-ID steering program it needs). */
    struct wzp_affinity *affinity;
};

#endif
