/*
 * store_notify.h - wake-ups after commit: who changed what in the store,
 * told to the parts of this process that wait on it (the scheduler, the
 * outbox, the stream engine's live readers).
 *
 * On PostgreSQL many processes (farm serve, farm worker on other machines)
 * share the database. Each write that matters raises a notification inside
 * its transaction (NOTIFY farm_<channel>, delivered at commit, never for a
 * rolled-back write), and each process keeps ONE dedicated connection that
 * LISTENs and hands what arrives to the functions subscribed here, on the
 * listener's thread. When that connection drops, subscribers are told
 * (STORE_NOTIFY_LOST), the listener reconnects with backoff, and once it
 * listens again every subscriber is woken once (STORE_NOTIFY_RESYNC): what
 * was committed meanwhile was not announced.
 *
 * On SQLite one process owns the file and wakes its own parts directly
 * (farm_jobs_kick(), outbox_kick(), stream_hub_session_notify()), so nothing
 * is delivered here; subscribing works the same, so callers do not care
 * which backend they run on. Callers keep a slower safety poll either way.
 */
#ifndef FARM_FARM_STORE_STORE_NOTIFY_H
#define FARM_FARM_STORE_STORE_NOTIFY_H

#include "store.h"

typedef enum store_notify_kind {
    STORE_NOTIFY_JOBS = 1 << 0,    /* a job was queued, made due, finished or released */
    STORE_NOTIFY_OUTBOX = 1 << 1,  /* an outbox entry was added or made due */
    STORE_NOTIFY_SESSION = 1 << 2, /* an event was appended: payload "<session id>:<seq>" */
    STORE_NOTIFY_STREAM = 1 << 3,  /* a stream's row changed: payload "<id>:<tail>:<closed>",
                                      tail -1 when the stream was removed */
    STORE_NOTIFY_LOST = 1 << 4,    /* the listener lost its connection: changes go unannounced
                                      until STORE_NOTIFY_RESYNC (payload NULL) */
    STORE_NOTIFY_RESYNC = 1 << 5,  /* listening again: anything may have changed (payload NULL) */
} store_notify_kind;

#define STORE_NOTIFY_ALL 0x3f

/* Called on the listener's thread with a kind the subscriber asked for and
 * its payload (NULL for LOST and RESYNC; untrusted text: parse, do not
 * assume). It must be quick (take a lock, set a flag, signal) and must not
 * subscribe or unsubscribe. */
typedef void (*store_notify_fn)(void *arg, store_notify_kind kind, const char *payload);

typedef struct store_notify_sub store_notify_sub;

/* Call fn(arg, ...) for each notification whose kind is in the mask kinds
 * (STORE_NOTIFY_* or-ed) until store_notify_unsubscribe(). The first
 * subscription of a store starts its listener (PostgreSQL: a connection and
 * a thread; failing to connect is not an error here: the listener keeps
 * trying, and subscribers get STORE_NOTIFY_RESYNC when it succeeds). *out is
 * released by store_notify_unsubscribe(). Returns 0, FARM_ENOMEM or
 * FARM_EIO (no thread). */
int store_notify_subscribe(store_notify_sub **out, store *s, unsigned kinds, store_notify_fn fn,
                           void *arg);

/* Stop calling sub's function (once this returns, it runs no more) and free
 * sub. NULL is accepted. Every subscription ends before store_close(). */
void store_notify_unsubscribe(store *s, store_notify_sub *sub);

/* 1 when this store announces other processes' commits (PostgreSQL), 0
 * when every writer is this process (SQLite). */
int store_notify_remote(const store *s);

/* Notifications handed out and connections made since the store opened. */
typedef struct store_notify_stats {
    uint64_t delivered;
    uint64_t connects; /* the first connection counts */
    int listening;     /* the listener's connection is up */
} store_notify_stats;

void store_notify_stats_get(store_notify_stats *out, store *s);

#endif
