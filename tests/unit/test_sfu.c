/*
 * test_sfu.c - room logic without a network: join and leave verdicts, the fan-out targets
 * of one datagram, the order of RoomUpdates each participant is sent, and the room's
 * weakest-link tier with its QualityDirectives.
 *
 * Two workers and their mesh nodes are set up without sockets or threads. Connections are
 * bare struct wzp_conn attached to a worker, in no ngtcp2 state: what the room sends them
 * is read back from their outgoing signal queue (the CallAnswer), their media queue
 * (same-worker media), the owner's control queue (room signals) and the rings (media to
 * the other worker).
 */
#include "sfu.h"

#include "common.h"
#include "fake_relay.h"
#include "conn.h"
#include "handshake.h"
#include "media.h"
#include "relay.h"
#include "worker.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

enum { NWORKERS = 2 };

static struct fake_relay fr;
static struct wzp_relay *const relay = &fr.relay;
static struct wzp_worker *const workers = fr.workers;

static void setup(void)
{
    fake_relay_init(&fr, NWORKERS);
}

struct conn_list {
    struct wzp_conn *c[16];
    unsigned n;
};
static struct conn_list made;

static void teardown(void)
{
    for (unsigned i = 0; i < made.n; i++) {
        struct wzp_conn *c = made.c[i];
        wzp_sfu_leave(c, "test over");
        while (c->out_head) {
            struct wzp_out_stream *s = c->out_head;
            c->out_head = s->next;
            wzp_buf_free(&s->data);
            free(s);
        }
        wzp_dgq_destroy(&c->dgq);
        wzp_worker_detach(c->w, c); /* also off the dirty list */
        free(c);
    }
    made.n = 0;
    fake_relay_free(&fr);
}

TestSuite(sfu, .init = setup, .fini = teardown);

/* A connection on worker w that finished its handshake for room. */
static struct wzp_conn *new_conn(unsigned w, const char *room)
{
    struct wzp_conn *c = wzp_conn_zalloc();
    cr_assert_not_null(c);
    c->w = &workers[w];
    cr_assert_eq(wzp_worker_attach(c->w, c), WZP_OK);
    c->state = WZP_CONN_AWAIT_OFFER;
    c->max_tier = -1;
    snprintf(c->sni, sizeof c->sni, "%s", room);
    snprintf(c->peer, sizeof c->peer, "127.0.0.1:%u", 1000 + made.n);
    wzp_dgq_init(&c->dgq, WZP_CONN_DGQ_BYTES);
    made.c[made.n++] = c;
    return c;
}

static void make_offer(uint8_t who, struct wzp_signal *offer)
{
    uint8_t seed[32] = {who, 1, 2, 3};
    struct wzp_identity id;
    cr_assert_eq(wzp_identity_from_seed(&id, seed), WZP_OK);
    char alias[16];
    snprintf(alias, sizeof alias, "user-%u", who);
    cr_assert_eq(wzp_handshake_make_offer(&id, NULL, alias, offer), WZP_OK);
    wzp_identity_free(&id);
}

/* Join as the connection does: the verdict, then JOINED on success. */
static int join(struct wzp_conn *c, uint8_t who, char *reason, size_t reasonlen)
{
    struct wzp_signal offer;
    make_offer(who, &offer);
    int rv = wzp_sfu_join(c, &offer, reason, reasonlen);
    wzp_signal_clear(&offer);
    if (rv == WZP_OK)
        c->state = WZP_CONN_JOINED;
    return rv;
}

static struct wzp_conn *joined(unsigned w, const char *room, uint8_t who)
{
    struct wzp_conn *c = new_conn(w, room);
    char reason[WZP_SFU_REASON_MAX];
    cr_assert_eq(join(c, who, reason, sizeof reason), WZP_OK, "%s", reason);
    return c;
}

/* Parse one signal frame. */
static void parse_frame(const uint8_t *frame, size_t len, struct wzp_signal *sig)
{
    const uint8_t *body;
    size_t blen;
    cr_assert_eq(wzp_signal_frame_peek(frame, len, &body, &blen), WZP_OK);
    char err[160];
    cr_assert_eq(wzp_signal_parse(body, blen, sig, err, sizeof err), WZP_OK, "%s", err);
}

/* What the room queued for connection c through its worker's control queue, in order:
 * RoomUpdate counts (>= 0) and QualityDirectives (-1 - tier). Other connections'
 * messages are kept for them. */
static struct wzp_ctlmsg *pending[NWORKERS];

static unsigned room_signals(struct wzp_conn *c, int *out, unsigned max)
{
    unsigned w = c->w->idx, n = 0;
    /* take everything new, append to what was kept */
    struct wzp_ctlmsg **tail = &pending[w];
    while (*tail)
        tail = &(*tail)->next;
    *tail = wzp_mesh_take_ctl(c->w->node);
    for (struct wzp_ctlmsg **pp = &pending[w]; *pp;) {
        struct wzp_ctlmsg *m = *pp;
        if (m->slot != c->slot || m->gen != c->gen) {
            pp = &m->next;
            continue;
        }
        struct wzp_signal sig;
        parse_frame(m->data, m->len, &sig);
        cr_assert_lt(n, max);
        if (sig.type == WZP_SIG_ROOM_UPDATE) {
            cr_assert_eq(m->type, WZP_CTL_ROOM_UPDATE);
            out[n++] = (int)sig.u.room_update.count;
        } else {
            cr_assert_eq(sig.type, WZP_SIG_QUALITY_DIRECTIVE);
            /* the reason ends in the tier's name: "room tier: Degraded" */
            const char *why = sig.u.quality_directive.reason;
            cr_assert_not_null(why);
            const char *name = strrchr(why, ' ');
            int tier = wzp_tier_from_name(name ? name + 1 : why);
            cr_assert_geq(tier, 0, "directive reason %s", why);
            out[n++] = -1 - tier;
        }
        wzp_signal_clear(&sig);
        *pp = m->next;
        free(m);
    }
    return n;
}

static void free_pending(void)
{
    for (unsigned w = 0; w < NWORKERS; w++)
        while (pending[w]) {
            struct wzp_ctlmsg *next = pending[w]->next;
            free(pending[w]);
            pending[w] = next;
        }
}

/* A media datagram from c with a 3-byte payload, optionally with a quality report. */
static bool send_media(struct wzp_conn *c, uint16_t seq, const struct wzp_quality_report *rep,
                       struct wzp_quality_report *tier_report)
{
    uint8_t pkt[32];
    struct wzp_media_header h = {.codec = WZP_CODEC_OPUS24K, .seq = seq, .has_quality = rep};
    wzp_media_write_header(&h, pkt);
    size_t len = WZP_MEDIA_HEADER_BYTES;
    pkt[len++] = (uint8_t)seq;
    pkt[len++] = 0;
    pkt[len++] = 0;
    if (rep) {
        wzp_media_write_report(rep, pkt + len);
        len += WZP_QUALITY_REPORT_BYTES;
    }
    struct wzp_quality_report unused;
    return wzp_sfu_on_datagram(c, pkt, len, tier_report ? tier_report : &unused);
}

static unsigned media_queued(struct wzp_conn *c)
{
    unsigned n = 0;
    size_t len;
    while (wzp_dgq_peek(&c->dgq, &len)) {
        wzp_dgq_pop(&c->dgq);
        n++;
    }
    return n;
}

struct ring_targets {
    struct wzp_xtarget t[32];
    unsigned n, msgs;
};

static void take_targets(void *ctx, const void *m, size_t len)
{
    (void)len;
    struct ring_targets *rt = ctx;
    const struct wzp_xdatagram *d = m;
    cr_assert_eq(d->type, WZP_XMSG_DATAGRAM);
    for (uint32_t i = 0; i < d->ntargets; i++)
        rt->t[rt->n++] = d->targets[i];
    rt->msgs++;
}

Test(sfu, join_answers_and_puts_the_connection_in_its_room)
{
    struct wzp_conn *a = joined(0, "red", 1);
    cr_assert_not_null(a->room);
    cr_assert_str_eq(a->room->name, "red");
    cr_assert_eq(a->room->count, 1);
    cr_assert_eq(atomic_load(&workers[0].stats.joins), 1);
    /* The CallAnswer is queued on the connection itself, and it verifies. */
    cr_assert_not_null(a->out_head);
    struct wzp_signal answer;
    parse_frame(a->out_head->data.data, a->out_head->data.len, &answer);
    cr_assert_eq(answer.type, WZP_SIG_CALL_ANSWER);
    cr_assert_eq(wzp_handshake_verify_answer(&answer), WZP_OK);
    wzp_signal_clear(&answer);
    int sigs[8];
    cr_assert_eq(room_signals(a, sigs, 8), 1);
    cr_assert_eq(sigs[0], 1, "a RoomUpdate listing the joiner");
    free_pending();
}

Test(sfu, bad_signature_is_refused_with_a_reason)
{
    struct wzp_conn *c = new_conn(0, "red");
    struct wzp_signal offer;
    make_offer(1, &offer);
    offer.u.call_offer.signature.data[5] ^= 1;
    char reason[WZP_SFU_REASON_MAX];
    cr_assert_eq(wzp_sfu_join(c, &offer, reason, sizeof reason), WZP_EINVAL);
    wzp_signal_clear(&offer);
    cr_assert_str_eq(reason, "bad CallOffer signature");
    cr_assert_null(c->room, "in no room");
    cr_assert_null(c->out_head, "no CallAnswer");
    cr_assert_eq(atomic_load(&workers[0].stats.join_refused_signature), 1);
    cr_assert_eq(wzp_room_table_count(&relay->rooms), 0, "no room was created");
}

Test(sfu, datagram_goes_to_everyone_else_once)
{
    struct wzp_conn *a = joined(0, "red", 1), *b = joined(0, "red", 2), *c = joined(1, "red", 3);
    struct wzp_conn *other = joined(0, "blue", 4);
    send_media(a, 1, NULL, NULL);
    cr_assert_eq(media_queued(a), 0, "not back to the sender");
    cr_assert_eq(media_queued(b), 1, "same worker: straight into its queue");
    cr_assert_eq(media_queued(other), 0, "another room hears nothing");
    struct ring_targets rt = {0};
    wzp_mesh_drain_rings(&relay->mesh.nodes[1], take_targets, &rt);
    cr_assert_eq(rt.msgs, 1, "one message to the other worker");
    cr_assert_eq(rt.n, 1);
    cr_assert_eq(rt.t[0].slot, c->slot);
    cr_assert_eq(rt.t[0].gen, c->gen);
    cr_assert_eq(atomic_load(&workers[0].stats.datagrams_received), 1);
    /* A listener's media goes nowhere, and is counted. */
    wzp_room_wrlock(a->room);
    a->room->parts[wzp_room_find_locked(a->room, b->pid)].flags |= WZP_PART_NO_SEND;
    wzp_room_unlock(a->room);
    send_media(b, 1, NULL, NULL);
    cr_assert_eq(media_queued(a), 0);
    cr_assert_eq(atomic_load(&workers[0].stats.datagrams_not_forwarded), 1);
    /* An invalid header is dropped before the room. */
    uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
    struct wzp_quality_report unused;
    wzp_sfu_on_datagram(a, junk, sizeof junk, &unused);
    cr_assert_eq(media_queued(b), 0);
    cr_assert_eq(atomic_load(&workers[0].stats.datagrams_invalid), 1);
    free_pending();
}

Test(sfu, room_updates_reach_each_participant_in_the_order_the_room_changed)
{
    struct wzp_conn *a = joined(0, "red", 1);
    struct wzp_conn *b = joined(1, "red", 2);
    struct wzp_conn *c = joined(0, "red", 3);
    wzp_sfu_leave(b, "hangup");
    cr_assert_null(b->room);
    cr_assert_eq(b->state, WZP_CONN_JOINED, "leave changes the room, not the connection");
    int sa[8], sb[8], sc[8];
    unsigned na = room_signals(a, sa, 8), nb = room_signals(b, sb, 8), nc = room_signals(c, sc, 8);
    cr_assert_eq(na, 4);
    cr_assert_eq(sa[0], 1);
    cr_assert_eq(sa[1], 2);
    cr_assert_eq(sa[2], 3);
    cr_assert_eq(sa[3], 2, "b left");
    cr_assert_eq(nb, 2, "b hears joins until it leaves");
    cr_assert_eq(sb[0], 2);
    cr_assert_eq(sb[1], 3);
    cr_assert_eq(nc, 2);
    cr_assert_eq(sc[0], 3);
    cr_assert_eq(sc[1], 2);
    cr_assert_eq(atomic_load(&workers[1].stats.leaves), 1);
    free_pending();
}

Test(sfu, weakest_participant_sets_the_room_tier)
{
    struct wzp_conn *a = joined(0, "red", 1), *b = joined(0, "red", 2);
    int sigs[16];
    room_signals(a, sigs, 16);
    room_signals(b, sigs, 16);
    /* b reports 20 % loss: three reports in a row drop it to Catastrophic. */
    struct wzp_quality_report bad = {.loss_pct = 51, .rtt_4ms = 10};
    struct wzp_quality_report changed;
    cr_assert_not(send_media(b, 1, &bad, &changed));
    cr_assert_not(send_media(b, 2, &bad, &changed));
    cr_assert(send_media(b, 3, &bad, &changed), "the third report changes b's tier");
    cr_assert_eq(changed.loss_pct, 51);
    cr_assert_eq(a->room->tier, WZP_TIER_GOOD, "nothing happens inside the datagram path");
    wzp_sfu_tier_changed(b, &changed);
    cr_assert_eq(b->tier, WZP_TIER_CATASTROPHIC);
    cr_assert_eq(a->room->tier, WZP_TIER_CATASTROPHIC, "the weakest link");
    cr_assert_eq(room_signals(a, sigs, 16), 1);
    cr_assert_eq(sigs[0], -1 - WZP_TIER_CATASTROPHIC, "a QualityDirective to everyone");
    cr_assert_eq(room_signals(b, sigs, 16), 1);
    cr_assert_eq(sigs[0], -1 - WZP_TIER_CATASTROPHIC);
    /* b leaves: the room is back at a's tier and says so. */
    wzp_sfu_leave(b, "hangup");
    cr_assert_eq(a->room->tier, WZP_TIER_GOOD);
    unsigned n = room_signals(a, sigs, 16);
    cr_assert_eq(n, 2);
    cr_assert_eq(sigs[0], 1, "RoomUpdate first");
    cr_assert_eq(sigs[1], -1 - WZP_TIER_GOOD, "then the new tier");
    /* A cap from the policy holds the participant below it. */
    a->max_tier = WZP_TIER_DEGRADED;
    struct wzp_quality_report good = {.loss_pct = 0, .rtt_4ms = 10};
    wzp_sfu_tier_changed(a, &good);
    cr_assert_eq(a->tier, WZP_TIER_DEGRADED);
    cr_assert_eq(a->room->tier, WZP_TIER_DEGRADED);
    free_pending();
}

Test(sfu, tier_change_after_leaving_is_ignored)
{
    struct wzp_conn *a = joined(0, "red", 1);
    wzp_sfu_leave(a, "hangup");
    struct wzp_quality_report bad = {.loss_pct = 200};
    wzp_sfu_tier_changed(a, &bad); /* must not touch a room it left */
    cr_assert_null(a->room);
    cr_assert_eq(wzp_room_table_count(&relay->rooms), 0, "the empty room is gone");
    free_pending();
}
