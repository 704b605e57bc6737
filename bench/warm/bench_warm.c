/*
 * bench_warm.c - what a warm slot saves when a run starts.
 *
 * Builds a repository of --files files (default 10,000) with git, fetches
 * it into a farm mirror, then for --rounds rounds times two ways of giving
 * a run its worktree on branch farm/<n>-bench:
 *   cold: vcs_worktree_create() from the mirror (what a run without a warm slot
 *         does: init, checkout of every file, index);
 *   warm: the adoption of a worktree prepared beforehand on a placeholder
 *         branch (untimed, as pipeline_warm_prepare() does it ahead of
 *         demand): rename() into place, vcs_worktree_open(), and
 *         vcs_worktree_branch_switch() (what pipeline.c's adopt_warm does).
 * The order alternates between rounds. Prints every round, the medians and
 * the ratio warm/cold.
 *
 *     bench_warm [--files N] [--rounds R] [--dir DIR]
 */
#include "base/clock.h"
#include "base/error.h"
#include "vcs/git/git.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(const char *cwd, const char *const *argv)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        if (cwd && chdir(cwd) < 0)
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})

static int repo_make(const char *src, int nfiles)
{
    char p[PATH_MAX + 64], text[1024];
    if (run(NULL, ARGV("git", "init", "-q", "-b", "main", src)) != 0)
        return -1;
    for (int i = 0; i < nfiles; i++) {
        snprintf(p, sizeof(p), "%s/d%02d", src, i % 50);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/d%02d/f%05d.txt", src, i % 50, i);
        int n = snprintf(text, sizeof(text), "file %d: %08x\n", i, (unsigned)(i * 2654435761u));
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, text, (size_t)n) != n) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
    }
    if (run(src, ARGV("git", "add", "-A")) != 0 ||
        run(src, ARGV("git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                      "commit", "-q", "-m", "many files")) != 0)
        return -1;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_ms(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    return (n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0) / 1e6;
}

int main(int argc, char **argv)
{
    int nfiles = 10000, rounds = 9;
    const char *base = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--files") && i + 1 < argc)
            nfiles = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else {
            fprintf(stderr, "usage: bench_warm [--files N] [--rounds R] [--dir DIR]\n");
            return 2;
        }
    }
    if (nfiles < 1 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "bench_warm: --files must be >= 1 and --rounds 1..100\n");
        return 2;
    }
    struct stat shm;
    if (!base)
        base = stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) ? "/dev/shm" : "/tmp";
    char tmpl[PATH_MAX], src[PATH_MAX + 8], data[PATH_MAX + 8], url[PATH_MAX + 16],
        home[PATH_MAX + 8];
    snprintf(tmpl, sizeof(tmpl), "%s/farm-warm-XXXXXX", base);
    char *dir = mkdtemp(tmpl);
    if (!dir) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(home, sizeof(home), "%s/home", dir);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(url, sizeof(url), "file://%s", src);

    int rc = 1;
    vcs_mirror *m = NULL;
    char oid[VCS_OID_HEXSZ];
    int64_t *t_cold = calloc((size_t)rounds, sizeof(int64_t));
    int64_t *t_warm = calloc((size_t)rounds, sizeof(int64_t));
    vcs_remote r = VCS_REMOTE_INIT;

    printf("bench warm: %d files, %d rounds, in %s\n", nfiles, rounds, dir);
    fflush(stdout);
    if (!t_cold || !t_warm || vcs_git_init() < 0 || repo_make(src, nfiles) < 0) {
        fprintf(stderr, "bench_warm: cannot build the source repository\n");
        goto out;
    }
    r.url = url;
    r.name = "bench";
    if (vcs_mirror_open(&m, data, "bench") < 0 || vcs_mirror_fetch(m, &r) < 0 ||
        vcs_mirror_branch_oid(oid, m, "main") < 0) {
        fprintf(stderr, "bench_warm: mirror: %s\n", farm_error_last());
        goto out;
    }
    for (int i = 0; i < rounds; i++) {
        char cold[PATH_MAX + 32], warm[PATH_MAX + 32], slot[PATH_MAX + 32], b1[64], b2[64], bw[64];
        snprintf(cold, sizeof(cold), "%s/work/cold-%d", dir, i);
        snprintf(warm, sizeof(warm), "%s/work/warm-%d", dir, i);
        snprintf(slot, sizeof(slot), "%s/warm/w-%d", dir, i);
        snprintf(b1, sizeof(b1), "farm/%d-bench", 2 * i + 1);
        snprintf(b2, sizeof(b2), "farm/%d-bench", 2 * i + 2);
        snprintf(bw, sizeof(bw), "farm-warm/w-%d", i);

        /* the warm slot, made ahead of time (untimed) */
        vcs_worktree *wt = NULL;
        worktree_opts o = WORKTREE_OPTS_INIT;
        o.path = slot;
        o.branch = bw;
        o.start = oid;
        if (vcs_worktree_create(&wt, m, &o) < 0) {
            fprintf(stderr, "bench_warm: warm slot: %s\n", farm_error_last());
            goto out;
        }
        vcs_worktree_free(wt);
        sync();

        for (int k = 0; k < 2; k++) {
            int which = (i + k) % 2;
            int64_t s = clock_mono_ns();
            wt = NULL;
            if (which == 0) {
                worktree_opts c = WORKTREE_OPTS_INIT;
                c.path = cold;
                c.branch = b1;
                c.base = "main";
                if (vcs_worktree_create(&wt, m, &c) < 0) {
                    fprintf(stderr, "bench_warm: create: %s\n", farm_error_last());
                    goto out;
                }
                t_cold[i] = clock_mono_ns() - s;
            } else {
                if (rename(slot, warm) < 0 || vcs_worktree_open(&wt, m, warm, bw, oid, oid) < 0 ||
                    vcs_worktree_branch_switch(wt, b2) < 0) {
                    fprintf(stderr, "bench_warm: adopt: %s\n", farm_error_last());
                    vcs_worktree_free(wt);
                    goto out;
                }
                t_warm[i] = clock_mono_ns() - s;
            }
            vcs_worktree_free(wt);
        }
        printf("round %d: create %.2f ms, adopt %.2f ms\n", i + 1, t_cold[i] / 1e6,
               t_warm[i] / 1e6);
        vcs_tree_remove(cold);
        vcs_tree_remove(warm);
    }
    double mc = median_ms(t_cold, rounds), mw = median_ms(t_warm, rounds);
    printf("median: create %.2f ms, adopt %.2f ms; ratio adopt/create %.3f (%.0fx faster)\n", mc,
           mw, mc > 0 ? mw / mc : 0, mw > 0 ? mc / mw : 0);
    rc = 0;
out:
    vcs_mirror_free(m);
    free(t_cold);
    free(t_warm);
    vcs_tree_remove(dir);
    return rc;
}
