/*
 * store.c - the front of the store (store.h): choosing a backend when the
 * store is opened, and handing every call of store.h to it.
 *
 * A store is a backend table and the backend's own state (store_backend.h);
 * each function here is one indirect call into that table, so callers pay
 * nothing for the seam beyond it. What needs no backend stays here: the
 * session states' names and freeing the records the backend hands out.
 * store_areas.c does the same for the area headers.
 */
#include "store.h"
#include "store_backend.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

/* The backends built in; the first is store_open()'s. */
static const store_backend *const backends[] = {&store_backend_sqlite, &store_backend_pg, NULL};

/* Whether url is a libpq connection string ("host=/run/postgresql
 * dbname=farm"): keyword=value pairs, no scheme. */
static int is_conninfo(const char *url)
{
    const char *eq = strchr(url, '=');
    const char *colon = strchr(url, ':');
    return eq && (!colon || colon > eq);
}

/* ---- opening ------------------------------------------------------------- */

/* The backend whose name is url's scheme (the text before the first ':'). */
static int backend_find(const store_backend **out, const char *url)
{
    const char *colon = url ? strchr(url, ':') : NULL;
    size_t len;

    *out = NULL;
    if (url && is_conninfo(url)) {
        *out = &store_backend_pg;
        return 0;
    }
    if (!colon || colon == url) {
        farm_error_set("store: a store URL starts with its backend's name and a colon"
                       " (known: sqlite:, postgres://)");
        return FARM_EINVALID;
    }
    len = (size_t)(colon - url);
    if (len == strlen("postgresql") && !strncmp(url, "postgresql", len)) {
        *out = &store_backend_pg; /* libpq's other spelling */
        return 0;
    }
    for (size_t i = 0; backends[i]; i++) {
        if (strlen(backends[i]->name) == len && !strncmp(backends[i]->name, url, len)) {
            *out = backends[i];
            return 0;
        }
    }
    /* only the scheme is repeated: the rest of a URL may hold a password */
    farm_error_set("store: no backend \"%.*s\" (known: sqlite, postgres)",
                   (int)(len > 32 ? 32 : len), url);
    return FARM_EINVALID;
}

int store_open_url(store **out, const char *url, const char *dir)
{
    return store_open_password(out, url, NULL, dir);
}

int store_open_password(store **out, const char *url, const char *password, const char *dir)
{
    const store_backend *be = NULL;
    store *s;
    int rc;

    *out = NULL;
    if ((rc = backend_find(&be, url)))
        return rc;
    if (!(s = calloc(1, sizeof(*s)))) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    s->be = be;
    if ((rc = store_notify__init(s))) {
        free(s);
        return rc;
    }
    if ((rc = be->open(s, url, dir, password))) {
        store_notify__free(s);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int store_open(store **out, const char *dir)
{
    return store_open_url(out, "sqlite:", dir);
}

void store_close(store *s)
{
    if (!s)
        return;
    s->be->close(s);
    store_notify__free(s);
    free(s);
}

int store_schema_latest(void)
{
    return backends[0]->schema_latest();
}

int store_schema_version(int *out, store *s)
{
    return s->be->schema_version(out, s);
}

int store_health(store *s)
{
    return s->be->health(s);
}

/* ---- the session log's states ------------------------------------------- */

static const char *const session_states[] = {
    "queued",  "preparing",         "running", "testing", "pushing",   "review", "revising",
    "waiting", "awaiting_approval", "done",    "failed",  "cancelled", NULL,
};

const char *const *store_session_states(void)
{
    return session_states;
}

int store_session_state_is_final(const char *state)
{
    return state &&
           (!strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

/* ---- group-committed writes --------------------------------------------- */

int store_write(store *s, store_write_fn fn, void *arg)
{
    return s->be->write(s, fn, arg);
}

int store_write_async(store *s, store_write_fn fn, void *arg, store_done_fn done)
{
    return s->be->write_async(s, fn, arg, done);
}

void store_stats_get(store_stats *out, store *s)
{
    s->be->stats_get(out, s);
}

/* ---- records ------------------------------------------------------------- */

static void session_clear(store_session *s)
{
    free(s->tracker);
    free(s->repo);
    free(s->title);
    free(s->url);
    free(s->state);
    free(s->branch);
    free(s->pr_url);
    free(s->pr_draft_reason);
    free(s->agent);
}

void store_session_free(store_session *s)
{
    if (!s)
        return;
    session_clear(s);
    free(s);
}

void store_session_list_free(store_session *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        session_clear(&v[i]);
    free(v);
}

void store_delivery_list_free(store_delivery *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].tracker);
        free(v[i].delivery_id);
        free(v[i].event);
        free(v[i].action);
        free(v[i].repo);
        free(v[i].outcome);
        free(v[i].reason);
    }
    free(v);
}

void store_event_list_free(store_event *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].kind);
        free(v[i].actor);
        free(v[i].body);
    }
    free(v);
}

void store_job_free(store_job *j)
{
    if (!j)
        return;
    free(j->kind);
    free(j->state);
    free(j->lease_owner);
    free(j);
}

void store_count_list_free(store_count *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < 3; j++)
            free(v[i].labels[j]);
    free(v);
}

/* ---- operations inside a write function -------------------------------- */

int store_tx_delivery_insert(int64_t *out_id, store_tx *tx, const store_delivery *d)
{
    return tx->be->delivery->tx_insert(out_id, tx, d);
}

int store_tx_delivery_outcome_set(store_tx *tx, int64_t id, const char *outcome, const char *reason,
                                  int64_t session_id, int64_t job_id)
{
    return tx->be->delivery->tx_outcome_set(tx, id, outcome, reason, session_id, job_id);
}

int store_tx_session_find(store_session **out, store_tx *tx, const char *tracker, const char *repo,
                          int64_t number, int by_pr, int active_only)
{
    return tx->be->session->tx_find(out, tx, tracker, repo, number, by_pr, active_only);
}

int store_tx_session_insert(int64_t *out_id, store_tx *tx, const store_session *s)
{
    return tx->be->session->tx_insert(out_id, tx, s);
}

int store_tx_job_insert(int64_t *out_id, store_tx *tx, const char *kind, int64_t session_id,
                        int64_t not_before_ms)
{
    return tx->be->job->tx_insert(out_id, tx, kind, session_id, not_before_ms);
}

int store_tx_event_append(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                          const char *actor, const char *body_json)
{
    return tx->be->session->tx_event_append(out_seq, tx, session_id, kind, actor, body_json);
}

int store_tx_event_append_json(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind,
                               const char *actor, const struct json_t *body)
{
    return tx->be->session->tx_event_append_json(out_seq, tx, session_id, kind, actor, body);
}

struct append_args {
    int64_t seq;
    int64_t session_id;
    const char *kind, *actor, *body;
};

static int append_write(store_tx *tx, void *arg)
{
    struct append_args *a = arg;
    return store_tx_event_append(&a->seq, tx, a->session_id, a->kind, a->actor, a->body);
}

int store_event_append(int64_t *out_seq, store *s, int64_t session_id, const char *kind,
                       const char *actor, const char *body_json)
{
    struct append_args a = {0, session_id, kind, actor, body_json};
    int rc = store_write(s, append_write, &a);
    if (out_seq)
        *out_seq = rc ? 0 : a.seq;
    return rc;
}

/* ---- reads ---------------------------------------------------------------- */

int store_delivery_list(store_delivery **out, size_t *n, store *s, const store_delivery_filter *f)
{
    return s->be->delivery->list(out, n, s, f);
}

int store_session_list(store_session **out, size_t *n, store *s, const store_session_filter *f)
{
    return s->be->session->list(out, n, s, f);
}

int store_session_get(store_session **out, store *s, int64_t id)
{
    return s->be->session->get(out, s, id);
}

int store_event_list(store_event **out, size_t *n, store *s, int64_t session_id, int64_t after_seq,
                     int limit)
{
    return s->be->session->event_list(out, n, s, session_id, after_seq, limit);
}

int store_job_get(store_job **out, store *s, int64_t id)
{
    return s->be->job->get(out, s, id);
}

/* ---- counts, for /metrics ------------------------------------------------ */

int store_session_count_by_state(store_count **out, size_t *n, store *s)
{
    return s->be->session->count_by_state(out, n, s);
}

int store_delivery_count(store_count **out, size_t *n, store *s)
{
    return s->be->delivery->count(out, n, s);
}

int store_job_count(int64_t *queued, int64_t *leased, store *s)
{
    return s->be->job->count(queued, leased, s);
}
