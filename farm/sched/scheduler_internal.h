/*
 * scheduler_internal.h - what the scheduler's files share: the scheduler's
 * and its slots' fields and the helpers one file calls in another. Nothing
 * outside farm/sched/scheduler*.c includes this.
 *
 * scheduler.c: the scheduler thread, slots, start and stop.
 * scheduler_job.c: what a run's outcome does to its job; cancelling a session.
 * scheduler_warm.c: warm slots, prepared ahead of demand.
 */
#ifndef FARM_FARM_SCHED_SCHEDULER_INTERNAL_H
#define FARM_FARM_SCHED_SCHEDULER_INTERNAL_H

#include "scheduler.h"
#include "farm/handle/handle.h"

#include <jansson.h>
#include <pthread.h>
#include <time.h>

#define SLOTS_MAX     SCALING_MAX_AGENTS_CAP
#define NOTIFIED_MAX  256   /* jobs remembered as told they wait for memory */
#define WARM_RETRY_MS 30000 /* after a warm slot failed to prepare */
#define REASON_MAX    1024

enum { SLOT_IDLE, SLOT_BUSY, SLOT_EXITED };
enum { STOP_NONE, STOP_CANCEL, STOP_LOST, STOP_SHUTDOWN };

typedef struct scheduler scheduler;

typedef struct slot {
    scheduler *sc;
    pthread_t thread;
    pthread_cond_t wake; /* a job was handed over, or stopping */
    int state;           /* SLOT_* */
    store_job *job;      /* the job handed over (owned), NULL when idle */
    pipeline_ctl ctl;
    int stop;              /* STOP_*: why ctl.cancel was set */
    int64_t idle_since_ms; /* clock_mono_ms() */
} slot;

struct scheduler {
    farm *f;
    scheduler_options o;
    char owner[128];
    char role[16]; /* "serve" or "worker" (store_node.h) */

    pthread_mutex_t lock;
    pthread_cond_t kick;      /* the scheduler thread waits here */
    pthread_cond_t warm_wake; /* the warm thread waits here */
    int kicked, stopping;
    struct store_notify_sub *notify; /* other nodes' jobs wake us (store_notify.h) */
    pthread_t thread, warm_thread;
    int thread_started, warm_started;

    slot *slots[SLOTS_MAX];
    int nslots;
    pipeline_warm *warm[SLOTS_MAX];
    int nwarm;
    size_t warm_rr;        /* round robin over the configured repositories */
    char active_repo[256]; /* the repository of the newest job, preferred for warm slots */
    int64_t warm_retry_ms; /* clock_mono_ms() before which a failed prepare is not retried */
    int64_t warm_hold_ms;  /* clock_mono_ms() before which none is prepared (a run starts) */
    int64_t sweep_ms;      /* clock_mono_ms() of the next sweep of work directories */

    scaling_limits lim;
    int64_t last_heartbeat_ms;
    int64_t started_ms;             /* clock_wall_ms() at start: the node's row (store_node.h) */
    int64_t notified[NOTIFIED_MAX]; /* jobs given their "waiting" event (a ring) */
    size_t nnotified;
    uint64_t jobs_started, admission_waits, leases_lost;
};

/* An absolute CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait
 * on the scheduler's condition variables (made by sched_cond_init_mono). */
void sched_deadline_after(struct timespec *ts, int64_t ms);
int sched_cond_init_mono(pthread_cond_t *c);

/* How long an idle slot lives; slots running a job. Lock held. */
int sched_idle_timeout_ms(const scheduler *sc);
int sched_busy_count(const scheduler *sc);

/* v as compact JSON text (heap, or NULL); the reference is stolen. */
char *sched_json_text(json_t *v);

/* What the outcome rc of a run (error: its message) does to the job the
 * slot ran (scheduler_job.c). */
void sched_job_end(scheduler *sc, slot *sl, const store_job *job, int rc, const char *error);

/* Take a warm slot for repo (NULL when none), lock held; give back one a
 * run did not adopt, lock not held; the warm thread (scheduler_warm.c). */
pipeline_warm *sched_warm_take(scheduler *sc, const char *repo);
void sched_warm_return(scheduler *sc, pipeline_warm *w);
void *sched_warm_main(void *arg);

#endif
