/* test_shdict.c - the shared dictionary: values, ttl, bounds. */
#include "shdict.h"

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

Test(shdict, set_get_types)
{
    struct wzp_shdict d;
    wzp_shdict_init(&d, 10, 1000);
    struct wzp_shval n = {.type = WZP_SHVAL_NUMBER, .number = 1.5};
    struct wzp_shval s = {.type = WZP_SHVAL_STRING, .string = "hello", .len = 5};
    struct wzp_shval b = {.type = WZP_SHVAL_BOOLEAN, .boolean = true};
    cr_assert_eq(wzp_shdict_set(&d, "n", &n, 0, 0), WZP_OK);
    cr_assert_eq(wzp_shdict_set(&d, "s", &s, 0, 0), WZP_OK);
    cr_assert_eq(wzp_shdict_set(&d, "b", &b, 0, 0), WZP_OK);
    struct wzp_shval v;
    cr_assert_eq(wzp_shdict_get(&d, "n", &v, 0), WZP_OK);
    cr_assert_eq(v.number, 1.5);
    cr_assert_eq(wzp_shdict_get(&d, "s", &v, 0), WZP_OK);
    cr_assert_str_eq(v.string, "hello");
    free((void *)v.string);
    cr_assert_eq(wzp_shdict_get(&d, "b", &v, 0), WZP_OK);
    cr_assert(v.boolean);
    /* overwrite with another type */
    cr_assert_eq(wzp_shdict_set(&d, "s", &n, 0, 0), WZP_OK);
    cr_assert_eq(wzp_shdict_get(&d, "s", &v, 0), WZP_OK);
    cr_assert_eq(v.type, WZP_SHVAL_NUMBER);
    cr_assert_eq(wzp_shdict_count(&d), 3);
    cr_assert_eq(wzp_shdict_get(&d, "missing", &v, 0), WZP_ENOTFOUND);
    wzp_shdict_destroy(&d);
}

Test(shdict, ttl_expiry)
{
    struct wzp_shdict d;
    wzp_shdict_init(&d, 10, 1000);
    struct wzp_shval n = {.type = WZP_SHVAL_NUMBER, .number = 1};
    wzp_shdict_set(&d, "k", &n, 1000, 5000);
    int64_t ttl;
    cr_assert_eq(wzp_shdict_ttl(&d, "k", 5200, &ttl), WZP_OK);
    cr_assert_eq(ttl, 800);
    struct wzp_shval v;
    cr_assert_eq(wzp_shdict_get(&d, "k", &v, 5999), WZP_OK);
    cr_assert_eq(wzp_shdict_get(&d, "k", &v, 6000), WZP_ENOTFOUND, "expired at 6000");
    cr_assert_eq(wzp_shdict_count(&d), 0, "removed on access");
    wzp_shdict_set(&d, "a", &n, 10, 0);
    wzp_shdict_set(&d, "b", &n, 0, 0);
    cr_assert_eq(wzp_shdict_expire(&d, 100), 1);
    cr_assert_eq(wzp_shdict_count(&d), 1);
    wzp_shdict_destroy(&d);
}

Test(shdict, incr)
{
    struct wzp_shdict d;
    wzp_shdict_init(&d, 10, 1000);
    double out;
    cr_assert_eq(wzp_shdict_incr(&d, "c", 1, 100, 0, 0, &out), WZP_OK);
    cr_assert_eq(out, 101);
    cr_assert_eq(wzp_shdict_incr(&d, "c", -1, 0, 0, 0, &out), WZP_OK);
    cr_assert_eq(out, 100);
    struct wzp_shval s = {.type = WZP_SHVAL_STRING, .string = "x", .len = 1};
    wzp_shdict_set(&d, "s", &s, 0, 0);
    cr_assert_eq(wzp_shdict_incr(&d, "s", 1, 0, 0, 0, &out), WZP_EINVAL);
    /* incr with a ttl applies it to a new key */
    cr_assert_eq(wzp_shdict_incr(&d, "rate", 1, 0, 1000, 0, &out), WZP_OK);
    cr_assert_eq(wzp_shdict_incr(&d, "rate", 1, 0, 1000, 2000, &out), WZP_OK);
    cr_assert_eq(out, 1, "the old window expired: counting starts again");
    wzp_shdict_destroy(&d);
}

Test(shdict, bounded)
{
    struct wzp_shdict d;
    wzp_shdict_init(&d, 2, 64);
    struct wzp_shval n = {.type = WZP_SHVAL_NUMBER, .number = 1};
    cr_assert_eq(wzp_shdict_set(&d, "a", &n, 0, 0), WZP_OK);
    cr_assert_eq(wzp_shdict_set(&d, "b", &n, 0, 0), WZP_OK);
    cr_assert_eq(wzp_shdict_set(&d, "c", &n, 0, 0), WZP_EFULL, "entry limit");
    cr_assert_eq(wzp_shdict_set(&d, "a", &n, 0, 0), WZP_OK, "overwriting is fine");
    char big[100];
    memset(big, 'x', sizeof big);
    struct wzp_shval s = {.type = WZP_SHVAL_STRING, .string = big, .len = sizeof big};
    cr_assert_eq(wzp_shdict_set(&d, "a", &s, 0, 0), WZP_EFULL, "byte limit");
    cr_assert_eq(wzp_shdict_delete(&d, "b", 0), WZP_OK);
    cr_assert_eq(wzp_shdict_set(&d, "c", &n, 0, 0), WZP_OK, "room again after a delete");
    char key[300];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    cr_assert_eq(wzp_shdict_set(&d, key, &n, 0, 0), WZP_EINVAL, "key too long");
    cr_assert_eq(wzp_shdict_delete(&d, "zzz", 0), WZP_ENOTFOUND);
    wzp_shdict_destroy(&d);
}
