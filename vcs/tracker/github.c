/*
 * github.c - the GitHub tracker: tracker.h's operations over the REST API.
 *
 * The transport (credentials, pacing, rate limits, ETags) is github_api.c;
 * this file is what each operation means on GitHub. Two things deserve a
 * word:
 *
 * Writes that create something (a comment, a reply, a pull request) are not
 * repeated blindly: after a 5xx the request may have been carried out, so
 * before trying again the thread is searched for the body's hidden marker
 * (or the branch's PR) and what is found is used instead. After a timeout or
 * a dropped connection GitHub may still be working on it, so the error goes
 * back to the caller, who looks for the marker later before trying again. A crash between two parts
 * of a long comment leaves the first part findable by its key; tracker_comment_update() with that
 * id completes the rest.
 *
 * Long bodies: comments and replies are split (tracker_body_split) under
 * GitHub's 65,536-character limit; a PR description is truncated with a note.
 */
#include "github_api.h"
#include "tracker.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS       16   /* a comment of about a million characters at most */
#define THREAD_COMMENTS 3000 /* newest kept by thread_get */
#define LIST_MAX        10000
#define PATH_MAX_LEN    1024
#define SEGMENT_MAX     768

typedef struct github {
    tracker base;
    github_api *api;
} github;

static github_api *api_of(tracker *t)
{
    return ((github *)t)->api;
}

/* ---- helpers ------------------------------------------------------------ */

/* "owner/name": each half of [A-Za-z0-9._-], so it can go into a path. */
static int repo_check(const char *repo)
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

/* printf into a path buffer; FARM_ETOOBIG when it does not fit. */
static int path_fmt(char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int path_fmt(char *out, size_t n, const char *fmt, ...)
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

static char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? strdup(s) : NULL;
}

static char *jlogin(json_t *o)
{
    return jstr(json_object_get(o, "user"), "login");
}

/* Save and restore the error slot and retry-after around a side lookup. */
typedef struct saved_error {
    char msg[512];
    int64_t retry_after;
} saved_error;

static void error_save(saved_error *s)
{
    snprintf(s->msg, sizeof s->msg, "%s", farm_error_last());
    s->retry_after = tracker_retry_after_ms();
}

static void error_restore(const saved_error *s)
{
    farm_error_set("%s", s->msg);
    tracker_retry_after_set(s->retry_after);
}

/* A 5xx: GitHub answered, so the request is over, but it may have been
 * carried out before the error. */
static int maybe_done(int rc, const github_call *c)
{
    return rc == FARM_EAGAIN && c->status >= 500;
}

/* No answer at all (timeout, dropped connection): the request may still be
 * running on GitHub's side and land later, so a look for the marker now
 * proves nothing. The caller gets the error and looks again later (the
 * outbox calls find_by_marker before any retry). */
static int no_answer(int rc, const github_call *c)
{
    return (rc == FARM_ETIMEOUT || rc == FARM_EIO) && c->status == 0;
}

/* A failure worth trying again inside this call (no long wait asked). */
static int worth_retry(int rc, github_api *a)
{
    return (rc == FARM_EAGAIN || rc == FARM_ETIMEOUT || rc == FARM_EIO) &&
           tracker_retry_after_ms() <= github_api_max_wait_ms(a);
}

static int body_json(json_t **out, const char *text)
{
    *out = json_pack("{s:s}", "body", text);
    if (!*out) {
        farm_error_set("github: body is not valid UTF-8");
        return FARM_EINVALID;
    }
    return 0;
}

/* ---- finding by marker ---------------------------------------------------- */

/* Find, in a list of comments, the one with the marker for key and part,
 * written by login (any author when login is NULL). 0 when none. */
static int64_t marker_in_list(json_t *list, const char *key, int part, const char *login)
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

static int issue_comments(json_t **out, github_api *a, const tracker_ref *ref)
{
    char path[PATH_MAX_LEN];
    int rc = path_fmt(path, sizeof path, "/repos/%s/issues/%lld/comments", ref->repo,
                      (long long)ref->number);
    if (rc < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    return github_api_list(out, NULL, a, &c, LIST_MAX);
}

static int review_comments(json_t **out, github_api *a, const tracker_ref *ref, int64_t pr)
{
    char path[PATH_MAX_LEN];
    int rc = path_fmt(path, sizeof path, "/repos/%s/pulls/%lld/comments", ref->repo, (long long)pr);
    if (rc < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    return github_api_list(out, NULL, a, &c, LIST_MAX);
}

/* Where a marked body is looked for after an uncertain create. */
typedef struct marker_place {
    int review; /* review comments of PR pr, else the issue's comments */
    int64_t pr;
} marker_place;

static int find_marker(int64_t *out, github_api *a, const tracker_ref *ref,
                       const marker_place *where, const char *key, int part)
{
    json_t *list = NULL;
    *out = 0;
    int rc =
        where->review ? review_comments(&list, a, ref, where->pr) : issue_comments(&list, a, ref);
    if (rc < 0)
        return rc;
    *out = marker_in_list(list, key, part, github_api_login(a, ref));
    json_decref(list);
    return *out ? 0 : FARM_ENOTFOUND;
}

/* POST a marked body to path; after an uncertain failure look for the
 * marker before trying again, so nothing is posted twice. */
static int post_marked(int64_t *out_id, github_api *a, const tracker_ref *ref, const char *path,
                       const char *text, const marker_place *where, const char *key, int part)
{
    json_t *req = NULL, *res = NULL;
    int rc = body_json(&req, text);
    *out_id = 0;
    if (rc < 0)
        return rc;
    for (int attempt = 1;; attempt++) {
        github_call c = {.method = "POST", .path = path, .body = req, .ref = ref};
        rc = github_api_call(&res, a, &c);
        if (rc == 0)
            break;
        if (!worth_retry(rc, a) || attempt > github_api_max_retries(a) || no_answer(rc, &c))
            goto out;
        if (maybe_done(rc, &c)) {
            saved_error se;
            int64_t found = 0;
            error_save(&se);
            if (find_marker(&found, a, ref, where, key, part) == 0) {
                log_info("github create had landed despite the error", "key", key);
                *out_id = found;
                rc = 0;
                goto out;
            }
            error_restore(&se);
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

/* ---- comments ------------------------------------------------------------ */

static int gh_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                             const char *body)
{
    github_api *a = api_of(t);
    char path[PATH_MAX_LEN];
    char **parts = NULL;
    size_t n = 0;
    int rc;
    marker_place where = {0, 0};
    *out_id = 0;

    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/issues/%lld/comments", ref->repo,
                       (long long)ref->number)) < 0)
        return rc;
    if ((rc = tracker_body_split(&parts, &n, key, body, GITHUB_BODY_MAX, MAX_PARTS)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if ((rc = post_marked(&id, a, ref, path, parts[i], &where, key, (int)i + 1)) < 0)
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
    char path[PATH_MAX_LEN];
    json_t *req = NULL, *res = NULL;
    int rc;
    if ((rc = path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld", ref->repo,
                       (long long)id)) < 0 ||
        (rc = body_json(&req, text)) < 0)
        return rc;
    github_call c = {.method = "PATCH", .path = path, .body = req, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, a, &c);
    json_decref(req);
    json_decref(res);
    return rc;
}

static int comment_delete(github_api *a, const tracker_ref *ref, int64_t id)
{
    char path[PATH_MAX_LEN];
    json_t *res = NULL;
    int rc =
        path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld", ref->repo, (long long)id);
    if (rc < 0)
        return rc;
    github_call c = {.method = "DELETE", .path = path, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, a, &c);
    json_decref(res);
    return rc == FARM_ENOTFOUND ? 0 : rc;
}

static int gh_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                             const char *body)
{
    github_api *a = api_of(t);
    char path[PATH_MAX_LEN], issue_path[PATH_MAX_LEN];
    char **parts = NULL;
    size_t n = 0;
    json_t *cur = NULL, *list = NULL;
    int rc;
    marker_place where = {0, 0};

    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld", ref->repo,
                       (long long)id)) < 0 ||
        (rc = path_fmt(issue_path, sizeof issue_path, "/repos/%s/issues/%lld/comments", ref->repo,
                       (long long)ref->number)) < 0)
        return rc;
    if ((rc = tracker_body_split(&parts, &n, key, body, GITHUB_BODY_MAX, MAX_PARTS)) < 0)
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
    if ((rc = issue_comments(&list, a, ref)) < 0)
        goto out;
    const char *login = github_api_login(a, ref);
    size_t last = n > (size_t)old_n ? n : (size_t)old_n;
    if (last > MAX_PARTS)
        last = MAX_PARTS;
    for (size_t i = 2; i <= last; i++) {
        int64_t pid = marker_in_list(list, key, (int)i, login);
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
            if ((rc = post_marked(&nid, a, ref, issue_path, text, &where, key, (int)i)) < 0)
                goto out;
        }
    }
out:
    json_decref(cur);
    json_decref(list);
    tracker_parts_free(parts);
    return rc;
}

static int gh_comment_find_by_marker(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                     const char *key)
{
    marker_place where = {0, 0};
    int rc = repo_check(ref->repo);
    *out_id = 0;
    if (rc < 0)
        return rc;
    rc = find_marker(out_id, api_of(t), ref, &where, key, 1);
    if (rc == FARM_ENOTFOUND)
        farm_error_set("github: no comment with key %s on %s#%lld", key, ref->repo,
                       (long long)ref->number);
    return rc;
}

/* ---- reactions and labels ------------------------------------------------ */

static int gh_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    char path[PATH_MAX_LEN];
    json_t *req = NULL, *res = NULL;
    int rc;
    if ((rc = repo_check(ref->repo)) < 0)
        return rc;
    rc = comment_id > 0 ? path_fmt(path, sizeof path, "/repos/%s/issues/comments/%lld/reactions",
                                   ref->repo, (long long)comment_id)
                        : path_fmt(path, sizeof path, "/repos/%s/issues/%lld/reactions", ref->repo,
                                   (long long)ref->number);
    if (rc < 0)
        return rc;
    req = json_pack("{s:s}", "content", reaction);
    if (!req)
        return FARM_ENOMEM;
    /* reacting twice is harmless, so the transport may repeat it */
    github_call c = {.method = "POST", .path = path, .body = req, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, api_of(t), &c);
    json_decref(req);
    json_decref(res);
    return rc;
}

static int gh_labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    char path[PATH_MAX_LEN];
    json_t *req = NULL, *arr = NULL, *res = NULL;
    int rc;
    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/issues/%lld/labels", ref->repo,
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
    rc = github_api_call(&res, api_of(t), &c);
    json_decref(req);
    json_decref(res);
    return rc;
}

static int gh_labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    char path[PATH_MAX_LEN], name[SEGMENT_MAX];
    int rc;
    if ((rc = repo_check(ref->repo)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_t *res = NULL;
        if ((rc = github_api_escape(name, sizeof name, labels[i])) < 0 ||
            (rc = path_fmt(path, sizeof path, "/repos/%s/issues/%lld/labels/%s", ref->repo,
                           (long long)ref->number, name)) < 0)
            return rc;
        github_call c = {.method = "DELETE", .path = path, .ref = ref, .repeatable = 1};
        rc = github_api_call(&res, api_of(t), &c);
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
    dst->author = jlogin(c);
    dst->body = jstr(c, "body");
    dst->created_at = jstr(c, "created_at");
    const char *upd = json_string_value(json_object_get(c, "updated_at"));
    if (upd && dst->created_at && strcmp(upd, dst->created_at) != 0)
        dst->updated_at = strdup(upd);
    dst->url = jstr(c, "html_url");
    if (!dst->body)
        dst->body = strdup("");
    return dst->body ? 0 : FARM_ENOMEM;
}

static int gh_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref)
{
    github_api *a = api_of(t);
    char path[PATH_MAX_LEN];
    json_t *issue = NULL, *list = NULL;
    tracker_thread *th = NULL;
    int rc, more = 0;
    *out = NULL;

    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/issues/%lld", ref->repo,
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
    char cpath[PATH_MAX_LEN];
    if ((rc = path_fmt(cpath, sizeof cpath, "%s/comments", path)) < 0)
        goto out;
    github_call lc = {.method = "GET", .path = cpath, .ref = ref};
    if ((rc = github_api_list(&list, &more, a, &lc, LIST_MAX)) < 0)
        goto out;

    th = calloc(1, sizeof *th);
    if (!th) {
        rc = FARM_ENOMEM;
        goto out;
    }
    th->number = ref->number;
    th->title = jstr(issue, "title");
    th->body = jstr(issue, "body");
    th->author = jlogin(issue);
    th->state = jstr(issue, "state");
    th->url = jstr(issue, "html_url");
    th->created_at = jstr(issue, "created_at");
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
            char *name = jstr(json_array_get(labels, i), "name");
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

/* ---- pull requests ------------------------------------------------------- */

static int pr_fill(tracker_pr **out, json_t *j)
{
    tracker_pr *pr = calloc(1, sizeof *pr);
    *out = NULL;
    if (!pr)
        return FARM_ENOMEM;
    pr->number = json_integer_value(json_object_get(j, "number"));
    pr->url = jstr(j, "html_url");
    const char *state = json_string_value(json_object_get(j, "state"));
    int merged = json_is_true(json_object_get(j, "merged")) ||
                 json_is_string(json_object_get(j, "merged_at"));
    pr->state = strdup(merged ? "merged" : state && !strcmp(state, "open") ? "open" : "closed");
    pr->title = jstr(j, "title");
    pr->body = jstr(j, "body");
    pr->head_branch = jstr(json_object_get(j, "head"), "ref");
    pr->base_branch = jstr(json_object_get(j, "base"), "ref");
    pr->author = jlogin(j);
    if (pr->number <= 0 || !pr->state) {
        tracker_pr_free(pr);
        farm_error_set("github: a pull request without a number");
        return FARM_EIO;
    }
    *out = pr;
    return 0;
}

/* The PR description: the text, "Fixes #N" unless it is already there, and
 * the marker; cut (never inside a character) to fit GitHub's limit. */
static int pr_body(char **out, const char *text, int64_t issue, const char *key)
{
    char fixes[64] = "";
    char *marker = tracker_marker(key, 1);
    buf b = BUF_INIT(4u << 20);
    int rc = 0;
    *out = NULL;
    if (!marker)
        return FARM_ENOMEM;
    if (!text)
        text = "";
    if (issue > 0) {
        snprintf(fixes, sizeof fixes, "Fixes #%lld", (long long)issue);
        const char *p = strstr(text, fixes);
        /* "Fixes #12" must not count as "Fixes #1" */
        if (p && !(p[strlen(fixes)] >= '0' && p[strlen(fixes)] <= '9'))
            fixes[0] = 0;
    }
    static const char note[] = "\n\n*(description truncated; the full text is in the session log)*";
    size_t tail = strlen(fixes) + strlen(marker) + sizeof note + 8;
    size_t tlen = strlen(text);
    long units = tracker_utf16_len(text, tlen);
    if (units < 0) {
        farm_error_set("github: pull request body is not valid UTF-8");
        rc = FARM_EINVALID;
        goto out;
    }
    int cut = (size_t)units + tail > GITHUB_BODY_MAX;
    if (cut) {
        /* keep whole characters up to the budget (each byte is at most one unit) */
        size_t keep = 0, u = 0, budget = GITHUB_BODY_MAX - tail;
        while (keep < tlen) {
            unsigned char ch = (unsigned char)text[keep];
            size_t l = ch < 0x80 ? 1 : ch < 0xe0 ? 2 : ch < 0xf0 ? 3 : 4;
            size_t w = l == 4 ? 2 : 1;
            if (u + w > budget)
                break;
            u += w;
            keep += l;
        }
        tlen = keep;
    }
    if ((rc = buf_append(&b, text, tlen)) < 0 || (cut && (rc = buf_puts(&b, note)) < 0) ||
        (fixes[0] && (rc = buf_printf(&b, "\n\n%s", fixes)) < 0) ||
        (rc = buf_printf(&b, "\n\n%s", marker)) < 0)
        goto out;
    *out = buf_detach(&b);
    if (!*out)
        rc = FARM_ENOMEM;
out:
    buf_free(&b);
    free(marker);
    return rc;
}

static int pr_list_by_branch(tracker_pr **out, github_api *a, const tracker_ref *ref,
                             const char *branch)
{
    char path[PATH_MAX_LEN], owner[128], head[SEGMENT_MAX], label[SEGMENT_MAX + 130];
    json_t *list = NULL;
    int rc;
    *out = NULL;
    size_t olen = strcspn(ref->repo, "/");
    if (olen >= sizeof owner)
        olen = sizeof owner - 1;
    memcpy(owner, ref->repo, olen);
    owner[olen] = 0;
    snprintf(label, sizeof label, "%s:%.*s", owner, SEGMENT_MAX - 1, branch);
    if ((rc = github_api_escape(head, sizeof head, label)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/pulls?state=all&head=%s", ref->repo, head)) <
            0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    if ((rc = github_api_list(&list, NULL, a, &c, 1000)) < 0)
        return rc;
    /* the open one, else the newest */
    json_t *best = NULL;
    int best_open = 0;
    json_int_t best_num = 0;
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        const char *ref_name =
            json_string_value(json_object_get(json_object_get(p, "head"), "ref"));
        if (!ref_name || strcmp(ref_name, branch) != 0)
            continue;
        const char *st = json_string_value(json_object_get(p, "state"));
        int open = st && strcmp(st, "open") == 0;
        json_int_t num = json_integer_value(json_object_get(p, "number"));
        if (!best || open > best_open || (open == best_open && num > best_num)) {
            best = p;
            best_open = open;
            best_num = num;
        }
    }
    if (!best) {
        farm_error_set("github: no pull request from branch %s in %s", branch, ref->repo);
        rc = FARM_ENOTFOUND;
    } else {
        rc = pr_fill(out, best);
    }
    json_decref(list);
    return rc;
}

static int gh_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref,
                                const char *branch)
{
    int rc = repo_check(ref->repo);
    *out = NULL;
    if (rc < 0)
        return rc;
    return pr_list_by_branch(out, api_of(t), ref, branch);
}

static int gh_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref,
                        const tracker_pr_spec *spec)
{
    github_api *a = api_of(t);
    char path[PATH_MAX_LEN];
    char *body = NULL;
    json_t *req = NULL, *res = NULL;
    int rc;
    *out = NULL;

    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/pulls", ref->repo)) < 0 ||
        (rc = pr_body(&body, spec->body, ref->number, spec->key)) < 0)
        return rc;
    req = json_pack("{s:s, s:s, s:s, s:s, s:b}", "title", spec->title, "head", spec->head_branch,
                    "base", spec->base_branch, "body", body, "draft", spec->draft);
    if (!req) {
        farm_error_set("github: pull request title or branches are not valid UTF-8");
        rc = FARM_EINVALID;
        goto out;
    }
    for (int attempt = 1;; attempt++) {
        github_call c = {.method = "POST", .path = path, .body = req, .ref = ref};
        rc = github_api_call(&res, a, &c);
        if (rc == 0)
            break;
        if (rc == FARM_EINVALID && strstr(c.message, "already exists")) {
            farm_error_set("github: a pull request from %s is already open in %s",
                           spec->head_branch, ref->repo);
            rc = FARM_EEXISTS;
            goto out;
        }
        if (!worth_retry(rc, a) || attempt > github_api_max_retries(a) || no_answer(rc, &c))
            goto out;
        if (maybe_done(rc, &c)) {
            saved_error se;
            tracker_pr *found = NULL;
            error_save(&se);
            if (pr_list_by_branch(&found, a, ref, spec->head_branch) == 0 &&
                !strcmp(found->state, "open") &&
                tracker_body_has_marker(found->body, spec->key, 1)) {
                *out = found;
                rc = 0;
                goto out;
            }
            tracker_pr_free(found);
            error_restore(&se);
        }
        github_api_backoff(a, attempt);
    }
    rc = pr_fill(out, res);
out:
    free(body);
    json_decref(req);
    json_decref(res);
    return rc;
}

static int gh_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number,
                        const tracker_pr_spec *spec)
{
    char path[PATH_MAX_LEN];
    char *body = NULL;
    json_t *req = NULL, *res = NULL;
    int rc;
    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/pulls/%lld", ref->repo,
                       (long long)pr_number)) < 0)
        return rc;
    req = json_object();
    if (!req)
        return FARM_ENOMEM;
    if (spec->title && json_object_set_new(req, "title", json_string(spec->title)) < 0) {
        farm_error_set("github: pull request title is not valid UTF-8");
        rc = FARM_EINVALID;
        goto out;
    }
    if (spec->body) {
        if ((rc = pr_body(&body, spec->body, ref->number, spec->key)) < 0)
            goto out;
        json_object_set_new(req, "body", json_string(body));
    }
    if (json_object_size(req) == 0)
        goto out; /* nothing to change */
    github_call c = {.method = "PATCH", .path = path, .body = req, .ref = ref, .repeatable = 1};
    rc = github_api_call(&res, api_of(t), &c);
out:
    free(body);
    json_decref(req);
    json_decref(res);
    return rc;
}

/* ---- review comments ----------------------------------------------------- */

static int gh_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                                 const tracker_ref *ref, int64_t pr_number)
{
    json_t *list = NULL;
    tracker_review_comment *rcs = NULL;
    size_t count = 0;
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = review_comments(&list, api_of(t), ref, pr_number)) < 0)
        return rc;
    size_t total = json_array_size(list);
    if (total) {
        rcs = calloc(total, sizeof *rcs);
        if (!rcs) {
            rc = FARM_ENOMEM;
            goto out;
        }
    }
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        tracker_review_comment *r = &rcs[count++];
        r->id = json_integer_value(json_object_get(c, "id"));
        r->path = jstr(c, "path");
        json_t *line = json_object_get(c, "line");
        if (!json_is_integer(line))
            line = json_object_get(c, "original_line");
        r->line = json_is_integer(line) ? (int)json_integer_value(line) : 0;
        r->body = jstr(c, "body");
        r->author = jlogin(c);
        r->created_at = jstr(c, "created_at");
        r->in_reply_to = json_integer_value(json_object_get(c, "in_reply_to_id"));
        if (!r->body && !(r->body = strdup(""))) {
            rc = FARM_ENOMEM;
            goto out;
        }
    }
    *out = rcs;
    *n = count;
    rcs = NULL;
out:
    tracker_review_comments_free(rcs, count);
    json_decref(list);
    return rc;
}

static int gh_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                   int64_t pr_number, int64_t comment_id, const char *key,
                                   const char *body)
{
    github_api *a = api_of(t);
    char path[PATH_MAX_LEN];
    char **parts = NULL;
    size_t n = 0;
    int rc;
    marker_place where = {1, pr_number};
    *out_id = 0;
    if ((rc = repo_check(ref->repo)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/pulls/%lld/comments/%lld/replies", ref->repo,
                       (long long)pr_number, (long long)comment_id)) < 0)
        return rc;
    if ((rc = tracker_body_split(&parts, &n, key, body, GITHUB_BODY_MAX, MAX_PARTS)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if ((rc = post_marked(&id, a, ref, path, parts[i], &where, key, (int)i + 1)) < 0)
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

/* ---- permissions --------------------------------------------------------- */

static int gh_permission_get(tracker_permission *out, tracker *t, const tracker_ref *ref,
                             const char *user)
{
    char path[PATH_MAX_LEN], name[SEGMENT_MAX];
    json_t *res = NULL;
    int rc;
    *out = TRACKER_PERM_NONE;
    if ((rc = repo_check(ref->repo)) < 0 || (rc = github_api_escape(name, sizeof name, user)) < 0 ||
        (rc = path_fmt(path, sizeof path, "/repos/%s/collaborators/%s/permission", ref->repo,
                       name)) < 0)
        return rc;
    github_call c = {.method = "GET", .path = path, .ref = ref};
    if ((rc = github_api_call(&res, api_of(t), &c)) < 0)
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
