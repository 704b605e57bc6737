/*
 * stream_http_read.c - the reads of /v1/stream/: HEAD, a catch-up GET, and
 * the live reads, which hold no thread:
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
 */
#include "stream_http.h"
#include "routes.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "farm/stream/stream.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

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

/* ---- HEAD ------------------------------------------------------------------ */

int stream_http_head(web_request *req)
{
    stream_result res;
    int rc = stream_head(&res, farm_streams(req->farm), stream_http_path(req));
    if (rc)
        return stream_http_reply_store_error(req, rc);
    struct MHD_Response *r = stream_http_response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (res.status == 200) {
        stream_http_meta_headers(r, &res);
        stream_http_result_headers(r, &res);
    }
    return stream_http_queue(req, res.status, r);
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
    struct MHD_Response *r = stream_http_response(body ? body->data : NULL, body ? body->len : 0);
    if (!r)
        return FARM_ENOMEM;
    stream_http_meta_headers(r, res);
    stream_http_result_headers(r, res);
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
    return stream_http_queue(req, status, r);
}

static int long_poll_answer(web_request *req, poll_state *s, const char *offset)
{
    stream_hub *h = farm_streams(req->farm);
    stream_result res;
    buf body = BUF_INIT(READ_BODY_CAP);
    stream_read_req q = STREAM_READ_REQ_INIT;
    q.offset = offset;
    q.max_bytes = STREAM_READ_CHUNK;
    /* not q.live: a long-poll's 200 is a GET response like a catch-up's,
     * with its ETag (PROTOCOL.md 10.1); its 204 goes without */
    int rc = stream_read_body(&res, &body, h, stream_http_path(req), &q);
    if (rc) {
        buf_free(&body);
        return stream_http_reply_store_error(req, rc);
    }
    if (res.status != 200) {
        buf_free(&body);
        return stream_http_reply_result(req, &res);
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
        return stream_http_reply_result(req, &res);
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
    rc = stream_wait(&s->w, h, stream_http_path(req), res.stream_id, res.next_pos, s->deadline_ms,
                     poll_wake, s);
    if (rc) {
        req->suspended = 0;
        MHD_resume_connection(req->conn);
        return stream_http_reply_store_error(req, rc);
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
    int rc = stream_head(&res, h, stream_http_path(req));
    if (rc)
        return stream_http_reply_store_error(req, rc);
    if (res.status != 200)
        return stream_http_reply_result(req, &res);
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
    if (!(c->path = strdup(stream_http_path(req)))) {
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
    return stream_http_queue(req, 200, resp);
}

int stream_http_get(web_request *req)
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
    int rc = stream_read_body(&res, &body, h, stream_http_path(req), &q);
    if (rc) {
        buf_free(&body);
        return stream_http_reply_store_error(req, rc);
    }
    if (res.status == 304) {
        buf_free(&body);
        struct MHD_Response *r = stream_http_response(NULL, 0);
        if (!r)
            return FARM_ENOMEM;
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, res.etag);
        stream_http_result_headers(r, &res);
        return stream_http_queue(req, 304, r);
    }
    if (res.status != 200) {
        buf_free(&body);
        return stream_http_reply_result(req, &res);
    }
    rc = reply_read(req, &res, &body, 200);
    buf_free(&body);
    return rc;
}
