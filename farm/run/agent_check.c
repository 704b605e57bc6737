/*
 * agent_check.c - is the configured agent's program there, inside the
 * sandbox? (agent.h: agent_program_check())
 *
 * The program is found on this host, then run in a sandbox as a run's agent
 * gets it: the same binds (agent_cmd.ro_paths), the same environment (with a
 * gateway URL that leads nowhere and a token that is worth nothing, never the
 * real key), network none. A preset's CLI runs with --version; a command's
 * program is looked up by the shell (`command -v`), since not every program
 * knows --version. `farm serve` refuses to start when this fails and `farm
 * doctor` reports it, each with the fix, so a CLI the sandbox cannot see is
 * found at start and not as "the agent exited with status 127" on the first
 * issue. With repos[].agents a repository may run other presets than the
 * configured one: each that any repository allows is checked, named in its
 * line (agent_program_check_all()).
 */
#include "agent.h"

#include "base/error.h"
#include "sandbox/sandbox.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK_TIMEOUT_MS 60000 /* a 400 MB binary read cold from disk */
#define CHECK_OUTPUT_MAX 2048

typedef struct check_out {
    char text[CHECK_OUTPUT_MAX];
    size_t len;
} check_out;

static void on_output(void *ctx, sandbox_stream which, const char *data, size_t n)
{
    (void)which;
    check_out *o = ctx;
    size_t room = sizeof(o->text) - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->text + o->len, data, n);
    o->len += n;
    o->text[o->len] = '\0';
}

/* The first non-empty line of s, trimmed, into out. */
static void first_line(char *out, size_t n, const char *s)
{
    while (*s == '\n' || *s == '\r' || *s == ' ')
        s++;
    size_t l = strcspn(s, "\r\n");
    snprintf(out, n, "%.*s", (int)(l < 300 ? l : 300), s);
}

int agent_program_check(char *out, size_t n, const config *cfg)
{
    agent_ctx ctx = {0};
    agent_gateway gw = {"http://127.0.0.1:9", "farm-program-check", NULL, 0};
    agent_cmd cmd;
    const char *name = agent_preset_resolve(cfg);
    int rc;

    snprintf(out, n, "%s", "");
    if (!strcmp(name, "standin")) {
        snprintf(out, n, "the stand-in agent (%s)", agent_standin_path());
        return 0;
    }
    ctx.prompt_file = "/farm/prompt.md";
    ctx.summary_file = "/farm/out/summary.md";
    ctx.question_file = "/farm/out/question.md";
    ctx.home = SANDBOX_HOME_INSIDE;
    ctx.round = 1;
    if ((rc = agent_cmd_build_gw(&cmd, cfg, &ctx, &gw))) {
        snprintf(out, n, "%s", farm_error_last());
        return rc;
    }
    if (cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none")) {
        snprintf(out, n, "%s (not run: sandbox.mode is \"unsafe-none\")", cmd.argv[0]);
        agent_cmd_free(&cmd);
        return 0;
    }

    const char *version[] = {cmd.argv[0], "--version", NULL};
    const char *lookup[] = {"/bin/sh",
                            "-c",
                            "command -v \"$1\" >/dev/null || { echo \"$1: not found\"; exit 127; }",
                            "sh",
                            cmd.argv[0],
                            NULL};
    int is_command = !strcmp(name, "command");
    sandbox_bind binds[SANDBOX_MAX_BINDS];
    size_t nb = 0;
    for (size_t i = 0; cmd.ro_paths[i] && nb < SANDBOX_MAX_BINDS; i++)
        binds[nb++] = (sandbox_bind){cmd.ro_paths[i], cmd.ro_paths[i], 0, 0};

    check_out co = {{0}, 0};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    sandbox_result sr;
    o.argv = is_command ? lookup : version;
    o.env = (const char *const *)cmd.env;
    o.network = SANDBOX_NET_NONE;
    o.timeout_ms = CHECK_TIMEOUT_MS;
    o.memory_mb = cfg->sandbox.memory_mb;
    o.pids = cfg->sandbox.pids;
    o.disk_mb = cfg->sandbox.disk_mb;
    o.binds = binds;
    o.nbinds = nb;
    o.on_output = on_output;
    o.output_ctx = &co;
    rc = sandbox_run(&sr, &o);
    if (rc < 0) {
        snprintf(out, n,
                 "cannot run %s in the sandbox: %s; the program and its folders must be "
                 "readable by other users when the farm runs as root (install it outside "
                 "/root), or set agent.path to a copy that is",
                 cmd.argv[0], farm_error_last());
        rc = FARM_ENOTFOUND;
    } else if (sr.exit_code != 0) {
        char line[320];
        first_line(line, sizeof(line), co.text);
        snprintf(out, n,
                 "%s %s exits %d inside the sandbox%s%s%s; the sandbox sees the system folders "
                 "(/usr, /bin, /lib*, /etc, /opt) and the program's own package, so install the "
                 "CLI where it can be found (or set %s to its program) and run `farm doctor`",
                 cmd.argv[0], is_command ? "(looked up)" : "--version", sr.exit_code,
                 line[0] ? " (" : "", line, line[0] ? ")" : "",
                 is_command ? "agent.command's first word" : "agent.path");
        rc = FARM_ENOTFOUND;
    } else {
        char line[320];
        first_line(line, sizeof(line), co.text);
        snprintf(out, n, "%s%s%s", cmd.argv[0], line[0] ? ": " : "", line);
        rc = 0;
    }
    agent_cmd_free(&cmd);
    return rc;
}

#define CHECK_PRESETS_MAX 32 /* distinct presets checked; there are fewer than that */

/* Add preset to list (n of them, at most CHECK_PRESETS_MAX) unless it is
 * there already (case-insensitive). */
static void preset_add(const char **list, size_t *n, const char *preset)
{
    if (!preset || !*preset)
        return;
    for (size_t i = 0; i < *n; i++)
        if (!strcasecmp(list[i], preset))
            return;
    if (*n < CHECK_PRESETS_MAX)
        list[(*n)++] = preset;
}

int agent_program_check_all(const config *cfg, agent_check_fn fn, void *arg)
{
    const char *list[CHECK_PRESETS_MAX];
    size_t n = 0;
    int first = 0;

    assert(cfg && fn);
    const char *dflt = config_agent_default(cfg);
    if (cfg->nrepos == 0)
        preset_add(list, &n, dflt);
    for (size_t r = 0; r < cfg->nrepos; r++) {
        const config_repo *repo = &cfg->repos[r];
        if (repo->nagents == 0)
            preset_add(list, &n, dflt);
        for (size_t i = 0; i < repo->nagents; i++)
            preset_add(list, &n, repo->agents[i]);
    }
    const char *done[CHECK_PRESETS_MAX];
    size_t ndone = 0, checked = 0;
    for (size_t i = 0; i < n; i++) {
        config one;
        char line[2048];
        int other = config_agent_for(&one, cfg, list[i]) == 1 && strcasecmp(list[i], dflt) != 0;
        /* "auto" and the preset it picks are one program */
        const char *name = agent_preset_resolve(&one);
        size_t before = ndone;
        preset_add(done, &ndone, name);
        if (ndone == before)
            continue;
        checked++;
        int rc = agent_program_check(line, sizeof(line), &one);
        if (rc && other) {
            /* agent.* names the configured preset's program, not this one's */
            size_t len = strlen(line);
            snprintf(line + len, sizeof(line) - len,
                     " (%s is allowed by repos[].agents, not agent.preset: agent.path does not "
                     "apply to it; put its CLI on the farm's PATH, or take it out of "
                     "repos[].agents)",
                     name);
        }
        fn(name, rc, line, arg);
        if (rc && !first)
            first = rc;
    }
    return first ? first : (int)checked;
}
