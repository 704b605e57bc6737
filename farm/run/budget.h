/*
 * budget.h - the model budgets in force: the config's "budgets" section
 * (session_usd, repo_daily_usd, daily_usd), overridden key by key by
 * runtime settings (the `setting` table, written by PUT /api/budgets and
 * `farm budget`), so an admin raises or lowers a budget without a restart:
 * every process reads them from the store before each model call
 * (pipeline_gateway.c). A value of 0 means no budget of that kind.
 */
#ifndef FARM_FARM_RUN_BUDGET_H
#define FARM_FARM_RUN_BUDGET_H

#include "farm/config/config.h"
#include "farm/store/store.h"

enum {
    BUDGET_SESSION,    /* USD one session may spend on model calls */
    BUDGET_REPO_DAILY, /* USD one repository may spend in a UTC day */
    BUDGET_DAILY,      /* USD the whole farm may spend in a UTC day */
    BUDGET_NKINDS
};

/* The highest budget accepted, USD: a typo's guard, not a policy. */
#define BUDGET_USD_MAX 1e9

typedef struct budget_limits {
    double usd[BUDGET_NKINDS];       /* 0: none */
    int from_setting[BUDGET_NKINDS]; /* 1: a runtime setting ("live"), 0: the config */
} budget_limits;

/* A change: set[k] gives kind k the value usd[k]; clear[k] removes its
 * runtime setting, so the config's value applies again. */
typedef struct budget_change {
    int set[BUDGET_NKINDS];
    int clear[BUDGET_NKINDS];
    double usd[BUDGET_NKINDS];
} budget_change;

/* The kind's name as in the config and the API ("session_usd", ...), and
 * its setting key ("budgets.session_usd"). Static strings. */
const char *budget_kind_name(int kind);
const char *budget_kind_key(int kind);

/* The kind named name, or -1. */
int budget_kind_find(const char *name);

/* The budgets in force: cfg's values overridden by the settings in s (a
 * stored value that is not a valid amount is ignored with a warning).
 * Returns 0 or the store's error. */
int budget_get(budget_limits *out, const config *cfg, store *s);

/* Apply a change in one write. A value must be a finite number between 0
 * and BUDGET_USD_MAX. *out (may be NULL) is the budgets in force
 * afterwards. Returns 0, FARM_EINVALID (*bad_kind, when non-NULL, names the
 * first bad kind; the message is in the error slot) or the store's error. */
int budget_update(budget_limits *out, const config *cfg, store *s, const budget_change *c,
                  const char **bad_kind);

/* The UTC day number of a wall time in ms (what the model_spend table is
 * keyed by), and that day as "YYYY-MM-DD" in out. */
int64_t budget_day(int64_t wall_ms);
void budget_day_format(char out[11], int64_t day);

#endif
