/*
 * farm.c - opening and closing a farm (see farm.h): the data directory, the
 * store in it and the durable streams on open; on close, the scheduler, the
 * outbox's senders and the tracker clients stop before the streams, the
 * store and the config they use are closed. farm_reach_check() says before
 * a start whether the sandbox's uid could reach what a run needs.
 */
#include "farm.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/gateway/gateway.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/trackers.h"
#include "farm/run/agent.h"
#include "farm/sched/scheduler.h"
#include "sandbox/sandbox.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

/* ---- can the sandbox's uid get there? --------------------------------------- */

#define REACH_MAX 8 /* directories named in one message */

typedef struct reach {
    char dir[REACH_MAX][PATH_MAX];
    unsigned mode[REACH_MAX];
    int n;
} reach;

static void reach_add(reach *r, const char *dir, unsigned mode)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->dir[i], dir))
            return;
    if (r->n < REACH_MAX) {
        snprintf(r->dir[r->n], sizeof(r->dir[0]), "%s", dir);
        r->mode[r->n++] = mode;
    }
}

/* Add to r every directory other users cannot search on the way to path:
 * the directories above it, or, when it does not exist yet, the nearest
 * one that does and those above that one (farm_open() creates the rest
 * searchable). Returns how many it added. */
static int reach_walk(reach *r, const char *path)
{
    char p[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX];
    int before = r->n, missing = 0;

    if (path[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        return 0;
    if (snprintf(p, sizeof(p), "%s%s%s", path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/",
                 path) >= (int)sizeof(p))
        return 0;
    /* the nearest existing directory, symbolic links resolved (as the sandbox sees it) */
    while (!realpath(p, real)) {
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
            return 0;
        *slash = '\0';
        missing = 1;
    }
    if (!missing) /* the path itself: the farm makes its own directories searchable */
        *strrchr(real, '/') = '\0';
    for (;;) {
        const char *d = real[0] ? real : "/";
        struct stat st;
        if (stat(d, &st) == 0 && S_ISDIR(st.st_mode) && !(st.st_mode & S_IXOTH))
            reach_add(r, d, (unsigned)(st.st_mode & 0777));
        char *slash = strrchr(real, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    return r->n - before;
}

int farm_reach_check(const config *cfg)
{
    reach r = {.n = 0};
    char abs[PATH_MAX];

    assert(cfg && cfg->data_dir);
    /* without the sandbox, or as an ordinary user (whose uid the sandbox
     * keeps), the farm's own reach is the agents' */
    if ((cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none")) || geteuid() != 0)
        return 0;
    int data = reach_walk(&r, cfg->data_dir);
    const char *helper = sandbox_helper_path(NULL);
    int helper_out = helper && realpath(helper, abs) && reach_walk(&r, abs) > 0;
    if (r.n == 0)
        return 0;

    char dirs[1024] = "", list[1024] = "";
    size_t a = 0, b = 0;
    for (int i = 0; i < r.n; i++) {
        a += (size_t)snprintf(dirs + a, a < sizeof(dirs) ? sizeof(dirs) - a : 0, "%s%s",
                              i ? " " : "", r.dir[i]);
        b += (size_t)snprintf(list + b, b < sizeof(list) ? sizeof(list) - b : 0, "%s%s (mode %03o)",
                              i ? ", " : "", r.dir[i], r.mode[i]);
    }
    farm_error_set("the sandbox cannot reach %s%s%s%s%s: %s %s not searchable by other users, and "
                   "with the farm running as root every agent runs as a uid of its own. Run "
                   "`chmod o+x %s` (other users may then pass through, not list), or %s",
                   data ? "the data directory " : "", data ? cfg->data_dir : "",
                   data && helper_out ? " and " : "", helper_out ? "the sandbox helper " : "",
                   helper_out ? abs : "", list, r.n == 1 ? "is" : "are", dirs,
                   data ? "put data_dir under directories with mode 0711 or wider (for example "
                          "/var/lib/farm or /tmp/farm-data)"
                        : "install the farm (cmake --install) under a prefix such as /usr/local");
    return FARM_EINVALID;
}

/* ---- open and close ---------------------------------------------------------- */

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
    if ((rc = store_open_password(&f->store, cfg->store.url ? cfg->store.url : "sqlite:",
                                  cfg->store.password, cfg->data_dir)))
        goto out;
    if ((rc = stream_hub_open(&f->streams, f->store, NULL)))
        goto out;
    *out = f;
    return 0;
out:
    farm_close(f);
    return rc;
}

/* 1 when some preset a run may use (the configured one, or one a repository
 * allows: repos[].agents) speaks a model API through the gateway. */
static int gateway_needed(const config *cfg)
{
    gateway_provider p;
    if (agent_provider(&p, cfg) == 0)
        return 1;
    for (size_t i = 0; i < cfg->nrepos; i++) {
        for (size_t k = 0; k < cfg->repos[i].nagents; k++) {
            config alt; /* the config as a run of that preset sees it */
            config_agent_for(&alt, cfg, cfg->repos[i].agents[k]);
            if (agent_provider(&p, &alt) == 0)
                return 1;
        }
    }
    return 0;
}

int farm_gateway_start(farm *f)
{
    char path[PATH_MAX];
    if (f->gateway || !gateway_needed(f->cfg))
        return 0;
    int n = snprintf(path, sizeof(path), "%s/gateway.sock", f->cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        farm_error_set("the model gateway's socket path %s/gateway.sock is too long for a Unix "
                       "socket (at most 107 bytes); use a shorter data_dir",
                       f->cfg->data_dir);
        return FARM_EINVALID;
    }
    gateway_opts o = GATEWAY_OPTS_INIT;
    o.unix_path = path;
    if (f->cfg->sandbox.mode && !strcmp(f->cfg->sandbox.mode, "unsafe-none"))
        o.tcp_port = 0;
    int rc = gateway_start(&f->gateway, &o);
    if (rc == 0)
        log_info("model gateway started", "socket", path);
    return rc;
}

void farm_close(farm *f)
{
    if (!f)
        return;
    scheduler_stop(f);        /* its runs use everything below */
    gateway_stop(f->gateway); /* after the runs: each removes itself from it */
    f->gateway = NULL;
    outbox_stop(f); /* its senders use the trackers and the store */
    farm_trackers_close(f);
    stream_hub_close(f->streams);
    store_close(f->store);
    config_free(f->cfg);
    free(f);
}
