/*
 * prompt.h - composing the prompt an agent gets.
 *
 * The prompt is one Markdown document, in this order: the farm's guidelines
 * (coding.md), the repository's own instruction files (AGENTS.md, CLAUDE.md,
 * .github/copilot-instructions.md, each size-capped), what the farm remembers
 * of the session so far, the issue's title, body and comments, messages people
 * sent through the farm, and the part for this step (templates/<step>.md).
 *
 * Everything that comes from the tracker or the repository is untrusted: it is
 * inserted verbatim (never expanded as a template), size-capped, and files
 * are read without following symbolic links out of the worktree.
 */
#ifndef FARM_GUIDELINES_PROMPT_H
#define FARM_GUIDELINES_PROMPT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PROMPT_FIRST_RUN = 0,
    PROMPT_FIX_ROUND,
    PROMPT_REVISION,
    PROMPT_ANSWER,
    PROMPT_CI_FIX, /* the tracker's CI failed on the pull request's head */
    PROMPT_MERGE,  /* the base merged into the branch with conflicts: resolve them */
    PROMPT_PLAN,   /* write a plan to FARM_PLAN_FILE, change nothing */
} prompt_step;

typedef struct prompt_comment {
    const char *author;
    const char *created; /* RFC 3339, or NULL */
    const char *body;
} prompt_comment;

typedef struct prompt_review_comment {
    const char *author;
    const char *path; /* NULL for a review's overall body */
    int line;         /* 0 when none */
    const char *body;
    const char *diff_hunk; /* context around the line, or NULL */
} prompt_review_comment;

typedef struct prompt_input {
    prompt_step step;
    const char *guidelines_dir; /* NULL: prompt_guidelines_dir() */
    const char *worktree;       /* where the repository's instruction files are read; may be NULL */

    const char *repo;
    int64_t issue_number;
    const char *issue_title;
    const char *issue_body;
    const char *issue_author;
    const char *issue_url;
    const prompt_comment *comments; /* the issue thread, oldest first */
    size_t ncomments;

    const char *branch;
    const char *base_branch;
    const char *test_command; /* NULL when the repository has none */

    int round; /* fix round, 1-based */
    int max_rounds;
    int test_status;
    const char *test_output; /* the failing output; only its tail is kept */

    const prompt_review_comment *reviews; /* revision: what reviewers asked */
    size_t nreviews;

    const char *question; /* answer: what the agent asked */
    const char *answer;
    const char *answer_author;

    const char *ci_failures; /* CI fix: the failing checks and their logs' tails (Markdown,
                                bounded by the farm; capped again at PROMPT_MAX_CI) */
    const char *conflicts;   /* merge: the conflicted files, a Markdown list */
    const char *plan;        /* PROMPT_PLAN: the previous plan (people commented on it), or NULL;
                                other steps: the approved plan to follow, or NULL */

    const char *history;            /* a digest of earlier runs of this session, or NULL */
    const prompt_comment *messages; /* messages people sent through the farm */
    size_t nmessages;
} prompt_input;

#define PROMPT_INPUT_INIT                                                                          \
    {                                                                                              \
        0                                                                                          \
    }

/* Caps, in bytes. */
#define PROMPT_MAX_REPO_FILE   (32 * 1024)
#define PROMPT_MAX_ISSUE_BODY  (64 * 1024)
#define PROMPT_MAX_COMMENT     (16 * 1024)
#define PROMPT_MAX_TEST_OUTPUT (16 * 1024)
#define PROMPT_MAX_CI          (64 * 1024)
#define PROMPT_MAX_TOTAL       (1024 * 1024)

/* Compose the prompt. *out is a heap string the caller frees. Returns 0,
 * FARM_ENOTFOUND (a guidelines file is missing: the message names it) or
 * FARM_ENOMEM. */
int prompt_compose(char **out, const prompt_input *in);

/* Where the shipped guidelines are: $FARM_GUIDELINES_DIR when set, else the
 * installed copy when it exists, else the source tree's. */
const char *prompt_guidelines_dir(void);

/* Replace each {{name}} in tmpl by the value of the same name (names[i] ->
 * values[i]); values are inserted verbatim and never expanded again; an
 * unknown name is left as it is. *out is a heap string the caller frees. */
int prompt_render(char **out, const char *tmpl, const char *const *names, const char *const *values,
                  size_t n);

/* Read a file below root without following any symbolic link (a link
 * anywhere on the path, or a non-regular file, gives FARM_ENOTFOUND); at
 * most max bytes are read, and *truncated says whether there was more. *out
 * is a heap string the caller frees. */
int prompt_read_repo_file(char **out, int *truncated, const char *root, const char *relpath,
                          size_t max);

#endif
