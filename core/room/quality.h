/*
 * quality.h - per-participant adaptive quality controller and the room's weakest-link
 * tier (doc/PROTOCOL.md, "Quality").
 *
 * Classification of one report (loss% = loss_pct/255*100, rtt = rtt_4ms*4 ms):
 *   loss >= 15 or rtt >= 200 -> CATASTROPHIC;  loss >= 5 or rtt >= 100 -> DEGRADED;
 *   loss >= 2  or rtt >= 80  -> GOOD;          loss >= 1 or rtt >= 50  -> STUDIO_32K;
 *   rtt >= 30 -> STUDIO_48K;                   else STUDIO_64K.
 * Hysteresis: a report equal to the current tier resets the counters. Worse: after 3
 * consecutive worse reports jump to the observed tier. Better: after 5 consecutive
 * better reports (10 when current >= GOOD) go up one step. The counters keep running
 * during a probe.
 * Probing (below STUDIO_64K, only for reports where no hysteresis transition fired): a
 * stability run starts at the first report with observed >= current (not at init) and
 * is cleared by a report with observed < current. A report that finds the run >= 30 s
 * old starts a probe toward the next tier (tier unchanged). During the probe a report
 * below the target counts as bad; the report giving more than 1 bad aborts the probe;
 * otherwise the first report >= 5 s after the start makes the target the tier and
 * restarts the run at that moment. An abort is followed by a 60 s cooldown implemented
 * as upstream does: the run restarts 60 s in the future, so the next probe comes no
 * earlier than 90 s after the abort, and a report with observed < current during the
 * cooldown clears it like any run. A tier change by hysteresis cancels a probe and
 * clears the run.
 *
 * Not thread-safe: a controller is touched only by the worker that owns the participant.
 */
#ifndef WZP_QUALITY_H
#define WZP_QUALITY_H

#include "media.h"

#include <stdbool.h>
#include <stdint.h>

/* Ordered worst to best: comparisons with < and > mean worse and better. */
enum wzp_tier {
    WZP_TIER_CATASTROPHIC = 0,
    WZP_TIER_DEGRADED = 1,
    WZP_TIER_GOOD = 2,
    WZP_TIER_STUDIO_32K = 3,
    WZP_TIER_STUDIO_48K = 4,
    WZP_TIER_STUDIO_64K = 5,
    WZP_TIER_COUNT = 6,
};

#define WZP_QUALITY_DOWNGRADE_REPORTS     3
#define WZP_QUALITY_UPGRADE_REPORTS_LOW   5  /* below GOOD */
#define WZP_QUALITY_UPGRADE_REPORTS_HIGH  10 /* at or above GOOD */
#define WZP_QUALITY_PROBE_STABLE_MS       30000
#define WZP_QUALITY_PROBE_DURATION_MS     5000
#define WZP_QUALITY_PROBE_COOLDOWN_MS     60000
#define WZP_QUALITY_PROBE_MAX_BAD_REPORTS 1

/* "Catastrophic", "Degraded", "Good", "Studio32k", "Studio48k", "Studio64k";
 * "unknown" out of range. */
const char *wzp_tier_name(enum wzp_tier t);
/* Parse a tier name as above (case-sensitive); -1 if unknown. */
int wzp_tier_from_name(const char *name);
/* WZP_PROFILE_* of a tier (signal.h); NULL out of range. */
const struct wzp_quality_profile *wzp_tier_profile(enum wzp_tier t);

enum wzp_tier wzp_quality_classify(const struct wzp_quality_report *r);

struct wzp_quality_ctl {
    enum wzp_tier tier;
    int worse_count;
    int better_count;
    /* Start of the run of reports with observed >= tier; UINT64_MAX when no run is in
     * progress; in the future during a cooldown. */
    uint64_t stable_since_ms;
    bool probing;
    enum wzp_tier probe_target;
    uint64_t probe_started_ms;
    int probe_bad;
    uint64_t cooldown_until_ms; /* end of the cooldown after an abort; 0 when none */
};

/* Start at GOOD with no stability run; now_ms is any monotonic millisecond clock (unused:
 * like upstream, the run starts at the first report). */
void wzp_quality_init(struct wzp_quality_ctl *q, uint64_t now_ms);

/* Feed one report observed at now_ms. Returns true if the tier changed. */
bool wzp_quality_observe(struct wzp_quality_ctl *q, const struct wzp_quality_report *r,
                         uint64_t now_ms);

/* Weakest (minimum) tier of n tiers; GOOD for n == 0. */
enum wzp_tier wzp_quality_weakest(const enum wzp_tier *tiers, size_t n);

#endif
