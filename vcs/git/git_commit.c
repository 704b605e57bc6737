/*
 * git_commit.c - committing what the agent changed, and the diffstat for
 * summaries.
 *
 * The commit is built from the files alone: a fresh index is loaded from
 * the head the farm recorded, every change in the working files is added to
 * it (like `git add -A`), and its tree becomes one commit on top of that
 * head, by the bot with a Co-authored-by trailer for the person who asked.
 * What the agent staged, committed, or did to HEAD or the branch is
 * ignored; its commits, if any, are squashed into this one.
 */
#include "git_internal.h"
#include "base/error.h"

#include <assert.h>
#include <git2/sys/repository.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Largest file the farm will commit; GitHub refuses bigger ones too. */
#define MAX_FILE_BYTES     (100LL << 20)
#define MAX_FILES          50000
#define MAX_MESSAGE_BYTES  (64u << 10)
#define MAX_DIFFSTAT_BYTES (64u << 10)

static int ident_ok(const char *s, int email)
{
    if (!s || !*s || strlen(s) > 256)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p == '<' || *p == '>' || *p == '\n' || *p == '\r' || *p == '\0')
            return 0;
    return !email || strchr(s, '@') != NULL;
}

/* The message with its trailer: trailing blank lines dropped, then a blank
 * line and "Co-authored-by: Name <email>" (unless the message already
 * carries that exact trailer). Heap string or NULL on ENOMEM. */
static char *message_build(const worktree_commit_opts *o)
{
    size_t len = strlen(o->message);
    while (len > 0 && (o->message[len - 1] == '\n' || o->message[len - 1] == '\r' ||
                       o->message[len - 1] == ' ' || o->message[len - 1] == '\t'))
        len--;
    char trailer[600] = "";
    if (o->coauthor_name)
        snprintf(trailer, sizeof(trailer), "Co-authored-by: %s <%s>", o->coauthor_name,
                 o->coauthor_email);
    char *msg = malloc(len + strlen(trailer) + 4);
    if (!msg)
        return NULL;
    memcpy(msg, o->message, len);
    msg[len] = '\0';
    if (trailer[0] && !strstr(msg, trailer)) {
        strcat(msg, "\n\n");
        strcat(msg, trailer);
    }
    strcat(msg, "\n");
    return msg;
}

struct add_ctx {
    const char *workdir;
    int64_t max;       /* bytes in one file */
    int64_t max_files; /* files added or changed */
    int64_t files;
    char toobig[512];
};

static int add_cb(const char *path, const char *matched, void *payload)
{
    struct add_ctx *ctx = payload;
    char full[PATH_MAX];
    struct stat st;
    (void)matched;
    if (++ctx->files > ctx->max_files) {
        snprintf(ctx->toobig, sizeof(ctx->toobig), "more than %lld files were added or changed",
                 (long long)ctx->max_files);
        return -1;
    }
    if (snprintf(full, sizeof(full), "%s/%s", ctx->workdir, path) >= (int)sizeof(full))
        return 0;
    if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > ctx->max) {
        snprintf(ctx->toobig, sizeof(ctx->toobig), "%s is %lld bytes", path, (long long)st.st_size);
        return -1;
    }
    return 0;
}

/* The second parent of a merge commit: a commit the worktree can read. */
static int merge_parent_get(git_commit **out, git_repository *repo, const char *hex,
                            const vcs_worktree *wt)
{
    git_oid id;
    int e;

    if (strlen(hex) != 40 || git_oid_fromstr(&id, hex) < 0) {
        farm_error_set("commit in %s: merge parent %s is not a commit id", wt->path, hex);
        return FARM_EINVALID;
    }
    if ((e = git_commit_lookup(out, repo, &id)) < 0)
        return vcs_git_fail(e, FARM_ENOTFOUND, NULL, "commit in %s: merge parent %s", wt->path,
                            hex);
    return 0;
}

/* Point the branch at oid and HEAD at the branch. */
static int branch_set(git_repository *repo, const vcs_worktree *wt, const git_oid *oid)
{
    git_reference *ref = NULL;
    int e = git_reference_create(&ref, repo, wt->refname, oid, 1, NULL);
    git_reference_free(ref);
    if (e == 0)
        e = git_repository_set_head(repo, wt->refname);
    if (e < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot update branch %s", wt->path,
                            wt->branch);
    return 0;
}

int vcs_worktree_commit(worktree_commit_result *out, vcs_worktree *wt,
                        const worktree_commit_opts *o)
{
    git_repository *repo = NULL;
    git_index *idx = NULL;
    git_commit *parent = NULL, *merged = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    char *msg = NULL, index_path[PATH_MAX];
    git_oid head, tree_oid, oid;
    struct add_ctx ctx;
    int rc = 0, e;

    assert(out && wt && o);
    memset(out, 0, sizeof(*out));
    if (!o->message || !o->message[strspn(o->message, " \t\r\n")] ||
        strlen(o->message) > MAX_MESSAGE_BYTES) {
        farm_error_set("commit: a message of at most %u bytes is required", MAX_MESSAGE_BYTES);
        return FARM_EINVALID;
    }
    if (!ident_ok(o->author_name, 0) || !ident_ok(o->author_email, 1)) {
        farm_error_set("commit: the author needs a name and an e-mail address without '<', '>' "
                       "or newlines");
        return FARM_EINVALID;
    }
    if (o->coauthor_name && (!ident_ok(o->coauthor_name, 0) || !ident_ok(o->coauthor_email, 1))) {
        farm_error_set("commit: the co-author needs a name and an e-mail address without '<', "
                       "'>' or newlines");
        return FARM_EINVALID;
    }
    if ((rc = wt_repo_open(&repo, wt)) < 0)
        return rc;
    git_oid_fromstr(&head, wt->head);
    if ((e = git_commit_lookup(&parent, repo, &head)) < 0 ||
        (e = git_commit_tree(&tree, parent)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: head %s unreadable", wt->path, wt->head);
        goto out;
    }

    /* A fresh index at .git/index: whatever the agent left there (even a
     * symlink) is unlinked, never read. */
    snprintf(index_path, sizeof(index_path), "%s/index", wt->gitdir);
    if (vcs_tree_remove(index_path) < 0) {
        farm_error_set("worktree %s: cannot replace the index", wt->path);
        rc = FARM_EIO;
        goto out;
    }
    if ((e = git_index_open(&idx, index_path)) < 0 ||
        (e = git_repository_set_index(repo, idx)) < 0 || (e = git_index_read_tree(idx, tree)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot prepare the index", wt->path);
        goto out;
    }
    ctx.workdir = wt->path;
    ctx.max = o->max_file_bytes > 0 ? o->max_file_bytes : MAX_FILE_BYTES;
    ctx.max_files = o->max_files > 0 ? o->max_files : MAX_FILES;
    ctx.files = 0;
    ctx.toobig[0] = '\0';
    e = git_index_add_all(idx, NULL, GIT_INDEX_ADD_DEFAULT, add_cb, &ctx);
    if (e == 0)
        e = git_index_update_all(idx, NULL, NULL, NULL);
    if (ctx.toobig[0]) {
        farm_error_set("commit in %s: %s; nothing committed", wt->path, ctx.toobig);
        rc = FARM_ETOOBIG;
        goto out;
    }
    if (e < 0 || (e = git_index_write_tree(&tree_oid, idx)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot record the changed files",
                          wt->path);
        goto out;
    }

    if (o->merge_parent && (rc = merge_parent_get(&merged, repo, o->merge_parent, wt)) < 0)
        goto out;
    if (!merged && git_oid_equal(&tree_oid, git_tree_id(tree))) {
        out->empty = 1;
        oid = head;
    } else {
        git_tree *newtree = NULL;
        int64_t t = o->time_s ? o->time_s : (int64_t)time(NULL);
        if (!(msg = message_build(o))) {
            farm_error_set("out of memory");
            rc = FARM_ENOMEM;
            goto out;
        }
        if ((e = git_signature_new(&sig, o->author_name, o->author_email, (git_time_t)t, 0)) < 0 ||
            (e = git_tree_lookup(&newtree, repo, &tree_oid)) < 0) {
            rc = vcs_git_fail(e, FARM_EINVALID, NULL, "commit in %s", wt->path);
            goto out;
        }
        const git_commit *parents[2] = {parent, merged};
        rc = vcs_commit_write(&oid, repo, sig, msg, newtree, merged ? 2 : 1, parents,
                              o->signing_key);
        git_tree_free(newtree);
        if (rc < 0) {
            vcs_error_prefix("commit in %s: ", wt->path);
            goto out;
        }
    }
    /* The index on disk matches the result, so `git status` inside is clean. */
    if ((e = git_index_write(idx)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot write the index", wt->path);
        goto out;
    }
    if ((rc = branch_set(repo, wt, &oid)) < 0)
        goto out;
    if (!out->empty) {
        git_oid_tostr(out->oid, sizeof(out->oid), &oid);
        memcpy(wt->head, out->oid, sizeof(wt->head));
    }
out:
    if (rc < 0 && idx && tree && git_index_read_tree(idx, tree) == 0)
        git_index_write(idx); /* leave an index at the head, not none */
    free(msg);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(parent);
    git_commit_free(merged);
    git_index_free(idx);
    git_repository_free(repo);
    return rc;
}

void vcs_diffstat_free(vcs_diffstat *d)
{
    if (!d)
        return;
    free(d->text);
    memset(d, 0, sizeof(*d));
}

int vcs_worktree_diffstat(vcs_diffstat *out, vcs_worktree *wt)
{
    git_repository *repo = NULL;
    git_commit *a = NULL, *b = NULL;
    git_tree *ta = NULL, *tb = NULL;
    git_diff *diff = NULL;
    git_diff_stats *stats = NULL;
    git_buf text = GIT_BUF_INIT;
    git_diff_options dopts;
    git_diff_find_options fopts;
    git_oid oa, ob;
    int rc = 0, e;

    memset(out, 0, sizeof(*out));
    git_diff_options_init(&dopts, GIT_DIFF_OPTIONS_VERSION);
    git_diff_find_options_init(&fopts, GIT_DIFF_FIND_OPTIONS_VERSION);
    if ((rc = wt_repo_open(&repo, wt)) < 0)
        return rc;
    git_oid_fromstr(&oa, wt->start);
    git_oid_fromstr(&ob, wt->head);
    if ((e = git_commit_lookup(&a, repo, &oa)) < 0 || (e = git_commit_lookup(&b, repo, &ob)) < 0 ||
        (e = git_commit_tree(&ta, a)) < 0 || (e = git_commit_tree(&tb, b)) < 0 ||
        (e = git_diff_tree_to_tree(&diff, repo, ta, tb, &dopts)) < 0 ||
        (e = git_diff_find_similar(diff, &fopts)) < 0 ||
        (e = git_diff_get_stats(&stats, diff)) < 0 ||
        (e = git_diff_stats_to_buf(&text, stats, GIT_DIFF_STATS_FULL, 80)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "diffstat of %s", wt->path);
        goto out;
    }
    out->files = git_diff_stats_files_changed(stats);
    out->insertions = git_diff_stats_insertions(stats);
    out->deletions = git_diff_stats_deletions(stats);
    size_t n = text.size;
    const char *marker = "...\n";
    if (n > MAX_DIFFSTAT_BYTES)
        n = MAX_DIFFSTAT_BYTES - strlen(marker);
    out->text = malloc(n + strlen(marker) + 1);
    if (!out->text) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    memcpy(out->text, text.ptr ? text.ptr : "", n);
    out->text[n] = '\0';
    if (n < text.size) {
        /* cut at a line boundary, then say so */
        char *nl = strrchr(out->text, '\n');
        if (nl)
            nl[1] = '\0';
        strcat(out->text, marker);
    }
out:
    git_buf_dispose(&text);
    git_diff_stats_free(stats);
    git_diff_free(diff);
    git_tree_free(ta);
    git_tree_free(tb);
    git_commit_free(a);
    git_commit_free(b);
    git_repository_free(repo);
    return rc;
}
