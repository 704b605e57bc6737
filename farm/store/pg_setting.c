/*
 * pg_setting.c - the `setting` table: runtime settings changed through
 * the admin API (the scaling limits), which override the config file and
 * survive a restart. Keys are dotted names ("scaling.max_agents"); values
 * are text, interpreted by whoever owns the key (scaling.c).
 */
#include "pg_internal.h"
#include "store_job.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

#define SETTING_KEY_MAX   128
#define SETTING_VALUE_MAX 4096

static int setting_list(store_setting **out, size_t *n, store *s, const char *prefix)
{
    pg_conn *db = pg_reader_get(s);
    pg_stmt *st = NULL;
    store_setting *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = pg_prepare(&st, db,
                    "SELECT key, value, updated_ms FROM setting"
                    " WHERE substr(key, 1, length($1)) = $1 ORDER BY key LIMIT $2");
    if (rc)
        goto out;
    pg_bind_text(st, 1, prefix ? prefix : "");
    pg_bind_int(st, 2, STORE_LIST_MAX);
    while ((step = pg_step(st)) == PG_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            store_setting *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv)
                goto nomem;
            v = nv;
            cap = ncap;
        }
        store_setting *e = &v[count++];
        e->key = pg_col_dup(st, 0, &oom);
        e->value = pg_col_dup(st, 1, &oom);
        e->updated_ms = pg_col_int64(st, 2);
        if (oom)
            goto nomem;
    }
    if (step != PG_DONE) {
        rc = pg_err(db, "reading settings");
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
    store_setting_list_free(v, count);
    pg_finalize(st);
    pg_reader_put(s, db);
    return rc;
}

static int tx_setting_set(store_tx *tx, const char *key, const char *value)
{
    pg_stmt *st = NULL;
    int rc;

    if (!key || !*key || strlen(key) > SETTING_KEY_MAX || !value ||
        strlen(value) > SETTING_VALUE_MAX) {
        farm_error_set("store: a setting needs a key (at most %d bytes) and a value (at most %d)",
                       SETTING_KEY_MAX, SETTING_VALUE_MAX);
        return FARM_EINVALID;
    }
    rc = pg_tx_stmt(&st, tx,
                    "INSERT INTO setting (key, value, updated_ms) VALUES ($1, $2, $3)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                    " updated_ms = excluded.updated_ms");
    if (rc)
        return rc;
    pg_bind_text(st, 1, key);
    pg_bind_text(st, 2, value);
    pg_bind_int64(st, 3, clock_wall_ms());
    if (pg_step(st) != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "writing a setting");
    pg_tx_stmt_done(tx, st);
    return rc;
}

static int tx_setting_delete(store_tx *tx, const char *key)
{
    pg_stmt *st = NULL;
    int rc = pg_tx_stmt(&st, tx, "DELETE FROM setting WHERE key = $1");
    if (rc)
        return rc;
    pg_bind_text(st, 1, key ? key : "");
    if (pg_step(st) != PG_DONE)
        rc = pg_err(pg_tx_db(tx), "removing a setting");
    pg_tx_stmt_done(tx, st);
    return rc;
}

static int tx_setting_get(char **out, store_tx *tx, const char *key)
{
    pg_stmt *st = NULL;
    int rc, step, oom = 0;

    *out = NULL;
    if ((rc = pg_tx_stmt(&st, tx, "SELECT value FROM setting WHERE key = $1")))
        return rc;
    pg_bind_text(st, 1, key ? key : "");
    step = pg_step(st);
    if (step == PG_ROW) {
        *out = pg_col_dup(st, 0, &oom);
        if (oom) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
        }
    } else if (step == PG_DONE) {
        farm_error_set("store: no setting %s", key ? key : "");
        rc = FARM_ENOTFOUND;
    } else {
        rc = pg_err(pg_tx_db(tx), "reading a setting");
    }
    pg_tx_stmt_done(tx, st);
    return rc;
}

const store_setting_ops pg_setting_ops = {
    .list = setting_list,
    .tx_set = tx_setting_set,
    .tx_get = tx_setting_get,
    .tx_delete = tx_setting_delete,
};
