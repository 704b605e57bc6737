/*
 * pipeline_plan.c - a "plan" run: the agent's first round writes a plan
 * and changes nothing (farm/intake/plan.h says what starts one and what
 * approves it).
 *
 * The run is fetch, worktree (at the base, for the agent to read), setup,
 * one agent round whose prompt asks for a plan (templates/plan.md) in the
 * file FARM_PLAN_FILE names: <run dir>/out/plan.md, outside the worktree,
 * bound into the sandbox like the summary. The farm reads it, posts it on
 * the issue (outbox key "r<run>:plan") and leaves the session
 * "awaiting_approval"; the worktree and whatever the agent changed in it
 * go. The approved plan reaches the implementation's prompt through
 * pl_plan_find().
 */
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/store/store_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_MAX (64u << 10) /* bytes of a plan kept and posted */

void pl_plan_path(char *out, size_t n, const pl_run *r)
{
    snprintf(out, n, "%s/plan.md", r->out_dir);
}

/* The "plan" text of the newest event of `kind` (NULL when none). */
static int newest_text(char **out, pl_run *r, const char *kind, const char *field)
{
    const char *kinds[] = {kind, NULL};
    store_event *e = NULL;
    int rc;

    *out = NULL;
    if ((rc = store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0)) || !e)
        return rc;
    json_t *b = json_loads(e->body, 0, NULL);
    const char *text = field ? json_string_value(json_object_get(b, field)) : "";
    if (text && !(*out = strdup(text)))
        rc = FARM_ENOMEM;
    json_decref(b);
    store_event_list_free(e, 1);
    return rc;
}

int pl_plan_find(char **out, pl_run *r, const char *kind)
{
    char *approved = NULL;
    int rc;

    *out = NULL;
    if (!strcmp(kind, "plan"))
        return newest_text(out, r, "plan", "plan");
    /* the implementation: only once a plan was approved */
    if ((rc = newest_text(&approved, r, "plan_approved", NULL)) || !approved)
        return rc;
    free(approved);
    return newest_text(out, r, "plan", "plan");
}

int pl_plan_finish(pl_run *r, const pl_progress *p)
{
    char path[PATH_MAX + 16], name[64];
    buf body = BUF_INIT(PLAN_MAX + 4096);
    pl_tx t;
    int rc;

    pl_plan_path(path, sizeof(path), r);
    char *plan = pl_read_agent_file(path, PLAN_MAX);
    if (!plan) {
        char reason[400];
        snprintf(reason, sizeof(reason),
                 "the agent wrote no plan (the file FARM_PLAN_FILE names is missing or empty%s); "
                 "comment `/farm plan` to ask again",
                 p->agent_exit ? " and the agent exited with an error" : "");
        return pl_run_fail(r, reason, p->agent_tail);
    }
    buf_printf(&body, "📝 **A plan for this issue** (run %lld), waiting for approval:\n\n",
               (long long)r->run_no);
    pl_put_defused(&body, plan);
    buf_puts(&body, "\n\n---\nComment `/farm approve` to start the implementation with this plan. "
                    "Any other comment here (from someone with write access) asks for a revised "
                    "plan.");
    if (r->cfg->public_url)
        buf_printf(&body, " [Session log](%s/sessions/%lld).", r->cfg->public_url,
                   (long long)r->s->id);
    pl_tx_init(&t, r);
    t.state = "awaiting_approval";
    t.step_words = "the plan waits for approval";
    t.skip_if_final = 1;
    pl_tx_event(&t, "plan", json_pack("{s:I,s:s}", "run", (json_int_t)r->run_no, "plan", plan));
    pl_tx_event(&t, "run_finished", pl_finished_body(r, "plan", NULL));
    snprintf(name, sizeof(name), "r%lld:plan", (long long)r->run_no);
    pl_tx_outbox(&t, OUTBOX_COMMENT, name, pl_comment_payload(buf_cstr(&body)));
    rc = pl_tx_commit(&t);
    buf_free(&body);
    free(plan);
    if (rc == 0)
        log_info("plan posted", "repo", r->repo->name);
    pl_cleanup_dirs(r);
    return rc;
}
