/*
 * pg_schema.c - the PostgreSQL store's schema: the same migrations, with
 * the same numbers, as sqlite_schema.c, written in PostgreSQL's SQL.
 *
 * The version is the one row of farm_schema. Opening runs every later
 * migration in one transaction, under an advisory lock so that nodes
 * starting together migrate once; a database whose version is above the
 * last migration here was written by a newer farm and is refused. A new
 * migration is appended to both files under the same number.
 *
 * Types map one to one: SQLite's INTEGER is BIGINT (ids BIGSERIAL), REAL is
 * DOUBLE PRECISION, BLOB is BYTEA; JSON stays TEXT, as written.
 */
#include "pg_internal.h"

#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct pg_migration {
    int version;
    const char *what;
    const char *sql;
} pg_migration;

static const pg_migration migrations[] = {
    {1, "deliveries, sessions, the session log and the job queue",
     "CREATE TABLE session ("
     "  id BIGSERIAL PRIMARY KEY,"
     "  tracker TEXT NOT NULL,"
     "  repo TEXT NOT NULL,"
     "  number BIGINT NOT NULL,"
     "  title TEXT,"
     "  url TEXT,"
     "  state TEXT NOT NULL DEFAULT 'queued',"
     "  branch TEXT,"
     "  pr_number BIGINT NOT NULL DEFAULT 0,"
     "  pr_url TEXT,"
     "  runs BIGINT NOT NULL DEFAULT 0,"
     "  agent_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,"
     "  cost DOUBLE PRECISION NOT NULL DEFAULT 0,"
     "  last_seq BIGINT NOT NULL DEFAULT 0,"
     "  created_ms BIGINT NOT NULL,"
     "  updated_ms BIGINT NOT NULL);"
     /* at most one session at work per issue */
     "CREATE UNIQUE INDEX session_active ON session(tracker, repo, number)"
     "  WHERE state NOT IN ('done', 'failed', 'cancelled');"
     "CREATE INDEX session_issue ON session(tracker, repo, number);"
     "CREATE INDEX session_pr ON session(tracker, repo, pr_number) WHERE pr_number > 0;"
     "CREATE INDEX session_state ON session(state);"
     "CREATE INDEX session_updated ON session(updated_ms);"
     "CREATE TABLE event ("
     "  session_id BIGINT NOT NULL REFERENCES session(id),"
     "  seq BIGINT NOT NULL,"
     "  ts_ms BIGINT NOT NULL,"
     "  kind TEXT NOT NULL,"
     "  actor TEXT,"
     "  body TEXT NOT NULL DEFAULT '{}',"
     "  PRIMARY KEY (session_id, seq));"
     "CREATE TABLE job ("
     "  id BIGSERIAL PRIMARY KEY,"
     "  kind TEXT NOT NULL,"
     "  session_id BIGINT REFERENCES session(id),"
     "  state TEXT NOT NULL DEFAULT 'queued',"
     "  not_before_ms BIGINT NOT NULL,"
     "  attempts BIGINT NOT NULL DEFAULT 0,"
     "  lease_owner TEXT,"
     "  lease_expires_ms BIGINT NOT NULL DEFAULT 0,"
     "  last_error TEXT,"
     "  created_ms BIGINT NOT NULL,"
     "  updated_ms BIGINT NOT NULL);"
     "CREATE INDEX job_due ON job(state, not_before_ms);"
     "CREATE INDEX job_session ON job(session_id);"
     "CREATE TABLE delivery ("
     "  id BIGSERIAL PRIMARY KEY,"
     "  tracker TEXT NOT NULL,"
     "  delivery_id TEXT NOT NULL,"
     "  event TEXT,"
     "  action TEXT,"
     "  repo TEXT,"
     "  number BIGINT NOT NULL DEFAULT 0,"
     "  received_ms BIGINT NOT NULL,"
     "  outcome TEXT,"
     "  reason TEXT,"
     "  session_id BIGINT REFERENCES session(id),"
     "  job_id BIGINT REFERENCES job(id),"
     "  UNIQUE (tracker, delivery_id));"
     "CREATE INDEX delivery_received ON delivery(received_ms);"},

    {2, "the tracker outbox and runtime settings",
     "CREATE TABLE outbox ("
     "  id BIGSERIAL PRIMARY KEY,"
     "  kind TEXT NOT NULL,"
     "  session_id BIGINT REFERENCES session(id),"
     "  idem_key TEXT NOT NULL UNIQUE,"
     "  payload TEXT NOT NULL DEFAULT '{}',"
     "  state TEXT NOT NULL DEFAULT 'pending',"
     "  attempts BIGINT NOT NULL DEFAULT 0,"
     "  next_try_ms BIGINT NOT NULL DEFAULT 0,"
     "  remote_id TEXT,"
     "  last_error TEXT,"
     "  created_ms BIGINT NOT NULL,"
     "  updated_ms BIGINT NOT NULL);"
     "CREATE INDEX outbox_due ON outbox(state, next_try_ms);"
     "CREATE INDEX outbox_session ON outbox(session_id);"
     "CREATE TABLE setting ("
     "  key TEXT PRIMARY KEY,"
     "  value TEXT NOT NULL,"
     "  updated_ms BIGINT NOT NULL);"},

    {3, "durable streams (farm/store/pg_stream.c)",
     "CREATE TABLE stream ("
     " id BIGSERIAL PRIMARY KEY,"
     " path TEXT NOT NULL UNIQUE,"
     " content_type TEXT NOT NULL,"
     " ttl_s BIGINT NOT NULL DEFAULT -1,"
     " expires_at_ms BIGINT NOT NULL DEFAULT -1,"
     " created_ms BIGINT NOT NULL,"
     " access_ms BIGINT NOT NULL,"
     " tail BIGINT NOT NULL DEFAULT 0,"
     " start_pos BIGINT NOT NULL DEFAULT 0,"
     " closed BIGINT NOT NULL DEFAULT 0,"
     " closed_by_producer TEXT, closed_by_epoch BIGINT, closed_by_seq BIGINT,"
     " last_seq TEXT,"
     " fork_of BIGINT NOT NULL DEFAULT 0,"
     " fork_pos BIGINT NOT NULL DEFAULT 0,"
     " fork_offset_req BIGINT NOT NULL DEFAULT -1,"
     " refcount BIGINT NOT NULL DEFAULT 0,"
     " deleted BIGINT NOT NULL DEFAULT 0);"
     "CREATE TABLE stream_data ("
     " stream_id BIGINT NOT NULL, pos BIGINT NOT NULL, end_pos BIGINT NOT NULL,"
     " data BYTEA NOT NULL, PRIMARY KEY (stream_id, pos));"
     "CREATE TABLE stream_producer ("
     " stream_id BIGINT NOT NULL, producer TEXT NOT NULL, epoch BIGINT NOT NULL,"
     " seq BIGINT NOT NULL, PRIMARY KEY (stream_id, producer));"},

    {4, "the local tracker's issues, comments and pull requests (farm/store/sql_local.c)",
     "CREATE TABLE local_item ("
     "  number BIGSERIAL PRIMARY KEY,"
     "  repo TEXT NOT NULL,"
     "  is_pr BIGINT NOT NULL DEFAULT 0,"
     "  title TEXT NOT NULL,"
     "  body TEXT NOT NULL DEFAULT '',"
     "  author TEXT NOT NULL,"
     "  state TEXT NOT NULL DEFAULT 'open',"
     "  head_branch TEXT,"
     "  base_branch TEXT,"
     "  issue BIGINT NOT NULL DEFAULT 0,"
     "  created_ms BIGINT NOT NULL,"
     "  updated_ms BIGINT NOT NULL);"
     "CREATE INDEX local_item_repo ON local_item(lower(repo), number);"
     "CREATE INDEX local_item_branch ON local_item(lower(repo), head_branch) WHERE is_pr = 1;"
     "CREATE INDEX local_item_issue ON local_item(issue) WHERE is_pr = 1;"
     "CREATE TABLE local_label ("
     "  id BIGSERIAL PRIMARY KEY,"
     "  number BIGINT NOT NULL REFERENCES local_item(number),"
     "  label TEXT NOT NULL);"
     /* unique per item without regard to case (SQLite: COLLATE NOCASE) */
     "CREATE UNIQUE INDEX local_label_unique ON local_label(number, lower(label));"
     "CREATE TABLE local_comment ("
     "  id BIGSERIAL PRIMARY KEY,"
     "  number BIGINT NOT NULL REFERENCES local_item(number),"
     "  author TEXT NOT NULL,"
     "  body TEXT NOT NULL,"
     "  review BIGINT NOT NULL DEFAULT 0,"
     "  path TEXT,"
     "  line BIGINT NOT NULL DEFAULT 0,"
     "  in_reply_to BIGINT NOT NULL DEFAULT 0,"
     "  created_ms BIGINT NOT NULL,"
     "  updated_ms BIGINT NOT NULL);"
     "CREATE INDEX local_comment_item ON local_comment(number, id);"
     "CREATE TABLE local_reaction ("
     "  number BIGINT NOT NULL REFERENCES local_item(number),"
     "  comment_id BIGINT NOT NULL DEFAULT 0,"
     "  reaction TEXT NOT NULL,"
     "  \"user\" TEXT NOT NULL,"
     "  created_ms BIGINT NOT NULL,"
     "  PRIMARY KEY (number, comment_id, reaction, \"user\"));"},
    {5, "outbox leases (farm/store/sql_outbox.c)",
     "ALTER TABLE outbox ADD COLUMN lease_owner TEXT;"
     "ALTER TABLE outbox ADD COLUMN lease_expires_ms BIGINT NOT NULL DEFAULT 0;"},
    {6, "due cancel jobs found without a scan (farm/store/sql_job.c)",
     "CREATE INDEX job_cancel_due ON job(state, not_before_ms) WHERE kind = 'cancel';"},
    {7, "whether a session's pull request is a draft, and why (farm/store/sql_run.c)",
     "ALTER TABLE session ADD COLUMN pr_draft BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE session ADD COLUMN pr_draft_reason TEXT;"},
    {8, "model spend per UTC day and repository, for the budgets (farm/store/sql_run.c)",
     "CREATE TABLE model_spend ("
     "  day BIGINT NOT NULL,"
     "  repo TEXT NOT NULL,"
     "  usd DOUBLE PRECISION NOT NULL DEFAULT 0,"
     "  PRIMARY KEY (day, repo));"},
    {9, "model calls' totals for /metrics (farm/store/sql_run.c)",
     "CREATE TABLE model_stat ("
     "  name TEXT NOT NULL,"
     "  labels TEXT NOT NULL,"
     "  value DOUBLE PRECISION NOT NULL DEFAULT 0,"
     "  PRIMARY KEY (name, labels));"},
    {10, "which agent preset a session runs (farm/store/sql_session.c)",
     "ALTER TABLE session ADD COLUMN agent TEXT;"},
    {11, "the nodes sharing the store, by their heartbeats (farm/store/sql_node.c)",
     "CREATE TABLE node ("
     "  id TEXT PRIMARY KEY,"
     "  host TEXT NOT NULL,"
     "  role TEXT NOT NULL,"
     "  pid BIGINT NOT NULL,"
     "  slots BIGINT NOT NULL DEFAULT 0,"
     "  running BIGINT NOT NULL DEFAULT 0,"
     "  started_ms BIGINT NOT NULL,"
     "  beat_ms BIGINT NOT NULL);"},
    {12, "state the nodes share: write pacing, back-offs, once-only claims (farm/store/sql_node.c)",
     "CREATE TABLE shared_pace ("
     "  key TEXT NOT NULL,"
     "  at_ms BIGINT NOT NULL);"
     "CREATE INDEX shared_pace_key ON shared_pace (key, at_ms);"
     "CREATE TABLE shared_state ("
     "  key TEXT PRIMARY KEY,"
     "  owner TEXT NOT NULL DEFAULT '',"
     "  until_ms BIGINT NOT NULL);"},
};

#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

int pg_schema_latest(void)
{
    return migrations[NMIGRATIONS - 1].version;
}

/* The version, 0 for a database the farm has never opened. */
static int version_read(int *out, pg_conn *db)
{
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, db, "SELECT coalesce(max(version), 0) FROM farm_schema");
    if (rc)
        return rc;
    *out = 0;
    if (pg_step(st) == PG_ROW)
        *out = pg_col_int(st, 0);
    else
        rc = pg_err(db, "reading the schema version");
    pg_finalize(st);
    return rc;
}

int pg_schema_version(int *out, pg_conn *db)
{
    /* to_regclass() of a table another session is creating: a plain
     * subquery would fail when the table does not exist yet */
    pg_stmt *st = NULL;
    int rc = pg_prepare(&st, db, "SELECT to_regclass('farm_schema') IS NOT NULL");
    if (rc)
        return rc;
    *out = 0;
    if (pg_step(st) != PG_ROW) {
        rc = pg_err(db, "reading the schema version");
    } else if (pg_col_int(st, 0)) {
        pg_finalize(st);
        return version_read(out, db);
    }
    pg_finalize(st);
    return rc;
}

int pg_schema_migrate(pg_conn *db)
{
    int latest = pg_schema_latest();
    int cur = 0, rc;
    char sql[128];

    if ((rc = pg_exec(db, "BEGIN")))
        return rc;
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)", (long long)PG_LOCK_MIGRATE);
    if ((rc = pg_exec(db, sql)))
        goto out;
    if ((rc = pg_exec(db, "CREATE TABLE IF NOT EXISTS farm_schema (version BIGINT NOT NULL)")))
        goto out;
    if ((rc = version_read(&cur, db)))
        goto out;
    if (cur > latest) {
        farm_error_set("the PostgreSQL store was written by a newer farm (schema %d > %d);"
                       " upgrade farm",
                       cur, latest);
        rc = FARM_ENEWER;
        goto out;
    }
    for (size_t i = 0; i < NMIGRATIONS; i++) {
        const pg_migration *m = &migrations[i];
        if (m->version <= cur)
            continue;
        if ((rc = pg_exec(db, m->sql))) {
            farm_error_set("store: migration %d (%s) failed: %s", m->version, m->what, db->msg);
            goto out;
        }
    }
    if (cur < latest) {
        snprintf(sql, sizeof(sql), "DELETE FROM farm_schema; INSERT INTO farm_schema VALUES (%d)",
                 latest);
        if ((rc = pg_exec(db, sql)))
            goto out;
    }
    if ((rc = pg_exec(db, "COMMIT")))
        goto out;
    if (cur < latest) {
        char from[16], to[16];
        snprintf(from, sizeof(from), "%d", cur);
        snprintf(to, sizeof(to), "%d", latest);
        log_info("store schema upgraded", "from", from, "to", to, "backend", "postgres");
    }
    return 0;
out:
    pg_exec(db, "ROLLBACK");
    return rc;
}
