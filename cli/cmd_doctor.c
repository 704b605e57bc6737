/*
 * cmd_doctor.c - `farm doctor`: checks what isolation agents would get on
 * this host (bubblewrap, user namespaces, seccomp, cgroup delegation) and
 * says so plainly, and runs the configured agent's program inside the
 * sandbox (--version). Exits 1 when agents could not be run isolated and the
 * config does not say sandbox.mode "unsafe-none", or when the agent's
 * program is not there inside, with the reason and the fix.
 */
#include "cli.h"
#include "base/error.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/run/agent.h"
#include "sandbox/image.h"
#include "sandbox/sandbox.h"

#include <limits.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *yes(int v)
{
    return v ? "ok" : "MISSING";
}

/* Which images are unpacked (and how big), and what each repository's
 * image is waiting for. */
/* One preset's program check (agent_program_check_all()): "agent program
 * (codex)  ok: ..." or "MISSING: ...". */
static void print_agent_check(const char *preset, int rc, const char *line, void *arg)
{
    char label[64];
    (void)arg;
    snprintf(label, sizeof(label), "agent program (%s)", preset);
    printf("  %-22s %s%s\n", label, rc == 0 ? "ok: " : "MISSING: ", line);
}

static void print_images(const config *cfg)
{
    char cache[PATH_MAX + 16];
    char *dd = realpath(cfg->data_dir, NULL);
    snprintf(cache, sizeof(cache), "%s/images", dd ? dd : cfg->data_dir);
    free(dd);
    sandbox_image_entry *v = NULL;
    size_t n = 0;
    printf("\nimages (%s; farm image ls, farm image prune)\n", cache);
    if (sandbox_image_list(&v, &n, cache) < 0)
        printf("  CANNOT BE READ: %s\n", farm_error_last());
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        printf("  unpacked %.19s  %8.1f MiB  %s\n", v[i].digest, (double)v[i].size / (1 << 20),
               v[i].source ? v[i].source : "?");
        total += v[i].size;
    }
    printf("  %zu unpacked, %.1f MiB in all\n", n, (double)total / (1 << 20));
    for (size_t r = 0; r < cfg->nrepos; r++) {
        const char *ref = cfg->repos[r].image;
        char d[SANDBOX_IMAGE_DIGEST_MAX];
        if (!ref)
            continue;
        if (sandbox_image_ref_kind(ref) == SANDBOX_IMAGE_ROOTFS) {
            printf("  %s: %s (a directory, used in place)\n", cfg->repos[r].name, ref);
            continue;
        }
        if (sandbox_image_digest(d, ref) < 0) {
            printf("  %s: CANNOT BE READ: %s\n", cfg->repos[r].name, farm_error_last());
            continue;
        }
        size_t i = 0;
        while (i < n && strcmp(v[i].digest, d) != 0)
            i++;
        printf("  %s: %s %s\n", cfg->repos[r].name, ref,
               i < n ? "unpacked" : "not unpacked yet (its first run unpacks it)");
    }
    sandbox_image_list_free(v, n);
}

static int cmd(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config_path = argv[++i];
        else
            return cli_usage("doctor");
    }
    config *cfg = NULL;
    char *errors = NULL;
    int rc = config_path ? config_load(&cfg, config_path, &errors) : config_default(&cfg);
    if (rc < 0) {
        fprintf(stderr, "farm doctor: %s\n%s", farm_error_last(), errors ? errors : "");
        free(errors);
        return 2;
    }
    int unsafe = cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none");
    sandbox_probe_result p;
    sandbox_probe(&p, NULL);
    const char *cg = p.cgroup_version == 2 ? "v2" : p.cgroup_version == 1 ? "v1" : "none";

    /* allowlist mode: this binary runs inside as the proxy's listener */
    int allowlist = 0;
    if (p.ok) {
        const char *argv_true[] = {"true", NULL};
        sandbox_opts o = SANDBOX_OPTS_INIT;
        o.argv = argv_true;
        o.network = SANDBOX_NET_ALLOWLIST;
        o.timeout_ms = 10000;
        sandbox_result r;
        allowlist = sandbox_run(&r, &o) == 0 && r.exit_code == 0;
    }

    printf("sandbox checks\n");
    printf("  %-22s %s%s%s%s\n", "bubblewrap", yes(p.bwrap_found), p.bwrap_found ? " (" : "",
           p.bwrap_version, p.bwrap_found ? ")" : "");
    printf("  %-22s %s\n", "user namespaces", yes(p.userns));
    printf("  %-22s %s\n", "sandbox starts", yes(p.bwrap_works));
    printf("  %-22s %s\n", "seccomp filter", yes(p.seccomp));
    printf("  %-22s %s\n", "rlimits", yes(p.rlimits));
    printf("  %-22s %s\n", "network none", p.ok ? "ok (empty network namespace)" : "MISSING");
    printf("  %-22s %s\n", "network allowlist",
           allowlist ? "ok (egress proxy)" : "MISSING (the egress proxy's helper did not run)");
    printf("  %-22s %s\n", "cgroup delegation", cg);
    printf("  %-22s %s\n", "memory limit", p.cgroup_memory ? "enforced (cgroup)" : "not available");
    printf("  %-22s %s\n", "pids limit", p.cgroup_pids ? "enforced (cgroup)" : "RLIMIT_NPROC only");
    printf("  %-22s %s\n", "cpu limit", p.cgroup_cpu ? "enforced (cgroup)" : "not available");
    printf("  %-22s %s\n", "running as",
           geteuid() == 0 ? "root: each sandbox runs as an unprivileged uid of its own"
                          : "an ordinary user: sandboxes run as that user");
    /* as root, each agent runs as a uid of its own, which must reach the data directory */
    int reach = unsafe || farm_reach_check(cfg) == 0;
    char reach_problem[1024];
    snprintf(reach_problem, sizeof(reach_problem), "%s", reach ? "" : farm_error_last());
    printf("  %-22s %s (%s)\n", "data directory",
           unsafe  ? "not checked"
           : reach ? "ok"
                   : "OUT OF REACH",
           cfg->data_dir);
    /* the program of each preset a repository may run, inside the sandbox
     * as a run would */
    int agent_ok = 1;
    if (p.ok || unsafe)
        agent_ok = agent_program_check_all(cfg, print_agent_check, NULL) >= 0;
    else
        printf("  %-22s %s\n", "agent program", "not checked: no sandbox");
    print_images(cfg);
    printf("\nwhat agents get\n");
    if (!reach && p.ok) {
        printf("  NOTHING: every run would fail at its agent step.\n  problem: %s\n",
               reach_problem);
    } else if (unsafe) {
        printf("  NO ISOLATION: sandbox.mode is \"unsafe-none\". Agents run with the farm's own\n"
               "  rights, files, secrets in reach and network. Use only on a throwaway machine.\n");
    } else if (p.ok) {
        printf("  namespaces user, pid, ipc, uts, net, cgroup, mount; system read-only; only the\n"
               "  worktree writable; private /tmp; a HOME per run; seccomp; no capabilities;\n"
               "  network %s (setup phase: %s); limits: wall %ds, memory %d MiB%s, pids %d%s,\n"
               "  disk %d MiB (tmpfs and file size)\n",
               cfg->sandbox.network ? cfg->sandbox.network : "none",
               cfg->sandbox.setup_network ? cfg->sandbox.setup_network : "none",
               cfg->sandbox.wall_timeout_s, cfg->sandbox.memory_mb,
               p.cgroup_memory ? "" : " (NOT enforced: no memory cgroup)", cfg->sandbox.pids,
               p.cgroup_pids ? "" : " (rlimit)", cfg->sandbox.disk_mb);
    } else {
        printf("  NOTHING: the farm refuses to run agents here.\n  problem: %s\n", p.problem);
    }
    if (!reach && !p.ok)
        printf("  and: %s\n", reach_problem);
    config_free(cfg);
    if (!agent_ok)
        printf("  and the agent's program is not there: see \"agent program\" above.\n");
    return ((p.ok && reach) || unsafe) && agent_ok ? 0 : 1;
}

CLI_COMMAND("doctor", "check what isolation agents would get on this host",
            "farm doctor [--config FILE]", cmd)
