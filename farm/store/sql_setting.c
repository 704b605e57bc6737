/*
 * sql_setting.c - the `setting` table: runtime settings changed through
 * the admin API (the scaling limits), which override the config file and
 * survive a restart. Keys are dotted names ("scaling.max_agents"); values
 * are text, interpreted by whoever owns the key (scaling.c). Written once
 * for both backends (store_sql.h).
 */
#include "store_sql.h"
#include "store_job.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

#define SETTING_KEY_MAX   128
#define SETTING_VALUE_MAX 4096

static int setting_list(store_setting **out, size_t *n, store *s, const char *prefix)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    store_setting *v = NULL;
    size_t count = 0, cap = 0;
    int rc, step, oom = 0;

    *out = NULL;
    *n = 0;
    rc = sql_prepare(&st, s, db,
                     "SELECT key, value, updated_ms FROM setting"
                     " WHERE substr(key, 1, length($1)) = $1 ORDER BY key LIMIT $2");
    if (rc)
        goto out;
    sql_bind_text(st, 1, prefix ? prefix : "");
    sql_bind_int(st, 2, STORE_LIST_MAX);
    while ((step = sql_step(st)) == SQL_ROW) {
        if (sql_grow(&v, &cap, count, sizeof(*v)))
            goto nomem;
        store_setting *e = &v[count++];
        e->key = sql_col_dup(st, 0, &oom);
        e->value = sql_col_dup(st, 1, &oom);
        e->updated_ms = sql_col_int64(st, 2);
        if (oom)
            goto nomem;
    }
    if (step != SQL_DONE) {
        rc = sql_err(st, "reading settings");
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
    sql_finalize(st);
    sql_reader_put(s, db);
    return rc;
}

static int tx_setting_set(store_tx *tx, const char *key, const char *value)
{
    sql_stmt *st = NULL;
    int rc;

    if (!key || !*key || strlen(key) > SETTING_KEY_MAX || !value ||
        strlen(value) > SETTING_VALUE_MAX) {
        farm_error_set("store: a setting needs a key (at most %d bytes) and a value (at most %d)",
                       SETTING_KEY_MAX, SETTING_VALUE_MAX);
        return FARM_EINVALID;
    }
    rc = sql_tx_stmt(&st, tx,
                     "INSERT INTO setting (key, value, updated_ms) VALUES ($1, $2, $3)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                     " updated_ms = excluded.updated_ms");
    if (rc)
        return rc;
    sql_bind_text(st, 1, key);
    sql_bind_text(st, 2, value);
    sql_bind_int64(st, 3, clock_wall_ms());
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "writing a setting");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_setting_delete(store_tx *tx, const char *key)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_stmt(&st, tx, "DELETE FROM setting WHERE key = $1");
    if (rc)
        return rc;
    sql_bind_text(st, 1, key ? key : "");
    if (sql_step(st) != SQL_DONE)
        rc = sql_err(st, "removing a setting");
    sql_tx_stmt_done(tx, st);
    return rc;
}

static int tx_setting_get(char **out, store_tx *tx, const char *key)
{
    sql_stmt *st = NULL;
    int rc, step, oom = 0;

    *out = NULL;
    if ((rc = sql_tx_stmt(&st, tx, "SELECT value FROM setting WHERE key = $1")))
        return rc;
    sql_bind_text(st, 1, key ? key : "");
    step = sql_step(st);
    if (step == SQL_ROW) {
        *out = sql_col_dup(st, 0, &oom);
        if (oom) {
            farm_error_set("store: out of memory");
            rc = FARM_ENOMEM;
        }
    } else if (step == SQL_DONE) {
        farm_error_set("store: no setting %s", key ? key : "");
        rc = FARM_ENOTFOUND;
    } else {
        rc = sql_err(st, "reading a setting");
    }
    sql_tx_stmt_done(tx, st);
    return rc;
}

const store_setting_ops sql_setting_ops = {
    .list = setting_list,
    .tx_set = tx_setting_set,
    .tx_get = tx_setting_get,
    .tx_delete = tx_setting_delete,
};
