/*
 * pipeline.c - one run of a session, from a leased job to a pushed branch
 * and a pull request (see pipeline.h).
 *
 * The run walks its steps in order: fetch, worktree, setup, agent rounds
 * and test rounds, commit, push, pr. Every step appends a "step" event
 * ("started", then "done" or "failed", with what it made: the worktree's
 * path and commits, the agent's summary, the test result, the commit and
 * the pushed oid), and the "done" event is durable before the next step
 * begins. A run taken up again after a crash (same job, its "run_started"
 * event in the log) reads those checkpoints and skips every step whose
 * products still exist; when the worktree is gone it starts over from the
 * worktree step. The push always names the oid the farm pushed last (a
 * "pushed" event) as its lease, so two runs can never push two histories.
 *
 * Session state, the event that records the change and the tracker side
 * effects it calls for (status comment, milestones, the PR) are written in
 * one transaction (pl_tx), so a crash never leaves a comment without its
 * state or the reverse; the outbox's idempotency keys ("s<id>:r<run>:...")
 * make a repeated step harmless.
 */
#include "pipeline.h"
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/strv.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"
#include "farm/report/review_replies.h"
#include "farm/store/store_hold.h"
#include "farm/store/store_review.h"
#include "farm/store/store_run.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a phase of the run returns to go on to the next one; anything else
 * is the job's result and ends the run there (0: the job is finished,
 * whatever the session's outcome). */
#define RUN_ON 1

/* An update run's merge step, done: the base merged and its conflicts. A
 * clean merge counts as agent round 1. */
static void merge_load(pl_progress *p, json_t *b)
{
    size_t i, n = 0;
    json_t *f, *files = json_object_get(b, "conflicts");

    if (json_is_true(json_object_get(b, "up_to_date")))
        return;
    p->merge = 1;
    pl_copy_oid(p->merge_base, json_object_get(b, "base"));
    strv_list_free(p->conflicts);
    p->conflicts = NULL;
    json_array_foreach(files, i, f)
    {
        if (json_is_string(f))
            strv_list_add(&p->conflicts, &n, json_string_value(f));
    }
    if (!p->conflicts && p->agent_round == 0) {
        p->agent_round = 1;
        p->agent_exit = 0;
    }
}

/* This run's checkpoints: its "step ... done" events. */
static int progress_load(pl_progress *p, pl_run *r)
{
    static const char *const kinds[] = {"step", NULL};
    int64_t after = r->start_seq;
    int rc = 0;

    memset(p, 0, sizeof(*p));
    for (;;) {
        store_event *v = NULL;
        size_t n = 0;
        if ((rc = store_event_list_kinds(&v, &n, r->f->store, r->s->id, kinds, after,
                                         STORE_LIST_MAX)))
            return rc;
        for (size_t i = 0; i < n; i++) {
            json_t *b = json_loads(v[i].body, 0, NULL);
            const char *step = json_string_value(json_object_get(b, "step"));
            const char *status = json_string_value(json_object_get(b, "status"));
            int round = (int)json_integer_value(json_object_get(b, "round"));
            if (json_integer_value(json_object_get(b, "run")) != r->run_no || !step || !status ||
                strcmp(status, "done") != 0) {
                json_decref(b);
                continue;
            }
            if (!strcmp(step, "fetch")) {
                p->fetch = 1;
            } else if (!strcmp(step, "worktree")) {
                p->worktree = 1;
                pl_copy_oid(p->wt_start, json_object_get(b, "start"));
                pl_copy_oid(p->wt_head, json_object_get(b, "head"));
                /* a new worktree undoes everything after it */
                p->setup = p->agent_round = p->test_round = p->commit = p->merge = 0;
            } else if (!strcmp(step, "setup")) {
                p->setup = 1;
            } else if (!strcmp(step, "agent")) {
                p->agent_round = round;
                p->agent_exit = (int)json_integer_value(json_object_get(b, "exit"));
                p->partial = json_is_true(json_object_get(b, "partial"));
                pl_take_str(&p->summary, json_object_get(b, "summary"));
                free(p->agent_tail);
                p->agent_tail = NULL;
                pl_take_str(&p->agent_tail, json_object_get(b, "tail"));
            } else if (!strcmp(step, "test")) {
                p->test_round = round;
                p->test_status = (int)json_integer_value(json_object_get(b, "exit"));
                pl_take_str(&p->test_tail, json_object_get(b, "tail"));
            } else if (!strcmp(step, "commit")) {
                p->commit = 1;
                p->commit_empty = json_is_true(json_object_get(b, "empty"));
                pl_copy_oid(p->commit_oid, json_object_get(b, "oid"));
                if (p->commit_oid[0])
                    memcpy(p->wt_head, p->commit_oid, VCS_OID_HEXSZ);
            } else if (!strcmp(step, "merge")) {
                merge_load(p, b);
            } else if (!strcmp(step, "push")) {
                p->push = 1;
            } else if (!strcmp(step, "pr")) {
                p->pr = 1;
            }
            json_decref(b);
        }
        after = n ? v[n - 1].seq : after;
        store_event_list_free(v, n);
        if (n < STORE_LIST_MAX)
            return 0;
    }
}

/* ---- beginning a run ------------------------------------------------------------ */

typedef struct begin_ctx {
    pl_run *r;
    int over_budget; /* 1: no run left; -1: nothing to do (ended, or answered already) */
    char *started_comment;
    json_t *answer; /* an "answer" event, for the answer run's history */
    int64_t seq;
} begin_ctx;

/* The first run's "started" comment and the eyes on the issue. */
static int started_enqueue(store_tx *tx, int64_t session_id, const char *comment)
{
    char key[256];
    json_t *p = pl_comment_payload(comment);
    char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
    int rc;

    json_decref(p);
    outbox_key(key, sizeof(key), session_id, "r1:started");
    rc = text ? outbox_tx_enqueue(tx, session_id, OUTBOX_COMMENT, key, text) : FARM_ENOMEM;
    free(text);
    if (rc)
        return rc;
    outbox_key(key, sizeof(key), session_id, "r1:eyes");
    return outbox_tx_enqueue(tx, session_id, OUTBOX_REACT, key,
                             "{\"comment_id\":0,\"reaction\":\"eyes\"}");
}

/* The write that begins a run: its number, "run_started" (and the answer
 * it works on), the session to "preparing", the first run's comments and
 * the status comment. */
static int begin_fn(store_tx *tx, void *arg)
{
    begin_ctx *b = arg;
    pl_run *r = b->r;
    store_session *s = NULL;
    int64_t runs;
    pl_tx t;
    int rc;

    if ((rc = store_tx_session_get(&s, tx, r->s->id)))
        return rc;
    /* a plan round that a comment queued is superseded by the approval (its
     * "run" job is newer); a plan round that `/farm retry` queued after a
     * failed one is the session's newest job */
    int plan_over = 0;
    if (!strcmp(r->kind, "plan") && s->runs > 0 && strcmp(s->state, "awaiting_approval") != 0) {
        char last[32];
        if ((rc = store_tx_review_last_job_kind(last, sizeof(last), tx, s->id)))
            goto out;
        plan_over = strcmp(s->state, "queued") != 0 || strcmp(last, "plan") != 0;
    }
    if (store_session_state_is_final(s->state) ||
        (!strcmp(r->kind, "answer") && strcmp(s->state, "waiting") != 0) || plan_over) {
        b->over_budget = -1; /* nothing to do: ended, or the answer came in already */
        goto out;
    }
    if (!strcmp(r->kind, "update") &&
        (strcmp(s->state, "review") != 0 || s->runs >= r->cfg->budgets.max_runs)) {
        /* the base is brought in only under a pull request waiting for review
         * (a question or a plan waiting keeps its state), and an update never
         * fails a session over its run budget: it is skipped, and says so */
        rc = pl_event_tx(&b->seq, tx, s->id, "update_skipped",
                         json_pack("{s:I,s:s}", "job", (json_int_t)r->job->id, "why",
                                   strcmp(s->state, "review") != 0
                                       ? "the session is not waiting for review"
                                       : "the session used its runs (budgets.max_runs)"));
        b->over_budget = -1;
        goto out;
    }
    if (s->runs >= r->cfg->budgets.max_runs) {
        b->over_budget = 1;
        goto out;
    }
    if ((rc = store_tx_session_run_add(&runs, tx, s->id)))
        goto out;
    r->run_no = runs;
    if ((rc = pl_event_tx(&b->seq, tx, s->id, "run_started",
                          json_pack("{s:I,s:I,s:s}", "job", (json_int_t)r->job->id, "run",
                                    (json_int_t)runs, "kind", r->kind))))
        goto out;
    r->start_seq = b->seq;
    if (b->answer &&
        (rc = store_tx_event_append_json(&b->seq, tx, s->id, "answer", NULL, b->answer)))
        goto out;
    if ((rc = store_tx_session_state_set(tx, s->id, "preparing")))
        goto out;
    if ((rc = pl_event_tx(&b->seq, tx, s->id, "state",
                          json_pack("{s:s,s:s,s:I}", "from", s->state, "to", "preparing", "run",
                                    (json_int_t)runs))))
        goto out;
    if (runs == 1 && b->started_comment && (rc = started_enqueue(tx, s->id, b->started_comment)))
        goto out;
    store_session_free(s);
    s = NULL;
    if ((rc = store_tx_session_get(&s, tx, r->s->id)))
        goto out;
    pl_tx_init(&t, r);
    t.step_words = "preparing the workspace";
    rc = pl_status_enqueue(tx, &t, s);
out:
    store_session_free(s);
    return rc;
}

/* This job's run, begun before a crash? Returns 1 (r's run number and
 * start set) when there is one, 0 when not, or an error. */
static int run_find_begun(pl_run *r)
{
    static const char *const kinds[] = {"run_started", NULL};
    store_event *e = NULL;
    int rc, found = 0;

    if ((rc = store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0)))
        return rc;
    if (!e)
        return 0;
    json_t *body = json_loads(e->body, 0, NULL);
    if (json_integer_value(json_object_get(body, "job")) == r->job->id) {
        r->run_no = json_integer_value(json_object_get(body, "run"));
        r->start_seq = e->seq;
        r->started_ms = e->ts_ms;
        found = 1;
    }
    json_decref(body);
    store_event_list_free(e, 1);
    return found;
}

/* Take up a run begun before a crash. Returns 0, 1 when it had ended (the
 * job was not marked done before the crash), or an error. */
static int run_resume(pl_run *r)
{
    static const char *const fin[] = {"run_finished", NULL};
    store_event *f = NULL;
    int rc;

    if ((rc = store_event_last_kind(&f, r->f->store, r->s->id, fin, r->start_seq)))
        return rc;
    if (f) {
        store_event_list_free(f, 1);
        return 1;
    }
    log_info("run resumed", "repo", r->repo->name);
    return 0;
}

/* What the beginning write needs from outside it: the "started" comment of
 * a first run, and for an answer run the answer to the agent's question. */
static void begin_prepare(begin_ctx *b, pl_run *r)
{
    report_info ri = REPORT_INFO_INIT;

    b->r = r;
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    if (r->s->runs == 0 && report_milestone_render(&b->started_comment, REPORT_STARTED, &ri) != 0)
        log_warn("started comment not rendered", "error", farm_error_last());
    if (!strcmp(r->kind, "answer")) {
        pl_answer_info a;
        r->start_seq = 0;
        if (pl_find_answer(&a, r) == 0 && a.answer)
            b->answer = json_pack("{s:s,s:s,s:s}", "question", a.question ? a.question : "", "text",
                                  a.answer, "author", a.author ? a.author : "");
        pl_answer_info_free(&a);
    }
}

/* Begin a new run (or find this job's run begun before a crash). Returns 0,
 * 1 when the job has nothing left to do, or an error. */
static int run_begin(pl_run *r)
{
    begin_ctx b = {0};
    int rc;

    if ((rc = run_find_begun(r)) < 0)
        return rc;
    if (rc == 1)
        return run_resume(r);
    begin_prepare(&b, r);
    rc = store_write(r->f->store, begin_fn, &b);
    free(b.started_comment);
    json_decref(b.answer);
    if (rc)
        return rc;
    if (b.over_budget < 0)
        return 1;
    if (b.over_budget) {
        char reason[160];
        snprintf(reason, sizeof(reason), "the session used its %d runs (budgets.max_runs)",
                 r->cfg->budgets.max_runs);
        r->run_no = r->s->runs + 1; /* the run that was not allowed */
        pl_run_fail(r, reason, NULL);
        return 1;
    }
    r->started_ms = clock_wall_ms();
    stream_hub_session_notify(r->f->streams, r->s->id, b.seq);
    outbox_kick(r->f);
    log_info("run started", "repo", r->repo->name, "kind", r->kind);
    return 0;
}

/* A "cancel" job: the session stops; a run at work elsewhere sees the
 * cancel event and stops too. */
static int job_cancel(pl_run *r)
{
    char *dd = realpath(r->cfg->data_dir, NULL);
    pl_tx t;

    if (dd)
        snprintf(r->wt_path, sizeof(r->wt_path), "%s/work/s%lld", dd, (long long)r->s->id);
    free(dd);
    if (store_session_state_is_final(r->s->state))
        return 0;
    pl_tx_init(&t, r);
    t.state = "cancelled";
    t.step_words = "cancelled";
    t.skip_if_final = 1;
    pl_tx_event(&t, "cancel", json_pack("{s:I}", "job", (json_int_t)r->job->id));
    int rc = pl_tx_commit(&t);
    if (!rc)
        vcs_tree_remove(r->wt_path);
    return rc;
}

static int paths_init(pl_run *r)
{
    char *dd = realpath(r->cfg->data_dir, NULL);
    int rc = 0;
    if (!dd) {
        farm_error_set("pipeline: data directory %s: %s", r->cfg->data_dir, strerror(errno));
        return FARM_EIO;
    }
    if (strlen(dd) > PATH_MAX - 128 ||
        snprintf(r->wt_path, sizeof(r->wt_path), "%s/work/s%lld", dd, (long long)r->s->id) >=
            (int)sizeof(r->wt_path) ||
        snprintf(r->run_dir, sizeof(r->run_dir), "%s/runs/s%lld-r%lld", dd, (long long)r->s->id,
                 (long long)r->run_no) >= (int)sizeof(r->run_dir) ||
        snprintf(r->out_dir, sizeof(r->out_dir), "%s/out", r->run_dir) >= (int)sizeof(r->out_dir) ||
        snprintf(r->prompt_path, sizeof(r->prompt_path), "%s/prompt.md", r->run_dir) >=
            (int)sizeof(r->prompt_path)) {
        farm_error_set("pipeline: data directory path too long: %s", dd);
        free(dd);
        return FARM_ETOOBIG;
    }
    if (r->sandboxed && geteuid() == 0) {
        /* the sandbox runs as another uid: it must be able to reach the
         * worktree, the mirror and the run directory (0711: no listing) */
        char p[PATH_MAX + 16];
        pl_make_searchable(dd);
        snprintf(p, sizeof(p), "%s/work", dd);
        if (!(rc = pl_mkdir_p(p, 0711)))
            pl_make_searchable(p);
        snprintf(p, sizeof(p), "%s/runs", dd);
        if (!rc && !(rc = pl_mkdir_p(p, 0711)))
            pl_make_searchable(p);
    }
    if (!rc && !(rc = pl_mkdir_p(r->run_dir, 0711)) && !(rc = pl_mkdir_p(r->out_dir, 0700))) {
        chmod(r->run_dir, 0711);
        if (r->sandbox_uid && chown(r->out_dir, r->sandbox_uid, r->sandbox_uid) < 0) {
            farm_error_set("pipeline: cannot hand %s to the sandbox: %s", r->out_dir,
                           strerror(errno));
            rc = FARM_EIO;
        }
    }
    /* with a setup command, HOME is a directory of the run's: what setup
     * leaves there is the agent's and the tests' too (and cached) */
    pl_env_id(r->env_id, r->repo);
    if (!rc && r->repo->setup) {
        snprintf(r->home_dir, sizeof(r->home_dir), "%s/home", r->run_dir);
        if ((rc = pl_mkdir_p(r->home_dir, 0700)) == 0 && mkdir(r->home_dir, 0700) < 0 &&
            errno != EEXIST)
            rc = FARM_EIO;
        if (!rc && r->sandbox_uid && chown(r->home_dir, r->sandbox_uid, r->sandbox_uid) < 0) {
            farm_error_set("pipeline: cannot hand %s to the sandbox: %s", r->home_dir,
                           strerror(errno));
            rc = FARM_EIO;
        }
    }
    free(dd);
    return rc;
}

/* An error from a step: what it means for the session and the job. */
static int step_error(pl_run *r, int rc, const char *step)
{
    char reason[1024];
    int asked = pl_cancel_requested(r); /* also sets r->cancelled for a request */
    if (rc == FARM_ECANCELLED || asked) {
        if (!r->cancelled) /* lease lost or shutdown: the job goes on elsewhere */
            return FARM_ECANCELLED;
        pl_run_cancelled(r);
        return 0;
    }
    switch (rc) {
    case FARM_EAUTH:
    case FARM_ENOTFOUND:
    case FARM_EINVALID:
    case FARM_ECONFLICT:
    case FARM_ETOOBIG:
    case FARM_EUNSUPPORTED:
        snprintf(reason, sizeof(reason), "%s: %s", step, farm_error_last());
        pl_run_fail(r, reason, NULL);
        return 0;
    default:
        log_warn("run step failed; the job will be tried again", "step", step, "error",
                 farm_error_last());
        return FARM_EAGAIN;
    }
}

/* ---- the phases of a run ----------------------------------------------------------- */

/* RUN_ON after a step that went well, else what its error means. */
static int after_step(pl_run *r, int rc, const char *step)
{
    return rc == 0 ? RUN_ON : step_error(r, rc, step);
}

/* RUN_ON unless the session has been asked to stop. */
static int cancel_check(pl_run *r)
{
    return pl_cancel_requested(r) ? step_error(r, FARM_ECANCELLED, "cancel") : RUN_ON;
}

/* The session's agent preset (label `agent:<preset>`, `/farm run <preset>`,
 * else the repository's default, recorded when the session began), with
 * its agent.presets settings: when that is not the config's agent as it
 * stands, r->cfg becomes a shallow copy of the config that names it
 * (config_agent_for()). */
static int agent_choose(pl_run *r)
{
    const char *want = r->s->agent && *r->s->agent ? r->s->agent : config_agent_default(r->f->cfg);

    if (strcasecmp(want, config_agent_default(r->f->cfg)) != 0 &&
        !config_repo_agent_allowed(r->f->cfg, r->repo, want)) {
        farm_error_set("pipeline: the session's agent preset \"%s\" is no longer allowed for %s "
                       "(repos[].agents)",
                       want, r->repo->name);
        return FARM_EINVALID;
    }
    if (config_agent_for(&r->agent_cfg, r->f->cfg, want)) {
        r->cfg = &r->agent_cfg;
        log_info("agent preset for the session", "preset", want);
    }
    return 0;
}

/* The run's context: the session, its repository and its branch. */
static int run_open(pl_run *r, farm *f, const store_job *job, pipeline_ctl *ctl)
{
    int rc;

    r->f = f;
    r->cfg = f->cfg;
    r->job = job;
    r->ctl = ctl;
    r->kind = job->kind;
    r->sandboxed = !r->cfg->sandbox.mode || strcmp(r->cfg->sandbox.mode, "unsafe-none") != 0;
    if (r->sandboxed && geteuid() == 0)
        r->sandbox_uid = PL_SANDBOX_UID_BASE + (unsigned)(job->session_id & 0x0fffffff);
    if ((rc = store_session_get(&r->s, f->store, job->session_id)))
        return rc;
    if (!(r->repo = config_repo_find(r->cfg, r->s->tracker, r->s->repo))) {
        farm_error_set("pipeline: %s is no longer configured", r->s->repo);
        return FARM_ENOTFOUND;
    }
    if ((rc = agent_choose(r)))
        return rc;
    if (r->s->branch && vcs_branch_name_valid(r->s->branch)) {
        snprintf(r->branch, sizeof(r->branch), "%s", r->s->branch);
        return 0;
    }
    return vcs_branch_name(r->branch, sizeof(r->branch), r->s->number, r->s->title);
}

struct park_ctx {
    pl_run *r;
    int held;
    int64_t seq;
};

static int park_fn(store_tx *tx, void *arg)
{
    struct park_ctx *p = arg;
    const store_session *s = p->r->s;
    int rc = store_tx_hold_park(&p->held, tx, s->tracker, s->repo, s->number, s->id, p->r->kind);
    if (rc || !p->held)
        return rc;
    return pl_event_tx(&p->seq, tx, s->id, "parked",
                       json_pack("{s:I,s:s,s:s}", "job", (json_int_t)p->r->job->id, "kind",
                                 p->r->kind, "why", "the issue is on hold (/farm unhold)"));
}

/* The issue is on hold (`/farm hold`, farm/store/store_hold.h): a job on
 * its first attempt ends without starting, parked under the hold, which
 * queues it again when lifted; a later attempt (a run begun before a
 * crash) goes on. Returns 1 when parked, 0 to go on, or an error. */
static int hold_park(pl_run *r)
{
    struct park_ctx p = {r, 0, 0};
    if (r->job->attempts > 1)
        return 0;
    int rc = store_write(r->f->store, park_fn, &p);
    if (rc)
        return rc;
    if (p.held) {
        stream_hub_session_notify(r->f->streams, r->s->id, p.seq);
        log_info("job parked: the issue is on hold", "repo", r->repo->name, "kind", r->kind);
    }
    return p.held;
}

/* Begin the run (unless the job has nothing to do), its time limits, its
 * directories, and what it did before a crash. */
static int run_prepare(pl_run *r, pl_progress *p)
{
    int rc;

    if (strcmp(r->kind, "run") != 0 && strcmp(r->kind, "revise") != 0 &&
        strcmp(r->kind, "answer") != 0 && strcmp(r->kind, "ci") != 0 &&
        strcmp(r->kind, "update") != 0 && strcmp(r->kind, "plan") != 0) {
        farm_error_set("pipeline: unknown job kind '%s'", r->kind);
        return FARM_EINVALID;
    }
    if (store_session_state_is_final(r->s->state)) {
        log_info("job for an ended session skipped", "state", r->s->state);
        return 0;
    }
    if ((rc = hold_park(r)) != 0)
        return rc == 1 ? 0 : rc;
    if (!strcmp(r->kind, "ci") && (rc = pl_ci_settle(r)) != 1)
        return rc; /* nothing to fix (0), or try again later */
    if ((rc = run_begin(r)) != 0)
        return rc == 1 ? 0 : rc;
    r->wall_end_ms = r->started_ms + (int64_t)r->cfg->budgets.run_wall_s * 1000;
    r->partial_at_ms = r->wall_end_ms - (int64_t)r->cfg->budgets.partial_margin_s * 1000;
    if ((rc = paths_init(r)))
        return step_error(r, rc, "preparing");
    if ((rc = pl_gateway_begin(r)) || (rc = pl_egress_begin(r)))
        return step_error(r, rc, "preparing");
    if ((rc = pl_image_resolve(r)))
        return step_error(r, rc, "image");
    if ((rc = progress_load(p, r)))
        return rc;
    r->partial = p->partial;
    return RUN_ON;
}

/* The mirror fetched, the worktree made (or reopened) and set up. */
static int run_workspace(pl_run *r, pl_progress *p)
{
    int rc;

    if ((rc = cancel_check(r)) != RUN_ON ||
        (rc = after_step(r, pl_step_fetch(r, p), "fetch")) != RUN_ON ||
        (rc = after_step(r, pl_step_worktree(r, p), "worktree")) != RUN_ON)
        return rc;
    if ((rc = pl_step_setup(r, p)))
        return rc == 1 ? 0 : step_error(r, rc, "setup");
    if (!strcmp(r->kind, "update") && !p->commit && (rc = pl_step_merge(r, p)))
        return rc == 1 ? 0 : step_error(r, rc, "merge");
    return RUN_ON;
}

/* Agent and test rounds: the tests after each agent round, and the agent
 * again on failing tests while rounds and time remain. */
static int run_rounds(pl_run *r, pl_progress *p)
{
    int rc, max_rounds = 1 + r->repo->max_fix_rounds;

    if (max_rounds > PL_MAX_ROUNDS)
        max_rounds = PL_MAX_ROUNDS;
    for (;;) {
        if ((rc = cancel_check(r)) != RUN_ON)
            return rc;
        if (!r->partial && clock_wall_ms() >= r->partial_at_ms && !p->commit)
            r->partial = 1; /* resumed past the time limit: push what exists */
        int tests_pending = r->repo->test && p->test_round < p->agent_round && !r->partial;
        int need_agent =
            !p->commit && !r->partial && atomic_load(&r->budget_hit) == PL_BUDGET_NONE &&
            (p->agent_round == 0 || (r->repo->test && p->test_round == p->agent_round &&
                                     p->test_status != 0 && p->agent_round < max_rounds));
        if (tests_pending) {
            if ((rc = after_step(r, pl_step_test(r, p, p->agent_round), "test")) != RUN_ON)
                return rc;
            continue;
        }
        if (!need_agent)
            return RUN_ON;
        if ((rc = pl_step_agent(r, p, p->agent_round + 1, max_rounds)))
            return rc == 1 ? 0 : step_error(r, rc, "agent");
    }
}

/* The run changed nothing: the session fails, saying what the agent said,
 * with the end of the agent's output (the step that came to nothing; the
 * tests that ran after it on the unchanged tree say nothing of why). */
static int run_fail_unchanged(pl_run *r, const pl_progress *p)
{
    buf why = BUF_INIT(PL_SUMMARY_MAX + 1024);
    char budget[400];
    int rc;

    if (pl_budget_words(budget, sizeof(budget), r))
        buf_printf(&why, "the agent was stopped before it changed anything: %s", budget);
    else if (p->agent_exit != 0)
        buf_printf(&why, "the agent exited with status %d and changed nothing", p->agent_exit);
    else
        buf_puts(&why, "the agent made no change");
    if (p->summary) {
        buf_puts(&why, "; it said: ");
        buf_puts(&why, p->summary);
    }
    rc = pl_run_fail(r, buf_cstr(&why), p->agent_tail);
    buf_free(&why);
    return rc;
}

/* Commit the work; a commit with no change ends the run. A revision that
 * changed nothing, whatever the agent's exit status, leaves the pull
 * request as good as it was: back to review, saying so on the PR. */
static int run_commit(pl_run *r, pl_progress *p)
{
    int rc;

    if (!strcmp(r->kind, "update") && !p->commit && (rc = pl_merge_check(r, p)))
        return rc == 1 ? 0 : step_error(r, rc, "commit");
    if ((rc = after_step(r, pl_step_commit(r, p), "commit")) != RUN_ON)
        return rc;
    if (p->commit_empty && !p->push && pl_kind_revises(r))
        return pl_run_unchanged(r, p);
    if (p->commit_empty && !p->push)
        return run_fail_unchanged(r, p);
    return RUN_ON;
}

/* Push, open the PR, and for a revision answer in each review thread it
 * addressed (farm/report/review_replies.h). */
static int run_publish(pl_run *r, pl_progress *p)
{
    int rc;

    if ((rc = cancel_check(r)) != RUN_ON ||
        (rc = after_step(r, pl_step_push(r, p), "push")) != RUN_ON)
        return rc;
    int draft = r->partial || atomic_load(&r->budget_hit) != PL_BUDGET_NONE ||
                (r->repo->test && p->test_round > 0 && p->test_status != 0);
    if ((rc = after_step(r, pl_step_pr(r, p, draft), "pr")) != RUN_ON)
        return rc;
    if (!strcmp(r->kind, "revise") &&
        review_replies_enqueue(r->f, r->s->id, r->run_no, r->start_seq, p->commit_oid,
                               p->summary) != 0)
        log_warn("review replies not queued", "error", farm_error_last());
    if (!strcmp(r->kind, "update") && pl_update_comment(r, p) != 0)
        log_warn("update comment not queued", "error", farm_error_last());
    pl_cleanup_dirs(r);
    return 0;
}

/* A plan run: one agent round that writes the plan, then the plan posted
 * and the session waiting for approval (pipeline_plan.c). */
static int run_plan(pl_run *r, pl_progress *p)
{
    int rc;

    if ((rc = cancel_check(r)) != RUN_ON)
        return rc;
    if (p->agent_round == 0 && (rc = pl_step_agent(r, p, 1, 1)))
        return rc == 1 ? 0 : step_error(r, rc, "agent");
    if ((rc = pl_plan_finish(r, p)))
        return step_error(r, rc, "plan");
    return 0;
}

static void run_close(pl_run *r, pl_progress *p)
{
    pl_exec_prepared_drop(r);
    pl_gateway_end(r);
    pl_egress_end(r);
    pl_progress_free(p);
    if (r->wt)
        vcs_worktree_free(r->wt);
    vcs_mirror_free(r->m);
    store_session_free(r->s);
    free(r->ci_failures);
    free(r->image_root);
}

int pipeline_run(farm *f, const store_job *job, pipeline_ctl *ctl)
{
    pl_run r = {0};
    pl_progress p = {0};
    int rc;

    assert(f && job);
    if (job->session_id <= 0) {
        farm_error_set("pipeline: a job with a session is required");
        return FARM_EINVALID;
    }
    if ((rc = run_open(&r, f, job, ctl)) == 0) {
        if (!strcmp(job->kind, "cancel"))
            rc = job_cancel(&r);
        else if ((rc = run_prepare(&r, &p)) == RUN_ON && (rc = run_workspace(&r, &p)) == RUN_ON &&
                 !strcmp(job->kind, "plan"))
            rc = run_plan(&r, &p);
        else if (rc == RUN_ON && (rc = run_rounds(&r, &p)) == RUN_ON &&
                 (rc = run_commit(&r, &p)) == RUN_ON)
            rc = run_publish(&r, &p);
    }
    run_close(&r, &p);
    return rc;
}
