/*
 * stream_internal.h - what the stream engine's files share (farm/stream*.c):
 * the hub, its table of live streams with their in-memory tail cache, and the
 * protocol's small parsers.
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
    pthread_mutex_t aq_lock; /* the append queue and its thread (stream.c) */
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
};

/* Find or create the entry for path (lock held). NULL on ENOMEM. */
hot *hub_hot_get(stream_hub *h, const char *path, int create);
/* The metadata of a stream after a commit or a database read (lock held):
 * resets the entry when the id changed, raises the tail, wakes waiters. */
void hub_hot_meta(stream_hub *h, hot *e, int64_t stream_id, const char *content_type, int64_t tail,
                  int64_t start_pos, int64_t fork_pos, int closed, int64_t ttl_s,
                  int64_t expires_at_ms, int64_t access_ms);
/* Fire the waiters queued by a tail change; call without the lock, after
 * any hub_hot_meta() or hub_hot_session_tail(). */
void hub_fire_pending(stream_hub *h);
/* The stream at path is gone: wake its waiters with STREAM_WAKE_GONE. */
void hub_gone(stream_hub *h, const char *path);
/* Raise a session entry's tail and wake its waiters (lock held). */
void hub_hot_session_tail(stream_hub *h, hot *e, int64_t tail);
/* Add a record read from the database or committed to the ring, when it
 * continues the ring (lock held). */
void hub_ring_add(stream_hub *h, hot *e, int64_t pos, int64_t end, const void *p, size_t n);
/* Drop the ring (lock held). */
void hub_ring_clear(hot *e);

/* stream_util.c */
void stream_media_type(char *out, size_t n, const char *ct);
int stream_content_type_valid(const char *ct);
int stream_content_type_same(const char *a, const char *b);
int stream_parse_uint(int64_t *out, const char *s, int64_t max);
int stream_parse_rfc3339(int64_t *out_ms, const char *s);
int stream_path_valid(const char *path);

/* stream_json.c: when the JSON text p[0..n) is in the simple subset, write
 * its compact form (what jansson's JSON_COMPACT dump of it is) to out (n + 1
 * bytes), its length to *out_len, and return 1. A top-level array is split:
 * message i is out[spans[i] .. spans[i + 1] - 1), *nspans of them, at most
 * max_spans (spans has max_spans + 1 entries); any other value is message 0.
 * 0: not simple (malformed, escapes, floats, an empty array, ...): ask jansson. */
int stream_json_compact(char *out, size_t *out_len, size_t *spans, size_t max_spans, size_t *nspans,
                        const char *p, size_t n);

/* stream.c: load a stream's or session's metadata into a hot entry (called
 * without the lock; takes it to store the result). */
int stream_hot_load(stream_hub *h, const char *path);
/* stream.c: the appender thread, started by stream_hub_open() and stopped
 * (after draining its queue) by stream_hub_close(). */
int stream_appender_start(stream_hub *h);
void stream_appender_stop(stream_hub *h);
/* stream.c: expire streams whose TTL passed (the timer's sweep). */
void stream_sweep_expired(stream_hub *h);

#define STREAM_JS_MAX ((int64_t)9007199254740991LL) /* 2^53 - 1 */

#endif
