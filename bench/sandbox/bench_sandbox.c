/*
 * bench_sandbox.c - what the sandbox adds to starting a command.
 *
 * Spawns `true` N times (default 200) each way, interleaved so that load on
 * the machine hits all alike, with an agent's default limits (network none,
 * memory 4096 MiB, pids 512, seccomp, cgroups where delegated):
 *   - plain fork/exec/wait: the baseline;
 *   - sandbox_run(): a cold start, bubblewrap spawned on demand;
 *   - sandbox_launch() + sandbox_wait() on a sandbox spawned ahead with
 *     sandbox_prepare() (what a warm slot does; the preparation is not
 *     timed, as it happens before the work arrives).
 * Prints p50 and p99 of each and the milliseconds added at p50 and p99.
 * Target: at most 5 ms added at p50.
 */
#include "base/clock.h"
#include "base/error.h"
#include "sandbox/sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(int64_t *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    int i = (int)(p * (n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "bench_sandbox: %s failed: %s\n", what,
            rc < 0 ? farm_error_last() : "exit status not 0");
    return 1;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    if (n < 10 || n > 100000) {
        fprintf(stderr, "usage: bench_sandbox [N >= 10]\n");
        return 2;
    }
    int64_t *plain = calloc((size_t)n, sizeof(int64_t));
    int64_t *cold = calloc((size_t)n, sizeof(int64_t));
    int64_t *warm = calloc((size_t)n, sizeof(int64_t));
    if (!plain || !cold || !warm)
        return 1;
    const char *argv_true[] = {"true", NULL};
    char *const exec_argv[] = {"/bin/true", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv_true;
    o.memory_mb = 4096;
    o.pids = 512;
    o.timeout_ms = 30000;
    o.helper = getenv("FARM_SANDBOX_HELPER") ? getenv("FARM_SANDBOX_HELPER") : FARM_HELPER_BIN;
    for (int i = 0; i < n; i++) {
        int64_t t0 = clock_mono_ns();
        pid_t p = fork();
        if (p == 0) {
            execv(exec_argv[0], exec_argv);
            _exit(127);
        }
        int st;
        waitpid(p, &st, 0);
        plain[i] = clock_mono_ns() - t0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return fail("plain /bin/true", 0);

        sandbox_result r;
        t0 = clock_mono_ns();
        int rc = sandbox_run(&r, &o);
        cold[i] = clock_mono_ns() - t0;
        if (rc < 0 || r.exit_code != 0)
            return fail("sandbox_run", rc);

        sandbox *s = NULL;
        if ((rc = sandbox_prepare(&s, &o)) < 0)
            return fail("sandbox_prepare", rc);
        t0 = clock_mono_ns();
        rc = sandbox_launch(s, argv_true, NULL);
        if (rc == 0)
            rc = sandbox_wait(s, &r);
        warm[i] = clock_mono_ns() - t0;
        sandbox_free(s);
        if (rc < 0 || r.exit_code != 0)
            return fail("sandbox_launch", rc);
    }
    double p50p = pct(plain, n, 0.50), p99p = pct(plain, n, 0.99);
    double p50c = pct(cold, n, 0.50), p99c = pct(cold, n, 0.99);
    double p50w = pct(warm, n, 0.50), p99w = pct(warm, n, 0.99);
    printf("bench_sandbox: spawn `true`, N=%d each way\n", n);
    printf("  fork/exec (baseline)       p50 %7.2f ms  p99 %7.2f ms\n", p50p, p99p);
    printf("  sandbox_run (cold)         p50 %7.2f ms  p99 %7.2f ms  added p50 %6.2f ms  p99 "
           "%6.2f ms  ratio %.1fx\n",
           p50c, p99c, p50c - p50p, p99c - p99p, p50c / p50p);
    printf("  sandbox_launch (prepared)  p50 %7.2f ms  p99 %7.2f ms  added p50 %6.2f ms  p99 "
           "%6.2f ms  ratio %.1fx\n",
           p50w, p99w, p50w - p50p, p99w - p99p, p50w / p50p);
    printf("  target: <= 5 ms added at p50: cold %s, prepared %s\n",
           p50c - p50p <= 5 ? "met" : "NOT met", p50w - p50p <= 5 ? "met" : "NOT met");
    free(plain);
    free(cold);
    free(warm);
    return 0;
}
