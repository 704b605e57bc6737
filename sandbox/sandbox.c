/*
 * sandbox.c - run one command under bubblewrap, with limits, and watch it.
 *
 * The parent builds everything before it forks: bubblewrap's argument list,
 * the environment, the seccomp filter (a memfd), the cgroup, the pipes and,
 * in allowlist mode, the egress proxy. The child then runs one linear setup
 * chain that allocates nothing (new session, join the cgroup, rlimits, drop
 * root, parent-death signal, descriptors) and execs bubblewrap; a failed step
 * is reported back through a close-on-exec pipe. The parent streams stdout
 * and stderr to the caller while it waits on a pidfd, the deadline and a stop
 * pipe; a timeout or a stop kills the namespace's init, which takes every
 * process in the pid namespace with it, daemons included, and the cgroup
 * is emptied as a second line.
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
#define DRAIN_MS           2000 /* how long output may still trickle in after the end */
#define SANDBOX_HOME       "/home/sandbox"

/* Descriptor numbers as bubblewrap sees them. */
enum { FD_SECCOMP = 3, FD_INFO = 4, FD_CMD = 5, FD_FIRST_FREE = 6 };

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

/* A growable NULL-terminated list of heap strings. */
typedef struct strv {
    char **v;
    size_t n, cap;
} strv;

static int strv_add(strv *s, const char *str)
{
    if (s->n + 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        char **nv = realloc(s->v, nc * sizeof(*nv));
        if (!nv)
            return FARM_ENOMEM;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n] = strdup(str);
    if (!s->v[s->n])
        return FARM_ENOMEM;
    s->n++;
    s->v[s->n] = NULL;
    return 0;
}

static int strv_addf(strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int strv_addf(strv *s, const char *fmt, ...)
{
    char tmp[PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return FARM_ETOOBIG;
    return strv_add(s, tmp);
}

static void strv_free(strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

struct sandbox {
    const sandbox_opts *o;
    pid_t pid;  /* our child: bubblewrap's outer process (or the command, unsafe) */
    pid_t pgid; /* its process group (it calls setsid), for unsafe mode */
    int pidfd;
    int out_fd, err_fd, info_fd;
    int stop_r, stop_w; /* a byte on stop_w asks the waiting thread to stop */
    atomic_int stop_requested;
    int cmd_w;    /* prepared: our end of the helper's command socket, until launch */
    int prepared; /* spawned ahead by sandbox_prepare() */
    int launched;
    atomic_int ns_init; /* the pid namespace's init as the host sees it, 0 until known */
    int killed;
    int64_t start_ms;
    sbx_cgroup *cg;
    sbx_proxy *proxy;
    char tmpdir[PATH_MAX]; /* per-run directory for the proxy socket, or "" */
    buf info;
};

/* --- option checks ------------------------------------------------------ */

static int env_name_ok(const char *e)
{
    const char *eq = strchr(e, '=');
    if (!eq || eq == e)
        return 0;
    if (!(isalpha((unsigned char)e[0]) || e[0] == '_'))
        return 0;
    for (const char *p = e; p < eq; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return 0;
    return 1;
}

static int path_ok(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
        return 0;
    /* no ".." component: the inside path is where bubblewrap mounts things */
    for (const char *s = p; (s = strstr(s, "..")); s += 2)
        if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
            return 0;
    return 1;
}

static int allow_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > 255)
        return 0;
    const char *colon = strrchr(a, ':');
    size_t hl = colon ? (size_t)(colon - a) : n;
    if (hl == 0)
        return 0;
    for (size_t i = 0; i < hl; i++) {
        char c = a[i];
        if (!(isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' ||
              (c == '*' && i == 0 && hl > 2 && a[1] == '.') || (c == '*' && hl == 1)))
            return 0;
    }
    if (colon) {
        if (strcmp(colon + 1, "*") == 0)
            return 1;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end || port < 1 || port > 65535)
            return 0;
    }
    return 1;
}

static int check(const sandbox_opts *o, int need_argv)
{
    if (!o || (need_argv && (!o->argv || !o->argv[0] || !o->argv[0][0]))) {
        farm_error_set("sandbox: no command given");
        return FARM_EINVALID;
    }
    size_t total = 0, n = 0;
    for (; o->argv && o->argv[n]; n++) {
        size_t l = strlen(o->argv[n]);
        if (n >= SANDBOX_MAX_ARGS) {
            farm_error_set("sandbox: more than %d arguments", SANDBOX_MAX_ARGS);
            return FARM_EINVALID;
        }
        if (l > SANDBOX_MAX_ARG_BYTES) {
            farm_error_set("sandbox: argument %zu is %zu bytes, over the cap of %d", n, l,
                           SANDBOX_MAX_ARG_BYTES);
            return FARM_EINVALID;
        }
        total += l + 1;
    }
    for (size_t i = 0; o->env && o->env[i]; i++) {
        size_t l = strlen(o->env[i]);
        if (i >= SANDBOX_MAX_ENV) {
            farm_error_set("sandbox: more than %d environment variables", SANDBOX_MAX_ENV);
            return FARM_EINVALID;
        }
        if (l > SANDBOX_MAX_ARG_BYTES) {
            farm_error_set("sandbox: environment entry %zu is %zu bytes, over the cap of %d", i, l,
                           SANDBOX_MAX_ARG_BYTES);
            return FARM_EINVALID;
        }
        if (!env_name_ok(o->env[i])) {
            farm_error_set("sandbox: environment entry %zu is not NAME=value", i);
            return FARM_EINVALID;
        }
        total += l + 1;
    }
    if (total > SANDBOX_MAX_TOTAL_BYTES) {
        farm_error_set("sandbox: arguments and environment are %zu bytes, over the cap of %d",
                       total, SANDBOX_MAX_TOTAL_BYTES);
        return FARM_EINVALID;
    }
    if (o->dir) {
        struct stat st;
        if (!path_ok(o->dir) || stat(o->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            farm_error_set("sandbox: working directory '%s' is not an absolute path to a "
                           "directory",
                           o->dir);
            return FARM_EINVALID;
        }
    }
    if (o->dir_inside && (!path_ok(o->dir_inside) || strcmp(o->dir_inside, "/") == 0)) {
        farm_error_set("sandbox: inside directory '%s' must be an absolute path below /",
                       o->dir_inside);
        return FARM_EINVALID;
    }
    if (o->nbinds > SANDBOX_MAX_BINDS) {
        farm_error_set("sandbox: more than %d extra binds", SANDBOX_MAX_BINDS);
        return FARM_EINVALID;
    }
    for (size_t i = 0; i < o->nbinds; i++) {
        if (!path_ok(o->binds[i].src) || !path_ok(o->binds[i].dest)) {
            farm_error_set("sandbox: bind %zu needs absolute paths without '..'", i);
            return FARM_EINVALID;
        }
    }
    if (o->network != SANDBOX_NET_NONE && o->network != SANDBOX_NET_ALLOWLIST &&
        !(o->network == SANDBOX_NET_HOST && o->unsafe_none)) {
        farm_error_set("sandbox: unknown network policy");
        return FARM_EINVALID;
    }
    size_t na = 0;
    for (; o->allow && o->allow[na]; na++) {
        if (na >= SANDBOX_MAX_ALLOW) {
            farm_error_set("sandbox: more than %d allowlist entries", SANDBOX_MAX_ALLOW);
            return FARM_EINVALID;
        }
        if (!allow_ok(o->allow[na])) {
            farm_error_set("sandbox: allowlist entry '%.64s' is not host[:port], *.domain or "
                           "host:*",
                           o->allow[na]);
            return FARM_EINVALID;
        }
    }
    if (o->timeout_ms < 0 || o->memory_mb < 0 || o->pids < 0 || o->cpu_percent < 0 ||
        o->disk_mb < 0 || o->nofile < 0) {
        farm_error_set("sandbox: limits must not be negative");
        return FARM_EINVALID;
    }
    return 0;
}

int sandbox_opts_check(const sandbox_opts *o)
{
    return check(o, 1);
}

int sandbox_net_parse(const char *s)
{
    if (s && strcmp(s, "none") == 0)
        return SANDBOX_NET_NONE;
    if (s && strcmp(s, "allowlist") == 0)
        return SANDBOX_NET_ALLOWLIST;
    return -1;
}

/* --- the command line --------------------------------------------------- */

/* Find prog in PATH (or take it as a path); *out is the caller's to free. */
static int which(char **out, const char *prog)
{
    *out = NULL;
    if (strchr(prog, '/')) {
        if (access(prog, X_OK) < 0)
            return FARM_ENOTFOUND;
        *out = strdup(prog);
        return *out ? 0 : FARM_ENOMEM;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    const char *p = path;
    while (*p) {
        size_t l = strcspn(p, ":");
        char cand[PATH_MAX];
        if (l > 0 && snprintf(cand, sizeof(cand), "%.*s/%s", (int)l, p, prog) < (int)sizeof(cand) &&
            access(cand, X_OK) == 0) {
            *out = strdup(cand);
            return *out ? 0 : FARM_ENOMEM;
        }
        p += l;
        if (*p == ':')
            p++;
    }
    return FARM_ENOTFOUND;
}

/* Bind the top-level system directories read-only, keeping symlinks (the
 * merged-/usr layout links /bin, /lib... to /usr). */
static int add_system(strv *a)
{
    static const char *const dirs[] = {"/usr",   "/bin",    "/sbin", "/lib", "/lib32",
                                       "/lib64", "/libx32", "/etc",  "/opt"};
    int rc = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && rc == 0; i++) {
        struct stat st;
        if (lstat(dirs[i], &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(dirs[i], target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            rc = strv_add(a, "--symlink") ?: strv_add(a, target) ?: strv_add(a, dirs[i]);
        } else if (S_ISDIR(st.st_mode)) {
            rc = strv_add(a, "--ro-bind") ?: strv_add(a, dirs[i]) ?: strv_add(a, dirs[i]);
        }
    }
    return rc;
}

/* .git/hooks and .git/config of a worktree whose .git is a directory are
 * bound read-only over themselves (created first when missing, so an agent
 * cannot add them). */
static int add_git_guards(strv *a, const char *dir, const char *inside)
{
    char git[PATH_MAX], p[PATH_MAX + 16];
    struct stat st;
    if (snprintf(git, sizeof(git), "%s/.git", dir) >= (int)sizeof(git))
        return FARM_ETOOBIG;
    if (lstat(git, &st) < 0 || !S_ISDIR(st.st_mode))
        return 0;
    int rc = 0;
    snprintf(p, sizeof(p), "%s/hooks", git);
    if (lstat(p, &st) < 0 && mkdir(p, 0755) < 0) {
        farm_error_set("sandbox: cannot create %s: %s", p, strerror(errno));
        return FARM_EIO;
    }
    rc = strv_add(a, "--ro-bind") ?: strv_add(a, p) ?: strv_addf(a, "%s/.git/hooks", inside);
    if (rc)
        return rc;
    snprintf(p, sizeof(p), "%s/config", git);
    if (lstat(p, &st) < 0) {
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            farm_error_set("sandbox: cannot create %s: %s", p, strerror(errno));
            return FARM_EIO;
        }
        close(fd);
    }
    return strv_add(a, "--ro-bind") ?: strv_add(a, p) ?: strv_addf(a, "%s/.git/config", inside);
}

static int build_argv(strv *a, sandbox *s, const char *bwrap, const char *helper)
{
    const sandbox_opts *o = s->o;
    const char *inside = o->dir_inside ? o->dir_inside : "/work";
    long long disk = (long long)(o->disk_mb ? o->disk_mb : 1024) << 20;
    int rc = strv_add(a, bwrap);
    static const char *const fixed[] = {"--unshare-user",
                                        "--unshare-pid",
                                        "--unshare-ipc",
                                        "--unshare-uts",
                                        "--unshare-net",
                                        "--unshare-cgroup-try",
                                        "--disable-userns",
                                        "--cap-drop",
                                        "ALL",
                                        "--die-with-parent",
                                        "--new-session",
                                        "--hostname",
                                        "sandbox",
                                        "--proc",
                                        "/proc",
                                        "--dev",
                                        "/dev"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && rc == 0; i++)
        rc = strv_add(a, fixed[i]);
    rc = rc ?: strv_add(a, "--uid") ?: strv_addf(a, "%u", o->uid);
    rc = rc ?: strv_add(a, "--gid") ?: strv_addf(a, "%u", o->gid);
    rc = rc ?: add_system(a);
    rc = rc ?: strv_add(a, "--size") ?: strv_addf(a, "%lld", disk) ?: strv_add(a, "--tmpfs") ?:
         strv_add(a, "/tmp");
    rc = rc ?: strv_add(a, "--size") ?: strv_addf(a, "%lld", disk) ?: strv_add(a, "--tmpfs") ?:
         strv_add(a, SANDBOX_HOME);
    if (rc == 0 && o->dir) {
        rc = strv_add(a, "--bind") ?: strv_add(a, o->dir) ?: strv_add(a, inside);
        rc = rc ?: add_git_guards(a, o->dir, inside);
    }
    for (size_t i = 0; rc == 0 && i < o->nbinds; i++)
        rc = strv_add(a, o->binds[i].writable ? "--bind" : "--ro-bind") ?:
             strv_add(a, o->binds[i].src) ?: strv_add(a, o->binds[i].dest);
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST)
        rc = strv_add(a, "--ro-bind") ?: strv_addf(a, "%s/proxy.sock", s->tmpdir) ?:
             strv_add(a, SBX_PROXY_SOCK_INSIDE);
    if (rc == 0 && helper)
        rc = strv_add(a, "--ro-bind") ?: strv_add(a, helper) ?: strv_add(a, SBX_HELPER_INSIDE);
    rc = rc ?: strv_add(a, "--chdir") ?: strv_add(a, o->dir ? inside : SANDBOX_HOME);
    /* last: the root itself (bubblewrap's scratch tmpfs) and /dev become
     * read-only; POSIX shared memory gets a capped tmpfs of its own */
    rc = rc ?: strv_add(a, "--size") ?: strv_addf(a, "%lld", disk) ?: strv_add(a, "--tmpfs") ?:
         strv_add(a, "/dev/shm");
    rc = rc ?: strv_add(a, "--remount-ro") ?: strv_add(a, "/dev");
    rc = rc ?: strv_add(a, "--remount-ro") ?: strv_add(a, "/");
    rc = rc ?: strv_add(a, "--seccomp") ?: strv_addf(a, "%d", FD_SECCOMP);
    rc = rc ?: strv_add(a, "--info-fd") ?: strv_addf(a, "%d", FD_INFO);
    rc = rc ?: strv_add(a, "--");
    if (rc == 0 && (o->network == SANDBOX_NET_ALLOWLIST || s->prepared))
        rc = strv_add(a, SBX_HELPER_INSIDE) ?: strv_add(a, "sandbox") ?: strv_add(a, "__helper");
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST)
        rc = strv_add(a, "--proxy") ?: strv_addf(a, "%d", SBX_PROXY_PORT) ?:
             strv_add(a, SBX_PROXY_SOCK_INSIDE);
    if (rc == 0 && s->prepared) /* the command comes later, through FD_CMD */
        return strv_add(a, "--cmd-fd") ?: strv_addf(a, "%d", FD_CMD);
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST)
        rc = strv_add(a, "--");
    for (size_t i = 0; rc == 0 && o->argv[i]; i++)
        rc = strv_add(a, o->argv[i]);
    return rc;
}

static int build_env(strv *e, const sandbox_opts *o)
{
    int rc = 0;
    if (!o->unsafe_none)
        rc = strv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin") ?:
             strv_add(e, "HOME=" SANDBOX_HOME) ?: strv_add(e, "TMPDIR=/tmp") ?:
             strv_add(e, "USER=sandbox") ?: strv_add(e, "LANG=C.UTF-8");
    else
        rc = strv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin");
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST) {
        static const char *const names[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                            "https_proxy"};
        for (size_t i = 0; i < 4 && rc == 0; i++)
            rc = strv_addf(e, "%s=http://127.0.0.1:%d", names[i], SBX_PROXY_PORT);
        rc = rc ?: strv_add(e, "NO_PROXY=") ?: strv_add(e, "no_proxy=");
    }
    /* the caller's entries come last and win over the defaults above */
    for (size_t i = 0; rc == 0 && o->env && o->env[i]; i++) {
        size_t nl = strcspn(o->env[i], "=");
        for (size_t j = 0; j < e->n; j++)
            if (strncmp(e->v[j], o->env[i], nl + 1) == 0) {
                free(e->v[j]);
                memmove(&e->v[j], &e->v[j + 1], (e->n - j) * sizeof(char *));
                e->n--;
                break;
            }
        rc = strv_add(e, o->env[i]);
    }
    return rc;
}

/* --- the child ---------------------------------------------------------- */

typedef struct child_plan {
    char *const *argv, *const *envp;
    const char *exe;
    int fds[3];     /* stdin, stdout, stderr */
    int seccomp_fd; /* -1 when unsafe */
    int info_fd;
    int cmd_fd;    /* prepared: the helper's end of the command socket, else -1 */
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
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
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
    int src[FD_FIRST_FREE] = {p->fds[0],     p->fds[1],  p->fds[2],
                              p->seccomp_fd, p->info_fd, p->cmd_fd};
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

static int chown_uid, chown_gid;
static int chown_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    if (lchown(path, (uid_t)chown_uid, (gid_t)chown_gid) < 0 && errno != ENOENT)
        return -1;
    return 0;
}

/* Hand the working directory to the sandbox's host uid (the farm is root). */
static int give_dir(const sandbox_opts *o)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    chown_uid = (int)o->host_uid;
    chown_gid = (int)o->host_gid;
    int r = nftw(o->dir, chown_one, 32, FTW_PHYS | FTW_MOUNT);
    int e = errno;
    pthread_mutex_unlock(&lock);
    if (r != 0) {
        farm_error_set("sandbox: cannot hand %s to uid %u: %s", o->dir, o->host_uid, strerror(e));
        return FARM_EIO;
    }
    return 0;
}

static void close_fd(int *fd)
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
        /* still running: the caller gave up without waiting */
        kill(s->pid, SIGKILL);
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
    if (geteuid() == 0 && o->host_uid != 0 &&
        (chown(s->tmpdir, o->host_uid, o->host_gid) < 0 ||
         chown(sock, o->host_uid, o->host_gid) < 0)) {
        farm_error_set("sandbox: chown %s: %s", s->tmpdir, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

static int start(sandbox **out, const sandbox_opts *o, int prepared)
{
    *out = NULL;
    int rc = check(o, !prepared);
    if (rc < 0)
        return rc;
    if (prepared && o->unsafe_none) {
        farm_error_set("sandbox: unsafe-none mode has no sandbox to prepare");
        return FARM_EUNSUPPORTED;
    }
    strv args = {0}, env = {0};
    char *exe = NULL, *helper = NULL;
    int seccomp_fd = -1, devnull = -1;
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
    buf_init(&s->info, 4096);
    int root = geteuid() == 0;
    int drop = root && !o->unsafe_none && o->host_uid != 0;

    if (o->unsafe_none) {
        rc = which(&exe, o->argv[0]);
        if (rc < 0) {
            farm_error_set("sandbox: command '%.200s' not found", o->argv[0]);
            goto out;
        }
        for (size_t i = 0; o->argv[i] && rc == 0; i++)
            rc = strv_add(&args, o->argv[i]);
    } else {
        rc = which(&exe, o->bwrap ? o->bwrap : "bwrap");
        if (rc < 0) {
            farm_error_set("sandbox: bubblewrap (%s) is not installed; install the Debian "
                           "package: apt-get install bubblewrap",
                           o->bwrap ? o->bwrap : "bwrap");
            rc = FARM_EUNSUPPORTED;
            goto out;
        }
        if (o->network == SANDBOX_NET_ALLOWLIST || prepared) {
            helper = realpath(o->helper ? o->helper : "/proc/self/exe", NULL);
            if (!helper) {
                farm_error_set("sandbox: cannot find the farm binary for the helper (%s)",
                               o->helper ? o->helper : "/proc/self/exe");
                rc = FARM_EINVALID;
                goto out;
            }
        }
        if (o->network == SANDBOX_NET_ALLOWLIST && (rc = make_proxy(s)) < 0)
            goto out;
        if (drop && o->dir && o->chown_dir && (rc = give_dir(o)) < 0)
            goto out;
        rc = sbx_seccomp_fd(&seccomp_fd);
        if (rc < 0)
            goto out;
        rc = build_argv(&args, s, exe, helper);
        if (rc < 0) {
            if (!farm_error_last()[0] || rc == FARM_ENOMEM || rc == FARM_ETOOBIG)
                farm_error_set("sandbox: cannot build the command line (%s)", farm_error_name(rc));
            goto out;
        }
    }
    rc = build_env(&env, o);
    if (rc < 0) {
        farm_error_set("out of memory");
        goto out;
    }
    rc = sbx_cgroup_create(&s->cg, o->memory_mb, o->pids, o->cpu_percent);
    if (rc < 0)
        goto out;

    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
    plan.exe = exe;
    plan.fds[0] = devnull;
    plan.fds[1] = outp[1];
    plan.fds[2] = errp[1];
    plan.seccomp_fd = seccomp_fd;
    plan.info_fd = o->unsafe_none ? -1 : infop[1];
    plan.report_fd = rep[1];
    plan.cmd_fd = cmdp[1];
    plan.ncg = sbx_cgroup_procs_fds(s->cg, plan.cg_fds, 4);
    rlim_t nofile = (rlim_t)(o->nofile ? o->nofile : 1024);
    rlim_t fsize = (rlim_t)(o->disk_mb ? o->disk_mb : 1024) << 20;
    plan.nofile = (struct rlimit){nofile, nofile};
    plan.fsize = (struct rlimit){fsize, fsize};
    /* RLIMIT_NPROC counts every process of the host uid, sandboxes together;
     * with a pids cgroup it is only a backstop, so it is set looser. */
    rlim_t nproc = RLIM_INFINITY;
    if (o->pids > 0 && drop)
        nproc = (rlim_t)o->pids * (s->cg ? 8 : 1) + 16;
    plan.nproc = (struct rlimit){nproc, nproc};
    plan.drop = drop;
    plan.uid = o->host_uid;
    plan.gid = o->host_gid;
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
    int rc = check(&o, 1);
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
    close_fd(&s->cmd_w);
    return rc;
}

/* Kill everything the run started. */
static void kill_tree(sandbox *s)
{
    int ns = atomic_load(&s->ns_init);
    if (ns > 0)
        kill(ns, SIGKILL);
    if (s->pid > 0) {
        if (s->o->unsafe_none)
            kill(-s->pgid, SIGKILL); /* its session and process group */
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
    if (v > 1)
        atomic_store(&s->ns_init, (int)v);
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

int sandbox_wait(sandbox *s, sandbox_result *r)
{
    memset(r, 0, sizeof(*r));
    r->exit_code = -1;
    r->peak_memory_kb = -1;
    if (s->prepared && !s->launched) {
        farm_error_set("sandbox: wait before launch");
        return FARM_EINVALID;
    }
    const sandbox_opts *o = s->o;
    int64_t deadline = o->timeout_ms > 0 ? s->start_ms + o->timeout_ms : -1;
    int64_t drain_until = -1;
    int exited = 0;
    struct rusage ru = {0};
    int status = 0;
    char chunk[65536];

    while (s->out_fd >= 0 || s->err_fd >= 0 || !exited) {
        struct pollfd p[5];
        int np = 0, i_out = -1, i_err = -1, i_info = -1, i_pid = -1, i_stop = -1;
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
        int64_t now = clock_mono_ms();
        int64_t wake = -1;
        if (deadline >= 0 && !s->killed)
            wake = deadline;
        if (drain_until >= 0 && (wake < 0 || drain_until < wake))
            wake = drain_until;
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
        if (drain_until >= 0 && now >= drain_until) {
            /* something outside the tree holds the pipes: stop listening */
            close_fd(&s->out_fd);
            close_fd(&s->err_fd);
            close_fd(&s->info_fd);
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
        if (i_pid >= 0 && (p[i_pid].revents & POLLIN)) {
            pid_t w;
            do
                w = wait4(s->pid, &status, 0, &ru);
            while (w < 0 && errno == EINTR);
            exited = 1;
            s->pid = -1;
            /* anything left (a daemon in unsafe mode, a straggler in the
             * cgroup) dies now; output already written may still drain */
            if (o->unsafe_none) {
                kill(-s->pgid, SIGKILL);
                sbx_cgroup_kill(s->cg);
            }
            drain_until = clock_mono_ms() + DRAIN_MS;
        }
    }
    r->wall_ms = clock_mono_ms() - s->start_ms;
    r->cpu_ms = (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
                (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
    if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
        if (!o->unsafe_none && r->exit_code > 128 && r->exit_code < 128 + 65)
            r->term_signal = r->exit_code - 128; /* bubblewrap's way of saying so */
    } else if (WIFSIGNALED(status)) {
        r->term_signal = WTERMSIG(status);
    }
    if (r->timed_out || r->stopped)
        r->exit_code = -1;
    int oom = 0, pids_hit = 0;
    int64_t peak = -1;
    sbx_cgroup_stats(s->cg, &peak, &oom, &pids_hit);
    r->peak_memory_kb = peak >= 0 ? peak : (int64_t)ru.ru_maxrss;
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
