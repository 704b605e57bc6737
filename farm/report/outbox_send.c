/*
 * outbox_send.c - what one leased outbox entry does on the tracker (see
 * outbox.h): its body defused of markers, the call for its kind (comment,
 * sticky status, reaction, labels, pull request, review reply), looking
 * before creating on a retry, and the outcome recorded in the store: sent,
 * retried after a backoff with jitter, skipped or failed. A PR entry's
 * success also queues its then_comment and the status update its new state
 * calls for. outbox.c leases the entries and calls outbox__send().
 */
#include "outbox_internal.h"
#include "report.h"
#include "trackers.h"
#include "farm/config/config.h"
#include "farm/handle/handle.h"
#include "farm/store/store.h"
#include "farm/store/store_hold.h"
#include "farm/store/store_outbox.h"
#include "farm/stream/stream.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "vcs/tracker/tracker.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- delivering one entry ------------------------------------------------ */

/* What a delivery produced. */
typedef struct outcome {
    int look;        /* in: look for it before creating (a retry, or opts.look_first) */
    char remote[32]; /* comment id / PR number, "" when none */
    int fatal;       /* the entry itself is wrong: fail now, whatever the attempt */
    tracker_pr *pr;  /* OUTBOX_PR: the pull request */
} outcome;

/* A copy of body in which no text can pass for one of the farm's markers:
 * bodies quote issue titles, agent output and people's words, and a
 * "<!-- farm:KEY -->" among them would make find_by_marker() take this
 * comment for another entry's. Heap string; NULL on ENOMEM. */
static char *body_defuse(const char *body)
{
    static const char bad[] = "<!-- farm:";
    static const char good[] = "<!-- farm-quoted:";
    buf b = BUF_INIT(2 * OUTBOX_PAYLOAD_MAX + 64);
    const char *p = body, *hit;
    while ((hit = strstr(p, bad))) {
        if (buf_append(&b, p, (size_t)(hit - p)) || buf_puts(&b, good))
            goto fail;
        p = hit + sizeof(bad) - 1;
    }
    if (buf_puts(&b, p))
        goto fail;
    return buf_detach(&b);
fail:
    buf_free(&b);
    return NULL;
}

static const char *jstr(json_t *p, const char *k)
{
    return json_string_value(json_object_get(p, k));
}

/* Create a comment, or (look_first) find it by its marker and bring its
 * body up to date (completing missing parts) when an earlier attempt got
 * it through. */
static int comment_put(int64_t *id, tracker *t, const tracker_ref *ref, const char *key,
                       const char *body, int look_first)
{
    int rc;
    *id = 0;
    if (look_first) {
        rc = tracker_comment_find_by_marker(id, t, ref, key);
        if (rc == 0)
            return tracker_comment_update(t, ref, *id, key, body);
        if (rc != FARM_ENOTFOUND)
            return rc;
    }
    return tracker_comment_create(id, t, ref, key, body);
}

static int send_comment(outcome *oc, tracker *t, const tracker_ref *ref, const outbox_entry *e,
                        const char *body)
{
    int64_t id = 0;
    int rc = comment_put(&id, t, ref, e->key, body, oc->look);
    if (!rc)
        snprintf(oc->remote, sizeof oc->remote, "%" PRId64, id);
    return rc;
}

/* The sticky status comment: edited in place once its id is known, else
 * found by its marker (any earlier status entry may have created it before
 * a crash or being superseded) or created. */
static int send_status(outcome *oc, farm *f, tracker *t, const tracker_ref *ref,
                       const outbox_entry *e, const char *body)
{
    char key[256], *remote = NULL;
    int64_t id = 0;
    int rc;

    outbox_key(key, sizeof key, e->session_id, "status");
    if ((rc = store_outbox_status_remote(&remote, f->store, e->session_id)))
        return rc;
    if (remote) {
        id = strtoll(remote, NULL, 10);
        free(remote);
        if (id > 0) {
            rc = tracker_comment_update(t, ref, id, key, body);
            if (rc != FARM_ENOTFOUND)
                goto out;
            /* deleted by someone: post it again */
            log_info("status comment is gone; posting it again", "key", key);
        }
    }
    rc = comment_put(&id, t, ref, key, body, 1);
out:
    if (!rc)
        snprintf(oc->remote, sizeof oc->remote, "%" PRId64, id);
    return rc;
}

static int send_labels(tracker *t, const tracker_ref *ref, json_t *p)
{
    static const char *const fields[2] = {"add", "remove"};
    const char *names[OUTBOX_LABELS_MAX];
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        json_t *a = json_object_get(p, fields[k]), *v;
        size_t i, n = 0;
        json_array_foreach(a, i, v) if (n < OUTBOX_LABELS_MAX) names[n++] = json_string_value(v);
        if (n == 0)
            continue;
        rc =
            k == 0 ? tracker_labels_add(t, ref, names, n) : tracker_labels_remove(t, ref, names, n);
    }
    return rc;
}

/* Open the PR for the branch, or update the one open already (found by its
 * branch, so a PR created before a crash is never opened twice). */
static int send_pr(outcome *oc, farm *f, tracker *t, const tracker_ref *ref,
                   const store_session *sess, const outbox_entry *e, json_t *p, const char *body)
{
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    tracker_pr *pr = NULL;
    const config_repo *repo = config_repo_find(f->cfg, sess->tracker, sess->repo);
    int rc;

    spec.key = e->key;
    spec.title = jstr(p, "title");
    spec.body = body;
    spec.head_branch = jstr(p, "head") ? jstr(p, "head") : sess->branch;
    spec.base_branch = jstr(p, "base")             ? jstr(p, "base")
                       : repo && repo->base_branch ? repo->base_branch
                                                   : "main";
    spec.draft = json_is_true(json_object_get(p, "draft"));
    if (!spec.head_branch) {
        farm_error_set("outbox: no branch for the pull request (payload \"head\" or the "
                       "session's branch)");
        oc->fatal = 1;
        return FARM_EINVALID;
    }
    rc = tracker_pr_find_by_branch(&pr, t, ref, spec.head_branch);
    if (rc == 0 && pr->state && strcmp(pr->state, "open") != 0) {
        tracker_pr_free(pr); /* closed or merged: this is a new one */
        pr = NULL;
        rc = FARM_ENOTFOUND;
    }
    if (rc == FARM_ENOTFOUND) {
        rc = tracker_pr_create(&pr, t, ref, &spec);
        if (rc == FARM_EEXISTS) /* opened meanwhile (another sender, a person) */
            rc = tracker_pr_find_by_branch(&pr, t, ref, spec.head_branch);
        else if (rc == 0)
            goto done;
    }
    if (rc)
        goto out;
    {
        tracker_pr_spec upd = TRACKER_PR_SPEC_INIT;
        upd.key = e->key;
        upd.title = spec.title;
        upd.body = spec.body;
        if ((rc = tracker_pr_update(t, ref, pr->number, &upd)))
            goto out;
    }
done:
    snprintf(oc->remote, sizeof oc->remote, "%" PRId64, pr->number);
    oc->pr = pr;
    pr = NULL;
out:
    tracker_pr_free(pr);
    return rc;
}

/* A reply in a review thread: found again among the PR's review comments
 * by its marker on a later attempt. */
static int send_review_reply(outcome *oc, tracker *t, const tracker_ref *ref, int64_t pr,
                             const outbox_entry *e, json_t *p, const char *body)
{
    int64_t cid = json_integer_value(json_object_get(p, "comment_id")), id = 0;
    int rc;
    if (oc->look) {
        tracker_review_comment *rcs = NULL;
        size_t n = 0;
        if ((rc = tracker_pr_review_comments(&rcs, &n, t, ref, pr)))
            return rc;
        for (size_t i = 0; i < n && !id; i++)
            if (tracker_body_has_marker(rcs[i].body, e->key, 1))
                id = rcs[i].id;
        tracker_review_comments_free(rcs, n);
    }
    rc = id ? 0 : tracker_review_comment_reply(&id, t, ref, pr, cid, e->key, body);
    if (!rc)
        snprintf(oc->remote, sizeof oc->remote, "%" PRId64, id);
    return rc;
}

/* Deliver e; fills oc. Returns 0 or the error of the call that failed. */
static int deliver(outcome *oc, farm *f, const outbox_entry *e, const store_session *sess,
                   json_t *p)
{
    tracker_ref ref = TRACKER_REF_INIT;
    tracker *t = NULL;
    char *body = NULL;
    int rc;

    ref.repo = sess->repo;
    ref.number = sess->number;
    ref.installation_id = json_integer_value(json_object_get(p, "installation_id"));
    if ((rc = farm_tracker_get(&t, f, sess->tracker)))
        return rc;
    if (jstr(p, "body") && !(body = body_defuse(jstr(p, "body")))) {
        farm_error_set("outbox: out of memory");
        return FARM_ENOMEM;
    }

    if (!strcmp(e->kind, OUTBOX_COMMENT)) {
        if (json_is_true(json_object_get(p, "on_pr"))) {
            if (sess->pr_number <= 0) {
                farm_error_set("outbox: a comment on the PR, but the session has no PR");
                oc->fatal = 1;
                rc = FARM_EINVALID;
                goto out;
            }
            ref.number = sess->pr_number;
            ref.is_pr = 1;
        }
        rc = send_comment(oc, t, &ref, e, body);
    } else if (!strcmp(e->kind, OUTBOX_STATUS)) {
        rc = send_status(oc, f, t, &ref, e, body);
    } else if (!strcmp(e->kind, OUTBOX_REACT)) {
        rc = tracker_react(t, &ref, json_integer_value(json_object_get(p, "comment_id")),
                           jstr(p, "reaction"));
    } else if (!strcmp(e->kind, OUTBOX_LABELS)) {
        rc = send_labels(t, &ref, p);
    } else if (!strcmp(e->kind, OUTBOX_PR)) {
        rc = send_pr(oc, f, t, &ref, sess, e, p, body ? body : "");
    } else if (!strcmp(e->kind, OUTBOX_REVIEW_REPLY)) {
        int64_t pr = json_integer_value(json_object_get(p, "pr_number"));
        if (pr <= 0)
            pr = sess->pr_number;
        if (pr <= 0) {
            farm_error_set("outbox: a review reply, but the session has no PR");
            oc->fatal = 1;
            rc = FARM_EINVALID;
            goto out;
        }
        rc = send_review_reply(oc, t, &ref, pr, e, p, body);
    } else {
        farm_error_set("outbox: unknown entry kind \"%s\"", e->kind);
        oc->fatal = 1;
        rc = FARM_EINVALID;
    }
out:
    free(body);
    return rc;
}

/* ---- outcomes ------------------------------------------------------------ */

static int is_transient(int rc)
{
    return rc == FARM_EAGAIN || rc == FARM_EIO || rc == FARM_ETIMEOUT || rc == FARM_ENOMEM ||
           rc == FARM_ECONFLICT || rc == FARM_ERROR;
}

/* The wait before the next attempt (attempts made so far >= 1). */
static int64_t retry_delay(outbox_worker *w, int rc, int64_t attempts, int64_t retry_after)
{
    const outbox_opts *o = &w->s->o;
    int shift = attempts > 1 ? (int)(attempts - 1) : 0;
    int64_t d = o->backoff_ms;
    if (shift > 30)
        shift = 30;
    while (shift-- > 0 && d < o->max_backoff_ms)
        d *= 2;
    if (d > o->max_backoff_ms)
        d = o->max_backoff_ms;
    /* equal jitter: half fixed, half random, so senders that failed
     * together do not come back together */
    if (d > 1)
        d = d / 2 + (int64_t)(rand_r(&w->seed) % (unsigned)(d / 2 + 1));
    if (rc == FARM_EAGAIN && retry_after > d)
        d = retry_after;
    if ((rc == FARM_ETIMEOUT || rc == FARM_EIO) && d < o->no_answer_ms)
        d = o->no_answer_ms;
    return d;
}

static void record_failure(outbox_worker *w, const outbox_entry *e, int rc, int fatal,
                           int64_t retry_after)
{
    const outbox_opts *o = &w->s->o;
    store *st = w->s->f->store;
    char err[1200], attempts[24], wait[24];
    int transient = is_transient(rc) && !fatal;
    int give_up = fatal || e->attempts >= o->max_attempts ||
                  (!transient && e->attempts >= o->permanent_attempts);
    int r;

    snprintf(err, sizeof err, "%s: %s", farm_error_name(rc), farm_error_last());
    snprintf(attempts, sizeof attempts, "%" PRId64, e->attempts);
    if (give_up) {
        int64_t seq = 0;
        r = store_outbox_fail(&seq, st, e->id, w->owner, err);
        if (!r && seq > 0)
            stream_hub_session_notify(w->s->f->streams, e->session_id, seq);
        log_error("outbox entry failed", "key", e->key, "kind", e->kind, "attempts", attempts,
                  "error", err);
    } else {
        int64_t d = retry_delay(w, rc, e->attempts, retry_after);
        snprintf(wait, sizeof wait, "%" PRId64, d);
        r = store_outbox_retry(st, e->id, w->owner, clock_wall_ms() + d, err);
        log_warn("outbox entry will be retried", "key", e->key, "kind", e->kind, "attempts",
                 attempts, "wait_ms", wait, "error", err);
    }
    if (r)
        log_warn("outbox outcome not recorded", "key", e->key, "error", farm_error_last());
}

/* ---- one entry, start to end --------------------------------------------- */

/* text with OUTBOX_PR_URL and OUTBOX_PR_NUMBER replaced by the PR's. Heap
 * string, or NULL when there is nothing to replace (or on ENOMEM: the
 * comment then goes out with the placeholder rather than not at all). */
static char *pr_fill(const char *text, const tracker_pr *pr)
{
    static const char *const names[2] = {OUTBOX_PR_URL, OUTBOX_PR_NUMBER};
    char number[24];
    const char *values[2] = {pr->url ? pr->url : "", number};
    buf b = BUF_INIT(2 * OUTBOX_PAYLOAD_MAX);
    const char *p = text;

    if (!strstr(text, OUTBOX_PR_URL) && !strstr(text, OUTBOX_PR_NUMBER))
        return NULL;
    snprintf(number, sizeof number, "%" PRId64, pr->number);
    while (*p) {
        int k = -1;
        for (int i = 0; i < 2 && k < 0; i++)
            if (strncmp(p, names[i], strlen(names[i])) == 0)
                k = i;
        if (k >= 0) {
            if (buf_puts(&b, values[k]))
                goto fail;
            p += strlen(names[k]);
        } else if (buf_putc(&b, *p++)) {
            goto fail;
        }
    }
    return buf_detach(&b);
fail:
    buf_free(&b);
    return NULL;
}

/* The status comment's next text once a PR entry moved the session to
 * state_after (its link and state are news); a payload, or NULL when there
 * is no state change or it cannot be rendered (the status then waits for
 * the pipeline's next update). Heap string. */
static char *status_after_pr(farm *f, const store_session *sess, const tracker_pr *pr,
                             const char *state_after, json_t *installation, json_t *denied)
{
    store_session now = *sess;
    report_info ri = REPORT_INFO_INIT;
    report_egress d[REPORT_EGRESS_MAX + 1];
    char *md = NULL, *out = NULL;
    size_t i;
    json_t *v;

    if (!state_after)
        return NULL;
    now.state = (char *)state_after;
    now.pr_number = pr->number;
    now.pr_url = pr->url;
    ri.session = &now;
    ri.public_url = f->cfg->public_url;
    /* the destinations the egress proxy refused in the run (pipeline_pr.c) */
    json_array_foreach(denied, i, v)
    {
        if (ri.ndenied > REPORT_EGRESS_MAX || !jstr(v, "host"))
            break;
        d[ri.ndenied].host = jstr(v, "host");
        d[ri.ndenied].port = (int)json_integer_value(json_object_get(v, "port"));
        d[ri.ndenied].reason = jstr(v, "reason");
        d[ri.ndenied].step = jstr(v, "step");
        d[ri.ndenied].count = (uint64_t)json_integer_value(json_object_get(v, "count"));
        ri.ndenied++;
    }
    ri.denied = ri.ndenied ? d : NULL;
    char *held_by = NULL; /* the hold (`/farm hold`) stays said */
    if (store_hold_get(&held_by, f->store, sess->tracker, sess->repo, sess->number) == 0)
        ri.hold = held_by;
    int rc = report_status_render(&md, &ri);
    free(held_by);
    if (rc != 0)
        return NULL;
    json_t *j = json_pack("{s:s}", "body", md);
    if (j && installation)
        json_object_set(j, "installation_id", installation);
    out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    free(md);
    return out;
}

/* The target of a comment without a session, from its payload, as a
 * session that has only tracker, repo and number (a PR's number, with
 * pr_number set, when the thread is a PR's). */
static store_session *sessionless_target(json_t *p)
{
    store_session *s = calloc(1, sizeof(*s));
    const char *tr = jstr(p, "tracker"), *repo = jstr(p, "repo");
    if (!s || !tr || !repo || !(s->tracker = strdup(tr)) || !(s->repo = strdup(repo))) {
        store_session_free(s);
        farm_error_set("outbox: a comment without a session must name its tracker and repo");
        return NULL;
    }
    s->number = json_integer_value(json_object_get(p, "number"));
    if (json_is_true(json_object_get(p, "is_pr")))
        s->pr_number = s->number;
    return s;
}

/* The entry's session (or its sessionless target), the delivery, and what
 * the store records of it (outbox_internal.h). */
void outbox__send(outbox_worker *w, outbox_entry *e)
{
    farm *f = w->s->f;
    store_session *sess = NULL;
    json_t *p = NULL;
    outcome oc = {0, "", 0, NULL};
    int rc;

    if (e->session_id > 0 && (rc = store_session_get(&sess, f->store, e->session_id))) {
        oc.fatal = rc == FARM_ENOTFOUND;
        record_failure(w, e, rc, oc.fatal, 0);
        return;
    }
    if (!(p = json_loads(e->payload ? e->payload : "", 0, NULL)) || !json_is_object(p)) {
        farm_error_set("outbox: stored payload is not a JSON object");
        record_failure(w, e, FARM_EINVALID, 1, 0);
        goto out;
    }
    if (!sess && !(sess = sessionless_target(p))) {
        record_failure(w, e, FARM_EINVALID, 1, 0);
        goto out;
    }
    oc.look = e->attempts > 1 || w->s->o.look_first;
    rc = deliver(&oc, f, e, sess, p);
    if (rc == FARM_EUNSUPPORTED && !strcmp(e->kind, OUTBOX_REACT)) {
        /* not a failure: this tracker has no such reaction */
        char why[600];
        snprintf(why, sizeof why, "EUNSUPPORTED: %s", farm_error_last());
        if (store_outbox_skip(f->store, e->id, w->owner, why) == 0)
            log_info("outbox entry skipped", "key", e->key, "kind", e->kind, "why", why);
        goto out;
    }
    if (rc) {
        record_failure(w, e, rc, oc.fatal, tracker_retry_after_ms());
        goto out;
    }
    if (!strcmp(e->kind, OUTBOX_PR)) {
        char *then = NULL;
        char then_key[256];
        int64_t seq = 0;
        const char *tc = jstr(p, "then_comment");
        char *filled = NULL;
        if (tc && (filled = pr_fill(tc, oc.pr)))
            tc = filled;
        if (tc) {
            json_t *tp = json_pack("{s:s}", "body", tc);
            json_t *inst = json_object_get(p, "installation_id");
            if (tp && inst)
                json_object_set(tp, "installation_id", inst);
            then = tp ? json_dumps(tp, JSON_COMPACT) : NULL;
            json_decref(tp);
            snprintf(then_key, sizeof then_key, "%s:comment", e->key);
        }
        char *status =
            status_after_pr(f, sess, oc.pr, jstr(p, "state_after"),
                            json_object_get(p, "installation_id"), json_object_get(p, "denied"));
        rc = store_outbox_pr_done(&seq, f->store, e->id, e->session_id, oc.pr->number, oc.pr->url,
                                  jstr(p, "state_after"), then ? then_key : NULL, then, status);
        free(status);
        free(then);
        free(filled);
        if (!rc && seq > 0)
            stream_hub_session_notify(f->streams, e->session_id, seq);
    } else {
        rc = store_outbox_sent(f->store, e->id, oc.remote[0] ? oc.remote : NULL);
    }
    if (rc)
        /* The tracker has it; the next attempt finds it by its marker. */
        log_error("outbox: sent but not recorded", "key", e->key, "error", farm_error_last());
    else
        log_info("outbox entry sent", "key", e->key, "kind", e->kind, "remote", oc.remote);
    if (!rc && !strcmp(e->kind, OUTBOX_PR) && jstr(p, "then_comment"))
        outbox_kick(f); /* its comment is due now */
out:
    tracker_pr_free(oc.pr);
    json_decref(p);
    store_session_free(sess);
}
