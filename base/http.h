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

/* ---- streaming -------------------------------------------------------------
 *
 * http_stream() sends one request through the same client as http_do() (the
 * same pool, timeouts, TLS and Unix-socket settings) but hands the answer over
 * as it arrives instead of keeping it: on_head once, with the final status and
 * the raw headers ("Name: value\r\n"...), then on_data for each piece libcurl
 * reads, in order and as received (no Accept-Encoding is sent and nothing is
 * decoded, so the bytes are the server's). Where it differs from http_do():
 * - redirects are not followed: a 3xx is an answer like any other (following
 *   one would carry the request's credentials wherever it points);
 * - a status is never retried: the first answer is the answer. Transport
 *   errors are retried by http_do()'s rules, and only while on_head has not
 *   been called; once it has, nothing is repeated;
 * - idle_timeout_ms ends a transfer on which nothing arrived for that long,
 *   besides req->timeout_ms for the whole attempt (both FARM_ETIMEOUT);
 * - req->max_response counts the bytes handed to on_data (FARM_ETOOBIG).
 * Callbacks run on the calling thread; a non-zero return from any of them
 * stops the transfer and http_stream() returns that value. */
typedef struct http_stream_handler {
    int (*on_head)(void *ctx, long status, const char *headers);
    int (*on_data)(void *ctx, const char *p, size_t n);
    int (*on_tick)(void *ctx); /* optional; called at least every 50 ms while the transfer runs
                                  and after each piece, so a caller can stop a quiet transfer */
    void *ctx;
    long idle_timeout_ms; /* 0: none */
} http_stream_handler;

typedef struct http_stream_result {
    long status;           /* the status given to on_head, 0 when none came */
    int attempts;          /* how many attempts were made */
    int64_t head_ns;       /* from the call to the response head (CLOCK_MONOTONIC), 0 when none */
    int64_t first_byte_ns; /* from the call to the first body byte, 0 when none */
    uint64_t bytes;        /* body bytes handed to on_data */
} http_stream_result;

/* Returns 0 when the whole answer was handed over (whatever its status), the
 * non-zero value a callback returned, or FARM_ETIMEOUT, FARM_EIO (no
 * connection, or it broke mid-answer), FARM_ETOOBIG, FARM_ECANCELLED
 * (req->cancel), FARM_EINVALID, FARM_ENOMEM. *out is filled in every case and
 * holds nothing to free. */
int http_stream(http_stream_result *out, const http_request *req, const http_stream_handler *h);

/* Call once at start-up, before any thread uses http_do(). Idempotent and
 * thread-safe (http_do() calls it too); returns 0, FARM_ERROR or FARM_ENOMEM. */
int http_global_init(void);

/* Release libcurl's global state and the idle connections. Only at exit, once
 * no thread uses http_do() any more; http_do() must not be called after it. */
void http_global_cleanup(void);

#endif
