/*
 * test_store.c - the store: choosing its backend by URL, migrations (fresh,
 * upgrade, the session's draft columns, refusing a newer schema), deliveries deduplicated by the
 * UNIQUE constraint, sessions with one active per issue, the dense event log, reads with filters,
 * counts, rollback of a failed write alone, the group commit sharing fsyncs, and asynchronous
 * writes completed after their commit (also when closing); the areas written once for both
 * backends (settings, a run's fields, spend, the digest, the review queries, the local tracker).
 *
 * Everything goes through the public interface except what only the SQLite
 * backend has (sqlite_internal.h): an old database file to migrate, a full
 * disk simulated by a page cap, and the checkpointer's counter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/sqlite_internal.h"
#include "farm/store/store.h"
#include "farm/store/store_hold.h"
#include "farm/config/config.h"
#include "farm/store/store_copy.h"
#include "farm/store/store_digest.h"
#include "farm/store/store_job.h"
#include "farm/store/store_local.h"
#include "farm/store/store_review.h"
#include "farm/store/store_inspect.h"
#include "farm/store/store_node.h"
#include "farm/store/store_run.h"
#include "support/store_backend_test.h"

#include <ftw.h>
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static char *tmpdir_make(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *dir = NULL;
    assert_true(asprintf(&dir, "%s/farm-test-store-XXXXXX", base) > 0);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void tmpdir_remove(char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

typedef struct fixture {
    char *dir;
    store *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->dir = tmpdir_make();
    if (test_store_open(&f->s, f->dir) != 0) {
        fprintf(stderr, "store_open: %s\n", farm_error_last());
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* ---- write functions used by the tests ---------------------------------- */

typedef struct delivery_args {
    const char *tracker, *id, *repo;
    int64_t row;
} delivery_args;

static int write_delivery(store_tx *tx, void *arg)
{
    delivery_args *a = arg;
    store_delivery d = {0};
    d.tracker = (char *)a->tracker;
    d.delivery_id = (char *)a->id;
    d.event = "issues";
    d.action = "labeled";
    d.repo = (char *)a->repo;
    d.number = 7;
    int rc = store_tx_delivery_insert(&a->row, tx, &d);
    if (rc)
        return rc;
    return store_tx_delivery_outcome_set(tx, a->row, "ignored", "test", 0, 0);
}

typedef struct session_args {
    const char *repo;
    int64_t number;
    int64_t id, job;
} session_args;

static int write_session(store_tx *tx, void *arg)
{
    session_args *a = arg;
    store_session s = {0};
    s.tracker = "github";
    s.repo = (char *)a->repo;
    s.number = a->number;
    s.title = "Fix the typo";
    s.url = "https://example.test/issues/1";
    int rc = store_tx_session_insert(&a->id, tx, &s);
    if (rc)
        return rc;
    return store_tx_job_insert(&a->job, tx, "run", a->id, 0);
}

static int64_t session_new(store *s, const char *repo, int64_t number)
{
    session_args a = {repo, number, 0, 0};
    assert_int_equal(store_write(s, write_session, &a), 0);
    assert_true(a.id > 0);
    return a.id;
}

/* ---- migrations ----------------------------------------------------------- */

static void fresh_store_reaches_latest_schema(void **state)
{
    fixture *f = *state;
    int v = -1;
    assert_int_equal(store_schema_version(&v, f->s), 0);
    assert_int_equal(v, store_schema_latest());
    assert_true(store_schema_latest() >= 2);
    assert_int_equal(store_health(f->s), 0);
}

static void old_schema_is_upgraded_keeping_data(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    char *dir = tmpdir_make(), *path = NULL;
    sqlite3 *db = NULL;
    store *s = NULL;
    int v = 0;

    assert_true(asprintf(&path, "%s/farm.db", dir) > 0);
    assert_int_equal(sqlite_conn_open(&db, path, 0), 0);
    assert_int_equal(sqlite_schema_migrate(db, 1), 0);
    assert_int_equal(sqlite_exec(db, "INSERT INTO delivery (tracker, delivery_id, received_ms)"
                                     " VALUES ('github', 'old-1', 1000)"),
                     0);
    /* the outbox arrived in version 2: not there yet */
    assert_int_not_equal(sqlite_exec(db, "SELECT count(*) FROM outbox"), 0);
    sqlite3_close(db);

    assert_int_equal(store_open(&s, dir), 0);
    assert_int_equal(store_schema_version(&v, s), 0);
    assert_int_equal(v, store_schema_latest());
    store_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(store_delivery_list(&d, &n, s, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].delivery_id, "old-1");
    store_delivery_list_free(d, n);
    store_close(s);

    /* and the upgraded tables work */
    assert_int_equal(sqlite_conn_open(&db, path, 0), 0);
    assert_int_equal(sqlite_exec(db, "INSERT INTO setting (key, value, updated_ms)"
                                     " VALUES ('k', '1', 1)"),
                     0);
    sqlite3_close(db);
    free(path);
    tmpdir_remove(dir);
}

/* A data directory from before the draft columns (schema 6): its sessions
 * read as not drafts, and a draft can be recorded on them. */
typedef struct draft_args {
    int64_t id;
    int draft;
    const char *reason;
} draft_args;

static int write_draft(store_tx *tx, void *arg)
{
    draft_args *a = arg;
    return store_tx_session_pr_draft_set(tx, a->id, a->draft, a->reason);
}

static void sessions_gain_the_draft_columns(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    char *dir = tmpdir_make(), *path = NULL;
    sqlite3 *db = NULL;
    store *s = NULL;
    store_session *got = NULL;

    assert_true(asprintf(&path, "%s/farm.db", dir) > 0);
    assert_int_equal(sqlite_conn_open(&db, path, 0), 0);
    assert_int_equal(sqlite_schema_migrate(db, 6), 0);
    assert_int_equal(sqlite_exec(db, "INSERT INTO session (tracker, repo, number, state,"
                                     " pr_number, pr_url, created_ms, updated_ms)"
                                     " VALUES ('github', 'octo/app', 3, 'review', 9,"
                                     " 'https://example.test/pull/9', 1000, 1000)"),
                     0);
    assert_int_not_equal(sqlite_exec(db, "SELECT pr_draft FROM session"), 0);
    sqlite3_close(db);

    assert_int_equal(store_open(&s, dir), 0);
    assert_int_equal(store_session_get(&got, s, 1), 0);
    assert_int_equal(got->pr_number, 9);
    assert_false(got->pr_draft);
    assert_null(got->pr_draft_reason);
    store_session_free(got);

    draft_args a = {1, 1, "the tests still fail after 2 rounds"};
    assert_int_equal(store_write(s, write_draft, &a), 0);
    assert_int_equal(store_session_get(&got, s, 1), 0);
    assert_true(got->pr_draft);
    assert_string_equal(got->pr_draft_reason, "the tests still fail after 2 rounds");
    store_session_free(got);
    /* the list reads them too */
    store_session *v = NULL;
    size_t n = 0;
    assert_int_equal(store_session_list(&v, &n, s, NULL), 0);
    assert_int_equal(n, 1);
    assert_true(v[0].pr_draft);
    assert_string_equal(v[0].pr_draft_reason, "the tests still fail after 2 rounds");
    store_session_list_free(v, n);
    /* no longer a draft: the reason goes with it */
    a.draft = 0;
    assert_int_equal(store_write(s, write_draft, &a), 0);
    assert_int_equal(store_session_get(&got, s, 1), 0);
    assert_false(got->pr_draft);
    assert_null(got->pr_draft_reason);
    store_session_free(got);
    a.id = 77;
    assert_int_equal(store_write(s, write_draft, &a), FARM_ENOTFOUND);
    store_close(s);
    free(path);
    tmpdir_remove(dir);
}

/* ---- holds (store_hold.h) and the session's agent preset ------------------ */

typedef struct hold_args {
    int step;
    int held;
    char *by;
    store_hold_parked *parked;
    size_t nparked;
    int64_t id;
} hold_args;

static int write_hold(store_tx *tx, void *arg)
{
    hold_args *a = arg;
    switch (a->step) {
    case 0: /* not held: parking writes nothing */
        return store_tx_hold_park(&a->held, tx, "github", "o/r", 7, 1, "run");
    case 1:
        return store_tx_hold_set(tx, "github", "o/r", 7, "alice");
    case 2: /* parked twice is parked once; another session's job too */
        if (store_tx_hold_park(&a->held, tx, "github", "o/r", 7, 1, "revise") ||
            store_tx_hold_park(&a->held, tx, "github", "o/r", 7, 1, "revise") ||
            store_tx_hold_park(&a->held, tx, "github", "o/r", 7, 2, "answer"))
            return FARM_EIO;
        return store_tx_hold_get(&a->by, tx, "github", "o/r", 7);
    case 3:
        return store_tx_hold_lift(&a->parked, &a->nparked, tx, "github", "o/r", 7);
    default: {
        store_session s = {0};
        s.tracker = "github";
        s.repo = "o/r";
        s.number = 8;
        s.agent = "codex";
        return store_tx_session_insert(&a->id, tx, &s);
    }
    }
}

static void holds_and_the_session_agent(void **state)
{
    fixture *f = *state;
    hold_args a = {0};
    char *by = NULL;

    assert_int_equal(store_write(f->s, write_hold, &a), 0);
    assert_int_equal(a.held, 0);
    assert_int_equal(store_hold_get(&by, f->s, "github", "o/r", 7), 0);
    assert_null(by);
    a.step = 1;
    assert_int_equal(store_write(f->s, write_hold, &a), 0);
    assert_int_equal(store_hold_get(&by, f->s, "github", "o/r", 7), 0);
    assert_string_equal(by, "alice");
    free(by);
    assert_int_equal(store_hold_get(&by, f->s, "github", "o/r", 70), 0); /* a prefix is not it */
    assert_null(by);
    a.step = 2;
    assert_int_equal(store_write(f->s, write_hold, &a), 0);
    assert_int_equal(a.held, 1);
    assert_string_equal(a.by, "alice");
    free(a.by);
    a.step = 3;
    assert_int_equal(store_write(f->s, write_hold, &a), 0);
    assert_int_equal(a.nparked, 2);
    assert_int_equal(a.parked[0].session_id, 1);
    assert_string_equal(a.parked[0].kind, "revise");
    assert_int_equal(a.parked[1].session_id, 2);
    assert_string_equal(a.parked[1].kind, "answer");
    free(a.parked);
    assert_int_equal(store_hold_get(&by, f->s, "github", "o/r", 7), 0);
    assert_null(by);                                        /* lifted */
    assert_int_equal(store_write(f->s, write_hold, &a), 0); /* lifting again: nothing */
    assert_int_equal(a.nparked, 0);
    assert_null(a.parked);

    a.step = 4;
    assert_int_equal(store_write(f->s, write_hold, &a), 0);
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, f->s, a.id), 0);
    assert_string_equal(s->agent, "codex");
    store_session_free(s);
    int64_t other = session_new(f->s, "o/r", 9);
    assert_int_equal(store_session_get(&s, f->s, other), 0);
    assert_null(s->agent); /* none given: the configured default */
    store_session_free(s);
}

static void newer_schema_is_refused(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    char *dir = tmpdir_make(), *path = NULL, sql[64];
    sqlite3 *db = NULL;
    store *s = NULL;

    assert_true(asprintf(&path, "%s/farm.db", dir) > 0);
    assert_int_equal(sqlite_conn_open(&db, path, 0), 0);
    assert_int_equal(sqlite_schema_migrate(db, 0), 0);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_schema_latest() + 3);
    assert_int_equal(sqlite_exec(db, sql), 0);
    sqlite3_close(db);

    assert_int_equal(store_open(&s, dir), FARM_ENEWER);
    assert_null(s);
    char want[128];
    snprintf(want, sizeof(want),
             "data directory was written by a newer farm (schema %d > %d); upgrade farm",
             store_schema_latest() + 3, store_schema_latest());
    assert_string_equal(farm_error_last(), want);
    free(path);
    tmpdir_remove(dir);
}

static void missing_directory_is_an_error(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    store *s = NULL;
    int rc = store_open(&s, "/nonexistent-farm-dir/sub");
    assert_int_equal(rc, FARM_EIO);
    assert_null(s);
    assert_non_null(strstr(farm_error_last(), "cannot open"));
}

static void backend_is_chosen_by_url(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    char *dir = tmpdir_make();
    store *s = NULL;
    int v = 0;

    assert_int_equal(store_open_url(&s, "sqlite:", dir), 0);
    assert_int_equal(store_schema_version(&v, s), 0);
    assert_int_equal(v, store_schema_latest());
    assert_int_equal(session_new(s, "octo/app", 1) > 0, 1);
    store_close(s);
    s = NULL;
    /* the same data directory, opened the default way */
    assert_int_equal(store_open(&s, dir), 0);
    store_session *got = NULL;
    assert_int_equal(store_session_get(&got, s, 1), 0);
    assert_string_equal(got->repo, "octo/app");
    store_session_free(got);
    store_close(s);
    tmpdir_remove(dir);
}

/* The PostgreSQL store's schema version lives in farm_schema: one written
 * by a newer farm is refused, as SQLite's user_version is. */
static void newer_pg_schema_is_refused(void **state)
{
    if (!test_store_is_pg())
        skip(); /* newer_schema_is_refused covers SQLite */
    char *dir = tmpdir_make();
    store *s = NULL;
    int64_t changes = 0;
    json_t *params = json_pack("[i]", store_schema_latest() + 3);
    char want[128];

    assert_int_equal(test_store_open(&s, dir), 0);
    assert_int_equal(store_exec_json(&changes, s, "UPDATE farm_schema SET version = ?", params), 0);
    assert_int_equal(changes, 1);
    json_decref(params);
    store_close(s);
    s = NULL;
    assert_int_equal(test_store_open(&s, dir), FARM_ENEWER);
    assert_null(s);
    snprintf(want, sizeof(want),
             "the PostgreSQL store was written by a newer farm (schema %d > %d); upgrade farm",
             store_schema_latest() + 3, store_schema_latest());
    assert_string_equal(farm_error_last(), want);
    tmpdir_remove(dir);
}

/* A server that cannot be reached: an error that says so and what to
 * check, never the password. */
static void unreachable_postgres_is_an_error(void **state)
{
    store *s = NULL;
    assert_int_equal(store_open_password(&s, "postgresql:///farm?host=/nonexistent-farm-pg",
                                         "hunter2-secret", "/tmp"),
                     FARM_EIO);
    assert_null(s);
    assert_non_null(strstr(farm_error_last(), "cannot connect to PostgreSQL"));
    assert_non_null(strstr(farm_error_last(), "store.url"));
    assert_null(strstr(farm_error_last(), "hunter2"));
    /* a libpq connection string chooses PostgreSQL too */
    assert_int_equal(store_open_url(&s, "host=/nonexistent-farm-pg dbname=farm", "/tmp"), FARM_EIO);
    assert_non_null(strstr(farm_error_last(), "cannot connect to PostgreSQL"));
}

static config *config_from(const char *dir, const char *text, char **errors)
{
    char path[512];
    config *c = NULL;
    snprintf(path, sizeof(path), "%s/farm.json", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    *errors = NULL;
    if (config_load(&c, path, errors))
        return NULL;
    return c;
}

/* store.url and store.password in the config file. */
static void store_url_comes_from_the_config(void **state)
{
    char *dir = tmpdir_make(), *errors = NULL;
    config *c;

    c = config_from(dir, "{}", &errors);
    assert_non_null(c);
    assert_string_equal(c->store.url, "sqlite:");
    assert_null(c->store.password);
    config_free(c);

    setenv("FARM_TEST_STORE_PASSWORD", "pw-from-env", 1);
    c = config_from(dir,
                    "{ \"store\": { \"url\": \"postgres://farm@db.internal/farm\","
                    "  \"password\": \"env:FARM_TEST_STORE_PASSWORD\" } }",
                    &errors);
    assert_non_null(c);
    assert_string_equal(c->store.url, "postgres://farm@db.internal/farm");
    assert_string_equal(c->store.password, "pw-from-env");
    config_free(c);

    c = config_from(dir, "{ \"store\": { \"url\": \"host=/run/postgresql dbname=farm\" } }",
                    &errors);
    assert_non_null(c);
    config_free(c);

    /* a password in the URL is refused, and not repeated */
    assert_null(config_from(dir, "{ \"store\": { \"url\": \"postgres://farm:s3cret@db/farm\" } }",
                            &errors));
    assert_non_null(strstr(errors, "store.url"));
    assert_non_null(strstr(errors, "store.password"));
    assert_null(strstr(errors, "s3cret"));
    free(errors);
    assert_null(config_from(dir, "{ \"store\": { \"url\": \"mysql://db/farm\" } }", &errors));
    assert_non_null(strstr(errors, "store.url"));
    free(errors);
    assert_null(config_from(dir, "{ \"store\": { \"uri\": \"sqlite:\" } }", &errors));
    assert_non_null(strstr(errors, "store.uri"));
    free(errors);
    tmpdir_remove(dir);
}

static void unknown_backend_is_refused(void **state)
{
    store *s = NULL;

    assert_int_equal(store_open_url(&s, "mysql://farm:secret@db/farm", "/tmp"), FARM_EINVALID);
    assert_null(s);
    assert_string_equal(farm_error_last(), "store: no backend \"mysql\" (known: sqlite, postgres)");
    assert_null(strstr(farm_error_last(), "secret")); /* the rest of a URL is not repeated */
    assert_int_equal(store_open_url(&s, "farm.db", "/tmp"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "backend's name and a colon"));
    assert_int_equal(store_open_url(&s, NULL, "/tmp"), FARM_EINVALID);
    assert_int_equal(store_open_url(&s, "sqlite:/elsewhere/farm.db", "/tmp"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "in the data directory"));
    assert_null(s);
}

/* ---- deliveries ----------------------------------------------------------- */

static void delivery_id_is_unique_per_tracker(void **state)
{
    fixture *f = *state;
    delivery_args a = {"github", "d-1", "octo/app", 0};
    assert_int_equal(store_write(f->s, write_delivery, &a), 0);
    assert_true(a.row > 0);
    delivery_args b = {"github", "d-1", "octo/app", 0};
    assert_int_equal(store_write(f->s, write_delivery, &b), FARM_EEXISTS);
    assert_non_null(strstr(farm_error_last(), "recorded before"));
    /* another tracker may reuse the id */
    delivery_args c = {"azure", "d-1", "org/proj/repo", 0};
    assert_int_equal(store_write(f->s, write_delivery, &c), 0);

    store_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(store_delivery_list(&d, &n, f->s, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(d[0].tracker, "azure"); /* newest first */
    assert_string_equal(d[1].tracker, "github");
    assert_string_equal(d[1].outcome, "ignored");
    assert_string_equal(d[1].reason, "test");
    assert_int_equal(d[1].number, 7);
    store_delivery_list_free(d, n);
}

static void delivery_list_filters_and_limits(void **state)
{
    fixture *f = *state;
    char id[32];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "d-%d", i);
        delivery_args a = {i % 3 == 0 ? "azure" : "github", id, i % 2 ? "Octo/App" : "octo/lib", 0};
        assert_int_equal(store_write(f->s, write_delivery, &a), 0);
    }
    store_delivery_filter flt = STORE_DELIVERY_FILTER_INIT;
    store_delivery *d = NULL;
    size_t n = 0;

    flt.tracker = "azure";
    assert_int_equal(store_delivery_list(&d, &n, f->s, &flt), 0);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(d[i].tracker, "azure");
    store_delivery_list_free(d, n);

    flt = (store_delivery_filter)STORE_DELIVERY_FILTER_INIT;
    flt.repo = "octo/app"; /* case-insensitive */
    flt.limit = 4;
    assert_int_equal(store_delivery_list(&d, &n, f->s, &flt), 0);
    assert_int_equal(n, 4);
    assert_string_equal(d[0].delivery_id, "d-29");
    int64_t last = d[3].id;
    store_delivery_list_free(d, n);
    flt.before_id = last; /* the next page */
    assert_int_equal(store_delivery_list(&d, &n, f->s, &flt), 0);
    assert_int_equal(n, 4);
    assert_true(d[0].id < last);
    store_delivery_list_free(d, n);

    flt = (store_delivery_filter)STORE_DELIVERY_FILTER_INIT;
    flt.outcome = "accepted";
    assert_int_equal(store_delivery_list(&d, &n, f->s, &flt), 0);
    assert_int_equal(n, 0);
    assert_null(d);

    store_count *c = NULL;
    assert_int_equal(store_delivery_count(&c, &n, f->s), 0);
    assert_int_equal(n, 2);
    assert_string_equal(c[0].labels[0], "azure");
    assert_string_equal(c[0].labels[1], "issues");
    assert_string_equal(c[0].labels[2], "ignored");
    assert_int_equal(c[0].n, 10);
    assert_int_equal(c[1].n, 20);
    store_count_list_free(c, n);
}

/* ---- sessions and their log ---------------------------------------------- */

static int end_session(store_tx *tx, void *arg)
{
    return store_tx_session_state_set(tx, *(int64_t *)arg, "done");
}

static void one_active_session_per_issue(void **state)
{
    fixture *f = *state;
    int64_t id = session_new(f->s, "octo/app", 12);
    session_args again = {"octo/app", 12, 0, 0};
    assert_int_equal(store_write(f->s, write_session, &again), FARM_EEXISTS);
    /* nothing of the failed write stayed: still exactly one job */
    int64_t queued = -1, leased = -1;
    assert_int_equal(store_job_count(&queued, &leased, f->s), 0);
    assert_int_equal(queued, 1);
    assert_int_equal(leased, 0);

    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, f->s, id), 0);
    assert_string_equal(s->state, "queued");
    assert_string_equal(s->repo, "octo/app");
    assert_string_equal(s->title, "Fix the typo");
    assert_int_equal(s->number, 12);
    assert_int_equal(s->pr_number, 0);
    assert_null(s->branch);
    assert_true(s->created_ms > 0);
    store_session_free(s);
    assert_int_equal(store_session_get(&s, f->s, id + 100), FARM_ENOTFOUND);
    assert_null(s);

    /* once it ended, the issue may get a new session */
    assert_int_equal(store_write(f->s, end_session, &id), 0);
    int64_t id2 = session_new(f->s, "octo/app", 12);
    assert_true(id2 > id);
}

static void event_seq_is_dense_per_session(void **state)
{
    fixture *f = *state;
    int64_t a = session_new(f->s, "octo/app", 1), b = session_new(f->s, "octo/app", 2), seq;

    for (int i = 1; i <= 5; i++) {
        assert_int_equal(store_event_append(&seq, f->s, a, "note", "alice", "{\"i\":1}"), 0);
        assert_int_equal(seq, i);
    }
    assert_int_equal(store_event_append(&seq, f->s, b, "note", NULL, NULL), 0);
    assert_int_equal(seq, 1);
    /* bad appends take no seq */
    assert_int_equal(store_event_append(&seq, f->s, a, "note", NULL, "{not json"), FARM_EINVALID);
    assert_int_equal(store_event_append(&seq, f->s, 9999, "note", NULL, "{}"), FARM_ENOTFOUND);
    assert_int_equal(store_event_append(&seq, f->s, a, "note", NULL, "[1,2]"), 0);
    assert_int_equal(seq, 6);

    store_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&ev, &n, f->s, a, 0, 0), 0);
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ev[i].seq, (int64_t)i + 1);
    assert_string_equal(ev[0].actor, "alice");
    assert_string_equal(ev[0].body, "{\"i\":1}");
    store_event_list_free(ev, n);
    assert_int_equal(store_event_list(&ev, &n, f->s, a, 4, 1), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].seq, 5);
    store_event_list_free(ev, n);
    assert_int_equal(store_event_list(&ev, &n, f->s, b, 0, 0), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].body, "{}");
    assert_null(ev[0].actor);
    store_event_list_free(ev, n);

    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, f->s, a), 0);
    assert_int_equal(s->last_seq, 6);
    store_session_free(s);
}

static void session_list_filters(void **state)
{
    fixture *f = *state;
    for (int i = 1; i <= 6; i++)
        session_new(f->s, i % 2 ? "octo/app" : "octo/lib", i);
    store_session_filter flt = STORE_SESSION_FILTER_INIT;
    store_session *v = NULL;
    size_t n = 0;

    assert_int_equal(store_session_list(&v, &n, f->s, &flt), 0);
    assert_int_equal(n, 6);
    assert_int_equal(v[0].number, 6); /* newest first */
    store_session_list_free(v, n);

    flt.repo = "OCTO/LIB";
    assert_int_equal(store_session_list(&v, &n, f->s, &flt), 0);
    assert_int_equal(n, 3);
    store_session_list_free(v, n);

    flt.repo = NULL;
    flt.state = "running";
    assert_int_equal(store_session_list(&v, &n, f->s, &flt), 0);
    assert_int_equal(n, 0);

    flt.state = NULL;
    flt.since_ms = INT64_MAX;
    assert_int_equal(store_session_list(&v, &n, f->s, &flt), 0);
    assert_int_equal(n, 0);

    store_count *c = NULL;
    assert_int_equal(store_session_count_by_state(&c, &n, f->s), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].labels[0], "queued");
    assert_null(c[0].labels[1]);
    assert_int_equal(c[0].n, 6);
    store_count_list_free(c, n);

    assert_true(store_session_state_is_final("done"));
    assert_false(store_session_state_is_final("review"));
    assert_string_equal(store_session_states()[0], "queued");
}

/* ---- the group commit ----------------------------------------------------- */

static int write_then_fail(store_tx *tx, void *arg)
{
    delivery_args *a = arg;
    int rc = write_delivery(tx, a);
    if (rc)
        return rc;
    farm_error_set("deliberate failure after writing");
    return FARM_ECONFLICT;
}

static void failed_write_rolls_back_alone(void **state)
{
    fixture *f = *state;
    delivery_args a = {"github", "kept", NULL, 0}, b = {"github", "lost", NULL, 0};
    assert_int_equal(store_write(f->s, write_delivery, &a), 0);
    assert_int_equal(store_write(f->s, write_then_fail, &b), FARM_ECONFLICT);
    assert_string_equal(farm_error_last(), "deliberate failure after writing");

    store_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(store_delivery_list(&d, &n, f->s, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].delivery_id, "kept");
    store_delivery_list_free(d, n);

    store_stats st;
    store_stats_get(&st, f->s);
    assert_int_equal(st.writes, 1);
    assert_int_equal(st.failed_writes, 1);
    assert_int_equal(st.failed_commits, 0);
}

/* A full disk, simulated by capping the database at its current size. */
static int write_cap(store_tx *tx, void *arg)
{
    return sqlite_exec(sqlite_tx_db(tx), *(int *)arg ? "PRAGMA max_page_count = 1"
                                                     : "PRAGMA max_page_count = 1073741823");
}

typedef struct big_append {
    int64_t session;
    char *body;
} big_append;

static int write_big(store_tx *tx, void *arg)
{
    big_append *a = arg;
    return store_tx_event_append(NULL, tx, a->session, "output", NULL, a->body);
}

static void full_disk_fails_the_write_not_the_store(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    fixture *f = *state;
    int64_t sid = session_new(f->s, "octo/app", 3), seq = 0;
    big_append a = {sid, malloc(2u << 20)};
    int on = 1, off = 0;

    /* a JSON string of 2 MiB: far more than the pages the file has */
    memset(a.body, 'x', (2u << 20) - 1);
    a.body[0] = '"';
    a.body[(2u << 20) - 2] = '"';
    a.body[(2u << 20) - 1] = '\0';
    assert_int_equal(store_event_append(&seq, f->s, sid, "note", NULL, "{}"), 0);
    assert_int_equal(seq, 1);

    assert_int_equal(store_write(f->s, write_cap, &on), 0);
    assert_int_equal(store_write(f->s, write_big, &a), FARM_EIO);
    assert_non_null(strstr(farm_error_last(), "full"));
    assert_int_equal(store_write(f->s, write_cap, &off), 0);

    /* the store carries on, and the failed append took no seq */
    assert_int_equal(store_event_append(&seq, f->s, sid, "note", NULL, "{}"), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(store_write(f->s, write_big, &a), 0);
    store_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&ev, &n, f->s, sid, 0, 0), 0);
    assert_int_equal(n, 3);
    assert_string_equal(ev[1].kind, "note");
    assert_string_equal(ev[2].kind, "output");
    store_event_list_free(ev, n);
    assert_int_equal(store_health(f->s), 0);
    free(a.body);
}

typedef struct json_append {
    int64_t session;
    json_t *body;
    int64_t seq;
} json_append;

static int write_json(store_tx *tx, void *arg)
{
    json_append *a = arg;
    return store_tx_event_append_json(&a->seq, tx, a->session, "note", "octocat", a->body);
}

/* A body handed over as a jansson object is stored as its compact text (and
 * NULL as "{}"), in the same seq order as text bodies. */
static void event_append_json_stores_the_object(void **state)
{
    fixture *f = *state;
    int64_t sid = session_new(f->s, "octo/app", 4), seq = 0;
    json_append a = {sid, json_pack("{s:s,s:i}", "text", "caf\u00e9 \"quoted\"", "n", 7), 0};

    assert_non_null(a.body);
    assert_int_equal(store_event_append(&seq, f->s, sid, "note", NULL, "{}"), 0);
    assert_int_equal(store_write(f->s, write_json, &a), 0);
    assert_int_equal(a.seq, 2);
    json_decref(a.body);
    a.body = NULL;
    assert_int_equal(store_write(f->s, write_json, &a), 0);
    assert_int_equal(a.seq, 3);

    store_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&ev, &n, f->s, sid, 0, 0), 0);
    assert_int_equal(n, 3);
    json_t *back = json_loads(ev[1].body, 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "text")), "caf\u00e9 \"quoted\"");
    assert_int_equal(json_integer_value(json_object_get(back, "n")), 7);
    json_decref(back);
    assert_string_equal(ev[1].actor, "octocat");
    assert_string_equal(ev[2].body, "{}");
    store_event_list_free(ev, n);
}

static int write_nested(store_tx *tx, void *arg)
{
    return store_write(arg, write_nested, arg);
}

static void nested_write_is_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(store_write(f->s, write_nested, f->s), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "inside a write function"));
}

#define THREADS    16
#define PER_THREAD 50

typedef struct worker {
    store *s;
    int64_t session;
    int failures;
} worker;

static void *append_many(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++)
        if (store_event_append(NULL, w->s, w->session, "note", NULL, "{}") != 0)
            w->failures++;
    return NULL;
}

static void concurrent_writes_share_commits(void **state)
{
    fixture *f = *state;
    pthread_t t[THREADS];
    worker w[THREADS];
    store_stats before, after;

    int64_t sid = session_new(f->s, "octo/app", 99);
    store_stats_get(&before, f->s);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){f->s, sid, 0};
        assert_int_equal(pthread_create(&t[i], NULL, append_many, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    store_stats_get(&after, f->s);
    uint64_t writes = after.writes - before.writes, commits = after.commits - before.commits;
    print_message("%llu writes in %llu commits (largest batch %llu)\n", (unsigned long long)writes,
                  (unsigned long long)commits, (unsigned long long)after.max_batch);
    assert_int_equal(writes, THREADS * PER_THREAD);
    if (!test_store_is_pg()) { /* PostgreSQL commits each write on its own */
        assert_true(commits < writes);
        assert_true(after.max_batch > 1);
    }

    /* every append landed, with dense seqs */
    store_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&ev, &n, f->s, sid, 0, STORE_LIST_MAX), 0);
    assert_int_equal(n, THREADS * PER_THREAD);
    assert_int_equal(ev[n - 1].seq, THREADS * PER_THREAD);
    store_event_list_free(ev, n);
}

/* A write that holds the writer until the test opens the gate, so writes
 * queue up behind it. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered, open;
} gate;

static int write_gate(store_tx *tx, void *arg)
{
    gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->entered = 1;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static void *write_gate_thread(void *arg)
{
    void **a = arg;
    assert_int_equal(store_write(a[0], write_gate, a[1]), 0);
    return NULL;
}

static void *append_one(void *arg)
{
    worker *w = arg;
    if (store_event_append(NULL, w->s, w->session, "note", NULL, "{}") != 0)
        w->failures++;
    return NULL;
}

static void batches_are_capped(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    fixture *f = *state;
    enum { N = STORE_BATCH_MAX + 44 };
    static pthread_t t[N];
    static worker w[N];
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    void *ga[2] = {f->s, &g};
    pthread_t gt;
    store_stats st;

    int64_t sid = session_new(f->s, "octo/app", 5);
    assert_int_equal(pthread_create(&gt, NULL, write_gate_thread, ga), 0);
    pthread_mutex_lock(&g.lock);
    while (!g.entered)
        pthread_cond_wait(&g.cond, &g.lock);
    pthread_mutex_unlock(&g.lock);
    for (int i = 0; i < N; i++) {
        w[i] = (worker){f->s, sid, 0};
        assert_int_equal(pthread_create(&t[i], NULL, append_one, &w[i]), 0);
    }
    /* wait (with a deadline) until all of them are queued behind the gate */
    for (int tries = 0;; tries++) {
        store_stats_get(&st, f->s);
        if (st.queued == N)
            break;
        assert_true(tries < 10000);
        usleep(1000);
    }
    pthread_mutex_lock(&g.lock);
    g.open = 1;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    pthread_join(gt, NULL);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    store_stats_get(&st, f->s);
    assert_int_equal(st.max_batch, STORE_BATCH_MAX);
    assert_int_equal(st.queued, 0);
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, f->s, sid), 0);
    assert_int_equal(s->last_seq, N);
    store_session_free(s);
}

/* ---- asynchronous writes ---------------------------------------------- */

typedef struct async_probe {
    store *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int completed; /* completions seen */
    int visible;   /* of them, whose delivery a reader already saw */
    int failed;    /* completions with rc != 0 */
    char err[256]; /* the last failure's message */
} async_probe;

static async_probe probe;

static void probe_init(store *s)
{
    memset(&probe, 0, sizeof(probe));
    probe.s = s;
    pthread_mutex_init(&probe.lock, NULL);
    pthread_cond_init(&probe.cond, NULL);
}

static void probe_wait(int n)
{
    pthread_mutex_lock(&probe.lock);
    while (probe.completed < n)
        pthread_cond_wait(&probe.cond, &probe.lock);
    pthread_mutex_unlock(&probe.lock);
}

/* 1 when a read connection (committed data only) finds the delivery. */
static int delivery_visible(store *s, const char *id)
{
    store_delivery *d = NULL;
    size_t n = 0;
    int found = 0;
    if (store_delivery_list(&d, &n, s, NULL) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        found |= !strcmp(d[i].delivery_id, id);
    store_delivery_list_free(d, n);
    return found;
}

/* A completion: by now the write must be committed. */
static void async_done(void *arg, int rc)
{
    delivery_args *a = arg;
    int seen = probe.s && delivery_visible(probe.s, a->id);
    pthread_mutex_lock(&probe.lock);
    probe.completed++;
    probe.visible += seen;
    if (rc) {
        probe.failed++;
        snprintf(probe.err, sizeof(probe.err), "%s", farm_error_last());
    }
    pthread_cond_signal(&probe.cond);
    pthread_mutex_unlock(&probe.lock);
}

static void async_write_completes_after_its_commit(void **state)
{
    fixture *f = *state;
    delivery_args a[20];
    char ids[20][16];
    probe_init(f->s);
    for (int i = 0; i < 20; i++) {
        snprintf(ids[i], sizeof(ids[i]), "async-%d", i);
        a[i] = (delivery_args){"github", ids[i], NULL, 0};
        assert_int_equal(store_write_async(f->s, write_delivery, &a[i], async_done), 0);
    }
    probe_wait(20);
    assert_int_equal(probe.failed, 0);
    assert_int_equal(probe.visible, 20);
    for (int i = 0; i < 20; i++)
        assert_true(a[i].row > 0);

    /* a failing write: its code and message reach the completion, and only
     * its savepoint is rolled back */
    delivery_args bad = {"github", "async-lost", NULL, 0};
    assert_int_equal(store_write_async(f->s, write_then_fail, &bad, async_done), 0);
    probe_wait(21);
    assert_int_equal(probe.failed, 1);
    assert_string_equal(probe.err, "deliberate failure after writing");
    assert_false(delivery_visible(f->s, "async-lost"));

    /* nothing to call back is refused at once */
    assert_int_equal(store_write_async(f->s, write_delivery, &a[0], NULL), FARM_EINVALID);
    store_stats st;
    store_stats_get(&st, f->s);
    assert_int_equal(st.writes, 20);
    assert_int_equal(st.failed_writes, 1);
}

/* store_close() commits and completes the asynchronous writes queued before
 * it; reopening finds every one of them. */
static void close_completes_queued_async_writes(void **state)
{
    fixture *f = *state;
    enum { N = 300 };
    static delivery_args a[N];
    static char ids[N][16];
    probe_init(NULL); /* the store goes away: the completion only counts */
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "close-%d", i);
        a[i] = (delivery_args){"github", ids[i], NULL, 0};
        assert_int_equal(store_write_async(f->s, write_delivery, &a[i], async_done), 0);
    }
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(probe.completed, N);
    assert_int_equal(probe.failed, 0);

    assert_int_equal(test_store_open(&f->s, f->dir), 0);
    store_delivery_filter flt = STORE_DELIVERY_FILTER_INIT;
    flt.limit = STORE_LIST_MAX;
    store_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(store_delivery_list(&d, &n, f->s, &flt), 0);
    assert_int_equal(n, N);
    store_delivery_list_free(d, n);
}

/* Checkpoints run on the checkpointer thread, and the WAL stays bounded
 * while writes keep coming. */
static void checkpoints_keep_the_wal_bounded(void **state)
{
    if (test_store_is_pg())
        skip(); /* SQLite's own: its file, its writer thread */
    fixture *f = *state;
    int64_t sid = session_new(f->s, "octo/app", 5);
    enum { N = 60, BODY = 512 << 10 };
    big_append a = {sid, malloc(BODY + 16)};
    assert_non_null(a.body);
    a.body[0] = '"';
    memset(a.body + 1, 'x', BODY);
    strcpy(a.body + 1 + BODY, "\"");
    for (int i = 0; i < N; i++)
        assert_int_equal(store_write(f->s, write_big, &a), 0);
    free(a.body);

    /* N * 128 pages went through the log: the checkpointer must have run */
    int64_t deadline = clock_mono_ms() + 30000;
    uint64_t runs = 0;
    sqlite_store *q = f->s->impl;
    while (clock_mono_ms() < deadline) {
        pthread_mutex_lock(&q->clock);
        runs = q->checkpoints;
        pthread_mutex_unlock(&q->clock);
        if (runs > 0)
            break;
        usleep(10000); /* polling the counter, bounded by the deadline */
    }
    assert_true(runs > 0);
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/farm.db-wal", f->dir);
    assert_int_equal(stat(path, &st), 0);
    print_message("WAL %lld bytes after %d MiB written, %llu checkpoints\n", (long long)st.st_size,
                  (N * BODY) >> 20, (unsigned long long)runs);
    /* at most 4 * STORE_CHECKPOINT_PAGES pages and one transaction more */
    assert_true(st.st_size < (off_t)(4 * STORE_CHECKPOINT_PAGES + 200) * 4200);

    store_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&e, &n, f->s, sid, 0, STORE_LIST_MAX), 0);
    assert_int_equal(n, N);
    store_event_list_free(e, n);
}

/* farm store copy: a SQLite store's every table lands in an empty
 * PostgreSQL one, ids, binary stream records and all; the ids go on after
 * the copied ones; a second copy into the now full target is refused. */
static int64_t query_int(store *s, const char *sql)
{
    json_t *rows = NULL;
    assert_int_equal(store_query_json(&rows, s, sql, NULL), 0);
    json_t *row = json_array_get(rows, 0);
    const char *k;
    json_t *v;
    int64_t n = -1;
    json_object_foreach(row, k, v)
    {
        n = json_integer_value(v);
        break;
    }
    json_decref(rows);
    return n;
}

static void copy_to_postgres(void **state)
{
    if (!test_store_is_pg())
        skip(); /* needs the PostgreSQL of the pg variant */
    char *sdir = tmpdir_make(), *pdir = tmpdir_make();
    store *src = NULL, *dst = NULL;
    int64_t rows = 0, seq = 0;

    assert_int_equal(store_open(&src, sdir), 0); /* SQLite */
    int64_t a = session_new(src, "octo/app", 1), b = session_new(src, "octo/app", 2);
    for (int i = 0; i < 1203; i++) /* more than two pages of the log */
        assert_int_equal(store_event_append(&seq, src, a, "note", NULL, "{\"n\":1}"), 0);
    assert_int_equal(store_event_append(&seq, src, b, "note", "octocat", "{\"s\":\"caf\u00e9\"}"),
                     0);
    const char *arrange[] = {
        "INSERT INTO setting (key, value, updated_ms) VALUES ('scaling.max_agents', '3', 1)",
        "INSERT INTO outbox (kind, session_id, idem_key, payload, created_ms, updated_ms)"
        " VALUES ('comment', 1, 'k1', '{}', 1, 1)",
        "INSERT INTO stream (path, content_type, created_ms, access_ms, tail)"
        " VALUES ('raw', 'application/octet-stream', 1, 1, 3)",
        "INSERT INTO stream_data (stream_id, pos, end_pos, data) VALUES (1, 0, 3, X'00ff10')",
        "INSERT INTO local_item (repo, title, author, created_ms, updated_ms)"
        " VALUES ('local/x', 'an issue', 'me', 1, 1)",
        "INSERT INTO local_label (number, label) VALUES (1, 'Agent')",
        "INSERT INTO local_reaction (number, comment_id, reaction, user, created_ms)"
        " VALUES (1, 0, '+1', 'me', 1)",
        "INSERT INTO model_spend (day, repo, usd) VALUES (20000, 'octo/app', 0.25)",
        NULL};
    for (int i = 0; arrange[i]; i++)
        assert_int_equal(store_exec_json(NULL, src, arrange[i], NULL), 0);

    assert_int_equal(test_store_open(&dst, pdir), 0);
    assert_int_equal(store_copy(&rows, src, dst, NULL, NULL), 0);
    assert_true(rows > 1204);
    assert_int_equal(query_int(dst, "SELECT count(*) FROM event"), 1204 + 0);
    assert_int_equal(query_int(dst, "SELECT max(seq) FROM event WHERE session_id = 1"), 1203);
    assert_int_equal(query_int(dst, "SELECT count(*) FROM job"), 2);
    assert_int_equal(query_int(dst, "SELECT count(*) FROM local_reaction"), 1);
    assert_int_equal(query_int(dst, "SELECT count(*) FROM model_spend"), 1);
    json_t *r = NULL;
    assert_int_equal(
        store_query_json(&r, dst, "SELECT encode(data, 'hex') AS h FROM stream_data", NULL), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "h")), "00ff10");
    json_decref(r);
    store_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&ev, &n, dst, b, 0, 0), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].body, "{\"s\":\"caf\u00e9\"}");
    assert_string_equal(ev[0].actor, "octocat");
    store_event_list_free(ev, n);
    /* new rows take ids after the copied ones */
    assert_int_equal(store_write(dst, end_session, &a), 0);
    assert_true(session_new(dst, "octo/app", 1) > b);

    assert_int_equal(store_copy(&rows, src, dst, NULL, NULL), FARM_EEXISTS);
    assert_non_null(strstr(farm_error_last(), "not empty"));
    assert_int_equal(store_copy(&rows, dst, src, NULL, NULL), FARM_EINVALID);
    store_close(dst);
    store_close(src);
    tmpdir_remove(sdir);
    tmpdir_remove(pdir);
}

/* State the nodes share: a pace holds per_minute places across every
 * caller, a back-off keeps its latest end, a claim is won by one owner
 * until it runs out. */
static void nodes_share_pace_block_claim(void **state)
{
    fixture *f = *state;
    int64_t wait = -1, until = -1;
    int won = -1;

    for (int i = 0; i < 3; i++) {
        assert_int_equal(store_node_pace(&wait, f->s, "github http://x", 3, 5), 0);
        assert_int_equal(wait, 0);
    }
    assert_int_equal(store_node_pace(&wait, f->s, "github http://x", 3, 5), 0);
    assert_true(wait > 0 && wait <= 60000);
    assert_int_equal(store_node_pace(&wait, f->s, "github http://y", 3, 5), 0);
    assert_int_equal(wait, 0); /* another key, another budget */
    assert_int_equal(store_node_pace(&wait, f->s, "", 3, 5), FARM_EINVALID);
    assert_int_equal(store_node_pace(&wait, f->s, "k", 0, 5), FARM_EINVALID);

    assert_int_equal(store_node_block_get(&until, f->s, "github http://x 0"), 0);
    assert_int_equal(until, 0);
    assert_int_equal(store_node_block_set(f->s, "github http://x 0", 5000), 0);
    assert_int_equal(store_node_block_set(f->s, "github http://x 0", 3000), 0);
    assert_int_equal(store_node_block_get(&until, f->s, "github http://x 0"), 0);
    assert_int_equal(until, 5000);

    int64_t later = clock_wall_ms() + 60000;
    assert_int_equal(store_node_claim(&won, f->s, "digest:2026-12-06", "a:1", later), 0);
    assert_int_equal(won, 1);
    assert_int_equal(store_node_claim(&won, f->s, "digest:2026-12-06", "b:2", later), 0);
    assert_int_equal(won, 0);
    assert_int_equal(store_node_claim(&won, f->s, "digest:2026-12-06", "a:1", 1), 0);
    assert_int_equal(won, 1); /* its own claim, now ended */
    assert_int_equal(store_node_claim(&won, f->s, "digest:2026-12-06", "b:2", later), 0);
    assert_int_equal(won, 1); /* an ended claim goes to whoever asks */
    assert_int_equal(store_node_claim(&won, f->s, "digest:2026-12-06", "", later), FARM_EINVALID);
}

/* The nodes' heartbeats: a beat creates the row, the next updates it (its
 * start stays), a remove takes it away; a bad node is refused. */
/* ---- the areas written once (farm/store/sql_*.c), on either backend ------ */

static int write_areas(store_tx *tx, void *arg)
{
    int64_t id = *(int64_t *)arg, runs = 0;
    int rc;

    if ((rc = store_tx_setting_set(tx, "scaling.max_agents", "3")) ||
        (rc = store_tx_setting_set(tx, "scaling.max_agents", "5")) ||
        (rc = store_tx_setting_set(tx, "scaling.min", "1")) ||
        (rc = store_tx_setting_set(tx, "other.key", "x")) ||
        (rc = store_tx_setting_delete(tx, "scaling.min")))
        return rc;
    if ((rc = store_tx_session_state_set(tx, id, "review")) ||
        (rc = store_tx_session_branch_set(tx, id, "farm/1-fix")) ||
        (rc = store_tx_session_run_add(&runs, tx, id)) ||
        (rc = store_tx_session_run_add(&runs, tx, id)) ||
        (rc = store_tx_session_usage_add(tx, id, 1.5, 0.25)) ||
        (rc = store_tx_session_pr_draft_set(tx, id, 1, "the tests still fail")))
        return rc;
    assert_int_equal(runs, 2);
    if ((rc = store_tx_spend_add(tx, 20000, "acme/widget", 0.5)) ||
        (rc = store_tx_spend_add(tx, 20000, "acme/widget", 0.25)) ||
        (rc = store_tx_spend_add(tx, 20000, "acme/other", 1)) ||
        (rc = store_tx_model_stat_add(tx, "tokens", "model=m", 10)) ||
        (rc = store_tx_model_stat_add(tx, "tokens", "model=m", 5)))
        return rc;
    if ((rc = store_tx_event_append(NULL, tx, id, "step", "agent", "{\"n\":1}")) ||
        (rc = store_tx_event_append(NULL, tx, id, "output", "agent", "{}")) ||
        (rc = store_tx_event_append(NULL, tx, id, "step", "agent", "{\"n\":2}")))
        return rc;
    return 0;
}

static int read_areas(store_tx *tx, void *arg)
{
    int64_t id = *(int64_t *)arg, *ids = NULL, queued = 0, due = 0;
    store_session *sess = NULL;
    char *value = NULL;
    size_t n = 0;
    int running = -1, rc;

    assert_int_equal(store_tx_setting_get(&value, tx, "scaling.max_agents"), 0);
    assert_string_equal(value, "5");
    free(value);
    assert_int_equal(store_tx_setting_get(&value, tx, "scaling.min"), FARM_ENOTFOUND);

    assert_int_equal(store_tx_session_get(&sess, tx, id), 0);
    assert_string_equal(sess->state, "review");
    assert_string_equal(sess->branch, "farm/1-fix");
    assert_int_equal(sess->runs, 2);
    assert_true(sess->agent_seconds > 1.4 && sess->agent_seconds < 1.6);
    assert_true(sess->pr_draft);
    assert_string_equal(sess->pr_draft_reason, "the tests still fail");
    store_session_free(sess);
    assert_int_equal(store_tx_session_state_set(tx, id + 1000, "review"), FARM_ENOTFOUND);

    /* the session's run job (session_new) waits; a repository matches whatever its case */
    assert_int_equal(store_tx_review_jobs(&queued, &due, &running, tx, id), 0);
    assert_true(queued > 0);
    assert_int_equal(running, 0);
    assert_int_equal(store_tx_review_job_queued(&queued, tx, id, "run"), 0);
    assert_true(queued > 0);
    if ((rc = store_tx_review_open_prs(&ids, &n, tx, "github", "ACME/Widget")))
        return rc;
    assert_int_equal(n, 0); /* no pull request yet */
    free(ids);
    return 0;
}

static void areas_written_once_run_on_this_backend(void **state)
{
    fixture *f = *state;
    int64_t id = session_new(f->s, "acme/widget", 1);
    store_setting *settings = NULL;
    store_amount *amounts = NULL;
    store_event *ev = NULL;
    store_digest_totals totals;
    double repo_usd = 0, all_usd = 0;
    size_t n = 0;
    const char *kinds[] = {"step", NULL};

    assert_int_equal(store_write(f->s, write_areas, &id), 0);
    assert_int_equal(store_write(f->s, read_areas, &id), 0);

    assert_int_equal(store_setting_list(&settings, &n, f->s, "scaling."), 0);
    assert_int_equal(n, 1);
    assert_string_equal(settings[0].key, "scaling.max_agents");
    store_setting_list_free(settings, n);

    assert_int_equal(store_spend_get(&repo_usd, &all_usd, f->s, 20000, "acme/widget"), 0);
    assert_true(repo_usd > 0.74 && repo_usd < 0.76);
    assert_true(all_usd > 1.74 && all_usd < 1.76);
    assert_int_equal(store_spend_list(&amounts, &n, f->s, 20000), 0);
    assert_int_equal(n, 2);
    assert_string_equal(amounts[0].labels[0], "acme/other");
    store_amount_list_free(amounts, n);
    assert_int_equal(store_model_stat_list(&amounts, &n, f->s), 0);
    assert_int_equal(n, 1);
    assert_string_equal(amounts[0].labels[1], "model=m");
    assert_true(amounts[0].value > 14.9 && amounts[0].value < 15.1);
    store_amount_list_free(amounts, n);

    assert_int_equal(store_event_list_kinds(&ev, &n, f->s, id, kinds, 0, 0), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ev[1].body, "{\"n\":2}");
    store_event_list_free(ev, n);
    assert_int_equal(store_event_last_kind(&ev, f->s, id, kinds, 0), 0);
    assert_string_equal(ev->body, "{\"n\":2}");
    store_event_list_free(ev, 1);

    assert_int_equal(store_digest_events(&ev, &n, f->s, &id, 1, 4), 0);
    assert_int_equal(n, 2); /* the steps, newest first; not the output */
    assert_string_equal(ev[0].body, "{\"n\":2}");
    store_event_list_free(ev, n);
    assert_int_equal(store_digest_totals_get(&totals, f->s, 0), 0);
    assert_int_equal(totals.sessions, 1);
    assert_int_equal(totals.prs, 1); /* in review */
    assert_int_equal(totals.failed, 0);
    assert_int_equal(totals.runs, 2);
}

static void local_tracker_tables_on_this_backend(void **state)
{
    fixture *f = *state;
    local_backend b;
    local_item it = {0}, *got = NULL, *list = NULL;
    local_comment c = {0}, *cs = NULL;
    const char *add[] = {"Agent", "AGENT", "bug"}, *drop[] = {"agent"};
    int64_t number = 0, pr = 0, cid = 0;
    size_t n = 0;

    store_local_backend(&b, f->s);
    it.repo = "Local/Demo";
    it.title = "an issue";
    it.author = "me";
    assert_int_equal(b.item_insert(&number, b.ctx, &it), 0);
    assert_true(number > 0);
    it.is_pr = 1;
    it.title = "a fix";
    it.head_branch = "farm/1-fix";
    it.base_branch = "main";
    it.issue = number;
    assert_int_equal(b.item_insert(&pr, b.ctx, &it), 0);
    assert_true(pr > number);

    assert_int_equal(b.labels_change(b.ctx, number, add, 3, 1), 0);
    assert_int_equal(b.item_get(&got, b.ctx, number), 0);
    assert_int_equal(got->nlabels, 2); /* "AGENT" is "Agent" again */
    local_item_free(got);
    assert_int_equal(b.labels_change(b.ctx, number, drop, 1, 0), 0);
    assert_int_equal(b.item_get(&got, b.ctx, number), 0);
    assert_int_equal(got->nlabels, 1);
    assert_string_equal(got->labels[0], "bug");
    local_item_free(got);
    assert_int_equal(b.labels_change(b.ctx, 9999, add, 1, 1), FARM_ENOTFOUND);

    assert_int_equal(b.item_list(&list, &n, b.ctx, "local/demo", NULL, 10), 0);
    assert_int_equal(n, 2);
    local_item_list_free(list, n);
    assert_int_equal(b.pr_find(&got, b.ctx, "LOCAL/DEMO", "farm/1-fix"), 0);
    assert_int_equal(got->number, pr);
    local_item_free(got);
    assert_int_equal(b.prs_for_issue(&list, &n, b.ctx, number), 0);
    assert_int_equal(n, 1);
    local_item_list_free(list, n);

    c.number = number;
    c.author = "me";
    c.body = "first";
    assert_int_equal(b.comment_insert(&cid, b.ctx, &c), 0);
    assert_true(cid > 0);
    assert_int_equal(b.comment_update(b.ctx, cid, "edited"), 0);
    assert_int_equal(b.reaction_add(b.ctx, number, cid, "+1", "me"), 0);
    assert_int_equal(b.reaction_add(b.ctx, number, cid, "+1", "me"), 0);
    assert_int_equal(b.comment_list(&cs, &n, b.ctx, number, -1), 0);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].body, "edited");
    local_comment_list_free(cs, n);
    assert_int_equal(b.comment_delete(b.ctx, cid), 0);
    assert_int_equal(b.comment_get(&cs, b.ctx, cid), FARM_ENOTFOUND);
}

static void nodes_beat_and_leave(void **state)
{
    fixture *f = *state;
    store_node a = {.id = "host-a:1:aa",
                    .host = "host-a",
                    .role = "serve",
                    .pid = 1,
                    .slots = 4,
                    .running = 0,
                    .started_ms = 1000};
    store_node b = {.id = "host-b:2:bb",
                    .host = "host-b",
                    .role = "serve",
                    .pid = 2,
                    .slots = 2,
                    .running = 1,
                    .started_ms = 2000};
    store_node *v = NULL;
    size_t n = 0;

    assert_int_equal(store_node_list(&v, &n, f->s), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_node_beat(f->s, &a), 0);
    assert_int_equal(store_node_beat(f->s, &b), 0);
    a.running = 3;
    a.started_ms = 99; /* ignored on an update */
    assert_int_equal(store_node_beat(f->s, &a), 0);
    assert_int_equal(store_node_list(&v, &n, f->s), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].id, "host-a:1:aa"); /* the latest beat first */
    assert_int_equal(v[0].running, 3);
    assert_int_equal(v[0].started_ms, 1000);
    assert_int_equal(v[0].slots, 4);
    assert_string_equal(v[1].host, "host-b");
    assert_true(v[0].beat_ms >= v[1].beat_ms);
    store_node_list_free(v, n);

    assert_int_equal(store_node_remove(f->s, "host-a:1:aa"), 0);
    assert_int_equal(store_node_list(&v, &n, f->s), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, "host-b:2:bb");
    store_node_list_free(v, n);
    store_node bad = {.id = "", .host = "h", .role = "serve"};
    assert_int_equal(store_node_beat(f->s, &bad), FARM_EINVALID);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fresh_store_reaches_latest_schema, setup, teardown),
        cmocka_unit_test(old_schema_is_upgraded_keeping_data),
        cmocka_unit_test(sessions_gain_the_draft_columns),
        cmocka_unit_test_setup_teardown(holds_and_the_session_agent, setup, teardown),
        cmocka_unit_test(newer_schema_is_refused),
        cmocka_unit_test(missing_directory_is_an_error),
        cmocka_unit_test(backend_is_chosen_by_url),
        cmocka_unit_test(unknown_backend_is_refused),
        cmocka_unit_test(newer_pg_schema_is_refused),
        cmocka_unit_test(unreachable_postgres_is_an_error),
        cmocka_unit_test(store_url_comes_from_the_config),
        cmocka_unit_test(copy_to_postgres),
        cmocka_unit_test_setup_teardown(nodes_beat_and_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(areas_written_once_run_on_this_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(local_tracker_tables_on_this_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(nodes_share_pace_block_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(delivery_id_is_unique_per_tracker, setup, teardown),
        cmocka_unit_test_setup_teardown(delivery_list_filters_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(one_active_session_per_issue, setup, teardown),
        cmocka_unit_test_setup_teardown(event_seq_is_dense_per_session, setup, teardown),
        cmocka_unit_test_setup_teardown(session_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_write_rolls_back_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(nested_write_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(event_append_json_stores_the_object, setup, teardown),
        cmocka_unit_test_setup_teardown(full_disk_fails_the_write_not_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_writes_share_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(batches_are_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(async_write_completes_after_its_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(close_completes_queued_async_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(checkpoints_keep_the_wal_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
