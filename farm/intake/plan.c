/*
 * plan.c - approving and revising a plan (see plan.h). Everything here runs
 * inside ingest's write: the decision, the job, the log entry and the reply
 * are one transaction.
 */
#include "plan.h"
#include "base/clock.h"
#include "base/error.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"
#include "farm/store/store_review.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AWAITING "awaiting_approval"

static void reason_set(review_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reason_set(review_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

static int oom(void)
{
    farm_error_set("plan: out of memory");
    return FARM_ENOMEM;
}

static int event_add(store_tx *tx, int64_t sid, const char *kind, const char *actor, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return oom();
    int rc = store_tx_event_append(NULL, tx, sid, kind, actor, text);
    free(text);
    return rc;
}

int plan_wanted(const config_repo *repo, const tracker_event *ev, const char *rule)
{
    if (repo->plan || (rule && !strcmp(rule, "/farm plan")))
        return 1;
    for (size_t i = 0; i < ev->nlabels; i++)
        if (ev->labels[i] && !strcasecmp(ev->labels[i], PLAN_LABEL))
            return 1;
    return ev->label && !strcasecmp(ev->label, PLAN_LABEL);
}

/* A comment on the issue, once per command comment (keyed by the newest
 * event of the session: the command just logged). */
static int reply(store_tx *tx, const review_ctx *c, const store_session *s, const char *what,
                 const char *body)
{
    store_session *now = NULL;
    char key[256], name[96];
    int64_t seq = s->last_seq;

    if (store_tx_session_get(&now, tx, s->id) == 0)
        seq = now->last_seq;
    store_session_free(now);
    snprintf(name, sizeof(name), "e%lld:%s", (long long)seq, what);
    outbox_key(key, sizeof(key), s->id, name);
    json_t *p = json_pack("{s:s,s:b}", "body", body, "on_pr", 0);
    if (p && c->ev->installation_id)
        json_object_set_new(p, "installation_id", json_integer(c->ev->installation_id));
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (!text)
        return oom();
    int rc = outbox_tx_enqueue(tx, s->id, OUTBOX_COMMENT, key, text);
    free(text);
    return rc;
}

/* The status comment, as the session is now, with `words` as its step. */
static int status_update(store_tx *tx, const review_ctx *c, int64_t sid, const char *words)
{
    report_info ri = REPORT_INFO_INIT;
    store_session *s = NULL;
    char *body = NULL, *text = NULL;
    int rc;

    if ((rc = store_tx_session_get(&s, tx, sid)))
        return rc;
    ri.session = s;
    ri.public_url = c->cfg->public_url;
    ri.step = words;
    if ((rc = report_status_render(&body, &ri)))
        goto out;
    json_t *p = json_pack("{s:s}", "body", body);
    if (p && c->ev->installation_id)
        json_object_set_new(p, "installation_id", json_integer(c->ev->installation_id));
    text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    rc = text ? outbox_tx_status(tx, sid, text) : oom();
out:
    free(text);
    free(body);
    store_session_free(s);
    return rc;
}

static int state_set(store_tx *tx, const review_ctx *c, const store_session *s, const char *to,
                     const char *why)
{
    int rc = store_tx_session_state_set(tx, s->id, to);
    return rc ? rc
              : event_add(tx, s->id, "state", c->ev->actor,
                          json_pack("{s:s,s:s,s:s}", "from", s->state, "to", to, "why", why));
}

/* A new plan round for s, due delay_ms from now (joining one that waits). */
static int queue_plan(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s,
                      int64_t delay_ms, const char *why)
{
    int64_t queued = 0, now = clock_wall_ms();
    int rc;

    if ((rc = store_tx_review_job_queued(&queued, tx, s->id, "plan")))
        return rc;
    if (queued) {
        if (delay_ms == 0 && (rc = store_tx_review_job_due(tx, queued, now)))
            return rc;
        out->acted = 1;
        out->job_id = delay_ms == 0 ? queued : 0;
        reason_set(out, "%s: joins plan job %lld", why, (long long)queued);
        return event_add(
            tx, s->id, "plan_queued", c->ev->actor,
            json_pack("{s:I,s:b,s:s}", "job", (json_int_t)queued, "attached", 1, "why", why));
    }
    if ((rc = store_tx_job_insert(&queued, tx, "plan", s->id, now + delay_ms)) ||
        (rc = event_add(tx, s->id, "plan_queued", c->ev->actor,
                        json_pack("{s:I,s:b,s:s,s:I}", "job", (json_int_t)queued, "attached", 0,
                                  "why", why, "due_ms", (json_int_t)(now + delay_ms)))) ||
        (rc = status_update(tx, c, s->id, "the plan is being revised")))
        return rc;
    out->acted = 1;
    out->job_id = queued;
    reason_set(out, "%s: plan job %lld queued", why, (long long)queued);
    return 0;
}

/* `/farm approve`: the implementation starts. The plan itself is read by
 * the run (the newest "plan" event before the approval). */
static int approve(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    int64_t job = 0;
    int rc;

    if (strcmp(s->state, AWAITING) != 0) {
        reason_set(out, "/farm approve: session %lld has no plan waiting (%s)", (long long)s->id,
                   s->state);
        return reply(tx, c, s, "approve",
                     "There is no plan waiting for approval here. `/farm plan` asks for one.");
    }
    /* a plan round queued by an earlier comment finds the session no
     * longer waiting and does nothing (pipeline.c) */
    if ((rc = state_set(tx, c, s, "queued", "/farm approve")) ||
        (rc = store_tx_job_insert(&job, tx, "run", s->id, 0)) ||
        (rc = event_add(tx, s->id, "plan_approved", c->ev->actor,
                        json_pack("{s:s,s:I}", "by", c->ev->actor ? c->ev->actor : "unknown", "job",
                                  (json_int_t)job))) ||
        (rc = status_update(tx, c, s->id, "plan approved: the implementation is queued")))
        return rc;
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "/farm approve: run job %lld", (long long)job);
    return reply(tx, c, s, "approve",
                 "Plan approved. The implementation starts now, with the approved plan in the "
                 "agent's instructions.");
}

int plan_tx_command(review_result *out, store_tx *tx, const review_ctx *c, const command *cmd,
                    const store_session *s)
{
    memset(out, 0, sizeof(*out));
    if (cmd->kind == COMMAND_APPROVE) {
        if (!s) {
            reason_set(out, "/farm approve: no session");
            return 0;
        }
        return approve(out, tx, c, s);
    }
    /* /farm plan */
    if (!s || store_session_state_is_final(s->state)) {
        if (c->ev->is_pr) {
            reason_set(out, "/farm plan on a pull request without an active session");
            return 0;
        }
        out->start_session = 1; /* ingest starts it, with a plan first */
        return 0;
    }
    if (!strcmp(s->state, AWAITING))
        return queue_plan(out, tx, c, s, 0, "/farm plan");
    reason_set(out, "/farm plan: session %lld is at work (%s)", (long long)s->id, s->state);
    return reply(tx, c, s, "plan",
                 "The farm is already working on this without a plan. `/farm plan` asks for a "
                 "plan before work starts (on an issue without an active session, or to revise a "
                 "plan waiting for approval).");
}

int plan_tx_phase(int *out, store_tx *tx, const store_session *s)
{
    char kind[32];
    int rc;

    *out = 0;
    if (!strcmp(s->state, AWAITING)) {
        *out = 1;
        return 0;
    }
    if (s->pr_number > 0 || !store_session_state_is_final(s->state) || !strcmp(s->state, "done"))
        return 0;
    if ((rc = store_tx_review_last_job_kind(kind, sizeof(kind), tx, s->id)))
        return rc;
    *out = !strcmp(kind, "plan");
    return 0;
}

int plan_tx_retry(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    int64_t job = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!strcmp(s->state, AWAITING)) {
        if ((rc = queue_plan(out, tx, c, s, 0, "/farm retry")))
            return rc;
        return reply(tx, c, s, "retry",
                     "Writing the plan again: the agent makes a new one, posted here for "
                     "approval. Nothing is implemented before `/farm approve`.");
    }
    /* the plan round failed or was stopped: the pipeline runs a plan job
     * on a session that is not waiting when it is the session's newest */
    if ((rc = state_set(tx, c, s, "queued", "/farm retry")) ||
        (rc = store_tx_job_insert(&job, tx, "plan", s->id, 0)) ||
        (rc = event_add(tx, s->id, "retry", c->ev->actor,
                        json_pack("{s:s,s:I,s:s}", "from", s->state, "job", (json_int_t)job, "kind",
                                  "plan"))) ||
        (rc = status_update(tx, c, s->id, "queued again (/farm retry): a new plan round")))
        return rc;
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "/farm retry: session %lld queued again (plan job %lld)", (long long)s->id,
               (long long)job);
    return reply(tx, c, s, "retry",
                 "Trying the plan again: the agent writes a new plan, posted here for approval. "
                 "Nothing is implemented before `/farm approve`.");
}

int plan_tx_feedback(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    memset(out, 0, sizeof(*out));
    if (!c->writer) {
        reason_set(out, "a comment on a plan from someone without write access");
        return 0;
    }
    return queue_plan(out, tx, c, s, (int64_t)c->cfg->review.debounce_s * 1000,
                      "a comment on the plan");
}
