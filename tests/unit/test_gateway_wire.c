/*
 * test_gateway_wire.c - the model gateway wired to the config and the
 * agent's command: agent.api_url, agent.prices and the budgets.*_usd keys
 * (errors named by key path), each preset's environment through a gateway
 * (the token and the base URL, never the real key), Codex's config.toml,
 * the upstream per provider, and the sandbox's relay bind checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/config/config.h"
#include "farm/run/agent.h"
#include "sandbox/sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REAL_KEY "sk-real-key-never-in-the-sandbox-0123456789"
#define TOKEN    "farm-0123456789abcdef"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/farm-gwwire-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *progs[] = {"claude", "codex", "aider", "opencode"};
    for (int i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, progs[i]);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs("#!/bin/sh\nexit 0\n", f);
        fclose(f);
        chmod(p, 0755);
    }
    setenv("PATH", dir, 1);
    setenv("FARM_TEST_MODEL_KEY", REAL_KEY, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    setenv("PATH", "/usr/bin:/bin", 1);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_cfg(const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/farm.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static config *load_good(const char *text)
{
    config *c = NULL;
    char *errors = NULL;
    if (config_load(&c, write_cfg(text), &errors) != 0)
        fail_msg("config_load failed: %s", errors ? errors : farm_error_last());
    return c;
}

static char *load_bad(const char *text)
{
    config *c = NULL;
    char *errors = NULL;
    assert_int_equal(config_load(&c, write_cfg(text), &errors), FARM_EINVALID);
    assert_null(c);
    assert_non_null(errors);
    return errors;
}

static void assert_has(const char *s, const char *what)
{
    if (!s || !strstr(s, what))
        fail_msg("expected \"%s\" in:\n%s", what, s ? s : "(null)");
}

static const char *env_get(char **env, const char *name)
{
    size_t n = strlen(name);
    for (char **p = env; p && *p; p++)
        if (!strncmp(*p, name, n) && (*p)[n] == '=')
            return *p + n + 1;
    return NULL;
}

/* ---- config ------------------------------------------------------------------ */

static void config_keys_load(void **state)
{
    (void)state;
    config *c = load_good("{}");
    assert_null(c->agent.api_url);
    assert_int_equal(c->agent.nprices, 0);
    assert_true(c->budgets.session_usd == 0 && c->budgets.repo_daily_usd == 0 &&
                c->budgets.daily_usd == 0);
    config_free(c);

    c = load_good("{\"agent\": {\"preset\": \"claude\", \"api_key\": \"env:FARM_TEST_MODEL_KEY\","
                  " \"api_url\": \"https://llm.example.com/\", \"model\": \"m-1\","
                  " \"prices\": {\"m-1\": {\"input\": 1, \"output\": 2.5, \"cache_read\": 0.1,"
                  " \"cache_write\": 1.25, \"cache_write_1h\": 2}}},"
                  " \"budgets\": {\"session_usd\": 2.5, \"repo_daily_usd\": 20,"
                  " \"daily_usd\": 100}}");
    assert_string_equal(c->agent.api_key, REAL_KEY);
    assert_string_equal(c->agent.api_url, "https://llm.example.com");
    assert_int_equal(c->agent.nprices, 1);
    assert_string_equal(c->agent.prices[0].model, "m-1");
    assert_true(c->agent.prices[0].input == 1 && c->agent.prices[0].output == 2.5 &&
                c->agent.prices[0].cache_read == 0.1 && c->agent.prices[0].cache_write == 1.25 &&
                c->agent.prices[0].cache_write_1h == 2);
    assert_true(c->budgets.session_usd == 2.5 && c->budgets.repo_daily_usd == 20 &&
                c->budgets.daily_usd == 100);
    config_free(c);
}

static void config_errors_name_the_key(void **state)
{
    (void)state;
    char *e = load_bad("{\"agent\": {\"api_url\": \"ftp://x\", \"api_key\": \"sk-literal\","
                       " \"api_key_env\": \"K\", \"prices\": {\"m\": {\"input\": 1},"
                       " \"n\": {\"input\": -1, \"output\": \"x\", \"bogus\": 1}, \"o\": 3}},"
                       " \"budgets\": {\"session_usd\": -1, \"daily_usd\": \"lots\"}}");
    assert_has(e, "agent.api_url");
    assert_has(e, "agent.api_key");
    assert_has(e, "agent.prices.m.output");
    assert_has(e, "agent.prices.n.input");
    assert_has(e, "agent.prices.n.output");
    assert_has(e, "agent.prices.n.bogus");
    assert_has(e, "agent.prices.o");
    assert_has(e, "budgets.session_usd");
    assert_has(e, "budgets.daily_usd");
    free(e);
    e = load_bad("{\"agent\": {\"prices\": []}}");
    assert_has(e, "agent.prices");
    free(e);
    e = load_bad("{\"agent\": {\"api_url\": \"http://llm.example.com\"}}");
    assert_has(e, "agent.api_url: plain http:// only to a loopback address");
    free(e);
    config *c = load_good("{\"agent\": {\"api_url\": \"http://[::1]:8000/v1\"}}");
    config_free(c);
    c = load_good("{\"agent\": {\"api_url\": \"http://127.0.0.1:8000\"}}");
    config_free(c);
}

/* ---- the agent's command through a gateway ----------------------------------- */

static const agent_ctx ctx = {
    "/farm/prompt.md", "/farm/out/summary.md", "/farm/out/question.md", NULL, 7, "octo/app", 3, 1};

static void assert_no_real_key(const agent_cmd *c)
{
    for (char **p = c->env; *p; p++)
        if (strstr(*p, REAL_KEY))
            fail_msg("the real key is in the environment: %s", *p);
    for (char **p = c->argv; *p; p++)
        if (strstr(*p, REAL_KEY))
            fail_msg("the real key is in argv: %s", *p);
}

static void presets_get_the_token_never_the_key(void **state)
{
    (void)state;
    config cfg;
    agent_gateway gw = {"http://127.0.0.1:3129", TOKEN, "/farm/codex-home", 0};
    agent_cmd c;

    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.api_key = REAL_KEY;
    cfg.agent.preset = "claude";
    cfg.agent.api_key_env = "ANTHROPIC_API_KEY";
    assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
    assert_no_real_key(&c);
    assert_string_equal(env_get(c.env, "FARM_MODEL_BASE_URL"), "http://127.0.0.1:3129");
    assert_string_equal(env_get(c.env, "FARM_MODEL_TOKEN"), TOKEN);
    assert_string_equal(env_get(c.env, "ANTHROPIC_BASE_URL"), "http://127.0.0.1:3129");
    assert_string_equal(env_get(c.env, "ANTHROPIC_API_KEY"), TOKEN);
    assert_string_equal(env_get(c.env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), "1");
    assert_null(env_get(c.env, "IS_SANDBOX")); /* not uid 0 */
    agent_cmd_free(&c);
    gw.uid0 = 1;
    assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
    assert_string_equal(env_get(c.env, "IS_SANDBOX"), "1");
    agent_cmd_free(&c);
    gw.uid0 = 0;

    cfg.agent.preset = "codex";
    cfg.agent.api_key_env = "OPENAI_API_KEY";
    assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
    assert_no_real_key(&c);
    assert_string_equal(env_get(c.env, "CODEX_HOME"), "/farm/codex-home");
    assert_string_equal(env_get(c.env, "FARM_MODEL_TOKEN"), TOKEN);
    int json = 0;
    for (char **p = c.argv; *p; p++)
        json |= !strcmp(*p, "--json");
    assert_true(json);
    agent_cmd_free(&c);

    const char *others[] = {"aider", "opencode"};
    for (int i = 0; i < 2; i++) {
        cfg.agent.preset = (char *)others[i];
        assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
        assert_no_real_key(&c);
        assert_string_equal(env_get(c.env, "FARM_MODEL_TOKEN"), TOKEN);
        agent_cmd_free(&c);
    }

    char *cmd[] = {"python3", "agent.py", NULL};
    cfg.agent.preset = NULL;
    cfg.agent.command = cmd;
    cfg.agent.api_key_env = "MY_KEY";
    assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
    assert_no_real_key(&c);
    assert_string_equal(env_get(c.env, "MY_KEY"), TOKEN);
    agent_cmd_free(&c);

    /* without a gateway, as before: the key itself */
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(env_get(c.env, "MY_KEY"), REAL_KEY);
    assert_null(env_get(c.env, "FARM_MODEL_TOKEN"));
    agent_cmd_free(&c);
}

static void providers_and_upstreams(void **state)
{
    (void)state;
    config cfg;
    gateway_provider p;
    char *u;

    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.preset = "standin";
    cfg.agent.api_key = REAL_KEY;
    assert_int_equal(agent_provider(&p, &cfg), -1);
    cfg.agent.preset = "claude";
    assert_int_equal(agent_provider(&p, &cfg), 0);
    assert_int_equal(p, GATEWAY_ANTHROPIC);
    u = agent_upstream(&cfg, p);
    assert_string_equal(u, "https://api.anthropic.com");
    free(u);
    cfg.agent.preset = "codex";
    assert_int_equal(agent_provider(&p, &cfg), 0);
    assert_int_equal(p, GATEWAY_OPENAI_RESPONSES);
    u = agent_upstream(&cfg, p);
    assert_string_equal(u, "https://api.openai.com");
    free(u);
    cfg.agent.api_url = "http://127.0.0.1:9999/v1/";
    u = agent_upstream(&cfg, p);
    assert_string_equal(u, "http://127.0.0.1:9999");
    free(u);
    cfg.agent.preset = "aider";
    assert_int_equal(agent_provider(&p, &cfg), 0);
    assert_int_equal(p, GATEWAY_OPENAI_CHAT);
    cfg.agent.api_key = NULL;
    assert_int_equal(agent_provider(&p, &cfg), -1);

    cfg.agent.model = "gpt-5.5";
    char *toml = agent_codex_config(&cfg, "http://127.0.0.1:3129");
    assert_has(toml, "model = \"gpt-5.5\"");
    assert_has(toml, "base_url = \"http://127.0.0.1:3129/v1\"");
    assert_has(toml, "env_key = \"FARM_MODEL_TOKEN\"");
    assert_has(toml, "wire_api = \"responses\"");
    assert_has(toml, "[analytics]\nenabled = false");
    assert_has(toml, "[features]\nplugins = false");
    free(toml);
    cfg.agent.model = "evil\"\nx = 1";
    toml = agent_codex_config(&cfg, "http://127.0.0.1:3129");
    assert_null(strstr(toml, "evil"));
    free(toml);
}

/* ---- the sandbox's relay bind ------------------------------------------------ */

static void relay_bind_checks(void **state)
{
    (void)state;
    const char *argv[] = {"true", NULL};
    sandbox_bind b[2] = {{"/run/gw.sock", "/run/gw.sock", 0, 3129},
                         {"/run/other.sock", "/x", 0, 3130}};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.binds = b;
    o.nbinds = 1;
    assert_int_equal(sandbox_opts_check(&o), 0);
    o.nbinds = 2; /* one relay at most */
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    o.nbinds = 1;
    b[0].relay_port = 3128; /* the proxy's */
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    b[0].relay_port = 70000;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_keys_load),
        cmocka_unit_test(config_errors_name_the_key),
        cmocka_unit_test(presets_get_the_token_never_the_key),
        cmocka_unit_test(providers_and_upstreams),
        cmocka_unit_test(relay_bind_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
