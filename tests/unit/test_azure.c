/*
 * test_azure.c - the Azure DevOps tracker against tests/fakes/fake_azure.py:
 * work item comments with markers (create, find, update, split at 200,000
 * characters), tags through JSON Patch with a revision test, reactions,
 * threads, pull requests with workItemRefs, PR threads and replies, and the
 * unhappy paths: rate limit (429 + Retry-After), 500 retried, a hang, an
 * expired token, a sign-in page, a lost revision race.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/http.h"
#include "vcs/tracker/azure.h"
#include "vcs/tracker/tracker.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAT "pat-farm-0123456789"
#define BOT "farm@example.com"

static pid_t fake_pid;
static int fake_port;
static char org_url[128];

/* ---- the fake ----------------------------------------------------------- */

static int fake_start(void **state)
{
    int fds[2];
    char path[1024];
    const char *src = getenv("FARM_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fakes/fake_azure.py", src ? src : FARM_SOURCE_DIR);
    if (pipe(fds) < 0)
        return -1;
    fake_pid = fork();
    if (fake_pid < 0)
        return -1;
    if (fake_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", path, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = {0};
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(fds[0], line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    close(fds[0]);
    fake_port = atoi(line);
    if (fake_port <= 0)
        return -1;
    snprintf(org_url, sizeof org_url, "http://127.0.0.1:%d/org", fake_port);
    return http_global_init() < 0 ? -1 : 0;
}

static int fake_stop(void **state)
{
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        waitpid(fake_pid, NULL, 0);
    }
    return 0;
}

/* A control call; returns the parsed answer (caller decrefs). */
static json_t *ctl(const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", fake_port, path);
    http_request req = HTTP_REQUEST_INIT;
    http_response resp = {0};
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    req.method = method;
    req.url = url;
    req.headers = hdrs;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.max_retries = 0;
    assert_int_equal(http_do(&resp, &req), 0);
    assert_int_equal(resp.status, 200);
    json_t *j = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    http_response_free(&resp);
    assert_non_null(j);
    return j;
}

static void ctl_do(const char *method, const char *path, const char *body)
{
    json_decref(ctl(method, path, body));
}

/* Reset the fake to: project Proj with repo app, work item 1 (returned). */
static int64_t seed(void)
{
    ctl_do("DELETE", "/_fake/fail", NULL);
    json_t *j = ctl("POST", "/_fake/state",
                    "{\"reset\": true, \"tokens\": {\"" PAT "\": \"" BOT "\", \"pat-bob\": "
                    "\"bob@example.com\"},"
                    " \"projects\": {\"Proj\": {\"repos\": [\"app\"], \"workitems\": ["
                    "  {\"title\": \"Fix the login\", \"description\": \"<p>It breaks</p>\","
                    "   \"tags\": \"bug; ui\", \"created_by\": \"alice@example.com\","
                    "   \"comments\": [{\"text\": \"me too\", \"by\": \"bob@example.com\"}]}]}}}");
    int64_t id = json_integer_value(json_array_get(json_object_get(j, "workitems"), 0));
    json_decref(j);
    assert_true(id > 0);
    return id;
}

static tracker *azure_new(long timeout_ms, int retries, size_t max_chars)
{
    static const char *const allowed[] = {"alice@example.com"};
    tracker_azure_repo repos[] = {
        {"org/Proj/app", "Proj", "app", allowed, 1},
    };
    tracker_azure_opts o = TRACKER_AZURE_OPTS_INIT;
    o.org_url = org_url;
    o.token = PAT;
    o.repos = repos;
    o.nrepos = 1;
    o.timeout_ms = timeout_ms;
    o.max_retries = retries;
    o.max_retry_wait_ms = 200;
    o.max_comment_chars = max_chars;
    tracker *t = NULL;
    assert_int_equal(tracker_azure_new(&t, &o), 0);
    return t;
}

static json_t *state_workitem(int64_t id)
{
    json_t *st = ctl("GET", "/_fake/state", NULL);
    json_t *w, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(st, "workitems"), i, w)
    {
        if (json_integer_value(json_object_get(w, "id")) == id)
            found = json_incref(w);
    }
    json_decref(st);
    assert_non_null(found);
    return found;
}

/* The live comments of a work item in the fake: a JSON array (decref). */
static json_t *live_comments(int64_t id)
{
    json_t *w = state_workitem(id), *out = json_array(), *c;
    size_t i;
    json_array_foreach(json_object_get(w, "comments"), i, c)
    {
        if (!json_is_true(json_object_get(c, "isDeleted")))
            json_array_append(out, c);
    }
    json_decref(w);
    return out;
}

/* The last recorded API request. */
static json_t *last_request(void)
{
    json_t *j = ctl("GET", "/_fake/requests", NULL);
    json_t *reqs = json_object_get(j, "requests");
    json_t *r = json_incref(json_array_get(reqs, json_array_size(reqs) - 1));
    json_decref(j);
    return r;
}

static int request_count(void)
{
    json_t *j = ctl("GET", "/_fake/requests", NULL);
    int n = (int)json_integer_value(json_object_get(j, "total"));
    json_decref(j);
    return n;
}

/* ---- comments ----------------------------------------------------------- */

static void comment_create_find_update(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    int64_t id = 0, found = 0;

    assert_int_equal(tracker_comment_create(&id, t, &ref, "s1/status", "Working on it"), 0);
    assert_true(id > 0);

    /* PAT basic auth with an empty user, the preview api-version, markdown */
    json_t *r = last_request();
    assert_string_equal(json_string_value(json_object_get(r, "method")), "POST");
    json_t *q = json_object_get(r, "query");
    assert_string_equal(json_string_value(json_object_get(q, "api-version")), "7.1-preview.4");
    assert_string_equal(json_string_value(json_object_get(q, "format")), "markdown");
    const char *auth =
        json_string_value(json_object_get(json_object_get(r, "headers"), "authorization"));
    char *b64 = NULL;
    {
        buf b = BUF_INIT(256);
        assert_int_equal(buf_printf(&b, ":%s", PAT), 0);
        b64 = crypto_base64_encode(b.data, b.len, 0);
        buf_free(&b);
    }
    char expect[256];
    snprintf(expect, sizeof expect, "Basic %s", b64);
    assert_string_equal(auth, expect);
    free(b64);
    json_decref(r);

    assert_int_equal(tracker_comment_find_by_marker(&found, t, &ref, "s1/status"), 0);
    assert_int_equal(found, id);
    assert_int_equal(tracker_comment_find_by_marker(&found, t, &ref, "s1/other"), FARM_ENOTFOUND);

    assert_int_equal(tracker_comment_update(t, &ref, id, "s1/status", "Done: PR opened"), 0);
    json_t *cs = live_comments(wi);
    assert_int_equal(json_array_size(cs), 2);
    const char *text = json_string_value(json_object_get(json_array_get(cs, 1), "text"));
    assert_non_null(strstr(text, "Done: PR opened"));
    assert_non_null(strstr(text, "<!-- farm:s1/status -->"));
    json_decref(cs);
    tracker_free(t);
}

static void marker_by_someone_else_is_not_ours(void **state)
{
    int64_t wi = seed();
    /* bob posts a comment carrying the farm's marker */
    char body[256];
    snprintf(body, sizeof body,
             "{\"projects\": {\"Proj\": {\"workitems\": [{\"title\": \"x\", \"comments\": "
             "[{\"text\": \"spoof <!-- farm:k1 -->\", \"by\": \"bob@example.com\"}]}]}}}");
    json_t *j = ctl("POST", "/_fake/state", body);
    int64_t wi2 = json_integer_value(json_array_get(json_object_get(j, "workitems"), 0));
    json_decref(j);
    (void)wi;
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi2, 0, 0};
    int64_t found = 0;
    assert_int_equal(tracker_comment_find_by_marker(&found, t, &ref, "k1"), FARM_ENOTFOUND);
    tracker_free(t);
}

static void find_reads_every_page(void **state)
{
    int64_t wi = seed();
    ctl_do("POST", "/_fake/config", "{\"page_size\": 3}");
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    int64_t id = 0, found = 0;
    for (int i = 0; i < 7; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(tracker_comment_create(&id, t, &ref, key, "filler"), 0);
    }
    assert_int_equal(tracker_comment_find_by_marker(&found, t, &ref, "k6"), 0);
    assert_int_equal(found, id);
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, t, &ref), 0);
    assert_int_equal(th->ncomments, 8);
    assert_string_equal(th->comments[0].body, "me too");
    assert_string_equal(th->comments[0].author, "bob@example.com");
    tracker_thread_free(th);
    tracker_free(t);
}

static char *big_body(size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
    s[n] = '\0';
    return s;
}

static void body_of_200000_chars_is_split(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(10000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    char *body = big_body(200000);
    int64_t id = 0, found = 0;

    assert_int_equal(tracker_comment_create(&id, t, &ref, "big", body), 0);
    json_t *cs = live_comments(wi);
    assert_int_equal(json_array_size(cs), 3); /* bob's + two parts */
    size_t total = 0;
    for (size_t i = 1; i < 3; i++) {
        const char *text = json_string_value(json_object_get(json_array_get(cs, i), "text"));
        assert_true(strlen(text) <= 150000);
        char part[32];
        snprintf(part, sizeof part, "*(part %zu of 2)*", i);
        assert_non_null(strstr(text, part));
        total += strlen(text);
    }
    assert_true(total > 200000);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(cs, 2), "text")), "farm:big#2"));
    json_decref(cs);
    assert_int_equal(tracker_comment_find_by_marker(&found, t, &ref, "big"), 0);
    assert_int_equal(found, id);

    /* a short body now: the second part goes away */
    assert_int_equal(tracker_comment_update(t, &ref, id, "big", "short now"), 0);
    cs = live_comments(wi);
    assert_int_equal(json_array_size(cs), 2);
    json_decref(cs);

    /* and long again: the second part comes back */
    assert_int_equal(tracker_comment_update(t, &ref, id, "big", body), 0);
    cs = live_comments(wi);
    assert_int_equal(json_array_size(cs), 3);
    json_decref(cs);
    free(body);
    tracker_free(t);
}

/* ---- unhappy paths ------------------------------------------------------ */

static void rate_limited_is_eagain_with_the_wait(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 3, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    int64_t id = 0;
    ctl_do("POST", "/_fake/ratelimit", "{\"remaining\": 0, \"reset_in\": 30}");
    int before = request_count();
    assert_int_equal(tracker_comment_create(&id, t, &ref, "rl", "hello"), FARM_EAGAIN);
    assert_true(tracker_retry_after_ms() >= 29000);
    assert_true(tracker_retry_after_ms() <= 32000);
    assert_non_null(strstr(farm_error_last(), "429"));
    /* a wait over max_retry_wait_ms is not slept through: one attempt */
    assert_int_equal(request_count() - before, 1);
    ctl_do("POST", "/_fake/ratelimit", "{\"remaining\": 100}");
    assert_int_equal(tracker_comment_create(&id, t, &ref, "rl", "hello"), 0);
    assert_int_equal(tracker_retry_after_ms(), 0);
    tracker_free(t);
}

static void short_retry_after_is_waited_for(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 3, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    tracker_thread *th = NULL;
    ctl_do("POST", "/_fake/fail", "{\"status\": 429, \"retry_after\": 0, \"method\": \"GET\"}");
    assert_int_equal(tracker_thread_get(&th, t, &ref), 0);
    assert_string_equal(th->title, "Fix the login");
    tracker_thread_free(th);
    tracker_free(t);
}

static void server_error_is_retried(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 3, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    tracker_thread *th = NULL;
    ctl_do("POST", "/_fake/fail",
           "{\"status\": 500, \"count\": 2, \"method\": \"GET\", \"path\": \"workitems/[0-9]+$\"}");
    int before = request_count();
    assert_int_equal(tracker_thread_get(&th, t, &ref), 0);
    /* two failures and the success, then the comments */
    assert_int_equal(request_count() - before, 4);
    tracker_thread_free(th);

    /* persistent 503: EAGAIN after the retries */
    ctl_do("POST", "/_fake/fail", "{\"status\": 503, \"count\": 10}");
    assert_int_equal(tracker_thread_get(&th, t, &ref), FARM_EAGAIN);
    assert_null(th);
    ctl_do("DELETE", "/_fake/fail", NULL);

    /* a POST is not repeated on 500 (it could post twice) */
    ctl_do("POST", "/_fake/fail", "{\"status\": 500, \"method\": \"POST\"}");
    before = request_count();
    int64_t id;
    assert_int_equal(tracker_comment_create(&id, t, &ref, "p", "x"), FARM_EAGAIN);
    assert_int_equal(request_count() - before, 1);
    tracker_free(t);
}

static void hang_times_out(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(400, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    tracker_thread *th = NULL;
    ctl_do("POST", "/_fake/fail", "{\"hang\": 5}");
    assert_int_equal(tracker_thread_get(&th, t, &ref), FARM_ETIMEOUT);
    assert_null(th);
    tracker_free(t);
}

static void expired_token_is_eauth(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 2, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    int64_t id;
    ctl_do("POST", "/_fake/tokens/expire", "{\"token\": \"" PAT "\"}");
    assert_int_equal(tracker_comment_create(&id, t, &ref, "k", "x"), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "401"));
    assert_null(strstr(farm_error_last(), PAT));
    tracker_free(t);

    /* an unknown PAT answered with Azure's sign-in page (203) */
    seed();
    ctl_do("POST", "/_fake/config", "{\"signin_page\": true}");
    tracker_azure_opts o = TRACKER_AZURE_OPTS_INIT;
    o.org_url = org_url;
    o.token = "not-a-token";
    assert_int_equal(tracker_azure_new(&t, &o), 0);
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, t, &ref), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "sign-in"));
    tracker_free(t);
}

/* ---- tags, reactions, threads ------------------------------------------- */

static const char *wi_tags(int64_t wi, char *out, size_t n)
{
    json_t *w = state_workitem(wi);
    const char *tags =
        json_string_value(json_object_get(json_object_get(w, "fields"), "System.Tags"));
    snprintf(out, n, "%s", tags ? tags : "");
    json_decref(w);
    return out;
}

static void labels_are_tags(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    char tags[256];
    const char *add[] = {"farm:working", "BUG", "Farm:Working"};
    assert_int_equal(tracker_labels_add(t, &ref, add, 3), 0);
    assert_string_equal(wi_tags(wi, tags, sizeof tags), "bug; ui; farm:working");

    /* the request was a JSON Patch testing the revision */
    json_t *r = last_request();
    assert_string_equal(json_string_value(json_object_get(r, "method")), "PATCH");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "headers"), "content-type")),
        "application/json-patch+json");
    assert_non_null(strstr(json_string_value(json_object_get(r, "body")), "\"/rev\""));
    json_decref(r);

    const char *rm[] = {"ui", "absent"};
    assert_int_equal(tracker_labels_remove(t, &ref, rm, 2), 0);
    assert_string_equal(wi_tags(wi, tags, sizeof tags), "bug; farm:working");

    /* someone else edits between our read and our write: read again, retry */
    ctl_do("POST", "/_fake/fail", "{\"status\": 412, \"method\": \"PATCH\"}");
    const char *add2[] = {"agent"};
    assert_int_equal(tracker_labels_add(t, &ref, add2, 1), 0);
    assert_string_equal(wi_tags(wi, tags, sizeof tags), "bug; farm:working; agent");

    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, t, &ref), 0);
    assert_int_equal(th->nlabels, 3);
    assert_string_equal(th->labels[2], "agent");
    assert_string_equal(th->state, "open");
    assert_string_equal(th->author, "alice@example.com");
    assert_string_equal(th->body, "<p>It breaks</p>");
    assert_non_null(strstr(th->url, "/Proj/_workitems/edit/"));
    tracker_thread_free(th);
    tracker_free(t);
}

static void reactions(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    json_t *cs = live_comments(wi);
    int64_t cid = json_integer_value(json_object_get(json_array_get(cs, 0), "id"));
    json_decref(cs);

    assert_int_equal(tracker_react(t, &ref, cid, "+1"), 0);
    assert_int_equal(tracker_react(t, &ref, cid, "+1"), 0); /* twice is harmless */
    cs = live_comments(wi);
    json_t *by = json_object_get(json_object_get(json_array_get(cs, 0), "reactedBy"), "like");
    assert_int_equal(json_array_size(by), 1);
    assert_string_equal(json_string_value(json_array_get(by, 0)), BOT);
    json_decref(cs);

    assert_int_equal(tracker_react(t, &ref, cid, "rocket"), FARM_EUNSUPPORTED);
    assert_int_equal(tracker_react(t, &ref, 0, "+1"), FARM_EUNSUPPORTED);
    tracker_free(t);
}

static void permissions_follow_the_allowlist(void **state)
{
    seed();
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", 0, 0, 0};
    tracker_permission p;
    assert_int_equal(tracker_permission_get(&p, t, &ref, "Alice@Example.com"), 0);
    assert_int_equal(p, TRACKER_PERM_WRITE);
    assert_int_equal(tracker_permission_get(&p, t, &ref, "mallory@example.com"), 0);
    assert_int_equal(p, TRACKER_PERM_NONE);
    tracker_free(t);
}

static void unknown_things_are_not_found(void **state)
{
    seed();
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", 99999, 0, 0};
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, t, &ref), FARM_ENOTFOUND);
    tracker_ref other = {"org/Nope/app", 1, 0, 0};
    assert_int_equal(tracker_thread_get(&th, t, &other), FARM_ENOTFOUND);
    tracker_ref bad = {"justaname", 1, 0, 0};
    assert_int_equal(tracker_thread_get(&th, t, &bad), FARM_EINVALID);
    tracker_free(t);
}

/* ---- pull requests ------------------------------------------------------ */

static void pull_requests(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", wi, 0, 0};
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    tracker_pr *pr = NULL, *again = NULL;
    char *body = big_body(6000);

    spec.key = "s1/pr";
    spec.title = "Fix the login";
    spec.body = body;
    spec.head_branch = "farm/1-fix-the-login";
    spec.base_branch = "main";
    assert_int_equal(tracker_pr_create(&pr, t, &ref, &spec), 0);
    assert_true(pr->number > 0);
    assert_string_equal(pr->state, "open");
    assert_string_equal(pr->head_branch, "farm/1-fix-the-login");
    assert_string_equal(pr->base_branch, "main");
    assert_string_equal(pr->author, BOT);
    assert_non_null(strstr(pr->url, "/Proj/_git/app/pullrequest/"));
    /* linked to the work item; the description fits Azure's 4,000 */
    long units = tracker_utf16_len(pr->body, strlen(pr->body));
    assert_true(units <= 4000 && units > 3500);
    assert_non_null(strstr(pr->body, "truncated"));
    assert_non_null(strstr(pr->body, "<!-- farm:s1/pr -->"));
    json_t *r = last_request();
    json_t *sent = json_loads(json_string_value(json_object_get(r, "body")), 0, NULL);
    char wid[32];
    snprintf(wid, sizeof wid, "%lld", (long long)wi);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(sent, "workItemRefs"), 0), "id")),
                        wid);
    assert_string_equal(json_string_value(json_object_get(sent, "sourceRefName")),
                        "refs/heads/farm/1-fix-the-login");
    json_decref(sent);
    json_decref(r);

    /* a second one for the branch: EEXISTS, and find_by_branch finds it */
    assert_int_equal(tracker_pr_create(&again, t, &ref, &spec), FARM_EEXISTS);
    assert_int_equal(tracker_pr_find_by_branch(&again, t, &ref, "farm/1-fix-the-login"), 0);
    assert_int_equal(again->number, pr->number);
    tracker_pr_free(again);
    assert_int_equal(tracker_pr_find_by_branch(&again, t, &ref, "farm/none"), FARM_ENOTFOUND);

    tracker_pr_spec upd = TRACKER_PR_SPEC_INIT;
    upd.title = "Fix the login (v2)";
    assert_int_equal(tracker_pr_update(t, &ref, pr->number, &upd), 0);
    assert_int_equal(tracker_pr_find_by_branch(&again, t, &ref, "farm/1-fix-the-login"), 0);
    assert_string_equal(again->title, "Fix the login (v2)");
    assert_non_null(strstr(again->body, "truncated")); /* body untouched */
    tracker_pr_free(again);

    tracker_pr_free(pr);
    free(body);
    tracker_free(t);
}

static void pr_threads_and_replies(void **state)
{
    seed();
    json_t *j = ctl("POST", "/_fake/state",
                    "{\"projects\": {\"Proj\": {\"prs\": [{\"repo\": \"app\", \"source\": "
                    "\"farm/1-x\", \"by\": \"" BOT "\", \"threads\": ["
                    " {\"file\": \"src/login.c\", \"line\": 42, \"comments\": [{\"content\": "
                    "\"use a constant here\", \"by\": \"alice@example.com\"}]},"
                    " {\"comments\": [{\"content\": \"looks good overall\", \"by\": "
                    "\"alice@example.com\"}]}]}]}}}");
    json_t *p = json_array_get(json_object_get(j, "prs"), 0);
    int64_t prn = json_integer_value(json_object_get(p, "id"));
    json_decref(j);

    tracker *t = azure_new(5000, 0, 0);
    tracker_ref ref = {"org/Proj/app", 0, 0, 0};
    tracker_review_comment *rc = NULL;
    size_t n = 0;
    assert_int_equal(tracker_pr_review_comments(&rc, &n, t, &ref, prn), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rc[0].path, "src/login.c");
    assert_int_equal(rc[0].line, 42);
    assert_string_equal(rc[0].body, "use a constant here");
    assert_string_equal(rc[0].author, "alice@example.com");
    assert_int_equal(rc[0].in_reply_to, 0);
    assert_null(rc[1].path);

    int64_t reply = 0;
    assert_int_equal(tracker_review_comment_reply(&reply, t, &ref, prn, rc[0].id, "s1/r1",
                                                  "Done: now a constant"),
                     0);
    assert_true(reply > 0);
    int64_t first = rc[0].id;
    tracker_review_comments_free(rc, n);
    assert_int_equal(tracker_pr_review_comments(&rc, &n, t, &ref, prn), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rc[1].id, reply);
    assert_int_equal(rc[1].in_reply_to, first);
    assert_non_null(strstr(rc[1].body, "<!-- farm:s1/r1 -->"));
    tracker_review_comments_free(rc, n);

    /* comments on the PR itself: a thread of the farm's own, found again */
    tracker_ref pref = {"org/Proj/app", prn, 1, 0};
    int64_t cid = 0, found = 0;
    assert_int_equal(tracker_comment_create(&cid, t, &pref, "s1/pr-status", "Tests pass"), 0);
    assert_int_equal(tracker_comment_find_by_marker(&found, t, &pref, "s1/pr-status"), 0);
    assert_int_equal(found, cid);
    assert_int_equal(tracker_comment_update(t, &pref, cid, "s1/pr-status", "Tests pass (2)"), 0);
    assert_int_equal(tracker_react(t, &pref, cid, "+1"), 0);
    assert_int_equal(tracker_react(t, &pref, cid, "heart"), FARM_EUNSUPPORTED);

    /* labels on a PR are its Azure labels */
    const char *labs[] = {"farm", "needs review"};
    assert_int_equal(tracker_labels_add(t, &pref, labs, 2), 0);
    assert_int_equal(tracker_labels_add(t, &pref, labs, 1), 0);
    const char *gone[] = {"needs review", "absent"};
    assert_int_equal(tracker_labels_remove(t, &pref, gone, 2), 0);
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, t, &pref), 0);
    assert_int_equal(th->ncomments, 2); /* alice's overall comment and the farm's */
    assert_int_equal(th->nlabels, 1);
    assert_string_equal(th->labels[0], "farm");
    int seen = 0;
    for (size_t i = 0; i < th->ncomments; i++)
        seen |= strstr(th->comments[i].body, "Tests pass (2)") != NULL;
    assert_true(seen);
    tracker_thread_free(th);
    tracker_free(t);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct poster {
    tracker *t;
    int64_t wi;
    int index;
    int failures;
} poster;

static void *post_some(void *p)
{
    poster *ps = p;
    tracker_ref ref = {"org/Proj/app", ps->wi, 0, 0};
    for (int i = 0; i < 5; i++) {
        char key[32];
        int64_t id = 0, found = 0;
        snprintf(key, sizeof key, "t%d-%d", ps->index, i);
        if (tracker_comment_create(&id, ps->t, &ref, key, "from a thread") < 0 ||
            tracker_comment_find_by_marker(&found, ps->t, &ref, key) < 0 || found != id)
            ps->failures++;
    }
    return NULL;
}

static void one_tracker_many_threads(void **state)
{
    int64_t wi = seed();
    tracker *t = azure_new(10000, 0, 0); /* the identity is learnt by whichever thread is first */
    poster ps[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        ps[i] = (poster){t, wi, i, 0};
        pthread_create(&th[i], NULL, post_some, &ps[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ps[i].failures, 0);
    }
    json_t *cs = live_comments(wi);
    assert_int_equal(json_array_size(cs), 41);
    json_decref(cs);
    /* connectionData was asked once */
    json_t *j = ctl("GET", "/_fake/requests", NULL), *r;
    size_t i, n = 0;
    json_array_foreach(json_object_get(j, "requests"), i, r)
    {
        n += strstr(json_string_value(json_object_get(r, "path")), "connectionData") != NULL;
    }
    json_decref(j);
    assert_int_equal(n, 1);
    tracker_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(comment_create_find_update),
        cmocka_unit_test(marker_by_someone_else_is_not_ours),
        cmocka_unit_test(find_reads_every_page),
        cmocka_unit_test(body_of_200000_chars_is_split),
        cmocka_unit_test(rate_limited_is_eagain_with_the_wait),
        cmocka_unit_test(short_retry_after_is_waited_for),
        cmocka_unit_test(server_error_is_retried),
        cmocka_unit_test(hang_times_out),
        cmocka_unit_test(expired_token_is_eauth),
        cmocka_unit_test(labels_are_tags),
        cmocka_unit_test(reactions),
        cmocka_unit_test(permissions_follow_the_allowlist),
        cmocka_unit_test(unknown_things_are_not_found),
        cmocka_unit_test(pull_requests),
        cmocka_unit_test(pr_threads_and_replies),
        cmocka_unit_test(one_tracker_many_threads),
    };
    return cmocka_run_group_tests(tests, fake_start, fake_stop);
}
