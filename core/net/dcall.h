/*
 * dcall.h - the "_signal" service run on connections: presence registration, Ping,
 * Reflect, and direct 1:1 calls between registered clients (doc/PROTOCOL.md, "Direct
 * calls"). Called by conn.c for "_signal" connections and by the SFU for joins of call
 * rooms; keeps its state in the relay's presence registry and call table (presence.h,
 * calls.h) and reaches other clients' connections through the mesh (one FIFO per
 * worker, so the signals of one call reach a client in the order they were sent).
 *
 * Threads: every function runs on the thread of the worker that owns c (or w).
 */
#ifndef WZP_DCALL_H
#define WZP_DCALL_H

#include "room.h"
#include "signal_codec.h"
#include "worker.h"

#include <stddef.h>
#include <stdint.h>

struct wzp_conn;

/* The first message of a "_signal" connection (RegisterPresence): register it and
 * acknowledge, or refuse and close. */
void wzp_dcall_register(struct wzp_conn *c, const struct wzp_signal *reg);

/* Every later message of a registered "_signal" connection. */
void wzp_dcall_message(struct wzp_conn *c, const struct wzp_signal *sig);

/* The connection is ending: if it still holds its fingerprint's registration, the
 * registration goes and every call of that fingerprint is hung up towards the peer.
 * Safe to call on any connection, any number of times. */
void wzp_dcall_gone(struct wzp_conn *c);

/* Worker 0, about once a second: end calls past their ring or set-up deadline, each
 * party told with Hangup{Timeout}. */
void wzp_dcall_expire(struct wzp_worker *w, uint64_t now_ns);

/*
 * Joins of a call room ("call-<id>"). Before any work on the join: WZP_OK if fp is a
 * party of accepted call <id>, else a reason. Then, under the room's write lock and
 * immediately before adding the participant: the same check again plus "at most the two
 * parties, each once", so two joins racing cannot both get in.
 */
int wzp_dcall_precheck_join(struct wzp_worker *w, const char *room, const char *fp, char *reason,
                            size_t reasonlen);
int wzp_dcall_admit_locked(struct wzp_worker *w, const struct wzp_room *r, const char *fp,
                           char *reason, size_t reasonlen);

#endif
