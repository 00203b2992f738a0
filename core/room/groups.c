/* groups.c - named routing groups of a room (see groups.h). */
#include "groups.h"

#include "common.h"

#include <stdio.h>
#include <string.h>

void wzp_groups_init(struct wzp_groups *g)
{
    memset(g, 0, sizeof *g);
    snprintf(g->names[0], sizeof g->names[0], "room");
    g->n = 1;
}

bool wzp_group_name_valid(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= WZP_GROUP_NAME_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

static int find(const struct wzp_groups *g, const char *name)
{
    for (unsigned i = 0; i < g->n; i++)
        if (strcmp(g->names[i], name) == 0)
            return (int)i;
    return -1;
}

/* Count the names of list that g does not hold yet (each once). */
static unsigned missing(const struct wzp_groups *g, char (*list)[WZP_GROUP_NAME_MAX + 1],
                        unsigned n, char (*seen)[WZP_GROUP_NAME_MAX + 1], unsigned *nseen)
{
    unsigned add = 0;
    for (unsigned i = 0; i < n; i++) {
        if (find(g, list[i]) >= 0)
            continue;
        bool dup = false;
        for (unsigned k = 0; k < *nseen && !dup; k++)
            dup = strcmp(seen[k], list[i]) == 0;
        if (!dup) {
            memcpy(seen[(*nseen)++], list[i], WZP_GROUP_NAME_MAX + 1);
            add++;
        }
    }
    return add;
}

static uint64_t mask_of(struct wzp_groups *g, char (*list)[WZP_GROUP_NAME_MAX + 1], unsigned n)
{
    uint64_t m = 0;
    for (unsigned i = 0; i < n; i++) {
        int b = find(g, list[i]);
        if (b < 0) {
            b = (int)g->n++;
            memcpy(g->names[b], list[i], WZP_GROUP_NAME_MAX + 1);
        }
        m |= 1ull << b;
    }
    return m;
}

int wzp_groups_resolve(struct wzp_groups *g, const struct wzp_route *rt, uint64_t *sends,
                       uint64_t *hears, char *why, size_t whylen)
{
    char(*lists[2])[WZP_GROUP_NAME_MAX + 1] = {(void *)rt->sends, (void *)rt->hears};
    unsigned counts[2] = {rt->nsends, rt->hears_all ? 0 : rt->nhears};
    if (rt->nsends > WZP_ROUTE_NAMES_MAX || rt->nhears > WZP_ROUTE_NAMES_MAX) {
        snprintf(why, whylen, "more than %d group names in a list", WZP_ROUTE_NAMES_MAX);
        return WZP_EINVAL;
    }
    for (int l = 0; l < 2; l++)
        for (unsigned i = 0; i < counts[l]; i++)
            if (!wzp_group_name_valid(lists[l][i])) {
                snprintf(why, whylen,
                         "group name \"%.*s\" is not 1-%d letters, digits, '-', '_' or '.'",
                         WZP_GROUP_NAME_MAX, lists[l][i], WZP_GROUP_NAME_MAX);
                return WZP_EINVAL;
            }
    char seen[2 * WZP_ROUTE_NAMES_MAX][WZP_GROUP_NAME_MAX + 1];
    unsigned nseen = 0;
    unsigned add = missing(g, lists[0], counts[0], seen, &nseen) +
                   missing(g, lists[1], counts[1], seen, &nseen);
    if (g->n + add > WZP_GROUPS_MAX) {
        snprintf(why, whylen, "the room has %u groups; at most %d", g->n, WZP_GROUPS_MAX);
        return WZP_EFULL;
    }
    *sends = mask_of(g, lists[0], counts[0]);
    *hears = rt->hears_all ? WZP_GROUPS_ALL : mask_of(g, lists[1], counts[1]);
    return WZP_OK;
}

void wzp_groups_describe(const struct wzp_groups *g, uint64_t mask, char *out, size_t outlen)
{
    size_t off = 0;
    out[0] = '\0';
    if (mask == WZP_GROUPS_ALL) {
        snprintf(out, outlen, "*");
        return;
    }
    for (unsigned i = 0; i < g->n && off < outlen; i++)
        if (mask & (1ull << i))
            off += (size_t)snprintf(out + off, outlen - off, "%s%s", off ? "," : "", g->names[i]);
}
