/*
 * outbox.h - tracker side effects, exactly once.
 *
 * Nothing in the farm calls a tracker's write operations directly. A step
 * that wants a comment, a status update, a reaction, a label or a pull request
 * enqueues an outbox entry in the same store transaction as the state change
 * that calls for it; the sender (a few threads per farm process, entries leased
 * like jobs so several processes can share a store) delivers entries with
 * retries and backoff, honouring the tracker's rate limits, and records the
 * remote id. Every entry has an idempotency key, unique in the store, and the
 * key's hidden marker goes into every body the tracker receives, so after a
 * crash the sender finds what it already posted (comment_find_by_marker, and
 * pr_find_by_branch for pull requests) instead of posting it again.
 *
 * Keys are built by outbox_key() from the session and a name:
 * "s42:started", "s42:pr", "s42:status", "s42:r2:failed" ... (tracker key rules:
 * [A-Za-z0-9._:/=+@-], at most 200 characters).
 *
 * This is the main header of farm/report, the room that owns every tracker
 * side effect: the outbox and its sender threads (outbox.c, outbox_send.c),
 * the status and milestone comments (report.h), the farm's tracker clients
 * (trackers.h) and the replies after a revision (review_replies.h). It may
 * call only the rooms below it: farm/handle, farm/store, farm/stream,
 * farm/config, vcs/tracker and base. It is called by farm/run (the pipeline
 * enqueues its comments, status and review replies and reads the issue
 * thread through the tracker clients), farm/intake (the review loop),
 * farm/digest (the daily digest comment) and farm/farm.c (which stops the
 * sender and closes the clients); above farm/, cli/ starts the sender and
 * webhook/ reads its counts.
 */
#ifndef FARM_FARM_REPORT_OUTBOX_H
#define FARM_FARM_REPORT_OUTBOX_H

#include "farm/store/store.h"
#include "farm/store/store_outbox.h"

#include <stddef.h>
#include <stdint.h>

typedef struct farm farm;

/* Placeholders a PR entry's then_comment may hold. */
#define OUTBOX_PR_URL    "{{pr_url}}"
#define OUTBOX_PR_NUMBER "{{pr_number}}"

/* Build "s<session>:<name>" into out (at least 256 bytes). */
void outbox_key(char *out, size_t n, int64_t session_id, const char *name);

/* Enqueue inside a store transaction. A key that is already in the outbox is
 * not an error: nothing is written and 0 is returned (that is what makes a
 * repeated step harmless). Returns 0, FARM_EINVALID (bad kind, key or
 * payload) or FARM_EIO. */
int outbox_tx_enqueue(store_tx *tx, int64_t session_id, const char *kind, const char *key,
                      const char *payload_json);

/* The same as a write of its own (group-committed). */
int outbox_enqueue(store *s, int64_t session_id, const char *kind, const char *key,
                   const char *payload_json);

/* The session's sticky status comment, as a STATUS entry under the next
 * free status key ("s<id>:status", then "s<id>:status:2", ...): every call
 * is one more update, older pending ones are coalesced away by the sender.
 * payload_json is {"body": md} (plus "installation_id" where needed). The
 * tracker-side marker of every status update is "s<id>:status", so they all
 * land in the one comment. Returns what outbox_tx_enqueue() returns. */
int outbox_tx_status(store_tx *tx, int64_t session_id, const char *payload_json);
int outbox_status(store *s, int64_t session_id, const char *payload_json);

/*
 * The sender. Workers lease due entries (see store_outbox.h), call the
 * tracker, and record the outcome. FARM_EAGAIN waits max(the tracker's
 * retry-after, the backoff); FARM_EIO, FARM_ETIMEOUT and other transient
 * errors wait the backoff (exponential with jitter; after no answer at all,
 * at least no_answer_ms, because the request may still land); permanent
 * errors (FARM_EAUTH, FARM_EINVALID, FARM_ENOTFOUND, ...) fail the entry
 * after permanent_attempts tries; any entry fails after max_attempts.
 * Before creating anything on a second or later attempt the sender looks
 * for it first: the comment's marker, the PR's branch. A status comment is
 * always looked for by its marker until its id is known.
 *
 * GitHub App: a call is made as an installation. Sessions do not keep its
 * id, so whoever enqueues puts the delivery's installation_id in the
 * payload ("installation_id": n; a PR's then_comment inherits it); without
 * one the client asks GitHub for the repository's installation (one
 * request, remembered).
 */
typedef struct outbox_opts {
    int workers;            /* sender threads; default 4 */
    int64_t lease_ms;       /* how long a lease lasts; default 300000 */
    int64_t backoff_ms;     /* first retry delay; default 2000 */
    int64_t max_backoff_ms; /* cap on the delay; default 600000 */
    int64_t no_answer_ms;   /* least wait after a timeout or a lost connection; default 10000 */
    int max_attempts;       /* then failed; default 12 */
    int permanent_attempts; /* tries on a permanent error; default 3 */
    int64_t poll_ms;        /* idle check for entries enqueued elsewhere; default 1000 */
    const char *owner;      /* lease owner prefix; default "<host>:<pid>:<start ms>" */
    int look_first;         /* look for a comment before creating it on the first attempt
                               too (default 0: on retries only; bench/outbox measures it) */
} outbox_opts;

#define OUTBOX_OPTS_INIT                                                                           \
    {                                                                                              \
        4, 300000, 2000, 600000, 10000, 12, 3, 1000, NULL, 0                                       \
    }

/* Start and stop the sender threads of a farm. Stopping lets an entry being
 * sent finish (bounded by the HTTP timeouts) and leaves the rest pending.
 * outbox_start() on a started farm and outbox_stop() on a stopped one do
 * nothing. Returns 0, FARM_ENOMEM or FARM_EIO (a thread would not start). */
int outbox_start(farm *f);
int outbox_start_opts(farm *f, const outbox_opts *opts);
void outbox_stop(farm *f);

/* Wake the sender now (after a commit that enqueued something). */
void outbox_kick(farm *f);

/* Counts for /metrics and `farm status`. */
int outbox_stats_get(outbox_stats *out, store *s);

#endif
