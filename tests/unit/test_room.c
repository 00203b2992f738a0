/* test_room.c - room table, participant array, weakest tier, and concurrency. */
#include "room.h"

#include "common.h"
#include "concurrency.h"

#include <criterion/criterion.h>
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

/* Concurrency: see tests/stress/concurrency.c (also run instrumented under TSan). */
Test(room, concurrent_join_leave_fanout, .timeout = 60)
{
    cr_assert_eq(stress_rooms(4, 2, 2000), 0);
}

Test(room, members_are_copied_in_join_order_up_to_max)
{
    struct wzp_room_table t;
    cr_assert_eq(wzp_room_table_init(&t, 8), WZP_OK);
    struct wzp_room *r = wzp_room_acquire(&t, "copy");
    wzp_room_wrlock(r);
    for (uint64_t id = 1; id <= 3; id++) {
        struct wzp_participant p = part(id * 10, (enum wzp_tier)(id - 1));
        p.worker = (uint32_t)id;
        p.has_alias = id == 2;
        snprintf(p.alias, sizeof p.alias, "alias-%llu", (unsigned long long)id);
        atomic_store(&p.packets, id * 100);
        if (id == 3) {
            atomic_store(&p.has_report, true);
            atomic_store(&p.loss_pct, 51);
            atomic_store(&p.rtt_4ms, 25);
        }
        cr_assert_eq(wzp_room_add_locked(r, &p), WZP_OK);
    }
    r->tier = WZP_TIER_DEGRADED;
    wzp_room_unlock(r);
    cr_assert_eq(wzp_room_size(r), 3);
    struct wzp_member m[3];
    enum wzp_tier tier = WZP_TIER_GOOD;
    cr_assert_eq(wzp_room_members(r, m, 3, &tier), 3);
    cr_assert_eq(tier, WZP_TIER_DEGRADED);
    cr_assert_eq(m[0].id, 10);
    cr_assert_eq(m[2].id, 30);
    cr_assert_str_eq(m[1].fingerprint, "fp-20");
    cr_assert(m[1].has_alias);
    cr_assert_str_eq(m[1].alias, "alias-2");
    cr_assert_eq(m[1].worker, 2);
    cr_assert_eq(m[1].packets, 200);
    cr_assert_not(m[0].has_report);
    cr_assert(m[2].has_report);
    cr_assert_eq(m[2].loss_pct, 51);
    cr_assert_eq(m[2].rtt_4ms, 25);
    cr_assert_eq((int)m[2].tier, 2);
    cr_assert_eq(wzp_room_members(r, m, 2, NULL), 2, "no more than max");
    wzp_room_wrlock(r);
    for (uint64_t id = 1; id <= 3; id++)
        wzp_room_remove_locked(r, id * 10);
    wzp_room_unlock(r);
    wzp_room_release(&t, r);
    wzp_room_table_destroy(&t);
}
