/*
 * agent.h - how the farm starts a coding agent.
 *
 * Presets build the command line of the common coding-agent CLIs in their
 * non-interactive modes (Claude Code, Codex, aider, opencode); "standin" runs
 * the farm's stand-in agent (tests and the demo); agent.command runs anything
 * else. "auto" (the default) picks the first real agent that is installed and
 * has its API key configured, else the stand-in, and says which.
 *
 * The environment is built from nothing: only the agent contract's FARM_*
 * variables, a few neutral ones (PATH, HOME, LANG, TERM) and, when
 * configured, the one LLM API key the agent needs. Never the tracker token.
 */
#ifndef FARM_FARM_RUN_AGENT_H
#define FARM_FARM_RUN_AGENT_H

#include "farm/config/config.h"

#include <stdint.h>

typedef struct agent_ctx {
    const char *prompt_file; /* paths as seen inside the sandbox */
    const char *summary_file;
    const char *question_file;
    const char *home; /* HOME inside the sandbox */
    int64_t session_id;
    const char *repo;
    int64_t issue;
    int round; /* 1 for the first agent call of a run, then each fix round */
} agent_ctx;

typedef struct agent_cmd {
    char *preset;     /* the preset actually used ("claude", ..., "standin", "command") */
    char **argv;      /* NULL-terminated; argv[0] is the program */
    char **env;       /* NULL-terminated "NAME=value" strings */
    char *stdin_file; /* feed this file on standard input, or NULL for /dev/null */
    char **ro_paths;  /* host paths the sandbox must bind read-only for the program to run
                         (e.g. the stand-in's folder), NULL-terminated, may be empty */
    int is_standin;
} agent_cmd;

/* Build the command for one agent call. *out is filled on success; release
 * it with agent_cmd_free(). Returns 0, FARM_ENOTFOUND (the preset's program
 * is not installed: the message names it and the fix), FARM_EINVALID (unknown
 * preset) or FARM_ENOMEM. */
int agent_cmd_build(agent_cmd *out, const config *cfg, const agent_ctx *ctx);

void agent_cmd_free(agent_cmd *c);

/* Which preset "auto" resolves to on this host with this config, for logs
 * and the demo ("claude", ..., or "standin"). Never NULL. */
const char *agent_preset_resolve(const config *cfg);

/* The stand-in agent's path: $FARM_STANDIN_AGENT, else the installed copy,
 * else the source tree's. */
const char *agent_standin_path(void);

/* Search PATH for an executable; returns a heap path the caller frees, or NULL. */
char *agent_which(const char *name);

#endif
