/*
 * test_review.c - the review loop through farm_ingest() on a real store:
 * reviews and their comments become ONE debounced revision job; a trigger
 * while a run is at work queues one job behind it with one notice; people
 * without write access get one polite reply per session and nothing else;
 * bots nothing; `/farm` commands (help, unknown, status, stop, run, retry;
 * quoted ones ignored); a merged PR ends the session done, a closed one
 * cancelled; Azure DevOps PR comments; the replies a revision sends into the
 * threads it addressed; the review.debounce_s config key; pushes to the base,
 * unmergeable PRs and `/farm update` queueing updates; `/farm plan`, plan
 * comments and `/farm approve`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/intake/ingest.h"
#include "farm/intake/review.h"
#include "farm/report/review_replies.h"
#include "farm/store/store.h"
#include "farm/store/store_inspect.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
    char *dir;
    farm *f;
    store *s; /* also for looking, and for playing the scheduler (store_inspect.h) */
    int next_id;
} fixture;

#define CONFIG_TEXT                                                                                \
    "{ \"data_dir\": \"%s/data\", \"public_url\": \"http://farm.test\","                           \
    "  \"review\": { \"debounce_s\": 30 },"                                                        \
    "  \"github\": { \"bot_login\": \"farm-bot\" },"                                               \
    "  \"azure\": { \"org_url\": \"https://dev.azure.com/acme\", \"bot_name\": \"Farm Bot\" },"    \
    "  \"repos\": ["                                                                               \
    "    { \"name\": \"octo/app\", \"tracker\": \"github\", \"clone_url\": \"x\","                 \
    "      \"trigger\": { \"label\": \"agent\" } },"                                               \
    "    { \"name\": \"acme/proj/repo\", \"tracker\": \"azure\", \"clone_url\": \"x\","            \
    "      \"trigger\": { \"label\": \"agent\" }, \"allowed_actors\": [\"alice@acme.test\"] }"     \
    "  ] }"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int write_config(char *path, size_t n, const char *dir, const char *text)
{
    snprintf(path, n, "%s/farm-%d.json", dir, rand());
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(text, fp);
    fclose(fp);
    return 0;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096], text[4096];
    config *c = NULL;
    char *errors = NULL;

    if (!fx || asprintf(&fx->dir, "%s/farm-test-review-XXXXXX", base) < 0 || !mkdtemp(fx->dir))
        return -1;
    snprintf(text, sizeof(text), CONFIG_TEXT, fx->dir);
    if (write_config(path, sizeof(path), fx->dir, text) || config_load(&c, path, &errors)) {
        fprintf(stderr, "config: %s\n", errors ? errors : "not written");
        free(errors);
        return -1;
    }
    if (farm_open(&fx->f, c)) {
        fprintf(stderr, "farm_open: %s\n", farm_error_last());
        return -1;
    }
    fx->s = farm_store(fx->f);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    farm_close(fx->f);
    nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx->dir);
    free(fx);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static int64_t q_int(fixture *fx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first column of the first row of a query, borrowed from *rows (NULL
 * when no row), which the caller json_decref()s. params is consumed. */
static json_t *first_value(json_t **rows, fixture *fx, const char *sql, json_t *params)
{
    int rc = store_query_json(rows, fx->s, sql, params);
    json_decref(params);
    if (rc)
        fail_msg("%s: %s", sql, farm_error_last());
    return json_object_iter_value(json_object_iter(json_array_get(*rows, 0)));
}

/* The first column of the first row of a query, as an integer (0 when no
 * row or NULL). */
static int64_t q_int(fixture *fx, const char *fmt, ...)
{
    char sql[1024];
    json_t *rows = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    int64_t v = json_integer_value(first_value(&rows, fx, sql, NULL));
    json_decref(rows);
    return v;
}

/* The text of the first column of the first row of a query with one text
 * parameter, or NULL (caller frees). */
static char *q_text(fixture *fx, const char *sql, const char *param)
{
    json_t *rows = NULL;
    const char *t = json_string_value(first_value(&rows, fx, sql, json_pack("[s]", param)));
    char *v = t ? strdup(t) : NULL;
    json_decref(rows);
    return v;
}

/* The payload of the outbox entry with key, or NULL (caller frees). */
static char *outbox_payload(fixture *fx, const char *key)
{
    return q_text(fx, "SELECT payload FROM outbox WHERE idem_key = ?", key);
}

/* Run one statement, or several separated by ';', in one write. */
static int sql_fn(store_tx *tx, void *arg)
{
    char *text = strdup(arg), *save = NULL;
    int rc = text ? 0 : FARM_ENOMEM;
    for (char *one = text ? strtok_r(text, ";", &save) : NULL; one && !rc;
         one = strtok_r(NULL, ";", &save))
        rc = store_tx_exec_json(NULL, tx, one, NULL);
    free(text);
    return rc;
}

static void sql(fixture *fx, const char *text)
{
    if (store_write(fx->s, sql_fn, (void *)text))
        fail_msg("%s: %s", text, farm_error_last());
}

/* A GitHub event from alice (a writer) with a fresh delivery id. */
static tracker_event ev_make(fixture *fx, char *id, tracker_event_kind kind, int64_t number)
{
    tracker_event ev = {0};
    snprintf(id, 32, "d-%d", ++fx->next_id);
    ev.kind = kind;
    ev.tracker = "github";
    ev.delivery_id = id;
    ev.event = "issue_comment";
    ev.repo = "octo/app";
    ev.number = number;
    ev.title = "Fix the greeting";
    ev.actor = "alice";
    ev.actor_access = ACTOR_WRITE;
    return ev;
}

static ingest_result ingest_ok(fixture *fx, const tracker_event *ev)
{
    ingest_result r;
    if (farm_ingest(fx->f, ev, &r))
        fail_msg("farm_ingest: %s", farm_error_last());
    return r;
}

static void expect(const ingest_result *r, ingest_outcome o, const char *part)
{
    if (r->outcome != o || !strstr(r->reason, part))
        fail_msg("expected %s (\"%s\"), got %s (\"%s\")", ingest_outcome_name(o), part,
                 ingest_outcome_name(r->outcome), r->reason);
}

/* Issue `issue` gets a session whose first run is over: PR `pr` open, in
 * review (written as the pipeline would have left it). */
static int64_t session_in_review(fixture *fx, int64_t issue, int64_t pr)
{
    char id[32], text[256];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, issue);
    ev.event = "issues";
    ev.label = "agent";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label");
    snprintf(text, sizeof(text),
             "UPDATE session SET pr_number = %lld, state = 'review', runs = 1 WHERE id = %lld;"
             "UPDATE job SET state = 'done' WHERE session_id = %lld",
             (long long)pr, (long long)r.session_id, (long long)r.session_id);
    sql(fx, text);
    return r.session_id;
}

static int64_t jobs(fixture *fx, int64_t sid, const char *kind)
{
    return q_int(fx, "SELECT count(*) FROM job WHERE session_id = %lld AND kind = '%s'",
                 (long long)sid, kind);
}

static int64_t outbox_count(fixture *fx, int64_t sid, const char *key_like)
{
    return q_int(fx, "SELECT count(*) FROM outbox WHERE session_id = %lld AND idem_key LIKE '%s'",
                 (long long)sid, key_like);
}

/* ---- reviews ------------------------------------------------------------------- */

static void review_with_comments_is_one_debounced_revision(void **state)
{
    fixture *fx = *state;
    char id[32];
    int64_t sid = session_in_review(fx, 5, 50);
    int64_t t0 = clock_wall_ms();

    tracker_event ev = ev_make(fx, id, TEV_REVIEW_SUBMITTED, 50);
    ev.review_state = "changes_requested";
    ev.comment_body = "A few things.";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "revise job");
    assert_true(r.job_id > 0);
    int64_t job = r.job_id;

    for (int i = 0; i < 3; i++) {
        ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 50);
        ev.comment_id = 700 + i;
        ev.path = "greet.py";
        ev.line = 3 + i;
        ev.comment_body = "rename this";
        r = ingest_ok(fx, &ev);
        expect(&r, INGEST_ACCEPTED, "queued already");
        assert_int_equal(r.job_id, 0);
    }
    assert_int_equal(jobs(fx, sid, "revise"), 1);
    /* due one debounce window (30 s here) after the first trigger */
    int64_t due = q_int(fx, "SELECT not_before_ms FROM job WHERE id = %lld", (long long)job);
    assert_true(due >= t0 + 30000 && due <= clock_wall_ms() + 30000);
    assert_int_equal(q_int(fx,
                           "SELECT count(*) FROM event WHERE session_id = %lld AND"
                           " kind = 'revision_queued' AND body LIKE '%%\"attached\":true%%'",
                           (long long)sid),
                     3);
    /* nothing runs, so nobody is told the job waits; the status comment
     * says a revision is coming, once */
    assert_int_equal(outbox_count(fx, sid, "%queued"), 0);
    assert_int_equal(outbox_count(fx, sid, "%:status%"), 1);
    char key[64];
    snprintf(key, sizeof(key), "s%lld:status", (long long)sid);
    char *p = outbox_payload(fx, key);
    assert_non_null(p);
    assert_non_null(strstr(p, "a revision is queued: starts in about 30 s"));
    free(p);

    /* an approval asks for nothing */
    sql(fx, "UPDATE job SET state = 'done'");
    ev = ev_make(fx, id, TEV_REVIEW_SUBMITTED, 50);
    ev.review_state = "approved";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "added to session");
    assert_int_equal(jobs(fx, sid, "revise"), 1);
}

static void trigger_during_a_run_is_queued_behind_it_once(void **state)
{
    fixture *fx = *state;
    char id[32], key[64];
    int64_t sid = session_in_review(fx, 6, 60);

    tracker_event ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 60);
    ev.comment_id = 900;
    ev.comment_body = "first";
    ingest_result r = ingest_ok(fx, &ev);
    int64_t first = r.job_id;
    assert_true(first > 0);

    /* the scheduler took it: a run is at work */
    char text[128];
    snprintf(text, sizeof(text), "UPDATE job SET state = 'leased' WHERE id = %lld",
             (long long)first);
    sql(fx, text);
    ev = ev_make(fx, id, TEV_REVIEW_SUBMITTED, 60);
    ev.review_state = "commented";
    ev.comment_body = "one more thing";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "behind the running one");
    int64_t second = r.job_id;
    assert_true(second > first);
    snprintf(key, sizeof(key), "s%lld:j%lld:queued", (long long)sid, (long long)second);
    char *p = outbox_payload(fx, key);
    assert_non_null(p);
    assert_non_null(strstr(p, "queued behind the running revision"));
    assert_non_null(strstr(p, "\"on_pr\":true"));
    free(p);

    /* more while it waits: they join the queued job, no second notice */
    ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 60);
    ev.comment_id = 901;
    ev.comment_body = "and this";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "queued already");
    assert_int_equal(jobs(fx, sid, "revise"), 2);
    assert_int_equal(outbox_count(fx, sid, "%queued"), 1);
}

static void non_writers_get_one_polite_reply(void **state)
{
    fixture *fx = *state;
    char id[32], key[64];
    int64_t sid = session_in_review(fx, 7, 70);

    for (int i = 0; i < 3; i++) {
        tracker_event ev = ev_make(fx, id, i == 1 ? TEV_COMMENT_CREATED : TEV_REVIEW_COMMENT, 70);
        ev.actor = "mallory";
        ev.actor_access = ACTOR_NONE;
        ev.is_pr = 1;
        ev.comment_body = i == 1 ? "/farm run" : "do it my way";
        ingest_result r = ingest_ok(fx, &ev);
        assert_int_equal(r.job_id, 0);
        assert_non_null(strstr(r.reason, "without write access"));
    }
    assert_int_equal(jobs(fx, sid, "revise"), 0);
    assert_int_equal(
        q_int(fx, "SELECT count(*) FROM outbox WHERE session_id = %lld", (long long)sid), 1);
    snprintf(key, sizeof(key), "s%lld:polite", (long long)sid);
    char *p = outbox_payload(fx, key);
    assert_non_null(p);
    assert_non_null(strstr(p, "@mallory"));
    assert_non_null(strstr(p, "write access"));
    free(p);

    /* someone whose access the delivery does not tell is not answered */
    tracker_event ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 70);
    ev.actor = "carol";
    ev.actor_access = ACTOR_UNKNOWN;
    ingest_result r = ingest_ok(fx, &ev);
    assert_int_equal(r.job_id, 0);
    assert_int_equal(
        q_int(fx, "SELECT count(*) FROM outbox WHERE session_id = %lld", (long long)sid), 1);
}

static void bots_and_the_farm_trigger_nothing(void **state)
{
    fixture *fx = *state;
    char id[32];
    int64_t sid = session_in_review(fx, 8, 80);

    tracker_event ev = ev_make(fx, id, TEV_COMMENT_CREATED, 80);
    ev.is_pr = 1;
    ev.actor = "farm-bot"; /* the farm's own comment, quoting a command */
    ev.comment_body = "/farm run\n@farm-bot please";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "bot");
    ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 80);
    ev.actor = "dependabot[bot]";
    ev.actor_is_bot = 1;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "bot");
    assert_int_equal(jobs(fx, sid, "revise"), 0);
    assert_int_equal(
        q_int(fx, "SELECT count(*) FROM outbox WHERE session_id = %lld", (long long)sid), 0);
}

static void pr_comment_needs_a_mention(void **state)
{
    fixture *fx = *state;
    char id[32];
    int64_t sid = session_in_review(fx, 9, 90);

    tracker_event ev = ev_make(fx, id, TEV_COMMENT_CREATED, 90);
    ev.is_pr = 1;
    ev.comment_body = "nice work, @farm-botanist";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "added to session");
    assert_int_equal(jobs(fx, sid, "revise"), 0);

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 90);
    ev.is_pr = 1;
    ev.comment_body = "@farm-bot also handle the empty name";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "pull request comment");
    assert_int_equal(jobs(fx, sid, "revise"), 1);
}

/* ---- commands ---------------------------------------------------------------------- */

static char *command_reply(fixture *fx, int64_t sid, const char *what)
{
    char like[64];
    snprintf(like, sizeof(like), "s%lld:e%%:%s", (long long)sid, what);
    return q_text(fx, "SELECT payload FROM outbox WHERE idem_key LIKE ? ORDER BY id DESC LIMIT 1",
                  like);
}

static ingest_result say(fixture *fx, int64_t number, int is_pr, const char *body)
{
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_COMMENT_CREATED, number);
    ev.is_pr = is_pr;
    ev.comment_body = (char *)body;
    return ingest_ok(fx, &ev);
}

static void help_unknown_and_status_reply(void **state)
{
    fixture *fx = *state;
    int64_t sid = session_in_review(fx, 10, 100);

    ingest_result r = say(fx, 10, 0, "/farm help");
    expect(&r, INGEST_ACCEPTED, "/farm help answered");
    char *p = command_reply(fx, sid, "help");
    assert_non_null(p);
    assert_non_null(strstr(p, "/farm retry"));
    assert_non_null(strstr(p, "\"on_pr\":false"));
    free(p);

    r = say(fx, 100, 1, "/farm deploy");
    expect(&r, INGEST_ACCEPTED, "/farm unknown answered");
    p = command_reply(fx, sid, "help");
    assert_non_null(strstr(p, "`/farm deploy` is not a command"));
    assert_non_null(strstr(p, "/farm status"));
    assert_non_null(strstr(p, "\"on_pr\":true"));
    free(p);

    r = say(fx, 10, 0, "/farm status");
    expect(&r, INGEST_ACCEPTED, "/farm status answered");
    p = command_reply(fx, sid, "status");
    assert_non_null(p);
    assert_non_null(strstr(p, "http://farm.test/sessions/"));
    free(p);

    /* a command in a review comment is a command, not a revision */
    char rid[32];
    tracker_event rev = ev_make(fx, rid, TEV_REVIEW_COMMENT, 100);
    rev.is_pr = 1;
    rev.comment_id = 4242;
    rev.comment_body = "/farm status";
    r = ingest_ok(fx, &rev);
    expect(&r, INGEST_ACCEPTED, "/farm status answered");
    assert_int_equal(jobs(fx, sid, "revise"), 0);

    /* a quoted command is only a comment */
    int64_t before = q_int(fx, "SELECT count(*) FROM outbox");
    r = say(fx, 10, 0, "> /farm stop\n\nwhy did you stop?");
    expect(&r, INGEST_ACCEPTED, "added to session");
    assert_int_equal(q_int(fx, "SELECT count(*) FROM outbox"), before);
    assert_int_equal(jobs(fx, sid, "cancel"), 0);
}

/* A comment with id comment_id on issue (or PR) number, by alice or, with
 * access ACTOR_NONE, by someone without write access. */
static ingest_result comment_at(fixture *fx, int64_t number, int is_pr, int64_t comment_id,
                                const char *body, tracker_actor_access access)
{
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_COMMENT_CREATED, number);
    ev.is_pr = is_pr;
    ev.comment_id = comment_id;
    ev.comment_body = (char *)body;
    ev.actor_access = access;
    return ingest_ok(fx, &ev);
}

static int64_t sessionless_replies(fixture *fx, const char *payload_like)
{
    return q_int(fx, "SELECT count(*) FROM outbox WHERE session_id IS NULL AND payload LIKE '%s'",
                 payload_like);
}

/* Where the farm has no session, help, status and unknown commands are
 * still answered in the thread, once per command comment. */
static void commands_without_a_session_are_answered_once(void **state)
{
    fixture *fx = *state;
    ingest_result r = comment_at(fx, 77, 0, 501, "/farm help", ACTOR_WRITE);
    expect(&r, INGEST_ACCEPTED, "/farm help answered (no session)");
    assert_int_equal(sessionless_replies(fx, "%"), 1);
    assert_int_equal(q_int(fx, "SELECT count(*) FROM session"), 0);
    assert_int_equal(sessionless_replies(fx, "%\"tracker\":\"github\"%\"repo\":\"octo/app\"%"
                                             "\"number\":77%"),
                     1);
    assert_int_equal(sessionless_replies(fx, "%/farm run%"), 1);

    /* the same comment delivered again: nothing more */
    r = comment_at(fx, 77, 0, 501, "/farm help", ACTOR_WRITE);
    assert_int_equal(sessionless_replies(fx, "%"), 1);

    /* status on a pull request the farm has no session for */
    r = comment_at(fx, 78, 1, 502, "/farm status", ACTOR_WRITE);
    expect(&r, INGEST_ACCEPTED, "/farm status answered (no session)");
    assert_int_equal(sessionless_replies(fx, "%"), 2);
    assert_int_equal(sessionless_replies(fx, "%no session for this pull request%\"is_pr\":true%"),
                     1);

    /* nobody without write access is answered */
    r = comment_at(fx, 79, 0, 503, "/farm help", ACTOR_NONE);
    assert_int_equal(sessionless_replies(fx, "%"), 2);
}

static void stop_cancels_and_run_starts_again(void **state)
{
    fixture *fx = *state;
    int64_t sid = session_in_review(fx, 11, 110);

    /* /farm run in review: a revision due now */
    ingest_result r = say(fx, 11, 0, "/farm run");
    expect(&r, INGEST_ACCEPTED, "/farm run");
    assert_true(r.job_id > 0);
    assert_true(q_int(fx, "SELECT not_before_ms FROM job WHERE id = %lld", (long long)r.job_id) <=
                clock_wall_ms());
    assert_int_equal(jobs(fx, sid, "revise"), 1);

    r = say(fx, 11, 0, "/farm stop");
    expect(&r, INGEST_ACCEPTED, "cancel job");
    assert_int_equal(jobs(fx, sid, "cancel"), 1);
    assert_int_equal(q_int(fx,
                           "SELECT count(*) FROM event WHERE session_id = %lld AND"
                           " kind = 'cancel_requested'",
                           (long long)sid),
                     1);

    /* the cancel job ended it; /farm stop again has nothing to stop */
    char text[128];
    snprintf(text, sizeof(text), "UPDATE session SET state = 'cancelled' WHERE id = %lld",
             (long long)sid);
    sql(fx, text);
    r = say(fx, 11, 0, "/farm stop");
    assert_int_equal(r.job_id, 0);
    char *p = command_reply(fx, sid, "stop");
    assert_non_null(strstr(p, "Nothing to stop"));
    free(p);

    /* the issue reopened: /farm run starts a new session */
    r = say(fx, 11, 0, "/farm run");
    expect(&r, INGEST_ACCEPTED, "triggered by /farm run");
    assert_true(r.session_id > sid);
    assert_int_equal(jobs(fx, r.session_id, "run"), 1);

    /* on an issue nobody worked on, /farm run starts work too */
    r = say(fx, 12, 0, "/FARM RUN");
    expect(&r, INGEST_ACCEPTED, "triggered by /farm run");
}

static void retry_brings_a_failed_session_back(void **state)
{
    fixture *fx = *state;
    int64_t sid = session_in_review(fx, 13, 130);
    char text[128];

    snprintf(text, sizeof(text), "UPDATE session SET state = 'failed' WHERE id = %lld",
             (long long)sid);
    sql(fx, text);
    ingest_result r = say(fx, 130, 1, "/farm retry");
    expect(&r, INGEST_ACCEPTED, "queued again");
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, sid), 0);
    assert_string_equal(s->state, "queued");
    store_session_free(s);
    assert_int_equal(jobs(fx, sid, "revise"), 1); /* it has a PR: the work goes on there */
    assert_true(outbox_count(fx, sid, "%:status%") >= 1);

    /* a session that is done is not retried */
    snprintf(text, sizeof(text), "UPDATE session SET state = 'done' WHERE id = %lld",
             (long long)sid);
    sql(fx, text);
    r = say(fx, 130, 1, "/farm retry");
    assert_int_equal(r.job_id, 0);
    char *p = command_reply(fx, sid, "run");
    assert_non_null(p);
    assert_non_null(strstr(p, "on the issue starts new work"));
    free(p);
}

/* ---- the pull request closes ------------------------------------------------------ */

static void merged_is_done_closed_is_cancelled(void **state)
{
    fixture *fx = *state;
    char id[32];
    int64_t a = session_in_review(fx, 14, 140), b = session_in_review(fx, 15, 150);

    tracker_event ev = ev_make(fx, id, TEV_PR_CLOSED, 140);
    ev.is_pr = 1;
    ev.merged = 1;
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "closed");
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, a), 0);
    assert_string_equal(s->state, "done");
    store_session_free(s);
    assert_int_equal(jobs(fx, a, "cancel"), 0); /* nothing ran */
    assert_true(outbox_count(fx, a, "%:status%") >= 1);

    /* closed unmerged while a revision runs: cancelled, and the run is stopped */
    r = say(fx, 150, 1, "/farm run");
    char text[128];
    snprintf(text, sizeof(text), "UPDATE job SET state = 'leased' WHERE id = %lld",
             (long long)r.job_id);
    sql(fx, text);
    ev = ev_make(fx, id, TEV_PR_CLOSED, 150);
    ev.is_pr = 1;
    ev.merged = 0;
    r = ingest_ok(fx, &ev);
    assert_int_equal(store_session_get(&s, fx->s, b), 0);
    assert_string_equal(s->state, "cancelled");
    store_session_free(s);
    assert_int_equal(jobs(fx, b, "cancel"), 1);

    /* a review on a merged PR's session starts nothing */
    ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 140);
    r = ingest_ok(fx, &ev);
    assert_int_equal(r.job_id, 0);
    assert_non_null(strstr(r.reason, "has ended"));
}

static void closing_the_issue_stops_a_waiting_revision(void **state)
{
    fixture *fx = *state;
    char id[32];
    int64_t quiet = session_in_review(fx, 17, 170), busy = session_in_review(fx, 18, 180);

    /* in review with nothing to do: left to its pull request */
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_CLOSED, 17);
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "issue closed");
    assert_int_equal(jobs(fx, quiet, "cancel"), 0);

    /* in review with a revision waiting: the work stops */
    r = say(fx, 180, 1, "/farm run");
    assert_true(r.job_id > 0);
    ev = ev_make(fx, id, TEV_ISSUE_CLOSED, 18);
    r = ingest_ok(fx, &ev);
    assert_int_equal(jobs(fx, busy, "cancel"), 1);
    assert_true(r.job_id > 0);
}

/* ---- Azure DevOps -------------------------------------------------------------------- */

static void azure_pr_comment_is_a_revision(void **state)
{
    fixture *fx = *state;
    char id[32], text[256];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, 21);
    ev.tracker = "azure";
    ev.repo = "acme/proj/repo";
    ev.label = "agent";
    ev.actor = "alice@acme.test";
    ev.actor_access = ACTOR_UNKNOWN; /* Azure: the allowlist decides */
    ingest_result r = ingest_ok(fx, &ev);
    int64_t sid = r.session_id;
    assert_true(sid > 0);
    snprintf(text, sizeof(text),
             "UPDATE session SET pr_number = 7, state = 'review' WHERE id = %lld;"
             "UPDATE job SET state = 'done' WHERE session_id = %lld",
             (long long)sid, (long long)sid);
    sql(fx, text);

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 7);
    ev.tracker = "azure";
    ev.repo = "acme/proj/repo";
    ev.is_pr = 1;
    ev.actor = "alice@acme.test";
    ev.actor_access = ACTOR_UNKNOWN;
    ev.comment_id = 2;
    ev.comment_body = "Please handle an empty name.";
    ev.comment_url = "https://dev.azure.com/acme/_apis/git/repositories/r/pullRequests/7/"
                     "threads/21/comments/2";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "revise job");
    assert_int_equal(jobs(fx, sid, "revise"), 1);

    /* someone outside the allowlist: one polite reply, no @ */
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 7);
    ev.tracker = "azure";
    ev.repo = "acme/proj/repo";
    ev.is_pr = 1;
    ev.actor = "eve@acme.test";
    ev.actor_access = ACTOR_UNKNOWN;
    ev.comment_body = "change it";
    r = ingest_ok(fx, &ev);
    assert_int_equal(r.job_id, 0);
    snprintf(text, sizeof(text), "s%lld:polite", (long long)sid);
    char *p = outbox_payload(fx, text);
    assert_non_null(p);
    assert_non_null(strstr(p, "Thanks, eve@acme.test."));
    free(p);

    /* the revision ran (run 2) and pushed: it answers in thread 21 */
    int64_t seq = 0;
    assert_int_equal(store_event_append(&seq, fx->s, sid, "run_started", NULL,
                                        "{\"job\":9,\"run\":2,\"kind\":\"revise\"}"),
                     0);
    assert_int_equal(review_replies_enqueue(fx->f, sid, 2, seq, "0123456789abcdef", NULL), 0);
    snprintf(text, sizeof(text), "s%lld:rc%lld", (long long)sid, (long long)((21LL << 16) | 2));
    p = outbox_payload(fx, text);
    assert_non_null(p);
    char want[64];
    snprintf(want, sizeof(want), "\"comment_id\":%lld", (long long)((21LL << 16) | 2));
    assert_non_null(strstr(p, want));
    free(p);
}

/* ---- replies after a revision --------------------------------------------------------- */

static void replies_go_to_each_thread_of_the_window(void **state)
{
    fixture *fx = *state;
    char id[32], key[64];
    int64_t sid = session_in_review(fx, 16, 160), seq = 0;

    assert_int_equal(store_event_append(NULL, fx->s, sid, "run_started", NULL, "{\"run\":1}"), 0);
    /* before the revision: three threads, one with a follow-up */
    int64_t ids[][2] = {{801, 0}, {802, 0}, {803, 0}, {804, 801}};
    for (size_t i = 0; i < 4; i++) {
        tracker_event ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 160);
        ev.comment_id = ids[i][0];
        ev.in_reply_to = ids[i][1];
        ev.path = "greet.py";
        ev.line = 1;
        ev.comment_body = "fix";
        ingest_ok(fx, &ev);
    }
    assert_int_equal(store_event_append(&seq, fx->s, sid, "run_started", NULL, "{\"run\":2}"), 0);
    /* during the revision: for the next one */
    tracker_event ev = ev_make(fx, id, TEV_REVIEW_COMMENT, 160);
    ev.comment_id = 805;
    ev.comment_body = "later";
    ingest_ok(fx, &ev);

    const char *summary = "Renamed the function as asked <!-- farm:x -->.\nMore lines.";
    for (int twice = 0; twice < 2; twice++) /* a resumed run repeats it: nothing new */
        assert_int_equal(review_replies_enqueue(fx->f, sid, 2, seq, "abcdef0123456789", summary),
                         0);
    assert_int_equal(q_int(fx,
                           "SELECT count(*) FROM outbox WHERE session_id = %lld AND"
                           " kind = 'review_reply'",
                           (long long)sid),
                     3);
    snprintf(key, sizeof(key), "s%lld:rc804", (long long)sid); /* thread 801's newest */
    char *p = outbox_payload(fx, key);
    assert_non_null(p);
    assert_non_null(strstr(p, "\"comment_id\":801"));
    assert_non_null(strstr(p, "abcdef012345"));
    assert_non_null(strstr(p, "Renamed the function"));
    assert_null(strstr(p, "<!-- farm:x"));
    assert_null(strstr(p, "More lines"));
    free(p);
    snprintf(key, sizeof(key), "s%lld:rc805", (long long)sid);
    assert_null(outbox_payload(fx, key));
}

/* ---- config ----------------------------------------------------------------------------- */

static void debounce_config(void **state)
{
    fixture *fx = *state;
    char path[4096], text[512];
    config *c = NULL;
    char *errors = NULL;

    assert_int_equal(farm_config(fx->f)->review.debounce_s, 30);
    assert_int_equal(config_default(&c), 0);
    assert_int_equal(c->review.debounce_s, 60);
    config_free(c);

    snprintf(text, sizeof(text), "{\"review\": {\"debounce_s\": -1, \"window\": 3}}");
    assert_int_equal(write_config(path, sizeof(path), fx->dir, text), 0);
    assert_int_equal(config_load(&c, path, &errors), FARM_EINVALID);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "review.debounce_s"));
    assert_non_null(strstr(errors, "review.window"));
    free(errors);
    errors = NULL;

    snprintf(text, sizeof(text), "{\"review\": {\"debounce_s\": 0}}");
    assert_int_equal(write_config(path, sizeof(path), fx->dir, text), 0);
    assert_int_equal(config_load(&c, path, &errors), 0);
    assert_int_equal(c->review.debounce_s, 0);
    config_free(c);
}

/* ---- keeping the branch mergeable (update.h) --------------------------------- */

/* A push to the base queues one update per open PR of the repository (a
 * second push joins it); a push elsewhere queues nothing; a PR GitHub says
 * will not merge queues one at once, unless a bot says so; `/farm update`
 * joins the waiting one and replies. */
static void base_pushes_and_unmergeable_prs_queue_updates(void **state)
{
    fixture *fx = *state;
    char id[32];
    int64_t a = session_in_review(fx, 5, 50), b = session_in_review(fx, 6, 60);
    int64_t c = session_in_review(fx, 7, 70);
    sql(fx, "UPDATE session SET state = 'done' WHERE number = 7");

    tracker_event ev = ev_make(fx, id, TEV_BRANCH_PUSHED, 0);
    ev.event = "push";
    ev.pushed_branch = "feature";
    ev.pushed_oid = "1111111111111111111111111111111111111111";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "not the base branch main");
    assert_int_equal(jobs(fx, a, "update"), 0);

    ev = ev_make(fx, id, TEV_BRANCH_PUSHED, 0);
    ev.event = "push";
    ev.pushed_branch = "main";
    ev.pushed_oid = "2222222222222222222222222222222222222222";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "2 open pull requests to update");
    assert_int_equal(jobs(fx, a, "update"), 1);
    assert_int_equal(jobs(fx, b, "update"), 1);
    assert_int_equal(jobs(fx, c, "update"), 0); /* ended */
    assert_true(q_int(fx,
                      "SELECT not_before_ms FROM job WHERE session_id = %lld AND kind = "
                      "'update'",
                      (long long)a) > clock_wall_ms() + 20000); /* debounced (30 s) */
    assert_int_equal(q_int(fx,
                           "SELECT count(*) FROM event WHERE session_id = %lld AND kind = "
                           "'base_moved'",
                           (long long)a),
                     1);

    ev.delivery_id = id;
    snprintf(id, 32, "d-%d", ++fx->next_id);
    r = ingest_ok(fx, &ev);
    assert_int_equal(jobs(fx, a, "update"), 1); /* joined */

    /* GitHub: the PR does not merge; from a person now, from a bot never */
    ev = ev_make(fx, id, TEV_PR_UPDATED, 50);
    ev.event = "pull_request";
    ev.is_pr = 1;
    ev.unmergeable = 1;
    ev.actor = "farm-bot";
    ev.actor_is_bot = 1;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "bot");
    ev = ev_make(fx, id, TEV_PR_UPDATED, 50);
    ev.event = "pull_request";
    ev.is_pr = 1;
    ev.unmergeable = 1;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "not mergeable");
    assert_int_equal(jobs(fx, a, "update"), 1);
    assert_true(q_int(fx,
                      "SELECT not_before_ms FROM job WHERE session_id = %lld AND kind = "
                      "'update'",
                      (long long)a) <= clock_wall_ms()); /* made due now */

    /* /farm update on the PR: joins, and says what happens */
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 60);
    ev.is_pr = 1;
    ev.comment_body = "/farm update";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "/farm update");
    assert_int_equal(jobs(fx, b, "update"), 1);
    assert_int_equal(outbox_count(fx, b, "%:update"), 1);
    /* an update waiting is not a revision a review joins */
    ev = ev_make(fx, id, TEV_REVIEW_SUBMITTED, 60);
    ev.is_pr = 1;
    ev.review_state = "changes_requested";
    r = ingest_ok(fx, &ev);
    assert_int_equal(jobs(fx, b, "revise"), 1);
}

/* ---- plan first (plan.h) ---------------------------------------------------- */

/* `/farm plan` starts a session with a plan job; a writer's comment while the
 * plan waits queues one plan round (a second joins it), a stranger's none;
 * `/farm approve` from a writer queues the run and says so, and a second one
 * finds nothing to approve. The plan label does the same as the command. */
static void plan_approve_and_comments(void **state)
{
    fixture *fx = *state;
    char id[32];

    tracker_event ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "/farm plan";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "/farm plan");
    int64_t sid = r.session_id;
    assert_true(sid > 0);
    assert_int_equal(jobs(fx, sid, "plan"), 1);
    assert_int_equal(jobs(fx, sid, "run"), 0);
    sql(fx, "UPDATE session SET state = 'awaiting_approval', runs = 1 WHERE number = 8;"
            "UPDATE job SET state = 'done' WHERE kind = 'plan'");

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "Please cover the edge case.";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "plan job");
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "And the docs.";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "joins plan job");
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "Looks wrong to me.";
    ev.actor = "mallory";
    ev.actor_access = ACTOR_NONE;
    r = ingest_ok(fx, &ev);
    assert_int_equal(q_int(fx,
                           "SELECT count(*) FROM job WHERE session_id = %lld AND kind = "
                           "'plan' AND state = 'queued'",
                           (long long)sid),
                     1);

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "/farm approve";
    ev.actor = "mallory";
    ev.actor_access = ACTOR_NONE;
    r = ingest_ok(fx, &ev);
    assert_int_equal(jobs(fx, sid, "run"), 0);
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "Good.\n\n/farm approve\n";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "/farm approve");
    assert_int_equal(jobs(fx, sid, "run"), 1);
    assert_int_equal(q_int(fx,
                           "SELECT count(*) FROM event WHERE session_id = %lld AND kind = "
                           "'plan_approved'",
                           (long long)sid),
                     1);
    char *now = q_text(fx, "SELECT state FROM session WHERE number = ?", "8");
    assert_non_null(now);
    assert_string_equal(now, "queued");
    free(now);
    assert_int_equal(outbox_count(fx, sid, "%:approve"), 1);

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, 8);
    ev.comment_body = "/farm approve";
    r = ingest_ok(fx, &ev);
    assert_int_equal(jobs(fx, sid, "run"), 1);
    assert_int_equal(outbox_count(fx, sid, "%:approve"), 2); /* "no plan waiting" */

    /* the label */
    static char *labels[] = {"plan", "agent", NULL};
    ev = ev_make(fx, id, TEV_ISSUE_LABELED, 9);
    ev.event = "issues";
    ev.label = "agent";
    ev.labels = labels;
    ev.nlabels = 2;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label");
    assert_int_equal(jobs(fx, r.session_id, "plan"), 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(review_with_comments_is_one_debounced_revision),
        T(trigger_during_a_run_is_queued_behind_it_once),
        T(non_writers_get_one_polite_reply),
        T(bots_and_the_farm_trigger_nothing),
        T(pr_comment_needs_a_mention),
        T(help_unknown_and_status_reply),
        T(commands_without_a_session_are_answered_once),
        T(stop_cancels_and_run_starts_again),
        T(retry_brings_a_failed_session_back),
        T(merged_is_done_closed_is_cancelled),
        T(closing_the_issue_stops_a_waiting_revision),
        T(azure_pr_comment_is_a_revision),
        T(replies_go_to_each_thread_of_the_window),
        T(debounce_config),
        T(base_pushes_and_unmergeable_prs_queue_updates),
        T(plan_approve_and_comments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
