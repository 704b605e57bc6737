/*
 * review.h - the review loop and steering from the tracker.
 *
 * farm_ingest() (ingest.c) records every comment, review and close of an
 * issue or pull request into the session's log and then hands the event to
 * the functions here, inside the same transaction:
 *
 * - review_tx_trigger(): a submitted review (changes requested, or
 *   comments), an inline review comment, a comment on the pull request that
 *   mentions the bot, or any comment in an Azure DevOps pull request thread
 *   starts a revision of the session: ONE "revise" job, due a debounce window
 *   (config review.debounce_s) after the first trigger. Triggers that arrive
 *   while that job waits attach to it. A trigger while a run is at work
 *   queues the job behind it (the scheduler runs one job per session at a
 *   time) and the tracker is told so, once per queued job.
 * - review_tx_command(): `/farm run [preset]|retry|stop|status|hold|unhold|help`
 *   (commands.h; the hold and the preset: choice.h).
 * - review_tx_pr_closed(): a merged pull request ends the session "done",
 *   one closed unmerged "cancelled"; a run at work stops.
 *
 * Only people with write access trigger or steer; anyone else who tries gets
 * one polite reply per session (outbox key "s<id>:polite"). Bots, the farm
 * included, never reach these functions.
 *
 * After a revision pushed, the pipeline answers in every review thread it
 * addressed (farm/report/review_replies.h).
 */
#ifndef FARM_FARM_INTAKE_REVIEW_H
#define FARM_FARM_INTAKE_REVIEW_H

#include "commands.h"
#include "farm/config/config.h"
#include "farm/store/store.h"
#include "vcs/tracker/event.h"

#include <stdint.h>

typedef struct farm farm;

/* The event being ingested and what ingest knows about its sender. */
typedef struct review_ctx {
    const config *cfg;
    const config_repo *repo;
    const tracker_event *ev;
    int writer;      /* the sender may trigger and steer */
    int known_other; /* the sender is known NOT to have write access (not just unknown): they
                        get the polite reply */
} review_ctx;

typedef struct review_result {
    int acted;         /* something was queued or changed */
    int start_session; /* ingest should start a new session for the issue (`/farm run` or
                          `/farm retry` where none is active) */
    int64_t job_id;    /* the job created, 0 when none */
    char reason[128];  /* for the delivery's outcome */
} review_result;

/* 1 when ev (a comment, review or review comment on a pull request) asks for
 * a revision: a review that requests changes or comments, an inline review
 * comment, a PR comment that mentions the bot (repo trigger.mention, else
 * "@<bot login>"), or any comment of an Azure DevOps PR thread. */
int review_is_trigger(const config *cfg, const config_repo *repo, const tracker_event *ev);

/* A trigger (review_is_trigger()) already appended to session s's log:
 * queue or attach to the revision. Returns 0 or a store error. */
int review_tx_trigger(review_result *out, store_tx *tx, const review_ctx *c,
                      const store_session *s);

/* A command in a comment on the issue or its PR, already appended to s's
 * log when s is not NULL (s: the active session, else the newest ended one,
 * else NULL). Returns 0 or a store error. */
int review_tx_command(review_result *out, store_tx *tx, const review_ctx *c, const command *cmd,
                      const store_session *s);

/* A comment answering the event in its own thread (the issue or PR it came
 * from), for when the farm has no session there; once per comment and what
 * ("what" names the answer in its outbox key). Returns 0 or a store error. */
int review_tx_thread_reply(store_tx *tx, const review_ctx *c, const char *what, const char *body);

/* Whether session_id has work queued or at work (a run, revision or
 * answer job): *out is 1 or 0. Returns 0 or FARM_EIO. */
int review_tx_work_pending(int *out, store_tx *tx, int64_t session_id);

/* Session s's pull request was closed (ev->merged says how); the
 * "pr_closed" event is in its log already. Returns 0 or a store error. */
int review_tx_pr_closed(review_result *out, store_tx *tx, const review_ctx *c,
                        const store_session *s);

#endif
