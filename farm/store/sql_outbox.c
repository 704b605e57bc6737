/*
 * sql_outbox.c - the outbox table: enqueueing, leasing, recording what
 * was sent (see store_outbox.h for the states and the lease rules).
 *
 * Leasing is one write: pick the due head entries, mark overtaken status
 * entries "superseded", and take the lease, all in the writer's
 * transaction, so two senders (threads or processes) never lease the same
 * entry. A cheap read first checks whether anything is due at all, so an
 * idle sender costs no fsync.
 */
#include "store_sql.h"
#include "store_outbox.h"
#include "store_sql.h"

#include "base/clock.h"
#include "base/error.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_COLS                                                                                 \
    "id, session_id, kind, idem_key, payload, state, attempts, next_try_ms, remote_id,"            \
    " last_error, lease_owner, lease_expires_ms, created_ms, updated_ms"

/* A pending entry that may be leased now (?1): due, unleased, and the
 * oldest pending entry of its session. */
#define DUE_HEAD                                                                                   \
    " FROM outbox o WHERE o.state = 'pending' AND o.next_try_ms <= $1"                             \
    " AND o.lease_expires_ms <= $1"                                                                \
    " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.session_id = o.session_id"                    \
    "   AND p.state = 'pending' AND p.id < o.id)"

static void entry_clear(outbox_entry *e)
{
    free(e->kind);
    free(e->key);
    free(e->payload);
    free(e->state);
    free(e->remote_id);
    free(e->last_error);
    free(e->lease_owner);
}

static int entry_read(outbox_entry *e, sql_stmt *st)
{
    int oom = 0;
    memset(e, 0, sizeof(*e));
    e->id = sql_col_int64(st, 0);
    e->session_id = sql_col_int64(st, 1);
    e->kind = sql_col_dup(st, 2, &oom);
    e->key = sql_col_dup(st, 3, &oom);
    e->payload = sql_col_dup(st, 4, &oom);
    e->state = sql_col_dup(st, 5, &oom);
    e->attempts = sql_col_int64(st, 6);
    e->next_try_ms = sql_col_int64(st, 7);
    e->remote_id = sql_col_dup(st, 8, &oom);
    e->last_error = sql_col_dup(st, 9, &oom);
    e->lease_owner = sql_col_dup(st, 10, &oom);
    e->lease_expires_ms = sql_col_int64(st, 11);
    e->created_ms = sql_col_int64(st, 12);
    e->updated_ms = sql_col_int64(st, 13);
    if (oom) {
        entry_clear(e);
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

/* Step st for one entry row into a new heap record. */
static int entry_one(outbox_entry **out, sql_stmt *st, const char *what)
{
    outbox_entry *e;
    int step = sql_step(st), rc;

    if (step == SQL_DONE) {
        farm_error_set("store: %s: no such outbox entry", what);
        return FARM_ENOTFOUND;
    }
    if (step != SQL_ROW)
        return sql_err(st, what);
    if (!(e = malloc(sizeof(*e)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    if ((rc = entry_read(e, st))) {
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* ---- enqueueing ---------------------------------------------------------- */

static int tx_outbox_insert(int *inserted, store_tx *tx, int64_t session_id, const char *kind,
                            const char *key, const char *payload_json)
{
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc;

    if (inserted)
        *inserted = 0;
    rc = sql_tx_prepare(&st, tx,
                        "INSERT INTO outbox (kind, session_id, idem_key, payload, state,"
                        " next_try_ms, created_ms, updated_ms)"
                        " VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)"
                        " ON CONFLICT (idem_key) DO NOTHING");
    if (rc)
        return rc;
    sql_bind_text(st, 1, kind);
    if (session_id > 0)
        sql_bind_int64(st, 2, session_id);
    else
        sql_bind_null(st, 2); /* a comment without a session (outbox.h) */
    sql_bind_text(st, 3, key);
    sql_bind_text(st, 4, payload_json ? payload_json : "{}");
    sql_bind_int64(st, 5, now);
    sql_bind_int64(st, 6, now);
    sql_bind_int64(st, 7, now);
    int added = 0;
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "enqueueing an outbox entry");
    else
        added = sql_changes(st) > 0;
    sql_finalize(st);
    if (!rc && inserted)
        *inserted = added;
    if (!rc && added) /* every node's sender looks */
        rc = sql_tx_notify(tx, STORE_NOTIFY_OUTBOX, "added");
    return rc;
}

static int tx_outbox_status_key(char *out, size_t n, store_tx *tx, int64_t session_id)
{
    sql_stmt *st = NULL;
    int64_t count = 0;
    int rc;

    rc = sql_tx_prepare(&st, tx,
                        "SELECT count(*) FROM outbox WHERE session_id = $1 AND kind = 'status'");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, session_id);
    if (sql_step(st) == SQL_ROW)
        count = sql_col_int64(st, 0);
    else
        rc = sql_err(st, "counting status entries");
    sql_finalize(st);
    if (rc)
        return rc;
    /* count + 1 is free unless an entry was deleted by hand; the caller's
     * insert would then be ignored as a duplicate, which only loses one
     * status edit, never duplicates a comment */
    if (count == 0)
        snprintf(out, n, "s%" PRId64 ":status", session_id);
    else
        snprintf(out, n, "s%" PRId64 ":status:%" PRId64, session_id, count + 1);
    return 0;
}

/* ---- leasing ------------------------------------------------------------- */

static int outbox_next_due(int64_t *out_ms, store *s)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out_ms = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT min(CASE WHEN o.next_try_ms > o.lease_expires_ms THEN o.next_try_ms "
                     "ELSE o.lease_expires_ms END) FROM outbox o"
                     " WHERE o.state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox p"
                     " WHERE p.session_id = o.session_id AND p.state = 'pending'"
                     " AND p.id < o.id)");
    if (!rc) {
        if (sql_step(st) == SQL_ROW)
            *out_ms = sql_col_int64(st, 0); /* NULL reads as 0: nothing pending */
        else
            rc = sql_err(st, "finding the next outbox entry due");
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

/* Is anything leasable now? A read, so an idle poll writes nothing. */
static int any_due(int *out, store *s, int64_t now)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out = 0;
    rc = sql_prepare(&st, s, db, "SELECT 1" DUE_HEAD " LIMIT 1");
    if (!rc) {
        sql_bind_int64(st, 1, now);
        int step = sql_step(st);
        if (step == SQL_ROW)
            *out = 1;
        else if (step != SQL_DONE)
            rc = sql_err(st, "looking for due outbox entries");
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

typedef struct lease_args {
    outbox_entry *entry;
    const char *owner;
    int64_t now, lease_ms;
} lease_args;

#define LEASE_SCAN 16 /* due heads looked at per lease */

static int lease_write(store_tx *tx, void *arg)
{
    lease_args *a = arg;
    sql_stmt *pick = NULL, *newer = NULL, *sup = NULL, *take = NULL;
    int64_t ids[LEASE_SCAN];
    int nids = 0, rc;

    outbox_entry_free(a->entry); /* a write run again starts afresh */
    a->entry = NULL;
    /* Superseding a status entry makes the session's next entry its head,
     * which may be due too: look again until a lease is taken or nothing
     * new turns up (bounded: each round retires at least one entry). */
    for (int round = 0; round < 64 && !a->entry; round++) {
        int superseded = 0;
        nids = 0;
        /* on PostgreSQL another node's lease in the making is not ours to
         * wait for; SQLite's one writer sees none */
        if ((rc =
                 sql_tx_prepare(&pick, tx,
                                sql_tx_concurrent(tx) ? "SELECT o.id, o.kind, o.session_id" DUE_HEAD
                                                        " ORDER BY o.next_try_ms, o.id LIMIT 16"
                                                        " FOR UPDATE OF o SKIP LOCKED"
                                                      : "SELECT o.id, o.kind, o.session_id" DUE_HEAD
                                                        " ORDER BY o.next_try_ms, o.id LIMIT 16")))
            goto out;
        sql_bind_int64(pick, 1, a->now);
        int step;
        while ((step = sql_step(pick)) == SQL_ROW && nids < LEASE_SCAN) {
            int64_t id = sql_col_int64(pick, 0);
            const char *kind = sql_col_text(pick, 1);
            int64_t sid = sql_col_int64(pick, 2);
            if (kind && strcmp(kind, OUTBOX_STATUS) == 0) {
                if (!newer &&
                    (rc = sql_tx_prepare(&newer, tx,
                                         "SELECT 1 FROM outbox n WHERE n.session_id = $1"
                                         " AND n.kind = 'status' AND n.state = 'pending'"
                                         " AND n.id > $2 AND NOT EXISTS (SELECT 1 FROM outbox m"
                                         " WHERE m.session_id = $1 AND m.state = 'pending'"
                                         " AND m.kind <> 'status' AND m.id > $2 AND m.id < n.id)"
                                         " LIMIT 1")))
                    goto out;
                sql_reset(newer);
                sql_bind_int64(newer, 1, sid);
                sql_bind_int64(newer, 2, id);
                int has_newer = sql_step(newer) == SQL_ROW;
                if (has_newer) {
                    if (!sup && (rc = sql_tx_prepare(&sup, tx,
                                                     "UPDATE outbox SET state = 'superseded',"
                                                     " lease_owner = NULL, updated_ms = $1"
                                                     " WHERE id = $2")))
                        goto out;
                    sql_reset(sup);
                    sql_bind_int64(sup, 1, a->now);
                    sql_bind_int64(sup, 2, id);
                    if (sql_step(sup) != SQL_DONE) {
                        rc = sql_err(sup, "superseding a status entry");
                        goto out;
                    }
                    superseded = 1;
                    continue;
                }
            }
            ids[nids++] = id;
            break; /* the oldest leasable one */
        }
        if (step != SQL_ROW && step != SQL_DONE) {
            rc = sql_err(pick, "picking due outbox entries");
            goto out;
        }
        sql_finalize(pick);
        pick = NULL;
        if (nids > 0) {
            if ((rc = sql_tx_prepare(
                     &take, tx,
                     "UPDATE outbox SET lease_owner = $1, lease_expires_ms = $2,"
                     " attempts = attempts + 1, updated_ms = $3"
                     " WHERE id = $4 AND state = 'pending' AND lease_expires_ms <= $3"
                     " RETURNING " ENTRY_COLS)))
                goto out;
            sql_bind_text(take, 1, a->owner);
            sql_bind_int64(take, 2, a->now + a->lease_ms);
            sql_bind_int64(take, 3, a->now);
            sql_bind_int64(take, 4, ids[0]);
            rc = entry_one(&a->entry, take, "leasing an outbox entry");
            if (rc == FARM_ENOTFOUND) /* leased meanwhile: the UPDATE re-checked the lease */
                rc = 0;
            goto out;
        }
        if (!superseded)
            break;
    }
    rc = 0; /* nothing leased (a->entry NULL), but keep what was superseded */
out:
    sql_finalize(pick);
    sql_finalize(newer);
    sql_finalize(sup);
    sql_finalize(take);
    return rc;
}

static int outbox_lease(outbox_entry **out, store *s, const char *owner, int64_t now_ms,
                        int64_t lease_ms)
{
    lease_args a = {NULL, owner, now_ms, lease_ms};
    int due = 0, rc;

    *out = NULL;
    if ((rc = any_due(&due, s, now_ms)))
        return rc;
    if (!due) {
        farm_error_set("store: no outbox entry is due");
        return FARM_ENOTFOUND;
    }
    if ((rc = store_write(s, lease_write, &a))) {
        outbox_entry_free(a.entry);
        return rc;
    }
    if (!a.entry) { /* another sender was quicker */
        farm_error_set("store: no outbox entry is due");
        return FARM_ENOTFOUND;
    }
    *out = a.entry;
    return 0;
}

/* ---- recording the outcome --------------------------------------------- */

typedef struct outcome_args {
    int64_t id;
    const char *owner; /* NULL: whoever holds the lease */
    const char *state; /* "sent", "failed", or NULL: stays pending (a retry) */
    const char *remote_id;
    const char *error;
    int64_t next_try_ms;
} outcome_args;

static int outcome_write(store_tx *tx, void *arg)
{
    outcome_args *a = arg;
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc = sql_tx_prepare(
        &st, tx,
        "UPDATE outbox SET state = coalesce($1, state), remote_id = coalesce($2, remote_id),"
        " last_error = coalesce($3, last_error), next_try_ms = CASE WHEN $1 IS NULL THEN $4"
        " ELSE next_try_ms END, lease_owner = NULL, lease_expires_ms = 0, updated_ms = $5"
        " WHERE id = $6 AND state = 'pending' AND ($7 IS NULL OR lease_owner = $7)");
    if (rc)
        return rc;
    sql_bind_text(st, 1, a->state);
    sql_bind_text(st, 2, a->remote_id);
    sql_bind_text(st, 3, a->error);
    sql_bind_int64(st, 4, a->next_try_ms);
    sql_bind_int64(st, 5, now);
    sql_bind_int64(st, 6, a->id);
    sql_bind_text(st, 7, a->owner);
    if (sql_step(st) != SQL_DONE) {
        rc = sql_err(st, "recording an outbox outcome");
    } else if (sql_changes(st) == 0) {
        if (a->owner) {
            farm_error_set("store: outbox entry %" PRId64 " is no longer leased by %s", a->id,
                           a->owner);
            rc = FARM_ECONFLICT;
        } else {
            farm_error_set("store: outbox entry %" PRId64 " is not pending", a->id);
            rc = FARM_ENOTFOUND;
        }
    }
    sql_finalize(st);
    return rc;
}

static int outbox_sent(store *s, int64_t id, const char *remote_id)
{
    outcome_args a = {id, NULL, "sent", remote_id, NULL, 0};
    return store_write(s, outcome_write, &a);
}

static int outbox_retry(store *s, int64_t id, const char *owner, int64_t next_try_ms,
                        const char *error)
{
    outcome_args a = {id, owner, NULL, NULL, error ? error : "", next_try_ms};
    return store_write(s, outcome_write, &a);
}

typedef struct fail_args {
    outcome_args o;
    int64_t seq;
} fail_args;

/* Failed, and the session's log says so (people watching the session see
 * that the tracker did not get something, and why). */
static int fail_write(store_tx *tx, void *arg)
{
    fail_args *a = arg;
    sql_stmt *st = NULL;
    int64_t sid = 0;
    char *kind = NULL, *key = NULL, *body = NULL;
    int rc, oom = 0;

    if ((rc = outcome_write(tx, &a->o)))
        return rc;
    if ((rc = sql_tx_prepare(&st, tx,
                             "SELECT session_id, kind, idem_key FROM outbox WHERE id = $1")))
        return rc;
    sql_bind_int64(st, 1, a->o.id);
    if (sql_step(st) == SQL_ROW) {
        sid = sql_col_int64(st, 0);
        kind = sql_col_dup(st, 1, &oom);
        key = sql_col_dup(st, 2, &oom);
    }
    sql_finalize(st);
    if (oom) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if (sid <= 0)
        goto out;
    json_t *j = json_pack("{s:s?, s:s?, s:s?}", "kind", kind, "key", key, "error", a->o.error);
    body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body) {
        /* an error text that is not UTF-8: the event without it */
        j = json_pack("{s:s?, s:s?}", "kind", kind, "key", key);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    if (!body) {
        rc = FARM_ENOMEM;
        goto out;
    }
    rc = sql_tx_event_append(&a->seq, tx, sid, "tracker_error", NULL, body);
out:
    if (rc == FARM_ENOMEM)
        farm_error_set("store: out of memory");
    free(kind);
    free(key);
    free(body);
    return rc;
}

static int outbox_skip(store *s, int64_t id, const char *owner, const char *why)
{
    outcome_args a = {id, owner, "skipped", NULL, why ? why : "", 0};
    return store_write(s, outcome_write, &a);
}

static int outbox_fail(int64_t *out_seq, store *s, int64_t id, const char *owner, const char *error)
{
    fail_args a = {{id, owner, "failed", NULL, error ? error : "", 0}, 0};
    int rc = store_write(s, fail_write, &a);
    if (out_seq)
        *out_seq = rc ? 0 : a.seq;
    return rc;
}

typedef struct pr_done_args {
    int64_t seq;
    int64_t id, session_id, pr_number;
    const char *pr_url, *state_after, *then_key, *then_payload, *status_payload;
} pr_done_args;

static int pr_done_write(store_tx *tx, void *arg)
{
    pr_done_args *a = arg;
    sql_stmt *st = NULL;
    char remote[32];
    char *body = NULL;
    int64_t now = clock_wall_ms();
    int rc;

    snprintf(remote, sizeof remote, "%" PRId64, a->pr_number);
    outcome_args o = {a->id, NULL, "sent", remote, NULL, 0};
    if ((rc = outcome_write(tx, &o)))
        return rc;
    rc = sql_tx_prepare(&st, tx,
                        "UPDATE session SET pr_number = $1, pr_url = $2,"
                        " state = CASE WHEN $3 IS NOT NULL AND state NOT IN ('done', 'failed',"
                        " 'cancelled') THEN $3 ELSE state END, updated_ms = $4 WHERE id = $5"
                        " RETURNING state = $3");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, a->pr_number);
    sql_bind_text(st, 2, a->pr_url);
    sql_bind_text(st, 3, a->state_after);
    sql_bind_int64(st, 4, now);
    sql_bind_int64(st, 5, a->session_id);
    int moved = 0;
    switch (sql_step(st)) {
    case SQL_ROW:
        moved = sql_col_int(st, 0) == 1; /* 't' */
        break;
    case SQL_DONE:
        farm_error_set("store: no session %" PRId64, a->session_id);
        rc = FARM_ENOTFOUND;
        break;
    default:
        rc = sql_err(st, "recording the session's pull request");
    }
    sql_finalize(st);
    if (rc)
        return rc;

    /* the session log says so */
    json_t *j = json_pack("{s:I, s:s?}", "number", (json_int_t)a->pr_number, "url", a->pr_url);
    body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body) {
        farm_error_set("store: out of memory (or a PR URL that is not UTF-8)");
        return FARM_ENOMEM;
    }
    rc = sql_tx_event_append(&a->seq, tx, a->session_id, "pr_opened", NULL, body);
    free(body);
    if (rc)
        return rc;
    if (a->then_key && a->then_payload &&
        (rc = tx_outbox_insert(NULL, tx, a->session_id, OUTBOX_COMMENT, a->then_key,
                               a->then_payload)))
        return rc;
    /* the status comment follows the state the session moved to */
    if (moved && a->status_payload) {
        char key[256];
        if ((rc = tx_outbox_status_key(key, sizeof key, tx, a->session_id)))
            return rc;
        rc = tx_outbox_insert(NULL, tx, a->session_id, OUTBOX_STATUS, key, a->status_payload);
    }
    return rc;
}

static int outbox_pr_done(int64_t *out_seq, store *s, int64_t id, int64_t session_id,
                          int64_t pr_number, const char *pr_url, const char *state_after,
                          const char *then_key, const char *then_payload,
                          const char *status_payload)
{
    pr_done_args a = {0,           id,       session_id,   pr_number,     pr_url,
                      state_after, then_key, then_payload, status_payload};
    int rc = store_write(s, pr_done_write, &a);
    if (out_seq)
        *out_seq = rc ? 0 : a.seq;
    return rc;
}

typedef struct release_args {
    int64_t count;
    const char *owner;
    int64_t not_before_ms;
} release_args;

static int release_write(store_tx *tx, void *arg)
{
    release_args *a = arg;
    sql_stmt *st = NULL;
    int rc = sql_tx_prepare(
        &st, tx,
        "UPDATE outbox SET lease_owner = NULL, lease_expires_ms = 0,"
        " next_try_ms = CASE WHEN next_try_ms > $3 THEN next_try_ms ELSE $3 END, updated_ms = $1"
        " WHERE state = 'pending' AND lease_owner = $2");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, clock_wall_ms());
    sql_bind_text(st, 2, a->owner);
    sql_bind_int64(st, 3, a->not_before_ms);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "releasing outbox leases");
    else
        a->count = sql_changes(st);
    sql_finalize(st);
    if (!rc && a->count > 0) /* another node's sender may take them */
        rc = sql_tx_notify(tx, STORE_NOTIFY_OUTBOX, "released");
    return rc;
}

static int outbox_release(int64_t *count, store *s, const char *owner, int64_t not_before_ms)
{
    release_args a = {0, owner, not_before_ms};
    int rc = store_write(s, release_write, &a);
    *count = rc ? 0 : a.count;
    return rc;
}

static int outbox_lease_owners(char ***out, size_t *n, store *s)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    char **v = NULL;
    size_t count = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT DISTINCT lease_owner FROM outbox WHERE state = 'pending'"
                     " AND lease_owner IS NOT NULL LIMIT 1000");
    if (rc)
        goto out;
    if (!(v = calloc(1001, sizeof(*v))))
        goto nomem;
    while ((step = sql_step(st)) == SQL_ROW && count < 1000) {
        if (!(v[count] = sql_col_dup(st, 0, &oom)) || oom)
            goto nomem;
        count++;
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "listing outbox leases");
        goto out;
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
    store_outbox_lease_owners_free(v, count);
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

/* ---- reads --------------------------------------------------------------- */

static int outbox_status_remote(char **out, store *s, int64_t session_id)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc, oom = 0;

    *out = NULL;
    rc = sql_prepare(&st, s, db,
                     "SELECT remote_id FROM outbox WHERE session_id = $1 AND kind = 'status'"
                     " AND state = 'sent' AND remote_id IS NOT NULL ORDER BY id DESC LIMIT 1");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, session_id);
    int step = sql_step(st);
    if (step == SQL_ROW) {
        *out = sql_col_dup(st, 0, &oom);
        if (oom) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
        }
    } else if (step != SQL_DONE) {
        rc = sql_err(st, "reading the status comment's id");
    }
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int get_where(outbox_entry **out, store *s, const char *sql, int64_t id, const char *key)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    *out = NULL;
    rc = sql_prepare(&st, s, db, sql);
    if (!rc) {
        if (key)
            sql_bind_text(st, 1, key);
        else
            sql_bind_int64(st, 1, id);
        rc = entry_one(out, st, "reading an outbox entry");
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int outbox_get(outbox_entry **out, store *s, int64_t id)
{
    return get_where(out, s, "SELECT " ENTRY_COLS " FROM outbox WHERE id = $1", id, NULL);
}

static int outbox_get_by_key(outbox_entry **out, store *s, const char *key)
{
    return get_where(out, s, "SELECT " ENTRY_COLS " FROM outbox WHERE idem_key = $1", 0, key);
}

static int outbox_list(outbox_entry **out, size_t *n, store *s, int64_t session_id)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    outbox_entry *v = NULL;
    size_t count = 0;
    int rc, step;

    *out = NULL;
    *n = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT " ENTRY_COLS " FROM outbox WHERE ($1 = 0 OR session_id = $1)"
                     " ORDER BY id LIMIT $2");
    if (rc)
        goto out;
    sql_bind_int64(st, 1, session_id);
    sql_bind_int(st, 2, STORE_LIST_MAX);
    while ((step = sql_step(st)) == SQL_ROW && count < STORE_LIST_MAX) {
        if (!v && !(v = calloc(STORE_LIST_MAX, sizeof(*v)))) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
            goto out;
        }
        if ((rc = entry_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "listing outbox entries");
        goto out;
    }
    *out = v;
    *n = count;
    v = NULL;
    count = 0;
out:
    outbox_entry_list_free(v, count);
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int outbox_stats_read(outbox_stats *out, store *s)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    /* retries: every attempt that failed and was (or will be) tried again */
    rc = sql_prepare(
        &st, s, db,
        "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'sent'),"
        " count(*) FILTER (WHERE state = 'failed'),"
        " coalesce(sum(CASE WHEN state = 'pending' AND lease_expires_ms <= $1"
        " THEN attempts WHEN attempts > 1 THEN attempts - 1 ELSE 0 END), 0) FROM outbox");
    if (!rc) {
        sql_bind_int64(st, 1, clock_wall_ms());
        if (sql_step(st) == SQL_ROW) {
            out->pending = sql_col_int64(st, 0);
            out->sent = sql_col_int64(st, 1);
            out->failed = sql_col_int64(st, 2);
            out->retries = sql_col_int64(st, 3);
        } else {
            rc = sql_err(st, "counting outbox entries");
        }
    }
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

const store_outbox_ops sql_outbox_ops = {
    .tx_insert = tx_outbox_insert,
    .tx_status_key = tx_outbox_status_key,
    .lease = outbox_lease,
    .next_due = outbox_next_due,
    .sent = outbox_sent,
    .pr_done = outbox_pr_done,
    .retry = outbox_retry,
    .skip = outbox_skip,
    .fail = outbox_fail,
    .lease_owners = outbox_lease_owners,
    .release = outbox_release,
    .status_remote = outbox_status_remote,
    .get = outbox_get,
    .get_by_key = outbox_get_by_key,
    .list = outbox_list,
    .stats = outbox_stats_read,
};
