/*
 * stream_notify.c - live readers across processes. On a store many
 * processes write (PostgreSQL: farm serve and farm worker on several
 * machines), an append committed by another process never passes through
 * this hub's hub_after_commit(), so the hot entry of that stream (its tail,
 * its ring) would go on answering "up to date" from a stale tail. The store
 * announces every commit that moves a stream's or a session log's tail
 * (store_notify.h); this file raises the hot entry's tail from the
 * announcement and wakes the waiters, exactly as a local commit does: the
 * records themselves are read from the database (the ring no longer
 * reaches the tail, so a read falls through to it).
 *
 * While the store's listener is down the hub does not trust its entries
 * (hub_trusted()): reads go to the database and the timer polls the tails
 * of watched streams and sessions; once it listens again every watched
 * entry is reloaded once, since what was committed meanwhile was not
 * announced. On SQLite nothing arrives here: one process owns the file.
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_notify.h"

#include "base/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "<a>:<b>[:<c>]" of decimal integers (b may be -1); 0 when well formed. */
static int parse_payload(int64_t *a, int64_t *b, int64_t *c, const char *p, int want)
{
    char *end;
    long long v[3] = {0, 0, 0};
    for (int i = 0; i < want; i++) {
        if (!p || !*p)
            return -1;
        v[i] = strtoll(p, &end, 10);
        if (end == p || (i + 1 < want ? *end != ':' : *end != '\0'))
            return -1;
        p = end + 1;
    }
    *a = v[0];
    *b = v[1];
    if (c)
        *c = v[2];
    return 0;
}

/* A stream's row changed elsewhere: raise its entries' tails or mark them
 * gone, and wake their readers (lock held). */
static void stream_changed(stream_hub *h, int64_t id, int64_t tail, int closed)
{
    for (size_t b = 0; b < HOT_BUCKETS; b++)
        for (hot *e = h->buckets[b]; e; e = e->next) {
            if (e->session_id || e->stream_id != id || !e->loaded)
                continue;
            if (tail < 0) { /* deleted or expired */
                e->gone = 1;
                e->loaded = 0;
                e->stream_id = 0;
                e->tail = -1;
                e->closed = 0;
                hub_ring_clear(e);
            } else {
                if (tail > e->tail)
                    e->tail = tail;
                e->closed |= closed;
            }
            hub_wake_ready(h, e);
        }
}

static void on_notify(void *arg, store_notify_kind kind, const char *payload)
{
    stream_hub *h = arg;
    int64_t a, b, c;

    switch (kind) {
    case STORE_NOTIFY_SESSION:
        if (parse_payload(&a, &b, NULL, payload, 2) != 0 || a <= 0)
            return;
        pthread_mutex_lock(&h->lock);
        h->notified++;
        pthread_mutex_unlock(&h->lock);
        stream_hub_session_notify(h, a, b);
        return;
    case STORE_NOTIFY_STREAM:
        if (parse_payload(&a, &b, &c, payload, 3) != 0 || a <= 0)
            return;
        pthread_mutex_lock(&h->lock);
        h->notified++;
        stream_changed(h, a, b, c != 0);
        pthread_mutex_unlock(&h->lock);
        hub_fire_pending(h);
        return;
    case STORE_NOTIFY_LOST:
        pthread_mutex_lock(&h->lock);
        h->listening = 0;
        pthread_mutex_unlock(&h->lock);
        return;
    case STORE_NOTIFY_RESYNC:
        pthread_mutex_lock(&h->lock);
        h->listening = 1;
        h->resync = 1;
        pthread_cond_broadcast(&h->tick); /* the timer reloads, not this thread */
        pthread_mutex_unlock(&h->lock);
        return;
    default:
        return;
    }
}

int hub_trusted(const stream_hub *h)
{
    return !h->remote || h->listening;
}

int stream_notify_start(stream_hub *h)
{
    h->remote = store_notify_remote(h->st);
    if (!h->remote)
        return 0; /* SQLite: every append is this process's own */
    return store_notify_subscribe(&h->notify, h->st,
                                  STORE_NOTIFY_SESSION | STORE_NOTIFY_STREAM | STORE_NOTIFY_LOST |
                                      STORE_NOTIFY_RESYNC,
                                  on_notify, h);
}

void stream_notify_stop(stream_hub *h)
{
    store_notify_unsubscribe(h->st, h->notify);
    h->notify = NULL;
}

/* Reload the watched entries (sessions, and streams when streams_too) from
 * the database, waking their readers when a tail moved; forget the
 * unwatched ones (the next read or wait loads them). */
static void reload_watched(stream_hub *h, int streams_too)
{
    enum { MAXP = 1024 };
    char **paths = calloc(MAXP, sizeof(*paths));
    size_t n = 0;
    if (!paths)
        return;
    pthread_mutex_lock(&h->lock);
    for (size_t b = 0; b < HOT_BUCKETS && n < MAXP; b++)
        for (hot *e = h->buckets[b]; e && n < MAXP; e = e->next) {
            if (!e->nwaiters) {
                e->loaded = 0; /* the next read or wait loads it */
                continue;
            }
            if ((e->session_id || streams_too) && (paths[n] = strdup(e->path)))
                n++;
        }
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < n; i++) {
        if (stream_hot_load(h, paths[i]) == FARM_ENOTFOUND)
            hub_gone(h, paths[i]);
        free(paths[i]);
    }
    free(paths);
}

void stream_notify_tick(stream_hub *h, int poll_due)
{
    pthread_mutex_lock(&h->lock);
    int resync = h->resync, blind = !hub_trusted(h);
    h->resync = 0;
    pthread_mutex_unlock(&h->lock);
    if (resync || (blind && poll_due))
        reload_watched(h, 1);
}
