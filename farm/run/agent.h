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
 * variables, a few neutral ones (PATH, HOME, LANG, TERM), agent.env and,
 * when configured, the model gateway's URL and the run's token (or, without
 * a gateway, the one LLM API key the agent needs). Never the tracker token.
 *
 * The program is resolved on this host (agent.path, else PATH), symbolic
 * links followed; when it lives outside the folders the sandbox has anyway
 * (/usr, /bin, /lib*, /etc, /opt), ro_paths says what to bind read-only.
 */
#ifndef FARM_FARM_RUN_AGENT_H
#define FARM_FARM_RUN_AGENT_H

#include "farm/config/config.h"
#include "farm/gateway/gateway.h"

#include <stddef.h>

#include <stdint.h>

typedef struct agent_ctx {
    const char *prompt_file; /* paths as seen inside the sandbox */
    const char *summary_file;
    const char *question_file;
    const char *home; /* HOME as the agent sees it (/home/sandbox in the sandbox) */
    int64_t session_id;
    const char *repo;
    int64_t issue;
    int round; /* 1 for the first agent call of a run, then each fix round */
} agent_ctx;

/* The model gateway as one run's agent reaches it (docs/gateway.md). */
typedef struct agent_gateway {
    const char *base_url;   /* "http://127.0.0.1:PORT" */
    const char *token;      /* the run's token */
    const char *codex_home; /* codex: CODEX_HOME as seen by the agent, holding the
                               config.toml of agent_codex_config(); NULL: none */
    int uid0;               /* the agent runs as uid 0 (Claude Code then needs IS_SANDBOX) */
} agent_gateway;

typedef struct agent_cmd {
    char *preset;     /* the preset actually used ("claude", ..., "standin", "command") */
    char **argv;      /* NULL-terminated; argv[0] is the program */
    char **env;       /* NULL-terminated "NAME=value" strings */
    char *stdin_file; /* feed this file on standard input, or NULL for /dev/null */
    char **ro_paths;  /* host paths the sandbox must bind read-only, at the same path, for the
                         program to run: the stand-in's folder, a CLI installed outside the
                         system folders (its topmost node_modules, or the file), its
                         interpreter's prefix; NULL-terminated, may be empty */
    int is_standin;
} agent_cmd;

/* Build the command for one agent call. *out is filled on success; release
 * it with agent_cmd_free(). Returns 0, FARM_ENOTFOUND (the preset's program
 * is not installed: the message names it and the fix), FARM_EINVALID (unknown
 * preset) or FARM_ENOMEM. */
int agent_cmd_build(agent_cmd *out, const config *cfg, const agent_ctx *ctx);

/* The same through the model gateway gw (NULL: as agent_cmd_build()): the
 * agent gets the gateway's URL and the run's token, never the real key. */
int agent_cmd_build_gw(agent_cmd *out, const config *cfg, const agent_ctx *ctx,
                       const agent_gateway *gw);

void agent_cmd_free(agent_cmd *c);

/* Which preset "auto" resolves to on this host with this config, for logs
 * and the demo ("claude", ..., or "standin"). Never NULL. */
const char *agent_preset_resolve(const config *cfg);

/* The stand-in agent's path: $FARM_STANDIN_AGENT, else the installed copy,
 * else the source tree's. */
const char *agent_standin_path(void);

/* The model API a preset speaks, for the gateway: 0 and *out set, or -1
 * when it needs none (the stand-in; a command without agent.api_key). The
 * command preset speaks Anthropic's unless agent.api_key_env names an
 * OPENAI_ variable. */
int agent_provider(gateway_provider *out, const config *cfg);

/* The upstream base URL for the gateway: agent.api_url, else the
 * provider's (https://api.anthropic.com, https://api.openai.com/v1), less
 * a trailing /v1 for OpenAI (the agent's own paths carry it). Heap. */
char *agent_upstream(const config *cfg, gateway_provider p);

/* Codex's config.toml for a gateway at base_url (docs/agents.md). Heap. */
char *agent_codex_config(const config *cfg, const char *base_url);

/* opencode's opencode.json for a gateway at base_url: its anthropic
 * provider's baseURL and the run's token from FARM_MODEL_TOKEN. Heap. */
char *agent_opencode_config(const config *cfg, const char *base_url);

/* Write the preset's configuration for a gateway at base_url into home, the
 * host folder that is the run's HOME (/home/sandbox inside): codex's
 * .codex/config.toml, opencode's .config/opencode/opencode.json; nothing for
 * the others. 0, or FARM_EIO / FARM_ENOMEM with the message set. */
int agent_home_write(const char *home, const config *cfg, const char *base_url);

/* Where codex's CODEX_HOME is, relative to the run's HOME. */
#define AGENT_CODEX_HOME_REL ".codex"

/* Run the configured agent's program inside a sandbox as a run would
 * (agent_check.c): a preset's CLI with --version, a command's program looked
 * up; the stand-in is not run. out (n bytes) gets one line for people: the
 * program and what it printed, or what is wrong and what to set. Returns 0,
 * or FARM_ENOTFOUND (not installed, or not there inside the sandbox) or
 * another error of agent_cmd_build(). */
int agent_program_check(char *out, size_t n, const config *cfg);

/* Receives one preset's check: its name, agent_program_check()'s result and
 * line. */
typedef void (*agent_check_fn)(const char *preset, int rc, const char *line, void *arg);

/* agent_program_check() for every preset some repository may run: the
 * configured one for a repository without repos[].agents (and when there is
 * no repository), each of repos[].agents (case-insensitive, once each), each
 * on the config as a session of that preset gets it (config_agent_for()).
 * Calls fn once per preset, in that order. Returns the number of presets
 * checked when all passed, else the first failure's code (every preset is
 * still checked). */
int agent_program_check_all(const config *cfg, agent_check_fn fn, void *arg);

/* Search PATH for an executable; returns a heap path the caller frees, or NULL. */
char *agent_which(const char *name);

#endif
