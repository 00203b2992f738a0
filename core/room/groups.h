/*
 * groups.h - who hears whom inside a room: named groups, at most 64 per room.
 *
 * Every participant sends into a set of groups and hears a set of groups, both 64-bit
 * masks; a receiver gets a sender's media when the two share a group. By default a
 * participant sends into "room" (bit 0) and hears every group, so everyone hears every
 * speaker, as upstream. Policies name groups ("stage", "fr", "breakout-2"); the room maps
 * each name to a bit the first time it is used and keeps it while the room exists.
 *
 * The fan-out tests one AND per receiver (wzp_route_delivers); names are resolved only
 * when a policy changes routing, under the room's write lock.
 */
#ifndef WZP_GROUPS_H
#define WZP_GROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_GROUPS_MAX      64   /* names per room: one bit each */
#define WZP_GROUP_NAME_MAX  32   /* letters, digits, '-', '_', '.' */
#define WZP_ROUTE_NAMES_MAX 16   /* names in one sends or hears list of a policy */
#define WZP_GROUP_ROOM      1ull /* "room": what a participant sends into by default */
#define WZP_GROUPS_ALL      UINT64_MAX

struct wzp_groups {
    unsigned n;
    char names[WZP_GROUPS_MAX][WZP_GROUP_NAME_MAX + 1];
};

/* A routing request as a policy gives it: names, or "hears everything". */
struct wzp_route {
    bool set; /* false: leave the participant's routing as it is */
    unsigned nsends, nhears;
    bool hears_all;
    char sends[WZP_ROUTE_NAMES_MAX][WZP_GROUP_NAME_MAX + 1];
    char hears[WZP_ROUTE_NAMES_MAX][WZP_GROUP_NAME_MAX + 1];
};

static inline bool wzp_route_delivers(uint64_t sender_sends, uint64_t receiver_hears)
{
    return (sender_sends & receiver_hears) != 0;
}

/* The groups of a new room: "room" alone. */
void wzp_groups_init(struct wzp_groups *g);

bool wzp_group_name_valid(const char *name);

/*
 * The masks a route asks for, creating the names it needs. WZP_OK; WZP_EINVAL a name is
 * not valid; WZP_EFULL the room has WZP_GROUPS_MAX names already. why gets a one-line
 * reason on error. Nothing is created on error.
 */
int wzp_groups_resolve(struct wzp_groups *g, const struct wzp_route *rt, uint64_t *sends,
                       uint64_t *hears, char *why, size_t whylen);

/* Names of the groups in mask, comma-separated ("*" for every group) into out. */
void wzp_groups_describe(const struct wzp_groups *g, uint64_t mask, char *out, size_t outlen);

#endif
