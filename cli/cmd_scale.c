/*
 * cmd_scale.c - `farm scale`: show the scaling limits of a running farm, or
 * change them live (PUT /api/scaling, admin token in FARM_TOKEN). The farm
 * keeps a change in its store, so it outlasts a restart.
 */
#include "cli.h"
#include "remote.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fields[] = {"max_agents", "max_per_repo", "min_warm", "idle_timeout_s"};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static void print_limits(json_t *o)
{
    json_t *src = json_object_get(o, "source");
    for (size_t i = 0; i < NFIELDS; i++)
        printf("%-15s %-6lld (%s)\n", fields[i],
               (long long)json_integer_value(json_object_get(o, fields[i])),
               json_string_value(json_object_get(src, fields[i]))
                   ? json_string_value(json_object_get(src, fields[i]))
                   : "?");
}

static int number(long long *out, const char *opt, const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !*s || *end) {
        fprintf(stderr, "farm: %s wants a whole number, not '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int scale(int argc, char **argv)
{
    static const struct option opts[] = {
        {"max", required_argument, NULL, 'm'},      {"per-repo", required_argument, NULL, 'p'},
        {"min-warm", required_argument, NULL, 'w'}, {"idle-timeout", required_argument, NULL, 'i'},
        {"server", required_argument, NULL, 's'},   {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},           {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    json_t *change = json_object();
    int json = 0, c, rc = 0;
    long long v;

    if (!change)
        return 1;
    while ((c = getopt_long(argc, argv, "m:p:w:i:s:c:j", opts, NULL)) != -1) {
        const char *field = NULL;
        switch (c) {
        case 'm':
            field = "max_agents";
            break;
        case 'p':
            field = "max_per_repo";
            break;
        case 'w':
            field = "min_warm";
            break;
        case 'i':
            field = "idle_timeout_s";
            break;
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
            json_decref(change);
            return cli_usage("scale");
        }
        if (field) {
            if (number(&v, argv[optind - 1], optarg) != 0) {
                json_decref(change);
                return 2;
            }
            json_object_set_new(change, field, json_integer(v));
        }
    }
    if (optind < argc) {
        json_decref(change);
        return cli_usage("scale");
    }
    remote r;
    if ((rc = remote_init(&r, server, config_path))) {
        json_decref(change);
        return rc;
    }
    json_t *body = NULL;
    rc = remote_settings(&body, &r, "/api/scaling", "PUT", change);
    json_decref(change);
    return rc ? rc : remote_print(body, json, print_limits);
}

CLI_COMMAND("scale", "show or change the scaling limits of a running farm, live",
            "farm scale [--max N] [--per-repo N] [--min-warm N] [--idle-timeout S] [--json]\n"
            "                  [--server URL | --config FILE]   (token: $FARM_TOKEN, admin to "
            "change)",
            scale)
