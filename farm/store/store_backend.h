/*
 * store_backend.h - the seam under the store: the table of operations a
 * backend implements, and the front's handles that carry it. It owns
 * store_backend (one entry per operation of store.h, the area headers and
 * store_inspect.h, grouped by area) and the layout of struct store, struct
 * store_tx and struct stream_tx; it calls nothing. The front (store.c,
 * store_areas.c, store_inspect.c) includes it to choose a backend and hand
 * every call over in one indirect call; each backend (today sqlite_*.c,
 * behind sqlite_internal.h, and pg_*.c behind pg_internal.h) includes it
 * to fill one table. Nothing outside
 * farm/store includes it.
 *
 * An entry is named after the public call without its "store_" and area
 * prefixes (store_tx_delivery_insert() is delivery->tx_insert, sdb_data_scan()
 * is stream->data_scan) and takes the same arguments, the front's handles
 * included: a backend finds its own state in s->impl or tx->impl. Argument
 * checks, output zeroing and error messages are the backend's, exactly as
 * the public headers promise them. What is built from other public calls
 * (store_event_append(), store_exec_json()) and record freeing
 * (store_session_free() ...) are the front's alone: records are plain heap
 * structs whatever the backend.
 */
#ifndef FARM_FARM_STORE_STORE_BACKEND_H
#define FARM_FARM_STORE_STORE_BACKEND_H

#include "store.h"
#include "store_digest.h"
#include "store_job.h"
#include "store_node.h"
#include "store_notify.h"
#include "store_outbox.h"
#include "store_run.h"
#include "store_stream.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_backend store_backend;
struct local_backend; /* vcs/tracker/local.h, through store_local.h */
struct json_t;        /* jansson's, through store_inspect.h */
struct sql_driver;    /* store_sql.h: the backend's cursor */

/* An open store: the backend that serves it and that backend's handle. */
struct store {
    const store_backend *be;
    void *impl;                   /* the backend's own state, set by its open() */
    struct store_notify_reg *reg; /* store_notify.h's subscriptions (store_notify.c) */
};

/* A write function's handle: made by the backend for each write it runs. */
struct store_tx {
    const store_backend *be;
    void *impl; /* the backend's transaction */
};

/* A stream storage transaction (sdb_write(), sdb_read()), likewise. */
struct stream_tx {
    const store_backend *be;
    void *impl;
};

/* store.h: deliveries, and their counts. */
typedef struct store_delivery_ops {
    int (*tx_insert)(int64_t *out_id, store_tx *tx, const store_delivery *d);
    int (*tx_outcome_set)(store_tx *tx, int64_t id, const char *outcome, const char *reason,
                          int64_t session_id, int64_t job_id);
    int (*list)(store_delivery **out, size_t *n, store *s, const store_delivery_filter *f);
    int (*count)(store_count **out, size_t *n, store *s);
} store_delivery_ops;

/* store.h: sessions and their event log. */
typedef struct store_session_ops {
    int (*tx_find)(store_session **out, store_tx *tx, const char *tracker, const char *repo,
                   int64_t number, int by_pr, int active_only);
    int (*tx_insert)(int64_t *out_id, store_tx *tx, const store_session *s);
    int (*get)(store_session **out, store *s, int64_t id);
    int (*list)(store_session **out, size_t *n, store *s, const store_session_filter *f);
    int (*count_by_state)(store_count **out, size_t *n, store *s);
    int (*tx_event_append)(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                           const char *actor, const char *body_json);
    int (*tx_event_append_json)(int64_t *out_seq, store_tx *tx, int64_t session_id,
                                const char *kind, const char *actor, const struct json_t *body);
    int (*event_list)(store_event **out, size_t *n, store *s, int64_t session_id, int64_t after_seq,
                      int limit);
} store_session_ops;

/* store.h and store_job.h: the job queue and its leases. */
typedef struct store_job_ops {
    int (*tx_insert)(int64_t *out_id, store_tx *tx, const char *kind, int64_t session_id,
                     int64_t not_before_ms);
    int (*get)(store_job **out, store *s, int64_t id);
    int (*count)(int64_t *queued, int64_t *leased, store *s);
    int (*lease)(store_job **out, store *s, const store_lease_req *req);
    int (*peek)(store_job **out, store *s, const store_lease_req *req);
    int (*lease_extend)(int *lost, store *s, const char *owner, const int64_t *ids, size_t n,
                        int64_t lease_ms);
    int (*finish)(store *s, int64_t id, const char *owner, const char *state, const char *error);
    int (*tx_finish)(store_tx *tx, int64_t id, const char *owner, const char *state,
                     const char *error);
    int (*retry)(store *s, int64_t id, const char *owner, int64_t not_before_ms, const char *error,
                 int release);
    int (*session_stopping)(int *out, store *s, int64_t session_id);
    int (*session_live)(int64_t *live, char **owner, store *s, int64_t session_id);
    int (*count_by_state)(store_count **out, size_t *n, store *s);
} store_job_ops;

/* store_job.h: runtime settings. */
typedef struct store_setting_ops {
    int (*list)(store_setting **out, size_t *n, store *s, const char *prefix);
    int (*tx_set)(store_tx *tx, const char *key, const char *value);
    int (*tx_get)(char **out, store_tx *tx, const char *key);
    int (*tx_delete)(store_tx *tx, const char *key);
} store_setting_ops;

/* store_run.h: a run's session fields and its log read by kind. */
typedef struct store_run_ops {
    int (*tx_session_get)(store_session **out, store_tx *tx, int64_t id);
    int (*tx_session_state_set)(store_tx *tx, int64_t id, const char *state);
    int (*tx_session_branch_set)(store_tx *tx, int64_t id, const char *branch);
    int (*tx_session_run_add)(int64_t *out_runs, store_tx *tx, int64_t id);
    int (*tx_session_usage_add)(store_tx *tx, int64_t id, double agent_seconds, double cost);
    int (*tx_session_pr_draft_set)(store_tx *tx, int64_t id, int draft, const char *reason);
    int (*tx_spend_add)(store_tx *tx, int64_t day, const char *repo, double usd);
    int (*spend_get)(double *repo_usd, double *all_usd, store *s, int64_t day, const char *repo);
    int (*spend_list)(store_amount **out, size_t *n, store *s, int64_t day);
    int (*tx_model_stat_add)(store_tx *tx, const char *name, const char *labels, double delta);
    int (*model_stat_list)(store_amount **out, size_t *n, store *s);
    int (*event_list_kinds)(store_event **out, size_t *n, store *s, int64_t session_id,
                            const char *const *kinds, int64_t after_seq, int limit);
    int (*event_last_kind)(store_event **out, store *s, int64_t session_id,
                           const char *const *kinds, int64_t after_seq);
} store_run_ops;

/* store_outbox.h: the tracker outbox. */
typedef struct store_outbox_ops {
    int (*tx_insert)(int *inserted, store_tx *tx, int64_t session_id, const char *kind,
                     const char *key, const char *payload_json);
    int (*tx_status_key)(char *out, size_t n, store_tx *tx, int64_t session_id);
    int (*lease)(outbox_entry **out, store *s, const char *owner, int64_t now_ms, int64_t lease_ms);
    int (*next_due)(int64_t *out_ms, store *s);
    int (*sent)(store *s, int64_t id, const char *remote_id);
    int (*pr_done)(int64_t *out_seq, store *s, int64_t id, int64_t session_id, int64_t pr_number,
                   const char *pr_url, const char *state_after, const char *then_key,
                   const char *then_payload, const char *status_payload);
    int (*retry)(store *s, int64_t id, const char *owner, int64_t next_try_ms, const char *error);
    int (*skip)(store *s, int64_t id, const char *owner, const char *why);
    int (*fail)(int64_t *out_seq, store *s, int64_t id, const char *owner, const char *error);
    int (*lease_owners)(char ***out, size_t *n, store *s);
    int (*release)(int64_t *count, store *s, const char *owner, int64_t not_before_ms);
    int (*status_remote)(char **out, store *s, int64_t session_id);
    int (*get)(outbox_entry **out, store *s, int64_t id);
    int (*get_by_key)(outbox_entry **out, store *s, const char *key);
    int (*list)(outbox_entry **out, size_t *n, store *s, int64_t session_id);
    int (*stats)(outbox_stats *out, store *s);
} store_outbox_ops;

/* store_review.h: the review loop's job decisions. */
typedef struct store_review_ops {
    int (*tx_jobs)(int64_t *queued_id, int64_t *queued_due_ms, int *running, store_tx *tx,
                   int64_t session_id);
    int (*tx_job_due)(store_tx *tx, int64_t id, int64_t due_ms);
    int (*tx_ci_job_defer)(int64_t *out_id, store_tx *tx, int64_t session_id, int64_t due_ms);
    int (*tx_open_prs)(int64_t **ids, size_t *n, store_tx *tx, const char *tracker_name,
                       const char *repo);
    int (*tx_job_queued)(int64_t *id, store_tx *tx, int64_t session_id, const char *kind);
    int (*tx_last_job_kind)(char *kind, size_t n, store_tx *tx, int64_t session_id);
} store_review_ops;

/* store_digest.h: the digest's reads. */
typedef struct store_digest_ops {
    int (*events)(store_event **out, size_t *n, store *s, const int64_t *ids, size_t nids,
                  int per_session);
    int (*totals_get)(store_digest_totals *out, store *s, int64_t since_ms);
} store_digest_ops;

/* store_stream.h: the stream engine's storage (the sdb_* calls). */
typedef struct store_stream_ops {
    int (*write)(store *s, stream_tx_fn fn, void *arg);
    int (*read)(store *s, stream_tx_fn fn, void *arg);
    int (*stream_get)(stream_row *out, stream_tx *tx, const char *path);
    int (*stream_get_id)(stream_row *out, stream_tx *tx, int64_t id);
    int (*stream_insert)(int64_t *id, stream_tx *tx, const stream_row *r);
    int (*stream_update)(stream_tx *tx, const stream_row *r);
    int (*stream_touch)(stream_tx *tx, int64_t id, int64_t access_ms);
    int (*stream_remove)(stream_tx *tx, int64_t id);
    int (*stream_expired)(int64_t *ids, size_t max, size_t *n, stream_tx *tx, int64_t now_ms);
    int (*data_insert)(stream_tx *tx, int64_t id, int64_t pos, int64_t end, const void *p,
                       size_t n);
    int (*data_trim)(stream_tx *tx, int64_t id, int64_t pos);
    int (*data_scan)(stream_tx *tx, int64_t id, int64_t from, int64_t to, sdb_record_fn fn,
                     void *arg);
    int (*producer_get)(int64_t *epoch, int64_t *seq, stream_tx *tx, int64_t id,
                        const char *producer);
    int (*producer_put)(stream_tx *tx, int64_t id, const char *producer, int64_t epoch,
                        int64_t seq);
    int (*session_tail)(int64_t *last_seq, stream_tx *tx, int64_t session_id);
    int (*session_scan)(stream_tx *tx, int64_t session_id, int64_t from_seq, int64_t to_seq,
                        sdb_record_fn fn, void *arg);
} store_stream_ops;

/* store_node.h: the nodes' heartbeats. */
typedef struct store_node_ops {
    int (*beat)(store *s, const store_node *n);
    int (*remove)(store *s, const char *id);
    int (*list)(store_node **out, size_t *n, store *s);
    int (*pace)(int64_t *wait_ms, store *s, const char *key, int per_minute, int per_hour);
    int (*block_get)(int64_t *until_ms, store *s, const char *key);
    int (*block_set)(store *s, const char *key, int64_t until_ms);
    int (*claim)(int *won, store *s, const char *key, const char *owner, int64_t until_ms);
} store_node_ops;

/* store_inspect.h: any SQL, JSON in and out (tests, diagnostics). */
typedef struct store_inspect_ops {
    int (*query_json)(struct json_t **rows, store *s, const char *sql, const struct json_t *params);
    int (*tx_exec_json)(int64_t *changes, store_tx *tx, const char *sql,
                        const struct json_t *params);
} store_inspect_ops;

struct store_backend {
    const char *name; /* the URL scheme that chooses it: "sqlite" for "sqlite:" */
    /* The cursor the areas written once (sql_<area>.c) run on. */
    const struct sql_driver *sql;

    /* Open the store url names (the whole URL, scheme included) for the data
     * directory dir, with password (NULL: none, or the URL's own), bring its
     * schema up to date and start whatever serves the writes; set s->impl
     * (s->be is set already). On failure s->impl is left NULL, the error is
     * set and the code returned (store_open()'s). */
    int (*open)(store *s, const char *url, const char *dir, const char *password);
    /* Finish queued writes and release s->impl (store_close()). */
    void (*close)(store *s);

    int (*schema_latest)(void);
    int (*schema_version)(int *out, store *s);
    int (*health)(store *s);

    /* The group commit (store.h): write functions get a store_tx of this
     * backend. */
    int (*write)(store *s, store_write_fn fn, void *arg);
    int (*write_async)(store *s, store_write_fn fn, void *arg, store_done_fn done);
    void (*stats_get)(store_stats *out, store *s);

    const store_delivery_ops *delivery;
    const store_session_ops *session;
    const store_job_ops *job;
    const store_setting_ops *setting;
    const store_run_ops *run;
    const store_outbox_ops *outbox;
    const store_review_ops *review;
    const store_digest_ops *digest;
    const store_stream_ops *stream;
    const store_inspect_ops *inspect;
    const store_node_ops *node;
    /* store_local.h: fill a local tracker backend over s. */
    void (*local_backend)(struct local_backend *out, store *s);

    /* store_notify.h: start handing other processes' commits to
     * store_notify__dispatch(), from a thread of the backend's own; called
     * once, at the first subscription. The backend's close() stops it.
     * NULL when every writer is this process (SQLite). */
    int (*notify_listen)(store *s);
};

/* store_notify.c, for the front and the backends: the subscriptions' table
 * (made by store_open_password(), freed by store_close() after the
 * backend's close()), and the one call a listener makes per notification. */
int store_notify__init(store *s);
void store_notify__free(store *s);
void store_notify__dispatch(store *s, store_notify_kind kind, const char *payload);

/* The backends built in (sqlite_store.c, pg_store.c). */
extern const store_backend store_backend_sqlite;
extern const store_backend store_backend_pg;

#endif
