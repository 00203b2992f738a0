/* test_affinity.c - the room -> worker table. */
#include "affinity.h"
#include "testutil.h"

#define S 1000000000ull

Test(affinity, a_room_stays_on_the_worker_it_was_given)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 4, 100), WZP_OK);
    unsigned w = wzp_affinity_pick(&a, "alpha", 1 * S);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(wzp_affinity_pick(&a, "alpha", 1 * S), w);
        wzp_affinity_ref(&a, "alpha", w, 1 * S);
    }
    cr_assert_eq(wzp_affinity_rooms(&a), 1);
    cr_assert_eq(wzp_affinity_load(&a, w), 5, "five connections, the pending mark folded in");
    wzp_affinity_free(&a);
}

Test(affinity, new_rooms_go_to_the_least_loaded_worker)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 2, 100), WZP_OK);
    unsigned w1 = wzp_affinity_pick(&a, "one", 1 * S);
    /* A pending room already counts: a burst of first joins does not pile on one worker. */
    unsigned w2 = wzp_affinity_pick(&a, "two", 1 * S);
    cr_assert_neq(w1, w2);
    for (int i = 0; i < 3; i++)
        wzp_affinity_ref(&a, "one", w1, 1 * S);
    wzp_affinity_ref(&a, "two", w2, 1 * S);
    cr_assert_eq(wzp_affinity_pick(&a, "three", 1 * S), w2, "w2 has 1 connection, w1 has 3");
    wzp_affinity_free(&a);
}

Test(affinity, fifty_rooms_of_ten_split_evenly)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 2, 1000), WZP_OK);
    char name[32];
    /* Each room's participants join together, the way the load generator joins them. */
    for (int r = 0; r < 50; r++) {
        snprintf(name, sizeof name, "room-%d", r);
        for (int p = 0; p < 10; p++)
            wzp_affinity_ref(&a, name, wzp_affinity_pick(&a, name, 1 * S), 1 * S);
    }
    cr_assert_eq(wzp_affinity_load(&a, 0), 250);
    cr_assert_eq(wzp_affinity_load(&a, 1), 250);
    wzp_affinity_free(&a);
}

Test(affinity, the_last_connection_leaving_frees_the_room)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 2, 100), WZP_OK);
    unsigned w = wzp_affinity_pick(&a, "r", 1 * S);
    wzp_affinity_ref(&a, "r", w, 1 * S);
    wzp_affinity_ref(&a, "r", w, 1 * S);
    wzp_affinity_unref(&a, "r", w);
    cr_assert_eq(wzp_affinity_rooms(&a), 1);
    wzp_affinity_unref(&a, "r", w);
    cr_assert_eq(wzp_affinity_rooms(&a), 0);
    cr_assert_eq(wzp_affinity_load(&a, w), 0);
    wzp_affinity_free(&a);
}

Test(affinity, a_pick_never_followed_by_a_connection_expires)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 2, 100), WZP_OK);
    unsigned w = wzp_affinity_pick(&a, "ghost", 1 * S);
    cr_assert_eq(wzp_affinity_load(&a, w), 1);
    wzp_affinity_pick(&a, "other", 2 * S); /* not yet: 1 s old */
    cr_assert_eq(wzp_affinity_rooms(&a), 2);
    wzp_affinity_pick(&a, "later", 1 * S + WZP_AFFINITY_PENDING_NS);
    cr_assert_eq(wzp_affinity_rooms(&a), 2, "ghost went, later came");
    cr_assert_eq(wzp_affinity_load(&a, 0) + wzp_affinity_load(&a, 1), 2);
    wzp_affinity_free(&a);
}

Test(affinity, a_pending_room_that_got_connections_survives_the_sweep)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 2, 100), WZP_OK);
    unsigned w = wzp_affinity_pick(&a, "r", 1 * S);
    wzp_affinity_ref(&a, "r", w, 1 * S);
    wzp_affinity_pick(&a, "x", 1 * S + 2 * WZP_AFFINITY_PENDING_NS);
    cr_assert_eq(wzp_affinity_pick(&a, "r", 1 * S + 2 * WZP_AFFINITY_PENDING_NS), w);
    cr_assert_eq(wzp_affinity_load(&a, w) + wzp_affinity_load(&a, 1 - w), 2,
                 "r: 1 conn, x: pending");
    wzp_affinity_free(&a);
}

Test(affinity, past_its_capacity_rooms_are_placed_by_name)
{
    struct wzp_affinity a;
    cr_assert_eq(wzp_affinity_init(&a, 3, 2), WZP_OK);
    wzp_affinity_pick(&a, "a", 1 * S);
    wzp_affinity_pick(&a, "b", 1 * S);
    unsigned w = wzp_affinity_pick(&a, "c", 1 * S);
    cr_assert_eq(wzp_affinity_pick(&a, "c", 1 * S), w, "the same name, the same worker");
    cr_assert_eq(wzp_affinity_rooms(&a), 2);
    cr_assert_eq(a.hashed_overflow, 2);
    /* A connection of a room not in the table still counts as load and leaves cleanly. */
    wzp_affinity_ref(&a, "c", w, 1 * S);
    wzp_affinity_unref(&a, "c", w);
    cr_assert_eq(wzp_affinity_rooms(&a), 2);
    wzp_affinity_free(&a);
}
