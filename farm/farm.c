/*
 * farm.c - opening and closing a farm (see farm.h): the data directory, the
 * store in it and the durable streams on open; on close, the scheduler, the
 * outbox's senders and the tracker clients stop before the streams, the
 * store and the config they use are closed.
 */
#include "farm.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/trackers.h"
#include "farm/sched/scheduler.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* mkdir -p, the last component with mode 0700 (its parents 0755, the
 * usual for a directory holding other things). */
static int data_dir_create(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;

    if (strlen(dir) >= sizeof(path)) {
        farm_error_set("data_dir is too long");
        return FARM_EINVALID;
    }
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            farm_error_set("cannot create %s: %s", path, strerror(errno));
            return FARM_EIO;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        farm_error_set("cannot create data directory %s: %s", path, strerror(errno));
        return FARM_EIO;
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        farm_error_set("data directory %s is not a directory", path);
        return FARM_EIO;
    }
    /* 0711 is expected (the sandbox's uid traverses it to the worktrees, and
     * the store's files are 0600): only listing or writing is a problem */
    if (st.st_mode & 066)
        log_warn("data directory is readable or writable by other users; chmod 711 it", "data_dir",
                 path);
    return 0;
}

int farm_open(farm **out, config *cfg)
{
    farm *f = NULL;
    int rc;

    assert(out && cfg);
    *out = NULL;
    if (!(f = calloc(1, sizeof(*f)))) {
        farm_error_set("out of memory");
        config_free(cfg);
        return FARM_ENOMEM;
    }
    f->cfg = cfg;
    if ((rc = data_dir_create(cfg->data_dir)))
        goto out;
    if ((rc = store_open(&f->store, cfg->data_dir)))
        goto out;
    if ((rc = stream_hub_open(&f->streams, f->store, NULL)))
        goto out;
    *out = f;
    return 0;
out:
    farm_close(f);
    return rc;
}

void farm_close(farm *f)
{
    if (!f)
        return;
    scheduler_stop(f); /* its runs use everything below */
    outbox_stop(f);    /* its senders use the trackers and the store */
    farm_trackers_close(f);
    stream_hub_close(f->streams);
    store_close(f->store);
    config_free(f->cfg);
    free(f);
}
