/*
 * azure.c - the Azure DevOps tracker: the client (PAT basic auth, requests,
 * error mapping) and everything about work items: comments, tags as labels,
 * comment reactions, reading a work item's thread, and permissions. Pull
 * requests and their comment threads are in azure_git.c.
 *
 * Markers. Work item comments are stored as the text the farm sends
 * (Markdown, format=markdown) and returned verbatim in `text`, so the hidden
 * marker is the same HTML comment `<!-- farm:KEY -->` as on GitHub: Azure
 * keeps it in the stored text and only the rendered HTML drops it. Finding a
 * marker reads `text`, never `renderedText`.
 *
 * Sizes. Azure does not document a limit for one comment; long text fields
 * hold 1M characters. A body over max_comment_chars (150,000 by default) is
 * split like GitHub's, each part with its own marker.
 *
 * Permissions. Azure DevOps does not answer "may this user write to this
 * repository" without a chain of Graph lookups per user; the farm decides by
 * the configured allowlist (repos[].allowed_actors), as the webhook path
 * does for deliveries.
 */
#include "azure_internal.h"

#include "base/error.h"
#include "base/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_CHARS   150000
#define COMMENT_PAGES_MAX   500 /* 200 comments a page */
#define THREAD_COMMENTS_MAX 2000

/* ---- small helpers ------------------------------------------------------ */

const char *az_str(json_t *o, const char *key)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int64_t az_int(json_t *o, const char *key)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

char *az_dup(json_t *o, const char *key, int *oom)
{
    const char *s = az_str(o, key);
    if (!s)
        return NULL;
    char *c = strdup(s);
    if (!c)
        *oom = 1;
    return c;
}

int az_escape(buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
            rc = buf_putc(b, (char)*p);
        else
            rc = buf_printf(b, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
    }
    return rc;
}

size_t az_utf8_prefix(const char *s, size_t len, size_t max_units)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, units = 0;
    while (i < len) {
        size_t l = p[i] < 0x80 ? 1 : (p[i] & 0xe0) == 0xc0 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3 : 4;
        size_t u = l == 4 ? 2 : 1;
        if (i + l > len || units + u > max_units)
            break;
        i += l;
        units += u;
    }
    return i;
}

int az_marker_part(const char *body, const char *key)
{
    if (!body)
        return 0;
    size_t klen = strlen(key);
    for (const char *p = strstr(body, "<!-- farm:"); p; p = strstr(p + 1, "<!-- farm:")) {
        const char *k = p + strlen("<!-- farm:");
        if (strncmp(k, key, klen) != 0)
            continue;
        k += klen;
        if (strncmp(k, " -->", 4) == 0)
            return 1;
        if (*k == '#' && isdigit((unsigned char)k[1])) {
            char *end;
            long part = strtol(k + 1, &end, 10);
            if (part >= 2 && part <= 100000 && strncmp(end, " -->", 4) == 0)
                return (int)part;
        }
    }
    return 0;
}

/* ---- where a ref points ------------------------------------------------- */

static int copy_escaped(char *dst, size_t n, const char *s)
{
    buf b = BUF_INIT(n - 1);
    int rc = az_escape(&b, s);
    if (rc == 0)
        snprintf(dst, n, "%s", buf_cstr(&b));
    buf_free(&b);
    return rc;
}

int az_loc_get(az_loc *out, const az *a, const char *repo, int need_git)
{
    const char *project = NULL, *repository = NULL;
    char parts[3][256] = {{0}};
    memset(out, 0, sizeof *out);

    for (size_t i = 0; i < a->nrepos; i++) {
        if (strcasecmp(a->repos[i].name, repo) == 0) {
            out->cfg = &a->repos[i];
            project = a->repos[i].project;
            repository = a->repos[i].repository;
            break;
        }
    }
    /* "org/project/repo" or "org/project": the parts the config left out */
    int np = 0;
    const char *s = repo;
    while (np < 3) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        if (len >= sizeof parts[0])
            break;
        memcpy(parts[np], s, len);
        parts[np][len] = '\0';
        np++;
        if (!slash)
            break;
        s = slash + 1;
    }
    if (!project && np >= 2 && parts[1][0])
        project = parts[1];
    if (!repository && np == 3 && parts[2][0])
        repository = parts[2];
    if (!project || strlen(project) >= sizeof out->project_raw) {
        farm_error_set("azure: cannot tell the project of \"%s\" (configure it as "
                       "org/project/repo or give azure_project)",
                       repo);
        return FARM_EINVALID;
    }
    if (need_git && (!repository || strlen(repository) >= sizeof out->repository_raw)) {
        farm_error_set("azure: \"%s\" names no Azure Repos repository (expected org/project/repo)",
                       repo);
        return FARM_EINVALID;
    }
    snprintf(out->project_raw, sizeof out->project_raw, "%s", project);
    snprintf(out->repository_raw, sizeof out->repository_raw, "%s", repository ? repository : "");
    if (copy_escaped(out->project, sizeof out->project, project) < 0 ||
        copy_escaped(out->repository, sizeof out->repository, repository ? repository : "") < 0) {
        farm_error_set("azure: project or repository name of \"%s\" is too long", repo);
        return FARM_EINVALID;
    }
    return 0;
}

/* ---- requests ----------------------------------------------------------- */

/* Azure's own explanation from an error body ({"message": ...}), shortened. */
static void error_from(const char *what, long status, const buf *body, const char *hint)
{
    json_t *j = json_loadb(body->data ? body->data : "", body->len, 0, NULL);
    const char *msg = az_str(j, "message");
    farm_error_set("azure: %s: HTTP %ld%s%.300s%s", what, status, msg ? ": " : "", msg ? msg : "",
                   hint ? hint : "");
    json_decref(j);
}

int az_request(json_t **out, long *status, az *a, const char *method, const char *url,
               const char *ctype, json_t *body, int retry_unsafe)
{
    http_request req = HTTP_REQUEST_INIT;
    http_response resp = {0};
    char *payload = NULL;
    char cthdr[128];
    const char *headers[3] = {"Accept: application/json", NULL, NULL};
    char what[160];
    int rc;

    if (out)
        *out = NULL;
    if (status)
        *status = 0;
    /* what to name in messages: the method and the path, never credentials */
    const char *path = url + strlen(a->org_url);
    snprintf(what, sizeof what, "%s %.*s", method, (int)strcspn(path, "?"), path);

    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        if (!payload) {
            farm_error_set("azure: %s: cannot encode the request", what);
            return FARM_ENOMEM;
        }
        snprintf(cthdr, sizeof cthdr, "Content-Type: %s", ctype ? ctype : "application/json");
        headers[1] = cthdr;
        req.body = payload;
        req.body_len = strlen(payload);
    }
    req.method = method;
    req.url = url;
    req.headers = headers;
    req.basic_user = "";
    req.basic_password = a->token;
    req.timeout_ms = a->timeout_ms;
    req.max_retries = a->max_retries;
    req.max_retry_wait_ms = a->max_retry_wait_ms;
    req.retry_unsafe = retry_unsafe;
    req.max_response = AZ_RESPONSE_MAX;

    rc = http_do(&resp, &req);
    if (rc < 0) {
        char cause[256];
        snprintf(cause, sizeof cause, "%s",
                 rc == FARM_ETIMEOUT ? "no answer in time" : farm_error_last());
        farm_error_set("azure: %s: %s", what, cause);
        goto out;
    }
    if (status)
        *status = resp.status;
    long st = resp.status;
    if (st == 203) {
        /* Azure answers a refused PAT with its sign-in page */
        farm_error_set("azure: %s: answered with a sign-in page: the personal access token is "
                       "invalid or expired",
                       what);
        rc = FARM_EAUTH;
    } else if (st >= 200 && st < 300) {
        if (out && resp.body.len > 0) {
            json_error_t err;
            *out = json_loadb(resp.body.data, resp.body.len, 0, &err);
            if (!*out) {
                farm_error_set("azure: %s: the answer is not JSON: %s", what, err.text);
                rc = FARM_EIO;
            }
        }
    } else if (st == 429 || st >= 500 || (st == 403 && resp.retry_after_ms > 0)) {
        error_from(what, st, &resp.body, NULL);
        tracker_retry_after_set(resp.retry_after_ms);
        rc = FARM_EAGAIN;
    } else if (st == 401) {
        error_from(what, st, &resp.body,
                   " (the personal access token was refused: expired or revoked?)");
        rc = FARM_EAUTH;
    } else if (st == 403) {
        error_from(what, st, &resp.body, NULL);
        rc = FARM_EAUTH;
    } else if (st == 404) {
        error_from(what, st, &resp.body, NULL);
        rc = FARM_ENOTFOUND;
    } else if (st == 409 || st == 412) {
        error_from(what, st, &resp.body, NULL);
        rc = FARM_ECONFLICT;
    } else if (st == 413) {
        error_from(what, st, &resp.body, NULL);
        rc = FARM_ETOOBIG;
    } else if (st == 400 || st == 422) {
        error_from(what, st, &resp.body, NULL);
        rc = FARM_EINVALID;
    } else {
        error_from(what, st, &resp.body, NULL);
        rc = FARM_EIO;
    }
out:
    if (rc < 0 && out) {
        json_decref(*out);
        *out = NULL;
    }
    http_response_free(&resp);
    free(payload);
    return rc;
}

/* ---- the farm's identity ------------------------------------------------ */

/* Learn the identity behind the token once, from connectionData. */
static int identity_load(az *a)
{
    char url[AZ_URL_MAX];
    json_t *j = NULL;
    int rc = 0;

    snprintf(url, sizeof url, "%s/_apis/connectionData", a->org_url);
    rc = az_request(&j, NULL, a, "GET", url, NULL, NULL, 0);
    if (rc == FARM_ENOTFOUND) {
        /* a server without it: the farm cannot tell its own comments apart */
        a->bot_known = 1;
        return 0;
    }
    if (rc < 0)
        return rc;
    json_t *user = json_object_get(j, "authenticatedUser");
    const char *id = az_str(user, "id");
    json_t *props = json_object_get(user, "properties");
    const char *account = az_str(json_object_get(props, "Account"), "$value");
    if (id && !(a->bot_id = strdup(id)))
        rc = FARM_ENOMEM;
    if (rc == 0 && !a->bot_name && account && !(a->bot_name = strdup(account)))
        rc = FARM_ENOMEM;
    if (rc == 0)
        a->bot_known = 1;
    json_decref(j);
    return rc;
}

int az_is_bot(az *a, json_t *identity)
{
    int rc = 0;
    pthread_mutex_lock(&a->lock);
    if (!a->bot_known)
        rc = identity_load(a);
    if (rc == 0) {
        const char *id = az_str(identity, "id");
        const char *name = az_str(identity, "uniqueName");
        if (!a->bot_id && !a->bot_name)
            rc = 1;
        else
            rc = (a->bot_id && id && strcasecmp(a->bot_id, id) == 0) ||
                 (a->bot_name && name && strcasecmp(a->bot_name, name) == 0);
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

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

static int wi_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                             const char *body)
{
    az *a = (az *)t;
    az_loc l;
    char **parts = NULL;
    size_t n = 0;
    int rc;

    if (ref->is_pr)
        return az_pr_comment_create(out_id, a, ref, key, body);
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

static int wi_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                             const char *body)
{
    az *a = (az *)t;
    az_loc l;
    char **parts = NULL;
    size_t n = 0;
    part_scan scan = {.a = a, .key = key};
    int rc;

    if (ref->is_pr)
        return az_pr_comment_update(a, ref, id, key, body);
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

static int wi_comment_find(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key)
{
    az *a = (az *)t;
    az_loc l;
    part_scan scan = {.a = a, .key = key, .stop_at_first = 1};
    int rc;

    if (ref->is_pr)
        return az_pr_comment_find(out_id, a, ref, key);
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

static int wi_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    az *a = (az *)t;
    az_loc l;
    int rc;

    if (ref->is_pr)
        return az_pr_react(a, ref, comment_id, reaction);
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
static int tags_change(az *a, const tracker_ref *ref, const char *const *labels, size_t nl, int add)
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

static int wi_labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    if (ref->is_pr)
        return az_pr_labels((az *)t, ref, labels, n, 1);
    return tags_change((az *)t, ref, labels, n, 1);
}

static int wi_labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    if (ref->is_pr)
        return az_pr_labels((az *)t, ref, labels, n, 0);
    return tags_change((az *)t, ref, labels, n, 0);
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

static int wi_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref)
{
    az *a = (az *)t;
    az_loc l;
    json_t *wi = NULL;
    tracker_thread *th = NULL;
    thread_acc acc = {0};
    int rc, oom = 0;

    if (ref->is_pr)
        return az_pr_thread_get(out, a, ref);
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

/* ---- permissions -------------------------------------------------------- */

static int az_permission_get(tracker_permission *out, tracker *t, const tracker_ref *ref,
                             const char *user)
{
    az *a = (az *)t;
    az_loc l;
    int rc;
    if ((rc = az_loc_get(&l, a, ref->repo, 0)) < 0)
        return rc;
    *out = TRACKER_PERM_NONE;
    if (!l.cfg)
        return 0;
    for (size_t i = 0; i < l.cfg->nallowed; i++) {
        if (strcasecmp(l.cfg->allowed[i], user) == 0) {
            *out = TRACKER_PERM_WRITE;
            break;
        }
    }
    return 0;
}

/* ---- construction ------------------------------------------------------- */

static void az_free(tracker *t)
{
    az *a = (az *)t;
    if (!a)
        return;
    for (size_t i = 0; i < a->nrepos; i++) {
        az_repo *r = &a->repos[i];
        free(r->name);
        free(r->project);
        free(r->repository);
        for (size_t k = 0; k < r->nallowed; k++)
            free(r->allowed[k]);
        free(r->allowed);
    }
    free(a->repos);
    free(a->org_url);
    if (a->token) {
        explicit_bzero(a->token, strlen(a->token));
        free(a->token);
    }
    free(a->bot_name);
    free(a->bot_id);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static const tracker_ops az_ops = {
    .name = "azure",
    .comment_create = wi_comment_create,
    .comment_update = wi_comment_update,
    .comment_find_by_marker = wi_comment_find,
    .react = wi_react,
    .labels_add = wi_labels_add,
    .labels_remove = wi_labels_remove,
    .thread_get = wi_thread_get,
    .pr_create = az_pr_create,
    .pr_find_by_branch = az_pr_find_by_branch,
    .pr_update = az_pr_update,
    .pr_review_comments = az_pr_review_comments,
    .review_comment_reply = az_review_comment_reply,
    .permission_get = az_permission_get,
    .free = az_free,
};

static char *dup_opt(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *c = strdup(s);
    if (!c)
        *oom = 1;
    return c;
}

int tracker_azure_new(tracker **out, const tracker_azure_opts *opts)
{
    az *a = NULL;
    int oom = 0;
    *out = NULL;
    if (!opts || !opts->org_url || !*opts->org_url || !opts->token || !*opts->token) {
        farm_error_set("azure: an organization URL and a personal access token are needed");
        return FARM_EINVALID;
    }
    if (strncmp(opts->org_url, "http://", 7) != 0 && strncmp(opts->org_url, "https://", 8) != 0) {
        farm_error_set("azure: org_url must start with https:// (or http:// for tests)");
        return FARM_EINVALID;
    }
    if (strlen(opts->org_url) > 1024) {
        farm_error_set("azure: org_url is too long");
        return FARM_EINVALID;
    }
    if (!(a = calloc(1, sizeof *a)))
        return FARM_ENOMEM;
    pthread_mutex_init(&a->lock, NULL);
    a->base.ops = &az_ops;
    a->org_url = dup_opt(opts->org_url, &oom);
    a->token = dup_opt(opts->token, &oom);
    a->bot_name = dup_opt(opts->bot_name, &oom);
    a->bot_known = opts->bot_name != NULL;
    a->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    a->max_retries = opts->max_retries >= 0 ? opts->max_retries : 3;
    a->max_retry_wait_ms = opts->max_retry_wait_ms >= 0 ? opts->max_retry_wait_ms : 1000;
    a->max_chars = opts->max_comment_chars ? opts->max_comment_chars : DEFAULT_MAX_CHARS;
    if (oom)
        goto oom;
    size_t ulen = strlen(a->org_url);
    while (ulen > 0 && a->org_url[ulen - 1] == '/')
        a->org_url[--ulen] = '\0';
    if (opts->nrepos) {
        if (!opts->repos || !(a->repos = calloc(opts->nrepos, sizeof *a->repos)))
            goto oom;
        a->nrepos = opts->nrepos;
        for (size_t i = 0; i < opts->nrepos; i++) {
            const tracker_azure_repo *src = &opts->repos[i];
            az_repo *r = &a->repos[i];
            if (!src->name) {
                farm_error_set("azure: repository %zu has no name", i);
                az_free(&a->base);
                return FARM_EINVALID;
            }
            r->name = dup_opt(src->name, &oom);
            r->project = dup_opt(src->project, &oom);
            r->repository = dup_opt(src->repository, &oom);
            if (src->nallowed_actors) {
                r->allowed = calloc(src->nallowed_actors + 1, sizeof *r->allowed);
                if (!r->allowed)
                    goto oom;
                for (size_t k = 0; k < src->nallowed_actors && src->allowed_actors[k]; k++) {
                    r->allowed[k] = dup_opt(src->allowed_actors[k], &oom);
                    r->nallowed++;
                }
            }
            if (oom)
                goto oom;
        }
    }
    *out = &a->base;
    return 0;
oom:
    az_free(&a->base);
    return FARM_ENOMEM;
}
