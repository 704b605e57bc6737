/*
 * sandbox.c - run one command under bubblewrap, with limits: the spawn.
 *
 * The parent builds everything before it forks: bubblewrap's argument list
 * and the environment (args.c), the seccomp filter (a memfd), the cgroup,
 * the pipes and, in allowlist mode, the egress proxy. The child then runs one linear setup
 * chain that allocates nothing (new session, join the cgroup, rlimits, drop
 * root, parent-death signal, descriptors) and execs bubblewrap; a failed step
 * is reported back through a close-on-exec pipe. sandbox_wait.c then streams
 * the output and ends the run (a timeout or a stop kills the whole tree).
 * Inside, farm-sandbox-helper (helper/) runs first and starts the command;
 * it holds the read end of the farm's lifeline pipe and empties the sandbox
 * when the farm dies. A prepared sandbox is the same spawn with the helper
 * waiting for the command (sandbox_launch()).
 */
#include "internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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
void sbx_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void sandbox_free(sandbox *s)
{
    if (!s)
        return;
    if (s->pid > 0) {
        /* still running (never waited for, or prepared and never launched) */
        sbx_kill_tree(s);
        waitpid(s->pid, NULL, 0);
    }
    if (s->proxy)
        sbx_proxy_stop(s->proxy);
    if (s->relay)
        sbx_proxy_stop(s->relay);
    sbx_cgroup_destroy(s->cg);
    if (s->tmpdir[0]) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/proxy.sock", s->tmpdir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/relay.sock", s->tmpdir);
        unlink(p);
        rmdir(s->tmpdir);
    }
    sbx_close_fd(&s->pidfd);
    sbx_close_fd(&s->ns_init);
    sbx_close_fd(&s->out_fd);
    sbx_close_fd(&s->err_fd);
    sbx_close_fd(&s->info_fd);
    sbx_close_fd(&s->stop_r);
    sbx_close_fd(&s->stop_w);
    sbx_close_fd(&s->cmd_w);
    buf_free(&s->info);
    free(s);
}

/* The run's directory for the proxy's and the relay's sockets. */
static int make_tmpdir(sandbox *s)
{
    if (s->tmpdir[0])
        return 0;
    const char *base = getenv("TMPDIR");
    if (!base || base[0] != '/' || strlen(base) > 200)
        base = "/tmp";
    snprintf(s->tmpdir, sizeof(s->tmpdir), "%s/farm-proxy-XXXXXX", base);
    if (!mkdtemp(s->tmpdir)) {
        farm_error_set("sandbox: mkdtemp in %s: %s", base, strerror(errno));
        s->tmpdir[0] = '\0';
        return FARM_EIO;
    }
    return 0;
}

/* A relay bind: a forwarder in the run's directory that the run's uid may
 * use, passing every connection on to the farm's socket. */
static int make_relay(sandbox *s, const sandbox_bind *b)
{
    int rc = make_tmpdir(s);
    if (rc < 0)
        return rc;
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof(sock), "%s/relay.sock", s->tmpdir);
    if ((rc = sbx_forward_start(&s->relay, sock, b->src)) < 0)
        return rc;
    if (geteuid() == 0 &&
        (chown(s->tmpdir, s->uid, s->gid) < 0 || chown(sock, s->uid, s->gid) < 0)) {
        farm_error_set("sandbox: chown %s: %s", s->tmpdir, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

static int make_proxy(sandbox *s)
{
    const sandbox_opts *o = s->o;
    int rc = make_tmpdir(s);
    if (rc < 0)
        return rc;
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof(sock), "%s/proxy.sock", s->tmpdir);
    rc = sbx_proxy_start(&s->proxy, sock, o->allow, o->on_proxy, o->proxy_ctx);
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

/* --- the spawn, step by step -------------------------------------------- */

/* What start() builds for the child; spawn_release() frees what is left,
 * however far the steps got. */
typedef struct spawn {
    int drop;     /* the farm is root and the run gets a uid of its own */
    strv args;    /* the child's argv: the command (unsafe), else the keeper's */
    strv env;     /* the command's environment */
    char *exe;    /* unsafe: the command found in PATH; else bubblewrap */
    char *helper; /* farm-sandbox-helper's real path (not in unsafe mode) */
    int lifeline; /* the process's lifeline read end (never closed here) */
    int seccomp_fd;
    int stdin_fd; /* opts.stdin_path or /dev/null */
    int outp[2], errp[2], infop[2];
    int rep[2];  /* the child's report of a failed setup step */
    int cmdp[2]; /* prepared: the helper's command socket */
} spawn;

static void spawn_init(spawn *sp, const sandbox_opts *o)
{
    memset(sp, 0, sizeof(*sp));
    sp->drop = geteuid() == 0 && !o->unsafe_none;
    sp->lifeline = sp->seccomp_fd = sp->stdin_fd = -1;
    for (int i = 0; i < 2; i++)
        sp->outp[i] = sp->errp[i] = sp->infop[i] = sp->rep[i] = sp->cmdp[i] = -1;
}

static void spawn_release(spawn *sp)
{
    strv_free(&sp->args);
    strv_free(&sp->env);
    free(sp->exe);
    free(sp->helper);
    sbx_close_fd(&sp->seccomp_fd);
    sbx_close_fd(&sp->stdin_fd);
    for (int i = 0; i < 2; i++) {
        sbx_close_fd(&sp->outp[i]);
        sbx_close_fd(&sp->errp[i]);
        sbx_close_fd(&sp->infop[i]);
        sbx_close_fd(&sp->rep[i]);
        sbx_close_fd(&sp->cmdp[i]);
    }
}

/* A handle with nothing open yet; the host uid picked when drop. */
static int sandbox_new(sandbox **out, const sandbox_opts *o, int prepared, int drop)
{
    *out = NULL;
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
    if (drop)
        pick_uid(s, o);
    *out = s;
    return 0;
}

/* unsafe-none: the command itself, found in PATH. */
static int find_command(spawn *sp, const sandbox_opts *o)
{
    int rc = sbx_which(&sp->exe, o->argv[0]);
    if (rc < 0) {
        farm_error_set("sandbox: command '%.200s' not found", o->argv[0]);
        return rc;
    }
    for (size_t i = 0; o->argv[i] && rc == 0; i++)
        rc = strv_add(&sp->args, o->argv[i]);
    if (rc < 0)
        farm_error_set("out of memory");
    return rc;
}

/* bubblewrap in PATH (or opts.bwrap) and the helper's real path. */
static int find_programs(spawn *sp, const sandbox_opts *o)
{
    if (sbx_which(&sp->exe, o->bwrap ? o->bwrap : "bwrap") < 0) {
        farm_error_set("sandbox: bubblewrap (%s) is not installed; install the Debian "
                       "package: apt-get install bubblewrap",
                       o->bwrap ? o->bwrap : "bwrap");
        return FARM_EUNSUPPORTED;
    }
    const char *hp = sandbox_helper_path(o);
    if (!hp)
        return FARM_EUNSUPPORTED;
    sp->helper = realpath(hp, NULL);
    if (!sp->helper) {
        farm_error_set("sandbox: cannot find the sandbox helper %s: %s", hp, strerror(errno));
        return FARM_EINVALID;
    }
    return 0;
}

/* bubblewrap runs as the sandbox's uid: everything it binds must be
 * reachable by that uid, or it fails with a message easy to miss. */
static int check_reach(const sandbox *s, const char *helper)
{
    const sandbox_opts *o = s->o;
    const char *paths[3 + SANDBOX_MAX_BINDS] = {o->dir, helper, o->root_dir};
    for (size_t i = 0; i < o->nbinds; i++)
        paths[3 + i] = o->binds[i].relay_port ? NULL : o->binds[i].src;
    int rc = 0;
    for (size_t i = 0; i < 3 + o->nbinds; i++)
        if (paths[i] && (rc = reachable(paths[i], s->uid, s->gid)) < 0)
            return rc;
    return 0;
}

/* Let the run's uid write the working directory and the writable binds. */
static int grant_dirs(const sandbox *s)
{
    const sandbox_opts *o = s->o;
    int rc = 0;
    if (!o->grant_dir)
        return 0;
    if (o->dir && (rc = sbx_dir_grant(o->dir, s->uid, s->gid)) < 0)
        return rc;
    for (size_t i = 0; i < o->nbinds; i++)
        if (o->binds[i].writable && (rc = sbx_dir_grant(o->binds[i].src, s->uid, s->gid)) < 0)
            return rc;
    return 0;
}

/* The keeper (helper/helper.c) starts bubblewrap and stays its parent. */
static int build_keeper_argv(spawn *sp, const sandbox *s)
{
    int rc = strv_add(&sp->args, sp->helper) ?: strv_add(&sp->args, "--keep") ?:
             strv_add(&sp->args, "--lifeline") ?: strv_addf(&sp->args, "%d", FD_LIFELINE) ?:
             strv_add(&sp->args, "--");
    rc = rc ?: sbx_build_argv(&sp->args, s->o, s->prepared, sp->exe, sp->helper, s->tmpdir);
    if (rc < 0 && (!farm_error_last()[0] || rc == FARM_ENOMEM || rc == FARM_ETOOBIG))
        farm_error_set("sandbox: cannot build the command line (%s)", farm_error_name(rc));
    return rc;
}

/* Everything bubblewrap needs: the programs, the lifeline, the proxy
 * (allowlist mode), the run's uid's access, the filter, the command line. */
static int prepare_bwrap(spawn *sp, sandbox *s)
{
    const sandbox_opts *o = s->o;
    int rc = find_programs(sp, o);
    if (rc < 0)
        return rc;
    if ((sp->lifeline = lifeline_read_end()) < 0)
        return FARM_EIO;
    if (o->network == SANDBOX_NET_ALLOWLIST && (rc = make_proxy(s)) < 0)
        return rc;
    if (sbx_relay_bind(o) && (rc = make_relay(s, sbx_relay_bind(o))) < 0)
        return rc;
    if (sp->drop && ((rc = check_reach(s, sp->helper)) < 0 || (rc = grant_dirs(s)) < 0))
        return rc;
    rc = sbx_seccomp_fd(&sp->seccomp_fd);
    if (rc < 0)
        return rc;
    return build_keeper_argv(sp, s);
}

static int build_env(spawn *sp, const sandbox_opts *o)
{
    int rc = sbx_build_env(&sp->env, o);
    if (rc < 0)
        farm_error_set("out of memory");
    return rc;
}

/* Standard input, the output, info and report pipes, the command socket
 * (prepared) and the stop pipe (kept in the handle). */
static int open_pipes(spawn *sp, sandbox *s)
{
    const sandbox_opts *o = s->o;
    if (o->stdin_path) {
        sp->stdin_fd = open(o->stdin_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (sp->stdin_fd < 0) {
            farm_error_set("sandbox: cannot open %.200s for standard input: %s", o->stdin_path,
                           strerror(errno));
            return FARM_EINVALID;
        }
    } else {
        sp->stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (sp->stdin_fd < 0 || pipe2(sp->outp, O_CLOEXEC) < 0 || pipe2(sp->errp, O_CLOEXEC) < 0 ||
        pipe2(sp->infop, O_CLOEXEC) < 0 || pipe2(sp->rep, O_CLOEXEC) < 0 ||
        (s->prepared && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp->cmdp) < 0)) {
        farm_error_set("sandbox: pipes: %s", strerror(errno));
        return FARM_EIO;
    }
    int stopp[2];
    if (pipe2(stopp, O_CLOEXEC | O_NONBLOCK) < 0) {
        farm_error_set("sandbox: pipe: %s", strerror(errno));
        return FARM_EIO;
    }
    s->stop_r = stopp[0];
    s->stop_w = stopp[1];
    return 0;
}

/* What the child does between fork and exec, worked out in the parent. */
static void plan_child(child_plan *plan, const spawn *sp, const sandbox *s)
{
    const sandbox_opts *o = s->o;
    memset(plan, 0, sizeof(*plan));
    plan->argv = sp->args.v;
    plan->envp = sp->env.v;
    plan->exe = o->unsafe_none ? sp->exe : sp->helper;
    plan->fds[0] = sp->stdin_fd;
    plan->fds[1] = sp->outp[1];
    plan->fds[2] = sp->errp[1];
    plan->seccomp_fd = sp->seccomp_fd;
    plan->info_fd = o->unsafe_none ? -1 : sp->infop[1];
    plan->report_fd = sp->rep[1];
    plan->cmd_fd = sp->cmdp[1];
    plan->lifeline = sp->lifeline;
    plan->ncg = sbx_cgroup_procs_fds(s->cg, plan->cg_fds, 4);
    rlim_t nofile = (rlim_t)(o->nofile ? o->nofile : 1024);
    rlim_t fsize = (rlim_t)(o->disk_mb ? o->disk_mb : 1024) << 20;
    plan->nofile = (struct rlimit){nofile, nofile};
    plan->fsize = (struct rlimit){fsize, fsize};
    /* RLIMIT_NPROC counts the processes of the host uid, which is this
     * run's own when the farm is root (the keeper, bubblewrap's two and the
     * helper are counted too); an ordinary user's limit would count all
     * their work. */
    rlim_t nproc = RLIM_INFINITY;
    if (o->pids > 0 && sp->drop)
        nproc = (rlim_t)o->pids + 4;
    plan->nproc = (struct rlimit){nproc, nproc};
    plan->drop = sp->drop;
    plan->uid = s->uid;
    plan->gid = s->gid;
    plan->parent = getpid();
    plan->chdir_to = o->unsafe_none ? o->dir : "/";
}

/* Fork the child, keep the parent's ends, and wait for its exec: the
 * report pipe ends empty when it succeeds, or says which step failed. */
static int fork_child(spawn *sp, sandbox *s)
{
    child_plan plan;
    plan_child(&plan, sp, s);
    s->start_ms = clock_mono_ms();
    pid_t pid = fork();
    if (pid < 0) {
        farm_error_set("sandbox: fork: %s", strerror(errno));
        return FARM_EIO;
    }
    if (pid == 0)
        child_run(&plan);
    s->pid = pid;
    s->pgid = pid;
    sbx_close_fd(&sp->rep[1]);
    sbx_close_fd(&sp->outp[1]);
    sbx_close_fd(&sp->errp[1]);
    sbx_close_fd(&sp->infop[1]);
    sbx_close_fd(&sp->cmdp[1]);
    int msg[2];
    ssize_t r;
    do
        r = read(sp->rep[0], msg, sizeof(msg));
    while (r < 0 && errno == EINTR);
    if (r == (ssize_t)sizeof(msg)) {
        waitpid(pid, NULL, 0);
        s->pid = -1;
        farm_error_set("sandbox: %s failed: %s%s", step_name(msg[0]), strerror(msg[1]),
                       msg[0] == STEP_EXEC ? " (is the command installed?)" : "");
        return msg[0] == STEP_EXEC ? FARM_EUNSUPPORTED : FARM_EIO;
    }
    return 0;
}

/* A pidfd of the child, and the parent's ends of the pipes into the handle. */
static int keep_child(spawn *sp, sandbox *s)
{
    s->pidfd = (int)syscall(SYS_pidfd_open, s->pid, 0);
    if (s->pidfd < 0) {
        farm_error_set("sandbox: pidfd_open: %s", strerror(errno));
        return FARM_EIO;
    }
    s->out_fd = sp->outp[0];
    s->err_fd = sp->errp[0];
    s->info_fd = sp->infop[0];
    s->cmd_w = sp->cmdp[0];
    sp->outp[0] = sp->errp[0] = sp->infop[0] = sp->cmdp[0] = -1;
    return 0;
}

/* sandbox_start() and sandbox_prepare(): the steps above in order. */
static int start(sandbox **out, const sandbox_opts *o, int prepared)
{
    assert(out);
    *out = NULL;
    int rc = sbx_opts_check(o, !prepared);
    if (rc < 0)
        return rc;
    if (prepared && o->unsafe_none) {
        farm_error_set("sandbox: unsafe-none mode has no sandbox to prepare");
        return FARM_EUNSUPPORTED;
    }
    spawn sp;
    spawn_init(&sp, o);
    sandbox *s = NULL;
    rc = sandbox_new(&s, o, prepared, sp.drop);
    if (rc < 0)
        return rc;
    rc = o->unsafe_none ? find_command(&sp, o) : prepare_bwrap(&sp, s);
    rc = rc ?: build_env(&sp, o);
    rc = rc ?: sbx_cgroup_create(&s->cg, o->memory_mb, o->pids, o->cpu_percent);
    rc = rc ?: open_pipes(&sp, s);
    rc = rc ?: fork_child(&sp, s);
    rc = rc ?: keep_child(&sp, s);
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
    sandbox_free(s);
    spawn_release(&sp);
    return rc;
}

int sandbox_start(sandbox **out, const sandbox_opts *opts)
{
    return start(out, opts, 0);
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
    assert(s);
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
        sbx_close_fd(&s->cmd_w); /* else kept: the helper reports the status on it */
    return rc;
}
