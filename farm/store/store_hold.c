/*
 * store_hold.c - the hold on an issue, kept as one setting record (see
 * store_hold.h). Only the setting operations of the backend are used, so
 * every backend has holds.
 */
#include "store_hold.h"
#include "store_job.h"

#include "base/clock.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOLD_PARKED_MAX 64 /* jobs remembered under one hold (one per session and kind) */

static void hold_key(char *out, size_t n, const char *tracker, const char *repo, int64_t number)
{
    snprintf(out, n, "hold/%s/%s#%lld", tracker, repo, (long long)number);
}

static int oom(void)
{
    farm_error_set("store: out of memory");
    return FARM_ENOMEM;
}

/* The hold's record parsed, or NULL (*rc 0: no hold). */
static json_t *hold_read(int *rc, store_tx *tx, const char *key)
{
    char *v = NULL;
    *rc = store_tx_setting_get(&v, tx, key);
    if (*rc == FARM_ENOTFOUND || (!*rc && !v)) {
        *rc = 0;
        return NULL;
    }
    if (*rc)
        return NULL;
    json_t *j = json_loads(v, 0, NULL);
    free(v);
    if (!json_is_object(j)) { /* unreadable: still a hold */
        json_decref(j);
        j = json_object();
        if (!j)
            *rc = oom();
    }
    return j;
}

static int hold_write(store_tx *tx, const char *key, json_t *j)
{
    char *v = json_dumps(j, JSON_COMPACT);
    if (!v)
        return oom();
    int rc = store_tx_setting_set(tx, key, v);
    free(v);
    return rc;
}

static char *by_of(json_t *j)
{
    const char *by = json_string_value(json_object_get(j, "by"));
    return strdup(by && *by ? by : "someone");
}

int store_tx_hold_get(char **by, store_tx *tx, const char *tracker, const char *repo,
                      int64_t number)
{
    char key[1024];
    int rc;
    *by = NULL;
    hold_key(key, sizeof(key), tracker, repo, number);
    json_t *j = hold_read(&rc, tx, key);
    if (j && !(*by = by_of(j)))
        rc = oom();
    json_decref(j);
    return rc;
}

int store_hold_get(char **by, store *s, const char *tracker, const char *repo, int64_t number)
{
    char key[1024];
    store_setting *v = NULL;
    size_t n = 0;
    int rc;

    *by = NULL;
    hold_key(key, sizeof(key), tracker, repo, number);
    if ((rc = store_setting_list(&v, &n, s, key)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v[i].key, key)) { /* the prefix matched; only the key itself counts */
            json_t *j = json_loads(v[i].value ? v[i].value : "", 0, NULL);
            if (!(*by = by_of(j)))
                rc = oom();
            json_decref(j);
            break;
        }
    }
    store_setting_list_free(v, n);
    return rc;
}

int store_tx_hold_set(store_tx *tx, const char *tracker, const char *repo, int64_t number,
                      const char *by)
{
    char key[1024];
    hold_key(key, sizeof(key), tracker, repo, number);
    json_t *j = json_pack("{s:s,s:I,s:[]}", "by", by && *by ? by : "someone", "since_ms",
                          (json_int_t)clock_wall_ms(), "parked");
    if (!j)
        return oom();
    int rc = hold_write(tx, key, j);
    json_decref(j);
    return rc;
}

int store_tx_hold_park(int *held, store_tx *tx, const char *tracker, const char *repo,
                       int64_t number, int64_t session_id, const char *kind)
{
    char key[1024];
    int rc;
    size_t i;
    json_t *p;

    *held = 0;
    hold_key(key, sizeof(key), tracker, repo, number);
    json_t *j = hold_read(&rc, tx, key);
    if (!j)
        return rc;
    *held = 1;
    json_t *parked = json_object_get(j, "parked");
    if (!json_is_array(parked)) {
        parked = json_array();
        json_object_set_new(j, "parked", parked);
    }
    json_array_foreach(parked, i, p)
    {
        if (json_integer_value(json_object_get(p, "session")) == session_id &&
            json_is_string(json_object_get(p, "kind")) &&
            !strcmp(json_string_value(json_object_get(p, "kind")), kind)) {
            json_decref(j); /* parked already */
            return 0;
        }
    }
    if (json_array_size(parked) < HOLD_PARKED_MAX)
        json_array_append_new(
            parked, json_pack("{s:I,s:s}", "session", (json_int_t)session_id, "kind", kind));
    rc = hold_write(tx, key, j);
    json_decref(j);
    return rc;
}

int store_tx_hold_lift(store_hold_parked **out, size_t *n, store_tx *tx, const char *tracker,
                       const char *repo, int64_t number)
{
    char key[1024];
    int rc;
    size_t i;
    json_t *p;

    *out = NULL;
    *n = 0;
    hold_key(key, sizeof(key), tracker, repo, number);
    json_t *j = hold_read(&rc, tx, key);
    if (!j)
        return rc;
    json_t *parked = json_object_get(j, "parked");
    size_t np = json_is_array(parked) ? json_array_size(parked) : 0;
    store_hold_parked *v = np ? calloc(np, sizeof(*v)) : NULL;
    if (np && !v) {
        json_decref(j);
        return oom();
    }
    json_array_foreach(parked, i, p)
    {
        const char *kind = json_string_value(json_object_get(p, "kind"));
        int64_t sid = json_integer_value(json_object_get(p, "session"));
        if (!kind || sid <= 0 || strlen(kind) >= sizeof(v[0].kind))
            continue;
        v[*n].session_id = sid;
        snprintf(v[*n].kind, sizeof(v[*n].kind), "%s", kind);
        (*n)++;
    }
    json_decref(j);
    if ((rc = store_tx_setting_delete(tx, key))) {
        free(v);
        *n = 0;
        return rc;
    }
    *out = v;
    return 0;
}
