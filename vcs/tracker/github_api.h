/*
 * github_api.h - the GitHub REST transport under github.c (internal to vcs/).
 *
 * One github_api per tracker instance holds what outlives a request: the
 * credentials (a personal access token, or a GitHub App's key with its cached
 * installation tokens), the pacing budget for content-creating requests, the
 * primary rate-limit state, the ETag cache, and the farm's own login. A call
 * turns a method, a path and a JSON body into parsed JSON or a FARM_E* code,
 * with the retry-after slot of tracker.h set for FARM_EAGAIN.
 */
#ifndef FARM_VCS_TRACKER_GITHUB_API_H
#define FARM_VCS_TRACKER_GITHUB_API_H

#include "tracker.h"

#include <jansson.h>
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

#endif
