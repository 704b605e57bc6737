/*
 * test_pipeline_transcript.c - the agent's transcript in the session log:
 * a fake `claude` on PATH (the "claude" preset) prints Claude Code's real
 * stream-json output (tests/fixtures/agents/claude-stream.jsonl) plus a line
 * longer than an output line may be, and the run's log holds, beside the raw
 * "output" lines, the agent_message / tool_call / tool_result / file_change
 * events of farm/run/transcript.c, each after the line it came from. A
 * chatty agent's events are capped with one "transcript_dropped" event; an
 * agent.command printing the same lines gives no transcript.
 *
 * The sandbox runs in unsafe-none mode here: the fake program lives in the
 * test's temp directory, and what is tested is the output handling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_git_helpers.h"

#include "base/error.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/run/pipeline.h"
#include "farm/run/pipeline_internal.h"
#include "farm/store/store.h"
#include "farm/store/store_local.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LONG_TEXT 6000 /* > PL_LINE_MAX: the raw line is cut, the transcript is not */

typedef struct fx {
    char dir[256];
    char bare[512];
    farm *f;
    store *s;
    local_backend be;
} fx;

static char old_path[8192];

static void write_text(const char *path, const char *text, int mode)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    chmod(path, (mode_t)mode);
}

static void make_origin(fx *x)
{
    char work[512], p[600];
    snprintf(x->bare, sizeof x->bare, "%s/origin.git", x->dir);
    snprintf(work, sizeof work, "%s/seed", x->dir);
    assert_int_equal(TH_GIT(x->dir, "init", "-q", "--bare", "-b", "main", x->bare), 0);
    assert_int_equal(TH_GIT(x->dir, "init", "-q", "-b", "main", work), 0);
    snprintf(p, sizeof p, "%s/hello.txt", work);
    write_text(p, "hello\n", 0644);
    assert_int_equal(TH_GIT(work, "add", "-A"), 0);
    assert_int_equal(TH_GIT(work, "commit", "-q", "-m", "seed"), 0);
    assert_int_equal(TH_GIT(work, "push", "-q", x->bare, "main"), 0);
}

/* A farm whose agent is the fake `claude` in dir/bin (on PATH) printing
 * what `body` prints, or agent.command running the same when as_command. */
static void fx_open(fx *x, const char *body, int as_command)
{
    char cfgpath[600], text[4096], bin[600], prog[700], script[8192];
    config *cfg = NULL;
    char *errors = NULL;

    snprintf(x->dir, sizeof x->dir, "/tmp/farm-ptrans-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    chmod(x->dir, 0711);
    make_origin(x);
    snprintf(bin, sizeof bin, "%s/bin", x->dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    snprintf(prog, sizeof prog, "%s/claude", bin);
    /* it reads the prompt on standard input, fixes the file, and talks */
    snprintf(script, sizeof script,
             "#!/bin/sh\ncat >/dev/null\necho 'hello, fixed' > hello.txt\n%s\n", body);
    write_text(prog, script, 0755);
    snprintf(text, sizeof text,
             "{\"data_dir\": \"%s/data\", \"public_url\": \"http://127.0.0.1:9\","
             " \"sandbox\": {\"mode\": \"unsafe-none\"},"
             " \"repos\": [{\"name\": \"demo/app\", \"tracker\": \"local\","
             " \"clone_url\": \"file://%s\", \"test\": \"grep -q fixed hello.txt\","
             " \"trigger\": {\"label\": \"agent\"}}],"
             " \"agent\": %s%s%s}",
             x->dir, x->bare, as_command ? "{\"command\": [\"" : "{\"preset\": \"claude\"",
             as_command ? prog : "", as_command ? "\"]}" : "}");
    snprintf(cfgpath, sizeof cfgpath, "%s/farm.json", x->dir);
    write_text(cfgpath, text, 0600);
    char path[sizeof old_path + 700];
    snprintf(path, sizeof path, "%s:%s", bin, old_path);
    setenv("PATH", path, 1);
    if (config_load(&cfg, cfgpath, &errors) != 0)
        fail_msg("config: %s", errors ? errors : farm_error_last());
    assert_int_equal(farm_open(&x->f, cfg), 0);
    x->s = farm_store(x->f);
    store_local_backend(&x->be, x->s);
}

static void fx_close(fx *x)
{
    farm_close(x->f);
    setenv("PATH", old_path, 1);
    const char *argv[] = {"rm", "-rf", x->dir, NULL};
    th_run(NULL, 0, "/", argv);
}

struct new_session {
    int64_t number;
    int64_t session_id;
    int64_t job_id;
};

static int new_session_fn(store_tx *tx, void *arg)
{
    struct new_session *n = arg;
    store_session s = {0};
    s.tracker = "local";
    s.repo = "demo/app";
    s.number = n->number;
    s.title = "Fix the greeting";
    int rc = store_tx_session_insert(&n->session_id, tx, &s);
    return rc ? rc : store_tx_job_insert(&n->job_id, tx, "run", n->session_id, 0);
}

/* Run one issue's job to its end; the session's id. */
static int64_t run_issue(fx *x)
{
    local_item it = {0};
    struct new_session n = {0};
    it.repo = "demo/app";
    it.title = "Fix the greeting";
    it.body = "hello.txt should say fixed.";
    it.author = "alice";
    it.state = "open";
    assert_int_equal(x->be.item_insert(&n.number, x->be.ctx, &it), 0);
    assert_int_equal(store_write(x->s, new_session_fn, &n), 0);
    store_job *j = NULL;
    pipeline_ctl ctl = {0};
    assert_int_equal(store_job_get(&j, x->s, n.job_id), 0);
    int rc = pipeline_run(x->f, j, &ctl);
    if (rc)
        fprintf(stderr, "pipeline_run: %s (%s)\n", farm_error_name(rc), farm_error_last());
    assert_int_equal(rc, 0);
    store_job_free(j);
    return n.session_id;
}

/* Every event of the session, in order, as a JSON array of
 * {"seq","kind","body"}. */
static json_t *all_events(fx *x, int64_t sid)
{
    json_t *out = json_array();
    int64_t after = 0;
    for (;;) {
        store_event *e = NULL;
        size_t n = 0;
        assert_int_equal(store_event_list(&e, &n, x->s, sid, after, STORE_LIST_MAX), 0);
        for (size_t i = 0; i < n; i++) {
            json_t *body = json_loads(e[i].body ? e[i].body : "null", JSON_DECODE_ANY, NULL);
            json_array_append_new(out,
                                  json_pack("{s:I,s:s,s:o}", "seq", (json_int_t)e[i].seq, "kind",
                                            e[i].kind, "body", body ? body : json_null()));
        }
        after = n ? e[n - 1].seq : after;
        store_event_list_free(e, n);
        if (n < STORE_LIST_MAX)
            return out;
    }
}

static int is_transcript(const char *kind)
{
    static const char *const kinds[] = {"agent_message", "tool_call", "tool_result",
                                        "file_change",   "command",   "error"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (!strcmp(kind, kinds[i]))
            return 1;
    return 0;
}

static int count_of(json_t *events, const char *kind)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(events, i, e) n +=
        !strcmp(json_string_value(json_object_get(e, "kind")), kind);
    return n;
}

/* The seq of the first "output" line holding needle, or -1. */
static int64_t output_seq(json_t *events, const char *needle)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        const char *line = json_string_value(json_object_get(json_object_get(e, "body"), "line"));
        if (!strcmp(json_string_value(json_object_get(e, "kind")), "output") && line &&
            strstr(line, needle))
            return json_integer_value(json_object_get(e, "seq"));
    }
    return -1;
}

/* A claude run: its transcript events, in order, each after its line. */
static void claude_run_logs_its_transcript(void **state)
{
    (void)state;
    char fixture[1024], longline[256], body[2048];
    const char *src = getenv("FARM_SOURCE_DIR");
    fx x;

    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/agents/claude-stream.jsonl",
             src ? src : ".");
    snprintf(longline, sizeof longline, "/tmp/farm-ptrans-long-%d.jsonl", (int)getpid());
    {
        FILE *fp = fopen(longline, "w");
        assert_non_null(fp);
        fputs("{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"",
              fp);
        for (int i = 0; i < LONG_TEXT; i++)
            fputc('a' + i % 26, fp);
        fputs("\"}]}}\n", fp);
        fclose(fp);
    }
    /* the fixture, a line over PL_LINE_MAX, garbage, stderr */
    snprintf(body, sizeof body,
             "cat '%s'\ncat '%s'\necho 'not json'\necho '{\"type\":\"assistant\"' >&2\n", fixture,
             longline);
    fx_open(&x, body, 0);
    int64_t sid = run_issue(&x);
    json_t *events = all_events(&x, sid);
    unlink(longline);

    /* the transcript, in order, after the agent's first output line */
    static const char *const want[] = {"agent_message", "tool_call",     "tool_result",
                                       "file_change",   "agent_message", "agent_message"};
    size_t i, k = 0;
    json_t *e;
    int64_t first_out = output_seq(events, "I'll create the file.");
    assert_true(first_out > 0);
    json_array_foreach(events, i, e)
    {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        json_t *b = json_object_get(e, "body");
        if (!is_transcript(kind))
            continue;
        if (k >= sizeof(want) / sizeof(want[0]))
            fail_msg("an extra transcript event: %s", kind);
        assert_string_equal(kind, want[k]);
        assert_string_equal(json_string_value(json_object_get(b, "step")), "agent");
        assert_int_equal(json_integer_value(json_object_get(b, "round")), 1);
        assert_true(json_integer_value(json_object_get(e, "seq")) > first_out);
        if (k == 0)
            assert_string_equal(json_string_value(json_object_get(b, "text")),
                                "I'll create the file.");
        if (k == 1) {
            assert_string_equal(json_string_value(json_object_get(b, "tool")), "Write");
            assert_string_equal(json_string_value(json_object_get(b, "summary")),
                                "/tmp/capture/repo/hello.txt");
        }
        if (k == 2)
            assert_true(json_is_true(json_object_get(b, "ok")));
        if (k == 3) {
            assert_string_equal(json_string_value(json_object_get(b, "kind")), "add");
            assert_string_equal(json_string_value(json_object_get(b, "path")),
                                "/tmp/capture/repo/hello.txt");
        }
        if (k == 4) {
            assert_string_equal(json_string_value(json_object_get(b, "text")),
                                "Done: I wrote hello.txt.");
            /* right after the line it came from */
            int64_t line = output_seq(events, "Done: I wrote hello.txt.");
            assert_true(line > 0);
            assert_true(json_integer_value(json_object_get(e, "seq")) > line);
        }
        if (k == 5) /* the whole long line was read, though the logged one was cut */
            assert_int_equal(strlen(json_string_value(json_object_get(b, "text"))), LONG_TEXT);
        k++;
    }
    assert_int_equal(k, sizeof(want) / sizeof(want[0]));
    assert_true(output_seq(events, "[line cut at") > 0);
    assert_true(output_seq(events, "not json") > 0);
    assert_int_equal(count_of(events, "transcript_dropped"), 0);
    json_decref(events);
    fx_close(&x);
}

/* More events than an agent call may log: the cap, and one notice. */
static void chatty_transcript_is_capped(void **state)
{
    (void)state;
    fx x;
    fx_open(&x,
            "i=0; while [ $i -lt 5200 ]; do echo "
            "'{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}"
            "]}}';"
            " i=$((i+1)); done",
            0);
    int64_t sid = run_issue(&x);
    json_t *events = all_events(&x, sid);
    assert_int_equal(count_of(events, "agent_message"), 5000);
    assert_int_equal(count_of(events, "transcript_dropped"), 1);
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "kind")), "transcript_dropped"))
            continue;
        json_t *b = json_object_get(e, "body");
        assert_int_equal(json_integer_value(json_object_get(b, "events")), 200);
        assert_string_equal(json_string_value(json_object_get(b, "step")), "agent");
    }
    json_decref(events);
    fx_close(&x);
}

/* agent.command prints the same lines: no preset, no transcript. */
static void command_agent_has_no_transcript(void **state)
{
    (void)state;
    char body[1200];
    const char *src = getenv("FARM_SOURCE_DIR");
    fx x;
    snprintf(body, sizeof body, "cat '%s/tests/fixtures/agents/claude-stream.jsonl'",
             src ? src : ".");
    fx_open(&x, body, 1);
    int64_t sid = run_issue(&x);
    json_t *events = all_events(&x, sid);
    assert_true(output_seq(events, "I'll create the file.") > 0);
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        if (is_transcript(json_string_value(json_object_get(e, "kind"))))
            fail_msg("a transcript event from agent.command: %s",
                     json_string_value(json_object_get(e, "kind")));
    }
    json_decref(events);
    fx_close(&x);
}

int main(void)
{
    const char *p = getenv("PATH");
    snprintf(old_path, sizeof old_path, "%s", p && *p ? p : "/usr/local/bin:/usr/bin:/bin");
    if (vcs_git_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claude_run_logs_its_transcript),
        cmocka_unit_test(chatty_transcript_is_capped),
        cmocka_unit_test(command_agent_has_no_transcript),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
