/*
 * test_cidtab.c - the CID table: keys of every length, refusals, removal that checks the
 * value, growth, and random runs against a plain array on tables small enough that runs
 * wrap around the end and removals shift entries back.
 */
#include "cidtab.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static int vals[64]; /* addresses used as values */

Test(cidtab, keys_of_every_length_are_found_and_removed)
{
    struct wzp_cidtab t;
    uint8_t key[WZP_CIDTAB_KEY_MAX + 1];

    cr_assert_eq(wzp_cidtab_init(&t, 0), WZP_OK);
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(0xa0 + i);
    for (size_t len = 1; len <= WZP_CIDTAB_KEY_MAX; len++)
        cr_assert_eq(wzp_cidtab_add(&t, key, len, &vals[len]), WZP_OK, "length %zu", len);
    cr_assert_eq(t.count, WZP_CIDTAB_KEY_MAX);
    for (size_t len = 1; len <= WZP_CIDTAB_KEY_MAX; len++)
        cr_assert_eq(wzp_cidtab_find(&t, key, len), &vals[len], "a prefix is another key");
    cr_assert_null(wzp_cidtab_find(&t, key, 0));
    cr_assert_null(wzp_cidtab_find(&t, key, WZP_CIDTAB_KEY_MAX + 1));
    for (size_t len = 1; len <= WZP_CIDTAB_KEY_MAX; len += 2)
        cr_assert(wzp_cidtab_remove(&t, key, len, &vals[len]));
    for (size_t len = 1; len <= WZP_CIDTAB_KEY_MAX; len++)
        cr_assert_eq(wzp_cidtab_find(&t, key, len), len % 2 ? NULL : &vals[len]);
    cr_assert_eq(t.count, WZP_CIDTAB_KEY_MAX / 2);
    wzp_cidtab_free(&t);
}

Test(cidtab, refusals)
{
    struct wzp_cidtab t;
    const uint8_t key[WZP_CIDTAB_KEY_MAX + 1] = "0123456789abcdefghij";

    cr_assert_eq(wzp_cidtab_init(&t, 16), WZP_OK);
    cr_assert_eq(wzp_cidtab_add(&t, key, 0, &vals[0]), WZP_EINVAL, "empty key");
    cr_assert_eq(wzp_cidtab_add(&t, key, WZP_CIDTAB_KEY_MAX + 1, &vals[0]), WZP_EINVAL);
    cr_assert_eq(wzp_cidtab_add(&t, key, 8, NULL), WZP_EINVAL, "NULL means empty");
    cr_assert_eq(wzp_cidtab_add(&t, key, 8, &vals[0]), WZP_OK);
    cr_assert_eq(wzp_cidtab_add(&t, key, 8, &vals[1]), WZP_EINVAL, "a key maps to one value");
    cr_assert_eq(wzp_cidtab_find(&t, key, 8), &vals[0]);
    cr_assert_not(wzp_cidtab_remove(&t, key, 8, &vals[1]), "another value's key stays");
    cr_assert_eq(wzp_cidtab_find(&t, key, 8), &vals[0]);
    cr_assert_not(wzp_cidtab_remove(&t, key, 7, NULL), "absent key");
    cr_assert(wzp_cidtab_remove(&t, key, 8, NULL), "NULL removes whatever it maps to");
    cr_assert_eq(t.count, 0);
    wzp_cidtab_free(&t);
}

Test(cidtab, grows_at_half_full_and_keeps_every_key)
{
    struct wzp_cidtab t;
    enum { N = 5000 };

    cr_assert_eq(wzp_cidtab_init(&t, 16), WZP_OK);
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(wzp_cidtab_add(&t, (const uint8_t *)&i, sizeof i, &vals[i % 64]), WZP_OK);
    cr_assert_geq(wzp_cidtab_capacity(&t), 2 * N);
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(wzp_cidtab_find(&t, (const uint8_t *)&i, sizeof i), &vals[i % 64]);
    for (uint32_t i = N; i < 2 * N; i++)
        cr_assert_null(wzp_cidtab_find(&t, (const uint8_t *)&i, sizeof i));
    wzp_cidtab_free(&t);
}

/* Keys from a small set, random adds and removes, every key checked after each step.
 * Half the rounds use 8 keys, which never grow the first 16 slots: runs are long and wrap
 * around the end, which is where backward shifting can lose a key. Those rounds also fix
 * the table's seed, so that a failure replays. */
Test(cidtab, random_runs_match_a_plain_array)
{
    enum { KEYS = 40, STEPS = 4000 };
    uint8_t keys[KEYS][WZP_CIDTAB_KEY_MAX];
    size_t lens[KEYS];
    void *model[KEYS];

    srand(12345);
    for (int round = 0; round < 20; round++) {
        struct wzp_cidtab t;
        cr_assert_eq(wzp_cidtab_init(&t, 16), WZP_OK);
        if (round % 2)
            t.seed = (uint64_t)round;
        for (int k = 0; k < KEYS; k++) {
            lens[k] = 1 + (size_t)rand() % WZP_CIDTAB_KEY_MAX;
            for (size_t b = 0; b < lens[k]; b++)
                keys[k][b] = (uint8_t)rand();
            keys[k][0] = (uint8_t)k; /* distinct */
            model[k] = NULL;
        }
        int nkeys = round % 2 ? 8 : KEYS; /* 8 never grow the 16 slots: long runs, wraps */
        size_t count = 0;
        for (int step = 0; step < STEPS; step++) {
            int k = rand() % nkeys;
            void *v = &vals[rand() % 64];
            if (rand() % 2) {
                int rv = wzp_cidtab_add(&t, keys[k], lens[k], v);
                cr_assert_eq(rv, model[k] ? WZP_EINVAL : WZP_OK, "round %d step %d", round, step);
                if (!model[k]) {
                    model[k] = v;
                    count++;
                }
            } else {
                void *which = rand() % 4 ? model[k] : v; /* sometimes the wrong value */
                bool removed = wzp_cidtab_remove(&t, keys[k], lens[k], which);
                bool expect = model[k] && model[k] == which;
                cr_assert_eq(removed, expect, "round %d step %d", round, step);
                if (expect) {
                    model[k] = NULL;
                    count--;
                }
            }
            cr_assert_eq(t.count, count);
            for (int j = 0; j < KEYS; j++)
                cr_assert_eq(wzp_cidtab_find(&t, keys[j], lens[j]), model[j],
                             "round %d step %d key %d", round, step, j);
        }
        wzp_cidtab_free(&t);
    }
}
