/*
 * sql_session.c - sessions and their append-only event log, written once
 * for both backends (store_sql.h).
 *
 * A session is one issue being worked on; the partial unique index
 * session_active keeps it to one active session per issue. Its log is the
 * event table, keyed (session_id, seq): the next seq is taken by bumping the
 * session's last_seq in the same transaction as the insert, so seqs are
 * dense from 1 and concurrent appends (PostgreSQL) serialise on the session
 * row's lock instead of racing on MAX(seq). Two nodes creating the active
 * session of one issue on PostgreSQL: the second's insert meets
 * session_active and its write runs again (pg_write()), now finding the
 * first's session.
 */
#include "store_sql.h"

#include "base/clock.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_COLS SQL_SESSION_COLS

/* Step st for one session row into a new heap record. */
static int session_one(store_session **out, sql_stmt *st, const char *what)
{
    store_session *s;
    int step = sql_step(st), rc;

    if (step == SQL_DONE) {
        farm_error_set("store: %s: no such session", what);
        return FARM_ENOTFOUND;
    }
    if (step != SQL_ROW)
        return sql_err(st, what);
    if (!(s = malloc(sizeof(*s)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    if ((rc = sql_session_read(s, st))) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int tx_session_find(store_session **out, store_tx *tx, const char *tracker, const char *repo,
                           int64_t number, int by_pr, int active_only)
{
    sql_stmt *st = NULL;
    int rc;

    *out = NULL;
    if (!tracker || !repo || number <= 0) {
        farm_error_set("store: finding a session needs a tracker, a repository and a number");
        return FARM_EINVALID;
    }
    /* Active sessions sort first, then the newest. */
    rc = sql_tx_stmt(&st, tx,
                     by_pr ? "SELECT " SESSION_COLS " FROM session"
                             " WHERE tracker = $1 AND repo = $2 AND pr_number = $3"
                             " AND ($4 = 0 OR state NOT IN ('done', 'failed', 'cancelled'))"
                             " ORDER BY state IN ('done', 'failed', 'cancelled'), id DESC LIMIT 1"
                           : "SELECT " SESSION_COLS " FROM session"
                             " WHERE tracker = $1 AND repo = $2 AND number = $3"
                             " AND ($4 = 0 OR state NOT IN ('done', 'failed', 'cancelled'))"
                             " ORDER BY state IN ('done', 'failed', 'cancelled'), id DESC LIMIT 1");
    if (rc)
        return rc;
    sql_bind_text(st, 1, tracker);
    sql_bind_text(st, 2, repo);
    sql_bind_int64(st, 3, number);
    sql_bind_int(st, 4, active_only ? 1 : 0);
    rc = session_one(out, st, "finding a session");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_session_insert(int64_t *out_id, store_tx *tx, const store_session *s)
{
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc, step;

    *out_id = 0;
    if (!s->tracker || !s->repo || s->number <= 0) {
        farm_error_set("store: a session needs a tracker, a repository and an issue number");
        return FARM_EINVALID;
    }
    rc = sql_tx_stmt(
        &st, tx,
        "INSERT INTO session (tracker, repo, number, title, url, state, created_ms,"
        " updated_ms, agent) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8) RETURNING id");
    if (rc)
        return rc;
    sql_bind_text(st, 1, s->tracker);
    sql_bind_text(st, 2, s->repo);
    sql_bind_int64(st, 3, s->number);
    sql_bind_text(st, 4, s->title);
    sql_bind_text(st, 5, s->url);
    sql_bind_int64(st, 6, now);
    sql_bind_int64(st, 7, now);
    sql_bind_text(st, 8, s->agent);
    step = sql_step(st);
    if (step == SQL_ROW) {
        *out_id = sql_col_int64(st, 0);
    } else if (step == SQL_ERROR && sql_failure(st) == SQL_FAIL_UNIQUE) {
        /* a lost race (PostgreSQL: pg_write() runs the write again) */
        farm_error_set("store: %s#%lld already has an active session", s->repo,
                       (long long)s->number);
        rc = FARM_EEXISTS;
    } else {
        rc = sql_err(st, "creating a session");
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int session_get(store_session **out, store *s, int64_t id)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out = NULL;
    rc = sql_prepare(&st, s, db, "SELECT " SESSION_COLS " FROM session WHERE id = $1");
    if (!rc) {
        sql_bind_int64(st, 1, id);
        rc = session_one(out, st, "reading a session");
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int session_list(store_session **out, size_t *n, store *s, const store_session_filter *f)
{
    static const store_session_filter none = STORE_SESSION_FILTER_INIT;
    sql_conn *db = NULL;
    sql_stmt *st = NULL;
    store_session *v = NULL;
    size_t count = 0;
    int rc, step, limit;

    *out = NULL;
    *n = 0;
    if (!f)
        f = &none;
    limit = sql_limit(f->limit);
    db = sql_reader_get(s);
    rc = sql_prepare(&st, s, db,
                     "SELECT " SESSION_COLS " FROM session"
                     " WHERE ($1 IS NULL OR state = $1)"
                     " AND ($2 IS NULL OR lower(repo) = lower($2))"
                     " AND ($3 IS NULL OR tracker = $3)"
                     " AND updated_ms >= $4 AND ($5 <= 0 OR id < $5)"
                     " ORDER BY id DESC LIMIT $6");
    if (rc)
        goto out;
    sql_bind_text(st, 1, f->state);
    sql_bind_text(st, 2, f->repo);
    sql_bind_text(st, 3, f->tracker);
    sql_bind_int64(st, 4, f->since_ms);
    sql_bind_int64(st, 5, f->before_id);
    sql_bind_int(st, 6, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    while ((step = sql_step(st)) == SQL_ROW && count < (size_t)limit) {
        if ((rc = sql_session_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "listing sessions");
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
    store_session_list_free(v, count);
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int session_count_by_state(store_count **out, size_t *n, store *s)
{
    return sql_count_query(out, n, s,
                           "SELECT state, count(*) FROM session GROUP BY state ORDER BY state", 1);
}

/* ---- the event log ------------------------------------------------------ */

/* The kind and the body's size, checked before anything is written. */
static int event_check(const char *kind, const char *body_json)
{
    if (!kind || !*kind) {
        farm_error_set("store: an event needs a kind");
        return FARM_EINVALID;
    }
    if (strlen(body_json) > SQL_EVENT_BODY_MAX) {
        farm_error_set("store: event body over %u bytes", SQL_EVENT_BODY_MAX);
        return FARM_ETOOBIG;
    }
    return 0;
}

/* Take the next seq and insert the event; body_json is known to be JSON. */
static int event_insert(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                        const char *actor, const char *body_json)
{
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms(), seq = 0;
    int rc;

    rc = sql_tx_stmt(&st, tx,
                     "UPDATE session SET last_seq = last_seq + 1, updated_ms = $1"
                     " WHERE id = $2 RETURNING last_seq");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, now);
    sql_bind_int64(st, 2, session_id);
    switch (sql_step(st)) {
    case SQL_ROW:
        seq = sql_col_int64(st, 0);
        break;
    case SQL_DONE:
        farm_error_set("store: no session %lld to append to", (long long)session_id);
        rc = FARM_ENOTFOUND;
        break;
    default:
        rc = sql_err(st, "taking the next event seq");
    }
    sql_tx_stmt_done(tx, st);
    st = NULL;
    if (rc)
        return rc;

    rc = sql_tx_stmt(&st, tx,
                     "INSERT INTO event (session_id, seq, ts_ms, kind, actor, body)"
                     " VALUES ($1, $2, $3, $4, $5, $6)");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, session_id);
    sql_bind_int64(st, 2, seq);
    sql_bind_int64(st, 3, now);
    sql_bind_text(st, 4, kind);
    sql_bind_text(st, 5, actor);
    sql_bind_text(st, 6, body_json);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "appending an event");
    sql_tx_stmt_done(tx, st);
    if (!rc) { /* every node's live readers of the session log look */
        char payload[48];
        snprintf(payload, sizeof(payload), "%lld:%lld", (long long)session_id, (long long)seq);
        rc = sql_tx_notify(tx, STORE_NOTIFY_SESSION, payload);
    }
    if (!rc && out_seq)
        *out_seq = seq;
    return rc;
}

int sql_tx_event_append(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                        const char *actor, const char *body_json)
{
    int rc;

    if (out_seq)
        *out_seq = 0;
    if (!body_json)
        body_json = "{}";
    if ((rc = event_check(kind, body_json)))
        return rc;
    json_error_t jerr;
    json_t *check = json_loads(body_json, JSON_DECODE_ANY, &jerr);
    if (!check) {
        farm_error_set("store: event body is not JSON: %s", jerr.text);
        return FARM_EINVALID;
    }
    json_decref(check);
    return event_insert(out_seq, tx, session_id, kind, actor, body_json);
}

static int tx_event_append_json(int64_t *out_seq, store_tx *tx, int64_t session_id,
                                const char *kind, const char *actor, const json_t *body)
{
    char *text = NULL;
    int rc;

    if (out_seq)
        *out_seq = 0;
    if (body && !(text = json_dumps(body, JSON_COMPACT))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    if (!(rc = event_check(kind, text ? text : "{}")))
        rc = event_insert(out_seq, tx, session_id, kind, actor, text ? text : "{}");
    free(text);
    return rc;
}

static int event_list(store_event **out, size_t *n, store *s, int64_t session_id, int64_t after_seq,
                      int limit)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    store_event *v = NULL;
    size_t count = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    limit = sql_limit(limit);
    rc = sql_prepare(&st, s, db,
                     "SELECT session_id, seq, ts_ms, kind, actor, body FROM event"
                     " WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, session_id);
    sql_bind_int64(st, 2, after_seq);
    sql_bind_int(st, 3, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v))))
        goto nomem;
    while ((step = sql_step(st)) == SQL_ROW && count < (size_t)limit) {
        store_event *e = &v[count++];
        e->session_id = sql_col_int64(st, 0);
        e->seq = sql_col_int64(st, 1);
        e->ts_ms = sql_col_int64(st, 2);
        e->kind = sql_col_dup(st, 3, &oom);
        e->actor = sql_col_dup(st, 4, &oom);
        e->body = sql_col_dup(st, 5, &oom);
        if (oom)
            goto nomem;
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "listing events");
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
    goto out;
nomem:
    farm_error_set("store: out of memory");
    rc = FARM_ENOMEM;
out:
    store_event_list_free(v, count);
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

const store_session_ops sql_session_ops = {
    .tx_find = tx_session_find,
    .tx_insert = tx_session_insert,
    .get = session_get,
    .list = session_list,
    .count_by_state = session_count_by_state,
    .tx_event_append = sql_tx_event_append,
    .tx_event_append_json = tx_event_append_json,
    .event_list = event_list,
};
