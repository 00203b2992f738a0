/*
 * benchutil.h - small helpers shared by the benchmark programs (wzp-loadgen,
 * udp-baseline): a fixed-size latency histogram, /proc sampling of another process,
 * monotonic sleeps and HOST[:PORT] parsing. Header-only (static inline), so each
 * example program stays one .c file.
 *
 * Histogram: log-linear buckets over nanoseconds, 64 sub-buckets per power of two, so a
 * reported percentile is within 1.6 % of the true value; 3776 counters (30 KiB) cover
 * every uint64 value, and adding a sample is a few instructions and no allocation.
 */
#ifndef WZP_BENCHUTIL_H
#define WZP_BENCHUTIL_H

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ time */

static inline uint64_t bu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sleep until a CLOCK_MONOTONIC instant, or until *stop becomes non-zero (checked every
 * 20 ms). Returns false if stopped early. */
static inline bool bu_sleep_until(uint64_t deadline_ns, volatile sig_atomic_t *stop)
{
    for (;;) {
        uint64_t now = bu_now_ns();
        uint64_t step = 20000000ull;
        struct timespec ts;

        if (stop != NULL && *stop)
            return false;
        if (now >= deadline_ns)
            return true;
        if (deadline_ns - now < step)
            step = deadline_ns - now;
        ts.tv_sec = (time_t)(step / 1000000000ull);
        ts.tv_nsec = (long)(step % 1000000000ull);
        nanosleep(&ts, NULL);
    }
}

/* CPU seconds (user + system) used by this process so far, all threads. */
static inline double bu_self_cpu_s(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ histogram */

#define BU_HIST_SUB_BITS 6
#define BU_HIST_SUB      (1u << BU_HIST_SUB_BITS)
#define BU_HIST_BUCKETS  ((64 - BU_HIST_SUB_BITS) * BU_HIST_SUB + BU_HIST_SUB)

struct bu_hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t bucket[BU_HIST_BUCKETS];
};

static inline unsigned bu_hist_index(uint64_t v)
{
    unsigned msb, shift;

    if (v < 2 * BU_HIST_SUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - BU_HIST_SUB_BITS;
    return shift * BU_HIST_SUB + (unsigned)(v >> shift);
}

/* The middle of a bucket's value range. */
static inline uint64_t bu_hist_value(unsigned idx)
{
    unsigned shift;

    if (idx < 2 * BU_HIST_SUB)
        return idx;
    shift = idx / BU_HIST_SUB - 1;
    return ((uint64_t)(idx - shift * BU_HIST_SUB) << shift) + ((1ull << shift) >> 1);
}

static inline void bu_hist_add(struct bu_hist *h, uint64_t v)
{
    h->bucket[bu_hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static inline void bu_hist_merge(struct bu_hist *dst, const struct bu_hist *src)
{
    for (unsigned i = 0; i < BU_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* Value at quantile q (0..1); 0 for an empty histogram. Never above the true maximum. */
static inline uint64_t bu_hist_quantile(const struct bu_hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank == 0)
        rank = 1;
    for (unsigned i = 0; i < BU_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = bu_hist_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* {"p50":..,"p90":..,"p99":..,"max":..,"mean":..} in milliseconds. */
static inline void bu_hist_json_ms(FILE *out, const struct bu_hist *h)
{
    double mean = h->count ? (double)h->sum / (double)h->count : 0;

    fprintf(out,
            "{\"samples\": %llu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
            "\"max\": %.3f, \"mean\": %.3f}",
            (unsigned long long)h->count, (double)bu_hist_quantile(h, 0.50) / 1e6,
            (double)bu_hist_quantile(h, 0.90) / 1e6, (double)bu_hist_quantile(h, 0.99) / 1e6,
            (double)h->max / 1e6, mean / 1e6);
}

static inline void bu_hist_print_ms(FILE *out, const char *label, const struct bu_hist *h)
{
    fprintf(out, "%s p50 %.3f  p90 %.3f  p99 %.3f  max %.3f ms (%llu samples)\n", label,
            (double)bu_hist_quantile(h, 0.50) / 1e6, (double)bu_hist_quantile(h, 0.90) / 1e6,
            (double)bu_hist_quantile(h, 0.99) / 1e6, (double)h->max / 1e6,
            (unsigned long long)h->count);
}

/* ------------------------------------------------------------------ /proc */

/* One look at another process: CPU seconds used so far (utime + stime, all threads, in
 * clock ticks of 10 ms), the same from the scheduler in ns (sum over its threads of
 * /proc/PID/task/TID/schedstat; 0 if unavailable) and resident set size. ok is false
 * if the process is gone or unreadable. */
struct bu_proc_sample {
    bool ok;
    double cpu_s;
    double sched_s;
    unsigned long rss_kb;
};

static inline bool bu_read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return false;
    n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

static inline bool bu_proc_cpu(pid_t pid, double *cpu_s)
{
    char path[64], buf[2048];
    unsigned long long utime, stime;
    const char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!bu_read_file(path, buf, sizeof(buf)))
        return false;
    p = strrchr(buf, ')'); /* the command name may contain spaces */
    /* After ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime(14) stime(15). */
    if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                            &stime) != 2)
        return false;
    *cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    return true;
}

static inline bool bu_proc_rss(pid_t pid, unsigned long *rss_kb)
{
    char path[64], buf[4096];
    const char *p;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!bu_read_file(path, buf, sizeof(buf)))
        return false;
    p = strstr(buf, "\nVmRSS:");
    return p != NULL && sscanf(p + 7, " %lu", rss_kb) == 1;
}

/* Sum of the first schedstat field (ns on CPU) over the threads alive now. */
static inline double bu_proc_sched_s(pid_t pid)
{
    char path[96], buf[128];
    unsigned long long ns, sum = 0;
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%.20s/schedstat", (int)pid, e->d_name);
        if (bu_read_file(path, buf, sizeof(buf)) && sscanf(buf, "%llu", &ns) == 1)
            sum += ns;
    }
    closedir(d);
    return (double)sum / 1e9;
}

static inline struct bu_proc_sample bu_proc_sample(pid_t pid)
{
    struct bu_proc_sample s = {0};

    if (pid > 0) {
        s.ok = bu_proc_cpu(pid, &s.cpu_s) && bu_proc_rss(pid, &s.rss_kb);
        s.sched_s = bu_proc_sched_s(pid);
    }
    return s;
}

/* Machine-wide CPU time from the first line of /proc/stat, in clock ticks. */
struct bu_sys_cpu {
    bool ok;
    unsigned long long total, idle, softirq;
};

static inline struct bu_sys_cpu bu_sys_cpu(void)
{
    struct bu_sys_cpu s = {0};
    unsigned long long v[8] = {0};
    char buf[512];

    if (!bu_read_file("/proc/stat", buf, sizeof(buf)) ||
        sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8)
        return s;
    for (int i = 0; i < 8; i++)
        s.total += v[i];
    s.idle = v[3] + v[4]; /* idle + iowait */
    s.softirq = v[6];
    s.ok = true;
    return s;
}

/* {"cpus": N, "busy": .., "softirq": ..}: fractions of all CPUs between two samples. */
static inline void bu_sys_cpu_json(FILE *out, struct bu_sys_cpu a, struct bu_sys_cpu b)
{
    double total = (double)(b.total - a.total);

    if (!a.ok || !b.ok || total <= 0) {
        fprintf(out, "null");
        return;
    }
    fprintf(out, "{\"cpus\": %ld, \"busy\": %.3f, \"softirq\": %.3f}",
            sysconf(_SC_NPROCESSORS_ONLN), 1.0 - (double)(b.idle - a.idle) / total,
            (double)(b.softirq - a.softirq) / total);
}

/* ------------------------------------------------------------------ parsing */

static inline bool bu_parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !(v >= 0 && v < 1e6))
        return false;
    *out = v;
    return true;
}

static inline bool bu_parse_ulong(const char *s, unsigned long min, unsigned long max,
                                  unsigned long *out)
{
    char *end;
    unsigned long v;

    if (!isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* HOST, HOST:PORT, [V6] or [V6]:PORT; HOST may be a name. Writes an address literal. */
static inline bool bu_parse_target(const char *arg, uint16_t default_port, char *host_out,
                                   size_t host_len, uint16_t *port_out)
{
    char host[256];
    const char *port = NULL, *colon = strrchr(arg, ':');
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res;
    unsigned long p = default_port;
    size_t n;
    const void *addr;
    bool ok;

    if (arg[0] == '[') {
        const char *rb = strchr(arg, ']');
        if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
            return false;
        n = (size_t)(rb - arg - 1);
        arg++;
        port = rb[1] == ':' ? rb + 2 : NULL;
    } else if (colon != NULL && strchr(arg, ':') == colon) {
        n = (size_t)(colon - arg);
        port = colon + 1;
    } else {
        n = strlen(arg);
    }
    if (n == 0 || n >= sizeof(host) || (port != NULL && !bu_parse_ulong(port, 1, 65535, &p)))
        return false;
    memcpy(host, arg, n);
    host[n] = '\0';
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    addr = res->ai_family == AF_INET
               ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
               : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    ok = inet_ntop(res->ai_family, addr, host_out, (socklen_t)host_len) != NULL;
    freeaddrinfo(res);
    *port_out = (uint16_t)p;
    return ok;
}

/* Raise the open-file limit to the hard limit (each client is one UDP socket). */
static inline void bu_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ------------------------------------------------------------ traffic shape */

/*
 * The traffic both programs generate, and the options that set it (shared so that a
 * relay run and its raw-UDP baseline always mean the same pattern).
 */
#define BU_PAYLOAD_MIN 16   /* sender index + sequence + timestamp */
#define BU_PAYLOAD_MAX 1138 /* WZP_MEDIA_MAX_DATAGRAM_BYTES - the 12-byte header */
#define BU_MAX_THREADS 64
#define BU_MAX_CLIENTS 100000

struct bu_shape {
    unsigned rooms, participants, speakers, rate, size, threads;
    double duration, warmup, drain;
    /* --acks quinn (default): a receiver acknowledges every packet at once, as the quinn
     * stack of real clients does; batch: once per received batch. */
    bool quinn_acks;
    /* --phases spread (default): the rooms take turns in the sending schedule, so a room's
     * speakers send at times spread over the period, as independent clients do; grouped:
     * a room's speakers one after the other (their packets reach the relay together). */
    bool spread;
};

/* The order speakers take turns in within each period: index i of R rooms x P
 * participants. grouped: by index; spread: by (place in the room, room). */
static inline unsigned long bu_speaker_rank(const struct bu_shape *s, unsigned i)
{
    unsigned p = s->participants;
    return s->spread ? (unsigned long)(i % p) * s->rooms + i / p : i;
}

enum {
    BU_OPT_ROOMS = 256,
    BU_OPT_PARTICIPANTS,
    BU_OPT_SPEAKERS,
    BU_OPT_RATE,
    BU_OPT_SIZE,
    BU_OPT_DURATION,
    BU_OPT_WARMUP,
    BU_OPT_DRAIN,
    BU_OPT_THREADS,
    BU_OPT_ACKS,
    BU_OPT_PHASES,
    BU_OPT_FIRST_OWN, /* each program numbers its own options from here */
};

/* getopt_long entries for the shape options, to start a program's option table. */
#define BU_SHAPE_LONG_OPTIONS                                                                      \
    {"rooms", required_argument, NULL, BU_OPT_ROOMS},                                              \
        {"participants", required_argument, NULL, BU_OPT_PARTICIPANTS},                            \
        {"speakers", required_argument, NULL, BU_OPT_SPEAKERS},                                    \
        {"rate", required_argument, NULL, BU_OPT_RATE},                                            \
        {"size", required_argument, NULL, BU_OPT_SIZE},                                            \
        {"duration", required_argument, NULL, BU_OPT_DURATION},                                    \
        {"warmup", required_argument, NULL, BU_OPT_WARMUP},                                        \
        {"drain", required_argument, NULL, BU_OPT_DRAIN},                                          \
        {"acks", required_argument, NULL, BU_OPT_ACKS},                                            \
        {"phases", required_argument, NULL, BU_OPT_PHASES},                                        \
    {                                                                                              \
        "threads", required_argument, NULL, BU_OPT_THREADS                                         \
    }

/* The defaults both programs start from (speakers UINT32_MAX: everyone speaks). */
#define BU_SHAPE_DEFAULTS                                                                          \
    {                                                                                              \
        .rooms = 1, .participants = 2, .speakers = UINT32_MAX, .rate = 50, .size = 100,            \
        .threads = 1, .duration = 10, .warmup = 1, .drain = 0.5, .quinn_acks = true,               \
        .spread = true                                                                             \
    }

static inline bool bu_set_uint(const char *arg, unsigned long min, unsigned long max, unsigned *out)
{
    unsigned long v;

    if (!bu_parse_ulong(arg, min, max, &v))
        return false;
    *out = (unsigned)v;
    return true;
}

/* Apply a shape option: 1 = applied, 0 = invalid value, -1 = not a shape option. */
static inline int bu_shape_option(struct bu_shape *s, int opt, const char *arg)
{
    switch (opt) {
    case BU_OPT_ROOMS:
        return bu_set_uint(arg, 1, BU_MAX_CLIENTS, &s->rooms);
    case BU_OPT_PARTICIPANTS:
        return bu_set_uint(arg, 1, BU_MAX_CLIENTS, &s->participants);
    case BU_OPT_SPEAKERS:
        return bu_set_uint(arg, 0, BU_MAX_CLIENTS, &s->speakers);
    case BU_OPT_RATE:
        return bu_set_uint(arg, 1, 10000, &s->rate);
    case BU_OPT_SIZE:
        return bu_set_uint(arg, BU_PAYLOAD_MIN, BU_PAYLOAD_MAX, &s->size);
    case BU_OPT_DURATION:
        return bu_parse_seconds(arg, &s->duration) && s->duration > 0;
    case BU_OPT_WARMUP:
        return bu_parse_seconds(arg, &s->warmup);
    case BU_OPT_DRAIN:
        return bu_parse_seconds(arg, &s->drain);
    case BU_OPT_THREADS:
        return bu_set_uint(arg, 1, BU_MAX_THREADS, &s->threads);
    case BU_OPT_ACKS:
        if (strcmp(arg, "quinn") != 0 && strcmp(arg, "batch") != 0) {
            fprintf(stderr, "--acks expects quinn or batch, got \"%s\"\n", arg);
            return 0;
        }
        s->quinn_acks = strcmp(arg, "quinn") == 0;
        return 1;
    case BU_OPT_PHASES:
        if (strcmp(arg, "spread") != 0 && strcmp(arg, "grouped") != 0) {
            fprintf(stderr, "--phases expects spread or grouped, got \"%s\"\n", arg);
            return 0;
        }
        s->spread = strcmp(arg, "spread") == 0;
        return 1;
    default:
        return -1;
    }
}

#endif
