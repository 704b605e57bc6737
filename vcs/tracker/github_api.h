/*
 * github_api.h - the GitHub REST transport under github.c (internal to
 * vcs/tracker/), and what the GitHub files share between them.
 *
 * One github_api per tracker instance holds what outlives a request: the
 * credentials (a personal access token, or a GitHub App's key with its cached
 * installation tokens), the pacing budget for content-creating requests, the
 * primary rate-limit state, the ETag cache, and the farm's own login. A call
 * turns a method, a path and a JSON body into parsed JSON or a FARM_E* code,
 * with the retry-after slot of tracker.h set for FARM_EAGAIN.
 *
 * The transport is github_api.c (one request, lists), github_api_auth.c
 * (credentials and the farm's login), github_api_limits.c (pacing and the
 * primary rate limit) and github_api_cache.c (the ETag cache). The tracker
 * ops over it are github.c (the tracker, finding by marker, permissions),
 * github_issue.c (comments, reactions, labels, threads) and github_pr.c (pull
 * requests and review comments). Names those files share but nobody else
 * uses start with gh_; they are declared in the last two parts below.
 */
#ifndef FARM_VCS_TRACKER_GITHUB_API_H
#define FARM_VCS_TRACKER_GITHUB_API_H

#include "tracker.h"

#include "base/http.h"

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct github_api github_api;

/* GitHub refuses comment, PR and review bodies over 65,536 characters; stay
 * one under. */
#define GITHUB_BODY_MAX 65535

/* Copies what it needs from opts. *out is freed with github_api_free(). */
int github_api_new(github_api **out, const tracker_github_opts *opts);
void github_api_free(github_api *a);

typedef struct github_call {
    const char *method;     /* "GET" when NULL */
    const char *path;       /* "/repos/o/r/issues/1" (may carry a query), relative to api_url */
    json_t *body;           /* request JSON (borrowed), or NULL */
    const tracker_ref *ref; /* which repository and installation the call is for */
    int repeatable;         /* a repeat is harmless: let the transport retry 5xx and timeouts */
    buf *raw;               /* when set, a 2xx body is appended here as it came (no JSON, no
                               ETag cache; redirects followed): job logs */
    size_t raw_max;         /* the answer's cap with raw (0: the usual cap) */
    /* filled in by the call */
    long status;       /* HTTP status, 0 when no response arrived */
    size_t bytes;      /* size of the response body (or of the cached one) */
    char message[256]; /* GitHub's "message" (and first error) on a failure */
} github_call;

/* Perform one request. On success (2xx, or 304 answered from the cache)
 * returns 0 and *out is the parsed JSON (NULL for an empty body), freed with
 * json_decref(). Otherwise a FARM_E* code as listed in tracker.h. */
int github_api_call(json_t **out, github_api *a, github_call *c);

/* GET every page of a list (following Link rel="next") into one array of up
 * to max_items elements (and at most 200 pages or 64 MiB of answers);
 * *truncated (may be NULL) says whether more were left. *out is freed with
 * json_decref(). */
int github_api_list(json_t **out, int *truncated, github_api *a, github_call *c, size_t max_items);

/* The login the farm's writes appear under ("farm-bot", "app[bot]"): the
 * configured one, else asked of GitHub once. NULL when unknown (any author
 * then counts). The string lives as long as the api. */
const char *github_api_login(github_api *a, const tracker_ref *ref);

/* Retries, wait cap and backoff that writes with their own duplicate check
 * use between attempts; the backoff sleeps at least what the server asked
 * (tracker_retry_after_ms()), never more than the wait cap. */
int github_api_max_retries(const github_api *a);
long github_api_max_wait_ms(const github_api *a);
void github_api_backoff(const github_api *a, int attempt);

/* Percent-encode a path segment or query value into b. */
int github_api_escape(char *out, size_t n, const char *s);

/* ---- shared by the transport's files (github_api*.c) --------------------- */

#define GH_IDENT_MAX     64  /* cached credentials (installations) */
#define GH_REPO_INST_MAX 256 /* remembered repository -> installation */

/* The monotonic times of the latest content-creating requests, a ring of
 * max(per_minute, per_hour) entries. */
typedef struct gh_pacer {
    int64_t *times;
    size_t cap;
    size_t count; /* entries used, up to cap */
    size_t head;  /* where the next time goes */
    int per_minute;
    int per_hour;
} gh_pacer;

/* One credential: the PAT (installation 0) or one installation's token. */
typedef struct gh_ident {
    int used;
    int64_t installation;
    char *token;              /* NULL until fetched (App) */
    int64_t expires_ms;       /* wall ms; 0 for a PAT */
    int64_t blocked_until_ms; /* primary rate limit spent until then (wall ms) */
    int64_t last_use;         /* for eviction */
} gh_ident;

typedef struct gh_etag_entry {
    char *key; /* "<installation> <url>" */
    char *etag;
    char *body;
    size_t len;
    char *next; /* the page's Link rel="next", or NULL */
    int64_t last_use;
} gh_etag_entry;

typedef struct gh_repo_inst {
    char *repo;
    int64_t installation;
} gh_repo_inst;

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

    const tracker_shared_limits *shared; /* pacing and back-off shared with other
                                            processes, or NULL (tracker.h) */

    pthread_mutex_t mu; /* guards everything below */
    gh_pacer pace;
    gh_ident idents[GH_IDENT_MAX];
    gh_etag_entry *etags;
    size_t netags;
    gh_repo_inst repos[GH_REPO_INST_MAX];
    size_t nrepos;
    int64_t tick; /* LRU clock */
};

/* github_api.c */

/* Send one request with the given Authorization header. installation is the
 * credential's slot for rate-limit bookkeeping (-1: the app JWT); use_cache
 * lets a GET go through the ETag cache. With next non-NULL, *next is the
 * Link rel="next" URL of a list (heap), or NULL. */
int gh_request(json_t **out, char **next, github_api *a, github_call *c, const char *auth,
               int use_cache, int64_t installation);
/* Parse an answer of n bytes (NULL for none); what names it in the error. */
int gh_json_parse(json_t **out, const char *p, size_t n, const char *what);
void gh_sleep_ms(int64_t ms);

/* github_api_auth.c: the credentials. */

/* The slot for an installation (0: the PAT), created when missing; the
 * least recently used one is recycled when all are taken. Under a->mu. */
gh_ident *gh_ident_slot(github_api *a, int64_t installation);
/* A JWT-authenticated call (App endpoints). */
int gh_app_call(json_t **out, github_api *a, github_call *c);
/* The installation for ref: given, remembered, or asked of GitHub. */
int gh_installation_for(int64_t *out, github_api *a, const tracker_ref *ref);
/* An installation token for installation, fresh for at least five minutes
 * (renewed whatever its age with force). *out is freed with free(). */
int gh_installation_token(char **out, github_api *a, int64_t installation, int force);

/* github_api_limits.c: pacing and the primary rate limit. */

int gh_pacer_init(gh_pacer *p, int per_minute, int per_hour);
/* Take one unit of the content-creating budget, waiting up to a second;
 * FARM_EAGAIN with the wait when it takes longer. */
int gh_pace(github_api *a);
/* FARM_EAGAIN (with the wait) while the credential's primary rate limit is
 * spent; method and the shown path name the request in the message. */
int gh_rate_limit_check(github_api *a, int64_t installation, const char *method, const char *shown,
                        int shown_len);
/* Record what a response says about the credential's primary rate limit. */
void gh_rate_limit_note(github_api *a, int64_t installation, const http_response *r);
/* Whether a refusal is a primary or secondary rate limit. */
int gh_rate_limited(const http_response *r, const char *message);

/* github_api_cache.c: the ETag cache. Keys are "<installation> <url>". */

/* The key for a GET of url and, when an entry is cached, the If-None-Match
 * header that asks for it (*inm NULL otherwise). Both freed with free(). */
int gh_etag_condition(char **key, char **inm, github_api *a, int64_t installation, const char *url);
/* Answer a 304 from the entry for key: *out as gh_json_parse() gives it,
 * c->bytes and, with next non-NULL, *next (heap) the page's next link.
 * FARM_ENOTFOUND (no message) when the entry was evicted meanwhile. */
int gh_etag_answer(json_t **out, char **next, github_api *a, github_call *c, const char *key,
                   const char *what);
/* Remember a 2xx answer; a body over the size cap is not kept. */
void gh_etag_store(github_api *a, const char *key, const char *etag, const char *body, size_t len,
                   const char *next);

/* ---- shared by the tracker's files (github.c, github_issue.c, github_pr.c) */

#define GH_MAX_PARTS   16    /* a comment of about a million characters at most */
#define GH_LIST_MAX    10000 /* elements read of one list */
#define GH_PATH_MAX    1024
#define GH_SEGMENT_MAX 768

/* The transport of a GitHub tracker. */
github_api *gh_tracker_api(tracker *t);

/* "owner/name": each half of [A-Za-z0-9._-], so it can go into a path. */
int gh_repo_check(const char *repo);
/* printf into a path buffer; FARM_ETOOBIG when it does not fit. */
int gh_path_fmt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A heap copy of a string member (gh_jstr), of o.user.login (gh_jlogin), or
 * NULL. */
char *gh_jstr(json_t *o, const char *k);
char *gh_jlogin(json_t *o);
/* {"body": text}; FARM_EINVALID when text is not UTF-8. */
int gh_body_json(json_t **out, const char *text);

/* Save and restore the error slot and retry-after around a side lookup. */
typedef struct gh_saved_error {
    char msg[512];
    int64_t retry_after;
} gh_saved_error;
void gh_error_save(gh_saved_error *s);
void gh_error_restore(const gh_saved_error *s);

/* A 5xx: GitHub answered, so the request is over, but it may have been
 * carried out before the error. */
int gh_maybe_done(int rc, const github_call *c);
/* No answer at all (timeout, dropped connection): the request may still be
 * running on GitHub's side and land later, so a look for the marker now
 * proves nothing. The caller gets the error and looks again later (the
 * outbox calls find_by_marker before any retry). */
int gh_no_answer(int rc, const github_call *c);
/* A failure worth trying again inside this call (no long wait asked). */
int gh_worth_retry(int rc, github_api *a);

/* Where a marked body is looked for after an uncertain create. */
typedef struct gh_marker_place {
    int review; /* review comments of PR pr, else the issue's comments */
    int64_t pr;
} gh_marker_place;

/* Find, in a list of comments, the one with the marker for key and part,
 * written by login (any author when login is NULL). 0 when none. */
int64_t gh_marker_in_list(json_t *list, const char *key, int part, const char *login);
/* Every comment of ref's issue (gh_issue_comments) or the review comments of
 * PR pr (gh_review_comments). *out is freed with json_decref(). */
int gh_issue_comments(json_t **out, github_api *a, const tracker_ref *ref);
int gh_review_comments(json_t **out, github_api *a, const tracker_ref *ref, int64_t pr);
/* The id of the farm's comment with key's marker part, or FARM_ENOTFOUND. */
int gh_find_marker(int64_t *out, github_api *a, const tracker_ref *ref,
                   const gh_marker_place *where, const char *key, int part);
/* POST a marked body to path; after an uncertain failure look for the
 * marker before trying again, so nothing is posted twice. */
int gh_post_marked(int64_t *out_id, github_api *a, const tracker_ref *ref, const char *path,
                   const char *text, const gh_marker_place *where, const char *key, int part);

/* github_issue.c: the ops on an issue's (or a PR's) conversation. */
int gh_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                      const char *body);
int gh_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                      const char *body);
int gh_comment_find_by_marker(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key);
int gh_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction);
int gh_labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n);
int gh_labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n);
int gh_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref);

/* github_pr.c: the ops on pull requests and their review comments. */
int gh_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref, const tracker_pr_spec *spec);
int gh_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref, const char *branch);
int gh_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number,
                 const tracker_pr_spec *spec);
int gh_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                          const tracker_ref *ref, int64_t pr_number);
int gh_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref, int64_t pr_number,
                            int64_t comment_id, const char *key, const char *body);

/* github_ci.c: a commit's checks and an Actions job's log. */
int gh_checks_list(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                   const char *branch, const char *sha);
int gh_check_log_tail(char **out, tracker *t, const tracker_ref *ref, const tracker_check *c,
                      size_t max_bytes);

#endif
