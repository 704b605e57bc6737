/*
 * store_sql.h - one cursor over either backend, so that an area's SQL and
 * row handling are written once (sql_<area>.c) and run on SQLite and
 * PostgreSQL alike. It owns sql_stmt and sql_conn (opaque) and the calls on
 * them; each backend provides a table of the same calls (sql_driver, in
 * sqlite_sql.c over sqlite_internal.h and pg_sql.c over pg_internal.h),
 * reached through store_backend's sql entry. Nothing here includes sqlite3.h
 * or libpq-fe.h. Only farm/store's files include it.
 *
 * The SQL is the subset both databases speak: parameters are $1, $2 ...
 * (SQLite takes "$1" as a named parameter: its driver binds by name), upserts
 * are ON CONFLICT ... DO UPDATE / DO NOTHING and name the old value with its
 * table (model_spend.usd + excluded.usd: PostgreSQL refuses a bare column
 * there as ambiguous), inserts that need their key say RETURNING, and a
 * case-blind match is lower(x) = lower($n) (on SQLite that folds ASCII
 * only, as its COLLATE NOCASE did; PostgreSQL folds by its locale, as it
 * did). What cannot be said in that subset (the job lease's advisory lock,
 * the stream's row locks, the schema) stays in the backend's own file.
 *
 * Text and blobs are copied when bound, so a bound value need not outlive
 * the bind. Column text and blobs are valid until the next step.
 */
#ifndef FARM_FARM_STORE_STORE_SQL_H
#define FARM_FARM_STORE_STORE_SQL_H

#include "store_backend.h"
#include "store_notify.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sql_stmt sql_stmt;
typedef struct sql_conn sql_conn; /* a borrowed read connection */

/* sql_step()'s results (SQLite's and PostgreSQL's helper's numbers). */
#define SQL_ROW   100
#define SQL_DONE  101
#define SQL_ERROR 1

/* What a failed step ran into (sql_failure()). */
enum sql_failure {
    SQL_FAIL_OTHER = 0,
    SQL_FAIL_UNIQUE,      /* a unique index or primary key */
    SQL_FAIL_FOREIGN_KEY, /* a row that a foreign key names is missing */
};

/* ---- connections and statements ---------------------------------------- */

/* Borrow a read connection of s and give it back. NULL (with the error set)
 * when the database cannot be reached; sql_prepare() then fails with
 * FARM_EIO and sql_reader_put() accepts the NULL. */
sql_conn *sql_reader_get(store *s);
void sql_reader_put(store *s, sql_conn *c);

/* A statement for sql on a borrowed connection, compiled for this use; free
 * it with sql_finalize() before sql_reader_put(). Returns 0, FARM_ENOMEM or
 * FARM_EIO. */
int sql_prepare(sql_stmt **out, store *s, sql_conn *c, const char *sql);
void sql_finalize(sql_stmt *st); /* NULL accepted */

/* Inside a write function: the statement for sql on the write's connection
 * (sql must be a string literal: SQLite keeps it compiled by its address).
 * Give it back with sql_tx_stmt_done(). Returns 0, FARM_ENOMEM or FARM_EIO. */
int sql_tx_stmt(sql_stmt **out, store_tx *tx, const char *sql);
/* Inside a write: tell the store's other processes (kind: STORE_NOTIFY_JOBS
 * ...; payload as store_notify.h says), delivered when the write commits.
 * A backend with one process does nothing. Returns 0 or FARM_EIO. */
int sql_tx_notify(store_tx *tx, store_notify_kind kind, const char *payload);

void sql_tx_stmt_done(store_tx *tx, sql_stmt *st); /* NULL accepted */

/* Inside a write: whether other processes' writes run beside this one
 * (PostgreSQL), so that a write picking rows to take must lock them (FOR
 * UPDATE ... SKIP LOCKED); 0 where one write runs at a time (SQLite's BEGIN
 * IMMEDIATE). */
int sql_tx_concurrent(store_tx *tx);

/* Inside a write: take the lock named key until the write commits or rolls
 * back, so that writes taking the same key run one at a time across every
 * process (PostgreSQL's advisory lock; nothing on SQLite, whose writes
 * already run one at a time). Returns 0 or FARM_EIO. */
int sql_tx_lock(store_tx *tx, int64_t key);

#define SQL_LOCK_JOB_LEASE 0x6661726d6a6f62LL /* "farmjob": taking a job's lease */
#define SQL_LOCK_PACE      0x6661726d706163LL /* "farmpac": shared tracker pacing (sql_node.c) */

/* Inside a write function: a statement on the write's connection compiled
 * for this use (for SQL run rarely, which should not take a place in
 * SQLite's cache); free it with sql_finalize(). */
int sql_tx_prepare(sql_stmt **out, store_tx *tx, const char *sql);

/* Drop st's result, keeping its parameters: the next sql_step() runs it
 * again. */
void sql_reset(sql_stmt *st);

/* Run (first call) and step: SQL_ROW, SQL_DONE or SQL_ERROR. */
int sql_step(sql_stmt *st);

/* Bind parameter $i (from 1). Text NULL binds NULL. */
void sql_bind_int64(sql_stmt *st, int i, int64_t v);
void sql_bind_int(sql_stmt *st, int i, int v);
void sql_bind_double(sql_stmt *st, int i, double v);
void sql_bind_text(sql_stmt *st, int i, const char *v);
void sql_bind_null(sql_stmt *st, int i); /* a NULL integer */
void sql_bind_blob(sql_stmt *st, int i, const void *p, size_t n);

int sql_col_null(sql_stmt *st, int col);
int64_t sql_col_int64(sql_stmt *st, int col);
int sql_col_int(sql_stmt *st, int col);
double sql_col_double(sql_stmt *st, int col);
const char *sql_col_text(sql_stmt *st, int col); /* NULL for SQL NULL */
const void *sql_col_blob(sql_stmt *st, int col, size_t *n);
/* A heap copy of a text column (NULL for SQL NULL); sets *oom on ENOMEM. */
char *sql_col_dup(sql_stmt *st, int col, int *oom);

/* Rows the last statement on st's connection inserted, updated or deleted. */
int64_t sql_changes(sql_stmt *st);

/* Set the error slot from st's connection's last failure ("store: what:
 * message") and return FARM_EIO. */
int sql_err(sql_stmt *st, const char *what);

/* What st's last failed step ran into. */
enum sql_failure sql_failure(sql_stmt *st);

/* ---- helpers written once over the cursor ------------------------------ */

/* Make room for one more element in the array *pv points at (count
 * elements of size bytes in, *cap allocated): doubled when full. Returns 0,
 * or FARM_ENOMEM with the error set and the array as it was. */
int sql_grow(void *pv, size_t *cap, size_t count, size_t size);

/* The limit to use for a list: default when <= 0, capped at STORE_LIST_MAX. */
int sql_limit(int limit);

/* Run a counting query whose first nlabels (<= 3) columns are labels and
 * whose last is the count (see store_count in store.h). */
int sql_count_query(store_count **out, size_t *n, store *s, const char *sql, int nlabels);

/* The session table's columns in the order sql_session_read() reads them. */
#define SQL_SESSION_COLS                                                                           \
    "id, tracker, repo, number, title, url, state, branch, pr_number, pr_url, runs,"               \
    " agent_seconds, cost, last_seq, created_ms, updated_ms, pr_draft, pr_draft_reason, agent"

/* Read the row st stands on (selected with SQL_SESSION_COLS) into *s, which
 * owns the strings afterwards. Returns 0 or FARM_ENOMEM (then *s holds
 * nothing). */
int sql_session_read(store_session *s, sql_stmt *st);

/* ---- the areas written once (sql_<area>.c) ----------------------------- */

#define SQL_EVENT_BODY_MAX (4u << 20) /* one event's JSON body */

/* store_tx_event_append() (sql_session.c), for the writes of other areas
 * that log what they did (the outbox's). */
int sql_tx_event_append(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                        const char *actor, const char *body_json);

extern const store_delivery_ops sql_delivery_ops;
extern const store_job_ops sql_job_ops;
extern const store_outbox_ops sql_outbox_ops;
extern const store_session_ops sql_session_ops;
extern const store_setting_ops sql_setting_ops;
extern const store_run_ops sql_run_ops;
extern const store_review_ops sql_review_ops;
extern const store_digest_ops sql_digest_ops;
extern const store_node_ops sql_node_ops;
void sql_local_backend(struct local_backend *out, store *s);

/* ---- for the backends ---------------------------------------------------
 * A backend's table of the cursor's calls. Its statements begin with a
 * struct sql_stmt (the driver that made them); its connections are its own
 * handles, cast. */
typedef struct sql_driver {
    sql_conn *(*reader_get)(store *s);
    void (*reader_put)(store *s, sql_conn *c);
    int (*prepare)(sql_stmt **out, store *s, sql_conn *c, const char *sql);
    void (*finalize)(sql_stmt *st);
    int (*tx_stmt)(sql_stmt **out, store_tx *tx, const char *sql);
    void (*tx_stmt_done)(store_tx *tx, sql_stmt *st);
    int (*tx_prepare)(sql_stmt **out, store_tx *tx, const char *sql);
    void (*reset)(sql_stmt *st);
    int (*step)(sql_stmt *st);
    void (*bind_int64)(sql_stmt *st, int i, int64_t v);
    void (*bind_double)(sql_stmt *st, int i, double v);
    void (*bind_text)(sql_stmt *st, int i, const char *v);
    void (*bind_null)(sql_stmt *st, int i);
    void (*bind_blob)(sql_stmt *st, int i, const void *p, size_t n);
    int (*col_null)(sql_stmt *st, int col);
    int64_t (*col_int64)(sql_stmt *st, int col);
    double (*col_double)(sql_stmt *st, int col);
    const char *(*col_text)(sql_stmt *st, int col);
    const void *(*col_blob)(sql_stmt *st, int col, size_t *n);
    int64_t (*changes)(sql_stmt *st);
    int (*err)(sql_stmt *st, const char *what);
    enum sql_failure (*failure)(sql_stmt *st);
    /* tell the other processes on the store, when the write commits (NULL:
       the backend has one process: its in-process kicks do) */
    int (*tx_notify)(store_tx *tx, store_notify_kind kind, const char *payload);
    int (*tx_lock)(store_tx *tx, int64_t key); /* NULL: writes run one at a time */
    int concurrent;                            /* writes of several processes run side by side */
} sql_driver;

struct sql_stmt {
    const sql_driver *drv;
};

/* The backends' drivers (sqlite_sql.c, pg_sql.c). */
extern const sql_driver sqlite_sql_driver;
extern const sql_driver pg_sql_driver;

#endif
