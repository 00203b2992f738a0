/*
 * recent.h - "in the last minute" for the refusal counters (wzp_relay_refusals_total by
 * reason): worker 0 sums them over the workers once a second into a ring of samples;
 * readers (the HTTP server, on any thread) subtract the sample a minute old from the
 * newest. While the relay is younger than a minute, the window is its whole life.
 *
 * One writer (worker 0's heartbeat), any number of readers; every slot is atomic, so a
 * reader racing a sample sees either the old or the new value of a slot (off by at most
 * one second's refusals).
 */
#ifndef WZP_RECENT_H
#define WZP_RECENT_H

#include "stats.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_RECENT_WINDOW_S   60
#define WZP_RECENT_MAX_SERIES 48 /* refusal reasons kept (test_recent checks they fit) */

struct wzp_recent {
    _Atomic uint64_t ring[WZP_RECENT_WINDOW_S + 1][WZP_RECENT_MAX_SERIES];
    _Atomic unsigned newest;  /* slot of the newest sample */
    _Atomic unsigned samples; /* taken so far, up to WZP_RECENT_WINDOW_S + 1 */
};

/* The refusal reasons, in the order of the counts below (the labels of the refusals
 * family); their number is returned. */
size_t wzp_recent_reasons(const char *const **labels);

/* Worker 0, once a second: sum the refusal counters of the n workers' stats. */
void wzp_recent_sample(struct wzp_recent *rc, struct wzp_stats *const *stats, size_t n);

/* Refusals per reason over the last minute (or since the first sample): counts[i] for
 * reason i of wzp_recent_reasons; returns the sum. */
uint64_t wzp_recent_refusals(struct wzp_recent *rc, uint64_t counts[WZP_RECENT_MAX_SERIES]);

#endif
