/*
 * azure_workitem.c - the Azure DevOps tracker's ops on work items: comments
 * split into marked parts (editing, finding and deleting them by marker),
 * comment reactions, tags as labels (a test-and-set on the revision, so a
 * concurrent edit is never lost), and reading a work item's thread. azure.c
 * sends them here for a ref that is not a pull request.
 */
#include "azure_internal.h"

#include "base/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COMMENT_PAGES_MAX   500 /* 200 comments a page */
#define THREAD_COMMENTS_MAX 2000

/* ---- work item comments ------------------------------------------------- */

static int comments_url(buf *b, az *a, const az_loc *l, int64_t wi, int64_t comment_id)
{
    int rc = buf_printf(b, "%s/%s/_apis/wit/workItems/%lld/comments", a->org_url, l->project,
                        (long long)wi);
    if (rc == 0 && comment_id > 0)
        rc = buf_printf(b, "/%lld", (long long)comment_id);
    return rc;
}

/* Call fn on every comment of the work item, oldest first, following
 * continuation tokens; fn returns 1 to stop, < 0 to fail. */
typedef int (*comment_fn)(json_t *comment, void *arg);

static int comments_each(az *a, const az_loc *l, int64_t wi, comment_fn fn, void *arg)
{
    char *token = NULL;
    int rc = 0;
    for (int page = 0; page < COMMENT_PAGES_MAX; page++) {
        buf url = BUF_INIT(AZ_URL_MAX);
        json_t *j = NULL;
        rc = comments_url(&url, a, l, wi, 0);
        if (rc == 0)
            rc = buf_printf(&url, "?$top=200&order=asc&api-version=%s", AZ_API_COMMENTS);
        if (rc == 0 && token) {
            rc = buf_puts(&url, "&continuationToken=");
            if (rc == 0)
                rc = az_escape(&url, token);
        }
        if (rc == 0)
            rc = az_request(&j, NULL, a, "GET", buf_cstr(&url), NULL, NULL, 0);
        buf_free(&url);
        free(token);
        token = NULL;
        if (rc < 0)
            return rc;
        json_t *list = json_object_get(j, "comments");
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c)
        {
            if (json_is_true(json_object_get(c, "isDeleted")))
                continue;
            if ((rc = fn(c, arg)) != 0)
                break;
        }
        const char *next = az_str(j, "continuationToken");
        if (rc == 0 && next && *next && json_array_size(list) > 0 && !(token = strdup(next)))
            rc = FARM_ENOMEM;
        json_decref(j);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        if (!token)
            return 0;
    }
    free(token);
    farm_error_set("azure: work item %lld has more comments than the farm reads", (long long)wi);
    return FARM_ETOOBIG;
}

/* The ids of the farm's comments carrying key's markers, by part. */
typedef struct part_scan {
    az *a;
    const char *key;
    int64_t ids[AZ_MAX_PARTS + 1]; /* ids[i]: part i, 0 when absent */
    int stop_at_first;
} part_scan;

static int scan_one(json_t *c, void *arg)
{
    part_scan *s = arg;
    int part = az_marker_part(az_str(c, "text"), s->key);
    if (part < 1 || part > AZ_MAX_PARTS || s->ids[part])
        return 0;
    int mine = az_is_bot(s->a, json_object_get(c, "createdBy"));
    if (mine < 0)
        return mine;
    if (!mine)
        return 0;
    s->ids[part] = az_int(c, "id");
    return s->stop_at_first && part == 1 ? 1 : 0;
}

static int comment_post(int64_t *out_id, az *a, const az_loc *l, int64_t wi, const char *text)
{
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *body = json_pack("{s:s}", "text", text), *j = NULL;
    int rc = body ? comments_url(&url, a, l, wi, 0) : FARM_ENOMEM;
    if (rc == 0)
        rc = buf_printf(&url, "?format=markdown&api-version=%s", AZ_API_COMMENTS);
    if (rc == 0)
        rc = az_request(&j, NULL, a, "POST", buf_cstr(&url), NULL, body, 0);
    if (rc == 0 && (*out_id = az_int(j, "id")) <= 0) {
        farm_error_set("azure: the new comment on work item %lld came back without an id",
                       (long long)wi);
        rc = FARM_EIO;
    }
    json_decref(j);
    json_decref(body);
    buf_free(&url);
    return rc;
}

static int comment_send(az *a, const az_loc *l, int64_t wi, int64_t id, const char *method,
                        const char *text)
{
    buf url = BUF_INIT(AZ_URL_MAX);
    json_t *body = text ? json_pack("{s:s}", "text", text) : NULL;
    int rc = (text && !body) ? FARM_ENOMEM : comments_url(&url, a, l, wi, id);
    if (rc == 0)
        rc = buf_printf(&url, "?%sapi-version=%s", text ? "format=markdown&" : "", AZ_API_COMMENTS);
    if (rc == 0)
        rc = az_request(NULL, NULL, a, method, buf_cstr(&url), NULL, body, 1);
    json_decref(body);
    buf_free(&url);
    return rc;
}

static int split(char ***parts, size_t *n, az *a, const char *key, const char *body)
{
    return tracker_body_split(parts, n, key, body, a->max_chars, AZ_MAX_PARTS);
}

int az_wi_comment_create(int64_t *out_id, az *a, const tracker_ref *ref, const char *key,
                         const char *body)
{
    az_loc l;
    char **parts = NULL;
    size_t n = 0;
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0 || (rc = split(&parts, &n, a, key, body)) < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t id = 0;
        rc = comment_post(&id, a, &l, ref->number, parts[i]);
        if (rc == 0 && i == 0)
            *out_id = id;
    }
    tracker_parts_free(parts);
    return rc;
}

int az_wi_comment_update(az *a, const tracker_ref *ref, int64_t id, const char *key,
                         const char *body)
{
    az_loc l;
    char **parts = NULL;
    size_t n = 0;
    part_scan scan = {.a = a, .key = key};
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0 || (rc = split(&parts, &n, a, key, body)) < 0)
        return rc;
    if ((rc = comment_send(a, &l, ref->number, id, "PATCH", parts[0])) < 0)
        goto out;
    /* the other parts as they are now: some to edit, some to add, and those
     * of an earlier, longer body to delete */
    if ((rc = comments_each(a, &l, ref->number, scan_one, &scan)) < 0)
        goto out;
    for (size_t i = 1; i < n && rc == 0; i++) {
        int64_t pid = scan.ids[i + 1];
        if (pid)
            rc = comment_send(a, &l, ref->number, pid, "PATCH", parts[i]);
        else
            rc = comment_post(&pid, a, &l, ref->number, parts[i]);
    }
    for (size_t p = n + 1; p <= AZ_MAX_PARTS && rc == 0; p++) {
        if (scan.ids[p]) {
            rc = comment_send(a, &l, ref->number, scan.ids[p], "DELETE", NULL);
            if (rc == FARM_ENOTFOUND)
                rc = 0;
        }
    }
out:
    tracker_parts_free(parts);
    return rc;
}

int az_wi_comment_find(int64_t *out_id, az *a, const tracker_ref *ref, const char *key)
{
    az_loc l;
    part_scan scan = {.a = a, .key = key, .stop_at_first = 1};
    int rc;

    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0)
        return rc;
    if ((rc = comments_each(a, &l, ref->number, scan_one, &scan)) < 0)
        return rc;
    if (!scan.ids[1]) {
        farm_error_set("azure: no comment with marker %s on work item %lld", key,
                       (long long)ref->number);
        return FARM_ENOTFOUND;
    }
    *out_id = scan.ids[1];
    return 0;
}

/* ---- reactions ---------------------------------------------------------- */

/* Work item comments know like, dislike, heart, hooray, smile, confused. */
static const char *wi_reaction(const char *r)
{
    static const char *const map[][2] = {{"+1", "like"},     {"-1", "dislike"},
                                         {"heart", "heart"}, {"hooray", "hooray"},
                                         {"laugh", "smile"}, {"confused", "confused"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], r) == 0)
            return map[i][1];
    return NULL;
}

int az_wi_react(az *a, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    az_loc l;
    int rc;

    if (comment_id == 0) {
        farm_error_set("azure: work items take no reactions, only their comments do");
        return FARM_EUNSUPPORTED;
    }
    const char *type = wi_reaction(reaction);
    if (!type) {
        farm_error_set("azure: work item comments have no \"%s\" reaction", reaction);
        return FARM_EUNSUPPORTED;
    }
    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0)
        return rc;
    buf url = BUF_INIT(AZ_URL_MAX);
    rc = comments_url(&url, a, &l, ref->number, comment_id);
    if (rc == 0)
        rc = buf_printf(&url, "/reactions/%s?api-version=%s", type, AZ_API_REACTIONS);
    if (rc == 0)
        rc = az_request(NULL, NULL, a, "PUT", buf_cstr(&url), NULL, NULL, 1);
    buf_free(&url);
    return rc;
}

/* ---- work items: tags and the thread ------------------------------------ */

static int workitem_get(json_t **out, az *a, const az_loc *l, int64_t wi)
{
    char url[AZ_URL_MAX];
    snprintf(url, sizeof url, "%s/%s/_apis/wit/workitems/%lld?api-version=%s", a->org_url,
             l->project, (long long)wi, AZ_API);
    return az_request(out, NULL, a, "GET", url, NULL, NULL, 0);
}

/* Split "a; b;c" into trimmed tags. *out is NULL-terminated, freed with
 * tags_free(). */
static void tags_free(char **tags)
{
    for (char **p = tags; p && *p; p++)
        free(*p);
    free(tags);
}

static int tags_parse(char ***out, size_t *n, const char *s)
{
    size_t cap = 8, cnt = 0;
    char **v = calloc(cap + 1, sizeof *v);
    *out = NULL;
    *n = 0;
    if (!v)
        return FARM_ENOMEM;
    while (s && *s) {
        const char *semi = strchr(s, ';');
        size_t len = semi ? (size_t)(semi - s) : strlen(s);
        const char *b = s, *e = s + len;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            if (cnt == cap) {
                char **nv = realloc(v, (cap * 2 + 1) * sizeof *v);
                if (!nv)
                    goto oom;
                v = nv;
                cap *= 2;
            }
            if (!(v[cnt] = strndup(b, (size_t)(e - b))))
                goto oom;
            v[++cnt] = NULL;
        }
        s = semi ? semi + 1 : s + len;
    }
    *out = v;
    *n = cnt;
    return 0;
oom:
    tags_free(v);
    return FARM_ENOMEM;
}

static int tags_has(char **tags, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++)
        if (tags[i] && strcasecmp(tags[i], t) == 0)
            return 1;
    return 0;
}

/* Read the tags, change them, write them back with a test on the revision
 * so a concurrent edit is never lost; a lost race is read and tried again. */
int az_wi_labels(az *a, const tracker_ref *ref, const char *const *labels, size_t nl, int add)
{
    az_loc l;
    int rc;
    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0)
        return rc;
    for (int attempt = 0; attempt < 4; attempt++) {
        json_t *wi = NULL, *patch = NULL;
        char **tags = NULL;
        size_t nt = 0;
        buf joined = BUF_INIT(1u << 20);
        int changed = 0;

        if ((rc = workitem_get(&wi, a, &l, ref->number)) < 0)
            return rc;
        json_t *fields = json_object_get(wi, "fields");
        int64_t rev = az_int(wi, "rev");
        if ((rc = tags_parse(&tags, &nt, az_str(fields, "System.Tags"))) < 0)
            goto next;
        for (size_t i = 0; i < nt; i++) {
            if (!add && tags_has((char **)labels, nl, tags[i])) {
                changed = 1;
                continue;
            }
            rc = buf_printf(&joined, "%s%s", joined.len ? "; " : "", tags[i]);
            if (rc < 0)
                goto next;
        }
        for (size_t i = 0; add && i < nl; i++) {
            if (tags_has(tags, nt, labels[i]) || tags_has((char **)labels, i, labels[i]))
                continue;
            /* a tag with ';' would become two */
            if (strchr(labels[i], ';')) {
                farm_error_set("azure: tag \"%s\" contains ';'", labels[i]);
                rc = FARM_EINVALID;
                goto next;
            }
            changed = 1;
            if ((rc = buf_printf(&joined, "%s%s", joined.len ? "; " : "", labels[i])) < 0)
                goto next;
        }
        if (!changed)
            goto next;
        patch = json_pack("[{s:s,s:s,s:I},{s:s,s:s,s:s}]", "op", "test", "path", "/rev", "value",
                          (json_int_t)rev, "op", "add", "path", "/fields/System.Tags", "value",
                          buf_cstr(&joined));
        if (!patch) {
            rc = FARM_ENOMEM;
            goto next;
        }
        char url[AZ_URL_MAX];
        snprintf(url, sizeof url, "%s/%s/_apis/wit/workitems/%lld?api-version=%s", a->org_url,
                 l.project, (long long)ref->number, AZ_API);
        rc = az_request(NULL, NULL, a, "PATCH", url, "application/json-patch+json", patch, 1);
    next:
        json_decref(patch);
        json_decref(wi);
        tags_free(tags);
        buf_free(&joined);
        if (rc != FARM_ECONFLICT)
            return rc;
    }
    farm_error_set("azure: work item %lld kept changing while its tags were updated",
                   (long long)ref->number);
    return FARM_EAGAIN;
}

/* Work item states that mean the work is over, in the stock processes. */
static const char *wi_state(const char *s)
{
    static const char *const closed[] = {"Closed", "Done", "Removed", "Resolved", "Completed"};
    for (size_t i = 0; s && i < sizeof closed / sizeof *closed; i++)
        if (strcasecmp(s, closed[i]) == 0)
            return "closed";
    return "open";
}

typedef struct thread_acc {
    tracker_comment *v;
    size_t n, cap;
    int truncated;
    int oom;
} thread_acc;

static int thread_add(json_t *c, void *arg)
{
    thread_acc *acc = arg;
    if (acc->n == acc->cap) {
        if (acc->cap >= THREAD_COMMENTS_MAX) {
            /* keep the newest: drop the oldest */
            tracker_comment *old = &acc->v[0];
            free(old->author), free(old->body), free(old->created_at), free(old->updated_at),
                free(old->url);
            memmove(acc->v, acc->v + 1, (acc->n - 1) * sizeof *acc->v);
            acc->n--;
            acc->truncated = 1;
        } else {
            size_t cap = acc->cap ? acc->cap * 2 : 32;
            tracker_comment *nv = realloc(acc->v, cap * sizeof *nv);
            if (!nv)
                return FARM_ENOMEM;
            acc->v = nv;
            acc->cap = cap;
        }
    }
    tracker_comment *tc = &acc->v[acc->n++];
    memset(tc, 0, sizeof *tc);
    tc->id = az_int(c, "id");
    json_t *by = json_object_get(c, "createdBy");
    tc->author = az_dup(by, "uniqueName", &acc->oom);
    tc->body = az_dup(c, "text", &acc->oom);
    tc->created_at = az_dup(c, "createdDate", &acc->oom);
    const char *mod = az_str(c, "modifiedDate");
    const char *cre = az_str(c, "createdDate");
    if (mod && (!cre || strcmp(mod, cre) != 0))
        tc->updated_at = az_dup(c, "modifiedDate", &acc->oom);
    return acc->oom ? FARM_ENOMEM : 0;
}

int az_wi_thread_get(tracker_thread **out, az *a, const tracker_ref *ref)
{
    az_loc l;
    json_t *wi = NULL;
    tracker_thread *th = NULL;
    thread_acc acc = {0};
    int rc, oom = 0;

    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0)
        return rc;
    if ((rc = workitem_get(&wi, a, &l, ref->number)) < 0)
        return rc;
    if (!(th = calloc(1, sizeof *th))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    json_t *f = json_object_get(wi, "fields");
    th->number = ref->number;
    th->title = az_dup(f, "System.Title", &oom);
    th->body = az_dup(f, "System.Description", &oom);
    json_t *by = json_object_get(f, "System.CreatedBy");
    th->author =
        json_is_string(by) ? az_dup(f, "System.CreatedBy", &oom) : az_dup(by, "uniqueName", &oom);
    th->state = strdup(wi_state(az_str(f, "System.State")));
    th->created_at = az_dup(f, "System.CreatedDate", &oom);
    json_t *html = json_object_get(json_object_get(wi, "_links"), "html");
    th->url = az_dup(html, "href", &oom);
    if (!th->url) {
        buf u = BUF_INIT(AZ_URL_MAX);
        if (buf_printf(&u, "%s/%s/_workitems/edit/%lld", a->org_url, l.project,
                       (long long)ref->number) == 0)
            th->url = buf_detach(&u);
        buf_free(&u);
    }
    if (oom || !th->state || !th->url) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if ((rc = tags_parse(&th->labels, &th->nlabels, az_str(f, "System.Tags"))) < 0)
        goto out;
    rc = comments_each(a, &l, ref->number, thread_add, &acc);
    th->comments = acc.v;
    th->ncomments = acc.n;
    th->truncated = acc.truncated;
    acc.v = NULL;
    if (rc < 0)
        goto out;
    *out = th;
    th = NULL;
out:
    tracker_thread_free(th);
    json_decref(wi);
    return rc;
}
