/*
 * update.c - queueing the merge of the base into a farm pull request's
 * branch (see update.h). One "update" job per session at a time: a push,
 * an unmergeable report or `/farm update` while one waits attaches to it
 * (an "update_queued" event with "attached"), made due now when asked now.
 */
#include "update.h"
#include "base/clock.h"
#include "base/error.h"
#include "farm/report/outbox.h"
#include "farm/store/store_review.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reason_set(review_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reason_set(review_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

static int event_add(store_tx *tx, int64_t sid, const char *kind, const char *actor, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        farm_error_set("update: out of memory");
        return FARM_ENOMEM;
    }
    int rc = store_tx_event_append(NULL, tx, sid, kind, actor, text);
    free(text);
    return rc;
}

/* Queue (or join) session sid's update job, due delay_ms from now. *job is
 * the job made or joined. */
static int queue_update(int64_t *job, store_tx *tx, const review_ctx *c, int64_t sid,
                        int64_t delay_ms, const char *why)
{
    int64_t queued = 0, now = clock_wall_ms();
    int rc;

    *job = 0;
    if ((rc = store_tx_review_job_queued(&queued, tx, sid, "update")))
        return rc;
    if (queued) {
        if (delay_ms == 0 && (rc = store_tx_review_job_due(tx, queued, now)))
            return rc;
        *job = queued;
        return event_add(
            tx, sid, "update_queued", c->ev->actor,
            json_pack("{s:I,s:b,s:s}", "job", (json_int_t)queued, "attached", 1, "why", why));
    }
    if ((rc = store_tx_job_insert(&queued, tx, "update", sid, now + delay_ms)))
        return rc;
    *job = queued;
    return event_add(tx, sid, "update_queued", c->ev->actor,
                     json_pack("{s:I,s:b,s:s,s:I}", "job", (json_int_t)queued, "attached", 0, "why",
                               why, "due_ms", (json_int_t)(now + delay_ms)));
}

int update_tx_base_pushed(review_result *out, store_tx *tx, const review_ctx *c)
{
    const tracker_event *ev = c->ev;
    int64_t *ids = NULL, job = 0;
    size_t n = 0;
    char why[300];
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!ev->pushed_branch || strcmp(ev->pushed_branch, c->repo->base_branch) != 0) {
        reason_set(out, "a push to %s, not the base branch %s",
                   ev->pushed_branch ? ev->pushed_branch : "?", c->repo->base_branch);
        return 0;
    }
    if ((rc = store_tx_review_open_prs(&ids, &n, tx, ev->tracker, c->repo->name)))
        return rc;
    snprintf(why, sizeof(why), "%s moved to %.12s", c->repo->base_branch,
             ev->pushed_oid ? ev->pushed_oid : "?");
    for (size_t i = 0; i < n && !rc; i++) {
        if (!(rc = event_add(tx, ids[i], "base_moved", ev->actor,
                             json_pack("{s:s,s:s,s:s}", "branch", ev->pushed_branch, "oid",
                                       ev->pushed_oid ? ev->pushed_oid : "", "delivery",
                                       ev->delivery_id ? ev->delivery_id : ""))))
            rc = queue_update(&job, tx, c, ids[i], (int64_t)c->cfg->review.debounce_s * 1000, why);
    }
    free(ids);
    if (rc)
        return rc;
    out->acted = n > 0;
    out->job_id = 0; /* due after the debounce window: nothing to wake now */
    reason_set(out, "%s: %zu open pull request%s to update", why, n, n == 1 ? "" : "s");
    return 0;
}

int update_tx_unmergeable(review_result *out, store_tx *tx, const review_ctx *c,
                          const store_session *s)
{
    int64_t job = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (store_session_state_is_final(s->state) || s->pr_number <= 0) {
        reason_set(out, "session %lld has no open pull request", (long long)s->id);
        return 0;
    }
    if ((rc = queue_update(&job, tx, c, s->id, 0, "the pull request does not merge cleanly")))
        return rc;
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "pull request not mergeable: update job %lld", (long long)job);
    return 0;
}

/* A reply on the thread the command came from, once per command comment. */
static int reply(store_tx *tx, const review_ctx *c, const store_session *s, const char *body)
{
    store_session *now = NULL;
    char key[256], name[64];
    int64_t seq = s->last_seq;

    if (store_tx_session_get(&now, tx, s->id) == 0)
        seq = now->last_seq;
    store_session_free(now);
    snprintf(name, sizeof(name), "e%lld:update", (long long)seq);
    outbox_key(key, sizeof(key), s->id, name);
    json_t *p = json_pack("{s:s,s:b}", "body", body, "on_pr", c->ev->is_pr && s->pr_number > 0);
    if (p && c->ev->installation_id)
        json_object_set_new(p, "installation_id", json_integer(c->ev->installation_id));
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (!text) {
        farm_error_set("update: out of memory");
        return FARM_ENOMEM;
    }
    int rc = outbox_tx_enqueue(tx, s->id, OUTBOX_COMMENT, key, text);
    free(text);
    return rc;
}

int update_tx_command(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    char body[512];
    int64_t job = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!s) {
        reason_set(out, "/farm update: no session");
        return 0;
    }
    if (store_session_state_is_final(s->state) || s->pr_number <= 0) {
        reason_set(out, "/farm update: session %lld has no open pull request", (long long)s->id);
        return reply(tx, c, s,
                     "There is no open pull request of the farm's to update here: `/farm "
                     "update` brings the base branch into the branch of an open one.");
    }
    if ((rc = queue_update(&job, tx, c, s->id, 0, "/farm update")))
        return rc;
    snprintf(body, sizeof(body),
             "Bringing `%s` into this pull request's branch with a merge commit (conflicts go to "
             "the agent; the tests run again before the push).",
             c->repo->base_branch);
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "/farm update: update job %lld", (long long)job);
    return reply(tx, c, s, body);
}
