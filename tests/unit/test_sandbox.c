/*
 * test_sandbox.c - sandbox/: option checks, allowlist matching, running and
 * streaming, the timeout, stopping from another thread, the output cap, the
 * environment allowlist, unsafe mode and the probe. The break-out attempts
 * live in tests/sandbox/ (the escape suite).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/error.h"
#include "sandbox/internal.h"
#include "sandbox/sandbox.h"

#include <git2.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct capture {
    buf out, err;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} capture;

static void capture_init(capture *c)
{
    buf_init(&c->out, 1 << 20);
    buf_init(&c->err, 1 << 20);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
}

static void capture_free(capture *c)
{
    buf_free(&c->out);
    buf_free(&c->err);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
}

static void on_output(void *ctx, sandbox_stream which, const char *d, size_t n)
{
    capture *c = ctx;
    pthread_mutex_lock(&c->lock);
    buf_append(which == SANDBOX_STDOUT ? &c->out : &c->err, d, n);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/farm-test-sandbox-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_dir(char *d)
{
    char cmd[PATH_MAX + 16];
    /* the sandbox may have handed it to another uid; we are its parent's owner */
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

/* How many processes carry marker among their arguments. */
static int count_marked(const char *marker)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], cmd[8192];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(cmd, 1, sizeof(cmd) - 1, f);
        fclose(f);
        for (size_t i = 0; i < len; i += strlen(cmd + i) + 1) {
            cmd[len] = '\0';
            if (strstr(cmd + i, marker)) {
                n++;
                break;
            }
        }
    }
    closedir(d);
    return n;
}

/* The farm killed (SIGKILL, nothing runs after it) at moments spread over a
 * sandbox's start-up, bubblewrap's namespace set-up among them: nothing of
 * the sandbox may outlive it. */
static void no_sandbox_outlives_a_killed_farm(void **state)
{
    (void)state;
    char marker[64];
    snprintf(marker, sizeof(marker), "farm-test-lifeline-%d", (int)getpid());
    for (int i = 0; i < 30; i++) {
        int ready[2];
        assert_int_equal(pipe(ready), 0);
        pid_t farm = fork();
        assert_true(farm >= 0);
        if (farm == 0) {
            const char *argv[] = {"/bin/sh", "-c", "sleep 120; :", marker, NULL};
            sandbox_opts o = SANDBOX_OPTS_INIT;
            o.argv = argv;
            o.timeout_ms = 120000;
            sandbox *s = NULL;
            sandbox_result r;
            if (write(ready[1], "x", 1) != 1 || sandbox_start(&s, &o) < 0)
                _exit(1);
            sandbox_wait(s, &r);
            _exit(0);
        }
        char b;
        close(ready[1]);
        assert_int_equal(read(ready[0], &b, 1), 1);
        close(ready[0]);
        /* not a wait for anything: the moment of the kill is what varies,
         * 0 to 29 ms into the start (a cold start takes about 20) */
        struct timespec t = {0, (long)i * 1000000L};
        nanosleep(&t, NULL);
        kill(farm, SIGKILL);
        assert_int_equal(waitpid(farm, NULL, 0), farm);
    }
    int left = count_marked(marker);
    for (int tries = 0; left > 0 && tries < 500; tries++) { /* up to 10 s for the teardown */
        struct timespec t = {0, 20000000L};
        nanosleep(&t, NULL);
        left = count_marked(marker);
    }
    if (left)
        fprintf(stderr, "%d processes of killed sandboxes are still running\n", left);
    assert_int_equal(left, 0);
}

static void opts_check_refuses_bad_input(void **state)
{
    (void)state;
    sandbox_opts o = SANDBOX_OPTS_INIT;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID); /* no command */
    const char *empty[] = {"", NULL};
    o.argv = empty;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);

    const char *ok[] = {"true", NULL};
    o.argv = ok;
    assert_int_equal(sandbox_opts_check(&o), 0);

    char *big = malloc(SANDBOX_MAX_ARG_BYTES + 2);
    memset(big, 'x', SANDBOX_MAX_ARG_BYTES + 1);
    big[SANDBOX_MAX_ARG_BYTES + 1] = '\0';
    const char *bigv[] = {"echo", big, NULL};
    o.argv = bigv;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "over the cap"));
    const char *bigenv[] = {big, NULL};
    memcpy(big, "A=", 2);
    o.argv = ok;
    o.env = bigenv;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    free(big);

    const char *badenv[] = {"NO EQUALS", NULL};
    o.env = badenv;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    const char *badname[] = {"1X=y", NULL};
    o.env = badname;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    const char *goodenv[] = {"X_1=y=z", NULL};
    o.env = goodenv;
    assert_int_equal(sandbox_opts_check(&o), 0);

    o.dir = "relative/dir";
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    o.dir = "/nonexistent/farm/dir";
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    o.dir = "/tmp";
    o.dir_inside = "/work/../etc";
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    o.dir_inside = "/";
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    o.dir_inside = "/work";
    assert_int_equal(sandbox_opts_check(&o), 0);

    const char *bad_allow[][2] = {{"", NULL},        {"host:0", NULL}, {"host:70000", NULL},
                                  {"ho st", NULL},   {":80", NULL},    {"a*b.com", NULL},
                                  {"host:80x", NULL}};
    for (size_t i = 0; i < sizeof(bad_allow) / sizeof(bad_allow[0]); i++) {
        o.allow = bad_allow[i];
        assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    }
    const char *good_allow[] = {"github.com", "*.github.com", "127.0.0.1:8080", "pypi.org:*", NULL};
    o.allow = good_allow;
    assert_int_equal(sandbox_opts_check(&o), 0);

    o.timeout_ms = -1;
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
    o.timeout_ms = 0;
    o.network = SANDBOX_NET_HOST; /* only in unsafe mode */
    assert_int_equal(sandbox_opts_check(&o), FARM_EINVALID);
}

static void allow_match_patterns(void **state)
{
    (void)state;
    const char *a[] = {"github.com", "*.example.org", "127.0.0.1:8080", "pypi.org:*", NULL};
    assert_true(sandbox_allow_match(a, "github.com", 443));
    assert_true(sandbox_allow_match(a, "GitHub.COM", 80));
    assert_false(sandbox_allow_match(a, "github.com", 22));
    assert_false(sandbox_allow_match(a, "api.github.com", 443));
    assert_false(sandbox_allow_match(a, "evilgithub.com", 443));
    assert_true(sandbox_allow_match(a, "a.example.org", 443));
    assert_true(sandbox_allow_match(a, "a.b.example.org", 80));
    assert_false(sandbox_allow_match(a, "example.org", 443));
    assert_false(sandbox_allow_match(a, "badexample.org", 443));
    assert_true(sandbox_allow_match(a, "127.0.0.1", 8080));
    assert_false(sandbox_allow_match(a, "127.0.0.1", 8081));
    assert_false(sandbox_allow_match(a, "localhost", 8080));
    assert_true(sandbox_allow_match(a, "pypi.org", 12345));
    assert_false(sandbox_allow_match(a, "pypi.org", 0));
    assert_false(sandbox_allow_match(NULL, "github.com", 443));
    assert_int_equal(sandbox_net_parse("none"), SANDBOX_NET_NONE);
    assert_int_equal(sandbox_net_parse("allowlist"), SANDBOX_NET_ALLOWLIST);
    assert_int_equal(sandbox_net_parse("host"), -1);
    assert_int_equal(sandbox_net_parse(NULL), -1);
}

static void runs_and_streams(void **state)
{
    (void)state;
    char *dir = make_dir();
    capture c;
    capture_init(&c);
    /* a file and a repository the farm made before the run */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/existing", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("a\n", f);
    fclose(f);
    git_libgit2_init();
    git_repository *repo = NULL;
    assert_int_equal(git_repository_init(&repo, dir, 0), 0);
    git_repository_free(repo);
    const char *argv[] = {"/bin/sh", "-c",
                          "echo hello; echo oops >&2; pwd; echo data > file; mkdir -p d/e && "
                          "echo x > d/e/f; echo b >> existing; exit 3",
                          NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.dir = dir;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.timeout_ms = 30000;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.exit_code, 3);
    assert_int_equal(r.timed_out, 0);
    assert_string_equal(buf_cstr(&c.out), "hello\n/work\n");
    assert_string_equal(buf_cstr(&c.err), "oops\n");
    assert_int_equal(r.stdout_bytes, 12);
    assert_int_equal(r.stderr_bytes, 5);
    assert_true(r.wall_ms >= 0);
    snprintf(path, sizeof(path), "%s/file", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    char line[16] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "data\n");
    snprintf(path, sizeof(path), "%s/existing", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    char all[16] = "";
    assert_int_equal(fread(all, 1, sizeof(all) - 1, f), 4);
    fclose(f);
    assert_string_equal(all, "a\nb\n"); /* the farm's file was writable inside */
    /* the worktree still belongs to the farm, so git still trusts it */
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal(git_repository_open(&repo, dir), 0);
    git_repository_free(repo);
    git_libgit2_shutdown();
    capture_free(&c);
    remove_dir(dir);
}

static void binds_are_bound_as_asked(void **state)
{
    (void)state;
    char *out = make_dir(), *ro = make_dir();
    /* read-only binds are the caller's to make readable; writable ones are
     * granted to the run's uid like the vcs_worktree */
    assert_int_equal(chmod(ro, 0755), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/given", ro);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("read me\n", f);
    fclose(f);
    sandbox_bind b[] = {{out, "/farm/out", 1, 0}, {ro, "/farm/in", 0, 0}};
    const char *argv[] = {"/bin/sh", "-c",
                          "cat /farm/in/given > /farm/out/copy && ! touch /farm/in/x 2>/dev/null",
                          NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.binds = b;
    o.nbinds = 2;
    o.timeout_ms = 30000;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.exit_code, 0);
    snprintf(path, sizeof(path), "%s/copy", out);
    f = fopen(path, "r");
    assert_non_null(f);
    char line[32] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "read me\n");
    snprintf(path, sizeof(path), "%s/x", ro);
    assert_int_equal(access(path, F_OK), -1);
    remove_dir(out);
    remove_dir(ro);
}

static void stdin_is_null_or_the_given_file(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[PATH_MAX], link[PATH_MAX];
    snprintf(path, sizeof(path), "%s/prompt.md", dir);
    snprintf(link, sizeof(link), "%s/link.md", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("the prompt\n", f);
    fclose(f);
    assert_int_equal(symlink(path, link), 0);
    capture c;
    capture_init(&c);
    const char *argv[] = {"/bin/sh", "-c", "cat; echo end", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.timeout_ms = 30000;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0); /* /dev/null: cat ends at once */
    assert_string_equal(buf_cstr(&c.out), "end\n");
    buf_reset(&c.out);
    o.stdin_path = path;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_string_equal(buf_cstr(&c.out), "the prompt\nend\n");
    o.stdin_path = link; /* not through a symbolic link */
    assert_int_equal(sandbox_run(&r, &o), FARM_EINVALID);
    capture_free(&c);
    remove_dir(dir);
}

static void environment_is_an_allowlist(void **state)
{
    (void)state;
    setenv("FARM_TEST_HOST_SECRET", "s3cr3t-value", 1);
    capture c;
    capture_init(&c);
    const char *argv[] = {"/bin/sh", "-c", "echo \"$FOO|${FARM_TEST_HOST_SECRET:-unset}|$HOME\"",
                          NULL};
    const char *env[] = {"FOO=bar", "HOME=/home/elsewhere", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.env = env;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.timeout_ms = 30000;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(buf_cstr(&c.out), "bar|unset|/home/elsewhere\n");
    capture_free(&c);
    unsetenv("FARM_TEST_HOST_SECRET");
}

static void timeout_kills_the_tree(void **state)
{
    (void)state;
    const char *argv[] = {"/bin/sh", "-c", "setsid sleep 60 & sleep 60", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.timeout_ms = 300;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.timed_out, 1);
    assert_int_equal(r.exit_code, -1);
    assert_true(r.wall_ms >= 300);
    assert_true(r.wall_ms < 10000);
}

typedef struct stopper {
    sandbox *s;
    capture *c;
} stopper;

static void *stop_when_ready(void *arg)
{
    stopper *st = arg;
    pthread_mutex_lock(&st->c->lock);
    while (!strstr(buf_cstr(&st->c->out), "ready"))
        pthread_cond_wait(&st->c->cond, &st->c->lock);
    pthread_mutex_unlock(&st->c->lock);
    sandbox_stop(st->s);
    return NULL;
}

static void stop_from_another_thread(void **state)
{
    (void)state;
    capture c;
    capture_init(&c);
    const char *argv[] = {"/bin/sh", "-c", "echo ready; exec sleep 60", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.timeout_ms = 60000;
    sandbox *s = NULL;
    assert_int_equal(sandbox_start(&s, &o), 0);
    stopper st = {s, &c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stop_when_ready, &st), 0);
    sandbox_result r;
    assert_int_equal(sandbox_wait(s, &r), 0);
    pthread_join(th, NULL);
    assert_int_equal(r.stopped, 1);
    assert_int_equal(r.timed_out, 0);
    assert_true(r.wall_ms < 30000);
    sandbox_stop(s);                                      /* after the end: harmless */
    assert_int_equal(sandbox_wait(s, &r), FARM_EINVALID); /* once only */
    sandbox_free(s);
    capture_free(&c);
}

static void output_is_capped(void **state)
{
    (void)state;
    capture c;
    capture_init(&c);
    const char *argv[] = {"/bin/sh", "-c", "head -c 100000 /dev/zero", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.max_output = 1000;
    o.timeout_ms = 30000;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.stdout_bytes, 100000);
    assert_int_equal(r.output_truncated, 1);
    assert_int_equal(c.out.len, 1000);
    capture_free(&c);
}

static void missing_bubblewrap_names_the_package(void **state)
{
    (void)state;
    const char *argv[] = {"true", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.bwrap = "/nonexistent/bwrap";
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), FARM_EUNSUPPORTED);
    assert_non_null(strstr(farm_error_last(), "apt-get install bubblewrap"));
}

static void unsafe_mode_still_times_out(void **state)
{
    (void)state;
    char *dir = make_dir();
    capture c;
    capture_init(&c);
    const char *argv[] = {"/bin/sh", "-c", "pwd; sleep 60 & sleep 60", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.dir = dir;
    o.unsafe_none = 1;
    o.network = SANDBOX_NET_HOST;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.timeout_ms = 300;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.timed_out, 1);
    assert_true(r.wall_ms < 10000);
    char want[PATH_MAX + 2];
    snprintf(want, sizeof(want), "%s\n", dir);
    assert_string_equal(buf_cstr(&c.out), want);
    capture_free(&c);
    remove_dir(dir);
}

static void prepared_sandbox_runs_what_it_is_given(void **state)
{
    (void)state;
    capture c;
    capture_init(&c);
    const char *base_env[] = {"BASE=one", "X=overridden", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.env = base_env;
    o.on_output = on_output;
    o.output_ctx = &c;
    o.timeout_ms = 30000;
    sandbox *s = NULL;
    assert_int_equal(sandbox_prepare(&s, &o), 0);
    sandbox_result r;
    assert_int_equal(sandbox_wait(s, &r), FARM_EINVALID); /* nothing launched yet */
    const char *argv[] = {"/bin/sh", "-c", "echo \"$BASE $X\"; exit 5", NULL};
    const char *env[] = {"X=two", NULL};
    const char *bad_env[] = {"=x", NULL};
    assert_int_equal(sandbox_launch(s, argv, bad_env), FARM_EINVALID);
    assert_int_equal(sandbox_launch(s, argv, env), 0);
    assert_int_equal(sandbox_launch(s, argv, env), FARM_EINVALID); /* only once */
    assert_int_equal(sandbox_wait(s, &r), 0);
    assert_int_equal(r.exit_code, 5);
    assert_string_equal(buf_cstr(&c.out), "one two\n");
    sandbox_free(s);

    /* a signal's death is told as such */
    assert_int_equal(sandbox_prepare(&s, &o), 0);
    const char *killed[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    assert_int_equal(sandbox_launch(s, killed, NULL), 0);
    assert_int_equal(sandbox_wait(s, &r), 0);
    assert_int_equal(r.term_signal, 15);
    assert_int_equal(r.exit_code, 128 + 15);
    sandbox_free(s);

    /* prepared and never launched: freeing it ends it */
    assert_int_equal(sandbox_prepare(&s, &o), 0);
    sandbox_free(s);
    capture_free(&c);
}

static void unreachable_dir_is_refused_untouched(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip(); /* only root hands directories to another uid */
        return;
    }
    char *top = make_dir(); /* mkdtemp: mode 0700 */
    char wt[PATH_MAX];
    snprintf(wt, sizeof(wt), "%s/wt", top);
    assert_int_equal(mkdir(wt, 0755), 0);
    const char *argv[] = {"true", NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.dir = wt;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "out of reach"));
    struct stat st;
    assert_int_equal(stat(wt, &st), 0);
    assert_int_equal(st.st_uid, 0); /* not handed over when the run cannot happen */
    remove_dir(top);
}

typedef struct proxy_log {
    pthread_mutex_t lock;
    int allowed, denied;
    char last[300];
} proxy_log;

static void on_proxy(void *ctx, int allowed, const char *host, int port, const char *reason)
{
    proxy_log *l = ctx;
    pthread_mutex_lock(&l->lock);
    if (allowed)
        l->allowed++;
    else
        l->denied++;
    snprintf(l->last, sizeof(l->last), "%s %s:%d %s", allowed ? "allowed" : "denied", host, port,
             reason);
    pthread_mutex_unlock(&l->lock);
}

/* Send req to the proxy at sock and return the status line's code. */
static int proxy_ask(const char *sock, const char *req, size_t n)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the proxy may answer and close before taking it all */
        off += (size_t)w;
    }
    char resp[256] = "";
    ssize_t r = recv(fd, resp, sizeof(resp) - 1, 0);
    close(fd);
    if (r <= 0)
        return -1;
    resp[r] = '\0';
    int code = 0;
    sscanf(resp, "HTTP/1.1 %d", &code);
    return code;
}

static void proxy_refuses_bad_and_unlisted_requests(void **state)
{
    (void)state;
    char *dir = make_dir();
    char sock[PATH_MAX];
    snprintf(sock, sizeof(sock), "%s/proxy.sock", dir);
    proxy_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    const char *allow[] = {"127.0.0.1:1", "*.invalid", NULL};
    sbx_proxy *p = NULL;
    assert_int_equal(sbx_proxy_start(&p, sock, allow, on_proxy, &log), 0);

    const char garbage[] = "HELLO\r\n\r\n";
    assert_int_equal(proxy_ask(sock, garbage, sizeof(garbage) - 1), 400);
    const char relative[] = "GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(proxy_ask(sock, relative, sizeof(relative) - 1), 400);
    const char badport[] = "CONNECT github.com:99999 HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy_ask(sock, badport, sizeof(badport) - 1), 400);
    const char badhost[] = "CONNECT gi$thub.com:443 HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy_ask(sock, badhost, sizeof(badhost) - 1), 400);
    char *big = malloc(64 * 1024);
    memset(big, 'a', 64 * 1024);
    memcpy(big, "GET http://x/ HTTP/1.1\r\nX: ", 27);
    assert_int_equal(proxy_ask(sock, big, 64 * 1024), 431);
    free(big);

    const char unlisted[] = "CONNECT 10.1.2.3:22 HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy_ask(sock, unlisted, sizeof(unlisted) - 1), 403);
    assert_int_equal(log.denied, 1);
    assert_string_equal(log.last, "denied 10.1.2.3:22 not on the allowlist");
    const char userinfo[] = "GET http://127.0.0.1:1@10.9.9.9:80/ HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy_ask(sock, userinfo, sizeof(userinfo) - 1), 403);
    assert_string_equal(log.last, "denied 10.9.9.9:80 not on the allowlist");
    /* listed, but nothing listens on port 1 */
    const char listed[] = "GET http://127.0.0.1:1/ HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy_ask(sock, listed, sizeof(listed) - 1), 502);
    assert_string_equal(log.last, "denied 127.0.0.1:1 connect failed");
    /* listed, but the name does not resolve (.invalid never does) */
    const char noname[] = "CONNECT a.invalid:443 HTTP/1.1\r\n\r\n";
    assert_int_equal(proxy_ask(sock, noname, sizeof(noname) - 1), 502);
    assert_int_equal(log.allowed, 0);

    sbx_proxy_stop(p);
    assert_int_equal(access(sock, F_OK), -1); /* the socket is gone */
    remove_dir(dir);
}

static void cpu_time_and_memory_are_counted(void **state)
{
    (void)state;
    sandbox_probe_result p;
    sandbox_probe(&p, NULL);
    if (!p.cgroup_memory) {
        skip(); /* no memory cgroup delegated: nothing counts them */
        return;
    }
    const char *argv[] = {"/bin/sh", "-c",
                          "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; "
                          "head -c 20000000 /dev/zero | tail -c 1 >/dev/null",
                          NULL};
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.memory_mb = 256;
    o.timeout_ms = 120000;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.exit_code, 0);
    assert_true(r.cpu_ms > 20);           /* the shell loop's own time, not bubblewrap's */
    assert_true(r.peak_memory_kb > 1000); /* tail holds a 20 MB line */

    o.memory_mb = 0; /* no cgroup: said to be unknown, not made up */
    const char *t[] = {"true", NULL};
    o.argv = t;
    assert_int_equal(sandbox_run(&r, &o), 0);
    assert_int_equal(r.cpu_ms, -1);
    assert_int_equal(r.peak_memory_kb, -1);
}

static void probe_reports_this_host(void **state)
{
    (void)state;
    sandbox_probe_result p;
    int rc = sandbox_probe(&p, NULL);
    assert_int_equal(rc == 0, p.ok == 1);
    assert_int_equal(p.rlimits, 1);
    if (!p.ok) {
        assert_true(p.problem[0] != '\0');
        return;
    }
    assert_true(p.bwrap_found && p.bwrap_works && p.seccomp && p.userns);
    assert_true(p.bwrap_version[0] != '\0');
    assert_true(p.cgroup_version == 0 || p.cgroup_version == 1 || p.cgroup_version == 2);
    sandbox_probe_result q;
    assert_int_equal(sandbox_probe(&q, "/nonexistent/bwrap"), FARM_EUNSUPPORTED);
    assert_false(q.ok);
    assert_non_null(strstr(q.problem, "apt-get install bubblewrap"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opts_check_refuses_bad_input),
        cmocka_unit_test(allow_match_patterns),
        cmocka_unit_test(runs_and_streams),
        cmocka_unit_test(binds_are_bound_as_asked),
        cmocka_unit_test(stdin_is_null_or_the_given_file),
        cmocka_unit_test(environment_is_an_allowlist),
        cmocka_unit_test(timeout_kills_the_tree),
        cmocka_unit_test(stop_from_another_thread),
        cmocka_unit_test(output_is_capped),
        cmocka_unit_test(missing_bubblewrap_names_the_package),
        cmocka_unit_test(unsafe_mode_still_times_out),
        cmocka_unit_test(prepared_sandbox_runs_what_it_is_given),
        cmocka_unit_test(unreachable_dir_is_refused_untouched),
        cmocka_unit_test(proxy_refuses_bad_and_unlisted_requests),
        cmocka_unit_test(cpu_time_and_memory_are_counted),
        cmocka_unit_test(probe_reports_this_host),
        cmocka_unit_test(no_sandbox_outlives_a_killed_farm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
