/*
 * pipeline_ci.c - the CI fix loop's decision, at the start of a "ci" job.
 *
 * farm/intake/ci.c queues one "ci" job per farm pull request whose checks
 * completed, due when they have been quiet for ci.settle_s. When the job
 * runs, this file asks the tracker about every check on the commit the farm
 * pushed last and decides, with the session log as its memory:
 *
 * - a check still queued or running: nothing now (its completion queues the
 *   job again);
 * - the commit was decided already (a "ci_fix" or "ci_verdict" event names
 *   it): nothing, so a redelivered or late event never starts a second round;
 * - all passed after a fix round: "CI passes after fix round N" on the PR;
 * - the checks cannot be read: said on the PR once for the commit (after a
 *   few tries when the tracker is busy); the session stays as it is;
 * - failures: the failing checks' names and the tail of each one's log,
 *   bounded (CI_TAIL_MAX per check, CI_TEXT_MAX in all). The same failure
 *   as the previous round's (same names, same log tails with digits set
 *   aside, so timestamps and durations do not count) stops the loop with a
 *   comment saying so, as do ci.max_fix_rounds and budgets.max_runs; else a
 *   "ci_fix" event records the round and the run goes on like a revision,
 *   with the failures in its prompt (templates/ci-fix.md).
 *
 * Every comment goes through the outbox, keyed by the commit and the
 * outcome ("s<id>:ci:<sha>:<outcome>"), in the same transaction as the
 * event that records the decision.
 */
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/trackers.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CI_CHECKS_MAX 8           /* failing checks whose logs are read */
#define CI_TAIL_MAX   (6 * 1024)  /* of one check's log */
#define CI_TEXT_MAX   (32 * 1024) /* the whole failures section of the prompt */
#define CI_SIG_TAIL   2048        /* of each tail, what the failure's signature covers */
#define CI_ATTEMPTS   3           /* tries of a job whose tracker is busy or down */

int pl_kind_revises(const pl_run *r)
{
    return !strcmp(r->kind, "revise") || !strcmp(r->kind, "ci");
}

/* What the session log says about the loop so far. */
typedef struct ci_memory {
    int rounds;           /* "ci_fix" events */
    json_t *last_fix;     /* the newest, or NULL */
    int64_t last_fix_seq; /* its seq */
    int passed_since;     /* a "passed" verdict after it */
    int decided;          /* head has a fix or a verdict already */
    json_t *mine;         /* the "ci_fix" this job wrote before a crash, or NULL */
} ci_memory;

static void memory_free(ci_memory *m)
{
    json_decref(m->last_fix);
    json_decref(m->mine);
}

static int memory_load(ci_memory *m, pl_run *r, const char *head)
{
    static const char *const kinds[] = {"ci_fix", "ci_verdict", NULL};
    store_event *v = NULL;
    size_t n = 0;
    int rc = store_event_list_kinds(&v, &n, r->f->store, r->s->id, kinds, 0, STORE_LIST_MAX);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_loads(v[i].body, 0, NULL);
        const char *sha = json_string_value(json_object_get(b, "sha"));
        const char *outcome = json_string_value(json_object_get(b, "outcome"));
        if (sha && !strcmp(sha, head))
            m->decided = 1;
        if (!strcmp(v[i].kind, "ci_fix")) {
            m->rounds++;
            json_decref(m->last_fix);
            m->last_fix = json_incref(b);
            m->last_fix_seq = v[i].seq;
            m->passed_since = 0;
            if (sha && !strcmp(sha, head) &&
                json_integer_value(json_object_get(b, "job")) == r->job->id) {
                json_decref(m->mine);
                m->mine = json_incref(b);
            }
        } else if (outcome && !strcmp(outcome, "passed")) {
            m->passed_since = 1;
        }
        json_decref(b);
    }
    store_event_list_free(v, n);
    return 0;
}

/* A fence longer than any run of backticks in text. */
static void fence_for(char *out, size_t n, const char *text)
{
    size_t run = 0, best = 2;
    for (const char *p = text; p && *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    if (best + 2 > n)
        best = n - 2;
    memset(out, '`', best + 1);
    out[best + 1] = '\0';
}

/* One failing check into the prompt's text and the signature's input. */
static void failure_put(buf *text, buf *sig, tracker *t, const tracker_ref *ref,
                        const tracker_check *c)
{
    char *tail = NULL, fence[32];
    int rc = c->log_id > 0 ? tracker_check_log_tail(&tail, t, ref, c, CI_TAIL_MAX) : FARM_ENOTFOUND;

    buf_printf(text, "### %s (%s)\n\n", c->name, c->conclusion ? c->conclusion : "failed");
    if (c->summary)
        buf_printf(text, "%s\n\n", c->summary);
    if (c->url)
        buf_printf(text, "Details: %s\n\n", c->url);
    if (rc == 0) {
        fence_for(fence, sizeof fence, tail);
        buf_printf(text, "%stext\n%s\n%s\n\n", fence, tail, fence);
    } else if (c->log_id > 0) {
        buf_printf(text, "(The farm could not read this check's log: %s)\n\n", farm_error_last());
    } else {
        buf_puts(text, "(This check has no log the farm can read.)\n\n");
    }
    buf_printf(sig, "%s\n", c->name);
    if (tail) {
        size_t len = strlen(tail);
        const char *from = len > CI_SIG_TAIL ? tail + len - CI_SIG_TAIL : tail;
        for (const char *p = from; *p; p++)
            if (*p < '0' || *p > '9')
                buf_putc(sig, *p);
        buf_putc(sig, '\n');
    }
    free(tail);
}

static int by_name(const void *a, const void *b)
{
    const tracker_check *x = *(const tracker_check *const *)a,
                        *y = *(const tracker_check *const *)b;
    return strcmp(x->name, y->name);
}

/* A decision that ends this job: the verdict event and, when there is
 * something to say, the comment on the PR, in one transaction. */
static int verdict(pl_run *r, const char *head, const char *outcome, int round, const char *body)
{
    char name[128];
    pl_tx t;

    pl_tx_init(&t, r);
    t.skip_if_final = 1;
    pl_tx_event(&t, "ci_verdict",
                json_pack("{s:s,s:s,s:i,s:I}", "sha", head, "outcome", outcome, "round", round,
                          "job", (json_int_t)r->job->id));
    if (body) {
        snprintf(name, sizeof name, "ci:%.12s:%s", head, outcome);
        pl_tx_outbox(&t, OUTBOX_COMMENT, name,
                     json_pack("{s:s,s:b}", "body", body, "on_pr", r->s->pr_number > 0));
    }
    log_info("ci verdict", "repo", r->repo->name, "sha", head, "outcome", outcome);
    return pl_tx_commit(&t);
}

/* The names of the failing checks, "`a`, `b`". */
static void names_put(buf *b, tracker_check **failed, size_t nf)
{
    for (size_t i = 0; i < nf; i++)
        buf_printf(b, "%s`%s`", i ? ", " : "", failed[i]->name);
}

/* The checks failed: stop the loop, or record the round and go on. */
static int on_failures(pl_run *r, const ci_memory *m, const char *head, tracker *t,
                       const tracker_ref *ref, tracker_check **failed, size_t nf)
{
    buf text = BUF_INIT(CI_TEXT_MAX), sig = BUF_INIT(CI_CHECKS_MAX * (CI_SIG_TAIL + 512)),
        say = BUF_INIT(4096);
    unsigned char d[32];
    char hex[65];
    int rc = 0;

    qsort(failed, nf, sizeof(*failed), by_name);
    for (size_t i = 0; i < nf && i < CI_CHECKS_MAX; i++)
        failure_put(&text, &sig, t, ref, failed[i]);
    if (nf > CI_CHECKS_MAX)
        buf_printf(&text, "(%zu more failing checks are not shown.)\n", nf - CI_CHECKS_MAX);
    crypto_sha256(d, sig.data ? sig.data : "", sig.len);
    crypto_hex(hex, d, 16);

    const char *prev = json_string_value(json_object_get(m->last_fix, "signature"));
    int prev_round = (int)json_integer_value(json_object_get(m->last_fix, "round"));
    if (m->last_fix && !m->passed_since && prev && !strcmp(prev, hex)) {
        buf_puts(&say, "CI fails the same way after fix round ");
        buf_printf(&say, "%d (", prev_round);
        names_put(&say, failed, nf);
        buf_puts(&say, "), so the farm stops fixing CI on this pull request rather than chase "
                       "a check that may be flaky. Look at the checks' logs; `/farm run` asks the "
                       "farm to try again.");
        rc = verdict(r, head, "same_failure", prev_round, buf_cstr(&say));
        goto out;
    }
    if (m->rounds >= r->cfg->ci.max_fix_rounds || r->s->runs >= r->cfg->budgets.max_runs) {
        int by_runs = m->rounds < r->cfg->ci.max_fix_rounds;
        buf_puts(&say, "CI still fails (");
        names_put(&say, failed, nf);
        if (by_runs)
            buf_printf(&say,
                       ") and the session has used its %d runs (budgets.max_runs), so the "
                       "farm stops fixing CI here. `/farm run` asks it to try again.",
                       r->cfg->budgets.max_runs);
        else
            buf_printf(&say,
                       ") after %d fix round%s, the most this farm makes (ci.max_fix_rounds), "
                       "so it stops here. `/farm run` asks it to try again.",
                       m->rounds, m->rounds == 1 ? "" : "s");
        rc = verdict(r, head, by_runs ? "budget" : "max_rounds", m->rounds, buf_cstr(&say));
        goto out;
    }

    json_t *names = json_array();
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(names, json_string(failed[i]->name));
    r->ci_round = m->rounds + 1;
    if (!(r->ci_failures = strdup(buf_cstr(&text)))) {
        json_decref(names);
        rc = FARM_ENOMEM;
        goto out;
    }
    rc = pl_event(r, "ci_fix",
                  json_pack("{s:s,s:i,s:s,s:o,s:s,s:I}", "sha", head, "round", r->ci_round,
                            "signature", hex, "checks", names, "failures", r->ci_failures, "job",
                            (json_int_t)r->job->id));
    if (rc == 0) {
        log_info("ci fix round", "repo", r->repo->name, "sha", head);
        rc = 1;
    }
out:
    buf_free(&text);
    buf_free(&sig);
    buf_free(&say);
    return rc;
}

/* Every check of head has settled: decide. */
static int on_settled(pl_run *r, const ci_memory *m, const char *head, tracker *t,
                      const tracker_ref *ref, tracker_check *v, size_t n)
{
    tracker_check **failed = calloc(n ? n : 1, sizeof(*failed));
    size_t nf = 0;
    int rc;

    if (!failed)
        return FARM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (v[i].state == TRACKER_CHECK_FAILED)
            failed[nf++] = &v[i];
    if (nf) {
        rc = on_failures(r, m, head, t, ref, failed, nf);
    } else if (m->last_fix && !m->passed_since) {
        char say[160];
        int round = (int)json_integer_value(json_object_get(m->last_fix, "round"));
        snprintf(say, sizeof say, "CI passes after fix round %d.", round);
        rc = verdict(r, head, "passed", round, say);
    } else {
        rc = 0; /* green with no fix round to report */
    }
    free(failed);
    return rc;
}

/* The checks could not be read. A tracker that is busy or down gets a few
 * more tries (the scheduler's backoff); anything else (no permission, a
 * tracker without CI) is said on the PR once for the commit, and the job
 * ends: a PR that is fine must not fail its session because its CI cannot
 * be read. */
static int unreadable(pl_run *r, const ci_memory *m, const char *head, int rc)
{
    char say[1024];
    if (rc == FARM_EAGAIN && r->job->attempts < CI_ATTEMPTS)
        return rc;
    log_warn("ci: the checks could not be read", "repo", r->repo->name, "sha", head, "error",
             farm_error_last());
    snprintf(say, sizeof say,
             "The farm could not read the CI checks of `%.12s` (%.600s), so it does not fix CI "
             "for this commit. Check that the farm's token may read checks, statuses and "
             "Actions logs (GitHub) or builds (Azure DevOps).",
             head, farm_error_last());
    return verdict(r, head, "unreadable", m->rounds, say);
}

int pl_ci_settle(pl_run *r)
{
    char head[VCS_OID_HEXSZ];
    ci_memory m = {0};
    tracker *t = NULL;
    tracker_check *v = NULL;
    size_t n = 0, pending = 0;
    int rc;

    if (!r->repo->ci.fix || r->s->pr_number <= 0)
        return 0; /* turned off since the job was queued, or no PR */
    if ((rc = pl_last_pushed(head, r)) || !head[0])
        return rc;
    if ((rc = memory_load(&m, r, head)))
        goto out;
    if (m.mine) { /* this job decided on a round before a crash: take it up */
        r->ci_round = (int)json_integer_value(json_object_get(m.mine, "round"));
        const char *f = json_string_value(json_object_get(m.mine, "failures"));
        rc = (r->ci_failures = strdup(f ? f : "")) ? 1 : FARM_ENOMEM;
        goto out;
    }
    if (m.decided) {
        rc = 0;
        goto out;
    }
    tracker_ref ref = TRACKER_REF_INIT;
    ref.repo = r->s->repo;
    ref.number = r->s->pr_number;
    ref.is_pr = 1;
    if ((rc = farm_tracker_get(&t, r->f, r->s->tracker)) ||
        (rc = tracker_checks_list(&v, &n, t, &ref, r->branch, head))) {
        rc = unreadable(r, &m, head, rc);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        pending += v[i].state == TRACKER_CHECK_PENDING;
    if (pending || !n) {
        log_info(pending ? "ci checks still running" : "ci: no checks on the commit", "repo",
                 r->repo->name, "sha", head);
        rc = 0;
        goto out;
    }
    rc = on_settled(r, &m, head, t, &ref, v, n);
out:
    if (rc < 0)
        log_warn("ci: the checks could not be looked at", "repo", r->repo->name, "error",
                 farm_error_last());
    tracker_checks_free(v, n);
    memory_free(&m);
    return rc;
}
