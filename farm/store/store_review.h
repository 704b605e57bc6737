/*
 * store_review.h - the store calls the review loop needs beyond store.h and
 * store_run.h: which jobs a session has waiting or at work, so a new trigger
 * attaches to the waiting one instead of queueing another, and making a
 * waiting job due at once (`/farm run`). It calls the store's backend
 * (store_backend.h: the review table; sql_review.c for both backends);
 * farm/intake/review.c calls it.
 *
 * Both run inside a write function (store.h), so the decision and the job
 * it leads to are one transaction.
 */
#ifndef FARM_FARM_STORE_STORE_REVIEW_H
#define FARM_FARM_STORE_STORE_REVIEW_H

#include "store.h"

#include <stdint.h>

/* A session's work jobs ("run", "revise", "answer", "plan"; and "update",
 * which counts as running but is never the queued one a trigger attaches
 * to): *queued_id is the oldest one still queued (0 when none) and
 * *queued_due_ms its not-before time; *running is 1 when one is leased (a
 * run at work). Returns 0 or
 * FARM_EIO. */
int store_tx_review_jobs(int64_t *queued_id, int64_t *queued_due_ms, int *running, store_tx *tx,
                         int64_t session_id);

/* Make queued job id due no later than due_ms (an earlier not-before time
 * stays). A job no longer queued is left alone. Returns 0 or FARM_EIO. */
int store_tx_review_job_due(store_tx *tx, int64_t id, int64_t due_ms);

/* The active sessions of a repository that have a pull request open (the
 * ones a push to its base branch concerns), oldest first, at most
 * STORE_LIST_MAX: *ids is a heap array of *n ids (NULL when none) the
 * caller frees. Returns 0, FARM_ENOMEM or FARM_EIO. */
int store_tx_review_open_prs(int64_t **ids, size_t *n, store_tx *tx, const char *tracker_name,
                             const char *repo);

/* The oldest queued job of `kind` of a session: *id, 0 when none.
 * Returns 0 or FARM_EIO. */
int store_tx_review_job_queued(int64_t *id, store_tx *tx, int64_t session_id, const char *kind);

/* The kind of a session's newest job other than "cancel" ("plan", "run",
 * "revise", ...), whatever its state, into kind (n bytes; "" when the
 * session has none): what `/farm retry` takes up again. Returns 0 or
 * FARM_EIO. */
int store_tx_review_last_job_kind(char *kind, size_t n, store_tx *tx, int64_t session_id);

/* The CI fix loop's debounce (farm/intake/ci.c): when session_id has a
 * "ci" job still queued, move its not-before time to due_ms (later or
 * earlier) and set *out_id to it; else *out_id is 0. Returns 0, FARM_EIO,
 * or FARM_EUNSUPPORTED from a backend without it. */
int store_tx_review_ci_job_defer(int64_t *out_id, store_tx *tx, int64_t session_id, int64_t due_ms);

#endif
