/*
 * pg_sql.c - the PostgreSQL backend's driver of the neutral cursor
 * (store_sql.h): a statement is pg_internal.h's libpq cursor behind a small
 * header that also keeps its connection (for the error and the count of
 * changed rows). The SQL's $1, $2 ... are PostgreSQL's own.
 */
#include "pg_internal.h"
#include "store_sql.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

typedef struct pq_stmt {
    sql_stmt base;
    pg_stmt *st;
    pg_conn *db;
} pq_stmt;

static pg_stmt *raw(sql_stmt *st)
{
    return ((pq_stmt *)st)->st;
}

static int wrap(sql_stmt **out, pg_stmt *st, pg_conn *db)
{
    pq_stmt *w = malloc(sizeof(*w));
    if (!w) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    w->base.drv = &pg_sql_driver;
    w->st = st;
    w->db = db;
    *out = &w->base;
    return 0;
}

static sql_conn *reader_get(store *s)
{
    return (sql_conn *)pg_reader_get(s);
}

static void reader_put(store *s, sql_conn *c)
{
    pg_reader_put(s, (pg_conn *)c);
}

static int prepare(sql_stmt **out, store *s, sql_conn *c, const char *sql)
{
    pg_stmt *st = NULL;
    int rc;

    (void)s;
    *out = NULL;
    if ((rc = pg_prepare(&st, (pg_conn *)c, sql)))
        return rc;
    if ((rc = wrap(out, st, (pg_conn *)c)))
        pg_finalize(st);
    return rc;
}

static void finalize(sql_stmt *st)
{
    pg_finalize(raw(st));
    free(st);
}

static int tx_stmt(sql_stmt **out, store_tx *tx, const char *sql)
{
    pg_stmt *st = NULL;
    int rc;

    *out = NULL;
    if ((rc = pg_tx_stmt(&st, tx, sql)))
        return rc;
    if ((rc = wrap(out, st, pg_tx_db(tx))))
        pg_tx_stmt_done(tx, st);
    return rc;
}

static void tx_stmt_done(store_tx *tx, sql_stmt *st)
{
    pg_tx_stmt_done(tx, raw(st));
    free(st);
}

static int tx_prepare(sql_stmt **out, store_tx *tx, const char *sql)
{
    return prepare(out, NULL, (sql_conn *)pg_tx_db(tx), sql);
}

static void reset(sql_stmt *st)
{
    pg_reset(raw(st));
}

static int step(sql_stmt *st)
{
    switch (pg_step(raw(st))) {
    case PG_ROW:
        return SQL_ROW;
    case PG_DONE:
        return SQL_DONE;
    default:
        return SQL_ERROR;
    }
}

static void bind_int64(sql_stmt *st, int i, int64_t v)
{
    pg_bind_int64(raw(st), i, v);
}

static void bind_double(sql_stmt *st, int i, double v)
{
    pg_bind_double(raw(st), i, v);
}

static void bind_text(sql_stmt *st, int i, const char *v)
{
    pg_bind_text(raw(st), i, v);
}

static void bind_null(sql_stmt *st, int i)
{
    pg_bind_null(raw(st), i);
}

static void bind_blob(sql_stmt *st, int i, const void *p, size_t n)
{
    pg_bind_blob(raw(st), i, p, n);
}

static int col_null(sql_stmt *st, int col)
{
    return pg_col_null(raw(st), col);
}

static int64_t col_int64(sql_stmt *st, int col)
{
    return pg_col_int64(raw(st), col);
}

static double col_double(sql_stmt *st, int col)
{
    return pg_col_double(raw(st), col);
}

static const char *col_text(sql_stmt *st, int col)
{
    return pg_col_text(raw(st), col);
}

static const void *col_blob(sql_stmt *st, int col, size_t *n)
{
    return pg_col_blob(raw(st), col, n);
}

static int64_t changes(sql_stmt *st)
{
    return pg_changes(((pq_stmt *)st)->db);
}

static int err(sql_stmt *st, const char *what)
{
    return pg_err(((pq_stmt *)st)->db, what);
}

static enum sql_failure failure(sql_stmt *st)
{
    const pg_conn *db = ((pq_stmt *)st)->db;
    if (!db)
        return SQL_FAIL_OTHER;
    if (!strcmp(db->sqlstate, "23505"))
        return SQL_FAIL_UNIQUE;
    if (!strcmp(db->sqlstate, "23503"))
        return SQL_FAIL_FOREIGN_KEY;
    return SQL_FAIL_OTHER;
}

/* sql_tx_notify(): the kind's channel (pg_notify.c). */
static int tx_notify(store_tx *tx, store_notify_kind kind, const char *payload)
{
    const char *channel = kind == STORE_NOTIFY_JOBS     ? PG_CHANNEL_JOBS
                          : kind == STORE_NOTIFY_OUTBOX ? PG_CHANNEL_OUTBOX
                          : kind == STORE_NOTIFY_STREAM ? PG_CHANNEL_STREAM
                                                        : PG_CHANNEL_SESSION;
    return pg_tx_notify(tx, channel, payload);
}

const sql_driver pg_sql_driver = {
    .reader_get = reader_get,
    .reader_put = reader_put,
    .prepare = prepare,
    .finalize = finalize,
    .tx_stmt = tx_stmt,
    .tx_stmt_done = tx_stmt_done,
    .tx_prepare = tx_prepare,
    .reset = reset,
    .step = step,
    .bind_int64 = bind_int64,
    .bind_double = bind_double,
    .bind_text = bind_text,
    .bind_null = bind_null,
    .bind_blob = bind_blob,
    .col_null = col_null,
    .col_int64 = col_int64,
    .col_double = col_double,
    .col_text = col_text,
    .col_blob = col_blob,
    .changes = changes,
    .err = err,
    .failure = failure,
    .tx_notify = tx_notify,
    .tx_lock = pg_tx_lock,
    .concurrent = 1,
};
