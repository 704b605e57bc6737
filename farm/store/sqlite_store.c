/*
 * sqlite_store.c - the SQLite backend's core: opening the database, the
 * writer thread that group-commits every write, the pool of read
 * connections, and the backend's table of operations (store_backend_sqlite,
 * gathering the areas' tables of the other sqlite_*.c files).
 *
 * The writer is the only code that writes. Callers queue a request and sleep
 * on their own condition variable; the writer takes the whole queue, wraps it
 * in one BEGIN IMMEDIATE ... COMMIT with a SAVEPOINT per request, and wakes
 * each caller with its result after the COMMIT (WAL, synchronous=FULL) is on
 * disk. Under load the queue fills while the previous fsync runs, so the
 * number of commits grows much more slowly than the number of writes.
 * An asynchronous write (store_write_async()) waits for no thread: its request
 * lives on the heap and the writer calls its completion after the COMMIT.
 *
 * WAL checkpoints (copying the log back into the database, with an fsync of
 * the database) are not run inside a COMMIT, where every writer in the batch
 * would wait for them: the writer's WAL hook wakes a checkpointer thread,
 * which runs a PASSIVE checkpoint on its own connection alongside the writer.
 */
#include "sqlite_internal.h"
#include "store_sql.h"

#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct store_write_req {
    store_write_fn fn;
    void *arg;
    store_done_fn done; /* set for store_write_async(): the request is on the heap */
    int rc;
    int finished;
    pthread_cond_t cond; /* signalled when finished (store_write() only) */
    char err[512];       /* the write function's error message */
    store_write_req *next;
};

/* ---- helpers shared by the store's files -------------------------------- */

int sqlite_err(sqlite3 *db, const char *what)
{
    farm_error_set("store: %s: %s", what, db ? sqlite3_errmsg(db) : "no database");
    return FARM_EIO;
}

int sqlite_prepare(sqlite3_stmt **out, sqlite3 *db, const char *sql)
{
    *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, out, NULL) != SQLITE_OK) {
        sqlite3_finalize(*out);
        *out = NULL;
        return sqlite_err(db, "preparing a statement");
    }
    return 0;
}

int sqlite_tx_stmt(sqlite3_stmt **out, store_tx *tx, const char *sql)
{
    sqlite_store *s = ((sqlite_tx *)tx->impl)->s;

    *out = NULL;
    for (int i = 0; i < s->nstmts; i++) {
        if (s->stmts[i].sql == sql) {
            *out = s->stmts[i].st;
            return 0;
        }
    }
    if (s->nstmts == STORE_STMT_CACHE) /* full: compile for this use only */
        return sqlite_prepare(out, sqlite_tx_db(tx), sql);
    if (sqlite3_prepare_v3(sqlite_tx_db(tx), sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) !=
        SQLITE_OK) {
        sqlite3_finalize(*out);
        *out = NULL;
        return sqlite_err(sqlite_tx_db(tx), "preparing a statement");
    }
    s->stmts[s->nstmts].sql = sql;
    s->stmts[s->nstmts].st = *out;
    s->nstmts++;
    return 0;
}

void sqlite_tx_stmt_done(store_tx *tx, sqlite3_stmt *st)
{
    sqlite_store *s = ((sqlite_tx *)tx->impl)->s;

    if (!st)
        return;
    for (int i = 0; i < s->nstmts; i++) {
        if (s->stmts[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

/* Step a cached statement without results (the transaction control). */
static int tx_run(store_tx *tx, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_tx_stmt(&st, tx, sql);
    if (rc)
        return rc;
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite_err(sqlite_tx_db(tx), sql);
    sqlite_tx_stmt_done(tx, st);
    return rc;
}

int sqlite_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        farm_error_set("store: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return FARM_EIO;
    }
    return 0;
}

char *sqlite_col_text(sqlite3_stmt *st, int col, int *oom)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    if (!t)
        return NULL;
    char *copy = strdup((const char *)t);
    if (!copy)
        *oom = 1;
    return copy;
}

int sqlite_limit(int limit)
{
    if (limit <= 0)
        return STORE_LIST_DEFAULT;
    return limit > STORE_LIST_MAX ? STORE_LIST_MAX : limit;
}

/* Only the farm reads its store: the data directory may be traversable (the
 * sandbox's uid walks through it to the worktrees), so the database is 0600
 * (SQLite gives the -wal and -shm files the database's mode). The file is
 * created here only when it does not exist yet, and its mode is set by path:
 * closing any descriptor of the database would drop every POSIX lock SQLite
 * holds on it in this process, and another process closing its connection
 * would then remove the WAL and shared-memory files under the farm's feet. */
static int private_files(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        close(fd); /* new: no connection, so no lock, exists yet */
    else if (errno != EEXIST)
        goto fail;
    if (chmod(path, 0600) != 0)
        goto fail;
    return 0;
fail:
    farm_error_set("store: cannot open %s: %s", path, strerror(errno));
    return FARM_EIO;
}

int sqlite_conn_open(sqlite3 **out, const char *path, int readonly)
{
    sqlite3 *db = NULL;
    int rc = 0;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (readonly ? 0 : SQLITE_OPEN_CREATE);

    *out = NULL;
    if (!readonly && (rc = private_files(path)))
        return rc;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        farm_error_set("store: cannot open %s: %s", path,
                       db ? sqlite3_errmsg(db) : "out of memory");
        rc = FARM_EIO;
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    if (!readonly) {
        sqlite3_stmt *st = NULL;
        if ((rc = sqlite_prepare(&st, db, "PRAGMA journal_mode=WAL")))
            goto out;
        if (sqlite3_step(st) != SQLITE_ROW ||
            strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
            sqlite3_finalize(st);
            farm_error_set("store: %s cannot use write-ahead logging (is it on a network "
                           "filesystem?)",
                           path);
            rc = FARM_EIO;
            goto out;
        }
        sqlite3_finalize(st);
    }
    /* temp_store=MEMORY keeps the savepoint journal (each write's changed
     * pages, to roll back that write alone) in memory: as a temporary file
     * it spilled past 64 KiB, and a batch then paid a dozen 4 KiB pwrite()s
     * per delivery that no crash recovery reads (the WAL and its fsync make
     * a commit durable). */
    if ((rc = sqlite_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                              " PRAGMA temp_store=MEMORY")))
        goto out;
    if (readonly && (rc = sqlite_exec(db, "PRAGMA query_only=ON")))
        goto out;
    *out = db;
    db = NULL;
out:
    sqlite3_close(db);
    return rc;
}

/* ---- the read pool ------------------------------------------------------ */

sqlite3 *sqlite_reader_get(store *st)
{
    sqlite_store *s = st->impl;
    sqlite3 *db = NULL;
    pthread_mutex_lock(&s->rlock);
    for (;;) {
        for (int i = 0; i < STORE_READERS; i++) {
            if (!s->rbusy[i]) {
                s->rbusy[i] = 1;
                db = s->readers[i];
                goto out;
            }
        }
        pthread_cond_wait(&s->rfree, &s->rlock);
    }
out:
    pthread_mutex_unlock(&s->rlock);
    return db;
}

void sqlite_reader_put(store *st, sqlite3 *db)
{
    sqlite_store *s = st->impl;

    pthread_mutex_lock(&s->rlock);
    for (int i = 0; i < STORE_READERS; i++) {
        if (s->readers[i] == db) {
            s->rbusy[i] = 0;
            break;
        }
    }
    pthread_cond_signal(&s->rfree);
    pthread_mutex_unlock(&s->rlock);
}

static int reader_index(sqlite_store *s, sqlite3 *db)
{
    for (int i = 0; i < STORE_READERS; i++)
        if (s->readers[i] == db)
            return i;
    return -1;
}

int sqlite_reader_stmt(sqlite3_stmt **out, store *st, sqlite3 *db, const char *sql)
{
    sqlite_store *s = st->impl;
    int r = reader_index(s, db);

    *out = NULL;
    for (int i = 0; r >= 0 && i < STORE_READER_STMTS; i++) {
        if (s->rstmts[r][i].sql == sql) {
            *out = s->rstmts[r][i].st;
            return 0;
        }
        if (!s->rstmts[r][i].sql) {
            if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) !=
                SQLITE_OK) {
                sqlite3_finalize(*out);
                *out = NULL;
                return sqlite_err(db, "preparing a statement");
            }
            s->rstmts[r][i].sql = sql;
            s->rstmts[r][i].st = *out;
            return 0;
        }
    }
    return sqlite_prepare(out, db, sql); /* full: compile for this use only */
}

void sqlite_reader_stmt_done(store *st, sqlite3 *db, sqlite3_stmt *stmt)
{
    sqlite_store *s = st->impl;
    int r = reader_index(s, db);

    if (!stmt)
        return;
    for (int i = 0; r >= 0 && i < STORE_READER_STMTS; i++) {
        if (s->rstmts[r][i].st == stmt) {
            sqlite3_reset(stmt); /* ends its read transaction */
            sqlite3_clear_bindings(stmt);
            return;
        }
    }
    sqlite3_finalize(stmt);
}

/* ---- the writer --------------------------------------------------------- */

/* Run one write in its savepoint. Returns the write's result; *lost is set
 * when the transaction itself is gone (SQLite rolls a whole transaction back
 * on some I/O errors), after which nothing of the batch can be committed. */
static int run_one(sqlite_store *s, store_write_req *r, int *lost)
{
    sqlite_tx t = {s, s->wdb};
    store_tx tx = {&store_backend_sqlite, &t};
    int rc;

    if (tx_run(&tx, "SAVEPOINT w")) {
        *lost = 1;
        return FARM_EIO;
    }
    farm_error_clear();
    rc = r->fn(&tx, r->arg);
    if (rc) {
        snprintf(r->err, sizeof(r->err), "%s", farm_error_last());
        if (sqlite3_get_autocommit(s->wdb)) {
            *lost = 1;
            return rc;
        }
        if (tx_run(&tx, "ROLLBACK TO w") || tx_run(&tx, "RELEASE w"))
            *lost = 1;
        return rc;
    }
    if (sqlite3_get_autocommit(s->wdb) || tx_run(&tx, "RELEASE w")) {
        *lost = 1;
        return FARM_EIO;
    }
    return 0;
}

static void run_batch(sqlite_store *s, store_write_req *batch)
{
    sqlite_tx t = {s, s->wdb};
    store_tx tx = {&store_backend_sqlite, &t};
    int lost = 0;
    uint64_t n = 0, ok = 0, failed = 0;
    const char *why = NULL;

    if (tx_run(&tx, "BEGIN IMMEDIATE")) {
        lost = 1;
    } else {
        for (store_write_req *r = batch; r && !lost; r = r->next)
            r->rc = run_one(s, r, &lost);
    }
    if (!lost && tx_run(&tx, "COMMIT")) {
        lost = 1;
        why = farm_error_last();
    }
    if (lost) {
        char msg[512];
        snprintf(msg, sizeof(msg), "store: the write transaction failed: %s",
                 why ? why : farm_error_last());
        if (!sqlite3_get_autocommit(s->wdb))
            sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
        log_error("store commit failed", "error", msg);
        for (store_write_req *r = batch; r; r = r->next) {
            r->rc = FARM_EIO;
            snprintf(r->err, sizeof(r->err), "%s", msg);
        }
    }
    for (store_write_req *r = batch; r; r = r->next) {
        n++;
        if (r->rc == 0)
            ok++;
        else if (!lost)
            failed++;
    }
    pthread_mutex_lock(&s->lock);
    if (lost)
        s->stats.failed_commits++;
    else
        s->stats.commits++;
    s->stats.writes += ok;
    s->stats.failed_writes += failed;
    if (n > s->stats.max_batch)
        s->stats.max_batch = n;
    pthread_mutex_unlock(&s->lock);
}

/* Run the completions of finished asynchronous writes, in queue order, with
 * each write's error message in the error slot, and free their requests. */
static void complete_async(store_write_req *list)
{
    for (store_write_req *r = list, *next; r; r = next) {
        next = r->next;
        if (r->rc)
            farm_error_set("%s", r->err);
        else
            farm_error_clear();
        r->done(r->arg, r->rc);
        free(r);
    }
}

static void *writer_main(void *arg)
{
    sqlite_store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->wake, &s->lock);
        if (!s->head)
            break; /* stopping, and nothing left to write */
        /* Take at most STORE_BATCH_MAX: a flood is committed in slices, so
         * the first writers are answered without waiting for the last. */
        store_write_req *batch = s->head, *last = s->head;
        uint64_t taken = 1;
        while (last->next && taken < STORE_BATCH_MAX) {
            last = last->next;
            taken++;
        }
        s->head = last->next;
        if (!s->head)
            s->tail = NULL;
        last->next = NULL;
        s->stats.queued -= taken;
        pthread_mutex_unlock(&s->lock);

        run_batch(s, batch);

        /* Wake the blocked callers; set the asynchronous ones aside, to be
         * completed without the lock (their callbacks may queue writes). */
        store_write_req *done = NULL, **done_tail = &done;
        pthread_mutex_lock(&s->lock);
        for (store_write_req *r = batch, *next; r; r = next) {
            next = r->next; /* a blocked caller's r lives on its stack: read next first */
            if (r->done) {
                r->next = NULL;
                *done_tail = r;
                done_tail = &r->next;
                continue;
            }
            r->finished = 1;
            pthread_cond_signal(&r->cond);
        }
        if (done) {
            pthread_mutex_unlock(&s->lock);
            complete_async(done);
            pthread_mutex_lock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Queue r (under no lock); FARM_ECANCELLED when the store is closing. With
 * wait set, block until the writer has finished it. */
static int enqueue(sqlite_store *s, store_write_req *r, int wait)
{
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        farm_error_set("store: closing, no more writes");
        return FARM_ECANCELLED;
    }
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    s->stats.queued++;
    pthread_cond_signal(&s->wake);
    while (wait && !r->finished)
        pthread_cond_wait(&r->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int sqlite_write(store *st, store_write_fn fn, void *arg)
{
    sqlite_store *s = st->impl;
    store_write_req r = {.fn = fn, .arg = arg};
    int rc;

    if (s->writer_started && pthread_equal(pthread_self(), s->writer)) {
        farm_error_set("store: store_write() called from inside a write function");
        return FARM_EINVALID; /* it would wait for itself forever */
    }
    pthread_cond_init(&r.cond, NULL);
    rc = enqueue(s, &r, 1);
    pthread_cond_destroy(&r.cond);
    if (rc)
        return rc;
    rc = r.rc;
    if (rc)
        farm_error_set("%s", r.err);
    return rc;
}

static int write_async(store *st, store_write_fn fn, void *arg, store_done_fn done)
{
    sqlite_store *s = st->impl;
    store_write_req *r;
    int rc;

    if (!fn || !done) {
        farm_error_set("store: an asynchronous write needs a write and a completion function");
        return FARM_EINVALID;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    r->fn = fn;
    r->arg = arg;
    r->done = done;
    if ((rc = enqueue(s, r, 0)))
        free(r);
    return rc;
}

static void stats_get(store_stats *out, store *st)
{
    sqlite_store *s = st->impl;

    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

/* ---- the checkpointer --------------------------------------------------- */

/* After each commit, on the writer thread: pages is the WAL's length. The
 * checkpointer is woken each time the log has grown by another
 * STORE_CHECKPOINT_PAGES (not after every commit past the mark: each
 * checkpoint costs an fsync of the database). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sqlite_store *s = arg;
    (void)name;
    if (pages < s->wal_pages) /* the log restarted from its beginning */
        s->checkpoint_at = STORE_CHECKPOINT_PAGES;
    s->wal_pages = pages;
    if (pages >= 4 * STORE_CHECKPOINT_PAGES) {
        /* Writes kept landing while the checkpointer worked, so the log
         * never restarted: finish the job here, where no write can land
         * (the rest is small, most of the log is copied back already). */
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages >= s->checkpoint_at) {
        s->checkpoint_at = pages + STORE_CHECKPOINT_PAGES;
        pthread_mutex_lock(&s->clock);
        s->checkpoint_wanted = 1;
        pthread_cond_signal(&s->cwake);
        pthread_mutex_unlock(&s->clock);
    }
    return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
    sqlite_store *s = arg;

    pthread_mutex_lock(&s->clock);
    for (;;) {
        while (!s->checkpoint_wanted && !s->checkpointer_stopping)
            pthread_cond_wait(&s->cwake, &s->clock);
        if (s->checkpointer_stopping)
            break;
        s->checkpoint_wanted = 0;
        pthread_mutex_unlock(&s->clock);

        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(s->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("store checkpoint failed", "error", sqlite3_errmsg(s->cdb));

        pthread_mutex_lock(&s->clock);
        s->checkpoints++;
    }
    pthread_mutex_unlock(&s->clock);
    return NULL;
}

/* Take checkpoints off the writer: its connection stops checkpointing on
 * its own, and its WAL hook wakes the checkpointer instead. */
static int checkpointer_start(sqlite_store *s)
{
    int rc;
    if ((rc = sqlite_conn_open(&s->cdb, s->path, 0)))
        return rc;
    if ((rc = pthread_create(&s->checkpointer, NULL, checkpointer_main, s))) {
        farm_error_set("store: cannot start the checkpointer thread: %s", strerror(rc));
        return FARM_ERROR;
    }
    s->checkpointer_started = 1;
    s->checkpoint_at = STORE_CHECKPOINT_PAGES;
    sqlite3_wal_hook(s->wdb, wal_hook, s); /* replaces the automatic checkpoint */
    return 0;
}

static void checkpointer_stop(sqlite_store *s)
{
    if (!s->checkpointer_started)
        return;
    pthread_mutex_lock(&s->clock);
    s->checkpointer_stopping = 1;
    pthread_cond_signal(&s->cwake);
    pthread_mutex_unlock(&s->clock);
    pthread_join(s->checkpointer, NULL);
    s->checkpointer_started = 0;
}

/* ---- open and close ----------------------------------------------------- */

/* Stop the threads, close every connection and free s (NULL accepted). */
static void release(sqlite_store *s)
{
    if (!s)
        return;
    if (s->writer_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
    }
    checkpointer_stop(s); /* the writer is gone: nothing wakes it any more */
    sqlite3_close(s->cdb);
    for (int i = 0; i < STORE_READERS; i++) {
        for (int j = 0; j < STORE_READER_STMTS; j++)
            sqlite3_finalize(s->rstmts[i][j].st);
        sqlite3_close(s->readers[i]);
    }
    for (int i = 0; i < s->nstmts; i++)
        sqlite3_finalize(s->stmts[i].st);
    /* the last connection to close checkpoints the WAL */
    sqlite3_close(s->wdb);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->rlock);
    pthread_cond_destroy(&s->rfree);
    pthread_mutex_destroy(&s->clock);
    pthread_cond_destroy(&s->cwake);
    free(s->path);
    free(s);
}

/* url is "sqlite:" and nothing more: the database is <dir>/farm.db. */
static int open_store(store *st, const char *url, const char *dir, const char *password)
{
    sqlite_store *s = NULL;
    int rc = 0;
    size_t n;

    (void)password; /* a file of the data directory: no password */
    if (strcmp(url, "sqlite:") != 0) {
        farm_error_set("store: the sqlite backend keeps its database in the data directory;"
                       " give \"sqlite:\" with nothing after it");
        return FARM_EINVALID;
    }
    if (!dir || !*dir) {
        farm_error_set("store: no data directory given");
        return FARM_EINVALID;
    }
    if (!(s = calloc(1, sizeof(*s))))
        goto nomem;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->rfree, NULL);
    pthread_mutex_init(&s->clock, NULL);
    pthread_cond_init(&s->cwake, NULL);
    n = strlen(dir) + sizeof("/farm.db");
    if (!(s->path = malloc(n)))
        goto nomem;
    snprintf(s->path, n, "%s/farm.db", dir);

    if ((rc = sqlite_conn_open(&s->wdb, s->path, 0)))
        goto out;
    if ((rc = sqlite_schema_migrate(s->wdb, 0)))
        goto out;
    for (int i = 0; i < STORE_READERS; i++)
        if ((rc = sqlite_conn_open(&s->readers[i], s->path, 1)))
            goto out;
    if ((rc = checkpointer_start(s)))
        goto out;
    if ((rc = pthread_create(&s->writer, NULL, writer_main, s))) {
        farm_error_set("store: cannot start the writer thread: %s", strerror(rc));
        rc = FARM_ERROR;
        goto out;
    }
    s->writer_started = 1;
    st->impl = s;
    return 0;
nomem:
    farm_error_set("store: out of memory");
    rc = FARM_ENOMEM;
out:
    release(s);
    return rc;
}

static void close_store(store *st)
{
    release(st->impl);
    st->impl = NULL;
}

static int schema_version(int *out, store *st)
{
    sqlite3 *db = sqlite_reader_get(st);
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite_prepare(&stmt, db, "PRAGMA user_version");
    if (!rc) {
        if (sqlite3_step(stmt) == SQLITE_ROW)
            *out = sqlite3_column_int(stmt, 0);
        else
            rc = sqlite_err(db, "reading the schema version");
    }
    sqlite3_finalize(stmt);
    sqlite_reader_put(st, db);
    return rc;
}

static int health(store *st)
{
    sqlite3 *db = sqlite_reader_get(st);
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite_prepare(&stmt, db, "SELECT count(*) FROM session WHERE id = 0");
    if (!rc && sqlite3_step(stmt) != SQLITE_ROW)
        rc = sqlite_err(db, "health check");
    sqlite3_finalize(stmt);
    sqlite_reader_put(st, db);
    return rc;
}

const store_backend store_backend_sqlite = {
    .name = "sqlite",
    .sql = &sqlite_sql_driver,
    .open = open_store,
    .close = close_store,
    .schema_latest = sqlite_schema_latest,
    .schema_version = schema_version,
    .health = health,
    .write = sqlite_write,
    .write_async = write_async,
    .stats_get = stats_get,
    .delivery = &sql_delivery_ops,
    .session = &sql_session_ops,
    .job = &sql_job_ops,
    .setting = &sql_setting_ops,
    .run = &sql_run_ops,
    .outbox = &sql_outbox_ops,
    .review = &sql_review_ops,
    .digest = &sql_digest_ops,
    .stream = &sqlite_stream_ops,
    .inspect = &sqlite_inspect_ops,
    .local_backend = sql_local_backend,
    .node = &sql_node_ops,
};
