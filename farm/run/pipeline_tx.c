/*
 * pipeline_tx.c - what a run writes to the session: one transaction holds
 * a state change, its "state" event, the run's events and the tracker side
 * effects they call for (outbox entries, the status comment), so a crash
 * never leaves one without the other. Also single events written on their
 * own (pl_event()), the step events (started, done with the step's
 * products, failed) and the ends of a run: failed, cancelled, unchanged.
 */
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/strv.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"
#include "farm/store/store_hold.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_event_tx(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind, json_t *body)
{
    int rc;

    if (!body) {
        if (out_seq)
            *out_seq = 0;
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    rc = store_tx_event_append_json(out_seq, tx, session_id, kind, NULL, body);
    json_decref(body);
    return rc;
}

struct event_write {
    int64_t session_id;
    const char *kind;
    json_t *body;
    int64_t seq;
};

static int event_write_fn(store_tx *tx, void *arg)
{
    struct event_write *w = arg;
    return store_tx_event_append_json(&w->seq, tx, w->session_id, w->kind, NULL, w->body);
}

int pl_event(pl_run *r, const char *kind, json_t *body)
{
    struct event_write w = {r->s->id, kind, body, 0};
    int rc;

    if (!body) {
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    rc = store_write(r->f->store, event_write_fn, &w);
    json_decref(body);
    if (!rc)
        stream_hub_session_notify(r->f->streams, r->s->id, w.seq);
    return rc;
}

void pl_tx_event(pl_tx *t, const char *kind, json_t *body)
{
    if (!body || t->nev >= TX_EVENTS) {
        t->oom = 1;
        json_decref(body);
        return;
    }
    t->ev[t->nev].kind = kind;
    t->ev[t->nev++].body = body;
}

void pl_tx_outbox(pl_tx *t, const char *kind, const char *name, json_t *payload)
{
    if (!payload || t->nob >= TX_OUTBOX ||
        !(t->ob[t->nob].payload = json_dumps(payload, JSON_COMPACT))) {
        t->oom = 1;
    } else {
        outbox_key(t->ob[t->nob].key, sizeof(t->ob[t->nob].key), t->r->s->id, name);
        t->ob[t->nob++].kind = kind;
    }
    json_decref(payload);
}

static void tx_free(pl_tx *t)
{
    for (int i = 0; i < t->nev; i++)
        json_decref(t->ev[i].body);
    for (int i = 0; i < t->nob; i++)
        free(t->ob[i].payload);
    t->nev = t->nob = 0;
}

int pl_status_enqueue(store_tx *tx, pl_tx *t, const store_session *s)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, *payload = NULL;
    json_t *p;
    int rc;

    ri.session = s;
    ri.public_url = t->r->cfg->public_url;
    ri.step = t->step_words;
    ri.run = (int)t->r->run_no;
    report_egress denied[PL_EGRESS_MAX];
    ri.denied = denied;
    ri.ndenied = pl_egress_denied(denied, PL_EGRESS_MAX, t->r);
    if (store_session_state_is_final(s->state))
        ri.ended_ms = clock_wall_ms();
    char *held_by = NULL; /* the hold (`/farm hold`) stays said */
    if ((rc = store_tx_hold_get(&held_by, tx, s->tracker, s->repo, s->number)))
        return rc;
    ri.hold = held_by;
    rc = report_status_render(&body, &ri);
    free(held_by);
    if (rc)
        return rc;
    p = json_pack("{s:s}", "body", body);
    payload = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    free(body);
    if (!payload) {
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    rc = outbox_tx_status(tx, s->id, payload);
    free(payload);
    return rc;
}

static int tx_fn(store_tx *tx, void *arg)
{
    pl_tx *t = arg;
    int64_t id = t->r->s->id;
    store_session *s = NULL;
    int rc, changed = 0;

    if ((rc = store_tx_session_get(&s, tx, id)))
        return rc;
    if (t->skip_if_final && store_session_state_is_final(s->state)) {
        t->ended = 1;
        goto out;
    }
    if (t->branch && (rc = store_tx_session_branch_set(tx, id, t->branch)))
        goto out;
    if ((t->agent_seconds > 0 || t->cost > 0) &&
        (rc = store_tx_session_usage_add(tx, id, t->agent_seconds, t->cost)))
        goto out;
    if (t->pr_draft_set &&
        (rc = store_tx_session_pr_draft_set(tx, id, t->pr_draft, t->pr_draft_reason)))
        goto out;
    if (t->state && strcmp(t->state, s->state) != 0) {
        if ((rc = store_tx_session_state_set(tx, id, t->state)) ||
            (rc = pl_event_tx(&t->last_seq, tx, id, "state",
                              json_pack("{s:s,s:s,s:I}", "from", s->state, "to", t->state, "run",
                                        (json_int_t)t->r->run_no))))
            goto out;
        changed = 1;
    }
    for (int i = 0; i < t->nev; i++)
        if ((rc = store_tx_event_append_json(&t->last_seq, tx, id, t->ev[i].kind, NULL,
                                             t->ev[i].body)))
            goto out;
    for (int i = 0; i < t->nob; i++)
        if ((rc = outbox_tx_enqueue(tx, id, t->ob[i].kind, t->ob[i].key, t->ob[i].payload)))
            goto out;
    if (changed || t->status) {
        store_session_free(s);
        s = NULL;
        if ((rc = store_tx_session_get(&s, tx, id)) || (rc = pl_status_enqueue(tx, t, s)))
            goto out;
    }
out:
    store_session_free(s);
    return rc;
}

int pl_tx_commit(pl_tx *t)
{
    int rc;
    if (t->oom) {
        tx_free(t);
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    rc = store_write(t->r->f->store, tx_fn, t);
    tx_free(t);
    if (rc) {
        log_error("session not updated", "error", farm_error_last());
        return rc;
    }
    if (t->last_seq > 0)
        stream_hub_session_notify(t->r->f->streams, t->r->s->id, t->last_seq);
    if (t->nob > 0 || t->state || t->status)
        outbox_kick(t->r->f);
    return 0;
}

void pl_tx_init(pl_tx *t, pl_run *r)
{
    memset(t, 0, sizeof(*t));
    t->r = r;
}

/* Move the session to state, saying what it is doing, with nothing else. */
int pl_set_state(pl_run *r, const char *state, const char *words)
{
    pl_tx t;
    pl_tx_init(&t, r);
    t.state = state;
    t.step_words = words;
    t.skip_if_final = 1;
    return pl_tx_commit(&t);
}

void pl_progress_free(pl_progress *p)
{
    free(p->agent_tail);
    free(p->test_tail);
    free(p->summary);
    strv_list_free(p->conflicts);
    p->conflicts = NULL;
}

void pl_copy_oid(char out[VCS_OID_HEXSZ], json_t *v)
{
    const char *s = json_string_value(v);
    out[0] = '\0';
    if (s && strlen(s) == VCS_OID_HEXSZ - 1)
        memcpy(out, s, VCS_OID_HEXSZ);
}

void pl_take_str(char **dst, json_t *v)
{
    const char *s = json_string_value(v);
    if (s) {
        free(*dst);
        *dst = strdup(s);
    }
}

static json_t *step_body(pl_run *r, const char *step, const char *status, int round)
{
    json_t *b =
        json_pack("{s:I,s:s,s:s}", "run", (json_int_t)r->run_no, "step", step, "status", status);
    if (b && round > 0)
        json_object_set_new(b, "round", json_integer(round));
    return b;
}

int pl_step_started(pl_run *r, const char *step, int round)
{
    return pl_event(r, "step", step_body(r, step, "started", round));
}

/* A "step done" event into t, with the step's duration and products
 * (extra, stolen, may be NULL). */
void pl_step_done(pl_tx *t, const char *step, int round, int64_t began_ms, json_t *extra)
{
    json_t *b = step_body(t->r, step, "done", round);
    if (b) {
        json_object_set_new(b, "ms", json_integer(clock_mono_ms() - began_ms));
        if (extra)
            json_object_update(b, extra);
    }
    json_decref(extra);
    pl_tx_event(t, "step", b);
}

int pl_step_done_commit(pl_run *r, const char *step, int round, int64_t began_ms, json_t *extra)
{
    pl_tx t;
    pl_tx_init(&t, r);
    pl_step_done(&t, step, round, began_ms, extra);
    return pl_tx_commit(&t);
}

void pl_step_failed(pl_run *r, const char *step, int round, const char *error)
{
    json_t *b = step_body(r, step, "failed", round);
    if (!b)
        return;
    json_object_set_new(b, "error", json_string(error ? error : ""));
    pl_event(r, "step", b);
}

/* ---- ends of a run ---------------------------------------------------------- */

void pl_cleanup_dirs(pl_run *r)
{
    pl_exec_prepared_drop(r); /* a sandbox prepared ahead has the worktree bound */
    if (r->wt) {
        vcs_worktree_remove(r->wt);
        vcs_worktree_free(r->wt);
        r->wt = NULL;
    } else if (r->wt_path[0]) {
        vcs_tree_remove(r->wt_path);
    }
    if (r->run_dir[0])
        vcs_tree_remove(r->run_dir);
}

json_t *pl_finished_body(pl_run *r, const char *outcome, const char *reason)
{
    json_t *b = json_pack("{s:I,s:s,s:s}", "run", (json_int_t)r->run_no, "outcome", outcome, "kind",
                          r->kind);
    if (b && reason)
        json_object_set_new(b, "reason", json_string(reason));
    return b;
}

json_t *pl_comment_payload(const char *body)
{
    return json_pack("{s:s,s:b}", "body", body, "on_pr", 0);
}

/* The session failed: state, log, the failure comment with the output's
 * tail. The worktree and run directory go. */
int pl_run_fail(pl_run *r, const char *reason, const char *output)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, name[64];
    pl_tx t;
    int rc;

    log_warn("run failed", "repo", r->repo->name, "reason", reason);
    pl_tx_init(&t, r);
    t.state = "failed";
    t.step_words = "failed";
    t.skip_if_final = 1;
    pl_tx_event(&t, "failed",
                json_pack("{s:I,s:s}", "run", (json_int_t)r->run_no, "reason", reason));
    pl_tx_event(&t, "run_finished", pl_finished_body(r, "failed", reason));
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.reason = reason;
    ri.output = output;
    ri.run = (int)r->run_no;
    report_egress denied[PL_EGRESS_MAX];
    ri.denied = denied;
    ri.ndenied = pl_egress_denied(denied, PL_EGRESS_MAX, r);
    if (report_milestone_render(&body, REPORT_FAILED, &ri) == 0) {
        snprintf(name, sizeof(name), "r%lld:failed", (long long)r->run_no);
        pl_tx_outbox(&t, OUTBOX_COMMENT, name, pl_comment_payload(body));
    }
    free(body);
    rc = pl_tx_commit(&t);
    pl_cleanup_dirs(r);
    return rc;
}

/* Stopped by a cancel request or the issue being closed. */
int pl_run_cancelled(pl_run *r)
{
    pl_tx t;
    int rc;

    log_info("run cancelled", "repo", r->repo->name);
    pl_tx_init(&t, r);
    t.state = "cancelled";
    t.step_words = "cancelled";
    t.skip_if_final = 1;
    pl_tx_event(&t, "run_finished", pl_finished_body(r, "cancelled", NULL));
    rc = pl_tx_commit(&t);
    pl_cleanup_dirs(r);
    return rc;
}

/* A revision that changed nothing (the agent disagreed, answered a
 * question, or stopped before it could change anything): the pull request
 * is as it was, so the session goes back to review, and the PR hears why,
 * with the agent's words and, when it failed, the end of its output. */
int pl_run_unchanged(pl_run *r, const pl_progress *p)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, name[64], why[512], budget[400];
    const char *reason = NULL; /* the run_finished event's reason */
    pl_tx t;
    int rc;

    pl_tx_init(&t, r);
    t.state = "review";
    t.step_words = "waiting for review";
    t.skip_if_final = 1;
    if (pl_budget_words(budget, sizeof(budget), r)) {
        /* stopped by a budget, not by its own failure: the comment says
         * which budget and how to go on, the log says "budget" */
        snprintf(why, sizeof(why), "the agent was stopped by a budget before changing anything: %s",
                 budget);
        reason = "budget";
        ri.reason = why;
    } else if (p->agent_exit != 0) {
        snprintf(why, sizeof(why), "the agent exited with status %d before changing anything",
                 p->agent_exit);
        reason = why;
        ri.reason = why;
        ri.output = p->agent_tail;
    }
    pl_tx_event(&t, "run_finished", pl_finished_body(r, "unchanged", reason));
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.summary = p->summary;
    ri.run = (int)r->run_no;
    report_egress denied[PL_EGRESS_MAX];
    ri.denied = denied;
    ri.ndenied = pl_egress_denied(denied, PL_EGRESS_MAX, r);
    if (report_milestone_render(&body, REPORT_UNCHANGED, &ri) == 0) {
        snprintf(name, sizeof(name), "r%lld:unchanged", (long long)r->run_no);
        pl_tx_outbox(&t, OUTBOX_COMMENT, name,
                     json_pack("{s:s,s:b}", "body", body, "on_pr", r->s->pr_number > 0));
    } else {
        log_warn("unchanged comment not rendered", "error", farm_error_last());
    }
    free(body);
    rc = pl_tx_commit(&t);
    pl_cleanup_dirs(r);
    return rc;
}
