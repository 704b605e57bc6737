/*
 * helper.c - farm-sandbox-helper, the farm's small program around and inside
 * every sandbox.
 *
 *     farm-sandbox-helper --keep --lifeline FD -- BWRAP [ARG...]
 *     farm-sandbox-helper --lifeline FD [--proxy PORT SOCKET] [--relay PORT SOCKET]
 *                         [--cmd-fd FD] [-- CMD [ARG...]]
 *
 * The lifeline: FD is the read end of a pipe whose write end only the farm
 * holds. When the farm dies, however it dies, the pipe reads as ended.
 * bubblewrap's --die-with-parent alone cannot promise that nothing outlives
 * the farm: the sandbox's init arms its parent-death signal only at the end
 * of the set-up, and before that it waits on an eventfd that its parent may
 * never write. A farm killed in those milliseconds would leave it behind,
 * for ever. So the helper has two places:
 * - outside, as the keeper (--keep): the farm starts it, and it starts
 *   bubblewrap. It is a child subreaper, so whatever bubblewrap leaves
 *   behind becomes its child; when bubblewrap ends, or the lifeline does, it
 *   kills and reaps every child it has, then exits with bubblewrap's status.
 * - inside, as the sandbox's first process, where it starts the command and
 *   also watches the lifeline: when it ends, it kills everything in the
 *   sandbox and exits. Two lines, so that one killed process is not enough
 *   to leave the agent's code running. Inside, it also serves:
 * - allowlist mode (--proxy): the sandbox's network namespace has only its
 *   own loopback and the egress proxy lives outside behind a Unix socket
 *   bound in. Most tools only know HTTP_PROXY=http://host:port, so the helper
 *   listens on 127.0.0.1:PORT and relays every connection to the socket.
 * - a relay bind (--relay), in every network mode: the same for one more
 *   socket of the farm's (the model gateway), with no proxy protocol.
 * - a prepared (warm) sandbox (--cmd-fd): the sandbox is spawned ahead and
 *   the helper waits on FD for the command and its environment, which
 *   sandbox_launch() sends when the work arrives; then it runs it and
 *   reports its wait status on FD.
 * It is its own program, linked with nothing but the C library, so that it
 * starts in well under a millisecond; the farm binary would take ten.
 */
#include "sandbox/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define HELPER_MAX_CONNS 128

typedef struct pair {
    int in;
    const char *sock;
} pair;

static int active;

static void *relay_one(void *arg)
{
    pair *pr = arg;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", pr->sock);
    int up = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (up >= 0 && connect(up, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        sbx_relay(pr->in, up);
    if (up >= 0)
        close(up);
    close(pr->in);
    free(pr);
    __atomic_sub_fetch(&active, 1, __ATOMIC_RELAXED);
    return NULL;
}

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The command message of sandbox_launch(): u32 argc, u32 envc, u32 bytes,
 * then argc + envc NUL-terminated strings in those bytes. The environment
 * entries are set over the sandbox's base environment. *out_argv is a
 * NULL-terminated vector into one heap block; the process execs soon after,
 * so it is never freed. */
static int read_command(int fd, char ***out_argv)
{
    uint32_t h[3];
    if (read_full(fd, h, sizeof(h)) < 0 || h[0] == 0 || h[0] > SANDBOX_MAX_ARGS ||
        h[1] > SANDBOX_MAX_ENV || h[2] > SANDBOX_MAX_TOTAL_BYTES)
        return -1;
    char *data = malloc((size_t)h[2] + 1);
    char **argv = calloc((size_t)h[0] + 1, sizeof(char *));
    if (!data || !argv || read_full(fd, data, h[2]) < 0)
        return -1;
    data[h[2]] = '\0';
    char *p = data, *end = data + h[2];
    for (uint32_t i = 0; i < h[0] + h[1]; i++) {
        if (p >= end)
            return -1;
        if (i < h[0]) {
            argv[i] = p;
        } else {
            char *eq = strchr(p, '=');
            if (!eq)
                return -1;
            *eq = '\0';
            if (setenv(p, eq + 1, 1) < 0)
                return -1;
            *eq = '=';
        }
        p += strlen(p) + 1;
    }
    *out_argv = argv;
    return 0;
}

/* Fork and exec the command; the child never returns. */
static pid_t spawn(char **cmd)
{
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "farm sandbox: fork: %s\n", strerror(errno));
        return -1;
    }
    if (child == 0) {
        signal(SIGPIPE, SIG_DFL);
        execvp(cmd[0], cmd);
        fprintf(stderr, "farm sandbox: %s: %s\n", cmd[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    return child;
}

/* Report the command's wait status to the farm (prepared sandboxes: it
 * knows at once, without waiting for the sandbox's own teardown) and exit
 * with it as a shell would. */
static void __attribute__((noreturn)) finish(int st, int cmd_fd)
{
    if (cmd_fd >= 0) {
        ssize_t w = write(cmd_fd, &st, sizeof(st));
        (void)w;
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* The farm is gone when the lifeline reads as ended (it never writes). */
static int farm_gone(int lifeline)
{
    struct pollfd pf = {lifeline, POLLIN, 0};
    return poll(&pf, 1, 0) > 0;
}

/* The farm died: take every process of the sandbox with it. In the pid
 * namespace, kill(-1) reaches all of them but ourselves and bubblewrap's
 * init, which exits when it has no children left. */
static void __attribute__((noreturn)) orphaned(void)
{
    kill(-1, SIGKILL);
    _exit(137);
}

/* A loopback listener for the proxy or the relay, or -1 (said on stderr). */
static int listen_proxy(int port)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0) {
        fprintf(stderr, "farm sandbox: proxy helper cannot listen on 127.0.0.1:%d: %s\n", port,
                strerror(errno));
        return -1;
    }
    return lfd;
}

/* Relay one proxy connection on a thread of its own. */
static void accept_one(int lfd, const char *sock)
{
    int in = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (in < 0)
        return;
    pair *pr = malloc(sizeof(*pr));
    pthread_t th;
    if (!pr || __atomic_load_n(&active, __ATOMIC_RELAXED) >= HELPER_MAX_CONNS) {
        free(pr);
        close(in);
        return;
    }
    pr->in = in;
    pr->sock = sock;
    __atomic_add_fetch(&active, 1, __ATOMIC_RELAXED);
    if (pthread_create(&th, NULL, relay_one, pr) != 0) {
        __atomic_sub_fetch(&active, 1, __ATOMIC_RELAXED);
        close(in);
        free(pr);
        return;
    }
    pthread_detach(th);
}

/* The listeners the helper serves while the command runs: the proxy's and
 * the relay's (lfd -1 when not asked for). */
typedef struct listener {
    int lfd;
    const char *sock;
} listener;

/* Watch child until it ends, and the lifeline: when the farm is gone,
 * gone() runs (and does not return). l (may be NULL): serve the listeners
 * meanwhile. The child's wait status, or -1 when the helper failed (the
 * child is killed then). */
static int watch(pid_t child, int lifeline, const listener *l, void (*gone)(void))
{
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0); /* -1 before Linux 5.3: we poll */
    for (;;) {
        struct pollfd pf[4] = {{pidfd, POLLIN, 0},
                               {lifeline, POLLIN, 0},
                               {l ? l[0].lfd : -1, POLLIN, 0},
                               {l ? l[1].lfd : -1, POLLIN, 0}};
        int n = poll(pf, 4, pidfd >= 0 ? -1 : 100);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && pf[1].revents)
            gone();
        if (pidfd < 0 || (n > 0 && pf[0].revents)) {
            int st;
            pid_t w = waitpid(child, &st, pidfd < 0 ? WNOHANG : 0);
            if (w == child)
                return st;
        }
        for (int k = 0; k < 2; k++)
            if (n > 0 && (pf[2 + k].revents & POLLIN))
                accept_one(l[k].lfd, l[k].sock);
    }
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    return -1;
}

/* Run the command under watch(); its wait status, or -1. */
static int run(char **cmd, int lifeline, const listener *l)
{
    pid_t child = spawn(cmd);
    return child < 0 ? -1 : watch(child, lifeline, l, orphaned);
}

/* --- outside: the keeper ------------------------------------------------ */

/* SIGKILL every child we have (bubblewrap, or what it left to us as the
 * subreaper): from /proc/self/task/TID/children, else a scan of /proc. */
static void kill_children(void)
{
    pid_t me = getpid();
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)me, (int)me);
    FILE *f = fopen(path, "re");
    if (f) {
        int pid;
        while (fscanf(f, "%d", &pid) == 1)
            if (pid > 1)
                kill(pid, SIGKILL);
        fclose(f);
        return;
    }
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        char stat[512];
        int pid = atoi(e->d_name);
        if (pid <= 1)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *sf = fopen(path, "re");
        if (!sf)
            continue;
        size_t n = fread(stat, 1, sizeof(stat) - 1, sf);
        fclose(sf);
        stat[n] = '\0';
        char *rp = strrchr(stat, ')'); /* the name may hold anything */
        int ppid = 0;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == me)
            kill(pid, SIGKILL);
    }
    if (d)
        closedir(d);
}

/* Kill and reap every child until none is left. */
static void reap_all(void)
{
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w > 0)
            continue;
        if (w < 0 && errno != EINTR)
            return; /* ECHILD: nobody left */
        kill_children();
        w = waitpid(-1, &st, 0);
        if (w < 0 && errno == ECHILD)
            return;
    }
}

/* The farm is gone: so is everything it started. */
static void __attribute__((noreturn)) keeper_orphaned(void)
{
    reap_all();
    _exit(137);
}

/* Start bubblewrap and stay its parent: its parent-death signal (from
 * --die-with-parent) is ours, not the farm's, so the farm's death never
 * catches it half-way through its set-up. */
static void __attribute__((noreturn)) keep(char **cmd, int lifeline)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        fprintf(stderr, "farm sandbox: cannot become a subreaper: %s\n", strerror(errno));
        _exit(125);
    }
    if (farm_gone(lifeline))
        _exit(137);
    pid_t me = getpid();
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "farm sandbox: fork: %s\n", strerror(errno));
        _exit(125);
    }
    if (child == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != me)
            _exit(125);
        fcntl(lifeline, F_SETFD, 0); /* bubblewrap hands it to the helper inside */
        execv(cmd[0], cmd);
        fprintf(stderr, "farm sandbox: %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    /* bubblewrap has the pipes and descriptors now; ours must not hold the
     * farm's ends open (it reads them to their end) */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; fd++)
        if (devnull >= 0)
            dup2(devnull, fd);
    close(FD_SECCOMP);
    close(FD_INFO);
    close(FD_CMD);
    int st = watch(child, lifeline, NULL, keeper_orphaned);
    if (st < 0) {
        reap_all();
        _exit(125);
    }
    reap_all();
    if (WIFSIGNALED(st)) {
        signal(WTERMSIG(st), SIG_DFL);
        raise(WTERMSIG(st));
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 125);
}

/* Every way out is _exit(): no exit-time handlers run. */
int main(int argc, char **argv)
{
    int port = 0, rport = 0, cmd_fd = -1, lifeline = -1, keeper = 0, i = 1;
    const char *sock = NULL, *rsock = NULL;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--proxy") && i + 2 < argc) {
            port = atoi(argv[i + 1]);
            sock = argv[i + 2];
            i += 2;
        } else if (!strcmp(argv[i], "--relay") && i + 2 < argc) {
            rport = atoi(argv[i + 1]);
            rsock = argv[i + 2];
            i += 2;
        } else if (!strcmp(argv[i], "--cmd-fd") && i + 1 < argc) {
            cmd_fd = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--keep")) {
            keeper = 1;
        } else if (!strcmp(argv[i], "--lifeline") && i + 1 < argc) {
            lifeline = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else {
            break;
        }
    }
    char **cmd = argv + i;
    if ((sock && (port < 1 || port > 65535 ||
                  strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))) ||
        (rsock && (rport < 1 || rport > 65535 || rport == port ||
                   strlen(rsock) >= sizeof(((struct sockaddr_un *)0)->sun_path))) ||
        lifeline < 0 || fcntl(lifeline, F_SETFD, FD_CLOEXEC) < 0 || (cmd_fd < 0 && i >= argc) ||
        (cmd_fd >= 0 && i < argc) || (keeper && (sock || rsock || cmd_fd >= 0))) {
        fprintf(stderr, "usage: farm-sandbox-helper --keep --lifeline FD -- BWRAP [ARG...]\n"
                        "       farm-sandbox-helper --lifeline FD [--proxy PORT SOCKET] "
                        "[--relay PORT SOCKET] [--cmd-fd FD] [-- CMD [ARG...]]\n"
                        "(the farm starts it inside each sandbox; it is not run by hand)\n");
        _exit(2);
    }
    if (keeper)
        keep(cmd, lifeline);
    signal(SIGPIPE, SIG_IGN);
    if (farm_gone(lifeline))
        orphaned();
    if (cmd_fd >= 0) {
        /* say we are ready: sandbox_prepare() returns when this arrives */
        if (write(cmd_fd, "R", 1) != 1)
            _exit(125);
        struct pollfd pf[2] = {{cmd_fd, POLLIN, 0}, {lifeline, POLLIN, 0}};
        while (poll(pf, 2, -1) < 0)
            if (errno != EINTR)
                _exit(125);
        if (pf[1].revents)
            orphaned();
        if (read_command(cmd_fd, &cmd) < 0)
            _exit(125);                     /* the farm went away or sent garbage: nothing to run */
        fcntl(cmd_fd, F_SETFD, FD_CLOEXEC); /* kept for the status, not for the command */
    }
    listener l[2] = {{-1, sock}, {-1, rsock}};
    if ((sock && (l[0].lfd = listen_proxy(port)) < 0) ||
        (rsock && (l[1].lfd = listen_proxy(rport)) < 0))
        _exit(125);
    int st = run(cmd, lifeline, l);
    if (st < 0)
        _exit(125);
    finish(st, cmd_fd);
}
