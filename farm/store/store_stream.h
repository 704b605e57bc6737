/*
 * store_stream.h - the storage interface under the stream engine (internal
 * to farm/): streams' rows, their records and producers, and the session
 * logs read as streams. It calls the store's backend (store_backend.h: the
 * stream table; every line of the SQL is in sqlite_stream.c by default);
 * farm/stream calls it and holds the protocol.
 *
 * Writes run inside sdb_write(), that is the store's store_write(): callers are
 * group-committed (the writer runs every queued function in one transaction,
 * each in its own savepoint, then commits once): a burst of appends costs one fsync.
 */
#ifndef FARM_FARM_STORE_STORE_STREAM_H
#define FARM_FARM_STORE_STORE_STREAM_H

#include <stddef.h>
#include <stdint.h>

/* One stream's row. Strings are heap copies freed by stream_row_free(). */
typedef struct stream_row {
    int64_t id;
    char *path;
    char *content_type;
    int64_t ttl_s;         /* -1: none */
    int64_t expires_at_ms; /* -1: none */
    int64_t created_ms;
    int64_t access_ms; /* last read or write (sliding TTL) */
    int64_t tail;      /* position after the last record */
    int64_t start_pos; /* first retained position */
    int closed;
    char *closed_by_producer; /* the producer whose append closed it, or NULL */
    int64_t closed_by_epoch;
    int64_t closed_by_seq;
    char *last_seq;          /* last Stream-Seq, or NULL */
    int64_t fork_of;         /* source stream id, 0 when not a fork */
    int64_t fork_pos;        /* positions below come from the source */
    int64_t fork_offset_req; /* the fork offset as requested (idempotent re-PUT), -1 none */
    int64_t refcount;        /* forks that read from this stream */
    int deleted;             /* soft-deleted: kept for its forks, 410 to clients */
} stream_row;

void stream_row_free(stream_row *r);

typedef struct stream_tx stream_tx;
typedef int (*stream_tx_fn)(stream_tx *tx, void *arg);

/* Run fn in a write transaction through store_write(): group-committed with
 * every other write of the store. fn returns 0 (its effects are kept) or a
 * negative code (its savepoint is rolled back); that value is returned, or
 * FARM_EIO when the commit fails. */
int sdb_write(struct store *st, stream_tx_fn fn, void *arg);
/* Run fn on a read connection inside one read transaction (a snapshot). */
int sdb_read(struct store *st, stream_tx_fn fn, void *arg);

int sdb_stream_get(stream_row *out, stream_tx *tx, const char *path);
int sdb_stream_get_id(stream_row *out, stream_tx *tx, int64_t id);
int sdb_stream_insert(int64_t *id, stream_tx *tx, const stream_row *r);
int sdb_stream_update(stream_tx *tx, const stream_row *r);
int sdb_stream_touch(stream_tx *tx, int64_t id, int64_t access_ms);
/* Remove the stream's row, data and producer state. */
int sdb_stream_remove(stream_tx *tx, int64_t id);
/* Ids of streams whose TTL or expiry passed at now_ms (at most max). */
int sdb_stream_expired(int64_t *ids, size_t max, size_t *n, stream_tx *tx, int64_t now_ms);

int sdb_data_insert(stream_tx *tx, int64_t id, int64_t pos, int64_t end, const void *p, size_t n);
/* Delete records that end at or before pos. */
int sdb_data_trim(stream_tx *tx, int64_t id, int64_t pos);

typedef int (*sdb_record_fn)(void *arg, int64_t pos, int64_t end, const void *p, size_t n);
/* Records of stream id overlapping [from, to), in order; fn may stop the
 * scan by returning non-zero (passed back). */
int sdb_data_scan(stream_tx *tx, int64_t id, int64_t from, int64_t to, sdb_record_fn fn, void *arg);

int sdb_producer_get(int64_t *epoch, int64_t *seq, stream_tx *tx, int64_t id, const char *producer);
int sdb_producer_put(stream_tx *tx, int64_t id, const char *producer, int64_t epoch, int64_t seq);

/* Session logs (the store's event table). */
int sdb_session_tail(int64_t *last_seq, stream_tx *tx, int64_t session_id);
/* Events from_seq < seq <= to_seq as JSON messages {"seq","ts","kind","actor","body"}. */
int sdb_session_scan(stream_tx *tx, int64_t session_id, int64_t from_seq, int64_t to_seq,
                     sdb_record_fn fn, void *arg);

#endif
