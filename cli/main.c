/*
 * main.c - the `farm` command: finds the subcommand and runs it. `farm help
 * NAME`, `farm NAME --help` and `farm NAME -h` print NAME's usage here, so
 * no command has to handle them itself.
 */
#include "cli.h"
#include "base/http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_COMMANDS 64

static const cli_command *commands[MAX_COMMANDS];
static int ncommands;
static const char *argv0 = "farm";

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

static int unknown(const char *name)
{
    fprintf(stderr, "farm: unknown command '%s'; `farm help` lists the commands\n", name);
    return 2;
}

int cli_usage(const char *name)
{
    const cli_command *c = find(name);
    if (c)
        fprintf(stderr, "usage: %s\n", c->usage);
    return 2;
}

const char *cli_plural(long long n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* path with "." and ".." components and repeated slashes taken out,
 * lexically (symbolic links stay as typed), in place. */
static void path_clean(char *path)
{
    char *seg[PATH_MAX / 2];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(path + 1, "/", &save); t && n < PATH_MAX / 2;
         t = strtok_r(NULL, "/", &save)) {
        if (!strcmp(t, "."))
            continue;
        if (!strcmp(t, "..")) {
            n -= n > 0;
            continue;
        }
        seg[n++] = t;
    }
    char out[PATH_MAX];
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, k < sizeof(out) ? sizeof(out) - k : 0, "/%s", seg[i]);
    snprintf(path, PATH_MAX, "%s", n ? out : "/");
}

void cli_self(char *out, size_t n)
{
    char cwd[PATH_MAX], self[PATH_MAX];
    size_t len = 0;

    /* found through PATH: the same word works again */
    if (!strchr(argv0, '/') || !getcwd(cwd, sizeof(cwd))) {
        snprintf(out, n, "%s", argv0);
        return;
    }
    if ((size_t)snprintf(self, sizeof(self), "%s%s%s", argv0[0] == '/' ? "" : cwd,
                         argv0[0] == '/' ? "" : "/", argv0) >= sizeof(self)) {
        snprintf(out, n, "%s", argv0);
        return;
    }
    path_clean(self);
    len = strlen(cwd);
    if (len > 1 && !strncmp(self, cwd, len) && self[len] == '/')
        snprintf(out, n, ".%s", self + len); /* under the working directory */
    else
        snprintf(out, n, "%s", self);
}

/* 1 when args (up to a "--") ask for help. */
static int wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 0 && argv[0] && *argv[0])
        argv0 = argv[0];
    if (argc < 2) {
        help(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc > 3) {
            fprintf(stderr, "usage: farm help [COMMAND]\n");
            return 2;
        }
        if (argc == 3) {
            const cli_command *c = find(argv[2]);
            if (!c)
                return unknown(argv[2]);
            printf("usage: %s\n", c->usage);
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
    if (!c)
        return unknown(name);
    if (wants_help(argc - 2, argv + 2)) {
        printf("usage: %s\n", c->usage);
        return 0;
    }
    if (http_global_init() != 0) {
        fprintf(stderr, "farm: cannot initialise the HTTP client\n");
        return 1;
    }
    return c->fn(argc - 1, argv + 1);
}
