/*
 * scaling.c - the scaling limits in force (see scaling.h): the config's
 * values, each overridden by a runtime setting when one is stored.
 */
#include "scaling.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/store_job.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[SCALING_NFIELDS] = {"max_agents", "max_per_repo", "min_warm",
                                                   "idle_timeout_s"};
static const char *const keys[SCALING_NFIELDS] = {"scaling.max_agents", "scaling.max_per_repo",
                                                  "scaling.min_warm", "scaling.idle_timeout_s"};

const char *scaling_field_name(int field)
{
    return field >= 0 && field < SCALING_NFIELDS ? names[field] : "?";
}

const char *scaling_field_key(int field)
{
    return field >= 0 && field < SCALING_NFIELDS ? keys[field] : "?";
}

int scaling_field_find(const char *name)
{
    for (int i = 0; name && i < SCALING_NFIELDS; i++)
        if (!strcmp(names[i], name))
            return i;
    return -1;
}

static void from_config(scaling_limits *l, const config *cfg)
{
    memset(l, 0, sizeof(*l));
    l->value[SCALING_MAX_AGENTS] = cfg->scaling.max_agents;
    l->value[SCALING_MAX_PER_REPO] = cfg->scaling.max_per_repo;
    l->value[SCALING_MIN_WARM] = cfg->scaling.min_warm;
    l->value[SCALING_IDLE_TIMEOUT] = cfg->scaling.idle_timeout_s;
}

int scaling_node_slots(const scaling_limits *l, const config *cfg)
{
    int max = l->value[SCALING_MAX_AGENTS];
    if (cfg && cfg->worker.slots > 0 && cfg->worker.slots < max)
        return cfg->worker.slots;
    return max;
}

/* The lowest and highest value of a field, given max_agents. */
static void range(int field, int max_agents, long long *lo, long long *hi)
{
    switch (field) {
    case SCALING_MAX_AGENTS:
        *lo = 1, *hi = SCALING_MAX_AGENTS_CAP;
        break;
    case SCALING_MAX_PER_REPO:
        *lo = 1, *hi = max_agents;
        break;
    case SCALING_MIN_WARM:
        *lo = 0, *hi = max_agents;
        break;
    default:
        *lo = 1, *hi = 604800;
        break;
    }
}

static int parse_value(long long *out, const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s ? s : "", &end, 10);
    if (!s || !*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

/* Settings over config, then the caps that keep the limits consistent. */
static void clamp(scaling_limits *l)
{
    int max = l->value[SCALING_MAX_AGENTS];
    if (max < 1)
        max = l->value[SCALING_MAX_AGENTS] = 1;
    if (max > SCALING_MAX_AGENTS_CAP)
        max = l->value[SCALING_MAX_AGENTS] = SCALING_MAX_AGENTS_CAP;
    if (l->value[SCALING_MAX_PER_REPO] > max || l->value[SCALING_MAX_PER_REPO] < 1)
        l->value[SCALING_MAX_PER_REPO] = max;
    if (l->value[SCALING_MIN_WARM] > max)
        l->value[SCALING_MIN_WARM] = max;
    if (l->value[SCALING_MIN_WARM] < 0)
        l->value[SCALING_MIN_WARM] = 0;
    if (l->value[SCALING_IDLE_TIMEOUT] < 1)
        l->value[SCALING_IDLE_TIMEOUT] = 1;
}

static void apply_setting(scaling_limits *l, const char *key, const char *value)
{
    for (int i = 0; i < SCALING_NFIELDS; i++) {
        if (strcmp(keys[i], key) != 0)
            continue;
        long long v, lo, hi;
        range(i, SCALING_MAX_AGENTS_CAP, &lo, &hi);
        if (parse_value(&v, value) != 0 || v < lo || v > hi) {
            log_warn("stored scaling setting ignored: not a valid number", "key", key);
            return;
        }
        l->value[i] = (int)v;
        l->from_setting[i] = 1;
    }
}

int scaling_get(scaling_limits *out, const config *cfg, store *s)
{
    store_setting *v = NULL;
    size_t n = 0;
    int rc;

    from_config(out, cfg);
    if ((rc = store_setting_list(&v, &n, s, "scaling.")))
        return rc;
    for (size_t i = 0; i < n; i++)
        apply_setting(out, v[i].key, v[i].value);
    store_setting_list_free(v, n);
    clamp(out);
    return 0;
}

static int check_field(const scaling_limits *l, int field, const char **bad_field)
{
    long long lo, hi;
    range(field, l->value[SCALING_MAX_AGENTS], &lo, &hi);
    if (l->value[field] >= lo && l->value[field] <= hi)
        return 0;
    if (bad_field)
        *bad_field = names[field];
    if (field == SCALING_MAX_PER_REPO || field == SCALING_MIN_WARM)
        farm_error_set("%s must be between %lld and max_agents (%lld)", names[field], lo, hi);
    else
        farm_error_set("%s must be between %lld and %lld", names[field], lo, hi);
    return FARM_EINVALID;
}

int scaling_validate(const scaling_limits *l, const char **bad_field)
{
    int rc = 0;
    for (int i = 0; i < SCALING_NFIELDS && !rc; i++)
        rc = check_field(l, i, bad_field);
    return rc;
}

typedef struct update_arg {
    const config *cfg;
    const scaling_change *c;
    const char **bad_field;
    scaling_limits after;
} update_arg;

static int update_fn(store_tx *tx, void *arg)
{
    update_arg *a = arg;
    scaling_limits l;
    char text[32];
    int rc = 0;

    /* the limits in force, read inside the write: concurrent changes are
     * validated one after the other */
    from_config(&l, a->cfg);
    for (int i = 0; i < SCALING_NFIELDS; i++) {
        char *v = NULL;
        rc = store_tx_setting_get(&v, tx, keys[i]);
        if (rc == FARM_ENOTFOUND)
            continue;
        if (rc)
            return rc;
        apply_setting(&l, keys[i], v);
        free(v);
    }
    rc = 0;
    /* the change: a value given must be in its range (max_agents first, as
     * the others' ranges depend on it); those not given are capped */
    for (int i = 0; i < SCALING_NFIELDS; i++) {
        if (!a->c->set[i])
            continue;
        long long lo, hi;
        int max = a->c->set[SCALING_MAX_AGENTS] ? (int)a->c->value[SCALING_MAX_AGENTS]
                                                : l.value[SCALING_MAX_AGENTS];
        if (a->c->set[SCALING_MAX_AGENTS] &&
            (a->c->value[SCALING_MAX_AGENTS] < 1 ||
             a->c->value[SCALING_MAX_AGENTS] > SCALING_MAX_AGENTS_CAP))
            max = SCALING_MAX_AGENTS_CAP; /* reported below as max_agents' own error */
        range(i, max, &lo, &hi);
        if (a->c->value[i] < lo || a->c->value[i] > hi) {
            scaling_limits bad = l;
            bad.value[SCALING_MAX_AGENTS] = max;
            bad.value[i] = a->c->value[i] < INT32_MIN   ? INT32_MIN
                           : a->c->value[i] > INT32_MAX ? INT32_MAX
                                                        : (int)a->c->value[i];
            return check_field(&bad, i, a->bad_field);
        }
    }
    for (int i = 0; i < SCALING_NFIELDS && !rc; i++) {
        if (!a->c->set[i])
            continue;
        snprintf(text, sizeof(text), "%lld", a->c->value[i]);
        l.value[i] = (int)a->c->value[i];
        l.from_setting[i] = 1;
        rc = store_tx_setting_set(tx, keys[i], text);
    }
    clamp(&l);
    a->after = l;
    return rc;
}

int scaling_update(scaling_limits *out, const config *cfg, store *s, const scaling_change *c,
                   const char **bad_field)
{
    update_arg a = {cfg, c, bad_field, {{0}, {0}}};
    int rc = store_write(s, update_fn, &a);
    if (!rc && out)
        *out = a.after;
    return rc;
}
