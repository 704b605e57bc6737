/*
 * sqlite_node.c - the node table: one row per farm process sharing the
 * store, kept fresh by its heartbeat (see store_node.h).
 */
#include "sqlite_internal.h"
#include "store_node.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

#define NODE_TEXT_MAX 255

static int node_check(const store_node *n)
{
    if (!n || !n->id || !*n->id || !n->host || !n->role || strlen(n->id) > NODE_TEXT_MAX ||
        strlen(n->host) > NODE_TEXT_MAX || strlen(n->role) > NODE_TEXT_MAX) {
        farm_error_set("store: a node needs an id, a host and a role (at most %d bytes each)",
                       NODE_TEXT_MAX);
        return FARM_EINVALID;
    }
    return 0;
}

static int beat_fn(store_tx *tx, void *arg)
{
    const store_node *n = arg;
    sqlite3_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc = sqlite_tx_stmt(&st, tx,
                            "INSERT INTO node (id, host, role, pid, slots, running, started_ms,"
                            " beat_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                            " ON CONFLICT (id) DO UPDATE SET slots = excluded.slots,"
                            " running = excluded.running, beat_ms = excluded.beat_ms");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, n->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, n->host, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, n->role, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, n->pid);
    sqlite3_bind_int64(st, 5, n->slots);
    sqlite3_bind_int64(st, 6, n->running);
    sqlite3_bind_int64(st, 7, n->started_ms > 0 ? n->started_ms : now);
    sqlite3_bind_int64(st, 8, now);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "recording a node's heartbeat");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int node_beat(store *s, const store_node *n)
{
    int rc = node_check(n);
    return rc ? rc : sqlite_write(s, beat_fn, (void *)n);
}

static int remove_fn(store_tx *tx, void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx, "DELETE FROM node WHERE id = ?1");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "removing a node");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int node_remove(store *s, const char *id)
{
    return sqlite_write(s, remove_fn, (void *)(id ? id : ""));
}

static int node_list(store_node **out, size_t *n, store *s)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    store_node *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = sqlite_prepare(&st, db,
                        "SELECT id, host, role, pid, slots, running, started_ms, beat_ms"
                        " FROM node ORDER BY beat_ms DESC, id LIMIT ?1");
    if (rc)
        goto out;
    sqlite3_bind_int(st, 1, STORE_LIST_MAX);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            store_node *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv)
                goto nomem;
            v = nv;
            cap = ncap;
        }
        store_node *e = &v[count++];
        memset(e, 0, sizeof(*e));
        e->id = sqlite_col_text(st, 0, &oom);
        e->host = sqlite_col_text(st, 1, &oom);
        e->role = sqlite_col_text(st, 2, &oom);
        e->pid = sqlite3_column_int64(st, 3);
        e->slots = sqlite3_column_int64(st, 4);
        e->running = sqlite3_column_int64(st, 5);
        e->started_ms = sqlite3_column_int64(st, 6);
        e->beat_ms = sqlite3_column_int64(st, 7);
        if (oom)
            goto nomem;
    }
    if (step != SQLITE_DONE) {
        rc = sqlite_err(db, "listing nodes");
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
    store_node_list_free(v, count);
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

/* ---- state the nodes share (store_node.h) ------------------------------------ */

#define MINUTE_MS (60LL * 1000)
#define HOUR_MS   (3600LL * 1000)

typedef struct pace_args {
    const char *key;
    int per_minute, per_hour;
    int64_t wait; /* out */
} pace_args;

/* *at: the time of key's n-th latest place, or 0 when it has fewer. */
static int nth_latest(int64_t *at, store_tx *tx, const char *key, int n)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "SELECT at_ms FROM shared_pace WHERE key = ?1"
                            " ORDER BY at_ms DESC LIMIT 1 OFFSET ?2"),
        step;
    *at = 0;
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, n - 1);
    if ((step = sqlite3_step(st)) == SQLITE_ROW)
        *at = sqlite3_column_int64(st, 0);
    else if (step != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "reading a shared pace");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int pace_key_write(store_tx *tx, const char *sql, const char *key, int64_t at)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx, sql);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, at);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "writing a shared pace");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int pace_fn(store_tx *tx, void *arg)
{
    pace_args *a = arg;
    int64_t now = clock_wall_ms(), t = 0;
    int rc;

    a->wait = 0; /* a write may run twice */
    /* the store's one writer serialises this against every node */
    if ((rc = pace_key_write(tx, "DELETE FROM shared_pace WHERE key = ?1 AND at_ms <= ?2", a->key,
                             now - HOUR_MS)))
        return rc;
    if ((rc = nth_latest(&t, tx, a->key, a->per_minute)))
        return rc;
    if (t && t + MINUTE_MS - now > a->wait)
        a->wait = t + MINUTE_MS - now;
    if ((rc = nth_latest(&t, tx, a->key, a->per_hour)))
        return rc;
    if (t && t + HOUR_MS - now > a->wait)
        a->wait = t + HOUR_MS - now;
    if (a->wait > 0)
        return 0;
    return pace_key_write(tx, "INSERT INTO shared_pace (key, at_ms) VALUES (?1, ?2)", a->key, now);
}

static int node_pace(int64_t *wait_ms, store *s, const char *key, int per_minute, int per_hour)
{
    pace_args a = {key, per_minute, per_hour, 0};
    int rc = sqlite_write(s, pace_fn, &a);
    if (!rc)
        *wait_ms = a.wait;
    return rc;
}

static int node_block_get(int64_t *until_ms, store *s, const char *key)
{
    sqlite3 *db = sqlite_reader_get(s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, db, "SELECT until_ms FROM shared_state WHERE key = ?1"), step;
    if (!rc) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if ((step = sqlite3_step(st)) == SQLITE_ROW)
            *until_ms = sqlite3_column_int64(st, 0);
        else if (step != SQLITE_DONE)
            rc = sqlite_err(db, "reading a shared back-off");
    }
    sqlite3_finalize(st);
    sqlite_reader_put(s, db);
    return rc;
}

typedef struct state_args {
    const char *key;
    const char *owner;
    int64_t until;
    int won; /* out */
} state_args;

static int block_fn(store_tx *tx, void *arg)
{
    state_args *a = arg;
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "INSERT INTO shared_state (key, owner, until_ms) VALUES (?1, '', ?2)"
                            " ON CONFLICT (key) DO UPDATE SET until_ms ="
                            " max(shared_state.until_ms, excluded.until_ms)");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, a->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->until);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "recording a shared back-off");
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int node_block_set(store *s, const char *key, int64_t until_ms)
{
    state_args a = {key, "", until_ms, 0};
    return sqlite_write(s, block_fn, &a);
}

static int claim_fn(store_tx *tx, void *arg)
{
    state_args *a = arg;
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx,
                            "INSERT INTO shared_state (key, owner, until_ms) VALUES (?1, ?2, ?3)"
                            " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
                            " until_ms = excluded.until_ms"
                            " WHERE shared_state.owner = excluded.owner"
                            " OR shared_state.until_ms < ?4");
    a->won = 0;
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, a->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, a->until);
    sqlite3_bind_int64(st, 4, clock_wall_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), "claiming a shared key");
    else
        a->won = sqlite3_changes(sqlite_tx_db(tx)) > 0;
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

static int node_claim(int *won, store *s, const char *key, const char *owner, int64_t until_ms)
{
    state_args a = {key, owner, until_ms, 0};
    int rc = sqlite_write(s, claim_fn, &a);
    if (!rc)
        *won = a.won;
    return rc;
}

const store_node_ops sqlite_node_ops = {
    .beat = node_beat,
    .remove = node_remove,
    .list = node_list,
    .pace = node_pace,
    .block_get = node_block_get,
    .block_set = node_block_set,
    .claim = node_claim,
};
