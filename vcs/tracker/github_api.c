/*
 * github_api.c - the GitHub REST transport: credentials, pacing, rate limits,
 * conditional GETs and error mapping, under the tracker ops in github.c.
 *
 * Credentials. A personal access token is used as it is. A GitHub App signs
 * an RS256 JWT (iat = now - 60, exp = now + 540, iss = app id) and trades it
 * for an installation token (POST /app/installations/{id}/access_tokens),
 * cached per installation and renewed five minutes before its expires_at; a
 * 401 drops the cached token and the request is tried once more with a new
 * one. Without an installation id in the ref, the repository's installation
 * is looked up once (GET /repos/{repo}/installation) and remembered.
 *
 * Limits. Content-creating requests (everything but GET) are paced per
 * instance under GitHub's secondary limits, by default 80 in any minute and
 * 500 in any hour: the times of the latest ones are kept, so the limits hold
 * over every sliding window (a token bucket would allow twice the burst).
 * When the budget is spent the call waits if that takes under a second and
 * otherwise fails with FARM_EAGAIN and the wait. A
 * response that says the primary rate limit is spent (x-ratelimit-remaining:
 * 0) blocks that credential until x-ratelimit-reset without asking again.
 *
 * Conditional GETs. Each GET remembers its ETag and body (bounded number of
 * entries, bounded entry size, least recently used out first); the next GET
 * of the same URL with the same credential sends If-None-Match, and a 304 is
 * answered from the cache (and does not count against the rate limit).
 */
#include "github_api.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/http.h"
#include "base/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define URL_MAX         4096
#define RESPONSE_MAX    (16u << 20)
#define ETAG_BODY_MAX   (1u << 20) /* larger bodies are not cached */
#define IDENT_MAX       64         /* cached credentials (installations) */
#define REPO_INST_MAX   256        /* remembered repository -> installation */
#define PACE_BLOCK_MS   1000       /* longest wait for the pacing budget inside a call */
#define TOKEN_REFRESH_S 300        /* renew installation tokens this long before expiry */
#define LIST_PAGES_MAX  200
#define LIST_BYTES_MAX  (64u << 20) /* all pages of one list together */

/* The monotonic times of the latest content-creating requests, a ring of
 * max(per_minute, per_hour) entries. */
typedef struct pacer {
    int64_t *times;
    size_t cap;
    size_t count; /* entries used, up to cap */
    size_t head;  /* where the next time goes */
    int per_minute;
    int per_hour;
} pacer;

/* One credential: the PAT (installation 0) or one installation's token. */
typedef struct ident {
    int used;
    int64_t installation;
    char *token;              /* NULL until fetched (App) */
    int64_t expires_ms;       /* wall ms; 0 for a PAT */
    int64_t blocked_until_ms; /* primary rate limit spent until then (wall ms) */
    int64_t last_use;         /* for eviction */
} ident;

typedef struct etag_entry {
    char *key; /* "<installation> <url>" */
    char *etag;
    char *body;
    size_t len;
    char *next; /* the page's Link rel="next", or NULL */
    int64_t last_use;
} etag_entry;

typedef struct repo_inst {
    char *repo;
    int64_t installation;
} repo_inst;

struct github_api {
    char *api_url; /* without a trailing slash */
    char *token;
    long long app_id;
    char *app_key;
    char *login; /* configured or learnt; NULL when unknown */
    int login_asked;
    char *user_agent;
    long timeout_ms;
    int max_retries;
    long max_wait_ms;

    pthread_mutex_t mu; /* guards everything below */
    pacer pace;
    ident idents[IDENT_MAX];
    etag_entry *etags;
    size_t netags;
    repo_inst repos[REPO_INST_MAX];
    size_t nrepos;
    int64_t tick; /* LRU clock */
};

/* ---- small helpers ------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void sleep_ms(int64_t ms)
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
    sleep_ms(d);
}

/* ---- construction ------------------------------------------------------- */

#define PACE_MAX 100000 /* entries: bounds the ring whatever per_hour says */

static int pacer_init(pacer *p, int per_minute, int per_hour)
{
    p->per_minute = per_minute > 0 ? (per_minute < PACE_MAX ? per_minute : PACE_MAX) : 80;
    p->per_hour = per_hour > 0 ? (per_hour < PACE_MAX ? per_hour : PACE_MAX) : 500;
    p->cap = (size_t)(p->per_minute > p->per_hour ? p->per_minute : p->per_hour);
    p->times = calloc(p->cap, sizeof *p->times);
    return p->times ? 0 : FARM_ENOMEM;
}

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
    if ((rc = pacer_init(&a->pace, o->per_minute, o->per_hour)) < 0)
        goto out;
    a->netags = o->etag_cache_entries > 0 ? o->etag_cache_entries : 256;
    if (a->netags > 100000)
        a->netags = 100000;
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
    for (size_t i = 0; i < IDENT_MAX; i++)
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

/* ---- pacing ------------------------------------------------------------- */

/* How long until one more request fits in a window of period_ms that
 * allows limit requests: the limit-th latest must have left the window. */
static int64_t pacer_wait(const pacer *p, int limit, int64_t period_ms, int64_t now)
{
    if ((size_t)limit > p->count)
        return 0;
    int64_t t = p->times[(p->head + p->cap - (size_t)limit) % p->cap];
    int64_t wait = t + period_ms - now;
    return wait > 0 ? wait : 0;
}

/* Take one unit of the content-creating budget, waiting up to a second. */
static int pace(github_api *a)
{
    for (;;) {
        pthread_mutex_lock(&a->mu);
        pacer *p = &a->pace;
        int64_t now = clock_mono_ms();
        int64_t wm = pacer_wait(p, p->per_minute, 60 * 1000, now);
        int64_t wh = pacer_wait(p, p->per_hour, 3600 * 1000, now);
        int64_t wait = wm > wh ? wm : wh;
        if (wait == 0) {
            p->times[p->head] = now;
            p->head = (p->head + 1) % p->cap;
            if (p->count < p->cap)
                p->count++;
        }
        int per_minute = p->per_minute, per_hour = p->per_hour;
        pthread_mutex_unlock(&a->mu);
        if (wait == 0)
            return 0;
        if (wait > PACE_BLOCK_MS) {
            tracker_retry_after_set(wait);
            farm_error_set("github: pacing budget for content-creating requests spent "
                           "(%d a minute, %d an hour); next one in %lld ms",
                           per_minute, per_hour, (long long)wait);
            return FARM_EAGAIN;
        }
        sleep_ms(wait);
    }
}

/* ---- credentials -------------------------------------------------------- */

/* The slot for an installation (0: the PAT), created when missing; the
 * least recently used one is recycled when all are taken. Under a->mu. */
static ident *ident_slot(github_api *a, int64_t installation)
{
    ident *victim = NULL;
    for (size_t i = 0; i < IDENT_MAX; i++) {
        ident *id = &a->idents[i];
        if (id->used && id->installation == installation) {
            id->last_use = ++a->tick;
            return id;
        }
        if (!victim || !id->used || (victim->used && id->last_use < victim->last_use))
            victim = id;
    }
    free(victim->token);
    memset(victim, 0, sizeof *victim);
    victim->used = 1;
    victim->installation = installation;
    victim->last_use = ++a->tick;
    return victim;
}

static int jwt_make(char **out, github_api *a)
{
    char claims[128];
    int64_t now = clock_wall_ms() / 1000;
    snprintf(claims, sizeof claims, "{\"iat\":%lld,\"exp\":%lld,\"iss\":%lld}",
             (long long)(now - 60), (long long)(now + 540), a->app_id);
    return crypto_jwt_rs256(out, a->app_key, claims);
}

/* Parse "2026-11-21T20:00:00Z" into wall ms; 0 when unreadable. */
static int64_t iso_to_ms(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t * 1000;
}

static int request(json_t **out, char **next, github_api *a, github_call *c, const char *auth,
                   int use_cache, int64_t installation);

/* A JWT-authenticated call (App endpoints). */
static int app_call(json_t **out, github_api *a, github_call *c)
{
    char *jwt = NULL, *auth = NULL;
    int rc = jwt_make(&jwt, a);
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", farm_error_last());
        farm_error_set("github: cannot sign the app JWT: %s", why);
        return rc == FARM_ENOMEM ? rc : FARM_EAUTH;
    }
    if (asprintf(&auth, "Authorization: Bearer %s", jwt) < 0) {
        free(jwt);
        return FARM_ENOMEM;
    }
    rc = request(out, NULL, a, c, auth, 0, -1);
    free(auth);
    free(jwt);
    return rc;
}

/* The installation for ref: given, remembered, or asked of GitHub. */
static int installation_for(int64_t *out, github_api *a, const tracker_ref *ref)
{
    *out = 0;
    if (ref && ref->installation_id > 0) {
        *out = ref->installation_id;
        return 0;
    }
    if (!ref || !ref->repo) {
        farm_error_set("github: a GitHub App call needs a repository or an installation id");
        return FARM_EINVALID;
    }
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->nrepos; i++)
        if (strcasecmp(a->repos[i].repo, ref->repo) == 0)
            *out = a->repos[i].installation;
    pthread_mutex_unlock(&a->mu);
    if (*out)
        return 0;

    char path[512];
    snprintf(path, sizeof path, "/repos/%s/installation", ref->repo);
    github_call c = {.method = "GET", .path = path, .repeatable = 1};
    json_t *j = NULL;
    int rc = app_call(&j, a, &c);
    if (rc == FARM_ENOTFOUND) {
        farm_error_set("github: the app is not installed on %s", ref->repo);
        return FARM_EAUTH;
    }
    if (rc < 0)
        return rc;
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    if (id <= 0) {
        farm_error_set("github: no installation id for %s", ref->repo);
        return FARM_EIO;
    }
    pthread_mutex_lock(&a->mu);
    size_t slot = a->nrepos < REPO_INST_MAX ? a->nrepos++ : (size_t)(a->tick++ % REPO_INST_MAX);
    char *copy = strdup(ref->repo);
    if (copy) {
        free(a->repos[slot].repo);
        a->repos[slot].repo = copy;
        a->repos[slot].installation = id;
    } else if (slot == a->nrepos - 1 && !a->repos[slot].repo) {
        a->nrepos--;
    }
    pthread_mutex_unlock(&a->mu);
    *out = id;
    return 0;
}

/* An installation token for installation, fresh for at least five minutes. */
static int installation_token(char **out, github_api *a, int64_t installation, int force)
{
    *out = NULL;
    int64_t now = clock_wall_ms();
    pthread_mutex_lock(&a->mu);
    ident *id = ident_slot(a, installation);
    if (!force && id->token && id->expires_ms - TOKEN_REFRESH_S * 1000 > now)
        *out = strdup(id->token);
    pthread_mutex_unlock(&a->mu);
    if (*out)
        return 0;

    char path[96];
    snprintf(path, sizeof path, "/app/installations/%lld/access_tokens", (long long)installation);
    github_call c = {.method = "POST", .path = path, .repeatable = 1};
    json_t *j = NULL;
    int rc = app_call(&j, a, &c);
    if (rc < 0) {
        if (rc == FARM_EAUTH || rc == FARM_ENOTFOUND)
            rc = FARM_EAUTH;
        return rc;
    }
    const char *tok = json_string_value(json_object_get(j, "token"));
    int64_t exp = iso_to_ms(json_string_value(json_object_get(j, "expires_at")));
    if (!tok || !*tok) {
        json_decref(j);
        farm_error_set("github: installation token answer without a token");
        return FARM_EIO;
    }
    if (exp == 0)
        exp = now + 3600 * 1000;
    /* Not registered with log_secret_add(): nothing here logs a token, and a
     * daemon renewing tokens every hour would fill the logger's fixed table
     * of secrets, which the long-lived ones need. */
    char *mine = strdup(tok), *theirs = strdup(tok);
    json_decref(j);
    if (!mine || !theirs) {
        free(mine);
        free(theirs);
        return FARM_ENOMEM;
    }
    pthread_mutex_lock(&a->mu);
    id = ident_slot(a, installation);
    free(id->token);
    id->token = mine;
    id->expires_ms = exp;
    pthread_mutex_unlock(&a->mu);
    log_debug("github installation token issued", "installation", path);
    *out = theirs;
    return 0;
}

/* ---- the ETag cache ------------------------------------------------------ */

/* Under a->mu. */
static etag_entry *etag_find(github_api *a, const char *key)
{
    for (size_t i = 0; i < a->netags; i++)
        if (a->etags[i].key && strcmp(a->etags[i].key, key) == 0)
            return &a->etags[i];
    return NULL;
}

static void etag_store(github_api *a, const char *key, const char *etag, const char *body,
                       size_t len, const char *next)
{
    if (!etag || len > ETAG_BODY_MAX)
        return;
    char *k = strdup(key), *e = strdup(etag), *b = malloc(len + 1);
    char *nx = next ? strdup(next) : NULL;
    if (!k || !e || !b || (next && !nx)) {
        free(k);
        free(e);
        free(b);
        free(nx);
        return; /* a cache miss later, nothing worse */
    }
    memcpy(b, body, len);
    b[len] = 0;
    pthread_mutex_lock(&a->mu);
    etag_entry *slot = etag_find(a, key);
    if (!slot) {
        slot = &a->etags[0];
        for (size_t i = 0; i < a->netags; i++) {
            if (!a->etags[i].key) {
                slot = &a->etags[i];
                break;
            }
            if (a->etags[i].last_use < slot->last_use)
                slot = &a->etags[i];
        }
    }
    free(slot->key);
    free(slot->etag);
    free(slot->body);
    free(slot->next);
    slot->key = k;
    slot->etag = e;
    slot->body = b;
    slot->next = nx;
    slot->len = len;
    slot->last_use = ++a->tick;
    pthread_mutex_unlock(&a->mu);
}

/* ---- one request --------------------------------------------------------- */

static int json_parse(json_t **out, const char *p, size_t n, const char *what)
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
    if (json_parse(&j, p, n, "error") < 0 || !json_is_object(j)) {
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

static int is_rate_limited(const http_response *r, const char *message)
{
    if (r->status == 429)
        return 1;
    if (r->status != 403)
        return 0;
    return r->ratelimit_remaining == 0 || r->retry_after_ms > 0 ||
           strcasestr(message, "rate limit") != NULL;
}

/* Record what a response says about the credential's primary rate limit. */
static void note_rate_limit(github_api *a, int64_t installation, const http_response *r)
{
    if (installation < 0 || r->ratelimit_remaining != 0 || r->ratelimit_reset <= 0)
        return;
    pthread_mutex_lock(&a->mu);
    ident *id = ident_slot(a, installation);
    id->blocked_until_ms = r->ratelimit_reset * 1000;
    pthread_mutex_unlock(&a->mu);
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

/* Send the request with the given Authorization header. installation is the
 * credential's slot for rate-limit bookkeeping (-1: the app JWT). With next
 * non-NULL, *next is the Link rel="next" URL of a list (heap), or NULL. */
static int request(json_t **out, char **next, github_api *a, github_call *c, const char *auth,
                   int use_cache, int64_t installation)
{
    const char *method = c->method ? c->method : "GET";
    char url[URL_MAX];
    char *key = NULL, *inm = NULL, *body = NULL, *etag = NULL, *link = NULL, *nx = NULL;
    http_response r;
    int rc = 0, have_response = 0;
    *out = NULL;
    if (next)
        *next = NULL;
    c->status = 0;
    c->bytes = 0;
    c->message[0] = 0;

    if (strncmp(c->path, "http://", 7) == 0 || strncmp(c->path, "https://", 8) == 0) {
        /* a pagination link: only ever to the configured API */
        size_t ul = strlen(a->api_url);
        if (strncmp(c->path, a->api_url, ul) != 0 || (c->path[ul] != '/' && c->path[ul] != '?')) {
            farm_error_set("github: refusing to follow a link outside %s", a->api_url);
            return FARM_EIO;
        }
        if (strlen(c->path) >= sizeof url) {
            farm_error_set("github: URL too long");
            return FARM_ETOOBIG;
        }
        snprintf(url, sizeof url, "%s", c->path);
    } else if ((size_t)snprintf(url, sizeof url, "%s%s", a->api_url, c->path) >= sizeof url) {
        farm_error_set("github: URL too long");
        return FARM_ETOOBIG;
    }
    /* the path, for messages: never the query, never a host */
    const char *shown = url + strlen(a->api_url);
    int shown_len = (int)strcspn(shown, "?");

    if (installation >= 0) {
        int64_t now = clock_wall_ms();
        int64_t until = 0;
        pthread_mutex_lock(&a->mu);
        ident *id = ident_slot(a, installation);
        until = id->blocked_until_ms;
        pthread_mutex_unlock(&a->mu);
        if (until > now) {
            tracker_retry_after_set(until - now);
            farm_error_set("github: %s %.*s: rate limit spent until reset in %lld s", method,
                           shown_len, shown, (long long)((until - now + 999) / 1000));
            return FARM_EAGAIN;
        }
    }
    int writes = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    if (writes && installation >= 0 && (rc = pace(a)) < 0)
        return rc;

    if (c->body) {
        body = json_dumps(c->body, JSON_COMPACT);
        if (!body)
            return FARM_ENOMEM;
    }
    if (use_cache && !writes) {
        if (asprintf(&key, "%lld %s", (long long)installation, url) < 0) {
            key = NULL;
            rc = FARM_ENOMEM;
            goto out;
        }
        pthread_mutex_lock(&a->mu);
        etag_entry *e = etag_find(a, key);
        if (e && asprintf(&inm, "If-None-Match: %s", e->etag) < 0)
            inm = NULL;
        pthread_mutex_unlock(&a->mu);
    }

    const char *headers[8];
    size_t nh = 0;
    headers[nh++] = "Accept: application/vnd.github+json";
    headers[nh++] = "X-GitHub-Api-Version: 2022-11-28";
    headers[nh++] = a->user_agent;
    headers[nh++] = auth;
    if (body)
        headers[nh++] = "Content-Type: application/json";
    if (inm)
        headers[nh++] = inm;
    headers[nh] = NULL;

    http_request req = HTTP_REQUEST_INIT;
    req.method = method;
    req.url = url;
    req.headers = headers;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.timeout_ms = a->timeout_ms;
    req.connect_timeout_ms = a->timeout_ms < 5000 ? a->timeout_ms : 5000;
    req.max_retries = a->max_retries;
    req.retry_unsafe = c->repeatable;
    req.max_retry_wait_ms = a->max_wait_ms;
    req.max_response = RESPONSE_MAX;
    rc = http_do(&r, &req);
    have_response = 1;
    if (rc < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", farm_error_last());
        farm_error_set("github: %s %.*s: %s", method, shown_len, shown, why);
        if (rc == FARM_EIO || rc == FARM_ETIMEOUT)
            tracker_retry_after_set(0);
        goto out;
    }
    c->status = r.status;
    note_rate_limit(a, installation, &r);

    if (r.status == 304 && key) {
        pthread_mutex_lock(&a->mu);
        etag_entry *e = etag_find(a, key);
        int cached = e != NULL;
        if (e) {
            e->last_use = ++a->tick;
            c->bytes = e->len;
            rc = json_parse(out, e->body, e->len, shown);
            if (rc == 0 && next && e->next && !(*next = strdup(e->next)))
                rc = FARM_ENOMEM;
        }
        pthread_mutex_unlock(&a->mu);
        if (!cached) /* evicted meanwhile by another thread: ask again, unconditionally */
            rc = request(out, next, a, c, auth, 0, installation);
        goto out;
    }
    if (r.status >= 200 && r.status < 300) {
        c->bytes = r.body.len;
        rc = json_parse(out, r.body.data ? r.body.data : "", r.body.len, shown);
        if (rc < 0)
            goto out;
        if ((link = http_response_header(&r, "Link")) != NULL)
            nx = link_next(link);
        if (key && (etag = http_response_header(&r, "ETag")) != NULL)
            etag_store(a, key, etag, r.body.data ? r.body.data : "", r.body.len, nx);
        if (next) {
            *next = nx;
            nx = NULL;
        }
        goto out;
    }

    error_message(c, r.body.data ? r.body.data : "", r.body.len);
    if (r.status == 401) {
        rc = FARM_EAUTH;
    } else if (is_rate_limited(&r, c->message)) {
        int64_t wait = r.retry_after_ms;
        if (wait <= 0 && r.ratelimit_remaining == 0 && r.ratelimit_reset > 0)
            wait = r.ratelimit_reset * 1000 - clock_wall_ms();
        if (wait <= 0)
            wait = 60 * 1000; /* a secondary limit without a hint: GitHub says a minute */
        tracker_retry_after_set(wait);
        rc = FARM_EAGAIN;
    } else if (r.status == 403) {
        rc = FARM_EAUTH;
    } else if (r.status == 404 || r.status == 410) {
        rc = FARM_ENOTFOUND;
    } else if (r.status == 409) {
        rc = FARM_ECONFLICT;
    } else if (r.status == 422 || r.status == 400) {
        rc = FARM_EINVALID;
    } else if (r.status >= 500) {
        tracker_retry_after_set(r.retry_after_ms);
        rc = FARM_EAGAIN;
    } else {
        rc = FARM_ERROR;
    }
    farm_error_set("github: %s %.*s: %ld %s", method, shown_len, shown, r.status,
                   c->message[0] ? c->message : "(no message)");
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
    free(nx);
    free(link);
    free(etag);
    free(key);
    free(inm);
    free(body);
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
        int rc = request(out, next, a, c, auth, 1, 0);
        free(auth);
        return rc;
    }

    int64_t installation;
    int rc = installation_for(&installation, a, c->ref);
    if (rc < 0)
        return rc;
    for (int attempt = 0;; attempt++) {
        char *tok = NULL, *auth = NULL;
        if ((rc = installation_token(&tok, a, installation, attempt > 0)) < 0)
            return rc;
        if (asprintf(&auth, "Authorization: Bearer %s", tok) < 0) {
            free(tok);
            return FARM_ENOMEM;
        }
        rc = request(out, next, a, c, auth, 1, installation);
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

const char *github_api_login(github_api *a, const tracker_ref *ref)
{
    pthread_mutex_lock(&a->mu);
    int asked = a->login_asked;
    pthread_mutex_unlock(&a->mu);
    if (asked)
        return a->login;

    json_t *j = NULL;
    char *login = NULL;
    int rc;
    if (a->app_id) {
        github_call c = {.method = "GET", .path = "/app", .repeatable = 1};
        rc = app_call(&j, a, &c);
        const char *slug = json_string_value(json_object_get(j, "slug"));
        if (rc == 0 && slug && asprintf(&login, "%s[bot]", slug) < 0)
            login = NULL;
    } else {
        github_call c = {.method = "GET", .path = "/user", .ref = ref, .repeatable = 1};
        rc = github_api_call(&j, a, &c);
        const char *l = json_string_value(json_object_get(j, "login"));
        if (rc == 0 && l)
            login = strdup(l);
    }
    json_decref(j);
    /* a refusal will not change by asking again; a transient failure may */
    int settled = login != NULL || rc == FARM_EAUTH || rc == FARM_ENOTFOUND;
    pthread_mutex_lock(&a->mu);
    int first = !a->login_asked;
    if (first && settled) {
        a->login = login;
        a->login_asked = 1;
        login = NULL;
    }
    const char *res = a->login;
    pthread_mutex_unlock(&a->mu);
    free(login);
    if (!res && first)
        log_warn("github: cannot tell the farm's own login (set github.bot_login); markers from "
                 "any author count",
                 "error", farm_error_last());
    return res;
}
