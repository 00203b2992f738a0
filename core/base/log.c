/*
 * log.c - see log.h. Text lines look like
 *   2026-11-29T02:07:04.123Z INFO  room: message
 * and JSON lines (--log-format json) like
 *   {"ts":"2026-11-29T02:07:04.123Z","level":"info","module":"room","msg":"message"}
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int wzp_log_threshold = WZP_LOG_INFO;
bool wzp_log_json;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
static const char *const level_lower[] = {"error", "warn", "info", "debug", "trace"};

int wzp_log_parse_level(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (strcasecmp(name, level_lower[i]) == 0)
            return i;
    return -1;
}

void wzp_log_timestamp(char out[32])
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(tv.tv_usec / 1000) % 1000);
}

size_t wzp_json_escape(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 7 < outlen; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[*p >> 4];
            out[o + 5] = hex[*p & 15];
            o += 6;
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

size_t wzp_log_escape_text(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < outlen; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

void wzp_log_write(int level, const char *module, const char *fmt, ...)
{
    char msg[4096], line[2 * sizeof msg + 128], ts[32]; /* msg: the SIGUSR1 stats line */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wzp_log_timestamp(ts);
    int n;
    if (wzp_log_json) {
        char esc[sizeof msg * 2];
        wzp_json_escape(msg, esc, sizeof esc);
        n = snprintf(line, sizeof line - 1,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"%s\"}", ts,
                     level_lower[level], module, esc);
    } else {
        /* Client-controlled text (aliases, reasons, URLs) must not forge lines or drive a
         * terminal: control characters are written as escapes. */
        char esc[sizeof msg * 2];
        wzp_log_escape_text(msg, esc, sizeof esc);
        n = snprintf(line, sizeof line - 1, "%s %-5s %s: %s", ts, level_names[level], module, esc);
    }
    size_t len = n < 0 ? 0 : ((size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len); /* one write: lines never interleave */
    (void)w;
}

bool wzp_log_due(uint64_t *last_ns, uint64_t now_ns, uint64_t period_ns)
{
    if (*last_ns && now_ns - *last_ns < period_ns)
        return false;
    *last_ns = now_ns;
    return true;
}
