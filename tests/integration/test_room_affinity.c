/*
 * test_room_affinity.c - integration: room affinity on two workers. With it, every room is
 * served by one worker (no media crosses between workers) whatever worker the kernel
 * gave each client's first packet, and a client that changes its source port still
 * reaches its connection's worker directly (the kernel steers by connection ID).
 * Without it (--no-room-affinity), rooms are spread and served through the rings.
 */
#include "harness.h"

#include "common.h"

#include <criterion/criterion.h>
#include <stdio.h>

#define ROOMS     8
#define PER_ROOM  3
#define N_CLIENTS (ROOMS * PER_ROOM)
#define PACKETS   20

static struct ev_loop *loop;
static struct relay_proc relay;
static struct tc clients[N_CLIENTS];

static void teardown(void)
{
    for (int i = 0; i < N_CLIENTS; i++)
        if (clients[i].c)
            tc_free(&clients[i]);
    relay_finish(&relay);
    if (loop)
        ev_loop_destroy(loop);
    loop = NULL;
}

TestSuite(affinity, .fini = teardown, .timeout = 90);

static bool all_received(void *arg)
{
    (void)arg;
    for (int i = 0; i < N_CLIENTS; i++)
        if (clients[i].media_total < (PER_ROOM - 1) * PACKETS)
            return false;
    return true;
}

struct room_goal {
    struct tc *t;
    uint32_t members;
};

static bool sees_members(void *arg)
{
    const struct room_goal *g = arg;
    return g->t->last_update_count == g->members;
}

/* Run until t's latest RoomUpdate lists `members` (updates may be coalesced). */
static bool wait_members(struct tc *t, uint32_t members)
{
    struct room_goal g = {t, members};
    return wzpc_run_until(loop, sees_members, &g, 5000);
}

/* ROOMS rooms of PER_ROOM clients joining at once; each sends PACKETS datagrams and must
 * get exactly PACKETS from each other member of its room. */
static void run_rooms(const char *const *args)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    char room[32];
    for (int i = 0; i < N_CLIENTS; i++) {
        snprintf(room, sizeof room, "room-%d", i / PER_ROOM);
        tc_connect(&clients[i], loop, &relay, room, (uint8_t)(1 + i % PER_ROOM), NULL);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        cr_assert(tc_wait_state(&clients[i], loop, WZPC_JOINED, 10000), "client %d joined", i);
    for (int i = 0; i < N_CLIENTS; i++)
        cr_assert(wait_members(&clients[i], PER_ROOM), "client %d: full room", i);
    for (int k = 0; k < PACKETS; k++) {
        for (int i = 0; i < N_CLIENTS; i++)
            tc_send_media(&clients[i], NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_until(loop, all_received, NULL, 5000);
    wzpc_run_for(loop, 200); /* anything extra would show now */
    for (int i = 0; i < N_CLIENTS; i++) {
        int id = 1 + i % PER_ROOM;
        for (int src = 1; src <= PER_ROOM; src++)
            cr_assert_eq(clients[i].from[src], src == id ? 0 : PACKETS, "client %d got %u from %d",
                         i, clients[i].from[src], src);
        cr_assert_eq(clients[i].media_total, (PER_ROOM - 1) * PACKETS, "client %d: nothing else",
                     i);
    }
}

Test(affinity, each_room_is_served_by_one_worker)
{
    static const char *const args[] = {"--threads", "2", NULL};
    run_rooms(args);
    cr_assert(relay_log_count(&relay, "room affinity on") > 0);
    cr_assert_eq(relay_counter(&relay, "fanout_messages_out"), 0,
                 "no media message crossed between workers");
    /* 24 first packets hashed over 2 workers: about half land on the other worker. */
    cr_assert_gt(relay_counter(&relay, "packets_handed_over"), 0);
    cr_assert_eq(relay_counter(&relay, "datagrams_forwarded"),
                 N_CLIENTS * (PER_ROOM - 1) * PACKETS);
}

Test(affinity, without_it_rooms_are_spread_and_served_through_the_rings)
{
    static const char *const args[] = {"--threads", "2", "--no-room-affinity", NULL};
    run_rooms(args);
    cr_assert_eq(relay_counter(&relay, "packets_handed_over"), 0);
    /* Each room of 3 is on one worker with odds 1/4: all 8 with odds 1/65536. */
    cr_assert_gt(relay_counter(&relay, "fanout_messages_out"), 0);
}

Test(affinity, a_new_source_port_is_steered_to_the_owner_by_the_kernel)
{
    static const char *const args[] = {"--threads", "2", NULL};
    loop = ev_loop_new(EVFLAG_AUTO);
    relay_start(&relay, args);
    struct tc *a = &clients[0], *b = &clients[1];
    tc_connect(a, loop, &relay, "moving", 1, NULL);
    tc_connect(b, loop, &relay, "moving", 2, NULL);
    cr_assert(tc_wait_state(a, loop, WZPC_JOINED, 5000));
    cr_assert(tc_wait_state(b, loop, WZPC_JOINED, 5000));
    cr_assert(wait_members(a, 2));
    uint64_t steered = relay_counter(&relay, "packets_steered_in");
    /* Each new port hashes to either worker; 8 moves land on the other one with odds
     * 255/256. The kernel must deliver them to the owner: nothing is steered in user
     * space. */
    for (int move = 0; move < 8; move++) {
        cr_assert_eq(wzpc_rebind(a->c), WZP_OK);
        for (int k = 0; k < 5; k++) {
            tc_send_media(a, NULL);
            wzpc_run_for(loop, 5);
        }
    }
    wzpc_run_for(loop, 300);
    cr_assert_eq(b->from[1], 40, "a -> b across the moves");
    /* The relay answers on a's newest address once it has validated it. */
    unsigned before = a->from[2];
    for (int k = 0; k < 20; k++) {
        tc_send_media(b, NULL);
        wzpc_run_for(loop, 5);
    }
    wzpc_run_for(loop, 300);
    cr_assert_eq(a->from[2] - before, 20, "b -> a after the moves");
    cr_assert_eq(wzpc_state(a->c), WZPC_JOINED);
    cr_assert_eq(relay_counter(&relay, "packets_steered_in"), steered);
}
