/*
 * helper.c - the farm binary's part inside an allowlist-mode sandbox.
 *
 * The sandbox's network namespace has only its own loopback, and the egress
 * proxy lives outside behind a Unix socket bound in. Most tools only know
 * HTTP_PROXY=http://host:port, so this helper listens on 127.0.0.1:PORT inside,
 * relays every connection to the socket, runs the command as its child and
 * exits with the command's status (128+N for a signal).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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

int sandbox_helper_main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "farm sandbox __helper: usage: __helper PORT SOCKET -- CMD [ARG...]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *sock = argv[2];
    if (port < 1 || port > 65535 || strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "farm sandbox __helper: bad port or socket path\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0) {
        fprintf(stderr, "farm sandbox: proxy helper cannot listen on 127.0.0.1:%d: %s\n", port,
                strerror(errno));
        return 125;
    }
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "farm sandbox: fork: %s\n", strerror(errno));
        return 125;
    }
    if (child == 0) {
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[4], argv + 4);
        fprintf(stderr, "farm sandbox: %s: %s\n", argv[4], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    for (;;) {
        struct pollfd pf[2] = {{lfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int n = poll(pf, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 100);
        if (n < 0 && errno != EINTR)
            break;
        if (pidfd < 0 || (n > 0 && pf[1].revents)) {
            int st;
            pid_t w = waitpid(child, &st, pidfd < 0 ? WNOHANG : 0);
            /* _exit: no exit-time handlers (a sanitizer's leak check cannot
             * run under the sandbox's seccomp filter and would change the
             * status) */
            if (w == child)
                _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
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
    _exit(125);
}
