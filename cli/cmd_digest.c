/*
 * cmd_digest.c - `farm digest`: what a running farm did in a window (GET
 * /api/digest): PRs waiting for review, questions waiting, failures, what
 * finished, what runs and waits now, agent time and cost. A table per
 * section by default, the API's JSON with --json.
 */
#include "cli.h"
#include "remote.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One line of at most n-1 bytes: control characters become spaces, and a
 * cut never splits a UTF-8 sequence. */
static void duration(char *out, size_t n, double secs)
{
    long long s = (long long)secs;
    if (s >= 3600)
        snprintf(out, n, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(out, n, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(out, n, "%llds", s);
}

static void print_section(const char *heading, json_t *list)
{
    size_t i;
    json_t *s;
    if (!json_array_size(list))
        return;
    printf("\n%s (%zu)\n", heading, json_array_size(list));
    printf("  %-6s %-34s %-9s %-7s %-16s %-8s %s\n", "ID", "ISSUE", "STATE", "TESTS", "DIFF",
           "TIME", "TITLE / DETAIL");
    json_array_foreach(list, i, s)
    {
        char issue[64], title[61], diff[80] = "-", took[48], detail[101];
        char repo[48];
        remote_cell(repo, sizeof(repo), remote_str(s, "repo"));
        snprintf(issue, sizeof(issue), "%s#%lld", repo,
                 (long long)json_integer_value(json_object_get(s, "number")));
        remote_cell(title, sizeof(title), remote_str(s, "title"));
        json_t *ds = json_object_get(s, "diffstat");
        if (json_is_object(ds))
            snprintf(diff, sizeof(diff), "%lldf +%lld -%lld",
                     (long long)json_integer_value(json_object_get(ds, "files")),
                     (long long)json_integer_value(json_object_get(ds, "insertions")),
                     (long long)json_integer_value(json_object_get(ds, "deletions")));
        duration(took, sizeof(took), json_number_value(json_object_get(s, "duration_s")));
        printf("  %-6lld %-34.34s %-9s %-7s %-16s %-8s %s\n",
               (long long)json_integer_value(json_object_get(s, "id")), issue,
               remote_str(s, "state"), remote_str(s, "tests"), diff, took, title);
        const char *label = "reason", *more = json_string_value(json_object_get(s, "reason"));
        json_t *step = json_object_get(s, "step");
        if (!more && (more = json_string_value(json_object_get(s, "question"))))
            label = "asks";
        if (!more && (more = json_string_value(json_object_get(s, "pr_url"))))
            label = "pr";
        if (!more && json_is_object(step) && (more = remote_str(step, "name")))
            label = "step";
        if (more) {
            remote_cell(detail, sizeof(detail), more);
            printf("  %-6s %s: %s\n", "", label, detail);
        }
    }
}

static void print_digest(json_t *d)
{
    json_t *t = json_object_get(d, "totals");
    char since[24], until[24], agent[48];
    remote_time_short(since, sizeof(since), json_string_value(json_object_get(d, "since")));
    remote_time_short(until, sizeof(until), json_string_value(json_object_get(d, "until")));
    duration(agent, sizeof(agent), json_number_value(json_object_get(t, "agent_seconds")));
    printf("farm digest %s .. %s UTC\n", since, until);
    printf("  waiting for review %lld, questions waiting %lld, failed %lld, running %lld, "
           "queued %lld\n",
           (long long)json_integer_value(json_object_get(t, "review")),
           (long long)json_integer_value(json_object_get(t, "waiting")),
           (long long)json_integer_value(json_object_get(t, "failed")),
           (long long)json_integer_value(json_object_get(t, "running")),
           (long long)json_integer_value(json_object_get(t, "queued")));
    long long sessions = (long long)json_integer_value(json_object_get(t, "sessions"));
    long long runs = (long long)json_integer_value(json_object_get(t, "runs"));
    printf("  %lld %s touched, %lld %s, agent time %s, cost $%.2f\n", sessions,
           cli_plural(sessions, "session", "sessions"), runs, cli_plural(runs, "run", "runs"),
           agent, json_number_value(json_object_get(t, "cost")));
    print_section("Pull requests waiting for review", json_object_get(d, "review"));
    print_section("Questions waiting for an answer", json_object_get(d, "waiting"));
    print_section("Plans waiting for approval", json_object_get(d, "plans"));
    print_section("Failed", json_object_get(d, "failed"));
    print_section("Done", json_object_get(d, "done"));
    print_section("Cancelled", json_object_get(d, "cancelled"));
    print_section("Running now", json_object_get(d, "running"));
    print_section("Queued", json_object_get(d, "queued"));
}

static int digest(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"since", required_argument, NULL, 'w'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    int json = 0, c, rc = 0;
    buf q = BUF_INIT(4096);
    while ((c = getopt_long(argc, argv, "s:c:w:j", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'w':
            if (!rc)
                rc = remote_query_add(&q, "since", optarg);
            break;
        case 'j':
            json = 1;
            break;
        default:
            buf_free(&q);
            return cli_usage("digest");
        }
    }
    if (rc || optind != argc) {
        buf_free(&q);
        return cli_usage("digest");
    }
    remote r;
    if ((rc = remote_init(&r, server, config_path))) {
        buf_free(&q);
        return rc;
    }
    char path[4200];
    snprintf(path, sizeof(path), "/api/digest%s", buf_cstr(&q));
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
        print_digest(body);
    }
    json_decref(body);
    return 0;
}

CLI_COMMAND("digest", "what a running farm did: PRs waiting, failures, questions, time and cost",
            "farm digest [--since 24h] [--json] [--server URL | --config FILE]   (token: "
            "$FARM_TOKEN)",
            digest)
