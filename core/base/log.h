/*
 * log.h - leveled logging to stderr, one line per event.
 *
 * Every refusal is logged with who (remote address / fingerprint), what and why. One
 * event is one line: control characters in a message are escaped (text) or encoded
 * (JSON), so text a client controls cannot forge another line.
 * Thread-safe: each call formats into a stack buffer and writes it with one write(2).
 */
#ifndef WZP_LOG_H
#define WZP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wzp_log_level {
    WZP_LOG_ERROR = 0,
    WZP_LOG_WARN = 1,
    WZP_LOG_INFO = 2,
    WZP_LOG_DEBUG = 3,
    WZP_LOG_TRACE = 4,
};

extern int wzp_log_threshold; /* messages above this level are skipped */
extern bool wzp_log_json;     /* one JSON object per line instead of text */

/* "2026-11-29T02:07:04.123Z" (UTC, ms). */
void wzp_log_timestamp(char out[32]);

/* JSON string escaping of in (without quotes) into out; returns the length written. */
size_t wzp_json_escape(const char *in, char *out, size_t outlen);

/* For warnings logged at most once per period_ns: true (and *last_ns = now_ns) if none
 * was logged yet or the last one is period_ns old. The caller owns *last_ns. */
bool wzp_log_due(uint64_t *last_ns, uint64_t now_ns, uint64_t period_ns);

/* Text-log escaping of in into out: newline, CR and tab as \n \r \t, other control
 * characters and DEL as \xNN, everything else (UTF-8 included) as is. Returns the length
 * written; never more than outlen - 1 bytes, never half an escape. */
size_t wzp_log_escape_text(const char *in, char *out, size_t outlen);

/* Parse "error|warn|info|debug|trace"; returns the level or -1. */
int wzp_log_parse_level(const char *name);

void wzp_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define WZP_LOG(level, module, ...)                                                                \
    do {                                                                                           \
        if ((level) <= wzp_log_threshold)                                                          \
            wzp_log_write((level), (module), __VA_ARGS__);                                         \
    } while (0)

#define WZP_ERROR(mod, ...) WZP_LOG(WZP_LOG_ERROR, mod, __VA_ARGS__)
#define WZP_WARN(mod, ...)  WZP_LOG(WZP_LOG_WARN, mod, __VA_ARGS__)
#define WZP_INFO(mod, ...)  WZP_LOG(WZP_LOG_INFO, mod, __VA_ARGS__)
#define WZP_DEBUG(mod, ...) WZP_LOG(WZP_LOG_DEBUG, mod, __VA_ARGS__)
#define WZP_TRACE(mod, ...) WZP_LOG(WZP_LOG_TRACE, mod, __VA_ARGS__)

#endif
