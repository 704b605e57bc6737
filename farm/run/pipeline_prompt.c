/*
 * pipeline_prompt.c - what goes into an agent's prompt, gathered for
 * guidelines/prompt.c: the issue thread from the tracker (without the
 * farm's own comments), the session's history digest and the messages
 * people sent, the review comments of a revision, and the step's part.
 * `farm prompt` uses the same path (pipeline_prompt_preview()), so what it
 * prints is what an agent gets.
 */
#include "history.h"
#include "pipeline_internal.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/trackers.h"
#include "farm/store/store_run.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MESSAGES_MAX 50  /* messages people sent, newest kept */
#define REVIEWS_MAX  100 /* review comments given to one revision */

void pl_mirror_name(char *out, size_t n, const config_repo *repo)
{
    snprintf(out, n, "%s/%s", repo->tracker, repo->name);
}

void pl_remote(vcs_remote *out, const config *cfg, const config_repo *repo,
               const volatile int *cancel)
{
    vcs_remote r = VCS_REMOTE_INIT;
    r.url = repo->clone_url;
    r.name = repo->name;
    if (!strcmp(repo->tracker, "github")) {
        r.user = "x-access-token";
        r.token = cfg->github.token;
    } else if (!strcmp(repo->tracker, "azure")) {
        r.user = "farm";
        r.token = cfg->azure.token;
    }
    r.cancel = cancel;
    *out = r;
}

/* A comment the farm wrote itself (status, milestones): it carries a marker. */
static int is_farm_comment(const char *body)
{
    return body && strstr(body, "<!-- farm:") != NULL;
}

typedef struct gathered {
    tracker_thread *th;
    prompt_comment *comments;
    size_t ncomments;
    store_event *msg_ev;
    size_t nmsg_ev;
    prompt_comment *messages;
    size_t nmessages;
    json_t *msg_bodies; /* keeps the strings messages point into */
    tracker_review_comment *rc;
    size_t nrc;
    store_event *rev_ev;
    size_t nrev_ev;
    prompt_review_comment *reviews;
    size_t nreviews;
    char *history;
} gathered;

static void gathered_free(gathered *g)
{
    tracker_thread_free(g->th);
    free(g->comments);
    store_event_list_free(g->msg_ev, g->nmsg_ev);
    free(g->messages);
    json_decref(g->msg_bodies);
    tracker_review_comments_free(g->rc, g->nrc);
    store_event_list_free(g->rev_ev, g->nrev_ev);
    free(g->reviews);
    free(g->history);
}

static int gather_messages(gathered *g, farm *f, const store_session *s)
{
    static const char *const kinds[] = {"message", NULL};
    int rc =
        store_event_list_kinds(&g->msg_ev, &g->nmsg_ev, f->store, s->id, kinds, 0, STORE_LIST_MAX);
    if (rc || g->nmsg_ev == 0)
        return rc;
    size_t first = g->nmsg_ev > MESSAGES_MAX ? g->nmsg_ev - MESSAGES_MAX : 0;
    g->messages = calloc(g->nmsg_ev - first, sizeof(*g->messages));
    g->msg_bodies = json_array();
    if (!g->messages || !g->msg_bodies)
        return FARM_ENOMEM;
    for (size_t i = first; i < g->nmsg_ev; i++) {
        json_t *b = json_loads(g->msg_ev[i].body, 0, NULL);
        const char *text = json_string_value(json_object_get(b, "text"));
        if (!text) {
            json_decref(b);
            continue;
        }
        json_array_append_new(g->msg_bodies, b);
        prompt_comment *m = &g->messages[g->nmessages++];
        m->author = json_string_value(json_object_get(b, "author"));
        if (!m->author)
            m->author = g->msg_ev[i].actor;
        m->body = text;
    }
    return 0;
}

/* 1 when comment id was logged at or after seq before_seq (it came after
 * the run started: the next revision's, whose window begins there). */
static int logged_later(const gathered *g, int64_t before_seq, int64_t id)
{
    for (size_t i = 0; before_seq > 0 && id && i < g->nrev_ev; i++) {
        if (g->rev_ev[i].seq < before_seq)
            continue;
        json_t *b = json_loads(g->rev_ev[i].body, 0, NULL);
        int same = json_integer_value(json_object_get(b, "comment_id")) == id;
        json_decref(b);
        if (same)
            return 1;
    }
    return 0;
}

static int gather_reviews(gathered *g, farm *f, tracker *t, const store_session *s,
                          const config_repo *repo, int64_t after_seq, int64_t after_ms,
                          int64_t before_seq)
{
    char after[40] = "";
    /* "comment": a PR conversation comment that asked for the revision by
     * mentioning the bot (review.h); Azure's PR comments come from the
     * tracker's threads below */
    static const char *const kinds[] = {"review", "review_comment", "comment", NULL};
    tracker_ref ref = TRACKER_REF_INIT;
    int azure = !strcmp(s->tracker, "azure");
    int rc;

    ref.repo = repo->name;
    ref.number = s->number;
    if (after_ms > 0)
        clock_format_rfc3339(after, sizeof(after), after_ms);
    if (s->pr_number > 0 && t &&
        tracker_pr_review_comments(&g->rc, &g->nrc, t, &ref, s->pr_number) != 0) {
        log_warn("review comments not read; using the ones recorded", "repo", repo->name, "error",
                 farm_error_last());
        g->rc = NULL;
        g->nrc = 0;
    }
    if ((rc = store_event_list_kinds(&g->rev_ev, &g->nrev_ev, f->store, s->id, kinds, after_seq,
                                     STORE_LIST_MAX)))
        return rc;
    if (!(g->reviews = calloc(REVIEWS_MAX, sizeof(*g->reviews))))
        return FARM_ENOMEM;
    if (!g->msg_bodies && !(g->msg_bodies = json_array()))
        return FARM_ENOMEM;
    /* review bodies, and inline comments the tracker did not give */
    for (size_t i = 0; i < g->nrev_ev && g->nreviews < REVIEWS_MAX; i++) {
        json_t *b = json_loads(g->rev_ev[i].body, 0, NULL);
        const char *body = json_string_value(json_object_get(b, "body"));
        int inline_known = 0;
        int issue_comment = !strcmp(g->rev_ev[i].kind, "comment") &&
                            (azure || !json_is_true(json_object_get(b, "is_pr")));
        int later = before_seq > 0 && g->rev_ev[i].seq >= before_seq;
        if (!body || !*body || issue_comment || later) {
            json_decref(b);
            continue;
        }
        json_int_t cid = json_integer_value(json_object_get(b, "comment_id"));
        for (size_t k = 0; cid && k < g->nrc; k++)
            inline_known |= g->rc[k].id == cid;
        if (inline_known) {
            json_decref(b);
            continue;
        }
        json_array_append_new(g->msg_bodies, b);
        prompt_review_comment *r = &g->reviews[g->nreviews++];
        r->author = g->rev_ev[i].actor;
        r->body = body;
        r->path = json_string_value(json_object_get(b, "path"));
        r->line = (int)json_integer_value(json_object_get(b, "line"));
    }
    for (size_t k = 0; k < g->nrc && g->nreviews < REVIEWS_MAX; k++) {
        if (is_farm_comment(g->rc[k].body) || logged_later(g, before_seq, g->rc[k].id))
            continue;
        /* inline comments older than the previous run were addressed then
         * (RFC 3339 in UTC compare as text, to the second) */
        if (after_ms > 0 && g->rc[k].created_at && strlen(g->rc[k].created_at) >= 19 &&
            strncmp(g->rc[k].created_at, after, 19) < 0)
            continue;
        prompt_review_comment *r = &g->reviews[g->nreviews++];
        r->author = g->rc[k].author;
        r->path = g->rc[k].path;
        r->line = g->rc[k].line;
        r->body = g->rc[k].body;
    }
    return 0;
}

int pl_prompt_compose(char **out, farm *f, const store_session *s, const config_repo *repo,
                      int64_t issue, const char *worktree_dir, const char *branch,
                      const pl_prompt_in *in)
{
    prompt_input pi = PROMPT_INPUT_INIT;
    gathered g = {0};
    tracker *t = NULL;
    tracker_ref ref = TRACKER_REF_INIT;
    int rc;

    *out = NULL;
    ref.repo = repo->name;
    ref.number = issue;
    if ((rc = farm_tracker_get(&t, f, repo->tracker)))
        goto out;
    if ((rc = tracker_thread_get(&g.th, t, &ref)))
        goto out;
    if (g.th->ncomments && !(g.comments = calloc(g.th->ncomments, sizeof(*g.comments)))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < g.th->ncomments; i++) {
        tracker_comment *c = &g.th->comments[i];
        if (is_farm_comment(c->body))
            continue;
        g.comments[g.ncomments++] = (prompt_comment){c->author, c->created_at, c->body};
    }
    if (s) {
        if ((rc = gather_messages(&g, f, s)))
            goto out;
        if ((rc = history_digest(&g.history, f->store, s->id, in->history_before_seq)))
            goto out;
        if (in->step == PROMPT_REVISION &&
            (rc = gather_reviews(&g, f, t, s, repo, in->reviews_after_seq, in->reviews_after_ms,
                                 in->history_before_seq)))
            goto out;
    }

    pi.step = in->step;
    pi.worktree = worktree_dir;
    pi.repo = repo->name;
    pi.issue_number = issue;
    pi.issue_title = g.th->title;
    pi.issue_body = g.th->body;
    pi.issue_author = g.th->author;
    pi.issue_url = g.th->url;
    pi.comments = g.comments;
    pi.ncomments = g.ncomments;
    pi.branch = branch;
    pi.base_branch = repo->base_branch;
    pi.test_command = repo->test;
    pi.round = in->round;
    pi.max_rounds = in->max_rounds;
    pi.conflicts = in->conflicts;
    pi.plan = in->plan;
    pi.test_status = in->test_status;
    pi.test_output = in->test_output;
    pi.ci_failures = in->ci_failures;
    pi.reviews = g.reviews;
    pi.nreviews = g.nreviews;
    pi.question = in->question;
    pi.answer = in->answer;
    pi.answer_author = in->answer_author;
    pi.history = g.history;
    pi.messages = g.messages;
    pi.nmessages = g.nmessages;
    rc = prompt_compose(out, &pi);
out:
    if (rc == FARM_ENOMEM)
        farm_error_set("pipeline: out of memory composing the prompt");
    gathered_free(&g);
    return rc;
}

int pipeline_prompt_preview(char **out, farm *f, const char *repo_name, int64_t issue)
{
    static unsigned counter;
    const config_repo *repo = NULL;
    vcs_mirror *m = NULL;
    vcs_worktree *wt = NULL;
    worktree_opts o = WORKTREE_OPTS_INIT;
    pl_prompt_in in = {0};
    vcs_remote remote;
    char name[1024], path[PATH_MAX], branch[256];
    char *dd = NULL;
    int rc;

    *out = NULL;
    for (size_t i = 0; repo_name && i < f->cfg->nrepos; i++)
        if (!strcasecmp(f->cfg->repos[i].name, repo_name))
            repo = &f->cfg->repos[i];
    if (!repo) {
        farm_error_set("%s is not a configured repository", repo_name ? repo_name : "(null)");
        return FARM_ENOTFOUND;
    }
    if (issue <= 0) {
        farm_error_set("an issue number is a positive integer");
        return FARM_EINVALID;
    }
    if (!(dd = realpath(f->cfg->data_dir, NULL))) {
        farm_error_set("data directory %s: %s", f->cfg->data_dir, strerror(errno));
        return FARM_EIO;
    }
    pl_mirror_name(name, sizeof(name), repo);
    if ((rc = vcs_mirror_open(&m, f->cfg->data_dir, name)))
        goto out;
    pl_remote(&remote, f->cfg, repo, NULL);
    if ((rc = vcs_mirror_fetch(m, &remote)))
        goto out;
    snprintf(path, sizeof(path), "%s/tmp/prompt-%ld-%u", dd, (long)getpid(),
             __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    vcs_tree_remove(path);
    snprintf(branch, sizeof(branch), "farm-prompt/%lld", (long long)issue);
    o.path = path;
    o.branch = branch;
    o.base = repo->base_branch;
    if ((rc = vcs_worktree_create(&wt, m, &o)))
        goto out;
    if (vcs_branch_name(branch, sizeof(branch), issue, NULL) != 0)
        snprintf(branch, sizeof(branch), "farm/%lld", (long long)issue);
    {
        /* the branch a run would use comes from the title: read it first */
        tracker *t = NULL;
        tracker_thread *th = NULL;
        tracker_ref ref = TRACKER_REF_INIT;
        ref.repo = repo->name;
        ref.number = issue;
        if ((rc = farm_tracker_get(&t, f, repo->tracker)) ||
            (rc = tracker_thread_get(&th, t, &ref)))
            goto out;
        vcs_branch_name(branch, sizeof(branch), issue, th->title);
        tracker_thread_free(th);
    }
    in.step = PROMPT_FIRST_RUN;
    in.round = 1;
    in.max_rounds = 1 + repo->max_fix_rounds;
    rc = pl_prompt_compose(out, f, NULL, repo, issue, path, branch, &in);
out:
    if (wt) {
        vcs_worktree_remove(wt);
        vcs_worktree_free(wt);
    }
    vcs_mirror_free(m);
    free(dd);
    return rc;
}
