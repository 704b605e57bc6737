/*
 * sandbox_wait.c - watching a run to its end, and ending it early.
 *
 * sandbox_wait() streams stdout and stderr to the caller while it waits on
 * a pidfd of our child, the deadline, a stop pipe and, for a prepared
 * sandbox, the helper's command socket, on which the helper reports the
 * command's wait status. A timeout or a stop (sandbox_stop(), from any
 * thread or a signal handler) kills the namespace's init, which takes every
 * process in the pid namespace with it, daemons included, and the cgroup is
 * emptied as a second line. The spawn itself is sandbox.c's.
 */
#include "internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_MAX_OUTPUT (64u << 20)

/* --- ending the run ----------------------------------------------------- */

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

/* Kill the namespace's init (which takes every process of the namespace
 * with it) and the session our child leads: the keeper, bubblewrap, and a
 * namespace's init still in its set-up (it calls setsid() late). What the
 * info pipe already holds names the init; read it first. */
void sbx_kill_tree(sandbox *s)
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

/* --- the output --------------------------------------------------------- */

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
        sbx_close_fd(fds[k]);
    }
    sbx_close_fd(&s->info_fd);
}

/* --- the watch loop ----------------------------------------------------- */

/* One sandbox_wait() in progress. */
typedef struct watch {
    sandbox *s;
    sandbox_result *r;
    int64_t deadline;     /* -1: no timeout */
    int exited;           /* the command is over: our child reaped, or the helper said so */
    int status;           /* our child's wait status */
    struct rusage ru;     /* and its resource use */
    int helper_status;    /* prepared: the command's wait status, from the helper; else -1 */
    char hs[sizeof(int)]; /* the helper's status as it arrives */
    size_t hs_len;
    char chunk[65536];
} watch;

/* Where each descriptor sits in the poll set; -1 when it is not in it. */
typedef struct slots {
    int out, err, info, pid, stop, cmd;
} slots;

static nfds_t poll_set(const watch *w, struct pollfd *p, slots *ix)
{
    const sandbox *s = w->s;
    nfds_t np = 0;
    *ix = (slots){-1, -1, -1, -1, -1, -1};
    if (s->out_fd >= 0)
        p[ix->out = (int)np++] = (struct pollfd){s->out_fd, POLLIN, 0};
    if (s->err_fd >= 0)
        p[ix->err = (int)np++] = (struct pollfd){s->err_fd, POLLIN, 0};
    if (s->info_fd >= 0)
        p[ix->info = (int)np++] = (struct pollfd){s->info_fd, POLLIN, 0};
    if (!w->exited)
        p[ix->pid = (int)np++] = (struct pollfd){s->pidfd, POLLIN, 0};
    if (!s->killed)
        p[ix->stop = (int)np++] = (struct pollfd){s->stop_r, POLLIN, 0};
    if (!w->exited && s->cmd_w >= 0)
        p[ix->cmd = (int)np++] = (struct pollfd){s->cmd_w, POLLIN, 0};
    return np;
}

/* Until the deadline (at most a minute at a time), or for ever. */
static int poll_timeout(const watch *w)
{
    int64_t now = clock_mono_ms();
    int64_t wake = -1;
    if (w->deadline >= 0 && !w->s->killed)
        wake = w->deadline;
    return wake < 0 ? -1 : (int)(wake > now ? (wake - now > 60000 ? 60000 : wake - now) : 0);
}

static int ready(const struct pollfd *p, int i, short events)
{
    return i >= 0 && (p[i].revents & events);
}

static void check_deadline(watch *w)
{
    int64_t now = clock_mono_ms();
    if (w->deadline >= 0 && now >= w->deadline && !w->s->killed && !w->exited) {
        w->r->timed_out = 1;
        sbx_kill_tree(w->s);
    }
}

static void take_stop(watch *w, const struct pollfd *p, const slots *ix)
{
    if (!ready(p, ix->stop, POLLIN))
        return;
    if (!w->exited) {
        w->r->stopped = 1;
        sbx_kill_tree(w->s);
    }
    char tmp[16];
    while (read(w->s->stop_r, tmp, sizeof(tmp)) > 0)
        ;
}

static void read_output(watch *w, const struct pollfd *p, const slots *ix)
{
    sandbox *s = w->s;
    int idx[2] = {ix->out, ix->err};
    int *fds[2] = {&s->out_fd, &s->err_fd};
    for (int k = 0; k < 2; k++) {
        if (!ready(p, idx[k], POLLIN | POLLHUP | POLLERR) || *fds[k] < 0)
            continue;
        ssize_t got = read(*fds[k], w->chunk, sizeof(w->chunk));
        if (got > 0)
            deliver(s, w->r, k == 0 ? SANDBOX_STDOUT : SANDBOX_STDERR, w->chunk, (size_t)got);
        else if (got == 0 || (errno != EINTR && errno != EAGAIN))
            sbx_close_fd(fds[k]);
    }
}

static void read_info(watch *w, const struct pollfd *p, const slots *ix)
{
    sandbox *s = w->s;
    if (!ready(p, ix->info, POLLIN | POLLHUP | POLLERR) || s->info_fd < 0)
        return;
    ssize_t got = read(s->info_fd, w->chunk, sizeof(w->chunk));
    if (got > 0) {
        if (buf_append(&s->info, w->chunk, (size_t)got) == 0)
            parse_info(s);
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        sbx_close_fd(&s->info_fd);
    }
}

static void read_helper_status(watch *w, const struct pollfd *p, const slots *ix)
{
    sandbox *s = w->s;
    if (!ready(p, ix->cmd, POLLIN | POLLHUP | POLLERR))
        return;
    ssize_t got = read(s->cmd_w, w->hs + w->hs_len, sizeof(w->hs) - w->hs_len);
    if (got > 0)
        w->hs_len += (size_t)got;
    else if (got == 0 || (errno != EINTR && errno != EAGAIN))
        sbx_close_fd(&s->cmd_w); /* no status after all: bubblewrap's exit will say */
    if (w->hs_len == sizeof(w->hs)) {
        /* The helper saw the command end: done, without waiting for
         * the sandbox to come down (sandbox_free() reaps it). */
        memcpy(&w->helper_status, w->hs, sizeof(w->hs));
        sbx_close_fd(&s->cmd_w);
        w->exited = 1;
        drain(s, w->r, w->chunk, sizeof(w->chunk));
    }
}

static void reap_child(watch *w, const struct pollfd *p, const slots *ix)
{
    sandbox *s = w->s;
    if (w->exited || !ready(p, ix->pid, POLLIN))
        return;
    pid_t got;
    do
        got = wait4(s->pid, &w->status, 0, &w->ru);
    while (got < 0 && errno == EINTR);
    w->exited = 1;
    s->pid = -1;
    /* anything left (a daemon in unsafe mode, a straggler in the
     * cgroup) dies now */
    if (s->o->unsafe_none) {
        kill(-s->pgid, SIGKILL);
        sbx_cgroup_kill(s->cg);
    }
    /* The command's output is all in the pipes by now (it has
     * exited); take it and stop, without waiting for the namespace's
     * teardown to close them. */
    drain(s, w->r, w->chunk, sizeof(w->chunk));
}

/* Poll until the output has ended and the command is over. */
static int watch_run(watch *w)
{
    sandbox *s = w->s;
    while (s->out_fd >= 0 || s->err_fd >= 0 || !w->exited) {
        struct pollfd p[6];
        slots ix;
        nfds_t np = poll_set(w, p, &ix);
        int n = poll(p, np, poll_timeout(w));
        if (n < 0 && errno != EINTR) {
            farm_error_set("sandbox: poll: %s", strerror(errno));
            sbx_kill_tree(s);
            return FARM_EIO;
        }
        check_deadline(w);
        if (n <= 0)
            continue;
        take_stop(w, p, &ix);
        read_output(w, p, &ix);
        read_info(w, p, &ix);
        read_helper_status(w, p, &ix);
        reap_child(w, p, &ix);
    }
    return 0;
}

/* --- the result --------------------------------------------------------- */

static void result_exit(const watch *w)
{
    sandbox_result *r = w->r;
    if (w->helper_status >= 0) {
        if (WIFEXITED(w->helper_status)) {
            r->exit_code = WEXITSTATUS(w->helper_status);
        } else if (WIFSIGNALED(w->helper_status)) {
            r->term_signal = WTERMSIG(w->helper_status);
            r->exit_code = 128 + r->term_signal; /* as bubblewrap would say it */
        }
    } else if (WIFEXITED(w->status)) {
        r->exit_code = WEXITSTATUS(w->status);
        if (!w->s->o->unsafe_none && r->exit_code > 128 && r->exit_code < 128 + 65)
            r->term_signal = r->exit_code - 128; /* bubblewrap's way of saying so */
    } else if (WIFSIGNALED(w->status)) {
        r->term_signal = WTERMSIG(w->status);
    }
    if (r->timed_out || r->stopped)
        r->exit_code = -1;
}

static void result_usage(const watch *w)
{
    sandbox_result *r = w->r;
    const struct rusage *ru = &w->ru;
    int unsafe = w->s->o->unsafe_none;
    int oom = 0, pids_hit = 0;
    int64_t peak = -1, cpu = -1;
    sbx_cgroup_stats(w->s->cg, &peak, &cpu, &oom, &pids_hit);
    /* Without a cgroup only unsafe mode's rusage is whole: under bubblewrap
     * the namespace's init reaps the command and is itself out of reach. */
    int64_t ru_cpu = (int64_t)ru->ru_utime.tv_sec * 1000 + ru->ru_utime.tv_usec / 1000 +
                     (int64_t)ru->ru_stime.tv_sec * 1000 + ru->ru_stime.tv_usec / 1000;
    r->cpu_ms = cpu >= 0 ? cpu : unsafe ? ru_cpu : -1;
    r->peak_memory_kb = peak >= 0 ? peak : unsafe ? (int64_t)ru->ru_maxrss : -1;
    r->oom_killed = oom;
    r->pids_limited = pids_hit;
}

int sandbox_wait(sandbox *s, sandbox_result *r)
{
    assert(s && r);
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
    watch w = {.s = s, .r = r, .deadline = -1, .helper_status = -1};
    if (s->o->timeout_ms > 0)
        w.deadline = s->start_ms + s->o->timeout_ms;
    int rc = watch_run(&w);
    if (rc < 0)
        return rc;
    r->wall_ms = clock_mono_ms() - s->start_ms;
    result_exit(&w);
    result_usage(&w);
    return 0;
}
