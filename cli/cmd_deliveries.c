/*
 * cmd_deliveries.c - `farm deliveries`: the webhook deliveries a running
 * farm received, newest first, as a table or as JSON.
 */
#include "cli.h"
#include "remote.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_table(json_t *list)
{
    size_t i;
    json_t *d;
    printf("%-6s %-19s %-7s %-22s %-10s %-28s %-9s %s\n", "ID", "RECEIVED", "TRACKER", "EVENT",
           "ACTION", "SUBJECT", "OUTCOME", "SESSION/REASON");
    json_array_foreach(list, i, d)
    {
        char event[23], action[11], subject[64], reason[80];
        remote_cell(event, sizeof(event), remote_str(d, "event"));
        remote_cell(action, sizeof(action), remote_str(d, "action"));
        long long number = (long long)json_integer_value(json_object_get(d, "number"));
        char repo[40];
        remote_cell(repo, sizeof(repo), remote_str(d, "repo"));
        if (number)
            snprintf(subject, sizeof(subject), "%s#%lld", repo, number);
        else
            snprintf(subject, sizeof(subject), "%s", repo);
        long long session = (long long)json_integer_value(json_object_get(d, "session"));
        if (session)
            snprintf(reason, sizeof(reason), "session %lld", session);
        else
            remote_cell(reason, sizeof(reason), remote_str(d, "reason"));
        char received[24];
        remote_time_short(received, sizeof(received),
                          json_string_value(json_object_get(d, "received")));
        printf("%-6lld %-19s %-7s %-22s %-10s %-28.28s %-9s %s\n",
               (long long)json_integer_value(json_object_get(d, "id")), received,
               remote_str(d, "tracker"), event, action, subject, remote_str(d, "outcome"), reason);
    }
    if (json_array_size(list) == 0)
        printf("(no deliveries)\n");
}

static int deliveries(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"tracker", required_argument, NULL, 't'},
        {"outcome", required_argument, NULL, 'o'},
        {"repo", required_argument, NULL, 'r'},
        {"since", required_argument, NULL, 'w'},
        {"limit", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    int json = 0, c, rc = 0;
    buf q = BUF_INIT(4096);
    while ((c = getopt_long(argc, argv, "s:c:t:o:r:w:n:j", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 't':
            if (!rc)
                rc = remote_query_add(&q, "tracker", optarg);
            break;
        case 'o':
            if (!rc)
                rc = remote_query_add(&q, "outcome", optarg);
            break;
        case 'r':
            if (!rc)
                rc = remote_query_add(&q, "repo", optarg);
            break;
        case 'w':
            if (!rc)
                rc = remote_query_add(&q, "since", optarg);
            break;
        case 'n':
            if (!rc)
                rc = remote_query_add(&q, "limit", optarg);
            break;
        case 'j':
            json = 1;
            break;
        default:
            buf_free(&q);
            return cli_usage("deliveries");
        }
    }
    if (rc || optind < argc) {
        buf_free(&q);
        return cli_usage("deliveries");
    }
    remote r;
    if ((rc = remote_init(&r, server, config_path))) {
        buf_free(&q);
        return rc;
    }
    char path[4200];
    snprintf(path, sizeof(path), "/api/deliveries%s", buf_cstr(&q));
    buf_free(&q);
    json_t *body = NULL;
    if ((rc = remote_get_json(&body, &r, path)))
        return rc;
    if (json) {
        char *text = json_dumps(body, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    } else {
        print_table(json_object_get(body, "deliveries"));
    }
    json_decref(body);
    return 0;
}

CLI_COMMAND("deliveries", "list the webhook deliveries a running farm received",
            "farm deliveries [--tracker T] [--outcome O] [--repo R] [--since 24h] [--limit N]\n"
            "                       [--json] [--server URL | --config FILE]   (token: $FARM_TOKEN)",
            deliveries)
