/*
 * sql_node.c - the node table: one row per farm process sharing the
 * store, kept fresh by its heartbeat (see store_node.h). Written once for
 * both backends (store_sql.h).
 */
#include "store_sql.h"
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
    sql_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc = sql_tx_stmt(&st, tx,
                         "INSERT INTO node (id, host, role, pid, slots, running, started_ms,"
                         " beat_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                         " ON CONFLICT (id) DO UPDATE SET slots = excluded.slots,"
                         " running = excluded.running, beat_ms = excluded.beat_ms");
    if (rc)
        return rc;
    sql_bind_text(st, 1, n->id);
    sql_bind_text(st, 2, n->host);
    sql_bind_text(st, 3, n->role);
    sql_bind_int64(st, 4, n->pid);
    sql_bind_int64(st, 5, n->slots);
    sql_bind_int64(st, 6, n->running);
    sql_bind_int64(st, 7, n->started_ms > 0 ? n->started_ms : now);
    sql_bind_int64(st, 8, now);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "recording a node's heartbeat");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int node_beat(store *s, const store_node *n)
{
    int rc = node_check(n);
    return rc ? rc : store_write(s, beat_fn, (void *)n);
}

static int remove_fn(store_tx *tx, void *arg)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx, "DELETE FROM node WHERE id = $1");
    if (rc)
        return rc;
    sql_bind_text(st, 1, arg);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "removing a node");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int node_remove(store *s, const char *id)
{
    return store_write(s, remove_fn, (void *)(id ? id : ""));
}

static int node_list(store_node **out, size_t *n, store *s)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    store_node *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT id, host, role, pid, slots, running, started_ms, beat_ms"
                     " FROM node ORDER BY beat_ms DESC, id LIMIT $1");
    if (rc)
        goto out;
    sql_bind_int(st, 1, STORE_LIST_MAX);
    while ((step = sql_step(st)) == SQL_ROW) {
        if (sql_grow(&v, &cap, count, sizeof(*v)))
            goto nomem;
        store_node *e = &v[count++];
        memset(e, 0, sizeof(*e));
        e->id = sql_col_dup(st, 0, &oom);
        e->host = sql_col_dup(st, 1, &oom);
        e->role = sql_col_dup(st, 2, &oom);
        e->pid = sql_col_int64(st, 3);
        e->slots = sql_col_int64(st, 4);
        e->running = sql_col_int64(st, 5);
        e->started_ms = sql_col_int64(st, 6);
        e->beat_ms = sql_col_int64(st, 7);
        if (oom)
            goto nomem;
    }
    if (step != SQL_DONE) {
        rc = sql_err(st, "listing nodes");
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
    sql_finalize(st);
    sql_reader_put(s, db);
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
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "SELECT at_ms FROM shared_pace WHERE key = $1"
                         " ORDER BY at_ms DESC LIMIT 1 OFFSET $2"),
        step;
    *at = 0;
    if (rc)
        return rc;
    sql_bind_text(st, 1, key);
    sql_bind_int64(st, 2, n - 1);
    if ((step = sql_step(st)) == SQL_ROW)
        *at = sql_col_int64(st, 0);
    else if (step != SQL_DONE)
        rc = sql_err(st, "reading a shared pace");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int pace_key_write(store_tx *tx, const char *sql, const char *key, int64_t at)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx, sql);
    if (rc)
        return rc;
    sql_bind_text(st, 1, key);
    sql_bind_int64(st, 2, at);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "writing a shared pace");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int pace_fn(store_tx *tx, void *arg)
{
    pace_args *a = arg;
    int64_t now = clock_wall_ms(), t = 0;
    int rc;

    a->wait = 0; /* a write may run twice */
    if ((rc = sql_tx_lock(tx, SQL_LOCK_PACE)))
        return rc;
    if ((rc = pace_key_write(tx, "DELETE FROM shared_pace WHERE key = $1 AND at_ms <= $2", a->key,
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
    return pace_key_write(tx, "INSERT INTO shared_pace (key, at_ms) VALUES ($1, $2)", a->key, now);
}

static int node_pace(int64_t *wait_ms, store *s, const char *key, int per_minute, int per_hour)
{
    pace_args a = {key, per_minute, per_hour, 0};
    int rc = store_write(s, pace_fn, &a);
    if (!rc)
        *wait_ms = a.wait;
    return rc;
}

static int node_block_get(int64_t *until_ms, store *s, const char *key)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    int rc = sql_prepare(&st, s, db, "SELECT until_ms FROM shared_state WHERE key = $1"), step;
    if (!rc) {
        sql_bind_text(st, 1, key);
        if ((step = sql_step(st)) == SQL_ROW)
            *until_ms = sql_col_int64(st, 0);
        else if (step != SQL_DONE)
            rc = sql_err(st, "reading a shared back-off");
    }
    sql_finalize(st);
    sql_reader_put(s, db);
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
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "INSERT INTO shared_state (key, owner, until_ms) VALUES ($1, '', $2)"
                         " ON CONFLICT (key) DO UPDATE SET until_ms ="
                         " CASE WHEN excluded.until_ms > shared_state.until_ms THEN "
                         "excluded.until_ms ELSE shared_state.until_ms END");
    if (rc)
        return rc;
    sql_bind_text(st, 1, a->key);
    sql_bind_int64(st, 2, a->until);
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "recording a shared back-off");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int node_block_set(store *s, const char *key, int64_t until_ms)
{
    state_args a = {key, "", until_ms, 0};
    return store_write(s, block_fn, &a);
}

static int claim_fn(store_tx *tx, void *arg)
{
    state_args *a = arg;
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx,
                         "INSERT INTO shared_state (key, owner, until_ms) VALUES ($1, $2, $3)"
                         " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
                         " until_ms = excluded.until_ms"
                         " WHERE shared_state.owner = excluded.owner"
                         " OR shared_state.until_ms < $4");
    a->won = 0;
    if (rc)
        return rc;
    sql_bind_text(st, 1, a->key);
    sql_bind_text(st, 2, a->owner);
    sql_bind_int64(st, 3, a->until);
    sql_bind_int64(st, 4, clock_wall_ms());
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "claiming a shared key");
    else
        a->won = sql_changes(st) > 0;
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int node_claim(int *won, store *s, const char *key, const char *owner, int64_t until_ms)
{
    state_args a = {key, owner, until_ms, 0};
    int rc = store_write(s, claim_fn, &a);
    if (!rc)
        *won = a.won;
    return rc;
}

const store_node_ops sql_node_ops = {
    .beat = node_beat,
    .remove = node_remove,
    .list = node_list,
    .pace = node_pace,
    .block_get = node_block_get,
    .block_set = node_block_set,
    .claim = node_claim,
};
