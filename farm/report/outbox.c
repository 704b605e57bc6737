/*
 * outbox.c - tracker side effects, exactly once: enqueueing (with the
 * payload checks) and the sender threads (see outbox.h).
 *
 * A worker loops: lease the next due entry (store_outbox.c picks only a
 * session's oldest pending entry, so a session's effects go out in order
 * while other sessions proceed on other workers), deliver it through the
 * session's tracker, record the outcome. Exactly-once rests on two things:
 * the idempotency key's marker in every body the tracker receives, and
 * looking before creating on any attempt after the first (a crash between
 * "the tracker accepted" and "the store recorded" leaves the entry pending
 * with attempts > 0). Idle workers sleep until outbox_kick(), the next
 * entry's due time, or a short poll for entries enqueued by other
 * processes (`farm issue`, another farm sharing the store).
 */
#include "outbox.h"
#include "farm/handle/handle.h"
#include "report.h"
#include "farm/handle/handle.h"
#include "farm/store/store_outbox.h"
#include "trackers.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "vcs/tracker/tracker.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64
#define MAX_LABELS  100
#define OWNER_MAX   160

struct outbox_sender {
    farm *f;
    outbox_opts o;
    char owner[OWNER_MAX]; /* "<host>:<pid>:<start ms>"; workers add "/w<i>" */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* kicks and stop; CLOCK_MONOTONIC */
    int stopping;
    uint64_t kicks;
    int nthreads;
    pthread_t threads[MAX_WORKERS];
};

typedef struct worker {
    struct outbox_sender *s;
    int index;
    char owner[OWNER_MAX + 16];
    unsigned int seed; /* jitter */
} worker;

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- keys and enqueueing ------------------------------------------------- */

void outbox_key(char *out, size_t n, int64_t session_id, const char *name)
{
    snprintf(out, n, "s%" PRId64 ":%s", session_id, name ? name : "");
}

static int kind_known(const char *kind)
{
    static const char *const kinds[] = {OUTBOX_COMMENT, OUTBOX_STATUS, OUTBOX_REACT,
                                        OUTBOX_LABELS,  OUTBOX_PR,     OUTBOX_REVIEW_REPLY};
    for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kind, kinds[i]) == 0)
            return 1;
    return 0;
}

static int want_string(json_t *p, const char *field, const char *kind)
{
    if (!json_is_string(json_object_get(p, field))) {
        farm_error_set("outbox: a %s entry needs a string \"%s\"", kind, field);
        return FARM_EINVALID;
    }
    return 0;
}

static int want_string_array(json_t *p, const char *field)
{
    json_t *a = json_object_get(p, field), *v;
    size_t i;
    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > MAX_LABELS) {
        farm_error_set("outbox: \"%s\" must be an array of at most %d strings", field, MAX_LABELS);
        return FARM_EINVALID;
    }
    json_array_foreach(a, i, v) if (!json_is_string(v))
    {
        farm_error_set("outbox: \"%s\" must hold strings only", field);
        return FARM_EINVALID;
    }
    return 0;
}

static int state_known(const char *state)
{
    for (const char *const *st = store_session_states(); *st; st++)
        if (strcmp(*st, state) == 0)
            return 1;
    return 0;
}

/* What each kind's payload must hold (outbox.h), so a bad entry is refused
 * at once instead of failing on the sender later. */
static int payload_check(const char *kind, const char *key, json_t *p)
{
    json_t *inst = json_object_get(p, "installation_id");
    int rc = 0;
    if (inst && !json_is_integer(inst)) {
        farm_error_set("outbox: \"installation_id\" must be an integer");
        return FARM_EINVALID;
    }
    if (!strcmp(kind, OUTBOX_COMMENT) || !strcmp(kind, OUTBOX_STATUS))
        return want_string(p, "body", kind);
    if (!strcmp(kind, OUTBOX_REACT)) {
        json_t *cid = json_object_get(p, "comment_id");
        if (cid && !json_is_integer(cid)) {
            farm_error_set("outbox: \"comment_id\" must be an integer");
            return FARM_EINVALID;
        }
        return want_string(p, "reaction", kind);
    }
    if (!strcmp(kind, OUTBOX_LABELS)) {
        if ((rc = want_string_array(p, "add")) || (rc = want_string_array(p, "remove")))
            return rc;
        return 0;
    }
    if (!strcmp(kind, OUTBOX_PR)) {
        json_t *then = json_object_get(p, "then_comment");
        json_t *after = json_object_get(p, "state_after");
        if ((rc = want_string(p, "title", kind)))
            return rc;
        if (after && (!json_is_string(after) || !state_known(json_string_value(after)))) {
            farm_error_set("outbox: \"state_after\" is not a session state");
            return FARM_EINVALID;
        }
        if (then) {
            char tkey[256];
            if (!json_is_string(then)) {
                farm_error_set("outbox: \"then_comment\" must be a string");
                return FARM_EINVALID;
            }
            snprintf(tkey, sizeof tkey, "%s:comment", key);
            if (tracker_key_check(tkey) != 0) {
                farm_error_set("outbox: key %s is too long to carry a then_comment", key);
                return FARM_EINVALID;
            }
        }
        return 0;
    }
    /* OUTBOX_REVIEW_REPLY */
    if (!json_is_integer(json_object_get(p, "comment_id")) ||
        json_integer_value(json_object_get(p, "comment_id")) <= 0) {
        farm_error_set("outbox: a review_reply entry needs a positive \"comment_id\"");
        return FARM_EINVALID;
    }
    return want_string(p, "body", kind);
}

/* A comment without a session names its target itself. */
static int sessionless_check(json_t *p)
{
    int rc;
    json_t *n = json_object_get(p, "number");
    if ((rc = want_string(p, "tracker", OUTBOX_COMMENT)) ||
        (rc = want_string(p, "repo", OUTBOX_COMMENT)))
        return rc;
    if (!json_is_integer(n) || json_integer_value(n) <= 0) {
        farm_error_set("outbox: a comment without a session needs a positive \"number\"");
        return FARM_EINVALID;
    }
    return 0;
}

int outbox_tx_enqueue(store_tx *tx, int64_t session_id, const char *kind, const char *key,
                      const char *payload_json)
{
    json_t *p = NULL;
    json_error_t jerr;
    int rc;

    if (session_id < 0 || (session_id == 0 && (!kind || strcmp(kind, OUTBOX_COMMENT) != 0))) {
        farm_error_set("outbox: an entry needs a session (only a comment may go without one)");
        return FARM_EINVALID;
    }
    if (!kind_known(kind)) {
        farm_error_set("outbox: unknown entry kind \"%s\"", kind ? kind : "(null)");
        return FARM_EINVALID;
    }
    if (!key || tracker_key_check(key) != 0) {
        farm_error_set("outbox: bad idempotency key \"%s\"", key ? key : "(null)");
        return FARM_EINVALID;
    }
    if (!payload_json || strlen(payload_json) > OUTBOX_PAYLOAD_MAX) {
        farm_error_set("outbox: a payload is JSON text of at most %u bytes", OUTBOX_PAYLOAD_MAX);
        return FARM_EINVALID;
    }
    if (!(p = json_loads(payload_json, 0, &jerr)) || !json_is_object(p)) {
        farm_error_set("outbox: payload is not a JSON object%s%s", p ? "" : ": ",
                       p ? "" : jerr.text);
        json_decref(p);
        return FARM_EINVALID;
    }
    rc = payload_check(kind, key, p);
    if (rc == 0 && session_id == 0)
        rc = sessionless_check(p);
    json_decref(p);
    if (rc)
        return rc;
    return store_tx_outbox_insert(NULL, tx, session_id, kind, key, payload_json);
}

typedef struct enqueue_args {
    int64_t session_id;
    const char *kind, *key, *payload;
} enqueue_args;

static int enqueue_write(store_tx *tx, void *arg)
{
    enqueue_args *a = arg;
    return outbox_tx_enqueue(tx, a->session_id, a->kind, a->key, a->payload);
}

int outbox_enqueue(store *s, int64_t session_id, const char *kind, const char *key,
                   const char *payload_json)
{
    enqueue_args a = {session_id, kind, key, payload_json};
    return store_write(s, enqueue_write, &a);
}

int outbox_tx_status(store_tx *tx, int64_t session_id, const char *payload_json)
{
    char key[256];
    int rc;
    if (session_id <= 0) {
        farm_error_set("outbox: an entry needs a session");
        return FARM_EINVALID;
    }
    if ((rc = store_tx_outbox_status_key(key, sizeof key, tx, session_id)))
        return rc;
    return outbox_tx_enqueue(tx, session_id, OUTBOX_STATUS, key, payload_json);
}

static int status_write(store_tx *tx, void *arg)
{
    enqueue_args *a = arg;
    return outbox_tx_status(tx, a->session_id, a->payload);
}

int outbox_status(store *s, int64_t session_id, const char *payload_json)
{
    enqueue_args a = {session_id, OUTBOX_STATUS, NULL, payload_json};
    return store_write(s, status_write, &a);
}

int outbox_stats_get(outbox_stats *out, store *s)
{
    return store_outbox_stats(out, s);
}

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
    const char *names[MAX_LABELS];
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        json_t *a = json_object_get(p, fields[k]), *v;
        size_t i, n = 0;
        json_array_foreach(a, i, v) if (n < MAX_LABELS) names[n++] = json_string_value(v);
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
static int64_t retry_delay(worker *w, int rc, int64_t attempts, int64_t retry_after)
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

static void record_failure(worker *w, const outbox_entry *e, int rc, int fatal, int64_t retry_after)
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
                             const char *state_after, json_t *installation)
{
    store_session now = *sess;
    report_info ri = REPORT_INFO_INIT;
    char *md = NULL, *out = NULL;

    if (!state_after)
        return NULL;
    now.state = (char *)state_after;
    now.pr_number = pr->number;
    now.pr_url = pr->url;
    ri.session = &now;
    ri.public_url = f->cfg->public_url;
    if (report_status_render(&md, &ri) != 0)
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

static void process(worker *w, outbox_entry *e)
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
        char *status = status_after_pr(f, sess, oc.pr, jstr(p, "state_after"),
                                       json_object_get(p, "installation_id"));
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

/* ---- the workers --------------------------------------------------------- */

/* How long an idle worker sleeps: until the next entry is due, at most
 * poll_ms, at least a few ms (a due entry that another sender leased first
 * must not make the loop spin). */
static int64_t idle_wait(worker *w)
{
    const outbox_opts *o = &w->s->o;
    int64_t next = 0, now = clock_wall_ms(), d = o->poll_ms;
    if (store_outbox_next_due(&next, w->s->f->store) == 0 && next > 0 && next - now < d)
        d = next - now;
    return d < 5 ? 5 : d;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct outbox_sender *s = w->s;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stopping;
        uint64_t seen = s->kicks;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;

        outbox_entry *e = NULL;
        int rc = store_outbox_lease(&e, s->f->store, w->owner, clock_wall_ms(), s->o.lease_ms);
        if (rc == 0) {
            process(w, e);
            outbox_entry_free(e);
            continue;
        }
        if (rc != FARM_ENOTFOUND)
            log_warn("outbox: cannot lease entries", "error", farm_error_last());

        int64_t d = rc == FARM_ENOTFOUND ? idle_wait(w) : s->o.poll_ms;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += d / 1000;
        ts.tv_nsec += (d % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->kicks == seen)
            if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&s->mu);
    }
    free(w);
    return NULL;
}

/* Leases held by processes of this host that are gone (a kill -9, a
 * crash) are released at once instead of waiting out lease_ms; other
 * hosts' leases are left to expire. Owners read "<host>:<pid>:<ms>/w<i>". */
static void release_dead_leases(struct outbox_sender *s, const char *host)
{
    char **owners = NULL;
    size_t n = 0;
    if (store_outbox_lease_owners(&owners, &n, s->f->store) != 0) {
        log_warn("outbox: cannot list leases", "error", farm_error_last());
        return;
    }
    size_t hl = strlen(host);
    for (size_t i = 0; i < n; i++) {
        const char *o = owners[i];
        char *end = NULL;
        if (strncmp(o, host, hl) != 0 || o[hl] != ':')
            continue;
        long pid = strtol(o + hl + 1, &end, 10);
        if (pid <= 0 || !end || *end != ':')
            continue;
        /* our own pid may be another farm handle of this process: alive */
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        int64_t count = 0;
        if (store_outbox_release(&count, s->f->store, o, clock_wall_ms() + s->o.no_answer_ms) ==
                0 &&
            count > 0) {
            char c[24];
            snprintf(c, sizeof c, "%" PRId64, count);
            log_info("outbox: released the leases of a process that is gone", "owner", o, "entries",
                     c);
        }
    }
    store_outbox_lease_owners_free(owners, n);
}

int outbox_start_opts(farm *f, const outbox_opts *opts)
{
    static const outbox_opts defaults = OUTBOX_OPTS_INIT;
    struct outbox_sender *s = NULL;
    pthread_condattr_t ca;
    char host[64] = "localhost";
    int rc = 0;

    pthread_mutex_lock(&start_lock);
    if (f->outbox)
        goto out;
    if (!(s = calloc(1, sizeof(*s)))) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    s->f = f;
    s->o = opts ? *opts : defaults;
    if (s->o.workers <= 0)
        s->o.workers = defaults.workers;
    if (s->o.workers > MAX_WORKERS)
        s->o.workers = MAX_WORKERS;
    if (s->o.lease_ms <= 0)
        s->o.lease_ms = defaults.lease_ms;
    if (s->o.backoff_ms <= 0)
        s->o.backoff_ms = defaults.backoff_ms;
    if (s->o.max_backoff_ms < s->o.backoff_ms)
        s->o.max_backoff_ms = s->o.backoff_ms;
    if (s->o.no_answer_ms < 0)
        s->o.no_answer_ms = 0;
    if (s->o.max_attempts <= 0)
        s->o.max_attempts = defaults.max_attempts;
    if (s->o.permanent_attempts <= 0)
        s->o.permanent_attempts = 1;
    if (s->o.poll_ms <= 0)
        s->o.poll_ms = defaults.poll_ms;
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (*c == ':' || *c == '/')
            *c = '_';
    if (s->o.owner)
        snprintf(s->owner, sizeof s->owner, "%s", s->o.owner);
    else
        snprintf(s->owner, sizeof s->owner, "%s:%ld:%" PRId64, host, (long)getpid(),
                 clock_wall_ms());
    s->o.owner = NULL; /* not kept: the caller's string */
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!opts || !opts->owner)
        release_dead_leases(s, host);

    for (int i = 0; i < s->o.workers; i++) {
        worker *w = calloc(1, sizeof(*w));
        if (!w) {
            farm_error_set("out of memory");
            rc = FARM_ENOMEM;
            break;
        }
        w->s = s;
        w->index = i;
        w->seed = (unsigned)(clock_mono_ns() ^ ((uint64_t)getpid() << 16) ^ (unsigned)i);
        snprintf(w->owner, sizeof w->owner, "%s/w%d", s->owner, i);
        if (pthread_create(&s->threads[i], NULL, worker_main, w) != 0) {
            free(w);
            farm_error_set("outbox: cannot start a sender thread");
            rc = FARM_EIO;
            break;
        }
        s->nthreads++;
    }
    f->outbox = s;
    if (rc) {
        pthread_mutex_unlock(&start_lock);
        outbox_stop(f);
        return rc;
    }
    {
        char n[16];
        snprintf(n, sizeof n, "%d", s->nthreads);
        log_info("outbox sender started", "workers", n, "owner", s->owner);
    }
out:
    pthread_mutex_unlock(&start_lock);
    return rc;
}

int outbox_start(farm *f)
{
    return outbox_start_opts(f, NULL);
}

void outbox_stop(farm *f)
{
    pthread_mutex_lock(&start_lock);
    struct outbox_sender *s = f->outbox;
    f->outbox = NULL;
    pthread_mutex_unlock(&start_lock);
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void outbox_kick(farm *f)
{
    pthread_mutex_lock(&start_lock);
    struct outbox_sender *s = f->outbox;
    if (s) {
        pthread_mutex_lock(&s->mu);
        s->kicks++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&start_lock);
}
