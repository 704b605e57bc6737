/*
 * sandbox.c - run one command under bubblewrap, with limits, and watch it.
 *
 * The parent builds everything before it forks: bubblewrap's argument list
 * and the environment (args.c), the seccomp filter (a memfd), the cgroup,
 * the pipes and, in allowlist mode, the egress proxy. The child then runs one linear setup
 * chain that allocates nothing (new session, join the cgroup, rlimits, drop
 * root, parent-death signal, descriptors) and execs bubblewrap; a failed step
 * is reported back through a close-on-exec pipe. The parent streams stdout
 * and stderr to the caller while it waits on a pidfd, the deadline and a stop
 * pipe; a timeout or a stop kills the namespace's init, which takes every
 * process in the pid namespace with it, daemons included, and the cgroup
 * is emptied as a second line. Inside, farm-sandbox-helper (helper/) runs
 * first and starts the command; it holds the read end of the farm's
 * lifeline pipe and empties the sandbox when the farm dies. A prepared
 * sandbox is the same spawn with the helper waiting for the command
 * (sandbox_launch()).
 */
#include "internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_MAX_OUTPUT (64u << 20)

/* Setup steps the child reports on failure, with errno. */
enum {
    STEP_SIGNALS = 1,
    STEP_SETSID,
    STEP_CGROUP,
    STEP_RLIMIT,
    STEP_SETGROUPS,
    STEP_SETGID,
    STEP_SETUID,
    STEP_PDEATHSIG,
    STEP_FDS,
    STEP_CHDIR,
    STEP_EXEC
};

static const char *step_name(int step)
{
    static const char *const names[] = {"?",           "reset signals", "setsid",
                                        "join cgroup", "set rlimits",   "setgroups",
                                        "setgid",      "setuid",        "parent-death signal",
                                        "descriptors", "chdir",         "exec"};
    return step > 0 && step <= STEP_EXEC ? names[step] : names[0];
}

struct sandbox {
    const sandbox_opts *o;
    pid_t pid;  /* our child: bubblewrap's outer process (or the command, unsafe) */
    pid_t pgid; /* its process group (it calls setsid), for unsafe mode */
    int pidfd;
    int out_fd, err_fd, info_fd;
    int stop_r, stop_w; /* a byte on stop_w asks the waiting thread to stop */
    atomic_int stop_requested;
    uid_t uid; /* the host uid and gid it runs as, when the farm is root */
    gid_t gid;
    int cmd_w;    /* prepared: our end of the helper's command socket, until launch */
    int prepared; /* spawned ahead by sandbox_prepare() */
    int launched;
    int waited;
    int ns_init; /* a pidfd of the pid namespace's init, -1 until known (a pidfd, so that
                    a late kill cannot hit a recycled pid) */
    int killed;
    int64_t start_ms;
    sbx_cgroup *cg;
    sbx_proxy *proxy;
    char tmpdir[PATH_MAX]; /* per-run directory for the proxy socket, or "" */
    buf info;
};

/* --- the child ---------------------------------------------------------- */

typedef struct child_plan {
    char *const *argv, *const *envp;
    const char *exe;
    int fds[3];     /* stdin, stdout, stderr */
    int seccomp_fd; /* -1 when unsafe */
    int info_fd;
    int cmd_fd;    /* prepared: the helper's end of the command socket, else -1 */
    int lifeline;  /* the read end of the lifeline pipe, else -1 (unsafe) */
    int report_fd; /* close-on-exec: {step, errno} on failure */
    int cg_fds[4];
    int ncg;
    struct rlimit nproc, nofile, fsize;
    int drop; /* become uid/gid below */
    uid_t uid;
    gid_t gid;
    pid_t parent;
    const char *chdir_to;
} child_plan;

static void __attribute__((noreturn)) child_fail(const child_plan *p, int step)
{
    int msg[2] = {step, errno};
    ssize_t w = write(p->report_fd, msg, sizeof(msg));
    (void)w;
    _exit(127);
}

/* Runs between fork and exec: async-signal-safe calls only, no allocation. */
static void __attribute__((noreturn)) child_run(const child_plan *p)
{
    sigset_t all;
    sigemptyset(&all);
    if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
        child_fail(p, STEP_SIGNALS);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    if (setsid() < 0)
        child_fail(p, STEP_SETSID);
    for (int i = 0; i < p->ncg; i++)
        if (write(p->cg_fds[i], "0", 1) != 1)
            child_fail(p, STEP_CGROUP);
    struct rlimit core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_NOFILE, &p->nofile) < 0 ||
        setrlimit(RLIMIT_FSIZE, &p->fsize) < 0 ||
        (p->nproc.rlim_cur != RLIM_INFINITY && setrlimit(RLIMIT_NPROC, &p->nproc) < 0))
        child_fail(p, STEP_RLIMIT);
    if (p->drop) {
        if (setgroups(0, NULL) < 0)
            child_fail(p, STEP_SETGROUPS);
        if (setresgid(p->gid, p->gid, p->gid) < 0)
            child_fail(p, STEP_SETGID);
        if (setresuid(p->uid, p->uid, p->uid) < 0)
            child_fail(p, STEP_SETUID);
    }
    /* Unsafe mode's command dies with the farm. Under bubblewrap the keeper
     * must outlive it to take the sandbox down; it watches the lifeline. */
    if (p->lifeline < 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(p, STEP_PDEATHSIG);
    if (getppid() != p->parent)
        _exit(127); /* the farm is already gone */
    /* Move every descriptor we keep (the report pipe too) above the
     * targets, then into place (dup2 leaves them open across exec); a target
     * without a source is closed, and so is everything above them. */
    child_plan q = *p;
    q.report_fd = fcntl(p->report_fd, F_DUPFD_CLOEXEC, 64);
    if (q.report_fd < 0)
        child_fail(p, STEP_FDS);
    int src[FD_FIRST_FREE] = {p->fds[0],  p->fds[1], p->fds[2],  p->seccomp_fd,
                              p->info_fd, p->cmd_fd, p->lifeline};
    int tmp[FD_FIRST_FREE];
    for (int i = 0; i < FD_FIRST_FREE; i++) {
        tmp[i] = -1;
        if (src[i] >= 0 && (tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 64)) < 0)
            child_fail(&q, STEP_FDS);
    }
    for (int i = 0; i < FD_FIRST_FREE; i++) {
        if (tmp[i] >= 0 && dup2(tmp[i], i) < 0)
            child_fail(&q, STEP_FDS);
        if (tmp[i] < 0)
            close(i);
    }
    if (syscall(SYS_close_range, FD_FIRST_FREE, q.report_fd - 1, 0) < 0 ||
        syscall(SYS_close_range, q.report_fd + 1, ~0U, 0) < 0)
        child_fail(&q, STEP_FDS);
    if (q.chdir_to && chdir(q.chdir_to) < 0)
        child_fail(&q, STEP_CHDIR);
    execve(q.exe, q.argv, q.envp);
    child_fail(&q, STEP_EXEC);
}

/* --- parent side -------------------------------------------------------- */

/* The lifeline: a pipe made once per process. The farm keeps the write end
 * (close-on-exec, never written) until it dies; every sandbox's helper gets
 * the read end and sees it end then. A process forked from one that had a
 * lifeline (the farm forks only to exec, but tests fork whole "farms") drops
 * the inherited pair and makes its own when it first starts a sandbox. */
static pthread_mutex_t lifeline_lock = PTHREAD_MUTEX_INITIALIZER;
static int lifeline_fds[2] = {-1, -1};
static pid_t lifeline_pid;

static int lifeline_read_end(void)
{
    pthread_mutex_lock(&lifeline_lock);
    if (lifeline_fds[0] >= 0 && lifeline_pid != getpid()) {
        close(lifeline_fds[0]);
        close(lifeline_fds[1]);
        lifeline_fds[0] = lifeline_fds[1] = -1;
    }
    if (lifeline_fds[0] < 0) {
        if (pipe2(lifeline_fds, O_CLOEXEC) < 0)
            farm_error_set("sandbox: cannot make the lifeline pipe: %s", strerror(errno));
        else
            lifeline_pid = getpid();
    }
    int fd = lifeline_fds[0];
    pthread_mutex_unlock(&lifeline_lock);
    return fd;
}

#ifndef FARM_SANDBOX_HELPER_INSTALLED
#define FARM_SANDBOX_HELPER_INSTALLED "/usr/local/libexec/farm/farm-sandbox-helper"
#endif
#define HELPER_NAME "farm-sandbox-helper"

static char helper_beside[PATH_MAX];

static void helper_find(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return;
    slash[1] = '\0';
    /* beside it (a build tree), or in PREFIX/libexec/farm from PREFIX/bin */
    static const char *const where[] = {"", "../libexec/farm/"};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        char p[PATH_MAX];
        if ((size_t)snprintf(p, sizeof(p), "%s%s" HELPER_NAME, self, where[i]) < sizeof(p) &&
            access(p, X_OK) == 0) {
            snprintf(helper_beside, sizeof(helper_beside), "%s", p);
            return;
        }
    }
}

const char *sandbox_helper_path(const sandbox_opts *o)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (o && o->helper)
        return o->helper;
    const char *env = getenv("FARM_SANDBOX_HELPER");
    if (env && env[0])
        return env;
    pthread_once(&once, helper_find);
    if (helper_beside[0])
        return helper_beside;
    if (access(FARM_SANDBOX_HELPER_INSTALLED, X_OK) == 0)
        return FARM_SANDBOX_HELPER_INSTALLED;
    farm_error_set("sandbox: " HELPER_NAME
                   " is neither beside the farm binary nor at " FARM_SANDBOX_HELPER_INSTALLED
                   "; reinstall the farm (it is built with it) or "
                   "point FARM_SANDBOX_HELPER at it");
    return NULL;
}

/* The host uid a run gets when the farm is root: the one asked for, or one
 * of its own, so that no two sandboxes share a uid (their files, their
 * process count for RLIMIT_NPROC). The range sits far above real users and
 * the usual subordinate-id ranges; the farm's pid spreads farm processes
 * sharing a host apart. */
#define AUTO_UID_BASE 0x70000000u

static void pick_uid(sandbox *s, const sandbox_opts *o)
{
    static unsigned counter;
    if (o->host_uid) {
        s->uid = o->host_uid;
        s->gid = o->host_gid ? o->host_gid : o->host_uid;
        return;
    }
    unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED) & 0xffffu;
    s->uid = s->gid = AUTO_UID_BASE + (((unsigned)getpid() & 0x3ffu) << 16) + n;
}

/* FARM_EINVALID unless every directory above path is searchable by uid. */
static int reachable(const char *path, unsigned uid, unsigned gid)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s", path);
    for (char *slash = strrchr(p, '/'); slash; slash = strrchr(p, '/')) {
        *slash = '\0';
        const char *d = p[0] ? p : "/";
        struct stat st;
        if (stat(d, &st) < 0)
            continue;
        int ok = (st.st_mode & S_IXOTH) || (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
                 (st.st_gid == gid && (st.st_mode & S_IXGRP));
        if (!ok) {
            farm_error_set("sandbox: %s is out of reach of the sandbox's uid %u: directory %s "
                           "(mode %03o) is not searchable by it; keep worktrees (and the farm "
                           "binary) under directories with mode 0711 or wider",
                           path, uid, d, (unsigned)(st.st_mode & 0777));
            return FARM_EINVALID;
        }
        if (!p[0])
            break;
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void kill_tree(sandbox *s);

void sandbox_free(sandbox *s)
{
    if (!s)
        return;
    if (s->pid > 0) {
        /* still running (never waited for, or prepared and never launched) */
        kill_tree(s);
        waitpid(s->pid, NULL, 0);
    }
    if (s->proxy)
        sbx_proxy_stop(s->proxy);
    sbx_cgroup_destroy(s->cg);
    if (s->tmpdir[0]) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/proxy.sock", s->tmpdir);
        unlink(p);
        rmdir(s->tmpdir);
    }
    close_fd(&s->pidfd);
    close_fd(&s->ns_init);
    close_fd(&s->out_fd);
    close_fd(&s->err_fd);
    close_fd(&s->info_fd);
    close_fd(&s->stop_r);
    close_fd(&s->stop_w);
    close_fd(&s->cmd_w);
    buf_free(&s->info);
    free(s);
}

static int make_proxy(sandbox *s)
{
    const sandbox_opts *o = s->o;
    const char *base = getenv("TMPDIR");
    if (!base || base[0] != '/' || strlen(base) > 200)
        base = "/tmp";
    snprintf(s->tmpdir, sizeof(s->tmpdir), "%s/farm-proxy-XXXXXX", base);
    if (!mkdtemp(s->tmpdir)) {
        farm_error_set("sandbox: mkdtemp in %s: %s", base, strerror(errno));
        s->tmpdir[0] = '\0';
        return FARM_EIO;
    }
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof(sock), "%s/proxy.sock", s->tmpdir);
    int rc = sbx_proxy_start(&s->proxy, sock, o->allow, o->on_proxy, o->proxy_ctx);
    if (rc < 0)
        return rc;
    /* bubblewrap runs as the sandbox's uid and must reach the socket to bind it */
    if (geteuid() == 0 &&
        (chown(s->tmpdir, s->uid, s->gid) < 0 || chown(sock, s->uid, s->gid) < 0)) {
        farm_error_set("sandbox: chown %s: %s", s->tmpdir, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

static int start(sandbox **out, const sandbox_opts *o, int prepared)
{
    *out = NULL;
    int rc = sbx_opts_check(o, !prepared);
    if (rc < 0)
        return rc;
    if (prepared && o->unsafe_none) {
        farm_error_set("sandbox: unsafe-none mode has no sandbox to prepare");
        return FARM_EUNSUPPORTED;
    }
    strv args = {0}, env = {0};
    char *exe = NULL, *helper = NULL;
    int seccomp_fd = -1, devnull = -1, lifeline = -1;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, infop[2] = {-1, -1}, rep[2] = {-1, -1};
    int cmdp[2] = {-1, -1};
    sandbox *s = calloc(1, sizeof(*s));
    if (!s) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    s->o = o;
    s->pid = -1;
    s->prepared = prepared;
    s->pidfd = s->out_fd = s->err_fd = s->info_fd = s->stop_r = s->stop_w = s->cmd_w = -1;
    s->ns_init = -1;
    buf_init(&s->info, 4096);
    int root = geteuid() == 0;
    int drop = root && !o->unsafe_none;
    if (drop)
        pick_uid(s, o);

    if (o->unsafe_none) {
        rc = sbx_which(&exe, o->argv[0]);
        if (rc < 0) {
            farm_error_set("sandbox: command '%.200s' not found", o->argv[0]);
            goto out;
        }
        for (size_t i = 0; o->argv[i] && rc == 0; i++)
            rc = strv_add(&args, o->argv[i]);
    } else {
        rc = sbx_which(&exe, o->bwrap ? o->bwrap : "bwrap");
        if (rc < 0) {
            farm_error_set("sandbox: bubblewrap (%s) is not installed; install the Debian "
                           "package: apt-get install bubblewrap",
                           o->bwrap ? o->bwrap : "bwrap");
            rc = FARM_EUNSUPPORTED;
            goto out;
        }
        const char *hp = sandbox_helper_path(o);
        if (!hp) {
            rc = FARM_EUNSUPPORTED;
            goto out;
        }
        helper = realpath(hp, NULL);
        if (!helper) {
            farm_error_set("sandbox: cannot find the sandbox helper %s: %s", hp, strerror(errno));
            rc = FARM_EINVALID;
            goto out;
        }
        if ((lifeline = lifeline_read_end()) < 0) {
            rc = FARM_EIO;
            goto out;
        }
        if (o->network == SANDBOX_NET_ALLOWLIST && (rc = make_proxy(s)) < 0)
            goto out;
        /* bubblewrap runs as the sandbox's uid: everything it binds must be
         * reachable by that uid, or it fails with a message easy to miss */
        if (drop) {
            const char *paths[2 + SANDBOX_MAX_BINDS] = {o->dir, helper};
            for (size_t i = 0; i < o->nbinds; i++)
                paths[2 + i] = o->binds[i].src;
            for (size_t i = 0; i < 2 + o->nbinds; i++)
                if (paths[i] && (rc = reachable(paths[i], s->uid, s->gid)) < 0)
                    goto out;
        }
        if (drop && o->dir && o->grant_dir && (rc = sbx_dir_grant(o->dir, s->uid, s->gid)) < 0)
            goto out;
        for (size_t i = 0; drop && o->grant_dir && i < o->nbinds; i++)
            if (o->binds[i].writable && (rc = sbx_dir_grant(o->binds[i].src, s->uid, s->gid)) < 0)
                goto out;
        rc = sbx_seccomp_fd(&seccomp_fd);
        if (rc < 0)
            goto out;
        /* the keeper (helper/helper.c) starts bubblewrap and stays its parent */
        rc = strv_add(&args, helper) ?: strv_add(&args, "--keep") ?:
             strv_add(&args, "--lifeline") ?: strv_addf(&args, "%d", FD_LIFELINE) ?:
             strv_add(&args, "--");
        rc = rc ?: sbx_build_argv(&args, o, prepared, exe, helper, s->tmpdir);
        if (rc < 0) {
            if (!farm_error_last()[0] || rc == FARM_ENOMEM || rc == FARM_ETOOBIG)
                farm_error_set("sandbox: cannot build the command line (%s)", farm_error_name(rc));
            goto out;
        }
    }
    rc = sbx_build_env(&env, o);
    if (rc < 0) {
        farm_error_set("out of memory");
        goto out;
    }
    rc = sbx_cgroup_create(&s->cg, o->memory_mb, o->pids, o->cpu_percent);
    if (rc < 0)
        goto out;

    if (o->stdin_path) {
        devnull = open(o->stdin_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (devnull < 0) {
            farm_error_set("sandbox: cannot open %.200s for standard input: %s", o->stdin_path,
                           strerror(errno));
            rc = FARM_EINVALID;
            goto out;
        }
    } else {
        devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (devnull < 0 || pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(infop, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0 ||
        (prepared && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cmdp) < 0)) {
        farm_error_set("sandbox: pipes: %s", strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    int stopp[2];
    if (pipe2(stopp, O_CLOEXEC | O_NONBLOCK) < 0) {
        farm_error_set("sandbox: pipe: %s", strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    s->stop_r = stopp[0];
    s->stop_w = stopp[1];

    child_plan plan = {0};
    plan.argv = args.v;
    plan.envp = env.v;
    plan.exe = o->unsafe_none ? exe : helper;
    plan.fds[0] = devnull;
    plan.fds[1] = outp[1];
    plan.fds[2] = errp[1];
    plan.seccomp_fd = seccomp_fd;
    plan.info_fd = o->unsafe_none ? -1 : infop[1];
    plan.report_fd = rep[1];
    plan.cmd_fd = cmdp[1];
    plan.lifeline = lifeline;
    plan.ncg = sbx_cgroup_procs_fds(s->cg, plan.cg_fds, 4);
    rlim_t nofile = (rlim_t)(o->nofile ? o->nofile : 1024);
    rlim_t fsize = (rlim_t)(o->disk_mb ? o->disk_mb : 1024) << 20;
    plan.nofile = (struct rlimit){nofile, nofile};
    plan.fsize = (struct rlimit){fsize, fsize};
    /* RLIMIT_NPROC counts the processes of the host uid, which is this
     * run's own when the farm is root (the keeper, bubblewrap's two and the
     * helper are counted too); an ordinary user's limit would count all
     * their work. */
    rlim_t nproc = RLIM_INFINITY;
    if (o->pids > 0 && drop)
        nproc = (rlim_t)o->pids + 4;
    plan.nproc = (struct rlimit){nproc, nproc};
    plan.drop = drop;
    plan.uid = s->uid;
    plan.gid = s->gid;
    plan.parent = getpid();
    plan.chdir_to = o->unsafe_none ? o->dir : "/";

    s->start_ms = clock_mono_ms();
    pid_t pid = fork();
    if (pid < 0) {
        farm_error_set("sandbox: fork: %s", strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    if (pid == 0)
        child_run(&plan);
    s->pid = pid;
    s->pgid = pid;
    close_fd(&rep[1]);
    close_fd(&outp[1]);
    close_fd(&errp[1]);
    close_fd(&infop[1]);
    close_fd(&cmdp[1]);
    int msg[2];
    ssize_t r;
    do
        r = read(rep[0], msg, sizeof(msg));
    while (r < 0 && errno == EINTR);
    if (r == (ssize_t)sizeof(msg)) {
        waitpid(pid, NULL, 0);
        s->pid = -1;
        farm_error_set("sandbox: %s failed: %s%s", step_name(msg[0]), strerror(msg[1]),
                       msg[0] == STEP_EXEC ? " (is the command installed?)" : "");
        rc = msg[0] == STEP_EXEC ? FARM_EUNSUPPORTED : FARM_EIO;
        goto out;
    }
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (s->pidfd < 0) {
        farm_error_set("sandbox: pidfd_open: %s", strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    s->out_fd = outp[0];
    s->err_fd = errp[0];
    s->info_fd = infop[0];
    s->cmd_w = cmdp[0];
    outp[0] = errp[0] = infop[0] = cmdp[0] = -1;
    *out = s;
    s = NULL;
    rc = 0;
out:
    sandbox_free(s);
    strv_free(&args);
    strv_free(&env);
    free(exe);
    free(helper);
    close_fd(&seccomp_fd);
    close_fd(&devnull);
    for (int i = 0; i < 2; i++) {
        close_fd(&outp[i]);
        close_fd(&errp[i]);
        close_fd(&infop[i]);
        close_fd(&rep[i]);
        close_fd(&cmdp[i]);
    }
    return rc;
}

int sandbox_start(sandbox **out, const sandbox_opts *opts)
{
    return start(out, opts, 0);
}

#define PREPARE_TIMEOUT_MS 30000

int sandbox_prepare(sandbox **out, const sandbox_opts *opts)
{
    sandbox *s = NULL;
    int rc = start(&s, opts, 1);
    if (rc < 0)
        return rc;
    /* Wait for the helper's "ready" byte, so a prepared sandbox really is
     * spawned and waiting. bubblewrap's own complaints arrive on stderr. */
    char c = 0;
    struct pollfd p = {s->cmd_w, POLLIN, 0};
    int n;
    do
        n = poll(&p, 1, PREPARE_TIMEOUT_MS);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || read(s->cmd_w, &c, 1) != 1 || c != 'R') {
        char why[512] = "";
        struct pollfd e = {s->err_fd, POLLIN, 0};
        if (poll(&e, 1, 0) == 1) {
            ssize_t r = read(s->err_fd, why, sizeof(why) - 1);
            why[r > 0 ? r : 0] = '\0';
            why[strcspn(why, "\n")] = '\0';
        }
        farm_error_set("sandbox: the prepared sandbox did not start%s%s",
                       why[0] ? ": " : (n == 0 ? " in time" : ""), why);
        sandbox_free(s);
        return n == 0 ? FARM_ETIMEOUT : FARM_EIO;
    }
    *out = s;
    return 0;
}

static int put_u32(buf *b, uint32_t v)
{
    return buf_append(b, &v, sizeof(v));
}

int sandbox_launch(sandbox *s, const char *const *argv, const char *const *env)
{
    if (!s->prepared || s->launched || s->cmd_w < 0) {
        farm_error_set("sandbox: launch needs a prepared sandbox not yet launched");
        return FARM_EINVALID;
    }
    sandbox_opts o = *s->o;
    o.argv = argv;
    o.env = env;
    int rc = sbx_opts_check(&o, 1);
    if (rc < 0)
        return rc;
    uint32_t argc = 0, envc = 0, bytes = 0;
    for (; argv[argc]; argc++)
        bytes += (uint32_t)strlen(argv[argc]) + 1;
    for (; env && env[envc]; envc++)
        bytes += (uint32_t)strlen(env[envc]) + 1;
    buf m = BUF_INIT(SANDBOX_MAX_TOTAL_BYTES + 64);
    rc = put_u32(&m, argc) ?: put_u32(&m, envc) ?: put_u32(&m, bytes);
    for (uint32_t i = 0; rc == 0 && i < argc; i++)
        rc = buf_append(&m, argv[i], strlen(argv[i]) + 1);
    for (uint32_t i = 0; rc == 0 && i < envc; i++)
        rc = buf_append(&m, env[i], strlen(env[i]) + 1);
    if (rc < 0)
        goto out;
    s->start_ms = clock_mono_ms(); /* the command's time starts now */
    for (size_t off = 0; off < m.len;) {
        ssize_t w = send(s->cmd_w, m.data + off, m.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            farm_error_set("sandbox: the prepared sandbox is gone: %s", strerror(errno));
            rc = FARM_EIO;
            goto out;
        }
        off += (size_t)w;
    }
    s->launched = 1;
out:
    buf_free(&m);
    if (rc < 0)
        close_fd(&s->cmd_w); /* else kept: the helper reports the status on it */
    return rc;
}

/* Kill everything the run started. */
static void parse_info(sandbox *s);

/* Kill the namespace's init (which takes every process of the namespace
 * with it) and the session our child leads: the keeper, bubblewrap, and a
 * namespace's init still in its set-up (it calls setsid() late). What the
 * info pipe already holds names the init; read it first. */
static void kill_tree(sandbox *s)
{
    if (s->ns_init < 0 && s->info_fd >= 0) {
        char chunk[256];
        ssize_t got;
        fcntl(s->info_fd, F_SETFL, fcntl(s->info_fd, F_GETFL) | O_NONBLOCK);
        while ((got = read(s->info_fd, chunk, sizeof(chunk))) > 0)
            if (buf_append(&s->info, chunk, (size_t)got) == 0)
                parse_info(s);
    }
    if (s->ns_init >= 0)
        syscall(SYS_pidfd_send_signal, s->ns_init, SIGKILL, NULL, 0);
    if (s->pid > 0) {
        kill(-s->pgid, SIGKILL);
        kill(s->pid, SIGKILL);
    }
    sbx_cgroup_kill(s->cg);
    s->killed = 1;
}

void sandbox_stop(sandbox *s)
{
    if (!s)
        return;
    atomic_store(&s->stop_requested, 1);
    ssize_t w = write(s->stop_w, "x", 1);
    (void)w;
}

/* bubblewrap's --info-fd says {"child-pid": N}: the namespace's init. */
static void parse_info(sandbox *s)
{
    const char *p = strstr(buf_cstr(&s->info), "\"child-pid\"");
    if (!p || !(p = strchr(p, ':')))
        return;
    long v = strtol(p + 1, NULL, 10);
    if (v > 1 && s->ns_init < 0)
        s->ns_init = (int)syscall(SYS_pidfd_open, (pid_t)v, 0);
}

static void deliver(sandbox *s, sandbox_result *r, sandbox_stream which, const char *d, size_t n)
{
    size_t max = s->o->max_output ? s->o->max_output : DEFAULT_MAX_OUTPUT;
    uint64_t before = r->stdout_bytes + r->stderr_bytes;
    if (which == SANDBOX_STDOUT)
        r->stdout_bytes += n;
    else
        r->stderr_bytes += n;
    if (before >= max) {
        r->output_truncated = 1;
        return;
    }
    size_t give = n;
    if (before + n > max) {
        give = (size_t)(max - before);
        r->output_truncated = 1;
    }
    if (s->o->on_output && give)
        s->o->on_output(s->o->output_ctx, which, d, give);
}

static void drain(sandbox *s, sandbox_result *r, char *chunk, size_t n)
{
    int *fds[2] = {&s->out_fd, &s->err_fd};
    for (int k = 0; k < 2; k++) {
        if (*fds[k] < 0)
            continue;
        fcntl(*fds[k], F_SETFL, fcntl(*fds[k], F_GETFL) | O_NONBLOCK);
        ssize_t got;
        while ((got = read(*fds[k], chunk, n)) > 0 || (got < 0 && errno == EINTR))
            if (got > 0)
                deliver(s, r, k == 0 ? SANDBOX_STDOUT : SANDBOX_STDERR, chunk, (size_t)got);
        close_fd(fds[k]);
    }
    close_fd(&s->info_fd);
}

int sandbox_wait(sandbox *s, sandbox_result *r)
{
    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    r->peak_memory_kb = -1;
    if (s->prepared && !s->launched) {
        farm_error_set("sandbox: wait before launch");
        return FARM_EINVALID;
    }
    if (s->waited) {
        farm_error_set("sandbox: already waited for");
        return FARM_EINVALID;
    }
    s->waited = 1;
    const sandbox_opts *o = s->o;
    int64_t deadline = o->timeout_ms > 0 ? s->start_ms + o->timeout_ms : -1;
    int exited = 0;
    struct rusage ru = {0};
    int status = 0;
    int helper_status = -1; /* prepared: the command's wait status, from the helper */
    char chunk[65536];
    char hs[sizeof(int)];
    size_t hs_len = 0;

    while (s->out_fd >= 0 || s->err_fd >= 0 || !exited) {
        struct pollfd p[6];
        int np = 0, i_out = -1, i_err = -1, i_info = -1, i_pid = -1, i_stop = -1, i_cmd = -1;
        if (s->out_fd >= 0)
            p[i_out = np++] = (struct pollfd){s->out_fd, POLLIN, 0};
        if (s->err_fd >= 0)
            p[i_err = np++] = (struct pollfd){s->err_fd, POLLIN, 0};
        if (s->info_fd >= 0)
            p[i_info = np++] = (struct pollfd){s->info_fd, POLLIN, 0};
        if (!exited)
            p[i_pid = np++] = (struct pollfd){s->pidfd, POLLIN, 0};
        if (!s->killed)
            p[i_stop = np++] = (struct pollfd){s->stop_r, POLLIN, 0};
        if (!exited && s->cmd_w >= 0)
            p[i_cmd = np++] = (struct pollfd){s->cmd_w, POLLIN, 0};
        int64_t now = clock_mono_ms();
        int64_t wake = -1;
        if (deadline >= 0 && !s->killed)
            wake = deadline;
        int tmo = wake < 0 ? -1 : (int)(wake > now ? (wake - now > 60000 ? 60000 : wake - now) : 0);
        int n = poll(p, (nfds_t)np, tmo);
        if (n < 0 && errno != EINTR) {
            farm_error_set("sandbox: poll: %s", strerror(errno));
            kill_tree(s);
            return FARM_EIO;
        }
        now = clock_mono_ms();
        if (deadline >= 0 && now >= deadline && !s->killed && !exited) {
            r->timed_out = 1;
            kill_tree(s);
        }
        if (n <= 0)
            continue;
        if (i_stop >= 0 && (p[i_stop].revents & POLLIN)) {
            if (!exited) {
                r->stopped = 1;
                kill_tree(s);
            }
            char tmp[16];
            while (read(s->stop_r, tmp, sizeof(tmp)) > 0)
                ;
        }
        int idx[2] = {i_out, i_err};
        int *fds[2] = {&s->out_fd, &s->err_fd};
        for (int k = 0; k < 2; k++) {
            if (idx[k] < 0 || !(p[idx[k]].revents & (POLLIN | POLLHUP | POLLERR)) || *fds[k] < 0)
                continue;
            ssize_t got = read(*fds[k], chunk, sizeof(chunk));
            if (got > 0)
                deliver(s, r, k == 0 ? SANDBOX_STDOUT : SANDBOX_STDERR, chunk, (size_t)got);
            else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                close_fd(fds[k]);
        }
        if (i_info >= 0 && (p[i_info].revents & (POLLIN | POLLHUP | POLLERR)) && s->info_fd >= 0) {
            ssize_t got = read(s->info_fd, chunk, sizeof(chunk));
            if (got > 0) {
                if (buf_append(&s->info, chunk, (size_t)got) == 0)
                    parse_info(s);
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close_fd(&s->info_fd);
            }
        }
        if (i_cmd >= 0 && (p[i_cmd].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t got = read(s->cmd_w, hs + hs_len, sizeof(hs) - hs_len);
            if (got > 0)
                hs_len += (size_t)got;
            else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                close_fd(&s->cmd_w); /* no status after all: bubblewrap's exit will say */
            if (hs_len == sizeof(hs)) {
                /* The helper saw the command end: done, without waiting for
                 * the sandbox to come down (sandbox_free() reaps it). */
                memcpy(&helper_status, hs, sizeof(hs));
                close_fd(&s->cmd_w);
                exited = 1;
                drain(s, r, chunk, sizeof(chunk));
            }
        }
        if (i_pid >= 0 && !exited && (p[i_pid].revents & POLLIN)) {
            pid_t w;
            do
                w = wait4(s->pid, &status, 0, &ru);
            while (w < 0 && errno == EINTR);
            exited = 1;
            s->pid = -1;
            /* anything left (a daemon in unsafe mode, a straggler in the
             * cgroup) dies now */
            if (o->unsafe_none) {
                kill(-s->pgid, SIGKILL);
                sbx_cgroup_kill(s->cg);
            }
            /* The command's output is all in the pipes by now (it has
             * exited); take it and stop, without waiting for the namespace's
             * teardown to close them. */
            drain(s, r, chunk, sizeof(chunk));
        }
    }
    r->wall_ms = clock_mono_ms() - s->start_ms;
    if (helper_status >= 0) {
        if (WIFEXITED(helper_status)) {
            r->exit_code = WEXITSTATUS(helper_status);
        } else if (WIFSIGNALED(helper_status)) {
            r->term_signal = WTERMSIG(helper_status);
            r->exit_code = 128 + r->term_signal; /* as bubblewrap would say it */
        }
    } else if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
        if (!o->unsafe_none && r->exit_code > 128 && r->exit_code < 128 + 65)
            r->term_signal = r->exit_code - 128; /* bubblewrap's way of saying so */
    } else if (WIFSIGNALED(status)) {
        r->term_signal = WTERMSIG(status);
    }
    if (r->timed_out || r->stopped)
        r->exit_code = -1;
    int oom = 0, pids_hit = 0;
    int64_t peak = -1, cpu = -1;
    sbx_cgroup_stats(s->cg, &peak, &cpu, &oom, &pids_hit);
    /* Without a cgroup only unsafe mode's rusage is whole: under bubblewrap
     * the namespace's init reaps the command and is itself out of reach. */
    int64_t ru_cpu = (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
                     (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
    r->cpu_ms = cpu >= 0 ? cpu : o->unsafe_none ? ru_cpu : -1;
    r->peak_memory_kb = peak >= 0 ? peak : o->unsafe_none ? (int64_t)ru.ru_maxrss : -1;
    r->oom_killed = oom;
    r->pids_limited = pids_hit;
    return 0;
}

int sandbox_run(sandbox_result *out, const sandbox_opts *opts)
{
    memset(out, 0, sizeof(*out));
    out->exit_code = -1;
    sandbox *s = NULL;
    int rc = sandbox_start(&s, opts);
    if (rc < 0)
        return rc;
    rc = sandbox_wait(s, out);
    sandbox_free(s);
    return rc;
}
