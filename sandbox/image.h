/*
 * image.h - a repository's root filesystem: an OCI image unpacked once.
 *
 * repos[].image names what the sandbox sees as "/": an OCI image layout on
 * disk ("oci:DIR[:TAG]", what `skopeo copy docker://node:22 oci:DIR:22`
 * makes), an OCI archive ("oci-archive:FILE[:TAG]", a tar of such a layout),
 * or a plain directory ("rootfs:DIR", used in place). An image is unpacked
 * once into a content-addressed cache directory the caller passes in (the
 * farm uses <data_dir>/images): every blob's sha256 checked against what
 * names it, layers applied in order with their whiteouts, entries owned by
 * the unpacking user (never the layer's uids), setuid and setgid bits
 * dropped, device nodes skipped, nothing written outside the cache. An
 * unpack goes to a temporary directory renamed into place only when
 * complete; a bad image (a missing blob, a wrong digest, an entry with ".."
 * or an absolute path, a link leading out of the root) is refused with an
 * error naming the image and the problem, and leaves nothing behind.
 *
 * The sandbox then binds the root read-only (sandbox_opts.root_dir). This
 * module knows nothing of the farm's configuration: farm/run resolves a
 * run's image, cli/ lists and prunes the cache.
 */
#ifndef FARM_SANDBOX_IMAGE_H
#define FARM_SANDBOX_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* "sha256:" and 64 hex digits, NUL-terminated. */
#define SANDBOX_IMAGE_DIGEST_MAX 72

typedef enum {
    SANDBOX_IMAGE_OCI = 1,     /* oci:DIR[:TAG] */
    SANDBOX_IMAGE_OCI_ARCHIVE, /* oci-archive:FILE[:TAG] */
    SANDBOX_IMAGE_ROOTFS,      /* rootfs:DIR */
} sandbox_image_kind;

/* Check the form of an image reference (not whether it exists). 0, or
 * FARM_EINVALID with a message saying the accepted forms. */
int sandbox_image_ref_check(const char *ref);

/* The kind of ref, or 0 when it is malformed. */
sandbox_image_kind sandbox_image_ref_kind(const char *ref);

/* The digest ("sha256:<hex>") of the image ref names, read from its index
 * without unpacking anything: the cache key. FARM_EUNSUPPORTED for rootfs:
 * (not cached), FARM_ENOTFOUND / FARM_EINVALID when the layout cannot be
 * read, with the error set. */
int sandbox_image_digest(char out[SANDBOX_IMAGE_DIGEST_MAX], const char *ref);

/* The directory to use as the sandbox's root for ref: for rootfs:DIR, DIR's
 * real path; for an image, its unpacked root under cache_dir, unpacked now
 * when it is not there yet (concurrent callers for the same image wait for
 * one unpack). Marks the image used now. *out is a heap string the caller
 * frees with free(). FARM_EINVALID for a bad image, FARM_ENOTFOUND for a
 * missing one, FARM_EIO for a disk error; the message names the image. */
int sandbox_image_root(char **out, const char *cache_dir, const char *ref);

/* One unpacked image in the cache. */
typedef struct sandbox_image_entry {
    char digest[SANDBOX_IMAGE_DIGEST_MAX];
    char *source;        /* the reference it was unpacked from */
    uint64_t size;       /* bytes on disk of its root */
    int64_t unpacked_at; /* unix seconds */
    int64_t last_used;   /* unix seconds: the last run that resolved it */
} sandbox_image_entry;

/* The images in cache_dir, sorted by digest (none: *out NULL, *n 0, and 0
 * when the directory does not exist). Free with sandbox_image_list_free(). */
int sandbox_image_list(sandbox_image_entry **out, size_t *n, const char *cache_dir);
void sandbox_image_list_free(sandbox_image_entry *v, size_t n);

/* Remove one image ("sha256:<hex>") from the cache: renamed out of sight
 * first, then deleted. FARM_ENOTFOUND when it is not there. */
int sandbox_image_remove(const char *cache_dir, const char *digest);

/* Remove what unpacks and removals that died (their process is gone) left
 * in the cache's temporary directory. */
void sandbox_image_sweep(const char *cache_dir);

#endif
