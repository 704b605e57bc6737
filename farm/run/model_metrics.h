/*
 * model_metrics.h - the model calls' lines of /metrics, kept in the store.
 *
 * Each call's record (pipeline_gateway.c) adds, in the same write as its
 * model_call event: tokens by model and kind, cost by model, calls by
 * model, outcome and HTTP status, and a call-duration and a time-to-first-
 * byte histogram. Kept in the store (the model_stat table), not in memory,
 * so the page counts every process's runs and survives a restart.
 */
#ifndef FARM_FARM_RUN_MODEL_METRICS_H
#define FARM_FARM_RUN_MODEL_METRICS_H

#include "base/buf.h"
#include "farm/gateway/gateway.h"
#include "farm/store/store.h"

/* Add one call to the totals, inside a write. Returns 0 or the store's
 * error. */
int model_metrics_tx_add(store_tx *tx, const gateway_call *c);

/* Append the Prometheus lines (farm_model_tokens_total, farm_model_cost_usd_total,
 * farm_model_calls_total, farm_model_call_duration_seconds,
 * farm_model_ttfb_seconds) to b. Returns 0, the store's error (nothing
 * appended) or the buffer's. */
int model_metrics_render(buf *b, store *s);

#endif
