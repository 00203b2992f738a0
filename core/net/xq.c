/* xq.c - the worker queues described in xq.h. */
#include "xq.h"

#include "common.h"

#include <string.h>

/* Each message is an 8-byte header (its length, or SPSC_PAD: skip to the ring's end)
 * followed by the message, padded to 8 bytes. */
#define SPSC_HDR 8u
#define SPSC_PAD UINT32_MAX

static size_t spsc_entry_bytes(size_t len)
{
    return SPSC_HDR + ((len + 7) & ~(size_t)7);
}

int wzp_spsc_init(struct wzp_spsc *q, size_t cap_bytes)
{
    memset(q, 0, sizeof *q);
    WZP_BUG_ON(cap_bytes < 4096 || (cap_bytes & (cap_bytes - 1)));
    q->buf = malloc(cap_bytes);
    if (!q->buf)
        return WZP_ENOMEM;
    q->cap = cap_bytes;
    return WZP_OK;
}

void wzp_spsc_destroy(struct wzp_spsc *q)
{
    free(q->buf);
    q->buf = NULL;
}

void *wzp_spsc_push_begin(struct wzp_spsc *q, size_t len)
{
    WZP_BUG_ON(len > q->cap / 4);
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    size_t need = spsc_entry_bytes(len);
    size_t pos = tail & (q->cap - 1);
    size_t pad = q->cap - pos < need ? q->cap - pos : 0;
    if (q->cap - (tail - head) < pad + need)
        return NULL;
    uint32_t h = SPSC_PAD;
    if (pad) { /* the bytes up to the end are free: the consumer reads nothing past tail */
        memcpy(q->buf + pos, &h, sizeof h);
        pos = 0;
    }
    h = (uint32_t)len;
    memcpy(q->buf + pos, &h, sizeof h);
    q->push_bytes = pad + need;
    return q->buf + pos + SPSC_HDR;
}

void wzp_spsc_push_commit(struct wzp_spsc *q)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    atomic_store_explicit(&q->tail, tail + q->push_bytes, memory_order_release);
    atomic_store_explicit(&q->pushed, atomic_load_explicit(&q->pushed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

const void *wzp_spsc_peek(struct wzp_spsc *q, size_t *len)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    q->pop_bytes = 0;
    while (head != tail) {
        size_t pos = head & (q->cap - 1);
        uint32_t h;
        memcpy(&h, q->buf + pos, sizeof h);
        if (h == SPSC_PAD) {
            q->pop_bytes += q->cap - pos;
            head += q->cap - pos;
            continue;
        }
        *len = h;
        q->pop_bytes += spsc_entry_bytes(h);
        return q->buf + pos + SPSC_HDR;
    }
    return NULL;
}

void wzp_spsc_pop_commit(struct wzp_spsc *q)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    atomic_store_explicit(&q->head, head + q->pop_bytes, memory_order_release);
    q->pop_bytes = 0;
    atomic_store_explicit(&q->popped, atomic_load_explicit(&q->popped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

bool wzp_spsc_pending(struct wzp_spsc *q)
{
    return atomic_load_explicit(&q->tail, memory_order_acquire) !=
           atomic_load_explicit(&q->head, memory_order_relaxed);
}

uint64_t wzp_spsc_depth(struct wzp_spsc *q)
{
    uint64_t popped = atomic_load_explicit(&q->popped, memory_order_relaxed);
    uint64_t pushed = atomic_load_explicit(&q->pushed, memory_order_relaxed);
    return pushed > popped ? pushed - popped : 0;
}

void wzp_ctlq_init(struct wzp_ctlq *q, size_t limit)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    q->limit = limit;
}

void wzp_ctlq_destroy(struct wzp_ctlq *q)
{
    struct wzp_ctlmsg *m = wzp_ctlq_take_all(q);
    while (m) {
        struct wzp_ctlmsg *next = m->next;
        free(m);
        m = next;
    }
    pthread_mutex_destroy(&q->lock);
}

int wzp_ctlq_push(struct wzp_ctlq *q, uint16_t type, uint32_t slot, uint32_t gen, const void *data,
                  size_t len)
{
    struct wzp_ctlmsg *m = malloc(sizeof *m + len);
    if (!m)
        return WZP_ENOMEM;
    m->next = NULL;
    m->type = type;
    m->slot = slot;
    m->gen = gen;
    m->len = len;
    if (len)
        memcpy(m->data, data, len);
    pthread_mutex_lock(&q->lock);
    if (q->count >= q->limit) {
        pthread_mutex_unlock(&q->lock);
        free(m);
        return WZP_EFULL;
    }
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->count++;
    pthread_mutex_unlock(&q->lock);
    return WZP_OK;
}

struct wzp_ctlmsg *wzp_ctlq_take_all(struct wzp_ctlq *q)
{
    pthread_mutex_lock(&q->lock);
    struct wzp_ctlmsg *m = q->head;
    q->head = q->tail = NULL;
    q->count = 0;
    pthread_mutex_unlock(&q->lock);
    return m;
}

/* ---- wzp_dgq: entries are 2-byte aligned; a 0xffff length marks padding to the end. */

#define DGQ_PAD 0xffffu

void wzp_dgq_init(struct wzp_dgq *q, uint32_t max_cap)
{
    memset(q, 0, sizeof *q);
    WZP_BUG_ON(max_cap < 4096 || (max_cap & (max_cap - 1)));
    q->max_cap = max_cap;
}

void wzp_dgq_destroy(struct wzp_dgq *q)
{
    free(q->buf);
    uint32_t max_cap = q->max_cap;
    memset(q, 0, sizeof *q);
    q->max_cap = max_cap;
}

static uint32_t dgq_entry_bytes(size_t len)
{
    return 2 + (uint32_t)((len + 1) & ~(size_t)1);
}

const uint8_t *wzp_dgq_peek(struct wzp_dgq *q, size_t *len)
{
    while (q->head != q->tail) {
        uint32_t pos = q->head & (q->cap - 1);
        uint16_t l;
        memcpy(&l, q->buf + pos, 2);
        if (l == DGQ_PAD) {
            q->head += q->cap - pos;
            continue;
        }
        *len = l;
        return q->buf + pos + 2;
    }
    return NULL;
}

void wzp_dgq_pop(struct wzp_dgq *q)
{
    size_t len;
    if (wzp_dgq_peek(q, &len)) {
        q->head += dgq_entry_bytes(len);
        q->count--;
    }
}

static uint32_t dgq_used(const struct wzp_dgq *q)
{
    return q->tail - q->head;
}

/* Move the entries into a ring of new_cap bytes, oldest first at offset 0. */
static int dgq_resize(struct wzp_dgq *q, uint32_t new_cap)
{
    uint8_t *nb = malloc(new_cap);
    if (!nb)
        return WZP_ENOMEM;
    uint32_t off = 0;
    const uint8_t *d;
    size_t len;
    while ((d = wzp_dgq_peek(q, &len))) {
        uint16_t l = (uint16_t)len;
        memcpy(nb + off, &l, 2);
        memcpy(nb + off + 2, d, len);
        off += dgq_entry_bytes(len);
        q->head += dgq_entry_bytes(len);
    }
    free(q->buf);
    q->buf = nb;
    q->cap = new_cap;
    q->head = 0;
    q->tail = off;
    if (new_cap > WZP_DGQ_MIN_CAP)
        q->grows++;
    return WZP_OK;
}

/* Bytes a push of `need` needs in the current ring, padding to the end included. */
static uint32_t dgq_room_needed(const struct wzp_dgq *q, uint32_t need)
{
    uint32_t pos = q->tail & (q->cap - 1);
    return (need > q->cap - pos ? q->cap - pos : 0) + need;
}

unsigned wzp_dgq_push(struct wzp_dgq *q, const uint8_t *data, size_t len)
{
    uint32_t need = dgq_entry_bytes(len);
    WZP_BUG_ON(len >= DGQ_PAD || need > q->max_cap / 2);
    if (!q->buf || q->cap - dgq_used(q) < dgq_room_needed(q, need)) {
        /* Grow while below the limit; an entry must also fit in half the ring, so the
         * padding to the end can never leave it without room. */
        uint32_t cap = q->cap ? q->cap : WZP_DGQ_MIN_CAP;
        while (cap < q->max_cap && (cap / 2 < need || cap < dgq_used(q) + 2 * need))
            cap *= 2;
        if ((cap != q->cap || !q->buf) && dgq_resize(q, cap) != WZP_OK && !q->buf)
            return 1; /* no ring at all: the new entry is the one dropped */
    }
    uint32_t pos = q->tail & (q->cap - 1);
    uint32_t pad = need > q->cap - pos ? q->cap - pos : 0;
    unsigned dropped = 0;
    while (q->cap - dgq_used(q) < pad + need) {
        wzp_dgq_pop(q);
        dropped++;
    }
    if (pad) {
        uint16_t marker = DGQ_PAD;
        memcpy(q->buf + pos, &marker, 2);
        q->tail += pad;
        pos = 0;
    }
    uint16_t l = (uint16_t)len;
    memcpy(q->buf + pos, &l, 2);
    memcpy(q->buf + pos + 2, data, len);
    q->tail += need;
    q->count++;
    return dropped;
}
