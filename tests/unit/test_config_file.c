/* test_config_file.c - the relay config file: upstream files load unchanged, our keys,
 * examples/relay.toml, and every kind of error with its file:line. */
#include "config_file.h"

#include "buf.h"
#include "common.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FP_COLONS                                                                                  \
    "ca:97:81:12:ca:1b:bd:ca:fa:c2:31:b3:9a:23:dc:4d:a7:86:ef:f8:14:7c:4e:72:b9:80:77:85:af:ee:"   \
    "48:bb"
#define FP_PLAIN "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"

/* A config in the upstream relay's format (crates/wzp-relay/src/config.rs) with every key. */
static const char upstream_config[] =
    "# Upstream wzp-relay configuration\n"
    "listen_addr = \"0.0.0.0:4433\"\n"
    "remote_relay = \"203.0.113.7:4433\"\n"
    "max_sessions = 250\n"
    "jitter_target_depth = 50\n"
    "jitter_max_depth = 250\n"
    "log_level = \"info\"\n"
    "auth_url = \"https://chat.example.org/v1/auth/validate\"\n"
    "metrics_port = 9090\n"
    "probe_targets = [\"198.51.100.2:4433\", \"[2001:db8::2]:4433\"]\n"
    "probe_mesh = true\n"
    "trunking_enabled = false\n"
    "ws_port = 8080\n"
    "static_dir = \"/srv/wzp/web\"\n"
    "debug_tap = \"*\"\n"
    "\n"
    "[[peers]]\n"
    "url = \"198.51.100.2:4433\"\n"
    "fingerprint = \"" FP_COLONS "\"\n"
    "label = \"relay-b\"\n"
    "\n"
    "[[peers]]\n"
    "url = \"[2001:db8::2]:4433\"\n"
    "fingerprint = \"" FP_PLAIN "\"\n"
    "\n"
    "[[trusted]]\n"
    "fingerprint = \"" FP_PLAIN "\"\n"
    "label = \"relay-c\"\n"
    "\n"
    "[[global_rooms]]\n"
    "name = \"lobby\"\n"
    "\n"
    "[[global_rooms]]\n"
    "name = \"android-dev\"\n";

static int parse(const char *text, struct wzp_file_config *cfg, char *err, size_t errlen)
{
    return wzp_config_file_parse("relay.toml", text, strlen(text), cfg, err, errlen);
}

static void parse_ok(const char *text, struct wzp_file_config *cfg)
{
    char err[512];
    int rc = parse(text, cfg, err, sizeof err);
    cr_assert_eq(rc, WZP_OK, "%s\n--- input ---\n%s", err, text);
}

/* The load fails with status rc and exactly the message want. */
static void parse_fails_rc(const char *text, int rc, const char *want)
{
    struct wzp_file_config cfg;
    char err[512];
    int got = parse(text, &cfg, err, sizeof err);
    cr_assert_eq(got, rc, "status %d, want %d: %s\n--- input ---\n%s", got, rc, err, text);
    cr_assert_str_eq(err, want, "\n--- input ---\n%s", text);
    struct wzp_file_config zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(memcmp(&cfg, &zero, sizeof cfg), 0, "a failed load leaves the struct empty");
    wzp_config_file_free(&cfg);
}

static void parse_fails(const char *text, const char *want)
{
    parse_fails_rc(text, WZP_EINVAL, want);
}

/* ---- accepted files ---- */

Test(config_file, upstream_config_loads_unchanged)
{
    struct wzp_file_config c;
    parse_ok(upstream_config, &c);
    cr_assert(c.set.listen_addr);
    cr_assert_str_eq(c.listen_addr, "0.0.0.0:4433");
    cr_assert_str_eq(c.remote_relay, "203.0.113.7:4433");
    cr_assert_eq(c.max_sessions, 250);
    cr_assert_eq(c.jitter_target_depth, 50);
    cr_assert_eq(c.jitter_max_depth, 250);
    cr_assert(c.set.log_level);
    cr_assert_eq(c.log_level, WZP_FILE_LOG_INFO);
    cr_assert_str_eq(c.auth_url, "https://chat.example.org/v1/auth/validate");
    cr_assert_eq(c.metrics_port, 9090);
    cr_assert_eq(c.probe_targets_len, 2);
    cr_assert_str_eq(c.probe_targets[0], "198.51.100.2:4433");
    cr_assert_str_eq(c.probe_targets[1], "[2001:db8::2]:4433");
    cr_assert(c.probe_mesh);
    cr_assert(c.set.trunking_enabled);
    cr_assert_not(c.trunking_enabled);
    cr_assert_eq(c.ws_port, 8080);
    cr_assert_str_eq(c.static_dir, "/srv/wzp/web");
    cr_assert_str_eq(c.debug_tap, "*");

    cr_assert(c.set.peers);
    cr_assert_eq(c.peers_len, 2);
    cr_assert_str_eq(c.peers[0].url, "198.51.100.2:4433");
    cr_assert_str_eq(c.peers[0].fingerprint, FP_COLONS);
    cr_assert_str_eq(c.peers[0].label, "relay-b");
    cr_assert_eq(c.peers[0].line, 17);
    cr_assert_str_eq(c.peers[1].url, "[2001:db8::2]:4433");
    cr_assert_str_eq(c.peers[1].fingerprint, FP_PLAIN);
    cr_assert_null(c.peers[1].label);
    cr_assert_eq(c.peers[1].line, 22);
    cr_assert_eq(c.trusted_len, 1);
    cr_assert_str_eq(c.trusted[0].fingerprint, FP_PLAIN);
    cr_assert_str_eq(c.trusted[0].label, "relay-c");
    cr_assert_eq(c.trusted[0].line, 26);
    cr_assert_eq(c.global_rooms_len, 2);
    cr_assert_str_eq(c.global_rooms[0], "lobby");
    cr_assert_str_eq(c.global_rooms[1], "android-dev");

    /* none of our own keys */
    cr_assert_not(c.set.threads || c.set.max_handshakes || c.set.max_connections ||
                  c.set.join_timeout_ms || c.set.idle_timeout_ms || c.set.identity ||
                  c.set.policy || c.set.metrics_bind || c.set.admin_token || c.set.event_log ||
                  c.set.log_format);
    cr_assert_null(c.metrics_bind);
    wzp_config_file_free(&c);
    cr_assert_null(c.peers);
    wzp_config_file_free(&c); /* a second free is harmless */
}

Test(config_file, our_keys)
{
    struct wzp_file_config c;
    parse_ok("threads = 8\n"
             "room_affinity = false\n"
             "max_handshakes = 512\n"
             "max_connections = 20000\n"
             "join_timeout_ms = 5000\n"
             "idle_timeout_ms = 60000\n"
             "poll_every_us = 250\n"
             "identity = \"/var/lib/wzp/id\"\n"
             "policy = \"/etc/wzp/policy.lua\"\n"
             "metrics_bind = \"::1\"\n"
             "admin_token = \"s3cret-token\"\n"
             "event_log = \"/var/log/wzp/events.jsonl\"\n"
             "log_format = \"JSON\"\n",
             &c);
    cr_assert_eq(c.threads, 8);
    cr_assert(c.set.room_affinity);
    cr_assert_not(c.room_affinity);
    cr_assert_eq(c.max_handshakes, 512);
    cr_assert_eq(c.max_connections, 20000);
    cr_assert_eq(c.join_timeout_ms, 5000);
    cr_assert_eq(c.idle_timeout_ms, 60000);
    cr_assert(c.set.poll_every_us);
    cr_assert_eq(c.poll_every_us, 250);
    cr_assert_str_eq(c.identity, "/var/lib/wzp/id");
    cr_assert_str_eq(c.policy, "/etc/wzp/policy.lua");
    cr_assert_str_eq(c.metrics_bind, "::1");
    cr_assert_str_eq(c.admin_token, "s3cret-token");
    cr_assert_str_eq(c.event_log, "/var/log/wzp/events.jsonl");
    cr_assert(c.set.log_format);
    cr_assert_eq(c.log_format, WZP_FILE_LOG_JSON);
    cr_assert(c.set.threads && c.set.identity && c.set.metrics_bind && c.set.admin_token);
    cr_assert_not(c.set.listen_addr || c.set.max_sessions || c.set.peers || c.set.log_level);
    wzp_config_file_free(&c);
}

Test(config_file, empty_file_sets_nothing)
{
    struct wzp_file_config c, zero;
    memset(&zero, 0, sizeof zero);
    parse_ok("# nothing here\n\n", &c);
    cr_assert_eq(memcmp(&c, &zero, sizeof c), 0);
    parse_ok("", &c);
    cr_assert_eq(memcmp(&c, &zero, sizeof c), 0);
}

Test(config_file, log_levels_any_case)
{
    const char *names[] = {"error", "WARN", "Info", "debug", "TRACE"};
    for (int i = 0; i < 5; i++) {
        char text[64];
        struct wzp_file_config c;
        snprintf(text, sizeof text, "log_level = \"%s\"\n", names[i]);
        parse_ok(text, &c);
        cr_assert_eq((int)c.log_level, i);
        wzp_config_file_free(&c);
    }
    struct wzp_file_config c;
    parse_ok("log_format = 'text'\n", &c);
    cr_assert(c.set.log_format);
    cr_assert_eq(c.log_format, WZP_FILE_LOG_TEXT);
}

Test(config_file, addresses_accepted)
{
    struct wzp_file_config c;
    parse_ok("listen_addr = \"[::]:0\"\nremote_relay = \"[fe80::1]:65535\"\n"
             "metrics_bind = \"0.0.0.0\"\nprobe_targets = []\n",
             &c);
    cr_assert_str_eq(c.listen_addr, "[::]:0");
    cr_assert_str_eq(c.remote_relay, "[fe80::1]:65535");
    cr_assert_str_eq(c.metrics_bind, "0.0.0.0");
    cr_assert(c.set.probe_targets);
    cr_assert_eq(c.probe_targets_len, 0);
    cr_assert_null(c.probe_targets);
    wzp_config_file_free(&c);
    parse_ok("listen_addr = \"127.0.0.1:4433\"\npeers = []\n", &c);
    cr_assert(c.set.peers);
    cr_assert_eq(c.peers_len, 0);
    wzp_config_file_free(&c);
}

Test(config_file, fingerprints_any_case_with_or_without_colons)
{
    struct wzp_file_config c;
    parse_ok("[[trusted]]\nfingerprint = \"3E23E8160039594A33894F6564E1B1348BBD7A0088D42C4ACB73EEAE"
             "D59C009D\"\n"
             "[[trusted]]\nfingerprint = \"3e23:e816:0039:594a:3389:4f65:64e1:b134:8bbd:7a00:88d4:"
             "2c4a:cb73:eeae:d59c:009d\"\n",
             &c);
    cr_assert_eq(c.trusted_len, 2);
    cr_assert_null(c.trusted[1].label);
    wzp_config_file_free(&c);
}

/* ---- examples/relay.toml ---- */

static char *read_example(size_t *len)
{
    FILE *f = fopen(WZP_SOURCE_DIR "/examples/relay.toml", "rb");
    cr_assert_not_null(f);
    struct wzp_buf b = WZP_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        cr_assert_eq(wzp_buf_append(&b, chunk, n), WZP_OK);
    fclose(f);
    cr_assert_eq(wzp_buf_append(&b, "", 1), WZP_OK);
    *len = b.len - 1;
    return (char *)b.data;
}

Test(config_file, example_file_loads)
{
    struct wzp_file_config c;
    char err[512];
    int rc = wzp_config_file_load(WZP_SOURCE_DIR "/examples/relay.toml", &c, err, sizeof err);
    cr_assert_eq(rc, WZP_OK, "%s", err);
    cr_assert_str_eq(c.listen_addr, "0.0.0.0:4433");
    cr_assert_eq(c.max_sessions, 100);
    cr_assert_eq(c.log_level, WZP_FILE_LOG_INFO);
    cr_assert_str_eq(c.metrics_bind, "127.0.0.1");
    cr_assert_not(c.set.metrics_port, "metrics_port is commented out");
    cr_assert_not(c.set.peers);
    cr_assert_eq(c.max_handshakes, 256);
    cr_assert_eq(c.max_connections, 10000);
    cr_assert_eq(c.join_timeout_ms, 10000);
    cr_assert_eq(c.idle_timeout_ms, 30000);
    wzp_config_file_free(&c);
}

/* Uncomment every "# key = value" and "# [[section]]" line: all of them must be valid too,
 * and then every key is set. */
Test(config_file, example_file_commented_settings_are_valid)
{
    size_t len;
    char *text = read_example(&len);
    struct wzp_buf out = WZP_BUF_INIT;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        const char *p = line;
        if (strncmp(p, "# ", 2) == 0) {
            size_t word = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz_");
            if (strncmp(p + 2, "[[", 2) == 0 || (word && strncmp(p + 2 + word, " = ", 3) == 0))
                p += 2;
        }
        cr_assert_eq(wzp_buf_printf(&out, "%s\n", p), WZP_OK);
    }
    cr_assert_eq(wzp_buf_append(&out, "", 1), WZP_OK);
    struct wzp_file_config c;
    parse_ok((char *)out.data, &c);
    bool *flags = (bool *)&c.set;
    for (size_t i = 0; i < sizeof c.set / sizeof(bool); i++)
        cr_assert(flags[i], "set flag %zu is false", i);
    cr_assert_eq(c.metrics_port, 9090);
    cr_assert_eq(c.peers_len, 1);
    cr_assert_eq(c.trusted_len, 1);
    cr_assert_eq(c.global_rooms_len, 1);
    cr_assert_str_eq(c.admin_token, "change-me-to-a-long-random-string");
    wzp_config_file_free(&c);
    wzp_buf_free(&out);
    free(text);
}

/* ---- unknown keys ---- */

Test(config_file, unknown_key_did_you_mean)
{
    parse_fails("listen_addr = \"0.0.0.0:4433\"\n\n\n\n\n\n\n\n\n\n\nmax_sesions = 100\n",
                "relay.toml:12: unknown key 'max_sesions' (did you mean 'max_sessions'?)");
    parse_fails("Listen_Addr = \"0.0.0.0:4433\"\n",
                "relay.toml:1: unknown key 'Listen_Addr' (did you mean 'listen_addr'?)");
    parse_fails("trunking_enalbed = true\n",
                "relay.toml:1: unknown key 'trunking_enalbed' (did you mean 'trunking_enabled'?)");
    parse_fails("metrics-port = 9090\n",
                "relay.toml:1: unknown key 'metrics-port' (did you mean 'metrics_port'?)");
    parse_fails("banana = 1\n", "relay.toml:1: unknown key 'banana'");
    parse_fails("[[peers]]\nurl = \"192.0.2.1:4433\"\nfingerprnt = \"" FP_PLAIN "\"\n",
                "relay.toml:3: unknown key 'fingerprnt' in [[peers]] (did you mean "
                "'fingerprint'?)");
    parse_fails("[[global_rooms]]\nnmae = \"x\"\n",
                "relay.toml:2: unknown key 'nmae' in [[global_rooms]] (did you mean 'name'?)");
    parse_fails("a = 1\n[server]\nport = 1\n", "relay.toml:1: unknown key 'a'");
    parse_fails("[server]\nport = 1\n", "relay.toml:1: unknown table [server]");
    parse_fails("[[peer]]\nurl = \"192.0.2.1:4433\"\n",
                "relay.toml:1: unknown table [[peer]] (did you mean 'peers'?)");
    parse_fails("[[peers]]\nurl = \"192.0.2.1:4433\"\nfingerprint = \"" FP_PLAIN "\"\n"
                "[peers.tls]\n",
                "relay.toml:4: unknown table [tls] in [[peers]]");
    parse_fails("\"\\u0007odd\" = 1\n", "relay.toml:1: unknown key '?odd'");
    /* the classic TOML slip: a top-level key written below a [[section]] */
    parse_fails("[[global_rooms]]\nname = \"lobby\"\n\nmax_sessions = 5\n",
                "relay.toml:4: 'max_sessions' is a top-level key, but here it is inside the "
                "[[global_rooms]] section above it: move it before the first [[...]] line");
}

/* ---- wrong types and values ---- */

Test(config_file, wrong_types)
{
    parse_fails("max_sessions = \"100\"\n",
                "relay.toml:1: 'max_sessions' must be an integer, not a string");
    parse_fails("max_sessions = 100.0\n",
                "relay.toml:1: 'max_sessions' must be an integer, not a float");
    parse_fails("listen_addr = 4433\n",
                "relay.toml:1: 'listen_addr' must be a string, not an integer");
    parse_fails("probe_mesh = 1\n", "relay.toml:1: 'probe_mesh' must be true or false, not an "
                                    "integer");
    parse_fails("trunking_enabled = \"yes\"\n",
                "relay.toml:1: 'trunking_enabled' must be true or false, not a string");
    parse_fails("probe_targets = \"192.0.2.1:4433\"\n",
                "relay.toml:1: 'probe_targets' must be an array of \"ip:port\" strings, not a "
                "string");
    parse_fails("probe_targets = [\n  \"192.0.2.1:4433\",\n  4433,\n]\n",
                "relay.toml:3: 'probe_targets' must be a string, not an integer");
    parse_fails("log_level = 3\n", "relay.toml:1: 'log_level' must be a string, not an integer");
    parse_fails("auth_url = [\"x\"]\n", "relay.toml:1: 'auth_url' must be a string, not an array");
    parse_fails("[[trusted]]\nfingerprint = 1\n",
                "relay.toml:2: 'fingerprint' must be a string, not an integer");
}

Test(config_file, peers_sections_misused)
{
    parse_fails("[peers]\nurl = \"192.0.2.1:4433\"\n",
                "relay.toml:1: write [[peers]] (one per entry), not [peers]");
    parse_fails("peers = \"192.0.2.1:4433\"\n",
                "relay.toml:1: 'peers' must be written as [[peers]] sections, not a string");
    parse_fails("global_rooms = [\"lobby\"]\n",
                "relay.toml:1: 'global_rooms' must be written as [[global_rooms]] sections, not "
                "an array");
    parse_fails("[trusted]\n", "relay.toml:1: write [[trusted]] (one per entry), not [trusted]");
}

Test(config_file, ranges)
{
    parse_fails("max_sessions = 0\n", "relay.toml:1: 'max_sessions' must be between 1 and "
                                      "1000000, not 0");
    parse_fails("max_sessions = -5\n",
                "relay.toml:1: 'max_sessions' must be between 1 and 1000000, not -5");
    parse_fails("metrics_port = 0\n",
                "relay.toml:1: 'metrics_port' must be between 1 and 65535, not 0");
    parse_fails("metrics_port = 65536\n",
                "relay.toml:1: 'metrics_port' must be between 1 and 65535, not 65536");
    parse_fails("ws_port = 99999999999\n",
                "relay.toml:1: 'ws_port' must be between 1 and 65535, not 99999999999");
    parse_fails("threads = 65\n", "relay.toml:1: 'threads' must be between 1 and 64, not 65");
    parse_fails("join_timeout_ms = 99\n",
                "relay.toml:1: 'join_timeout_ms' must be between 100 and 600000, not 99");
    parse_fails("poll_every_us = 5001\n",
                "relay.toml:1: 'poll_every_us' must be between 0 and 5000, not 5001");
    parse_fails("idle_timeout_ms = 600001\n",
                "relay.toml:1: 'idle_timeout_ms' must be between 1000 and 600000, not 600001");
    parse_fails("jitter_max_depth = -1\n",
                "relay.toml:1: 'jitter_max_depth' must be between 0 and 1000000, not -1");
    parse_fails("max_connections = 10000001\n", "relay.toml:1: 'max_connections' must be between "
                                                "1 and 10000000, not 10000001");
    struct wzp_file_config c;
    parse_ok("metrics_port = 65535\nws_port = 1\nthreads = 64\njitter_target_depth = 0\n", &c);
    cr_assert_eq(c.metrics_port, 65535);
    cr_assert_eq(c.threads, 64);
    cr_assert(c.set.jitter_target_depth);
    wzp_config_file_free(&c);
}

Test(config_file, bad_addresses)
{
    const char *listen_want = "must be an IP address and port such as \"0.0.0.0:4433\" or "
                              "\"[::]:4433\" (host names are not supported), not ";
    const char *bad[] = {"localhost:4433", "0.0.0.0",      "0.0.0.0:",       "0.0.0.0:65536",
                         "::1:4433",       "[::1]",        "[::1:4433",      "1.2.3:4433",
                         "0.0.0.0:+1",     "0.0.0.0:44a3", "[0.0.0.0]:4433", ":4433"};
    for (size_t i = 0; i < WZP_ARRAY_LEN(bad); i++) {
        char text[128], want[256];
        snprintf(text, sizeof text, "\nlisten_addr = \"%s\"\n", bad[i]);
        snprintf(want, sizeof want, "relay.toml:2: 'listen_addr' %s\"%s\"", listen_want, bad[i]);
        parse_fails(text, want);
    }
    parse_fails("remote_relay = \"192.0.2.1:0\"\n",
                "relay.toml:1: 'remote_relay' must be an IP address and port such as "
                "\"192.0.2.1:4433\" or \"[2001:db8::1]:4433\" (host names are not supported), "
                "not \"192.0.2.1:0\"");
    parse_fails("[[peers]]\nurl = \"relay-b.example.org:4433\"\nfingerprint = \"" FP_PLAIN "\"\n",
                "relay.toml:2: 'url' must be an IP address and port such as \"192.0.2.1:4433\" "
                "or \"[2001:db8::1]:4433\" (host names are not supported), not "
                "\"relay-b.example.org:4433\"");
    parse_fails("probe_targets = [\"192.0.2.1:4433\", \"relay-b:4433\"]\n",
                "relay.toml:1: 'probe_targets' must be an IP address and port such as "
                "\"192.0.2.1:4433\" or \"[2001:db8::1]:4433\" (host names are not supported), "
                "not \"relay-b:4433\"");
    parse_fails("metrics_bind = \"127.0.0.1:9090\"\n",
                "relay.toml:1: 'metrics_bind' must be an IP address such as \"127.0.0.1\" or "
                "\"::1\" (no port), not \"127.0.0.1:9090\"");
    parse_fails("metrics_bind = \"localhost\"\n",
                "relay.toml:1: 'metrics_bind' must be an IP address such as \"127.0.0.1\" or "
                "\"::1\" (no port), not \"localhost\"");
}

Test(config_file, bad_strings)
{
    parse_fails("log_level = \"verbose\"\n", "relay.toml:1: 'log_level' must be one of error, "
                                             "warn, info, debug, trace, not \"verbose\"");
    parse_fails("log_format = \"xml\"\n",
                "relay.toml:1: 'log_format' must be one of text, json, not \"xml\"");
    parse_fails("\nretry = \"sometimes\"\n",
                "relay.toml:2: 'retry' must be one of auto, always, off, not \"sometimes\"");
    parse_fails("static_dir = \"\"\n", "relay.toml:1: 'static_dir' must not be empty");
    parse_fails("identity = \"/tmp/a\\u0000b\"\n",
                "relay.toml:1: 'identity' must not contain NUL (\\u0000)");
    parse_fails("[[trusted]]\nfingerprint = \"abcd\"\n",
                "relay.toml:2: 'fingerprint' must be 64 hex digits (a SHA-256 fingerprint, colons "
                "optional), not \"abcd\"");
    parse_fails("[[trusted]]\nfingerprint = \"" FP_PLAIN "00\"\n",
                "relay.toml:2: 'fingerprint' must be 64 hex digits (a SHA-256 fingerprint, colons "
                "optional), not \"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4a...\"");
    parse_fails("[[trusted]]\nfingerprint = \"g" FP_PLAIN "\"\n",
                "relay.toml:2: 'fingerprint' must be 64 hex digits (a SHA-256 fingerprint, colons "
                "optional), not \"g3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4...\"");
    parse_fails("debug_tap = \"line\\nbreak\"\nbad = 1\n", "relay.toml:2: unknown key 'bad'");
    /* 47 ASCII bytes and then a 2-byte character that would straddle the cut */
    parse_fails("log_level = \""
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\"\n",
                "relay.toml:1: 'log_level' must be one of error, warn, info, debug, trace, not "
                "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
    parse_fails("log_level = \"in\\nfo\"\n", "relay.toml:1: 'log_level' must be one of error, "
                                             "warn, info, debug, trace, not \"in?fo\"");
}

Test(config_file, sections_missing_required_keys)
{
    parse_fails("\n[[peers]]\nfingerprint = \"" FP_PLAIN "\"\n",
                "relay.toml:2: this [[peers]] entry has no 'url'");
    parse_fails("[[peers]]\nurl = \"192.0.2.1:4433\"\nfingerprint = \"" FP_PLAIN "\"\n"
                "[[peers]]\nurl = \"192.0.2.2:4433\"\nlabel = \"x\"\n",
                "relay.toml:4: this [[peers]] entry has no 'fingerprint'");
    parse_fails("[[trusted]]\nlabel = \"x\"\n",
                "relay.toml:1: this [[trusted]] entry has no 'fingerprint'");
    parse_fails("[[global_rooms]]\n", "relay.toml:1: this [[global_rooms]] entry has no 'name'");
    parse_fails("[[global_rooms]]\nname = \"\"\n", "relay.toml:2: 'name' must not be empty");
}

Test(config_file, toml_errors_carry_file_and_line)
{
    parse_fails("listen_addr = \"0.0.0.0:4433\"\nmax_sessions = 10\nlisten_addr = \"[::]:1\"\n",
                "relay.toml:3: duplicate key 'listen_addr' (first defined on line 1)");
    parse_fails("[[peers]]\nurl = \"192.0.2.1:4433\"\n[[peers]]\n[peers]\n",
                "relay.toml:4: 'peers' is an array of tables (line 1): add an entry with "
                "[[peers]], not [peers]");
    parse_fails("\nlog_level = info\n", "relay.toml:2: unquoted text 'info' (strings must be "
                                        "quoted: \"info\"; booleans are lower-case true or false)");
    parse_fails("[[trusted]]\n[[trusted]]\n[[trusted]]\n[trusted]\n",
                "relay.toml:4: 'trusted' is an array of tables (line 1): add an entry with "
                "[[trusted]], not [trusted]");
    parse_fails("a.b = 1\n",
                "relay.toml:1: dotted key 'a.b' is not supported: put the key under a [a] table "
                "header");
}

Test(config_file, first_error_wins_and_no_leaks)
{
    /* errors late in the file, after strings and lists were already copied */
    parse_fails("listen_addr = \"0.0.0.0:4433\"\nprobe_targets = [\"192.0.2.1:4433\"]\n"
                "[[peers]]\nurl = \"192.0.2.1:4433\"\nfingerprint = \"" FP_PLAIN "\"\n"
                "label = \"b\"\n[[trusted]]\nfingerprint = \"" FP_PLAIN "\"\n"
                "[[global_rooms]]\nname = \"x\"\n[[global_rooms]]\nname = 5\n",
                "relay.toml:12: 'name' must be a string, not an integer");
}

Test(config_file, null_error_buffer)
{
    struct wzp_file_config c;
    cr_assert_eq(wzp_config_file_parse("x", "bad = 1", 7, &c, NULL, 0), WZP_EINVAL);
    cr_assert_eq(wzp_config_file_load("/nonexistent/relay.toml", &c, NULL, 0), WZP_ENOTFOUND);
}

/* ---- loading from files ---- */

static char *temp_file(const char *content, size_t len)
{
    char *path = strdup("/tmp/wzp-config-test-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

Test(config_file, load_from_file)
{
    char *path = temp_file(upstream_config, strlen(upstream_config));
    struct wzp_file_config c;
    char err[512];
    cr_assert_eq(wzp_config_file_load(path, &c, err, sizeof err), WZP_OK, "%s", err);
    cr_assert_eq(c.peers_len, 2);
    cr_assert_eq(c.max_sessions, 250);
    wzp_config_file_free(&c);
    unlink(path);
    free(path);
}

Test(config_file, load_errors_name_the_path)
{
    const char *text = "max_sessions = 100\n\nmax_sesions = 100\n";
    char *path = temp_file(text, strlen(text));
    struct wzp_file_config c;
    char err[512], want[512];
    cr_assert_eq(wzp_config_file_load(path, &c, err, sizeof err), WZP_EINVAL);
    snprintf(want, sizeof want, "%s:3: unknown key 'max_sesions' (did you mean 'max_sessions'?)",
             path);
    cr_assert_str_eq(err, want);
    unlink(path);
    free(path);
}

Test(config_file, load_missing_unreadable_and_too_big)
{
    struct wzp_file_config c;
    char err[512];
    cr_assert_eq(wzp_config_file_load("/nonexistent/relay.toml", &c, err, sizeof err),
                 WZP_ENOTFOUND);
    cr_assert_str_eq(err, "/nonexistent/relay.toml: cannot open: No such file or directory");
    cr_assert_eq(wzp_config_file_load("/tmp", &c, err, sizeof err), WZP_EIO);
    cr_assert(strncmp(err, "/tmp: cannot read: ", 19) == 0, "%s", err);

    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    memset(big, '\n', n);
    char *path = temp_file(big, n);
    cr_assert_eq(wzp_config_file_load(path, &c, err, sizeof err), WZP_ETOOBIG);
    char want[256];
    snprintf(want, sizeof want, "%s: the file is larger than 1048576 bytes", path);
    cr_assert_str_eq(err, want);
    unlink(path);
    free(path);
    /* exactly at the limit is fine */
    path = temp_file(big, n - 1);
    cr_assert_eq(wzp_config_file_load(path, &c, err, sizeof err), WZP_OK, "%s", err);
    wzp_config_file_free(&c);
    unlink(path);
    free(path);
    free(big);
}

Test(config_file, load_rejects_binary_garbage)
{
    const char text[] = "listen_addr = \"0.0.0.0:4433\"\n\xff\xfe\n";
    char *path = temp_file(text, sizeof text - 1);
    struct wzp_file_config c;
    char err[512], want[512];
    cr_assert_eq(wzp_config_file_load(path, &c, err, sizeof err), WZP_EINVAL);
    snprintf(want, sizeof want, "%s:2: invalid UTF-8 (a config file must be UTF-8 text)", path);
    cr_assert_str_eq(err, want);
    unlink(path);
    free(path);
}
