/*
 * config_repo.c - the repos[] section of the config (see config.h): each
 * repository's name, tracker, clone URL, branch and commands, its trigger
 * rules with their defaults from the tracker's bot identity, the Azure-only
 * keys, and the checks that span keys (name shape per tracker, the
 * tracker's section present, no repository twice). config.c loads the rest
 * of the file and calls config__repos_load() after the trackers' sections.
 */
#include "config_internal.h"
#include "config.h"
#include "config_check.h"

#include "base/strv.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const config__trackers[] = {"github", "azure", "local", NULL};

static const char *const repo_keys[] = {
    "name",      "tracker",        "clone_url", "base_branch",     "setup",
    "test",      "max_fix_rounds", "trigger",   "azure_project",   "azure_area_path",
    "azure_tag", "allowed_actors", "ci",        "setup_cache_key", "setup_cache_ttl_s",
    "setup_env", "setup_network",  "agents",    "image",           "plan",
    NULL};
static const char *const repo_ci_keys[] = {"fix", NULL};
static const char *const trigger_keys[] = {"label", "assignee", "mention", "on_open", NULL};

/* A git branch name a person would write: no spaces, control characters,
 * "..", or the characters git refuses. */
static int branch_ok(const char *b)
{
    if (!b || !*b || *b == '-' || *b == '/' || strstr(b, "..") || strstr(b, "//") ||
        strstr(b, "@{") || b[strlen(b) - 1] == '/' || b[strlen(b) - 1] == '.')
        return 0;
    for (const char *p = b; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("~^:?*[\\", *p))
            return 0;
    return 1;
}

/* repos[].image: the forms sandbox/image.h reads, with an absolute path
 * (the farm may run from any directory). */
static int image_ok(const char *s)
{
    static const char *const kinds[] = {"oci:", "oci-archive:", "rootfs:"};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(kinds[i]);
        if (strncmp(s, kinds[i], l) == 0)
            return s[l] == '/' && s[l + 1] && s[l + 1] != ':' && !strchr(s, '\n') &&
                   strlen(s) < 3000;
    }
    return 0;
}

static int count_char(const char *s, char ch)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == ch;
    return n;
}

static const char *bot_identity(const config *cfg, const char *tracker)
{
    if (tracker && !strcmp(tracker, "azure"))
        return cfg->azure.bot_name;
    return cfg->github.bot_login;
}

static void load_trigger(cc *c, config *cfg, config_repo *r, json_t *o, const char *rp)
{
    char p[CONFIG_PATH_MAX], def_mention[300] = "";
    const char *bot = bot_identity(cfg, r->tracker);

    cc_join(p, rp, "trigger");
    if (o)
        cc_unknown_keys(c, o, p, trigger_keys);
    cc_string(c, o, p, "label", &r->trigger.label, NULL, 0);
    cc_bool(c, o, p, "assignee", &r->trigger.assignee, bot != NULL);
    if (bot)
        snprintf(def_mention, sizeof(def_mention), "@%s", bot);
    cc_string(c, o, p, "mention", &r->trigger.mention, bot ? def_mention : NULL, 0);
    cc_bool(c, o, p, "on_open", &r->trigger.on_open, 0);
    if (r->trigger.assignee && !bot && r->tracker && !strcmp(r->tracker, "azure")) {
        char q[CONFIG_PATH_MAX];
        cc_join(q, p, "assignee");
        cc_error(c, q, "needs azure.bot_name (who the farm is in Azure DevOps)");
    }
    /* (without its tracker's section that is the error to report, not this) */
    int section = !r->tracker || strcmp(r->tracker, "azure") || cfg->azure.enabled;
    if (section && !r->trigger.label && !r->trigger.assignee && !r->trigger.mention &&
        !r->trigger.on_open)
        cc_error(c, p, "no rule would ever trigger work: set label, assignee, mention or on_open");
}

/* A path inside the worktree: relative, no "..", no empty part. */
static int rel_path_ok(const char *s)
{
    if (!*s || *s == '/' || strlen(s) > 1024)
        return 0;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n;
        if (*p)
            p++;
    }
    return 1;
}

static int env_name_valid(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/* setup_env: names to "env:"/"file:" secrets, kept as "NAME=value". */
static void load_setup_env(cc *c, config_repo *r, json_t *o, const char *rp)
{
    char p[CONFIG_PATH_MAX], q[CONFIG_PATH_MAX];
    json_t *env = cc_object(c, o, rp, "setup_env"), *v;
    const char *name;

    if (!env)
        return;
    cc_join(p, rp, "setup_env");
    if (!(r->setup_env = calloc(json_object_size(env) + 1, sizeof(*r->setup_env)))) {
        c->oom = 1;
        return;
    }
    json_object_foreach(env, name, v)
    {
        char *val = NULL;
        cc_join(q, p, name);
        if (!env_name_valid(name)) {
            cc_error(c, q, "not a valid environment variable name");
            continue;
        }
        cc_secret(c, env, p, name, &val, 1);
        if (!val)
            continue;
        char *e = NULL;
        if (asprintf(&e, "%s=%s", name, val) < 0)
            c->oom = 1;
        else
            r->setup_env[r->nsetup_env++] = e;
        free(val);
    }
}

/* setup_network: "none", "allowlist" (sandbox.allow_hosts), or a list of
 * hosts allowed while setup runs. */
static void load_setup_network(cc *c, config_repo *r, json_t *o, const char *rp)
{
    static const char *const modes[] = {"none", "allowlist", NULL};
    char p[CONFIG_PATH_MAX], ip[CONFIG_PATH_MAX + 32];
    json_t *v = json_object_get(o, "setup_network");

    if (!v || json_is_null(v))
        return;
    if (!json_is_array(v)) {
        cc_choice(c, o, rp, "setup_network", &r->setup_network, NULL, modes);
        return;
    }
    cc_join(p, rp, "setup_network");
    cc_strings(c, o, rp, "setup_network", &r->setup_allow_hosts, &r->nsetup_allow_hosts);
    for (size_t i = 0; i < r->nsetup_allow_hosts; i++) {
        if (!config__host_pattern_ok(r->setup_allow_hosts[i])) {
            snprintf(ip, sizeof(ip), "%s[%zu]", p, i);
            cc_error(c, ip, "expected host, *.domain or host:port (got \"%s\")",
                     r->setup_allow_hosts[i]);
        }
    }
    if (!(r->setup_network = strdup("allowlist")))
        c->oom = 1;
}

/* The setup command's cache and secrets (docs/environments.md). */
static void load_setup_keys(cc *c, config_repo *r, json_t *o, const char *p)
{
    char q[CONFIG_PATH_MAX], ip[CONFIG_PATH_MAX + 32];
    long long v;

    r->setup_cache = json_is_array(json_object_get(o, "setup_cache_key"));
    cc_strings(c, o, p, "setup_cache_key", &r->setup_cache_key, &r->nsetup_cache_key);
    cc_join(q, p, "setup_cache_key");
    for (size_t i = 0; i < r->nsetup_cache_key; i++) {
        if (!rel_path_ok(r->setup_cache_key[i])) {
            snprintf(ip, sizeof(ip), "%s[%zu]", q, i);
            cc_error(c, ip, "expected a path inside the repository, without \"..\" (got \"%s\")",
                     r->setup_cache_key[i]);
        }
    }
    cc_int(c, o, p, "setup_cache_ttl_s", &v, 43200, 60, 30LL * 86400);
    r->setup_cache_ttl_s = (int)v;
    load_setup_env(c, r, o, p);
    load_setup_network(c, r, o, p);
    if (!r->setup) {
        static const char *const needs[] = {"setup_cache_key", "setup_env", "setup_network", NULL};
        for (const char *const *k = needs; *k; k++) {
            if (json_object_get(o, *k)) {
                cc_join(q, p, *k);
                cc_error(c, q, "needs a setup command (repos[].setup)");
            }
        }
    }
}

/* repos[].agents: presets the agent.* settings can run ("command" only
 * with agent.command); the configured one is not required among them. */
static void load_agents(cc *c, config *cfg, config_repo *r, json_t *o, const char *p)
{
    static const char *const known[] = {"claude", "codex", "aider", "opencode", "standin", NULL};
    char q[CONFIG_PATH_MAX];

    cc_strings(c, o, p, "agents", &r->agents, &r->nagents);
    cc_join(q, p, "agents");
    if (json_object_get(o, "agents") && r->nagents == 0)
        cc_error(c, q, "list at least one preset (or leave the key out: the agent preset only)");
    for (size_t i = 0; i < r->nagents; i++) {
        const char *a = r->agents[i];
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++)
            ok = !strcmp(a, *k);
        if (!strcmp(a, "command")) {
            ok = 1;
            if (!cfg->agent.command)
                cc_error(c, q, "\"command\" needs agent.command");
        }
        if (!ok)
            cc_error(c, q,
                     "unknown preset \"%s\" (claude, codex, aider, opencode, standin or command)",
                     a);
    }
}

static void load_repo(cc *c, config *cfg, config_repo *r, json_t *o, const char *p)
{
    char q[CONFIG_PATH_MAX];
    long long v;

    cc_unknown_keys(c, o, p, repo_keys);
    cc_string(c, o, p, "name", &r->name, NULL, 1);
    cc_choice(c, o, p, "tracker", &r->tracker, NULL, config__trackers);
    if (!json_object_get(o, "tracker")) {
        cc_join(q, p, "tracker");
        cc_error(c, q, "required key is missing (github, azure or local)");
    }
    cc_string(c, o, p, "clone_url", &r->clone_url, NULL, 1);
    cc_string(c, o, p, "base_branch", &r->base_branch, "main", 0);
    if (r->base_branch && !branch_ok(r->base_branch)) {
        cc_join(q, p, "base_branch");
        cc_error(c, q, "not a valid branch name (\"%s\")", r->base_branch);
    }
    cc_string(c, o, p, "setup", &r->setup, NULL, 0);
    cc_string(c, o, p, "test", &r->test, NULL, 0);
    cc_string(c, o, p, "image", &r->image, NULL, 0);
    if (r->image && !image_ok(r->image)) {
        cc_join(q, p, "image");
        cc_error(c, q,
                 "not oci:/DIR[:TAG], oci-archive:/FILE[:TAG] or rootfs:/DIR with an absolute "
                 "path (got \"%s\")",
                 r->image);
    }
    cc_int(c, o, p, "max_fix_rounds", &v, 2, 0, 10);
    r->max_fix_rounds = (int)v;
    cc_bool(c, o, p, "plan", &r->plan, 0);
    load_trigger(c, cfg, r, cc_object(c, o, p, "trigger"), p);
    cc_string(c, o, p, "azure_project", &r->azure_project, NULL, 0);
    cc_string(c, o, p, "azure_area_path", &r->azure_area_path, NULL, 0);
    cc_string(c, o, p, "azure_tag", &r->azure_tag, NULL, 0);
    cc_strings(c, o, p, "allowed_actors", &r->allowed_actors, &r->nallowed_actors);
    json_t *ci = cc_object(c, o, p, "ci");
    cc_join(q, p, "ci");
    if (ci)
        cc_unknown_keys(c, ci, q, repo_ci_keys);
    cc_bool(c, ci, q, "fix", &r->ci.fix, 0);
    load_setup_keys(c, r, o, p);
    load_agents(c, cfg, r, o, p);

    if (!r->tracker || !r->name)
        return;
    if (!strcmp(r->tracker, "github") && count_char(r->name, '/') != 1) {
        cc_join(q, p, "name");
        cc_error(c, q, "a GitHub repository is \"owner/name\" (got \"%s\")", r->name);
    }
    if (!strcmp(r->tracker, "azure")) {
        int slashes = count_char(r->name, '/');
        if (slashes < 1 || slashes > 2) {
            cc_join(q, p, "name");
            cc_error(c, q,
                     "an Azure DevOps repository is \"org/project/repo\" or \"org/project\" "
                     "(got \"%s\")",
                     r->name);
        }
    } else {
        static const char *const azure_only[] = {"azure_project", "azure_area_path", "azure_tag",
                                                 NULL};
        for (const char *const *k = azure_only; *k; k++) {
            if (json_object_get(o, *k)) {
                cc_join(q, p, *k);
                cc_error(c, q, "only for repositories with tracker \"azure\"");
            }
        }
    }
    if (!strcmp(r->tracker, "github") && !cfg->github.enabled) {
        cc_join(q, p, "tracker");
        cc_error(c, q, "\"github\" needs a \"github\" section in the config");
    }
    if (!strcmp(r->tracker, "azure") && !cfg->azure.enabled) {
        cc_join(q, p, "tracker");
        cc_error(c, q, "\"azure\" needs an \"azure\" section in the config");
    }
}

void config__repos_load(cc *c, config *cfg, json_t *arr)
{
    char p[CONFIG_PATH_MAX], q[CONFIG_PATH_MAX];
    size_t i;
    json_t *o;

    if (!json_is_array(arr)) {
        cc_error(c, "repos", "expected an array of repository objects");
        return;
    }
    if (!(cfg->repos = calloc(json_array_size(arr) + 1, sizeof(*cfg->repos)))) {
        c->oom = 1;
        return;
    }
    json_array_foreach(arr, i, o)
    {
        config_repo *r = &cfg->repos[cfg->nrepos++];
        snprintf(p, sizeof(p), "repos[%zu]", i);
        if (!json_is_object(o)) {
            cc_error(c, p, "expected an object");
            continue;
        }
        load_repo(c, cfg, r, o, p);
        for (size_t j = 0; j + 1 < cfg->nrepos; j++) {
            const config_repo *u = &cfg->repos[j];
            if (r->name && u->name && r->tracker && u->tracker && !strcmp(r->tracker, u->tracker) &&
                !strcasecmp(r->name, u->name)) {
                cc_join(q, p, "name");
                cc_error(c, q, "\"%s\" is configured twice (also repos[%zu])", r->name, j);
            }
        }
    }
}

void config__repo_clear(config_repo *r)
{
    free(r->name);
    free(r->tracker);
    free(r->clone_url);
    free(r->base_branch);
    free(r->setup);
    free(r->test);
    free(r->image);
    free(r->trigger.label);
    free(r->trigger.mention);
    free(r->azure_project);
    free(r->azure_area_path);
    free(r->azure_tag);
    strv_list_free(r->allowed_actors);
    strv_list_free(r->setup_cache_key);
    if (r->setup_env)
        for (size_t i = 0; r->setup_env[i]; i++)
            explicit_bzero(r->setup_env[i], strlen(r->setup_env[i]));
    strv_list_free(r->setup_env);
    free(r->setup_network);
    strv_list_free(r->setup_allow_hosts);
    strv_list_free(r->agents);
}

const char *config_agent_default(const config *c)
{
    if (c && c->agent.command)
        return "command";
    return c && c->agent.preset ? c->agent.preset : "auto";
}

int config_agent_for(config *out, const config *c, const char *preset)
{
    const char *dflt = config_agent_default(c);
    const config_agent_preset *ap = config_agent_preset_find(c, preset);
    int other = preset && strcasecmp(preset, dflt) != 0;

    *out = *c;
    if (!other && !ap)
        return 0;
    if (other && !strcmp(preset, "command")) {
        out->agent.preset = NULL; /* config checks ensured agent.command where allowed */
    } else if (other) {
        out->agent.command = NULL;
        out->agent.path = NULL; /* agent.path names the configured preset's program */
        out->agent.preset = (char *)preset;
        if (!strcmp(preset, "codex"))
            out->agent.api_key_env = "OPENAI_API_KEY";
        else if (strcmp(preset, "standin") != 0)
            out->agent.api_key_env = "ANTHROPIC_API_KEY";
    }
    if (ap && ap->api_key) {
        out->agent.api_key = ap->api_key;
        out->agent.api_key_env = ap->api_key_env;
    }
    if (ap && ap->model)
        out->agent.model = ap->model;
    if (ap && ap->api_url)
        out->agent.api_url = ap->api_url;
    return 1;
}

const config_agent_preset *config_agent_preset_find(const config *c, const char *preset)
{
    for (size_t i = 0; c && preset && i < c->agent.npresets; i++)
        if (c->agent.presets[i].name && !strcasecmp(c->agent.presets[i].name, preset))
            return &c->agent.presets[i];
    return NULL;
}

int config_repo_agent_allowed(const config *c, const config_repo *repo, const char *preset)
{
    if (!preset)
        return 0;
    if (!repo || !repo->agents)
        return !strcasecmp(preset, config_agent_default(c));
    for (size_t i = 0; i < repo->nagents; i++)
        if (repo->agents[i] && !strcasecmp(repo->agents[i], preset))
            return 1;
    return 0;
}

const char *config_repo_agent_default(const config *c, const config_repo *repo)
{
    const char *d = config_agent_default(c);
    if (!repo || !repo->agents || repo->nagents == 0 || config_repo_agent_allowed(c, repo, d))
        return d;
    return repo->agents[0];
}

const config_repo *config_repo_find(const config *c, const char *tracker, const char *name)
{
    if (!c || !tracker || !name)
        return NULL;
    for (size_t i = 0; i < c->nrepos; i++) {
        const config_repo *r = &c->repos[i];
        if (r->tracker && r->name && !strcmp(r->tracker, tracker) && !strcasecmp(r->name, name))
            return r;
    }
    return NULL;
}
