/*
 * stream_live.c - the live half of the stream engine: the hub itself (open,
 * shutdown, close), one-shot waiters, and the timer thread that fires
 * deadlines, evicts idle hot entries, polls session logs and sweeps expired
 * streams. The hot entries the waiters hang on are in stream_cache.c.
 *
 * Waiters cost no thread: a waiter is a small struct on its stream's list,
 * fired (and unlinked) under the hub's lock by whoever moves the tail (an
 * append's commit, a session notification, the poll) or by the timer. The
 * callback only signals (the HTTP layer resumes a suspended connection).
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS                 50
#define DEADLINE_EVERY_MS       100 /* long-poll timeouts, heartbeats: a scan of every waiter */
#define SESSION_POLL_DEFAULT_MS 250
#define SWEEP_EVERY_MS          5000
#define HOT_IDLE_MS             60000
#define SESSION_POLL_NOTIFIED   8 /* the poll's interval times this while notifications arrive */

/* Take w off its stream's list (lock held). */
static void unlink_waiter(stream_hub *h, stream_waiter *w)
{
    hot *e = w->e;
    if (w->prev)
        w->prev->next = w->next;
    else
        e->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    e->nwaiters--;
    h->nwaiters--;
}

/* Fire w now, with the lock held (a single waiter: a deadline, a wait that
 * is already satisfied). */
static void fire(stream_hub *h, stream_waiter *w, stream_wake_reason why)
{
    if (atomic_load(&w->state) != W_LISTED)
        return;
    unlink_waiter(h, w);
    atomic_store(&w->state, W_DONE);
    w->fn(w->arg, why);
}

/* Queue every waiter of e that has something to read for firing by
 * hub_fire_pending() once the lock is released: an append that wakes ten
 * thousand readers must not hold the lock those readers need meanwhile. */
void hub_wake_ready(stream_hub *h, hot *e)
{
    stream_waiter *w = e->waiters, *next;
    for (; w; w = next) {
        next = w->next;
        if (!e->gone && !(e->tail > w->pos || e->closed))
            continue;
        unlink_waiter(h, w);
        w->why = e->gone ? STREAM_WAKE_GONE : STREAM_WAKE_DATA;
        w->next = h->pending;
        if (h->pending)
            h->pending->prev = w;
        h->pending = w;
        atomic_store(&w->state, W_PENDING);
    }
}

void hub_fire_pending(stream_hub *h)
{
    pthread_mutex_lock(&h->lock);
    stream_waiter *w = h->pending, *next;
    h->pending = NULL;
    for (stream_waiter *x = w; x; x = x->next)
        atomic_store(&x->state, W_TAKEN);
    pthread_mutex_unlock(&h->lock);
    for (; w; w = next) {
        next = w->next;
        w->fn(w->arg, w->why);
        atomic_store(&w->state, W_DONE); /* the owner may free it from here on */
    }
}

int stream_wait(stream_waiter **out, stream_hub *h, const char *path, int64_t stream_id,
                uint64_t pos, int64_t deadline_ms, stream_wake_fn fn, void *arg)
{
    *out = NULL;
    stream_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    w->pos = (int64_t)pos;
    w->deadline_ms = deadline_ms;
    w->fn = fn;
    w->arg = arg;

    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, path, 1);
    int loaded = e && e->loaded && hub_trusted(h) &&
                 (!stream_id || e->session_id || e->stream_id == stream_id);
    if (!loaded) {
        pthread_mutex_unlock(&h->lock);
        if (!e) {
            free(w);
            farm_error_set("out of memory");
            return FARM_ENOMEM;
        }
        /* Created (or stale) just now: an append that committed before the
         * entry existed notified nobody, so read the tail from the store.
         * Commits after the entry exists raise it themselves. */
        int rc = stream_hot_load(h, path);
        if (rc < 0 && rc != FARM_ENOTFOUND) {
            free(w);
            return rc;
        }
        pthread_mutex_lock(&h->lock);
        e = hub_hot_get(h, path, 1);
    }
    if (!e) {
        pthread_mutex_unlock(&h->lock);
        free(w);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    w->e = e;
    w->next = e->waiters;
    if (e->waiters)
        e->waiters->prev = w;
    e->waiters = w;
    atomic_store(&w->state, W_LISTED);
    e->nwaiters++;
    h->nwaiters++;
    *out = w;
    if (h->stopping)
        fire(h, w, STREAM_WAKE_SHUTDOWN);
    else if (e->gone || (stream_id && !e->session_id && e->stream_id != stream_id))
        fire(h, w, STREAM_WAKE_GONE);
    else if (e->tail > w->pos || e->closed)
        fire(h, w, STREAM_WAKE_DATA);
    else if (deadline_ms && deadline_ms <= clock_mono_ms())
        fire(h, w, STREAM_WAKE_TIMEOUT);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

void stream_wait_cancel(stream_hub *h, stream_waiter *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&h->lock);
    int state = atomic_load(&w->state);
    if (state == W_LISTED) {
        unlink_waiter(h, w);
    } else if (state == W_PENDING) {
        if (w->prev)
            w->prev->next = w->next;
        else
            h->pending = w->next;
        if (w->next)
            w->next->prev = w->prev;
    }
    pthread_mutex_unlock(&h->lock);
    /* being fired right now by another thread: its callback is short */
    while (atomic_load(&w->state) == W_TAKEN)
        sched_yield();
    free(w);
}

size_t stream_hub_waiters(stream_hub *h)
{
    pthread_mutex_lock(&h->lock);
    size_t n = h->nwaiters;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* ---- the timer ------------------------------------------------------------- */

static void fire_deadlines(stream_hub *h, int64_t now)
{
    for (size_t b = 0; b < HOT_BUCKETS; b++)
        for (hot *e = h->buckets[b]; e; e = e->next) {
            stream_waiter *w = e->waiters, *next;
            for (; w; w = next) {
                next = w->next;
                if (w->deadline_ms && w->deadline_ms <= now)
                    fire(h, w, STREAM_WAKE_TIMEOUT);
            }
        }
}

static void evict_idle(stream_hub *h, int64_t now)
{
    for (size_t b = 0; b < HOT_BUCKETS; b++) {
        hot **pp = &h->buckets[b];
        while (*pp) {
            hot *e = *pp;
            if (!e->nwaiters && now - e->used_ms > HOT_IDLE_MS) {
                *pp = e->next;
                h->nhot--;
                hub_hot_free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

/* Session logs written by someone who did not call
 * stream_hub_session_notify(): read the tails of watched sessions. */
static void poll_sessions(stream_hub *h)
{
    enum { MAXP = 256 };
    char *paths[MAXP];
    size_t n = 0;
    pthread_mutex_lock(&h->lock);
    for (size_t b = 0; b < HOT_BUCKETS && n < MAXP; b++)
        for (hot *e = h->buckets[b]; e && n < MAXP; e = e->next)
            if (e->session_id && e->nwaiters)
                if ((paths[n] = strdup(e->path)))
                    n++;
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < n; i++) {
        stream_hot_load(h, paths[i]);
        free(paths[i]);
    }
}

static void *timer_main(void *arg)
{
    stream_hub *h = arg;
    int64_t last_poll = 0, last_sweep = clock_mono_ms(), last_deadlines = 0;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->tick, &h->lock, &ts);
        if (h->stopping)
            break;
        int64_t now = clock_mono_ms();
        h->now_ms = now;
        if (now - last_deadlines >= DEADLINE_EVERY_MS) {
            fire_deadlines(h, now);
            last_deadlines = now;
        }
        evict_idle(h, now);
        /* a shared store that announces commits leaves the poll as a safety
         * net only (stream_notify.c) */
        int64_t every = h->opt.session_poll_ms;
        if (h->remote && hub_trusted(h) && every > 0)
            every *= SESSION_POLL_NOTIFIED;
        int poll = every > 0 && now - last_poll >= every;
        int sweep = now - last_sweep >= SWEEP_EVERY_MS;
        int resync = h->resync;
        if (poll || sweep || resync) {
            pthread_mutex_unlock(&h->lock);
            stream_notify_tick(h, poll);
            if (poll) {
                poll_sessions(h);
                last_poll = now;
            }
            if (sweep) {
                stream_sweep_expired(h);
                last_sweep = now;
            }
            pthread_mutex_lock(&h->lock);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

int stream_hub_open(stream_hub **out, struct store *st, const stream_hub_options *opt)
{
    *out = NULL;
    stream_hub *h = calloc(1, sizeof(*h));
    if (!h) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    stream_hub_options def = STREAM_HUB_OPTIONS_INIT;
    /* FARM_STREAM_POLL_MS: the session poll's interval (tests make it long
     * so that only notifications deliver in time; 0 turns it off) */
    const char *env = getenv("FARM_STREAM_POLL_MS");
    int64_t env_ms;
    if (env && *env && stream_parse_uint(&env_ms, env, 3600000) == 0)
        def.session_poll_ms = (int)env_ms;
    h->opt = opt ? *opt : def;
    if (!h->opt.ring_bytes)
        h->opt.ring_bytes = def.ring_bytes;
    h->st = st;
    h->now_ms = clock_mono_ms();
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->aq_lock, NULL);
    pthread_cond_init(&h->aq_wake, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->tick, &ca);
    pthread_condattr_destroy(&ca);
    int err = pthread_create(&h->timer, NULL, timer_main, h);
    if (err) {
        farm_error_set("stream hub: cannot start its timer thread: %s", strerror(err));
        pthread_cond_destroy(&h->tick);
        pthread_cond_destroy(&h->aq_wake);
        pthread_mutex_destroy(&h->aq_lock);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return FARM_ERROR;
    }
    h->timer_started = 1;
    if (stream_appender_start(h)) {
        stream_hub_close(h);
        return FARM_ERROR;
    }
    if (stream_notify_start(h)) /* the safety poll still sees sessions */
        log_warn("streams: other nodes' appends are not announced here", "error",
                 farm_error_last());
    *out = h;
    return 0;
}

void stream_hub_shutdown(stream_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->stopping = 1;
    for (size_t b = 0; b < HOT_BUCKETS; b++)
        for (hot *e = h->buckets[b]; e; e = e->next)
            while (e->waiters)
                fire(h, e->waiters, STREAM_WAKE_SHUTDOWN);
    for (stream_waiter *w = h->pending; w; w = w->next)
        w->why = STREAM_WAKE_SHUTDOWN;
    pthread_cond_broadcast(&h->tick);
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
}

void stream_hub_close(stream_hub *h)
{
    if (!h)
        return;
    stream_notify_stop(h); /* before the lock and the entries it touches go */
    stream_hub_shutdown(h);
    if (h->timer_started)
        pthread_join(h->timer, NULL);
    stream_appender_stop(h);
    for (size_t b = 0; b < HOT_BUCKETS; b++) {
        hot *e = h->buckets[b], *next;
        for (; e; e = next) {
            next = e->next;
            hub_hot_free(e);
        }
    }
    pthread_cond_destroy(&h->tick);
    pthread_cond_destroy(&h->aq_wake);
    pthread_mutex_destroy(&h->aq_lock);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
