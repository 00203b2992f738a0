/*
 * harness.h - run the real wzp-relay binary on loopback for integration tests.
 *
 * Each relay gets a fresh temp directory (identity seed, log file) and a free UDP port.
 * Every wait is bounded: start-up, shutdown and log polling all take a timeout.
 */
#ifndef WZP_TEST_HARNESS_H
#define WZP_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct relay_proc {
    pid_t pid;
    int exit_status;   /* after relay_stop */
    bool exit_checked; /* the test checked the exit status itself */
    uint16_t port;
    unsigned http_port; /* --metrics-port: the test's own, or one the harness picked */
    char dir[256];
    char log_path[300];
};

/* Create /tmp/wzp-NAME-XXXXXX (the name written to dir) for the test's files; it is removed
 * with its contents when the test process exits. Fails the test on error. */
void scratch_dir(char *dir, size_t size, const char *name);

/* Start the relay with extra arguments (NULL-terminated list, may be NULL). Fails the test
 * on error. Waits until the relay logs that it is listening. Unless the arguments give
 * --metrics-port, the relay serves /metrics on a free port (r->http_port) for
 * relay_counter. */
void relay_start(struct relay_proc *r, const char *const *extra_args);

/* Same, with the identity file created first with the given content. */
void relay_start_with_identity(struct relay_proc *r, const char *identity_content,
                               const char *const *extra_args);

/* Run the relay with the given arguments (after --listen and -i) expecting it to exit on
 * its own within timeout_ms; returns its exit status and leaves its output in r->log_path.
 * If identity_content is not NULL, the identity file is created with it first. */
int relay_run_to_exit(struct relay_proc *r, const char *identity_content,
                      const char *const *extra_args, unsigned timeout_ms);

/* SIGTERM, wait up to timeout_ms. Returns the exit status, or -1 if it had to be killed. */
int relay_stop(struct relay_proc *r, unsigned timeout_ms);

/* Test teardown: stop the relay if it runs and fail the test (with its log) unless it
 * exited 0 within 3 s and logged no sanitizer report. */
void relay_finish(struct relay_proc *r);

/* The same, then destroy the test's client loop (if any) and clear it. */
struct ev_loop;
void relay_finish_with_loop(struct relay_proc *r, struct ev_loop **loop);

/* One counter of core/base/stats.h by its field name (e.g. "conns_accepted"), summed over
 * workers, read from /metrics: the series stats.h exports it as. */
uint64_t relay_counter(struct relay_proc *r, const char *name);

/* The same counter from the SIGUSR1 stats line in the log (to test that line itself). */
uint64_t relay_log_counter(struct relay_proc *r, const char *name);

/* True if the log contains needle, polling up to timeout_ms. */
bool relay_log_wait(struct relay_proc *r, const char *needle, unsigned timeout_ms);

/* Count of lines in the log that contain needle. */
unsigned relay_log_count(struct relay_proc *r, const char *needle);

/* Dump the relay's log to stderr (on failure, to see why). */
void relay_dump_log(struct relay_proc *r);

/* ---- the HTTP endpoint (--metrics-port) ---- */

/* A free TCP port on loopback (for --metrics-port). */
unsigned tcp_free_port(void);

/* One HTTP/1.0 request to 127.0.0.1:port (bearer token if not NULL); returns the status
 * and copies the body into body. Fails the test if there is no answer within 3 s. */
int http_request(unsigned port, const char *method, const char *path, const char *token, char *body,
                 size_t bodylen);

/* In a /metrics scrape: the value of one series ("name" or "name{labels}"), NAN if absent;
 * the sum of every series of a metric name (all label sets), NAN if it has none. */
double scrape_value(const char *scrape, const char *series);
double scrape_sum(const char *scrape, const char *name);

#endif

/* ---- test clients: a wzpc client that records what it receives ---- */

#include "wzpc.h"

#define TC_MAX_SENDERS 16
#define TC_MAX_EVENTS  64

struct tc {
    struct wzpc_client *c;
    uint8_t id; /* written into every media payload it sends */
    uint16_t seq;
    unsigned room_updates;                 /* RoomUpdate messages received */
    uint32_t update_counts[TC_MAX_EVENTS]; /* their count fields, in order */
    uint32_t last_update_count;            /* count field of the latest one */
    char last_update[TC_MAX_SENDERS][48];  /* fingerprints of the last RoomUpdate */
    unsigned directives;
    char directive_reasons[TC_MAX_EVENTS][48];
    unsigned answers;
    unsigned other_signals;
    unsigned from[TC_MAX_SENDERS]; /* media received, by sender id */
    unsigned media_total;
    unsigned media_malformed; /* payload not in the test format */
    char uni[128];            /* bytes of a uni stream (SNI "version") */
    size_t uni_len;
};

/* Connect a test client to the relay (cfg fields left 0/NULL get defaults: host
 * 127.0.0.1, the relay's port, ALPN wzp, auto_join). */
void tc_connect(struct tc *t, struct ev_loop *loop, struct relay_proc *r, const char *room,
                uint8_t id, struct wzpc_config *overrides);

/* Run until the client reaches state (or CLOSED); false on timeout. */
bool tc_wait_state(struct tc *t, struct ev_loop *loop, enum wzpc_state state, unsigned ms);

/* Run until the client has received n RoomUpdates; false on timeout. */
bool tc_wait_updates(struct tc *t, struct ev_loop *loop, unsigned n, unsigned ms);

/* Send one valid media datagram carrying (id, seq); with_report adds a trailer. */
void tc_send_media(struct tc *t, const struct wzp_quality_report *report);

/* Same, with a payload of payload_bytes (>= 3). */
void tc_send_media_size(struct tc *t, size_t payload_bytes);

void tc_free(struct tc *t);

/* ---- floods: real client Initials from loopback addresses that never answer ---- */

#define FLOOD_PKT_MAX WZPC_INITIAL_MAX

/* The first Initials of n real clients (SNI sni), each with its own connection ID, into
 * pkts[i] / lens[i]. Fails the test if they do not all arrive within 20 s. */
void capture_initials(const char *sni, size_t n, uint8_t (*pkts)[FLOOD_PKT_MAX], size_t *lens);

struct flood_stats {
    uint64_t sent;        /* Initials sent */
    uint64_t send_errors; /* sendto failures */
    uint64_t replies;     /* packets the relay sent back (Retry, Handshake, ...) */
    uint64_t reply_bytes;
};

/*
 * Send pkts round-robin to the relay at rate packets per second for ms milliseconds,
 * each from the next of nsources sockets bound to 127.1.0.1, 127.1.0.2, ... (loopback
 * addresses of their own, like spoofed sources: nothing ever answers the relay, whose
 * replies are only counted). Runs on its own thread until the time is up.
 */
struct flood;
struct flood *flood_start(struct relay_proc *r, uint8_t (*pkts)[FLOOD_PKT_MAX], const size_t *lens,
                          size_t n, unsigned rate, unsigned ms, unsigned nsources);
void flood_join(struct flood *f, struct flood_stats *out);
