/*
 * wzp-client - join a WarzonePhone room on a relay and exchange synthetic media.
 *
 *   wzp-client [options] HOST[:PORT] ROOM
 *
 * Connects with SNI = ROOM, sends AuthToken (with --token) and a signed CallOffer,
 * verifies the CallAnswer, then sends synthetic Opus24k media datagrams at --rate per
 * second for --duration seconds. Prints every RoomUpdate and QualityDirective, and a
 * summary at the end. Exits 0 if it joined the room (with --sni-only: if the QUIC
 * handshake completed), 1 otherwise, 2 on a usage error.
 */
#include "wzpc.h"

#include "common.h"
#include "log.h"
#include "media.h"
#include "signal_codec.h"

#include <ctype.h>
#include <getopt.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PORT   4433
#define JOIN_TIMEOUT_S 10.0
#define MAX_PAYLOAD                                                                                \
    (WZP_MEDIA_MAX_DATAGRAM_BYTES - WZP_MEDIA_HEADER_BYTES - WZP_QUALITY_REPORT_BYTES)
#define REPORT_PERIOD_NS 1000000000ull
#define MIN_TICK_S       0.002 /* media timer period floor */
#define MAX_BURST        64    /* packets per media tick */

struct options {
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    const char *room;
    const char *alias;
    uint8_t seed[32];
    bool have_seed;
    unsigned rate;
    unsigned size;
    double duration;
    int report_loss_pct; /* -1 = no quality report */
    int report_rtt_ms;   /* -1 = no quality report */
    const char *token;
    bool sni_only;
    int verbose;
};

struct app {
    struct options o;
    struct ev_loop *loop;
    struct wzpc_client *c;
    ev_timer media_timer, end_timer, join_timer;
    ev_signal sigint, sigterm;
    bool connected, joined;
    uint64_t start_ns, connect_ns, last_report_ns;
    uint64_t media_start_ns, media_count;
    uint16_t seq;
    uint64_t rx_malformed;
    uint64_t room_updates, directives;
    uint8_t packet[WZP_MEDIA_MAX_DATAGRAM_BYTES];
};

/* ------------------------------------------------------------------ usage */

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options] HOST[:PORT] ROOM\n"
            "\n"
            "Join ROOM on the WarzonePhone relay at HOST (default port %d), send synthetic\n"
            "media and print what the relay sends back. HOST is an IPv4/IPv6 address or a\n"
            "name; write IPv6 with a port as [::1]:4433.\n"
            "\n"
            "options:\n"
            "  --alias NAME        alias sent in the CallOffer (default: none)\n"
            "  --seed HEX64        32-byte identity seed as 64 hex digits (default: random)\n"
            "  --rate N            media packets per second, 0 = send none (default 50)\n"
            "  --size BYTES        media payload bytes per packet, 0..%d (default 100)\n"
            "  --duration SEC      seconds to stay after joining, 0 = until Ctrl-C (default 10);\n"
            "                      with --sni-only: seconds to wait for the relay to close\n"
            "  --report-loss PCT   attach a QualityReport trailer once per second with this\n"
            "                      loss (0..100 %%, sent as PCT*255/100)\n"
            "  --report-rtt MS     ... and this RTT (0..1020 ms, sent as MS/4); either option\n"
            "                      enables the report, the other field is then 0\n"
            "  --token TOKEN       send AuthToken{TOKEN} before the CallOffer\n"
            "  --sni-only          only connect with SNI = ROOM (e.g. \"ping\", \"version\"): no\n"
            "                      CallOffer, no media; prints any uni-stream reply and how the\n"
            "                      connection closed\n"
            "  -v, --verbose       more output (-vv: also ngtcp2 internals)\n"
            "  -h, --help          show this help\n"
            "\n"
            "Exit status: 0 if the client joined the room (--sni-only: if the QUIC handshake\n"
            "completed), 1 if it did not, 2 on a usage error.\n",
            prog, DEFAULT_PORT, MAX_PAYLOAD);
}

/* ------------------------------------------------------------------ parsing */

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    return wzp_parse_uint(s, 0, max, out);
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !(v >= 0 && v < 1e7))
        return false;
    *out = v;
    return true;
}

/* Resolve a name or literal into an address literal for the client library. */
static bool resolve_host(const char *name, char *out, size_t outlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *res;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    const void *addr;

    if (rc != 0) {
        fprintf(stderr, "cannot resolve %s: %s\n", name, gai_strerror(rc));
        return false;
    }
    if (res->ai_family == AF_INET)
        addr = &((struct sockaddr_in *)res->ai_addr)->sin_addr;
    else
        addr = &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    rc = inet_ntop(res->ai_family, addr, out, (socklen_t)outlen) != NULL;
    freeaddrinfo(res);
    return rc;
}

/* HOST, HOST:PORT, [V6], [V6]:PORT or a bare IPv6 address. */
static bool parse_target(const char *arg, struct options *o)
{
    char host[256];
    const char *port = NULL;
    unsigned long p = DEFAULT_PORT;
    const char *colon = strrchr(arg, ':');
    size_t hostlen;

    if (arg[0] == '[') {
        const char *rb = strchr(arg, ']');
        if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
            return false;
        hostlen = (size_t)(rb - arg - 1);
        arg++;
        port = rb[1] == ':' ? rb + 2 : NULL;
    } else if (colon != NULL && strchr(arg, ':') == colon) {
        hostlen = (size_t)(colon - arg);
        port = colon + 1;
    } else {
        hostlen = strlen(arg); /* no port, or a bare IPv6 address */
    }
    if (hostlen == 0 || hostlen >= sizeof(host))
        return false;
    memcpy(host, arg, hostlen);
    host[hostlen] = '\0';
    if (port != NULL && (!parse_uint(port, 65535, &p) || p == 0))
        return false;
    o->port = (uint16_t)p;
    return resolve_host(host, o->host, sizeof(o->host));
}

enum {
    OPT_ALIAS = 256,
    OPT_SEED,
    OPT_RATE,
    OPT_SIZE,
    OPT_DURATION,
    OPT_REPORT_LOSS,
    OPT_REPORT_RTT,
    OPT_TOKEN,
    OPT_SNI_ONLY,
};

static const struct option long_options[] = {
    {"alias", required_argument, NULL, OPT_ALIAS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"rate", required_argument, NULL, OPT_RATE},
    {"size", required_argument, NULL, OPT_SIZE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"report-loss", required_argument, NULL, OPT_REPORT_LOSS},
    {"report-rtt", required_argument, NULL, OPT_REPORT_RTT},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"sni-only", no_argument, NULL, OPT_SNI_ONLY},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One option; false (after a message) when its argument is invalid. */
static bool apply_option(struct options *o, int opt, const char *arg)
{
    unsigned long v;

    switch (opt) {
    case OPT_ALIAS:
        o->alias = arg;
        return true;
    case OPT_SEED:
        o->have_seed = wzp_hex_decode(arg, strlen(arg), o->seed, sizeof(o->seed)) == WZP_OK;
        if (!o->have_seed)
            fprintf(stderr, "--seed needs exactly 64 hex digits\n");
        return o->have_seed;
    case OPT_RATE:
        if (!parse_uint(arg, 10000, &v))
            break;
        o->rate = (unsigned)v;
        return true;
    case OPT_SIZE:
        if (!parse_uint(arg, MAX_PAYLOAD, &v))
            break;
        o->size = (unsigned)v;
        return true;
    case OPT_DURATION:
        if (!parse_seconds(arg, &o->duration))
            break;
        return true;
    case OPT_REPORT_LOSS:
        if (!parse_uint(arg, 100, &v))
            break;
        o->report_loss_pct = (int)v;
        return true;
    case OPT_REPORT_RTT:
        if (!parse_uint(arg, 1020, &v))
            break;
        o->report_rtt_ms = (int)v;
        return true;
    case OPT_TOKEN:
        o->token = arg;
        return true;
    case OPT_SNI_ONLY:
        o->sni_only = true;
        return true;
    case 'v':
        o->verbose++;
        return true;
    default:
        return false;
    }
    fprintf(stderr, "invalid value for an option: %s\n", arg);
    return false;
}

/* Returns -1 to go on, or the exit status to return now. */
static int parse_args(int argc, char **argv, struct options *o)
{
    int opt;

    memset(o, 0, sizeof(*o));
    o->rate = 50;
    o->size = 100;
    o->duration = 10;
    o->report_loss_pct = -1;
    o->report_rtt_ms = -1;
    while ((opt = getopt_long(argc, argv, "vh", long_options, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout, argv[0]);
            return 0;
        }
        if (!apply_option(o, opt, optarg)) {
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr, argv[0]);
        return 2;
    }
    if (!parse_target(argv[optind], o)) {
        fprintf(stderr, "bad HOST[:PORT]: %s\n", argv[optind]);
        return 2;
    }
    o->room = argv[optind + 1];
    return -1;
}

/* ------------------------------------------------------------------ media */

static bool want_report(struct app *a, uint64_t now)
{
    if (a->o.report_loss_pct < 0 && a->o.report_rtt_ms < 0)
        return false;
    if (a->last_report_ns != 0 && now - a->last_report_ns < REPORT_PERIOD_NS)
        return false;
    a->last_report_ns = now;
    return true;
}

static size_t build_packet(struct app *a, uint64_t now)
{
    struct wzp_media_header h = {.codec = WZP_CODEC_OPUS24K};
    size_t len = WZP_MEDIA_HEADER_BYTES + a->o.size;

    h.seq = a->seq++;
    h.timestamp_ms = (uint32_t)((now - a->start_ns) / 1000000u);
    h.has_quality = want_report(a, now);
    wzp_media_write_header(&h, a->packet);
    memset(a->packet + WZP_MEDIA_HEADER_BYTES, (int)(h.seq & 0xff), a->o.size);
    if (h.has_quality) {
        struct wzp_quality_report r = {.bitrate_cap_kbps = 200};
        int loss = a->o.report_loss_pct > 0 ? a->o.report_loss_pct : 0;
        int rtt = a->o.report_rtt_ms > 0 ? a->o.report_rtt_ms : 0;

        r.loss_pct = (uint8_t)(loss * 255 / 100);
        r.rtt_4ms = (uint8_t)WZP_MIN(rtt / 4, 255);
        wzp_media_write_report(&r, a->packet + len);
        len += WZP_QUALITY_REPORT_BYTES;
    }
    return len;
}

/* Send every packet due since joining: libev timers cannot tick faster than ~1 kHz. */
static void media_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct app *a = w->data;
    uint64_t now = wzp_now_ns();
    uint64_t due = (now - a->media_start_ns) / 1000u * a->o.rate / 1000000u + 1;

    for (unsigned n = 0; a->media_count < due && n < MAX_BURST; n++, a->media_count++) {
        size_t len = build_packet(a, now);

        (void)wzpc_send_datagram(a->c, a->packet, len); /* refusals are in the stats */
    }
    a->media_count = due; /* a stalled loop skips packets instead of bursting them */
}

/* ------------------------------------------------------------------ printing */

static void print_room_update(const struct wzp_signal *sig)
{
    const struct wzp_participants *p = &sig->u.room_update.participants;

    printf("RoomUpdate: count=%u\n", sig->u.room_update.count);
    for (size_t i = 0; i < p->count; i++)
        printf("  %zu. %s alias=%s%s%s\n", i + 1, p->items[i].fingerprint,
               p->items[i].alias ? p->items[i].alias : "(none)",
               p->items[i].relay_label ? " relay=" : "",
               p->items[i].relay_label ? p->items[i].relay_label : "");
}

static void print_directive(const struct wzp_signal *sig)
{
    const struct wzp_quality_profile *q = &sig->u.quality_directive.recommended_profile;
    const char *codec = wzp_codec_name(q->codec);

    printf("QualityDirective: codec=%s fec_ratio=%.2f frame=%ums frames_per_block=%u "
           "reason=%s\n",
           codec ? codec : "?", (double)q->fec_ratio, q->frame_duration_ms, q->frames_per_block,
           sig->u.quality_directive.reason ? sig->u.quality_directive.reason : "(none)");
}

static void print_printable(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        putchar(isprint(data[i]) ? data[i] : '.');
}

static void print_close_info(const struct app *a)
{
    bool by_peer = false, is_app = false;
    uint64_t code = 0;
    char reason[256];

    if (!wzpc_close_info(a->c, &by_peer, &is_app, &code, reason, sizeof(reason))) {
        printf("closed: no CONNECTION_CLOSE (idle/handshake timeout or dropped)\n");
        return;
    }
    printf("closed by %s: %s code 0x%llx reason \"%s\"\n", by_peer ? "relay" : "us",
           is_app ? "application" : "transport", (unsigned long long)code, reason);
}

static void print_summary(const struct app *a)
{
    const struct wzpc_stats *s = wzpc_stats(a->c);

    printf("--- summary ---\n");
    if (a->o.sni_only)
        printf("handshake: %s\n", a->connected ? "completed" : "not completed");
    else
        printf("joined: %s (fingerprint %s)\n", a->joined ? "yes" : "no", wzpc_fingerprint(a->c));
    printf("datagrams: sent %llu, dropped locally %llu, received %llu (malformed %llu)\n",
           (unsigned long long)s->datagrams_sent, (unsigned long long)(s->datagrams_send_dropped),
           (unsigned long long)s->datagrams_received, (unsigned long long)a->rx_malformed);
    printf("signals: sent %llu, received %llu, unparsable %llu\n",
           (unsigned long long)s->signals_sent, (unsigned long long)s->signals_received,
           (unsigned long long)s->signals_unparsable);
    printf("room updates: %llu, quality directives: %llu\n", (unsigned long long)a->room_updates,
           (unsigned long long)a->directives);
    print_close_info(a);
}

/* ------------------------------------------------------------------ client callbacks */

static void start_timer(struct app *a, ev_timer *t, double after, double repeat)
{
    ev_timer_set(t, after, repeat);
    ev_timer_start(a->loop, t);
}

static void on_joined(struct app *a)
{
    a->joined = true;
    ev_timer_stop(a->loop, &a->join_timer);
    printf("joined room \"%s\" as %s\n", a->o.room, wzpc_fingerprint(a->c));
    a->media_start_ns = wzp_now_ns();
    if (a->o.rate > 0)
        start_timer(a, &a->media_timer, 0., WZP_MAX(1.0 / a->o.rate, MIN_TICK_S));
    if (a->o.duration > 0)
        start_timer(a, &a->end_timer, a->o.duration, 0.);
}

static void on_state(struct wzpc_client *c, enum wzpc_state state, void *user_data)
{
    struct app *a = user_data;

    switch (state) {
    case WZPC_CONNECTED:
        a->connected = true;
        a->connect_ns = wzp_now_ns();
        printf("connected to %s port %u (SNI \"%s\") in %.1f ms\n", a->o.host, a->o.port, a->o.room,
               (double)(a->connect_ns - a->start_ns) / 1e6);
        break;
    case WZPC_JOINED:
        on_joined(a);
        break;
    case WZPC_CLOSED:
        ev_break(a->loop, EVBREAK_ALL);
        break;
    default:
        break;
    }
    fflush(stdout);
}

static void on_signal(struct wzpc_client *c, const struct wzp_signal *sig, void *user_data)
{
    struct app *a = user_data;

    if (sig->type == WZP_SIG_ROOM_UPDATE) {
        a->room_updates++;
        print_room_update(sig);
    } else if (sig->type == WZP_SIG_QUALITY_DIRECTIVE) {
        a->directives++;
        print_directive(sig);
    } else if (a->o.verbose > 0) {
        printf("signal: %s\n", wzp_signal_type_name(sig->type));
    }
    fflush(stdout);
}

static void on_datagram(struct wzpc_client *c, const uint8_t *data, size_t len, void *user_data)
{
    struct app *a = user_data;
    struct wzp_media_header h;

    if (wzp_media_parse(data, len, &h, NULL) != WZP_MEDIA_OK)
        a->rx_malformed++;
}

static void on_uni_stream(struct wzpc_client *c, const uint8_t *data, size_t len, void *user_data)
{
    printf("uni stream (%zu bytes): ", len);
    print_printable(data, len);
    putchar('\n');
    fflush(stdout);
}

/* ------------------------------------------------------------------ main loop */

static void end_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct app *a = w->data;

    wzpc_close(a->c, 0, "hangup");
}

static void join_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct app *a = w->data;

    fprintf(stderr, "not joined within %.0f s (%s)\n", JOIN_TIMEOUT_S,
            a->connected ? "no valid CallAnswer" : "QUIC handshake not complete");
    wzpc_close(a->c, 0, "hangup");
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *a = w->data;

    wzpc_close(a->c, 0, "shutdown");
}

static void init_watchers(struct app *a)
{
    ev_timer_init(&a->media_timer, media_cb, 0., 0.);
    ev_timer_init(&a->end_timer, end_cb, 0., 0.);
    ev_timer_init(&a->join_timer, join_timeout_cb, 0., 0.);
    ev_signal_init(&a->sigint, signal_cb, SIGINT);
    ev_signal_init(&a->sigterm, signal_cb, SIGTERM);
    a->media_timer.data = a->end_timer.data = a->join_timer.data = a;
    a->sigint.data = a->sigterm.data = a;
    ev_signal_start(a->loop, &a->sigint);
    ev_signal_start(a->loop, &a->sigterm);
    if (a->o.sni_only && a->o.duration > 0)
        start_timer(a, &a->end_timer, a->o.duration, 0.);
    else if (!a->o.sni_only)
        start_timer(a, &a->join_timer, JOIN_TIMEOUT_S, 0.);
}

static void stop_watchers(struct app *a)
{
    ev_timer_stop(a->loop, &a->media_timer);
    ev_timer_stop(a->loop, &a->end_timer);
    ev_timer_stop(a->loop, &a->join_timer);
    ev_signal_stop(a->loop, &a->sigint);
    ev_signal_stop(a->loop, &a->sigterm);
}

static struct wzpc_client *connect_client(struct app *a)
{
    struct wzpc_config cfg = {
        .loop = a->loop,
        .host = a->o.host,
        .port = a->o.port,
        .sni = a->o.room,
        .seed = a->o.have_seed ? a->o.seed : NULL,
        .alias = a->o.alias,
        .auth_token = a->o.token,
        .auto_join = !a->o.sni_only,
        .on_state = on_state,
        .on_signal = on_signal,
        .on_datagram = on_datagram,
        .on_uni_stream = on_uni_stream,
        .user_data = a,
    };

    return wzpc_connect(&cfg);
}

int main(int argc, char **argv)
{
    static const int log_levels[] = {WZP_LOG_WARN, WZP_LOG_DEBUG, WZP_LOG_TRACE}; /* by -v count */
    static struct app a;
    int rc = parse_args(argc, argv, &a.o);

    if (rc >= 0)
        return rc;
    wzp_log_threshold = log_levels[WZP_MIN(a.o.verbose, 2)];
    a.loop = EV_DEFAULT;
    a.start_ns = wzp_now_ns();
    a.c = connect_client(&a);
    if (a.c == NULL) {
        fprintf(stderr, "cannot start the client (see above)\n");
        return 1;
    }
    init_watchers(&a);
    ev_run(a.loop, 0);
    stop_watchers(&a);
    print_summary(&a);
    rc = (a.o.sni_only ? a.connected : a.joined) ? 0 : 1;
    wzpc_free(a.c);
    ev_loop_destroy(a.loop);
    return rc;
}
