/*
 * cmd_config.c - `farm config check [--config FILE]`: load and check a
 * config the way `farm serve` would, print every problem (one per line, each
 * naming its key) on stderr and exit 1, or print a short summary and exit 0.
 * Beyond the file itself it checks what `farm serve` would refuse at start
 * and that the data directory can be created.
 * Without --config it checks the embedded defaults.
 */
#include "cli.h"
#include "base/error.h"
#include "farm/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void summary(const config *c)
{
    size_t ngithub = 0, nazure = 0, nlocal = 0;

    for (size_t i = 0; i < c->nrepos; i++) {
        const char *t = c->repos[i].tracker;
        ngithub += !strcmp(t, "github");
        nazure += !strcmp(t, "azure");
        nlocal += !strcmp(t, "local");
    }
    printf("config %s: ok\n", c->path ? c->path : "(embedded defaults)");
    printf("  listen:   %s%s\n", c->listen,
           config_listen_is_loopback(c) ? " (loopback)" : " (beyond loopback)");
    printf("  data_dir: %s\n", c->data_dir);
    printf("  trackers:");
    if (!c->github.enabled && !c->azure.enabled)
        printf(" none");
    if (c->github.enabled)
        printf(" github (%s, bot %s%s)", c->github.api_url, c->github.bot_login,
               c->github.token || c->github.app_id ? "" : ", no token");
    if (c->azure.enabled)
        printf(" azure (%s)", c->azure.org_url);
    printf("\n");
    printf("  repos:    %zu", c->nrepos);
    if (c->nrepos)
        printf(" (github %zu, azure %zu, local %zu)", ngithub, nazure, nlocal);
    printf("\n");
    for (size_t i = 0; i < c->nrepos; i++)
        printf("    %s %s\n", c->repos[i].tracker, c->repos[i].name);
    printf("  tokens:   %zu\n", c->ntokens);
    printf("  agent:    %s\n", c->agent.preset ? c->agent.preset : c->agent.command[0]);
}

static int check(const char *path)
{
    config *c = NULL;
    char *errors = NULL;
    int rc, status = 0;

    rc = path ? config_load(&c, path, &errors) : config_default(&c);
    if (rc) {
        if (errors && *errors)
            fputs(errors, stderr);
        else
            fprintf(stderr, "%s\n", farm_error_last());
        free(errors);
        return 1;
    }
    /* what `farm serve` would refuse at start is an error here too */
    if (config_check_serve(c, &errors)) {
        fputs(errors ? errors : "the config is not safe to serve\n", stderr);
        status = 1;
    }
    free(errors);
    errors = NULL;
    if (config_data_dir_check(c, &errors)) {
        fputs(errors ? errors : "data_dir: cannot be used\n", stderr);
        status = 1;
    }
    free(errors);
    if (status == 0)
        summary(c);
    config_free(c);
    return status;
}

static int run(int argc, char **argv)
{
    const char *path = NULL;

    if (argc < 2 || strcmp(argv[1], "check") != 0)
        return cli_usage("config");
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
        else
            return cli_usage("config");
    }
    return check(path);
}

CLI_COMMAND("config", "check a config file", "farm config check [--config FILE]", run)
