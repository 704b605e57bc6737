/*
 * sql_digest.c - the SQL behind the digest and the review queue: the
 * newest telling events of many sessions on one read connection, and a
 * window's totals. The event table's key is (session_id, seq), so "newest
 * first" walks one session's rows backwards from its end and stops after
 * per_session matches: a session with a long log costs the lines since its
 * last step, not its whole log. Written once for both backends
 * (store_sql.h).
 */
#include "store_sql.h"
#include "store_digest.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

static int digest_events(store_event **out, size_t *n, store *s, const int64_t *ids, size_t nids,
                         int per_session)
{
    sql_conn *db = NULL;
    sql_stmt *st = NULL;
    store_event *v = NULL;
    size_t count = 0, cap;
    int rc = 0, oom = 0;

    *out = NULL;
    *n = 0;
    if (nids > STORE_DIGEST_IDS_MAX || per_session < 1 || per_session > 64) {
        farm_error_set("store: digest events for at most %d sessions, 1 to 64 events each",
                       STORE_DIGEST_IDS_MAX);
        return FARM_EINVALID;
    }
    if (nids == 0)
        return 0;
    cap = nids * (size_t)per_session;
    if (!(v = calloc(cap, sizeof(*v)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    db = sql_reader_get(s);
    rc = sql_prepare(&st, s, db,
                     "SELECT session_id, seq, ts_ms, kind, actor, body FROM event"
                     " WHERE session_id = $1 AND kind IN ('step', 'test_result', 'run_started',"
                     " 'run_finished', 'pushed', 'failed', 'question', 'answer', 'plan')"
                     " ORDER BY seq DESC LIMIT $2");
    if (rc)
        goto out;
    for (size_t i = 0; i < nids; i++) {
        int step;
        sql_reset(st);
        sql_bind_int64(st, 1, ids[i]);
        sql_bind_int(st, 2, per_session);
        while ((step = sql_step(st)) == SQL_ROW && count < cap) {
            store_event *e = &v[count++];
            e->session_id = sql_col_int64(st, 0);
            e->seq = sql_col_int64(st, 1);
            e->ts_ms = sql_col_int64(st, 2);
            e->kind = sql_col_dup(st, 3, &oom);
            e->actor = sql_col_dup(st, 4, &oom);
            e->body = sql_col_dup(st, 5, &oom);
            if (oom) {
                farm_error_set("store: out of memory");
                rc = FARM_ENOMEM;
                goto out;
            }
        }
        if (step != SQL_ROW && step != SQL_DONE) {
            rc = sql_err(st, "reading digest events");
            goto out;
        }
    }
    if (count > 0) {
        *out = v;
        *n = count;
        v = NULL;
        count = 0;
    }
out:
    store_event_list_free(v, count);
    sql_finalize(st);
    if (db)
        sql_reader_put(s, db);
    return rc;
}

static int digest_totals_get(store_digest_totals *out, store *s, int64_t since_ms)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = sql_prepare(&st, s, db,
                     "SELECT COUNT(*), count(*) FILTER (WHERE state IN ('review', 'done')),"
                     " count(*) FILTER (WHERE state = 'failed'), COALESCE(SUM(runs), 0),"
                     " COALESCE(SUM(agent_seconds), 0), COALESCE(SUM(cost), 0)"
                     " FROM session WHERE updated_ms >= $1");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, since_ms);
    if (sql_step(st) != SQL_ROW) {
        rc = sql_err(st, "reading digest totals");
        goto out;
    }
    out->sessions = sql_col_int64(st, 0);
    out->prs = sql_col_int64(st, 1);
    out->failed = sql_col_int64(st, 2);
    out->runs = sql_col_int64(st, 3);
    out->agent_seconds = sql_col_double(st, 4);
    out->cost = sql_col_double(st, 5);
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

const store_digest_ops sql_digest_ops = {
    .events = digest_events,
    .totals_get = digest_totals_get,
};
