/*
 * sqlite_outbox.c - the outbox table: enqueueing, leasing, recording what
 * was sent (see store_outbox.h for the states and the lease rules).
 *
 * Leasing is one write: pick the due head entries, mark overtaken status
 * entries "superseded", and take the lease, all in the writer's
 * transaction, so two senders (threads or processes) never lease the same
 * entry. A cheap read first checks whether anything is due at all, so an
 * idle sender costs no fsync.
 */
#include "sqlite_internal.h"
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
    " FROM outbox o WHERE o.state = 'pending' AND o.next_try_ms <= ?1"                             \
    " AND o.lease_expires_ms <= ?1"                                                                \
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

static int entry_read(outbox_entry *e, sqlite3_stmt *st)
{
    int oom = 0;
    memset(e, 0, sizeof(*e));
    e->id = sqlite3_column_int64(st, 0);
    e->session_id = sqlite3_column_int64(st, 1);
    e->kind = sqlite_col_text(st, 2, &oom);
    e->key = sqlite_col_text(st, 3, &oom);
    e->payload = sqlite_col_text(st, 4, &oom);
    e->state = sqlite_col_text(st, 5, &oom);
    e->attempts = sqlite3_column_int64(st, 6);
    e->next_try_ms = sqlite3_column_int64(st, 7);
    e->remote_id = sqlite_col_text(st, 8, &oom);
    e->last_error = sqlite_col_text(st, 9, &oom);
    e->lease_owner = sqlite_col_text(st, 10, &oom);
    e->lease_expires_ms = sqlite3_column_int64(st, 11);
    e->created_ms = sqlite3_column_int64(st, 12);
    e->updated_ms = sqlite3_column_int64(st, 13);
    if (oom) {
        entry_clear(e);
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

/* Step st for one entry row into a new heap record. */
static int entry_one(outbox_entry **out, sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    outbox_entry *e;
    int step = sqlite3_step(st), rc;

    if (step == SQLITE_DONE) {
        farm_error_set("store: %s: no such outbox entry", what);
        return FARM_ENOTFOUND;
    }
    if (step != SQLITE_ROW)
        return sqlite_err(db, what);
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
    sqlite3_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc;

    if (inserted)
        *inserted = 0;
    rc = sqlite_prepare(&st, sqlite_tx_db(tx),
                        "INSERT INTO outbox (kind, session_id, idem_key, payload, state,"
                        " next_try_ms, created_ms, updated_ms)"
                        " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)"
                        " ON CONFLICT (idem_key) DO NOTHING");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    if (session_id > 0)
        sqlite3_bind_int64(st, 2, session_id);
    else
        sqlite3_bind_null(st, 2); /* a comment without a session (outbox.h) */
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, payload_json ? payload_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_int64(st, 7, now);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "enqueueing an outbox entry");
    else if (inserted)
        *inserted = sqlite3_changes(sqlite_tx_db(tx)) > 0;
    sqlite3_finalize(st);
    return rc;
}

static int tx_outbox_status_key(char *out, size_t n, store_tx *tx, int64_t session_id)
{
    sqlite3_stmt *st = NULL;
    int64_t count = 0;
    int rc;

    rc = sqlite_prepare(&st, sqlite_tx_db(tx),
                        "SELECT count(*) FROM outbox WHERE session_id = ? AND kind = 'status'");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, session_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        count = sqlite3_column_int64(st, 0);
    else
        rc = sqlite_err(sqlite_tx_db(tx), "counting status entries");
    sqlite3_finalize(st);
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
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *out_ms = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT min(max(o.next_try_ms, o.lease_expires_ms)) FROM outbox o"
                        " WHERE o.state = 'pending' AND NOT EXISTS (SELECT 1 FROM outbox p"
                        " WHERE p.session_id = o.session_id AND p.state = 'pending'"
                        " AND p.id < o.id)");
    if (!rc) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *out_ms = sqlite3_column_int64(st, 0); /* NULL reads as 0: nothing pending */
        else
            rc = sqlite_err(db, "finding the next outbox entry due");
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

/* Is anything leasable now? A read, so an idle poll writes nothing. */
static int any_due(int *out, store *s, int64_t now)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *out = 0;
    rc = sqlite_prepare(&st, db, "SELECT 1" DUE_HEAD " LIMIT 1");
    if (!rc) {
        sqlite3_bind_int64(st, 1, now);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            *out = 1;
        else if (step != SQLITE_DONE)
            rc = sqlite_err(db, "looking for due outbox entries");
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
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
    sqlite3_stmt *pick = NULL, *newer = NULL, *sup = NULL, *take = NULL;
    int64_t ids[LEASE_SCAN];
    int nids = 0, rc;

    /* Superseding a status entry makes the session's next entry its head,
     * which may be due too: look again until a lease is taken or nothing
     * new turns up (bounded: each round retires at least one entry). */
    for (int round = 0; round < 64 && !a->entry; round++) {
        int superseded = 0;
        nids = 0;
        if ((rc = sqlite_prepare(&pick, sqlite_tx_db(tx),
                                 "SELECT o.id, o.kind, o.session_id" DUE_HEAD
                                 " ORDER BY o.next_try_ms, o.id LIMIT 16")))
            goto out;
        sqlite3_bind_int64(pick, 1, a->now);
        int step;
        while ((step = sqlite3_step(pick)) == SQLITE_ROW && nids < LEASE_SCAN) {
            int64_t id = sqlite3_column_int64(pick, 0);
            const char *kind = (const char *)sqlite3_column_text(pick, 1);
            int64_t sid = sqlite3_column_int64(pick, 2);
            if (kind && strcmp(kind, OUTBOX_STATUS) == 0) {
                if (!newer &&
                    (rc = sqlite_prepare(&newer, sqlite_tx_db(tx),
                                         "SELECT 1 FROM outbox n WHERE n.session_id = ?1"
                                         " AND n.kind = 'status' AND n.state = 'pending'"
                                         " AND n.id > ?2 AND NOT EXISTS (SELECT 1 FROM outbox m"
                                         " WHERE m.session_id = ?1 AND m.state = 'pending'"
                                         " AND m.kind <> 'status' AND m.id > ?2 AND m.id < n.id)"
                                         " LIMIT 1")))
                    goto out;
                sqlite3_reset(newer);
                sqlite3_bind_int64(newer, 1, sid);
                sqlite3_bind_int64(newer, 2, id);
                int has_newer = sqlite3_step(newer) == SQLITE_ROW;
                if (has_newer) {
                    if (!sup && (rc = sqlite_prepare(&sup, sqlite_tx_db(tx),
                                                     "UPDATE outbox SET state = 'superseded',"
                                                     " lease_owner = NULL, updated_ms = ?"
                                                     " WHERE id = ?")))
                        goto out;
                    sqlite3_reset(sup);
                    sqlite3_bind_int64(sup, 1, a->now);
                    sqlite3_bind_int64(sup, 2, id);
                    if (sqlite3_step(sup) != SQLITE_DONE) {
                        rc = sqlite_err(sqlite_tx_db(tx), "superseding a status entry");
                        goto out;
                    }
                    superseded = 1;
                    continue;
                }
            }
            ids[nids++] = id;
            break; /* the oldest leasable one */
        }
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = sqlite_err(sqlite_tx_db(tx), "picking due outbox entries");
            goto out;
        }
        sqlite3_finalize(pick);
        pick = NULL;
        if (nids > 0) {
            if ((rc =
                     sqlite_prepare(&take, sqlite_tx_db(tx),
                                    "UPDATE outbox SET lease_owner = ?, lease_expires_ms = ?,"
                                    " attempts = attempts + 1, updated_ms = ?"
                                    " WHERE id = ? AND state = 'pending' AND lease_expires_ms <= ?3"
                                    " RETURNING " ENTRY_COLS)))
                goto out;
            sqlite3_bind_text(take, 1, a->owner, -1, SQLITE_STATIC);
            sqlite3_bind_int64(take, 2, a->now + a->lease_ms);
            sqlite3_bind_int64(take, 3, a->now);
            sqlite3_bind_int64(take, 4, ids[0]);
            rc = entry_one(&a->entry, sqlite_tx_db(tx), take, "leasing an outbox entry");
            goto out;
        }
        if (!superseded)
            break;
    }
    rc = 0; /* nothing leased (a->entry NULL), but keep what was superseded */
out:
    sqlite3_finalize(pick);
    sqlite3_finalize(newer);
    sqlite3_finalize(sup);
    sqlite3_finalize(take);
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
    if ((rc = sqlite_write(s, lease_write, &a))) {
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
    sqlite3_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc = sqlite_prepare(
        &st, sqlite_tx_db(tx),
        "UPDATE outbox SET state = coalesce(?1, state), remote_id = coalesce(?2, remote_id),"
        " last_error = coalesce(?3, last_error), next_try_ms = CASE WHEN ?1 IS NULL THEN ?4"
        " ELSE next_try_ms END, lease_owner = NULL, lease_expires_ms = 0, updated_ms = ?5"
        " WHERE id = ?6 AND state = 'pending' AND (?7 IS NULL OR lease_owner = ?7)");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, a->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->remote_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, a->next_try_ms);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int64(st, 6, a->id);
    sqlite3_bind_text(st, 7, a->owner, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sqlite_err(sqlite_tx_db(tx), "recording an outbox outcome");
    } else if (sqlite3_changes(sqlite_tx_db(tx)) == 0) {
        if (a->owner) {
            farm_error_set("store: outbox entry %" PRId64 " is no longer leased by %s", a->id,
                           a->owner);
            rc = FARM_ECONFLICT;
        } else {
            farm_error_set("store: outbox entry %" PRId64 " is not pending", a->id);
            rc = FARM_ENOTFOUND;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int outbox_sent(store *s, int64_t id, const char *remote_id)
{
    outcome_args a = {id, NULL, "sent", remote_id, NULL, 0};
    return sqlite_write(s, outcome_write, &a);
}

static int outbox_retry(store *s, int64_t id, const char *owner, int64_t next_try_ms,
                        const char *error)
{
    outcome_args a = {id, owner, NULL, NULL, error ? error : "", next_try_ms};
    return sqlite_write(s, outcome_write, &a);
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
    sqlite3_stmt *st = NULL;
    int64_t sid = 0;
    char *kind = NULL, *key = NULL, *body = NULL;
    int rc, oom = 0;

    if ((rc = outcome_write(tx, &a->o)))
        return rc;
    if ((rc = sqlite_prepare(&st, sqlite_tx_db(tx),
                             "SELECT session_id, kind, idem_key FROM outbox WHERE id = ?")))
        return rc;
    sqlite3_bind_int64(st, 1, a->o.id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        sid = sqlite3_column_int64(st, 0);
        kind = sqlite_col_text(st, 1, &oom);
        key = sqlite_col_text(st, 2, &oom);
    }
    sqlite3_finalize(st);
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
    return sqlite_write(s, outcome_write, &a);
}

static int outbox_fail(int64_t *out_seq, store *s, int64_t id, const char *owner, const char *error)
{
    fail_args a = {{id, owner, "failed", NULL, error ? error : "", 0}, 0};
    int rc = sqlite_write(s, fail_write, &a);
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
    sqlite3_stmt *st = NULL;
    char remote[32];
    char *body = NULL;
    int64_t now = clock_wall_ms();
    int rc;

    snprintf(remote, sizeof remote, "%" PRId64, a->pr_number);
    outcome_args o = {a->id, NULL, "sent", remote, NULL, 0};
    if ((rc = outcome_write(tx, &o)))
        return rc;
    rc = sqlite_prepare(&st, sqlite_tx_db(tx),
                        "UPDATE session SET pr_number = ?1, pr_url = ?2,"
                        " state = CASE WHEN ?3 IS NOT NULL AND state NOT IN ('done', 'failed',"
                        " 'cancelled') THEN ?3 ELSE state END, updated_ms = ?4 WHERE id = ?5"
                        " RETURNING state = ?3");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, a->pr_number);
    sqlite3_bind_text(st, 2, a->pr_url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->state_after, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, a->session_id);
    int moved = 0;
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        moved = sqlite3_column_int(st, 0) == 1;
        break;
    case SQLITE_DONE:
        farm_error_set("store: no session %" PRId64, a->session_id);
        rc = FARM_ENOTFOUND;
        break;
    default:
        rc = sqlite_err(sqlite_tx_db(tx), "recording the session's pull request");
    }
    sqlite3_finalize(st);
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
    int rc = sqlite_write(s, pr_done_write, &a);
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
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, sqlite_tx_db(tx),
                            "UPDATE outbox SET lease_owner = NULL, lease_expires_ms = 0,"
                            " next_try_ms = max(next_try_ms, ?3), updated_ms = ?1"
                            " WHERE state = 'pending' AND lease_owner = ?2");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, clock_wall_ms());
    sqlite3_bind_text(st, 2, a->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, a->not_before_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "releasing outbox leases");
    else
        a->count = sqlite3_changes(sqlite_tx_db(tx));
    sqlite3_finalize(st);
    return rc;
}

static int outbox_release(int64_t *count, store *s, const char *owner, int64_t not_before_ms)
{
    release_args a = {0, owner, not_before_ms};
    int rc = sqlite_write(s, release_write, &a);
    *count = rc ? 0 : a.count;
    return rc;
}

static int outbox_lease_owners(char ***out, size_t *n, store *s)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    char **v = NULL;
    size_t count = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT DISTINCT lease_owner FROM outbox WHERE state = 'pending'"
                        " AND lease_owner IS NOT NULL LIMIT 1000");
    if (rc)
        goto out;
    if (!(v = calloc(1001, sizeof(*v))))
        goto nomem;
    while ((step = sqlite3_step(st)) == SQLITE_ROW && count < 1000) {
        if (!(v[count] = sqlite_col_text(st, 0, &oom)) || oom)
            goto nomem;
        count++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing outbox leases");
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
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

/* ---- reads --------------------------------------------------------------- */

static int outbox_status_remote(char **out, store *s, int64_t session_id)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc, oom = 0;

    *out = NULL;
    rc = sqlite_prepare(&st, db,
                        "SELECT remote_id FROM outbox WHERE session_id = ? AND kind = 'status'"
                        " AND state = 'sent' AND remote_id IS NOT NULL ORDER BY id DESC LIMIT 1");
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, session_id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *out = sqlite_col_text(st, 0, &oom);
        if (oom) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
        }
    } else if (step != SQLITE_DONE) {
        rc = sqlite_err(db, "reading the status comment's id");
    }
out:
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int get_where(outbox_entry **out, store *s, const char *sql, int64_t id, const char *key)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    rc = sqlite_prepare(&st, db, sql);
    if (!rc) {
        if (key)
            sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, 1, id);
        rc = entry_one(out, db, st, "reading an outbox entry");
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int outbox_get(outbox_entry **out, store *s, int64_t id)
{
    return get_where(out, s, "SELECT " ENTRY_COLS " FROM outbox WHERE id = ?", id, NULL);
}

static int outbox_get_by_key(outbox_entry **out, store *s, const char *key)
{
    return get_where(out, s, "SELECT " ENTRY_COLS " FROM outbox WHERE idem_key = ?", 0, key);
}

static int outbox_list(outbox_entry **out, size_t *n, store *s, int64_t session_id)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    outbox_entry *v = NULL;
    size_t count = 0;
    int rc, step;

    *out = NULL;
    *n = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT " ENTRY_COLS " FROM outbox WHERE (?1 = 0 OR session_id = ?1)"
                        " ORDER BY id LIMIT ?2");
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, session_id);
    sqlite3_bind_int(st, 2, STORE_LIST_MAX);
    while ((step = sqlite3_step(st)) == SQLITE_ROW && count < STORE_LIST_MAX) {
        if (!v && !(v = calloc(STORE_LIST_MAX, sizeof(*v)))) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
            goto out;
        }
        if ((rc = entry_read(&v[count], st)))
            goto out;
        count++;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing outbox entries");
        goto out;
    }
    *out = v;
    *n = count;
    v = NULL;
    count = 0;
out:
    outbox_entry_list_free(v, count);
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

static int outbox_stats_read(outbox_stats *out, store *s)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    /* retries: every attempt that failed and was (or will be) tried again */
    rc = sqlite_prepare(
        &st, db,
        "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'sent'), 0),"
        " coalesce(sum(state = 'failed'), 0),"
        " coalesce(sum(CASE WHEN state = 'pending' AND lease_expires_ms <= ?1"
        " THEN attempts ELSE max(attempts - 1, 0) END), 0) FROM outbox");
    if (!rc) {
        sqlite3_bind_int64(st, 1, clock_wall_ms());
        if (sqlite3_step(st) == SQLITE_ROW) {
            out->pending = sqlite3_column_int64(st, 0);
            out->sent = sqlite3_column_int64(st, 1);
            out->failed = sqlite3_column_int64(st, 2);
            out->retries = sqlite3_column_int64(st, 3);
        } else {
            rc = sqlite_err(db, "counting outbox entries");
        }
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

const store_outbox_ops sqlite_outbox_ops = {
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
