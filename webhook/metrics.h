/*
 * metrics.h - the HTTP front's own counters, and the /metrics page.
 *
 * The counters live in this process (one server per process): requests by
 * route and status, webhook deliveries by tracker, event and outcome
 * (including the ones refused before the store saw them: unauthorized,
 * invalid, too large, a hook that is off), connections and requests the
 * per-client limits refused or cut off (clients.h, by reason), and the
 * ack-latency histogram of the hooks (request
 * headers in -> response queued). metrics_render() adds what the store
 * knows: sessions by state, queue depth, recorded deliveries, the group
 * commit's counters and the model calls' totals (farm/run/model_metrics.h).
 * All functions are thread-safe.
 */
#ifndef FARM_WEBHOOK_METRICS_H
#define FARM_WEBHOOK_METRICS_H

#include "base/buf.h"
#include "farm/farm.h"

#include <stdint.h>

void metrics_http_count(const char *route, int status);

/* event is the tracker's event name; names outside the set the farm
 * understands are counted as "other" so a sender cannot grow the table. */
void metrics_delivery_count(const char *tracker, const char *event, const char *outcome);

void metrics_ack_observe(int64_t ns);

/* A connection or request refused or cut off by a limit before any route
 * answered: reason is one of "connections", "connections_per_ip",
 * "header_timeout", "body_too_slow", "body_budget", "large_bodies",
 * "bad_request", "misdirected", "cross_origin" (anything else counts as
 * "other"). */
void metrics_http_refused(const char *reason);

/* Append the whole page (Prometheus text format 0.0.4) to out. Store
 * figures that cannot be read are left out and counted in
 * farm_metrics_store_errors. Returns 0 or FARM_ETOOBIG / FARM_ENOMEM. */
int metrics_render(buf *out, farm *f);

/* The scheduler's lines (slots, jobs by state, admission waits, limits);
 * route_scaling.c. Returns 0 or the buffer's error. */
int metrics_render_scheduler(buf *out, farm *f);

#endif
