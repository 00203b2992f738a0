/*
 * test_presence.c - the presence registry: register, look up, replace, and only the
 * registration that made an entry removes it (so a replaced connection's cleanup cannot
 * remove its successor); the bound on entries.
 */
#include "presence.h"

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

static struct wzp_presence p;

static void setup(void)
{
    cr_assert_eq(wzp_presence_init(&p, 3), WZP_OK);
}

static void teardown(void)
{
    wzp_presence_free(&p);
}

TestSuite(presence, .init = setup, .fini = teardown);

static const char *const A = "aaaa:0000:0000:0000:0000:0000:0000:0001";
static const char *const B = "bbbb:0000:0000:0000:0000:0000:0000:0002";

Test(presence, list_shows_fingerprint_alias_and_time)
{
    uint64_t reg;
    cr_assert_eq(wzp_presence_register(&p, A, "alice", (struct wzp_presence_handle){0, 1, 1}, &reg,
                                       NULL, NULL),
                 WZP_OK);
    cr_assert_eq(
        wzp_presence_register(&p, B, NULL, (struct wzp_presence_handle){0, 2, 1}, &reg, NULL, NULL),
        WZP_OK);
    struct wzp_presence_view v[4];
    cr_assert_eq(wzp_presence_list(&p, v, 4), 2);
    struct wzp_presence_view *a = strcmp(v[0].fingerprint, A) == 0 ? &v[0] : &v[1];
    struct wzp_presence_view *b = a == &v[0] ? &v[1] : &v[0];
    cr_assert_str_eq(a->alias, "alice");
    cr_assert(a->has_alias);
    cr_assert_str_eq(b->fingerprint, B);
    cr_assert_not(b->has_alias);
    cr_assert_gt(a->since, 1700000000, "wall-clock seconds");
    cr_assert_eq(wzp_presence_list(&p, v, 1), 1, "at most max views");
}

Test(presence, register_and_look_up)
{
    uint64_t reg;
    bool replaced = true;
    cr_assert_eq(wzp_presence_register(&p, A, NULL, (struct wzp_presence_handle){1, 7, 3}, &reg,
                                       NULL, &replaced),
                 WZP_OK);
    cr_assert_not(replaced);
    struct wzp_presence_handle h;
    cr_assert(wzp_presence_lookup(&p, A, &h));
    cr_assert_eq(h.worker, 1);
    cr_assert_eq(h.slot, 7);
    cr_assert_eq(h.gen, 3);
    cr_assert_not(wzp_presence_lookup(&p, B, &h));
    cr_assert_eq(wzp_presence_count(&p), 1);
    cr_assert(wzp_presence_unregister(&p, A, reg));
    cr_assert_not(wzp_presence_lookup(&p, A, &h));
    cr_assert_eq(wzp_presence_count(&p), 0);
}

Test(presence, a_replaced_registration_cannot_remove_its_successor)
{
    uint64_t old_reg, new_reg;
    cr_assert_eq(wzp_presence_register(&p, A, NULL, (struct wzp_presence_handle){0, 1, 1}, &old_reg,
                                       NULL, NULL),
                 WZP_OK);
    struct wzp_presence_handle prev;
    bool replaced = false;
    cr_assert_eq(wzp_presence_register(&p, A, NULL, (struct wzp_presence_handle){1, 2, 5}, &new_reg,
                                       &prev, &replaced),
                 WZP_OK);
    cr_assert(replaced);
    cr_assert_eq(prev.slot, 1, "the caller learns which connection was replaced");
    cr_assert_neq(old_reg, new_reg);
    /* the old connection goes away: its cleanup must leave the new entry */
    cr_assert_not(wzp_presence_unregister(&p, A, old_reg));
    struct wzp_presence_handle h;
    cr_assert(wzp_presence_lookup(&p, A, &h));
    cr_assert_eq(h.slot, 2);
    cr_assert(wzp_presence_unregister(&p, A, new_reg));
    cr_assert_eq(wzp_presence_count(&p), 0);
}

Test(presence, bounded)
{
    char fp[40];
    uint64_t reg;
    for (int i = 0; i < 3; i++) {
        snprintf(fp, sizeof fp, "%04x:0000:0000:0000:0000:0000:0000:0000", i);
        cr_assert_eq(wzp_presence_register(&p, fp, NULL, (struct wzp_presence_handle){0, 0, 0},
                                           &reg, NULL, NULL),
                     WZP_OK);
    }
    cr_assert_eq(
        wzp_presence_register(&p, A, NULL, (struct wzp_presence_handle){0, 0, 0}, &reg, NULL, NULL),
        WZP_EFULL);
    /* re-registering a present fingerprint still works at the bound */
    cr_assert_eq(wzp_presence_register(&p, fp, NULL, (struct wzp_presence_handle){0, 1, 0}, &reg,
                                       NULL, NULL),
                 WZP_OK);
    cr_assert_eq(wzp_presence_count(&p), 3);
}
