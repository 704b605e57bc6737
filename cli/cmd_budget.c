/*
 * cmd_budget.c - `farm budget`: show the model budgets of a running farm
 * and today's spend, or change them live (PATCH /api/budgets, admin token
 * in FARM_TOKEN). The farm keeps a change in its store's settings, so every
 * process checks the next model call against it and it outlasts a restart;
 * --clear gives a budget back to the config file.
 */
#include "cli.h"
#include "remote.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {"session_usd", "repo_daily_usd", "daily_usd"};
static const char *const flags[] = {"--session-usd", "--repo-daily-usd", "--daily-usd"};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static void print_budgets(json_t *o)
{
    json_t *src = json_object_get(o, "source"), *spend = json_object_get(o, "spend");
    for (size_t i = 0; i < NKINDS; i++) {
        double v = json_number_value(json_object_get(o, kinds[i]));
        const char *from = json_string_value(json_object_get(src, kinds[i]));
        char amount[32];
        if (v > 0)
            snprintf(amount, sizeof(amount), "$%g", v);
        else
            snprintf(amount, sizeof(amount), "none");
        printf("%-15s %-12s (%s)\n", kinds[i], amount, from ? from : "?");
    }
    if (!spend)
        return;
    const char *day = json_string_value(json_object_get(spend, "day"));
    printf("\nspent on %s (UTC): $%.4f\n", day ? day : "?",
           json_number_value(json_object_get(spend, "daily_usd")));
    const char *repo;
    json_t *v;
    json_object_foreach(json_object_get(spend, "repos"), repo, v)
        printf("  %-40s $%.4f\n", repo, json_number_value(v));
}

static int amount(double *out, const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !*s || *end || !isfinite(v) || v < 0) {
        fprintf(stderr, "farm: %s wants an amount of USD >= 0 (0: no budget), not '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* session, repo_daily or daily, with "-" for "_" and "_usd" after it or not. */
static int kind_of(const char *s)
{
    char w[32];
    size_t n = strlen(s);
    if (n >= sizeof(w))
        return -1;
    for (size_t i = 0; i <= n; i++)
        w[i] = s[i] == '-' ? '_' : s[i];
    for (size_t i = 0; i < NKINDS; i++) {
        size_t k = strlen(kinds[i]) - 4; /* without "_usd" */
        if (!strcmp(w, kinds[i]) || (n == k && !strncmp(w, kinds[i], k)))
            return (int)i;
    }
    return -1;
}

static int budget(int argc, char **argv)
{
    static const struct option opts[] = {
        {"session-usd", required_argument, NULL, 'S'},
        {"repo-daily-usd", required_argument, NULL, 'R'},
        {"daily-usd", required_argument, NULL, 'D'},
        {"clear", required_argument, NULL, 'x'},
        {"server", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    const char *server = NULL, *config_path = NULL;
    json_t *change = json_object();
    int json = 0, c, rc = 0;
    double v;

    if (!change)
        return 1;
    while ((c = getopt_long(argc, argv, "s:c:j", opts, NULL)) != -1) {
        int kind = -1;
        switch (c) {
        case 'S':
            kind = 0;
            break;
        case 'R':
            kind = 1;
            break;
        case 'D':
            kind = 2;
            break;
        case 'x': {
            int k = kind_of(optarg);
            if (k < 0) {
                fprintf(stderr,
                        "farm: --clear wants session, repo_daily or daily (or their _usd "
                        "names), not '%s'\n",
                        optarg);
                json_decref(change);
                return 2;
            }
            json_object_set_new(change, kinds[k], json_null());
            break;
        }
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
            return cli_usage("budget");
        }
        if (kind >= 0) {
            if (amount(&v, flags[kind], optarg) != 0) {
                json_decref(change);
                return 2;
            }
            json_object_set_new(change, kinds[kind], json_real(v));
        }
    }
    if (optind < argc) {
        json_decref(change);
        return cli_usage("budget");
    }
    remote r;
    if ((rc = remote_init(&r, server, config_path))) {
        json_decref(change);
        return rc;
    }
    json_t *body = NULL;
    rc = remote_settings(&body, &r, "/api/budgets", "PATCH", change);
    json_decref(change);
    return rc ? rc : remote_print(body, json, print_budgets);
}

CLI_COMMAND("budget", "show the model budgets and today's spend, or change them live",
            "farm budget [--session-usd X] [--repo-daily-usd Y] [--daily-usd Z]\n"
            "                  [--clear session|repo_daily|daily]... [--json]\n"
            "                  [--server URL | --config FILE]   (token: $FARM_TOKEN, admin to "
            "change; 0: no budget; --clear: back to the config's value)",
            budget)
