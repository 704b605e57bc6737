/*
 * pipeline_sweep.c - node-local work directories cleaned up: the worktrees
 * (<data_dir>/work/s<session>) and run directories (<data_dir>/runs/
 * s<session>-r<run>) that no run will come back to.
 *
 * A run removes its own directories when it ends (pl_cleanup_dirs()), but a
 * process that is killed leaves them, and the session's work goes on
 * elsewhere: on another process sharing this data directory (which reopens
 * the worktree where the dead run left it), or on another machine. The
 * scheduler's warm thread calls the sweep now and then; it removes a
 * session's directories when
 *   - the session is gone, or has no job queued or at work (it ended, or
 *     waits for a person: its next run makes a new worktree anyway), or
 *   - its job is leased by a node on another host and the data directory
 *     is not one file system every node mounts (store.shared_fs false):
 *     the run moved to a machine that cannot use these directories.
 * Directories changed in the last SWEEP_QUIET_S seconds are left for the
 * next sweep, so a run starting right now is never swept from under it.
 */
#include "pipeline_internal.h"

#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/store/store_job.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SWEEP_QUIET_S 20

/* Whether owner ("host:pid:random", the scheduler's lease owner) runs on
 * this machine. */
static int owner_here(const char *owner)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    const char *colon = strchr(owner, ':');
    size_t n = colon ? (size_t)(colon - owner) : strlen(owner);
    /* the owner id keeps at most 63 bytes of the host name */
    size_t hl = strlen(host) < 63 ? strlen(host) : 63;
    return n == hl && strncmp(owner, host, n) == 0;
}

/* Why session id's directories may go, or NULL to keep them. */
static const char *sweep_reason(farm *f, int64_t id)
{
    store_session *s = NULL;
    int64_t live = 0;
    char *owner = NULL;
    const char *why = NULL;

    int rc = store_session_get(&s, f->store, id);
    if (rc == FARM_ENOTFOUND)
        return "no such session";
    if (rc)
        return NULL;
    store_session_free(s);
    if (store_job_session_live(&live, &owner, f->store, id) != 0)
        return NULL;
    if (live == 0)
        why = "no run to come back to it";
    else if (owner && !f->cfg->store.shared_fs && !owner_here(owner))
        why = "its run moved to another host";
    free(owner);
    return why;
}

static int quiet(const char *path, time_t now)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && now - st.st_mtime >= SWEEP_QUIET_S;
}

/* Sweep one of data_dir's folders ("work" or "runs"). */
static void sweep_dir(size_t *removed, farm *f, const char *dd, const char *sub, time_t now)
{
    char dir[PATH_MAX], path[PATH_MAX];
    DIR *d;
    struct dirent *e;

    if (snprintf(dir, sizeof(dir), "%s/%s", dd, sub) >= (int)sizeof(dir) || !(d = opendir(dir)))
        return;
    while ((e = readdir(d))) {
        long long id = 0, run = 0;
        char tail;
        int ok = !strcmp(sub, "work") ? sscanf(e->d_name, "s%lld%c", &id, &tail) == 1
                                      : sscanf(e->d_name, "s%lld-r%lld%c", &id, &run, &tail) == 2;
        if (!ok || id <= 0 ||
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
            !quiet(path, now))
            continue;
        const char *why = sweep_reason(f, id);
        if (!why)
            continue;
        char sid[32];
        snprintf(sid, sizeof(sid), "%lld", id);
        if (vcs_tree_remove(path) != 0) {
            log_warn("cannot remove a work directory", "path", path, "session", sid, "error",
                     farm_error_last());
            continue;
        }
        (*removed)++;
        log_info("work directory removed", "path", path, "session", sid, "why", why);
    }
    closedir(d);
}

int pipeline_workdirs_sweep(size_t *removed, farm *f)
{
    size_t n = 0;
    char *dd = realpath(f->cfg->data_dir, NULL);

    *removed = 0;
    if (!dd)
        return 0; /* no data directory yet: nothing to sweep */
    time_t now = time(NULL);
    sweep_dir(&n, f, dd, "work", now);
    sweep_dir(&n, f, dd, "runs", now);
    free(dd);
    *removed = n;
    return 0;
}
