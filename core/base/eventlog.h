/*
 * eventlog.h - the event log (--event-log PATH): one JSON object per line for joins,
 * leaves, refusals, tier changes, reloads, drains, start and stop.
 *
 *   {"ts":"2026-11-29T03:40:00.123Z","event":"join","room":"lobby",...}
 *
 * Process-wide; any thread may emit. Each line is one write(2) to a file opened with
 * O_APPEND, under a mutex that reopening also takes, so a SIGHUP reopen (log rotation)
 * never splits or loses a line. Events are control-plane: nothing per packet.
 */
#ifndef WZP_EVENTLOG_H
#define WZP_EVENTLOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define WZP_EVENT_MAX_BYTES 2048

/*
 * A JSON-lines file any thread appends whole lines to: the event log below is one, the
 * policy decision log (policy.h) another. open/reopen/close as for the event log.
 */
struct wzp_linelog {
    pthread_mutex_t lock;
    int fd;
    char path[4096];
    _Atomic bool enabled;
    const char *what; /* "event log", "decision log": for messages */
};
#define WZP_LINELOG_INIT(what)                                                                     \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, -1, "", false, what                                             \
    }

int wzp_linelog_open(struct wzp_linelog *l, const char *path, char *err, size_t errlen);
int wzp_linelog_reopen(struct wzp_linelog *l, char *err, size_t errlen);
void wzp_linelog_close(struct wzp_linelog *l);
bool wzp_linelog_enabled(struct wzp_linelog *l);
/* Append one line (data must end with '\n') in one write(2). */
void wzp_linelog_write(struct wzp_linelog *l, const char *data, size_t len);

/* Open (creating, mode 0640) or reopen path. err says why on failure. */
int wzp_eventlog_open(const char *path, char *err, size_t errlen);
/* Reopen the same path (after logrotate moved the file). */
int wzp_eventlog_reopen(char *err, size_t errlen);
void wzp_eventlog_close(void);
bool wzp_eventlog_enabled(void);

/* Build one event: begin, add fields (a NULL string value is skipped), emit. */
struct wzp_event {
    char buf[WZP_EVENT_MAX_BYTES];
    size_t len;
    bool overflow;
};

void wzp_event_begin(struct wzp_event *e, const char *name);
void wzp_event_str(struct wzp_event *e, const char *key, const char *value);
void wzp_event_int(struct wzp_event *e, const char *key, long long value);
void wzp_event_emit(struct wzp_event *e);

#endif
