/*
 * test_ingest.c - farm_ingest(): each trigger rule, who may trigger (writers,
 * the Azure allowlist; never bots or the farm itself), unconfigured
 * repositories, pings, duplicates (also when racing), one active session per
 * issue, comments and closing into the session log, concurrent ingests
 * sharing commits, and farm_ingest_submit() completing after the commit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/intake/ingest.h"
#include "farm/store/store.h"
#include "farm/store/store_inspect.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fixture {
    char *dir;
    farm *f;
    store *s;
    int next_id;
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

#define CONFIG_TEXT                                                                                \
    "{ \"data_dir\": \"%s/data\","                                                                 \
    "  \"github\": { \"bot_login\": \"farm-bot\" },"                                               \
    "  \"azure\": { \"org_url\": \"https://dev.azure.com/acme\", \"bot_name\": \"Farm Bot\" },"    \
    "  \"repos\": ["                                                                               \
    "    { \"name\": \"octo/app\", \"tracker\": \"github\", \"clone_url\": \"x\","                 \
    "      \"trigger\": { \"label\": \"agent\", \"assignee\": true, \"mention\": \"@farm-bot\" } " \
    "},"                                                                                           \
    "    { \"name\": \"octo/open\", \"tracker\": \"github\", \"clone_url\": \"x\","                \
    "      \"trigger\": { \"on_open\": true, \"assignee\": false } },"                             \
    "    { \"name\": \"acme/proj/repo\", \"tracker\": \"azure\", \"clone_url\": \"x\","            \
    "      \"trigger\": { \"label\": \"agent\" }, \"allowed_actors\": [\"alice@acme.test\"] }"     \
    "  ] }"

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096], text[4096];
    config *c = NULL;
    char *errors = NULL;

    if (asprintf(&fx->dir, "%s/farm-test-ingest-XXXXXX", base) < 0 || !mkdtemp(fx->dir))
        return -1;
    snprintf(path, sizeof(path), "%s/farm.json", fx->dir);
    snprintf(text, sizeof(text), CONFIG_TEXT, fx->dir);
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
    if (config_load(&c, path, &errors)) {
        fprintf(stderr, "config: %s\n", errors);
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

/* A GitHub event from a writer, with a fresh delivery id in id (>= 32 bytes). */
static tracker_event ev_make(fixture *fx, char *id, tracker_event_kind kind, const char *repo,
                             int64_t number)
{
    tracker_event ev = {0};
    snprintf(id, 32, "d-%d", ++fx->next_id);
    ev.kind = kind;
    ev.tracker = "github";
    ev.delivery_id = id;
    ev.event = "issues";
    ev.action = (char *)tracker_event_kind_name(kind);
    ev.repo = (char *)repo;
    ev.number = number;
    ev.title = "Fix the typo";
    ev.url = "https://github.com/octo/app/issues/1";
    ev.actor = "alice";
    ev.actor_access = ACTOR_WRITE;
    return ev;
}

static ingest_result ingest_ok(fixture *fx, const tracker_event *ev)
{
    ingest_result r;
    int rc = farm_ingest(fx->f, ev, &r);
    if (rc)
        fail_msg("farm_ingest: %s", farm_error_last());
    return r;
}

static void expect(const ingest_result *r, ingest_outcome o, const char *reason_part)
{
    if (r->outcome != o || !strstr(r->reason, reason_part))
        fail_msg("expected %s (\"%s\"), got %s (\"%s\")", ingest_outcome_name(o), reason_part,
                 ingest_outcome_name(r->outcome), r->reason);
}

static int64_t count_sessions(fixture *fx)
{
    store_session *v = NULL;
    size_t n = 0;
    assert_int_equal(store_session_list(&v, &n, fx->s, NULL), 0);
    store_session_list_free(v, n);
    return (int64_t)n;
}

static int64_t count_deliveries(fixture *fx)
{
    store_count *c = NULL;
    size_t n = 0;
    int64_t total = 0;
    assert_int_equal(store_delivery_count(&c, &n, fx->s), 0);
    for (size_t i = 0; i < n; i++)
        total += c[i].n;
    store_count_list_free(c, n);
    return total;
}

static int64_t count_jobs(fixture *fx)
{
    int64_t queued = 0, leased = 0;
    assert_int_equal(store_job_count(&queued, &leased, fx->s), 0);
    return queued + leased;
}

/* ---- the farm handle ------------------------------------------------------ */

static void data_dir_is_created_private(void **state)
{
    fixture *fx = *state;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/data", fx->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/data/farm.db", fx->dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_non_null(farm_config(fx->f));
    assert_string_equal(farm_config(fx->f)->repos[0].name, "octo/app");
}

static void farm_open_fails_cleanly(void **state)
{
    fixture *fx = *state;
    char path[4096];
    config *c = NULL;
    farm *f = NULL;

    /* the data directory's place is taken by a file */
    snprintf(path, sizeof(path), "%s/farm.json", fx->dir);
    assert_int_equal(config_default(&c), 0);
    free(c->data_dir);
    c->data_dir = strdup(path);
    assert_int_equal(farm_open(&f, c), FARM_EIO); /* c is freed by farm_open */
    assert_null(f);
    assert_non_null(strstr(farm_error_last(), "not a directory"));

    /* nested directories are created */
    assert_int_equal(config_default(&c), 0);
    free(c->data_dir);
    snprintf(path, sizeof(path), "%s/a/b/c", fx->dir);
    c->data_dir = strdup(path);
    assert_int_equal(farm_open(&f, c), 0);
    farm_close(f);
    farm_close(NULL);
}

/* ---- trigger rules --------------------------------------------------------- */

static void label_match_creates_session_and_job(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "Octo/App", 12);
    ev.label = "Agent"; /* labels compare case-insensitively */
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label \"agent\"");
    assert_true(r.session_id > 0);
    assert_true(r.job_id > 0);

    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, r.session_id), 0);
    assert_string_equal(s->state, "queued");
    assert_string_equal(s->repo, "octo/app"); /* the configured spelling */
    assert_string_equal(s->tracker, "github");
    assert_int_equal(s->number, 12);
    assert_string_equal(s->title, "Fix the typo");
    assert_int_equal(s->last_seq, 1);
    store_session_free(s);

    store_job *j = NULL;
    assert_int_equal(store_job_get(&j, fx->s, r.job_id), 0);
    assert_string_equal(j->kind, "run");
    assert_string_equal(j->state, "queued");
    assert_int_equal(j->session_id, r.session_id);
    store_job_free(j);

    store_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&e, &n, fx->s, r.session_id, 0, 0), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].kind, "triggered");
    assert_string_equal(e[0].actor, "alice");
    assert_non_null(strstr(e[0].body, "\"delivery\":\"d-1\""));
    store_event_list_free(e, n);

    store_delivery *d = NULL;
    assert_int_equal(store_delivery_list(&d, &n, fx->s, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].outcome, "accepted");
    assert_int_equal(d[0].session_id, r.session_id);
    assert_int_equal(d[0].job_id, r.job_id);
    store_delivery_list_free(d, n);
}

static void label_non_match_is_ignored(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 12);
    ev.label = "bug";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "does not trigger work");
    assert_int_equal(r.session_id, 0);
    assert_int_equal(count_sessions(fx), 0);
    assert_int_equal(count_jobs(fx), 0);
    assert_int_equal(count_deliveries(fx), 1); /* recorded all the same */

    /* issue opened with the label already on it */
    char *labels[] = {"bug", "agent", NULL};
    ev = ev_make(fx, id, TEV_ISSUE_OPENED, "octo/app", 13);
    ev.labels = labels;
    ev.nlabels = 2;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "opened with label");
}

static void assigning_the_bot_triggers(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_ASSIGNED, "octo/app", 5);
    ev.assignee = "bob";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "does not trigger work");

    ev = ev_make(fx, id, TEV_ISSUE_ASSIGNED, "octo/app", 5);
    ev.assignee = "farm-bot";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "assigned to farm-bot");

    /* octo/open has assignee: false */
    ev = ev_make(fx, id, TEV_ISSUE_ASSIGNED, "octo/open", 5);
    ev.assignee = "farm-bot";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "does not trigger work");
}

static void mention_in_comment_triggers(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 8);
    ev.comment_body = "cc @farm-bot2 and mail me at x@farm-bot";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "no session for this issue");

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 8);
    ev.comment_body = "@Farm-Bot, please fix this.";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "mention @farm-bot");
    assert_true(r.job_id > 0);

    /* a mention on a pull request without a session starts nothing */
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 50);
    ev.is_pr = 1;
    ev.comment_body = "@farm-bot fix";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "pull requests");
}

static void on_open_triggers_only_where_configured(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_OPENED, "octo/open", 1);
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "issue opened");

    ev = ev_make(fx, id, TEV_ISSUE_OPENED, "octo/app", 1);
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "does not trigger work");
}

/* ---- who may trigger ------------------------------------------------------ */

static void only_writers_and_never_bots(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 3);
    ev.label = "agent";
    ev.actor_access = ACTOR_NONE;
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "actor lacks write access");

    ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 3);
    ev.label = "agent";
    ev.actor_access = ACTOR_UNKNOWN;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "actor lacks write access");

    ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 3);
    ev.label = "agent";
    ev.actor = "dependabot[bot]";
    ev.actor_is_bot = 1;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "event from a bot");

    /* the farm's own login, even with write access and not flagged a bot */
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 3);
    ev.actor = "FARM-BOT";
    ev.comment_body = "@farm-bot working on it";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "event from a bot");

    /* a comment carrying the farm's marker is the farm's own, whoever the
     * tracker says sent it (a token whose login is not github.bot_login):
     * a `/farm run` line in it (from a plan or a quote) starts nothing */
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 3);
    ev.actor = "ci-robot";
    ev.actor_access = ACTOR_WRITE;
    ev.comment_body = "📝 A plan\n\n/farm run\n\n<!-- farm:s1/r1:plan -->";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "the farm's marker");

    assert_int_equal(count_sessions(fx), 0);
    assert_int_equal(count_deliveries(fx), 5);
}

static void azure_allowlist_decides(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "acme/proj/repo", 77);
    ev.tracker = "azure";
    ev.label = "agent";
    ev.actor = "bob@acme.test";
    ev.actor_access = ACTOR_UNKNOWN;
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "actor lacks write access");

    ev.delivery_id = "az-2";
    ev.actor = "Alice@acme.test";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label");

    ev.delivery_id = "az-3";
    ev.number = 78;
    ev.actor = "Farm Bot"; /* azure.bot_name */
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "event from a bot");

    /* the same name on GitHub is another repository: not configured */
    ev = ev_make(fx, id, TEV_ISSUE_LABELED, "acme/proj/repo", 77);
    ev.label = "agent";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "not a configured repository");
}

static void unconfigured_repo_ping_and_installation_are_recorded(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "someone/else", 1);
    ev.label = "agent";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "not a configured repository");

    ev = ev_make(fx, id, TEV_PING, NULL, 0);
    ev.event = "ping";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "ping");

    ev = ev_make(fx, id, TEV_INSTALLATION, NULL, 0);
    ev.event = "installation";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_IGNORED, "installation");

    store_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(store_delivery_list(&d, &n, fx->s, NULL), 0);
    assert_int_equal(n, 3);
    assert_string_equal(d[0].event, "installation");
    assert_string_equal(d[0].outcome, "ignored");
    assert_string_equal(d[0].reason, "installation event");
    assert_string_equal(d[2].repo, "someone/else");
    assert_string_equal(d[2].reason, "not a configured repository");
    store_delivery_list_free(d, n);
}

static void bad_events_are_refused(void **state)
{
    fixture *fx = *state;
    char id[32];
    ingest_result r;
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 1);
    ev.delivery_id = NULL;
    assert_int_equal(farm_ingest(fx->f, &ev, &r), FARM_EINVALID);
    ev.delivery_id = "";
    assert_int_equal(farm_ingest(fx->f, &ev, &r), FARM_EINVALID);
    char longid[400];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    ev.delivery_id = longid;
    assert_int_equal(farm_ingest(fx->f, &ev, &r), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "delivery id"));
    ev.delivery_id = id;
    ev.actor = longid;
    assert_int_equal(farm_ingest(fx->f, &ev, &r), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "actor"));
    ev.actor = "alice";
    ev.tracker = NULL;
    assert_int_equal(farm_ingest(fx->f, &ev, &r), FARM_EINVALID);
    assert_int_equal(count_deliveries(fx), 0);

    /* empty optional strings are fine */
    ev.tracker = "github";
    ev.action = "";
    ev.label = "agent";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label");
}

static void long_texts_are_cut_not_refused(void **state)
{
    fixture *fx = *state;
    char id[32];
    size_t big = 300 * 1024;
    char *title = malloc(5000), *body = malloc(big + 1);
    /* multi-byte characters, so a cut must land between them */
    for (size_t i = 0; i + 2 < 5000; i += 2)
        memcpy(title + i, "\xc3\xa9", 2);
    title[4998] = '\0';
    memset(body, 'b', big);
    body[big] = '\0';

    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 61);
    ev.label = "agent";
    ev.title = title;
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label");
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, r.session_id), 0);
    assert_true(strlen(s->title) <= 1024);
    assert_true(strlen(s->title) >= 1000);
    assert_int_equal(strlen(s->title) % 2, 0); /* whole characters */
    store_session_free(s);

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 61);
    ev.comment_body = body;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "added to session");
    store_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&e, &n, fx->s, r.session_id, 1, 0), 0);
    assert_int_equal(n, 1);
    assert_true(strlen(e[0].body) > 256 * 1024);
    assert_true(strlen(e[0].body) < 257 * 1024);
    store_event_list_free(e, n);
    free(title);
    free(body);
}

/* ---- duplicates and active sessions --------------------------------------- */

static void duplicate_delivery_writes_nothing(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 4);
    ev.label = "agent";
    ingest_result r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "label");
    int64_t d = count_deliveries(fx), s = count_sessions(fx), j = count_jobs(fx);

    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_DUPLICATE, "recorded before");
    assert_int_equal(r.session_id, 0);
    assert_int_equal(r.job_id, 0);
    assert_int_equal(count_deliveries(fx), d);
    assert_int_equal(count_sessions(fx), s);
    assert_int_equal(count_jobs(fx), j);

    /* an ignored delivery is a duplicate the second time too */
    ev = ev_make(fx, id, TEV_PING, NULL, 0);
    expect((ingest_result[]){ingest_ok(fx, &ev)}, INGEST_IGNORED, "ping");
    expect((ingest_result[]){ingest_ok(fx, &ev)}, INGEST_DUPLICATE, "recorded before");
}

static void second_trigger_keeps_one_session(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 9);
    ev.label = "agent";
    ingest_result first = ingest_ok(fx, &ev);
    expect(&first, INGEST_ACCEPTED, "label");

    ev = ev_make(fx, id, TEV_ISSUE_ASSIGNED, "octo/app", 9);
    ev.assignee = "farm-bot";
    ingest_result second = ingest_ok(fx, &ev);
    expect(&second, INGEST_IGNORED, "already has an active session");
    assert_int_equal(second.session_id, first.session_id);
    assert_int_equal(second.job_id, 0);
    assert_int_equal(count_sessions(fx), 1);
    assert_int_equal(count_jobs(fx), 1);
}

static void comments_and_close_go_to_the_session_log(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 21);
    ev.label = "agent";
    ingest_result r = ingest_ok(fx, &ev);
    int64_t sid = r.session_id;

    /* from anyone but a bot, writer or not: into the session's log, no job (a
     * queued session is not waiting for an answer, and none is a command) */
    const char *bodies[] = {"first \"quoted\" remark", "second, by a reader", "@farm-bot also"};
    for (int i = 0; i < 3; i++) {
        ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 21);
        ev.actor = i == 1 ? "reader" : "alice";
        ev.actor_access = i == 1 ? ACTOR_NONE : ACTOR_WRITE;
        ev.comment_body = (char *)bodies[i];
        ev.comment_id = 1000 + i;
        r = ingest_ok(fx, &ev);
        expect(&r, INGEST_ACCEPTED, "added to session");
        assert_int_equal(r.session_id, sid);
        assert_int_equal(r.job_id, 0);
    }
    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 21);
    ev.actor = "ci[bot]";
    ev.actor_is_bot = 1;
    ev.comment_body = "build passed";
    expect((ingest_result[]){ingest_ok(fx, &ev)}, INGEST_IGNORED, "bot");

    ev = ev_make(fx, id, TEV_ISSUE_CLOSED, "octo/app", 21);
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "issue closed");
    assert_int_equal(r.session_id, sid);

    store_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&e, &n, fx->s, sid, 0, 0), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(e[i].seq, (int64_t)i + 1);
    assert_string_equal(e[0].kind, "triggered");
    assert_string_equal(e[1].kind, "comment");
    assert_string_equal(e[1].actor, "alice");
    assert_non_null(strstr(e[1].body, "\"body\":\"first \\\"quoted\\\" remark\""));
    assert_non_null(strstr(e[1].body, "\"comment_id\":1000"));
    assert_string_equal(e[2].actor, "reader");
    assert_non_null(strstr(e[2].body, "\"access\":\"none\""));
    assert_string_equal(e[4].kind, "issue_closed");
    store_event_list_free(e, n);
    /* the run job, and the cancel job of the closed issue's work */
    assert_true(r.job_id > 0);
    store_job *cj = NULL;
    assert_int_equal(store_job_get(&cj, fx->s, r.job_id), 0);
    assert_string_equal(cj->kind, "cancel");
    assert_int_equal(cj->session_id, sid);
    store_job_free(cj);
    assert_int_equal(count_jobs(fx), 2);

    /* closing an issue with no session */
    ev = ev_make(fx, id, TEV_ISSUE_CLOSED, "octo/app", 22);
    expect((ingest_result[]){ingest_ok(fx, &ev)}, INGEST_IGNORED, "no active session");
}

static void reviews_and_pr_comments_reach_the_session(void **state)
{
    fixture *fx = *state;
    char id[32];
    tracker_event ev = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 31);
    ev.label = "agent";
    ingest_result r = ingest_ok(fx, &ev);
    int64_t sid = r.session_id;

    /* the pipeline opened PR #40 for the session (written here directly) */
    assert_int_equal(
        store_exec_json(NULL, fx->s, "UPDATE session SET pr_number = 40, state = 'review'", NULL),
        0);
    assert_int_equal(store_exec_json(NULL, fx->s, "UPDATE job SET state = 'done'", NULL), 0);

    /* a review starts a revision (review.h); its comments join it */
    ev = ev_make(fx, id, TEV_REVIEW_SUBMITTED, "octo/app", 40);
    ev.review_state = "changes_requested";
    ev.comment_body = "please rename";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "revise job");
    assert_int_equal(r.session_id, sid);

    ev = ev_make(fx, id, TEV_REVIEW_COMMENT, "octo/app", 40);
    ev.path = "src/main.c";
    ev.line = 12;
    ev.comment_body = "typo here";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "queued already");

    ev = ev_make(fx, id, TEV_COMMENT_CREATED, "octo/app", 40);
    ev.is_pr = 1;
    ev.comment_body = "looks good otherwise";
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "added to session");

    /* a review on another PR has no session */
    ev = ev_make(fx, id, TEV_REVIEW_SUBMITTED, "octo/app", 41);
    expect((ingest_result[]){ingest_ok(fx, &ev)}, INGEST_IGNORED,
           "no session for this pull request");

    ev = ev_make(fx, id, TEV_PR_CLOSED, "octo/app", 40);
    ev.is_pr = 1;
    ev.merged = 1;
    r = ingest_ok(fx, &ev);
    expect(&r, INGEST_ACCEPTED, "pull request closed");

    store_event *e = NULL;
    size_t n = 0;
    assert_int_equal(store_event_list(&e, &n, fx->s, sid, 0, 0), 0);
    assert_int_equal(n, 8);
    assert_string_equal(e[1].kind, "review");
    assert_non_null(strstr(e[1].body, "\"review_state\":\"changes_requested\""));
    assert_string_equal(e[2].kind, "revision_queued");
    assert_string_equal(e[3].kind, "review_comment");
    assert_non_null(strstr(e[3].body, "\"path\":\"src/main.c\""));
    assert_non_null(strstr(e[3].body, "\"line\":12"));
    assert_string_equal(e[4].kind, "revision_queued");
    assert_string_equal(e[5].kind, "comment");
    assert_non_null(strstr(e[5].body, "\"is_pr\":true"));
    assert_string_equal(e[6].kind, "pr_closed");
    assert_non_null(strstr(e[6].body, "\"merged\":true"));
    assert_string_equal(e[7].kind, "state");
    assert_non_null(strstr(e[7].body, "\"to\":\"done\""));
    store_event_list_free(e, n);
}

/* ---- concurrency ---------------------------------------------------------- */

typedef struct racer {
    fixture *fx;
    pthread_barrier_t *go;
    const char *delivery;
    int64_t number;
    ingest_result r;
    int rc;
} racer;

static void *race_one(void *arg)
{
    racer *x = arg;
    tracker_event ev = {0};
    ev.kind = TEV_ISSUE_LABELED;
    ev.tracker = "github";
    ev.delivery_id = (char *)x->delivery;
    ev.event = "issues";
    ev.repo = "octo/app";
    ev.number = x->number;
    ev.label = "agent";
    ev.actor = "alice";
    ev.actor_access = ACTOR_WRITE;
    pthread_barrier_wait(x->go);
    x->rc = farm_ingest(x->fx->f, &ev, &x->r);
    return NULL;
}

static void racing_duplicates_accept_once(void **state)
{
    fixture *fx = *state;
    enum { ROUNDS = 20, RACERS = 4 };
    pthread_barrier_t go;
    char ids[ROUNDS][32];

    for (int round = 0; round < ROUNDS; round++) {
        pthread_t t[RACERS];
        racer x[RACERS];
        int accepted = 0, dup = 0;
        snprintf(ids[round], sizeof(ids[round]), "race-%d", round);
        pthread_barrier_init(&go, NULL, RACERS);
        for (int i = 0; i < RACERS; i++) {
            x[i] = (racer){fx, &go, ids[round], 100 + round, {0}, -1};
            assert_int_equal(pthread_create(&t[i], NULL, race_one, &x[i]), 0);
        }
        for (int i = 0; i < RACERS; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(x[i].rc, 0);
            accepted += x[i].r.outcome == INGEST_ACCEPTED;
            dup += x[i].r.outcome == INGEST_DUPLICATE;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(accepted, 1);
        assert_int_equal(dup, RACERS - 1);
    }
    assert_int_equal(count_deliveries(fx), ROUNDS);
    assert_int_equal(count_sessions(fx), ROUNDS);
    assert_int_equal(count_jobs(fx), ROUNDS);
}

#define THREADS    16
#define PER_THREAD 50

typedef struct flood {
    fixture *fx;
    int thread;
    int accepted, failures;
} flood;

static void *flood_one(void *arg)
{
    flood *w = arg;
    char id[32];
    for (int i = 0; i < PER_THREAD; i++) {
        tracker_event ev = {0};
        ingest_result r;
        snprintf(id, sizeof(id), "flood-%d-%d", w->thread, i);
        ev.kind = TEV_ISSUE_LABELED;
        ev.tracker = "github";
        ev.delivery_id = id;
        ev.repo = "octo/app";
        ev.number = 1 + w->thread * PER_THREAD + i;
        ev.label = "agent";
        ev.actor = "alice";
        ev.actor_access = ACTOR_WRITE;
        if (farm_ingest(w->fx->f, &ev, &r) != 0)
            w->failures++;
        else
            w->accepted += r.outcome == INGEST_ACCEPTED;
    }
    return NULL;
}

static void concurrent_ingests_share_commits(void **state)
{
    fixture *fx = *state;
    pthread_t t[THREADS];
    flood w[THREADS];
    store_stats before, after;

    store_stats_get(&before, fx->s);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (flood){fx, i, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, flood_one, &w[i]), 0);
    }
    int accepted = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
        accepted += w[i].accepted;
    }
    store_stats_get(&after, fx->s);
    uint64_t commits = after.commits - before.commits;
    print_message("%d deliveries in %llu commits\n", THREADS * PER_THREAD,
                  (unsigned long long)commits);
    assert_int_equal(accepted, THREADS * PER_THREAD);
    assert_int_equal(count_deliveries(fx), THREADS * PER_THREAD);
    assert_int_equal(count_jobs(fx), THREADS * PER_THREAD);
    assert_true(commits < (uint64_t)(THREADS * PER_THREAD));
}

/* ---- without waiting: farm_ingest_submit() -------------------------------- */

typedef struct submitted {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    store *s;
    int completed, failed, visible;
    ingest_result last;
    char err[256];
} submitted;

/* A completion: the session it names must already be committed (a read
 * connection sees committed data only). */
static void submit_done(void *arg, int rc, const ingest_result *res)
{
    submitted *w = arg;
    store_session *sess = NULL;
    int seen = !rc && res->session_id && store_session_get(&sess, w->s, res->session_id) == 0;
    store_session_free(sess);
    pthread_mutex_lock(&w->lock);
    w->completed++;
    w->visible += seen;
    if (rc) {
        w->failed++;
        snprintf(w->err, sizeof(w->err), "%s", farm_error_last());
    } else {
        w->last = *res;
    }
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void submitted_wait(submitted *w, int n)
{
    pthread_mutex_lock(&w->lock);
    while (w->completed < n)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void submit_completes_after_the_commit(void **state)
{
    fixture *fx = *state;
    enum { N = 24 };
    char ids[N][32];
    tracker_event ev[N];
    submitted w = {.s = fx->s};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);

    for (int i = 0; i < N; i++) {
        ev[i] = ev_make(fx, ids[i], TEV_ISSUE_LABELED, "octo/app", 100 + i);
        ev[i].label = "agent";
        assert_int_equal(farm_ingest_submit(fx->f, &ev[i], submit_done, &w), 0);
    }
    submitted_wait(&w, N);
    assert_int_equal(w.failed, 0);
    assert_int_equal(w.visible, N);
    expect(&w.last, INGEST_ACCEPTED, "label");
    assert_int_equal(count_sessions(fx), N);
    assert_int_equal(count_jobs(fx), N);

    /* the same delivery again is a duplicate, and writes nothing */
    assert_int_equal(farm_ingest_submit(fx->f, &ev[0], submit_done, &w), 0);
    submitted_wait(&w, N + 1);
    expect(&w.last, INGEST_DUPLICATE, "recorded before");
    assert_int_equal(w.last.session_id, 0);
    assert_int_equal(count_deliveries(fx), N);

    /* a malformed event is refused at once, and done is never called */
    char id[32];
    tracker_event bad = ev_make(fx, id, TEV_ISSUE_LABELED, "octo/app", 1);
    bad.delivery_id = "";
    assert_int_equal(farm_ingest_submit(fx->f, &bad, submit_done, &w), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "delivery id"));
    assert_int_equal(farm_ingest_submit(fx->f, &ev[1], NULL, &w), FARM_EINVALID);
    assert_int_equal(w.completed, N + 1);
    assert_int_equal(count_deliveries(fx), N);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
}

int main(void)
{
    log_set_level(LOG_ERROR);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(data_dir_is_created_private),
        T(farm_open_fails_cleanly),
        T(label_match_creates_session_and_job),
        T(label_non_match_is_ignored),
        T(assigning_the_bot_triggers),
        T(mention_in_comment_triggers),
        T(on_open_triggers_only_where_configured),
        T(only_writers_and_never_bots),
        T(azure_allowlist_decides),
        T(unconfigured_repo_ping_and_installation_are_recorded),
        T(bad_events_are_refused),
        T(long_texts_are_cut_not_refused),
        T(duplicate_delivery_writes_nothing),
        T(second_trigger_keeps_one_session),
        T(comments_and_close_go_to_the_session_log),
        T(reviews_and_pr_comments_reach_the_session),
        T(racing_duplicates_accept_once),
        T(concurrent_ingests_share_commits),
        T(submit_completes_after_the_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
