/*
 * test_groups.c - routing groups: the default ("room", hears all), names made on first use
 * and reused, the 64-name bound (nothing created by a refused request), invalid names,
 * the delivery rule and the description /rooms/NAME shows.
 */
#include "groups.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct wzp_route route(const char *sends, const char *hears)
{
    struct wzp_route rt = {.set = true};
    char buf[512];
    snprintf(buf, sizeof buf, "%s", sends);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
        snprintf(rt.sends[rt.nsends++], WZP_GROUP_NAME_MAX + 1, "%s", t);
    if (strcmp(hears, "all") == 0) {
        rt.hears_all = true;
    } else {
        snprintf(buf, sizeof buf, "%s", hears);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
            snprintf(rt.hears[rt.nhears++], WZP_GROUP_NAME_MAX + 1, "%s", t);
    }
    return rt;
}

Test(groups, names_are_made_once_and_masks_follow)
{
    struct wzp_groups g;
    wzp_groups_init(&g);
    char why[128], out[256];
    uint64_t s, h;
    struct wzp_route rt = route("stage", "stage,room");
    cr_assert_eq(wzp_groups_resolve(&g, &rt, &s, &h, why, sizeof why), WZP_OK);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(s, 2ull);
    cr_assert_eq(h, 3ull);
    rt = route("room,stage", "all");
    cr_assert_eq(wzp_groups_resolve(&g, &rt, &s, &h, why, sizeof why), WZP_OK);
    cr_assert_eq(g.n, 2, "no new names");
    cr_assert_eq(h, WZP_GROUPS_ALL);
    wzp_groups_describe(&g, s, out, sizeof out);
    cr_assert_str_eq(out, "room,stage");
    wzp_groups_describe(&g, h, out, sizeof out);
    cr_assert_str_eq(out, "*");
    cr_assert(wzp_route_delivers(WZP_GROUP_ROOM, WZP_GROUPS_ALL), "the default");
    cr_assert_not(wzp_route_delivers(2ull, 1ull));
    cr_assert_not(wzp_route_delivers(0, WZP_GROUPS_ALL), "sends into nothing");
}

Test(groups, sixty_four_names_at_most_and_nothing_made_by_a_refusal)
{
    struct wzp_groups g;
    wzp_groups_init(&g);
    char why[128];
    uint64_t s, h;
    for (int i = 1; i < WZP_GROUPS_MAX; i++) {
        char name[16];
        snprintf(name, sizeof name, "g%d", i);
        struct wzp_route rt = route(name, "all");
        cr_assert_eq(wzp_groups_resolve(&g, &rt, &s, &h, why, sizeof why), WZP_OK, "%s", why);
    }
    cr_assert_eq(g.n, 64);
    cr_assert_eq(s, 1ull << 63);
    struct wzp_route rt = route("g1", "g2,extra");
    cr_assert_eq(wzp_groups_resolve(&g, &rt, &s, &h, why, sizeof why), WZP_EFULL);
    cr_assert_str_eq(why, "the room has 64 groups; at most 64");
    cr_assert_eq(g.n, 64);
    rt = route("g1", "g2,g3");
    cr_assert_eq(wzp_groups_resolve(&g, &rt, &s, &h, why, sizeof why), WZP_OK, "known names");
}

Test(groups, invalid_names_are_refused)
{
    struct wzp_groups g;
    wzp_groups_init(&g);
    char why[128];
    uint64_t s, h;
    struct wzp_route rt = route("a b", "all");
    cr_assert_eq(wzp_groups_resolve(&g, &rt, &s, &h, why, sizeof why), WZP_EINVAL);
    cr_assert_not_null(strstr(why, "\"a b\""), "%s", why);
    cr_assert_eq(g.n, 1);
    cr_assert(wzp_group_name_valid("fr-CA_2.x"));
    cr_assert_not(wzp_group_name_valid(""));
    cr_assert_not(wzp_group_name_valid("x\n"));
    char longname[WZP_GROUP_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_not(wzp_group_name_valid(longname));
}
