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
    uint16_t port;
    char dir[256];
    char log_path[300];
};

/* Start the relay with extra arguments (NULL-terminated list, may be NULL). Fails the test
 * on error. Waits until the relay logs that it is listening. */
void relay_start(struct relay_proc *r, const char *const *extra_args);

/* SIGTERM, wait up to timeout_ms. Returns the exit status, or -1 if it had to be killed. */
int relay_stop(struct relay_proc *r, unsigned timeout_ms);

/* Ask the relay to log its counters (SIGUSR1) and return one counter's value. */
uint64_t relay_counter(struct relay_proc *r, const char *name);

/* True if the log contains needle, polling up to timeout_ms. */
bool relay_log_wait(struct relay_proc *r, const char *needle, unsigned timeout_ms);

/* Count of lines in the log that contain needle. */
unsigned relay_log_count(struct relay_proc *r, const char *needle);

/* Dump the relay's log to stderr (on failure, to see why). */
void relay_dump_log(struct relay_proc *r);

#endif
