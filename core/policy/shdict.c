/* shdict.c - the shared dictionary described in shdict.h (chained hash table). */
#include "shdict.h"

#include "common.h"

#include <string.h>

struct wzp_shentry {
    struct wzp_shentry *next;
    uint64_t expires_ms; /* 0 = never */
    enum wzp_shval_type type;
    double number;
    bool boolean;
    char *string;
    size_t len;
    size_t keylen;
    char key[];
};

int wzp_shdict_init(struct wzp_shdict *d, size_t max_entries, size_t max_bytes)
{
    memset(d, 0, sizeof *d);
    d->nbuckets = 1024;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (!d->buckets)
        return WZP_ENOMEM;
    d->max_entries = max_entries;
    d->max_bytes = max_bytes;
    pthread_mutex_init(&d->lock, NULL);
    return WZP_OK;
}

static size_t entry_bytes(const struct wzp_shentry *e)
{
    return e->keylen + (e->type == WZP_SHVAL_STRING ? e->len : 0);
}

static void entry_free(struct wzp_shdict *d, struct wzp_shentry *e)
{
    d->bytes -= entry_bytes(e);
    d->count--;
    free(e->string);
    free(e);
}

void wzp_shdict_destroy(struct wzp_shdict *d)
{
    for (size_t i = 0; i < d->nbuckets && d->buckets; i++) {
        while (d->buckets[i]) {
            struct wzp_shentry *e = d->buckets[i];
            d->buckets[i] = e->next;
            entry_free(d, e);
        }
    }
    free(d->buckets);
    if (d->nbuckets)
        pthread_mutex_destroy(&d->lock);
    memset(d, 0, sizeof *d);
}

/* The slot that points at key's entry (or at NULL where it would go); expired entries on
 * the way are removed. Lock held. */
static struct wzp_shentry **find_slot(struct wzp_shdict *d, const char *key, size_t keylen,
                                      uint64_t now_ms)
{
    struct wzp_shentry **pp = &d->buckets[wzp_fnv1a(key, keylen) % d->nbuckets];
    while (*pp) {
        struct wzp_shentry *e = *pp;
        if (e->expires_ms && e->expires_ms <= now_ms) {
            *pp = e->next;
            entry_free(d, e);
            continue;
        }
        if (e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
            return pp;
        pp = &e->next;
    }
    return pp;
}

static int check_sizes(const char *key, const struct wzp_shval *v)
{
    size_t keylen = strlen(key);
    if (keylen == 0 || keylen > WZP_SHDICT_KEY_MAX)
        return WZP_EINVAL;
    if (v && v->type == WZP_SHVAL_STRING && v->len > WZP_SHDICT_VALUE_MAX)
        return WZP_EINVAL;
    return WZP_OK;
}

/* Replace e's value with v (string copied). WZP_ENOMEM leaves e unchanged. */
static int store_value(struct wzp_shentry *e, const struct wzp_shval *v)
{
    char *copy = NULL;
    if (v->type == WZP_SHVAL_STRING) {
        copy = malloc(v->len + 1);
        if (!copy)
            return WZP_ENOMEM;
        memcpy(copy, v->string, v->len);
        copy[v->len] = '\0';
    }
    free(e->string);
    e->string = copy;
    e->len = v->type == WZP_SHVAL_STRING ? v->len : 0;
    e->type = v->type;
    e->number = v->number;
    e->boolean = v->boolean;
    return WZP_OK;
}

static int set_locked(struct wzp_shdict *d, const char *key, const struct wzp_shval *v,
                      uint64_t ttl_ms, uint64_t now_ms, struct wzp_shentry **out)
{
    size_t keylen = strlen(key);
    struct wzp_shentry **pp = find_slot(d, key, keylen, now_ms);
    struct wzp_shentry *e = *pp;
    size_t new_bytes = keylen + (v->type == WZP_SHVAL_STRING ? v->len : 0);
    size_t old_bytes = e ? entry_bytes(e) : 0;
    if ((!e && d->count >= d->max_entries) || d->bytes - old_bytes + new_bytes > d->max_bytes)
        return WZP_EFULL;
    if (!e) {
        e = calloc(1, sizeof *e + keylen + 1);
        if (!e)
            return WZP_ENOMEM;
        memcpy(e->key, key, keylen + 1);
        e->keylen = keylen;
        *pp = e;
        d->count++;
        d->bytes += keylen;
        old_bytes = keylen;
    }
    d->bytes -= old_bytes;
    int rv = store_value(e, v);
    d->bytes += entry_bytes(e);
    if (rv)
        return rv;
    e->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    if (out)
        *out = e;
    return WZP_OK;
}

int wzp_shdict_set(struct wzp_shdict *d, const char *key, const struct wzp_shval *v,
                   uint64_t ttl_ms, uint64_t now_ms)
{
    int rv = check_sizes(key, v);
    if (rv)
        return rv;
    pthread_mutex_lock(&d->lock);
    rv = set_locked(d, key, v, ttl_ms, now_ms, NULL);
    pthread_mutex_unlock(&d->lock);
    return rv;
}

int wzp_shdict_get(struct wzp_shdict *d, const char *key, struct wzp_shval *v, uint64_t now_ms)
{
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&d->lock);
    struct wzp_shentry *e = *find_slot(d, key, strlen(key), now_ms);
    int rv = WZP_ENOTFOUND;
    if (e) {
        rv = WZP_OK;
        v->type = e->type;
        v->number = e->number;
        v->boolean = e->boolean;
        if (e->type == WZP_SHVAL_STRING) {
            char *copy = malloc(e->len + 1);
            if (copy) {
                memcpy(copy, e->string, e->len + 1);
                v->string = copy;
                v->len = e->len;
            } else {
                rv = WZP_ENOMEM;
            }
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rv;
}

int wzp_shdict_incr(struct wzp_shdict *d, const char *key, double delta, double init,
                    uint64_t ttl_ms, uint64_t now_ms, double *out)
{
    int rv = check_sizes(key, NULL);
    if (rv)
        return rv;
    pthread_mutex_lock(&d->lock);
    struct wzp_shentry *e = *find_slot(d, key, strlen(key), now_ms);
    if (!e) {
        struct wzp_shval v = {.type = WZP_SHVAL_NUMBER, .number = init};
        rv = set_locked(d, key, &v, ttl_ms, now_ms, &e);
    } else if (e->type != WZP_SHVAL_NUMBER) {
        rv = WZP_EINVAL;
    }
    if (rv == WZP_OK) {
        e->number += delta;
        *out = e->number;
    }
    pthread_mutex_unlock(&d->lock);
    return rv;
}

int wzp_shdict_delete(struct wzp_shdict *d, const char *key, uint64_t now_ms)
{
    pthread_mutex_lock(&d->lock);
    struct wzp_shentry **pp = find_slot(d, key, strlen(key), now_ms);
    int rv = WZP_ENOTFOUND;
    if (*pp) {
        struct wzp_shentry *e = *pp;
        *pp = e->next;
        entry_free(d, e);
        rv = WZP_OK;
    }
    pthread_mutex_unlock(&d->lock);
    return rv;
}

int wzp_shdict_ttl(struct wzp_shdict *d, const char *key, uint64_t now_ms, int64_t *ttl_ms)
{
    pthread_mutex_lock(&d->lock);
    struct wzp_shentry *e = *find_slot(d, key, strlen(key), now_ms);
    int rv = WZP_ENOTFOUND;
    if (e) {
        *ttl_ms = e->expires_ms ? (int64_t)(e->expires_ms - now_ms) : -1;
        rv = WZP_OK;
    }
    pthread_mutex_unlock(&d->lock);
    return rv;
}

size_t wzp_shdict_expire(struct wzp_shdict *d, uint64_t now_ms)
{
    size_t removed = 0;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->nbuckets; i++) {
        struct wzp_shentry **pp = &d->buckets[i];
        while (*pp) {
            struct wzp_shentry *e = *pp;
            if (e->expires_ms && e->expires_ms <= now_ms) {
                *pp = e->next;
                entry_free(d, e);
                removed++;
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_mutex_unlock(&d->lock);
    return removed;
}

size_t wzp_shdict_count(struct wzp_shdict *d)
{
    pthread_mutex_lock(&d->lock);
    size_t n = d->count;
    pthread_mutex_unlock(&d->lock);
    return n;
}
