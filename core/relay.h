/*
 * relay.h - building and running the relay: identity, TLS, workers and policy are set up
 * here, on the state every worker shares (relay_state.h).
 * main() calls these from its own thread: init, start, stop and free around the
 * workers' life, reload_policy and log_stats while they run.
 */
#ifndef WZP_RELAY_H
#define WZP_RELAY_H

#include "relay_state.h"

/* Fill defaults (listen 0.0.0.0:4433, identity ~/.wzp/relay-identity, ...). */
void wzp_config_defaults(struct wzp_config *cfg);

/* Parse "host:port", "[v6]:port" or ":port" into cfg->listen_addr. WZP_EINVAL if bad. */
int wzp_config_set_listen(struct wzp_config *cfg, const char *text);
/* --advertise: "IP:PORT", "[IPv6]:PORT", or an IP alone (the listen port is added when the
 * relay starts). WZP_EINVAL for anything else (host names included: clients need an
 * address). */
int wzp_config_set_advertise(struct wzp_config *cfg, const char *text);

/* Load identity, set up TLS, bind every worker socket. err gets a message on failure. */
int wzp_relay_init(struct wzp_relay *r, const struct wzp_config *cfg, char *err, size_t errlen);
/* Start the worker threads. */
int wzp_relay_start(struct wzp_relay *r);
/*
 * Close every connection (application code 0, reason "shutdown"), stop the workers and
 * join them. Waits at most timeout_ms; returns WZP_OK if every worker stopped in time.
 */
int wzp_relay_stop(struct wzp_relay *r, unsigned timeout_ms);
void wzp_relay_free(struct wzp_relay *r);

/*
 * Load the configured policy aside (one state per worker); if every state loads and
 * passes its self-check, hand them to the workers, which switch at their next loop
 * iteration. On failure the running policy stays, the error is logged with file:line
 * and counted. Called from the main thread (start-up and SIGHUP).
 */
int wzp_relay_reload_policy(struct wzp_relay *r);
/* Make the shadow policy the live one (main thread; shadow.h): the live file becomes the
 * shadow's, every worker switches at a loop boundary, no shadow after. WZP_ESTATE without
 * a shadow; WZP_EINVAL (live policy unchanged) if the file no longer loads. */
int wzp_relay_promote_shadow(struct wzp_relay *r);

/* Log one line with the counters summed over workers. */
void wzp_relay_log_stats(struct wzp_relay *r);

#endif
