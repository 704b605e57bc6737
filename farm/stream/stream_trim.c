/*
 * stream_trim.c - how data leaves a stream: DELETE, retention (a trim of
 * the data before an offset) and expiry (the timer's sweep of streams whose
 * TTL or expiry time passed).
 *
 * A stream that forks still read from is only soft-deleted (410 at its URL)
 * until its last fork goes; removing a fork releases its source, up the
 * chain. Each change is one store write; the hot entry and the waiters
 * learn of it after the commit.
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

/* ---- removal ------------------------------------------------------------ */

int stream_remove_row(stream_tx *tx, stream_row *row)
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

/* ---- delete, trim ------------------------------------------------------- */

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
        stream_fail(c->out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (c->row.deleted) {
        stream_fail(c->out, 410, "stream was deleted");
        return 0;
    }
    int expired = stream_row_expired(&c->row, c->now);
    if ((rc = stream_remove_row(tx, &c->row)))
        return rc;
    c->changed = 1;
    if (expired)
        stream_fail(c->out, 404, "stream not found");
    else
        c->out->status = 204;
    return 0;
}

int stream_delete(stream_result *out, stream_hub *h, const char *path)
{
    simple_ctx c = {.path = path, .out = out, .now = clock_wall_ms()};
    stream_result_init(out);
    if (!stream_path_valid(path)) {
        stream_fail(out, 404, "stream not found");
        return 0;
    }
    if (stream_path_reserved(path)) {
        stream_fail(out, 403, "session logs are written by the farm only");
        return 0;
    }
    int rc = sdb_write(h->st, delete_tx, &c);
    if (!rc && c.changed)
        hub_gone(h, path);
    stream_row_free(&c.row);
    return rc;
}

static int trim_tx(stream_tx *tx, void *arg)
{
    simple_ctx *c = arg;
    stream_row *r = &c->row;
    int rc = sdb_stream_get(r, tx, c->path);
    if (rc == FARM_ENOTFOUND || (!rc && !r->deleted && stream_row_expired(r, c->now))) {
        stream_fail(c->out, 404, "stream not found");
        return 0;
    }
    if (rc)
        return rc;
    if (r->deleted) {
        stream_fail(c->out, 410, "stream was deleted");
        return 0;
    }
    if ((int64_t)c->pos > r->tail) {
        stream_fail(c->out, 400, "offset is past the tail");
        return 0;
    }
    if ((int64_t)c->pos > r->start_pos) {
        r->start_pos = (int64_t)c->pos;
        if ((rc = sdb_data_trim(tx, r->id, r->start_pos)) || (rc = sdb_stream_update(tx, r)))
            return rc;
        c->changed = 1;
    }
    stream_result_row(c->out, r);
    c->out->status = 204;
    return 0;
}

int stream_trim(stream_result *out, stream_hub *h, const char *path, const char *offset)
{
    simple_ctx c = {.path = path, .out = out, .now = clock_wall_ms()};
    stream_result_init(out);
    if (stream_offset_parse(&c.pos, offset)) {
        stream_fail(out, 400, "malformed offset");
        return 0;
    }
    int rc = sdb_write(h->st, trim_tx, &c);
    if (!rc && c.changed)
        hub_after_commit(h, &c.row, NULL, 0, 0);
    stream_row_free(&c.row);
    return rc;
}

/* ---- expiry ------------------------------------------------------------- */

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
    if (!r.deleted && stream_row_expired(&r, c->now)) {
        rc = stream_remove_row(tx, &r);
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
