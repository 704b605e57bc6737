/*
 * pipeline_internal.h - what the pipeline's files share: one run's context
 * (pipeline.c walks the steps), running a command in the sandbox with its
 * output batched into the session log (pipeline_exec.c), and the session
 * log writes a step makes (state, events, outbox entries in one commit).
 * Nothing outside farm/pipeline*.c includes this.
 */
#ifndef FARM_FARM_PIPELINE_INTERNAL_H
#define FARM_FARM_PIPELINE_INTERNAL_H

#include "config.h"
#include "pipeline.h"
#include "store.h"

#include "../sandbox/sandbox.h"
#include "../vcs/git.h"

#include <limits.h>
#include <stdint.h>

#define PL_TAIL_MAX       (16u << 10) /* output kept of a command for reports and prompts */
#define PL_LINE_MAX       4096        /* one output line in the log; longer ones are cut */
#define PL_STEP_LOG_MAX   (1u << 20)  /* output bytes logged per step; the rest is counted */
#define PL_STEP_LINES_MAX 20000       /* ... and lines */
#define PL_BATCH_LINES    64          /* output events per store write at most */
#define PL_BATCH_MS       200         /* ... and at least this often while output flows */
#define PL_SUMMARY_MAX    (16u << 10) /* of the agent's summary and question files */
#define PL_MAX_ROUNDS     10          /* agent calls in one run at most */

/* One run of a session: what pipeline.c carries from step to step. */
typedef struct pl_run {
    farm *f;
    const config *cfg;
    const config_repo *repo;
    store_session *s; /* as read at the start (state may move on) */
    const store_job *job;
    pipeline_ctl *ctl;
    const char *kind;      /* "run", "revise", "answer" */
    int64_t run_no;        /* the session's run number (1-based) */
    int64_t start_seq;     /* seq of this run's run_started event */
    int64_t started_ms;    /* wall time the run began (its budget counts from here) */
    int64_t partial_at_ms; /* wall time to stop the agent and push what exists */
    int64_t wall_end_ms;   /* the run's wall limit */
    int cancelled;         /* a cancel request or issue_closed was seen */
    int partial;           /* the agent was stopped at the wall limit */
    char branch[256];
    char wt_path[PATH_MAX];
    char run_dir[PATH_MAX];
    char out_dir[PATH_MAX];
    char prompt_path[PATH_MAX];
    mirror *m;
    worktree *wt;
    int sandboxed;        /* bwrap, not unsafe-none */
    unsigned sandbox_uid; /* when the farm is root: the host uid of the run's sandboxes (one per
                             session, so the out directory can be handed to it) */
} pl_run;

/* What one sandboxed command did. */
typedef struct pl_exec_result {
    sandbox_result sr;
    char *tail;    /* the last PL_TAIL_MAX bytes of stdout and stderr, interleaved (heap) */
    int cancelled; /* stopped by a cancel request */
    int deadline;  /* stopped at the given deadline */
} pl_exec_result;

typedef struct pl_exec_opts {
    const char *step; /* "setup", "agent", "test" (the output events' step) */
    int round;        /* 0: none */
    const char *const *argv;
    const char *const *env;
    sandbox_net network;
    int64_t deadline_ms; /* wall clock (clock_wall_ms()); 0: none */
    const sandbox_bind *binds;
    size_t nbinds;
} pl_exec_opts;

/* Run a command in the sandbox on the run's worktree, its output going into
 * the session log as batched "output" events (capped per step; one
 * "output_dropped" event says what was left out), watched for cancel
 * requests and the deadline. Returns 0 when the command ran (look at *out,
 * freed with pl_exec_result_free()), FARM_ECANCELLED, or the sandbox's
 * error. */
int pl_exec(pl_exec_result *out, pl_run *r, const pl_exec_opts *o);
void pl_exec_result_free(pl_exec_result *x);

/* 1 when the session has been asked to stop since the run began (ctl->cancel,
 * a "cancel" or "issue_closed" event). Sets r->cancelled. */
int pl_cancel_requested(pl_run *r);

/* Append an event to the session log and wake its readers. */
int pl_event(pl_run *r, const char *kind, const char *body_json);

/* The last `max` bytes of s, starting at a UTF-8 boundary: a pointer into s. */
const char *pl_tail(const char *s, size_t max);

#endif

/* ---- prompts (pipeline_prompt.c) ---- */

#include "../guidelines/prompt.h"

/* The step-specific part of a prompt. */
typedef struct pl_prompt_in {
    prompt_step step;
    int round;
    int max_rounds;
    int test_status;
    const char *test_output;
    const char *question;
    const char *answer;
    const char *answer_author;
    int64_t reviews_after_seq;  /* revision: review events after this seq */
    int64_t history_before_seq; /* the digest covers the log before this seq (0: all) */
} pl_prompt_in;

/* Compose the prompt of one agent call: the issue thread is read from the
 * tracker (the farm's own comments left out), the repository's instruction
 * files from worktree_dir, the history digest and messages from session s
 * (NULL: none yet). *out is a heap string the caller frees. */
int pl_prompt_compose(char **out, farm *f, const store_session *s, const config_repo *repo,
                      int64_t issue, const char *worktree_dir, const char *branch,
                      const pl_prompt_in *in);

/* The mirror's key and the remote for a configured repository (the token
 * stays in the config; remote borrows it). */
void pl_mirror_name(char *out, size_t n, const config_repo *repo);
void pl_remote(vcs_remote *out, const config *cfg, const config_repo *repo,
               const volatile int *cancel);
