/*
 * main.c - the `farm` command: finds the subcommand and runs it.
 */
#include "cli.h"
#include "base/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS 64

static const cli_command *commands[MAX_COMMANDS];
static int ncommands;

void cli_register(const cli_command *c)
{
    if (ncommands < MAX_COMMANDS)
        commands[ncommands++] = c;
}

static const cli_command *find(const char *name)
{
    for (int i = 0; i < ncommands; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cli_command *const *)a)->name, (*(const cli_command *const *)b)->name);
}

static void help(FILE *out)
{
    qsort(commands, (size_t)ncommands, sizeof(commands[0]), by_name);
    fprintf(out,
            "farm %s: turns tracker issues into pull requests\n\nusage: farm COMMAND [ARGS]\n\n"
            "commands:\n",
            FARM_VERSION);
    for (int i = 0; i < ncommands; i++)
        fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n`farm help COMMAND` shows a command's usage.\n");
}

int cli_usage(const char *name)
{
    const cli_command *c = find(name);
    if (c)
        fprintf(stderr, "usage: %s\n", c->usage);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc > 2 && find(argv[2])) {
            printf("usage: %s\n", find(argv[2])->usage);
            return 0;
        }
        help(stdout);
        return 0;
    }
    if (!strcmp(name, "version") || !strcmp(name, "--version")) {
        printf("farm %s\n", FARM_VERSION);
        return 0;
    }
    const cli_command *c = find(name);
    if (!c) {
        fprintf(stderr, "farm: unknown command '%s'; `farm help` lists the commands\n", name);
        return 2;
    }
    if (http_global_init() != 0) {
        fprintf(stderr, "farm: cannot initialise the HTTP client\n");
        return 1;
    }
    return c->fn(argc - 1, argv + 1);
}
