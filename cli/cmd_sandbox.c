/*
 * cmd_sandbox.c - `farm sandbox run`: run one command exactly as an agent
 * would be run (same isolation, limits and network policy, defaults from the
 * config), so admins can try what an agent can and cannot do. The exit
 * status is the command's; 128+N when signal N ended it; 124 on timeout.
 */
#include "cli.h"

#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "sandbox/sandbox.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ALLOW SANDBOX_MAX_ALLOW
#define MAX_ENV   64

static sandbox *volatile running;
static volatile sig_atomic_t stopped_by;

static void on_signal(int sig)
{
    stopped_by = sig;
    sandbox *s = running;
    if (s)
        sandbox_stop(s); /* an atomic store and a write(): signal-safe */
}

static void write_all(int fd, const char *d, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, d, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        d += w;
        n -= (size_t)w;
    }
}

static void on_output(void *ctx, sandbox_stream which, const char *d, size_t n)
{
    (void)ctx;
    write_all(which == SANDBOX_STDOUT ? 1 : 2, d, n);
}

static void on_proxy(void *ctx, int allowed, const char *host, int port, const char *reason)
{
    (void)ctx;
    fprintf(stderr, "farm sandbox: proxy %s %s:%d (%s)\n", allowed ? "allowed" : "denied", host,
            port, reason);
}

/* A non-negative int option value, or -1. */
static long long number(const char *s, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0 || v > max)
        return -1;
    return v;
}

static int run(int argc, char **argv)
{
    const char *config_path = NULL, *dir = NULL, *net = NULL;
    const char *allow[MAX_ALLOW + 1];
    const char *env[MAX_ENV + 1];
    size_t nallow = 0, nenv = 0;
    long long memory = -1, pids = -1, timeout = -1, disk = -1, cpu = -1;
    int stats = 0, i = 2;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "--stats")) {
            stats = 1;
            continue;
        }
        if (a[0] != '-' || !v) {
            fprintf(stderr, "farm sandbox run: %s\n",
                    a[0] == '-' ? "option needs a value" : "the command goes after --");
            return cli_usage("sandbox");
        }
        i++;
        if (!strcmp(a, "--config")) {
            config_path = v;
        } else if (!strcmp(a, "--network")) {
            net = v;
        } else if (!strcmp(a, "--allow")) {
            if (nallow >= MAX_ALLOW) {
                fprintf(stderr, "farm sandbox run: more than %d --allow\n", MAX_ALLOW);
                return 2;
            }
            allow[nallow++] = v;
        } else if (!strcmp(a, "--env")) {
            if (nenv >= MAX_ENV) {
                fprintf(stderr, "farm sandbox run: more than %d --env\n", MAX_ENV);
                return 2;
            }
            env[nenv++] = v;
        } else if (!strcmp(a, "--dir")) {
            dir = v;
        } else if (!strcmp(a, "--memory-mb")) {
            memory = number(v, 1 << 20);
        } else if (!strcmp(a, "--pids")) {
            pids = number(v, 1 << 22);
        } else if (!strcmp(a, "--timeout")) {
            timeout = number(v, 7 * 86400);
        } else if (!strcmp(a, "--disk-mb")) {
            disk = number(v, 1 << 24);
        } else if (!strcmp(a, "--cpu-percent")) {
            cpu = number(v, 100000);
        } else {
            fprintf(stderr, "farm sandbox run: unknown option %s\n", a);
            return cli_usage("sandbox");
        }
        if ((!strcmp(a, "--memory-mb") && memory < 0) || (!strcmp(a, "--pids") && pids < 0) ||
            (!strcmp(a, "--timeout") && timeout < 0) || (!strcmp(a, "--disk-mb") && disk < 0) ||
            (!strcmp(a, "--cpu-percent") && cpu < 0)) {
            fprintf(stderr, "farm sandbox run: %s needs a non-negative number, not '%.40s'\n", a,
                    v);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "farm sandbox run: no command given\n");
        return cli_usage("sandbox");
    }
    allow[nallow] = NULL;
    env[nenv] = NULL;

    config *cfg = NULL;
    char *errors = NULL;
    int rc = config_path ? config_load(&cfg, config_path, &errors) : config_default(&cfg);
    if (rc < 0) {
        fprintf(stderr, "farm sandbox run: %s\n%s", farm_error_last(), errors ? errors : "");
        free(errors);
        return 2;
    }
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = (const char *const *)argv + i;
    o.unsafe_none = cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none");
    int n = sandbox_net_parse(net ? net : cfg->sandbox.network ? cfg->sandbox.network : "none");
    if (n < 0) {
        fprintf(stderr, "farm sandbox run: --network is none or allowlist, not '%.40s'\n", net);
        config_free(cfg);
        return 2;
    }
    o.network = (sandbox_net)n;
    o.allow =
        nallow || !cfg->sandbox.allow_hosts ? allow : (const char *const *)cfg->sandbox.allow_hosts;
    char absdir[PATH_MAX];
    if (dir) {
        if (!realpath(dir, absdir)) {
            fprintf(stderr, "farm sandbox run: --dir %.200s: %s\n", dir, strerror(errno));
            config_free(cfg);
            return 2;
        }
        o.dir = absdir;
    }
    o.env = env;
    o.memory_mb = memory >= 0 ? (int)memory : cfg->sandbox.memory_mb;
    o.pids = pids >= 0 ? (int)pids : cfg->sandbox.pids;
    o.timeout_ms = (timeout >= 0 ? timeout : cfg->sandbox.wall_timeout_s) * 1000LL;
    o.disk_mb = disk >= 0 ? (int)disk : cfg->sandbox.disk_mb;
    o.cpu_percent = cpu >= 0 ? (int)cpu : 0;
    o.on_output = on_output;
    o.on_proxy = on_proxy;
    if (o.unsafe_none) {
        log_warn("SANDBOX DISABLED: sandbox.mode is \"unsafe-none\"; the command runs without "
                 "isolation");
        o.network = SANDBOX_NET_HOST;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sandbox *s = NULL;
    sandbox_result r;
    rc = sandbox_start(&s, &o);
    if (rc < 0) {
        fprintf(stderr, "farm sandbox run: %s\n", farm_error_last());
        config_free(cfg);
        return rc == FARM_EINVALID ? 2 : 125;
    }
    running = s;
    rc = sandbox_wait(s, &r);
    running = NULL;
    sandbox_free(s);
    config_free(cfg);
    if (rc < 0) {
        fprintf(stderr, "farm sandbox run: %s\n", farm_error_last());
        return 125;
    }
    if (stats)
        fprintf(stderr,
                "farm-sandbox-stats: {\"exit_code\": %d, \"signal\": %d, \"timed_out\": %d, "
                "\"oom_killed\": %d, \"pids_limited\": %d, \"stopped\": %d, \"wall_ms\": %lld, "
                "\"cpu_ms\": %lld, \"peak_memory_kb\": %lld, \"stdout_bytes\": %llu, "
                "\"stderr_bytes\": %llu, \"output_truncated\": %d}\n",
                r.exit_code, r.term_signal, r.timed_out, r.oom_killed, r.pids_limited, r.stopped,
                (long long)r.wall_ms, (long long)r.cpu_ms, (long long)r.peak_memory_kb,
                (unsigned long long)r.stdout_bytes, (unsigned long long)r.stderr_bytes,
                r.output_truncated);
    if (r.timed_out) {
        fprintf(stderr, "farm sandbox run: timed out after %lld s\n",
                (long long)(o.timeout_ms / 1000));
        return 124;
    }
    if (r.stopped) /* we were asked to stop: say by what, as a shell would */
        return 128 + (stopped_by ? stopped_by : SIGTERM);
    if (r.exit_code >= 0)
        return r.exit_code;
    return 128 + (r.term_signal ? r.term_signal : SIGKILL);
}

static int cmd(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return run(argc, argv);
    return cli_usage("sandbox");
}

CLI_COMMAND("sandbox", "run one command in the agent sandbox",
            "farm sandbox run [--config FILE] [--network none|allowlist] [--allow HOST[:PORT]]...\n"
            "                 [--dir DIR] [--env NAME=VALUE]... [--memory-mb N] [--pids N]\n"
            "                 [--cpu-percent N] [--disk-mb N] [--timeout S] [--stats]\n"
            "                 -- CMD [ARG...]\n"
            "  Runs CMD as an agent would be run. DIR is bound read-write at /work (when the\n"
            "  farm runs as root, its tree first gets ACL entries for the sandbox's uid).\n"
            "  Exit status: the command's; 128+N for signal N; 124 on timeout.",
            cmd)
