/*
 * sqlite_stream.c - the SQL of durable streams (see store_stream.h).
 *
 * Three tables (migration in sqlite_schema.c): `stream` holds one row per
 * stream path with its configuration and tail; `stream_data` one row per
 * record (an append's bytes, or one JSON message) keyed by its start
 * position; `stream_producer` the idempotent producers' (epoch, seq). The
 * session logs are read from the store's `event` table.
 *
 * Writes go through sqlite_write(), so they share the store's group commit;
 * reads borrow one of the store's read connections for one transaction.
 */
#include "sqlite_internal.h"
#include "store_stream.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tables, as one migration of sqlite_schema.c. */
const char sqlite_stream_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS stream ("
    " id INTEGER PRIMARY KEY,"
    " path TEXT NOT NULL UNIQUE,"
    " content_type TEXT NOT NULL,"
    " ttl_s INTEGER NOT NULL DEFAULT -1,"
    " expires_at_ms INTEGER NOT NULL DEFAULT -1,"
    " created_ms INTEGER NOT NULL,"
    " access_ms INTEGER NOT NULL,"
    " tail INTEGER NOT NULL DEFAULT 0,"
    " start_pos INTEGER NOT NULL DEFAULT 0,"
    " closed INTEGER NOT NULL DEFAULT 0,"
    " closed_by_producer TEXT, closed_by_epoch INTEGER, closed_by_seq INTEGER,"
    " last_seq TEXT,"
    " fork_of INTEGER NOT NULL DEFAULT 0,"
    " fork_pos INTEGER NOT NULL DEFAULT 0,"
    " fork_offset_req INTEGER NOT NULL DEFAULT -1,"
    " refcount INTEGER NOT NULL DEFAULT 0,"
    " deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS stream_data ("
    " stream_id INTEGER NOT NULL, pos INTEGER NOT NULL, end_pos INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY (stream_id, pos)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS stream_producer ("
    " stream_id INTEGER NOT NULL, producer TEXT NOT NULL, epoch INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, PRIMARY KEY (stream_id, producer)) WITHOUT ROWID;";

/* Statements a transaction reuses: compiled on first use, reset after each,
 * finalized when the transaction's function returns. A batch of a thousand
 * appends compiles its INSERT once. */
enum { SLOT_GET, SLOT_DATA_INSERT, SLOT_PROD_GET, SLOT_PROD_PUT, NSLOTS };

/* A stream_tx's impl: the connection it runs on and its statements. */
typedef struct stream_conn {
    sqlite3 *db;
    sqlite3_stmt *slot[NSLOTS];
} stream_conn;

static sqlite3 *tx_db(stream_tx *tx)
{
    return ((stream_conn *)tx->impl)->db;
}

static int tx_stmt(sqlite3_stmt **out, stream_tx *tx, int slot, const char *sql)
{
    stream_conn *c = tx->impl;
    if (c->slot[slot]) {
        *out = c->slot[slot];
        return 0;
    }
    int rc = sqlite_prepare(out, c->db, sql);
    if (!rc)
        c->slot[slot] = *out;
    return rc;
}

/* Done with a slot statement: ready for the next use. */
static void tx_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void conn_end(stream_conn *c)
{
    for (int i = 0; i < NSLOTS; i++)
        sqlite3_finalize(c->slot[i]);
}

/* ---- transactions ---------------------------------------------------------- */

typedef struct write_call {
    stream_tx_fn fn;
    void *arg;
} write_call;

static int write_trampoline(store_tx *stx, void *arg)
{
    write_call *w = arg;
    stream_conn c = {sqlite_tx_db(stx), {NULL}};
    stream_tx tx = {stx->be, &c};
    int rc = w->fn(&tx, w->arg);
    conn_end(&c);
    return rc;
}

static int stream_write(store *st, stream_tx_fn fn, void *arg)
{
    write_call w = {fn, arg};
    return sqlite_write(st, write_trampoline, &w);
}

static int stream_read(store *st, stream_tx_fn fn, void *arg)
{
    sqlite3 *db = sqlite_reader_get(st);
    stream_conn c = {db, {NULL}};
    stream_tx tx = {st->be, &c};
    int rc = sqlite_exec(db, "BEGIN");
    if (!rc) {
        rc = fn(&tx, arg);
        conn_end(&c);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    sqlite_reader_put(st, db);
    return rc;
}

/* ---- streams --------------------------------------------------------------- */

#define ROW_COLS                                                                                   \
    "id, path, content_type, ttl_s, expires_at_ms, created_ms, access_ms, tail, start_pos,"        \
    " closed, closed_by_producer, closed_by_epoch, closed_by_seq, last_seq, fork_of, fork_pos,"    \
    " fork_offset_req, refcount, deleted"

static int row_read(stream_row *r, sqlite3_stmt *st)
{
    int oom = 0;
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    r->path = sqlite_col_text(st, 1, &oom);
    r->content_type = sqlite_col_text(st, 2, &oom);
    r->ttl_s = sqlite3_column_int64(st, 3);
    r->expires_at_ms = sqlite3_column_int64(st, 4);
    r->created_ms = sqlite3_column_int64(st, 5);
    r->access_ms = sqlite3_column_int64(st, 6);
    r->tail = sqlite3_column_int64(st, 7);
    r->start_pos = sqlite3_column_int64(st, 8);
    r->closed = sqlite3_column_int(st, 9);
    r->closed_by_producer = sqlite_col_text(st, 10, &oom);
    r->closed_by_epoch = sqlite3_column_int64(st, 11);
    r->closed_by_seq = sqlite3_column_int64(st, 12);
    r->last_seq = sqlite_col_text(st, 13, &oom);
    r->fork_of = sqlite3_column_int64(st, 14);
    r->fork_pos = sqlite3_column_int64(st, 15);
    r->fork_offset_req = sqlite3_column_int64(st, 16);
    r->refcount = sqlite3_column_int64(st, 17);
    r->deleted = sqlite3_column_int(st, 18);
    if (oom || !r->path || !r->content_type) {
        stream_row_free(r);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

static int row_query(stream_row *out, stream_tx *tx, const char *sql, const char *path, int64_t id)
{
    sqlite3 *db = tx_db(tx);
    sqlite3_stmt *st = NULL;
    int rc = path ? tx_stmt(&st, tx, SLOT_GET, sql) : sqlite_prepare(&st, db, sql);
    if (rc)
        return rc;
    if (path)
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        rc = row_read(out, st);
    else if (s == SQLITE_DONE)
        rc = FARM_ENOTFOUND;
    else
        rc = sqlite_err(db, "reading a stream");
    if (path)
        tx_stmt_done(st);
    else
        sqlite3_finalize(st);
    return rc;
}

static int stream_get(stream_row *out, stream_tx *tx, const char *path)
{
    return row_query(out, tx, "SELECT " ROW_COLS " FROM stream WHERE path = ?", path, 0);
}

static int stream_get_id(stream_row *out, stream_tx *tx, int64_t id)
{
    return row_query(out, tx, "SELECT " ROW_COLS " FROM stream WHERE id = ?", NULL, id);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Binds every column but id at 1..18, in ROW_COLS order. */
static void row_bind(sqlite3_stmt *st, const stream_row *r)
{
    sqlite3_bind_text(st, 1, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->content_type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->ttl_s);
    sqlite3_bind_int64(st, 4, r->expires_at_ms);
    sqlite3_bind_int64(st, 5, r->created_ms);
    sqlite3_bind_int64(st, 6, r->access_ms);
    sqlite3_bind_int64(st, 7, r->tail);
    sqlite3_bind_int64(st, 8, r->start_pos);
    sqlite3_bind_int(st, 9, r->closed);
    bind_text_or_null(st, 10, r->closed_by_producer);
    sqlite3_bind_int64(st, 11, r->closed_by_epoch);
    sqlite3_bind_int64(st, 12, r->closed_by_seq);
    bind_text_or_null(st, 13, r->last_seq);
    sqlite3_bind_int64(st, 14, r->fork_of);
    sqlite3_bind_int64(st, 15, r->fork_pos);
    sqlite3_bind_int64(st, 16, r->fork_offset_req);
    sqlite3_bind_int64(st, 17, r->refcount);
    sqlite3_bind_int(st, 18, r->deleted);
}

static int step_done(sqlite3_stmt *st, sqlite3 *db, const char *what)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sqlite_err(db, what);
    sqlite3_finalize(st);
    return rc;
}

static int stream_insert(int64_t *id, stream_tx *tx, const stream_row *r)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, tx_db(tx),
                            "INSERT INTO stream (path, content_type, ttl_s, expires_at_ms,"
                            " created_ms, access_ms, tail, start_pos, closed, closed_by_producer,"
                            " closed_by_epoch, closed_by_seq, last_seq, fork_of, fork_pos,"
                            " fork_offset_req, refcount, deleted)"
                            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (rc)
        return rc;
    row_bind(st, r);
    if ((rc = step_done(st, tx_db(tx), "creating a stream")))
        return rc;
    *id = sqlite3_last_insert_rowid(tx_db(tx));
    return 0;
}

static int stream_update(stream_tx *tx, const stream_row *r)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, tx_db(tx),
                            "UPDATE stream SET path = ?, content_type = ?, ttl_s = ?,"
                            " expires_at_ms = ?, created_ms = ?, access_ms = ?, tail = ?,"
                            " start_pos = ?, closed = ?, closed_by_producer = ?,"
                            " closed_by_epoch = ?, closed_by_seq = ?, last_seq = ?, fork_of = ?,"
                            " fork_pos = ?, fork_offset_req = ?, refcount = ?, deleted = ?"
                            " WHERE id = ?");
    if (rc)
        return rc;
    row_bind(st, r);
    sqlite3_bind_int64(st, 19, r->id);
    return step_done(st, tx_db(tx), "updating a stream");
}

static int stream_touch(stream_tx *tx, int64_t id, int64_t access_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, tx_db(tx), "UPDATE stream SET access_ms = ? WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, access_ms);
    sqlite3_bind_int64(st, 2, id);
    return step_done(st, tx_db(tx), "touching a stream");
}

static int exec_id(sqlite3 *db, const char *sql, int64_t id)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, db, sql);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    return step_done(st, db, "removing a stream");
}

static int stream_remove(stream_tx *tx, int64_t id)
{
    int rc;
    if ((rc = exec_id(tx_db(tx), "DELETE FROM stream_data WHERE stream_id = ?", id)))
        return rc;
    if ((rc = exec_id(tx_db(tx), "DELETE FROM stream_producer WHERE stream_id = ?", id)))
        return rc;
    return exec_id(tx_db(tx), "DELETE FROM stream WHERE id = ?", id);
}

static int stream_expired(int64_t *ids, size_t max, size_t *n, stream_tx *tx, int64_t now_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, tx_db(tx),
                            "SELECT id FROM stream WHERE deleted = 0 AND"
                            " ((ttl_s >= 0 AND access_ms + ttl_s * 1000 <= ?1) OR"
                            "  (expires_at_ms >= 0 AND expires_at_ms <= ?1)) LIMIT ?2");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    *n = 0;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW && *n < max)
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = sqlite_err(tx_db(tx), "listing expired streams");
    sqlite3_finalize(st);
    return rc;
}

/* ---- data ------------------------------------------------------------------ */

static int data_insert(stream_tx *tx, int64_t id, int64_t pos, int64_t end, const void *p, size_t n)
{
    sqlite3_stmt *st = NULL;
    int rc = tx_stmt(&st, tx, SLOT_DATA_INSERT,
                     "INSERT INTO stream_data (stream_id, pos, end_pos, data)"
                     " VALUES (?, ?, ?, ?)");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, pos);
    sqlite3_bind_int64(st, 3, end);
    sqlite3_bind_blob(st, 4, n ? p : "", (int)n, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sqlite_err(tx_db(tx), "appending to a stream");
    tx_stmt_done(st);
    return rc;
}

static int data_trim(stream_tx *tx, int64_t id, int64_t pos)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, tx_db(tx),
                            "DELETE FROM stream_data WHERE stream_id = ? AND end_pos <= ?");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, pos);
    return step_done(st, tx_db(tx), "trimming a stream");
}

static int data_scan(stream_tx *tx, int64_t id, int64_t from, int64_t to, sdb_record_fn fn,
                     void *arg)
{
    sqlite3_stmt *st = NULL;
    /* A record overlapping `from` starts before it: take the last one that
     * starts at or before `from`, then every one that starts inside. */
    int rc = sqlite_prepare(&st, tx_db(tx),
                            "SELECT pos, end_pos, data FROM stream_data WHERE stream_id = ?1"
                            " AND pos >= (SELECT coalesce(max(pos), ?2) FROM stream_data"
                            "             WHERE stream_id = ?1 AND pos <= ?2)"
                            " AND pos < ?3 ORDER BY pos");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t pos = sqlite3_column_int64(st, 0), end = sqlite3_column_int64(st, 1);
        if (end <= from)
            continue;
        const void *p = sqlite3_column_blob(st, 2);
        size_t n = (size_t)sqlite3_column_bytes(st, 2);
        if ((rc = fn(arg, pos, end, p, n)))
            break;
    }
    if (!rc && s != SQLITE_DONE)
        rc = sqlite_err(tx_db(tx), "reading a stream");
    sqlite3_finalize(st);
    return rc;
}

/* ---- producers ------------------------------------------------------------- */

static int producer_get(int64_t *epoch, int64_t *seq, stream_tx *tx, int64_t id,
                        const char *producer)
{
    sqlite3_stmt *st = NULL;
    int rc = tx_stmt(&st, tx, SLOT_PROD_GET,
                     "SELECT epoch, seq FROM stream_producer WHERE stream_id = ? AND"
                     " producer = ?");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, producer, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *epoch = sqlite3_column_int64(st, 0);
        *seq = sqlite3_column_int64(st, 1);
    } else if (s == SQLITE_DONE) {
        rc = FARM_ENOTFOUND;
    } else {
        rc = sqlite_err(tx_db(tx), "reading a producer");
    }
    tx_stmt_done(st);
    return rc;
}

static int producer_put(stream_tx *tx, int64_t id, const char *producer, int64_t epoch, int64_t seq)
{
    sqlite3_stmt *st = NULL;
    int rc = tx_stmt(&st, tx, SLOT_PROD_PUT,
                     "INSERT INTO stream_producer (stream_id, producer, epoch, seq)"
                     " VALUES (?, ?, ?, ?) ON CONFLICT (stream_id, producer)"
                     " DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, producer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, epoch);
    sqlite3_bind_int64(st, 4, seq);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sqlite_err(tx_db(tx), "recording a producer");
    tx_stmt_done(st);
    return rc;
}

/* ---- session logs ---------------------------------------------------------- */

static int session_tail(int64_t *last_seq, stream_tx *tx, int64_t session_id)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, tx_db(tx),
                            "SELECT (SELECT coalesce(max(seq), 0) FROM event WHERE session_id = ?1)"
                            " FROM session WHERE id = ?1");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, session_id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *last_seq = sqlite3_column_int64(st, 0);
    else if (s == SQLITE_DONE)
        rc = FARM_ENOTFOUND;
    else
        rc = sqlite_err(tx_db(tx), "reading a session log");
    sqlite3_finalize(st);
    return rc;
}

static int session_scan(stream_tx *tx, int64_t session_id, int64_t from_seq, int64_t to_seq,
                        sdb_record_fn fn, void *arg)
{
    sqlite3_stmt *st = NULL;
    /* ts as RFC 3339 UTC with milliseconds; body is stored as JSON text. */
    int rc =
        sqlite_prepare(&st, tx_db(tx),
                       "SELECT seq, json_object('seq', seq,"
                       " 'ts', strftime('%Y-%m-%dT%H:%M:%f', ts_ms / 1000.0, 'unixepoch') || 'Z',"
                       " 'kind', kind, 'actor', actor, 'body', json(body))"
                       " FROM event WHERE session_id = ? AND seq > ? AND seq <= ? ORDER BY seq");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, from_seq);
    sqlite3_bind_int64(st, 3, to_seq);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const void *p = sqlite3_column_text(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1);
        if ((rc = fn(arg, seq - 1, seq, p, n)))
            break;
    }
    if (!rc && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = sqlite_err(tx_db(tx), "reading a session log");
    sqlite3_finalize(st);
    return rc;
}

const store_stream_ops sqlite_stream_ops = {
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
