/*
 * store_inspect.c - the front of store_inspect.h: any SQL with JSON in and
 * out, handed to the store's backend through its inspect table
 * (store_backend.h; sqlite_inspect.c by default). The write of its own
 * (store_exec_json()) is built here from store_write() and
 * store_tx_exec_json(), whatever the backend.
 */
#include "store_backend.h"
#include "store_inspect.h"

#include <assert.h>

int store_query_json(json_t **rows, store *s, const char *sql, const json_t *params)
{
    assert(rows && s && sql);
    return s->be->inspect->query_json(rows, s, sql, params);
}

int store_tx_exec_json(int64_t *changes, store_tx *tx, const char *sql, const json_t *params)
{
    assert(tx && sql);
    return tx->be->inspect->tx_exec_json(changes, tx, sql, params);
}

typedef struct exec_args {
    const char *sql;
    const json_t *params;
    int64_t changes;
} exec_args;

static int exec_fn(store_tx *tx, void *arg)
{
    exec_args *a = arg;
    return store_tx_exec_json(&a->changes, tx, a->sql, a->params);
}

int store_exec_json(int64_t *changes, store *s, const char *sql, const json_t *params)
{
    exec_args a = {sql, params, 0};
    int rc;

    assert(s && sql);
    if ((rc = store_write(s, exec_fn, &a)))
        return rc;
    if (changes)
        *changes = a.changes;
    return 0;
}
