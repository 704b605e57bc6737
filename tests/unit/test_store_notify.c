/*
 * test_store_notify.c - store_notify.h with two store handles on one
 * database (two nodes): what node 1 commits reaches node 0's subscribers
 * (a queued job, an event with "<session>:<seq>", a stream change), a
 * subscriber that unsubscribed is called no more, and a LISTEN connection
 * that is killed is reported (STORE_NOTIFY_LOST), reconnected and followed
 * by one STORE_NOTIFY_RESYNC, after which commits are delivered again. On
 * SQLite (one process owns the file) subscribing works and nothing is
 * delivered: the callers' in-process kicks do that.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store.h"
#include "farm/store/store_inspect.h"
#include "farm/store/store_notify.h"
#include "support/store_backend_test.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 10000

typedef struct seen {
    pthread_mutex_t lock;
    int count[64]; /* by kind bit */
    char last_session[64];
    char last_stream[64];
} seen;

typedef struct fixture {
    char dir[64];
    store *node[2];
    seen got;
} fixture;

static int bit(store_notify_kind k)
{
    for (int i = 0; i < 6; i++)
        if ((unsigned)k == 1u << i)
            return i;
    return 63;
}

static void on_notify(void *arg, store_notify_kind kind, const char *payload)
{
    seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->count[bit(kind)]++;
    if (kind == STORE_NOTIFY_SESSION)
        snprintf(s->last_session, sizeof(s->last_session), "%s", payload);
    if (kind == STORE_NOTIFY_STREAM)
        snprintf(s->last_stream, sizeof(s->last_stream), "%s", payload);
    pthread_mutex_unlock(&s->lock);
}

static int count(fixture *f, store_notify_kind kind)
{
    pthread_mutex_lock(&f->got.lock);
    int n = f->got.count[bit(kind)];
    pthread_mutex_unlock(&f->got.lock);
    return n;
}

/* Wait (polling, with a deadline) until kind was seen more than before. */
static int wait_more(fixture *f, store_notify_kind kind, int before)
{
    int64_t end = clock_mono_ms() + WAIT_MS;
    while (count(f, kind) <= before) {
        if (clock_mono_ms() > end)
            return 0;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/farm-test-notify-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (int i = 0; i < 2; i++)
        assert_int_equal(test_store_open(&f->node[i], f->dir), 0);
    pthread_mutex_init(&f->got.lock, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    for (int i = 0; i < 2; i++)
        store_close(f->node[i]);
    pthread_mutex_destroy(&f->got.lock);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

typedef struct new_session {
    int64_t id, job;
} new_session;

static int write_session(store_tx *tx, void *arg)
{
    new_session *a = arg;
    store_session s = {0};
    s.tracker = "github";
    s.repo = "octo/app";
    s.number = 7;
    int rc = store_tx_session_insert(&a->id, tx, &s);
    return rc ? rc : store_tx_job_insert(&a->job, tx, "run", a->id, 0);
}

/* The schema's channel suffix as pg_notify.c makes it, to find node 0's
 * LISTEN connection among every test's in pg_stat_activity. */
static void channel_suffix(char *out, size_t n, store *s)
{
    json_t *rows = NULL;
    assert_int_equal(store_query_json(&rows, s, "SELECT current_schema() AS s", NULL), 0);
    const char *schema = json_string_value(json_object_get(json_array_get(rows, 0), "s"));
    assert_non_null(schema);
    uint64_t h = 14695981039346656037ull;
    for (const char *p = schema; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(out, n, "_%016llx", (unsigned long long)h);
    json_decref(rows);
}

static void sqlite_delivers_nothing(fixture *f)
{
    store_notify_sub *sub = NULL;
    assert_int_equal(store_notify_remote(f->node[0]), 0);
    assert_int_equal(store_notify_subscribe(&sub, f->node[0], STORE_NOTIFY_ALL, on_notify, &f->got),
                     0);
    new_session a = {0};
    assert_int_equal(store_write(f->node[1], write_session, &a), 0);
    store_notify_stats st;
    store_notify_stats_get(&st, f->node[0]);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.listening, 0);
    store_notify_unsubscribe(f->node[0], sub);
}

static void other_nodes_commits_arrive(void **state)
{
    fixture *f = *state;
    if (!test_store_is_pg()) {
        sqlite_delivers_nothing(f);
        return;
    }
    store_notify_sub *sub = NULL;
    assert_int_equal(store_notify_remote(f->node[0]), 1);
    assert_int_equal(store_notify_subscribe(&sub, f->node[0], STORE_NOTIFY_ALL, on_notify, &f->got),
                     0);
    /* the first connection counts as a resync: listening from here on */
    assert_true(wait_more(f, STORE_NOTIFY_RESYNC, 0));

    int jobs = count(f, STORE_NOTIFY_JOBS), sessions = count(f, STORE_NOTIFY_SESSION);
    new_session a = {0};
    assert_int_equal(store_write(f->node[1], write_session, &a), 0);
    assert_true(wait_more(f, STORE_NOTIFY_JOBS, jobs));

    int64_t seq = 0;
    assert_int_equal(store_event_append(&seq, f->node[1], a.id, "note", NULL, "{}"), 0);
    assert_true(wait_more(f, STORE_NOTIFY_SESSION, sessions));
    char want[64];
    snprintf(want, sizeof(want), "%lld:%lld", (long long)a.id, (long long)seq);
    pthread_mutex_lock(&f->got.lock);
    assert_string_equal(f->got.last_session, want);
    pthread_mutex_unlock(&f->got.lock);

    /* the counts say what arrived, and that the listener is up */
    store_notify_stats st;
    store_notify_stats_get(&st, f->node[0]);
    assert_true(st.listening);
    assert_true(st.delivered >= 2);

    /* kill node 0's LISTEN connection: LOST, a reconnect, one RESYNC */
    char suffix[32], sql[256];
    channel_suffix(suffix, sizeof(suffix), f->node[1]);
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity"
             " WHERE query LIKE 'LISTEN %%%s\"'",
             suffix);
    int resyncs = count(f, STORE_NOTIFY_RESYNC), lost = count(f, STORE_NOTIFY_LOST);
    json_t *rows = NULL;
    assert_int_equal(store_query_json(&rows, f->node[1], sql, NULL), 0);
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    assert_true(wait_more(f, STORE_NOTIFY_LOST, lost));
    assert_true(wait_more(f, STORE_NOTIFY_RESYNC, resyncs));
    store_notify_stats_get(&st, f->node[0]);
    assert_true(st.connects >= 2);

    sessions = count(f, STORE_NOTIFY_SESSION);
    assert_int_equal(store_event_append(&seq, f->node[1], a.id, "note", NULL, "{}"), 0);
    assert_true(wait_more(f, STORE_NOTIFY_SESSION, sessions));

    /* unsubscribed: called no more (the next commit is awaited through a
     * second subscriber, which sees it after the first would have) */
    store_notify_unsubscribe(f->node[0], sub);
    int after = count(f, STORE_NOTIFY_SESSION);
    seen other = {0};
    pthread_mutex_init(&other.lock, NULL);
    store_notify_sub *sub2 = NULL;
    assert_int_equal(
        store_notify_subscribe(&sub2, f->node[0], STORE_NOTIFY_SESSION, on_notify, &other), 0);
    assert_int_equal(store_event_append(&seq, f->node[1], a.id, "note", NULL, "{}"), 0);
    int64_t end = clock_mono_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&other.lock);
        int n = other.count[bit(STORE_NOTIFY_SESSION)];
        pthread_mutex_unlock(&other.lock);
        if (n > 0)
            break;
        assert_true(clock_mono_ms() < end);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(count(f, STORE_NOTIFY_SESSION), after);
    store_notify_unsubscribe(f->node[0], sub2);
    pthread_mutex_destroy(&other.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(other_nodes_commits_arrive, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
