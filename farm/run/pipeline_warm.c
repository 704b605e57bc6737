/*
 * pipeline_warm.c - warm slots: a worktree made ahead of demand.
 *
 * The scheduler keeps scaling.min_warm of them. Each is the repository's
 * mirror fetched and a worktree checked out at the base branch's head on a
 * placeholder branch (farm-warm/<name>), in <data_dir>/warm/. A run whose
 * repository and base head match adopts it: a rename into place and a
 * branch switch, instead of a checkout of every file (pipeline_steps.c,
 * adopt_warm()). A slot not adopted is removed by pipeline_warm_free().
 *
 * When the repository's setup is cached (repos[].setup_cache_key) and the
 * cache holds an entry for the slot's worktree, the slot restores it ahead
 * too (the worktree's files and a HOME beside it, <name>-home): a run that
 * adopts the slot starts with setup done (pipeline_setup.c).
 */
#include "pipeline_internal.h"
#include "setup_cache.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_uint warm_counter;

void pipeline_warm_free(pipeline_warm *w)
{
    if (!w)
        return;
    if (w->path)
        vcs_tree_remove(w->path);
    if (w->home)
        vcs_tree_remove(w->home);
    free(w->home);
    free(w->setup_key);
    free(w->repo);
    free(w->path);
    free(w->base_oid);
    free(w);
}

/* Setup restored into the slot from the cache, when it holds an entry for
 * the slot's worktree; nothing (and no error) otherwise: the run sets up. */
static void warm_setup_restore(pipeline_warm *w, farm *f, const config_repo *repo)
{
    char key[SETUP_CACHE_KEY_HEX], home[PATH_MAX], env_id[PL_ENV_ID_MAX];
    setup_cache_stats st;
    int hit = 0;
    int64_t t0 = clock_mono_ms();

    if (!repo->setup || !repo->setup_cache ||
        snprintf(home, sizeof(home), "%s-home", w->path) >= (int)sizeof(home))
        return;
    pl_env_id(env_id, repo);
    if (setup_cache_key(key, repo, env_id, w->path) != 0)
        return;
    vcs_tree_remove(home);
    if (mkdir(home, 0700) < 0)
        return;
    if (setup_cache_restore(&hit, &st, f->cfg->data_dir, key, w->path, home) != 0 || !hit) {
        if (hit == 0 && farm_error_last()[0])
            log_debug("warm slot: setup not restored", "error", farm_error_last());
        vcs_tree_remove(home);
        return;
    }
    w->home = strdup(home);
    w->setup_key = strdup(key);
    w->setup_ms = clock_mono_ms() - t0;
    if (!w->home || !w->setup_key) {
        free(w->setup_key);
        w->setup_key = NULL;
    }
}

int pipeline_warm_setup(pipeline_warm *w, farm *f)
{
    const config_repo *repo = NULL;

    w->setup_checked_ms = clock_wall_ms();
    if (w->setup_key)
        return 1;
    for (size_t i = 0; i < f->cfg->nrepos; i++)
        if (!strcasecmp(f->cfg->repos[i].name, w->repo))
            repo = &f->cfg->repos[i];
    if (repo)
        warm_setup_restore(w, f, repo);
    return w->setup_key != NULL;
}

int pipeline_warm_prepare(pipeline_warm **out, farm *f, const char *repo_name)
{
    const config_repo *repo = NULL;
    pipeline_warm *w = NULL;
    vcs_mirror *m = NULL;
    vcs_worktree *wt = NULL;
    worktree_opts o = WORKTREE_OPTS_INIT;
    vcs_remote remote;
    char name[1024], path[PATH_MAX], branch[128], oid[VCS_OID_HEXSZ];
    char *dd = NULL;
    int rc;

    *out = NULL;
    for (size_t i = 0; repo_name && i < f->cfg->nrepos; i++)
        if (!strcasecmp(f->cfg->repos[i].name, repo_name))
            repo = &f->cfg->repos[i];
    if (!repo) {
        farm_error_set("warm slot: %s is not a configured repository",
                       repo_name ? repo_name : "(null)");
        return FARM_ENOTFOUND;
    }
    if (!(dd = realpath(f->cfg->data_dir, NULL))) {
        farm_error_set("warm slot: data directory %s: %s", f->cfg->data_dir, strerror(errno));
        return FARM_EIO;
    }
    pl_mirror_name(name, sizeof(name), repo);
    if ((rc = vcs_mirror_open(&m, f->cfg->data_dir, name)))
        goto out;
    pl_remote(&remote, f->cfg, repo, NULL);
    if ((rc = vcs_mirror_fetch(m, &remote)) ||
        (rc = vcs_mirror_branch_oid(oid, m, repo->base_branch)))
        goto out;
    unsigned n = atomic_fetch_add(&warm_counter, 1);
    snprintf(branch, sizeof(branch), "w%ld-%u", (long)getpid(), n);
    snprintf(path, sizeof(path), "%s/warm/%s", dd, branch);
    snprintf(branch, sizeof(branch), "farm-warm/w%ld-%u", (long)getpid(), n);
    vcs_tree_remove(path); /* left by an earlier process with the same pid */
    o.path = path;
    o.branch = branch;
    o.start = oid;
    if ((rc = vcs_worktree_create(&wt, m, &o)))
        goto out;
    if (!(w = calloc(1, sizeof(*w))) || !(w->repo = strdup(repo->name)) ||
        !(w->path = strdup(path)) || !(w->base_oid = strdup(oid))) {
        pipeline_warm_free(w);
        w = NULL;
        vcs_worktree_remove(wt);
        farm_error_set("warm slot: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    w->prepared_ms = w->setup_checked_ms = clock_wall_ms();
    warm_setup_restore(w, f, repo);
    *out = w;
out:
    vcs_worktree_free(wt);
    vcs_mirror_free(m);
    free(dd);
    return rc;
}
