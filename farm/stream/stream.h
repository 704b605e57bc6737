/*
 * stream.h - durable streams: the engine behind /v1/stream/ (the Durable
 * Streams protocol v1, ElectricSQL PROTOCOL.md) and the session logs.
 *
 * A stream is an append-only sequence of bytes (or, for application/json, of
 * JSON messages) stored in the farm's store. Positions count bytes (JSON:
 * messages); offsets are the position as 16 lower-case hex digits, so they
 * sort lexicographically and never collide with the sentinels "-1" and "now".
 * A fork shares its source's offsets below the fork point.
 *
 * The engine speaks the protocol's outcomes: each call fills a stream_result
 * whose `status` is the HTTP status the protocol prescribes (201, 409, 410...)
 * and returns 0; a negative FARM_E* return means the store failed (answer 503)
 * or memory ran out. webhook/stream_http*.c map results to HTTP.
 *
 * Documented choices the protocol leaves to the server:
 * - Stream-Seq is scoped per stream (not per writer identity).
 * - Stream-TTL with Stream-Expires-At is rejected (400).
 * - Stream-TTL is a sliding window: reads and appends (not HEAD) reset it.
 * - An offset past the tail is 400; before the retained start, 410.
 * - Producer state and the append are committed in one transaction.
 *
 * Live readers register a one-shot waiter (stream_wait()) that is called
 * when the tail moves past their position, the stream closes or goes away,
 * or their deadline passes. Waiters cost a few dozen bytes and no thread.
 *
 * The session log "sessions/{id}" is a read-only JSON view over the store's
 * event table: message i is event seq i ({"seq","ts","kind","actor","body"}).
 * Whoever appends an event calls stream_hub_session_notify() after its commit
 * (a poll of the event table every 250 ms catches writers that do not).
 */
#ifndef FARM_FARM_STREAM_STREAM_H
#define FARM_FARM_STREAM_STREAM_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct stream_hub stream_hub;
struct store;

#define STREAM_OFFSET_LEN     17         /* 16 hex digits and the NUL */
#define STREAM_MAX_PATH       512        /* bytes in a stream path */
#define STREAM_MAX_APPEND     (8u << 20) /* bytes in one append or initial body */
#define STREAM_MAX_MESSAGES   65536u     /* JSON messages in one append or initial body */
#define STREAM_READ_CHUNK     (1u << 20) /* default bytes per catch-up response */
#define STREAM_SESSION_PREFIX "sessions/"

typedef struct stream_hub_options {
    size_t ring_bytes;   /* recent data kept in memory per live stream (256 KiB) */
    int session_poll_ms; /* event-table poll for session waiters (250); 0 = never */
} stream_hub_options;

#define STREAM_HUB_OPTIONS_INIT                                                                    \
    {                                                                                              \
        256u << 10, 250                                                                            \
    }

/* Open the engine on the farm's store (its tables come from the store's
 * migrations; the store must outlive the hub). opt may be NULL. Starts one
 * timer thread (deadlines, session polling, expiry sweeps). *out is released
 * with stream_hub_close(). */
int stream_hub_open(stream_hub **out, struct store *st, const stream_hub_options *opt);
/* Fire every waiter with STREAM_WAKE_SHUTDOWN; later waits fire at once.
 * A server calls this first, lets its live connections finish (they cancel
 * their waiters), then stops and calls stream_hub_close(). */
void stream_hub_shutdown(stream_hub *h);
/* Shut down (if not yet), stop the timer thread and free the hub. Every
 * waiter must have been cancelled. NULL is accepted. */
void stream_hub_close(stream_hub *h);

/* ---- results ---- */

typedef struct stream_result {
    int status;                          /* protocol status: 200, 201, 204, 304, 400, ... */
    char error[240];                     /* why, for a 4xx body; "" on success */
    char next_offset[STREAM_OFFSET_LEN]; /* Stream-Next-Offset, "" when none */
    char etag[96];                       /* ETag for reads, "" when none */
    char content_type[128];              /* the stream's content type, "" when unknown */
    int closed;                          /* Stream-Closed: true */
    int up_to_date;                      /* Stream-Up-To-Date: true */
    int json;                            /* the stream is in JSON mode */
    int64_t ttl_s;                       /* Stream-TTL, -1 when none */
    int64_t expires_at_ms;               /* Stream-Expires-At (wall ms), -1 when none */
    int64_t producer_epoch;              /* Producer-Epoch, -1 when none */
    int64_t producer_seq;                /* Producer-Seq, -1 when none */
    int64_t expected_seq;                /* Producer-Expected-Seq, -1 when none */
    int64_t received_seq;                /* Producer-Received-Seq, -1 when none */
    int64_t stream_id;                   /* internal id (waits, ETags), 0 when none */
    uint64_t next_pos;                   /* next_offset as a position */
    int count;                           /* reads: records returned (JSON: messages) */
} stream_result;

/* ---- create (PUT) ---- */

typedef struct stream_create_req {
    const char *content_type;    /* NULL: application/octet-stream (fork: the source's) */
    const char *ttl;             /* Stream-TTL header text, or NULL */
    const char *expires_at;      /* Stream-Expires-At header text, or NULL */
    int closed;                  /* Stream-Closed: true */
    const char *forked_from;     /* Stream-Forked-From path, or NULL */
    const char *fork_offset;     /* Stream-Fork-Offset, or NULL (the source's tail) */
    const char *fork_sub_offset; /* Stream-Fork-Sub-Offset, or NULL */
    const void *body;            /* initial content, may be NULL */
    size_t body_len;
} stream_create_req;

#define STREAM_CREATE_REQ_INIT                                                                     \
    {                                                                                              \
        NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0                                             \
    }

/* Create the stream at path (no leading slash, e.g. "chat/42"), or confirm
 * that it exists with the same configuration (200) or not (409). */
int stream_create(stream_result *out, stream_hub *h, const char *path,
                  const stream_create_req *req);

/* ---- append (POST) ---- */

typedef struct stream_append_req {
    const char *content_type; /* required with a body */
    const void *body;
    size_t body_len;
    const char *stream_seq;  /* Stream-Seq, or NULL */
    const char *producer_id; /* the three Producer-* headers as given, or NULL */
    const char *producer_epoch;
    const char *producer_seq;
    int close; /* Stream-Closed: true */
} stream_append_req;

#define STREAM_APPEND_REQ_INIT                                                                     \
    {                                                                                              \
        NULL, NULL, 0, NULL, NULL, NULL, NULL, 0                                                   \
    }

/* Append (and/or close). Appends are queued to the hub's appender thread,
 * which writes all that is queued as one store write (group-committed);
 * returns after the commit, and live readers are woken. */
int stream_append(stream_result *out, stream_hub *h, const char *path,
                  const stream_append_req *req);

/* Called once an asynchronous append is decided: rc is 0 (see res->status)
 * or the store's failure. Runs on the hub's appender thread: it must be
 * quick (flag and signal, e.g. MHD_resume_connection()). */
typedef void (*stream_append_done_fn)(void *arg, int rc, const stream_result *res);

/* stream_append() without waiting: path, req (with its body and strings)
 * and out must stay valid until done(arg, ...) is called, which happens
 * exactly once, from the appender thread, never from inside this call.
 * Returns 0, or FARM_ENOMEM (then done is not called). */
int stream_append_async(stream_hub *h, const char *path, const stream_append_req *req,
                        stream_result *out, stream_append_done_fn done, void *arg);

/* ---- delete, head ---- */

int stream_delete(stream_result *out, stream_hub *h, const char *path);
int stream_head(stream_result *out, stream_hub *h, const char *path);

/* ---- read (GET) ---- */

/* One record handed to a read callback: the bytes of one append (clipped to
 * the range read), or one JSON message. */
typedef int (*stream_record_fn)(void *arg, const char *data, size_t len);

typedef struct stream_read_req {
    const char *offset;        /* NULL or "-1": the start; "now": the tail */
    size_t max_bytes;          /* 0: STREAM_READ_CHUNK; at least one record is returned */
    const char *if_none_match; /* If-None-Match, or NULL */
    int live;                  /* an SSE read: no ETag is computed */
} stream_read_req;

#define STREAM_READ_REQ_INIT                                                                       \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

/* Read from an offset: fn is called for each record in order (it may stop
 * the read by returning non-zero, which is passed back). out->next_offset is
 * where the next read starts, out->up_to_date and out->closed are set as the
 * protocol says, out->status is 200 (or 304, 400, 404, 410). */
int stream_read(stream_result *out, stream_hub *h, const char *path, const stream_read_req *req,
                stream_record_fn fn, void *arg);

/* Convenience: read into body as the protocol's GET body (a JSON array in
 * JSON mode, raw bytes otherwise). body's cap bounds the read. */
int stream_read_body(stream_result *out, buf *body, stream_hub *h, const char *path,
                     const stream_read_req *req);

/* ---- live waits ---- */

typedef enum {
    STREAM_WAKE_DATA = 0, /* the tail moved past the position (or the stream closed) */
    STREAM_WAKE_TIMEOUT,  /* the deadline passed */
    STREAM_WAKE_GONE,     /* the stream was deleted or expired */
    STREAM_WAKE_SHUTDOWN, /* the hub is closing */
} stream_wake_reason;

typedef struct stream_waiter stream_waiter;
typedef void (*stream_wake_fn)(void *arg, stream_wake_reason why);

/* Call fn once, from whichever thread notices, when stream `path` (id from a
 * previous result) has data past pos, is closed, goes away, or when
 * deadline_ms (clock_mono_ms(); 0 = none) passes. Fires at once when that is
 * already true. fn runs with the hub's lock held: it must only flag and
 * signal (MHD_resume_connection()), never call back into the hub. *out is
 * freed with stream_wait_cancel(), fired or not. */
int stream_wait(stream_waiter **out, stream_hub *h, const char *path, int64_t stream_id,
                uint64_t pos, int64_t deadline_ms, stream_wake_fn fn, void *arg);
void stream_wait_cancel(stream_hub *h, stream_waiter *w);

/* How many waiters are registered (metrics, tests). */
size_t stream_hub_waiters(stream_hub *h);

/* ---- sessions ---- */

/* An event was committed to session_id's log up to seq: wake its readers. */
void stream_hub_session_notify(stream_hub *h, int64_t session_id, int64_t seq);

/* Append an event to a session's log (store_event_append()) and wake the
 * session's live readers. *out_seq (may be NULL) is its seq. Returns what
 * store_event_append() returns. */
int stream_session_append(int64_t *out_seq, stream_hub *h, int64_t session_id, const char *kind,
                          const char *actor, const char *body_json);

/* 1 when path names a session log ("sessions/<digits>"), with *session_id set. */
int stream_path_session(const char *path, int64_t *session_id);
/* 1 when path is under "sessions/": the farm's alone (no stream can be created
 * there, and only session logs can be read). */
int stream_path_reserved(const char *path);
/* 1 when path's first segment is "__ds": the protocol's control APIs
 * (subscriptions), which the farm does not offer; no stream lives there. */
int stream_path_control(const char *path);
/* 1 when path is a stream path the engine accepts: at most STREAM_MAX_PATH
 * bytes, no empty, "." or ".." segment, no control, space, '?', '#', '\\'
 * or '%' byte. */
int stream_path_valid(const char *path);

/* ---- retention ---- */

/* Drop the data of path before offset (a retention policy; reads before it
 * answer 410). */
int stream_trim(stream_result *out, stream_hub *h, const char *path, const char *offset);

/* ---- helpers ---- */

/* Offset text for a position. */
void stream_offset_format(char out[STREAM_OFFSET_LEN], uint64_t pos);
/* Parse an offset the server minted; FARM_EINVALID when malformed. */
int stream_offset_parse(uint64_t *pos, const char *s);
/* The media type of a content type (its part before ';', trimmed,
 * lower-cased) into out. */
void stream_media_type(char *out, size_t n, const char *ct);
/* 1 when the content type is JSON mode (application/json or +json). */
int stream_content_type_is_json(const char *ct);
/* 1 when SSE may carry it as text (text/... or JSON); otherwise base64. */
int stream_content_type_is_text(const char *ct);
/* The protocol's cursor for a live response, given the client's cursor
 * parameter (or NULL), into out. */
void stream_cursor_next(char *out, size_t n, const char *client_cursor);

#endif
