/*
 * udp-baseline - the load generator's traffic pattern over plain UDP: no QUIC, no
 * crypto, no per-connection state. It measures what forwarding the same media costs
 * this machine at the bottom of the stack, so relay figures can be quoted as ratios.
 *
 *   udp-baseline [options]
 *
 * The process forks a forwarder child, then plays R rooms x P participants (S of them
 * speaking) against it from one thread, with the same timeline as wzp-loadgen: joins,
 * warmup, a measured window, a drain. The parent samples the child's CPU (utime+stime)
 * and RSS from /proc at the window edges, exactly as the benchmark samples the relay.
 *
 * Forwarder: --threads workers, each a blocking loop on its own SO_REUSEPORT socket
 * bound to the same loopback port (the kernel spreads clients by 4-tuple, as for the
 * relay), reading it at most once per --poll-every microseconds as the relay does. A participant
 * registers with a join packet ("J", room, member); the worker stores its address in a shared
 * address table and a room table (rwlock: write on join, read per forwarded packet, like the
 * relay's room lock) and acknowledges with "A". Media: recvmmsg (32 per call), find the sender by
 * source address (open-addressing hash), and queue one message per other room member pointing at
 * the received buffer (no copy); sendmmsg in batches of 64. Forwarded counts live in shared memory.
 *
 * Packets use wzp-loadgen's media format: 12-byte header, then sender index (u32 LE),
 * sequence (u32 LE), send time (u64 LE, CLOCK_MONOTONIC ns), padding to --size.
 *
 * Acknowledgements, shaped as the relay's clients send them (--acks, --phases as for
 * wzp-loadgen): with --acks quinn (default) a participant answers every media packet at
 * once with an ACK-sized packet ("K" + padding to ACK_BYTES, the size of a QUIC ACK-only
 * packet); with batch, one per receive batch. The forwarder reads each, finds its sender
 * (as the relay must find the connection) and drops it.
 */
#include "benchutil.h"
#include "wzpc.h" /* kernel receive timestamps, measured as for the relay's clients */

#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define HEADER_BYTES   12
#define PAYLOAD_MIN    BU_PAYLOAD_MIN
#define PAYLOAD_MAX    BU_PAYLOAD_MAX
#define MAX_THREADS    BU_MAX_THREADS
#define MAX_CLIENTS    BU_MAX_CLIENTS
#define RECV_BATCH     32
#define SEND_BATCH     64
#define JOIN_RETRY_NS  100000000ull
#define START_DELAY_NS 50000000ull
#define SOCKBUF_BYTES  (4 << 20)
#define ACK_BYTES      45 /* short header, 8-byte CID, ACK frame, AEAD tag */

/* ------------------------------------------------------------------ options */

struct options {
    struct bu_shape shape;
    double join_timeout;
    bool json;
    int forwarder_cpu;      /* -1: anywhere */
    unsigned poll_every_us; /* 0: block in recvmmsg */
};

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "\n"
            "Raw-UDP fan-out baseline: a forwarder child process on 127.0.0.1 and R rooms x P\n"
            "participants sending wzp-loadgen's media pattern through it, without QUIC.\n"
            "\n"
            "options:\n"
            "  --rooms R --participants P --speakers S --rate PPS --size BYTES\n"
            "  --duration SEC --warmup SEC --drain SEC\n"
            "                      as for wzp-loadgen (defaults 1, 2, P, 50, 100, 10, 1, 0.5)\n"
            "  --acks quinn|batch  receivers answer every packet with an ACK-sized packet\n"
            "                      (quinn, default) or one per receive batch\n"
            "  --phases spread|grouped\n"
            "                      speakers' send order, as for wzp-loadgen (default spread)\n"
            "  --threads N         forwarder workers (default: online CPUs)\n"
            "  --forwarder-cpu N   run the forwarder on CPU N only (the participants run\n"
            "                      wherever this process is started, e.g. under taskset)\n"
            "  --poll-every US     a worker reads its socket at most once per US\n"
            "                      microseconds, sleeping out the rest after a short batch,\n"
            "                      as the relay's --poll-every does (default: the relay's,\n"
            "                      100; 0 = block in recvmmsg)\n"
            "  --json              print the result as one JSON object on stdout\n"
            "  -h, --help          show this help\n",
            prog);
}

enum {
    OPT_JSON = BU_OPT_FIRST_OWN,
    OPT_FORWARDER_CPU,
    OPT_POLL_EVERY,
};

static const struct option long_options[] = {
    BU_SHAPE_LONG_OPTIONS,
    {"json", no_argument, NULL, OPT_JSON},
    {"forwarder-cpu", required_argument, NULL, OPT_FORWARDER_CPU},
    {"poll-every", required_argument, NULL, OPT_POLL_EVERY},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static bool apply_option(struct options *o, int opt, const char *arg)
{
    int shaped = bu_shape_option(&o->shape, opt, arg);
    if (shaped >= 0)
        return shaped == 1;
    switch (opt) {
    case OPT_JSON:
        o->json = true;
        return true;
    case OPT_FORWARDER_CPU: {
        unsigned cpu;
        if (!bu_set_uint(arg, 0, CPU_SETSIZE - 1, &cpu))
            return false;
        o->forwarder_cpu = (int)cpu;
        return true;
    }
    case OPT_POLL_EVERY:
        return bu_set_uint(arg, 0, 100000, &o->poll_every_us);
    default:
        return false;
    }
}

static int parse_args(int argc, char **argv, struct options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int opt;

    *o = (struct options){.shape = BU_SHAPE_DEFAULTS,
                          .join_timeout = 30,
                          .forwarder_cpu = -1,
                          .poll_every_us = 100 /* the relay's WZP_DEFAULT_POLL_EVERY_US */};
    o->shape.threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (unsigned)cpus;
    while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout, argv[0]);
            return 0;
        }
        if (!apply_option(o, opt, optarg)) {
            if (optarg != NULL)
                fprintf(stderr, "invalid value for an option: %s\n", optarg);
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (o->shape.speakers == UINT32_MAX)
        o->shape.speakers = o->shape.participants;
    if (optind != argc || o->shape.speakers > o->shape.participants ||
        (uint64_t)o->shape.rooms * o->shape.participants > MAX_CLIENTS) {
        usage(stderr, argv[0]);
        return 2;
    }
    return -1;
}

/* ------------------------------------------------------------------ wire helpers */

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64le(const uint8_t *p)
{
    return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    put_u32le(p, (uint32_t)v);
    put_u32le(p + 4, (uint32_t)(v >> 32));
}

static void set_bufs(int fd)
{
    int v = SOCKBUF_BYTES;

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

/* ------------------------------------------------------------------ forwarder */

/* Shared by the forwarder's workers (and, for the counters, with the parent). */
struct fwd_shared {
    _Atomic uint64_t forwarded[MAX_THREADS]; /* one writer each */
};

struct member {
    struct sockaddr_in addr;
    bool joined;
};

struct forwarder {
    const struct options *o;
    struct fwd_shared *shared;
    pthread_rwlock_t lock;  /* rooms and the address table */
    struct member *members; /* rooms x participants */
    uint32_t *table;        /* open addressing: member index + 1, 0 = empty */
    size_t table_mask;
    int fds[MAX_THREADS];
};

static size_t addr_hash(const struct sockaddr_in *a)
{
    uint64_t k = (uint64_t)a->sin_addr.s_addr << 16 | a->sin_port;

    k *= 0x9e3779b97f4a7c15ull;
    return (size_t)(k >> 29);
}

static bool addr_eq(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

/* Index of the member with this address, or -1. Caller holds the lock. */
static long lookup(const struct forwarder *f, const struct sockaddr_in *a)
{
    for (size_t i = addr_hash(a) & f->table_mask;; i = (i + 1) & f->table_mask) {
        uint32_t v = f->table[i];

        if (v == 0)
            return -1;
        if (addr_eq(&f->members[v - 1].addr, a))
            return (long)v - 1;
    }
}

static void join(struct forwarder *f, uint32_t idx, const struct sockaddr_in *a)
{
    pthread_rwlock_wrlock(&f->lock);
    if (!f->members[idx].joined && lookup(f, a) < 0) {
        size_t i = addr_hash(a) & f->table_mask;

        while (f->table[i] != 0)
            i = (i + 1) & f->table_mask;
        f->members[idx].addr = *a;
        f->members[idx].joined = true;
        f->table[i] = idx + 1;
    }
    pthread_rwlock_unlock(&f->lock);
}

struct worker {
    struct forwarder *f;
    unsigned id;
    int fd;
    uint8_t rx[RECV_BATCH][2048];
    struct sockaddr_in from[RECV_BATCH];
    struct iovec rx_iov[RECV_BATCH];
    struct mmsghdr rx_msg[RECV_BATCH];
    struct iovec tx_iov[SEND_BATCH];
    struct sockaddr_in tx_to[SEND_BATCH];
    struct mmsghdr tx_msg[SEND_BATCH];
    unsigned ntx;
    uint64_t forwarded;
};

static void flush_tx(struct worker *w)
{
    unsigned off = 0;

    while (off < w->ntx) {
        int n = sendmmsg(w->fd, w->tx_msg + off, w->ntx - off, 0);

        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break; /* the rest is lost, as a full socket buffer would lose it */
        }
        off += (unsigned)n;
        w->forwarded += (unsigned)n;
    }
    w->ntx = 0;
    atomic_store_explicit(&w->f->shared->forwarded[w->id], w->forwarded, memory_order_relaxed);
}

static void queue_tx(struct worker *w, const struct sockaddr_in *to, void *data, size_t len)
{
    struct mmsghdr *m = &w->tx_msg[w->ntx];

    w->tx_to[w->ntx] = *to;
    w->tx_iov[w->ntx] = (struct iovec){data, len};
    memset(m, 0, sizeof(*m));
    m->msg_hdr.msg_name = &w->tx_to[w->ntx];
    m->msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    m->msg_hdr.msg_iov = &w->tx_iov[w->ntx];
    m->msg_hdr.msg_iovlen = 1;
    if (++w->ntx == SEND_BATCH)
        flush_tx(w);
}

/* Media from a member: one message per other member of its room. */
static void fan_out(struct worker *w, unsigned k, size_t len)
{
    struct forwarder *f = w->f;
    unsigned p = f->o->shape.participants;
    long idx;

    pthread_rwlock_rdlock(&f->lock);
    idx = lookup(f, &w->from[k]);
    if (idx >= 0) {
        unsigned base = (unsigned)idx / p * p;

        for (unsigned m = base; m < base + p; m++)
            if (m != (unsigned)idx && f->members[m].joined)
                queue_tx(w, &f->members[m].addr, w->rx[k], len);
    }
    pthread_rwlock_unlock(&f->lock);
}

static void handle_rx(struct worker *w, unsigned k, size_t len)
{
    static char ack = 'A';
    const uint8_t *d = w->rx[k];

    if (len == ACK_BYTES && d[0] == 'K') { /* an acknowledgement: find its sender, drop it */
        pthread_rwlock_rdlock(&w->f->lock);
        (void)lookup(w->f, &w->from[k]);
        pthread_rwlock_unlock(&w->f->lock);
        return;
    }
    if (len == 9 && d[0] == 'J') {
        uint32_t idx = get_u32le(d + 1) * w->f->o->shape.participants + get_u32le(d + 5);

        if (idx < w->f->o->shape.rooms * w->f->o->shape.participants)
            join(w->f, idx, &w->from[k]);
        queue_tx(w, &w->from[k], &ack, 1);
        return;
    }
    if (len >= HEADER_BYTES)
        fan_out(w, k, len);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (unsigned i = 0; i < RECV_BATCH; i++) {
        w->rx_iov[i] = (struct iovec){w->rx[i], sizeof(w->rx[i])};
        w->rx_msg[i].msg_hdr.msg_iov = &w->rx_iov[i];
        w->rx_msg[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t every_ns = (uint64_t)w->f->o->poll_every_us * 1000u, last_poll = 0;
    for (;;) {
        int n;

        for (unsigned i = 0; i < RECV_BATCH; i++) {
            w->rx_msg[i].msg_hdr.msg_name = &w->from[i];
            w->rx_msg[i].msg_hdr.msg_namelen = sizeof(w->from[i]);
        }
        if (every_ns) { /* packets arriving meanwhile are read together */
            uint64_t now = bu_now_ns();
            if (now - last_poll < every_ns)
                bu_sleep_until(last_poll + every_ns, NULL);
            last_poll = bu_now_ns();
        }
        n = recvmmsg(w->fd, w->rx_msg, RECV_BATCH, MSG_WAITFORONE, NULL);
        if (n < 0)
            continue; /* EINTR */
        for (int i = 0; i < n; i++)
            handle_rx(w, (unsigned)i, w->rx_msg[i].msg_len);
        flush_tx(w);
    }
    return NULL;
}

static int bind_reuseport(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    socklen_t alen = sizeof(a);
    int one = 1, fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("udp-baseline: forwarder socket");
        exit(1);
    }
    set_bufs(fd);
    *bound = ntohs(a.sin_port);
    return fd;
}

/* Bind every worker socket before forking, so the port is known and ready. */
static void forwarder_bind(struct forwarder *f, uint16_t *port)
{
    *port = 0;
    for (unsigned i = 0; i < f->o->shape.threads; i++)
        f->fds[i] = bind_reuseport(*port, port);
}

/* The child: runs the workers until killed. */
static void forwarder_run(struct forwarder *f)
{
    size_t n = (size_t)f->o->shape.rooms * f->o->shape.participants, cap = 1;
    static struct worker workers[MAX_THREADS];
    pthread_t th;

    while (cap < 2 * n)
        cap <<= 1;
    f->members = calloc(n, sizeof(*f->members));
    f->table = calloc(cap, sizeof(*f->table));
    f->table_mask = cap - 1;
    if (f->members == NULL || f->table == NULL || pthread_rwlock_init(&f->lock, NULL) != 0)
        exit(1);
    for (unsigned i = 0; i < f->o->shape.threads; i++) {
        workers[i].f = f;
        workers[i].id = i;
        workers[i].fd = f->fds[i];
        if (i + 1 < f->o->shape.threads && pthread_create(&th, NULL, worker_main, &workers[i]) != 0)
            exit(1);
    }
    worker_main(&workers[f->o->shape.threads - 1]);
}

/* ------------------------------------------------------------------ participants */

struct peer {
    int fd;
    uint32_t index, room, seq;
    bool joined, speaker;
    uint64_t sent_window;
};

struct stats {
    uint64_t sent, sent_window, received, delivered, misrouted;
    uint64_t acks_window; /* acknowledgements sent inside the window */
    struct bu_hist latency;
};

struct clients {
    const struct options *o;
    struct peer *peers;
    unsigned n, joined, nspeakers;
    struct peer **speakers;
    int ep;
    uint16_t port;
    uint64_t t0, window_start, window_end, send_end, period, slot;
    struct stats st;
    uint8_t pkt[HEADER_BYTES + PAYLOAD_MAX];
};

static bool open_peer(struct clients *c, struct peer *p)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->port)};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        epoll_ctl(c->ep, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
        perror("udp-baseline: client socket");
        return false;
    }
    set_bufs(p->fd);
    wzpc_enable_rx_timestamps(p->fd);
    return true;
}

static void send_join(const struct clients *c, const struct peer *p)
{
    uint8_t j[9] = {'J'};

    put_u32le(j + 1, p->room);
    put_u32le(j + 5, p->index % c->o->shape.participants);
    (void)send(p->fd, j, sizeof(j), 0);
}

static void on_media(struct clients *c, struct peer *p, const uint8_t *d, size_t len, uint64_t now)
{
    uint32_t from;
    uint64_t sent;

    c->st.received++;
    if (len < HEADER_BYTES + PAYLOAD_MIN)
        return;
    from = get_u32le(d + HEADER_BYTES);
    sent = get_u64le(d + HEADER_BYTES + 8);
    if (from >= c->n || from / c->o->shape.participants != p->room || from == p->index) {
        c->st.misrouted++;
        return;
    }
    if (c->t0 != 0 && sent >= c->window_start && sent < c->window_end) {
        c->st.delivered++;
        bu_hist_add(&c->st.latency, now > sent ? now - sent : 0);
    }
}

static void read_peer(struct clients *c, struct peer *p)
{
    static uint8_t buf[RECV_BATCH][2048];
    static union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(struct timespec))];
    } ctl[RECV_BATCH];
    struct mmsghdr msg[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    int n;

    memset(msg, 0, sizeof(msg));
    for (unsigned i = 0; i < RECV_BATCH; i++) {
        iov[i] = (struct iovec){buf[i], sizeof(buf[i])};
        msg[i].msg_hdr.msg_iov = &iov[i];
        msg[i].msg_hdr.msg_iovlen = 1;
        msg[i].msg_hdr.msg_control = ctl[i].buf;
        msg[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
    }
    static const uint8_t ack[ACK_BYTES] = {'K'};
    while ((n = recvmmsg(p->fd, msg, RECV_BATCH, MSG_DONTWAIT, NULL)) > 0) {
        uint64_t now = bu_now_ns();
        int64_t clock_off = wzpc_mono_minus_real_ns();
        unsigned media = 0;

        for (int i = 0; i < n; i++) {
            /* arrival = the kernel's receive time, as the relay's generator measures */
            uint64_t stamped = wzpc_msg_rx_time_ns(&msg[i].msg_hdr, clock_off);

            msg[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
            if (msg[i].msg_len == 1 && buf[i][0] == 'A') {
                c->joined += !p->joined;
                p->joined = true;
            } else {
                on_media(c, p, buf[i], msg[i].msg_len, stamped ? stamped : now);
                media++;
            }
        }
        unsigned acks = c->o->shape.quinn_acks ? media : media > 0;
        for (unsigned i = 0; i < acks; i++)
            if (send(p->fd, ack, sizeof ack, 0) == ACK_BYTES && now >= c->window_start &&
                now < c->window_end)
                c->st.acks_window++;
    }
}

static void poll_once(struct clients *c, int timeout_ms)
{
    struct epoll_event ev[256];
    int n = epoll_wait(c->ep, ev, 256, timeout_ms);

    for (int i = 0; i < n; i++)
        read_peer(c, ev[i].data.ptr);
}

static void send_media(struct clients *c, struct peer *p, uint64_t now)
{
    uint8_t *q = c->pkt + HEADER_BYTES;

    memset(c->pkt, 0, HEADER_BYTES);
    c->pkt[2] = (uint8_t)(p->seq >> 8);
    c->pkt[3] = (uint8_t)p->seq;
    put_u32le(q, p->index);
    put_u32le(q + 4, p->seq);
    put_u64le(q + 8, now);
    p->seq++;
    if (send(p->fd, c->pkt, HEADER_BYTES + c->o->shape.size, 0) < 0)
        return;
    c->st.sent++;
    if (now >= c->window_start && now < c->window_end) {
        p->sent_window++;
        c->st.sent_window++;
    }
}

/* Same schedule as wzp-loadgen: speakers take turns, evenly spread over the period. */
static void send_due(struct clients *c)
{
    uint64_t now = bu_now_ns();

    while (c->nspeakers > 0) {
        uint64_t due = c->t0 + c->slot * c->period / c->nspeakers;

        if (due >= c->send_end || due > now)
            return;
        send_media(c, c->speakers[c->slot++ % c->nspeakers], bu_now_ns());
    }
}

static bool join_all(struct clients *c)
{
    uint64_t deadline = bu_now_ns() + (uint64_t)(c->o->join_timeout * 1e9);

    while (c->joined < c->n) {
        if (bu_now_ns() > deadline)
            return false;
        for (unsigned i = 0; i < c->n; i++)
            if (!c->peers[i].joined)
                send_join(c, &c->peers[i]);
        for (uint64_t until = bu_now_ns() + JOIN_RETRY_NS; bu_now_ns() < until && c->joined < c->n;)
            poll_once(c, 5);
    }
    return true;
}

static const struct bu_shape *sort_shape; /* for by_rank (set before the sort) */

static int by_rank(const void *a, const void *b)
{
    unsigned long ra = bu_speaker_rank(sort_shape, (*(struct peer *const *)a)->index);
    unsigned long rb = bu_speaker_rank(sort_shape, (*(struct peer *const *)b)->index);

    return ra < rb ? -1 : ra > rb;
}

static bool clients_setup(struct clients *c)
{
    const struct options *o = c->o;

    c->n = o->shape.rooms * o->shape.participants;
    c->peers = calloc(c->n, sizeof(*c->peers));
    c->speakers = calloc(c->n, sizeof(*c->speakers));
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    if (c->peers == NULL || c->speakers == NULL || c->ep < 0)
        return false;
    for (unsigned i = 0; i < c->n; i++) {
        struct peer *p = &c->peers[i];

        p->index = i;
        p->room = i / o->shape.participants;
        p->speaker = i % o->shape.participants < o->shape.speakers;
        if (!open_peer(c, p))
            return false;
        if (p->speaker)
            c->speakers[c->nspeakers++] = p;
    }
    sort_shape = &o->shape;
    qsort(c->speakers, c->nspeakers, sizeof(*c->speakers), by_rank); /* --phases */
    return true;
}

/* ------------------------------------------------------------------ measurement */

struct measure {
    uint64_t begin, end;
    struct bu_proc_sample idle, fwd_begin, fwd_end;
    uint64_t forwarded_begin, forwarded_end;
    double self_begin, self_end;
    struct bu_sys_cpu sys_begin, sys_end;
};

static uint64_t forwarded_total(const struct fwd_shared *s, unsigned threads)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < threads; i++)
        sum += atomic_load_explicit(&s->forwarded[i], memory_order_relaxed);
    return sum;
}

static void edge(const struct clients *c, const struct fwd_shared *s, pid_t child, uint64_t *t,
                 struct bu_proc_sample *ps, uint64_t *fwd, double *self, struct bu_sys_cpu *sys)
{
    *t = bu_now_ns();
    *sys = bu_sys_cpu();
    *ps = bu_proc_sample(child);
    *fwd = forwarded_total(s, c->o->shape.threads);
    *self = bu_self_cpu_s();
}

/* Run the media phase, sampling the forwarder at the window edges. */
static void run_media(struct clients *c, const struct fwd_shared *s, pid_t child, struct measure *m)
{
    bool began = false, ended = false;

    c->period = 1000000000ull / c->o->shape.rate;
    c->t0 = bu_now_ns() + START_DELAY_NS;
    c->window_start = c->t0 + (uint64_t)(c->o->shape.warmup * 1e9);
    c->window_end = c->window_start + (uint64_t)(c->o->shape.duration * 1e9);
    c->send_end = c->window_end + (uint64_t)(c->o->shape.drain * 1e9);
    while (bu_now_ns() < c->send_end + 100000000ull) {
        uint64_t now = bu_now_ns();

        if (!began && now >= c->window_start) {
            began = true;
            edge(c, s, child, &m->begin, &m->fwd_begin, &m->forwarded_begin, &m->self_begin,
                 &m->sys_begin);
        }
        if (!ended && now >= c->window_end) {
            ended = true;
            edge(c, s, child, &m->end, &m->fwd_end, &m->forwarded_end, &m->self_end, &m->sys_end);
        }
        send_due(c);
        poll_once(c, 1);
    }
}

static uint64_t expected(const struct clients *c)
{
    uint64_t e = 0;

    for (unsigned i = 0; i < c->nspeakers; i++)
        e += c->speakers[i]->sent_window * (c->o->shape.participants - 1);
    return e;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

static void print_result(const struct clients *c, const struct measure *m)
{
    const struct options *o = c->o;
    double win = (double)(m->end - m->begin) / 1e9;
    double cpu = m->fwd_end.cpu_s - m->fwd_begin.cpu_s;
    double sched = m->fwd_end.sched_s - m->fwd_begin.sched_s;
    uint64_t fwd = m->forwarded_end - m->forwarded_begin, exp = expected(c);
    FILE *out = o->json ? stdout : stderr;

    fprintf(stderr,
            "udp-baseline %ux%u (%u speakers): expected %llu, delivered %llu (%.4f), forwarder "
            "%llu pkts in the window, %.2f CPU s (%.2f us per packet)\n",
            o->shape.rooms, o->shape.participants, o->shape.speakers, (unsigned long long)exp,
            (unsigned long long)c->st.delivered, ratio((double)c->st.delivered, (double)exp),
            (unsigned long long)fwd, cpu, 1e6 * ratio(sched > 0 ? sched : cpu, (double)fwd));
    bu_hist_print_ms(stderr, "latency:", &c->st.latency);
    if (!o->json)
        return;
    fprintf(out,
            "{\n  \"mode\": \"udp-baseline\",\n  \"rooms\": %u, \"participants\": %u, "
            "\"speakers\": %u, \"rate\": %u, \"size\": %u, \"threads\": %u,\n"
            "  \"acks\": \"%s\", \"phases\": \"%s\", \"acks_window\": %llu, "
            "\"acks_per_delivered\": %.4f,\n"
            "  \"window_s\": %.3f, \"sent\": %llu, \"sent_window\": %llu, \"expected\": %llu,\n"
            "  \"delivered\": %llu, \"delivery_ratio\": %.6f, \"misrouted\": %llu,\n"
            "  \"forwarded_window\": %llu, \"forwarded_per_s\": %.1f,\n"
            "  \"forwarder\": {\"cpu_s\": %.3f, \"sched_cpu_s\": %.4f, \"cpu_us_per_pkt\": %.4f,\n"
            "                \"rss_idle_kb\": %lu, \"rss_end_kb\": %lu},\n"
            "  \"clients_cpu_s\": %.3f,\n  \"latency_ms\": ",
            o->shape.rooms, o->shape.participants, o->shape.speakers, o->shape.rate, o->shape.size,
            o->shape.threads, o->shape.quinn_acks ? "quinn" : "batch",
            o->shape.spread ? "spread" : "grouped", (unsigned long long)c->st.acks_window,
            ratio((double)c->st.acks_window, (double)c->st.delivered), win,
            (unsigned long long)c->st.sent, (unsigned long long)c->st.sent_window,
            (unsigned long long)exp, (unsigned long long)c->st.delivered,
            ratio((double)c->st.delivered, (double)exp), (unsigned long long)c->st.misrouted,
            (unsigned long long)fwd, ratio((double)fwd, win), cpu, sched,
            1e6 * ratio(sched > 0 ? sched : cpu, (double)fwd), m->idle.rss_kb, m->fwd_end.rss_kb,
            m->self_end - m->self_begin);
    bu_hist_json_ms(out, &c->st.latency);
    fprintf(out, ",\n  \"machine\": ");
    bu_sys_cpu_json(out, m->sys_begin, m->sys_end);
    fprintf(out, "\n}\n");
}

/* ------------------------------------------------------------------ main */

static int run_parent(struct clients *c, struct fwd_shared *s, pid_t child)
{
    struct measure m = {0};

    m.idle = bu_proc_sample(child);
    if (!clients_setup(c))
        return 1;
    if (!join_all(c)) {
        fprintf(stderr, "udp-baseline: only %u of %u participants joined\n", c->joined, c->n);
        return 1;
    }
    run_media(c, s, child, &m);
    print_result(c, &m);
    return 0;
}

int main(int argc, char **argv)
{
    static struct options o;
    static struct forwarder f;
    static struct clients c;
    struct fwd_shared *shared;
    pid_t child;
    int rc = parse_args(argc, argv, &o);

    if (rc >= 0)
        return rc;
    bu_raise_nofile();
    shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return 1;
    f.o = &o;
    f.shared = shared;
    forwarder_bind(&f, &c.port);
    child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent */
        if (o.forwarder_cpu >= 0) {
            cpu_set_t set;

            CPU_ZERO(&set);
            CPU_SET(o.forwarder_cpu, &set);
            if (sched_setaffinity(0, sizeof(set), &set) != 0)
                perror("udp-baseline: --forwarder-cpu");
        }
        forwarder_run(&f);
        _exit(0);
    }
    for (unsigned i = 0; i < o.shape.threads; i++)
        close(f.fds[i]);
    c.o = &o;
    c.ep = -1;
    rc = run_parent(&c, shared, child);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    for (unsigned i = 0; i < c.n && c.peers != NULL; i++)
        if (c.peers[i].fd > 0)
            close(c.peers[i].fd);
    free(c.peers);
    free(c.speakers);
    if (c.ep >= 0)
        close(c.ep);
    munmap(shared, sizeof(*shared));
    return rc;
}
