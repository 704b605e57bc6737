/*
 * store_job.h - leasing the durable job queue, and the runtime settings
 * table: the store calls the scheduler needs beyond store.h. It owns the
 * lease rules below and the setting records; it calls the store's backend
 * (store_backend.h: the job and setting tables; sql_job.c and
 * sql_setting.c); farm/sched and the scaling API
 * (webhook/route_scaling.c) call it.
 *
 * A job is worked on by whoever holds its lease: the owner id and an expiry
 * time written by one conditional UPDATE, so two schedulers (threads or
 * processes sharing the store) never both win one job. The owner extends
 * the lease while it works (heartbeat); a lease left to expire (its process
 * died) is taken over by the next scheduler that looks. Every change after
 * the lease is conditional on still holding it: an owner that lost its
 * lease changes nothing.
 *
 * Job states: queued -> leased -> done | failed | cancelled, or back to
 * queued with a later not-before time (retry) or at once (released at
 * shutdown).
 */
#ifndef FARM_FARM_STORE_STORE_JOB_H
#define FARM_FARM_STORE_STORE_JOB_H

#include "store.h"

#include <stdint.h>

/* What a lease may take: capacity counted over every live lease in the
 * store (all owners), so the limits hold across processes. */
typedef struct store_lease_req {
    const char *owner; /* the lease owner id ("host:pid:random") */
    int64_t lease_ms;  /* how long the lease lasts unless extended */
    int max_total;     /* live leases overall stay below this (<= 0: no limit) */
    int max_per_repo;  /* live leases of one repository stay below this (<= 0: none) */
} store_lease_req;

/* Lease the next due job: queued with not_before <= now, or leased with an
 * expired lease (taken over), whose session has no other live lease, within
 * the limits of req. "cancel" jobs go first, then by not-before time and
 * id. The lease counts one attempt. *out (NULL when nothing can be taken:
 * returns 0) is freed with store_job_free(). Returns 0, FARM_EINVALID or
 * FARM_EIO. */
int store_job_lease(store_job **out, store *s, const store_lease_req *req);

/* The job store_job_lease() would take if there were capacity and memory,
 * without taking it (to say why it waits). *out may be NULL on 0. */
int store_job_peek(store_job **out, store *s, const store_lease_req *req);

/* Extend the leases of owner on the jobs ids[0..n) to now + lease_ms.
 * lost[i] is set to 1 for each job whose lease owner is no longer `owner`
 * (taken over, or finished by someone else), 0 otherwise. One write for all.
 * Returns 0 or FARM_EIO. */
int store_job_lease_extend(int *lost, store *s, const char *owner, const int64_t *ids, size_t n,
                           int64_t lease_ms);

/* End a leased job: state "done", "failed" or "cancelled" (error may be
 * NULL, kept as last_error). Returns 0, FARM_ECONFLICT when owner does not
 * hold the lease any more (nothing changed), FARM_EINVALID or FARM_EIO. */
int store_job_finish(store *s, int64_t id, const char *owner, const char *state, const char *error);
int store_tx_job_finish(store_tx *tx, int64_t id, const char *owner, const char *state,
                        const char *error);

/* Put a leased job back in the queue, due at not_before_ms, keeping the
 * attempts count (error, may be NULL, is kept as last_error). A shutdown
 * passes now and release = 1, which also gives the attempt back.
 * Returns 0, FARM_ECONFLICT (lease lost) or FARM_EIO. */
int store_job_retry(store *s, int64_t id, const char *owner, int64_t not_before_ms,
                    const char *error, int release);

/* Whether session_id's work should stop: the session is cancelled, or a
 * "cancel" job for it waits. *out is 1 or 0. Returns 0 or FARM_EIO. */
int store_job_session_stopping(int *out, store *s, int64_t session_id);

/* session_id's jobs still to run or at work (*live, queued or leased) and
 * the lease owner of the newest leased one (*owner, NULL when none; freed
 * with free()). Returns 0, FARM_ENOMEM or FARM_EIO. */
int store_job_session_live(int64_t *live, char **owner, store *s, int64_t session_id);

/* Jobs by state ("queued", "leased", "done", "failed", "cancelled"):
 * labels[0] = state. Freed with store_count_list_free(). */
int store_job_count_by_state(store_count **out, size_t *n, store *s);

/* ---- settings ------------------------------------------------------------- */

/* A runtime setting (the `setting` table): key and value are text. */
typedef struct store_setting {
    char *key;
    char *value;
    int64_t updated_ms;
} store_setting;

void store_setting_list_free(store_setting *v, size_t n);

/* Every setting whose key starts with prefix ("" or NULL: all), by key.
 * *out is freed with store_setting_list_free(). Returns 0 or FARM_EIO. */
int store_setting_list(store_setting **out, size_t *n, store *s, const char *prefix);

/* Set (insert or replace) one setting inside a write. Returns 0,
 * FARM_EINVALID (empty key, NULL value) or FARM_EIO. */
int store_tx_setting_set(store_tx *tx, const char *key, const char *value);

/* One setting's value inside a write; *out is a heap string the caller
 * frees. Returns 0, FARM_ENOTFOUND, FARM_ENOMEM or FARM_EIO. */
int store_tx_setting_get(char **out, store_tx *tx, const char *key);

/* Remove one setting inside a write (absent is fine). */
int store_tx_setting_delete(store_tx *tx, const char *key);

#endif
