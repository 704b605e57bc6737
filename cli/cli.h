/*
 * cli.h - how a `farm` subcommand registers itself.
 *
 * Each command lives in its own cli/cmd_*.c and declares itself with
 * CLI_COMMAND(); main.c finds it by name. The executable links every file in
 * cli/, so there is no table to edit when a command is added.
 *
 *     static int run(int argc, char **argv) { ... return 0; }
 *     CLI_COMMAND("sessions", "list sessions", "farm sessions [--json]", run)
 *
 * argv[0] is the command's name; a command returns the process exit status.
 * Nested commands ("config check") register as "config" and look at argv[1].
 */
#ifndef FARM_CLI_CLI_H
#define FARM_CLI_CLI_H

#include <stddef.h>

typedef int (*cli_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for `farm help` */
    const char *usage;   /* usage lines for `farm help NAME` and on a usage error */
    cli_fn fn;
} cli_command;

void cli_register(const cli_command *c);

/* Print "usage: ..." for the named command to stderr; returns 2 (the exit
 * status for a usage error). */
int cli_usage(const char *name);

/* one when n is 1, else many: "1 job", "2 jobs". */
const char *cli_plural(long long n, const char *one, const char *many);

/* How to run this farm binary again from the working directory, for the
 * commands a command suggests: the word it was run by when found through
 * PATH ("farm"), else the path it was run by, relative to the working
 * directory when it lies under it ("./build/farm"), absolute otherwise
 * (symbolic links as typed). Into out (n bytes). */
void cli_self(char *out, size_t n);

#define CLI_COMMAND_CAT2(a, b) a##b
#define CLI_COMMAND_CAT(a, b)  CLI_COMMAND_CAT2(a, b)
#define CLI_COMMAND(name_, summary_, usage_, fn_)                                                  \
    static const cli_command CLI_COMMAND_CAT(cli_cmd_, __LINE__) = {name_, summary_, usage_, fn_}; \
    __attribute__((constructor)) static void CLI_COMMAND_CAT(cli_reg_, __LINE__)(void)             \
    {                                                                                              \
        cli_register(&CLI_COMMAND_CAT(cli_cmd_, __LINE__));                                        \
    }

#endif
