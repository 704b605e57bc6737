/*
 * plan.h - plan first: the agent's first round writes a plan, people
 * approve it, then the implementation starts with the plan in its prompt.
 *
 * A session starts with a plan when its repository says so
 * (repos[].plan), when the issue carries the label "plan", or when it is
 * started with `/farm plan`: its first job is a "plan" job instead of a
 * "run" (ingest.c). The plan run (farm/run/pipeline_plan.c) posts the plan
 * on the issue and leaves the session "awaiting_approval". Then, inside
 * ingest's write:
 * - `/farm approve` from someone with write access: the plan is approved
 *   (a "plan_approved" event holding it) and a "run" job starts the
 *   implementation, whose prompt holds the approved plan;
 * - any other comment on the issue from someone with write access: a new
 *   plan round (debounced like reviews; comments together are one round);
 * - `/farm plan` on a session waiting for approval: a new plan round now;
 * - `/farm retry` on a plan waiting, or on a session whose plan round
 *   failed or was stopped: a new plan round (plan_tx_retry()).
 */
#ifndef FARM_FARM_INTAKE_PLAN_H
#define FARM_FARM_INTAKE_PLAN_H

#include "review.h"

/* The label that asks for a plan first. */
#define PLAN_LABEL "plan"

/* 1 when a session started by ev under trigger `rule` begins with a plan. */
int plan_wanted(const config_repo *repo, const tracker_event *ev, const char *rule);

/* `/farm plan` or `/farm approve` (already in s's log; s may be NULL). */
int plan_tx_command(review_result *out, store_tx *tx, const review_ctx *c, const command *cmd,
                    const store_session *s);

/* Is session s still in its plan phase (no implementation begun): its plan
 * waits for approval, or it ended (failed, cancelled) with a plan round as
 * its newest job? *out 1 or 0. Returns 0 or a store error. */
int plan_tx_phase(int *out, store_tx *tx, const store_session *s);

/* `/farm retry` on a session in its plan phase (plan_tx_phase()): a new
 * plan round, never the implementation (that takes `/farm approve`). A
 * session that ended comes back to "queued" with a "plan" job; a plan
 * waiting for approval gets a new round now. Replies on the issue. */
int plan_tx_retry(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s);

/* A comment (no command) on the issue of session s while its plan waits
 * for approval: from someone with write access, a new plan round. */
int plan_tx_feedback(review_result *out, store_tx *tx, const review_ctx *c, const store_session *s);

#endif
