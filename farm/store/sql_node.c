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

const store_node_ops sql_node_ops = {
    .beat = node_beat,
    .remove = node_remove,
    .list = node_list,
};
