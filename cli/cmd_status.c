/*
 * cmd_status.c - `farm status`: what a running farm is doing: slots in use,
 * warm slots, the job queue, the scaling limits in force and the outbox's
 * backlog (GET /api/status).
 */
#include "cli.h"
#include "remote.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static long long num(json_t *o, const char *a, const char *b)
{
    return (long long)json_integer_value(json_object_get(json_object_get(o, a), b));
}

static const char *source(json_t *o, const char *field)
{
    const char *s = json_string_value(
        json_object_get(json_object_get(json_object_get(o, "scaling"), "source"), field));
    return s ? s : "?";
}

static void print_status(json_t *o)
{
    json_t *sched = json_object_get(o, "scheduler");
    if (json_is_true(json_object_get(sched, "running")))
        printf("slots     %lld in use of %lld (max_agents), %lld idle, %lld warm\n",
               num(o, "scheduler", "busy"), num(o, "scaling", "max_agents"),
               num(o, "scheduler", "idle"), num(o, "scheduler", "warm"));
    else
        printf("slots     no scheduler in this farm process (serving with --intake-only)\n");
    printf("jobs      %lld queued, %lld running, %lld done, %lld failed, %lld cancelled\n",
           num(o, "jobs", "queued"), num(o, "jobs", "leased"), num(o, "jobs", "done"),
           num(o, "jobs", "failed"), num(o, "jobs", "cancelled"));
    printf("limits    max_agents %lld (%s), max_per_repo %lld (%s), min_warm %lld (%s), "
           "idle_timeout_s %lld (%s)\n",
           num(o, "scaling", "max_agents"), source(o, "max_agents"),
           num(o, "scaling", "max_per_repo"), source(o, "max_per_repo"),
           num(o, "scaling", "min_warm"), source(o, "min_warm"),
           num(o, "scaling", "idle_timeout_s"), source(o, "idle_timeout_s"));
    if (json_object_get(o, "outbox"))
        printf("outbox    %lld pending, %lld retrying, %lld failed, %lld sent\n",
               num(o, "outbox", "pending"), num(o, "outbox", "retries"), num(o, "outbox", "failed"),
               num(o, "outbox", "sent"));
    if (json_is_true(json_object_get(sched, "running")))
        printf("since     %lld %s started, %lld memory %s, %lld %s lost\n",
               num(o, "scheduler", "jobs_started"),
               cli_plural(num(o, "scheduler", "jobs_started"), "job", "jobs"),
               num(o, "scheduler", "admission_waits"),
               cli_plural(num(o, "scheduler", "admission_waits"), "wait", "waits"),
               num(o, "scheduler", "leases_lost"),
               cli_plural(num(o, "scheduler", "leases_lost"), "lease", "leases"));
}

static int status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    int json = 0, c, rc;
    while ((c = getopt_long(argc, argv, "s:c:j", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'j':
            json = 1;
            break;
        default:
            return cli_usage("status");
        }
    }
    if (optind < argc)
        return cli_usage("status");
    remote r;
    if ((rc = remote_init(&r, server, config_path)))
        return rc;
    json_t *body = NULL;
    if ((rc = remote_get_json(&body, &r, "/api/status")))
        return rc;
    return remote_print(body, json, print_status);
}

CLI_COMMAND("status", "what a running farm is doing: slots, queue, limits, outbox",
            "farm status [--json] [--server URL | --config FILE]   (token: $FARM_TOKEN)", status)
