/*
 * store_copy.c - copying a SQLite store into an empty PostgreSQL one (see
 * store_copy.h).
 *
 * Each table is read in pages of PAGE rows by its primary key (a keyset:
 * "WHERE (k1, k2) > (?, ?) ORDER BY k1, k2 LIMIT PAGE", so a log of
 * millions of events costs no more per page at its end than at its start)
 * and each page is inserted into the target in one write, ids and all.
 * Tables go in the order their foreign keys need. Binary columns (stream
 * records) travel as hex: hex() on SQLite, decode(.., 'hex') on
 * PostgreSQL. Last, each id sequence of the target is set past the ids
 * copied, so new rows do not collide with old ones. The node table is not
 * copied: its rows are heartbeats of processes that use the source.
 */
#include "store_backend.h"
#include "store_copy.h"
#include "store_inspect.h"

#include "base/error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 500

typedef struct copy_table {
    const char *name;
    const char *keys[5]; /* the primary key's columns, NULL-terminated */
    const char *serial;  /* the id column with a sequence on PostgreSQL, or NULL */
    const char *blob;    /* a binary column, copied as hex, or NULL */
    const char *cols;    /* the other columns when there is one (NULL: all) */
} copy_table;

/* Parents before children. */
static const copy_table tables[] = {
    {"session", {"id"}, "id", NULL, NULL},
    {"job", {"id"}, "id", NULL, NULL},
    {"delivery", {"id"}, "id", NULL, NULL},
    {"event", {"session_id", "seq"}, NULL, NULL, NULL},
    {"outbox", {"id"}, "id", NULL, NULL},
    {"setting", {"key"}, NULL, NULL, NULL},
    {"stream", {"id"}, "id", NULL, NULL},
    {"stream_data", {"stream_id", "pos"}, NULL, "data", "stream_id, pos, end_pos"},
    {"stream_producer", {"stream_id", "producer"}, NULL, NULL, NULL},
    {"local_item", {"number"}, "number", NULL, NULL},
    {"local_label", {"id"}, "id", NULL, NULL},
    {"local_comment", {"id"}, "id", NULL, NULL},
    {"local_reaction", {"number", "comment_id", "reaction", "user"}, NULL, NULL, NULL},
    {"model_spend", {"day", "repo"}, NULL, NULL, NULL},
    {"model_stat", {"name", "labels"}, NULL, NULL, NULL},
};

#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static int nomem(void)
{
    farm_error_set("store copy: out of memory");
    return FARM_ENOMEM;
}

/* SQL text built in a fixed buffer: only table and column names go in
 * (the values are parameters), so a few KiB always do; len past cap means
 * it did not fit. */
#define SQL_MAX 8192

typedef struct sql_text {
    char s[SQL_MAX];
    size_t len;
} sql_text;

static void sqlf(sql_text *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sqlf(sql_text *q, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (q->len >= SQL_MAX)
        return;
    va_start(ap, fmt);
    n = vsnprintf(q->s + q->len, SQL_MAX - q->len, fmt, ap);
    va_end(ap);
    q->len = n < 0 ? SQL_MAX : q->len + (size_t)n;
}

static int sql_check(const sql_text *q, const copy_table *t)
{
    if (q->len < SQL_MAX)
        return 0;
    farm_error_set("store copy: a statement for %s is too long", t->name);
    return FARM_ETOOBIG;
}

/* "\"k1\", \"k2\"" */
static void keys_list(sql_text *q, const copy_table *t)
{
    for (int i = 0; t->keys[i]; i++)
        sqlf(q, "%s\"%s\"", i ? ", " : "", t->keys[i]);
}

/* The source's query for the page after the key in last (NULL: the first). */
static void page_sql(sql_text *q, const copy_table *t, const json_t *last)
{
    if (t->blob)
        sqlf(q, "SELECT %s, hex(\"%s\") AS farm_copy_hex", t->cols, t->blob);
    else
        sqlf(q, "SELECT *");
    sqlf(q, " FROM \"%s\"", t->name);
    if (last) {
        sqlf(q, " WHERE (");
        keys_list(q, t);
        sqlf(q, ") > (");
        for (size_t i = 0; i < json_array_size(last); i++)
            sqlf(q, i ? ", ?" : "?");
        sqlf(q, ")");
    }
    sqlf(q, " ORDER BY ");
    keys_list(q, t);
    sqlf(q, " LIMIT %d", PAGE);
}

typedef struct page_write {
    const copy_table *t;
    const json_t *rows;
} page_write;

/* INSERT one row: the columns as the source named them, the blob column's
 * value from its hex twin. */
static int insert_row(store_tx *tx, const copy_table *t, json_t *row)
{
    sql_text *q = calloc(1, sizeof(*q));
    json_t *params = json_array();
    const char *col;
    json_t *v;
    size_t n = 0;
    int rc = 0;

    if (!q || !params) {
        free(q);
        json_decref(params);
        return nomem();
    }
    sqlf(q, "INSERT INTO \"%s\" (", t->name);
    json_object_foreach(row, col, v)
    {
        const char *name = strcmp(col, "farm_copy_hex") ? col : t->blob;
        sqlf(q, "%s\"%s\"", n++ ? ", " : "", name);
    }
    sqlf(q, ") VALUES (");
    n = 0;
    json_object_foreach(row, col, v)
    {
        const char *param = strcmp(col, "farm_copy_hex") ? "?" : "decode(?, 'hex')";
        sqlf(q, "%s%s", n++ ? ", " : "", param);
        if (json_array_append(params, v)) {
            rc = nomem();
            break;
        }
    }
    sqlf(q, ")");
    if (!rc)
        rc = sql_check(q, t);
    if (!rc)
        rc = store_tx_exec_json(NULL, tx, q->s, params);
    free(q);
    json_decref(params);
    return rc;
}

static int page_fn(store_tx *tx, void *arg)
{
    page_write *p = arg;
    size_t i;
    json_t *row;
    int rc = 0;

    json_array_foreach(p->rows, i, row)
    {
        if ((rc = insert_row(tx, p->t, row)))
            break;
    }
    return rc;
}

static int copy_one(int64_t *rows, store *from, store *to, const copy_table *t,
                    store_copy_progress_fn progress, void *arg)
{
    json_t *last = NULL, *page = NULL;
    int rc = 0;

    for (;;) {
        sql_text q = {.len = 0};
        page_sql(&q, t, last);
        if ((rc = sql_check(&q, t)))
            break;
        if ((rc = store_query_json(&page, from, q.s, last))) {
            farm_error_set("store copy: reading %s: %s", t->name, farm_error_last());
            break;
        }
        if (json_array_size(page) == 0)
            break;
        page_write w = {t, page};
        if ((rc = store_write(to, page_fn, &w))) {
            farm_error_set("store copy: writing %s: %s", t->name, farm_error_last());
            break;
        }
        *rows += (int64_t)json_array_size(page);
        if (progress)
            progress(arg, t->name, *rows);
        /* the next page starts after this one's last key */
        json_t *end = json_array_get(page, json_array_size(page) - 1);
        json_decref(last);
        if (!(last = json_array())) {
            rc = nomem();
            break;
        }
        for (int k = 0; t->keys[k]; k++)
            json_array_append(last, json_object_get(end, t->keys[k]));
        int full = json_array_size(page) == PAGE;
        json_decref(page);
        page = NULL;
        if (!full)
            break;
    }
    json_decref(page);
    json_decref(last);
    return rc;
}

/* Move the target's sequence for t past the ids copied. */
static int sequence_fix(store *to, const copy_table *t)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT setval(pg_get_serial_sequence('%s', '%s'), coalesce(max(\"%s\"), 0) + 1,"
             " false) FROM \"%s\"",
             t->name, t->serial, t->serial, t->name);
    return store_exec_json(NULL, to, sql, NULL);
}

static int target_empty(store *to)
{
    json_t *rows = NULL;
    int rc = store_query_json(&rows, to,
                              "SELECT (SELECT count(*) FROM session) + (SELECT count(*) FROM"
                              " delivery) + (SELECT count(*) FROM job) + (SELECT count(*) FROM"
                              " outbox) + (SELECT count(*) FROM setting) + (SELECT count(*) FROM"
                              " stream) + (SELECT count(*) FROM local_item) AS n",
                              NULL);
    if (rc)
        return rc;
    json_int_t n = json_integer_value(json_object_get(json_array_get(rows, 0), "n"));
    json_decref(rows);
    if (n > 0) {
        farm_error_set("store copy: the target store is not empty (%lld rows in sessions,"
                       " deliveries, jobs, outbox, settings, streams and local issues); copy only"
                       " into a new database",
                       (long long)n);
        return FARM_EEXISTS;
    }
    return 0;
}

int store_copy(int64_t *rows, store *from, store *to, store_copy_progress_fn progress, void *arg)
{
    int64_t total = 0;
    int rc, vfrom = 0, vto = 0;

    if (rows)
        *rows = 0;
    if (strcmp(from->be->name, "sqlite") != 0 || strcmp(to->be->name, "postgres") != 0) {
        farm_error_set("store copy: copies from a sqlite: store to a postgres:// one only");
        return FARM_EINVALID;
    }
    if ((rc = store_schema_version(&vfrom, from)) || (rc = store_schema_version(&vto, to)))
        return rc;
    if (vfrom != vto) {
        farm_error_set("store copy: the stores are at schema %d and %d; open both with this farm"
                       " first",
                       vfrom, vto);
        return FARM_EINVALID;
    }
    if ((rc = target_empty(to)))
        return rc;
    for (size_t i = 0; i < NTABLES; i++) {
        int64_t n = 0;
        if ((rc = copy_one(&n, from, to, &tables[i], progress, arg)))
            return rc;
        total += n;
        if (tables[i].serial && (rc = sequence_fix(to, &tables[i])))
            return rc;
    }
    if (rows)
        *rows = total;
    return 0;
}
