/* concurrency.c - see concurrency.h. */
#include "concurrency.h"

#include "common.h"
#include "quota.h"
#include "room.h"
#include "xq.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct room_ctx {
    struct wzp_room_table t;
    unsigned iterations;
    unsigned fanouts;
    _Atomic unsigned ready; /* fan-out threads that have walked once */
    _Atomic bool stop;
    _Atomic unsigned errors;
    _Atomic unsigned long walked;
};

static void *joiner(void *arg)
{
    struct room_ctx *s = arg;
    /* Start once every fan-out thread walks, so that the two overlap even when the
     * scheduler runs the joiners first (on a loaded two-core machine they can finish
     * before a fan-out thread has run at all). */
    while (atomic_load(&s->ready) < s->fanouts)
        sched_yield();
    for (unsigned i = 0; i < s->iterations; i++) {
        struct wzp_room *r = wzp_room_acquire(&s->t, (i & 1) ? "odd" : "even");
        struct wzp_participant p;
        memset(&p, 0, sizeof p);
        p.id = wzp_participant_next_id();
        p.tier = (enum wzp_tier)(i % WZP_TIER_COUNT);
        snprintf(p.alias, sizeof p.alias, "%llu", (unsigned long long)p.id);
        pthread_rwlock_wrlock(&r->lock);
        if (wzp_room_add_locked(r, &p) != WZP_OK)
            atomic_fetch_add(&s->errors, 1);
        pthread_rwlock_unlock(&r->lock);
        pthread_rwlock_wrlock(&r->lock);
        if (wzp_room_remove_locked(r, p.id) != WZP_OK)
            atomic_fetch_add(&s->errors, 1);
        pthread_rwlock_unlock(&r->lock);
        wzp_room_release(&s->t, r);
    }
    return NULL;
}

static void *fanout(void *arg)
{
    struct room_ctx *s = arg;
    struct wzp_room *r = wzp_room_acquire(&s->t, "even");
    bool first = true;
    while (first || !atomic_load(&s->stop)) {
        pthread_rwlock_rdlock(&r->lock);
        for (size_t i = 0; i < r->count; i++) {
            char expect[32];
            snprintf(expect, sizeof expect, "%llu", (unsigned long long)r->parts[i].id);
            if (strcmp(r->parts[i].alias, expect) != 0)
                atomic_fetch_add(&s->errors, 1); /* entry torn under the read lock */
        }
        (void)wzp_room_weakest_locked(r);
        pthread_rwlock_unlock(&r->lock);
        atomic_fetch_add(&s->walked, 1);
        if (first)
            atomic_fetch_add(&s->ready, 1);
        first = false;
    }
    wzp_room_release(&s->t, r);
    return NULL;
}

unsigned stress_rooms(unsigned joiners, unsigned fanouts, unsigned iterations)
{
    static struct room_ctx s;
    memset(&s, 0, sizeof s);
    s.iterations = iterations;
    wzp_room_table_init(&s.t, 16);
    pthread_t j[16], f[16];
    joiners = WZP_MIN(joiners, 16u);
    fanouts = WZP_MIN(fanouts, 16u);
    s.fanouts = fanouts;
    for (unsigned i = 0; i < fanouts; i++)
        pthread_create(&f[i], NULL, fanout, &s);
    for (unsigned i = 0; i < joiners; i++)
        pthread_create(&j[i], NULL, joiner, &s);
    for (unsigned i = 0; i < joiners; i++)
        pthread_join(j[i], NULL);
    atomic_store(&s.stop, true);
    for (unsigned i = 0; i < fanouts; i++)
        pthread_join(f[i], NULL);
    unsigned errors = atomic_load(&s.errors);
    unsigned long walked = atomic_load(&s.walked);
    size_t left = wzp_room_table_count(&s.t);
    if (fanouts && walked == 0)
        errors++;
    if (left != 0)
        errors++; /* every room freed after its last release */
    if (errors)
        fprintf(stderr, "stress_rooms: %u join/leave/torn errors, %lu walks, %zu rooms left\n",
                atomic_load(&s.errors), walked, left);
    wzp_room_table_destroy(&s.t);
    return errors;
}

struct spsc_ctx {
    struct wzp_spsc q;
    unsigned messages;
};

/* Message i is (i % 1000) + 8 bytes: its index, then the index's low byte repeated. */
static size_t spsc_msg_len(uint32_t i)
{
    return 8 + i % 1000;
}

static void *spsc_producer(void *arg)
{
    struct spsc_ctx *s = arg;
    for (uint32_t i = 0; i < s->messages;) {
        size_t len = spsc_msg_len(i);
        uint8_t *m = wzp_spsc_push_begin(&s->q, len);
        if (!m)
            continue;
        memcpy(m, &i, sizeof i);
        memset(m + sizeof i, (int)(i & 0xff), len - sizeof i);
        wzp_spsc_push_commit(&s->q);
        i++;
    }
    return NULL;
}

unsigned stress_spsc(unsigned messages)
{
    static struct spsc_ctx s;
    s.messages = messages;
    wzp_spsc_init(&s.q, 16384);
    pthread_t t;
    pthread_create(&t, NULL, spsc_producer, &s);
    unsigned errors = 0;
    for (uint32_t expect = 0; expect < messages;) {
        size_t len;
        const uint8_t *m = wzp_spsc_peek(&s.q, &len);
        if (!m)
            continue;
        uint32_t idx;
        memcpy(&idx, m, sizeof idx);
        if (idx != expect || len != spsc_msg_len(expect) || m[len - 1] != (expect & 0xff))
            errors++;
        wzp_spsc_pop_commit(&s.q);
        expect++;
    }
    pthread_join(t, NULL);
    wzp_spsc_destroy(&s.q);
    return errors;
}

struct ctlq_ctx {
    struct wzp_ctlq q;
    unsigned per_producer;
    _Atomic unsigned done;
};

struct producer_arg {
    struct ctlq_ctx *s;
    uint32_t id;
};

static void *ctl_producer(void *arg)
{
    struct producer_arg *a = arg;
    for (uint32_t i = 0; i < a->s->per_producer;) {
        if (wzp_ctlq_push(&a->s->q, WZP_CTL_SIGNAL, a->id, i, &i, sizeof i) == WZP_OK)
            i++;
    }
    atomic_fetch_add(&a->s->done, 1);
    return NULL;
}

unsigned stress_ctlq(unsigned producers, unsigned per_producer)
{
    static struct ctlq_ctx s;
    memset(&s, 0, sizeof s);
    s.per_producer = per_producer;
    wzp_ctlq_init(&s.q, 64);
    producers = WZP_MIN(producers, 8u);
    pthread_t t[8];
    struct producer_arg args[8];
    uint32_t next[8] = {0};
    for (unsigned i = 0; i < producers; i++) {
        args[i] = (struct producer_arg){&s, i};
        pthread_create(&t[i], NULL, ctl_producer, &args[i]);
    }
    unsigned errors = 0, received = 0;
    while (received < producers * per_producer) {
        struct wzp_ctlmsg *m = wzp_ctlq_take_all(&s.q);
        while (m) {
            struct wzp_ctlmsg *n = m->next;
            uint32_t v;
            memcpy(&v, m->data, sizeof v);
            if (m->slot >= producers || m->gen != next[m->slot] || v != m->gen)
                errors++; /* each producer's messages arrive in order, intact */
            else
                next[m->slot]++;
            received++;
            free(m);
            m = n;
        }
    }
    for (unsigned i = 0; i < producers; i++)
        pthread_join(t[i], NULL);
    wzp_ctlq_destroy(&s.q);
    return errors;
}

struct quota_ctx {
    struct wzp_quota q;
    unsigned iterations;
    _Atomic unsigned errors;
    _Atomic unsigned granted;
    _Atomic unsigned next_thread;
};

static void *quota_thread(void *arg)
{
    struct quota_ctx *s = arg;
    unsigned me = atomic_fetch_add(&s->next_thread, 1);
    struct wzp_addr_key keys[2]; /* one address of its own, one shared by every thread */
    memset(keys, 0, sizeof keys);
    keys[0].b[0] = (uint8_t)(me + 1);
    for (unsigned i = 0; i < s->iterations; i++) {
        if (wzp_quota_take_session(&s->q)) {
            atomic_fetch_add(&s->granted, 1);
            if (wzp_quota_sessions(&s->q) > s->q.max.sessions)
                atomic_fetch_add(&s->errors, 1);
            wzp_quota_give_session(&s->q);
        }
        const struct wzp_addr_key *k = &keys[i & 1];
        if (wzp_quota_take_connection(&s->q, k, NULL) == WZP_QUOTA_GRANTED) {
            if (wzp_quota_addr_handshakes(&s->q, k) > s->q.max.handshakes_per_addr)
                atomic_fetch_add(&s->errors, 1);
            wzp_quota_give_handshake(&s->q, k);
            wzp_quota_give_connection(&s->q, k);
        }
    }
    return NULL;
}

unsigned stress_quota(unsigned threads, unsigned iterations)
{
    struct quota_ctx s;
    memset(&s, 0, sizeof s);
    const struct wzp_quota_limits limits = {2, 3, 4, 2, 3, 100};
    if (wzp_quota_init(&s.q, &limits) != WZP_OK)
        return 1;
    s.iterations = iterations;
    pthread_t t[16];
    threads = WZP_MIN(threads, WZP_ARRAY_LEN(t));
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, quota_thread, &s);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    unsigned errors = atomic_load(&s.errors);
    if (wzp_quota_sessions(&s.q) || wzp_quota_handshakes(&s.q) || wzp_quota_connections(&s.q) ||
        atomic_load(&s.q.addresses))
        errors++;                     /* something was not given back, or an address entry leaked */
    if (atomic_load(&s.granted) == 0) /* nothing was exercised */
        errors++;
    wzp_quota_free(&s.q);
    if (errors)
        fprintf(stderr, "stress_quota: %u violations\n", errors);
    return errors;
}
