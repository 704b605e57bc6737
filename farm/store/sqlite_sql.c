/*
 * sqlite_sql.c - the SQLite backend's driver of the neutral cursor
 * (store_sql.h): a statement is the compiled sqlite3_stmt behind a small
 * header, taken from the write connection's cache (sqlite_tx_stmt) or
 * compiled on a borrowed reader. The SQL's $1, $2 ... are SQLite named
 * parameters, numbered by where they first appear, so a bind looks the
 * name up.
 */
#include "sqlite_internal.h"
#include "store_sql.h"

#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct lite_stmt {
    sql_stmt base;
    sqlite3_stmt *st;
} lite_stmt;

static sqlite3_stmt *raw(sql_stmt *st)
{
    return ((lite_stmt *)st)->st;
}

static int wrap(sql_stmt **out, sqlite3_stmt *st)
{
    lite_stmt *w = malloc(sizeof(*w));
    if (!w) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    w->base.drv = &sqlite_sql_driver;
    w->st = st;
    *out = &w->base;
    return 0;
}

static sql_conn *reader_get(store *s)
{
    return (sql_conn *)sqlite_reader_get(s);
}

static void reader_put(store *s, sql_conn *c)
{
    if (c)
        sqlite_reader_put(s, (sqlite3 *)c);
}

static int prepare(sql_stmt **out, store *s, sql_conn *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc;

    (void)s;
    *out = NULL;
    if (!c) {
        farm_error_set("store: no database connection");
        return FARM_EIO;
    }
    if ((rc = sqlite_prepare(&st, (sqlite3 *)c, sql)))
        return rc;
    if ((rc = wrap(out, st)))
        sqlite3_finalize(st);
    return rc;
}

static void finalize(sql_stmt *st)
{
    sqlite3_finalize(raw(st));
    free(st);
}

static int tx_stmt(sql_stmt **out, store_tx *tx, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    if ((rc = sqlite_tx_stmt(&st, tx, sql)))
        return rc;
    if ((rc = wrap(out, st)))
        sqlite_tx_stmt_done(tx, st);
    return rc;
}

static void tx_stmt_done(store_tx *tx, sql_stmt *st)
{
    sqlite_tx_stmt_done(tx, raw(st));
    free(st);
}

static int tx_prepare(sql_stmt **out, store_tx *tx, const char *sql)
{
    return prepare(out, NULL, (sql_conn *)sqlite_tx_db(tx), sql);
}

static void reset(sql_stmt *st)
{
    sqlite3_reset(raw(st));
}

static int step(sql_stmt *st)
{
    switch (sqlite3_step(raw(st))) {
    case SQLITE_ROW:
        return SQL_ROW;
    case SQLITE_DONE:
        return SQL_DONE;
    default:
        return SQL_ERROR;
    }
}

/* The SQLite index of parameter $i (0: the statement has none such). */
static int param(sql_stmt *st, int i)
{
    char name[16];
    snprintf(name, sizeof(name), "$%d", i);
    return sqlite3_bind_parameter_index(raw(st), name);
}

static void bind_int64(sql_stmt *st, int i, int64_t v)
{
    sqlite3_bind_int64(raw(st), param(st, i), v);
}

static void bind_double(sql_stmt *st, int i, double v)
{
    sqlite3_bind_double(raw(st), param(st, i), v);
}

static void bind_text(sql_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(raw(st), param(st, i), v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(raw(st), param(st, i));
}

static void bind_null(sql_stmt *st, int i)
{
    sqlite3_bind_null(raw(st), param(st, i));
}

static void bind_blob(sql_stmt *st, int i, const void *p, size_t n)
{
    sqlite3_bind_blob64(raw(st), param(st, i), n ? p : "", n, SQLITE_TRANSIENT);
}

static int col_null(sql_stmt *st, int col)
{
    return sqlite3_column_type(raw(st), col) == SQLITE_NULL;
}

static int64_t col_int64(sql_stmt *st, int col)
{
    return sqlite3_column_int64(raw(st), col);
}

static double col_double(sql_stmt *st, int col)
{
    return sqlite3_column_double(raw(st), col);
}

static const char *col_text(sql_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(raw(st), col);
}

static const void *col_blob(sql_stmt *st, int col, size_t *n)
{
    const void *p = sqlite3_column_blob(raw(st), col);
    *n = (size_t)sqlite3_column_bytes(raw(st), col);
    return p ? p : (sqlite3_column_type(raw(st), col) == SQLITE_NULL ? NULL : "");
}

static int64_t changes(sql_stmt *st)
{
    return sqlite3_changes(sqlite3_db_handle(raw(st)));
}

static int err(sql_stmt *st, const char *what)
{
    return sqlite_err(sqlite3_db_handle(raw(st)), what);
}

static enum sql_failure failure(sql_stmt *st)
{
    switch (sqlite3_extended_errcode(sqlite3_db_handle(raw(st)))) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return SQL_FAIL_UNIQUE;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return SQL_FAIL_FOREIGN_KEY;
    default:
        return SQL_FAIL_OTHER;
    }
}

const sql_driver sqlite_sql_driver = {
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
};
