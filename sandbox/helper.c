/*
 * helper.c - the farm binary's part inside a sandbox.
 *
 *     farm sandbox __helper [--proxy PORT SOCKET] [--cmd-fd FD] [-- CMD [ARG...]]
 *
 * Two jobs, either or both:
 * - allowlist mode (--proxy): the sandbox's network namespace has only its
 *   own loopback and the egress proxy lives outside behind a Unix socket
 *   bound in. Most tools only know HTTP_PROXY=http://host:port, so the helper
 *   listens on 127.0.0.1:PORT, relays every connection to the socket, runs
 *   the command as its child and exits with its status (128+N for a signal).
 * - a prepared (warm) sandbox (--cmd-fd): the sandbox is spawned ahead and
 *   the helper waits on FD for the command and its environment, which
 *   sandbox_launch() sends when the work arrives; then it runs it.
 * Without --proxy the helper execs the command in its own place.
 */
#include "internal.h"

#include <arpa/inet.h>
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

/* Serve the proxy's loopback listener while the command runs; its wait
 * status, or -1 when the helper itself failed. */
static int proxy_and_run(int port, const char *sock, char **cmd)
{
    signal(SIGPIPE, SIG_IGN);
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
    pid_t child = spawn(cmd);
    if (child < 0)
        return -1;
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    for (;;) {
        struct pollfd pf[2] = {{lfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int n = poll(pf, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 100);
        if (n < 0 && errno != EINTR)
            break;
        if (pidfd < 0 || (n > 0 && pf[1].revents)) {
            int st;
            pid_t w = waitpid(child, &st, pidfd < 0 ? WNOHANG : 0);
            if (w == child)
                return st;
        }
        if (n > 0 && (pf[0].revents & POLLIN)) {
            int in = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (in < 0)
                continue;
            pair *pr = malloc(sizeof(*pr));
            pthread_t th;
            if (!pr || __atomic_load_n(&active, __ATOMIC_RELAXED) >= HELPER_MAX_CONNS) {
                free(pr);
                close(in);
                continue;
            }
            pr->in = in;
            pr->sock = sock;
            __atomic_add_fetch(&active, 1, __ATOMIC_RELAXED);
            if (pthread_create(&th, NULL, relay_one, pr) != 0) {
                __atomic_sub_fetch(&active, 1, __ATOMIC_RELAXED);
                close(in);
                free(pr);
                continue;
            }
            pthread_detach(th);
        }
    }
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    return -1;
}

/* Every way out is _exit(): no exit-time handlers run (a sanitizer's leak
 * check cannot work under the sandbox's seccomp filter and would change the
 * command's status). */
int sandbox_helper_main(int argc, char **argv)
{
    int port = 0, cmd_fd = -1, i = 1;
    const char *sock = NULL;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--proxy") && i + 2 < argc) {
            port = atoi(argv[i + 1]);
            sock = argv[i + 2];
            i += 2;
        } else if (!strcmp(argv[i], "--cmd-fd") && i + 1 < argc) {
            cmd_fd = atoi(argv[++i]);
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
        (cmd_fd < 0 && i >= argc) || (cmd_fd >= 0 && i < argc)) {
        fprintf(stderr, "usage: farm sandbox __helper [--proxy PORT SOCKET] [--cmd-fd FD] "
                        "[-- CMD [ARG...]]\n");
        _exit(2);
    }
    if (cmd_fd >= 0) {
        /* say we are ready: sandbox_prepare() returns when this arrives */
        if (write(cmd_fd, "R", 1) != 1)
            _exit(125);
        if (read_command(cmd_fd, &cmd) < 0)
            _exit(125);                     /* the farm went away or sent garbage: nothing to run */
        fcntl(cmd_fd, F_SETFD, FD_CLOEXEC); /* kept for the status, not for the command */
    }
    if (sock) {
        int st = proxy_and_run(port, sock, cmd);
        if (st < 0)
            _exit(125);
        finish(st, cmd_fd);
    }
    if (cmd_fd >= 0) {
        pid_t child = spawn(cmd);
        int st;
        if (child < 0)
            _exit(125);
        while (waitpid(child, &st, 0) < 0)
            if (errno != EINTR)
                _exit(125);
        finish(st, cmd_fd);
    }
    execvp(cmd[0], cmd);
    fprintf(stderr, "farm sandbox: %s: %s\n", cmd[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}
