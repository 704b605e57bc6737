/*
 * pipeline_internal.h - what the pipeline's files share: one run's context
 * (pipeline.c walks the steps), running a command in the sandbox with its
 * output batched into the session log (pipeline_exec.c), the session log
 * writes a step makes (state, events, outbox entries in one commit;
 * pipeline_tx.c), the steps themselves (pipeline_steps.c, the commit's
 * co-author in pipeline_coauthor.c and the pull request in pipeline_pr.c)
 * and the prompt's inputs (pipeline_prompt.c).
 * Only farm/run/pipeline*.c and the pipeline's tests include this.
 */
#ifndef FARM_FARM_RUN_PIPELINE_INTERNAL_H
#define FARM_FARM_RUN_PIPELINE_INTERNAL_H

#include "pipeline.h"

#include "base/buf.h"
#include "farm/config/config.h"
#include "farm/report/report.h"
#include "farm/store/store.h"
#include "guidelines/prompt.h"
#include "sandbox/sandbox.h"
#include "vcs/git/git.h"

#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <stdint.h>

#define PL_TAIL_MAX         (16u << 10) /* output kept of a command for reports and prompts */
#define PL_LINE_MAX         4096        /* one output line in the log; longer ones are cut */
#define PL_STEP_LOG_MAX     (1u << 20)  /* output bytes logged per step; the rest is counted */
#define PL_STEP_LINES_MAX   20000       /* ... and lines */
#define PL_BATCH_LINES      64          /* output events per store write at most */
#define PL_BATCH_MS         200         /* ... and at least this often while output flows */
#define PL_SUMMARY_MAX      (16u << 10) /* of the agent's summary and question files */
#define PL_MAX_ROUNDS       10          /* agent calls in one run at most */
#define PL_SANDBOX_UID_BASE 0x50000000u /* + the session id: the host uid of its sandboxes */
#define PL_TITLE_MAX        200         /* of a commit's or a PR's title */
#define PL_GATEWAY_PORT     3129        /* the model gateway on the sandbox's loopback */
#define PL_PREPARED_MAX     2 /* sandboxes a run holds spawned ahead: the agent's, the tests' */
#define PL_SANDBOX_HOME     SANDBOX_HOME_INSIDE /* HOME inside the sandbox */
#define PL_ENV_ID_MAX       4200 /* pl_env_id(): an image's digest or reference, or "host" */

/* One run of a session: what pipeline.c carries from step to step. */
typedef struct pl_run {
    farm *f;
    const config *cfg;
    const config_repo *repo;
    store_session *s; /* as read at the start (state may move on) */
    const store_job *job;
    pipeline_ctl *ctl;
    const char *kind;      /* "run", "revise", "answer", "ci", "update", "plan" */
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
    vcs_mirror *m;
    vcs_worktree *wt;
    int sandboxed;        /* bwrap, not unsafe-none */
    unsigned sandbox_uid; /* when the farm is root: the host uid of the run's sandboxes (one per
                             session, so the out directory can be handed to it) */
    /* the model gateway (pipeline_gateway.c) */
    char *gw_token;                  /* the run's token, or NULL: the run has no gateway */
    char gw_url[64];                 /* the gateway as the agent reaches it */
    char gw_sock[PATH_MAX];          /* the gateway's socket (relayed into the sandbox) */
    char codex_home[PATH_MAX + 16];  /* codex: the run's CODEX_HOME on the host, or "" */
    atomic_int budget_hit;           /* a call was refused by a budget: PL_BUDGET_* */
    _Atomic double budget_limit_usd; /* that budget's value when it refused (it may be live) */
    /* a "ci" job (pipeline_ci.c) */
    char *ci_failures; /* the failing checks and their logs' tails, for the prompt */
    int ci_round;      /* this CI fix round's number (1-based) */
    /* setup and its cache (pipeline_setup.c) */
    char env_id[PL_ENV_ID_MAX];  /* the environment the setup cache is keyed by: the image's
                            digest when repos[].image is set, else "host" */
    char home_dir[PATH_MAX + 8]; /* with a setup command: the run's HOME on the host (bound at
                                PL_SANDBOX_HOME for setup, agent and tests), else "" */
    int wt_fresh;                /* the worktree was made (or adopted) by this run: what is in it
                                    beside the checkout is setup's */
    char warm_setup_key[65];     /* the adopted warm slot restored setup for this key, or "" */
    int64_t warm_setup_ms;       /* ... taking this long */
    struct pl_prepared *prepared[PL_PREPARED_MAX]; /* sandboxes spawned ahead for commands to
                                                      come (pl_exec_prepare()), or NULL */
    struct pl_egress *egress; /* the egress proxy's decisions (pipeline_egress.c) */
    config agent_cfg; /* the farm's config with the agent preset the session picked (a shallow
                         copy: it owns nothing); cfg points here when it differs */
    char *image_root; /* repos[].image resolved (pipeline_image.c): every sandbox's root, or
                         NULL for the host's view */
} pl_run;

/* Which budget stopped a run. */
enum { PL_BUDGET_NONE, PL_BUDGET_SESSION, PL_BUDGET_REPO_DAILY, PL_BUDGET_DAILY };

/* What one sandboxed command did. */
typedef struct pl_exec_result {
    sandbox_result sr;
    char *tail;      /* the last PL_TAIL_MAX bytes of stdout and stderr, interleaved (heap) */
    int cancelled;   /* stopped by a cancel request */
    int deadline;    /* stopped at the given deadline */
    double cost_usd; /* what the agent said it cost (pl_cost_line()), 0 when it did not */
    int prepared;    /* it ran in a sandbox spawned ahead (pl_exec_prepare()) */
} pl_exec_result;

typedef struct pl_exec_opts {
    const char *step; /* "setup", "agent", "test" (the output events' step) */
    int round;        /* 0: none */
    const char *const *argv;
    const char *const *env;
    sandbox_net network;
    const char *const *allow; /* allowlist mode: the hosts; NULL: sandbox.allow_hosts */
    int64_t deadline_ms;      /* wall clock (clock_wall_ms()); 0: none */
    const sandbox_bind *binds;
    size_t nbinds;
    const char *stdin_path;     /* host file on standard input, or NULL */
    const char *const *secrets; /* "NAME=value" entries whose values are cut out of the output
                                   the log and the tail keep (setup_env), or NULL */
} pl_exec_opts;

/* Run a command in the sandbox on the run's worktree, its output going into
 * the session log as batched "output" events (capped per step; one
 * "output_dropped" event says what was left out), watched for cancel
 * requests and the deadline. Returns 0 when the command ran (look at *out,
 * freed with pl_exec_result_free()), FARM_ECANCELLED, or the sandbox's
 * error. */
int pl_exec(pl_exec_result *out, pl_run *r, const pl_exec_opts *o);

/* pipeline_image.c: <data_dir>/images (its real path) into out; resolve the
 * repository's image into r->image_root (unpacking it the first time) and
 * say so in an "image" event. 0 when the repository has none. */
int pl_image_cache_dir(char *out, size_t cap, const config *cfg);
int pl_image_resolve(pl_run *r);
void pl_exec_result_free(pl_exec_result *x);

/* Spawn now the sandbox a later pl_exec() with the same options (step,
 * round, network, binds, standard input) will launch, so that spawn costs
 * nothing on the command's path; it waits in r->prepared (the oldest one
 * there is dropped when full). Failure is not an error: pl_exec() starts
 * cold. Not in unsafe-none mode. */
void pl_exec_prepare(pl_run *r, const pl_exec_opts *o);

/* Kill and forget the sandboxes prepared ahead and not used. */
void pl_exec_prepared_drop(pl_run *r);

/* The cost an agent CLI reports in a line of its output, or -1: Claude
 * Code's stream-json result ({"type":"result", "total_cost_usd": x}) and
 * aider's "Cost: $a message, $b session." (b). The last one a run prints
 * is its cost. */
double pl_cost_line(const char *line, size_t n);

/* 1 when the session has been asked to stop since the run began (ctl->cancel,
 * a "cancel", "cancel_requested" or "issue_closed" event). Sets r->cancelled
 * for the events only. */
int pl_cancel_requested(pl_run *r);

/* Append an event to the session log and wake its readers. body is stolen;
 * NULL (a failed json_pack()) gives FARM_ENOMEM. */
int pl_event(pl_run *r, const char *kind, json_t *body);

/* Append an event with body (stolen; NULL gives FARM_ENOMEM) in tx. *out_seq
 * (may be NULL) is the seq given. */
int pl_event_tx(int64_t *out_seq, store_tx *tx, int64_t session_id, const char *kind, json_t *body);

/* The last `max` bytes of s, starting at a UTF-8 boundary: a pointer into s. */
const char *pl_tail(const char *s, size_t max);

/* ---- one run's writes and steps (pipeline_tx.c, pipeline_steps.c, pipeline_pr.c) ---- */

#define TX_EVENTS 8
#define TX_OUTBOX 4

typedef struct pl_tx {
    pl_run *r;
    const char *state;      /* NULL: unchanged */
    const char *step_words; /* the status comment's current step */
    const char *branch;     /* set the session's branch */
    double agent_seconds;
    double cost;                 /* USD, added to the session's */
    int pr_draft_set;            /* record pr_draft and pr_draft_reason on the session */
    int pr_draft;                /* the PR is a draft ... */
    const char *pr_draft_reason; /* ... because of this */
    int status;                  /* update the status comment even without a state change */
    int skip_if_final;           /* write nothing when the session has ended meanwhile */
    struct {
        const char *kind;
        json_t *body;
    } ev[TX_EVENTS];
    int nev;
    struct {
        const char *kind;
        char key[256];
        char *payload;
    } ob[TX_OUTBOX];
    int nob;
    int oom;
    /* out */
    int ended;
    int64_t last_seq;
} pl_tx;

typedef struct pl_progress {
    int fetch, worktree, setup;
    char wt_start[VCS_OID_HEXSZ], wt_head[VCS_OID_HEXSZ];
    int agent_round; /* last agent round done */
    int agent_exit;
    char *agent_tail; /* the end of that round's output (after a crash: only when it failed) */
    int test_round;   /* last test round done */
    int test_status;
    char *test_tail;
    char *summary;
    int commit, commit_empty;
    char commit_oid[VCS_OID_HEXSZ];
    int push, pr;
    int partial;
    /* an update run (pipeline_update.c): the base merged into the files */
    int merge;                      /* the merge step is done */
    char merge_base[VCS_OID_HEXSZ]; /* the base's commit merged in */
    char **conflicts;               /* the files it left conflicted, or NULL (strv) */
} pl_progress;

typedef struct pl_answer_info {
    char *question;
    char *answer;
    char *author;
    int64_t question_seq;
} pl_answer_info;

void pl_tx_init(pl_tx *t, pl_run *r);
void pl_tx_event(pl_tx *t, const char *kind, json_t *body);                       /* body stolen */
void pl_tx_outbox(pl_tx *t, const char *kind, const char *name, json_t *payload); /* stolen */
int pl_tx_commit(pl_tx *t);
int pl_status_enqueue(store_tx *tx, pl_tx *t, const store_session *s);
int pl_set_state(pl_run *r, const char *state, const char *words);
int pl_step_started(pl_run *r, const char *step, int round);
void pl_step_done(pl_tx *t, const char *step, int round, int64_t began_ms, json_t *extra);
int pl_step_done_commit(pl_run *r, const char *step, int round, int64_t began_ms, json_t *extra);
void pl_step_failed(pl_run *r, const char *step, int round, const char *error);
int pl_run_fail(pl_run *r, const char *reason, const char *output);
int pl_run_cancelled(pl_run *r);
int pl_run_question(pl_run *r, const char *question);
int pl_run_unchanged(pl_run *r, const pl_progress *p);
void pl_cleanup_dirs(pl_run *r);
json_t *pl_finished_body(pl_run *r, const char *outcome, const char *reason);
json_t *pl_comment_payload(const char *body);
void pl_copy_oid(char out[VCS_OID_HEXSZ], json_t *v);
void pl_take_str(char **dst, json_t *v);
void pl_progress_free(pl_progress *p);

int pl_step_fetch(pl_run *r, pl_progress *p);
int pl_step_worktree(pl_run *r, pl_progress *p);
int pl_step_setup(pl_run *r, pl_progress *p); /* 1: the run ended (failed); pipeline_setup.c */

/* The environment the setup cache of repo is keyed by, into out: the
 * image's digest when repos[].image names an OCI image (a plain directory's
 * reference, or an image whose index cannot be read yet: its reference),
 * else "host" (pipeline_setup.c). */
void pl_env_id(char out[PL_ENV_ID_MAX], const config_repo *repo);
int pl_step_agent(pl_run *r, pl_progress *p, int round, int max_rounds); /* 1: question */
int pl_step_test(pl_run *r, pl_progress *p, int round);
int pl_step_commit(pl_run *r, pl_progress *p);
int pl_step_push(pl_run *r, pl_progress *p);
int pl_find_answer(pl_answer_info *a, pl_run *r);
void pl_answer_info_free(pl_answer_info *a);
int pl_last_pushed(char out[VCS_OID_HEXSZ], pl_run *r);
int pl_mkdir_p(const char *path, mode_t mode);

/* Run a shell command of the repository (setup, test) in the sandbox on
 * the run's worktree; env (NULL-terminated, may be NULL) is added to the
 * command's environment, allow overrides sandbox.allow_hosts in allowlist
 * mode. prepare_only: spawn the sandbox for it now (pl_exec_prepare())
 * and return 0 without running anything. */
int pl_run_shell(pl_exec_result *x, pl_run *r, const char *step, int round, const char *cmd,
                 const char *network, const char *const *env, const char *const *allow,
                 int prepare_only);
void pl_make_searchable(const char *path);

/* The session's title as one line of at most PL_TITLE_MAX bytes, for a
 * commit message and the PR. */
void pl_title(char out[PL_TITLE_MAX + 1], const pl_run *r);

/* Append text, with every "<!--" in it defused ("&lt;!--") so that quoted
 * text cannot pass for one of the farm's markers. */
void pl_put_defused(buf *b, const char *text);

/* ---- the model gateway (pipeline_gateway.c) ---- */

/* Register the run with the farm's gateway when there is one and the agent
 * needs a model API: a token, the budget callback and the record callback
 * (each call a "model_call" event, its cost added to the session's).
 * Returns 0 (also when there is no gateway) or an error. */
int pl_gateway_begin(pl_run *r);

/* Revoke the run's token (waits for its calls to end). */
void pl_gateway_end(pl_run *r);

/* The sandbox bind that relays the gateway (relay_port PL_GATEWAY_PORT):
 * 1 and *b filled when the run has a gateway and a sandbox. */
int pl_gateway_bind(sandbox_bind *b, const pl_run *r);

/* Which budget stopped the run, in words for the PR and its comment (the
 * budget, its value, and how to go on), or NULL when none did. */
const char *pl_budget_words(char *out, size_t n, const pl_run *r);

/* ---- the egress proxy's decisions (pipeline_egress.c) ---- */

#define PL_EGRESS_MAX 128 /* destinations tracked per run */

/* What one command's proxy callback knows: the run, the step and round. */
typedef struct pl_egress_tap {
    pl_run *r;
    const char *step;
    int round;
} pl_egress_tap;

/* Start and end the run's egress record (r->egress); begin reads back the
 * denies an earlier attempt of this run logged. Returns 0 or FARM_ENOMEM. */
int pl_egress_begin(pl_run *r);
void pl_egress_end(pl_run *r);

/* The sandbox's proxy callback (sandbox_proxy_fn) with a pl_egress_tap as
 * ctx: the first connection to a destination is an "egress" event at once,
 * repeats are counted. */
void pl_egress_on_proxy(void *ctx, int allowed, const char *host, int port, const char *reason);

/* After a command: an "egress" event with the count of each destination it
 * tried more than once, and "egress_dropped" for those beyond the cap. */
void pl_egress_step_end(pl_run *r, const char *step, int round);

/* The destinations denied during the run, one per host:port, at most max
 * into out (strings borrowed from r until pl_egress_end()). Returns how many. */
size_t pl_egress_denied(report_egress *out, size_t max, pl_run *r);

/* ---- who asked (pipeline_coauthor.c) ---- */

/* The person a commit credits with a "Co-authored-by:" trailer. */
typedef struct pl_coauthor {
    char name[257]; /* "" when there is nobody to credit */
    char email[257];
} pl_coauthor;

/* The co-author from what an event says of its actor: the tracker, the
 * actor's login or unique name, and the event's body (may be NULL), whose
 * optional "actor_id" (a GitHub user id), "actor_display" and
 * "actor_email" are used when present. GitHub: the login and
 * <id>+<login>@users.noreply.github.com, or <login>@users.noreply.github.com
 * without an id. Elsewhere the actor as given when it holds an address
 * ("Ada <ada@example.com>", "ada@example.com") or actor_email does; else
 * nobody (out->name ""). Names and addresses that cannot go in a trailer
 * are cleaned or refused, never passed on. */
void pl_coauthor_from(pl_coauthor *out, const char *tracker, const char *actor, const json_t *body);

/* The co-author of a run's commit: the actor of the session's first
 * "triggered" event (who opened, labelled or assigned the issue). out->name
 * is "" when there is none. Returns 0 or the store's error. */
int pl_coauthor_find(pl_coauthor *out, pl_run *r);

/* ---- the pull request (pipeline_pr.c) ---- */

/* Open the PR (or update it, for a revision) through the outbox, as a draft
 * when asked or when the agent did not finish cleanly, with the run's
 * "run_finished" event in the same commit. */
int pl_step_pr(pl_run *r, pl_progress *p, int draft);

/* ---- the tracker's CI (pipeline_ci.c) ---- */

/* A "ci" job, before its run begins: look at the checks of the commit the
 * farm pushed last, once they have settled. Returns 1 when a fix round
 * should run (r->ci_failures and r->ci_round set, the "ci_fix" event
 * written: a job resumed after a crash finds its own), 0 when the job has
 * nothing more to do (checks still running, all passed, the loop stopped:
 * what the PR should hear is in the outbox), or an error (FARM_EAGAIN: the
 * tracker did not answer; the job is tried again). */
int pl_ci_settle(pl_run *r);

/* 1 for the job kinds that change an open pull request's branch in answer
 * to something said about it: "revise" and "ci". */
int pl_kind_revises(const pl_run *r);
/* ---- keeping the branch mergeable (pipeline_update.c) ---- */

/* An update run's merge: the base branch's head (from the fetched mirror)
 * merged into the worktree's files. Returns 0 (p->merge set; a clean merge
 * counts as agent round 1, so the tests come next), 1 when the run ended
 * (the branch had the base already), or an error. */
int pl_step_merge(pl_run *r, pl_progress *p);

/* Before an update's commit: the conflicted files must hold no conflict
 * marker any more. Returns 0, 1 when the run ended (failed, naming the
 * file), or an error. */
int pl_merge_check(pl_run *r, const pl_progress *p);

/* The commit message of an update's merge commit (heap; free()). */
char *pl_merge_message(pl_run *r, const pl_progress *p);

/* After an update's push: the comment on the pull request saying what was
 * merged and how the tests went. */
int pl_update_comment(pl_run *r, const pl_progress *p);

/* The conflicted files as a Markdown list, for the prompt (heap). */
char *pl_conflicts_markdown(const pl_progress *p);

/* ---- plan first (pipeline_plan.c) ---- */

/* A file the sandbox wrote (the agent's summary, question or plan), read
 * without following a link, at most max bytes, cut to valid UTF-8 and
 * trailing blanks: heap text, or NULL when absent or empty. */
char *pl_read_agent_file(const char *path, size_t max);

/* The host path of a plan run's plan file (<out_dir>/plan.md). */
void pl_plan_path(char *out, size_t n, const pl_run *r);

/* The plan a prompt needs: kind "plan_approved": the plan approved for
 * this session (for the implementation), "plan": the newest plan posted
 * (for a plan round that revises it). *out is a heap string, or NULL when
 * there is none. Returns 0 or the store's error. */
int pl_plan_find(char **out, pl_run *r, const char *kind);

/* After a plan run's agent round: the plan posted on the issue, the session
 * waiting for approval. Returns 0 (the run ended) or an error. */
int pl_plan_finish(pl_run *r, const pl_progress *p);

/* ---- prompts (pipeline_prompt.c) ---- */

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
    const char *conflicts;      /* merge: the conflicted files (Markdown) */
    const char *plan;           /* plan: the previous plan; first run: the approved plan */
    int64_t reviews_after_ms;   /* ... and inline comments from the tracker created after this */
    int64_t reviews_after_seq;  /* revision: review events after this seq */
    int64_t history_before_seq; /* the digest covers the log before this seq (0: all) */
    const char *ci_failures;    /* CI fix: the failing checks and their logs' tails */
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

#endif
