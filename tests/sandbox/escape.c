/*
 * escape.c - escape attempts, run inside the sandbox by run_escapes.py.
 *
 * One program, one attempt per mode: `escape MODE [ARGS...]`. Each attempt
 * tries to do something a sandboxed agent must not be able to do and exits
 * ESCAPED (0) when it managed, BLOCKED (10) when the sandbox stopped it, or
 * another status when the attempt itself could not be made (a test bug). It
 * always prints one line saying what happened, for the TAP log. Built
 * without sanitizers: it runs under the seccomp filter and hard limits.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ESCAPED 0
#define BLOCKED 10
#define BROKEN  20

static int escaped(const char *what)
{
    printf("ESCAPED: %s\n", what);
    return ESCAPED;
}

static int blocked(const char *what, int err)
{
    printf("blocked: %s (%s)\n", what, err ? strerror(err) : "no error code");
    return BLOCKED;
}

static int broken(const char *what)
{
    printf("BROKEN: %s (%s)\n", what, strerror(errno));
    return BROKEN;
}

/* Read a file given by path: escaped when any byte comes back. */
static int read_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return blocked(path, errno);
    char c;
    ssize_t r = read(fd, &c, 1);
    int e = errno;
    close(fd);
    return r >= 0 ? escaped(path) : blocked(path, e);
}

static int write_outside(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/farm-escape-%d", argv[i], (int)getpid());
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            close(fd);
            unlink(p);
            return escaped(p);
        }
    }
    return blocked("no directory outside the worktree was writable", EROFS);
}

static int tcp_connect(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
        return -2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* connect IP PORT...: escaped when any connection opens. */
static int connect_any(int argc, char **argv)
{
    int last = 0;
    for (int i = 0; i + 1 < argc; i += 2) {
        int fd = tcp_connect(argv[i], atoi(argv[i + 1]));
        if (fd == -2)
            return broken("bad address");
        if (fd >= 0) {
            close(fd);
            char what[128];
            snprintf(what, sizeof(what), "connected to %s:%s", argv[i], argv[i + 1]);
            return escaped(what);
        }
        last = errno;
    }
    return blocked("every connection failed", last);
}

/* proxy_get HOST PORT: a plain-HTTP GET through HTTP_PROXY; prints the status
 * line. Exit 0 on a 200 (this one is a positive control as well). */
static int proxy_get(const char *host, const char *port)
{
    const char *proxy = getenv("HTTP_PROXY");
    if (!proxy || strncmp(proxy, "http://127.0.0.1:", 17) != 0)
        return broken("no HTTP_PROXY on loopback");
    int fd = tcp_connect("127.0.0.1", atoi(proxy + 17));
    if (fd < 0)
        return blocked("proxy unreachable", errno);
    char req[512];
    int n = snprintf(req, sizeof(req), "GET http://%s:%s/ HTTP/1.0\r\nHost: %s\r\n\r\n", host, port,
                     host);
    if (write(fd, req, (size_t)n) != n)
        return broken("write");
    char resp[256] = "";
    ssize_t r = read(fd, resp, sizeof(resp) - 1);
    close(fd);
    if (r <= 0)
        return blocked("no answer", errno);
    resp[r] = '\0';
    resp[strcspn(resp, "\r\n")] = '\0';
    if (strstr(resp, " 200 "))
        return escaped(resp);
    return blocked(resp, 0);
}

/* proxy_connect HOST PORT: CONNECT through the proxy. */
static int proxy_connect(const char *host, const char *port)
{
    const char *proxy = getenv("HTTPS_PROXY");
    if (!proxy || strncmp(proxy, "http://127.0.0.1:", 17) != 0)
        return broken("no HTTPS_PROXY on loopback");
    int fd = tcp_connect("127.0.0.1", atoi(proxy + 17));
    if (fd < 0)
        return blocked("proxy unreachable", errno);
    char req[512];
    int n = snprintf(req, sizeof(req), "CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", host, port,
                     host, port);
    if (write(fd, req, (size_t)n) != n)
        return broken("write");
    char resp[256] = "";
    ssize_t r = read(fd, resp, sizeof(resp) - 1);
    close(fd);
    if (r <= 0)
        return blocked("no answer", errno);
    resp[r] = '\0';
    resp[strcspn(resp, "\r\n")] = '\0';
    return strstr(resp, " 200 ") ? escaped(resp) : blocked(resp, 0);
}

static int abstract_unix(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sa.sun_path + 1, name, n);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) == 0)
        return escaped("connected to the host's abstract socket");
    return blocked("abstract socket", errno);
}

static int tiocsti(void)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0)
        return broken("no pty to try on");
    int s = open(ptsname(m), O_RDWR); /* becomes our controlling tty: we lead a session */
    if (s < 0)
        return broken("open pts");
    ioctl(s, TIOCSCTTY, 0);
    char c = 'x';
    if (ioctl(s, TIOCSTI, &c) == 0)
        return escaped("TIOCSTI injected a byte");
    int e = errno;
    /* also with garbage in the upper 32 bits of the request */
    if (syscall(SYS_ioctl, s, 0xdead00000000UL | TIOCSTI, &c) == 0)
        return escaped("TIOCSTI with a high-bits request");
    return blocked("TIOCSTI", e);
}

static int io_uring(void)
{
    char params[120] = {0};
    long r = syscall(425 /* io_uring_setup */, 8, params);
    if (r >= 0)
        return escaped("io_uring_setup returned a ring");
    return blocked("io_uring_setup", errno);
}

static int ptrace_sibling(void)
{
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    long r = ptrace(PTRACE_ATTACH, child, 0, 0);
    int e = errno;
    char data[8];
    struct iovec local = {data, sizeof(data)}, remote = {(void *)&local, sizeof(data)};
    ssize_t v = process_vm_readv(child, &local, 1, &remote, 1, 0);
    int e2 = errno;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (r == 0)
        return escaped("PTRACE_ATTACH to a sibling");
    if (v >= 0)
        return escaped("process_vm_readv of a sibling");
    (void)e2;
    return blocked("ptrace and process_vm_readv", e);
}

/* proc_root PATH: reach a host path through /proc/1/root and friends. */
static int proc_root(const char *path)
{
    const char *roots[] = {"/proc/1/root", "/proc/self/root", "/proc/1/cwd", "/proc/2/root"};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s%s", roots[i], path);
        int fd = open(p, O_RDONLY);
        if (fd >= 0) {
            close(fd);
            return escaped(p);
        }
    }
    return blocked("no /proc/*/root led to the host path", ENOENT);
}

/* Any descriptor other than 0-2 (and the directory being listed) inherited
 * from the farm is a way out (a directory fd, a socket, the store). */
static int proc_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return broken("opendir /proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
            continue;
        char link[256] = "", p[64];
        snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(p, link, sizeof(link) - 1);
        if (n > 0)
            link[n] = '\0';
        closedir(d);
        char what[400];
        snprintf(what, sizeof(what), "inherited descriptor %d -> %s", fd, link);
        return escaped(what);
    }
    closedir(d);
    return blocked("only stdin, stdout and stderr were inherited", 0);
}

static int do_mount(void)
{
    mkdir("/tmp/m", 0755);
    if (mount("none", "/tmp/m", "tmpfs", 0, NULL) == 0)
        return escaped("mounted a tmpfs");
    int e = errno;
    if (mount("/", "/tmp/m", NULL, MS_BIND | MS_REC, NULL) == 0)
        return escaped("bind-mounted /");
    if (syscall(SYS_umount2, "/proc", MNT_DETACH) == 0)
        return escaped("unmounted /proc");
    return blocked("mount", e);
}

static int new_userns(void)
{
    if (unshare(CLONE_NEWUSER) == 0)
        return escaped("unshare(CLONE_NEWUSER)");
    int e = errno;
    if (unshare(CLONE_NEWNS) == 0)
        return escaped("unshare(CLONE_NEWNS)");
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        waitpid((pid_t)pid, NULL, 0);
        return escaped("clone(CLONE_NEWUSER)");
    }
    pid = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        waitpid((pid_t)pid, NULL, 0);
        return escaped("clone(CLONE_NEWNET)");
    }
    return blocked("new namespaces", e);
}

/* fork_bomb MAX: fork sleepers until fork fails; escaped when MAX succeed. */
static int fork_bomb(int max)
{
    pid_t *kids = calloc((size_t)max, sizeof(pid_t));
    if (!kids)
        return broken("calloc");
    int n = 0;
    int e = 0;
    for (; n < max; n++) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0) {
            e = errno;
            break;
        }
        kids[n] = p;
    }
    for (int i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (int i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    free(kids);
    char what[64];
    snprintf(what, sizeof(what), "fork refused after %d children", n);
    return n >= max ? escaped("forked without limit") : blocked(what, e);
}

/* memory_hog MB: touch MB mebibytes; escaped when all of it was had. */
static int memory_hog(int mb)
{
    for (int i = 0; i < mb; i++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return blocked("mmap refused", errno);
        memset(p, i & 0xff, 1 << 20);
    }
    return escaped("touched all the memory asked for");
}

/* disk_fill PATH MB: write until an error; escaped when MB were written. */
static int disk_fill(const char *path, int mb)
{
    signal(SIGXFSZ, SIG_IGN);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return broken("open");
    static char block[1 << 16];
    memset(block, 'x', sizeof(block));
    long long total = 0;
    while (total < (long long)mb << 20) {
        ssize_t w = write(fd, block, sizeof(block));
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(path);
            char what[96];
            snprintf(what, sizeof(what), "stopped after %lld MiB", total >> 20);
            return blocked(what, e);
        }
        total += w;
    }
    close(fd);
    unlink(path);
    return escaped("wrote everything");
}

/* daemon FILE: a double-forked setsid daemon that writes FILE every 50 ms;
 * the parent exits at once. The driver checks nothing outlives the run. */
static int daemonize(const char *file)
{
    pid_t p = fork();
    if (p == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        signal(SIGHUP, SIG_IGN);
        for (long i = 0;; i++) {
            int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dprintf(fd, "%ld %d\n", i, (int)getpid());
                close(fd);
            }
            struct timespec t = {0, 50 * 1000 * 1000};
            nanosleep(&t, NULL);
        }
    }
    waitpid(p, NULL, 0);
    /* exit only once the daemon is really running: its first beat is there */
    struct stat st;
    for (int i = 0; i < 500 && stat(file, &st) != 0; i++) {
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    printf("daemon started\n");
    return BLOCKED; /* whether it escaped is for the driver to see */
}

/* heartbeat FILE: write FILE every 50 ms forever (the driver kills the farm). */
static int __attribute__((noreturn)) heartbeat(const char *file)
{
    for (long i = 0;; i++) {
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dprintf(fd, "%ld\n", i);
            close(fd);
        }
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
}

static int signal_pid(int pid)
{
    if (kill(pid, SIGTERM) == 0)
        return escaped("signalled the farm");
    return blocked("kill", errno);
}

/* environ SECRET: look for SECRET in our environment and in every
 * /proc/PID/environ we can read. */
static int read_environ(const char *secret)
{
    extern char **environ;
    for (char **e = environ; *e; e++)
        if (strstr(*e, secret))
            return escaped("the secret is in our environment");
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char p[300], text[65536];
        snprintf(p, sizeof(p), "/proc/%s/environ", de->d_name);
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, text, sizeof(text) - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (text[i] == '\0')
                text[i] = '\n';
        if (n > 0) {
            text[n] = '\0';
            if (strstr(text, secret)) {
                closedir(d);
                return escaped(p);
            }
        }
    }
    if (d)
        closedir(d);
    return blocked("the secret is nowhere in reach", 0);
}

static int kernel_calls(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    if (syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)) >= 0 || errno != EPERM)
        return escaped("bpf not denied with EPERM");
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof(pe));
    pe.size = sizeof(pe);
    pe.type = PERF_TYPE_SOFTWARE;
    pe.config = PERF_COUNT_SW_CPU_CLOCK;
    if (syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0) >= 0 || errno != EPERM)
        return escaped("perf_event_open not denied with EPERM");
    if (syscall(SYS_userfaultfd, 0) >= 0 || errno != EPERM)
        return escaped("userfaultfd not denied with EPERM");
    if (syscall(SYS_keyctl, 0, 0, 0, 0, 0) >= 0 || errno != EPERM)
        return escaped("keyctl not denied with EPERM");
    if (syscall(SYS_add_key, "user", "x", "y", 1, -1) >= 0 || errno != EPERM)
        return escaped("add_key not denied with EPERM");
    if (syscall(SYS_init_module, NULL, 0, "") >= 0 || errno != EPERM)
        return escaped("init_module not denied with EPERM");
    if (syscall(SYS_kexec_load, 0, 0, NULL, 0) >= 0 || errno != EPERM)
        return escaped("kexec_load not denied with EPERM");
    if (syscall(SYS_setns, 0, 0) >= 0 || errno != EPERM)
        return escaped("setns not denied with EPERM");
    if (syscall(SYS_pivot_root, "/tmp", "/tmp") >= 0 || errno != EPERM)
        return escaped("pivot_root not denied with EPERM");
    return blocked("bpf, perf_event_open, userfaultfd, keyctl, add_key, init_module, kexec_load, "
                   "setns, pivot_root all denied by the filter",
                   EPERM);
}

/* A 32-bit syscall (int 0x80) from a 64-bit process: another ABI. */
static int other_abi(void)
{
    pid_t p = fork();
    if (p == 0) {
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L /* i386 getpid */) : "memory");
        _exit(ret > 0 ? 0 : 1);
    }
    int st;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return escaped("int 0x80 getpid answered");
    if (WIFSIGNALED(st))
        return blocked("the i386 syscall killed the process", 0);
    return blocked("the i386 syscall failed", 0);
}

static int sysfs_write(void)
{
    const char *paths[] = {"/proc/sys/kernel/hostname", "/proc/sysrq-trigger",
                           "/sys/kernel/uevent_helper", "/proc/sys/vm/drop_caches"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int fd = open(paths[i], O_WRONLY);
        if (fd >= 0 && write(fd, "1", 1) == 1) {
            close(fd);
            return escaped(paths[i]);
        }
        if (fd >= 0)
            close(fd);
    }
    return blocked("/proc/sys, /proc/sysrq-trigger and /sys are not writable", EROFS);
}

static int become_root(void)
{
    if (setuid(0) == 0 && getuid() == 0)
        return escaped("setuid(0)");
    int e = errno;
    if (getuid() == 0 || geteuid() == 0)
        return escaped("running as uid 0 inside");
    return blocked("setuid(0)", e);
}

/* write_git DIR: change DIR/.git/hooks and DIR/.git/config. */
static int write_git(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/.git/hooks/pre-commit", dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0755);
    if (fd >= 0) {
        close(fd);
        return escaped(p);
    }
    int e = errno;
    snprintf(p, sizeof(p), "%s/.git/config", dir);
    fd = open(p, O_WRONLY | O_APPEND);
    if (fd >= 0) {
        close(fd);
        return escaped(p);
    }
    snprintf(p, sizeof(p), "%s/.git/hooks", dir);
    char q[4096];
    snprintf(q, sizeof(q), "%s/.git/hooks-moved", dir);
    if (rename(p, q) == 0)
        return escaped("renamed .git/hooks away");
    return blocked(".git/hooks and .git/config", e);
}

/* write_ok DIR: the positive control: the worktree is writable. */
static int write_ok(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/written-inside", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return broken("cannot write the worktree");
    fprintf(f, "hello from inside\n");
    fclose(f);
    printf("wrote %s\n", p);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return broken("usage: escape MODE [ARGS]");
    const char *m = argv[1];
    int n = argc - 2;
    char **a = argv + 2;
    if (!strcmp(m, "read") && n == 1)
        return read_file(a[0]);
    if (!strcmp(m, "write_outside"))
        return write_outside(n, a);
    if (!strcmp(m, "connect"))
        return connect_any(n, a);
    if (!strcmp(m, "proxy_get") && n == 2)
        return proxy_get(a[0], a[1]);
    if (!strcmp(m, "proxy_connect") && n == 2)
        return proxy_connect(a[0], a[1]);
    if (!strcmp(m, "abstract") && n == 1)
        return abstract_unix(a[0]);
    if (!strcmp(m, "tiocsti"))
        return tiocsti();
    if (!strcmp(m, "io_uring"))
        return io_uring();
    if (!strcmp(m, "ptrace"))
        return ptrace_sibling();
    if (!strcmp(m, "proc_root") && n == 1)
        return proc_root(a[0]);
    if (!strcmp(m, "proc_fds"))
        return proc_fds();
    if (!strcmp(m, "mount"))
        return do_mount();
    if (!strcmp(m, "userns"))
        return new_userns();
    if (!strcmp(m, "fork_bomb") && n == 1)
        return fork_bomb(atoi(a[0]));
    if (!strcmp(m, "memory_hog") && n == 1)
        return memory_hog(atoi(a[0]));
    if (!strcmp(m, "disk_fill") && n == 2)
        return disk_fill(a[0], atoi(a[1]));
    if (!strcmp(m, "daemon") && n == 1)
        return daemonize(a[0]);
    if (!strcmp(m, "heartbeat") && n == 1)
        return heartbeat(a[0]);
    if (!strcmp(m, "signal") && n == 1)
        return signal_pid(atoi(a[0]));
    if (!strcmp(m, "environ") && n == 1)
        return read_environ(a[0]);
    if (!strcmp(m, "kernel"))
        return kernel_calls();
    if (!strcmp(m, "other_abi"))
        return other_abi();
    if (!strcmp(m, "sysfs"))
        return sysfs_write();
    if (!strcmp(m, "root"))
        return become_root();
    if (!strcmp(m, "write_git") && n == 1)
        return write_git(a[0]);
    if (!strcmp(m, "write_ok") && n == 1)
        return write_ok(a[0]);
    return broken("unknown mode");
}
