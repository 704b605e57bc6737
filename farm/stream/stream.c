/*
 * stream.c - the durable streams protocol engine: create, append (bytes and
 * JSON, Stream-Seq, idempotent producers, closure), read (catch-up from an
 * offset, through fork chains), head, delete (soft while forks read it),
 * TTL and expiry, retention, and the session logs as read-only views.
 *
 * Every decision that must be atomic (producer fencing with its append, a
 * fork's reference count, closure) happens inside one store write, so it is
 * serialised by the store's writer and group-committed. After a commit the
 * hub's hot entry learns the new tail and wakes live readers
 * (stream_live.c). Reads are served from the hot entry's ring when they
 * can, from a read connection otherwise.
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"
#include "farm/store/store.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <inttypes.h>
#include <jansson.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOUCH_EVERY_MS 1000
#define DEFAULT_CT     "application/octet-stream"

static void result_init(stream_result *r)
{
    memset(r, 0, sizeof(*r));
    r->ttl_s = -1;
    r->expires_at_ms = -1;
    r->producer_epoch = -1;
    r->producer_seq = -1;
    r->expected_seq = -1;
    r->received_seq = -1;
}

static void fail(stream_result *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(stream_result *r, int status, const char *fmt, ...)
{
    va_list ap;
    r->status = status;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

static void result_row(stream_result *r, const stream_row *row)
{
    size_t n = strlen(row->content_type);
    if (n >= sizeof(r->content_type))
        n = sizeof(r->content_type) - 1;
    memcpy(r->content_type, row->content_type, n);
    r->content_type[n] = '\0';
    r->json = stream_content_type_is_json(row->content_type);
    r->ttl_s = row->ttl_s;
    r->expires_at_ms = row->expires_at_ms;
    r->closed = row->closed;
    r->stream_id = row->id;
    r->next_pos = (uint64_t)row->tail;
    stream_offset_format(r->next_offset, (uint64_t)row->tail);
}

static int row_expired(const stream_row *r, int64_t now)
{
    return (r->ttl_s >= 0 && r->access_ms + r->ttl_s * 1000 <= now) ||
           (r->expires_at_ms >= 0 && r->expires_at_ms <= now);
}

static int oom(void)
{
    farm_error_set("out of memory");
    return FARM_ENOMEM;
}

/* ---- records: a body split the way the stream stores it ------------------ */

typedef struct records {
    size_t n;
    char **data; /* JSON: compact messages (owned, or in block); bytes: one borrowed body */
    size_t *len;
    int owned;
    char *block; /* the quick path's messages, NUL-separated, when not NULL */
    int bad;     /* 400 when the body is used */
    char why[200];
} records;

static void records_free(records *r)
{
    if (r->owned)
        for (size_t i = 0; i < r->n; i++)
            free(r->data[i]);
    free(r->block);
    free(r->data);
    free(r->len);
    memset(r, 0, sizeof(*r));
}

static int records_add(records *r, char *p, size_t n)
{
    char **d = realloc(r->data, (r->n + 1) * sizeof(*d));
    if (!d)
        return oom();
    r->data = d;
    size_t *l = realloc(r->len, (r->n + 1) * sizeof(*l));
    if (!l)
        return oom();
    r->len = l;
    r->data[r->n] = p;
    r->len[r->n] = n;
    r->n++;
    return 0;
}

static int json_msg_add(records *r, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return oom();
    int rc = records_add(r, s, strlen(s));
    if (rc)
        free(s);
    return rc;
}

/* The common case without jansson (stream_json.c): 1 when r holds the
 * messages, 0 when the body is for jansson to judge, or FARM_ENOMEM. */
#define QUICK_MAX_MESSAGES 256

static int records_quick(records *r, const void *body, size_t len)
{
    size_t spans[QUICK_MAX_MESSAGES + 1], n, clen;
    char *out = malloc(len + 1);
    if (!out)
        return oom();
    if (!stream_json_compact(out, &clen, spans, QUICK_MAX_MESSAGES, &n, body, len)) {
        free(out);
        return 0;
    }
    r->data = malloc(n * sizeof(*r->data));
    r->len = malloc(n * sizeof(*r->len));
    if (!r->data || !r->len) {
        free(out);
        free(r->data);
        free(r->len);
        r->data = NULL;
        r->len = NULL;
        return oom();
    }
    out[clen] = '\0';
    for (size_t i = 0; i < n; i++) {
        r->data[i] = out + spans[i];
        r->len[i] = spans[i + 1] - 1 - spans[i];
        out[spans[i + 1] - 1] = '\0'; /* the separator after it */
    }
    r->n = n;
    r->block = out;
    return 1;
}

/* Split body for a stream of content type ct. A malformed body is not an
 * error here: r->bad says so, and the caller answers 400 at the point the
 * protocol puts that check. put: an empty JSON array is allowed. */
static int records_prepare(records *r, const char *ct, const void *body, size_t len, int put)
{
    int rc;
    memset(r, 0, sizeof(*r));
    if (!len)
        return 0;
    if (!stream_content_type_is_json(ct)) {
        r->owned = 0;
        return records_add(r, (char *)body, len);
    }
    if ((rc = records_quick(r, body, len)) != 0)
        return rc < 0 ? rc : 0;
    r->owned = 1;
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!v) {
        r->bad = 1;
        snprintf(r->why, sizeof(r->why), "invalid JSON: %s", jerr.text);
        return 0;
    }
    if (json_is_array(v)) {
        if (!json_array_size(v) && !put) {
            r->bad = 1;
            snprintf(r->why, sizeof(r->why), "empty JSON array");
        }
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            if ((rc = json_msg_add(r, m)))
                break;
        }
    } else {
        rc = json_msg_add(r, v);
    }
    json_decref(v);
    return rc;
}

static int records_write(stream_tx *tx, stream_row *row, const records *rec, int json)
{
    for (size_t i = 0; i < rec->n; i++) {
        int64_t end = row->tail + (json ? 1 : (int64_t)rec->len[i]);
        int rc = sdb_data_insert(tx, row->id, row->tail, end, rec->data[i], rec->len[i]);
        if (rc)
            return rc;
        row->tail = end;
    }
    return 0;
}

/* Remove an expired or deleted stream: soft while forks read from it, else
 * for good, then release its source (and the source's, up the chain). */
static int remove_stream(stream_tx *tx, stream_row *row)
{
    int rc;
    if (row->refcount > 0) {
        row->deleted = 1;
        return sdb_stream_update(tx, row);
    }
    if ((rc = sdb_stream_remove(tx, row->id)))
        return rc;
    int64_t src_id = row->fork_of;
    while (src_id) {
        stream_row src;
        if ((rc = sdb_stream_get_id(&src, tx, src_id)))
            return rc == FARM_ENOTFOUND ? 0 : rc;
        src.refcount--;
        if (src.deleted && src.refcount <= 0) {
            rc = sdb_stream_remove(tx, src.id);
            src_id = src.fork_of;
        } else {
            rc = sdb_stream_update(tx, &src);
            src_id = 0;
        }
        stream_row_free(&src);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- hot entry updates after a commit ------------------------------------ */

static void hot_after_commit(stream_hub *h, const stream_row *row, const records *rec, int64_t from,
                             int json)
{
    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, row->path, 0);
    if (e) {
        if (e->stream_id != row->id)
            hub_ring_clear(e);
        else if (rec && e->ring_end == from && from >= row->fork_pos) {
            int64_t pos = from;
            for (size_t i = 0; i < rec->n; i++) {
                int64_t end = pos + (json ? 1 : (int64_t)rec->len[i]);
                hub_ring_add(h, e, pos, end, rec->data[i], rec->len[i]);
                pos = end;
            }
        }
        hub_hot_meta(h, e, row->id, row->content_type, row->tail, row->start_pos, row->fork_pos,
                     row->closed, row->ttl_s, row->expires_at_ms, row->access_ms);
    }
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
}

/* ---- create ------------------------------------------------------------ */

typedef struct create_ctx {
    const char *path;
    const stream_create_req *req;
    stream_result *out;
    int64_t ttl, exp;
    int64_t now;
    records rec;
    int created, expired_old;
    int64_t from;
    stream_row row;
} create_ctx;

static int create_fork_source(create_ctx *c, stream_tx *tx, stream_row *src, int64_t *fork_pos,
                              int64_t *fork_req)
{
    const stream_create_req *q = c->req;
    int rc = sdb_stream_get(src, tx, q->forked_from);
    if (rc == FARM_ENOTFOUND || (!rc && !src->deleted && row_expired(src, c->now))) {
        if (!rc)
            stream_row_free(src);
        fail(c->out, 404, "source stream %s not found", q->forked_from);
        return 1;
    }
    if (rc)
        return rc;
    if (src->deleted) {
        fail(c->out, 409, "source stream %s was deleted", q->forked_from);
        goto reject;
    }
    if (q->content_type && !stream_content_type_same(q->content_type, src->content_type)) {
        fail(c->out, 409, "content type differs from the source's (%s)", src->content_type);
        goto reject;
    }
    uint64_t pos = (uint64_t)src->tail;
    *fork_req = -1;
    if (q->fork_offset && strcmp(q->fork_offset, "now") != 0) {
        if (!strcmp(q->fork_offset, "-1"))
            pos = 0;
        else if (stream_offset_parse(&pos, q->fork_offset)) {
            fail(c->out, 400, "malformed Stream-Fork-Offset");
            goto reject;
        }
        *fork_req = (int64_t)pos;
    }
    if ((int64_t)pos > src->tail) {
        fail(c->out, 400, "Stream-Fork-Offset is past the source's tail");
        goto reject;
    }
    if (q->fork_sub_offset) {
        int64_t sub;
        if (stream_parse_uint(&sub, q->fork_sub_offset, STREAM_JS_MAX)) {
            fail(c->out, 400, "malformed Stream-Fork-Sub-Offset");
            goto reject;
        }
        if (sub > src->tail - (int64_t)pos) {
            fail(c->out, 400, "Stream-Fork-Sub-Offset is past the source's data");
            goto reject;
        }
        pos += (uint64_t)sub;
        if (*fork_req >= 0 || sub)
            *fork_req = (int64_t)pos;
    }
    if ((int64_t)pos < src->start_pos) {
        fail(c->out, 410, "the fork offset is no longer retained by the source");
        goto reject;
    }
    *fork_pos = (int64_t)pos;
    return 0;
reject:
    stream_row_free(src);
    return 1;
}

static int create_tx(stream_tx *tx, void *arg)
{
    create_ctx *c = arg;
    const stream_create_req *q = c->req;
    stream_result *out = c->out;
    stream_row old = {0}, src = {0};
    int rc = sdb_stream_get(&old, tx, c->path);
    int have_src = 0;
    int64_t fork_pos = 0, fork_req = -1;
    const char *ct = q->content_type ? q->content_type : DEFAULT_CT;
    int64_t ttl = c->ttl, exp = c->exp;

    if (rc && rc != FARM_ENOTFOUND)
        return rc;
    if (!rc && old.deleted) {
        fail(out, 409, "a deleted stream still has forks at this path");
        goto out;
    }
    if (!rc && row_expired(&old, c->now)) {
        /* the old stream expired: it goes, and the path is free again */
        if ((rc = remove_stream(tx, &old)))
            goto out;
        c->expired_old = 1;
        if (old.deleted) {
            fail(out, 409, "an expired stream still has forks at this path");
            goto out;
        }
        stream_row_free(&old);
        rc = FARM_ENOTFOUND;
    }
    if (q->forked_from) {
        if ((rc = create_fork_source(c, tx, &src, &fork_pos, &fork_req)))
            goto out_src;
        have_src = 1;
        ct = q->content_type ? q->content_type : src.content_type;
        if (ttl < 0 && exp < 0) {
            ttl = src.ttl_s;
            exp = src.expires_at_ms;
        }
    }

    if (old.path) {
        /* it exists: the same configuration is success, any other a conflict */
        int same = stream_content_type_same(ct, old.content_type) && ttl == old.ttl_s &&
                   exp == old.expires_at_ms && !q->closed == !old.closed;
        if (have_src)
            same = same && old.fork_of == src.id && fork_req == old.fork_offset_req;
        else
            same = same && !old.fork_of;
        if (same) {
            out->status = 200;
            result_row(out, &old);
        } else {
            fail(out, 409, "a stream with a different configuration exists at this path");
        }
        rc = 0;
        goto out;
    }

    /* new stream */
    if ((rc = records_prepare(&c->rec, ct, q->body, q->body_len, 1)))
        goto out;
    if (c->rec.bad) {
        fail(out, 400, "%s", c->rec.why);
        rc = 0;
        goto out;
    }
    stream_row *r = &c->row;
    memset(r, 0, sizeof(*r));
    if (!(r->path = strdup(c->path)) || !(r->content_type = strdup(ct))) {
        rc = oom();
        goto out;
    }
    r->ttl_s = ttl;
    r->expires_at_ms = exp;
    r->created_ms = r->access_ms = c->now;
    r->closed_by_epoch = r->closed_by_seq = -1;
    r->fork_offset_req = -1;
    if (have_src) {
        r->fork_of = src.id;
        r->fork_pos = r->tail = fork_pos;
        r->fork_offset_req = fork_req;
        r->start_pos = src.start_pos;
        src.refcount++;
        if ((rc = sdb_stream_update(tx, &src)))
            goto out;
    }
    if ((rc = sdb_stream_insert(&r->id, tx, r)))
        goto out;
    c->from = r->tail;
    if ((rc = records_write(tx, r, &c->rec, stream_content_type_is_json(ct))))
        goto out;
    r->closed = q->closed;
    if ((rc = sdb_stream_update(tx, r)))
        goto out;
    c->created = 1;
    out->status = 201;
    result_row(out, r);
out:
    if (have_src)
        stream_row_free(&src);
out_src:
    stream_row_free(&old);
    return rc > 0 ? 0 : rc;
}

int stream_create(stream_result *out, stream_hub *h, const char *path, const stream_create_req *req)
{
    create_ctx c = {.path = path, .req = req, .out = out, .ttl = -1, .exp = -1};
    int rc;
    int64_t sid;

    result_init(out);
    if (!stream_path_valid(path)) {
        fail(out, 400, "invalid stream path");
        return 0;
    }
    if (stream_path_reserved(path)) {
        fail(out, 403, "session logs are written by the farm only");
        return 0;
    }
    if (req->content_type && !stream_content_type_valid(req->content_type)) {
        fail(out, 400, "invalid Content-Type");
        return 0;
    }
    if (req->ttl && req->expires_at) {
        fail(out, 400, "Stream-TTL and Stream-Expires-At are mutually exclusive");
        return 0;
    }
    if (req->ttl && stream_parse_uint(&c.ttl, req->ttl, 100LL * 365 * 86400)) {
        fail(out, 400, "invalid Stream-TTL");
        return 0;
    }
    if (req->expires_at && stream_parse_rfc3339(&c.exp, req->expires_at)) {
        fail(out, 400, "invalid Stream-Expires-At (RFC 3339 expected)");
        return 0;
    }
    if (!req->forked_from && (req->fork_offset || req->fork_sub_offset)) {
        fail(out, 400, "Stream-Fork-Offset needs Stream-Forked-From");
        return 0;
    }
    if (req->forked_from) {
        if (!stream_path_valid(req->forked_from) || !strcmp(req->forked_from, path)) {
            fail(out, 400, "invalid Stream-Forked-From");
            return 0;
        }
        if (stream_path_session(req->forked_from, &sid)) {
            fail(out, 400, "session logs cannot be forked");
            return 0;
        }
    }
    if (req->body_len > STREAM_MAX_APPEND) {
        fail(out, 413, "initial content over %u bytes", STREAM_MAX_APPEND);
        return 0;
    }
    c.now = clock_wall_ms();
    rc = sdb_write(h->st, create_tx, &c);
    if (!rc && c.expired_old)
        hub_gone(h, path);
    if (!rc && c.created)
        hot_after_commit(h, &c.row, &c.rec, c.from,
                         stream_content_type_is_json(c.row.content_type));
    records_free(&c.rec);
    stream_row_free(&c.row);
    return rc;
}

/* ---- append ------------------------------------------------------------ */

/* One append waiting in the hub's queue (see stream_append()). */
typedef struct append_ctx {
    const char *path;
    const stream_append_req *req;
    stream_result *out;
    int producer;
    int64_t epoch, seq;
    int64_t now;
    records rec;
    int rec_ready;
    int appended;
    int64_t from;
    stream_row row;           /* the stream after this append (path and type copied) */
    struct append_ctx *next;  /* in the queue */
    struct append_ctx *wnext; /* in the batch written */
    sem_t sem;                /* a waiting caller's: posted when done */
    int done, rc;
    stream_append_done_fn done_fn; /* an asynchronous caller's */
    void *done_arg;
} append_ctx;

/* The streams a batch touches, read once and written back once. */
#define BATCH_ROWS 16

typedef struct batch_row {
    stream_row row;
    int found; /* 0: no such stream (cached as such) */
    int dirty;
} batch_row;

typedef struct append_batch {
    append_ctx *first;
    batch_row rows[BATCH_ROWS];
    int nrows;
} append_batch;

static void producer_headers(stream_result *out, int64_t epoch, int64_t seq)
{
    out->producer_epoch = epoch;
    out->producer_seq = seq;
}

static int batch_flush(stream_tx *tx, append_batch *b)
{
    for (int i = 0; i < b->nrows; i++) {
        if (b->rows[i].dirty) {
            int rc = sdb_stream_update(tx, &b->rows[i].row);
            if (rc)
                return rc;
            b->rows[i].dirty = 0;
        }
    }
    return 0;
}

static void batch_clear(append_batch *b)
{
    for (int i = 0; i < b->nrows; i++)
        stream_row_free(&b->rows[i].row);
    b->nrows = 0;
}

/* The batch's copy of the stream at path, read on first use. */
static int batch_row_get(batch_row **out, stream_tx *tx, append_batch *b, const char *path)
{
    for (int i = 0; i < b->nrows; i++)
        if (b->rows[i].found ? !strcmp(b->rows[i].row.path, path) : 0) {
            *out = &b->rows[i];
            return 0;
        }
    if (b->nrows == BATCH_ROWS) {
        int rc = batch_flush(tx, b);
        if (rc)
            return rc;
        batch_clear(b);
    }
    batch_row *br = &b->rows[b->nrows];
    memset(br, 0, sizeof(*br));
    int rc = sdb_stream_get(&br->row, tx, path);
    if (rc && rc != FARM_ENOTFOUND)
        return rc;
    if (rc == FARM_ENOTFOUND) {
        *out = NULL; /* not cached: a missing stream costs one lookup per append */
        return 0;
    }
    br->found = 1;
    b->nrows++;
    *out = br;
    return 0;
}

/* What the caller needs of the row after its append: a copy that outlives
 * the batch. */
static int row_snapshot(stream_row *dst, const stream_row *src)
{
    *dst = *src;
    dst->path = strdup(src->path);
    dst->content_type = strdup(src->content_type);
    dst->closed_by_producer = NULL;
    dst->last_seq = NULL;
    if (!dst->path || !dst->content_type) {
        stream_row_free(dst);
        return oom();
    }
    return 0;
}

/* One append inside a batch: validate against the batch's copy of the
 * stream, write the records, update the copy (written back at the end). */
static int append_one(stream_tx *tx, append_batch *b, append_ctx *c)
{
    const stream_append_req *q = c->req;
    stream_result *out = c->out;
    batch_row *br = NULL;
    int64_t pepoch = -1, pseq = -1;
    int have_state = 0;
    int rc = batch_row_get(&br, tx, b, c->path);
    if (rc)
        return rc;
    stream_row *r = br ? &br->row : NULL;

    if (!r || (!r->deleted && row_expired(r, c->now))) {
        fail(out, 404, "stream not found");
        return 0;
    }
    if (r->deleted) {
        fail(out, 410, "stream was deleted");
        return 0;
    }
    result_row(out, r);
    /* 1. closed */
    if (r->closed) {
        out->closed = 1;
        if (c->producer && r->closed_by_producer &&
            !strcmp(r->closed_by_producer, q->producer_id) && r->closed_by_epoch == c->epoch &&
            r->closed_by_seq == c->seq) {
            out->status = 204; /* the retry of the append that closed it */
            producer_headers(out, c->epoch, c->seq);
        } else if (!q->body_len && q->close) {
            out->status = 204; /* closing again is idempotent */
        } else {
            fail(out, 409, "stream is closed");
        }
        return 0;
    }
    /* 2. content type */
    if (q->body_len && !stream_content_type_same(q->content_type, r->content_type)) {
        fail(out, 409, "Content-Type does not match the stream's (%s)", r->content_type);
        return 0;
    }
    /* 3. producer fencing */
    if (c->producer) {
        rc = sdb_producer_get(&pepoch, &pseq, tx, r->id, q->producer_id);
        if (rc && rc != FARM_ENOTFOUND)
            return rc;
        have_state = !rc;
        if (have_state && c->epoch < pepoch) {
            fail(out, 403, "stale producer epoch");
            out->producer_epoch = pepoch;
            return 0;
        }
        if (have_state && c->epoch == pepoch) {
            if (c->seq <= pseq) {
                out->status = 204; /* a duplicate: already appended */
                producer_headers(out, pepoch, pseq);
                return 0;
            }
            if (c->seq != pseq + 1) {
                fail(out, 409, "producer sequence gap");
                out->expected_seq = pseq + 1;
                out->received_seq = c->seq;
                return 0;
            }
        } else if (c->seq != 0) {
            if (have_state) {
                fail(out, 400, "a new producer epoch must start at Producer-Seq 0");
            } else {
                fail(out, 409, "producer sequence gap");
                out->expected_seq = 0;
                out->received_seq = c->seq;
            }
            return 0;
        }
    }
    /* 4. Stream-Seq (scoped per stream) */
    if (q->stream_seq && r->last_seq && strcmp(q->stream_seq, r->last_seq) <= 0) {
        fail(out, 409, "Stream-Seq regression");
        return 0;
    }
    /* 5. the body itself */
    if (q->body_len) {
        if (!c->rec_ready || !stream_content_type_is_json(r->content_type) !=
                                 !stream_content_type_is_json(q->content_type)) {
            records_free(&c->rec);
            if ((rc = records_prepare(&c->rec, r->content_type, q->body, q->body_len, 0)))
                return rc;
        }
        if (c->rec.bad) {
            fail(out, 400, "%s", c->rec.why);
            return 0;
        }
    }
    c->from = r->tail;
    if ((rc = records_write(tx, r, &c->rec, stream_content_type_is_json(r->content_type))))
        return rc;
    if (q->stream_seq) {
        free(r->last_seq);
        if (!(r->last_seq = strdup(q->stream_seq)))
            return oom();
    }
    if (q->close) {
        r->closed = 1;
        if (c->producer) {
            free(r->closed_by_producer);
            if (!(r->closed_by_producer = strdup(q->producer_id)))
                return oom();
            r->closed_by_epoch = c->epoch;
            r->closed_by_seq = c->seq;
        }
    }
    r->access_ms = c->now;
    br->dirty = 1;
    if (c->producer) {
        if ((rc = sdb_producer_put(tx, r->id, q->producer_id, c->epoch, c->seq)))
            return rc;
        producer_headers(out, c->epoch, c->seq);
    }
    if ((rc = row_snapshot(&c->row, r)))
        return rc;
    c->appended = 1;
    result_row(out, r);
    out->status = c->producer ? 200 : 204;
    return 0;
}

static int batch_tx(stream_tx *tx, void *arg)
{
    append_batch *b = arg;
    int rc = 0;
    for (append_ctx *c = b->first; c && !rc; c = c->wnext)
        rc = append_one(tx, b, c);
    if (!rc)
        rc = batch_flush(tx, b);
    batch_clear(b);
    return rc;
}

#define BATCH_MAX 4096

/* Complete an append: the waiting caller wakes, or the asynchronous caller's
 * callback runs and the context is freed. */
static void append_complete(append_ctx *c)
{
    if (!c->done_fn) {
        c->done = 1;
        sem_post(&c->sem); /* the caller may return and be gone at once */
        return;
    }
    c->done_fn(c->done_arg, c->rc, c->out);
    records_free(&c->rec);
    stream_row_free(&c->row);
    free(c);
}

/* The appender thread: takes everything queued (up to BATCH_MAX) and writes
 * it as one store write, then completes each append in order. Each append
 * costs a row of data, not a read and a write of its stream's row and a
 * savepoint of its own, and no caller's thread has to drive the batch. */
static void *appender_main(void *arg)
{
    stream_hub *h = arg;
    pthread_mutex_lock(&h->aq_lock);
    for (;;) {
        while (!h->aq_head && !h->aq_stopping)
            pthread_cond_wait(&h->aq_wake, &h->aq_lock);
        if (!h->aq_head)
            break; /* stopping, and drained */
        append_ctx *first = h->aq_head, *last = h->aq_head;
        for (int n = 1; last->next && n < BATCH_MAX; n++)
            last = last->next;
        h->aq_head = last->next;
        if (!h->aq_head)
            h->aq_tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&h->aq_lock);

        /* the batch holds the requests that got past the checks; the
         * refused ones are completed as they are, in their turn */
        append_batch b;
        memset(&b, 0, sizeof(b));
        append_ctx **tail = &b.first;
        for (append_ctx *m = first; m; m = m->next)
            if (!m->out->status) {
                *tail = m;
                tail = &m->wnext;
            }
        *tail = NULL;
        int rc = b.first ? sdb_write(h->st, batch_tx, &b) : 0;
        append_ctx *next;
        for (append_ctx *m = first; m; m = next) {
            next = m->next;
            if (rc && !m->out->status) {
                m->rc = rc;
            } else if (rc && m->appended) {
                m->rc = rc;
                m->appended = 0;
            } else if (m->appended) {
                hot_after_commit(h, &m->row, &m->rec, m->from,
                                 stream_content_type_is_json(m->row.content_type));
            }
            if (rc)
                m->appended = 0;
            append_complete(m);
        }
        pthread_mutex_lock(&h->aq_lock);
    }
    pthread_mutex_unlock(&h->aq_lock);
    return NULL;
}

static void append_push(stream_hub *h, append_ctx *c)
{
    c->next = NULL;
    pthread_mutex_lock(&h->aq_lock);
    if (h->aq_tail)
        h->aq_tail->next = c;
    else
        h->aq_head = c;
    h->aq_tail = c;
    pthread_cond_signal(&h->aq_wake);
    pthread_mutex_unlock(&h->aq_lock);
}

int stream_appender_start(stream_hub *h)
{
    int err = pthread_create(&h->appender, NULL, appender_main, h);
    if (err) {
        farm_error_set("stream hub: cannot start its appender thread: %s", strerror(err));
        return FARM_ERROR;
    }
    h->appender_started = 1;
    return 0;
}

void stream_appender_stop(stream_hub *h)
{
    if (!h->appender_started)
        return;
    pthread_mutex_lock(&h->aq_lock);
    h->aq_stopping = 1;
    pthread_cond_broadcast(&h->aq_wake);
    pthread_mutex_unlock(&h->aq_lock);
    pthread_join(h->appender, NULL);
    h->appender_started = 0;
}

/* The checks that need no store (a refusal sets out->status), and the body
 * parsed outside the writer, so a batch is not held up by it. */
static int append_prepare(append_ctx *c, const char *path, const stream_append_req *req)
{
    stream_result *out = c->out;
    if (!stream_path_valid(path)) {
        fail(out, 404, "stream not found");
        return 0;
    }
    if (stream_path_reserved(path)) {
        fail(out, 403, "session logs are written by the farm only");
        return 0;
    }
    int np = !!req->producer_id + !!req->producer_epoch + !!req->producer_seq;
    if (np && np != 3) {
        fail(out, 400, "Producer-Id, Producer-Epoch and Producer-Seq go together");
        return 0;
    }
    if (np) {
        if (!*req->producer_id || strlen(req->producer_id) > 256) {
            fail(out, 400, "invalid Producer-Id");
            return 0;
        }
        if (stream_parse_uint(&c->epoch, req->producer_epoch, STREAM_JS_MAX) ||
            stream_parse_uint(&c->seq, req->producer_seq, STREAM_JS_MAX)) {
            fail(out, 400, "Producer-Epoch and Producer-Seq must be integers up to 2^53-1");
            return 0;
        }
        c->producer = 1;
    }
    if (!req->body_len && !req->close) {
        fail(out, 400, "empty append");
        return 0;
    }
    if (req->body_len && !req->content_type) {
        fail(out, 400, "Content-Type is required");
        return 0;
    }
    if (req->body_len && !stream_content_type_valid(req->content_type)) {
        fail(out, 400, "invalid Content-Type");
        return 0;
    }
    if (req->body_len > STREAM_MAX_APPEND) {
        fail(out, 413, "append over %u bytes", STREAM_MAX_APPEND);
        return 0;
    }
    if (req->stream_seq && (!*req->stream_seq || strlen(req->stream_seq) > 256)) {
        fail(out, 400, "invalid Stream-Seq");
        return 0;
    }
    if (req->body_len) {
        int rc = records_prepare(&c->rec, req->content_type, req->body, req->body_len, 0);
        if (rc)
            return rc;
        c->rec_ready = 1;
    }
    c->now = clock_wall_ms();
    return 0;
}

int stream_append(stream_result *out, stream_hub *h, const char *path, const stream_append_req *req)
{
    append_ctx c = {.path = path, .req = req, .out = out};
    result_init(out);
    int rc = append_prepare(&c, path, req);
    if (!rc && !out->status) {
        sem_init(&c.sem, 0, 0);
        append_push(h, &c);
        while (sem_wait(&c.sem) != 0)
            ; /* EINTR */
        sem_destroy(&c.sem);
        rc = c.rc;
        if (rc)
            farm_error_set("stream append: the store failed");
    }
    records_free(&c.rec);
    stream_row_free(&c.row);
    return rc;
}

int stream_append_async(stream_hub *h, const char *path, const stream_append_req *req,
                        stream_result *out, stream_append_done_fn done, void *arg)
{
    append_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return oom();
    c->path = path;
    c->req = req;
    c->out = out;
    c->done_fn = done;
    c->done_arg = arg;
    result_init(out);
    int rc = append_prepare(c, path, req);
    if (rc) {
        records_free(&c->rec);
        free(c);
        return rc;
    }
    append_push(h, c); /* refusals too: the callback always comes from the appender */
    return 0;
}

/* ---- delete, head, trim ------------------------------------------------ */

typedef struct simple_ctx {
    const char *path;
    stream_result *out;
    int64_t now;
    uint64_t pos;
    int changed;
    stream_row row;
} simple_ctx;

static int delete_tx(stream_tx *tx, void *arg)
{
    simple_ctx *c = arg;
    int rc = sdb_stream_get(&c->row, tx, c->path);
    if (rc == FARM_ENOTFOUND) {
        fail(c->out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (c->row.deleted) {
        fail(c->out, 410, "stream was deleted");
        return 0;
    }
    int expired = row_expired(&c->row, c->now);
    if ((rc = remove_stream(tx, &c->row)))
        return rc;
    c->changed = 1;
    if (expired)
        fail(c->out, 404, "stream not found");
    else
        c->out->status = 204;
    return 0;
}

int stream_delete(stream_result *out, stream_hub *h, const char *path)
{
    simple_ctx c = {.path = path, .out = out, .now = clock_wall_ms()};
    result_init(out);
    if (!stream_path_valid(path)) {
        fail(out, 404, "stream not found");
        return 0;
    }
    if (stream_path_reserved(path)) {
        fail(out, 403, "session logs are written by the farm only");
        return 0;
    }
    int rc = sdb_write(h->st, delete_tx, &c);
    if (!rc && c.changed)
        hub_gone(h, path);
    stream_row_free(&c.row);
    return rc;
}

static int head_tx(stream_tx *tx, void *arg)
{
    simple_ctx *c = arg;
    int rc = sdb_stream_get(&c->row, tx, c->path);
    if (rc == FARM_ENOTFOUND || (!rc && !c->row.deleted && row_expired(&c->row, c->now))) {
        fail(c->out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (c->row.deleted) {
        fail(c->out, 410, "stream was deleted");
        return 0;
    }
    result_row(c->out, &c->row);
    c->out->status = 200;
    return 0;
}

typedef struct session_ctx {
    int64_t session_id;
    int64_t tail;
    int found;
} session_ctx;

static int session_tail_tx(stream_tx *tx, void *arg)
{
    session_ctx *c = arg;
    int rc = sdb_session_tail(&c->tail, tx, c->session_id);
    if (rc == FARM_ENOTFOUND)
        return 0;
    c->found = !rc;
    return rc;
}

static void result_session(stream_result *out, int64_t tail)
{
    snprintf(out->content_type, sizeof(out->content_type), "application/json");
    out->json = 1;
    out->next_pos = (uint64_t)tail;
    stream_offset_format(out->next_offset, (uint64_t)tail);
}

int stream_head(stream_result *out, stream_hub *h, const char *path)
{
    simple_ctx c = {.path = path, .out = out, .now = clock_wall_ms()};
    session_ctx s = {0};
    result_init(out);
    if (!stream_path_valid(path)) {
        fail(out, 404, "stream not found");
        return 0;
    }
    if (stream_path_reserved(path) && !stream_path_session(path, &s.session_id)) {
        fail(out, 404, "no such session");
        return 0;
    }
    if (stream_path_session(path, &s.session_id)) {
        int rc = sdb_read(h->st, session_tail_tx, &s);
        if (rc)
            return rc;
        if (!s.found) {
            fail(out, 404, "no such session");
            return 0;
        }
        result_session(out, s.tail);
        out->status = 200;
        return 0;
    }
    int rc = sdb_read(h->st, head_tx, &c);
    stream_row_free(&c.row);
    return rc;
}

static int trim_tx(stream_tx *tx, void *arg)
{
    simple_ctx *c = arg;
    stream_row *r = &c->row;
    int rc = sdb_stream_get(r, tx, c->path);
    if (rc == FARM_ENOTFOUND || (!rc && !r->deleted && row_expired(r, c->now))) {
        fail(c->out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (r->deleted) {
        fail(c->out, 410, "stream was deleted");
        return 0;
    }
    if ((int64_t)c->pos > r->tail) {
        fail(c->out, 400, "offset is past the tail");
        return 0;
    }
    if ((int64_t)c->pos > r->start_pos) {
        r->start_pos = (int64_t)c->pos;
        if ((rc = sdb_data_trim(tx, r->id, r->start_pos)) || (rc = sdb_stream_update(tx, r)))
            return rc;
        c->changed = 1;
    }
    result_row(c->out, r);
    c->out->status = 204;
    return 0;
}

int stream_trim(stream_result *out, stream_hub *h, const char *path, const char *offset)
{
    simple_ctx c = {.path = path, .out = out, .now = clock_wall_ms()};
    result_init(out);
    if (stream_offset_parse(&c.pos, offset)) {
        fail(out, 400, "malformed offset");
        return 0;
    }
    int rc = sdb_write(h->st, trim_tx, &c);
    if (!rc && c.changed)
        hot_after_commit(h, &c.row, NULL, 0, 0);
    stream_row_free(&c.row);
    return rc;
}

/* ---- read -------------------------------------------------------------- */

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
            fail(c->out, 410, "offset is no longer retained");
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
    if (rc == FARM_ENOTFOUND || (!rc && !r->deleted && row_expired(r, c->now))) {
        fail(out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (r->deleted) {
        fail(out, 410, "stream was deleted");
        return 0;
    }
    result_row(out, r);
    c->json = out->json;
    c->own_id = r->id;
    if (c->kind == OFF_START)
        c->pos = (uint64_t)r->start_pos;
    else if (c->kind == OFF_NOW)
        c->pos = (uint64_t)r->tail;
    if ((int64_t)c->pos > r->tail) {
        fail(out, 400, "offset is past the stream's tail");
        return 0;
    }
    if ((int64_t)c->pos < r->start_pos) {
        fail(out, 410, "offset is no longer retained");
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
        fail(out, 404, "no such session");
        return 0;
    }
    if (rc)
        return rc;
    result_session(out, tail);
    c->json = 1;
    if (c->kind == OFF_START)
        c->pos = 0;
    else if (c->kind == OFF_NOW)
        c->pos = (uint64_t)tail;
    if ((int64_t)c->pos > tail) {
        fail(out, 400, "offset is past the stream's tail");
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

    result_init(out);
    c.max = req->max_bytes ? req->max_bytes : STREAM_READ_CHUNK;
    c.now = clock_wall_ms();
    if (!stream_path_valid(path)) {
        fail(out, 404, "stream not found");
        return 0;
    }
    if (parse_offset(&c, req->offset)) {
        fail(out, 400, "malformed offset");
        return 0;
    }
    int session = stream_path_session(path, &sid);
    if (!session && stream_path_reserved(path)) {
        fail(out, 404, "no such session");
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

/* ---- hot loading, expiry sweep, sessions -------------------------------- */

typedef struct load_ctx {
    const char *path;
    int64_t now;
    int found;
    stream_row row;
} load_ctx;

static int load_tx(stream_tx *tx, void *arg)
{
    load_ctx *c = arg;
    int rc = sdb_stream_get(&c->row, tx, c->path);
    if (rc == FARM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    c->found = !c->row.deleted && !row_expired(&c->row, c->now);
    return 0;
}

int stream_hot_load(stream_hub *h, const char *path)
{
    session_ctx s = {0};
    if (stream_path_session(path, &s.session_id)) {
        int rc = sdb_read(h->st, session_tail_tx, &s);
        if (rc)
            return rc;
        pthread_mutex_lock(&h->lock);
        hot *e = hub_hot_get(h, path, 1);
        if (e) {
            if (s.found)
                hub_hot_session_tail(h, e, s.tail);
            else
                e->gone = 1;
        }
        pthread_mutex_unlock(&h->lock);
        hub_fire_pending(h);
        return s.found ? 0 : FARM_ENOTFOUND;
    }
    load_ctx c = {.path = path, .now = clock_wall_ms()};
    int rc = sdb_read(h->st, load_tx, &c);
    if (rc)
        return rc;
    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, path, 1);
    if (e) {
        if (c.found) {
            const stream_row *r = &c.row;
            hub_hot_meta(h, e, r->id, r->content_type, r->tail, r->start_pos, r->fork_pos,
                         r->closed, r->ttl_s, r->expires_at_ms, r->access_ms);
        } else {
            e->gone = 1;
            e->loaded = 0;
        }
    }
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
    stream_row_free(&c.row);
    return c.found ? 0 : FARM_ENOTFOUND;
}

#define SWEEP_BATCH 64

typedef struct sweep_ctx {
    int64_t ids[SWEEP_BATCH];
    size_t n;
    int64_t now;
    int64_t id;
    char *path; /* of the stream removed, for the waiters */
} sweep_ctx;

static int expired_tx(stream_tx *tx, void *arg)
{
    sweep_ctx *c = arg;
    return sdb_stream_expired(c->ids, SWEEP_BATCH, &c->n, tx, c->now);
}

static int expire_one_tx(stream_tx *tx, void *arg)
{
    sweep_ctx *c = arg;
    stream_row r;
    int rc = sdb_stream_get_id(&r, tx, c->id);
    if (rc)
        return rc == FARM_ENOTFOUND ? 0 : rc;
    if (!r.deleted && row_expired(&r, c->now)) {
        rc = remove_stream(tx, &r);
        if (!rc)
            c->path = strdup(r.path);
    }
    stream_row_free(&r);
    return rc;
}

void stream_sweep_expired(stream_hub *h)
{
    sweep_ctx c = {.now = clock_wall_ms()};
    if (sdb_read(h->st, expired_tx, &c))
        return;
    for (size_t i = 0; i < c.n; i++) {
        c.id = c.ids[i];
        c.path = NULL;
        if (sdb_write(h->st, expire_one_tx, &c) == 0 && c.path) {
            log_debug("stream expired", "path", c.path);
            hub_gone(h, c.path);
        }
        free(c.path);
    }
}

int stream_session_append(int64_t *out_seq, stream_hub *h, int64_t session_id, const char *kind,
                          const char *actor, const char *body_json)
{
    int64_t seq = 0;
    int rc = store_event_append(&seq, h->st, session_id, kind, actor, body_json);
    if (rc)
        return rc;
    stream_hub_session_notify(h, session_id, seq);
    if (out_seq)
        *out_seq = seq;
    return 0;
}
