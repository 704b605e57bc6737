/*
 * hook_ci.c - CI deliveries to tracker events (see hook_ci.h).
 *
 * Only completions matter to the farm: it waits for a commit's checks to
 * settle before it looks at them all through the tracker's API, so an
 * event only has to say which commit (and which pull request or branch) to
 * look at again. The payload's word for the outcome is kept for the
 * session log; the farm decides on what the API says when the checks have
 * settled, not on any one delivery.
 */
#include "hook_ci.h"
#include "hook_json.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hook_github_ci_event(const char *event_name)
{
    static const char *const names[] = {"check_run", "check_suite", "workflow_run", "status"};
    for (size_t i = 0; event_name && i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(event_name, names[i]))
            return 1;
    return 0;
}

/* The first pull request of a check's `pull_requests` list (GitHub lists
 * the open PRs of the same repository whose head is the commit). */
static void first_pr(tracker_event *ev, json_t *prs)
{
    json_t *pr = json_is_array(prs) ? json_array_get(prs, 0) : NULL;
    int64_t n = hook_json_int(hook_json_path(pr, "number", NULL));
    if (n > 0) {
        ev->number = n;
        ev->is_pr = 1;
    }
}

/* A check run, suite or workflow run: the object under `key`. */
static int github_run(tracker_event *ev, json_t *root, const char *key)
{
    json_t *o = hook_json_path(root, key, NULL);
    int rc;

    if (!json_is_object(o)) {
        farm_error_set("%s delivery without a %s object", ev->event, key);
        return FARM_EINVALID;
    }
    if (!ev->action || strcmp(ev->action, "completed") != 0)
        return 0; /* requested, created, in progress: wait for the completion */
    json_t *suite = !strcmp(key, "check_run") ? hook_json_path(o, "check_suite", NULL) : o;
    const char *name = hook_json_str(hook_json_path(o, "name", NULL));
    if (!name) /* a check suite is named by its app */
        name = hook_json_str(hook_json_path(o, "app", "name", NULL));
    if ((rc = hook_json_dup(&ev->head_sha, hook_json_path(o, "head_sha", NULL))) ||
        (rc = hook_json_dup(&ev->head_branch, hook_json_path(o, "head_branch", NULL))) ||
        (!ev->head_branch &&
         (rc = hook_json_dup(&ev->head_branch, hook_json_path(suite, "head_branch", NULL)))) ||
        (rc = hook_str_dup(&ev->check_name, name)) ||
        (rc = hook_json_dup(&ev->check_conclusion, hook_json_path(o, "conclusion", NULL))) ||
        (rc = hook_json_dup(&ev->url, hook_json_path(o, "html_url", NULL))))
        return rc;
    first_pr(ev, hook_json_path(o, "pull_requests", NULL));
    if (ev->number <= 0)
        first_pr(ev, hook_json_path(suite, "pull_requests", NULL));
    if (!ev->head_sha) {
        farm_error_set("%s delivery without %s.head_sha", ev->event, key);
        return FARM_EINVALID;
    }
    ev->kind = TEV_CHECK_COMPLETED;
    return 0;
}

/* A commit status: final unless "pending"; the branches holding the commit
 * stand in for the pull request (the first one that looks like the farm's,
 * else the first). */
static int github_status(tracker_event *ev, json_t *root)
{
    const char *state = hook_json_str(hook_json_path(root, "state", NULL));
    json_t *branches = hook_json_path(root, "branches", NULL);
    const char *branch = NULL;
    size_t i;
    json_t *b;
    int rc;

    if (!hook_json_str(hook_json_path(root, "sha", NULL))) {
        farm_error_set("status delivery without a sha");
        return FARM_EINVALID;
    }
    if (!state || !strcmp(state, "pending"))
        return 0;
    if (json_is_array(branches)) {
        json_array_foreach(branches, i, b)
        {
            const char *name = hook_json_str(hook_json_path(b, "name", NULL));
            if (name && (!branch || (!strncmp(name, "farm/", 5) && strncmp(branch, "farm/", 5))))
                branch = name;
        }
    }
    if ((rc = hook_json_dup(&ev->head_sha, hook_json_path(root, "sha", NULL))) ||
        (rc = hook_str_dup(&ev->head_branch, branch)) ||
        (rc = hook_json_dup(&ev->check_name, hook_json_path(root, "context", NULL))) ||
        (rc = hook_str_dup(&ev->check_conclusion, state)) ||
        (rc = hook_json_dup(&ev->url, hook_json_path(root, "target_url", NULL))))
        return rc;
    ev->kind = TEV_CHECK_COMPLETED;
    return 0;
}

int hook_github_ci_parse(tracker_event *ev, json_t *root)
{
    if (!ev->repo) {
        farm_error_set("%s delivery without repository.full_name", ev->event);
        return FARM_EINVALID;
    }
    if (!strcmp(ev->event, "status"))
        return github_status(ev, root);
    return github_run(ev, root, ev->event);
}

/* "refs/heads/x" -> "x"; anything else as it is. */
static const char *branch_of(const char *ref)
{
    return ref && !strncmp(ref, "refs/heads/", 11) ? ref + 11 : ref;
}

int hook_azure_build_parse(tracker_event *ev, hook_azure_where *where, json_t *resource)
{
    json_t *trigger = hook_json_path(resource, "triggerInfo", NULL);
    const char *project = hook_json_str(hook_json_path(resource, "project", "name", NULL));
    const char *repository = hook_json_str(hook_json_path(resource, "repository", "name", NULL));
    const char *status = hook_json_str(hook_json_path(resource, "status", NULL));
    const char *pr_branch = hook_json_str(hook_json_path(trigger, "pr.sourceBranch", NULL));
    const char *pr_sha = hook_json_str(hook_json_path(trigger, "pr.sourceSha", NULL));
    int rc;

    if (!project)
        project = hook_json_str(hook_json_path(resource, "definition", "project", "name", NULL));
    if (!project || !repository)
        return 0; /* a build the farm cannot place (an older payload shape): nothing to do */
    if ((rc = hook_str_dup(&where->project, project)) ||
        (rc = hook_str_dup(&where->repository, repository)))
        return rc;
    free(ev->repo);
    ev->repo = NULL;
    if (asprintf(&ev->repo, "%s/%s", project, repository) < 0) {
        ev->repo = NULL;
        farm_error_set("out of memory naming a repository");
        return FARM_ENOMEM;
    }
    if (status && strcmp(status, "completed") != 0)
        return 0; /* not a completion: nothing to look at yet */
    int64_t pr = hook_json_int(hook_json_path(trigger, "pr.number", NULL));
    if (pr > 0) {
        ev->number = pr;
        ev->is_pr = 1;
    }
    if ((rc = hook_str_dup(
             &ev->head_sha,
             pr_sha ? pr_sha : hook_json_str(hook_json_path(resource, "sourceVersion", NULL)))) ||
        (rc = hook_str_dup(&ev->head_branch,
                           branch_of(pr_branch ? pr_branch
                                               : hook_json_str(hook_json_path(
                                                     resource, "sourceBranch", NULL))))) ||
        (rc = hook_json_dup(&ev->check_name,
                            hook_json_path(resource, "definition", "name", NULL))) ||
        (rc = hook_json_dup(&ev->check_conclusion, hook_json_path(resource, "result", NULL))) ||
        (rc = hook_json_dup(&ev->url, hook_json_path(resource, "_links", "web", "href", NULL))) ||
        (rc = hook_json_dup(&ev->actor,
                            hook_json_path(resource, "requestedFor", "uniqueName", NULL))))
        return rc;
    if (!ev->head_sha) {
        farm_error_set("build.complete delivery without resource.sourceVersion");
        return FARM_EINVALID;
    }
    ev->kind = TEV_CHECK_COMPLETED;
    return 0;
}
