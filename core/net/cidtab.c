/* cidtab.c - see cidtab.h. */
#include "cidtab.h"

#include "common.h"
#include "identity.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 16

/* A keyed mix of the key's 8-byte words (zero-padded), then a final avalanche. Not a
 * cryptographic MAC: it only has to keep a client who never sees the seed from choosing
 * CIDs that collide. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

static size_t home(const struct wzp_cidtab *t, const uint8_t *key, size_t len)
{
    uint64_t h = t->seed ^ (len * 0x9e3779b97f4a7c15ull);
    for (size_t off = 0; off < len; off += 8) {
        uint64_t w = 0;
        memcpy(&w, key + off, WZP_MIN(len - off, sizeof w));
        h = mix(h ^ w);
    }
    return (size_t)mix(h) & t->mask;
}

static bool slot_is(const struct wzp_cidtab_slot *s, const uint8_t *key, size_t len)
{
    return s->len == len && memcmp(s->key, key, len) == 0;
}

/* The slot holding key, or the empty slot that ends its probe sequence. */
static size_t probe(const struct wzp_cidtab *t, const uint8_t *key, size_t len)
{
    size_t i = home(t, key, len);
    while (t->slots[i].val && !slot_is(&t->slots[i], key, len))
        i = (i + 1) & t->mask;
    return i;
}

int wzp_cidtab_init(struct wzp_cidtab *t, size_t min_capacity)
{
    size_t cap = MIN_CAPACITY;
    while (cap < min_capacity)
        cap *= 2;
    memset(t, 0, sizeof(*t));
    if (wzp_random(&t->seed, sizeof t->seed) != WZP_OK)
        return WZP_ECRYPTO;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots)
        return WZP_ENOMEM;
    t->mask = cap - 1;
    return WZP_OK;
}

void wzp_cidtab_free(struct wzp_cidtab *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

void *wzp_cidtab_find(const struct wzp_cidtab *t, const uint8_t *key, size_t len)
{
    if (len == 0 || len > WZP_CIDTAB_KEY_MAX)
        return NULL;
    return t->slots[probe(t, key, len)].val;
}

/* Twice the slots, every entry placed again. The old table stays if calloc fails. */
static int grow(struct wzp_cidtab *t)
{
    size_t cap = (t->mask + 1) * 2;
    struct wzp_cidtab_slot *old = t->slots, *slots = calloc(cap, sizeof *slots);
    size_t old_cap = t->mask + 1;

    if (!slots)
        return WZP_ENOMEM;
    t->slots = slots;
    t->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].val)
            t->slots[probe(t, old[i].key, old[i].len)] = old[i];
    free(old);
    return WZP_OK;
}

int wzp_cidtab_add(struct wzp_cidtab *t, const uint8_t *key, size_t len, void *val)
{
    if (len == 0 || len > WZP_CIDTAB_KEY_MAX || val == NULL)
        return WZP_EINVAL;
    size_t i = probe(t, key, len);
    if (t->slots[i].val)
        return WZP_EINVAL;
    if (2 * (t->count + 1) > t->mask + 1) {
        if (grow(t) != WZP_OK)
            return WZP_ENOMEM;
        i = probe(t, key, len);
    }
    struct wzp_cidtab_slot *s = &t->slots[i];
    s->val = val;
    s->len = (uint8_t)len;
    memcpy(s->key, key, len);
    t->count++;
    return WZP_OK;
}

bool wzp_cidtab_remove(struct wzp_cidtab *t, const uint8_t *key, size_t len, const void *val)
{
    if (len == 0 || len > WZP_CIDTAB_KEY_MAX)
        return false;
    size_t i = probe(t, key, len);
    if (!t->slots[i].val || (val && t->slots[i].val != val))
        return false;
    /* Backward shift: every later entry of the run whose home is not in (i, j] moves into
     * the hole, so probes never stop early at it. */
    for (size_t j = (i + 1) & t->mask; t->slots[j].val; j = (j + 1) & t->mask) {
        size_t k = home(t, t->slots[j].key, t->slots[j].len);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].val = NULL;
    t->count--;
    return true;
}

size_t wzp_cidtab_capacity(const struct wzp_cidtab *t)
{
    return t->mask + 1;
}
