/*
 * store_internal.h - what the store's own files share (never included
 * outside farm/store*.c and the store's unit tests).
 *
 * The store is split by area: store.c opens it and runs the writer thread
 * and the read pool, store_schema.c holds the ordered migrations, and each
 * area of tables has its own store_<area>.c using the helpers below. A new
 * area is a new file; a new table or column is one more entry at the end of
 * the migrations array.
 */
#ifndef FARM_FARM_STORE_STORE_INTERNAL_H
#define FARM_FARM_STORE_STORE_INTERNAL_H

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>

#define STORE_READERS          4
#define STORE_BUSY_TIMEOUT_MS  10000
#define STORE_EVENT_BODY_MAX   (4u << 20) /* one event's JSON body */
#define STORE_BATCH_MAX        256        /* writes in one transaction at most */
#define STORE_STMT_CACHE       64         /* statements kept compiled on the write connection */
#define STORE_READER_STMTS     4          /* statements kept compiled on each read connection */
#define STORE_CHECKPOINT_PAGES 1000       /* WAL pages that start a checkpoint (SQLite's default) */

typedef struct store_write_req store_write_req;

struct store {
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
    /* each reader's hot statements, compiled once (store_reader_stmt); a
     * reader's entries belong to whoever holds that reader */
    struct {
        const char *sql; /* the key: a string literal's address */
        sqlite3_stmt *st;
    } rstmts[STORE_READERS][STORE_READER_STMTS];
};

/* The handle a write function gets: the write connection, inside the
 * batch's transaction and the write's savepoint. */
struct store_tx {
    store *s;
    sqlite3 *db;
};

/* A migration: the SQL that takes the schema from version-1 to version. */
typedef struct store_migration {
    int version;
    const char *what;
    const char *sql;
} store_migration;

/* Bring db up to schema version target (store_schema_latest() when target
 * is 0), all in one transaction. Returns 0, FARM_ENEWER when the database is
 * newer than this binary knows, or FARM_EIO. Exposed for tests that build an
 * old database. */
int store_schema_migrate(sqlite3 *db, int target);

/* Open a connection to path with the farm's pragmas (WAL, synchronous=FULL,
 * busy timeout, foreign keys, temp_store=MEMORY); query_only for readers. */
int store_conn_open(sqlite3 **out, const char *path, int readonly);

/* Set the error slot from db's last error ("store: what: message") and
 * return FARM_EIO. */
int store_sqlerr(sqlite3 *db, const char *what);

/* Prepare one statement; on failure sets the error and returns FARM_EIO. */
int store_prepare(sqlite3_stmt **out, sqlite3 *db, const char *sql);

/* Inside a write function: the statement for sql (which must be a string
 * literal or otherwise live as long as the store: its address is the cache
 * key), compiled once per store and reused. Give it back with
 * store_tx_stmt_done() (never sqlite3_finalize). Returns 0 or FARM_EIO. */
int store_tx_stmt(sqlite3_stmt **out, store_tx *tx, const char *sql);
void store_tx_stmt_done(store_tx *tx, sqlite3_stmt *st);

/* Run SQL without results. Returns 0 or FARM_EIO. */
int store_exec(sqlite3 *db, const char *sql);

/* A heap copy of a text column (NULL for SQL NULL); sets *oom on ENOMEM. */
char *store_col_text(sqlite3_stmt *st, int col, int *oom);

/* Borrow a read connection (waits while all are busy) and give it back. */
sqlite3 *store_reader_get(store *s);
void store_reader_put(store *s, sqlite3 *db);

/* On a borrowed read connection db: the statement for sql (a string literal:
 * its address is the key), compiled once per reader and kept, for queries
 * run many times a second (the scheduler's due-job peek). Give it back with
 * store_reader_stmt_done() before store_reader_put(). Returns 0 or FARM_EIO;
 * when the cache is full the statement is compiled for this use only. */
int store_reader_stmt(sqlite3_stmt **out, store *s, sqlite3 *db, const char *sql);
void store_reader_stmt_done(store *s, sqlite3 *db, sqlite3_stmt *st);

/* Run a counting query whose first nlabels (<= 3) columns are labels and
 * whose last is the count (see store_count in store.h). */
int store_count_query(store_count **out, size_t *n, store *s, const char *sql, int nlabels);

/* The limit to use for a list: default when <= 0, capped at STORE_LIST_MAX. */
int store_limit(int limit);

#endif
