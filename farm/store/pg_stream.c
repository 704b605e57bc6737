/*
 * pg_stream.c - the SQL of durable streams (see store_stream.h).
 *
 * Three tables (migration in pg_schema.c): `stream` holds one row per
 * stream path with its configuration and tail; `stream_data` one row per
 * record (an append's bytes, or one JSON message) keyed by its start
 * position; `stream_producer` the idempotent producers' (epoch, seq). The
 * session logs are read from the store's `event` table.
 *
 * Writes go through pg_write(), a transaction each, and read the stream's
 * row with SELECT ... FOR UPDATE: appends to one stream (producer fencing,
 * closing, the fork counts of its parent) queue on that row lock across
 * every node, as they queue on SQLite's single writer. Two nodes creating
 * one path: the second insert meets the path's unique index and its write
 * runs again, finding the first's stream. Reads borrow a connection for one
 * REPEATABLE READ, READ ONLY transaction: one snapshot, as on SQLite.
 */
#include "pg_internal.h"
#include "store_stream.h"

#include "base/clock.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Statements a transaction reuses: compiled on first use, reset after each,
 * finalized when the transaction's function returns. A batch of a thousand
 * appends compiles its INSERT once. */
enum { SLOT_GET, SLOT_DATA_INSERT, SLOT_PROD_GET, SLOT_PROD_PUT, NSLOTS };

/* A stream_tx's impl: the connection it runs on and its statements. */
typedef struct stream_conn {
    pg_conn *db;
    pg_stmt *slot[NSLOTS];
    int writing; /* inside a write: rows read are locked */
} stream_conn;

static pg_conn *tx_db(stream_tx *tx)
{
    return ((stream_conn *)tx->impl)->db;
}

static int tx_stmt(pg_stmt **out, stream_tx *tx, int slot, const char *sql)
{
    stream_conn *c = tx->impl;
    if (c->slot[slot]) {
        *out = c->slot[slot];
        return 0;
    }
    int rc = pg_prepare(out, c->db, sql);
    if (!rc)
        c->slot[slot] = *out;
    return rc;
}

/* Done with a slot statement: ready for the next use. */
static void tx_stmt_done(pg_stmt *st)
{
    pg_reset(st);
}

static void conn_end(stream_conn *c)
{
    for (int i = 0; i < NSLOTS; i++)
        pg_finalize(c->slot[i]);
}

/* ---- transactions ---------------------------------------------------------- */

typedef struct write_call {
    stream_tx_fn fn;
    void *arg;
} write_call;

static int write_trampoline(store_tx *stx, void *arg)
{
    write_call *w = arg;
    stream_conn c = {pg_tx_db(stx), {NULL}, 1};
    stream_tx tx = {stx->be, &c};
    int rc = w->fn(&tx, w->arg);
    conn_end(&c);
    return rc;
}

static int stream_write(store *st, stream_tx_fn fn, void *arg)
{
    write_call w = {fn, arg};
    return pg_write(st, write_trampoline, &w);
}

static int stream_read(store *st, stream_tx_fn fn, void *arg)
{
    pg_conn *db = pg_reader_get(st);
    stream_conn c = {db, {NULL}, 0};
    stream_tx tx = {st->be, &c};
    int rc;

    if (!db)
        return FARM_EIO;
    rc = pg_exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    if (!rc) {
        rc = fn(&tx, arg);
        conn_end(&c);
        pg_exec(db, rc ? "ROLLBACK" : "COMMIT");
    }
    pg_reader_put(st, db);
    return rc;
}

/* ---- streams --------------------------------------------------------------- */

#define ROW_COLS                                                                                   \
    "id, path, content_type, ttl_s, expires_at_ms, created_ms, access_ms, tail, start_pos,"        \
    " closed, closed_by_producer, closed_by_epoch, closed_by_seq, last_seq, fork_of, fork_pos,"    \
    " fork_offset_req, refcount, deleted"

static int row_read(stream_row *r, pg_stmt *st)
{
    int oom = 0;
    memset(r, 0, sizeof(*r));
    r->id = pg_col_int64(st, 0);
    r->path = pg_col_dup(st, 1, &oom);
    r->content_type = pg_col_dup(st, 2, &oom);
    r->ttl_s = pg_col_int64(st, 3);
    r->expires_at_ms = pg_col_int64(st, 4);
    r->created_ms = pg_col_int64(st, 5);
    r->access_ms = pg_col_int64(st, 6);
    r->tail = pg_col_int64(st, 7);
    r->start_pos = pg_col_int64(st, 8);
    r->closed = pg_col_int(st, 9);
    r->closed_by_producer = pg_col_dup(st, 10, &oom);
    r->closed_by_epoch = pg_col_int64(st, 11);
    r->closed_by_seq = pg_col_int64(st, 12);
    r->last_seq = pg_col_dup(st, 13, &oom);
    r->fork_of = pg_col_int64(st, 14);
    r->fork_pos = pg_col_int64(st, 15);
    r->fork_offset_req = pg_col_int64(st, 16);
    r->refcount = pg_col_int64(st, 17);
    r->deleted = pg_col_int(st, 18);
    if (oom || !r->path || !r->content_type) {
        stream_row_free(r);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

static int row_query(stream_row *out, stream_tx *tx, const char *sql, const char *path, int64_t id)
{
    pg_conn *db = tx_db(tx);
    pg_stmt *st = NULL;
    int rc = path ? tx_stmt(&st, tx, SLOT_GET, sql) : pg_prepare(&st, db, sql);
    if (rc)
        return rc;
    if (path)
        pg_bind_text(st, 1, path);
    else
        pg_bind_int64(st, 1, id);
    int s = pg_step(st);
    if (s == PG_ROW)
        rc = row_read(out, st);
    else if (s == PG_DONE)
        rc = FARM_ENOTFOUND;
    else
        rc = pg_err(db, "reading a stream");
    if (path)
        tx_stmt_done(st);
    else
        pg_finalize(st);
    return rc;
}

static int stream_get(stream_row *out, stream_tx *tx, const char *path)
{
    stream_conn *c = tx->impl;
    return row_query(out, tx,
                     c->writing ? "SELECT " ROW_COLS " FROM stream WHERE path = $1 FOR UPDATE"
                                : "SELECT " ROW_COLS " FROM stream WHERE path = $1",
                     path, 0);
}

static int stream_get_id(stream_row *out, stream_tx *tx, int64_t id)
{
    stream_conn *c = tx->impl;
    return row_query(out, tx,
                     c->writing ? "SELECT " ROW_COLS " FROM stream WHERE id = $1 FOR UPDATE"
                                : "SELECT " ROW_COLS " FROM stream WHERE id = $1",
                     NULL, id);
}

static void bind_text_or_null(pg_stmt *st, int i, const char *s)
{
    pg_bind_text(st, i, s); /* NULL binds a NULL text */
}

/* Binds every column but id at 1..18, in ROW_COLS order. */
static void row_bind(pg_stmt *st, const stream_row *r)
{
    pg_bind_text(st, 1, r->path);
    pg_bind_text(st, 2, r->content_type);
    pg_bind_int64(st, 3, r->ttl_s);
    pg_bind_int64(st, 4, r->expires_at_ms);
    pg_bind_int64(st, 5, r->created_ms);
    pg_bind_int64(st, 6, r->access_ms);
    pg_bind_int64(st, 7, r->tail);
    pg_bind_int64(st, 8, r->start_pos);
    pg_bind_int(st, 9, r->closed);
    bind_text_or_null(st, 10, r->closed_by_producer);
    pg_bind_int64(st, 11, r->closed_by_epoch);
    pg_bind_int64(st, 12, r->closed_by_seq);
    bind_text_or_null(st, 13, r->last_seq);
    pg_bind_int64(st, 14, r->fork_of);
    pg_bind_int64(st, 15, r->fork_pos);
    pg_bind_int64(st, 16, r->fork_offset_req);
    pg_bind_int64(st, 17, r->refcount);
    pg_bind_int(st, 18, r->deleted);
}

static int step_done(pg_stmt *st, pg_conn *db, const char *what)
{
    int rc = pg_step(st) == PG_DONE ? 0 : pg_err(db, what);
    pg_finalize(st);
    return rc;
}

static int stream_insert(int64_t *id, stream_tx *tx, const stream_row *r)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, tx_db(tx),
                        "INSERT INTO stream (path, content_type, ttl_s, expires_at_ms,"
                        " created_ms, access_ms, tail, start_pos, closed, closed_by_producer,"
                        " closed_by_epoch, closed_by_seq, last_seq, fork_of, fork_pos,"
                        " fork_offset_req, refcount, deleted)"
                        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)"
                        " RETURNING id");
    if (rc)
        return rc;
    row_bind(st, r);
    if (pg_step(st) == PG_ROW)
        *id = pg_col_int64(st, 0);
    else
        rc = pg_err(tx_db(tx), "creating a stream");
    pg_finalize(st);
    return rc;
}

/* Tell every node's live readers that the stream's row changed (delivered
 * at commit; store_notify.h has the payload). */
static int stream_announce(stream_tx *tx, int64_t id, int64_t tail, int closed)
{
    char payload[64];
    snprintf(payload, sizeof(payload), "%lld:%lld:%d", (long long)id, (long long)tail,
             closed ? 1 : 0);
    return pg_conn_notify(tx_db(tx), PG_CHANNEL_STREAM, payload);
}

static int stream_update(stream_tx *tx, const stream_row *r)
{
    pg_stmt *st = NULL;
    int rc =
        pg_prepare(&st, tx_db(tx),
                   "UPDATE stream SET path = $1, content_type = $2, ttl_s = $3,"
                   " expires_at_ms = $4, created_ms = $5, access_ms = $6, tail = $7,"
                   " start_pos = $8, closed = $9, closed_by_producer = $10,"
                   " closed_by_epoch = $11, closed_by_seq = $12, last_seq = $13, fork_of = $14,"
                   " fork_pos = $15, fork_offset_req = $16, refcount = $17, deleted = $18"
                   " WHERE id = $19");
    if (rc)
        return rc;
    row_bind(st, r);
    pg_bind_int64(st, 19, r->id);
    if ((rc = step_done(st, tx_db(tx), "updating a stream")))
        return rc;
    return stream_announce(tx, r->id, r->deleted ? -1 : r->tail, r->closed);
}

static int stream_touch(stream_tx *tx, int64_t id, int64_t access_ms)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, tx_db(tx), "UPDATE stream SET access_ms = $1 WHERE id = $2");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, access_ms);
    pg_bind_int64(st, 2, id);
    return step_done(st, tx_db(tx), "touching a stream");
}

static int exec_id(pg_conn *db, const char *sql, int64_t id)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, db, sql);
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    return step_done(st, db, "removing a stream");
}

static int stream_remove(stream_tx *tx, int64_t id)
{
    int rc;
    if ((rc = exec_id(tx_db(tx), "DELETE FROM stream_data WHERE stream_id = $1", id)))
        return rc;
    if ((rc = exec_id(tx_db(tx), "DELETE FROM stream_producer WHERE stream_id = $1", id)))
        return rc;
    if ((rc = exec_id(tx_db(tx), "DELETE FROM stream WHERE id = $1", id)))
        return rc;
    return stream_announce(tx, id, -1, 0);
}

static int stream_expired(int64_t *ids, size_t max, size_t *n, stream_tx *tx, int64_t now_ms)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, tx_db(tx),
                        "SELECT id FROM stream WHERE deleted = 0 AND"
                        " ((ttl_s >= 0 AND access_ms + ttl_s * 1000 <= $1) OR"
                        "  (expires_at_ms >= 0 AND expires_at_ms <= $1)) LIMIT $2");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, now_ms);
    pg_bind_int64(st, 2, (int64_t)max);
    *n = 0;
    int s;
    while ((s = pg_step(st)) == PG_ROW && *n < max)
        ids[(*n)++] = pg_col_int64(st, 0);
    if (s != PG_ROW && s != PG_DONE)
        rc = pg_err(tx_db(tx), "listing expired streams");
    pg_finalize(st);
    return rc;
}

/* ---- data ------------------------------------------------------------------ */

static int data_insert(stream_tx *tx, int64_t id, int64_t pos, int64_t end, const void *p, size_t n)
{
    pg_stmt *st = NULL;
    int rc = tx_stmt(&st, tx, SLOT_DATA_INSERT,
                     "INSERT INTO stream_data (stream_id, pos, end_pos, data)"
                     " VALUES ($1, $2, $3, $4)");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    pg_bind_int64(st, 2, pos);
    pg_bind_int64(st, 3, end);
    pg_bind_blob(st, 4, n ? p : "", (int)n);
    rc = pg_step(st) == PG_DONE ? 0 : pg_err(tx_db(tx), "appending to a stream");
    tx_stmt_done(st);
    return rc;
}

static int data_trim(stream_tx *tx, int64_t id, int64_t pos)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, tx_db(tx),
                        "DELETE FROM stream_data WHERE stream_id = $1 AND end_pos <= $2");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    pg_bind_int64(st, 2, pos);
    return step_done(st, tx_db(tx), "trimming a stream");
}

static int data_scan(stream_tx *tx, int64_t id, int64_t from, int64_t to, sdb_record_fn fn,
                     void *arg)
{
    pg_stmt *st = NULL;
    /* A record overlapping `from` starts before it: take the last one that
     * starts at or before `from`, then every one that starts inside. */
    int rc = pg_prepare(&st, tx_db(tx),
                        "SELECT pos, end_pos, data FROM stream_data WHERE stream_id = $1"
                        " AND pos >= (SELECT coalesce(max(pos), $2) FROM stream_data"
                        "             WHERE stream_id = $1 AND pos <= $2)"
                        " AND pos < $3 ORDER BY pos");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    pg_bind_int64(st, 2, from);
    pg_bind_int64(st, 3, to);
    int s;
    while ((s = pg_step(st)) == PG_ROW) {
        int64_t pos = pg_col_int64(st, 0), end = pg_col_int64(st, 1);
        if (end <= from)
            continue;
        size_t n = 0;
        const void *p = pg_col_blob(st, 2, &n);
        if ((rc = fn(arg, pos, end, p, n)))
            break;
    }
    if (!rc && s != PG_DONE)
        rc = pg_err(tx_db(tx), "reading a stream");
    pg_finalize(st);
    return rc;
}

/* ---- producers ------------------------------------------------------------- */

static int producer_get(int64_t *epoch, int64_t *seq, stream_tx *tx, int64_t id,
                        const char *producer)
{
    pg_stmt *st = NULL;
    int rc = tx_stmt(&st, tx, SLOT_PROD_GET,
                     "SELECT epoch, seq FROM stream_producer WHERE stream_id = $1 AND"
                     " producer = $2");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    pg_bind_text(st, 2, producer);
    int s = pg_step(st);
    if (s == PG_ROW) {
        *epoch = pg_col_int64(st, 0);
        *seq = pg_col_int64(st, 1);
    } else if (s == PG_DONE) {
        rc = FARM_ENOTFOUND;
    } else {
        rc = pg_err(tx_db(tx), "reading a producer");
    }
    tx_stmt_done(st);
    return rc;
}

static int producer_put(stream_tx *tx, int64_t id, const char *producer, int64_t epoch, int64_t seq)
{
    pg_stmt *st = NULL;
    int rc = tx_stmt(&st, tx, SLOT_PROD_PUT,
                     "INSERT INTO stream_producer (stream_id, producer, epoch, seq)"
                     " VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id, producer)"
                     " DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    pg_bind_text(st, 2, producer);
    pg_bind_int64(st, 3, epoch);
    pg_bind_int64(st, 4, seq);
    rc = pg_step(st) == PG_DONE ? 0 : pg_err(tx_db(tx), "recording a producer");
    tx_stmt_done(st);
    return rc;
}

/* ---- session logs ---------------------------------------------------------- */

static int session_tail(int64_t *last_seq, stream_tx *tx, int64_t session_id)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, tx_db(tx),
                        "SELECT (SELECT coalesce(max(seq), 0) FROM event WHERE session_id = $1)"
                        " FROM session WHERE id = $1");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, session_id);
    int s = pg_step(st);
    if (s == PG_ROW)
        *last_seq = pg_col_int64(st, 0);
    else if (s == PG_DONE)
        rc = FARM_ENOTFOUND;
    else
        rc = pg_err(tx_db(tx), "reading a session log");
    pg_finalize(st);
    return rc;
}

/* One event as the session log's stream shows it, the same bytes as
 * SQLite's json_object(): {"seq":..,"ts":"<RFC 3339 UTC, ms>Z","kind":..,
 * "actor":..,"body":<the body, compact>}. *out is a heap string. */
static int event_record(char **out, pg_stmt *st)
{
    int64_t seq = pg_col_int64(st, 0), ts_ms = pg_col_int64(st, 1);
    time_t secs = (time_t)(ts_ms / 1000);
    struct tm tm;
    char ts[96];
    json_t *body, *j;

    *out = NULL;
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts_ms % 1000));
    body = json_loads(pg_col_text(st, 4) ? pg_col_text(st, 4) : "{}", JSON_DECODE_ANY, NULL);
    if (!body)
        body = json_object(); /* stored bodies are checked JSON */
    j = json_pack("{s:I, s:s, s:s?, s:s?, s:o}", "seq", (json_int_t)seq, "ts", ts, "kind",
                  pg_col_text(st, 2), "actor", pg_col_text(st, 3), "body", body);
    if (j)
        *out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!*out) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

static int session_scan(stream_tx *tx, int64_t session_id, int64_t from_seq, int64_t to_seq,
                        sdb_record_fn fn, void *arg)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, tx_db(tx),
                        "SELECT seq, ts_ms, kind, actor, body FROM event"
                        " WHERE session_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, session_id);
    pg_bind_int64(st, 2, from_seq);
    pg_bind_int64(st, 3, to_seq);
    int s;
    while ((s = pg_step(st)) == PG_ROW) {
        char *rec = NULL;
        if ((rc = event_record(&rec, st)))
            break;
        rc = fn(arg, pg_col_int64(st, 0) - 1, pg_col_int64(st, 0), rec, strlen(rec));
        free(rec);
        if (rc)
            break;
    }
    if (!rc && s != PG_DONE && s != PG_ROW)
        rc = pg_err(tx_db(tx), "reading a session log");
    pg_finalize(st);
    return rc;
}

const store_stream_ops pg_stream_ops = {
    .write = stream_write,
    .read = stream_read,
    .stream_get = stream_get,
    .stream_get_id = stream_get_id,
    .stream_insert = stream_insert,
    .stream_update = stream_update,
    .stream_touch = stream_touch,
    .stream_remove = stream_remove,
    .stream_expired = stream_expired,
    .data_insert = data_insert,
    .data_trim = data_trim,
    .data_scan = data_scan,
    .producer_get = producer_get,
    .producer_put = producer_put,
    .session_tail = session_tail,
    .session_scan = session_scan,
};
