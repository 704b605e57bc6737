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
    "name",           "tracker", "clone_url",     "base_branch",     "setup",     "test",
    "max_fix_rounds", "trigger", "azure_project", "azure_area_path", "azure_tag", "allowed_actors",
    "plan",           NULL};
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
    cc_int(c, o, p, "max_fix_rounds", &v, 2, 0, 10);
    r->max_fix_rounds = (int)v;
    cc_bool(c, o, p, "plan", &r->plan, 0);
    load_trigger(c, cfg, r, cc_object(c, o, p, "trigger"), p);
    cc_string(c, o, p, "azure_project", &r->azure_project, NULL, 0);
    cc_string(c, o, p, "azure_area_path", &r->azure_area_path, NULL, 0);
    cc_string(c, o, p, "azure_tag", &r->azure_tag, NULL, 0);
    cc_strings(c, o, p, "allowed_actors", &r->allowed_actors, &r->nallowed_actors);

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
    free(r->trigger.label);
    free(r->trigger.mention);
    free(r->azure_project);
    free(r->azure_area_path);
    free(r->azure_tag);
    strv_list_free(r->allowed_actors);
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
