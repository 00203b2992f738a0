/* test_log.c - log levels by name and the JSON escaping every log line and event uses. */
#include "log.h"

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

Test(log, levels_by_name)
{
    cr_assert_eq(wzp_log_parse_level("error"), WZP_LOG_ERROR);
    cr_assert_eq(wzp_log_parse_level("warn"), WZP_LOG_WARN);
    cr_assert_eq(wzp_log_parse_level("info"), WZP_LOG_INFO);
    cr_assert_eq(wzp_log_parse_level("debug"), WZP_LOG_DEBUG);
    cr_assert_eq(wzp_log_parse_level("trace"), WZP_LOG_TRACE);
    cr_assert_eq(wzp_log_parse_level("loud"), -1);
    cr_assert_eq(wzp_log_parse_level(""), -1);
}

Test(log, json_escape_quotes_backslashes_and_control_characters)
{
    char out[128];
    size_t n = wzp_json_escape("a\"b\\c\nd\x1b"
                               "e",
                               out, sizeof out);
    cr_assert_str_eq(out, "a\\\"b\\\\c\\u000ad\\u001be");
    cr_assert_eq(n, strlen(out));
}

Test(log, json_escape_never_overflows)
{
    char out[16];
    memset(out, 'Z', sizeof out);
    wzp_json_escape("\n\n\n\n\n\n\n\n\n\n", out, sizeof out);
    cr_assert_lt(strlen(out), sizeof out);
    cr_assert_eq(strlen(out) % 6, 0, "only whole escapes");
}

Test(log, text_escape_keeps_one_event_on_one_line)
{
    char out[128];
    wzp_log_escape_text("bob\n2026-12-06T00:00:00.000Z INFO  room: join: forged\x1b[2J\x7f\t", out,
                        sizeof out);
    cr_assert_str_eq(out,
                     "bob\\n2026-12-06T00:00:00.000Z INFO  room: join: forged\\x1b[2J\\x7f\\t");
    cr_assert_null(strchr(out, '\n'));
    wzp_log_escape_text("caf\xc3\xa9 \xe2\x9c\x93", out, sizeof out);
    cr_assert_str_eq(out, "caf\xc3\xa9 \xe2\x9c\x93", "UTF-8 untouched");
    char small[8];
    wzp_log_escape_text("\x01\x01\x01", small, sizeof small);
    cr_assert_str_eq(small, "\\x01", "no half escape");
}

Test(log, a_written_line_has_no_control_characters)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    int threshold = wzp_log_threshold;
    wzp_log_threshold = WZP_LOG_INFO;
    WZP_INFO("test", "alias \"%s\" joined", "eve\nFORGED LINE");
    wzp_log_threshold = threshold;
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char buf[512];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    cr_assert_eq(strchr(buf, '\n'), buf + n - 1, "one line: %s", buf);
    cr_assert_not_null(strstr(buf, "eve\\nFORGED LINE"));
}

Test(log, a_rate_limited_warning_is_due_once_per_period)
{
    uint64_t last = 0;
    cr_assert(wzp_log_due(&last, 5000, 1000), "the first one is due");
    cr_assert_eq(last, 5000);
    cr_assert_not(wzp_log_due(&last, 5999, 1000));
    cr_assert_eq(last, 5000, "a refusal does not move the period");
    cr_assert(wzp_log_due(&last, 6000, 1000));
    cr_assert_eq(last, 6000);
}
