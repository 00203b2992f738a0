/*
 * admin.h - the HTTP server for metrics, health and administration (--metrics-port).
 *
 *   GET  /metrics          Prometheus text format (upstream's metric names where upstream
 *                          has them, plus ours)
 *   GET  /health           200 "ok" while the process serves (also while draining)
 *   GET  /ready            200 when accepting joins, 503 while draining
 *   GET  /status           a self-contained HTML page drawing /status.json every 2 s
 *   GET  /status.json      JSON: the relay's totals and policy, every room with its
 *                          participants. Both behind the admin token when one is set
 *                          (bearer, or HTTP Basic with the token as password)
 *   GET  /rooms            JSON: every room and its size
 *   GET  /rooms/NAME       JSON: the participants of one room
 *   POST /admin/kick?id=N  close participant N          } need "Authorization: Bearer
 *   POST /admin/drain      stop new joins, exit when    }  <token>" with the token from
 *                          the last call ends           }  --admin-token; without a
 *   POST /admin/reload     reload the policy (SIGHUP)   }  token they are disabled
 *
 * Runs libmicrohttpd's own thread; bound to 127.0.0.1 unless --metrics-bind says
 * otherwise. Reads counters with relaxed atomic loads and rooms under their read locks.
 */
#ifndef WZP_ADMIN_H
#define WZP_ADMIN_H

#include <stddef.h>

struct wzp_relay;
struct wzp_admin;

/* Start the server; err says why on failure (e.g. the port is taken). */
int wzp_admin_start(struct wzp_admin **out, struct wzp_relay *relay, char *err, size_t errlen);
void wzp_admin_stop(struct wzp_admin *a);

/* The Prometheus text of the relay's metrics (exposed for tests). Caller frees. */
char *wzp_admin_metrics_text(struct wzp_relay *relay, size_t *len);

#endif
