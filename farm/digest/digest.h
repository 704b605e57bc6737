/*
 * digest.h - what happened, in one place: the review queue's facts about
 * each session and the digest of a time window.
 *
 * farm/digest owns those facts, the digest (digest.c) and the daily digest
 * comment (digest_daily.c). It calls the rooms below it: farm/report (the
 * daily comment goes through the outbox), farm/handle, farm/store and base.
 * The HTTP front calls it (webhook/route_api.c, route_digest.c), and the CLI
 * starts and stops the daily digest (cli/serve_common.c).
 *
 * A session row says its state and counters; what a reviewer wants to see
 * (did the tests pass, how big is the diff, which step is running, why did it
 * fail, what does the agent ask) is in its log. digest_sessions_annotate()
 * derives those facts from each session's newest telling events and adds
 * them to the session's JSON (GET /api/sessions, /api/digest, the web UI).
 * digest_build() gathers the window: PRs waiting for review, questions
 * waiting, failures, what finished, what runs and waits now, and the agent
 * time and cost (GET /api/digest, `farm digest`). digest_markdown() renders
 * a digest as the daily comment; digest_daily_*() posts it once a day when
 * the config has a "digest" section.
 */
#ifndef FARM_FARM_DIGEST_DIGEST_H
#define FARM_FARM_DIGEST_DIGEST_H

#include "farm/store/store.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct farm farm;

/* Sessions per section of a digest at most (newest first). */
#define DIGEST_SECTION_MAX 200

/* A session's base JSON: id, tracker, repo, number, title, url, state,
 * branch, pr_number, pr_url, pr_draft (true when the farm opened its pull
 * request as a draft), pr_draft_reason (why, in a few words, or null), runs,
 * agent_seconds (to the millisecond), cost (USD, to the millionth),
 * last_seq, created, updated and links {self, stream, ui}. New reference, or
 * NULL on ENOMEM. */
json_t *digest_session_json(const store_session *s);

/* Add to objs[i] (the JSON of sessions[i]) the fields derived from its log:
 *   "step":      {"name", "status" (started/done/failed), "since"} or null
 *   "tests":     "passed", "failed" or null (no test result yet)
 *   "rounds":    test rounds of the latest run (0: none)
 *   "diffstat":  {"files", "insertions", "deletions"} or null
 *   "reason":    why it failed, or null
 *   "question":  the question waiting for an answer, or null
 *   "plan":      the plan waiting for approval (awaiting_approval), or null
 *   "duration_s": seconds from creation to the end of its latest run (or to
 *                 now while it works), to the millisecond
 * n is at most STORE_LIST_MAX. Returns 0, FARM_EINVALID, FARM_ENOMEM or
 * FARM_EIO (objs are then partly annotated; the caller answers an error). */
int digest_sessions_annotate(json_t *const *objs, const store_session *sessions, size_t n, store *s,
                             int64_t now_ms);

/* The digest of the window [since_ms, now_ms] as JSON:
 *   {"since", "until",
 *    "review": [...], "waiting": [...], "plans": [...], "failed": [...],
 *    "done": [...], "cancelled": [...], "running": [...], "queued": [...],
 *    "totals": {"sessions", "prs", "failed", "waiting", "review", "plans",
 *               "running", "queued", "runs", "agent_seconds", "cost"}}
 * Sessions waiting on people (review, waiting, plans: awaiting_approval) and work in progress
 * (running: preparing, running, testing, pushing, revising; queued) are
 * listed whenever they started; ended ones (failed, done, cancelled) only
 * when updated in the window. Each list is annotated sessions, newest first,
 * at most DIGEST_SECTION_MAX. *out is a new reference (json_decref). Returns
 * 0, FARM_ENOMEM or FARM_EIO. */
int digest_build(json_t **out, store *s, int64_t since_ms, int64_t now_ms);

/* The digest as Markdown (the daily comment): a headline of totals, then a
 * section per non-empty list with a line per session linking to its issue,
 * PR and page under public_url (may be NULL). *out is a heap string the
 * caller frees. Returns 0 or FARM_ENOMEM. */
int digest_markdown(char **out, const json_t *digest, const char *public_url);

/* The daily digest comment: when the config has "digest", a thread posts
 * the digest of the last 24 hours as a comment on the configured issue once
 * a day, at hour_utc, through the outbox (key "digest:YYYY-MM-DD", so a
 * restart or a second process never posts a day twice). The comment hangs
 * on a session of that issue (the newest one, or a new one that is at once
 * "done"), because outbox entries target a session's issue.
 * digest_daily_start() sets *out to NULL and does nothing without the
 * config section; otherwise *out is a handle that digest_daily_stop() stops
 * (waking and joining the thread) and frees; NULL is accepted. Returns 0,
 * FARM_ENOMEM or FARM_EIO. */
typedef struct digest_daily digest_daily;
int digest_daily_start(digest_daily **out, farm *f);
void digest_daily_stop(digest_daily *d);

/* Post the digest for the day of now_ms now, whatever the hour (what the
 * thread calls at hour_utc; tests call it directly). Returns 0 (also when
 * that day's digest was enqueued before), FARM_EINVALID (no digest config)
 * or the store's error. */
int digest_daily_post(farm *f, int64_t now_ms);

#endif
