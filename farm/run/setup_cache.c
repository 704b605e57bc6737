/*
 * setup_cache.c - the setup command's results kept between runs (see
 * setup_cache.h): the key, the listing of a worktree before setup, copying
 * trees with reflinks where the filesystem allows, and the entries'
 * atomic creation, restore and expiry.
 */
#include "setup_cache.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"
#include "vcs/git/git.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX   (256u << 20) /* a lock file hashed at most */
#define DEPTH_MAX      256          /* directories nested in a copy at most */
#define STALE_TMP_MS   (3600 * 1000)
#define CACHE_DIR_NAME "setup-cache"
#define DIR_MAX        (PATH_MAX / 2) /* the cache directory's path at most */

static atomic_uint tmp_counter;

/* ---- the key ---------------------------------------------------------------- */

/* SHA-256 of a regular file under wt (no link followed at its end), or
 * "missing". */
static int file_digest(char out[SETUP_CACHE_KEY_HEX], int wfd, const char *rel)
{
    int fd = openat(wfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    buf b = BUF_INIT(KEY_FILE_MAX);
    char chunk[65536];
    unsigned char md[32];
    ssize_t n;
    int rc = 0;

    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        snprintf(out, SETUP_CACHE_KEY_HEX, "missing");
        return 0;
    }
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        farm_error_set("setup cache: %s (in repos[].setup_cache_key) is not a regular file", rel);
        if (fd >= 0)
            close(fd);
        return FARM_EINVALID;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        if ((rc = buf_append(&b, chunk, (size_t)n)))
            break;
    close(fd);
    if (rc == 0 && n < 0) {
        farm_error_set("setup cache: cannot read %s: %s", rel, strerror(errno));
        rc = FARM_EIO;
    } else if (rc) {
        farm_error_set("setup cache: %s is larger than %u MiB", rel, KEY_FILE_MAX >> 20);
    }
    if (rc == 0 && (rc = crypto_sha256(md, b.data ? b.data : "", b.len)) == 0)
        crypto_hex(out, md, 32);
    buf_free(&b);
    return rc;
}

int setup_cache_key(char out[SETUP_CACHE_KEY_HEX], const config_repo *repo, const char *env_id,
                    const char *wt_path)
{
    buf b = BUF_INIT(1u << 20);
    char d[SETUP_CACHE_KEY_HEX];
    unsigned char md[32];
    int wfd, rc = 0;

    if ((wfd = open(wt_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        farm_error_set("setup cache: cannot open %s: %s", wt_path, strerror(errno));
        return FARM_EIO;
    }
    /* each part NUL-separated, so no two inputs give the same text */
    buf_printf(&b, "farm-setup-cache v1");
    buf_append(&b, "", 1);
    buf_append(&b, env_id, strlen(env_id) + 1);
    buf_append(&b, repo->setup ? repo->setup : "", strlen(repo->setup ? repo->setup : "") + 1);
    for (size_t i = 0; rc == 0 && i < repo->nsetup_cache_key; i++) {
        if ((rc = file_digest(d, wfd, repo->setup_cache_key[i])))
            break;
        buf_append(&b, repo->setup_cache_key[i], strlen(repo->setup_cache_key[i]) + 1);
        rc = buf_append(&b, d, strlen(d) + 1);
    }
    close(wfd);
    if (rc == 0 && (rc = crypto_sha256(md, b.data, b.len)) == 0)
        crypto_hex(out, md, 32);
    buf_free(&b);
    return rc;
}

/* ---- the listing before setup ----------------------------------------------- */

struct setup_listing {
    char **v;
    size_t n, cap;
};

static int listing_add(setup_listing *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return FARM_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(path)))
        return FARM_ENOMEM;
    l->n++;
    return 0;
}

static int listing_walk(setup_listing *l, int dfd, const char *prefix, int depth)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (depth > DEPTH_MAX) {
        close(dfd);
        farm_error_set("setup cache: directories nested deeper than %d", DEPTH_MAX);
        return FARM_ETOOBIG;
    }
    if (!(d = fdopendir(dfd))) {
        close(dfd);
        return FARM_EIO;
    }
    while (rc == 0 && (e = readdir(d))) {
        char path[PATH_MAX];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            (depth == 0 && !strcmp(e->d_name, ".git")))
            continue;
        if (snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", e->d_name) >=
            (int)sizeof(path))
            continue;
        if ((rc = listing_add(l, path)))
            break;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                rc = listing_walk(l, sub, path, depth + 1);
        }
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void setup_listing_free(setup_listing *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l);
}

int setup_listing_make(setup_listing **out, const char *wt_path)
{
    setup_listing *l = calloc(1, sizeof(*l));
    int fd, rc;

    *out = NULL;
    if (!l)
        return FARM_ENOMEM;
    if ((fd = open(wt_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        farm_error_set("setup cache: cannot open %s: %s", wt_path, strerror(errno));
        free(l);
        return FARM_EIO;
    }
    if ((rc = listing_walk(l, fd, "", 0))) {
        if (rc == FARM_ENOMEM)
            farm_error_set("setup cache: out of memory");
        else if (rc == FARM_EIO)
            farm_error_set("setup cache: cannot list %s", wt_path);
        setup_listing_free(l);
        return rc;
    }
    if (l->n)
        qsort(l->v, l->n, sizeof(*l->v), cmp_str);
    *out = l;
    return 0;
}

static int listing_has(const setup_listing *l, const char *path)
{
    return l->n && bsearch(&path, l->v, l->n, sizeof(*l->v), cmp_str) != NULL;
}

/* ---- copying trees ------------------------------------------------------------ */

/* Copy the contents of fd in to out: a reflink, else copy_file_range(),
 * else read and write. */
static int copy_data(setup_cache_stats *st, int in, int out, off_t size)
{
    if (ioctl(out, FICLONE, in) == 0) {
        st->reflinked = 1;
        return 0;
    }
    off_t left = size;
    while (left > 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        left -= n;
    }
    if (left == 0)
        return 0;
    /* not supported here (or a short copy): start over with plain I/O */
    if (lseek(in, 0, SEEK_SET) < 0 || lseek(out, 0, SEEK_SET) < 0 || ftruncate(out, 0) < 0)
        return FARM_EIO;
    char chunk[65536];
    ssize_t n;
    while ((n = read(in, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return FARM_EIO;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, chunk + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return FARM_EIO;
            off += w;
        }
    }
    return 0;
}

static int copy_file(setup_cache_stats *st, int sdir, int ddir, const char *name,
                     const struct stat *sst)
{
    int in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK), out, rc;

    if (in < 0)
        return FARM_EIO;
    out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 (sst->st_mode & 0777) | 0600);
    if (out < 0) {
        close(in);
        return errno == EEXIST ? 0 : FARM_EIO; /* there already: left alone */
    }
    rc = copy_data(st, in, out, sst->st_size);
    if (rc == 0) {
        struct timespec ts[2] = {sst->st_atim, sst->st_mtim};
        futimens(out, ts);
        st->files++;
        st->bytes += (uint64_t)sst->st_size;
    }
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = FARM_EIO;
    return rc;
}

static int copy_entry(setup_cache_stats *st, int sdir, int ddir, const char *name, int depth);

/* Copy what directory sfd holds into dfd (both closed here). */
static int copy_dir(setup_cache_stats *st, int sfd, int dfd, int depth)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (depth > DEPTH_MAX || !(d = fdopendir(sfd))) {
        close(sfd);
        close(dfd);
        return depth > DEPTH_MAX ? FARM_ETOOBIG : FARM_EIO;
    }
    while (rc == 0 && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            rc = copy_entry(st, dirfd(d), dfd, e->d_name, depth);
    closedir(d);
    close(dfd);
    return rc;
}

/* Copy one entry of sdir into ddir: a directory (merged into one there), a
 * regular file or a symbolic link (as a link); anything else is skipped,
 * and so is a file or link whose name is taken in ddir. */
static int copy_entry(setup_cache_stats *st, int sdir, int ddir, const char *name, int depth)
{
    struct stat sst;

    if (fstatat(sdir, name, &sst, AT_SYMLINK_NOFOLLOW) < 0)
        return FARM_EIO;
    if (S_ISDIR(sst.st_mode)) {
        if (mkdirat(ddir, name, (sst.st_mode & 0777) | 0700) < 0 && errno != EEXIST)
            return FARM_EIO;
        int s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int t = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s < 0 || t < 0) {
            if (s >= 0)
                close(s);
            if (t >= 0)
                close(t);
            /* the name is something else than a directory there: left alone */
            return t < 0 && errno == ENOTDIR ? 0 : (s < 0 ? FARM_EIO : 0);
        }
        return copy_dir(st, s, t, depth + 1);
    }
    if (S_ISREG(sst.st_mode))
        return copy_file(st, sdir, ddir, name, &sst);
    if (S_ISLNK(sst.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
        if (n < 0)
            return FARM_EIO;
        target[n] = '\0';
        if (symlinkat(target, ddir, name) < 0 && errno != EEXIST)
            return FARM_EIO;
        st->files++;
        return 0;
    }
    return 0; /* fifos, sockets, devices: not kept */
}

/* Copy the entries of the worktree (wfd) that are not in before into the
 * cache's directory (cfd); directories that were there are walked. */
static int copy_new(setup_cache_stats *st, int wfd, int cfd, const char *prefix,
                    const setup_listing *before, int depth)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (depth > DEPTH_MAX || !(d = fdopendir(wfd))) {
        close(wfd);
        close(cfd);
        return depth > DEPTH_MAX ? FARM_ETOOBIG : FARM_EIO;
    }
    while (rc == 0 && (e = readdir(d))) {
        char path[PATH_MAX];
        struct stat st_;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            (depth == 0 && !strcmp(e->d_name, ".git")))
            continue;
        if (snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", e->d_name) >=
            (int)sizeof(path))
            continue;
        if (!listing_has(before, path)) {
            rc = copy_entry(st, dirfd(d), cfd, e->d_name, depth);
            continue;
        }
        if (fstatat(dirfd(d), e->d_name, &st_, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st_.st_mode))
            continue; /* a file that was there: the repository's, not setup's */
        if (mkdirat(cfd, e->d_name, 0700) < 0 && errno != EEXIST) {
            rc = FARM_EIO;
            break;
        }
        int s = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int t = openat(cfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (s < 0 || t < 0) {
            if (s >= 0)
                close(s);
            if (t >= 0)
                close(t);
            rc = FARM_EIO;
            break;
        }
        rc = copy_new(st, s, t, path, before, depth + 1);
    }
    closedir(d);
    close(cfd);
    return rc;
}

/* ---- entries ------------------------------------------------------------------- */

static int cache_dir(char *out, size_t n, const char *data_dir)
{
    if (snprintf(out, n, "%s/" CACHE_DIR_NAME, data_dir) >= (int)n) {
        farm_error_set("setup cache: data directory path too long");
        return FARM_ETOOBIG;
    }
    if (mkdir(data_dir, 0700) < 0 && errno != EEXIST)
        return FARM_EIO;
    if (mkdir(out, 0700) < 0 && errno != EEXIST) {
        farm_error_set("setup cache: cannot make %s: %s", out, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

/* Move an entry out of the way under a temporary name, then remove it: a
 * restore never finds it half-removed under its key. */
static void entry_remove(const char *dir, const char *name)
{
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof(from), "%s/%s", dir, name);
    snprintf(to, sizeof(to), "%s/tmp-%ld-%u-rm", dir, (long)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
    if (rename(from, to) == 0)
        vcs_tree_remove(to);
}

/* The entry's meta.json: 1 when valid and not expired, 0 otherwise. */
static int entry_valid(const char *dir, const char *key)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/meta.json", dir, key);
    json_t *m = json_load_file(path, 0, NULL);
    json_t *exp = json_object_get(m, "expires_ms");
    int ok = json_is_integer(exp) && json_integer_value(exp) > clock_wall_ms();
    json_decref(m);
    return ok;
}

static int open_dir(const char *base, const char *sub, int create)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", base, sub) >= (int)sizeof(path))
        return -1;
    if (create && mkdir(path, 0700) < 0 && errno != EEXIST)
        return -1;
    return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int setup_cache_save(setup_cache_stats *out, const char *data_dir, const char *key,
                     const setup_listing *before, const char *wt_path, const char *home_dir,
                     int ttl_s, int64_t setup_ms)
{
    char dir[DIR_MAX], tmp[DIR_MAX + 64], final[PATH_MAX], meta[PATH_MAX];
    setup_cache_stats st = {0};
    int rc, wfd, cfd;

    memset(out, 0, sizeof(*out));
    if ((rc = cache_dir(dir, sizeof(dir), data_dir)))
        return rc;
    snprintf(final, sizeof(final), "%s/%s", dir, key);
    if (entry_valid(dir, key))
        return 0; /* another run kept the same already */
    snprintf(tmp, sizeof(tmp), "%s/tmp-%ld-%u", dir, (long)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
    vcs_tree_remove(tmp);
    if (mkdir(tmp, 0700) < 0) {
        farm_error_set("setup cache: cannot make %s: %s", tmp, strerror(errno));
        return FARM_EIO;
    }
    wfd = open(wt_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cfd = open_dir(tmp, "work", 1);
    if (wfd < 0 || cfd < 0) {
        if (wfd >= 0)
            close(wfd);
        if (cfd >= 0)
            close(cfd);
        rc = FARM_EIO;
    } else {
        rc = copy_new(&st, wfd, cfd, "", before, 0);
    }
    if (rc == 0 && home_dir) {
        int hfd = open(home_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int tfd = open_dir(tmp, "home", 1);
        if (hfd >= 0 && tfd >= 0) {
            rc = copy_dir(&st, hfd, tfd, 0);
        } else {
            if (hfd >= 0)
                close(hfd);
            if (tfd >= 0)
                close(tfd);
            rc = hfd < 0 && errno == ENOENT ? 0 : FARM_EIO;
        }
    }
    if (rc == 0) {
        int64_t now = clock_wall_ms();
        json_t *m =
            json_pack("{s:I,s:I,s:I,s:I,s:I}", "created_ms", (json_int_t)now, "expires_ms",
                      (json_int_t)(now + (int64_t)ttl_s * 1000), "setup_ms", (json_int_t)setup_ms,
                      "files", (json_int_t)st.files, "bytes", (json_int_t)st.bytes);
        snprintf(meta, sizeof(meta), "%s/meta.json", tmp);
        if (!m || json_dump_file(m, meta, JSON_COMPACT) < 0)
            rc = FARM_EIO;
        json_decref(m);
    }
    if (rc == 0) {
        /* an expired entry under the key goes first; a valid one made
         * meanwhile by another run wins */
        if (!entry_valid(dir, key))
            entry_remove(dir, key);
        if (rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
            farm_error_set("setup cache: cannot keep %s: %s", final, strerror(errno));
            rc = FARM_EIO;
        }
    } else if (rc == FARM_EIO) {
        farm_error_set("setup cache: cannot copy what setup left into %s: %s", tmp,
                       strerror(errno));
    }
    vcs_tree_remove(tmp); /* gone when renamed; else what is left of it */
    if (rc == 0)
        *out = st;
    return rc;
}

int setup_cache_restore(int *hit, setup_cache_stats *out, const char *data_dir, const char *key,
                        const char *wt_path, const char *home_dir)
{
    char dir[DIR_MAX], entry[PATH_MAX];
    setup_cache_stats st = {0};
    int rc;

    *hit = 0;
    memset(out, 0, sizeof(*out));
    if ((rc = cache_dir(dir, sizeof(dir), data_dir)))
        return rc;
    if (!entry_valid(dir, key))
        return 0;
    snprintf(entry, sizeof(entry), "%s/%s", dir, key);
    int sfd = open_dir(entry, "work", 0);
    int wfd = open(wt_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0 || wfd < 0) {
        if (sfd >= 0)
            close(sfd);
        if (wfd >= 0)
            close(wfd);
        farm_error_set("setup cache: cannot open %s or %s: %s", entry, wt_path, strerror(errno));
        return FARM_EIO;
    }
    rc = copy_dir(&st, sfd, wfd, 0);
    if (rc == 0 && home_dir) {
        int hfd = open_dir(entry, "home", 0);
        int tfd = open(home_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (hfd >= 0 && tfd >= 0) {
            rc = copy_dir(&st, hfd, tfd, 0);
        } else {
            if (hfd >= 0)
                close(hfd);
            if (tfd >= 0)
                close(tfd);
            rc = FARM_EIO;
        }
    }
    if (rc) {
        farm_error_set("setup cache: cannot restore %s: %s", entry, strerror(errno));
        return rc;
    }
    *hit = 1;
    *out = st;
    return 0;
}

int setup_cache_prune(const char *data_dir)
{
    char dir[DIR_MAX];
    DIR *d;
    struct dirent *e;
    int rc, removed = 0;

    if ((rc = cache_dir(dir, sizeof(dir), data_dir)))
        return rc;
    if (!(d = opendir(dir)))
        return FARM_EIO;
    int64_t now = clock_wall_ms();
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (!strncmp(e->d_name, "tmp-", 4)) {
            /* a save in progress, or left by a crash: removed once stale */
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                now - ((int64_t)st.st_mtim.tv_sec * 1000) > STALE_TMP_MS) {
                char p[PATH_MAX];
                snprintf(p, sizeof(p), "%s/%.255s", dir, e->d_name);
                vcs_tree_remove(p);
            }
            continue;
        }
        if (strlen(e->d_name) != SETUP_CACHE_KEY_HEX - 1 || entry_valid(dir, e->d_name))
            continue;
        entry_remove(dir, e->d_name);
        removed++;
    }
    closedir(d);
    if (removed) {
        char n[16];
        snprintf(n, sizeof(n), "%d", removed);
        log_info("setup cache: expired entries removed", "count", n);
    }
    return removed;
}
