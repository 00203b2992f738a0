/* eventlog.c - the JSON-lines event log (see eventlog.h). */
#include "eventlog.h"

#include "common.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fd = -1;
static char path_open[4096];
static _Atomic bool enabled;

int wzp_eventlog_open(const char *path, char *err, size_t errlen)
{
    int nfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (nfd < 0) {
        snprintf(err, errlen, "cannot open event log %s: %s", path, strerror(errno));
        return WZP_EIO;
    }
    pthread_mutex_lock(&lock);
    int old = fd;
    fd = nfd;
    if (path != path_open)
        snprintf(path_open, sizeof path_open, "%s", path);
    pthread_mutex_unlock(&lock);
    if (old >= 0)
        close(old);
    atomic_store(&enabled, true);
    return WZP_OK;
}

int wzp_eventlog_reopen(char *err, size_t errlen)
{
    if (!atomic_load(&enabled))
        return WZP_OK;
    return wzp_eventlog_open(path_open, err, errlen);
}

void wzp_eventlog_close(void)
{
    atomic_store(&enabled, false);
    pthread_mutex_lock(&lock);
    if (fd >= 0)
        close(fd);
    fd = -1;
    pthread_mutex_unlock(&lock);
}

bool wzp_eventlog_enabled(void)
{
    return atomic_load_explicit(&enabled, memory_order_relaxed);
}

static void append(struct wzp_event *e, const char *s, size_t n)
{
    if (e->len + n + 2 >= sizeof e->buf) { /* keep room for "}\n" */
        e->overflow = true;
        return;
    }
    memcpy(e->buf + e->len, s, n);
    e->len += n;
}

void wzp_event_begin(struct wzp_event *e, const char *name)
{
    char ts[32];
    wzp_log_timestamp(ts);
    e->len = 0;
    e->overflow = false;
    char head[96];
    int n = snprintf(head, sizeof head, "{\"ts\":\"%s\",\"event\":\"%s\"", ts, name);
    append(e, head, (size_t)n);
}

void wzp_event_str(struct wzp_event *e, const char *key, const char *value)
{
    if (!value)
        return;
    char esc[WZP_EVENT_MAX_BYTES];
    size_t n = wzp_json_escape(value, esc, sizeof esc);
    char k[80];
    int kn = snprintf(k, sizeof k, ",\"%s\":\"", key);
    append(e, k, (size_t)kn);
    append(e, esc, n);
    append(e, "\"", 1);
}

void wzp_event_int(struct wzp_event *e, const char *key, long long value)
{
    char k[112];
    int n = snprintf(k, sizeof k, ",\"%s\":%lld", key, value);
    append(e, k, (size_t)n);
}

void wzp_event_emit(struct wzp_event *e)
{
    if (!wzp_eventlog_enabled())
        return;
    if (e->overflow)
        append(e, ",\"truncated\":true", 17);
    e->buf[e->len++] = '}';
    e->buf[e->len++] = '\n';
    pthread_mutex_lock(&lock);
    if (fd >= 0 && write(fd, e->buf, e->len) < 0)
        WZP_WARN("eventlog", "write failed: %s", strerror(errno));
    pthread_mutex_unlock(&lock);
}
