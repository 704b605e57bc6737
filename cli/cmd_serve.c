/*
 * cmd_serve.c - `farm serve`: load the config, open the farm, serve HTTP
 * until SIGINT or SIGTERM, then drain and close.
 *
 * The signals are blocked before any thread starts and taken with sigwait()
 * in the main thread, so no handler runs on a random thread and shutdown is
 * ordinary code: stop accepting, finish the requests in flight, let the
 * store commit what is queued, close.
 */
#include "cli.h"
#include "../base/error.h"
#include "../base/http.h"
#include "../base/log.h"
#include "../farm/digest.h"
#include "../farm/farm.h"
#include "../farm/outbox.h"
#include "../farm/scheduler.h"
#include "../sandbox/sandbox.h"
#include "../webhook/server.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_MS 10000

/* Probe the host's isolation and log it; 0 when agents may run. */
static int check_sandbox(const config *cfg)
{
    int unsafe = cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none");
    sandbox_probe_result probe;
    memset(&probe, 0, sizeof(probe));
    if (!unsafe)
        sandbox_probe(&probe, NULL);
    sandbox_probe_log(&probe, unsafe);
    if (unsafe || probe.ok)
        return 0;
    fprintf(stderr,
            "farm: agents cannot run isolated on this host: %s\n"
            "farm: `farm doctor` shows what is missing. To serve webhooks and the API without "
            "running agents here, use `farm serve --intake-only`; to run agents without any "
            "isolation (never with untrusted code), set sandbox.mode to \"unsafe-none\".\n",
            probe.problem);
    return -1;
}

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
    int lvl = log_level_parse(cfg->log_level);
    if (lvl >= 0)
        log_set_level((log_level)lvl);
    if (config_check_serve(cfg, &errors) != 0) {
        fprintf(stderr,
                "farm: refusing to serve on %s beyond loopback:\n%s"
                "farm: configure the webhook secrets and API tokens, or listen on 127.0.0.1\n",
                cfg->listen, errors ? errors : "");
        free(errors);
        config_free(cfg);
        return 1;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    http_global_init();

    farm *f = NULL;
    if ((rc = farm_open(&f, cfg)) != 0) { /* cfg is the farm's now, even on failure */
        fprintf(stderr, "farm: cannot open the farm: %s\n", farm_error_last());
        return 1;
    }
    if ((rc = outbox_start(f)) != 0) { /* tracker side effects (farm/outbox.h) */
        fprintf(stderr, "farm: cannot start the outbox: %s\n", farm_error_last());
        farm_close(f);
        return 1;
    }
    /* Agents run only isolated: say which limits are really in force, and
     * refuse to run them at all where isolation cannot be had, unless the
     * config explicitly asks for no sandbox (logged loudly every start). */
    if (!intake_only && check_sandbox(farm_config(f)) != 0) {
        farm_close(f);
        return 1;
    }
    /* leases jobs and runs them (farm/scheduler.h) */
    if (!intake_only && (rc = scheduler_start(f, NULL)) != 0) {
        fprintf(stderr, "farm: cannot start the scheduler: %s\n", farm_error_last());
        farm_close(f);
        return 1;
    }
    server *srv = NULL;
    if ((rc = server_start(&srv, f, &sopt)) != 0) {
        fprintf(stderr, "farm: %s\n", farm_error_last());
        farm_close(f);
        return 1;
    }
    digest_daily *daily = NULL; /* the daily digest comment, when configured (farm/digest.h) */
    if (digest_daily_start(&daily, f) != 0)
        log_error("the daily digest will not be posted", "error", farm_error_last());
    const char *address = server_address(srv);
    log_info("listening", "address", address, "version", FARM_VERSION, "data_dir",
             farm_config(f)->data_dir);
    fprintf(stderr, "farm: listening on http://%s\n", address);

    int sig = 0;
    sigwait(&set, &sig);
    log_info("stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_stop(srv, DRAIN_MS);
    digest_daily_stop(daily);
    scheduler_stop(f); /* runs at work stop; their jobs go back to the queue */
    outbox_stop(f);
    farm_close(f);
    log_info("stopped");
    return 0;
}

CLI_COMMAND("serve", "serve webhooks, the API and the web UI",
            "farm serve [--config FILE] [--threads N] [--intake-only]\n"
            "  --intake-only  record deliveries and serve the API, but run no jobs\n"
            "                 (another farm process on the same data directory runs them)",
            serve)
