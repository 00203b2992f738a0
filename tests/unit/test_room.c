/* test_room.c - room table, participant array, weakest tier, and concurrency. */
#include "room.h"

#include "common.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static struct wzp_participant part(uint64_t id, enum wzp_tier tier)
{
    struct wzp_participant p;
    memset(&p, 0, sizeof p);
    p.id = id;
    p.tier = tier;
    snprintf(p.fingerprint, sizeof p.fingerprint, "fp-%llu", (unsigned long long)id);
    return p;
}

Test(room, acquire_same_name_same_room)
{
    struct wzp_room_table t;
    cr_assert_eq(wzp_room_table_init(&t, 8), WZP_OK);
    struct wzp_room *a = wzp_room_acquire(&t, "alpha");
    struct wzp_room *b = wzp_room_acquire(&t, "alpha");
    struct wzp_room *c = wzp_room_acquire(&t, "beta");
    cr_assert_eq(a, b);
    cr_assert_neq(a, c);
    cr_assert_eq(wzp_room_table_count(&t), 2);
    wzp_room_release(&t, a);
    cr_assert_eq(wzp_room_table_count(&t), 2, "still referenced once");
    wzp_room_release(&t, b);
    cr_assert_eq(wzp_room_table_count(&t), 1);
    wzp_room_release(&t, c);
    cr_assert_eq(wzp_room_table_count(&t), 0);
    wzp_room_table_destroy(&t);
}

Test(room, join_order_and_remove)
{
    struct wzp_room_table t;
    wzp_room_table_init(&t, 8);
    struct wzp_room *r = wzp_room_acquire(&t, "r");
    for (uint64_t id = 1; id <= 10; id++) {
        struct wzp_participant p = part(id, WZP_TIER_GOOD);
        cr_assert_eq(wzp_room_add_locked(r, &p), WZP_OK);
    }
    cr_assert_eq(r->count, 10);
    cr_assert_eq(wzp_room_remove_locked(r, 4), WZP_OK);
    cr_assert_eq(wzp_room_remove_locked(r, 4), WZP_ENOTFOUND);
    cr_assert_eq(r->count, 9);
    uint64_t expect[] = {1, 2, 3, 5, 6, 7, 8, 9, 10};
    for (size_t i = 0; i < 9; i++)
        cr_assert_eq(r->parts[i].id, expect[i], "join order kept at %zu", i);
    cr_assert_eq(wzp_room_find_locked(r, 10), 8);
    cr_assert_eq(wzp_room_find_locked(r, 4), -1);
    for (size_t i = 0; i < 9; i++)
        wzp_room_remove_locked(r, expect[i]);
    wzp_room_release(&t, r);
    wzp_room_table_destroy(&t);
}

Test(room, weakest_tier)
{
    struct wzp_room_table t;
    wzp_room_table_init(&t, 8);
    struct wzp_room *r = wzp_room_acquire(&t, "q");
    cr_assert_eq(wzp_room_weakest_locked(r), WZP_TIER_GOOD, "empty room is GOOD");
    struct wzp_participant a = part(1, WZP_TIER_STUDIO_64K), b = part(2, WZP_TIER_DEGRADED),
                           c = part(3, WZP_TIER_STUDIO_32K);
    wzp_room_add_locked(r, &a);
    cr_assert_eq(wzp_room_weakest_locked(r), WZP_TIER_STUDIO_64K);
    wzp_room_add_locked(r, &b);
    wzp_room_add_locked(r, &c);
    cr_assert_eq(wzp_room_weakest_locked(r), WZP_TIER_DEGRADED);
    wzp_room_remove_locked(r, 2);
    cr_assert_eq(wzp_room_weakest_locked(r), WZP_TIER_STUDIO_32K, "recomputed after leave");
    wzp_room_remove_locked(r, 1);
    wzp_room_remove_locked(r, 3);
    wzp_room_release(&t, r);
    wzp_room_table_destroy(&t);
}

Test(room, participant_ids_unique)
{
    uint64_t a = wzp_participant_next_id(), b = wzp_participant_next_id();
    cr_assert_neq(a, b);
    cr_assert_neq(a, 0);
}

/*
 * Concurrency: joiner threads add and remove participants (write lock) while fan-out
 * threads walk the array (read lock) and check every entry is intact. Rooms are
 * acquired and released concurrently too. Run under TSan in CI.
 */
#define JOINERS     4
#define FANOUTS     2
#define ITERATIONS  2000

struct shared {
    struct wzp_room_table t;
    _Atomic bool stop;
    _Atomic unsigned long walked;
};

static void *joiner(void *arg)
{
    struct shared *s = arg;
    for (int i = 0; i < ITERATIONS; i++) {
        struct wzp_room *r = wzp_room_acquire(&s->t, (i & 1) ? "odd" : "even");
        struct wzp_participant p = part(wzp_participant_next_id(), (enum wzp_tier)(i % 6));
        snprintf(p.alias, sizeof p.alias, "%llu", (unsigned long long)p.id);
        pthread_rwlock_wrlock(&r->lock);
        cr_assert_eq(wzp_room_add_locked(r, &p), WZP_OK);
        pthread_rwlock_unlock(&r->lock);
        pthread_rwlock_wrlock(&r->lock);
        cr_assert_eq(wzp_room_remove_locked(r, p.id), WZP_OK);
        pthread_rwlock_unlock(&r->lock);
        wzp_room_release(&s->t, r);
    }
    return NULL;
}

static void *fanout(void *arg)
{
    struct shared *s = arg;
    struct wzp_room *r = wzp_room_acquire(&s->t, "even");
    while (!atomic_load(&s->stop)) {
        pthread_rwlock_rdlock(&r->lock);
        for (size_t i = 0; i < r->count; i++) {
            char expect[32];
            snprintf(expect, sizeof expect, "%llu", (unsigned long long)r->parts[i].id);
            cr_assert_str_eq(r->parts[i].alias, expect, "entry torn under the read lock");
        }
        pthread_rwlock_unlock(&r->lock);
        atomic_fetch_add(&s->walked, 1);
    }
    wzp_room_release(&s->t, r);
    return NULL;
}

Test(room, concurrent_join_leave_fanout, .timeout = 60)
{
    static struct shared s;
    memset(&s, 0, sizeof s);
    wzp_room_table_init(&s.t, 16);
    pthread_t j[JOINERS], f[FANOUTS];
    for (int i = 0; i < FANOUTS; i++)
        pthread_create(&f[i], NULL, fanout, &s);
    for (int i = 0; i < JOINERS; i++)
        pthread_create(&j[i], NULL, joiner, &s);
    for (int i = 0; i < JOINERS; i++)
        pthread_join(j[i], NULL);
    atomic_store(&s.stop, true);
    for (int i = 0; i < FANOUTS; i++)
        pthread_join(f[i], NULL);
    cr_assert_gt(atomic_load(&s.walked), 0);
    cr_assert_eq(wzp_room_table_count(&s.t), 0, "every room freed after the last release");
    wzp_room_table_destroy(&s.t);
}
