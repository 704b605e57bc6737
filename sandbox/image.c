/*
 * image.c - image references, OCI layouts and the unpacked-image cache.
 *
 * A reference names a layout (oci:DIR[:TAG]), an archive of one
 * (oci-archive:FILE[:TAG], copied out to a temporary layout first) or a
 * plain directory (rootfs:DIR, used as it is). For a layout, index.json
 * picks the image (by its org.opencontainers.image.ref.name annotation when
 * a TAG is given; a multi-platform index is narrowed to linux and this
 * machine's architecture); the digest index.json names is the cache key.
 * The manifest, the config and every layer are checked against their
 * digests and sizes as they are read; the layers are applied in order by
 * image_unpack.c into <cache>/.tmp/<hex>.<pid>.<random>/rootfs, which is
 * renamed to <cache>/sha256-<hex> only when complete, beside image.json
 * (what it came from, how big) and "used" (its mtime: the last run that
 * resolved it). A lock file per digest keeps two unpacks of one image from
 * racing; removal renames an image out of sight before deleting it.
 */
#include "image.h"
#include "image_internal.h"

#include "base/crypto.h"
#include "base/error.h"
#include "base/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG_ANNOTATION "org.opencontainers.image.ref.name"

/* ---- references ------------------------------------------------------------ */

typedef struct ref {
    sandbox_image_kind kind;
    char path[PATH_MAX];
    char tag[256]; /* "" when none was given */
} ref;

static int ref_parse(ref *out, const char *s)
{
    memset(out, 0, sizeof(*out));
    const char *rest = NULL;
    if (s && strncmp(s, "oci:", 4) == 0) {
        out->kind = SANDBOX_IMAGE_OCI;
        rest = s + 4;
    } else if (s && strncmp(s, "oci-archive:", 12) == 0) {
        out->kind = SANDBOX_IMAGE_OCI_ARCHIVE;
        rest = s + 12;
    } else if (s && strncmp(s, "rootfs:", 7) == 0) {
        out->kind = SANDBOX_IMAGE_ROOTFS;
        rest = s + 7;
    }
    if (!rest)
        goto bad;
    /* as skopeo reads it: the path runs to the first ':', the tag is the rest */
    size_t pl = out->kind == SANDBOX_IMAGE_ROOTFS ? strlen(rest) : strcspn(rest, ":");
    if (pl == 0 || pl >= sizeof(out->path) - 64)
        goto bad;
    memcpy(out->path, rest, pl);
    if (rest[pl] == ':') {
        const char *tag = rest + pl + 1;
        if (!tag[0] || strlen(tag) >= sizeof(out->tag))
            goto bad;
        for (const char *p = tag; *p; p++)
            if ((unsigned char)*p < 0x21 || *p == 0x7f)
                goto bad;
        snprintf(out->tag, sizeof(out->tag), "%s", tag);
    }
    return 0;
bad:
    farm_error_set("image '%.200s' is not oci:DIR[:TAG], oci-archive:FILE[:TAG] or rootfs:DIR",
                   s ? s : "");
    out->kind = 0;
    return FARM_EINVALID;
}

int sandbox_image_ref_check(const char *s)
{
    ref r;
    return ref_parse(&r, s);
}

sandbox_image_kind sandbox_image_ref_kind(const char *s)
{
    ref r;
    return ref_parse(&r, s) == 0 ? r.kind : 0;
}

/* ---- layouts --------------------------------------------------------------- */

typedef struct layout {
    int fd;           /* the layout directory */
    const char *name; /* the reference, for errors */
} layout;

/* "sha256:<hex>" -> hex, or NULL. */
static const char *digest_hex(const char *d)
{
    return d && strncmp(d, "sha256:", 7) == 0 && sbx_image_hex_ok(d + 7) ? d + 7 : NULL;
}

/* Open a blob, checking it is a file of the size the descriptor says (size
 * < 0: any). what names it in errors ("manifest", "layer 2"). */
static int blob_open(int *out, const layout *l, const char *digest, json_int_t size,
                     const char *what)
{
    const char *hex = digest_hex(digest);
    if (!hex) {
        farm_error_set("image %s: %s's digest '%.80s' is not sha256:<64 hex digits>", l->name, what,
                       digest ? digest : "");
        return FARM_EINVALID;
    }
    char p[128];
    snprintf(p, sizeof(p), "blobs/sha256/%s", hex);
    int fd = openat(l->fd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        farm_error_set("image %s: %s (blob %s) is missing from the layout; copy the image "
                       "again (skopeo copy ... oci:DIR:TAG)",
                       l->name, what, digest);
        if (fd >= 0)
            close(fd);
        return FARM_EINVALID;
    }
    if (size >= 0 && st.st_size != size) {
        farm_error_set("image %s: %s (blob %s) is %lld bytes where its descriptor says %lld; "
                       "the image is refused",
                       l->name, what, digest, (long long)st.st_size, (long long)size);
        close(fd);
        return FARM_EINVALID;
    }
    *out = fd;
    return 0;
}

/* Read a whole small file from fd (consumed): *out heap, NUL-terminated. */
static int read_small(char **out, size_t *len, int fd)
{
    *out = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > SBX_IMAGE_JSON_MAX) {
        close(fd);
        return FARM_ETOOBIG;
    }
    char *s = malloc((size_t)st.st_size + 1);
    size_t n = 0;
    while (s && n < (size_t)st.st_size) {
        ssize_t r = read(fd, s + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!s || n != (size_t)st.st_size) {
        free(s);
        return s ? FARM_EIO : FARM_ENOMEM;
    }
    s[n] = '\0';
    *out = s;
    *len = n;
    return 0;
}

/* A JSON blob, its sha256 checked against digest. */
static int blob_json(json_t **out, const layout *l, const char *digest, json_int_t size,
                     const char *what)
{
    *out = NULL;
    int fd, rc;
    if ((rc = blob_open(&fd, l, digest, size, what)) < 0)
        return rc;
    char *s;
    size_t n;
    if ((rc = read_small(&s, &n, fd)) < 0) {
        farm_error_set("image %s: cannot read %s (blob %s): over %d bytes or unreadable", l->name,
                       what, digest, SBX_IMAGE_JSON_MAX);
        return rc;
    }
    unsigned char d[32];
    char hex[65];
    crypto_sha256(d, s, n);
    crypto_hex(hex, d, 32);
    if (strcmp(hex, digest + 7) != 0) {
        farm_error_set("image %s: %s (blob %s) does not match its digest (sha256 %s); the "
                       "image is refused",
                       l->name, what, digest, hex);
        free(s);
        return FARM_EINVALID;
    }
    rc = json_parse_bounded(out, s, n, SBX_IMAGE_JSON_MAX, 32);
    free(s);
    if (rc < 0 || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        farm_error_set("image %s: %s (blob %s) is not a JSON object", l->name, what, digest);
        return FARM_EINVALID;
    }
    return 0;
}

/* index.json's text for a reference: from the layout directory, or from
 * inside the archive. */
static int index_text(char **out, const ref *r, const char *name, int layoutfd)
{
    if (layoutfd < 0 && r->kind == SANDBOX_IMAGE_OCI_ARCHIVE)
        return sbx_image_archive_index(out, r->path, name);
    int fd = layoutfd >= 0 ? openat(layoutfd, "index.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (layoutfd < 0) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/index.json", r->path);
        fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        farm_error_set("image %s: %s/index.json cannot be read: %s (make the layout with skopeo "
                       "copy docker://IMAGE oci:DIR:TAG)",
                       name, r->path, strerror(errno));
        return errno == ENOENT ? FARM_ENOTFOUND : FARM_EIO;
    }
    size_t n;
    int rc = read_small(out, &n, fd);
    if (rc < 0)
        farm_error_set("image %s: %s/index.json is over %d bytes or unreadable", name, r->path,
                       SBX_IMAGE_JSON_MAX);
    return rc;
}

static const char *host_arch(void)
{
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#elif defined(__i386__)
    return "386";
#elif defined(__arm__)
    return "arm";
#elif defined(__powerpc64__)
    return "ppc64le";
#elif defined(__s390x__)
    return "s390x";
#elif defined(__riscv)
    return "riscv64";
#else
    return "unknown";
#endif
}

/* The descriptor an index picks: by tag; else the only one, or "latest";
 * in a nested (multi-platform) index (tag NULL), the one for linux on this
 * machine. Borrowed from index. */
static int index_pick(json_t **out, json_t *index, const char *tag, const char *name)
{
    *out = NULL;
    json_t *ms = json_object_get(index, "manifests");
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        farm_error_set("image %s: its index lists no images", name);
        return FARM_EINVALID;
    }
    size_t i;
    json_t *d, *latest = NULL;
    json_array_foreach(ms, i, d)
    {
        const char *t =
            json_string_value(json_object_get(json_object_get(d, "annotations"), TAG_ANNOTATION));
        if (!tag) {
            json_t *pf = json_object_get(d, "platform");
            const char *os = json_string_value(json_object_get(pf, "os"));
            const char *arch = json_string_value(json_object_get(pf, "architecture"));
            if (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, host_arch()) == 0) {
                *out = d;
                return 0;
            }
            continue;
        }
        if (tag[0] && t && strcmp(t, tag) == 0) {
            *out = d;
            return 0;
        }
        if (t && strcmp(t, "latest") == 0)
            latest = d;
    }
    if (!tag) {
        farm_error_set("image %s: its index has no image for linux/%s", name, host_arch());
        return FARM_ENOTFOUND;
    }
    if (!tag[0] && json_array_size(ms) == 1)
        *out = json_array_get(ms, 0);
    else if (!tag[0] && latest)
        *out = latest;
    if (*out)
        return 0;
    if (tag[0])
        farm_error_set("image %s: its index has no image tagged '%s'", name, tag);
    else
        farm_error_set("image %s: its index holds %zu images; name one with :TAG", name,
                       json_array_size(ms));
    return FARM_ENOTFOUND;
}

/* The digest the reference's index picks (the cache key). */
static int ref_digest(char out[SANDBOX_IMAGE_DIGEST_MAX], const ref *r, const char *name,
                      int layoutfd)
{
    char *text;
    json_t *index = NULL, *d;
    int rc = index_text(&text, r, name, layoutfd);
    if (rc < 0)
        return rc;
    if (json_parse_bounded(&index, text, strlen(text), SBX_IMAGE_JSON_MAX, 32) < 0 ||
        !json_is_object(index)) {
        farm_error_set("image %s: index.json is not a JSON object", name);
        rc = FARM_EINVALID;
    }
    free(text);
    if (rc == 0 && (rc = index_pick(&d, index, r->tag, name)) == 0) {
        const char *dg = json_string_value(json_object_get(d, "digest"));
        if (!digest_hex(dg)) {
            farm_error_set("image %s: its index names digest '%.80s', not sha256:<hex>", name,
                           dg ? dg : "");
            rc = FARM_EINVALID;
        } else {
            snprintf(out, SANDBOX_IMAGE_DIGEST_MAX, "%s", dg);
        }
    }
    json_decref(index);
    return rc;
}

int sandbox_image_digest(char out[SANDBOX_IMAGE_DIGEST_MAX], const char *s)
{
    ref r;
    int rc = ref_parse(&r, s);
    if (rc < 0)
        return rc;
    if (r.kind == SANDBOX_IMAGE_ROOTFS) {
        farm_error_set("image %s: a plain directory has no digest", s);
        return FARM_EUNSUPPORTED;
    }
    return ref_digest(out, &r, s, -1);
}

/* ---- unpacking ---------------------------------------------------------- */

static int media_is(const char *mt, const char *a, const char *b)
{
    return mt && (strcmp(mt, a) == 0 || strcmp(mt, b) == 0);
}

/* The image manifest a descriptor leads to (through one multi-platform
 * index at most). *out is a new reference. */
static int manifest_load(json_t **out, const layout *l, json_t *desc)
{
    const char *mt = json_string_value(json_object_get(desc, "mediaType"));
    const char *dg = json_string_value(json_object_get(desc, "digest"));
    json_t *size = json_object_get(desc, "size");
    json_t *m;
    int rc =
        blob_json(&m, l, dg, json_is_integer(size) ? json_integer_value(size) : -1, "the manifest");
    if (rc < 0)
        return rc;
    if (!mt)
        mt = json_string_value(json_object_get(m, "mediaType"));
    if (media_is(mt, "application/vnd.oci.image.index.v1+json",
                 "application/vnd.docker.distribution.manifest.list.v2+json") ||
        (!mt && json_object_get(m, "manifests"))) {
        json_t *pick;
        if ((rc = index_pick(&pick, m, NULL, l->name)) == 0) {
            const char *pm = json_string_value(json_object_get(pick, "mediaType"));
            if (media_is(pm, "application/vnd.oci.image.index.v1+json",
                         "application/vnd.docker.distribution.manifest.list.v2+json")) {
                farm_error_set("image %s: an index inside an index inside an index", l->name);
                rc = FARM_EINVALID;
            } else {
                rc = manifest_load(out, l, pick);
            }
        }
        json_decref(m);
        return rc;
    }
    if (!json_is_array(json_object_get(m, "layers"))) {
        farm_error_set("image %s: the manifest %s lists no layers", l->name, dg);
        json_decref(m);
        return FARM_EINVALID;
    }
    *out = m;
    return 0;
}

static int layer_media_ok(const char *mt)
{
    static const char *const ok[] = {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    };
    if (!mt)
        return 1; /* let the content say */
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(mt, ok[i]) == 0)
            return 1;
    return 0;
}

/* Verify the config and apply every layer onto rootfd. */
static int layers_apply(int rootfd, const layout *l, json_t *m, size_t *nlayers)
{
    json_t *cfg = json_object_get(m, "config");
    json_t *csize = json_object_get(cfg, "size");
    json_t *c;
    int rc = blob_json(&c, l, json_string_value(json_object_get(cfg, "digest")),
                       json_is_integer(csize) ? json_integer_value(csize) : -1, "the config");
    if (rc < 0)
        return rc;
    json_decref(c);
    json_t *layers = json_object_get(m, "layers");
    if (json_array_size(layers) > SBX_IMAGE_LAYERS_MAX) {
        farm_error_set("image %s: %zu layers, over the cap of %d", l->name, json_array_size(layers),
                       SBX_IMAGE_LAYERS_MAX);
        return FARM_ETOOBIG;
    }
    size_t i;
    json_t *d;
    json_array_foreach(layers, i, d)
    {
        char what[32];
        snprintf(what, sizeof(what), "layer %zu", i + 1);
        const char *mt = json_string_value(json_object_get(d, "mediaType"));
        if (!layer_media_ok(mt)) {
            farm_error_set("image %s: %s has media type %.100s, which the farm cannot unpack "
                           "(tar, tar+gzip or tar+zstd)",
                           l->name, what, mt);
            return FARM_EINVALID;
        }
        const char *dg = json_string_value(json_object_get(d, "digest"));
        json_t *size = json_object_get(d, "size");
        int fd;
        if ((rc = blob_open(&fd, l, dg, json_is_integer(size) ? json_integer_value(size) : -1,
                            what)) < 0)
            return rc;
        rc = sbx_image_layer_apply(rootfd, fd, dg + 7, l->name);
        close(fd);
        if (rc < 0)
            return rc;
    }
    *nlayers = json_array_size(layers);
    return 0;
}

static int write_text_at(int dirfd, const char *name, const char *text)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return FARM_EIO;
    size_t n = strlen(text), o = 0;
    while (o < n) {
        ssize_t w = write(fd, text + o, n - o);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        o += (size_t)w;
    }
    return close(fd) == 0 && o == n ? 0 : FARM_EIO;
}

/* Build the image in the empty directory tmpfd: rootfs/, image.json, used. */
static int unpack_into(int tmpfd, const layout *l, const ref *r, const char *digest)
{
    char picked[SANDBOX_IMAGE_DIGEST_MAX];
    int rc = ref_digest(picked, r, l->name, l->fd);
    if (rc < 0)
        return rc;
    if (strcmp(picked, digest) != 0) {
        farm_error_set("image %s: its index changed while it was read; try again", l->name);
        return FARM_ECONFLICT;
    }
    json_t *desc = json_pack("{s:s}", "digest", digest), *m = NULL;
    rc = desc ? manifest_load(&m, l, desc) : FARM_ENOMEM;
    json_decref(desc);
    if (rc < 0)
        return rc;
    int rootfd = -1;
    size_t nlayers = 0;
    if (mkdirat(tmpfd, "rootfs", 0755) < 0 ||
        (rootfd = openat(tmpfd, "rootfs", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        farm_error_set("image %s: cannot make its root directory: %s", l->name, strerror(errno));
        rc = FARM_EIO;
    }
    if (rc == 0)
        rc = layers_apply(rootfd, l, m, &nlayers);
    json_decref(m);
    uint64_t size = 0;
    if (rc == 0) {
        fchmod(rootfd, 0755);
        size = sbx_image_tree_size(rootfd);
    }
    if (rootfd >= 0)
        close(rootfd);
    if (rc < 0)
        return rc;
    json_t *info = json_pack("{s:s,s:s,s:I,s:I,s:I}", "digest", digest, "source", l->name, "size",
                             (json_int_t)size, "layers", (json_int_t)nlayers, "unpacked_at",
                             (json_int_t)time(NULL));
    char *text = info ? json_dumps(info, JSON_SORT_KEYS) : NULL;
    json_decref(info);
    rc = text ? write_text_at(tmpfd, "image.json", text) : FARM_ENOMEM;
    free(text);
    rc = rc ?: write_text_at(tmpfd, "used", "");
    if (rc < 0)
        farm_error_set("image %s: cannot write image.json: %s", l->name, strerror(errno));
    return rc;
}

static int mkdir_mode(const char *p, mode_t mode)
{
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if ((st.st_mode & 07777) != mode)
        (void)chmod(p, mode);
    return 0;
}

static int cache_dirs(const char *cache, const char *name)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/.tmp", cache);
    if (mkdir_mode(cache, 0711) < 0 || mkdir_mode(p, 0700) < 0) {
        farm_error_set("image %s: cannot make the image cache %s: %s", name, cache,
                       strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

/* A fresh temporary directory name under .tmp (relative to the cache). */
static void tmp_name(char *out, size_t cap, const char *prefix)
{
    char rnd[17];
    if (crypto_random_hex(rnd, 8) < 0)
        snprintf(rnd, sizeof(rnd), "%lx", (unsigned long)time(NULL));
    snprintf(out, cap, ".tmp/%s.%ld.%s", prefix, (long)getpid(), rnd);
}

/* Unpack under the lock: the temporary directory, then the rename. */
static int unpack_locked(const char *cache, const ref *r, const char *name, const char *digest)
{
    const char *hex = digest + 7;
    char tmp[PATH_MAX], path[PATH_MAX * 2], final[PATH_MAX + 80];
    tmp_name(tmp, sizeof(tmp), hex);
    snprintf(path, sizeof(path), "%s/%s", cache, tmp);
    snprintf(final, sizeof(final), "%s/sha256-%s", cache, hex);
    if (mkdir(path, 0700) < 0) {
        farm_error_set("image %s: cannot make %s: %s", name, path, strerror(errno));
        return FARM_EIO;
    }
    int tmpfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), lfd = -1, rc = 0;
    if (tmpfd < 0)
        rc = FARM_EIO;
    if (rc == 0 && r->kind == SANDBOX_IMAGE_OCI_ARCHIVE) {
        if (mkdirat(tmpfd, "layout", 0700) < 0 ||
            (lfd = openat(tmpfd, "layout", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            rc = FARM_EIO;
        rc = rc ?: sbx_image_archive_extract(lfd, r->path, name);
    } else if (rc == 0 && (lfd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        farm_error_set("image %s: %s is not a readable directory: %s", name, r->path,
                       strerror(errno));
        rc = errno == ENOENT ? FARM_ENOTFOUND : FARM_EIO;
    }
    layout l = {lfd, name};
    rc = rc ?: unpack_into(tmpfd, &l, r, digest);
    if (lfd >= 0)
        close(lfd);
    if (rc == 0 && r->kind == SANDBOX_IMAGE_OCI_ARCHIVE && sbx_image_rm_at(tmpfd, "layout") < 0)
        rc = FARM_EIO;
    if (rc == 0 && (fchmod(tmpfd, 0711) < 0 || rename(path, final) < 0)) {
        farm_error_set("image %s: cannot move the unpacked image into %s: %s", name, final,
                       strerror(errno));
        rc = FARM_EIO;
    }
    if (tmpfd >= 0)
        close(tmpfd);
    if (rc < 0) {
        int cfd = open(cache, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (cfd >= 0) {
            (void)sbx_image_rm_at(cfd, tmp);
            close(cfd);
        }
    }
    return rc;
}

/* The unpacked root of digest, when it is there: its path in out. */
static int cached(char *out, size_t cap, const char *cache, const char *digest)
{
    struct stat st;
    snprintf(out, cap, "%s/sha256-%s/rootfs", cache, digest + 7);
    return stat(out, &st) == 0 && S_ISDIR(st.st_mode);
}

static void mark_used(const char *cache, const char *digest)
{
    char p[PATH_MAX + 96];
    snprintf(p, sizeof(p), "%s/sha256-%s/used", cache, digest + 7);
    int fd = open(p, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) {
        futimens(fd, NULL);
        close(fd);
    }
}

int sandbox_image_root(char **out, const char *cache, const char *s)
{
    *out = NULL;
    ref r;
    int rc = ref_parse(&r, s);
    if (rc < 0)
        return rc;
    if (r.kind == SANDBOX_IMAGE_ROOTFS) {
        char *real = realpath(r.path, NULL);
        struct stat st;
        if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
            farm_error_set("image %s: %s is not a directory", s, r.path);
            free(real);
            return FARM_ENOTFOUND;
        }
        *out = real;
        return 0;
    }
    char digest[SANDBOX_IMAGE_DIGEST_MAX], root[PATH_MAX + 96];
    if ((rc = ref_digest(digest, &r, s, -1)) < 0)
        return rc;
    if (!cached(root, sizeof(root), cache, digest)) {
        if ((rc = cache_dirs(cache, s)) < 0)
            return rc;
        char lock[PATH_MAX + 96];
        snprintf(lock, sizeof(lock), "%s/.tmp/%s.lock", cache, digest + 7);
        int lfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
            farm_error_set("image %s: cannot lock %s: %s", s, lock, strerror(errno));
            if (lfd >= 0)
                close(lfd);
            return FARM_EIO;
        }
        if (!cached(root, sizeof(root), cache, digest))
            rc = unpack_locked(cache, &r, s, digest);
        close(lfd);
        if (rc < 0)
            return rc;
    }
    mark_used(cache, digest);
    if (!(*out = strdup(root))) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

/* ---- the cache: list and remove ------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const sandbox_image_entry *)a)->digest,
                  ((const sandbox_image_entry *)b)->digest);
}

static void entry_load(sandbox_image_entry *e, int dfd, const char *hex)
{
    snprintf(e->digest, sizeof(e->digest), "sha256:%s", hex);
    char p[128];
    snprintf(p, sizeof(p), "sha256-%s/image.json", hex);
    int fd = openat(dfd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    char *text = NULL;
    size_t n;
    json_t *info = NULL;
    if (fd >= 0 && read_small(&text, &n, fd) == 0 &&
        json_parse_bounded(&info, text, n, SBX_IMAGE_JSON_MAX, 8) == 0) {
        e->source = json_strdup_path(info, "source");
        json_get_int64(&e->unpacked_at, info, "unpacked_at");
        int64_t size = 0;
        if (json_get_int64(&size, info, "size") == 0 && size > 0)
            e->size = (uint64_t)size;
    }
    farm_error_clear();
    json_decref(info);
    free(text);
    struct stat st;
    snprintf(p, sizeof(p), "sha256-%s/used", hex);
    if (fstatat(dfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0)
        e->last_used = st.st_mtime;
}

int sandbox_image_list(sandbox_image_entry **out, size_t *n, const char *cache)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(cache);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        farm_error_set("image cache %s cannot be read: %s", cache, strerror(errno));
        return FARM_EIO;
    }
    sandbox_image_entry *v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "sha256-", 7) != 0 || !sbx_image_hex_ok(de->d_name + 7))
            continue;
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 8;
            sandbox_image_entry *nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                rc = FARM_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        memset(&v[len], 0, sizeof(v[len]));
        entry_load(&v[len++], dirfd(d), de->d_name + 7);
    }
    closedir(d);
    if (rc < 0) {
        sandbox_image_list_free(v, len);
        farm_error_set("out of memory");
        return rc;
    }
    if (len)
        qsort(v, len, sizeof(*v), entry_cmp);
    *out = v;
    *n = len;
    return 0;
}

void sandbox_image_list_free(sandbox_image_entry *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].source);
    free(v);
}

/* Remove what unpacks and removals that died left under .tmp. */
static void tmp_sweep(int cfd)
{
    int fd = openat(cfd, ".tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        /* <hex>.<pid>.<random> and trash.<pid>.<random>; never "." or ".." */
        const char *dot = strchr(de->d_name, '.');
        if (de->d_name[0] == '.' || !dot || strstr(de->d_name, ".lock"))
            continue;
        long pid = strtol(dot + 1, NULL, 10);
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue; /* still being written by a live process */
        (void)sbx_image_rm_at(dirfd(d), de->d_name);
    }
    closedir(d);
}

int sandbox_image_remove(const char *cache, const char *digest)
{
    const char *hex = digest_hex(digest);
    if (!hex) {
        farm_error_set("'%.80s' is not an image digest (sha256:<64 hex digits>)",
                       digest ? digest : "");
        return FARM_EINVALID;
    }
    int cfd = open(cache, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cfd < 0) {
        farm_error_set("image %s is not in the cache %s", digest, cache);
        return FARM_ENOTFOUND;
    }
    char name[96], trash[PATH_MAX];
    snprintf(name, sizeof(name), "sha256-%s", hex);
    tmp_name(trash, sizeof(trash), "trash");
    int rc = 0;
    struct stat st;
    if (fstatat(cfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        farm_error_set("image %s is not in the cache %s", digest, cache);
        rc = FARM_ENOTFOUND;
    } else if ((mkdirat(cfd, ".tmp", 0700) < 0 && errno != EEXIST) ||
               renameat(cfd, name, cfd, trash) < 0 || sbx_image_rm_at(cfd, trash) < 0) {
        farm_error_set("image %s cannot be removed from %s: %s", digest, cache, strerror(errno));
        rc = FARM_EIO;
    }
    close(cfd);
    return rc;
}

void sandbox_image_sweep(const char *cache)
{
    int cfd = open(cache, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cfd >= 0) {
        tmp_sweep(cfd);
        close(cfd);
    }
}
