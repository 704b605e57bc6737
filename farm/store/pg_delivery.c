/*
 * pg_delivery.c - the delivery table: every webhook delivery the farm
 * received, deduplicated by (tracker, delivery id), with what came of it.
 *
 * Deduplication is the UNIQUE constraint's job: the insert either creates
 * the row or, with ON CONFLICT DO NOTHING, returns none, so two deliveries of one id
 * racing each other cannot both be accepted (no SELECT-then-INSERT window).
 */
#include "pg_internal.h"

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
    pg_stmt *st = NULL;
    int rc, step;

    *out_id = 0;
    if (!d->tracker || !*d->tracker || !d->delivery_id || !*d->delivery_id) {
        farm_error_set("store: a delivery needs a tracker and a delivery id");
        return FARM_EINVALID;
    }
    rc = pg_tx_stmt(&st, tx,
                    "INSERT INTO delivery (tracker, delivery_id, event, action, repo, number,"
                    " received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (tracker, delivery_id) DO NOTHING RETURNING id");
    if (rc)
        return rc;
    pg_bind_text(st, 1, d->tracker);
    pg_bind_text(st, 2, d->delivery_id);
    pg_bind_text(st, 3, d->event);
    pg_bind_text(st, 4, d->action);
    pg_bind_text(st, 5, d->repo);
    pg_bind_int64(st, 6, d->number);
    pg_bind_int64(st, 7, d->received_ms ? d->received_ms : clock_wall_ms());
    step = pg_step(st);
    if (step == PG_ROW) {
        *out_id = pg_col_int64(st, 0);
    } else if (step == PG_DONE) {
        farm_error_set("delivery %s from %s was recorded before", d->delivery_id, d->tracker);
        rc = FARM_EEXISTS;
    } else {
        rc = pg_err(pg_tx_db(tx), "recording a delivery");
    }
    pg_tx_stmt_done(tx, st);
    return rc;
}

static int tx_delivery_outcome_set(store_tx *tx, int64_t id, const char *outcome,
                                   const char *reason, int64_t session_id, int64_t job_id)
{
    pg_stmt *st = NULL;
    int rc = pg_tx_stmt(&st, tx,
                        "UPDATE delivery SET outcome = $1, reason = $2, session_id = $3,"
                        " job_id = $4 WHERE id = $5");
    if (rc)
        return rc;
    pg_bind_text(st, 1, outcome);
    pg_bind_text(st, 2, reason);
    if (session_id > 0)
        pg_bind_int64(st, 3, session_id);
    else
        pg_bind_null(st, 3);
    if (job_id > 0)
        pg_bind_int64(st, 4, job_id);
    else
        pg_bind_null(st, 4);
    pg_bind_int64(st, 5, id);
    if (pg_step(st) != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "recording a delivery's outcome");
    else if (pg_changes(pg_tx_db(tx)) != 1) {
        farm_error_set("store: no delivery with id %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    }
    pg_tx_stmt_done(tx, st);
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

static int delivery_read(store_delivery *d, pg_stmt *st)
{
    int oom = 0;
    memset(d, 0, sizeof(*d));
    d->id = pg_col_int64(st, 0);
    d->tracker = pg_col_dup(st, 1, &oom);
    d->delivery_id = pg_col_dup(st, 2, &oom);
    d->event = pg_col_dup(st, 3, &oom);
    d->action = pg_col_dup(st, 4, &oom);
    d->repo = pg_col_dup(st, 5, &oom);
    d->number = pg_col_int64(st, 6);
    d->received_ms = pg_col_int64(st, 7);
    d->outcome = pg_col_dup(st, 8, &oom);
    d->reason = pg_col_dup(st, 9, &oom);
    d->session_id = pg_col_int64(st, 10);
    d->job_id = pg_col_int64(st, 11);
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
    pg_conn *db = NULL;
    pg_stmt *st = NULL;
    store_delivery *v = NULL;
    size_t count = 0;
    int rc, step, limit;

    *out = NULL;
    *n = 0;
    if (!f)
        f = &none;
    limit = pg_limit(f->limit);
    /* Each filter is "$6 IS NULL OR column = $7", so one statement serves
     * every combination and nothing is ever spliced into the SQL. */
    db = pg_reader_get(s);
    rc = pg_prepare(&st, db,
                    "SELECT " DELIVERY_COLS " FROM delivery"
                    " WHERE ($1 IS NULL OR tracker = $1)"
                    " AND ($2 IS NULL OR lower(repo) = lower($2))"
                    " AND ($3 IS NULL OR event = $3)"
                    " AND ($4 IS NULL OR outcome = $4)"
                    " AND received_ms >= $5 AND ($6 <= 0 OR id < $6)"
                    " ORDER BY id DESC LIMIT $7");
    if (rc)
        goto out;
    pg_bind_text(st, 1, f->tracker);
    pg_bind_text(st, 2, f->repo);
    pg_bind_text(st, 3, f->event);
    pg_bind_text(st, 4, f->outcome);
    pg_bind_int64(st, 5, f->since_ms);
    pg_bind_int64(st, 6, f->before_id);
    pg_bind_int(st, 7, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    while ((step = pg_step(st)) == PG_ROW && count < (size_t)limit) {
        if ((rc = delivery_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != PG_ROW && step != PG_DONE) {
        rc = pg_err(db, "listing deliveries");
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
    pg_finalize(st);
    pg_reader_put(s, db);
    return rc;
}

int pg_count_query(store_count **out, size_t *n, store *s, const char *sql, int nlabels)
{
    pg_conn *db = pg_reader_get(s);
    pg_stmt *st = NULL;
    store_count *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step;

    *out = NULL;
    *n = 0;
    if ((rc = pg_prepare(&st, db, sql)))
        goto out;
    while ((step = pg_step(st)) == PG_ROW) {
        if (count == STORE_LIST_MAX)
            break;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            store_count *nv = realloc(v, ncap * sizeof(*v));
            if (!nv)
                goto nomem;
            v = nv;
            cap = ncap;
        }
        store_count *c = &v[count];
        memset(c, 0, sizeof(*c));
        count++;
        for (int j = 0; j < nlabels; j++) {
            const char *t = pg_col_text(st, j);
            if (!(c->labels[j] = strdup(t ? t : "")))
                goto nomem;
        }
        c->n = pg_col_int64(st, nlabels);
    }
    if (step != PG_ROW && step != PG_DONE) {
        rc = pg_err(db, "counting");
        goto out;
    }
    *out = v;
    *n = count;
    v = NULL;
    count = 0;
    goto out;
nomem:
    farm_error_set("store: out of memory");
    rc = FARM_ENOMEM;
out:
    store_count_list_free(v, count);
    pg_finalize(st);
    pg_reader_put(s, db);
    return rc;
}

static int delivery_count(store_count **out, size_t *n, store *s)
{
    return pg_count_query(out, n, s,
                          "SELECT tracker, event, outcome, count(*) FROM delivery"
                          " GROUP BY tracker, event, outcome ORDER BY 1, 2, 3",
                          3);
}

const store_delivery_ops pg_delivery_ops = {
    .tx_insert = tx_delivery_insert,
    .tx_outcome_set = tx_delivery_outcome_set,
    .list = delivery_list,
    .count = delivery_count,
};
