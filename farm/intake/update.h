/*
 * update.h - keeping a farm pull request mergeable.
 *
 * When the base branch moves under an open farm pull request, the farm
 * brings the base into the pull request's branch with a merge commit (never
 * a rebase or a force-push: what a reviewer has seen stays). The work is an
 * "update" job of the session, run by the pipeline (farm/run/pipeline.h):
 * merge, an agent round when the merge conflicts, the tests, push.
 *
 * What queues one, inside ingest's write (like review.h):
 * - update_tx_base_pushed(): a push to a configured repository's base branch
 *   (GitHub `push`, Azure DevOps `git.push`): every active session of the repository with an open
 *   pull request, due review.debounce_s later, so a burst of pushes is one
 *   update;
 * - update_tx_unmergeable(): the tracker says the pull request does not
 *   merge cleanly (GitHub `mergeable: false`, Azure DevOps mergeStatus
 *   `conflicts`): due now;
 * - update_tx_command(): `/farm update` on the issue or the pull request.
 * A trigger while an update job of the session waits attaches to it.
 */
#ifndef FARM_FARM_INTAKE_UPDATE_H
#define FARM_FARM_INTAKE_UPDATE_H

#include "review.h"

/* ev is a TEV_BRANCH_PUSHED of c->repo: when it moved the base branch,
 * queue an update for each open pull request of the repository. Returns 0
 * or a store error; out says what was done. */
int update_tx_base_pushed(review_result *out, store_tx *tx, const review_ctx *c);

/* Session s's pull request does not merge cleanly, says the tracker. */
int update_tx_unmergeable(review_result *out, store_tx *tx, const review_ctx *c,
                          const store_session *s);

/* `/farm update` (the command already in s's log; s may be NULL). */
int update_tx_command(review_result *out, store_tx *tx, const review_ctx *c,
                      const store_session *s);

#endif
