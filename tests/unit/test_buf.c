/* test_buf.c - the growable buffer: appends, formatted appends across growth, reset. */
#include "buf.h"

#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

Test(buf, appends_grow_and_keep_every_byte)
{
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_buf_append(&b, "", 0), WZP_OK);
    for (unsigned i = 0; i < 1000; i++) {
        uint8_t byte = (uint8_t)i;
        cr_assert_eq(wzp_buf_append(&b, &byte, 1), WZP_OK);
    }
    cr_assert_eq(b.len, 1000);
    cr_assert_geq(b.cap, b.len);
    for (unsigned i = 0; i < 1000; i++)
        cr_assert_eq(b.data[i], (uint8_t)i);
    wzp_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_geq(b.cap, 1000, "reset keeps the memory");
    wzp_buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
}

Test(buf, printf_appends_past_the_current_capacity)
{
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_buf_append_str(&b, "head:"), WZP_OK);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(wzp_buf_printf(&b, "%s|%d", big, 42), WZP_OK);
    cr_assert_eq(b.len, 5 + 2999 + 3);
    cr_assert_eq(memcmp(b.data, "head:xxx", 8), 0);
    cr_assert_eq(memcmp(b.data + b.len - 3, "|42", 3), 0);
    wzp_buf_free(&b);
}
