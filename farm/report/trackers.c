/*
 * trackers.c - the farm's tracker clients (trackers.h): made from the
 * config on first use, cached on the farm, freed by farm_close().
 *
 * Creating a client is cheap but not free (the GitHub one parses the App's
 * key, the local one wires the store in), and a client carries state worth
 * sharing (installation tokens, pacing, the ETag cache), so there is one per
 * tracker kind per farm. A single lock serialises the lookups; calls on the
 * clients themselves run concurrently.
 *
 * GitHub's write pacing and rate-limit back-off are kept in the store
 * (store_node.h's shared state), so every farm process sharing it together
 * keeps to one budget rather than each to its own.
 */
#include "trackers.h"
#include "farm/handle/handle.h"
#include "farm/store/store_local.h"
#include "farm/store/store_node.h"

#include "base/error.h"
#include "base/log.h"
#include "vcs/tracker/azure.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { T_GITHUB, T_AZURE, T_LOCAL, T_COUNT };

static const char *const names[T_COUNT] = {"github", "azure", "local"};

struct farm_trackers {
    tracker *t[T_COUNT];
    local_backend local;          /* borrowed by the local tracker: lives as long as it */
    tracker_shared_limits limits; /* borrowed by the GitHub client, likewise */
};

/* ---- limits shared through the store (tracker_shared_limits) ------------- */

static int shared_pace(void *arg, int64_t *wait_ms, const char *key, int per_minute, int per_hour)
{
    return store_node_pace(wait_ms, arg, key, per_minute, per_hour);
}

static int shared_blocked_get(void *arg, int64_t *until_ms, const char *key)
{
    return store_node_block_get(until_ms, arg, key);
}

static int shared_blocked_set(void *arg, const char *key, int64_t until_ms)
{
    return store_node_block_set(arg, key, until_ms);
}

/* Guards every farm's f->trackers pointer and the clients in it. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int kind_of(const char *name)
{
    for (int i = 0; name && i < T_COUNT; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

static int github_new(tracker **out, const config *c, const tracker_shared_limits *shared)
{
    tracker_github_opts o = TRACKER_GITHUB_OPTS_INIT;

    if (!c->github.enabled) {
        farm_error_set("no \"github\" section in the config");
        return FARM_ENOTFOUND;
    }
    o.api_url = c->github.api_url;
    /* Whose comments find_by_marker trusts: the client asks GitHub once
     * (GET /user, or /app for "<slug>[bot]") rather than trusting
     * github.bot_login, whose default "farm-bot" need not be the token's
     * login; a wrong one would make every crash recovery post again. */
    o.bot_login = NULL;
    if (c->github.app_id > 0 && c->github.app_private_key) {
        o.app_id = c->github.app_id;
        o.app_private_key = c->github.app_private_key;
    } else {
        o.token = c->github.token;
    }
    o.shared = shared;
    return tracker_github_new(out, &o);
}

static int azure_new(tracker **out, const config *c)
{
    tracker_azure_opts o = TRACKER_AZURE_OPTS_INIT;
    tracker_azure_repo *repos = NULL;
    size_t n = 0;
    int rc;

    if (!c->azure.enabled) {
        farm_error_set("no \"azure\" section in the config");
        return FARM_ENOTFOUND;
    }
    if (c->nrepos && !(repos = calloc(c->nrepos, sizeof(*repos)))) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    for (size_t i = 0; i < c->nrepos; i++) {
        const config_repo *r = &c->repos[i];
        if (!r->tracker || strcmp(r->tracker, "azure") != 0)
            continue;
        repos[n].name = r->name;
        repos[n].project = r->azure_project;
        repos[n].allowed_actors = (const char *const *)r->allowed_actors;
        repos[n].nallowed_actors = r->nallowed_actors;
        n++;
    }
    o.org_url = c->azure.org_url;
    o.token = c->azure.token;
    /* as with GitHub, the identity behind the token is asked for
     * (connectionData) rather than trusting azure.bot_name, a display
     * setting that need not match the token's unique name */
    o.bot_name = NULL;
    o.repos = repos;
    o.nrepos = n;
    rc = tracker_azure_new(out, &o); /* copies the repos */
    free(repos);
    return rc;
}

int farm_tracker_get(tracker **out, farm *f, const char *tracker_name)
{
    int k = kind_of(tracker_name), rc = 0;

    *out = NULL;
    if (k < 0) {
        farm_error_set("unknown tracker \"%s\"", tracker_name ? tracker_name : "(null)");
        return FARM_EINVALID;
    }
    pthread_mutex_lock(&lock);
    if (!f->trackers && !(f->trackers = calloc(1, sizeof(*f->trackers)))) {
        farm_error_set("out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    if (!f->trackers->t[k]) {
        tracker *t = NULL;
        switch (k) {
        case T_GITHUB:
            f->trackers->limits = (tracker_shared_limits){shared_pace, shared_blocked_get,
                                                          shared_blocked_set, f->store};
            rc = github_new(&t, f->cfg, f->store ? &f->trackers->limits : NULL);
            break;
        case T_AZURE:
            rc = azure_new(&t, f->cfg);
            break;
        default:
            rc = store_local_tracker_new(&t, &f->trackers->local, f->store, f->cfg);
            break;
        }
        if (rc)
            goto out;
        f->trackers->t[k] = t;
        log_debug("tracker client ready", "tracker", names[k]);
    }
    *out = f->trackers->t[k];
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

void farm_tracker_set(farm *f, const char *tracker_name, tracker *t)
{
    int k = kind_of(tracker_name);
    if (k < 0) {
        tracker_free(t);
        return;
    }
    pthread_mutex_lock(&lock);
    if (!f->trackers)
        f->trackers = calloc(1, sizeof(*f->trackers));
    if (f->trackers) {
        tracker_free(f->trackers->t[k]);
        f->trackers->t[k] = t;
    } else {
        tracker_free(t);
    }
    pthread_mutex_unlock(&lock);
}

void farm_trackers_close(farm *f)
{
    pthread_mutex_lock(&lock);
    struct farm_trackers *ts = f->trackers;
    f->trackers = NULL;
    pthread_mutex_unlock(&lock);
    if (!ts)
        return;
    for (int i = 0; i < T_COUNT; i++)
        tracker_free(ts->t[i]);
    free(ts);
}
