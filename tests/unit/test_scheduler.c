/*
 * test_scheduler.c - the scheduler with a test double for pipeline_run(): a
 * real consumer that records how many jobs run at once (overall, per
 * repository, per session) and holds each job until the test opens its gate
 * or the run is cancelled. Limits over 20 jobs, per repository, one job per
 * session, expired leases taken over and lost leases stopping a run, two
 * schedulers on one data directory, live scaling, memory admission, cancel,
 * retries and failure, idle slots exiting, warm slots, shutdown.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "farm/config/config.h"
#include "support/store_backend_test.h"
#include "farm/farm.h"
#include "farm/sched/scaling.h"
#include "farm/sched/scheduler.h"
#include "farm/store/store.h"
#include "farm/store/store_inspect.h"
#include "farm/store/store_job.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 64

/* ---- the consumer ------------------------------------------------------------ */

typedef struct consumer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int gate_open; /* jobs return as soon as they start */
    int hold_ms;   /* with the gate open: how long each job works */
    int running, max_running;
    int per_repo[2], max_per_repo[2];
    int per_session[MAX_SESSIONS + 1];
    int session_overlap; /* a session had two jobs at once */
    int runs;            /* jobs started */
    int cancels_seen;    /* runs that returned because ctl->cancel was set */
    int warm_seen;       /* runs handed a warm slot of their repository */
    int warm_wrong;      /* runs handed a warm slot of another repository */
    int eagain_session;  /* jobs of this session return FARM_EAGAIN */
    int64_t mem_bytes;   /* what the memory probe answers */
    int mem_calls;
    int warm_prepared, warm_freed;
} consumer;

static consumer C = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void consumer_reset(void)
{
    pthread_mutex_lock(&C.lock);
    C.gate_open = 0;
    C.hold_ms = 0;
    C.running = C.max_running = 0;
    memset(C.per_repo, 0, sizeof(C.per_repo));
    memset(C.max_per_repo, 0, sizeof(C.max_per_repo));
    memset(C.per_session, 0, sizeof(C.per_session));
    C.session_overlap = C.runs = C.cancels_seen = C.warm_seen = C.warm_wrong = 0;
    C.eagain_session = 0;
    C.mem_bytes = -1;
    C.mem_calls = 0;
    C.warm_prepared = C.warm_freed = 0;
    pthread_mutex_unlock(&C.lock);
}

static void gate_open(void)
{
    pthread_mutex_lock(&C.lock);
    C.gate_open = 1;
    pthread_cond_broadcast(&C.cond);
    pthread_mutex_unlock(&C.lock);
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += (long)ms * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

/* Sessions are numbered so that odd issue numbers are repository 0 and even
 * ones repository 1 (see session_make). */
static int consume(farm *f, const store_job *job, pipeline_ctl *ctl)
{
    store_session *s = NULL;
    int repo = 0, rc = 0;
    (void)f;
    assert_int_equal(store_session_get(&s, farm_store(f), job->session_id), 0);
    repo = strcmp(s->repo, "octo/a") == 0 ? 0 : 1;
    store_session_free(s);
    if (!strcmp(job->kind, "cancel"))
        return 0;

    pthread_mutex_lock(&C.lock);
    C.runs++;
    if (++C.running > C.max_running)
        C.max_running = C.running;
    if (++C.per_repo[repo] > C.max_per_repo[repo])
        C.max_per_repo[repo] = C.per_repo[repo];
    if (job->session_id <= MAX_SESSIONS && ++C.per_session[job->session_id] > 1)
        C.session_overlap = 1;
    if (ctl->warm) {
        if (!strcmp(ctl->warm->repo, repo == 0 ? "octo/a" : "octo/b")) {
            C.warm_seen++;
            /* adopt it, as the pipeline would */
            free(ctl->warm->repo);
            free(ctl->warm);
            ctl->warm = NULL;
            C.warm_freed++;
        } else {
            C.warm_wrong++;
        }
    }
    int64_t until = clock_mono_ms() + C.hold_ms;
    for (;;) {
        if (ctl->cancel) {
            C.cancels_seen++;
            rc = FARM_ECANCELLED;
            break;
        }
        if (C.gate_open && clock_mono_ms() >= until)
            break;
        /* the scheduler sets ctl->cancel without signalling us: look again soon */
        struct timespec ts;
        deadline_in(&ts, 2);
        pthread_cond_timedwait(&C.cond, &C.lock, &ts);
    }
    if (!rc && C.eagain_session == job->session_id) {
        farm_error_set("the double's transient failure");
        rc = FARM_EAGAIN;
    }
    C.running--;
    C.per_repo[repo]--;
    if (job->session_id <= MAX_SESSIONS)
        C.per_session[job->session_id]--;
    pthread_mutex_unlock(&C.lock);
    return rc;
}

static int64_t mem_probe(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&C.lock);
    C.mem_calls++;
    int64_t v = C.mem_bytes;
    pthread_mutex_unlock(&C.lock);
    return v;
}

static int warm_prepare(pipeline_warm **out, farm *f, const char *repo)
{
    (void)f;
    pipeline_warm *w = calloc(1, sizeof(*w));
    w->repo = strdup(repo);
    w->prepared_ms = clock_wall_ms();
    pthread_mutex_lock(&C.lock);
    C.warm_prepared++;
    pthread_mutex_unlock(&C.lock);
    *out = w;
    return 0;
}

static void warm_free(pipeline_warm *w)
{
    if (!w)
        return;
    free(w->repo);
    free(w);
    pthread_mutex_lock(&C.lock);
    C.warm_freed++;
    pthread_mutex_unlock(&C.lock);
}

static int consumer_get(const int *field)
{
    pthread_mutex_lock(&C.lock);
    int v = *field;
    pthread_mutex_unlock(&C.lock);
    return v;
}

/* ---- fixture ------------------------------------------------------------------ */

typedef struct fixture {
    char *dir;
    char cfg_path[4096];
    farm *f;
    store *s;
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static farm *farm_make(const char *path)
{
    config *c = NULL;
    char *errors = NULL;
    farm *f = NULL;
    if (config_load(&c, path, &errors)) {
        fprintf(stderr, "config: %s\n", errors);
        free(errors);
        return NULL;
    }
    if (farm_open(&f, c)) {
        fprintf(stderr, "farm_open: %s\n", farm_error_last());
        return NULL;
    }
    return f;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (asprintf(&fx->dir, "%s/farm-test-sched-XXXXXX", base) < 0 || !mkdtemp(fx->dir))
        return -1;
    snprintf(fx->cfg_path, sizeof(fx->cfg_path), "%s/farm.json", fx->dir);
    FILE *fp = fopen(fx->cfg_path, "w");
    fprintf(fp,
            "{ %s \"data_dir\": \"%s/data\","
            "  \"scaling\": { \"max_agents\": 3, \"max_per_repo\": 3, \"min_warm\": 0,"
            "                 \"idle_timeout_s\": 60 },"
            "  \"github\": { \"bot_login\": \"farm-bot\" },"
            "  \"sandbox\": { \"memory_mb\": 1024 },"
            "  \"repos\": ["
            "    { \"name\": \"octo/a\", \"tracker\": \"github\", \"clone_url\": \"x\" },"
            "    { \"name\": \"octo/b\", \"tracker\": \"github\", \"clone_url\": \"x\" } ] }",
            test_store_config(fx->dir), fx->dir);
    fclose(fp);
    if (!(fx->f = farm_make(fx->cfg_path)))
        return -1;
    fx->s = farm_store(fx->f);
    consumer_reset();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    gate_open();
    farm_close(fx->f); /* stops the scheduler */
    nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx->dir);
    free(fx);
    return 0;
}

static scheduler_options opts_test(void)
{
    scheduler_options o = SCHEDULER_OPTIONS_INIT;
    o.run = consume;
    o.mem_available = mem_probe;
    o.warm_prepare = warm_prepare;
    o.warm_free = warm_free;
    o.poll_ms = 50;
    o.retry_base_ms = 10;
    o.retry_max_ms = 40;
    return o;
}

typedef struct make_arg {
    int64_t number;
    const char *kind;
    int njobs;
    int64_t session, job;
} make_arg;

static int make_fn(store_tx *tx, void *arg)
{
    make_arg *a = arg;
    store_session s = {0};
    s.tracker = "github";
    s.repo = a->number % 2 ? "octo/a" : "octo/b";
    s.number = a->number;
    s.title = "work";
    int rc = store_tx_session_insert(&a->session, tx, &s);
    for (int i = 0; !rc && i < a->njobs; i++)
        rc = store_tx_job_insert(&a->job, tx, i == 0 ? a->kind : "revise", a->session, 0);
    return rc;
}

/* A session for issue `number` (odd: octo/a, even: octo/b) with njobs jobs;
 * returns the last job's id, *session its session. */
static int64_t session_make(fixture *fx, int64_t number, int njobs, int64_t *session)
{
    make_arg a = {number, "run", njobs, 0, 0};
    assert_int_equal(store_write(fx->s, make_fn, &a), 0);
    if (session)
        *session = a.session;
    return a.job;
}

static char *job_state(store *s, int64_t id)
{
    store_job *j = NULL;
    static __thread char state[32];
    assert_int_equal(store_job_get(&j, s, id), 0);
    snprintf(state, sizeof(state), "%s", j->state);
    store_job_free(j);
    return state;
}

static int64_t jobs_in(store *s, const char *state)
{
    store_count *v = NULL;
    size_t n = 0;
    int64_t count = 0;
    assert_int_equal(store_job_count_by_state(&v, &n, s), 0);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].labels[0], state))
            count = v[i].n;
    store_count_list_free(v, n);
    return count;
}

/* Poll for a condition with a deadline (the scheduler runs on its own
 * threads; nothing signals the test). */
#define WAIT_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        int64_t end_ = clock_mono_ms() + (ms);                                                     \
        while (!(cond)) {                                                                          \
            if (clock_mono_ms() > end_)                                                            \
                fail_msg("timed out waiting for %s", #cond);                                       \
            struct timespec ts_ = {0, 2000000};                                                    \
            nanosleep(&ts_, NULL);                                                                 \
        }                                                                                          \
    } while (0)

/* ---- tests ------------------------------------------------------------------- */

static void test_max_agents_over_20_jobs(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    for (int i = 1; i <= 20; i++)
        session_make(fx, i, 1, NULL);
    C.hold_ms = 15;
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 3, 10000); /* the capacity is used... */
    WAIT_UNTIL(jobs_in(fx->s, "leased") == 3, 10000);
    assert_int_equal(jobs_in(fx->s, "queued"), 17); /* ...and not more */
    gate_open();
    WAIT_UNTIL(jobs_in(fx->s, "done") == 20, 30000);
    assert_int_equal(consumer_get(&C.runs), 20);
    assert_true(consumer_get(&C.max_running) <= 3);
    assert_int_equal(consumer_get(&C.max_running), 3); /* and the capacity was used */
    assert_int_equal(jobs_in(fx->s, "queued") + jobs_in(fx->s, "leased"), 0);
}

static void test_max_per_repo(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    scaling_change c = {{0}, {0}};
    c.set[SCALING_MAX_AGENTS] = 1, c.value[SCALING_MAX_AGENTS] = 4;
    c.set[SCALING_MAX_PER_REPO] = 1, c.value[SCALING_MAX_PER_REPO] = 1;
    assert_int_equal(scaling_update(NULL, farm_config(fx->f), fx->s, &c, NULL), 0);
    for (int i = 1; i <= 10; i++)
        session_make(fx, i, 1, NULL);
    C.hold_ms = 10;
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 2, 10000); /* one per repository */
    gate_open();
    WAIT_UNTIL(jobs_in(fx->s, "done") == 10, 30000);
    assert_int_equal(consumer_get(&C.max_per_repo[0]), 1);
    assert_int_equal(consumer_get(&C.max_per_repo[1]), 1);
    assert_int_equal(consumer_get(&C.max_running), 2);
}

static void test_one_job_per_session(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    int64_t s1, s2;
    session_make(fx, 1, 4, &s1);
    session_make(fx, 3, 4, &s2);
    C.hold_ms = 10;
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 2, 10000); /* one per session */
    assert_int_equal(jobs_in(fx->s, "leased"), 2);
    gate_open();
    WAIT_UNTIL(jobs_in(fx->s, "done") == 8, 30000);
    assert_int_equal(consumer_get(&C.session_overlap), 0);
    assert_int_equal(consumer_get(&C.max_running), 2); /* two sessions side by side */
}

/* Another process takes job's lease. */
static int steal(store *s, int64_t job)
{
    json_t *params = json_pack("[I]", (json_int_t)job);
    int rc =
        store_exec_json(NULL, s, "UPDATE job SET lease_owner = 'other:1:x' WHERE id = ?", params);
    json_decref(params);
    return rc;
}

static void test_expired_lease_taken_over(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    int64_t job = session_make(fx, 1, 1, NULL);
    store_lease_req dead = {"dead:1:x", 300, 0, 0};
    store_job *j = NULL;

    /* a process leased it and died */
    assert_int_equal(store_job_lease(&j, fx->s, &dead), 0);
    assert_non_null(j);
    assert_int_equal(j->id, job);
    store_job_free(j);
    /* a live lease is not taken */
    assert_int_equal(store_job_lease(&j, fx->s, &dead), 0);
    assert_null(j);

    gate_open();
    o.owner = "second:2:y";
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(strcmp(job_state(fx->s, job), "done") == 0, 10000);
    assert_int_equal(store_job_get(&j, fx->s, job), 0);
    assert_string_equal(j->lease_owner, "second:2:y");
    assert_int_equal(j->attempts, 2);
    store_job_free(j);
}

static void test_lost_lease_cancels_run(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    o.lease_ms = 3000; /* long enough that a slow heartbeat never lets it expire */
    o.heartbeat_ms = 30;
    int64_t job = session_make(fx, 1, 1, NULL);
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 1, 10000);
    assert_int_equal(steal(fx->s, job), 0);
    WAIT_UNTIL(consumer_get(&C.cancels_seen) == 1, 10000);
    WAIT_UNTIL(consumer_get(&C.running) == 0, 10000);
    scheduler_stats st;
    scheduler_stats_get(&st, fx->f);
    assert_int_equal(st.leases_lost, 1);
    /* the new owner's job is untouched */
    store_job *j = NULL;
    assert_int_equal(store_job_get(&j, fx->s, job), 0);
    assert_string_equal(j->state, "leased");
    assert_string_equal(j->lease_owner, "other:1:x");
    store_job_free(j);
}

static void test_two_schedulers_one_store(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    farm *g = farm_make(fx->cfg_path); /* a second farm on the same data directory */
    assert_non_null(g);
    for (int i = 1; i <= 20; i++)
        session_make(fx, i, 1, NULL);
    C.hold_ms = 15;
    gate_open();
    o.owner = "one:1:a";
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    o.owner = "two:2:b";
    assert_int_equal(scheduler_start(g, &o), 0);
    WAIT_UNTIL(jobs_in(fx->s, "done") == 20, 30000);
    scheduler_stats a, b;
    scheduler_stats_get(&a, fx->f);
    scheduler_stats_get(&b, g);
    scheduler_stop(g);
    assert_int_equal(consumer_get(&C.runs), 20); /* each job once, by one of them */
    assert_int_equal(a.jobs_started + b.jobs_started, 20);
    assert_true(consumer_get(&C.max_running) <= 3); /* the limit holds over both */
    scheduler_stats_get(&b, g);
    assert_int_equal(b.started, 0);
    farm_close(g);
}

static void test_live_scaling(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    scaling_change c = {{0}, {0}};
    c.set[SCALING_MAX_AGENTS] = 1, c.value[SCALING_MAX_AGENTS] = 1;
    assert_int_equal(scaling_update(NULL, farm_config(fx->f), fx->s, &c, NULL), 0);
    for (int i = 1; i <= 6; i++)
        session_make(fx, i, 1, NULL);
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 1, 10000);
    WAIT_UNTIL(jobs_in(fx->s, "queued") == 5, 10000);
    assert_int_equal(consumer_get(&C.max_running), 1);

    c.value[SCALING_MAX_AGENTS] = 4;
    scaling_limits after;
    assert_int_equal(scaling_update(&after, farm_config(fx->f), fx->s, &c, NULL), 0);
    assert_int_equal(after.value[SCALING_MAX_AGENTS], 4);
    assert_int_equal(after.value[SCALING_MAX_PER_REPO], 3); /* from the config */
    farm_jobs_kick(fx->f);
    WAIT_UNTIL(consumer_get(&C.running) == 4, 10000);
    scheduler_stats st;
    scheduler_stats_get(&st, fx->f);
    assert_int_equal(st.limits.value[SCALING_MAX_AGENTS], 4);
    assert_int_equal(st.busy, 4);
    gate_open();
    WAIT_UNTIL(jobs_in(fx->s, "done") == 6, 10000);
    assert_int_equal(consumer_get(&C.max_running), 4);
}

static int64_t events_of(store *s, int64_t session, const char *kind)
{
    store_event *v = NULL;
    size_t n = 0;
    int64_t count = 0;
    assert_int_equal(store_event_list(&v, &n, s, session, 0, 0), 0);
    for (size_t i = 0; i < n; i++)
        count += !strcmp(v[i].kind, kind);
    store_event_list_free(v, n);
    return count;
}

static void test_memory_admission(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    o.mem_reserve_mb = 100;
    o.poll_ms = 10;
    int64_t session;
    C.mem_bytes = 1000ll << 20; /* below 1024 + 100 MiB */
    int64_t job = session_make(fx, 1, 1, &session);
    gate_open();
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(events_of(fx->s, session, "waiting") == 1, 10000);
    /* many more admission checks later: still one event, still queued */
    int calls = consumer_get(&C.mem_calls);
    WAIT_UNTIL(consumer_get(&C.mem_calls) >= calls + 10, 10000);
    assert_int_equal(events_of(fx->s, session, "waiting"), 1);
    assert_string_equal(job_state(fx->s, job), "queued");
    assert_int_equal(consumer_get(&C.runs), 0);
    store_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&e, &n, fx->s, session, 0, 0), 0);
    assert_non_null(strstr(e[n - 1].body, "\"reason\":\"memory\""));
    store_event_list_free(e, n);
    scheduler_stats st;
    scheduler_stats_get(&st, fx->f);
    assert_int_equal(st.admission_waits, 1);

    /* a cancel starts no sandbox: it is not held back */
    int64_t cancel_job = 0;
    assert_int_equal(farm_session_cancel(&cancel_job, fx->f, session, "alice"), 0);
    WAIT_UNTIL(strcmp(job_state(fx->s, cancel_job), "done") == 0, 10000);
    assert_string_equal(job_state(fx->s, job), "queued");
    assert_int_equal(events_of(fx->s, session, "waiting"), 1);

    pthread_mutex_lock(&C.lock);
    C.mem_bytes = 2000ll << 20;
    pthread_mutex_unlock(&C.lock);
    WAIT_UNTIL(strcmp(job_state(fx->s, job), "done") == 0, 10000);
}

static void test_cancel_stops_run(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    int64_t session, cancel_job = 0;
    int64_t job = session_make(fx, 1, 1, &session);
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 1, 10000);
    assert_int_equal(farm_session_cancel(&cancel_job, fx->f, session, "alice"), 0);
    assert_true(cancel_job > 0);
    WAIT_UNTIL(consumer_get(&C.cancels_seen) == 1, 10000);
    WAIT_UNTIL(strcmp(job_state(fx->s, job), "cancelled") == 0, 10000);
    WAIT_UNTIL(strcmp(job_state(fx->s, cancel_job), "done") == 0, 10000);
    assert_int_equal(events_of(fx->s, session, "cancel_requested"), 1);
    assert_int_equal(farm_session_cancel(&cancel_job, fx->f, 999, "alice"), FARM_ENOTFOUND);
}

static void test_retry_then_fail(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    o.max_attempts = 3;
    int64_t session;
    int64_t job = session_make(fx, 1, 1, &session);
    C.eagain_session = (int)session;
    gate_open();
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(strcmp(job_state(fx->s, job), "failed") == 0, 10000);
    assert_int_equal(consumer_get(&C.runs), 3);
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, session), 0);
    assert_string_equal(s->state, "failed");
    store_session_free(s);
    assert_int_equal(events_of(fx->s, session, "failed"), 1);
}

static void test_idle_slots_exit(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    o.idle_timeout_ms = 100;
    for (int i = 1; i <= 3; i++)
        session_make(fx, i, 1, NULL);
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 3, 10000);
    scheduler_stats st;
    scheduler_stats_get(&st, fx->f);
    assert_int_equal(st.slots, 3);
    gate_open();
    WAIT_UNTIL(jobs_in(fx->s, "done") == 3, 10000);
    WAIT_UNTIL((scheduler_stats_get(&st, fx->f), st.slots == 0), 10000);
    /* and they grow again on demand */
    session_make(fx, 5, 1, NULL);
    farm_jobs_kick(fx->f);
    WAIT_UNTIL(jobs_in(fx->s, "done") == 4, 10000);
}

static void test_warm_slots(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    scaling_change c = {{0}, {0}};
    c.set[SCALING_MIN_WARM] = 1, c.value[SCALING_MIN_WARM] = 2;
    assert_int_equal(scaling_update(NULL, farm_config(fx->f), fx->s, &c, NULL), 0);
    gate_open();
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    scheduler_stats st;
    WAIT_UNTIL((scheduler_stats_get(&st, fx->f), st.warm == 2), 10000);
    session_make(fx, 1, 1, NULL); /* octo/a */
    session_make(fx, 2, 1, NULL); /* octo/b */
    farm_jobs_kick(fx->f);
    WAIT_UNTIL(jobs_in(fx->s, "done") == 2, 10000);
    assert_int_equal(consumer_get(&C.warm_seen), 2); /* one warm slot per repository */
    assert_int_equal(consumer_get(&C.warm_wrong), 0);
    WAIT_UNTIL((scheduler_stats_get(&st, fx->f), st.warm == 2), 10000); /* refilled */
    assert_true(consumer_get(&C.warm_prepared) >= 4);

    /* min_warm lowered live: the extra slot is dropped */
    c.value[SCALING_MIN_WARM] = 1;
    assert_int_equal(scaling_update(NULL, farm_config(fx->f), fx->s, &c, NULL), 0);
    farm_jobs_kick(fx->f);
    WAIT_UNTIL((scheduler_stats_get(&st, fx->f), st.warm == 1), 10000);
    scheduler_stop(fx->f);
    assert_int_equal(consumer_get(&C.warm_prepared), consumer_get(&C.warm_freed));
}

static void test_shutdown_requeues(void **state)
{
    fixture *fx = *state;
    scheduler_options o = opts_test();
    int64_t job = session_make(fx, 1, 1, NULL);
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(consumer_get(&C.running) == 1, 10000);
    scheduler_stop(fx->f);
    assert_int_equal(consumer_get(&C.cancels_seen), 1);
    store_job *j = NULL;
    assert_int_equal(store_job_get(&j, fx->s, job), 0);
    assert_string_equal(j->state, "queued");
    assert_int_equal(j->attempts, 0);
    assert_null(j->lease_owner);
    store_job_free(j);
    /* the next start takes it */
    gate_open();
    assert_int_equal(scheduler_start(fx->f, &o), 0);
    WAIT_UNTIL(strcmp(job_state(fx->s, job), "done") == 0, 10000);
}

static void test_scaling_settings(void **state)
{
    fixture *fx = *state;
    const config *cfg = farm_config(fx->f);
    scaling_limits l;
    scaling_change c = {{0}, {0}};
    const char *bad = NULL;

    assert_int_equal(scaling_get(&l, cfg, fx->s), 0);
    assert_int_equal(l.value[SCALING_MAX_AGENTS], 3);
    assert_int_equal(l.from_setting[SCALING_MAX_AGENTS], 0);

    c.set[SCALING_MAX_AGENTS] = 1, c.value[SCALING_MAX_AGENTS] = 0;
    assert_int_equal(scaling_update(NULL, cfg, fx->s, &c, &bad), FARM_EINVALID);
    assert_string_equal(bad, "max_agents");
    c.value[SCALING_MAX_AGENTS] = 257;
    assert_int_equal(scaling_update(NULL, cfg, fx->s, &c, &bad), FARM_EINVALID);
    c.value[SCALING_MAX_AGENTS] = 2;
    c.set[SCALING_MAX_PER_REPO] = 1, c.value[SCALING_MAX_PER_REPO] = 3;
    bad = NULL;
    assert_int_equal(scaling_update(NULL, cfg, fx->s, &c, &bad), FARM_EINVALID);
    assert_string_equal(bad, "max_per_repo");
    assert_non_null(strstr(farm_error_last(), "max_per_repo"));
    c.set[SCALING_MAX_PER_REPO] = 0;
    c.set[SCALING_MIN_WARM] = 1, c.value[SCALING_MIN_WARM] = -1;
    assert_int_equal(scaling_update(NULL, cfg, fx->s, &c, &bad), FARM_EINVALID);
    assert_string_equal(bad, "min_warm");
    /* nothing was written by the refused changes */
    assert_int_equal(scaling_get(&l, cfg, fx->s), 0);
    assert_int_equal(l.value[SCALING_MAX_AGENTS], 3);

    c.value[SCALING_MIN_WARM] = 1;
    assert_int_equal(scaling_update(&l, cfg, fx->s, &c, NULL), 0);
    assert_int_equal(l.value[SCALING_MAX_AGENTS], 2);
    assert_int_equal(l.value[SCALING_MAX_PER_REPO], 2); /* config's 3, capped */
    assert_int_equal(l.from_setting[SCALING_MAX_AGENTS], 1);
    assert_int_equal(l.from_setting[SCALING_MAX_PER_REPO], 0);

    /* kept across a reopen */
    farm_close(fx->f);
    fx->f = farm_make(fx->cfg_path);
    assert_non_null(fx->f);
    fx->s = farm_store(fx->f);
    assert_int_equal(scaling_get(&l, farm_config(fx->f), fx->s), 0);
    assert_int_equal(l.value[SCALING_MAX_AGENTS], 2);
    assert_int_equal(l.value[SCALING_MIN_WARM], 1);
    assert_int_equal(l.from_setting[SCALING_MIN_WARM], 1);
    assert_int_equal(scaling_field_find("max_per_repo"), SCALING_MAX_PER_REPO);
    assert_int_equal(scaling_field_find("bogus"), -1);
}

/* The store's lease calls on their own: not-before times, owners, states. */
static void test_store_leases(void **state)
{
    fixture *fx = *state;
    store_lease_req a = {"a:1:x", 60000, 0, 0}, b = {"b:2:y", 60000, 0, 0};
    store_job *j = NULL;
    int lost[2] = {-1, -1};
    int64_t job = session_make(fx, 1, 1, NULL);

    assert_int_equal(store_job_lease(&j, fx->s, &a), 0);
    assert_non_null(j);
    assert_string_equal(j->state, "leased");
    assert_int_equal(j->attempts, 1);
    store_job_free(j);
    /* another owner cannot end, extend or put back a's job */
    assert_int_equal(store_job_finish(fx->s, job, b.owner, "done", NULL), FARM_ECONFLICT);
    assert_int_equal(store_job_retry(fx->s, job, b.owner, 0, NULL, 0), FARM_ECONFLICT);
    int64_t ids[2] = {job, job + 1000};
    assert_int_equal(store_job_lease_extend(lost, fx->s, b.owner, ids, 2, 60000), 0);
    assert_int_equal(lost[0], 1);
    assert_int_equal(store_job_lease_extend(lost, fx->s, a.owner, ids, 2, 60000), 0);
    assert_int_equal(lost[0], 0);
    assert_int_equal(lost[1], 1); /* no such job: not a's */
    assert_int_equal(store_job_finish(fx->s, job, a.owner, "finished", NULL), FARM_EINVALID);

    /* back in the queue, due later: not leased before its time */
    assert_int_equal(store_job_retry(fx->s, job, a.owner, clock_wall_ms() + 60000, "x", 0), 0);
    assert_int_equal(store_job_lease(&j, fx->s, &b), 0);
    assert_null(j);
    assert_int_equal(store_job_peek(&j, fx->s, &b), 0);
    assert_null(j);
    assert_int_equal(store_job_retry(fx->s, job, a.owner, 0, NULL, 0), FARM_ECONFLICT);

    /* a job of a session whose other job is leased waits */
    int64_t s2;
    int64_t second = session_make(fx, 3, 2, &s2); /* two jobs of one session */
    assert_int_equal(store_job_lease(&j, fx->s, &a), 0);
    assert_non_null(j);
    assert_int_equal(j->id, second - 1);
    store_job_free(j);
    assert_int_equal(store_job_lease(&j, fx->s, &b), 0);
    assert_null(j);
    assert_int_equal(store_job_finish(fx->s, second - 1, a.owner, "done", NULL), 0);
    assert_int_equal(store_job_lease(&j, fx->s, &b), 0);
    assert_non_null(j);
    assert_int_equal(j->id, second);
    store_job_free(j);
    /* at shutdown the attempt is given back */
    assert_int_equal(store_job_retry(fx->s, second, b.owner, 0, NULL, 1), 0);
    assert_int_equal(store_job_get(&j, fx->s, second), 0);
    assert_string_equal(j->state, "queued");
    assert_int_equal(j->attempts, 0);
    assert_null(j->lease_owner);
    store_job_free(j);
    assert_int_equal(store_job_lease(&j, fx->s, NULL), FARM_EINVALID);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_max_agents_over_20_jobs),
        T(test_max_per_repo),
        T(test_one_job_per_session),
        T(test_expired_lease_taken_over),
        T(test_lost_lease_cancels_run),
        T(test_two_schedulers_one_store),
        T(test_live_scaling),
        T(test_memory_admission),
        T(test_cancel_stops_run),
        T(test_retry_then_fail),
        T(test_idle_slots_exit),
        T(test_warm_slots),
        T(test_shutdown_requeues),
        T(test_scaling_settings),
        T(test_store_leases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
