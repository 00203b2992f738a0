/*
 * xq.h - bounded queues between workers.
 *
 * wzp_spsc: a single-producer single-consumer byte ring of variable-size messages. There
 * is one per (source worker, destination worker) pair, so media fan-out and packet
 * steering never take a lock. The producer drops (and counts) when the ring is full.
 * Messages are as long as their content: a media datagram for several receivers on the
 * destination worker is one message (the payload once, then the receivers), so a ring
 * holds thousands of them in a few hundred KiB.
 *
 * wzp_ctlq: a mutex-protected FIFO of variable-size control messages (signal frames to
 * send, close requests). Control traffic is rare; it is bounded by count.
 */
#ifndef WZP_XQ_H
#define WZP_XQ_H

#include "media.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WZP_MAX_UDP_PAYLOAD 1500 /* larger inbound UDP payloads are not QUIC we accept */

enum wzp_xmsg_type {
    WZP_XMSG_DATAGRAM = 1, /* media for ntargets connections of the destination worker */
    WZP_XMSG_PACKET,       /* a QUIC packet that arrived on the wrong worker */
};

struct wzp_xtarget {
    uint32_t slot, gen;
};

/* WZP_XMSG_DATAGRAM: header, ntargets targets, then len payload bytes. */
struct wzp_xdatagram {
    uint16_t type;
    uint16_t len;
    uint32_t ntargets;
    struct wzp_xtarget targets[];
};

/* WZP_XMSG_PACKET: header, then len packet bytes. */
struct wzp_xpacket {
    uint16_t type;
    uint16_t len;
    socklen_t addrlen;
    struct sockaddr_storage addr; /* the sender */
    uint8_t data[];
};

struct wzp_spsc {
    _Atomic size_t head; /* byte offset of the next message to read (consumer) */
    _Atomic uint64_t popped;
    size_t pop_bytes; /* consumer: size of the message peek returned */
    char pad1[64 - 2 * sizeof(size_t) - sizeof(uint64_t)];
    _Atomic size_t tail; /* byte offset of the next free byte (producer) */
    _Atomic uint64_t pushed;
    size_t push_bytes; /* producer: size reserved by push_begin, padding included */
    char pad2[64 - 2 * sizeof(size_t) - sizeof(uint64_t)];
    size_t cap; /* power of two */
    uint8_t *buf;
};

/* cap_bytes: a power of two >= 4096. Messages may be up to cap_bytes / 4. */
int wzp_spsc_init(struct wzp_spsc *q, size_t cap_bytes);
void wzp_spsc_destroy(struct wzp_spsc *q);
/* Producer: room for a message of len bytes (8-byte aligned), or NULL if the ring is
 * full. Publish it with wzp_spsc_push_commit before the next push_begin. */
void *wzp_spsc_push_begin(struct wzp_spsc *q, size_t len);
void wzp_spsc_push_commit(struct wzp_spsc *q);
/* Consumer: the oldest message and its length, or NULL if empty. Release it with
 * wzp_spsc_pop_commit before the next peek. */
const void *wzp_spsc_peek(struct wzp_spsc *q, size_t *len);
void wzp_spsc_pop_commit(struct wzp_spsc *q);
/* Consumer: whether a message is waiting. */
bool wzp_spsc_pending(struct wzp_spsc *q);
/* Messages waiting (any thread; a snapshot). */
uint64_t wzp_spsc_depth(struct wzp_spsc *q);

enum wzp_ctl_type {
    WZP_CTL_SIGNAL = 1,  /* send data (a complete signal frame) on a new stream */
    WZP_CTL_ROOM_UPDATE, /* like SIGNAL, a RoomUpdate frame: replaces an unsent one */
    WZP_CTL_CLOSE,       /* close the connection; data = reason */
    WZP_CTL_KICK,        /* close on the policy's order; data = reason */
};

struct wzp_ctlmsg {
    struct wzp_ctlmsg *next;
    uint16_t type;
    uint32_t slot, gen;
    size_t len;
    uint8_t data[];
};

struct wzp_ctlq {
    pthread_mutex_t lock;
    struct wzp_ctlmsg *head, *tail;
    size_t count, limit;
};

void wzp_ctlq_init(struct wzp_ctlq *q, size_t limit);
void wzp_ctlq_destroy(struct wzp_ctlq *q);
/* Copy data into a new message; WZP_EFULL over the limit, WZP_ENOMEM. */
int wzp_ctlq_push(struct wzp_ctlq *q, uint16_t type, uint32_t slot, uint32_t gen, const void *data,
                  size_t len);
/* Detach every queued message (FIFO order); the caller frees each with free(). */
struct wzp_ctlmsg *wzp_ctlq_take_all(struct wzp_ctlq *q);

/*
 * wzp_dgq: a connection's outgoing media queue, a byte ring of [u16 len][bytes] entries.
 * Only the owning worker touches it. The ring is allocated on the first push at the
 * smallest size and doubles when a push would not fit, up to max_cap; at max_cap a push
 * drops the oldest entries. A receiver that is drained every loop iteration never grows
 * past the first size, so memory follows what each connection needs, and growth happens
 * at most log2(max_cap / WZP_DGQ_MIN_CAP) times per connection, never per packet.
 */
#define WZP_DGQ_MIN_CAP 2048u

struct wzp_dgq {
    uint8_t *buf;        /* NULL until the first push */
    uint32_t cap;        /* power of two, 0 before the first push */
    uint32_t max_cap;    /* power of two >= 4096 */
    uint32_t head, tail; /* free-running byte offsets */
    uint32_t count;
    uint32_t grows; /* times the ring was enlarged */
};

/* No allocation here; max_cap is a power of two >= 4096. */
void wzp_dgq_init(struct wzp_dgq *q, uint32_t max_cap);
void wzp_dgq_destroy(struct wzp_dgq *q);
/*
 * Queue one entry (len <= max_cap / 2 - 2). Returns the number of entries dropped to make
 * room (0 normally); when the ring cannot be allocated at all the new entry itself is
 * dropped and counted.
 */
unsigned wzp_dgq_push(struct wzp_dgq *q, const uint8_t *data, size_t len);
/* The oldest entry, or NULL when empty. */
const uint8_t *wzp_dgq_peek(struct wzp_dgq *q, size_t *len);
void wzp_dgq_pop(struct wzp_dgq *q);
/* Bytes queued, entry headers included. */
static inline uint32_t wzp_dgq_bytes(const struct wzp_dgq *q)
{
    return q->tail - q->head;
}
/* Bytes allocated for the ring. */
static inline uint32_t wzp_dgq_capacity(const struct wzp_dgq *q)
{
    return q->cap;
}

#endif
