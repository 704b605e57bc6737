/*
 * git.h - the farm's git: a bare mirror per repository, a worktree per
 * session, commit, diffstat and push, all through libgit2 (no git processes).
 *
 * vcs/git owns every use of libgit2 but the local tracker's. It calls only
 * base and libgit2. farm/run calls it for a run's checkout, commit and push
 * (farm/run/pipeline_internal.h); vcs/tracker's local tracker calls
 * vcs_git_init() before it opens its repositories with libgit2.
 *
 * A mirror lives at <data_dir>/mirrors/<safe name>.git and is fetched
 * incrementally. It is guarded by one lock per mirror (an in-process
 * read-write lock plus flock() on <mirror>.lock, so two farm processes are
 * safe too): a fetch holds it exclusively, creating a worktree holds it
 * shared. Every ref update is a lock-file rename, so a reader never sees a
 * half-written ref.
 *
 * A worktree is a small repository of its own: <path>/.git with its own
 * object store, borrowing the mirror's objects through
 * .git/objects/info/alternates. The agent may run `git status/diff/log/add`
 * inside; the sandbox must bind vcs_worktree_ro_paths() read-only (the mirror's
 * object store at the same absolute path, .git/hooks and .git/config) and
 * pass vcs_worktree_sandbox_env() to the process.
 *
 * The farm never trusts what the agent could have written. When it commits
 * or pushes it opens the worktree with the farm's own config (a file kept in
 * the mirror, never the worktree's .git/config; so no
 * core.hooksPath, core.fsmonitor, filter drivers, url.insteadOf, excludes or
 * attribute files named by config), its own object database (the worktree's
 * objects plus the mirror's, whatever .git/objects/info/alternates says), a
 * fresh index, and the parent it recorded itself (not HEAD). libgit2 runs no
 * hooks and no external filters. The push goes to an anonymous remote built
 * from the configured clone URL; the token is handed over only in libgit2's
 * credential callback and is never written to disk.
 *
 * vcs_worktree_commit(), vcs_worktree_push() and vcs_worktree_diffstat() refuse a .git
 * with a symlink anywhere in it, or one redirected elsewhere (commondir,
 * gitdir file, core.worktree). Call them only when no sandboxed process is
 * left running in the worktree: the checks and the work are not atomic
 * against a writer that is still active.
 *
 * Threads: call vcs_git_init() once (it is idempotent and thread-safe). Any
 * number of mirror and worktree handles may be used from different threads
 * at once, also on the same mirror (the lock serialises what must be); one
 * handle must not be used by two threads at the same time.
 */
#ifndef FARM_VCS_GIT_GIT_H
#define FARM_VCS_GIT_GIT_H

#include "base/strv.h"

#include <stddef.h>
#include <stdint.h>

/* A hex object id plus its NUL. */
#define VCS_OID_HEXSZ 41

/* Initialise libgit2 for the farm: once per process, before any other call
 * here (later calls are no-ops). Also stops libgit2 from reading the global,
 * XDG and system git config files, so the host user's ~/.gitconfig cannot
 * redirect or change the farm's git, and installs a no-op handler for one
 * real-time signal (SIGRTMIN+5), which the stall watchdog uses to interrupt
 * a network call that hangs. Returns 0 or FARM_ERROR. */
int vcs_git_init(void);

/* Where to fetch from and push to, and with what. Only the farm holds the
 * token; it is given to libgit2 in the credential callback and nowhere
 * else, and it never appears in an error message. */
typedef struct vcs_remote {
    const char *url;   /* the configured clone URL: https://, http://, file:// or a path */
    const char *name;  /* the repository's configured name, for messages ("octo/app") */
    const char *user;  /* basic-auth user: "x-access-token" for GitHub; NULL means "farm" */
    const char *token; /* the secret, or NULL for a remote that needs none */
    const volatile int *cancel; /* when non-NULL and it becomes non-zero: stop (FARM_ECANCELLED) */
    int stall_timeout_s;        /* give up (FARM_ETIMEOUT) when no data has moved for this long,
                                   connecting included; 0 means 120 */
} vcs_remote;

#define VCS_REMOTE_INIT                                                                            \
    {                                                                                              \
        NULL, NULL, NULL, NULL, NULL, 0                                                            \
    }

/* The branch for an issue: "farm/<issue>-<slug>", the slug made from the
 * title (lower-case ASCII letters, digits and single dashes, at most 40
 * characters, no leading or trailing dash); "farm/<issue>" when nothing of
 * the title survives. Writes at most n bytes including the NUL. Returns 0,
 * FARM_EINVALID (issue <= 0) or FARM_ETOOBIG (n too small). */
int vcs_branch_name(char *out, size_t n, int64_t issue, const char *title);

/* 1 when name is a legal branch name (as refs/heads/<name>), 0 otherwise. */
int vcs_branch_name_valid(const char *name);

/* ---- mirrors ---- */

typedef struct vcs_mirror vcs_mirror;

/* Open the mirror for the repository called `name` (any string; "github/octo/app"
 * is a good key) under <data_dir>/mirrors/, creating an empty bare repository
 * the first time. Returns 0 with *out set (free with vcs_mirror_free()),
 * FARM_EINVALID (empty or over-long name) or FARM_EIO. */
int vcs_mirror_open(vcs_mirror **out, const char *data_dir, const char *name);

/* Fetch every branch of the remote into the mirror (every branch mirrored,
 * branches deleted upstream pruned), incrementally, holding the mirror's lock
 * exclusively. Returns 0, FARM_EAUTH (credentials refused or missing),
 * FARM_ENOTFOUND (no repository at the URL), FARM_ECANCELLED, FARM_ETIMEOUT
 * (the remote stalled), FARM_EIO (network, disk or protocol failure). */
int vcs_mirror_fetch(vcs_mirror *m, const vcs_remote *remote);

/* Fold the mirror's packs into one (a fetch does this by itself once there
 * are more than 32), keeping every object, reachable or not. Holds the
 * lock exclusively. Returns 0 or FARM_EIO. */
int vcs_mirror_repack(vcs_mirror *m);

/* How many packs the mirror has, or -1. */
int vcs_mirror_pack_count(vcs_mirror *m);

/* The commit a branch of the mirror points at, as hex into out. Returns 0,
 * FARM_ENOTFOUND (the mirror has no such branch) or FARM_EINVALID (not a
 * branch name). */
int vcs_mirror_branch_oid(char out[VCS_OID_HEXSZ], vcs_mirror *m, const char *branch);

/* The mirror's directory (<data_dir>/mirrors/<safe name>.git). */
const char *vcs_mirror_path(const vcs_mirror *m);

void vcs_mirror_free(vcs_mirror *m);

/* ---- worktrees ---- */

typedef struct vcs_worktree vcs_worktree;

typedef struct worktree_opts {
    const char *path;   /* the directory to create; must not exist (its parent is created) */
    const char *branch; /* the session's branch, e.g. from vcs_branch_name() */
    const char *base;   /* the branch of the mirror to start from ("main") ... */
    const char *start;  /* ... or, when set, a commit id (hex) to start from instead: for a
                           revision, what the farm last pushed. Must be in the mirror. */
} worktree_opts;

#define WORKTREE_OPTS_INIT                                                                         \
    {                                                                                              \
        NULL, NULL, NULL, NULL                                                                     \
    }

/* Make a worktree from the mirror without touching the network: a new
 * repository at o->path on branch o->branch at the start commit, files
 * checked out (by up to four threads of its own for a large tree). Holds
 * the mirror's lock shared while it reads. Returns 0 with *out set (free
 * with vcs_worktree_free(); the directory stays until vcs_worktree_remove()),
 * FARM_ENOTFOUND (base branch or start commit not in the mirror),
 * FARM_EEXISTS (path exists), FARM_EINVALID (bad branch name or start id)
 * or FARM_EIO (also for a tree naming .git or "..", or a name twice). On
 * failure nothing is left at o->path. */
int vcs_worktree_create(vcs_worktree **out, vcs_mirror *m, const worktree_opts *o);

/* Reattach to a worktree made earlier by vcs_worktree_create() (say, by a run
 * restarted after a crash): start and head are the commits the farm
 * recorded for it (vcs_worktree_start() and vcs_worktree_head() of the earlier
 * handle). Returns 0 with *out set (free with vcs_worktree_free()),
 * FARM_ENOTFOUND (no worktree there, or a commit not found) or
 * FARM_EINVALID (bad arguments, or a .git the farm refuses; see above). */
int vcs_worktree_open(vcs_worktree **out, vcs_mirror *m, const char *path, const char *branch,
                      const char *start, const char *head);

/* Move the worktree to another branch at its recorded head (a warm
 * worktree made on a placeholder branch, adopted by a session): the new
 * branch is created (or reset) at the head, HEAD points at it, the old
 * branch is deleted; files and index are untouched. Returns 0,
 * FARM_EINVALID (bad name) or FARM_EIO. */
int vcs_worktree_branch_switch(vcs_worktree *wt, const char *branch);

/* The worktree's directory, branch, and the commit the farm last recorded
 * (the start commit, then each commit made by vcs_worktree_commit()). */
const char *vcs_worktree_path(const vcs_worktree *wt);
const char *vcs_worktree_branch(const vcs_worktree *wt);
const char *vcs_worktree_head(const vcs_worktree *wt);
/* The commit the worktree started from (hex). */
const char *vcs_worktree_start(const vcs_worktree *wt);

/* Paths the sandbox must bind read-only, each at the same absolute path
 * inside: <path>/.git/hooks, <path>/.git/config and the mirror's object
 * store (which .git/objects/info/alternates names; without it `git log` and
 * `git diff` fail inside). A NULL-terminated array of heap strings; the
 * caller frees it with strv_list_free(). Returns 0 or FARM_ENOMEM. */
int vcs_worktree_ro_paths(char ***out, const vcs_worktree *wt);

/* Environment entries ("NAME=value") for a sandboxed process that runs git
 * in the worktree: safe.directory naming the worktree, given through
 * GIT_CONFIG_COUNT/KEY/VALUE (the sandbox's uid may not own the worktree,
 * and git refuses a repository owned by someone else), and
 * GIT_CEILING_DIRECTORIES so git never looks above it. NULL-terminated heap
 * array; the caller frees it with strv_list_free(). Returns 0 or FARM_ENOMEM. */
int vcs_worktree_sandbox_env(char ***out, const vcs_worktree *wt);

typedef struct worktree_commit_opts {
    const char *message;        /* subject, blank line, body; required */
    const char *author_name;    /* the bot, author and committer; required */
    const char *author_email;   /* required */
    const char *coauthor_name;  /* who asked: a "Co-authored-by:" trailer; NULL for none */
    const char *coauthor_email; /* required with coauthor_name */
    int64_t time_s;             /* commit time (epoch seconds); 0 means now */
    int64_t max_file_bytes;     /* largest file to commit; 0 means 100 MiB (GitHub's limit) */
    int64_t max_files;          /* most files added or changed in one commit; 0 means 50,000 */
    const char *signing_key;    /* an OpenSSH private key's text: the commit is signed with it
                                   in git's SSH format (gpgsig); NULL: unsigned */
    const char *merge_parent;   /* hex: a merge commit, this commit its second parent (see
                                   vcs_worktree_merge()); made even when the tree is unchanged */
} worktree_commit_opts;

#define WORKTREE_COMMIT_OPTS_INIT                                                                  \
    {                                                                                              \
        NULL, NULL, NULL, NULL, NULL, 0, 0, 0, NULL, NULL                                          \
    }

typedef struct worktree_commit_result {
    int empty;               /* 1: the files equal the head commit's; nothing was committed */
    char oid[VCS_OID_HEXSZ]; /* the new commit, "" when empty */
} worktree_commit_result;

/* Commit every change in the worktree's files (added, modified, deleted,
 * mode changes; .gitignore honoured) on top of the recorded head, whatever
 * the agent did to HEAD, the index or the branch. The new commit becomes the
 * head, the branch and HEAD point at it, and the index is rewritten to match
 * so `git status` inside is clean. An unchanged tree is reported in
 * out->empty and not committed. Returns 0, FARM_EINVALID (missing or
 * malformed author, e-mail or message), FARM_ETOOBIG (a file over
 * max_file_bytes, or more than max_files changed; nothing is committed),
 * FARM_EINVALID also for a .git the farm refuses (see above) and for a
 * signing key that cannot sign (nothing is committed: never an unsigned
 * commit when one was to be signed), FARM_EUNSUPPORTED (a key type the
 * farm cannot sign with), or FARM_EIO. */
int vcs_worktree_commit(worktree_commit_result *out, vcs_worktree *wt,
                        const worktree_commit_opts *o);

typedef struct vcs_merge_result {
    int up_to_date;    /* the branch has the commit already: nothing was done */
    size_t nconflicts; /* files the merge could not resolve (0: a clean merge) */
    char **conflicts;  /* their paths (at most 500), NULL-terminated heap array, or NULL */
} vcs_merge_result;

/* Merge commit `theirs` (hex, in the mirror: the base branch's head) into
 * the worktree's files: they become the merge's result, with git's
 * conflict markers in the files it could not resolve (listed in out); the
 * head, the branch and HEAD do not move. Commit the result with
 * vcs_worktree_commit() and merge_parent = theirs: a merge commit, so
 * history already pushed is never rewritten. A head that contains theirs
 * already is out->up_to_date, and nothing is touched. Returns 0 (free out
 * with vcs_merge_result_free()), FARM_EINVALID (not a commit id, or a .git
 * the farm refuses), FARM_ENOTFOUND (no such commit) or FARM_EIO. */
int vcs_worktree_merge(vcs_merge_result *out, vcs_worktree *wt, const char *theirs);
void vcs_merge_result_free(vcs_merge_result *r);

typedef struct vcs_diffstat {
    size_t files;
    size_t insertions;
    size_t deletions;
    char *text; /* `git diff --stat` style text, at most 64 KiB (heap; vcs_diffstat_free()) */
} vcs_diffstat;

/* What changed between the start commit and the head: counts and text.
 * Returns 0 (free *out with vcs_diffstat_free()) or FARM_EIO. */
int vcs_worktree_diffstat(vcs_diffstat *out, vcs_worktree *wt);
void vcs_diffstat_free(vcs_diffstat *d);

/* Push the head to refs/heads/<branch> of the remote, with a lease: the
 * remote branch must currently be at `expected` (hex, what the farm last
 * pushed) or, when expected is NULL, must not exist. The check and the
 * update are one step on the server (the push names the old value). A
 * remote already at the head is success. Returns 0, FARM_EAUTH (credentials
 * refused or missing), FARM_ECONFLICT (lease mismatch, or the server
 * rejected the update: non-fast-forward, protected branch, hook),
 * FARM_ENOTFOUND (no repository at the URL), FARM_ECANCELLED, FARM_ETIMEOUT
 * (the remote stalled), FARM_EINVALID (expected is not a commit id, or a
 * .git the farm refuses) or FARM_EIO. */
int vcs_worktree_push(vcs_worktree *wt, const vcs_remote *remote, const char *expected);

/* Delete the worktree's directory and everything in it (symlinks are
 * removed, never followed; read-only directories are made writable first).
 * The handle stays valid for vcs_worktree_free(). Returns 0 or FARM_EIO. */
int vcs_worktree_remove(vcs_worktree *wt);

void vcs_worktree_free(vcs_worktree *wt);

/* Remove a directory tree the same way vcs_worktree_remove() does; for
 * worktrees whose handle is gone (cleanup after a crash). Missing is fine. */
int vcs_tree_remove(const char *path);

#endif
