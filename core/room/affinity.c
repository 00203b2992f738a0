/*
 * affinity.c - the room -> worker table (see affinity.h).
 */
#include "affinity.h"

#include "common.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct wzp_aff_entry {
    struct wzp_aff_entry *next;
    uint64_t hash;
    uint64_t picked_ns; /* when a pick created it (pending) */
    uint32_t refs;      /* connections that read their ClientHello */
    unsigned worker;
    bool pending; /* picked, no connection yet: counts one load on its worker */
    char name[];
};

int wzp_affinity_init(struct wzp_affinity *a, unsigned nworkers, size_t cap)
{
    memset(a, 0, sizeof *a);
    a->nworkers = nworkers ? nworkers : 1;
    a->cap = cap;
    a->nbuckets = 1024;
    while (a->nbuckets < cap && a->nbuckets < (1u << 20))
        a->nbuckets *= 2;
    a->buckets = calloc(a->nbuckets, sizeof *a->buckets);
    a->load = calloc(a->nworkers, sizeof *a->load);
    if (!a->buckets || !a->load || pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a->buckets);
        free(a->load);
        return WZP_ENOMEM;
    }
    return WZP_OK;
}

void wzp_affinity_free(struct wzp_affinity *a)
{
    if (!a->buckets)
        return;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct wzp_aff_entry *e = a->buckets[i];
        while (e) {
            struct wzp_aff_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(a->buckets);
    free(a->load);
    pthread_mutex_destroy(&a->lock);
    memset(a, 0, sizeof *a);
}

static struct wzp_aff_entry **find(struct wzp_affinity *a, const char *name, uint64_t h)
{
    struct wzp_aff_entry **pp = &a->buckets[h & (a->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->name, name) == 0)
            return pp;
    return pp; /* the empty tail: *pp == NULL */
}

static struct wzp_aff_entry *insert(struct wzp_affinity *a, struct wzp_aff_entry **tail,
                                    const char *name, uint64_t h, unsigned worker)
{
    size_t n = strlen(name);
    struct wzp_aff_entry *e = calloc(1, sizeof *e + n + 1);
    if (!e)
        return NULL;
    e->hash = h;
    e->worker = worker;
    memcpy(e->name, name, n + 1);
    *tail = e;
    a->nentries++;
    return e;
}

static void unlink_entry(struct wzp_affinity *a, struct wzp_aff_entry **pp)
{
    struct wzp_aff_entry *e = *pp;
    *pp = e->next;
    free(e);
    a->nentries--;
}

/* Drop rooms picked long ago whose connection never arrived (refused, lost). */
static void sweep_pending(struct wzp_affinity *a, uint64_t now_ns)
{
    if (now_ns < a->next_sweep_ns)
        return;
    a->next_sweep_ns = now_ns + WZP_AFFINITY_PENDING_NS / 2;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct wzp_aff_entry **pp = &a->buckets[i];
        while (*pp) {
            struct wzp_aff_entry *e = *pp;
            if (e->pending && now_ns - e->picked_ns >= WZP_AFFINITY_PENDING_NS) {
                a->load[e->worker]--;
                if (e->refs == 0) {
                    unlink_entry(a, pp);
                    continue;
                }
                e->pending = false;
            }
            pp = &e->next;
        }
    }
}

static unsigned least_loaded(const struct wzp_affinity *a, uint64_t h)
{
    /* Ties go to a worker chosen by the name, so equal loads do not all pick worker 0. */
    unsigned best = (unsigned)(h % a->nworkers);
    for (unsigned i = 0; i < a->nworkers; i++)
        if (a->load[i] < a->load[best])
            best = i;
    return best;
}

unsigned wzp_affinity_pick(struct wzp_affinity *a, const char *name, uint64_t now_ns)
{
    uint64_t h = wzp_fnv1a(name, strlen(name));
    pthread_mutex_lock(&a->lock);
    sweep_pending(a, now_ns);
    struct wzp_aff_entry **pp = find(a, name, h);
    unsigned w;
    if (*pp) {
        w = (*pp)->worker;
    } else if (a->nentries >= a->cap) {
        w = (unsigned)(h % a->nworkers);
        a->hashed_overflow++;
    } else {
        w = least_loaded(a, h);
        struct wzp_aff_entry *e = insert(a, pp, name, h, w);
        if (e) {
            e->pending = true;
            e->picked_ns = now_ns;
            a->load[w]++;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return w;
}

void wzp_affinity_ref(struct wzp_affinity *a, const char *name, unsigned worker, uint64_t now_ns)
{
    uint64_t h = wzp_fnv1a(name, strlen(name));
    pthread_mutex_lock(&a->lock);
    sweep_pending(a, now_ns);
    a->load[worker]++;
    struct wzp_aff_entry **pp = find(a, name, h);
    struct wzp_aff_entry *e = *pp;
    if (!e && a->nentries < a->cap)
        e = insert(a, pp, name, h, worker);
    if (e) {
        if (e->pending) {
            e->pending = false;
            a->load[e->worker]--;
        }
        e->refs++;
    }
    pthread_mutex_unlock(&a->lock);
}

void wzp_affinity_unref(struct wzp_affinity *a, const char *name, unsigned worker)
{
    uint64_t h = wzp_fnv1a(name, strlen(name));
    pthread_mutex_lock(&a->lock);
    if (a->load[worker])
        a->load[worker]--;
    struct wzp_aff_entry **pp = find(a, name, h);
    struct wzp_aff_entry *e = *pp;
    if (e && e->refs && --e->refs == 0 && !e->pending)
        unlink_entry(a, pp);
    pthread_mutex_unlock(&a->lock);
}

size_t wzp_affinity_rooms(struct wzp_affinity *a)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->nentries;
    pthread_mutex_unlock(&a->lock);
    return n;
}

uint64_t wzp_affinity_load(struct wzp_affinity *a, unsigned worker)
{
    pthread_mutex_lock(&a->lock);
    uint64_t n = worker < a->nworkers ? a->load[worker] : 0;
    pthread_mutex_unlock(&a->lock);
    return n;
}
