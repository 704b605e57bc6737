/*
 * test_git_http.c - vcs/git against a real smart-HTTP remote (`git
 * http-backend` behind tests/fakes/git_http.py) that wants a token: the happy
 * path end to end with the token never written anywhere, then the unhappy
 * ones: token expired (401) on fetch and on push, no token, token rotated
 * between fetch and push, the server refusing the update (non-fast-forward,
 * a hook), a repository that does not exist, and cancellation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "test_git_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define TOKEN     "ghs_fakeTokenValue0123456789abcdef"
#define OLD_TOKEN "ghs_expiredTokenValue9876543210"

typedef struct fx {
    char *dir;
    char root[PATH_MAX];   /* served repositories */
    char remote[PATH_MAX]; /* <root>/app.git */
    char tokens[PATH_MAX]; /* the server's valid tokens */
    char log[PATH_MAX];
    char data[PATH_MAX];
    char url[256];
    th_http srv;
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
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    mkdir(f->root, 0755);
    if (th_remote_make(f->root, "app") != 0)
        return -1;
    snprintf(f->remote, sizeof(f->remote), "%s/app.git", f->root);
    snprintf(f->tokens, sizeof(f->tokens), "%s/tokens", f->dir);
    th_write(f->tokens, TOKEN "\n");
    snprintf(f->log, sizeof(f->log), "%s/requests.log", f->dir);
    snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
    if (th_http_start(&f->srv, f->root, f->tokens, f->log) != 0)
        return -1;
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/app.git", f->srv.port);
    vcs_remote r = VCS_REMOTE_INIT;
    r.url = f->url;
    r.name = "octo/app";
    r.user = "x-access-token";
    r.token = TOKEN;
    f->r = r;
    if (vcs_mirror_open(&f->m, f->data, "github/octo/app") != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    th_http_stop(&f->srv);
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

static void commit_file(vcs_worktree *wt, const char *rel, const char *text,
                        worktree_commit_result *res)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", vcs_worktree_path(wt), rel);
    th_write(p, text);
    worktree_commit_opts o = WORKTREE_COMMIT_OPTS_INIT;
    o.message = "change";
    o.author_name = "farm-bot";
    o.author_email = "bot@example.com";
    o.coauthor_name = "Ada";
    o.coauthor_email = "ada@example.com";
    int rc = vcs_worktree_commit(res, wt, &o);
    if (rc != 0)
        fprintf(stderr, "worktree_commit: %s\n", farm_error_last());
    assert_int_equal(rc, 0);
    assert_int_equal(res->empty, 0);
}

static void assert_no_token_in_error(void)
{
    if (getenv("FARM_TEST_VERBOSE"))
        fprintf(stderr, "    error: %s\n", farm_error_last());
    assert_null(strstr(farm_error_last(), TOKEN));
    assert_null(strstr(farm_error_last(), OLD_TOKEN));
}

static void http_fetch_commit_push(void **state)
{
    fx *f = *state;
    int rc = vcs_mirror_fetch(f->m, &f->r);
    if (rc)
        fprintf(stderr, "%s\n", farm_error_last());
    assert_int_equal(rc, 0);
    char want[64], got[64];
    th_rev(want, f->remote, "refs/heads/main");
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "main"), 0);
    assert_string_equal(got, want);

    vcs_worktree *wt = wt_make(f, "s1", "farm/12-fix-login-typo");
    worktree_commit_result c1, c2;
    commit_file(wt, "fix.txt", "fixed\n", &c1);
    rc = vcs_worktree_push(wt, &f->r, NULL);
    if (rc)
        fprintf(stderr, "%s\n", farm_error_last());
    assert_int_equal(rc, 0);
    th_rev(got, f->remote, "refs/heads/farm/12-fix-login-typo");
    assert_string_equal(got, c1.oid);

    /* a revision on the same branch, with the lease */
    commit_file(wt, "fix.txt", "fixed better\n", &c2);
    assert_int_equal(vcs_worktree_push(wt, &f->r, c1.oid), 0);
    th_rev(got, f->remote, "refs/heads/farm/12-fix-login-typo");
    assert_string_equal(got, c2.oid);

    /* the server saw authenticated receive-pack requests as x-access-token */
    char *log = th_read(f->log);
    assert_non_null(log);
    assert_non_null(strstr(log, "POST /app.git/git-receive-pack 200 x-access-token"));
    assert_non_null(strstr(log, "POST /app.git/git-upload-pack 200 x-access-token"));
    free(log);

    /* the token is nowhere on disk: not in the worktree (incl. .git), not
     * in the mirror, not in the data directory */
    assert_false(th_tree_contains(vcs_worktree_path(wt), TOKEN));
    assert_false(th_tree_contains(f->data, TOKEN));
    /* and the git command inside the worktree has no way to reach the remote */
    char out[1024];
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "remote"), 0);
    assert_string_equal(out, "");

    /* the mirror fetches the farm's branch back */
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    assert_int_equal(vcs_mirror_branch_oid(got, f->m, "farm/12-fix-login-typo"), 0);
    assert_string_equal(got, c2.oid);
    vcs_worktree_free(wt);
}

static void http_expired_token(void **state)
{
    fx *f = *state;
    vcs_remote r = f->r;
    r.token = OLD_TOKEN;
    assert_int_equal(vcs_mirror_fetch(f->m, &r), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "octo/app"));
    assert_non_null(strstr(farm_error_last(), "refused"));
    assert_no_token_in_error();
    /* the token is offered once, not hammered */
    char *log = th_read(f->log);
    assert_non_null(log);
    int n401 = 0;
    for (char *p = log; (p = strstr(p, " 401 ")) != NULL; p++)
        n401++;
    assert_true(n401 >= 1 && n401 <= 3);
    free(log);

    /* with no token at all */
    r.token = NULL;
    assert_int_equal(vcs_mirror_fetch(f->m, &r), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "no token"));
}

/* Fetched with a good token, which then expires before the push. */
static void http_token_expires_before_push(void **state)
{
    fx *f = *state;
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    vcs_worktree *wt = wt_make(f, "s2", "farm/13-x");
    worktree_commit_result c;
    commit_file(wt, "a.txt", "a\n", &c);
    th_write(f->tokens, "ghs_rotatedToSomethingElse\n");
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "push"));
    assert_non_null(strstr(farm_error_last(), "octo/app"));
    assert_no_token_in_error();
    char got[64];
    th_rev(got, f->remote, "refs/heads/farm/13-x");
    assert_string_equal(got, "");
    /* a fresh token works again */
    th_write(f->tokens, TOKEN "\n");
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);
    assert_false(th_tree_contains(vcs_worktree_path(wt), TOKEN));
    vcs_worktree_free(wt);
}

/* The lease holds but the server refuses: receive.denyNonFastForwards, and
 * a pre-receive hook that declines (a protected branch, say). */
static void http_server_rejects_push(void **state)
{
    fx *f = *state;
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    vcs_worktree *wt = wt_make(f, "s3", "farm/14-x");
    worktree_commit_result c1, c2;
    commit_file(wt, "a.txt", "a\n", &c1);
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);

    /* a second worktree starts again from main: not a descendant of c1 */
    vcs_worktree *wt2 = wt_make(f, "s3b", "farm/14-x");
    commit_file(wt2, "b.txt", "b\n", &c2);
    assert_int_equal(TH_GIT(NULL, "-C", f->remote, "config", "receive.denyNonFastForwards", "true"),
                     0);
    int rc = vcs_worktree_push(wt2, &f->r, c1.oid);
    assert_int_equal(rc, FARM_ECONFLICT);
    assert_non_null(strstr(farm_error_last(), "farm/14-x"));
    assert_no_token_in_error();
    char got[64];
    th_rev(got, f->remote, "refs/heads/farm/14-x");
    assert_string_equal(got, c1.oid);

    /* without that setting the forced push under the lease goes through */
    assert_int_equal(
        TH_GIT(NULL, "-C", f->remote, "config", "--unset", "receive.denyNonFastForwards"), 0);
    assert_int_equal(vcs_worktree_push(wt2, &f->r, c1.oid), 0);
    th_rev(got, f->remote, "refs/heads/farm/14-x");
    assert_string_equal(got, c2.oid);

    /* a hook that declines everything */
    char hook[PATH_MAX];
    snprintf(hook, sizeof(hook), "%s/hooks/pre-receive", f->remote);
    th_write(hook, "#!/bin/sh\necho 'protected branch: farm may not push' >&2\nexit 1\n");
    chmod(hook, 0755);
    worktree_commit_result c3;
    commit_file(wt2, "c.txt", "c\n", &c3);
    assert_int_equal(vcs_worktree_push(wt2, &f->r, c2.oid), FARM_ECONFLICT);
    assert_non_null(strstr(farm_error_last(), "rejected"));
    th_rev(got, f->remote, "refs/heads/farm/14-x");
    assert_string_equal(got, c2.oid);
    vcs_worktree_free(wt);
    vcs_worktree_free(wt2);
}

static void http_missing_repository(void **state)
{
    fx *f = *state;
    char url[300];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/nope.git", f->srv.port);
    vcs_remote r = f->r;
    r.url = url;
    r.name = "octo/nope";
    int rc = vcs_mirror_fetch(f->m, &r);
    assert_int_equal(rc, FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "octo/nope"));
    assert_no_token_in_error();

    /* pushing there is the same error */
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    vcs_worktree *wt = wt_make(f, "nope", "farm/20-nope");
    worktree_commit_result c;
    commit_file(wt, "n.txt", "n\n", &c);
    assert_int_equal(vcs_worktree_push(wt, &r, NULL), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "octo/nope"));
    assert_no_token_in_error();
    vcs_worktree_free(wt);

    /* nothing listening at all */
    snprintf(url, sizeof(url), "http://127.0.0.1:1/app.git");
    assert_int_equal(vcs_mirror_fetch(f->m, &r), FARM_EIO);
    /* credentials in the URL never reach a message */
    snprintf(url, sizeof(url), "http://someone:%s@127.0.0.1:1/app.git", TOKEN);
    assert_true(vcs_mirror_fetch(f->m, &r) < 0);
    assert_no_token_in_error();
}

static void http_cancelled(void **state)
{
    fx *f = *state;
    volatile int cancel = 1;
    vcs_remote r = f->r;
    r.cancel = &cancel;
    assert_int_equal(vcs_mirror_fetch(f->m, &r), FARM_ECANCELLED);
    cancel = 0;
    assert_int_equal(vcs_mirror_fetch(f->m, &r), 0);
}

/* A remote that takes the connection and never answers: the stall
 * timeout ends the fetch and the push (and frees the mirror's lock). */
static void http_stalled_remote(void **state)
{
    fx *f = *state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s, 8), 0); /* the kernel completes handshakes; nobody answers */
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/app.git", ntohs(a.sin_port));
    vcs_remote r = f->r;
    r.url = url;
    r.stall_timeout_s = 1;

    int64_t t0 = clock_mono_ms();
    assert_int_equal(vcs_mirror_fetch(f->m, &r), FARM_ETIMEOUT);
    int64_t took = clock_mono_ms() - t0;
    assert_true(took >= 900 && took < 15000);
    assert_non_null(strstr(farm_error_last(), "stalled"));
    assert_no_token_in_error();

    /* the lock was released: a fetch from the real remote goes through */
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    vcs_worktree *wt = wt_make(f, "stall", "farm/15-stall");
    worktree_commit_result c;
    commit_file(wt, "s.txt", "s\n", &c);
    assert_int_equal(vcs_worktree_push(wt, &r, NULL), FARM_ETIMEOUT);
    assert_int_equal(vcs_worktree_push(wt, &f->r, NULL), 0);
    vcs_worktree_free(wt);
    close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(http_fetch_commit_push, setup, teardown),
        cmocka_unit_test_setup_teardown(http_expired_token, setup, teardown),
        cmocka_unit_test_setup_teardown(http_token_expires_before_push, setup, teardown),
        cmocka_unit_test_setup_teardown(http_server_rejects_push, setup, teardown),
        cmocka_unit_test_setup_teardown(http_missing_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(http_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(http_stalled_remote, setup, teardown),
    };
    if (vcs_git_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
