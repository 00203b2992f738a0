/*
 * test_admin.c - /metrics is generated from core/base/stats.h: every counter appears as a
 * series of its family, summed over workers (or one series per worker), with the right
 * value; every family has a HELP and TYPE line once; gauges are there too.
 */
#include "admin.h"

#include "common.h"
#include "fake_relay.h"
#include "relay.h"
#include "stats.h"
#include "worker.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NWORKERS = 2 };

static struct fake_relay fr;
static struct wzp_relay *const relay = &fr.relay;
static struct wzp_worker *const workers = fr.workers;

static void setup(void)
{
    fake_relay_init(&fr, NWORKERS);
}

static void teardown(void)
{
    fake_relay_free(&fr);
}

TestSuite(admin, .init = setup, .fini = teardown);

struct series {
    const char *field, *family, *label;
    size_t offset;
};
static const struct series all_series[] = {
#define T_SERIES(field, family, label, help)                                                       \
    {#field, #family, label, offsetof(struct wzp_stats, field)},
    WZP_STATS_FIELDS(T_SERIES)
#undef T_SERIES
};
struct family {
    const char *name, *label;
    bool per_worker;
};
static const struct family all_families[] = {
#define T_FAMILY(family, label, per_worker, help) {#family, label, per_worker},
    WZP_STATS_FAMILIES(T_FAMILY)
#undef T_FAMILY
};

static const struct family *family_of(const char *name)
{
    for (size_t i = 0; i < WZP_ARRAY_LEN(all_families); i++)
        if (strcmp(all_families[i].name, name) == 0)
            return &all_families[i];
    return NULL;
}

/* The number after "\n<series> " in text, or -1. */
static long long value_of(const char *text, const char *series)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *p = strstr(text, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static unsigned count_of(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

Test(admin, every_counter_is_exported_with_its_value)
{
    /* counter i gets 1000*i + 1 on worker 0 and 7 on worker 1: every sum is distinct */
    for (size_t i = 0; i < WZP_ARRAY_LEN(all_series); i++) {
        for (unsigned k = 0; k < NWORKERS; k++) {
            _Atomic uint64_t *f =
                (_Atomic uint64_t *)((char *)&workers[k].stats + all_series[i].offset);
            atomic_store(f, k == 0 ? 1000 * i + 1 : 7);
        }
    }
    size_t len;
    char *text = wzp_admin_metrics_text(relay, &len);
    cr_assert_not_null(text);
    for (size_t i = 0; i < WZP_ARRAY_LEN(all_series); i++) {
        const struct series *s = &all_series[i];
        const struct family *f = family_of(s->family);
        cr_assert_not_null(f, "counter %s names family %s, which stats.h does not declare",
                           s->field, s->family);
        char series[200];
        if (f->per_worker) {
            for (unsigned k = 0; k < NWORKERS; k++) {
                snprintf(series, sizeof series, "wzp_relay_%s_total{worker=\"%u\"}", f->name, k);
                cr_assert_eq(value_of(text, series), k == 0 ? (long long)(1000 * i + 1) : 7,
                             "%s (counter %s)", series, s->field);
            }
            continue;
        }
        if (f->label[0]) {
            cr_assert(s->label[0], "counter %s needs a %s label value", s->field, f->label);
            snprintf(series, sizeof series, "wzp_relay_%s_total{%s=\"%s\"}", f->name, f->label,
                     s->label);
        } else {
            cr_assert_eq(s->label[0], '\0', "family %s has no label (counter %s)", f->name,
                         s->field);
            snprintf(series, sizeof series, "wzp_relay_%s_total", f->name);
        }
        cr_assert_eq(value_of(text, series), (long long)(1000 * i + 8), "%s (counter %s)", series,
                     s->field);
        char line[210];
        snprintf(line, sizeof line, "\n%s ", series);
        cr_assert_eq(count_of(text, line), 1, "%s appears once", series);
    }
    /* one HELP and one TYPE per family, and every family is used by some counter */
    for (size_t f = 0; f < WZP_ARRAY_LEN(all_families); f++) {
        char help[160];
        snprintf(help, sizeof help, "# HELP wzp_relay_%s_total ", all_families[f].name);
        cr_assert_eq(count_of(text, help), 1, "%s", help);
        snprintf(help, sizeof help, "# TYPE wzp_relay_%s_total counter\n", all_families[f].name);
        cr_assert_eq(count_of(text, help), 1, "%s", help);
        bool used = false;
        for (size_t i = 0; i < WZP_ARRAY_LEN(all_series); i++)
            used |= strcmp(all_series[i].family, all_families[f].name) == 0;
        cr_assert(used, "family %s has no counter", all_families[f].name);
    }
    free(text);
}

Test(admin, gauges_are_per_worker)
{
    atomic_store(&workers[0].gauges.conns, 3);
    atomic_store(&workers[1].gauges.cid_entries, 5);
    atomic_store(&relay->quota.connections, 3);
    size_t len;
    char *text = wzp_admin_metrics_text(relay, &len);
    cr_assert_eq(value_of(text, "wzp_relay_worker_conns{worker=\"0\"}"), 3);
    cr_assert_eq(value_of(text, "wzp_relay_worker_conns{worker=\"1\"}"), 0);
    cr_assert_eq(value_of(text, "wzp_relay_worker_cid_entries{worker=\"1\"}"), 5);
    cr_assert_eq(value_of(text, "wzp_relay_connections"), 3);
    cr_assert_eq(value_of(text, "wzp_relay_handshakes_in_progress"), 0);
    free(text);
}
