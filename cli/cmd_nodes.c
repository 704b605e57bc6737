/*
 * cmd_nodes.c - `farm nodes`: the farm processes sharing the store, from
 * their heartbeats (GET /api/nodes): host, pid, role, slots, runs at work
 * and how long ago each last beat. A node that stopped beating died or
 * hangs; its leases expire and another node takes its work over.
 */
#include "cli.h"
#include "remote.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static long long num(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "?";
}

static void print_nodes(json_t *body)
{
    json_t *nodes = json_object_get(body, "nodes"), *n;
    size_t i;
    if (json_array_size(nodes) == 0) {
        printf("no node has beaten yet (a farm serving with its scheduler beats every few"
               " seconds)\n");
        return;
    }
    printf("%-24s %-8s %-6s %5s %7s %12s  %s\n", "HOST", "PID", "ROLE", "SLOTS", "RUNNING",
           "LAST BEAT", "ID");
    json_array_foreach(nodes, i, n)
    {
        char age[32];
        snprintf(age, sizeof(age), "%llds ago", num(n, "beat_age_ms") / 1000);
        printf("%-24s %-8lld %-6s %5lld %7lld %12s  %s\n", str(n, "host"), num(n, "pid"),
               str(n, "role"), num(n, "slots"), num(n, "running"), age, str(n, "id"));
    }
}

static int nodes(int argc, char **argv)
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
            return cli_usage("nodes");
        }
    }
    if (optind < argc)
        return cli_usage("nodes");
    remote r;
    if ((rc = remote_init(&r, server, config_path)))
        return rc;
    json_t *body = NULL;
    if ((rc = remote_get_json(&body, &r, "/api/nodes")))
        return rc;
    return remote_print(body, json, print_nodes);
}

CLI_COMMAND("nodes", "the farm processes sharing the store, by their heartbeats",
            "farm nodes [--json] [--server URL | --config FILE]   (token: $FARM_TOKEN)", nodes)
