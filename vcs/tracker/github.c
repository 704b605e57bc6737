/*
 * github.c - the GitHub tracker: tracker.h's operations over the REST API.
 *
 * The transport (credentials, pacing, rate limits, ETags) is github_api*.c;
 * the ops are github_issue.c (an issue's conversation: comments, reactions,
 * labels, reading the thread) and github_pr.c (pull requests and their
 * review comments). This file makes the tracker and holds what the ops
 * share: checking names, building paths, and writing without duplicates.
 *
 * Writes that create something (a comment, a reply, a pull request) are not
 * repeated blindly: after a 5xx the request may have been carried out, so
 * before trying again the thread is searched for the body's hidden marker
 * (or the branch's PR) and what is found is used instead. After a timeout or
 * a dropped connection GitHub may still be working on it, so the error goes
 * back to the caller, who looks for the marker before trying again. A crash
 * between two parts of a long comment leaves the first part findable by its
 * key; tracker_comment_update() with that id completes the rest.
 *
 * Long bodies: comments and replies are split (tracker_body_split) under
 * GitHub's 65,536-character limit; a PR description is truncated with a note.
 */
#include "github_api.h"
#include "tracker.h"

#include "base/error.h"
#include "base/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct github {
    tracker base;
    github_api *api;
} github;

github_api *gh_tracker_api(tracker *t)
{
    return ((github *)t)->api;
}

/* ---- helpers ------------------------------------------------------------ */

int gh_repo_check(const char *repo)
{
    const char *slash = strchr(repo, '/');
    size_t n = strlen(repo);
    int ok = slash && slash != repo && slash[1] && !strchr(slash + 1, '/') && n <= 200;
    for (const char *p = repo; ok && *p; p++)
        ok = p == slash || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
             (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
    if (ok && (strncmp(repo, "../", 3) == 0 || strncmp(repo, "./", 2) == 0 ||
               strcmp(slash + 1, "..") == 0 || strcmp(slash + 1, ".") == 0))
        ok = 0;
    if (!ok) {
        farm_error_set("github: \"%.200s\" is not an owner/name repository", repo);
        return FARM_EINVALID;
    }
    return 0;
}

int gh_path_fmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= n) {
        farm_error_set("github: request path too long");
        return FARM_ETOOBIG;
    }
    return 0;
}

char *gh_jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? strdup(s) : NULL;
}

char *gh_jlogin(json_t *o)
{
    return gh_jstr(json_object_get(o, "user"), "login");
}

void gh_error_save(gh_saved_error *s)
{
    snprintf(s->msg, sizeof s->msg, "%s", farm_error_last());
    s->retry_after = tracker_retry_after_ms();
}

void gh_error_restore(const gh_saved_error *s)
{
    farm_error_set("%s", s->msg);
    tracker_retry_after_set(s->retry_after);
}

int gh_maybe_done(int rc, const github_call *c)
{
    return rc == FARM_EAGAIN && c->status >= 500;
}

int gh_no_answer(int rc, const github_call *c)
{
    return (rc == FARM_ETIMEOUT || rc == FARM_EIO) && c->status == 0;
}

int gh_worth_retry(int rc, github_api *a)
{
    return (rc == FARM_EAGAIN || rc == FARM_ETIMEOUT || rc == FARM_EIO) &&
           tracker_retry_after_ms() <= github_api_max_wait_ms(a);
}

int gh_body_json(json_t **out, const char *text)
{
    *out = json_pack("{s:s}", "body", text);
    if (!*out) {
        farm_error_set("github: body is not valid UTF-8");
        return FARM_EINVALID;
    }
    return 0;
}

/* ---- finding by marker ---------------------------------------------------- */

int64_t gh_marker_in_list(json_t *list, const char *key, int part, const char *login)
{
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        const char *who = json_string_value(json_object_get(json_object_get(c, "user"), "login"));
        if (login && (!who || strcmp(who, login) != 0))
            continue;
        if (tracker_body_has_marker(body, key, part))
            return json_integer_value(json_object_get(c, "id"));
    }
    return 0;
}

int gh_issue_comments(json_t **out, github_api *a, const tracker_ref *ref)
{
    char path[GH_PATH_MAX];
    int rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/%lld/comments", ref->repo,
                         (long long)ref->number);
    if (rc < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    return github_api_list(out, NULL, a, &c, GH_LIST_MAX);
}

int gh_review_comments(json_t **out, github_api *a, const tracker_ref *ref, int64_t pr)
{
    char path[GH_PATH_MAX];
    int rc =
        gh_path_fmt(path, sizeof path, "/repos/%s/pulls/%lld/comments", ref->repo, (long long)pr);
    if (rc < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    return github_api_list(out, NULL, a, &c, GH_LIST_MAX);
}

int gh_find_marker(int64_t *out, github_api *a, const tracker_ref *ref,
                   const gh_marker_place *where, const char *key, int part)
{
    json_t *list = NULL;
    *out = 0;
    int rc = where->review ? gh_review_comments(&list, a, ref, where->pr)
                           : gh_issue_comments(&list, a, ref);
    if (rc < 0)
        return rc;
    *out = gh_marker_in_list(list, key, part, github_api_login(a, ref));
    json_decref(list);
    return *out ? 0 : FARM_ENOTFOUND;
}

int gh_post_marked(int64_t *out_id, github_api *a, const tracker_ref *ref, const char *path,
                   const char *text, const gh_marker_place *where, const char *key, int part)
{
    json_t *req = NULL, *res = NULL;
    int rc = gh_body_json(&req, text);
    *out_id = 0;
    if (rc < 0)
        return rc;
    for (int attempt = 1;; attempt++) {
        github_call c = {.method = "POST", .path = path, .body = req, .ref = ref};
        rc = github_api_call(&res, a, &c);
        if (rc == 0)
            break;
        if (!gh_worth_retry(rc, a) || attempt > github_api_max_retries(a) || gh_no_answer(rc, &c))
            goto out;
        if (gh_maybe_done(rc, &c)) {
            gh_saved_error se;
            int64_t found = 0;
            gh_error_save(&se);
            if (gh_find_marker(&found, a, ref, where, key, part) == 0) {
                log_info("github create had landed despite the error", "key", key);
                *out_id = found;
                rc = 0;
                goto out;
            }
            gh_error_restore(&se);
        }
        github_api_backoff(a, attempt);
    }
    *out_id = json_integer_value(json_object_get(res, "id"));
    if (*out_id <= 0) {
        farm_error_set("github: POST %s: answer without an id", path);
        rc = FARM_EIO;
    }
out:
    json_decref(req);
    json_decref(res);
    return rc;
}

/* ---- permissions --------------------------------------------------------- */

static int gh_permission_get(tracker_permission *out, tracker *t, const tracker_ref *ref,
                             const char *user)
{
    char path[GH_PATH_MAX], name[GH_SEGMENT_MAX];
    json_t *res = NULL;
    int rc;
    *out = TRACKER_PERM_NONE;
    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = github_api_escape(name, sizeof name, user)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/collaborators/%s/permission", ref->repo,
                          name)) < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    if ((rc = github_api_call(&res, gh_tracker_api(t), &c)) < 0)
        return rc;
    /* role_name knows maintain and triage; permission is the older scale */
    const char *role = json_string_value(json_object_get(res, "role_name"));
    const char *perm = json_string_value(json_object_get(res, "permission"));
    const char *p = role && *role ? role : perm;
    if (!p) {
        farm_error_set("github: permission answer without a permission");
        rc = FARM_EIO;
    } else if (!strcmp(p, "admin")) {
        *out = TRACKER_PERM_ADMIN;
    } else if (!strcmp(p, "maintain") || !strcmp(p, "write")) {
        *out = TRACKER_PERM_WRITE;
    } else if (!strcmp(p, "triage") || !strcmp(p, "read")) {
        *out = TRACKER_PERM_READ;
    } else if (perm && !strcmp(perm, "admin")) {
        *out = TRACKER_PERM_ADMIN; /* a custom role: fall back on the base permission */
    } else if (perm && !strcmp(perm, "write")) {
        *out = TRACKER_PERM_WRITE;
    } else if (perm && !strcmp(perm, "read")) {
        *out = TRACKER_PERM_READ;
    }
    json_decref(res);
    return rc;
}

/* ---- the tracker --------------------------------------------------------- */

static void gh_free(tracker *t)
{
    github *g = (github *)t;
    github_api_free(g->api);
    free(g);
}

static const tracker_ops github_ops = {
    .name = "github",
    .comment_create = gh_comment_create,
    .comment_update = gh_comment_update,
    .comment_find_by_marker = gh_comment_find_by_marker,
    .react = gh_react,
    .labels_add = gh_labels_add,
    .labels_remove = gh_labels_remove,
    .thread_get = gh_thread_get,
    .pr_create = gh_pr_create,
    .pr_find_by_branch = gh_pr_find_by_branch,
    .pr_update = gh_pr_update,
    .pr_review_comments = gh_pr_review_comments,
    .review_comment_reply = gh_review_comment_reply,
    .permission_get = gh_permission_get,
    .free = gh_free,
    .checks_list = gh_checks_list,
    .check_log_tail = gh_check_log_tail,
};

int tracker_github_new(tracker **out, const tracker_github_opts *opts)
{
    github *g = NULL;
    int rc;
    *out = NULL;
    g = calloc(1, sizeof *g);
    if (!g)
        return FARM_ENOMEM;
    if ((rc = github_api_new(&g->api, opts)) < 0) {
        free(g);
        return rc;
    }
    g->base.ops = &github_ops;
    *out = &g->base;
    return 0;
}
