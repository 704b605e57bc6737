/*
 * cmd_sessions.c - `farm sessions`: list the sessions of a running farm, or
 * show one, as a table or as JSON.
 */
#include "cli.h"
#include "remote.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The session's state, "review (draft)" when its pull request is a draft
 * (pr_draft; plain when the farm does not say). */
static const char *state_shown(char *out, size_t n, json_t *s)
{
    snprintf(out, n, "%s%s", remote_str(s, "state"),
             json_is_true(json_object_get(s, "pr_draft")) ? " (draft)" : "");
    return out;
}

static void print_session_table(json_t *list)
{
    size_t i;
    json_t *s;
    printf("%-6s %-14s %-28s %-7s %-19s %s\n", "ID", "STATE", "REPO", "ISSUE", "UPDATED", "TITLE");
    json_array_foreach(list, i, s)
    {
        char repo[29], title[61];
        remote_cell(repo, sizeof(repo), remote_str(s, "repo"));
        remote_cell(title, sizeof(title), remote_str(s, "title"));
        char updated[24];
        remote_time_short(updated, sizeof(updated),
                          json_string_value(json_object_get(s, "updated")));
        char state[40];
        printf("%-6lld %-14s %-28s #%-6lld %-19s %s\n",
               (long long)json_integer_value(json_object_get(s, "id")),
               state_shown(state, sizeof(state), s), repo,
               (long long)json_integer_value(json_object_get(s, "number")), updated, title);
    }
    if (json_array_size(list) == 0)
        printf("(no sessions)\n");
}

static void print_session(json_t *s)
{
    char state[40];
    printf("session %lld: %s\n", (long long)json_integer_value(json_object_get(s, "id")),
           state_shown(state, sizeof(state), s));
    printf("  issue    %s#%lld %s\n", remote_str(s, "repo"),
           (long long)json_integer_value(json_object_get(s, "number")), remote_str(s, "title"));
    printf("  url      %s\n", remote_str(s, "url"));
    printf("  branch   %s\n", remote_str(s, "branch"));
    printf("  agent    %s\n", remote_str(s, "agent"));
    if (json_is_object(json_object_get(s, "hold")))
        printf("  hold     on hold (by %s): nothing new starts until /farm unhold\n",
               json_string_value(json_object_get(json_object_get(s, "hold"), "by"))
                   ? json_string_value(json_object_get(json_object_get(s, "hold"), "by"))
                   : "someone");
    if (json_integer_value(json_object_get(s, "pr_number")))
        printf("  pr       #%lld %s%s%s%s\n",
               (long long)json_integer_value(json_object_get(s, "pr_number")),
               remote_str(s, "pr_url"),
               json_is_true(json_object_get(s, "pr_draft")) ? " (a draft: " : "",
               json_is_true(json_object_get(s, "pr_draft"))
                   ? (json_string_value(json_object_get(s, "pr_draft_reason"))
                          ? json_string_value(json_object_get(s, "pr_draft_reason"))
                          : "not ready")
                   : "",
               json_is_true(json_object_get(s, "pr_draft")) ? ")" : "");
    long long runs = (long long)json_integer_value(json_object_get(s, "runs"));
    double secs = json_number_value(json_object_get(s, "agent_seconds"));
    printf("  runs     %lld (%.0f agent %s, $%.2f)\n", runs, secs,
           cli_plural((long long)(secs + 0.5), "second", "seconds"),
           json_number_value(json_object_get(s, "cost")));
    printf("  created  %s\n  updated  %s\n", remote_str(s, "created"), remote_str(s, "updated"));
}

static int sessions(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"state", required_argument, NULL, 'S'},  {"repo", required_argument, NULL, 'r'},
        {"since", required_argument, NULL, 'w'},  {"limit", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},         {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    int json = 0, c, rc = 0;
    buf q = BUF_INIT(4096);
    while ((c = getopt_long(argc, argv, "s:c:S:r:w:n:j", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'S':
            if (!rc)
                rc = remote_query_add(&q, "state", optarg);
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
            return cli_usage("sessions");
        }
    }
    const char *id = optind < argc ? argv[optind] : NULL;
    if (rc || argc - optind > 1 || (id && strspn(id, "0123456789") != strlen(id))) {
        buf_free(&q);
        return cli_usage("sessions");
    }
    remote r;
    if ((rc = remote_init(&r, server, config_path))) {
        buf_free(&q);
        return rc;
    }
    char path[4200], nf[700];
    snprintf(nf, sizeof(nf), "no session %.40s on %s; `farm sessions` lists them", id ? id : "",
             r.server);
    r.not_found = id ? nf : NULL;
    if (id)
        snprintf(path, sizeof(path), "/api/sessions/%s", id);
    else
        snprintf(path, sizeof(path), "/api/sessions%s", buf_cstr(&q));
    buf_free(&q);
    json_t *body = NULL;
    if ((rc = remote_get_json(&body, &r, path)))
        return rc;
    if (json) {
        char *text = json_dumps(body, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    } else if (id) {
        print_session(body);
    } else {
        print_session_table(json_object_get(body, "sessions"));
    }
    json_decref(body);
    return 0;
}

CLI_COMMAND("sessions", "list the sessions of a running farm (or show one)",
            "farm sessions [ID] [--state S] [--repo R] [--since 24h] [--limit N] [--json]\n"
            "                     [--server URL | --config FILE]   (token: $FARM_TOKEN)",
            sessions)
