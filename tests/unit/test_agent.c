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
    snprintf(cmd, sizeof(cmd), "/bin/rm -rf %s", bindir); /* the tests change PATH */
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

static void write_exec(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0755);
}

static int ro_has(char **ro, const char *path)
{
    for (char **p = ro; p && *p; p++)
        if (!strcmp(*p, path))
            return 1;
    return 0;
}

/* A CLI outside the system folders is run by its real path and bound: the
 * topmost node_modules for an npm package (reached through .bin/), the file
 * otherwise; an interpreter found through env outside the system is bound
 * (its prefix) and put first on PATH. */
static void program_outside_the_system_is_bound(void **state)
{
    char d[256], p[512], q[512];
    snprintf(d, sizeof(d), "%s/prefix", bindir);
    const char *dirs[] = {"",
                          "/lib",
                          "/lib/node_modules",
                          "/lib/node_modules/@acme",
                          "/lib/node_modules/@acme/agent",
                          "/lib/node_modules/@acme/agent/bin",
                          "/lib/node_modules/.bin",
                          "/node",
                          "/node/bin",
                          "/home",
                          "/home/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", d, dirs[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof(p), "%s/node/bin/mynode", d);
    write_exec(p, "#!/bin/sh\nexit 0\n");
    snprintf(p, sizeof(p), "%s/lib/node_modules/@acme/agent/bin/cli.js", d);
    write_exec(p, "#!/usr/bin/env -S mynode --no-warnings\nconsole.log(1)\n");
    snprintf(q, sizeof(q), "%s/lib/node_modules/.bin/claude", d);
    assert_int_equal(symlink("../@acme/agent/bin/cli.js", q), 0);

    char path_env[600];
    snprintf(path_env, sizeof(path_env), "%s/lib/node_modules/.bin:%s/node/bin", d, d);
    setenv("PATH", path_env, 1);
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.preset = "claude";
    agent_cmd c;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(c.argv[0], p); /* the real file, not the .bin link */
    snprintf(q, sizeof(q), "%s/lib/node_modules", d);
    assert_true(ro_has(c.ro_paths, q));
    snprintf(q, sizeof(q), "%s/node", d); /* mynode's prefix */
    assert_true(ro_has(c.ro_paths, q));
    snprintf(q, sizeof(q), "%s/node/bin:/usr/local/bin:/usr/bin:/bin", d);
    assert_string_equal(env_get(c.env, "PATH"), q);
    agent_cmd_free(&c);

    /* agent.path names it, through a symbolic link elsewhere: the file alone */
    snprintf(p, sizeof(p), "%s/home/real-codex", d);
    write_exec(p, "#!/bin/sh\nexit 0\n");
    snprintf(q, sizeof(q), "%s/home/bin/codex", d);
    assert_int_equal(symlink(p, q), 0);
    setenv("PATH", "/nonexistent", 1);
    cfg.agent.preset = "codex";
    cfg.agent.path = q;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(c.argv[0], p);
    assert_true(ro_has(c.ro_paths, p));
    assert_null(c.ro_paths[1]);
    assert_string_equal(env_get(c.env, "PATH"), "/usr/local/bin:/usr/bin:/bin");
    agent_cmd_free(&c);
    cfg.agent.path = "/nonexistent/codex";
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "agent.path is /nonexistent/codex"));

    /* a command's program in the system is left as it is, and not bound */
    char *cmd[] = {"/bin/sh", "-c", "true", NULL};
    cfg.agent.preset = NULL;
    cfg.agent.path = NULL;
    cfg.agent.command = cmd;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(c.argv[0], "/bin/sh");
    assert_null(c.ro_paths[0]);
    agent_cmd_free(&c);
    /* one outside it is bound */
    cmd[0] = q;
    assert_int_equal(agent_cmd_build(&c, &cfg, &ctx), 0);
    assert_string_equal(c.argv[0], p);
    assert_true(ro_has(c.ro_paths, p));
    agent_cmd_free(&c);
}

/* agent.env reaches the agent; the farm's own variables win over it. */
static void agent_env_and_command_gateway_variables(void **state)
{
    char *extra[] = {"RUST_LOG=warn", "LANG=de_DE.UTF-8", NULL};
    char *cmd[] = {"/bin/true", NULL};
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.command = cmd;
    cfg.agent.env = extra;
    cfg.agent.api_key = "sk-real-key-1234";
    cfg.agent.api_key_env = "ANTHROPIC_API_KEY";
    agent_gateway gw = {"http://127.0.0.1:3129", "tok-run-1", NULL, 0};
    agent_cmd c;
    assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
    assert_string_equal(env_get(c.env, "RUST_LOG"), "warn");
    assert_string_equal(env_get(c.env, "FARM_MODEL_BASE_URL"), "http://127.0.0.1:3129");
    assert_string_equal(env_get(c.env, "FARM_MODEL_TOKEN"), "tok-run-1");
    assert_string_equal(env_get(c.env, "ANTHROPIC_BASE_URL"), "http://127.0.0.1:3129");
    assert_string_equal(env_get(c.env, "ANTHROPIC_API_KEY"), "tok-run-1");
    assert_null(env_get(c.env, "OPENAI_API_KEY"));
    int n = 0;
    for (char **p = c.env; *p; p++) {
        n += !strncmp(*p, "ANTHROPIC_API_KEY=", 18);
        assert_null(strstr(*p, "sk-real-key"));
    }
    assert_int_equal(n, 1);
    agent_cmd_free(&c);

    cfg.agent.api_key_env = "OPENAI_API_KEY";
    assert_int_equal(agent_cmd_build_gw(&c, &cfg, &ctx, &gw), 0);
    assert_string_equal(env_get(c.env, "OPENAI_BASE_URL"), "http://127.0.0.1:3129/v1");
    assert_string_equal(env_get(c.env, "OPENAI_API_KEY"), "tok-run-1");
    assert_null(env_get(c.env, "ANTHROPIC_API_KEY"));
    agent_cmd_free(&c);
}

/* codex and opencode get their configuration in the run's HOME; a link the
 * agent left there is not followed. */
static void home_files_point_at_the_gateway(void **state)
{
    char home[256], p[512], buf[2048];
    snprintf(home, sizeof(home), "%s/home1", bindir);
    assert_int_equal(mkdir(home, 0700), 0);
    config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.agent.preset = "opencode";
    cfg.agent.model = "claude-x \"quoted\"";
    assert_int_equal(agent_home_write(home, &cfg, "http://127.0.0.1:3129"), 0);
    snprintf(p, sizeof(p), "%s/.config/opencode/opencode.json", home);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"baseURL\": \"http://127.0.0.1:3129/v1\""));
    assert_non_null(strstr(buf, "\"apiKey\": \"{env:FARM_MODEL_TOKEN}\""));
    assert_non_null(strstr(buf, "\"model\": \"anthropic/claude-x \\\"quoted\\\"\""));
    assert_non_null(strstr(buf, "\"autoupdate\": false"));

    cfg.agent.preset = "codex";
    cfg.agent.model = NULL;
    char target[512];
    snprintf(p, sizeof(p), "%s/.codex", home);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(target, sizeof(target), "%s/planted", bindir);
    snprintf(p, sizeof(p), "%s/.codex/config.toml", home);
    assert_int_equal(symlink(target, p), 0);
    assert_int_not_equal(agent_home_write(home, &cfg, "http://127.0.0.1:3129"), 0);
    assert_int_not_equal(access(target, F_OK), 0);
    unlink(p);
    assert_int_equal(agent_home_write(home, &cfg, "http://127.0.0.1:3129"), 0);
    f = fopen(p, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "base_url = \"http://127.0.0.1:3129/v1\""));

    cfg.agent.preset = "claude"; /* nothing to write */
    assert_int_equal(agent_home_write(home, &cfg, "http://127.0.0.1:3129"), 0);
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
        cmocka_unit_test(program_outside_the_system_is_bound),
        cmocka_unit_test(agent_env_and_command_gateway_variables),
        cmocka_unit_test(home_files_point_at_the_gateway),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
