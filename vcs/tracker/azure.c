/*
 * azure.c - the Azure DevOps tracker: the client (PAT basic auth, requests,
 * error mapping, the farm's identity), permissions, and the tracker itself,
 * whose ops go to azure_workitem.c for a work item and to azure_git.c for a
 * pull request.
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

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_CHARS 150000

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

/* What to name a request in messages: the method and the path, never the
 * query, never credentials. */
static void request_name(char *out, size_t n, const az *a, const char *method, const char *url)
{
    const char *path = url + strlen(a->org_url);
    snprintf(out, n, "%s %.*s", method, (int)strcspn(path, "?"), path);
}

/* Send the request, with payload (may be NULL) as ctype; a failure without
 * an answer gets what in its message. */
static int request_send(http_response *resp, const az *a, const char *method, const char *url,
                        const char *ctype, const char *payload, int retry_unsafe, const char *what)
{
    http_request req = HTTP_REQUEST_INIT;
    char cthdr[128];
    const char *headers[3] = {"Accept: application/json", NULL, NULL};

    if (payload) {
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

    int rc = http_do(resp, &req);
    if (rc < 0) {
        char cause[256];
        snprintf(cause, sizeof cause, "%s",
                 rc == FARM_ETIMEOUT ? "no answer in time" : farm_error_last());
        farm_error_set("azure: %s: %s", what, cause);
    }
    return rc;
}

/* A 2xx answer: its JSON into *out when out is non-NULL (NULL for an empty
 * body). */
static int answer_json(json_t **out, const http_response *resp, const char *what)
{
    if (!out || resp->body.len == 0)
        return 0;
    json_error_t err;
    *out = json_loadb(resp->body.data, resp->body.len, 0, &err);
    if (!*out) {
        farm_error_set("azure: %s: the answer is not JSON: %s", what, err.text);
        return FARM_EIO;
    }
    return 0;
}

/* Any other answer: the status mapped as tracker.h says, with Azure's
 * message (and the wait for FARM_EAGAIN). */
static int answer_error(const http_response *resp, const char *what)
{
    long st = resp->status;
    const char *hint = NULL;
    int rc;
    if (st == 429 || st >= 500 || (st == 403 && resp->retry_after_ms > 0)) {
        tracker_retry_after_set(resp->retry_after_ms);
        rc = FARM_EAGAIN;
    } else if (st == 401) {
        hint = " (the personal access token was refused: expired or revoked?)";
        rc = FARM_EAUTH;
    } else if (st == 403) {
        rc = FARM_EAUTH;
    } else if (st == 404) {
        rc = FARM_ENOTFOUND;
    } else if (st == 409 || st == 412) {
        rc = FARM_ECONFLICT;
    } else if (st == 413) {
        rc = FARM_ETOOBIG;
    } else if (st == 400 || st == 422) {
        rc = FARM_EINVALID;
    } else {
        rc = FARM_EIO;
    }
    error_from(what, st, &resp->body, hint);
    return rc;
}

int az_request(json_t **out, long *status, az *a, const char *method, const char *url,
               const char *ctype, json_t *body, int retry_unsafe)
{
    http_response resp = {0};
    char *payload = NULL;
    char what[160];
    int rc;

    if (out)
        *out = NULL;
    if (status)
        *status = 0;
    request_name(what, sizeof what, a, method, url);
    if (body && !(payload = json_dumps(body, JSON_COMPACT))) {
        farm_error_set("azure: %s: cannot encode the request", what);
        return FARM_ENOMEM;
    }
    rc = request_send(&resp, a, method, url, ctype, payload, retry_unsafe, what);
    if (rc < 0)
        goto out;
    if (status)
        *status = resp.status;
    if (resp.status == 203) {
        /* Azure answers a refused PAT with its sign-in page */
        farm_error_set("azure: %s: answered with a sign-in page: the personal access token is "
                       "invalid or expired",
                       what);
        rc = FARM_EAUTH;
    } else if (resp.status >= 200 && resp.status < 300) {
        rc = answer_json(out, &resp, what);
    } else {
        rc = answer_error(&resp, what);
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

/* ---- the ops: a work item or a pull request ----------------------------- */

static int comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                          const char *body)
{
    if (ref->is_pr)
        return az_pr_comment_create(out_id, (az *)t, ref, key, body);
    return az_wi_comment_create(out_id, (az *)t, ref, key, body);
}

static int comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                          const char *body)
{
    if (ref->is_pr)
        return az_pr_comment_update((az *)t, ref, id, key, body);
    return az_wi_comment_update((az *)t, ref, id, key, body);
}

static int comment_find(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key)
{
    if (ref->is_pr)
        return az_pr_comment_find(out_id, (az *)t, ref, key);
    return az_wi_comment_find(out_id, (az *)t, ref, key);
}

static int react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    if (ref->is_pr)
        return az_pr_react((az *)t, ref, comment_id, reaction);
    return az_wi_react((az *)t, ref, comment_id, reaction);
}

static int labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    if (ref->is_pr)
        return az_pr_labels((az *)t, ref, labels, n, 1);
    return az_wi_labels((az *)t, ref, labels, n, 1);
}

static int labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    if (ref->is_pr)
        return az_pr_labels((az *)t, ref, labels, n, 0);
    return az_wi_labels((az *)t, ref, labels, n, 0);
}

static int thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref)
{
    if (ref->is_pr)
        return az_pr_thread_get(out, (az *)t, ref);
    return az_wi_thread_get(out, (az *)t, ref);
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
    .comment_create = comment_create,
    .comment_update = comment_update,
    .comment_find_by_marker = comment_find,
    .react = react,
    .labels_add = labels_add,
    .labels_remove = labels_remove,
    .thread_get = thread_get,
    .pr_create = az_pr_create,
    .pr_find_by_branch = az_pr_find_by_branch,
    .pr_update = az_pr_update,
    .pr_review_comments = az_pr_review_comments,
    .review_comment_reply = az_review_comment_reply,
    .permission_get = az_permission_get,
    .free = az_free,
    .checks_list = az_checks_list,
    .check_log_tail = az_check_log_tail,
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
    assert(opts);
    if (!opts->org_url || !*opts->org_url || !opts->token || !*opts->token) {
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
