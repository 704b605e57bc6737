/*
 * scheduler.c - leasing due jobs within the scaling limits and running each
 * on a slot thread; memory admission; lease heartbeats; stopping runs whose
 * session was cancelled (see scheduler.h for the whole picture; job
 * outcomes and cancel in scheduler_job.c, warm slots in scheduler_warm.c).
 *
 * Threads: the scheduler thread (leases, heartbeats, cancel checks), one
 * thread per slot (runs a job, waits for the next, exits when idle too
 * long) and the warm thread (prepares worktrees ahead of demand; slow, so
 * never on the scheduler thread). One mutex guards the scheduler's fields;
 * nothing slow runs under it.
 */
#include "scheduler_internal.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/store_job.h"
#include "farm/store/store_node.h"
#include "farm/store/store_notify.h"
#include "farm/store/store_run.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* f->sched is read by farm_jobs_kick() from any thread; this guards it
 * against scheduler_stop() freeing the scheduler underneath. */
static pthread_mutex_t sched_ptr_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- memory ---------------------------------------------------------------- */

static int64_t meminfo_available(void *arg)
{
    (void)arg;
    FILE *fp = fopen("/proc/meminfo", "r");
    char line[256];
    long long kb = -1;
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
            break;
    fclose(fp);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

/* ---- small helpers ------------------------------------------------------------ */

void sched_deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int sched_cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

int sched_idle_timeout_ms(const scheduler *sc)
{
    if (sc->o.idle_timeout_ms > 0)
        return sc->o.idle_timeout_ms;
    return sc->lim.value[SCALING_IDLE_TIMEOUT] * 1000;
}

int sched_busy_count(const scheduler *sc)
{
    int n = 0;
    for (int i = 0; i < sc->nslots; i++)
        n += sc->slots[i]->state == SLOT_BUSY;
    return n;
}

char *sched_json_text(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return s;
}

/* ---- slots ----------------------------------------------------------------- */

static void slot_run(scheduler *sc, slot *sl, store_job *job)
{
    store_session *s = NULL;
    char error[REASON_MAX] = "";
    int rc;

    /* a warm slot for the job's repository, when one is ready */
    if (job->session_id > 0 && store_session_get(&s, sc->f->store, job->session_id) == 0) {
        pthread_mutex_lock(&sc->lock);
        snprintf(sc->active_repo, sizeof(sc->active_repo), "%s", s->repo);
        if (strcmp(job->kind, "cancel") != 0)
            sl->ctl.warm = sched_warm_take(sc, s->repo);
        pthread_mutex_unlock(&sc->lock);
        store_session_free(s);
    }
    rc = sc->o.run(sc->f, job, &sl->ctl);
    if (rc)
        snprintf(error, sizeof(error), "%s", farm_error_last());
    pipeline_warm *left = sl->ctl.warm;
    sl->ctl.warm = NULL;
    sched_warm_return(sc, left);
    sched_job_end(sc, sl, job, rc, error);
}

static void *slot_main(void *arg)
{
    slot *sl = arg;
    scheduler *sc = sl->sc;

    pthread_mutex_lock(&sc->lock);
    for (;;) {
        while (!sl->job && !sc->stopping) {
            int64_t left = sl->idle_since_ms + sched_idle_timeout_ms(sc) - clock_mono_ms();
            if (left <= 0)
                break;
            struct timespec ts;
            sched_deadline_after(&ts, left);
            pthread_cond_timedwait(&sl->wake, &sc->lock, &ts);
        }
        if (!sl->job)
            break; /* idle too long, or stopping */
        store_job *job = sl->job;
        pthread_mutex_unlock(&sc->lock);
        slot_run(sc, sl, job);
        pthread_mutex_lock(&sc->lock);
        sl->job = NULL;
        store_job_free(job);
        sl->state = SLOT_IDLE;
        sl->stop = STOP_NONE;
        sl->ctl.cancel = 0;
        sl->idle_since_ms = clock_mono_ms();
        sc->kicked = 1; /* capacity freed */
        pthread_cond_signal(&sc->kick);
    }
    sl->state = SLOT_EXITED;
    sc->kicked = 1; /* to be joined */
    pthread_cond_signal(&sc->kick);
    pthread_mutex_unlock(&sc->lock);
    return NULL;
}

/* Hand a leased job to an idle slot, or to a new one. Called with the lock
 * held. Returns 0, or FARM_EIO when no thread could be made. */
static int slot_assign(scheduler *sc, store_job *job)
{
    slot *sl = NULL;
    for (int i = 0; i < sc->nslots && !sl; i++)
        if (sc->slots[i]->state == SLOT_IDLE && !sc->slots[i]->job)
            sl = sc->slots[i];
    if (sl) {
        sl->job = job;
        sl->state = SLOT_BUSY;
        pthread_cond_signal(&sl->wake);
        return 0;
    }
    if (sc->nslots >= SLOTS_MAX || !(sl = calloc(1, sizeof(*sl)))) {
        farm_error_set("scheduler: no room for another slot");
        return FARM_EIO;
    }
    sl->sc = sc;
    sl->ctl.worker_id = sc->owner;
    sl->job = job;
    sl->state = SLOT_BUSY;
    if (sched_cond_init_mono(&sl->wake) != 0) {
        free(sl);
        farm_error_set("scheduler: cannot make a slot");
        return FARM_EIO;
    }
    if (pthread_create(&sl->thread, NULL, slot_main, sl) != 0) {
        pthread_cond_destroy(&sl->wake);
        free(sl);
        farm_error_set("scheduler: cannot start a slot thread");
        return FARM_EIO;
    }
    sc->slots[sc->nslots++] = sl;
    return 0;
}

/* Join slot threads that exited. Called with the lock held. */
static void slots_reap(scheduler *sc)
{
    for (int i = 0; i < sc->nslots;) {
        slot *sl = sc->slots[i];
        if (sl->state != SLOT_EXITED) {
            i++;
            continue;
        }
        sc->slots[i] = sc->slots[--sc->nslots];
        pthread_mutex_unlock(&sc->lock);
        pthread_join(sl->thread, NULL);
        pthread_cond_destroy(&sl->wake);
        free(sl);
        pthread_mutex_lock(&sc->lock);
    }
}

/* ---- the scheduler thread ------------------------------------------------------ */

/* The busy slots' job ids and sessions, copied under the lock. */
typedef struct running {
    int64_t job[SLOTS_MAX];
    int64_t session[SLOTS_MAX];
    size_t n;
} running;

static void running_get(running *r, scheduler *sc)
{
    r->n = 0;
    for (int i = 0; i < sc->nslots; i++) {
        slot *sl = sc->slots[i];
        if (sl->state == SLOT_BUSY && sl->job) {
            r->job[r->n] = sl->job->id;
            r->session[r->n] = sl->job->session_id;
            r->n++;
        }
    }
}

/* Stop the run of job id (when it still runs here) for reason stop. Called
 * with the lock held. */
static void stop_job(scheduler *sc, int64_t id, int stop)
{
    for (int i = 0; i < sc->nslots; i++) {
        slot *sl = sc->slots[i];
        if (sl->state == SLOT_BUSY && sl->job && sl->job->id == id && sl->stop == STOP_NONE) {
            sl->stop = stop;
            sl->ctl.cancel = 1;
        }
    }
}

/* This process's row among the nodes sharing the store (store_node.h). */
static void node_beat(scheduler *sc, size_t at_work)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    store_node n = {.id = sc->owner,
                    .host = host,
                    .role = sc->role,
                    .pid = (int64_t)getpid(),
                    .slots = scaling_node_slots(&sc->lim, sc->f->cfg),
                    .running = (int64_t)at_work,
                    .started_ms = sc->started_ms};
    if (store_node_beat(sc->f->store, &n) != 0)
        log_warn("cannot record this node's heartbeat", "error", farm_error_last());
}

static void heartbeat(scheduler *sc)
{
    running r;
    int lost[SLOTS_MAX];

    pthread_mutex_lock(&sc->lock);
    running_get(&r, sc);
    pthread_mutex_unlock(&sc->lock);
    node_beat(sc, r.n);
    if (r.n == 0)
        return;
    if (store_job_lease_extend(lost, sc->f->store, sc->owner, r.job, r.n, sc->o.lease_ms) != 0) {
        log_error("cannot extend leases", "error", farm_error_last());
        return;
    }
    pthread_mutex_lock(&sc->lock);
    for (size_t i = 0; i < r.n; i++) {
        if (!lost[i])
            continue;
        char id[32];
        snprintf(id, sizeof(id), "%lld", (long long)r.job[i]);
        log_warn("lease lost: stopping the run", "job", id);
        sc->leases_lost++;
        stop_job(sc, r.job[i], STOP_LOST);
    }
    pthread_mutex_unlock(&sc->lock);
}

/* Stop runs whose session was cancelled (here, or by another process). */
static void cancel_check(scheduler *sc)
{
    running r;
    pthread_mutex_lock(&sc->lock);
    running_get(&r, sc);
    pthread_mutex_unlock(&sc->lock);
    for (size_t i = 0; i < r.n; i++) {
        int stopping = 0;
        if (r.session[i] <= 0 ||
            store_job_session_stopping(&stopping, sc->f->store, r.session[i]) != 0 || !stopping)
            continue;
        pthread_mutex_lock(&sc->lock);
        stop_job(sc, r.job[i], STOP_CANCEL);
        pthread_mutex_unlock(&sc->lock);
    }
}

static int notified(scheduler *sc, int64_t job)
{
    size_t n = sc->nnotified < NOTIFIED_MAX ? sc->nnotified : NOTIFIED_MAX;
    for (size_t i = 0; i < n; i++)
        if (sc->notified[i] == job)
            return 1;
    sc->notified[sc->nnotified++ % NOTIFIED_MAX] = job;
    return 0;
}

/* The next due job waits for memory: say so once in its session's log. */
static void memory_wait(scheduler *sc, const store_lease_req *req, int64_t avail, int64_t need)
{
    store_job *job = NULL;
    if (store_job_peek(&job, sc->f->store, req) != 0 || !job)
        return;
    pthread_mutex_lock(&sc->lock);
    int told = notified(sc, job->id);
    if (!told)
        sc->admission_waits++;
    pthread_mutex_unlock(&sc->lock);
    if (!told && job->session_id > 0) {
        char *body = sched_json_text(json_pack(
            "{s:s,s:I,s:I,s:I}", "reason", "memory", "job", (json_int_t)job->id, "available_mb",
            (json_int_t)(avail >> 20), "needed_mb", (json_int_t)(need >> 20)));
        int64_t seq = 0;
        if (body && stream_session_append(&seq, sc->f->streams, job->session_id, "waiting", "farm",
                                          body) != 0)
            log_warn("cannot log a wait for memory", "error", farm_error_last());
        free(body);
        log_info("job waits for memory", "reason", "memory");
    }
    store_job_free(job);
}

/* Lease due jobs while there is capacity and memory. */
static void dispatch(scheduler *sc)
{
    const config *cfg = sc->f->cfg;
    int64_t need = ((int64_t)cfg->sandbox.memory_mb + sc->o.mem_reserve_mb) << 20;
    int started = 0;

    for (;;) {
        pthread_mutex_lock(&sc->lock);
        /* this node's cap (worker.slots); the store holds the global ones */
        int room = !sc->stopping && sched_busy_count(sc) < scaling_node_slots(&sc->lim, sc->f->cfg);
        store_lease_req req = {sc->owner, sc->o.lease_ms, sc->lim.value[SCALING_MAX_AGENTS],
                               sc->lim.value[SCALING_MAX_PER_REPO]};
        pthread_mutex_unlock(&sc->lock);
        if (!room)
            return;
        store_job *job = NULL;
        if (store_job_peek(&job, sc->f->store, &req) != 0 || !job) {
            store_job_free(job);
            return; /* nothing due (the common case: a read, no write) */
        }
        /* a cancel job starts no sandbox: it is never held back for memory */
        int sandboxed = strcmp(job->kind, "cancel") != 0;
        store_job_free(job);
        job = NULL;

        /* memory: what the host has, less what runs started this round will take */
        int64_t avail = sandboxed ? sc->o.mem_available(sc->o.mem_arg) : -1;
        if (avail >= 0 && avail - started * need < need) {
            memory_wait(sc, &req, avail - started * need, need);
            return;
        }
        if (store_job_lease(&job, sc->f->store, &req) != 0) {
            log_error("cannot lease a job", "error", farm_error_last());
            return;
        }
        if (!job)
            return; /* another owner was quicker, or capacity filled */
        pthread_mutex_lock(&sc->lock);
        int rc = sc->stopping ? FARM_ECANCELLED : slot_assign(sc, job);
        if (!rc) {
            sc->jobs_started++;
            started += sandboxed;
            sc->warm_hold_ms = clock_mono_ms() + sc->o.warm_hold_ms;
        }
        pthread_mutex_unlock(&sc->lock);
        if (rc) {
            if (rc != FARM_ECANCELLED)
                log_error("cannot start a slot", "error", farm_error_last());
            store_job_retry(sc->f->store, job->id, sc->owner, clock_wall_ms(), NULL, 1);
            store_job_free(job);
            return;
        }
    }
}

static void limits_refresh(scheduler *sc)
{
    scaling_limits l;
    if (scaling_get(&l, sc->f->cfg, sc->f->store) != 0) {
        log_error("cannot read the scaling settings", "error", farm_error_last());
        return;
    }
    pthread_mutex_lock(&sc->lock);
    int warm_changed = l.value[SCALING_MIN_WARM] != sc->lim.value[SCALING_MIN_WARM];
    int idle_changed = l.value[SCALING_IDLE_TIMEOUT] != sc->lim.value[SCALING_IDLE_TIMEOUT];
    sc->lim = l;
    if (warm_changed)
        pthread_cond_signal(&sc->warm_wake);
    for (int i = 0; idle_changed && i < sc->nslots; i++)
        pthread_cond_signal(&sc->slots[i]->wake);
    pthread_mutex_unlock(&sc->lock);
}

static void *sched_main(void *arg)
{
    scheduler *sc = arg;
    pthread_mutex_lock(&sc->lock);
    while (!sc->stopping) {
        if (!sc->kicked) {
            struct timespec ts;
            sched_deadline_after(&ts, sc->o.poll_ms);
            pthread_cond_timedwait(&sc->kick, &sc->lock, &ts);
        }
        sc->kicked = 0;
        if (sc->stopping)
            break;
        slots_reap(sc);
        pthread_mutex_unlock(&sc->lock);

        limits_refresh(sc);
        int64_t now = clock_mono_ms();
        if (now - sc->last_heartbeat_ms >= sc->o.heartbeat_ms) {
            sc->last_heartbeat_ms = now;
            heartbeat(sc);
        }
        cancel_check(sc);
        dispatch(sc);
        pthread_mutex_lock(&sc->lock);
    }
    pthread_mutex_unlock(&sc->lock);
    return NULL;
}

/* ---- start, stop, kick ---------------------------------------------------------- */

static int owner_make(char *out, size_t n)
{
    char host[64] = "localhost", rnd[17];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if (crypto_random_hex(rnd, 8) != 0)
        return FARM_EIO;
    snprintf(out, n, "%s:%ld:%s", host, (long)getpid(), rnd);
    return 0;
}

static void scheduler_free(scheduler *sc)
{
    if (!sc)
        return;
    for (int i = 0; i < sc->nwarm; i++)
        sc->o.warm_free(sc->warm[i]);
    pthread_cond_destroy(&sc->kick);
    pthread_cond_destroy(&sc->warm_wake);
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

/* A job was queued, made due or finished on some node (or the listener
 * reconnected): look at the queue now rather than at the next poll. */
static void on_jobs_notify(void *arg, store_notify_kind kind, const char *payload)
{
    scheduler *sc = arg;
    (void)kind;
    (void)payload;
    pthread_mutex_lock(&sc->lock);
    sc->kicked = 1;
    pthread_cond_signal(&sc->kick);
    pthread_mutex_unlock(&sc->lock);
}

int scheduler_start(farm *f, const scheduler_options *opts)
{
    scheduler_options defaults = SCHEDULER_OPTIONS_INIT;
    scheduler *sc;
    int rc;

    assert(f);
    pthread_mutex_lock(&sched_ptr_lock);
    int started = f->sched != NULL;
    pthread_mutex_unlock(&sched_ptr_lock);
    if (started)
        return 0;
    if (!(sc = calloc(1, sizeof(*sc)))) {
        farm_error_set("scheduler: out of memory");
        return FARM_ENOMEM;
    }
    sc->f = f;
    sc->o = opts ? *opts : defaults;
    if (!sc->o.run)
        sc->o.run = pipeline_run;
    if (!sc->o.warm_prepare)
        sc->o.warm_prepare = pipeline_warm_prepare;
    if (!sc->o.warm_free)
        sc->o.warm_free = pipeline_warm_free;
    if (!sc->o.mem_available)
        sc->o.mem_available = meminfo_available;
    if (sc->o.poll_ms <= 0)
        sc->o.poll_ms = defaults.poll_ms;
    if (sc->o.lease_ms <= 0)
        sc->o.lease_ms = defaults.lease_ms;
    if (sc->o.heartbeat_ms <= 0 || sc->o.heartbeat_ms >= sc->o.lease_ms)
        sc->o.heartbeat_ms = sc->o.lease_ms / 3 > 0 ? sc->o.lease_ms / 3 : 1;
    if (sc->o.retry_max_ms <= 0)
        sc->o.retry_max_ms = defaults.retry_max_ms;
    if (sc->o.max_attempts <= 0)
        sc->o.max_attempts = defaults.max_attempts;
    if (sc->o.warm_max_age_ms <= 0)
        sc->o.warm_max_age_ms = defaults.warm_max_age_ms;
    if (sc->o.warm_hold_ms < 0)
        sc->o.warm_hold_ms = 0;
    if (sc->o.mem_reserve_mb < 0)
        sc->o.mem_reserve_mb = 0;
    if (sc->o.owner)
        snprintf(sc->owner, sizeof(sc->owner), "%s", sc->o.owner);
    else if ((rc = owner_make(sc->owner, sizeof(sc->owner)))) {
        free(sc);
        return rc;
    }
    sc->started_ms = clock_wall_ms();
    snprintf(sc->role, sizeof(sc->role), "%s", sc->o.role ? sc->o.role : "serve");
    sc->o.role = NULL;  /* copied */
    sc->o.owner = NULL; /* copied */
    pthread_mutex_init(&sc->lock, NULL);
    sched_cond_init_mono(&sc->kick);
    sched_cond_init_mono(&sc->warm_wake);
    if ((rc = scaling_get(&sc->lim, f->cfg, f->store))) {
        scheduler_free(sc);
        return rc;
    }
    sc->last_heartbeat_ms = clock_mono_ms();
    sc->kicked = 1; /* look at the queue at once */
    if (pthread_create(&sc->thread, NULL, sched_main, sc) != 0) {
        scheduler_free(sc);
        farm_error_set("scheduler: cannot start its thread");
        return FARM_EIO;
    }
    sc->thread_started = 1;
    if (pthread_create(&sc->warm_thread, NULL, sched_warm_main, sc) != 0) {
        pthread_mutex_lock(&sc->lock);
        sc->stopping = 1;
        pthread_cond_signal(&sc->kick);
        pthread_mutex_unlock(&sc->lock);
        pthread_join(sc->thread, NULL);
        scheduler_free(sc);
        farm_error_set("scheduler: cannot start the warm thread");
        return FARM_EIO;
    }
    sc->warm_started = 1;
    /* no listener (it keeps retrying in the background): the poll still looks */
    if (store_notify_subscribe(&sc->notify, f->store, STORE_NOTIFY_JOBS | STORE_NOTIFY_RESYNC,
                               on_jobs_notify, sc) != 0)
        log_warn("the scheduler wakes on its poll only", "error", farm_error_last());
    pthread_mutex_lock(&sched_ptr_lock);
    f->sched = sc;
    pthread_mutex_unlock(&sched_ptr_lock);
    char max[16], per[16], own[16];
    snprintf(max, sizeof(max), "%d", sc->lim.value[SCALING_MAX_AGENTS]);
    snprintf(per, sizeof(per), "%d", sc->lim.value[SCALING_MAX_PER_REPO]);
    snprintf(own, sizeof(own), "%d", scaling_node_slots(&sc->lim, f->cfg));
    log_info("scheduler started", "owner", sc->owner, "max_agents", max, "max_per_repo", per,
             "slots", own);
    return 0;
}

void scheduler_stop(farm *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&sched_ptr_lock);
    scheduler *sc = f->sched;
    f->sched = NULL;
    pthread_mutex_unlock(&sched_ptr_lock);
    if (!sc)
        return;

    store_notify_unsubscribe(sc->f->store, sc->notify); /* no wake-up after this */
    sc->notify = NULL;
    pthread_mutex_lock(&sc->lock);
    sc->stopping = 1;
    int busy = 0;
    for (int i = 0; i < sc->nslots; i++) {
        slot *sl = sc->slots[i];
        if (sl->state == SLOT_BUSY && sl->stop == STOP_NONE) {
            sl->stop = STOP_SHUTDOWN;
            sl->ctl.cancel = 1;
            busy++;
        }
        pthread_cond_signal(&sl->wake);
    }
    pthread_cond_broadcast(&sc->kick);
    pthread_cond_broadcast(&sc->warm_wake);
    pthread_mutex_unlock(&sc->lock);
    if (busy) {
        char n[16];
        snprintf(n, sizeof(n), "%d", busy);
        log_info("stopping the runs at work; their jobs go back to the queue", "runs", n);
    }
    pthread_join(sc->thread, NULL);
    pthread_join(sc->warm_thread, NULL);
    /* every slot thread ends now: the idle ones at once, the busy ones at
     * their run's next checkpoint */
    for (int i = 0; i < sc->nslots; i++) {
        pthread_join(sc->slots[i]->thread, NULL);
        pthread_cond_destroy(&sc->slots[i]->wake);
        store_job_free(sc->slots[i]->job);
        free(sc->slots[i]);
    }
    sc->nslots = 0;
    /* a clean stop leaves no node row behind (a crash leaves one whose
     * heartbeat ages: `farm nodes` shows it) */
    if (store_node_remove(sc->f->store, sc->owner) != 0)
        log_warn("cannot remove this node's row", "error", farm_error_last());
    scheduler_free(sc);
    log_info("scheduler stopped");
}

void farm_jobs_kick(farm *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&sched_ptr_lock);
    scheduler *sc = f->sched;
    if (sc) {
        pthread_mutex_lock(&sc->lock);
        sc->kicked = 1;
        pthread_cond_signal(&sc->kick);
        pthread_mutex_unlock(&sc->lock);
    }
    pthread_mutex_unlock(&sched_ptr_lock);
}

void scheduler_stats_get(scheduler_stats *out, farm *f)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&sched_ptr_lock);
    scheduler *sc = f ? f->sched : NULL;
    if (sc) {
        pthread_mutex_lock(&sc->lock);
        out->started = 1;
        out->slots = sc->nslots;
        for (int i = 0; i < sc->nslots; i++)
            out->slots -= sc->slots[i]->state == SLOT_EXITED;
        out->busy = sched_busy_count(sc);
        out->warm = sc->nwarm;
        out->limits = sc->lim;
        out->jobs_started = sc->jobs_started;
        out->admission_waits = sc->admission_waits;
        out->leases_lost = sc->leases_lost;
        snprintf(out->owner, sizeof(out->owner), "%s", sc->owner);
        pthread_mutex_unlock(&sc->lock);
    }
    pthread_mutex_unlock(&sched_ptr_lock);
}
