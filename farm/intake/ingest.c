/*
 * ingest.c - from a tracker event to durable work (see ingest.h).
 *
 * Everything happens in one store write, so it is one savepoint of one
 * group commit: record the delivery (the UNIQUE constraint rejects a
 * duplicate before anything else is written), decide what the event means
 * for the repository's trigger rules and the issue's session, write the
 * session, its first event and its `run` job, and set the delivery's outcome.
 * The caller's HTTP answer goes out after the commit, never before.
 *
 * Who may start work: only actors with write access (GitHub's OWNER, MEMBER
 * and COLLABORATOR, or a repository's allowed_actors list, which is how Azure
 * DevOps is configured); never a bot, and never the farm itself.
 */
#include "ingest.h"
#include "ci.h"
#include "choice.h"
#include "commands.h"
#include "review.h"
#include "base/error.h"
#include "base/log.h"
#include "plan.h"
#include "update.h"
#include "farm/handle/handle.h"
#include "farm/sched/scheduler.h"
#include "farm/store/store_run.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ID_MAX      256          /* a delivery id, a tracker name, an actor */
#define URL_MAX     4096         /* an issue or comment URL */
#define REPO_MAX    512          /* a repository name */
#define TITLE_MAX   1024         /* kept of an issue title */
#define COMMENT_MAX (256 * 1024) /* kept of a comment body in the session log */

typedef struct ingest_ctx {
    const config *cfg;
    const tracker_event *ev;
    ingest_result *res;
    int duplicate;
    const command *cmd; /* the `/farm` command that starts work, or NULL */
} ingest_ctx;

const char *ingest_outcome_name(ingest_outcome o)
{
    switch (o) {
    case INGEST_ACCEPTED:
        return "accepted";
    case INGEST_IGNORED:
        return "ignored";
    case INGEST_DUPLICATE:
        return "duplicate";
    }
    return "unknown";
}

static void result_set(ingest_result *r, ingest_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void result_set(ingest_result *r, ingest_outcome o, const char *fmt, ...)
{
    va_list ap;
    r->outcome = o;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

/* ---- who sent it -------------------------------------------------------- */

/* The farm's own identity on the event's tracker. The local tracker speaks
 * as the GitHub bot login (default "farm-bot"). */
static const char *bot_identity(const config *cfg, const char *tracker)
{
    if (!strcmp(tracker, "azure"))
        return cfg->azure.bot_name;
    return cfg->github.bot_login;
}

static int from_bot(const config *cfg, const tracker_event *ev)
{
    const char *bot = bot_identity(cfg, ev->tracker);
    return ev->actor_is_bot || (ev->actor && bot && !strcasecmp(ev->actor, bot));
}

/* A comment the farm wrote itself: every comment it posts carries its
 * marker (`<!-- farm:KEY -->`, vcs/tracker/tracker.c), and text from the
 * agent or from people that it quotes has the marker defused. This holds
 * when the tracker's sender does not say "bot" and the configured identity
 * (github.bot_login, azure.bot_name) is missing or not the token's, so the
 * farm's own plan, help or status comment never steers a session. A person
 * who pastes the marker only has their own comment ignored. */
static int farm_wrote(const tracker_event *ev)
{
    return ev->comment_body && strstr(ev->comment_body, "<!-- farm:") != NULL;
}

static int in_list(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; s && list && i < n; i++)
        if (list[i] && !strcasecmp(list[i], s))
            return 1;
    return 0;
}

static int has_write_access(const config_repo *repo, const tracker_event *ev)
{
    return ev->actor_access == ACTOR_WRITE ||
           in_list(repo->allowed_actors, repo->nallowed_actors, ev->actor);
}

static const char *access_name(tracker_actor_access a)
{
    switch (a) {
    case ACTOR_WRITE:
        return "write";
    case ACTOR_NONE:
        return "none";
    default:
        return "unknown";
    }
}

/* "@farm-bot" in text as a whole mention: not "@farm-bot2", not "x@farm-bot". */
static int mentions(const char *text, const char *mention)
{
    size_t n = mention ? strlen(mention) : 0;
    if (!text || n == 0)
        return 0;
    for (const char *p = strcasestr(text, mention); p; p = strcasestr(p + 1, mention)) {
        unsigned char before = p > text ? (unsigned char)p[-1] : ' ';
        unsigned char after = (unsigned char)p[n];
        if ((isalnum(before) || before == '_' || before == '-') && mention[0] == '@')
            continue;
        if (isalnum(after) || after == '-' || after == '_')
            continue;
        return 1;
    }
    return 0;
}

/* ---- what it asks for ---------------------------------------------------- */

/* The trigger rule the event meets, described for the log and the
 * delivery's reason into rule; 0 when it meets none. */
static int trigger_rule(char *rule, size_t n, const config *cfg, const config_repo *repo,
                        const tracker_event *ev)
{
    const config_trigger *t = &repo->trigger;
    const char *bot = bot_identity(cfg, ev->tracker);

    switch (ev->kind) {
    case TEV_ISSUE_OPENED:
        if (t->on_open) {
            snprintf(rule, n, "issue opened");
            return 1;
        }
        if (t->label && in_list(ev->labels, ev->nlabels, t->label)) {
            snprintf(rule, n, "opened with label \"%s\"", t->label);
            return 1;
        }
        if (t->assignee && bot && in_list(ev->assignees, ev->nassignees, bot)) {
            snprintf(rule, n, "opened assigned to %s", bot);
            return 1;
        }
        return 0;
    case TEV_ISSUE_LABELED:
        if (t->label && ev->label && !strcasecmp(ev->label, t->label)) {
            snprintf(rule, n, "label \"%s\"", t->label);
            return 1;
        }
        return 0;
    case TEV_ISSUE_ASSIGNED:
        if (t->assignee && bot && ev->assignee && !strcasecmp(ev->assignee, bot)) {
            snprintf(rule, n, "assigned to %s", bot);
            return 1;
        }
        return 0;
    case TEV_COMMENT_CREATED:
        if (t->mention && mentions(ev->comment_body, t->mention)) {
            snprintf(rule, n, "mention %s", t->mention);
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* A heap copy of s cut to at most max bytes on a UTF-8 boundary. */
static char *cut_utf8(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return strndup(s, n);
}

/* Append body (consumed) to the session's log; the store serialises it,
 * with no parse back. */
static int append(store_tx *tx, int64_t session_id, const char *kind, const tracker_event *ev,
                  json_t *body)
{
    int rc;

    if (!body) {
        farm_error_set("ingest: out of memory");
        return FARM_ENOMEM;
    }
    if (ev->delivery_id)
        json_object_set_new(body, "delivery", json_string(ev->delivery_id));
    rc = store_tx_event_append_json(NULL, tx, session_id, kind, ev->actor, body);
    json_decref(body);
    return rc;
}

/* A comment or review into an existing session's log. */
static int append_comment(store_tx *tx, int64_t session_id, const tracker_event *ev)
{
    const char *kind = "comment";
    json_t *b = json_object();
    char *body = cut_utf8(ev->comment_body ? ev->comment_body : "", COMMENT_MAX);

    if (!b || !body) {
        json_decref(b);
        free(body);
        farm_error_set("ingest: out of memory");
        return FARM_ENOMEM;
    }
    if (ev->kind == TEV_COMMENT_EDITED)
        kind = "comment_edited";
    else if (ev->kind == TEV_REVIEW_SUBMITTED)
        kind = "review";
    else if (ev->kind == TEV_REVIEW_COMMENT)
        kind = "review_comment";
    json_object_set_new(b, "body", json_string(body));
    free(body);
    json_object_set_new(b, "is_pr", json_boolean(ev->is_pr));
    json_object_set_new(b, "number", json_integer(ev->number));
    json_object_set_new(b, "access", json_string(access_name(ev->actor_access)));
    if (ev->comment_id)
        json_object_set_new(b, "comment_id", json_integer(ev->comment_id));
    if (ev->comment_url)
        json_object_set_new(b, "url", json_string(ev->comment_url));
    if (ev->review_id)
        json_object_set_new(b, "review_id", json_integer(ev->review_id));
    if (ev->review_state)
        json_object_set_new(b, "review_state", json_string(ev->review_state));
    if (ev->path)
        json_object_set_new(b, "path", json_string(ev->path));
    if (ev->line)
        json_object_set_new(b, "line", json_integer(ev->line));
    if (ev->in_reply_to)
        json_object_set_new(b, "in_reply_to", json_integer(ev->in_reply_to));
    return append(tx, session_id, kind, ev, b);
}

/* Start work: a new session in state queued, its first event, its run job. */
static int trigger(store_tx *tx, ingest_ctx *c, const config_repo *repo, const char *rule)
{
    const tracker_event *ev = c->ev;
    store_session *active = NULL, s = {0};
    int64_t session_id = 0, job_id = 0;
    char *title = NULL;
    json_t *b;
    int rc;

    if (ev->is_pr) {
        result_set(c->res, INGEST_IGNORED, "pull requests are worked on through their issue");
        return 0;
    }
    if (from_bot(c->cfg, ev)) {
        result_set(c->res, INGEST_IGNORED, "event from a bot");
        return 0;
    }
    if (!has_write_access(repo, ev)) {
        result_set(c->res, INGEST_IGNORED, "actor lacks write access");
        return 0;
    }
    rc = store_tx_session_find(&active, tx, ev->tracker, repo->name, ev->number, 0, 1);
    if (rc == 0) {
        c->res->session_id = active->id;
        result_set(c->res, INGEST_IGNORED, "issue already has an active session");
        store_session_free(active);
        return 0;
    }
    if (rc != FARM_ENOTFOUND)
        return rc;
    char *held = NULL;
    if ((rc = store_tx_hold_get(&held, tx, ev->tracker, repo->name, ev->number)))
        return rc;
    if (held) {
        free(held);
        result_set(c->res, INGEST_IGNORED, "the issue is on hold (/farm unhold)");
        return 0;
    }
    const char *preset = NULL;
    if (!choice_preset_pick(&preset, c->cfg, repo, ev, c->cmd)) {
        /* nothing starts; the thread hears which presets are allowed */
        review_ctx rx = {c->cfg, repo, ev, 1, 0};
        char *why = choice_preset_refusal(c->cfg, repo, preset);
        if (!why) {
            farm_error_set("ingest: out of memory");
            return FARM_ENOMEM;
        }
        rc = review_tx_thread_reply(tx, &rx, "preset", why);
        free(why);
        result_set(c->res, INGEST_IGNORED, "agent preset \"%.64s\" not allowed for %s", preset,
                   repo->name);
        return rc;
    }

    if (ev->title && !(title = cut_utf8(ev->title, TITLE_MAX))) {
        farm_error_set("ingest: out of memory");
        return FARM_ENOMEM;
    }
    s.tracker = ev->tracker;
    s.repo = repo->name; /* the configured spelling */
    s.number = ev->number;
    s.title = title;
    s.url = ev->url;
    s.agent = (char *)preset;
    rc = store_tx_session_insert(&session_id, tx, &s);
    free(title);
    if (rc)
        return rc;
    int plan = plan_wanted(repo, ev, rule); /* plan first (plan.h) */
    if ((rc = store_tx_job_insert(&job_id, tx, plan ? "plan" : "run", session_id, 0)))
        return rc;
    if (!(b = json_object())) {
        farm_error_set("ingest: out of memory");
        return FARM_ENOMEM;
    }
    json_object_set_new(b, "rule", json_string(rule));
    json_object_set_new(b, "agent", json_string(preset));
    json_object_set_new(b, "number", json_integer(ev->number));
    if (ev->url)
        json_object_set_new(b, "url", json_string(ev->url));
    json_object_set_new(b, "job", json_integer(job_id));
    if (plan)
        json_object_set_new(b, "plan", json_true());
    if ((rc = append(tx, session_id, "triggered", ev, b)))
        return rc;
    c->res->session_id = session_id;
    c->res->job_id = job_id;
    result_set(c->res, INGEST_ACCEPTED, "triggered by %s", rule);
    return 0;
}

/* What the review loop (review.h) needs to know about the sender. */
static review_ctx review_ctx_of(const ingest_ctx *c, const config_repo *repo)
{
    const tracker_event *ev = c->ev;
    review_ctx r = {c->cfg, repo, ev, has_write_access(repo, ev), 0};
    /* GitHub says who lacks access; elsewhere the allowlist decides */
    int unknown_off_github = ev->actor_access == ACTOR_UNKNOWN && strcmp(ev->tracker, "github");
    r.known_other = !r.writer && (ev->actor_access == ACTOR_NONE || unknown_off_github);
    return r;
}

/* The review loop's decision, as the delivery's outcome. */
static void review_result_take(ingest_ctx *c, int64_t session_id, const review_result *r)
{
    c->res->session_id = session_id;
    c->res->job_id = r->job_id;
    result_set(c->res, session_id || r->acted ? INGEST_ACCEPTED : INGEST_IGNORED, "%s",
               r->reason[0] ? r->reason : "added to the session");
}

/* A `/farm` command (s: the issue's or PR's session, or NULL). */
static int steer(store_tx *tx, ingest_ctx *c, const config_repo *repo, const command *cmd,
                 const store_session *s)
{
    review_ctx rc_ = review_ctx_of(c, repo);
    review_result r;
    int rc = review_tx_command(&r, tx, &rc_, cmd, s);
    if (rc)
        return rc;
    if (r.start_session) {
        c->cmd = cmd;
        rc = trigger(tx, c, repo,
                     cmd->kind == COMMAND_RETRY  ? "/farm retry"
                     : cmd->kind == COMMAND_PLAN ? "/farm plan"
                                                 : "/farm run");
        c->cmd = NULL;
        return rc;
    }
    review_result_take(c, s ? s->id : 0, &r);
    return 0;
}

/* A comment, review or review comment: into the session's log when the
 * issue or PR has one; then a command steers the session, a review starts
 * a revision (review.h), a reply to the agent's question resumes it.
 * Without a session it may start work by mentioning the bot or `/farm run`. */
static int on_comment(store_tx *tx, ingest_ctx *c, const config_repo *repo)
{
    const tracker_event *ev = c->ev;
    store_session *s = NULL;
    command cmd = {0};
    char rule[128];
    int rc;

    if (from_bot(c->cfg, ev)) {
        result_set(c->res, INGEST_IGNORED, "event from a bot");
        return 0;
    }
    if (farm_wrote(ev)) {
        result_set(c->res, INGEST_IGNORED,
                   "a comment the farm wrote (it carries the farm's marker)");
        return 0;
    }
    /* a command counts in a new comment, review or review comment, never in an edit */
    if (ev->kind != TEV_COMMENT_EDITED && (rc = commands_parse(&cmd, ev->comment_body)))
        return rc;
    /* reviews always concern a pull request, whatever the parser flagged */
    int by_pr = ev->is_pr || ev->kind == TEV_REVIEW_SUBMITTED || ev->kind == TEV_REVIEW_COMMENT;
    rc = store_tx_session_find(&s, tx, ev->tracker, repo->name, ev->number, by_pr, 0);
    if (rc == 0) {
        int64_t id = s->id, job = 0;
        /* a member's reply to the agent's question resumes the session */
        int answers = !strcmp(s->state, "waiting") && ev->kind == TEV_COMMENT_CREATED && !by_pr &&
                      has_write_access(repo, ev) && cmd.kind == COMMAND_NONE;
        if ((rc = append_comment(tx, id, ev)))
            goto out;
        if (cmd.kind != COMMAND_NONE) {
            rc = steer(tx, c, repo, &cmd, s);
            goto out;
        }
        if (!by_pr && ev->kind == TEV_COMMENT_CREATED && !strcmp(s->state, "awaiting_approval")) {
            /* a comment on a plan waiting for approval revises it (plan.h) */
            review_ctx rc_ = review_ctx_of(c, repo);
            review_result r;
            if (!(rc = plan_tx_feedback(&r, tx, &rc_, s)))
                review_result_take(c, id, &r);
            goto out;
        }
        if (!answers && review_is_trigger(c->cfg, repo, ev)) {
            review_ctx rc_ = review_ctx_of(c, repo);
            review_result r;
            if (!(rc = review_tx_trigger(&r, tx, &rc_, s)))
                review_result_take(c, id, &r);
            goto out;
        }
        if (answers && (rc = store_tx_job_insert(&job, tx, "answer", id, 0)))
            goto out;
        c->res->session_id = id;
        c->res->job_id = job;
        if (job)
            result_set(c->res, INGEST_ACCEPTED, "answer to session %lld", (long long)id);
        else
            result_set(c->res, INGEST_ACCEPTED, "added to session %lld", (long long)id);
        goto out;
    }
    if (rc != FARM_ENOTFOUND)
        return rc;
    if (cmd.kind != COMMAND_NONE)
        return steer(tx, c, repo, &cmd, NULL);
    if (trigger_rule(rule, sizeof(rule), c->cfg, repo, ev))
        return trigger(tx, c, repo, rule);
    result_set(c->res, INGEST_IGNORED, "no session for this %s and no trigger",
               by_pr ? "pull request" : "issue");
    return 0;
out:
    store_session_free(s);
    return rc;
}

/* The issue (or the session's PR) was closed: the session's log says so
 * ("issue_closed", "pr_closed"). A closed issue stops the work with a cancel
 * job (unless the session is in review with no revision pending); a closed
 * PR ends the session through review_tx_pr_closed() (merged: done; closed
 * unmerged: cancelled). */
static int on_closed(store_tx *tx, ingest_ctx *c, const config_repo *repo)
{
    const tracker_event *ev = c->ev;
    int by_pr = ev->kind == TEV_PR_CLOSED || ev->is_pr;
    store_session *s = NULL;
    json_t *b;
    int rc;

    rc = store_tx_session_find(&s, tx, ev->tracker, repo->name, ev->number, by_pr, 1);
    if (rc == FARM_ENOTFOUND) {
        result_set(c->res, INGEST_IGNORED, "no active session for this %s",
                   by_pr ? "pull request" : "issue");
        return 0;
    }
    if (rc)
        return rc;
    int64_t id = s->id, job = 0;
    int pending = 0;
    /* work in progress on a closed issue stops: a run at work sees the
     * event, and the cancel job ends a session that is queued or waiting.
     * A session in review is left to its pull request's fate, unless a
     * revision waits or runs (review.h). */
    if (!by_pr && !strcmp(s->state, "review") && (rc = review_tx_work_pending(&pending, tx, id))) {
        store_session_free(s);
        return rc;
    }
    int cancel = !by_pr && (strcmp(s->state, "review") != 0 || pending);
    if (!(b = json_object())) {
        store_session_free(s);
        farm_error_set("ingest: out of memory");
        return FARM_ENOMEM;
    }
    json_object_set_new(b, "number", json_integer(ev->number));
    if (by_pr)
        json_object_set_new(b, "merged", json_boolean(ev->merged));
    rc = append(tx, id, by_pr ? "pr_closed" : "issue_closed", ev, b);
    if (!rc && by_pr) { /* merged: done; closed unmerged: cancelled (review.h) */
        review_ctx rc_ = review_ctx_of(c, repo);
        review_result r;
        if (!(rc = review_tx_pr_closed(&r, tx, &rc_, s)))
            job = r.job_id;
    }
    store_session_free(s);
    if (rc)
        return rc;
    if (cancel && (rc = store_tx_job_insert(&job, tx, "cancel", id, 0)))
        return rc;
    c->res->job_id = job;
    c->res->session_id = id;
    result_set(c->res, INGEST_ACCEPTED, "%s closed; session %lld notified",
               by_pr ? "pull request" : "issue", (long long)id);
    return 0;
}

/* A CI check completed: the CI fix loop's intake (ci.h). Checks run on the
 * farm's own pushes, so the sender being the farm or a bot says nothing. */
static int on_check(store_tx *tx, ingest_ctx *c, const config_repo *repo)
{
    review_ctx rc_ = review_ctx_of(c, repo);
    review_result r;
    int64_t sid = 0;
    int rc = ci_tx_check(&r, &sid, tx, &rc_);
    if (!rc) {
        review_result_take(c, sid, &r);
        if (!r.acted)
            c->res->outcome = INGEST_IGNORED;
    }
    return rc;
}

/* A branch moved: the base of the repository brings an update to each of
 * its open farm pull requests (update.h). Not limited to people: a merge
 * queue's bot moves the base too, and the farm never pushes to a base. */
static int on_branch_pushed(store_tx *tx, ingest_ctx *c, const config_repo *repo)
{
    review_ctx rc_ = review_ctx_of(c, repo);
    review_result r;
    int rc = update_tx_base_pushed(&r, tx, &rc_);
    if (rc)
        return rc;
    c->res->job_id = r.job_id;
    result_set(c->res, r.acted ? INGEST_ACCEPTED : INGEST_IGNORED, "%s", r.reason);
    return 0;
}

/* The tracker says a pull request does not merge cleanly: its session's
 * branch is updated. The farm's own pushes (a bot's events) never count. */
static int on_unmergeable(store_tx *tx, ingest_ctx *c, const config_repo *repo)
{
    store_session *s = NULL;
    review_result r;
    int rc;

    if (from_bot(c->cfg, c->ev)) {
        result_set(c->res, INGEST_IGNORED, "event from a bot");
        return 0;
    }
    rc = store_tx_session_find(&s, tx, c->ev->tracker, repo->name, c->ev->number, 1, 1);
    if (rc == FARM_ENOTFOUND) {
        result_set(c->res, INGEST_IGNORED, "no active session for this pull request");
        return 0;
    }
    if (rc)
        return rc;
    review_ctx rc_ = review_ctx_of(c, repo);
    if (!(rc = update_tx_unmergeable(&r, tx, &rc_, s)))
        review_result_take(c, s->id, &r);
    store_session_free(s);
    return rc;
}

static int decide(store_tx *tx, ingest_ctx *c)
{
    const tracker_event *ev = c->ev;
    const config_repo *repo;
    char rule[128];

    switch (ev->kind) {
    case TEV_PING:
        result_set(c->res, INGEST_IGNORED, "ping");
        return 0;
    case TEV_INSTALLATION:
    case TEV_INSTALLATION_REPOS:
        result_set(c->res, INGEST_IGNORED, "installation event");
        return 0;
    default:
        break;
    }
    if (!ev->repo || !(repo = config_repo_find(c->cfg, ev->tracker, ev->repo))) {
        result_set(c->res, INGEST_IGNORED, "not a configured repository");
        return 0;
    }
    if (ev->kind == TEV_CHECK_COMPLETED)
        return on_check(tx, c, repo);
    if (ev->kind == TEV_BRANCH_PUSHED)
        return on_branch_pushed(tx, c, repo);
    if (ev->number <= 0) {
        result_set(c->res, INGEST_IGNORED, "no issue or pull request in the event");
        return 0;
    }
    switch (ev->kind) {
    case TEV_PR_OPENED:
    case TEV_PR_UPDATED:
        if (ev->unmergeable)
            return on_unmergeable(tx, c, repo);
        break;
    default:
        break;
    }
    switch (ev->kind) {
    case TEV_ISSUE_CLOSED:
    case TEV_PR_CLOSED:
        return on_closed(tx, c, repo);
    case TEV_COMMENT_CREATED:
    case TEV_COMMENT_EDITED:
    case TEV_REVIEW_SUBMITTED:
    case TEV_REVIEW_COMMENT:
        return on_comment(tx, c, repo);
    default:
        break;
    }
    if (trigger_rule(rule, sizeof(rule), c->cfg, repo, ev))
        return trigger(tx, c, repo, rule);
    result_set(c->res, INGEST_IGNORED, "%s does not trigger work",
               ev->kind == TEV_OTHER ? (ev->event ? ev->event : "event")
                                     : tracker_event_kind_name(ev->kind));
    return 0;
}

static int ingest_write(store_tx *tx, void *arg)
{
    ingest_ctx *c = arg;
    const tracker_event *ev = c->ev;
    store_delivery d = {0};
    int64_t delivery = 0;
    int rc;

    d.tracker = ev->tracker;
    d.delivery_id = ev->delivery_id;
    d.event = ev->event;
    d.action = ev->action;
    d.repo = ev->repo;
    d.number = ev->number;
    rc = store_tx_delivery_insert(&delivery, tx, &d);
    if (rc == FARM_EEXISTS)
        c->duplicate = 1;
    if (rc)
        return rc;
    if ((rc = decide(tx, c)))
        return rc;
    return store_tx_delivery_outcome_set(tx, delivery, ingest_outcome_name(c->res->outcome),
                                         c->res->reason, c->res->session_id, c->res->job_id);
}

static int check_string(const char *what, const char *s, size_t max, int required)
{
    if (!s || !*s) {
        if (!required)
            return 0;
        farm_error_set("ingest: the event has no %s", what);
        return FARM_EINVALID;
    }
    if (strlen(s) > max) {
        farm_error_set("ingest: the event's %s is longer than %zu bytes", what, max);
        return FARM_EINVALID;
    }
    return 0;
}

/* ---- messages through the API ------------------------------------------ */

struct answer_ctx {
    int64_t session_id;
    int64_t job_id;
};

static int answer_write(store_tx *tx, void *arg)
{
    struct answer_ctx *a = arg;
    store_session *s = NULL;
    int rc = store_tx_session_get(&s, tx, a->session_id);
    if (rc)
        return rc;
    if (!strcmp(s->state, "waiting"))
        rc = store_tx_job_insert(&a->job_id, tx, "answer", a->session_id, 0);
    store_session_free(s);
    return rc;
}

int farm_session_message_note(farm *f, int64_t session_id, int64_t *job_id)
{
    struct answer_ctx a = {session_id, 0};
    int rc = store_write(f->store, answer_write, &a);
    if (job_id)
        *job_id = rc ? 0 : a.job_id;
    if (!rc && a.job_id)
        farm_jobs_kick(f); /* the scheduler takes the job at once */
    return rc;
}

/* The event's strings within bounds: 0 or FARM_EINVALID. */
static int ingest_check(const tracker_event *ev)
{
    int rc;
    if ((rc = check_string("tracker", ev->tracker, ID_MAX, 1)) ||
        (rc = check_string("delivery id", ev->delivery_id, ID_MAX, 1)) ||
        (rc = check_string("event name", ev->event, ID_MAX, 0)) ||
        (rc = check_string("action", ev->action, ID_MAX, 0)) ||
        (rc = check_string("repository", ev->repo, REPO_MAX, 0)) ||
        (rc = check_string("actor", ev->actor, ID_MAX, 0)) ||
        (rc = check_string("url", ev->url, URL_MAX, 0)) ||
        (rc = check_string("comment url", ev->comment_url, URL_MAX, 0)) ||
        (rc = check_string("pushed branch", ev->pushed_branch, ID_MAX, 0)))
        return rc;
    return 0;
}

/* After the write's commit (rc: what the store said): a duplicate becomes
 * an outcome, a failure clears *out, new work wakes the scheduler. */
static int ingest_finish(farm *f, const ingest_ctx *c, int rc)
{
    const tracker_event *ev = c->ev;
    ingest_result *out = c->res;

    if (rc == FARM_EEXISTS && c->duplicate) {
        memset(out, 0, sizeof(*out));
        result_set(out, INGEST_DUPLICATE, "delivery recorded before");
        rc = 0;
    } else if (rc) {
        log_error("delivery not recorded", "tracker", ev->tracker, "delivery", ev->delivery_id,
                  "error", farm_error_last());
        memset(out, 0, sizeof(*out));
        return rc == FARM_EEXISTS ? FARM_EIO : rc;
    }
    if (out->job_id)
        farm_jobs_kick(f); /* committed: the scheduler takes the job at once */
    return 0;
}

int farm_ingest(farm *f, const tracker_event *ev, ingest_result *out)
{
    ingest_ctx c = {0};
    int rc;

    assert(f && ev && out);
    memset(out, 0, sizeof(*out));
    if ((rc = ingest_check(ev)))
        return rc;

    c.cfg = f->cfg;
    c.ev = ev;
    c.res = out;
    if ((rc = ingest_finish(f, &c, store_write(f->store, ingest_write, &c))))
        return rc;
    if (out->outcome == INGEST_ACCEPTED)
        log_info("delivery accepted", "tracker", ev->tracker, "delivery", ev->delivery_id, "reason",
                 out->reason);
    else
        log_debug("delivery", "tracker", ev->tracker, "delivery", ev->delivery_id, "outcome",
                  ingest_outcome_name(out->outcome), "reason", out->reason);
    return 0;
}

/* ---- without waiting ------------------------------------------------------- */

typedef struct ingest_async {
    farm *f;
    ingest_ctx c;
    ingest_result res;
    ingest_done_fn done;
    void *arg;
} ingest_async;

static int ingest_async_write(store_tx *tx, void *arg)
{
    return ingest_write(tx, &((ingest_async *)arg)->c);
}

/* On the store's writer thread, once the delivery is durable. */
static void ingest_async_done(void *arg, int rc)
{
    ingest_async *a = arg;
    rc = ingest_finish(a->f, &a->c, rc);
    a->done(a->arg, rc, &a->res);
    free(a);
}

int farm_ingest_submit(farm *f, const tracker_event *ev, ingest_done_fn done, void *arg)
{
    ingest_async *a;
    int rc;

    if (!f || !ev || !done) {
        farm_error_set("ingest: no event or no completion");
        return FARM_EINVALID;
    }
    if ((rc = ingest_check(ev)))
        return rc;
    if (!(a = calloc(1, sizeof(*a)))) {
        farm_error_set("ingest: out of memory");
        return FARM_ENOMEM;
    }
    a->f = f;
    a->c.cfg = f->cfg;
    a->c.ev = ev;
    a->c.res = &a->res;
    a->done = done;
    a->arg = arg;
    if ((rc = store_write_async(f->store, ingest_async_write, a, ingest_async_done)))
        free(a);
    return rc;
}
