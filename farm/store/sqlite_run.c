/*
 * sqlite_run.c - the pipeline's SQL (see store_run.h): session state, branch,
 * counters and the pull request's draft flag set inside a run's writes, and
 * the session log read by kind.
 *
 * The log is read by kind because a run's output lines can be thousands of
 * events: the checkpoints and the conversation are a few among them, and an
 * index on (session_id, seq) plus a kind filter finds them without loading
 * the rest.
 */
#include "sqlite_internal.h"
#include "store_run.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KINDS_MAX 16

static int tx_session_get(store_session **out, store_tx *tx, int64_t id)
{
    sqlite3_stmt *st = NULL;
    store_session *s = NULL;
    int rc, step;

    *out = NULL;
    rc = sqlite_tx_stmt(&st, tx, "SELECT " SQLITE_SESSION_COLS " FROM session WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        farm_error_set("store: no session %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    } else if (step != SQLITE_ROW) {
        rc = sqlite_err(sqlite_tx_db(tx), "reading a session");
    } else if (!(s = malloc(sizeof(*s)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
    } else if ((rc = sqlite_session_read(s, st))) {
        free(s);
        s = NULL;
    }
    sqlite_tx_stmt_done(tx, st);
    if (!rc)
        *out = s;
    return rc;
}

/* Run an UPDATE of one session row; FARM_ENOTFOUND when there is none. */
static int session_update(store_tx *tx, sqlite3_stmt *st, int64_t id, const char *what)
{
    int rc = 0;
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), what);
    else if (sqlite3_changes(sqlite_tx_db(tx)) == 0) {
        farm_error_set("store: no session %lld", (long long)id);
        rc = FARM_ENOTFOUND;
    }
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int tx_session_state_set(store_tx *tx, int64_t id, const char *state)
{
    const char *const *states = store_session_states();
    sqlite3_stmt *st = NULL;
    int known = 0, rc;

    for (size_t i = 0; state && states[i]; i++)
        known |= !strcmp(states[i], state);
    if (!known) {
        farm_error_set("store: '%s' is not a session state", state ? state : "(null)");
        return FARM_EINVALID;
    }
    rc = sqlite_tx_stmt(&st, tx, "UPDATE session SET state = ?, updated_ms = ? WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clock_wall_ms());
    sqlite3_bind_int64(st, 3, id);
    return session_update(tx, st, id, "setting a session's state");
}

static int tx_session_branch_set(store_tx *tx, int64_t id, const char *branch)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx, "UPDATE session SET branch = ?, updated_ms = ? WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, branch, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clock_wall_ms());
    sqlite3_bind_int64(st, 3, id);
    return session_update(tx, st, id, "setting a session's branch");
}

static int tx_session_run_add(int64_t *out_runs, store_tx *tx, int64_t id)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *out_runs = 0;
    rc = sqlite_tx_stmt(&st, tx,
                        "UPDATE session SET runs = runs + 1, updated_ms = ? WHERE id = ?"
                        " RETURNING runs");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, clock_wall_ms());
    sqlite3_bind_int64(st, 2, id);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        *out_runs = sqlite3_column_int64(st, 0);
        break;
    case SQLITE_DONE:
        farm_error_set("store: no session %lld", (long long)id);
        rc = FARM_ENOTFOUND;
        break;
    default:
        rc = sqlite_err(sqlite_tx_db(tx), "counting a run");
    }
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int tx_session_usage_add(store_tx *tx, int64_t id, double agent_seconds, double cost)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "UPDATE session SET agent_seconds = agent_seconds + ?, cost = cost + ?,"
                            " updated_ms = ? WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_double(st, 1, agent_seconds);
    sqlite3_bind_double(st, 2, cost);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    sqlite3_bind_int64(st, 4, id);
    return session_update(tx, st, id, "adding to a session's counters");
}

static int tx_session_pr_draft_set(store_tx *tx, int64_t id, int draft, const char *reason)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "UPDATE session SET pr_draft = ?, pr_draft_reason = ?, updated_ms = ?"
                            " WHERE id = ?");
    if (rc)
        return rc;
    sqlite3_bind_int(st, 1, draft ? 1 : 0);
    sqlite3_bind_text(st, 2, draft ? reason : NULL, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    sqlite3_bind_int64(st, 4, id);
    return session_update(tx, st, id, "setting whether a session's pull request is a draft");
}

/* SELECT ... WHERE kind IN (...) with the kinds bound; newest or oldest first. */
static int kinds_query(store_event **out, size_t *n, store *s, int64_t session_id,
                       const char *const *kinds, int64_t after_seq, int limit, int newest)
{
    char sql[1024];
    size_t nk = 0, off;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
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
                           " WHERE session_id = ? AND seq > ? AND kind IN (?");
    for (size_t i = 1; i < nk; i++)
        off += (size_t)snprintf(sql + off, sizeof(sql) - off, ",?");
    snprintf(sql + off, sizeof(sql) - off, ") ORDER BY seq %s LIMIT ?", newest ? "DESC" : "ASC");

    db = sqlite_reader_get(s);
    if ((rc = sqlite_prepare(&st, db, sql)))
        goto out;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, after_seq);
    for (size_t i = 0; i < nk; i++)
        sqlite3_bind_text(st, (int)(3 + i), kinds[i], -1, SQLITE_STATIC);
    sqlite3_bind_int(st, (int)(3 + nk), limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        oom = 1;
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW && count < (size_t)limit) {
        store_event *e = &v[count++];
        e->session_id = sqlite3_column_int64(st, 0);
        e->seq = sqlite3_column_int64(st, 1);
        e->ts_ms = sqlite3_column_int64(st, 2);
        e->kind = sqlite_col_text(st, 3, &oom);
        e->actor = sqlite_col_text(st, 4, &oom);
        e->body = sqlite_col_text(st, 5, &oom);
        if (oom)
            goto out;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing events by kind");
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
    sqlite3_finalize(st);
    if (db)
        sqlite_reader_put(s, db);
    return rc;
}

static int event_list_kinds(store_event **out, size_t *n, store *s, int64_t session_id,
                            const char *const *kinds, int64_t after_seq, int limit)
{
    return kinds_query(out, n, s, session_id, kinds, after_seq, sqlite_limit(limit), 0);
}

static int event_last_kind(store_event **out, store *s, int64_t session_id,
                           const char *const *kinds, int64_t after_seq)
{
    size_t n = 0;
    return kinds_query(out, &n, s, session_id, kinds, after_seq, 1, 1);
}

static int tx_spend_add(store_tx *tx, int64_t day, const char *repo, double usd)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "INSERT INTO model_spend (day, repo, usd) VALUES (?, ?, ?)"
                            " ON CONFLICT (day, repo) DO UPDATE SET usd = usd + excluded.usd");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, day);
    sqlite3_bind_text(st, 2, repo ? repo : "", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, usd);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "adding model spend");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int spend_get(double *repo_usd, double *all_usd, store *s, int64_t day, const char *repo)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *repo_usd = *all_usd = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT COALESCE(SUM(CASE WHEN repo = ? THEN usd END), 0),"
                        " COALESCE(SUM(usd), 0) FROM model_spend WHERE day = ?");
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, repo ? repo : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, day);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = sqlite_err(db, "reading model spend");
        goto out;
    }
    *repo_usd = sqlite3_column_double(st, 0);
    *all_usd = sqlite3_column_double(st, 1);
out:
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

/* Rows of (label [, label], amount) into a store_amount list. */
static int amount_query(store_amount **out, size_t *n, sqlite3 *db, sqlite3_stmt *st, int nlabels)
{
    store_amount *v = NULL;
    size_t count = 0, cap = 0;
    int step, oom = 0;

    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            store_amount *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv)
                goto nomem;
            v = nv;
            cap = ncap;
        }
        store_amount *e = &v[count++];
        memset(e, 0, sizeof(*e));
        for (int i = 0; i < nlabels; i++)
            e->labels[i] = sqlite_col_text(st, i, &oom);
        e->value = sqlite3_column_double(st, nlabels);
        if (oom)
            goto nomem;
    }
    if (step != SQLITE_DONE) {
        store_amount_list_free(v, count);
        return sqlite_err(db, "reading model spend");
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
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    *n = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT repo, usd FROM model_spend WHERE day = ? ORDER BY repo LIMIT ?");
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, day);
        sqlite3_bind_int(st, 2, STORE_LIST_MAX);
        rc = amount_query(out, n, db, st, 1);
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int tx_model_stat_add(store_tx *tx, const char *name, const char *labels, double delta)
{
    sqlite3_stmt *st = NULL;
    if (!name || !*name || !labels || strlen(labels) > 512) {
        farm_error_set("store: a model statistic needs a name and labels of at most 512 bytes");
        return FARM_EINVALID;
    }
    int rc = sqlite_tx_stmt(&st, tx,
                            "INSERT INTO model_stat (name, labels, value) VALUES (?, ?, ?)"
                            " ON CONFLICT (name, labels) DO UPDATE SET value = value + "
                            "excluded.value");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, labels, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, delta);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "adding a model statistic");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int model_stat_list(store_amount **out, size_t *n, store *s)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    *n = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT name, labels, value FROM model_stat ORDER BY name, labels LIMIT ?");
    if (rc == 0) {
        sqlite3_bind_int(st, 1, STORE_LIST_MAX);
        rc = amount_query(out, n, db, st, 2);
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

const store_run_ops sqlite_run_ops = {
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
