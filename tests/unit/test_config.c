/*
 * test_config.c - loading and checking the config: defaults, env: and file:
 * secrets, a literal secret refused without being echoed, unknown keys, every
 * type and range error named by its path and all of them reported at once,
 * cross-key checks, listen parsing and the serve-time safety check.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dir;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (asprintf(&dir, "%s/farm-test-config-XXXXXX", base) < 0 || !mkdtemp(dir))
        return -1;
    setenv("FARM_TEST_GH_TOKEN", "ghp_test_token_value_1234", 1);
    setenv("FARM_TEST_GH_SECRET", "webhook-secret-value", 1);
    setenv("FARM_TEST_EMPTY", "", 1);
    unsetenv("FARM_TEST_UNSET");
    return 0;
}

static int group_teardown(void **state)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return 0;
}

/* Write text to <dir>/name and return the path (static storage). */
static const char *write_file(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text as a config expected to fail; returns the error lines (heap). */
static char *load_bad(const char *text)
{
    config *c = NULL;
    char *errors = NULL;
    int rc = config_load(&c, write_file("bad.json", text), &errors);
    assert_int_equal(rc, FARM_EINVALID);
    assert_null(c);
    assert_non_null(errors);
    return errors;
}

static config *load_good(const char *text)
{
    config *c = NULL;
    char *errors = NULL;
    int rc = config_load(&c, write_file("good.json", text), &errors);
    if (rc)
        fail_msg("config_load failed: %s", errors ? errors : farm_error_last());
    assert_null(errors);
    return c;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void assert_has(const char *errors, const char *line)
{
    if (!strstr(errors, line))
        fail_msg("expected \"%s\" in:\n%s", line, errors);
}

/* ---- defaults and a full config ----------------------------------------- */

static void defaults_need_nothing(void **state)
{
    config *c = NULL;
    assert_int_equal(config_default(&c), 0);
    assert_null(c->path);
    assert_string_equal(c->listen, "127.0.0.1:8080");
    assert_string_equal(c->data_dir, "./farm-data");
    assert_string_equal(c->public_url, "http://127.0.0.1:8080");
    assert_string_equal(c->log_level, "info");
    assert_false(c->github.enabled);
    assert_false(c->azure.enabled);
    assert_int_equal(c->nrepos, 0);
    assert_int_equal(c->ntokens, 0);
    assert_int_equal(c->scaling.max_agents, 4);
    assert_int_equal(c->scaling.max_per_repo, 2);
    assert_int_equal(c->scaling.min_warm, 0);
    assert_int_equal(c->scaling.idle_timeout_s, 300);
    assert_int_equal(c->worker.slots, 0);
    assert_false(c->store.shared_fs);
    assert_string_equal(c->sandbox.mode, "bwrap");
    assert_string_equal(c->sandbox.network, "none");
    assert_string_equal(c->sandbox.setup_network, "none");
    assert_int_equal(c->sandbox.memory_mb, 4096);
    assert_int_equal(c->sandbox.pids, 512);
    assert_int_equal(c->sandbox.wall_timeout_s, 1800);
    assert_int_equal(c->sandbox.disk_mb, 8192);
    assert_string_equal(c->agent.preset, "auto");
    assert_null(c->agent.api_key_env); /* "auto": each preset's own variable */
    assert_null(c->agent.api_key);
    assert_int_equal(c->max_body_bytes, 25u << 20);
    assert_true(config_listen_is_loopback(c));
    char *errors = NULL;
    assert_int_equal(config_check_serve(c, &errors), 0);
    assert_null(errors);
    config_free(c);

    /* an empty file is the defaults too */
    c = load_good("{}");
    assert_string_equal(c->listen, "127.0.0.1:8080");
    assert_non_null(c->path);
    config_free(c);
}

static void full_config_with_env_and_file_secrets(void **state)
{
    write_file("azure.secret", "azure-pat-from-file\n\n");
    char text[4096];
    snprintf(text, sizeof(text),
             "{ \"listen\": \"0.0.0.0:9090\", \"data_dir\": \"/var/lib/farm\","
             "  \"public_url\": \"https://farm.example.test/\", \"log_level\": \"debug\","
             "  \"github\": { \"api_url\": \"http://127.0.0.1:1234\", \"token\": "
             "\"env:FARM_TEST_GH_TOKEN\","
             "    \"webhook_secret\": \"env:FARM_TEST_GH_SECRET\", \"bot_login\": \"robo\" },"
             "  \"azure\": { \"org_url\": \"https://dev.azure.com/acme\", \"token\": "
             "\"file:%s/azure.secret\","
             "    \"webhook_user\": \"farm\", \"webhook_password\": \"env:FARM_TEST_GH_SECRET\","
             "    \"bot_name\": \"farm@acme.test\" },"
             "  \"scaling\": { \"max_agents\": 8, \"max_per_repo\": 3, \"min_warm\": 1 },"
             "  \"sandbox\": { \"network\": \"allowlist\", \"allow_hosts\": [\"pypi.org\", "
             "\"*.npmjs.org\", \"proxy:3128\"] },"
             "  \"agent\": { \"command\": [\"/bin/agent\", \"--fast\"] },"
             "  \"tokens\": [ { \"name\": \"ops\", \"token\": \"env:FARM_TEST_GH_TOKEN\", "
             "\"role\": \"admin\" } ],"
             "  \"repos\": ["
             "    { \"name\": \"octo/app\", \"tracker\": \"github\", \"clone_url\": "
             "\"https://github.com/octo/app.git\","
             "      \"trigger\": { \"label\": \"agent\", \"on_open\": true }, \"setup\": \"make "
             "deps\","
             "      \"test\": \"make test\", \"max_fix_rounds\": 3 },"
             "    { \"name\": \"acme/proj/repo\", \"tracker\": \"azure\", \"clone_url\": "
             "\"https://dev.azure.com/acme/proj/_git/repo\","
             "      \"azure_project\": \"proj\", \"allowed_actors\": [\"alice@acme.test\"] },"
             "    { \"name\": \"demo\", \"tracker\": \"local\", \"clone_url\": \"/srv/demo.git\", "
             "\"base_branch\": \"trunk\" }"
             "  ] }",
             dir);
    config *c = load_good(text);
    assert_string_equal(c->listen, "0.0.0.0:9090");
    assert_false(config_listen_is_loopback(c));
    assert_string_equal(c->public_url, "https://farm.example.test");
    assert_string_equal(c->github.token, "ghp_test_token_value_1234");
    assert_string_equal(c->github.webhook_secret, "webhook-secret-value");
    assert_string_equal(c->github.bot_login, "robo");
    assert_string_equal(c->azure.token, "azure-pat-from-file"); /* newlines stripped */
    assert_string_equal(c->azure.webhook_password, "webhook-secret-value");
    assert_int_equal(c->scaling.max_agents, 8);
    assert_int_equal(c->scaling.max_per_repo, 3);
    assert_int_equal(c->sandbox.nallow_hosts, 3);
    assert_string_equal(c->sandbox.setup_network, "allowlist");
    assert_null(c->agent.preset);
    assert_string_equal(c->agent.command[0], "/bin/agent");
    assert_string_equal(c->agent.command[1], "--fast");
    assert_null(c->agent.command[2]);
    assert_int_equal(c->ntokens, 1);
    assert_string_equal(c->tokens[0].role, "admin");
    assert_int_equal(c->nrepos, 3);

    const config_repo *r = config_repo_find(c, "github", "OCTO/App");
    assert_non_null(r);
    assert_string_equal(r->trigger.label, "agent");
    assert_true(r->trigger.on_open);
    assert_true(r->trigger.assignee);                 /* default */
    assert_string_equal(r->trigger.mention, "@robo"); /* default: the bot */
    assert_string_equal(r->base_branch, "main");
    assert_int_equal(r->max_fix_rounds, 3);
    assert_null(config_repo_find(c, "azure", "octo/app"));
    r = config_repo_find(c, "azure", "acme/proj/repo");
    assert_non_null(r);
    assert_int_equal(r->nallowed_actors, 1);
    assert_string_equal(r->allowed_actors[0], "alice@acme.test");
    assert_string_equal(r->trigger.mention, "@farm@acme.test");
    r = config_repo_find(c, "local", "demo");
    assert_string_equal(r->base_branch, "trunk");

    /* beyond loopback, with secrets and a long token: serve may start */
    char *errors = NULL;
    assert_int_equal(config_check_serve(c, &errors), 0);
    assert_null(errors);
    config_free(c);
}

/* ---- secrets ---------------------------------------------------------------- */

static void literal_secret_is_refused_without_echo(void **state)
{
    char *e = load_bad("{\"github\": {\"token\": \"ghp_literal_in_file_9999\"},"
                       " \"tokens\": [{\"name\": \"a\", \"token\": \"plain-token\", \"role\": "
                       "\"viewer\"}]}");
    assert_has(e, "github.token: secrets must not be written in the config file");
    assert_has(e, "\"env:NAME\" or \"file:PATH\"");
    assert_has(e, "tokens[0].token: secrets must not be written");
    assert_null(strstr(e, "ghp_literal_in_file_9999"));
    assert_null(strstr(e, "plain-token"));
    free(e);
}

static void missing_env_and_unreadable_file_name_the_key(void **state)
{
    char *e =
        load_bad("{\"github\": {\"token\": \"env:FARM_TEST_UNSET\","
                 "  \"webhook_secret\": \"file:/nonexistent/farm/secret\"},"
                 " \"azure\": {\"org_url\": \"https://dev.azure.com/x\", \"token\": "
                 "\"env:FARM_TEST_EMPTY\","
                 "  \"webhook_header\": \"X-Farm\", \"webhook_header_secret\": \"env:1BAD\"}}");
    assert_has(e, "github.token: environment variable FARM_TEST_UNSET is not set\n");
    assert_has(e, "github.webhook_secret: cannot read file /nonexistent/farm/secret");
    assert_has(e, "azure.token: environment variable FARM_TEST_EMPTY is empty\n");
    assert_has(e, "azure.webhook_header_secret: \"env:1BAD\" is not a valid environment variable");
    assert_int_equal(count_lines(e), 4);
    free(e);

    write_file("empty.secret", "\n");
    char text[512];
    snprintf(text, sizeof(text), "{\"github\": {\"token\": \"file:%s/empty.secret\"}}", dir);
    e = load_bad(text);
    assert_has(e, "github.token: file ");
    assert_has(e, "is empty");
    free(e);
}

static void secrets_are_redacted_from_logs(void **state)
{
    /* a secret resolved at load is registered with the logger */
    config *c = load_good("{\"github\": {\"token\": \"env:FARM_TEST_GH_TOKEN\"}}");
    int fds[2], saved = dup(2);
    char out[4096] = "";
    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], 2);
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOG_INFO);
    log_info("calling", "auth", "token ghp_test_token_value_1234");
    log_set_level(LOG_ERROR);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    assert_true(n > 0);
    assert_null(strstr(out, "ghp_test_token_value_1234"));
    assert_non_null(strstr(out, "[redacted]"));
    config_free(c);
}

/* ---- structure errors ------------------------------------------------------- */

static void unknown_keys_are_errors(void **state)
{
    char *e = load_bad("{\"lisen\": \"127.0.0.1:1\", \"github\": {\"bot_logn\": \"x\"},"
                       " \"repos\": [{\"name\": \"a/b\", \"tracker\": \"github\", \"clone_url\": "
                       "\"x\"},"
                       "  {\"name\": \"a/c\", \"tracker\": \"github\", \"clone_url\": \"x\","
                       "   \"trigger\": {\"lable\": \"agent\"}}]}");
    assert_has(e, "lisen: unknown key\n");
    assert_has(e, "github.bot_logn: unknown key\n");
    assert_has(e, "repos[1].trigger.lable: unknown key\n");
    assert_int_equal(count_lines(e), 3);
    free(e);
}

static void type_errors_name_the_path(void **state)
{
    char *e =
        load_bad("{\"listen\": 8080, \"github\": \"yes\", \"scaling\": {\"max_agents\": \"4\"},"
                 " \"sandbox\": {\"allow_hosts\": \"pypi.org\", \"memory_mb\": 1.5},"
                 " \"agent\": {\"command\": [\"ok\", 3]},"
                 " \"repos\": [{\"name\": \"a/b\", \"tracker\": \"local\", \"clone_url\": \"x\"},"
                 "  {\"name\": \"a/c\", \"tracker\": \"local\", \"clone_url\": \"x\"},"
                 "  {\"name\": \"a/d\", \"tracker\": \"local\", \"clone_url\": \"x\","
                 "   \"trigger\": {\"label\": 5, \"assignee\": \"yes\"}}], \"tokens\": {}}");
    assert_has(e, "listen: expected a string\n");
    assert_has(e, "github: expected an object\n");
    assert_has(e, "scaling.max_agents: expected an integer\n");
    assert_has(e, "sandbox.allow_hosts: expected an array of strings\n");
    assert_has(e, "sandbox.memory_mb: expected an integer\n");
    assert_has(e, "agent.command[1]: expected a string\n");
    assert_has(e, "repos[2].trigger.label: expected a string\n");
    assert_has(e, "repos[2].trigger.assignee: expected true or false\n");
    assert_has(e, "tokens: expected an array");
    assert_int_equal(count_lines(e), 9);
    free(e);
}

static void range_and_choice_errors(void **state)
{
    char *e = load_bad(
        "{\"scaling\": {\"max_agents\": 0, \"idle_timeout_s\": -1},"
        " \"sandbox\": {\"network\": \"host\", \"pids\": 1, \"allow_hosts\": [\"bad host\"]},"
        " \"log_level\": \"loud\", \"max_body_bytes\": 10, \"public_url\": \"ftp://x\","
        " \"agent\": {\"preset\": \"gpt\"},"
        " \"repos\": [{\"name\": \"a/b\", \"tracker\": \"gitlab\", \"clone_url\": \"x\","
        "   \"max_fix_rounds\": 11, \"base_branch\": \"main..x\"}]}");
    assert_has(e, "scaling.max_agents: must be between 1 and 256 (got 0)\n");
    assert_has(e, "scaling.idle_timeout_s: must be between 0 and 604800 (got -1)\n");
    assert_has(e, "sandbox.network: must be one of none, allowlist (got \"host\")\n");
    assert_has(e, "sandbox.pids: must be between 16 and");
    assert_has(e, "sandbox.allow_hosts[0]: expected host, *.domain or host:port");
    assert_has(e, "log_level: must be one of debug, info, warn, error");
    assert_has(e, "max_body_bytes: must be between 1024 and");
    assert_has(e, "public_url: expected an http:// or https:// URL\n");
    assert_has(e, "agent.preset: must be one of auto, claude, codex, aider, opencode, standin");
    assert_has(e, "repos[0].tracker: must be one of github, azure, local (got \"gitlab\")\n");
    assert_has(e, "repos[0].max_fix_rounds: must be between 0 and 10 (got 11)\n");
    assert_has(e, "repos[0].base_branch: not a valid branch name");
    free(e);

    e = load_bad("{\"worker\": {\"slots\": 257, \"spare\": 1},"
                 " \"store\": {\"shared_fs\": \"yes\"}}");
    assert_has(e, "worker.slots: must be between 0 and 256 (got 257)\n");
    assert_has(e, "worker.spare");
    assert_has(e, "store.shared_fs: expected true or false\n");
    free(e);

    e = load_bad("{\"scaling\": {\"max_agents\": 2, \"max_per_repo\": 3, \"min_warm\": 5}}");
    assert_has(e, "scaling.max_per_repo: must not exceed scaling.max_agents (2)\n");
    assert_has(e, "scaling.min_warm: must not exceed scaling.max_agents (2)\n");
    free(e);
}

static void cross_key_errors(void **state)
{
    char *e =
        load_bad("{\"github\": {\"app_id\": 12},"
                 " \"tokens\": [{\"name\": \"a\", \"token\": \"env:FARM_TEST_GH_TOKEN\", \"role\": "
                 "\"viewer\"},"
                 "   {\"name\": \"a\", \"token\": \"env:FARM_TEST_GH_TOKEN\"}],"
                 " \"agent\": {\"preset\": \"claude\", \"command\": [\"x\"]},"
                 " \"repos\": [{\"tracker\": \"github\", \"clone_url\": \"x\"},"
                 "   {\"name\": \"acme/p/r\", \"tracker\": \"azure\", \"clone_url\": \"x\"},"
                 "   {\"name\": \"octo/app\", \"tracker\": \"github\"},"
                 "   {\"name\": \"Octo/App\", \"tracker\": \"github\", \"clone_url\": \"x\", "
                 "\"azure_tag\": \"t\","
                 "    \"trigger\": {\"assignee\": false, \"mention\": null}},"
                 "   {\"name\": \"noslash\", \"tracker\": \"github\", \"clone_url\": \"x\"}, 7]}");
    assert_has(e, "github.app_private_key: required with github.app_id\n");
    assert_has(e, "tokens[1].role: required key is missing");
    assert_has(e, "tokens[1].name: \"a\" is used by tokens[0] too\n");
    assert_has(e, "tokens[1].token: the same token as tokens[0]\n");
    assert_has(e, "agent: give either preset or command, not both\n");
    assert_has(e, "repos[0].name: required key is missing\n");
    assert_has(e, "repos[1].tracker: \"azure\" needs an \"azure\" section in the config\n");
    /* the missing section is the one error for repos[1] */
    assert_null(strstr(e, "repos[1].trigger"));
    assert_has(e, "repos[2].clone_url: required key is missing\n");
    assert_has(e, "repos[3].name: \"Octo/App\" is configured twice (also repos[2])\n");
    assert_has(e, "repos[3].azure_tag: only for repositories with tracker \"azure\"\n");
    assert_has(e, "repos[4].name: a GitHub repository is \"owner/name\"");
    assert_has(e, "repos[5]: expected an object\n");
    free(e);

    /* mention null takes the default (the bot), so this still has a rule */
    config *c = load_good("{\"repos\": [{\"name\": \"o/r\", \"tracker\": \"local\","
                          " \"clone_url\": \"x\", \"trigger\": {\"assignee\": false,"
                          " \"mention\": null, \"on_open\": false}}]}");
    assert_string_equal(c->repos[0].trigger.mention, "@farm-bot");
    assert_false(c->repos[0].trigger.assignee);
    config_free(c);
}

static void agent_path_and_env(void **state)
{
    char *e = load_bad("{\"agent\": {\"preset\": \"claude\", \"path\": \"claude\","
                       " \"env\": {\"GOOD\": \"x\", \"KEY\": \"env:FARM_TEST_GH_TOKEN\","
                       " \"K2\": \"file:/etc/hostname\", \"FARM_ROUND\": \"9\", \"HOME\": \"/\","
                       " \"1bad\": \"x\", \"N\": 3}}}");
    assert_has(e, "agent.path: expected the absolute path of the agent's program");
    assert_has(e, "agent.env.KEY: agent.env takes plain values only, never a secret reference");
    assert_has(e, "agent.env.K2: agent.env takes plain values only");
    assert_has(e, "agent.env.FARM_ROUND: set by the farm itself");
    assert_has(e, "agent.env.HOME: set by the farm itself");
    assert_has(e, "agent.env: \"1bad\" is not an environment variable name");
    assert_has(e, "agent.env.N: expected a string");
    assert_null(strstr(e, "GOOD"));
    free(e);
    e = load_bad("{\"agent\": {\"path\": \"/opt/claude\"}}");
    assert_has(e, "agent.path: names the program of agent.preset");
    free(e);
    e = load_bad("{\"agent\": {\"command\": [\"x\"], \"path\": \"/opt/claude\"}}");
    assert_has(e, "agent.path: not with agent.command");
    free(e);

    config *c = load_good("{\"agent\": {\"preset\": \"codex\", \"path\": \"/opt/codex/bin/codex\","
                          " \"env\": {\"RUST_LOG\": \"warn\", \"NO_COLOR\": \"\"}}}");
    assert_string_equal(c->agent.path, "/opt/codex/bin/codex");
    assert_string_equal(c->agent.env[0], "RUST_LOG=warn");
    assert_string_equal(c->agent.env[1], "NO_COLOR=");
    assert_null(c->agent.env[2]);
    assert_string_equal(c->agent.api_key_env, "OPENAI_API_KEY");
    config_free(c);
    /* aider speaks OpenAI Chat Completions: its key variable is OpenAI's */
    c = load_good("{\"agent\": {\"preset\": \"aider\"}}");
    assert_string_equal(c->agent.api_key_env, "OPENAI_API_KEY");
    config_free(c);
}

static void repo_image_forms(void **state)
{
    config *c =
        load_good("{\"repos\": ["
                  " {\"name\": \"a\", \"tracker\": \"local\", \"clone_url\": \"x\","
                  "  \"trigger\": {\"on_open\": true}, \"image\": \"oci:/srv/node:22\"},"
                  " {\"name\": \"b\", \"tracker\": \"local\", \"clone_url\": \"x\","
                  "  \"trigger\": {\"on_open\": true}, \"image\": \"oci-archive:/srv/i.tar\"},"
                  " {\"name\": \"c\", \"tracker\": \"local\", \"clone_url\": \"x\","
                  "  \"trigger\": {\"on_open\": true}, \"image\": \"rootfs:/srv/root\"},"
                  " {\"name\": \"d\", \"tracker\": \"local\", \"clone_url\": \"x\","
                  "  \"trigger\": {\"on_open\": true}}]}");
    assert_string_equal(c->repos[0].image, "oci:/srv/node:22");
    assert_string_equal(c->repos[1].image, "oci-archive:/srv/i.tar");
    assert_string_equal(c->repos[2].image, "rootfs:/srv/root");
    assert_null(c->repos[3].image);
    config_free(c);

    char *e = load_bad("{\"repos\": ["
                       " {\"name\": \"a\", \"tracker\": \"local\", \"clone_url\": \"x\","
                       "  \"trigger\": {\"on_open\": true}, \"image\": \"docker://node:22\"},"
                       " {\"name\": \"b\", \"tracker\": \"local\", \"clone_url\": \"x\","
                       "  \"trigger\": {\"on_open\": true}, \"image\": \"oci:relative/dir\"},"
                       " {\"name\": \"c\", \"tracker\": \"local\", \"clone_url\": \"x\","
                       "  \"trigger\": {\"on_open\": true}, \"image\": 7}]}");
    assert_has(e, "repos[0].image: not oci:/DIR[:TAG], oci-archive:/FILE[:TAG] or rootfs:/DIR");
    assert_has(e, "repos[1].image: not oci:/DIR[:TAG]");
    assert_has(e, "repos[2].image: ");
    assert_int_equal(count_lines(e), 3);
    free(e);
}

static void no_trigger_rule_is_an_error(void **state)
{
    char *e = load_bad("{\"azure\": {\"org_url\": \"https://dev.azure.com/x\"},"
                       " \"repos\": [{\"name\": \"x/p/r\", \"tracker\": \"azure\", "
                       "\"clone_url\": \"x\","
                       " \"trigger\": {\"assignee\": false}}]}");
    assert_has(e, "repos[0].trigger: no rule would ever trigger work");
    assert_int_equal(count_lines(e), 1);
    free(e);

    e = load_bad("{\"azure\": {\"org_url\": \"https://dev.azure.com/x\"},"
                 " \"repos\": [{\"name\": \"x/p/r\", \"tracker\": \"azure\", \"clone_url\": \"x\","
                 " \"trigger\": {\"assignee\": true, \"label\": \"agent\"}}]}");
    assert_has(e, "repos[0].trigger.assignee: needs azure.bot_name");
    assert_int_equal(count_lines(e), 1);
    free(e);
}

/* repos[].agents: known presets only, "command" only with agent.command;
 * the default and what a repository allows. */
static void repo_agents(void **state)
{
    (void)state;
    char *e = load_bad("{\"github\": {}, \"agent\": {\"preset\": \"claude\"},"
                       " \"repos\": [{\"name\": \"o/r\", \"tracker\": \"github\","
                       " \"clone_url\": \"x\", \"agents\": [\"codex\", \"gpt\", \"command\"]},"
                       " {\"name\": \"o/s\", \"tracker\": \"github\", \"clone_url\": \"x\","
                       " \"agents\": []}]}");
    assert_has(e, "repos[0].agents: unknown preset \"gpt\"");
    assert_has(e, "repos[0].agents: \"command\" needs agent.command");
    assert_has(e, "repos[1].agents: list at least one preset");
    assert_int_equal(count_lines(e), 3);
    free(e);

    config *c = load_good("{\"github\": {}, \"agent\": {\"preset\": \"claude\"},"
                          " \"repos\": [{\"name\": \"o/a\", \"tracker\": \"github\","
                          " \"clone_url\": \"x\", \"agents\": [\"opencode\", \"claude\"]},"
                          " {\"name\": \"o/b\", \"tracker\": \"github\", \"clone_url\": \"x\","
                          " \"agents\": [\"standin\", \"aider\"]},"
                          " {\"name\": \"o/c\", \"tracker\": \"github\", \"clone_url\": \"x\"}]}");
    const config_repo *a = config_repo_find(c, "github", "o/a");
    const config_repo *b = config_repo_find(c, "github", "o/b");
    const config_repo *d = config_repo_find(c, "github", "o/c");
    assert_string_equal(config_agent_default(c), "claude");
    assert_string_equal(config_repo_agent_default(c, a), "claude");  /* allowed: the config's */
    assert_string_equal(config_repo_agent_default(c, b), "standin"); /* else the first */
    assert_string_equal(config_repo_agent_default(c, d), "claude");  /* no list: the config's */
    assert_true(config_repo_agent_allowed(c, a, "OpenCode"));
    assert_false(config_repo_agent_allowed(c, a, "codex"));
    assert_false(config_repo_agent_allowed(c, b, "claude"));
    assert_true(config_repo_agent_allowed(c, d, "claude"));
    assert_false(config_repo_agent_allowed(c, d, "standin"));
    assert_false(config_repo_agent_allowed(c, d, NULL));
    config_free(c);

    c = load_good("{\"github\": {}, \"agent\": {\"command\": [\"my-agent\"]},"
                  " \"repos\": [{\"name\": \"o/a\", \"tracker\": \"github\","
                  " \"clone_url\": \"x\", \"agents\": [\"command\", \"standin\"]}]}");
    assert_string_equal(config_agent_default(c), "command");
    assert_string_equal(config_repo_agent_default(c, &c->repos[0]), "command");
    config_free(c);

    /* agent.presets: a preset's own key, model and API over agent.*'s */
    setenv("FARM_TEST_OPENAI", "sk-openai-test", 1);
    e = load_bad("{\"agent\": {\"preset\": \"claude\", \"presets\": {\"gpt\": {},"
                 " \"codex\": {\"api_url\": \"http://example.com\", \"colour\": 1},"
                 " \"aider\": {\"api_key\": \"env:FARM_TEST_OPENAI\", \"api_key_env\": \"1X\"}}}}");
    assert_has(e, "agent.presets.gpt: not a preset with settings");
    assert_has(e, "agent.presets.codex.api_url: plain http:// only to a loopback address");
    assert_has(e, "agent.presets.codex.colour");
    assert_has(e, "agent.presets.aider.api_key_env: not an environment variable name");
    free(e);
    c = load_good("{\"agent\": {\"preset\": \"claude\", \"api_key\": \"env:FARM_TEST_OPENAI\","
                  " \"model\": \"m-claude\", \"presets\": {\"codex\": {\"api_key\":"
                  " \"env:FARM_TEST_OPENAI\", \"model\": \"m-codex\","
                  " \"api_url\": \"https://llm.example.com/v1/\"}}}}");
    config alt;
    assert_int_equal(config_agent_for(&alt, c, "claude"), 0); /* the configured one as it is */
    assert_int_equal(config_agent_for(&alt, c, "codex"), 1);
    assert_string_equal(alt.agent.preset, "codex");
    assert_string_equal(alt.agent.model, "m-codex");
    assert_string_equal(alt.agent.api_key_env, "OPENAI_API_KEY");
    assert_string_equal(alt.agent.api_url, "https://llm.example.com/v1");
    assert_string_equal(alt.agent.api_key, "sk-openai-test");
    assert_int_equal(config_agent_for(&alt, c, "opencode"), 1); /* shared settings */
    assert_string_equal(alt.agent.model, "m-claude");
    assert_string_equal(alt.agent.api_key_env, "ANTHROPIC_API_KEY");
    assert_null(alt.agent.api_url);
    assert_non_null(config_agent_preset_find(c, "CODEX"));
    assert_null(config_agent_preset_find(c, "claude"));
    config_free(c);
}

static void listen_forms(void **state)
{
    config *c = load_good("{\"listen\": \"[::1]:9000\"}");
    char host[64];
    int port = 0;
    assert_true(config_listen_is_loopback(c));
    assert_int_equal(config_listen_split(c, host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9000);
    assert_string_equal(c->public_url, "http://[::1]:9000");
    config_free(c);

    c = load_good("{\"listen\": \"localhost:0\"}");
    assert_true(config_listen_is_loopback(c));
    assert_int_equal(config_listen_split(c, host, sizeof(host), &port), 0);
    assert_int_equal(port, 0);
    config_free(c);

    c = load_good("{\"listen\": \"127.1.2.3:80\"}");
    assert_true(config_listen_is_loopback(c));
    config_free(c);

    static const char *const bad[] = {"localhost", "host:",     ":8080", "h:70000",
                                      "h:8x",      "[::1]8080", "a:b:c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "{\"listen\": \"%s\"}", bad[i]);
        char *e = load_bad(text);
        assert_has(e, "listen: expected HOST:PORT");
        free(e);
    }
}

static void serve_beyond_loopback_needs_secrets_and_tokens(void **state)
{
    config *c = load_good("{\"listen\": \"0.0.0.0:8080\", \"github\": {},"
                          " \"azure\": {\"org_url\": \"https://dev.azure.com/x\"},"
                          " \"tokens\": [{\"name\": \"a\", \"token\": \"env:FARM_TEST_GH_SECRET\","
                          " \"role\": \"admin\"}]}");
    char *errors = NULL;
    assert_int_equal(config_check_serve(c, &errors), FARM_EINVALID);
    assert_has(errors, "github.webhook_secret: required when listening beyond loopback");
    assert_has(errors, "azure.webhook_password: required");
    assert_null(strstr(errors, "tokens: at least one"));
    free(errors);
    config_free(c);

    c = load_good("{\"listen\": \"10.0.0.1:8080\"}");
    assert_int_equal(config_check_serve(c, &errors), FARM_EINVALID);
    assert_has(errors, "tokens: at least one API token is required");
    free(errors);
    config_free(c);

    /* a short token is fine on loopback, not beyond */
    write_file("short.token", "abc12345");
    char text[512];
    snprintf(text, sizeof(text),
             "{\"listen\": \"192.168.1.2:80\", \"tokens\": [{\"name\": \"a\", "
             "\"token\": \"file:%s/short.token\", \"role\": \"viewer\"}]}",
             dir);
    c = load_good(text);
    assert_int_equal(config_check_serve(c, &errors), FARM_EINVALID);
    assert_has(errors, "tokens[0].token: too short");
    free(errors);
    config_free(c);
}

static void unreadable_or_malformed_files(void **state)
{
    config *c = NULL;
    char *errors = NULL;
    assert_int_equal(config_load(&c, "/nonexistent/farm.json", &errors), FARM_EIO);
    assert_null(c);
    assert_has(errors, "cannot read /nonexistent/farm.json");
    free(errors);

    errors = load_bad("{\"listen\": \"127.0.0.1:1\",\n  \"data_dir\": }");
    assert_has(errors, ":2:");
    assert_has(errors, "not valid JSON");
    free(errors);

    errors = load_bad("[1, 2]");
    assert_has(errors, "the config must be a JSON object");
    free(errors);

    errors = load_bad("{\"listen\": \"127.0.0.1:1\", \"listen\": \"127.0.0.1:2\"}");
    assert_has(errors, "duplicate");
    free(errors);

    /* NULL errors is allowed */
    assert_int_equal(config_load(&c, write_file("bad.json", "{\"x\": 1}"), NULL), FARM_EINVALID);
    assert_null(c);
}

/* ---- budgets and the commit author (the pipeline's keys) ----------------- */

static void budgets_and_bot(void **state)
{
    (void)state;
    config *c = NULL;
    assert_int_equal(config_default(&c), 0);
    assert_int_equal(c->budgets.run_wall_s, 1800);
    assert_int_equal(c->budgets.max_runs, 5);
    assert_int_equal(c->budgets.partial_margin_s, 120);
    assert_string_equal(c->bot.name, "farm-bot");
    assert_string_equal(c->bot.email, "farm-bot@users.noreply.local");
    config_free(c);

    c = load_good("{\"budgets\": {\"run_wall_s\": 600, \"max_runs\": 2, \"partial_margin_s\": 30},"
                  " \"bot\": {\"name\": \"Robo Farm\", \"email\": \"robo@example.com\"}}");
    assert_int_equal(c->budgets.run_wall_s, 600);
    assert_int_equal(c->budgets.max_runs, 2);
    assert_int_equal(c->budgets.partial_margin_s, 30);
    assert_string_equal(c->bot.name, "Robo Farm");
    assert_string_equal(c->bot.email, "robo@example.com");
    config_free(c);

    char *e =
        load_bad("{\"budgets\": {\"run_wall_s\": 0, \"max_runs\": \"many\", \"retries\": 1}}");
    assert_has(e, "budgets.run_wall_s");
    assert_has(e, "budgets.max_runs");
    assert_has(e, "budgets.retries");
    free(e);
    e = load_bad("{\"budgets\": {\"run_wall_s\": 60, \"partial_margin_s\": 60}}");
    assert_has(e, "budgets.partial_margin_s: must be less than budgets.run_wall_s (60)");
    free(e);
    e = load_bad("{\"bot\": {\"name\": \"evil <x@y>\", \"email\": \"not an address\", \"x\": 1}}");
    assert_has(e, "bot.name");
    assert_has(e, "bot.email");
    assert_has(e, "bot.x");
    free(e);
    e = load_bad("{\"bot\": {\"email\": \"a@b@c\"}}");
    assert_has(e, "bot.email");
    free(e);
}

/* ---- the setup command's keys --------------------------------------------- */

#define REPO_HEAD                                                                                  \
    "{\"github\": {\"token\": \"env:CFG_TEST_TOKEN\"}, \"repos\": [{\"name\": \"a/b\", "           \
    "\"tracker\": \"github\", \"clone_url\": \"https://x/y.git\", \"trigger\": {\"label\": "       \
    "\"l\"}, "

static void setup_keys(void **state)
{
    (void)state;
    setenv("CFG_TEST_TOKEN", "ghp_cfg_test_token_1234567890", 1);
    setenv("CFG_SETUP_SECRET", "npm-secret-value-0123", 1);
    config *c =
        load_good(REPO_HEAD "\"setup\": \"npm ci\", \"setup_cache_key\": [\"package-lock.json\", "
                            "\"sub/yarn.lock\"], \"setup_cache_ttl_s\": 600, \"setup_env\": "
                            "{\"NPM_TOKEN\": \"env:CFG_SETUP_SECRET\"}, \"setup_network\": "
                            "[\"registry.npmjs.org\", \"*.example.com:443\"]}]}");
    const config_repo *r = &c->repos[0];
    assert_true(r->setup_cache);
    assert_int_equal(r->nsetup_cache_key, 2);
    assert_string_equal(r->setup_cache_key[1], "sub/yarn.lock");
    assert_int_equal(r->setup_cache_ttl_s, 600);
    assert_int_equal(r->nsetup_env, 1);
    assert_string_equal(r->setup_env[0], "NPM_TOKEN=npm-secret-value-0123");
    assert_null(r->setup_env[1]);
    assert_string_equal(r->setup_network, "allowlist");
    assert_int_equal(r->nsetup_allow_hosts, 2);
    config_free(c);

    /* defaults: no cache without setup_cache_key, 12 hours, setup's network the sandbox's */
    c = load_good(REPO_HEAD "\"setup\": \"make deps\"}]}");
    assert_false(c->repos[0].setup_cache);
    assert_int_equal(c->repos[0].setup_cache_ttl_s, 43200);
    assert_null(c->repos[0].setup_env);
    assert_null(c->repos[0].setup_network);
    config_free(c);
    c = load_good(REPO_HEAD "\"setup\": \"make\", \"setup_cache_key\": [], "
                            "\"setup_network\": \"none\"}]}");
    assert_true(c->repos[0].setup_cache);
    assert_int_equal(c->repos[0].nsetup_cache_key, 0);
    assert_string_equal(c->repos[0].setup_network, "none");
    config_free(c);

    char *e =
        load_bad(REPO_HEAD "\"setup\": \"x\", \"setup_cache_key\": [\"../etc/passwd\", "
                           "\"/abs\"], \"setup_cache_ttl_s\": 1, \"setup_env\": {\"BAD-NAME\": "
                           "\"env:CFG_SETUP_SECRET\", \"LITERAL\": \"npm-secret-value-0123\", "
                           "\"UNSET\": \"env:CFG_SETUP_UNSET_VAR\"}, \"setup_network\": "
                           "[\"bad host\"]}]}");
    assert_has(e, "repos[0].setup_cache_key[0]: expected a path inside the repository");
    assert_has(e, "repos[0].setup_cache_key[1]: expected a path inside the repository");
    assert_has(e, "repos[0].setup_cache_ttl_s: must be between 60");
    assert_has(e, "repos[0].setup_env.BAD-NAME: not a valid environment variable name");
    assert_has(e, "repos[0].setup_env.LITERAL: secrets must not be written in the config file");
    assert_has(e, "repos[0].setup_env.UNSET: environment variable CFG_SETUP_UNSET_VAR is not set");
    assert_has(e, "repos[0].setup_network[0]: expected host");
    assert_null(strstr(e, "npm-secret-value-0123"));
    free(e);
    e = load_bad(REPO_HEAD "\"setup_cache_key\": [\"a\"], \"setup_network\": \"sometimes\"}]}");
    assert_has(e, "repos[0].setup_cache_key: needs a setup command (repos[].setup)");
    assert_has(e, "repos[0].setup_network: must be one of none, allowlist");
    free(e);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_need_nothing),
        cmocka_unit_test(agent_path_and_env),
        cmocka_unit_test(full_config_with_env_and_file_secrets),
        cmocka_unit_test(literal_secret_is_refused_without_echo),
        cmocka_unit_test(missing_env_and_unreadable_file_name_the_key),
        cmocka_unit_test(secrets_are_redacted_from_logs),
        cmocka_unit_test(unknown_keys_are_errors),
        cmocka_unit_test(type_errors_name_the_path),
        cmocka_unit_test(range_and_choice_errors),
        cmocka_unit_test(cross_key_errors),
        cmocka_unit_test(no_trigger_rule_is_an_error),
        cmocka_unit_test(repo_agents),
        cmocka_unit_test(repo_image_forms),
        cmocka_unit_test(listen_forms),
        cmocka_unit_test(serve_beyond_loopback_needs_secrets_and_tokens),
        cmocka_unit_test(unreadable_or_malformed_files),
        cmocka_unit_test(budgets_and_bot),
        cmocka_unit_test(setup_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
