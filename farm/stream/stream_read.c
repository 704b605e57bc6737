/*
 * stream_read.c - GET and HEAD: reading a stream from an offset, through
 * its fork chain (a fork's records below its fork point are its source's),
 * and the session logs as read-only JSON views over the event table.
 *
 * A read is served from the hot entry's ring when the ring holds what it
 * needs (the common case for a live reader woken by an append), from a read
 * connection otherwise; records read from the store continue the ring. A
 * read of a stream with a TTL slides it (one write at most every second).
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/clock.h"
#include "base/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TOUCH_EVERY_MS 1000

/* ---- HEAD --------------------------------------------------------------- */

typedef struct head_ctx {
    const char *path;
    stream_result *out;
    int64_t now;
    stream_row row;
} head_ctx;

static int head_tx(stream_tx *tx, void *arg)
{
    head_ctx *c = arg;
    int rc = sdb_stream_get(&c->row, tx, c->path);
    if (rc == FARM_ENOTFOUND || (!rc && !c->row.deleted && stream_row_expired(&c->row, c->now))) {
        stream_fail(c->out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (c->row.deleted) {
        stream_fail(c->out, 410, "stream was deleted");
        return 0;
    }
    stream_result_row(c->out, &c->row);
    c->out->status = 200;
    return 0;
}

int stream_head(stream_result *out, stream_hub *h, const char *path)
{
    head_ctx c = {.path = path, .out = out, .now = clock_wall_ms()};
    int64_t sid = 0;
    stream_result_init(out);
    if (!stream_path_valid(path)) {
        stream_fail(out, 404, "stream not found");
        return 0;
    }
    if (stream_path_reserved(path) && !stream_path_session(path, &sid)) {
        stream_fail(out, 404, "no such session");
        return 0;
    }
    if (stream_path_session(path, &sid)) {
        int64_t tail = 0;
        int found = 0;
        int rc = stream_session_tail(&tail, &found, h, sid);
        if (rc)
            return rc;
        if (!found) {
            stream_fail(out, 404, "no such session");
            return 0;
        }
        stream_result_session(out, tail);
        out->status = 200;
        return 0;
    }
    int rc = sdb_read(h->st, head_tx, &c);
    stream_row_free(&c.row);
    return rc;
}

/* ---- GET ---------------------------------------------------------------- */

enum { OFF_START, OFF_NOW, OFF_POS };

typedef struct read_ctx {
    stream_hub *h;
    const char *path;
    const stream_read_req *req;
    stream_result *out;
    stream_record_fn fn;
    void *arg;
    int kind;
    uint64_t pos;
    size_t max, used;
    int64_t now;
    int json;
    int64_t next;   /* position after the last record delivered */
    int full;       /* the budget is spent */
    int64_t own_id; /* the stream whose records may fill the ring */
    int64_t touch_id;
    stream_row row;
} read_ctx;

static int deliver(read_ctx *c, int64_t pos, int64_t end, const char *p, size_t n, int64_t from,
                   int64_t to)
{
    if (c->full)
        return 1;
    if (c->used >= c->max && c->out->count > 0) {
        c->full = 1;
        return 1;
    }
    if (!c->json) {
        /* bytes: clip the record to [from, to) */
        int64_t a = from > pos ? from : pos, b = to < end ? to : end;
        if (b <= a)
            return 0;
        p += a - pos;
        n = (size_t)(b - a);
        end = b;
    } else if (pos < from || end > to) {
        return 0;
    }
    int rc = c->fn(c->arg, p, n);
    if (rc)
        return rc;
    c->used += n;
    c->out->count++;
    c->next = end;
    return 0;
}

typedef struct scan_arg {
    read_ctx *c;
    int64_t from, to;
    int fill; /* add to the ring */
} scan_arg;

static int scan_cb(void *arg, int64_t pos, int64_t end, const void *p, size_t n)
{
    scan_arg *s = arg;
    read_ctx *c = s->c;
    if (s->fill) {
        pthread_mutex_lock(&c->h->lock);
        hot *e = hub_hot_get(c->h, c->path, 0);
        if (e && (e->session_id || e->stream_id == c->own_id))
            hub_ring_add(c->h, e, pos, end, p, n);
        pthread_mutex_unlock(&c->h->lock);
    }
    return deliver(c, pos, end, p, n, s->from, s->to);
}

/* Records of row in [from, to), through its fork chain. */
static int read_chain(read_ctx *c, stream_tx *tx, const stream_row *row, int64_t from, int64_t to,
                      int top)
{
    int rc;
    if (row->fork_of && from < row->fork_pos) {
        stream_row src;
        if ((rc = sdb_stream_get_id(&src, tx, row->fork_of)))
            return rc;
        if (from < src.start_pos) {
            stream_row_free(&src);
            stream_fail(c->out, 410, "offset is no longer retained");
            return 1;
        }
        int64_t stop = to < row->fork_pos ? to : row->fork_pos;
        rc = read_chain(c, tx, &src, from, stop, 0);
        stream_row_free(&src);
        if (rc || c->full)
            return rc;
        from = row->fork_pos;
    }
    if (from >= to)
        return 0;
    scan_arg s = {c, from, to, top};
    return sdb_data_scan(tx, row->id, from, to, scan_cb, &s);
}

static int read_tx(stream_tx *tx, void *arg)
{
    read_ctx *c = arg;
    stream_result *out = c->out;
    stream_row *r = &c->row;
    int rc = sdb_stream_get(r, tx, c->path);
    if (rc == FARM_ENOTFOUND || (!rc && !r->deleted && stream_row_expired(r, c->now))) {
        stream_fail(out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (r->deleted) {
        stream_fail(out, 410, "stream was deleted");
        return 0;
    }
    stream_result_row(out, r);
    c->json = out->json;
    c->own_id = r->id;
    if (c->kind == OFF_START)
        c->pos = (uint64_t)r->start_pos;
    else if (c->kind == OFF_NOW)
        c->pos = (uint64_t)r->tail;
    if ((int64_t)c->pos > r->tail) {
        stream_fail(out, 400, "offset is past the stream's tail");
        return 0;
    }
    if ((int64_t)c->pos < r->start_pos) {
        stream_fail(out, 410, "offset is no longer retained");
        return 0;
    }
    c->next = (int64_t)c->pos;
    out->status = 200;
    if (c->kind != OFF_NOW && (int64_t)c->pos < r->tail)
        rc = read_chain(c, tx, r, (int64_t)c->pos, r->tail, 1);
    if (rc > 0)
        rc = 0;
    if (r->ttl_s >= 0 && c->now - r->access_ms >= TOUCH_EVERY_MS)
        c->touch_id = r->id;
    return rc;
}

static int session_read_tx(stream_tx *tx, void *arg)
{
    read_ctx *c = arg;
    stream_result *out = c->out;
    int64_t sid = 0, tail;
    stream_path_session(c->path, &sid);
    int rc = sdb_session_tail(&tail, tx, sid);
    if (rc == FARM_ENOTFOUND) {
        stream_fail(out, 404, "no such session");
        return 0;
    }
    if (rc)
        return rc;
    stream_result_session(out, tail);
    c->json = 1;
    if (c->kind == OFF_START)
        c->pos = 0;
    else if (c->kind == OFF_NOW)
        c->pos = (uint64_t)tail;
    if ((int64_t)c->pos > tail) {
        stream_fail(out, 400, "offset is past the stream's tail");
        return 0;
    }
    c->next = (int64_t)c->pos;
    out->status = 200;
    c->row.tail = tail;
    if (c->kind != OFF_NOW && (int64_t)c->pos < tail) {
        scan_arg s = {c, (int64_t)c->pos, tail, 1};
        rc = sdb_session_scan(tx, sid, (int64_t)c->pos, tail, scan_cb, &s);
    }
    return rc > 0 ? 0 : rc;
}

/* Serve the read from the hot entry when it has everything needed: returns
 * 1 when served, 0 to go to the database. Lock held. */
static int read_hot(read_ctx *c, hot *e)
{
    stream_result *out = c->out;
    if (!e || !e->loaded || e->gone || e->tail < 0 || (!e->session_id && !e->stream_id))
        return 0;
    if (!hub_trusted(c->h))
        return 0; /* other nodes' appends go unannounced: ask the database */
    if ((e->ttl_s >= 0 && e->access_ms + e->ttl_s * 1000 <= c->now) ||
        (e->expires_at_ms >= 0 && e->expires_at_ms <= c->now))
        return 0;
    if (e->ttl_s >= 0 && c->now - e->access_ms >= TOUCH_EVERY_MS)
        return 0; /* a TTL to slide: go through the store */
    int64_t pos = c->kind == OFF_START ? e->start_pos
                  : c->kind == OFF_NOW ? e->tail
                                       : (int64_t)c->pos;
    if (pos > e->tail || pos < e->start_pos)
        return 0;
    if (pos < e->tail && c->kind != OFF_NOW) {
        if (!e->rcount || pos < e->ring_start || pos >= e->ring_end || pos < e->fork_pos)
            return 0;
    }
    c->pos = (uint64_t)pos;
    c->json = e->json;
    c->next = pos;
    snprintf(out->content_type, sizeof(out->content_type), "%s", e->content_type);
    out->json = e->json;
    out->ttl_s = e->ttl_s;
    out->expires_at_ms = e->expires_at_ms;
    out->stream_id = e->stream_id;
    out->status = 200;
    if (pos < e->tail && c->kind != OFF_NOW) {
        for (size_t i = 0; i < e->rcount; i++) {
            ring_rec *r = e->recs[(e->rhead + i) % e->rcap];
            if (r->end <= c->next)
                continue;
            if (deliver(c, r->pos, r->end, r->data, r->len, c->next, e->tail))
                break;
        }
    }
    c->row.tail = e->tail;
    c->row.closed = e->closed;
    c->row.id = e->stream_id;
    return 1;
}

static int parse_offset(read_ctx *c, const char *offset)
{
    if (!offset || !strcmp(offset, "-1")) {
        c->kind = OFF_START;
    } else if (!strcmp(offset, "now")) {
        c->kind = OFF_NOW;
    } else {
        c->kind = OFF_POS;
        if (stream_offset_parse(&c->pos, offset))
            return -1;
    }
    return 0;
}

static int etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    for (const char *p = inm; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!strncmp(p, "W/", 2))
            p += 2;
        if (!strncmp(p, etag, n) && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return 1;
        if (*p == '*')
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}

static int touch_tx(stream_tx *tx, void *arg)
{
    read_ctx *c = arg;
    return sdb_stream_touch(tx, c->touch_id, c->now);
}

int stream_read(stream_result *out, stream_hub *h, const char *path, const stream_read_req *req,
                stream_record_fn fn, void *arg)
{
    read_ctx c = {.h = h, .path = path, .req = req, .out = out, .fn = fn, .arg = arg};
    int64_t sid;
    int rc = 0;

    stream_result_init(out);
    c.max = req->max_bytes ? req->max_bytes : STREAM_READ_CHUNK;
    c.now = clock_wall_ms();
    if (!stream_path_valid(path)) {
        stream_fail(out, 404, "stream not found");
        return 0;
    }
    if (parse_offset(&c, req->offset)) {
        stream_fail(out, 400, "malformed offset");
        return 0;
    }
    int session = stream_path_session(path, &sid);
    if (!session && stream_path_reserved(path)) {
        stream_fail(out, 404, "no such session");
        return 0;
    }

    pthread_mutex_lock(&h->lock);
    int served = read_hot(&c, hub_hot_get(h, path, 0));
    pthread_mutex_unlock(&h->lock);
    if (served) {
        /* the hot entry stands for the database: nothing to look up */
    } else if (session) {
        out->count = 0;
        rc = sdb_read(h->st, session_read_tx, &c);
    } else {
        out->count = 0;
        rc = sdb_read(h->st, read_tx, &c);
        if (!rc && c.touch_id) {
            if (sdb_write(h->st, touch_tx, &c) == 0) {
                pthread_mutex_lock(&h->lock);
                hot *e = hub_hot_get(h, path, 0);
                if (e && e->stream_id == c.touch_id && e->access_ms < c.now)
                    e->access_ms = c.now;
                pthread_mutex_unlock(&h->lock);
            }
        }
    }
    if (rc || out->status != 200)
        goto out;

    int64_t tail = c.row.tail;
    out->next_pos = (uint64_t)c.next;
    stream_offset_format(out->next_offset, (uint64_t)c.next);
    out->up_to_date = c.next >= tail;
    out->closed = c.row.closed && c.next >= tail;
    if (c.kind != OFF_NOW && !req->live) { /* live reads answer without an ETag */
        char a[STREAM_OFFSET_LEN];
        stream_offset_format(a, c.pos);
        snprintf(out->etag, sizeof(out->etag), "\"%" PRId64 "-%s-%s%s\"", out->stream_id, a,
                 out->next_offset, out->closed ? "-c" : "");
        if (req->if_none_match && etag_matches(req->if_none_match, out->etag))
            out->status = 304;
    }
out:
    stream_row_free(&c.row);
    return rc;
}

typedef struct body_arg {
    buf *b;
    int json;
    int n;
} body_arg;

static int body_cb(void *arg, const char *p, size_t n)
{
    body_arg *a = arg;
    int rc = 0;
    if (a->json && a->n++)
        rc = buf_putc(a->b, ',');
    if (!rc)
        rc = buf_append(a->b, p, n);
    return rc;
}

int stream_read_body(stream_result *out, buf *body, stream_hub *h, const char *path,
                     const stream_read_req *req)
{
    stream_read_req q = *req;
    body_arg a = {body, 0, 0};
    int json = 0;
    /* JSON mode is known only once the stream is found: write the opening
     * bracket when the first record comes, or at the end */
    buf_reset(body);
    size_t cap = body->max > 64 ? body->max / 2 : body->max;
    if (!q.max_bytes || q.max_bytes > cap)
        q.max_bytes = cap;
    int64_t sid;
    json = stream_path_session(path, &sid);
    if (!json) {
        stream_result probe;
        pthread_mutex_lock(&h->lock);
        hot *e = hub_hot_get(h, path, 0);
        if (e && e->loaded && !e->gone)
            json = e->json;
        pthread_mutex_unlock(&h->lock);
        if (!e || !e->loaded) {
            int rc = stream_head(&probe, h, path);
            if (rc)
                return rc;
            json = probe.json;
        }
    }
    a.json = json;
    if (json && buf_putc(body, '['))
        return FARM_ETOOBIG;
    int rc = stream_read(out, h, path, &q, body_cb, &a);
    if (rc)
        return rc;
    if (out->status != 200) {
        buf_reset(body);
        return 0;
    }
    if (out->json != json) {
        /* the stream changed mode under us (deleted and re-created): again */
        return stream_read_body(out, body, h, path, req);
    }
    if (json && buf_putc(body, ']'))
        return FARM_ETOOBIG;
    return 0;
}
