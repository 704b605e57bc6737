/*
 * choice.c - the agent preset an issue runs (see choice.h).
 */
#include "choice.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* An `agent:<preset>` label among the event's labels (and the one it
 * added), or NULL. */
static const char *label_preset(const tracker_event *ev)
{
    size_t pl = strlen(CHOICE_LABEL_PREFIX);
    if (ev->label && !strncasecmp(ev->label, CHOICE_LABEL_PREFIX, pl) && ev->label[pl])
        return ev->label + pl;
    for (size_t i = 0; ev->labels && i < ev->nlabels; i++)
        if (ev->labels[i] && !strncasecmp(ev->labels[i], CHOICE_LABEL_PREFIX, pl) &&
            ev->labels[i][pl])
            return ev->labels[i] + pl;
    return NULL;
}

int choice_preset_pick(const char **preset, const config *cfg, const config_repo *repo,
                       const tracker_event *ev, const command *cmd)
{
    const char *want = NULL;
    if (cmd && cmd->arg[0])
        want = cmd->arg;
    else if (ev)
        want = label_preset(ev);
    if (!want) {
        *preset = config_repo_agent_default(cfg, repo);
        return 1;
    }
    *preset = want;
    if (!config_repo_agent_allowed(cfg, repo, want))
        return 0;
    /* the configured spelling */
    for (size_t i = 0; repo->agents && i < repo->nagents; i++)
        if (!strcasecmp(repo->agents[i], want))
            *preset = repo->agents[i];
    if (!repo->agents)
        *preset = config_agent_default(cfg);
    return 1;
}

char *choice_preset_refusal(const config *cfg, const config_repo *repo, const char *preset)
{
    buf b = BUF_INIT(4096);
    buf_puts(&b, "The agent preset `");
    for (const char *p = preset; p && *p && p - preset < 64; p++)
        if (*p != '`' && (unsigned char)*p >= 0x20)
            buf_putc(&b, *p);
    buf_puts(&b, "` is not allowed for this repository, so nothing was started. Allowed: ");
    if (repo->agents && repo->nagents > 0) {
        for (size_t i = 0; i < repo->nagents; i++)
            buf_printf(&b, "%s`%s`", i ? ", " : "", repo->agents[i]);
    } else {
        buf_printf(&b, "`%s`", config_agent_default(cfg));
    }
    buf_printf(&b,
               " (the default is `%s`). Pick one with `/farm run <preset>` or the label "
               "`agent:<preset>`; to allow more, an admin adds them to this repository's "
               "`agents` list in the farm's config (docs/agents.md).",
               config_repo_agent_default(cfg, repo));
    return buf_detach(&b);
}
