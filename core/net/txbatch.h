/*
 * txbatch.h - the packets a worker will send with its next sendmmsg.
 *
 * Packets are written back to back into one arena. Consecutive packets to the same
 * address become the segments of one UDP GSO message (a UDP_SEGMENT control message), so
 * the kernel is entered once per receiver, not once per packet; sendmmsg then sends up to
 * WZP_TX_BATCH such messages in one call. Nothing is allocated per packet.
 *
 * Threading: one batch per worker, touched only by it.
 */
#ifndef WZP_TXBATCH_H
#define WZP_TXBATCH_H

#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WZP_TX_BATCH        64   /* messages (mmsghdr entries) per sendmmsg */
#define WZP_TX_PACKET_BYTES 1452 /* room tx_buf guarantees for one QUIC packet */

#define WZP_TX_ARENA_BYTES   (128 * 1024)
#define WZP_GSO_MAX_SEGMENTS 64    /* UDP_MAX_SEGMENTS is 64 on older kernels, 128 on newer */
#define WZP_GSO_MAX_BYTES    65507 /* all segments of one message: the IPv4 UDP maximum */
#ifndef WZP_TX_GSO
#define WZP_TX_GSO 1 /* build with -DWZP_TX_GSO=0 to send one packet per message */
#endif

/*
 * The batch of packets waiting for the next sendmmsg. The arena holds the packets back to
 * back; message i covers arena bytes [iov[i].iov_base, + iov[i].iov_len) and is nseg[i]
 * segments of seg[i] bytes, the last one possibly shorter (then the message is closed).
 * Every array is fixed: nothing is allocated per packet.
 */
struct wzp_txbatch {
    size_t used;     /* arena bytes committed */
    unsigned nmsgs;  /* messages in use */
    bool gso;        /* may coalesce: UDP_SEGMENT works on this socket */
    bool gso_warned; /* the "GSO off" warning was logged */
    struct mmsghdr msgs[WZP_TX_BATCH];
    struct iovec iov[WZP_TX_BATCH];
    struct sockaddr_storage addr[WZP_TX_BATCH];
    uint16_t seg[WZP_TX_BATCH];  /* segment size (the first packet's length) */
    uint16_t nseg[WZP_TX_BATCH]; /* packets in the message */
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(uint16_t))];
    } ctl[WZP_TX_BATCH]; /* UDP_SEGMENT, only for messages of 2+ segments */
    uint8_t arena[WZP_TX_ARENA_BYTES];
};

/*
 * init: empty, GSO on or off. probe_gso: asks the socket fd for UDP_SEGMENT and turns
 * GSO off, logging once at WARN with the reason, when it is not there.
 * full: no room for one more packet (arena tail < WZP_TX_PACKET_BYTES, or every message
 * in use): send before writing the next packet.
 * can_append: whether a packet of len bytes to `to` would become one more segment of the
 * last message (GSO on, same address, last segment not short, len <= segment size, at
 * most WZP_GSO_MAX_SEGMENTS segments and WZP_GSO_MAX_BYTES bytes).
 * commit: the packet of len bytes written at the tail joins the last message if
 * can_append, else starts a new one; returns true if it was appended. Never called when
 * full (the worker's tx_buf guarantees it).
 * send: sendmmsg the batch on fd, counting into st, and empty it. A GSO message the
 * kernel refuses (EIO, EINVAL, ENOPROTOOPT, EOPNOTSUPP) turns GSO off for this batch for
 * good (logged once) and its packets are sent one per message; nothing is lost.
 */
void wzp_txbatch_init(struct wzp_txbatch *b, bool gso);
void wzp_txbatch_probe_gso(struct wzp_txbatch *b, int fd, unsigned worker_idx);
bool wzp_txbatch_full(const struct wzp_txbatch *b);
uint8_t *wzp_txbatch_tail(struct wzp_txbatch *b);
bool wzp_txbatch_can_append(const struct wzp_txbatch *b, size_t len, const struct sockaddr *to,
                            socklen_t tolen);
bool wzp_txbatch_commit(struct wzp_txbatch *b, size_t len, const struct sockaddr *to,
                        socklen_t tolen);
void wzp_txbatch_send(struct wzp_txbatch *b, int fd, struct wzp_stats *st, unsigned worker_idx);

#endif
