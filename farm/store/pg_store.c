/*
 * pg_store.c - the PostgreSQL backend's core: the statement helper over
 * libpq, the pool of connections, the writes (a transaction each, run again
 * when it loses a race), the thread of asynchronous writes, opening and the
 * backend's table of operations (store_backend_pg).
 *
 * Connections are borrowed per call and given back: an idle list of at most
 * PG_IDLE_MAX, grown on demand, so a write function that reads through the
 * store (another connection) never waits for itself. Writes run at READ
 * COMMITTED; the places where a write must see every other one (the job
 * lease) take an advisory lock, rows that writes change together are locked
 * by their UPDATE or by SELECT ... FOR UPDATE (streams), and what only an
 * index can keep (one active session per issue, a delivery seen twice) is a
 * unique index.
 */
#include "pg_internal.h"
#include "store_sql.h"

#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* PostgreSQL's type oids for the parameters we send (pg_type.dat). */
#define OID_BOOL   16
#define OID_BYTEA  17
#define OID_INT8   20
#define OID_TEXT   25
#define OID_FLOAT8 701

struct pg_stmt {
    pg_conn *db;
    const char *sql;
    int n; /* parameters bound: the highest index */
    char *val[PG_PARAMS_MAX];
    int len[PG_PARAMS_MAX];
    int fmt[PG_PARAMS_MAX];
    unsigned int type[PG_PARAMS_MAX];
    int bad; /* a bind failed (index out of range, out of memory) */
    PGresult *res;
    int row, nrows;
    unsigned char *blob; /* the last decoded bytea */
};

/* ---- statements ---------------------------------------------------------- */

int pg_prepare(pg_stmt **out, pg_conn *db, const char *sql)
{
    pg_stmt *st;

    *out = NULL;
    if (!db)
        return FARM_EIO; /* pg_reader_get() could not connect: its error stands */
    if (!(st = calloc(1, sizeof(*st)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    st->db = db;
    st->sql = sql;
    st->row = -1;
    *out = st;
    return 0;
}

static void stmt_clear_result(pg_stmt *st)
{
    PQclear(st->res);
    st->res = NULL;
    PQfreemem(st->blob);
    st->blob = NULL;
    st->row = -1;
    st->nrows = 0;
}

void pg_reset(pg_stmt *st)
{
    if (st)
        stmt_clear_result(st);
}

void pg_finalize(pg_stmt *st)
{
    if (!st)
        return;
    stmt_clear_result(st);
    for (int i = 0; i < PG_PARAMS_MAX; i++)
        free(st->val[i]);
    free(st);
}

static void bind_raw(pg_stmt *st, int i, char *v, int len, int fmt, unsigned int type)
{
    if (i < 1 || i > PG_PARAMS_MAX) {
        st->bad = 1;
        free(v);
        return;
    }
    stmt_clear_result(st);
    free(st->val[i - 1]);
    st->val[i - 1] = v;
    st->len[i - 1] = len;
    st->fmt[i - 1] = fmt;
    st->type[i - 1] = type;
    if (i > st->n)
        st->n = i;
}

static char *dup_or_bad(pg_stmt *st, const char *s)
{
    char *v = strdup(s);
    if (!v)
        st->bad = 1;
    return v;
}

void pg_bind_int64(pg_stmt *st, int i, int64_t v)
{
    char b[32];
    snprintf(b, sizeof(b), "%" PRId64, v);
    bind_raw(st, i, dup_or_bad(st, b), 0, 0, OID_INT8);
}

void pg_bind_int(pg_stmt *st, int i, int v)
{
    pg_bind_int64(st, i, v);
}

void pg_bind_double(pg_stmt *st, int i, double v)
{
    char b[64];
    snprintf(b, sizeof(b), "%.17g", v);
    bind_raw(st, i, dup_or_bad(st, b), 0, 0, OID_FLOAT8);
}

void pg_bind_text(pg_stmt *st, int i, const char *v)
{
    bind_raw(st, i, v ? dup_or_bad(st, v) : NULL, 0, 0, OID_TEXT);
}

void pg_bind_null(pg_stmt *st, int i)
{
    bind_raw(st, i, NULL, 0, 0, OID_INT8);
}

void pg_bind_blob(pg_stmt *st, int i, const void *p, size_t n)
{
    char *v = malloc(n ? n : 1);
    if (!v || n > INT32_MAX) {
        st->bad = 1;
        free(v);
        return;
    }
    if (n)
        memcpy(v, p, n);
    bind_raw(st, i, v, (int)n, 1, OID_BYTEA);
}

/* Remember a failed result's SQLSTATE and message on its connection. */
static void conn_failed(pg_conn *db, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    size_t n;

    snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state ? state : "08000");
    if (!msg || !*msg)
        msg = PQerrorMessage(db->c);
    snprintf(db->msg, sizeof(db->msg), "%s", msg && *msg ? msg : "unknown error");
    n = strlen(db->msg);
    while (n && (db->msg[n - 1] == '\n' || db->msg[n - 1] == ' '))
        db->msg[--n] = '\0';
}

int pg_step(pg_stmt *st)
{
    if (!st->res) {
        const char *vals[PG_PARAMS_MAX];
        if (st->bad) {
            snprintf(st->db->sqlstate, sizeof(st->db->sqlstate), "XX000");
            snprintf(st->db->msg, sizeof(st->db->msg), "a parameter could not be bound");
            return PG_ERROR;
        }
        for (int i = 0; i < st->n; i++)
            vals[i] = st->val[i];
        st->res = PQexecParams(st->db->c, st->sql, st->n, st->type, vals, st->len, st->fmt, 0);
        switch (PQresultStatus(st->res)) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            st->nrows = PQntuples(st->res);
            st->db->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
            st->row = -1;
            break;
        default:
            conn_failed(st->db, st->res);
            PQclear(st->res);
            st->res = NULL;
            return PG_ERROR;
        }
    }
    PQfreemem(st->blob);
    st->blob = NULL;
    if (st->row + 1 < st->nrows) {
        st->row++;
        return PG_ROW;
    }
    st->row = st->nrows;
    return PG_DONE;
}

static int col_ok(pg_stmt *st, int col)
{
    return st->res && st->row >= 0 && st->row < st->nrows && col >= 0 && col < PQnfields(st->res);
}

int pg_col_null(pg_stmt *st, int col)
{
    return !col_ok(st, col) || PQgetisnull(st->res, st->row, col);
}

const char *pg_col_text(pg_stmt *st, int col)
{
    if (pg_col_null(st, col))
        return NULL;
    return PQgetvalue(st->res, st->row, col);
}

size_t pg_col_bytes(pg_stmt *st, int col)
{
    if (pg_col_null(st, col))
        return 0;
    return (size_t)PQgetlength(st->res, st->row, col);
}

int64_t pg_col_int64(pg_stmt *st, int col)
{
    const char *t = pg_col_text(st, col);
    if (!t)
        return 0;
    if (t[0] == 't' && !t[1])
        return 1;
    if (t[0] == 'f' && !t[1])
        return 0;
    if (strchr(t, '.') || strchr(t, 'e'))
        return (int64_t)strtod(t, NULL); /* a numeric (sum() of bigints) */
    return strtoll(t, NULL, 10);
}

int pg_col_int(pg_stmt *st, int col)
{
    return (int)pg_col_int64(st, col);
}

double pg_col_double(pg_stmt *st, int col)
{
    const char *t = pg_col_text(st, col);
    return t ? strtod(t, NULL) : 0;
}

const void *pg_col_blob(pg_stmt *st, int col, size_t *n)
{
    const char *t = pg_col_text(st, col);
    *n = 0;
    if (!t)
        return NULL;
    PQfreemem(st->blob);
    st->blob = PQunescapeBytea((const unsigned char *)t, n);
    return st->blob ? (const void *)st->blob : "";
}

char *pg_col_dup(pg_stmt *st, int col, int *oom)
{
    const char *t = pg_col_text(st, col);
    char *copy;
    if (!t)
        return NULL;
    if (!(copy = strdup(t)))
        *oom = 1;
    return copy;
}

int64_t pg_changes(pg_conn *db)
{
    return db->changes;
}

int pg_err(pg_conn *db, const char *what)
{
    farm_error_set("store: %s: %s", what, db ? db->msg : "no database");
    return FARM_EIO;
}

int pg_exec(pg_conn *db, const char *sql)
{
    PGresult *res = PQexec(db->c, sql);
    int rc = 0;
    ExecStatusType t = PQresultStatus(res);
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        conn_failed(db, res);
        farm_error_set("store: %s", db->msg);
        rc = FARM_EIO;
    }
    PQclear(res);
    return rc;
}

int pg_limit(int limit)
{
    if (limit <= 0)
        return STORE_LIST_DEFAULT;
    return limit > STORE_LIST_MAX ? STORE_LIST_MAX : limit;
}

/* ---- connections ---------------------------------------------------------- */

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* NOTICEs ("relation already exists, skipping") are not news */
}

pg_conn *pg_conn_open(pg_store *s)
{
    const char *keys[] = {"dbname", "password", "fallback_application_name", "connect_timeout",
                          NULL};
    const char *vals[] = {s->url, s->password, "farm", "10", NULL};
    pg_conn *db = calloc(1, sizeof(*db));

    if (!db) {
        farm_error_set("store: out of memory");
        return NULL;
    }
    if (!s->password) { /* the URL's own password, if any, stands */
        keys[1] = "fallback_application_name";
        vals[1] = "farm";
    }
    db->c = PQconnectdbParams(keys, vals, 1);
    if (!db->c || PQstatus(db->c) != CONNECTION_OK) {
        const char *m = db->c ? PQerrorMessage(db->c) : "out of memory";
        char msg[512];
        size_t n;
        snprintf(msg, sizeof(msg), "%s", m);
        n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        farm_error_set("store: cannot connect to PostgreSQL: %s (check store.url and that the"
                       " server is up)",
                       msg);
        PQfinish(db->c);
        free(db);
        return NULL;
    }
    PQsetNoticeProcessor(db->c, quiet, NULL);
    db->chan = s->chan;
    return db;
}

void pg_conn_close(pg_conn *db)
{
    if (!db)
        return;
    PQfinish(db->c);
    free(db);
}

pg_conn *pg_reader_get(store *st)
{
    pg_store *s = st->impl;
    pg_conn *db;

    pthread_mutex_lock(&s->lock);
    db = s->idle;
    if (db) {
        s->idle = db->next;
        s->nidle--;
    }
    pthread_mutex_unlock(&s->lock);
    if (db) {
        db->next = NULL;
        db->sqlstate[0] = '\0';
        return db;
    }
    return pg_conn_open(s);
}

void pg_reader_put(store *st, pg_conn *db)
{
    pg_store *s = st->impl;

    if (!db)
        return;
    if (PQstatus(db->c) != CONNECTION_OK || PQtransactionStatus(db->c) != PQTRANS_IDLE) {
        pg_conn_close(db); /* broken, or left inside a transaction */
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (s->nidle < PG_IDLE_MAX) {
        db->next = s->idle;
        s->idle = db;
        s->nidle++;
        db = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    pg_conn_close(db);
}

int pg_reader_stmt(pg_stmt **out, store *s, pg_conn *db, const char *sql)
{
    (void)s;
    return pg_prepare(out, db, sql);
}

void pg_reader_stmt_done(store *s, pg_conn *db, pg_stmt *st)
{
    (void)s;
    (void)db;
    pg_finalize(st);
}

int pg_tx_stmt(pg_stmt **out, store_tx *tx, const char *sql)
{
    return pg_prepare(out, pg_tx_db(tx), sql);
}

void pg_tx_stmt_done(store_tx *tx, pg_stmt *st)
{
    (void)tx;
    pg_finalize(st);
}

int pg_tx_lock(store_tx *tx, int64_t key)
{
    pg_stmt *st = NULL;
    int rc = pg_tx_stmt(&st, tx, "SELECT pg_advisory_xact_lock($1)");
    if (rc)
        return rc;
    pg_bind_int64(st, 1, key);
    if (pg_step(st) != PG_ROW)
        rc = pg_err(pg_tx_db(tx), "taking a lock");
    pg_tx_stmt_done(tx, st);
    return rc;
}

/* ---- writes ---------------------------------------------------------------- */

/* Set while this thread runs a write function: a nested store_write() would
 * wait on locks its own transaction holds. */
static __thread int in_write;

/* A transaction that lost a race and is worth running again: a
 * serialization failure or a deadlock, up to PG_WRITE_TRIES runs; a unique
 * index another write filled first (the active session of an issue, a
 * stream's path) a few times only, since a write that inserts a duplicate
 * outright would meet it again on every run. */
static int lost_race(const pg_conn *db, int attempt)
{
    if (!strcmp(db->sqlstate, "40001") || !strcmp(db->sqlstate, "40P01"))
        return attempt < PG_WRITE_TRIES;
    return !strcmp(db->sqlstate, "23505") && attempt < 3;
}

static void backoff(int attempt)
{
    struct timespec ts = {0, 0};
    long ms = 1 + (rand() % (2 + attempt * 4));
    ts.tv_nsec = ms * 1000000L;
    nanosleep(&ts, NULL);
}

int pg_write(store *st, store_write_fn fn, void *arg)
{
    pg_store *s = st->impl;
    pg_conn *db;
    int rc = 0, committed = 0, attempt;
    char err[512] = "";

    if (in_write) {
        farm_error_set("store: store_write() called from inside a write function");
        return FARM_EINVALID;
    }
    if (!(db = pg_reader_get(st)))
        return FARM_EIO;
    for (attempt = 1;; attempt++) {
        pg_tx t = {s, db};
        store_tx tx = {&store_backend_pg, &t};

        db->sqlstate[0] = '\0';
        if ((rc = pg_exec(db, "BEGIN"))) {
            snprintf(err, sizeof(err), "%s", farm_error_last());
            break;
        }
        farm_error_clear();
        in_write = 1;
        rc = fn(&tx, arg);
        in_write = 0;
        if (!rc) {
            if (!(rc = pg_exec(db, "COMMIT"))) {
                committed = 1;
                break;
            }
            snprintf(err, sizeof(err), "%s", farm_error_last());
        } else {
            snprintf(err, sizeof(err), "%s", farm_error_last());
            pg_exec(db, "ROLLBACK");
        }
        if (!lost_race(db, attempt) || PQstatus(db->c) != CONNECTION_OK)
            break;
        backoff(attempt);
    }
    pg_reader_put(st, db);

    pthread_mutex_lock(&s->lock);
    if (committed) {
        s->stats.commits++;
        s->stats.writes++;
    } else if (rc) {
        s->stats.failed_writes++;
    }
    if (s->stats.max_batch < 1)
        s->stats.max_batch = 1;
    pthread_mutex_unlock(&s->lock);
    if (rc)
        farm_error_set("%s", err);
    return rc;
}

/* ---- asynchronous writes --------------------------------------------------- */

struct pg_async {
    store_write_fn fn;
    void *arg;
    store_done_fn done;
    pg_async *next;
};

static void *async_main(void *arg)
{
    store *st = arg;
    pg_store *s = st->impl;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->async_wake, &s->lock);
        if (!s->head)
            break;
        pg_async *r = s->head;
        s->head = r->next;
        if (!s->head)
            s->tail = NULL;
        s->stats.queued--;
        pthread_mutex_unlock(&s->lock);
        int rc = pg_write(st, r->fn, r->arg);
        if (!rc)
            farm_error_clear();
        r->done(r->arg, rc);
        free(r);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int write_async(store *st, store_write_fn fn, void *arg, store_done_fn done)
{
    pg_store *s = st->impl;
    pg_async *r;
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
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        free(r);
        farm_error_set("store: closing, no more writes");
        return FARM_ECANCELLED;
    }
    if (!s->async_started) {
        if ((rc = pthread_create(&s->async, NULL, async_main, st))) {
            pthread_mutex_unlock(&s->lock);
            free(r);
            farm_error_set("store: cannot start the write thread: %s", strerror(rc));
            return FARM_ERROR;
        }
        s->async_started = 1;
    }
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    s->stats.queued++;
    pthread_cond_signal(&s->async_wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void stats_get(store_stats *out, store *st)
{
    pg_store *s = st->impl;

    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

/* ---- open and close ---------------------------------------------------------- */

static void release(pg_store *s)
{
    if (!s)
        return;
    pg_notify_stop(s); /* it dispatches to the store's front: stop it first */
    if (s->async_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = 1;
        pthread_cond_signal(&s->async_wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->async, NULL);
    }
    while (s->idle) {
        pg_conn *next = s->idle->next;
        pg_conn_close(s->idle);
        s->idle = next;
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->async_wake);
    free(s->url);
    if (s->password) {
        memset(s->password, 0, strlen(s->password));
        free(s->password);
    }
    free(s);
}

static int open_store(store *st, const char *url, const char *dir, const char *password)
{
    pg_store *s = calloc(1, sizeof(*s));
    pg_conn *db = NULL;
    int rc;

    (void)dir; /* nothing of the store lives in the data directory */
    if (!s) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->async_wake, NULL);
    if (!(s->url = strdup(url)) || (password && !(s->password = strdup(password)))) {
        release(s);
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    st->impl = s;
    if (!(db = pg_reader_get(st))) {
        rc = FARM_EIO;
        goto fail;
    }
    rc = pg_schema_migrate(db);
    if (rc == 0)
        rc = pg_notify_channels(s, db);
    pg_reader_put(st, db);
    if (rc)
        goto fail;
    return 0;
fail:
    st->impl = NULL;
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
    pg_conn *db = pg_reader_get(st);
    int rc;
    if (!db)
        return FARM_EIO;
    rc = pg_schema_version(out, db);
    pg_reader_put(st, db);
    return rc;
}

static int health(store *st)
{
    pg_conn *db = pg_reader_get(st);
    int rc;
    if (!db)
        return FARM_EIO;
    rc = pg_exec(db, "SELECT count(*) FROM session WHERE id = 0");
    if (rc)
        pg_err(db, "health check");
    pg_reader_put(st, db);
    return rc;
}

const store_backend store_backend_pg = {
    .name = "postgres",
    .sql = &pg_sql_driver,
    .open = open_store,
    .close = close_store,
    .schema_latest = pg_schema_latest,
    .schema_version = schema_version,
    .health = health,
    .write = pg_write,
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
    .stream = &pg_stream_ops,
    .inspect = &pg_inspect_ops,
    .local_backend = sql_local_backend,
    .node = &sql_node_ops,
    .notify_listen = pg_notify_listen,
};
