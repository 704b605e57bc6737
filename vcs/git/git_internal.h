/*
 * git_internal.h - what the vcs/git*.c files share and nobody else uses:
 * the mirror and worktree structs, the mirror lock, the hardened way of
 * opening a worktree's repository, libgit2 error mapping and the remote
 * callbacks that hold the token.
 */
#ifndef FARM_VCS_GIT_GIT_INTERNAL_H
#define FARM_VCS_GIT_GIT_INTERNAL_H

#include "git.h"

#include <git2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

/* libgit2's GIT_*_OPTIONS_INIT macros set only the version field. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

struct mirror_lock; /* one per mirror path per process, shared by handles */

struct vcs_mirror {
    char *name;    /* the key it was opened with, for messages */
    char *path;    /* <data_dir>/mirrors/<safe>.git */
    char *objects; /* <path>/objects */
    char *lockfile;
    char *wtconfig; /* the config the farm uses for worktrees, <path>/farm-worktree.config */
    struct mirror_lock *lock;
};

struct vcs_worktree {
    vcs_mirror *m; /* borrowed: the mirror must outlive the vcs_worktree */
    char *path;    /* absolute, no trailing slash */
    char *gitdir;  /* <path>/.git */
    char *branch;  /* "farm/12-fix-typo" */
    char *refname; /* "refs/heads/farm/12-fix-typo" */
    char start[VCS_OID_HEXSZ];
    char head[VCS_OID_HEXSZ];
};

/* Take the mirror's lock: exclusive for writers (fetch, repack), shared
 * for readers. Returns the holder's descriptor (>= 0), which
 * mirror_lock_release() takes back, or FARM_EIO. */
int mirror_lock_take(vcs_mirror *m, int exclusive);
void mirror_lock_release(vcs_mirror *m, int fd);

/* Open the worktree's repository the way the farm trusts it: no discovery,
 * .git must be a real directory of this worktree, the farm's own config,
 * its own object database (worktree objects plus the mirror's). The caller
 * frees *out with git_repository_free(). Returns 0, FARM_ENOTFOUND or
 * FARM_EIO. */
int wt_repo_open(git_repository **out, const vcs_worktree *wt);

/* Check out commit (read from src, the mirror) into the empty workdir of
 * the new repository repo and write its index. Returns 0 or FARM_EIO. */
int wt_checkout(git_repository *repo, git_repository *src, const git_commit *commit,
                const char *workdir);

/* Set the error slot from libgit2's last error, prefixed by a printf-style
 * context, and return the farm code for `gitcode` (fallback when nothing
 * more specific applies). The token, if any, is scrubbed from the text. */
int vcs_git_fail(int gitcode, int fallback, const char *token, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Write a commit by `who` (author and committer) with msg, tree and
 * parents into repo's object database, signed in git's SSH format when
 * signing_key (an OpenSSH private key's text) is non-NULL (git_sign.c).
 * References are not touched. Returns 0 with *out set, FARM_EINVALID or
 * FARM_EUNSUPPORTED (a key that cannot sign: nothing is written),
 * FARM_ERROR (the signature failed) or FARM_EIO. */
int vcs_commit_write(git_oid *out, git_repository *repo, const git_signature *who, const char *msg,
                     const git_tree *tree, size_t nparents, const git_commit **parents,
                     const char *signing_key);

/* Put a printf-style prefix before the error slot's message. */
void vcs_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* a followed by b in a new heap string (free()), or NULL on ENOMEM. */
char *vcs_strcat(const char *a, const char *b);

/* A URL without its user-info, for messages. */
void vcs_url_redact(char *out, size_t n, const char *url);

/* A network operation watched for stalls (git_watchdog.c). */
typedef struct vcs_watch {
    pthread_t thread;
    int64_t last_ms;  /* monotonic time of the last progress */
    int64_t stall_ms; /* interrupt after this long without progress */
    int fired;        /* the watchdog interrupted it */
    int active;
    struct vcs_watch *next;
} vcs_watch;

int vcs_watch_init(void);
int vcs_watch_signal(void);
/* Watch the calling thread until vcs_watch_stop(); w must stay put. */
void vcs_watch_start(vcs_watch *w, int64_t stall_ms);
void vcs_watch_touch(vcs_watch *w);
void vcs_watch_stop(vcs_watch *w);

/* State for the remote callbacks of one fetch or push. */
typedef struct vcs_cb_state {
    const vcs_remote *remote;
    vcs_watch watch;
    int asked;          /* credential callback calls */
    int refused;        /* credentials given once and asked for again: refused */
    int missing;        /* asked for credentials and we had none */
    int foreign;        /* asked for credentials for a host other than the configured one */
    int cancelled;      /* stopped through remote->cancel */
    char rejected[256]; /* push: the server's reason for refusing the ref, "" when accepted */
} vcs_cb_state;

void vcs_callbacks_init(git_remote_callbacks *cb, vcs_cb_state *st, const vcs_remote *remote);

/* After a failed network operation: the farm code and message, looking at
 * what the callbacks saw as well as libgit2's code. `what` is "fetch" or
 * "push"; name and url are for the message. */
int vcs_net_fail(int gitcode, const vcs_cb_state *st, const char *what);

#endif
