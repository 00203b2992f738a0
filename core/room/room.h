/*
 * room.h - the room table and its rooms.
 *
 * Locking: the table has one mutex, held only to find, create or remove a room (at join
 * and leave). Each room has a pthread_rwlock_t: media fan-out holds the read lock while
 * it walks the participant array; join, leave and tier changes take the write lock.
 * Nothing here allocates while a read lock is held.
 *
 * Ownership: a participant entry is written by the worker that owns its connection, under
 * the room's write lock. Other workers read entries under the read lock and address the
 * connection only through (worker, slot, gen); the conn pointer is dereferenced only by
 * the owning worker.
 */
#ifndef WZP_ROOM_H
#define WZP_ROOM_H

#include "groups.h"
#include "identity.h"
#include "sizes.h"
#include "quality.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct wzp_conn;

/* Routing flags a participant carries (set at join; policy will change them later). */
enum {
    WZP_PART_NO_SEND = 1u << 0, /* listener: its media is not forwarded */
    WZP_PART_NO_RECV = 1u << 1, /* receives no media */
};

struct wzp_participant {
    uint64_t id;           /* process-unique, never reused */
    struct wzp_conn *conn; /* only the owning worker dereferences this */
    uint32_t worker;       /* owning worker index */
    uint32_t slot, gen;    /* connection handle inside that worker */
    uint32_t flags;        /* WZP_PART_* */
    uint64_t sends, hears; /* routing groups (groups.h): default "room" and every group */
    uint8_t role;          /* enum wzp_role (policy.h); listener/muted also set NO_SEND */
    enum wzp_tier tier;    /* participant's current quality tier */
    /* Activity, written by the owning worker under the read lock (single writer): media
     * packets other than comfort noise, and when the last one arrived. */
    _Atomic uint64_t packets;
    _Atomic uint64_t last_media_ms;
    /* The participant's last QualityReport (same single writer), for metrics. */
    _Atomic uint8_t loss_pct, rtt_4ms;
    _Atomic bool has_report;
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    char alias[WZP_ALIAS_MAX + 1];
    bool has_alias;
};

struct wzp_room {
    char name[WZP_ROOM_NAME_MAX + 1];
    pthread_rwlock_t lock;
    struct wzp_participant *parts; /* join order; grown under the write lock */
    struct wzp_groups *groups;     /* names of the routing groups; NULL until a policy
                                    * routes someone (write lock) */
    size_t count, cap;
    enum wzp_tier tier;    /* current weakest-link tier announced to the room */
    _Atomic bool tap;      /* --debug-tap matches this room: log every packet */
    uint64_t version;      /* bumped under the write lock at every membership/tier change */
    unsigned refs;         /* table references: one per member (guarded by table lock) */
    struct wzp_room *next; /* hash chain (table lock) */
};

struct wzp_room_table {
    pthread_mutex_t lock;
    struct wzp_room **buckets;
    size_t nbuckets;
    size_t nrooms;
};

int wzp_room_table_init(struct wzp_room_table *t, size_t nbuckets);
void wzp_room_table_destroy(struct wzp_room_table *t); /* rooms must be empty */

/* Find an existing room and take a reference; NULL if there is none. */
struct wzp_room *wzp_room_lookup(struct wzp_room_table *t, const char *name);

/*
 * Find the room holding participant id and take a reference to it (NULL if none).
 * Walks every room (control plane only: policy kicks and role changes).
 */
struct wzp_room *wzp_room_of_participant(struct wzp_room_table *t, uint64_t id);

/* Copy up to max room names (and sizes) into the arrays; returns how many rooms exist. */
size_t wzp_room_table_list(struct wzp_room_table *t, char (*names)[WZP_ROOM_NAME_MAX + 1],
                           size_t *sizes, size_t max);

/* Find or create a room and take a reference. NULL on allocation failure. */
struct wzp_room *wzp_room_acquire(struct wzp_room_table *t, const char *name);
/* Drop a reference; the room is freed when the last one goes. */
void wzp_room_release(struct wzp_room_table *t, struct wzp_room *r);

/* Number of rooms (takes the table lock). */
size_t wzp_room_table_count(struct wzp_room_table *t);

/*
 * The room's lock, by name. Read: media fan-out, copies for views and policies. Write:
 * membership, tiers, roles and flags. Never held across a call into Lua or a wait.
 */
static inline void wzp_room_rdlock(struct wzp_room *r)
{
    pthread_rwlock_rdlock(&r->lock);
}
static inline void wzp_room_wrlock(struct wzp_room *r)
{
    pthread_rwlock_wrlock(&r->lock);
}
static inline void wzp_room_unlock(struct wzp_room *r)
{
    pthread_rwlock_unlock(&r->lock);
}

/* What the control plane may know of a participant: a copy, taken under the read lock. */
struct wzp_member {
    uint64_t id;
    uint32_t worker;
    uint8_t role; /* enum wzp_role */
    enum wzp_tier tier;
    uint64_t packets, last_media_ms;
    bool has_report; /* loss_pct (0..255 = 0..100 %) and rtt_4ms are set */
    uint8_t loss_pct, rtt_4ms;
    bool has_alias;
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    char alias[WZP_ALIAS_MAX + 1];
    uint64_t sends, hears; /* routing groups (groups.h) */
};

/* The room's routing group names into out (read lock); false while it has none (no
 * policy routed anyone: everyone sends into "room" and hears everything). Names are
 * never removed, so names copied after members cover every bit of their masks. */
bool wzp_room_groups(struct wzp_room *r, struct wzp_groups *out);

/* Copy up to max members, in join order, under the read lock; returns how many were
 * copied. *tier (if not NULL) gets the room's tier at the same moment. */
size_t wzp_room_members(struct wzp_room *r, struct wzp_member *out, size_t max,
                        enum wzp_tier *tier);

/* Participants now (read lock). */
size_t wzp_room_size(struct wzp_room *r);

/*
 * The following require the room's write lock (held by the caller).
 * wzp_room_add_locked copies *p into the array (join order). WZP_ENOMEM on failure.
 * wzp_room_remove_locked removes the participant with that id; WZP_ENOTFOUND if absent.
 * wzp_room_find_locked returns the index or -1 (read or write lock).
 */
int wzp_room_add_locked(struct wzp_room *r, const struct wzp_participant *p);
int wzp_room_remove_locked(struct wzp_room *r, uint64_t id);
ssize_t wzp_room_find_locked(const struct wzp_room *r, uint64_t id);

/* Weakest tier over current participants (GOOD when empty). Read or write lock. */
enum wzp_tier wzp_room_weakest_locked(const struct wzp_room *r);

/* A new process-unique participant id. */
uint64_t wzp_participant_next_id(void);

#endif
