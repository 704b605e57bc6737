/*
 * bench_checkout.c - how long a session's worktree takes from a warm mirror.
 *
 * Builds a repository of --files files (default 10,000) with the git
 * command, fetches it into a farm mirror once (the warm mirror), then
 * alternates, for --rounds rounds: vcs_worktree_create() on a new branch, and
 * the baseline `git worktree add -b <branch> <path> main` on the same
 * mirror. As a floor it also times writing the same files with plain
 * open/write. The order of the three rotates every round. Prints every run,
 * the medians and the ratio farm/git; the target is at most 1.2. Dirty
 * pages are flushed (sync, untimed) before each timed step so one run's
 * writeback does not land on the next.
 *
 * Works in /dev/shm when it exists: on a memory file system the figures
 * measure the work of making a worktree rather than a shared disk's queue
 * (on a busy disk single runs vary tenfold). --dir picks another place.
 *
 *     bench_checkout [--files N] [--rounds R] [--dir DIR]
 */
#include "base/clock.h"
#include "base/error.h"
#include "vcs/git/git.h"

#include <git2.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

static int write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, p, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

/* The source repository: files spread over 50 x 20 directories, ~1 KiB each. */
static int repo_make(const char *src, int nfiles)
{
    char p[PATH_MAX + 64], text[2048];
    if (run(NULL, ARGV("git", "init", "-q", "-b", "main", src)) != 0)
        return -1;
    for (int i = 0; i < nfiles; i++) {
        snprintf(p, sizeof(p), "%s/d%02d", src, i % 50);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/d%02d/e%02d", src, i % 50, (i / 50) % 20);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/d%02d/e%02d/f%05d.txt", src, i % 50, (i / 50) % 20, i);
        size_t len = 0;
        for (int l = 0; l < 24 && len + 64 < sizeof(text); l++)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "file %d line %d: %08x\n", i, l,
                                    (unsigned)(i * 2654435761u + (unsigned)l));
        if (write_file(p, text, len) < 0)
            return -1;
    }
    if (run(src, ARGV("git", "add", "-A")) != 0 ||
        run(src, ARGV("git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                      "commit", "-q", "-m", "many files")) != 0)
        return -1;
    return 0;
}

/* The files of the mirror's main, in memory, to time a plain write of them. */
typedef struct file_set {
    char **paths;
    git_blob **blobs;
    size_t n, cap;
    git_repository *repo;
} file_set;

static int collect_cb(const char *root, const git_tree_entry *e, void *payload)
{
    file_set *fs = payload;
    if (git_tree_entry_type(e) != GIT_OBJECT_BLOB)
        return 0;
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 1024;
        fs->paths = realloc(fs->paths, fs->cap * sizeof(char *));
        fs->blobs = realloc(fs->blobs, fs->cap * sizeof(git_blob *));
        if (!fs->paths || !fs->blobs)
            return -1;
    }
    size_t l = strlen(root) + strlen(git_tree_entry_name(e)) + 1;
    fs->paths[fs->n] = malloc(l);
    snprintf(fs->paths[fs->n], l, "%s%s", root, git_tree_entry_name(e));
    if (git_blob_lookup(&fs->blobs[fs->n], fs->repo, git_tree_entry_id(e)) < 0)
        return -1;
    fs->n++;
    return 0;
}

static int write_all(const file_set *fs, const char *dir)
{
    char p[PATH_MAX * 2];
    if (mkdir(dir, 0755) < 0)
        return -1;
    for (size_t i = 0; i < fs->n; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, fs->paths[i]);
        for (char *s = p + strlen(dir) + 1; *s; s++)
            if (*s == '/') {
                *s = '\0';
                mkdir(p, 0755);
                *s = '/';
            }
        if (write_file(p, git_blob_rawcontent(fs->blobs[i]),
                       (size_t)git_blob_rawsize(fs->blobs[i])) < 0)
            return -1;
    }
    return 0;
}

/* CPU time (user + system) in ns used so far by this process or, with
 * children = 1, by its waited-for children. */
static int64_t cpu_ns(int children)
{
    struct rusage ru;
    getrusage(children ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
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
            fprintf(stderr, "usage: bench_checkout [--files N] [--rounds R] [--dir DIR]\n");
            return 2;
        }
    }
    if (nfiles < 1 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "bench_checkout: --files must be >= 1 and --rounds 1..100\n");
        return 2;
    }

    struct stat shm;
    if (!base)
        base = stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) ? "/dev/shm" : "/tmp";
    char tmpl[PATH_MAX], src[PATH_MAX], data[PATH_MAX], url[PATH_MAX + 8], home[PATH_MAX];
    snprintf(tmpl, sizeof(tmpl), "%s/farm-checkout-XXXXXX", base);
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
    file_set fs = {0};
    int64_t *t_farm = calloc((size_t)rounds, sizeof(int64_t));
    int64_t *t_git = calloc((size_t)rounds, sizeof(int64_t));
    int64_t *t_write = calloc((size_t)rounds, sizeof(int64_t));
    int64_t *c_farm = calloc((size_t)rounds, sizeof(int64_t));
    int64_t *c_git = calloc((size_t)rounds, sizeof(int64_t));

    printf("bench checkout: %d files, %d rounds, in %s\n", nfiles, rounds, dir);
    fflush(stdout);
    if (vcs_git_init() < 0 || repo_make(src, nfiles) < 0) {
        fprintf(stderr, "bench_checkout: cannot build the source repository\n");
        goto out;
    }
    vcs_remote r = VCS_REMOTE_INIT;
    r.url = url;
    r.name = "bench";
    int64_t t0 = clock_mono_ns();
    if (vcs_mirror_open(&m, data, "bench") < 0 || vcs_mirror_fetch(m, &r) < 0) {
        fprintf(stderr, "bench_checkout: mirror: %s\n", farm_error_last());
        goto out;
    }
    printf("mirror fetch (cold): %.1f ms\n", (clock_mono_ns() - t0) / 1e6);

    /* the floor: the same bytes written with open/write */
    git_repository *mrepo = NULL;
    git_object *tree = NULL;
    if (git_repository_open_bare(&mrepo, vcs_mirror_path(m)) < 0 ||
        git_revparse_single(&tree, mrepo, "main^{tree}") < 0) {
        fprintf(stderr, "bench_checkout: cannot read the mirror\n");
        goto out;
    }
    fs.repo = mrepo;
    if (git_tree_walk((git_tree *)tree, GIT_TREEWALK_PRE, collect_cb, &fs) < 0) {
        fprintf(stderr, "bench_checkout: cannot walk the tree\n");
        goto out;
    }
    git_object_free(tree);

    for (int i = 0; i < rounds; i++) {
        char pf[PATH_MAX], pg[PATH_MAX], pw[PATH_MAX], bf[64], bg[64];
        snprintf(pf, sizeof(pf), "%s/wt-farm-%d", dir, i);
        snprintf(pg, sizeof(pg), "%s/wt-git-%d", dir, i);
        snprintf(pw, sizeof(pw), "%s/files-%d", dir, i);
        snprintf(bf, sizeof(bf), "farm/%d-bench", i + 1);
        snprintf(bg, sizeof(bg), "git-bench-%d", i + 1);
        for (int k = 0; k < 3; k++) {
            int which = (i + k) % 3; /* rotate the order between rounds */
            sync();
            int64_t s = clock_mono_ns(), cs = cpu_ns(0), cc = cpu_ns(1);
            if (which == 0) {
                worktree_opts o = WORKTREE_OPTS_INIT;
                o.path = pf;
                o.branch = bf;
                o.base = "main";
                vcs_worktree *wt = NULL;
                if (vcs_worktree_create(&wt, m, &o) < 0) {
                    fprintf(stderr, "bench_checkout: worktree_create: %s\n", farm_error_last());
                    goto out;
                }
                t_farm[i] = clock_mono_ns() - s;
                c_farm[i] = cpu_ns(0) - cs;
                vcs_worktree_free(wt);
            } else if (which == 1) {
                if (run(NULL, ARGV("git", "-C", vcs_mirror_path(m), "worktree", "add", "-q", "-b",
                                   bg, pg, "main")) != 0) {
                    fprintf(stderr, "bench_checkout: git worktree add failed\n");
                    goto out;
                }
                t_git[i] = clock_mono_ns() - s;
                c_git[i] = cpu_ns(1) - cc;
            } else {
                if (write_all(&fs, pw) < 0) {
                    fprintf(stderr, "bench_checkout: writing files: %s\n", strerror(errno));
                    goto out;
                }
                t_write[i] = clock_mono_ns() - s;
            }
        }
        printf("round %d: farm worktree %.1f ms, git worktree add %.1f ms, plain write %.1f ms\n",
               i + 1, t_farm[i] / 1e6, t_git[i] / 1e6, t_write[i] / 1e6);
        fflush(stdout);
        vcs_tree_remove(pf);
        vcs_tree_remove(pg);
        vcs_tree_remove(pw);
        run(NULL, ARGV("git", "-C", vcs_mirror_path(m), "worktree", "prune"));
        run(NULL, ARGV("git", "-C", vcs_mirror_path(m), "branch", "-q", "-D", bg));
    }
    double mf = median_ms(t_farm, rounds), mg = median_ms(t_git, rounds),
           mw = median_ms(t_write, rounds);
    printf("median: farm worktree %.1f ms, git worktree add %.1f ms, plain write %.1f ms\n", mf, mg,
           mw);
    printf("ratio farm/git: %.2f (target <= 1.20); farm/plain-write: %.2f\n", mf / mg, mf / mw);
    /* CPU time is steadier than wall time on a loaded host */
    double cf = median_ms(c_farm, rounds), cg = median_ms(c_git, rounds);
    printf("cpu (user+sys) median: farm %.1f ms, git %.1f ms, ratio %.2f\n", cf, cg, cf / cg);
    rc = 0;
out:
    for (size_t i = 0; i < fs.n; i++) {
        free(fs.paths[i]);
        git_blob_free(fs.blobs[i]);
    }
    free(fs.paths);
    free(fs.blobs);
    git_repository_free(fs.repo);
    vcs_mirror_free(m);
    free(t_farm);
    free(t_git);
    free(t_write);
    free(c_farm);
    free(c_git);
    vcs_tree_remove(dir);
    return rc;
}
