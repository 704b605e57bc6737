/*
 * sql_review.c - the review loop's SQL (see store_review.h): a session's
 * waiting and running work jobs, and pulling a waiting job's due time in.
 * Written once for both backends (store_sql.h).
 */
#include "store_sql.h"
#include "store_review.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tx_review_jobs(int64_t *queued_id, int64_t *queued_due_ms, int *running, store_tx *tx,
                          int64_t session_id)
{
    sql_stmt *st = NULL;
    int rc, step;

    *queued_id = 0;
    *queued_due_ms = 0;
    *running = 0;
    rc = sql_tx_stmt(&st, tx,
                     "SELECT id, state, not_before_ms, kind FROM job WHERE session_id = $1"
                     " AND kind IN ('run', 'revise', 'answer', 'update', 'plan')"
                     " AND state IN ('queued', 'leased') ORDER BY id");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, session_id);
    while ((step = sql_step(st)) == SQL_ROW) {
        const char *state = sql_col_text(st, 1);
        const char *kind = sql_col_text(st, 3);
        if (state && state[0] == 'l') {
            *running = 1;
        } else if (!*queued_id && kind && strcmp(kind, "update") != 0) {
            /* a queued update (base merged in) is not a revision to attach to */
            *queued_id = sql_col_int64(st, 0);
            *queued_due_ms = sql_col_int64(st, 2);
        }
    }
    if (step != SQL_DONE)
        rc = sql_err(st, "reading a session's jobs");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_review_job_due(store_tx *tx, int64_t id, int64_t due_ms)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "UPDATE job SET not_before_ms = $2, updated_ms = $3"
                         " WHERE id = $1 AND state = 'queued' AND not_before_ms > $2");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, id);
    sql_bind_int64(st, 2, due_ms);
    sql_bind_int64(st, 3, clock_wall_ms());
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "making a job due");
    sql_tx_stmt_done(tx, st);
    if (!rc)
        rc = sql_tx_notify(tx, STORE_NOTIFY_JOBS, "due");
    return rc;
}

static int tx_ci_job_defer(int64_t *out_id, store_tx *tx, int64_t session_id, int64_t due_ms)
{
    sql_stmt *st = NULL;
    int rc, step;

    *out_id = 0;
    rc = sql_tx_stmt(&st, tx,
                     "UPDATE job SET not_before_ms = $2, updated_ms = $3"
                     " WHERE id = (SELECT id FROM job WHERE session_id = $1 AND kind = 'ci'"
                     " AND state = 'queued' ORDER BY id LIMIT 1) RETURNING id");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, session_id);
    sql_bind_int64(st, 2, due_ms);
    sql_bind_int64(st, 3, clock_wall_ms());
    while ((step = sql_step(st)) == SQL_ROW)
        *out_id = sql_col_int64(st, 0);
    if (step != SQL_DONE)
        rc = sql_err(st, "deferring a CI job");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_review_open_prs(int64_t **ids, size_t *n, store_tx *tx, const char *tracker_name,
                              const char *repo)
{
    sql_stmt *st = NULL;
    int64_t *v = NULL;
    size_t k = 0;
    int rc, step;

    *ids = NULL;
    *n = 0;
    rc = sql_tx_stmt(&st, tx,
                     "SELECT id FROM session WHERE tracker = $1 AND lower(repo) = lower($2)"
                     " AND pr_number > 0 AND state NOT IN ('done', 'failed', 'cancelled')"
                     " ORDER BY id LIMIT $3");
    if (rc)
        return rc;
    sql_bind_text(st, 1, tracker_name);
    sql_bind_text(st, 2, repo);
    sql_bind_int64(st, 3, STORE_LIST_MAX);
    while ((step = sql_step(st)) == SQL_ROW) {
        int64_t *w = realloc(v, (k + 1) * sizeof(*v));
        if (!w) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
            break;
        }
        v = w;
        v[k++] = sql_col_int64(st, 0);
    }
    if (!rc && step != SQL_DONE)
        rc = sql_err(st, "listing a repository's open pull requests");
    sql_tx_stmt_done(tx, st);
    if (rc) {
        free(v);
        return rc;
    }
    *ids = v;
    *n = k;
    return 0;
}

static int tx_review_job_queued(int64_t *id, store_tx *tx, int64_t session_id, const char *kind)
{
    sql_stmt *st = NULL;
    int rc, step;

    *id = 0;
    rc = sql_tx_stmt(&st, tx,
                     "SELECT id FROM job WHERE session_id = $1 AND kind = $2"
                     " AND state = 'queued' ORDER BY id LIMIT 1");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, session_id);
    sql_bind_text(st, 2, kind);
    if ((step = sql_step(st)) == SQL_ROW)
        *id = sql_col_int64(st, 0);
    else if (step != SQL_DONE)
        rc = sql_err(st, "finding a queued job");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_review_last_job_kind(char *kind, size_t n, store_tx *tx, int64_t session_id)
{
    sql_stmt *st = NULL;
    int rc, step;

    rc = sql_tx_stmt(&st, tx,
                     "SELECT kind FROM job WHERE session_id = $1 AND kind <> 'cancel'"
                     " ORDER BY id DESC LIMIT 1");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, session_id);
    if ((step = sql_step(st)) == SQL_ROW) {
        const char *k = sql_col_text(st, 0);
        snprintf(kind, n, "%s", k ? k : "");
    } else if (step != SQL_DONE) {
        rc = sql_err(st, "finding a session's last job");
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

const store_review_ops sql_review_ops = {
    .tx_jobs = tx_review_jobs,
    .tx_job_due = tx_review_job_due,
    .tx_ci_job_defer = tx_ci_job_defer,
    .tx_open_prs = tx_review_open_prs,
    .tx_job_queued = tx_review_job_queued,
    .tx_last_job_kind = tx_review_last_job_kind,
};
