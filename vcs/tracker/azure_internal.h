/*
 * azure_internal.h - what the Azure DevOps tracker's files share: azure.c
 * (the client, requests, the farm's identity, permissions, the tracker and
 * its ops), azure_workitem.c (work items: comments, reactions, tags,
 * threads) and azure_git.c (pull requests and their comment threads).
 * Never included outside vcs/tracker/azure*.c.
 */
#ifndef FARM_VCS_TRACKER_AZURE_INTERNAL_H
#define FARM_VCS_TRACKER_AZURE_INTERNAL_H

#include "azure.h"

#include "base/buf.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#define AZ_API_COMMENTS  "7.1-preview.4" /* work item comments */
#define AZ_API_REACTIONS "7.1-preview.1" /* work item comment reactions */
#define AZ_API           "7.1"           /* work items and Git */
#define AZ_MAX_PARTS     32              /* comments one body may be split over */
#define AZ_URL_MAX       4096
#define AZ_RESPONSE_MAX  (32u << 20)

typedef struct az_repo {
    char *name;
    char *project;
    char *repository;
    char **allowed; /* NULL-terminated copies */
    size_t nallowed;
} az_repo;

typedef struct az {
    tracker base;
    char *org_url; /* without a trailing slash */
    char *token;
    az_repo *repos;
    size_t nrepos;
    long timeout_ms;
    int max_retries;
    long max_retry_wait_ms;
    size_t max_chars;

    pthread_mutex_t lock; /* guards the identity below */
    char *bot_name;       /* unique name, from the options or connectionData */
    char *bot_id;         /* identity GUID from connectionData, or NULL */
    int bot_known;
} az;

/* Where a ref points: the project and Git repository, URL-escaped, and the
 * configured entry when there is one. */
typedef struct az_loc {
    char project[512];    /* escaped for a path segment */
    char repository[512]; /* escaped; "" when the name has no repository */
    char project_raw[256];
    char repository_raw[256];
    const az_repo *cfg;
} az_loc;

int az_loc_get(az_loc *out, const az *a, const char *repo, int need_git);

/* Percent-escape s for a URL path segment or query value into b. */
int az_escape(buf *b, const char *s);

/* One request. body (may be NULL) is sent as JSON with content type ctype
 * (NULL: application/json). retry_unsafe: a repeat of this POST/PATCH is
 * harmless. On a 2xx answer *out (when out is non-NULL) is the parsed JSON
 * (NULL for an empty body), freed by the caller with json_decref(). Errors
 * are mapped as tracker.h says, with Azure's message in the error slot;
 * *status (may be NULL) is the HTTP status, 0 when none came. */
int az_request(json_t **out, long *status, az *a, const char *method, const char *url,
               const char *ctype, json_t *body, int retry_unsafe);

/* A string member, or NULL. */
const char *az_str(json_t *o, const char *key);
/* An integer member (also from a numeric string), or 0. */
int64_t az_int(json_t *o, const char *key);
/* A heap copy of a string member, or NULL; sets *oom when the copy failed. */
char *az_dup(json_t *o, const char *key, int *oom);

/* 1 when the identity object (createdBy, author) is the farm's own, or when
 * the farm's identity is unknown and cannot be learnt (then any author
 * counts); 0 otherwise. Returns a negative code when asking failed. */
int az_is_bot(az *a, json_t *identity);

/* The part a body's marker for key names (1, 2, ...), or 0 without one. */
int az_marker_part(const char *body, const char *key);

/* Byte length of the longest prefix of s (len bytes, UTF-8) that is at most
 * max_units UTF-16 code units, never inside a sequence. */
size_t az_utf8_prefix(const char *s, size_t len, size_t max_units);

/* azure_workitem.c: the ops on work items and on their comments. */
int az_wi_comment_create(int64_t *out_id, az *a, const tracker_ref *ref, const char *key,
                         const char *body);
int az_wi_comment_update(az *a, const tracker_ref *ref, int64_t id, const char *key,
                         const char *body);
int az_wi_comment_find(int64_t *out_id, az *a, const tracker_ref *ref, const char *key);
int az_wi_react(az *a, const tracker_ref *ref, int64_t comment_id, const char *reaction);
/* Add (add=1) or remove tags; a concurrent edit is read and tried again. */
int az_wi_labels(az *a, const tracker_ref *ref, const char *const *labels, size_t n, int add);
int az_wi_thread_get(tracker_thread **out, az *a, const tracker_ref *ref);

/* azure_git.c: the ops on pull requests and on their conversation. */
int az_pr_comment_create(int64_t *out_id, az *a, const tracker_ref *ref, const char *key,
                         const char *body);
int az_pr_comment_update(az *a, const tracker_ref *ref, int64_t id, const char *key,
                         const char *body);
int az_pr_comment_find(int64_t *out_id, az *a, const tracker_ref *ref, const char *key);
int az_pr_react(az *a, const tracker_ref *ref, int64_t comment_id, const char *reaction);
int az_pr_labels(az *a, const tracker_ref *ref, const char *const *labels, size_t n, int add);
int az_pr_thread_get(tracker_thread **out, az *a, const tracker_ref *ref);
int az_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref, const tracker_pr_spec *spec);
int az_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref, const char *branch);
int az_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number,
                 const tracker_pr_spec *spec);
int az_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                          const tracker_ref *ref, int64_t pr_number);
int az_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref, int64_t pr_number,
                            int64_t comment_id, const char *key, const char *body);

/* azure_ci.c: the builds of a commit and a failed build's log. */
int az_checks_list(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                   const char *branch, const char *sha);
int az_check_log_tail(char **out, tracker *t, const tracker_ref *ref, const tracker_check *c,
                      size_t max_bytes);

/* A PR thread comment's id as one number: thread id and comment id. */
#define AZ_PR_COMMENT_ID(thread, comment) (((int64_t)(thread) << 16) | ((int64_t)(comment)&0xffff))
#define AZ_PR_THREAD_OF(id)               ((id) >> 16)
#define AZ_PR_COMMENT_OF(id)              ((id)&0xffff)

#endif
