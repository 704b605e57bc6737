/*
 * store.h - the farm's durable state: the one interface with SQL behind it.
 * It owns the tables of DESIGN.md (delivery, session, event, job, outbox,
 * setting, streams) through this header and the area headers beside it
 * (store_job.h, store_run.h, store_outbox.h, store_local.h, store_review.h,
 * store_digest.h, store_stream.h); every farm/ subsystem above it, the
 * webhook front and the CLI call it. It calls the backend chosen when the
 * store is opened (store_open_url(); store_backend.h is the table of
 * operations a backend fills), by default one database file,
 * <data_dir>/farm.db. Nothing here is particular to one backend, so another
 * (PostgreSQL) can be added without touching callers.
 *
 * Writes: one writer owns the write connection. store_write() queues a
 * write function and blocks; the writer takes every queued write, runs them
 * in ONE transaction (each in its own savepoint, so a failing write is rolled
 * back alone), commits once, and then wakes all their callers: concurrent
 * writers share one fsync (group commit), and no caller returns before its
 * write is durable; store_write_async() queues a write with a completion
 * function instead of blocking. Write functions run on the writer thread and touch the
 * database only through the store_tx_*() calls below, which are valid only
 * inside a write function.
 *
 * Reads: a small pool of read connections, running alongside the writer.
 * Every store_*() function is thread-safe.
 *
 * Times are milliseconds since the Unix epoch (int64_t). Lists are newest
 * first and never longer than STORE_LIST_MAX rows.
 */
#ifndef FARM_FARM_STORE_STORE_H
#define FARM_FARM_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;
typedef struct store_tx store_tx;

#define STORE_LIST_DEFAULT 50
#define STORE_LIST_MAX     1000

/* ---- opening -------------------------------------------------------------- */

/* Open (creating it when absent) the database in the directory dir, which
 * must exist, bring its schema up to date in one transaction, and start the
 * writer thread. On success *out is a handle released with store_close().
 * Returns 0, FARM_EIO (cannot open or migrate), FARM_ENEWER ("data directory
 * was written by a newer farm (schema N > M); upgrade farm") or FARM_ENOMEM. */
int store_open(store **out, const char *dir);

/* store_open() with the backend named by url's scheme: "sqlite:" (nothing
 * after the colon) is store_open(out, dir). dir is the data directory; a
 * backend may keep nothing in it. An unknown scheme is refused with
 * FARM_EINVALID ("store: no backend \"x\" (known: sqlite, postgres)"); otherwise
 * returns what store_open() does. */
int store_open_url(store **out, const char *url, const char *dir);

/* store_open_url() with a password for the backend (store.password: a
 * PostgreSQL server's), kept out of the URL so that no log or error
 * repeats it; NULL for none. "postgres://..." and "postgresql://..." URLs
 * and libpq connection strings ("host=... dbname=...") open PostgreSQL;
 * dir is then unused. */
int store_open_password(store **out, const char *url, const char *password, const char *dir);

/* Let queued writes finish, stop the writer thread and close every
 * connection. NULL is accepted. */
void store_close(store *s);

/* The schema version this binary writes (the default backend's last
 * migration). */
int store_schema_latest(void);

/* The schema version of the open database. Returns 0 or FARM_EIO. */
int store_schema_version(int *out, store *s);

/* A trivial query on a read connection: 0 when the store answers, FARM_EIO
 * otherwise (for /healthz). */
int store_health(store *s);

/* ---- the session log's states ------------------------------------------- */

/* The session states of DESIGN.md, in life order, NULL-terminated: queued,
 * preparing, running, testing, pushing, review, revising, waiting, done,
 * failed, cancelled. Static storage. */
const char *const *store_session_states(void);

/* 1 when state is one of done, failed, cancelled (a session that ended). */
int store_session_state_is_final(const char *state);

/* ---- group-committed writes --------------------------------------------- */

/* A write: runs on the writer thread inside a savepoint of the batch's
 * transaction. Returning 0 keeps its changes; returning a negative code rolls
 * back its savepoint (and only it) and store_write() returns that code. A
 * write function must not call store_write() (it would wait on itself) and
 * must not block on anything slow: every caller in the batch waits for it. */
typedef int (*store_write_fn)(store_tx *tx, void *arg);

/* Run fn(tx, arg) in the next group commit and return once the transaction
 * holding it is durable. Returns fn's code when fn failed, FARM_EIO when the
 * commit itself failed (then nothing of the batch was written), or 0. */
int store_write(store *s, store_write_fn fn, void *arg);

/* The completion of an asynchronous write: rc is what store_write() would
 * have returned (with farm_error_last() saying why when it is not 0). It runs
 * on the writer thread after the transaction holding the write is durable
 * (or has failed), before the next batch begins, so it must be quick: wake
 * someone, never wait. It must not call store_write(); it may queue another
 * store_write_async(). */
typedef void (*store_done_fn)(void *arg, int rc);

/* store_write() without waiting: queue fn(tx, arg) for the next group commit
 * and return at once; done(arg, rc) is called exactly once, after the
 * commit, on the writer thread. arg must stay valid until then. Returns 0
 * when queued, or FARM_EINVALID / FARM_ENOMEM / FARM_ECANCELLED (the store is
 * closing), and then done is never called. Writes queued before
 * store_close() are committed and completed before it returns. */
int store_write_async(store *s, store_write_fn fn, void *arg, store_done_fn done);

/* Counters of the group commit since store_open(), for /metrics. */
typedef struct store_stats {
    uint64_t commits;        /* transactions committed (one fsync each) */
    uint64_t writes;         /* write functions that kept their changes */
    uint64_t failed_writes;  /* write functions that returned an error (savepoint rolled back) */
    uint64_t failed_commits; /* transactions whose COMMIT failed */
    uint64_t max_batch;      /* most writes in one transaction */
    uint64_t queued;         /* writes waiting right now */
} store_stats;

void store_stats_get(store_stats *out, store *s);

/* ---- records ------------------------------------------------------------- */

/* A webhook delivery as recorded. */
typedef struct store_delivery {
    int64_t id;
    char *tracker;     /* "github", "azure", "local" */
    char *delivery_id; /* the tracker's id; unique per tracker */
    char *event;       /* the tracker's event name, or NULL */
    char *action;      /* or NULL */
    char *repo;        /* or NULL */
    int64_t number;    /* issue / PR number, 0 when none */
    int64_t received_ms;
    char *outcome;      /* "accepted", "ignored", or NULL while being decided */
    char *reason;       /* why, or NULL */
    int64_t session_id; /* 0 when none */
    int64_t job_id;     /* 0 when none */
} store_delivery;

/* One issue worked on. */
typedef struct store_session {
    int64_t id;
    char *tracker;
    char *repo;
    int64_t number;        /* the issue / work item number */
    char *title;           /* or NULL */
    char *url;             /* the human URL, or NULL */
    char *state;           /* one of store_session_states() */
    char *branch;          /* "farm/12-fix-typo", NULL until chosen */
    int64_t pr_number;     /* 0 until a PR is open */
    char *pr_url;          /* or NULL */
    int pr_draft;          /* the farm opened its pull request as a draft (it stays one until a
                              person marks it ready) */
    char *pr_draft_reason; /* why, in a few words ("the tests still fail"), or NULL */
    char *agent;           /* the agent preset it runs ("claude", "codex", "command", ...);
                              NULL: the configured default (sessions from before it was kept) */
    int64_t runs;
    double agent_seconds;
    double cost;      /* USD */
    int64_t last_seq; /* seq of the newest event (0: none yet) */
    int64_t created_ms;
    int64_t updated_ms;
} store_session;

/* One entry of a session's log; seq is dense from 1 per session. */
typedef struct store_event {
    int64_t session_id;
    int64_t seq;
    int64_t ts_ms;
    char *kind;  /* "triggered", "comment", "issue_closed", ... */
    char *actor; /* or NULL */
    char *body;  /* JSON text ("{}" when empty) */
} store_event;

/* A job of the durable queue. */
typedef struct store_job {
    int64_t id;
    char *kind;         /* "run", "revise", "cancel", ... */
    int64_t session_id; /* 0 when none */
    char *state;        /* "queued", "leased", "done", "failed" */
    int64_t not_before_ms;
    int64_t attempts;
    char *lease_owner; /* or NULL */
    int64_t lease_expires_ms;
    int64_t created_ms;
} store_job;

/* Free one record's strings and the record itself (from a *_get call), or
 * an array of n records (from a *_list call). NULL is accepted. */
void store_session_free(store_session *s);
void store_session_list_free(store_session *v, size_t n);
void store_delivery_list_free(store_delivery *v, size_t n);
void store_event_list_free(store_event *v, size_t n);
void store_job_free(store_job *j);

/* ---- operations inside a write function -------------------------------- */

/* Record a delivery (d->id, d->outcome etc. are ignored: it starts without an
 * outcome). *out_id is its row id. Returns FARM_EEXISTS when (tracker,
 * delivery_id) was recorded before: the UNIQUE constraint decides, so two
 * racing deliveries of one id cannot both pass. */
int store_tx_delivery_insert(int64_t *out_id, store_tx *tx, const store_delivery *d);

/* Set a recorded delivery's outcome, reason and the session / job it
 * touched (0 for none). */
int store_tx_delivery_outcome_set(store_tx *tx, int64_t id, const char *outcome, const char *reason,
                                  int64_t session_id, int64_t job_id);

/* Find the session of an issue (by_pr = 0: number is the issue number) or of
 * a pull request (by_pr = 1: number is its PR number), by the repository's
 * name as configured (matched exactly: sessions keep the configured
 * spelling). The active session (state not final) when there is one, else
 * the newest ended one unless active_only is set. *out is freed with store_session_free(). Returns
 * 0, FARM_ENOTFOUND or FARM_EIO. */
int store_tx_session_find(store_session **out, store_tx *tx, const char *tracker, const char *repo,
                          int64_t number, int by_pr, int active_only);

/* Create a session in state "queued" from s's tracker, repo, number, title
 * and url (other fields are ignored). Returns 0, FARM_EEXISTS when the issue
 * already has an active session, or FARM_EIO. */
int store_tx_session_insert(int64_t *out_id, store_tx *tx, const store_session *s);

/* Enqueue a job in state "queued", due at not_before_ms (0: now). */
int store_tx_job_insert(int64_t *out_id, store_tx *tx, const char *kind, int64_t session_id,
                        int64_t not_before_ms);

/* Append to a session's log with the next seq (dense from 1); body is JSON
 * text (at most 4 MiB) or NULL for "{}". *out_seq (may be NULL) is the seq
 * given. Returns 0, FARM_ENOTFOUND (no such session), FARM_EINVALID (body is
 * not JSON), FARM_ETOOBIG or FARM_EIO. */
int store_tx_event_append(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                          const char *actor, const char *body_json);

/* store_tx_event_append() with the body as a jansson object built by the
 * caller (NULL for "{}"): serialised here, so it needs no parsing back to be
 * known as JSON. The body stays the caller's. Returns 0, FARM_ENOTFOUND,
 * FARM_ETOOBIG, FARM_ENOMEM or FARM_EIO. */
struct json_t;
int store_tx_event_append_json(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                               const char *actor, const struct json_t *body);

/* store_tx_event_append() as a write of its own, group-committed. */
int store_event_append(int64_t *out_seq, store *s, int64_t session_id, const char *kind,
                       const char *actor, const char *body_json);

/* ---- reads ---------------------------------------------------------------- */

typedef struct store_delivery_filter {
    const char *tracker; /* NULL: any */
    const char *repo;    /* NULL: any (case-insensitive match) */
    const char *event;   /* NULL: any */
    const char *outcome; /* NULL: any */
    int64_t since_ms;    /* 0: any; else received at or after */
    int64_t before_id;   /* 0: from the newest; else only ids below (paging) */
    int limit;           /* <= 0: STORE_LIST_DEFAULT; capped at STORE_LIST_MAX */
} store_delivery_filter;

#define STORE_DELIVERY_FILTER_INIT                                                                 \
    {                                                                                              \
        NULL, NULL, NULL, NULL, 0, 0, 0                                                            \
    }

/* Deliveries, newest first. *out is an array of *n records (NULL when
 * none) freed with store_delivery_list_free(). Returns 0 or FARM_EIO. */
int store_delivery_list(store_delivery **out, size_t *n, store *s, const store_delivery_filter *f);

typedef struct store_session_filter {
    const char *state;   /* NULL: any */
    const char *repo;    /* NULL: any (case-insensitive match) */
    const char *tracker; /* NULL: any */
    int64_t since_ms;    /* 0: any; else updated at or after */
    int64_t before_id;   /* 0: from the newest; else only ids below (paging) */
    int limit;           /* <= 0: STORE_LIST_DEFAULT; capped at STORE_LIST_MAX */
} store_session_filter;

#define STORE_SESSION_FILTER_INIT                                                                  \
    {                                                                                              \
        NULL, NULL, NULL, 0, 0, 0                                                                  \
    }

/* Sessions, newest (highest id) first. *out is an array of *n records (NULL
 * when none) freed with store_session_list_free(). Returns 0 or FARM_EIO. */
int store_session_list(store_session **out, size_t *n, store *s, const store_session_filter *f);

/* One session. *out is freed with store_session_free(). Returns 0,
 * FARM_ENOTFOUND or FARM_EIO. */
int store_session_get(store_session **out, store *s, int64_t id);

/* A session's events with seq > after_seq, oldest first, at most limit
 * (<= 0: STORE_LIST_DEFAULT; capped at STORE_LIST_MAX). *out is freed with
 * store_event_list_free(). Returns 0 or FARM_EIO (an unknown session simply
 * has no events). */
int store_event_list(store_event **out, size_t *n, store *s, int64_t session_id, int64_t after_seq,
                     int limit);

/* One job. *out is freed with store_job_free(). Returns 0, FARM_ENOTFOUND or
 * FARM_EIO. */
int store_job_get(store_job **out, store *s, int64_t id);

/* ---- counts, for /metrics ------------------------------------------------ */

/* A count with up to three labels (unused labels are NULL). */
typedef struct store_count {
    char *labels[3];
    int64_t n;
} store_count;

void store_count_list_free(store_count *v, size_t n);

/* Sessions per state: labels[0] = state; only states with sessions appear.
 * *out is freed with store_count_list_free(). Returns 0 or FARM_EIO. */
int store_session_count_by_state(store_count **out, size_t *n, store *s);

/* Deliveries per (tracker, event, outcome): labels[0..2]; a NULL event or
 * outcome is reported as "". Returns 0 or FARM_EIO. */
int store_delivery_count(store_count **out, size_t *n, store *s);

/* Jobs waiting (state queued) and leased (being worked on): the queue depth.
 * Returns 0 or FARM_EIO. */
int store_job_count(int64_t *queued, int64_t *leased, store *s);

#endif
