/*
 * cmd_prompt.c - `farm prompt --repo NAME --issue N [--config FILE]`: print
 * the prompt an agent would get for the first run of that issue, composed
 * exactly as a run composes it (the farm's guidelines, the repository's
 * instruction files at the base branch, the issue thread from the tracker,
 * the task). Nothing is written to the session log or the tracker.
 */
#include "cli.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/run/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run(int argc, char **argv)
{
    const char *path = NULL, *repo = NULL, *issue_text = NULL;
    config *cfg = NULL;
    farm *f = NULL;
    char *errors = NULL, *prompt = NULL, *end = NULL;
    long long issue;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--repo") && i + 1 < argc)
            repo = argv[++i];
        else if (!strcmp(argv[i], "--issue") && i + 1 < argc)
            issue_text = argv[++i];
        else
            return cli_usage("prompt");
    }
    if (!repo || !issue_text)
        return cli_usage("prompt");
    errno = 0;
    issue = strtoll(issue_text, &end, 10);
    if (errno || !*issue_text || *end || issue <= 0) {
        fprintf(stderr, "farm prompt: --issue takes a positive number, not '%.40s'\n", issue_text);
        return 2;
    }
    log_set_level(LOG_WARN);
    rc = path ? config_load(&cfg, path, &errors) : config_default(&cfg);
    if (rc) {
        fprintf(stderr, "%s", errors && *errors ? errors : farm_error_last());
        if (!errors || !*errors)
            fputc('\n', stderr);
        free(errors);
        return 1;
    }
    if ((rc = farm_open(&f, cfg)) < 0) { /* cfg is the farm's now */
        fprintf(stderr, "farm prompt: %s\n", farm_error_last());
        return 1;
    }
    rc = pipeline_prompt_preview(&prompt, f, repo, (int64_t)issue);
    if (rc) {
        fprintf(stderr, "farm prompt: %s\n", farm_error_last());
    } else {
        fputs(prompt, stdout);
        if (*prompt && prompt[strlen(prompt) - 1] != '\n')
            fputc('\n', stdout);
    }
    free(prompt);
    farm_close(f);
    return rc ? 1 : 0;
}

CLI_COMMAND("prompt", "print the prompt an agent would get for an issue",
            "farm prompt --repo NAME --issue N [--config FILE]\n"
            "  Composes the first-run prompt of issue N of the configured repository NAME as a\n"
            "  run would (guidelines, the repository's AGENTS.md, CLAUDE.md and\n"
            "  .github/copilot-instructions.md, the issue thread, the task) and prints it.",
            run)
