/* test_log.c - log levels by name and the JSON escaping every log line and event uses. */
#include "log.h"

#include <criterion/criterion.h>
#include <string.h>

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
