/*
 * store_job.c - the durable job queue: what the scheduler has to do.
 *
 * A job is written in the same transaction as whatever caused it (a
 * delivery, a command), so work is never lost between "recorded" and
 * "queued". Leasing (who is working on a job, until when) belongs to the
 * scheduler's issue and lands here with it.
 */
#include "store_internal.h"

#include "../base/clock.h"
#include "../base/error.h"

#include <stdlib.h>
#include <string.h>

int store_tx_job_insert(int64_t *out_id, store_tx *tx, const char *kind, int64_t session_id,
                        int64_t not_before_ms)
{
    sqlite3_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc;

    *out_id = 0;
    if (!kind || !*kind) {
        farm_error_set("store: a job needs a kind");
        return FARM_EINVALID;
    }
    rc = store_tx_stmt(&st, tx,
                       "INSERT INTO job (kind, session_id, state, not_before_ms, created_ms,"
                       " updated_ms) VALUES (?, ?, 'queued', ?, ?, ?)");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    if (session_id > 0)
        sqlite3_bind_int64(st, 2, session_id);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, not_before_ms > 0 ? not_before_ms : now);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now);
    if (sqlite3_step(st) == SQLITE_DONE)
        *out_id = sqlite3_last_insert_rowid(tx->db);
    else
        rc = store_sqlerr(tx->db, "queueing a job");
    store_tx_stmt_done(tx, st);
    return rc;
}

void store_job_free(store_job *j)
{
    if (!j)
        return;
    free(j->kind);
    free(j->state);
    free(j->lease_owner);
    free(j);
}

int store_job_get(store_job **out, store *s, int64_t id)
{
    sqlite3 *db = store_reader_get(s);
    sqlite3_stmt *st = NULL;
    store_job *j = NULL;
    int rc, step, oom = 0;

    *out = NULL;
    rc = store_prepare(&st, db,
                       "SELECT id, kind, session_id, state, not_before_ms, attempts, lease_owner,"
                       " lease_expires_ms, created_ms FROM job WHERE id = ?");
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        farm_error_set("store: no job %lld", (long long)id);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    if (step != SQLITE_ROW) {
        rc = store_sqlerr(db, "reading a job");
        goto out;
    }
    if (!(j = calloc(1, sizeof(*j))))
        goto nomem;
    j->id = sqlite3_column_int64(st, 0);
    j->kind = store_col_text(st, 1, &oom);
    j->session_id = sqlite3_column_int64(st, 2);
    j->state = store_col_text(st, 3, &oom);
    j->not_before_ms = sqlite3_column_int64(st, 4);
    j->attempts = sqlite3_column_int64(st, 5);
    j->lease_owner = store_col_text(st, 6, &oom);
    j->lease_expires_ms = sqlite3_column_int64(st, 7);
    j->created_ms = sqlite3_column_int64(st, 8);
    if (oom)
        goto nomem;
    *out = j;
    j = NULL;
    goto out;
nomem:
    farm_error_set("store: out of memory");
    rc = FARM_ENOMEM;
out:
    store_job_free(j);
    sqlite3_finalize(st);
    store_reader_put(s, db);
    return rc;
}

int store_job_count(int64_t *queued, int64_t *leased, store *s)
{
    store_count *v = NULL;
    size_t n = 0;
    int rc = store_count_query(&v, &n, s,
                               "SELECT state, count(*) FROM job WHERE state IN ('queued', 'leased')"
                               " GROUP BY state",
                               1);
    if (rc)
        return rc;
    *queued = 0;
    *leased = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v[i].labels[0], "queued"))
            *queued = v[i].n;
        else if (!strcmp(v[i].labels[0], "leased"))
            *leased = v[i].n;
    }
    store_count_list_free(v, n);
    return 0;
}
