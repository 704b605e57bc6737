/*
 * image_unpack.c - applying an image's layers onto a directory, safely.
 *
 * libarchive reads the tar (and its gzip or zstd); the writing is ours, all
 * of it relative to an open directory descriptor of the root being built:
 * every parent directory is opened with openat2(RESOLVE_BENEATH), so a
 * symbolic link met on the way is followed only when it stays inside the
 * root (an absolute one, or one climbing out with "..", refuses the layer),
 * and the entry itself is created with O_NOFOLLOW / O_EXCL, never through a
 * link. Entry paths with ".." or a leading "/" refuse the layer; hardlinks
 * must name a file already inside the root. Whiteouts are honoured: ".wh.X"
 * removes X, ".wh..wh..opq" empties its directory of what lower layers put
 * there (what this layer wrote stays, as containerd does). Files belong to
 * whoever unpacks (the layer's uids are not used), setuid and setgid bits
 * are dropped, device nodes and sockets are skipped, directories keep their
 * owner's rwx so the cache can be pruned. Every byte read is hashed; the
 * layer is refused when the sha256 differs from its digest (the caller
 * throws the half-built root away).
 */
#include "image_internal.h"

#include "base/error.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int sbx_image_hex_ok(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == 64;
}

/* ---- removing and measuring trees ------------------------------------------ */

/* The names in the directory open at fd (consumed), "." and ".." left out. */
static int dir_names(char ***out, size_t *n, int fd)
{
    *out = NULL;
    *n = 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return FARM_EIO;
    }
    char **v = NULL;
    size_t cap = 0, len = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (len + 1 >= cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                rc = FARM_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[len] = strdup(de->d_name))) {
            rc = FARM_ENOMEM;
            break;
        }
        len++;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < len; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int sbx_image_rm_at(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : FARM_EIO;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : FARM_EIO;
    if ((st.st_mode & S_IRWXU) != S_IRWXU)
        (void)fchmodat(dirfd, name, (st.st_mode & 07777) | S_IRWXU, 0);
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return FARM_EIO;
    int keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (keep < 0) {
        close(fd);
        return FARM_EIO;
    }
    char **names;
    size_t n;
    int rc = dir_names(&names, &n, fd); /* consumes fd; on failure names is NULL */
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = sbx_image_rm_at(keep, names[i]);
    names_free(names, n);
    close(keep);
    if (rc)
        return rc;
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : FARM_EIO;
}

uint64_t sbx_image_tree_size(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    char **names;
    size_t n;
    if (keep < 0 || dir_names(&names, &n, fd) < 0) {
        if (keep < 0)
            close(fd);
        else
            close(keep);
        return 0;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (fstatat(keep, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        total += (uint64_t)st.st_blocks * 512;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(keep, names[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                total += sbx_image_tree_size(sub);
                close(sub);
            }
        }
    }
    names_free(names, n);
    close(keep);
    return total;
}

/* ---- the paths this layer wrote (for opaque directories) -------------------- */

typedef struct pathset {
    char **slot;
    size_t cap, n; /* cap: a power of two */
} pathset;

static uint64_t path_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int pathset_has(const pathset *ps, const char *p)
{
    if (!ps->cap)
        return 0;
    for (size_t i = path_hash(p) & (ps->cap - 1);; i = (i + 1) & (ps->cap - 1)) {
        if (!ps->slot[i])
            return 0;
        if (strcmp(ps->slot[i], p) == 0)
            return 1;
    }
}

static int pathset_put(pathset *ps, char *owned);

static int pathset_grow(pathset *ps)
{
    pathset bigger = {calloc(ps->cap ? ps->cap * 2 : 1024, sizeof(char *)),
                      ps->cap ? ps->cap * 2 : 1024, 0};
    if (!bigger.slot)
        return FARM_ENOMEM;
    for (size_t i = 0; i < ps->cap; i++)
        if (ps->slot[i])
            pathset_put(&bigger, ps->slot[i]);
    free(ps->slot);
    *ps = bigger;
    return 0;
}

/* Takes owned (a heap string) whatever happens. */
static int pathset_put(pathset *ps, char *owned)
{
    if ((ps->n + 1) * 2 > ps->cap && pathset_grow(ps) < 0) {
        free(owned);
        return FARM_ENOMEM;
    }
    size_t i = path_hash(owned) & (ps->cap - 1);
    for (; ps->slot[i]; i = (i + 1) & (ps->cap - 1))
        if (strcmp(ps->slot[i], owned) == 0) {
            free(owned);
            return 0;
        }
    ps->slot[i] = owned;
    ps->n++;
    return 0;
}

static void pathset_free(pathset *ps)
{
    for (size_t i = 0; i < ps->cap; i++)
        free(ps->slot[i]);
    free(ps->slot);
    memset(ps, 0, sizeof(*ps));
}

/* ---- reading a blob through libarchive, hashing it ------------------------- */

typedef struct reader {
    int fd;
    EVP_MD_CTX *md;
    int read_errno;
    char buf[64 * 1024];
} reader;

static la_ssize_t reader_read(struct archive *a, void *ctx, const void **out)
{
    reader *r = ctx;
    ssize_t n;
    do
        n = read(r->fd, r->buf, sizeof(r->buf));
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        r->read_errno = errno;
        archive_set_error(a, errno, "read: %s", strerror(errno));
        return -1;
    }
    if (n > 0 && r->md)
        EVP_DigestUpdate(r->md, r->buf, (size_t)n);
    *out = r->buf;
    return n;
}

/* Skipping a member's data without reading it (only when nothing hashes). */
static la_int64_t reader_skip(struct archive *a, void *ctx, la_int64_t request)
{
    (void)a;
    reader *r = ctx;
    off_t cur = lseek(r->fd, 0, SEEK_CUR), end = lseek(r->fd, 0, SEEK_END);
    if (cur < 0 || end < 0)
        return 0;
    la_int64_t n = request < end - cur ? request : end - cur;
    return lseek(r->fd, cur + n, SEEK_SET) < 0 ? 0 : n;
}

/* A tar reader over fd (tar, or gzip/zstd-compressed tar); one that does
 * not hash (r->md NULL) skips members' data by seeking. */
static struct archive *reader_open(reader *r)
{
    struct archive *a = archive_read_new();
    if (!a)
        return NULL;
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    if (archive_read_open2(a, r, NULL, reader_read, r->md ? NULL : reader_skip, NULL) !=
        ARCHIVE_OK) {
        farm_error_set("%s", archive_error_string(a) ? archive_error_string(a) : "unreadable");
        archive_read_free(a);
        return NULL;
    }
    return a;
}

/* Hash what libarchive did not read (trailing padding) and compare. 1 when
 * the digest matches. */
static int reader_finish(reader *r, const char *hex)
{
    ssize_t n;
    while ((n = read(r->fd, r->buf, sizeof(r->buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            EVP_DigestUpdate(r->md, r->buf, (size_t)n);
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestFinal_ex(r->md, d, &dl);
    char got[65];
    for (unsigned i = 0; i < 32 && i < dl; i++)
        snprintf(got + 2 * i, 3, "%02x", d[i]);
    return n == 0 && dl == 32 && strcmp(got, hex) == 0;
}

/* ---- entry paths -------------------------------------------------------------- */

/* Normalise p into out: no "./" or empty components, no trailing slash ("" is
 * the root itself). -1 with *why set for ".." or an absolute path. */
static int path_norm(char *out, size_t cap, const char *p, const char **why)
{
    if (p[0] == '/') {
        *why = "has an absolute path";
        return -1;
    }
    size_t o = 0;
    while (*p) {
        size_t l = strcspn(p, "/");
        if (l == 2 && p[0] == '.' && p[1] == '.') {
            *why = "has a '..' component";
            return -1;
        }
        if (l > 0 && !(l == 1 && p[0] == '.')) {
            if (o + (o ? 1 : 0) + l + 1 > cap) {
                *why = "has a path too long";
                return -1;
            }
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, l);
            o += l;
        }
        p += l;
        while (*p == '/')
            p++;
    }
    out[o] = '\0';
    return 0;
}

/* openat2 beneath rootfd: symbolic links are followed only inside it. */
static int open_beneath(int rootfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    return (int)syscall(SYS_openat2, rootfd, path[0] ? path : ".", &how, sizeof(how));
}

/* ---- applying one layer ------------------------------------------------------- */

typedef struct unpack {
    int rootfd;
    const char *image;    /* for errors */
    const char *layer;    /* its hex digest */
    char entry[PATH_MAX]; /* the entry's (normalised) path, for errors */
    pathset written;
} unpack;

static int bad(const unpack *u, const char *why)
{
    farm_error_set("image %s: layer sha256:%.12s: entry '%.200s' %s; the image is refused",
                   u->image, u->layer, u->entry, why);
    return FARM_EINVALID;
}

static int io_fail(const unpack *u, const char *what)
{
    farm_error_set("image %s: layer sha256:%.12s: entry '%.200s': %s: %s", u->image, u->layer,
                   u->entry, what, strerror(errno));
    return FARM_EIO;
}

static int beneath_fail(const unpack *u, int err)
{
    if (err == EXDEV)
        return bad(u, "goes through a symbolic link that leads out of the image's root");
    if (err == ELOOP)
        return bad(u, "goes through too many symbolic links");
    if (err == ENOTDIR)
        return bad(u, "goes through something that is not a directory");
    if (err == ENOSYS) {
        farm_error_set("image %s: unpacking needs openat2 (Linux 5.6 or later)", u->image);
        return FARM_EUNSUPPORTED;
    }
    errno = err;
    return io_fail(u, "open parent");
}

/* The directory parent (a normalised path) open beneath the root, made with
 * its missing ancestors (mode 0755) when needed. *out: an O_PATH descriptor. */
static int parent_open(int *out, unpack *u, const char *parent)
{
    int fd = open_beneath(u->rootfd, parent, O_PATH | O_DIRECTORY);
    if (fd >= 0) {
        *out = fd;
        return 0;
    }
    if (errno != ENOENT)
        return beneath_fail(u, errno);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s", parent);
    int cur = open_beneath(u->rootfd, "", O_PATH | O_DIRECTORY);
    if (cur < 0)
        return beneath_fail(u, errno);
    for (char *s = p;;) {
        char *slash = strchr(s, '/');
        if (slash)
            *slash = '\0';
        int next = open_beneath(u->rootfd, p, O_PATH | O_DIRECTORY);
        int made = 0;
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(cur, s, 0755) == 0)
                made = 1;
            else if (errno != EEXIST) {
                close(cur);
                return io_fail(u, "mkdir");
            }
            if (made) /* not when s is a dangling link: never chmod through one */
                (void)fchmodat(cur, s, 0755, 0);
            next = open_beneath(u->rootfd, p, O_PATH | O_DIRECTORY);
        }
        int err = errno;
        close(cur);
        if (next < 0 && err == ENOENT)
            return bad(u, "goes through a symbolic link to nothing");
        if (next < 0)
            return beneath_fail(u, err);
        cur = next;
        if (!slash)
            break;
        *slash = '/';
        s = slash + 1;
    }
    *out = cur;
    return 0;
}

/* What the sandbox may have of an entry's mode: no setuid/setgid; the owner
 * keeps rwx on directories. */
static mode_t mode_of(struct archive_entry *e, int dir)
{
    mode_t m = archive_entry_perm(e) & 07777 & ~(mode_t)(S_ISUID | S_ISGID);
    return dir ? m | S_IRWXU : m;
}

/* Make room for a new entry name in pfd: 1 when an existing directory is to
 * be kept (keep_dir), else 0 once nothing is there. */
static int make_room(unpack *u, int pfd, const char *name, int keep_dir)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : io_fail(u, "stat");
    if (keep_dir && S_ISDIR(st.st_mode))
        return 1;
    if (sbx_image_rm_at(pfd, name) < 0)
        return io_fail(u, "remove what a lower layer put there");
    return 0;
}

static int write_file(unpack *u, struct archive *a, struct archive_entry *e, int pfd,
                      const char *name)
{
    int rc = make_room(u, pfd, name, 0);
    if (rc < 0)
        return rc;
    int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_fail(u, "create");
    const void *blk;
    size_t sz;
    la_int64_t off;
    int r;
    while ((r = archive_read_data_block(a, &blk, &sz, &off)) == ARCHIVE_OK) {
        const char *p = blk;
        while (sz > 0) {
            ssize_t w = pwrite(fd, p, sz, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = io_fail(u, "write");
                close(fd);
                return rc;
            }
            p += w;
            sz -= (size_t)w;
            off += w;
        }
    }
    if (r != ARCHIVE_EOF) {
        close(fd);
        return bad(u, "cannot be read (the layer is truncated or corrupt)");
    }
    struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    if (ftruncate(fd, archive_entry_size(e)) < 0 || fchmod(fd, mode_of(e, 0)) < 0 ||
        futimens(fd, ts) < 0) {
        rc = io_fail(u, "finish");
        close(fd);
        return rc;
    }
    return close(fd) < 0 ? io_fail(u, "close") : 0;
}

static int write_hardlink(unpack *u, const char *target, int pfd, const char *name)
{
    char t[PATH_MAX];
    const char *why;
    if (path_norm(t, sizeof(t), target, &why) < 0 || !t[0])
        return bad(u, "is a hardlink whose target is outside the image");
    char *slash = strrchr(t, '/');
    const char *tname = slash ? slash + 1 : t;
    if (slash)
        *slash = '\0';
    int tfd = open_beneath(u->rootfd, slash ? t : "", O_PATH | O_DIRECTORY);
    if (tfd < 0)
        return errno == ENOENT ? bad(u, "is a hardlink to a file the layer has not written")
                               : beneath_fail(u, errno);
    struct stat st;
    int rc = 0;
    if (fstatat(tfd, tname, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
        rc = bad(u, "is a hardlink to a file the layer has not written");
    if (rc == 0 && (rc = make_room(u, pfd, name, 0)) == 0 && linkat(tfd, tname, pfd, name, 0) < 0)
        rc = io_fail(u, "link");
    close(tfd);
    return rc;
}

static int write_dir(unpack *u, struct archive_entry *e, int pfd, const char *name)
{
    int rc = make_room(u, pfd, name, 1);
    if (rc < 0)
        return rc;
    if (rc == 0 && mkdirat(pfd, name, 0700) < 0)
        return io_fail(u, "mkdir");
    return fchmodat(pfd, name, mode_of(e, 1), 0) < 0 ? io_fail(u, "chmod") : 0;
}

static int write_symlink(unpack *u, struct archive_entry *e, int pfd, const char *name)
{
    const char *target = archive_entry_symlink(e);
    if (!target || !target[0])
        return bad(u, "is a symbolic link without a target");
    int rc = make_room(u, pfd, name, 0);
    if (rc < 0)
        return rc;
    if (symlinkat(target, pfd, name) < 0)
        return io_fail(u, "symlink");
    struct timespec ts[2] = {{archive_entry_mtime(e), 0}, {archive_entry_mtime(e), 0}};
    (void)utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
}

/* An opaque directory: remove from the directory at dfd (path rel) what
 * this layer did not write, looking into what it did. */
static int opaque_clear(unpack *u, int dfd, const char *rel)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_fail(u, "open opaque directory");
    char **names;
    size_t n;
    int rc = dir_names(&names, &n, fd);
    if (rc < 0)
        return io_fail(u, "read opaque directory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char child[PATH_MAX];
        if (snprintf(child, sizeof(child), "%s%s%s", rel, rel[0] ? "/" : "", names[i]) >=
            (int)sizeof(child))
            continue;
        if (!pathset_has(&u->written, child)) {
            if (sbx_image_rm_at(dfd, names[i]) < 0)
                rc = io_fail(u, "remove under an opaque directory");
            continue;
        }
        int sub = openat(dfd, names[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) {
            rc = opaque_clear(u, sub, child);
            close(sub);
        }
    }
    names_free(names, n);
    return rc;
}

static int entry_apply(unpack *u, struct archive *a, struct archive_entry *e)
{
    const char *raw = archive_entry_pathname(e);
    char path[PATH_MAX];
    const char *why = NULL;
    snprintf(u->entry, sizeof(u->entry), "%s", raw ? raw : "?");
    if (!raw || path_norm(path, sizeof(path), raw, &why) < 0)
        return bad(u, why ? why : "has no path");
    snprintf(u->entry, sizeof(u->entry), "%s", path);
    if (!path[0])
        return 0; /* the root itself: its mode is the cache's */
    char *slash = strrchr(path, '/');
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%.*s", slash ? (int)(slash - path) : 0, path);
    const char *name = slash ? slash + 1 : path;
    int pfd = -1, rc;
    if ((rc = parent_open(&pfd, u, parent)) < 0)
        return rc;
    mode_t type = archive_entry_filetype(e);
    const char *hard = archive_entry_hardlink(e);
    if (strcmp(name, ".wh..wh..opq") == 0) {
        rc = opaque_clear(u, pfd, parent);
        close(pfd);
        return rc;
    }
    if (strncmp(name, ".wh.", 4) == 0) {
        const char *victim = name + 4;
        if (!victim[0] || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
            rc = bad(u, "is a whiteout naming nothing");
        else if (sbx_image_rm_at(pfd, victim) < 0)
            rc = io_fail(u, "whiteout");
        close(pfd);
        return rc;
    }
    if (hard)
        rc = write_hardlink(u, hard, pfd, name);
    else if (type == AE_IFREG)
        rc = write_file(u, a, e, pfd, name);
    else if (type == AE_IFDIR)
        rc = write_dir(u, e, pfd, name);
    else if (type == AE_IFLNK)
        rc = write_symlink(u, e, pfd, name);
    else if (type == AE_IFIFO)
        rc = make_room(u, pfd, name, 0)
                 ?: mkfifoat(pfd, name, mode_of(e, 0)) < 0 ? io_fail(u, "mkfifo")
                                                           : 0;
    else
        rc = 1; /* device nodes and sockets: skipped */
    close(pfd);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return 0;
    /* the path and its ancestors (made implicitly or not) are this layer's */
    for (char *sl = path;; sl++) {
        sl = strchr(sl, '/');
        size_t l = sl ? (size_t)(sl - path) : strlen(path);
        char *copy = strndup(path, l);
        if (!copy || pathset_put(&u->written, copy) < 0)
            return FARM_ENOMEM;
        if (!sl)
            return 0;
    }
}

int sbx_image_layer_apply(int rootfd, int blobfd, const char *hex, const char *image)
{
    reader *r = calloc(1, sizeof(*r));
    if (!r || !(r->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
        if (r)
            EVP_MD_CTX_free(r->md);
        free(r);
        farm_error_set("image %s: out of memory", image);
        return FARM_ENOMEM;
    }
    r->fd = blobfd;
    unpack u = {.rootfd = rootfd, .image = image, .layer = hex};
    int rc = 0;
    struct archive *a = reader_open(r);
    if (!a) {
        rc = FARM_EINVALID;
    } else {
        struct archive_entry *e;
        int h;
        while ((h = archive_read_next_header(a, &e)) == ARCHIVE_OK || h == ARCHIVE_WARN)
            if ((rc = entry_apply(&u, a, e)) < 0)
                break;
        if (rc == 0 && h != ARCHIVE_EOF) {
            farm_error_set("image %s: layer sha256:%.12s is not a readable tar: %s", image, hex,
                           archive_error_string(a) ? archive_error_string(a) : "corrupt");
            rc = FARM_EINVALID;
        }
        archive_read_free(a);
    }
    /* a wrong digest explains a corrupt layer better than what tar made of it */
    if (!reader_finish(r, hex) && (rc == 0 || rc == FARM_EINVALID)) {
        farm_error_set("image %s: layer sha256:%s does not match its digest (the blob is "
                       "corrupt or was changed); the image is refused",
                       image, hex);
        rc = FARM_EINVALID;
    }
    pathset_free(&u.written);
    EVP_MD_CTX_free(r->md);
    free(r);
    return rc;
}

/* ---- oci-archive: a tar of a layout --------------------------------------------- */

static int archive_fail(const char *file, const char *image, struct archive *a)
{
    farm_error_set("image %s: %s is not a readable OCI archive: %s", image, file,
                   a && archive_error_string(a) ? archive_error_string(a) : "corrupt");
    return FARM_EINVALID;
}

/* Which layout file an archive entry is: 1 for index.json and oci-layout, 2
 * for a blob, 0 for anything else (ignored). */
static int layout_member(const char *p)
{
    if (strcmp(p, "index.json") == 0 || strcmp(p, "oci-layout") == 0)
        return 1;
    return strncmp(p, "blobs/sha256/", 13) == 0 && sbx_image_hex_ok(p + 13) ? 2 : 0;
}

static int copy_member(struct archive *a, int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? FARM_EEXISTS : FARM_EIO;
    char buf[64 * 1024];
    la_ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = archive_read_data(a, buf, sizeof(buf))) > 0)
        for (la_ssize_t o = 0; o < n;) {
            ssize_t w = write(fd, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = FARM_EIO;
                break;
            }
            o += w;
        }
    if (rc == 0 && n < 0)
        rc = FARM_EINVALID;
    if (close(fd) < 0 && rc == 0)
        rc = FARM_EIO;
    return rc;
}

int sbx_image_archive_extract(int layoutfd, const char *file, const char *image)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        farm_error_set("image %s: cannot open %s: %s", image, file, strerror(errno));
        return errno == ENOENT ? FARM_ENOTFOUND : FARM_EIO;
    }
    reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return FARM_ENOMEM;
    }
    r->fd = fd;
    int rc = 0, blobs = -1;
    struct archive *a = reader_open(r);
    if (!a)
        rc = archive_fail(file, image, NULL);
    if (rc == 0 && (mkdirat(layoutfd, "blobs", 0700) < 0 ||
                    (blobs = openat(layoutfd, "blobs", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
                    mkdirat(blobs, "sha256", 0700) < 0)) {
        farm_error_set("image %s: cannot make a layout directory: %s", image, strerror(errno));
        rc = FARM_EIO;
    }
    int sha = rc == 0 ? openat(blobs, "sha256", O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    struct archive_entry *e;
    int h = ARCHIVE_EOF;
    while (rc == 0 && ((h = archive_read_next_header(a, &e)) == ARCHIVE_OK || h == ARCHIVE_WARN)) {
        char p[PATH_MAX];
        const char *why;
        const char *raw = archive_entry_pathname(e);
        if (!raw || path_norm(p, sizeof(p), raw, &why) < 0 ||
            archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
            continue;
        int which = layout_member(p);
        if (!which)
            continue;
        rc = copy_member(a, which == 1 ? layoutfd : sha, which == 1 ? p : p + 13);
        if (rc == FARM_EEXISTS)
            farm_error_set("image %s: %s holds %s twice", image, file, p);
        else if (rc == FARM_EINVALID)
            rc = archive_fail(file, image, a);
        else if (rc < 0)
            farm_error_set("image %s: cannot write %s from %s: %s", image, p, file,
                           strerror(errno));
    }
    if (rc == 0 && h != ARCHIVE_EOF)
        rc = archive_fail(file, image, a);
    if (a)
        archive_read_free(a);
    if (sha >= 0)
        close(sha);
    if (blobs >= 0)
        close(blobs);
    close(fd);
    free(r);
    return rc;
}

int sbx_image_archive_index(char **out, const char *file, const char *image)
{
    *out = NULL;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        farm_error_set("image %s: cannot open %s: %s", image, file, strerror(errno));
        return errno == ENOENT ? FARM_ENOTFOUND : FARM_EIO;
    }
    reader *r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return FARM_ENOMEM;
    }
    r->fd = fd;
    struct archive *a = reader_open(r);
    int rc = a ? FARM_ENOTFOUND : archive_fail(file, image, NULL);
    struct archive_entry *e;
    int h;
    while (rc == FARM_ENOTFOUND &&
           ((h = archive_read_next_header(a, &e)) == ARCHIVE_OK || h == ARCHIVE_WARN)) {
        char p[PATH_MAX];
        const char *why;
        const char *raw = archive_entry_pathname(e);
        if (!raw || path_norm(p, sizeof(p), raw, &why) < 0 || strcmp(p, "index.json") != 0)
            continue;
        la_int64_t size = archive_entry_size(e);
        if (size < 0 || size > SBX_IMAGE_JSON_MAX) {
            farm_error_set("image %s: index.json in %s is over %d bytes", image, file,
                           SBX_IMAGE_JSON_MAX);
            rc = FARM_ETOOBIG;
            break;
        }
        char *s = malloc((size_t)size + 1);
        la_ssize_t n = s ? archive_read_data(a, s, (size_t)size) : -1;
        if (!s || n != size) {
            free(s);
            rc = archive_fail(file, image, a);
            break;
        }
        s[size] = '\0';
        *out = s;
        rc = 0;
    }
    if (rc == FARM_ENOTFOUND)
        farm_error_set("image %s: %s holds no index.json (is it an OCI archive? skopeo copy "
                       "... oci-archive:FILE makes one)",
                       image, file);
    if (a)
        archive_read_free(a);
    close(fd);
    free(r);
    return rc;
}
