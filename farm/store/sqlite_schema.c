/*
 * sqlite_schema.c - the SQLite store's schema, as an ordered list of
 * migrations.
 *
 * The database's version is PRAGMA user_version: the number of the last
 * migration applied. Opening runs every later migration in one transaction,
 * so a data directory is never left half-upgraded; a database whose version
 * is above the last migration here was written by a newer farm and is
 * refused rather than misread. To change the schema, append an entry: never
 * edit one that has shipped.
 *
 * Times are INTEGER milliseconds since the epoch and JSON is TEXT, so the
 * same columns map one to one onto a PostgreSQL backend (BIGINT, JSONB).
 */
#include "sqlite_internal.h"

#include "base/error.h"
#include "base/log.h"

#include <stdio.h>

/* The local tracker's tables (sql_local.c). */
static const char local_schema_sql[] =
    "CREATE TABLE local_item ("
    "  number INTEGER PRIMARY KEY,"
    "  repo TEXT NOT NULL,"
    "  is_pr INTEGER NOT NULL DEFAULT 0,"
    "  title TEXT NOT NULL,"
    "  body TEXT NOT NULL DEFAULT '',"
    "  author TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'open',"
    "  head_branch TEXT,"
    "  base_branch TEXT,"
    "  issue INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE INDEX local_item_repo ON local_item(repo, number);"
    "CREATE INDEX local_item_branch ON local_item(repo, head_branch) WHERE is_pr = 1;"
    "CREATE INDEX local_item_issue ON local_item(issue) WHERE is_pr = 1;"
    "CREATE TABLE local_label ("
    "  id INTEGER PRIMARY KEY,"
    "  number INTEGER NOT NULL REFERENCES local_item(number),"
    "  label TEXT NOT NULL COLLATE NOCASE,"
    "  UNIQUE (number, label));"
    "CREATE TABLE local_comment ("
    "  id INTEGER PRIMARY KEY,"
    "  number INTEGER NOT NULL REFERENCES local_item(number),"
    "  author TEXT NOT NULL,"
    "  body TEXT NOT NULL,"
    "  review INTEGER NOT NULL DEFAULT 0,"
    "  path TEXT,"
    "  line INTEGER NOT NULL DEFAULT 0,"
    "  in_reply_to INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE INDEX local_comment_item ON local_comment(number, id);"
    "CREATE TABLE local_reaction ("
    "  number INTEGER NOT NULL REFERENCES local_item(number),"
    "  comment_id INTEGER NOT NULL DEFAULT 0,"
    "  reaction TEXT NOT NULL,"
    "  user TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (number, comment_id, reaction, user)) WITHOUT ROWID;";

static const sqlite_migration migrations[] = {
    {1, "deliveries, sessions, the session log and the job queue",
     "CREATE TABLE delivery ("
     "  id INTEGER PRIMARY KEY,"
     "  tracker TEXT NOT NULL,"
     "  delivery_id TEXT NOT NULL,"
     "  event TEXT,"
     "  action TEXT,"
     "  repo TEXT,"
     "  number INTEGER NOT NULL DEFAULT 0,"
     "  received_ms INTEGER NOT NULL,"
     "  outcome TEXT,"
     "  reason TEXT,"
     "  session_id INTEGER REFERENCES session(id),"
     "  job_id INTEGER REFERENCES job(id),"
     "  UNIQUE (tracker, delivery_id));"
     "CREATE INDEX delivery_received ON delivery(received_ms);"
     "CREATE TABLE session ("
     "  id INTEGER PRIMARY KEY,"
     "  tracker TEXT NOT NULL,"
     "  repo TEXT NOT NULL,"
     "  number INTEGER NOT NULL,"
     "  title TEXT,"
     "  url TEXT,"
     "  state TEXT NOT NULL DEFAULT 'queued',"
     "  branch TEXT,"
     "  pr_number INTEGER NOT NULL DEFAULT 0,"
     "  pr_url TEXT,"
     "  runs INTEGER NOT NULL DEFAULT 0,"
     "  agent_seconds REAL NOT NULL DEFAULT 0,"
     "  cost REAL NOT NULL DEFAULT 0,"
     "  last_seq INTEGER NOT NULL DEFAULT 0,"
     "  created_ms INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL);"
     /* at most one session at work per issue */
     "CREATE UNIQUE INDEX session_active ON session(tracker, repo, number)"
     "  WHERE state NOT IN ('done', 'failed', 'cancelled');"
     "CREATE INDEX session_issue ON session(tracker, repo, number);"
     "CREATE INDEX session_pr ON session(tracker, repo, pr_number) WHERE pr_number > 0;"
     "CREATE INDEX session_state ON session(state);"
     "CREATE INDEX session_updated ON session(updated_ms);"
     "CREATE TABLE event ("
     "  session_id INTEGER NOT NULL REFERENCES session(id),"
     "  seq INTEGER NOT NULL,"
     "  ts_ms INTEGER NOT NULL,"
     "  kind TEXT NOT NULL,"
     "  actor TEXT,"
     "  body TEXT NOT NULL DEFAULT '{}',"
     "  PRIMARY KEY (session_id, seq)) WITHOUT ROWID;"
     "CREATE TABLE job ("
     "  id INTEGER PRIMARY KEY,"
     "  kind TEXT NOT NULL,"
     "  session_id INTEGER REFERENCES session(id),"
     "  state TEXT NOT NULL DEFAULT 'queued',"
     "  not_before_ms INTEGER NOT NULL,"
     "  attempts INTEGER NOT NULL DEFAULT 0,"
     "  lease_owner TEXT,"
     "  lease_expires_ms INTEGER NOT NULL DEFAULT 0,"
     "  last_error TEXT,"
     "  created_ms INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL);"
     "CREATE INDEX job_due ON job(state, not_before_ms);"
     "CREATE INDEX job_session ON job(session_id);"},

    {2, "the tracker outbox and runtime settings",
     "CREATE TABLE outbox ("
     "  id INTEGER PRIMARY KEY,"
     "  kind TEXT NOT NULL,"
     "  session_id INTEGER REFERENCES session(id),"
     "  idem_key TEXT NOT NULL UNIQUE,"
     "  payload TEXT NOT NULL DEFAULT '{}',"
     "  state TEXT NOT NULL DEFAULT 'pending',"
     "  attempts INTEGER NOT NULL DEFAULT 0,"
     "  next_try_ms INTEGER NOT NULL DEFAULT 0,"
     "  remote_id TEXT,"
     "  last_error TEXT,"
     "  created_ms INTEGER NOT NULL,"
     "  updated_ms INTEGER NOT NULL);"
     "CREATE INDEX outbox_due ON outbox(state, next_try_ms);"
     "CREATE INDEX outbox_session ON outbox(session_id);"
     "CREATE TABLE setting ("
     "  key TEXT PRIMARY KEY,"
     "  value TEXT NOT NULL,"
     "  updated_ms INTEGER NOT NULL);"},

    {3, "durable streams (farm/store/sqlite_stream.c)", sqlite_stream_schema_sql},
    {4, "the local tracker's issues, comments and pull requests (farm/store/sql_local.c)",
     local_schema_sql},
    {5, "outbox leases (farm/store/sql_outbox.c)",
     "ALTER TABLE outbox ADD COLUMN lease_owner TEXT;"
     "ALTER TABLE outbox ADD COLUMN lease_expires_ms INTEGER NOT NULL DEFAULT 0;"},
    {6, "due cancel jobs found without a scan (farm/store/sql_job.c)",
     "CREATE INDEX job_cancel_due ON job(state, not_before_ms) WHERE kind = 'cancel';"},
    {7, "whether a session's pull request is a draft, and why (farm/store/sql_run.c)",
     "ALTER TABLE session ADD COLUMN pr_draft INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE session ADD COLUMN pr_draft_reason TEXT;"},
    {8, "model spend per UTC day and repository, for the budgets (farm/store/sql_run.c)",
     "CREATE TABLE model_spend ("
     "  day INTEGER NOT NULL,"
     "  repo TEXT NOT NULL,"
     "  usd REAL NOT NULL DEFAULT 0,"
     "  PRIMARY KEY (day, repo)) WITHOUT ROWID;"},
    {9, "model calls' totals for /metrics (farm/store/sql_run.c)",
     "CREATE TABLE model_stat ("
     "  name TEXT NOT NULL,"
     "  labels TEXT NOT NULL,"
     "  value REAL NOT NULL DEFAULT 0,"
     "  PRIMARY KEY (name, labels)) WITHOUT ROWID;"},
    {10, "which agent preset a session runs (farm/store/sql_session.c)",
     "ALTER TABLE session ADD COLUMN agent TEXT;"},
    {11, "the nodes sharing the store, by their heartbeats (farm/store/sql_node.c)",
     "CREATE TABLE node ("
     "  id TEXT PRIMARY KEY,"
     "  host TEXT NOT NULL,"
     "  role TEXT NOT NULL,"
     "  pid INTEGER NOT NULL,"
     "  slots INTEGER NOT NULL DEFAULT 0,"
     "  running INTEGER NOT NULL DEFAULT 0,"
     "  started_ms INTEGER NOT NULL,"
     "  beat_ms INTEGER NOT NULL);"},
    {12, "state the nodes share: write pacing, back-offs, once-only claims (farm/store/sql_node.c)",
     "CREATE TABLE shared_pace ("
     "  key TEXT NOT NULL,"
     "  at_ms INTEGER NOT NULL);"
     "CREATE INDEX shared_pace_key ON shared_pace (key, at_ms);"
     "CREATE TABLE shared_state ("
     "  key TEXT PRIMARY KEY,"
     "  owner TEXT NOT NULL DEFAULT '',"
     "  until_ms INTEGER NOT NULL);"},
};

#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

int sqlite_schema_latest(void)
{
    return migrations[NMIGRATIONS - 1].version;
}

static int user_version(int *out, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite_prepare(&st, db, "PRAGMA user_version");
    if (rc)
        return rc;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = sqlite_err(db, "reading the schema version");
    } else {
        *out = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

int sqlite_schema_migrate(sqlite3 *db, int target)
{
    int latest = sqlite_schema_latest();
    int cur = 0, rc;
    char sql[64];

    if (target <= 0 || target > latest)
        target = latest;
    /* IMMEDIATE: a second farm opening the same directory waits rather than
     * migrating alongside. */
    if ((rc = sqlite_exec(db, "BEGIN IMMEDIATE")))
        return rc;
    if ((rc = user_version(&cur, db)))
        goto out;
    if (cur > latest) {
        farm_error_set("data directory was written by a newer farm (schema %d > %d); upgrade farm",
                       cur, latest);
        rc = FARM_ENEWER;
        goto out;
    }
    for (size_t i = 0; i < NMIGRATIONS; i++) {
        const sqlite_migration *m = &migrations[i];
        if (m->version <= cur || m->version > target)
            continue;
        if ((rc = sqlite_exec(db, m->sql))) {
            farm_error_set("store: migration %d (%s) failed: %s", m->version, m->what,
                           sqlite3_errmsg(db));
            goto out;
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", m->version);
        if ((rc = sqlite_exec(db, sql)))
            goto out;
    }
    if ((rc = sqlite_exec(db, "COMMIT")))
        goto out;
    if (cur < target) {
        char from[16], to[16];
        snprintf(from, sizeof(from), "%d", cur);
        snprintf(to, sizeof(to), "%d", target);
        log_info("store schema upgraded", "from", from, "to", to);
    }
    return 0;
out:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
