/*
 * test_agent.c - agent presets: argv, the environment contract, and that the
 * tracker token never reaches an agent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/run/agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char bindir[64];

static const agent_ctx ctx = {"/work/.farm/prompt.md",
                              "/work/.farm/summary.md",
                              "/work/.farm/question.md",
                              "/home/agent",
                              42,
                              "octo/app",
                              12,
                              1};

static int setup(void **state)
{
    strcpy(bindir, "/tmp/farm-agent-XXXXXX");
    assert_non_null(mkdtemp(bindir));
    const char *progs[] = {"claude", "codex", "aider", "opencode"};
    for (int i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", bindir, progs[i]);
        FILE *f = fopen(p, "w");
        fputs("#!/bin/sh\nexit 0\n", f);
        fclose(f);
        chmod(p, 0755);
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", bindir);
    return system(cmd);
}

static const char *env_get(char **env, const char *name)
{
    size_t n = strlen(name);
    for (char **p = env; *p; p++)
        if (!strncmp(*p, name, n) && (*p)[n] == '=')
            return *p + n + 1;
    return NULL;
}

static int argv_has(char **argv, const char *s)
{
    for (char **p = argv; *p; p++)
        if (!strcmp(*p, s))
            return 1;
    return 0;
}

static void contract_env_is_set_and_nothing_else_leaks(void **state)
{
    setenv("GITHUB_TOKEN", "ghp_secret_should_not_leak", 1);
    setenv("FARM_GITHUB_SECRET", "hook-secret", 1);
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.preset = "standin";
    cfg.github.token = "ghp_secret_should_not_leak";
    agent_cmd c;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(c.preset, "standin");
    assert_true(c.is_standin);
    assert_non_null(strstr(c.argv[0], "farm-standin-agent"));
    assert_non_null(c.ro_paths[0]);
    assert_string_equal(env_get(c.env, "FARM_PROMPT_FILE"), "/work/.farm/prompt.md");
    assert_string_equal(env_get(c.env, "FARM_SUMMARY_FILE"), "/work/.farm/summary.md");
    assert_string_equal(env_get(c.env, "FARM_QUESTION_FILE"), "/work/.farm/question.md");
    assert_string_equal(env_get(c.env, "FARM_SESSION_ID"), "42");
    assert_string_equal(env_get(c.env, "FARM_REPO"), "octo/app");
    assert_string_equal(env_get(c.env, "FARM_ISSUE"), "12");
    assert_string_equal(env_get(c.env, "FARM_ROUND"), "1");
    assert_string_equal(env_get(c.env, "HOME"), "/home/agent");
    for (char **p = c.env; *p; p++) {
        assert_null(strstr(*p, "ghp_secret"));
        assert_null(strstr(*p, "hook-secret"));
    }
    agent_cmd_free(&c);
}

static void claude_reads_prompt_on_stdin_with_key(void **state)
{
    setenv("PATH", bindir, 1);
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.preset = "claude";
    cfg.agent.api_key = "sk-ant-123456";
    cfg.agent.model = "claude-sonnet-4-5";
    cfg.github.token = "ghp_secret_should_not_leak";
    agent_cmd c;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_true(argv_has(c.argv, "-p"));
    assert_true(argv_has(c.argv, "--dangerously-skip-permissions"));
    assert_true(argv_has(c.argv, "claude-sonnet-4-5"));
    assert_string_equal(c.stdin_file, "/work/.farm/prompt.md");
    assert_string_equal(env_get(c.env, "ANTHROPIC_API_KEY"), "sk-ant-123456");
    agent_cmd_free(&c);
}

static void each_preset_builds(void **state)
{
    setenv("PATH", bindir, 1);
    const char *names[] = {"codex", "aider", "opencode"};
    const char *marks[] = {"exec", "--message-file", "run"};
    for (int i = 0; i < 3; i++) {
        config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.agent.preset = (char *)names[i];
        cfg.agent.api_key = "key-value-1";
        cfg.agent.api_key_env = "MY_KEY";
        agent_cmd c;
        assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
        assert_true(argv_has(c.argv, marks[i]));
        assert_string_equal(env_get(c.env, "MY_KEY"), "key-value-1");
        assert_false(c.is_standin);
        agent_cmd_free(&c);
    }
}

static void auto_picks_installed_agent_with_key_else_standin(void **state)
{
    setenv("PATH", bindir, 1);
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_string_equal(agent_preset_resolve(&cfg), "standin"); /* no key configured */
    cfg.agent.api_key = "k-123456";
    assert_string_equal(agent_preset_resolve(&cfg), "claude");
    setenv("PATH", "/nonexistent", 1);
    assert_string_equal(agent_preset_resolve(&cfg), "standin");
}

static void missing_program_and_unknown_preset_are_clear(void **state)
{
    setenv("PATH", "/nonexistent", 1);
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.preset = "aider";
    agent_cmd c;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "`aider` is not installed"));
    cfg.agent.preset = "gpt-engineer";
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "unknown preset"));
}

static void custom_command_is_used_verbatim(void **state)
{
    char *cmd[] = {"/opt/agent/run", "--flag", "value; rm -rf /", NULL};
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.command = cmd;
    agent_cmd c;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(c.preset, "command");
    assert_string_equal(c.argv[0], "/opt/agent/run");
    assert_string_equal(c.argv[2], "value; rm -rf /");
    assert_null(c.argv[3]);
    agent_cmd_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(contract_env_is_set_and_nothing_else_leaks),
        cmocka_unit_test(claude_reads_prompt_on_stdin_with_key),
        cmocka_unit_test(each_preset_builds),
        cmocka_unit_test(auto_picks_installed_agent_with_key_else_standin),
        cmocka_unit_test(missing_program_and_unknown_preset_are_clear),
        cmocka_unit_test(custom_command_is_used_verbatim),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
