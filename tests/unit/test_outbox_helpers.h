/*
 * test_outbox_helpers.h - what the outbox tests share: a fake tracker
 * (tests/fakes/fake_*.py) run as a child process, its control API, a farm
 * opened on a config written to a temp directory, sessions, and waiting
 * for an outbox entry to settle (polling with a deadline, no sleeps).
 *
 * Included by test_outbox*.c only; everything is static.
 */
#ifndef FARM_TEST_OUTBOX_HELPERS_H
#define FARM_TEST_OUTBOX_HELPERS_H

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/report/outbox.h"
#include "farm/store/store.h"
#include "farm/store/store_outbox.h"
#include "farm/report/trackers.h"
#include "vcs/tracker/tracker.h"
#include "support/store_backend_test.h"

#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct fake {
    pid_t pid;
    int port;
    char url[64];
} fake;

/* Start tests/fakes/<script> on port 0 and read the port it prints. */
static int fake_start(fake *f, const char *script)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fakes/%s", src ? src : FARM_SOURCE_DIR, script);
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("python3", "python3", path, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[32] = {0};
    size_t n = 0;
    int64_t deadline = clock_mono_ms() + 20000;
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(p[0]);
    f->pid = pid;
    f->port = atoi(line);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    return f->port > 0 ? 0 : -1;
}

static void fake_stop(fake *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
}

/* A control request to the fake; the parsed answer (caller decrefs). */
static json_t *ctl(fake *f, const char *method, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static json_t *ctl(fake *f, const char *method, const char *path, const char *fmt, ...)
{
    char url[256];
    static char body[1 << 16];
    body[0] = 0;
    snprintf(url, sizeof url, "%s%s", f->url, path);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(body, sizeof body, fmt, ap);
        va_end(ap);
    }
    http_request req = HTTP_REQUEST_INIT;
    req.method = method;
    req.url = url;
    req.body = fmt ? body : NULL;
    req.body_len = strlen(body);
    req.max_retries = 0;
    http_response r;
    int rc = http_do(&r, &req);
    assert_int_equal(rc, 0);
    if (r.status != 200)
        fprintf(stderr, "control %s %s: %ld %s\n", method, path, r.status, buf_cstr(&r.body));
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(buf_cstr(&r.body), 0, NULL);
    http_response_free(&r);
    assert_non_null(j);
    return j;
}

#define CTL(f, m, p, ...) json_decref(ctl((f), (m), (p), __VA_ARGS__))

/* How many recorded API requests have this method and a path matching sub
 * (a substring). */
static int fake_count(fake *f, const char *method, const char *sub)
{
    json_t *r = ctl(f, "GET", "/_fake/requests", NULL), *q;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(r, "requests"), i, q)
    {
        if (!strcmp(json_string_value(json_object_get(q, "method")), method) &&
            strstr(json_string_value(json_object_get(q, "path")), sub))
            n++;
    }
    json_decref(r);
    return n;
}

/* ---- a farm in a temp directory ---------------------------------------- */

typedef struct fixture {
    char *dir;
    farm *f;
    store *s;
    fake gh, az;
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Open a farm on config text (a printf format; "@DIR@" in the result is
 * replaced by the fixture's temp directory). */
static farm *farm_on(fixture *fx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static farm *farm_on(fixture *fx, const char *fmt, ...)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    static char text[16384];
    config *c = NULL;
    char *errors = NULL;
    va_list ap;

    if (!fx->dir) {
        if (asprintf(&fx->dir, "%s/farm-test-outbox-XXXXXX", base) < 0 || !mkdtemp(fx->dir))
            return NULL;
    }
    static char raw[16384];
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* "@DIR@" stands for the temp directory */
    buf t = BUF_INIT(sizeof text - 1);
    for (const char *p = raw, *hit; *p; p = hit + 5) {
        if (!(hit = strstr(p, "@DIR@"))) {
            buf_puts(&t, p);
            break;
        }
        buf_append(&t, p, (size_t)(hit - p));
        buf_puts(&t, fx->dir);
    }
    /* the store under test (tests/unit/support/store_backend_test.h) */
    const char *brace = strchr(buf_cstr(&t), '{');
    if (brace)
        snprintf(text, sizeof text, "%.*s%s%s", (int)(brace - buf_cstr(&t) + 1), buf_cstr(&t),
                 test_store_config(fx->dir), brace + 1);
    else
        snprintf(text, sizeof text, "%s", buf_cstr(&t));
    buf_free(&t);
    snprintf(path, sizeof path, "%s/farm.json", fx->dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return NULL;
    fputs(text, fp);
    fclose(fp);
    if (config_load(&c, path, &errors)) {
        fprintf(stderr, "config: %s\n%s", farm_error_last(), errors ? errors : "");
        free(errors);
        return NULL;
    }
    if (farm_open(&fx->f, c)) {
        fprintf(stderr, "farm_open: %s\n", farm_error_last());
        return NULL;
    }
    fx->s = farm_store(fx->f);
    return fx->f;
}

static void fixture_free(fixture *fx)
{
    if (!fx)
        return;
    farm_close(fx->f);
    fake_stop(&fx->gh);
    fake_stop(&fx->az);
    if (fx->dir)
        nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx->dir);
    free(fx);
}

typedef struct new_session_args {
    const char *tracker, *repo;
    int64_t number, id;
} new_session_args;

static int new_session_write(store_tx *tx, void *arg)
{
    new_session_args *a = arg;
    store_session s = {0};
    s.tracker = (char *)a->tracker;
    s.repo = (char *)a->repo;
    s.number = a->number;
    s.title = "a test issue";
    return store_tx_session_insert(&a->id, tx, &s);
}

static int64_t new_session(fixture *fx, const char *tname, const char *repo, int64_t number)
{
    new_session_args a = {tname, repo, number, 0};
    assert_int_equal(store_write(fx->s, new_session_write, &a), 0);
    assert_true(a.id > 0);
    return a.id;
}

/* Fast retries for tests: backoff in tens of ms. */
static outbox_opts test_opts(void)
{
    outbox_opts o = OUTBOX_OPTS_INIT;
    o.workers = 4;
    o.backoff_ms = 20;
    o.max_backoff_ms = 200;
    o.no_answer_ms = 50;
    o.poll_ms = 50;
    o.lease_ms = 30000;
    return o;
}

/* Wait (at most timeout_ms) for the entry with key to leave "pending";
 * returns it (caller frees), NULL when it did not. */
static outbox_entry *wait_settled(fixture *fx, const char *key, int64_t timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        outbox_entry *e = NULL;
        if (store_outbox_get_by_key(&e, fx->s, key) == 0 && strcmp(e->state, "pending") != 0)
            return e;
        outbox_entry_free(e);
        if (clock_mono_ms() > deadline)
            return NULL;
        struct timespec ts = {0, 10 * 1000000L}; /* polling a condition, not synchronising */
        nanosleep(&ts, NULL);
    }
}

/* Wait for every entry of the outbox to settle. */
static int wait_all_settled(fixture *fx, int64_t timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        outbox_stats st;
        if (outbox_stats_get(&st, fx->s) == 0 && st.pending == 0)
            return 0;
        if (clock_mono_ms() > deadline)
            return -1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void enqueue(fixture *fx, int64_t sid, const char *kind, const char *key,
                    const char *payload)
{
    int rc = outbox_enqueue(fx->s, sid, kind, key, payload);
    if (rc)
        fprintf(stderr, "enqueue %s: %s\n", key, farm_error_last());
    assert_int_equal(rc, 0);
}

#endif
