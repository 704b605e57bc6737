/*
 * ci.h - the tracker's CI reaching the farm (the CI fix loop's intake).
 *
 * farm_ingest() hands every TEV_CHECK_COMPLETED event (a GitHub check run,
 * check suite, workflow run or commit status completing; an Azure DevOps
 * build completing) to ci_tx_check(), inside its transaction. When the
 * repository has `ci.fix` on and the check is on the pull request of an
 * active farm session, the event goes into the session's log ("ci_check")
 * and the session's one queued "ci" job is put off to ci.settle_s from now
 * (or made, when there is none): the checks of a commit finish one by one,
 * and the job looks at them all once they have been quiet that long
 * (farm/run/pipeline_ci.c decides there). Checks on any other pull request
 * or branch are recorded as ignored and start nothing.
 */
#ifndef FARM_FARM_INTAKE_CI_H
#define FARM_FARM_INTAKE_CI_H

#include "review.h"

/* A completed check (c->ev->kind == TEV_CHECK_COMPLETED). *out says what
 * happened (acted, the job made, the reason); *session_id is the session
 * it concerns, 0 when none. Returns 0 or a store error. */
int ci_tx_check(review_result *out, int64_t *session_id, store_tx *tx, const review_ctx *c);

/* The issue number in a farm branch name ("farm/12-fix-typo" -> 12), 0 when
 * the name is not one. */
int64_t ci_branch_issue(const char *branch);

#endif
