/*
 * config_file.c - reads the relay config file into struct wzp_file_config (config_file.h).
 *
 * The file is parsed with the strict TOML parser (toml.h), then every key of the root
 * table and of each [[peers]] / [[trusted]] / [[global_rooms]] entry is looked up in a
 * table of known keys (name, kind, field offset, range) and checked and stored. The first
 * problem stops the load and is reported as "file:line: message".
 */
#include "config_file.h"

#include "retry.h"
#include "toml.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#define NO_SET ((size_t)-1)

enum kind {
    K_STRING,      /* non-empty string */
    K_LISTEN,      /* "ip:port", port 0 allowed */
    K_ADDR,        /* "ip:port", port 1..65535 */
    K_IP,          /* IP literal */
    K_FINGERPRINT, /* 64 hex digits, colons optional */
    K_UINT,        /* integer in [min, max] */
    K_BOOL,
    K_LOG_LEVEL,
    K_LOG_FORMAT,
    K_RETRY,       /* "auto", "always", "off" (kept as the string) */
    K_ADDR_LIST,   /* probe_targets */
    K_PEERS,       /* [[peers]] */
    K_TRUSTED,     /* [[trusted]] */
    K_GLOBAL_ROOMS /* [[global_rooms]] */
};

struct key_spec {
    const char *name;
    enum kind kind;
    size_t field; /* offset of the value in the struct being filled */
    size_t set;   /* offset of its flag in struct wzp_file_config, or NO_SET */
    unsigned min, max;
};

#define ROOT(f) offsetof(struct wzp_file_config, f), offsetof(struct wzp_file_config, set.f)

static const struct key_spec root_keys[] = {
    /* upstream */
    {"listen_addr", K_LISTEN, ROOT(listen_addr), 0, 0},
    {"max_sessions", K_UINT, ROOT(max_sessions), 1, 1000000},
    {"metrics_port", K_UINT, ROOT(metrics_port), 1, 65535},
    {"auth_url", K_STRING, ROOT(auth_url), 0, 0},
    {"ws_port", K_UINT, ROOT(ws_port), 1, 65535},
    {"static_dir", K_STRING, ROOT(static_dir), 0, 0},
    {"remote_relay", K_ADDR, ROOT(remote_relay), 0, 0},
    {"jitter_target_depth", K_UINT, ROOT(jitter_target_depth), 0, 1000000},
    {"jitter_max_depth", K_UINT, ROOT(jitter_max_depth), 0, 1000000},
    {"log_level", K_LOG_LEVEL, ROOT(log_level), 0, 0},
    {"probe_targets", K_ADDR_LIST, ROOT(probe_targets), 0, 0},
    {"probe_mesh", K_BOOL, ROOT(probe_mesh), 0, 0},
    {"trunking_enabled", K_BOOL, ROOT(trunking_enabled), 0, 0},
    {"debug_tap", K_STRING, ROOT(debug_tap), 0, 0},
    {"peers", K_PEERS, ROOT(peers), 0, 0},
    {"trusted", K_TRUSTED, ROOT(trusted), 0, 0},
    {"global_rooms", K_GLOBAL_ROOMS, ROOT(global_rooms), 0, 0},
    /* this relay (ranges as the command-line flags) */
    {"threads", K_UINT, ROOT(threads), 1, 64},
    {"room_affinity", K_BOOL, ROOT(room_affinity), 0, 0},
    {"max_handshakes", K_UINT, ROOT(max_handshakes), 1, 1000000},
    {"max_connections", K_UINT, ROOT(max_connections), 1, 10000000},
    {"max_handshakes_per_addr", K_UINT, ROOT(max_handshakes_per_addr), 0, 1000000},
    {"max_connections_per_addr", K_UINT, ROOT(max_connections_per_addr), 0, 10000000},
    {"retry", K_RETRY, ROOT(retry), 0, 0},
    {"join_timeout_ms", K_UINT, ROOT(join_timeout_ms), 100, 600000},
    {"idle_timeout_ms", K_UINT, ROOT(idle_timeout_ms), 1000, 600000},
    {"ack_delay_ms", K_UINT, ROOT(ack_delay_ms), 0, 20 /* WZP_MAX_ACK_DELAY_MS */},
    {"coalesce_ms", K_UINT, ROOT(coalesce_ms), 0, 20 /* WZP_MAX_COALESCE_MS */},
    {"poll_every_us", K_UINT, ROOT(poll_every_us), 0, 5000 /* WZP_MAX_POLL_EVERY_US */},
    {"identity", K_STRING, ROOT(identity), 0, 0},
    {"policy", K_STRING, ROOT(policy), 0, 0},
    {"metrics_bind", K_IP, ROOT(metrics_bind), 0, 0},
    {"admin_token", K_STRING, ROOT(admin_token), 0, 0},
    {"admin_token_file", K_STRING, ROOT(admin_token_file), 0, 0},
    {"event_log", K_STRING, ROOT(event_log), 0, 0},
    {"log_format", K_LOG_FORMAT, ROOT(log_format), 0, 0},
    {"advertise", K_STRING, ROOT(advertise), 0, 0},
    {"ring_timeout_s", K_UINT, ROOT(ring_timeout_s), 1, 600},
    {"call_setup_timeout_s", K_UINT, ROOT(call_setup_timeout_s), 1, 600},
    {"max_calls", K_UINT, ROOT(max_calls), 1, 1000000},
    {"auth_ca_file", K_STRING, ROOT(auth_ca_file), 0, 0},
    {"decision_log", K_STRING, ROOT(decision_log), 0, 0},
    {"shadow_policy", K_STRING, ROOT(shadow_policy), 0, 0},
};

static const struct key_spec peer_keys[] = {
    {"url", K_ADDR, offsetof(struct wzp_file_peer, url), NO_SET, 0, 0},
    {"fingerprint", K_FINGERPRINT, offsetof(struct wzp_file_peer, fingerprint), NO_SET, 0, 0},
    {"label", K_STRING, offsetof(struct wzp_file_peer, label), NO_SET, 0, 0},
};

static const struct key_spec trusted_keys[] = {
    {"fingerprint", K_FINGERPRINT, offsetof(struct wzp_file_trusted, fingerprint), NO_SET, 0, 0},
    {"label", K_STRING, offsetof(struct wzp_file_trusted, label), NO_SET, 0, 0},
};

static const struct key_spec room_keys[] = {
    {"name", K_STRING, 0, NO_SET, 0, 0}, /* field 0: the char * itself */
};

static const char *const log_levels[] = {"error", "warn", "info", "debug", "trace"};
static const char *const log_formats[] = {"text", "json"};

struct loader {
    const char *name; /* file name for messages */
    char *err;
    size_t errlen;
    struct wzp_file_config *cfg;
};

/* ---- messages ---- */

static int lfail(struct loader *ld, int line, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int lfail(struct loader *ld, int line, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!ld->errlen)
        return status;
    if (line > 0)
        snprintf(ld->err, ld->errlen, "%s:%d: %s", ld->name, line, msg);
    else
        snprintf(ld->err, ld->errlen, "%s: %s", ld->name, msg);
    return status;
}

/* s cut to 48 bytes (not inside a UTF-8 sequence), control characters shown as '?', for
 * quoting in messages. */
static const char *clip(const char *s, char *buf, size_t size)
{
    size_t n = 0, max = WZP_MIN(size - 4, 48);
    for (; s[n] && n < max; n++)
        buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
    while (n > 0 && s[n] && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--; /* s[n] continues a character: cut before its first byte */
    strcpy(buf + n, s[n] ? "..." : "");
    return buf;
}

#define CLIP(s) clip((s), (char[64]){0}, 64)

static const char *article(enum wzp_toml_type t)
{
    return t == WZP_TOML_INTEGER || t == WZP_TOML_ARRAY ? "an" : "a";
}

static int wrong_type(struct loader *ld, const char *key, const struct wzp_toml_value *v,
                      const char *want)
{
    return lfail(ld, v->line, WZP_EINVAL, "'%s' must be %s, not %s %s", key, want, article(v->type),
                 wzp_toml_type_name(v->type));
}

/* ---- did you mean ---- */

/* Case-insensitive optimal string alignment distance (edits incl. transpositions). */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 40 };
    size_t la = strlen(a), lb = strlen(b);
    size_t d[MAXLEN + 1][MAXLEN + 1];
    if (la > MAXLEN || lb > MAXLEN)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t best = WZP_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
            best = WZP_MIN(best, d[i - 1][j - 1] + (ca != cb));
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                cb == tolower((unsigned char)a[i - 2]))
                best = WZP_MIN(best, d[i - 2][j - 2] + 1);
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* The known key closest to key, or NULL if none is close enough to be a typo. */
static const char *suggest(const char *key, const struct key_spec *specs, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(specs[i].name);
        size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
        size_t d = edit_distance(key, specs[i].name);
        if (d <= limit && d < best_d) {
            best = specs[i].name;
            best_d = d;
        }
    }
    return best;
}

static const struct key_spec *find_spec(const char *key, const struct key_spec *specs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(specs[i].name, key) == 0)
            return &specs[i];
    return NULL;
}

/* section: NULL for the top level, else "peers", "trusted" or "global_rooms". */
static int unknown_key(struct loader *ld, const struct wzp_toml_kv *kv, const char *section,
                       const struct key_spec *specs, size_t n)
{
    const char *hint = suggest(kv->key, specs, n);
    const char *what = "key '", *close = "'";
    char where[64] = "";
    if (section && find_spec(kv->key, root_keys, WZP_ARRAY_LEN(root_keys)))
        return lfail(ld, kv->line, WZP_EINVAL,
                     "'%s' is a top-level key, but here it is inside the [[%s]] section above "
                     "it: move it before the first [[...]] line",
                     kv->key, section);
    if (section)
        snprintf(where, sizeof where, " in [[%s]]", section);
    if (kv->value.type == WZP_TOML_TABLE) {
        what = "table [";
        close = "]";
    } else if (kv->value.type == WZP_TOML_ARRAY && kv->value.u.array.of_tables) {
        what = "table [[";
        close = "]]";
    }
    return lfail(ld, kv->line, WZP_EINVAL, "unknown %s%s%s%s%s%s%s", what, CLIP(kv->key), close,
                 where, hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
}

/* ---- value checks ---- */

static bool is_ip(const char *s, int family)
{
    unsigned char addr[16];
    return inet_pton(family, s, addr) == 1;
}

/* "IPv4:PORT" or "[IPv6]:PORT" with a decimal port. */
static bool is_socket_addr(const char *s, bool allow_port0)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    if (!colon || colon == s)
        return false;
    size_t hlen = (size_t)(colon - s);
    bool v6 = s[0] == '[';
    if (v6 && (hlen < 3 || s[hlen - 1] != ']'))
        return false;
    if (v6)
        s++, hlen -= 2;
    if (hlen >= sizeof host)
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    unsigned long port;
    if (!is_ip(host, v6 ? AF_INET6 : AF_INET) || !wzp_parse_uint(colon + 1, 0, 65535, &port))
        return false;
    return port > 0 || allow_port0;
}

static bool is_fingerprint(const char *s)
{
    size_t digits = 0;
    for (; *s; s++) {
        if (isxdigit((unsigned char)*s))
            digits++;
        else if (*s != ':')
            return false;
    }
    return digits == 64;
}

static int lookup_word(const char *s, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(s, words[i]) == 0)
            return (int)i;
    return -1;
}

/* A string value: non-empty, no NUL. The result points into the document. */
static int get_string(struct loader *ld, const char *key, const struct wzp_toml_value *v,
                      const char **out)
{
    if (v->type != WZP_TOML_STRING)
        return wrong_type(ld, key, v, "a string");
    if (v->u.str.len == 0)
        return lfail(ld, v->line, WZP_EINVAL, "'%s' must not be empty", key);
    if (strlen(v->u.str.ptr) != v->u.str.len)
        return lfail(ld, v->line, WZP_EINVAL, "'%s' must not contain NUL (\\u0000)", key);
    *out = v->u.str.ptr;
    return WZP_OK;
}

/* Why s is not acceptable for kind, or NULL if it is. */
static const char *string_problem(enum kind kind, const char *s)
{
    switch (kind) {
    case K_LISTEN:
        return is_socket_addr(s, true) ? NULL
                                       : "an IP address and port such as \"0.0.0.0:4433\" or "
                                         "\"[::]:4433\" (host names are not supported)";
    case K_ADDR:
        return is_socket_addr(s, false) ? NULL
                                        : "an IP address and port such as \"192.0.2.1:4433\" "
                                          "or \"[2001:db8::1]:4433\" (host names are not "
                                          "supported)";
    case K_IP:
        return is_ip(s, AF_INET) || is_ip(s, AF_INET6)
                   ? NULL
                   : "an IP address such as \"127.0.0.1\" or \"::1\" (no port)";
    case K_FINGERPRINT:
        return is_fingerprint(s) ? NULL : "64 hex digits (a SHA-256 fingerprint, colons optional)";
    case K_LOG_LEVEL:
        return lookup_word(s, log_levels, WZP_ARRAY_LEN(log_levels)) >= 0
                   ? NULL
                   : "one of error, warn, info, debug, trace";
    case K_LOG_FORMAT:
        return lookup_word(s, log_formats, WZP_ARRAY_LEN(log_formats)) >= 0 ? NULL
                                                                            : "one of text, json";
    case K_RETRY: {
        enum wzp_retry_mode mode;
        return wzp_retry_mode_parse(s, &mode) == WZP_OK ? NULL : "one of auto, always, off";
    }
    default:
        return NULL;
    }
}

/* A checked string of the given kind; *out is a new copy. */
static int take_string(struct loader *ld, const char *key, enum kind kind,
                       const struct wzp_toml_value *v, char **out)
{
    const char *s = NULL;
    int rc = get_string(ld, key, v, &s);
    if (rc)
        return rc;
    const char *problem = string_problem(kind, s);
    if (problem)
        return lfail(ld, v->line, WZP_EINVAL, "'%s' must be %s, not \"%s\"", key, problem, CLIP(s));
    *out = strdup(s);
    return *out ? WZP_OK : lfail(ld, v->line, WZP_ENOMEM, "out of memory");
}

static int take_uint(struct loader *ld, const struct key_spec *spec, const struct wzp_toml_value *v,
                     unsigned *out)
{
    if (v->type != WZP_TOML_INTEGER)
        return wrong_type(ld, spec->name, v, "an integer");
    if (v->u.integer < (int64_t)spec->min || v->u.integer > (int64_t)spec->max)
        return lfail(ld, v->line, WZP_EINVAL, "'%s' must be between %u and %u, not %lld",
                     spec->name, spec->min, spec->max, (long long)v->u.integer);
    *out = (unsigned)v->u.integer;
    return WZP_OK;
}

/* ---- lists ---- */

/* probe_targets = ["ip:port", ...] */
static int take_addr_list(struct loader *ld, const struct wzp_toml_value *v)
{
    struct wzp_file_config *cfg = ld->cfg;
    size_t n = wzp_toml_array_len(v);
    if (v->type != WZP_TOML_ARRAY || v->u.array.of_tables)
        return wrong_type(ld, "probe_targets", v, "an array of \"ip:port\" strings");
    if (n && !(cfg->probe_targets = calloc(n, sizeof *cfg->probe_targets)))
        return lfail(ld, v->line, WZP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int rc = take_string(ld, "probe_targets", K_ADDR, wzp_toml_array_at(v, i),
                             &cfg->probe_targets[i]);
        if (rc)
            return rc;
        cfg->probe_targets_len++;
    }
    return WZP_OK;
}

static int map_table(struct loader *ld, const struct wzp_toml_table *t,
                     const struct key_spec *specs, size_t n, void *base, const char *section);

/* The entries of [[key]] as an array of n items of size bytes each in *items. */
static int take_sections(struct loader *ld, const char *key, const struct wzp_toml_value *v,
                         size_t size, void **items, size_t *len)
{
    if (v->type == WZP_TOML_TABLE)
        return lfail(ld, v->line, WZP_EINVAL, "write [[%s]] (one per entry), not [%s]", key, key);
    if (v->type != WZP_TOML_ARRAY || (!v->u.array.of_tables && v->u.array.len > 0))
        return lfail(ld, v->line, WZP_EINVAL, "'%s' must be written as [[%s]] sections, not %s %s",
                     key, key, article(v->type), wzp_toml_type_name(v->type));
    size_t n = wzp_toml_array_len(v);
    if (n && !(*items = calloc(n, size)))
        return lfail(ld, v->line, WZP_ENOMEM, "out of memory");
    *len = n;
    return WZP_OK;
}

static int require(struct loader *ld, const void *field, const char *section, const char *key,
                   int line)
{
    if (*(char *const *)field)
        return WZP_OK;
    return lfail(ld, line, WZP_EINVAL, "this [[%s]] entry has no '%s'", section, key);
}

static int take_peers(struct loader *ld, const struct wzp_toml_value *v)
{
    struct wzp_file_config *cfg = ld->cfg;
    int rc =
        take_sections(ld, "peers", v, sizeof *cfg->peers, (void **)&cfg->peers, &cfg->peers_len);
    for (size_t i = 0; !rc && i < cfg->peers_len; i++) {
        const struct wzp_toml_value *item = wzp_toml_array_at(v, i);
        struct wzp_file_peer *p = &cfg->peers[i];
        p->line = item->line;
        rc = map_table(ld, item->u.table, peer_keys, WZP_ARRAY_LEN(peer_keys), p, "peers");
        if (!rc)
            rc = require(ld, &p->url, "peers", "url", p->line);
        if (!rc)
            rc = require(ld, &p->fingerprint, "peers", "fingerprint", p->line);
    }
    return rc;
}

static int take_trusted(struct loader *ld, const struct wzp_toml_value *v)
{
    struct wzp_file_config *cfg = ld->cfg;
    int rc = take_sections(ld, "trusted", v, sizeof *cfg->trusted, (void **)&cfg->trusted,
                           &cfg->trusted_len);
    for (size_t i = 0; !rc && i < cfg->trusted_len; i++) {
        const struct wzp_toml_value *item = wzp_toml_array_at(v, i);
        struct wzp_file_trusted *t = &cfg->trusted[i];
        t->line = item->line;
        rc = map_table(ld, item->u.table, trusted_keys, WZP_ARRAY_LEN(trusted_keys), t, "trusted");
        if (!rc)
            rc = require(ld, &t->fingerprint, "trusted", "fingerprint", t->line);
    }
    return rc;
}

static int take_global_rooms(struct loader *ld, const struct wzp_toml_value *v)
{
    struct wzp_file_config *cfg = ld->cfg;
    int rc = take_sections(ld, "global_rooms", v, sizeof *cfg->global_rooms,
                           (void **)&cfg->global_rooms, &cfg->global_rooms_len);
    for (size_t i = 0; !rc && i < cfg->global_rooms_len; i++) {
        const struct wzp_toml_value *item = wzp_toml_array_at(v, i);
        rc = map_table(ld, item->u.table, room_keys, WZP_ARRAY_LEN(room_keys),
                       &cfg->global_rooms[i], "global_rooms");
        if (!rc)
            rc = require(ld, &cfg->global_rooms[i], "global_rooms", "name", item->line);
    }
    return rc;
}

/* ---- mapping ---- */

/* Check kv's value against spec and store it at base + spec->field. */
static int store(struct loader *ld, const struct key_spec *spec, const struct wzp_toml_kv *kv,
                 void *base)
{
    void *field = (char *)base + spec->field;
    const struct wzp_toml_value *v = &kv->value;
    const char *s = NULL;
    int rc;
    switch (spec->kind) {
    case K_UINT:
        return take_uint(ld, spec, v, field);
    case K_BOOL:
        if (v->type != WZP_TOML_BOOL)
            return wrong_type(ld, spec->name, v, "true or false");
        *(bool *)field = v->u.boolean;
        return WZP_OK;
    case K_LOG_LEVEL:
    case K_LOG_FORMAT:
        if ((rc = get_string(ld, spec->name, v, &s)))
            return rc;
        if (string_problem(spec->kind, s))
            return lfail(ld, v->line, WZP_EINVAL, "'%s' must be %s, not \"%s\"", spec->name,
                         string_problem(spec->kind, s), CLIP(s));
        if (spec->kind == K_LOG_LEVEL)
            *(enum wzp_file_log_level *)field =
                (enum wzp_file_log_level)lookup_word(s, log_levels, WZP_ARRAY_LEN(log_levels));
        else
            *(enum wzp_file_log_format *)field =
                (enum wzp_file_log_format)lookup_word(s, log_formats, WZP_ARRAY_LEN(log_formats));
        return WZP_OK;
    case K_ADDR_LIST:
        return take_addr_list(ld, v);
    case K_PEERS:
        return take_peers(ld, v);
    case K_TRUSTED:
        return take_trusted(ld, v);
    case K_GLOBAL_ROOMS:
        return take_global_rooms(ld, v);
    default:
        return take_string(ld, spec->name, spec->kind, v, field);
    }
}

/* Check and store every key of t, a [[section]] entry or the top level (section NULL). */
static int map_table(struct loader *ld, const struct wzp_toml_table *t,
                     const struct key_spec *specs, size_t n, void *base, const char *section)
{
    for (size_t i = 0; i < wzp_toml_table_len(t); i++) {
        const struct wzp_toml_kv *kv = wzp_toml_table_at(t, i);
        const struct key_spec *spec = find_spec(kv->key, specs, n);
        if (!spec)
            return unknown_key(ld, kv, section, specs, n);
        int rc = store(ld, spec, kv, base);
        if (rc)
            return rc;
        if (spec->set != NO_SET)
            *(bool *)((char *)ld->cfg + spec->set) = true;
    }
    return WZP_OK;
}

int wzp_config_file_parse(const char *name, const char *text, size_t len,
                          struct wzp_file_config *out, char *err, size_t errlen)
{
    struct loader ld = {.name = name, .err = err, .errlen = errlen, .cfg = out};
    struct wzp_toml *doc;
    char msg[512];
    int line = 0;
    memset(out, 0, sizeof *out);
    if (errlen)
        err[0] = '\0';
    int rc = wzp_toml_parse_ex(text, len, &doc, &line, msg, sizeof msg);
    if (rc)
        return lfail(&ld, line, rc, "%s", msg);
    rc = map_table(&ld, wzp_toml_root(doc), root_keys, WZP_ARRAY_LEN(root_keys), out, NULL);
    wzp_toml_free(doc);
    if (rc)
        wzp_config_file_free(out);
    return rc;
}

/* The whole file into a new buffer (NUL-terminated, at most WZP_TOML_MAX_INPUT bytes). */
static int read_file(struct loader *ld, const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lfail(ld, 0, errno == ENOENT ? WZP_ENOTFOUND : WZP_EIO, "cannot open: %s",
                     strerror(errno));
    size_t cap = WZP_TOML_MAX_INPUT + 1;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return lfail(ld, 0, WZP_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, cap, f);
    int rc = WZP_OK;
    if (ferror(f))
        rc = lfail(ld, 0, WZP_EIO, "cannot read: %s", strerror(errno));
    else if (n > WZP_TOML_MAX_INPUT)
        rc = lfail(ld, 0, WZP_ETOOBIG, "the file is larger than %u bytes",
                   (unsigned)WZP_TOML_MAX_INPUT);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return WZP_OK;
}

int wzp_config_file_load(const char *path, struct wzp_file_config *out, char *err, size_t errlen)
{
    struct loader ld = {.name = path, .err = err, .errlen = errlen, .cfg = out};
    char *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    int rc = read_file(&ld, path, &text, &len);
    if (rc)
        return rc;
    rc = wzp_config_file_parse(path, text, len, out, err, errlen);
    free(text);
    return rc;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void wzp_config_file_free(struct wzp_file_config *cfg)
{
    char **strings[] = {
        &cfg->listen_addr, &cfg->auth_url,     &cfg->static_dir,   &cfg->remote_relay,
        &cfg->debug_tap,   &cfg->identity,     &cfg->policy,       &cfg->metrics_bind,
        &cfg->admin_token, &cfg->event_log,    &cfg->retry,        &cfg->admin_token_file,
        &cfg->advertise,   &cfg->auth_ca_file, &cfg->decision_log, &cfg->shadow_policy};
    for (size_t i = 0; i < WZP_ARRAY_LEN(strings); i++)
        free(*strings[i]);
    free_strings(cfg->probe_targets, cfg->probe_targets_len);
    free_strings(cfg->global_rooms, cfg->global_rooms_len);
    for (size_t i = 0; i < cfg->peers_len; i++) {
        free(cfg->peers[i].url);
        free(cfg->peers[i].fingerprint);
        free(cfg->peers[i].label);
    }
    free(cfg->peers);
    for (size_t i = 0; i < cfg->trusted_len; i++) {
        free(cfg->trusted[i].fingerprint);
        free(cfg->trusted[i].label);
    }
    free(cfg->trusted);
    memset(cfg, 0, sizeof *cfg);
}
