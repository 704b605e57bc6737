/*
 * azure_git.c - the Azure DevOps tracker's pull requests (Azure Repos):
 * create one linked to its work item (workItemRefs), find it by branch,
 * update it, read its comment threads, reply in them, and comment on the PR
 * itself (calls with ref->is_pr).
 *
 * A PR comment lives in a thread; its id alone is not unique, so the farm
 * names one as (thread << 16 | comment) in a single int64 (the comment ids
 * of a thread are small: Azure caps a thread at 500 comments). The farm's
 * own comments on a PR open a thread of their own, marked "closed" so they
 * never hold up a branch policy that wants every comment resolved; the parts
 * of a long body are the replies of that thread.
 */
#include "azure_internal.h"

#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PR_NOTE "\n\n*(description truncated: Azure DevOps keeps 4,000 characters)*"

/* "{org}/{project}/_apis/git/repositories/{repo}/pullRequests[/{pr}]" */
static int pr_url(buf *b, az *a, const az_loc *l, int64_t pr)
{
    int rc = buf_printf(b, "%s/%s/_apis/git/repositories/%s/pullRequests", a->org_url, l->project,
                        l->repository);
    if (rc == 0 && pr > 0)
        rc = buf_printf(b, "/%lld", (long long)pr);
    return rc;
}

static int is_text_comment(json_t *c)
{
    if (json_is_true(json_object_get(c, "isDeleted")))
        return 0;
    json_t *type = json_object_get(c, "commentType");
    if (json_is_string(type))
        return strcmp(json_string_value(type), "text") == 0;
    if (json_is_integer(type))
        return json_integer_value(type) == 1;
    return 1;
}

static int threads_get(json_t **out, az *a, const az_loc *l, int64_t pr)
{
    buf url = BUF_INIT(AZ_URL_MAX);
    int rc = pr_url(&url, a, l, pr);
    if (rc == 0)
        rc = buf_printf(&url, "/threads?api-version=%s", AZ_API);
    if (rc == 0)
        rc = az_request(out, NULL, a, "GET", buf_cstr(&url), NULL, NULL, 0);
    buf_free(&url);
    if (rc == 0 && !json_is_array(json_object_get(*out, "value"))) {
        json_decref(*out);
        *out = NULL;
        farm_error_set("azure: the threads of pull request %lld came back without a list",
                       (long long)pr);
        rc = FARM_EIO;
    }
    return rc;
}

/* POST a comment into thread tid (parent 0: none). */
static int thread_comment_post(int64_t *out_cid, az *a, const az_loc *l, int64_t pr, int64_t tid,
                               int64_t parent, const char *text)
{
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *j = NULL, *body = json_pack("{s:s,s:I,s:i}", "content", text, "parentCommentId",
                                        (json_int_t)parent, "commentType", 1);
    int rc = body ? pr_url(&url, a, l, pr) : FARM_ENOMEM;
    if (rc == 0)
        rc = buf_printf(&url, "/threads/%lld/comments?api-version=%s", (long long)tid, AZ_API);
    if (rc == 0)
        rc = az_request(&j, NULL, a, "POST", buf_cstr(&url), NULL, body, 0);
    if (rc == 0 && out_cid && (*out_cid = az_int(j, "id")) <= 0) {
        farm_error_set("azure: the new comment in thread %lld came back without an id",
                       (long long)tid);
        rc = FARM_EIO;
    }
    json_decref(j);
    json_decref(body);
    buf_free(&url);
    return rc;
}

static int thread_comment_send(az *a, const az_loc *l, int64_t pr, int64_t tid, int64_t cid,
                               const char *method, const char *text)
{
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *body = text ? json_pack("{s:s}", "content", text) : NULL;
    int rc = (text && !body) ? FARM_ENOMEM : pr_url(&url, a, l, pr);
    if (rc == 0)
        rc = buf_printf(&url, "/threads/%lld/comments/%lld?api-version=%s", (long long)tid,
                        (long long)cid, AZ_API);
    if (rc == 0)
        rc = az_request(NULL, NULL, a, method, buf_cstr(&url), NULL, body, 1);
    json_decref(body);
    buf_free(&url);
    return rc;
}

/* ---- comments on the PR itself ------------------------------------------ */

int az_pr_comment_create(int64_t *out_id, az *a, const tracker_ref *ref, const char *key,
                         const char *body)
{
    az_loc l;
    char **parts = NULL;
    size_t n = 0;
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *req = NULL, *j = NULL;
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0 ||
        (rc = tracker_body_split(&parts, &n, key, body, a->max_chars, AZ_MAX_PARTS)) < 0)
        return rc;
    req = json_pack("{s:[{s:s,s:i,s:i}],s:s}", "comments", "content", parts[0], "parentCommentId",
                    0, "commentType", 1, "status", "closed");
    if (!req) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if ((rc = pr_url(&url, a, &l, ref->number)) < 0 ||
        (rc = buf_printf(&url, "/threads?api-version=%s", AZ_API)) < 0)
        goto out;
    if ((rc = az_request(&j, NULL, a, "POST", buf_cstr(&url), NULL, req, 0)) < 0)
        goto out;
    int64_t tid = az_int(j, "id");
    int64_t cid = az_int(json_array_get(json_object_get(j, "comments"), 0), "id");
    if (tid <= 0 || cid <= 0) {
        farm_error_set("azure: the new thread on pull request %lld came back without ids",
                       (long long)ref->number);
        rc = FARM_EIO;
        goto out;
    }
    for (size_t i = 1; i < n && rc == 0; i++)
        rc = thread_comment_post(NULL, a, &l, ref->number, tid, cid, parts[i]);
    if (rc == 0)
        *out_id = AZ_PR_COMMENT_ID(tid, cid);
out:
    json_decref(req);
    json_decref(j);
    buf_free(&url);
    tracker_parts_free(parts);
    return rc;
}

/* The farm's comments in one thread (or every thread when tid is 0) that
 * carry key's markers: ids[part] = (thread << 16 | comment). */
static int marked_scan(int64_t *ids, az *a, json_t *threads, int64_t tid, const char *key)
{
    size_t i, k;
    json_t *th, *c;
    json_array_foreach(json_object_get(threads, "value"), i, th)
    {
        if (tid && az_int(th, "id") != tid)
            continue;
        json_array_foreach(json_object_get(th, "comments"), k, c)
        {
            if (!is_text_comment(c))
                continue;
            int part = az_marker_part(az_str(c, "content"), key);
            if (part < 1 || part > AZ_MAX_PARTS || ids[part])
                continue;
            int mine = az_is_bot(a, json_object_get(c, "author"));
            if (mine < 0)
                return mine;
            if (mine)
                ids[part] = AZ_PR_COMMENT_ID(az_int(th, "id"), az_int(c, "id"));
        }
    }
    return 0;
}

int az_pr_comment_find(int64_t *out_id, az *a, const tracker_ref *ref, const char *key)
{
    az_loc l;
    json_t *threads = NULL;
    int64_t ids[AZ_MAX_PARTS + 1] = {0};
    int rc;
    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0 ||
        (rc = threads_get(&threads, a, &l, ref->number)) < 0)
        return rc;
    rc = marked_scan(ids, a, threads, 0, key);
    json_decref(threads);
    if (rc < 0)
        return rc;
    if (!ids[1]) {
        farm_error_set("azure: no comment with marker %s on pull request %lld", key,
                       (long long)ref->number);
        return FARM_ENOTFOUND;
    }
    *out_id = ids[1];
    return 0;
}

int az_pr_comment_update(az *a, const tracker_ref *ref, int64_t id, const char *key,
                         const char *body)
{
    az_loc l;
    json_t *threads = NULL;
    char **parts = NULL;
    size_t n = 0;
    int64_t ids[AZ_MAX_PARTS + 1] = {0};
    int64_t tid = AZ_PR_THREAD_OF(id), cid = AZ_PR_COMMENT_OF(id);
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0 ||
        (rc = tracker_body_split(&parts, &n, key, body, a->max_chars, AZ_MAX_PARTS)) < 0)
        return rc;
    if ((rc = thread_comment_send(a, &l, ref->number, tid, cid, "PATCH", parts[0])) < 0)
        goto out;
    if ((rc = threads_get(&threads, a, &l, ref->number)) < 0 ||
        (rc = marked_scan(ids, a, threads, tid, key)) < 0)
        goto out;
    for (size_t i = 1; i < n && rc == 0; i++) {
        int64_t pid = ids[i + 1];
        if (pid)
            rc = thread_comment_send(a, &l, ref->number, tid, AZ_PR_COMMENT_OF(pid), "PATCH",
                                     parts[i]);
        else
            rc = thread_comment_post(NULL, a, &l, ref->number, tid, cid, parts[i]);
    }
    for (size_t p = n + 1; p <= AZ_MAX_PARTS && rc == 0; p++) {
        if (!ids[p])
            continue;
        rc = thread_comment_send(a, &l, ref->number, tid, AZ_PR_COMMENT_OF(ids[p]), "DELETE", NULL);
        if (rc == FARM_ENOTFOUND)
            rc = 0;
    }
out:
    json_decref(threads);
    tracker_parts_free(parts);
    return rc;
}

int az_pr_react(az *a, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    az_loc l;
    int rc;
    /* PR comments have one reaction, "like" */
    if (comment_id == 0 || strcmp(reaction, "+1") != 0) {
        farm_error_set("azure: pull request comments can only be liked (\"+1\"); \"%s\"%s is not "
                       "possible",
                       reaction, comment_id == 0 ? " on the pull request itself" : "");
        return FARM_EUNSUPPORTED;
    }
    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0)
        return rc;
    buf url = BUF_INIT(AZ_URL_MAX);
    rc = pr_url(&url, a, &l, ref->number);
    if (rc == 0)
        rc = buf_printf(&url, "/threads/%lld/comments/%lld/likes?api-version=%s",
                        (long long)AZ_PR_THREAD_OF(comment_id),
                        (long long)AZ_PR_COMMENT_OF(comment_id), AZ_API);
    if (rc == 0)
        rc = az_request(NULL, NULL, a, "POST", buf_cstr(&url), NULL, NULL, 1);
    buf_free(&url);
    return rc;
}

/* ---- labels on pull requests -------------------------------------------- */

int az_pr_labels(az *a, const tracker_ref *ref, const char *const *labels, size_t n, int add)
{
    az_loc l;
    int rc;
    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        buf url = BUF_INIT(AZ_URL_MAX);
        json_t *body = NULL;
        rc = pr_url(&url, a, &l, ref->number);
        if (rc == 0)
            rc = buf_puts(&url, "/labels");
        if (rc == 0 && !add && (rc = buf_putc(&url, '/')) == 0)
            rc = az_escape(&url, labels[i]);
        if (rc == 0)
            rc = buf_printf(&url, "?api-version=%s", AZ_API);
        if (rc == 0 && add && !(body = json_pack("{s:s}", "name", labels[i])))
            rc = FARM_ENOMEM;
        if (rc == 0)
            rc = az_request(NULL, NULL, a, add ? "POST" : "DELETE", buf_cstr(&url), NULL, body, 1);
        if (rc == FARM_ENOTFOUND && !add)
            rc = 0; /* it was not there */
        json_decref(body);
        buf_free(&url);
    }
    return rc;
}

/* ---- pull requests ------------------------------------------------------ */

static const char *pr_state(const char *status)
{
    if (status && strcmp(status, "completed") == 0)
        return "merged";
    if (status && strcmp(status, "abandoned") == 0)
        return "closed";
    return "open";
}

static char *branch_of(json_t *pr, const char *key, int *oom)
{
    const char *ref = az_str(pr, key);
    if (!ref)
        return NULL;
    if (strncmp(ref, "refs/heads/", 11) == 0)
        ref += 11;
    char *c = strdup(ref);
    if (!c)
        *oom = 1;
    return c;
}

static int pr_from_json(tracker_pr **out, az *a, const az_loc *l, json_t *j)
{
    int oom = 0;
    tracker_pr *pr = calloc(1, sizeof *pr);
    *out = NULL;
    if (!pr)
        return FARM_ENOMEM;
    pr->number = az_int(j, "pullRequestId");
    pr->state = strdup(pr_state(az_str(j, "status")));
    pr->title = az_dup(j, "title", &oom);
    pr->body = az_dup(j, "description", &oom);
    pr->head_branch = branch_of(j, "sourceRefName", &oom);
    pr->base_branch = branch_of(j, "targetRefName", &oom);
    pr->author = az_dup(json_object_get(j, "createdBy"), "uniqueName", &oom);
    buf u = BUF_INIT(AZ_URL_MAX);
    if (buf_printf(&u, "%s/%s/_git/%s/pullrequest/%lld", a->org_url, l->project, l->repository,
                   (long long)pr->number) == 0)
        pr->url = buf_detach(&u);
    buf_free(&u);
    if (oom || !pr->state || !pr->url) {
        tracker_pr_free(pr);
        return FARM_ENOMEM;
    }
    if (pr->number <= 0) {
        tracker_pr_free(pr);
        farm_error_set("azure: a pull request came back without an id");
        return FARM_EIO;
    }
    *out = pr;
    return 0;
}

/* The description: body and marker, within Azure's 4,000 characters. */
static int pr_description(char **out, const char *body, const char *key)
{
    char *marker = tracker_marker(key, 1);
    buf b = BUF_INIT(AZURE_PR_DESCRIPTION_MAX * 4 + 64);
    int rc = 0;
    *out = NULL;
    if (!marker)
        return FARM_ENOMEM;
    size_t blen = strlen(body);
    long units = tracker_utf16_len(body, blen);
    if (units < 0) {
        farm_error_set("azure: pull request description is not valid UTF-8");
        rc = FARM_EINVALID;
        goto out;
    }
    size_t budget = AZURE_PR_DESCRIPTION_MAX - strlen(marker) - 2;
    if ((size_t)units <= budget) {
        rc = buf_printf(&b, "%s\n\n%s", body, marker);
    } else {
        size_t keep = az_utf8_prefix(body, blen, budget - strlen(PR_NOTE));
        rc = buf_printf(&b, "%.*s%s\n\n%s", (int)keep, body, PR_NOTE, marker);
    }
    if (rc == 0 && !(*out = buf_detach(&b)))
        rc = FARM_ENOMEM;
out:
    buf_free(&b);
    free(marker);
    return rc;
}

int az_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref, const tracker_pr_spec *spec)
{
    az *a = (az *)t;
    az_loc l;
    char *desc = NULL;
    char src[600], dst[600];
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *req = NULL, *j = NULL;
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0)
        return rc;
    if ((rc = pr_description(&desc, spec->body ? spec->body : "", spec->key)) < 0)
        return rc;
    snprintf(src, sizeof src, "refs/heads/%s", spec->head_branch);
    snprintf(dst, sizeof dst, "refs/heads/%s", spec->base_branch);
    req = json_pack("{s:s,s:s,s:s,s:s,s:b}", "sourceRefName", src, "targetRefName", dst, "title",
                    spec->title, "description", desc, "isDraft", spec->draft);
    if (!req) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if (ref->number > 0) {
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)ref->number);
        json_t *refs = json_pack("[{s:s}]", "id", id);
        if (!refs || json_object_set_new(req, "workItemRefs", refs) < 0) {
            rc = FARM_ENOMEM;
            goto out;
        }
    }
    if ((rc = pr_url(&url, a, &l, 0)) < 0 || (rc = buf_printf(&url, "?api-version=%s", AZ_API)) < 0)
        goto out;
    rc = az_request(&j, NULL, a, "POST", buf_cstr(&url), NULL, req, 0);
    if (rc == FARM_ECONFLICT) {
        /* TF401179: an active pull request for these branches exists */
        rc = FARM_EEXISTS;
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = pr_from_json(out, a, &l, j);
out:
    json_decref(req);
    json_decref(j);
    buf_free(&url);
    free(desc);
    return rc;
}

int az_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref, const char *branch)
{
    az *a = (az *)t;
    az_loc l;
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *j = NULL, *best = NULL, *pr;
    size_t i;
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0)
        return rc;
    if ((rc = pr_url(&url, a, &l, 0)) < 0 ||
        (rc = buf_puts(&url, "?searchCriteria.sourceRefName=refs%2Fheads%2F")) < 0 ||
        (rc = az_escape(&url, branch)) < 0 ||
        (rc = buf_printf(&url, "&searchCriteria.status=all&$top=100&api-version=%s", AZ_API)) < 0)
        goto out;
    if ((rc = az_request(&j, NULL, a, "GET", buf_cstr(&url), NULL, NULL, 0)) < 0)
        goto out;
    json_array_foreach(json_object_get(j, "value"), i, pr)
    {
        const char *src = az_str(pr, "sourceRefName");
        if (!src || strncmp(src, "refs/heads/", 11) != 0 || strcmp(src + 11, branch) != 0)
            continue;
        int active = strcmp(pr_state(az_str(pr, "status")), "open") == 0;
        int best_active = best && strcmp(pr_state(az_str(best, "status")), "open") == 0;
        if (!best || (active && !best_active) ||
            (active == best_active && az_int(pr, "pullRequestId") > az_int(best, "pullRequestId")))
            best = pr;
    }
    if (!best) {
        farm_error_set("azure: no pull request from branch %s in %s", branch, ref->repo);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    rc = pr_from_json(out, a, &l, best);
out:
    json_decref(j);
    buf_free(&url);
    return rc;
}

int az_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number, const tracker_pr_spec *spec)
{
    az *a = (az *)t;
    az_loc l;
    char *desc = NULL;
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *req = json_object();
    int rc;

    if (!req)
        return FARM_ENOMEM;
    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0)
        goto out;
    if (spec->title && json_object_set_new(req, "title", json_string(spec->title)) < 0) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if (spec->body) {
        if ((rc = pr_description(&desc, spec->body, spec->key)) < 0)
            goto out;
        if (json_object_set_new(req, "description", json_string(desc)) < 0) {
            rc = FARM_ENOMEM;
            goto out;
        }
    }
    if (json_object_size(req) == 0)
        goto out;
    if ((rc = pr_url(&url, a, &l, pr_number)) < 0 ||
        (rc = buf_printf(&url, "?api-version=%s", AZ_API)) < 0)
        goto out;
    rc = az_request(NULL, NULL, a, "PATCH", buf_cstr(&url), NULL, req, 1);
out:
    json_decref(req);
    buf_free(&url);
    free(desc);
    return rc;
}

/* ---- threads ------------------------------------------------------------ */

static int by_created(const void *x, const void *y)
{
    const tracker_comment *a = x, *b = y;
    int c = strcmp(a->created_at ? a->created_at : "", b->created_at ? b->created_at : "");
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

int az_pr_thread_get(tracker_thread **out, az *a, const tracker_ref *ref)
{
    az_loc l;
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *j = NULL, *threads = NULL, *th, *c, *lab;
    tracker_thread *t = NULL;
    tracker_pr *pr = NULL;
    size_t i, k, total = 0;
    int rc, oom = 0;

    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0)
        return rc;
    if ((rc = pr_url(&url, a, &l, ref->number)) < 0 ||
        (rc = buf_printf(&url, "?api-version=%s", AZ_API)) < 0 ||
        (rc = az_request(&j, NULL, a, "GET", buf_cstr(&url), NULL, NULL, 0)) < 0 ||
        (rc = pr_from_json(&pr, a, &l, j)) < 0 ||
        (rc = threads_get(&threads, a, &l, ref->number)) < 0)
        goto out;
    if (!(t = calloc(1, sizeof *t))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    t->number = pr->number;
    t->title = pr->title, pr->title = NULL;
    t->body = pr->body, pr->body = NULL;
    t->author = pr->author, pr->author = NULL;
    t->url = pr->url, pr->url = NULL;
    t->state = strdup(strcmp(pr->state, "open") == 0 ? "open" : "closed");
    t->created_at = az_dup(j, "creationDate", &oom);
    json_t *labels = json_object_get(j, "labels");
    if (json_array_size(labels) > 0) {
        t->labels = calloc(json_array_size(labels) + 1, sizeof *t->labels);
        if (!t->labels)
            oom = 1;
        json_array_foreach(labels, i, lab)
        {
            if (t->labels && az_str(lab, "name"))
                t->labels[t->nlabels++] = az_dup(lab, "name", &oom);
        }
    }
    /* the conversation: text comments of threads not anchored in a file */
    json_array_foreach(json_object_get(threads, "value"), i, th)
    {
        if (json_is_object(json_object_get(th, "threadContext")))
            continue;
        total += json_array_size(json_object_get(th, "comments"));
    }
    if (total > 0 && !(t->comments = calloc(total, sizeof *t->comments)))
        oom = 1;
    json_array_foreach(json_object_get(threads, "value"), i, th)
    {
        if (oom || json_is_object(json_object_get(th, "threadContext")))
            continue;
        json_array_foreach(json_object_get(th, "comments"), k, c)
        {
            if (!is_text_comment(c) || t->ncomments >= total)
                continue;
            tracker_comment *tc = &t->comments[t->ncomments++];
            tc->id = AZ_PR_COMMENT_ID(az_int(th, "id"), az_int(c, "id"));
            tc->author = az_dup(json_object_get(c, "author"), "uniqueName", &oom);
            tc->body = az_dup(c, "content", &oom);
            tc->created_at = az_dup(c, "publishedDate", &oom);
            const char *upd = az_str(c, "lastContentUpdatedDate");
            const char *pub = az_str(c, "publishedDate");
            if (upd && (!pub || strcmp(upd, pub) != 0))
                tc->updated_at = az_dup(c, "lastContentUpdatedDate", &oom);
        }
    }
    if (oom || !t->state) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if (t->ncomments > 1)
        qsort(t->comments, t->ncomments, sizeof *t->comments, by_created);
    *out = t;
    t = NULL;
out:
    tracker_thread_free(t);
    tracker_pr_free(pr);
    json_decref(j);
    json_decref(threads);
    buf_free(&url);
    return rc;
}

int az_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                          const tracker_ref *ref, int64_t pr_number)
{
    az *a = (az *)t;
    az_loc l;
    json_t *threads = NULL, *th, *c;
    tracker_review_comment *v = NULL;
    size_t i, k, total = 0, cnt = 0;
    int rc, oom = 0;

    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0 ||
        (rc = threads_get(&threads, a, &l, pr_number)) < 0)
        return rc;
    json_array_foreach(json_object_get(threads, "value"), i, th) total +=
        json_array_size(json_object_get(th, "comments"));
    if (total > 0 && !(v = calloc(total, sizeof *v))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    json_array_foreach(json_object_get(threads, "value"), i, th)
    {
        if (json_is_true(json_object_get(th, "isDeleted")))
            continue;
        json_t *ctx = json_object_get(th, "threadContext");
        const char *path = az_str(ctx, "filePath");
        json_t *pos = json_object_get(ctx, "rightFileStart");
        if (!json_is_object(pos))
            pos = json_object_get(ctx, "leftFileStart");
        int64_t tid = az_int(th, "id");
        json_array_foreach(json_object_get(th, "comments"), k, c)
        {
            if (!is_text_comment(c) || cnt >= total)
                continue;
            tracker_review_comment *rc_ = &v[cnt++];
            rc_->id = AZ_PR_COMMENT_ID(tid, az_int(c, "id"));
            if (path) {
                /* Azure paths start with '/'; the farm's are repository-relative */
                rc_->path = strdup(path[0] == '/' ? path + 1 : path);
                if (!rc_->path)
                    oom = 1;
            }
            rc_->line = (int)az_int(pos, "line");
            rc_->body = az_dup(c, "content", &oom);
            rc_->author = az_dup(json_object_get(c, "author"), "uniqueName", &oom);
            rc_->created_at = az_dup(c, "publishedDate", &oom);
            int64_t parent = az_int(c, "parentCommentId");
            rc_->in_reply_to = parent > 0 ? AZ_PR_COMMENT_ID(tid, parent) : 0;
        }
    }
    if (oom) {
        rc = FARM_ENOMEM;
        goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    tracker_review_comments_free(v, total);
    json_decref(threads);
    return rc;
}

int az_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref, int64_t pr_number,
                            int64_t comment_id, const char *key, const char *body)
{
    az *a = (az *)t;
    az_loc l;
    char **parts = NULL;
    size_t n = 0;
    int64_t tid = AZ_PR_THREAD_OF(comment_id), parent = AZ_PR_COMMENT_OF(comment_id);
    int rc;

    if (tid <= 0 || parent <= 0) {
        farm_error_set("azure: %lld does not name a comment of a pull request thread",
                       (long long)comment_id);
        return FARM_EINVALID;
    }
    if ((rc = az_loc_get(&l, a, ref->repo, 1)) < 0 ||
        (rc = tracker_body_split(&parts, &n, key, body, a->max_chars, AZ_MAX_PARTS)) < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t cid = 0;
        rc = thread_comment_post(&cid, a, &l, pr_number, tid, parent, parts[i]);
        if (rc == 0 && i == 0)
            *out_id = AZ_PR_COMMENT_ID(tid, cid);
        parent = cid;
    }
    tracker_parts_free(parts);
    return rc;
}
