/*
 * test_recent.c - refusals of the last minute: the reasons are the refusals family's
 * labels (all of them, each once), counts over the relay's life until a minute of samples
 * exists, then over the last minute only, summed over workers.
 */
#include "recent.h"

#include <criterion/criterion.h>
#include <string.h>

static struct wzp_recent rc;
static struct wzp_stats w0, w1;

static size_t index_of(const char *reason)
{
    const char *const *labels;
    size_t n = wzp_recent_reasons(&labels);
    for (size_t i = 0; i < n; i++)
        if (strcmp(labels[i], reason) == 0)
            return i;
    cr_assert_fail("no reason %s", reason);
    return 0;
}

Test(recent, every_refusal_reason_once)
{
    const char *const *labels;
    size_t n = wzp_recent_reasons(&labels);
    size_t expected = 0;
#define COUNT(name, family, label, help) expected += strcmp(#family, "refusals") == 0;
    WZP_STATS_FIELDS(COUNT)
#undef COUNT
    cr_assert_eq(n, expected, "%zu of %zu refusal reasons fit WZP_RECENT_MAX_SERIES", n, expected);
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            cr_assert_str_neq(labels[i], labels[k]);
}

static void sample(void)
{
    struct wzp_stats *const stats[] = {&w0, &w1};
    wzp_recent_sample(&rc, stats, 2);
}

Test(recent, counts_over_the_last_minute)
{
    memset(&rc, 0, sizeof rc);
    memset(&w0, 0, sizeof w0);
    memset(&w1, 0, sizeof w1);
    uint64_t counts[WZP_RECENT_MAX_SERIES];
    cr_assert_eq(wzp_recent_refusals(&rc, counts), 0, "nothing sampled yet");
    size_t full = index_of("max_sessions"), sig = index_of("signature");
    WZP_STAT_ADD(&w0, join_refused_sessions, 3);
    WZP_STAT_ADD(&w1, join_refused_sessions, 4);
    WZP_STAT_ADD(&w1, join_refused_signature, 1);
    sample();
    cr_assert_eq(wzp_recent_refusals(&rc, counts), 8, "young relay: since the start");
    cr_assert_eq(counts[full], 7, "summed over the workers");
    cr_assert_eq(counts[sig], 1);
    for (int s = 1; s <= WZP_RECENT_WINDOW_S; s++) /* a minute passes, quietly */
        sample();
    cr_assert_eq(wzp_recent_refusals(&rc, counts), 0, "the first refusals are over a minute old");
    WZP_STAT_ADD(&w0, join_refused_signature, 2);
    sample();
    cr_assert_eq(wzp_recent_refusals(&rc, counts), 2);
    cr_assert_eq(counts[sig], 2);
    for (int s = 1; s < WZP_RECENT_WINDOW_S; s++)
        sample();
    cr_assert_eq(wzp_recent_refusals(&rc, counts), 2, "still within the minute");
    sample();
    cr_assert_eq(wzp_recent_refusals(&rc, counts), 0, "and now out of it");
}
