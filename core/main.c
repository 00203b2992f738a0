/*
 * main.c - wzp-relay command line: parse flags, build the relay, start the workers, and
 * turn signals into actions (SIGTERM/SIGINT: close every call and exit 0; SIGUSR1: log
 * counters).
 */
#include "admin.h"
#include "aead.h"
#include "common.h"
#include "config_file.h"
#include "eventlog.h"
#include "log.h"
#include "decisions.h"
#include "policytest.h"
#include "relay.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD                 "main"
#define SHUTDOWN_TIMEOUT_MS 1500

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: wzp-relay [OPTIONS]\n"
        "\n"
        "A WarzonePhone-compatible QUIC media relay. Clients connect over QUIC (ALPN \"wzp\");\n"
        "the TLS server name picks the room; media is forwarded to everyone else in the room.\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE      TOML config file; upstream relay.toml files work unchanged.\n"
        "                         Flags given on the command line override the file\n"
        "  --listen ADDR          UDP address to listen on (default 0.0.0.0:4433;\n"
        "                         IPv6: [::]:4433, which also accepts IPv4)\n"
        "  -i, --identity PATH    relay identity seed file (default ~/.wzp/relay-identity).\n"
        "                         Created with mode 0600 on first start; it fixes the relay's\n"
        "                         fingerprint and TLS certificate across restarts. A corrupt\n"
        "                         file is an error, never replaced.\n"
        "  --threads N            worker threads (default: number of CPUs, max %d)\n"
        "  --no-room-affinity     spread each room's connections over all workers instead of\n"
        "                         serving a room on one worker (see doc/ARCHITECTURE.md)\n"
        "  --max-sessions N       room participants at once, joined or joining (default %d);\n"
        "                         checked before any handshake work is spent on a join\n"
        "  --max-handshakes N     QUIC handshakes in progress at once (default %d)\n"
        "  --max-connections N    QUIC connections of any kind (default %d)\n"
        "  --max-handshakes-per-addr N\n"
        "                         handshakes in progress from one source address (an IPv4\n"
        "                         address or an IPv6 /64; default %d, 0 = no limit)\n"
        "  --max-connections-per-addr N\n"
        "                         connections from one source address (default %d,\n"
        "                         0 = no limit; clients behind one NAT share an address)\n"
        "  --retry MODE           QUIC address validation with Retry: auto (default: when\n"
        "                         handshakes in progress reach a quarter of --max-handshakes,\n"
        "                         or an address half of its own limit), always, or off\n"
        "  --join-timeout MS      time a client has to send CallOffer after the QUIC\n"
        "                         handshake (default %d)\n"
        "  --idle-timeout MS      QUIC idle timeout (default %d; clients ping every 5 s)\n"
        "  --ack-delay MS         how long an ACK to a client waits for a datagram to that\n"
        "                         client to ride on, 0..%d (default %d; 0 = ngtcp2's own\n"
        "                         timing, an ACK-only packet per media packet received)\n"
        "  --coalesce MS          datagrams to one client wait up to MS (0..%d) to share\n"
        "                         a QUIC packet: fewer packets both ways, up to MS more\n"
        "                         latency (default 0: off)\n"
        "  --poll-every US        a worker polls its sockets at most once per US\n"
        "                         microseconds (0..%d): after a short loop iteration it\n"
        "                         sleeps out the rest, so packets arriving meanwhile are\n"
        "                         read together: fewer wake-ups (what that saves depends\n"
        "                         on the host; see doc/OPERATIONS.md), up to US more\n"
        "                         latency (default %d; 0 = read as soon as packets arrive)\n"
        "  --log-level LEVEL      error, warn, info, debug or trace (default info)\n"
        "  --auth-url URL         featherChat token validation: the first signal of every room\n"
        "                         and _signal connection must be an AuthToken, which the relay\n"
        "                         POSTs as {\"token\": ...} to URL (http:// or https://, 5 s\n"
        "                         deadline); the validator's fingerprint then names the\n"
        "                         client. Default: off (no token needed)\n"
        "  --auth-ca-file PATH    PEM CA certificates to verify an https:// validator with\n"
        "                         (default: the system's; certificates are always checked)\n"
        "\n"
        "Direct calls (\"_signal\" connections; see doc/PROTOCOL.md):\n"
        "  --advertise ADDR       relay address told to both parties of an accepted call\n"
        "                         (IP:PORT, [IPv6]:PORT, or an IP with the listen port).\n"
        "                         Default: the listen address, or when that is 0.0.0.0 / ::\n"
        "                         the address of the interface towards the Internet; set it\n"
        "                         when clients reach the relay through NAT\n"
        "  --ring-timeout SEC     a call not answered within this is ended, both parties\n"
        "                         told Hangup{Timeout} (default %d)\n"
        "  --call-setup-timeout SEC\n"
        "                         an accepted call whose parties neither join the call room\n"
        "                         nor report a media path within this is ended (default %d)\n"
        "  --max-calls N          direct calls ringing or active at once (default %d; each\n"
        "                         client takes part in at most %d)\n"
        "\n"
        "Operations:\n"
        "  --metrics-port N       serve /metrics, /health, /ready, /rooms and /admin/* over\n"
        "                         HTTP on this TCP port (default: off)\n"
        "  --metrics-bind ADDR    address of that server (default 127.0.0.1)\n"
        "  --admin-token-file PATH\n"
        "                         file holding the bearer token for POST /admin/kick,\n"
        "                         /admin/drain, /admin/reload (printable ASCII, at most %d\n"
        "                         characters; keep the file mode 0600). Also: the\n"
        "                         WZP_ADMIN_TOKEN environment variable, or --admin-token\n"
        "                         TOKEN (visible to local users in ps). Default: none,\n"
        "                         admin actions disabled\n"
        "  --event-log PATH       append JSON lines for joins, leaves, refusals, tier changes,\n"
        "                         reloads and drains (reopened on SIGHUP, for log rotation)\n"
        "  --log-format FORMAT    text (default) or json (one JSON object per line)\n"
        "  --debug-tap ROOM       log every media packet and signal of ROOM (\"*\": all rooms)\n"
        "  --drain-timeout SEC    after a drain starts (SIGUSR2 or /admin/drain), exit when\n"
        "                         the last call ends or after this long (default %d)\n"
        "\n"
        "Policy (LuaJIT; see doc/POLICY.md):\n"
        "  -s, --script FILE      operator policy (default: policies/default.lua next to the\n"
        "                         relay, which keeps upstream's behaviour). \"none\": no policy\n"
        "  --check FILE           load and self-check a policy, print what it defines, exit\n"
        "                         (0 = OK, 1 = error with file:line)\n"
        "  --test-policy FILE TESTS\n"
        "                         run the policy tests in TESTS (Lua) against FILE with\n"
        "                         synthetic rooms and clock, no network; prints one line per\n"
        "                         test and \"N passed, N failed\" (exit 0 = all passed,\n"
        "                         1 = some failed, 2 = a file does not load)\n"
        "  --decision-log PATH    append every policy decision (the hook, what it saw, the\n"
        "                         decision, the policy file's hash) as JSON lines; reopened\n"
        "                         on SIGHUP\n"
        "  --shadow-policy FILE   a second policy asked after the live one, whose decisions\n"
        "                         are only compared and counted, never applied; reloaded\n"
        "                         with SIGHUP; POST /admin/policy/promote makes it live\n"
        "  --replay LOG -s FILE   replay a decision log against policy FILE with the recorded\n"
        "                         clock and print every decision that would change (exit 0 =\n"
        "                         none, 1 = some, 2 = a file cannot be read or FILE does not\n"
        "                         load)\n"
        "  --policy-budget-ms N   time budget per hook call (default %d)\n"
        "  --policy-memory-mb N   memory cap per Lua state, one per worker (default %d)\n"
        "  --policy-unsafe        give policies io, os, ffi and debug (off: sandboxed)\n"
        "  --policy-jit           run policies with the JIT on (faster; time budgets then miss\n"
        "                         compiled loops)\n"
        "  --lua-dir DIR          directory of Lua helpers for require (default: lua/ next to\n"
        "                         the relay)\n"
        "  -V, --version          print the version and build hash, then exit\n"
        "  -h, --help             print this help, then exit\n"
        "\n"
        "Signals: SIGTERM/SIGINT close every connection (application code 0) and exit 0;\n"
        "SIGHUP reloads the policy (the running one stays if the new one fails to load);\n"
        "SIGUSR2 starts a drain (new joins refused, exit when the last call ends);\n"
        "SIGUSR1 logs the relay's counters.\n"
        "\n"
        "Environment: WZP_AEAD=gnutls protects 1-RTT packets with GnuTLS (AES-GCM and header\n"
        "protection) instead of the relay's own code (which needs AES-NI; the start-up log\n"
        "says which one runs).\n",
        WZP_MAX_WORKERS, WZP_DEFAULT_MAX_SESSIONS, WZP_DEFAULT_MAX_HANDSHAKES,
        WZP_DEFAULT_MAX_CONNECTIONS, WZP_DEFAULT_MAX_HANDSHAKES_PER_ADDR,
        WZP_DEFAULT_MAX_CONNECTIONS_PER_ADDR, WZP_DEFAULT_JOIN_TIMEOUT_MS,
        WZP_DEFAULT_IDLE_TIMEOUT_MS, WZP_MAX_ACK_DELAY_MS, WZP_DEFAULT_ACK_DELAY_MS,
        WZP_MAX_COALESCE_MS, WZP_MAX_POLL_EVERY_US, WZP_DEFAULT_POLL_EVERY_US,
        WZP_DEFAULT_RING_TIMEOUT_S, WZP_DEFAULT_CALL_SETUP_TIMEOUT_S, WZP_DEFAULT_MAX_CALLS,
        WZP_CALLS_PER_PARTY, WZP_ADMIN_TOKEN_MAX, WZP_DEFAULT_DRAIN_TIMEOUT_S,
        WZP_POLICY_DEFAULT_BUDGET_MS, WZP_POLICY_DEFAULT_MEMORY_MB);
}

/* --auth-url / auth_url: an http:// or https:// URL of the featherChat validator. */
static int set_auth_url(struct wzp_config *cfg, const char *url, const char *where)
{
    if ((strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) ||
        strlen(url) >= sizeof cfg->auth_url || strpbrk(url, " \t\r\n")) {
        fprintf(stderr,
                "wzp-relay: %s: the featherChat validator must be an http:// or https:// URL "
                "(at most %zu characters, no spaces), got \"%s\"\n",
                where, sizeof cfg->auth_url - 1, url);
        return -1;
    }
    snprintf(cfg->auth_url, sizeof cfg->auth_url, "%s", url);
    return 0;
}

/* --auth-ca-file / auth_ca_file: a readable file of PEM CA certificates. */
static int set_auth_ca_file(struct wzp_config *cfg, const char *path, const char *where)
{
    if (access(path, R_OK) != 0 || strlen(path) >= sizeof cfg->auth_ca_file) {
        fprintf(stderr, "wzp-relay: %s: cannot read the CA file \"%s\" (%s)\n", where, path,
                strerror(errno));
        return -1;
    }
    snprintf(cfg->auth_ca_file, sizeof cfg->auth_ca_file, "%s", path);
    return 0;
}

static int parse_uint(const char *flag, const char *text, unsigned min, unsigned max, unsigned *out)
{
    unsigned long v;
    if (!wzp_parse_uint(text, min, max, &v)) {
        fprintf(stderr, "wzp-relay: %s expects a number from %u to %u, got \"%s\"\n", flag, min,
                max, text);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

enum {
    OPT_LISTEN = 256,
    OPT_THREADS,
    OPT_MAX_SESSIONS,
    OPT_MAX_HANDSHAKES,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_HANDSHAKES_PER_ADDR,
    OPT_MAX_CONNECTIONS_PER_ADDR,
    OPT_RETRY,
    OPT_JOIN_TIMEOUT,
    OPT_ADVERTISE,
    OPT_AUTH_URL,
    OPT_AUTH_CA_FILE,
    OPT_RING_TIMEOUT,
    OPT_CALL_SETUP_TIMEOUT,
    OPT_MAX_CALLS,
    OPT_IDLE_TIMEOUT,
    OPT_ACK_DELAY,
    OPT_POLL_EVERY,
    OPT_COALESCE,
    OPT_LOG_LEVEL,
    OPT_CHECK,
    OPT_TEST_POLICY,
    OPT_DECISION_LOG,
    OPT_SHADOW_POLICY,
    OPT_REPLAY,
    OPT_POLICY_BUDGET,
    OPT_POLICY_MEMORY,
    OPT_POLICY_UNSAFE,
    OPT_NO_ROOM_AFFINITY,
    OPT_POLICY_JIT,
    OPT_LUA_DIR,
    OPT_METRICS_PORT,
    OPT_METRICS_BIND,
    OPT_ADMIN_TOKEN,
    OPT_ADMIN_TOKEN_FILE,
    OPT_DRAIN_TIMEOUT,
    OPT_EVENT_LOG,
    OPT_LOG_FORMAT,
    OPT_DEBUG_TAP,
};

static char check_path[PATH_MAX];
static char test_policy_path[PATH_MAX], test_file_path[PATH_MAX];
static char replay_path[PATH_MAX];
static bool script_given;

/* Returns 0 to run, 1 to exit 0 (help/version), -1 to exit 2 (usage error). */
static bool token_on_command_line;

static bool is_ip_literal(const char *text)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, text, buf) == 1 || inet_pton(AF_INET6, text, buf) == 1;
}

/* Take an admin token from source (a flag, a file, the environment): non-empty, at most
 * WZP_ADMIN_TOKEN_MAX characters, printable ASCII without spaces (it travels in an HTTP
 * header). Never truncated: a token that does not fit is refused. */
static int set_admin_token(struct wzp_config *cfg, const char *token, const char *source)
{
    size_t n = strlen(token);
    if (n == 0 || n > WZP_ADMIN_TOKEN_MAX) {
        fprintf(stderr,
                "wzp-relay: %s: the admin token must be 1 to %d characters long, not %zu "
                "(a random string of 32 to 64 characters is plenty)\n",
                source, WZP_ADMIN_TOKEN_MAX, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (token[i] < 0x21 || token[i] > 0x7e) {
            fprintf(stderr,
                    "wzp-relay: %s: the admin token may hold only printable ASCII without "
                    "spaces (character %zu is not)\n",
                    source, i + 1);
            return -1;
        }
    memcpy(cfg->admin_token, token, n + 1);
    return 0;
}

/* The admin token from the first line of a file; warns when others may read the file. */
static int read_admin_token_file(struct wzp_config *cfg, const char *path)
{
    /* O_NONBLOCK: a FIFO or a device must not hang the start-up */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "wzp-relay: --admin-token-file %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "wzp-relay: --admin-token-file %s: not a regular file\n", path);
        close(fd);
        return -1;
    }
    char buf[WZP_ADMIN_TOKEN_MAX + 3];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) {
        fprintf(stderr, "wzp-relay: --admin-token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0'; /* the first line */
    if ((size_t)n == sizeof buf - 1 && strlen(buf) == (size_t)n) {
        fprintf(stderr,
                "wzp-relay: --admin-token-file %s: the token is longer than %d characters\n", path,
                WZP_ADMIN_TOKEN_MAX);
        return -1;
    }
    char source[PATH_MAX + 32];
    snprintf(source, sizeof source, "--admin-token-file %s", path);
    if (set_admin_token(cfg, buf, source) != 0)
        return -1;
    if (st.st_mode & 077)
        WZP_WARN(MOD, "admin token file %s is readable by others (mode %04o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
    return 0;
}

static int parse_args(int argc, char **argv, struct wzp_config *cfg)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"config", required_argument, NULL, 'c'},
        {"identity", required_argument, NULL, 'i'},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
        {"max-handshakes", required_argument, NULL, OPT_MAX_HANDSHAKES},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max-handshakes-per-addr", required_argument, NULL, OPT_MAX_HANDSHAKES_PER_ADDR},
        {"max-connections-per-addr", required_argument, NULL, OPT_MAX_CONNECTIONS_PER_ADDR},
        {"retry", required_argument, NULL, OPT_RETRY},
        {"join-timeout", required_argument, NULL, OPT_JOIN_TIMEOUT},
        {"advertise", required_argument, NULL, OPT_ADVERTISE},
        {"auth-url", required_argument, NULL, OPT_AUTH_URL},
        {"auth-ca-file", required_argument, NULL, OPT_AUTH_CA_FILE},
        {"ring-timeout", required_argument, NULL, OPT_RING_TIMEOUT},
        {"call-setup-timeout", required_argument, NULL, OPT_CALL_SETUP_TIMEOUT},
        {"max-calls", required_argument, NULL, OPT_MAX_CALLS},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"ack-delay", required_argument, NULL, OPT_ACK_DELAY},
        {"coalesce", required_argument, NULL, OPT_COALESCE},
        {"poll-every", required_argument, NULL, OPT_POLL_EVERY},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"script", required_argument, NULL, 's'},
        {"check", required_argument, NULL, OPT_CHECK},
        {"test-policy", required_argument, NULL, OPT_TEST_POLICY},
        {"decision-log", required_argument, NULL, OPT_DECISION_LOG},
        {"shadow-policy", required_argument, NULL, OPT_SHADOW_POLICY},
        {"replay", required_argument, NULL, OPT_REPLAY},
        {"policy-budget-ms", required_argument, NULL, OPT_POLICY_BUDGET},
        {"policy-memory-mb", required_argument, NULL, OPT_POLICY_MEMORY},
        {"policy-unsafe", no_argument, NULL, OPT_POLICY_UNSAFE},
        {"no-room-affinity", no_argument, NULL, OPT_NO_ROOM_AFFINITY},
        {"policy-jit", no_argument, NULL, OPT_POLICY_JIT},
        {"lua-dir", required_argument, NULL, OPT_LUA_DIR},
        {"metrics-port", required_argument, NULL, OPT_METRICS_PORT},
        {"metrics-bind", required_argument, NULL, OPT_METRICS_BIND},
        {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
        {"admin-token-file", required_argument, NULL, OPT_ADMIN_TOKEN_FILE},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
        {"event-log", required_argument, NULL, OPT_EVENT_LOG},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"debug-tap", required_argument, NULL, OPT_DEBUG_TAP},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch, lvl;
    unsigned mb;
    while ((ch = getopt_long(argc, argv, "c:i:s:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_LISTEN:
            if (wzp_config_set_listen(cfg, optarg) != WZP_OK) {
                fprintf(stderr, "wzp-relay: --listen expects IP:PORT or [IPv6]:PORT, got \"%s\"\n",
                        optarg);
                return -1;
            }
            break;
        case 'i':
            snprintf(cfg->identity_path, sizeof cfg->identity_path, "%s", optarg);
            break;
        case OPT_THREADS:
            if (parse_uint("--threads", optarg, 1, WZP_MAX_WORKERS, &cfg->threads))
                return -1;
            break;
        case OPT_MAX_SESSIONS:
            if (parse_uint("--max-sessions", optarg, 1, 1000000, &cfg->max_sessions))
                return -1;
            break;
        case OPT_MAX_HANDSHAKES:
            if (parse_uint("--max-handshakes", optarg, 1, 1000000, &cfg->max_handshakes))
                return -1;
            break;
        case OPT_MAX_CONNECTIONS:
            if (parse_uint("--max-connections", optarg, 1, 10000000, &cfg->max_connections))
                return -1;
            break;
        case OPT_MAX_HANDSHAKES_PER_ADDR:
            if (parse_uint("--max-handshakes-per-addr", optarg, 0, 1000000,
                           &cfg->max_handshakes_per_addr))
                return -1;
            break;
        case OPT_MAX_CONNECTIONS_PER_ADDR:
            if (parse_uint("--max-connections-per-addr", optarg, 0, 10000000,
                           &cfg->max_connections_per_addr))
                return -1;
            break;
        case OPT_RETRY:
            if (wzp_retry_mode_parse(optarg, &cfg->retry) != WZP_OK) {
                fprintf(stderr, "wzp-relay: --retry expects auto, always or off, got \"%s\"\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_JOIN_TIMEOUT:
            if (parse_uint("--join-timeout", optarg, 100, 600000, &cfg->join_timeout_ms))
                return -1;
            break;
        case OPT_ADVERTISE:
            if (wzp_config_set_advertise(cfg, optarg) != WZP_OK) {
                fprintf(stderr,
                        "wzp-relay: --advertise expects IP:PORT, [IPv6]:PORT or an IP address "
                        "(clients are told an address, not a host name), got \"%s\"\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_AUTH_URL:
            if (set_auth_url(cfg, optarg, "--auth-url") != 0)
                return -1;
            break;
        case OPT_AUTH_CA_FILE:
            if (set_auth_ca_file(cfg, optarg, "--auth-ca-file") != 0)
                return -1;
            break;
        case OPT_RING_TIMEOUT:
            if (parse_uint("--ring-timeout", optarg, 1, 600, &cfg->ring_timeout_s))
                return -1;
            break;
        case OPT_CALL_SETUP_TIMEOUT:
            if (parse_uint("--call-setup-timeout", optarg, 1, 600, &cfg->call_setup_timeout_s))
                return -1;
            break;
        case OPT_MAX_CALLS:
            if (parse_uint("--max-calls", optarg, 1, 1000000, &cfg->max_calls))
                return -1;
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_uint("--idle-timeout", optarg, 1000, 600000, &cfg->idle_timeout_ms))
                return -1;
            break;
        case OPT_ACK_DELAY:
            if (parse_uint("--ack-delay", optarg, 0, WZP_MAX_ACK_DELAY_MS, &cfg->ack_delay_ms))
                return -1;
            break;
        case OPT_COALESCE:
            if (parse_uint("--coalesce", optarg, 0, WZP_MAX_COALESCE_MS, &cfg->coalesce_ms))
                return -1;
            break;
        case OPT_POLL_EVERY:
            if (parse_uint("--poll-every", optarg, 0, WZP_MAX_POLL_EVERY_US, &cfg->poll_every_us))
                return -1;
            break;
        case OPT_LOG_LEVEL:
            lvl = wzp_log_parse_level(optarg);
            if (lvl < 0) {
                fprintf(stderr,
                        "wzp-relay: --log-level expects error, warn, info, debug or "
                        "trace, got \"%s\"\n",
                        optarg);
                return -1;
            }
            wzp_log_threshold = lvl;
            break;
        case 'c':
            break; /* read before the other flags: see apply_config_file */
        case 's':
            script_given = true;
            snprintf(cfg->policy_path, sizeof cfg->policy_path, "%s",
                     strcmp(optarg, "none") == 0 ? "" : optarg);
            break;
        case OPT_CHECK:
            snprintf(check_path, sizeof check_path, "%s", optarg);
            break;
        case OPT_DECISION_LOG:
            snprintf(cfg->decision_log, sizeof cfg->decision_log, "%s", optarg);
            break;
        case OPT_SHADOW_POLICY:
            snprintf(cfg->shadow_path, sizeof cfg->shadow_path, "%s", optarg);
            break;
        case OPT_REPLAY:
            snprintf(replay_path, sizeof replay_path, "%s", optarg);
            break;
        case OPT_TEST_POLICY:
            snprintf(test_policy_path, sizeof test_policy_path, "%s", optarg);
            break;
        case OPT_POLICY_BUDGET:
            if (parse_uint("--policy-budget-ms", optarg, 1, 60000, &cfg->policy_limits.budget_ms))
                return -1;
            break;
        case OPT_POLICY_MEMORY:
            if (parse_uint("--policy-memory-mb", optarg, 1, 65536, &mb))
                return -1;
            cfg->policy_limits.memory_bytes = (size_t)mb << 20;
            break;
        case OPT_POLICY_UNSAFE:
            cfg->policy_limits.unsafe = true;
            break;
        case OPT_NO_ROOM_AFFINITY:
            cfg->no_room_affinity = true;
            break;
        case OPT_POLICY_JIT:
            cfg->policy_limits.jit = true;
            break;
        case OPT_METRICS_PORT:
            if (parse_uint("--metrics-port", optarg, 1, 65535, &cfg->metrics_port))
                return -1;
            break;
        case OPT_METRICS_BIND:
            if (!is_ip_literal(optarg) || strlen(optarg) >= sizeof cfg->metrics_bind) {
                fprintf(stderr,
                        "wzp-relay: --metrics-bind expects an IP address such as 127.0.0.1 or "
                        "::1 (not a host name), got \"%s\"\n",
                        optarg);
                return -1;
            }
            snprintf(cfg->metrics_bind, sizeof cfg->metrics_bind, "%s", optarg);
            break;
        case OPT_ADMIN_TOKEN:
            if (set_admin_token(cfg, optarg, "--admin-token") != 0)
                return -1;
            token_on_command_line = true;
            break;
        case OPT_ADMIN_TOKEN_FILE:
            if (read_admin_token_file(cfg, optarg) != 0)
                return -1;
            token_on_command_line = false;
            break;
        case OPT_DRAIN_TIMEOUT:
            if (parse_uint("--drain-timeout", optarg, 1, 86400, &cfg->drain_timeout_s))
                return -1;
            break;
        case OPT_EVENT_LOG:
            snprintf(cfg->event_log, sizeof cfg->event_log, "%s", optarg);
            break;
        case OPT_LOG_FORMAT:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "wzp-relay: --log-format expects text or json, got \"%s\"\n",
                        optarg);
                return -1;
            }
            wzp_log_json = strcmp(optarg, "json") == 0;
            break;
        case OPT_DEBUG_TAP:
            snprintf(cfg->debug_tap, sizeof cfg->debug_tap, "%s", optarg);
            break;
        case OPT_LUA_DIR:
            snprintf(cfg->lua_dir, sizeof cfg->lua_dir, "%s", optarg);
            break;
        case 'V':
            printf("wzp-relay %s (build %s)\n", WZP_VERSION, WZP_BUILD_HASH);
            return 1;
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "Try 'wzp-relay --help' for the list of options.\n");
            return -1;
        }
    }
    if (test_policy_path[0]) {
        /* --test-policy FILE TESTS: TESTS is the one operand */
        if (optind != argc - 1) {
            fprintf(stderr, "wzp-relay: --test-policy expects a policy file and a test file\n");
            return -1;
        }
        snprintf(test_file_path, sizeof test_file_path, "%s", argv[optind++]);
    }
    if (optind < argc) {
        fprintf(stderr, "wzp-relay: unexpected argument \"%s\"; try --help\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* The first of these that exists: <dir of the executable>/../<name> (a build or source
 * tree), <dir of the executable>/../share/wzp-relay/<name> (an installed relay), the
 * source tree's. */
static void find_beside_relay(const char *name, const char *file, char *out, size_t outlen)
{
    char exe[PATH_MAX / 2];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = '\0';
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            static const char *const under[] = {"", "share/wzp-relay/"};
            for (size_t i = 0; i < WZP_ARRAY_LEN(under); i++) {
                snprintf(out, outlen, "%s/../%s%s%s", exe, under[i], name, file);
                char canon[PATH_MAX];
                if (realpath(out, canon)) {
                    snprintf(out, outlen, "%s", canon);
                    return;
                }
            }
        }
    }
    snprintf(out, outlen, "%s/%s%s", WZP_SOURCE_DIR, name, file);
    if (access(out, R_OK) != 0)
        out[0] = '\0';
}

/* --check FILE: load and self-check a policy without starting the relay. */
static int check_policy(const struct wzp_config *cfg)
{
    struct wzp_shdict shared;
    wzp_shdict_init(&shared, WZP_SHARED_MAX_KEYS, WZP_SHARED_MAX_BYTES);
    static struct wzp_policy_metrics metrics;
    wzp_policy_metrics_init(&metrics);
    struct wzp_policy_env env = {
        .shared = &shared, .lua_dir = cfg->lua_dir[0] ? cfg->lua_dir : NULL, .metrics = &metrics};
    struct wzp_policy *p;
    char err[1024];
    int rv = wzp_policy_load(&p, check_path, &cfg->policy_limits, &env, err, sizeof err);
    if (rv == WZP_OK) {
        char desc[512];
        wzp_policy_describe(p, desc, sizeof desc);
        printf("policy OK: %s\n", desc);
        wzp_policy_free(p);
    } else {
        fprintf(stderr, "policy error: %s\n", err);
    }
    wzp_shdict_destroy(&shared);
    return rv == WZP_OK ? 0 : 1;
}

/* --replay LOG -s FILE: what FILE would decide differently from the recorded decisions. */
static int replay(const struct wzp_config *cfg)
{
    if (!script_given || !cfg->policy_path[0]) {
        fprintf(stderr, "wzp-relay: --replay needs the candidate policy: -s FILE\n");
        return 2;
    }
    struct wzp_shdict shared;
    wzp_shdict_init(&shared, WZP_SHARED_MAX_KEYS, WZP_SHARED_MAX_BYTES);
    static struct wzp_policy_metrics metrics;
    wzp_policy_metrics_init(&metrics);
    struct wzp_policy_env env = {
        .shared = &shared, .lua_dir = cfg->lua_dir[0] ? cfg->lua_dir : NULL, .metrics = &metrics};
    char err[1024] = "";
    int rv = wzp_decisions_replay(replay_path, cfg->policy_path, &cfg->policy_limits, &env, stdout,
                                  err, sizeof err);
    if (rv == 2)
        fprintf(stderr, "wzp-relay: replay: %s\n", err);
    wzp_shdict_destroy(&shared);
    return rv;
}

static void start_drain(struct wzp_relay *r, uint64_t *deadline_ms)
{
    if (atomic_exchange(&r->draining, true))
        return;
    *deadline_ms = wzp_now_ns() / 1000000 + (uint64_t)r->cfg.drain_timeout_s * 1000;
    struct wzp_event ev;
    wzp_event_begin(&ev, "drain");
    wzp_event_int(&ev, "sessions", (long long)wzp_quota_sessions(&r->quota));
    wzp_event_emit(&ev);
    WZP_INFO(MOD,
             "draining: new joins are refused; %u session%s left; exiting when the last "
             "call ends or in %u s",
             wzp_quota_sessions(&r->quota), wzp_quota_sessions(&r->quota) == 1 ? "" : "s",
             r->cfg.drain_timeout_s);
}

/* Serve signals until one says stop (or a drain completes). */
#define IDLE_TRIM_MS 10000

/*
 * Give freed memory back to the system once the relay has had no connection for
 * IDLE_TRIM_MS: glibc keeps what the workers freed in their arenas, so after a busy hour
 * the RSS would stay at its peak however quiet the relay became. Once per idle period.
 */
static void trim_when_idle(struct wzp_relay *r, uint64_t *idle_since_ms, bool *trimmed)
{
    uint64_t now = wzp_now_ns() / 1000000;
    if (wzp_quota_connections(&r->quota) != 0) {
        *idle_since_ms = 0;
        *trimmed = false;
        return;
    }
    if (!*idle_since_ms)
        *idle_since_ms = now;
    if (!*trimmed && now - *idle_since_ms >= IDLE_TRIM_MS) {
        malloc_trim(0);
        *trimmed = true;
        WZP_DEBUG(MOD, "idle for %u s: freed memory handed back to the system",
                  IDLE_TRIM_MS / 1000);
    }
}

/* Name a worker in the log when its loop stops going round, and again when it is back
 * (/health and /ready say the same; stuck[] remembers what was logged). */
static void watch_workers(struct wzp_relay *r, bool *stuck)
{
    uint64_t now = wzp_now_ns();
    for (unsigned i = 0; i < r->nworkers; i++) {
        double age = wzp_worker_loop_age(r->workers[i], now);
        if (!stuck[i] && age >= WZP_WORKER_STUCK_S) {
            stuck[i] = true;
            WZP_ERROR(MOD,
                      "worker %u has not run its loop for %.0f s: its calls get no media "
                      "(a policy blocked in a long C call? a deadlock?); /health says 503",
                      i, age);
        } else if (stuck[i] && age < 2.0) {
            stuck[i] = false;
            WZP_WARN(MOD, "worker %u runs its loop again", i);
        }
    }
}

static void wait_for_signals(struct wzp_relay *r, const sigset_t *set)
{
    uint64_t drain_deadline_ms = 0, idle_since_ms = 0;
    bool trimmed = false, stuck[WZP_MAX_WORKERS] = {false};
    for (;;) {
        struct timespec tick = {0, 200 * 1000000L};
        int sig = sigtimedwait(set, NULL, &tick);
        trim_when_idle(r, &idle_since_ms, &trimmed);
        watch_workers(r, stuck);
        if (atomic_load(&r->draining)) {
            if (wzp_quota_sessions(&r->quota) == 0) {
                WZP_INFO(MOD, "drain complete: no call left");
                return;
            }
            if (wzp_now_ns() / 1000000 >= drain_deadline_ms) {
                WZP_INFO(MOD, "drain deadline reached with %u session(s) left",
                         wzp_quota_sessions(&r->quota));
                return;
            }
        }
        if (sig < 0)
            continue;
        if (sig == SIGUSR1) {
            wzp_relay_log_stats(r);
        } else if (sig == SIGUSR2) {
            start_drain(r, &drain_deadline_ms);
        } else if (sig == SIGHUP) {
            char err[512];
            if (wzp_eventlog_reopen(err, sizeof err) != WZP_OK)
                WZP_ERROR(MOD, "SIGHUP: %s; events are not logged until the next SIGHUP", err);
            if (wzp_linelog_reopen(&wzp_decision_log, err, sizeof err) != WZP_OK)
                WZP_ERROR(MOD, "SIGHUP: %s; decisions are not logged until the next SIGHUP", err);
            if (atomic_exchange(&r->promote_requested, false))
                wzp_relay_promote_shadow(r); /* POST /admin/policy/promote */
            else
                wzp_relay_reload_policy(r);
        } else {
            WZP_INFO(MOD, "%s: closing every connection and exiting",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return;
        }
    }
}

/* Upstream keys this relay accepts but does not act on yet: said once, at start. */
static void warn_unimplemented(const char *path, const struct wzp_file_config *f)
{
    struct {
        bool set;
        const char *key, *what;
    } keys[] = {
        {f->set.ws_port || f->set.static_dir, "ws_port/static_dir", "the WebSocket bridge"},
        {f->set.remote_relay, "remote_relay", "forward mode"},
        {f->set.probe_targets || f->set.probe_mesh, "probe_targets/probe_mesh", "relay probes"},
        {f->set.trunking_enabled && f->trunking_enabled, "trunking_enabled",
         "trunking (upstream's trunk frames cannot be decoded by clients)"},
        {f->set.peers || f->set.trusted || f->set.global_rooms, "peers/trusted/global_rooms",
         "federation"},
    };
    for (size_t i = 0; i < WZP_ARRAY_LEN(keys); i++)
        if (keys[i].set)
            WZP_WARN(MOD, "%s: %s is accepted but ignored: %s is not implemented yet", path,
                     keys[i].key, keys[i].what);
}

/* Copy what the file sets into cfg; flags parsed afterwards override it. */
static int apply_file(const char *path, const struct wzp_file_config *f, struct wzp_config *cfg)
{
    if (f->set.auth_url && set_auth_url(cfg, f->auth_url, path) != 0)
        return -1;
    if (f->set.auth_ca_file && set_auth_ca_file(cfg, f->auth_ca_file, path) != 0)
        return -1;
    if (f->set.listen_addr && wzp_config_set_listen(cfg, f->listen_addr) != WZP_OK) {
        fprintf(stderr, "wzp-relay: %s: listen_addr \"%s\" is not IP:PORT\n", path, f->listen_addr);
        return -1;
    }
#define COPY_UINT(key, field)                                                                      \
    if (f->set.key)                                                                                \
        cfg->field = f->key;
    COPY_UINT(max_sessions, max_sessions)
    COPY_UINT(metrics_port, metrics_port)
    COPY_UINT(threads, threads)
    if (f->set.room_affinity)
        cfg->no_room_affinity = !f->room_affinity;
    COPY_UINT(max_handshakes, max_handshakes)
    COPY_UINT(max_connections, max_connections)
    COPY_UINT(max_handshakes_per_addr, max_handshakes_per_addr)
    COPY_UINT(max_connections_per_addr, max_connections_per_addr)
    if (f->set.retry && wzp_retry_mode_parse(f->retry, &cfg->retry) != WZP_OK) {
        fprintf(stderr, "wzp-relay: %s: retry \"%s\" is not auto, always or off\n", path, f->retry);
        return -1;
    }
    COPY_UINT(join_timeout_ms, join_timeout_ms)
    COPY_UINT(idle_timeout_ms, idle_timeout_ms)
    COPY_UINT(ack_delay_ms, ack_delay_ms)
    COPY_UINT(coalesce_ms, coalesce_ms)
    COPY_UINT(poll_every_us, poll_every_us)
    COPY_UINT(ring_timeout_s, ring_timeout_s)
    COPY_UINT(call_setup_timeout_s, call_setup_timeout_s)
    COPY_UINT(max_calls, max_calls)
#undef COPY_UINT
    if (f->set.advertise && wzp_config_set_advertise(cfg, f->advertise) != WZP_OK) {
        fprintf(stderr,
                "wzp-relay: %s: advertise \"%s\" is not IP:PORT, [IPv6]:PORT or an IP address\n",
                path, f->advertise);
        return -1;
    }
    if (f->set.identity)
        snprintf(cfg->identity_path, sizeof cfg->identity_path, "%s", f->identity);
    if (f->set.metrics_bind)
        snprintf(cfg->metrics_bind, sizeof cfg->metrics_bind, "%s", f->metrics_bind);
    if (f->set.admin_token && set_admin_token(cfg, f->admin_token, path) != 0)
        return -1;
    if (f->set.admin_token_file && read_admin_token_file(cfg, f->admin_token_file) != 0)
        return -1;
    if (f->set.policy) {
        script_given = true;
        snprintf(cfg->policy_path, sizeof cfg->policy_path, "%s",
                 strcmp(f->policy, "none") == 0 ? "" : f->policy);
    }
    if (f->set.log_level)
        wzp_log_threshold = (int)f->log_level;
    if (f->set.log_format)
        wzp_log_json = f->log_format == WZP_FILE_LOG_JSON;
    if (f->set.event_log)
        snprintf(cfg->event_log, sizeof cfg->event_log, "%s", f->event_log);
    if (f->set.shadow_policy)
        snprintf(cfg->shadow_path, sizeof cfg->shadow_path, "%s", f->shadow_policy);
    if (f->set.decision_log)
        snprintf(cfg->decision_log, sizeof cfg->decision_log, "%s", f->decision_log);
    if (f->set.debug_tap)
        snprintf(cfg->debug_tap, sizeof cfg->debug_tap, "%s", f->debug_tap);
    return 0;
}

/* -c FILE is read before the other flags so that flags override the file. */
static int apply_config_file(int argc, char **argv, struct wzp_config *cfg)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--") == 0)
            break;
    }
    if (!path)
        return 0;
    struct wzp_file_config f;
    char err[512];
    int rv = wzp_config_file_load(path, &f, err, sizeof err);
    if (rv == WZP_ENOTFOUND) {
        fprintf(stderr,
                "wzp-relay: config file %s does not exist (examples/relay.toml is a "
                "commented example to start from)\n",
                path);
        return -1;
    }
    if (rv != WZP_OK) {
        fprintf(stderr, "wzp-relay: %s\n", err);
        return -1;
    }
    rv = apply_file(path, &f, cfg);
    if (rv == 0)
        warn_unimplemented(path, &f);
    wzp_config_file_free(&f);
    return rv;
}

int main(int argc, char **argv)
{
    struct wzp_config cfg;
    wzp_config_defaults(&cfg);
    if (apply_config_file(argc, argv, &cfg) != 0)
        return 2;
    int prv = parse_args(argc, argv, &cfg);
    if (prv)
        return prv > 0 ? 0 : 2;
    const char *env_token = getenv("WZP_ADMIN_TOKEN");
    if (!cfg.admin_token[0] && env_token && set_admin_token(&cfg, env_token, "WZP_ADMIN_TOKEN"))
        return 2;
    if (!cfg.lua_dir[0])
        find_beside_relay("lua", "", cfg.lua_dir, sizeof cfg.lua_dir);
    if (check_path[0])
        return check_policy(&cfg);
    if (replay_path[0])
        return replay(&cfg);
    if (test_policy_path[0])
        return wzp_policytest_run(test_policy_path, test_file_path, &cfg.policy_limits,
                                  cfg.lua_dir[0] ? cfg.lua_dir : NULL, WZP_POLICYTEST_BUDGET_MS,
                                  stdout, stderr);
    if (!script_given)
        find_beside_relay("policies", "/default.lua", cfg.policy_path, sizeof cfg.policy_path);

    /* Workers inherit this mask; only the main thread takes signals, via sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    static struct wzp_relay relay;
    char err[512] = "";
    if (cfg.event_log[0] && wzp_eventlog_open(cfg.event_log, err, sizeof err) != WZP_OK) {
        WZP_ERROR(MOD, "cannot start: %s", err);
        return 1;
    }
    if (cfg.decision_log[0] &&
        wzp_linelog_open(&wzp_decision_log, cfg.decision_log, err, sizeof err) != WZP_OK) {
        WZP_ERROR(MOD, "cannot start: %s", err);
        return 1;
    }
    if (wzp_relay_init(&relay, &cfg, err, sizeof err) != WZP_OK) {
        WZP_ERROR(MOD, "cannot start: %s", err);
        wzp_relay_free(&relay);
        return 1;
    }
    WZP_INFO(MOD, "wzp-relay %s (build %s) listening on udp %s with %u worker%s", WZP_VERSION,
             WZP_BUILD_HASH, relay.cfg.listen, relay.nworkers, relay.nworkers == 1 ? "" : "s");
    WZP_INFO(MOD, "identity fingerprint %s (seed %s)", relay.identity.fingerprint,
             relay.cfg.identity_path);
    WZP_INFO(MOD, "tls certificate fingerprint %s", relay.identity.tls_fingerprint);
    if (relay.tls_underscore_names)
        WZP_INFO(MOD,
                 "tls: %s lets server names with '_' through: reserved names (_signal, "
                 "_probe, _federation) reach the relay, room names may hold '_'",
                 wzp_tls_library());
    else
        WZP_WARN(MOD,
                 "tls: %s refuses server names with '_' (alert 47): WZP clients' _signal "
                 "connections and rooms named with '_' fail in the TLS handshake; build "
                 "against scripts/gnutls/build.sh's GnuTLS (./scripts/bootstrap.sh does)",
                 wzp_tls_library());
    const char *aead_env = getenv("WZP_AEAD");
    if (aead_env && strcmp(aead_env, "gnutls") != 0 && strcmp(aead_env, "own") != 0)
        WZP_WARN(MOD,
                 "WZP_AEAD=%s is not a choice: \"gnutls\" (GnuTLS's packet protection) or \"own\" "
                 "(the default); ignored",
                 aead_env);
    WZP_INFO(MOD, "tls: 1-RTT packet protection: %s", wzp_aead_status());
    WZP_INFO(MOD, "policy: %s",
             relay.cfg.policy_path[0] ? relay.cfg.policy_path : "none (upstream behaviour)");
    WZP_INFO(MOD,
             "limits: max-sessions %u, max-handshakes %u, max-connections %u, "
             "join-timeout %u ms, idle-timeout %u ms; per address: %u handshakes, "
             "%u connections (0 = no limit); retry %s",
             relay.cfg.max_sessions, relay.cfg.max_handshakes, relay.cfg.max_connections,
             relay.cfg.join_timeout_ms, relay.cfg.idle_timeout_ms,
             relay.cfg.max_handshakes_per_addr, relay.cfg.max_connections_per_addr,
             wzp_retry_mode_name(relay.cfg.retry));
    if (relay.cfg.debug_tap[0])
        WZP_INFO(MOD, "debug tap on room %s: every packet is logged", relay.cfg.debug_tap);
    if (wzp_relay_start(&relay) != WZP_OK) {
        WZP_ERROR(MOD, "cannot start worker threads");
        return 1;
    }
    struct wzp_event ev;
    wzp_event_begin(&ev, "start");
    wzp_event_str(&ev, "version", WZP_VERSION);
    wzp_event_str(&ev, "build", WZP_BUILD_HASH);
    wzp_event_str(&ev, "listen", relay.cfg.listen);
    wzp_event_str(&ev, "fingerprint", relay.identity.fingerprint);
    wzp_event_emit(&ev);
    if (relay.cfg.metrics_port) {
        if (wzp_admin_start(&relay.admin, &relay, err, sizeof err) != WZP_OK) {
            WZP_ERROR(MOD, "cannot start: %s", err);
            wzp_relay_stop(&relay, SHUTDOWN_TIMEOUT_MS);
            return 1;
        }
        WZP_INFO(MOD, "metrics and admin on http://%s:%u/ (admin actions %s)",
                 relay.cfg.metrics_bind, relay.cfg.metrics_port,
                 relay.cfg.admin_token[0] ? "need the bearer token" : "disabled");
        if (strcmp(relay.cfg.metrics_bind, "0.0.0.0") == 0 ||
            strcmp(relay.cfg.metrics_bind, "::") == 0)
            WZP_WARN(MOD,
                     "the HTTP server listens on every interface (--metrics-bind %s): "
                     "/metrics and /rooms show participants to anyone who can reach port %u; "
                     "bind it to a private address or firewall it",
                     relay.cfg.metrics_bind, relay.cfg.metrics_port);
        if (token_on_command_line)
            WZP_WARN(MOD, "the admin token was given with --admin-token, where local users can "
                          "read it (ps, /proc); prefer --admin-token-file or WZP_ADMIN_TOKEN");
    }
    wait_for_signals(&relay, &set);
    wzp_admin_stop(relay.admin);
    relay.admin = NULL;
    int rv = wzp_relay_stop(&relay, SHUTDOWN_TIMEOUT_MS);
    wzp_relay_log_stats(&relay);
    if (rv != WZP_OK) {
        WZP_ERROR(MOD, "shutdown timed out; exiting anyway");
        return 1;
    }
    wzp_relay_free(&relay);
    wzp_event_begin(&ev, "stop");
    wzp_event_emit(&ev);
    wzp_eventlog_close();
    WZP_INFO(MOD, "stopped");
    return 0;
}
