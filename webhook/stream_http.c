/*
 * stream_http.c - /v1/stream/...: the Durable Streams protocol over HTTP,
 * and POST /api/sessions/{id}/messages.
 *
 * The engine (farm/stream/stream.h) decides every outcome; this file maps requests
 * to it and results to status codes and headers. Live reads hold no thread:
 *
 * - long-poll: the handler reads; with nothing to send it registers a waiter
 *   and suspends the connection. The waiter (an append's commit, the
 *   deadline, a deletion) resumes it, and the handler runs again to answer.
 * - SSE: a chunked response whose content reader formats data and control
 *   events; caught up, it suspends the connection from inside the reader and
 *   a waiter resumes it. Every reader keeps its own position, so a slow one
 *   only falls behind: nothing is queued for it beyond one batch (32 KiB)
 *   and a 64 KiB socket buffer, and a reader that takes nothing for 30 s is
 *   disconnected, to resume from its last control event's offset.
 *   A comment heartbeat goes out every 15 s and the response ends after
 *   about 60 s so that clients reconnect with their offset.
 *
 * Reads need the viewer role, writes member (web_authorize). Session logs
 * ("sessions/{id}") are written by the farm only: the engine answers 403.
 */
#include "routes.h"
#include "metrics.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/intake/ingest.h"
#include "farm/store/store.h"
#include "farm/stream/stream.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define PREFIX             "/v1/stream/"
#define READ_BODY_CAP      (STREAM_MAX_APPEND * 2u + 1024u)
#define LONGPOLL_DEFAULT_S 30
#define LONGPOLL_MAX_S     120
#define SSE_BATCH          (32u << 10)
#define SSE_HEARTBEAT_MS   15000
#define SSE_LIFETIME_MS    60000
#define SSE_BLOCK          2048
#define SSE_KEEP           1024       /* buffer bytes a caught-up reader keeps */
#define SSE_SNDBUF         (64 << 10) /* kernel buffer per reader: fixed, not autotuned to MiBs */
#define SSE_STALL_S        30         /* a reader that takes nothing for this long is dropped */
#define MESSAGE_MAX        (64u << 10)

/* ---- answering with protocol headers ------------------------------------- */

static void common_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "cross-origin");
}

static void result_headers(struct MHD_Response *r, const stream_result *res)
{
    char num[32];
    if (res->next_offset[0])
        MHD_add_response_header(r, "Stream-Next-Offset", res->next_offset);
    if (res->closed)
        MHD_add_response_header(r, "Stream-Closed", "true");
    if (res->producer_epoch >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->producer_epoch);
        MHD_add_response_header(r, "Producer-Epoch", num);
    }
    if (res->producer_seq >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->producer_seq);
        MHD_add_response_header(r, "Producer-Seq", num);
    }
    if (res->expected_seq >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->expected_seq);
        MHD_add_response_header(r, "Producer-Expected-Seq", num);
    }
    if (res->received_seq >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->received_seq);
        MHD_add_response_header(r, "Producer-Received-Seq", num);
    }
}

static void meta_headers(struct MHD_Response *r, const stream_result *res)
{
    char num[40];
    if (res->content_type[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    if (res->ttl_s >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->ttl_s);
        MHD_add_response_header(r, "Stream-TTL", num);
    }
    if (res->expires_at_ms >= 0) {
        clock_format_rfc3339(num, sizeof(num), res->expires_at_ms);
        MHD_add_response_header(r, "Stream-Expires-At", num);
    }
}

/* Queue r with status; marks the request answered. Takes r. */
static int queue(web_request *req, int status, struct MHD_Response *r)
{
    common_headers(r);
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    req->answered = 1;
    req->status = status;
    metrics_http_count(req->route ? req->route->name : "stream", status);
    if (ok != MHD_YES) {
        farm_error_set("could not queue the response");
        return FARM_EIO;
    }
    return 0;
}

static struct MHD_Response *response(const void *body, size_t len)
{
    return MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
}

/* A 4xx/5xx from the engine: JSON error body plus the protocol headers. */
static int reply_result_error(web_request *req, const stream_result *res)
{
    json_t *o = json_pack("{s:s}", "error", res->error[0] ? res->error : "error");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    struct MHD_Response *r = response(text, text ? strlen(text) : 0);
    free(text);
    if (!r)
        return FARM_ENOMEM;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    result_headers(r, res);
    return queue(req, res->status, r);
}

static int reply_store_error(web_request *req, int rc)
{
    log_error("stream request failed", "path", req->path, "error", farm_error_last());
    return web_reply_error(req, rc == FARM_ENOMEM ? 500 : 503, "the store failed",
                           "try again; see the farm's log");
}

static const char *stream_path(web_request *req)
{
    return req->path + strlen(PREFIX);
}

/* "Stream-Closed: true" (case-insensitive); anything else is absent. */
static int header_true(web_request *req, const char *name)
{
    const char *v = web_header(req, name);
    return v && !strcasecmp(v, "true");
}

/* ---- PUT, POST, DELETE, HEAD --------------------------------------------- */

/* Writes wait for a group commit (an fsync). Appends are handed to the
 * engine's appender and the request is suspended until it calls back;
 * creation and deletion run on the server's worker threads (web_defer). Either
 * way the polling threads keep feeding live readers meanwhile. The request's
 * headers are read into the job before it is handed over. */
typedef struct write_job {
    stream_create_req create;
    stream_append_req append;
    stream_result res;
    int rc;
    char path[STREAM_MAX_PATH + 1];
    struct MHD_Connection *conn;
    atomic_int finished; /* an asynchronous append completed */
} write_job;

static void write_job_free(void *p)
{
    free(p);
}

static void write_work(web_request *req)
{
    write_job *j = req->state;
    stream_hub *h = farm_streams(req->farm);
    if (!strcmp(req->method, "PUT"))
        j->rc = stream_create(&j->res, h, j->path, &j->create);
    else
        j->rc = stream_delete(&j->res, h, j->path);
}

/* Defer the write in req->state; 0 when deferred (answer later). */
static int defer_write(web_request *req, write_job *j)
{
    snprintf(j->path, sizeof(j->path), "%s", stream_path(req));
    req->state = j;
    req->state_free = write_job_free;
    if (web_defer(req, write_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}

static int on_put(web_request *req)
{
    if (!req->deferred) {
        write_job *j = calloc(1, sizeof(*j));
        if (!j)
            return FARM_ENOMEM;
        stream_create_req init = STREAM_CREATE_REQ_INIT;
        stream_create_req *q = &j->create;
        *q = init;
        q->content_type = web_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        q->ttl = web_header(req, "Stream-TTL");
        q->expires_at = web_header(req, "Stream-Expires-At");
        q->closed = header_true(req, "Stream-Closed");
        q->forked_from = web_header(req, "Stream-Forked-From");
        q->fork_offset = web_header(req, "Stream-Fork-Offset");
        q->fork_sub_offset = web_header(req, "Stream-Fork-Sub-Offset");
        q->body = req->body.data;
        q->body_len = req->body.len;
        /* the source may be named by its URL path */
        if (q->forked_from && !strncmp(q->forked_from, PREFIX, strlen(PREFIX)))
            q->forked_from += strlen(PREFIX);
        else if (q->forked_from && q->forked_from[0] == '/')
            q->forked_from++;
        return defer_write(req, j);
    }
    write_job *j = req->state;
    stream_result res = j->res;
    int rc = j->rc;
    if (rc)
        return reply_store_error(req, rc);
    if (res.status != 200 && res.status != 201)
        return reply_result_error(req, &res);
    struct MHD_Response *r = response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    meta_headers(r, &res);
    result_headers(r, &res);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (res.status == 201)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, req->path);
    return queue(req, res.status, r);
}

/* An append decided (on the hub's appender thread): wake the request. */
static void post_done(void *arg, int rc, const stream_result *res)
{
    write_job *j = arg;
    (void)res; /* it is j->res */
    j->rc = rc;
    atomic_store(&j->finished, 1);
    MHD_resume_connection(j->conn);
}

/* Appends wait for no thread: the request is suspended and the engine's
 * appender resumes it once the batch holding it is committed. */
static int on_post(web_request *req)
{
    if (req->state && atomic_load(&((write_job *)req->state)->finished)) {
        req->suspended = 0;
        req->deferred = 1;
    }
    if (!req->deferred) {
        write_job *j = calloc(1, sizeof(*j));
        if (!j)
            return FARM_ENOMEM;
        stream_append_req init = STREAM_APPEND_REQ_INIT;
        stream_append_req *q = &j->append;
        *q = init;
        q->content_type = web_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        q->body = req->body.data;
        q->body_len = req->body.len;
        q->stream_seq = web_header(req, "Stream-Seq");
        q->producer_id = web_header(req, "Producer-Id");
        q->producer_epoch = web_header(req, "Producer-Epoch");
        q->producer_seq = web_header(req, "Producer-Seq");
        q->close = header_true(req, "Stream-Closed");
        snprintf(j->path, sizeof(j->path), "%s", stream_path(req));
        j->conn = req->conn;
        req->state = j;
        req->state_free = write_job_free;
        req->suspended = 1;
        MHD_suspend_connection(req->conn);
        int rc = stream_append_async(farm_streams(req->farm), j->path, q, &j->res, post_done, j);
        if (rc) {
            req->suspended = 0;
            MHD_resume_connection(req->conn);
            return reply_store_error(req, rc);
        }
        return 0;
    }
    write_job *j = req->state;
    stream_result res = j->res;
    int rc = j->rc;
    if (rc)
        return reply_store_error(req, rc);
    if (res.status != 200 && res.status != 204)
        return reply_result_error(req, &res);
    struct MHD_Response *r = response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    result_headers(r, &res);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return queue(req, res.status, r);
}

static int on_delete(web_request *req)
{
    if (!req->deferred) {
        write_job *j = calloc(1, sizeof(*j));
        if (!j)
            return FARM_ENOMEM;
        return defer_write(req, j);
    }
    write_job *j = req->state;
    stream_result res = j->res;
    int rc = j->rc;
    if (rc)
        return reply_store_error(req, rc);
    if (res.status != 204)
        return reply_result_error(req, &res);
    struct MHD_Response *r = response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    return queue(req, 204, r);
}

static int on_head(web_request *req)
{
    stream_result res;
    int rc = stream_head(&res, farm_streams(req->farm), stream_path(req));
    if (rc)
        return reply_store_error(req, rc);
    struct MHD_Response *r = response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (res.status == 200) {
        meta_headers(r, &res);
        result_headers(r, &res);
    }
    return queue(req, res.status, r);
}

/* ---- GET: catch-up and long-poll ----------------------------------------- */

typedef struct poll_state {
    stream_hub *h;
    struct MHD_Connection *conn;
    stream_waiter *w;
    atomic_int why; /* stream_wake_reason + 1 once fired */
    int64_t deadline_ms;
    char offset[STREAM_OFFSET_LEN];
    int64_t stream_id;
} poll_state;

static void poll_state_free(void *p)
{
    poll_state *s = p;
    if (!s)
        return;
    stream_wait_cancel(s->h, s->w);
    free(s);
}

static void poll_wake(void *arg, stream_wake_reason why)
{
    poll_state *s = arg;
    atomic_store(&s->why, (int)why + 1);
    MHD_resume_connection(s->conn);
}

static const char *read_offset(web_request *req)
{
    const char *leid = web_header(req, "Last-Event-ID");
    uint64_t pos;
    /* EventSource resumes with Last-Event-ID (the last control event's id) */
    if (leid && stream_offset_parse(&pos, leid) == 0)
        return leid;
    return web_query(req, "offset");
}

static int reply_read(web_request *req, const stream_result *res, const buf *body, int status)
{
    char cursor[32];
    struct MHD_Response *r = response(body ? body->data : NULL, body ? body->len : 0);
    if (!r)
        return FARM_ENOMEM;
    meta_headers(r, res);
    result_headers(r, res);
    if (res->up_to_date)
        MHD_add_response_header(r, "Stream-Up-To-Date", "true");
    if (res->etag[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res->etag);
    if (!res->closed) { /* required on live reads of an open stream; harmless on others */
        stream_cursor_next(cursor, sizeof(cursor), web_query(req, "cursor"));
        MHD_add_response_header(r, "Stream-Cursor", cursor);
    }
    const char *offset = web_query(req, "offset");
    int now = offset && !strcmp(offset, "now");
    MHD_add_response_header(
        r, MHD_HTTP_HEADER_CACHE_CONTROL,
        now || status == 204 ? "no-store" : "private, max-age=60, stale-while-revalidate=300");
    return queue(req, status, r);
}

static int long_poll_answer(web_request *req, poll_state *s, const char *offset)
{
    stream_hub *h = farm_streams(req->farm);
    stream_result res;
    buf body = BUF_INIT(READ_BODY_CAP);
    stream_read_req q = STREAM_READ_REQ_INIT;
    q.offset = offset;
    q.max_bytes = STREAM_READ_CHUNK;
    q.live = 1;
    int rc = stream_read_body(&res, &body, h, stream_path(req), &q);
    if (rc) {
        buf_free(&body);
        return reply_store_error(req, rc);
    }
    if (res.status != 200) {
        buf_free(&body);
        return reply_result_error(req, &res);
    }
    if (res.count > 0) {
        rc = reply_read(req, &res, &body, 200);
        buf_free(&body);
        return rc;
    }
    buf_free(&body);
    int64_t now = clock_mono_ms();
    int why = s ? atomic_load(&s->why) - 1 : -1;
    if (res.closed || (s && now >= s->deadline_ms) || why == STREAM_WAKE_TIMEOUT ||
        why == STREAM_WAKE_SHUTDOWN) {
        res.up_to_date = 1;
        res.etag[0] = '\0';
        return reply_read(req, &res, NULL, 204);
    }
    if (why == STREAM_WAKE_GONE) {
        res.status = 404;
        snprintf(res.error, sizeof(res.error), "stream was deleted");
        res.next_offset[0] = '\0';
        return reply_result_error(req, &res);
    }
    /* nothing yet: wait at the tail we reached */
    if (!s) {
        const char *t = web_query(req, "timeout");
        int64_t secs = LONGPOLL_DEFAULT_S;
        if (t) {
            char *end;
            long v = strtol(t, &end, 10);
            if (*end || v < 1 || v > LONGPOLL_MAX_S)
                return web_reply_error(req, 400, "bad query parameter `timeout`",
                                       "seconds, from 1 to 120");
            secs = v;
        }
        if (!(s = calloc(1, sizeof(*s))))
            return FARM_ENOMEM;
        s->h = h;
        s->conn = req->conn;
        s->deadline_ms = now + secs * 1000;
        req->state = s;
        req->state_free = poll_state_free;
    }
    snprintf(s->offset, sizeof(s->offset), "%s", res.next_offset);
    stream_wait_cancel(h, s->w);
    s->w = NULL;
    atomic_store(&s->why, 0);
    req->suspended = 1;
    MHD_suspend_connection(req->conn);
    rc = stream_wait(&s->w, h, stream_path(req), res.stream_id, res.next_pos, s->deadline_ms,
                     poll_wake, s);
    if (rc) {
        req->suspended = 0;
        MHD_resume_connection(req->conn);
        return reply_store_error(req, rc);
    }
    return 0;
}

/* ---- GET: SSE --------------------------------------------------------------- */

enum { SSE_JSON, SSE_TEXT, SSE_BASE64 };

typedef struct sse_conn {
    stream_hub *h;
    struct MHD_Connection *conn;
    char *path;
    char *client_cursor;
    int mode;
    uint64_t pos;
    const char *first; /* "-1" or "now" until the first read, else NULL */
    buf out;           /* bytes formatted and not yet handed to MHD */
    size_t out_off;
    buf batch; /* records of one read */
    int nrec;
    stream_waiter *w; /* fired (or never registered) while the reader runs */
    atomic_int why;   /* stream_wake_reason + 1 once fired */
    int64_t stream_id;
    int64_t close_at, hb_at;
    int sent_control;
    int caught_up; /* the last read reached the tail: wait before reading again */
    int done;
} sse_conn;

static void sse_free(void *cls)
{
    sse_conn *c = cls;
    stream_wait_cancel(c->h, c->w);
    buf_free(&c->out);
    buf_free(&c->batch);
    free(c->path);
    free(c->client_cursor);
    free(c);
}

static void sse_wake(void *arg, stream_wake_reason why)
{
    sse_conn *c = arg;
    atomic_store(&c->why, (int)why + 1);
    MHD_resume_connection(c->conn);
}

static int sse_record(void *arg, const char *p, size_t n)
{
    sse_conn *c = arg;
    int rc = 0;
    if (c->mode == SSE_JSON && c->nrec)
        rc = buf_putc(&c->batch, ',');
    if (!rc)
        rc = buf_append(&c->batch, p, n);
    c->nrec++;
    return rc;
}

/* "data:" lines for text: one per line of the payload, CR, LF and CRLF
 * all ending a line (as SSE parsers do), so no payload can forge a field. */
static int sse_data_lines(buf *out, const char *p, size_t n)
{
    int rc = buf_puts(out, "data: ");
    for (size_t i = 0; !rc && i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            rc = buf_puts(out, "\ndata: ");
        } else {
            rc = buf_putc(out, p[i]);
        }
    }
    if (!rc)
        rc = buf_putc(out, '\n');
    return rc;
}

/* Format one batch and its control event into c->out. Runs for every reader
 * on every event, so it appends pieces rather than going through printf. */
static int sse_format(sse_conn *c, const stream_result *res)
{
    buf *o = &c->out;
    int rc = 0;
    if (c->nrec) {
        rc = buf_puts(o, "event: data\n");
        if (!rc && c->mode == SSE_JSON) {
            rc = buf_puts(o, "data: [");
            if (!rc)
                rc = buf_append(o, c->batch.data ? c->batch.data : "", c->batch.len);
            if (!rc)
                rc = buf_puts(o, "]\n");
        } else if (!rc && c->mode == SSE_TEXT) {
            rc = sse_data_lines(o, c->batch.data ? c->batch.data : "", c->batch.len);
        } else if (!rc) {
            char *b64 = crypto_base64_encode(c->batch.data ? c->batch.data : "", c->batch.len, 0);
            if (!b64)
                return FARM_ENOMEM;
            rc = buf_puts(o, "data: ");
            if (!rc)
                rc = buf_puts(o, b64);
            if (!rc)
                rc = buf_putc(o, '\n');
            free(b64);
        }
        if (!rc)
            rc = buf_putc(o, '\n');
    }
    if (rc)
        return rc;
    /* id: lets a browser's EventSource resume with Last-Event-ID */
    rc = buf_puts(o, "event: control\nid: ");
    if (!rc)
        rc = buf_puts(o, res->next_offset);
    if (!rc)
        rc = buf_puts(o, "\ndata: {\"streamNextOffset\":\"");
    if (!rc)
        rc = buf_puts(o, res->next_offset);
    if (!rc)
        rc = buf_putc(o, '"');
    if (!rc && !res->closed) {
        char cursor[32];
        stream_cursor_next(cursor, sizeof(cursor), c->client_cursor);
        rc = buf_puts(o, ",\"streamCursor\":\"");
        if (!rc)
            rc = buf_puts(o, cursor);
        if (!rc)
            rc = buf_putc(o, '"');
    }
    if (!rc && res->up_to_date)
        rc = buf_puts(o, ",\"upToDate\":true");
    if (!rc && res->closed)
        rc = buf_puts(o, ",\"streamClosed\":true");
    if (!rc)
        rc = buf_puts(o, "}\n\n");
    return rc;
}

/* Caught up: suspend until data, the heartbeat or the end. Small buffers
 * are kept for the next event (a reader is woken for every event, and
 * growing them again each time costs more than the few hundred bytes they
 * hold); one that a large batch grew is freed. */
static ssize_t sse_sleep(sse_conn *c)
{
    if (c->out.cap > SSE_KEEP)
        buf_free(&c->out);
    if (c->batch.cap > SSE_KEEP)
        buf_free(&c->batch);
    buf_reset(&c->out);
    buf_reset(&c->batch);
    c->out_off = 0;
    stream_wait_cancel(c->h, c->w);
    c->w = NULL;
    int64_t deadline = c->hb_at < c->close_at ? c->hb_at : c->close_at;
    MHD_suspend_connection(c->conn);
    if (stream_wait(&c->w, c->h, c->path, c->stream_id, c->pos, deadline, sse_wake, c)) {
        MHD_resume_connection(c->conn);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    return 0;
}

static ssize_t sse_reader(void *cls, uint64_t unused, char *dst, size_t max)
{
    sse_conn *c = cls;
    /* c->w, if any, has fired (that is what resumed us); it is released just
     * before the next wait, when the thread that fired it is long done with
     * it, rather than here, where that thread may still be on its way out */
    for (;;) {
        if (c->out_off < c->out.len) {
            size_t n = c->out.len - c->out_off;
            if (n > max)
                n = max;
            memcpy(dst, c->out.data + c->out_off, n);
            c->out_off += n;
            if (c->out_off == c->out.len) {
                buf_reset(&c->out);
                c->out_off = 0;
            }
            return (ssize_t)n;
        }
        int why = atomic_exchange(&c->why, 0) - 1;
        int64_t now = clock_mono_ms();
        if (c->done || why == STREAM_WAKE_GONE || why == STREAM_WAKE_SHUTDOWN || now >= c->close_at)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (why == STREAM_WAKE_DATA)
            c->caught_up = 0;
        if (c->caught_up && now < c->hb_at)
            return sse_sleep(c); /* stream_wait() fires at once if the tail moved */

        stream_result res;
        stream_read_req q = STREAM_READ_REQ_INIT;
        char off[STREAM_OFFSET_LEN];
        stream_offset_format(off, c->pos);
        q.offset = c->first ? c->first : off;
        q.max_bytes = SSE_BATCH;
        q.live = 1;
        buf_reset(&c->batch);
        c->nrec = 0;
        int rc = stream_read(&res, c->h, c->path, &q, sse_record, c);
        if (rc || res.status != 200)
            return MHD_CONTENT_READER_END_OF_STREAM;
        c->first = NULL;
        c->pos = res.next_pos;
        c->stream_id = res.stream_id;
        c->caught_up = res.up_to_date && !res.closed;
        if (c->nrec || !c->sent_control || (res.closed && res.up_to_date)) {
            if (sse_format(c, &res))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            c->sent_control = 1;
            c->hb_at = now + SSE_HEARTBEAT_MS;
            if (res.closed && res.up_to_date)
                c->done = 1;
            continue;
        }
        if (now >= c->hb_at) {
            c->hb_at = now + SSE_HEARTBEAT_MS;
            if (buf_puts(&c->out, ":\n\n"))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        return sse_sleep(c);
    }
}

static int sse_start(web_request *req, const char *offset)
{
    stream_hub *h = farm_streams(req->farm);
    stream_result res;
    int rc = stream_head(&res, h, stream_path(req));
    if (rc)
        return reply_store_error(req, rc);
    if (res.status != 200)
        return reply_result_error(req, &res);
    sse_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return FARM_ENOMEM;
    c->h = h;
    c->conn = req->conn;
    buf_init(&c->out, SSE_BATCH * 2 + 4096);
    buf_init(&c->batch, STREAM_MAX_APPEND + 16);
    c->mode = res.json                                        ? SSE_JSON
              : stream_content_type_is_text(res.content_type) ? SSE_TEXT
                                                              : SSE_BASE64;
    if (!(c->path = strdup(stream_path(req)))) {
        sse_free(c);
        return FARM_ENOMEM;
    }
    const char *cur = web_query(req, "cursor");
    if (cur && !(c->client_cursor = strdup(cur))) {
        sse_free(c);
        return FARM_ENOMEM;
    }
    if (!offset || !strcmp(offset, "-1")) {
        c->first = "-1"; /* the engine knows where a trimmed stream starts */
    } else if (!strcmp(offset, "now")) {
        c->first = "now";
    } else if (stream_offset_parse(&c->pos, offset)) {
        sse_free(c);
        return web_reply_error(req, 400, "malformed offset", NULL);
    }
    int64_t now = clock_mono_ms();
    unsigned char r = 0;
    crypto_random(&r, 1);
    c->close_at = now + SSE_LIFETIME_MS + (int64_t)(r % 10) * 1000; /* spread reconnects */
    c->hb_at = now + SSE_HEARTBEAT_MS;

    /* Bound what a reader that stops reading can hold: a fixed kernel send
     * buffer, and a timeout once nothing more can be written to it (a
     * caught-up reader is suspended, and suspended connections never time
     * out; heartbeats keep a healthy one moving). The reader resumes from
     * the offset of the last control event it received. */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        int sndbuf = SSE_SNDBUF;
        unsigned stall_ms = SSE_STALL_S * 1000u;
        setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        /* the kernel aborts a connection whose data stays unacknowledged
         * (a zero window included) this long; MHD then drops it */
        setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &stall_ms, sizeof(stall_ms));
    }
    MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)SSE_STALL_S);

    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_reader, c, sse_free);
    if (!resp) {
        sse_free(c);
        return FARM_ENOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    if (c->mode == SSE_BASE64)
        MHD_add_response_header(resp, "Stream-SSE-Data-Encoding", "base64");
    return queue(req, 200, resp);
}

static int on_get(web_request *req)
{
    const char *live = web_query(req, "live");
    const char *offset = read_offset(req);
    stream_hub *h = farm_streams(req->farm);

    if (req->state) { /* a long-poll resumed */
        poll_state *s = req->state;
        req->suspended = 0;
        stream_wait_cancel(h, s->w);
        s->w = NULL;
        return long_poll_answer(req, s, s->offset);
    }
    if (live && strcmp(live, "long-poll") && strcmp(live, "sse"))
        return web_reply_error(req, 400, "bad query parameter `live`", "long-poll or sse");
    if (live && !offset)
        return web_reply_error(req, 400, "live reads need an offset", "offset=-1 for the start");
    if (live && !strcmp(live, "sse"))
        return sse_start(req, offset);
    if (live)
        return long_poll_answer(req, NULL, offset);

    stream_result res;
    buf body = BUF_INIT(READ_BODY_CAP);
    stream_read_req q = STREAM_READ_REQ_INIT;
    q.offset = offset;
    q.max_bytes = STREAM_READ_CHUNK;
    q.if_none_match = web_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH);
    int rc = stream_read_body(&res, &body, h, stream_path(req), &q);
    if (rc) {
        buf_free(&body);
        return reply_store_error(req, rc);
    }
    if (res.status == 304) {
        buf_free(&body);
        struct MHD_Response *r = response(NULL, 0);
        if (!r)
            return FARM_ENOMEM;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res.etag);
        result_headers(r, &res);
        return queue(req, 304, r);
    }
    if (res.status != 200) {
        buf_free(&body);
        return reply_result_error(req, &res);
    }
    rc = reply_read(req, &res, &body, 200);
    buf_free(&body);
    return rc;
}

int route_stream(web_request *req)
{
    const char *m = req->method;
    int write = strcmp(m, "GET") && strcmp(m, "HEAD");
    if (!req->state && !web_authorize(req, write ? AUTH_MEMBER : AUTH_VIEWER))
        return 0;
    if (!strcmp(m, "GET"))
        return on_get(req);
    if (!strcmp(m, "HEAD"))
        return on_head(req);
    if (!strcmp(m, "PUT"))
        return on_put(req);
    if (!strcmp(m, "POST"))
        return on_post(req);
    if (!strcmp(m, "DELETE"))
        return on_delete(req);
    return web_reply_error(req, 405, "method not allowed", "GET, HEAD, PUT, POST, DELETE");
}

/* ---- POST /api/sessions/{id}/messages ------------------------------------- */

typedef struct message_job {
    long long session;
    char author[128];
    char *body; /* {"text", "author"} */
    int64_t seq;
    int64_t job; /* the answer job queued, 0 when the session was not waiting */
    int rc;
} message_job;

static void message_job_free(void *p)
{
    message_job *j = p;
    if (j)
        free(j->body);
    free(j);
}

static void message_work(web_request *req)
{
    message_job *j = req->state;
    store_session *s = NULL;
    j->rc = store_session_get(&s, farm_store(req->farm), j->session);
    store_session_free(s);
    if (!j->rc)
        j->rc = stream_session_append(&j->seq, farm_streams(req->farm), j->session, "message",
                                      j->author, j->body);
    /* a member's message answers the agent when the session waits for one */
    if (!j->rc && farm_session_message_note(req->farm, j->session, &j->job) != 0)
        log_error("message recorded but the answer job was not queued", "session_id",
                  req->segment[0], "error", farm_error_last());
}

int route_api_session_message(web_request *req)
{
    if (req->deferred) {
        message_job *j = req->state;
        if (j->rc == FARM_ENOTFOUND)
            return web_reply_error(req, 404, "no such session", NULL);
        if (j->rc)
            return reply_store_error(req, j->rc);
        log_info("session message", "author", j->author);
        return web_reply_json(req, 201,
                              json_pack("{s:I,s:I,s:I}", "session", (json_int_t)j->session, "seq",
                                        (json_int_t)j->seq, "answer_job", (json_int_t)j->job));
    }
    auth_identity who;
    if (!web_authorize(req, AUTH_MEMBER))
        return 0;
    auth_api_identify(&who, req->cfg, web_header(req, "Authorization"), req->loopback);
    char *end;
    long long id = strtoll(req->segment[0], &end, 10);
    if (*end || id <= 0)
        return web_reply_error(req, 404, "no such session", NULL);
    json_error_t jerr;
    json_t *in = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    const char *text = in ? json_string_value(json_object_get(in, "text")) : NULL;
    if (!text || !*text || strlen(text) > MESSAGE_MAX) {
        json_decref(in);
        return web_reply_error(req, 400, "expected {\"text\": \"...\"}",
                               "a non-empty string of at most 64 KiB");
    }
    message_job *j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(in);
        return FARM_ENOMEM;
    }
    j->session = id;
    snprintf(j->author, sizeof(j->author), "%s", who.name ? who.name : "unknown");
    json_t *body = json_pack("{s:s,s:s}", "text", text, "author", j->author);
    json_decref(in);
    j->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!j->body) {
        message_job_free(j);
        return FARM_ENOMEM;
    }
    req->state = j;
    req->state_free = message_job_free;
    if (web_defer(req, message_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}
