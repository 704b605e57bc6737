/*
 * test_transcript.c - the agent transcript parser on the real CLIs' output
 * (tests/fixtures/agents/, captured from the pinned Claude Code, Codex and opencode
 * against a scripted model: docs/agents.md), event for event; and on what
 * must never crash it: garbage, every truncation of every real line, real
 * lines with bytes changed, huge and deep lines, failing emitters, results
 * without calls, floods of calls.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/run/transcript.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

/* Events as "kind {compact json, sorted keys}". */
typedef struct events {
    char *v[256];
    size_t n;
    int fail_at; /* emit returns FARM_EIO for this event (1-based), 0: never */
} events;

static int collect(const char *kind, json_t *body, void *arg)
{
    events *e = arg;
    assert_non_null(kind);
    assert_true(json_is_object(body));
    if (e->fail_at && (int)e->n + 1 == e->fail_at)
        return FARM_EIO;
    char *json = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(json);
    assert_true(e->n < sizeof(e->v) / sizeof(e->v[0]));
    assert_true(asprintf(&e->v[e->n++], "%s %s", kind, json) > 0);
    free(json);
    return 0;
}

static void events_clear(events *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    e->n = 0;
}

static char *slurp(const char *name, size_t *len)
{
    char path[1024];
    const char *src = getenv("FARM_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/fixtures/agents/%s", src ? src : FARM_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* Feed fixture `name` line by line (newline included, as the pipeline has
 * it) to a new parser of `format`; every line must succeed. */
static void feed_fixture(events *e, const char *format, const char *name)
{
    size_t len;
    char *text = slurp(name, &len);
    transcript_parser *p = transcript_new(format);
    assert_non_null(p);
    int total = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) + 1 : (size_t)(text + len - line);
        int rc = transcript_line(p, line, n, collect, e);
        if (rc < 0)
            fail_msg("%s: %s (%s)", name, farm_error_name(rc), farm_error_last());
        total += rc;
        line += n;
    }
    assert_int_equal((size_t)total, e->n);
    transcript_free(p);
    free(text);
}

static void expect(events *e, const char *const *want, size_t n)
{
    for (size_t i = 0; i < e->n || i < n; i++) {
        const char *got = i < e->n ? e->v[i] : "(none)";
        const char *w = i < n ? want[i] : "(none)";
        if (strcmp(got, w) != 0) {
            for (size_t k = 0; k < e->n; k++)
                print_message("  got[%zu] %s\n", k, e->v[k]);
            fail_msg("event %zu:\n  got  %s\n  want %s", i, got, w);
        }
    }
    events_clear(e);
}

#define EXPECT(e, ...)                                                                             \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect((e), want_, sizeof(want_) / sizeof(want_[0]));                                      \
    } while (0)

/* One line through a parser; returns transcript_line's result. */
static int one(transcript_parser *p, events *e, const char *line)
{
    return transcript_line(p, line, strlen(line), collect, e);
}

/* ---- Claude Code: -p --output-format stream-json --verbose --------------------- */

static void claude_write(void **state)
{
    events e = {0};
    feed_fixture(&e, "claude-stream-json", "claude-stream.jsonl");
    EXPECT(&e, "agent_message {\"text\":\"I'll create the file.\"}",
           "tool_call {\"id\":\"toolu_01FakeWrite000000000000000001\","
           "\"summary\":\"/tmp/capture/repo/hello.txt\",\"tool\":\"Write\"}",
           "tool_result {\"id\":\"toolu_01FakeWrite000000000000000001\",\"ok\":true}",
           "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/hello.txt\"}",
           "agent_message {\"text\":\"Done: I wrote hello.txt.\"}");
}

static void claude_multi(void **state)
{
    events e = {0};
    feed_fixture(&e, "claude-stream-json", "claude-stream-multi.jsonl");
    EXPECT(&e, "agent_message {\"text\":\"Let me create the notes first.\"}",
           "tool_call {\"id\":\"toolu_01FakeBash000000000000000001\","
           "\"summary\":\"printf 'one\\\\n' > notes.txt && cat notes.txt\",\"tool\":\"Bash\"}",
           "tool_result {\"id\":\"toolu_01FakeBash000000000000000001\",\"ok\":true}",
           "command {\"command\":\"printf 'one\\\\n' > notes.txt && cat notes.txt\","
           "\"exit_code\":0}",
           "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/notes.txt\"}",
           "tool_call {\"id\":\"toolu_01FakeEdit000000000000000002\","
           "\"summary\":\"/tmp/capture/repo/notes.txt\",\"tool\":\"Edit\"}",
           "tool_result {\"id\":\"toolu_01FakeEdit000000000000000002\",\"ok\":true}",
           "file_change {\"kind\":\"update\",\"path\":\"/tmp/capture/repo/notes.txt\"}",
           "tool_call {\"id\":\"toolu_01FakeRead000000000000000003\","
           "\"summary\":\"/tmp/capture/repo/notes.txt\",\"tool\":\"Read\"}",
           "tool_result {\"id\":\"toolu_01FakeRead000000000000000003\",\"ok\":true}",
           "agent_message {\"text\":\"Now a command that fails.\"}",
           "tool_call {\"id\":\"toolu_01FakeBash000000000000000004\",\"summary\":\"exit 3\","
           "\"tool\":\"Bash\"}",
           "tool_result {\"id\":\"toolu_01FakeBash000000000000000004\",\"ok\":false}",
           "command {\"command\":\"exit 3\",\"exit_code\":3}",
           "agent_message {\"text\":\"Done: notes.txt now says two; the last command failed "
           "with exit code 3.\"}");
}

static void claude_bash_files(void **state)
{
    events e = {0};
    feed_fixture(&e, "claude-stream-json", "claude-stream-bash-files.jsonl");
    EXPECT(&e,
           "tool_call {\"id\":\"toolu_01FakeBash000000000000000001\",\"summary\":\"printf "
           "'x\\\\n' > a.txt && printf 'y\\\\n' > b.txt\",\"tool\":\"Bash\"}",
           "tool_result {\"id\":\"toolu_01FakeBash000000000000000001\",\"ok\":true}",
           "command {\"command\":\"printf 'x\\\\n' > a.txt && printf 'y\\\\n' > b.txt\","
           "\"exit_code\":0}",
           "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/a.txt\"}",
           "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/b.txt\"}",
           "tool_call {\"id\":\"toolu_01FakeBash000000000000000002\",\"summary\":\"rm a.txt && "
           "printf 'z\\\\n' >> b.txt\",\"tool\":\"Bash\"}",
           "tool_result {\"id\":\"toolu_01FakeBash000000000000000002\",\"ok\":true}",
           "command {\"command\":\"rm a.txt && printf 'z\\\\n' >> b.txt\",\"exit_code\":0}",
           "file_change {\"kind\":\"delete\",\"path\":\"/tmp/capture/repo/a.txt\"}",
           "file_change {\"kind\":\"update\",\"path\":\"/tmp/capture/repo/b.txt\"}",
           "tool_call {\"id\":\"toolu_01FakeWrite000000000000000003\","
           "\"summary\":\"/tmp/capture/repo/b.txt\",\"tool\":\"Write\"}",
           "tool_result {\"id\":\"toolu_01FakeWrite000000000000000003\",\"ok\":true}",
           "file_change {\"kind\":\"update\",\"path\":\"/tmp/capture/repo/b.txt\"}",
           "agent_message {\"text\":\"Done: I wrote hello.txt.\"}");
}

/* The model API refuses the key: one retry line, Claude's synthetic answer,
 * and the failed result. */
static void claude_auth_failure(void **state)
{
    events e = {0};
    feed_fixture(&e, "claude-stream-json", "claude-stream-401.jsonl");
    EXPECT(&e,
           "error {\"fatal\":false,\"message\":\"API request failed (authentication_failed, HTTP "
           "401), retry 1 of 1\"}",
           "agent_message {\"text\":\"Invalid API key · Fix external API key\"}",
           "error {\"fatal\":true,\"message\":\"Invalid API key · Fix external API key\"}");
}

/* Shapes the fixtures do not hold: other tools' summaries, a result whose
 * call was never seen, an error result with output after the exit code, a
 * result given as content blocks, a failed run without text. */
static void claude_other_shapes(void **state)
{
    events e = {0};
    transcript_parser *p = transcript_new("claude-stream-json");
    assert_non_null(p);
    assert_int_equal(
        one(p, &e,
            "{\"type\":\"assistant\",\"message\":{\"content\":["
            "{\"type\":\"thinking\",\"thinking\":\"hmm\"},{\"type\":\"text\",\"text\":\"  \\n\"},"
            "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"Grep\",\"input\":{\"pattern\":\"x+\","
            "\"path\":\"src\"}},"
            "{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"TodoWrite\",\"input\":{\"todos\":[1]}}"
            ","
            "{\"type\":\"tool_use\",\"id\":\"t3\",\"name\":\"Bash\",\"input\":{\"command\":\"make "
            "test\"}},"
            "{\"type\":\"tool_use\",\"id\":\"t4\",\"name\":\"NotebookEdit\",\"input\":{"
            "\"notebook_path\":\"a.ipynb\"}},"
            "{\"type\":\"tool_use\",\"name\":\"NoId\"},{\"type\":\"tool_use\",\"id\":\"t5\"}]}}\n"),
        4);
    EXPECT(&e, "tool_call {\"id\":\"t1\",\"summary\":\"x+\",\"tool\":\"Grep\"}",
           "tool_call {\"id\":\"t2\",\"summary\":\"{\\\"todos\\\":[1]}\",\"tool\":\"TodoWrite\"}",
           "tool_call {\"id\":\"t3\",\"summary\":\"make test\",\"tool\":\"Bash\"}",
           "tool_call {\"id\":\"t4\",\"summary\":\"a.ipynb\",\"tool\":\"NotebookEdit\"}");
    /* two results in one line: tool_use_result cannot say whose it is */
    assert_int_equal(
        one(p, &e,
            "{\"type\":\"user\",\"message\":{\"content\":["
            "{\"type\":\"tool_result\",\"tool_use_id\":\"t3\",\"is_error\":true,"
            "\"content\":[{\"type\":\"text\",\"text\":\"Exit code 2\\nmake: *** "
            "[test] Error 1\"}]},"
            "{\"type\":\"tool_result\",\"tool_use_id\":\"t4\"},"
            "{\"type\":\"tool_result\",\"tool_use_id\":\"nobody\"}]},"
            "\"tool_use_result\":{\"bashEditDiff\":{\"files\":[{\"filePath\":\"x\"}]}}}"),
        5);
    EXPECT(&e, "tool_result {\"id\":\"t3\",\"ok\":false}",
           "command {\"command\":\"make test\",\"exit_code\":2}",
           "tool_result {\"id\":\"t4\",\"ok\":true}",
           "file_change {\"kind\":\"update\",\"path\":\"a.ipynb\"}",
           "tool_result {\"id\":\"nobody\",\"ok\":true}");
    /* a result seen twice: the second has no call left to explain it */
    assert_int_equal(
        one(p, &e,
            "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\","
            "\"tool_use_id\":\"t3\",\"is_error\":true,\"content\":\"Exit code 900\"}]}}"),
        1);
    EXPECT(&e, "tool_result {\"id\":\"t3\",\"ok\":false}");
    /* an interrupted command: no exit code */
    assert_int_equal(
        one(p, &e,
            "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
            "\"id\":\"t6\",\"name\":\"Bash\",\"input\":{\"command\":\"sleep 1000\"}}]}}"),
        1);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\","
                         "\"tool_use_id\":\"t6\",\"is_error\":true,\"content\":\"Command timed "
                         "out\"}]}}"),
                     2);
    EXPECT(&e, "tool_call {\"id\":\"t6\",\"summary\":\"sleep 1000\",\"tool\":\"Bash\"}",
           "tool_result {\"id\":\"t6\",\"ok\":false}",
           "command {\"command\":\"sleep 1000\",\"exit_code\":null}");
    /* failed runs */
    assert_int_equal(one(p, &e, "{\"type\":\"result\",\"subtype\":\"error_max_turns\"}"), 1);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
                         "\"result\":\"fine\"}"),
                     0);
    assert_int_equal(one(p, &e, "{\"type\":\"result\",\"is_error\":true}"), 1);
    EXPECT(&e, "error {\"fatal\":true,\"message\":\"error_max_turns\"}",
           "error {\"fatal\":true,\"message\":\"unknown error\"}");
    /* a retry whose error name is long and not ASCII: cut, still UTF-8 */
    char retry[1024];
    int at = snprintf(retry, sizeof(retry),
                      "{\"type\":\"system\",\"subtype\":\"api_retry\","
                      "\"attempt\":2,\"max_retries\":10,\"error\":\"");
    for (int i = 0; i < 150; i++)
        at += snprintf(retry + at, sizeof(retry) - (size_t)at, "\xc3\xa9");
    snprintf(retry + at, sizeof(retry) - (size_t)at, "\"}");
    assert_int_equal(one(p, &e, retry), 1);
    assert_non_null(strstr(e.v[0], "HTTP 0), retry 2 of 10"));
    assert_non_null(strstr(e.v[0], "\xc3\xa9..."));
    events_clear(&e);
    /* lines of other types say nothing */
    assert_int_equal(one(p, &e, "{\"type\":\"system\",\"subtype\":\"init\",\"cwd\":\"/\"}"), 0);
    assert_int_equal(one(p, &e, "{\"type\":\"stream_event\",\"event\":{}}"), 0);
    transcript_free(p);
}

/* Summaries stay short, on one line and valid UTF-8; long texts are cut. */
static void claude_summaries_are_clipped(void **state)
{
    events e = {0};
    transcript_parser *p = transcript_new("claude-stream-json");
    assert_non_null(p);
    char cmd[1200] = "echo a\\nb\\t";
    while (strlen(cmd) < 1000)
        strcat(cmd, "\xc3\xa9"); /* é, two bytes */
    char *line = NULL;
    assert_true(asprintf(&line,
                         "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                         "\"id\":\"t\",\"name\":\"Bash\",\"input\":{\"command\":\"%s\"}}]}}",
                         cmd) > 0);
    assert_int_equal(one(p, &e, line), 1);
    json_t *ev = json_loads(strchr(e.v[0], '{'), 0, NULL);
    assert_non_null(ev); /* json_loads checks the UTF-8 */
    const char *summary = json_string_value(json_object_get(ev, "summary"));
    assert_true(strlen(summary) <= TRANSCRIPT_SUMMARY_MAX);
    assert_true(strlen(summary) >= TRANSCRIPT_SUMMARY_MAX - 4);
    assert_non_null(strstr(summary, "echo a b "));
    assert_string_equal(summary + strlen(summary) - 3, "...");
    json_decref(ev);
    events_clear(&e);
    free(line);

    size_t big = TRANSCRIPT_TEXT_MAX + 100;
    line = malloc(big + 100);
    assert_non_null(line);
    int at = sprintf(line, "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                           "\"text\":\"");
    memset(line + at, 'x', big);
    strcpy(line + at + big, "\"}]}}");
    assert_int_equal(one(p, &e, line), 1);
    ev = json_loads(strchr(e.v[0], '{'), 0, NULL);
    assert_int_equal(strlen(json_string_value(json_object_get(ev, "text"))), TRANSCRIPT_TEXT_MAX);
    json_decref(ev);
    events_clear(&e);
    free(line);
    transcript_free(p);
}

/* Calls whose results never come are forgotten in bulk, not kept forever. */
static void claude_pending_is_bounded(void **state)
{
    events e = {0};
    transcript_parser *p = transcript_new("claude-stream-json");
    assert_non_null(p);
    char line[256];
    for (int i = 0; i < TRANSCRIPT_PENDING_MAX * 3 + 7; i++) {
        snprintf(line, sizeof(line),
                 "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                 "\"id\":\"c%d\",\"name\":\"Bash\",\"input\":{\"command\":\"true %d\"}}]}}",
                 i, i);
        assert_int_equal(one(p, &e, line), 1);
        events_clear(&e);
    }
    snprintf(line, sizeof(line),
             "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\","
             "\"tool_use_id\":\"c%d\"}]}}",
             TRANSCRIPT_PENDING_MAX * 3 + 6);
    assert_int_equal(one(p, &e, line), 2);
    EXPECT(&e, "tool_result {\"id\":\"c3078\",\"ok\":true}",
           "command {\"command\":\"true 3078\",\"exit_code\":0}");
    transcript_free(p);
}

/* ---- Codex: exec --json ------------------------------------------------------------ */

static void codex_write(void **state)
{
    events e = {0};
    feed_fixture(&e, "codex-exec-json", "codex-exec.jsonl");
    EXPECT(&e,
           "tool_call {\"id\":\"item_0\",\"summary\":\"/tmp/capture/repo/hello.txt\","
           "\"tool\":\"apply_patch\"}",
           "tool_result {\"id\":\"item_0\",\"ok\":true}",
           "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/hello.txt\"}",
           "agent_message {\"text\":\"Done: I wrote hello.txt.\"}");
}

static void codex_multi(void **state)
{
    events e = {0};
    feed_fixture(&e, "codex-exec-json", "codex-exec-multi.jsonl");
    EXPECT(
        &e,
        "tool_call {\"id\":\"item_1\",\"summary\":\"/bin/bash -lc \\\"printf 'one\\\\\\\\n' > "
        "notes.txt && cat notes.txt\\\"\",\"tool\":\"shell\"}",
        "tool_result {\"id\":\"item_1\",\"ok\":true}",
        "command {\"command\":\"/bin/bash -lc \\\"printf 'one\\\\\\\\n' > notes.txt && cat "
        "notes.txt\\\"\",\"exit_code\":0}",
        "tool_call {\"id\":\"item_2\",\"summary\":\"/tmp/capture/repo/notes.txt\","
        "\"tool\":\"apply_patch\"}",
        "tool_result {\"id\":\"item_2\",\"ok\":true}",
        "file_change {\"kind\":\"update\",\"path\":\"/tmp/capture/repo/notes.txt\"}",
        "tool_call {\"id\":\"item_3\",\"summary\":\"/tmp/capture/repo/gone.txt\","
        "\"tool\":\"apply_patch\"}",
        "tool_result {\"id\":\"item_3\",\"ok\":true}",
        "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/gone.txt\"}",
        "tool_call {\"id\":\"item_4\",\"summary\":\"/tmp/capture/repo/gone.txt\","
        "\"tool\":\"apply_patch\"}",
        "tool_result {\"id\":\"item_4\",\"ok\":true}",
        "file_change {\"kind\":\"delete\",\"path\":\"/tmp/capture/repo/gone.txt\"}",
        "tool_call {\"id\":\"item_5\",\"summary\":\"/bin/bash -lc 'exit 3'\",\"tool\":\"shell\"}",
        "tool_result {\"id\":\"item_5\",\"ok\":false}",
        "command {\"command\":\"/bin/bash -lc 'exit 3'\",\"exit_code\":3}",
        "agent_message {\"text\":\"Done: notes.txt now says two; the last command failed "
        "with exit code 3.\"}");
}

static void codex_auth_failure(void **state)
{
    events e = {0};
    feed_fixture(&e, "codex-exec-json", "codex-exec-401.jsonl");
#define CODEX_401                                                                                  \
    "unexpected status 401 Unauthorized: Incorrect API key provided, url: "                        \
    "http://127.0.0.1:18081/v1/responses"
    EXPECT(&e, "error {\"fatal\":false,\"message\":\"Reconnecting... 1/5 (" CODEX_401 ")\"}",
           "error {\"fatal\":false,\"message\":\"Reconnecting... 2/5 (" CODEX_401 ")\"}",
           "error {\"fatal\":false,\"message\":\"Reconnecting... 3/5 (" CODEX_401 ")\"}",
           "error {\"fatal\":false,\"message\":\"Reconnecting... 4/5 (" CODEX_401 ")\"}",
           "error {\"fatal\":false,\"message\":\"Reconnecting... 5/5 (" CODEX_401 ")\"}",
           "error {\"fatal\":false,\"message\":\"" CODEX_401 "\"}",
           "error {\"fatal\":true,\"message\":\"" CODEX_401 "\"}");
}

/* An item that completes without having started (Codex skips item.started
 * for some), one restated, a failed patch, MCP and web calls, error items. */
static void codex_other_shapes(void **state)
{
    events e = {0};
    transcript_parser *p = transcript_new("codex-exec-json");
    assert_non_null(p);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_9\",\"type\":"
                         "\"command_execution\",\"command\":\"ls\",\"aggregated_output\":\"\","
                         "\"exit_code\":null,\"status\":\"declined\"}}"),
                     3);
    EXPECT(&e, "tool_call {\"id\":\"item_9\",\"summary\":\"ls\",\"tool\":\"shell\"}",
           "tool_result {\"id\":\"item_9\",\"ok\":false}",
           "command {\"command\":\"ls\",\"exit_code\":null}");
    const char *started = "{\"type\":\"item.started\",\"item\":{\"id\":\"item_1\",\"type\":"
                          "\"file_change\",\"changes\":[{\"path\":\"a\",\"kind\":\"add\"},"
                          "{\"path\":\"b\",\"kind\":\"rename\"},{\"kind\":\"add\"}],"
                          "\"status\":\"in_progress\"}}";
    assert_int_equal(one(p, &e, started), 1);
    assert_int_equal(one(p, &e, started), 0);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_1\",\"type\":"
                         "\"file_change\",\"changes\":[{\"path\":\"a\",\"kind\":\"add\"}],"
                         "\"status\":\"failed\"}}"),
                     1);
    EXPECT(&e, "tool_call {\"id\":\"item_1\",\"summary\":\"a, b\",\"tool\":\"apply_patch\"}",
           "tool_result {\"id\":\"item_1\",\"ok\":false}");
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.started\",\"item\":{\"id\":\"item_2\",\"type\":"
                         "\"mcp_tool_call\",\"server\":\"docs\",\"tool\":\"search\","
                         "\"status\":\"in_progress\"}}"),
                     1);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_2\",\"type\":"
                         "\"mcp_tool_call\",\"server\":\"docs\",\"tool\":\"search\","
                         "\"status\":\"completed\"}}"),
                     1);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_3\",\"type\":"
                         "\"web_search\",\"query\":\"jansson\"}}"),
                     2);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_4\",\"type\":"
                         "\"error\",\"message\":\"Model metadata not found\"}}"),
                     1);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_5\",\"type\":"
                         "\"reasoning\",\"text\":\"**Planning**\"}}"),
                     0);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"item.updated\",\"item\":{\"id\":\"item_6\",\"type\":"
                         "\"todo_list\",\"items\":[]}}"),
                     0);
    assert_int_equal(one(p, &e, "{\"type\":\"turn.failed\"}"), 1);
    EXPECT(&e, "tool_call {\"id\":\"item_2\",\"summary\":\"docs.search\",\"tool\":\"mcp\"}",
           "tool_result {\"id\":\"item_2\",\"ok\":true}",
           "tool_call {\"id\":\"item_3\",\"summary\":\"jansson\",\"tool\":\"web_search\"}",
           "tool_result {\"id\":\"item_3\",\"ok\":true}",
           "error {\"fatal\":false,\"message\":\"Model metadata not found\"}",
           "error {\"fatal\":true,\"message\":\"unknown error\"}");
    transcript_free(p);
}

/* ---- opencode: run --format json ------------------------------------------------------- */

static void opencode_write(void **state)
{
    events e = {0};
    feed_fixture(&e, "opencode-run-json", "opencode-run.jsonl");
    EXPECT(&e, "agent_message {\"text\":\"I'll create the file.\"}",
           "tool_call {\"id\":\"toolu_01Fakewrite000000000000000001\","
           "\"summary\":\"/tmp/capture/repo/hello.txt\",\"tool\":\"write\"}",
           "tool_result {\"id\":\"toolu_01Fakewrite000000000000000001\",\"ok\":true}",
           "file_change {\"kind\":\"add\",\"path\":\"/tmp/capture/repo/hello.txt\"}",
           "agent_message {\"text\":\"Done: I wrote hello.txt.\"}");
    feed_fixture(&e, "opencode-run-json", "opencode-run-write-existing.jsonl");
    EXPECT(&e,
           "tool_call {\"id\":\"toolu_fake_2\",\"summary\":\"/tmp/capture/repo/README.md\","
           "\"tool\":\"write\"}",
           "tool_result {\"id\":\"toolu_fake_2\",\"ok\":true}",
           "file_change {\"kind\":\"update\",\"path\":\"/tmp/capture/repo/README.md\"}",
           "agent_message {\"text\":\"Done.\"}");
}

/* A bash command that wrote a file and exited 3: opencode says "completed"
 * with the exit in its metadata; the call failed, the command says why. */
static void opencode_bash_fail(void **state)
{
    events e = {0};
    feed_fixture(&e, "opencode-run-json", "opencode-run-bash-fail.jsonl");
    EXPECT(&e,
           "tool_call {\"id\":\"toolu_fake_2\",\"summary\":\"printf hi > notes.txt; echo made "
           "notes; exit 3\",\"tool\":\"bash\"}",
           "tool_result {\"id\":\"toolu_fake_2\",\"ok\":false}",
           "command {\"command\":\"printf hi > notes.txt; echo made notes; exit 3\","
           "\"exit_code\":3}",
           "agent_message {\"text\":\"Done.\"}");
}

static void opencode_edit_and_error(void **state)
{
    events e = {0};
    feed_fixture(&e, "opencode-run-json", "opencode-run-edit.jsonl");
    EXPECT(&e,
           "tool_call {\"id\":\"toolu_fake_2\",\"summary\":\"/tmp/capture/repo/README.md\","
           "\"tool\":\"edit\"}",
           "tool_result {\"id\":\"toolu_fake_2\",\"ok\":true}",
           "file_change {\"kind\":\"update\",\"path\":\"/tmp/capture/repo/README.md\"}",
           "agent_message {\"text\":\"Done.\"}");
    /* a read of a file that is not there: the call failed, nothing changed */
    feed_fixture(&e, "opencode-run-json", "opencode-run-read-error.jsonl");
    EXPECT(&e,
           "tool_call {\"id\":\"toolu_fake_2\",\"summary\":\"/tmp/capture/repo/missing.txt\","
           "\"tool\":\"read\"}",
           "tool_result {\"id\":\"toolu_fake_2\",\"ok\":false}",
           "agent_message {\"text\":\"Done.\"}");
}

/* The model API refuses the key: one "error" line, and the CLI exits 1. */
static void opencode_auth_failure(void **state)
{
    events e = {0};
    feed_fixture(&e, "opencode-run-json", "opencode-run-401.jsonl");
    EXPECT(&e, "error {\"fatal\":true,\"message\":\"APIError: invalid x-api-key (HTTP 401)\"}");
}

/* Shapes the fixtures do not hold: a call printed while it runs and again
 * when it ends (one tool_call), a bash call that errored (exit unknown),
 * calls with missing fields, an error line without data. */
static void opencode_other_shapes(void **state)
{
    events e = {0};
    transcript_parser *p = transcript_new("opencode-run-json");
    assert_non_null(p);
    const char *running = "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"callID\":"
                          "\"c1\",\"state\":{\"status\":\"running\",\"input\":{\"command\":"
                          "\"make\"}}}}";
    assert_int_equal(one(p, &e, running), 1);
    assert_int_equal(one(p, &e, running), 0);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"callID\":"
                         "\"c1\",\"state\":{\"status\":\"error\",\"input\":{\"command\":"
                         "\"make\"},\"error\":\"aborted\"}}}"),
                     2);
    EXPECT(&e, "tool_call {\"id\":\"c1\",\"summary\":\"make\",\"tool\":\"bash\"}",
           "tool_result {\"id\":\"c1\",\"ok\":false}",
           "command {\"command\":\"make\",\"exit_code\":null}");
    /* a tool with no known argument: the input as JSON; a write that failed */
    assert_int_equal(one(p, &e,
                         "{\"type\":\"tool_use\",\"part\":{\"tool\":\"todowrite\",\"callID\":"
                         "\"c2\",\"state\":{\"status\":\"completed\",\"input\":{\"todos\":[]}}}}"),
                     2);
    assert_int_equal(one(p, &e,
                         "{\"type\":\"tool_use\",\"part\":{\"tool\":\"write\",\"callID\":"
                         "\"c3\",\"state\":{\"status\":\"error\",\"input\":{\"filePath\":"
                         "\"/x\"}}}}"),
                     2);
    EXPECT(&e,
           "tool_call {\"id\":\"c2\",\"summary\":\"{\\\"todos\\\":[]}\",\"tool\":\"todowrite\"}",
           "tool_result {\"id\":\"c2\",\"ok\":true}",
           "tool_call {\"id\":\"c3\",\"summary\":\"/x\",\"tool\":\"write\"}",
           "tool_result {\"id\":\"c3\",\"ok\":false}");
    static const char *const nothing[] = {
        "{\"type\":\"tool_use\"}",
        "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"state\":{\"status\":"
        "\"completed\"}}}",
        "{\"type\":\"tool_use\",\"part\":{\"callID\":\"c\",\"state\":{\"status\":"
        "\"completed\"}}}",
        "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"callID\":\"c\"}}",
        "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"callID\":\"c\",\"state\":"
        "{\"status\":\"mystery\"}}}",
        "{\"type\":\"text\",\"part\":{\"text\":\"   \"}}",
        "{\"type\":\"text\",\"part\":{\"text\":7}}",
        "{\"type\":\"step_start\",\"part\":{}}",
        "{\"type\":\"step_finish\",\"part\":{\"reason\":\"stop\"}}",
        "{\"type\":\"reasoning\",\"part\":{\"text\":\"thinking\"}}",
    };
    for (size_t i = 0; i < sizeof(nothing) / sizeof(nothing[0]); i++)
        if (one(p, &e, nothing[i]) != 0)
            fail_msg("line %zu gave an event", i);
    assert_int_equal(e.n, 0);
    assert_int_equal(one(p, &e, "{\"type\":\"error\"}"), 1);
    assert_int_equal(one(p, &e, "{\"type\":\"error\",\"error\":{\"name\":\"UnknownError\"}}"), 1);
    EXPECT(&e, "error {\"fatal\":true,\"message\":\"unknown error\"}",
           "error {\"fatal\":true,\"message\":\"UnknownError\"}");
    transcript_free(p);
}

/* ---- what must never crash it ------------------------------------------------------- */

static void unknown_format(void **state)
{
    assert_null(transcript_new("aider-json"));
    assert_non_null(strstr(farm_error_last(), "aider-json"));
    assert_null(transcript_new(""));
    transcript_free(NULL);
}

static void garbage_lines(void **state)
{
    static const char *const garbage[] = {
        "",
        "\n",
        "\r\n",
        "   ",
        "not json",
        "{",
        "}",
        "[1,2,3]",
        "null",
        "\"a string\"",
        "42",
        "{}",
        "{\"type\":5}",
        "{\"type\":null,\"item\":{}}",
        "{\"type\":\"assistant\"}",
        "{\"type\":\"assistant\",\"message\":5}",
        "{\"type\":\"assistant\",\"message\":{\"content\":\"just text\"}}",
        "{\"type\":\"assistant\",\"message\":{\"content\":[1,null,\"x\",{\"type\":7}]}}",
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":5}]}}",
        "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\"}]}}",
        "{\"type\":\"system\",\"subtype\":7}",
        "{\"type\":\"item.completed\"}",
        "{\"type\":\"item.completed\",\"item\":[]}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":1,\"type\":\"agent_message\"}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"agent_message\"}}",
        "{\"type\":\"item.started\",\"item\":{\"id\":\"i\",\"type\":\"mystery\"}}",
        "{\"type\":\"assistant\"}{\"type\":\"assistant\"}",
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":"
        "\"a\\u0000b\"}]}}",
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":"
        "\"\xff\xfe\"}]}}",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"agent_message\",\"text\":"
        "\"\xc3\"}}",
    };
    static const char *const formats[] = {"claude-stream-json", "codex-exec-json",
                                          "opencode-run-json"};
    for (size_t f = 0; f < 3; f++) {
        transcript_parser *p = transcript_new(formats[f]);
        assert_non_null(p);
        events e = {0};
        for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
            int rc = one(p, &e, garbage[i]);
            if (rc != 0)
                fail_msg("%s: line %zu gave %d", formats[f], i, rc);
        }
        assert_int_equal(e.n, 0);
        /* a NUL inside the line, and bytes after it */
        static const char nul[] = "{\"type\":\"assistant\"\0,\"message\":{}}";
        assert_int_equal(transcript_line(p, nul, sizeof(nul) - 1, collect, &e), 0);
        /* no bytes at all */
        assert_int_equal(transcript_line(p, NULL, 0, collect, &e), 0);
        transcript_free(p);
    }
}

/* Every strict prefix of every real line (what a cut line or a killed agent
 * leaves) gives no event and no error, and leaves the parser working. */
static void truncated_lines(void **state)
{
    static const struct {
        const char *format, *file;
    } fx[] = {
        {"claude-stream-json", "claude-stream.jsonl"},
        {"claude-stream-json", "claude-stream-multi.jsonl"},
        {"claude-stream-json", "claude-stream-401.jsonl"},
        {"claude-stream-json", "claude-stream-bash-files.jsonl"},
        {"codex-exec-json", "codex-exec.jsonl"},
        {"codex-exec-json", "codex-exec-multi.jsonl"},
        {"codex-exec-json", "codex-exec-401.jsonl"},
        {"claude-stream-json", "codex-exec-multi.jsonl"}, /* the wrong format: nothing */
        {"codex-exec-json", "claude-stream-multi.jsonl"},
        {"claude-stream-json", "opencode-run.jsonl"},
        {"codex-exec-json", "opencode-run.jsonl"},
        {"opencode-run-json", "opencode-run.jsonl"},
        {"opencode-run-json", "opencode-run-bash-fail.jsonl"},
        {"opencode-run-json", "opencode-run-edit.jsonl"},
        {"opencode-run-json", "opencode-run-read-error.jsonl"},
        {"opencode-run-json", "opencode-run-write-existing.jsonl"},
        {"opencode-run-json", "opencode-run-401.jsonl"},
        {"opencode-run-json", "claude-stream-multi.jsonl"},
        {"opencode-run-json", "codex-exec-multi.jsonl"},
    };
    for (size_t k = 0; k < sizeof(fx) / sizeof(fx[0]); k++) {
        size_t len;
        char *text = slurp(fx[k].file, &len);
        transcript_parser *p = transcript_new(fx[k].format);
        assert_non_null(p);
        events e = {0};
        for (char *line = text; line < text + len;) {
            char *nl = memchr(line, '\n', (size_t)(text + len - line));
            size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
            for (size_t cut = 0; cut < n; cut++) {
                int rc = transcript_line(p, line, cut, collect, &e);
                if (rc != 0)
                    fail_msg("%s: a prefix of %zu bytes gave %d", fx[k].file, cut, rc);
            }
            line += n + (nl ? 1 : 0);
        }
        assert_int_equal(e.n, 0);
        transcript_free(p);
        free(text);
    }
    /* the wrong format's whole lines give nothing either */
    events e = {0};
    feed_fixture(&e, "claude-stream-json", "codex-exec-multi.jsonl");
    feed_fixture(&e, "codex-exec-json", "claude-stream-multi.jsonl");
    feed_fixture(&e, "codex-exec-json", "opencode-run.jsonl");
    feed_fixture(&e, "opencode-run-json", "claude-stream-multi.jsonl");
    feed_fixture(&e, "opencode-run-json", "codex-exec-multi.jsonl");
    assert_int_equal(e.n, 0);
}

/* Real lines with bytes changed (a deterministic shuffle of types, quotes,
 * brackets and digits): whatever they parse as, the parser must not crash or
 * leak, and may emit only well-formed events (collect() checks the body). */
static void mutated_lines(void **state)
{
    static const char *const files[] = {
        "claude-stream-multi.jsonl", "claude-stream-401.jsonl", "claude-stream-bash-files.jsonl",
        "codex-exec-multi.jsonl",    "codex-exec-401.jsonl",    "opencode-run-bash-fail.jsonl",
        "opencode-run-edit.jsonl",   "opencode-run-401.jsonl"};
    static const char swaps[] = "{}[]\",:0123456789 tfn\\x\xc3";
    uint32_t seed = 12345;
    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
        size_t len;
        char *text = slurp(files[k], &len);
        transcript_parser *p[3] = {transcript_new("claude-stream-json"),
                                   transcript_new("codex-exec-json"),
                                   transcript_new("opencode-run-json")};
        assert_non_null(p[0]);
        assert_non_null(p[1]);
        assert_non_null(p[2]);
        for (char *line = text; line < text + len;) {
            char *nl = memchr(line, '\n', (size_t)(text + len - line));
            size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
            char *copy = malloc(n + 1);
            assert_non_null(copy);
            for (int round = 0; round < 300; round++) {
                memcpy(copy, line, n);
                for (int m = 0; m < 1 + round % 3; m++) {
                    seed = seed * 1103515245u + 12345u;
                    size_t at = (seed >> 8) % n;
                    seed = seed * 1103515245u + 12345u;
                    copy[at] = swaps[(seed >> 8) % (sizeof(swaps) - 1)];
                }
                for (int f = 0; f < 3; f++) {
                    events e = {0};
                    int rc = transcript_line(p[f], copy, n, collect, &e);
                    assert_true(rc >= 0);
                    assert_int_equal((size_t)rc, e.n);
                    events_clear(&e);
                }
            }
            free(copy);
            line += n + (nl ? 1 : 0);
        }
        transcript_free(p[0]);
        transcript_free(p[1]);
        transcript_free(p[2]);
        free(text);
    }
}

static void huge_and_deep_lines(void **state)
{
    transcript_parser *p = transcript_new("claude-stream-json");
    assert_non_null(p);
    events e = {0};
    size_t n = TRANSCRIPT_LINE_MAX + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    assert_int_equal(transcript_line(p, big, n, collect, &e), FARM_ETOOBIG);
    free(big);

    char deep[4096] = "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"x\":";
    size_t at = strlen(deep);
    for (int i = 0; i < 1000; i++)
        deep[at++] = '[';
    for (int i = 0; i < 1000; i++)
        deep[at++] = ']';
    strcpy(deep + at, ",\"text\":\"deep\"}]}}");
    assert_int_equal(one(p, &e, deep), 0);
    assert_int_equal(e.n, 0);
    transcript_free(p);
}

/* An emitter that fails stops the line: the code comes back, nothing more
 * is emitted for that line, and the next line is read as usual. */
static void emit_failure_stops_the_line(void **state)
{
    transcript_parser *p = transcript_new("claude-stream-json");
    assert_non_null(p);
    events e = {.fail_at = 2};
    assert_int_equal(one(p, &e,
                         "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                         "\"text\":\"a\"},{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"Bash\","
                         "\"input\":{\"command\":\"true\"}},{\"type\":\"text\",\"text\":\"b\"}]}}"),
                     FARM_EIO);
    EXPECT(&e, "agent_message {\"text\":\"a\"}");
    e.fail_at = 0;
    assert_int_equal(one(p, &e,
                         "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                         "\"text\":\"c\"}]}}"),
                     1);
    EXPECT(&e, "agent_message {\"text\":\"c\"}");
    transcript_free(p);
}

/* The line may come with its newline, a CR, or leading blanks. */
static void line_endings(void **state)
{
    transcript_parser *p = transcript_new("codex-exec-json");
    assert_non_null(p);
    events e = {0};
    assert_int_equal(one(p, &e,
                         "  {\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":"
                         "\"agent_message\",\"text\":\"hi\"}}\r\n"),
                     1);
    EXPECT(&e, "agent_message {\"text\":\"hi\"}");
    transcript_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claude_write),
        cmocka_unit_test(claude_multi),
        cmocka_unit_test(claude_bash_files),
        cmocka_unit_test(claude_auth_failure),
        cmocka_unit_test(claude_other_shapes),
        cmocka_unit_test(claude_summaries_are_clipped),
        cmocka_unit_test(claude_pending_is_bounded),
        cmocka_unit_test(codex_write),
        cmocka_unit_test(codex_multi),
        cmocka_unit_test(codex_auth_failure),
        cmocka_unit_test(codex_other_shapes),
        cmocka_unit_test(opencode_write),
        cmocka_unit_test(opencode_bash_fail),
        cmocka_unit_test(opencode_edit_and_error),
        cmocka_unit_test(opencode_auth_failure),
        cmocka_unit_test(opencode_other_shapes),
        cmocka_unit_test(unknown_format),
        cmocka_unit_test(garbage_lines),
        cmocka_unit_test(truncated_lines),
        cmocka_unit_test(mutated_lines),
        cmocka_unit_test(huge_and_deep_lines),
        cmocka_unit_test(emit_failure_stops_the_line),
        cmocka_unit_test(line_endings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
