/*
 * stream_append.c - POST: append to a stream (bytes or JSON messages), with
 * Stream-Seq, idempotent producers (epoch and seq, fenced in the same
 * transaction as the data) and closure.
 *
 * Appends are not written by their callers: they are queued to the hub's
 * appender thread, which takes everything queued and writes it as one store
 * write (a group commit), checking each append against a copy of its
 * stream's row that the batch reads once and writes back once. The checks
 * that need no store, and parsing the body, happen before the queue.
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/clock.h"
#include "base/error.h"

#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

/* One append waiting in the hub's queue (see stream_append()). */
typedef struct append_ctx {
    const char *path;
    const stream_append_req *req;
    stream_result *out;
    int producer;
    int64_t epoch, seq;
    int64_t now;
    stream_records rec;
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
        return stream_oom();
    }
    return 0;
}

/* ---- the checks, in the protocol's order --------------------------------- */

/* 1. A closed stream takes no more: the retry of the request that closed
 * it, or a close without data and without producer, is a success; anything
 * else a conflict (a producer's other requests included, 5.2.1). */
static void append_closed(append_ctx *c, const stream_row *r)
{
    const stream_append_req *q = c->req;
    stream_result *out = c->out;
    out->closed = 1;
    if (c->producer) {
        if (r->closed_by_producer && !strcmp(r->closed_by_producer, q->producer_id) &&
            r->closed_by_epoch == c->epoch && r->closed_by_seq == c->seq) {
            out->status = 204; /* the retry of the request that closed it */
            producer_headers(out, c->epoch, c->seq);
        } else {
            stream_fail(out, 409, "stream is closed");
        }
    } else if (!q->body_len && q->close) {
        out->status = 204; /* closing again is idempotent */
    } else {
        stream_fail(out, 409, "stream is closed");
    }
}

/* 3. Producer fencing against the producer's committed state: 0 when this
 * is its next append, 1 when answered (a stale epoch, a duplicate, a gap),
 * or the store's failure. */
static int append_fence(append_ctx *c, stream_tx *tx, const stream_row *r)
{
    const stream_append_req *q = c->req;
    stream_result *out = c->out;
    int64_t pepoch = -1, pseq = -1;
    int rc = sdb_producer_get(&pepoch, &pseq, tx, r->id, q->producer_id);
    if (rc && rc != FARM_ENOTFOUND)
        return rc;
    int have_state = !rc;
    if (have_state && c->epoch < pepoch) {
        stream_fail(out, 403, "stale producer epoch");
        out->producer_epoch = pepoch;
        return 1;
    }
    if (have_state && c->epoch == pepoch) {
        if (c->seq <= pseq) {
            out->status = 204; /* a duplicate: already appended */
            producer_headers(out, pepoch, pseq);
            return 1;
        }
        if (c->seq != pseq + 1) {
            stream_fail(out, 409, "producer sequence gap");
            out->expected_seq = pseq + 1;
            out->received_seq = c->seq;
            return 1;
        }
    } else if (c->seq != 0) {
        if (have_state) {
            stream_fail(out, 400, "a new producer epoch must start at Producer-Seq 0");
        } else {
            stream_fail(out, 409, "producer sequence gap");
            out->expected_seq = 0;
            out->received_seq = c->seq;
        }
        return 1;
    }
    return 0;
}

/* 5. The body as the stream stores it (split again when the stream's mode
 * is not the one the request's type suggested): 0, 1 when it is malformed
 * (400) or holds too many messages (413), or FARM_ENOMEM. */
static int append_body(append_ctx *c, const stream_row *r)
{
    const stream_append_req *q = c->req;
    if (!q->body_len)
        return 0;
    if (!c->rec_ready || !stream_content_type_is_json(r->content_type) !=
                             !stream_content_type_is_json(q->content_type)) {
        stream_records_free(&c->rec);
        int rc = stream_records_prepare(&c->rec, r->content_type, q->body, q->body_len, 0);
        if (rc)
            return rc;
    }
    if (c->rec.bad) {
        stream_fail(c->out, c->rec.bad, "%s", c->rec.why);
        return 1;
    }
    return 0;
}

/* The protocol's checks, in its order, against the batch's copy of the
 * stream: 0 when the append goes ahead, 1 when it is answered, or a
 * failure. */
static int append_check(append_ctx *c, stream_tx *tx, const stream_row *r)
{
    const stream_append_req *q = c->req;
    int rc;
    /* 1. closed */
    if (r->closed) {
        append_closed(c, r);
        return 1;
    }
    /* 2. content type */
    if (q->body_len && !stream_content_type_same(q->content_type, r->content_type)) {
        stream_fail(c->out, 409, "Content-Type does not match the stream's (%s)", r->content_type);
        return 1;
    }
    /* 3. producer fencing */
    if (c->producer && (rc = append_fence(c, tx, r)))
        return rc;
    /* 4. Stream-Seq (scoped per stream) */
    if (q->stream_seq && r->last_seq && strcmp(q->stream_seq, r->last_seq) <= 0) {
        stream_fail(c->out, 409, "Stream-Seq regression");
        return 1;
    }
    /* 5. the body itself */
    return append_body(c, r);
}

/* ---- the batch ---------------------------------------------------------- */

/* Write the records and update the batch's copy of the stream (written
 * back at the end of the batch) and the caller's result. */
static int append_write(append_ctx *c, stream_tx *tx, batch_row *br)
{
    const stream_append_req *q = c->req;
    stream_result *out = c->out;
    stream_row *r = &br->row;
    int rc;
    c->from = r->tail;
    if ((rc = stream_records_write(tx, r, &c->rec, stream_content_type_is_json(r->content_type))))
        return rc;
    if (q->stream_seq) {
        free(r->last_seq);
        if (!(r->last_seq = strdup(q->stream_seq)))
            return stream_oom();
    }
    if (q->close) {
        r->closed = 1;
        if (c->producer) {
            free(r->closed_by_producer);
            if (!(r->closed_by_producer = strdup(q->producer_id)))
                return stream_oom();
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
    stream_result_row(out, r);
    /* a producer's new data is 200; a close without data is 204 (5.3) */
    out->status = c->producer && q->body_len ? 200 : 204;
    return 0;
}

/* One append inside a batch: validate against the batch's copy of the
 * stream, write the records, update the copy. */
static int append_one(stream_tx *tx, append_batch *b, append_ctx *c)
{
    batch_row *br = NULL;
    int rc = batch_row_get(&br, tx, b, c->path);
    if (rc)
        return rc;
    stream_row *r = br ? &br->row : NULL;
    if (!r || (!r->deleted && stream_row_expired(r, c->now))) {
        stream_fail(c->out, 404, "stream not found");
        return 0;
    }
    if (r->deleted) {
        stream_fail(c->out, 410, "stream was deleted");
        return 0;
    }
    stream_result_row(c->out, r);
    if ((rc = append_check(c, tx, r)))
        return rc > 0 ? 0 : rc;
    return append_write(c, tx, br);
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

/* ---- the appender thread ------------------------------------------------ */

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
    stream_records_free(&c->rec);
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
                hub_after_commit(h, &m->row, &m->rec, m->from,
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

/* ---- the callers' side -------------------------------------------------- */

/* The checks that need no store (a refusal sets out->status), and the body
 * parsed outside the writer, so a batch is not held up by it. */
static int append_prepare(append_ctx *c, const char *path, const stream_append_req *req)
{
    stream_result *out = c->out;
    if (!stream_path_valid(path)) {
        stream_fail(out, 404, "stream not found");
        return 0;
    }
    if (stream_path_reserved(path)) {
        stream_fail(out, 403, "session logs are written by the farm only");
        return 0;
    }
    int np = !!req->producer_id + !!req->producer_epoch + !!req->producer_seq;
    if (np && np != 3) {
        stream_fail(out, 400, "Producer-Id, Producer-Epoch and Producer-Seq go together");
        return 0;
    }
    if (np) {
        if (!*req->producer_id || strlen(req->producer_id) > 256) {
            stream_fail(out, 400, "invalid Producer-Id");
            return 0;
        }
        if (stream_parse_uint(&c->epoch, req->producer_epoch, STREAM_JS_MAX) ||
            stream_parse_uint(&c->seq, req->producer_seq, STREAM_JS_MAX)) {
            stream_fail(out, 400, "Producer-Epoch and Producer-Seq must be integers up to 2^53-1");
            return 0;
        }
        c->producer = 1;
    }
    if (!req->body_len && !req->close) {
        stream_fail(out, 400, "empty append");
        return 0;
    }
    if (req->body_len && !req->content_type) {
        stream_fail(out, 400, "Content-Type is required");
        return 0;
    }
    if (req->body_len && !stream_content_type_valid(req->content_type)) {
        stream_fail(out, 400, "invalid Content-Type");
        return 0;
    }
    if (req->body_len > STREAM_MAX_APPEND) {
        stream_fail(out, 413, "append over %u bytes", STREAM_MAX_APPEND);
        return 0;
    }
    if (req->stream_seq && (!*req->stream_seq || strlen(req->stream_seq) > 256)) {
        stream_fail(out, 400, "invalid Stream-Seq");
        return 0;
    }
    if (req->body_len) {
        int rc = stream_records_prepare(&c->rec, req->content_type, req->body, req->body_len, 0);
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
    stream_result_init(out);
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
    stream_records_free(&c.rec);
    stream_row_free(&c.row);
    return rc;
}

int stream_append_async(stream_hub *h, const char *path, const stream_append_req *req,
                        stream_result *out, stream_append_done_fn done, void *arg)
{
    append_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return stream_oom();
    c->path = path;
    c->req = req;
    c->out = out;
    c->done_fn = done;
    c->done_arg = arg;
    stream_result_init(out);
    int rc = append_prepare(c, path, req);
    if (rc) {
        stream_records_free(&c->rec);
        free(c);
        return rc;
    }
    append_push(h, c); /* refusals too: the callback always comes from the appender */
    return 0;
}
