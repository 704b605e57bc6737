/*
 * test_budget.c - the model budgets in force (farm/run/budget.c: the
 * config's, overridden live by settings in the store), today's spend per
 * repository, and the model calls' totals kept in the store for /metrics
 * (farm/run/model_metrics.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/error.h"
#include "farm/run/budget.h"
#include "farm/run/model_metrics.h"
#include "farm/store/store.h"
#include "farm/store/store_job.h"
#include "farm/store/store_run.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    store *s;
    config cfg;
} fixture;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/farm-test-budget-XXXXXX");
    if (!mkdtemp(f->dir) || store_open(&f->s, f->dir) != 0)
        return -1;
    f->cfg.budgets.session_usd = 5;
    f->cfg.budgets.daily_usd = 20;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void config_then_live_then_config(void **state)
{
    fixture *f = *state;
    budget_limits l;
    assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
    assert_true(l.usd[BUDGET_SESSION] == 5 && !l.from_setting[BUDGET_SESSION]);
    assert_true(l.usd[BUDGET_REPO_DAILY] == 0 && !l.from_setting[BUDGET_REPO_DAILY]);
    assert_true(l.usd[BUDGET_DAILY] == 20 && !l.from_setting[BUDGET_DAILY]);

    /* raise one, set another, leave the third */
    budget_change c = {{0}, {0}, {0}};
    c.set[BUDGET_SESSION] = 1, c.usd[BUDGET_SESSION] = 7.25;
    c.set[BUDGET_REPO_DAILY] = 1, c.usd[BUDGET_REPO_DAILY] = 0.1;
    budget_limits after;
    assert_int_equal(budget_update(&after, &f->cfg, f->s, &c, NULL), 0);
    assert_true(after.usd[BUDGET_SESSION] == 7.25 && after.from_setting[BUDGET_SESSION]);
    assert_true(after.usd[BUDGET_REPO_DAILY] == 0.1 && after.from_setting[BUDGET_REPO_DAILY]);
    assert_true(after.usd[BUDGET_DAILY] == 20 && !after.from_setting[BUDGET_DAILY]);

    /* every reader sees it, and it outlasts a restart */
    store_close(f->s);
    assert_int_equal(store_open(&f->s, f->dir), 0);
    assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
    assert_memory_equal(&l, &after, sizeof(l));

    /* 0 is "no budget", kept as a live value */
    memset(&c, 0, sizeof(c));
    c.set[BUDGET_DAILY] = 1, c.usd[BUDGET_DAILY] = 0;
    assert_int_equal(budget_update(NULL, &f->cfg, f->s, &c, NULL), 0);
    assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
    assert_true(l.usd[BUDGET_DAILY] == 0 && l.from_setting[BUDGET_DAILY]);

    /* clearing gives each back to the config */
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < BUDGET_NKINDS; i++)
        c.clear[i] = 1;
    assert_int_equal(budget_update(&after, &f->cfg, f->s, &c, NULL), 0);
    assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
    assert_memory_equal(&l, &after, sizeof(l));
    assert_true(l.usd[BUDGET_SESSION] == 5 && !l.from_setting[BUDGET_SESSION]);
    assert_true(l.usd[BUDGET_REPO_DAILY] == 0 && !l.from_setting[BUDGET_REPO_DAILY]);
    assert_true(l.usd[BUDGET_DAILY] == 20 && !l.from_setting[BUDGET_DAILY]);
    store_setting *v = NULL;
    size_t n = 9;
    assert_int_equal(store_setting_list(&v, &n, f->s, "budgets."), 0);
    assert_int_equal(n, 0);
    store_setting_list_free(v, n);
}

static void bad_amounts_refused(void **state)
{
    fixture *f = *state;
    const double bad[] = {-0.01, NAN, INFINITY, BUDGET_USD_MAX * 2};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        budget_change c = {{0}, {0}, {0}};
        c.set[BUDGET_SESSION] = 1, c.usd[BUDGET_SESSION] = 1; /* a good one beside it */
        c.set[BUDGET_REPO_DAILY] = 1, c.usd[BUDGET_REPO_DAILY] = bad[i];
        const char *kind = NULL;
        assert_int_equal(budget_update(NULL, &f->cfg, f->s, &c, &kind), FARM_EINVALID);
        assert_string_equal(kind, "repo_daily_usd");
        assert_non_null(strstr(farm_error_last(), "repo_daily_usd"));
    }
    /* nothing was written, not even the good one */
    budget_limits l;
    assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
    assert_true(l.usd[BUDGET_SESSION] == 5 && !l.from_setting[BUDGET_SESSION]);
}

static int put_setting(store_tx *tx, void *arg)
{
    return store_tx_setting_set(tx, "budgets.daily_usd", arg);
}

static void stored_garbage_ignored(void **state)
{
    fixture *f = *state;
    const char *bad[] = {"abc", "-3", "nan", "1e99", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(store_write(f->s, put_setting, (void *)bad[i]), 0);
        budget_limits l;
        assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
        assert_true(l.usd[BUDGET_DAILY] == 20 && !l.from_setting[BUDGET_DAILY]);
    }
    assert_int_equal(store_write(f->s, put_setting, "2.5"), 0);
    budget_limits l;
    assert_int_equal(budget_get(&l, &f->cfg, f->s), 0);
    assert_true(l.usd[BUDGET_DAILY] == 2.5 && l.from_setting[BUDGET_DAILY]);
    assert_int_equal(budget_kind_find("daily_usd"), BUDGET_DAILY);
    assert_int_equal(budget_kind_find("daily"), -1);
    assert_string_equal(budget_kind_key(BUDGET_REPO_DAILY), "budgets.repo_daily_usd");
}

static int add_spend(store_tx *tx, void *arg)
{
    (void)arg;
    int rc = store_tx_spend_add(tx, 20000, "octo/b", 0.5);
    if (!rc)
        rc = store_tx_spend_add(tx, 20000, "octo/a", 0.25);
    if (!rc)
        rc = store_tx_spend_add(tx, 20000, "octo/b", 0.125);
    if (!rc)
        rc = store_tx_spend_add(tx, 19999, "octo/c", 9);
    return rc;
}

static void spend_per_repository(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_write(f->s, add_spend, NULL), 0);
    store_amount *v = NULL;
    size_t n = 0;
    assert_int_equal(store_spend_list(&v, &n, f->s, 20000), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].labels[0], "octo/a");
    assert_true(v[0].value == 0.25);
    assert_string_equal(v[1].labels[0], "octo/b");
    assert_true(v[1].value == 0.625);
    store_amount_list_free(v, n);
    char day[11];
    budget_day_format(day, 20000);
    assert_string_equal(day, "2024-10-04");
    assert_int_equal(budget_day(20000LL * 86400000 + 5), 20000);
}

static int add_calls(store_tx *tx, void *arg)
{
    (void)arg;
    gateway_call c = {.model = "claude-sonnet-5-5",
                      .status = 200,
                      .outcome = GATEWAY_CALL_OK,
                      .usage = {120, 42, 3000, 400, 100},
                      .usage_seen = 1,
                      .priced = 1,
                      .cost_usd = 0.5,
                      .ttfb_us = 300000,
                      .total_us = 1500000};
    int rc = model_metrics_tx_add(tx, &c);
    c.ttfb_us = 40000, c.total_us = 700000, c.cost_usd = 0.25;
    if (!rc)
        rc = model_metrics_tx_add(tx, &c);
    /* refused: a call, no latency */
    gateway_call r = {.model = "claude-sonnet-5-5",
                      .status = 400,
                      .outcome = GATEWAY_CALL_BUDGET,
                      .priced = 1,
                      .ttfb_us = -1};
    if (!rc)
        rc = model_metrics_tx_add(tx, &r);
    /* a model without a price never becomes a label of its own */
    gateway_call u = {
        .model = "x\"}\n", .status = 400, .outcome = GATEWAY_CALL_UNPRICED, .ttfb_us = -1};
    if (!rc)
        rc = model_metrics_tx_add(tx, &u);
    /* an odd name is escaped */
    gateway_call q = {.model = "we\"ird\\m",
                      .status = 200,
                      .outcome = GATEWAY_CALL_OK,
                      .usage = {1, 0, 0, 0, 0},
                      .priced = 1,
                      .ttfb_us = -1,
                      .total_us = 100};
    if (!rc)
        rc = model_metrics_tx_add(tx, &q);
    return rc;
}

static void model_metrics_from_the_store(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_write(f->s, add_calls, NULL), 0);
    /* a second store handle (another process) sees the same totals */
    store *other;
    assert_int_equal(store_open(&other, f->dir), 0);
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(model_metrics_render(&b, other), 0);
    const char *t = buf_cstr(&b);
    const char *want[] = {
        "# TYPE farm_model_tokens_total counter\n",
        "farm_model_tokens_total{model=\"claude-sonnet-5-5\",kind=\"input\"} 240\n",
        "farm_model_tokens_total{model=\"claude-sonnet-5-5\",kind=\"output\"} 84\n",
        "farm_model_tokens_total{model=\"claude-sonnet-5-5\",kind=\"cache_read\"} 6000\n",
        "farm_model_tokens_total{model=\"claude-sonnet-5-5\",kind=\"cache_write\"} 1000\n",
        "farm_model_tokens_total{model=\"we\\\"ird\\\\m\",kind=\"input\"} 1\n",
        "farm_model_cost_usd_total{model=\"claude-sonnet-5-5\"} 0.75\n",
        "farm_model_calls_total{model=\"claude-sonnet-5-5\",outcome=\"ok\",status=\"200\"} 2\n",
        "farm_model_calls_total{model=\"claude-sonnet-5-5\",outcome=\"budget\",status=\"400\"} 1\n",
        "farm_model_calls_total{model=\"unpriced\",outcome=\"unpriced\",status=\"400\"} 1\n",
        "# TYPE farm_model_call_duration_seconds histogram\n",
        "farm_model_call_duration_seconds_bucket{le=\"0.5\"} 1\n", /* the 100 us one */
        "farm_model_call_duration_seconds_bucket{le=\"1\"} 2\n",
        "farm_model_call_duration_seconds_bucket{le=\"2.5\"} 3\n",
        "farm_model_call_duration_seconds_bucket{le=\"+Inf\"} 3\n",
        "farm_model_call_duration_seconds_count 3\n",
        "farm_model_call_duration_seconds_sum 2.200100\n",
        "farm_model_ttfb_seconds_bucket{le=\"0.1\"} 1\n",
        "farm_model_ttfb_seconds_bucket{le=\"0.25\"} 1\n",
        "farm_model_ttfb_seconds_bucket{le=\"0.5\"} 2\n",
        "farm_model_ttfb_seconds_bucket{le=\"+Inf\"} 2\n",
        "farm_model_ttfb_seconds_count 2\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(t, want[i]))
            fail_msg("missing: %s\nin:\n%s", want[i], t);
    assert_null(strstr(t, "x\"}"));
    buf_free(&b);
    store_close(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(config_then_live_then_config, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_amounts_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(stored_garbage_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(spend_per_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(model_metrics_from_the_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
