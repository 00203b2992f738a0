/*
 * wzp-loadgen - load generator for wzp-relay: R rooms x P participants, each a real QUIC
 * connection (the wzpc client library) that joins through the WZP handshake and sends
 * media datagrams at a fixed rate.
 *
 *   wzp-loadgen [options] HOST[:PORT]
 *
 * Media mode (default). Client i belongs to room i / P ("PREFIX-<room>") and speaks if
 * i % P < S. Joins are paced (at most --concurrency handshakes in flight). Once every
 * client has joined or failed, and has seen a RoomUpdate listing its whole room (or that
 * count stopped moving for 2 s), the controller (main thread) fixes a timeline:
 *
 *   t0 ........ warmup ........ | window (--duration) | drain | stop
 *   speakers send from t0 until the end of the drain; only packets *sent* inside the
 *   window are counted, so every counted packet has at least the drain to arrive.
 *
 * Each packet is a valid 12-byte WZP media header followed by --size payload bytes that
 * start with: sender index (u32 LE), sequence (u32 LE), send time (u64 LE, ns of
 * CLOCK_MONOTONIC). Receivers are on the same host, so one-way latency is receive time
 * minus send time, the receive time being the kernel's (SO_TIMESTAMPNS) when it has one. expected =
 * sum over speakers of (packets sent in the window) x (participants joined in its room - 1);
 * delivered = packets received whose send time is in the window. Latencies go into fixed-size
 * histograms (benchutil.h). Two correctness counters ride along: datagrams from another room or
 * from oneself ("misrouted") and RoomUpdates listing fewer members than the one before while nobody
 * left.
 *
 * Storm mode (--storm N): open N connections, each joins and hangs up at once, with at
 * most --concurrency in flight; reports joins/s, failures and join latency.
 *
 * Threads: --threads N generator threads, each with its own libev loop and its own
 * clients (client i runs on thread i % N). By default every client has its own UDP
 * socket, like a real client; --sockets N makes the clients of each thread share N
 * sockets (wzpc_mux: packets routed by connection ID, recvmmsg/sendmmsg and UDP GSO
 * across clients), which costs the generator less per packet. Media is paced by one
 * timer per loop that sends every packet that is due (the library queues and flushes
 * before the loop blocks). The main thread only keeps time and samples the relay (--relay-pid): CPU
 * (utime+stime) and RSS from /proc at the window edges, and with --relay-stats a SIGUSR1
 * at each edge so the relay logs its counters.
 */
#include "wzpc.h"

#include "benchutil.h"
#include "common.h"
#include "log.h"
#include "media.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>

#define DEFAULT_PORT 4433
#define MAX_THREADS  BU_MAX_THREADS
#define MAX_CLIENTS  BU_MAX_CLIENTS
#define PAYLOAD_MIN  BU_PAYLOAD_MIN
#define PAYLOAD_MAX  BU_PAYLOAD_MAX
_Static_assert(BU_PAYLOAD_MAX == WZP_MEDIA_MAX_DATAGRAM_BYTES - WZP_MEDIA_HEADER_BYTES,
               "the shared payload bound must follow the relay's datagram limit");
#define TICK_S              0.001     /* shortest media timer period */
#define IDLE_TICK_S         0.005     /* phase polling while not sending */
#define START_DELAY_NS      50000000u /* t0 is this far after the controller decides */
#define STOP_TAIL_NS        100000000u
#define VIEW_QUIET_NS       2000000000u /* give up waiting for full RoomUpdates */
#define DEFAULT_CONCURRENCY 200

/* ------------------------------------------------------------------ options */

struct options {
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    struct bu_shape shape;
    unsigned concurrency, storm;
    unsigned sockets; /* shared UDP sockets per thread; 0 = one per client */
    double join_timeout;
    const char *room_prefix;
    pid_t relay_pid;
    bool relay_stats; /* SIGUSR1 the relay at the window edges */
    bool json;
    int verbose;
};

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options] HOST[:PORT]\n"
            "\n"
            "Load generator for wzp-relay (default port %d): R rooms x P participants, each a\n"
            "QUIC connection that joins its room and sends timestamped media datagrams.\n"
            "\n"
            "options:\n"
            "  --rooms R           rooms (default 1)\n"
            "  --participants P    participants per room (default 2)\n"
            "  --speakers S        participants per room that send media (default P)\n"
            "  --rate PPS          packets per second per speaker (default 50)\n"
            "  --size BYTES        payload bytes after the 12-byte header, %d..%d (default 100)\n"
            "  --duration SEC      measured window (default 10)\n"
            "  --warmup SEC        media before the window, not counted (default 1)\n"
            "  --drain SEC         media after the window, so counted packets can arrive\n"
            "                      (default 0.5)\n"
            "  --threads N         generator threads, each with its own loop (default 1)\n"
            "  --sockets N         the clients of each thread share N UDP sockets (packets\n"
            "                      routed by connection ID, batched sends and receives):\n"
            "                      cheaper for the generator, the fewer the cheaper, but\n"
            "                      the relay's SO_REUSEPORT workers are picked per socket,\n"
            "                      so keep N well above its worker count. Arrivals get\n"
            "                      burstier; use the default for latency figures.\n"
            "                      Default 0: one socket per client, like real clients\n"
            "  --acks MODE         quinn (default): acknowledge every received packet at once,\n"
            "                      as the quinn stack of real clients does; batch: one ACK\n"
            "                      per received batch, ngtcp2's usual rule\n"
            "  --phases MODE       when in each period the speakers send: spread (default:\n"
            "                      the rooms take turns, so a room's speakers are spread\n"
            "                      over the period, as independent real clients are) or\n"
            "                      grouped (a room's speakers one after the other, so their\n"
            "                      packets reach the relay together)\n"
            "  --concurrency N     joins in flight at once (default %d; keep it below the\n"
            "                      relay's --max-handshakes)\n"
            "  --join-timeout SEC  give up on joins still pending after this (default 60)\n"
            "  --room-prefix STR   room names are STR-<n> (default \"load\")\n"
            "  --storm N           connection storm: N joins, each hanging up at once\n"
            "  --relay-pid PID     sample this relay's CPU and RSS from /proc\n"
            "  --relay-stats       also send it SIGUSR1 at the window start and end (its log\n"
            "                      then has a counters line at each edge)\n"
            "  --json              print the result as one JSON object on stdout (the\n"
            "                      human summary then goes to stderr)\n"
            "  -v, --verbose       client library warnings and debug output\n"
            "  -h, --help          show this help\n"
            "\n"
            "Exit status: 0 when the run completed (whatever the delivery), 1 if no client\n"
            "joined or it was interrupted, 2 on a usage error.\n",
            prog, DEFAULT_PORT, PAYLOAD_MIN, PAYLOAD_MAX, DEFAULT_CONCURRENCY);
}

enum {
    OPT_CONCURRENCY = BU_OPT_FIRST_OWN,
    OPT_SOCKETS,
    OPT_JOIN_TIMEOUT,
    OPT_ROOM_PREFIX,
    OPT_STORM,
    OPT_RELAY_PID,
    OPT_RELAY_STATS,
    OPT_JSON,
};

static const struct option long_options[] = {
    BU_SHAPE_LONG_OPTIONS,
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"sockets", required_argument, NULL, OPT_SOCKETS},
    {"join-timeout", required_argument, NULL, OPT_JOIN_TIMEOUT},
    {"room-prefix", required_argument, NULL, OPT_ROOM_PREFIX},
    {"storm", required_argument, NULL, OPT_STORM},
    {"relay-pid", required_argument, NULL, OPT_RELAY_PID},
    {"relay-stats", no_argument, NULL, OPT_RELAY_STATS},
    {"json", no_argument, NULL, OPT_JSON},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Room names must pass GnuTLS's SNI check: letters, digits, '-' and '.'. */
static bool valid_prefix(const char *s)
{
    if (*s == '\0' || strlen(s) > 200)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
            return false;
    return true;
}

static bool apply_option(struct options *o, int opt, const char *arg)
{
    unsigned long v;

    int shaped = bu_shape_option(&o->shape, opt, arg);
    if (shaped >= 0)
        return shaped == 1;
    switch (opt) {
    case OPT_CONCURRENCY:
        return bu_set_uint(arg, 1, 100000, &o->concurrency);
    case OPT_SOCKETS:
        return bu_set_uint(arg, 0, 4096, &o->sockets);
    case OPT_JOIN_TIMEOUT:
        return bu_parse_seconds(arg, &o->join_timeout) && o->join_timeout > 0;
    case OPT_ROOM_PREFIX:
        o->room_prefix = arg;
        return valid_prefix(arg);
    case OPT_STORM:
        return bu_set_uint(arg, 1, MAX_CLIENTS, &o->storm);
    case OPT_RELAY_PID:
        if (!bu_parse_ulong(arg, 1, 1u << 30, &v))
            return false;
        o->relay_pid = (pid_t)v;
        return true;
    case OPT_RELAY_STATS:
        o->relay_stats = true;
        return true;
    case OPT_JSON:
        o->json = true;
        return true;
    case 'v':
        o->verbose++;
        return true;
    default:
        return false;
    }
}

static void set_defaults(struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->shape = (struct bu_shape)BU_SHAPE_DEFAULTS;
    o->concurrency = DEFAULT_CONCURRENCY;
    o->join_timeout = 60;
    o->room_prefix = "load";
}

static bool check_options(struct options *o)
{
    if (o->shape.speakers == UINT32_MAX)
        o->shape.speakers = o->shape.participants;
    if (o->shape.speakers > o->shape.participants) {
        fprintf(stderr, "--speakers cannot exceed --participants\n");
        return false;
    }
    if (o->storm == 0 && (uint64_t)o->shape.rooms * o->shape.participants > MAX_CLIENTS) {
        fprintf(stderr, "at most %d clients\n", MAX_CLIENTS);
        return false;
    }
    if (o->relay_stats && o->relay_pid == 0) {
        fprintf(stderr, "--relay-stats needs --relay-pid\n");
        return false;
    }
    return true;
}

/* Returns -1 to go on, or the exit status to return now. */
static int parse_args(int argc, char **argv, struct options *o)
{
    int opt;

    set_defaults(o);
    while ((opt = getopt_long(argc, argv, "vh", long_options, NULL)) != -1) {
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
    if (argc - optind != 1) {
        usage(stderr, argv[0]);
        return 2;
    }
    if (!bu_parse_target(argv[optind], DEFAULT_PORT, o->host, sizeof(o->host), &o->port)) {
        fprintf(stderr, "bad HOST[:PORT]: %s\n", argv[optind]);
        return 2;
    }
    return check_options(o) ? -1 : 2;
}

/* ------------------------------------------------------------------ state */

enum phase { PHASE_JOIN = 0, PHASE_MEDIA, PHASE_STOP };

enum client_state {
    CL_NEW = 0, /* not opened yet */
    CL_JOINING, /* QUIC handshake or WZP join in progress */
    CL_JOINED,
    CL_FAILED,  /* closed before joining */
    CL_DROPPED, /* closed after joining, before the end */
    CL_GONE,    /* closed and freed by us */
};

struct gen;

struct client {
    struct wzpc_client *c;
    struct gen *g;
    struct client *reap_next; /* on the thread's list of clients to close and free */
    uint32_t index, room, seq;
    uint64_t start_ns;
    enum client_state st;
    bool speaker;
    bool in_media;        /* joined when the media phase began: counts as a receiver */
    bool on_reap;         /* already on the reap list */
    bool full_view;       /* received a RoomUpdate listing all P participants */
    uint32_t updates;     /* RoomUpdates received */
    uint32_t last_count;  /* participant count of the last one */
    uint64_t sent_window; /* packets sent inside the window */
};

struct gen_stats {
    uint64_t joined, join_failed, dropped, gave_up;
    uint64_t sent, sent_window, send_refused;
    uint64_t received, delivered, early, misrouted, malformed;
    uint64_t kernel_stamped;    /* delivered packets timed by the kernel's receive time */
    uint64_t updates_backwards; /* RoomUpdates listing fewer members than the one before */
    struct bu_hist latency;     /* one-way, packets sent in the window */
    struct bu_hist join;        /* wzpc_connect -> JOINED */
    struct bu_hist lag;         /* how late the timer sent a packet, window only */
    char first_failure[200];
};

/* One generator thread: a libev loop and its share of the clients. */
struct gen {
    struct app *app;
    unsigned id;
    pthread_t thread;
    struct ev_loop *loop;
    struct wzpc_mux *mux; /* --sockets: the thread's shared sockets */
    ev_timer tick;
    ev_check check;
    struct client *clients;
    unsigned nclients, next_open, inflight, max_inflight;
    struct client *reap; /* clients to close and free outside callbacks */
    struct client **speakers;
    unsigned nspeakers;
    uint64_t slot; /* media sends scheduled so far */
    bool media_started, media_done;
    uint64_t t0, offset, window_start, window_end, send_end, period;
    struct gen_stats st;
    uint8_t pkt[WZP_MEDIA_MAX_DATAGRAM_BYTES];
};

/* Written by the controller before it publishes PHASE_MEDIA (release). */
struct timeline {
    uint64_t t0, window_start, window_end, send_end;
};

struct app {
    struct options o;
    unsigned total; /* clients (media) or joins (storm) */
    _Atomic int phase;
    _Atomic unsigned settled; /* clients that joined or failed, all threads */
    _Atomic unsigned joined;  /* clients that joined */
    _Atomic unsigned views;   /* clients whose RoomUpdate listed a full room */
    _Atomic unsigned dropped; /* joined clients that the relay or a timeout closed */
    struct timeline tl;
    unsigned started; /* threads running */
    struct gen gens[MAX_THREADS];
};

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    interrupted = 1;
}

/* ------------------------------------------------------------------ joins */

static void reap_later(struct gen *g, struct client *cl)
{
    if (cl->on_reap || cl->c == NULL)
        return;
    cl->on_reap = true;
    cl->reap_next = g->reap;
    g->reap = cl;
}

static void note_failure(struct gen *g, struct client *cl)
{
    bool by_peer = false, is_app = false;
    uint64_t code = 0;
    char reason[128] = "";

    if (g->st.first_failure[0] != '\0')
        return;
    if (wzpc_close_info(cl->c, &by_peer, &is_app, &code, reason, sizeof(reason)))
        snprintf(g->st.first_failure, sizeof(g->st.first_failure),
                 "client %u: closed by %s, %s code 0x%llx \"%s\"", cl->index,
                 by_peer ? "relay" : "client", is_app ? "application" : "transport",
                 (unsigned long long)code, reason);
    else
        snprintf(g->st.first_failure, sizeof(g->st.first_failure),
                 "client %u: no CONNECTION_CLOSE (handshake/idle timeout or dropped)", cl->index);
}

static void settle(struct gen *g)
{
    g->inflight--;
    atomic_fetch_add_explicit(&g->app->settled, 1, memory_order_relaxed);
}

static void on_joined(struct gen *g, struct client *cl)
{
    cl->st = CL_JOINED;
    g->st.joined++;
    atomic_fetch_add_explicit(&g->app->joined, 1, memory_order_relaxed);
    bu_hist_add(&g->st.join, bu_now_ns() - cl->start_ns);
    settle(g);
    if (g->app->o.storm > 0)
        reap_later(g, cl); /* storm: hang up right away */
}

static void on_closed(struct gen *g, struct client *cl)
{
    if (cl->st == CL_JOINING) {
        cl->st = CL_FAILED;
        g->st.join_failed++;
        note_failure(g, cl);
        settle(g);
        reap_later(g, cl);
    } else if (cl->st == CL_JOINED && g->app->o.storm == 0) {
        cl->st = CL_DROPPED;
        g->st.dropped++;
        atomic_fetch_add_explicit(&g->app->dropped, 1, memory_order_relaxed);
        note_failure(g, cl);
    }
}

static void on_state(struct wzpc_client *c, enum wzpc_state state, void *user_data)
{
    struct client *cl = user_data;

    if (state == WZPC_JOINED && cl->st == CL_JOINING)
        on_joined(cl->g, cl);
    else if (state == WZPC_CLOSED)
        on_closed(cl->g, cl);
}

/* Until the stop, media mode only adds members (unless the relay dropped one): a RoomUpdate
 * listing fewer members than the one before it arrived out of order. */
static bool no_leaves_yet(struct app *a)
{
    return a->o.storm == 0 && atomic_load_explicit(&a->dropped, memory_order_relaxed) == 0 &&
           atomic_load_explicit(&a->phase, memory_order_acquire) != PHASE_STOP;
}

/* Every join and leave sends each member a RoomUpdate with the whole list; media starts
 * once they have all arrived, so the join-time signal burst stays out of the window. */
static void on_signal(struct wzpc_client *c, const struct wzp_signal *sig, void *user_data)
{
    struct client *cl = user_data;
    struct app *a = cl->g->app;

    if (sig->type != WZP_SIG_ROOM_UPDATE)
        return;
    cl->updates++;
    if (sig->u.room_update.count < cl->last_count && no_leaves_yet(a))
        cl->g->st.updates_backwards++;
    cl->last_count = sig->u.room_update.count;
    if (!cl->full_view && a->o.storm == 0 && cl->last_count >= a->o.shape.participants) {
        cl->full_view = true;
        atomic_fetch_add_explicit(&a->views, 1, memory_order_relaxed);
    }
}

static void on_datagram(struct wzpc_client *c, const uint8_t *data, size_t len, void *user_data);

static void open_client(struct gen *g, struct client *cl)
{
    const struct options *o = &g->app->o;
    char room[256];
    struct wzpc_config cfg = {
        .loop = g->loop,
        .host = o->host,
        .port = o->port,
        .sni = room,
        .auto_join = true,
        .on_state = on_state,
        .on_signal = on_signal,
        .on_datagram = on_datagram,
        .user_data = cl,
        .mux = g->mux,
        .ack_every_packet = o->shape.quinn_acks,
    };

    snprintf(room, sizeof(room), "%s-%u", o->room_prefix, cl->room);
    cl->start_ns = bu_now_ns();
    cl->st = CL_JOINING;
    g->inflight++;
    cl->c = wzpc_connect(&cfg);
    if (cl->c == NULL) {
        cl->st = CL_FAILED;
        g->st.join_failed++;
        if (g->st.first_failure[0] == '\0')
            snprintf(g->st.first_failure, sizeof(g->st.first_failure),
                     "client %u: wzpc_connect failed (out of sockets?)", cl->index);
        settle(g);
    }
}

/* Keep up to max_inflight joins running. */
static void top_up(struct gen *g)
{
    while (g->inflight < g->max_inflight && g->next_open < g->nclients)
        open_client(g, &g->clients[g->next_open++]);
}

static void reap(struct gen *g)
{
    while (g->reap != NULL) {
        struct client *cl = g->reap;

        g->reap = cl->reap_next;
        cl->st = CL_GONE; /* on_state ignores the CLOSED that wzpc_close reports */
        wzpc_close(cl->c, 0, "hangup");
        wzpc_free(cl->c);
        cl->c = NULL;
    }
}

/* ------------------------------------------------------------------ media */

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    put_u32le(p, (uint32_t)v);
    put_u32le(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_u64le(const uint8_t *p)
{
    return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

static bool in_window(const struct gen *g, uint64_t t)
{
    return t >= g->window_start && t < g->window_end;
}

static void send_one(struct gen *g, struct client *cl, uint64_t due)
{
    struct wzp_media_header h = {.codec = WZP_CODEC_OPUS24K};
    uint8_t *p = g->pkt + WZP_MEDIA_HEADER_BYTES;
    uint64_t now = bu_now_ns();

    h.seq = (uint16_t)cl->seq;
    h.timestamp_ms = (uint32_t)((now - g->t0) / 1000000u);
    wzp_media_write_header(&h, g->pkt);
    put_u32le(p, cl->index);
    put_u32le(p + 4, cl->seq);
    put_u64le(p + 8, now);
    cl->seq++;
    if (wzpc_send_datagram(cl->c, g->pkt, WZP_MEDIA_HEADER_BYTES + g->app->o.shape.size) !=
        WZP_OK) {
        g->st.send_refused++;
        return;
    }
    g->st.sent++;
    if (in_window(g, now)) {
        cl->sent_window++;
        g->st.sent_window++;
        bu_hist_add(&g->st.lag, now > due ? now - due : 0);
    }
}

/* The k-th send of this thread is due at t0 + offset + k * period / speakers: speakers
 * take turns, evenly spread over the period, each sending once per period. Returns the
 * seconds until the next send is due (IDLE_TICK_S when sending is over). */
static double send_due(struct gen *g)
{
    uint64_t now = bu_now_ns();

    while (!g->media_done) {
        uint64_t due = g->t0 + g->offset + g->slot * g->period / g->nspeakers;
        struct client *cl;

        if (due >= g->send_end) {
            g->media_done = true;
            break;
        }
        if (due > now)
            return (double)(due - now) / 1e9;
        cl = g->speakers[g->slot % g->nspeakers];
        g->slot++;
        if (cl->st == CL_JOINED)
            send_one(g, cl, due);
    }
    return IDLE_TICK_S;
}

static const struct bu_shape *sort_shape; /* for by_rank (set before the sort) */

static int by_rank(const void *a, const void *b)
{
    const struct client *x = *(struct client *const *)a, *y = *(struct client *const *)b;
    unsigned long rx = bu_speaker_rank(sort_shape, x->index);
    unsigned long ry = bu_speaker_rank(sort_shape, y->index);
    return rx < ry ? -1 : rx > ry;
}

/* First tick of the media phase: drop joins still pending, list receivers and speakers. */
static void media_begin(struct gen *g)
{
    const struct timeline *tl = &g->app->tl;
    unsigned nthreads = g->app->o.shape.threads;

    g->t0 = tl->t0;
    g->window_start = tl->window_start;
    g->window_end = tl->window_end;
    g->send_end = tl->send_end;
    g->period = 1000000000ull / g->app->o.shape.rate;
    sort_shape = &g->app->o.shape;
    for (unsigned i = 0; i < g->nclients; i++) {
        struct client *cl = &g->clients[i];

        if (cl->st == CL_JOINING) {
            cl->st = CL_FAILED;
            g->st.join_failed++;
            g->st.gave_up++;
            reap_later(g, cl);
        } else if (cl->st == CL_JOINED) {
            cl->in_media = true;
            if (cl->speaker)
                g->speakers[g->nspeakers++] = cl;
        }
    }
    qsort(g->speakers, g->nspeakers, sizeof *g->speakers, by_rank); /* --phases */
    g->media_done = g->nspeakers == 0;
    if (g->nspeakers > 0)
        g->offset = g->period * g->id / ((uint64_t)nthreads * g->nspeakers);
    g->media_started = true;
}

static void on_datagram(struct wzpc_client *c, const uint8_t *data, size_t len, void *user_data)
{
    struct client *cl = user_data;
    struct gen *g = cl->g;
    const struct options *o = &g->app->o;
    const uint8_t *p = data + WZP_MEDIA_HEADER_BYTES;
    /* Arrival = when the kernel received the packet, so the time it then waits for this
     * (busy) generator loop is not charged to the relay. */
    uint64_t stamped = wzpc_rx_time_ns(c), now = stamped ? stamped : bu_now_ns(), sent;
    uint32_t from;

    g->st.received++;
    if (len < WZP_MEDIA_HEADER_BYTES + PAYLOAD_MIN) {
        g->st.malformed++;
        return;
    }
    from = get_u32le(p);
    sent = get_u64le(p + 8);
    if (from >= g->app->total || from / o->shape.participants != cl->room || from == cl->index) {
        g->st.misrouted++;
        return;
    }
    if (!g->media_started) {
        g->st.early++;
        return;
    }
    if (in_window(g, sent)) {
        g->st.delivered++;
        g->st.kernel_stamped += stamped != 0;
        bu_hist_add(&g->st.latency, now > sent ? now - sent : 0);
    }
}

/* ------------------------------------------------------------------ generator thread */

static void close_all(struct gen *g)
{
    for (unsigned i = 0; i < g->nclients; i++)
        if (g->clients[i].c != NULL)
            reap_later(g, &g->clients[i]);
    reap(g);
}

/* One timer per loop: polls the phase and sends media. It fires when the next packet is
 * due (at most every TICK_S: libev's epoll backend sleeps in whole milliseconds), so a
 * light scenario costs few wake-ups. */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct gen *g = w->data;
    int phase = atomic_load_explicit(&g->app->phase, memory_order_acquire);
    double next = IDLE_TICK_S;

    if (phase == PHASE_STOP) {
        close_all(g);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (phase == PHASE_MEDIA) {
        if (!g->media_started)
            media_begin(g);
        next = send_due(g);
    }
    ev_timer_set(w, next > TICK_S ? next : TICK_S, 0.);
    ev_timer_start(loop, w);
}

/* After every loop iteration: free closed clients, open more while joining. */
static void check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    struct gen *g = w->data;

    if (g->reap != NULL)
        reap(g);
    if (!g->media_started)
        top_up(g);
}

static void *gen_main(void *arg)
{
    struct gen *g = arg;

    ev_timer_init(&g->tick, tick_cb, TICK_S, 0.);
    g->tick.data = g;
    ev_check_init(&g->check, check_cb);
    g->check.data = g;
    ev_timer_start(g->loop, &g->tick);
    ev_check_start(g->loop, &g->check);
    top_up(g);
    ev_run(g->loop, 0);
    ev_timer_stop(g->loop, &g->tick);
    ev_check_stop(g->loop, &g->check);
    return NULL;
}

/* Client i goes to thread i % threads. */
static bool gen_setup(struct app *a, struct gen *g, unsigned id)
{
    const struct options *o = &a->o;
    unsigned n = a->total / o->shape.threads + (id < a->total % o->shape.threads ? 1 : 0);

    g->app = a;
    g->id = id;
    g->loop = ev_loop_new(EVBACKEND_EPOLL);
    g->clients = calloc(n ? n : 1, sizeof(*g->clients));
    g->speakers = calloc(n ? n : 1, sizeof(*g->speakers));
    if (g->loop == NULL || g->clients == NULL || g->speakers == NULL)
        return false;
    if (o->sockets > 0) {
        g->mux = wzpc_mux_new(g->loop, o->host, o->port, o->sockets);
        if (g->mux == NULL)
            return false;
    }
    g->nclients = n;
    g->max_inflight = (o->concurrency + o->shape.threads - 1) / o->shape.threads;
    for (unsigned k = 0; k < n; k++) {
        struct client *cl = &g->clients[k];

        cl->g = g;
        cl->index = id + k * o->shape.threads;
        if (o->storm > 0) {
            cl->room = cl->index % o->shape.rooms;
        } else {
            cl->room = cl->index / o->shape.participants;
            cl->speaker = cl->index % o->shape.participants < o->shape.speakers;
        }
    }
    return true;
}

static void gen_teardown(struct gen *g)
{
    for (unsigned i = 0; g->clients != NULL && i < g->nclients; i++)
        wzpc_free(g->clients[i].c);
    wzpc_mux_free(g->mux); /* after its clients */
    free(g->clients);
    free(g->speakers);
    if (g->loop != NULL)
        ev_loop_destroy(g->loop);
}

/* ------------------------------------------------------------------ controller */

/* What the main thread measured around the window (or the storm). */
struct measure {
    uint64_t run_start, joins_done, views_done, begin, end;
    double gen_cpu_begin, gen_cpu_end;
    struct bu_sys_cpu sys_begin, sys_end;
    struct bu_proc_sample relay_idle, relay_joined, relay_begin, relay_end;
};

static void mark_edge(struct app *a, uint64_t *when, double *gen_cpu, struct bu_sys_cpu *sys,
                      struct bu_proc_sample *relay)
{
    *when = bu_now_ns();
    *gen_cpu = bu_self_cpu_s();
    *sys = bu_sys_cpu();
    *relay = bu_proc_sample(a->o.relay_pid);
    if (a->o.relay_stats)
        kill(a->o.relay_pid, SIGUSR1);
}

static bool wait_joins(struct app *a, uint64_t deadline)
{
    while (atomic_load_explicit(&a->settled, memory_order_relaxed) < a->total) {
        if (interrupted || bu_now_ns() >= deadline)
            return false;
        bu_sleep_until(bu_now_ns() + 2000000u, &interrupted);
    }
    return true;
}

/* Wait until every joined client saw a full room, or until that count stops moving for
 * VIEW_QUIET_NS (rooms with failed joins never fill). */
static void wait_views(struct app *a, uint64_t deadline)
{
    unsigned last = UINT32_MAX;
    uint64_t moved = bu_now_ns();

    for (;;) {
        unsigned v = atomic_load_explicit(&a->views, memory_order_relaxed);
        uint64_t now = bu_now_ns();

        if (v >= atomic_load_explicit(&a->joined, memory_order_relaxed) || interrupted ||
            now >= deadline || now - moved > VIEW_QUIET_NS)
            return;
        if (v != last) {
            last = v;
            moved = now;
        }
        bu_sleep_until(now + 2000000u, &interrupted);
    }
}

static void run_media(struct app *a, struct measure *m)
{
    struct timeline *tl = &a->tl;
    uint64_t deadline = m->run_start + (uint64_t)(a->o.join_timeout * 1e9);

    if (!wait_joins(a, deadline) && !interrupted)
        fprintf(stderr, "wzp-loadgen: joins still pending after %.0f s; going on without them\n",
                a->o.join_timeout);
    m->joins_done = bu_now_ns();
    wait_views(a, deadline);
    m->views_done = bu_now_ns();
    m->relay_joined = bu_proc_sample(a->o.relay_pid);
    if (interrupted)
        return;
    tl->t0 = bu_now_ns() + START_DELAY_NS;
    tl->window_start = tl->t0 + (uint64_t)(a->o.shape.warmup * 1e9);
    tl->window_end = tl->window_start + (uint64_t)(a->o.shape.duration * 1e9);
    tl->send_end = tl->window_end + (uint64_t)(a->o.shape.drain * 1e9);
    atomic_store_explicit(&a->phase, PHASE_MEDIA, memory_order_release);
    if (!bu_sleep_until(tl->window_start, &interrupted))
        return;
    mark_edge(a, &m->begin, &m->gen_cpu_begin, &m->sys_begin, &m->relay_begin);
    if (!bu_sleep_until(tl->window_end, &interrupted))
        return;
    mark_edge(a, &m->end, &m->gen_cpu_end, &m->sys_end, &m->relay_end);
    bu_sleep_until(tl->send_end + STOP_TAIL_NS, &interrupted);
}

static void run_storm(struct app *a, struct measure *m)
{
    uint64_t deadline = m->run_start + (uint64_t)(a->o.join_timeout * 1e9);

    mark_edge(a, &m->begin, &m->gen_cpu_begin, &m->sys_begin, &m->relay_begin);
    if (!wait_joins(a, deadline) && !interrupted)
        fprintf(stderr, "wzp-loadgen: storm not finished after %.0f s\n", a->o.join_timeout);
    mark_edge(a, &m->end, &m->gen_cpu_end, &m->sys_end, &m->relay_end);
    m->joins_done = m->views_done = m->end;
    m->relay_joined = m->relay_end;
}

static bool start_threads(struct app *a)
{
    for (unsigned i = 0; i < a->o.shape.threads; i++) {
        if (!gen_setup(a, &a->gens[i], i)) {
            fprintf(stderr, "wzp-loadgen: cannot set up generator thread %u\n", i);
            return false;
        }
    }
    for (unsigned i = 0; i < a->o.shape.threads; i++) {
        if (pthread_create(&a->gens[i].thread, NULL, gen_main, &a->gens[i]) != 0) {
            fprintf(stderr, "wzp-loadgen: cannot start thread %u\n", i);
            return false;
        }
        a->started++;
    }
    return true;
}

static void stop_threads(struct app *a)
{
    atomic_store_explicit(&a->phase, PHASE_STOP, memory_order_release);
    for (unsigned i = 0; i < a->started; i++)
        pthread_join(a->gens[i].thread, NULL);
}

/* ------------------------------------------------------------------ results */

struct result {
    struct gen_stats st; /* summed over threads */
    uint64_t expected;
    unsigned rooms_full; /* rooms in which every participant joined */
    char first_failure[200];
};

static void add_stats(struct gen_stats *d, const struct gen_stats *s)
{
    d->joined += s->joined;
    d->join_failed += s->join_failed;
    d->dropped += s->dropped;
    d->gave_up += s->gave_up;
    d->sent += s->sent;
    d->sent_window += s->sent_window;
    d->send_refused += s->send_refused;
    d->received += s->received;
    d->delivered += s->delivered;
    d->early += s->early;
    d->misrouted += s->misrouted;
    d->malformed += s->malformed;
    d->kernel_stamped += s->kernel_stamped;
    d->updates_backwards += s->updates_backwards;
    bu_hist_merge(&d->latency, &s->latency);
    bu_hist_merge(&d->join, &s->join);
    bu_hist_merge(&d->lag, &s->lag);
}

/* expected = per speaker: packets sent in the window x (receivers joined in its room). */
static bool compute_expected(struct app *a, struct result *r)
{
    unsigned *joined = calloc(a->o.shape.rooms, sizeof(*joined));

    if (joined == NULL)
        return false;
    for (unsigned t = 0; t < a->o.shape.threads; t++)
        for (unsigned i = 0; i < a->gens[t].nclients; i++)
            if (a->gens[t].clients[i].in_media)
                joined[a->gens[t].clients[i].room]++;
    for (unsigned t = 0; t < a->o.shape.threads; t++) {
        for (unsigned i = 0; i < a->gens[t].nclients; i++) {
            const struct client *cl = &a->gens[t].clients[i];

            if (cl->in_media && cl->speaker)
                r->expected += cl->sent_window * (joined[cl->room] - 1);
        }
    }
    for (unsigned i = 0; i < a->o.shape.rooms; i++)
        r->rooms_full += joined[i] == a->o.shape.participants;
    free(joined);
    return true;
}

static bool collect(struct app *a, struct result *r)
{
    memset(r, 0, sizeof(*r));
    for (unsigned t = 0; t < a->o.shape.threads; t++) {
        add_stats(&r->st, &a->gens[t].st);
        if (r->first_failure[0] == '\0')
            memcpy(r->first_failure, a->gens[t].st.first_failure, sizeof(r->first_failure));
    }
    return a->o.storm > 0 || compute_expected(a, r);
}

static double secs(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e9 : 0;
}

static double ratio(double num, double den)
{
    return den > 0 ? num / den : 0;
}

static void json_relay(FILE *out, pid_t pid, const struct measure *m, double window_s)
{
    double cpu = m->relay_end.cpu_s - m->relay_begin.cpu_s;

    if (!m->relay_begin.ok || !m->relay_end.ok) {
        fprintf(out, "  \"relay\": null,\n");
        return;
    }
    fprintf(out,
            "  \"relay\": {\"pid\": %d, \"cpu_s\": %.3f, \"sched_cpu_s\": %.4f, "
            "\"cpu_util\": %.3f,\n            \"join_phase_cpu_s\": %.3f, \"rss_idle_kb\": %lu, "
            "\"rss_joined_kb\": %lu, \"rss_end_kb\": %lu},\n",
            (int)pid, cpu, m->relay_end.sched_s - m->relay_begin.sched_s, ratio(cpu, window_s),
            m->relay_joined.sched_s - m->relay_idle.sched_s, m->relay_idle.rss_kb,
            m->relay_joined.rss_kb, m->relay_end.rss_kb);
}

/* A JSON string body: quotes, backslashes and control characters escaped. */
static void json_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, out);
    }
}

static void json_common(FILE *out, const struct app *a, const struct result *r,
                        const struct measure *m)
{
    const struct options *o = &a->o;

    fprintf(
        out,
        "  \"rooms\": %u, \"participants\": %u, \"speakers\": %u, \"rate\": %u, "
        "\"size\": %u,\n  \"threads\": %u, \"sockets\": %u, \"acks\": \"%s\", \"phases\": \"%s\", "
        "\"concurrency\": %u, "
        "\"clients\": %u,\n"
        "  \"joined\": %llu, \"join_failures\": %llu, \"join_wall_s\": %.3f,\n"
        "  \"full_room_views\": %u, \"views_wall_s\": %.3f,\n"
        "  \"first_failure\": \"",
        o->shape.rooms, o->shape.participants, o->shape.speakers, o->shape.rate, o->shape.size,
        o->shape.threads, o->sockets, o->shape.quinn_acks ? "quinn" : "batch",
        o->shape.spread ? "spread" : "grouped", o->concurrency, a->total,
        (unsigned long long)r->st.joined, (unsigned long long)r->st.join_failed,
        secs(m->run_start, m->joins_done), atomic_load(&a->views),
        secs(m->joins_done, m->views_done));
    json_escaped(out, r->first_failure);
    fprintf(out, "\",\n  \"join_ms\": ");
    bu_hist_json_ms(out, &r->st.join);
    fprintf(out, ",\n");
}

/* Joined clients that never saw their full room: [{index, updates, last_count}, ...]. */
static void json_partial_views(FILE *out, const struct app *a)
{
    unsigned n = 0;

    fprintf(out, "  \"partial_views\": [");
    for (unsigned t = 0; t < a->o.shape.threads; t++) {
        for (unsigned i = 0; i < a->gens[t].nclients && n < 10; i++) {
            const struct client *cl = &a->gens[t].clients[i];

            if (!cl->in_media || cl->full_view)
                continue;
            fprintf(out, "%s{\"index\": %u, \"updates\": %u, \"last_count\": %u}", n++ ? ", " : "",
                    cl->index, cl->updates, cl->last_count);
        }
    }
    fprintf(out, "],\n");
}

static void print_json_media(FILE *out, const struct app *a, const struct result *r,
                             const struct measure *m)
{
    const struct gen_stats *s = &r->st;
    double win = secs(m->begin, m->end);
    double gen_cpu = m->gen_cpu_end - m->gen_cpu_begin;

    fprintf(out, "{\n  \"mode\": \"media\",\n");
    json_common(out, a, r, m);
    json_partial_views(out, a);
    fprintf(out, "  \"room_updates_backwards\": %llu,\n",
            (unsigned long long)r->st.updates_backwards);
    fprintf(out, "  \"latency_kernel_stamped\": %llu,\n", (unsigned long long)r->st.kernel_stamped);
    fprintf(out,
            "  \"duration_s\": %.3f, \"warmup_s\": %.3f, \"drain_s\": %.3f, \"window_s\": %.3f,\n"
            "  \"dropped_clients\": %llu, \"sent\": %llu, \"sent_window\": %llu, "
            "\"send_refused\": %llu,\n  \"expected\": %llu, \"delivered\": %llu, "
            "\"delivery_ratio\": %.6f,\n  \"received\": %llu, \"misrouted\": %llu, "
            "\"malformed\": %llu, \"early\": %llu,\n"
            "  \"delivered_per_s\": %.1f, \"gen_cpu_s\": %.3f, \"gen_cpu_util\": %.3f,\n"
            "  \"latency_ms\": ",
            a->o.shape.duration, a->o.shape.warmup, a->o.shape.drain, win,
            (unsigned long long)s->dropped, (unsigned long long)s->sent,
            (unsigned long long)s->sent_window, (unsigned long long)s->send_refused,
            (unsigned long long)r->expected, (unsigned long long)s->delivered,
            ratio((double)s->delivered, (double)r->expected), (unsigned long long)s->received,
            (unsigned long long)s->misrouted, (unsigned long long)s->malformed,
            (unsigned long long)s->early, ratio((double)s->delivered, a->o.shape.duration), gen_cpu,
            ratio(gen_cpu, win));
    bu_hist_json_ms(out, &s->latency);
    fprintf(out, ",\n  \"send_lag_ms\": ");
    bu_hist_json_ms(out, &s->lag);
    fprintf(out, ",\n");
    json_relay(out, a->o.relay_pid, m, win);
    fprintf(out, "  \"machine\": ");
    bu_sys_cpu_json(out, m->sys_begin, m->sys_end);
    fprintf(out, ",\n  \"complete\": %s\n}\n", interrupted ? "false" : "true");
}

static void print_json_storm(FILE *out, const struct app *a, const struct result *r,
                             const struct measure *m)
{
    double wall = secs(m->begin, m->end);
    double gen_cpu = m->gen_cpu_end - m->gen_cpu_begin;

    fprintf(out, "{\n  \"mode\": \"storm\",\n");
    json_common(out, a, r, m);
    fprintf(out, "  \"storm_wall_s\": %.3f, \"joins_per_s\": %.1f, \"gen_cpu_s\": %.3f,\n", wall,
            ratio((double)r->st.joined, wall), gen_cpu);
    json_relay(out, a->o.relay_pid, m, wall);
    fprintf(out, "  \"machine\": ");
    bu_sys_cpu_json(out, m->sys_begin, m->sys_end);
    fprintf(out, ",\n  \"complete\": %s\n}\n", interrupted ? "false" : "true");
}

/* Relay CPU seconds between the edges: the scheduler's ns count if there is one. */
static double relay_cpu(const struct measure *m)
{
    double sched = m->relay_end.sched_s - m->relay_begin.sched_s;

    return sched > 0 ? sched : m->relay_end.cpu_s - m->relay_begin.cpu_s;
}

static void print_relay_text(FILE *out, const struct measure *m, double span_s, uint64_t per,
                             const char *unit)
{
    double cpu = relay_cpu(m);

    if (!m->relay_begin.ok || !m->relay_end.ok)
        return;
    fprintf(out, "relay: %.2f CPU s (%.0f %% of one core), RSS %lu kB idle, %lu kB at end", cpu,
            100 * ratio(cpu, span_s), m->relay_idle.rss_kb, m->relay_end.rss_kb);
    if (per > 0)
        fprintf(out, ", %.2f CPU us per %s", 1e6 * cpu / (double)per, unit);
    fprintf(out, "\n");
}

static void print_text(FILE *out, const struct app *a, const struct result *r,
                       const struct measure *m)
{
    const struct gen_stats *s = &r->st;
    double win = secs(m->begin, m->end);

    fprintf(out, "clients %u: joined %llu, failed %llu in %.2f s\n", a->total,
            (unsigned long long)s->joined, (unsigned long long)s->join_failed,
            secs(m->run_start, m->joins_done));
    if (r->first_failure[0] != '\0')
        fprintf(out, "first failure: %s\n", r->first_failure);
    bu_hist_print_ms(out, "join time:", &s->join);
    if (a->o.storm > 0) {
        fprintf(out, "storm: %.1f joins/s over %.2f s, generator %.2f CPU s\n",
                ratio((double)s->joined, win), win, m->gen_cpu_end - m->gen_cpu_begin);
        print_relay_text(out, m, win, s->joined, "join");
        return;
    }
    fprintf(out,
            "media: sent %llu (window %llu, refused %llu), expected %llu, delivered %llu "
            "(%.4f), %.0f/s\n",
            (unsigned long long)s->sent, (unsigned long long)s->sent_window,
            (unsigned long long)s->send_refused, (unsigned long long)r->expected,
            (unsigned long long)s->delivered, ratio((double)s->delivered, (double)r->expected),
            ratio((double)s->delivered, a->o.shape.duration));
    fprintf(out, "received %llu, misrouted %llu, malformed %llu, dropped clients %llu\n",
            (unsigned long long)s->received, (unsigned long long)s->misrouted,
            (unsigned long long)s->malformed, (unsigned long long)s->dropped);
    bu_hist_print_ms(out, "latency:", &s->latency);
    bu_hist_print_ms(out, "send lag:", &s->lag);
    fprintf(out, "generator: %.2f CPU s in the window\n", m->gen_cpu_end - m->gen_cpu_begin);
    print_relay_text(out, m, win, s->delivered, "delivered datagram");
}

/* ------------------------------------------------------------------ main */

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int report(struct app *a, struct measure *m)
{
    struct result *r = calloc(1, sizeof(*r));
    FILE *text = a->o.json ? stderr : stdout;
    int rc;

    if (r == NULL || !collect(a, r)) {
        free(r);
        return 1;
    }
    print_text(text, a, r, m);
    if (a->o.json) {
        if (a->o.storm > 0)
            print_json_storm(stdout, a, r, m);
        else
            print_json_media(stdout, a, r, m);
    }
    fflush(stdout);
    rc = (r->st.joined == 0 || interrupted) ? 1 : 0;
    free(r);
    return rc;
}

int main(int argc, char **argv)
{
    static struct app a;
    struct measure m = {0};
    int rc = parse_args(argc, argv, &a.o);
    bool ok;

    if (rc >= 0)
        return rc;
    wzp_log_threshold = a.o.verbose >= 2 ? WZP_LOG_DEBUG
                        : a.o.verbose    ? WZP_LOG_WARN
                                         : WZP_LOG_ERROR;
    a.total = a.o.storm > 0 ? a.o.storm : a.o.shape.rooms * a.o.shape.participants;
    bu_raise_nofile();
    install_signals();
    m.relay_idle = bu_proc_sample(a.o.relay_pid);
    m.run_start = bu_now_ns();
    ok = start_threads(&a);
    if (ok && a.o.storm > 0)
        run_storm(&a, &m);
    else if (ok)
        run_media(&a, &m);
    stop_threads(&a);
    rc = ok ? report(&a, &m) : 1;
    for (unsigned i = 0; i < a.o.shape.threads; i++)
        gen_teardown(&a.gens[i]);
    return rc;
}
