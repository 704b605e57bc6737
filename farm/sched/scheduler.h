/*
 * scheduler.h - sched: the scheduler and autoscaler: leases due jobs from the
 * store within the scaling limits and runs each on a slot thread.
 *
 * farm/sched owns running the queue: the scheduler and slot threads
 * (scheduler.c), what a run's outcome does to its job and cancelling a
 * session (scheduler_job.c), the warm slots (scheduler_warm.c) and the
 * scaling limits (scaling.h). It calls the rooms below it: farm/run (a job
 * is a pipeline run; a warm slot is a prepared pipeline_warm), farm/handle,
 * farm/store, farm/config and base. farm/intake wakes it (farm_jobs_kick()),
 * farm/farm.c stops it, the HTTP front reads it and changes its limits
 * (webhook/route_scaling.c) and the CLI starts it (cli/serve_common.c).
 *
 * One scheduler thread wakes when a job is committed (farm_jobs_kick()), a
 * setting changes, a slot frees, or every poll interval (jobs written by
 * another process, not-before times coming due). Each wake it re-reads the
 * limits in force (scaling.h), extends the leases of the jobs it runs when
 * the heartbeat is due (a lease found lost cancels that run), stops runs
 * whose session was cancelled, and leases due jobs while capacity allows:
 * max_agents live leases in total and max_per_repo per repository (counted
 * in the store, over every process), never two for one session, and enough
 * free memory on the host (MemAvailable above sandbox.memory_mb plus a
 * reserve; a job held back for memory gets one "waiting" event in its log).
 *
 * Slots are threads made on demand up to max_agents that exit after
 * idle_timeout_s without work. A warm thread keeps min_warm prepared
 * worktrees (pipeline_warm) ready and hands one to a run of the same
 * repository through ctl->warm.
 *
 * A run's outcome decides its job: 0 done; FARM_EAGAIN back in the queue
 * with an exponential backoff (failed, with the session, after
 * max_attempts); FARM_ECANCELLED cancelled (or, at shutdown, put back for
 * the next start; or, with the lease lost, left to its new owner); any
 * other code failed, with the session.
 */
#ifndef FARM_FARM_SCHED_SCHEDULER_H
#define FARM_FARM_SCHED_SCHEDULER_H

#include "scaling.h"
#include "farm/run/pipeline.h"
#include "farm/store/store.h"

#include <stdint.h>

typedef struct farm farm;

typedef int (*scheduler_run_fn)(farm *f, const store_job *job, pipeline_ctl *ctl);
typedef int (*scheduler_warm_prepare_fn)(pipeline_warm **out, farm *f, const char *repo);
typedef void (*scheduler_warm_free_fn)(pipeline_warm *w);
/* Bytes of memory available for new work, or -1 when unknown (admit). */
typedef int64_t (*scheduler_mem_fn)(void *arg);

typedef struct scheduler_options {
    scheduler_run_fn run;                   /* NULL: pipeline_run */
    scheduler_warm_prepare_fn warm_prepare; /* NULL: pipeline_warm_prepare */
    scheduler_warm_free_fn warm_free;       /* NULL: pipeline_warm_free */
    scheduler_mem_fn mem_available;         /* NULL: MemAvailable from /proc/meminfo */
    void *mem_arg;
    int mem_reserve_mb;  /* kept free beyond sandbox.memory_mb per run: 512 */
    int poll_ms;         /* look at the store at least this often: 1000 */
    int lease_ms;        /* lease length: 30000 */
    int heartbeat_ms;    /* lease extension interval: 10000 */
    int idle_timeout_ms; /* > 0: overrides scaling.idle_timeout_s (tests) */
    int retry_base_ms;   /* first backoff after FARM_EAGAIN: 30000, doubling */
    int retry_max_ms;    /* backoff cap: 900000 */
    int max_attempts;    /* a job fails after this many: 5 */
    int warm_max_age_ms; /* a warm slot older than this is prepared again: 300000 */
    int warm_hold_ms;    /* no warm slot is prepared this long after a run starts, so
                            the preparation (a mirror fetch) does not slow the run's own
                            start: 1000 */
    const char *owner;   /* lease owner id; NULL: "host:pid:random" */
    const char *role;    /* this process's role among the nodes (store_node.h): NULL: "serve" */
} scheduler_options;

#define SCHEDULER_OPTIONS_INIT                                                                     \
    {                                                                                              \
        NULL, NULL, NULL, NULL, NULL, 512, 1000, 30000, 10000, 0, 30000, 900000, 5, 300000, 1000,  \
            NULL, NULL                                                                             \
    }

/* Start f's scheduler (opts may be NULL for the defaults; the strings in it
 * are copied). Starting a started scheduler does nothing. Returns 0,
 * FARM_ENOMEM or FARM_EIO (a thread would not start). */
int scheduler_start(farm *f, const scheduler_options *opts);

/* Stop taking jobs, cancel the runs at work (each stops at its next
 * checkpoint and its job goes back to the queue for the next start), wait
 * for the slot threads, drop the warm slots. A stopped farm is accepted. */
void scheduler_stop(farm *f);

/* Wake the scheduler now (a job was committed, a setting changed). Safe
 * from any thread, with or without a started scheduler. */
void farm_jobs_kick(farm *f);

typedef struct scheduler_stats {
    int started;              /* 0 when no scheduler runs in this process */
    int slots;                /* slot threads alive */
    int busy;                 /* of which running a job */
    int warm;                 /* warm slots prepared */
    scaling_limits limits;    /* the limits the scheduler last read */
    uint64_t jobs_started;    /* jobs leased and run since start */
    uint64_t admission_waits; /* times a due job waited for memory */
    uint64_t leases_lost;     /* runs stopped because another owner took the lease */
    char owner[128];          /* the lease owner id */
} scheduler_stats;

/* What f's scheduler is doing; out->started is 0 (and the rest zero) when it
 * is not started. */
void scheduler_stats_get(scheduler_stats *out, farm *f);

/* Cancel a session: in one write, append a "cancel_requested" event (actor
 * is who asked, may be NULL) and queue a "cancel" job; then wake the
 * scheduler, which stops a run at work on it (here or, through the store,
 * in another process) before the cancel job ends the session. *out_job is
 * the cancel job's id. Returns 0, FARM_ENOTFOUND (no such session),
 * FARM_ECONFLICT (the session has ended already) or FARM_EIO. */
int farm_session_cancel(int64_t *out_job, farm *f, int64_t session_id, const char *actor);

#endif
