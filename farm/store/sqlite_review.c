/*
 * sqlite_review.c - the review loop's SQL (see store_review.h): a session's
 * waiting and running work jobs, and pulling a waiting job's due time in.
 */
#include "sqlite_internal.h"
#include "store_review.h"

#include "base/clock.h"
#include "base/error.h"

static int tx_review_jobs(int64_t *queued_id, int64_t *queued_due_ms, int *running, store_tx *tx,
                          int64_t session_id)
{
    sqlite3_stmt *st = NULL;
    int rc, step;

    *queued_id = 0;
    *queued_due_ms = 0;
    *running = 0;
    rc = sqlite_tx_stmt(&st, tx,
                        "SELECT id, state, not_before_ms FROM job WHERE session_id = ?"
                        " AND kind IN ('run', 'revise', 'answer') AND state IN ('queued', 'leased')"
                        " ORDER BY id");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, session_id);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 1);
        if (state && state[0] == 'l') {
            *running = 1;
        } else if (!*queued_id) {
            *queued_id = sqlite3_column_int64(st, 0);
            *queued_due_ms = sqlite3_column_int64(st, 2);
        }
    }
    if (step != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "reading a session's jobs");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int tx_review_job_due(store_tx *tx, int64_t id, int64_t due_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "UPDATE job SET not_before_ms = ?2, updated_ms = ?3"
                            " WHERE id = ?1 AND state = 'queued' AND not_before_ms > ?2");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, due_ms);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "making a job due");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int tx_ci_job_defer(int64_t *out_id, store_tx *tx, int64_t session_id, int64_t due_ms)
{
    sqlite3_stmt *st = NULL;
    int rc, step;

    *out_id = 0;
    rc = sqlite_tx_stmt(&st, tx,
                        "UPDATE job SET not_before_ms = ?2, updated_ms = ?3"
                        " WHERE id = (SELECT id FROM job WHERE session_id = ?1 AND kind = 'ci'"
                        " AND state = 'queued' ORDER BY id LIMIT 1) RETURNING id");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, due_ms);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        *out_id = sqlite3_column_int64(st, 0);
    if (step != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "deferring a CI job");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

const store_review_ops sqlite_review_ops = {
    .tx_jobs = tx_review_jobs,
    .tx_job_due = tx_review_job_due,
    .tx_ci_job_defer = tx_ci_job_defer,
};
