/*
 * sql_delivery.c - the delivery table: every webhook delivery the farm
 * received, deduplicated by (tracker, delivery id), with what came of it.
 *
 * Deduplication is the UNIQUE constraint's job: the insert either creates
 * the row or (ON CONFLICT DO NOTHING) returns none, so two deliveries of
 * one id racing each other cannot both be accepted (no SELECT-then-INSERT
 * window). Written once for both backends (store_sql.h).
 */
#include "store_sql.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELIVERY_COLS                                                                              \
    "id, tracker, delivery_id, event, action, repo, number, received_ms, outcome, reason, "        \
    "session_id, job_id"

static int tx_delivery_insert(int64_t *out_id, store_tx *tx, const store_delivery *d)
{
    sql_stmt *st = NULL;
    int rc, step;

    *out_id = 0;
    if (!d->tracker || !*d->tracker || !d->delivery_id || !*d->delivery_id) {
        farm_error_set("store: a delivery needs a tracker and a delivery id");
        return FARM_EINVALID;
    }
    rc = sql_tx_stmt(&st, tx,
                     "INSERT INTO delivery (tracker, delivery_id, event, action, repo, number,"
                     " received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                     " ON CONFLICT (tracker, delivery_id) DO NOTHING RETURNING id");
    if (rc)
        return rc;
    sql_bind_text(st, 1, d->tracker);
    sql_bind_text(st, 2, d->delivery_id);
    sql_bind_text(st, 3, d->event);
    sql_bind_text(st, 4, d->action);
    sql_bind_text(st, 5, d->repo);
    sql_bind_int64(st, 6, d->number);
    sql_bind_int64(st, 7, d->received_ms ? d->received_ms : clock_wall_ms());
    step = sql_step(st);
    if (step == SQL_ROW) {
        *out_id = sql_col_int64(st, 0);
    } else if (step == SQL_DONE) {
        farm_error_set("delivery %s from %s was recorded before", d->delivery_id, d->tracker);
        rc = FARM_EEXISTS;
    } else {
        rc = sql_err(st, "recording a delivery");
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_delivery_outcome_set(store_tx *tx, int64_t id, const char *outcome,
                                   const char *reason, int64_t session_id, int64_t job_id)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "UPDATE delivery SET outcome = $1, reason = $2, session_id = $3,"
                         " job_id = $4 WHERE id = $5");
    if (rc)
        return rc;
    sql_bind_text(st, 1, outcome);
    sql_bind_text(st, 2, reason);
    if (session_id > 0)
        sql_bind_int64(st, 3, session_id);
    else
        sql_bind_null(st, 3);
    if (job_id > 0)
        sql_bind_int64(st, 4, job_id);
    else
        sql_bind_null(st, 4);
    sql_bind_int64(st, 5, id);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "recording a delivery's outcome");
    else if (sql_changes(st) != 1) {
        farm_error_set("store: no delivery with id %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

static void delivery_clear(store_delivery *d)
{
    free(d->tracker);
    free(d->delivery_id);
    free(d->event);
    free(d->action);
    free(d->repo);
    free(d->outcome);
    free(d->reason);
}

static int delivery_read(store_delivery *d, sql_stmt *st)
{
    int oom = 0;
    memset(d, 0, sizeof(*d));
    d->id = sql_col_int64(st, 0);
    d->tracker = sql_col_dup(st, 1, &oom);
    d->delivery_id = sql_col_dup(st, 2, &oom);
    d->event = sql_col_dup(st, 3, &oom);
    d->action = sql_col_dup(st, 4, &oom);
    d->repo = sql_col_dup(st, 5, &oom);
    d->number = sql_col_int64(st, 6);
    d->received_ms = sql_col_int64(st, 7);
    d->outcome = sql_col_dup(st, 8, &oom);
    d->reason = sql_col_dup(st, 9, &oom);
    d->session_id = sql_col_int64(st, 10);
    d->job_id = sql_col_int64(st, 11);
    if (oom) {
        delivery_clear(d);
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

static int delivery_list(store_delivery **out, size_t *n, store *s, const store_delivery_filter *f)
{
    static const store_delivery_filter none = STORE_DELIVERY_FILTER_INIT;
    sql_conn *db = NULL;
    sql_stmt *st = NULL;
    store_delivery *v = NULL;
    size_t count = 0;
    int rc, step, limit;

    *out = NULL;
    *n = 0;
    if (!f)
        f = &none;
    limit = sql_limit(f->limit);
    /* Each filter is "$6 IS NULL OR column = $7", so one statement serves
     * every combination and nothing is ever spliced into the SQL. */
    db = sql_reader_get(s);
    rc = sql_prepare(&st, s, db,
                     "SELECT " DELIVERY_COLS " FROM delivery"
                     " WHERE ($1 IS NULL OR tracker = $1)"
                     " AND ($2 IS NULL OR lower(repo) = lower($2))"
                     " AND ($3 IS NULL OR event = $3)"
                     " AND ($4 IS NULL OR outcome = $4)"
                     " AND received_ms >= $5 AND ($6 <= 0 OR id < $6)"
                     " ORDER BY id DESC LIMIT $7");
    if (rc)
        goto out;
    sql_bind_text(st, 1, f->tracker);
    sql_bind_text(st, 2, f->repo);
    sql_bind_text(st, 3, f->event);
    sql_bind_text(st, 4, f->outcome);
    sql_bind_int64(st, 5, f->since_ms);
    sql_bind_int64(st, 6, f->before_id);
    sql_bind_int(st, 7, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    while ((step = sql_step(st)) == SQL_ROW && count < (size_t)limit) {
        if ((rc = delivery_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "listing deliveries");
        goto out;
    }
    if (count == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n = count;
    v = NULL;
    count = 0;
out:
    store_delivery_list_free(v, count);
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int delivery_count(store_count **out, size_t *n, store *s)
{
    return sql_count_query(out, n, s,
                           "SELECT tracker, event, outcome, count(*) FROM delivery"
                           " GROUP BY tracker, event, outcome ORDER BY 1, 2, 3",
                           3);
}

const store_delivery_ops sql_delivery_ops = {
    .tx_insert = tx_delivery_insert,
    .tx_outcome_set = tx_delivery_outcome_set,
    .list = delivery_list,
    .count = delivery_count,
};
