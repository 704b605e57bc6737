/*
 * git_watchdog.c - a stall timeout for libgit2's network operations.
 *
 * libgit2 1.5 has no connect or read timeout: a remote that accepts the
 * connection and then says nothing would hold a fetch, and with it the
 * mirror's exclusive lock, forever. So every fetch and push registers its
 * thread here and its callbacks report progress; one watchdog thread looks
 * every 200 ms and, when an operation has seen no progress for its stall
 * limit, interrupts its thread with a signal whose handler does nothing and
 * is installed without SA_RESTART. The blocking connect(), recv() or send()
 * inside libgit2 then fails with EINTR, libgit2 returns an error, and the
 * caller reports FARM_ETIMEOUT. The signal repeats until the operation
 * returns, in case one lands outside a system call.
 */
#include "git_internal.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static vcs_watch *watches;
static int started;

static void on_signal(int sig)
{
    (void)sig;
}

int vcs_watch_signal(void)
{
    return SIGRTMIN + 5;
}

static void *watchdog(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (!watches)
            pthread_cond_wait(&wake, &mu);
        int64_t now = clock_mono_ms();
        for (vcs_watch *w = watches; w; w = w->next) {
            if (now - __atomic_load_n(&w->last_ms, __ATOMIC_RELAXED) > w->stall_ms) {
                __atomic_store_n(&w->fired, 1, __ATOMIC_RELAXED);
                pthread_kill(w->thread, vcs_watch_signal());
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&wake, &mu, &ts);
    }
    return NULL;
}

/* Once, from vcs_git_init(): the handler and the thread. */
int vcs_watch_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the point is to interrupt */
    if (sigaction(vcs_watch_signal(), &sa, NULL) < 0)
        return FARM_ERROR;
    return 0;
}

static int thread_start(void)
{
    pthread_t t;
    pthread_attr_t attr;
    int rc;
    if (started)
        return 0;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* the watchdog itself must never be the one interrupted */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&t, &attr, watchdog, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return FARM_ERROR;
    started = 1;
    return 0;
}

void vcs_watch_start(vcs_watch *w, int64_t stall_ms)
{
    w->thread = pthread_self();
    w->stall_ms = stall_ms > 0 ? stall_ms : 120000;
    w->last_ms = clock_mono_ms();
    w->fired = 0;
    /* make sure this thread can receive the signal */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, vcs_watch_signal());
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    pthread_mutex_lock(&mu);
    if (thread_start() == 0) {
        w->next = watches;
        watches = w;
        w->active = 1;
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&mu);
}

void vcs_watch_touch(vcs_watch *w)
{
    __atomic_store_n(&w->last_ms, clock_mono_ms(), __ATOMIC_RELAXED);
}

void vcs_watch_stop(vcs_watch *w)
{
    pthread_mutex_lock(&mu);
    if (w->active) {
        for (vcs_watch **pp = &watches; *pp; pp = &(*pp)->next)
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        w->active = 0;
    }
    pthread_mutex_unlock(&mu);
}
