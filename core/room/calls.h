/*
 * calls.h - the direct calls this relay is placing: who calls whom under which call id,
 * the addresses each side gave for hole punching, and where each call is in its life.
 * Data only: parties are named by fingerprint (their `_signal` connection is found in the
 * presence registry when a message is due), so a party that re-registers keeps its calls.
 *
 * Life of a call:
 *   offer   -> RINGING  (until the ring deadline)
 *   accept  -> ACTIVE   (set-up deadline: a party must join the call room or report its
 *                        media path before it, else the call expires)
 *   set up  -> ACTIVE   (no deadline: it lasts until a hang-up or a party goes)
 *   reject, hang-up, a party's presence ending, a deadline -> removed
 * Only the two parties may act on a call, only the callee may answer it, and the call
 * room admits only the two parties of an accepted call.
 *
 * Bounded: at most max calls in all, and at most max_per_party calls (ringing or active)
 * for any one fingerprint. Thread-safe: one mutex (control plane, never per packet).
 */
#ifndef WZP_CALLS_H
#define WZP_CALLS_H

#include "sizes.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_CALL_ID_MAX      64 /* longer call ids are refused */
#define WZP_CALL_ADDR_MAX    64 /* "ip:port" or "[ipv6]:port", as the client wrote it */
#define WZP_CALL_LOCAL_ADDRS 8  /* LAN addresses kept per party */
#define WZP_CALL_ROOM_PREFIX "call-"

enum wzp_call_state {
    WZP_CALL_RINGING = 0,
    WZP_CALL_ACTIVE,
};

/* The addresses one party offered for a direct path. */
struct wzp_call_addrs {
    char reflexive[WZP_CALL_ADDR_MAX + 1]; /* "" = none */
    char local[WZP_CALL_LOCAL_ADDRS][WZP_CALL_ADDR_MAX + 1];
    unsigned nlocal;
};

/* A call, as stored and as copied out. */
struct wzp_call {
    char id[WZP_CALL_ID_MAX + 1];
    char caller[WZP_FINGERPRINT_LEN + 1];
    char callee[WZP_FINGERPRINT_LEN + 1];
    enum wzp_call_state state;
    bool set_up;          /* a party joined the call room or reported its media path */
    uint64_t created_ns;  /* wzp_now_ns() clock, as every time here */
    uint64_t deadline_ns; /* ring or set-up deadline; 0 once set up */
    struct wzp_call_addrs caller_addrs, callee_addrs;
};

struct wzp_call_entry;

struct wzp_calls {
    pthread_mutex_t lock;
    struct wzp_call_entry **buckets;
    size_t nbuckets, count, max;
    unsigned max_per_party;
    size_t ringing; /* calls in RINGING */
};

int wzp_calls_init(struct wzp_calls *t, size_t max, unsigned max_per_party);
void wzp_calls_free(struct wzp_calls *t);

/*
 * A call id this table can hold, and that makes a valid room name: 1..WZP_CALL_ID_MAX
 * letters, digits, '-', '.' or '_'. Ids are compared ignoring case (a TLS server name
 * reaches the relay lower-cased), so "AB" and "ab" are one call.
 */
bool wzp_call_id_valid(const char *id);

/*
 * Store a new ringing call (c: id, caller, callee, caller_addrs, created_ns and the ring
 * deadline in deadline_ns). WZP_OK; WZP_EEXIST the id is in use; WZP_EFULL the table is
 * full; WZP_ESTATE caller or callee is at max_per_party (*busy_party, when not NULL, is
 * then 0 for the caller, 1 for the callee); WZP_EINVAL caller == callee or a bad id.
 */
int wzp_calls_offer(struct wzp_calls *t, const struct wzp_call *c, int *busy_party);

/*
 * The callee answers a ringing call. Reject removes it; accept makes it ACTIVE with the
 * callee's addresses and a set-up deadline. *out (when not NULL) gets the call as it is
 * after the answer. WZP_ENOTFOUND no such call; WZP_EPERM answerer is not its callee;
 * WZP_ESTATE it was answered already.
 */
int wzp_calls_answer(struct wzp_calls *t, const char *id, const char *answerer, bool accept,
                     const struct wzp_call_addrs *callee_addrs, uint64_t setup_deadline_ns,
                     struct wzp_call *out);

/*
 * The other party of call id, for a message from party fp (peer: WZP_FINGERPRINT_LEN + 1
 * bytes). set_up marks an active call set up (a media path report). WZP_ENOTFOUND no such
 * call; WZP_EPERM fp is not one of its parties.
 */
int wzp_calls_peer(struct wzp_calls *t, const char *id, const char *fp, bool set_up, char *peer);

/* Party fp ends call id: removed, *out gets it. WZP_ENOTFOUND, WZP_EPERM as above. */
int wzp_calls_end(struct wzp_calls *t, const char *id, const char *fp, struct wzp_call *out);

/*
 * Remove up to max calls that fp is a party of, copying them to out; returns how many.
 * Call again until it returns less than max to end them all.
 */
size_t wzp_calls_end_party(struct wzp_calls *t, const char *fp, struct wzp_call *out, size_t max);

/* Remove up to max calls whose deadline is at or before now_ns, copying them to out. */
size_t wzp_calls_expire(struct wzp_calls *t, uint64_t now_ns, struct wzp_call *out, size_t max);

/*
 * May fp join the call room of call id? WZP_OK if the call is ACTIVE and fp one of its
 * parties (the call is then set up); WZP_ENOTFOUND no such call; WZP_EPERM fp is not a
 * party; WZP_ESTATE not accepted yet.
 */
int wzp_calls_admit(struct wzp_calls *t, const char *id, const char *fp);

/* The call id of a call room's name ("call-<id>"), or NULL if name is not one. */
const char *wzp_call_room_id(const char *room);

void wzp_calls_counts(struct wzp_calls *t, size_t *ringing, size_t *active);

#endif
