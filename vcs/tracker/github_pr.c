/*
 * github_pr.c - the GitHub tracker's ops on pull requests: creating one
 * (never twice for a branch, even after an uncertain failure), finding one by
 * its branch, updating it, and listing and answering its review comments.
 * A PR's description links its issue ("Fixes #N") and carries the marker;
 * it is cut with a note to fit GitHub's limit.
 */
#include "github_api.h"
#include "tracker.h"

#include "base/buf.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pull requests ------------------------------------------------------- */

static int pr_fill(tracker_pr **out, json_t *j)
{
    tracker_pr *pr = calloc(1, sizeof *pr);
    *out = NULL;
    if (!pr)
        return FARM_ENOMEM;
    pr->number = json_integer_value(json_object_get(j, "number"));
    pr->url = gh_jstr(j, "html_url");
    const char *state = json_string_value(json_object_get(j, "state"));
    int merged = json_is_true(json_object_get(j, "merged")) ||
                 json_is_string(json_object_get(j, "merged_at"));
    pr->state = strdup(merged ? "merged" : state && !strcmp(state, "open") ? "open" : "closed");
    pr->title = gh_jstr(j, "title");
    pr->body = gh_jstr(j, "body");
    pr->head_branch = gh_jstr(json_object_get(j, "head"), "ref");
    pr->base_branch = gh_jstr(json_object_get(j, "base"), "ref");
    pr->author = gh_jlogin(j);
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
    char path[GH_PATH_MAX], owner[128], head[GH_SEGMENT_MAX], label[GH_SEGMENT_MAX + 130];
    json_t *list = NULL;
    int rc;
    *out = NULL;
    size_t olen = strcspn(ref->repo, "/");
    if (olen >= sizeof owner)
        olen = sizeof owner - 1;
    memcpy(owner, ref->repo, olen);
    owner[olen] = 0;
    snprintf(label, sizeof label, "%s:%.*s", owner, GH_SEGMENT_MAX - 1, branch);
    if ((rc = github_api_escape(head, sizeof head, label)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/pulls?state=all&head=%s", ref->repo,
                          head)) < 0)
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

int gh_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref, const char *branch)
{
    int rc = gh_repo_check(ref->repo);
    *out = NULL;
    if (rc < 0)
        return rc;
    return pr_list_by_branch(out, gh_tracker_api(t), ref, branch);
}

int gh_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref, const tracker_pr_spec *spec)
{
    github_api *a = gh_tracker_api(t);
    char path[GH_PATH_MAX];
    char *body = NULL;
    json_t *req = NULL, *res = NULL;
    int rc;
    *out = NULL;

    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/pulls", ref->repo)) < 0 ||
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
        if (!gh_worth_retry(rc, a) || attempt > github_api_max_retries(a) || gh_no_answer(rc, &c))
            goto out;
        if (gh_maybe_done(rc, &c)) {
            gh_saved_error se;
            tracker_pr *found = NULL;
            gh_error_save(&se);
            if (pr_list_by_branch(&found, a, ref, spec->head_branch) == 0 &&
                !strcmp(found->state, "open") &&
                tracker_body_has_marker(found->body, spec->key, 1)) {
                *out = found;
                rc = 0;
                goto out;
            }
            tracker_pr_free(found);
            gh_error_restore(&se);
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

int gh_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number, const tracker_pr_spec *spec)
{
    char path[GH_PATH_MAX];
    char *body = NULL;
    json_t *req = NULL, *res = NULL;
    int rc;
    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/pulls/%lld", ref->repo,
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
    rc = github_api_call(&res, gh_tracker_api(t), &c);
out:
    free(body);
    json_decref(req);
    json_decref(res);
    return rc;
}

/* ---- review comments ----------------------------------------------------- */

int gh_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                          const tracker_ref *ref, int64_t pr_number)
{
    json_t *list = NULL;
    tracker_review_comment *rcs = NULL;
    size_t count = 0;
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_review_comments(&list, gh_tracker_api(t), ref, pr_number)) < 0)
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
        r->path = gh_jstr(c, "path");
        json_t *line = json_object_get(c, "line");
        if (!json_is_integer(line))
            line = json_object_get(c, "original_line");
        r->line = json_is_integer(line) ? (int)json_integer_value(line) : 0;
        r->body = gh_jstr(c, "body");
        r->author = gh_jlogin(c);
        r->created_at = gh_jstr(c, "created_at");
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

int gh_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref, int64_t pr_number,
                            int64_t comment_id, const char *key, const char *body)
{
    github_api *a = gh_tracker_api(t);
    char path[GH_PATH_MAX];
    char **parts = NULL;
    size_t n = 0;
    int rc;
    gh_marker_place where = {1, pr_number};
    *out_id = 0;
    if ((rc = gh_repo_check(ref->repo)) < 0 ||
        (rc = gh_path_fmt(path, sizeof path, "/repos/%s/pulls/%lld/comments/%lld/replies",
                          ref->repo, (long long)pr_number, (long long)comment_id)) < 0)
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
