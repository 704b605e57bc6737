/*
 * commands.h - `/farm ...` comment commands: finding one in a comment body.
 *
 * People steer the farm from the tracker with a line that starts with
 * `/farm` in a comment on the issue or on its pull request: `/farm run
 * [preset]`, `/farm retry`, `/farm stop`, `/farm status`, `/farm hold`,
 * `/farm unhold`, `/farm update`, `/farm plan`, `/farm approve`,
 * `/farm help`. A command
 * counts only at the start of a line (leading blanks allowed) and is matched
 * case-insensitively; quoted lines (`>`), fenced and indented code blocks
 * and, in the HTML bodies Azure DevOps work items have, <blockquote>, <pre>
 * and <code> are skipped, so quoting or showing a command never runs it.
 * What a command does lives in review.c (it needs the session and the
 * store); this file only reads text and has no side effects.
 */
#ifndef FARM_FARM_INTAKE_COMMANDS_H
#define FARM_FARM_INTAKE_COMMANDS_H

#include <stddef.h>

#define COMMANDS_TEXT_MAX (256u << 10) /* of a comment body looked at; the rest is ignored */
#define COMMANDS_WORD_MAX 32           /* an unknown command's word, as quoted back */
#define COMMANDS_ARG_MAX  32           /* a command's argument (`/farm run codex`) */

typedef enum {
    COMMAND_NONE = 0, /* the body holds no command */
    COMMAND_RUN,      /* start work (or a revision on the pull request) now */
    COMMAND_RETRY,    /* run a failed or cancelled session again */
    COMMAND_STOP,     /* stop the session's run and cancel the session */
    COMMAND_STATUS,   /* reply with the session's state, step, elapsed time and link */
    COMMAND_HELP,     /* reply with the commands (also: `/farm` alone) */
    COMMAND_UNKNOWN,  /* `/farm <word>` with a word not above: reply with the commands */
    COMMAND_HOLD,     /* nothing new starts on this issue or its PR until unhold */
    COMMAND_UNHOLD,   /* lift the hold */
    COMMAND_UPDATE,   /* bring the base branch into the pull request's branch (update.h) */
    COMMAND_PLAN,     /* start with a plan that waits for approval (plan.h) */
    COMMAND_APPROVE,  /* approve the plan: the implementation starts (plan.h) */
} command_kind;

typedef struct command {
    command_kind kind;
    char word[COMMANDS_WORD_MAX + 1]; /* the word after /farm as written (cut, printable
                                         ASCII only), "" when none */
    char arg[COMMANDS_ARG_MAX + 1];   /* the word after the command (`/farm run codex`:
                                         "codex"), lower-cased; "" when none. Only letters,
                                         digits, '-', '_' and '.': anything else, or one too
                                         long, makes arg_bad 1 and arg "" */
    int arg_bad;
} command;

/* Find the first command in body (Markdown, or HTML when it looks like it).
 * out->kind is COMMAND_NONE when there is none. Returns 0, or FARM_ENOMEM
 * (out->kind is then COMMAND_NONE). A NULL body holds no command. */
int commands_parse(command *out, const char *body);

/* "run", "retry", "stop", "status", "help", "hold", "unhold", "unknown", "none". */
const char *command_kind_name(command_kind k);

/* The reply to `/farm help` (and the list under an unknown command's
 * reply): one line per command, Markdown. Static storage. */
const char *commands_help_text(void);

#endif
