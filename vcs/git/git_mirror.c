/*
 * git_mirror.c - one bare mirror per repository, fetched incrementally and
 * shared by every session of that repository.
 *
 * The lock: a process-wide table maps each mirror path to a read-write lock
 * (so handles opened separately in two threads still exclude each other),
 * and flock() on <mirror>.lock, opened afresh for every acquisition, does the
 * same between processes. A fetch takes it exclusively, a worktree creation
 * shared. libgit2 writes every ref through a lock file and a rename and every
 * pack before the refs that need it, so even a reader that ignored the lock
 * would see either the old ref or the new one, never half of one.
 */
#include "git_internal.h"
#include "base/error.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct mirror_lock {
    char *path;
    pthread_rwlock_t rw;
    int refs;
    struct mirror_lock *next;
};

static pthread_mutex_t locks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mirror_lock *locks;

static struct mirror_lock *lock_get(const char *path)
{
    struct mirror_lock *l;
    pthread_mutex_lock(&locks_mu);
    for (l = locks; l; l = l->next)
        if (strcmp(l->path, path) == 0)
            break;
    if (!l) {
        l = calloc(1, sizeof(*l));
        if (l && !(l->path = strdup(path))) {
            free(l);
            l = NULL;
        }
        if (l) {
            pthread_rwlock_init(&l->rw, NULL);
            l->next = locks;
            locks = l;
        }
    }
    if (l)
        l->refs++;
    pthread_mutex_unlock(&locks_mu);
    return l;
}

static void lock_put(struct mirror_lock *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&locks_mu);
    if (--l->refs == 0) {
        for (struct mirror_lock **pp = &locks; *pp; pp = &(*pp)->next)
            if (*pp == l) {
                *pp = l->next;
                break;
            }
        pthread_rwlock_destroy(&l->rw);
        free(l->path);
        free(l);
    }
    pthread_mutex_unlock(&locks_mu);
}

static int flock_open(const vcs_mirror *m, int op)
{
    int fd = open(m->lockfile, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        farm_error_set("cannot open the lock of mirror %s (%s): %s", m->name, m->lockfile,
                       strerror(errno));
        return FARM_EIO;
    }
    while (flock(fd, op) < 0) {
        if (errno == EINTR)
            continue;
        farm_error_set("cannot lock mirror %s: %s", m->name, strerror(errno));
        close(fd);
        return FARM_EIO;
    }
    return fd;
}

int mirror_lock_take(vcs_mirror *m, int exclusive)
{
    struct mirror_lock *l = m->lock;
    if (exclusive)
        pthread_rwlock_wrlock(&l->rw);
    else
        pthread_rwlock_rdlock(&l->rw);
    /* a descriptor of its own per holder: flock() locks belong to the open
     * file, so shared holders in one process each keep theirs */
    int fd = flock_open(m, exclusive ? LOCK_EX : LOCK_SH);
    if (fd < 0)
        pthread_rwlock_unlock(&l->rw);
    return fd;
}

void mirror_lock_release(vcs_mirror *m, int fd)
{
    close(fd); /* drops the flock */
    pthread_rwlock_unlock(&m->lock->rw);
}

/* The directory name for a repository key: lower-cased, [a-z0-9._-] kept,
 * anything else (and a leading dot) as %XX, so distinct keys never collide
 * and no key can climb out of mirrors/. */
static int safe_name(char *out, size_t n, const char *name)
{
    size_t len = 0;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        int keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                   (c == '.' && p != name);
        if (len + 4 >= n)
            return FARM_ETOOBIG;
        if (keep)
            out[len++] = (char)c;
        else
            len += (size_t)snprintf(out + len, n - len, "%%%02X", c);
    }
    out[len] = '\0';
    return 0;
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -1;
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

/* The config the farm opens every worktree with, instead of the worktree's
 * own: nothing in it runs a program or points anywhere. */
static const char wtconfig_text[] = "[core]\n"
                                    "\trepositoryformatversion = 0\n"
                                    "\tbare = false\n"
                                    "\tfilemode = true\n"
                                    "\tsymlinks = true\n"
                                    "\tignorecase = false\n"
                                    "\tautocrlf = false\n"
                                    "\tsafecrlf = false\n"
                                    "\tlogallrefupdates = false\n"
                                    "\tprotectHFS = true\n"
                                    "\tprotectNTFS = true\n";

static int write_file_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "we");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

void vcs_mirror_free(vcs_mirror *m)
{
    if (!m)
        return;
    lock_put(m->lock);
    free(m->name);
    free(m->path);
    free(m->objects);
    free(m->lockfile);
    free(m->wtconfig);
    free(m);
}

int vcs_mirror_open(vcs_mirror **out, const char *data_dir, const char *name)
{
    char safe[256], dir[PATH_MAX];
    vcs_mirror *m = NULL;
    git_repository *repo = NULL;
    int rc = 0, lk = -1;

    assert(out);
    *out = NULL;
    if ((rc = vcs_git_init()) < 0)
        return rc;
    if (!data_dir || !*data_dir || !name || !*name) {
        farm_error_set("mirror: a data directory and a repository name are required");
        return FARM_EINVALID;
    }
    if (strpbrk(data_dir, "\n\r")) { /* worktrees name the mirror in a line-based file */
        farm_error_set("mirror: the data directory path must not contain a newline");
        return FARM_EINVALID;
    }
    if (safe_name(safe, sizeof(safe), name) < 0) {
        farm_error_set("mirror: repository name '%.80s...' is too long", name);
        return FARM_EINVALID;
    }
    snprintf(dir, sizeof(dir), "%s/mirrors", data_dir);
    if (mkdir_p(dir) < 0) {
        farm_error_set("cannot create %s: %s", dir, strerror(errno));
        return FARM_EIO;
    }
    /* absolute paths: worktrees name the object store in their alternates file */
    char *abs = realpath(dir, NULL);
    if (!abs) {
        farm_error_set("cannot resolve %s: %s", dir, strerror(errno));
        return FARM_EIO;
    }
    char base[PATH_MAX];
    int w = snprintf(base, sizeof(base), "%s/%s", abs, safe);
    free(abs);
    if (w < 0 || (size_t)w >= sizeof(base) - 64) {
        farm_error_set("mirror path for %s is too long", name);
        return FARM_EINVALID;
    }
    m = calloc(1, sizeof(*m));
    if (!m || !(m->name = strdup(name)) || !(m->path = vcs_strcat(base, ".git")) ||
        !(m->objects = vcs_strcat(base, ".git/objects")) ||
        !(m->lockfile = vcs_strcat(base, ".lock")) ||
        !(m->wtconfig = vcs_strcat(base, ".git/farm-worktree.config")))
        goto nomem;
    if (!(m->lock = lock_get(m->path)))
        goto nomem;

    /* Create it under the exclusive lock, so two first sessions don't race. */
    if ((lk = rc = mirror_lock_take(m, 1)) < 0)
        goto out;
    rc = 0;
    struct stat st;
    if (stat(m->wtconfig, &st) == 0) {
        int e = git_repository_open_bare(&repo, m->path);
        if (e < 0) {
            rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot open mirror of %s at %s", name, m->path);
            goto out;
        }
    } else {
        git_repository_init_options io = GIT_REPOSITORY_INIT_OPTIONS_INIT;
        io.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
        int e = git_repository_init_ext(&repo, m->path, &io);
        if (e < 0) {
            rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot create mirror of %s at %s", name, m->path);
            goto out;
        }
        /* written last: its presence says the mirror is complete */
        if (write_file_atomic(m->wtconfig, wtconfig_text) < 0) {
            farm_error_set("cannot write %s: %s", m->wtconfig, strerror(errno));
            rc = FARM_EIO;
            goto out;
        }
    }
    *out = m;
    m = NULL;
    goto out;
nomem:
    farm_error_set("out of memory");
    rc = FARM_ENOMEM;
out:
    git_repository_free(repo);
    if (lk >= 0)
        mirror_lock_release(m ? m : *out, lk);
    vcs_mirror_free(m);
    return rc;
}

const char *vcs_mirror_path(const vcs_mirror *m)
{
    return m->path;
}

/* Packs in the mirror beyond which a fetch repacks. */
#define MIRROR_MAX_PACKS 32

/* The number of packs in the mirror (*.pack files without a .keep). */
static int pack_count(const vcs_mirror *m)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/pack", m->objects);
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".pack"))
            n++;
    }
    closedir(d);
    return n;
}

static int insert_cb(const git_oid *id, void *payload)
{
    return git_packbuilder_insert(payload, id, NULL);
}

/* Write every object of the mirror into one new pack, then delete the old
 * packs. Everything is kept, reachable or not: a session's worktree may
 * stand on a commit whose branch was deleted upstream since. Under the
 * exclusive lock; git processes reading through a worktree's alternates
 * find the objects again in the new pack, as they do after `git gc`. */
static int repack_locked(vcs_mirror *m, git_repository *repo)
{
    git_packbuilder *pb = NULL;
    git_revwalk *walk = NULL;
    git_odb *odb = NULL;
    char dir[PATH_MAX], keep[PATH_MAX * 2], newpack[256];
    DIR *d = NULL;
    int rc = 0, e;

    snprintf(dir, sizeof(dir), "%s/pack", m->objects);
    if ((e = git_packbuilder_new(&pb, repo)) < 0 || (e = git_revwalk_new(&walk, repo)) < 0 ||
        (e = git_repository_odb(&odb, repo)) < 0)
        goto fail;
    git_packbuilder_set_threads(pb, 0);
    /* reachable objects first, through a walk, so deltas pair related paths */
    e = git_revwalk_push_glob(walk, "refs/*");
    if (e == 0)
        e = git_packbuilder_insert_walk(pb, walk);
    if (e < 0 && e != GIT_ENOTFOUND)
        goto fail;
    if ((e = git_odb_foreach(odb, insert_cb, pb)) < 0)
        goto fail;
    if (git_packbuilder_object_count(pb) == 0)
        goto out;
    if ((e = git_packbuilder_write(pb, dir, 0644, NULL, NULL)) < 0)
        goto fail;
    snprintf(newpack, sizeof(newpack), "pack-%s.", git_packbuilder_name(pb));
    if (!(d = opendir(dir))) {
        farm_error_set("repack of %s: %s: %s", m->name, dir, strerror(errno));
        rc = FARM_EIO;
        goto out;
    }
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        const char *n = de->d_name;
        size_t l = strlen(n);
        if (l < 6 || strncmp(n, "pack-", 5) != 0 || !strncmp(n, newpack, strlen(newpack)))
            continue;
        if (strcmp(n + l - 5, ".pack") != 0)
            continue;
        snprintf(keep, sizeof(keep), "%s/%.*s.keep", dir, (int)(l - 5), n);
        if (access(keep, F_OK) == 0)
            continue;
        /* the index goes first, so a reader never finds an index without its pack */
        snprintf(keep, sizeof(keep), "%s/%.*s.idx", dir, (int)(l - 5), n);
        unlink(keep);
        snprintf(keep, sizeof(keep), "%s/%.*s.rev", dir, (int)(l - 5), n);
        unlink(keep);
        snprintf(keep, sizeof(keep), "%s/%s", dir, n);
        unlink(keep);
    }
    goto out;
fail:
    rc = vcs_git_fail(e, FARM_EIO, NULL, "repack of the mirror of %s", m->name);
out:
    if (d)
        closedir(d);
    git_odb_free(odb);
    git_revwalk_free(walk);
    git_packbuilder_free(pb);
    return rc;
}

/* Lock files a killed fetch left behind. Only a fetch writes the mirror's
 * refs, and it holds the mirror's lock exclusively: so while we hold it, a
 * "<name>.lock" under refs/ (or packed-refs.lock, HEAD.lock, config.lock at
 * the top) belongs to no one alive, and left in place it makes every later
 * fetch fail with "failed to lock file" (SIGKILL during a fetch does this).
 * Symlinks are never followed. */
static void stale_locks_under(int dfd, int depth)
{
    DIR *d = fdopendir(dfd);
    struct dirent *e;
    if (!d) {
        close(dfd);
        return;
    }
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (e->d_type == DT_DIR && depth < 32) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                stale_locks_under(sub, depth + 1);
        } else if (e->d_type == DT_REG && n > 5 && !strcmp(e->d_name + n - 5, ".lock")) {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
}

static void stale_locks_remove(const vcs_mirror *m)
{
    static const char *const top[] = {"packed-refs.lock", "HEAD.lock", "config.lock", NULL};
    int dfd = open(m->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return;
    for (size_t i = 0; top[i]; i++)
        unlinkat(dfd, top[i], 0);
    int refs = openat(dfd, "refs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (refs >= 0)
        stale_locks_under(refs, 0);
    close(dfd);
}

int vcs_mirror_fetch(vcs_mirror *m, const vcs_remote *remote)
{
    git_repository *repo = NULL;
    git_remote *gr = NULL;
    git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
    git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
    vcs_cb_state st;
    char *spec = "+refs/heads/*:refs/heads/*";
    git_strarray specs = {&spec, 1};
    int rc, e, lk;

    assert(m);
    if (!remote || !remote->url || !*remote->url) {
        farm_error_set("fetch of %s: no clone URL", m->name);
        return FARM_EINVALID;
    }
    if ((lk = mirror_lock_take(m, 1)) < 0)
        return lk;
    stale_locks_remove(m); /* ours alone now: a killed fetch's locks are stale */
    if ((e = git_repository_open_bare(&repo, m->path)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot open mirror of %s", m->name);
        goto out;
    }
    ro.repository = repo;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if ((e = git_remote_create_with_opts(&gr, remote->url, &ro)) < 0) {
        char url[512];
        vcs_url_redact(url, sizeof(url), remote->url);
        rc = vcs_git_fail(e, FARM_EINVALID, remote->token, "fetch of %s: bad clone URL %s", m->name,
                          url);
        goto out;
    }
    vcs_callbacks_init(&fo.callbacks, &st, remote);
    fo.prune = GIT_FETCH_PRUNE;
    fo.update_fetchhead = 0;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fo.follow_redirects = GIT_REMOTE_REDIRECT_INITIAL;
    vcs_watch_start(&st.watch, st.watch.stall_ms);
    e = git_remote_fetch(gr, &specs, &fo, NULL);
    vcs_watch_stop(&st.watch);
    if (e < 0) {
        rc = vcs_net_fail(e, &st, "fetch");
        goto out;
    }
    rc = 0;
    /* every fetch that brings objects adds a pack; past a few dozen,
     * lookups slow down, so fold them into one while we hold the lock */
    if (pack_count(m) > MIRROR_MAX_PACKS && repack_locked(m, repo) < 0)
        rc = FARM_EIO;
out:
    git_remote_free(gr);
    git_repository_free(repo);
    mirror_lock_release(m, lk);
    return rc;
}

int vcs_mirror_repack(vcs_mirror *m)
{
    git_repository *repo = NULL;
    int rc, e, lk;
    if ((lk = mirror_lock_take(m, 1)) < 0)
        return lk;
    if ((e = git_repository_open_bare(&repo, m->path)) < 0)
        rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot open mirror of %s", m->name);
    else
        rc = repack_locked(m, repo);
    git_repository_free(repo);
    mirror_lock_release(m, lk);
    return rc;
}

int vcs_mirror_pack_count(vcs_mirror *m)
{
    int n, lk;
    if ((lk = mirror_lock_take(m, 0)) < 0)
        return -1;
    n = pack_count(m);
    mirror_lock_release(m, lk);
    return n;
}

int vcs_mirror_branch_oid(char out[VCS_OID_HEXSZ], vcs_mirror *m, const char *branch)
{
    git_repository *repo = NULL;
    git_object *obj = NULL;
    git_reference *ref = NULL;
    char refname[512];
    int rc, e, lk;

    out[0] = '\0';
    if (!vcs_branch_name_valid(branch)) {
        farm_error_set("'%s' is not a valid branch name", branch ? branch : "");
        return FARM_EINVALID;
    }
    snprintf(refname, sizeof(refname), "refs/heads/%s", branch);
    if ((lk = mirror_lock_take(m, 0)) < 0)
        return lk;
    if ((e = git_repository_open_bare(&repo, m->path)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "cannot open mirror of %s", m->name);
        goto out;
    }
    if ((e = git_reference_lookup(&ref, repo, refname)) < 0 ||
        (e = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT)) < 0) {
        rc = e == GIT_ENOTFOUND ? FARM_ENOTFOUND : FARM_EIO;
        if (rc == FARM_ENOTFOUND)
            farm_error_set("branch '%s' not found in the mirror of %s (does the repository "
                           "have it? was it fetched?)",
                           branch, m->name);
        else
            vcs_git_fail(e, FARM_EIO, NULL, "cannot read branch '%s' of %s", branch, m->name);
        goto out;
    }
    git_oid_tostr(out, VCS_OID_HEXSZ, git_object_id(obj));
    rc = 0;
out:
    git_object_free(obj);
    git_reference_free(ref);
    git_repository_free(repo);
    mirror_lock_release(m, lk);
    return rc;
}
