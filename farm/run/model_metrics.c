/*
 * model_metrics.c - the model calls' totals in the store and their
 * Prometheus lines (see model_metrics.h).
 *
 * A counter is a row (name, label text, value) of the model_stat table;
 * a histogram keeps one row per bucket (not cumulative: a call adds 1 to
 * the one bucket it falls in), plus _sum and _count, and is made
 * cumulative when rendered. Label values come from small sets: the model
 * is the priced model's name (a call with no price counts as "unpriced"),
 * the kind and outcome are fixed words, the status a number.
 */
#include "model_metrics.h"

#include "farm/store/store_run.h"

#include <stdio.h>
#include <string.h>

#define TOKENS   "farm_model_tokens_total"
#define COST     "farm_model_cost_usd_total"
#define CALLS    "farm_model_calls_total"
#define DURATION "farm_model_call_duration_seconds"
#define TTFB     "farm_model_ttfb_seconds"

static const double duration_s[] = {0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600};
static const double ttfb_s[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60};
#define NDURATION (sizeof(duration_s) / sizeof(duration_s[0]))
#define NTTFB     (sizeof(ttfb_s) / sizeof(ttfb_s[0]))

/* A Prometheus label value: at most 100 bytes of printable ASCII, with
 * backslash, quote and newline escaped. */
static void label_value(char *out, size_t size, const char *v)
{
    size_t o = 0;
    for (size_t i = 0; v && v[i] && i < 100 && o + 3 < size; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch == '\\' || ch == '"') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch >= 0x20 && ch < 0x7f) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '_';
        }
    }
    out[o] = '\0';
}

static int observe(store_tx *tx, const char *name, const double *le, size_t n, double v)
{
    char labels[32], key[96];
    size_t i = 0;
    while (i < n && v > le[i])
        i++;
    if (i < n)
        snprintf(labels, sizeof(labels), "le=\"%g\"", le[i]);
    else
        snprintf(labels, sizeof(labels), "le=\"+Inf\"");
    int rc;
    snprintf(key, sizeof(key), "%s_bucket", name);
    if ((rc = store_tx_model_stat_add(tx, key, labels, 1)))
        return rc;
    snprintf(key, sizeof(key), "%s_sum", name);
    if ((rc = store_tx_model_stat_add(tx, key, "", v)))
        return rc;
    snprintf(key, sizeof(key), "%s_count", name);
    return store_tx_model_stat_add(tx, key, "", 1);
}

int model_metrics_tx_add(store_tx *tx, const gateway_call *c)
{
    char model[256], labels[512];
    int rc;

    label_value(model, sizeof(model), c->priced && c->model && *c->model ? c->model : "unpriced");
    static const char *const kinds[] = {"input", "output", "cache_read", "cache_write"};
    const int64_t tokens[] = {c->usage.input, c->usage.output, c->usage.cache_read,
                              c->usage.cache_write + c->usage.cache_write_1h};
    for (size_t i = 0; i < 4; i++) {
        if (tokens[i] <= 0)
            continue;
        snprintf(labels, sizeof(labels), "model=\"%s\",kind=\"%s\"", model, kinds[i]);
        if ((rc = store_tx_model_stat_add(tx, TOKENS, labels, (double)tokens[i])))
            return rc;
    }
    snprintf(labels, sizeof(labels), "model=\"%s\"", model);
    if (c->cost_usd > 0 && (rc = store_tx_model_stat_add(tx, COST, labels, c->cost_usd)))
        return rc;
    snprintf(labels, sizeof(labels), "model=\"%s\",outcome=\"%s\",status=\"%ld\"", model,
             gateway_outcome_name(c->outcome), c->status);
    if ((rc = store_tx_model_stat_add(tx, CALLS, labels, 1)))
        return rc;
    /* latencies of calls that reached the model: a refusal's says nothing */
    if (c->outcome == GATEWAY_CALL_BUDGET || c->outcome == GATEWAY_CALL_UNPRICED)
        return 0;
    if ((rc = observe(tx, DURATION, duration_s, NDURATION, (double)c->total_us / 1e6)))
        return rc;
    if (c->ttfb_us >= 0 && (rc = observe(tx, TTFB, ttfb_s, NTTFB, (double)c->ttfb_us / 1e6)))
        return rc;
    return 0;
}

static double value_of(const store_amount *v, size_t n, const char *name, const char *labels)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].labels[0], name) && !strcmp(v[i].labels[1], labels))
            return v[i].value;
    return 0;
}

static int put_counter(buf *b, const store_amount *v, size_t n, const char *name, const char *help)
{
    int rc = buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (size_t i = 0; i < n && !rc; i++)
        if (!strcmp(v[i].labels[0], name))
            rc = buf_printf(b, "%s{%s} %.17g\n", name, v[i].labels[1], v[i].value);
    return rc;
}

static int put_histogram(buf *b, const store_amount *v, size_t n, const char *name,
                         const double *le, size_t nle, const char *help)
{
    char key[96], labels[32];
    double cumulative = 0;
    int rc = buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    snprintf(key, sizeof(key), "%s_bucket", name);
    for (size_t i = 0; i <= nle && !rc; i++) {
        if (i < nle)
            snprintf(labels, sizeof(labels), "le=\"%g\"", le[i]);
        else
            snprintf(labels, sizeof(labels), "le=\"+Inf\"");
        cumulative += value_of(v, n, key, labels);
        rc = buf_printf(b, "%s{%s} %.0f\n", key, labels, cumulative);
    }
    snprintf(key, sizeof(key), "%s_sum", name);
    if (!rc)
        rc = buf_printf(b, "%s %.6f\n", key, value_of(v, n, key, ""));
    snprintf(key, sizeof(key), "%s_count", name);
    if (!rc)
        rc = buf_printf(b, "%s %.0f\n", key, value_of(v, n, key, ""));
    return rc;
}

int model_metrics_render(buf *b, store *s)
{
    store_amount *v = NULL;
    size_t n = 0;
    int rc = store_model_stat_list(&v, &n, s);
    if (rc)
        return rc;
    rc = put_counter(b, v, n, TOKENS,
                     "Tokens of the model calls through the gateway, by model and kind.");
    if (!rc)
        rc = put_counter(b, v, n, COST, "Cost in USD of the model calls, by model.");
    if (!rc)
        rc = put_counter(b, v, n, CALLS,
                         "Model calls through the gateway, by model, outcome and HTTP status.");
    if (!rc)
        rc = put_histogram(b, v, n, DURATION, duration_s, NDURATION,
                           "Duration of the model calls that were forwarded.");
    if (!rc)
        rc = put_histogram(b, v, n, TTFB, ttfb_s, NTTFB,
                           "Time from a model call's request to the first byte of its answer.");
    store_amount_list_free(v, n);
    return rc;
}
