/*
 * stream_internal.h - what the stream engine's files (farm/stream/) share:
 * the hub, its table of live streams with their in-memory tail cache, the
 * results and records every operation builds, and the protocol's small
 * parsers. Names shared here but not exported are stream_* (engine steps,
 * called without the hub's lock) and hub_* (the hot table; most expect the
 * lock held, as each says).
 *
 * The files: stream.c (results, session logs), stream_records.c (a body
 * split into records), stream_create.c, stream_append.c (with the appender
 * thread), stream_read.c (reads, HEAD, fork chains), stream_trim.c (delete,
 * retention, expiry), stream_cache.c (the hot entries and their rings),
 * stream_live.c (the hub, waiters, the timer), stream_json.c and
 * stream_util.c (pure helpers).
 *
 * A "hot" entry exists for a stream that has live readers or was read
 * recently. It caches the stream's metadata (so a woken reader does not touch
 * the database) and a ring of its most recent records (so ten thousand
 * readers woken by one append cost one database read, not ten thousand).
 * Everything in it is a cache of committed data: it is filled only from
 * commits and from database reads, and dropping it is always safe.
 */
#ifndef FARM_FARM_STREAM_STREAM_INTERNAL_H
#define FARM_FARM_STREAM_STREAM_INTERNAL_H

#include "stream.h"
#include "farm/store/store_stream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ring_rec {
    int64_t pos, end;
    size_t len;
    char data[];
} ring_rec;

typedef struct hot {
    struct hot *next; /* hash chain */
    char *path;
    int64_t session_id; /* > 0: a session log view */
    int loaded;         /* meta below reflects the database */
    int gone;           /* deleted or expired (until a new stream takes the path) */
    /* metadata (streams) */
    int64_t stream_id;
    char content_type[128];
    int json;
    int64_t tail;
    int64_t start_pos;
    int64_t fork_pos;
    int closed;
    int64_t ttl_s, expires_at_ms, access_ms;
    /* the ring: records [ring_start, ring_end), oldest first */
    ring_rec **recs;
    size_t rcap, rhead, rcount, rbytes;
    int64_t ring_start, ring_end;
    /* waiters */
    stream_waiter *waiters;
    size_t nwaiters;
    int64_t used_ms; /* last use, for eviction */
} hot;

enum { W_DONE = 0, W_LISTED, W_PENDING, W_TAKEN };

struct stream_waiter {
    stream_waiter *prev, *next; /* on its stream's list, then on the pending list */
    hot *e;
    int64_t pos;
    int64_t deadline_ms;
    stream_wake_fn fn;
    void *arg;
    atomic_int state; /* W_*: listed, queued to fire, being fired, done */
    stream_wake_reason why;
};

#define HOT_BUCKETS 1024

struct stream_hub {
    struct store *st;
    stream_hub_options opt;
    pthread_mutex_t lock;
    hot *buckets[HOT_BUCKETS];
    size_t nhot;
    size_t nwaiters;
    stream_waiter *pending;  /* ready to fire once the lock is released */
    pthread_mutex_t aq_lock; /* the append queue and its thread (stream_append.c) */
    pthread_cond_t aq_wake;
    struct append_ctx *aq_head, *aq_tail;
    int aq_stopping;
    pthread_t appender;
    int appender_started;
    pthread_t timer;
    pthread_cond_t tick;
    int64_t now_ms; /* clock_mono_ms() at the timer's last tick (lock held) */
    int stopping;
    int timer_started;
    /* other processes' commits (stream_notify.c) */
    struct store_notify_sub *notify;
    int remote;        /* the store announces other processes' commits (PostgreSQL) */
    int listening;     /* ... and its listener is up: the hot entries can be trusted */
    int resync;        /* the timer reloads every watched entry at its next tick */
    uint64_t notified; /* notifications of appends seen (lock held): a load that
                          raced one reads again (stream_hot_load()) */
};

/* stream_cache.c: the table of hot entries and their rings. */

/* Find or create the entry for path (lock held). NULL on ENOMEM. */
hot *hub_hot_get(stream_hub *h, const char *path, int create);
/* Free an entry that is off the table, with its ring. */
void hub_hot_free(hot *e);
/* The metadata of a stream after a commit or a database read (lock held):
 * resets the entry when the id changed, raises the tail, wakes waiters. */
void hub_hot_meta(stream_hub *h, hot *e, int64_t stream_id, const char *content_type, int64_t tail,
                  int64_t start_pos, int64_t fork_pos, int closed, int64_t ttl_s,
                  int64_t expires_at_ms, int64_t access_ms);
/* The stream at path is gone: wake its waiters with STREAM_WAKE_GONE. */
void hub_gone(stream_hub *h, const char *path);
/* Raise a session entry's tail and wake its waiters (lock held). */
void hub_hot_session_tail(stream_hub *h, hot *e, int64_t tail);
/* Add a record read from the database or committed to the ring, when it
 * continues the ring (lock held). */
void hub_ring_add(stream_hub *h, hot *e, int64_t pos, int64_t end, const void *p, size_t n);
/* Drop the ring (lock held). */
void hub_ring_clear(hot *e);
/* Load a stream's or session's metadata into a hot entry (called without
 * the lock; takes it to store the result). */
int stream_hot_load(stream_hub *h, const char *path);

/* stream_live.c: waking waiters. */

/* Queue the waiters of e that have something to read (lock held). */
void hub_wake_ready(stream_hub *h, hot *e);
/* Fire the waiters queued by a tail change; call without the lock, after
 * any hub_hot_meta() or hub_hot_session_tail(). */
void hub_fire_pending(stream_hub *h);

/* stream_notify.c: other processes' commits, through store_notify.h. */

/* Subscribe h to its store's notifications (at open) and end that (at
 * close, before the timer stops). */
int stream_notify_start(stream_hub *h);
void stream_notify_stop(stream_hub *h);
/* 1 when the hot entries may stand for the database (lock held): always on
 * a store only this process writes, and on a shared one while its listener
 * is up (a lost connection leaves other nodes' appends unannounced). */
int hub_trusted(const stream_hub *h);
/* The timer's part (called without the lock): after a reconnect, reload
 * every watched entry once; while the listener is down, poll them. */
void stream_notify_tick(stream_hub *h, int poll_due);

/* stream_util.c */
int stream_content_type_valid(const char *ct);
int stream_content_type_same(const char *a, const char *b);
int stream_parse_uint(int64_t *out, const char *s, int64_t max);
int stream_parse_rfc3339(int64_t *out_ms, const char *s);

/* stream_json.c: when the JSON text p[0..n) is in the simple subset, write
 * its compact form (what jansson's JSON_COMPACT dump of it is) to out (n + 1
 * bytes), its length to *out_len, and return 1. A top-level array is split:
 * message i is out[spans[i] .. spans[i + 1] - 1), *nspans of them, at most
 * max_spans (spans has max_spans + 1 entries); any other value is message 0.
 * 0: not simple (malformed, escapes, floats, an empty array, ...): ask jansson. */
int stream_json_compact(char *out, size_t *out_len, size_t *spans, size_t max_spans, size_t *nspans,
                        const char *p, size_t n);
/* stream_json.c: the messages in a JSON body (the elements of a top-level
 * array, else 1), counted without building anything; the count stops past
 * stop. A malformed body gets some count: the parse judges it. */
size_t stream_json_count(const char *p, size_t n, size_t stop);

/* stream.c: results and rows. */

/* A result with nothing decided yet: status 0, every header absent. */
void stream_result_init(stream_result *r);
/* Refuse with a protocol status and the reason for the 4xx body. */
void stream_fail(stream_result *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The headers a stream's row answers with (type, TTL, closure, tail). */
void stream_result_row(stream_result *r, const stream_row *row);
/* The headers of a session log whose tail is tail. */
void stream_result_session(stream_result *out, int64_t tail);
/* 1 when the row's TTL or expiry time passed at now (wall ms). */
int stream_row_expired(const stream_row *r, int64_t now);
/* Set the error slot and return FARM_ENOMEM. */
int stream_oom(void);
/* The last seq of session_id's log into *tail, and *found (0: no such
 * session; *tail is then left alone). Returns 0 or the store's failure. */
int stream_session_tail(int64_t *tail, int *found, stream_hub *h, int64_t session_id);

/* stream_records.c: a body split the way the stream stores it. */

typedef struct stream_records {
    size_t n;
    char **data; /* JSON: compact messages (owned, or in block); bytes: one borrowed body */
    size_t *len;
    int owned;
    char *block; /* the quick path's messages, NUL-separated, when not NULL */
    int bad;     /* the status to answer when the body is used (400, 413), 0 when good */
    char why[200];
} stream_records;

/* Split body for a stream of content type ct into r (freed with
 * stream_records_free(); a bytes body is borrowed, not copied). A malformed
 * body is not an error here: r->bad says so, and the caller answers 400 at
 * the point the protocol puts that check. put: an empty JSON array is
 * allowed. */
int stream_records_prepare(stream_records *r, const char *ct, const void *body, size_t len,
                           int put);
void stream_records_free(stream_records *r);
/* Insert the records at row's tail and raise the tail (the row itself is
 * written back by the caller). */
int stream_records_write(stream_tx *tx, stream_row *row, const stream_records *rec, int json);

/* stream_cache.c: after a commit that changed row (its records rec, from
 * position from, when it appended): update the hot entry and wake its
 * readers. Called without the lock. */
void hub_after_commit(stream_hub *h, const stream_row *row, const stream_records *rec, int64_t from,
                      int json);

/* stream_trim.c: remove an expired or deleted stream inside tx: soft while
 * forks read from it, else for good, then release its source (and the
 * source's, up the chain). */
int stream_remove_row(stream_tx *tx, stream_row *row);
/* stream_trim.c: expire streams whose TTL passed (the timer's sweep). */
void stream_sweep_expired(stream_hub *h);

/* stream_append.c: the appender thread, started by stream_hub_open() and
 * stopped (after draining its queue) by stream_hub_close(). */
int stream_appender_start(stream_hub *h);
void stream_appender_stop(stream_hub *h);

#define STREAM_JS_MAX ((int64_t)9007199254740991LL) /* 2^53 - 1 */

#endif
