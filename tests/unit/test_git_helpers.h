/*
 * test_git_helpers.h - what the git tests share: temp directories, running
 * the real git command (argv only, never a shell) to build remotes and look
 * at results, starting the smart-HTTP fake, and searching a tree for a
 * secret. Header-only: each test_git*.c includes it once.
 */
#ifndef FARM_TEST_GIT_HELPERS_H
#define FARM_TEST_GIT_HELPERS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "vcs/git/git.h"

/* Test paths are short temp paths; snprintf truncation is not a risk here. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* Run argv (NULL-terminated) in cwd; stdout into out (n bytes, may be NULL),
 * stderr discarded. Returns the exit status, or -1 when it did not exit. */
static inline int th_run(char *out, size_t n, const char *cwd, const char *const *argv)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(pfd[1], 1);
        dup2(devnull, 2);
        close(pfd[0]);
        if (cwd && chdir(cwd) < 0)
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    char tmp[4096];
    ssize_t r;
    while ((r = read(pfd[0], tmp, sizeof(tmp))) > 0 || (r < 0 && errno == EINTR)) {
        if (r <= 0)
            continue;
        if (out && len + 1 < n) {
            size_t c = (size_t)r < n - 1 - len ? (size_t)r : n - 1 - len;
            memcpy(out + len, tmp, c);
            len += c;
        }
    }
    close(pfd[0]);
    if (out && n)
        out[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define TH_ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
/* git with an identity, in cwd; 0 on success */
#define TH_GIT(cwd, ...)                                                                           \
    th_run(                                                                                        \
        NULL, 0, cwd,                                                                              \
        TH_ARGV("git", "-c", "user.name=Tester", "-c", "user.email=t@example.com", __VA_ARGS__))
#define TH_GIT_OUT(out, n, cwd, ...)                                                               \
    th_run(                                                                                        \
        out, n, cwd,                                                                               \
        TH_ARGV("git", "-c", "user.name=Tester", "-c", "user.email=t@example.com", __VA_ARGS__))

static inline void th_chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

/* Isolate the git command from the host user's config, once per process. */
static inline void th_env_setup(const char *home)
{
    setenv("HOME", home, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_TERMINAL_PROMPT", "0", 1);
    unsetenv("GIT_DIR");
    unsetenv("GIT_WORK_TREE");
}

static inline char *th_tmpdir(void)
{
    char tmpl[] = "/tmp/farm-git-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void th_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static inline int th_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static inline char *th_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *s = calloc(1, 1 << 20);
    size_t n = s ? fread(s, 1, (1 << 20) - 1, f) : 0;
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

/* A bare remote at <dir>/<name>.git whose main has README.md, src/app.c and
 * docs/a.txt, and a branch "old". Returns 0 on success. */
static inline int th_remote_make(const char *dir, const char *name)
{
    char src[PATH_MAX], bare[PATH_MAX], p[PATH_MAX + 32];
    snprintf(src, sizeof(src), "%s/%s-src", dir, name);
    snprintf(bare, sizeof(bare), "%s/%s.git", dir, name);
    if (TH_GIT(dir, "init", "-q", "-b", "main", src) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/README.md", src);
    th_write(p, "# app\n\nhello\n");
    snprintf(p, sizeof(p), "%s/src", src);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/src/app.c", src);
    th_write(p, "int main(void)\n{\n    return 0;\n}\n");
    snprintf(p, sizeof(p), "%s/docs", src);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/docs/a.txt", src);
    th_write(p, "one\ntwo\nthree\n");
    if (TH_GIT(src, "add", "-A") != 0 || TH_GIT(src, "commit", "-q", "-m", "initial") != 0 ||
        TH_GIT(src, "branch", "old") != 0)
        return -1;
    if (TH_GIT(dir, "clone", "-q", "--bare", src, bare) != 0)
        return -1;
    return 0;
}

/* The commit a ref of a repository points at, or "" */
static inline void th_rev(char out[64], const char *repo, const char *rev)
{
    if (TH_GIT_OUT(out, 64, NULL, "-C", repo, "rev-parse", "--verify", "-q", rev) != 0)
        out[0] = '\0';
    th_chomp(out);
}

/* 1 when the bytes of secret appear in any file under dir (symlinks are
 * not followed; every regular file is read whole). */
static inline int th_tree_contains(const char *dir, const char *secret)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    size_t sl = strlen(secret);
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            found = th_tree_contains(p, secret);
        } else if (S_ISREG(st.st_mode)) {
            FILE *f = fopen(p, "rb");
            if (!f)
                continue;
            char *buf = malloc((size_t)st.st_size + 1);
            size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
            fclose(f);
            for (size_t i = 0; buf && sl && i + sl <= n; i++)
                if (memcmp(buf + i, secret, sl) == 0) {
                    found = 1;
                    break;
                }
            free(buf);
        }
    }
    closedir(d);
    return found;
}

/* The smart-HTTP fake: started on port 0 over root, tokens read from
 * token_file; log (may be NULL) gets one line per request. */
typedef struct th_http {
    pid_t pid;
    int port;
} th_http;

static inline int th_http_start(th_http *h, const char *root, const char *token_file,
                                const char *log)
{
    const char *srcdir = getenv("FARM_SOURCE_DIR");
    char script[PATH_MAX];
    snprintf(script, sizeof(script), "%s/tests/fakes/git_http.py",
             srcdir ? srcdir : FARM_SOURCE_DIR);
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    h->pid = fork();
    if (h->pid < 0)
        return -1;
    if (h->pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        const char *argv[] = {
            "python3", script, "--root", root, "--token-file", token_file, log ? "--log" : NULL,
            log,       NULL};
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char line[128];
    size_t len = 0;
    ssize_t r;
    while (len + 1 < sizeof(line) && (r = read(pfd[0], line + len, 1)) > 0 && line[len] != '\n')
        len++;
    line[len] = '\0';
    close(pfd[0]);
    if (sscanf(line, "PORT %d", &h->port) != 1) {
        kill(h->pid, SIGKILL);
        waitpid(h->pid, NULL, 0);
        return -1;
    }
    return 0;
}

static inline void th_http_stop(th_http *h)
{
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        waitpid(h->pid, NULL, 0);
        h->pid = 0;
    }
}

#endif
