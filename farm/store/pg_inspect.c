/*
 * pg_inspect.c - one statement of any SQL, with JSON parameters and JSON
 * rows, for tests and diagnostics (see store_inspect.h): the PostgreSQL
 * backend's inspect table.
 *
 * The portable SQL of store_inspect.h writes its placeholders as ?, which
 * become $1, $2 ... here (outside quotes). Parameters go as text of no
 * declared type, so PostgreSQL types each by where it stands, as SQLite's
 * loose typing would. Columns come back by their type: integers (and
 * booleans, as 1 / 0) as integers, floats and fractional numerics as reals,
 * the rest as text. A query runs in a READ ONLY transaction.
 */
#include "pg_internal.h"
#include "store_inspect.h"

#include "base/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700

/* sql with each ? outside quotes numbered; *n the count. Heap string. */
static int placeholders(char **out, size_t *n, const char *sql)
{
    size_t len = strlen(sql), k = 0;
    char *r = malloc(len * 4 + 1), *w = r;
    char quote = 0;

    *out = NULL;
    *n = 0;
    if (!r) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    for (const char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
            *w++ = *p;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
            *w++ = *p;
        } else if (*p == '?') {
            char *end;
            unsigned long num = strtoul(p + 1, &end, 10);
            if (end != p + 1) { /* ?NNN */
                w += sprintf(w, "$%lu", num);
                if (num > k)
                    k = num;
                p = end - 1;
            } else {
                w += sprintf(w, "$%zu", ++k);
            }
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            char *end;
            unsigned long num = strtoul(p + 1, &end, 10);
            w += sprintf(w, "$%lu", num);
            if (num > k)
                k = num;
            p = end - 1;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    *out = r;
    *n = k;
    return 0;
}

/* params as text values, one heap string each (NULL for null). */
static int params_text(char ***out, const json_t *params, size_t want)
{
    size_t n = params ? json_array_size(params) : 0;
    char **v;

    *out = NULL;
    if (params && !json_is_array(params)) {
        farm_error_set("store: the parameters must be a JSON array");
        return FARM_EINVALID;
    }
    if (n != want) {
        farm_error_set("store: the statement takes %zu parameters, %zu given", want, n);
        return FARM_EINVALID;
    }
    if (!(v = calloc(n + 1, sizeof(*v))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(params, i);
        char b[64];
        switch (json_typeof(p)) {
        case JSON_NULL:
            continue;
        case JSON_INTEGER:
            snprintf(b, sizeof(b), "%" JSON_INTEGER_FORMAT, json_integer_value(p));
            v[i] = strdup(b);
            break;
        case JSON_REAL:
            snprintf(b, sizeof(b), "%.17g", json_real_value(p));
            v[i] = strdup(b);
            break;
        case JSON_TRUE:
            v[i] = strdup("1");
            break;
        case JSON_FALSE:
            v[i] = strdup("0");
            break;
        case JSON_STRING:
            v[i] = strdup(json_string_value(p));
            break;
        default:
            v[i] = json_dumps(p, JSON_COMPACT);
        }
        if (!v[i]) {
            for (size_t j = 0; j < n; j++)
                free(v[j]);
            free(v);
            goto nomem;
        }
    }
    *out = v;
    return 0;
nomem:
    farm_error_set("store: out of memory");
    return FARM_ENOMEM;
}

/* Run sql with params on db: the result, or NULL with the error set. */
static PGresult *run(int *rc, pg_conn *db, const char *sql, const json_t *params)
{
    char *q = NULL, **vals = NULL;
    size_t n = 0;
    PGresult *res = NULL;

    if ((*rc = placeholders(&q, &n, sql)))
        return NULL;
    if (n > 1000) {
        farm_error_set("store: too many parameters");
        *rc = FARM_EINVALID;
        goto out;
    }
    if ((*rc = params_text(&vals, params, n)))
        goto out;
    res = PQexecParams(db->c, q, (int)n, NULL, (const char *const *)vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(db->sqlstate, sizeof(db->sqlstate), "%s",
                 PQresultErrorField(res, PG_DIAG_SQLSTATE)
                     ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                     : "");
        snprintf(db->msg, sizeof(db->msg), "%s", PQresultErrorMessage(res));
        db->msg[strcspn(db->msg, "\n")] = '\0';
        PQclear(res);
        res = NULL;
        /* a statement that cannot run as written is the caller's */
        *rc = !strncmp(db->sqlstate, "42", 2) ? FARM_EINVALID : FARM_EIO;
        farm_error_set("store: running a statement: %s", db->msg);
    }
out:
    for (size_t i = 0; vals && i < n; i++)
        free(vals[i]);
    free(vals);
    free(q);
    return res;
}

static json_t *column_json(const PGresult *res, int row, int col)
{
    const char *t;
    if (PQgetisnull(res, row, col))
        return json_null();
    t = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return json_integer(strtoll(t, NULL, 10));
    case OID_BOOL:
        return json_integer(t[0] == 't');
    case OID_FLOAT4:
    case OID_FLOAT8:
        return json_real(strtod(t, NULL));
    case OID_NUMERIC:
        if (!strpbrk(t, ".eEN"))
            return json_integer(strtoll(t, NULL, 10));
        return json_real(strtod(t, NULL));
    default:
        return json_string(t);
    }
}

static int rows_json(json_t **out, const PGresult *res)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);
    json_t *all = json_array();

    *out = NULL;
    if (nrows > STORE_INSPECT_ROWS_MAX) {
        json_decref(all);
        farm_error_set("store: the query returns more than %d rows", STORE_INSPECT_ROWS_MAX);
        return FARM_ETOOBIG;
    }
    for (int r = 0; all && r < nrows; r++) {
        json_t *row = json_object();
        for (int c = 0; row && c < ncols; c++) {
            const char *name = PQfname(res, c);
            char again[256];
            for (int k = 2; json_object_get(row, name); k++) {
                snprintf(again, sizeof(again), "%s:%d", PQfname(res, c), k);
                name = again;
            }
            json_t *v = column_json(res, r, c);
            if (!v || json_object_set_new(row, name, v)) {
                json_decref(row);
                row = NULL;
            }
        }
        if (!row || json_array_append_new(all, row)) {
            json_decref(all);
            all = NULL;
        }
    }
    if (!all) {
        farm_error_set("store: out of memory (or a column that is not UTF-8)");
        return FARM_ENOMEM;
    }
    *out = all;
    return 0;
}

static int query_json(json_t **rows, store *s, const char *sql, const json_t *params)
{
    pg_conn *db = pg_reader_get(s);
    PGresult *res = NULL;
    int rc;

    *rows = NULL;
    if (!db)
        return FARM_EIO;
    if ((rc = pg_exec(db, "BEGIN READ ONLY")))
        goto out;
    res = run(&rc, db, sql, params);
    if (rc == FARM_EIO && !strcmp(db->sqlstate, "25006")) { /* it tried to write */
        farm_error_set("store: a query may only read (use store_exec_json to write)");
        rc = FARM_EINVALID;
    } else if (!rc && PQresultStatus(res) != PGRES_TUPLES_OK) {
        farm_error_set("store: a query may only read (use store_exec_json to write)");
        rc = FARM_EINVALID;
    }
    if (!rc)
        rc = rows_json(rows, res);
    pg_exec(db, "ROLLBACK");
out:
    PQclear(res);
    pg_reader_put(s, db);
    return rc;
}

static int tx_exec_json(int64_t *changes, store_tx *tx, const char *sql, const json_t *params)
{
    int rc;
    PGresult *res = run(&rc, pg_tx_db(tx), sql, params);

    if (!rc && changes)
        *changes = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

const store_inspect_ops pg_inspect_ops = {
    .query_json = query_json,
    .tx_exec_json = tx_exec_json,
};
