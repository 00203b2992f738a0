/* presence.c - the presence registry (see presence.h): a chained hash table under a
 * mutex, keyed by fingerprint. */
#include "presence.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wzp_presence_entry {
    struct wzp_presence_entry *next;
    char fp[WZP_FINGERPRINT_LEN + 1];
    struct wzp_presence_handle h;
    uint64_t reg_id;
    char alias[WZP_ALIAS_MAX + 1];
    bool has_alias;
    int64_t since;
};

int wzp_presence_init(struct wzp_presence *p, size_t max)
{
    memset(p, 0, sizeof *p);
    p->max = max;
    p->nbuckets = 1024;
    p->next_reg = 1;
    p->buckets = calloc(p->nbuckets, sizeof *p->buckets);
    if (!p->buckets)
        return WZP_ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    return WZP_OK;
}

void wzp_presence_free(struct wzp_presence *p)
{
    if (!p->buckets)
        return;
    for (size_t i = 0; i < p->nbuckets; i++)
        while (p->buckets[i]) {
            struct wzp_presence_entry *e = p->buckets[i];
            p->buckets[i] = e->next;
            free(e);
        }
    free(p->buckets);
    pthread_mutex_destroy(&p->lock);
    memset(p, 0, sizeof *p);
}

/* The link to fp's entry, or to the NULL ending its chain. Lock held. */
static struct wzp_presence_entry **find(struct wzp_presence *p, const char *fp)
{
    struct wzp_presence_entry **pp = &p->buckets[wzp_fnv1a(fp, strlen(fp)) & (p->nbuckets - 1)];
    while (*pp && strcmp((*pp)->fp, fp) != 0)
        pp = &(*pp)->next;
    return pp;
}

int wzp_presence_register(struct wzp_presence *p, const char *fp, const char *alias,
                          struct wzp_presence_handle h, uint64_t *reg_id,
                          struct wzp_presence_handle *replaced, bool *was_replaced)
{
    if (strlen(fp) > WZP_FINGERPRINT_LEN)
        return WZP_EINVAL;
    int rv = WZP_OK;
    pthread_mutex_lock(&p->lock);
    struct wzp_presence_entry **pp = find(p, fp), *e = *pp;
    if (was_replaced)
        *was_replaced = e != NULL;
    if (e) {
        if (replaced)
            *replaced = e->h;
    } else if (p->count >= p->max) {
        rv = WZP_EFULL;
    } else if (!(e = calloc(1, sizeof *e))) {
        rv = WZP_ENOMEM;
    } else {
        snprintf(e->fp, sizeof e->fp, "%s", fp);
        *pp = e;
        p->count++;
    }
    if (rv == WZP_OK) {
        e->has_alias = alias != NULL;
        snprintf(e->alias, sizeof e->alias, "%s", alias ? alias : "");
        e->since = (int64_t)time(NULL);
        e->h = h;
        e->reg_id = p->next_reg++;
        *reg_id = e->reg_id;
    }
    pthread_mutex_unlock(&p->lock);
    return rv;
}

bool wzp_presence_unregister(struct wzp_presence *p, const char *fp, uint64_t reg_id)
{
    pthread_mutex_lock(&p->lock);
    struct wzp_presence_entry **pp = find(p, fp), *e = *pp;
    bool mine = e && e->reg_id == reg_id;
    if (mine) {
        *pp = e->next;
        free(e);
        p->count--;
    }
    pthread_mutex_unlock(&p->lock);
    return mine;
}

bool wzp_presence_lookup(struct wzp_presence *p, const char *fp, struct wzp_presence_handle *out)
{
    pthread_mutex_lock(&p->lock);
    struct wzp_presence_entry *e = *find(p, fp);
    if (e && out)
        *out = e->h;
    pthread_mutex_unlock(&p->lock);
    return e != NULL;
}

size_t wzp_presence_count(struct wzp_presence *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->count;
    pthread_mutex_unlock(&p->lock);
    return n;
}

size_t wzp_presence_list(struct wzp_presence *p, struct wzp_presence_view *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->nbuckets && n < max; i++)
        for (struct wzp_presence_entry *e = p->buckets[i]; e && n < max; e = e->next) {
            memcpy(out[n].fingerprint, e->fp, sizeof out[n].fingerprint);
            memcpy(out[n].alias, e->alias, sizeof out[n].alias);
            out[n].has_alias = e->has_alias;
            out[n].since = e->since;
            n++;
        }
    pthread_mutex_unlock(&p->lock);
    return n;
}
