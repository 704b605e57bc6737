/*
 * transcript.h - what a coding agent did, read from its structured output.
 *
 * Owns the two machine-readable output formats of the agent CLIs the farm
 * runs, as the pinned real CLIs print them (tests/agents/, captured in
 * tests/fixtures/agents/, described in docs/agents.md):
 *   "claude-stream-json"  Claude Code's `-p --output-format stream-json --verbose`
 *   "codex-exec-json"     Codex's `exec --json`
 *   "opencode-run-json"   opencode's `run --format json`
 * and turns them, one stdout line at a time, into farm events:
 *   agent_message {"text"}                     what the agent said
 *   tool_call     {"id","tool","summary"}      a tool it called; summary is the
 *                                              file path or command (<= 200 bytes)
 *   tool_result   {"id","ok"}                  how that call ended
 *   file_change   {"path","kind"}              kind: "add", "update" or "delete"
 *   command       {"command","exit_code"}      a shell command that ran; exit_code
 *                                              is an integer, or null when unknown
 *   error         {"message","fatal"}          the CLI reported a failure: a retry
 *                                              or warning (fatal false), or the end
 *                                              of the turn (fatal true)
 * Lines it does not know (other event types, blank lines, garbage, truncated
 * JSON) give no event. It calls only jansson and base/ (json.h, error.h):
 * no I/O, no store.
 *
 * Called by the pipeline's output handler (farm/run/pipeline_exec.c: the
 * agent step of the claude, codex and opencode presets) with each complete line of the
 * agent's standard output, in order. A parser keeps a little state between lines (which tool
 * call an id names), so one parser reads one agent call's output.
 */
#ifndef FARM_FARM_RUN_TRANSCRIPT_H
#define FARM_FARM_RUN_TRANSCRIPT_H

#include <jansson.h>

#include <stddef.h>

#define TRANSCRIPT_LINE_MAX    (8u << 20)  /* a longer line is refused (FARM_ETOOBIG) */
#define TRANSCRIPT_SUMMARY_MAX 200         /* tool_call.summary, in bytes */
#define TRANSCRIPT_COMMAND_MAX 4096        /* command.command */
#define TRANSCRIPT_TEXT_MAX    (32u << 10) /* agent_message.text and error.message */
#define TRANSCRIPT_PENDING_MAX 1024        /* tool calls awaiting their result */

typedef struct transcript_parser transcript_parser;

/* Receives one event. kind is one of the names above; body is borrowed for
 * the call (json_incref() it to keep it). Return 0 to go on, or a negative
 * FARM_* code to stop: transcript_line() then emits nothing more for that
 * line and returns the code. */
typedef int (*transcript_emit_fn)(const char *kind, json_t *body, void *arg);

/* A parser for format ("claude-stream-json", "codex-exec-json" or
 * "opencode-run-json"). Returns
 * NULL with a message in the error slot for an unknown format, or when out
 * of memory. Release it with transcript_free(). */
transcript_parser *transcript_new(const char *format);

/* Read one line of output (n bytes, need not be NUL-terminated; a trailing
 * newline is allowed) and call emit for each event it holds, in order.
 * Returns the number of events emitted (0 for a line that holds none or is
 * not understood), FARM_ETOOBIG for a line over TRANSCRIPT_LINE_MAX,
 * FARM_ENOMEM, or emit's nonzero return. */
int transcript_line(transcript_parser *p, const char *line, size_t n, transcript_emit_fn emit,
                    void *arg);

/* Free the parser; NULL is fine. */
void transcript_free(transcript_parser *p);

#endif
