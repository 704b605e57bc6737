/*
 * github_ci.c - the checks on a commit and a failing job's log, on GitHub.
 *
 * A commit's CI on GitHub is two things: check runs (GitHub Actions and
 * other apps: GET /repos/{o}/{r}/commits/{sha}/check-runs, the latest run
 * of each name) and commit statuses (older integrations: the combined
 * status, GET /repos/{o}/{r}/commits/{sha}/status, the latest of each
 * context). Both become tracker_checks. A check run made by GitHub Actions
 * is a job, and its id is the job's: its log is
 * GET /repos/{o}/{r}/actions/jobs/{id}/logs, which answers 302 with a
 * short-lived URL of the plain-text log. base/http.c follows it; libcurl
 * does not carry the Authorization header to another host.
 */
#include "github_api.h"

#include "base/buf.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

#define CHECKS_PER_PAGE 100
#define LOG_MAX         (16u << 20) /* a job log read whole to take its tail */

static tracker_check_state run_state(const char *status, const char *conclusion)
{
    static const char *const passed[] = {"success", "neutral", "skipped"};
    static const char *const failed[] = {"failure", "timed_out", "action_required",
                                         "startup_failure"};
    if (!status || strcmp(status, "completed") != 0)
        return TRACKER_CHECK_PENDING;
    for (size_t i = 0; conclusion && i < sizeof(passed) / sizeof(passed[0]); i++)
        if (!strcmp(conclusion, passed[i]))
            return TRACKER_CHECK_PASSED;
    for (size_t i = 0; conclusion && i < sizeof(failed) / sizeof(failed[0]); i++)
        if (!strcmp(conclusion, failed[i]))
            return TRACKER_CHECK_FAILED;
    return TRACKER_CHECK_SKIPPED; /* cancelled, stale */
}

static tracker_check_state status_state(const char *state)
{
    if (!state || !strcmp(state, "pending"))
        return TRACKER_CHECK_PENDING;
    if (!strcmp(state, "success"))
        return TRACKER_CHECK_PASSED;
    return TRACKER_CHECK_FAILED; /* failure, error */
}

/* Append one check; its strings are copied. */
static int check_add(tracker_check **v, size_t *n, const char *name, tracker_check_state st,
                     const char *conclusion, const char *url, const char *summary, int64_t log_id)
{
    tracker_check *nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (!nv)
        return FARM_ENOMEM;
    *v = nv;
    tracker_check *c = &nv[*n];
    memset(c, 0, sizeof(*c));
    c->name = strdup(name ? name : "(unnamed check)");
    c->state = st;
    c->conclusion = conclusion ? strdup(conclusion) : NULL;
    c->url = url ? strdup(url) : NULL;
    c->summary = summary ? strdup(summary) : NULL;
    c->log_id = log_id;
    (*n)++;
    if (!c->name || (conclusion && !c->conclusion) || (url && !c->url) || (summary && !c->summary))
        return FARM_ENOMEM;
    return 0;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int check_runs(tracker_check **v, size_t *n, github_api *a, const tracker_ref *ref,
                      const char *sha)
{
    char path[GH_PATH_MAX];
    json_t *j = NULL;
    int rc = gh_path_fmt(path, sizeof path, "/repos/%s/commits/%s/check-runs?per_page=%d",
                         ref->repo, sha, CHECKS_PER_PAGE);
    if (rc < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref, .repeatable = 1};
    if ((rc = github_api_call(&j, a, &c)) < 0)
        return rc;
    json_t *runs = json_object_get(j, "check_runs");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        const char *slug = json_string_value(json_object_get(json_object_get(r, "app"), "slug"));
        const char *url = jstr(r, "html_url") ? jstr(r, "html_url") : jstr(r, "details_url");
        int64_t id = json_integer_value(json_object_get(r, "id"));
        int actions = slug && !strcmp(slug, "github-actions");
        rc = check_add(v, n, jstr(r, "name"), run_state(jstr(r, "status"), jstr(r, "conclusion")),
                       jstr(r, "conclusion"), url, jstr(json_object_get(r, "output"), "title"),
                       actions && id > 0 ? id : 0);
        if (rc)
            break;
    }
    json_decref(j);
    return rc;
}

static int statuses(tracker_check **v, size_t *n, github_api *a, const tracker_ref *ref,
                    const char *sha)
{
    char path[GH_PATH_MAX];
    json_t *j = NULL;
    int rc = gh_path_fmt(path, sizeof path, "/repos/%s/commits/%s/status?per_page=%d", ref->repo,
                         sha, CHECKS_PER_PAGE);
    if (rc < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref, .repeatable = 1};
    if ((rc = github_api_call(&j, a, &c)) < 0)
        return rc;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "statuses"), i, s)
    {
        const char *state = jstr(s, "state");
        if ((rc = check_add(v, n, jstr(s, "context"), status_state(state), state,
                            jstr(s, "target_url"), jstr(s, "description"), 0)))
            break;
    }
    json_decref(j);
    return rc;
}

int gh_checks_list(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                   const char *branch, const char *sha)
{
    github_api *a = gh_tracker_api(t);
    tracker_check *v = NULL;
    size_t nv = 0;
    int rc;
    (void)branch; /* GitHub lists a commit's checks by its sha */

    if ((rc = gh_repo_check(ref->repo)) < 0 || (rc = check_runs(&v, &nv, a, ref, sha)) < 0 ||
        (rc = statuses(&v, &nv, a, ref, sha)) < 0) {
        if (rc == FARM_ENOMEM)
            farm_error_set("github: out of memory reading the checks of %s", sha);
        tracker_checks_free(v, nv);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}

int gh_check_log_tail(char **out, tracker *t, const tracker_ref *ref, const tracker_check *chk,
                      size_t max_bytes)
{
    github_api *a = gh_tracker_api(t);
    char path[GH_PATH_MAX];
    buf log = BUF_INIT(LOG_MAX);
    json_t *unused = NULL;
    int rc;

    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/actions/jobs/%lld/logs", ref->repo,
                          (long long)chk->log_id)) < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref, .repeatable = 1};
    c.raw = &log;
    c.raw_max = LOG_MAX;
    rc = github_api_call(&unused, a, &c);
    json_decref(unused);
    if (rc == FARM_ETOOBIG)
        farm_error_set("github: the log of job %lld is over %u MiB; read it on GitHub",
                       (long long)chk->log_id, LOG_MAX >> 20);
    if (rc == 0 && !(*out = tracker_text_tail(log.data ? log.data : "", log.len, max_bytes)))
        rc = FARM_ENOMEM;
    buf_free(&log);
    return rc;
}
