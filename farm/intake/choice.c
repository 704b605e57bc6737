/*
 * choice.c - the hold on an issue and the agent preset it runs (see
 * choice.h).
 */
#include "choice.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store_job.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void hold_key(char *out, size_t n, const char *tracker, const char *repo, int64_t number)
{
    snprintf(out, n, "hold/%s/%s#%lld", tracker, repo, (long long)number);
}

static char *by_of(const char *value)
{
    json_t *j = json_loads(value ? value : "", 0, NULL);
    const char *by = json_string_value(json_object_get(j, "by"));
    char *out = strdup(by && *by ? by : "someone");
    json_decref(j);
    return out;
}

int choice_tx_hold_get(int *held, char **by, store_tx *tx, const char *tracker, const char *repo,
                       int64_t number)
{
    char key[1024], *v = NULL;
    int rc;

    *held = 0;
    if (by)
        *by = NULL;
    hold_key(key, sizeof(key), tracker, repo, number);
    rc = store_tx_setting_get(&v, tx, key);
    if (rc == FARM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    *held = v != NULL;
    if (v && by && !(*by = by_of(v))) {
        free(v);
        farm_error_set("hold: out of memory");
        return FARM_ENOMEM;
    }
    free(v);
    return 0;
}

int choice_tx_hold_set(store_tx *tx, const char *tracker, const char *repo, int64_t number,
                       const char *by, int on)
{
    char key[1024];
    hold_key(key, sizeof(key), tracker, repo, number);
    if (!on)
        return store_tx_setting_delete(tx, key);
    json_t *j =
        json_pack("{s:s,s:I}", "by", by ? by : "someone", "since_ms", (json_int_t)clock_wall_ms());
    char *v = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!v) {
        farm_error_set("hold: out of memory");
        return FARM_ENOMEM;
    }
    int rc = store_tx_setting_set(tx, key, v);
    free(v);
    return rc;
}

int choice_hold_get(char **by, store *s, const char *tracker, const char *repo, int64_t number)
{
    char key[1024];
    store_setting *v = NULL;
    size_t n = 0;
    int rc;

    *by = NULL;
    hold_key(key, sizeof(key), tracker, repo, number);
    if ((rc = store_setting_list(&v, &n, s, key)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v[i].key, key)) { /* the prefix matched; only the key itself counts */
            if (!(*by = by_of(v[i].value)))
                rc = FARM_ENOMEM;
            break;
        }
    }
    store_setting_list_free(v, n);
    return rc;
}

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
