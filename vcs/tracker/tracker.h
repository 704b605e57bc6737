/*
 * tracker.h - the one interface the farm uses to talk back to a tracker.
 *
 * Everything above vcs/ that writes to GitHub, Azure DevOps or the local
 * tracker goes through these functions: comments (create, update in place,
 * find again after a crash), reactions, labels, reading an issue thread,
 * pull requests, review comments and replies, and a user's permission. Each
 * tracker is one file (github.c, azure.c, local.c) that fills in a
 * tracker_ops table; callers only see the opaque `tracker`.
 *
 * Idempotency. Every call that writes a body takes an idempotency key and
 * puts a hidden marker `<!-- farm:KEY -->` at the end of that body, so
 * tracker_comment_find_by_marker(KEY) finds what was already posted before a
 * crash. A body longer than the tracker's limit is split over several
 * comments; part i > 1 carries the marker `KEY#i` and every part says
 * "(part i of n)". Keys are 1..200 characters of [A-Za-z0-9._:/=+@-], without
 * "--" (it would end the HTML comment) and without '#' (reserved for parts).
 * Labels and reactions are idempotent by nature and take no key.
 *
 * Errors (negative codes from base/error.h, message in farm_error_last()):
 *   FARM_EAGAIN    rate limit, 429, 5xx after retries, or this instance's
 *                  pacing budget spent; tracker_retry_after_ms() says how long
 *                  to wait before trying again (0 when the tracker gave no hint)
 *   FARM_EAUTH     401, or 403 that is not a rate limit (no permission)
 *   FARM_ENOTFOUND 404 (repository, issue, comment or PR does not exist)
 *   FARM_EINVALID  422 or bad arguments (a malformed key, an empty repo)
 *   FARM_ETIMEOUT  the tracker did not answer in time
 *   FARM_EIO       connection failed, or an answer that does not parse
 *   FARM_ETOOBIG   a body or a response over its size cap
 *
 * Thread-safety: one tracker may be used from several threads at once.
 */
#ifndef FARM_VCS_TRACKER_TRACKER_H
#define FARM_VCS_TRACKER_TRACKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tracker tracker;

/* What a call is about. */
typedef struct tracker_ref {
    const char *repo;        /* "owner/name" (GitHub), "org/project/repo" or "org/project"
                                (Azure), the configured name (local) */
    int64_t number;          /* the issue / work item; for PR calls, the issue the PR resolves
                                (0 when none) */
    int is_pr;               /* number names a pull request: comment calls then act on the PR's
                                conversation (Azure: PR threads instead of work item comments) */
    int64_t installation_id; /* GitHub App: the installation from the delivery; 0 otherwise */
} tracker_ref;

#define TRACKER_REF_INIT                                                                           \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* A user's access to a repository. */
typedef enum {
    TRACKER_PERM_NONE = 0,
    TRACKER_PERM_READ,  /* read, triage */
    TRACKER_PERM_WRITE, /* write, maintain */
    TRACKER_PERM_ADMIN,
} tracker_permission;

const char *tracker_permission_name(tracker_permission p);

/* One comment of an issue thread. Strings are heap copies owned by the
 * enclosing tracker_thread. */
typedef struct tracker_comment {
    int64_t id;
    char *author;     /* login / unique name */
    char *body;       /* Markdown (GitHub) or HTML (Azure), as the tracker stores it */
    char *created_at; /* RFC 3339, as the tracker gives it */
    char *updated_at; /* RFC 3339, or NULL when never edited / not reported */
    char *url;        /* human URL, or NULL */
} tracker_comment;

/* An issue (or PR conversation) with all its comments, oldest first. */
typedef struct tracker_thread {
    int64_t number;
    char *title;
    char *body;
    char *author;
    char *state; /* "open", "closed" (tracker-neutral) */
    char *url;
    char *created_at;
    char **labels; /* NULL-terminated, may be NULL */
    size_t nlabels;
    tracker_comment *comments;
    size_t ncomments;
    int truncated; /* the thread had more comments than the cap; the newest were kept */
} tracker_thread;

/* Release a thread and everything in it; NULL is fine. */
void tracker_thread_free(tracker_thread *th);

/* What to put in a pull request. For tracker_pr_update() a NULL field is
 * left as it is. */
typedef struct tracker_pr_spec {
    const char *key; /* idempotency key; its marker goes into the body */
    const char *title;
    const char *body;        /* Markdown; the tracker adds the link to the issue (GitHub:
                                "Fixes #N"; Azure: a work item link). A body over the tracker's
                                limit is truncated with a note saying so */
    const char *head_branch; /* the farm's branch ("farm/12-fix-typo"); create only */
    const char *base_branch; /* "main"; create only */
    int draft;               /* create only */
} tracker_pr_spec;

#define TRACKER_PR_SPEC_INIT                                                                       \
    {                                                                                              \
        NULL, NULL, NULL, NULL, NULL, 0                                                            \
    }

typedef struct tracker_pr {
    int64_t number; /* the PR number (Azure: pull request id) */
    char *url;      /* human URL */
    char *state;    /* "open", "closed" or "merged" */
    char *title;
    char *body;
    char *head_branch;
    char *base_branch;
    char *author;
} tracker_pr;

/* Release a PR; NULL is fine. */
void tracker_pr_free(tracker_pr *pr);

/* An inline review comment on a PR. */
typedef struct tracker_review_comment {
    int64_t id;
    char *path; /* file, or NULL for a comment on the whole PR */
    int line;   /* line in the new version, 0 when none */
    char *body;
    char *author;
    char *created_at;
    int64_t in_reply_to; /* the comment this one answers, 0 for the first of a thread */
} tracker_review_comment;

/* Release an array of n review comments; NULL is fine. */
void tracker_review_comments_free(tracker_review_comment *rc, size_t n);

/*
 * The calls. Outputs first, written only on success; all strings the caller
 * passes are only borrowed. Before each call the per-thread retry-after slot
 * is cleared.
 */

/* Post a comment with the marker for `key`. *out_id is the id of the
 * comment (the first part when the body was split). A 5xx is retried only
 * after checking that the comment did not land anyway. FARM_ETIMEOUT or
 * FARM_EIO means no answer came and the comment may still appear later.
 * So before any retry (after an error or a crash), call
 * tracker_comment_find_by_marker() and, when found,
 * tracker_comment_update() with that id to complete any missing parts. */
int tracker_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                           const char *body);

/* Replace the body of comment `id` (posted with `key`). When the new body
 * needs more parts than before, the missing ones are created (or found by
 * their markers and updated); parts no longer needed are deleted. */
int tracker_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                           const char *body);

/* Find the comment carrying the marker for `key` (the first part) by reading
 * every page of the thread. Only comments by the farm's own identity count
 * when the tracker knows it. FARM_ENOTFOUND when there is none. */
int tracker_comment_find_by_marker(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                   const char *key);

/* React to a comment (comment_id > 0) or to the issue itself (0). reaction is
 * one of "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket",
 * "eyes"; a tracker without that reaction returns FARM_EUNSUPPORTED. Reacting
 * twice is harmless. */
int tracker_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction);

/* Add labels (tags on Azure) to the issue; ones already there stay. */
int tracker_labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n);

/* Remove labels; removing one that is not there is not an error. */
int tracker_labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n);

/* Read the issue (ref->number) with every comment, oldest first. *out is
 * freed by the caller with tracker_thread_free(). */
int tracker_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref);

/* Open a pull request from spec->head_branch into spec->base_branch that
 * resolves issue ref->number. *out is freed with tracker_pr_free(). An open PR
 * for the branch already there: FARM_EEXISTS (use tracker_pr_find_by_branch). */
int tracker_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref,
                      const tracker_pr_spec *spec);

/* The pull request whose head is `branch` (the open one when there are
 * several, else the newest). FARM_ENOTFOUND when none. *out is freed with
 * tracker_pr_free(). */
int tracker_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref,
                              const char *branch);

/* Change a pull request's title and/or body (NULL fields stay). */
int tracker_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number,
                      const tracker_pr_spec *spec);

/* Every inline review comment of PR pr_number, oldest first. *out is an
 * array of *n freed with tracker_review_comments_free(). */
int tracker_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                               const tracker_ref *ref, int64_t pr_number);

/* Reply to review comment comment_id on PR pr_number, with the marker for
 * `key`. *out_id (may be NULL) is the reply's id. */
int tracker_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                 int64_t pr_number, int64_t comment_id, const char *key,
                                 const char *body);

/* What `user` may do on ref->repo. */
int tracker_permission_get(tracker_permission *out, tracker *t, const tracker_ref *ref,
                           const char *user);

/*
 * The tracker's CI (the CI fix loop, farm/intake/ci.c and farm/run): the
 * checks on one commit and the end of a failing one's log.
 */

/* Where one check stands. Neutral and skipped checks count as passed; a
 * cancelled or stale one as skipped (nobody's code failed). */
typedef enum {
    TRACKER_CHECK_PENDING = 0, /* queued, waiting or in progress */
    TRACKER_CHECK_PASSED,
    TRACKER_CHECK_FAILED,
    TRACKER_CHECK_SKIPPED,
} tracker_check_state;

/* One check on a commit: a GitHub check run or commit status, an Azure
 * DevOps build. Strings are heap copies freed by tracker_checks_free(). */
typedef struct tracker_check {
    char *name; /* "build / test (ubuntu)", a status context, a definition */
    tracker_check_state state;
    char *conclusion; /* the tracker's own word ("failure", "timed_out", "failed") */
    char *url;        /* human URL, or NULL */
    char *summary;    /* a status's description, a check run's output title, or NULL */
    int64_t log_id;   /* GitHub Actions: the job id; Azure: the build id; 0: no log */
} tracker_check;

void tracker_checks_free(tracker_check *v, size_t n);

/* The checks on commit sha of ref->repo (branch: the branch that commit
 * heads, which Azure DevOps lists builds by). For several runs of one check
 * only the newest counts. *out is an array of *n freed with
 * tracker_checks_free(). FARM_EUNSUPPORTED on the local tracker. */
int tracker_checks_list(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                        const char *branch, const char *sha);

/* The end of check c's log (c from tracker_checks_list(), c->log_id > 0):
 * at most max_bytes, starting at a line and never inside a UTF-8 sequence
 * (tracker_text_tail()). *out is a heap string freed by the caller.
 * FARM_ENOTFOUND when the check has no log (expired, not an Actions job). */
int tracker_check_log_tail(char **out, tracker *t, const tracker_ref *ref, const tracker_check *c,
                           size_t max_bytes);

/* The last max_bytes of text (len bytes) or less: cut at the first line
 * start after the cut (unless no line starts in the kept part), never inside
 * a UTF-8 sequence, with NUL bytes and carriage returns dropped. A heap
 * string freed by the caller; NULL on ENOMEM. */
char *tracker_text_tail(const char *text, size_t len, size_t max_bytes);

/* "github", "azure" or "local". */
const char *tracker_name(const tracker *t);

/* Release a tracker; NULL is fine. */
void tracker_free(tracker *t);

/* The wait, in ms, that the last call on this thread asked for when it
 * returned FARM_EAGAIN; 0 when it gave no hint or did not fail that way. */
int64_t tracker_retry_after_ms(void);

/*
 * GitHub (github.c): REST v3 at a configurable base URL, with a personal
 * access token or as a GitHub App (installation tokens made from an RS256
 * JWT, cached and refreshed before they expire).
 */
/* Limits several processes share (farm nodes on one store): when a client
 * has one, its write pacing and its rate-limit back-off are asked of it, so
 * N processes together keep to the configured rate; without one (or when a
 * hook fails) the client keeps them in the process alone. The hooks are
 * called from any thread; key names the budget ("github <api_url>" for the
 * pacing, "github <api_url> <installation>" for a credential's back-off). */
typedef struct tracker_shared_limits {
    /* Take one content-creating request's place in the windows (per_minute
     * in any 60 s, per_hour in any hour): *wait_ms is 0 when taken, else
     * how long until one fits (nothing taken). Returns 0 or an error. */
    int (*pace)(void *arg, int64_t *wait_ms, const char *key, int per_minute, int per_hour);
    /* *until_ms: the wall time key's back-off ends (0 or past: none). */
    int (*blocked_get)(void *arg, int64_t *until_ms, const char *key);
    /* Back key off until until_ms (a later back-off recorded stays). */
    int (*blocked_set)(void *arg, const char *key, int64_t until_ms);
    void *arg;
} tracker_shared_limits;

typedef struct tracker_github_opts {
    const char *api_url;         /* default "https://api.github.com" */
    const char *token;           /* personal access token, or NULL with an App */
    long long app_id;            /* GitHub App id (with app_private_key), 0 without */
    const char *app_private_key; /* PEM */
    const char *bot_login;       /* the farm's login: find_by_marker only trusts its comments.
                                    NULL: any author */
    const char *user_agent;      /* default "farm/<version>" */
    long timeout_ms;             /* per request, default 30000 */
    int max_retries;             /* per request on 5xx/429/transport errors, default 3 */
    long max_retry_wait_ms;      /* longest wait slept through inside a call, default 1000;
                                    longer ones become FARM_EAGAIN */
    int per_minute;              /* content-creating requests in any minute, default 80 */
    int per_hour;                /* ... and in any hour, default 500 */
    size_t etag_cache_entries;   /* conditional-GET cache size, default 256 (0: default) */
    const tracker_shared_limits *shared; /* NULL: limits kept in this process; else it
                                            must outlive the client */
} tracker_github_opts;

#define TRACKER_GITHUB_OPTS_INIT                                                                   \
    {                                                                                              \
        NULL, NULL, 0, NULL, NULL, NULL, 30000, 3, 1000, 80, 500, 256, NULL                        \
    }

/* A GitHub tracker. Needs a token or an app id with a private key. The
 * options' strings are copied. *out is freed with tracker_free(). */
int tracker_github_new(tracker **out, const tracker_github_opts *opts);

/*
 * For implementations only (github.c, azure.c, local.c): each embeds
 * `tracker base;` as its first member and points base.ops at its table.
 * The public functions above check arguments (keys, refs) and clear the
 * retry-after slot before calling an op, so ops may assume valid input.
 */
typedef struct tracker_ops {
    const char *name;
    int (*comment_create)(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                          const char *body);
    int (*comment_update)(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                          const char *body);
    int (*comment_find_by_marker)(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                  const char *key);
    int (*react)(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction);
    int (*labels_add)(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n);
    int (*labels_remove)(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n);
    int (*thread_get)(tracker_thread **out, tracker *t, const tracker_ref *ref);
    int (*pr_create)(tracker_pr **out, tracker *t, const tracker_ref *ref,
                     const tracker_pr_spec *spec);
    int (*pr_find_by_branch)(tracker_pr **out, tracker *t, const tracker_ref *ref,
                             const char *branch);
    int (*pr_update)(tracker *t, const tracker_ref *ref, int64_t pr_number,
                     const tracker_pr_spec *spec);
    int (*pr_review_comments)(tracker_review_comment **out, size_t *n, tracker *t,
                              const tracker_ref *ref, int64_t pr_number);
    int (*review_comment_reply)(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                int64_t pr_number, int64_t comment_id, const char *key,
                                const char *body);
    int (*permission_get)(tracker_permission *out, tracker *t, const tracker_ref *ref,
                          const char *user);
    void (*free)(tracker *t);
    int (*checks_list)(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                       const char *branch, const char *sha);
    int (*check_log_tail)(char **out, tracker *t, const tracker_ref *ref, const tracker_check *c,
                          size_t max_bytes);
} tracker_ops;

struct tracker {
    const tracker_ops *ops;
};

/* Record the wait for tracker_retry_after_ms() (call before returning
 * FARM_EAGAIN). */
void tracker_retry_after_set(int64_t ms);

/* Check an idempotency key (rules above). 0 or FARM_EINVALID. */
int tracker_key_check(const char *key);

/* The marker for key and part (1 for the first part, which has no suffix):
 * "<!-- farm:KEY -->" or "<!-- farm:KEY#2 -->". Heap string, freed by the
 * caller; NULL on ENOMEM. */
char *tracker_marker(const char *key, int part);

/* 1 when body carries the marker for key and part, 0 otherwise. */
int tracker_body_has_marker(const char *body, const char *key, int part);

/* The number of parts a body with that marker says it belongs to ("(part i
 * of n)"), or 1 when it does not say. */
int tracker_body_part_count(const char *body);

/* Split a body for a tracker whose comments hold at most max_units UTF-16
 * code units (GitHub: 65535), adding the markers and, when there are several
 * parts, a "(part i of n)" line to each. Cuts prefer a line break and never
 * fall inside a UTF-8 sequence. *out is a NULL-terminated array of *n heap
 * strings, freed with tracker_parts_free(). FARM_ETOOBIG when it would take
 * more than max_parts comments; FARM_EINVALID for a body that is not UTF-8. */
int tracker_body_split(char ***out, size_t *n, const char *key, const char *body, size_t max_units,
                       size_t max_parts);

void tracker_parts_free(char **parts);

/* Length of a UTF-8 string in UTF-16 code units; -1 when it is not UTF-8. */
long tracker_utf16_len(const char *s, size_t len);

#endif
