/*
 * image_internal.h - what image.c (references, layouts, the cache) and
 * image_unpack.c (applying layers, reading archives) share. Names carry the
 * sbx_image_ prefix; nothing outside sandbox/image*.c includes this.
 */
#ifndef FARM_SANDBOX_IMAGE_INTERNAL_H
#define FARM_SANDBOX_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Caps on what an image may hold. */
#define SBX_IMAGE_JSON_MAX   (4 * 1024 * 1024) /* index.json, a manifest, a config */
#define SBX_IMAGE_LAYERS_MAX 256

/* 1 when s is 64 lowercase hex digits. */
int sbx_image_hex_ok(const char *s);

/* Apply one layer (a tar, gzip- or zstd-compressed or not, read from blobfd
 * from its start) onto the tree at rootfd, hashing every byte read: the
 * sha256 must be hex. image and layer name them in errors. FARM_EINVALID for
 * a bad layer (its digest, a path with ".." or an absolute one, a link or
 * directory leading out of the root), FARM_EIO for a disk error. */
int sbx_image_layer_apply(int rootfd, int blobfd, const char *hex, const char *image);

/* Remove name under dirfd, recursively for a directory, never following a
 * symbolic link. 0 when it is gone (or was never there). */
int sbx_image_rm_at(int dirfd, const char *name);

/* Bytes on disk (blocks) of the tree at dirfd. */
uint64_t sbx_image_tree_size(int dirfd);

/* An oci-archive: copy its layout (index.json, oci-layout, blobs/sha256/<hex>;
 * anything else is ignored) into the empty directory layoutfd. */
int sbx_image_archive_extract(int layoutfd, const char *file, const char *image);

/* An oci-archive's index.json, read without extracting anything: *out a heap
 * string (NUL-terminated) the caller frees. */
int sbx_image_archive_index(char **out, const char *file, const char *image);

#endif
