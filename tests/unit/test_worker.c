/*
 * test_worker.c - a worker's own bookkeeping, without a thread: the CID table (every key
 * of a connection removed with it, whatever its length), connection handles and the
 * attach/detach of connections, with the gauges /metrics reports.
 */
#include "relay.h"
#include "worker.h"

#include "common.h"
#include "conn.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct wzp_relay relay;
static struct wzp_worker worker, *worker_ptr = &worker;
static struct wzp_worker *w = &worker;

static void setup(void)
{
    memset(&relay, 0, sizeof relay);
    wzp_config_defaults(&relay.cfg);
    cr_assert_eq(wzp_config_set_listen(&relay.cfg, "127.0.0.1:0"), WZP_OK);
    relay.nworkers = 1;
    relay.workers = &worker_ptr;
    cr_assert_eq(wzp_mesh_init(&relay.mesh, 1), WZP_OK);
    char err[256];
    cr_assert_eq(wzp_worker_init(&worker, &relay, 0, err, sizeof err), WZP_OK, "%s", err);
}

static void teardown(void)
{
    while (w->conns) { /* test connections: no ngtcp2 state, detach and free */
        struct wzp_conn *c = w->conns;
        wzp_worker_detach(w, c);
        free(c);
    }
    wzp_worker_free(&worker);
    wzp_mesh_free(&relay.mesh);
}

TestSuite(worker, .init = setup, .fini = teardown);

static struct wzp_conn *new_conn(void)
{
    struct wzp_conn *c = wzp_conn_zalloc();
    cr_assert_not_null(c);
    c->w = w;
    cr_assert_eq(wzp_worker_attach(w, c), WZP_OK);
    return c;
}

static ngtcp2_cid cid_of(const char *bytes)
{
    ngtcp2_cid cid;
    ngtcp2_cid_init(&cid, (const uint8_t *)bytes, strlen(bytes));
    return cid;
}

static long long gauge_cids(void)
{
    return (long long)atomic_load(&w->gauges.cid_entries);
}

Test(worker, cid_keys_of_any_length_are_found_and_removed)
{
    struct wzp_conn *a = new_conn();
    ngtcp2_cid k1 = cid_of("x"), k8 = cid_of("12345678"), k16 = cid_of("0123456789abcdef");
    cr_assert_eq(wzp_worker_cid_add(w, &k1, a), WZP_OK);
    cr_assert_eq(wzp_worker_cid_add(w, &k8, a), WZP_OK);
    cr_assert_eq(wzp_worker_cid_add(w, &k16, a), WZP_OK);
    cr_assert_eq(gauge_cids(), 3);
    cr_assert_eq(wzp_worker_cid_find(w, k1.data, k1.datalen), a);
    cr_assert_eq(wzp_worker_cid_find(w, k16.data, k16.datalen), a);
    cr_assert_null(wzp_worker_cid_find(w, k16.data, 8), "a prefix is another key");
    wzp_worker_cid_remove(w, &k8, a);
    cr_assert_null(wzp_worker_cid_find(w, k8.data, k8.datalen));
    cr_assert_eq(gauge_cids(), 2);
}

Test(worker, empty_and_duplicate_keys_are_refused)
{
    struct wzp_conn *a = new_conn(), *b = new_conn();
    ngtcp2_cid empty = {.datalen = 0};
    cr_assert_eq(wzp_worker_cid_add(w, &empty, a), WZP_EINVAL);
    cr_assert_null(wzp_worker_cid_find(w, empty.data, 0), "an empty DCID finds nothing");
    ngtcp2_cid k = cid_of("shared-key");
    cr_assert_eq(wzp_worker_cid_add(w, &k, a), WZP_OK);
    cr_assert_eq(wzp_worker_cid_add(w, &k, b), WZP_EINVAL, "one key, one connection");
    cr_assert_eq(wzp_worker_cid_find(w, k.data, k.datalen), a);
    /* b cannot remove a's key */
    wzp_worker_cid_remove(w, &k, b);
    cr_assert_eq(wzp_worker_cid_find(w, k.data, k.datalen), a);
    cr_assert_eq(gauge_cids(), 1);
}

/* ngtcp2 keeps at most 8 of our CIDs plus the client's first DCID: a connection asking for
 * more is refused rather than overflowing its own list. */
Test(worker, a_connection_holds_at_most_its_share_of_keys)
{
    struct wzp_conn *a = new_conn();
    char key[16];
    for (int i = 0; i < WZP_CONN_CIDS; i++) {
        snprintf(key, sizeof key, "key-%02d", i);
        ngtcp2_cid k = cid_of(key);
        cr_assert_eq(wzp_worker_cid_add(w, &k, a), WZP_OK);
    }
    ngtcp2_cid extra = cid_of("one-too-many");
    cr_assert_eq(wzp_worker_cid_add(w, &extra, a), WZP_EINVAL);
    cr_assert_null(wzp_worker_cid_find(w, extra.data, extra.datalen));
    ngtcp2_cid first = cid_of("key-00");
    wzp_worker_cid_remove(w, &first, a); /* a slot freed is usable again */
    cr_assert_eq(wzp_worker_cid_add(w, &extra, a), WZP_OK);
    cr_assert_eq(gauge_cids(), WZP_CONN_CIDS);
    wzp_worker_detach(w, a);
    free(a);
    cr_assert_eq(gauge_cids(), 0);
    cr_assert_null(wzp_worker_cid_find(w, extra.data, extra.datalen));
}

Test(worker, detach_removes_every_key_of_the_connection)
{
    struct wzp_conn *a = new_conn(), *b = new_conn();
    const char *keys[] = {"abcd", "a", "0123456789abcdef", "0123456789abcdef0123"};
    for (size_t i = 0; i < WZP_ARRAY_LEN(keys); i++) {
        ngtcp2_cid k = cid_of(keys[i]);
        cr_assert_eq(wzp_worker_cid_add(w, &k, a), WZP_OK);
    }
    ngtcp2_cid kb = cid_of("bbbbbbbb");
    cr_assert_eq(wzp_worker_cid_add(w, &kb, b), WZP_OK);
    wzp_worker_detach(w, a);
    free(a);
    for (size_t i = 0; i < WZP_ARRAY_LEN(keys); i++)
        cr_assert_null(wzp_worker_cid_find(w, (const uint8_t *)keys[i], strlen(keys[i])),
                       "key %s left behind", keys[i]);
    cr_assert_eq(wzp_worker_cid_find(w, kb.data, kb.datalen), b);
    cr_assert_eq(gauge_cids(), 1);
}

Test(worker, many_connections_grow_the_table_and_leave_nothing)
{
    enum { N = 3000 };
    static struct wzp_conn *cs[N];
    for (unsigned i = 0; i < N; i++) {
        cs[i] = new_conn();
        for (unsigned k = 0; k < 3; k++) {
            uint8_t key[12];
            memset(key, 0, sizeof key);
            memcpy(key, &i, sizeof i);
            key[4] = (uint8_t)k;
            ngtcp2_cid cid;
            ngtcp2_cid_init(&cid, key, 8 + k);
            cr_assert_eq(wzp_worker_cid_add(w, &cid, cs[i]), WZP_OK);
        }
    }
    cr_assert_eq(gauge_cids(), 3 * N);
    cr_assert_geq(wzp_cidtab_capacity(&w->cids), 2 * 3 * N,
                  "the table grew with its entries (%zu slots)", wzp_cidtab_capacity(&w->cids));
    for (unsigned i = 0; i < N; i++) { /* every key is still found after the rehashes */
        uint8_t key[12] = {0};
        memcpy(key, &i, sizeof i);
        key[4] = 1;
        cr_assert_eq(wzp_worker_cid_find(w, key, 9), cs[i]);
    }
    for (unsigned i = 0; i < N; i += 2) { /* every other one, so chains are cut mid-way */
        wzp_worker_detach(w, cs[i]);
        free(cs[i]);
    }
    for (unsigned i = 1; i < N; i += 2) {
        uint8_t key[12] = {0};
        memcpy(key, &i, sizeof i);
        key[4] = 2;
        cr_assert_eq(wzp_worker_cid_find(w, key, 10), cs[i]);
        wzp_worker_detach(w, cs[i]);
        free(cs[i]);
    }
    cr_assert_eq(gauge_cids(), 0);
    cr_assert_eq(atomic_load(&w->gauges.conns), 0);
    cr_assert_eq(atomic_load(&w->gauges.slots_used), 0);
}

Test(worker, handles_of_detached_connections_find_nothing)
{
    struct wzp_conn *a = new_conn(), *b = new_conn();
    uint32_t a_slot = a->slot, a_gen = a->gen;
    cr_assert_neq(a_gen, 0, "generation 0 means no handle");
    cr_assert_eq(wzp_worker_slot_get(w, a_slot, a_gen), a);
    cr_assert_eq(wzp_worker_slot_get(w, b->slot, b->gen), b);
    cr_assert_eq(atomic_load(&w->gauges.conns), 2);
    wzp_worker_mark_dirty(w, a);
    wzp_worker_mark_dirty(w, b);
    wzp_worker_detach(w, a);
    free(a);
    cr_assert_null(wzp_worker_slot_get(w, a_slot, a_gen));
    cr_assert_eq(w->dirty, b, "a left the dirty list");
    cr_assert_null(b->dirty_next);
    cr_assert_eq(w->conns, b);
    /* The slot is reused with a new generation: the old handle still finds nothing. */
    struct wzp_conn *c = new_conn();
    cr_assert_eq(c->slot, a_slot);
    cr_assert_neq(c->gen, a_gen);
    cr_assert_null(wzp_worker_slot_get(w, a_slot, a_gen));
    cr_assert_eq(wzp_worker_slot_get(w, c->slot, c->gen), c);
    cr_assert_null(wzp_worker_slot_get(w, 1u << 30, 1), "out of range");
    cr_assert_eq(atomic_load(&w->gauges.slots_used), 2);
}

/* The connections' clock: read by the worker at its batch boundaries, cached in between
 * (no system call per packet), and never going back. */
Test(worker, its_clock_is_cached_between_reads_and_never_goes_back)
{
    uint64_t a = wzp_worker_now(w);
    cr_assert_gt(a, 0, "read when the worker was set up");
    struct timespec pause = {0, 2000000};
    nanosleep(&pause, NULL);
    cr_assert_eq(wzp_worker_now(w), a, "no read in between");
    uint64_t b = wzp_worker_clock(w);
    cr_assert_geq(b, a + 2000000);
    cr_assert_eq(wzp_worker_now(w), b);
    /* A reading ahead of the system clock (CLOCK_MONOTONIC never gives one) is kept. */
    w->clock_ns = b + 60000000000ull;
    cr_assert_eq(wzp_worker_clock(w), b + 60000000000ull);
    cr_assert_eq(wzp_worker_now(w), b + 60000000000ull);
}
