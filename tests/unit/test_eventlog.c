/*
 * test_eventlog.c - the JSON-lines event log: every line parses as one JSON object, text
 * is escaped, NULL values are skipped, an event too big for one line is cut at a field
 * boundary and marked, and a reopen after a rename continues in a new file.
 */
#include "eventlog.h"

#include "common.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/wzp-eventlog-XXXXXX";
static char path[256];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    char err[256];
    cr_assert_eq(wzp_eventlog_open(path, err, sizeof err), WZP_OK, "%s", err);
}

static void teardown(void)
{
    wzp_eventlog_close();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Line n (0-based) of file p, parsed; fails the test if it is not one JSON object. */
static json_t *line(const char *p, unsigned n)
{
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    static char buf[8192];
    for (unsigned i = 0; i <= n; i++)
        cr_assert_not_null(fgets(buf, sizeof buf, f), "no line %u in %s", n, p);
    fclose(f);
    cr_assert_eq(buf[strlen(buf) - 1], '\n');
    json_error_t jerr;
    json_t *o = json_loads(buf, 0, &jerr);
    cr_assert_not_null(o, "line %u is not JSON (%s): %s", n, jerr.text, buf);
    cr_assert(json_is_object(o));
    return o;
}

TestSuite(eventlog, .init = setup, .fini = teardown);

Test(eventlog, fields_are_escaped_and_null_values_skipped)
{
    struct wzp_event e;
    wzp_event_begin(&e, "join");
    wzp_event_str(&e, "alias", "a\"b\\c\nd\x1b[31m");
    wzp_event_str(&e, "room", NULL);
    wzp_event_int(&e, "id", -42);
    wzp_event_emit(&e);
    json_t *o = line(path, 0);
    cr_assert_str_eq(json_string_value(json_object_get(o, "event")), "join");
    cr_assert_str_eq(json_string_value(json_object_get(o, "alias")), "a\"b\\c\nd\x1b[31m");
    cr_assert_null(json_object_get(o, "room"));
    cr_assert_eq(json_integer_value(json_object_get(o, "id")), -42);
    cr_assert_not_null(json_object_get(o, "ts"));
    cr_assert_null(json_object_get(o, "truncated"));
    json_decref(o);
}

Test(eventlog, an_oversized_event_stays_valid_json_and_is_marked)
{
    static char big[WZP_EVENT_MAX_BYTES];
    memset(big, 'x', sizeof big - 1);
    /* Every fill level: the field that no longer fits is left out whole. */
    for (size_t fill = 1800; fill < 2048; fill += 7) {
        struct wzp_event e;
        wzp_event_begin(&e, "refusal");
        big[fill] = '\0';
        wzp_event_str(&e, "pad", big);
        big[fill] = 'x';
        wzp_event_str(&e, "reason", "quote\" and more");
        wzp_event_int(&e, "n", 1234567);
        wzp_event_emit(&e);
    }
    for (unsigned i = 0; i < (2048 - 1800 + 6) / 7; i++) {
        json_t *o = line(path, i);
        bool cut = json_object_get(o, "truncated") != NULL;
        bool whole = json_object_get(o, "n") != NULL && json_object_get(o, "reason") != NULL &&
                     json_object_get(o, "pad") != NULL;
        cr_assert(cut != whole, "line %u: either complete or marked truncated", i);
        json_decref(o);
    }
}

Test(eventlog, reopen_after_rename_writes_a_new_file)
{
    struct wzp_event e;
    wzp_event_begin(&e, "start");
    wzp_event_emit(&e);
    char rotated[300];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    cr_assert_eq(rename(path, rotated), 0);
    char err[256];
    cr_assert_eq(wzp_eventlog_reopen(err, sizeof err), WZP_OK, "%s", err);
    wzp_event_begin(&e, "stop");
    wzp_event_emit(&e);
    json_t *a = line(rotated, 0), *b = line(path, 0);
    cr_assert_str_eq(json_string_value(json_object_get(a, "event")), "start");
    cr_assert_str_eq(json_string_value(json_object_get(b, "event")), "stop");
    json_decref(a);
    json_decref(b);
}

Test(eventlog, closed_log_writes_nothing_and_a_bad_path_says_why)
{
    wzp_eventlog_close();
    cr_assert_not(wzp_eventlog_enabled());
    struct wzp_event e;
    wzp_event_begin(&e, "ignored");
    wzp_event_emit(&e);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_eq(fgetc(f), EOF, "nothing written while closed");
    fclose(f);
    char err[256] = "";
    cr_assert_neq(wzp_eventlog_open("/nonexistent-dir/x.jsonl", err, sizeof err), WZP_OK);
    cr_assert(strstr(err, "/nonexistent-dir/x.jsonl") != NULL, "%s", err);
}
