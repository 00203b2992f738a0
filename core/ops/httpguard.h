/*
 * httpguard.h - keeps the HTTP server (admin.c) answering when some of its clients
 * misbehave. libmicrohttpd bounds connections in total and per address, and closes a
 * connection idle for its timeout, but a client that trickles one header line every few
 * seconds is never idle: enough of them hold every slot for as long as they like.
 *
 * The guard records each connection (its socket, its peer and when its current request
 * began) and a sweeper thread shuts down the socket of every connection whose request
 * head has not arrived within the head deadline. The server's own thread then sees the
 * socket end and frees the connection as usual: the guard never closes or frees anything
 * itself, and only ever touches sockets that the server has not yet closed (the server
 * tells the guard before it closes one, under the guard's lock).
 *
 * Thread-safe: every call takes the guard's mutex. The sweeper wakes every 250 ms.
 */
#ifndef WZP_HTTPGUARD_H
#define WZP_HTTPGUARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WZP_HTTPGUARD_MAX 256 /* connections tracked at once (= the server's total cap) */

struct wzp_httpguard_conn {
    int fd; /* -1: slot free */
    bool head_done;
    bool shut;
    uint64_t since_ns; /* connection opened, or its previous response completed */
    char peer[64];
};

struct wzp_httpguard {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stopping;
    uint64_t head_deadline_ns;
    struct wzp_httpguard_conn conns[WZP_HTTPGUARD_MAX];
    _Atomic uint64_t closed_slow;  /* connections shut for a late request head */
    uint64_t logged_ns, logged_at; /* rate limit of the warning: when, and closed_slow then */
};

void wzp_httpguard_init(struct wzp_httpguard *g, unsigned head_deadline_ms);
/* Start the sweeper thread. WZP_ENOMEM if it cannot. */
int wzp_httpguard_start(struct wzp_httpguard *g);
/* Stop and join the sweeper (before the server's sockets go away). */
void wzp_httpguard_stop(struct wzp_httpguard *g);

/* A new connection on socket fd from peer: its slot, or -1 when every slot is taken
 * (the caller should then refuse it; it never is with the server's cap at the max). */
int wzp_httpguard_open(struct wzp_httpguard *g, int fd, const char *peer, uint64_t now_ns);
/* The request head of the connection in slot arrived. */
void wzp_httpguard_head_done(struct wzp_httpguard *g, int slot);
/* A response completed: the next request's head is due within the deadline again. */
void wzp_httpguard_request_done(struct wzp_httpguard *g, int slot, uint64_t now_ns);
/* The server is about to close the socket of slot: forget it. */
void wzp_httpguard_close(struct wzp_httpguard *g, int slot);

/* Shut down every connection past its deadline at now_ns; returns how many (the sweeper
 * calls this; exposed for tests). */
unsigned wzp_httpguard_sweep(struct wzp_httpguard *g, uint64_t now_ns);

#endif
