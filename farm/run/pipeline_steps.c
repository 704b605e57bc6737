/*
 * pipeline_steps.c - the steps of a run (see pipeline.c for their order
 * and how they are resumed): fetch, worktree (made, reopened, or adopted
 * from a warm slot), setup, agent, test, commit and push with the lease;
 * the pull request is pipeline_pr.c's. Each takes the run and its progress
 * (restored from checkpoints), does its work when not done yet, and
 * records what it made.
 */
#include "agent.h"
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
#include "farm/store/store_run.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define INSIDE_DIR "/farm" /* the run directory's files, inside the sandbox */

/* ---- small helpers ---------------------------------------------------------- */

/* A file the sandbox wrote, read without following a link, at most max
 * bytes; NULL when absent or empty. */
static char *read_agent_file(const char *path, size_t max)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    buf b = BUF_INIT(max);
    char chunk[4096];
    ssize_t n;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    while (b.len < max && (n = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(&b, chunk, b.len + (size_t)n > max ? max - b.len : (size_t)n);
    close(fd);
    char *s = buf_detach(&b);
    buf_free(&b);
    if (s) {
        /* keep it valid UTF-8 text: cut at the first NUL or bad sequence */
        json_t *j = json_string(s);
        size_t len = strlen(s);
        while (!j && len > 0) {
            s[--len] = '\0';
            j = json_string(s);
        }
        json_decref(j);
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
            s[--len] = '\0';
        if (len == 0) {
            free(s);
            s = NULL;
        }
    }
    return s;
}

char *pl_read_agent_file(const char *path, size_t max)
{
    return read_agent_file(path, max);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    size_t len = strlen(text), off = 0;
    if (fd < 0)
        goto fail;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            goto fail;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, mode) < 0 || close(fd) < 0)
        goto fail;
    return 0;
fail:
    farm_error_set("pipeline: cannot write %s: %s", path, strerror(errno));
    return FARM_EIO;
}

/* Let the sandbox's uid traverse a farm directory (no listing: 0711). */
void pl_make_searchable(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0011) != 0011)
        chmod(path, (st.st_mode & 07777) | 0011);
}

int pl_mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return FARM_ETOOBIG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    farm_error_set("pipeline: cannot create %s: %s", tmp, strerror(errno));
    return FARM_EIO;
}

void pl_put_defused(buf *b, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (!strncmp(p, "<!--", 4)) {
            buf_puts(b, "&lt;!--");
            p += 3;
        } else {
            buf_putc(b, *p);
        }
    }
}

void pl_title(char out[PL_TITLE_MAX + 1], const pl_run *r)
{
    snprintf(out, PL_TITLE_MAX + 1, "%s",
             r->s->title && *r->s->title ? r->s->title : "farm change");
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

int pl_last_pushed(char out[VCS_OID_HEXSZ], pl_run *r)
{
    static const char *const kinds[] = {"pushed", NULL};
    store_event *e = NULL;
    int rc = store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0);
    out[0] = '\0';
    if (rc || !e)
        return rc;
    json_t *b = json_loads(e->body, 0, NULL);
    pl_copy_oid(out, json_object_get(b, "oid"));
    json_decref(b);
    store_event_list_free(e, 1);
    return 0;
}

/* ---- the steps ---------------------------------------------------------------- */

int pl_step_fetch(pl_run *r, pl_progress *p)
{
    char name[1024];
    vcs_remote remote;
    int64_t t0 = clock_mono_ms();
    int rc;

    pl_mirror_name(name, sizeof(name), r->repo);
    if (!r->m && (rc = vcs_mirror_open(&r->m, r->cfg->data_dir, name)))
        return rc;
    if (r->sandboxed && geteuid() == 0) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/mirrors", r->cfg->data_dir);
        pl_make_searchable(dir);
    }
    if (p->fetch)
        return 0;
    if ((rc = pl_step_started(r, "fetch", 0)))
        return rc;
    pl_remote(&remote, r->cfg, r->repo, r->ctl ? &r->ctl->cancel : NULL);
    if ((rc = vcs_mirror_fetch(r->m, &remote))) {
        pl_step_failed(r, "fetch", 0, farm_error_last());
        return rc;
    }
    p->fetch = 1;
    return pl_step_done_commit(r, "fetch", 0, t0, NULL);
}

/* Take the warm slot when it fits: same repository, at the base head. */
static int adopt_warm(vcs_worktree **out, pl_run *r, const char *base_oid)
{
    pipeline_warm *w = r->ctl ? r->ctl->warm : NULL;
    char warm_branch[128];
    vcs_worktree *wt = NULL;
    int rc;

    *out = NULL;
    if (!w || strcmp(w->repo, r->repo->name) != 0 || strcmp(w->base_oid, base_oid) != 0)
        return FARM_ENOTFOUND;
    r->ctl->warm = NULL; /* ours now, whatever happens */
    snprintf(warm_branch, sizeof(warm_branch), "farm-warm/%s", strrchr(w->path, '/') + 1);
    if (rename(w->path, r->wt_path) < 0) {
        farm_error_set("pipeline: cannot adopt warm worktree %s: %s", w->path, strerror(errno));
        rc = FARM_EIO;
    } else if (!(rc = vcs_worktree_open(&wt, r->m, r->wt_path, warm_branch, base_oid, base_oid)) &&
               !(rc = vcs_worktree_branch_switch(wt, r->branch))) {
        *out = wt;
        wt = NULL;
        /* setup restored in the slot: its HOME comes along */
        if (w->setup_key && w->home && r->home_dir[0]) {
            vcs_tree_remove(r->home_dir);
            if (rename(w->home, r->home_dir) == 0) {
                snprintf(r->warm_setup_key, sizeof(r->warm_setup_key), "%s", w->setup_key);
                r->warm_setup_ms = w->setup_ms;
            } else {
                pl_mkdir_p(r->home_dir, 0700);
                mkdir(r->home_dir, 0700);
            }
        }
    }
    if (rc) {
        log_warn("warm worktree not adopted", "error", farm_error_last());
        vcs_tree_remove(r->wt_path);
    }
    vcs_worktree_free(wt);
    free(w->path);
    w->path = NULL; /* moved or removed: pipeline_warm_free() leaves it alone */
    pipeline_warm_free(w);
    return rc;
}

int pl_step_worktree(pl_run *r, pl_progress *p)
{
    char pushed[VCS_OID_HEXSZ], base_oid[VCS_OID_HEXSZ] = "";
    worktree_opts o = WORKTREE_OPTS_INIT;
    int64_t t0 = clock_mono_ms();
    int rc, adopted = 0;
    struct stat st;

    if (p->worktree && p->wt_start[0] && p->wt_head[0] && stat(r->wt_path, &st) == 0) {
        rc = vcs_worktree_open(&r->wt, r->m, r->wt_path, r->branch, p->wt_start, p->wt_head);
        if (rc == 0) {
            pl_event(r, "worktree_reopened", json_pack("{s:I}", "run", (json_int_t)r->run_no));
            return 0;
        }
        log_warn("worktree not reopened; making a new one", "error", farm_error_last());
    }
    /* the worktree is gone (or never made): start over from here, unless
     * the work was pushed already (then the new worktree starts there) */
    p->worktree = 0;
    if (!p->push)
        p->setup = p->agent_round = p->test_round = p->commit = p->merge = 0;
    if ((rc = pl_step_started(r, "worktree", 0)))
        return rc;
    if ((rc = pl_last_pushed(pushed, r)))
        return rc;
    vcs_tree_remove(r->wt_path);
    if ((rc = pl_mkdir_p(r->cfg->data_dir, 0700)))
        return rc;
    o.path = r->wt_path;
    o.branch = r->branch;
    if (pushed[0]) {
        o.start = pushed; /* a revision or an answer goes on from what is on the branch */
    } else {
        o.base = r->repo->base_branch;
        if (vcs_mirror_branch_oid(base_oid, r->m, o.base) == 0 &&
            adopt_warm(&r->wt, r, base_oid) == 0)
            adopted = 1;
    }
    if (!adopted && (rc = vcs_worktree_create(&r->wt, r->m, &o))) {
        pl_step_failed(r, "worktree", 0, farm_error_last());
        return rc;
    }
    r->wt_fresh = 1;
    pl_tx t;
    pl_tx_init(&t, r);
    t.branch = r->branch;
    pl_step_done(&t, "worktree", 0, t0,
                 json_pack("{s:s,s:s,s:s,s:s,s:b}", "path", r->wt_path, "branch", r->branch,
                           "start", vcs_worktree_start(r->wt), "head", vcs_worktree_head(r->wt),
                           "warm", adopted));
    p->worktree = 1;
    return pl_tx_commit(&t);
}

/* The binds every sandboxed command of the run gets: the mirror's objects
 * (the worktree's alternates name them), and for the agent the prompt
 * (read-only), the out directory (writable) and what the agent needs. */
typedef struct binds {
    sandbox_bind v[SANDBOX_MAX_BINDS];
    size_t n;
    char **ro; /* vcs_worktree_ro_paths() */
} binds;

static void binds_free(binds *b)
{
    strv_list_free(b->ro);
    b->ro = NULL;
    b->n = 0;
}

static int binds_make(binds *b, pl_run *r, const agent_cmd *agent, const char *agent_home)
{
    size_t wl = strlen(r->wt_path);
    int rc;

    memset(b, 0, sizeof(*b));
    if (!r->sandboxed)
        return 0;
    if ((rc = vcs_worktree_ro_paths(&b->ro, r->wt)))
        return rc;
    /* .git/hooks and .git/config are bound by the sandbox itself */
    for (size_t i = 0; b->ro[i] && b->n < SANDBOX_MAX_BINDS; i++)
        if (strncmp(b->ro[i], r->wt_path, wl) != 0 || b->ro[i][wl] != '/')
            b->v[b->n++] = (sandbox_bind){b->ro[i], b->ro[i], 0, 0};
    if (r->home_dir[0] && b->n < SANDBOX_MAX_BINDS) /* setup's HOME, kept for the run */
        b->v[b->n++] = (sandbox_bind){r->home_dir, PL_SANDBOX_HOME, 1, 0};
    if (agent) {
        b->v[b->n++] = (sandbox_bind){r->prompt_path, INSIDE_DIR "/prompt.md", 0, 0};
        b->v[b->n++] = (sandbox_bind){r->out_dir, INSIDE_DIR "/out", 1, 0};
        if (b->n < SANDBOX_MAX_BINDS && pl_gateway_bind(&b->v[b->n], r))
            b->n++; /* the model gateway on the sandbox's loopback */
        /* the run's HOME, which lasts the run (its rounds) and goes with its directory
           (already bound above when the repository has a setup command: the same folder) */
        if (!r->home_dir[0] && b->n < SANDBOX_MAX_BINDS)
            b->v[b->n++] = (sandbox_bind){agent_home, SANDBOX_HOME_INSIDE, 1, 0};
        for (size_t i = 0; agent->ro_paths && agent->ro_paths[i]; i++) {
            if (b->n >= SANDBOX_MAX_BINDS) {
                binds_free(b);
                farm_error_set("pipeline: the agent needs more than %d binds", SANDBOX_MAX_BINDS);
                return FARM_ETOOBIG;
            }
            b->v[b->n++] = (sandbox_bind){agent->ro_paths[i], agent->ro_paths[i], 0, 0};
        }
    }
    return 0;
}

int pl_run_shell(pl_exec_result *x, pl_run *r, const char *step, int round, const char *cmd,
                 const char *network, const char *const *env, const char *const *allow,
                 int prepare_only)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    const char *envv[SANDBOX_MAX_ENV + 1] = {"CI=true", "TERM=dumb"};
    char home[PATH_MAX + 16];
    size_t ne = 2;
    pl_exec_opts o = {0};
    binds b;
    int rc;

    if (!r->sandboxed && r->home_dir[0]) { /* no sandbox to bind it in: say where it is */
        snprintf(home, sizeof(home), "HOME=%s", r->home_dir);
        envv[ne++] = home;
    }
    for (size_t i = 0; env && env[i] && ne < SANDBOX_MAX_ENV; i++)
        envv[ne++] = env[i];
    envv[ne] = NULL;
    if ((rc = binds_make(&b, r, NULL, NULL)))
        return rc;
    o.step = step;
    o.round = round;
    o.argv = argv;
    o.env = envv;
    o.network = sandbox_net_parse(network) == SANDBOX_NET_ALLOWLIST ? SANDBOX_NET_ALLOWLIST
                                                                    : SANDBOX_NET_NONE;
    o.allow = allow;
    o.secrets = env;
    o.deadline_ms = r->partial_at_ms;
    o.binds = b.v;
    o.nbinds = b.n;
    if (prepare_only) {
        memset(x, 0, sizeof(*x));
        pl_exec_prepare(r, &o);
    } else {
        rc = pl_exec(x, r, &o);
    }
    binds_free(&b);
    return rc;
}

void pl_answer_info_free(pl_answer_info *a)
{
    free(a->question);
    free(a->answer);
    free(a->author);
}

int pl_find_answer(pl_answer_info *a, pl_run *r)
{
    static const char *const qk[] = {"question", NULL};
    static const char *const ak[] = {"comment", "message", NULL};
    store_event *q = NULL, *v = NULL;
    size_t n = 0;
    int rc;

    memset(a, 0, sizeof(*a));
    if ((rc = store_event_last_kind(&q, r->f->store, r->s->id, qk, 0)) || !q)
        return rc;
    json_t *qb = json_loads(q->body, 0, NULL);
    pl_take_str(&a->question, json_object_get(qb, "question"));
    json_decref(qb);
    a->question_seq = q->seq;
    store_event_list_free(q, 1);
    if ((rc = store_event_list_kinds(&v, &n, r->f->store, r->s->id, ak, a->question_seq, 50)))
        return rc;
    for (size_t i = 0; i < n && !a->answer; i++) {
        json_t *b = json_loads(v[i].body, 0, NULL);
        const char *text = json_string_value(json_object_get(b, "text"));
        if (!text)
            text = json_string_value(json_object_get(b, "body"));
        const char *who = json_string_value(json_object_get(b, "author"));
        if (!who)
            who = v[i].actor;
        /* a message came through the API (members only); a comment counts
         * when its author may start work (as ingest decided for the job) */
        const char *access = json_string_value(json_object_get(b, "access"));
        int member = !strcmp(v[i].kind, "message") || (access && !strcmp(access, "write"));
        for (size_t k = 0; !member && who && k < r->repo->nallowed_actors; k++)
            member = r->repo->allowed_actors[k] && !strcasecmp(r->repo->allowed_actors[k], who);
        if (member && text && *text && !json_is_true(json_object_get(b, "is_pr"))) {
            a->answer = strdup(text);
            a->author = strdup(who ? who : "someone");
        }
        json_decref(b);
    }
    store_event_list_free(v, n);
    return 0;
}

/* Where this revision's review comments begin: the previous run's start,
 * so comments that came while that run was at work are this one's
 * (farm/report/review_replies.h). */
static int64_t review_window(pl_run *r, int64_t *ts_ms)
{
    return review_window_start(r->f->store, r->s->id, r->start_seq, ts_ms);
}

/* The agent asked a question: waiting, the question on the issue. */
int pl_run_question(pl_run *r, const char *question)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, name[64];
    pl_tx t;
    int rc;

    pl_tx_init(&t, r);
    t.state = "waiting";
    t.step_words = "waiting for an answer";
    t.skip_if_final = 1;
    pl_tx_event(&t, "question",
                json_pack("{s:I,s:s}", "run", (json_int_t)r->run_no, "question", question));
    pl_tx_event(&t, "run_finished", pl_finished_body(r, "question", NULL));
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.question = question;
    if (report_milestone_render(&body, REPORT_QUESTION, &ri) == 0) {
        snprintf(name, sizeof(name), "r%lld:question", (long long)r->run_no);
        pl_tx_outbox(&t, OUTBOX_COMMENT, name, pl_comment_payload(body));
    }
    free(body);
    rc = pl_tx_commit(&t);
    pl_cleanup_dirs(r);
    return rc;
}

/* The prompt of an agent round: the step's part (a fix round, a revision,
 * an answer, or a first run) composed and written to the run's prompt file.
 * A failure to compose or write it is recorded as the step's. */
static int agent_prompt_write(pl_run *r, const pl_progress *p, int round, int max_rounds)
{
    pl_prompt_in pin = {0};
    pl_answer_info ans = {0};
    char *prompt = NULL, *conflicts = NULL, *plan = NULL;
    int rc;

    pin.round = round;
    pin.max_rounds = max_rounds;
    pin.history_before_seq = r->start_seq;
    if (round > 1) {
        pin.step = PROMPT_FIX_ROUND;
        pin.round = round - 1;
        pin.max_rounds = max_rounds - 1;
        pin.test_status = p->test_status;
        pin.test_output = p->test_tail ? p->test_tail : "";
    } else if (!strcmp(r->kind, "ci")) {
        pin.step = PROMPT_CI_FIX;
        pin.round = r->ci_round;
        pin.max_rounds = r->cfg->ci.max_fix_rounds;
        pin.ci_failures = r->ci_failures ? r->ci_failures : "";
    } else if (!strcmp(r->kind, "plan")) {
        pin.step = PROMPT_PLAN;
        if ((rc = pl_plan_find(&plan, r, "plan")))
            goto out;
        pin.plan = plan; /* the plan people commented on, or none yet */
    } else if (!strcmp(r->kind, "update")) {
        pin.step = PROMPT_MERGE;
        if (!(conflicts = pl_conflicts_markdown(p))) {
            rc = FARM_ENOMEM;
            goto out;
        }
        pin.conflicts = conflicts;
    } else if (!strcmp(r->kind, "revise")) {
        pin.step = PROMPT_REVISION;
        pin.reviews_after_seq = review_window(r, &pin.reviews_after_ms);
    } else if (!strcmp(r->kind, "answer")) {
        if ((rc = pl_find_answer(&ans, r)))
            goto out;
        if (ans.question && ans.answer) {
            pin.step = PROMPT_ANSWER;
            pin.question = ans.question;
            pin.answer = ans.answer;
            pin.answer_author = ans.author;
        } else {
            pin.step = PROMPT_FIRST_RUN;
        }
    } else {
        pin.step = PROMPT_FIRST_RUN;
        if ((rc = pl_plan_find(&plan, r, "plan_approved")))
            goto out;
        pin.plan = plan; /* the approved plan, when the session began with one */
    }
    if ((rc = pl_prompt_compose(&prompt, r->f, r->s, r->repo, r->s->number, r->wt_path, r->branch,
                                &pin)) == 0)
        rc = write_file(r->prompt_path, prompt, 0644);
    if (rc && rc != FARM_ECANCELLED)
        pl_step_failed(r, "agent", round, farm_error_last());
out:
    pl_answer_info_free(&ans);
    free(conflicts);
    free(plan);
    free(prompt);
    return rc;
}

/* Where the agent finds its prompt and leaves its summary and question:
 * host paths, and the same files as the agent sees them. */
typedef struct agent_files {
    char summary[PATH_MAX + 32], question[PATH_MAX + 32], home[PATH_MAX + 16];
    char inside_prompt[PATH_MAX + 32], inside_summary[PATH_MAX + 32],
        inside_question[PATH_MAX + 32];
    char plan[PATH_MAX + 32], inside_plan[PATH_MAX + 32]; /* a plan run's plan file */
} agent_files;

/* The agent's files named, and what a previous round left removed. */
static void agent_files_prepare(agent_files *af, pl_run *r)
{
    snprintf(af->summary, sizeof(af->summary), "%s/summary.md", r->out_dir);
    snprintf(af->question, sizeof(af->question), "%s/question.md", r->out_dir);
    pl_plan_path(af->plan, sizeof(af->plan), r);
    unlink(af->summary);
    unlink(af->question);
    unlink(af->plan);
    if (r->sandboxed) {
        snprintf(af->inside_plan, sizeof(af->inside_plan), INSIDE_DIR "/out/plan.md");
        snprintf(af->inside_prompt, sizeof(af->inside_prompt), INSIDE_DIR "/prompt.md");
        snprintf(af->inside_summary, sizeof(af->inside_summary), INSIDE_DIR "/out/summary.md");
        snprintf(af->inside_question, sizeof(af->inside_question), INSIDE_DIR "/out/question.md");
    } else {
        snprintf(af->inside_prompt, sizeof(af->inside_prompt), "%s", r->prompt_path);
        snprintf(af->inside_summary, sizeof(af->inside_summary), "%s", af->summary);
        snprintf(af->inside_question, sizeof(af->inside_question), "%s", af->question);
        snprintf(af->inside_plan, sizeof(af->inside_plan), "%s", af->plan);
    }
    /* the run's HOME: /home/sandbox inside, kept across rounds, removed with the run */
    snprintf(af->home, sizeof(af->home), "%s/home", r->run_dir);
    mkdir(af->home, 0700);
}

/* A plan run's agent learns where to write its plan: FARM_PLAN_FILE. */
static int plan_env_add(agent_cmd *cmd, const pl_run *r, const agent_files *af)
{
    char var[PATH_MAX + 64];
    size_t n = 0;

    if (strcmp(r->kind, "plan") != 0)
        return 0;
    while (cmd->env && cmd->env[n])
        n++;
    snprintf(var, sizeof(var), "FARM_PLAN_FILE=%s", af->inside_plan);
    if (strv_list_add(&cmd->env, &n, var)) {
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

/* Run the configured agent CLI in the sandbox on the prompt file; with
 * prepare_only, spawn its sandbox ahead instead (pl_exec_prepare()). */
static int agent_exec(pl_exec_result *x, pl_run *r, int round, const agent_files *af,
                      int prepare_only)
{
    agent_ctx ctx = {0};
    agent_cmd cmd = {0};
    pl_exec_opts o = {0};
    binds b = {0};
    int rc;

    ctx.home = r->sandboxed ? SANDBOX_HOME_INSIDE : af->home;
    ctx.prompt_file = af->inside_prompt;
    ctx.summary_file = af->inside_summary;
    ctx.question_file = af->inside_question;
    ctx.session_id = r->s->id;
    ctx.repo = r->repo->name;
    ctx.issue = r->s->number;
    ctx.round = round;
    agent_gateway gw = {r->gw_url, r->gw_token, NULL, 0};
    if (r->codex_home[0])
        gw.codex_home = r->sandboxed ? SANDBOX_HOME_INSIDE "/" AGENT_CODEX_HOME_REL : r->codex_home;
    gw.uid0 = !r->sandboxed && geteuid() == 0;
    if ((rc = agent_cmd_build_gw(&cmd, r->cfg, &ctx, r->gw_token ? &gw : NULL)) ||
        (rc = plan_env_add(&cmd, r, af)))
        goto out;
    /* the prompt on standard input (claude, codex): the same file, from the host side */
    if (cmd.stdin_file)
        o.stdin_path = strcmp(cmd.stdin_file, af->inside_prompt) == 0 ? r->prompt_path : NULL;
    if (cmd.stdin_file && !o.stdin_path) {
        farm_error_set("pipeline: the agent wants %s on standard input, which is not the prompt",
                       cmd.stdin_file);
        rc = FARM_EINVALID;
        goto out;
    }
    if ((rc = binds_make(&b, r, &cmd, af->home)))
        goto out;
    o.step = "agent";
    o.round = round;
    o.argv = (const char *const *)cmd.argv;
    o.env = (const char *const *)cmd.env;
    o.network = sandbox_net_parse(r->cfg->sandbox.network) == SANDBOX_NET_ALLOWLIST
                    ? SANDBOX_NET_ALLOWLIST
                    : SANDBOX_NET_NONE;
    o.deadline_ms = r->partial_at_ms;
    o.binds = b.v;
    o.nbinds = b.n;
    if (prepare_only)
        pl_exec_prepare(r, &o);
    else
        rc = pl_exec(x, r, &o);
out:
    binds_free(&b);
    agent_cmd_free(&cmd);
    return rc;
}

/* The round's "step done" event: exit status, summary, the output's end
 * when it failed, the time and cost it took. */
static int agent_done(pl_run *r, int round, int64_t t0, const pl_exec_result *x,
                      const char *summary)
{
    json_t *extra = json_pack("{s:i,s:b,s:I,s:b}", "exit", x->sr.exit_code, "partial", x->deadline,
                              "wall_ms", (json_int_t)x->sr.wall_ms, "prepared", x->prepared);
    pl_tx t;

    if (extra && summary)
        json_object_set_new(extra, "summary", json_string(summary));
    if (extra && x->sr.exit_code != 0)
        json_object_set_new(extra, "tail", json_string(pl_tail(x->tail, 4096)));
    if (extra && x->cost_usd > 0)
        json_object_set_new(extra, "cost_usd", json_real(x->cost_usd));
    pl_tx_init(&t, r);
    t.agent_seconds = (double)x->sr.wall_ms / 1000.0;
    t.cost = r->gw_token ? 0 : x->cost_usd; /* through the gateway, each call counted its own */
    pl_step_done(&t, "agent", round, t0, extra);
    return pl_tx_commit(&t);
}

/* While the prompt is composed (the issue thread read from the tracker):
 * the agent's sandbox spawned, and the tests' that follow this round, so
 * that neither pays for the spawn on its path. The prompt file exists for
 * its bind and is rewritten in place. */
static void prepare_ahead(pl_run *r, int round, const agent_files *af)
{
    pl_exec_result none;
    struct stat st;

    if (!r->sandboxed)
        return;
    if (stat(r->prompt_path, &st) < 0 && write_file(r->prompt_path, "", 0644) != 0)
        return;
    pl_exec_prepared_drop(r); /* what an earlier round prepared and did not use */
    agent_exec(&none, r, round, af, 1);
    if (r->repo->test)
        pl_run_shell(&none, r, "test", round, r->repo->test, r->cfg->sandbox.network, NULL, NULL,
                     1);
}

/* One agent call. Returns 0 (p updated), 1 when the run ended (question),
 * or an error. */
int pl_step_agent(pl_run *r, pl_progress *p, int round, int max_rounds)
{
    pl_exec_result x = {0};
    agent_files af;
    char *summary = NULL, *question = NULL;
    int64_t t0 = clock_mono_ms();
    int rc;

    int follow_up = pl_kind_revises(r) || !strcmp(r->kind, "update");
    if ((rc = pl_set_state(r, follow_up && round == 1 ? "revising" : "running",
                           round > 1                    ? "fixing the failing tests"
                           : !strcmp(r->kind, "update") ? "resolving the merge conflicts"
                           : !strcmp(r->kind, "plan")   ? "the agent is writing a plan"
                                                        : "the agent is at work")))
        return rc;
    if ((rc = pl_step_started(r, "agent", round)))
        return rc;
    agent_files_prepare(&af, r);
    prepare_ahead(r, round, &af);
    if ((rc = agent_prompt_write(r, p, round, max_rounds)))
        return rc;
    if ((rc = agent_exec(&x, r, round, &af, 0))) {
        if (rc != FARM_ECANCELLED)
            pl_step_failed(r, "agent", round, farm_error_last());
        goto out;
    }
    question = read_agent_file(af.question, PL_SUMMARY_MAX);
    summary = read_agent_file(af.summary, PL_SUMMARY_MAX);
    if (x.deadline)
        r->partial = p->partial = 1;
    if ((rc = agent_done(r, round, t0, &x, summary)))
        goto out;
    p->agent_round = round;
    p->agent_exit = x.sr.exit_code;
    if (summary) {
        free(p->summary);
        p->summary = summary;
        summary = NULL;
    }
    free(p->agent_tail);
    p->agent_tail = x.tail ? strdup(pl_tail(x.tail, 4096)) : NULL; /* for a failure report */
    if (question && !x.deadline) {
        rc = pl_run_question(r, question);
        rc = rc ? rc : 1;
    }
out:
    pl_exec_result_free(&x);
    free(summary);
    free(question);
    return rc;
}

int pl_step_test(pl_run *r, pl_progress *p, int round)
{
    pl_exec_result x;
    int64_t t0 = clock_mono_ms();
    int rc;

    if ((rc = pl_set_state(r, "testing", "running the tests")))
        return rc;
    if ((rc = pl_step_started(r, "test", round)))
        return rc;
    rc = pl_run_shell(&x, r, "test", round, r->repo->test, r->cfg->sandbox.network, NULL, NULL, 0);
    if (rc) {
        pl_exec_result_free(&x);
        if (rc != FARM_ECANCELLED)
            pl_step_failed(r, "test", round, farm_error_last());
        return rc;
    }
    if (x.deadline)
        r->partial = p->partial = 1;
    int prepared = x.prepared;
    p->test_round = round;
    p->test_status = x.sr.exit_code;
    free(p->test_tail);
    p->test_tail = strdup(pl_tail(x.tail, PL_TAIL_MAX));
    pl_exec_result_free(&x);
    if (!p->test_tail) {
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    pl_tx t;
    pl_tx_init(&t, r);
    pl_step_done(&t, "test", round, t0,
                 json_pack("{s:i,s:b,s:s,s:b}", "exit", p->test_status, "passed",
                           p->test_status == 0, "tail", p->test_tail, "prepared", prepared));
    pl_tx_event(&t, "test_result",
                json_pack("{s:I,s:i,s:i,s:b}", "run", (json_int_t)r->run_no, "round", round, "exit",
                          p->test_status, "passed", p->test_status == 0));
    return pl_tx_commit(&t);
}

int pl_step_commit(pl_run *r, pl_progress *p)
{
    worktree_commit_opts o = WORKTREE_COMMIT_OPTS_INIT;
    worktree_commit_result res;
    pl_coauthor who;
    char title[PL_TITLE_MAX + 1];
    buf msg = BUF_INIT(8192);
    int64_t t0 = clock_mono_ms();
    int rc;

    if (p->commit)
        return 0;
    if ((rc = pl_set_state(r, "pushing", "committing and pushing")))
        return rc;
    if ((rc = pl_step_started(r, "commit", 0)))
        return rc;
    pl_title(title, r);
    if (!strcmp(r->kind, "update") && p->merge) {
        /* the merge commit: the base its second parent, nobody to credit */
        char *m = pl_merge_message(r, p);
        if (m)
            buf_puts(&msg, m);
        free(m);
        o.merge_parent = p->merge_base;
    } else {
        buf_printf(&msg, "%s\n\nResolves #%lld.\n\nMade by farm, session %lld, run %lld", title,
                   (long long)r->s->number, (long long)r->s->id, (long long)r->run_no);
        if (r->cfg->public_url)
            buf_printf(&msg, ": %s/sessions/%lld", r->cfg->public_url, (long long)r->s->id);
        buf_puts(&msg, ".\n");
    }
    o.message = buf_cstr(&msg);
    o.author_name = r->cfg->bot.name;
    o.author_email = r->cfg->bot.email;
    o.signing_key = r->cfg->git.signing_key;
    memset(&who, 0, sizeof(who));
    if (!o.merge_parent && (rc = pl_coauthor_find(&who, r))) {
        buf_free(&msg);
        pl_step_failed(r, "commit", 0, farm_error_last());
        return rc;
    }
    if (who.name[0]) {
        o.coauthor_name = who.name;
        o.coauthor_email = who.email;
    }
    rc = vcs_worktree_commit(&res, r->wt, &o);
    buf_free(&msg);
    if (rc) {
        pl_step_failed(r, "commit", 0, farm_error_last());
        return rc;
    }
    p->commit = 1;
    p->commit_empty = res.empty;
    memcpy(p->commit_oid, res.oid, VCS_OID_HEXSZ);
    json_t *done = json_pack("{s:b,s:s,s:s}", "empty", res.empty, "oid", res.oid, "head",
                             vcs_worktree_head(r->wt));
    if (done && who.name[0] && !res.empty)
        json_object_set_new(done, "coauthor", json_sprintf("%s <%s>", who.name, who.email));
    return pl_step_done_commit(r, "commit", 0, t0, done);
}

int pl_step_push(pl_run *r, pl_progress *p)
{
    char expected[VCS_OID_HEXSZ];
    vcs_remote remote;
    int64_t t0 = clock_mono_ms();
    int rc;

    if (p->push)
        return 0;
    if ((rc = pl_step_started(r, "push", 0)) || (rc = pl_last_pushed(expected, r)))
        return rc;
    pl_remote(&remote, r->cfg, r->repo, r->ctl ? &r->ctl->cancel : NULL);
    rc = vcs_worktree_push(r->wt, &remote, expected[0] ? expected : NULL);
    if (rc) {
        pl_step_failed(r, "push", 0, farm_error_last());
        return rc;
    }
    pl_tx t;
    pl_tx_init(&t, r);
    pl_step_done(&t, "push", 0, t0, json_pack("{s:s}", "oid", vcs_worktree_head(r->wt)));
    pl_tx_event(&t, "pushed",
                json_pack("{s:I,s:s,s:s}", "run", (json_int_t)r->run_no, "oid",
                          vcs_worktree_head(r->wt), "branch", r->branch));
    p->push = 1;
    return pl_tx_commit(&t);
}
