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
#include "agent.h"
#include "farm_internal.h"
#include "outbox.h"
#include "pipeline_internal.h"
#include "report.h"
#include "store_run.h"

#include "../base/buf.h"
#include "../base/clock.h"
#include "../base/error.h"
#include "../base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TITLE_MAX        200 /* of a PR title */
#define PR_BODY_MAX      (60u << 10)
#define SANDBOX_UID_BASE 0x50000000u /* + the session id: the host uid of its sandboxes */
#define INSIDE_DIR       "/farm"     /* the run directory's files, inside the sandbox */

/* ---- one transaction: state, events, outbox -------------------------------- */

#define TX_EVENTS 8
#define TX_OUTBOX 4

typedef struct pl_tx {
    pl_run *r;
    const char *state;      /* NULL: unchanged */
    const char *step_words; /* the status comment's current step */
    const char *branch;     /* set the session's branch */
    double agent_seconds;
    int status;        /* update the status comment even without a state change */
    int skip_if_final; /* write nothing when the session has ended meanwhile */
    struct {
        const char *kind;
        char *body;
    } ev[TX_EVENTS];
    int nev;
    struct {
        const char *kind;
        char key[256];
        char *payload;
    } ob[TX_OUTBOX];
    int nob;
    int oom;
    /* out */
    int ended;
    int64_t last_seq;
} pl_tx;

static void tx_event(pl_tx *t, const char *kind, json_t *body)
{
    if (!body || t->nev >= TX_EVENTS || !(t->ev[t->nev].body = json_dumps(body, JSON_COMPACT)))
        t->oom = 1;
    else
        t->ev[t->nev++].kind = kind;
    json_decref(body);
}

static void tx_outbox(pl_tx *t, const char *kind, const char *name, json_t *payload)
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
        free(t->ev[i].body);
    for (int i = 0; i < t->nob; i++)
        free(t->ob[i].payload);
    t->nev = t->nob = 0;
}

static int status_enqueue(store_tx *tx, pl_tx *t, const store_session *s)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, *payload = NULL;
    json_t *p;
    int rc;

    ri.session = s;
    ri.public_url = t->r->cfg->public_url;
    ri.step = t->step_words;
    ri.round = (int)t->r->run_no;
    if (store_session_state_is_final(s->state))
        ri.ended_ms = clock_wall_ms();
    if ((rc = report_status_render(&body, &ri)))
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
    if (t->agent_seconds > 0 && (rc = store_tx_session_usage_add(tx, id, t->agent_seconds, 0)))
        goto out;
    if (t->state && strcmp(t->state, s->state) != 0) {
        char body[160];
        snprintf(body, sizeof(body), "{\"from\":\"%s\",\"to\":\"%s\",\"run\":%lld}", s->state,
                 t->state, (long long)t->r->run_no);
        if ((rc = store_tx_session_state_set(tx, id, t->state)) ||
            (rc = store_tx_event_append(&t->last_seq, tx, id, "state", NULL, body)))
            goto out;
        changed = 1;
    }
    for (int i = 0; i < t->nev; i++)
        if ((rc = store_tx_event_append(&t->last_seq, tx, id, t->ev[i].kind, NULL, t->ev[i].body)))
            goto out;
    for (int i = 0; i < t->nob; i++)
        if ((rc = outbox_tx_enqueue(tx, id, t->ob[i].kind, t->ob[i].key, t->ob[i].payload)))
            goto out;
    if (changed || t->status) {
        store_session_free(s);
        s = NULL;
        if ((rc = store_tx_session_get(&s, tx, id)) || (rc = status_enqueue(tx, t, s)))
            goto out;
    }
out:
    store_session_free(s);
    return rc;
}

static int tx_commit(pl_tx *t)
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

static void tx_init(pl_tx *t, pl_run *r)
{
    memset(t, 0, sizeof(*t));
    t->r = r;
}

/* Move the session to state, saying what it is doing, with nothing else. */
static int set_state(pl_run *r, const char *state, const char *words)
{
    pl_tx t;
    tx_init(&t, r);
    t.state = state;
    t.step_words = words;
    t.skip_if_final = 1;
    return tx_commit(&t);
}

/* ---- checkpoints ------------------------------------------------------------ */

typedef struct progress {
    int fetch, worktree, setup;
    char wt_start[VCS_OID_HEXSZ], wt_head[VCS_OID_HEXSZ];
    int agent_round; /* last agent round done */
    int agent_exit;
    int test_round; /* last test round done */
    int test_status;
    char *test_tail;
    char *summary;
    int commit, commit_empty;
    char commit_oid[VCS_OID_HEXSZ];
    int push, pr;
    int partial;
} progress;

static void progress_free(progress *p)
{
    free(p->test_tail);
    free(p->summary);
}

static void copy_oid(char out[VCS_OID_HEXSZ], json_t *v)
{
    const char *s = json_string_value(v);
    out[0] = '\0';
    if (s && strlen(s) == VCS_OID_HEXSZ - 1)
        memcpy(out, s, VCS_OID_HEXSZ);
}

static void take_str(char **dst, json_t *v)
{
    const char *s = json_string_value(v);
    if (s) {
        free(*dst);
        *dst = strdup(s);
    }
}

/* Read this run's "step ... done" events. */
static int progress_load(progress *p, pl_run *r)
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
                copy_oid(p->wt_start, json_object_get(b, "start"));
                copy_oid(p->wt_head, json_object_get(b, "head"));
                /* a new worktree undoes everything after it */
                p->setup = p->agent_round = p->test_round = p->commit = 0;
            } else if (!strcmp(step, "setup")) {
                p->setup = 1;
            } else if (!strcmp(step, "agent")) {
                p->agent_round = round;
                p->agent_exit = (int)json_integer_value(json_object_get(b, "exit"));
                p->partial = json_is_true(json_object_get(b, "partial"));
                take_str(&p->summary, json_object_get(b, "summary"));
            } else if (!strcmp(step, "test")) {
                p->test_round = round;
                p->test_status = (int)json_integer_value(json_object_get(b, "exit"));
                take_str(&p->test_tail, json_object_get(b, "tail"));
            } else if (!strcmp(step, "commit")) {
                p->commit = 1;
                p->commit_empty = json_is_true(json_object_get(b, "empty"));
                copy_oid(p->commit_oid, json_object_get(b, "oid"));
                if (p->commit_oid[0])
                    memcpy(p->wt_head, p->commit_oid, VCS_OID_HEXSZ);
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

/* The oid the farm pushed last for this session ("" when never). */
static int last_pushed(char out[VCS_OID_HEXSZ], pl_run *r)
{
    static const char *const kinds[] = {"pushed", NULL};
    store_event *e = NULL;
    int rc = store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0);
    out[0] = '\0';
    if (rc || !e)
        return rc;
    json_t *b = json_loads(e->body, 0, NULL);
    copy_oid(out, json_object_get(b, "oid"));
    json_decref(b);
    store_event_list_free(e, 1);
    return 0;
}

static json_t *step_body(pl_run *r, const char *step, const char *status, int round)
{
    json_t *b =
        json_pack("{s:I,s:s,s:s}", "run", (json_int_t)r->run_no, "step", step, "status", status);
    if (b && round > 0)
        json_object_set_new(b, "round", json_integer(round));
    return b;
}

static int step_started(pl_run *r, const char *step, int round)
{
    json_t *b = step_body(r, step, "started", round);
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    int rc = text ? pl_event(r, "step", text) : FARM_ENOMEM;
    json_decref(b);
    free(text);
    return rc;
}

/* A "step done" event into t, with the step's duration and products
 * (extra, stolen, may be NULL). */
static void step_done(pl_tx *t, const char *step, int round, int64_t began_ms, json_t *extra)
{
    json_t *b = step_body(t->r, step, "done", round);
    if (b) {
        json_object_set_new(b, "ms", json_integer(clock_mono_ms() - began_ms));
        if (extra)
            json_object_update(b, extra);
    }
    json_decref(extra);
    tx_event(t, "step", b);
}

static int step_done_commit(pl_run *r, const char *step, int round, int64_t began_ms, json_t *extra)
{
    pl_tx t;
    tx_init(&t, r);
    step_done(&t, step, round, began_ms, extra);
    return tx_commit(&t);
}

static void step_failed(pl_run *r, const char *step, int round, const char *error)
{
    json_t *b = step_body(r, step, "failed", round);
    char *text = NULL;
    if (b) {
        json_object_set_new(b, "error", json_string(error ? error : ""));
        text = json_dumps(b, JSON_COMPACT);
    }
    if (text)
        pl_event(r, "step", text);
    json_decref(b);
    free(text);
}

/* ---- ends of a run ---------------------------------------------------------- */

static void cleanup_dirs(pl_run *r)
{
    if (r->wt) {
        worktree_remove(r->wt);
        worktree_free(r->wt);
        r->wt = NULL;
    } else if (r->wt_path[0]) {
        vcs_tree_remove(r->wt_path);
    }
    if (r->run_dir[0])
        vcs_tree_remove(r->run_dir);
}

static json_t *finished_body(pl_run *r, const char *outcome, const char *reason)
{
    json_t *b = json_pack("{s:I,s:s,s:s}", "run", (json_int_t)r->run_no, "outcome", outcome, "kind",
                          r->kind);
    if (b && reason)
        json_object_set_new(b, "reason", json_string(reason));
    return b;
}

static json_t *comment_payload(const char *body)
{
    return json_pack("{s:s,s:b}", "body", body, "on_pr", 0);
}

/* The session failed: state, log, the failure comment with the output's
 * tail. The worktree and run directory go. */
static int run_fail(pl_run *r, const char *reason, const char *output)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, name[64];
    pl_tx t;
    int rc;

    log_warn("run failed", "repo", r->repo->name, "reason", reason);
    tx_init(&t, r);
    t.state = "failed";
    t.step_words = "failed";
    t.skip_if_final = 1;
    tx_event(&t, "failed", json_pack("{s:I,s:s}", "run", (json_int_t)r->run_no, "reason", reason));
    tx_event(&t, "run_finished", finished_body(r, "failed", reason));
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.reason = reason;
    ri.output = output;
    ri.round = (int)r->run_no;
    if (report_milestone_render(&body, REPORT_FAILED, &ri) == 0) {
        snprintf(name, sizeof(name), "r%lld:failed", (long long)r->run_no);
        tx_outbox(&t, OUTBOX_COMMENT, name, comment_payload(body));
    }
    free(body);
    rc = tx_commit(&t);
    cleanup_dirs(r);
    return rc;
}

/* Stopped by a cancel request or the issue being closed. */
static int run_cancelled(pl_run *r)
{
    pl_tx t;
    int rc;

    log_info("run cancelled", "repo", r->repo->name);
    tx_init(&t, r);
    t.state = "cancelled";
    t.step_words = "cancelled";
    t.skip_if_final = 1;
    tx_event(&t, "run_finished", finished_body(r, "cancelled", NULL));
    rc = tx_commit(&t);
    cleanup_dirs(r);
    return rc;
}

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
static void make_searchable(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0011) != 0011)
        chmod(path, (st.st_mode & 07777) | 0011);
}

static int mkdir_p(const char *path, mode_t mode)
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

/* "<!--" in text quoted into a body could pass for a marker: defuse it. */
static void put_defused(buf *b, const char *text)
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

/* text in a fenced block whose fence is longer than any backtick run in it */
static void put_fenced(buf *b, const char *lang, const char *text)
{
    size_t run = 0, longest = 0;
    for (const char *p = text; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    size_t fence = longest >= 3 ? longest + 1 : 3;
    for (size_t i = 0; i < fence; i++)
        buf_putc(b, '`');
    buf_printf(b, "%s\n", lang);
    put_defused(b, text);
    if (*text && text[strlen(text) - 1] != '\n')
        buf_putc(b, '\n');
    for (size_t i = 0; i < fence; i++)
        buf_putc(b, '`');
    buf_putc(b, '\n');
}

/* ---- the steps ---------------------------------------------------------------- */

static int step_fetch(pl_run *r, progress *p)
{
    char name[1024];
    vcs_remote remote;
    int64_t t0 = clock_mono_ms();
    int rc;

    pl_mirror_name(name, sizeof(name), r->repo);
    if (!r->m && (rc = mirror_open(&r->m, r->cfg->data_dir, name)))
        return rc;
    if (r->sandboxed && geteuid() == 0) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/mirrors", r->cfg->data_dir);
        make_searchable(dir);
    }
    if (p->fetch)
        return 0;
    if ((rc = step_started(r, "fetch", 0)))
        return rc;
    pl_remote(&remote, r->cfg, r->repo, r->ctl ? &r->ctl->cancel : NULL);
    if ((rc = mirror_fetch(r->m, &remote))) {
        step_failed(r, "fetch", 0, farm_error_last());
        return rc;
    }
    p->fetch = 1;
    return step_done_commit(r, "fetch", 0, t0, NULL);
}

/* Take the warm slot when it fits: same repository, at the base head. */
static int adopt_warm(worktree **out, pl_run *r, const char *base_oid)
{
    pipeline_warm *w = r->ctl ? r->ctl->warm : NULL;
    char warm_branch[128];
    worktree *wt = NULL;
    int rc;

    *out = NULL;
    if (!w || strcmp(w->repo, r->repo->name) != 0 || strcmp(w->base_oid, base_oid) != 0)
        return FARM_ENOTFOUND;
    r->ctl->warm = NULL; /* ours now, whatever happens */
    snprintf(warm_branch, sizeof(warm_branch), "farm-warm/%s", strrchr(w->path, '/') + 1);
    if (rename(w->path, r->wt_path) < 0) {
        farm_error_set("pipeline: cannot adopt warm worktree %s: %s", w->path, strerror(errno));
        rc = FARM_EIO;
    } else if ((rc = worktree_open(&wt, r->m, r->wt_path, warm_branch, base_oid, base_oid)) == 0 &&
               (rc = worktree_branch_switch(wt, r->branch)) == 0) {
        *out = wt;
        wt = NULL;
    }
    if (rc) {
        log_warn("warm worktree not adopted", "error", farm_error_last());
        vcs_tree_remove(r->wt_path);
    }
    worktree_free(wt);
    free(w->path);
    w->path = NULL; /* moved or removed: pipeline_warm_free() leaves it alone */
    pipeline_warm_free(w);
    return rc;
}

static int step_worktree(pl_run *r, progress *p)
{
    char pushed[VCS_OID_HEXSZ], base_oid[VCS_OID_HEXSZ] = "";
    worktree_opts o = WORKTREE_OPTS_INIT;
    int64_t t0 = clock_mono_ms();
    int rc, adopted = 0;
    struct stat st;

    if (p->worktree && p->wt_start[0] && p->wt_head[0] && stat(r->wt_path, &st) == 0) {
        rc = worktree_open(&r->wt, r->m, r->wt_path, r->branch, p->wt_start, p->wt_head);
        if (rc == 0) {
            char body[64];
            snprintf(body, sizeof(body), "{\"run\":%lld}", (long long)r->run_no);
            pl_event(r, "worktree_reopened", body);
            return 0;
        }
        log_warn("worktree not reopened; making a new one", "error", farm_error_last());
    }
    /* the worktree is gone (or never made): start over from here, unless
     * the work was pushed already (then the new worktree starts there) */
    p->worktree = 0;
    if (!p->push)
        p->setup = p->agent_round = p->test_round = p->commit = 0;
    if ((rc = step_started(r, "worktree", 0)))
        return rc;
    if ((rc = last_pushed(pushed, r)))
        return rc;
    vcs_tree_remove(r->wt_path);
    if ((rc = mkdir_p(r->cfg->data_dir, 0700)))
        return rc;
    o.path = r->wt_path;
    o.branch = r->branch;
    if (pushed[0]) {
        o.start = pushed; /* a revision or an answer goes on from what is on the branch */
    } else {
        o.base = r->repo->base_branch;
        if (mirror_branch_oid(base_oid, r->m, o.base) == 0 && adopt_warm(&r->wt, r, base_oid) == 0)
            adopted = 1;
    }
    if (!adopted && (rc = worktree_create(&r->wt, r->m, &o))) {
        step_failed(r, "worktree", 0, farm_error_last());
        return rc;
    }
    pl_tx t;
    tx_init(&t, r);
    t.branch = r->branch;
    step_done(&t, "worktree", 0, t0,
              json_pack("{s:s,s:s,s:s,s:s,s:b}", "path", r->wt_path, "branch", r->branch, "start",
                        worktree_start(r->wt), "head", worktree_head(r->wt), "warm", adopted));
    p->worktree = 1;
    return tx_commit(&t);
}

/* The binds every sandboxed command of the run gets: the mirror's objects
 * (the worktree's alternates name them), and for the agent the prompt
 * (read-only), the out directory (writable) and what the agent needs. */
typedef struct binds {
    sandbox_bind v[SANDBOX_MAX_BINDS];
    size_t n;
    char **ro; /* worktree_ro_paths() */
} binds;

static void binds_free(binds *b)
{
    vcs_strv_free(b->ro);
    b->ro = NULL;
    b->n = 0;
}

static int binds_make(binds *b, pl_run *r, const agent_cmd *agent)
{
    size_t wl = strlen(r->wt_path);
    int rc;

    memset(b, 0, sizeof(*b));
    if (!r->sandboxed)
        return 0;
    if ((rc = worktree_ro_paths(&b->ro, r->wt)))
        return rc;
    /* .git/hooks and .git/config are bound by the sandbox itself */
    for (size_t i = 0; b->ro[i] && b->n < SANDBOX_MAX_BINDS; i++)
        if (strncmp(b->ro[i], r->wt_path, wl) != 0 || b->ro[i][wl] != '/')
            b->v[b->n++] = (sandbox_bind){b->ro[i], b->ro[i], 0};
    if (agent) {
        b->v[b->n++] = (sandbox_bind){r->prompt_path, INSIDE_DIR "/prompt.md", 0};
        b->v[b->n++] = (sandbox_bind){r->out_dir, INSIDE_DIR "/out", 1};
        for (size_t i = 0; agent->ro_paths && agent->ro_paths[i]; i++) {
            if (b->n >= SANDBOX_MAX_BINDS) {
                binds_free(b);
                farm_error_set("pipeline: the agent needs more than %d binds", SANDBOX_MAX_BINDS);
                return FARM_ETOOBIG;
            }
            b->v[b->n++] = (sandbox_bind){agent->ro_paths[i], agent->ro_paths[i], 0};
        }
    }
    return 0;
}

/* Run a shell command of the repository (setup, test) in the sandbox. */
static int run_shell(pl_exec_result *x, pl_run *r, const char *step, int round, const char *cmd,
                     const char *network)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    const char *env[] = {"CI=true", "TERM=dumb", NULL};
    pl_exec_opts o = {0};
    binds b;
    int rc;

    if ((rc = binds_make(&b, r, NULL)))
        return rc;
    o.step = step;
    o.round = round;
    o.argv = argv;
    o.env = env;
    o.network = sandbox_net_parse(network) == SANDBOX_NET_ALLOWLIST ? SANDBOX_NET_ALLOWLIST
                                                                    : SANDBOX_NET_NONE;
    o.deadline_ms = r->partial_at_ms;
    o.binds = b.v;
    o.nbinds = b.n;
    rc = pl_exec(x, r, &o);
    binds_free(&b);
    return rc;
}

static int step_setup(pl_run *r, progress *p)
{
    pl_exec_result x;
    int64_t t0 = clock_mono_ms();
    int rc;

    if (p->setup || !r->repo->setup)
        return 0;
    if ((rc = step_started(r, "setup", 0)))
        return rc;
    rc = run_shell(&x, r, "setup", 0, r->repo->setup, r->cfg->sandbox.setup_network);
    if (rc == 0 && x.sr.exit_code != 0) {
        char reason[256];
        snprintf(reason, sizeof(reason), "the setup command failed (%s %d)",
                 x.sr.timed_out ? "timed out; exit status" : "exit status", x.sr.exit_code);
        step_failed(r, "setup", 0, reason);
        rc = run_fail(r, reason, x.tail);
        pl_exec_result_free(&x);
        return rc ? rc : 1;
    }
    if (rc) {
        pl_exec_result_free(&x);
        if (rc != FARM_ECANCELLED)
            step_failed(r, "setup", 0, farm_error_last());
        return rc;
    }
    pl_exec_result_free(&x);
    p->setup = 1;
    return step_done_commit(r, "setup", 0, t0, json_pack("{s:i}", "exit", 0));
}

/* What the agent is answering, for an "answer" run: the last question and
 * the first reply after it. */
typedef struct answer_info {
    char *question;
    char *answer;
    char *author;
    int64_t question_seq;
} answer_info;

static void answer_info_free(answer_info *a)
{
    free(a->question);
    free(a->answer);
    free(a->author);
}

static int find_answer(answer_info *a, pl_run *r)
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
    take_str(&a->question, json_object_get(qb, "question"));
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
        if (text && *text && !json_is_true(json_object_get(b, "is_pr"))) {
            a->answer = strdup(text);
            a->author = strdup(who ? who : "someone");
        }
        json_decref(b);
    }
    store_event_list_free(v, n);
    return 0;
}

/* The seq after which this run's review comments count: the previous
 * run's end. */
static int64_t previous_run_end(pl_run *r)
{
    static const char *const kinds[] = {"run_finished", NULL};
    store_event *e = NULL;
    int64_t seq = 0;
    if (store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0) == 0 && e) {
        if (e->seq < r->start_seq)
            seq = e->seq;
        store_event_list_free(e, 1);
    }
    return seq;
}

/* The agent asked a question: waiting, the question on the issue. */
static int run_question(pl_run *r, const char *question)
{
    report_info ri = REPORT_INFO_INIT;
    char *body = NULL, name[64];
    pl_tx t;
    int rc;

    tx_init(&t, r);
    t.state = "waiting";
    t.step_words = "waiting for an answer";
    t.skip_if_final = 1;
    tx_event(&t, "question",
             json_pack("{s:I,s:s}", "run", (json_int_t)r->run_no, "question", question));
    tx_event(&t, "run_finished", finished_body(r, "question", NULL));
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.question = question;
    if (report_milestone_render(&body, REPORT_QUESTION, &ri) == 0) {
        snprintf(name, sizeof(name), "r%lld:question", (long long)r->run_no);
        tx_outbox(&t, OUTBOX_COMMENT, name, comment_payload(body));
    }
    free(body);
    rc = tx_commit(&t);
    cleanup_dirs(r);
    return rc;
}

/* One agent call. Returns 0 (p updated), 1 when the run ended (question),
 * or an error. */
static int step_agent(pl_run *r, progress *p, int round, int max_rounds)
{
    pl_prompt_in pin = {0};
    answer_info ans = {0};
    agent_ctx ctx = {0};
    agent_cmd cmd = {0};
    pl_exec_result x = {0};
    pl_exec_opts o = {0};
    binds b = {0};
    char *prompt = NULL, *summary = NULL, *question = NULL;
    char summary_path[PATH_MAX + 32], question_path[PATH_MAX + 32], home[PATH_MAX + 16];
    char inside_prompt[PATH_MAX + 32], inside_summary[PATH_MAX + 32],
        inside_question[PATH_MAX + 32];
    int64_t t0 = clock_mono_ms();
    int rc;

    if ((rc = set_state(r, !strcmp(r->kind, "revise") && round == 1 ? "revising" : "running",
                        round > 1 ? "fixing the failing tests" : "the agent is at work")))
        return rc;
    if ((rc = step_started(r, "agent", round)))
        return rc;

    /* the prompt */
    pin.round = round;
    pin.max_rounds = max_rounds;
    pin.history_before_seq = r->start_seq;
    if (round > 1) {
        pin.step = PROMPT_FIX_ROUND;
        pin.round = round - 1;
        pin.max_rounds = max_rounds - 1;
        pin.test_status = p->test_status;
        pin.test_output = p->test_tail ? p->test_tail : "";
    } else if (!strcmp(r->kind, "revise")) {
        pin.step = PROMPT_REVISION;
        pin.reviews_after_seq = previous_run_end(r);
    } else if (!strcmp(r->kind, "answer")) {
        if ((rc = find_answer(&ans, r)))
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
    }
    if ((rc = pl_prompt_compose(&prompt, r->f, r->s, r->repo, r->s->number, r->wt_path, r->branch,
                                &pin)))
        goto fail;
    if ((rc = write_file(r->prompt_path, prompt, 0644)))
        goto fail;

    snprintf(summary_path, sizeof(summary_path), "%s/summary.md", r->out_dir);
    snprintf(question_path, sizeof(question_path), "%s/question.md", r->out_dir);
    unlink(summary_path);
    unlink(question_path);
    if (r->sandboxed) {
        snprintf(inside_prompt, sizeof(inside_prompt), INSIDE_DIR "/prompt.md");
        snprintf(inside_summary, sizeof(inside_summary), INSIDE_DIR "/out/summary.md");
        snprintf(inside_question, sizeof(inside_question), INSIDE_DIR "/out/question.md");
        ctx.home = NULL;
    } else {
        snprintf(inside_prompt, sizeof(inside_prompt), "%s", r->prompt_path);
        snprintf(inside_summary, sizeof(inside_summary), "%s", summary_path);
        snprintf(inside_question, sizeof(inside_question), "%s", question_path);
        snprintf(home, sizeof(home), "%s/home", r->run_dir);
        mkdir(home, 0700);
        ctx.home = home;
    }
    ctx.prompt_file = inside_prompt;
    ctx.summary_file = inside_summary;
    ctx.question_file = inside_question;
    ctx.session_id = r->s->id;
    ctx.repo = r->repo->name;
    ctx.issue = r->s->number;
    ctx.round = round;
    if ((rc = agent_cmd_build(&cmd, r->cfg, &ctx)))
        goto fail;
    if (cmd.stdin_file)
        log_warn("the agent's prompt is not fed on standard input (the sandbox has no stdin "
                 "option yet); it reads FARM_PROMPT_FILE",
                 "preset", cmd.preset);
    if ((rc = binds_make(&b, r, &cmd)))
        goto fail;
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
    rc = pl_exec(&x, r, &o);
    if (rc)
        goto fail;

    question = read_agent_file(question_path, PL_SUMMARY_MAX);
    summary = read_agent_file(summary_path, PL_SUMMARY_MAX);
    if (x.deadline)
        r->partial = p->partial = 1;
    {
        pl_tx t;
        json_t *extra = json_pack("{s:i,s:b,s:I}", "exit", x.sr.exit_code, "partial", x.deadline,
                                  "wall_ms", (json_int_t)x.sr.wall_ms);
        if (extra && summary)
            json_object_set_new(extra, "summary", json_string(summary));
        if (extra && x.sr.exit_code != 0)
            json_object_set_new(extra, "tail", json_string(pl_tail(x.tail, 4096)));
        tx_init(&t, r);
        t.agent_seconds = (double)x.sr.wall_ms / 1000.0;
        step_done(&t, "agent", round, t0, extra);
        if ((rc = tx_commit(&t)))
            goto out;
    }
    p->agent_round = round;
    p->agent_exit = x.sr.exit_code;
    if (summary) {
        free(p->summary);
        p->summary = summary;
        summary = NULL;
    }
    if (question && !x.deadline) {
        rc = run_question(r, question);
        rc = rc ? rc : 1;
        goto out;
    }
    if (x.sr.exit_code != 0) {
        free(p->test_tail);
        p->test_tail = strdup(x.tail); /* the agent's words, for a failure report */
    }
    rc = 0;
    goto out;
fail:
    if (rc != FARM_ECANCELLED)
        step_failed(r, "agent", round, farm_error_last());
out:
    answer_info_free(&ans);
    binds_free(&b);
    agent_cmd_free(&cmd);
    pl_exec_result_free(&x);
    free(prompt);
    free(summary);
    free(question);
    return rc;
}

static int step_test(pl_run *r, progress *p, int round)
{
    pl_exec_result x;
    int64_t t0 = clock_mono_ms();
    int rc;

    if ((rc = set_state(r, "testing", "running the tests")))
        return rc;
    if ((rc = step_started(r, "test", round)))
        return rc;
    rc = run_shell(&x, r, "test", round, r->repo->test, r->cfg->sandbox.network);
    if (rc) {
        pl_exec_result_free(&x);
        if (rc != FARM_ECANCELLED)
            step_failed(r, "test", round, farm_error_last());
        return rc;
    }
    if (x.deadline)
        r->partial = p->partial = 1;
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
    tx_init(&t, r);
    step_done(&t, "test", round, t0,
              json_pack("{s:i,s:b,s:s}", "exit", p->test_status, "passed", p->test_status == 0,
                        "tail", p->test_tail));
    tx_event(&t, "test_result",
             json_pack("{s:I,s:i,s:i,s:b}", "run", (json_int_t)r->run_no, "round", round, "exit",
                       p->test_status, "passed", p->test_status == 0));
    return tx_commit(&t);
}

static int step_commit(pl_run *r, progress *p)
{
    worktree_commit_opts o = WORKTREE_COMMIT_OPTS_INIT;
    worktree_commit_result res;
    char title[TITLE_MAX + 1];
    buf msg = BUF_INIT(8192);
    int64_t t0 = clock_mono_ms();
    int rc;

    if (p->commit)
        return 0;
    if ((rc = set_state(r, "pushing", "committing and pushing")))
        return rc;
    if ((rc = step_started(r, "commit", 0)))
        return rc;
    snprintf(title, sizeof(title), "%s", r->s->title && *r->s->title ? r->s->title : "farm change");
    for (char *c = title; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    buf_printf(&msg, "%s\n\nResolves #%lld.\n\nMade by farm, session %lld, run %lld", title,
               (long long)r->s->number, (long long)r->s->id, (long long)r->run_no);
    if (r->cfg->public_url)
        buf_printf(&msg, ": %s/sessions/%lld", r->cfg->public_url, (long long)r->s->id);
    buf_puts(&msg, ".\n");
    o.message = buf_cstr(&msg);
    o.author_name = r->cfg->bot.name;
    o.author_email = r->cfg->bot.email;
    rc = worktree_commit(&res, r->wt, &o);
    buf_free(&msg);
    if (rc) {
        step_failed(r, "commit", 0, farm_error_last());
        return rc;
    }
    p->commit = 1;
    p->commit_empty = res.empty;
    memcpy(p->commit_oid, res.oid, VCS_OID_HEXSZ);
    return step_done_commit(r, "commit", 0, t0,
                            json_pack("{s:b,s:s,s:s}", "empty", res.empty, "oid", res.oid, "head",
                                      worktree_head(r->wt)));
}

static int step_push(pl_run *r, progress *p)
{
    char expected[VCS_OID_HEXSZ];
    vcs_remote remote;
    int64_t t0 = clock_mono_ms();
    int rc;

    if (p->push)
        return 0;
    if ((rc = step_started(r, "push", 0)) || (rc = last_pushed(expected, r)))
        return rc;
    pl_remote(&remote, r->cfg, r->repo, r->ctl ? &r->ctl->cancel : NULL);
    rc = worktree_push(r->wt, &remote, expected[0] ? expected : NULL);
    if (rc) {
        step_failed(r, "push", 0, farm_error_last());
        return rc;
    }
    pl_tx t;
    tx_init(&t, r);
    step_done(&t, "push", 0, t0, json_pack("{s:s}", "oid", worktree_head(r->wt)));
    tx_event(&t, "pushed",
             json_pack("{s:I,s:s,s:s}", "run", (json_int_t)r->run_no, "oid", worktree_head(r->wt),
                       "branch", r->branch));
    p->push = 1;
    return tx_commit(&t);
}

/* "passed", "failed (exit status 1)", ... for reports. */
static void tests_words(char *out, size_t n, pl_run *r, const progress *p)
{
    if (!r->repo->test)
        snprintf(out, n, "no test command configured");
    else if (p->test_round == 0 || p->test_round < p->agent_round)
        snprintf(out, n, "not run (%s)", r->partial ? "the run reached its time limit" : "none");
    else if (p->test_status == 0)
        snprintf(out, n, "passed (`%s`, round %d)", r->repo->test, p->test_round);
    else
        snprintf(out, n, "failing (`%s`, exit status %d, after %d round%s)", r->repo->test,
                 p->test_status, p->test_round, p->test_round == 1 ? "" : "s");
}

static int step_pr(pl_run *r, progress *p, int draft)
{
    report_info ri = REPORT_INFO_INIT;
    vcs_diffstat ds = {0};
    buf body = BUF_INIT(PR_BODY_MAX);
    char tests[512], title[TITLE_MAX + 1], name[64], stat_line[128] = "";
    char *comment = NULL;
    int64_t t0 = clock_mono_ms();
    int rc, have_ds = 0;

    if (p->pr)
        return 0;
    tests_words(tests, sizeof(tests), r, p);
    if (worktree_diffstat(&ds, r->wt) == 0) {
        have_ds = 1;
        snprintf(stat_line, sizeof(stat_line),
                 "%zu file%s changed, %zu insertion%s(+), %zu "
                 "deletion%s(-)",
                 ds.files, ds.files == 1 ? "" : "s", ds.insertions, ds.insertions == 1 ? "" : "s",
                 ds.deletions, ds.deletions == 1 ? "" : "s");
    }
    if (r->partial)
        buf_printf(&body,
                   "> **Draft: the run reached its time limit (%d s) before the work was "
                   "finished.** This is what existed at that point%s; the farm pushed it rather "
                   "than lose it.\n\n",
                   r->cfg->budgets.run_wall_s,
                   p->test_round < p->agent_round || !p->test_round ? ", untested" : "");
    else if (draft)
        buf_puts(&body, "> **Draft: the tests still fail** after every fix round; see below.\n\n");
    if (p->summary) {
        put_defused(&body, p->summary);
        buf_puts(&body, "\n\n");
    }
    buf_printf(&body, "### Tests\n\n%s\n\n", tests);
    if (draft && p->test_status != 0 && p->test_tail && p->test_round > 0) {
        buf_puts(&body, "What fails (the end of the test output):\n\n");
        put_fenced(&body, "text", pl_tail(p->test_tail, 6000));
        buf_puts(&body, "\n");
    }
    if (have_ds) {
        buf_printf(&body, "### Changes\n\n%s\n\n", stat_line);
        if (ds.text && *ds.text)
            put_fenced(&body, "text", pl_tail(ds.text, 8000));
    }
    snprintf(title, sizeof(title), "%s", r->s->title && *r->s->title ? r->s->title : "farm change");
    for (char *c = title; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';

    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.tests = tests;
    ri.diffstat = have_ds ? stat_line : NULL;
    ri.summary = p->summary;
    ri.round = (int)r->run_no;
    if ((rc = report_milestone_render(&comment, REPORT_PR_OPENED, &ri)))
        goto out;

    json_t *payload =
        json_pack("{s:s,s:s,s:s,s:s,s:b,s:s}", "title", title, "body", buf_cstr(&body), "head",
                  r->branch, "base", r->repo->base_branch, "draft", draft, "state_after", "review");
    if (payload && strcmp(r->kind, "revise") != 0)
        json_object_set_new(payload, "then_comment", json_string(comment));
    pl_tx t;
    tx_init(&t, r);
    t.step_words = "opening the pull request";
    t.status = 1;
    snprintf(name, sizeof(name), "r%lld:pr", (long long)r->run_no);
    tx_outbox(&t, OUTBOX_PR, name, payload);
    step_done(&t, "pr", 0, t0, json_pack("{s:b}", "draft", draft));
    json_t *fin = finished_body(r, r->partial ? "partial" : draft ? "draft" : "pr", NULL);
    if (fin) {
        json_object_set_new(fin, "tests", json_string(tests));
        json_object_set_new(fin, "commit", json_string(worktree_head(r->wt)));
        json_object_set_new(fin, "draft", json_boolean(draft));
    }
    tx_event(&t, "run_finished", fin);
    if ((rc = tx_commit(&t)) == 0)
        p->pr = 1;
out:
    if (have_ds)
        vcs_diffstat_free(&ds);
    buf_free(&body);
    free(comment);
    return rc;
}

/* ---- the run ------------------------------------------------------------------- */

/* Begin a new run (or find this job's run begun before a crash). Returns 0,
 * 1 when the job has nothing left to do, or an error. */
typedef struct begin_ctx {
    pl_run *r;
    int resumed;
    int over_budget;
    int first;
    char *started_comment;
    char *answer_body; /* an "answer" event, for the answer run's history */
    int64_t seq;
} begin_ctx;

static int begin_fn(store_tx *tx, void *arg)
{
    begin_ctx *b = arg;
    pl_run *r = b->r;
    store_session *s = NULL;
    char body[256], key[256];
    int64_t runs;
    int rc;

    if ((rc = store_tx_session_get(&s, tx, r->s->id)))
        return rc;
    if (store_session_state_is_final(s->state) ||
        (!strcmp(r->kind, "answer") && strcmp(s->state, "waiting") != 0)) {
        b->over_budget = -1; /* nothing to do: ended, or the answer came in already */
        goto out;
    }
    if (s->runs >= r->cfg->budgets.max_runs) {
        b->over_budget = 1;
        goto out;
    }
    if ((rc = store_tx_session_run_add(&runs, tx, s->id)))
        goto out;
    r->run_no = runs;
    snprintf(body, sizeof(body), "{\"job\":%lld,\"run\":%lld,\"kind\":\"%s\"}",
             (long long)r->job->id, (long long)runs, r->kind);
    if ((rc = store_tx_event_append(&b->seq, tx, s->id, "run_started", NULL, body)))
        goto out;
    r->start_seq = b->seq;
    if (b->answer_body &&
        (rc = store_tx_event_append(&b->seq, tx, s->id, "answer", NULL, b->answer_body)))
        goto out;
    if ((rc = store_tx_session_state_set(tx, s->id, "preparing")))
        goto out;
    snprintf(body, sizeof(body), "{\"from\":\"%s\",\"to\":\"preparing\",\"run\":%lld}", s->state,
             (long long)runs);
    if ((rc = store_tx_event_append(&b->seq, tx, s->id, "state", NULL, body)))
        goto out;
    if (runs == 1 && b->started_comment) {
        json_t *p = comment_payload(b->started_comment);
        char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
        outbox_key(key, sizeof(key), s->id, "r1:started");
        rc = text ? outbox_tx_enqueue(tx, s->id, OUTBOX_COMMENT, key, text) : FARM_ENOMEM;
        free(text);
        if (rc)
            goto out;
        outbox_key(key, sizeof(key), s->id, "r1:eyes");
        if ((rc = outbox_tx_enqueue(tx, s->id, OUTBOX_REACT, key,
                                    "{\"comment_id\":0,\"reaction\":\"eyes\"}")))
            goto out;
    }
    store_session_free(s);
    s = NULL;
    if ((rc = store_tx_session_get(&s, tx, r->s->id)))
        goto out;
    {
        pl_tx t;
        tx_init(&t, r);
        t.step_words = "preparing the workspace";
        rc = status_enqueue(tx, &t, s);
    }
out:
    store_session_free(s);
    return rc;
}

static int run_begin(pl_run *r)
{
    static const char *const kinds[] = {"run_started", NULL};
    store_event *e = NULL;
    begin_ctx b = {0};
    int rc;

    /* this job's run, begun before a crash? */
    if ((rc = store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0)))
        return rc;
    if (e) {
        json_t *body = json_loads(e->body, 0, NULL);
        if (json_integer_value(json_object_get(body, "job")) == r->job->id) {
            r->run_no = json_integer_value(json_object_get(body, "run"));
            r->start_seq = e->seq;
            r->started_ms = e->ts_ms;
            b.resumed = 1;
        }
        json_decref(body);
        store_event_list_free(e, 1);
    }
    if (b.resumed) {
        static const char *const fin[] = {"run_finished", NULL};
        store_event *f = NULL;
        if ((rc = store_event_last_kind(&f, r->f->store, r->s->id, fin, r->start_seq)))
            return rc;
        if (f) {
            store_event_list_free(f, 1);
            return 1; /* it ended; the job was not marked done before a crash */
        }
        log_info("run resumed", "repo", r->repo->name);
        return 0;
    }

    report_info ri = REPORT_INFO_INIT;
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    if (r->s->runs == 0 && report_milestone_render(&b.started_comment, REPORT_STARTED, &ri) != 0)
        log_warn("started comment not rendered", "error", farm_error_last());
    if (!strcmp(r->kind, "answer")) {
        answer_info a;
        r->start_seq = 0;
        if (find_answer(&a, r) == 0 && a.answer) {
            json_t *j = json_pack("{s:s,s:s,s:s}", "question", a.question ? a.question : "", "text",
                                  a.answer, "author", a.author ? a.author : "");
            b.answer_body = j ? json_dumps(j, JSON_COMPACT) : NULL;
            json_decref(j);
        }
        answer_info_free(&a);
    }
    b.r = r;
    rc = store_write(r->f->store, begin_fn, &b);
    free(b.started_comment);
    free(b.answer_body);
    if (rc)
        return rc;
    if (b.over_budget < 0)
        return 1;
    if (b.over_budget) {
        char reason[160];
        snprintf(reason, sizeof(reason), "the session used its %d runs (budgets.max_runs)",
                 r->cfg->budgets.max_runs);
        r->run_no = r->s->runs + 1; /* the run that was not allowed */
        run_fail(r, reason, NULL);
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
    pl_tx t;
    if (store_session_state_is_final(r->s->state))
        return 0;
    tx_init(&t, r);
    t.state = "cancelled";
    t.step_words = "cancelled";
    t.skip_if_final = 1;
    tx_event(&t, "cancel", json_pack("{s:I}", "job", (json_int_t)r->job->id));
    int rc = tx_commit(&t);
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
        make_searchable(dd);
        snprintf(p, sizeof(p), "%s/work", dd);
        if (!(rc = mkdir_p(p, 0711)))
            make_searchable(p);
        snprintf(p, sizeof(p), "%s/runs", dd);
        if (!rc && !(rc = mkdir_p(p, 0711)))
            make_searchable(p);
    }
    if (!rc && !(rc = mkdir_p(r->run_dir, 0711)) && !(rc = mkdir_p(r->out_dir, 0700))) {
        chmod(r->run_dir, 0711);
        if (r->sandbox_uid && chown(r->out_dir, r->sandbox_uid, r->sandbox_uid) < 0) {
            farm_error_set("pipeline: cannot hand %s to the sandbox: %s", r->out_dir,
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
    if (rc == FARM_ECANCELLED || pl_cancel_requested(r)) {
        if (!r->cancelled) /* lease lost or shutdown: the job goes on elsewhere */
            return FARM_ECANCELLED;
        run_cancelled(r);
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
        run_fail(r, reason, NULL);
        return 0;
    default:
        log_warn("run step failed; the job will be tried again", "step", step, "error",
                 farm_error_last());
        return FARM_EAGAIN;
    }
}

int pipeline_run(farm *f, const store_job *job, pipeline_ctl *ctl)
{
    pl_run r = {0};
    progress p = {0};
    int rc, max_rounds;

    if (!f || !job || job->session_id <= 0) {
        farm_error_set("pipeline: a job with a session is required");
        return FARM_EINVALID;
    }
    r.f = f;
    r.cfg = f->cfg;
    r.job = job;
    r.ctl = ctl;
    r.kind = job->kind;
    r.sandboxed = !r.cfg->sandbox.mode || strcmp(r.cfg->sandbox.mode, "unsafe-none") != 0;
    if (r.sandboxed && geteuid() == 0)
        r.sandbox_uid = SANDBOX_UID_BASE + (unsigned)(job->session_id & 0x0fffffff);
    if ((rc = store_session_get(&r.s, f->store, job->session_id)))
        return rc;
    if (!(r.repo = config_repo_find(r.cfg, r.s->tracker, r.s->repo))) {
        farm_error_set("pipeline: %s is no longer configured", r.s->repo);
        store_session_free(r.s);
        return FARM_ENOTFOUND;
    }
    if (r.s->branch && vcs_branch_name_valid(r.s->branch))
        snprintf(r.branch, sizeof(r.branch), "%s", r.s->branch);
    else if ((rc = vcs_branch_name(r.branch, sizeof(r.branch), r.s->number, r.s->title)))
        goto out;

    if (!strcmp(job->kind, "cancel")) {
        char *dd = realpath(r.cfg->data_dir, NULL);
        if (dd)
            snprintf(r.wt_path, sizeof(r.wt_path), "%s/work/s%lld", dd, (long long)r.s->id);
        free(dd);
        rc = job_cancel(&r);
        goto out;
    }
    if (strcmp(job->kind, "run") != 0 && strcmp(job->kind, "revise") != 0 &&
        strcmp(job->kind, "answer") != 0) {
        farm_error_set("pipeline: unknown job kind '%s'", job->kind);
        rc = FARM_EINVALID;
        goto out;
    }
    if (store_session_state_is_final(r.s->state)) {
        log_info("job for an ended session skipped", "state", r.s->state);
        rc = 0;
        goto out;
    }
    if ((rc = run_begin(&r)) != 0) {
        rc = rc == 1 ? 0 : rc;
        goto out;
    }
    r.wall_end_ms = r.started_ms + (int64_t)r.cfg->budgets.run_wall_s * 1000;
    r.partial_at_ms = r.wall_end_ms - (int64_t)r.cfg->budgets.partial_margin_s * 1000;
    if ((rc = paths_init(&r))) {
        rc = step_error(&r, rc, "preparing");
        goto out;
    }
    if ((rc = progress_load(&p, &r)))
        goto out;
    r.partial = p.partial;

    if (pl_cancel_requested(&r)) {
        rc = step_error(&r, FARM_ECANCELLED, "cancel");
        goto out;
    }
    if ((rc = step_fetch(&r, &p))) {
        rc = step_error(&r, rc, "fetch");
        goto out;
    }
    if ((rc = step_worktree(&r, &p))) {
        rc = step_error(&r, rc, "worktree");
        goto out;
    }
    if ((rc = step_setup(&r, &p))) {
        rc = rc == 1 ? 0 : step_error(&r, rc, "setup");
        goto out;
    }

    /* agent and test rounds */
    max_rounds = 1 + r.repo->max_fix_rounds;
    if (max_rounds > PL_MAX_ROUNDS)
        max_rounds = PL_MAX_ROUNDS;
    for (;;) {
        if (pl_cancel_requested(&r)) {
            rc = step_error(&r, FARM_ECANCELLED, "cancel");
            goto out;
        }
        if (!r.partial && clock_wall_ms() >= r.partial_at_ms && !p.commit)
            r.partial = 1; /* resumed past the time limit: push what exists */
        int tests_pending = r.repo->test && p.test_round < p.agent_round && !r.partial;
        int need_agent = !p.commit && !r.partial &&
                         (p.agent_round == 0 || (r.repo->test && p.test_round == p.agent_round &&
                                                 p.test_status != 0 && p.agent_round < max_rounds));
        if (tests_pending) {
            if ((rc = step_test(&r, &p, p.agent_round))) {
                rc = step_error(&r, rc, "test");
                goto out;
            }
            continue;
        }
        if (!need_agent)
            break;
        if ((rc = step_agent(&r, &p, p.agent_round + 1, max_rounds))) {
            rc = rc == 1 ? 0 : step_error(&r, rc, "agent");
            goto out;
        }
    }

    if ((rc = step_commit(&r, &p))) {
        rc = step_error(&r, rc, "commit");
        goto out;
    }
    if (p.commit_empty && !p.push) {
        /* nothing changed: say what the agent said */
        buf why = BUF_INIT(PL_SUMMARY_MAX + 512);
        if (p.agent_exit != 0)
            buf_printf(&why, "the agent exited with status %d and changed nothing", p.agent_exit);
        else
            buf_puts(&why, "the agent made no change");
        if (p.summary) {
            buf_puts(&why, "; it said: ");
            buf_puts(&why, p.summary);
        }
        rc = run_fail(&r, buf_cstr(&why), p.test_tail);
        buf_free(&why);
        goto out;
    }
    if (pl_cancel_requested(&r)) {
        rc = step_error(&r, FARM_ECANCELLED, "cancel");
        goto out;
    }
    if ((rc = step_push(&r, &p))) {
        rc = step_error(&r, rc, "push");
        goto out;
    }
    int draft = r.partial || (r.repo->test && p.test_round > 0 && p.test_status != 0);
    if ((rc = step_pr(&r, &p, draft))) {
        rc = step_error(&r, rc, "pr");
        goto out;
    }
    cleanup_dirs(&r);
    rc = 0;
out:
    progress_free(&p);
    if (r.wt)
        worktree_free(r.wt);
    mirror_free(r.m);
    store_session_free(r.s);
    return rc;
}
