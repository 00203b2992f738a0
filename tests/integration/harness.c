/* harness.c - see harness.h. */
#include "harness.h"

#include "stats.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port on loopback that is free now for sockets of this type (SOCK_DGRAM, SOCK_STREAM). */
static uint16_t free_port(int type)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static char *read_log(struct relay_proc *r)
{
    FILE *f = fopen(r->log_path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

unsigned relay_log_count(struct relay_proc *r, const char *needle)
{
    char *log = read_log(r);
    unsigned n = 0;
    for (char *p = log; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(log);
    return n;
}

bool relay_log_wait(struct relay_proc *r, const char *needle, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 20) {
        if (relay_log_count(r, needle) > 0)
            return true;
        if (waited >= timeout_ms)
            return false;
        sleep_ms(20);
    }
}

void relay_dump_log(struct relay_proc *r)
{
    char *log = read_log(r);
    fprintf(stderr, "---- relay log (%s) ----\n%s---- end ----\n", r->log_path, log);
    free(log);
}

/* Scratch directories of this test process, removed with their files when it exits. */
static char scratch[64][64];
static unsigned nscratch;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_scratch(void)
{
    for (unsigned i = 0; i < nscratch; i++)
        nftw(scratch[i], remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    nscratch = 0;
}

void scratch_dir(char *dir, size_t size, const char *name)
{
    cr_assert_lt(nscratch, sizeof scratch / sizeof scratch[0], "too many scratch directories");
    snprintf(dir, size, "/tmp/wzp-%s-XXXXXX", name);
    cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    cr_assert_lt(strlen(dir), sizeof scratch[0]);
    static bool registered;
    if (!registered)
        registered = atexit(remove_scratch) == 0;
    strcpy(scratch[nscratch++], dir);
}

static pid_t spawn_relay(struct relay_proc *r, const char *identity_content,
                         const char *const *extra_args, bool with_http)
{
    memset(r, 0, sizeof *r);
    scratch_dir(r->dir, sizeof r->dir, "it");
    snprintf(r->log_path, sizeof r->log_path, "%s/relay.log", r->dir);
    r->port = free_port(SOCK_DGRAM);
    char listen[64], identity[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", r->port);
    snprintf(identity, sizeof identity, "%s/identity", r->dir);
    if (identity_content) {
        FILE *f = fopen(identity, "w");
        cr_assert_not_null(f);
        fputs(identity_content, f);
        fclose(f);
    }
    const char *argv[64] = {WZP_RELAY_BIN, "--listen",    listen, "-i",
                            identity,      "--log-level", "debug"};
    int argc = 7;
    for (int i = 0; extra_args && extra_args[i] && argc < 60; i++) {
        if (strcmp(extra_args[i], "--metrics-port") == 0 && extra_args[i + 1])
            r->http_port = (unsigned)atoi(extra_args[i + 1]);
        argv[argc++] = extra_args[i];
    }
    static char http_port[16];
    if (with_http && !r->http_port) {
        r->http_port = tcp_free_port();
        snprintf(http_port, sizeof http_port, "%u", r->http_port);
        argv[argc++] = "--metrics-port";
        argv[argc++] = http_port;
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(r->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        execv(WZP_RELAY_BIN, (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    return pid;
}

void relay_start(struct relay_proc *r, const char *const *extra_args)
{
    relay_start_with_identity(r, NULL, extra_args);
}

void relay_start_with_identity(struct relay_proc *r, const char *identity_content,
                               const char *const *extra_args)
{
    pid_t pid = spawn_relay(r, identity_content, extra_args, true);
    if (!relay_log_wait(r, "listening on udp", 5000)) {
        relay_dump_log(r);
        kill(pid, SIGKILL);
        cr_assert_fail("relay did not start");
    }
    sleep_ms(50); /* workers enter their loops */
}

int relay_run_to_exit(struct relay_proc *r, const char *identity_content,
                      const char *const *extra_args, unsigned timeout_ms)
{
    pid_t pid = spawn_relay(r, identity_content, extra_args, false);
    int status;
    for (unsigned waited = 0; waitpid(pid, &status, WNOHANG) != pid; waited += 10) {
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            r->pid = 0;
            cr_assert_fail("relay did not exit within %u ms", timeout_ms);
        }
        sleep_ms(10);
    }
    r->pid = 0;
    r->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->exit_checked = true;
    return r->exit_status;
}

int relay_stop(struct relay_proc *r, unsigned timeout_ms)
{
    if (r->pid <= 0)
        return -1;
    kill(r->pid, SIGTERM);
    int status;
    for (unsigned waited = 0;; waited += 10) {
        pid_t p = waitpid(r->pid, &status, WNOHANG);
        if (p == r->pid)
            break;
        if (waited >= timeout_ms) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &status, 0);
            r->pid = 0;
            r->exit_status = -1;
            return -1;
        }
        sleep_ms(10);
    }
    r->pid = 0;
    r->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r->exit_status;
}

void relay_finish(struct relay_proc *r)
{
    if (r->exit_checked)
        return;
    int rc = r->pid > 0 ? relay_stop(r, 3000) : r->exit_status;
    bool sanitizer = relay_log_count(r, "Sanitizer") > 0;
    if (rc != 0 || sanitizer) {
        relay_dump_log(r);
        cr_assert_fail("relay exit status %d%s", rc, sanitizer ? ", sanitizer report" : "");
    }
}

/* Where /metrics exports each counter (stats.h): family, label value; the family's label
 * name and whether it is per worker. */
struct counter_series {
    const char *field, *family, *label;
};
static const struct counter_series counter_series[] = {
#define HARNESS_SERIES(field, family, label, help) {#field, #family, label},
    WZP_STATS_FIELDS(HARNESS_SERIES)
#undef HARNESS_SERIES
};
struct counter_family {
    const char *name, *label_name;
    bool per_worker;
};
static const struct counter_family counter_families[] = {
#define HARNESS_FAMILY(family, label, per_worker, help) {#family, label, per_worker},
    WZP_STATS_FAMILIES(HARNESS_FAMILY)
#undef HARNESS_FAMILY
};

/* Relay-wide counters outside stats.h, by their stats-line names. */
static const struct {
    const char *name, *series;
} other_counters[] = {
    {"policy_reloads_ok", "wzp_relay_policy_reloads_total{result=\"ok\"}"},
    {"policy_reloads_failed", "wzp_relay_policy_reloads_total{result=\"failed\"}"},
};

uint64_t relay_counter(struct relay_proc *r, const char *name)
{
    static char scrape[256 * 1024];
    for (size_t i = 0; i < sizeof other_counters / sizeof other_counters[0]; i++) {
        if (strcmp(other_counters[i].name, name) != 0)
            continue;
        cr_assert_eq(http_request(r->http_port, "GET", "/metrics", NULL, scrape, sizeof scrape),
                     200);
        double v = scrape_value(scrape, other_counters[i].series);
        cr_assert(!isnan(v), "%s in /metrics", other_counters[i].series);
        return (uint64_t)v;
    }
    const struct counter_series *ser = NULL;
    for (size_t i = 0; i < sizeof counter_series / sizeof counter_series[0]; i++)
        if (strcmp(counter_series[i].field, name) == 0)
            ser = &counter_series[i];
    cr_assert_not_null(ser, "no counter %s in stats.h", name);
    const struct counter_family *fam = NULL;
    for (size_t i = 0; i < sizeof counter_families / sizeof counter_families[0]; i++)
        if (strcmp(counter_families[i].name, ser->family) == 0)
            fam = &counter_families[i];
    cr_assert_not_null(fam, "no family %s in stats.h", ser->family);
    cr_assert(r->http_port, "the relay serves no /metrics");
    cr_assert_eq(http_request(r->http_port, "GET", "/metrics", NULL, scrape, sizeof scrape), 200);
    char series[160];
    double v;
    if (fam->per_worker) {
        snprintf(series, sizeof series, "wzp_relay_%s_total", fam->name);
        v = scrape_sum(scrape, series);
    } else {
        if (fam->label_name[0])
            snprintf(series, sizeof series, "wzp_relay_%s_total{%s=\"%s\"}", fam->name,
                     fam->label_name, ser->label);
        else
            snprintf(series, sizeof series, "wzp_relay_%s_total", fam->name);
        v = scrape_value(scrape, series);
    }
    cr_assert(!isnan(v), "%s (counter %s) in /metrics", series, name);
    return (uint64_t)v;
}

uint64_t relay_log_counter(struct relay_proc *r, const char *name)
{
    unsigned before = relay_log_count(r, "stats:");
    kill(r->pid, SIGUSR1);
    for (unsigned waited = 0; relay_log_count(r, "stats:") <= before && waited < 3000; waited += 10)
        sleep_ms(10);
    char *log = read_log(r);
    char key[96];
    snprintf(key, sizeof key, " %s=", name);
    uint64_t value = UINT64_MAX;
    /* the last stats line wins */
    for (char *p = log; (p = strstr(p, key)); p += strlen(key))
        value = strtoull(p + strlen(key), NULL, 10);
    free(log);
    cr_assert(value != UINT64_MAX, "counter %s not found in the relay log", name);
    return value;
}

/* ---------------------------------------------------------------- HTTP endpoint */

unsigned tcp_free_port(void)
{
    return free_port(SOCK_STREAM);
}

int http_request(unsigned port, const char *method, const char *path, const char *token, char *body,
                 size_t bodylen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect to /metrics port");
    char req[512];
    int n =
        snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n%s%s%s\r\n", method, path,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    cr_assert_eq(write(fd, req, (size_t)n), n);
    static char resp[256 * 1024];
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 3000), 1, "HTTP reply within 3 s");
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(body, bodylen, "%s", b ? b + 4 : "");
    return status;
}

double scrape_value(const char *scrape, const char *series)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = strstr(scrape, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

double scrape_sum(const char *scrape, const char *name)
{
    double sum = NAN;
    size_t n = strlen(name);
    for (const char *line = scrape; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, n) != 0 || (line[n] != ' ' && line[n] != '{'))
            continue;
        const char *v = line[n] == ' ' ? line + n : strchr(line + n, '}');
        if (!v)
            continue;
        sum = (isnan(sum) ? 0 : sum) + strtod(v + (*v == '}'), NULL);
    }
    return sum;
}

/* ---------------------------------------------------------------- test clients */

#include "common.h"
#include "media.h"

static void tc_on_signal(struct wzpc_client *c, const struct wzp_signal *sig, void *ud)
{
    (void)c;
    struct tc *t = ud;
    switch (sig->type) {
    case WZP_SIG_CALL_ANSWER:
        t->answers++;
        break;
    case WZP_SIG_ROOM_UPDATE:
        if (t->room_updates < TC_MAX_EVENTS)
            t->update_counts[t->room_updates] = sig->u.room_update.count;
        t->last_update_count = sig->u.room_update.count;
        t->room_updates++;
        memset(t->last_update, 0, sizeof t->last_update);
        for (size_t i = 0; i < sig->u.room_update.participants.count && i < TC_MAX_SENDERS; i++)
            snprintf(t->last_update[i], sizeof t->last_update[i], "%s",
                     sig->u.room_update.participants.items[i].fingerprint);
        break;
    case WZP_SIG_QUALITY_DIRECTIVE:
        if (t->directives < TC_MAX_EVENTS)
            snprintf(t->directive_reasons[t->directives], 48, "%s",
                     sig->u.quality_directive.reason ? sig->u.quality_directive.reason : "");
        t->directives++;
        break;
    default:
        t->other_signals++;
    }
}

static void tc_on_datagram(struct wzpc_client *c, const uint8_t *data, size_t len, void *ud)
{
    (void)c;
    struct tc *t = ud;
    t->media_total++;
    if (len < WZP_MEDIA_HEADER_BYTES + 3 || data[WZP_MEDIA_HEADER_BYTES] >= TC_MAX_SENDERS) {
        t->media_malformed++;
        return;
    }
    t->from[data[WZP_MEDIA_HEADER_BYTES]]++;
}

static void tc_on_uni(struct wzpc_client *c, const uint8_t *data, size_t len, void *ud)
{
    (void)c;
    struct tc *t = ud;
    t->uni_len = len < sizeof t->uni - 1 ? len : sizeof t->uni - 1;
    memcpy(t->uni, data, t->uni_len);
    t->uni[t->uni_len] = '\0';
}

void tc_connect(struct tc *t, struct ev_loop *loop, struct relay_proc *r, const char *room,
                uint8_t id, struct wzpc_config *overrides)
{
    memset(t, 0, sizeof *t);
    t->id = id;
    struct wzpc_config cfg;
    if (overrides)
        cfg = *overrides;
    else
        memset(&cfg, 0, sizeof cfg);
    cfg.loop = loop;
    if (!cfg.host)
        cfg.host = "127.0.0.1";
    if (!cfg.port)
        cfg.port = r->port;
    if (!overrides) {
        cfg.sni = room;
        cfg.auto_join = true;
    }
    char alias[16];
    snprintf(alias, sizeof alias, "client-%u", id);
    if (!cfg.alias)
        cfg.alias = alias;
    cfg.on_signal = tc_on_signal;
    cfg.on_datagram = tc_on_datagram;
    cfg.on_uni_stream = tc_on_uni;
    cfg.user_data = t;
    t->c = wzpc_connect(&cfg);
    cr_assert_not_null(t->c, "wzpc_connect failed");
}

struct wait_state_arg {
    struct tc *t;
    enum wzpc_state state;
};

static bool reached_state(void *arg)
{
    struct wait_state_arg *a = arg;
    enum wzpc_state s = wzpc_state(a->t->c);
    return s == a->state || s == WZPC_CLOSED;
}

bool tc_wait_state(struct tc *t, struct ev_loop *loop, enum wzpc_state state, unsigned ms)
{
    struct wait_state_arg a = {t, state};
    wzpc_run_until(loop, reached_state, &a, ms);
    return wzpc_state(t->c) == state;
}

struct wait_updates_arg {
    struct tc *t;
    unsigned n;
};

static bool has_updates(void *arg)
{
    struct wait_updates_arg *a = arg;
    return a->t->room_updates >= a->n || wzpc_state(a->t->c) == WZPC_CLOSED;
}

bool tc_wait_updates(struct tc *t, struct ev_loop *loop, unsigned n, unsigned ms)
{
    struct wait_updates_arg a = {t, n};
    wzpc_run_until(loop, has_updates, &a, ms);
    return t->room_updates >= n;
}

void tc_send_media(struct tc *t, const struct wzp_quality_report *report)
{
    uint8_t pkt[64];
    struct wzp_media_header h = {.codec = WZP_CODEC_OPUS24K,
                                 .seq = t->seq,
                                 .timestamp_ms = (uint32_t)t->seq * 20u,
                                 .has_quality = report != NULL};
    wzp_media_write_header(&h, pkt);
    size_t len = WZP_MEDIA_HEADER_BYTES;
    pkt[len++] = t->id;
    pkt[len++] = (uint8_t)(t->seq >> 8);
    pkt[len++] = (uint8_t)t->seq;
    if (report) {
        wzp_media_write_report(report, pkt + len);
        len += WZP_QUALITY_REPORT_BYTES;
    }
    t->seq++;
    cr_assert_eq(wzpc_send_datagram(t->c, pkt, len), WZP_OK);
}

void tc_send_media_size(struct tc *t, size_t payload_bytes)
{
    uint8_t pkt[WZP_MEDIA_MAX_DATAGRAM_BYTES];
    struct wzp_media_header h = {.codec = WZP_CODEC_OPUS64K, .seq = t->seq};
    cr_assert(payload_bytes >= 3 && payload_bytes + WZP_MEDIA_HEADER_BYTES <= sizeof pkt);
    wzp_media_write_header(&h, pkt);
    memset(pkt + WZP_MEDIA_HEADER_BYTES, 0xab, payload_bytes);
    pkt[WZP_MEDIA_HEADER_BYTES] = t->id;
    pkt[WZP_MEDIA_HEADER_BYTES + 1] = (uint8_t)(t->seq >> 8);
    pkt[WZP_MEDIA_HEADER_BYTES + 2] = (uint8_t)t->seq;
    t->seq++;
    cr_assert_eq(wzpc_send_datagram(t->c, pkt, WZP_MEDIA_HEADER_BYTES + payload_bytes), WZP_OK);
}

void tc_free(struct tc *t)
{
    if (t->c)
        wzpc_free(t->c);
    t->c = NULL;
}

void relay_finish_with_loop(struct relay_proc *r, struct ev_loop **loop)
{
    relay_finish(r);
    if (*loop)
        ev_loop_destroy(*loop);
    *loop = NULL;
}

/* ---- floods ---- */

#include <pthread.h>

void capture_initials(const char *sni, size_t n, uint8_t (*pkts)[FLOOD_PKT_MAX], size_t *lens)
{
    size_t got = wzpc_capture_initials(sni, n, pkts, lens, 20000);
    cr_assert_eq(got, n, "captured only %zu of %zu Initials", got, n);
}

struct flood {
    pthread_t thread;
    uint16_t port;
    uint8_t (*pkts)[FLOOD_PKT_MAX];
    const size_t *lens;
    size_t n;
    unsigned rate, ms, nsources;
    int *fds;
    struct flood_stats stats;
};

static void flood_drain(struct flood *f)
{
    uint8_t buf[2048];
    for (unsigned i = 0; i < f->nsources; i++) {
        ssize_t len;
        while ((len = recv(f->fds[i], buf, sizeof buf, MSG_DONTWAIT)) > 0) {
            f->stats.replies++;
            f->stats.reply_bytes += (uint64_t)len;
        }
    }
}

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons(f->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint64_t start = wzp_now_ns(), end = start + (uint64_t)f->ms * 1000000ull;
    size_t next = 0;
    unsigned src = 0;
    for (uint64_t now = start; now < end; now = wzp_now_ns()) {
        /* Catch up with the schedule in 2 ms steps. */
        uint64_t due = (now - start) * f->rate / 1000000000ull + 1;
        while (f->stats.sent < due) {
            int fd = f->fds[src];
            src = (src + 1) % f->nsources;
            if (sendto(fd, f->pkts[next], f->lens[next], 0, (struct sockaddr *)&to, sizeof to) < 0)
                f->stats.send_errors++;
            f->stats.sent++;
            next = (next + 1) % f->n;
        }
        flood_drain(f);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    flood_drain(f);
    return NULL;
}

struct flood *flood_start(struct relay_proc *r, uint8_t (*pkts)[FLOOD_PKT_MAX], const size_t *lens,
                          size_t n, unsigned rate, unsigned ms, unsigned nsources)
{
    struct flood *f = calloc(1, sizeof *f);
    cr_assert_not_null(f);
    cr_assert(nsources > 0 && nsources <= 250 * 250);
    f->port = r->port;
    f->pkts = pkts;
    f->lens = lens;
    f->n = n;
    f->rate = rate;
    f->ms = ms;
    f->nsources = nsources;
    f->fds = calloc(nsources, sizeof *f->fds);
    cr_assert_not_null(f->fds);
    for (unsigned i = 0; i < nsources; i++) {
        f->fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        cr_assert(f->fds[i] >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((i / 250) << 8) | (i % 250 + 1));
        cr_assert_eq(bind(f->fds[i], (struct sockaddr *)&a, sizeof a), 0, "bind 127.1.%u.%u: %s",
                     i / 250, i % 250 + 1, strerror(errno));
    }
    cr_assert_eq(pthread_create(&f->thread, NULL, flood_main, f), 0);
    return f;
}

void flood_join(struct flood *f, struct flood_stats *out)
{
    pthread_join(f->thread, NULL);
    for (unsigned i = 0; i < f->nsources; i++)
        close(f->fds[i]);
    if (out)
        *out = f->stats;
    free(f->fds);
    free(f);
}
