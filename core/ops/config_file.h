/*
 * config_file.h - the relay's TOML config file (-c PATH), read into plain settings.
 *
 * Accepts every key of the upstream Rust relay's config (so its files load unchanged),
 * plus this relay's own keys; examples/relay.toml lists and explains them all. Unlike
 * upstream, unknown keys, wrong types and out-of-range values are errors that name the
 * file and line ("relay.toml:12: unknown key 'max_sesions' (did you mean
 * 'max_sessions'?)").
 *
 * Every field has a flag in .set that says whether the file gave it; a field that is not
 * set is zero / NULL and the caller keeps its own default. Command-line flags override
 * what the file sets (upstream appends --probe and --global-room to the file's lists).
 * This module depends on nothing but common.h and toml.h; mapping onto the relay's
 * struct wzp_config is the caller's job.
 *
 * Validation (beyond the type):
 *   listen_addr, remote_relay, probe_targets, peers.url:  "IPv4:PORT" or "[IPv6]:PORT",
 *       IP literals only (as upstream, which parses a Rust SocketAddr); the port is
 *       1..65535 except for listen_addr, where 0 (any port) is also accepted;
 *   metrics_bind: an IPv4 or IPv6 literal without a port;
 *   peers.fingerprint, trusted.fingerprint: 64 hex digits (a SHA-256), colons optional,
 *       any case (compare them after removing colons and lower-casing, as upstream does);
 *   log_level: error|warn|info|debug|trace, log_format: text|json, any case;
 *   strings must be non-empty and contain no NUL; integer ranges are in config_file.c
 *   (they match the command-line flags of the same name).
 */
#ifndef WZP_CONFIG_FILE_H
#define WZP_CONFIG_FILE_H

#include "common.h"

/* Same numbering as enum wzp_log_level in log.h. */
enum wzp_file_log_level {
    WZP_FILE_LOG_ERROR = 0,
    WZP_FILE_LOG_WARN = 1,
    WZP_FILE_LOG_INFO = 2,
    WZP_FILE_LOG_DEBUG = 3,
    WZP_FILE_LOG_TRACE = 4,
};

enum wzp_file_log_format {
    WZP_FILE_LOG_TEXT = 0,
    WZP_FILE_LOG_JSON = 1,
};

/* One [[peers]] entry: an outbound federation link. */
struct wzp_file_peer {
    char *url;         /* "ip:port" */
    char *fingerprint; /* as written (64 hex digits, colons optional) */
    char *label;       /* NULL if not given */
    int line;          /* line of its [[peers]] header */
};

/* One [[trusted]] entry: a relay whose inbound federation is accepted. */
struct wzp_file_trusted {
    char *fingerprint;
    char *label; /* NULL if not given */
    int line;
};

struct wzp_file_config {
    /* Keys of the upstream relay (upstream default in brackets). */
    char *listen_addr;                 /* ["0.0.0.0:4433"] QUIC bind address */
    unsigned max_sessions;             /* [100] room-mode sessions */
    unsigned metrics_port;             /* [off] HTTP metrics port */
    char *auth_url;                    /* [off] featherChat token validation URL */
    unsigned ws_port;                  /* [off] WebSocket bridge port */
    char *static_dir;                  /* [none] served by the WebSocket server */
    char *remote_relay;                /* [none] forward mode target "ip:port" */
    unsigned jitter_target_depth;      /* [50] accepted, unused (as upstream) */
    unsigned jitter_max_depth;         /* [250] accepted, unused (as upstream) */
    enum wzp_file_log_level log_level; /* [info] */
    char **probe_targets;              /* ["ip:port", ...] */
    size_t probe_targets_len;
    bool probe_mesh;       /* [false] */
    bool trunking_enabled; /* [false] */
    char *debug_tap;       /* [none] room name or "*" */
    struct wzp_file_peer *peers;
    size_t peers_len;
    struct wzp_file_trusted *trusted;
    size_t trusted_len;
    char **global_rooms; /* [[global_rooms]] name = ... */
    size_t global_rooms_len;

    /* Keys of this relay. */
    unsigned threads;                  /* worker threads */
    bool room_affinity;                /* [true] serve each room on one worker */
    unsigned max_handshakes;           /* concurrent handshakes */
    unsigned max_connections;          /* concurrent QUIC connections */
    unsigned max_handshakes_per_addr;  /* [32] 0 = no limit */
    unsigned max_connections_per_addr; /* [256] 0 = no limit */
    char *retry;                       /* ["auto"] "always", "off" */
    unsigned join_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned ack_delay_ms;  /* [20] an ACK waits this long for a datagram (--ack-delay) */
    unsigned coalesce_ms;   /* [0] datagrams to a client wait to share a packet (--coalesce) */
    unsigned poll_every_us; /* [100] a worker polls its sockets at most this often (--poll-every) */
    char *identity;         /* identity seed file path */
    char *policy;           /* policy script path */
    char *metrics_bind;     /* [127.0.0.1] IP the metrics server binds */
    char *admin_token;
    char *admin_token_file;
    char *event_log; /* JSONL event log path (upstream: CLI only, key ignored) */
    enum wzp_file_log_format log_format;
    char *advertise;               /* relay address for CallSetup (checked by the relay) */
    unsigned ring_timeout_s;       /* [60] direct call: offer -> answer */
    unsigned call_setup_timeout_s; /* [30] accepted -> call room joined or path reported */
    unsigned max_calls;            /* [4096] direct calls ringing or active */
    char *auth_ca_file;            /* CA certificates for an https:// auth_url */
    char *decision_log;            /* JSONL of every policy decision (decisions.h) */
    char *shadow_policy;           /* a policy compared with the live one (shadow.h) */

    struct {
        bool listen_addr, max_sessions, metrics_port, auth_url, ws_port, static_dir, remote_relay,
            jitter_target_depth, jitter_max_depth, log_level, probe_targets, probe_mesh,
            trunking_enabled, debug_tap, peers, trusted, global_rooms;
        bool threads, room_affinity, max_handshakes, max_connections, max_handshakes_per_addr,
            max_connections_per_addr, retry, admin_token_file, join_timeout_ms, idle_timeout_ms,
            ack_delay_ms, coalesce_ms, poll_every_us, identity, policy, metrics_bind, admin_token,
            event_log, log_format;
        bool advertise, ring_timeout_s, call_setup_timeout_s, max_calls, auth_ca_file, decision_log,
            shadow_policy;
    } set;
};

/*
 * Read, parse and check the file at path into *out (which need not be initialised).
 * Errors: WZP_ENOTFOUND (no such file; upstream then runs on defaults), WZP_EIO (cannot
 * read), WZP_ETOOBIG (over 1 MiB or another parser limit), WZP_EINVAL (syntax, unknown key,
 * wrong type or value), WZP_ENOMEM. err gets "path:line: message" or "path: message".
 * On error *out is left empty (all zero), so wzp_config_file_free() on it is harmless.
 */
int wzp_config_file_load(const char *path, struct wzp_file_config *out, char *err, size_t errlen);

/* The same from text already in memory; name is used in messages in place of a path. */
int wzp_config_file_parse(const char *name, const char *text, size_t len,
                          struct wzp_file_config *out, char *err, size_t errlen);

/* Release everything *cfg owns and zero it. */
void wzp_config_file_free(struct wzp_file_config *cfg);

#endif
