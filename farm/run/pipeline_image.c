/*
 * pipeline_image.c - a run's root filesystem (repos[].image, docs/environments.md).
 *
 * Before the first command of a run, the repository's image is resolved:
 * unpacked into <data_dir>/images the first time (sandbox/image.h checks
 * every digest and refuses a bad image), found there afterwards. Every
 * sandbox of the run (setup, agent, tests) then gets it as its read-only
 * root. One "image" event says which image, its digest and how long the
 * resolve took. A bad or missing image fails the session with the image's
 * error (a retry would refuse it again); a disk error is tried again.
 */
#include "pipeline_internal.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "sandbox/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_image_cache_dir(char *out, size_t cap, const config *cfg)
{
    char *dd = realpath(cfg->data_dir, NULL);
    if (!dd) {
        farm_error_set("pipeline: data directory %s: %s", cfg->data_dir, strerror(errno));
        return FARM_EIO;
    }
    int n = snprintf(out, cap, "%s/images", dd);
    free(dd);
    if (n < 0 || (size_t)n >= cap) {
        farm_error_set("pipeline: data directory path too long");
        return FARM_ETOOBIG;
    }
    return 0;
}

int pl_image_resolve(pl_run *r)
{
    const char *ref = r->repo->image;
    if (!ref)
        return 0;
    if (!r->sandboxed) {
        log_warn("repos[].image is not used in sandbox mode unsafe-none: the run sees the host",
                 "repo", r->repo->name, "image", ref);
        return 0;
    }
    char cache[PATH_MAX];
    int rc = pl_image_cache_dir(cache, sizeof(cache), r->cfg);
    if (rc < 0)
        return rc;
    int64_t t0 = clock_mono_ms();
    free(r->image_root);
    r->image_root = NULL;
    if ((rc = sandbox_image_root(&r->image_root, cache, ref)) < 0)
        return rc;
    char digest[SANDBOX_IMAGE_DIGEST_MAX] = "";
    if (sandbox_image_ref_kind(ref) != SANDBOX_IMAGE_ROOTFS &&
        sandbox_image_digest(digest, ref) < 0)
        digest[0] = '\0';
    farm_error_clear();
    json_t *body = json_pack("{s:s,s:s,s:I}", "image", ref, "digest", digest, "ms",
                             (json_int_t)(clock_mono_ms() - t0));
    return body ? pl_event(r, "image", body) : 0;
}
