/*
 * test_gateway.c - the model gateway against tests/fakes/fake_model.py.
 *
 * One fake (python3, port 0, accepting only REAL_KEY) and one gateway (TCP
 * and a Unix socket) serve the whole group; each test registers its own runs.
 * Requests go to the gateway from a raw socket client, so the tests see the
 * exact bytes an agent would get; the fake's request log shows what reached
 * the upstream. The usage reader is also fed transcripts directly, cut at
 * every position.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"
#include "farm/gateway/gateway.h"
#include "farm/gateway/internal.h"

#include <jansson.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define REAL_KEY "sk-ant-REAL-0123456789abcdefghijklmnopqrstuvwxyz"
#define IDLE_MS  1000

static pid_t fake_pid;
static char fake_url[64];
static gateway *gw;
static int gw_port;
static char sock_dir[64], sock_path[128];

/* ---- the fake ---------------------------------------------------------------------- */

static int fake_start(void)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/fakes/fake_model.py", src ? src : FARM_SOURCE_DIR);
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("python3", "python3", script, "--key", REAL_KEY, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[32] = {0};
    size_t n = 0;
    int64_t deadline = clock_mono_ms() + 20000;
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(p[0]);
    fake_pid = pid;
    int port = atoi(line);
    snprintf(fake_url, sizeof fake_url, "http://127.0.0.1:%d", port);
    return port > 0 ? 0 : -1;
}

/* The fake's request log (caller decrefs). */
static json_t *fake_requests(void)
{
    char url[128];
    snprintf(url, sizeof url, "%s/_fake/requests", fake_url);
    http_request req = HTTP_REQUEST_INIT;
    req.url = url;
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    json_t *j = json_loads(buf_cstr(&r.body), 0, NULL);
    http_response_free(&r);
    assert_true(json_is_array(j));
    return j;
}

static size_t fake_count(void)
{
    json_t *j = fake_requests();
    size_t n = json_array_size(j);
    json_decref(j);
    return n;
}

/* The last request the fake saw (a new reference). */
static json_t *fake_last(void)
{
    json_t *j = fake_requests();
    json_t *last = json_incref(json_array_get(j, json_array_size(j) - 1));
    json_decref(j);
    assert_non_null(last);
    return last;
}

static int setup_group(void **state)
{
    if (http_global_init() || fake_start())
        return -1;
    snprintf(sock_dir, sizeof sock_dir, "/tmp/farm-gw-XXXXXX");
    if (!mkdtemp(sock_dir))
        return -1;
    snprintf(sock_path, sizeof sock_path, "%s/gw.sock", sock_dir);
    gateway_opts o = GATEWAY_OPTS_INIT;
    o.unix_path = sock_path;
    o.tcp_port = 0;
    o.idle_timeout_ms = IDLE_MS;
    o.client_timeout_ms = 5000;
    if (gateway_start(&gw, &o))
        return -1;
    gw_port = gateway_tcp_port(gw);
    return gw_port > 0 ? 0 : -1;
}

static int teardown_group(void **state)
{
    gateway_stop(gw);
    rmdir(sock_dir);
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
    }
    http_global_cleanup();
    return 0;
}

/* ---- records and budgets -------------------------------------------------------------- */

typedef struct rec_log {
    pthread_mutex_t lock;
    int n;
    gateway_call calls[32];
    char models[32][128];
    char errors[32][256];
    /* the budget */
    int deny;
    int asked;
    double last_spent;
    char last_model[128];
    int record_delay_ms; /* a slow record (a store's commit): the race it must not open */
} rec_log;

static void on_record(void *ctx, const gateway_call *c)
{
    rec_log *l = ctx;
    if (l->record_delay_ms > 0)
        usleep((useconds_t)l->record_delay_ms * 1000);
    pthread_mutex_lock(&l->lock);
    if (l->n < 32) {
        l->calls[l->n] = *c;
        snprintf(l->models[l->n], sizeof l->models[0], "%s", c->model);
        snprintf(l->errors[l->n], sizeof l->errors[0], "%s", c->error);
        l->calls[l->n].model = l->models[l->n];
        l->calls[l->n].error = l->errors[l->n];
        l->calls[l->n].method = l->calls[l->n].path = NULL;
        l->n++;
    }
    pthread_mutex_unlock(&l->lock);
}

static int on_budget(void *ctx, double spent, const char *model, char *why, size_t n)
{
    rec_log *l = ctx;
    pthread_mutex_lock(&l->lock);
    l->asked++;
    l->last_spent = spent;
    snprintf(l->last_model, sizeof l->last_model, "%s", model);
    int deny = l->deny;
    pthread_mutex_unlock(&l->lock);
    if (deny)
        snprintf(why, n, "the session's budget of $0.01 is spent");
    return deny ? -1 : 0;
}

static rec_log *log_new(void)
{
    rec_log *l = calloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

/* The n-th record (0-based), waiting up to ms for it. */
static const gateway_call *record_wait(rec_log *l, int i, int ms)
{
    int64_t end = clock_mono_ms() + ms;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        int n = l->n;
        pthread_mutex_unlock(&l->lock);
        if (n > i)
            return &l->calls[i];
        if (clock_mono_ms() > end)
            return NULL;
        usleep(5000);
    }
}

static char *run_add(gateway_provider p, rec_log *l, int with_budget)
{
    gateway_run_opts o = GATEWAY_RUN_OPTS_INIT;
    o.provider = p;
    o.upstream = fake_url;
    o.api_key = REAL_KEY;
    o.record = on_record;
    o.budget = with_budget ? on_budget : NULL;
    o.ctx = l;
    o.label = "test";
    char *tok;
    assert_int_equal(gateway_run_add(&tok, gw, &o), 0);
    assert_int_equal(strlen(tok), 69);
    assert_memory_equal(tok, "farm-", 5);
    return tok;
}

/* ---- a raw client ------------------------------------------------------------------------ */

typedef struct answer {
    int status;
    char head[8192];
    char *raw; /* every byte received */
    size_t raw_len;
    char *body; /* de-chunked */
    size_t body_len;
    int complete; /* the body's framing ended properly */
} answer;

static int connect_tcp(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)gw_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_request(int fd, const char *method, const char *path, const char *auth,
                         const char *const *headers, const char *body)
{
    char req[65536];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path);
    if (auth)
        n += snprintf(req + n, sizeof req - n, "%s\r\n", auth);
    for (const char *const *h = headers; h && *h; h++)
        n += snprintf(req + n, sizeof req - n, "%s\r\n", *h);
    if (body)
        n += snprintf(req + n, sizeof req - n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
    n += snprintf(req + n, sizeof req - n, "\r\n%s", body ? body : "");
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
}

/* Split raw into status, head and body (de-chunked when chunked). */
static void parse_answer(answer *a)
{
    a->status = 0;
    a->complete = 0;
    char *end = a->raw ? strstr(a->raw, "\r\n\r\n") : NULL;
    if (!end)
        return;
    size_t hl = (size_t)(end - a->raw);
    snprintf(a->head, sizeof a->head, "%.*s", (int)(hl < sizeof a->head ? hl : sizeof a->head - 1),
             a->raw);
    sscanf(a->raw, "HTTP/1.%*d %d", &a->status);
    const char *p = end + 4, *stop = a->raw + a->raw_len;
    a->body = calloc(1, a->raw_len + 1);
    a->body_len = 0;
    if (!strcasestr(a->head, "transfer-encoding: chunked")) {
        memcpy(a->body, p, (size_t)(stop - p));
        a->body_len = (size_t)(stop - p);
        const char *cl = strcasestr(a->head, "content-length:");
        a->complete = cl && (size_t)atol(cl + 15) == a->body_len;
        return;
    }
    while (p < stop) {
        char *e;
        unsigned long n = strtoul(p, &e, 16);
        if (e == p || e + 2 > stop || memcmp(e, "\r\n", 2) != 0)
            return;
        p = e + 2;
        if (n == 0) {
            a->complete = p + 2 <= stop && memcmp(p, "\r\n", 2) == 0;
            return;
        }
        if (p + n + 2 > stop)
            return;
        memcpy(a->body + a->body_len, p, n);
        a->body_len += n;
        p += n + 2;
    }
}

/* Read until the server closes (or timeout_ms passes). */
static void read_answer(int fd, answer *a, int timeout_ms)
{
    memset(a, 0, sizeof(*a));
    size_t cap = 1 << 16;
    a->raw = malloc(cap + 1);
    int64_t end = clock_mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int64_t left = end - clock_mono_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        if (a->raw_len == cap) {
            cap *= 2;
            a->raw = realloc(a->raw, cap + 1);
        }
        ssize_t r = recv(fd, a->raw + a->raw_len, cap - a->raw_len, 0);
        if (r <= 0)
            break;
        a->raw_len += (size_t)r;
    }
    a->raw[a->raw_len] = '\0';
    parse_answer(a);
}

static void answer_free(answer *a)
{
    free(a->raw);
    free(a->body);
}

/* One request on a new connection (Connection: close). */
static void ask(answer *a, const char *path, const char *auth, const char *const *headers,
                const char *body)
{
    const char *h[16] = {"Connection: close"};
    int n = 1;
    for (const char *const *x = headers; x && *x && n < 15; x++)
        h[n++] = *x;
    int fd = connect_tcp();
    send_request(fd, body ? "POST" : "GET", path, auth, h, body);
    read_answer(fd, a, 15000);
    close(fd);
}

static char *auth_x(const char *tok)
{
    static char b[128];
    snprintf(b, sizeof b, "x-api-key: %s", tok);
    return b;
}

static char *auth_bearer(const char *tok)
{
    static char b[128];
    snprintf(b, sizeof b, "Authorization: Bearer %s", tok);
    return b;
}

static const char *MSG_STREAM =
    "{\"model\":\"claude-sonnet-5-5\",\"stream\":true,\"max_tokens\":100,"
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
static const char *MSG_PLAIN = "{\"model\":\"claude-sonnet-5-5\",\"max_tokens\":100,"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* Sonnet 5.5 at 2 / 10 / 0.10 read / 2.50 write for the fake's usage. */
static const double SONNET_COST = (120 * 2.0 + 3000 * 0.10 + 500 * 2.50 + 42 * 10.0) / 1e6;

/* The events of an SSE body in order, by their "event:" names, "|"-joined. */
static void event_names(char *out, size_t n, const char *body)
{
    out[0] = '\0';
    for (const char *p = body; (p = strstr(p, "event: ")) != NULL;) {
        p += 7;
        size_t l = strcspn(p, "\r\n");
        size_t have = strlen(out);
        snprintf(out + have, n - have, "%s%.*s", have ? "|" : "", (int)l, p);
    }
}

/* ---- tests: the happy path ------------------------------------------------------------------ */

static void anthropic_stream_passes_through(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    answer a;
    ask(&a, "/v1/messages?beta=true", auth_x(tok), NULL, MSG_STREAM);
    assert_int_equal(a.status, 200);
    assert_true(a.complete);
    assert_non_null(strcasestr(a.head, "content-type: text/event-stream"));
    assert_non_null(strcasestr(a.head, "request-id: req_fake_"));
    char names[1024];
    event_names(names, sizeof names, a.body);
    assert_string_equal(names, "message_start|ping|content_block_start|content_block_delta|"
                               "content_block_delta|content_block_delta|content_block_stop|"
                               "message_delta|message_stop");

    /* the upstream got the real key, not the token, and the query */
    json_t *last = fake_last();
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(last, "headers"), "x-api-key")),
        REAL_KEY);
    assert_string_equal(json_string_value(json_object_get(last, "query")), "beta=true");
    char *dump = json_dumps(json_object_get(last, "headers"), 0);
    assert_null(strstr(dump, tok));
    free(dump);
    json_decref(last);

    const gateway_call *c = record_wait(l, 0, 2000);
    assert_non_null(c);
    assert_int_equal(c->outcome, GATEWAY_CALL_OK);
    assert_int_equal(c->status, 200);
    assert_true(c->streamed);
    assert_true(c->usage_seen);
    assert_string_equal(c->model, "claude-sonnet-5-5");
    assert_int_equal(c->usage.input, 120);
    assert_int_equal(c->usage.output, 42);
    assert_int_equal(c->usage.cache_read, 3000);
    assert_int_equal(c->usage.cache_write, 500);
    assert_true(c->priced);
    assert_true(fabs(c->cost_usd - SONNET_COST) < 1e-12);
    assert_true(c->ttfb_us >= 0 && c->ttfb_us <= c->total_us);
    assert_int_equal(c->response_bytes, a.body_len);

    gateway_run_stats st;
    assert_int_equal(gateway_run_stats_get(&st, gw, tok), 0);
    assert_int_equal(st.calls, 1);
    assert_true(fabs(st.spent_usd - SONNET_COST) < 1e-12);
    answer_free(&a);
    assert_int_equal(gateway_run_remove(gw, tok), 0);
    free(tok);
    free(l);
}

/* Each event reaches the agent as the upstream sends it: with the fake's
 * send times (": t=NS" comments, CLOCK_MONOTONIC) and 150 ms between events,
 * every event arrives within a few ms of being sent, long before the next. */
static void events_forwarded_as_they_come(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    int fd = connect_tcp();
    const char *h[] = {"x-fake-stamp: 1", "x-fake-delay-ms: 150", "x-fake-events: 3",
                       "Connection: close", NULL};
    send_request(fd, "POST", "/v1/messages", auth_x(tok), h, MSG_STREAM);
    char b[65536];
    size_t n = 0, seen = 0;
    int events = 0;
    int64_t worst = 0;
    for (;;) {
        ssize_t r = recv(fd, b + n, sizeof b - 1 - n, 0);
        if (r <= 0)
            break;
        int64_t now = clock_mono_ns();
        n += (size_t)r;
        b[n] = '\0';
        /* every stamp that arrived in this read */
        for (char *p = b + seen; (p = strstr(p, ": t=")) != NULL && strchr(p, '\n'); p += 4) {
            int64_t sent = strtoll(p + 4, NULL, 10);
            if (now - sent > worst)
                worst = now - sent;
            events++;
            seen = (size_t)(p + 4 - b);
        }
    }
    close(fd);
    assert_int_equal(events, 9);
    assert_true(worst < 100 * 1000000LL); /* far less than the 150 ms between events */
    assert_non_null(record_wait(l, 0, 2000));
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

static void chunk_boundaries_anywhere(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    answer whole;
    ask(&whole, "/v1/messages", auth_x(tok), NULL, MSG_STREAM);
    assert_int_equal(whole.status, 200);
    static const char *sizes[] = {"x-fake-chunk-bytes: 1", "x-fake-chunk-bytes: 7",
                                  "x-fake-chunk-bytes: 64"};
    for (int i = 0; i < 3; i++) {
        const char *h[] = {sizes[i], NULL};
        answer a;
        ask(&a, "/v1/messages", auth_x(tok), h, MSG_STREAM);
        assert_int_equal(a.status, 200);
        assert_true(a.complete);
        /* the same events (ids aside, which count requests) */
        char n1[1024], n2[1024];
        event_names(n1, sizeof n1, whole.body);
        event_names(n2, sizeof n2, a.body);
        assert_string_equal(n1, n2);
        assert_int_equal(a.body_len, whole.body_len);
        const gateway_call *c = record_wait(l, i + 1, 2000);
        assert_non_null(c);
        assert_int_equal(c->usage.input, 120);
        assert_int_equal(c->usage.output, 42);
        assert_int_equal(c->usage.cache_write, 500);
        answer_free(&a);
    }
    /* one byte per chunk came through as many chunks: forwarded as they came */
    answer_free(&whole);
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

static void usage_of_every_provider(void **state)
{
    static const struct {
        gateway_provider p;
        const char *path, *body;
        int streamed;
    } cases[] = {
        {GATEWAY_ANTHROPIC, "/v1/messages",
         "{\"model\":\"claude-sonnet-5-5\",\"max_tokens\":5,\"messages\":[]}", 0},
        {GATEWAY_OPENAI_RESPONSES, "/v1/responses", "{\"model\":\"gpt-5.4\",\"input\":\"hi\"}", 0},
        {GATEWAY_OPENAI_RESPONSES, "/v1/responses",
         "{\"model\":\"gpt-5.4\",\"input\":\"hi\",\"stream\":true}", 1},
        {GATEWAY_OPENAI_CHAT, "/v1/chat/completions",
         "{\"model\":\"gpt-5.4\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0},
        {GATEWAY_OPENAI_CHAT, "/v1/chat/completions",
         "{\"model\":\"gpt-5.4\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
         "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rec_log *l = log_new();
        char *tok = run_add(cases[i].p, l, 0);
        answer a;
        ask(&a, cases[i].path, cases[i].p == GATEWAY_ANTHROPIC ? auth_x(tok) : auth_bearer(tok),
            NULL, cases[i].body);
        assert_int_equal(a.status, 200);
        assert_true(a.complete);
        const gateway_call *c = record_wait(l, 0, 2000);
        assert_non_null(c);
        assert_int_equal(c->outcome, GATEWAY_CALL_OK);
        assert_int_equal(c->streamed, cases[i].streamed);
        assert_true(c->usage_seen);
        assert_int_equal(c->usage.output, 42);
        assert_int_equal(c->usage.cache_read, 3000);
        if (cases[i].p == GATEWAY_ANTHROPIC) {
            assert_int_equal(c->usage.input, 120);
            assert_int_equal(c->usage.cache_write, 500);
            assert_true(fabs(c->cost_usd - SONNET_COST) < 1e-12);
        } else {
            /* 3120 input of which 3000 cached: 120 uncached */
            assert_int_equal(c->usage.input, 120);
            assert_int_equal(c->usage.cache_write, 0);
            assert_string_equal(c->model, "gpt-5.4");
            double want = (120 * 2.50 + 3000 * 0.25 + 42 * 15.0) / 1e6;
            assert_true(fabs(c->cost_usd - want) < 1e-12);
            json_t *last = fake_last();
            assert_string_equal(json_string_value(json_object_get(json_object_get(last, "headers"),
                                                                  "authorization")),
                                "Bearer " REAL_KEY);
            json_decref(last);
        }
        answer_free(&a);
        gateway_run_remove(gw, tok);
        free(tok);
        free(l);
    }
}

static void keep_alive_and_unix_socket(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    /* two requests on one TCP connection */
    int fd = connect_tcp();
    for (int i = 0; i < 2; i++) {
        send_request(fd, "POST", "/v1/messages", auth_x(tok), NULL, MSG_PLAIN);
        /* one answer: its head, then Content-Length bytes */
        char b[16384];
        size_t n = 0;
        char *end = NULL;
        long want = -1;
        b[0] = '\0';
        while (!end || (long)(n - (size_t)(end + 4 - b)) < want) {
            ssize_t r = recv(fd, b + n, sizeof b - 1 - n, 0);
            assert_true(r > 0);
            n += (size_t)r;
            b[n] = '\0';
            if (!end && (end = strstr(b, "\r\n\r\n")) != NULL) {
                const char *cl = strcasestr(b, "content-length:");
                assert_non_null(cl);
                want = atol(cl + 15);
            }
        }
        assert_memory_equal(b, "HTTP/1.1 200", 12);
        assert_null(strcasestr(b, "connection: close"));
        assert_non_null(strstr(end, "Hello from the fake model."));
    }
    close(fd);
    assert_non_null(record_wait(l, 1, 2000));

    /* the Unix socket, as the sandbox's relay uses it */
    char auth[128];
    snprintf(auth, sizeof auth, "x-api-key: %s", tok);
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    http_request req = HTTP_REQUEST_INIT;
    req.method = "POST";
    req.url = "http://localhost/v1/messages";
    req.unix_socket = sock_path;
    req.headers = h;
    req.body = MSG_PLAIN;
    req.body_len = strlen(MSG_PLAIN);
    req.max_retries = 0;
    http_response r;
    assert_int_equal(http_do(&r, &req), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(buf_cstr(&r.body), "Hello from the fake model."));
    http_response_free(&r);
    assert_non_null(record_wait(l, 2, 2000));
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

/* Read one whole answer from a keep-alive connection (Content-Length or
 * chunked); returns its status. */
static int read_one_answer(int fd, char *b, size_t cap)
{
    size_t n = 0;
    b[0] = '\0';
    for (;;) {
        answer a = {0};
        a.raw = malloc(n + 1);
        memcpy(a.raw, b, n);
        a.raw[n] = '\0';
        a.raw_len = n;
        parse_answer(&a);
        int done = a.complete, status = a.status;
        answer_free(&a);
        if (done)
            return status;
        struct pollfd pf = {fd, POLLIN, 0};
        assert_true(poll(&pf, 1, 15000) == 1);
        ssize_t r = recv(fd, b + n, cap - 1 - n, 0);
        assert_true(r > 0);
        n += (size_t)r;
        b[n] = '\0';
    }
}

/* A call's record (where the farm counts its spend) is delivered before the
 * agent can see its answer's end, so the next call's budget check counts it,
 * however slow the record: a streamed (chunked) answer and a whole
 * (Content-Length) one, on one keep-alive connection. */
static void record_before_the_answer_ends(void **state)
{
    rec_log *l = log_new();
    l->record_delay_ms = 300;
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 1);
    int fd = connect_tcp();
    static char b[1 << 16];
    const char *bodies[] = {MSG_STREAM, MSG_PLAIN, MSG_STREAM, MSG_PLAIN};
    for (int i = 0; i < 4; i++) {
        send_request(fd, "POST", "/v1/messages", auth_x(tok), NULL, bodies[i]);
        assert_int_equal(read_one_answer(fd, b, sizeof b), 200);
        pthread_mutex_lock(&l->lock);
        int n = l->n, asked = l->asked;
        double spent = l->last_spent;
        pthread_mutex_unlock(&l->lock);
        assert_int_equal(n, i + 1); /* recorded already, not after a wait */
        assert_int_equal(asked, i + 1);
        /* the budget saw every earlier call's cost */
        assert_true(fabs(spent - i * SONNET_COST) < 1e-9);
    }
    close(fd);
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
    (void)state;
}

/* ---- tests: refusals ------------------------------------------------------------------------ */

static void bad_token_refused_without_upstream(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    size_t before = fake_count();
    answer a;
    char wrong[80];
    snprintf(wrong, sizeof wrong, "%s", tok);
    wrong[10] ^= 1;
    ask(&a, "/v1/messages", auth_x(wrong), NULL, MSG_STREAM);
    assert_int_equal(a.status, 401);
    json_t *j = json_loadb(a.body, a.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                        "authentication_error");
    json_decref(j);
    answer_free(&a);

    /* the real key itself is no token either; nor is nothing */
    ask(&a, "/v1/messages", "x-api-key: " REAL_KEY, NULL, MSG_STREAM);
    assert_int_equal(a.status, 401);
    answer_free(&a);
    ask(&a, "/v1/responses", NULL, NULL, "{\"model\":\"gpt-5.4\"}");
    assert_int_equal(a.status, 401);
    j = json_loadb(a.body, a.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "invalid_api_key");
    json_decref(j);
    answer_free(&a);

    /* a path the run may not use */
    ask(&a, "/v1/files", auth_x(tok), NULL, "{}");
    assert_int_equal(a.status, 404);
    answer_free(&a);
    ask(&a, "/v1/models/../files", auth_x(tok), NULL, NULL);
    assert_int_equal(a.status, 404);
    answer_free(&a);

    /* a removed run's token is worthless */
    assert_int_equal(gateway_run_remove(gw, tok), 0);
    ask(&a, "/v1/messages", auth_x(tok), NULL, MSG_STREAM);
    assert_int_equal(a.status, 401);
    answer_free(&a);
    assert_int_equal(gateway_run_remove(gw, tok), FARM_ENOTFOUND);

    assert_int_equal(fake_count(), before);
    assert_int_equal(l->n, 0);
    free(tok);
    free(l);
}

static void budget_refusal_in_provider_shape(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 1);
    answer a;
    ask(&a, "/v1/messages", auth_x(tok), NULL, MSG_PLAIN);
    assert_int_equal(a.status, 200);
    answer_free(&a);
    assert_non_null(record_wait(l, 0, 2000));
    assert_int_equal(l->asked, 1);
    assert_true(l->last_spent == 0);
    assert_string_equal(l->last_model, "claude-sonnet-5-5");

    size_t before = fake_count();
    l->deny = 1;
    ask(&a, "/v1/messages", auth_x(tok), NULL, MSG_STREAM);
    assert_int_equal(a.status, 400);
    assert_non_null(strcasestr(a.head, "x-should-retry: false"));
    json_t *j = json_loadb(a.body, a.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "$0.01 is spent"));
    json_decref(j);
    answer_free(&a);
    /* asked with what the run had spent: the first call's cost */
    assert_true(fabs(l->last_spent - SONNET_COST) < 1e-12);
    const gateway_call *c = record_wait(l, 1, 2000);
    assert_non_null(c);
    assert_int_equal(c->outcome, GATEWAY_CALL_BUDGET);
    assert_int_equal(c->status, 400);
    assert_true(c->cost_usd == 0);
    assert_int_equal(fake_count(), before);
    gateway_run_remove(gw, tok);
    free(tok);

    /* OpenAI: 429 insufficient_quota */
    rec_log *l2 = log_new();
    l2->deny = 1;
    tok = run_add(GATEWAY_OPENAI_RESPONSES, l2, 1);
    ask(&a, "/v1/responses", auth_bearer(tok), NULL, "{\"model\":\"gpt-5.4\",\"stream\":true}");
    assert_int_equal(a.status, 429);
    j = json_loadb(a.body, a.body_len, 0, NULL);
    e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "insufficient_quota");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "insufficient_quota");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "budget"));
    json_decref(j);
    answer_free(&a);
    assert_int_equal(fake_count(), before);
    gateway_run_stats st;
    gateway_run_stats_get(&st, gw, tok);
    assert_int_equal(st.refused, 1);
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
    free(l2);
}

static void unpriced_model_refused(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    size_t before = fake_count();
    answer a;
    ask(&a, "/v1/messages", auth_x(tok), NULL,
        "{\"model\":\"claude-unknown-9\",\"max_tokens\":5,\"messages\":[]}");
    assert_int_equal(a.status, 400);
    assert_non_null(strstr(a.body, "no price is known for model 'claude-unknown-9'"));
    answer_free(&a);
    assert_int_equal(fake_count(), before);
    assert_int_equal(record_wait(l, 0, 2000)->outcome, GATEWAY_CALL_UNPRICED);
    gateway_run_remove(gw, tok);
    free(tok);

    /* with the caller's price it goes through and is counted at that price */
    gateway_price mine = {"claude-unknown-9", 1.0, 2.0, 0.5, 1.5, 0, 0, 0, 0};
    gateway_run_opts o = GATEWAY_RUN_OPTS_INIT;
    o.upstream = fake_url;
    o.api_key = REAL_KEY;
    o.prices = &mine;
    o.nprices = 1;
    o.record = on_record;
    o.ctx = l;
    assert_int_equal(gateway_run_add(&tok, gw, &o), 0);
    ask(&a, "/v1/messages", auth_x(tok), NULL,
        "{\"model\":\"claude-unknown-9\",\"max_tokens\":5,\"messages\":[]}");
    assert_int_equal(a.status, 200);
    const gateway_call *c = record_wait(l, 1, 2000);
    assert_true(c->priced);
    assert_true(fabs(c->cost_usd - (120 * 1.0 + 3000 * 0.5 + 500 * 1.5 + 42 * 2.0) / 1e6) < 1e-12);
    answer_free(&a);
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

/* ---- tests: the key never leaks back --------------------------------------------------------- */

static void real_key_never_reaches_the_client(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    char stars[sizeof(REAL_KEY)];
    memset(stars, '*', sizeof(REAL_KEY) - 1);
    stars[sizeof(REAL_KEY) - 1] = '\0';
    /* The key is masked where it is written out whole: headers, an error
     * body, one event, however the network cuts it. (Spread over several
     * deltas it would not be whole anywhere; but the model never sees the
     * key, so it cannot write it out.) */
    static const char *const variants[][4] = {
        {"x-fake-echo-auth: 1", NULL, NULL, NULL},
        {"x-fake-echo-auth: 1", "x-fake-events: 1", "x-fake-chunk-bytes: 5", NULL},
        {"x-fake-echo-auth: 1", "x-fake-events: 1", "x-fake-chunk-bytes: 1", NULL},
    };
    const char *bodies[] = {MSG_PLAIN, MSG_STREAM, MSG_STREAM};
    for (int i = 0; i < 3; i++) {
        answer a;
        ask(&a, "/v1/messages", auth_x(tok), variants[i], bodies[i]);
        assert_int_equal(a.status, 200);
        assert_true(a.complete);
        assert_null(memmem(a.raw, a.raw_len, REAL_KEY, strlen(REAL_KEY)));
        /* it was there to leak: masked in the header and in the text */
        assert_non_null(strcasestr(a.head, "x-fake-echo: "));
        assert_non_null(strstr(a.head, stars));
        assert_non_null(strstr(a.body, "auth="));
        assert_non_null(strstr(strstr(a.body, "auth="), stars));
        answer_free(&a);
    }
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

/* ---- tests: failures ----------------------------------------------------------------------------
 */

static void client_disconnects_mid_stream(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    size_t before = fake_count();
    int fd = connect_tcp();
    const char *h[] = {"x-fake-events: 200", "x-fake-delay-ms: 20", NULL};
    send_request(fd, "POST", "/v1/messages", auth_x(tok), h, MSG_STREAM);
    char b[65536];
    size_t n = 0;
    b[0] = '\0';
    while (!strstr(b, "content_block_delta")) {
        ssize_t r = recv(fd, b + n, sizeof b - 1 - n, 0);
        assert_true(r > 0);
        n += (size_t)r;
        b[n] = '\0';
    }
    int64_t t0 = clock_mono_ms();
    close(fd);
    const gateway_call *c = record_wait(l, 0, 3000);
    assert_non_null(c);
    assert_true(clock_mono_ms() - t0 < 1000);
    assert_int_equal(c->outcome, GATEWAY_CALL_CLIENT_GONE);
    assert_int_equal(c->status, 200);
    /* the upstream call was dropped, not read to its end */
    int aborted = 0;
    for (int i = 0; i < 100 && !aborted; i++) {
        json_t *j = fake_requests();
        json_t *last = json_array_get(j, json_array_size(j) - 1);
        aborted = json_is_true(json_object_get(last, "aborted"));
        json_decref(j);
        if (!aborted)
            usleep(20 * 1000);
    }
    assert_true(aborted);
    assert_int_equal(fake_count(), before + 1);
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

static void upstream_stall_times_out(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    /* mid-stream: the agent has the head and two events, then the stream is cut */
    const char *h[] = {"x-fake-stall-after: 2", "x-fake-stall-ms: 5000", NULL};
    int64_t t0 = clock_mono_ms();
    answer a;
    ask(&a, "/v1/messages", auth_x(tok), h, MSG_STREAM);
    int64_t took = clock_mono_ms() - t0;
    assert_int_equal(a.status, 200);
    assert_false(a.complete);
    assert_non_null(strstr(a.body, "event: ping"));
    assert_null(strstr(a.body, "message_stop"));
    assert_true(took >= IDLE_MS - 50 && took < IDLE_MS + 1500);
    const gateway_call *c = record_wait(l, 0, 2000);
    assert_non_null(c);
    assert_int_equal(c->outcome, GATEWAY_CALL_TIMEOUT);
    assert_non_null(strstr(c->error, "nothing received"));
    /* message_start's input side was read before the stall */
    assert_int_equal(c->usage.input, 120);
    answer_free(&a);

    /* before the head: the agent gets a 504 in the provider's shape */
    t0 = clock_mono_ms();
    ask(&a, "/v1/messages", auth_x(tok), h, MSG_PLAIN);
    took = clock_mono_ms() - t0;
    assert_int_equal(a.status, 504);
    assert_true(took < IDLE_MS + 1500);
    json_t *j = json_loadb(a.body, a.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                        "timeout_error");
    json_decref(j);
    c = record_wait(l, 1, 2000);
    assert_int_equal(c->outcome, GATEWAY_CALL_TIMEOUT);
    assert_int_equal(c->status, 504);
    answer_free(&a);
    gateway_run_remove(gw, tok);
    free(tok);
    free(l);
}

typedef struct slow_call {
    const char *tok;
    answer a;
} slow_call;

static void *slow_request(void *p)
{
    slow_call *s = p;
    const char *h[] = {"x-fake-events: 100", "x-fake-delay-ms: 30", NULL};
    ask(&s->a, "/v1/messages", auth_x(s->tok), h, MSG_STREAM);
    return NULL;
}

static void run_removal_ends_its_calls(void **state)
{
    rec_log *l = log_new();
    char *tok = run_add(GATEWAY_ANTHROPIC, l, 0);
    slow_call s = {.tok = tok};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_request, &s), 0);
    usleep(400 * 1000); /* streaming by now */
    int64_t t0 = clock_mono_ms();
    assert_int_equal(gateway_run_remove(gw, tok), 0);
    assert_true(clock_mono_ms() - t0 < 1000);
    /* its record came before remove returned */
    assert_int_equal(l->n, 1);
    assert_int_equal(l->calls[0].outcome, GATEWAY_CALL_CANCELLED);
    pthread_join(th, NULL);
    assert_int_equal(s.a.status, 200);
    assert_false(s.a.complete);
    answer_free(&s.a);
    free(tok);
    free(l);
}

typedef struct slow_via {
    int port;
    const char *tok;
    answer a;
} slow_via;

static void *slow_request_to(void *p)
{
    slow_via *s = p;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char *h[] = {"x-fake-events: 100", "x-fake-delay-ms: 30", "Connection: close", NULL};
        send_request(fd, "POST", "/v1/messages", auth_x(s->tok), h, MSG_STREAM);
        read_answer(fd, &s->a, 10000);
    }
    close(fd);
    return NULL;
}

/* Stopping the gateway ends the calls in flight, delivers their records
 * and returns promptly. */
static void stop_ends_calls_in_flight(void **state)
{
    gateway_opts o = GATEWAY_OPTS_INIT;
    o.tcp_port = 0;
    gateway *g;
    assert_int_equal(gateway_start(&g, &o), 0);
    rec_log *l = log_new();
    gateway_run_opts r = GATEWAY_RUN_OPTS_INIT;
    r.upstream = fake_url;
    r.api_key = REAL_KEY;
    r.record = on_record;
    r.ctx = l;
    char *tok;
    assert_int_equal(gateway_run_add(&tok, g, &r), 0);
    slow_via s = {.port = gateway_tcp_port(g), .tok = tok};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_request_to, &s), 0);
    usleep(400 * 1000);
    int64_t t0 = clock_mono_ms();
    gateway_stop(g);
    assert_true(clock_mono_ms() - t0 < 1000);
    assert_int_equal(l->n, 1);
    assert_int_equal(l->calls[0].outcome, GATEWAY_CALL_CANCELLED);
    pthread_join(th, NULL);
    assert_int_equal(s.a.status, 200);
    assert_false(s.a.complete);
    answer_free(&s.a);
    free(tok);
    free(l);

    /* nothing to listen on is an error; so is a socket path held by a file */
    gateway_opts none = GATEWAY_OPTS_INIT;
    assert_int_equal(gateway_start(&g, &none), FARM_EINVALID);
    char file[160];
    snprintf(file, sizeof file, "%s/plain", sock_dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    none.unix_path = file;
    assert_int_equal(gateway_start(&g, &none), FARM_EINVALID);
    unlink(file);
}

static void upstream_unreachable_is_502(void **state)
{
    rec_log *l = log_new();
    gateway_run_opts o = GATEWAY_RUN_OPTS_INIT;
    o.provider = GATEWAY_OPENAI_RESPONSES;
    o.upstream = "http://127.0.0.1:1";
    o.api_key = REAL_KEY;
    o.record = on_record;
    o.ctx = l;
    char *tok;
    assert_int_equal(gateway_run_add(&tok, gw, &o), 0);
    answer a;
    ask(&a, "/v1/responses", auth_bearer(tok), NULL, "{\"model\":\"gpt-5.4\"}");
    assert_int_equal(a.status, 502);
    json_t *j = json_loadb(a.body, a.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                        "server_error");
    json_decref(j);
    answer_free(&a);
    assert_int_equal(record_wait(l, 0, 2000)->outcome, GATEWAY_CALL_UPSTREAM);
    gateway_run_remove(gw, tok);
    free(tok);

    /* a run's upstream must be https, or http to this machine */
    o.upstream = "http://api.anthropic.com";
    assert_int_equal(gateway_run_add(&tok, gw, &o), FARM_EINVALID);
    o.upstream = "https://api.anthropic.com";
    o.api_key = "";
    assert_int_equal(gateway_run_add(&tok, gw, &o), FARM_EINVALID);
    free(l);
}

static void malformed_requests_refused(void **state)
{
    static const char *const bad[] = {
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        "GET /v1/models HTTP/1.1\r\nHost: x\r\n folded: line\r\n\r\n",
        "get /v1/models HTTP/1.1\r\n\r\n",
        "GET v1/models HTTP/1.1\r\n\r\n",
        "GET /v1/models HTTP/2.0\r\n\r\n",
        "POST /v1/messages HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    };
    static const int want[] = {400, 400, 400, 400, 505, 413};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = connect_tcp();
        assert_true(send(fd, bad[i], strlen(bad[i]), MSG_NOSIGNAL) > 0);
        answer a;
        read_answer(fd, &a, 5000);
        close(fd);
        assert_int_equal(a.status, want[i]);
        answer_free(&a);
    }
}

/* ---- tests: the usage reader on its own
 * ---------------------------------------------------------- */

static const char *ANTHROPIC_SSE =
    "event: message_start\r\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-opus-5-5\","
    "\"content\":[],\"usage\":{\"input_tokens\":11,\"cache_creation_input_tokens\":22,"
    "\"cache_read_input_tokens\":33,\"output_tokens\":1,\"cache_creation\":"
    "{\"ephemeral_5m_input_tokens\":2,\"ephemeral_1h_input_tokens\":20}}}}\r\n"
    "\r\n"
    ": a comment\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"usage\\\": {\\\"output_tokens\\\": 999}}\"}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"content_block\":{\"type\":\"tool_use\","
    "\"input\":{\"usage\":{\"output_tokens\":777},\"model\":\"not-this\"}}}\n\n"
    "event: message_delta\r"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\r"
    "data: \"usage\":{\"output_tokens\":44}}\r\r"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

static const char *RESPONSES_SSE =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5.5\",\"usage\":null}}\n\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"delta\":\"a \\\"quote\\\" and \\\\ "
    "and } and {\"}\n\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-5.5-2026-04-23\","
    "\"output\":[{\"content\":[{\"text\":\"usage\"}]}],\"usage\":{\"input_tokens\":1000,"
    "\"input_tokens_details\":{\"cached_tokens\":600},\"output_tokens\":50,"
    "\"output_tokens_details\":{\"reasoning_tokens\":9}}}}\n\n";

static const char *CHAT_SSE =
    "data: {\"model\":\"gpt-5.4-mini\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],"
    "\"usage\":null}\n\n"
    "data: {\"model\":\"gpt-5.4-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":70,"
    "\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":64}}}\n\n"
    "data: [DONE]\n\n";

static void check_usage(gateway_provider p, const char *text, const size_t *cuts, int ncuts,
                        const gateway_usage *want, const char *model)
{
    gw_usage_parser u;
    gw_usage_init(&u, p, 1);
    size_t at = 0, n = strlen(text);
    for (int i = 0; i < ncuts; i++) {
        gw_usage_feed(&u, text + at, cuts[i] - at);
        at = cuts[i];
    }
    gw_usage_feed(&u, text + at, n - at);
    gw_usage_finish(&u);
    gateway_usage got;
    gw_usage_get(&got, &u);
    assert_true(u.seen);
    assert_int_equal(got.input, want->input);
    assert_int_equal(got.output, want->output);
    assert_int_equal(got.cache_read, want->cache_read);
    assert_int_equal(got.cache_write, want->cache_write);
    assert_int_equal(got.cache_write_1h, want->cache_write_1h);
    assert_string_equal(u.model, model);
}

static void usage_reader_cut_anywhere(void **state)
{
    static const struct {
        gateway_provider p;
        const char **text;
        gateway_usage want;
        const char *model;
    } cases[] = {
        {GATEWAY_ANTHROPIC, &ANTHROPIC_SSE, {11, 44, 33, 22, 20}, "claude-opus-5-5"},
        {GATEWAY_OPENAI_RESPONSES, &RESPONSES_SSE, {400, 50, 600, 0, 0}, "gpt-5.5-2026-04-23"},
        {GATEWAY_OPENAI_CHAT, &CHAT_SSE, {6, 7, 64, 0, 0}, "gpt-5.4-mini"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *t = *cases[k].text;
        size_t n = strlen(t);
        check_usage(cases[k].p, t, NULL, 0, &cases[k].want, cases[k].model);
        /* in two pieces, cut at every position */
        for (size_t i = 1; i < n; i++)
            check_usage(cases[k].p, t, &i, 1, &cases[k].want, cases[k].model);
        /* in three pieces, cut at many pairs of positions */
        for (size_t i = 1; i < n; i += 3)
            for (size_t j = i + 1; j < n; j += 17) {
                size_t cuts[2] = {i, j};
                check_usage(cases[k].p, t, cuts, 2, &cases[k].want, cases[k].model);
            }
        /* one byte at a time */
        size_t *all = malloc(n * sizeof(size_t));
        for (size_t i = 0; i + 1 < n; i++)
            all[i] = i + 1;
        check_usage(cases[k].p, t, all, (int)n - 1, &cases[k].want, cases[k].model);
        free(all);
    }
}

static void usage_reader_bounded_on_big_bodies(void **state)
{
    /* a non-streamed answer with 4 MB of content before its usage */
    size_t big = 4u << 20;
    buf b;
    buf_init(&b, 8u << 20);
    buf_puts(&b, "{\"id\":\"m\",\"type\":\"message\",\"model\":\"claude-haiku-5-5\",\"content\":["
                 "{\"type\":\"text\",\"text\":\"");
    for (size_t i = 0; i < big / 64; i++)
        buf_puts(&b, "0123456789 {\\\"usage\\\":{\\\"input_tokens\\\":5}} abcdefghijklmnopq");
    buf_puts(&b, "\"}],\"usage\":{\"input_tokens\":150000,\"output_tokens\":9,"
                 "\"cache_read_input_tokens\":0,\"cache_creation_input_tokens\":0}}");
    gw_usage_parser u;
    gw_usage_init(&u, GATEWAY_ANTHROPIC, 0);
    for (size_t at = 0; at < b.len; at += 16384)
        gw_usage_feed(&u, b.data + at, b.len - at < 16384 ? b.len - at : 16384);
    gw_usage_finish(&u);
    gateway_usage got;
    gw_usage_get(&got, &u);
    assert_int_equal(got.input, 150000);
    assert_int_equal(got.output, 9);
    assert_string_equal(u.model, "claude-haiku-5-5");
    /* Haiku 5.5 over 100K prompt tokens: every rate 5x */
    size_t n;
    const gateway_price *p = gateway_price_find(gateway_prices_builtin(&n), n, u.model);
    assert_non_null(p);
    assert_true(fabs(gateway_cost(p, &got) - (150000 * 0.50 + 9 * 2.50) / 1e6) < 1e-12);

    /* a request's model, found at once at the top or after a big body */
    char model[128];
    gw_request_model(model, sizeof model, b.data, b.len);
    assert_string_equal(model, "claude-haiku-5-5");
    const char *late = "{\"messages\":[{\"model\":\"inner\"}],\"x\":\"\\\"model\\\"\","
                       "\"model\":\"gpt-5.4\"}";
    gw_request_model(model, sizeof model, late, strlen(late));
    assert_string_equal(model, "gpt-5.4");
    gw_request_model(model, sizeof model, "not json", 8);
    assert_string_equal(model, "");
    buf_free(&b);
}

static void prices_and_costs(void **state)
{
    size_t n;
    const gateway_price *t = gateway_prices_builtin(&n);
    assert_true(n > 20);
    assert_string_equal(gateway_price_find(t, n, "claude-sonnet-5-5")->model, "claude-sonnet-5-5");
    assert_string_equal(gateway_price_find(t, n, "claude-opus-4-5-20251101")->model,
                        "claude-opus-4-5");
    assert_string_equal(gateway_price_find(t, n, "claude-opus-4-20250514")->model, "claude-opus-4");
    assert_string_equal(gateway_price_find(t, n, "gpt-5.4-2026-03-05")->model, "gpt-5.4");
    assert_string_equal(gateway_price_find(t, n, "gpt-5.4-mini")->model, "gpt-5.4-mini");
    assert_null(gateway_price_find(t, n, "claude-opus-5-7")); /* no guessing by family */
    assert_null(gateway_price_find(t, n, "gpt-5.4-turbo"));
    assert_null(gateway_price_find(t, n, ""));

    /* 1-hour cache writes at their own price */
    const gateway_price *o = gateway_price_find(t, n, "claude-opus-5-5");
    gateway_usage u = {1000, 100, 10000, 3000, 1000};
    double want = (1000 * 4.0 + 10000 * 0.20 + 2000 * 5.0 + 1000 * 8.0 + 100 * 20.0) / 1e6;
    assert_true(fabs(gateway_cost(o, &u) - want) < 1e-12);
    /* GPT-5.4 past 272K prompt tokens: 2x in, 1.5x out */
    const gateway_price *g = gateway_price_find(t, n, "gpt-5.4");
    gateway_usage big = {200000, 1000, 100000, 0, 0};
    want = ((200000 * 2.50 + 100000 * 0.25) * 2 + 1000 * 15.0 * 1.5) / 1e6;
    assert_true(fabs(gateway_cost(g, &big) - want) < 1e-12);
    assert_string_equal(gateway_outcome_name(GATEWAY_CALL_CLIENT_GONE), "client_gone");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prices_and_costs),
        cmocka_unit_test(usage_reader_cut_anywhere),
        cmocka_unit_test(usage_reader_bounded_on_big_bodies),
        cmocka_unit_test(anthropic_stream_passes_through),
        cmocka_unit_test(events_forwarded_as_they_come),
        cmocka_unit_test(chunk_boundaries_anywhere),
        cmocka_unit_test(usage_of_every_provider),
        cmocka_unit_test(keep_alive_and_unix_socket),
        cmocka_unit_test(record_before_the_answer_ends),
        cmocka_unit_test(bad_token_refused_without_upstream),
        cmocka_unit_test(budget_refusal_in_provider_shape),
        cmocka_unit_test(unpriced_model_refused),
        cmocka_unit_test(real_key_never_reaches_the_client),
        cmocka_unit_test(client_disconnects_mid_stream),
        cmocka_unit_test(upstream_stall_times_out),
        cmocka_unit_test(run_removal_ends_its_calls),
        cmocka_unit_test(stop_ends_calls_in_flight),
        cmocka_unit_test(upstream_unreachable_is_502),
        cmocka_unit_test(malformed_requests_refused),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
