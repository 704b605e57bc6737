/*
 * test_http.c - the HTTP client against servers started inside the test:
 * libmicrohttpd on 127.0.0.1 for scripted answers, a listening socket that
 * never answers (a hanging server), a closed port (connection refused) and a
 * one-shot server on a Unix socket. http_stream() is tested against the same
 * servers and a raw one that answers from a script (pieces, pauses, hang-up).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BIG_BYTES     (1 << 20)
#define CHUNKED_BYTES (64 << 20) /* far more than loopback socket buffers hold */

static struct MHD_Daemon *daemon_;
static int port;
static atomic_int hits;
static atomic_long chunked_sent;
static char *big_body;
static char base_url[64];

/* ---- the scripted server -------------------------------------------------- */

typedef struct upload {
    char *data;
    size_t len;
} upload;

static void http_date(char *out, size_t n, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static ssize_t chunked_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    if (pos >= CHUNKED_BYTES)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = max > 4096 ? 4096 : max;
    memset(out, 'c', n);
    atomic_fetch_add(&chunked_sent, (long)n);
    return (ssize_t)n;
}

/* /pieces: "piece-0\n" ... "piece-4\n", 60 ms apart, in a chunked answer. */
static ssize_t pieces_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    uint64_t i = pos / 8;
    if (i >= 5)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (i > 0)
        usleep(60 * 1000);
    char piece[9];
    snprintf(piece, sizeof piece, "piece-%d\n", (int)i);
    size_t n = max < 8 ? max : 8;
    memcpy(out, piece, n);
    return (ssize_t)n;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             const char *const *headers)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    for (const char *const *h = headers; h && h[0]; h += 2)
        MHD_add_response_header(r, h[0], h[1]);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *hdr(struct MHD_Connection *c, const char *name)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    return v ? v : "(none)";
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    if (!*con_cls) {
        *con_cls = calloc(1, sizeof(upload));
        return MHD_YES;
    }
    upload *u = *con_cls;
    if (*upload_data_size) {
        u->data = realloc(u->data, u->len + *upload_data_size + 1);
        memcpy(u->data + u->len, upload_data, *upload_data_size);
        u->len += *upload_data_size;
        u->data[u->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }
    int n = atomic_fetch_add(&hits, 1) + 1;
    char tmp[128], tmp2[64];

    if (!strcmp(url, "/ok")) {
        const char *h[] = {"X-Custom",   "yes", "x-ratelimit-remaining", "42", "X-RateLimit-Reset",
                           "1700000000", NULL};
        return reply(c, 200, "hello", h);
    }
    if (!strcmp(url, "/big")) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(BIG_BYTES, big_body, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strcmp(url, "/bigchunked")) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, chunked_reader, NULL, NULL);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strcmp(url, "/pieces")) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, pieces_reader, NULL, NULL);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strcmp(url, "/redirect")) {
        const char *h[] = {"Location", "/ok", NULL};
        return reply(c, 302, "moved", h);
    }
    if (!strcmp(url, "/flaky")) {
        const char *h1[] = {"X-Attempt", "1", NULL};
        const char *h2[] = {"X-Attempt", "2", NULL};
        return n == 1 ? reply(c, 503, "busy", h1) : reply(c, 200, "recovered", h2);
    }
    if (!strcmp(url, "/retry-after")) {
        const char *h[] = {"Retry-After", "1", NULL};
        return n == 1 ? reply(c, 429, "slow down", h) : reply(c, 200, "thanks", NULL);
    }
    if (!strcmp(url, "/retry-after-date")) {
        http_date(tmp, sizeof(tmp), time(NULL) + 3);
        const char *h[] = {"Retry-After", tmp, NULL};
        return reply(c, 429, "slow down", h);
    }
    if (!strcmp(url, "/slow503")) {
        const char *h[] = {"Retry-After", "5", NULL};
        return reply(c, 503, "later", h);
    }
    if (!strcmp(url, "/always500"))
        return reply(c, 500, "oops", NULL);
    if (!strcmp(url, "/forbidden"))
        return reply(c, 403, "no", NULL);
    if (!strcmp(url, "/ratelimit")) {
        snprintf(tmp2, sizeof(tmp2), "%lld", (long long)time(NULL) + 3600);
        const char *h[] = {"x-ratelimit-remaining", "0", "x-ratelimit-reset", tmp2, NULL};
        return reply(c, 403, "API rate limit exceeded", h);
    }
    if (!strcmp(url, "/ratelimit-soon")) {
        snprintf(tmp2, sizeof(tmp2), "%lld", (long long)time(NULL) + 1);
        const char *h[] = {"x-ratelimit-remaining", "0", "x-ratelimit-reset", tmp2, NULL};
        return n == 1 ? reply(c, 429, "wait a second", h) : reply(c, 200, "again", NULL);
    }
    if (!strcmp(url, "/echo")) {
        char *body = NULL;
        if (asprintf(&body, "method=%s\nauth=%s\nua=%s\nx-test=%s\nctype=%s\nexpect=%s\nbody=%s",
                     method, hdr(c, "Authorization"), hdr(c, "User-Agent"), hdr(c, "X-Test"),
                     hdr(c, "Content-Type"), hdr(c, "Expect"), u->data ? u->data : "") < 0)
            return MHD_NO;
        enum MHD_Result ret = reply(c, 200, body, NULL);
        free(body);
        return ret;
    }
    return reply(c, 404, "not found", NULL);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    upload *u = *con_cls;
    if (u) {
        free(u->data);
        free(u);
        *con_cls = NULL;
    }
}

static int server_start(void **state)
{
    big_body = malloc(BIG_BYTES);
    memset(big_body, 'b', BIG_BYTES);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                               NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                               MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!daemon_)
        return -1;
    port = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT)->port;
    snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", port);
    return http_global_init();
}

static int server_stop(void **state)
{
    MHD_stop_daemon(daemon_);
    free(big_body);
    http_global_cleanup();
    return 0;
}

static int reset_hits(void **state)
{
    atomic_store(&hits, 0);
    atomic_store(&chunked_sent, 0);
    farm_error_clear();
    return 0;
}

static const char *url(const char *path)
{
    static char u[128];
    snprintf(u, sizeof(u), "%s%s", base_url, path);
    return u;
}

/* ---- raw sockets: a server that never answers, a port nobody listens on -- */

static int listen_loopback(int *port_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port_out = ntohs(sa.sin_port);
    return fd;
}

/* Accepts connections in the kernel backlog but never reads or answers. */
static int hanging_server(char *u, size_t n)
{
    int p;
    int fd = listen_loopback(&p);
    assert_int_equal(listen(fd, 16), 0);
    snprintf(u, n, "http://127.0.0.1:%d/hang", p);
    return fd;
}

static void refused_url(char *u, size_t n)
{
    int p;
    int fd = listen_loopback(&p);
    close(fd);
    snprintf(u, n, "http://127.0.0.1:%d/nobody", p);
}

typedef struct delayed_cancel {
    volatile int flag;
    int after_ms;
    pthread_t th;
} delayed_cancel;

static void *cancel_later(void *p)
{
    delayed_cancel *d = p;
    struct timespec ts = {d->after_ms / 1000, (long)(d->after_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    d->flag = 1;
    return NULL;
}

static void cancel_start(delayed_cancel *d, int after_ms)
{
    d->flag = 0;
    d->after_ms = after_ms;
    assert_int_equal(pthread_create(&d->th, NULL, cancel_later, d), 0);
}

/* ---- tests ------------------------------------------------------------------ */

static void get_200_with_body(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/ok");
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(buf_cstr(&r.body), "hello");
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.retry_after_ms, 0);
    char *v = http_response_header(&r, "x-custom");
    assert_non_null(v);
    assert_string_equal(v, "yes");
    free(v);
    v = http_response_header(&r, "X-CUSTOM");
    assert_string_equal(v, "yes");
    free(v);
    assert_null(http_response_header(&r, "x-cust"));
    assert_null(http_response_header(&r, "X-Missing"));
    /* x-ratelimit-* parsed whatever their case */
    assert_int_equal(r.ratelimit_remaining, 42);
    assert_int_equal(r.ratelimit_reset, 1700000000);
    /* the status line is not among the headers */
    assert_null(strstr(r.headers, "HTTP/"));
    http_response_free(&r);

    /* absent rate-limit headers */
    req.url = url("/forbidden");
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.ratelimit_remaining, -1);
    assert_int_equal(r.ratelimit_reset, 0);
    http_response_free(&r);
}

static void response_over_cap_is_too_big(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.max_response = 64 * 1024;
    http_response r;

    /* Content-Length over the cap */
    req.url = url("/big");
    assert_int_equal(http_do(&r, &req), FARM_ETOOBIG);
    assert_true(r.body.len <= req.max_response);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);

    /* no Content-Length: stopped while receiving */
    req.url = url("/bigchunked");
    assert_int_equal(http_do(&r, &req), FARM_ETOOBIG);
    assert_true(r.body.len <= req.max_response);
    assert_true(r.body.cap <= req.max_response);
    assert_int_equal(r.attempts, 1);
    assert_non_null(strstr(farm_error_last(), "cap"));
    http_response_free(&r);
    /* the transfer was aborted, not drained: the server did not get to send it all */
    usleep(100 * 1000);
    assert_true(atomic_load(&chunked_sent) < CHUNKED_BYTES / 2);

    /* exactly at the cap is fine */
    req.url = url("/big");
    req.max_response = BIG_BYTES;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.body.len, BIG_BYTES);
    http_response_free(&r);
}

static void retries_503_then_succeeds(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/flaky");
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    assert_string_equal(buf_cstr(&r.body), "recovered");
    /* headers are those of the last attempt */
    char *v = http_response_header(&r, "X-Attempt");
    assert_string_equal(v, "2");
    free(v);
    http_response_free(&r);
}

static void no_retries_when_max_retries_is_zero(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/flaky");
    req.max_retries = 0;
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);
}

static void retry_after_waited_when_short(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/retry-after");
    req.max_retry_wait_ms = 3000;
    http_response r;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), 0);
    int64_t took = clock_mono_ms() - t0;
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(r.retry_after_ms, 0);
    assert_true(took >= 950);
    assert_true(took < 2500);
    http_response_free(&r);
}

static void retry_after_returned_when_long(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/retry-after");
    req.max_retry_wait_ms = 500;
    http_response r;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), 0);
    assert_true(clock_mono_ms() - t0 < 400);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.retry_after_ms, 1000);
    http_response_free(&r);

    /* as an HTTP date */
    req.url = url("/retry-after-date");
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.attempts, 1);
    assert_true(r.retry_after_ms > 1000);
    assert_true(r.retry_after_ms <= 4000);
    http_response_free(&r);
}

static void post_not_retried_unless_unsafe_allowed(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/always500");
    req.method = "POST";
    req.body = "{}";
    req.body_len = 2;
    req.max_retries = 1;
    req.max_retry_wait_ms = 50;
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(atomic_load(&hits), 1);
    http_response_free(&r);

    req.method = "PATCH";
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);

    atomic_store(&hits, 0);
    req.method = "POST";
    req.retry_unsafe = 1;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(atomic_load(&hits), 2);
    http_response_free(&r);

    /* idempotent methods retry on their own */
    atomic_store(&hits, 0);
    req.retry_unsafe = 0;
    req.method = "PUT";
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.attempts, 2);
    req.method = "DELETE";
    http_response_free(&r);
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(atomic_load(&hits), 4);
    http_response_free(&r);
}

static void hanging_server_times_out(void **state)
{
    char u[64];
    int fd = hanging_server(u, sizeof(u));
    http_request req = HTTP_REQUEST_INIT;
    req.url = u;
    req.timeout_ms = 300;
    req.max_retries = 0;
    http_response r;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), FARM_ETIMEOUT);
    int64_t took = clock_mono_ms() - t0;
    assert_true(took >= 250);
    assert_true(took < 1500);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.status, 0);
    http_response_free(&r);

    /* a timeout is a transport error: retried for GET */
    req.max_retries = 1;
    req.max_retry_wait_ms = 50;
    assert_int_equal(http_do(&r, &req), FARM_ETIMEOUT);
    assert_int_equal(r.attempts, 2);
    http_response_free(&r);
    close(fd);
}

static void connection_refused_is_eio_after_retries(void **state)
{
    char u[64];
    refused_url(u, sizeof(u));
    http_request req = HTTP_REQUEST_INIT;
    req.url = u;
    req.max_retries = 2;
    http_response r;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), FARM_EIO);
    int64_t took = clock_mono_ms() - t0;
    assert_int_equal(r.attempts, 3);
    /* backoff: ~250 ms then ~500 ms, each with jitter of up to half */
    assert_true(took >= 125 + 250);
    assert_true(took < 3000);
    assert_non_null(strstr(farm_error_last(), "127.0.0.1"));
    http_response_free(&r);

    /* nothing was sent, so even a POST is repeated */
    req.method = "POST";
    req.max_retries = 1;
    req.max_retry_wait_ms = 10;
    assert_int_equal(http_do(&r, &req), FARM_EIO);
    assert_int_equal(r.attempts, 2);
    http_response_free(&r);
}

static void cancel_stops_a_hanging_request(void **state)
{
    char u[64];
    int fd = hanging_server(u, sizeof(u));
    delayed_cancel d;
    http_request req = HTTP_REQUEST_INIT;
    req.url = u;
    req.timeout_ms = 10000;
    req.cancel = &d.flag;
    http_response r;
    cancel_start(&d, 150);
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), FARM_ECANCELLED);
    int64_t took = clock_mono_ms() - t0;
    pthread_join(d.th, NULL);
    assert_true(took >= 100);
    assert_true(took < 1000);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);
    close(fd);

    /* while sleeping through a Retry-After */
    req.url = url("/slow503");
    req.max_retry_wait_ms = 10000;
    cancel_start(&d, 150);
    t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), FARM_ECANCELLED);
    took = clock_mono_ms() - t0;
    pthread_join(d.th, NULL);
    assert_true(took < 1000);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);

    /* already cancelled: nothing is sent */
    atomic_store(&hits, 0);
    d.flag = 1;
    req.url = url("/ok");
    assert_int_equal(http_do(&r, &req), FARM_ECANCELLED);
    assert_int_equal(atomic_load(&hits), 0);
    http_response_free(&r);
}

static void rate_limit_headers(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    http_response r;

    /* exhausted for an hour: handed back at once */
    req.url = url("/ratelimit");
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_do(&r, &req), 0);
    assert_true(clock_mono_ms() - t0 < 500);
    assert_int_equal(r.status, 403);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.ratelimit_remaining, 0);
    assert_true(r.ratelimit_reset > time(NULL));
    assert_true(r.retry_after_ms > 3590 * 1000LL);
    assert_true(r.retry_after_ms <= 3601 * 1000LL);
    http_response_free(&r);

    /* exhausted for under a second: waited for */
    atomic_store(&hits, 0);
    req.url = url("/ratelimit-soon");
    req.max_retry_wait_ms = 3000;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    http_response_free(&r);

    /* a plain 403 is an answer, not a rate limit */
    atomic_store(&hits, 0);
    req.url = url("/forbidden");
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 403);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.retry_after_ms, 0);
    http_response_free(&r);
}

static void auth_headers_and_body_arrive(void **state)
{
    const char *headers[] = {"X-Test: 42", "Content-Type: application/json", NULL};
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/echo");
    req.method = "POST";
    req.headers = headers;
    req.body = "{\"a\":1}";
    req.body_len = strlen(req.body);
    req.basic_user = "user";
    req.basic_password = "p@ss";
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    const char *b = buf_cstr(&r.body);
    assert_non_null(strstr(b, "method=POST\n"));
    assert_non_null(strstr(b, "auth=Basic dXNlcjpwQHNz\n")); /* user:p@ss */
    assert_non_null(strstr(b, "ua=farm/" FARM_VERSION "\n"));
    assert_non_null(strstr(b, "x-test=42\n"));
    assert_non_null(strstr(b, "ctype=application/json\n"));
    assert_non_null(strstr(b, "expect=(none)\n"));
    assert_non_null(strstr(b, "body={\"a\":1}"));
    http_response_free(&r);

    /* Azure DevOps style: empty user, token as the password; a big binary body */
    size_t n = 300 * 1000;
    char *big = malloc(n);
    memset(big, 'z', n);
    big[10] = '\0';
    const char *ua[] = {"User-Agent: custom/1", NULL};
    req.headers = ua;
    req.method = "PATCH";
    req.body = big;
    req.body_len = n;
    req.basic_user = "";
    req.basic_password = "pat";
    assert_int_equal(http_do(&r, &req), 0);
    b = buf_cstr(&r.body);
    assert_non_null(strstr(b, "method=PATCH\n"));
    assert_non_null(strstr(b, "auth=Basic OnBhdA==\n")); /* ":pat" */
    assert_non_null(strstr(b, "ua=custom/1\n"));
    assert_non_null(strstr(b, "x-test=(none)\n"));
    free(big);
    http_response_free(&r);

    /* HEAD: a status and no body */
    req = (http_request)HTTP_REQUEST_INIT;
    req.url = url("/ok");
    req.method = "HEAD";
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    http_response_free(&r);
}

static void *unix_server(void *p)
{
    int lfd = *(int *)p;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char req[4096];
    size_t len = 0;
    while (len < sizeof(req) - 1) {
        ssize_t k = read(fd, req + len, sizeof(req) - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nvia-uds";
    if (strstr(req, "GET /containers/json HTTP/1.1\r\n") && write(fd, resp, strlen(resp)) < 0)
        perror("write");
    close(fd);
    return NULL;
}

static void unix_socket_option(void **state)
{
    char dir[] = "/tmp/farm-http-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unix_server, &lfd), 0);

    http_request req = HTTP_REQUEST_INIT;
    req.url = "http://localhost/containers/json";
    req.unix_socket = sa.sun_path;
    req.timeout_ms = 2000;
    req.max_retries = 0;
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(buf_cstr(&r.body), "via-uds");
    http_response_free(&r);
    pthread_join(th, NULL);
    close(lfd);
    unlink(sa.sun_path);
    rmdir(dir);
}

static void invalid_requests_refused(void **state)
{
    http_request req = HTTP_REQUEST_INIT;
    http_response r;
    assert_int_equal(http_do(&r, &req), FARM_EINVALID); /* no URL */
    http_response_free(&r);

    req.url = url("/ok");
    req.method = "get";
    assert_int_equal(http_do(&r, &req), FARM_EINVALID);
    http_response_free(&r);
    req.method = "GET\r\nX: y";
    assert_int_equal(http_do(&r, &req), FARM_EINVALID);
    http_response_free(&r);

    req.method = NULL;
    const char *injected[] = {"X-Ok: 1", "X-Bad: a\r\nX-Evil: 1", NULL};
    req.headers = injected;
    assert_int_equal(http_do(&r, &req), FARM_EINVALID);
    http_response_free(&r);
    const char *nocolon[] = {"NoColon", NULL};
    req.headers = nocolon;
    assert_int_equal(http_do(&r, &req), FARM_EINVALID);
    http_response_free(&r);

    req.headers = NULL;
    req.url = "file:///etc/passwd";
    assert_int_equal(http_do(&r, &req), FARM_EINVALID);
    assert_int_equal(r.attempts, 1);
    http_response_free(&r);
    assert_int_equal(atomic_load(&hits), 0);
}

static void *hammer(void *p)
{
    const char *u = p;
    long ok = 0;
    for (int i = 0; i < 25; i++) {
        http_request req = HTTP_REQUEST_INIT;
        req.url = u;
        http_response r;
        int rc = http_do(&r, &req);
        if (rc == 0 && r.status == 200 && !strcmp(buf_cstr(&r.body), "hello"))
            ok++;
        else
            fprintf(stderr, "hammer: rc=%d status=%ld attempts=%d: %s\n", rc, r.status, r.attempts,
                    farm_error_last());
        http_response_free(&r);
    }
    return (void *)ok;
}

static void concurrent_calls(void **state)
{
    char u[128];
    snprintf(u, sizeof(u), "%s/ok", base_url);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, u), 0);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        total += (long)ok;
    }
    assert_int_equal(total, 100);
}

/* ---- streaming ---------------------------------------------------------------- */

typedef struct sink {
    long status;
    char headers[4096];
    int heads;
    buf data;
    int pieces;
    int64_t first_ms, last_ms; /* when the first and last pieces came */
    int stop_after;            /* on_data returns -42 after this many pieces (0: never) */
    int tick_stop_ms;          /* on_tick returns -99 after this long (0: never) */
    int64_t t0;
} sink;

static int sink_head(void *ctx, long status, const char *headers)
{
    sink *k = ctx;
    k->status = status;
    k->heads++;
    snprintf(k->headers, sizeof k->headers, "%s", headers);
    return 0;
}

static int sink_data(void *ctx, const char *p, size_t n)
{
    sink *k = ctx;
    int64_t now = clock_mono_ms();
    if (k->pieces++ == 0)
        k->first_ms = now - k->t0;
    k->last_ms = now - k->t0;
    buf_append(&k->data, p, n);
    return k->stop_after && k->pieces >= k->stop_after ? -42 : 0;
}

static int sink_tick(void *ctx)
{
    sink *k = ctx;
    return k->tick_stop_ms && clock_mono_ms() - k->t0 >= k->tick_stop_ms ? -99 : 0;
}

static void sink_init(sink *k, http_stream_handler *h)
{
    memset(k, 0, sizeof(*k));
    buf_init(&k->data, 1u << 30);
    k->t0 = clock_mono_ms();
    http_stream_handler d = {sink_head, sink_data, sink_tick, k, 0};
    *h = d;
}

/* A raw server for one connection: after the request head, it writes each
 * step's bytes after the step's pause, then closes. */
typedef struct step {
    int pause_ms;
    const char *bytes;
} step;

typedef struct raw_server {
    int lfd;
    const step *steps;
    pthread_t th;
} raw_server;

static void *raw_serve(void *p)
{
    raw_server *s = p;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    char req[8192];
    size_t len = 0;
    while (len < sizeof req - 1) {
        ssize_t k = read(fd, req + len, sizeof req - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    for (const step *st = s->steps; st->bytes; st++) {
        usleep((useconds_t)st->pause_ms * 1000);
        if (send(fd, st->bytes, strlen(st->bytes), MSG_NOSIGNAL) < 0)
            break;
    }
    close(fd);
    return NULL;
}

static void raw_start(raw_server *s, const step *steps, char *u, size_t n)
{
    int p;
    s->lfd = listen_loopback(&p);
    assert_int_equal(listen(s->lfd, 4), 0);
    s->steps = steps;
    snprintf(u, n, "http://127.0.0.1:%d/raw", p);
    assert_int_equal(pthread_create(&s->th, NULL, raw_serve, s), 0);
}

static void raw_stop(raw_server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static void stream_hands_over_pieces_as_they_come(void **state)
{
    sink k;
    http_stream_handler h;
    sink_init(&k, &h);
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/pieces");
    http_stream_result res;
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_int_equal(k.heads, 1);
    assert_int_equal(k.status, 200);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.attempts, 1);
    assert_non_null(strcasestr(k.headers, "content-type: text/event-stream"));
    assert_null(strstr(k.headers, "HTTP/"));
    assert_string_equal(buf_cstr(&k.data), "piece-0\npiece-1\npiece-2\npiece-3\npiece-4\n");
    assert_int_equal(res.bytes, 40);
    /* handed over one by one while the server was still sending */
    assert_true(k.pieces >= 5);
    assert_true(k.first_ms < 150);
    assert_true(k.last_ms >= 200);
    assert_true(res.head_ns > 0 && res.first_byte_ns >= res.head_ns);
    buf_free(&k.data);

    /* a body of known length, and an empty one */
    sink_init(&k, &h);
    req.url = url("/ok");
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_string_equal(buf_cstr(&k.data), "hello");
    assert_non_null(strcasestr(k.headers, "x-custom: yes"));
    buf_free(&k.data);
    sink_init(&k, &h);
    req.method = "HEAD";
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_int_equal(k.heads, 1);
    assert_int_equal(k.status, 200);
    assert_int_equal(k.data.len, 0);
    buf_free(&k.data);
}

static void stream_takes_the_first_answer(void **state)
{
    sink k;
    http_stream_handler h;
    /* a 503 is an answer: not retried, whatever the method */
    sink_init(&k, &h);
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/flaky");
    http_stream_result res;
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_int_equal(res.status, 503);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(buf_cstr(&k.data), "busy");
    buf_free(&k.data);

    /* a redirect is not followed (it would carry the credentials along) */
    sink_init(&k, &h);
    req.url = url("/redirect");
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_int_equal(res.status, 302);
    assert_string_equal(buf_cstr(&k.data), "moved");
    buf_free(&k.data);

    /* headers and body arrive as sent, and the method too */
    sink_init(&k, &h);
    const char *hd[] = {"X-Test: 7", NULL};
    req.url = url("/echo");
    req.method = "POST";
    req.headers = hd;
    req.body = "{\"s\":1}";
    req.body_len = 7;
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_non_null(strstr(buf_cstr(&k.data), "method=POST\n"));
    assert_non_null(strstr(buf_cstr(&k.data), "x-test=7\n"));
    assert_non_null(strstr(buf_cstr(&k.data), "body={\"s\":1}"));
    buf_free(&k.data);

    /* a connection never made is repeated, as http_do does, even for a POST */
    char u[64];
    refused_url(u, sizeof u);
    sink_init(&k, &h);
    req = (http_request)HTTP_REQUEST_INIT;
    req.url = u;
    req.method = "POST";
    req.max_retries = 1;
    req.max_retry_wait_ms = 10;
    assert_int_equal(http_stream(&res, &req, &h), FARM_EIO);
    assert_int_equal(res.attempts, 2);
    assert_int_equal(k.heads, 0);
    buf_free(&k.data);
}

static void stream_idle_timeout(void **state)
{
    /* silence before any answer */
    char u[96];
    int fd = hanging_server(u, sizeof u);
    sink k;
    http_stream_handler h;
    sink_init(&k, &h);
    h.idle_timeout_ms = 300;
    http_request req = HTTP_REQUEST_INIT;
    req.url = u;
    req.max_retries = 0;
    http_stream_result res;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_stream(&res, &req, &h), FARM_ETIMEOUT);
    int64_t took = clock_mono_ms() - t0;
    assert_true(took >= 250 && took < 1500);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(farm_error_last(), "nothing received for 300 ms"));
    buf_free(&k.data);
    close(fd);

    /* silence in the middle of an answer: what came is handed over, no retry */
    static const step steps[] = {
        {0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
        {1500, "5\r\nlater\r\n0\r\n\r\n"},
        {0, NULL},
    };
    raw_server rs;
    raw_start(&rs, steps, u, sizeof u);
    sink_init(&k, &h);
    h.idle_timeout_ms = 300;
    req.url = u;
    req.max_retries = 3;
    t0 = clock_mono_ms();
    assert_int_equal(http_stream(&res, &req, &h), FARM_ETIMEOUT);
    took = clock_mono_ms() - t0;
    assert_true(took >= 250 && took < 1200);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.attempts, 1);
    assert_string_equal(buf_cstr(&k.data), "hello");
    buf_free(&k.data);
    raw_stop(&rs);

    /* a steady trickle is not idle, however long it takes */
    static const step trickle[] = {
        {0, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na"},
        {200, "b"},
        {200, "c"},
        {200, "d"},
        {0, NULL},
    };
    raw_start(&rs, trickle, u, sizeof u);
    sink_init(&k, &h);
    h.idle_timeout_ms = 300;
    assert_int_equal(http_stream(&res, &req, &h), 0);
    assert_string_equal(buf_cstr(&k.data), "abcd");
    buf_free(&k.data);
    raw_stop(&rs);

    /* cut off mid-answer: FARM_EIO, what came before handed over */
    static const step cut[] = {
        {0, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"},
        {0, NULL},
    };
    raw_start(&rs, cut, u, sizeof u);
    sink_init(&k, &h);
    assert_int_equal(http_stream(&res, &req, &h), FARM_EIO);
    assert_string_equal(buf_cstr(&k.data), "partial");
    assert_int_equal(res.attempts, 1);
    buf_free(&k.data);
    raw_stop(&rs);
}

static void stream_callbacks_stop_it(void **state)
{
    /* on_data says stop: the transfer is dropped, not drained */
    sink k;
    http_stream_handler h;
    sink_init(&k, &h);
    k.stop_after = 3;
    http_request req = HTTP_REQUEST_INIT;
    req.url = url("/bigchunked");
    http_stream_result res;
    assert_int_equal(http_stream(&res, &req, &h), -42);
    assert_int_equal(k.pieces, 3);
    assert_int_equal(res.attempts, 1);
    usleep(100 * 1000);
    assert_true(atomic_load(&chunked_sent) < CHUNKED_BYTES / 2);
    buf_free(&k.data);

    /* on_tick says stop while the server says nothing */
    char u[64];
    int fd = hanging_server(u, sizeof u);
    sink_init(&k, &h);
    k.tick_stop_ms = 150;
    req.url = u;
    req.timeout_ms = 10000;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(http_stream(&res, &req, &h), -99);
    assert_true(clock_mono_ms() - t0 < 600);
    buf_free(&k.data);
    close(fd);

    /* the cap counts what was handed over */
    sink_init(&k, &h);
    req.url = url("/big");
    req.max_response = 1000;
    assert_int_equal(http_stream(&res, &req, &h), FARM_ETOOBIG);
    assert_true(k.data.len <= 1000);
    buf_free(&k.data);

    /* no callbacks, no stream */
    http_stream_handler none = {0};
    assert_int_equal(http_stream(&res, &req, &none), FARM_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(get_200_with_body, reset_hits),
        cmocka_unit_test_setup(response_over_cap_is_too_big, reset_hits),
        cmocka_unit_test_setup(retries_503_then_succeeds, reset_hits),
        cmocka_unit_test_setup(no_retries_when_max_retries_is_zero, reset_hits),
        cmocka_unit_test_setup(retry_after_waited_when_short, reset_hits),
        cmocka_unit_test_setup(retry_after_returned_when_long, reset_hits),
        cmocka_unit_test_setup(post_not_retried_unless_unsafe_allowed, reset_hits),
        cmocka_unit_test_setup(hanging_server_times_out, reset_hits),
        cmocka_unit_test_setup(connection_refused_is_eio_after_retries, reset_hits),
        cmocka_unit_test_setup(cancel_stops_a_hanging_request, reset_hits),
        cmocka_unit_test_setup(rate_limit_headers, reset_hits),
        cmocka_unit_test_setup(auth_headers_and_body_arrive, reset_hits),
        cmocka_unit_test_setup(unix_socket_option, reset_hits),
        cmocka_unit_test_setup(invalid_requests_refused, reset_hits),
        cmocka_unit_test_setup(concurrent_calls, reset_hits),
        cmocka_unit_test_setup(stream_hands_over_pieces_as_they_come, reset_hits),
        cmocka_unit_test_setup(stream_takes_the_first_answer, reset_hits),
        cmocka_unit_test_setup(stream_idle_timeout, reset_hits),
        cmocka_unit_test_setup(stream_callbacks_stop_it, reset_hits),
    };
    return cmocka_run_group_tests(tests, server_start, server_stop);
}
