/*
 * presence.h - who can be called through this relay: each `_signal` connection that
 * registered, under its fingerprint, for every worker to find. Data only: entries name
 * connections by handle (worker, slot, generation), never by pointer.
 *
 * One entry per fingerprint. Registering a fingerprint that is present replaces its
 * entry, and every registration gets its own id: only the registration that made an
 * entry can remove it, so the cleanup of a replaced connection never removes its
 * successor (the defect upstream has). Bounded: at most max entries.
 *
 * Thread-safe: one mutex, taken when a connection registers or goes and for lookups
 * (control plane; never per media packet).
 */
#ifndef WZP_PRESENCE_H
#define WZP_PRESENCE_H

#include "sizes.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wzp_presence_handle {
    unsigned worker;
    uint32_t slot, gen;
};

struct wzp_presence_entry;

struct wzp_presence {
    pthread_mutex_t lock;
    struct wzp_presence_entry **buckets;
    size_t nbuckets, count, max;
    uint64_t next_reg;
};

int wzp_presence_init(struct wzp_presence *p, size_t max);
void wzp_presence_free(struct wzp_presence *p);

/*
 * Register fp (a fingerprint string; alias may be NULL) for the connection behind h. WZP_OK:
 * *reg_id names this registration; if fp was registered, *replaced (when not NULL) gets the
 * previous connection's handle and *was_replaced is true. WZP_EFULL at max entries (a new fp),
 * WZP_ENOMEM.
 */
int wzp_presence_register(struct wzp_presence *p, const char *fp, const char *alias,
                          struct wzp_presence_handle h, uint64_t *reg_id,
                          struct wzp_presence_handle *replaced, bool *was_replaced);

/* Remove fp if reg_id still names its entry; false if it was replaced or is gone. */
bool wzp_presence_unregister(struct wzp_presence *p, const char *fp, uint64_t reg_id);

/* The connection registered under fp, if any. */
bool wzp_presence_lookup(struct wzp_presence *p, const char *fp, struct wzp_presence_handle *out);

size_t wzp_presence_count(struct wzp_presence *p);

/* What /presence shows of a registration. */
struct wzp_presence_view {
    char fingerprint[WZP_FINGERPRINT_LEN + 1];
    char alias[WZP_ALIAS_MAX + 1];
    bool has_alias;
    int64_t since; /* wall-clock seconds of the registration */
};

/* Copy up to max registrations (in no particular order) to out; returns how many. */
size_t wzp_presence_list(struct wzp_presence *p, struct wzp_presence_view *out, size_t max);

#endif
