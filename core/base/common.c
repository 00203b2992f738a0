/* common.c - status strings, clock and hex helpers shared by all modules. */
#include "common.h"

#include <errno.h>
#include <time.h>

const char *wzp_strerror(int status)
{
    switch (status) {
    case WZP_OK:
        return "ok";
    case WZP_EINVAL:
        return "invalid input";
    case WZP_ENOMEM:
        return "out of memory";
    case WZP_ETOOBIG:
        return "too big";
    case WZP_EAGAIN:
        return "incomplete";
    case WZP_EIO:
        return "i/o error";
    case WZP_ECRYPTO:
        return "crypto failure";
    case WZP_ENOTFOUND:
        return "not found";
    case WZP_EFULL:
        return "full";
    case WZP_ESTATE:
        return "invalid state";
    case WZP_EEXIST:
        return "already exists";
    case WZP_EPERM:
        return "not permitted";
    }
    return "unknown error";
}

uint64_t wzp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t wzp_thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return wzp_now_ns(); /* no such clock: wall time is the conservative answer */
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void wzp_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int wzp_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int wzp_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t len)
{
    if (inlen != 2 * len)
        return WZP_EINVAL;
    for (size_t i = 0; i < len; i++) {
        int hi = wzp_hex_digit(in[2 * i]), lo = wzp_hex_digit(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return WZP_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return WZP_OK;
}

bool wzp_parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    if (text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

uint64_t wzp_fnv1a(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 14695981039346656037ull; /* the FNV-1a 64-bit offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
