/*
 * shdict.h - the policy shared dictionary: string keys to number, string or boolean
 * values with an optional time-to-live. Owned by C, one per relay, visible to every
 * worker's Lua state and kept across policy reloads.
 *
 * Thread-safe: one mutex; every operation is short (no callbacks under the lock).
 * Bounded: at most max_entries keys and max_bytes of keys plus string values; a set
 * that would exceed either fails with WZP_EFULL. Expired keys are removed lazily on
 * access and by wzp_shdict_expire().
 */
#ifndef WZP_SHDICT_H
#define WZP_SHDICT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_SHDICT_KEY_MAX   256
#define WZP_SHDICT_VALUE_MAX 4096
/* The relay's dictionary (wzp.shared): limits for all policies together. */
#define WZP_SHARED_MAX_KEYS  100000
#define WZP_SHARED_MAX_BYTES (16u << 20)

enum wzp_shval_type {
    WZP_SHVAL_NONE = 0,
    WZP_SHVAL_NUMBER,
    WZP_SHVAL_STRING,
    WZP_SHVAL_BOOLEAN,
};

struct wzp_shval {
    enum wzp_shval_type type;
    double number;
    bool boolean;
    const char *string; /* in a get: a copy the caller frees with free() */
    size_t len;
};

struct wzp_shentry;

struct wzp_shdict {
    pthread_mutex_t lock;
    struct wzp_shentry **buckets;
    size_t nbuckets;
    size_t count, bytes;
    size_t max_entries, max_bytes;
};

int wzp_shdict_init(struct wzp_shdict *d, size_t max_entries, size_t max_bytes);
void wzp_shdict_destroy(struct wzp_shdict *d);

/* Store v under key; ttl_ms 0 = no expiry. WZP_EINVAL (key/value too long), WZP_EFULL. */
int wzp_shdict_set(struct wzp_shdict *d, const char *key, const struct wzp_shval *v,
                   uint64_t ttl_ms, uint64_t now_ms);
/* WZP_OK and *v (strings copied), or WZP_ENOTFOUND. */
int wzp_shdict_get(struct wzp_shdict *d, const char *key, struct wzp_shval *v, uint64_t now_ms);
/*
 * Add delta to a number (a missing key starts at init, with ttl_ms if given); the new
 * value in *out. WZP_EINVAL if the key holds a non-number.
 */
int wzp_shdict_incr(struct wzp_shdict *d, const char *key, double delta, double init,
                    uint64_t ttl_ms, uint64_t now_ms, double *out);
/* Remove a key; WZP_ENOTFOUND if absent. */
int wzp_shdict_delete(struct wzp_shdict *d, const char *key, uint64_t now_ms);
/* Remaining ttl of a key in ms (-1: no expiry), or WZP_ENOTFOUND. */
int wzp_shdict_ttl(struct wzp_shdict *d, const char *key, uint64_t now_ms, int64_t *ttl_ms);
/* Drop every expired key; returns how many. */
size_t wzp_shdict_expire(struct wzp_shdict *d, uint64_t now_ms);
size_t wzp_shdict_count(struct wzp_shdict *d);

#endif
