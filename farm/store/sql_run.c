/*
 * sql_run.c - the pipeline's SQL (see store_run.h): session state, branch,
 * counters and the pull request's draft flag set inside a run's writes, and
 * the session log read by kind.
 *
 * The log is read by kind because a run's output lines can be thousands of
 * events: the checkpoints and the conversation are a few among them, and an
 * index on (session_id, seq) plus a kind filter finds them without loading
 * the rest. Written once for both backends (store_sql.h).
 */
#include "store_sql.h"
#include "store_run.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KINDS_MAX 16

static int tx_session_get(store_session **out, store_tx *tx, int64_t id)
{
    sql_stmt *st = NULL;
    store_session *s = NULL;
    int rc, step;

    *out = NULL;
    rc = sql_tx_stmt(&st, tx, "SELECT " SQL_SESSION_COLS " FROM session WHERE id = $1");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, id);
    step = sql_step(st);
    if (step == SQL_DONE) {
        farm_error_set("store: no session %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    } else if (step != SQL_ROW) {
        rc = sql_err(st, "reading a session");
    } else if (!(s = malloc(sizeof(*s)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
    } else if ((rc = sql_session_read(s, st))) {
        free(s);
        s = NULL;
    }
    sql_tx_stmt_done(tx, st);
    if (!rc)
        *out = s;
    return rc;
}

/* Run an UPDATE of one session row; FARM_ENOTFOUND when there is none. */
static int session_update(store_tx *tx, sql_stmt *st, int64_t id, const char *what)
{
    int rc = 0;
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, what);
    else if (sql_changes(st) == 0) {
        farm_error_set("store: no session %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_session_state_set(store_tx *tx, int64_t id, const char *state)
{
    const char *const *states = store_session_states();
    sql_stmt *st = NULL;
    int known = 0, rc;

    for (size_t i = 0; state && states[i]; i++)
        known |= !strcmp(states[i], state);
    if (!known) {
        farm_error_set("store: '%s' is not a session state", state ? state : "(null)");
        return FARM_EINVALID;
    }
    rc = sql_tx_stmt(&st, tx, "UPDATE session SET state = $1, updated_ms = $2 WHERE id = $3");
    if (rc)
        return rc;
    sql_bind_text(st, 1, state);
    sql_bind_int64(st, 2, clock_wall_ms());
    sql_bind_int64(st, 3, id);
    return session_update(tx, st, id, "setting a session's state");
}

static int tx_session_branch_set(store_tx *tx, int64_t id, const char *branch)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx, "UPDATE session SET branch = $1, updated_ms = $2 WHERE id = $3");
    if (rc)
        return rc;
    sql_bind_text(st, 1, branch);
    sql_bind_int64(st, 2, clock_wall_ms());
    sql_bind_int64(st, 3, id);
    return session_update(tx, st, id, "setting a session's branch");
}

static int tx_session_run_add(int64_t *out_runs, store_tx *tx, int64_t id)
{
    sql_stmt *st = NULL;
    int rc;

    *out_runs = 0;
    rc = sql_tx_stmt(&st, tx,
                     "UPDATE session SET runs = runs + 1, updated_ms = $1 WHERE id = $2"
                     " RETURNING runs");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, clock_wall_ms());
    sql_bind_int64(st, 2, id);
    switch (sql_step(st)) {
    case SQL_ROW:
        *out_runs = sql_col_int64(st, 0);
        break;
    case SQL_DONE:
        farm_error_set("store: no session %lld", (long long)id);
        rc = FARM_ENOTFOUND;
        break;
    default:
        rc = sql_err(st, "counting a run");
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_session_usage_add(store_tx *tx, int64_t id, double agent_seconds, double cost)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "UPDATE session SET agent_seconds = agent_seconds + $1, cost = cost + $2,"
                         " updated_ms = $3 WHERE id = $4");
    if (rc)
        return rc;
    sql_bind_double(st, 1, agent_seconds);
    sql_bind_double(st, 2, cost);
    sql_bind_int64(st, 3, clock_wall_ms());
    sql_bind_int64(st, 4, id);
    return session_update(tx, st, id, "adding to a session's counters");
}

static int tx_session_pr_draft_set(store_tx *tx, int64_t id, int draft, const char *reason)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "UPDATE session SET pr_draft = $1, pr_draft_reason = $2, updated_ms = $3"
                         " WHERE id = $4");
    if (rc)
        return rc;
    sql_bind_int(st, 1, draft ? 1 : 0);
    sql_bind_text(st, 2, draft ? reason : NULL);
    sql_bind_int64(st, 3, clock_wall_ms());
    sql_bind_int64(st, 4, id);
    return session_update(tx, st, id, "setting whether a session's pull request is a draft");
}

/* SELECT ... WHERE kind IN (...) with the kinds bound; newest or oldest first. */
static int kinds_query(store_event **out, size_t *n, store *s, int64_t session_id,
                       const char *const *kinds, int64_t after_seq, int limit, int newest)
{
    char sql[1024];
    size_t nk = 0, off;
    sql_conn *db = NULL;
    sql_stmt *st = NULL;
    store_event *v = NULL;
    size_t count = 0;
    int rc = 0, step, oom = 0;

    *out = NULL;
    *n = 0;
    while (kinds && kinds[nk])
        nk++;
    if (nk == 0 || nk > KINDS_MAX) {
        farm_error_set("store: between 1 and %d event kinds", KINDS_MAX);
        return FARM_EINVALID;
    }
    off = (size_t)snprintf(sql, sizeof(sql),
                           "SELECT session_id, seq, ts_ms, kind, actor, body FROM event"
                           " WHERE session_id = $1 AND seq > $2 AND kind IN ($3");
    for (size_t i = 1; i < nk; i++)
        off += (size_t)snprintf(sql + off, sizeof(sql) - off, ",$%zu", 3 + i);
    snprintf(sql + off, sizeof(sql) - off, ") ORDER BY seq %s LIMIT $%zu", newest ? "DESC" : "ASC",
             3 + nk);

    db = sql_reader_get(s);
    if ((rc = sql_prepare(&st, s, db, sql)))
        goto out;
    sql_bind_int64(st, 1, session_id);
    sql_bind_int64(st, 2, after_seq);
    for (size_t i = 0; i < nk; i++)
        sql_bind_text(st, (int)(3 + i), kinds[i]);
    sql_bind_int(st, (int)(3 + nk), limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        oom = 1;
        goto out;
    }
    while ((step = sql_step(st)) == SQL_ROW && count < (size_t)limit) {
        store_event *e = &v[count++];
        e->session_id = sql_col_int64(st, 0);
        e->seq = sql_col_int64(st, 1);
        e->ts_ms = sql_col_int64(st, 2);
        e->kind = sql_col_dup(st, 3, &oom);
        e->actor = sql_col_dup(st, 4, &oom);
        e->body = sql_col_dup(st, 5, &oom);
        if (oom)
            goto out;
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "listing events by kind");
        goto out;
    }
    if (count) {
        *out = v;
        *n = count;
        v = NULL;
    }
out:
    if (oom) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
    }
    store_event_list_free(v, count);
    sql_finalize(st);
    if (db)
        sql_reader_put(s, db);
    return rc;
}

static int event_list_kinds(store_event **out, size_t *n, store *s, int64_t session_id,
                            const char *const *kinds, int64_t after_seq, int limit)
{
    return kinds_query(out, n, s, session_id, kinds, after_seq, sql_limit(limit), 0);
}

static int event_last_kind(store_event **out, store *s, int64_t session_id,
                           const char *const *kinds, int64_t after_seq)
{
    size_t n = 0;
    return kinds_query(out, &n, s, session_id, kinds, after_seq, 1, 1);
}

static int tx_spend_add(store_tx *tx, int64_t day, const char *repo, double usd)
{
    sql_stmt *st = NULL;
    int rc =
        sql_tx_stmt(&st, tx,
                    "INSERT INTO model_spend (day, repo, usd) VALUES ($1, $2, $3)"
                    " ON CONFLICT (day, repo) DO UPDATE SET usd = model_spend.usd + excluded.usd");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, day);
    sql_bind_text(st, 2, repo ? repo : "");
    sql_bind_double(st, 3, usd);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "adding model spend");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int spend_get(double *repo_usd, double *all_usd, store *s, int64_t day, const char *repo)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *repo_usd = *all_usd = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT COALESCE(SUM(CASE WHEN repo = $1 THEN usd END), 0),"
                     " COALESCE(SUM(usd), 0) FROM model_spend WHERE day = $2");
    if (rc)
        goto out;
    sql_bind_text(st, 1, repo ? repo : "");
    sql_bind_int64(st, 2, day);
    if (sql_step(st) != SQL_ROW) {
        rc = sql_err(st, "reading model spend");
        goto out;
    }
    *repo_usd = sql_col_double(st, 0);
    *all_usd = sql_col_double(st, 1);
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

/* Rows of (label [, label], amount) into a store_amount list. */
static int amount_query(store_amount **out, size_t *n, sql_stmt *st, int nlabels)
{
    store_amount *v = NULL;
    size_t count = 0, cap = 0;
    int step, oom = 0;

    while ((step = sql_step(st)) == SQL_ROW) {
        if (sql_grow(&v, &cap, count, sizeof(*v)))
            goto nomem;
        store_amount *e = &v[count++];
        memset(e, 0, sizeof(*e));
        for (int i = 0; i < nlabels; i++)
            e->labels[i] = sql_col_dup(st, i, &oom);
        e->value = sql_col_double(st, nlabels);
        if (oom)
            goto nomem;
    }
    if (step != SQL_DONE) {
        store_amount_list_free(v, count);
        return sql_err(st, "reading model spend");
    }
    *out = v;
    *n = count;
    return 0;
nomem:
    store_amount_list_free(v, count);
    farm_error_set("store: out of memory");
    return FARM_ENOMEM;
}

static int spend_list(store_amount **out, size_t *n, store *s, int64_t day)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out = NULL;
    *n = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT repo, usd FROM model_spend WHERE day = $1 ORDER BY repo LIMIT $2");
    if (rc == 0) {
        sql_bind_int64(st, 1, day);
        sql_bind_int64(st, 2, STORE_LIST_MAX);
        rc = amount_query(out, n, st, 1);
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int tx_model_stat_add(store_tx *tx, const char *name, const char *labels, double delta)
{
    sql_stmt *st = NULL;
    if (!name || !*name || !labels || strlen(labels) > 512) {
        farm_error_set("store: a model statistic needs a name and labels of at most 512 bytes");
        return FARM_EINVALID;
    }
    int rc = sql_tx_stmt(&st, tx,
                         "INSERT INTO model_stat (name, labels, value) VALUES ($1, $2, $3)"
                         " ON CONFLICT (name, labels) DO UPDATE SET value = model_stat.value +"
                         " excluded.value");
    if (rc)
        return rc;
    sql_bind_text(st, 1, name);
    sql_bind_text(st, 2, labels);
    sql_bind_double(st, 3, delta);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "adding a model statistic");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int model_stat_list(store_amount **out, size_t *n, store *s)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out = NULL;
    *n = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT name, labels, value FROM model_stat ORDER BY name, labels LIMIT $1");
    if (rc == 0) {
        sql_bind_int64(st, 1, STORE_LIST_MAX);
        rc = amount_query(out, n, st, 2);
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

const store_run_ops sql_run_ops = {
    .tx_session_get = tx_session_get,
    .tx_session_state_set = tx_session_state_set,
    .tx_session_branch_set = tx_session_branch_set,
    .tx_session_run_add = tx_session_run_add,
    .tx_session_usage_add = tx_session_usage_add,
    .tx_session_pr_draft_set = tx_session_pr_draft_set,
    .tx_spend_add = tx_spend_add,
    .spend_get = spend_get,
    .spend_list = spend_list,
    .tx_model_stat_add = tx_model_stat_add,
    .model_stat_list = model_stat_list,
    .event_list_kinds = event_list_kinds,
    .event_last_kind = event_last_kind,
};
