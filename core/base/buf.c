/* buf.c - see buf.h. Capacity doubles; a failed growth leaves the buffer intact. */
#include "buf.h"

#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int wzp_buf_reserve(struct wzp_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return WZP_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2)
            return WZP_ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return WZP_ENOMEM;
    b->data = p;
    b->cap = cap;
    return WZP_OK;
}

int wzp_buf_append(struct wzp_buf *b, const void *data, size_t len)
{
    int rv = wzp_buf_reserve(b, len);
    if (rv)
        return rv;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return WZP_OK;
}

int wzp_buf_append_str(struct wzp_buf *b, const char *s)
{
    return wzp_buf_append(b, s, strlen(s));
}

int wzp_buf_printf(struct wzp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return WZP_EINVAL;
    int rv = wzp_buf_reserve(b, (size_t)n + 1);
    if (rv)
        return rv;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return WZP_OK;
}

void wzp_buf_reset(struct wzp_buf *b)
{
    b->len = 0;
}

void wzp_buf_free(struct wzp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
