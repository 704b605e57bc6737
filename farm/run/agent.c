/*
 * agent.c - agent presets and the agent's environment (see agent.h).
 */
#include "agent.h"

#include "base/error.h"
#include "base/strv.h"

#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FARM_INSTALL_DATADIR
#define FARM_INSTALL_DATADIR "/usr/local/share/farm"
#endif

/* What each real agent needs: its program, and the API key variable it reads. */
typedef struct preset {
    const char *name;
    const char *program;
    const char *key_env;
} preset;

static const preset presets[] = {
    {"claude", "claude", "ANTHROPIC_API_KEY"},
    {"codex", "codex", "OPENAI_API_KEY"},
    {"aider", "aider", "OPENAI_API_KEY"},
    {"opencode", "opencode", "ANTHROPIC_API_KEY"},
};

/* The instruction given on the command line to agents that take the task as
 * an argument; the task itself is in the prompt file (it can be far larger
 * than one argument may be). */
static const char *read_prompt_instruction =
    "Your task is in the Markdown file named by the FARM_PROMPT_FILE environment variable. "
    "Read it in full and do what it says.";

static const preset *find_preset(const char *name)
{
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (!strcmp(presets[i].name, name))
            return &presets[i];
    return NULL;
}

char *agent_which(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? strdup(name) : NULL;
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    char *save = NULL, *found = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        struct stat st;
        snprintf(full, sizeof(full), "%s/%s", dir, name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) {
            found = strdup(full);
            break;
        }
    }
    free(copy);
    return found;
}

const char *agent_standin_path(void)
{
    const char *env = getenv("FARM_STANDIN_AGENT");
    if (env && *env)
        return env;
    static const char installed[] = FARM_INSTALL_DATADIR "/agents/farm-standin-agent";
    if (access(installed, X_OK) == 0)
        return installed;
#ifdef FARM_SOURCE_DIR
    return FARM_SOURCE_DIR "/examples/standin-agent/farm-standin-agent";
#else
    return "examples/standin-agent/farm-standin-agent";
#endif
}

/* The key a preset would get: the configured agent.api_key, under the
 * configured variable name or the preset's own. */
static int has_key(const config *cfg)
{
    return cfg->agent.api_key && *cfg->agent.api_key;
}

const char *agent_preset_resolve(const config *cfg)
{
    if (cfg->agent.command)
        return "command";
    const char *p = cfg->agent.preset;
    if (p && strcmp(p, "auto") != 0)
        return p;
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
        char *path = agent_which(presets[i].program);
        if (path) {
            free(path);
            if (has_key(cfg))
                return presets[i].name;
        }
    }
    return "standin";
}

void agent_cmd_free(agent_cmd *c)
{
    char **lists[] = {c->argv, c->env, c->ro_paths};
    for (size_t i = 0; i < 3; i++) {
        if (!lists[i])
            continue;
        for (char **p = lists[i]; *p; p++)
            free(*p);
        free(lists[i]);
    }
    free(c->preset);
    free(c->stdin_file);
    memset(c, 0, sizeof(*c));
}

/* argv for the stand-in agent, and its folder for the sandbox to bind. */
static int standin_argv(agent_cmd *out, strv *argv, strv *ro)
{
    const char *path = agent_standin_path();
    if (access(path, X_OK) != 0) {
        farm_error_set("the stand-in agent is not at %s; reinstall farm or set "
                       "FARM_STANDIN_AGENT",
                       path);
        return FARM_ENOTFOUND;
    }
    strv_add(argv, path);
    char *dir = strdup(path);
    if (dir) {
        strv_add(ro, dirname(dir));
        free(dir);
    }
    out->is_standin = 1;
    return 0;
}

/* The flags after a real agent's program that make it run on its own, and
 * how it gets the task. */
static void preset_flags(agent_cmd *out, strv *argv, const char *name, const config *cfg,
                         const agent_ctx *ctx)
{
    if (!strcmp(name, "claude")) {
        /* print mode reads the task from standard input */
        strv_add(argv, "-p");
        strv_add(argv, "--output-format");
        strv_add(argv, "stream-json");
        strv_add(argv, "--verbose");
        strv_add(argv, "--dangerously-skip-permissions");
        if (cfg->agent.model) {
            strv_add(argv, "--model");
            strv_add(argv, cfg->agent.model);
        }
        out->stdin_file = strdup(ctx->prompt_file);
    } else if (!strcmp(name, "codex")) {
        /* the farm's sandbox is the isolation; codex's own cannot nest inside it */
        strv_add(argv, "exec");
        strv_add(argv, "--sandbox");
        strv_add(argv, "danger-full-access");
        strv_add(argv, "--skip-git-repo-check");
        strv_add(argv, "--ephemeral");
        strv_add(argv, "--json"); /* the transcript reads its JSON lines */
        if (cfg->agent.model) {
            strv_add(argv, "--model");
            strv_add(argv, cfg->agent.model);
        }
        strv_add(argv, "-"); /* the prompt comes on standard input */
        out->stdin_file = strdup(ctx->prompt_file);
    } else if (!strcmp(name, "aider")) {
        strv_add(argv, "--yes-always");
        strv_add(argv, "--no-auto-commits");
        strv_add(argv, "--no-check-update");
        strv_add(argv, "--no-analytics");
        strv_add(argv, "--no-pretty");
        if (cfg->agent.model) {
            strv_add(argv, "--model");
            strv_add(argv, cfg->agent.model);
        }
        strv_add(argv, "--message-file");
        strv_add(argv, ctx->prompt_file);
    } else { /* opencode */
        strv_add(argv, "run");
        if (cfg->agent.model) {
            strv_add(argv, "--model");
            strv_add(argv, cfg->agent.model);
        }
        strv_add(argv, read_prompt_instruction);
    }
}

/* argv for a real agent's preset. *key_env, when not configured, becomes
 * the variable the preset reads its API key from. */
static int preset_argv(agent_cmd *out, strv *argv, const char **key_env, const char *name,
                       const config *cfg, const agent_ctx *ctx)
{
    const preset *p = find_preset(name);
    if (!p) {
        farm_error_set("agent.preset: unknown preset '%s' (known: auto, claude, codex, aider, "
                       "opencode, standin)",
                       name);
        return FARM_EINVALID;
    }
    char *prog = agent_which(p->program);
    if (!prog) {
        farm_error_set("agent.preset is '%s' but `%s` is not installed on this host; install "
                       "it, or set agent.preset to \"standin\" to try the farm without one",
                       name, p->program);
        return FARM_ENOTFOUND;
    }
    strv_add(argv, prog);
    free(prog);
    if (!*key_env)
        *key_env = p->key_env;
    preset_flags(out, argv, name, cfg, ctx);
    return 0;
}

int agent_provider(gateway_provider *out, const config *cfg)
{
    const char *name = agent_preset_resolve(cfg);
    *out = GATEWAY_ANTHROPIC;
    if (!has_key(cfg) || !strcmp(name, "standin"))
        return -1;
    if (!strcmp(name, "codex"))
        *out = GATEWAY_OPENAI_RESPONSES;
    else if (!strcmp(name, "aider"))
        *out = GATEWAY_OPENAI_CHAT;
    else if (!strcmp(name, "command") && cfg->agent.api_key_env &&
             !strncmp(cfg->agent.api_key_env, "OPENAI_", 7))
        *out = GATEWAY_OPENAI_RESPONSES;
    return 0;
}

char *agent_upstream(const config *cfg, gateway_provider p)
{
    const char *url = cfg->agent.api_url;
    if (!url)
        url = p == GATEWAY_ANTHROPIC ? "https://api.anthropic.com" : "https://api.openai.com/v1";
    char *u = strdup(url);
    size_t n = u ? strlen(u) : 0;
    while (n > 0 && u[n - 1] == '/')
        u[--n] = '\0';
    if (u && p != GATEWAY_ANTHROPIC && n >= 3 && !strcmp(u + n - 3, "/v1"))
        u[n - 3] = '\0';
    return u;
}

char *agent_codex_config(const config *cfg, const char *base_url)
{
    char *out = NULL;
    const char *model = cfg->agent.model ? cfg->agent.model : "gpt-5.5";
    for (const char *q = model; *q; q++)
        if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
            model = "gpt-5.5"; /* never a broken TOML string */
    if (asprintf(&out,
                 "model = \"%s\"\n"
                 "model_provider = \"farm\"\n\n"
                 "[model_providers.farm]\n"
                 "name = \"farm gateway\"\n"
                 "base_url = \"%s/v1\"\n"
                 "env_key = \"FARM_MODEL_TOKEN\"\n"
                 "wire_api = \"responses\"\n\n"
                 "[analytics]\n"
                 "enabled = false\n\n"
                 "[features]\n"
                 "plugins = false\n",
                 model, base_url) < 0)
        return NULL;
    return out;
}

/* The gateway's variables for each preset (docs/agents.md): the token where
 * the key would go, the base URL, and no traffic but the model calls. */
static void gateway_env(strv *env, const char *name, const agent_gateway *gw, const char *key_env)
{
    const char *url = gw->base_url, *tok = gw->token;
    strv_addf(env, "FARM_MODEL_BASE_URL=%s", url);
    strv_addf(env, "FARM_MODEL_TOKEN=%s", tok);
    /* the gateway is on the sandbox's own loopback: never through the egress proxy */
    strv_add(env, "NO_PROXY=127.0.0.1,localhost");
    strv_add(env, "no_proxy=127.0.0.1,localhost");
    if (!strcmp(name, "claude")) {
        strv_addf(env, "ANTHROPIC_BASE_URL=%s", url);
        strv_addf(env, "ANTHROPIC_API_KEY=%s", tok);
        strv_add(env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1");
        if (gw->uid0)
            strv_add(env, "IS_SANDBOX=1");
    } else if (!strcmp(name, "codex")) {
        if (gw->codex_home)
            strv_addf(env, "CODEX_HOME=%s", gw->codex_home);
    } else if (!strcmp(name, "aider")) {
        strv_addf(env, "OPENAI_API_BASE=%s/v1", url);
        strv_addf(env, "OPENAI_API_KEY=%s", tok);
    } else if (!strcmp(name, "opencode")) {
        strv_addf(env,
                  "OPENCODE_CONFIG_CONTENT={\"autoupdate\":false,\"share\":\"disabled\","
                  "\"provider\":{\"anthropic\":{\"options\":{\"baseURL\":\"%s/v1\","
                  "\"apiKey\":\"{env:FARM_MODEL_TOKEN}\"}}}}",
                  url);
        strv_add(env, "OPENCODE_DISABLE_MODELS_FETCH=1");
        strv_add(env, "OPENCODE_DISABLE_AUTOUPDATE=1");
    }
    /* a command (or a preset told another name) gets the token under that name too */
    if (key_env && strcmp(key_env, "FARM_MODEL_TOKEN") != 0 &&
        strcmp(key_env, "ANTHROPIC_API_KEY") &&
        !(strcmp(name, "aider") == 0 && !strcmp(key_env, "OPENAI_API_KEY")))
        strv_addf(env, "%s=%s", key_env, tok);
}

/* The agent's environment, built from nothing (agent.h). */
static void agent_env(strv *env, const config *cfg, const agent_ctx *ctx, const char *key_env,
                      int is_standin, const char *name, const agent_gateway *gw)
{
    strv_add(env, "PATH=/usr/local/bin:/usr/bin:/bin");
    strv_addf(env, "HOME=%s", ctx->home ? ctx->home : "/tmp");
    strv_add(env, "LANG=C.UTF-8");
    strv_add(env, "TERM=dumb");
    strv_add(env, "CI=true"); /* tools behave non-interactively */
    strv_addf(env, "FARM_PROMPT_FILE=%s", ctx->prompt_file);
    strv_addf(env, "FARM_SUMMARY_FILE=%s", ctx->summary_file);
    strv_addf(env, "FARM_QUESTION_FILE=%s", ctx->question_file);
    strv_addf(env, "FARM_SESSION_ID=%lld", (long long)ctx->session_id);
    strv_addf(env, "FARM_REPO=%s", ctx->repo ? ctx->repo : "");
    strv_addf(env, "FARM_ISSUE=%lld", (long long)ctx->issue);
    strv_addf(env, "FARM_ROUND=%d", ctx->round);
    if (is_standin || !has_key(cfg))
        return;
    if (gw && gw->base_url && gw->token)
        gateway_env(env, name, gw, key_env); /* the real key stays outside */
    else if (key_env)
        strv_addf(env, "%s=%s", key_env, cfg->agent.api_key);
}

int agent_cmd_build(agent_cmd *out, const config *cfg, const agent_ctx *ctx)
{
    return agent_cmd_build_gw(out, cfg, ctx, NULL);
}

int agent_cmd_build_gw(agent_cmd *out, const config *cfg, const agent_ctx *ctx,
                       const agent_gateway *gw)
{
    memset(out, 0, sizeof(*out));
    strv argv = {0}, env = {0}, ro = {0};
    int rc = 0;
    const char *name = agent_preset_resolve(cfg);
    const char *key_env = cfg->agent.api_key_env;

    if (!strcmp(name, "command")) {
        for (char **p = cfg->agent.command; *p; p++)
            strv_add(&argv, *p);
    } else if (!strcmp(name, "standin")) {
        rc = standin_argv(out, &argv, &ro);
    } else {
        rc = preset_argv(out, &argv, &key_env, name, cfg, ctx);
    }
    if (rc)
        goto out;
    agent_env(&env, cfg, ctx, key_env, out->is_standin, name, gw);

    if (argv.failed || env.failed || ro.failed || !argv.v ||
        (out->stdin_file == NULL && (!strcmp(name, "claude") || !strcmp(name, "codex")))) {
        farm_error_set("out of memory building the agent's command");
        rc = FARM_ENOMEM;
        goto out;
    }
    out->preset = strdup(name);
    out->argv = strv_take(&argv);
    out->env = strv_take(&env);
    out->ro_paths = strv_take(&ro);
    if (!out->preset || !out->env || !out->ro_paths) {
        agent_cmd_free(out);
        farm_error_set("out of memory building the agent's command");
        rc = FARM_ENOMEM;
    }
out:
    strv_free(&argv);
    strv_free(&env);
    strv_free(&ro);
    if (rc)
        agent_cmd_free(out);
    return rc;
}
