/*
 * room.c - room table (name -> room) and the participant array of each room.
 * See room.h for the locking and ownership rules.
 */
#include "room.h"

#include "common.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/types.h>

static _Atomic uint64_t next_participant_id = 1;

uint64_t wzp_participant_next_id(void)
{
    return atomic_fetch_add_explicit(&next_participant_id, 1, memory_order_relaxed);
}

/* Room names are short and chosen by clients; the table is only hit at join and leave. */
static size_t name_hash(const char *s)
{
    return (size_t)wzp_fnv1a(s, strlen(s));
}

int wzp_room_table_init(struct wzp_room_table *t, size_t nbuckets)
{
    memset(t, 0, sizeof *t);
    t->buckets = calloc(nbuckets, sizeof *t->buckets);
    if (!t->buckets)
        return WZP_ENOMEM;
    t->nbuckets = nbuckets;
    pthread_mutex_init(&t->lock, NULL);
    return WZP_OK;
}

static void room_free(struct wzp_room *r)
{
    pthread_rwlock_destroy(&r->lock);
    free(r->parts);
    free(r->groups);
    free(r);
}

void wzp_room_table_destroy(struct wzp_room_table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct wzp_room *r = t->buckets[i];
        while (r) {
            struct wzp_room *next = r->next;
            room_free(r);
            r = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof *t);
}

/* Table lock held. */
static struct wzp_room *find_locked(struct wzp_room_table *t, const char *name)
{
    struct wzp_room *r = t->buckets[name_hash(name) % t->nbuckets];
    while (r && strcmp(r->name, name) != 0)
        r = r->next;
    return r;
}

struct wzp_room *wzp_room_lookup(struct wzp_room_table *t, const char *name)
{
    pthread_mutex_lock(&t->lock);
    struct wzp_room *r = find_locked(t, name);
    if (r)
        r->refs++;
    pthread_mutex_unlock(&t->lock);
    return r;
}

struct wzp_room *wzp_room_of_participant(struct wzp_room_table *t, uint64_t id)
{
    pthread_mutex_lock(&t->lock);
    for (size_t b = 0; b < t->nbuckets; b++) {
        for (struct wzp_room *r = t->buckets[b]; r; r = r->next) {
            pthread_rwlock_rdlock(&r->lock);
            bool found = wzp_room_find_locked(r, id) >= 0;
            pthread_rwlock_unlock(&r->lock);
            if (found) {
                r->refs++;
                pthread_mutex_unlock(&t->lock);
                return r;
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

size_t wzp_room_table_list(struct wzp_room_table *t, char (*names)[WZP_ROOM_NAME_MAX + 1],
                           size_t *sizes, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t b = 0; b < t->nbuckets; b++) {
        for (struct wzp_room *r = t->buckets[b]; r; r = r->next, n++) {
            if (n >= max)
                continue;
            snprintf(names[n], sizeof names[n], "%s", r->name);
            pthread_rwlock_rdlock(&r->lock);
            sizes[n] = r->count;
            pthread_rwlock_unlock(&r->lock);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

struct wzp_room *wzp_room_acquire(struct wzp_room_table *t, const char *name)
{
    size_t b = name_hash(name) % t->nbuckets;
    pthread_mutex_lock(&t->lock);
    struct wzp_room *r = find_locked(t, name);
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        snprintf(r->name, sizeof r->name, "%s", name);
        pthread_rwlock_init(&r->lock, NULL);
        r->tier = WZP_TIER_GOOD;
        r->next = t->buckets[b];
        t->buckets[b] = r;
        t->nrooms++;
    }
    r->refs++;
    pthread_mutex_unlock(&t->lock);
    return r;
}

void wzp_room_release(struct wzp_room_table *t, struct wzp_room *r)
{
    pthread_mutex_lock(&t->lock);
    WZP_BUG_ON(r->refs == 0);
    if (--r->refs > 0) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    struct wzp_room **pp = &t->buckets[name_hash(r->name) % t->nbuckets];
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    t->nrooms--;
    pthread_mutex_unlock(&t->lock);
    room_free(r);
}

size_t wzp_room_table_count(struct wzp_room_table *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->nrooms;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int wzp_room_add_locked(struct wzp_room *r, const struct wzp_participant *p)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        struct wzp_participant *np = realloc(r->parts, cap * sizeof *np);
        if (!np)
            return WZP_ENOMEM;
        r->parts = np;
        r->cap = cap;
    }
    r->parts[r->count++] = *p;
    return WZP_OK;
}

ssize_t wzp_room_find_locked(const struct wzp_room *r, uint64_t id)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->parts[i].id == id)
            return (ssize_t)i;
    return -1;
}

int wzp_room_remove_locked(struct wzp_room *r, uint64_t id)
{
    ssize_t i = wzp_room_find_locked(r, id);
    if (i < 0)
        return WZP_ENOTFOUND;
    memmove(&r->parts[i], &r->parts[i + 1], (r->count - (size_t)i - 1) * sizeof *r->parts);
    r->count--;
    return WZP_OK;
}

enum wzp_tier wzp_room_weakest_locked(const struct wzp_room *r)
{
    if (r->count == 0)
        return WZP_TIER_GOOD;
    enum wzp_tier w = r->parts[0].tier;
    for (size_t i = 1; i < r->count; i++)
        if (r->parts[i].tier < w)
            w = r->parts[i].tier;
    return w;
}

size_t wzp_room_members(struct wzp_room *r, struct wzp_member *out, size_t max, enum wzp_tier *tier)
{
    wzp_room_rdlock(r);
    size_t n = r->count < max ? r->count : max;
    for (size_t i = 0; i < n; i++) {
        const struct wzp_participant *p = &r->parts[i];
        struct wzp_member *m = &out[i];
        m->id = p->id;
        m->worker = p->worker;
        m->role = p->role;
        m->tier = p->tier;
        m->packets = atomic_load_explicit(&p->packets, memory_order_relaxed);
        m->last_media_ms = atomic_load_explicit(&p->last_media_ms, memory_order_relaxed);
        m->has_report = atomic_load_explicit(&p->has_report, memory_order_relaxed);
        m->loss_pct = atomic_load_explicit(&p->loss_pct, memory_order_relaxed);
        m->rtt_4ms = atomic_load_explicit(&p->rtt_4ms, memory_order_relaxed);
        m->has_alias = p->has_alias;
        m->sends = p->sends;
        m->hears = p->hears;
        memcpy(m->fingerprint, p->fingerprint, sizeof m->fingerprint);
        memcpy(m->alias, p->alias, sizeof m->alias);
    }
    if (tier)
        *tier = r->tier;
    wzp_room_unlock(r);
    return n;
}

bool wzp_room_groups(struct wzp_room *r, struct wzp_groups *out)
{
    wzp_room_rdlock(r);
    bool some = r->groups != NULL;
    if (some)
        *out = *r->groups;
    wzp_room_unlock(r);
    return some;
}

size_t wzp_room_size(struct wzp_room *r)
{
    wzp_room_rdlock(r);
    size_t n = r->count;
    wzp_room_unlock(r);
    return n;
}
