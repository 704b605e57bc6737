/*
 * test_outbox.c - the outbox against the fake GitHub (tests/fakes/fake_github.py):
 * a comment sent once; a crash after GitHub accepted but before the store
 * recorded (found by its marker, not posted twice); the status comment
 * created once and edited in place, older updates coalesced; 500s, 429s
 * and unanswered requests on 30% of writes over 50 entries with every
 * comment landing exactly once; Retry-After honoured; a PR created once,
 * found by its branch on a retry, the session's PR fields and state set,
 * its comment following; permanent errors; order within a session while
 * other sessions proceed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_outbox_helpers.h"

#define PAT "ghp_outbox_test_token_01234"

#define GH_CONFIG                                                                                  \
    "{ \"data_dir\": \"@DIR@/data\","                                                              \
    "  \"public_url\": \"http://farm.test\","                                                      \
    "  \"github\": { \"api_url\": \"%s\", \"token\": \"env:FARM_TEST_OUTBOX_PAT\" },"              \
    "  \"repos\": [ { \"name\": \"o/r\", \"tracker\": \"github\", \"clone_url\": \"x\","           \
    "                 \"trigger\": { \"label\": \"agent\" } } ] }"

/* A GitHub client with short timeouts and no retries of its own, so the
 * outbox's retries are what is tested. */
static void use_fast_github(fixture *fx, long timeout_ms)
{
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;
    tracker *t = NULL;
    o.api_url = fx->gh.url;
    o.token = PAT;
    o.timeout_ms = timeout_ms;
    o.max_retries = 0;
    o.max_retry_wait_ms = 100;
    o.per_minute = 100000;
    o.per_hour = 100000;
    assert_int_equal(tracker_github_new(&t, &o), 0);
    farm_tracker_set(fx->f, "github", t);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || fake_start(&fx->gh, "fake_github.py") != 0)
        return -1;
    setenv("FARM_TEST_OUTBOX_PAT", PAT, 1);
    /* issues 1..8 in o/r */
    json_decref(ctl(&fx->gh, "POST", "/_fake/state",
                    "{\"tokens\": {\"" PAT "\": \"farm-bot\"}, \"repos\": {\"o/r\": {\"issues\": ["
                    "{\"title\": \"one\"}, {\"title\": \"two\"}, {\"title\": \"three\"},"
                    "{\"title\": \"four\"}, {\"title\": \"five\"}, {\"title\": \"six\"},"
                    "{\"title\": \"seven\"}, {\"title\": \"eight\"}]}}}"));
    if (!farm_on(fx, GH_CONFIG, fx->gh.url)) {
        fixture_free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_free(*state);
    return 0;
}

/* The comments of o/r as the fake holds them (decref). */
static json_t *gh_comments(fixture *fx)
{
    json_t *s = ctl(&fx->gh, "GET", "/_fake/state", NULL);
    json_t *c = json_incref(
        json_object_get(json_object_get(json_object_get(s, "repos"), "o/r"), "comments"));
    json_decref(s);
    return c;
}

/* How many of the fake's comments carry the marker for key. */
static int marked(fixture *fx, const char *key)
{
    json_t *list = gh_comments(fx), *c;
    size_t i;
    int n = 0;
    json_array_foreach(
        list, i,
        c) if (tracker_body_has_marker(json_string_value(json_object_get(c, "body")), key, 1)) n++;
    json_decref(list);
    return n;
}

static const char *comment_body(json_t *list, int64_t id)
{
    json_t *c;
    size_t i;
    json_array_foreach(list, i, c) if (json_integer_value(json_object_get(c, "id")) ==
                                       id) return json_string_value(json_object_get(c, "body"));
    return NULL;
}

/* ---- the basics ----------------------------------------------------------- */

static void comment_sent_once(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256];
    int64_t sid = new_session(fx, "github", "o/r", 1);

    outbox_key(key, sizeof key, sid, "started");
    assert_string_equal(key + strcspn(key, ":"), ":started");
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"On it.\"}");
    /* the same key again is not an error and adds nothing */
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"On it (again).\"}");
    /* this one uses the client made from the config (PAT from env:) */
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    outbox_kick(fx->f);
    outbox_entry *e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(e->attempts, 1);
    assert_non_null(e->remote_id);
    assert_int_equal(marked(fx, key), 1);
    json_t *list = gh_comments(fx);
    const char *body = comment_body(list, strtoll(e->remote_id, NULL, 10));
    assert_non_null(body);
    assert_non_null(strstr(body, "On it."));
    assert_null(strstr(body, "again"));
    json_decref(list);
    outbox_entry_free(e);

    outbox_stats st;
    assert_int_equal(outbox_stats_get(&st, fx->s), 0);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.failed, 0);
    assert_int_equal(fake_count(&fx->gh, "POST", "/issues/1/comments"), 1);
}

static void enqueue_refuses_bad_input(void **state)
{
    fixture *fx = *state;
    int64_t sid = new_session(fx, "github", "o/r", 1);
    assert_int_equal(outbox_enqueue(fx->s, sid, "tweet", "s1:x", "{\"body\": \"x\"}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_COMMENT, "bad key", "{\"body\": \"x\"}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_COMMENT, "s1:a--b", "{\"body\": \"x\"}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_COMMENT, "s1:x", "[1]"), FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_COMMENT, "s1:x", "{\"body\": 3}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_COMMENT, "s1:x", "{not json"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, 0, OUTBOX_COMMENT, "s1:x", "{\"body\": \"x\"}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_PR, "s1:pr", "{\"body\": \"no title\"}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_PR, "s1:pr",
                                    "{\"title\": \"t\", \"state_after\": \"sleeping\"}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_LABELS, "s1:l", "{\"add\": [1]}"),
                     FARM_EINVALID);
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_REVIEW_REPLY, "s1:rr", "{\"body\": \"x\"}"),
                     FARM_EINVALID);
    /* an oversized payload */
    size_t big = OUTBOX_PAYLOAD_MAX + 100;
    char *p = malloc(big + 1);
    assert_non_null(p);
    memset(p, 'a', big);
    memcpy(p, "{\"body\": \"", 10);
    memcpy(p + big - 2, "\"}", 2);
    p[big] = 0;
    assert_int_equal(outbox_enqueue(fx->s, sid, OUTBOX_COMMENT, "s1:big", p), FARM_EINVALID);
    free(p);
    outbox_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(store_outbox_list(&v, &n, fx->s, sid), 0);
    assert_int_equal(n, 0);
}

/* GitHub took the comment, then the farm died before recording it: the
 * entry is pending with an attempt spent and an expired lease. */
static void crash_after_accept_found_by_marker(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256];
    int64_t sid = new_session(fx, "github", "o/r", 2), posted = 0;
    outbox_entry *e = NULL;

    use_fast_github(fx, 5000);
    outbox_key(key, sizeof key, sid, "failed");
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"It failed.\"}");
    /* the crashed sender: leased long ago, lease already over */
    assert_int_equal(store_outbox_lease(&e, fx->s, "deadhost:1:1/w0", clock_wall_ms(), -1), 0);
    assert_string_equal(e->key, key);
    assert_int_equal(e->attempts, 1);
    outbox_entry_free(e);
    tracker *t = NULL;
    assert_int_equal(farm_tracker_get(&t, fx->f, "github"), 0);
    tracker_ref ref = {"o/r", 2, 0, 0};
    assert_int_equal(tracker_comment_create(&posted, t, &ref, key, "It failed."), 0);

    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(e->attempts, 2);
    assert_int_equal(strtoll(e->remote_id, NULL, 10), posted);
    outbox_entry_free(e);
    assert_int_equal(marked(fx, key), 1);
    assert_int_equal(fake_count(&fx->gh, "POST", "/issues/2/comments"), 1); /* ours only */
}

/* ---- the status comment --------------------------------------------------- */

static void status_created_once_then_edited(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char skey[200], body[128];
    int64_t sid = new_session(fx, "github", "o/r", 3);

    use_fast_github(fx, 5000);
    outbox_key(skey, sizeof skey, sid, "status");
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"queued\"}"), 0);
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    outbox_entry *e = wait_settled(fx, skey, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    int64_t cid = strtoll(e->remote_id, NULL, 10);
    outbox_entry_free(e);
    assert_int_equal(marked(fx, skey), 1);

    /* five updates while the sender is stopped: only the last goes out */
    outbox_stop(fx->f);
    for (int i = 1; i <= 5; i++) {
        snprintf(body, sizeof body, "{\"body\": \"update %d\"}", i);
        assert_int_equal(outbox_status(fx->s, sid, body), 0);
    }
    int patches = fake_count(&fx->gh, "PATCH", "/issues/comments/");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    char last[256];
    snprintf(last, sizeof last, "%s:6", skey);
    e = wait_settled(fx, last, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(strtoll(e->remote_id, NULL, 10), cid);
    outbox_entry_free(e);

    outbox_entry *v = NULL;
    size_t n = 0, superseded = 0;
    assert_int_equal(store_outbox_list(&v, &n, fx->s, sid), 0);
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++)
        superseded += strcmp(v[i].state, "superseded") == 0;
    outbox_entry_list_free(v, n);
    assert_int_equal(superseded, 4);
    assert_int_equal(fake_count(&fx->gh, "PATCH", "/issues/comments/") - patches, 1);

    /* still one status comment, holding the last text */
    assert_int_equal(marked(fx, skey), 1);
    json_t *list = gh_comments(fx);
    const char *text = comment_body(list, cid);
    assert_non_null(text);
    assert_non_null(strstr(text, "update 5"));
    json_decref(list);
    assert_int_equal(fake_count(&fx->gh, "POST", "/issues/3/comments"), 1);
}

/* A status update posted, then its sender died; a newer update supersedes
 * it and must find the comment rather than post a second one. */
static void status_crash_then_superseded(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char skey[200], last[256];
    int64_t sid = new_session(fx, "github", "o/r", 4), posted = 0;
    outbox_entry *e = NULL;

    use_fast_github(fx, 5000);
    outbox_key(skey, sizeof skey, sid, "status");
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"first\"}"), 0);
    assert_int_equal(store_outbox_lease(&e, fx->s, "deadhost:1:1/w0", clock_wall_ms(), -1), 0);
    outbox_entry_free(e);
    tracker *t = NULL;
    assert_int_equal(farm_tracker_get(&t, fx->f, "github"), 0);
    tracker_ref ref = {"o/r", 4, 0, 0};
    assert_int_equal(tracker_comment_create(&posted, t, &ref, skey, "first"), 0);
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"second\"}"), 0);

    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    snprintf(last, sizeof last, "%s:2", skey);
    e = wait_settled(fx, last, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(strtoll(e->remote_id, NULL, 10), posted);
    outbox_entry_free(e);
    e = wait_settled(fx, skey, 1000);
    assert_non_null(e);
    assert_string_equal(e->state, "superseded");
    outbox_entry_free(e);
    assert_int_equal(marked(fx, skey), 1);
    json_t *list = gh_comments(fx);
    assert_non_null(strstr(comment_body(list, posted), "second"));
    json_decref(list);
}

/* ---- chaos ------------------------------------------------------------------ */

static void chaos_thirty_percent(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256], payload[128];
    int64_t sids[5];
    unsigned seed = 42;

    use_fast_github(fx, 400);
    o.no_answer_ms = 3000; /* well beyond the hangs below: a late landing is seen */
    /* ~30% of writes fail: after 1-3 good ones (mean 2.3) one fails; a mix of
     * 500s, 429s with Retry-After, and requests that hang past the client's
     * timeout and are carried out anyway */
    for (int i = 0; i < 40; i++) {
        int skip = 1 + (int)(rand_r(&seed) % 3);
        int kind = (int)(rand_r(&seed) % 10);
        if (kind < 5)
            CTL(&fx->gh, "POST", "/_fake/fail",
                "{\"method\": \"POST\", \"path\": \"/comments$\", \"skip\": %d, \"status\": 500}",
                skip);
        else if (kind < 9)
            CTL(&fx->gh, "POST", "/_fake/fail",
                "{\"method\": \"POST\", \"path\": \"/comments$\", \"skip\": %d, \"status\": 429,"
                " \"retry_after\": 1}",
                skip);
        else
            CTL(&fx->gh, "POST", "/_fake/fail",
                "{\"method\": \"POST\", \"path\": \"/comments$\", \"skip\": %d, \"hang\": 0.8,"
                " \"then\": \"process\"}",
                skip);
    }
    for (int s = 0; s < 5; s++)
        sids[s] = new_session(fx, "github", "o/r", 1 + s);
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d", i);
        outbox_key(key, sizeof key, sids[i % 5], name);
        snprintf(payload, sizeof payload, "{\"body\": \"comment %d\"}", i);
        enqueue(fx, sids[i % 5], OUTBOX_COMMENT, key, payload);
    }
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    assert_int_equal(wait_all_settled(fx, 120000), 0);

    outbox_stats st;
    assert_int_equal(outbox_stats_get(&st, fx->s), 0);
    assert_int_equal(st.sent, 50);
    assert_int_equal(st.failed, 0);
    assert_true(st.retries >= 5); /* the failures really happened */
    json_t *stats = ctl(&fx->gh, "GET", "/_fake/stats", NULL);
    json_t *by = json_object_get(stats, "by_status");
    assert_true(json_integer_value(json_object_get(by, "500")) > 0);
    assert_true(json_integer_value(json_object_get(by, "429")) > 0);
    json_decref(stats);

    /* every comment exactly once, and in each session in enqueue order */
    json_t *list = gh_comments(fx);
    assert_int_equal(json_array_size(list), 50);
    json_decref(list);
    for (int s = 0; s < 5; s++) {
        int64_t prev = 0;
        for (int i = s; i < 50; i += 5) {
            char name[32];
            snprintf(name, sizeof name, "c%d", i);
            outbox_key(key, sizeof key, sids[s], name);
            assert_int_equal(marked(fx, key), 1);
            outbox_entry *e = NULL;
            assert_int_equal(store_outbox_get_by_key(&e, fx->s, key), 0);
            int64_t id = strtoll(e->remote_id, NULL, 10);
            assert_true(id > prev);
            prev = id;
            outbox_entry_free(e);
        }
    }
}

static void retry_after_honoured(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256];
    int64_t sid = new_session(fx, "github", "o/r", 5);

    use_fast_github(fx, 5000);
    CTL(&fx->gh, "POST", "/_fake/fail",
        "{\"method\": \"POST\", \"path\": \"/comments$\", \"status\": 429, \"retry_after\": 2}");
    outbox_key(key, sizeof key, sid, "started");
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"hello\"}");
    int64_t t0 = clock_wall_ms();
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    /* the retry is scheduled at least Retry-After ahead, far beyond the
     * 20 ms backoff */
    outbox_entry *e = NULL;
    int64_t deadline = clock_mono_ms() + 10000;
    for (;;) {
        assert_int_equal(store_outbox_get_by_key(&e, fx->s, key), 0);
        if (e->attempts >= 1 && e->last_error)
            break;
        outbox_entry_free(e);
        assert_true(clock_mono_ms() < deadline);
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_string_equal(e->state, "pending");
    assert_true(e->next_try_ms >= t0 + 2000);
    assert_non_null(strstr(e->last_error, "EAGAIN"));
    outbox_entry_free(e);
    e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(e->attempts, 2);
    outbox_entry_free(e);

    json_t *r = ctl(&fx->gh, "GET", "/_fake/requests", NULL), *q;
    size_t i;
    double first = 0, second = 0;
    json_array_foreach(json_object_get(r, "requests"), i, q)
    {
        if (strcmp(json_string_value(json_object_get(q, "method")), "POST") != 0)
            continue;
        double t = json_real_value(json_object_get(q, "time"));
        if (first == 0)
            first = t;
        else if (second == 0)
            second = t;
    }
    json_decref(r);
    assert_true(second - first >= 1.9);
    assert_int_equal(marked(fx, key), 1);
}

/* ---- pull requests -------------------------------------------------------- */

static void pr_created_once_with_bookkeeping(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256], ckey[300];
    int64_t sid = new_session(fx, "github", "o/r", 6);

    use_fast_github(fx, 5000);
    outbox_key(key, sizeof key, sid, "pr");
    enqueue(fx, sid, OUTBOX_PR, key,
            "{\"title\": \"Fix six\", \"body\": \"The fix.\", \"head\": \"farm/6-six\","
            " \"base\": \"main\", \"state_after\": \"review\","
            " \"then_comment\": \"PR opened: {{pr_url}} (#{{pr_number}})\"}");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    snprintf(ckey, sizeof ckey, "%s:comment", key);
    outbox_entry *c = wait_settled(fx, ckey, 20000);
    assert_non_null(c);
    assert_string_equal(c->state, "sent");
    outbox_entry_free(c);
    outbox_entry *e = wait_settled(fx, key, 1000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");

    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, sid), 0);
    assert_int_equal(s->pr_number, strtoll(e->remote_id, NULL, 10));
    assert_true(s->pr_number > 0);
    int64_t pr_number = s->pr_number;
    assert_non_null(s->pr_url);
    assert_string_equal(s->state, "review");
    store_session_free(s);
    outbox_entry_free(e);

    store_event *ev = NULL;
    size_t n = 0, found = 0;
    assert_int_equal(store_event_list(&ev, &n, fx->s, sid, 0, 0), 0);
    for (size_t i = 0; i < n; i++)
        found += strcmp(ev[i].kind, "pr_opened") == 0;
    store_event_list_free(ev, n);
    assert_int_equal(found, 1);

    assert_int_equal(fake_count(&fx->gh, "POST", "/pulls"), 1);
    assert_int_equal(marked(fx, ckey), 1);
    /* the status comment followed the session into review, with the PR */
    char skey[200];
    outbox_key(skey, sizeof skey, sid, "status");
    outbox_entry *se = wait_settled(fx, skey, 20000);
    assert_non_null(se);
    assert_string_equal(se->state, "sent");
    json_t *sl = gh_comments(fx);
    const char *sbody = comment_body(sl, strtoll(se->remote_id, NULL, 10));
    assert_non_null(sbody);
    assert_non_null(strstr(sbody, "Waiting for review"));
    assert_non_null(strstr(sbody, "/o/r/pull/"));
    json_decref(sl);
    outbox_entry_free(se);
    /* the placeholders were filled in */
    assert_int_equal(store_outbox_get_by_key(&c, fx->s, ckey), 0);
    json_t *list = gh_comments(fx);
    const char *cbody = comment_body(list, strtoll(c->remote_id, NULL, 10));
    char want[128];
    snprintf(want, sizeof want, "/o/r/pull/%lld (#%lld)", (long long)pr_number,
             (long long)pr_number);
    assert_non_null(cbody);
    assert_non_null(strstr(cbody, want));
    assert_null(strstr(cbody, "{{"));
    json_decref(list);
    outbox_entry_free(c);
    json_t *st = ctl(&fx->gh, "GET", "/_fake/state", NULL);
    json_t *pulls = json_object_get(json_object_get(json_object_get(st, "repos"), "o/r"), "pulls");
    assert_int_equal(json_array_size(pulls), 1);
    const char *pbody = json_string_value(json_object_get(json_array_get(pulls, 0), "body"));
    assert_true(tracker_body_has_marker(pbody, key, 1));
    json_decref(st);
}

static void pr_found_by_branch_after_crash(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256];
    int64_t sid = new_session(fx, "github", "o/r", 7);
    outbox_entry *e = NULL;

    use_fast_github(fx, 5000);
    outbox_key(key, sizeof key, sid, "pr");
    enqueue(fx, sid, OUTBOX_PR, key,
            "{\"title\": \"Fix seven\", \"body\": \"v2 text\", \"head\": \"farm/7-seven\","
            " \"state_after\": \"review\"}");
    assert_int_equal(store_outbox_lease(&e, fx->s, "deadhost:1:1/w0", clock_wall_ms(), -1), 0);
    outbox_entry_free(e);
    /* the crashed sender had opened it */
    tracker *t = NULL;
    tracker_pr *pr = NULL;
    assert_int_equal(farm_tracker_get(&t, fx->f, "github"), 0);
    tracker_ref ref = {"o/r", 7, 0, 0};
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    spec.key = key;
    spec.title = "Fix seven";
    spec.body = "v1 text";
    spec.head_branch = "farm/7-seven";
    spec.base_branch = "main";
    assert_int_equal(tracker_pr_create(&pr, t, &ref, &spec), 0);
    int64_t number = pr->number;
    tracker_pr_free(pr);

    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(strtoll(e->remote_id, NULL, 10), number);
    outbox_entry_free(e);
    assert_int_equal(fake_count(&fx->gh, "POST", "/pulls"), 1);
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, sid), 0);
    assert_int_equal(s->pr_number, number);
    assert_string_equal(s->state, "review");
    store_session_free(s);
    /* and its text is the entry's */
    assert_int_equal(tracker_pr_find_by_branch(&pr, t, &ref, "farm/7-seven"), 0);
    assert_non_null(strstr(pr->body, "v2 text"));
    tracker_pr_free(pr);
}

/* ---- errors --------------------------------------------------------------- */

static void permanent_error_fails(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256], key2[256];
    int64_t sid = new_session(fx, "github", "o/r", 404); /* no such issue */
    int64_t sid2 = new_session(fx, "github", "o/r", 8);

    use_fast_github(fx, 5000);
    o.permanent_attempts = 2;
    outbox_key(key, sizeof key, sid, "started");
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"hello\"}");
    outbox_key(key2, sizeof key2, sid2, "onpr");
    enqueue(fx, sid2, OUTBOX_COMMENT, key2, "{\"body\": \"on a PR\", \"on_pr\": true}");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    outbox_entry *e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "failed");
    assert_int_equal(e->attempts, 2);
    assert_non_null(e->last_error);
    assert_non_null(strstr(e->last_error, "ENOTFOUND"));
    outbox_entry_free(e);
    /* a payload that cannot work (no PR yet) fails at once */
    e = wait_settled(fx, key2, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "failed");
    assert_int_equal(e->attempts, 1);
    assert_non_null(strstr(e->last_error, "no PR"));
    outbox_entry_free(e);
    outbox_stats st;
    assert_int_equal(outbox_stats_get(&st, fx->s), 0);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.pending, 0);
    /* the session's log says what the tracker did not get */
    store_event *ev = NULL;
    size_t n = 0, found = 0;
    assert_int_equal(store_event_list(&ev, &n, fx->s, sid, 0, 0), 0);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ev[i].kind, "tracker_error")) {
            found++;
            assert_non_null(strstr(ev[i].body, key));
            assert_non_null(strstr(ev[i].body, "ENOTFOUND"));
        }
    store_event_list_free(ev, n);
    assert_int_equal(found, 1);
}

static void auth_error_fails(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256];
    int64_t sid = new_session(fx, "github", "o/r", 1);
    tracker_github_opts go = TRACKER_GITHUB_OPTS_INIT;
    tracker *t = NULL;

    go.api_url = fx->gh.url;
    go.token = "ghp_not_a_valid_token_at_all";
    go.max_retries = 0;
    assert_int_equal(tracker_github_new(&t, &go), 0);
    farm_tracker_set(fx->f, "github", t);
    o.permanent_attempts = 3;
    outbox_key(key, sizeof key, sid, "started");
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"hello\"}");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    outbox_entry *e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "failed");
    assert_int_equal(e->attempts, 3);
    assert_non_null(strstr(e->last_error, "EAUTH"));
    outbox_entry_free(e);
    assert_int_equal(marked(fx, key), 0);
}

/* Session A's head keeps failing: A's later entries wait behind it, in
 * order, while session B's go out. */
static void order_kept_while_others_proceed(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256];
    int64_t a = new_session(fx, "github", "o/r", 1), b = new_session(fx, "github", "o/r", 2);

    use_fast_github(fx, 5000);
    o.backoff_ms = 300;
    o.max_backoff_ms = 300;
    o.max_attempts = 100000; /* A's head is retried until B is through */
    /* A's writes fail until B is through */
    CTL(&fx->gh, "POST", "/_fake/fail",
        "{\"method\": \"POST\", \"path\": \"/issues/1/comments$\", \"status\": 500, "
        "\"count\": 100000}");
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        outbox_key(key, sizeof key, a, name);
        enqueue(fx, a, OUTBOX_COMMENT, key, "{\"body\": \"from A\"}");
    }
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "b%d", i);
        outbox_key(key, sizeof key, b, name);
        enqueue(fx, b, OUTBOX_COMMENT, key, "{\"body\": \"from B\"}");
    }
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    outbox_key(key, sizeof key, b, "b4");
    outbox_entry *e = wait_settled(fx, key, 20000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    outbox_entry_free(e);
    /* B is done; A's head has failed at least once, its second entry has
     * not been tried */
    outbox_key(key, sizeof key, a, "a1");
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, key), 0);
    assert_string_equal(e->state, "pending");
    assert_int_equal(e->attempts, 0);
    outbox_entry_free(e);
    outbox_key(key, sizeof key, a, "a0");
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, key), 0);
    assert_true(e->attempts >= 1);
    outbox_entry_free(e);

    CTL(&fx->gh, "DELETE", "/_fake/fail", NULL);
    assert_int_equal(wait_all_settled(fx, 30000), 0);
    int64_t prev = 0;
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        outbox_key(key, sizeof key, a, name);
        assert_int_equal(store_outbox_get_by_key(&e, fx->s, key), 0);
        assert_string_equal(e->state, "sent");
        int64_t id = strtoll(e->remote_id, NULL, 10);
        assert_true(id > prev);
        prev = id;
        outbox_entry_free(e);
        assert_int_equal(marked(fx, key), 1);
    }
}

/* Status updates coalesce only with nothing else of the session between
 * them: the status comment appears where it was first enqueued. */
static void status_coalescing_keeps_place(void **state)
{
    fixture *fx = *state;
    int64_t sid = new_session(fx, "github", "o/r", 1), now;
    outbox_entry *e = NULL;

    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"one\"}"), 0);
    enqueue(fx, sid, OUTBOX_COMMENT, "s1:hello", "{\"body\": \"hello\"}");
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"two\"}"), 0);
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"three\"}"), 0);
    now = clock_wall_ms();
    assert_int_equal(store_outbox_lease(&e, fx->s, "me/w0", now, 30000), 0);
    assert_string_equal(e->key, "s1:status"); /* not overtaken: a comment follows it */
    assert_int_equal(store_outbox_sent(fx->s, e->id, "1"), 0);
    outbox_entry_free(e);
    assert_int_equal(store_outbox_lease(&e, fx->s, "me/w0", now, 30000), 0);
    assert_string_equal(e->key, "s1:hello");
    assert_int_equal(store_outbox_sent(fx->s, e->id, "2"), 0);
    outbox_entry_free(e);
    assert_int_equal(store_outbox_lease(&e, fx->s, "me/w0", now, 30000), 0);
    assert_string_equal(e->key, "s1:status:3"); /* "two" was overtaken by "three" */
    outbox_entry_free(e);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:status:2"), 0);
    assert_string_equal(e->state, "superseded");
    outbox_entry_free(e);
}

/* Replies in a review thread: sent once, and found among the PR's review
 * comments after a crash. */
static void review_replies(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    int64_t sid = new_session(fx, "github", "o/r", 1), posted = 0;
    outbox_entry *e = NULL;
    char payload[256];

    use_fast_github(fx, 5000);
    json_t *ids = ctl(&fx->gh, "POST", "/_fake/state",
                      "{\"repos\": {\"o/r\": {\"pulls\": [{\"title\": \"Fix\", \"head\": "
                      "\"farm/1-fix\", \"user\": \"farm-bot\"}]}}}");
    int64_t pr = json_integer_value(json_array_get(
        json_object_get(json_object_get(json_object_get(ids, "ids"), "o/r"), "pulls"), 0));
    json_decref(ids);
    assert_true(pr > 0);
    ids = ctl(&fx->gh, "POST", "/_fake/state",
              "{\"repos\": {\"o/r\": {\"review_comments\": [{\"pull\": %lld, \"path\": "
              "\"a.c\", \"line\": 3, \"body\": \"please rename\", \"user\": \"alice\"}]}}}",
              (long long)pr);
    int64_t cid = json_integer_value(json_array_get(
        json_object_get(json_object_get(json_object_get(ids, "ids"), "o/r"), "review_comments"),
        0));
    json_decref(ids);
    assert_true(cid > 0);

    snprintf(payload, sizeof payload,
             "{\"comment_id\": %lld, \"pr_number\": %lld, \"body\": \"Renamed.\"}", (long long)cid,
             (long long)pr);
    enqueue(fx, sid, OUTBOX_REVIEW_REPLY, "s1:r2:reply:1", payload);
    snprintf(payload, sizeof payload,
             "{\"comment_id\": %lld, \"pr_number\": %lld, \"body\": \"And tested.\"}",
             (long long)cid, (long long)pr);
    enqueue(fx, sid, OUTBOX_REVIEW_REPLY, "s1:r2:reply:2", payload);
    /* the first was posted by a sender that died before recording it */
    assert_int_equal(store_outbox_lease(&e, fx->s, "deadhost:1:1/w0", clock_wall_ms(), -1), 0);
    assert_string_equal(e->key, "s1:r2:reply:1");
    outbox_entry_free(e);
    tracker *t = NULL;
    assert_int_equal(farm_tracker_get(&t, fx->f, "github"), 0);
    tracker_ref ref = {"o/r", pr, 1, 0};
    assert_int_equal(
        tracker_review_comment_reply(&posted, t, &ref, pr, cid, "s1:r2:reply:1", "Renamed."), 0);

    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    assert_int_equal(wait_all_settled(fx, 20000), 0);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:r2:reply:1"), 0);
    assert_string_equal(e->state, "sent");
    assert_int_equal(strtoll(e->remote_id, NULL, 10), posted);
    outbox_entry_free(e);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:r2:reply:2"), 0);
    assert_string_equal(e->state, "sent");
    outbox_entry_free(e);

    json_t *st = ctl(&fx->gh, "GET", "/_fake/state", NULL), *c;
    json_t *rcs =
        json_object_get(json_object_get(json_object_get(st, "repos"), "o/r"), "review_comments");
    size_t i;
    int one = 0, two = 0;
    json_array_foreach(rcs, i, c)
    {
        const char *b = json_string_value(json_object_get(c, "body"));
        one += tracker_body_has_marker(b, "s1:r2:reply:1", 1);
        two += tracker_body_has_marker(b, "s1:r2:reply:2", 1);
    }
    json_decref(st);
    assert_int_equal(one, 1);
    assert_int_equal(two, 1);
}

/* An idle sender sleeps until a session's head is due: entries waiting
 * behind a head that waits do not count (they would make it spin). */
static void next_due_follows_heads(void **state)
{
    fixture *fx = *state;
    int64_t sid = new_session(fx, "github", "o/r", 1), now, due = 0;
    outbox_entry *e = NULL;

    enqueue(fx, sid, OUTBOX_COMMENT, "s1:first", "{\"body\": \"1\"}");
    enqueue(fx, sid, OUTBOX_COMMENT, "s1:second", "{\"body\": \"2\"}");
    now = clock_wall_ms(); /* both are due from here on */
    assert_int_equal(store_outbox_next_due(&due, fx->s), 0);
    assert_true(due > 0 && due <= clock_wall_ms());
    assert_int_equal(store_outbox_lease(&e, fx->s, "me/w0", now, 30000), 0);
    assert_string_equal(e->key, "s1:first");
    /* the head is leased: the second is not leasable, nothing is due */
    outbox_entry *none = NULL;
    assert_int_equal(store_outbox_lease(&none, fx->s, "me/w1", now, 30000), FARM_ENOTFOUND);
    assert_int_equal(store_outbox_retry(fx->s, e->id, "someone-else/w0", now + 1, "x"),
                     FARM_ECONFLICT);
    assert_int_equal(store_outbox_retry(fx->s, e->id, "me/w0", now + 60000, "EAGAIN: later"), 0);
    outbox_entry_free(e);
    assert_int_equal(store_outbox_next_due(&due, fx->s), 0);
    assert_true(due >= now + 60000);
    assert_int_equal(store_outbox_lease(&none, fx->s, "me/w1", clock_wall_ms(), 30000),
                     FARM_ENOTFOUND);
    /* a later time: the head is due again, still before the second */
    assert_int_equal(store_outbox_lease(&e, fx->s, "me/w1", now + 60001, 30000), 0);
    assert_string_equal(e->key, "s1:first");
    assert_int_equal(e->attempts, 2);
    assert_int_equal(store_outbox_sent(fx->s, e->id, "77"), 0);
    assert_int_equal(store_outbox_sent(fx->s, e->id, "78"), FARM_ENOTFOUND); /* once */
    outbox_entry_free(e);
    assert_int_equal(store_outbox_lease(&e, fx->s, "me/w1", now + 60001, 30000), 0);
    assert_string_equal(e->key, "s1:second");
    outbox_entry_free(e);
}

/* Labels and a reaction go through too (idempotent, no marker). */
static void labels_and_reaction(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    int64_t sid = new_session(fx, "github", "o/r", 9);

    use_fast_github(fx, 5000);
    /* issue 9, labelled "agent" */
    CTL(&fx->gh, "POST", "/_fake/state",
        "{\"repos\": {\"o/r\": {\"issues\": [{\"title\": \"x\","
        " \"labels\": [\"agent\"]}]}}}");
    enqueue(fx, sid, OUTBOX_REACT, "s9:eyes", "{\"comment_id\": 0, \"reaction\": \"eyes\"}");
    enqueue(fx, sid, OUTBOX_LABELS, "s9:labels",
            "{\"add\": [\"farm:working\"], \"remove\": [\"agent\"]}");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    assert_int_equal(wait_all_settled(fx, 20000), 0);
    outbox_stats st;
    assert_int_equal(outbox_stats_get(&st, fx->s), 0);
    assert_int_equal(st.sent, 2);
    json_t *s = ctl(&fx->gh, "GET", "/_fake/state", NULL);
    json_t *issues = json_object_get(json_object_get(json_object_get(s, "repos"), "o/r"), "issues");
    json_t *issue = NULL, *it;
    size_t i;
    json_array_foreach(issues, i, it) if (json_integer_value(json_object_get(it, "number")) == 9)
        issue = it;
    assert_non_null(issue);
    char *dump = json_dumps(issue, JSON_COMPACT);
    assert_non_null(strstr(dump, "farm:working"));
    assert_null(strstr(dump, "\"agent\""));
    free(dump);
    json_decref(s);
    /* the issue's reactions are not in the fake's dump: its request log */
    assert_int_equal(fake_count(&fx->gh, "POST", "/issues/9/reactions"), 1);
}

int main(void)
{
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(comment_sent_once, setup, teardown),
        cmocka_unit_test_setup_teardown(enqueue_refuses_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_after_accept_found_by_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(status_created_once_then_edited, setup, teardown),
        cmocka_unit_test_setup_teardown(status_crash_then_superseded, setup, teardown),
        cmocka_unit_test_setup_teardown(chaos_thirty_percent, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_after_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(pr_created_once_with_bookkeeping, setup, teardown),
        cmocka_unit_test_setup_teardown(pr_found_by_branch_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(permanent_error_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_error_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(order_kept_while_others_proceed, setup, teardown),
        cmocka_unit_test_setup_teardown(labels_and_reaction, setup, teardown),
        cmocka_unit_test_setup_teardown(next_due_follows_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(review_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(status_coalescing_keeps_place, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
