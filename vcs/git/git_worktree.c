/*
 * git_worktree.c - a worktree per session, made from the mirror without the
 * network, and the one careful way the farm opens it again.
 *
 * A worktree is a repository of its own at <path>/.git whose object store
 * borrows the mirror's through objects/info/alternates, so making one costs
 * an init (a handful of small files), a checkout (writing the files) and an
 * index; nothing is copied from the mirror. Inside the sandbox the agent may
 * rewrite anything under <path> except .git/hooks and .git/config, so
 * wt_repo_open() trusts none of it: see git.h.
 */
#include "git_internal.h"
#include "base/error.h"
#include "base/strv.h"

#include <assert.h>
#include <git2/sys/repository.h>
#include <git2/sys/odb_backend.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void vcs_worktree_free(vcs_worktree *wt)
{
    if (!wt)
        return;
    free(wt->path);
    free(wt->gitdir);
    free(wt->branch);
    free(wt->refname);
    free(wt);
}

const char *vcs_worktree_path(const vcs_worktree *wt)
{
    return wt->path;
}

const char *vcs_worktree_branch(const vcs_worktree *wt)
{
    return wt->branch;
}

const char *vcs_worktree_head(const vcs_worktree *wt)
{
    return wt->head;
}

const char *vcs_worktree_start(const vcs_worktree *wt)
{
    return wt->start;
}

/* An absolute, normalised version of a path whose last component may not
 * exist yet (its parent must). Heap string or NULL with the error set. */
static char *abs_path(const char *path)
{
    char *copy = strdup(path), *res = NULL;
    if (!copy)
        return NULL;
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';
    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    const char *parent = slash ? (slash == copy ? "/" : copy) : ".";
    if (slash)
        *slash = '\0';
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        farm_error_set("worktree path '%s' must name a new directory", path);
        goto out;
    }
    char *rp = realpath(parent, NULL);
    if (!rp) {
        farm_error_set("worktree path %s: parent directory: %s", path, strerror(errno));
        goto out;
    }
    res = vcs_strcat(strcmp(rp, "/") == 0 ? "/" : rp, strcmp(rp, "/") == 0 ? base : "/");
    if (res && strcmp(rp, "/") != 0) {
        char *full = vcs_strcat(res, base);
        free(res);
        res = full;
    }
    free(rp);
out:
    free(copy);
    return res;
}

static int mkdir_parents(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
    char *last = strrchr(tmp, '/');
    if (!last || last == tmp)
        return 0;
    *last = '\0';
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static vcs_worktree *wt_new(vcs_mirror *m, const char *abspath, const char *branch)
{
    vcs_worktree *wt = calloc(1, sizeof(*wt));
    if (!wt)
        return NULL;
    wt->m = m;
    if (!(wt->path = strdup(abspath)) || !(wt->gitdir = vcs_strcat(abspath, "/.git")) ||
        !(wt->branch = strdup(branch)) || !(wt->refname = vcs_strcat("refs/heads/", branch))) {
        vcs_worktree_free(wt);
        return NULL;
    }
    return wt;
}

/* The farm's object database for a worktree: its own objects (read and
 * write) and the mirror's (read), whatever objects/info/alternates says. */
static int wt_odb(git_odb **out, const vcs_worktree *wt)
{
    git_odb *odb = NULL;
    git_odb_backend *loose = NULL, *pack = NULL;
    char objects[PATH_MAX];
    int e;

    *out = NULL;
    snprintf(objects, sizeof(objects), "%s/objects", wt->gitdir);
    if ((e = git_odb_new(&odb)) < 0)
        goto fail;
    if ((e = git_odb_backend_loose(&loose, objects, -1, 0, 0, 0)) < 0)
        goto fail;
    if ((e = git_odb_add_backend(odb, loose, 2)) < 0) {
        loose->free(loose);
        goto fail;
    }
    if ((e = git_odb_backend_pack(&pack, objects)) < 0)
        goto fail;
    if ((e = git_odb_add_backend(odb, pack, 1)) < 0) {
        pack->free(pack);
        goto fail;
    }
    if ((e = git_odb_add_disk_alternate(odb, wt->m->objects)) < 0)
        goto fail;
    *out = odb;
    return 0;
fail:
    git_odb_free(odb);
    return vcs_git_fail(e, FARM_EIO, NULL, "cannot open the objects of worktree %s", wt->path);
}

/* Make the repository use the farm's config and object database. */
static int wt_repo_harden(git_repository *repo, const vcs_worktree *wt)
{
    git_config *cfg = NULL;
    git_odb *odb = NULL;
    int e, rc;

    if ((e = git_config_open_ondisk(&cfg, wt->m->wtconfig)) < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "cannot read %s", wt->m->wtconfig);
    e = git_repository_set_config(repo, cfg);
    git_config_free(cfg);
    if (e < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "cannot configure worktree %s", wt->path);
    if ((rc = wt_odb(&odb, wt)) < 0)
        return rc;
    e = git_repository_set_odb(repo, odb);
    git_odb_free(odb);
    if (e < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "cannot configure worktree %s", wt->path);
    return 0;
}

/* 1 when a and b name the same directory (libgit2 paths end in '/'). */
static int same_dir(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb > 1 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

/* Fail when anything under the directory open at dfd is a symlink. The
 * farm writes refs, reflogs, objects and the index under .git; a symlink
 * planted there by the agent would point those writes (or reads of another
 * repository's objects) at the host's file system. Closes dfd. */
static int no_symlinks(int dfd, const char *rel, int depth, size_t *budget, char *bad, size_t n)
{
    DIR *d = fdopendir(dfd);
    int rc = 0;
    if (!d) {
        close(dfd);
        snprintf(bad, n, "%s (unreadable)", rel);
        return -1;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (*budget == 0 || depth > 64) {
            snprintf(bad, n, "%s (too many entries or too deep)", rel);
            rc = -1;
            break;
        }
        (*budget)--;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            type = S_ISLNK(st.st_mode) ? DT_LNK : S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
        }
        if (type == DT_LNK) {
            snprintf(bad, n, "%s/%s", rel, de->d_name);
            rc = -1;
        } else if (type == DT_DIR) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                snprintf(bad, n, "%s/%s", rel, de->d_name);
                rc = -1;
                break;
            }
            char subrel[PATH_MAX];
            snprintf(subrel, sizeof(subrel), "%s/%s", rel, de->d_name);
            rc = no_symlinks(sub, subrel, depth + 1, budget, bad, n);
        }
    }
    closedir(d);
    return rc;
}

int wt_repo_open(git_repository **out, const vcs_worktree *wt)
{
    git_repository *repo = NULL;
    struct stat st;
    int e, rc;

    *out = NULL;
    if (lstat(wt->gitdir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        farm_error_set("worktree %s has no .git directory (removed or replaced?)", wt->path);
        return FARM_ENOTFOUND;
    }
    int gfd = open(wt->gitdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    size_t budget = 2000000; /* entries: bounds the walk, far above any real .git */
    char bad[PATH_MAX];
    if (gfd < 0 || no_symlinks(gfd, ".git", 0, &budget, bad, sizeof(bad)) < 0) {
        farm_error_set("worktree %s: %s is a symlink or unreadable; refusing to use a .git that "
                       "points outside itself",
                       wt->path, gfd < 0 ? ".git" : bad);
        return FARM_EINVALID;
    }
    if ((e = git_repository_open_ext(&repo, wt->path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0)
        return vcs_git_fail(e, FARM_EIO, NULL, "cannot open worktree %s", wt->path);
    /* .git/commondir, .git/gitdir or core.worktree could point the farm at
     * another repository or another directory: refuse them all. */
    const char *wd = git_repository_workdir(repo);
    if (git_repository_is_bare(repo) || !wd || !same_dir(wd, wt->path) ||
        !same_dir(git_repository_path(repo), wt->gitdir) ||
        !same_dir(git_repository_commondir(repo), wt->gitdir)) {
        farm_error_set("worktree %s: its .git no longer describes this worktree (commondir, "
                       "gitdir or core.worktree changed); refusing to use it",
                       wt->path);
        rc = FARM_EINVALID;
        goto out;
    }
    if ((rc = wt_repo_harden(repo, wt)) < 0)
        goto out;
    *out = repo;
    repo = NULL;
out:
    git_repository_free(repo);
    return rc;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}

/* Resolve the start commit in the mirror (under its shared lock). */
static int start_resolve(git_oid *out, git_repository *mrepo, const vcs_mirror *m,
                         const worktree_opts *o)
{
    git_commit *c = NULL;
    int e;

    if (o->start) {
        git_oid oid;
        if (git_oid_fromstr(&oid, o->start) < 0) {
            farm_error_set("start commit '%.64s' is not a full hex object id", o->start);
            return FARM_EINVALID;
        }
        if ((e = git_commit_lookup(&c, mrepo, &oid)) < 0) {
            farm_error_set("commit %s not found in the mirror of %s (was it pushed and fetched?)",
                           o->start, m->name);
            return FARM_ENOTFOUND;
        }
    } else {
        char refname[512];
        git_reference *ref = NULL;
        git_object *obj = NULL;
        snprintf(refname, sizeof(refname), "refs/heads/%s", o->base);
        e = git_reference_lookup(&ref, mrepo, refname);
        if (e == 0)
            e = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT);
        git_reference_free(ref);
        if (e < 0) {
            if (e == GIT_ENOTFOUND) {
                farm_error_set("base branch '%s' not found in %s (check the repository's "
                               "base_branch setting)",
                               o->base, m->name);
                return FARM_ENOTFOUND;
            }
            return vcs_git_fail(e, FARM_EIO, NULL, "cannot read base branch '%s' of %s", o->base,
                                m->name);
        }
        c = (git_commit *)obj;
    }
    git_oid_cpy(out, git_commit_id(c));
    git_commit_free(c);
    return 0;
}

int vcs_worktree_create(vcs_worktree **out, vcs_mirror *m, const worktree_opts *o)
{
    vcs_worktree *wt = NULL;
    git_repository *mrepo = NULL, *repo = NULL;
    git_commit *commit = NULL;
    git_reference *ref = NULL;
    char *path = NULL, alt[PATH_MAX], hooks[PATH_MAX];
    git_oid oid;
    int rc = 0, e, lk = -1, made = 0;
    struct stat st;

    assert(out && m && o);
    *out = NULL;
    if ((rc = vcs_git_init()) < 0)
        return rc;
    if (!o->path || !o->branch || (!o->base == !o->start)) {
        farm_error_set("worktree: a path, a branch, and either a base branch or a start commit "
                       "are required");
        return FARM_EINVALID;
    }
    if (!vcs_branch_name_valid(o->branch)) {
        farm_error_set("worktree: '%s' is not a valid branch name", o->branch);
        return FARM_EINVALID;
    }
    if (o->base && !vcs_branch_name_valid(o->base)) {
        farm_error_set("worktree: base branch '%s' is not a valid branch name", o->base);
        return FARM_EINVALID;
    }
    if (lstat(o->path, &st) == 0) {
        farm_error_set("worktree: %s already exists", o->path);
        return FARM_EEXISTS;
    }
    if (mkdir_parents(o->path) < 0) {
        farm_error_set("worktree: cannot create the parent of %s: %s", o->path, strerror(errno));
        return FARM_EIO;
    }
    if (!(path = abs_path(o->path)))
        return FARM_EINVALID;
    if (!(wt = wt_new(m, path, o->branch))) {
        rc = FARM_ENOMEM;
        farm_error_set("out of memory");
        goto out;
    }

    if ((lk = rc = mirror_lock_take(m, 0)) < 0)
        goto out;
    rc = 0;
    if ((e = git_repository_open_bare(&mrepo, m->path)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot open the mirror of %s", m->name);
        goto out;
    }
    if ((rc = start_resolve(&oid, mrepo, m, o)) < 0)
        goto out;

    git_repository_init_options io = GIT_REPOSITORY_INIT_OPTIONS_INIT;
    io.flags = GIT_REPOSITORY_INIT_NO_REINIT | GIT_REPOSITORY_INIT_MKDIR;
    io.initial_head = o->branch;
    if (mkdir(path, 0755) < 0) {
        farm_error_set("worktree: cannot create %s: %s", path, strerror(errno));
        rc = errno == EEXIST ? FARM_EEXISTS : FARM_EIO;
        goto out;
    }
    made = 1;
    if ((e = git_repository_init_ext(&repo, path, &io)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot create the worktree repository at %s", path);
        goto out;
    }
    snprintf(alt, sizeof(alt), "%s/objects/info/alternates", wt->gitdir);
    snprintf(hooks, sizeof(hooks), "%s/hooks", wt->gitdir);
    char *alttext = vcs_strcat(m->objects, "\n");
    if (!alttext) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    int werr = write_text(alt, alttext);
    free(alttext);
    if (werr < 0 || (mkdir(hooks, 0755) < 0 && errno != EEXIST)) {
        farm_error_set("worktree: cannot write %s: %s", alt, strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    if ((rc = wt_repo_harden(repo, wt)) < 0)
        goto out;
    if ((e = git_commit_lookup(&commit, mrepo, &oid)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: start commit unreadable", path);
        goto out;
    }
    if ((rc = wt_checkout(repo, mrepo, commit, path)) < 0)
        goto out;
    if ((e = git_reference_create(&ref, repo, wt->refname, &oid, 0, NULL)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot create branch %s", path,
                          o->branch);
        goto out;
    }
    git_oid_tostr(wt->start, sizeof(wt->start), &oid);
    memcpy(wt->head, wt->start, sizeof(wt->head));
    *out = wt;
    wt = NULL;
out:
    git_reference_free(ref);
    git_commit_free(commit);
    git_repository_free(repo);
    git_repository_free(mrepo);
    if (lk >= 0)
        mirror_lock_release(m, lk);
    if (rc < 0 && made) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", farm_error_last());
        vcs_tree_remove(path);
        farm_error_set("%s", msg);
    }
    vcs_worktree_free(wt);
    free(path);
    return rc;
}

/* A worktree taken up again belongs to the caller alone (the job's lease
 * says so): the index and HEAD locks a killed process left in its git
 * directory are stale, and left in place every later commit fails with
 * "the index is locked" (SIGKILL during a commit does this). */
static void wt_stale_locks_remove(git_repository *repo)
{
    static const char *const names[] = {"index.lock", "HEAD.lock", NULL};
    int dfd = open(git_repository_path(repo), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return;
    for (size_t i = 0; names[i]; i++)
        unlinkat(dfd, names[i], 0);
    close(dfd);
}

int vcs_worktree_open(vcs_worktree **out, vcs_mirror *m, const char *path, const char *branch,
                      const char *start, const char *head)
{
    vcs_worktree *wt = NULL;
    git_repository *repo = NULL;
    git_commit *c = NULL;
    git_oid oid, soid;
    char *abs = NULL;
    int rc = 0, e;

    *out = NULL;
    if ((rc = vcs_git_init()) < 0)
        return rc;
    if (!path || !branch || !start || !head || !vcs_branch_name_valid(branch) ||
        git_oid_fromstr(&oid, head) < 0 || git_oid_fromstr(&soid, start) < 0) {
        farm_error_set("worktree_open: a path, a valid branch and full start and head commit ids "
                       "are required");
        return FARM_EINVALID;
    }
    if (!(abs = realpath(path, NULL))) {
        farm_error_set("worktree %s: %s", path, strerror(errno));
        return FARM_ENOTFOUND;
    }
    if (!(wt = wt_new(m, abs, branch))) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    if ((rc = wt_repo_open(&repo, wt)) < 0)
        goto out;
    wt_stale_locks_remove(repo);
    if ((e = git_commit_lookup(&c, repo, &oid)) < 0) {
        farm_error_set("worktree %s: commit %s not found", abs, head);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    git_commit_free(c);
    c = NULL;
    if ((e = git_commit_lookup(&c, repo, &soid)) < 0) {
        farm_error_set("worktree %s: commit %s not found", abs, start);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    git_oid_tostr(wt->head, sizeof(wt->head), &oid);
    git_oid_tostr(wt->start, sizeof(wt->start), &soid);
    *out = wt;
    wt = NULL;
out:
    git_commit_free(c);
    git_repository_free(repo);
    vcs_worktree_free(wt);
    free(abs);
    return rc;
}

int vcs_worktree_ro_paths(char ***out, const vcs_worktree *wt)
{
    char **v = calloc(4, sizeof(char *));
    *out = NULL;
    if (!v || !(v[0] = vcs_strcat(wt->gitdir, "/hooks")) ||
        !(v[1] = vcs_strcat(wt->gitdir, "/config")) || !(v[2] = strdup(wt->m->objects))) {
        strv_list_free(v);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    *out = v;
    return 0;
}

int vcs_worktree_sandbox_env(char ***out, const vcs_worktree *wt)
{
    char **v = calloc(5, sizeof(char *));
    char *parent = strdup(wt->path);
    *out = NULL;
    if (parent) {
        char *slash = strrchr(parent, '/');
        if (slash)
            slash[slash == parent ? 1 : 0] = '\0';
    }
    if (!v || !parent || !(v[0] = strdup("GIT_CONFIG_COUNT=1")) ||
        !(v[1] = strdup("GIT_CONFIG_KEY_0=safe.directory")) ||
        !(v[2] = vcs_strcat("GIT_CONFIG_VALUE_0=", wt->path)) ||
        !(v[3] = vcs_strcat("GIT_CEILING_DIRECTORIES=", parent))) {
        strv_list_free(v);
        free(parent);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    free(parent);
    *out = v;
    return 0;
}

int vcs_worktree_remove(vcs_worktree *wt)
{
    return vcs_tree_remove(wt->path);
}

int vcs_worktree_branch_switch(vcs_worktree *wt, const char *branch)
{
    git_repository *repo = NULL;
    git_reference *ref = NULL, *old = NULL;
    git_oid oid;
    char *name = NULL, *refname = NULL;
    int rc = 0, e;

    if (!branch || !vcs_branch_name_valid(branch)) {
        farm_error_set("worktree: '%s' is not a valid branch name", branch ? branch : "(null)");
        return FARM_EINVALID;
    }
    if (!strcmp(branch, wt->branch))
        return 0;
    if (!(name = strdup(branch)) || !(refname = vcs_strcat("refs/heads/", branch))) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    if ((rc = wt_repo_open(&repo, wt)) < 0)
        goto out;
    if (git_oid_fromstr(&oid, wt->head) < 0) {
        farm_error_set("worktree %s: no recorded head", wt->path);
        rc = FARM_EINVALID;
        goto out;
    }
    if ((e = git_reference_create(&ref, repo, refname, &oid, 1, NULL)) < 0 ||
        (e = git_repository_set_head(repo, refname)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "worktree %s: cannot switch to branch %s", wt->path,
                          branch);
        goto out;
    }
    if (git_reference_lookup(&old, repo, wt->refname) == 0)
        git_reference_delete(old);
    free(wt->branch);
    free(wt->refname);
    wt->branch = name;
    wt->refname = refname;
    name = refname = NULL;
out:
    git_reference_free(old);
    git_reference_free(ref);
    git_repository_free(repo);
    free(name);
    free(refname);
    return rc;
}
