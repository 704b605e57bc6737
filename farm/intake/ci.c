/*
 * ci.c - completed CI checks into the CI fix loop's queue (see ci.h).
 *
 * Which session: a check that names its pull request (GitHub's
 * `pull_requests`, an Azure DevOps PR build) is matched by PR number;
 * otherwise the branch is: a farm branch names its issue
 * ("farm/<issue>-<slug>"), and the session of that issue must be on that
 * very branch. Anything else is somebody else's pull request.
 */
#include "ci.h"
#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store_review.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BRANCH_PREFIX "farm/"

int64_t ci_branch_issue(const char *branch)
{
    if (!branch || strncmp(branch, BRANCH_PREFIX, strlen(BRANCH_PREFIX)) != 0)
        return 0;
    const char *p = branch + strlen(BRANCH_PREFIX);
    char *end = NULL;
    if (*p < '1' || *p > '9')
        return 0;
    long long n = strtoll(p, &end, 10);
    if (n <= 0 || !end || (*end != '-' && *end != '\0'))
        return 0;
    return (int64_t)n;
}

/* The active session whose pull request the check is on; FARM_ENOTFOUND
 * when there is none. */
static int session_of(store_session **out, store_tx *tx, const review_ctx *c)
{
    const tracker_event *ev = c->ev;
    int rc = FARM_ENOTFOUND;

    *out = NULL;
    if (ev->is_pr && ev->number > 0)
        rc = store_tx_session_find(out, tx, ev->tracker, c->repo->name, ev->number, 1, 1);
    if (rc != FARM_ENOTFOUND)
        return rc;
    int64_t issue = ci_branch_issue(ev->head_branch);
    if (!issue)
        return FARM_ENOTFOUND;
    if ((rc = store_tx_session_find(out, tx, ev->tracker, c->repo->name, issue, 0, 1)))
        return rc;
    if (!(*out)->branch || strcmp((*out)->branch, ev->head_branch) != 0) {
        store_session_free(*out);
        *out = NULL;
        return FARM_ENOTFOUND;
    }
    return 0;
}

/* s cut to fit out (a check's name, its conclusion: untrusted and unbounded
 * in a delivery), never inside a UTF-8 sequence; NULL stays NULL. */
static const char *cut(char *out, size_t n, const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s);
    if (len >= n) {
        len = n - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static int log_check(store_tx *tx, const tracker_event *ev, int64_t sid, int64_t job)
{
    char name[256], conclusion[64], url[1024];
    json_t *b = json_pack("{s:s,s:s?,s:s?,s:s?,s:s?,s:I}", "sha", ev->head_sha, "check",
                          cut(name, sizeof name, ev->check_name), "conclusion",
                          cut(conclusion, sizeof conclusion, ev->check_conclusion), "url",
                          cut(url, sizeof url, ev->url), "delivery", ev->delivery_id, "job",
                          (json_int_t)job);
    if (!b) {
        farm_error_set("ci: out of memory");
        return FARM_ENOMEM;
    }
    int rc = store_tx_event_append_json(NULL, tx, sid, "ci_check", ev->actor, b);
    json_decref(b);
    return rc;
}

int ci_tx_check(review_result *out, int64_t *session_id, store_tx *tx, const review_ctx *c)
{
    const tracker_event *ev = c->ev;
    store_session *s = NULL;
    int64_t job = 0, due = clock_wall_ms() + (int64_t)c->cfg->ci.settle_s * 1000;
    int rc;

    memset(out, 0, sizeof(*out));
    *session_id = 0;
    if (!ev->head_sha || strlen(ev->head_sha) < 7 || strlen(ev->head_sha) > 64 ||
        strspn(ev->head_sha, "0123456789abcdefABCDEF") != strlen(ev->head_sha)) {
        snprintf(out->reason, sizeof out->reason, "a check without a commit sha");
        return 0;
    }
    if (!c->repo->ci.fix) {
        snprintf(out->reason, sizeof out->reason, "CI fixing is off for %s (repos[].ci.fix)",
                 c->repo->name);
        return 0;
    }
    if ((rc = session_of(&s, tx, c)) == FARM_ENOTFOUND) {
        snprintf(out->reason, sizeof out->reason, "a check on %s, not on a farm pull request",
                 ev->head_branch ? ev->head_branch : "a commit");
        return 0;
    }
    if (rc)
        return rc;
    *session_id = s->id;
    if (s->pr_number <= 0) {
        snprintf(out->reason, sizeof out->reason, "session %lld has no pull request yet",
                 (long long)s->id);
        goto out;
    }
    /* the session's queued "ci" job waits for this check too, or a new one */
    if ((rc = store_tx_review_ci_job_defer(&job, tx, s->id, due)))
        goto out;
    int fresh = job == 0;
    if (fresh && (rc = store_tx_job_insert(&job, tx, "ci", s->id, due)))
        goto out;
    if ((rc = log_check(tx, ev, s->id, job)))
        goto out;
    out->acted = 1;
    out->job_id = fresh ? job : 0;
    char name[48], conclusion[24];
    snprintf(out->reason, sizeof out->reason, "check %s %s: CI job %lld %s in %d s",
             ev->check_name ? cut(name, sizeof name, ev->check_name) : "?",
             ev->check_conclusion ? cut(conclusion, sizeof conclusion, ev->check_conclusion)
                                  : "completed",
             (long long)job, fresh ? "queued, due" : "put off, due", c->cfg->ci.settle_s);
out:
    store_session_free(s);
    return rc;
}
