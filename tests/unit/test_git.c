/*
 * test_git.c - vcs/git over file:// remotes made by the real git command:
 * branch names, the mirror (fetch, incremental fetch, prune, lock), worktrees
 * (create, base branch missing, reattach, removal that never follows a
 * symlink), commit (trailer, squashing whatever the agent did, empty change,
 * no hooks or filters run), diffstat, and push with its lease.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/strv.h"
#include "test_git_helpers.h"

#include <pthread.h>
#include <sys/file.h>

typedef struct fx {
    char *dir; /* the test's temp dir */
    char data[PATH_MAX];
    char remote[PATH_MAX]; /* <dir>/app.git */
    char url[PATH_MAX + 8];
    char src[PATH_MAX]; /* <dir>/app-src, a clone-like checkout used to make upstream commits */
    vcs_mirror *m;
    vcs_remote r;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    if (!f || !(f->dir = th_tmpdir()))
        return -1;
    char home[PATH_MAX];
    snprintf(home, sizeof(home), "%s/home", f->dir);
    mkdir(home, 0700);
    th_env_setup(home);
    if (th_remote_make(f->dir, "app") != 0)
        return -1;
    snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
    snprintf(f->remote, sizeof(f->remote), "%s/app.git", f->dir);
    snprintf(f->src, sizeof(f->src), "%s/app-src", f->dir);
    snprintf(f->url, sizeof(f->url), "file://%s", f->remote);
    TH_GIT(f->src, "remote", "add", "origin", f->remote);
    vcs_remote r = VCS_REMOTE_INIT;
    r.url = f->url;
    r.name = "octo/app";
    f->r = r;
    if (vcs_mirror_open(&f->m, f->data, "github/octo/app") != 0)
        return -1;
    if (vcs_mirror_fetch(f->m, &f->r) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    vcs_mirror_free(f->m);
    vcs_tree_remove(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static vcs_worktree *wt_make(fx *f, const char *name, const char *branch)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/wt/%s", f->dir, name);
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = path;
    o.branch = branch;
    o.base = "main";
    vcs_worktree *wt = NULL;
    int rc = vcs_worktree_create(&wt, f->m, &o);
    if (rc != 0)
        fprintf(stderr, "worktree_create: %s\n", farm_error_last());
    assert_int_equal(rc, 0);
    return wt;
}

static void wt_file(vcs_worktree *wt, const char *rel, const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", vcs_worktree_path(wt), rel);
    th_write(p, text);
}

static worktree_commit_opts bot(const char *msg)
{
    worktree_commit_opts o = WORKTREE_COMMIT_OPTS_INIT;
    o.message = msg;
    o.author_name = "farm-bot";
    o.author_email = "farm-bot@example.com";
    o.coauthor_name = "Ada Lovelace";
    o.coauthor_email = "ada@example.com";
    return o;
}

/* ---- branch names ---- */

static void branch_names(void **state)
{
    char b[64];
    assert_int_equal(vcs_branch_name(b, sizeof(b), 12, "Fix login typo"), 0);
    assert_string_equal(b, "farm/12-fix-login-typo");
    assert_int_equal(vcs_branch_name(b, sizeof(b), 3, "  --Hello,   World!!  "), 0);
    assert_string_equal(b, "farm/3-hello-world");
    assert_int_equal(vcs_branch_name(b, sizeof(b), 4, "Don't crash on ../../etc/passwd.lock"), 0);
    assert_string_equal(b, "farm/4-dont-crash-on-etc-passwd-lock");
    assert_int_equal(vcs_branch_name(b, sizeof(b), 7, ""), 0);
    assert_string_equal(b, "farm/7");
    assert_int_equal(vcs_branch_name(b, sizeof(b), 8, "!!! ??? ~^:"), 0);
    assert_string_equal(b, "farm/8");
    assert_int_equal(vcs_branch_name(b, sizeof(b), 9, NULL), 0);
    assert_string_equal(b, "farm/9");
    assert_int_equal(vcs_branch_name(b, sizeof(b), 5, "Caf\xc3\xa9 na\xc3\xafve"), 0);
    assert_string_equal(b, "farm/5-caf-nave");
    /* long titles: at most 40 slug characters, never ending in a dash */
    assert_int_equal(
        vcs_branch_name(b, sizeof(b), 1,
                        "Make the thing work with the other thing and also fix everything else"),
        0);
    const char *slug = b + strlen("farm/1-");
    assert_true(strlen(slug) <= 40);
    assert_true(slug[strlen(slug) - 1] != '-');
    assert_int_equal(strncmp(slug, "make-the-thing-work", 19), 0);
    assert_true(vcs_branch_name_valid(b));
    assert_int_equal(vcs_branch_name(b, sizeof(b), 0, "x"), FARM_EINVALID);
    assert_int_equal(vcs_branch_name(b, 8, 12, "Fix login typo"), FARM_ETOOBIG);
    assert_string_equal(b, "");

    assert_true(vcs_branch_name_valid("farm/12-fix"));
    assert_false(vcs_branch_name_valid("farm/x.lock"));
    assert_false(vcs_branch_name_valid("a..b"));
    assert_false(vcs_branch_name_valid("a b"));
    assert_false(vcs_branch_name_valid(""));
    assert_false(vcs_branch_name_valid(NULL));
}

/* ---- mirror ---- */

static void mirror_fetches_and_prunes(void **state)
{
    fx *f = *state;
    char want[64], got[VCS_OID_HEXSZ];
    th_rev(want, f->remote, "refs/heads/main");
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "main"), 0);
    assert_string_equal(got, want);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "old"), 0);
    assert_int_equal(strncmp(vcs_mirror_path(f->m), f->data, strlen(f->data)), 0);

    /* upstream moves on: a new commit on main, "old" deleted, "new" made */
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/README.md", f->src);
    th_write(p, "# app\n\nhello again\n");
    assert_int_equal(TH_GIT(f->src, "commit", "-q", "-am", "second"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main", ":old", "main:new"), 0);
    th_rev(want, f->remote, "refs/heads/main");

    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "main"), 0);
    assert_string_equal(got, want);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "new"), 0);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "old"), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "old"));
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "no..such"), FARM_EINVALID);

    /* reopening finds the same mirror, already populated */
    vcs_mirror *m2 = NULL;
    assert_int_equal(vcs_mirror_open(&m2, f->data, "GitHub/Octo/App"), 0);
    assert_string_equal(vcs_mirror_path(m2), vcs_mirror_path(f->m));
    assert_int_equal(vcs_mirror_branch_oid(got, m2, "main"), 0);
    assert_string_equal(got, want);
    vcs_mirror_free(m2);

    /* names that would climb out of mirrors/ stay inside it */
    assert_int_equal(vcs_mirror_open(&m2, f->data, "../../evil"), 0);
    assert_non_null(strstr(vcs_mirror_path(m2), "/mirrors/"));
    assert_null(strstr(vcs_mirror_path(m2), "/../"));
    vcs_mirror_free(m2);
    assert_int_equal(vcs_mirror_open(&m2, f->data, ""), FARM_EINVALID);
    assert_int_equal(vcs_mirror_open(&m2, "/tmp/a\nb", "x"), FARM_EINVALID);
}

static void mirror_fetch_bad_remote(void **state)
{
    fx *f = *state;
    char url[PATH_MAX + 16];
    snprintf(url, sizeof(url), "file://%s/nope.git", f->dir);
    vcs_remote r = VCS_REMOTE_INIT;
    r.url = url;
    r.name = "octo/nope";
    int rc = vcs_mirror_fetch(f->m, &r);
    assert_true(rc == FARM_ENOTFOUND || rc == FARM_EIO);
    assert_non_null(strstr(farm_error_last(), "octo/nope"));
    /* the mirror is still usable */
    char got[VCS_OID_HEXSZ];
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "main"), 0);
}

/* Many incremental fetches leave many packs; a repack folds them into one
 * and keeps even objects no branch reaches any more. */
static void mirror_repack_keeps_everything(void **state)
{
    fx *f = *state;
    char p[PATH_MAX], text[64], gone[64], got[VCS_OID_HEXSZ];
    assert_int_equal(TH_GIT(f->src, "checkout", "-q", "-b", "doomed"), 0);
    snprintf(p, sizeof(p), "%s/doomed.txt", f->src);
    th_write(p, "doomed\n");
    assert_int_equal(TH_GIT(f->src, "add", "-A"), 0);
    assert_int_equal(TH_GIT(f->src, "commit", "-q", "-m", "doomed"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "doomed"), 0);
    th_rev(gone, f->src, "HEAD");
    assert_int_equal(TH_GIT(f->src, "checkout", "-q", "main"), 0);
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/README.md", f->src);
        snprintf(text, sizeof(text), "# app\n\nround %d\n", i);
        th_write(p, text);
        assert_int_equal(TH_GIT(f->src, "commit", "-q", "-am", text), 0);
        assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main"), 0);
        assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    }
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", ":doomed"), 0);
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "doomed"), FARM_ENOTFOUND);
    assert_true(vcs_mirror_pack_count(f->m) >= 5);

    assert_int_equal(vcs_mirror_repack(f->m), 0);
    assert_int_equal(vcs_mirror_pack_count(f->m), 1);
    assert_int_equal(
        TH_GIT(NULL, "-C", vcs_mirror_path(f->m), "fsck", "--no-dangling", "--no-progress"), 0);
    /* the pruned branch's commit is still there for a worktree standing on it */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/wt/doomed", f->dir);
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = path;
    o.branch = "farm/16-doomed";
    o.start = gone;
    vcs_worktree *wt = NULL;
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), 0);
    snprintf(p, sizeof(p), "%s/doomed.txt", path);
    assert_true(th_exists(p));
    vcs_worktree_free(wt);
    /* and main is whole */
    wt = wt_make(f, "after-repack", "farm/17-after");
    snprintf(p, sizeof(p), "%s/README.md", vcs_worktree_path(wt));
    char *t = th_read(p);
    assert_string_equal(t, "# app\n\nround 3\n");
    free(t);
    vcs_worktree_free(wt);
    /* a second repack of one pack is harmless */
    assert_int_equal(vcs_mirror_repack(f->m), 0);
    assert_int_equal(vcs_mirror_pack_count(f->m), 1);
}

struct fetcher {
    vcs_mirror *m;
    vcs_remote *r;
    volatile int done;
    int rc;
};

static void *fetch_thread(void *arg)
{
    struct fetcher *ft = arg;
    ft->rc = vcs_mirror_fetch(ft->m, ft->r);
    __atomic_store_n(&ft->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Another process holding the mirror's lock file keeps a fetch waiting. */
static void mirror_lock_excludes_other_processes(void **state)
{
    fx *f = *state;
    char lockfile[PATH_MAX];
    size_t n = strlen(vcs_mirror_path(f->m));
    snprintf(lockfile, sizeof(lockfile), "%.*s.lock", (int)(n - 4), vcs_mirror_path(f->m));
    int up[2], down[2]; /* child -> parent "locked", parent -> child "release" */
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the "other farm": hold the lock until told to stop */
        int fd = open(lockfile, O_RDWR | O_CREAT, 0600);
        flock(fd, LOCK_EX);
        char c = 0;
        if (write(up[1], "L", 1) != 1 || read(down[0], &c, 1) < 0)
            _exit(1);
        _exit(0);
    }
    char c;
    assert_int_equal(read(up[0], &c, 1), 1);

    struct fetcher ft = {f->m, &f->r, 0, -99};
    pthread_t t;
    pthread_create(&t, NULL, fetch_thread, &ft);
    int64_t until = clock_mono_ms() + 300;
    while (clock_mono_ms() < until)
        assert_int_equal(__atomic_load_n(&ft.done, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(write(down[1], "x", 1), 1); /* the child reads it and exits */
    waitpid(pid, NULL, 0);
    pthread_join(t, NULL);
    assert_int_equal(ft.rc, 0);
    close(up[0]);
    close(up[1]);
    close(down[0]);
    close(down[1]);
}

struct maker {
    fx *f;
    int i;
    int rc;
};

static void *make_thread(void *arg)
{
    struct maker *mk = arg;
    char path[PATH_MAX], branch[64];
    snprintf(path, sizeof(path), "%s/wt/par%d", mk->f->dir, mk->i);
    snprintf(branch, sizeof(branch), "farm/%d-par", mk->i + 100);
    vcs_mirror *m = NULL; /* a handle of its own, as another session would have */
    mk->rc = vcs_mirror_open(&m, mk->f->data, "github/octo/app");
    if (mk->rc == 0) {
        worktree_opts o = WORKTREE_OPTS_INIT;
        o.path = path;
        o.branch = branch;
        o.base = "main";
        vcs_worktree *wt = NULL;
        mk->rc = vcs_worktree_create(&wt, m, &o);
        if (mk->rc == 0) {
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%s/src/app.c", path);
            if (!th_exists(p))
                mk->rc = -100;
            vcs_worktree_remove(wt);
        }
        vcs_worktree_free(wt);
    }
    vcs_mirror_free(m);
    return NULL;
}

/* Sessions create worktrees while the mirror is being fetched. */
static void mirror_concurrent_sessions(void **state)
{
    fx *f = *state;
    enum { N = 6 };
    pthread_t t[N], ft_t;
    struct maker mk[N];
    struct fetcher ft = {f->m, &f->r, 0, -99};
    pthread_create(&ft_t, NULL, fetch_thread, &ft);
    for (int i = 0; i < N; i++) {
        mk[i] = (struct maker){f, i, -99};
        pthread_create(&t[i], NULL, make_thread, &mk[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(mk[i].rc, 0);
    }
    pthread_join(ft_t, NULL);
    assert_int_equal(ft.rc, 0);
}

/* ---- worktrees ---- */

static void worktree_checks_out_base(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "one", "farm/1-first");
    char p[PATH_MAX], out[4096], want[64];

    snprintf(p, sizeof(p), "%s/src/app.c", vcs_worktree_path(wt));
    char *text = th_read(p);
    assert_non_null(text);
    assert_string_equal(text, "int main(void)\n{\n    return 0;\n}\n");
    free(text);
    th_rev(want, f->remote, "refs/heads/main");
    assert_string_equal(vcs_worktree_start(wt), want);
    assert_string_equal(vcs_worktree_head(wt), want);
    assert_string_equal(vcs_worktree_branch(wt), "farm/1-first");

    /* the git command inside works: status clean, log and branch right */
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "status", "--porcelain"),
                     0);
    assert_string_equal(out, "");
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "symbolic-ref", "--short", "HEAD"), 0);
    th_chomp(out);
    assert_string_equal(out, "farm/1-first");
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "log", "--format=%s"), 0);
    assert_string_equal(out, "initial\n");

    /* no token, no remote, no hooks: the worktree's config names no remote */
    snprintf(p, sizeof(p), "%s/.git/config", vcs_worktree_path(wt));
    text = th_read(p);
    assert_non_null(text);
    assert_null(strstr(text, "[remote"));
    free(text);

    /* the paths to bind read-only: hooks, config, the mirror's objects */
    char **ro = NULL;
    assert_int_equal(vcs_worktree_ro_paths(&ro, wt), 0);
    assert_non_null(ro[0]);
    assert_non_null(ro[1]);
    assert_non_null(ro[2]);
    assert_null(ro[3]);
    snprintf(p, sizeof(p), "%s/.git/hooks", vcs_worktree_path(wt));
    assert_string_equal(ro[0], p);
    assert_true(th_exists(ro[0]));
    snprintf(p, sizeof(p), "%s/.git/config", vcs_worktree_path(wt));
    assert_string_equal(ro[1], p);
    snprintf(p, sizeof(p), "%s/objects", vcs_mirror_path(f->m));
    assert_string_equal(ro[2], p);
    snprintf(p, sizeof(p), "%s/.git/objects/info/alternates", vcs_worktree_path(wt));
    text = th_read(p);
    assert_non_null(text);
    assert_non_null(strstr(text, ro[2]));
    free(text);
    strv_list_free(ro);

    /* a second worktree at the same path is refused, the first untouched */
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = vcs_worktree_path(wt);
    o.branch = "farm/2-x";
    o.base = "main";
    vcs_worktree *wt2 = NULL;
    assert_int_equal(vcs_worktree_create(&wt2, f->m, &o), FARM_EEXISTS);
    assert_null(wt2);
    snprintf(p, sizeof(p), "%s/src/app.c", vcs_worktree_path(wt));
    assert_true(th_exists(p));

    assert_int_equal(vcs_worktree_remove(wt), 0);
    assert_false(th_exists(vcs_worktree_path(wt)));
    vcs_worktree_free(wt);
}

/* The git command, run as a uid that does not own the worktree (as in the
 * sandbox), works with vcs_worktree_sandbox_env() and not without it. */
static void worktree_git_as_other_uid(void **state)
{
    fx *f = *state;
    if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0) {
        skip();
        return;
    }
    vcs_worktree *wt = wt_make(f, "otheruid", "farm/19-other");
    char **env = NULL;
    assert_int_equal(vcs_worktree_sandbox_env(&env, wt), 0);
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s/wt", f->dir);
    int n = 0;
    for (; env[n]; n++)
        ;
    assert_int_equal(n, 4);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "GIT_CONFIG_VALUE_0=%s", vcs_worktree_path(wt));
    assert_string_equal(env[2], want);
    snprintf(want, sizeof(want), "GIT_CEILING_DIRECTORIES=%s", parent);
    assert_string_equal(env[3], want);
    chmod(f->dir, 0755); /* let uid 65534 through the temp dir */
    const char *argv[] = {
        "setpriv", "--reuid=65534",       "--regid=65534", "--clear-groups", "git",
        "-C",      vcs_worktree_path(wt), "log",           "--format=%s",    NULL};
    char out[256];
    /* without the environment: refused as dubious ownership */
    assert_true(th_run(out, sizeof(out), NULL, argv) != 0);
    for (int i = 0; env[i]; i++)
        putenv(env[i]);
    int rc = th_run(out, sizeof(out), NULL, argv);
    unsetenv("GIT_CONFIG_COUNT");
    unsetenv("GIT_CONFIG_KEY_0");
    unsetenv("GIT_CONFIG_VALUE_0");
    unsetenv("GIT_CEILING_DIRECTORIES");
    assert_int_equal(rc, 0);
    assert_string_equal(out, "initial\n");
    strv_list_free(env);
    vcs_worktree_free(wt);
}

static void worktree_base_missing(void **state)
{
    fx *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/wt/missing", f->dir);
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = path;
    o.branch = "farm/3-x";
    o.base = "develop";
    vcs_worktree *wt = NULL;
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), FARM_ENOTFOUND);
    assert_null(wt);
    assert_non_null(strstr(farm_error_last(), "develop"));
    assert_non_null(strstr(farm_error_last(), "github/octo/app"));
    assert_false(th_exists(path));

    /* an unknown start commit, a bad branch, both base and start: refused */
    o.base = NULL;
    o.start = "0123456789012345678901234567890123456789";
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), FARM_ENOTFOUND);
    assert_false(th_exists(path));
    o.start = "zz";
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), FARM_EINVALID);
    o.start = NULL;
    o.base = "main";
    o.branch = "farm/bad..name";
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), FARM_EINVALID);
    o.branch = "farm/3-x";
    o.start = "0123456789012345678901234567890123456789";
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), FARM_EINVALID);
    assert_false(th_exists(path));
}

static void worktree_remove_never_follows_symlinks(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "rm", "farm/4-rm");
    char outside[PATH_MAX], keep[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    mkdir(outside, 0755);
    snprintf(keep, sizeof(keep), "%s/keep.txt", outside);
    th_write(keep, "precious\n");
    /* a symlink to a directory outside, one to a file outside, a locked dir */
    snprintf(p, sizeof(p), "%s/escape", vcs_worktree_path(wt));
    assert_int_equal(symlink(outside, p), 0);
    snprintf(p, sizeof(p), "%s/escape-file", vcs_worktree_path(wt));
    assert_int_equal(symlink(keep, p), 0);
    snprintf(p, sizeof(p), "%s/locked", vcs_worktree_path(wt));
    mkdir(p, 0755);
    snprintf(q, sizeof(q), "%s/locked/inner", vcs_worktree_path(wt));
    mkdir(q, 0755);
    snprintf(q, sizeof(q), "%s/locked/inner/f", vcs_worktree_path(wt));
    th_write(q, "x");
    snprintf(q, sizeof(q), "%s/locked/inner", vcs_worktree_path(wt));
    chmod(q, 0);
    chmod(p, 0500);

    assert_int_equal(vcs_worktree_remove(wt), 0);
    assert_false(th_exists(vcs_worktree_path(wt)));
    assert_true(th_exists(keep));
    char *text = th_read(keep);
    assert_string_equal(text, "precious\n");
    free(text);
    vcs_worktree_free(wt);
    /* removing what is already gone is fine */
    assert_int_equal(vcs_tree_remove(p), 0);
    assert_int_equal(vcs_tree_remove("/"), FARM_EINVALID);
}

/* Symlinks, executables and submodules come out as git would make them,
 * and the index written for them is one `git status` agrees with. */
static void worktree_special_entries(void **state)
{
    fx *f = *state;
    char p[PATH_MAX], out[4096], head[64];
    snprintf(p, sizeof(p), "%s/run.sh", f->src);
    th_write(p, "#!/bin/sh\necho hi\n");
    chmod(p, 0755);
    snprintf(p, sizeof(p), "%s/link", f->src);
    assert_int_equal(symlink("README.md", p), 0);
    th_rev(head, f->src, "HEAD");
    char cacheinfo[128];
    snprintf(cacheinfo, sizeof(cacheinfo), "160000,%s,vendor/sub", head);
    assert_int_equal(TH_GIT(f->src, "add", "run.sh", "link"), 0);
    assert_int_equal(TH_GIT(f->src, "update-index", "--add", "--cacheinfo", cacheinfo), 0);
    assert_int_equal(TH_GIT(f->src, "commit", "-q", "-m", "special"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main"), 0);
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);

    vcs_worktree *wt = wt_make(f, "special", "farm/11-special");
    const char *w = vcs_worktree_path(wt);
    struct stat st;
    snprintf(p, sizeof(p), "%s/run.sh", w);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode) && (st.st_mode & 0100));
    snprintf(p, sizeof(p), "%s/README.md", w);
    assert_int_equal(lstat(p, &st), 0);
    assert_false(st.st_mode & 0100);
    snprintf(p, sizeof(p), "%s/link", w);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    char target[64] = "";
    assert_int_equal(readlink(p, target, sizeof(target) - 1), 9);
    assert_string_equal(target, "README.md");
    snprintf(p, sizeof(p), "%s/vendor/sub", w);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "status", "--porcelain"), 0);
    assert_string_equal(out, "");
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "ls-files", "-s", "vendor/sub", "link"), 0);
    assert_non_null(strstr(out, "160000"));
    assert_non_null(strstr(out, "120000"));

    /* and they survive a commit unchanged */
    worktree_commit_result res;
    worktree_commit_opts o = bot("nothing");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(res.empty, 1);
    vcs_worktree_free(wt);
}

/* Enough files that the checkout shares them out among threads: every
 * file right, the index right. */
static void worktree_many_files(void **state)
{
    fx *f = *state;
    char p[PATH_MAX], text[64], out[4096];
    for (int i = 0; i < 700; i++) {
        snprintf(p, sizeof(p), "%s/many/d%d", f->src, i % 7);
        mkdir(p, 0755);
        if (i == 0) {
            snprintf(p, sizeof(p), "%s/many", f->src);
            mkdir(p, 0755);
            snprintf(p, sizeof(p), "%s/many/d0", f->src);
            mkdir(p, 0755);
        }
        snprintf(p, sizeof(p), "%s/many/d%d/f%03d.txt", f->src, i % 7, i);
        snprintf(text, sizeof(text), "file %d\n", i);
        th_write(p, text);
        if (i % 50 == 0)
            chmod(p, 0755);
    }
    assert_int_equal(TH_GIT(f->src, "add", "-A"), 0);
    assert_int_equal(TH_GIT(f->src, "commit", "-q", "-m", "many"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main"), 0);
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    vcs_worktree *wt = wt_make(f, "many", "farm/21-many");
    for (int i = 0; i < 700; i += 37) {
        snprintf(p, sizeof(p), "%s/many/d%d/f%03d.txt", vcs_worktree_path(wt), i % 7, i);
        char *t = th_read(p);
        snprintf(text, sizeof(text), "file %d\n", i);
        assert_non_null(t);
        assert_string_equal(t, text);
        free(t);
    }
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "status", "--porcelain"),
                     0);
    assert_string_equal(out, "");
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "ls-files", "-s", "many/d0"), 0);
    assert_non_null(strstr(out, "100755"));
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), NULL, "-C", vcs_worktree_path(wt), "ls-files"),
                     0);
    int lines = 0;
    for (char *q = out; *q; q++)
        lines += *q == '\n';
    assert_true(lines > 100); /* truncated at the buffer, but plenty */
    vcs_worktree_free(wt);
}

/* A tree with .gitattributes gets libgit2's filters (eol=crlf here). */
static void worktree_applies_attributes(void **state)
{
    fx *f = *state;
    char p[PATH_MAX], out[4096];
    snprintf(p, sizeof(p), "%s/.gitattributes", f->src);
    th_write(p, "*.txt text eol=crlf\n");
    assert_int_equal(TH_GIT(f->src, "add", ".gitattributes"), 0);
    assert_int_equal(TH_GIT(f->src, "commit", "-q", "-m", "attributes"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main"), 0);
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    vcs_worktree *wt = wt_make(f, "attrs", "farm/12-attrs");
    snprintf(p, sizeof(p), "%s/docs/a.txt", vcs_worktree_path(wt));
    char *text = th_read(p);
    assert_non_null(text);
    assert_string_equal(text, "one\r\ntwo\r\nthree\r\n");
    free(text);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "status", "--porcelain"),
                     0);
    assert_string_equal(out, "");
    vcs_worktree_free(wt);
}

/* Write a raw tree object (entries "mode name\0<20 bytes>") into repo;
 * its id into out. */
static void raw_tree(char out[64], const char *repo, const char *dir, const char *mode,
                     const char *name, const char *oid_hex)
{
    unsigned char raw[256];
    size_t n = (size_t)snprintf((char *)raw, sizeof(raw), "%s %s", mode, name) + 1;
    for (int i = 0; i < 20; i++) {
        unsigned v;
        sscanf(oid_hex + 2 * i, "%2x", &v);
        raw[n++] = (unsigned char)v;
    }
    char file[PATH_MAX];
    snprintf(file, sizeof(file), "%s/rawtree", dir);
    FILE *fp = fopen(file, "wb");
    fwrite(raw, 1, n, fp);
    fclose(fp);
    assert_int_equal(TH_GIT_OUT(out, 64, NULL, "-C", repo, "hash-object", "-w", "--literally", "-t",
                                "tree", file),
                     0);
    th_chomp(out);
}

/* A tree listing the same name twice, big enough for the threaded writer:
 * the second file is refused (O_EXCL), the whole worktree is undone. */
static void worktree_duplicate_names_fail_cleanly(void **state)
{
    fx *f = *state;
    char blob[64], top[64], commit[64], p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/payload", f->dir);
    th_write(p, "same\n");
    assert_int_equal(TH_GIT_OUT(blob, sizeof(blob), NULL, "-C", f->remote, "hash-object", "-w", p),
                     0);
    th_chomp(blob);
    unsigned char oid[20];
    for (int i = 0; i < 20; i++) {
        unsigned v;
        sscanf(blob + 2 * i, "%2x", &v);
        oid[i] = (unsigned char)v;
    }
    char file[PATH_MAX];
    snprintf(file, sizeof(file), "%s/rawtree", f->dir);
    FILE *fp = fopen(file, "wb");
    for (int i = 0; i <= 400; i++) {
        fprintf(fp, "100644 f%03d", i == 400 ? 123 : i);
        fputc(0, fp);
        fwrite(oid, 1, 20, fp);
    }
    fclose(fp);
    assert_int_equal(TH_GIT_OUT(top, sizeof(top), NULL, "-C", f->remote, "hash-object", "-w",
                                "--literally", "-t", "tree", file),
                     0);
    th_chomp(top);
    assert_int_equal(
        TH_GIT_OUT(commit, sizeof(commit), NULL, "-C", f->remote, "commit-tree", "-m", "dup", top),
        0);
    th_chomp(commit);
    assert_int_equal(TH_GIT(NULL, "-C", f->remote, "update-ref", "refs/heads/dup", commit), 0);
    if (vcs_mirror_fetch(f->m, &f->r) != 0) { /* refused at fetch: fine too */
        if (getenv("FARM_TEST_VERBOSE"))
            fprintf(stderr, "    dup: fetch: %s\n", farm_error_last());
        return;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/wt/dup", f->dir);
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = path;
    o.branch = "farm/22-dup";
    o.base = "dup";
    vcs_worktree *wt = NULL;
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), FARM_EIO);
    if (getenv("FARM_TEST_VERBOSE"))
        fprintf(stderr, "    dup: %s\n", farm_error_last());
    assert_non_null(strstr(farm_error_last(), "f123"));
    assert_null(wt);
    assert_false(th_exists(path));
}

/* An upstream tree that names .git or .. is refused; nothing is written
 * into the worktree's .git or outside it. */
static void worktree_refuses_hostile_tree(void **state)
{
    fx *f = *state;
    char blob[64], inner[64], top[64], commit[64], p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/payload", f->dir);
    th_write(p, "[core]\n\thooksPath = /tmp/evil\n");
    assert_int_equal(TH_GIT_OUT(blob, sizeof(blob), NULL, "-C", f->remote, "hash-object", "-w", p),
                     0);
    th_chomp(blob);
    const char *names[] = {".git", ".GIT", "..", "."};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        raw_tree(inner, f->remote, f->dir, "100644", "config", blob);
        raw_tree(top, f->remote, f->dir, "40000", names[i], inner);
        assert_int_equal(TH_GIT_OUT(commit, sizeof(commit), NULL, "-C", f->remote, "commit-tree",
                                    "-m", "evil", top),
                         0);
        th_chomp(commit);
        assert_int_equal(TH_GIT(NULL, "-C", f->remote, "update-ref", "refs/heads/evil", commit), 0);
        int rc = vcs_mirror_fetch(f->m, &f->r);
        if (rc != 0) { /* refusing the objects at fetch time is fine too */
            if (getenv("FARM_TEST_VERBOSE"))
                fprintf(stderr, "    %s: fetch: %s\n", names[i], farm_error_last());
            continue;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/wt/evil%zu", f->dir, i);
        worktree_opts o = WORKTREE_OPTS_INIT;
        o.path = path;
        o.branch = "farm/13-evil";
        o.base = "evil";
        vcs_worktree *wt = NULL;
        assert_true(vcs_worktree_create(&wt, f->m, &o) < 0);
        if (getenv("FARM_TEST_VERBOSE"))
            fprintf(stderr, "    %s: %s\n", names[i], farm_error_last());
        assert_null(wt);
        assert_false(th_exists(path));
    }
    snprintf(p, sizeof(p), "%s/wt/config", f->dir);
    assert_false(th_exists(p));
}

/* A warm slot: made on a placeholder branch, moved, reopened, switched to
 * the session's branch, then used as usual. */
static void worktree_warm_slot_adopted(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "warm-1", "farm-warm/warm-1");
    char start[VCS_OID_HEXSZ], moved[PATH_MAX], out[1024];
    memcpy(start, vcs_worktree_start(wt), sizeof(start));
    snprintf(moved, sizeof(moved), "%s/wt/session-42", f->dir);
    assert_int_equal(rename(vcs_worktree_path(wt), moved), 0);
    vcs_worktree_free(wt);
    wt = NULL;

    assert_int_equal(vcs_worktree_open(&wt, f->m, moved, "farm-warm/warm-1", start, start), 0);
    assert_int_equal(vcs_worktree_branch_switch(wt, "farm/42-answer"), 0);
    assert_string_equal(vcs_worktree_branch(wt), "farm/42-answer");
    assert_int_equal(vcs_worktree_branch_switch(wt, "bad..name"), FARM_EINVALID);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), moved, "branch", "--format=%(refname:short)"), 0);
    assert_string_equal(out, "farm/42-answer\n");
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), moved, "status", "--porcelain", "--branch"), 0);
    assert_string_equal(out, "## farm/42-answer\n");

    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/answer.txt", moved);
    th_write(p, "42\n");
    worktree_commit_result res;
    worktree_commit_opts o = bot("answer");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);
    char got[64];
    th_rev(got, f->remote, "refs/heads/farm/42-answer");
    assert_string_equal(got, res.oid);
    th_rev(got, f->remote, "refs/heads/farm-warm/warm-1");
    assert_string_equal(got, "");
    vcs_worktree_free(wt);
}

/* ---- commit ---- */

static void commit_records_every_change(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "c", "farm/5-change");
    char p[PATH_MAX], out[8192], start[VCS_OID_HEXSZ];
    memcpy(start, vcs_worktree_head(wt), sizeof(start));
    const char *w = vcs_worktree_path(wt);

    wt_file(wt, "README.md", "# app\n\nhello, world\n"); /* modified */
    wt_file(wt, "src/new.c", "/* new */\n");             /* added */
    snprintf(p, sizeof(p), "%s/docs/a.txt", w);
    unlink(p); /* deleted */
    snprintf(p, sizeof(p), "%s/src/app.c", w);
    chmod(p, 0755); /* mode */
    wt_file(wt, ".gitignore", "*.log\n");
    wt_file(wt, "build.log", "noise\n"); /* ignored */

    worktree_commit_opts o = bot("Fix the greeting\n\nCloses #5.\n\n");
    o.time_s = 1700000000;
    worktree_commit_result res;
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(res.empty, 0);
    assert_int_equal(strlen(res.oid), 40);
    assert_string_equal(vcs_worktree_head(wt), res.oid);
    assert_string_equal(vcs_worktree_start(wt), start);

    /* what git sees */
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "log", "-1", "--format=%an <%ae>|%cn|%P|%ct"),
                     0);
    th_chomp(out);
    char want[256];
    snprintf(want, sizeof(want), "farm-bot <farm-bot@example.com>|farm-bot|%s|1700000000", start);
    assert_string_equal(out, want);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "log", "-1", "--format=%B"), 0);
    assert_string_equal(out, "Fix the greeting\n\nCloses #5.\n\nCo-authored-by: Ada Lovelace "
                             "<ada@example.com>\n\n");
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "diff-tree", "--no-commit-id", "-r",
                                "--name-status", "--no-renames", "HEAD"),
                     0);
    assert_non_null(strstr(out, "M\tREADME.md"));
    assert_non_null(strstr(out, "A\tsrc/new.c"));
    assert_non_null(strstr(out, "D\tdocs/a.txt"));
    assert_non_null(strstr(out, "M\tsrc/app.c"));
    assert_non_null(strstr(out, "A\t.gitignore"));
    assert_null(strstr(out, "build.log"));
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "ls-tree", "HEAD", "src/app.c"), 0);
    assert_int_equal(strncmp(out, "100755", 6), 0);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "rev-parse", "farm/5-change"), 0);
    th_chomp(out);
    assert_string_equal(out, res.oid);
    /* inside, everything is committed */
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "status", "--porcelain"), 0);
    assert_string_equal(out, "");

    /* diffstat from the start: 5 files; 1 + 1 + 1 added, 1 + 3 deleted */
    vcs_diffstat ds;
    assert_int_equal(vcs_worktree_diffstat(&ds, wt), 0);
    assert_int_equal(ds.files, 5);
    assert_int_equal(ds.insertions, 3);
    assert_int_equal(ds.deletions, 4);
    assert_non_null(strstr(ds.text, "README.md"));
    assert_non_null(strstr(ds.text, "5 files changed"));
    vcs_diffstat_free(&ds);

    /* nothing more changed: reported, not committed */
    worktree_commit_result again;
    assert_int_equal(vcs_worktree_commit(&again, wt, &o), 0);
    assert_int_equal(again.empty, 1);
    assert_string_equal(again.oid, "");
    assert_string_equal(vcs_worktree_head(wt), res.oid);

    /* reattach after a "crash" during a commit: the new handle carries on
       from the head, and the index lock the killed process left is gone */
    char path[PATH_MAX], gitdir[PATH_MAX], lock[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s", w);
    assert_int_equal(TH_GIT_OUT(gitdir, sizeof(gitdir), w, "rev-parse", "--absolute-git-dir"), 0);
    th_chomp(gitdir);
    snprintf(lock, sizeof(lock), "%s/index.lock", gitdir);
    FILE *lf = fopen(lock, "w");
    assert_non_null(lf);
    fclose(lf);
    vcs_worktree_free(wt);
    wt = NULL;
    assert_int_equal(vcs_worktree_open(&wt, f->m, path, "farm/5-change", start, res.oid), 0);
    assert_int_equal(access(lock, F_OK), -1);
    wt_file(wt, "more.txt", "more\n");
    worktree_commit_result r2;
    assert_int_equal(vcs_worktree_commit(&r2, wt, &o), 0);
    assert_int_equal(r2.empty, 0);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), path, "log", "-1", "--format=%P"), 0);
    th_chomp(out);
    assert_string_equal(out, res.oid);
    assert_int_equal(vcs_worktree_diffstat(&ds, wt), 0);
    assert_int_equal(ds.files, 6);
    vcs_diffstat_free(&ds);
    vcs_worktree *bad = NULL;
    assert_int_equal(vcs_worktree_open(&bad, f->m, path, "farm/5-change", start,
                                       "0123456789012345678901234567890123456789"),
                     FARM_ENOTFOUND);
    assert_int_equal(
        vcs_worktree_open(&bad, f->m, "/nonexistent/wt", "farm/5-change", start, start),
        FARM_ENOTFOUND);
    vcs_worktree_free(wt);
}

static void commit_rejects_bad_identity(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "id", "farm/6-id");
    wt_file(wt, "x.txt", "x\n");
    worktree_commit_result res;
    worktree_commit_opts o = bot("msg");
    o.author_email = "no-at-sign";
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_EINVALID);
    o = bot("msg");
    o.coauthor_name = "Eve <eve@evil>\nSigned-off-by: x";
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_EINVALID);
    o = bot("");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_EINVALID);
    o = bot(" \n\t\n");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_EINVALID);

    /* a file over the size limit: nothing is committed, the file is named */
    char big[PATH_MAX];
    snprintf(big, sizeof(big), "%s/big.bin", vcs_worktree_path(wt));
    th_write(big, "0123456789abcdef0123456789abcdef");
    o = bot("too big");
    o.max_file_bytes = 16;
    char head[VCS_OID_HEXSZ];
    memcpy(head, vcs_worktree_head(wt), sizeof(head));
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_ETOOBIG);
    assert_non_null(strstr(farm_error_last(), "big.bin"));
    assert_string_equal(vcs_worktree_head(wt), head);
    char out[1024];
    unlink(big);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "status", "--porcelain"),
                     0);
    assert_string_equal(out, "?? x.txt\n"); /* the index was left at the head */

    /* too many files at once */
    wt_file(wt, "y.txt", "y\n");
    wt_file(wt, "z.txt", "z\n");
    o = bot("too many");
    o.max_files = 2;
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_ETOOBIG);
    assert_non_null(strstr(farm_error_last(), "more than 2 files"));
    assert_string_equal(vcs_worktree_head(wt), head);
    o.max_files = 3;
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(res.empty, 0);
    wt_file(wt, "w.txt", "w\n");
    o = bot("no co-author");
    o.coauthor_name = NULL;
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "log", "-1", "--format=%B"), 0);
    assert_string_equal(out, "no co-author\n\n");
    vcs_worktree_free(wt);
}

/* The agent committed, switched branch, staged junk and broke the index:
 * the farm's commit still sits on the head it recorded and holds exactly
 * the files as they are. */
static void commit_ignores_agent_git_state(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "agent", "farm/7-agent");
    const char *w = vcs_worktree_path(wt);
    char start[VCS_OID_HEXSZ], out[4096], p[PATH_MAX];
    memcpy(start, vcs_worktree_head(wt), sizeof(start));

    wt_file(wt, "a.txt", "agent commit\n");
    assert_int_equal(TH_GIT(w, "add", "a.txt"), 0);
    assert_int_equal(TH_GIT(w, "commit", "-q", "-m", "agent's own"), 0);
    assert_int_equal(TH_GIT(w, "checkout", "-q", "-b", "elsewhere"), 0);
    wt_file(wt, "b.txt", "staged then deleted\n");
    assert_int_equal(TH_GIT(w, "add", "b.txt"), 0);
    snprintf(p, sizeof(p), "%s/b.txt", w);
    unlink(p);
    snprintf(p, sizeof(p), "%s/.git/index", w);
    th_write(p, "garbage, not an index");

    worktree_commit_result res;
    worktree_commit_opts o = bot("squashed");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "log", "-1", "--format=%P %s"), 0);
    th_chomp(out);
    char want[128];
    snprintf(want, sizeof(want), "%s squashed", start);
    assert_string_equal(out, want);
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "diff-tree", "--no-commit-id", "-r",
                                "--name-status", "HEAD"),
                     0);
    assert_string_equal(out, "A\ta.txt\n");
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), w, "symbolic-ref", "--short", "HEAD"), 0);
    th_chomp(out);
    assert_string_equal(out, "farm/7-agent");
    vcs_worktree_free(wt);
}

/* Repository-local settings that would run programs are never honoured:
 * hooks, core.hooksPath, core.fsmonitor, filter drivers (clean, smudge,
 * process), diff and merge drivers. Each would create a marker file. */
static void commit_runs_no_repository_programs(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "evil", "farm/8-evil");
    const char *w = vcs_worktree_path(wt);
    char marker[PATH_MAX], script[PATH_MAX], p[PATH_MAX], cfg[PATH_MAX * 2];
    snprintf(marker, sizeof(marker), "%s/PWNED", f->dir);
    snprintf(script, sizeof(script), "%s/evil.sh", f->dir);
    char body[PATH_MAX + 64];
    snprintf(body, sizeof(body), "#!/bin/sh\ntouch %s\ncat\n", marker);
    th_write(script, body);
    chmod(script, 0755);
    for (const char *h = "pre-commit\0commit-msg\0post-commit\0pre-push\0reference-transaction\0";
         *h; h += strlen(h) + 1) {
        snprintf(p, sizeof(p), "%s/.git/hooks/%s", w, h);
        th_write(p, body);
        chmod(p, 0755);
    }
    snprintf(p, sizeof(p), "%s/.git/config", w);
    FILE *c = fopen(p, "a");
    assert_non_null(c);
    snprintf(cfg, sizeof(cfg),
             "[core]\n\thooksPath = %s/hooks2\n\tfsmonitor = %s\n\tattributesFile = %s/attrs\n"
             "[filter \"evil\"]\n\tclean = %s\n\tsmudge = %s\n\tprocess = %s\n\trequired = true\n"
             "[diff \"evil\"]\n\ttextconv = %s\n\tcommand = %s\n",
             f->dir, script, f->dir, script, script, script, script, script);
    fputs(cfg, c);
    fclose(c);
    wt_file(wt, ".gitattributes", "* filter=evil diff=evil\n");
    wt_file(wt, "payload.txt", "raw content\n");

    worktree_commit_result res;
    worktree_commit_opts o = bot("with traps");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(res.empty, 0);
    vcs_diffstat ds;
    assert_int_equal(vcs_worktree_diffstat(&ds, wt), 0);
    vcs_diffstat_free(&ds);
    assert_false(th_exists(marker));

    /* the blob is the file as it is, not what a clean filter would make */
    char out[256], obj[128];
    snprintf(obj, sizeof(obj), "%s:payload.txt", res.oid);
    assert_int_equal(
        th_run(out, sizeof(out), w, TH_ARGV("git", "-c", "core.fsmonitor=", "cat-file", "-p", obj)),
        0);
    assert_string_equal(out, "raw content\n");
    assert_false(th_exists(marker));
    vcs_worktree_free(wt);
}

/* .git replaced by a pointer to another repository, or commondir added:
 * the farm refuses to commit there rather than follow it. */
static void commit_refuses_redirected_gitdir(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "redir", "farm/9-redir");
    char p[PATH_MAX], text[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/.git/commondir", vcs_worktree_path(wt));
    snprintf(text, sizeof(text), "%s\n", vcs_mirror_path(f->m));
    th_write(p, text);
    wt_file(wt, "x.txt", "x\n");
    worktree_commit_result res;
    worktree_commit_opts o = bot("x");
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "refusing"));
    unlink(p);

    /* .git as a file pointing elsewhere */
    char moved[PATH_MAX], git[PATH_MAX];
    snprintf(git, sizeof(git), "%s/.git", vcs_worktree_path(wt));
    snprintf(moved, sizeof(moved), "%s/moved-git", f->dir);
    assert_int_equal(rename(git, moved), 0);
    snprintf(text, sizeof(text), "gitdir: %s\n", moved);
    th_write(git, text);
    assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_ENOTFOUND);
    unlink(git);
    assert_int_equal(rename(moved, git), 0);

    /* symlinks planted under .git would aim the farm's writes (refs,
     * reflogs, objects) or reads (another repository's objects) outside */
    char outside[PATH_MAX], link[PATH_MAX];
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    mkdir(outside, 0755);
    const char *plants[] = {"refs/heads/farm", "logs", "objects/pack", "objects/ab"};
    for (size_t i = 0; i < sizeof(plants) / sizeof(plants[0]); i++) {
        snprintf(link, sizeof(link), "%s/%s", git, plants[i]);
        char saved[PATH_MAX];
        snprintf(saved, sizeof(saved), "%s.saved", link);
        int had = rename(link, saved) == 0;
        assert_int_equal(symlink(outside, link), 0);
        assert_int_equal(vcs_worktree_commit(&res, wt, &o), FARM_EINVALID);
        assert_non_null(strstr(farm_error_last(), "symlink"));
        assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), FARM_EINVALID);
        unlink(link);
        if (had)
            assert_int_equal(rename(saved, link), 0);
    }
    DIR *od = opendir(outside);
    int entries = 0;
    for (struct dirent *de; (de = readdir(od)) != NULL;)
        entries += de->d_name[0] != '.';
    closedir(od);
    assert_int_equal(entries, 0);

    assert_int_equal(vcs_worktree_commit(&res, wt, &o), 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);
    vcs_worktree_free(wt);
}

/* When the farm runs as root the sandbox may hand the worktree to another
 * uid (chown where there are no ACLs): the farm still commits and pushes. */
static void commit_in_worktree_owned_by_sandbox_uid(void **state)
{
    fx *f = *state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    vcs_worktree *wt = wt_make(f, "chowned", "farm/18-chowned");
    wt_file(wt, "by-agent.txt", "agent\n");
    char uid[32];
    snprintf(uid, sizeof(uid), "%u:%u", 0x70001234u, 0x70001234u);
    assert_int_equal(th_run(NULL, 0, NULL, TH_ARGV("chown", "-R", uid, vcs_worktree_path(wt))), 0);
    worktree_commit_result res;
    worktree_commit_opts o = bot("chowned");
    int rc = vcs_worktree_commit(&res, wt, &o);
    if (rc)
        fprintf(stderr, "%s\n", farm_error_last());
    assert_int_equal(rc, 0);
    assert_int_equal(res.empty, 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);
    vcs_diffstat ds;
    assert_int_equal(vcs_worktree_diffstat(&ds, wt), 0);
    assert_int_equal(ds.files, 1);
    vcs_diffstat_free(&ds);
    vcs_worktree_free(wt);
}

/* ---- push over file:// ---- */

static void push_with_lease(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "push", "farm/10-push");
    char got[64];
    worktree_commit_result c1, c2, c3;
    worktree_commit_opts o = bot("first");

    wt_file(wt, "one.txt", "1\n");
    assert_int_equal(vcs_worktree_commit(&c1, wt, &o), 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);
    th_rev(got, f->remote, "refs/heads/farm/10-push");
    assert_string_equal(got, c1.oid);
    /* a repeat of the same push (after a crash) is fine */
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);

    /* a revision: pushed against the lease */
    wt_file(wt, "two.txt", "2\n");
    o.message = "second";
    assert_int_equal(vcs_worktree_commit(&c2, wt, &o), 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, c1.oid), 0);
    th_rev(got, f->remote, "refs/heads/farm/10-push");
    assert_string_equal(got, c2.oid);

    /* someone else pushes to the branch: the lease says no */
    char other[PATH_MAX];
    snprintf(other, sizeof(other), "%s/other", f->dir);
    assert_int_equal(TH_GIT(f->dir, "clone", "-q", "-b", "farm/10-push", f->remote, other), 0);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/human.txt", other);
    th_write(p, "human\n");
    assert_int_equal(TH_GIT(other, "add", "-A"), 0);
    assert_int_equal(TH_GIT(other, "commit", "-q", "-m", "human"), 0);
    assert_int_equal(TH_GIT(other, "push", "-q", "origin", "farm/10-push"), 0);
    char human[64];
    th_rev(human, f->remote, "refs/heads/farm/10-push");

    wt_file(wt, "three.txt", "3\n");
    o.message = "third";
    assert_int_equal(vcs_worktree_commit(&c3, wt, &o), 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, c2.oid), FARM_ECONFLICT);
    assert_non_null(strstr(farm_error_last(), "farm/10-push"));
    assert_non_null(strstr(farm_error_last(), "lease"));
    th_rev(got, f->remote, "refs/heads/farm/10-push");
    assert_string_equal(got, human);
    /* the farm thinks it has not pushed yet, but the branch exists */
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), FARM_ECONFLICT);
    /* the branch deleted upstream while the farm expected it */
    assert_int_equal(TH_GIT(other, "push", "-q", "origin", ":farm/10-push"), 0);
    assert_int_equal(vcs_worktree_push(wt, &f->r, c2.oid), FARM_ECONFLICT);
    assert_non_null(strstr(farm_error_last(), "no longer exists"));
    assert_int_equal(vcs_worktree_push(wt, &f->r, "nothex"), FARM_EINVALID);
    vcs_worktree_free(wt);
}

/* A fetch killed mid-way leaves ref lock files in the mirror (SIGKILL in
 * the chaos test did): the next fetch, holding the mirror's lock, clears them
 * instead of failing with "failed to lock file" for ever. */
static void mirror_fetch_clears_a_killed_fetchs_locks(void **state)
{
    fx *f = *state;
    char p[PATH_MAX], want[64], got[VCS_OID_HEXSZ + 1];

    snprintf(p, sizeof(p), "%s/refs/heads/main.lock", vcs_mirror_path(f->m));
    th_write(p, "0000000000000000000000000000000000000000\n");
    snprintf(p, sizeof(p), "%s/packed-refs.lock", vcs_mirror_path(f->m));
    th_write(p, "");
    snprintf(p, sizeof(p), "%s/README.md", f->src);
    th_write(p, "# app\n\nafter a kill\n");
    assert_int_equal(TH_GIT(f->src, "commit", "-q", "-am", "after a kill"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main"), 0);
    th_rev(want, f->remote, "refs/heads/main");

    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "main"), 0);
    assert_string_equal(got, want);
    snprintf(p, sizeof(p), "%s/packed-refs.lock", vcs_mirror_path(f->m));
    assert_false(th_exists(p));
    snprintf(p, sizeof(p), "%s/refs/heads/main.lock", vcs_mirror_path(f->m));
    assert_false(th_exists(p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(branch_names),
        cmocka_unit_test_setup_teardown(mirror_fetches_and_prunes, setup, teardown),
        cmocka_unit_test_setup_teardown(mirror_fetch_bad_remote, setup, teardown),
        cmocka_unit_test_setup_teardown(mirror_fetch_clears_a_killed_fetchs_locks, setup, teardown),
        cmocka_unit_test_setup_teardown(mirror_repack_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(mirror_lock_excludes_other_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(mirror_concurrent_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_checks_out_base, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_base_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_git_as_other_uid, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_remove_never_follows_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_special_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_many_files, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_warm_slot_adopted, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_applies_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_refuses_hostile_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(worktree_duplicate_names_fail_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_records_every_change, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_rejects_bad_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_ignores_agent_git_state, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_runs_no_repository_programs, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_refuses_redirected_gitdir, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_in_worktree_owned_by_sandbox_uid, setup, teardown),
        cmocka_unit_test_setup_teardown(push_with_lease, setup, teardown),
    };
    if (vcs_git_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
