/*
 * store_notify.c - the subscriptions of store_notify.h: a short list under
 * a lock, walked by the backend's listener for each notification. The lock
 * is held while the functions run, so store_notify_unsubscribe() returning
 * means the function is not running and never will again.
 */
#include "store.h"
#include "store_backend.h"
#include "store_notify.h"

#include "base/error.h"

#include <pthread.h>
#include <stdlib.h>

struct store_notify_sub {
    store_notify_sub *next;
    unsigned kinds;
    store_notify_fn fn;
    void *arg;
};

struct store_notify_reg {
    pthread_mutex_t lock;
    store_notify_sub *subs;
    int listening_started; /* the backend's notify_listen() ran */
    store_notify_stats stats;
};

int store_notify__init(store *s)
{
    if (!(s->reg = calloc(1, sizeof(*s->reg)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    pthread_mutex_init(&s->reg->lock, NULL);
    return 0;
}

void store_notify__free(store *s)
{
    if (!s->reg)
        return;
    /* every subscription ended before store_close(); free stragglers anyway */
    while (s->reg->subs) {
        store_notify_sub *next = s->reg->subs->next;
        free(s->reg->subs);
        s->reg->subs = next;
    }
    pthread_mutex_destroy(&s->reg->lock);
    free(s->reg);
    s->reg = NULL;
}

int store_notify_subscribe(store_notify_sub **out, store *s, unsigned kinds, store_notify_fn fn,
                           void *arg)
{
    *out = NULL;
    if (!s || !s->reg || !fn) {
        farm_error_set("store: notify: no store or no function");
        return FARM_EINVALID;
    }
    store_notify_sub *sub = calloc(1, sizeof(*sub));
    if (!sub) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    sub->kinds = kinds;
    sub->fn = fn;
    sub->arg = arg;
    pthread_mutex_lock(&s->reg->lock);
    int rc = 0;
    if (!s->reg->listening_started && s->be->notify_listen) {
        /* the listener's thread takes this lock to dispatch: it has not
         * started yet, so starting it here cannot wait on us */
        if ((rc = s->be->notify_listen(s)) == 0)
            s->reg->listening_started = 1;
    }
    if (rc == 0) {
        sub->next = s->reg->subs;
        s->reg->subs = sub;
    }
    pthread_mutex_unlock(&s->reg->lock);
    if (rc) {
        free(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

void store_notify_unsubscribe(store *s, store_notify_sub *sub)
{
    if (!s || !sub)
        return;
    pthread_mutex_lock(&s->reg->lock);
    for (store_notify_sub **pp = &s->reg->subs; *pp; pp = &(*pp)->next)
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    pthread_mutex_unlock(&s->reg->lock);
    free(sub);
}

int store_notify_remote(const store *s)
{
    return s && s->be->notify_listen != NULL;
}

void store_notify_stats_get(store_notify_stats *out, store *s)
{
    pthread_mutex_lock(&s->reg->lock);
    *out = s->reg->stats;
    pthread_mutex_unlock(&s->reg->lock);
}

void store_notify__dispatch(store *s, store_notify_kind kind, const char *payload)
{
    pthread_mutex_lock(&s->reg->lock);
    if (kind == STORE_NOTIFY_LOST) {
        s->reg->stats.listening = 0;
    } else if (kind == STORE_NOTIFY_RESYNC) {
        s->reg->stats.listening = 1;
        s->reg->stats.connects++;
    } else {
        s->reg->stats.delivered++;
    }
    for (store_notify_sub *sub = s->reg->subs; sub; sub = sub->next)
        if (sub->kinds & (unsigned)kind)
            sub->fn(sub->arg, kind, payload);
    pthread_mutex_unlock(&s->reg->lock);
}
