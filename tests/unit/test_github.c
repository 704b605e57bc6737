/*
 * test_github.c - the GitHub tracker against tests/fakes/fake_github.py.
 *
 * Each test starts its own fake (python3, port 0) and drives the client
 * through tracker.h, then reads the fake's request log and state to check
 * what really went over the wire: headers, no duplicate comments after a
 * 500 or a timeout, 304s used, tokens renewed, pacing and rate limits
 * honoured without asking GitHub again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"
#include "vcs/tracker/tracker.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAT "ghp_testtoken_0123456789"

typedef struct fake {
    pid_t pid;
    int port;
    char url[64];
} fake;

static int fake_start(fake *f)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/fakes/fake_github.py", src ? src : FARM_SOURCE_DIR);
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that aborts takes its fake along */
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("python3", "python3", script, (char *)NULL);
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
    }
}

/* A control request; returns the parsed answer (caller decrefs). */
static json_t *ctl(fake *f, const char *method, const char *path, const char *fmt, ...)
{
    char url[256], body[16384] = "";
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

/* The seed for one repository o/r with issue 1 by alice. */
static void seed_basic(fake *f)
{
    json_decref(ctl(f, "POST", "/_fake/state",
                    "{\"tokens\": {\"" PAT "\": \"farm-bot\"},"
                    " \"repos\": {\"o/r\": {"
                    "   \"issues\": [{\"title\": \"Crash on start\", \"body\": \"It crashes.\","
                    "                 \"user\": \"alice\", \"labels\": [\"bug\"]}],"
                    "   \"permissions\": {\"alice\": \"admin\", \"bob\": \"write\","
                    "                     \"carol\": \"maintain\", \"dave\": \"triage\","
                    "                     \"erin\": \"read\", \"frank\": \"none\"}}}}"));
}

static json_t *requests(fake *f)
{
    json_t *r = ctl(f, "GET", "/_fake/requests", NULL);
    json_t *list = json_incref(json_object_get(r, "requests"));
    json_decref(r);
    return list;
}

/* How many recorded requests have this method and a path containing sub. */
static int count_requests(fake *f, const char *method, const char *sub)
{
    json_t *list = requests(f);
    size_t i;
    json_t *r;
    int n = 0;
    json_array_foreach(list, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "method")), method) == 0 &&
            strstr(json_string_value(json_object_get(r, "path")), sub))
            n++;
    }
    json_decref(list);
    return n;
}

static json_int_t stat_of(fake *f, const char *name)
{
    json_t *s = ctl(f, "GET", "/_fake/stats", NULL);
    json_int_t v = json_integer_value(json_object_get(s, name));
    json_decref(s);
    return v;
}

/* The comments of o/r (all issues), as the fake holds them. */
static json_t *comments(fake *f)
{
    json_t *s = ctl(f, "GET", "/_fake/state", NULL);
    json_t *c = json_incref(
        json_object_get(json_object_get(json_object_get(s, "repos"), "o/r"), "comments"));
    json_decref(s);
    return c;
}

typedef struct ctx {
    fake f;
    tracker *t;
} ctx;

static tracker *new_pat_tracker(fake *f, void (*tweak)(tracker_github_opts *))
{
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;
    o.api_url = f->url;
    o.token = PAT;
    o.timeout_ms = 5000;
    o.max_retry_wait_ms = 300;
    if (tweak)
        tweak(&o);
    tracker *t = NULL;
    assert_int_equal(tracker_github_new(&t, &o), 0);
    return t;
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    if (!c || fake_start(&c->f) != 0) {
        free(c);
        return -1;
    }
    seed_basic(&c->f);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    tracker_free(c->t);
    fake_stop(&c->f);
    free(c);
    return 0;
}

static tracker_ref issue1(void)
{
    tracker_ref r = TRACKER_REF_INIT;
    r.repo = "o/r";
    r.number = 1;
    return r;
}

/* ---- tests ---------------------------------------------------------------- */

static void options_are_checked(void **state)
{
    tracker *t = (tracker *)1;
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;
    assert_int_equal(tracker_github_new(&t, &o), FARM_EINVALID); /* no credential */
    assert_null(t);
    o.token = "x";
    o.app_id = 5;
    o.app_private_key = "pem";
    assert_int_equal(tracker_github_new(&t, &o), FARM_EINVALID); /* both */
    o.app_id = 0;
    o.api_url = "ftp://example";
    assert_int_equal(tracker_github_new(&t, &o), FARM_EINVALID);
    assert_int_equal(tracker_github_new(&t, NULL), FARM_EINVALID);
}

static void comment_create_find_update(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    int64_t id = 0, found = 0;

    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "s1-status"),
                     FARM_ENOTFOUND);
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "s1-status", "Working on it."), 0);
    assert_true(id > 0);
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "s1-status"), 0);
    assert_int_equal(found, id);
    assert_int_equal(tracker_comment_update(c->t, &ref, id, "s1-status", "Done: PR #2."), 0);

    json_t *cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 1);
    json_t *c0 = json_array_get(cs, 0);
    assert_string_equal(json_string_value(json_object_get(c0, "body")),
                        "Done: PR #2.\n\n<!-- farm:s1-status -->");
    assert_string_equal(json_string_value(json_object_get(c0, "user")), "farm-bot");
    json_decref(cs);

    /* an update with the same text sends no PATCH */
    int patches = count_requests(&c->f, "PATCH", "/issues/comments/");
    assert_int_equal(tracker_comment_update(c->t, &ref, id, "s1-status", "Done: PR #2."), 0);
    assert_int_equal(count_requests(&c->f, "PATCH", "/issues/comments/"), patches);

    /* every request carries the headers GitHub asks for */
    json_t *list = requests(&c->f);
    size_t i;
    json_t *r;
    assert_true(json_array_size(list) >= 4);
    json_array_foreach(list, i, r)
    {
        json_t *h = json_object_get(r, "headers");
        assert_string_equal(json_string_value(json_object_get(h, "accept")),
                            "application/vnd.github+json");
        assert_string_equal(json_string_value(json_object_get(h, "x-github-api-version")),
                            "2022-11-28");
        assert_string_equal(json_string_value(json_object_get(h, "authorization")), "Bearer " PAT);
        assert_non_null(strstr(json_string_value(json_object_get(h, "user-agent")), "farm/"));
    }
    json_decref(list);

    /* someone else's comment with the same marker is not ours */
    json_decref(ctl(&c->f, "POST", "/_fake/state",
                    "{\"repos\": {\"o/r\": {\"comments\": [{\"issue\": 1, \"user\": \"mallory\","
                    " \"body\": \"fake <!-- farm:s2-status -->\"}]}}}"));
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "s2-status"),
                     FARM_ENOTFOUND);
}

static void find_by_marker_reads_every_page(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    json_decref(ctl(&c->f, "POST", "/_fake/config", "{\"max_per_page\": 2}"));
    for (int i = 0; i < 6; i++)
        json_decref(ctl(&c->f, "POST", "/_fake/state",
                        "{\"repos\": {\"o/r\": {\"comments\": [{\"issue\": 1, \"user\": \"bob\","
                        " \"body\": \"comment %d\"}]}}}",
                        i));
    int64_t id = 0, found = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "late", "the seventh"), 0);
    int frc = tracker_comment_find_by_marker(&found, c->t, &ref, "late");
    if (frc)
        fprintf(stderr, "find: %s\n", farm_error_last());
    assert_int_equal(frc, 0);
    assert_int_equal(found, id);
    assert_true(count_requests(&c->f, "GET", "/issues/1/comments") >= 4);

    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    assert_int_equal(th->ncomments, 7);
    assert_string_equal(th->comments[0].body, "comment 0");
    assert_string_equal(th->comments[0].author, "bob");
    assert_non_null(strstr(th->comments[6].body, "the seventh"));
    assert_false(th->truncated);
    tracker_thread_free(th);

    /* a pagination link to another host is not followed (the token would go along) */
    json_decref(ctl(&c->f, "POST", "/_fake/config", "{\"link_base\": \"http://127.0.0.2:9\"}"));
    tracker_free(c->t); /* a fresh client: no cached pages with their old links */
    c->t = new_pat_tracker(&c->f, NULL);
    int before = count_requests(&c->f, "GET", "/issues/1/comments");
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "late"), FARM_EIO);
    assert_non_null(strstr(farm_error_last(), "refusing to follow"));
    assert_int_equal(count_requests(&c->f, "GET", "/issues/1/comments"), before + 1);
}

static void long_body_is_split(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    size_t len = 200000;
    char *body = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        body[i] = (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
    body[len] = 0;

    int64_t id = 0, found = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "log", body), 0);
    json_t *cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 4);
    size_t i;
    json_t *cm;
    json_array_foreach(cs, i, cm)
    {
        const char *b = json_string_value(json_object_get(cm, "body"));
        char head[64];
        snprintf(head, sizeof head, "*(part %d of 4)*", (int)i + 1);
        assert_true(strlen(b) <= 65535);
        assert_memory_equal(b, head, strlen(head));
        assert_true(tracker_body_has_marker(b, "log", (int)i + 1));
    }
    assert_int_equal(json_integer_value(json_object_get(json_array_get(cs, 0), "id")), id);
    json_decref(cs);
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "log"), 0);
    assert_int_equal(found, id);

    /* shrinking to one part deletes the others */
    assert_int_equal(tracker_comment_update(c->t, &ref, id, "log", "short now"), 0);
    cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 0), "body")),
                        "short now\n\n<!-- farm:log -->");
    json_decref(cs);

    /* growing again recreates them */
    assert_int_equal(tracker_comment_update(c->t, &ref, id, "log", body), 0);
    cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 4);
    json_decref(cs);

    free(body);
}

static void crash_between_parts_is_completed(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    size_t len = 150000;
    char *body = malloc(len + 1);
    memset(body, 'z', len);
    body[len] = 0;
    /* a crash between parts: the first POST lands, the second is refused */
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail",
            "{\"status\": 403, \"method\": \"POST\", \"skip\": 1, \"count\": 1,"
            " \"path\": \"/issues/1/comments$\", \"message\": \"Resource not accessible\"}"));
    int64_t id = 0, found = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "big", body), FARM_EAUTH);
    assert_int_equal(id, 0);
    json_t *cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 1);
    json_decref(cs);

    /* the outbox after a crash: find by key, then update with the found id */
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "big"), 0);
    assert_int_equal(tracker_comment_update(c->t, &ref, found, "big", body), 0);
    cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 3); /* completed, nothing duplicated */
    for (size_t i = 0; i < 3; i++)
        assert_true(tracker_body_has_marker(
            json_string_value(json_object_get(json_array_get(cs, i), "body")), "big", (int)i + 1));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(cs, 0), "id")), found);
    json_decref(cs);
    free(body);
}

static void rate_limited_429_gives_the_wait(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail", "{\"status\": 429, \"retry_after\": 120, \"count\": 5}"));
    int64_t id = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "k429", "hello"), FARM_EAGAIN);
    int64_t wait = tracker_retry_after_ms();
    assert_true(wait >= 119000 && wait <= 120000);
    assert_non_null(strstr(farm_error_last(), "429"));
    /* nothing was created and the client did not hammer the server */
    assert_int_equal(count_requests(&c->f, "POST", "/comments"), 1);
    json_t *cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 0);
    json_decref(cs);

    /* a short Retry-After is slept through */
    json_decref(ctl(&c->f, "DELETE", "/_fake/fail", NULL));
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"status\": 429, \"retry_after\": 0, \"count\": 1, \"method\": \"GET\"}"));
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    tracker_thread_free(th);
}

static void primary_rate_limit_blocks_until_reset(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    json_decref(ctl(&c->f, "POST", "/_fake/ratelimit",
                    "{\"login\": \"farm-bot\", \"remaining\": 0, \"reset_in\": 30}"));
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAGAIN);
    int64_t wait = tracker_retry_after_ms();
    assert_true(wait > 25000 && wait <= 31000);
    int before = (int)stat_of(&c->f, "requests");
    /* the next call does not even ask */
    int64_t id;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "k", "x"), FARM_EAGAIN);
    assert_true(tracker_retry_after_ms() > 20000);
    assert_int_equal(stat_of(&c->f, "requests"), before);
}

static void server_error_is_retried_without_duplicates(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    /* two 500s on the POST: the comment is created once */
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail", "{\"status\": 500, \"method\": \"POST\", \"count\": 2}"));
    int64_t id = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "r500", "after errors"), 0);
    assert_true(id > 0);
    assert_int_equal(count_requests(&c->f, "POST", "/comments"), 3);
    json_t *cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 1);
    json_decref(cs);

    /* 500s on a GET are retried by the transport */
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail", "{\"status\": 502, \"method\": \"GET\", \"count\": 2}"));
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    assert_string_equal(th->title, "Crash on start");
    tracker_thread_free(th);

    /* 500s that do not stop: FARM_EAGAIN */
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"status\": 503, \"method\": \"GET\", \"count\": 100}"));
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAGAIN);
    assert_null(th);
}

static void short_timeout(tracker_github_opts *o)
{
    o->timeout_ms = 400;
    o->max_retries = 1;
}

static void hang_times_out(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, short_timeout);
    tracker_ref ref = issue1();
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail", "{\"hang\": 30, \"method\": \"GET\", \"count\": 10}"));
    tracker_thread *th = NULL;
    int64_t t0 = clock_mono_ms();
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_ETIMEOUT);
    int64_t took = clock_mono_ms() - t0;
    assert_true(took >= 400 && took < 5000);
    assert_null(th);
}

/* Poll the fake until it holds n comments (or 10 s pass); returns how many. */
static size_t await_comments(fake *f, size_t n)
{
    int64_t deadline = clock_mono_ms() + 10000;
    for (;;) {
        json_t *cs = comments(f);
        size_t have = json_array_size(cs);
        json_decref(cs);
        if (have >= n || clock_mono_ms() > deadline)
            return have;
        poll(NULL, 0, 20);
    }
}

static void slow_create_that_landed_is_not_repeated(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, short_timeout);
    tracker_ref ref = issue1();
    /* GitHub is slow but does the work after the client gave up: the client
     * says so (no answer) rather than posting again, and the outbox's look
     * for the marker before its retry finds the comment */
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"hang\": 1, \"then\": \"process\", \"method\": \"POST\", \"count\": 1}"));
    int64_t id = 0, found = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "slow", "eventually"), FARM_ETIMEOUT);
    assert_int_equal(id, 0);
    assert_int_equal(count_requests(&c->f, "POST", "/comments"), 1);
    assert_int_equal(await_comments(&c->f, 1), 1);
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "slow"), 0);
    assert_true(found > 0);

    /* dropped without doing the work: not found, so posted again, once */
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"hang\": 1, \"then\": \"drop\", \"method\": \"POST\", \"count\": 1}"));
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "dropped", "again"), FARM_ETIMEOUT);
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "dropped"), FARM_ENOTFOUND);
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "dropped", "again"), 0);
    assert_int_equal(await_comments(&c->f, 2), 2);
}

static void three_a_minute(tracker_github_opts *o)
{
    o->per_minute = 3;
}

static void content_creation_is_paced(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, three_a_minute);
    tracker_ref ref = issue1();
    int64_t id;
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "p%d", i);
        assert_int_equal(tracker_comment_create(&id, c->t, &ref, key, "paced"), 0);
    }
    int64_t t0 = clock_mono_ms();
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "p3", "paced"), FARM_EAGAIN);
    assert_true(clock_mono_ms() - t0 < 1500); /* it did not block for the whole wait */
    int64_t wait = tracker_retry_after_ms();
    /* three in any minute: the fourth waits for the first to be a minute old */
    assert_true(wait > 50000 && wait <= 60000);
    assert_non_null(strstr(farm_error_last(), "pacing"));
    assert_int_equal(count_requests(&c->f, "POST", "/comments"), 3);
    /* reads are not paced */
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    tracker_thread_free(th);
}

static void two_an_hour(tracker_github_opts *o)
{
    o->per_hour = 2;
}

static void hourly_budget_is_paced(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, two_an_hour);
    tracker_ref ref = issue1();
    const char *labels[] = {"a"};
    assert_int_equal(tracker_labels_add(c->t, &ref, labels, 1), 0);
    assert_int_equal(tracker_react(c->t, &ref, 0, "eyes"), 0);
    /* every write counts, whatever it is */
    assert_int_equal(tracker_labels_remove(c->t, &ref, labels, 1), FARM_EAGAIN);
    int64_t wait = tracker_retry_after_ms();
    assert_true(wait > 3590000 && wait <= 3600000);
    assert_int_equal(count_requests(&c->f, "DELETE", "/labels/"), 0);
}

/* Limits shared between two clients, as farm nodes share them through the
 * store: a minute's budget counted in one place, one back-off. */
typedef struct shared_fake {
    int taken;         /* places taken in the (single, test-long) minute */
    int64_t until;     /* the back-off's end */
    char last_key[64]; /* the back-off's key */
} shared_fake;

static int fake_pace(void *arg, int64_t *wait_ms, const char *key, int per_minute, int per_hour)
{
    shared_fake *sf = arg;
    (void)key;
    (void)per_hour;
    *wait_ms = sf->taken < per_minute ? 0 : 45000;
    sf->taken += *wait_ms == 0;
    return 0;
}

static int fake_blocked_get(void *arg, int64_t *until_ms, const char *key)
{
    shared_fake *sf = arg;
    *until_ms = strcmp(key, sf->last_key) == 0 ? sf->until : 0;
    return 0;
}

static int fake_blocked_set(void *arg, const char *key, int64_t until_ms)
{
    shared_fake *sf = arg;
    snprintf(sf->last_key, sizeof(sf->last_key), "%s", key);
    sf->until = until_ms > sf->until ? until_ms : sf->until;
    return 0;
}

static shared_fake the_shared;
static tracker_shared_limits the_limits = {fake_pace, fake_blocked_get, fake_blocked_set,
                                           &the_shared};

static void shared_three_a_minute(tracker_github_opts *o)
{
    o->per_minute = 3;
    o->shared = &the_limits;
}

static void shared_limits_hold_across_clients(void **state)
{
    ctx *c = *state;
    memset(&the_shared, 0, sizeof(the_shared));
    c->t = new_pat_tracker(&c->f, shared_three_a_minute);
    tracker *other = new_pat_tracker(&c->f, shared_three_a_minute);
    tracker_ref ref = issue1();
    int64_t id;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "s0", "paced"), 0);
    assert_int_equal(tracker_comment_create(&id, other, &ref, "s1", "paced"), 0);
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "s2", "paced"), 0);
    /* the budget is the pair's, not each one's */
    assert_int_equal(tracker_comment_create(&id, other, &ref, "s3", "paced"), FARM_EAGAIN);
    assert_int_equal(tracker_retry_after_ms(), 45000);
    assert_int_equal(count_requests(&c->f, "POST", "/comments"), 3);

    /* one client learns the credential is spent: the other does not ask */
    json_decref(ctl(&c->f, "POST", "/_fake/ratelimit",
                    "{\"login\": \"farm-bot\", \"remaining\": 0, \"reset_in\": 30}"));
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAGAIN);
    assert_true(the_shared.until > clock_wall_ms() + 20000);
    int before = (int)stat_of(&c->f, "requests");
    assert_int_equal(tracker_thread_get(&th, other, &ref), FARM_EAGAIN);
    assert_true(tracker_retry_after_ms() > 20000);
    assert_int_equal(stat_of(&c->f, "requests"), before);
    tracker_free(other);
}

static void etags_make_rereads_cheap(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    int64_t id;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "e1", "first"), 0);
    tracker_thread *a = NULL, *b = NULL;
    assert_int_equal(tracker_thread_get(&a, c->t, &ref), 0);
    assert_int_equal(stat_of(&c->f, "not_modified"), 0);
    assert_int_equal(tracker_thread_get(&b, c->t, &ref), 0);
    assert_int_equal(stat_of(&c->f, "not_modified"), 2); /* the issue and its comments */
    assert_string_equal(a->title, b->title);
    assert_int_equal(a->ncomments, b->ncomments);
    assert_string_equal(a->comments[0].body, b->comments[0].body);
    assert_string_equal(b->labels[0], "bug");
    assert_string_equal(b->author, "alice");
    tracker_thread_free(a);
    tracker_thread_free(b);
    /* a change is seen: the issue (its comment count) and the page are new */
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "e2", "second"), 0);
    assert_int_equal(tracker_thread_get(&b, c->t, &ref), 0);
    assert_int_equal(b->ncomments, 2);
    assert_string_equal(b->comments[1].body, "second\n\n<!-- farm:e2 -->");
    assert_int_equal(stat_of(&c->f, "not_modified"), 2);
    tracker_thread_free(b);
    assert_int_equal(tracker_thread_get(&b, c->t, &ref), 0);
    assert_int_equal(b->ncomments, 2);
    assert_int_equal(stat_of(&c->f, "not_modified"), 4);
    tracker_thread_free(b);
}

static void errors_map_to_codes(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    tracker_thread *th = NULL;
    ref.number = 99;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_ENOTFOUND);
    ref.repo = "o/missing";
    ref.number = 1;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_ENOTFOUND);
    ref.repo = "o/../x";
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EINVALID);
    ref.repo = "o/r";
    json_decref(ctl(&c->f, "POST", "/_fake/fail", "{\"status\": 422, \"count\": 1}"));
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EINVALID);
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"status\": 403, \"count\": 1, \"message\": \"Forbidden\"}"));
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAUTH);
    /* an answer that is not JSON, or not the shape asked for */
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"status\": 200, \"count\": 1, \"raw\": \"<html>maintenance</html>\"}"));
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EIO);
    assert_non_null(strstr(farm_error_last(), "not JSON"));
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail", "{\"status\": 200, \"count\": 1, \"raw\": \"[1, 2]\"}"));
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EIO);
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"status\": 200, \"count\": 1, \"raw\": \"{}\", \"method\": \"POST\"}"));
    int64_t id = 7;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "odd", "x"), FARM_EIO);
    assert_int_equal(id, 0);
    assert_null(th);

    tracker_free(c->t);
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;
    o.api_url = c->f.url;
    o.token = "ghp_wrong_token";
    c->t = NULL;
    assert_int_equal(tracker_github_new(&c->t, &o), 0);
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAUTH);
    /* the token never appears in the message */
    assert_null(strstr(farm_error_last(), "ghp_wrong_token"));
    assert_non_null(strstr(farm_error_last(), "401"));
}

static void permissions(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    tracker_permission p;
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "alice"), 0);
    assert_int_equal(p, TRACKER_PERM_ADMIN);
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "bob"), 0);
    assert_int_equal(p, TRACKER_PERM_WRITE);
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "carol"), 0);
    assert_int_equal(p, TRACKER_PERM_WRITE);
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "dave"), 0);
    assert_int_equal(p, TRACKER_PERM_READ);
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "erin"), 0);
    assert_int_equal(p, TRACKER_PERM_READ);
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "frank"), 0);
    assert_int_equal(p, TRACKER_PERM_NONE);
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "nobody-at-all"), FARM_ENOTFOUND);
    /* a login that would change the path is escaped, not followed */
    assert_int_equal(tracker_permission_get(&p, c->t, &ref, "../../user"), FARM_ENOTFOUND);
}

static void labels_and_reactions(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    const char *add[] = {"farm: working", "needs review"};
    assert_int_equal(tracker_labels_add(c->t, &ref, add, 2), 0);
    const char *rm[] = {"bug", "never-there"};
    assert_int_equal(tracker_labels_remove(c->t, &ref, rm, 2), 0);
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    assert_int_equal(th->nlabels, 2);
    assert_string_equal(th->labels[0], "farm: working");
    assert_string_equal(th->labels[1], "needs review");
    tracker_thread_free(th);
    assert_int_equal(count_requests(&c->f, "DELETE", "/labels/farm"), 0);
    /* removing from an issue that does not exist is an error */
    ref.number = 42;
    assert_int_equal(tracker_labels_remove(c->t, &ref, rm, 1), FARM_ENOTFOUND);
    ref.number = 1;

    int64_t id;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "react", "hi"), 0);
    assert_int_equal(tracker_react(c->t, &ref, 0, "eyes"), 0);
    assert_int_equal(tracker_react(c->t, &ref, id, "rocket"), 0);
    assert_int_equal(tracker_react(c->t, &ref, id, "rocket"), 0); /* twice is harmless */
    json_t *cs = comments(&c->f);
    json_t *reactions = json_object_get(json_array_get(cs, 0), "reactions");
    assert_int_equal(json_array_size(reactions), 1);
    json_decref(cs);
    assert_int_equal(count_requests(&c->f, "POST", "/issues/1/reactions"), 1);
}

static void pull_requests(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    tracker_ref ref = issue1();
    tracker_pr *pr = NULL, *again = NULL;
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    spec.key = "s1-pr";
    spec.title = "Fix the crash on start";
    spec.body = "The config was read before it existed.";
    spec.head_branch = "farm/1-crash-on-start";
    spec.base_branch = "main";

    assert_int_equal(tracker_pr_find_by_branch(&pr, c->t, &ref, spec.head_branch), FARM_ENOTFOUND);
    assert_int_equal(tracker_pr_create(&pr, c->t, &ref, &spec), 0);
    assert_true(pr->number > 1);
    assert_string_equal(pr->state, "open");
    assert_string_equal(pr->head_branch, "farm/1-crash-on-start");
    assert_non_null(strstr(pr->body, "The config was read"));
    assert_non_null(strstr(pr->body, "\n\nFixes #1\n\n"));
    assert_true(tracker_body_has_marker(pr->body, "s1-pr", 1));
    assert_non_null(pr->url);

    assert_int_equal(tracker_pr_find_by_branch(&again, c->t, &ref, spec.head_branch), 0);
    assert_int_equal(again->number, pr->number);
    tracker_pr_free(again);
    /* a second one for the same branch is refused */
    assert_int_equal(tracker_pr_create(&again, c->t, &ref, &spec), FARM_EEXISTS);
    assert_null(again);

    /* an update keeps the link to the issue */
    tracker_pr_spec upd = TRACKER_PR_SPEC_INIT;
    upd.key = "s1-pr";
    upd.title = "Fix the crash on start (round 2)";
    upd.body = "Now with a test. Fixes #1";
    assert_int_equal(tracker_pr_update(c->t, &ref, pr->number, &upd), 0);
    assert_int_equal(tracker_pr_find_by_branch(&again, c->t, &ref, spec.head_branch), 0);
    assert_string_equal(again->title, "Fix the crash on start (round 2)");
    assert_string_equal(again->body, "Now with a test. Fixes #1\n\n<!-- farm:s1-pr -->");
    tracker_pr_free(again);

    /* a description over the limit is cut, whole characters only */
    size_t n = 100000;
    char *big = malloc(n * 2 + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(big + 2 * i, "\xc3\xa9", 2);
    big[2 * n] = 0;
    upd.title = NULL;
    upd.body = big;
    assert_int_equal(tracker_pr_update(c->t, &ref, pr->number, &upd), 0);
    assert_int_equal(tracker_pr_find_by_branch(&again, c->t, &ref, spec.head_branch), 0);
    long units = tracker_utf16_len(again->body, strlen(again->body));
    assert_true(units > 60000 && units <= 65535);
    assert_non_null(strstr(again->body, "truncated"));
    assert_non_null(strstr(again->body, "Fixes #1"));
    tracker_pr_free(again);
    free(big);
    tracker_pr_free(pr);

    upd.body = "x";
    assert_int_equal(tracker_pr_update(c->t, &ref, 999, &upd), FARM_ENOTFOUND);
}

static void pr_create_after_a_lost_answer(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, short_timeout);
    tracker_ref ref = issue1();
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    spec.key = "s2-pr";
    spec.title = "t";
    spec.body = "b";
    spec.head_branch = "farm/1-x";
    spec.base_branch = "main";
    json_decref(ctl(&c->f, "POST", "/_fake/fail",
                    "{\"hang\": 1, \"then\": \"process\", \"method\": \"POST\", \"count\": 1,"
                    " \"path\": \"/pulls$\"}"));
    tracker_pr *pr = NULL;
    assert_int_equal(tracker_pr_create(&pr, c->t, &ref, &spec), FARM_ETIMEOUT);
    assert_null(pr);
    /* it landed after all: the next attempt looks by branch first */
    int64_t deadline = clock_mono_ms() + 10000;
    int rc;
    while ((rc = tracker_pr_find_by_branch(&pr, c->t, &ref, "farm/1-x")) == FARM_ENOTFOUND &&
           clock_mono_ms() < deadline)
        poll(NULL, 0, 20);
    assert_int_equal(rc, 0);
    assert_true(tracker_body_has_marker(pr->body, "s2-pr", 1));
    tracker_pr_free(pr);
    assert_int_equal(count_requests(&c->f, "POST", "/pulls"), 1);

    /* a 500 on the create: looked up by branch before trying again */
    spec.key = "s3-pr";
    spec.head_branch = "farm/1-y";
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail",
            "{\"status\": 500, \"method\": \"POST\", \"count\": 1, \"path\": \"/pulls$\"}"));
    assert_int_equal(tracker_pr_create(&pr, c->t, &ref, &spec), 0);
    assert_string_equal(pr->head_branch, "farm/1-y");
    tracker_pr_free(pr);
    assert_int_equal(count_requests(&c->f, "POST", "/pulls"), 3);
}

static void review_comments_and_replies(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    json_t *ids =
        ctl(&c->f, "POST", "/_fake/state",
            "{\"repos\": {\"o/r\": {"
            " \"pulls\": [{\"title\": \"PR\", \"head\": \"farm/1-a\", \"user\": \"farm-bot\"}],"
            " \"review_comments\": ["
            "  {\"pull\": 2, \"user\": \"alice\", \"path\": \"src/a.c\", \"line\": 12,"
            "   \"body\": \"Use a bounded buffer here.\"},"
            "  {\"pull\": 2, \"user\": \"bob\", \"path\": \"src/b.c\", \"line\": 3,"
            "   \"body\": \"Typo.\"}]}}}");
    json_t *rcids =
        json_object_get(json_object_get(json_object_get(ids, "ids"), "o/r"), "review_comments");
    int64_t first = json_integer_value(json_array_get(rcids, 0));
    json_decref(ids);
    tracker_ref ref = issue1();

    tracker_review_comment *rc = NULL;
    size_t n = 0;
    assert_int_equal(tracker_pr_review_comments(&rc, &n, c->t, &ref, 2), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rc[0].id, first);
    assert_string_equal(rc[0].path, "src/a.c");
    assert_int_equal(rc[0].line, 12);
    assert_string_equal(rc[0].author, "alice");
    assert_int_equal(rc[0].in_reply_to, 0);
    tracker_review_comments_free(rc, n);

    int64_t reply = 0;
    assert_int_equal(
        tracker_review_comment_reply(&reply, c->t, &ref, 2, first, "s1-r1", "Done in abc123."), 0);
    assert_true(reply > 0);
    assert_int_equal(tracker_pr_review_comments(&rc, &n, c->t, &ref, 2), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rc[2].id, reply);
    assert_int_equal(rc[2].in_reply_to, first);
    assert_string_equal(rc[2].path, "src/a.c");
    assert_string_equal(rc[2].body, "Done in abc123.\n\n<!-- farm:s1-r1 -->");
    tracker_review_comments_free(rc, n);

    /* a reply after a 500 is not posted twice */
    json_decref(
        ctl(&c->f, "POST", "/_fake/fail",
            "{\"status\": 500, \"method\": \"POST\", \"count\": 1, \"path\": \"/replies$\"}"));
    assert_int_equal(
        tracker_review_comment_reply(&reply, c->t, &ref, 2, first, "s1-r2", "And this."), 0);
    assert_int_equal(tracker_pr_review_comments(&rc, &n, c->t, &ref, 2), 0);
    assert_int_equal(n, 4);
    tracker_review_comments_free(rc, n);
    assert_int_equal(tracker_review_comment_reply(&reply, c->t, &ref, 2, 99999, "s1-r3", "x"),
                     FARM_ENOTFOUND);
}

/* ---- GitHub App ------------------------------------------------------------ */

static char *app_pem; /* private key, PKCS#8 */
static char *app_pub; /* SubjectPublicKeyInfo */

static char *bio_text(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)n + 1); /* p is not NUL-terminated */
    assert_non_null(s);
    memcpy(s, p, (size_t)n);
    s[n] = 0;
    BIO_free(b);
    return s;
}

static void app_keys(void)
{
    if (app_pem)
        return;
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    app_pem = bio_text(b);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    app_pub = bio_text(b);
    EVP_PKEY_free(k);
}

static tracker *new_app_tracker(ctx *c, const char *token_ttl)
{
    app_keys();
    json_t *pub = json_string(app_pub);
    char *pubj = json_dumps(pub, JSON_ENCODE_ANY);
    json_decref(ctl(&c->f, "POST", "/_fake/state",
                    "{\"apps\": {\"4242\": {\"public_key\": %s, \"slug\": \"farmapp\"}},"
                    " \"installations\": {\"77\": {\"app_id\": 4242, \"repos\": [\"o/r\"]}},"
                    " \"config\": {\"token_ttl\": %s}}",
                    pubj, token_ttl));
    free(pubj);
    json_decref(pub);
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;
    o.api_url = c->f.url;
    o.app_id = 4242;
    o.app_private_key = app_pem;
    o.max_retry_wait_ms = 300;
    tracker *t = NULL;
    assert_int_equal(tracker_github_new(&t, &o), 0);
    return t;
}

static void app_token_is_cached_and_renewed(void **state)
{
    ctx *c = *state;
    c->t = new_app_tracker(c, "3600");
    tracker_ref ref = issue1();
    ref.installation_id = 77;
    int64_t id = 0, found = 0;
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "app1", "from the app"), 0);
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "app2", "again"), 0);
    assert_int_equal(stat_of(&c->f, "tokens_issued"), 1);
    json_t *cs = comments(&c->f);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 0), "user")),
                        "farmapp[bot]");
    json_decref(cs);
    /* the marker search trusts the app's own comments (login learnt from /app) */
    assert_int_equal(tracker_comment_find_by_marker(&found, c->t, &ref, "app2"), 0);
    assert_int_equal(found, id);

    /* the token expires early (revoked): renewed once, the call succeeds */
    json_decref(ctl(&c->f, "POST", "/_fake/tokens/expire", "{}"));
    assert_int_equal(tracker_comment_create(&id, c->t, &ref, "app3", "after expiry"), 0);
    assert_int_equal(stat_of(&c->f, "tokens_issued"), 2);
    assert_int_equal(count_requests(&c->f, "POST", "/app/installations/77/access_tokens"), 2);

    /* without an installation id the repository's installation is looked up once */
    tracker_ref noinst = issue1();
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &noinst), 0);
    tracker_thread_free(th);
    assert_int_equal(tracker_thread_get(&th, c->t, &noinst), 0);
    tracker_thread_free(th);
    assert_int_equal(count_requests(&c->f, "GET", "/repos/o/r/installation"), 1);
    /* a repository the app is not installed on */
    json_decref(ctl(&c->f, "POST", "/_fake/state", "{\"repos\": {\"o/other\": {}}}"));
    noinst.repo = "o/other";
    assert_int_equal(tracker_thread_get(&th, c->t, &noinst), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "not installed"));

    /* the JWT the app signed: RS256, iat in the past, exp within ten minutes */
    json_t *list = requests(&c->f);
    size_t i;
    json_t *r;
    int seen = 0;
    json_array_foreach(list, i, r)
    {
        if (!strstr(json_string_value(json_object_get(r, "path")), "access_tokens"))
            continue;
        const char *auth =
            json_string_value(json_object_get(json_object_get(r, "headers"), "authorization"));
        assert_non_null(auth);
        assert_memory_equal(auth, "Bearer ey", 9);
        seen++;
    }
    assert_int_equal(seen, 2);
    json_decref(list);
}

static void app_token_near_expiry_is_refreshed(void **state)
{
    ctx *c = *state;
    /* tokens that live four minutes are always inside the five-minute margin */
    c->t = new_app_tracker(c, "240");
    tracker_ref ref = issue1();
    ref.installation_id = 77;
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    tracker_thread_free(th);
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), 0);
    tracker_thread_free(th);
    /* each of the four requests (issue, comments, twice) needed a new one */
    assert_int_equal(stat_of(&c->f, "tokens_issued"), 4);
}

static void app_with_a_bad_key_is_refused(void **state)
{
    ctx *c = *state;
    app_keys();
    /* the fake knows a different key for the app */
    EVP_PKEY *k = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *other = bio_text(b);
    EVP_PKEY_free(k);
    json_t *pub = json_string(other);
    char *pubj = json_dumps(pub, JSON_ENCODE_ANY);
    json_decref(ctl(&c->f, "POST", "/_fake/state",
                    "{\"apps\": {\"4242\": {\"public_key\": %s}},"
                    " \"installations\": {\"77\": {\"app_id\": 4242}}}",
                    pubj));
    free(pubj);
    json_decref(pub);
    free(other);
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;
    o.api_url = c->f.url;
    o.app_id = 4242;
    o.app_private_key = app_pem;
    assert_int_equal(tracker_github_new(&c->t, &o), 0);
    tracker_ref ref = issue1();
    ref.installation_id = 77;
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAUTH);
    /* a key that is not a key */
    tracker_free(c->t);
    o.app_private_key = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
    c->t = NULL;
    assert_int_equal(tracker_github_new(&c->t, &o), 0);
    assert_int_equal(tracker_thread_get(&th, c->t, &ref), FARM_EAUTH);
}

typedef struct worker {
    tracker *t;
    int n;
    int failures;
    int64_t ids[8];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    tracker_ref ref = issue1();
    for (int i = 0; i < 8; i++) {
        char key[32];
        snprintf(key, sizeof key, "w%d-%d", w->n, i);
        if (tracker_comment_create(&w->ids[i], w->t, &ref, key, "from a thread") != 0)
            w->failures++;
        tracker_thread *th = NULL;
        if (tracker_thread_get(&th, w->t, &ref) != 0)
            w->failures++;
        tracker_thread_free(th);
    }
    return NULL;
}

static void concurrent_use(void **state)
{
    ctx *c = *state;
    c->t = new_pat_tracker(&c->f, NULL);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.t = c->t, .n = i};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    json_t *cs = comments(&c->f);
    assert_int_equal(json_array_size(cs), 32);
    json_decref(cs);
    for (int i = 0; i < 32; i++)
        for (int j = i + 1; j < 32; j++)
            assert_true(w[i / 8].ids[i % 8] != w[j / 8].ids[j % 8]);
}

/* The checks on a commit (check runs and statuses, the newest of each name)
 * and an Actions job's log read through the logs endpoint's redirect, cut
 * to its tail. */
static void ci_checks_and_job_log(void **state)
{
    ctx *c = *state;
    const char *sha = "0123456789abcdef0123456789abcdef01234567";
    c->t = new_pat_tracker(&c->f, NULL);
    char log[12000];
    size_t n = 0;
    n += (size_t)snprintf(log + n, sizeof log - n, "HEAD OF THE LOG\n");
    for (int i = 0; n < sizeof log - 200; i++)
        n += (size_t)snprintf(log + n, sizeof log - n, "line %d of noise\n", i);
    snprintf(log + n, sizeof log - n, "FAIL: the end\n");
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "repo", "o/r", "sha", sha, "name",
                             "build", "conclusion", "failure", "log", log, "branch", "farm/1-x");
    char *text = json_dumps(body, 0);
    json_decref(body);
    json_decref(ctl(&c->f, "POST", "/_fake/checks", "%s", text));
    free(text);
    json_decref(ctl(&c->f, "POST", "/_fake/checks",
                    "{\"repo\": \"o/r\", \"sha\": \"%s\", \"name\": \"lint\","
                    " \"status\": \"in_progress\"}",
                    sha));
    json_decref(ctl(&c->f, "POST", "/_fake/checks",
                    "{\"repo\": \"o/r\", \"sha\": \"%s\", \"name\": \"docs\","
                    " \"conclusion\": \"cancelled\", \"app\": \"other-ci\"}",
                    sha));

    tracker_ref ref = TRACKER_REF_INIT;
    ref.repo = "o/r";
    tracker_check *v = NULL;
    size_t nv = 0;
    assert_int_equal(tracker_checks_list(&v, &nv, c->t, &ref, "farm/1-x", sha), 0);
    assert_int_equal(nv, 3);
    int64_t build_log = 0;
    for (size_t i = 0; i < nv; i++) {
        if (!strcmp(v[i].name, "build")) {
            assert_int_equal(v[i].state, TRACKER_CHECK_FAILED);
            assert_string_equal(v[i].conclusion, "failure");
            assert_true(v[i].log_id > 0);
            build_log = v[i].log_id;
            char *tail = NULL;
            assert_int_equal(tracker_check_log_tail(&tail, c->t, &ref, &v[i], 1000), 0);
            assert_true(strlen(tail) <= 1000);
            assert_non_null(strstr(tail, "FAIL: the end"));
            assert_null(strstr(tail, "HEAD OF THE LOG"));
            assert_true(!strncmp(tail, "line ", 5)); /* cut at a line's start */
            free(tail);
        } else if (!strcmp(v[i].name, "lint")) {
            assert_int_equal(v[i].state, TRACKER_CHECK_PENDING);
        } else {
            assert_string_equal(v[i].name, "docs");
            assert_int_equal(v[i].state, TRACKER_CHECK_SKIPPED);
            assert_int_equal(v[i].log_id, 0); /* not an Actions job: no log to read */
        }
    }
    assert_true(build_log > 0);
    tracker_checks_free(v, nv);

    /* a commit status counts too */
    char path[256];
    snprintf(path, sizeof path, "/repos/o/r/statuses/%s", sha);
    http_request hr = HTTP_REQUEST_INIT;
    char url[512], auth[128];
    snprintf(url, sizeof url, "%s%s", c->f.url, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", PAT);
    const char *hdrs[] = {auth, "Content-Type: application/json", NULL};
    hr.method = "POST";
    hr.url = url;
    hr.headers = hdrs;
    hr.body = "{\"state\": \"error\", \"context\": \"ci/legacy\", \"description\": \"broke\"}";
    hr.body_len = strlen(hr.body);
    http_response resp;
    assert_int_equal(http_do(&resp, &hr), 0);
    assert_int_equal(resp.status, 201);
    http_response_free(&resp);
    assert_int_equal(tracker_checks_list(&v, &nv, c->t, &ref, "farm/1-x", sha), 0);
    assert_int_equal(nv, 4);
    assert_string_equal(v[3].name, "ci/legacy");
    assert_int_equal(v[3].state, TRACKER_CHECK_FAILED);
    assert_string_equal(v[3].summary, "broke");
    char *tail = NULL;
    assert_int_equal(tracker_check_log_tail(&tail, c->t, &ref, &v[3], 1000), FARM_ENOTFOUND);
    tracker_checks_free(v, nv);

    /* bad input is refused before any request */
    assert_int_equal(tracker_checks_list(&v, &nv, c->t, &ref, NULL, "not a sha"), FARM_EINVALID);
}

int main(void)
{
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(options_are_checked),
        cmocka_unit_test_setup_teardown(comment_create_find_update, setup, teardown),
        cmocka_unit_test_setup_teardown(find_by_marker_reads_every_page, setup, teardown),
        cmocka_unit_test_setup_teardown(long_body_is_split, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_between_parts_is_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(rate_limited_429_gives_the_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(primary_rate_limit_blocks_until_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(server_error_is_retried_without_duplicates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(hang_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_create_that_landed_is_not_repeated, setup, teardown),
        cmocka_unit_test_setup_teardown(content_creation_is_paced, setup, teardown),
        cmocka_unit_test_setup_teardown(hourly_budget_is_paced, setup, teardown),
        cmocka_unit_test_setup_teardown(shared_limits_hold_across_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(etags_make_rereads_cheap, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_map_to_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(labels_and_reactions, setup, teardown),
        cmocka_unit_test_setup_teardown(pull_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(pr_create_after_a_lost_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(review_comments_and_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(app_token_is_cached_and_renewed, setup, teardown),
        cmocka_unit_test_setup_teardown(app_token_near_expiry_is_refreshed, setup, teardown),
        cmocka_unit_test_setup_teardown(app_with_a_bad_key_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_use, setup, teardown),
        cmocka_unit_test_setup_teardown(ci_checks_and_job_log, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(app_pem);
    free(app_pub);
    return rc;
}
