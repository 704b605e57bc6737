/*
 * sqlite_inspect.c - one statement of any SQL, with JSON parameters and JSON
 * rows, for tests and diagnostics (see store_inspect.h): the SQLite backend's
 * inspect table.
 *
 * The SQL is not a string literal, so nothing here uses the statement
 * caches: each call compiles its statement, runs it and finalizes it.
 * Queries run on a borrowed read connection (query_only), statements inside
 * a write function on the write connection, in the batch's transaction.
 */
#include "sqlite_internal.h"
#include "store_inspect.h"

#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compile sql, which must be exactly one statement (a trailing ';' and
 * blanks are allowed): a second one would be silently ignored by SQLite and
 * refused by other backends. */
static int prepare_one(sqlite3_stmt **out, sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;

    *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK) {
        sqlite3_finalize(st);
        return sqlite_err(db, "preparing a statement");
    }
    if (!st) {
        farm_error_set("store: no SQL statement given");
        return FARM_EINVALID;
    }
    for (; tail && *tail; tail++) {
        if (!strchr(" \t\r\n;", *tail)) {
            sqlite3_finalize(st);
            farm_error_set("store: one SQL statement at a time (more after \"%.40s\")", sql);
            return FARM_EINVALID;
        }
    }
    *out = st;
    return 0;
}

/* Bind params (a JSON array or NULL) to st's placeholders, in order. */
static int bind_params(sqlite3_stmt *st, sqlite3 *db, const json_t *params)
{
    size_t want = (size_t)sqlite3_bind_parameter_count(st);
    size_t n = params ? json_array_size(params) : 0;

    if (params && !json_is_array(params)) {
        farm_error_set("store: the parameters must be a JSON array");
        return FARM_EINVALID;
    }
    if (n != want) {
        farm_error_set("store: the statement takes %zu parameters, %zu given", want, n);
        return FARM_EINVALID;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(params, i);
        int col = (int)i + 1, rc;

        switch (json_typeof(v)) {
        case JSON_INTEGER:
            rc = sqlite3_bind_int64(st, col, (sqlite3_int64)json_integer_value(v));
            break;
        case JSON_REAL:
            rc = sqlite3_bind_double(st, col, json_real_value(v));
            break;
        case JSON_STRING:
            rc = sqlite3_bind_text(st, col, json_string_value(v), (int)json_string_length(v),
                                   SQLITE_TRANSIENT);
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            rc = sqlite3_bind_int(st, col, json_is_true(v));
            break;
        case JSON_NULL:
            rc = sqlite3_bind_null(st, col);
            break;
        default: { /* an object or array: its JSON text */
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!text) {
                farm_error_set("store: out of memory");
                return FARM_ENOMEM;
            }
            rc = sqlite3_bind_text(st, col, text, -1, free);
            break;
        }
        }
        if (rc != SQLITE_OK)
            return sqlite_err(db, "binding a parameter");
    }
    return 0;
}

/* Column col of the current row as JSON (a new reference), or NULL with the
 * error set. */
static json_t *column_json(sqlite3_stmt *st, int col, int *rc)
{
    json_t *v = NULL;

    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
        v = json_integer((json_int_t)sqlite3_column_int64(st, col));
        break;
    case SQLITE_FLOAT:
        v = json_real(sqlite3_column_double(st, col));
        break;
    case SQLITE_NULL:
        v = json_null();
        break;
    default: { /* text, or a blob that must be text to be shown */
        const char *t = (const char *)sqlite3_column_text(st, col);
        size_t len = (size_t)sqlite3_column_bytes(st, col);
        if (!t && len == 0) {
            v = json_string(""); /* an empty blob has no text pointer */
            break;
        }
        if (!t) {
            *rc = FARM_ENOMEM;
            farm_error_set("store: out of memory");
            return NULL;
        }
        v = json_stringn(t, len);
        if (!v) {
            *rc = FARM_EINVALID;
            farm_error_set("store: column %s is not UTF-8 text", sqlite3_column_name(st, col));
            return NULL;
        }
        break;
    }
    }
    if (!v) {
        *rc = FARM_ENOMEM;
        farm_error_set("store: out of memory");
    }
    return v;
}

/* The current row as an object of column name -> value. */
static int row_json(json_t **out, sqlite3_stmt *st)
{
    json_t *row = json_object();
    int rc = 0;

    *out = NULL;
    if (!row) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    for (int col = 0; col < sqlite3_column_count(st); col++) {
        const char *name = sqlite3_column_name(st, col);
        char again[256];
        json_t *v;

        if (!name) {
            rc = FARM_ENOMEM;
            farm_error_set("store: out of memory");
            break;
        }
        /* SELECT a.id, b.id: keep both values, the second as "id:2" */
        for (int k = 2; json_object_get(row, name); k++) {
            snprintf(again, sizeof(again), "%s:%d", sqlite3_column_name(st, col), k);
            name = again;
        }
        if (!(v = column_json(st, col, &rc)))
            break;
        if (json_object_set_new(row, name, v)) {
            rc = FARM_ENOMEM;
            farm_error_set("store: out of memory");
            break;
        }
    }
    if (rc) {
        json_decref(row);
        return rc;
    }
    *out = row;
    return 0;
}

static int query_json(json_t **rows, store *s, const char *sql, const json_t *params)
{
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    json_t *all = NULL;
    int rc, step;

    *rows = NULL;
    db = sqlite_reader_get(s);
    if ((rc = prepare_one(&st, db, sql)))
        goto out;
    if (!sqlite3_stmt_readonly(st)) {
        farm_error_set("store: a query may only read (use store_exec_json to write)");
        rc = FARM_EINVALID;
        goto out;
    }
    if ((rc = bind_params(st, db, params)))
        goto out;
    if (!(all = json_array())) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row;
        if (json_array_size(all) == STORE_INSPECT_ROWS_MAX) {
            farm_error_set("store: the query returns more than %d rows", STORE_INSPECT_ROWS_MAX);
            rc = FARM_ETOOBIG;
            goto out;
        }
        if ((rc = row_json(&row, st)))
            goto out;
        if (json_array_append_new(all, row)) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
            goto out;
        }
    }
    if (step != SQLITE_DONE) {
        rc = sqlite_err(db, "running a query");
        goto out;
    }
    *rows = all;
    all = NULL;
out:
    sqlite3_finalize(st); /* ends the read transaction before the reader goes back */
    sqlite_reader_put(s, db);
    json_decref(all);
    return rc;
}

static int tx_exec_json(int64_t *changes, store_tx *tx, const char *sql, const json_t *params)
{
    sqlite3_stmt *st = NULL;
    int rc, step;

    if ((rc = prepare_one(&st, sqlite_tx_db(tx), sql)))
        return rc;
    if ((rc = bind_params(st, sqlite_tx_db(tx), params)))
        goto out;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        ; /* rows of a RETURNING clause: not asked for */
    if (step != SQLITE_DONE) {
        rc = sqlite_err(sqlite_tx_db(tx), "running a statement");
        goto out;
    }
    if (changes)
        *changes = sqlite3_changes(sqlite_tx_db(tx));
out:
    sqlite3_finalize(st);
    return rc;
}

const store_inspect_ops sqlite_inspect_ops = {
    .query_json = query_json,
    .tx_exec_json = tx_exec_json,
};
