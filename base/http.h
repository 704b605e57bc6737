/*
 * http.h - the one HTTP client (libcurl underneath).
 *
 * Trackers and every other outbound caller go through http_do(); nothing else
 * in the farm talks to libcurl. It owns timeouts, retries with exponential
 * backoff and jitter, Retry-After and x-ratelimit-* headers, and the response
 * size cap. Thread-safe: each call uses its own easy handle (connections are
 * reused through a pool of idle handles; DNS and TLS sessions are shared).
 *
 * Details callers may rely on:
 * - timeouts apply to each attempt; retries add attempts and backoff sleeps;
 * - which attempts repeat: transport errors (connect, timeout, reset), 429,
 *   500, 502, 503, 504, and a 403 that is a rate limit (Retry-After, or
 *   x-ratelimit-remaining: 0); for GET, HEAD, PUT, DELETE always, for other
 *   methods only with retry_unsafe, except a connection that was never made
 *   (refused, DNS), which is repeated for any method since nothing was sent;
 * - redirects are followed (at most 5, http and https only);
 * - "User-Agent: farm/<version>" is sent unless a User-Agent header is given;
 *   no "Expect: 100-continue" is sent unless asked for; headers with CR or LF
 *   are refused (FARM_EINVALID);
 * - the response body is decoded (gzip etc.) and the cap counts decoded bytes;
 *   on FARM_ETOOBIG the body holds what arrived up to the cap, never more.
 */
#ifndef FARM_BASE_HTTP_H
#define FARM_BASE_HTTP_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct http_request {
    const char *method; /* "GET" when NULL */
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    const char *basic_user; /* basic auth when set (password in basic_password) */
    const char *basic_password;
    long connect_timeout_ms;    /* default 5000 */
    long timeout_ms;            /* whole request, default 30000 */
    int max_retries;            /* extra attempts on transport errors, 429 and 5xx; default 3 */
    int retry_unsafe;           /* also retry non-idempotent methods (POST, PATCH); the caller
                                   vouches that a repeat is harmless (idempotency key) */
    long max_retry_wait_ms;     /* longest Retry-After or backoff to sleep through inside
                                   http_do; a longer one returns the response with
                                   retry_after_ms set for the caller to reschedule. Default 10000 */
    size_t max_response;        /* response body cap, default 32 MiB; over it: FARM_ETOOBIG */
    const volatile int *cancel; /* when non-NULL and it becomes non-zero, stop (FARM_ECANCELLED) */
    const char *unix_socket;    /* connect through this Unix socket instead (tests, proxies) */
} http_request;

#define HTTP_REQUEST_INIT                                                                          \
    {                                                                                              \
        NULL, NULL, NULL, NULL, 0, NULL, NULL, 5000, 30000, 3, 0, 10000, 32u << 20, NULL, NULL     \
    }

typedef struct http_response {
    long status;              /* HTTP status of the last attempt */
    buf body;                 /* the response body, NUL-terminated */
    char *headers;            /* raw response headers of the last attempt, "Name: value\r\n"... */
    int attempts;             /* how many attempts were made */
    int64_t retry_after_ms;   /* > 0 when the server asked to wait (Retry-After, or a rate limit
                                 exhausted until x-ratelimit-reset); 0 otherwise */
    long ratelimit_remaining; /* x-ratelimit-remaining, or -1 when absent */
    int64_t ratelimit_reset;  /* x-ratelimit-reset (epoch seconds), or 0 when absent */
} http_response;

/* Perform a request. Returns 0 when a response arrived, whatever its status
 * (check out->status), or a negative code when none did after the retries:
 * FARM_ETIMEOUT, FARM_EIO (connection failed), FARM_ETOOBIG (body over the
 * cap), FARM_ECANCELLED, FARM_EINVALID (bad request). *out must be released
 * with http_response_free() in every case. */
int http_do(http_response *out, const http_request *req);

/* The value of a response header (case-insensitive name), copied into a
 * heap string the caller frees, or NULL when absent. */
char *http_response_header(const http_response *r, const char *name);

void http_response_free(http_response *r);

/* Call once at start-up, before any thread uses http_do(). Idempotent and
 * thread-safe (http_do() calls it too); returns 0, FARM_ERROR or FARM_ENOMEM. */
int http_global_init(void);

/* Release libcurl's global state and the idle connections. Only at exit, once
 * no thread uses http_do() any more; http_do() must not be called after it. */
void http_global_cleanup(void);

#endif
