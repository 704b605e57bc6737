/*
 * git_merge.c - bringing the base branch into a session's branch.
 *
 * When the base moves under an open pull request, the farm merges it into
 * the branch rather than rebasing: the history a reviewer has seen stays,
 * and the push is a fast-forward. vcs_worktree_merge() merges a commit of
 * the mirror into the worktree's files only: the head stays where it was,
 * the files become the merge's result (conflicting files with git's
 * conflict markers, for the agent to resolve), and the merge commit is
 * made later by vcs_worktree_commit() with the merged commit as its second
 * parent (worktree_commit_opts.merge_parent), after the agent and the
 * tests. Nothing here touches a ref.
 */
#include "git_internal.h"
#include "base/error.h"
#include "base/strv.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFLICTS_LISTED 500

static int oid_parse(git_oid *out, const char *hex)
{
    if (!hex || strlen(hex) != 40 || git_oid_fromstr(out, hex) < 0) {
        farm_error_set("merge: %s is not a commit id", hex ? hex : "(null)");
        return FARM_EINVALID;
    }
    return 0;
}

/* The paths of the index's conflicts (ours, else theirs, else the
 * ancestor's name), at most MAX_CONFLICTS_LISTED of them. */
static int conflicts_list(char ***out, size_t *n, git_index *idx)
{
    git_index_conflict_iterator *it = NULL;
    const git_index_entry *anc, *ours, *theirs;
    char **v = NULL;
    size_t k = 0, total = 0;
    int e, rc = 0;

    *out = NULL;
    *n = 0;
    if ((e = git_index_conflict_iterator_new(&it, idx)) < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "merge: cannot read the conflicts");
    if (!(v = calloc(MAX_CONFLICTS_LISTED + 1, sizeof(*v)))) {
        git_index_conflict_iterator_free(it);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    while ((e = git_index_conflict_next(&anc, &ours, &theirs, it)) == 0) {
        const git_index_entry *one = ours ? ours : theirs ? theirs : anc;
        total++;
        if (k < MAX_CONFLICTS_LISTED && one && !(v[k++] = strdup(one->path))) {
            rc = FARM_ENOMEM;
            break;
        }
    }
    git_index_conflict_iterator_free(it);
    if (rc || (e < 0 && e != GIT_ITEROVER)) {
        strv_list_free(v);
        if (rc)
            farm_error_set("out of memory");
        return rc ? rc : vcs_git_fail(e, FARM_EIO, NULL, "merge: cannot read the conflicts");
    }
    *out = v;
    *n = total;
    return 0;
}

void vcs_merge_result_free(vcs_merge_result *r)
{
    if (!r)
        return;
    strv_list_free(r->conflicts);
    memset(r, 0, sizeof(*r));
}

int vcs_worktree_merge(vcs_merge_result *out, vcs_worktree *wt, const char *theirs)
{
    git_repository *repo = NULL;
    git_commit *ours_c = NULL, *theirs_c = NULL;
    git_tree *ours_t = NULL, *merged_t = NULL;
    git_index *idx = NULL;
    git_oid ours_id, theirs_id, tree_id;
    git_merge_options mo = GIT_MERGE_OPTIONS_INIT;
    git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
    int rc, e;

    assert(out && wt);
    memset(out, 0, sizeof(*out));
    if ((rc = oid_parse(&theirs_id, theirs)))
        return rc;
    if ((rc = wt_repo_open(&repo, wt)) < 0)
        return rc;
    git_oid_fromstr(&ours_id, wt->head);
    if ((e = git_commit_lookup(&ours_c, repo, &ours_id)) < 0 ||
        (e = git_commit_tree(&ours_t, ours_c)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "merge in %s: head %s unreadable", wt->path, wt->head);
        goto out;
    }
    if ((e = git_commit_lookup(&theirs_c, repo, &theirs_id)) < 0) {
        rc = vcs_git_fail(e, FARM_ENOTFOUND, NULL, "merge in %s: commit %s not in the mirror",
                          wt->path, theirs);
        goto out;
    }
    if (git_oid_equal(&ours_id, &theirs_id) ||
        git_graph_descendant_of(repo, &ours_id, &theirs_id) == 1) {
        out->up_to_date = 1;
        goto out;
    }
    if ((e = git_merge_commits(&idx, repo, ours_c, theirs_c, &mo)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "merge in %s: merging %s failed", wt->path, theirs);
        goto out;
    }
    co.baseline = ours_t;
    if (!git_index_has_conflicts(idx)) {
        co.checkout_strategy = GIT_CHECKOUT_FORCE;
        if ((e = git_index_write_tree_to(&tree_id, idx, repo)) < 0 ||
            (e = git_tree_lookup(&merged_t, repo, &tree_id)) < 0 ||
            (e = git_checkout_tree(repo, (const git_object *)merged_t, &co)) < 0) {
            rc = vcs_git_fail(e, FARM_EIO, NULL, "merge in %s: cannot write the merged files",
                              wt->path);
            goto out;
        }
        goto out;
    }
    if ((rc = conflicts_list(&out->conflicts, &out->nconflicts, idx)))
        goto out;
    co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_ALLOW_CONFLICTS;
    if ((e = git_checkout_index(repo, idx, &co)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "merge in %s: cannot write the conflicted files",
                          wt->path);
        goto out;
    }
out:
    if (rc)
        vcs_merge_result_free(out);
    git_index_free(idx);
    git_tree_free(merged_t);
    git_tree_free(ours_t);
    git_commit_free(theirs_c);
    git_commit_free(ours_c);
    git_repository_free(repo);
    return rc;
}
