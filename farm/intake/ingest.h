/*
 * ingest.h - intake: the farm's one entry point for tracker events.
 *
 * farm/intake owns what a tracker event does to the farm: ingest.c records
 * the delivery and decides whether it starts or steers work, commands.c
 * finds a `/farm` command in a comment, review.c is the review loop and
 * what a command does. It calls the rooms below it: farm/sched (to wake the
 * scheduler for a new job), farm/report (comments through the outbox),
 * farm/handle, farm/store and farm/config, with vcs/tracker's event type and
 * base. The HTTP front calls it (webhook/route_hooks.c, stream_http.c), and
 * so does the CLI for the local tracker (cli/cmd_issue.c, local_issue.c).
 *
 * farm_ingest() records a delivery (deduplicated by tracker and delivery id),
 * decides whether it triggers work, and writes the resulting session and job,
 * all in one transaction, and returns only after that transaction is durable
 * on disk (group-committed with concurrent callers). farm_ingest_submit() is
 * the same without blocking the caller: a completion runs once the
 * transaction is durable, and the webhook answers from there (no thread
 * waits per delivery). Nothing slow happens inside either.
 */
#ifndef FARM_FARM_INTAKE_INGEST_H
#define FARM_FARM_INTAKE_INGEST_H

#include "vcs/tracker/event.h"

#include <stdint.h>

typedef struct farm farm;

typedef enum {
    INGEST_ACCEPTED = 0, /* recorded, and it created or changed work */
    INGEST_IGNORED,      /* recorded, nothing to do (reason says why) */
    INGEST_DUPLICATE,    /* this delivery id was recorded before; nothing written */
} ingest_outcome;

typedef struct ingest_result {
    ingest_outcome outcome;
    char reason[128];   /* "not a configured repository", "actor lacks write access", ... */
    int64_t session_id; /* the session created or touched, 0 when none */
    int64_t job_id;     /* the job created, 0 when none */
} ingest_result;

/* Record the event and act on it. Returns 0 with *out filled in, or a
 * negative code (FARM_EIO: the store failed; the caller answers 503 so the
 * tracker redelivers). Thread-safe; blocks until the write is durable. */
int farm_ingest(farm *f, const tracker_event *ev, ingest_result *out);

/* The end of farm_ingest_submit(): rc and *res as farm_ingest() would have
 * returned them (farm_error_last() says why when rc is not 0). res is valid
 * during the call only. Runs on the store's writer thread after the commit,
 * so it must only hand the answer on (resume a connection, signal a
 * condition), never wait or write to the store synchronously. */
typedef void (*ingest_done_fn)(void *arg, int rc, const ingest_result *res);

/* farm_ingest() without blocking a thread: the same checks, the same one
 * transaction, and done(arg, ...) once that transaction is durable (or has
 * failed). ev (and everything it points to) and arg must stay valid until
 * done is called. Returns 0 when the event is queued (done will be called
 * exactly once), or a negative code and done is never called: FARM_EINVALID
 * (a malformed event), FARM_ENOMEM, FARM_ECANCELLED (the store is closing).
 * Unlike farm_ingest(), it logs only failures: the caller logs the outcome. */
int farm_ingest_submit(farm *f, const tracker_event *ev, ingest_done_fn done, void *arg);

const char *ingest_outcome_name(ingest_outcome o);

/* A person's message reached session_id's log (POST /api/sessions/{id}/
 * messages, after the "message" event is committed): when the session is
 * waiting for an answer to the agent's question, queue its "answer" job.
 * *job_id (may be NULL) is the job queued, 0 when none. Returns 0,
 * FARM_ENOTFOUND (no such session) or FARM_EIO. */
int farm_session_message_note(farm *f, int64_t session_id, int64_t *job_id);

#endif
