/*
 * quality.c - adaptive quality tier of one participant and the room's weakest link.
 *
 * Each QualityReport trailer is classified into a tier (Unknown/WiFi thresholds of
 * upstream's quality.rs), then fed to two mechanisms, in this order:
 *   1. hysteresis counters: consecutive worse reports jump down to the observed tier,
 *      consecutive better reports move up one step;
 *   2. only when (1) changed nothing: bandwidth probing. A run of reports whose tier is
 *      at least the current one, lasting 30 s, starts a 5 s probe of the next tier. The
 *      probe ends on a later report: too many bad reports abort it, otherwise once 5 s
 *      have passed the tier becomes the target.
 * A failed probe restarts the stability run 60 s in the future (upstream's cooldown), so
 * the next probe needs 60 + 30 s of good reports; a worse report clears the run, and
 * with it the cooldown, exactly as upstream does.
 *
 * Time is whatever monotonic millisecond clock the caller passes in; nothing here reads
 * a clock, which keeps the controller deterministic under test.
 */
#include "quality.h"

#include "signal_codec.h"

#include <string.h>

/* stable_since_ms value meaning "no stability run in progress". */
#define NO_RUN UINT64_MAX

static const char *const tier_names[WZP_TIER_COUNT] = {
    "Catastrophic", "Degraded", "Good", "Studio32k", "Studio48k", "Studio64k",
};

const char *wzp_tier_name(enum wzp_tier t)
{
    return (unsigned)t < WZP_TIER_COUNT ? tier_names[t] : "unknown";
}

int wzp_tier_from_name(const char *name)
{
    for (int i = 0; i < WZP_TIER_COUNT; i++) {
        if (strcmp(tier_names[i], name) == 0)
            return i;
    }
    return -1;
}

const struct wzp_quality_profile *wzp_tier_profile(enum wzp_tier t)
{
    switch (t) {
    case WZP_TIER_CATASTROPHIC:
        return &WZP_PROFILE_CATASTROPHIC;
    case WZP_TIER_DEGRADED:
        return &WZP_PROFILE_DEGRADED;
    case WZP_TIER_GOOD:
        return &WZP_PROFILE_GOOD;
    case WZP_TIER_STUDIO_32K:
        return &WZP_PROFILE_STUDIO_32K;
    case WZP_TIER_STUDIO_48K:
        return &WZP_PROFILE_STUDIO_48K;
    case WZP_TIER_STUDIO_64K:
        return &WZP_PROFILE_STUDIO_64K;
    default:
        return NULL;
    }
}

enum wzp_tier wzp_quality_classify(const struct wzp_quality_report *r)
{
    double loss = wzp_report_loss_percent(r);
    unsigned rtt = wzp_report_rtt_ms(r);

    if (loss >= 15.0 || rtt >= 200)
        return WZP_TIER_CATASTROPHIC;
    if (loss >= 5.0 || rtt >= 100)
        return WZP_TIER_DEGRADED;
    if (loss >= 2.0 || rtt >= 80)
        return WZP_TIER_GOOD;
    if (loss >= 1.0 || rtt >= 50)
        return WZP_TIER_STUDIO_32K;
    if (rtt >= 30)
        return WZP_TIER_STUDIO_48K;
    return WZP_TIER_STUDIO_64K;
}

void wzp_quality_init(struct wzp_quality_ctl *q, uint64_t now_ms)
{
    (void)now_ms; /* the stability run starts at the first report, as upstream */
    memset(q, 0, sizeof(*q));
    q->tier = WZP_TIER_GOOD;
    q->probe_target = WZP_TIER_GOOD;
    q->stable_since_ms = NO_RUN;
}

/* Milliseconds from since to now; 0 when since lies in the future (cooldown). */
static uint64_t elapsed_ms(uint64_t since, uint64_t now_ms)
{
    return now_ms > since ? now_ms - since : 0;
}

static void run_clear(struct wzp_quality_ctl *q)
{
    q->stable_since_ms = NO_RUN;
    q->cooldown_until_ms = 0;
}

static bool note_worse(struct wzp_quality_ctl *q, enum wzp_tier observed)
{
    q->better_count = 0;
    if (++q->worse_count < WZP_QUALITY_DOWNGRADE_REPORTS)
        return false;
    q->tier = observed; /* straight to the observed tier, not one step */
    q->worse_count = 0;
    return true;
}

static bool note_better(struct wzp_quality_ctl *q)
{
    int needed = q->tier >= WZP_TIER_GOOD ? WZP_QUALITY_UPGRADE_REPORTS_HIGH
                                          : WZP_QUALITY_UPGRADE_REPORTS_LOW;
    q->worse_count = 0;
    if (++q->better_count < needed)
        return false;
    q->tier = (enum wzp_tier)(q->tier + 1); /* observed > tier, so tier < STUDIO_64K */
    q->better_count = 0;
    return true;
}

/* Hysteresis step; true when it changed the tier. */
static bool hysteresis(struct wzp_quality_ctl *q, enum wzp_tier observed)
{
    if (observed == q->tier) {
        q->worse_count = 0;
        q->better_count = 0;
        return false;
    }
    return observed < q->tier ? note_worse(q, observed) : note_better(q);
}

static void probe_abort(struct wzp_quality_ctl *q, uint64_t now_ms)
{
    q->probing = false;
    q->cooldown_until_ms = now_ms + WZP_QUALITY_PROBE_COOLDOWN_MS;
    q->stable_since_ms = q->cooldown_until_ms;
}

static void probe_succeed(struct wzp_quality_ctl *q, uint64_t now_ms)
{
    q->probing = false;
    q->tier = q->probe_target;
    q->better_count = 0;
    q->stable_since_ms = now_ms;
    q->cooldown_until_ms = 0;
}

/* One report while a probe runs; true when the probe raised the tier. */
static bool probe_evaluate(struct wzp_quality_ctl *q, enum wzp_tier observed, uint64_t now_ms)
{
    if (observed < q->probe_target)
        q->probe_bad++;
    if (q->probe_bad > WZP_QUALITY_PROBE_MAX_BAD_REPORTS) {
        probe_abort(q, now_ms);
        return false;
    }
    if (elapsed_ms(q->probe_started_ms, now_ms) < WZP_QUALITY_PROBE_DURATION_MS)
        return false;
    probe_succeed(q, now_ms);
    return true;
}

/* Track the stability run and start a probe once it is long enough. */
static void probe_maybe_start(struct wzp_quality_ctl *q, enum wzp_tier observed, uint64_t now_ms)
{
    if (observed < q->tier) {
        run_clear(q);
        return;
    }
    if (q->stable_since_ms == NO_RUN)
        q->stable_since_ms = now_ms;
    if (elapsed_ms(q->stable_since_ms, now_ms) < WZP_QUALITY_PROBE_STABLE_MS)
        return;
    q->probing = true;
    q->probe_target = (enum wzp_tier)(q->tier + 1);
    q->probe_started_ms = now_ms;
    q->probe_bad = 0;
}

/* Probing step, run only when hysteresis changed nothing; true when the tier rose. */
static bool probe_step(struct wzp_quality_ctl *q, enum wzp_tier observed, uint64_t now_ms)
{
    if (q->tier == WZP_TIER_STUDIO_64K)
        return false;
    if (q->probing)
        return probe_evaluate(q, observed, now_ms);
    probe_maybe_start(q, observed, now_ms);
    return false;
}

bool wzp_quality_observe(struct wzp_quality_ctl *q, const struct wzp_quality_report *r,
                         uint64_t now_ms)
{
    enum wzp_tier observed = wzp_quality_classify(r);

    if (hysteresis(q, observed)) {
        q->probing = false; /* a tier change cancels the probe and the run */
        run_clear(q);
        return true;
    }
    return probe_step(q, observed, now_ms);
}

enum wzp_tier wzp_quality_weakest(const enum wzp_tier *tiers, size_t n)
{
    if (n == 0)
        return WZP_TIER_GOOD;
    enum wzp_tier min = tiers[0];
    for (size_t i = 1; i < n; i++) {
        if (tiers[i] < min)
            min = tiers[i];
    }
    return min;
}
