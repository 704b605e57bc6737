/*
 * pipeline_pr.c - the last step of a run: the pull request. Its body says
 * what the agent said it did, how the tests stand (with the end of their
 * output when they fail) and what changed; a run that reached its time
 * limit, an agent that did not finish cleanly or tests that still fail make
 * it a draft that says so, and so do the "opened" comment and the session
 * (pr_draft, pr_draft_reason). The PR goes out through the outbox, in one
 * commit with the "pr" step's checkpoint, the session's draft state and the
 * run's "run_finished" event (pipeline_tx.c).
 */
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PR_BODY_MAX (60u << 10)

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
    pl_put_defused(b, text);
    if (*text && text[strlen(text) - 1] != '\n')
        buf_putc(b, '\n');
    for (size_t i = 0; i < fence; i++)
        buf_putc(b, '`');
    buf_putc(b, '\n');
}

/* "passed", "failed (exit status 1)", ... for reports. */
static void tests_words(char *out, size_t n, pl_run *r, const pl_progress *p)
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

/* What the PR is about to say, gathered once for its body, the "opened"
 * comment and the run's end. */
typedef struct pr_info {
    int draft;
    int agent_failed;  /* the agent exited non-zero before the time limit */
    int tests_failing; /* the caller asked for a draft: the tests still fail */
    char tests[512];   /* tests_words() */
    char why[512];     /* why it is a draft, in a few words ("" when it is not) */
    vcs_diffstat ds;
    int have_ds;
    char stat_line[128]; /* "3 files changed, ..." when have_ds */
} pr_info;

/* Why the PR is a draft, for the session (pr_draft_reason), the comment and
 * the log: each cause the PR's body explains, in a few words. */
static void draft_words(pr_info *pi, pl_run *r, const pl_progress *p)
{
    size_t n = sizeof(pi->why), o = 0;

    pi->why[0] = '\0';
    if (pl_budget_words(pi->why, n, r))
        o = strlen(pi->why);
    if (r->partial && o < n)
        o += (size_t)snprintf(pi->why + o, n - o, "%sthe run reached its time limit (%d s)",
                              o ? "; " : "", r->cfg->budgets.run_wall_s);
    if (pi->agent_failed && o < n)
        o += (size_t)snprintf(pi->why + o, n - o, "%sthe agent exited with status %d",
                              o ? "; " : "", p->agent_exit);
    if (pi->tests_failing && !r->partial && o < n)
        o += (size_t)snprintf(pi->why + o, n - o, "%sthe tests still fail after %d round%s",
                              o ? "; " : "", p->test_round, p->test_round == 1 ? "" : "s");
    if (pi->draft && !pi->why[0])
        snprintf(pi->why, n, "the run did not finish cleanly");
}

static void pr_info_init(pr_info *pi, pl_run *r, const pl_progress *p, int draft)
{
    memset(pi, 0, sizeof(*pi));
    /* an agent that did not finish cleanly left work nobody should take for
     * finished: pushed so that nothing is lost, but as a draft that says so */
    pi->agent_failed = p->agent_exit != 0 && !r->partial && !atomic_load(&r->budget_hit);
    pi->tests_failing = draft && r->repo->test && p->test_round > 0 && p->test_status != 0;
    pi->draft = draft || pi->agent_failed;
    tests_words(pi->tests, sizeof(pi->tests), r, p);
    draft_words(pi, r, p);
    if (vcs_worktree_diffstat(&pi->ds, r->wt) == 0) {
        pi->have_ds = 1;
        snprintf(pi->stat_line, sizeof(pi->stat_line),
                 "%zu file%s changed, %zu insertion%s(+), %zu "
                 "deletion%s(-)",
                 pi->ds.files, pi->ds.files == 1 ? "" : "s", pi->ds.insertions,
                 pi->ds.insertions == 1 ? "" : "s", pi->ds.deletions,
                 pi->ds.deletions == 1 ? "" : "s");
    }
}

/* The PR's description: why it is a draft, the agent's summary, the tests,
 * the changes. */
static void pr_body(buf *body, pl_run *r, const pl_progress *p, const pr_info *pi)
{
    char budget[400];
    if (pl_budget_words(budget, sizeof(budget), r))
        buf_printf(body,
                   "> **Draft: the agent was stopped by a budget:** %s. This is what existed "
                   "at that point; the farm pushed it rather than lose it.\n\n",
                   budget);
    if (r->partial)
        buf_printf(body,
                   "> **Draft: the run reached its time limit (%d s) before the work was "
                   "finished.** This is what existed at that point%s; the farm pushed it rather "
                   "than lose it.\n\n",
                   r->cfg->budgets.run_wall_s,
                   p->test_round < p->agent_round || !p->test_round ? ", untested" : "");
    if (pi->agent_failed)
        buf_printf(body,
                   "> **Draft: the agent exited with status %d** instead of finishing. This is "
                   "the change it left, pushed so that nothing is lost; its last output is in "
                   "the session log.\n\n",
                   p->agent_exit);
    if (pi->tests_failing && !r->partial)
        buf_puts(body, "> **Draft: the tests still fail** after every fix round; see below.\n\n");
    if (p->summary) {
        pl_put_defused(body, p->summary);
        buf_puts(body, "\n\n");
    }
    buf_printf(body, "### Tests\n\n%s\n\n", pi->tests);
    if (pi->draft && p->test_status != 0 && p->test_tail && p->test_round > 0) {
        buf_puts(body, "What fails (the end of the test output):\n\n");
        put_fenced(body, "text", pl_tail(p->test_tail, 6000));
        buf_puts(body, "\n");
    }
    if (pi->have_ds) {
        buf_printf(body, "### Changes\n\n%s\n\n", pi->stat_line);
        if (pi->ds.text && *pi->ds.text)
            put_fenced(body, "text", pl_tail(pi->ds.text, 8000));
    }
}

/* The run's "run_finished" event: its outcome, the tests, the commit, and
 * the diffstat for the review queue and the digest (farm/digest/digest.c). */
static json_t *pr_finished_body(pl_run *r, const pr_info *pi)
{
    json_t *fin = pl_finished_body(r,
                                   r->partial  ? "partial"
                                   : pi->draft ? "draft"
                                               : "pr",
                                   atomic_load(&r->budget_hit) != PL_BUDGET_NONE ? "budget" : NULL);
    if (!fin)
        return NULL;
    json_object_set_new(fin, "tests", json_string(pi->tests));
    json_object_set_new(fin, "commit", json_string(vcs_worktree_head(r->wt)));
    json_object_set_new(fin, "draft", json_boolean(pi->draft));
    if (pi->draft)
        json_object_set_new(fin, "draft_reason", json_string(pi->why));
    if (pi->have_ds)
        json_object_set_new(fin, "diffstat",
                            json_pack("{s:I,s:I,s:I}", "files", (json_int_t)pi->ds.files,
                                      "insertions", (json_int_t)pi->ds.insertions, "deletions",
                                      (json_int_t)pi->ds.deletions));
    return fin;
}

/* What the session records of the PR's draft state once this run's entry
 * is sent. A new PR is opened as a draft or not; an open one keeps what it
 * was opened as (the tracker's draft flag is set at creation only), so a
 * draft stays one, with this run's reason, or saying that this run is
 * clean and a person can mark it ready. */
static void draft_state(pl_tx *t, pl_run *r, pr_info *pi, char *words, size_t n)
{
    if (r->s->pr_number <= 0) {
        t->pr_draft_set = 1;
        t->pr_draft = pi->draft;
        t->pr_draft_reason = pi->draft ? pi->why : NULL;
    } else if (r->s->pr_draft) {
        t->pr_draft_set = 1;
        t->pr_draft = 1;
        if (pi->draft) {
            t->pr_draft_reason = pi->why;
        } else {
            snprintf(words, n,
                     "opened as a draft; run %lld finished cleanly, so it can be marked "
                     "ready for review",
                     (long long)r->run_no);
            t->pr_draft_reason = words;
        }
    }
}

/* The denied destinations (at most REPORT_EGRESS_MAX + 1: the status says
 * "and more" past the max) as a JSON array for the PR's outbox entry. */
static json_t *denied_json(const report_egress *d, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n && i <= REPORT_EGRESS_MAX; i++)
        json_array_append_new(a, json_pack("{s:s,s:i,s:s,s:s,s:I}", "host", d[i].host, "port",
                                           d[i].port, "reason", d[i].reason, "step", d[i].step,
                                           "count", (json_int_t)d[i].count));
    return a;
}

int pl_step_pr(pl_run *r, pl_progress *p, int draft)
{
    report_info ri = REPORT_INFO_INIT;
    buf body = BUF_INIT(PR_BODY_MAX);
    char title[PL_TITLE_MAX + 1], name[64], reason[600];
    char *comment = NULL;
    int64_t t0 = clock_mono_ms();
    pr_info pi;
    pl_tx t;
    int rc;

    if (p->pr)
        return 0;
    pr_info_init(&pi, r, p, draft);
    pr_body(&body, r, p, &pi);
    pl_title(title, r);
    ri.session = r->s;
    ri.public_url = r->cfg->public_url;
    ri.tests = pi.tests;
    ri.diffstat = pi.have_ds ? pi.stat_line : NULL;
    ri.summary = p->summary;
    ri.run = (int)r->run_no;
    ri.draft = pi.draft;
    ri.draft_reason = pi.why;
    report_egress denied[PL_EGRESS_MAX];
    ri.denied = denied;
    ri.ndenied = pl_egress_denied(denied, PL_EGRESS_MAX, r);
    if ((rc = report_milestone_render(&comment, REPORT_PR_OPENED, &ri)))
        goto out;

    json_t *payload = json_pack("{s:s,s:s,s:s,s:s,s:b,s:s}", "title", title, "body",
                                buf_cstr(&body), "head", r->branch, "base", r->repo->base_branch,
                                "draft", pi.draft, "state_after", "review");
    if (payload && !pl_kind_revises(r))
        json_object_set_new(payload, "then_comment", json_string(comment));
    if (payload && ri.ndenied > 0) /* for the status comment the outbox writes after the PR */
        json_object_set_new(payload, "denied", denied_json(denied, ri.ndenied));
    pl_tx_init(&t, r);
    t.step_words = "opening the pull request";
    t.status = 1;
    draft_state(&t, r, &pi, reason, sizeof(reason));
    snprintf(name, sizeof(name), "r%lld:pr", (long long)r->run_no);
    pl_tx_outbox(&t, OUTBOX_PR, name, payload);
    pl_step_done(&t, "pr", 0, t0,
                 pi.draft ? json_pack("{s:b,s:s}", "draft", 1, "draft_reason", pi.why)
                          : json_pack("{s:b}", "draft", 0));
    pl_tx_event(&t, "run_finished", pr_finished_body(r, &pi));
    if ((rc = pl_tx_commit(&t)) == 0)
        p->pr = 1;
out:
    if (pi.have_ds)
        vcs_diffstat_free(&pi.ds);
    buf_free(&body);
    free(comment);
    return rc;
}
