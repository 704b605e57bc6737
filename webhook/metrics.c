/*
 * metrics.c - counters of the HTTP front and the Prometheus page (see
 * metrics.h).
 *
 * Labelled counters are small fixed tables under one mutex: label values
 * come from closed sets (route names, status codes, known event names,
 * outcomes), so the tables cannot be grown by a sender. The latency
 * histogram is lock-free.
 */
#include "metrics.h"
#include "base/error.h"
#include "farm/run/model_metrics.h"
#include "farm/store/store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_SERIES 256

typedef struct series {
    const char *labels[3]; /* static strings */
    char status[8];
    uint64_t n;
} series;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static series http[MAX_SERIES];
static size_t nhttp;
static series deliveries[MAX_SERIES];
static size_t ndeliveries;

/* Histogram buckets, in seconds, for the ack latency. */
static const double bucket_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define NBUCKETS (sizeof(bucket_s) / sizeof(bucket_s[0]))
static atomic_uint_fast64_t ack_buckets[NBUCKETS + 1]; /* the last one is +Inf */
static atomic_uint_fast64_t ack_count;
static atomic_uint_fast64_t ack_sum_ns;
static atomic_uint_fast64_t store_errors;

/* The label values a series may take; anything else maps to a fixed value. */
static const char *const known_events[] = {
    "ping",
    "issues",
    "issue_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request",
    "installation",
    "installation_repositories",
    "workitem.created",
    "workitem.updated",
    "workitem.commented",
    "git.pullrequest.created",
    "git.pullrequest.updated",
    "git.pullrequest.merged",
    "ms.vss-code.git-pullrequest-comment-event",
};
static const char *const known_outcomes[] = {"accepted", "ignored",   "duplicate", "unauthorized",
                                             "invalid",  "too_large", "error",     "off"};
static const char *const known_refusals[] = {
    "connections",  "connections_per_ip", "header_timeout", "body_too_slow", "body_budget",
    "large_bodies", "bad_request",        "misdirected",    "cross_origin",
};
#define NREFUSALS (sizeof(known_refusals) / sizeof(known_refusals[0]))
static atomic_uint_fast64_t refusals[NREFUSALS + 1]; /* the last one is "other" */
static const char *const known_trackers[] = {"github", "azure", "local"};

static const char *closed_set(const char *v, const char *const *set, size_t n, const char *other)
{
    for (size_t i = 0; v && i < n; i++)
        if (!strcmp(v, set[i]))
            return set[i];
    return other;
}

#define CLOSED(v, set, other) closed_set(v, set, sizeof(set) / sizeof(set[0]), other)

static void bump(series *table, size_t *n, const char *a, const char *b, const char *c,
                 const char *status)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < *n; i++) {
        series *s = &table[i];
        if (s->labels[0] == a && s->labels[1] == b && s->labels[2] == c &&
            !strcmp(s->status, status ? status : "")) {
            s->n++;
            goto out;
        }
    }
    if (*n < MAX_SERIES) {
        series *s = &table[(*n)++];
        s->labels[0] = a;
        s->labels[1] = b;
        s->labels[2] = c;
        snprintf(s->status, sizeof(s->status), "%s", status ? status : "");
        s->n = 1;
    }
out:
    pthread_mutex_unlock(&lock);
}

void metrics_http_count(const char *route, int status)
{
    char code[8];
    snprintf(code, sizeof(code), "%d", status >= 100 && status < 600 ? status : 0);
    /* Route names are static strings from the route table or "unknown". */
    bump(http, &nhttp, route ? route : "unknown", NULL, NULL, code);
}

void metrics_delivery_count(const char *tracker, const char *event, const char *outcome)
{
    bump(deliveries, &ndeliveries, CLOSED(tracker, known_trackers, "other"),
         CLOSED(event, known_events, "other"), CLOSED(outcome, known_outcomes, "other"), NULL);
}

void metrics_ack_observe(int64_t ns)
{
    if (ns < 0)
        ns = 0;
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < NBUCKETS && s > bucket_s[i])
        i++;
    atomic_fetch_add(&ack_buckets[i], 1);
    atomic_fetch_add(&ack_count, 1);
    atomic_fetch_add(&ack_sum_ns, (uint_fast64_t)ns);
}

void metrics_http_refused(const char *reason)
{
    size_t i = 0;
    while (i < NREFUSALS && (!reason || strcmp(reason, known_refusals[i])))
        i++;
    atomic_fetch_add(&refusals[i], 1);
}

/* Prometheus label values escape \, " and newline. */
static int put_label(buf *b, const char *v)
{
    int rc = 0;
    for (const char *p = v ? v : ""; *p && !rc; p++) {
        if (*p == '\\' || *p == '"')
            rc = buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            rc = buf_puts(b, "\\n");
        else
            rc = buf_putc(b, *p);
    }
    return rc;
}

/* One farm_deliveries_recorded line; its labels come from the store. */
static int put_delivery_series(buf *b, const store_count *c)
{
    int rc = buf_puts(b, "farm_deliveries_recorded{tracker=\"");
    if (!rc)
        rc = put_label(b, c->labels[0]);
    if (!rc)
        rc = buf_puts(b, "\",event=\"");
    if (!rc)
        rc = put_label(b, c->labels[1]);
    if (!rc)
        rc = buf_puts(b, "\",outcome=\"");
    if (!rc)
        rc = put_label(b, c->labels[2]);
    if (!rc)
        rc = buf_printf(b, "\"} %" PRId64 "\n", c->n);
    return rc;
}

static int render_own(buf *b)
{
    pthread_mutex_lock(&lock);
    int rc = buf_puts(b, "# HELP farm_http_requests_total HTTP requests answered, by route and "
                         "status.\n# TYPE farm_http_requests_total counter\n");
    for (size_t i = 0; i < nhttp && !rc; i++)
        rc = buf_printf(b, "farm_http_requests_total{route=\"%s\",status=\"%s\"} %" PRIu64 "\n",
                        http[i].labels[0], http[i].status, http[i].n);
    if (!rc)
        rc = buf_puts(b, "# HELP farm_webhook_deliveries_total Webhook deliveries answered by this "
                         "process, by tracker, event and outcome.\n"
                         "# TYPE farm_webhook_deliveries_total counter\n");
    for (size_t i = 0; i < ndeliveries && !rc; i++)
        rc = buf_printf(b,
                        "farm_webhook_deliveries_total{tracker=\"%s\",event=\"%s\","
                        "outcome=\"%s\"} %" PRIu64 "\n",
                        deliveries[i].labels[0], deliveries[i].labels[1], deliveries[i].labels[2],
                        deliveries[i].n);
    pthread_mutex_unlock(&lock);

    if (!rc)
        rc = buf_puts(b, "# HELP farm_http_refused_total Connections and requests refused or cut "
                         "off by the per-client limits and the header checks, by reason.\n"
                         "# TYPE farm_http_refused_total counter\n");
    for (size_t i = 0; i <= NREFUSALS && !rc; i++)
        rc = buf_printf(b, "farm_http_refused_total{reason=\"%s\"} %" PRIu64 "\n",
                        i < NREFUSALS ? known_refusals[i] : "other",
                        (uint64_t)atomic_load(&refusals[i]));
    if (!rc)
        rc = buf_puts(b, "# HELP farm_webhook_ack_seconds Time from a delivery's request headers "
                         "to its queued response.\n# TYPE farm_webhook_ack_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= NBUCKETS && !rc; i++) {
        cumulative += atomic_load(&ack_buckets[i]);
        if (i < NBUCKETS)
            rc = buf_printf(b, "farm_webhook_ack_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                            bucket_s[i], cumulative);
        else
            rc = buf_printf(b, "farm_webhook_ack_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                            cumulative);
    }
    if (!rc)
        rc = buf_printf(
            b, "farm_webhook_ack_seconds_sum %.9f\nfarm_webhook_ack_seconds_count %" PRIu64 "\n",
            (double)atomic_load(&ack_sum_ns) / 1e9, (uint64_t)atomic_load(&ack_count));
    return rc;
}

/* The store's part. Every read is made (a failed one counts in
 * store_errors) even once an append has failed; the first failed append's
 * code is returned. */
static int render_store(buf *b, store *s)
{
    int rc = 0;
    store_count *v = NULL;
    size_t n = 0;

    if (store_session_count_by_state(&v, &n, s) == 0) {
        rc = buf_puts(b, "# HELP farm_sessions Sessions by state.\n# TYPE farm_sessions gauge\n");
        for (const char *const *st = store_session_states(); *st && !rc; st++) {
            int64_t count = 0;
            for (size_t i = 0; i < n; i++)
                if (v[i].labels[0] && !strcmp(v[i].labels[0], *st))
                    count = v[i].n;
            rc = buf_printf(b, "farm_sessions{state=\"%s\"} %" PRId64 "\n", *st, count);
        }
        store_count_list_free(v, n);
    } else {
        atomic_fetch_add(&store_errors, 1);
    }

    int64_t queued = 0, leased = 0;
    if (store_job_count(&queued, &leased, s) == 0) {
        if (!rc)
            rc = buf_printf(b,
                            "# HELP farm_queue_depth Jobs waiting (queued) and being worked on "
                            "(leased).\n# TYPE farm_queue_depth gauge\n"
                            "farm_queue_depth{state=\"queued\"} %" PRId64 "\n"
                            "farm_queue_depth{state=\"leased\"} %" PRId64 "\n",
                            queued, leased);
    } else {
        atomic_fetch_add(&store_errors, 1);
    }

    v = NULL;
    n = 0;
    if (store_delivery_count(&v, &n, s) == 0) {
        if (!rc)
            rc = buf_puts(b, "# HELP farm_deliveries_recorded Deliveries in the store, by tracker, "
                             "event and outcome.\n# TYPE farm_deliveries_recorded gauge\n");
        for (size_t i = 0; i < n && !rc; i++)
            rc = put_delivery_series(b, &v[i]);
        store_count_list_free(v, n);
    } else {
        atomic_fetch_add(&store_errors, 1);
    }

    if (!rc) {
        buf model;
        buf_init(&model, 1 << 20);
        if (model_metrics_render(&model, s) == 0)
            rc = buf_append(b, model.data ? model.data : "", model.len);
        else
            atomic_fetch_add(&store_errors, 1);
        buf_free(&model);
    }

    store_stats st;
    store_stats_get(&st, s);
    if (!rc)
        rc = buf_printf(
            b,
            "# HELP farm_store_commits_total Group commits (one fsync each).\n"
            "# TYPE farm_store_commits_total counter\nfarm_store_commits_total %" PRIu64
            "\n# HELP farm_store_writes_total Writes kept by group commits.\n"
            "# TYPE farm_store_writes_total counter\nfarm_store_writes_total %" PRIu64
            "\n# HELP farm_store_failed_writes_total Writes rolled back.\n"
            "# TYPE farm_store_failed_writes_total counter\n"
            "farm_store_failed_writes_total %" PRIu64
            "\n# HELP farm_store_failed_commits_total Commits that failed.\n"
            "# TYPE farm_store_failed_commits_total counter\n"
            "farm_store_failed_commits_total %" PRIu64
            "\n# HELP farm_store_max_batch Most writes in one commit.\n"
            "# TYPE farm_store_max_batch gauge\nfarm_store_max_batch %" PRIu64
            "\n# HELP farm_store_queued_writes Writes waiting for a commit.\n"
            "# TYPE farm_store_queued_writes gauge\nfarm_store_queued_writes %" PRIu64 "\n",
            st.commits, st.writes, st.failed_writes, st.failed_commits, st.max_batch, st.queued);
    return rc;
}

int metrics_render(buf *out, farm *f)
{
    int rc = render_own(out);
    if (!rc && f)
        rc = render_store(out, farm_store(f));
    if (!rc && f)
        rc = metrics_render_scheduler(out, f);
    if (!rc)
        rc = buf_printf(out,
                        "# HELP farm_metrics_store_errors Store reads that failed while "
                        "rendering metrics.\n# TYPE farm_metrics_store_errors counter\n"
                        "farm_metrics_store_errors %" PRIu64 "\n",
                        (uint64_t)atomic_load(&store_errors));
    return rc ? FARM_ETOOBIG : 0;
}
