/*
 * pipeline.h - one run of a session, step by step.
 *
 * The scheduler leases a job and hands it to pipeline_run() on a slot thread.
 * A run is: fetch the mirror -> worktree on the session's branch -> setup
 * command (sandbox, setup network policy) -> compose the prompt -> agent
 * (sandbox, agent network policy) -> test command (sandbox) -> while tests fail
 * and fix rounds remain: agent again with the failing output -> commit -> push
 * -> open or update the pull request (through the outbox) -> report.
 *
 * Every step appends events to the session log ("step" events with the run
 * number, the step name and "started"/"done"/"failed", plus output lines and
 * results), and a step's completion is durable before the next begins, so a
 * run restarted after a crash (its lease expired and another slot took it)
 * continues after the last completed step instead of starting over.
 *
 * Job kinds: "run" (first run or /farm run, /farm retry), "revise" (review
 * comments on the PR), "answer" (a reply to the agent's question), "update"
 * (the base branch merged into the PR's branch: pipeline_update.c).
 */
#ifndef FARM_FARM_RUN_PIPELINE_H
#define FARM_FARM_RUN_PIPELINE_H

#include "farm/store/store.h"

#include <stdint.h>

typedef struct farm farm;

/* A worktree prepared ahead of demand (a warm slot): the repository's
 * mirror fetched and a worktree checked out at the base branch's head, so a
 * run can start by adopting it instead of creating one. */
typedef struct pipeline_warm {
    char *repo;     /* the configured repository it was prepared for */
    char *path;     /* the prepared worktree directory */
    char *base_oid; /* the commit it is at (hex) */
    int64_t prepared_ms;
    char *setup_key;  /* setup restored into it from the setup cache for this key, or NULL */
    char *home;       /* ... with this HOME directory */
    int64_t setup_ms; /* how long the restore took */
    int64_t setup_checked_ms; /* when pipeline_warm_setup() last looked (wall clock) */
} pipeline_warm;

typedef struct pipeline_ctl {
    volatile int cancel;   /* set from another thread: cancel request, lease lost, shutdown;
                              the run stops its sandbox and git work as soon as it can */
    const char *worker_id; /* the lease owner, for logs */
    pipeline_warm *warm;   /* a warm slot for this job's repository, or NULL; the run takes
                              ownership of it when it adopts it (sets this to NULL) */
} pipeline_ctl;

/* Run one leased job to its end. Returns 0 when the job is finished, whatever
 * the session's outcome (the session's state and log say what happened);
 * FARM_EAGAIN when it should be tried again later (a transient failure such as
 * a fetch that timed out; the job's not-before time is the caller's business);
 * FARM_ECANCELLED when ctl->cancel stopped it; other codes for a job that
 * cannot run (the session is gone). */
int pipeline_run(farm *f, const store_job *job, pipeline_ctl *ctl);

/* Prepare a warm slot for a repository: fetch its mirror and check out the
 * base branch in a fresh directory under the data directory. *out is freed
 * with pipeline_warm_free() (which also removes the directory when the slot
 * was not adopted). */
int pipeline_warm_prepare(pipeline_warm **out, farm *f, const char *repo);
void pipeline_warm_free(pipeline_warm *w);

/* Remove this node's work directories (worktrees, run directories under
 * data_dir) that no run will come back to: the session ended or waits with
 * no job, or its run moved to another host (pipeline_sweep.c). *removed:
 * how many. Returns 0 (what cannot be removed is logged and left). */
int pipeline_workdirs_sweep(size_t *removed, farm *f);

/* Setup restored into a slot that has none yet, once the setup cache holds
 * an entry for its worktree (a run of the repository kept one since the
 * slot was made). 1 when restored, 0 when not (no entry, no cached setup
 * for the repository, or it failed: the run will set up). The slot must
 * not be in a run's hands meanwhile. */
int pipeline_warm_setup(pipeline_warm *w, farm *f);

/* What an agent would get as its prompt for the first run of issue `issue`
 * of the configured repository `repo` (`farm prompt`): the mirror is
 * fetched and the base branch checked out in a temporary directory under
 * the data directory (for the repository's instruction files), the issue
 * thread read from the tracker, and the prompt composed exactly as a run
 * does. *out is a heap string the caller frees. Returns 0, FARM_ENOTFOUND
 * (repository not configured, issue or base branch not found) or what the
 * fetch, the tracker or the composer returns. */
int pipeline_prompt_preview(char **out, farm *f, const char *repo, int64_t issue);

#endif
