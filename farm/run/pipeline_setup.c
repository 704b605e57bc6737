/*
 * pipeline_setup.c - the setup step of a run: the repository's setup
 * command, or what an earlier run's setup left, restored from the setup
 * cache (setup_cache.h), or already restored in the warm slot the run
 * adopted.
 *
 * Setup gets what the agent never does: repos[].setup_env (secrets, for a
 * private registry) in its environment and repos[].setup_network as its
 * network. Both live only in the setup's sandbox, which is torn down (its
 * pid namespace and every process in it killed) before the step ends, and
 * the secrets' values are cut out of the output the session log keeps. The
 * farm writes them nowhere; what setup itself writes into the worktree or
 * HOME is kept and cached, which docs/environments.md warns about.
 *
 * One "setup" event says what happened: {"mode": "ran" | "restored",
 * "ms", "key", ...}.
 */
#include "pipeline_internal.h"
#include "setup_cache.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "sandbox/image.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pl_env_id(char out[PL_ENV_ID_MAX], const config_repo *repo)
{
    char digest[SANDBOX_IMAGE_DIGEST_MAX];

    if (!repo->image) {
        snprintf(out, PL_ENV_ID_MAX, "host");
    } else if (sandbox_image_ref_kind(repo->image) != SANDBOX_IMAGE_ROOTFS &&
               sandbox_image_digest(digest, repo->image) == 0) {
        snprintf(out, PL_ENV_ID_MAX, "%s", digest);
    } else {
        snprintf(out, PL_ENV_ID_MAX, "%.4000s", repo->image);
        farm_error_clear(); /* the run's image step says what is wrong with it */
    }
}

/* The network setup gets: the repository's setup_network, else
 * sandbox.setup_network. *allow: its own allowlist, or NULL. */
static const char *setup_network(const pl_run *r, const char *const **allow)
{
    *allow = NULL;
    if (r->repo->setup_allow_hosts && r->repo->nsetup_allow_hosts > 0)
        *allow = (const char *const *)r->repo->setup_allow_hosts;
    if (r->repo->setup_network)
        return r->repo->setup_network;
    return r->cfg->sandbox.setup_network ? r->cfg->sandbox.setup_network : r->cfg->sandbox.network;
}

/* The setup event and the step's end, in one commit. */
static int setup_done(pl_run *r, int64_t t0, const char *mode, int64_t ms, const char *key,
                      json_t *extra)
{
    pl_tx t;
    json_t *b = json_pack("{s:s,s:I}", "mode", mode, "ms", (json_int_t)ms);

    if (b && key && *key)
        json_object_set_new(b, "key", json_string(key));
    if (b && extra)
        json_object_update(b, extra);
    json_decref(extra);
    pl_tx_init(&t, r);
    pl_tx_event(&t, "setup", b);
    pl_step_done(&t, "setup", 0, t0, json_pack("{s:i,s:s}", "exit", 0, "mode", mode));
    return pl_tx_commit(&t);
}

static json_t *stats_json(const setup_cache_stats *st)
{
    return json_pack("{s:I,s:I,s:b}", "files", (json_int_t)st->files, "bytes",
                     (json_int_t)st->bytes, "reflink", st->reflinked);
}

/* Run the setup command; its failure ends the run (1). */
static int setup_exec(pl_run *r)
{
    const char *const *allow;
    const char *network = setup_network(r, &allow);
    pl_exec_result x;
    int rc = pl_run_shell(&x, r, "setup", 0, r->repo->setup, network,
                          (const char *const *)r->repo->setup_env, allow, 0);

    if (rc == 0 && x.sr.exit_code != 0) {
        char reason[256];
        snprintf(reason, sizeof(reason), "the setup command failed (%s %d)",
                 x.sr.timed_out ? "timed out; exit status" : "exit status", x.sr.exit_code);
        pl_step_failed(r, "setup", 0, reason);
        rc = pl_run_fail(r, reason, x.tail);
        pl_exec_result_free(&x);
        return rc ? rc : 1;
    }
    pl_exec_result_free(&x);
    if (rc && rc != FARM_ECANCELLED)
        pl_step_failed(r, "setup", 0, farm_error_last());
    return rc;
}

int pl_step_setup(pl_run *r, pl_progress *p)
{
    char key[SETUP_CACHE_KEY_HEX] = "";
    setup_listing *before = NULL;
    setup_cache_stats st;
    int64_t t0 = clock_mono_ms();
    int rc, cache = r->repo->setup_cache && r->wt_fresh;
    const char *home = r->home_dir[0] ? r->home_dir : NULL;

    if (p->setup || !r->repo->setup)
        return 0;
    if ((rc = pl_step_started(r, "setup", 0)))
        return rc;
    if (cache) {
        setup_cache_prune(r->cfg->data_dir);
        if ((rc = setup_cache_key(key, r->repo, r->env_id[0] ? r->env_id : "host", r->wt_path))) {
            pl_step_failed(r, "setup", 0, farm_error_last());
            return rc;
        }
    }
    if (cache && r->warm_setup_key[0] && !strcmp(r->warm_setup_key, key)) {
        p->setup = 1;
        return setup_done(r, t0, "restored", r->warm_setup_ms, key, json_pack("{s:b}", "warm", 1));
    }
    if (cache) {
        int hit = 0;
        int64_t t1 = clock_mono_ms();
        if ((rc = setup_cache_restore(&hit, &st, r->cfg->data_dir, key, r->wt_path, home)))
            log_warn("setup cache not restored; running setup", "error", farm_error_last());
        else if (hit) {
            p->setup = 1;
            return setup_done(r, t0, "restored", clock_mono_ms() - t1, key, stats_json(&st));
        }
        if ((rc = setup_listing_make(&before, r->wt_path))) {
            log_warn("setup cache: worktree not listed; setup will not be kept", "error",
                     farm_error_last());
            before = NULL;
        }
    }
    int64_t t2 = clock_mono_ms();
    if ((rc = setup_exec(r))) {
        setup_listing_free(before);
        return rc;
    }
    int64_t ran_ms = clock_mono_ms() - t2;
    json_t *extra = NULL;
    if (before) {
        int64_t t3 = clock_mono_ms();
        if (setup_cache_save(&st, r->cfg->data_dir, key, before, r->wt_path, home,
                             r->repo->setup_cache_ttl_s, ran_ms) == 0) {
            extra = stats_json(&st);
            json_object_set_new(extra, "saved", json_true());
            json_object_set_new(extra, "save_ms", json_integer(clock_mono_ms() - t3));
        } else {
            log_warn("setup cache: not kept", "error", farm_error_last());
            extra = json_pack("{s:b,s:s}", "saved", 0, "error", farm_error_last());
        }
        setup_listing_free(before);
    }
    p->setup = 1;
    return setup_done(r, t0, "ran", ran_ms, key, extra);
}
