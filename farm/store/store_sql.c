/*
 * store_sql.c - the backend-neutral cursor (see store_sql.h): each call
 * hands over to the driver of the backend that made the statement or serves
 * the store, and the few helpers every area's SQL shares (the list limit,
 * the counting queries, reading a session row) written once over it.
 */
#include "store_sql.h"

#include "base/error.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const sql_driver *store_driver(const store *s)
{
    assert(s && s->be && s->be->sql);
    return s->be->sql;
}

sql_conn *sql_reader_get(store *s)
{
    return store_driver(s)->reader_get(s);
}

void sql_reader_put(store *s, sql_conn *c)
{
    store_driver(s)->reader_put(s, c);
}

int sql_prepare(sql_stmt **out, store *s, sql_conn *c, const char *sql)
{
    return store_driver(s)->prepare(out, s, c, sql);
}

void sql_finalize(sql_stmt *st)
{
    if (st)
        st->drv->finalize(st);
}

int sql_tx_stmt(sql_stmt **out, store_tx *tx, const char *sql)
{
    assert(tx && tx->be && tx->be->sql);
    return tx->be->sql->tx_stmt(out, tx, sql);
}

int sql_tx_notify(store_tx *tx, store_notify_kind kind, const char *payload)
{
    assert(tx && tx->be && tx->be->sql);
    return tx->be->sql->tx_notify ? tx->be->sql->tx_notify(tx, kind, payload) : 0;
}

int sql_tx_concurrent(store_tx *tx)
{
    assert(tx && tx->be && tx->be->sql);
    return tx->be->sql->concurrent;
}

int sql_tx_lock(store_tx *tx, int64_t key)
{
    assert(tx && tx->be && tx->be->sql);
    return tx->be->sql->tx_lock ? tx->be->sql->tx_lock(tx, key) : 0;
}

void sql_tx_stmt_done(store_tx *tx, sql_stmt *st)
{
    if (st)
        st->drv->tx_stmt_done(tx, st);
}

int sql_tx_prepare(sql_stmt **out, store_tx *tx, const char *sql)
{
    assert(tx && tx->be && tx->be->sql);
    return tx->be->sql->tx_prepare(out, tx, sql);
}

void sql_reset(sql_stmt *st)
{
    st->drv->reset(st);
}

int sql_step(sql_stmt *st)
{
    return st->drv->step(st);
}

void sql_bind_int64(sql_stmt *st, int i, int64_t v)
{
    st->drv->bind_int64(st, i, v);
}

void sql_bind_int(sql_stmt *st, int i, int v)
{
    st->drv->bind_int64(st, i, v);
}

void sql_bind_double(sql_stmt *st, int i, double v)
{
    st->drv->bind_double(st, i, v);
}

void sql_bind_text(sql_stmt *st, int i, const char *v)
{
    st->drv->bind_text(st, i, v);
}

void sql_bind_null(sql_stmt *st, int i)
{
    st->drv->bind_null(st, i);
}

void sql_bind_blob(sql_stmt *st, int i, const void *p, size_t n)
{
    st->drv->bind_blob(st, i, p, n);
}

int sql_col_null(sql_stmt *st, int col)
{
    return st->drv->col_null(st, col);
}

int64_t sql_col_int64(sql_stmt *st, int col)
{
    return st->drv->col_int64(st, col);
}

int sql_col_int(sql_stmt *st, int col)
{
    return (int)st->drv->col_int64(st, col);
}

double sql_col_double(sql_stmt *st, int col)
{
    return st->drv->col_double(st, col);
}

const char *sql_col_text(sql_stmt *st, int col)
{
    return st->drv->col_text(st, col);
}

const void *sql_col_blob(sql_stmt *st, int col, size_t *n)
{
    return st->drv->col_blob(st, col, n);
}

char *sql_col_dup(sql_stmt *st, int col, int *oom)
{
    const char *t = st->drv->col_text(st, col);
    char *copy;
    if (!t)
        return NULL;
    if (!(copy = strdup(t)))
        *oom = 1;
    return copy;
}

int64_t sql_changes(sql_stmt *st)
{
    return st->drv->changes(st);
}

int sql_err(sql_stmt *st, const char *what)
{
    if (!st) {
        farm_error_set("store: %s: no statement", what);
        return FARM_EIO;
    }
    return st->drv->err(st, what);
}

enum sql_failure sql_failure(sql_stmt *st)
{
    return st ? st->drv->failure(st) : SQL_FAIL_OTHER;
}

/* ---- helpers ------------------------------------------------------------- */

int sql_grow(void *pv, size_t *cap, size_t count, size_t size)
{
    void *v, *nv;
    size_t ncap;

    if (count < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 16;
    memcpy(&v, pv, sizeof(v));
    if (ncap > SIZE_MAX / size || !(nv = realloc(v, ncap * size))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    memcpy(pv, &nv, sizeof(nv));
    *cap = ncap;
    return 0;
}

int sql_limit(int limit)
{
    if (limit <= 0)
        return STORE_LIST_DEFAULT;
    return limit > STORE_LIST_MAX ? STORE_LIST_MAX : limit;
}

int sql_count_query(store_count **out, size_t *n, store *s, const char *sql, int nlabels)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    store_count *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step;

    *out = NULL;
    *n = 0;
    if ((rc = sql_prepare(&st, s, db, sql)))
        goto out;
    while ((step = sql_step(st)) == SQL_ROW) {
        if (count == STORE_LIST_MAX)
            break;
        if (sql_grow(&v, &cap, count, sizeof(*v)))
            goto nomem;
        store_count *c = &v[count];
        memset(c, 0, sizeof(*c));
        count++;
        for (int j = 0; j < nlabels; j++) {
            const char *t = sql_col_text(st, j);
            if (!(c->labels[j] = strdup(t ? t : "")))
                goto nomem;
        }
        c->n = sql_col_int64(st, nlabels);
    }
    if (step != SQL_ROW && step != SQL_DONE) {
        rc = sql_err(st, "counting");
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
    store_count_list_free(v, count);
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

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
    memset(s, 0, sizeof(*s));
}

int sql_session_read(store_session *s, sql_stmt *st)
{
    int oom = 0;
    memset(s, 0, sizeof(*s));
    s->id = sql_col_int64(st, 0);
    s->tracker = sql_col_dup(st, 1, &oom);
    s->repo = sql_col_dup(st, 2, &oom);
    s->number = sql_col_int64(st, 3);
    s->title = sql_col_dup(st, 4, &oom);
    s->url = sql_col_dup(st, 5, &oom);
    s->state = sql_col_dup(st, 6, &oom);
    s->branch = sql_col_dup(st, 7, &oom);
    s->pr_number = sql_col_int64(st, 8);
    s->pr_url = sql_col_dup(st, 9, &oom);
    s->runs = sql_col_int64(st, 10);
    s->agent_seconds = sql_col_double(st, 11);
    s->cost = sql_col_double(st, 12);
    s->last_seq = sql_col_int64(st, 13);
    s->created_ms = sql_col_int64(st, 14);
    s->updated_ms = sql_col_int64(st, 15);
    s->pr_draft = sql_col_int(st, 16) != 0;
    s->pr_draft_reason = sql_col_dup(st, 17, &oom);
    s->agent = sql_col_dup(st, 18, &oom);
    if (oom) {
        session_clear(s);
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}
