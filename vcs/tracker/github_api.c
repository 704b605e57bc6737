/*
 * github_api.c - the GitHub REST transport: one request from its URL to its
 * mapped answer, lists over many pages, and the api's life cycle. Under the
 * tracker ops of github.c; the credentials are in github_api_auth.c, pacing
 * and rate limits in github_api_limits.c, the ETag cache in
 * github_api_cache.c.
 *
 * A request runs as a chain of steps: resolve the URL (a pagination link
 * goes only to the configured API), refuse while the credential's rate limit
 * is spent, pace a content-creating request, ask conditionally when the
 * answer is cached, send, and read the answer: a 304 from the cache, a 2xx
 * parsed (and cached), anything else mapped to a FARM_E* code with GitHub's
 * message.
 */
#include "github_api.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define URL_MAX        4096
#define RESPONSE_MAX   (16u << 20)
#define LIST_PAGES_MAX 200
#define LIST_BYTES_MAX (64u << 20) /* all pages of one list together */
#define ETAGS_MAX      100000      /* entries of the ETag cache at most */

/* ---- small helpers ------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void gh_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int github_api_escape(char *out, size_t n, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (j + (plain ? 1 : 3) >= n) {
            farm_error_set("github: a name of %zu bytes is too long for a URL", strlen(s));
            return FARM_ETOOBIG;
        }
        if (plain) {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    out[j] = 0;
    return 0;
}

int github_api_max_retries(const github_api *a)
{
    return a->max_retries;
}

long github_api_max_wait_ms(const github_api *a)
{
    return a->max_wait_ms;
}

void github_api_backoff(const github_api *a, int attempt)
{
    int64_t d = 200;
    for (int i = 1; i < attempt && d < 5000; i++)
        d *= 2;
    if (tracker_retry_after_ms() > d)
        d = tracker_retry_after_ms();
    if (d > a->max_wait_ms)
        d = a->max_wait_ms;
    gh_sleep_ms(d);
}

/* ---- construction ------------------------------------------------------- */

int github_api_new(github_api **out, const tracker_github_opts *o)
{
    int rc = 0;
    github_api *a = NULL;
    *out = NULL;

    if (!o) {
        farm_error_set("github: no options");
        return FARM_EINVALID;
    }
    int have_pat = o->token && *o->token;
    int have_app = o->app_id > 0 && o->app_private_key && *o->app_private_key;
    if (have_pat == have_app) {
        farm_error_set("github: give either a token or an app id with a private key");
        return FARM_EINVALID;
    }
    const char *url = o->api_url && *o->api_url ? o->api_url : "https://api.github.com";
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) {
        farm_error_set("github: api_url must start with https:// or http://");
        return FARM_EINVALID;
    }
    if (strlen(url) > 1024) {
        farm_error_set("github: api_url is too long");
        return FARM_EINVALID;
    }

    a = calloc(1, sizeof *a);
    if (!a)
        return FARM_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->api_url = strdup(url);
    a->token = dup_or_null(have_pat ? o->token : NULL);
    a->app_id = have_app ? o->app_id : 0;
    a->app_key = dup_or_null(have_app ? o->app_private_key : NULL);
    a->login = dup_or_null(o->bot_login && *o->bot_login ? o->bot_login : NULL);
    a->login_asked = a->login != NULL;
    a->user_agent = NULL;
    if (o->user_agent && *o->user_agent) {
        buf ua = BUF_INIT(512);
        if (buf_printf(&ua, "User-Agent: %s", o->user_agent) < 0) {
            buf_free(&ua);
            rc = FARM_EINVALID;
            goto out;
        }
        a->user_agent = buf_detach(&ua);
    } else {
        a->user_agent = strdup("User-Agent: farm/" FARM_VERSION);
    }
    if (!a->api_url || !a->user_agent || (have_pat && !a->token) || (have_app && !a->app_key) ||
        (o->bot_login && *o->bot_login && !a->login)) {
        rc = FARM_ENOMEM;
        goto out;
    }
    size_t ul = strlen(a->api_url);
    while (ul > 0 && a->api_url[ul - 1] == '/')
        a->api_url[--ul] = 0;
    a->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    a->max_retries = o->max_retries >= 0 ? o->max_retries : 3;
    a->max_wait_ms = o->max_retry_wait_ms >= 0 ? o->max_retry_wait_ms : 1000;
    a->shared = o->shared;
    if ((rc = gh_pacer_init(&a->pace, o->per_minute, o->per_hour)) < 0)
        goto out;
    a->netags = o->etag_cache_entries > 0 ? o->etag_cache_entries : 256;
    if (a->netags > ETAGS_MAX)
        a->netags = ETAGS_MAX;
    a->etags = calloc(a->netags, sizeof *a->etags);
    if (!a->etags) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if (a->token)
        log_secret_add(a->token);
    *out = a;
    a = NULL;
out:
    github_api_free(a);
    return rc;
}

void github_api_free(github_api *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < GH_IDENT_MAX; i++)
        free(a->idents[i].token);
    for (size_t i = 0; a->etags && i < a->netags; i++) {
        free(a->etags[i].key);
        free(a->etags[i].etag);
        free(a->etags[i].body);
        free(a->etags[i].next);
    }
    free(a->etags);
    free(a->pace.times);
    for (size_t i = 0; i < a->nrepos; i++)
        free(a->repos[i].repo);
    pthread_mutex_destroy(&a->mu);
    free(a->api_url);
    free(a->token);
    free(a->app_key);
    free(a->login);
    free(a->user_agent);
    free(a);
}

/* ---- answers ------------------------------------------------------------ */

int gh_json_parse(json_t **out, const char *p, size_t n, const char *what)
{
    *out = NULL;
    if (n == 0)
        return 0;
    json_error_t err;
    json_t *j = json_loadb(p, n, JSON_DECODE_ANY, &err);
    if (!j) {
        farm_error_set("github: %s: answer is not JSON (%s)", what, err.text);
        return FARM_EIO;
    }
    *out = j;
    return 0;
}

/* GitHub's message and first detailed error, for the caller's error text. */
static void error_message(github_call *c, const char *p, size_t n)
{
    json_t *j = NULL;
    c->message[0] = 0;
    if (gh_json_parse(&j, p, n, "error") < 0 || !json_is_object(j)) {
        json_decref(j);
        farm_error_clear();
        return;
    }
    const char *m = json_string_value(json_object_get(j, "message"));
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    const char *detail = json_string_value(json_object_get(e0, "message"));
    if (!detail)
        detail = json_string_value(json_object_get(e0, "code"));
    snprintf(c->message, sizeof c->message, "%s%s%s%s", m ? m : "", detail ? " (" : "",
             detail ? detail : "", detail ? ")" : "");
    json_decref(j);
}

/* The URL of Link: <...>; rel="next", or NULL. Heap string. */
static char *link_next(const char *link)
{
    const char *p = link;
    while (p && *p) {
        const char *lt = strchr(p, '<'), *gt = lt ? strchr(lt, '>') : NULL;
        if (!gt)
            return NULL;
        const char *end = strchr(gt, ',');
        size_t seglen = end ? (size_t)(end - gt) : strlen(gt);
        const char *rel = strstr(gt, "rel=\"next\"");
        if (rel && (size_t)(rel - gt) < seglen)
            return strndup(lt + 1, (size_t)(gt - lt - 1));
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* ---- one request -------------------------------------------------------- */

/* What one request carries from step to step. */
typedef struct request_state {
    const char *method;
    int writes; /* content-creating: paced, never cached */
    char url[URL_MAX];
    const char *shown; /* the path, for messages: never the query, never a host */
    int shown_len;
    char *body; /* the JSON sent, or NULL */
    char *key;  /* the ETag cache key, NULL when the answer is not cached */
    char *inm;  /* If-None-Match: the cached entry's ETag, or NULL */
} request_state;

/* The URL to ask: the API's URL and the path, or a pagination link, which
 * may only ever lead to the configured API. */
static int url_resolve(request_state *s, const github_api *a, const char *path)
{
    if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0) {
        size_t ul = strlen(a->api_url);
        if (strncmp(path, a->api_url, ul) != 0 || (path[ul] != '/' && path[ul] != '?')) {
            farm_error_set("github: refusing to follow a link outside %s", a->api_url);
            return FARM_EIO;
        }
        if (strlen(path) >= sizeof s->url) {
            farm_error_set("github: URL too long");
            return FARM_ETOOBIG;
        }
        snprintf(s->url, sizeof s->url, "%s", path);
    } else if ((size_t)snprintf(s->url, sizeof s->url, "%s%s", a->api_url, path) >= sizeof s->url) {
        farm_error_set("github: URL too long");
        return FARM_ETOOBIG;
    }
    s->shown = s->url + strlen(a->api_url);
    s->shown_len = (int)strcspn(s->shown, "?");
    return 0;
}

static int body_encode(request_state *s, json_t *body)
{
    if (!body)
        return 0;
    s->body = json_dumps(body, JSON_COMPACT);
    return s->body ? 0 : FARM_ENOMEM;
}

/* Send the request; a failure without an answer gets the method and path
 * in its message. */
static int request_send(http_response *r, const github_api *a, const github_call *c,
                        const request_state *s, const char *auth)
{
    const char *headers[8];
    size_t nh = 0;
    headers[nh++] = "Accept: application/vnd.github+json";
    headers[nh++] = "X-GitHub-Api-Version: 2022-11-28";
    headers[nh++] = a->user_agent;
    headers[nh++] = auth;
    if (s->body)
        headers[nh++] = "Content-Type: application/json";
    if (s->inm)
        headers[nh++] = s->inm;
    headers[nh] = NULL;

    http_request req = HTTP_REQUEST_INIT;
    req.method = s->method;
    req.url = s->url;
    req.headers = headers;
    req.body = s->body;
    req.body_len = s->body ? strlen(s->body) : 0;
    req.timeout_ms = a->timeout_ms;
    req.connect_timeout_ms = a->timeout_ms < 5000 ? a->timeout_ms : 5000;
    req.max_retries = a->max_retries;
    req.retry_unsafe = c->repeatable;
    req.max_retry_wait_ms = a->max_wait_ms;
    req.max_response = c->raw && c->raw_max ? c->raw_max : RESPONSE_MAX;
    int rc = http_do(r, &req);
    if (rc < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", farm_error_last());
        farm_error_set("github: %s %.*s: %s", s->method, s->shown_len, s->shown, why);
        if (rc == FARM_EIO || rc == FARM_ETIMEOUT)
            tracker_retry_after_set(0);
    }
    return rc;
}

/* A 2xx: the parsed body, the next page's link, and the answer cached when
 * it came with an ETag. */
static int answer_ok(json_t **out, char **next, github_api *a, github_call *c,
                     const http_response *r, const request_state *s)
{
    const char *data = r->body.data ? r->body.data : "";
    char *link = NULL, *etag = NULL, *nx = NULL;
    c->bytes = r->body.len;
    if (c->raw) /* a log: text, as it came */
        return buf_append(c->raw, data, r->body.len) ? FARM_ETOOBIG : 0;
    int rc = gh_json_parse(out, data, r->body.len, s->shown);
    if (rc < 0)
        return rc;
    if ((link = http_response_header(r, "Link")) != NULL)
        nx = link_next(link);
    if (s->key && (etag = http_response_header(r, "ETag")) != NULL)
        gh_etag_store(a, s->key, etag, data, r->body.len, nx);
    if (next) {
        *next = nx;
        nx = NULL;
    }
    free(nx);
    free(link);
    free(etag);
    return 0;
}

/* Anything else: GitHub's message in c->message and the error slot, and the
 * status mapped to a FARM_E* code (with the wait for FARM_EAGAIN). */
static int answer_error(github_call *c, const http_response *r, const request_state *s)
{
    int rc;
    error_message(c, r->body.data ? r->body.data : "", r->body.len);
    if (r->status == 401) {
        rc = FARM_EAUTH;
    } else if (gh_rate_limited(r, c->message)) {
        int64_t wait = r->retry_after_ms;
        if (wait <= 0 && r->ratelimit_remaining == 0 && r->ratelimit_reset > 0)
            wait = r->ratelimit_reset * 1000 - clock_wall_ms();
        if (wait <= 0)
            wait = 60 * 1000; /* a secondary limit without a hint: GitHub says a minute */
        tracker_retry_after_set(wait);
        rc = FARM_EAGAIN;
    } else if (r->status == 403) {
        rc = FARM_EAUTH;
    } else if (r->status == 404 || r->status == 410) {
        rc = FARM_ENOTFOUND;
    } else if (r->status == 409) {
        rc = FARM_ECONFLICT;
    } else if (r->status == 422 || r->status == 400) {
        rc = FARM_EINVALID;
    } else if (r->status >= 500) {
        tracker_retry_after_set(r->retry_after_ms);
        rc = FARM_EAGAIN;
    } else {
        rc = FARM_ERROR;
    }
    farm_error_set("github: %s %.*s: %ld %s", s->method, s->shown_len, s->shown, r->status,
                   c->message[0] ? c->message : "(no message)");
    return rc;
}

int gh_request(json_t **out, char **next, github_api *a, github_call *c, const char *auth,
               int use_cache, int64_t installation)
{
    request_state s = {0};
    http_response r;
    int rc, have_response = 0;
    *out = NULL;
    if (next)
        *next = NULL;
    c->status = 0;
    c->bytes = 0;
    c->message[0] = 0;
    s.method = c->method ? c->method : "GET";
    s.writes = strcmp(s.method, "GET") != 0 && strcmp(s.method, "HEAD") != 0;

    if ((rc = url_resolve(&s, a, c->path)) < 0)
        return rc;
    if (installation >= 0 &&
        (rc = gh_rate_limit_check(a, installation, s.method, s.shown, s.shown_len)) < 0)
        return rc;
    if (s.writes && installation >= 0 && (rc = gh_pace(a)) < 0)
        return rc;
    if ((rc = body_encode(&s, c->body)) < 0)
        return rc;
    if (use_cache && !s.writes && !c->raw &&
        (rc = gh_etag_condition(&s.key, &s.inm, a, installation, s.url)) < 0)
        goto out;

    rc = request_send(&r, a, c, &s, auth);
    have_response = 1;
    if (rc < 0)
        goto out;
    c->status = r.status;
    gh_rate_limit_note(a, installation, &r);

    if (r.status == 304 && s.key) {
        /* evicted meanwhile by another thread: ask again, unconditionally */
        rc = gh_etag_answer(out, next, a, c, s.key, s.shown);
        if (rc == FARM_ENOTFOUND)
            rc = gh_request(out, next, a, c, auth, 0, installation);
    } else if (r.status >= 200 && r.status < 300) {
        rc = answer_ok(out, next, a, c, &r, &s);
    } else {
        rc = answer_error(c, &r, &s);
    }
out:
    if (have_response)
        http_response_free(&r);
    if (rc < 0 && *out) {
        json_decref(*out);
        *out = NULL;
    }
    if (rc < 0 && next && *next) {
        free(*next);
        *next = NULL;
    }
    free(s.key);
    free(s.inm);
    free(s.body);
    return rc;
}

/* github_api_call() that also hands back the next page's URL. */
static int call(json_t **out, char **next, github_api *a, github_call *c)
{
    *out = NULL;
    if (!a->app_id) {
        char *auth = NULL;
        if (asprintf(&auth, "Authorization: Bearer %s", a->token) < 0)
            return FARM_ENOMEM;
        int rc = gh_request(out, next, a, c, auth, 1, 0);
        free(auth);
        return rc;
    }

    int64_t installation;
    int rc = gh_installation_for(&installation, a, c->ref);
    if (rc < 0)
        return rc;
    for (int attempt = 0;; attempt++) {
        char *tok = NULL, *auth = NULL;
        if ((rc = gh_installation_token(&tok, a, installation, attempt > 0)) < 0)
            return rc;
        if (asprintf(&auth, "Authorization: Bearer %s", tok) < 0) {
            free(tok);
            return FARM_ENOMEM;
        }
        rc = gh_request(out, next, a, c, auth, 1, installation);
        free(auth);
        free(tok);
        /* an expired or revoked installation token: renew it once */
        if (rc != FARM_EAUTH || c->status != 401 || attempt > 0)
            return rc;
        log_info("github installation token rejected, renewing");
    }
}

int github_api_call(json_t **out, github_api *a, github_call *c)
{
    return call(out, NULL, a, c);
}

/* ---- lists --------------------------------------------------------------- */

int github_api_list(json_t **out, int *truncated, github_api *a, github_call *c, size_t max_items)
{
    json_t *all = json_array();
    char *next = NULL, *cur = NULL;
    char first[URL_MAX];
    int rc = 0;
    *out = NULL;
    if (truncated)
        *truncated = 0;
    if (!all)
        return FARM_ENOMEM;

    const char *sep = strchr(c->path, '?') ? "&" : "?";
    if ((size_t)snprintf(first, sizeof first, "%s%sper_page=100", c->path, sep) >= sizeof first) {
        rc = FARM_ETOOBIG;
        farm_error_set("github: URL too long");
        goto out;
    }
    github_call page = *c;
    page.method = "GET";
    page.body = NULL;
    page.repeatable = 1;
    page.path = first;
    size_t bytes = 0;
    for (int n = 0; n < LIST_PAGES_MAX && bytes < LIST_BYTES_MAX; n++) {
        json_t *j = NULL;
        rc = call(&j, &next, a, &page);
        c->status = page.status;
        memcpy(c->message, page.message, sizeof c->message);
        bytes += page.bytes;
        if (rc < 0)
            goto out;
        if (!json_is_array(j)) {
            json_decref(j);
            farm_error_set("github: %s: expected a list", c->path);
            rc = FARM_EIO;
            goto out;
        }
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (json_array_size(all) >= max_items) {
                if (truncated)
                    *truncated = 1;
                json_decref(j);
                goto done;
            }
            json_array_append(all, v);
        }
        json_decref(j);
        if (!next)
            goto done;
        free(cur); /* page.path pointed at it */
        cur = next;
        next = NULL;
        page.path = cur;
    }
    if (truncated)
        *truncated = 1;
done:
    *out = all;
    all = NULL;
out:
    free(next);
    free(cur);
    json_decref(all);
    return rc;
}
