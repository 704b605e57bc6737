/*
 * test_git_merge.c - the base branch brought into a session's branch:
 * a clean merge, a conflict left with markers for the agent, the merge
 * commit with two parents (signed when there is a key), an up-to-date
 * branch left alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "test_git_helpers.h"

typedef struct fx {
    char *dir;
    char data[PATH_MAX];
    char src[PATH_MAX];
    char url[PATH_MAX + 8];
    vcs_mirror *m;
    vcs_remote r;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char home[PATH_MAX], bare[PATH_MAX];

    if (!f || !(f->dir = th_tmpdir()))
        return -1;
    snprintf(home, sizeof(home), "%s/home", f->dir);
    mkdir(home, 0700);
    th_env_setup(home);
    if (th_remote_make(f->dir, "app") != 0)
        return -1;
    snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
    snprintf(f->src, sizeof(f->src), "%s/app-src", f->dir);
    snprintf(bare, sizeof(bare), "%s/app.git", f->dir);
    snprintf(f->url, sizeof(f->url), "file://%s", bare);
    TH_GIT(f->src, "remote", "add", "origin", bare);
    f->r = (vcs_remote)VCS_REMOTE_INIT;
    f->r.url = f->url;
    f->r.name = "octo/app";
    if (vcs_mirror_open(&f->m, f->data, "github/octo/app") != 0 || vcs_mirror_fetch(f->m, &f->r))
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

/* A worktree on a new branch with README.md changed and committed. */
static vcs_worktree *branch_with_change(fx *f, const char *readme)
{
    char path[PATH_MAX], p[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/wt", f->dir);
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = path;
    o.branch = "farm/3-x";
    o.base = "main";
    vcs_worktree *wt = NULL;
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), 0);
    snprintf(p, sizeof(p), "%s/README.md", path);
    th_write(p, readme);
    worktree_commit_opts c = WORKTREE_COMMIT_OPTS_INIT;
    c.message = "branch change";
    c.author_name = "farm-bot";
    c.author_email = "farm-bot@example.com";
    worktree_commit_result res;
    assert_int_equal(vcs_worktree_commit(&res, wt, &c), 0);
    assert_int_equal(res.empty, 0);
    return wt;
}

/* main moves upstream: file rel gets text; the mirror fetched; its oid. */
static void base_moves(fx *f, const char *rel, const char *text, char out[VCS_OID_HEXSZ])
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof(p), "%s/%s", f->src, rel);
    th_write(p, text);
    assert_int_equal(TH_GIT(f->src, "commit", "-qam", "base moves"), 0);
    assert_int_equal(TH_GIT(f->src, "push", "-q", "origin", "main"), 0);
    assert_int_equal(vcs_mirror_fetch(f->m, &f->r), 0);
    assert_int_equal(vcs_mirror_branch_oid(out, f->m, "main"), 0);
}

static void merge_commit(vcs_worktree *wt, const char *theirs)
{
    worktree_commit_opts c = WORKTREE_COMMIT_OPTS_INIT;
    c.message = "Merge branch 'main' into farm/3-x";
    c.author_name = "farm-bot";
    c.author_email = "farm-bot@example.com";
    c.merge_parent = theirs;
    worktree_commit_result res;
    if (vcs_worktree_commit(&res, wt, &c) != 0)
        fail_msg("merge commit: %s", farm_error_last());
    assert_int_equal(res.empty, 0);
}

static void clean_merge(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = branch_with_change(f, "# app\n\nhello from the branch\n");
    char base[VCS_OID_HEXSZ], old[VCS_OID_HEXSZ], out[4096], p[PATH_MAX];
    vcs_merge_result mr;

    memcpy(old, vcs_worktree_head(wt), sizeof(old));
    base_moves(f, "docs/a.txt", "one\ntwo\nthree\nfour\n", base);
    assert_int_equal(vcs_worktree_merge(&mr, wt, base), 0);
    assert_int_equal(mr.up_to_date, 0);
    assert_int_equal(mr.nconflicts, 0);
    assert_string_equal(vcs_worktree_head(wt), old); /* the head waits for the commit */
    snprintf(p, sizeof(p), "%s/docs/a.txt", vcs_worktree_path(wt));
    char *text = th_read(p);
    assert_string_equal(text, "one\ntwo\nthree\nfour\n");
    free(text);
    vcs_merge_result_free(&mr);
    merge_commit(wt, base);

    /* two parents: what was pushed, and the base; both ancestors */
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "log", "-1", "--format=%P"), 0);
    th_chomp(out);
    char want[128];
    snprintf(want, sizeof(want), "%s %s", old, base);
    assert_string_equal(out, want);
    assert_int_equal(TH_GIT(vcs_worktree_path(wt), "merge-base", "--is-ancestor", old, "HEAD"), 0);
    snprintf(p, sizeof(p), "%s/README.md", vcs_worktree_path(wt));
    text = th_read(p);
    assert_string_equal(text, "# app\n\nhello from the branch\n");
    free(text);

    /* again: up to date, nothing touched */
    memcpy(old, vcs_worktree_head(wt), sizeof(old));
    assert_int_equal(vcs_worktree_merge(&mr, wt, base), 0);
    assert_int_equal(mr.up_to_date, 1);
    assert_string_equal(vcs_worktree_head(wt), old);
    vcs_merge_result_free(&mr);
    vcs_worktree_free(wt);
}

static void conflicted_merge(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = branch_with_change(f, "# app\n\nhello from the branch\n");
    char base[VCS_OID_HEXSZ], p[PATH_MAX], out[4096];
    vcs_merge_result mr;

    base_moves(f, "README.md", "# app\n\nhello from main\n", base);
    assert_int_equal(vcs_worktree_merge(&mr, wt, base), 0);
    assert_int_equal(mr.up_to_date, 0);
    assert_int_equal(mr.nconflicts, 1);
    assert_string_equal(mr.conflicts[0], "README.md");
    assert_null(mr.conflicts[1]);
    snprintf(p, sizeof(p), "%s/README.md", vcs_worktree_path(wt));
    char *text = th_read(p);
    assert_non_null(strstr(text, "<<<<<<< "));
    assert_non_null(strstr(text, "hello from the branch"));
    assert_non_null(strstr(text, "hello from main"));
    assert_non_null(strstr(text, ">>>>>>> "));
    free(text);
    vcs_merge_result_free(&mr);

    /* the agent resolves it; the farm commits the merge */
    th_write(p, "# app\n\nhello from both\n");
    merge_commit(wt, base);
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "log", "-1", "--format=%P"), 0);
    assert_non_null(strstr(out, base));
    assert_int_equal(TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "show", "HEAD:README.md"),
                     0);
    assert_string_equal(out, "# app\n\nhello from both\n");
    vcs_worktree_free(wt);
}

static void bad_commit_refused(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = branch_with_change(f, "x\n");
    vcs_merge_result mr;
    assert_int_equal(vcs_worktree_merge(&mr, wt, "not-a-commit"), FARM_EINVALID);
    assert_int_equal(vcs_worktree_merge(&mr, wt, "0123456789012345678901234567890123456789"),
                     FARM_ENOTFOUND);
    vcs_worktree_free(wt);
}

int main(void)
{
    vcs_git_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(clean_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(conflicted_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_commit_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
