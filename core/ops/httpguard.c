/* httpguard.c - request-head deadlines for the HTTP server (see httpguard.h). */
#include "httpguard.h"

#include "common.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MOD          "http"
#define SWEEP_NS     250000000ull
#define LOG_EVERY_NS (10ull * 1000000000ull)

void wzp_httpguard_init(struct wzp_httpguard *g, unsigned head_deadline_ms)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->wake, &ca);
    pthread_condattr_destroy(&ca);
    g->head_deadline_ns = (uint64_t)head_deadline_ms * 1000000ull;
    for (unsigned i = 0; i < WZP_HTTPGUARD_MAX; i++)
        g->conns[i].fd = -1;
    atomic_init(&g->closed_slow, 0);
}

int wzp_httpguard_open(struct wzp_httpguard *g, int fd, const char *peer, uint64_t now_ns)
{
    int slot = -1;
    pthread_mutex_lock(&g->lock);
    for (unsigned i = 0; i < WZP_HTTPGUARD_MAX && slot < 0; i++)
        if (g->conns[i].fd < 0) {
            struct wzp_httpguard_conn *c = &g->conns[i];
            c->fd = fd;
            c->head_done = false;
            c->shut = false;
            c->since_ns = now_ns;
            snprintf(c->peer, sizeof c->peer, "%s", peer);
            slot = (int)i;
        }
    pthread_mutex_unlock(&g->lock);
    return slot;
}

static struct wzp_httpguard_conn *conn_at(struct wzp_httpguard *g, int slot)
{
    return slot >= 0 && slot < WZP_HTTPGUARD_MAX ? &g->conns[slot] : NULL;
}

void wzp_httpguard_head_done(struct wzp_httpguard *g, int slot)
{
    pthread_mutex_lock(&g->lock);
    struct wzp_httpguard_conn *c = conn_at(g, slot);
    if (c)
        c->head_done = true;
    pthread_mutex_unlock(&g->lock);
}

void wzp_httpguard_request_done(struct wzp_httpguard *g, int slot, uint64_t now_ns)
{
    pthread_mutex_lock(&g->lock);
    struct wzp_httpguard_conn *c = conn_at(g, slot);
    if (c) {
        c->head_done = false;
        c->since_ns = now_ns;
    }
    pthread_mutex_unlock(&g->lock);
}

void wzp_httpguard_close(struct wzp_httpguard *g, int slot)
{
    pthread_mutex_lock(&g->lock);
    struct wzp_httpguard_conn *c = conn_at(g, slot);
    if (c)
        c->fd = -1;
    pthread_mutex_unlock(&g->lock);
}

unsigned wzp_httpguard_sweep(struct wzp_httpguard *g, uint64_t now_ns)
{
    unsigned n = 0;
    char last[64] = "";
    pthread_mutex_lock(&g->lock);
    for (unsigned i = 0; i < WZP_HTTPGUARD_MAX; i++) {
        struct wzp_httpguard_conn *c = &g->conns[i];
        if (c->fd < 0 || c->head_done || c->shut || now_ns - c->since_ns < g->head_deadline_ns)
            continue;
        /* The server still owns the socket (it tells us before closing it, under this
         * lock): ending it makes the server's next poll see the end and free it. */
        shutdown(c->fd, SHUT_RDWR);
        c->shut = true;
        snprintf(last, sizeof last, "%s", c->peer);
        n++;
    }
    uint64_t total = atomic_fetch_add(&g->closed_slow, n) + n;
    bool log = n && wzp_log_due(&g->logged_ns, now_ns, LOG_EVERY_NS);
    uint64_t since = total - g->logged_at;
    if (log)
        g->logged_at = total;
    pthread_mutex_unlock(&g->lock);
    if (log)
        WZP_WARN(MOD,
                 "closed %llu HTTP connection%s that did not send a request within %llu ms "
                 "(latest from %s)",
                 (unsigned long long)since, since == 1 ? "" : "s",
                 (unsigned long long)(g->head_deadline_ns / 1000000ull), last);
    return n;
}

static void *sweeper(void *arg)
{
    struct wzp_httpguard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)SWEEP_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->wake, &g->lock, &ts);
        if (g->stopping)
            break;
        pthread_mutex_unlock(&g->lock);
        wzp_httpguard_sweep(g, wzp_now_ns());
        pthread_mutex_lock(&g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int wzp_httpguard_start(struct wzp_httpguard *g)
{
    if (pthread_create(&g->thread, NULL, sweeper, g) != 0)
        return WZP_ENOMEM;
    g->running = true;
    return WZP_OK;
}

void wzp_httpguard_stop(struct wzp_httpguard *g)
{
    if (g->running) {
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
        g->running = false;
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
}
