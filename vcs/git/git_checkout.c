/*
 * git_checkout.c - writing a commit's files into a new, empty worktree,
 * fast.
 *
 * libgit2's git_checkout_tree() is general: it diffs the target against a
 * baseline, consults attributes for every path and re-stats what it wrote,
 * which costs more than twice what `git worktree add` takes on a large
 * tree. A fresh worktree needs none of that. First one thread walks the
 * trees, checks every name and makes every directory; then a few workers
 * (one per CPU, at most four, each with its own handle on the mirror) write
 * the blobs, each file created with O_EXCL|O_NOFOLLOW below directories
 * made in the first pass, so no entry can write through a symlink or over
 * another; last the index is built from the same list, sorted, with the
 * stat data of the files just written.
 *
 * Content filters are the one thing this skips, so a tree with a
 * .gitattributes anywhere (where `eol`, `text` or `ident` could change the
 * bytes) is left to git_checkout_tree(), which applies libgit2's built-in
 * filters (it runs no external ones).
 */
#include "git_internal.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct entry {
    char *path;
    git_index_entry ie;
} entry;

typedef struct co_ctx {
    git_repository *src; /* where objects are read from (the mirror) */
    entry *v;
    size_t n, cap;
    char err[512];
} co_ctx;

/* A tree entry name that may become a file name: not empty, ".", "..",
 * not containing '/', and not ".git" in any case (nor its NTFS 8.3 and
 * trailing-dot/space disguises, harmless here but refused like git does). */
static int name_ok(const char *n)
{
    if (!*n || !strcmp(n, ".") || !strcmp(n, "..") || strchr(n, '/'))
        return 0;
    if (!strncasecmp(n, ".git", 4)) {
        const char *rest = n + 4;
        while (*rest == ' ' || *rest == '.')
            rest++;
        if (!*rest)
            return 0;
    }
    if (!strcasecmp(n, "git~1"))
        return 0;
    return 1;
}

static int add_entry(co_ctx *c, const char *prefix, const char *name, uint32_t mode,
                     const git_oid *id, const struct stat *st)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        entry *v = realloc(c->v, cap * sizeof(*v));
        if (!v)
            return -1;
        c->v = v;
        c->cap = cap;
    }
    entry *e = &c->v[c->n];
    memset(e, 0, sizeof(*e));
    size_t lp = strlen(prefix), ln = strlen(name);
    if (!(e->path = malloc(lp + ln + 1)))
        return -1;
    memcpy(e->path, prefix, lp);
    memcpy(e->path + lp, name, ln + 1);
    e->ie.mode = mode;
    git_oid_cpy(&e->ie.id, id);
    if (st) {
        e->ie.ctime.seconds = (int32_t)st->st_ctim.tv_sec;
        e->ie.ctime.nanoseconds = (uint32_t)st->st_ctim.tv_nsec;
        e->ie.mtime.seconds = (int32_t)st->st_mtim.tv_sec;
        e->ie.mtime.nanoseconds = (uint32_t)st->st_mtim.tv_nsec;
        e->ie.dev = (uint32_t)st->st_dev;
        e->ie.ino = (uint32_t)st->st_ino;
        e->ie.uid = (uint32_t)st->st_uid;
        e->ie.gid = (uint32_t)st->st_gid;
        e->ie.file_size = (uint32_t)st->st_size;
    }
    c->n++;
    return 0;
}

/* "cannot <verb> <path>: <errno text>" into the context; returns -1 */
static int fail(co_ctx *c, const char *verb, const char *path)
{
    snprintf(c->err, sizeof(c->err), "cannot %s %s: %s", verb, path, strerror(errno));
    return -1;
}

/* Pass one: check every name, make every directory, list every file. */
static int walk_tree(co_ctx *c, int dfd, const git_tree *tree, const char *prefix, int depth)
{
    size_t n = git_tree_entrycount(tree);
    if (depth > 256) {
        snprintf(c->err, sizeof(c->err), "tree nested deeper than 256 levels at %s", prefix);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const git_tree_entry *te = git_tree_entry_byindex(tree, i);
        const char *name = git_tree_entry_name(te);
        git_filemode_t mode = git_tree_entry_filemode(te);
        if (!name_ok(name)) {
            snprintf(c->err, sizeof(c->err), "refusing to check out path '%s%s'", prefix, name);
            return -1;
        }
        switch (mode) {
        case GIT_FILEMODE_BLOB:
        case GIT_FILEMODE_BLOB_EXECUTABLE:
        case GIT_FILEMODE_LINK: /* written in pass two */
            if (add_entry(c, prefix, name, mode, git_tree_entry_id(te), NULL) < 0)
                return -1;
            break;
        case GIT_FILEMODE_COMMIT: /* a submodule: an empty directory, like git */
            if (mkdirat(dfd, name, 0777) < 0)
                return fail(c, "create", name);
            if (add_entry(c, prefix, name, mode, git_tree_entry_id(te), NULL) < 0)
                return -1;
            break;
        case GIT_FILEMODE_TREE: {
            git_tree *sub = NULL;
            char *subprefix = NULL;
            int sfd = -1, rc = -1;
            if (mkdirat(dfd, name, 0777) < 0)
                return fail(c, "create", name);
            sfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sfd < 0)
                return fail(c, "open", name);
            if (git_tree_lookup(&sub, c->src, git_tree_entry_id(te)) < 0) {
                snprintf(c->err, sizeof(c->err), "cannot read tree %s%s", prefix, name);
            } else if ((subprefix = malloc(strlen(prefix) + strlen(name) + 2)) != NULL) {
                strcpy(subprefix, prefix);
                strcat(subprefix, name);
                strcat(subprefix, "/");
                rc = walk_tree(c, sfd, sub, subprefix, depth + 1);
            }
            free(subprefix);
            git_tree_free(sub);
            close(sfd);
            if (rc < 0)
                return -1;
            break;
        }
        default:
            snprintf(c->err, sizeof(c->err), "unknown mode %o at %s%s", (unsigned)mode, prefix,
                     name);
            return -1;
        }
    }
    return 0;
}

/* Pass two: the files, shared out among workers. */
typedef struct co_work {
    co_ctx *c;
    const char *mirror; /* path of the mirror, for the workers' own handles */
    int rootfd;
    size_t next;        /* the next entry to take (atomic) */
    int failed;         /* atomic: stop taking entries */
    pthread_mutex_t mu; /* guards c->err */
} co_work;

/* "cannot <verb> <path>: <why>", the first one wins; stops the others */
static void work_fail(co_work *w, const char *verb, const char *path, const char *why)
{
    pthread_mutex_lock(&w->mu);
    if (!w->c->err[0])
        snprintf(w->c->err, sizeof(w->c->err), "cannot %s %s: %s", verb, path, why);
    pthread_mutex_unlock(&w->mu);
    __atomic_store_n(&w->failed, 1, __ATOMIC_SEQ_CST);
}

static int write_one(co_work *w, git_repository *src, entry *e)
{
    git_blob *blob = NULL;
    struct stat st;
    int rc = -1, fd = -1;

    if (git_blob_lookup(&blob, src, &e->ie.id) < 0) {
        const git_error *ge = git_error_last();
        work_fail(w, "read", e->path, ge ? ge->message : "");
        return -1;
    }
    const char *data = git_blob_rawcontent(blob);
    size_t len = (size_t)git_blob_rawsize(blob);
    if (e->ie.mode == GIT_FILEMODE_LINK) {
        char *target = strndup(data, len);
        if (!target || symlinkat(target, w->rootfd, e->path) < 0 ||
            fstatat(w->rootfd, e->path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            free(target);
            work_fail(w, "create symlink", e->path, strerror(errno));
            goto out;
        }
        free(target);
    } else {
        /* every directory above was made by pass one, so only the last
         * component could be a surprise, and O_EXCL|O_NOFOLLOW refuse it */
        int perm = e->ie.mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0777 : 0666;
        fd = openat(w->rootfd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
        if (fd < 0) {
            work_fail(w, "create", e->path, strerror(errno));
            goto out;
        }
        for (size_t off = 0; off < len;) {
            ssize_t n = write(fd, data + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                work_fail(w, "write", e->path, n < 0 ? strerror(errno) : "short");
                goto out;
            }
            off += (size_t)n;
        }
        if (fstat(fd, &st) < 0) {
            work_fail(w, "stat", e->path, strerror(errno));
            goto out;
        }
    }
    e->ie.ctime.seconds = (int32_t)st.st_ctim.tv_sec;
    e->ie.ctime.nanoseconds = (uint32_t)st.st_ctim.tv_nsec;
    e->ie.mtime.seconds = (int32_t)st.st_mtim.tv_sec;
    e->ie.mtime.nanoseconds = (uint32_t)st.st_mtim.tv_nsec;
    e->ie.dev = (uint32_t)st.st_dev;
    e->ie.ino = (uint32_t)st.st_ino;
    e->ie.uid = (uint32_t)st.st_uid;
    e->ie.gid = (uint32_t)st.st_gid;
    e->ie.file_size = (uint32_t)st.st_size;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    git_blob_free(blob);
    return rc;
}

#define CHUNK 32

static void work_run(co_work *w, git_repository *src)
{
    co_ctx *c = w->c;
    while (!__atomic_load_n(&w->failed, __ATOMIC_SEQ_CST)) {
        size_t i = __atomic_fetch_add(&w->next, CHUNK, __ATOMIC_SEQ_CST);
        if (i >= c->n)
            break;
        size_t end = i + CHUNK < c->n ? i + CHUNK : c->n;
        for (; i < end; i++) {
            if (c->v[i].ie.mode == GIT_FILEMODE_COMMIT)
                continue;
            if (write_one(w, src, &c->v[i]) < 0)
                return;
        }
    }
}

static void *worker(void *arg)
{
    co_work *w = arg;
    git_repository *src = NULL;
    if (git_repository_open_bare(&src, w->mirror) < 0) {
        const git_error *ge = git_error_last();
        work_fail(w, "open the mirror", w->mirror, ge ? ge->message : "");
        return NULL;
    }
    work_run(w, src);
    git_repository_free(src);
    return NULL;
}

/* Write the listed files with up to `threads` threads (this one included). */
static int write_all(co_ctx *c, int rootfd, int threads)
{
    co_work w;
    pthread_t t[4];
    int started = 0;

    memset(&w, 0, sizeof(w));
    w.c = c;
    w.mirror = git_repository_path(c->src);
    w.rootfd = rootfd;
    pthread_mutex_init(&w.mu, NULL);
    for (int i = 1; i < threads && i < 4; i++) {
        if (pthread_create(&t[started], NULL, worker, &w) != 0)
            break; /* fewer helpers is fine */
        started++;
    }
    work_run(&w, c->src);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    pthread_mutex_destroy(&w.mu);
    return w.failed ? -1 : 0;
}

/* 1 when a .gitattributes file is anywhere in the tree (trees only read). */
static int has_attributes(git_repository *src, const git_tree *tree, int depth)
{
    size_t n = git_tree_entrycount(tree);
    if (depth > 256)
        return 1;
    if (git_tree_entry_byname(tree, ".gitattributes"))
        return 1;
    for (size_t i = 0; i < n; i++) {
        const git_tree_entry *te = git_tree_entry_byindex(tree, i);
        if (git_tree_entry_type(te) != GIT_OBJECT_TREE)
            continue;
        git_tree *sub = NULL;
        if (git_tree_lookup(&sub, src, git_tree_entry_id(te)) < 0)
            return 1; /* let the general path report it */
        int r = has_attributes(src, sub, depth + 1);
        git_tree_free(sub);
        if (r)
            return 1;
    }
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->path, ((const entry *)b)->path);
}

int wt_checkout(git_repository *repo, git_repository *src, const git_commit *commit,
                const char *workdir)
{
    git_tree *tree = NULL;
    git_index *idx = NULL;
    co_ctx c;
    int rc = 0, e, dfd = -1;

    memset(&c, 0, sizeof(c));
    c.src = src;
    if ((e = git_tree_lookup(&tree, src, git_commit_tree_id(commit))) < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot read the start tree", workdir);

    if (has_attributes(src, tree, 0)) {
        git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
        git_commit *own = NULL; /* the same commit, through the worktree's odb */
        co.checkout_strategy = GIT_CHECKOUT_FORCE;
        if ((e = git_commit_lookup(&own, repo, git_commit_id(commit))) < 0 ||
            (e = git_checkout_tree(repo, (const git_object *)own, &co)) < 0)
            rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: checkout failed", workdir);
        git_commit_free(own);
        goto out;
    }

    dfd = open(workdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        farm_error_set("worktree %s: %s", workdir, strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (walk_tree(&c, dfd, tree, "", 0) < 0 ||
        write_all(&c, dfd,
                  c.n < 256 ? 1
                            : (int)(cpus < 1   ? 1
                                    : cpus > 4 ? 4
                                               : cpus)) < 0) {
        farm_error_set("worktree %s: checkout failed: %s", workdir,
                       c.err[0] ? c.err : "out of memory");
        rc = FARM_EIO;
        goto out;
    }
    qsort(c.v, c.n, sizeof(*c.v), entry_cmp);
    if ((e = git_repository_index(&idx, repo)) < 0)
        goto gitfail;
    for (size_t i = 0; i < c.n; i++) {
        c.v[i].ie.path = c.v[i].path;
        if ((e = git_index_add(idx, &c.v[i].ie)) < 0)
            goto gitfail;
    }
    if ((e = git_index_write(idx)) < 0)
        goto gitfail;
    goto out;
gitfail:
    rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot write the index", workdir);
out:
    if (dfd >= 0)
        close(dfd);
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].path);
    free(c.v);
    git_index_free(idx);
    git_tree_free(tree);
    return rc;
}
