/*
 * cmd_serve.c - `farm serve`: load the config, open the farm, serve HTTP
 * until SIGINT or SIGTERM, then drain and close.
 *
 * The sequence itself (checks, start, signals, orderly stop) is in
 * serve_common.c, shared with `farm demo`.
 */
#include "cli.h"
#include "serve_common.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/farm.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"intake-only", no_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    server_options sopt = SERVER_OPTIONS_INIT;
    int intake_only = 0; /* run no jobs: another farm process on the same store does */
    int c;
    while ((c = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            sopt.threads = atoi(optarg);
            break;
        case 'I':
            intake_only = 1;
            break;
        default:
            return cli_usage("serve");
        }
    }
    if (optind < argc)
        return cli_usage("serve");

    config *cfg = NULL;
    char *errors = NULL;
    int rc = path ? config_load(&cfg, path, &errors) : config_default(&cfg);
    if (rc) {
        fprintf(stderr, "farm: cannot load %s: %s\n%s", path ? path : "the default config",
                farm_error_last(), errors ? errors : "");
        free(errors);
        return 1;
    }
    serve_state st;
    if (serve_start(&st, cfg, &sopt, intake_only) != 0) /* cfg is taken, even on failure */
        return 1;
    int sig = serve_wait(&st, NULL, NULL, 0);
    log_info("stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_stop(&st);
    log_info("stopped");
    return 0;
}

CLI_COMMAND("serve", "serve webhooks, the API and the web UI",
            "farm serve [--config FILE] [--threads N] [--intake-only]\n"
            "  --intake-only  record deliveries and serve the API, but run no jobs\n"
            "                 (another farm process on the same data directory runs them)",
            serve)
