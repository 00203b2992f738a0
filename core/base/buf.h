/*
 * buf.h - a growable byte buffer for the control plane (signals, JSON, logs).
 * Not used per packet. Owner: whoever declared it; release with wzp_buf_free().
 */
#ifndef WZP_BUF_H
#define WZP_BUF_H

#include <stddef.h>
#include <stdint.h>

struct wzp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

#define WZP_BUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Make room for extra more bytes. WZP_ENOMEM on failure (the buffer is unchanged). */
int wzp_buf_reserve(struct wzp_buf *b, size_t extra);
int wzp_buf_append(struct wzp_buf *b, const void *data, size_t len);
int wzp_buf_append_str(struct wzp_buf *b, const char *s);
int wzp_buf_printf(struct wzp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void wzp_buf_reset(struct wzp_buf *b); /* len = 0, keeps memory */
void wzp_buf_free(struct wzp_buf *b);

#endif
