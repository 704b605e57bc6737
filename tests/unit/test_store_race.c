/*
 * test_store_race.c - the four invariants that must hold when several
 * processes share one store, tried with two store handles on the same
 * database (two nodes) and threads on each, all let go at once:
 *   - a job is leased once; max_total, max_per_repo and one live lease per
 *     session hold across both handles;
 *   - an outbox entry is leased once;
 *   - an issue gets one active session however many writers find-then-create
 *     it at the same moment;
 *   - (the stream appends are raced in test_stream's concurrent_appends).
 * On SQLite the two handles are two connections to one file (its lock
 * serialises them); ctest runs the program again on PostgreSQL
 * (unit.test_store_race.pg), where the locks and indexes of pg_*.c must do it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store.h"
#include "farm/store/store_job.h"
#include "farm/store/store_outbox.h"
#include "support/store_backend_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODES   2
#define THREADS 6 /* per node */

typedef struct fixture {
    char dir[64];
    store *node[NODES];
    pthread_barrier_t go;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/farm-test-race-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int i = 0; i < NODES; i++)
        assert_int_equal(test_store_open(&f->node[i], f->dir), 0);
    pthread_barrier_init(&f->go, NULL, NODES * THREADS);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    for (int i = 0; i < NODES; i++)
        store_close(f->node[i]);
    pthread_barrier_destroy(&f->go);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- arranging ----------------------------------------------------------- */

typedef struct new_session {
    const char *repo;
    int64_t number;
    int jobs; /* "run" jobs to queue for it */
    int64_t id;
} new_session;

static int write_new_session(store_tx *tx, void *arg)
{
    new_session *a = arg;
    store_session s = {0};
    int64_t job;
    int rc;
    s.tracker = "github";
    s.repo = (char *)a->repo;
    s.number = a->number;
    if ((rc = store_tx_session_insert(&a->id, tx, &s)))
        return rc;
    for (int i = 0; i < a->jobs && !rc; i++)
        rc = store_tx_job_insert(&job, tx, "run", a->id, 0);
    return rc;
}

static int64_t session_with_jobs(store *s, const char *repo, int64_t number, int jobs)
{
    new_session a = {repo, number, jobs, 0};
    assert_int_equal(store_write(s, write_new_session, &a), 0);
    return a.id;
}

/* ---- the racers ---------------------------------------------------------- */

typedef struct racer {
    fixture *f;
    store *s;
    int index;
    store_lease_req req;
    char owner[32];
    int64_t got[64]; /* what this racer took */
    int ngot;
    int errors;
    int64_t session; /* the session id the find-or-create race ended with */
} racer;

/* Lease jobs until nothing more can be taken, keeping every lease. */
static void *lease_jobs(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(&r->f->go);
    for (;;) {
        store_job *j = NULL;
        if (store_job_lease(&j, r->s, &r->req)) {
            r->errors++;
            break;
        }
        if (!j)
            break;
        if (r->ngot < 64)
            r->got[r->ngot++] = j->id;
        store_job_free(j);
    }
    return NULL;
}

static void *lease_outbox(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(&r->f->go);
    for (;;) {
        outbox_entry *e = NULL;
        int rc = store_outbox_lease(&e, r->s, r->owner, clock_wall_ms(), 60000);
        if (rc == FARM_ENOTFOUND)
            break;
        if (rc) {
            r->errors++;
            break;
        }
        if (r->ngot < 64)
            r->got[r->ngot++] = e->id;
        outbox_entry_free(e);
    }
    return NULL;
}

/* What intake does: find the issue's active session, create it if none. */
static int write_find_or_create(store_tx *tx, void *arg)
{
    racer *r = arg;
    store_session *found = NULL;
    int rc = store_tx_session_find(&found, tx, "github", "octo/race", 77, 0, 1);
    if (rc == 0) {
        r->session = found->id;
        store_session_free(found);
        return 0;
    }
    if (rc != FARM_ENOTFOUND)
        return rc;
    store_session s = {0};
    s.tracker = "github";
    s.repo = "octo/race";
    s.number = 77;
    s.title = "raced";
    return store_tx_session_insert(&r->session, tx, &s);
}

static void *find_or_create(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(&r->f->go);
    if (store_write(r->s, write_find_or_create, r))
        r->errors++;
    return NULL;
}

/* Run fn on THREADS threads per node, all let go together. */
static void race(fixture *f, racer *rs, void *(*fn)(void *), const store_lease_req *req)
{
    pthread_t t[NODES * THREADS];
    for (int i = 0; i < NODES * THREADS; i++) {
        rs[i] = (racer){.f = f, .s = f->node[i % NODES], .index = i};
        snprintf(rs[i].owner, sizeof(rs[i].owner), "node%d:t%d", i % NODES, i);
        if (req) {
            rs[i].req = *req;
            rs[i].req.owner = rs[i].owner;
        }
        assert_int_equal(pthread_create(&t[i], NULL, fn, &rs[i]), 0);
    }
    for (int i = 0; i < NODES * THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NODES * THREADS; i++)
        assert_int_equal(rs[i].errors, 0);
}

static int taken(const racer *rs, int64_t id)
{
    int n = 0;
    for (int i = 0; i < NODES * THREADS; i++)
        for (int k = 0; k < rs[i].ngot; k++)
            n += rs[i].got[k] == id;
    return n;
}

static int total_taken(const racer *rs)
{
    int n = 0;
    for (int i = 0; i < NODES * THREADS; i++)
        n += rs[i].ngot;
    return n;
}

/* ---- the tests ----------------------------------------------------------- */

static void one_job_is_leased_once(void **state)
{
    fixture *f = *state;
    racer rs[NODES * THREADS];
    store_lease_req req = {NULL, 60000, 0, 0};
    session_with_jobs(f->node[0], "octo/app", 1, 1);
    race(f, rs, lease_jobs, &req);
    assert_int_equal(total_taken(rs), 1);
}

static void max_total_holds_across_nodes(void **state)
{
    fixture *f = *state;
    racer rs[NODES * THREADS];
    store_lease_req req = {NULL, 60000, 3, 0};
    int64_t ids[10];
    for (int i = 0; i < 10; i++)
        ids[i] = session_with_jobs(f->node[i % NODES], i < 5 ? "octo/a" : "octo/b", i + 1, 1);
    (void)ids;
    race(f, rs, lease_jobs, &req);
    assert_int_equal(total_taken(rs), 3);
    int64_t queued = 0, leased = 0;
    assert_int_equal(store_job_count(&queued, &leased, f->node[1]), 0);
    assert_int_equal(leased, 3);
    assert_int_equal(queued, 7);
}

static void max_per_repo_holds_across_nodes(void **state)
{
    fixture *f = *state;
    racer rs[NODES * THREADS];
    store_lease_req req = {NULL, 60000, 0, 2};
    for (int i = 0; i < 6; i++)
        session_with_jobs(f->node[0], "octo/one", i + 1, 1);
    for (int i = 0; i < 6; i++)
        session_with_jobs(f->node[1], "octo/two", i + 1, 1);
    race(f, rs, lease_jobs, &req);
    assert_int_equal(total_taken(rs), 4); /* two per repository */
}

static void one_live_lease_per_session(void **state)
{
    fixture *f = *state;
    racer rs[NODES * THREADS];
    store_lease_req req = {NULL, 60000, 0, 0};
    int64_t a = session_with_jobs(f->node[0], "octo/app", 1, 3);
    int64_t b = session_with_jobs(f->node[1], "octo/app", 2, 3);
    race(f, rs, lease_jobs, &req);
    assert_int_equal(total_taken(rs), 2); /* one job of each session */
    for (int i = 0; i < NODES * THREADS; i++) {
        for (int k = 0; k < rs[i].ngot; k++) {
            store_job *j = NULL;
            assert_int_equal(store_job_get(&j, f->node[0], rs[i].got[k]), 0);
            assert_true(j->session_id == a || j->session_id == b);
            store_job_free(j);
        }
    }
}

typedef struct outbox_args {
    int64_t session;
    int n;
} outbox_args;

static int write_outbox(store_tx *tx, void *arg)
{
    outbox_args *a = arg;
    int rc = 0;
    for (int i = 0; i < a->n && !rc; i++) {
        char key[64];
        snprintf(key, sizeof(key), "race:%lld:%d", (long long)a->session, i);
        rc = store_tx_outbox_insert(NULL, tx, a->session, "comment", key, "{\"body\":\"hi\"}");
    }
    return rc;
}

static void outbox_entry_is_leased_once(void **state)
{
    fixture *f = *state;
    racer rs[NODES * THREADS];
    int64_t ids[4];
    /* four sessions with one entry each: four leases, each entry once */
    for (int i = 0; i < 4; i++) {
        outbox_args a = {session_with_jobs(f->node[0], "octo/app", i + 1, 0), 1};
        assert_int_equal(store_write(f->node[0], write_outbox, &a), 0);
        outbox_entry *e = NULL;
        size_t n = 0;
        assert_int_equal(store_outbox_list(&e, &n, f->node[0], a.session), 0);
        assert_int_equal(n, 1);
        ids[i] = e[0].id;
        outbox_entry_list_free(e, n);
    }
    race(f, rs, lease_outbox, NULL);
    assert_int_equal(total_taken(rs), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(taken(rs, ids[i]), 1);
}

static void one_active_session_per_issue_across_nodes(void **state)
{
    fixture *f = *state;
    racer rs[NODES * THREADS];
    race(f, rs, find_or_create, NULL);
    for (int i = 1; i < NODES * THREADS; i++)
        assert_int_equal(rs[i].session, rs[0].session);
    assert_true(rs[0].session > 0);
    store_session *v = NULL;
    size_t n = 0;
    store_session_filter flt = STORE_SESSION_FILTER_INIT;
    flt.repo = "octo/race";
    assert_int_equal(store_session_list(&v, &n, f->node[1], &flt), 0);
    assert_int_equal(n, 1);
    store_session_list_free(v, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(one_job_is_leased_once, setup, teardown),
        cmocka_unit_test_setup_teardown(max_total_holds_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(max_per_repo_holds_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(one_live_lease_per_session, setup, teardown),
        cmocka_unit_test_setup_teardown(outbox_entry_is_leased_once, setup, teardown),
        cmocka_unit_test_setup_teardown(one_active_session_per_issue_across_nodes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
