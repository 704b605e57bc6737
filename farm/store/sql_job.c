/*
 * sql_job.c - the durable job queue: what the scheduler has to do.
 *
 * A job is written in the same transaction as whatever caused it (a
 * delivery, a command), so work is never lost between "recorded" and
 * "queued". Leasing (who is working on a job, until when) is described in
 * store_job.h: one conditional UPDATE takes a job, so the capacity limits and
 * "one live lease per session" hold whichever process asks.
 */
#include "store_sql.h"
#include "store_job.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

static int tx_job_insert(int64_t *out_id, store_tx *tx, const char *kind, int64_t session_id,
                         int64_t not_before_ms)
{
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc;

    *out_id = 0;
    if (!kind || !*kind) {
        farm_error_set("store: a job needs a kind");
        return FARM_EINVALID;
    }
    rc = sql_tx_stmt(&st, tx,
                     "INSERT INTO job (kind, session_id, state, not_before_ms, created_ms,"
                     " updated_ms) VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING id");
    if (rc)
        return rc;
    sql_bind_text(st, 1, kind);
    if (session_id > 0)
        sql_bind_int64(st, 2, session_id);
    else
        sql_bind_null(st, 2);
    sql_bind_int64(st, 3, not_before_ms > 0 ? not_before_ms : now);
    sql_bind_int64(st, 4, now);
    sql_bind_int64(st, 5, now);
    if (sql_step(st) == SQL_ROW)
        *out_id = sql_col_int64(st, 0);
    else
        rc = sql_err(st, "queueing a job");
    sql_tx_stmt_done(tx, st);
    if (rc == 0)
        rc = sql_tx_notify(tx, STORE_NOTIFY_JOBS, "queued"); /* every scheduler looks */
    return rc;
}

static int job_get(store_job **out, store *s, int64_t id)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    store_job *j = NULL;
    int rc, step, oom = 0;

    *out = NULL;
    rc = sql_prepare(&st, s, db,
                     "SELECT id, kind, session_id, state, not_before_ms, attempts, lease_owner,"
                     " lease_expires_ms, created_ms FROM job WHERE id = $1");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, id);
    step = sql_step(st);
    if (step == SQL_DONE) {
        farm_error_set("store: no job %lld", (long long)id);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    if (step != SQL_ROW) {
        rc = sql_err(st, "reading a job");
        goto out;
    }
    if (!(j = calloc(1, sizeof(*j))))
        goto nomem;
    j->id = sql_col_int64(st, 0);
    j->kind = sql_col_dup(st, 1, &oom);
    j->session_id = sql_col_int64(st, 2);
    j->state = sql_col_dup(st, 3, &oom);
    j->not_before_ms = sql_col_int64(st, 4);
    j->attempts = sql_col_int64(st, 5);
    j->lease_owner = sql_col_dup(st, 6, &oom);
    j->lease_expires_ms = sql_col_int64(st, 7);
    j->created_ms = sql_col_int64(st, 8);
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
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int job_count(int64_t *queued, int64_t *leased, store *s)
{
    store_count *v = NULL;
    size_t n = 0;
    int rc = sql_count_query(&v, &n, s,
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

/* ---- leasing ---------------------------------------------------------------- */

/* The next job a lease may take. $1 now, $2 max_total, $3 max_per_repo. A
 * job is due when queued and past its not-before time, or leased with an
 * expired lease (its owner died: taken over). Live leases are leased jobs
 * whose lease has not expired.
 *
 * Written so that no step sorts or visits every due job: the live leases
 * are read once (a handful of rows); each branch walks an index in the
 * order wanted (job_due for (not_before_ms, id), job_cancel_due for cancel
 * jobs, the leased rows of job_due for expired leases) and stops at its
 * first job that passes the checks; the outer query picks among at most
 * four rows: cancel jobs first, then by not-before time and id. */
#define DUE_CHECKS                                                                                 \
    " AND (j.session_id IS NULL OR j.session_id NOT IN"                                            \
    "      (SELECT session_id FROM live WHERE session_id IS NOT NULL))"                            \
    " AND ($3 <= 0 OR s.id IS NULL OR (SELECT count(*) FROM live l"                                \
    "      WHERE l.tracker = s.tracker AND l.repo = s.repo) < $3)"
#define DUE_FROM " FROM job j LEFT JOIN session s ON s.id = j.session_id"
#define NEXT_DUE_SQL                                                                               \
    "WITH live AS MATERIALIZED (SELECT o.session_id, os.tracker, os.repo FROM job o"               \
    "   LEFT JOIN session os ON os.id = o.session_id"                                              \
    "   WHERE o.state = 'leased' AND o.lease_expires_ms > $1)"                                     \
    " SELECT id FROM ("                                                                            \
    "  SELECT * FROM (SELECT j.id, 0 AS pri, j.not_before_ms AS nb" DUE_FROM                       \
    "   WHERE j.kind = 'cancel' AND j.state = 'queued' AND j.not_before_ms <= $1" DUE_CHECKS       \
    "   ORDER BY j.not_before_ms, j.id LIMIT 1) c"                                                 \
    "  UNION ALL SELECT * FROM (SELECT j.id, 1, j.not_before_ms" DUE_FROM                          \
    "   WHERE j.state = 'queued' AND j.not_before_ms <= $1" DUE_CHECKS                             \
    "   ORDER BY j.not_before_ms, j.id LIMIT 1) q"                                                 \
    "  UNION ALL SELECT * FROM (SELECT j.id, CASE WHEN j.kind = 'cancel' THEN 0 ELSE 1 END,"       \
    "   j.not_before_ms" DUE_FROM                                                                  \
    "   WHERE j.state = 'leased' AND j.lease_expires_ms <= $1" DUE_CHECKS                          \
    "   ORDER BY j.kind <> 'cancel', j.not_before_ms, j.id LIMIT 1) e) due"                        \
    " WHERE $2 <= 0 OR (SELECT count(*) FROM live) < $2"                                           \
    " ORDER BY pri, nb, id LIMIT 1"

#define JOB_COLUMNS                                                                                \
    "id, kind, session_id, state, not_before_ms, attempts, lease_owner, lease_expires_ms, "        \
    "created_ms"

static int job_read(store_job **out, sql_stmt *st)
{
    int oom = 0;
    store_job *j = calloc(1, sizeof(*j));
    *out = NULL;
    if (!j)
        goto nomem;
    j->id = sql_col_int64(st, 0);
    j->kind = sql_col_dup(st, 1, &oom);
    j->session_id = sql_col_int64(st, 2);
    j->state = sql_col_dup(st, 3, &oom);
    j->not_before_ms = sql_col_int64(st, 4);
    j->attempts = sql_col_int64(st, 5);
    j->lease_owner = sql_col_dup(st, 6, &oom);
    j->lease_expires_ms = sql_col_int64(st, 7);
    j->created_ms = sql_col_int64(st, 8);
    if (oom)
        goto nomem;
    *out = j;
    return 0;
nomem:
    store_job_free(j);
    farm_error_set("store: out of memory");
    return FARM_ENOMEM;
}

static int lease_req_check(const store_lease_req *req)
{
    if (!req || !req->owner || !*req->owner || req->lease_ms <= 0) {
        farm_error_set("store: a lease needs an owner and a positive length");
        return FARM_EINVALID;
    }
    return 0;
}

typedef struct lease_arg {
    const store_lease_req *req;
    store_job *job;
} lease_arg;

static int lease_fn(store_tx *tx, void *arg)
{
    lease_arg *a = arg;
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc, step;

    store_job_free(a->job); /* a write run again starts afresh */
    a->job = NULL;
    /* Leases are taken one at a time across every node: the counts of live
     * leases below are then the truth when the UPDATE runs (PostgreSQL's
     * READ COMMITTED gives each statement a snapshot taken after the lock;
     * SQLite's one writer needs no lock). */
    if ((rc = sql_tx_lock(tx, SQL_LOCK_JOB_LEASE)))
        return rc;
    rc = sql_tx_stmt(&st, tx,
                     "UPDATE job SET state = 'leased', lease_owner = $4,"
                     " lease_expires_ms = $1 + $5, attempts = attempts + 1, updated_ms = $1"
                     " WHERE id = (" NEXT_DUE_SQL ") AND (state = 'queued' AND"
                     " not_before_ms <= $1 OR state = 'leased' AND lease_expires_ms <= $1)"
                     " RETURNING " JOB_COLUMNS);
    if (rc)
        return rc;
    sql_bind_int64(st, 1, now);
    sql_bind_int(st, 2, a->req->max_total);
    sql_bind_int(st, 3, a->req->max_per_repo);
    sql_bind_text(st, 4, a->req->owner);
    sql_bind_int64(st, 5, a->req->lease_ms);
    step = sql_step(st);
    if (step == SQL_ROW) {
        rc = job_read(&a->job, st);
        step = sql_step(st);
    }
    if (!rc && step != SQL_DONE)
        rc = sql_err(st, "leasing a job");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int job_lease(store_job **out, store *s, const store_lease_req *req)
{
    lease_arg a = {req, NULL};
    int rc;

    *out = NULL;
    if ((rc = lease_req_check(req)))
        return rc;
    rc = store_write(s, lease_fn, &a);
    if (rc) {
        store_job_free(a.job);
        return rc;
    }
    *out = a.job;
    return 0;
}

static int job_peek(store_job **out, store *s, const store_lease_req *req)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc, step;

    *out = NULL;
    rc = sql_prepare(&st, s, db, "SELECT " JOB_COLUMNS " FROM job WHERE id = (" NEXT_DUE_SQL ")");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, clock_wall_ms());
    sql_bind_int(st, 2, req ? req->max_total : 0);
    sql_bind_int(st, 3, req ? req->max_per_repo : 0);
    step = sql_step(st);
    if (step == SQL_ROW)
        rc = job_read(out, st);
    else if (step != SQL_DONE)
        rc = sql_err(st, "looking for a due job");
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

typedef struct extend_arg {
    int *lost;
    const char *owner;
    const int64_t *ids;
    size_t n;
    int64_t lease_ms;
} extend_arg;

static int extend_fn(store_tx *tx, void *arg)
{
    extend_arg *a = arg;
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc = sql_tx_stmt(&st, tx,
                         "UPDATE job SET lease_expires_ms = $1, updated_ms = $2"
                         " WHERE id = $3 AND state = 'leased' AND lease_owner = $4");
    if (rc)
        return rc;
    for (size_t i = 0; i < a->n && !rc; i++) {
        sql_reset(st);
        sql_bind_int64(st, 1, now + a->lease_ms);
        sql_bind_int64(st, 2, now);
        sql_bind_int64(st, 3, a->ids[i]);
        sql_bind_text(st, 4, a->owner);
        if (sql_step(st) != SQL_DONE)
            rc = sql_err(st, "extending a lease");
        else
            a->lost[i] = sql_changes(st) == 0;
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int job_lease_extend(int *lost, store *s, const char *owner, const int64_t *ids, size_t n,
                            int64_t lease_ms)
{
    extend_arg a = {lost, owner, ids, n, lease_ms};
    if (n == 0)
        return 0;
    if (!owner || lease_ms <= 0) {
        farm_error_set("store: extending a lease needs an owner and a positive length");
        return FARM_EINVALID;
    }
    return store_write(s, extend_fn, &a);
}

static int state_valid_end(const char *state)
{
    return state &&
           (!strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

static int tx_job_finish(store_tx *tx, int64_t id, const char *owner, const char *state,
                         const char *error)
{
    sql_stmt *st = NULL;
    int rc;

    if (!state_valid_end(state) || !owner) {
        farm_error_set("store: a job ends done, failed or cancelled, by its lease owner");
        return FARM_EINVALID;
    }
    rc = sql_tx_stmt(&st, tx,
                     "UPDATE job SET state = $1, lease_expires_ms = 0, last_error = $2,"
                     " updated_ms = $3 WHERE id = $4 AND state = 'leased' AND lease_owner = $5");
    if (rc)
        return rc;
    sql_bind_text(st, 1, state);
    sql_bind_text(st, 2, error); /* NULL binds a NULL text */
    sql_bind_int64(st, 3, clock_wall_ms());
    sql_bind_int64(st, 4, id);
    sql_bind_text(st, 5, owner);
    if (sql_step(st) != SQL_DONE) {
        rc = sql_err(st, "ending a job");
    } else if (sql_changes(st) == 0) {
        farm_error_set("store: job %lld is not leased by %s any more", (long long)id, owner);
        rc = FARM_ECONFLICT;
    }
    sql_tx_stmt_done(tx, st);
    if (rc == 0) /* a slot, and the session's repo, are free again */
        rc = sql_tx_notify(tx, STORE_NOTIFY_JOBS, "finished");
    return rc;
}

typedef struct finish_arg {
    int64_t id;
    const char *owner, *state, *error;
    int64_t not_before_ms;
    int release;
} finish_arg;

static int finish_fn(store_tx *tx, void *arg)
{
    finish_arg *a = arg;
    return tx_job_finish(tx, a->id, a->owner, a->state, a->error);
}

static int job_finish(store *s, int64_t id, const char *owner, const char *state, const char *error)
{
    finish_arg a = {id, owner, state, error, 0, 0};
    return store_write(s, finish_fn, &a);
}

static int retry_fn(store_tx *tx, void *arg)
{
    finish_arg *a = arg;
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(
        &st, tx,
        "UPDATE job SET state = 'queued', not_before_ms = $1,"
        " lease_owner = NULL, lease_expires_ms = 0,"
        " last_error = coalesce($2, last_error),"
        " attempts = CASE WHEN attempts > $3 THEN attempts - $3 ELSE 0 END, updated_ms = $4"
        " WHERE id = $5 AND state = 'leased' AND lease_owner = $6");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, a->not_before_ms);
    sql_bind_text(st, 2, a->error);
    sql_bind_int(st, 3, a->release ? 1 : 0);
    sql_bind_int64(st, 4, clock_wall_ms());
    sql_bind_int64(st, 5, a->id);
    sql_bind_text(st, 6, a->owner);
    if (sql_step(st) != SQL_DONE) {
        rc = sql_err(st, "putting a job back");
    } else if (sql_changes(st) == 0) {
        farm_error_set("store: job %lld is not leased by %s any more", (long long)a->id, a->owner);
        rc = FARM_ECONFLICT;
    }
    sql_tx_stmt_done(tx, st);
    if (rc == 0)
        rc = sql_tx_notify(tx, STORE_NOTIFY_JOBS, "queued");
    return rc;
}

static int job_retry(store *s, int64_t id, const char *owner, int64_t not_before_ms,
                     const char *error, int release)
{
    finish_arg a = {id, owner, NULL, error, not_before_ms, release};
    if (!owner) {
        farm_error_set("store: putting a job back needs its lease owner");
        return FARM_EINVALID;
    }
    return store_write(s, retry_fn, &a);
}

static int job_session_stopping(int *out, store *s, int64_t session_id)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT EXISTS (SELECT 1 FROM session WHERE id = $1 AND state = 'cancelled')"
                     " OR EXISTS (SELECT 1 FROM job WHERE session_id = $1 AND kind = 'cancel'"
                     " AND state IN ('queued', 'leased'))");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, session_id);
    if (sql_step(st) == SQL_ROW)
        *out = sql_col_int(st, 0) != 0;
    else
        rc = sql_err(st, "checking whether a session stops");
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int job_count_by_state(store_count **out, size_t *n, store *s)
{
    return sql_count_query(out, n, s, "SELECT state, count(*) FROM job GROUP BY state", 1);
}

static int job_session_live(int64_t *live, char **owner, store *s, int64_t session_id)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc, oom = 0;

    rc = sql_prepare(&st, s, db,
                     "SELECT (SELECT count(*) FROM job WHERE session_id = $1"
                     " AND state IN ('queued', 'leased')),"
                     " (SELECT lease_owner FROM job WHERE session_id = $1 AND state = 'leased'"
                     " ORDER BY id DESC LIMIT 1)");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, session_id);
    if (sql_step(st) == SQL_ROW) {
        *live = sql_col_int64(st, 0);
        *owner = sql_col_dup(st, 1, &oom);
        if (oom) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
        }
    } else {
        rc = sql_err(st, "reading a session's jobs");
    }
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

const store_job_ops sql_job_ops = {
    .tx_insert = tx_job_insert,
    .get = job_get,
    .count = job_count,
    .lease = job_lease,
    .peek = job_peek,
    .lease_extend = job_lease_extend,
    .finish = job_finish,
    .tx_finish = tx_job_finish,
    .retry = job_retry,
    .session_stopping = job_session_stopping,
    .session_live = job_session_live,
    .count_by_state = job_count_by_state,
};
