/*
 * pg_internal.h - the PostgreSQL backend of the store: what its files share.
 * It owns the connections to one PostgreSQL database (store.url
 * "postgres://..." or a libpq connection string), the transactions that run
 * the writes, their retry on serialization failures and deadlocks, and a
 * small statement helper over libpq; it calls libpq and base/, and fills
 * store_backend_pg (store_backend.h). Nothing outside the pg_*.c files
 * includes it, and only they include libpq-fe.h.
 *
 * The areas written once (sql_<area>.c) run on this backend through
 * pg_sql.c, its driver of the neutral cursor (store_sql.h). The areas not
 * yet written once mirror the SQLite backend's one to one (pg_<area>.c
 * beside sqlite_<area>.c), so a change to one backend's area is made in the
 * other's file of that area. The tables, columns and migration numbers are
 * the same on both (pg_schema.c, sqlite_schema.c).
 *
 * Every write runs in a transaction of its own on a pooled connection (no
 * group commit: many processes write at once). PostgreSQL runs them side by
 * side, so what SQLite's single writer gave for free is asked for here: the
 * job lease takes a transaction-scoped advisory lock, the outbox lease and
 * the stream appends lock their rows, and one active session per issue is a
 * partial unique index. A write that loses a race (40001 serialization
 * failure, 40P01 deadlock, 23505 a unique index another write filled first)
 * is rolled back and its write function run again from the start: write
 * functions must be safe to run twice.
 */
#ifndef FARM_FARM_STORE_PG_INTERNAL_H
#define FARM_FARM_STORE_PG_INTERNAL_H

#include "store_backend.h"

#include <libpq-fe.h>
#include <pthread.h>

#define PG_IDLE_MAX    8  /* connections kept open while idle */
#define PG_PARAMS_MAX  24 /* parameters of one statement */
#define PG_WRITE_TRIES 30 /* runs of one write function at most */

/* One connection, with what its last statement left behind. */
typedef struct pg_conn {
    PGconn *c;
    const char *chan;     /* its store's channel suffix (pg_store's), for notifications */
    int64_t changes;      /* rows the last statement inserted, updated or deleted */
    char sqlstate[6];     /* the last failure's SQLSTATE, "" when none */
    char msg[512];        /* the last failure's message */
    struct pg_conn *next; /* in the idle list */
} pg_conn;

typedef struct pg_async pg_async;
struct pg_listener; /* pg_notify.c */

/* An open PostgreSQL store (a store's impl). */
typedef struct pg_store {
    char *url;      /* the URL or connection string, as given */
    char *password; /* from store.password, or NULL */

    pthread_mutex_t lock; /* guards idle, stats and the async queue */
    pg_conn *idle;
    int nidle;
    store_stats stats;

    /* store_write_async(): one thread runs the queued writes in order */
    pthread_t async;
    int async_started;
    pthread_cond_t async_wake;
    pg_async *head, *tail;
    int stopping;

    struct pg_listener *listener; /* the LISTEN connection's thread, once subscribed */
    /* "" on the schema "public", else "_" and a hash of the schema's name:
     * notifications go to the whole database, and two farms on one database
     * in schemas of their own must not wake each other */
    char chan[24];
} pg_store;

/* A write function's transaction (a store_tx's impl). */
typedef struct pg_tx {
    pg_store *s;
    pg_conn *db;
} pg_tx;

static inline pg_conn *pg_tx_db(store_tx *tx)
{
    return ((pg_tx *)tx->impl)->db;
}

/* ---- statements ----------------------------------------------------------
 * A small cursor over PQexecParams, shaped like SQLite's so that each pg_
 * area reads like its sqlite_ twin: bind parameters ($1 ... by number),
 * pg_step() runs the statement on its first call and then walks the rows.
 * Results are text; integers, doubles and booleans ('t'/'f' as 1/0) are
 * parsed from it, bytea is decoded. */
typedef struct pg_stmt pg_stmt;

#define PG_ROW   100
#define PG_DONE  101
#define PG_ERROR 1

/* A statement for sql on db (sql must outlive it). Returns 0 or FARM_ENOMEM. */
int pg_prepare(pg_stmt **out, pg_conn *db, const char *sql);
/* Free st (NULL accepted). */
void pg_finalize(pg_stmt *st);
/* Drop st's result, keeping its parameters: the next pg_step() runs it again. */
void pg_reset(pg_stmt *st);
/* Run (first call) and step: PG_ROW, PG_DONE, or PG_ERROR (the failure is in
 * the connection: pg_err()). */
int pg_step(pg_stmt *st);

void pg_bind_int64(pg_stmt *st, int i, int64_t v);
void pg_bind_int(pg_stmt *st, int i, int v);
void pg_bind_double(pg_stmt *st, int i, double v);
void pg_bind_text(pg_stmt *st, int i, const char *v); /* NULL binds NULL */
void pg_bind_null(pg_stmt *st, int i);                /* a NULL bigint */
void pg_bind_blob(pg_stmt *st, int i, const void *p, size_t n);

int pg_col_null(pg_stmt *st, int col);
int64_t pg_col_int64(pg_stmt *st, int col);
int pg_col_int(pg_stmt *st, int col);
double pg_col_double(pg_stmt *st, int col);
/* The column's text, valid until the next step; NULL for SQL NULL. */
const char *pg_col_text(pg_stmt *st, int col);
size_t pg_col_bytes(pg_stmt *st, int col);
/* A bytea column decoded, valid until the next step or finalize. */
const void *pg_col_blob(pg_stmt *st, int col, size_t *n);
/* A heap copy of a text column (NULL for SQL NULL); sets *oom on ENOMEM. */
char *pg_col_dup(pg_stmt *st, int col, int *oom);

/* Rows the last statement on db inserted, updated or deleted. */
int64_t pg_changes(pg_conn *db);

/* Set the error slot from db's last failure ("store: what: message") and
 * return FARM_EIO. */
int pg_err(pg_conn *db, const char *what);

/* Run SQL without parameters or results (several statements allowed).
 * Returns 0 or FARM_EIO. */
int pg_exec(pg_conn *db, const char *sql);

/* ---- connections and transactions ---------------------------------------- */

/* A new connection to s's database (NULL with the error set), and closing
 * one. */
pg_conn *pg_conn_open(pg_store *s);
void pg_conn_close(pg_conn *db);

/* Borrow a connection of s (an idle one, or a new one) and give it back. A
 * connection that broke is closed instead of kept. pg_reader_get() returns
 * NULL with the error set when the database cannot be reached. */
pg_conn *pg_reader_get(store *s);
void pg_reader_put(store *s, pg_conn *db);

/* Inside a write function: a statement on the write's connection. Give it
 * back with pg_tx_stmt_done(). Returns 0 or FARM_ENOMEM. */
int pg_tx_stmt(pg_stmt **out, store_tx *tx, const char *sql);
void pg_tx_stmt_done(store_tx *tx, pg_stmt *st);

/* On a borrowed connection: pg_prepare() and pg_finalize(), under the names
 * the SQLite twin uses for its cached statements. */
int pg_reader_stmt(pg_stmt **out, store *s, pg_conn *db, const char *sql);
void pg_reader_stmt_done(store *s, pg_conn *db, pg_stmt *st);

/* store_write() on this backend: fn runs in a transaction of its own on a
 * pooled connection, again from the start when the transaction loses a race
 * (see above). */
int pg_write(store *s, store_write_fn fn, void *arg);

/* Take a transaction-scoped advisory lock (released at commit or rollback):
 * the writes that must not run side by side (the job lease) take the same
 * key. Returns 0 or FARM_EIO. */
int pg_tx_lock(store_tx *tx, int64_t key);

#define PG_LOCK_MIGRATE 0x6661726d736368LL /* "farmsch" */

/* ---- notifications (pg_notify.c) ------------------------------------------
 * The channels of store_notify.h's kinds. A write announces its change with
 * pg_tx_notify() (or pg_conn_notify() on the connection of a stream
 * transaction) inside its transaction: delivered at commit. */
#define PG_CHANNEL_JOBS    "farm_jobs"
#define PG_CHANNEL_OUTBOX  "farm_outbox"
#define PG_CHANNEL_SESSION "farm_session"
#define PG_CHANNEL_STREAM  "farm_stream"

/* Read the schema the store's connections work in and set s->chan. */
int pg_notify_channels(pg_store *s, pg_conn *db);
int pg_conn_notify(pg_conn *db, const char *channel, const char *payload);
int pg_tx_notify(store_tx *tx, const char *channel, const char *payload);
/* store_backend's notify_listen(): start the listener thread. */
int pg_notify_listen(store *st);
/* Stop the listener (from the store's close; none running is fine). */
void pg_notify_stop(pg_store *s);

/* ---- the areas ------------------------------------------------------------ */

extern const store_stream_ops pg_stream_ops;
extern const store_inspect_ops pg_inspect_ops;

/* The last migration's version (the same numbers as SQLite's). */
int pg_schema_latest(void);

/* Bring the database up to date in one transaction under an advisory lock
 * (two farms starting together migrate once). Returns 0, FARM_ENEWER or
 * FARM_EIO. */
int pg_schema_migrate(pg_conn *db);

/* The schema version the database is at. */
int pg_schema_version(int *out, pg_conn *db);

int pg_limit(int limit);

#endif
