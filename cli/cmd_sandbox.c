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
#include "sandbox/image.h"
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

/* What the command line asked for; -1 for a number: the config's value. */
typedef struct run_args {
    const char *config_path, *dir, *net;
    const char *image; /* --image: the root filesystem (sandbox/image.h), or NULL */
    const char *allow[MAX_ALLOW + 1];
    const char *env[MAX_ENV + 1];
    size_t nallow, nenv;
    long long memory, pids, timeout, disk, cpu;
    int stats;
    char **cmd; /* the command and its arguments, after -- */
} run_args;

/* Take one option and its value v. Returns 0, or the exit status (the
 * problem printed). */
static int take_option(run_args *a, const char *opt, const char *v)
{
    long long *num = NULL, max = 0;
    if (!strcmp(opt, "--config")) {
        a->config_path = v;
    } else if (!strcmp(opt, "--network")) {
        a->net = v;
    } else if (!strcmp(opt, "--allow")) {
        if (a->nallow >= MAX_ALLOW) {
            fprintf(stderr, "farm sandbox run: more than %d --allow\n", MAX_ALLOW);
            return 2;
        }
        a->allow[a->nallow++] = v;
    } else if (!strcmp(opt, "--env")) {
        if (a->nenv >= MAX_ENV) {
            fprintf(stderr, "farm sandbox run: more than %d --env\n", MAX_ENV);
            return 2;
        }
        a->env[a->nenv++] = v;
    } else if (!strcmp(opt, "--dir")) {
        a->dir = v;
    } else if (!strcmp(opt, "--image")) {
        a->image = v;
    } else if (!strcmp(opt, "--memory-mb")) {
        num = &a->memory, max = 1 << 20;
    } else if (!strcmp(opt, "--pids")) {
        num = &a->pids, max = 1 << 22;
    } else if (!strcmp(opt, "--timeout")) {
        num = &a->timeout, max = 7 * 86400;
    } else if (!strcmp(opt, "--disk-mb")) {
        num = &a->disk, max = 1 << 24;
    } else if (!strcmp(opt, "--cpu-percent")) {
        num = &a->cpu, max = 100000;
    } else {
        fprintf(stderr, "farm sandbox run: unknown option %s\n", opt);
        return cli_usage("sandbox");
    }
    if (num && (*num = number(v, max)) < 0) {
        fprintf(stderr, "farm sandbox run: %s needs a non-negative number, not '%.40s'\n", opt, v);
        return 2;
    }
    return 0;
}

/* Parse `farm sandbox run [OPTION...] -- CMD [ARG...]` (argv[2] on).
 * Returns 0, or the exit status (the problem printed). */
static int parse_args(run_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->memory = a->pids = a->timeout = a->disk = a->cpu = -1;
    int i = 2;
    for (; i < argc; i++) {
        const char *opt = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--")) {
            i++;
            break;
        }
        if (!strcmp(opt, "--stats")) {
            a->stats = 1;
            continue;
        }
        if (opt[0] != '-' || !v) {
            fprintf(stderr, "farm sandbox run: %s\n",
                    opt[0] == '-' ? "option needs a value" : "the command goes after --");
            return cli_usage("sandbox");
        }
        i++;
        int status = take_option(a, opt, v);
        if (status)
            return status;
    }
    if (i >= argc) {
        fprintf(stderr, "farm sandbox run: no command given\n");
        return cli_usage("sandbox");
    }
    a->allow[a->nallow] = NULL;
    a->env[a->nenv] = NULL;
    a->cmd = argv + i;
    return 0;
}

/* --config FILE, or the defaults. Returns 0, or the exit status. */
static int load_config(config **cfg, const char *path)
{
    char *errors = NULL;
    int rc = path ? config_load(cfg, path, &errors) : config_default(cfg);
    if (rc < 0) {
        fprintf(stderr, "farm sandbox run: %s\n%s", farm_error_last(), errors ? errors : "");
        free(errors);
        return 2;
    }
    return 0;
}

/* The sandbox's options: the command line over the config. absdir (PATH_MAX
 * bytes) holds --dir made absolute. Returns 0, or the exit status. */
static int make_opts(sandbox_opts *o, const run_args *a, const config *cfg, char *absdir)
{
    o->argv = (const char *const *)a->cmd;
    o->unsafe_none = cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none");
    const char *net = a->net ? a->net : cfg->sandbox.network ? cfg->sandbox.network : "none";
    int n = sandbox_net_parse(net);
    if (n < 0) {
        fprintf(stderr, "farm sandbox run: --network is none or allowlist, not '%.40s'\n", a->net);
        return 2;
    }
    o->network = (sandbox_net)n;
    o->allow = a->nallow || !cfg->sandbox.allow_hosts
                   ? a->allow
                   : (const char *const *)cfg->sandbox.allow_hosts;
    if (a->dir) {
        if (!realpath(a->dir, absdir)) {
            fprintf(stderr, "farm sandbox run: --dir %.200s: %s\n", a->dir, strerror(errno));
            return 2;
        }
        o->dir = absdir;
    }
    o->env = a->env;
    o->memory_mb = a->memory >= 0 ? (int)a->memory : cfg->sandbox.memory_mb;
    o->pids = a->pids >= 0 ? (int)a->pids : cfg->sandbox.pids;
    o->timeout_ms = (a->timeout >= 0 ? a->timeout : cfg->sandbox.wall_timeout_s) * 1000LL;
    o->disk_mb = a->disk >= 0 ? (int)a->disk : cfg->sandbox.disk_mb;
    o->cpu_percent = a->cpu >= 0 ? (int)a->cpu : 0;
    o->on_output = on_output;
    o->on_proxy = on_proxy;
    if (o->unsafe_none) {
        log_warn("SANDBOX DISABLED: sandbox.mode is \"unsafe-none\"; the command runs without "
                 "isolation");
        o->network = SANDBOX_NET_HOST;
    }
    return 0;
}

/* --image: the image unpacked (the first time) under <data_dir>/images, as a
 * run of a repository with repos[].image gets it. Returns 0, or the exit
 * status. */
static int image_root(char **out, const char *ref, const config *cfg)
{
    char cache[PATH_MAX + 16];
    char *dd = realpath(cfg->data_dir, NULL);
    if (!dd) {
        fprintf(stderr, "farm sandbox run: --image needs the data directory %s: %s\n",
                cfg->data_dir, strerror(errno));
        return 2;
    }
    snprintf(cache, sizeof(cache), "%s/images", dd);
    free(dd);
    if (sandbox_image_root(out, cache, ref) < 0) {
        fprintf(stderr, "farm sandbox run: %s\n", farm_error_last());
        return 2;
    }
    return 0;
}

/* SIGINT, SIGTERM and SIGHUP stop the sandbox (on_signal()). */
static void catch_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* Run it to the end, stoppable by the signals. Returns 0, or the exit
 * status. */
static int run_sandbox(sandbox_result *r, const sandbox_opts *o)
{
    sandbox *s = NULL;
    int rc = sandbox_start(&s, o);
    if (rc < 0) {
        fprintf(stderr, "farm sandbox run: %s\n", farm_error_last());
        return rc == FARM_EINVALID ? 2 : 125;
    }
    running = s;
    rc = sandbox_wait(s, r);
    running = NULL;
    sandbox_free(s);
    if (rc < 0) {
        fprintf(stderr, "farm sandbox run: %s\n", farm_error_last());
        return 125;
    }
    return 0;
}

static void print_stats(const sandbox_result *r)
{
    fprintf(stderr,
            "farm-sandbox-stats: {\"exit_code\": %d, \"signal\": %d, \"timed_out\": %d, "
            "\"oom_killed\": %d, \"pids_limited\": %d, \"stopped\": %d, \"wall_ms\": %lld, "
            "\"cpu_ms\": %lld, \"peak_memory_kb\": %lld, \"stdout_bytes\": %llu, "
            "\"stderr_bytes\": %llu, \"output_truncated\": %d}\n",
            r->exit_code, r->term_signal, r->timed_out, r->oom_killed, r->pids_limited, r->stopped,
            (long long)r->wall_ms, (long long)r->cpu_ms, (long long)r->peak_memory_kb,
            (unsigned long long)r->stdout_bytes, (unsigned long long)r->stderr_bytes,
            r->output_truncated);
}

/* The command's status; 124 on timeout; 128+N for signal N. */
static int exit_status(const sandbox_result *r, const sandbox_opts *o)
{
    if (r->timed_out) {
        fprintf(stderr, "farm sandbox run: timed out after %lld s\n",
                (long long)(o->timeout_ms / 1000));
        return 124;
    }
    if (r->stopped) /* we were asked to stop: say by what, as a shell would */
        return 128 + (stopped_by ? stopped_by : SIGTERM);
    if (r->exit_code >= 0)
        return r->exit_code;
    return 128 + (r->term_signal ? r->term_signal : SIGKILL);
}

static int run(int argc, char **argv)
{
    run_args a;
    int status = parse_args(&a, argc, argv);
    if (status)
        return status;
    config *cfg = NULL;
    status = load_config(&cfg, a.config_path);
    if (status)
        return status;
    sandbox_opts o = SANDBOX_OPTS_INIT;
    char absdir[PATH_MAX];
    sandbox_result r;
    char *root = NULL;
    status = make_opts(&o, &a, cfg, absdir);
    if (status == 0 && a.image)
        status = image_root(&root, a.image, cfg);
    o.root_dir = root;
    if (status == 0) {
        catch_signals();
        status = run_sandbox(&r, &o);
    }
    config_free(cfg); /* o points into it until here */
    free(root);
    if (status)
        return status;
    if (a.stats)
        print_stats(&r);
    return exit_status(&r, &o);
}

static int cmd(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return run(argc, argv);
    return cli_usage("sandbox");
}

CLI_COMMAND("sandbox", "run one command in the agent sandbox",
            "farm sandbox run [--config FILE] [--network none|allowlist] [--allow HOST[:PORT]]...\n"
            "                 [--dir DIR] [--image REF] [--env NAME=VALUE]... [--memory-mb N]\n"
            "                 [--pids N] [--cpu-percent N] [--disk-mb N] [--timeout S] [--stats]\n"
            "                 -- CMD [ARG...]\n"
            "  Runs CMD as an agent would be run. DIR is bound read-write at /work (when the\n"
            "  farm runs as root, its tree first gets ACL entries for the sandbox's uid).\n"
            "  REF (oci:DIR[:TAG], oci-archive:FILE[:TAG] or rootfs:DIR) is the root, as\n"
            "  repos[].image gives it (unpacked under the data directory the first time).\n"
            "  Exit status: the command's; 128+N for signal N; 124 on timeout.",
            cmd)
