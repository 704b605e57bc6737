/*
 * azure_ci.c - the builds of a commit and a failed build's log, on Azure
 * DevOps.
 *
 * A commit's CI on Azure DevOps is the builds (Azure Pipelines runs) queued
 * for its branch: GET {org}/{project}/_apis/build/builds?branchName=
 * refs/heads/{branch}, and for a pull request's validation builds
 * refs/pull/{id}/merge (whose trigger info names the PR's source commit).
 * The newest build of each definition for the commit counts. A failed
 * build's log is read through its timeline (GET .../builds/{id}/timeline:
 * the failed tasks and their log ids), the list of its logs (their line
 * counts) and the last lines of each failed task's log
 * (GET .../builds/{id}/logs/{log}?startLine=N, which answers
 * {"count", "value": [lines]} to a JSON client).
 */
#include "azure_internal.h"

#include "base/buf.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BUILDS_TOP 50  /* newest builds of a branch looked at */
#define TASKS_MAX  4   /* failed tasks whose logs are read */
#define TAIL_LINES 400 /* lines asked for from the end of a task's log */

static tracker_check_state build_state(const char *status, const char *result)
{
    if (!status || strcasecmp(status, "completed") != 0)
        return TRACKER_CHECK_PENDING;
    if (result && (!strcasecmp(result, "succeeded") || !strcasecmp(result, "partiallySucceeded")))
        return TRACKER_CHECK_PASSED;
    if (result && !strcasecmp(result, "failed"))
        return TRACKER_CHECK_FAILED;
    return TRACKER_CHECK_SKIPPED; /* canceled, none */
}

static int builds_get(json_t **out, az *a, const az_loc *l, const char *branch_ref)
{
    buf url = BUF_INIT(AZ_URL_MAX);
    int rc = buf_printf(&url, "%s/%s/_apis/build/builds?branchName=", a->org_url, l->project);
    if (rc == 0)
        rc = az_escape(&url, branch_ref);
    if (rc == 0)
        rc = buf_printf(&url, "&queryOrder=queueTimeDescending&$top=%d&api-version=%s", BUILDS_TOP,
                        AZ_API);
    if (rc == 0)
        rc = az_request(out, NULL, a, "GET", buf_cstr(&url), NULL, NULL, 0);
    buf_free(&url);
    return rc;
}

/* The build is for commit sha: its source version, or for a pull request's
 * merge build the source commit its trigger names. */
static int build_for(json_t *b, const char *sha)
{
    const char *v = az_str(b, "sourceVersion");
    const char *src = az_str(json_object_get(b, "triggerInfo"), "pr.sourceSha");
    return (v && !strcasecmp(v, sha)) || (src && !strcasecmp(src, sha));
}

static int seen_definition(json_t *seen, json_t *b)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)az_int(json_object_get(b, "definition"), "id"));
    if (json_object_get(seen, key))
        return 1;
    json_object_set_new(seen, key, json_true());
    return 0;
}

static int builds_add(tracker_check **v, size_t *n, json_t *seen, json_t *list, const char *sha)
{
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(list, "value"), i, b)
    {
        if (!build_for(b, sha) || seen_definition(seen, b))
            continue;
        tracker_check *nv = realloc(*v, (*n + 1) * sizeof(**v));
        if (!nv)
            return FARM_ENOMEM;
        *v = nv;
        tracker_check *c = &nv[(*n)++];
        int oom = 0;
        memset(c, 0, sizeof(*c));
        c->name = az_dup(json_object_get(b, "definition"), "name", &oom);
        c->conclusion = az_dup(b, "result", &oom);
        c->url = az_dup(json_object_get(json_object_get(b, "_links"), "web"), "href", &oom);
        c->summary = az_dup(b, "buildNumber", &oom);
        c->state = build_state(az_str(b, "status"), az_str(b, "result"));
        c->log_id = az_int(b, "id");
        if (!c->name && !oom)
            oom = !(c->name = strdup("(unnamed pipeline)"));
        if (oom)
            return FARM_ENOMEM;
    }
    return 0;
}

int az_checks_list(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                   const char *branch, const char *sha)
{
    az *a = (az *)t;
    az_loc l;
    json_t *seen = json_object(), *list = NULL;
    tracker_check *v = NULL;
    size_t nv = 0;
    char branch_ref[600];
    int rc;

    if (!seen)
        return FARM_ENOMEM;
    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0)
        goto out;
    if (branch && *branch) {
        snprintf(branch_ref, sizeof branch_ref, "refs/heads/%s", branch);
        if ((rc = builds_get(&list, a, &l, branch_ref)) < 0 ||
            (rc = builds_add(&v, &nv, seen, list, sha)) < 0)
            goto out;
        json_decref(list);
        list = NULL;
    }
    if (ref->is_pr && ref->number > 0) {
        snprintf(branch_ref, sizeof branch_ref, "refs/pull/%lld/merge", (long long)ref->number);
        if ((rc = builds_get(&list, a, &l, branch_ref)) < 0 ||
            (rc = builds_add(&v, &nv, seen, list, sha)) < 0)
            goto out;
    }
out:
    if (rc == FARM_ENOMEM)
        farm_error_set("azure: out of memory reading the builds of %s", sha);
    json_decref(list);
    json_decref(seen);
    if (rc < 0) {
        tracker_checks_free(v, nv);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}

static int build_get(json_t **out, az *a, const az_loc *l, int64_t build, const char *what)
{
    char url[AZ_URL_MAX];
    snprintf(url, sizeof url, "%s/%s/_apis/build/builds/%lld%s%sapi-version=%s", a->org_url,
             l->project, (long long)build, what, strchr(what, '?') ? "&" : "?", AZ_API);
    return az_request(out, NULL, a, "GET", url, NULL, NULL, 0);
}

/* The line count of log id in a build's list of logs, 0 when unknown. */
static int64_t log_lines(json_t *logs, int64_t id)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(logs, "value"), i, g)
    {
        if (az_int(g, "id") == id)
            return az_int(g, "lineCount");
    }
    return 0;
}

/* The last lines of one task's log, under a heading, into b: at most
 * budget bytes of the log, so each failed task gets its share. */
static int task_tail(buf *b, az *a, const az_loc *l, int64_t build, json_t *logs, json_t *rec,
                     size_t budget)
{
    int64_t log_id = az_int(json_object_get(rec, "log"), "id");
    int64_t lines = log_lines(logs, log_id);
    int64_t start = lines > TAIL_LINES ? lines - TAIL_LINES : 0;
    buf text = BUF_INIT(8u << 20);
    char what[96], *tail = NULL;
    json_t *j = NULL;
    size_t i;
    json_t *line;

    snprintf(what, sizeof what, "/logs/%lld?startLine=%lld", (long long)log_id, (long long)start);
    int rc = build_get(&j, a, l, build, what);
    if (rc < 0)
        return rc;
    json_array_foreach(json_object_get(j, "value"), i, line)
    {
        if (rc == 0 && json_is_string(line))
            rc = buf_printf(&text, "%s\n", json_string_value(line));
    }
    json_decref(j);
    if (rc == FARM_ETOOBIG)
        rc = 0; /* lines past the cap: the tail below is what counts */
    if (rc == 0 && !(tail = tracker_text_tail(text.data ? text.data : "", text.len, budget)))
        rc = FARM_ENOMEM;
    if (rc == 0)
        rc = buf_printf(b, "--- task: %s ---\n%s", az_str(rec, "name") ? az_str(rec, "name") : "?",
                        tail);
    free(tail);
    buf_free(&text);
    return rc;
}

int az_check_log_tail(char **out, tracker *t, const tracker_ref *ref, const tracker_check *c,
                      size_t max_bytes)
{
    az *a = (az *)t;
    az_loc l;
    json_t *timeline = NULL, *logs = NULL, *failed[TASKS_MAX];
    buf b = BUF_INIT(8u << 20);
    size_t i, nf = 0;
    json_t *rec;
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0 ||
        (rc = build_get(&timeline, a, &l, c->log_id, "/timeline")) < 0 ||
        (rc = build_get(&logs, a, &l, c->log_id, "/logs")) < 0)
        goto out;
    json_array_foreach(json_object_get(timeline, "records"), i, rec)
    {
        const char *result = az_str(rec, "result");
        const char *type = az_str(rec, "type");
        if (nf < TASKS_MAX && result && !strcasecmp(result, "failed") &&
            az_int(json_object_get(rec, "log"), "id") && (!type || !strcasecmp(type, "Task")))
            failed[nf++] = rec;
    }
    if (!nf) {
        farm_error_set("azure: build %lld has no failed task with a log", (long long)c->log_id);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    for (i = 0; i < nf; i++) {
        size_t budget = max_bytes / nf > 128 ? max_bytes / nf - 128 : 64;
        if ((rc = task_tail(&b, a, &l, c->log_id, logs, failed[i], budget)) < 0)
            goto out;
    }
    if (!(*out = tracker_text_tail(b.data ? b.data : "", b.len, max_bytes)))
        rc = FARM_ENOMEM;
out:
    json_decref(timeline);
    json_decref(logs);
    buf_free(&b);
    return rc;
}
