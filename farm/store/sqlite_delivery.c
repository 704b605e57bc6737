/*
 * sqlite_delivery.c - the delivery table: every webhook delivery the farm
 * received, deduplicated by (tracker, delivery id), with what came of it.
 *
 * Deduplication is the UNIQUE constraint's job: the insert either creates
 * the row or fails with a constraint error, so two deliveries of one id
 * racing each other cannot both be accepted (no SELECT-then-INSERT window).
 */
#include "sqlite_internal.h"

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
    sqlite3_stmt *st = NULL;
    int rc, step;

    *out_id = 0;
    if (!d->tracker || !*d->tracker || !d->delivery_id || !*d->delivery_id) {
        farm_error_set("store: a delivery needs a tracker and a delivery id");
        return FARM_EINVALID;
    }
    rc = sqlite_tx_stmt(&st, tx,
                        "INSERT INTO delivery (tracker, delivery_id, event, action, repo, number,"
                        " received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, d->tracker, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->delivery_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, d->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, d->repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, d->number);
    sqlite3_bind_int64(st, 7, d->received_ms ? d->received_ms : clock_wall_ms());
    step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        *out_id = sqlite3_last_insert_rowid(sqlite_tx_db(tx));
    } else if (step == SQLITE_CONSTRAINT_UNIQUE || step == SQLITE_CONSTRAINT_PRIMARYKEY) {
        farm_error_set("delivery %s from %s was recorded before", d->delivery_id, d->tracker);
        rc = FARM_EEXISTS;
    } else {
        rc = sqlite_err(sqlite_tx_db(tx), "recording a delivery");
    }
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int tx_delivery_outcome_set(store_tx *tx, int64_t id, const char *outcome,
                                   const char *reason, int64_t session_id, int64_t job_id)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "UPDATE delivery SET outcome = ?, reason = ?, session_id = ?,"
                            " job_id = ? WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    if (session_id > 0)
        sqlite3_bind_int64(st, 3, session_id);
    else
        sqlite3_bind_null(st, 3);
    if (job_id > 0)
        sqlite3_bind_int64(st, 4, job_id);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "recording a delivery's outcome");
    else if (sqlite3_changes(sqlite_tx_db(tx)) != 1) {
        farm_error_set("store: no delivery with id %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    }
    sqlite_tx_stmt_done(tx, st);
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

static int delivery_read(store_delivery *d, sqlite3_stmt *st)
{
    int oom = 0;
    memset(d, 0, sizeof(*d));
    d->id = sqlite3_column_int64(st, 0);
    d->tracker = sqlite_col_text(st, 1, &oom);
    d->delivery_id = sqlite_col_text(st, 2, &oom);
    d->event = sqlite_col_text(st, 3, &oom);
    d->action = sqlite_col_text(st, 4, &oom);
    d->repo = sqlite_col_text(st, 5, &oom);
    d->number = sqlite3_column_int64(st, 6);
    d->received_ms = sqlite3_column_int64(st, 7);
    d->outcome = sqlite_col_text(st, 8, &oom);
    d->reason = sqlite_col_text(st, 9, &oom);
    d->session_id = sqlite3_column_int64(st, 10);
    d->job_id = sqlite3_column_int64(st, 11);
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
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    store_delivery *v = NULL;
    size_t count = 0;
    int rc, step, limit;

    *out = NULL;
    *n = 0;
    if (!f)
        f = &none;
    limit = sqlite_limit(f->limit);
    /* Each filter is "? IS NULL OR column = ?", so one statement serves
     * every combination and nothing is ever spliced into the SQL. */
    db = sqlite_reader_get(s);
    rc = sqlite_prepare(&st, db,
                        "SELECT " DELIVERY_COLS " FROM delivery"
                        " WHERE (?1 IS NULL OR tracker = ?1)"
                        " AND (?2 IS NULL OR repo = ?2 COLLATE NOCASE)"
                        " AND (?3 IS NULL OR event = ?3)"
                        " AND (?4 IS NULL OR outcome = ?4)"
                        " AND received_ms >= ?5 AND (?6 <= 0 OR id < ?6)"
                        " ORDER BY id DESC LIMIT ?7");
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, f->tracker, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, f->repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, f->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, f->outcome, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, f->since_ms);
    sqlite3_bind_int64(st, 6, f->before_id);
    sqlite3_bind_int(st, 7, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW && count < (size_t)limit) {
        if ((rc = delivery_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing deliveries");
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
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

int sqlite_count_query(store_count **out, size_t *n, store *s, const char *sql, int nlabels)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    store_count *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step;

    *out = NULL;
    *n = 0;
    if ((rc = sqlite_prepare(&st, db, sql)))
        goto out;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
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
            const unsigned char *t = sqlite3_column_text(st, j);
            if (!(c->labels[j] = strdup(t ? (const char *)t : "")))
                goto nomem;
        }
        c->n = sqlite3_column_int64(st, nlabels);
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "counting");
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
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int delivery_count(store_count **out, size_t *n, store *s)
{
    return sqlite_count_query(out, n, s,
                              "SELECT tracker, event, outcome, count(*) FROM delivery"
                              " GROUP BY tracker, event, outcome ORDER BY 1, 2, 3",
                              3);
}

const store_delivery_ops sqlite_delivery_ops = {
    .tx_insert = tx_delivery_insert,
    .tx_outcome_set = tx_delivery_outcome_set,
    .list = delivery_list,
    .count = delivery_count,
};
