/*
 * budget.c - the model budgets in force (see budget.h): the config's values,
 * each overridden by a runtime setting when one is stored. The settings are
 * read from the store on every call, so a change made by any process holds
 * for the next model call of every run.
 */
#include "budget.h"

#include "base/error.h"
#include "base/log.h"
#include "farm/store/store_job.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_MS 86400000LL

static const char *const names[BUDGET_NKINDS] = {"session_usd", "repo_daily_usd", "daily_usd"};
static const char *const keys[BUDGET_NKINDS] = {"budgets.session_usd", "budgets.repo_daily_usd",
                                                "budgets.daily_usd"};

const char *budget_kind_name(int kind)
{
    return kind >= 0 && kind < BUDGET_NKINDS ? names[kind] : "?";
}

const char *budget_kind_key(int kind)
{
    return kind >= 0 && kind < BUDGET_NKINDS ? keys[kind] : "?";
}

int budget_kind_find(const char *name)
{
    for (int i = 0; name && i < BUDGET_NKINDS; i++)
        if (!strcmp(names[i], name))
            return i;
    return -1;
}

int64_t budget_day(int64_t wall_ms)
{
    return wall_ms / DAY_MS;
}

void budget_day_format(char out[11], int64_t day)
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 11, "%Y-%m-%d", &tm) == 0)
        snprintf(out, 11, "?");
}

static void from_config(budget_limits *l, const config *cfg)
{
    memset(l, 0, sizeof(*l));
    l->usd[BUDGET_SESSION] = cfg->budgets.session_usd;
    l->usd[BUDGET_REPO_DAILY] = cfg->budgets.repo_daily_usd;
    l->usd[BUDGET_DAILY] = cfg->budgets.daily_usd;
}

static int usd_ok(double v)
{
    return isfinite(v) && v >= 0 && v <= BUDGET_USD_MAX;
}

static void apply_setting(budget_limits *l, const char *key, const char *value)
{
    for (int i = 0; i < BUDGET_NKINDS; i++) {
        if (strcmp(keys[i], key) != 0)
            continue;
        char *end;
        errno = 0;
        double v = strtod(value ? value : "", &end);
        if (!value || !*value || *end || errno || !usd_ok(v)) {
            log_warn("stored budget setting ignored: not a valid amount", "key", key);
            return;
        }
        l->usd[i] = v;
        l->from_setting[i] = 1;
    }
}

int budget_get(budget_limits *out, const config *cfg, store *s)
{
    store_setting *v = NULL;
    size_t n = 0;
    int rc;

    from_config(out, cfg);
    if ((rc = store_setting_list(&v, &n, s, "budgets.")))
        return rc;
    for (size_t i = 0; i < n; i++)
        apply_setting(out, v[i].key, v[i].value);
    store_setting_list_free(v, n);
    return 0;
}

typedef struct update_arg {
    const config *cfg;
    const budget_change *c;
    budget_limits after;
} update_arg;

static int update_fn(store_tx *tx, void *arg)
{
    update_arg *a = arg;
    budget_limits l;
    char text[64];
    int rc;

    from_config(&l, a->cfg);
    for (int i = 0; i < BUDGET_NKINDS; i++) {
        char *v = NULL;
        rc = store_tx_setting_get(&v, tx, keys[i]);
        if (rc == FARM_ENOTFOUND)
            continue;
        if (rc)
            return rc;
        apply_setting(&l, keys[i], v);
        free(v);
    }
    for (int i = 0; i < BUDGET_NKINDS; i++) {
        if (a->c->clear[i]) {
            if ((rc = store_tx_setting_delete(tx, keys[i])))
                return rc;
            l.usd[i] = i == BUDGET_SESSION      ? a->cfg->budgets.session_usd
                       : i == BUDGET_REPO_DAILY ? a->cfg->budgets.repo_daily_usd
                                                : a->cfg->budgets.daily_usd;
            l.from_setting[i] = 0;
        } else if (a->c->set[i]) {
            /* %.17g: the amount read back is the amount given */
            snprintf(text, sizeof(text), "%.17g", a->c->usd[i]);
            if ((rc = store_tx_setting_set(tx, keys[i], text)))
                return rc;
            l.usd[i] = a->c->usd[i];
            l.from_setting[i] = 1;
        }
    }
    a->after = l;
    return 0;
}

int budget_update(budget_limits *out, const config *cfg, store *s, const budget_change *c,
                  const char **bad_kind)
{
    for (int i = 0; i < BUDGET_NKINDS; i++)
        if (c->set[i] && !c->clear[i] && !usd_ok(c->usd[i])) {
            if (bad_kind)
                *bad_kind = names[i];
            farm_error_set("%s must be a number of USD between 0 (no budget) and %g", names[i],
                           BUDGET_USD_MAX);
            return FARM_EINVALID;
        }
    update_arg a = {cfg, c, {{0}, {0}}};
    int rc = store_write(s, update_fn, &a);
    if (!rc && out)
        *out = a.after;
    return rc;
}
