/*
 * test_churn.c - clients come and go in every way a client can end, cycle after cycle;
 * afterwards everything the relay held for them is back at zero: connections,
 * handshakes, sessions, rooms, CID table entries, handles and buffered signal bytes, all
 * read from /metrics. Under ASan this is also the use-after-free and leak check of every
 * close path, and in builds with WZP_INVARIANTS the relay checks the same at run time.
 */
#include "harness.h"

#include "common.h"
#include "signal_codec.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static struct ev_loop *loop;
static struct relay_proc relay;
static unsigned http_port;

static void stop_relay(void)
{
    relay_finish(&relay);
}

TestSuite(churn, .fini = stop_relay, .timeout = 180);

/* How a client ends. */
enum ending {
    HANGUP_JOINED,    /* joins, sends media, closes */
    HANGUP_CONNECTED, /* handshake only (session reserved), closes */
    JOIN_TIMEOUT,     /* handshake only, never sends CallOffer: the relay closes it */
    VANISH_JOINED,    /* joins, then disappears without a word (kill -9) */
    PARTIAL_SIGNAL,   /* half a signal frame buffered on the relay, then closes or vanishes */
    VANISH_CONNECTED, /* handshake only, then disappears */
    VANISH_HANDSHAKE, /* first flight only, then disappears */
    REFUSED_SNI,      /* a reserved name the TLS layer refuses */
    NENDINGS
};

#define CYCLES     5
#define PER_CYCLE  56 /* 7 of each ending */
#define IDLE_MS    1500
#define JOIN_MS    500
#define SETTLE_MAX 15000

struct churner {
    struct tc t;
    enum ending how;
    bool gone; /* freed on our side */
};

static void start(void)
{
    static char port[16], idle[16], join[16];
    http_port = tcp_free_port();
    snprintf(port, sizeof port, "%u", http_port);
    snprintf(idle, sizeof idle, "%u", IDLE_MS);
    snprintf(join, sizeof join, "%u", JOIN_MS);
    /* Every client comes from 127.0.0.1: the per-address limits would turn this test
     * about endings into one about admission (test_flood covers those). */
    const char *const args[] = {"--metrics-port",
                                port,
                                "--threads",
                                "2",
                                "--idle-timeout",
                                idle,
                                "--join-timeout",
                                join,
                                "--max-handshakes-per-addr",
                                "0",
                                "--max-connections-per-addr",
                                "0",
                                "--log-level",
                                "info",
                                NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
}

static void churner_connect(struct churner *ch, enum ending how, unsigned cycle, uint8_t id)
{
    struct wzpc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    static const char *rooms[] = {"churn-a", "churn-b", "churn-c"};
    cfg.sni = how == REFUSED_SNI ? "_probe" : rooms[(cycle + id) % 3];
    cfg.auto_join = how == HANGUP_JOINED || how == VANISH_JOINED;
    cfg.idle_timeout_ms = 5000;
    ch->how = how;
    ch->gone = false;
    tc_connect(&ch->t, loop, &relay, NULL, id, &cfg);
}

struct all_ready {
    struct churner *chs;
    size_t n;
};

/* Every client reached what its ending needs (or closed). */
static bool all_ready(void *arg)
{
    struct all_ready *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        if (a->chs[i].gone)
            continue;
        enum wzpc_state s = wzpc_state(a->chs[i].t.c);
        bool join = a->chs[i].how == HANGUP_JOINED || a->chs[i].how == VANISH_JOINED;
        if (s == WZPC_CLOSED)
            continue;
        if (join ? s != WZPC_JOINED : s < WZPC_CONNECTED)
            return false;
    }
    return true;
}

static void send_partial_signal(struct tc *t)
{
    /* a frame announcing 60000 bytes of JSON, of which 20000 arrive */
    static uint8_t part[4 + 20000];
    memset(part, ' ', sizeof part);
    wzp_put_u32be(part, 60000);
    cr_assert_eq(wzpc_send_stream_raw(t->c, part, sizeof part, false), WZP_OK);
}

static void run_cycle(unsigned cycle)
{
    static struct churner chs[PER_CYCLE];
    for (size_t i = 0; i < PER_CYCLE; i++)
        churner_connect(&chs[i], (enum ending)(i % NENDINGS), cycle, (uint8_t)(i % 16));
    /* A client that vanishes mid-handshake leaves after its first flight. */
    wzpc_run_for(loop, 5);
    for (size_t i = 0; i < PER_CYCLE; i++)
        if (chs[i].how == VANISH_HANDSHAKE) {
            tc_free(&chs[i].t);
            chs[i].gone = true;
        }
    struct all_ready ready = {chs, PER_CYCLE};
    cr_assert(wzpc_run_until(loop, all_ready, &ready, 10000), "cycle %u: clients connected", cycle);
    for (size_t i = 0; i < PER_CYCLE; i++) {
        struct churner *ch = &chs[i];
        if (ch->gone)
            continue;
        switch (ch->how) {
        case HANGUP_JOINED:
            cr_assert_eq(wzpc_state(ch->t.c), WZPC_JOINED, "cycle %u client %zu joined", cycle, i);
            tc_send_media(&ch->t, NULL);
            tc_send_media(&ch->t, NULL);
            wzpc_close(ch->t.c, 0, "hangup");
            break;
        case HANGUP_CONNECTED:
            wzpc_close(ch->t.c, 0, "bye");
            break;
        case VANISH_JOINED:
        case VANISH_CONNECTED:
            tc_free(&ch->t);
            ch->gone = true;
            break;
        case PARTIAL_SIGNAL:
            send_partial_signal(&ch->t);
            break;
        default:
            break;
        }
    }
    wzpc_run_for(loop, 100);
    for (size_t i = 0; i < PER_CYCLE; i++) {
        struct churner *ch = &chs[i];
        if (ch->how != PARTIAL_SIGNAL || ch->gone)
            continue;
        if (cycle % 2) {
            tc_free(&ch->t); /* its 20000 bytes stay buffered until the idle timeout */
            ch->gone = true;
        } else {
            wzpc_close(ch->t.c, 0, "bye");
        }
    }
    /* Long enough for the relay's join timeout to close the silent ones. */
    wzpc_run_for(loop, JOIN_MS + 300);
    for (size_t i = 0; i < PER_CYCLE; i++)
        if (!chs[i].gone)
            tc_free(&chs[i].t);
}

struct settled {
    char scrape[256 * 1024];
    const char *why; /* the first series not yet at zero */
};

static const char *const gauges[] = {
    "wzp_relay_connections",       "wzp_relay_handshakes_in_progress",
    "wzp_relay_active_sessions",   "wzp_relay_active_rooms",
    "wzp_relay_worker_conns",      "wzp_relay_worker_cid_entries",
    "wzp_relay_worker_slots_used", "wzp_relay_worker_signal_bytes",
    "wzp_relay_affinity_rooms",
};

static bool everything_released(void *arg)
{
    struct settled *s = arg;
    if (http_request(http_port, "GET", "/metrics", NULL, s->scrape, sizeof s->scrape) != 200) {
        s->why = "/metrics";
        return false;
    }
    for (size_t i = 0; i < WZP_ARRAY_LEN(gauges); i++) {
        double v = scrape_sum(s->scrape, gauges[i]);
        cr_assert(!isnan(v), "%s is in /metrics", gauges[i]);
        if (v != 0) {
            s->why = gauges[i];
            return false;
        }
    }
    s->why = NULL;
    return true;
}

static bool sees_two(void *arg)
{
    return ((struct tc *)arg)->last_update_count == 2;
}

Test(churn, every_ending_releases_everything)
{
    start();
    static struct settled s;
    for (unsigned cycle = 0; cycle < CYCLES; cycle++)
        run_cycle(cycle);
    /* The middle of the churn holds resources: the check below is not trivially true. */
    cr_assert(!everything_released(&s), "connections are still open right after the churn");
    bool done = wzpc_run_until(loop, everything_released, &s, SETTLE_MAX);
    if (!done)
        fprintf(stderr, "%s\n", s.scrape);
    cr_assert(done, "%s is back at 0 within %u ms of the last client", s.why ? s.why : "?",
              SETTLE_MAX);
    cr_assert_eq(scrape_value(s.scrape, "wzp_relay_refusals_total{reason=\"max_sessions\"}"), 0,
                 "no join was refused for want of sessions");
    /* Each vanished joiner was removed by the idle timeout, not kept. */
    cr_assert_geq(scrape_sum(s.scrape, "wzp_relay_joins_total"), CYCLES * PER_CYCLE / NENDINGS * 2);
    cr_assert_eq(scrape_sum(s.scrape, "wzp_relay_joins_total"),
                 scrape_sum(s.scrape, "wzp_relay_leaves_total"));
    /* And the relay still serves: a new pair joins and hears each other. */
    struct tc a, b;
    tc_connect(&a, loop, &relay, "after-churn", 1, NULL);
    tc_connect(&b, loop, &relay, "after-churn", 2, NULL);
    cr_assert(tc_wait_state(&a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(&b, loop, WZPC_JOINED, 5000));
    cr_assert(wzpc_run_until(loop, sees_two, &a, 3000), "a RoomUpdate with both");
    tc_send_media(&a, NULL);
    wzpc_run_for(loop, 200);
    cr_assert_eq(b.from[1], 1);
    tc_free(&a);
    tc_free(&b);
}
