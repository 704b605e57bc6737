/*
 * stream_create.c - PUT: create a stream, or confirm that one with the same
 * configuration exists (200; another configuration is 409). A fork names a
 * source and an offset in it: it shares the source's records below that
 * offset and holds a reference that keeps a deleted source readable.
 *
 * The whole decision (an expired stream at the path goes first, the
 * source's reference count, the initial records) is one store write.
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_CT "application/octet-stream"

typedef struct create_ctx {
    const char *path;
    const stream_create_req *req;
    stream_result *out;
    int64_t ttl, exp;
    int64_t now;
    stream_records rec;
    int created, expired_old;
    int64_t from;
    stream_row row;
} create_ctx;

static int boundary_cb(void *arg, int64_t pos, int64_t end, const void *p, size_t n)
{
    (void)pos;
    (void)p;
    (void)n;
    *(int64_t *)arg = end;
    return 1;
}

/* Where the data that starts at (or runs through) byte position anchor of
 * src ends: the end of that append, or of the range a fork in the chain
 * inherits, whichever comes first; anchor itself at the tail. A
 * Stream-Fork-Sub-Offset may refine the fork point up to there, no further
 * (PROTOCOL.md 4.2). */
static int fork_boundary(int64_t *out, stream_tx *tx, const stream_row *src, int64_t anchor)
{
    stream_row up = {0};
    const stream_row *cur = src;
    int64_t limit = src->tail, end = anchor;
    int rc = 0;
    while (cur->fork_of && anchor < cur->fork_pos) {
        if (cur->fork_pos < limit)
            limit = cur->fork_pos;
        stream_row next;
        if ((rc = sdb_stream_get_id(&next, tx, cur->fork_of)))
            goto out;
        stream_row_free(&up);
        up = next;
        cur = &up;
    }
    if (anchor < limit) {
        rc = sdb_data_scan(tx, cur->id, anchor, anchor + 1, boundary_cb, &end);
        if (rc > 0)
            rc = 0;
    }
out:
    stream_row_free(&up);
    if (!rc)
        *out = end < limit ? end : limit;
    return rc;
}

/* The fork's source into *src, and where the fork starts in it (*fork_req:
 * the offset as requested, -1 for the source's tail): 0, 1 when the request
 * is answered (src is then freed), or the store's failure. */
static int create_fork_source(create_ctx *c, stream_tx *tx, stream_row *src, int64_t *fork_pos,
                              int64_t *fork_req)
{
    const stream_create_req *q = c->req;
    int rc = sdb_stream_get(src, tx, q->forked_from);
    if (rc == FARM_ENOTFOUND || (!rc && !src->deleted && stream_row_expired(src, c->now))) {
        if (!rc)
            stream_row_free(src);
        stream_fail(c->out, 404, "source stream %s not found", q->forked_from);
        return 1;
    }
    if (rc)
        return rc;
    if (src->deleted) {
        stream_fail(c->out, 409, "source stream %s was deleted", q->forked_from);
        goto reject;
    }
    if (q->content_type && !stream_content_type_same(q->content_type, src->content_type)) {
        stream_fail(c->out, 409, "content type differs from the source's (%s)", src->content_type);
        goto reject;
    }
    uint64_t pos = (uint64_t)src->tail;
    *fork_req = -1;
    if (q->fork_offset && strcmp(q->fork_offset, "now") != 0) {
        if (!strcmp(q->fork_offset, "-1"))
            pos = 0;
        else if (stream_offset_parse(&pos, q->fork_offset)) {
            stream_fail(c->out, 400, "malformed Stream-Fork-Offset");
            goto reject;
        }
        *fork_req = (int64_t)pos;
    }
    if ((int64_t)pos > src->tail) {
        stream_fail(c->out, 400, "Stream-Fork-Offset is past the source's tail");
        goto reject;
    }
    if (q->fork_sub_offset) {
        int64_t sub;
        if (stream_parse_uint(&sub, q->fork_sub_offset, STREAM_JS_MAX)) {
            stream_fail(c->out, 400, "malformed Stream-Fork-Sub-Offset");
            goto reject;
        }
        /* bytes: no further than the append at the fork offset. JSON
         * messages are stored one by one, without the bounds of the append
         * that brought them, so there a sub-offset may reach the tail. */
        int64_t limit = src->tail;
        if (sub && !stream_content_type_is_json(src->content_type)) {
            if ((rc = fork_boundary(&limit, tx, src, (int64_t)pos))) {
                stream_row_free(src);
                return rc;
            }
        }
        if (sub > limit - (int64_t)pos) {
            stream_fail(c->out, 400, "Stream-Fork-Sub-Offset is past the data at the fork offset");
            goto reject;
        }
        pos += (uint64_t)sub;
        if (*fork_req >= 0 || sub)
            *fork_req = (int64_t)pos;
    }
    if ((int64_t)pos < src->start_pos) {
        stream_fail(c->out, 410, "the fork offset is no longer retained by the source");
        goto reject;
    }
    *fork_pos = (int64_t)pos;
    return 0;
reject:
    stream_row_free(src);
    return 1;
}

/* What a new stream is to be: the request's configuration, with what a
 * fork takes from its source. */
typedef struct create_want {
    const char *ct;
    int64_t ttl, exp;
    stream_row *src; /* the fork's source, or NULL */
    int64_t fork_pos, fork_req;
} create_want;

/* The stream now at the path into *old (old->path NULL when there is none,
 * or when an expired one was just removed to free the path): 0, 1 when the
 * request is answered (409), or the store's failure. */
static int create_take_old(create_ctx *c, stream_tx *tx, stream_row *old)
{
    int rc = sdb_stream_get(old, tx, c->path);
    if (rc == FARM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (old->deleted) {
        stream_fail(c->out, 409, "a deleted stream still has forks at this path");
        return 1;
    }
    if (!stream_row_expired(old, c->now))
        return 0;
    /* the old stream expired: it goes, and the path is free again */
    if ((rc = stream_remove_row(tx, old)))
        return rc;
    c->expired_old = 1;
    if (old->deleted) {
        stream_fail(c->out, 409, "an expired stream still has forks at this path");
        return 1;
    }
    stream_row_free(old);
    return 0;
}

/* A stream exists at the path: the same configuration is success, any
 * other a conflict. */
static void create_existing(create_ctx *c, const stream_row *old, const create_want *w)
{
    int same = stream_content_type_same(w->ct, old->content_type) && w->ttl == old->ttl_s &&
               w->exp == old->expires_at_ms && !c->req->closed == !old->closed;
    if (w->src)
        same = same && old->fork_of == w->src->id && w->fork_req == old->fork_offset_req;
    else
        same = same && !old->fork_of;
    if (same) {
        c->out->status = 200;
        stream_result_row(c->out, old);
    } else {
        stream_fail(c->out, 409, "a stream with a different configuration exists at this path");
    }
}

/* Insert the new stream (into c->row), its source's reference and its
 * initial records. A malformed body is answered 400, one of too many
 * messages 413 (returns 0). */
static int create_new(create_ctx *c, stream_tx *tx, const create_want *w)
{
    const stream_create_req *q = c->req;
    int rc = stream_records_prepare(&c->rec, w->ct, q->body, q->body_len, 1);
    if (rc)
        return rc;
    if (c->rec.bad) {
        stream_fail(c->out, c->rec.bad, "%s", c->rec.why);
        return 0;
    }
    stream_row *r = &c->row;
    memset(r, 0, sizeof(*r));
    if (!(r->path = strdup(c->path)) || !(r->content_type = strdup(w->ct)))
        return stream_oom();
    r->ttl_s = w->ttl;
    r->expires_at_ms = w->exp;
    r->created_ms = r->access_ms = c->now;
    r->closed_by_epoch = r->closed_by_seq = -1;
    r->fork_offset_req = -1;
    if (w->src) {
        r->fork_of = w->src->id;
        r->fork_pos = r->tail = w->fork_pos;
        r->fork_offset_req = w->fork_req;
        r->start_pos = w->src->start_pos;
        w->src->refcount++;
        if ((rc = sdb_stream_update(tx, w->src)))
            return rc;
    }
    if ((rc = sdb_stream_insert(&r->id, tx, r)))
        return rc;
    c->from = r->tail;
    if ((rc = stream_records_write(tx, r, &c->rec, stream_content_type_is_json(w->ct))))
        return rc;
    r->closed = q->closed;
    if ((rc = sdb_stream_update(tx, r)))
        return rc;
    c->created = 1;
    c->out->status = 201;
    stream_result_row(c->out, r);
    return 0;
}

static int create_tx(stream_tx *tx, void *arg)
{
    create_ctx *c = arg;
    const stream_create_req *q = c->req;
    stream_row old = {0}, src = {0};
    create_want w = {q->content_type ? q->content_type : DEFAULT_CT, c->ttl, c->exp, NULL, 0, -1};
    int rc = create_take_old(c, tx, &old);
    if (rc)
        goto out;
    if (q->forked_from) {
        if ((rc = create_fork_source(c, tx, &src, &w.fork_pos, &w.fork_req)))
            goto out;
        w.src = &src;
        if (!q->content_type)
            w.ct = src.content_type;
        if (w.ttl < 0 && w.exp < 0) {
            w.ttl = src.ttl_s;
            w.exp = src.expires_at_ms;
        }
    }
    if (old.path)
        create_existing(c, &old, &w);
    else
        rc = create_new(c, tx, &w);
out:
    stream_row_free(&src); /* zeroed when there is no source */
    stream_row_free(&old);
    return rc > 0 ? 0 : rc;
}

int stream_create(stream_result *out, stream_hub *h, const char *path, const stream_create_req *req)
{
    create_ctx c = {.path = path, .req = req, .out = out, .ttl = -1, .exp = -1};
    int rc;
    int64_t sid;

    stream_result_init(out);
    if (!stream_path_valid(path)) {
        stream_fail(out, 400, "invalid stream path");
        return 0;
    }
    if (stream_path_reserved(path)) {
        stream_fail(out, 403, "session logs are written by the farm only");
        return 0;
    }
    if (stream_path_control(path)) {
        stream_fail(out, 400, "__ds/ is reserved for the protocol's control APIs");
        return 0;
    }
    if (req->content_type && !stream_content_type_valid(req->content_type)) {
        stream_fail(out, 400, "invalid Content-Type");
        return 0;
    }
    if (req->ttl && req->expires_at) {
        stream_fail(out, 400, "Stream-TTL and Stream-Expires-At are mutually exclusive");
        return 0;
    }
    if (req->ttl && stream_parse_uint(&c.ttl, req->ttl, 100LL * 365 * 86400)) {
        stream_fail(out, 400, "invalid Stream-TTL");
        return 0;
    }
    if (req->expires_at && stream_parse_rfc3339(&c.exp, req->expires_at)) {
        stream_fail(out, 400, "invalid Stream-Expires-At (RFC 3339 expected)");
        return 0;
    }
    if (!req->forked_from && (req->fork_offset || req->fork_sub_offset)) {
        stream_fail(out, 400, "Stream-Fork-Offset needs Stream-Forked-From");
        return 0;
    }
    if (req->forked_from) {
        if (!stream_path_valid(req->forked_from) || !strcmp(req->forked_from, path)) {
            stream_fail(out, 400, "invalid Stream-Forked-From");
            return 0;
        }
        if (stream_path_session(req->forked_from, &sid)) {
            stream_fail(out, 400, "session logs cannot be forked");
            return 0;
        }
    }
    if (req->body_len > STREAM_MAX_APPEND) {
        stream_fail(out, 413, "initial content over %u bytes", STREAM_MAX_APPEND);
        return 0;
    }
    c.now = clock_wall_ms();
    rc = sdb_write(h->st, create_tx, &c);
    if (!rc && c.expired_old)
        hub_gone(h, path);
    if (!rc && c.created)
        hub_after_commit(h, &c.row, &c.rec, c.from,
                         stream_content_type_is_json(c.row.content_type));
    stream_records_free(&c.rec);
    stream_row_free(&c.row);
    return rc;
}
