/*
 * pg_review.c - the review loop's SQL (see store_review.h): a session's
 * waiting and running work jobs, and pulling a waiting job's due time in.
 */
#include "pg_internal.h"
#include "store_review.h"

#include "base/clock.h"
#include "base/error.h"

static int tx_review_jobs(int64_t *queued_id, int64_t *queued_due_ms, int *running, store_tx *tx,
                          int64_t session_id)
{
    pg_stmt *st = NULL;
    int rc, step;

    *queued_id = 0;
    *queued_due_ms = 0;
    *running = 0;
    rc = pg_tx_stmt(&st, tx,
                    "SELECT id, state, not_before_ms FROM job WHERE session_id = $1"
                    " AND kind IN ('run', 'revise', 'answer') AND state IN ('queued', 'leased')"
                    " ORDER BY id");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, session_id);
    while ((step = pg_step(st)) == PG_ROW) {
        const char *state = pg_col_text(st, 1);
        if (state && state[0] == 'l') {
            *running = 1;
        } else if (!*queued_id) {
            *queued_id = pg_col_int64(st, 0);
            *queued_due_ms = pg_col_int64(st, 2);
        }
    }
    if (step != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "reading a session's jobs");
    pg_tx_stmt_done(tx, st);
    return rc;
}

static int tx_review_job_due(store_tx *tx, int64_t id, int64_t due_ms)
{
    pg_stmt *st = NULL;
    int rc = pg_tx_stmt(&st, tx,
                        "UPDATE job SET not_before_ms = $2, updated_ms = $3"
                        " WHERE id = $1 AND state = 'queued' AND not_before_ms > $2");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, id);
    pg_bind_int64(st, 2, due_ms);
    pg_bind_int64(st, 3, clock_wall_ms());
    if (pg_step(st) != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "making a job due");
    pg_tx_stmt_done(tx, st);
    return rc;
}

const store_review_ops pg_review_ops = {
    .tx_jobs = tx_review_jobs,
    .tx_job_due = tx_review_job_due,
};
