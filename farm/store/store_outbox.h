/*
 * store_outbox.h - the outbox table: its records, states and leases. It
 * calls the store's backend (store_backend.h: the outbox table; all the SQL
 * is in sql_outbox.c, for both backends); the sender (farm/report/outbox.c,
 * outbox_send.c) and its tests call it. Callers that only enqueue use
 * farm/report/outbox.h.
 *
 * An entry is "pending" until it is "sent" (remote_id recorded), "failed"
 * (gave up: last_error says why), "skipped" (the tracker has no such thing,
 * e.g. a reaction on an Azure work item) or "superseded" (a status update
 * overtaken by a newer one, with nothing else of its session in between,
 * before it went out: the status comment still appears where it was first
 * enqueued). A pending entry is leased like a job:
 * lease_owner and lease_expires_ms in the row say who is sending it until
 * when, so several farm processes can share a store, and an expired lease
 * (its sender died) is simply taken over. Only the oldest pending entry of a
 * session (its head) can be leased: a session's entries go out in enqueue
 * order while other sessions proceed independently.
 */
#ifndef FARM_FARM_STORE_STORE_OUTBOX_H
#define FARM_FARM_STORE_STORE_OUTBOX_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* Entry kinds, and the JSON payload each takes. The target issue or PR is the
 * session's (tracker, repo, number) unless the payload says otherwise.
 *
 * OUTBOX_COMMENT   {"body": md, "on_pr": bool}
 *                  a new comment (a milestone: started, PR opened, failed,
 *                  question, a reply to a command). The one kind that may
 *                  have no session (session_id 0: a reply to a command on an
 *                  issue or PR the farm has no session for); the payload then
 *                  names the target: "tracker", "repo", "number" and "is_pr".
 * OUTBOX_STATUS    {"body": md}
 *                  the session's one sticky status comment: created the first
 *                  time, edited in place afterwards. Status entries coalesce:
 *                  when a newer one is pending, an older one is skipped.
 * OUTBOX_REACT     {"comment_id": n, "reaction": "eyes"}   comment_id 0: the issue itself
 * OUTBOX_LABELS    {"add": [..], "remove": [..]}
 * OUTBOX_PR        {"title", "body", "head", "base", "draft": bool}
 *                  open the pull request for the session's branch, or update
 *                  its title and body when one is open already. On success the
 *                  session's pr_number and pr_url are set and, when the payload
 *                  has "state_after", the session moves to that state; then
 *                  "then_comment" (a body), when present, is enqueued as an
 *                  OUTBOX_COMMENT with key "<key>:comment"; in it
 *                  OUTBOX_PR_URL and OUTBOX_PR_NUMBER are replaced by the
 *                  PR's URL and number (unknown when the comment is written).
 * OUTBOX_REVIEW_REPLY {"comment_id": n, "body": md}   reply in a review thread
 */
#define OUTBOX_COMMENT      "comment"
#define OUTBOX_STATUS       "status"
#define OUTBOX_REACT        "react"
#define OUTBOX_LABELS       "labels"
#define OUTBOX_PR           "pr"
#define OUTBOX_REVIEW_REPLY "review_reply"

#define OUTBOX_PAYLOAD_MAX (1u << 20) /* bytes of one entry's JSON payload */

/* One row of the outbox. Strings are heap copies owned by the record. */
typedef struct outbox_entry {
    int64_t id;
    int64_t session_id;
    char *kind;          /* OUTBOX_COMMENT, OUTBOX_STATUS, ... */
    char *key;           /* the idempotency key */
    char *payload;       /* JSON object text */
    char *state;         /* "pending", "sent", "failed", "superseded" */
    int64_t attempts;    /* leases taken so far (the current one included) */
    int64_t next_try_ms; /* not before then */
    char *remote_id;     /* what the tracker gave back (comment id, PR number), or NULL */
    char *last_error;    /* or NULL */
    char *lease_owner;   /* or NULL */
    int64_t lease_expires_ms;
    int64_t created_ms;
    int64_t updated_ms;
} outbox_entry;

/* Free one entry, or an array of n. NULL is accepted. */
void outbox_entry_free(outbox_entry *e);
void outbox_entry_list_free(outbox_entry *v, size_t n);

/* Insert a pending entry, due now. A key already present is left alone and
 * 0 is returned (*inserted, when not NULL, says which). Arguments are
 * checked by outbox_tx_enqueue(); this only writes. Returns 0 or FARM_EIO. */
int store_tx_outbox_insert(int *inserted, store_tx *tx, int64_t session_id, const char *kind,
                           const char *key, const char *payload_json);

/* The key for a session's next status update: "s<id>:status" for the first,
 * "s<id>:status:<n>" after. Written into out (at least 256 bytes). */
int store_tx_outbox_status_key(char *out, size_t n, store_tx *tx, int64_t session_id);

/* Take the lease on the next entry that is due at now_ms: pending, not
 * waiting, not leased by anyone else, and its session's head. On the way,
 * status entries with a newer pending status entry of the same session are
 * marked "superseded". The lease is owner's until now_ms + lease_ms and
 * attempts is incremented. *out is freed with outbox_entry_free(). Returns
 * 0, FARM_ENOTFOUND (nothing is due) or FARM_EIO. */
int store_outbox_lease(outbox_entry **out, store *s, const char *owner, int64_t now_ms,
                       int64_t lease_ms);

/* The earliest time at which a session's head entry may become due (its
 * next try or the end of its lease; entries behind a waiting head wait with
 * it), or 0 when nothing is pending. Read only. */
int store_outbox_next_due(int64_t *out_ms, store *s);

/* Record a delivery: state "sent" with the remote id. Done whoever holds the
 * lease now (the side effect happened; recording it is always right), but
 * only while the entry is pending. Returns 0, FARM_ENOTFOUND (not pending
 * any more) or FARM_EIO. */
int store_outbox_sent(store *s, int64_t id, const char *remote_id);

/* A pull request entry delivered: in ONE transaction mark it sent with the
 * PR number as remote id, set the session's pr_number and pr_url, move the
 * session to state_after (NULL: stay; ignored when the session has ended),
 * append a "pr_opened" event to its log (*out_seq, may be NULL, is its seq,
 * 0 when none), enqueue then_payload (a comment payload, NULL for none)
 * under then_key, and, when the session did move to state_after, enqueue
 * status_payload (NULL: none) as its next status update. */
int store_outbox_pr_done(int64_t *out_seq, store *s, int64_t id, int64_t session_id,
                         int64_t pr_number, const char *pr_url, const char *state_after,
                         const char *then_key, const char *then_payload,
                         const char *status_payload);

/* Try again at next_try_ms, with the error; only while owner holds the
 * lease. Returns 0, FARM_ECONFLICT (the lease was lost) or FARM_EIO. */
int store_outbox_retry(store *s, int64_t id, const char *owner, int64_t next_try_ms,
                       const char *error);

/* Nothing to do on this tracker: state "skipped" with why; only while
 * owner holds the lease. Returns 0, FARM_ECONFLICT or FARM_EIO. */
int store_outbox_skip(store *s, int64_t id, const char *owner, const char *why);

/* Give up: state "failed" with the error, only while owner holds the
 * lease, and a "tracker_error" event {kind, key, error} in the session's
 * log (*out_seq, may be NULL, is its seq). Returns 0, FARM_ECONFLICT or
 * FARM_EIO. */
int store_outbox_fail(int64_t *out_seq, store *s, int64_t id, const char *owner, const char *error);

/* The distinct owners of the leases held now (pending entries). *out is a
 * NULL-terminated array of *n heap strings freed with
 * store_outbox_lease_owners_free(). Returns 0 or FARM_EIO. */
int store_outbox_lease_owners(char ***out, size_t *n, store *s);
void store_outbox_lease_owners_free(char **owners, size_t n);

/* Drop every lease held by owner (a process known to be dead), so the
 * entries are due again from not_before_ms (a request of the dead process
 * may still land: the caller leaves it time to) instead of when the lease
 * would have ended; attempts stay, so the next sender looks before it
 * creates. *count is how many were released. */
int store_outbox_release(int64_t *count, store *s, const char *owner, int64_t not_before_ms);

/* The remote id of a session's status comment: that of its newest sent
 * status entry. *out is a heap string freed by the caller, NULL (with 0
 * returned) when none was sent yet. Returns 0 or FARM_EIO. */
int store_outbox_status_remote(char **out, store *s, int64_t session_id);

/* One entry by id or by key. *out is freed with outbox_entry_free().
 * Returns 0, FARM_ENOTFOUND or FARM_EIO. */
int store_outbox_get(outbox_entry **out, store *s, int64_t id);
int store_outbox_get_by_key(outbox_entry **out, store *s, const char *key);

/* A session's entries in enqueue order (at most STORE_LIST_MAX), or every
 * session's when session_id is 0. *out is freed with
 * outbox_entry_list_free(). Returns 0 or FARM_EIO. */
int store_outbox_list(outbox_entry **out, size_t *n, store *s, int64_t session_id);

/* Counts for /metrics and `farm status`. */
typedef struct outbox_stats {
    int64_t pending;
    int64_t sent;
    int64_t failed;  /* gave up: attempts exhausted or a permanent error */
    int64_t retries; /* attempts that will be tried again */
} outbox_stats;

/* The counts behind outbox_stats_get(). */
int store_outbox_stats(outbox_stats *out, store *s);

#endif
