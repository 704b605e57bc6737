/*
 * cmd_worker.c - `farm worker --config FILE`: run jobs and the outbox with
 * no HTTP: a farm process that shares its store with a `farm serve` (which
 * takes the webhooks and serves the API, maybe with --intake-only) and
 * with other workers. Leases in the store say who runs what; each worker
 * beats into the node table (`farm nodes`). It stops like `farm serve`:
 * SIGINT or SIGTERM, runs at work go back to the queue.
 *
 * The local tracker's repositories are file:// paths: a worker can only
 * use them when every node sees one file system, which the config says
 * with store.shared_fs; without it such a config is refused.
 */
#include "cli.h"
#include "serve_common.h"

#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 0, or 1 with a message when a repository uses the local tracker and the
 * config does not say the data directory is shared. */
static int local_tracker_refused(const config *cfg, const char *path)
{
    if (cfg->store.shared_fs)
        return 0;
    for (size_t i = 0; i < cfg->nrepos; i++) {
        if (!cfg->repos[i].tracker || strcmp(cfg->repos[i].tracker, "local") != 0)
            continue;
        fprintf(stderr,
                "farm: %s: repository \"%s\" uses the local tracker, whose file:// repositories"
                " every node must reach; `farm worker` needs one file system shared by every"
                " node for that.\nIf data_dir and the repositories are on such a file system"
                " (or this worker runs on the serve machine), say so with"
                " \"store\": {\"shared_fs\": true}; else run the local tracker's work on"
                " `farm serve` alone (see docs/deploy.md)\n",
                path, cfg->repos[i].name);
        return 1;
    }
    return 0;
}

static int worker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        if (c != 'c')
            return cli_usage("worker");
        path = optarg;
    }
    if (optind < argc || !path)
        return cli_usage("worker");

    config *cfg = NULL;
    char *errors = NULL;
    if (config_load(&cfg, path, &errors)) {
        fprintf(stderr, "farm: cannot load %s: %s\n%s", path, farm_error_last(),
                errors ? errors : "");
        free(errors);
        return 1;
    }
    if (local_tracker_refused(cfg, path)) {
        config_free(cfg);
        return 1;
    }
    serve_state st;
    if (worker_start(&st, cfg) != 0) /* cfg is taken, even on failure */
        return 1;
    int sig = serve_wait(&st, NULL, NULL, 0);
    log_info("stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_stop(&st);
    log_info("stopped");
    return 0;
}

CLI_COMMAND("worker", "run jobs and the outbox without HTTP, beside a farm serve on one store",
            "farm worker --config FILE\n"
            "  shares the config's store (store.url) with `farm serve` and other workers;\n"
            "  the webhooks and the API stay with `farm serve` (--intake-only: it runs no jobs)",
            worker)
