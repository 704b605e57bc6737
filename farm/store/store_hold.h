/*
 * store_hold.h - the hold on an issue (`/farm hold`, docs/commands.md).
 *
 * While an issue is on hold nothing new starts on it or its pull request.
 * A hold is one setting record (store_job.h), so every backend keeps it
 * without a table of its own: key "hold/<tracker>/<repo>#<issue>", value
 * {"by", "since_ms", "parked": [{"session", "kind"}]}. "parked" lists the
 * work jobs a run found held and ended without starting (farm/run); lifting
 * the hold hands them back so they can be queued again (farm/intake).
 * Written by farm/intake (hold, unhold) and farm/run (parking); read by
 * those and the API.
 */
#ifndef FARM_FARM_STORE_STORE_HOLD_H
#define FARM_FARM_STORE_STORE_HOLD_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* A job a run parked while the issue was on hold. */
typedef struct store_hold_parked {
    int64_t session_id;
    char kind[16]; /* "run", "revise", "answer" */
} store_hold_parked;

/* Whether the issue is on hold: *by is a heap string (who put it on hold)
 * the caller frees, or NULL when it is not. Returns 0 or a store error. */
int store_tx_hold_get(char **by, store_tx *tx, const char *tracker, const char *repo,
                      int64_t number);
int store_hold_get(char **by, store *s, const char *tracker, const char *repo, int64_t number);

/* Put the issue on hold (by: who). Returns 0 or a store error. */
int store_tx_hold_set(store_tx *tx, const char *tracker, const char *repo, int64_t number,
                      const char *by);

/* When the issue is on hold: add (session_id, kind) to its parked jobs and
 * *held = 1; else *held = 0 and nothing is written. Returns 0 or a store
 * error. */
int store_tx_hold_park(int *held, store_tx *tx, const char *tracker, const char *repo,
                       int64_t number, int64_t session_id, const char *kind);

/* Lift the hold: *out (freed with free(), NULL when none) and *n are the
 * jobs parked under it. Lifting an issue not on hold gives none. Returns 0
 * or a store error. */
int store_tx_hold_lift(store_hold_parked **out, size_t *n, store_tx *tx, const char *tracker,
                       const char *repo, int64_t number);

#endif
