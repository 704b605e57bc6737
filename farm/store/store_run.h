/*
 * store_run.h - the store calls the pipeline needs beyond store.h: a
 * session's state, branch, counters and pull request draft flag, and reading its log by event kind
 * (the step checkpoints, questions, answers and reviews a run looks back
 * on). It calls the store's backend (store_backend.h: the run table;
 * sql_run.c for both backends); farm/run, farm/sched, farm/intake, farm/report
 * and farm/digest call it.
 *
 * The tx functions run inside a write function (store.h), so a state change
 * lands in the same transaction as its event and its outbox entries.
 */
#ifndef FARM_FARM_STORE_STORE_RUN_H
#define FARM_FARM_STORE_STORE_RUN_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* Read one session inside a write. *out is freed with store_session_free().
 * Returns 0, FARM_ENOTFOUND or FARM_EIO. */
int store_tx_session_get(store_session **out, store_tx *tx, int64_t id);

/* Set a session's state (one of store_session_states()). Returns 0,
 * FARM_EINVALID (unknown state), FARM_ENOTFOUND or FARM_EIO. */
int store_tx_session_state_set(store_tx *tx, int64_t id, const char *state);

/* Set the session's branch. Returns 0, FARM_ENOTFOUND or FARM_EIO. */
int store_tx_session_branch_set(store_tx *tx, int64_t id, const char *branch);

/* Count one more run: *out_runs is the session's run count after it. */
int store_tx_session_run_add(int64_t *out_runs, store_tx *tx, int64_t id);

/* Add agent time and cost to the session's counters. */
int store_tx_session_usage_add(store_tx *tx, int64_t id, double agent_seconds, double cost);

/* Model spend, for the budgets: day is the UTC day number (ms / 86400000).
 * Add usd to a repository's day; read a repository's day and everyone's.
 * Return 0 or the store's error. */
int store_tx_spend_add(store_tx *tx, int64_t day, const char *repo, double usd);
int store_spend_get(double *repo_usd, double *all_usd, store *s, int64_t day, const char *repo);

/* An amount with up to two labels (unused ones are NULL). */
typedef struct store_amount {
    char *labels[2];
    double value;
} store_amount;

void store_amount_list_free(store_amount *v, size_t n);

/* Each repository's spend on a day (labels[0] = repository), by repository.
 * *out is freed with store_amount_list_free(). Returns 0 or FARM_EIO. */
int store_spend_list(store_amount **out, size_t *n, store *s, int64_t day);

/* The model calls' totals for /metrics, kept by the same writes that record
 * the calls so every process's calls count: add delta to the counter name
 * (a metric's name, "farm_model_tokens_total") with labels (its Prometheus
 * label text, 'model="m",kind="input"'; at most 512 bytes). Read them all
 * (labels[0] = name, labels[1] = label text), by name then labels. */
int store_tx_model_stat_add(store_tx *tx, const char *name, const char *labels, double delta);
int store_model_stat_list(store_amount **out, size_t *n, store *s);

/* Record whether the session's pull request is a draft and why (reason: a
 * few words, kept only for a draft; NULL: not said). Returns 0,
 * FARM_ENOTFOUND or FARM_EIO. */
int store_tx_session_pr_draft_set(store_tx *tx, int64_t id, int draft, const char *reason);

/* A session's events whose kind is one of kinds (NULL-terminated), with seq
 * > after_seq, oldest first, at most limit (<= 0: STORE_LIST_DEFAULT;
 * capped at STORE_LIST_MAX). *out is freed with store_event_list_free().
 * Returns 0 or FARM_EIO. */
int store_event_list_kinds(store_event **out, size_t *n, store *s, int64_t session_id,
                           const char *const *kinds, int64_t after_seq, int limit);

/* The newest event of one of kinds with seq > after_seq; *out is NULL when
 * there is none (freed with store_event_list_free(*out, 1)). Returns 0 or
 * FARM_EIO. */
int store_event_last_kind(store_event **out, store *s, int64_t session_id, const char *const *kinds,
                          int64_t after_seq);

#endif
