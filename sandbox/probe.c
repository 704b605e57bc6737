/*
 * probe.c - what isolation this host can give, for `farm doctor` and the
 * line the farm logs at start-up.
 *
 * Nothing here is assumed from version numbers: bubblewrap is run once with
 * the full namespace set and the seccomp filter, and each cgroup limit is
 * set on a scratch cgroup, so the answer is what really works.
 */
#include "internal.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void collect(void *ctx, sandbox_stream which, const char *d, size_t n)
{
    (void)which;
    buf_append(ctx, d, n);
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "re");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

int sandbox_probe(sandbox_probe_result *out, const char *bwrap)
{
    memset(out, 0, sizeof(*out));
    out->rlimits = 1;
    const char *bw = bwrap ? bwrap : "bwrap";
    buf text = BUF_INIT(4096);

    /* bubblewrap present, and which version */
    const char *vargv[] = {bw, "--version", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = vargv;
    o.unsafe_none = 1;
    o.on_output = collect;
    o.output_ctx = &text;
    o.timeout_ms = 10000;
    sandbox_result r;
    if (sandbox_run(&r, &o) == 0 && r.exit_code == 0) {
        out->bwrap_found = 1;
        const char *t = buf_cstr(&text);
        const char *v = strstr(t, "bubblewrap ");
        snprintf(out->bwrap_version, sizeof(out->bwrap_version), "%.*s",
                 (int)strcspn(v ? v + 11 : t, "\n"), v ? v + 11 : t);
    }
    buf_free(&text);

    /* user namespaces: the knobs distributions use to turn them off */
    long max_ns = read_long("/proc/sys/user/max_user_namespaces");
    long unpriv = read_long("/proc/sys/kernel/unprivileged_userns_clone");
    long apparmor = read_long("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    out->userns = max_ns != 0 && unpriv != 0 && apparmor != 1;

    /* the filter builds (loading is checked by the real run below) */
    int fd = -1;
    if (sbx_seccomp_fd(&fd) == 0) {
        close(fd);
        out->seccomp = 1;
    }

    sbx_cgroup_caps caps;
    sbx_cgroup_detect(&caps);
    if (caps.version) {
        sbx_cgroup *cg = NULL;
        if (sbx_cgroup_create(&cg, caps.memory ? 64 : 0, caps.pids ? 64 : 0, caps.cpu ? 100 : 0) ==
                0 &&
            cg) {
            out->cgroup_version = caps.version;
            out->cgroup_memory = caps.memory;
            out->cgroup_pids = caps.pids;
            out->cgroup_cpu = caps.cpu;
        }
        sbx_cgroup_destroy(cg);
    }

    /* the real thing: every namespace, the filter, the uid drop */
    if (out->bwrap_found) {
        const char *targv[] = {"true", NULL};
        sandbox_opts t = SANDBOX_OPTS_INIT;
        t.argv = targv;
        t.bwrap = bwrap;
        t.timeout_ms = 10000;
        buf err = BUF_INIT(2048);
        t.on_output = collect;
        t.output_ctx = &err;
        int rc = sandbox_run(&r, &t);
        out->bwrap_works = rc == 0 && r.exit_code == 0;
        if (!out->bwrap_works)
            snprintf(out->problem, sizeof(out->problem),
                     "bubblewrap cannot start a sandbox here: %s. Enable unprivileged user "
                     "namespaces (sysctl user.max_user_namespaces=15000; on Ubuntu also "
                     "kernel.apparmor_restrict_unprivileged_userns=0), or set sandbox.mode "
                     "to \"unsafe-none\" to run agents without isolation",
                     rc < 0              ? farm_error_last()
                     : buf_cstr(&err)[0] ? buf_cstr(&err)
                                         : "exit status not 0");
        buf_free(&err);
    } else {
        snprintf(out->problem, sizeof(out->problem),
                 "bubblewrap (%s) is not installed: apt-get install bubblewrap, or set "
                 "sandbox.mode to \"unsafe-none\" to run agents without isolation",
                 bw);
    }
    if (out->bwrap_works && !out->seccomp)
        snprintf(out->problem, sizeof(out->problem),
                 "the seccomp filter cannot be built (libseccomp): reinstall libseccomp2");
    out->ok = out->bwrap_works && out->seccomp;
    if (out->ok) {
        out->userns = 1;
        size_t n = strcspn(out->problem, "\n");
        out->problem[n] = '\0';
    }
    return out->ok ? 0 : FARM_EUNSUPPORTED;
}

void sandbox_probe_log(const sandbox_probe_result *p, int unsafe_none)
{
    if (unsafe_none) {
        log_warn("SANDBOX DISABLED: sandbox.mode is \"unsafe-none\"; agents run with the farm's "
                 "own rights, its files, its network and no limits but the timeout");
        return;
    }
    const char *cg = p->cgroup_version == 2 ? "v2" : p->cgroup_version == 1 ? "v1" : "none";
    if (!p->ok) {
        log_error("sandbox unavailable", "problem", p->problem);
        return;
    }
    log_info("sandbox isolation", "bubblewrap", p->bwrap_version, "namespaces",
             "user,pid,ipc,uts,net,cgroup,mount", "seccomp", "on", "rlimits",
             "nproc,nofile,fsize,core", "cgroup", cg, "memory_limit",
             p->cgroup_memory ? "enforced" : "not available", "pids_limit",
             p->cgroup_pids ? "enforced" : "rlimit only", "cpu_limit",
             p->cgroup_cpu ? "enforced" : "not available");
}
