/* txbatch.c - the transmit batch: packets back to back, GSO runs, one sendmmsg (see
 * txbatch.h). */
#include "txbatch.h"

#include "common.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#define MOD "worker"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, since Linux 4.18 */
#endif

void wzp_txbatch_init(struct wzp_txbatch *b, bool gso)
{
    b->used = 0;
    b->nmsgs = 0;
    b->gso = gso;
    b->gso_warned = false;
}

static void txbatch_gso_off(struct wzp_txbatch *b, unsigned worker_idx, const char *why, int err)
{
    b->gso = false;
    if (b->gso_warned)
        return;
    b->gso_warned = true;
    WZP_WARN(MOD, "worker %u: UDP GSO off (%s: %s); sending one packet per message", worker_idx,
             why, strerror(err));
}

/*
 * A kernel without UDP_SEGMENT (before 4.18) would not refuse the control message: it
 * would ignore it and send the whole message as one datagram. So GSO is used only when
 * the socket answers the option; what a given path or NIC cannot do shows at send time.
 */
void wzp_txbatch_probe_gso(struct wzp_txbatch *b, int fd, unsigned worker_idx)
{
    if (!b->gso)
        return;
    int val = 0;
    socklen_t len = sizeof val;
    if (getsockopt(fd, SOL_UDP, UDP_SEGMENT, &val, &len) != 0)
        txbatch_gso_off(b, worker_idx, "getsockopt UDP_SEGMENT", errno);
    else
        WZP_DEBUG(MOD, "worker %u: UDP GSO on", worker_idx);
}

bool wzp_txbatch_full(const struct wzp_txbatch *b)
{
    return b->nmsgs == WZP_TX_BATCH || WZP_TX_ARENA_BYTES - b->used < WZP_TX_PACKET_BYTES;
}

uint8_t *wzp_txbatch_tail(struct wzp_txbatch *b)
{
    return b->arena + b->used;
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr *b,
                      socklen_t blen)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET && blen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (b->sa_family == AF_INET6 && blen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return alen == blen && memcmp(a, b, blen) == 0;
}

bool wzp_txbatch_can_append(const struct wzp_txbatch *b, size_t len, const struct sockaddr *to,
                            socklen_t tolen)
{
    if (!b->gso || b->nmsgs == 0 || len == 0)
        return false;
    unsigned i = b->nmsgs - 1;
    size_t bytes = b->iov[i].iov_len;
    if (bytes != (size_t)b->seg[i] * b->nseg[i])
        return false; /* its last segment is short: nothing may follow it */
    if (len > b->seg[i] || b->nseg[i] >= WZP_GSO_MAX_SEGMENTS || bytes + len > WZP_GSO_MAX_BYTES)
        return false;
    return same_addr(&b->addr[i], b->msgs[i].msg_hdr.msg_namelen, to, tolen);
}

bool wzp_txbatch_commit(struct wzp_txbatch *b, size_t len, const struct sockaddr *to,
                        socklen_t tolen)
{
    if (wzp_txbatch_can_append(b, len, to, tolen)) {
        unsigned i = b->nmsgs - 1;
        b->iov[i].iov_len += len; /* the packet was written right after the previous one */
        b->used += len;
        if (++b->nseg[i] == 2) {
            struct msghdr *h = &b->msgs[i].msg_hdr;
            h->msg_control = b->ctl[i].buf;
            h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
            struct cmsghdr *cm = CMSG_FIRSTHDR(h);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            memcpy(CMSG_DATA(cm), &b->seg[i], sizeof(uint16_t));
        }
        return true;
    }
    if (b->nmsgs == WZP_TX_BATCH || len > WZP_TX_PACKET_BYTES || tolen > sizeof b->addr[0]) {
        WZP_ERROR(MOD, "transmit batch misuse (len %zu, %u messages): packet dropped", len,
                  b->nmsgs);
        return false;
    }
    unsigned i = b->nmsgs++;
    memcpy(&b->addr[i], to, tolen);
    b->iov[i].iov_base = b->arena + b->used;
    b->iov[i].iov_len = len;
    b->seg[i] = (uint16_t)len;
    b->nseg[i] = 1;
    memset(&b->msgs[i], 0, sizeof b->msgs[i]);
    b->msgs[i].msg_hdr.msg_name = &b->addr[i];
    b->msgs[i].msg_hdr.msg_namelen = tolen;
    b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
    b->msgs[i].msg_hdr.msg_iovlen = 1;
    b->used += len;
    return false;
}

/* What the kernel answers when a GSO send cannot be done (no checksum offload on the
 * device: EIO; segment larger than the path MTU, SO_NO_CHECK: EINVAL). */
static bool gso_refused(int err)
{
    return err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP;
}

/* sendmmsg n single-packet messages; a failure (socket buffer full, a per-destination
 * error) drops one packet, QUIC recovers, and the rest still go. */
static void send_plain(int fd, struct mmsghdr *m, unsigned n, struct wzp_stats *st)
{
    unsigned done = 0;
    while (done < n) {
        int r = sendmmsg(fd, m + done, n - done, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            WZP_STAT_INC(st, udp_tx_errors);
            done++;
            continue;
        }
        done += (unsigned)r;
        WZP_STAT_ADD(st, udp_tx_packets, (unsigned)r);
    }
}

/* GSO is off: send the segments of message i one UDP datagram each. */
static void txbatch_send_split(struct wzp_txbatch *b, unsigned i, int fd, struct wzp_stats *st)
{
    struct mmsghdr m[WZP_GSO_MAX_SEGMENTS];
    struct iovec v[WZP_GSO_MAX_SEGMENTS];
    unsigned n = b->nseg[i];
    uint8_t *p = b->iov[i].iov_base;
    size_t left = b->iov[i].iov_len;
    for (unsigned k = 0; k < n; k++) {
        v[k].iov_base = p;
        v[k].iov_len = WZP_MIN(left, (size_t)b->seg[i]);
        p += v[k].iov_len;
        left -= v[k].iov_len;
        memset(&m[k], 0, sizeof m[k]);
        m[k].msg_hdr.msg_name = &b->addr[i];
        m[k].msg_hdr.msg_namelen = b->msgs[i].msg_hdr.msg_namelen;
        m[k].msg_hdr.msg_iov = &v[k];
        m[k].msg_hdr.msg_iovlen = 1;
    }
    send_plain(fd, m, n, st);
}

void wzp_txbatch_send(struct wzp_txbatch *b, int fd, struct wzp_stats *st, unsigned worker_idx)
{
    unsigned done = 0, n = b->nmsgs;
    while (done < n) {
        if (!b->gso && b->nseg[done] > 1) {
            txbatch_send_split(b, done, fd, st);
            done++;
            continue;
        }
        /* With GSO off, a run stops before the next message that would need it. */
        unsigned end = done + 1;
        while (end < n && (b->gso || b->nseg[end] == 1))
            end++;
        int r = sendmmsg(fd, b->msgs + done, end - done, 0);
        int err = r < 0 ? errno : 0;
        if (err == EINTR)
            continue;
        if (b->nseg[done] > 1 && gso_refused(err)) {
            txbatch_gso_off(b, worker_idx, "a GSO send failed", err);
            continue; /* this message again, split */
        }
        if (r <= 0) {
            /* Socket buffer full or a per-destination error: drop this message's packets
             * (QUIC recovers) and carry on with the rest. */
            WZP_STAT_ADD(st, udp_tx_errors, b->nseg[done]);
            done++;
            continue;
        }
        uint64_t packets = 0, gso_msgs = 0, gso_segs = 0;
        for (unsigned i = done; i < done + (unsigned)r; i++) {
            packets += b->nseg[i];
            if (b->nseg[i] > 1) {
                gso_msgs++;
                gso_segs += b->nseg[i];
            }
        }
        WZP_STAT_ADD(st, udp_tx_packets, packets);
        if (gso_msgs) {
            WZP_STAT_ADD(st, udp_tx_gso_messages, gso_msgs);
            WZP_STAT_ADD(st, udp_tx_gso_segments, gso_segs);
        }
        done += (unsigned)r;
    }
    b->nmsgs = 0;
    b->used = 0;
}
