/*
 * call.c - one model call through the gateway, from the agent's request head
 * to the record the run gets.
 *
 * In order: the token picks the run (401 in the likely provider's shape when
 * it picks none; nothing is read further), the path must be one the run may
 * use, the body is read, the model it asks for must have a price (unless the
 * run allows unpriced calls) and the run's budget callback must allow the
 * call; a refusal is answered in the provider's own error shape and the
 * upstream is never contacted. Then the request goes upstream through
 * http_stream() with the token's headers swapped for the real key, and every
 * piece of the answer is written to the agent as it arrives: the usage reader
 * sees it, the real key is masked out of it should the upstream ever echo it,
 * and it is framed for the agent (Content-Length as the upstream gave it, or
 * chunked). Memory per call is the request body plus a few fixed buffers,
 * whatever the answer's length.
 */
#include "internal.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"
#include "base/log.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define PEEK_EVERY_NS (20 * 1000000LL) /* how often a quiet call looks for a hang-up */
#define HEAD_OUT_MAX  (64 * 1024)
#define ANSWER_MAX    SIZE_MAX /* an answer is streamed, not kept: no cap */

enum { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_CLOSE };

typedef struct call {
    gw_conn *c;
    const gw_req *q;
    gw_run *run;
    int anthropic;
    long status; /* sent to the agent */
    int head_sent;
    int framing;
    int sse;
    int client_gone;
    int64_t last_peek_ns;
    int peek_off; /* the agent sent more (pipelining): stop peeking */
    uint64_t bytes_out;
    const char *key; /* masked out of the answer */
    size_t klen;
    char *hold; /* the answer's last bytes while they could begin the key */
    size_t hlen;
    int64_t length; /* the upstream's Content-Length when framing is FR_LENGTH, else -1 */
    gw_usage_parser up;
} call;

/* ---- who is asking, for what ---------------------------------------------------------- */

static const char *token_of(const gw_req *q)
{
    const char *k = gw_req_header(q, "x-api-key");
    if (k)
        return k;
    const char *a = gw_req_header(q, "Authorization");
    if (a && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ')
            a++;
        return a;
    }
    return NULL;
}

/* Which shape a refusal takes before the run (and so its provider) is known. */
static int looks_anthropic(const gw_req *q)
{
    return gw_req_header(q, "x-api-key") || gw_req_header(q, "anthropic-version") ||
           strncmp(q->path, "/v1/messages", 12) == 0;
}

static int path_allowed(const gw_run *r, const char *path)
{
    for (size_t i = 0; r->paths[i]; i++) {
        const char *a = r->paths[i];
        size_t n = strlen(a);
        if (n >= 2 && a[n - 1] == '*' && a[n - 2] == '/') {
            const char *rest = path + n - 1;
            if (strncmp(path, a, n - 1) == 0 && *rest && !strpbrk(rest, "/%") &&
                strcmp(rest, ".") != 0 && strcmp(rest, "..") != 0)
                return 1;
        } else if (strcmp(path, a) == 0) {
            return 1;
        }
    }
    return 0;
}

static const gateway_price *price_of(const gw_run *r, const char *model)
{
    if (!model || !*model)
        return NULL;
    const gateway_price *p = gateway_price_find(r->prices, r->nprices, model);
    size_t n;
    const gateway_price *b = gateway_prices_builtin(&n);
    return p ? p : gateway_price_find(b, n, model);
}

/* ---- writing the answer ----------------------------------------------------------------- */

static int send_iov(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return FARM_EIO;
        }
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* n bytes of the answer, framed; one system call per piece. */
static int write_out(call *k, const char *p, size_t n)
{
    if (n == 0 || k->framing == FR_NONE)
        return 0;
    k->bytes_out += n;
    if (k->framing != FR_CHUNKED)
        return gw_send(k->c, p, n);
    char size[24];
    int l = snprintf(size, sizeof(size), "%zx\r\n", n);
    struct iovec iov[3] = {{size, (size_t)l}, {(char *)p, n}, {"\r\n", 2}};
    return send_iov(k->c->fd, iov, 3);
}

/* How many of the last bytes of p could be the start of the key. */
static size_t key_prefix_tail(const char *p, size_t n, const char *key, size_t klen)
{
    size_t from = n > klen - 1 ? n - (klen - 1) : 0;
    for (size_t i = from; i < n; i++)
        if (p[i] == key[0] && memcmp(p + i, key, n - i) == 0)
            return n - i;
    return 0;
}

/* Mask every whole occurrence of the key in p (n bytes, writable). */
static void mask_key(char *p, size_t n, const char *key, size_t klen)
{
    for (char *at = p; (at = memmem(at, n - (size_t)(at - p), key, klen)) != NULL; at += klen)
        memset(at, '*', klen);
}

/* Write a piece of the answer with the real key masked out, holding back a
 * tail that could be the start of it until the next piece shows whether it
 * is (an answer's pieces end where the network cut them). */
static int write_masked(call *k, const char *p, size_t n)
{
    char *own = NULL;
    if (k->hlen > 0 || memmem(p, n, k->key, k->klen)) {
        if (!(own = malloc(k->hlen + n)))
            return FARM_ENOMEM;
        memcpy(own, k->hold, k->hlen);
        memcpy(own + k->hlen, p, n);
        n += k->hlen;
        k->hlen = 0;
        mask_key(own, n, k->key, k->klen);
        p = own;
    }
    size_t keep = key_prefix_tail(p, n, k->key, k->klen);
    /* The answer's last byte waits for the call's record (serve()): an agent
     * cannot see the end of a Content-Length answer before its spend is
     * counted. A chunked one ends with its last chunk, sent after the record
     * too. */
    if (keep == 0 && n > 0 && k->framing == FR_LENGTH && (int64_t)(k->bytes_out + n) >= k->length)
        keep = 1;
    int rc = write_out(k, p, n - keep);
    memcpy(k->hold, p + n - keep, keep);
    k->hlen = keep;
    free(own);
    return rc;
}

static int header_dropped(const char *name, size_t n)
{
    static const char *const drop[] = {
        "connection", "keep-alive", "transfer-encoding", "content-length",
        "te",         "trailer",    "upgrade",           "proxy-connection",
        "set-cookie", "alt-svc",    "proxy-authenticate"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strlen(drop[i]) == n && strncasecmp(name, drop[i], n) == 0)
            return 1;
    return 0;
}

/* The agent's response head from the upstream's: its status and headers, less
 * hop-by-hop and framing ones, framed anew. */
static int build_head(call *k, buf *h, long status, const char *headers)
{
    int64_t length = -1;
    int upstream_chunked = 0;
    buf_printf(h, "HTTP/1.%d %ld %s\r\n", k->q->http10 ? 0 : 1, status, gw_reason(status));
    for (const char *line = headers; *line;) {
        size_t len = strcspn(line, "\r\n");
        const char *colon = memchr(line, ':', len);
        if (colon) {
            size_t nl = (size_t)(colon - line);
            if (nl == 14 && strncasecmp(line, "content-length", 14) == 0)
                length = strtoll(colon + 1, NULL, 10);
            else if (nl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0)
                upstream_chunked = 1;
            else if (nl == 12 && strncasecmp(line, "content-type", 12) == 0)
                k->sse = strstr(colon + 1, "text/event-stream") != NULL;
            if (!header_dropped(line, nl)) {
                buf_append(h, line, len);
                buf_puts(h, "\r\n");
            }
        }
        line += len;
        line += strspn(line, "\r\n");
    }
    if (status < 200 || status == 204 || status == 304 || strcmp(k->q->method, "HEAD") == 0) {
        k->framing = FR_NONE;
    } else if (length >= 0 && !upstream_chunked) {
        k->framing = FR_LENGTH;
        k->length = length;
        buf_printf(h, "Content-Length: %lld\r\n", (long long)length);
    } else if (k->q->http10) {
        k->framing = FR_CLOSE;
    } else {
        k->framing = FR_CHUNKED;
        buf_puts(h, "Transfer-Encoding: chunked\r\n");
    }
    if (!k->q->keep_alive || k->framing == FR_CLOSE)
        buf_puts(h, "Connection: close\r\n");
    return buf_puts(h, "\r\n");
}

/* ---- the stream's callbacks ---------------------------------------------------------------- */

static int on_head(void *ctx, long status, const char *headers)
{
    call *k = ctx;
    buf h;
    buf_init(&h, HEAD_OUT_MAX);
    int rc = build_head(k, &h, status, headers);
    if (rc == 0) {
        mask_key(h.data, h.len, k->key, k->klen);
        k->status = status;
        gw_usage_init(&k->up, k->run->provider, k->sse);
        rc = gw_send(k->c, h.data, h.len);
        if (rc)
            k->client_gone = 1;
        k->head_sent = rc == 0;
    }
    buf_free(&h);
    return rc ? FARM_ECANCELLED : 0;
}

static int on_data(void *ctx, const char *p, size_t n)
{
    call *k = ctx;
    gw_usage_feed(&k->up, p, n);
    if (write_masked(k, p, n)) {
        k->client_gone = 1;
        return FARM_ECANCELLED;
    }
    return 0;
}

/* Has the agent hung up? A quiet upstream would not tell us until it spoke. */
static int hung_up(call *k)
{
    struct pollfd pf = {k->c->fd, POLLIN | POLLRDHUP, 0};
    if (poll(&pf, 1, 0) <= 0)
        return 0;
    if (pf.revents & (POLLHUP | POLLERR | POLLRDHUP))
        return 1;
    char b;
    ssize_t r = recv(k->c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0)
        k->peek_off = 1; /* a next request already: not a hang-up, stop looking */
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
}

static int on_tick(void *ctx)
{
    call *k = ctx;
    if (k->c->cancel)
        return FARM_ECANCELLED;
    int64_t now = clock_mono_ns();
    if (k->peek_off || now - k->last_peek_ns < PEEK_EVERY_NS)
        return 0;
    k->last_peek_ns = now;
    if (hung_up(k)) {
        k->client_gone = 1;
        return FARM_ECANCELLED;
    }
    return 0;
}

/* ---- the call -------------------------------------------------------------------------------- */

static int header_kept(const char *name)
{
    static const char *const drop[] = {"host",
                                       "content-length",
                                       "transfer-encoding",
                                       "connection",
                                       "keep-alive",
                                       "proxy-connection",
                                       "proxy-authorization",
                                       "te",
                                       "trailer",
                                       "upgrade",
                                       "expect",
                                       "x-api-key",
                                       "authorization",
                                       "accept-encoding",
                                       "cookie",
                                       "forwarded",
                                       "x-forwarded-for",
                                       "x-forwarded-host",
                                       "x-forwarded-proto",
                                       "x-real-ip"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strcasecmp(name, drop[i]) == 0)
            return 0;
    return 1;
}

/* The request's headers for the upstream: the agent's own, less the token,
 * hop-by-hop ones and the like, plus the real key. NULL-terminated; free with
 * free_headers(). */
static char **upstream_headers(const gw_req *q, const gw_run *r)
{
    char **h = calloc((size_t)q->nh + 3, sizeof(char *));
    if (!h)
        return NULL;
    int n = 0;
    for (int i = 0; i < q->nh; i++)
        if (header_kept(q->h[i].name) &&
            asprintf(&h[n++], "%s: %s", q->h[i].name, q->h[i].value) < 0)
            goto nomem;
    if (!(h[n++] = strdup("Accept-Encoding: identity")) || !(h[n++] = strdup(r->auth_header)))
        goto nomem;
    return h;
nomem:
    h[n - 1] = NULL;
    for (int i = 0; h[i]; i++)
        free(h[i]);
    free(h);
    return NULL;
}

static void free_headers(char **h)
{
    for (int i = 0; h && h[i]; i++) {
        explicit_bzero(h[i], strlen(h[i])); /* one of them holds the key */
        free(h[i]);
    }
    free(h);
}

/* Answer a refusal or a failure in the provider's shape. */
static void refuse(call *k, int status, const char *type, const char *code, const char *msg)
{
    k->status = status;
    if (gw_send_error(k->c, k->q, k->anthropic, status, type, code, msg, 0))
        k->client_gone = 1;
}

/* The price and budget checks. Returns 1 when the call was refused (and
 * answered), with rec filled in. */
static int refused(call *k, const char *model, gateway_call *rec)
{
    char msg[640];
    if (*model && !k->run->allow_unpriced && !price_of(k->run, model)) {
        snprintf(msg, sizeof(msg),
                 "farm gateway: no price is known for model '%.100s', so its cost could not be "
                 "counted; add it to the farm's prices (agent.prices)",
                 model);
        refuse(k, 400, "invalid_request_error", "farm_unpriced_model", msg);
        rec->outcome = GATEWAY_CALL_UNPRICED;
        rec->error = "no price for the model";
        return 1;
    }
    if (!k->run->budget)
        return 0;
    char why[512] = "";
    double spent = gw_run_spent(k->c->gw, k->run);
    if (k->run->budget(k->run->ctx, spent, model, why, sizeof(why)) == 0)
        return 0;
    why[sizeof(why) - 1] = '\0';
    snprintf(msg, sizeof(msg), "farm gateway: budget reached: %s",
             why[0] ? why : "this work may not spend more");
    /* Anthropic's "credit balance too low" is a 400, which Claude Code does not
     * retry; OpenAI's quota is a 429 insufficient_quota, which Codex does not. */
    if (k->anthropic)
        refuse(k, 400, "invalid_request_error", NULL, msg);
    else
        refuse(k, 429, "insufficient_quota", "insufficient_quota", msg);
    rec->outcome = GATEWAY_CALL_BUDGET;
    rec->error = "refused by the budget";
    return 1;
}

/* The call failed after it was forwarded: say so to the agent if nothing of
 * the answer went out yet, and fill in the outcome. */
static void failed(call *k, int rc, gateway_call *rec)
{
    /* A removal shuts the agent's connection too: cancelled comes first. */
    if (k->c->cancel) {
        rec->outcome = GATEWAY_CALL_CANCELLED;
        rec->error = "the run was removed or the gateway stopped";
    } else if (k->client_gone) {
        rec->outcome = GATEWAY_CALL_CLIENT_GONE;
        rec->error = "the agent hung up or stopped reading";
    } else if (rc == FARM_ETIMEOUT) {
        rec->outcome = GATEWAY_CALL_TIMEOUT;
    } else {
        rec->outcome = GATEWAY_CALL_UPSTREAM;
    }
    if (k->head_sent || rec->outcome == GATEWAY_CALL_CLIENT_GONE ||
        rec->outcome == GATEWAY_CALL_CANCELLED)
        return; /* an answer cut short: the connection closes under it */
    const char *msg = rec->outcome == GATEWAY_CALL_TIMEOUT
                          ? "farm gateway: the model API did not answer in time"
                          : "farm gateway: the model API could not be reached";
    if (rec->outcome == GATEWAY_CALL_TIMEOUT)
        refuse(k, 504, k->anthropic ? "timeout_error" : "timeout", NULL, msg);
    else
        refuse(k, 502, k->anthropic ? "api_error" : "server_error", NULL, msg);
}

/* Forward the request and stream the answer. Returns 0 when the whole answer
 * went out, else the error; rec->outcome is set either way. */
static int forward(call *k, gateway_call *rec, int64_t t0)
{
    gateway *gw = k->c->gw;
    char *url = NULL;
    char **headers = upstream_headers(k->q, k->run);
    if (!headers || asprintf(&url, "%s%s", k->run->upstream, k->q->target) < 0) {
        free_headers(headers);
        farm_error_set("gateway: out of memory");
        rec->outcome = GATEWAY_CALL_UPSTREAM;
        return FARM_ENOMEM;
    }
    http_request req = HTTP_REQUEST_INIT;
    req.method = k->q->method;
    req.url = url;
    req.headers = (const char *const *)headers;
    req.body = k->q->body.len ? k->q->body.data : NULL;
    req.body_len = k->q->body.len;
    req.connect_timeout_ms = gw->o.connect_timeout_ms;
    req.timeout_ms = gw->o.call_timeout_ms;
    req.max_retries = 0; /* the agent's CLI has its own retries */
    req.max_response = ANSWER_MAX;
    req.cancel = &k->c->cancel;
    http_stream_handler h = {on_head, on_data, on_tick, k, gw->o.idle_timeout_ms};
    http_stream_result res;
    int64_t sent_ns = clock_mono_ns();
    int rc = http_stream(&res, &req, &h);
    free_headers(headers);
    free(url);
    if (res.first_byte_ns > 0)
        rec->ttfb_us = (sent_ns - t0 + res.first_byte_ns) / 1000;
    if (rc == 0)
        rec->outcome = GATEWAY_CALL_OK; /* the end goes out after the record: end_answer() */
    else
        failed(k, rc, rec);
    return rc;
}

/* The end of a whole answer, held back until its record was delivered: the
 * tail that was not the key after all (or a Content-Length answer's last
 * byte) and a chunked answer's last chunk. Returns 0 or FARM_ECANCELLED. */
static int end_answer(call *k)
{
    int rc = write_out(k, k->hold, k->hlen);
    k->hlen = 0;
    if (rc == 0 && k->framing == FR_CHUNKED)
        rc = gw_send(k->c, "0\r\n\r\n", 5);
    if (rc) {
        k->client_gone = 1;
        return FARM_ECANCELLED;
    }
    return 0;
}

static void finish(call *k, gateway_call *rec, const char *asked, int64_t t0, const char *error)
{
    if (k->head_sent) {
        gw_usage_finish(&k->up);
        gw_usage_get(&rec->usage, &k->up);
        rec->usage_seen = k->up.seen;
    }
    rec->model = k->up.model[0] ? k->up.model : asked;
    const gateway_price *p = price_of(k->run, k->up.model);
    if (!p)
        p = price_of(k->run, asked);
    rec->priced = p != NULL;
    rec->cost_usd = p && rec->usage_seen ? gateway_cost(p, &rec->usage) : 0;
    rec->status = k->status;
    rec->streamed = k->sse;
    rec->response_bytes = k->bytes_out + (rec->outcome == GATEWAY_CALL_OK ? k->hlen : 0);
    rec->total_us = (clock_mono_ns() - t0) / 1000;
    if (rec->outcome != GATEWAY_CALL_OK && !rec->error[0])
        rec->error = error;
    gw_run_account(k->c->gw, k->run, rec);
    /* An agent stopped mid-answer, or a run ended, is ordinary; the rest is
     * worth a look. The record goes to the run's callback either way. */
    if (rec->outcome == GATEWAY_CALL_TIMEOUT || rec->outcome == GATEWAY_CALL_UPSTREAM ||
        rec->outcome == GATEWAY_CALL_UNPRICED)
        log_warn("gateway: model call did not complete", "run", k->run->label, "path", rec->path,
                 "model", rec->model, "outcome", gateway_outcome_name(rec->outcome), "error",
                 rec->error);
    else if (rec->outcome != GATEWAY_CALL_OK)
        log_debug("gateway: model call ended early", "run", k->run->label, "path", rec->path,
                  "outcome", gateway_outcome_name(rec->outcome));
    if (k->run->record)
        k->run->record(k->run->ctx, rec);
}

/* One call whose body has been read. Returns 1 when the connection may
 * carry another request. */
static int serve(gw_conn *c, const gw_req *q, gw_run *run)
{
    int64_t t0 = clock_mono_ns();
    call k = {
        .c = c, .q = q, .run = run, .anthropic = run->provider == GATEWAY_ANTHROPIC, .length = -1};
    k.key = run->key;
    k.klen = strlen(run->key);
    if (!(k.hold = malloc(k.klen))) {
        refuse(&k, 500, k.anthropic ? "api_error" : "server_error", NULL, "out of memory");
        return 0;
    }
    gw_usage_init(&k.up, run->provider, 0);
    char asked[128];
    gw_request_model(asked, sizeof(asked), q->body.data ? q->body.data : "", q->body.len);
    gateway_call rec = {.method = q->method, .path = q->path, .error = "", .ttfb_us = -1};
    rec.request_bytes = q->body.len;
    char error[160] = "";
    int rc = 0;
    if (!refused(&k, asked, &rec)) {
        rc = forward(&k, &rec, t0);
        if (rc)
            snprintf(error, sizeof(error), "%s", farm_error_last());
    }
    /* The record (the run's callback counts the spend, durably) comes before
     * the agent can see the answer's end, so its next call's budget check
     * sees this call's cost: no wait, no estimate. */
    finish(&k, &rec, asked, t0, error);
    if (rc == 0 && rec.outcome == GATEWAY_CALL_OK)
        rc = end_answer(&k);
    free(k.hold);
    return rc == 0 && !k.client_gone && k.framing != FR_CLOSE;
}

int gw_call_serve(gw_conn *c, gw_req *q, gw_in *in)
{
    gateway *gw = c->gw;
    gw_run *run = gw_run_get(gw, token_of(q));
    if (!run) {
        int a = looks_anthropic(q);
        gw_send_error(c, q, a, 401, a ? "authentication_error" : "invalid_request_error",
                      a ? NULL : "invalid_api_key",
                      "farm gateway: invalid API key (use the token given to this run)", 1);
        return 0;
    }
    int anthropic = run->provider == GATEWAY_ANTHROPIC, again = 0, status;
    if (!path_allowed(run, q->path)) {
        gw_send_error(c, q, anthropic, 404, anthropic ? "not_found_error" : "invalid_request_error",
                      anthropic ? NULL : "unknown_url",
                      "farm gateway: this path is not open to the agent", 1);
    } else if (gw_req_read_body(q, &status, c, in)) {
        if (status)
            gw_send_error(c, q, anthropic, status,
                          status == 413 && anthropic ? "request_too_large"
                                                     : "invalid_request_error",
                          NULL, gw_reason(status), 1);
    } else {
        gw_conn_serving(c, run);
        again = serve(c, q, run);
        gw_conn_serving(c, NULL);
    }
    gw_run_put(gw, run);
    return again && q->keep_alive;
}
