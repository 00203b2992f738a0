/* recent.c - a minute of refusal counts (see recent.h). */
#include "recent.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct series {
    const char *family, *label;
    size_t offset; /* of the counter in struct wzp_stats */
};

#define WZP_RECENT_ENTRY(name, family, label, help)                                                \
    {#family, label, offsetof(struct wzp_stats, name)},
static const struct series all_counters[] = {WZP_STATS_FIELDS(WZP_RECENT_ENTRY)};
#undef WZP_RECENT_ENTRY

/* The refusals family's counters, found once (the table is constant). */
static size_t refusal_index[WZP_RECENT_MAX_SERIES];
static const char *refusal_labels[WZP_RECENT_MAX_SERIES];
static size_t nrefusals;
static pthread_once_t indexed = PTHREAD_ONCE_INIT;

static void find_refusals(void)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof all_counters / sizeof all_counters[0]; i++)
        if (strcmp(all_counters[i].family, "refusals") == 0 && n < WZP_RECENT_MAX_SERIES) {
            refusal_index[n] = i;
            refusal_labels[n] = all_counters[i].label;
            n++;
        }
    nrefusals = n;
}

static void index_refusals(void)
{
    pthread_once(&indexed, find_refusals);
}

size_t wzp_recent_reasons(const char *const **labels)
{
    index_refusals();
    *labels = refusal_labels;
    return nrefusals;
}

void wzp_recent_sample(struct wzp_recent *rc, struct wzp_stats *const *stats, size_t n)
{
    index_refusals();
    unsigned slot =
        (atomic_load_explicit(&rc->newest, memory_order_relaxed) + 1) % (WZP_RECENT_WINDOW_S + 1);
    if (atomic_load_explicit(&rc->samples, memory_order_relaxed) == 0)
        slot = 0;
    for (size_t k = 0; k < nrefusals; k++) {
        size_t off = all_counters[refusal_index[k]].offset;
        uint64_t sum = 0;
        for (size_t w = 0; w < n; w++)
            sum += atomic_load_explicit((_Atomic uint64_t *)((char *)stats[w] + off),
                                        memory_order_relaxed);
        atomic_store_explicit(&rc->ring[slot][k], sum, memory_order_relaxed);
    }
    atomic_store_explicit(&rc->newest, slot, memory_order_release);
    unsigned s = atomic_load_explicit(&rc->samples, memory_order_relaxed);
    if (s < WZP_RECENT_WINDOW_S + 1)
        atomic_store_explicit(&rc->samples, s + 1, memory_order_release);
}

uint64_t wzp_recent_refusals(struct wzp_recent *rc, uint64_t counts[WZP_RECENT_MAX_SERIES])
{
    index_refusals();
    memset(counts, 0, sizeof(uint64_t) * WZP_RECENT_MAX_SERIES);
    unsigned samples = atomic_load_explicit(&rc->samples, memory_order_acquire);
    unsigned newest = atomic_load_explicit(&rc->newest, memory_order_acquire);
    if (samples == 0)
        return 0;
    /* the oldest sample: a minute before the newest once the ring is full, else the
     * first one (the relay's start: counters were 0 before it) */
    bool full = samples == WZP_RECENT_WINDOW_S + 1;
    unsigned oldest = full ? (newest + 1) % (WZP_RECENT_WINDOW_S + 1) : 0;
    uint64_t total = 0;
    for (size_t k = 0; k < nrefusals; k++) {
        uint64_t now = atomic_load_explicit(&rc->ring[newest][k], memory_order_relaxed);
        uint64_t then = full ? atomic_load_explicit(&rc->ring[oldest][k], memory_order_relaxed) : 0;
        counts[k] = now > then ? now - then : 0;
        total += counts[k];
    }
    return total;
}
