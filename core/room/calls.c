/* calls.c - the call table (see calls.h): a chained hash table under a mutex, keyed by
 * call id. Per-party counts and expiry scan the table: it is bounded and touched only by
 * signalling, never by media. */
#include "calls.h"

#include "common.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct wzp_call_entry {
    struct wzp_call_entry *next;
    struct wzp_call call;
};

int wzp_calls_init(struct wzp_calls *t, size_t max, unsigned max_per_party)
{
    memset(t, 0, sizeof *t);
    t->max = max;
    t->max_per_party = max_per_party;
    t->nbuckets = 256;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets)
        return WZP_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    return WZP_OK;
}

void wzp_calls_free(struct wzp_calls *t)
{
    if (!t->buckets)
        return;
    for (size_t i = 0; i < t->nbuckets; i++)
        while (t->buckets[i]) {
            struct wzp_call_entry *e = t->buckets[i];
            t->buckets[i] = e->next;
            free(e);
        }
    free(t->buckets);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof *t);
}

bool wzp_call_id_valid(const char *id)
{
    size_t n = strlen(id);
    return n > 0 && n <= WZP_CALL_ID_MAX &&
           strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == n;
}

const char *wzp_call_room_id(const char *room)
{
    size_t n = strlen(WZP_CALL_ROOM_PREFIX);
    return strncmp(room, WZP_CALL_ROOM_PREFIX, n) == 0 ? room + n : NULL;
}

/* Call ids are compared ignoring case: the room name a client puts in its TLS server name
 * reaches the relay lower-cased. */
static size_t bucket_of(const struct wzp_calls *t, const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++) {
        h ^= (uint8_t)tolower((unsigned char)*id);
        h *= 1099511628211ull;
    }
    return (size_t)(h & (t->nbuckets - 1));
}

/* The link to id's entry, or to the NULL ending its chain. Lock held. */
static struct wzp_call_entry **find(struct wzp_calls *t, const char *id)
{
    struct wzp_call_entry **pp = &t->buckets[bucket_of(t, id)];
    while (*pp && strcasecmp((*pp)->call.id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static bool is_party(const struct wzp_call *c, const char *fp)
{
    return strcmp(c->caller, fp) == 0 || strcmp(c->callee, fp) == 0;
}

/* Calls fp is a party of. Lock held. */
static unsigned party_calls(struct wzp_calls *t, const char *fp)
{
    unsigned n = 0;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct wzp_call_entry *e = t->buckets[i]; e; e = e->next)
            n += is_party(&e->call, fp);
    return n;
}

/* Unlink *pp and free it, copying the call to out first. Lock held. */
static void remove_entry(struct wzp_calls *t, struct wzp_call_entry **pp, struct wzp_call *out)
{
    struct wzp_call_entry *e = *pp;
    if (out)
        *out = e->call;
    if (e->call.state == WZP_CALL_RINGING)
        t->ringing--;
    *pp = e->next;
    free(e);
    t->count--;
}

int wzp_calls_offer(struct wzp_calls *t, const struct wzp_call *c, int *busy_party)
{
    if (!wzp_call_id_valid(c->id) || strcmp(c->caller, c->callee) == 0)
        return WZP_EINVAL;
    int rv = WZP_OK;
    pthread_mutex_lock(&t->lock);
    struct wzp_call_entry **pp = find(t, c->id), *e = NULL;
    if (*pp) {
        rv = WZP_EEXIST;
    } else if (t->count >= t->max) {
        rv = WZP_EFULL;
    } else if (party_calls(t, c->caller) >= t->max_per_party) {
        rv = WZP_ESTATE;
        if (busy_party)
            *busy_party = 0;
    } else if (party_calls(t, c->callee) >= t->max_per_party) {
        rv = WZP_ESTATE;
        if (busy_party)
            *busy_party = 1;
    } else if (!(e = malloc(sizeof *e))) {
        rv = WZP_ENOMEM;
    } else {
        e->call = *c;
        e->call.state = WZP_CALL_RINGING;
        e->call.set_up = false;
        memset(&e->call.callee_addrs, 0, sizeof e->call.callee_addrs);
        e->next = NULL;
        *pp = e;
        t->count++;
        t->ringing++;
    }
    pthread_mutex_unlock(&t->lock);
    return rv;
}

int wzp_calls_answer(struct wzp_calls *t, const char *id, const char *answerer, bool accept,
                     const struct wzp_call_addrs *callee_addrs, uint64_t setup_deadline_ns,
                     struct wzp_call *out)
{
    int rv = WZP_OK;
    pthread_mutex_lock(&t->lock);
    struct wzp_call_entry **pp = find(t, id), *e = *pp;
    if (!e) {
        rv = WZP_ENOTFOUND;
    } else if (strcmp(e->call.callee, answerer) != 0) {
        rv = WZP_EPERM;
    } else if (e->call.state != WZP_CALL_RINGING) {
        rv = WZP_ESTATE;
    } else if (!accept) {
        remove_entry(t, pp, out);
    } else {
        e->call.state = WZP_CALL_ACTIVE;
        t->ringing--;
        e->call.deadline_ns = setup_deadline_ns;
        if (callee_addrs)
            e->call.callee_addrs = *callee_addrs;
        if (out)
            *out = e->call;
    }
    pthread_mutex_unlock(&t->lock);
    return rv;
}

/* Mark an active call set up: it no longer expires. Lock held. */
static void mark_set_up(struct wzp_call *c)
{
    if (c->state == WZP_CALL_ACTIVE && !c->set_up) {
        c->set_up = true;
        c->deadline_ns = 0;
    }
}

int wzp_calls_peer(struct wzp_calls *t, const char *id, const char *fp, bool set_up, char *peer)
{
    int rv = WZP_OK;
    pthread_mutex_lock(&t->lock);
    struct wzp_call_entry *e = *find(t, id);
    if (!e) {
        rv = WZP_ENOTFOUND;
    } else if (!is_party(&e->call, fp)) {
        rv = WZP_EPERM;
    } else {
        const char *other = strcmp(e->call.caller, fp) == 0 ? e->call.callee : e->call.caller;
        memcpy(peer, other, WZP_FINGERPRINT_LEN + 1);
        if (set_up)
            mark_set_up(&e->call);
    }
    pthread_mutex_unlock(&t->lock);
    return rv;
}

int wzp_calls_end(struct wzp_calls *t, const char *id, const char *fp, struct wzp_call *out)
{
    int rv = WZP_OK;
    pthread_mutex_lock(&t->lock);
    struct wzp_call_entry **pp = find(t, id);
    if (!*pp)
        rv = WZP_ENOTFOUND;
    else if (!is_party(&(*pp)->call, fp))
        rv = WZP_EPERM;
    else
        remove_entry(t, pp, out);
    pthread_mutex_unlock(&t->lock);
    return rv;
}

/* Remove up to max entries for which match(call, arg) holds. Lock taken here. */
static size_t remove_matching(struct wzp_calls *t, bool (*match)(const struct wzp_call *, void *),
                              void *arg, struct wzp_call *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nbuckets && n < max; i++) {
        struct wzp_call_entry **pp = &t->buckets[i];
        while (*pp && n < max) {
            if (match(&(*pp)->call, arg))
                remove_entry(t, pp, &out[n++]);
            else
                pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

static bool match_party(const struct wzp_call *c, void *fp)
{
    return is_party(c, fp);
}

size_t wzp_calls_end_party(struct wzp_calls *t, const char *fp, struct wzp_call *out, size_t max)
{
    return remove_matching(t, match_party, (void *)fp, out, max);
}

static bool match_expired(const struct wzp_call *c, void *now)
{
    return c->deadline_ns && c->deadline_ns <= *(uint64_t *)now;
}

size_t wzp_calls_expire(struct wzp_calls *t, uint64_t now_ns, struct wzp_call *out, size_t max)
{
    return remove_matching(t, match_expired, &now_ns, out, max);
}

int wzp_calls_admit(struct wzp_calls *t, const char *id, const char *fp)
{
    int rv = WZP_OK;
    pthread_mutex_lock(&t->lock);
    struct wzp_call_entry *e = *find(t, id);
    if (!e)
        rv = WZP_ENOTFOUND;
    else if (!is_party(&e->call, fp))
        rv = WZP_EPERM;
    else if (e->call.state != WZP_CALL_ACTIVE)
        rv = WZP_ESTATE;
    else
        mark_set_up(&e->call);
    pthread_mutex_unlock(&t->lock);
    return rv;
}

void wzp_calls_counts(struct wzp_calls *t, size_t *ringing, size_t *active)
{
    pthread_mutex_lock(&t->lock);
    *ringing = t->ringing;
    *active = t->count - t->ringing;
    pthread_mutex_unlock(&t->lock);
}
