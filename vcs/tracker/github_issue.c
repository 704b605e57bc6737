/*
 * github_issue.c - the GitHub tracker's ops on an issue's conversation
 * (also a pull request's, which GitHub keeps as an issue): comments split
 * into marked parts, finding one by its marker, reactions, labels, and
 * reading the whole thread. The shared helpers are in github.c.
 */
#include "github_api.h"
#include "tracker.h"

#include "base/error.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define THREAD_COMMENTS 3000 /* newest kept by thread_get */

/* ---- comments ------------------------------------------------------------ */

int gh_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                      const char *body)
{
    github_api *a = gh_tracker_api(t);
    char path[GH_PATH_MAX];
    char **parts = NULL;
    size_t n = 0;
    int rc;
    gh_marker_place where = {0, 0};
    *out_id = 0;

    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/%lld/comments", ref->repo,
                          (long long)ref->number)) < 0)
        return rc;
    if ((rc = tracker_body_split(&parts, &n, key, body, GITHUB_BODY_MAX, GH_MAX_PARTS)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if ((rc = gh_post_marked(&id, a, ref, path, parts[i], &where, key, (int)i + 1)) < 0)
            goto out;
        if (i == 0)
            *out_id = id;
    }
out:
    if (rc < 0)
        *out_id = 0;
    tracker_parts_free(parts);
    return rc;
}

static int comment_patch(github_api *a, const tracker_ref *ref, int64_t id, const char *text)
{
    char path[GH_PATH_MAX];
    json_t *req = NULL, *res = NULL;
    int rc;
    if ((rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld", ref->repo,
                          (long long)id)) < 0 ||
        (rc = gh_body_json(&req, text)) < 0)
        return rc;
    github_call c = {.method = "PATCH", .path = path, .body = req, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, a, &c);
    json_decref(req);
    json_decref(res);
    return rc;
}

static int comment_delete(github_api *a, const tracker_ref *ref, int64_t id)
{
    char path[GH_PATH_MAX];
    json_t *res = NULL;
    int rc =
        gh_path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld", ref->repo, (long long)id);
    if (rc < 0)
        return rc;
    github_call c = {.method = "DELETE", .path = path, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, a, &c);
    json_decref(res);
    return rc == FARM_ENOTFOUND ? 0 : rc;
}

int gh_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                      const char *body)
{
    github_api *a = gh_tracker_api(t);
    char path[GH_PATH_MAX], issue_path[GH_PATH_MAX];
    char **parts = NULL;
    size_t n = 0;
    json_t *cur = NULL, *list = NULL;
    int rc;
    gh_marker_place where = {0, 0};

    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld", ref->repo,
                          (long long)id)) < 0 ||
        (rc = gh_path_fmt(issue_path, sizeof issue_path, "/repos/%s/issues/%lld/comments",
                          ref->repo, (long long)ref->number)) < 0)
        return rc;
    if ((rc = tracker_body_split(&parts, &n, key, body, GITHUB_BODY_MAX, GH_MAX_PARTS)) < 0)
        return rc;

    /* the current body (a conditional GET): unchanged text needs no edit, and
     * it says how many parts there were */
    github_call get = {.method = "GET", .path = path, .ref = ref};
    if ((rc = github_api_call(&cur, a, &get)) < 0)
        goto out;
    const char *old = json_string_value(json_object_get(cur, "body"));
    int old_n = tracker_body_part_count(old);
    if (!old || strcmp(old, parts[0]) != 0)
        if ((rc = comment_patch(a, ref, id, parts[0])) < 0)
            goto out;

    if (n == 1 && old_n <= 1)
        goto out;
    if ((rc = gh_issue_comments(&list, a, ref)) < 0)
        goto out;
    const char *login = github_api_login(a, ref);
    size_t last = n > (size_t)old_n ? n : (size_t)old_n;
    if (last > GH_MAX_PARTS)
        last = GH_MAX_PARTS;
    for (size_t i = 2; i <= last; i++) {
        int64_t pid = gh_marker_in_list(list, key, (int)i, login);
        if (i > n) {
            if (pid && (rc = comment_delete(a, ref, pid)) < 0)
                goto out;
            continue;
        }
        const char *text = parts[i - 1];
        if (pid) {
            /* edit only when it differs */
            const char *have = NULL;
            size_t k;
            json_t *c;
            json_array_foreach(list, k, c) if (json_integer_value(json_object_get(c, "id")) == pid)
                have = json_string_value(json_object_get(c, "body"));
            if ((!have || strcmp(have, text) != 0) && (rc = comment_patch(a, ref, pid, text)) < 0)
                goto out;
        } else {
            int64_t nid;
            if ((rc = gh_post_marked(&nid, a, ref, issue_path, text, &where, key, (int)i)) < 0)
                goto out;
        }
    }
out:
    json_decref(cur);
    json_decref(list);
    tracker_parts_free(parts);
    return rc;
}

int gh_comment_find_by_marker(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key)
{
    gh_marker_place where = {0, 0};
    int rc = gh_repo_check(ref->repo);
    *out_id = 0;
    if (rc < 0)
        return rc;
    rc = gh_find_marker(out_id, gh_tracker_api(t), ref, &where, key, 1);
    if (rc == FARM_ENOTFOUND)
        farm_error_set("github: no comment with key %s on %s#%lld", key, ref->repo,
                       (long long)ref->number);
    return rc;
}

/* ---- reactions and labels ------------------------------------------------ */

int gh_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    char path[GH_PATH_MAX];
    json_t *req = NULL, *res = NULL;
    int rc;
    if ((rc = gh_repo_check(ref->repo)) < 0)
        return rc;
    rc = comment_id > 0 ? gh_path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld/reactions",
                                      ref->repo, (long long)comment_id)
                        : gh_path_fmt(path, sizeof path, "/repos/%s/issues/%lld/reactions",
                                      ref->repo, (long long)ref->number);
    if (rc < 0)
        return rc;
    req = json_pack("{s:s}", "content", reaction);
    if (!req)
        return FARM_ENOMEM;
    /* reacting twice is harmless, so the transport may repeat it */
    github_call c = {.method = "POST", .path = path, .body = req, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, gh_tracker_api(t), &c);
    json_decref(req);
    json_decref(res);
    return rc;
}

int gh_labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    char path[GH_PATH_MAX];
    json_t *req = NULL, *arr = NULL, *res = NULL;
    int rc;
    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/%lld/labels", ref->repo,
                          (long long)ref->number)) < 0)
        return rc;
    arr = json_array();
    if (!arr)
        return FARM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(labels[i]);
        if (!s) {
            json_decref(arr);
            farm_error_set("github: label %zu is not valid UTF-8", i);
            return FARM_EINVALID;
        }
        json_array_append_new(arr, s);
    }
    req = json_pack("{s:o}", "labels", arr);
    if (!req)
        return FARM_ENOMEM;
    github_call c = {.method = "POST", .path = path, .body = req, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, gh_tracker_api(t), &c);
    json_decref(req);
    json_decref(res);
    return rc;
}

int gh_labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    char path[GH_PATH_MAX], name[GH_SEGMENT_MAX];
    int rc;
    if ((rc = gh_repo_check(ref->repo)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_t *res = NULL;
        if ((rc = github_api_escape(name, sizeof name, labels[i])) < 0 ||
            (rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/%lld/labels/%s", ref->repo,
                              (long long)ref->number, name)) < 0)
            return rc;
        github_call c = {.method = "DELETE", .path = path, .ref = ref, .repeatable = 1};
        rc = github_api_call(&res, gh_tracker_api(t), &c);
        json_decref(res);
        /* GitHub answers 404 "Label does not exist" for one not there: fine.
         * A 404 for a missing issue or repository is not. */
        if (rc == FARM_ENOTFOUND && strstr(c.message, "Label does not exist"))
            rc = 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- reading a thread ------------------------------------------------------ */

static int comment_fill(tracker_comment *dst, json_t *c)
{
    dst->id = json_integer_value(json_object_get(c, "id"));
    dst->author = gh_jlogin(c);
    dst->body = gh_jstr(c, "body");
    dst->created_at = gh_jstr(c, "created_at");
    const char *upd = json_string_value(json_object_get(c, "updated_at"));
    if (upd && dst->created_at && strcmp(upd, dst->created_at) != 0)
        dst->updated_at = strdup(upd);
    dst->url = gh_jstr(c, "html_url");
    if (!dst->body)
        dst->body = strdup("");
    return dst->body ? 0 : FARM_ENOMEM;
}

int gh_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref)
{
    github_api *a = gh_tracker_api(t);
    char path[GH_PATH_MAX];
    json_t *issue = NULL, *list = NULL;
    tracker_thread *th = NULL;
    int rc, more = 0;
    *out = NULL;

    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/issues/%lld", ref->repo,
                          (long long)ref->number)) < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    if ((rc = github_api_call(&issue, a, &c)) < 0)
        goto out;
    if (!json_is_object(issue)) {
        farm_error_set("github: GET %s: expected an object", path);
        rc = FARM_EIO;
        goto out;
    }
    char cpath[GH_PATH_MAX];
    if ((rc = gh_path_fmt(cpath, sizeof cpath, "%s/comments", path)) < 0)
        goto out;
    github_call lc = {.method = "GET", .path = cpath, .ref = ref};
    if ((rc = github_api_list(&list, &more, a, &lc, GH_LIST_MAX)) < 0)
        goto out;

    th = calloc(1, sizeof *th);
    if (!th) {
        rc = FARM_ENOMEM;
        goto out;
    }
    th->number = ref->number;
    th->title = gh_jstr(issue, "title");
    th->body = gh_jstr(issue, "body");
    th->author = gh_jlogin(issue);
    th->state = gh_jstr(issue, "state");
    th->url = gh_jstr(issue, "html_url");
    th->created_at = gh_jstr(issue, "created_at");
    if (!th->body)
        th->body = strdup("");
    if (!th->title)
        th->title = strdup("");
    if (!th->body || !th->title) {
        rc = FARM_ENOMEM;
        goto out;
    }
    json_t *labels = json_object_get(issue, "labels");
    size_t nl = json_array_size(labels);
    if (nl) {
        th->labels = calloc(nl + 1, sizeof *th->labels);
        if (!th->labels) {
            rc = FARM_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < nl; i++) {
            char *name = gh_jstr(json_array_get(labels, i), "name");
            if (name)
                th->labels[th->nlabels++] = name;
        }
    }

    size_t total = json_array_size(list);
    size_t skip = total > THREAD_COMMENTS ? total - THREAD_COMMENTS : 0;
    th->truncated = more || skip > 0;
    if (total - skip > 0) {
        th->comments = calloc(total - skip, sizeof *th->comments);
        if (!th->comments) {
            rc = FARM_ENOMEM;
            goto out;
        }
        for (size_t i = skip; i < total; i++) {
            if ((rc = comment_fill(&th->comments[th->ncomments++], json_array_get(list, i))) < 0)
                goto out;
        }
    }
    *out = th;
    th = NULL;
out:
    tracker_thread_free(th);
    json_decref(issue);
    json_decref(list);
    return rc;
}
