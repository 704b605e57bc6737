/*
 * test_digest.c - the digest: the "digest" config section and its errors,
 * the facts derived from a session's log (tests, diffstat, step, reason,
 * question, rounds, duration), a session's draft PR and its rounded measures, the sections and
 * totals of a window, the Markdown of the daily comment (links, escaping), and the daily post
 * enqueued once per day however often it is asked for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "farm/config/config.h"
#include "farm/digest/digest.h"
#include "farm/farm.h"
#include "farm/store/store.h"
#include "farm/store/store_inspect.h"
#include "farm/store/store_run.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dir;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (asprintf(&dir, "%s/farm-test-digest-XXXXXX", base) < 0 || !mkdtemp(dir))
        return -1;
    setenv("FARM_TEST_GH_TOKEN", "ghp_test_token_value_1234", 1);
    return 0;
}

static int teardown(void **state)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return 0;
}

static const char *write_config(const char *digest_json)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/farm.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"listen\": \"127.0.0.1:0\", \"data_dir\": \"%s/data\","
            " \"public_url\": \"https://farm.example.com\","
            " \"github\": {\"api_url\": \"http://127.0.0.1:9\", \"token\": "
            "\"env:FARM_TEST_GH_TOKEN\"},"
            " \"repos\": [{\"name\": \"octo/app\", \"tracker\": \"github\","
            " \"clone_url\": \"https://github.com/octo/app.git\"}]%s%s}",
            dir, digest_json ? ", \"digest\": " : "", digest_json ? digest_json : "");
    fclose(f);
    return path;
}

static char *load_errors(const char *digest_json)
{
    config *c = NULL;
    char *errors = NULL;
    assert_int_equal(config_load(&c, write_config(digest_json), &errors), FARM_EINVALID);
    assert_null(c);
    assert_non_null(errors);
    return errors;
}

static void test_config_digest(void **state)
{
    config *c = NULL;
    char *errors = NULL;
    int rc = config_load(&c,
                         write_config("{\"tracker\": \"github\", \"repo\": \"octo/app\", "
                                      "\"issue\": 1, \"hour_utc\": 7}"),
                         &errors);
    if (rc)
        fail_msg("%s", errors);
    assert_true(c->digest.enabled);
    assert_string_equal(c->digest.tracker, "github");
    assert_string_equal(c->digest.repo, "octo/app");
    assert_int_equal(c->digest.issue, 1);
    assert_int_equal(c->digest.hour_utc, 7);
    config_free(c);

    /* hour defaults to 7; without the section there is no digest */
    assert_int_equal(config_load(&c,
                                 write_config("{\"tracker\": \"github\", \"repo\": \"OCTO/app\", "
                                              "\"issue\": 3}"),
                                 NULL),
                     0);
    assert_int_equal(c->digest.hour_utc, 7);
    config_free(c);
    assert_int_equal(config_load(&c, write_config(NULL), NULL), 0);
    assert_false(c->digest.enabled);
    config_free(c);

    char *e = load_errors("{\"tracker\": \"github\", \"repo\": \"octo/app\"}");
    assert_non_null(strstr(e, "digest.issue: required key is missing"));
    free(e);
    e = load_errors("{\"tracker\": \"github\", \"repo\": \"octo/other\", \"issue\": 1}");
    assert_non_null(strstr(e, "digest.repo: \"octo/other\" is not among the repos"));
    free(e);
    e = load_errors("{\"tracker\": \"azure\", \"repo\": \"octo/app\", \"issue\": 1}");
    assert_non_null(strstr(e, "digest.repo:"));
    free(e);
    e = load_errors(
        "{\"tracker\": \"github\", \"repo\": \"octo/app\", \"issue\": 1, \"hour_utc\": 24}");
    assert_non_null(strstr(e, "digest.hour_utc: must be between 0 and 23"));
    free(e);
    e = load_errors("{\"tracker\": \"jira\", \"repo\": \"octo/app\", \"issue\": 0, \"at\": 1}");
    assert_non_null(strstr(e, "digest.tracker: must be one of"));
    assert_non_null(strstr(e, "digest.issue: must be between 1"));
    assert_non_null(strstr(e, "digest.at"));
    free(e);
    e = load_errors("[1]");
    assert_non_null(strstr(e, "digest: expected an object"));
    free(e);
}

/* ---- a farm with sessions ------------------------------------------------------ */

typedef struct seed {
    const char *state;
    int64_t number;
    const char *events[8][2]; /* kind, body */
    int64_t id;               /* out */
} seed;

static int seed_write(store_tx *tx, void *arg)
{
    seed *sd = arg;
    store_session s = {0};
    s.tracker = "github";
    s.repo = "octo/app";
    s.number = sd->number;
    s.title = "Make @everyone [happy](javascript:x) `now`";
    s.url = "https://github.com/octo/app/issues/1";
    int rc = store_tx_session_insert(&sd->id, tx, &s);
    if (rc)
        return rc;
    for (int i = 0; i < 8 && sd->events[i][0]; i++)
        if ((rc =
                 store_tx_event_append(NULL, tx, sd->id, sd->events[i][0], NULL, sd->events[i][1])))
            return rc;
    return store_tx_session_state_set(tx, sd->id, sd->state);
}

static farm *open_farm(const char *digest_json)
{
    config *c = NULL;
    farm *f = NULL;
    char *errors = NULL;
    char data[4200];
    snprintf(data, sizeof(data), "%s/data", dir);
    mkdir(data, 0700);
    if (config_load(&c, write_config(digest_json), &errors))
        fail_msg("%s", errors);
    if (farm_open(&f, c))
        fail_msg("farm_open: %s", farm_error_last());
    return f;
}

static json_t *find(json_t *list, int64_t id)
{
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) if (json_integer_value(json_object_get(o, "id")) == id) return o;
    return NULL;
}

static void test_digest_facts_and_sections(void **state)
{
    farm *f = open_farm(NULL);
    store *st = farm_store(f);
    seed review = {"review",
                   10,
                   {{"run_started", "{\"run\":1,\"kind\":\"run\"}"},
                    {"step", "{\"run\":1,\"step\":\"test\",\"status\":\"done\",\"round\":1}"},
                    {"test_result", "{\"run\":1,\"round\":1,\"exit\":1,\"passed\":false}"},
                    {"step", "{\"run\":1,\"step\":\"test\",\"status\":\"done\",\"round\":2}"},
                    {"test_result", "{\"run\":1,\"round\":2,\"exit\":0,\"passed\":true}"},
                    {"run_finished", "{\"run\":1,\"outcome\":\"pr\",\"diffstat\":{\"files\":2,"
                                     "\"insertions\":5,\"deletions\":1}}"}},
                   0};
    seed failed = {"failed",
                   11,
                   {{"run_started", "{\"run\":1}"},
                    {"failed", "{\"run\":1,\"reason\":\"setup exited 2\"}"},
                    {"run_finished", "{\"run\":1,\"outcome\":\"failed\"}"}},
                   0};
    seed waiting = {"waiting",
                    12,
                    {{"run_started", "{\"run\":1}"},
                     {"question", "{\"run\":1,\"question\":\"Tabs or spaces?\"}"}},
                    0};
    seed answered = {"running",
                     13,
                     {{"question", "{\"run\":1,\"question\":\"Old question\"}"},
                      {"answer", "{\"text\":\"spaces\"}"},
                      {"step", "{\"run\":2,\"step\":\"agent\",\"status\":\"started\"}"}},
                     0};
    seed queued = {"queued", 14, {{NULL, NULL}}, 0};
    seed *all[] = {&review, &failed, &waiting, &answered, &queued};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(store_write(st, seed_write, all[i]), 0);

    json_t *d = NULL;
    int64_t now = clock_wall_ms();
    assert_int_equal(digest_build(&d, st, now - 3600 * 1000, now), 0);

    json_t *r = find(json_object_get(d, "review"), review.id);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "tests")), "passed");
    assert_int_equal(json_integer_value(json_object_get(r, "rounds")), 2);
    json_t *ds = json_object_get(r, "diffstat");
    assert_int_equal(json_integer_value(json_object_get(ds, "files")), 2);
    assert_int_equal(json_integer_value(json_object_get(ds, "insertions")), 5);
    assert_true(json_is_null(json_object_get(r, "reason")));

    json_t *fl = find(json_object_get(d, "failed"), failed.id);
    assert_non_null(fl);
    assert_string_equal(json_string_value(json_object_get(fl, "reason")), "setup exited 2");
    assert_true(json_is_null(json_object_get(fl, "tests")));

    json_t *w = find(json_object_get(d, "waiting"), waiting.id);
    assert_string_equal(json_string_value(json_object_get(w, "question")), "Tabs or spaces?");

    json_t *run = find(json_object_get(d, "running"), answered.id);
    assert_non_null(run);
    assert_true(json_is_null(json_object_get(run, "question"))); /* answered, and not waiting */
    json_t *step = json_object_get(run, "step");
    assert_string_equal(json_string_value(json_object_get(step, "name")), "agent");
    assert_string_equal(json_string_value(json_object_get(step, "status")), "started");

    assert_non_null(find(json_object_get(d, "queued"), queued.id));
    assert_int_equal(json_array_size(json_object_get(d, "done")), 0);
    json_t *t = json_object_get(d, "totals");
    assert_int_equal(json_integer_value(json_object_get(t, "sessions")), 5);
    assert_int_equal(json_integer_value(json_object_get(t, "review")), 1);
    assert_int_equal(json_integer_value(json_object_get(t, "failed")), 1);
    assert_int_equal(json_integer_value(json_object_get(t, "queued")), 1);

    /* a window that starts later leaves the ended ones out, not the waiting ones */
    json_t *later = NULL;
    assert_int_equal(digest_build(&later, st, now + 1000, now + 2000), 0);
    assert_int_equal(json_array_size(json_object_get(later, "failed")), 0);
    assert_int_equal(json_array_size(json_object_get(later, "review")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(later, "totals"), "sessions")), 0);
    json_decref(later);

    char *md = NULL;
    assert_int_equal(digest_markdown(&md, d, "https://farm.example.com"), 0);
    assert_non_null(strstr(md, "#### Pull requests waiting for review (1)"));
    assert_non_null(strstr(md, "tests passed · 2 files +5 −1"));
    assert_non_null(strstr(md, "reason: setup exited 2"));
    assert_non_null(strstr(md, "asks: Tabs or spaces?"));
    assert_non_null(strstr(md, "(https://farm.example.com/sessions/"));
    assert_non_null(strstr(md, "[octo/app#10](https://github.com/octo/app/issues/1)"));
    /* a title cannot mention people or inject links and code */
    assert_null(strstr(md, "@everyone"));
    assert_non_null(strstr(md, "@\u200beveryone \\[happy\\](javascript:x) \\`now\\`"));
    free(md);
    json_decref(d);

    /* annotate more sessions than allowed: refused */
    assert_int_equal(digest_sessions_annotate(NULL, NULL, STORE_LIST_MAX + 1, st, now),
                     FARM_EINVALID);
    farm_close(f);
}

/* What a session's JSON says of its pull request and its measures: whether
 * the PR is a draft and why (pr_draft, pr_draft_reason, read from the store),
 * and seconds and dollars rounded as people read them, not as summed
 * doubles come out (0.07699999999999999). */
static int usage_and_draft(store_tx *tx, void *arg)
{
    int64_t id = *(int64_t *)arg;
    int rc = store_tx_session_usage_add(tx, id, 0.0389996, 0.1);
    if (!rc)
        rc = store_tx_session_usage_add(tx, id, 0.038, 0.0234567891);
    if (!rc)
        rc = store_tx_session_pr_draft_set(tx, id, 1, "the tests still fail after 2 rounds");
    return rc;
}

static void test_session_json_says_draft_and_rounds(void **state)
{
    store_session s = {0};
    s.id = 4;
    s.tracker = "github";
    s.repo = "octo/app";
    s.number = 3;
    s.state = "review";
    s.agent_seconds = 0.0769996;
    s.cost = 0.12345678;
    json_t *o = digest_session_json(&s);
    assert_non_null(o);
    assert_true(json_is_false(json_object_get(o, "pr_draft")));
    assert_true(json_is_null(json_object_get(o, "pr_draft_reason")));
    assert_true(json_real_value(json_object_get(o, "agent_seconds")) == 0.077);
    assert_true(json_real_value(json_object_get(o, "cost")) == 0.123457);
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    assert_non_null(strstr(text, "\"agent_seconds\":0.077,"));
    assert_non_null(strstr(text, "\"cost\":0.123457,"));
    free(text);
    json_decref(o);

    /* through the store and the digest: the draft and its reason */
    farm *f = open_farm(NULL);
    store *st = farm_store(f);
    seed review = {"review", 20, {{NULL, NULL}}, 0};
    assert_int_equal(store_write(st, seed_write, &review), 0);
    assert_int_equal(store_write(st, usage_and_draft, &review.id), 0);
    json_t *d = NULL;
    int64_t now = clock_wall_ms();
    assert_int_equal(digest_build(&d, st, now - 3600 * 1000, now), 0);
    json_t *r = find(json_object_get(d, "review"), review.id);
    assert_non_null(r);
    assert_true(json_is_true(json_object_get(r, "pr_draft")));
    assert_string_equal(json_string_value(json_object_get(r, "pr_draft_reason")),
                        "the tests still fail after 2 rounds");
    assert_true(json_real_value(json_object_get(r, "agent_seconds")) == 0.077);
    json_t *t = json_object_get(d, "totals");
    assert_true(json_real_value(json_object_get(t, "agent_seconds")) == 0.077);
    assert_true(json_real_value(json_object_get(t, "cost")) == 0.123457);
    json_decref(d);
    farm_close(f);
}

static int64_t count_digest_entries(farm *f, const char *key)
{
    json_t *rows = NULL, *params = json_pack("[s]", key);
    int64_t n = -1;
    assert_int_equal(store_query_json(&rows, farm_store(f),
                                      "SELECT COUNT(*) AS n FROM outbox WHERE idem_key = ? AND "
                                      "kind = 'comment' AND payload LIKE '%farm digest%'",
                                      params),
                     0);
    if (json_array_size(rows) == 1)
        n = json_integer_value(json_object_get(json_array_get(rows, 0), "n"));
    json_decref(rows);
    json_decref(params);
    return n;
}

static void test_daily_post_once_a_day(void **state)
{
    farm *f = open_farm("{\"tracker\": \"github\", \"repo\": \"octo/app\", \"issue\": 1}");
    int64_t day1 = 1795251600000LL; /* 2026-11-21T09:00:00Z */
    assert_int_equal(digest_daily_post(f, day1), 0);
    assert_int_equal(digest_daily_post(f, day1 + 3600 * 1000), 0); /* same day: nothing new */
    assert_int_equal(count_digest_entries(f, "digest:2026-11-21"), 1);
    assert_int_equal(digest_daily_post(f, day1 + 24 * 3600 * 1000LL), 0);
    assert_int_equal(count_digest_entries(f, "digest:2026-11-22"), 1);

    /* the comment hangs on one session of the digest issue, which is done */
    store_session *v = NULL;
    size_t n = 0;
    store_session_filter flt = STORE_SESSION_FILTER_INIT;
    assert_int_equal(store_session_list(&v, &n, farm_store(f), &flt), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].number, 1);
    assert_string_equal(v[0].state, "done");
    store_session_list_free(v, n);

    /* the thread starts and stops cleanly */
    digest_daily *d = NULL;
    assert_int_equal(digest_daily_start(&d, f), 0);
    assert_non_null(d);
    digest_daily_stop(d);
    farm_close(f);

    /* without the config section there is no thread and no post */
    f = open_farm(NULL);
    assert_int_equal(digest_daily_start(&d, f), 0);
    assert_null(d);
    assert_int_equal(digest_daily_post(f, day1), FARM_EINVALID);
    farm_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digest_facts_and_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_json_says_draft_and_rounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daily_post_once_a_day, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
