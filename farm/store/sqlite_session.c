/*
 * sqlite_session.c - sessions and their append-only event log.
 *
 * A session is one issue being worked on; the partial unique index
 * session_active keeps it to one active session per issue. Its log is the
 * event table, keyed (session_id, seq): the next seq is taken by bumping the
 * session's last_seq in the same transaction as the insert, so seqs are
 * dense from 1 and a concurrent backend (PostgreSQL) would serialise on the
 * session row instead of racing on MAX(seq).
 */
#include "sqlite_internal.h"

#include "base/clock.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_COLS SQLITE_SESSION_COLS

static void session_clear(store_session *s)
{
    free(s->tracker);
    free(s->repo);
    free(s->title);
    free(s->url);
    free(s->state);
    free(s->branch);
    free(s->pr_url);
    free(s->pr_draft_reason);
    free(s->agent);
}

int sqlite_session_read(store_session *s, sqlite3_stmt *st)
{
    int oom = 0;
    memset(s, 0, sizeof(*s));
    s->id = sqlite3_column_int64(st, 0);
    s->tracker = sqlite_col_text(st, 1, &oom);
    s->repo = sqlite_col_text(st, 2, &oom);
    s->number = sqlite3_column_int64(st, 3);
    s->title = sqlite_col_text(st, 4, &oom);
    s->url = sqlite_col_text(st, 5, &oom);
    s->state = sqlite_col_text(st, 6, &oom);
    s->branch = sqlite_col_text(st, 7, &oom);
    s->pr_number = sqlite3_column_int64(st, 8);
    s->pr_url = sqlite_col_text(st, 9, &oom);
    s->runs = sqlite3_column_int64(st, 10);
    s->agent_seconds = sqlite3_column_double(st, 11);
    s->cost = sqlite3_column_double(st, 12);
    s->last_seq = sqlite3_column_int64(st, 13);
    s->created_ms = sqlite3_column_int64(st, 14);
    s->updated_ms = sqlite3_column_int64(st, 15);
    s->pr_draft = sqlite3_column_int(st, 16) != 0;
    s->pr_draft_reason = sqlite_col_text(st, 17, &oom);
    s->agent = sqlite_col_text(st, 18, &oom);
    if (oom) {
        session_clear(s);
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

/* Step st for one session row into a new heap record. */
static int session_one(store_session **out, sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    store_session *s;
    int step = sqlite3_step(st), rc;

    if (step == SQLITE_DONE) {
        farm_error_set("store: %s: no such session", what);
        return FARM_ENOTFOUND;
    }
    if (step != SQLITE_ROW)
        return sqlite_err(db, what);
    if (!(s = malloc(sizeof(*s)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    if ((rc = sqlite_session_read(s, st))) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int tx_session_find(store_session **out, store_tx *tx, const char *tracker, const char *repo,
                           int64_t number, int by_pr, int active_only)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    if (!tracker || !repo || number <= 0) {
        farm_error_set("store: finding a session needs a tracker, a repository and a number");
        return FARM_EINVALID;
    }
    /* Active sessions sort first, then the newest. */
    rc = sqlite_tx_stmt(
        &st, tx,
        by_pr ? "SELECT " SESSION_COLS " FROM session"
                " WHERE tracker = ?1 AND repo = ?2 AND pr_number = ?3"
                " AND (?4 = 0 OR state NOT IN ('done', 'failed', 'cancelled'))"
                " ORDER BY state IN ('done', 'failed', 'cancelled'), id DESC LIMIT 1"
              : "SELECT " SESSION_COLS " FROM session"
                " WHERE tracker = ?1 AND repo = ?2 AND number = ?3"
                " AND (?4 = 0 OR state NOT IN ('done', 'failed', 'cancelled'))"
                " ORDER BY state IN ('done', 'failed', 'cancelled'), id DESC LIMIT 1");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, tracker, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, number);
    sqlite3_bind_int(st, 4, active_only ? 1 : 0);
    rc = session_one(out, sqlite_tx_db(tx), st, "finding a session");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int tx_session_insert(int64_t *out_id, store_tx *tx, const store_session *s)
{
    sqlite3_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc, step;

    *out_id = 0;
    if (!s->tracker || !s->repo || s->number <= 0) {
        farm_error_set("store: a session needs a tracker, a repository and an issue number");
        return FARM_EINVALID;
    }
    rc = sqlite_tx_stmt(&st, tx,
                        "INSERT INTO session (tracker, repo, number, title, url, state, created_ms,"
                        " updated_ms, agent) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, s->tracker, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->repo, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, s->number);
    sqlite3_bind_text(st, 4, s->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, s->url, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_int64(st, 7, now);
    sqlite3_bind_text(st, 8, s->agent, -1, SQLITE_STATIC);
    step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        *out_id = sqlite3_last_insert_rowid(sqlite_tx_db(tx));
    } else if (step == SQLITE_CONSTRAINT_UNIQUE) {
        farm_error_set("store: %s#%lld already has an active session", s->repo,
                       (long long)s->number);
        rc = FARM_EEXISTS;
    } else {
        rc = sqlite_err(sqlite_tx_db(tx), "creating a session");
    }
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int session_get(store_session **out, store *s, int64_t id)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    rc = sqlite_prepare(&st, db, "SELECT " SESSION_COLS " FROM session WHERE id = ?");
    if (!rc) {
        sqlite3_bind_int64(st, 1, id);
        rc = session_one(out, db, st, "reading a session");
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int session_list(store_session **out, size_t *n, store *s, const store_session_filter *f)
{
    static const store_session_filter none = STORE_SESSION_FILTER_INIT;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    store_session *v = NULL;
    size_t count = 0;
    int rc, step, limit;

    *out = NULL;
    *n = 0;
    if (!f)
        f = &none;
    limit = sqlite_limit(f->limit);
    db = sqlite_reader_get(s);
    rc = sqlite_prepare(&st, db,
                        "SELECT " SESSION_COLS " FROM session"
                        " WHERE (?1 IS NULL OR state = ?1)"
                        " AND (?2 IS NULL OR repo = ?2 COLLATE NOCASE)"
                        " AND (?3 IS NULL OR tracker = ?3)"
                        " AND updated_ms >= ?4 AND (?5 <= 0 OR id < ?5)"
                        " ORDER BY id DESC LIMIT ?6");
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, f->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, f->repo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, f->tracker, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, f->since_ms);
    sqlite3_bind_int64(st, 5, f->before_id);
    sqlite3_bind_int(st, 6, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v)))) {
        farm_error_set("store: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW && count < (size_t)limit) {
        if ((rc = sqlite_session_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing sessions");
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
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int session_count_by_state(store_count **out, size_t *n, store *s)
{
    return sqlite_count_query(
        out, n, s, "SELECT state, count(*) FROM session GROUP BY state ORDER BY state", 1);
}

/* ---- the event log ------------------------------------------------------ */

/* The kind and the body's size, checked before anything is written. */
static int event_check(const char *kind, const char *body_json)
{
    if (!kind || !*kind) {
        farm_error_set("store: an event needs a kind");
        return FARM_EINVALID;
    }
    if (strlen(body_json) > STORE_EVENT_BODY_MAX) {
        farm_error_set("store: event body over %u bytes", STORE_EVENT_BODY_MAX);
        return FARM_ETOOBIG;
    }
    return 0;
}

/* Take the next seq and insert the event; body_json is known to be JSON. */
static int event_insert(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                        const char *actor, const char *body_json)
{
    sqlite3_stmt *st = NULL;
    int64_t now = clock_wall_ms(), seq = 0;
    int rc;

    rc = sqlite_tx_stmt(&st, tx,
                        "UPDATE session SET last_seq = last_seq + 1, updated_ms = ?"
                        " WHERE id = ? RETURNING last_seq");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, session_id);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        seq = sqlite3_column_int64(st, 0);
        break;
    case SQLITE_DONE:
        farm_error_set("store: no session %lld to append to", (long long)session_id);
        rc = FARM_ENOTFOUND;
        break;
    default:
        rc = sqlite_err(sqlite_tx_db(tx), "taking the next event seq");
    }
    sqlite_tx_stmt_done(tx, st);
    st = NULL;
    if (rc)
        return rc;

    rc = sqlite_tx_stmt(&st, tx,
                        "INSERT INTO event (session_id, seq, ts_ms, kind, actor, body)"
                        " VALUES (?, ?, ?, ?, ?, ?)");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, body_json, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "appending an event");
    sqlite_tx_stmt_done(tx, st);
    if (!rc && out_seq)
        *out_seq = seq;
    return rc;
}

int sqlite_tx_event_append(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
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
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    store_event *v = NULL;
    size_t count = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    limit = sqlite_limit(limit);
    rc = sqlite_prepare(&st, db,
                        "SELECT session_id, seq, ts_ms, kind, actor, body FROM event"
                        " WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?");
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int(st, 3, limit);
    if (!(v = calloc((size_t)limit, sizeof(*v))))
        goto nomem;
    while ((step = sqlite3_step(st)) == SQLITE_ROW && count < (size_t)limit) {
        store_event *e = &v[count++];
        e->session_id = sqlite3_column_int64(st, 0);
        e->seq = sqlite3_column_int64(st, 1);
        e->ts_ms = sqlite3_column_int64(st, 2);
        e->kind = sqlite_col_text(st, 3, &oom);
        e->actor = sqlite_col_text(st, 4, &oom);
        e->body = sqlite_col_text(st, 5, &oom);
        if (oom)
            goto nomem;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing events");
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
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

const store_session_ops sqlite_session_ops = {
    .tx_find = tx_session_find,
    .tx_insert = tx_session_insert,
    .get = session_get,
    .list = session_list,
    .count_by_state = session_count_by_state,
    .tx_event_append = sqlite_tx_event_append,
    .tx_event_append_json = tx_event_append_json,
    .event_list = event_list,
};
