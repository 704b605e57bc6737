/*
 * cmd_cancel.c - `farm cancel ID`: stop a session's run and end the session
 * (POST /api/sessions/{id}/cancel, member token in FARM_TOKEN).
 */
#include "cli.h"
#include "remote.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int cancel(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    int c, rc;
    while ((c = getopt_long(argc, argv, "s:c:", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        default:
            return cli_usage("cancel");
        }
    }
    if (argc - optind != 1)
        return cli_usage("cancel");
    const char *id = argv[optind];
    if (!*id || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18) {
        fprintf(stderr, "farm: a session id is a positive number, not '%s'\n", id);
        return 2;
    }
    remote r;
    if ((rc = remote_init(&r, server, config_path)))
        return rc;
    char path[64], nf[700];
    snprintf(nf, sizeof(nf), "no such session %s on %s; `farm sessions` lists them", id, r.server);
    r.not_found = nf;
    snprintf(path, sizeof(path), "/api/sessions/%s/cancel", id);
    json_t *body = NULL;
    if ((rc = remote_send_json(&body, &r, "POST", path, "{}")))
        return rc;
    printf("session %s: cancelling (job %lld)\n", id,
           (long long)json_integer_value(json_object_get(body, "job")));
    json_decref(body);
    return 0;
}

CLI_COMMAND("cancel", "stop a session's run and end the session",
            "farm cancel ID [--server URL | --config FILE]   (token: $FARM_TOKEN, member)", cancel)
