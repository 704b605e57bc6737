/*
 * agent.c - agent presets and the agent's environment (see agent.h).
 */
#include "agent.h"

#include "base/error.h"
#include "base/strv.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
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

/* The PATH the agent gets before anything is put in front of it. */
#define SANDBOX_PATH "/usr/local/bin:/usr/bin:/bin"

/* Search the folders of path for an executable name. Heap, or NULL. */
static char *which_in(const char *name, const char *path)
{
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

char *agent_which(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? strdup(name) : NULL;
    const char *path = getenv("PATH");
    return which_in(name, path && *path ? path : SANDBOX_PATH);
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

/* ---- the program inside the sandbox ---------------------------------------
 *
 * The sandbox binds the system (/usr, /bin, /lib*, /etc, /opt) read-only and
 * nothing else of the host. A CLI installed anywhere else (an npm prefix
 * under $HOME, ~/.local/bin, a project's node_modules) is bound read-only at
 * the same path: its symbolic links followed to the real file, then the
 * whole topmost node_modules folder holding it (npm launchers reach sibling
 * packages: codex.js runs @openai/codex-linux-x64), or else the one file.
 * A script's interpreter found the same way (`#!/usr/bin/env node` with node
 * under ~/.nvm) is bound too (its prefix: the folder above its bin/), and its
 * folder goes first on the agent's PATH. */

/* The folders the sandbox has from the host anyway (sandbox/args.c). */
static int in_system(const char *path)
{
    static const char *const dirs[] = {"/usr/",   "/bin/",    "/sbin/", "/lib/", "/lib32/",
                                       "/lib64/", "/libx32/", "/etc/",  "/opt/"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (!strncmp(path, dirs[i], strlen(dirs[i])))
            return 1;
    return 0;
}

/* Add path to the binds unless it or a folder above it is there already. */
static void ro_add(strv *ro, const char *path)
{
    for (size_t i = 0; i < ro->n; i++) {
        size_t l = strlen(ro->v[i]);
        if (!strncmp(path, ro->v[i], l) && (path[l] == '\0' || path[l] == '/'))
            return;
    }
    strv_add(ro, path);
}

/* What to bind for the real file at path: the topmost node_modules holding
 * it, else (want_prefix: an interpreter in <prefix>/bin/) its prefix, else
 * the file. Heap. */
static char *package_root(const char *path, int want_prefix)
{
    const char *nm = strstr(path, "/node_modules/");
    if (nm)
        return strndup(path, (size_t)(nm - path) + strlen("/node_modules"));
    char *dir = strdup(path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (want_prefix && slash && slash - dir >= 4 && !strncmp(slash - 4, "/bin", 4)) {
        slash[-4] = '\0';
        if (dir[0] && strcmp(dir, "/") != 0 && !in_system(dir) && strchr(dir + 1, '/'))
            return dir; /* /home/u/.nvm/versions/node/v22, never /home/u or / */
    }
    free(dir);
    return strdup(path);
}

/* A script's interpreter: bound when it lives outside the system, its
 * folder put on PATH when the script finds it through env. */
static void interpreter_place(strv *ro, strv *pathdirs, const char *script)
{
    char head[256], *save = NULL;
    int fd = open(script, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    ssize_t n = fd >= 0 ? read(fd, head, sizeof(head) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n < 3 || head[0] != '#' || head[1] != '!')
        return;
    head[n] = '\0';
    head[strcspn(head, "\r\n")] = '\0';
    char *interp = strtok_r(head + 2, " \t", &save);
    if (!interp)
        return;
    int via_env = !strcmp(interp, "/usr/bin/env") || !strcmp(interp, "/bin/env");
    char *name = interp;
    if (via_env)
        while ((name = strtok_r(NULL, " \t", &save)) && name[0] == '-')
            ;
    if (!name || !*name)
        return;
    char *sys = via_env ? which_in(name, SANDBOX_PATH) : NULL;
    int in_sandbox_path = sys != NULL;
    free(sys);
    if (in_sandbox_path) /* env finds one in the sandbox's own PATH */
        return;
    char *found = agent_which(name);
    char *real = found ? realpath(found, NULL) : NULL;
    if (real && !in_system(real)) {
        char *root = package_root(real, 1);
        if (root)
            ro_add(ro, root);
        free(root);
    }
    if (real && via_env) { /* e.g. /opt/node/bin, or a bound ~/.nvm/.../bin */
        char *dir = strdup(real);
        if (dir)
            strv_add(pathdirs, dirname(dir));
        free(dir);
    }
    free(found);
    free(real);
}

/* argv[0] for prog (a name in PATH or a path) and what the sandbox must
 * bind for it. FARM_ENOTFOUND when it is not an executable on this host. */
static int program_place(strv *argv, strv *ro, strv *pathdirs, const char *prog)
{
    char *found = agent_which(prog);
    if (!found)
        return FARM_ENOTFOUND;
    char *real = realpath(found, NULL);
    if (!real || (in_system(found) && in_system(real))) {
        strv_add(argv, found); /* as named: the sandbox has it */
    } else {
        strv_add(argv, real);
        if (!in_system(real)) {
            char *root = package_root(real, 0);
            if (root)
                ro_add(ro, root);
            free(root);
        }
    }
    interpreter_place(ro, pathdirs, real ? real : found);
    free(found);
    free(real);
    return 0;
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
    } else { /* opencode: the model is in its config (agent_home_write()) */
        strv_add(argv, "run");
        strv_add(argv, "--format");
        strv_add(argv, "json");
        strv_add(argv, "--auto"); /* approve its tools: the farm's sandbox is the isolation */
        if (cfg->agent.model) {
            strv_add(argv, "--model");
            strv_addf(argv, "%s%s", strchr(cfg->agent.model, '/') ? "" : "anthropic/",
                      cfg->agent.model);
        }
        strv_add(argv, read_prompt_instruction);
    }
}

/* argv for a real agent's preset. *key_env, when not configured, becomes
 * the variable the preset reads its API key from. */
static int preset_argv(agent_cmd *out, strv *argv, strv *ro, strv *pathdirs, const char **key_env,
                       const char *name, const config *cfg, const agent_ctx *ctx)
{
    const preset *p = find_preset(name);
    if (!p) {
        farm_error_set("agent.preset: unknown preset '%s' (known: auto, claude, codex, aider, "
                       "opencode, standin)",
                       name);
        return FARM_EINVALID;
    }
    if (cfg->agent.path && program_place(argv, ro, pathdirs, cfg->agent.path) != 0) {
        farm_error_set("agent.path is %s, which is not an executable on this host; install %s "
                       "there, or correct agent.path",
                       cfg->agent.path, p->program);
        return FARM_ENOTFOUND;
    }
    if (!cfg->agent.path && program_place(argv, ro, pathdirs, p->program) != 0) {
        farm_error_set("agent.preset is '%s' but `%s` is not installed on this host (not in "
                       "the farm's PATH); install it, set agent.path to its program, or set "
                       "agent.preset to \"standin\" to try the farm without one",
                       name, p->program);
        return FARM_ENOTFOUND;
    }
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

/* Write a file of the run's HOME (host side), making its folders. */
static int home_file_write(const char *home, const char *rel, const char *text)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", home, rel) >= (int)sizeof(path)) {
        farm_error_set("agent: the path %s/%s is too long", home, rel);
        return FARM_ETOOBIG;
    }
    /* the agent writes this folder too (a resumed run's): follow no link of its */
    for (char *p = path + strlen(home) + 1; (p = strchr(p, '/')); p++) {
        struct stat st;
        *p = '\0';
        int bad = (mkdir(path, 0700) < 0 && errno != EEXIST) || lstat(path, &st) < 0 ||
                  !S_ISDIR(st.st_mode);
        *p = '/';
        if (bad) {
            farm_error_set("agent: cannot make the folder of %s", path);
            return FARM_EIO;
        }
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !fp)
        close(fd);
    int ok = fp && fputs(text, fp) >= 0;
    if (fp && fclose(fp) != 0)
        ok = 0;
    if (!ok) {
        farm_error_set("agent: cannot write %s: %s", path, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

char *agent_opencode_config(const config *cfg, const char *base_url)
{
    char *model = NULL, *out = NULL;
    const char *m = cfg->agent.model ? cfg->agent.model : "claude-sonnet-4-5";
    if (asprintf(&model, "%s%s", strchr(m, '/') ? "" : "anthropic/", m) < 0)
        return NULL;
    char *url = NULL;
    if (asprintf(&url, "%s/v1", base_url) < 0) {
        free(model);
        return NULL;
    }
    json_t *j = json_pack("{s:s,s:b,s:s,s:s,s:{s:{s:{s:s,s:s}}}}", "$schema",
                          "https://opencode.ai/config.json", "autoupdate", 0, "share", "disabled",
                          "model", model, "provider", "anthropic", "options", "baseURL", url,
                          "apiKey", "{env:FARM_MODEL_TOKEN}");
    if (j)
        out = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    free(model);
    free(url);
    return out;
}

int agent_home_write(const char *home, const config *cfg, const char *base_url)
{
    const char *name = agent_preset_resolve(cfg);
    const char *rel = NULL;
    char *text = NULL;
    if (!strcmp(name, "codex")) {
        rel = ".codex/config.toml";
        text = agent_codex_config(cfg, base_url);
    } else if (!strcmp(name, "opencode")) {
        rel = ".config/opencode/opencode.json";
        text = agent_opencode_config(cfg, base_url);
    } else {
        return 0;
    }
    if (!text) {
        farm_error_set("agent: out of memory writing the agent's configuration");
        return FARM_ENOMEM;
    }
    int rc = home_file_write(home, rel, text);
    free(text);
    return rc;
}

/* Whether env already sets name. */
static int env_has(const strv *env, const char *name)
{
    size_t l = strlen(name);
    for (size_t i = 0; i < env->n; i++)
        if (!strncmp(env->v[i], name, l) && env->v[i][l] == '=')
            return 1;
    return 0;
}

/* The gateway's variables for each preset (docs/agents.md): the token where
 * the key would go, the base URL, and no traffic but the model calls. */
static void gateway_env(strv *env, const char *name, const config *cfg, const agent_gateway *gw,
                        const char *key_env)
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
    } else if (!strcmp(name, "command")) {
        /* the provider's conventional variables, as its SDKs read them */
        gateway_provider p = GATEWAY_ANTHROPIC;
        agent_provider(&p, cfg);
        if (p == GATEWAY_ANTHROPIC) {
            strv_addf(env, "ANTHROPIC_BASE_URL=%s", url);
            strv_addf(env, "ANTHROPIC_API_KEY=%s", tok);
        } else {
            strv_addf(env, "OPENAI_BASE_URL=%s/v1", url);
            strv_addf(env, "OPENAI_API_KEY=%s", tok);
        }
    }
    /* opencode reads its provider from the per-run config (agent_home_write()) */
    /* a command (or a preset told another name) gets the token under that name too */
    if (key_env && !env_has(env, key_env))
        strv_addf(env, "%s=%s", key_env, tok);
}

/* The agent's environment, built from nothing (agent.h). */
static void agent_env(strv *env, const config *cfg, const agent_ctx *ctx, const char *key_env,
                      int is_standin, const char *name, const agent_gateway *gw,
                      const strv *pathdirs)
{
    char *path = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&path, &len);
    if (fp) {
        fputs("PATH=", fp);
        for (size_t i = 0; i < pathdirs->n; i++)
            fprintf(fp, "%s:", pathdirs->v[i]);
        fputs(SANDBOX_PATH, fp);
        fclose(fp);
    }
    strv_add(env, path ? path : "PATH=" SANDBOX_PATH);
    free(path);
    strv_add(env, "LANG=C.UTF-8");
    strv_add(env, "TERM=dumb");
    strv_add(env, "CI=true"); /* tools behave non-interactively */
    /* agent.env may change the neutral ones above, never what follows */
    for (char **e = cfg->agent.env; e && *e; e++)
        strv_add(env, *e);
    strv_addf(env, "HOME=%s", ctx->home ? ctx->home : "/tmp");
    strv_addf(env, "FARM_PROMPT_FILE=%s", ctx->prompt_file);
    strv_addf(env, "FARM_SUMMARY_FILE=%s", ctx->summary_file);
    strv_addf(env, "FARM_QUESTION_FILE=%s", ctx->question_file);
    strv_addf(env, "FARM_SESSION_ID=%lld", (long long)ctx->session_id);
    strv_addf(env, "FARM_REPO=%s", ctx->repo ? ctx->repo : "");
    strv_addf(env, "FARM_ISSUE=%lld", (long long)ctx->issue);
    strv_addf(env, "FARM_ROUND=%d", ctx->round);
    if (!strcmp(name, "opencode")) {
        strv_add(env, "OPENCODE_DISABLE_MODELS_FETCH=1");
        strv_add(env, "OPENCODE_DISABLE_AUTOUPDATE=1");
        strv_add(env, "OPENCODE_DISABLE_DEFAULT_PLUGINS=1");
        strv_add(env, "OPENCODE_DISABLE_LSP_DOWNLOAD=1");
        strv_add(env, "OPENCODE_DISABLE_SHARE=1");
    }
    if (is_standin || !has_key(cfg))
        return;
    if (gw && gw->base_url && gw->token)
        gateway_env(env, name, cfg, gw, key_env); /* the real key stays outside */
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
    strv argv = {0}, env = {0}, ro = {0}, pathdirs = {0};
    int rc = 0;
    const char *name = agent_preset_resolve(cfg);
    const char *key_env = cfg->agent.api_key_env;

    if (!strcmp(name, "command")) {
        /* the program found on this host is bound in; one that is not is
         * left as written (the sandbox may have it, or the run says 127) */
        const char *prog = cfg->agent.command[0];
        char *sys = strchr(prog, '/') ? NULL : which_in(prog, SANDBOX_PATH);
        if (sys || program_place(&argv, &ro, &pathdirs, prog) != 0)
            strv_add(&argv, prog); /* a name the sandbox's PATH finds, or one it may */
        free(sys);
        for (char **p = cfg->agent.command + 1; *p; p++)
            strv_add(&argv, *p);
    } else if (!strcmp(name, "standin")) {
        rc = standin_argv(out, &argv, &ro);
    } else {
        rc = preset_argv(out, &argv, &ro, &pathdirs, &key_env, name, cfg, ctx);
    }
    if (rc)
        goto out;
    agent_env(&env, cfg, ctx, key_env, out->is_standin, name, gw, &pathdirs);

    if (argv.failed || env.failed || ro.failed || pathdirs.failed || !argv.v ||
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
    strv_free(&pathdirs);
    if (rc)
        agent_cmd_free(out);
    return rc;
}
