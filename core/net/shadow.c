/* shadow.c - ask the shadow policy and compare (see shadow.h). */
#include "shadow.h"

#include "common.h"
#include "eventlog.h"
#include "log.h"

#include <stdio.h>

#define SAMPLE_EVERY_NS 1000000000ull /* disagreements written to the event log, per worker */

/* The shadow may be asked: there is one, and it has time left in this second. */
static bool ready(struct wzp_worker *w)
{
    if (!w->shadow)
        return false;
    if (wzp_policy_share_used_up(w->shadow)) {
        WZP_STAT_INC(&w->stats, shadow_skipped);
        return false;
    }
    return true;
}

enum hook { H_CONNECT, H_JOIN, H_REGISTER, H_CALL };
static const char *const hook_names[] = {"on_connect", "on_join", "on_register", "on_call"};

static void compare(struct wzp_worker *w, enum hook h, const char *subject,
                    const struct wzp_decision *live, const struct wzp_decision *shadow)
{
    if (wzp_decision_same(live, shadow)) {
        WZP_STAT_INC(&w->stats, shadow_agreed);
        return;
    }
    WZP_STAT_INC(&w->stats, shadow_disagreed);
    if (h == H_CONNECT)
        WZP_STAT_INC(&w->stats, shadow_disagree_connect);
    else if (h == H_JOIN)
        WZP_STAT_INC(&w->stats, shadow_disagree_join);
    else if (h == H_REGISTER)
        WZP_STAT_INC(&w->stats, shadow_disagree_register);
    else
        WZP_STAT_INC(&w->stats, shadow_disagree_call);
    const char *hook = hook_names[h];
    if (!wzp_eventlog_enabled() ||
        !wzp_log_due(&w->shadow_logged_ns, wzp_now_ns(), SAMPLE_EVERY_NS))
        return;
    struct wzp_event ev;
    wzp_event_begin(&ev, "shadow_disagreement");
    wzp_event_str(&ev, "hook", hook);
    wzp_event_str(&ev, "subject", subject);
    wzp_event_int(&ev, "live_allow", live->allow);
    wzp_event_str(&ev, "live_reason", live->reason[0] ? live->reason : NULL);
    wzp_event_str(&ev, "live_role", wzp_role_name(live->role));
    wzp_event_int(&ev, "shadow_allow", shadow->allow);
    wzp_event_str(&ev, "shadow_reason", shadow->reason[0] ? shadow->reason : NULL);
    wzp_event_str(&ev, "shadow_role", wzp_role_name(shadow->role));
    wzp_event_emit(&ev);
}

void wzp_shadow_connect(struct wzp_worker *w, const struct wzp_connect_info *info,
                        const struct wzp_decision *live)
{
    if (!ready(w))
        return;
    struct wzp_decision d;
    wzp_policy_on_connect(w->shadow, info, &d);
    char subject[160];
    snprintf(subject, sizeof subject, "%s sni %s", info->addr, info->sni ? info->sni : "-");
    compare(w, H_CONNECT, subject, live, &d);
}

void wzp_shadow_join(struct wzp_worker *w, const struct wzp_join_info *info,
                     const struct wzp_decision *live)
{
    if (!ready(w))
        return;
    struct wzp_decision d;
    wzp_policy_on_join(w->shadow, info, &d);
    char subject[WZP_ROOM_NAME_MAX + WZP_FINGERPRINT_LEN + 32];
    snprintf(subject, sizeof subject, "room %s fingerprint %s", info->room, info->fingerprint);
    compare(w, H_JOIN, subject, live, &d);
}

void wzp_shadow_register(struct wzp_worker *w, const struct wzp_register_info *info,
                         const struct wzp_decision *live)
{
    if (!ready(w))
        return;
    struct wzp_decision d;
    wzp_policy_on_register(w->shadow, info, &d);
    char subject[WZP_FINGERPRINT_LEN + 32];
    snprintf(subject, sizeof subject, "fingerprint %s", info->fingerprint);
    compare(w, H_REGISTER, subject, live, &d);
}

void wzp_shadow_call(struct wzp_worker *w, const struct wzp_call_info *info,
                     const struct wzp_decision *live)
{
    if (!ready(w))
        return;
    struct wzp_decision d;
    wzp_policy_on_call(w->shadow, info, &d);
    char subject[2 * WZP_FINGERPRINT_LEN + 32];
    snprintf(subject, sizeof subject, "caller %s callee %s", info->caller, info->callee);
    compare(w, H_CALL, subject, live, &d);
}
