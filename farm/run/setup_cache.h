/*
 * setup_cache.h - what a repository's setup command leaves behind, kept
 * between runs (docs/environments.md).
 *
 * After setup has run on a fresh worktree, the files it added (untracked
 * and ignored: node_modules/, .venv/, build output) and what it left in
 * the run's HOME are copied into <data_dir>/setup-cache/<key>/, where key
 * is a SHA-256 of the environment's id (the image, or "host"), the setup
 * command and the contents of the files named by repos[].setup_cache_key.
 * The next run with the same key copies them back instead of running
 * setup. Copies are reflinks (FICLONE) where the filesystem allows, else
 * copy_file_range(), else read and write.
 *
 * An entry is built under a temporary name and renamed into place with its
 * meta.json already written, so a half-written entry is never used; it
 * expires after the repository's setup_cache_ttl_s and is removed by
 * setup_cache_prune(). Paths are walked with *at() calls and O_NOFOLLOW:
 * symbolic links are copied as links, never followed.
 *
 * Used by the pipeline's setup step (pipeline_steps.c) and warm slots
 * (pipeline_warm.c); may call base and vcs/git.
 */
#ifndef FARM_FARM_RUN_SETUP_CACHE_H
#define FARM_FARM_RUN_SETUP_CACHE_H

#include "farm/config/config.h"

#include <stddef.h>
#include <stdint.h>

#define SETUP_CACHE_KEY_HEX 65 /* 64 hex digits and the NUL */

/* The paths of a worktree before setup ran (relative, sorted), so that
 * setup_cache_save() keeps only what setup added. */
typedef struct setup_listing setup_listing;

/* What a save or a restore copied. */
typedef struct setup_cache_stats {
    uint64_t files;
    uint64_t bytes;
    int reflinked; /* at least one file was a reflink, not a copy */
} setup_cache_stats;

/* The cache key of a repository's setup on the worktree at wt_path, in
 * environment env_id ("host" without an image; never NULL). A key file
 * that is missing counts as "missing"; one that is not a regular file
 * inside the worktree is refused (FARM_EINVALID). */
int setup_cache_key(char out[SETUP_CACHE_KEY_HEX], const config_repo *repo, const char *env_id,
                    const char *wt_path);

/* Every path under wt_path (its .git left out). Freed with
 * setup_listing_free(). */
int setup_listing_make(setup_listing **out, const char *wt_path);
void setup_listing_free(setup_listing *l);

/* Copy what setup added to wt_path (the paths not in before) and home_dir
 * (all of it; may be NULL) into the entry for key, expiring ttl_s from
 * now. An entry already there (another run made it) is kept. setup_ms is
 * recorded in its meta.json. */
int setup_cache_save(setup_cache_stats *out, const char *data_dir, const char *key,
                     const setup_listing *before, const char *wt_path, const char *home_dir,
                     int ttl_s, int64_t setup_ms);

/* Copy the entry for key into wt_path (paths already there are left
 * alone) and home_dir (may be NULL). *hit is 0 when there is no valid
 * entry (none, expired, half-written): nothing was copied. */
int setup_cache_restore(int *hit, setup_cache_stats *out, const char *data_dir, const char *key,
                        const char *wt_path, const char *home_dir);

/* Remove expired entries and what crashed saves left (older than an
 * hour). Returns how many entries were removed, or an error. */
int setup_cache_prune(const char *data_dir);

#endif
