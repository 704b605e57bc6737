/*
 * sqlite_internal.h - the SQLite backend of the store: what its files share.
 * It owns the one database file <data_dir>/farm.db (WAL, synchronous=FULL),
 * its connections, the writer thread with the group commit, the read pool
 * and the statement caches; it calls SQLite and base/, and fills
 * store_backend_sqlite (store_backend.h), through which the front
 * (store.c, store_areas.c) calls it. Nothing outside the sqlite_*.c files
 * includes it, except the store's unit tests that look at the database
 * itself (migrations of an old file, a full disk, checkpoints).
 *
 * The backend is split by area: sqlite_store.c opens the database and runs
 * the writer thread, the checkpointer and the read pool, sqlite_schema.c
 * holds the ordered migrations, and sqlite_sql.c is its driver of the
 * neutral cursor (store_sql.h) on which the areas written once for both
 * backends run (sql_<area>.c). The areas not yet written once keep a
 * sqlite_<area>.c ending with its table of operations. A new table or column
 * is one more entry at the end of the migrations array (here and in
 * pg_schema.c). The front's handles reach this backend's state through
 * their impl pointer: a store's is a sqlite_store, a store_tx's a sqlite_tx.
 */
#ifndef FARM_FARM_STORE_SQLITE_INTERNAL_H
#define FARM_FARM_STORE_SQLITE_INTERNAL_H

#include "store_backend.h"

#include <pthread.h>
#include <sqlite3.h>

#define STORE_READERS          4
#define STORE_BUSY_TIMEOUT_MS  10000
#define STORE_BATCH_MAX        256  /* writes in one transaction at most */
#define STORE_STMT_CACHE       64   /* statements kept compiled on the write connection */
#define STORE_READER_STMTS     4    /* statements kept compiled on each read connection */
#define STORE_CHECKPOINT_PAGES 1000 /* WAL pages that start a checkpoint (SQLite's default) */

typedef struct store_write_req store_write_req;

/* An open SQLite store (a store's impl). */
typedef struct sqlite_store {
    char *path; /* <dir>/farm.db */

    sqlite3 *wdb; /* the write connection: the writer thread's alone once started */
    pthread_t writer;
    int writer_started;
    pthread_mutex_t lock; /* guards the queue, stopping and stats */
    pthread_cond_t wake;  /* the writer waits here for work */
    store_write_req *head, *tail;
    int stopping;
    store_stats stats;

    /* Checkpoints run on a thread of their own (its own connection, PASSIVE,
     * so never blocking the writer) instead of inside the writer's COMMIT. */
    sqlite3 *cdb;
    pthread_t checkpointer;
    int checkpointer_started;
    pthread_mutex_t clock; /* guards the three below */
    pthread_cond_t cwake;  /* the checkpointer waits here */
    int checkpoint_wanted; /* the WAL passed STORE_CHECKPOINT_PAGES */
    int checkpointer_stopping;
    int wal_pages;        /* the WAL's length after the last commit (writer thread only) */
    int checkpoint_at;    /* the length that wakes the checkpointer next (writer thread only) */
    uint64_t checkpoints; /* checkpoints run (for tests and /metrics) */

    struct {
        const char *sql; /* the key: a string literal's address */
        sqlite3_stmt *st;
    } stmts[STORE_STMT_CACHE]; /* the writer's statements, compiled once */
    int nstmts;

    pthread_mutex_t rlock; /* guards the read pool */
    pthread_cond_t rfree;
    sqlite3 *readers[STORE_READERS];
    int rbusy[STORE_READERS];
    /* each reader's hot statements, compiled once (sqlite_reader_stmt); a
     * reader's entries belong to whoever holds that reader */
    struct {
        const char *sql; /* the key: a string literal's address */
        sqlite3_stmt *st;
    } rstmts[STORE_READERS][STORE_READER_STMTS];
} sqlite_store;

/* A write function's transaction (a store_tx's impl): the write
 * connection, inside the batch's transaction and the write's savepoint. */
typedef struct sqlite_tx {
    sqlite_store *s;
    sqlite3 *db;
} sqlite_tx;

/* The write connection of a write function's tx. */
static inline sqlite3 *sqlite_tx_db(store_tx *tx)
{
    return ((sqlite_tx *)tx->impl)->db;
}

/* The tables of operations of the areas, gathered in store_backend_sqlite. */
extern const store_stream_ops sqlite_stream_ops;
extern const store_inspect_ops sqlite_inspect_ops;

/* store_write() on this backend, for the areas' own writes (no dispatch). */
int sqlite_write(store *s, store_write_fn fn, void *arg);

/* A migration: the SQL that takes the schema from version-1 to version. */
typedef struct sqlite_migration {
    int version;
    const char *what;
    const char *sql;
} sqlite_migration;

/* The last migration's version (store_schema_latest()). */
int sqlite_schema_latest(void);

/* Bring db up to schema version target (sqlite_schema_latest() when target
 * is 0), all in one transaction. Returns 0, FARM_ENEWER when the database is
 * newer than this binary knows, or FARM_EIO. Exposed for tests that build an
 * old database. */
int sqlite_schema_migrate(sqlite3 *db, int target);

/* The migration that creates the stream tables (sqlite_stream.c). */
extern const char sqlite_stream_schema_sql[];

/* Open a connection to path with the farm's pragmas (WAL, synchronous=FULL,
 * busy timeout, foreign keys, temp_store=MEMORY); query_only for readers. */
int sqlite_conn_open(sqlite3 **out, const char *path, int readonly);

/* Set the error slot from db's last error ("store: what: message") and
 * return FARM_EIO. */
int sqlite_err(sqlite3 *db, const char *what);

/* Prepare one statement; on failure sets the error and returns FARM_EIO. */
int sqlite_prepare(sqlite3_stmt **out, sqlite3 *db, const char *sql);

/* Inside a write function: the statement for sql (which must be a string
 * literal or otherwise live as long as the store: its address is the cache
 * key), compiled once per store and reused. Give it back with
 * sqlite_tx_stmt_done() (never sqlite3_finalize). Returns 0 or FARM_EIO. */
int sqlite_tx_stmt(sqlite3_stmt **out, store_tx *tx, const char *sql);
void sqlite_tx_stmt_done(store_tx *tx, sqlite3_stmt *st);

/* Run SQL without results. Returns 0 or FARM_EIO. */
int sqlite_exec(sqlite3 *db, const char *sql);

/* A heap copy of a text column (NULL for SQL NULL); sets *oom on ENOMEM. */
char *sqlite_col_text(sqlite3_stmt *st, int col, int *oom);

/* Borrow a read connection of s (waits while all are busy) and give it
 * back. */
sqlite3 *sqlite_reader_get(store *s);
void sqlite_reader_put(store *s, sqlite3 *db);

/* On a borrowed read connection db: the statement for sql (a string literal:
 * its address is the key), compiled once per reader and kept, for queries
 * run many times a second (the scheduler's due-job peek). Give it back with
 * sqlite_reader_stmt_done() before sqlite_reader_put(). Returns 0 or
 * FARM_EIO; when the cache is full the statement is compiled for this use
 * only. */
int sqlite_reader_stmt(sqlite3_stmt **out, store *s, sqlite3 *db, const char *sql);
void sqlite_reader_stmt_done(store *s, sqlite3 *db, sqlite3_stmt *st);

/* The limit to use for a list: default when <= 0, capped at STORE_LIST_MAX. */
int sqlite_limit(int limit);

#endif
