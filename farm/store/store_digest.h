/*
 * store_digest.h - the reads behind the digest and the review queue: each
 * session's newest "telling" events (steps, test results, run ends,
 * failures, questions), and the totals of a window. It calls the store's
 * backend (store_backend.h: the digest table; sql_digest.c for both backends);
 * farm/digest/digest.c calls it and turns them into facts: nothing here
 * knows what they mean.
 */
#ifndef FARM_FARM_STORE_STORE_DIGEST_H
#define FARM_FARM_STORE_STORE_DIGEST_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* At most this many sessions per store_digest_events() call. */
#define STORE_DIGEST_IDS_MAX STORE_LIST_MAX

/* For each session of ids (at most STORE_DIGEST_IDS_MAX), its newest events
 * of the kinds step, test_result, run_started, run_finished, pushed, failed,
 * question, answer and plan: at most per_session (1..64) each, newest first,
 * sessions in the order given. *out is an array of *n events (NULL when
 * none) freed with store_event_list_free(). One read connection serves the
 * whole call. Returns 0, FARM_EINVALID (too many ids, bad per_session),
 * FARM_ENOMEM or FARM_EIO. */
int store_digest_events(store_event **out, size_t *n, store *s, const int64_t *ids, size_t nids,
                        int per_session);

/* Totals over the sessions updated at or after since_ms. */
typedef struct store_digest_totals {
    int64_t sessions;     /* sessions touched in the window */
    int64_t prs;          /* of them, in review or done */
    int64_t failed;       /* of them, failed */
    int64_t runs;         /* their runs (all time: a session's counters are not per window) */
    double agent_seconds; /* their agent time */
    double cost;          /* their cost, USD */
} store_digest_totals;

/* Returns 0 or FARM_EIO. */
int store_digest_totals_get(store_digest_totals *out, store *s, int64_t since_ms);

#endif
