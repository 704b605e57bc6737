/*
 * scheduler_warm.c - warm slots: the warm thread keeps scaling.min_warm
 * worktrees prepared ahead of demand (pipeline_warm_prepare: the mirror
 * fetched, the base branch checked out), spread over the configured
 * repositories with the most recently active first, replaced when older
 * than warm_max_age_ms, and never prepared within warm_hold_ms of a run's
 * start (the preparation's fetch would slow that start). A run of the same
 * repository takes one through ctl->warm. A slot made before the setup
 * cache held an entry for its repository gets setup restored once it does.
 */
#include "scheduler_internal.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/store_job.h"
#include "farm/store/store_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- warm slots -------------------------------------------------------------- */

/* Take a warm slot for repo (NULL when none). Called with the lock held. */
pipeline_warm *sched_warm_take(scheduler *sc, const char *repo)
{
    for (int i = 0; repo && i < sc->nwarm; i++) {
        if (strcasecmp(sc->warm[i]->repo, repo) != 0)
            continue;
        pipeline_warm *w = sc->warm[i];
        sc->warm[i] = sc->warm[--sc->nwarm];
        pthread_cond_signal(&sc->warm_wake); /* prepare another */
        return w;
    }
    return NULL;
}

/* Give back a warm slot a run did not adopt: kept while fresh and wanted. */
/* Keep w among the slots when fresh and wanted: 1, else 0 (the caller
 * frees it). Called with the lock held. */
static int warm_keep(scheduler *sc, pipeline_warm *w)
{
    int keep = !sc->stopping && sc->nwarm < sc->lim.value[SCALING_MIN_WARM] &&
               clock_wall_ms() - w->prepared_ms < sc->o.warm_max_age_ms;
    if (keep)
        sc->warm[sc->nwarm++] = w;
    return keep;
}

/* Give back a warm slot the warm thread had out (lock held; dropped while
 * a slot not kept is freed). */
static void sched_warm_return_locked(scheduler *sc, pipeline_warm *w)
{
    if (!warm_keep(sc, w)) {
        pthread_mutex_unlock(&sc->lock);
        sc->o.warm_free(w);
        pthread_mutex_lock(&sc->lock);
    }
}

void sched_warm_return(scheduler *sc, pipeline_warm *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&sc->lock);
    int keep = warm_keep(sc, w);
    pthread_mutex_unlock(&sc->lock);
    if (!keep)
        sc->o.warm_free(w);
}

/* The repository the next warm slot is for: the one with the fewest warm
 * slots, the most recently active first, then round robin. Called with the
 * lock held; copies the name into out. */
static int warm_pick(scheduler *sc, char *out, size_t n)
{
    const config *cfg = sc->f->cfg;
    int best = -1, best_count = 0;
    if (cfg->nrepos == 0)
        return -1;
    for (size_t k = 0; k < cfg->nrepos; k++) {
        size_t i = (sc->warm_rr + k) % cfg->nrepos;
        int count = 0;
        for (int j = 0; j < sc->nwarm; j++)
            count += !strcasecmp(sc->warm[j]->repo, cfg->repos[i].name);
        if (!strcasecmp(cfg->repos[i].name, sc->active_repo))
            count = count * 2 - 1; /* preferred: ahead of a repository with as many */
        if (best < 0 || count < best_count) {
            best = (int)i;
            best_count = count;
        }
    }
    sc->warm_rr = (size_t)best + 1;
    snprintf(out, n, "%s", cfg->repos[best].name);
    return 0;
}

/* A slot made before the setup cache held an entry for it gets setup
 * restored once one is there (pipeline_warm_setup()), looked at every
 * poll_ms * 5 at most; it is out of the list meanwhile, so no run adopts
 * it half-restored. 1 when a slot was looked at. Called with the lock
 * held (released while restoring). */
static int warm_setup_refresh(scheduler *sc, int64_t now)
{
    if (sc->o.warm_prepare != pipeline_warm_prepare)
        return 0; /* slots a test made: not the pipeline's */
    for (int i = 0; i < sc->nwarm; i++) {
        pipeline_warm *w = sc->warm[i];
        if (w->setup_key || now - w->setup_checked_ms < sc->o.poll_ms * 5)
            continue;
        sc->warm[i] = sc->warm[--sc->nwarm];
        pthread_mutex_unlock(&sc->lock);
        pipeline_warm_setup(w, sc->f);
        pthread_mutex_lock(&sc->lock);
        sched_warm_return_locked(sc, w);
        return 1;
    }
    return 0;
}

/* Work directories no run comes back to are removed (pipeline_sweep.c)
 * every SWEEP_EVERY_MS, the first time at start: slow (a listing, a read
 * per leftover, a removal), so here rather than on the scheduler thread.
 * 1 when it swept. Called with the lock held (released while sweeping). */
#define SWEEP_EVERY_MS 20000

static int sweep_due(scheduler *sc, int64_t mono)
{
    size_t removed = 0;
    if (sc->o.run != pipeline_run || mono < sc->sweep_ms)
        return 0; /* runs a test made: not the pipeline's directories */
    sc->sweep_ms = mono + SWEEP_EVERY_MS;
    pthread_mutex_unlock(&sc->lock);
    pipeline_workdirs_sweep(&removed, sc->f);
    pthread_mutex_lock(&sc->lock);
    return 1;
}

void *sched_warm_main(void *arg)
{
    scheduler *sc = arg;
    pthread_mutex_lock(&sc->lock);
    while (!sc->stopping) {
        if (sweep_due(sc, clock_mono_ms()))
            continue;
        /* slots too old, or beyond the wanted number, are dropped */
        pipeline_warm *drop[SLOTS_MAX];
        int ndrop = 0;
        int64_t now = clock_wall_ms();
        for (int i = 0; i < sc->nwarm;) {
            if (now - sc->warm[i]->prepared_ms >= sc->o.warm_max_age_ms ||
                sc->nwarm > sc->lim.value[SCALING_MIN_WARM]) {
                drop[ndrop++] = sc->warm[i];
                sc->warm[i] = sc->warm[--sc->nwarm];
            } else {
                i++;
            }
        }
        if (ndrop) {
            pthread_mutex_unlock(&sc->lock);
            for (int i = 0; i < ndrop; i++)
                sc->o.warm_free(drop[i]);
            pthread_mutex_lock(&sc->lock);
            continue;
        }
        if (warm_setup_refresh(sc, now))
            continue;
        char repo[256];
        int64_t mono = clock_mono_ms();
        if (sc->nwarm < sc->lim.value[SCALING_MIN_WARM] && mono >= sc->warm_retry_ms &&
            mono >= sc->warm_hold_ms && warm_pick(sc, repo, sizeof(repo)) == 0) {
            pthread_mutex_unlock(&sc->lock);
            pipeline_warm *w = NULL;
            int rc = sc->o.warm_prepare(&w, sc->f, repo);
            if (rc)
                log_warn("cannot prepare a warm slot", "repo", repo, "error", farm_error_last());
            pthread_mutex_lock(&sc->lock);
            if (rc) {
                sc->warm_retry_ms = clock_mono_ms() + WARM_RETRY_MS;
            } else if (sc->stopping || sc->nwarm >= sc->lim.value[SCALING_MIN_WARM]) {
                pthread_mutex_unlock(&sc->lock);
                sc->o.warm_free(w);
                pthread_mutex_lock(&sc->lock);
            } else {
                sc->warm[sc->nwarm++] = w;
            }
            continue;
        }
        /* sleep until asked, until the oldest slot goes stale, or until the
         * hold after a run's start ends */
        int64_t wait = sc->o.poll_ms * 5;
        if (sc->o.run == pipeline_run && sc->sweep_ms - mono < wait)
            wait = sc->sweep_ms > mono ? sc->sweep_ms - mono : 0;
        if (sc->nwarm < sc->lim.value[SCALING_MIN_WARM] && mono < sc->warm_hold_ms &&
            sc->warm_hold_ms - mono < wait)
            wait = sc->warm_hold_ms - mono;
        for (int i = 0; i < sc->nwarm; i++) {
            int64_t left = sc->warm[i]->prepared_ms + sc->o.warm_max_age_ms - now;
            if (left < wait)
                wait = left > 0 ? left : 0;
        }
        struct timespec ts;
        sched_deadline_after(&ts, wait);
        pthread_cond_timedwait(&sc->warm_wake, &sc->lock, &ts);
    }
    pthread_mutex_unlock(&sc->lock);
    return NULL;
}
