/*
 * http.c - the farm's one HTTP client, over libcurl (see http.h).
 *
 * A call borrows a libcurl multi+easy pair from a small idle pool, sets it up
 * for the request, and drives each attempt itself in short polls, so a cancel
 * flag is seen within a slice even while a server says nothing. Between
 * attempts it sleeps in slices too: an exponential backoff with jitter, or
 * what the server asked for (Retry-After, GitHub's x-ratelimit-reset) when
 * that is short enough; a longer wait is handed back to the caller.
 *
 * Connections are reused through the pool: libcurl keeps its connection cache
 * in the multi handle, and a handle pair is used by one thread at a time.
 * libcurl documents sharing one connection cache between concurrent threads
 * (CURL_LOCK_DATA_CONNECT) as unsupported, so the share object carries only
 * the DNS cache and TLS sessions, under one mutex per kind of data.
 *
 * http_stream() drives the same loop with two more callbacks: the answer goes
 * to the caller piece by piece as libcurl reads it, and the loop also watches
 * for silence (an idle timeout) and asks the caller whether to go on.
 */
#include "http.h"
#include "clock.h"
#include "crypto.h"
#include "error.h"

#include <curl/curl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define POOL_MAX       8
#define SLICE_MS       50           /* how often a transfer or a sleep looks at cancel */
#define HEADERS_MAX    (256 * 1024) /* response headers kept per attempt */
#define BACKOFF_MS     250          /* before the first retry; doubles after */
#define BACKOFF_MAX_MS 8000
#define WAIT_MAX_MS    (7LL * 24 * 3600 * 1000) /* clamp on what a server may ask */

typedef struct conn {
    CURLM *multi;
    CURL *easy;
} conn;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;
static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static conn pool[POOL_MAX];
static int npool;

/* ---- global state ----------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *u)
{
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *u)
{
    if (data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&share_locks[data]);
}

static void global_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        init_rc = FARM_ERROR;
        return;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&share_locks[i], NULL);
    share = curl_share_init();
    if (!share) {
        init_rc = FARM_ENOMEM;
        return;
    }
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

int http_global_init(void)
{
    pthread_once(&init_once, global_init_once);
    if (init_rc)
        farm_error_set("http: libcurl failed to initialise");
    return init_rc;
}

void http_global_cleanup(void)
{
    pthread_mutex_lock(&pool_lock);
    while (npool > 0) {
        npool--;
        curl_easy_cleanup(pool[npool].easy);
        curl_multi_cleanup(pool[npool].multi);
    }
    pthread_mutex_unlock(&pool_lock);
    if (share) {
        curl_share_cleanup(share);
        share = NULL;
    }
    if (init_rc == 0)
        curl_global_cleanup();
}

static int conn_get(conn *c)
{
    pthread_mutex_lock(&pool_lock);
    if (npool > 0) {
        *c = pool[--npool];
        pthread_mutex_unlock(&pool_lock);
        return 0;
    }
    pthread_mutex_unlock(&pool_lock);
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    if (!c->multi || !c->easy) {
        curl_easy_cleanup(c->easy);
        curl_multi_cleanup(c->multi);
        farm_error_set("http: out of memory for a libcurl handle");
        return FARM_ENOMEM;
    }
    return 0;
}

/* Back to the pool with its idle connections, or closed when the pool is full. */
static void conn_put(conn *c)
{
    curl_easy_reset(c->easy);
    pthread_mutex_lock(&pool_lock);
    if (npool < POOL_MAX) {
        pool[npool++] = *c;
        pthread_mutex_unlock(&pool_lock);
        return;
    }
    pthread_mutex_unlock(&pool_lock);
    curl_easy_cleanup(c->easy);
    curl_multi_cleanup(c->multi);
}

/* ---- one transfer ------------------------------------------------------ */

typedef struct xfer {
    http_response *out; /* http_do(); NULL for a stream */
    buf headers;        /* header lines of the response being received */
    const volatile int *cancel;
    int body_rc; /* why the body callback stopped the transfer */
    int header_rc;
    /* http_stream() only */
    const http_stream_handler *sh;
    http_stream_result *sr;
    long head_status; /* status line of the response being received */
    int head_done;    /* on_head was called */
    int cb_rc;        /* what a caller's callback returned to stop the transfer */
    int idle_expired; /* nothing arrived for idle_timeout_ms */
    size_t max_body;  /* cap on the bytes handed to on_data */
    int64_t t0_ns;    /* when the call started */
    int64_t last_ns;  /* when something last arrived */
} xfer;

static int cancelled(const volatile int *cancel)
{
    return cancel && *cancel;
}

static size_t on_body(char *p, size_t size, size_t n, void *u)
{
    xfer *x = u;
    int rc = buf_append(&x->out->body, p, size * n);
    if (rc) {
        x->body_rc = rc;
        return 0; /* aborts the transfer: nothing past the cap is kept */
    }
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *u)
{
    xfer *x = u;
    n *= size;
    if (n == 0)
        return 0;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        buf_reset(&x->headers); /* a new response (after a 1xx or a redirect) */
        return n;
    }
    if (p[0] == '\r' || p[0] == '\n')
        return n; /* the blank line that ends the headers */
    int rc = buf_append(&x->headers, p, n);
    if (rc) {
        x->header_rc = rc;
        return 0;
    }
    return n;
}

static int on_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    xfer *x = u;
    return cancelled(x->cancel);
}

/* ---- streaming callbacks ----------------------------------------------- */

/* The caller's tick and the idle timeout, between two polls of a stream.
 * CURLE_OK to go on; otherwise why the attempt stops. */
static CURLcode stream_check(xfer *x)
{
    if (x->sh->on_tick) {
        int rc = x->sh->on_tick(x->sh->ctx);
        if (rc) {
            x->cb_rc = rc;
            return CURLE_ABORTED_BY_CALLBACK;
        }
    }
    if (x->sh->idle_timeout_ms > 0 &&
        clock_mono_ns() - x->last_ns > (int64_t)x->sh->idle_timeout_ms * 1000000) {
        x->idle_expired = 1;
        return CURLE_OPERATION_TIMEDOUT;
    }
    return CURLE_OK;
}

/* The status code of a status line ("HTTP/1.1 200 OK", "HTTP/2 200"). */
static long status_of(const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    if (!sp || (size_t)(sp - p) + 4 > n)
        return 0;
    long v = 0;
    for (int i = 1; i <= 3; i++) {
        char c = sp[i];
        if (c < '0' || c > '9')
            return 0;
        v = v * 10 + (c - '0');
    }
    return v;
}

static int stream_head(xfer *x)
{
    if (x->head_done)
        return 0;
    x->head_done = 1;
    x->sr->status = x->head_status;
    x->sr->head_ns = clock_mono_ns() - x->t0_ns;
    int rc = x->sh->on_head(x->sh->ctx, x->head_status, buf_cstr(&x->headers));
    if (rc)
        x->cb_rc = rc;
    return rc;
}

static size_t stream_on_header(char *p, size_t size, size_t n, void *u)
{
    xfer *x = u;
    n *= size;
    if (n == 0)
        return 0;
    x->last_ns = clock_mono_ns();
    if (x->head_done)
        return n; /* trailers of a chunked answer */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        buf_reset(&x->headers); /* a new response (after a 1xx) */
        x->head_status = status_of(p, n);
        return n;
    }
    if (p[0] == '\r' || p[0] == '\n') {
        /* the end of a head: a 1xx is followed by the real one */
        if (x->head_status >= 200 && stream_head(x))
            return 0;
        return n;
    }
    int rc = buf_append(&x->headers, p, n);
    if (rc) {
        x->header_rc = rc;
        return 0;
    }
    return n;
}

static size_t stream_on_body(char *p, size_t size, size_t n, void *u)
{
    xfer *x = u;
    n *= size;
    int64_t now = clock_mono_ns();
    x->last_ns = now;
    if (!x->head_done && stream_head(x))
        return 0;
    if (n == 0)
        return 0;
    if (x->sr->bytes + n > x->max_body) {
        x->body_rc = FARM_ETOOBIG;
        return 0;
    }
    if (x->sr->first_byte_ns == 0)
        x->sr->first_byte_ns = now - x->t0_ns;
    x->sr->bytes += n;
    int rc = x->sh->on_data(x->sh->ctx, p, n);
    if (rc) {
        x->cb_rc = rc;
        return 0;
    }
    if (x->sh->on_tick && (rc = x->sh->on_tick(x->sh->ctx)) != 0) {
        x->cb_rc = rc;
        return 0;
    }
    return n;
}

/* Run one attempt to its end. Returns libcurl's result for it. */
static CURLcode run_attempt(conn *c, xfer *x)
{
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    CURLcode res = CURLE_GOT_NOTHING;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
            res = CURLE_OUT_OF_MEMORY;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m;
            while ((m = curl_multi_info_read(c->multi, &left)))
                if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy)
                    res = m->data.result;
            break;
        }
        if (cancelled(x->cancel)) {
            res = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        if (x->sh && (res = stream_check(x)) != CURLE_OK)
            break;
        if (curl_multi_poll(c->multi, NULL, 0, SLICE_MS, NULL) != CURLM_OK) {
            res = CURLE_OUT_OF_MEMORY;
            break;
        }
    }
    curl_multi_remove_handle(c->multi, c->easy);
    return res;
}

/* ---- retry policy ------------------------------------------------------ */

static int method_idempotent(const char *m)
{
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (strcmp(m, safe[i]) == 0)
            return 1;
    return 0;
}

/* Transport failures worth another attempt. */
static int transport_retryable(CURLcode r)
{
    switch (r) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* Failures where the request never left: a repeat is harmless for any method. */
static int nothing_sent(CURLcode r)
{
    return r == CURLE_COULDNT_RESOLVE_HOST || r == CURLE_COULDNT_RESOLVE_PROXY ||
           r == CURLE_COULDNT_CONNECT;
}

static int map_curl(CURLcode r)
{
    switch (r) {
    case CURLE_OPERATION_TIMEDOUT:
        return FARM_ETIMEOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return FARM_EINVALID;
    case CURLE_FILESIZE_EXCEEDED:
        return FARM_ETOOBIG;
    case CURLE_OUT_OF_MEMORY:
        return FARM_ENOMEM;
    case CURLE_ABORTED_BY_CALLBACK:
        return FARM_ECANCELLED;
    default:
        return FARM_EIO;
    }
}

static int64_t clamp_wait(int64_t ms)
{
    return ms < 0 ? 0 : ms > WAIT_MAX_MS ? WAIT_MAX_MS : ms;
}

/* Retry-After as delay-seconds or an HTTP date; -1 when absent or unreadable. */
static int64_t retry_after_ms(const http_response *r)
{
    char *v = http_response_header(r, "Retry-After");
    if (!v)
        return -1;
    int64_t ms = -1;
    if (v[0] >= '0' && v[0] <= '9') {
        char *end;
        long long secs = strtoll(v, &end, 10);
        if (*end == '\0')
            ms = secs > WAIT_MAX_MS / 1000 ? WAIT_MAX_MS : (int64_t)secs * 1000;
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t != (time_t)-1)
            ms = clamp_wait((int64_t)t * 1000 - clock_wall_ms());
    }
    free(v);
    return ms;
}

/* How long the server asked us to wait before trying again, or -1 when it did
 * not: Retry-After on a 403, 429 or 5xx, or an exhausted GitHub rate limit
 * (x-ratelimit-remaining: 0 on a 403 or 429) until x-ratelimit-reset. */
static int64_t server_wait_ms(const http_response *r)
{
    int limited = r->status == 403 || r->status == 429;
    if (limited || r->status >= 500) {
        int64_t ra = retry_after_ms(r);
        if (ra >= 0)
            return ra;
    }
    if (limited && r->ratelimit_remaining == 0 && r->ratelimit_reset > 0)
        return clamp_wait(r->ratelimit_reset * 1000 - clock_wall_ms());
    return -1;
}

static int status_retryable(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

static int64_t backoff_ms(int retry)
{
    int64_t d = BACKOFF_MS;
    for (int i = 1; i < retry && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    uint32_t r;
    if (crypto_random(&r, sizeof(r)))
        r = (uint32_t)clock_mono_ns();
    return d / 2 + (int64_t)(r % (uint32_t)(d / 2 + 1)); /* "equal jitter" */
}

static int sleep_ms(int64_t ms, const volatile int *cancel)
{
    int64_t end = clock_mono_ms() + ms;
    for (;;) {
        if (cancelled(cancel))
            return FARM_ECANCELLED;
        int64_t left = end - clock_mono_ms();
        if (left <= 0)
            return 0;
        if (left > SLICE_MS)
            left = SLICE_MS;
        struct timespec ts = {0, (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static long parse_long(const char *s, long dflt)
{
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    return *end ? dflt : v;
}

/* Fill the status, headers and rate-limit fields of out from the attempt. */
static int record_response(http_response *out, xfer *x, CURL *easy)
{
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    out->status = status;
    free(out->headers);
    out->headers = strdup(buf_cstr(&x->headers));
    if (!out->headers) {
        farm_error_set("http: out of memory");
        return FARM_ENOMEM;
    }
    char *v = http_response_header(out, "x-ratelimit-remaining");
    out->ratelimit_remaining = parse_long(v, -1);
    free(v);
    v = http_response_header(out, "x-ratelimit-reset");
    out->ratelimit_reset = parse_long(v, 0);
    free(v);
    return 0;
}

/* ---- the request ------------------------------------------------------- */

static int header_named(const char *h, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(h, name, n) == 0 && h[n] == ':';
}

/* The URL without its query or fragment, for error messages (a query may
 * carry a secret). */
static void url_for_log(char *out, size_t n, const char *url)
{
    size_t len = strcspn(url, "?#");
    snprintf(out, n, "%.*s", (int)(len > 200 ? 200 : len), url);
}

/* Free a header list, wiped first: it may hold a credential. */
static void headers_free(struct curl_slist *list)
{
    for (struct curl_slist *l = list; l; l = l->next)
        if (l->data)
            explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(list);
}

static int build_headers(struct curl_slist **out, const http_request *req, int *has_ua)
{
    struct curl_slist *list = NULL;
    int has_expect = 0;
    *has_ua = 0;
    for (const char *const *h = req->headers; h && *h; h++) {
        if (strpbrk(*h, "\r\n") || !strchr(*h, ':')) {
            farm_error_set("http: malformed request header (no colon, or a line break)");
            headers_free(list);
            return FARM_EINVALID;
        }
        *has_ua |= header_named(*h, "User-Agent");
        has_expect |= header_named(*h, "Expect");
        struct curl_slist *l = curl_slist_append(list, *h);
        if (!l)
            goto nomem;
        list = l;
    }
    /* No "Expect: 100-continue" round trip before a body. */
    if (!has_expect) {
        struct curl_slist *l = curl_slist_append(list, "Expect:");
        if (!l)
            goto nomem;
        list = l;
    }
    if (req->basic_user) {
        const char *pw = req->basic_password ? req->basic_password : "";
        size_t ulen = strlen(req->basic_user), plen = strlen(pw);
        char *cred = malloc(ulen + 1 + plen + 1);
        if (!cred)
            goto nomem;
        memcpy(cred, req->basic_user, ulen);
        cred[ulen] = ':';
        memcpy(cred + ulen + 1, pw, plen + 1);
        char *b64 = crypto_base64_encode(cred, ulen + 1 + plen, 0);
        explicit_bzero(cred, ulen + 1 + plen);
        free(cred);
        if (!b64)
            goto nomem;
        size_t hl = strlen(b64) + sizeof("Authorization: Basic ");
        char *hdr = malloc(hl);
        if (!hdr) {
            free(b64);
            goto nomem;
        }
        snprintf(hdr, hl, "Authorization: Basic %s", b64);
        free(b64);
        struct curl_slist *l = curl_slist_append(list, hdr);
        explicit_bzero(hdr, hl);
        free(hdr);
        if (!l)
            goto nomem;
        list = l;
    }
    *out = list;
    return 0;
nomem:
    headers_free(list);
    farm_error_set("http: out of memory");
    return FARM_ENOMEM;
}

static int method_valid(const char *m)
{
    size_t n = strlen(m);
    return n > 0 && n <= 16 && strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == n;
}

static void setup(CURL *e, const http_request *req, const char *method, xfer *x,
                  struct curl_slist *headers, int has_ua, char *errbuf)
{
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SHARE, share);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_response);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* the cap counts decoded bytes */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    if (!has_ua)
        curl_easy_setopt(e, CURLOPT_USERAGENT, "farm/" FARM_VERSION);
    if (req->unix_socket)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (req->body || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
               !strcmp(method, "PATCH")) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(req->body ? req->body_len : 0));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
}

/* Check a request and fill in the defaults: a copy of req_in in *req, its
 * method in *method. Returns 0 or FARM_EINVALID with the reason set. */
static int request_settle(http_request *req, const char **method, const http_request *req_in)
{
    if (!req_in || !req_in->url || !*req_in->url) {
        farm_error_set("http: no URL");
        return FARM_EINVALID;
    }
    *req = *req_in;
    *method = req->method ? req->method : "GET";
    if (!method_valid(*method)) {
        farm_error_set("http: invalid method '%.20s'", *method);
        return FARM_EINVALID;
    }
    if (req->connect_timeout_ms <= 0)
        req->connect_timeout_ms = 5000;
    if (req->timeout_ms <= 0)
        req->timeout_ms = 30000;
    if (req->max_retries < 0)
        req->max_retries = 0;
    if (req->max_retry_wait_ms < 0)
        req->max_retry_wait_ms = 0;
    if (req->max_response == 0)
        req->max_response = 32u << 20;
    return 0;
}

int http_do(http_response *out, const http_request *req_in)
{
    memset(out, 0, sizeof(*out));
    out->ratelimit_remaining = -1;
    buf_init(&out->body, 32u << 20);
    http_request req;
    const char *method;
    if (request_settle(&req, &method, req_in))
        return FARM_EINVALID;
    buf_init(&out->body, req.max_response);

    int rc = http_global_init();
    if (rc)
        return rc;
    struct curl_slist *headers = NULL;
    int has_ua = 0;
    rc = build_headers(&headers, &req, &has_ua);
    if (rc)
        return rc;
    conn c;
    rc = conn_get(&c);
    if (rc) {
        headers_free(headers);
        return rc;
    }

    char where[256];
    url_for_log(where, sizeof(where), req.url);
    char errbuf[CURL_ERROR_SIZE];
    xfer x = {.out = out, .cancel = req.cancel};
    buf_init(&x.headers, HEADERS_MAX);
    setup(c.easy, &req, method, &x, headers, has_ua, errbuf);
    int may_repeat = method_idempotent(method) || req.retry_unsafe;

    for (int attempt = 1;; attempt++) {
        if (cancelled(req.cancel)) {
            farm_error_set("http: %s %s: cancelled", method, where);
            rc = FARM_ECANCELLED;
            break;
        }
        out->attempts = attempt;
        out->status = 0;
        out->retry_after_ms = 0;
        buf_reset(&out->body);
        buf_reset(&x.headers);
        x.body_rc = x.header_rc = 0;
        errbuf[0] = '\0';

        CURLcode res = run_attempt(&c, &x);
        rc = record_response(out, &x, c.easy);
        if (rc)
            break;
        int64_t delay;
        if (res == CURLE_OK) {
            int64_t wait = server_wait_ms(out);
            int limited = wait >= 0 && (out->status == 403 || out->status == 429);
            if (!status_retryable(out->status) && !limited)
                break; /* rc is 0: a response */
            if (wait > 0)
                out->retry_after_ms = wait;
            if (!may_repeat || attempt > req.max_retries || wait > req.max_retry_wait_ms)
                break;
            delay = wait > 0 ? wait : backoff_ms(attempt);
        } else {
            if (cancelled(req.cancel) || res == CURLE_ABORTED_BY_CALLBACK) {
                farm_error_set("http: %s %s: cancelled", method, where);
                rc = FARM_ECANCELLED;
                break;
            }
            if (x.body_rc || x.header_rc || res == CURLE_FILESIZE_EXCEEDED) {
                rc = x.body_rc == FARM_ENOMEM || x.header_rc == FARM_ENOMEM ? FARM_ENOMEM
                                                                            : FARM_ETOOBIG;
                farm_error_set("http: %s %s: response %s over the cap of %zu bytes", method, where,
                               x.header_rc ? "headers" : "body",
                               x.header_rc ? (size_t)HEADERS_MAX : req.max_response);
                break;
            }
            rc = map_curl(res);
            farm_error_set("http: %s %s: %s (attempt %d)", method, where,
                           errbuf[0] ? errbuf : curl_easy_strerror(res), attempt);
            if (!transport_retryable(res) || !(may_repeat || nothing_sent(res)) ||
                attempt > req.max_retries)
                break;
            delay = backoff_ms(attempt);
        }
        if (delay > req.max_retry_wait_ms)
            delay = req.max_retry_wait_ms;
        if (sleep_ms(delay, req.cancel)) {
            farm_error_set("http: %s %s: cancelled", method, where);
            rc = FARM_ECANCELLED;
            break;
        }
    }

    buf_free(&x.headers);
    curl_easy_setopt(c.easy, CURLOPT_HTTPHEADER, NULL);
    headers_free(headers);
    conn_put(&c);
    return rc;
}

/* ---- streaming ------------------------------------------------------------ */

/* What a stream's attempt ended with, as the call's return code. */
static int stream_rc(xfer *x, CURLcode res, const char *method, const char *where,
                     const char *errbuf, int attempt)
{
    if (x->cb_rc)
        return x->cb_rc;
    if (cancelled(x->cancel)) {
        farm_error_set("http: %s %s: cancelled", method, where);
        return FARM_ECANCELLED;
    }
    if (x->idle_expired) {
        farm_error_set("http: %s %s: nothing received for %ld ms", method, where,
                       x->sh->idle_timeout_ms);
        return FARM_ETIMEOUT;
    }
    if (x->body_rc || x->header_rc || res == CURLE_FILESIZE_EXCEEDED) {
        int nomem = x->body_rc == FARM_ENOMEM || x->header_rc == FARM_ENOMEM;
        farm_error_set("http: %s %s: response %s over the cap of %zu bytes", method, where,
                       x->header_rc ? "headers" : "body",
                       x->header_rc ? (size_t)HEADERS_MAX : x->max_body);
        return nomem ? FARM_ENOMEM : FARM_ETOOBIG;
    }
    farm_error_set("http: %s %s: %s (attempt %d)", method, where,
                   errbuf[0] ? errbuf : curl_easy_strerror(res), attempt);
    return map_curl(res);
}

int http_stream(http_stream_result *out, const http_request *req_in, const http_stream_handler *h)
{
    memset(out, 0, sizeof(*out));
    if (!h || !h->on_head || !h->on_data) {
        farm_error_set("http: a stream needs on_head and on_data");
        return FARM_EINVALID;
    }
    http_request req;
    const char *method;
    if (request_settle(&req, &method, req_in))
        return FARM_EINVALID;

    int rc = http_global_init();
    if (rc)
        return rc;
    struct curl_slist *headers = NULL;
    int has_ua = 0;
    if ((rc = build_headers(&headers, &req, &has_ua)) != 0)
        return rc;
    conn c;
    if ((rc = conn_get(&c)) != 0) {
        headers_free(headers);
        return rc;
    }

    char where[256];
    url_for_log(where, sizeof(where), req.url);
    char errbuf[CURL_ERROR_SIZE];
    xfer x = {.cancel = req.cancel, .sh = h, .sr = out, .max_body = req.max_response};
    x.t0_ns = clock_mono_ns();
    buf_init(&x.headers, HEADERS_MAX);
    setup(c.easy, &req, method, &x, headers, has_ua, errbuf);
    /* What makes it a stream: the bytes as they come, no decoding, no
     * redirects, and libcurl's own size check off (on_body counts). */
    curl_easy_setopt(c.easy, CURLOPT_WRITEFUNCTION, stream_on_body);
    curl_easy_setopt(c.easy, CURLOPT_HEADERFUNCTION, stream_on_header);
    curl_easy_setopt(c.easy, CURLOPT_ACCEPT_ENCODING, NULL);
    curl_easy_setopt(c.easy, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(c.easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c.easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
    int may_repeat = method_idempotent(method) || req.retry_unsafe;

    for (int attempt = 1;; attempt++) {
        if (cancelled(req.cancel)) {
            farm_error_set("http: %s %s: cancelled", method, where);
            rc = FARM_ECANCELLED;
            break;
        }
        out->attempts = attempt;
        buf_reset(&x.headers);
        x.head_status = 0;
        x.body_rc = x.header_rc = x.cb_rc = x.idle_expired = 0;
        x.last_ns = clock_mono_ns();
        errbuf[0] = '\0';

        CURLcode res = run_attempt(&c, &x);
        if (res == CURLE_OK) {
            /* An answer without a body still has a head to give. */
            rc = x.head_done ? 0 : stream_head(&x);
            break;
        }
        rc = stream_rc(&x, res, method, where, errbuf, attempt);
        if (x.head_done || x.cb_rc || x.idle_expired || x.body_rc || x.header_rc ||
            cancelled(req.cancel) || !transport_retryable(res) ||
            !(may_repeat || nothing_sent(res)) || attempt > req.max_retries)
            break;
        int64_t delay = backoff_ms(attempt);
        if (delay > req.max_retry_wait_ms)
            delay = req.max_retry_wait_ms;
        if (sleep_ms(delay, req.cancel)) {
            farm_error_set("http: %s %s: cancelled", method, where);
            rc = FARM_ECANCELLED;
            break;
        }
    }

    buf_free(&x.headers);
    curl_easy_setopt(c.easy, CURLOPT_HTTPHEADER, NULL);
    headers_free(headers);
    conn_put(&c);
    return rc;
}

char *http_response_header(const http_response *r, const char *name)
{
    if (!r || !r->headers || !name)
        return NULL;
    size_t nlen = strlen(name);
    for (const char *line = r->headers; *line;) {
        size_t len = strcspn(line, "\n");
        if (len > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            const char *end = line + len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            return strndup(v, (size_t)(end - v));
        }
        line += len;
        if (*line == '\n')
            line++;
    }
    return NULL;
}

void http_response_free(http_response *r)
{
    if (!r)
        return;
    buf_free(&r->body);
    free(r->headers);
    r->headers = NULL;
    r->status = 0;
    r->attempts = 0;
    r->retry_after_ms = 0;
    r->ratelimit_remaining = -1;
    r->ratelimit_reset = 0;
}
