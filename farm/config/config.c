/*
 * config.c - reading and checking the farm's config file (see config.h).
 *
 * One pass over the JSON fills the config with every key's value or its
 * default and collects every problem on the way, named by the key's path;
 * then the checks that span keys (a repository's tracker section, unique
 * names, scaling bounds). The embedded defaults are the same pass over "{}".
 * The repos[] section is config_repo.c's; the rest of the file, the checks
 * before serving and config_free() are here.
 */
#include "config.h"
#include "config_check.h"
#include "config_internal.h"

#include "base/error.h"
#include "base/sshsig.h"
#include "base/strv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_FILE_MAX (4u << 20)
#define ERRORS_MAX      (64 * 1024)

static const char *const top_keys[] = {
    "listen", "data_dir", "public_url", "log_level",      "github",  "azure", "scaling", "sandbox",
    "agent",  "tokens",   "repos",      "max_body_bytes", "budgets", "bot",   "digest",  "review",
    "http",   "ci",       "git",        "store",          "worker",  NULL};
static const char *const store_keys[] = {"url", "password", "shared_fs", NULL};
static const char *const worker_keys[] = {"slots", NULL};
static const char *const github_keys[] = {
    "api_url", "token", "app_id", "app_private_key", "webhook_secret", "bot_login", NULL};
static const char *const azure_keys[] = {"org_url",        "token",
                                         "webhook_user",   "webhook_password",
                                         "webhook_header", "webhook_header_secret",
                                         "bot_name",       NULL};
static const char *const scaling_keys[] = {"max_agents", "max_per_repo", "min_warm",
                                           "idle_timeout_s", NULL};
static const char *const sandbox_keys[] = {"mode",           "network",   "setup_network",
                                           "allow_hosts",    "memory_mb", "pids",
                                           "wall_timeout_s", "disk_mb",   NULL};
static const char *const agent_keys[] = {"preset", "command", "api_key", "api_key_env",
                                         "model",  "api_url", "prices",  "path",
                                         "env",    "presets", NULL};
static const char *const agent_preset_keys[] = {"api_key", "api_key_env", "model", "api_url", NULL};
static const char *const price_keys[] = {"input",       "output",         "cache_read",
                                         "cache_write", "cache_write_1h", NULL};
static const char *const budget_keys[] = {"run_wall_s",  "max_runs",       "partial_margin_s",
                                          "session_usd", "repo_daily_usd", "daily_usd",
                                          NULL};
static const char *const bot_keys[] = {"name", "email", NULL};
static const char *const git_keys[] = {"signing_key", NULL};
static const char *const review_keys[] = {"debounce_s", NULL};
static const char *const ci_keys[] = {"max_fix_rounds", "settle_s", NULL};
static const char *const digest_keys[] = {"tracker", "repo", "issue", "hour_utc", NULL};
static const char *const token_keys[] = {"name", "token", "role", NULL};
static const char *const http_keys[] = {
    "allowed_hosts",          "trusted_proxies",  "max_connections",
    "max_connections_per_ip", "header_timeout_s", "body_min_rate",
    "body_bytes_per_ip",      "max_large_bodies", NULL};

static const char *const roles[] = {"viewer", "member", "admin", NULL};
static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const modes[] = {"bwrap", "unsafe-none", NULL};
static const char *const networks[] = {"none", "allowlist", NULL};
static const char *const presets[] = {"auto",     "claude",  "codex", "aider",
                                      "opencode", "standin", NULL};

/* ---- small checks ------------------------------------------------------- */

static int is_http_url(const char *s)
{
    return s && (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) &&
           s[strncmp(s, "https://", 8) ? 7 : 8] != '\0';
}

static void strip_trailing_slash(char *s)
{
    size_t n = s ? strlen(s) : 0;
    while (n > 0 && s[n - 1] == '/' && !(n >= 3 && s[n - 2] == '/' && s[n - 3] == ':'))
        s[--n] = '\0';
}

/* host:port, [v6]:port. host is copied without brackets. */
static int listen_split(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon, *h = listen;
    size_t hl;
    char *end;

    if (!listen || !*listen)
        return FARM_EINVALID;
    if (*listen == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return FARM_EINVALID;
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || strchr(listen, ':') != colon)
            return FARM_EINVALID;
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= hostlen)
        return FARM_EINVALID;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535 ||
        !isdigit((unsigned char)colon[1]))
        return FARM_EINVALID;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int config_listen_split(const config *c, char *host, size_t hostlen, int *port)
{
    if (listen_split(c->listen, host, hostlen, port)) {
        farm_error_set("listen: expected HOST:PORT (\"127.0.0.1:8080\", \"[::1]:8080\"), got "
                       "\"%s\"",
                       c->listen ? c->listen : "");
        return FARM_EINVALID;
    }
    return 0;
}

static int host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (!strcasecmp(host, "localhost"))
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

int config_listen_is_loopback(const config *c)
{
    char host[256];
    int port;
    return listen_split(c->listen, host, sizeof(host), &port) == 0 && host_is_loopback(host);
}

static int login_ok(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_.[]", *s))
            return 0;
    return 1;
}

/* host, *.host, host:port, with only DNS characters. */
int config__host_pattern_ok(const char *s)
{
    const char *p = s;
    if (!strncmp(p, "*.", 2))
        p += 2;
    if (!*p || strlen(s) > 260)
        return 0;
    const char *colon = strchr(p, ':');
    for (const char *q = p; *q && q != colon; q++)
        if (!isalnum((unsigned char)*q) && *q != '-' && *q != '.')
            return 0;
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || port < 1 || port > 65535)
            return 0;
    }
    return 1;
}

/* ---- sections ------------------------------------------------------------- */

static void load_github(cc *c, config *cfg, json_t *o)
{
    const char *p = "github";
    long long app_id;

    cfg->github.enabled = 1;
    cc_unknown_keys(c, o, p, github_keys);
    cc_string(c, o, p, "api_url", &cfg->github.api_url, "https://api.github.com", 0);
    if (cfg->github.api_url && !is_http_url(cfg->github.api_url))
        cc_error(c, "github.api_url", "expected an http:// or https:// URL");
    strip_trailing_slash(cfg->github.api_url);
    cc_secret(c, o, p, "token", &cfg->github.token, 0);
    cc_int(c, o, p, "app_id", &app_id, 0, 1, 1LL << 53);
    cfg->github.app_id = app_id;
    cc_secret(c, o, p, "app_private_key", &cfg->github.app_private_key, 0);
    if (json_object_get(o, "app_id") && !json_object_get(o, "app_private_key"))
        cc_error(c, "github.app_private_key", "required with github.app_id");
    if (json_object_get(o, "app_private_key") && !json_object_get(o, "app_id"))
        cc_error(c, "github.app_id", "required with github.app_private_key");
    cc_secret(c, o, p, "webhook_secret", &cfg->github.webhook_secret, 0);
    cc_string(c, o, p, "bot_login", &cfg->github.bot_login, "farm-bot", 0);
    if (cfg->github.bot_login && !login_ok(cfg->github.bot_login))
        cc_error(c, "github.bot_login", "not a GitHub login (\"%s\")", cfg->github.bot_login);
}

static void load_azure(cc *c, config *cfg, json_t *o)
{
    const char *p = "azure";

    cfg->azure.enabled = 1;
    cc_unknown_keys(c, o, p, azure_keys);
    cc_string(c, o, p, "org_url", &cfg->azure.org_url, NULL, 1);
    if (cfg->azure.org_url && !is_http_url(cfg->azure.org_url))
        cc_error(c, "azure.org_url", "expected an http:// or https:// URL");
    strip_trailing_slash(cfg->azure.org_url);
    cc_secret(c, o, p, "token", &cfg->azure.token, 0);
    cc_string(c, o, p, "webhook_user", &cfg->azure.webhook_user, NULL, 0);
    cc_secret(c, o, p, "webhook_password", &cfg->azure.webhook_password, 0);
    if (json_object_get(o, "webhook_user") && !json_object_get(o, "webhook_password"))
        cc_error(c, "azure.webhook_password", "required with azure.webhook_user");
    if (json_object_get(o, "webhook_password") && !json_object_get(o, "webhook_user"))
        cc_error(c, "azure.webhook_user", "required with azure.webhook_password");
    cc_string(c, o, p, "webhook_header", &cfg->azure.webhook_header, NULL, 0);
    cc_secret(c, o, p, "webhook_header_secret", &cfg->azure.webhook_header_secret, 0);
    if (json_object_get(o, "webhook_header") && !json_object_get(o, "webhook_header_secret"))
        cc_error(c, "azure.webhook_header_secret", "required with azure.webhook_header");
    if (json_object_get(o, "webhook_header_secret") && !json_object_get(o, "webhook_header"))
        cc_error(c, "azure.webhook_header", "required with azure.webhook_header_secret");
    if (cfg->azure.webhook_header) {
        for (const char *q = cfg->azure.webhook_header; *q; q++)
            if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_') {
                cc_error(c, "azure.webhook_header", "not an HTTP header name");
                break;
            }
    }
    cc_string(c, o, p, "bot_name", &cfg->azure.bot_name, NULL, 0);
}

static void load_scaling(cc *c, config *cfg, json_t *o)
{
    const char *p = "scaling";
    long long v;

    if (o)
        cc_unknown_keys(c, o, p, scaling_keys);
    cc_int(c, o, p, "max_agents", &v, 4, 1, 256);
    cfg->scaling.max_agents = (int)v;
    cc_int(c, o, p, "max_per_repo", &v, cfg->scaling.max_agents < 2 ? cfg->scaling.max_agents : 2,
           1, 256);
    cfg->scaling.max_per_repo = (int)v;
    if (cfg->scaling.max_per_repo > cfg->scaling.max_agents)
        cc_error(c, "scaling.max_per_repo", "must not exceed scaling.max_agents (%d)",
                 cfg->scaling.max_agents);
    cc_int(c, o, p, "min_warm", &v, 0, 0, 256);
    cfg->scaling.min_warm = (int)v;
    if (cfg->scaling.min_warm > cfg->scaling.max_agents)
        cc_error(c, "scaling.min_warm", "must not exceed scaling.max_agents (%d)",
                 cfg->scaling.max_agents);
    cc_int(c, o, p, "idle_timeout_s", &v, 300, 0, 7 * 86400);
    cfg->scaling.idle_timeout_s = (int)v;
}

static void load_sandbox(cc *c, config *cfg, json_t *o)
{
    const char *p = "sandbox";
    char ip[CONFIG_PATH_MAX];
    long long v;

    if (o)
        cc_unknown_keys(c, o, p, sandbox_keys);
    cc_choice(c, o, p, "mode", &cfg->sandbox.mode, "bwrap", modes);
    cc_choice(c, o, p, "network", &cfg->sandbox.network, "none", networks);
    cc_choice(c, o, p, "setup_network", &cfg->sandbox.setup_network,
              cfg->sandbox.network ? cfg->sandbox.network : "none", networks);
    cc_strings(c, o, p, "allow_hosts", &cfg->sandbox.allow_hosts, &cfg->sandbox.nallow_hosts);
    for (size_t i = 0; i < cfg->sandbox.nallow_hosts; i++) {
        if (!config__host_pattern_ok(cfg->sandbox.allow_hosts[i])) {
            snprintf(ip, sizeof(ip), "sandbox.allow_hosts[%zu]", i);
            cc_error(c, ip, "expected host, *.domain or host:port (got \"%s\")",
                     cfg->sandbox.allow_hosts[i]);
        }
    }
    cc_int(c, o, p, "memory_mb", &v, 4096, 64, 1 << 20);
    cfg->sandbox.memory_mb = (int)v;
    cc_int(c, o, p, "pids", &v, 512, 16, 1 << 20);
    cfg->sandbox.pids = (int)v;
    cc_int(c, o, p, "wall_timeout_s", &v, 1800, 10, 7 * 86400);
    cfg->sandbox.wall_timeout_s = (int)v;
    cc_int(c, o, p, "disk_mb", &v, 8192, 16, 1 << 24);
    cfg->sandbox.disk_mb = (int)v;
}

/* A non-negative amount (USD) at path.key; absent or null: 0. */
static void cc_usd(cc *c, json_t *o, const char *path, const char *key, double *out, int required)
{
    char full[CONFIG_PATH_MAX];
    json_t *v = o ? json_object_get(o, key) : NULL;
    *out = 0;
    cc_join(full, path, key);
    if (!v || json_is_null(v)) {
        if (required)
            cc_error(c, full, "required");
        return;
    }
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e9) {
        cc_error(c, full, "expected a number from 0 to 1e9");
        return;
    }
    *out = json_number_value(v);
}

static void load_budgets(cc *c, config *cfg, json_t *o)
{
    const char *p = "budgets";
    long long v;

    if (o)
        cc_unknown_keys(c, o, p, budget_keys);
    cc_int(c, o, p, "run_wall_s", &v, 1800, 1, 7 * 86400);
    cfg->budgets.run_wall_s = (int)v;
    cc_int(c, o, p, "max_runs", &v, 5, 1, 1000);
    cfg->budgets.max_runs = (int)v;
    cc_int(c, o, p, "partial_margin_s", &v, 120, 0, 86400);
    cfg->budgets.partial_margin_s = (int)v;
    if (cfg->budgets.partial_margin_s >= cfg->budgets.run_wall_s)
        cc_error(c, "budgets.partial_margin_s", "must be less than budgets.run_wall_s (%d)",
                 cfg->budgets.run_wall_s);
    cc_usd(c, o, p, "session_usd", &cfg->budgets.session_usd, 0);
    cc_usd(c, o, p, "repo_daily_usd", &cfg->budgets.repo_daily_usd, 0);
    cc_usd(c, o, p, "daily_usd", &cfg->budgets.daily_usd, 0);
}

/* The review loop: how long reviews and comments are gathered into one
 * revision before it starts. */
static void load_review(cc *c, config *cfg, json_t *o)
{
    const char *p = "review";
    long long v;

    if (o)
        cc_unknown_keys(c, o, p, review_keys);
    cc_int(c, o, p, "debounce_s", &v, 60, 0, 86400);
    cfg->review.debounce_s = (int)v;
}

/* The CI fix loop (repos[].ci.fix turns it on per repository): how many
 * fix rounds one pull request gets, and how long the checks must be quiet. */
static void load_ci(cc *c, config *cfg, json_t *o)
{
    const char *p = "ci";
    long long v;

    if (o)
        cc_unknown_keys(c, o, p, ci_keys);
    cc_int(c, o, p, "max_fix_rounds", &v, 3, 0, 20);
    cfg->ci.max_fix_rounds = (int)v;
    cc_int(c, o, p, "settle_s", &v, 60, 0, 86400);
    cfg->ci.settle_s = (int)v;
}

/* The commit author: a name without newlines or angle brackets, an e-mail
 * with one '@' and nothing git would misread. */
static void load_bot(cc *c, config *cfg, json_t *o)
{
    const char *p = "bot";

    if (o)
        cc_unknown_keys(c, o, p, bot_keys);
    cc_string(c, o, p, "name", &cfg->bot.name, "farm-bot", 0);
    cc_string(c, o, p, "email", &cfg->bot.email, "farm-bot@users.noreply.local", 0);
    if (cfg->bot.name &&
        (!*cfg->bot.name || strlen(cfg->bot.name) > 128 || strpbrk(cfg->bot.name, "<>\n\r")))
        cc_error(c, "bot.name", "expected 1 to 128 characters without <, > or line breaks");
    if (cfg->bot.email) {
        const char *at = strchr(cfg->bot.email, '@');
        if (!at || at == cfg->bot.email || !at[1] || strchr(at + 1, '@') ||
            strlen(cfg->bot.email) > 254 || strpbrk(cfg->bot.email, "<> \t\n\r"))
            cc_error(c, "bot.email", "expected an e-mail address (got \"%s\")", cfg->bot.email);
    }
}

static void free_secret(char *s);

/* git.signing_key: an OpenSSH private key the farm signs its commits with.
 * Read and parsed here, so a missing, unreadable, encrypted or malformed
 * key stops the farm at start, named by where it was to be found. */
static void load_git(cc *c, config *cfg, json_t *o)
{
    const char *p = "git";
    sshsig_key *k = NULL;

    if (!o)
        return;
    cc_unknown_keys(c, o, p, git_keys);
    cc_secret(c, o, p, "signing_key", &cfg->git.signing_key, 0);
    if (!cfg->git.signing_key)
        return;
    const char *ref = json_string_value(json_object_get(o, "signing_key"));
    if (sshsig_key_parse(&k, cfg->git.signing_key) != 0) {
        cc_error(c, "git.signing_key", "%s: %s", ref ? ref : "the key", farm_error_last());
        free_secret(cfg->git.signing_key);
        cfg->git.signing_key = NULL;
    }
    sshsig_key_free(k);
}

static const char *preset_key_env(const char *preset)
{
    if (!preset)
        return NULL;
    if (!strcmp(preset, "claude") || !strcmp(preset, "opencode"))
        return "ANTHROPIC_API_KEY";
    if (!strcmp(preset, "codex") || !strcmp(preset, "aider")) /* aider: OpenAI Chat Completions */
        return "OPENAI_API_KEY";
    return NULL;
}

/* agent.prices: {"model": {"input": 3, "output": 15, ...}, ...} */
static void load_prices(cc *c, config *cfg, json_t *o)
{
    const char *model;
    json_t *v;
    size_t n = o ? json_object_size(o) : 0, i = 0;

    if (n == 0)
        return;
    if (n > 1000) {
        cc_error(c, "agent.prices", "at most 1000 models");
        return;
    }
    cfg->agent.prices = calloc(n, sizeof(config_price));
    if (!cfg->agent.prices) {
        c->oom = 1;
        return;
    }
    json_object_foreach(o, model, v)
    {
        char path[300];
        config_price *pr = &cfg->agent.prices[i];
        snprintf(path, sizeof(path), "agent.prices.%.200s", model);
        if (!*model || strlen(model) > 200) {
            cc_error(c, "agent.prices", "a model name of 1 to 200 characters");
            continue;
        }
        if (!json_is_object(v)) {
            cc_error(c, path, "expected an object of prices in USD per million tokens");
            continue;
        }
        cc_unknown_keys(c, v, path, price_keys);
        pr->model = strdup(model);
        if (!pr->model) {
            c->oom = 1;
            continue;
        }
        cc_usd(c, v, path, "input", &pr->input, 1);
        cc_usd(c, v, path, "output", &pr->output, 1);
        cc_usd(c, v, path, "cache_read", &pr->cache_read, 0);
        cc_usd(c, v, path, "cache_write", &pr->cache_write, 0);
        cc_usd(c, v, path, "cache_write_1h", &pr->cache_write_1h, 0);
        i++;
    }
    cfg->agent.nprices = i;
}

/* agent.path: the preset's program named explicitly (an absolute path). */
static void load_agent_path(cc *c, config *cfg, json_t *o)
{
    cc_string(c, o, "agent", "path", &cfg->agent.path, NULL, 0);
    const char *v = cfg->agent.path;
    if (!v)
        return;
    if (v[0] != '/' || strlen(v) >= 4096 || strpbrk(v, "\n\r"))
        cc_error(c, "agent.path", "expected the absolute path of the agent's program (got \"%s\")",
                 v);
    else if (cfg->agent.command)
        cc_error(c, "agent.path", "not with agent.command: its first word is the program");
    else if (!cfg->agent.preset || !strcmp(cfg->agent.preset, "auto") ||
             !strcmp(cfg->agent.preset, "standin"))
        cc_error(c, "agent.path",
                 "names the program of agent.preset: set agent.preset to "
                 "claude, codex, aider or opencode as well");
}

/* agent.env: {"NAME": "value"} for the agent's environment, plain values
 * only (a secret reference is refused: secrets reach the agent through the
 * model gateway, never its environment); FARM_* names are the farm's. */
static void load_agent_env(cc *c, config *cfg, json_t *o)
{
    const char *name;
    json_t *v;
    strv env = {0};
    size_t n = o ? json_object_size(o) : 0;

    if (n == 0)
        return;
    if (n > 64) {
        cc_error(c, "agent.env", "at most 64 variables");
        return;
    }
    json_object_foreach(o, name, v)
    {
        char path[300];
        const char *q = name;
        int ok = *q && !isdigit((unsigned char)*q);
        for (; *q && ok; q++)
            ok = isalnum((unsigned char)*q) || *q == '_';
        snprintf(path, sizeof(path), "agent.env.%.200s", name);
        if (!ok || strlen(name) > 200) {
            cc_error(c, "agent.env", "\"%.200s\" is not an environment variable name", name);
            continue;
        }
        if (!strncmp(name, "FARM_", 5) || !strcmp(name, "HOME")) {
            cc_error(c, path, "set by the farm itself (FARM_* and HOME are not configurable)");
            continue;
        }
        if (!json_is_string(v)) {
            cc_error(c, path, "expected a string");
            continue;
        }
        const char *val = json_string_value(v);
        if (!strncmp(val, "env:", 4) || !strncmp(val, "file:", 5)) {
            cc_error(c, path,
                     "agent.env takes plain values only, never a secret reference: the agent's "
                     "model API key is agent.api_key, which stays with the farm's model gateway "
                     "(docs/gateway.md)");
            continue;
        }
        if (strlen(val) > 16384 || memchr(val, '\0', json_string_length(v))) {
            cc_error(c, path, "expected a value of at most 16384 bytes without NUL");
            continue;
        }
        strv_addf(&env, "%s=%s", name, val);
    }
    if (env.failed)
        c->oom = 1;
    cfg->agent.env = strv_take(&env);
    strv_free(&env);
}

/* An environment variable's name at path (NULL is fine). */
static void check_env_name(cc *c, const char *path, const char *name)
{
    if (!name)
        return;
    const char *q = name;
    int ok = !isdigit((unsigned char)*q);
    for (; *q && ok; q++)
        ok = isalnum((unsigned char)*q) || *q == '_';
    if (!ok)
        cc_error(c, path, "not an environment variable name");
}

/* A model API's base URL at path: http(s), and plain http only to this
 * host (the real key travels to it). Its trailing slash goes. */
static void check_api_url(cc *c, const char *path, char *url)
{
    if (!url)
        return;
    if (!is_http_url(url)) {
        cc_error(c, path, "expected an http:// or https:// URL (got \"%s\")", url);
    } else if (!strncmp(url, "http://", 7)) {
        char host[256];
        const char *h = url + 7;
        size_t hl = *h == '[' ? strcspn(h + 1, "]") : strcspn(h, ":/");
        snprintf(host, sizeof(host), "%.*s", (int)(hl < 255 ? hl : 255), *h == '[' ? h + 1 : h);
        if (!host_is_loopback(host))
            cc_error(c, path, "plain http:// only to a loopback address; use https://");
    }
    strip_trailing_slash(url);
}

/* agent.presets: {"codex": {"api_key", "api_key_env", "model", "api_url"}}:
 * settings of one preset, over the agent.* ones, when a session runs it. */
static void load_agent_presets(cc *c, config *cfg, json_t *o)
{
    static const char *const names[] = {"claude", "codex", "aider", "opencode", "command", NULL};
    const char *name;
    json_t *v;
    size_t n = o ? json_object_size(o) : 0, i = 0;

    if (n == 0)
        return;
    if (!(cfg->agent.presets = calloc(n, sizeof(config_agent_preset)))) {
        c->oom = 1;
        return;
    }
    json_object_foreach(o, name, v)
    {
        char path[300], q[340];
        int known = 0;
        snprintf(path, sizeof(path), "agent.presets.%.64s", name);
        for (const char *const *k = names; *k && !known; k++)
            known = !strcmp(*k, name);
        if (!known) {
            cc_error(c, path,
                     "not a preset with settings (claude, codex, aider, opencode or "
                     "command)");
            continue;
        }
        if (!json_is_object(v)) {
            cc_error(c, path, "expected an object of api_key, api_key_env, model, api_url");
            continue;
        }
        cc_unknown_keys(c, v, path, agent_preset_keys);
        config_agent_preset *ap = &cfg->agent.presets[i++];
        if (!(ap->name = strdup(name))) {
            c->oom = 1;
            continue;
        }
        cc_secret(c, v, path, "api_key", &ap->api_key, 0);
        cc_string(c, v, path, "api_key_env", &ap->api_key_env,
                  ap->api_key ? preset_key_env(name) : NULL, 0);
        snprintf(q, sizeof(q), "%s.api_key_env", path);
        check_env_name(c, q, ap->api_key_env);
        if (ap->api_key && !ap->api_key_env)
            cc_error(c, q, "required with api_key for this preset");
        cc_string(c, v, path, "model", &ap->model, NULL, 0);
        cc_string(c, v, path, "api_url", &ap->api_url, NULL, 0);
        snprintf(q, sizeof(q), "%s.api_url", path);
        check_api_url(c, q, ap->api_url);
    }
    cfg->agent.npresets = i;
}

static void load_agent(cc *c, config *cfg, json_t *o)
{
    const char *p = "agent";
    size_t n = 0;

    if (o)
        cc_unknown_keys(c, o, p, agent_keys);
    cc_strings(c, o, p, "command", &cfg->agent.command, &n);
    if (cfg->agent.command && n == 0)
        cc_error(c, "agent.command", "must name a program");
    if (json_object_get(o ? o : json_null(), "command") &&
        json_object_get(o ? o : json_null(), "preset"))
        cc_error(c, "agent", "give either preset or command, not both");
    cc_choice(c, o, p, "preset", &cfg->agent.preset, cfg->agent.command ? NULL : "auto", presets);
    cc_secret(c, o, p, "api_key", &cfg->agent.api_key, 0);
    cc_string(c, o, p, "api_key_env", &cfg->agent.api_key_env, preset_key_env(cfg->agent.preset),
              0);
    check_env_name(c, "agent.api_key_env", cfg->agent.api_key_env);
    if (json_object_get(o ? o : json_null(), "api_key") && !cfg->agent.api_key_env)
        cc_error(c, "agent.api_key_env", "required with agent.api_key for this agent");
    cc_string(c, o, p, "model", &cfg->agent.model, NULL, 0);
    cc_string(c, o, p, "api_url", &cfg->agent.api_url, NULL, 0);
    check_api_url(c, "agent.api_url", cfg->agent.api_url);
    load_prices(c, cfg, cc_object(c, o, p, "prices"));
    load_agent_path(c, cfg, o);
    load_agent_env(c, cfg, cc_object(c, o, p, "env"));
    load_agent_presets(c, cfg, cc_object(c, o, p, "presets"));
}

static void load_tokens(cc *c, config *cfg, json_t *arr)
{
    char p[CONFIG_PATH_MAX], q[CONFIG_PATH_MAX];
    size_t i;
    json_t *o;

    if (!json_is_array(arr)) {
        cc_error(c, "tokens", "expected an array of {\"name\", \"token\", \"role\"}");
        return;
    }
    if (!(cfg->tokens = calloc(json_array_size(arr) + 1, sizeof(*cfg->tokens)))) {
        c->oom = 1;
        return;
    }
    json_array_foreach(arr, i, o)
    {
        config_token *t = &cfg->tokens[cfg->ntokens++];
        snprintf(p, sizeof(p), "tokens[%zu]", i);
        if (!json_is_object(o)) {
            cc_error(c, p, "expected an object");
            continue;
        }
        cc_unknown_keys(c, o, p, token_keys);
        cc_string(c, o, p, "name", &t->name, NULL, 1);
        cc_secret(c, o, p, "token", &t->secret, 1);
        cc_choice(c, o, p, "role", &t->role, NULL, roles);
        if (!json_object_get(o, "role")) {
            cc_join(q, p, "role");
            cc_error(c, q, "required key is missing (viewer, member or admin)");
        }
        for (size_t j = 0; j + 1 < cfg->ntokens; j++) {
            const config_token *u = &cfg->tokens[j];
            if (t->name && u->name && !strcmp(t->name, u->name)) {
                cc_join(q, p, "name");
                cc_error(c, q, "\"%s\" is used by tokens[%zu] too", t->name, j);
            }
            if (t->secret && u->secret && !strcmp(t->secret, u->secret)) {
                cc_join(q, p, "token");
                cc_error(c, q, "the same token as tokens[%zu]", j);
            }
        }
    }
}

/* "[v6]" or "[v6]:port", for http.allowed_hosts. */
static int bracketed_v6_ok(const char *s)
{
    char ip[64];
    struct in6_addr a6;
    const char *close = s[0] == '[' ? strchr(s, ']') : NULL;
    if (!close || (size_t)(close - s - 1) >= sizeof(ip))
        return 0;
    memcpy(ip, s + 1, (size_t)(close - s - 1));
    ip[close - s - 1] = '\0';
    if (inet_pton(AF_INET6, ip, &a6) != 1)
        return 0;
    if (!close[1])
        return 1;
    char *end;
    long port = close[1] == ':' ? strtol(close + 2, &end, 10) : -1;
    return close[1] == ':' && close[2] && !*end && port >= 1 && port <= 65535;
}

/* An IP address literal, for http.trusted_proxies. */
static int ip_literal_ok(const char *s)
{
    struct in_addr a4;
    struct in6_addr a6;
    return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

/* The HTTP front's guards and limits (after max_body_bytes: the body budget
 * per address defaults from it and may not be below it). */
static void load_http(cc *c, config *cfg, json_t *o)
{
    const char *p = "http";
    char ip[CONFIG_PATH_MAX];
    long long v;

    if (o)
        cc_unknown_keys(c, o, p, http_keys);
    cc_strings(c, o, p, "allowed_hosts", &cfg->http.allowed_hosts, &cfg->http.nallowed_hosts);
    for (size_t i = 0; i < cfg->http.nallowed_hosts; i++) {
        const char *h = cfg->http.allowed_hosts[i];
        if (!bracketed_v6_ok(h) && (!strncmp(h, "*.", 2) || !config__host_pattern_ok(h))) {
            snprintf(ip, sizeof(ip), "http.allowed_hosts[%zu]", i);
            cc_error(c, ip, "expected a host name or host:port, without a scheme (got \"%s\")", h);
        }
    }
    cc_strings(c, o, p, "trusted_proxies", &cfg->http.trusted_proxies, &cfg->http.ntrusted_proxies);
    for (size_t i = 0; i < cfg->http.ntrusted_proxies; i++) {
        if (!ip_literal_ok(cfg->http.trusted_proxies[i])) {
            snprintf(ip, sizeof(ip), "http.trusted_proxies[%zu]", i);
            cc_error(c, ip, "expected an IP address (got \"%s\")", cfg->http.trusted_proxies[i]);
        }
    }
    cc_int(c, o, p, "max_connections", &v, 0, 0, 1 << 20);
    cfg->http.max_connections = (int)v;
    if (v > 0 && v < 16)
        cc_error(c, "http.max_connections", "must be 0 (from the open-file limit) or at least 16");
    cc_int(c, o, p, "max_connections_per_ip", &v, 64, 0, 1 << 20);
    cfg->http.max_connections_per_ip = (int)v;
    cc_int(c, o, p, "header_timeout_s", &v, 10, 1, 3600);
    cfg->http.header_timeout_s = (int)v;
    cc_int(c, o, p, "body_min_rate", &v, 1024, 0, 1 << 30);
    cfg->http.body_min_rate = (int)v;
    cc_int(c, o, p, "body_bytes_per_ip", &v, 2 * (long long)cfg->max_body_bytes, 1024, 1LL << 32);
    cfg->http.body_bytes_per_ip = (size_t)v;
    if (cfg->http.body_bytes_per_ip < cfg->max_body_bytes)
        cc_error(c, "http.body_bytes_per_ip",
                 "must be at least max_body_bytes (%zu), or no delivery of that size gets in",
                 cfg->max_body_bytes);
    cc_int(c, o, p, "max_large_bodies", &v, 8, 1, 4096);
    cfg->http.max_large_bodies = (int)v;
}

/* The daily digest: a configured repository's issue and an hour (UTC). */
static void load_digest(cc *c, config *cfg, json_t *o)
{
    const char *p = "digest";
    long long v;

    cfg->digest.enabled = 1;
    cc_unknown_keys(c, o, p, digest_keys);
    cc_choice(c, o, p, "tracker", &cfg->digest.tracker, NULL, config__trackers);
    cc_string(c, o, p, "repo", &cfg->digest.repo, NULL, 1);
    cc_int(c, o, p, "issue", &cfg->digest.issue, 0, 1, (1LL << 53));
    if (!json_object_get(o, "issue"))
        cc_error(c, "digest.issue", "required key is missing (the issue to comment on)");
    cc_int(c, o, p, "hour_utc", &v, 7, 0, 23);
    cfg->digest.hour_utc = (int)v;
    if (!json_object_get(o, "tracker"))
        cc_error(c, "digest.tracker", "required key is missing (github, azure or local)");
    if (cfg->digest.tracker && cfg->digest.repo &&
        !config_repo_find(cfg, cfg->digest.tracker, cfg->digest.repo))
        cc_error(c, "digest.repo", "\"%s\" is not among the repos with tracker \"%s\"",
                 cfg->digest.repo, cfg->digest.tracker);
}

/* store: where the farm keeps its state. A password is a secret like any
 * other (store.password, "env:" or "file:"), never part of the URL, which
 * is logged and shown. */
static void load_store(cc *c, config *cfg, json_t *o)
{
    const char *u;

    if (o)
        cc_unknown_keys(c, o, "store", store_keys);
    cc_string(c, o, "store", "url", &cfg->store.url, "sqlite:", 0);
    if (o)
        cc_secret(c, o, "store", "password", &cfg->store.password, 0);
    cc_bool(c, o, "store", "shared_fs", &cfg->store.shared_fs, 0);
    if (!(u = cfg->store.url))
        return;
    if (!strncmp(u, "postgres://", 11) || !strncmp(u, "postgresql://", 13)) {
        const char *auth = strchr(u, '/') + 2, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
        const char *colon = strchr(auth, ':');
        if (at && (!slash || at < slash) && colon && colon < at)
            cc_error(c, "store.url",
                     "holds a password: give it as store.password"
                     " (\"env:NAME\" or \"file:PATH\") instead");
        if (strstr(u, "password="))
            cc_error(c, "store.url", "holds a password: give it as store.password instead");
    } else if (strchr(u, '=') && (!strchr(u, ':') || strchr(u, '=') < strchr(u, ':'))) {
        if (strstr(u, "password"))
            cc_error(c, "store.url", "holds a password: give it as store.password instead");
    } else if (strcmp(u, "sqlite:") != 0) {
        cc_error(c, "store.url",
                 "expected \"sqlite:\", a postgres:// URL or a libpq connection string"
                 " (\"host=... dbname=...\")");
    }
}

/* worker: what this one process takes on, beside the global scaling.* */
static void load_worker(cc *c, config *cfg, json_t *o)
{
    long long v;

    if (o)
        cc_unknown_keys(c, o, "worker", worker_keys);
    cc_int(c, o, "worker", "slots", &v, 0, 0, 256);
    cfg->worker.slots = (int)v;
}

/* ---- the whole file -------------------------------------------------------- */

static void load_root(cc *c, config *cfg, json_t *root)
{
    char host[256], url[300];
    long long v;
    int port;
    json_t *o;

    cc_unknown_keys(c, root, "", top_keys);
    cc_string(c, root, "", "listen", &cfg->listen, "127.0.0.1:8080", 0);
    if (cfg->listen && listen_split(cfg->listen, host, sizeof(host), &port))
        cc_error(c, "listen",
                 "expected HOST:PORT, as \"127.0.0.1:8080\" or \"[::1]:8080\" (got \"%s\")",
                 cfg->listen);
    cc_string(c, root, "", "data_dir", &cfg->data_dir, "./farm-data", 0);
    snprintf(url, sizeof(url), "http://%s", cfg->listen ? cfg->listen : "127.0.0.1:8080");
    cc_string(c, root, "", "public_url", &cfg->public_url, url, 0);
    if (cfg->public_url && !is_http_url(cfg->public_url))
        cc_error(c, "public_url", "expected an http:// or https:// URL");
    strip_trailing_slash(cfg->public_url);
    cc_choice(c, root, "", "log_level", &cfg->log_level, "info", levels);
    cc_int(c, root, "", "max_body_bytes", &v, 25LL << 20, 1024, 1LL << 30);
    cfg->max_body_bytes = (size_t)v;

    /* trackers before repos: a repo checks that its tracker is configured */
    if ((o = cc_object(c, root, "", "github")))
        load_github(c, cfg, o);
    else
        cfg->github.bot_login = strdup("farm-bot"); /* the local tracker's identity too */
    if ((o = cc_object(c, root, "", "azure")))
        load_azure(c, cfg, o);
    load_scaling(c, cfg, cc_object(c, root, "", "scaling"));
    load_sandbox(c, cfg, cc_object(c, root, "", "sandbox"));
    load_agent(c, cfg, cc_object(c, root, "", "agent"));
    load_budgets(c, cfg, cc_object(c, root, "", "budgets"));
    load_bot(c, cfg, cc_object(c, root, "", "bot"));
    load_git(c, cfg, cc_object(c, root, "", "git"));
    load_review(c, cfg, cc_object(c, root, "", "review"));
    load_ci(c, cfg, cc_object(c, root, "", "ci"));
    load_http(c, cfg, cc_object(c, root, "", "http"));
    load_store(c, cfg, cc_object(c, root, "", "store"));
    load_worker(c, cfg, cc_object(c, root, "", "worker"));
    if ((o = json_object_get(root, "tokens")) && !json_is_null(o))
        load_tokens(c, cfg, o);
    if ((o = json_object_get(root, "repos")) && !json_is_null(o))
        config__repos_load(c, cfg, o);
    if ((o = cc_object(c, root, "", "digest")))
        load_digest(c, cfg, o); /* after repos: it names one */
}

/* Fill a new config from root (an object). */
static int load(config **out, json_t *root, const char *path, char **errors)
{
    cc c = {BUF_INIT(ERRORS_MAX), 0, 0};
    config *cfg = calloc(1, sizeof(*cfg));
    int rc = 0;

    *out = NULL;
    if (!cfg) {
        c.oom = 1;
    } else {
        if (path && !(cfg->path = strdup(path)))
            c.oom = 1;
        load_root(&c, cfg, root);
    }
    if (c.oom) {
        farm_error_set("config: out of memory");
        rc = FARM_ENOMEM;
    } else if (c.nerrors) {
        farm_error_set("%s: %d problem%s", path ? path : "config", c.nerrors,
                       c.nerrors == 1 ? "" : "s");
        rc = FARM_EINVALID;
    }
    if (rc) {
        if (errors) {
            if (c.errors.len >= ERRORS_MAX - 512 || c.oom)
                buf_puts(&c.errors, "(more problems not shown)\n");
            *errors = c.oom ? strdup("out of memory\n") : buf_detach(&c.errors);
        }
        config_free(cfg);
        buf_free(&c.errors);
        return rc;
    }
    buf_free(&c.errors);
    *out = cfg;
    return 0;
}

static char *read_file(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    buf b = BUF_INIT(CONFIG_FILE_MAX);
    char chunk[8192];
    size_t n;

    if (!f) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(&b, chunk, n)) {
            snprintf(why, whylen, "%s is larger than %u bytes", path, CONFIG_FILE_MAX);
            buf_free(&b);
            fclose(f);
            return NULL;
        }
    }
    if (ferror(f)) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        buf_free(&b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    return buf_detach(&b);
}

static int fail_with(char **errors, int rc, const char *msg)
{
    farm_error_set("%s", msg);
    if (errors) {
        size_t n = strlen(msg) + 2;
        if ((*errors = malloc(n)))
            snprintf(*errors, n, "%s\n", msg);
    }
    return rc;
}

int config_load(config **out, const char *path, char **errors)
{
    char why[512];
    json_error_t jerr;
    json_t *root = NULL;
    char *text;
    int rc;

    *out = NULL;
    if (errors)
        *errors = NULL;
    if (!path || !*path)
        return fail_with(errors, FARM_EINVALID, "no config file given");
    if (!(text = read_file(path, why, sizeof(why))))
        return fail_with(errors, FARM_EIO, why);
    root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) {
        snprintf(why, sizeof(why), "%s:%d:%d: not valid JSON: %s", path, jerr.line, jerr.column,
                 jerr.text);
        return fail_with(errors, FARM_EINVALID, why);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(why, sizeof(why), "%s: the config must be a JSON object", path);
        return fail_with(errors, FARM_EINVALID, why);
    }
    rc = load(out, root, path, errors);
    json_decref(root);
    return rc;
}

int config_default(config **out)
{
    json_t *root = json_object();
    int rc;

    *out = NULL;
    if (!root) {
        farm_error_set("config: out of memory");
        return FARM_ENOMEM;
    }
    rc = load(out, root, NULL, NULL);
    json_decref(root);
    return rc;
}

int config_check_serve(const config *c, char **errors)
{
    cc e = {BUF_INIT(ERRORS_MAX), 0, 0};

    if (errors)
        *errors = NULL;
    if (config_listen_is_loopback(c)) {
        buf_free(&e.errors);
        return 0;
    }
    /* Anyone who can reach the port could forge deliveries or read sessions. */
    if (c->github.enabled && !c->github.webhook_secret)
        cc_error(&e, "github.webhook_secret",
                 "required when listening beyond loopback (listen is \"%s\")", c->listen);
    if (c->azure.enabled && !c->azure.webhook_password && !c->azure.webhook_header_secret)
        cc_error(&e, "azure.webhook_password",
                 "required (or azure.webhook_header_secret) when listening beyond loopback");
    if (c->ntokens == 0)
        cc_error(&e, "tokens", "at least one API token is required when listening beyond loopback");
    for (size_t i = 0; i < c->ntokens; i++) {
        if (c->tokens[i].secret && strlen(c->tokens[i].secret) < 16) {
            char p[CONFIG_PATH_MAX];
            snprintf(p, sizeof(p), "tokens[%zu].token", i);
            cc_error(&e, p, "too short for a server beyond loopback (at least 16 characters)");
        }
    }
    if (!e.nerrors) {
        buf_free(&e.errors);
        return 0;
    }
    farm_error_set("the config is not safe to serve beyond loopback (%d problem%s)", e.nerrors,
                   e.nerrors == 1 ? "" : "s");
    if (errors)
        *errors = buf_detach(&e.errors);
    buf_free(&e.errors);
    return FARM_EINVALID;
}

/* Secrets do not linger in freed memory. */
static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void config_free(config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->listen);
    free(c->data_dir);
    free(c->public_url);
    free(c->log_level);
    free(c->store.url);
    free_secret(c->store.password);
    free(c->github.api_url);
    free_secret(c->github.token);
    free_secret(c->github.app_private_key);
    free_secret(c->github.webhook_secret);
    free(c->github.bot_login);
    free(c->azure.org_url);
    free_secret(c->azure.token);
    free(c->azure.webhook_user);
    free_secret(c->azure.webhook_password);
    free(c->azure.webhook_header);
    free_secret(c->azure.webhook_header_secret);
    free(c->azure.bot_name);
    free(c->sandbox.mode);
    free(c->sandbox.network);
    free(c->sandbox.setup_network);
    strv_list_free(c->sandbox.allow_hosts);
    free(c->agent.preset);
    strv_list_free(c->agent.command);
    free_secret(c->agent.api_key);
    free(c->agent.api_key_env);
    free(c->agent.model);
    free(c->agent.api_url);
    free(c->agent.path);
    strv_list_free(c->agent.env);
    for (size_t i = 0; i < c->agent.nprices; i++)
        free(c->agent.prices[i].model);
    free(c->agent.prices);
    for (size_t i = 0; i < c->agent.npresets; i++) {
        free(c->agent.presets[i].name);
        free(c->agent.presets[i].api_key);
        free(c->agent.presets[i].api_key_env);
        free(c->agent.presets[i].model);
        free(c->agent.presets[i].api_url);
    }
    free(c->agent.presets);
    free(c->bot.name);
    free(c->bot.email);
    free_secret(c->git.signing_key);
    free(c->digest.tracker);
    free(c->digest.repo);
    strv_list_free(c->http.allowed_hosts);
    strv_list_free(c->http.trusted_proxies);
    for (size_t i = 0; i < c->ntokens; i++) {
        free(c->tokens[i].name);
        free_secret(c->tokens[i].secret);
        free(c->tokens[i].role);
    }
    free(c->tokens);
    for (size_t i = 0; i < c->nrepos; i++)
        config__repo_clear(&c->repos[i]);
    free(c->repos);
    free(c);
}
