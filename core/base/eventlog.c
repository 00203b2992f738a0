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

int wzp_linelog_open(struct wzp_linelog *l, const char *path, char *err, size_t errlen)
{
    int nfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (nfd < 0) {
        snprintf(err, errlen, "cannot open %s %s: %s", l->what, path, strerror(errno));
        return WZP_EIO;
    }
    pthread_mutex_lock(&l->lock);
    int old = l->fd;
    l->fd = nfd;
    if (path != l->path)
        snprintf(l->path, sizeof l->path, "%s", path);
    pthread_mutex_unlock(&l->lock);
    if (old >= 0)
        close(old);
    atomic_store(&l->enabled, true);
    return WZP_OK;
}

int wzp_linelog_reopen(struct wzp_linelog *l, char *err, size_t errlen)
{
    if (!atomic_load(&l->enabled))
        return WZP_OK;
    return wzp_linelog_open(l, l->path, err, errlen);
}

void wzp_linelog_close(struct wzp_linelog *l)
{
    atomic_store(&l->enabled, false);
    pthread_mutex_lock(&l->lock);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    pthread_mutex_unlock(&l->lock);
}

bool wzp_linelog_enabled(struct wzp_linelog *l)
{
    return atomic_load_explicit(&l->enabled, memory_order_relaxed);
}

void wzp_linelog_write(struct wzp_linelog *l, const char *data, size_t len)
{
    pthread_mutex_lock(&l->lock);
    if (l->fd >= 0 && write(l->fd, data, len) < 0)
        WZP_WARN("log", "%s: write failed: %s", l->what, strerror(errno));
    pthread_mutex_unlock(&l->lock);
}

static struct wzp_linelog events = WZP_LINELOG_INIT("event log");

int wzp_eventlog_open(const char *path, char *err, size_t errlen)
{
    return wzp_linelog_open(&events, path, err, errlen);
}

int wzp_eventlog_reopen(char *err, size_t errlen)
{
    return wzp_linelog_reopen(&events, err, errlen);
}

void wzp_eventlog_close(void)
{
    wzp_linelog_close(&events);
}

bool wzp_eventlog_enabled(void)
{
    return wzp_linelog_enabled(&events);
}

#define TRUNCATED_MARK 17 /* ,"truncated":true */

static void append_raw(struct wzp_event *e, const char *s, size_t n)
{
    memcpy(e->buf + e->len, s, n);
    e->len += n;
}

static void append(struct wzp_event *e, const char *s, size_t n)
{
    /* keep room for the truncation mark and "}\n" */
    if (e->len + n + TRUNCATED_MARK + 2 > sizeof e->buf) {
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

/* A field goes in whole or not at all (then the event is marked truncated), so the line
 * stays valid JSON whatever overflows. */
void wzp_event_str(struct wzp_event *e, const char *key, const char *value)
{
    if (!value)
        return;
    char field[WZP_EVENT_MAX_BYTES];
    int kn = snprintf(field, sizeof field, ",\"%s\":\"", key);
    if (kn < 0 || (size_t)kn + 2 > sizeof field) {
        e->overflow = true;
        return;
    }
    size_t n = (size_t)kn;
    n += wzp_json_escape(value, field + n, sizeof field - n - 1);
    if (n + 1 >= sizeof field) {
        e->overflow = true;
        return;
    }
    field[n++] = '"';
    append(e, field, n);
}

void wzp_event_int(struct wzp_event *e, const char *key, long long value)
{
    char k[112];
    int n = snprintf(k, sizeof k, ",\"%s\":%lld", key, value);
    if (n < 0 || (size_t)n >= sizeof k) {
        e->overflow = true;
        return;
    }
    append(e, k, (size_t)n);
}

void wzp_event_emit(struct wzp_event *e)
{
    if (!wzp_eventlog_enabled())
        return;
    if (e->overflow) /* the room for it is kept by append */
        append_raw(e, ",\"truncated\":true", 17);
    e->buf[e->len++] = '}';
    e->buf[e->len++] = '\n';
    wzp_linelog_write(&events, e->buf, e->len);
}
