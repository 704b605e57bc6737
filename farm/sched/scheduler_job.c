/*
 * scheduler_job.c - what a run's outcome does to its job (done, back in the
 * queue with a backoff, failed with its session, cancelled, released at
 * shutdown), and cancelling a session from the API, the CLI or a test.
 */
#include "scheduler_internal.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/store_job.h"
#include "farm/store/store_run.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- ending a job ---------------------------------------------------------- */

typedef struct fail_arg {
    const store_job *job;
    const char *owner;
    const char *reason;
    int64_t seq; /* the event appended, 0 when none */
} fail_arg;

/* The job failed for good: the job, the session (unless it ended already)
 * and an event saying why, in one write. */
static int fail_fn(store_tx *tx, void *arg)
{
    fail_arg *a = arg;
    store_session *s = NULL;
    int rc = store_tx_job_finish(tx, a->job->id, a->owner, "failed", a->reason);
    if (rc || a->job->session_id <= 0)
        return rc;
    rc = store_tx_session_get(&s, tx, a->job->session_id);
    if (rc == FARM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (!store_session_state_is_final(s->state)) {
        char *body = sched_json_text(json_pack("{s:s,s:I,s:s,s:I}", "reason", a->reason, "job",
                                               (json_int_t)a->job->id, "kind", a->job->kind,
                                               "attempts", (json_int_t)a->job->attempts));
        rc = body ? 0 : FARM_ENOMEM;
        if (!rc)
            rc = store_tx_session_state_set(tx, s->id, "failed");
        if (!rc)
            rc = store_tx_event_append(&a->seq, tx, s->id, "failed", "farm", body);
        free(body);
    }
    store_session_free(s);
    return rc;
}

static void job_fail(scheduler *sc, const store_job *job, const char *reason)
{
    fail_arg a = {job, sc->owner, reason, 0};
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)job->id);
    int rc = store_write(sc->f->store, fail_fn, &a);
    if (rc) {
        log_error("cannot record a failed job", "job", id, "error", farm_error_last());
        return;
    }
    log_warn("job failed", "job", id, "kind", job->kind, "reason", reason);
    if (a.seq > 0)
        stream_hub_session_notify(sc->f->streams, job->session_id, a.seq);
}

static int64_t backoff_ms(const scheduler *sc, int64_t attempts)
{
    int64_t d = sc->o.retry_base_ms > 0 ? sc->o.retry_base_ms : 1;
    for (int64_t i = 1; i < attempts && d < sc->o.retry_max_ms; i++)
        d *= 2;
    return d < sc->o.retry_max_ms ? d : sc->o.retry_max_ms;
}

/* What the run's outcome means for its job. */
void sched_job_end(scheduler *sc, slot *sl, const store_job *job, int rc, const char *error)
{
    store *st = sc->f->store;
    char id[32];
    int stop, wrc = 0;

    pthread_mutex_lock(&sc->lock);
    stop = sl->stop;
    pthread_mutex_unlock(&sc->lock);
    snprintf(id, sizeof(id), "%lld", (long long)job->id);

    if (stop == STOP_LOST) {
        log_warn("lease lost: the job is another owner's now", "job", id);
        return;
    }
    if (rc == 0) {
        wrc = store_job_finish(st, job->id, sc->owner, "done", NULL);
    } else if (stop == STOP_SHUTDOWN && (rc == FARM_ECANCELLED || rc == FARM_EAGAIN)) {
        /* back in the queue, due at once, the attempt given back */
        wrc = store_job_retry(st, job->id, sc->owner, clock_wall_ms(), NULL, 1);
    } else if (rc == FARM_ECANCELLED || stop == STOP_CANCEL) {
        wrc = store_job_finish(st, job->id, sc->owner, "cancelled", NULL);
    } else if (rc == FARM_EAGAIN) {
        if (job->attempts >= sc->o.max_attempts) {
            char reason[REASON_MAX];
            snprintf(reason, sizeof(reason), "gave up after %lld attempts: %s",
                     (long long)job->attempts, error);
            job_fail(sc, job, reason);
        } else {
            int64_t delay = backoff_ms(sc, job->attempts);
            char in[32];
            snprintf(in, sizeof(in), "%lld", (long long)delay);
            wrc = store_job_retry(st, job->id, sc->owner, clock_wall_ms() + delay, error, 0);
            if (!wrc)
                log_info("job will be tried again", "job", id, "in_ms", in, "error", error);
        }
    } else {
        char reason[REASON_MAX];
        snprintf(reason, sizeof(reason), "the job cannot run: %s", error);
        job_fail(sc, job, reason);
    }
    if (wrc == FARM_ECONFLICT)
        log_warn("lease lost before the job ended", "job", id);
    else if (wrc)
        log_error("cannot record a job's end", "job", id, "error", farm_error_last());
}

/* ---- cancelling a session ------------------------------------------------------- */

typedef struct cancel_arg {
    int64_t session_id;
    const char *actor;
    int64_t job, seq;
} cancel_arg;

static int cancel_fn(store_tx *tx, void *arg)
{
    cancel_arg *a = arg;
    store_session *s = NULL;
    int rc = store_tx_session_get(&s, tx, a->session_id);
    if (rc)
        return rc;
    if (store_session_state_is_final(s->state)) {
        farm_error_set("session %lld has ended already (%s)", (long long)s->id, s->state);
        store_session_free(s);
        return FARM_ECONFLICT;
    }
    store_session_free(s);
    char *body = sched_json_text(json_pack("{s:s}", "by", a->actor ? a->actor : "unknown"));
    if (!body) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    rc = store_tx_event_append(&a->seq, tx, a->session_id, "cancel_requested", a->actor, body);
    free(body);
    if (!rc)
        rc = store_tx_job_insert(&a->job, tx, "cancel", a->session_id, 0);
    return rc;
}

int farm_session_cancel(int64_t *out_job, farm *f, int64_t session_id, const char *actor)
{
    cancel_arg a = {session_id, actor, 0, 0};
    assert(out_job && f);
    *out_job = 0;
    int rc = store_write(f->store, cancel_fn, &a);
    if (rc)
        return rc;
    stream_hub_session_notify(f->streams, session_id, a.seq);
    farm_jobs_kick(f);
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)session_id);
    log_info("session cancel requested", "session", id, "by", actor ? actor : "unknown");
    *out_job = a.job;
    return 0;
}
