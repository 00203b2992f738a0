/*
 * shadow.h - the shadow policy (--shadow-policy FILE): a second policy each worker asks
 * after the live one has decided and its decision has been applied, so it can never delay
 * or change a live decision. Its decisions are only compared with the live ones: counted
 * by hook (wzp_relay_policy_shadow_disagreements_total), sampled to the event log (at most
 * one line per second and worker), and shown by /admin/policy. Promotion makes it live.
 *
 * The shadow sees what the live policy saw. It reads the real rooms but its wzp.kick,
 * wzp.set_role, wzp.route and wzp.send_directive change nothing, it has its own
 * wzp.shared and counters, and its timers never run. When it has used its share of the
 * worker's second (the 250 ms share after which timers are skipped, counted for the
 * shadow's own state), calls are skipped and counted.
 *
 * Hooks compared: on_connect, on_join (with on_action), on_register, on_call.
 */
#ifndef WZP_SHADOW_H
#define WZP_SHADOW_H

#include "policy.h"
#include "worker.h"

void wzp_shadow_connect(struct wzp_worker *w, const struct wzp_connect_info *info,
                        const struct wzp_decision *live);
void wzp_shadow_join(struct wzp_worker *w, const struct wzp_join_info *info,
                     const struct wzp_decision *live);
void wzp_shadow_register(struct wzp_worker *w, const struct wzp_register_info *info,
                         const struct wzp_decision *live);
void wzp_shadow_call(struct wzp_worker *w, const struct wzp_call_info *info,
                     const struct wzp_decision *live);

#endif
