/*
 * pg_node.c - the node table (PostgreSQL; see sqlite_node.c): one row per farm process sharing the
 * store, kept fresh by its heartbeat (see store_node.h).
 */
#include "pg_internal.h"
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
    pg_stmt *st = NULL;
    int64_t now = clock_wall_ms();
    int rc = pg_tx_stmt(&st, tx,
                        "INSERT INTO node (id, host, role, pid, slots, running, started_ms,"
                        " beat_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                        " ON CONFLICT (id) DO UPDATE SET slots = excluded.slots,"
                        " running = excluded.running, beat_ms = excluded.beat_ms");
    if (rc)
        return rc;
    pg_bind_text(st, 1, n->id);
    pg_bind_text(st, 2, n->host);
    pg_bind_text(st, 3, n->role);
    pg_bind_int64(st, 4, n->pid);
    pg_bind_int64(st, 5, n->slots);
    pg_bind_int64(st, 6, n->running);
    pg_bind_int64(st, 7, n->started_ms > 0 ? n->started_ms : now);
    pg_bind_int64(st, 8, now);
    if (pg_step(st) != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "recording a node's heartbeat");
    pg_tx_stmt_done(tx, st);
    return rc;
}

static int node_beat(store *s, const store_node *n)
{
    int rc = node_check(n);
    return rc ? rc : pg_write(s, beat_fn, (void *)n);
}

static int remove_fn(store_tx *tx, void *arg)
{
    pg_stmt *st = NULL;
    int rc = pg_tx_stmt(&st, tx, "DELETE FROM node WHERE id = $1");
    if (rc)
        return rc;
    pg_bind_text(st, 1, arg);
    if (pg_step(st) != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "removing a node");
    pg_tx_stmt_done(tx, st);
    return rc;
}

static int node_remove(store *s, const char *id)
{
    return pg_write(s, remove_fn, (void *)(id ? id : ""));
}

static int node_list(store_node **out, size_t *n, store *s)
{
    pg_conn *db = pg_reader_get(s);
    pg_stmt *st = NULL;
    store_node *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = pg_prepare(&st, db,
                    "SELECT id, host, role, pid, slots, running, started_ms, beat_ms"
                    " FROM node ORDER BY beat_ms DESC, id LIMIT $1");
    if (rc)
        goto out;
    pg_bind_int(st, 1, STORE_LIST_MAX);
    while ((step = pg_step(st)) == PG_ROW) {
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
        e->id = pg_col_dup(st, 0, &oom);
        e->host = pg_col_dup(st, 1, &oom);
        e->role = pg_col_dup(st, 2, &oom);
        e->pid = pg_col_int64(st, 3);
        e->slots = pg_col_int64(st, 4);
        e->running = pg_col_int64(st, 5);
        e->started_ms = pg_col_int64(st, 6);
        e->beat_ms = pg_col_int64(st, 7);
        if (oom)
            goto nomem;
    }
    if (step != PG_DONE) {
        rc = pg_err(db, "listing nodes");
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
    pg_finalize(st);
    pg_reader_put(s, db);
    return rc;
}

const store_node_ops pg_node_ops = {
    .beat = node_beat,
    .remove = node_remove,
    .list = node_list,
};
