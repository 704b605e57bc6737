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
#include "farm/config/config.h"
#include "farm/farm.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --listen ADDR: the config's listen address, and public_url with it when
 * public_url was only the default that follows listen. */
static int listen_set(config *cfg, const char *listen)
{
    char host[256], old[300], url[300];
    int port;
    snprintf(old, sizeof(old), "http://%s", cfg->listen ? cfg->listen : "");
    char *l = strdup(listen);
    if (!l) {
        fprintf(stderr, "farm: out of memory\n");
        return -1;
    }
    free(cfg->listen);
    cfg->listen = l;
    if (config_listen_split(cfg, host, sizeof(host), &port) != 0) {
        fprintf(stderr, "farm: --listen: %s\n", farm_error_last());
        return -1;
    }
    if (cfg->public_url && !strcmp(cfg->public_url, old)) {
        snprintf(url, sizeof(url), "http://%s", listen);
        char *u = strdup(url);
        if (!u) {
            fprintf(stderr, "farm: out of memory\n");
            return -1;
        }
        free(cfg->public_url);
        cfg->public_url = u;
    }
    return 0;
}

static int serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"threads", required_argument, NULL, 't'},
        {"listen", required_argument, NULL, 'l'}, {"intake-only", no_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *listen = NULL;
    server_options sopt = SERVER_OPTIONS_INIT;
    int intake_only = 0; /* run no jobs: another farm process on the same store does */
    int c;
    while ((c = getopt_long(argc, argv, "c:t:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'l':
            listen = optarg;
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
    if (optind < argc || (listen && !*listen))
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
    if (listen && listen_set(cfg, listen) != 0) {
        config_free(cfg);
        return 2;
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
            "farm serve [--config FILE] [--listen ADDR] [--threads N] [--intake-only]\n"
            "  --listen ADDR  host:port to serve on, instead of the config's listen\n"
            "                 (\"127.0.0.1:8081\"; port 0 picks a free one)\n"
            "  --intake-only  record deliveries and serve the API, but run no jobs\n"
            "                 (another farm process on the same data directory runs them)",
            serve)
