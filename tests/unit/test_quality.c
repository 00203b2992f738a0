/* test_quality.c - tier classification, hysteresis, probing and weakest link (quality.c). */
#include "quality.h"
#include "signal_codec.h"

#include <criterion/criterion.h>

static struct wzp_quality_report rep(uint8_t loss_pct, uint8_t rtt_4ms)
{
    struct wzp_quality_report r = {loss_pct, rtt_4ms, 10, 200};
    return r;
}

/* A report that classifies as tier t (via RTT only). */
static struct wzp_quality_report rep_for(enum wzp_tier t)
{
    static const uint8_t rtt_4ms[WZP_TIER_COUNT] = {50, 25, 20, 13, 8, 0};
    return rep(0, rtt_4ms[t]);
}

static enum wzp_tier classify(uint8_t loss_pct, uint8_t rtt_4ms)
{
    struct wzp_quality_report r = rep(loss_pct, rtt_4ms);
    return wzp_quality_classify(&r);
}

static bool feed(struct wzp_quality_ctl *q, enum wzp_tier t, uint64_t now_ms)
{
    struct wzp_quality_report r = rep_for(t);
    return wzp_quality_observe(q, &r, now_ms);
}

/* Feed n reports of tier t spaced step_ms apart from *now; *now ends after the last one. */
static int feed_n(struct wzp_quality_ctl *q, enum wzp_tier t, int n, uint64_t *now,
                  uint64_t step_ms)
{
    int changes = 0;
    for (int i = 0; i < n; i++) {
        changes += feed(q, t, *now);
        *now += step_ms;
    }
    return changes;
}

/* ---- classification ---- */

Test(classify, rep_for_helper_is_consistent)
{
    for (int t = 0; t < WZP_TIER_COUNT; t++) {
        struct wzp_quality_report r = rep_for((enum wzp_tier)t);
        cr_assert_eq((int)wzp_quality_classify(&r), t, "tier %d", t);
    }
}

Test(classify, loss_boundaries)
{
    /* 2/255 = 0.78 %, 3/255 = 1.18 % */
    cr_assert_eq(classify(2, 0), WZP_TIER_STUDIO_64K);
    cr_assert_eq(classify(3, 0), WZP_TIER_STUDIO_32K);
    /* 5/255 = 1.96 %, 6/255 = 2.35 % */
    cr_assert_eq(classify(5, 0), WZP_TIER_STUDIO_32K);
    cr_assert_eq(classify(6, 0), WZP_TIER_GOOD);
    /* 12/255 = 4.71 %, 13/255 = 5.10 % */
    cr_assert_eq(classify(12, 0), WZP_TIER_GOOD);
    cr_assert_eq(classify(13, 0), WZP_TIER_DEGRADED);
    /* 38/255 = 14.90 %, 39/255 = 15.29 % */
    cr_assert_eq(classify(38, 0), WZP_TIER_DEGRADED);
    cr_assert_eq(classify(39, 0), WZP_TIER_CATASTROPHIC);
    cr_assert_eq(classify(255, 0), WZP_TIER_CATASTROPHIC);
}

Test(classify, rtt_boundaries)
{
    cr_assert_eq(classify(0, 0), WZP_TIER_STUDIO_64K);
    cr_assert_eq(classify(0, 7), WZP_TIER_STUDIO_64K);    /* 28 ms */
    cr_assert_eq(classify(0, 8), WZP_TIER_STUDIO_48K);    /* 32 ms */
    cr_assert_eq(classify(0, 12), WZP_TIER_STUDIO_48K);   /* 48 ms */
    cr_assert_eq(classify(0, 13), WZP_TIER_STUDIO_32K);   /* 52 ms */
    cr_assert_eq(classify(0, 19), WZP_TIER_STUDIO_32K);   /* 76 ms */
    cr_assert_eq(classify(0, 20), WZP_TIER_GOOD);         /* 80 ms */
    cr_assert_eq(classify(0, 24), WZP_TIER_GOOD);         /* 96 ms */
    cr_assert_eq(classify(0, 25), WZP_TIER_DEGRADED);     /* 100 ms */
    cr_assert_eq(classify(0, 49), WZP_TIER_DEGRADED);     /* 196 ms */
    cr_assert_eq(classify(0, 50), WZP_TIER_CATASTROPHIC); /* 200 ms */
    cr_assert_eq(classify(0, 255), WZP_TIER_CATASTROPHIC);
}

static enum wzp_tier expected_by_loss(unsigned v)
{
    if (v >= 39)
        return WZP_TIER_CATASTROPHIC;
    if (v >= 13)
        return WZP_TIER_DEGRADED;
    if (v >= 6)
        return WZP_TIER_GOOD;
    if (v >= 3)
        return WZP_TIER_STUDIO_32K;
    return WZP_TIER_STUDIO_64K;
}

static enum wzp_tier expected_by_rtt(unsigned v)
{
    if (v >= 50)
        return WZP_TIER_CATASTROPHIC;
    if (v >= 25)
        return WZP_TIER_DEGRADED;
    if (v >= 20)
        return WZP_TIER_GOOD;
    if (v >= 13)
        return WZP_TIER_STUDIO_32K;
    if (v >= 8)
        return WZP_TIER_STUDIO_48K;
    return WZP_TIER_STUDIO_64K;
}

Test(classify, every_value_pair_is_the_worse_of_loss_and_rtt)
{
    for (unsigned l = 0; l < 256; l++) {
        for (unsigned r = 0; r < 256; r++) {
            enum wzp_tier a = expected_by_loss(l), b = expected_by_rtt(r);
            enum wzp_tier want = a < b ? a : b;
            cr_assert_eq(classify((uint8_t)l, (uint8_t)r), want, "loss %u rtt %u", l, r);
        }
    }
}

Test(classify, jitter_and_bitrate_are_ignored)
{
    struct wzp_quality_report r = {0, 0, 255, 0};
    cr_assert_eq(wzp_quality_classify(&r), WZP_TIER_STUDIO_64K);
    r = (struct wzp_quality_report){13, 0, 0, 255};
    cr_assert_eq(wzp_quality_classify(&r), WZP_TIER_DEGRADED);
}

/* ---- names and profiles ---- */

Test(tier, names_round_trip)
{
    static const char *const names[WZP_TIER_COUNT] = {"Catastrophic", "Degraded",  "Good",
                                                      "Studio32k",    "Studio48k", "Studio64k"};
    for (int t = 0; t < WZP_TIER_COUNT; t++) {
        cr_assert_str_eq(wzp_tier_name((enum wzp_tier)t), names[t]);
        cr_assert_eq(wzp_tier_from_name(names[t]), t);
    }
    cr_assert_eq(wzp_tier_from_name("good"), -1);
    cr_assert_eq(wzp_tier_from_name("Studio"), -1);
    cr_assert_eq(wzp_tier_from_name(""), -1);
    cr_assert_str_eq(wzp_tier_name(WZP_TIER_COUNT), "unknown");
}

Test(tier, profiles)
{
    cr_assert_eq(wzp_tier_profile(WZP_TIER_CATASTROPHIC), &WZP_PROFILE_CATASTROPHIC);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_DEGRADED), &WZP_PROFILE_DEGRADED);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_GOOD), &WZP_PROFILE_GOOD);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_STUDIO_32K), &WZP_PROFILE_STUDIO_32K);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_STUDIO_48K), &WZP_PROFILE_STUDIO_48K);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_STUDIO_64K), &WZP_PROFILE_STUDIO_64K);
    cr_assert_null(wzp_tier_profile(WZP_TIER_COUNT));
    /* upstream-relay.md §3.5 profile table */
    cr_assert_eq(wzp_tier_profile(WZP_TIER_CATASTROPHIC)->codec, WZP_CODEC_CODEC2_1200);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_DEGRADED)->codec, WZP_CODEC_OPUS6K);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_GOOD)->codec, WZP_CODEC_OPUS24K);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_STUDIO_32K)->codec, WZP_CODEC_OPUS32K);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_STUDIO_48K)->codec, WZP_CODEC_OPUS48K);
    cr_assert_eq(wzp_tier_profile(WZP_TIER_STUDIO_64K)->codec, WZP_CODEC_OPUS64K);
}

/* ---- hysteresis ---- */

Test(hysteresis, starts_at_good)
{
    struct wzp_quality_ctl q;
    wzp_quality_init(&q, 1234);
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
    cr_assert_not(q.probing);
    cr_assert_eq(q.worse_count, 0);
    cr_assert_eq(q.better_count, 0);
}

Test(hysteresis, downgrade_after_exactly_three_and_jumps)
{
    struct wzp_quality_ctl q;
    wzp_quality_init(&q, 0);
    cr_assert_not(feed(&q, WZP_TIER_CATASTROPHIC, 1000));
    cr_assert_not(feed(&q, WZP_TIER_CATASTROPHIC, 2000));
    cr_assert_eq(q.tier, WZP_TIER_GOOD, "2 worse reports must not downgrade");
    cr_assert(feed(&q, WZP_TIER_CATASTROPHIC, 3000));
    cr_assert_eq(q.tier, WZP_TIER_CATASTROPHIC, "jumps past Degraded");
    cr_assert_eq(q.worse_count, 0);
}

Test(hysteresis, downgrade_goes_to_tier_of_third_report)
{
    struct wzp_quality_ctl q;
    wzp_quality_init(&q, 0);
    feed(&q, WZP_TIER_CATASTROPHIC, 1000);
    feed(&q, WZP_TIER_CATASTROPHIC, 2000);
    cr_assert(feed(&q, WZP_TIER_DEGRADED, 3000));
    cr_assert_eq(q.tier, WZP_TIER_DEGRADED);
}

Test(hysteresis, equal_report_resets_counters)
{
    struct wzp_quality_ctl q;
    uint64_t now = 1000;
    wzp_quality_init(&q, 0);
    cr_assert_eq(feed_n(&q, WZP_TIER_DEGRADED, 2, &now, 1000), 0);
    cr_assert_not(feed(&q, WZP_TIER_GOOD, now));
    now += 1000;
    cr_assert_eq(q.worse_count, 0);
    cr_assert_eq(feed_n(&q, WZP_TIER_DEGRADED, 2, &now, 1000), 0);
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
    cr_assert(feed(&q, WZP_TIER_DEGRADED, now));
    cr_assert_eq(q.tier, WZP_TIER_DEGRADED);
}

Test(hysteresis, better_report_resets_worse_counter)
{
    struct wzp_quality_ctl q;
    uint64_t now = 1000;
    wzp_quality_init(&q, 0);
    feed_n(&q, WZP_TIER_CATASTROPHIC, 2, &now, 1000);
    feed(&q, WZP_TIER_STUDIO_64K, now);
    now += 1000;
    cr_assert_eq(q.worse_count, 0);
    cr_assert_eq(q.better_count, 1);
    cr_assert_eq(feed_n(&q, WZP_TIER_CATASTROPHIC, 2, &now, 1000), 0);
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
    cr_assert_eq(q.better_count, 0);
}

Test(hysteresis, upgrade_below_good_after_five_one_step)
{
    struct wzp_quality_ctl q;
    uint64_t now = 1000;
    wzp_quality_init(&q, 0);
    feed_n(&q, WZP_TIER_CATASTROPHIC, 3, &now, 1000);
    cr_assert_eq(q.tier, WZP_TIER_CATASTROPHIC);

    cr_assert_eq(feed_n(&q, WZP_TIER_STUDIO_64K, 4, &now, 1000), 0);
    cr_assert_eq(q.tier, WZP_TIER_CATASTROPHIC);
    cr_assert(feed(&q, WZP_TIER_STUDIO_64K, now));
    now += 1000;
    cr_assert_eq(q.tier, WZP_TIER_DEGRADED, "one step only");

    cr_assert_eq(feed_n(&q, WZP_TIER_STUDIO_64K, 4, &now, 1000), 0);
    cr_assert(feed(&q, WZP_TIER_STUDIO_64K, now));
    now += 1000;
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
}

Test(hysteresis, upgrade_at_or_above_good_needs_ten)
{
    struct wzp_quality_ctl q;
    uint64_t now = 1000;
    wzp_quality_init(&q, 0);
    cr_assert_eq(feed_n(&q, WZP_TIER_STUDIO_64K, 9, &now, 1000), 0);
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
    cr_assert(feed(&q, WZP_TIER_STUDIO_64K, now));
    now += 1000;
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);

    cr_assert_eq(feed_n(&q, WZP_TIER_STUDIO_64K, 9, &now, 1000), 0);
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);
    cr_assert(feed(&q, WZP_TIER_STUDIO_64K, now));
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_48K);
}

Test(hysteresis, worse_or_equal_report_resets_better_counter)
{
    struct wzp_quality_ctl q;
    uint64_t now = 1000;
    wzp_quality_init(&q, 0);
    feed_n(&q, WZP_TIER_DEGRADED, 3, &now, 1000);
    cr_assert_eq(q.tier, WZP_TIER_DEGRADED);

    feed_n(&q, WZP_TIER_GOOD, 4, &now, 1000);
    feed(&q, WZP_TIER_CATASTROPHIC, now); /* worse */
    now += 1000;
    cr_assert_eq(feed_n(&q, WZP_TIER_GOOD, 4, &now, 1000), 0);
    feed(&q, WZP_TIER_DEGRADED, now); /* equal */
    now += 1000;
    cr_assert_eq(feed_n(&q, WZP_TIER_GOOD, 4, &now, 1000), 0);
    cr_assert_eq(q.tier, WZP_TIER_DEGRADED);
    cr_assert(feed(&q, WZP_TIER_GOOD, now));
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
}

/* ---- probing ---- */

/* Bring a fresh controller to an active probe Good -> Studio32k started at *start. */
static void start_probe(struct wzp_quality_ctl *q, uint64_t *start)
{
    wzp_quality_init(q, 0);
    cr_assert_not(feed(q, WZP_TIER_GOOD, 1000)); /* the stability run starts here */
    cr_assert_not(feed(q, WZP_TIER_GOOD, 30999));
    cr_assert_not(q->probing);
    cr_assert_not(feed(q, WZP_TIER_GOOD, 31000), "probe start is not a tier change");
    cr_assert(q->probing);
    cr_assert_eq(q->probe_target, WZP_TIER_STUDIO_32K);
    cr_assert_eq(q->tier, WZP_TIER_GOOD);
    *start = 31000;
}

Test(probe, starts_after_30s_stable)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    cr_assert_eq(q.probe_started_ms, start);
}

Test(probe, stability_run_starts_at_first_report_not_init)
{
    struct wzp_quality_ctl q;
    wzp_quality_init(&q, 0);
    feed(&q, WZP_TIER_GOOD, 5000);
    feed(&q, WZP_TIER_GOOD, 34999);
    cr_assert_not(q.probing);
    feed(&q, WZP_TIER_GOOD, 35000);
    cr_assert(q.probing);
}

Test(probe, worse_report_restarts_stability_run)
{
    struct wzp_quality_ctl q;
    wzp_quality_init(&q, 0);
    feed(&q, WZP_TIER_GOOD, 1000);
    feed(&q, WZP_TIER_DEGRADED, 20000);
    feed(&q, WZP_TIER_GOOD, 21000);
    feed(&q, WZP_TIER_GOOD, 31000);
    feed(&q, WZP_TIER_GOOD, 50999);
    cr_assert_not(q.probing);
    feed(&q, WZP_TIER_GOOD, 51000);
    cr_assert(q.probing);
}

Test(probe, succeeds_after_5s)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    cr_assert_not(feed(&q, WZP_TIER_STUDIO_32K, start + 1000));
    cr_assert_not(feed(&q, WZP_TIER_STUDIO_32K, start + 4999));
    cr_assert(q.probing);
    cr_assert_eq(q.tier, WZP_TIER_GOOD, "tier unchanged while probing");
    cr_assert(feed(&q, WZP_TIER_STUDIO_32K, start + 5000));
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);
    cr_assert_not(q.probing);
}

Test(probe, one_bad_report_is_tolerated)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    cr_assert_not(feed(&q, WZP_TIER_GOOD, start + 1000)); /* below target: bad */
    cr_assert_eq(q.probe_bad, 1);
    cr_assert(q.probing);
    cr_assert(feed(&q, WZP_TIER_STUDIO_48K, start + 5000)); /* above target is fine */
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);
}

Test(probe, single_bad_final_report_still_succeeds)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    cr_assert(feed(&q, WZP_TIER_GOOD, start + 6000));
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);
}

Test(probe, success_keeps_worse_counter)
{
    /* upstream resets only the better counter when a probe succeeds */
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    cr_assert(feed(&q, WZP_TIER_DEGRADED, start + 5000)); /* worse #1, the one bad report */
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);
    cr_assert_eq(q.worse_count, 1);
    cr_assert_not(feed(&q, WZP_TIER_DEGRADED, start + 6000));
    cr_assert(feed(&q, WZP_TIER_DEGRADED, start + 7000));
    cr_assert_eq(q.tier, WZP_TIER_DEGRADED);
}

Test(probe, two_bad_reports_abort)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    feed(&q, WZP_TIER_GOOD, start + 1000);
    cr_assert(q.probing);
    cr_assert_not(feed(&q, WZP_TIER_GOOD, start + 2000));
    cr_assert_not(q.probing);
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
    cr_assert_eq(q.cooldown_until_ms, start + 2000 + WZP_QUALITY_PROBE_COOLDOWN_MS);
    /* even after the 5 s window the aborted probe does not raise the tier */
    cr_assert_not(feed(&q, WZP_TIER_STUDIO_32K, start + 6000));
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
}

Test(probe, second_bad_report_at_window_end_aborts)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    feed(&q, WZP_TIER_GOOD, start + 1000);
    cr_assert_not(feed(&q, WZP_TIER_GOOD, start + 5000));
    cr_assert_eq(q.tier, WZP_TIER_GOOD);
    cr_assert_not(q.probing);
}

/* Abort the probe of start_probe; returns the abort time. */
static uint64_t abort_probe(struct wzp_quality_ctl *q)
{
    uint64_t start;
    start_probe(q, &start);
    feed(q, WZP_TIER_GOOD, start + 1000);
    feed(q, WZP_TIER_GOOD, start + 2000);
    cr_assert_not(q->probing);
    return start + 2000;
}

Test(probe, cooldown_blocks_new_probe)
{
    struct wzp_quality_ctl q;
    uint64_t a = abort_probe(&q);
    /* upstream: the run restarts at a + 60 s, so 30 s more are needed: a + 90 s */
    for (uint64_t t = a + 1000; t < a + 90000; t += 1000) {
        cr_assert_not(feed(&q, WZP_TIER_GOOD, t));
        cr_assert_not(q.probing, "probe at +%llu ms", (unsigned long long)(t - a));
    }
    feed(&q, WZP_TIER_GOOD, a + 89999);
    cr_assert_not(q.probing);
    feed(&q, WZP_TIER_GOOD, a + 90000);
    cr_assert(q.probing);
    cr_assert_eq(q.probe_target, WZP_TIER_STUDIO_32K);
}

Test(probe, worse_report_during_cooldown_clears_it)
{
    struct wzp_quality_ctl q;
    uint64_t a = abort_probe(&q);
    feed(&q, WZP_TIER_DEGRADED, a + 1000); /* observed < current: run (and cooldown) gone */
    cr_assert_eq(q.cooldown_until_ms, 0);
    feed(&q, WZP_TIER_GOOD, a + 2000); /* new run starts here */
    feed(&q, WZP_TIER_GOOD, a + 31999);
    cr_assert_not(q.probing);
    feed(&q, WZP_TIER_GOOD, a + 32000);
    cr_assert(q.probing);
}

Test(probe, success_restarts_stability_run)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    uint64_t s = start + 5000;
    cr_assert(feed(&q, WZP_TIER_STUDIO_32K, s));
    feed(&q, WZP_TIER_STUDIO_32K, s + 29999);
    cr_assert_not(q.probing);
    feed(&q, WZP_TIER_STUDIO_32K, s + 30000);
    cr_assert(q.probing);
    cr_assert_eq(q.probe_target, WZP_TIER_STUDIO_48K);
}

Test(probe, downgrade_clears_probe_and_cooldown)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    start_probe(&q, &start);
    /* worse reports are also bad probe reports: the 2nd aborts before the 3rd downgrades */
    feed(&q, WZP_TIER_CATASTROPHIC, start + 100);
    cr_assert(q.probing);
    feed(&q, WZP_TIER_CATASTROPHIC, start + 200);
    cr_assert_not(q.probing);
    cr_assert_neq(q.cooldown_until_ms, 0);
    cr_assert(feed(&q, WZP_TIER_CATASTROPHIC, start + 300));
    cr_assert_eq(q.tier, WZP_TIER_CATASTROPHIC);
    cr_assert_not(q.probing);
    cr_assert_eq(q.cooldown_until_ms, 0);
    /* the run was cleared too: a new one starts with the next report */
    feed(&q, WZP_TIER_CATASTROPHIC, start + 1000);
    feed(&q, WZP_TIER_CATASTROPHIC, start + 30999);
    cr_assert_not(q.probing);
    feed(&q, WZP_TIER_CATASTROPHIC, start + 31000);
    cr_assert(q.probing);
    cr_assert_eq(q.probe_target, WZP_TIER_DEGRADED);
}

Test(probe, hysteresis_upgrade_cancels_probe)
{
    struct wzp_quality_ctl q;
    uint64_t start;
    uint64_t now;
    start_probe(&q, &start);
    now = start + 400;
    cr_assert_eq(feed_n(&q, WZP_TIER_STUDIO_64K, 9, &now, 400), 0);
    cr_assert(q.probing);
    cr_assert(feed(&q, WZP_TIER_STUDIO_64K, now)); /* 10th better report, start + 4000 */
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K);
    cr_assert_not(q.probing);
    cr_assert_not(feed(&q, WZP_TIER_STUDIO_32K, start + 5000));
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_32K, "cancelled probe must not step again");
}

Test(probe, never_at_studio_64k)
{
    struct wzp_quality_ctl q;
    uint64_t now = 1000;
    wzp_quality_init(&q, 0);
    feed_n(&q, WZP_TIER_STUDIO_64K, 30, &now, 500);
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_64K);
    for (int i = 0; i < 200; i++, now += 1000) {
        cr_assert_not(feed(&q, WZP_TIER_STUDIO_64K, now));
        cr_assert_not(q.probing, "report %d", i);
    }
    cr_assert_eq(q.tier, WZP_TIER_STUDIO_64K);
}

/* ---- weakest link ---- */

Test(weakest, empty_is_good)
{
    cr_assert_eq(wzp_quality_weakest(NULL, 0), WZP_TIER_GOOD);
}

Test(weakest, minimum)
{
    enum wzp_tier one[] = {WZP_TIER_STUDIO_64K};
    enum wzp_tier studio[] = {WZP_TIER_STUDIO_64K, WZP_TIER_STUDIO_48K, WZP_TIER_STUDIO_64K};
    enum wzp_tier mixed[] = {WZP_TIER_GOOD, WZP_TIER_STUDIO_64K, WZP_TIER_DEGRADED, WZP_TIER_GOOD};
    enum wzp_tier last[] = {WZP_TIER_GOOD, WZP_TIER_DEGRADED, WZP_TIER_CATASTROPHIC};
    cr_assert_eq(wzp_quality_weakest(one, 1), WZP_TIER_STUDIO_64K);
    cr_assert_eq(wzp_quality_weakest(studio, 3), WZP_TIER_STUDIO_48K);
    cr_assert_eq(wzp_quality_weakest(mixed, 4), WZP_TIER_DEGRADED);
    cr_assert_eq(wzp_quality_weakest(last, 3), WZP_TIER_CATASTROPHIC);
    cr_assert_eq(wzp_quality_weakest(last, 2), WZP_TIER_DEGRADED, "only n entries");
}
