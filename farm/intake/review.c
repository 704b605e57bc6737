/*
 * review.c - the review loop and `/farm` commands (see review.h).
 *
 * Everything here runs inside ingest's write (the replies a revision
 * posts afterwards are farm/report/review_replies.c), so a decision, the
 * job it queues, the session log entry that says so and the reply it sends
 * (an outbox entry) are one transaction: a crash leaves all of them or none,
 * and a redelivered webhook is a duplicate before it gets here.
 *
 * Debounce. A revision job is due debounce_s after the trigger that made
 * it; every trigger while it is still queued attaches to it (a
 * "revision_queued" event with "attached"), so a review with ten comments
 * is one revision. The job reads all of them when it starts.
 *
 * One run per session. The scheduler never leases two jobs of one session;
 * a trigger while a run is at work queues a job behind it, and the tracker
 * hears so once per queued job (key "s<id>:j<job>:queued").
 */
#include "review.h"
#include "choice.h"
#include "plan.h"
#include "update.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"
#include "farm/store/store_review.h"
#include "farm/store/store_run.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ------------------------------------------------------- */

static void reason_set(review_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reason_set(review_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

/* Serialise and free a JSON object built here. */
static char *json_take(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static int oom(void)
{
    farm_error_set("review: out of memory");
    return FARM_ENOMEM;
}

static int event_add(store_tx *tx, int64_t sid, const char *kind, const char *actor, json_t *body)
{
    char *text = json_take(body);
    if (!text)
        return oom();
    int rc = store_tx_event_append(NULL, tx, sid, kind, actor, text);
    free(text);
    return rc;
}

/* The seq of the newest event of s (the comment being acted on, which
 * ingest appended just before): a key unique to this comment. */
static int64_t newest_seq(store_tx *tx, const store_session *s)
{
    store_session *now = NULL;
    int64_t seq = s->last_seq;
    if (store_tx_session_get(&now, tx, s->id) == 0)
        seq = now->last_seq;
    store_session_free(now);
    return seq;
}

/* Enqueue comment payload p (taken) under key, with the event's GitHub App
 * installation; session_id 0: a comment without a session
 * (farm/report/outbox.h). */
static int comment_enqueue(store_tx *tx, const tracker_event *ev, int64_t session_id,
                           const char *key, json_t *p)
{
    if (p && ev->installation_id)
        json_object_set_new(p, "installation_id", json_integer(ev->installation_id));
    char *text = json_take(p);
    if (!text)
        return oom();
    int rc = outbox_tx_enqueue(tx, session_id, OUTBOX_COMMENT, key, text);
    free(text);
    return rc;
}

/* A comment where the event came from: on the pull request when it was
 * about the PR (and the session knows its PR), else on the issue. */
static int reply(store_tx *tx, const review_ctx *c, const store_session *s, const char *name,
                 const char *body)
{
    const tracker_event *ev = c->ev;
    int about_pr = ev->is_pr || ev->kind == TEV_REVIEW_SUBMITTED || ev->kind == TEV_REVIEW_COMMENT;
    char key[256];
    outbox_key(key, sizeof(key), s->id, name);
    return comment_enqueue(
        tx, ev, s->id, key,
        json_pack("{s:s,s:b}", "body", body, "on_pr", about_pr && s->pr_number > 0));
}

/* "@alice" on GitHub, "alice@example.com" elsewhere (no mention syntax). */
static void who(char *out, size_t n, const review_ctx *c)
{
    const char *a = c->ev->actor ? c->ev->actor : "there";
    snprintf(out, n, "%s%s", strcmp(c->ev->tracker, "github") == 0 && c->ev->actor ? "@" : "", a);
}

/* At most one polite refusal per session, and only to someone known to
 * lack write access (an unknown one is not told anything). */
static int polite(store_tx *tx, const review_ctx *c, const store_session *s)
{
    char name[128], body[512];
    if (!s || !c->known_other)
        return 0;
    who(name, sizeof(name), c);
    snprintf(body, sizeof(body),
             "Thanks, %s. Only people with write access to this repository can start or steer "
             "the farm, so this was not acted on. A maintainer can take it from here "
             "(`/farm help` lists what the farm understands).",
             name);
    return reply(tx, c, s, "polite", body);
}

/* The sticky status comment, updated to the session as it is now. */
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
    if (store_session_state_is_final(s->state))
        ri.ended_ms = clock_wall_ms();
    char *by = NULL;
    if ((rc = store_tx_hold_get(&by, tx, s->tracker, s->repo, s->number)))
        goto out;
    ri.hold = by;
    rc = report_status_render(&body, &ri);
    free(by);
    if (rc)
        goto out;
    json_t *p = json_pack("{s:s}", "body", body);
    if (p && c->ev->installation_id)
        json_object_set_new(p, "installation_id", json_integer(c->ev->installation_id));
    if (!(text = json_take(p))) {
        rc = oom();
        goto out;
    }
    rc = outbox_tx_status(tx, sid, text);
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
    if (rc)
        return rc;
    return event_add(tx, s->id, "state", c->ev->actor,
                     json_pack("{s:s,s:s,s:s}", "from", s->state, "to", to, "why", why));
}

/* ---- queueing work ----------------------------------------------------------- */

/* Queue `kind` for session s, due delay_ms from now, or attach to the work
 * job already waiting (made due now when delay_ms is 0). A job queued
 * behind a run at work is announced on the tracker. */
static int queue_work(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s,
                      const char *kind, int64_t delay_ms, const char *why)
{
    int64_t queued = 0, due = 0, job = 0, now = clock_wall_ms();
    int running = 0, rc;

    if ((rc = store_tx_review_jobs(&queued, &due, &running, tx, s->id)))
        return rc;
    if (queued) {
        if (delay_ms == 0 && due > now && (rc = store_tx_review_job_due(tx, queued, now)))
            return rc;
        if ((rc = event_add(tx, s->id, "revision_queued", c->ev->actor,
                            json_pack("{s:I,s:b,s:s,s:b}", "job", (json_int_t)queued, "attached", 1,
                                      "why", why, "behind_run", running))))
            return rc;
        out->acted = 1;
        out->job_id = delay_ms == 0 ? queued : 0; /* wake the scheduler for a job made due */
        reason_set(out, "%s: joins job %lld, queued already", why, (long long)queued);
        return 0;
    }
    if ((rc = store_tx_job_insert(&job, tx, kind, s->id, now + delay_ms)))
        return rc;
    if ((rc = event_add(tx, s->id, "revision_queued", c->ev->actor,
                        json_pack("{s:I,s:s,s:b,s:s,s:I,s:b}", "job", (json_int_t)job, "kind", kind,
                                  "attached", 0, "why", why, "due_ms", (json_int_t)(now + delay_ms),
                                  "behind_run", running))))
        return rc;
    if (running) {
        char name[64];
        snprintf(name, sizeof(name), "j%lld:queued", (long long)job);
        if ((rc = reply(tx, c, s, name,
                        "Noted. The farm is still at work on this session, so this is queued "
                        "behind the running revision and starts as soon as that run ends.")))
            return rc;
    } else {
        /* the status comment says a revision is coming (a run at work
         * keeps it up to date itself) */
        char words[96];
        if (delay_ms >= 1000)
            snprintf(words, sizeof(words), "%s queued: starts in about %lld s",
                     strcmp(kind, "revise") ? "a run is" : "a revision is",
                     (long long)(delay_ms / 1000));
        else
            snprintf(words, sizeof(words), "%s queued",
                     strcmp(kind, "revise") ? "a run is" : "a revision is");
        if ((rc = status_update(tx, c, s->id, words)))
            return rc;
    }
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "%s: %s job %lld queued%s", why, kind, (long long)job,
               running ? " behind the running one" : "");
    return 0;
}

/* ---- triggers ---------------------------------------------------------------- */

/* text mentions who ("@farm-bot") as a whole word. */
static int mentions(const char *text, const char *who_)
{
    size_t n = who_ ? strlen(who_) : 0;
    if (!text || n < 2)
        return 0;
    for (const char *p = strcasestr(text, who_); p; p = strcasestr(p + 1, who_)) {
        unsigned char before = p > text ? (unsigned char)p[-1] : ' ';
        unsigned char after = (unsigned char)p[n];
        if (isalnum(before) || before == '_' || before == '-')
            continue;
        if (isalnum(after) || after == '-' || after == '_')
            continue;
        return 1;
    }
    return 0;
}

static int mentions_bot(const config *cfg, const config_repo *repo, const char *text)
{
    char at[300];
    if (repo->trigger.mention && mentions(text, repo->trigger.mention))
        return 1;
    if (cfg->github.bot_login) {
        snprintf(at, sizeof(at), "@%s", cfg->github.bot_login);
        char *b = strstr(at, "[bot]"); /* "@farm-bot[bot]" is written "@farm-bot" */
        if (b)
            *b = '\0';
        if (mentions(text, at))
            return 1;
    }
    return 0;
}

int review_is_trigger(const config *cfg, const config_repo *repo, const tracker_event *ev)
{
    switch (ev->kind) {
    case TEV_REVIEW_SUBMITTED:
        return ev->review_state && (!strcasecmp(ev->review_state, "changes_requested") ||
                                    !strcasecmp(ev->review_state, "commented"));
    case TEV_REVIEW_COMMENT:
        return 1;
    case TEV_COMMENT_CREATED:
        if (!ev->is_pr)
            return 0;
        if (!strcmp(ev->tracker, "azure"))
            return 1; /* Azure PR threads are its review comments */
        return mentions_bot(cfg, repo, ev->comment_body);
    default:
        return 0;
    }
}

static const char *trigger_name(const tracker_event *ev)
{
    switch (ev->kind) {
    case TEV_REVIEW_SUBMITTED:
        return "review";
    case TEV_REVIEW_COMMENT:
        return "review comment";
    default:
        return "pull request comment";
    }
}

int review_tx_trigger(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    memset(out, 0, sizeof(*out));
    if (s->pr_number <= 0) {
        reason_set(out, "session %lld has no pull request yet", (long long)s->id);
        return 0;
    }
    if (store_session_state_is_final(s->state)) {
        reason_set(out, "session %lld has ended (%s)", (long long)s->id, s->state);
        return 0;
    }
    if (!c->writer) {
        reason_set(out, "%s from someone without write access", trigger_name(c->ev));
        return polite(tx, c, s);
    }
    char *held = NULL;
    int rc = store_tx_hold_get(&held, tx, s->tracker, s->repo, s->number);
    if (rc)
        return rc;
    if (held) { /* the comment is in the log; no revision starts */
        free(held);
        reason_set(out, "%s: the issue is on hold (/farm unhold)", trigger_name(c->ev));
        return 0;
    }
    return queue_work(out, tx, c, s, "revise", (int64_t)c->cfg->review.debounce_s * 1000,
                      trigger_name(c->ev));
}

/* ---- commands ------------------------------------------------------------------ */

static int cmd_reply(store_tx *tx, const review_ctx *c, const store_session *s, const char *what,
                     const char *body)
{
    char name[96];
    snprintf(name, sizeof(name), "e%lld:%s", (long long)newest_seq(tx, s), what);
    return reply(tx, c, s, name, body);
}

static int cmd_help(store_tx *tx, const review_ctx *c, const store_session *s, const command *cmd)
{
    buf b = BUF_INIT(8192);
    int rc;
    if (cmd->kind == COMMAND_UNKNOWN)
        buf_printf(&b, "`/farm %s` is not a command the farm knows.\n\n", cmd->word);
    buf_puts(&b, commands_help_text());
    rc = cmd_reply(tx, c, s, "help", buf_cstr(&b));
    buf_free(&b);
    return rc;
}

/* `/farm help`, `/farm status` or an unknown command where the farm has no
 * session: the answer goes to the thread itself, once per command comment
 * (the key is a digest of where it was written and which comment it was). */
/* The outbox key of a comment answering the event itself where the farm
 * has no session: a digest of where it was written and which comment or
 * delivery it was, and what the answer is. 0, or -1 when there is nowhere
 * to answer. */
static int thread_key(char *key, size_t n, const tracker_event *ev, const char *what)
{
    char where[1024], hex[65];
    unsigned char d[32];

    if (!ev->tracker || !ev->repo || ev->number <= 0)
        return -1;
    snprintf(where, sizeof(where), "%s\n%s\n%lld\n%lld\n%s", ev->tracker, ev->repo,
             (long long)ev->number, (long long)ev->comment_id,
             ev->comment_id ? "" : (ev->delivery_id ? ev->delivery_id : ""));
    if (crypto_sha256(d, where, strlen(where)) != 0)
        return -1;
    crypto_hex(hex, d, 12);
    snprintf(key, n, "n:%s:%s", hex, what);
    return 0;
}

int review_tx_thread_reply(store_tx *tx, const review_ctx *c, const char *what, const char *body)
{
    const tracker_event *ev = c->ev;
    char key[128];
    if (thread_key(key, sizeof(key), ev, what) != 0)
        return 0; /* nowhere to answer */
    return comment_enqueue(tx, ev, 0, key,
                           json_pack("{s:s,s:b,s:s,s:s,s:I,s:b}", "body", body, "on_pr", ev->is_pr,
                                     "tracker", ev->tracker, "repo", ev->repo, "number",
                                     (json_int_t)ev->number, "is_pr", ev->is_pr));
}

static int reply_sessionless(store_tx *tx, const review_ctx *c, const command *cmd)
{
    const tracker_event *ev = c->ev;
    buf b = BUF_INIT(8192);
    char key[128];

    if (thread_key(key, sizeof(key), ev, command_kind_name(cmd->kind)) != 0)
        return 0; /* nowhere to answer */
    if (cmd->kind == COMMAND_STATUS)
        buf_printf(&b,
                   "The farm has no session for this %s yet. A maintainer can start one with "
                   "`/farm run`%s.\n\n",
                   ev->is_pr ? "pull request" : "issue",
                   ev->is_pr ? "" : " (or the trigger label the farm is configured with)");
    else if (cmd->kind == COMMAND_UNKNOWN)
        buf_printf(&b, "`/farm %s` is not a command the farm knows.\n\n", cmd->word);
    buf_puts(&b, commands_help_text());
    json_t *p = json_pack("{s:s,s:b,s:s,s:s,s:I,s:b}", "body", buf_cstr(&b), "on_pr", ev->is_pr,
                          "tracker", ev->tracker, "repo", ev->repo, "number",
                          (json_int_t)ev->number, "is_pr", ev->is_pr);
    buf_free(&b);
    return comment_enqueue(tx, ev, 0, key, p);
}

static int cmd_status(store_tx *tx, const review_ctx *c, const store_session *s)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL;
    int rc;

    ri.session = s;
    ri.public_url = c->cfg->public_url;
    if (store_session_state_is_final(s->state))
        ri.ended_ms = s->updated_ms;
    if ((rc = report_status_render(&body, &ri)))
        return rc;
    rc = cmd_reply(tx, c, s, "status", body);
    free(body);
    return rc;
}

/* What ingest's cancel path and farm_session_cancel() write: the log entry a
 * run at work notices, and the job that ends the session. */
static int cmd_stop(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    char body[256];
    int64_t job = 0;
    int rc;

    if (store_session_state_is_final(s->state)) {
        snprintf(body, sizeof(body), "Nothing to stop: session %lld has ended (%s).",
                 (long long)s->id, s->state);
        reason_set(out, "/farm stop: session %lld has ended", (long long)s->id);
        return cmd_reply(tx, c, s, "stop", body);
    }
    if ((rc = event_add(tx, s->id, "cancel_requested", c->ev->actor,
                        json_pack("{s:s,s:s}", "by", c->ev->actor ? c->ev->actor : "unknown", "via",
                                  "/farm stop"))) ||
        (rc = store_tx_job_insert(&job, tx, "cancel", s->id, 0)))
        return rc;
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "/farm stop: cancel job %lld", (long long)job);
    return cmd_reply(tx, c, s, "stop",
                     "Stopping: the running work ends and the session is cancelled.");
}

/* `/farm retry` on a failed or cancelled session: it comes back to life
 * where it stopped (its branch, pushed work and pull request). */
static int revive(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s)
{
    const char *kind = s->pr_number > 0 ? "revise" : "run";
    int64_t job = 0;
    int rc;

    if ((rc = state_set(tx, c, s, "queued", "/farm retry")) ||
        (rc = store_tx_job_insert(&job, tx, kind, s->id, 0)) ||
        (rc = event_add(
             tx, s->id, "retry", c->ev->actor,
             json_pack("{s:s,s:I,s:s}", "from", s->state, "job", (json_int_t)job, "kind", kind))) ||
        (rc = status_update(tx, c, s->id, "queued again (/farm retry)")))
        return rc;
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "/farm retry: session %lld queued again (%s job %lld)", (long long)s->id, kind,
               (long long)job);
    return 0;
}

/* A reply about cmd: on the session's thread, or the event's without one. */
static int say(store_tx *tx, const review_ctx *c, const store_session *s, const char *what,
               const char *body)
{
    return s ? cmd_reply(tx, c, s, what, body) : review_tx_thread_reply(tx, c, what, body);
}

/* After `/farm unhold`: the jobs runs parked while the issue was on hold
 * (store_hold.h) are queued again, each unless its session has ended or has
 * work queued or at work already. *job is the last one queued. */
static int unpark(int64_t *job, store_tx *tx, const review_ctx *c, const store_hold_parked *v,
                  size_t n)
{
    for (size_t i = 0; i < n; i++) {
        store_session *ps = NULL;
        int64_t queued = 0, due = 0, id = 0;
        int running = 0, rc = store_tx_session_get(&ps, tx, v[i].session_id);
        if (rc == FARM_ENOTFOUND)
            continue;
        if (rc)
            return rc;
        int skip = store_session_state_is_final(ps->state);
        if (!skip && (rc = store_tx_review_jobs(&queued, &due, &running, tx, ps->id))) {
            store_session_free(ps);
            return rc;
        }
        if (!skip && !queued && !running &&
            (!(rc = store_tx_job_insert(&id, tx, v[i].kind, ps->id, 0))))
            rc = event_add(tx, ps->id, "unparked", c->ev->actor,
                           json_pack("{s:I,s:s}", "job", (json_int_t)id, "kind", v[i].kind));
        store_session_free(ps);
        if (rc)
            return rc;
        if (id)
            *job = id;
    }
    return 0;
}

/* `/farm hold` and `/farm unhold`: the issue's hold (store_hold.h), a log
 * entry and the status comment when there is a session, and a reply. */
static int cmd_hold(review_result *out, store_tx *tx, const review_ctx *c, const command *cmd,
                    const store_session *s)
{
    const tracker_event *ev = c->ev;
    int on = cmd->kind == COMMAND_HOLD, rc;
    int64_t number = s ? s->number : ev->number, job = 0; /* a PR's hold is its issue's */
    const char *repo = s ? s->repo : c->repo->name;
    char *by = NULL, body[512];
    store_hold_parked *parked = NULL;
    size_t nparked = 0;

    if ((rc = store_tx_hold_get(&by, tx, ev->tracker, repo, number)))
        return rc;
    if (on == (by != NULL)) {
        snprintf(body, sizeof(body),
                 on ? "This is on hold already (by %s): nothing new starts until `/farm unhold`."
                    : "This is not on hold: nothing to lift.",
                 by ? by : "someone");
        free(by);
        reason_set(out, "/farm %s: no change", command_kind_name(cmd->kind));
        out->acted = 1;
        return say(tx, c, s, command_kind_name(cmd->kind), body);
    }
    free(by);
    if (on)
        rc = store_tx_hold_set(tx, ev->tracker, repo, number, ev->actor);
    else if (!(rc = store_tx_hold_lift(&parked, &nparked, tx, ev->tracker, repo, number)))
        rc = unpark(&job, tx, c, parked, nparked);
    free(parked);
    if (rc)
        return rc;
    if (s && ((rc = event_add(tx, s->id, on ? "hold" : "unhold", ev->actor,
                              json_pack("{s:s,s:I}", "via", on ? "/farm hold" : "/farm unhold",
                                        "number", (json_int_t)number))) ||
              (rc = status_update(tx, c, s->id, on ? "on hold" : "hold lifted"))))
        return rc;
    out->acted = 1;
    out->job_id = job; /* the scheduler wakes for work queued again */
    reason_set(out, "/farm %s: issue %lld %s", command_kind_name(cmd->kind), (long long)number,
               on    ? "on hold"
               : job ? "hold lifted, parked work queued again"
                     : "hold lifted");
    return say(tx, c, s, command_kind_name(cmd->kind),
               on    ? "On hold: nothing new starts on this issue or its pull request (new work, "
                       "revisions, retries, also work already queued) until someone with write "
                       "access comments `/farm unhold`. A run already at work goes on."
               : job ? "Hold lifted: the work that was waiting when the hold came starts now, "
                       "and triggers and `/farm run` start work again."
                     : "Hold lifted: triggers and `/farm run` start work again. What was asked "
                       "for during the hold does not start by itself; comment `/farm run` to "
                       "go on.");
}

int review_tx_command(review_result *out, store_tx *tx, const review_ctx *c, const command *cmd,
                      const store_session *s)
{
    memset(out, 0, sizeof(*out));
    if (!c->writer) {
        reason_set(out, "/farm %s from someone without write access", command_kind_name(cmd->kind));
        return polite(tx, c, s);
    }
    switch (cmd->kind) {
    case COMMAND_NONE:
        return 0;
    case COMMAND_HELP:
    case COMMAND_UNKNOWN:
    case COMMAND_STATUS:
        if (!s) {
            out->acted = 1;
            reason_set(out, "/farm %s answered (no session)", command_kind_name(cmd->kind));
            return reply_sessionless(tx, c, cmd);
        }
        out->acted = 1;
        reason_set(out, "/farm %s answered", command_kind_name(cmd->kind));
        return cmd->kind == COMMAND_STATUS ? cmd_status(tx, c, s) : cmd_help(tx, c, s, cmd);
    case COMMAND_STOP:
        if (!s) {
            reason_set(out, "/farm stop: no session");
            return 0;
        }
        return cmd_stop(out, tx, c, s);
    case COMMAND_HOLD:
    case COMMAND_UNHOLD:
        return cmd_hold(out, tx, c, cmd, s);
    case COMMAND_UPDATE:
        return update_tx_command(out, tx, c, s);
    case COMMAND_PLAN:
    case COMMAND_APPROVE:
        return plan_tx_command(out, tx, c, cmd, s);
    case COMMAND_RUN:
    case COMMAND_RETRY:
        break;
    }
    int rc;
    char *by = NULL;
    if ((rc = store_tx_hold_get(&by, tx, c->ev->tracker, s ? s->repo : c->repo->name,
                                s ? s->number : c->ev->number)))
        return rc;
    if (by) {
        char body[512];
        snprintf(body, sizeof(body),
                 "This issue is on hold (by %s), so nothing was started. Comment `/farm unhold` "
                 "first, then `/farm %s`.",
                 by, command_kind_name(cmd->kind));
        free(by);
        out->acted = 1;
        reason_set(out, "/farm %s: the issue is on hold", command_kind_name(cmd->kind));
        return say(tx, c, s, "held", body);
    }
    if (s && cmd->kind == COMMAND_RETRY) {
        /* a session still in its plan phase retries the plan, never the
         * implementation: that takes `/farm approve` (plan.h) */
        int planning = 0;
        if ((rc = plan_tx_phase(&planning, tx, s)))
            return rc;
        if (planning)
            return plan_tx_retry(out, tx, c, s);
    }
    if (cmd->arg_bad) {
        reason_set(out, "/farm %s: a preset name that cannot be one", command_kind_name(cmd->kind));
        out->acted = 1;
        return say(tx, c, s, "badarg",
                   "That is not a preset name: `/farm run <preset>` takes one word such as "
                   "`claude` or `codex`. `/farm help` lists the commands.");
    }
    if (cmd->kind == COMMAND_RUN && cmd->arg[0]) {
        const char *preset = NULL;
        if (!choice_preset_pick(&preset, c->cfg, c->repo, c->ev, cmd)) {
            char *why = choice_preset_refusal(c->cfg, c->repo, preset);
            if (!why)
                return oom();
            rc = say(tx, c, s, "preset", why);
            free(why);
            out->acted = 1;
            reason_set(out, "/farm run %s: preset not allowed for %s", cmd->arg, c->repo->name);
            return rc;
        }
        const char *now = s && s->agent ? s->agent : config_repo_agent_default(c->cfg, c->repo);
        if (s && !store_session_state_is_final(s->state) && strcasecmp(now, preset) != 0) {
            char body[512];
            snprintf(body, sizeof(body),
                     "Session %lld works with the agent preset `%s`. To start over with `%s`, "
                     "comment `/farm stop` and then `/farm run %s`.",
                     (long long)s->id, now, preset, preset);
            out->acted = 1;
            reason_set(out, "/farm run %s: the session runs %s", cmd->arg, now);
            return say(tx, c, s, "preset", body);
        }
    }
    if (s && !store_session_state_is_final(s->state))
        return queue_work(out, tx, c, s, s->pr_number > 0 ? "revise" : "run", 0,
                          cmd->kind == COMMAND_RUN ? "/farm run" : "/farm retry");
    if (s && cmd->kind == COMMAND_RETRY && strcmp(s->state, "done") != 0)
        return revive(out, tx, c, s);
    if (c->ev->is_pr) {
        reason_set(out, "/farm %s on a pull request whose session ended",
                   command_kind_name(cmd->kind));
        return s ? cmd_reply(tx, c, s, "run",
                             "This session has ended. `/farm run` on the issue starts new work.")
                 : 0;
    }
    out->start_session = 1; /* ingest starts it, as any trigger would */
    return 0;
}

int review_tx_work_pending(int *out, store_tx *tx, int64_t session_id)
{
    int64_t queued = 0, due = 0;
    int running = 0;
    int rc = store_tx_review_jobs(&queued, &due, &running, tx, session_id);
    *out = !rc && (queued || running);
    return rc;
}

/* ---- pull request closed ------------------------------------------------------ */

int review_tx_pr_closed(review_result *out, store_tx *tx, const review_ctx *c,
                        const store_session *s)
{
    const char *to = c->ev->merged ? "done" : "cancelled";
    int64_t queued = 0, due = 0, job = 0;
    int running = 0, rc;

    memset(out, 0, sizeof(*out));
    if (store_session_state_is_final(s->state)) {
        reason_set(out, "session %lld had ended (%s)", (long long)s->id, s->state);
        return 0;
    }
    if ((rc = store_tx_review_jobs(&queued, &due, &running, tx, s->id)))
        return rc;
    /* a run at work stops: the scheduler stops a run whose session has a
     * cancel job waiting; the job finds the session ended and does nothing */
    if (running && (rc = store_tx_job_insert(&job, tx, "cancel", s->id, 0)))
        return rc;
    if ((rc = state_set(tx, c, s, to,
                        c->ev->merged ? "pull request merged" : "pull request closed")) ||
        (rc = status_update(tx, c, s->id,
                            c->ev->merged ? "done: the pull request was merged"
                                          : "cancelled: the pull request was closed unmerged")))
        return rc;
    out->acted = 1;
    out->job_id = job;
    reason_set(out, "pull request %s; session %lld %s", c->ev->merged ? "merged" : "closed",
               (long long)s->id, to);
    return 0;
}
