/*
 * store_areas.c - the front of the area headers (store_job.h, store_run.h,
 * store_outbox.h, store_local.h, store_review.h, store_digest.h,
 * store_stream.h): each call is handed to the store's backend through its
 * area's table (store_backend.h), in one indirect call.
 *
 * Besides the dispatch, only what needs no backend lives here: freeing the
 * areas' records, and building a local tracker from the config over
 * whatever backend keeps its records.
 */
#include "store_backend.h"
#include "store_digest.h"
#include "store_job.h"
#include "store_local.h"
#include "store_node.h"
#include "store_outbox.h"
#include "store_review.h"
#include "store_run.h"
#include "store_stream.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

/* ---- the job queue (store_job.h) ----------------------------------------- */

int store_job_lease(store_job **out, store *s, const store_lease_req *req)
{
    return s->be->job->lease(out, s, req);
}

int store_job_peek(store_job **out, store *s, const store_lease_req *req)
{
    return s->be->job->peek(out, s, req);
}

int store_job_lease_extend(int *lost, store *s, const char *owner, const int64_t *ids, size_t n,
                           int64_t lease_ms)
{
    return s->be->job->lease_extend(lost, s, owner, ids, n, lease_ms);
}

int store_job_finish(store *s, int64_t id, const char *owner, const char *state, const char *error)
{
    return s->be->job->finish(s, id, owner, state, error);
}

int store_tx_job_finish(store_tx *tx, int64_t id, const char *owner, const char *state,
                        const char *error)
{
    return tx->be->job->tx_finish(tx, id, owner, state, error);
}

int store_job_retry(store *s, int64_t id, const char *owner, int64_t not_before_ms,
                    const char *error, int release)
{
    return s->be->job->retry(s, id, owner, not_before_ms, error, release);
}

int store_job_session_live(int64_t *live, char **owner, store *s, int64_t session_id)
{
    *live = 0;
    *owner = NULL;
    return s->be->job->session_live(live, owner, s, session_id);
}

int store_job_session_stopping(int *out, store *s, int64_t session_id)
{
    return s->be->job->session_stopping(out, s, session_id);
}

int store_job_count_by_state(store_count **out, size_t *n, store *s)
{
    return s->be->job->count_by_state(out, n, s);
}

/* ---- nodes (store_node.h) ------------------------------------------------- */

int store_node_beat(store *s, const store_node *n)
{
    return s->be->node->beat(s, n);
}

int store_node_remove(store *s, const char *id)
{
    return s->be->node->remove(s, id);
}

int store_node_list(store_node **out, size_t *n, store *s)
{
    return s->be->node->list(out, n, s);
}

#define SHARED_KEY_MAX 1100

static int shared_key_check(const char *key)
{
    if (!key || !*key || strlen(key) > SHARED_KEY_MAX) {
        farm_error_set("store: a shared key must be 1..%d bytes", SHARED_KEY_MAX);
        return FARM_EINVALID;
    }
    return 0;
}

int store_node_pace(int64_t *wait_ms, store *s, const char *key, int per_minute, int per_hour)
{
    int rc = shared_key_check(key);
    *wait_ms = 0;
    if (rc)
        return rc;
    if (per_minute < 1 || per_minute > 100000 || per_hour < 1 || per_hour > 100000) {
        farm_error_set("store: a pace needs 1..100000 a minute and an hour");
        return FARM_EINVALID;
    }
    return s->be->node->pace(wait_ms, s, key, per_minute, per_hour);
}

int store_node_block_get(int64_t *until_ms, store *s, const char *key)
{
    int rc = shared_key_check(key);
    *until_ms = 0;
    return rc ? rc : s->be->node->block_get(until_ms, s, key);
}

int store_node_block_set(store *s, const char *key, int64_t until_ms)
{
    int rc = shared_key_check(key);
    return rc ? rc : s->be->node->block_set(s, key, until_ms);
}

int store_node_claim(int *won, store *s, const char *key, const char *owner, int64_t until_ms)
{
    int rc = shared_key_check(key);
    *won = 0;
    if (!rc && (!owner || !*owner || strlen(owner) > 255)) {
        farm_error_set("store: a claim needs an owner of 1..255 bytes");
        rc = FARM_EINVALID;
    }
    return rc ? rc : s->be->node->claim(won, s, key, owner, until_ms);
}

void store_node_list_free(store_node *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].id);
        free(v[i].host);
        free(v[i].role);
    }
    free(v);
}

/* ---- settings (store_job.h) ---------------------------------------------- */

void store_setting_list_free(store_setting *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
}

int store_setting_list(store_setting **out, size_t *n, store *s, const char *prefix)
{
    return s->be->setting->list(out, n, s, prefix);
}

int store_tx_setting_set(store_tx *tx, const char *key, const char *value)
{
    return tx->be->setting->tx_set(tx, key, value);
}

int store_tx_setting_get(char **out, store_tx *tx, const char *key)
{
    return tx->be->setting->tx_get(out, tx, key);
}

int store_tx_setting_delete(store_tx *tx, const char *key)
{
    return tx->be->setting->tx_delete(tx, key);
}

/* ---- a run's session and log (store_run.h) ------------------------------- */

int store_tx_session_get(store_session **out, store_tx *tx, int64_t id)
{
    return tx->be->run->tx_session_get(out, tx, id);
}

int store_tx_session_state_set(store_tx *tx, int64_t id, const char *state)
{
    return tx->be->run->tx_session_state_set(tx, id, state);
}

int store_tx_session_branch_set(store_tx *tx, int64_t id, const char *branch)
{
    return tx->be->run->tx_session_branch_set(tx, id, branch);
}

int store_tx_session_run_add(int64_t *out_runs, store_tx *tx, int64_t id)
{
    return tx->be->run->tx_session_run_add(out_runs, tx, id);
}

int store_tx_session_usage_add(store_tx *tx, int64_t id, double agent_seconds, double cost)
{
    return tx->be->run->tx_session_usage_add(tx, id, agent_seconds, cost);
}

int store_tx_spend_add(store_tx *tx, int64_t day, const char *repo, double usd)
{
    return tx->be->run->tx_spend_add(tx, day, repo, usd);
}

int store_spend_get(double *repo_usd, double *all_usd, store *s, int64_t day, const char *repo)
{
    return s->be->run->spend_get(repo_usd, all_usd, s, day, repo);
}

void store_amount_list_free(store_amount *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].labels[0]);
        free(v[i].labels[1]);
    }
    free(v);
}

int store_spend_list(store_amount **out, size_t *n, store *s, int64_t day)
{
    return s->be->run->spend_list(out, n, s, day);
}

int store_tx_model_stat_add(store_tx *tx, const char *name, const char *labels, double delta)
{
    return tx->be->run->tx_model_stat_add(tx, name, labels, delta);
}

int store_model_stat_list(store_amount **out, size_t *n, store *s)
{
    return s->be->run->model_stat_list(out, n, s);
}

int store_tx_session_pr_draft_set(store_tx *tx, int64_t id, int draft, const char *reason)
{
    return tx->be->run->tx_session_pr_draft_set(tx, id, draft, reason);
}

int store_event_list_kinds(store_event **out, size_t *n, store *s, int64_t session_id,
                           const char *const *kinds, int64_t after_seq, int limit)
{
    return s->be->run->event_list_kinds(out, n, s, session_id, kinds, after_seq, limit);
}

int store_event_last_kind(store_event **out, store *s, int64_t session_id, const char *const *kinds,
                          int64_t after_seq)
{
    return s->be->run->event_last_kind(out, s, session_id, kinds, after_seq);
}

/* ---- the outbox (store_outbox.h) ----------------------------------------- */

static void entry_clear(outbox_entry *e)
{
    free(e->kind);
    free(e->key);
    free(e->payload);
    free(e->state);
    free(e->remote_id);
    free(e->last_error);
    free(e->lease_owner);
}

void outbox_entry_free(outbox_entry *e)
{
    if (!e)
        return;
    entry_clear(e);
    free(e);
}

void outbox_entry_list_free(outbox_entry *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        entry_clear(&v[i]);
    free(v);
}

void store_outbox_lease_owners_free(char **owners, size_t n)
{
    if (!owners)
        return;
    for (size_t i = 0; i < n; i++)
        free(owners[i]);
    free(owners);
}

int store_tx_outbox_insert(int *inserted, store_tx *tx, int64_t session_id, const char *kind,
                           const char *key, const char *payload_json)
{
    return tx->be->outbox->tx_insert(inserted, tx, session_id, kind, key, payload_json);
}

int store_tx_outbox_status_key(char *out, size_t n, store_tx *tx, int64_t session_id)
{
    return tx->be->outbox->tx_status_key(out, n, tx, session_id);
}

int store_outbox_lease(outbox_entry **out, store *s, const char *owner, int64_t now_ms,
                       int64_t lease_ms)
{
    return s->be->outbox->lease(out, s, owner, now_ms, lease_ms);
}

int store_outbox_next_due(int64_t *out_ms, store *s)
{
    return s->be->outbox->next_due(out_ms, s);
}

int store_outbox_sent(store *s, int64_t id, const char *remote_id)
{
    return s->be->outbox->sent(s, id, remote_id);
}

int store_outbox_pr_done(int64_t *out_seq, store *s, int64_t id, int64_t session_id,
                         int64_t pr_number, const char *pr_url, const char *state_after,
                         const char *then_key, const char *then_payload, const char *status_payload)
{
    return s->be->outbox->pr_done(out_seq, s, id, session_id, pr_number, pr_url, state_after,
                                  then_key, then_payload, status_payload);
}

int store_outbox_retry(store *s, int64_t id, const char *owner, int64_t next_try_ms,
                       const char *error)
{
    return s->be->outbox->retry(s, id, owner, next_try_ms, error);
}

int store_outbox_skip(store *s, int64_t id, const char *owner, const char *why)
{
    return s->be->outbox->skip(s, id, owner, why);
}

int store_outbox_fail(int64_t *out_seq, store *s, int64_t id, const char *owner, const char *error)
{
    return s->be->outbox->fail(out_seq, s, id, owner, error);
}

int store_outbox_lease_owners(char ***out, size_t *n, store *s)
{
    return s->be->outbox->lease_owners(out, n, s);
}

int store_outbox_release(int64_t *count, store *s, const char *owner, int64_t not_before_ms)
{
    return s->be->outbox->release(count, s, owner, not_before_ms);
}

int store_outbox_status_remote(char **out, store *s, int64_t session_id)
{
    return s->be->outbox->status_remote(out, s, session_id);
}

int store_outbox_get(outbox_entry **out, store *s, int64_t id)
{
    return s->be->outbox->get(out, s, id);
}

int store_outbox_get_by_key(outbox_entry **out, store *s, const char *key)
{
    return s->be->outbox->get_by_key(out, s, key);
}

int store_outbox_list(outbox_entry **out, size_t *n, store *s, int64_t session_id)
{
    return s->be->outbox->list(out, n, s, session_id);
}

int store_outbox_stats(outbox_stats *out, store *s)
{
    return s->be->outbox->stats(out, s);
}

/* ---- the review loop (store_review.h) ------------------------------------ */

int store_tx_review_jobs(int64_t *queued_id, int64_t *queued_due_ms, int *running, store_tx *tx,
                         int64_t session_id)
{
    return tx->be->review->tx_jobs(queued_id, queued_due_ms, running, tx, session_id);
}

int store_tx_review_job_due(store_tx *tx, int64_t id, int64_t due_ms)
{
    return tx->be->review->tx_job_due(tx, id, due_ms);
}

int store_tx_review_ci_job_defer(int64_t *out_id, store_tx *tx, int64_t session_id, int64_t due_ms)
{
    *out_id = 0;
    if (!tx->be->review->tx_ci_job_defer) {
        farm_error_set("this store backend cannot defer CI jobs");
        return FARM_EUNSUPPORTED;
    }
    return tx->be->review->tx_ci_job_defer(out_id, tx, session_id, due_ms);
}

int store_tx_review_open_prs(int64_t **ids, size_t *n, store_tx *tx, const char *tracker_name,
                             const char *repo)
{
    return tx->be->review->tx_open_prs(ids, n, tx, tracker_name, repo);
}

int store_tx_review_job_queued(int64_t *id, store_tx *tx, int64_t session_id, const char *kind)
{
    return tx->be->review->tx_job_queued(id, tx, session_id, kind);
}

int store_tx_review_last_job_kind(char *kind, size_t n, store_tx *tx, int64_t session_id)
{
    if (n)
        kind[0] = '\0';
    return tx->be->review->tx_last_job_kind(kind, n, tx, session_id);
}

/* ---- the digest (store_digest.h) ----------------------------------------- */

int store_digest_events(store_event **out, size_t *n, store *s, const int64_t *ids, size_t nids,
                        int per_session)
{
    return s->be->digest->events(out, n, s, ids, nids, per_session);
}

int store_digest_totals_get(store_digest_totals *out, store *s, int64_t since_ms)
{
    return s->be->digest->totals_get(out, s, since_ms);
}

/* ---- the local tracker (store_local.h) ----------------------------------- */

void store_local_backend(local_backend *out, store *s)
{
    s->be->local_backend(out, s);
}

int store_local_tracker_new(tracker **out, local_backend *backend, store *s, const config *cfg)
{
    tracker_local_opts o = TRACKER_LOCAL_OPTS_INIT;
    tracker_local_repo *repos = NULL;
    size_t n = 0;
    int rc;
    *out = NULL;
    store_local_backend(backend, s);
    if (cfg->nrepos && !(repos = calloc(cfg->nrepos, sizeof *repos)))
        return FARM_ENOMEM;
    for (size_t i = 0; i < cfg->nrepos; i++) {
        if (cfg->repos[i].tracker && strcmp(cfg->repos[i].tracker, "local") == 0) {
            repos[n].name = cfg->repos[i].name;
            repos[n].clone_url = cfg->repos[i].clone_url;
            n++;
        }
    }
    o.backend = backend;
    o.bot_name = cfg->github.bot_login;
    o.repos = repos;
    o.nrepos = n;
    rc = tracker_local_new(out, &o);
    free(repos);
    return rc;
}

/* ---- stream storage (store_stream.h) ------------------------------------- */

void stream_row_free(stream_row *r)
{
    if (!r)
        return;
    free(r->path);
    free(r->content_type);
    free(r->closed_by_producer);
    free(r->last_seq);
    memset(r, 0, sizeof(*r));
}

int sdb_write(store *st, stream_tx_fn fn, void *arg)
{
    return st->be->stream->write(st, fn, arg);
}

int sdb_read(store *st, stream_tx_fn fn, void *arg)
{
    return st->be->stream->read(st, fn, arg);
}

int sdb_stream_get(stream_row *out, stream_tx *tx, const char *path)
{
    return tx->be->stream->stream_get(out, tx, path);
}

int sdb_stream_get_id(stream_row *out, stream_tx *tx, int64_t id)
{
    return tx->be->stream->stream_get_id(out, tx, id);
}

int sdb_stream_insert(int64_t *id, stream_tx *tx, const stream_row *r)
{
    return tx->be->stream->stream_insert(id, tx, r);
}

int sdb_stream_update(stream_tx *tx, const stream_row *r)
{
    return tx->be->stream->stream_update(tx, r);
}

int sdb_stream_touch(stream_tx *tx, int64_t id, int64_t access_ms)
{
    return tx->be->stream->stream_touch(tx, id, access_ms);
}

int sdb_stream_remove(stream_tx *tx, int64_t id)
{
    return tx->be->stream->stream_remove(tx, id);
}

int sdb_stream_expired(int64_t *ids, size_t max, size_t *n, stream_tx *tx, int64_t now_ms)
{
    return tx->be->stream->stream_expired(ids, max, n, tx, now_ms);
}

int sdb_data_insert(stream_tx *tx, int64_t id, int64_t pos, int64_t end, const void *p, size_t n)
{
    return tx->be->stream->data_insert(tx, id, pos, end, p, n);
}

int sdb_data_trim(stream_tx *tx, int64_t id, int64_t pos)
{
    return tx->be->stream->data_trim(tx, id, pos);
}

int sdb_data_scan(stream_tx *tx, int64_t id, int64_t from, int64_t to, sdb_record_fn fn, void *arg)
{
    return tx->be->stream->data_scan(tx, id, from, to, fn, arg);
}

int sdb_producer_get(int64_t *epoch, int64_t *seq, stream_tx *tx, int64_t id, const char *producer)
{
    return tx->be->stream->producer_get(epoch, seq, tx, id, producer);
}

int sdb_producer_put(stream_tx *tx, int64_t id, const char *producer, int64_t epoch, int64_t seq)
{
    return tx->be->stream->producer_put(tx, id, producer, epoch, seq);
}

int sdb_session_tail(int64_t *last_seq, stream_tx *tx, int64_t session_id)
{
    return tx->be->stream->session_tail(last_seq, tx, session_id);
}

int sdb_session_scan(stream_tx *tx, int64_t session_id, int64_t from_seq, int64_t to_seq,
                     sdb_record_fn fn, void *arg)
{
    return tx->be->stream->session_scan(tx, session_id, from_seq, to_seq, fn, arg);
}
