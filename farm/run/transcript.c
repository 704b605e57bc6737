/*
 * transcript.c - agent output lines into farm events (transcript.h).
 *
 * Claude Code's stream-json prints whole messages: an "assistant" line holds
 * text and tool_use blocks, and a later "user" line holds the tool_result
 * for a tool_use id, with the tool's own record beside it ("tool_use_result":
 * the Write's create/update, a Bash command's files changed). What a result
 * means (a command's exit code, a file written) depends on the call, so the
 * parser remembers each call's tool and path or command until its result.
 *
 * Codex's exec --json prints items: "item.started" and "item.completed" of a
 * command_execution, file_change, mcp_tool_call, web_search, agent_message,
 * reasoning or error. A call becomes tool_call when it starts and
 * tool_result (+ command or file_change) when it completes; an item that
 * completes without having started (Codex does that for some) gets its
 * tool_call then.
 *
 * opencode's run --format json prints one line per finished part: "text"
 * (part.text), "tool_use" once the call has ended (part.tool, part.callID,
 * part.state: status "completed" or "error", input, metadata: a bash
 * command's exit, a write's filepath and whether the file existed, an
 * edit's filediff), "step_start"/"step_finish" around each model turn, and
 * "error" when the run ends on a failure (an API error after its retries).
 * A call that ends gives tool_call, tool_result and its command or
 * file_change at once; a "pending" or "running" one (not printed by 1.18,
 * read in case) gives tool_call first.
 *
 * The shapes are those of the pinned CLIs (docs/agents.md); fields that are
 * missing or of another type are skipped, never trusted.
 */
#include "farm/run/transcript.h"

#include "base/error.h"
#include "base/json.h"

#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define LINE_DEPTH_MAX 64

typedef enum { FMT_CLAUDE, FMT_CODEX, FMT_OPENCODE } transcript_format;

struct transcript_parser {
    transcript_format format;
    json_t *pending; /* call id -> {"tool","arg"}: calls awaiting their result; arg is the
                        path or command the result's events need (Claude), or absent */
};

/* Where events go while one line is read. */
typedef struct sink {
    transcript_emit_fn emit;
    void *arg;
    int count; /* events emitted */
    int rc;    /* first failure: emit's return or FARM_ENOMEM; nothing is emitted after it */
} sink;

/* Emit body as kind (the reference is taken: body is released here). A NULL
 * body is an allocation that failed. */
static void put(sink *s, const char *kind, json_t *body)
{
    if (s->rc) {
        json_decref(body);
        return;
    }
    if (!body) {
        farm_error_set("out of memory reading the agent's transcript");
        s->rc = FARM_ENOMEM;
        return;
    }
    int rc = s->emit(kind, body, s->arg);
    json_decref(body);
    if (rc)
        s->rc = rc;
    else
        s->count++;
}

/* ---- text helpers ---------------------------------------------------------- */

/* A copy of s cut to at most max bytes (a cut one ends in "..." on a UTF-8
 * character boundary). With one_line, control characters become spaces. The
 * caller frees it; NULL when out of memory. s is valid UTF-8 (jansson's). */
static char *clip(const char *s, size_t max, int one_line)
{
    size_t n = strlen(s), keep = n;
    if (n > max) {
        keep = max > 3 ? max - 3 : 0;
        while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
            keep--;
    }
    char *out = malloc(keep + 4);
    if (!out)
        return NULL;
    memcpy(out, s, keep);
    if (one_line)
        for (size_t i = 0; i < keep; i++)
            if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                out[i] = ' ';
    strcpy(out + keep, n > max ? "..." : "");
    return out;
}

/* json_string() of clip(s, max, one_line); NULL when out of memory. */
static json_t *clip_json(const char *s, size_t max, int one_line)
{
    char *c = clip(s, max, one_line);
    json_t *j = c ? json_string(c) : NULL;
    free(c);
    return j;
}

/* The string member key of o, or NULL (absent, null, another type, o not an
 * object). */
static const char *str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int only_space(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* ---- events ------------------------------------------------------------------ */

static void put_message(sink *s, const char *text)
{
    if (text && !only_space(text))
        put(s, "agent_message",
            json_pack("{s:o}", "text", clip_json(text, TRANSCRIPT_TEXT_MAX, 0)));
}

static void put_tool_call(sink *s, const char *id, const char *tool, const char *summary)
{
    put(s, "tool_call",
        json_pack("{s:s,s:s,s:o}", "id", id, "tool", tool, "summary",
                  clip_json(summary ? summary : "", TRANSCRIPT_SUMMARY_MAX, 1)));
}

static void put_tool_result(sink *s, const char *id, int ok)
{
    put(s, "tool_result", json_pack("{s:s,s:b}", "id", id, "ok", ok));
}

static void put_file_change(sink *s, const char *path, const char *kind)
{
    if (path && *path)
        put(s, "file_change", json_pack("{s:s,s:s}", "path", path, "kind", kind));
}

/* exit_code < 0: unknown (null). */
static void put_command(sink *s, const char *command, long long exit_code)
{
    put(s, "command",
        json_pack("{s:o,s:o}", "command",
                  clip_json(command ? command : "", TRANSCRIPT_COMMAND_MAX, 0), "exit_code",
                  exit_code < 0 ? json_null() : json_integer(exit_code)));
}

static void put_error(sink *s, const char *message, int fatal)
{
    put(s, "error",
        json_pack(
            "{s:o,s:b}", "message",
            clip_json(message && *message ? message : "unknown error", TRANSCRIPT_TEXT_MAX, 0),
            "fatal", fatal));
}

/* ---- calls awaiting their result ------------------------------------------- */

/* Remember call id (tool, and arg when not NULL). When too many calls are
 * waiting (results that never came), the oldest are forgotten all at once:
 * their results then give tool_result alone. */
static int pending_add(transcript_parser *p, const char *id, const char *tool, const char *arg)
{
    if (json_object_size(p->pending) >= TRANSCRIPT_PENDING_MAX)
        json_object_clear(p->pending);
    json_t *v = json_pack("{s:s}", "tool", tool);
    if (v && arg && json_object_set_new(v, "arg", clip_json(arg, TRANSCRIPT_COMMAND_MAX, 0))) {
        json_decref(v);
        v = NULL;
    }
    if (!v || json_object_set_new(p->pending, id, v)) {
        farm_error_set("out of memory reading the agent's transcript");
        return FARM_ENOMEM;
    }
    return 0;
}

/* The call id awaits (a new reference the caller releases), removed from the
 * waiting ones; NULL when it was not waiting. */
static json_t *pending_take(transcript_parser *p, const char *id)
{
    json_t *v = json_object_get(p->pending, id);
    if (!v)
        return NULL;
    json_incref(v);
    json_object_del(p->pending, id);
    return v;
}

/* ---- Claude Code: -p --output-format stream-json --verbose ------------------ */

/* The input fields that say what a call is about (Write's file_path, Bash's
 * command, Grep's pattern, WebFetch's url, Task's description, ...): a call's
 * summary is the first of them its input has, else the input as compact JSON. */
static const char *const summary_keys[] = {"file_path", "notebook_path", "command",
                                           "pattern",   "path",          "url",
                                           "query",     "description",   "prompt"};

/* The summary of a call with this input: the first of keys (n of them) it
 * has, else the input as compact JSON. The caller frees it; NULL when out
 * of memory. */
static char *input_summary(json_t *input, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = str_of(input, keys[i]);
        if (v)
            return strdup(v);
    }
    if (!json_is_object(input) || json_object_size(input) == 0)
        return strdup("");
    return json_dumps(input, JSON_COMPACT | JSON_SORT_KEYS);
}

static char *claude_summary(json_t *input)
{
    return input_summary(input, summary_keys, sizeof(summary_keys) / sizeof(summary_keys[0]));
}

/* The path or command a call's result events will need, or NULL. */
static const char *claude_call_arg(const char *tool, json_t *input)
{
    if (!strcmp(tool, "Bash"))
        return str_of(input, "command");
    if (!strcmp(tool, "Write") || !strcmp(tool, "Edit") || !strcmp(tool, "MultiEdit"))
        return str_of(input, "file_path");
    if (!strcmp(tool, "NotebookEdit"))
        return str_of(input, "notebook_path");
    return NULL;
}

static void claude_assistant(transcript_parser *p, json_t *line, sink *s)
{
    json_t *content = json_object_get(json_object_get(line, "message"), "content");
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        const char *type = str_of(block, "type");
        if (!type)
            continue;
        if (!strcmp(type, "text")) {
            put_message(s, str_of(block, "text"));
        } else if (!strcmp(type, "tool_use")) {
            const char *id = str_of(block, "id"), *tool = str_of(block, "name");
            if (!id || !tool)
                continue;
            json_t *input = json_object_get(block, "input");
            char *summary = claude_summary(input);
            if (!summary) {
                put(s, "tool_call", NULL);
                return;
            }
            put_tool_call(s, id, tool, summary);
            free(summary);
            if (!s->rc && pending_add(p, id, tool, claude_call_arg(tool, input)))
                s->rc = FARM_ENOMEM;
        }
        if (s->rc)
            return;
    }
}

/* The exit code Claude's Bash tool reports in a failed result ("Exit code 3",
 * maybe followed by the output), or -1. */
static long long claude_exit_code(json_t *content)
{
    const char *text = json_string_value(content);
    if (!text && json_is_array(content)) /* [{"type":"text","text":...}] */
        text = str_of(json_array_get(content, 0), "text");
    if (!text || strncmp(text, "Exit code ", 10) != 0)
        return -1;
    char *end;
    long long code = strtoll(text + 10, &end, 10);
    if (end == text + 10 || code < 0 || code > 255)
        return -1;
    return code;
}

/* Files a Bash command changed, as Claude Code records them beside its result. */
static void claude_bash_files(json_t *record, sink *s)
{
    json_t *files = json_object_get(json_object_get(record, "bashEditDiff"), "files");
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f)
    {
        const char *kind = json_is_true(json_object_get(f, "created"))   ? "add"
                           : json_is_true(json_object_get(f, "deleted")) ? "delete"
                                                                         : "update";
        put_file_change(s, str_of(f, "filePath"), kind);
    }
}

/* One tool_result block; record is the line's tool_use_result when the line
 * holds this block alone (the tool's own account of what it did), else NULL. */
static void claude_result(transcript_parser *p, json_t *block, json_t *record, sink *s)
{
    const char *id = str_of(block, "tool_use_id");
    if (!id)
        return;
    int ok = !json_is_true(json_object_get(block, "is_error"));
    put_tool_result(s, id, ok);
    json_t *call = pending_take(p, id);
    const char *tool = call ? str_of(call, "tool") : NULL;
    const char *arg = call ? str_of(call, "arg") : NULL;
    if (tool && !strcmp(tool, "Bash")) {
        put_command(s, arg, ok ? 0 : claude_exit_code(json_object_get(block, "content")));
    } else if (tool && ok && !strcmp(tool, "Write")) {
        const char *type = str_of(record, "type");
        put_file_change(s, arg ? arg : str_of(record, "filePath"),
                        type && !strcmp(type, "create") ? "add" : "update");
    } else if (tool && ok && arg) { /* Edit, MultiEdit, NotebookEdit */
        put_file_change(s, arg, "update");
    }
    json_decref(call);
    if (json_is_object(record))
        claude_bash_files(record, s);
}

static void claude_user(transcript_parser *p, json_t *line, sink *s)
{
    json_t *content = json_object_get(json_object_get(line, "message"), "content");
    size_t i, results = 0;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        const char *type = str_of(block, "type");
        results += type && !strcmp(type, "tool_result");
    }
    json_t *record = results == 1 ? json_object_get(line, "tool_use_result") : NULL;
    json_array_foreach(content, i, block)
    {
        const char *type = str_of(block, "type");
        if (type && !strcmp(type, "tool_result"))
            claude_result(p, block, record, s);
        if (s->rc)
            return;
    }
}

static void claude_system(json_t *line, sink *s)
{
    const char *subtype = str_of(line, "subtype");
    if (!subtype || strcmp(subtype, "api_retry") != 0)
        return;
    /* the error's name is cut first, so the message is never cut inside a character */
    const char *err = str_of(line, "error");
    char *name = clip(err ? err : "error", 100, 1), msg[256];
    if (!name) {
        put(s, "error", NULL);
        return;
    }
    snprintf(msg, sizeof(msg), "API request failed (%s, HTTP %lld), retry %lld of %lld", name,
             (long long)json_integer_value(json_object_get(line, "error_status")),
             (long long)json_integer_value(json_object_get(line, "attempt")),
             (long long)json_integer_value(json_object_get(line, "max_retries")));
    free(name);
    put_error(s, msg, 0);
}

static void claude_final(json_t *line, sink *s)
{
    const char *subtype = str_of(line, "subtype");
    int failed = json_is_true(json_object_get(line, "is_error")) ||
                 (subtype && strcmp(subtype, "success") != 0);
    if (!failed)
        return;
    const char *text = str_of(line, "result");
    put_error(s, text && *text ? text : subtype, 1);
}

static void claude_line(transcript_parser *p, json_t *line, sink *s)
{
    const char *type = str_of(line, "type");
    if (!type)
        return;
    if (!strcmp(type, "assistant"))
        claude_assistant(p, line, s);
    else if (!strcmp(type, "user"))
        claude_user(p, line, s);
    else if (!strcmp(type, "system"))
        claude_system(line, s);
    else if (!strcmp(type, "result"))
        claude_final(line, s);
}

/* ---- Codex: exec --json ------------------------------------------------------ */

/* Paths of a file_change item, ", "-separated (the caller frees it). */
static char *codex_paths(json_t *changes)
{
    size_t i, len = 0;
    json_t *c;
    json_array_foreach(changes, i, c)
    {
        const char *path = str_of(c, "path");
        if (path)
            len += strlen(path) + 2;
        if (len > TRANSCRIPT_SUMMARY_MAX * 2)
            break; /* the summary is cut to far less anyway */
    }
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    out[0] = '\0';
    size_t at = 0;
    json_array_foreach(changes, i, c)
    {
        const char *path = str_of(c, "path");
        if (!path)
            continue;
        size_t n = strlen(path);
        if (at + n + (at ? 2 : 0) > len)
            break;
        if (at) {
            memcpy(out + at, ", ", 2);
            at += 2;
        }
        memcpy(out + at, path, n);
        at += n;
        out[at] = '\0';
    }
    return out;
}

/* The tool name and summary (heap, the caller frees it) of a call item;
 * *tool NULL for items that are no call (messages, reasoning, ...). */
static int codex_call(const char **tool, char **summary, json_t *item, const char *type)
{
    *tool = NULL;
    *summary = NULL;
    const char *text = NULL;
    if (!strcmp(type, "command_execution")) {
        *tool = "shell";
        text = str_of(item, "command");
    } else if (!strcmp(type, "file_change")) {
        *tool = "apply_patch";
        *summary = codex_paths(json_object_get(item, "changes"));
        return *summary ? 0 : FARM_ENOMEM;
    } else if (!strcmp(type, "mcp_tool_call")) {
        *tool = "mcp";
        const char *server = str_of(item, "server"), *name = str_of(item, "tool");
        size_t n = (server ? strlen(server) : 0) + (name ? strlen(name) : 0) + 2;
        if (!(*summary = malloc(n)))
            return FARM_ENOMEM;
        snprintf(*summary, n, "%s.%s", server ? server : "", name ? name : "");
        return 0;
    } else if (!strcmp(type, "web_search")) {
        *tool = "web_search";
        text = str_of(item, "query");
    } else {
        return 0;
    }
    *summary = strdup(text ? text : "");
    return *summary ? 0 : FARM_ENOMEM;
}

static void codex_started(transcript_parser *p, json_t *item, const char *id, const char *type,
                          sink *s)
{
    const char *tool;
    char *summary;
    if (codex_call(&tool, &summary, item, type)) {
        put(s, "tool_call", NULL);
        return;
    }
    if (!tool)
        return;
    if (!json_object_get(p->pending, id)) { /* once, however often it is restated */
        put_tool_call(s, id, tool, summary);
        if (!s->rc && pending_add(p, id, tool, NULL))
            s->rc = FARM_ENOMEM;
    }
    free(summary);
}

static void codex_completed(transcript_parser *p, json_t *item, const char *id, const char *type,
                            sink *s)
{
    if (!strcmp(type, "agent_message")) {
        put_message(s, str_of(item, "text"));
        return;
    }
    if (!strcmp(type, "error")) {
        put_error(s, str_of(item, "message"), 0);
        return;
    }
    const char *tool;
    char *summary;
    if (codex_call(&tool, &summary, item, type)) {
        put(s, "tool_call", NULL);
        return;
    }
    if (!tool)
        return; /* reasoning, todo_list, ... */
    json_t *call = pending_take(p, id);
    if (!call)
        put_tool_call(s, id, tool, summary);
    json_decref(call);
    free(summary);
    const char *status = str_of(item, "status");
    int ok = !status || !strcmp(status, "completed"); /* web_search items have none */
    put_tool_result(s, id, ok);
    if (!strcmp(type, "command_execution")) {
        json_t *code = json_object_get(item, "exit_code");
        put_command(s, str_of(item, "command"),
                    json_is_integer(code) && json_integer_value(code) >= 0
                        ? (long long)json_integer_value(code)
                        : -1);
    } else if (!strcmp(type, "file_change") && ok) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(item, "changes"), i, c)
        {
            const char *kind = str_of(c, "kind");
            if (kind &&
                (!strcmp(kind, "add") || !strcmp(kind, "update") || !strcmp(kind, "delete")))
                put_file_change(s, str_of(c, "path"), kind);
        }
    }
}

static void codex_line(transcript_parser *p, json_t *line, sink *s)
{
    const char *type = str_of(line, "type");
    if (!type)
        return;
    if (!strcmp(type, "error")) {
        put_error(s, str_of(line, "message"), 0);
        return;
    }
    if (!strcmp(type, "turn.failed")) {
        put_error(s, str_of(json_object_get(line, "error"), "message"), 1);
        return;
    }
    json_t *item = json_object_get(line, "item");
    const char *id = str_of(item, "id"), *itype = str_of(item, "type");
    if (!id || !itype)
        return;
    if (!strcmp(type, "item.started"))
        codex_started(p, item, id, itype, s);
    else if (!strcmp(type, "item.completed"))
        codex_completed(p, item, id, itype, s);
}

/* ---- opencode: run --format json ----------------------------------------------- */

/* opencode's tools name their arguments in camelCase (write's filePath,
 * bash's command, grep's pattern, webfetch's url, task's description). */
static const char *const opencode_keys[] = {"filePath", "command", "pattern",     "path",
                                            "url",      "query",   "description", "prompt"};

/* What an ended call did: its result, and the command or file it changed. */
static void opencode_ended(json_t *st, const char *id, const char *tool, sink *s)
{
    const char *status = str_of(st, "status");
    json_t *input = json_object_get(st, "input"), *meta = json_object_get(st, "metadata");
    int ok = !strcmp(status, "completed");
    if (!strcmp(tool, "bash")) {
        /* a command that ran and failed is a "completed" call with its exit */
        json_t *code = json_object_get(meta, "exit");
        long long exit_code = json_is_integer(code) && json_integer_value(code) >= 0 &&
                                      json_integer_value(code) <= 255
                                  ? (long long)json_integer_value(code)
                                  : -1;
        put_tool_result(s, id, ok && exit_code <= 0);
        put_command(s, str_of(input, "command"), ok ? exit_code : -1);
        return;
    }
    put_tool_result(s, id, ok);
    if (!ok)
        return;
    if (!strcmp(tool, "write")) {
        const char *path = str_of(meta, "filepath");
        put_file_change(s, path ? path : str_of(input, "filePath"),
                        json_is_true(json_object_get(meta, "exists")) ? "update" : "add");
    } else if (!strcmp(tool, "edit")) {
        const char *path = str_of(json_object_get(meta, "filediff"), "file");
        put_file_change(s, path ? path : str_of(input, "filePath"), "update");
    }
}

static void opencode_tool(transcript_parser *p, json_t *part, sink *s)
{
    const char *id = str_of(part, "callID"), *tool = str_of(part, "tool");
    json_t *st = json_object_get(part, "state");
    const char *status = str_of(st, "status");
    if (!id || !tool || !status)
        return;
    int ended = !strcmp(status, "completed") || !strcmp(status, "error");
    if (!ended && strcmp(status, "pending") != 0 && strcmp(status, "running") != 0)
        return;
    json_t *call = pending_take(p, id);
    if (!call) {
        char *summary = input_summary(json_object_get(st, "input"), opencode_keys,
                                      sizeof(opencode_keys) / sizeof(opencode_keys[0]));
        if (!summary) {
            put(s, "tool_call", NULL);
            return;
        }
        put_tool_call(s, id, tool, summary);
        free(summary);
    }
    json_decref(call);
    if (s->rc)
        return;
    if (!ended) { /* its end comes later: remember that its tool_call was given */
        if (pending_add(p, id, tool, NULL))
            s->rc = FARM_ENOMEM;
        return;
    }
    opencode_ended(st, id, tool, s);
}

/* The run ended on an error: "APIError: invalid x-api-key (HTTP 401)". */
static void opencode_error(json_t *line, sink *s)
{
    json_t *err = json_object_get(line, "error"), *data = json_object_get(err, "data");
    const char *name = str_of(err, "name"), *msg = str_of(data, "message");
    json_t *code = json_object_get(data, "statusCode");
    char *m = clip(msg ? msg : "", 1000, 0), text[1200];
    if (!m) {
        put(s, "error", NULL);
        return;
    }
    if (json_is_integer(code))
        snprintf(text, sizeof(text), "%s%s%s (HTTP %lld)", name ? name : "error", *m ? ": " : "", m,
                 (long long)json_integer_value(code));
    else
        snprintf(text, sizeof(text), "%s%s%s", name ? name : "", name && *m ? ": " : "", m);
    free(m);
    put_error(s, text, 1);
}

static void opencode_line(transcript_parser *p, json_t *line, sink *s)
{
    const char *type = str_of(line, "type");
    if (!type)
        return;
    json_t *part = json_object_get(line, "part");
    if (!strcmp(type, "text"))
        put_message(s, str_of(part, "text"));
    else if (!strcmp(type, "tool_use"))
        opencode_tool(p, part, s);
    else if (!strcmp(type, "error"))
        opencode_error(line, s);
}

/* ---- the parser ---------------------------------------------------------------- */

transcript_parser *transcript_new(const char *format)
{
    assert(format);
    transcript_format f;
    if (!strcmp(format, "claude-stream-json")) {
        f = FMT_CLAUDE;
    } else if (!strcmp(format, "codex-exec-json")) {
        f = FMT_CODEX;
    } else if (!strcmp(format, "opencode-run-json")) {
        f = FMT_OPENCODE;
    } else {
        farm_error_set("unknown agent transcript format '%s' (known: claude-stream-json, "
                       "codex-exec-json, opencode-run-json)",
                       format);
        return NULL;
    }
    transcript_parser *p = calloc(1, sizeof(*p));
    if (!p || !(p->pending = json_object())) {
        free(p);
        farm_error_set("out of memory creating a transcript parser");
        return NULL;
    }
    p->format = f;
    return p;
}

int transcript_line(transcript_parser *p, const char *line, size_t n, transcript_emit_fn emit,
                    void *arg)
{
    assert(p && emit && (line || n == 0));
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    while (n > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        n--;
    }
    if (n == 0 || line[0] != '{')
        return 0; /* every event line is an object; anything else is not ours */
    json_t *doc = NULL;
    int rc = json_parse_bounded(&doc, line, n, TRANSCRIPT_LINE_MAX, LINE_DEPTH_MAX);
    if (rc == FARM_ETOOBIG || rc == FARM_ENOMEM)
        return rc;
    if (rc)
        return 0; /* garbage or a cut line: nothing to report */
    sink s = {.emit = emit, .arg = arg};
    if (p->format == FMT_CLAUDE)
        claude_line(p, doc, &s);
    else if (p->format == FMT_CODEX)
        codex_line(p, doc, &s);
    else
        opencode_line(p, doc, &s);
    json_decref(doc);
    return s.rc ? s.rc : s.count;
}

void transcript_free(transcript_parser *p)
{
    if (!p)
        return;
    json_decref(p->pending);
    free(p);
}
