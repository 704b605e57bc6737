/*
 * report.h - what the farm says on the tracker, as Markdown.
 *
 * The session's sticky status comment (state, current step, run number,
 * elapsed time, a link to the session page, the pull request and whether it
 * is a draft and why, and once known the test results and the diffstat) and
 * the milestone comments: started, PR opened (or a draft opened, and
 * why), failed (the reason and the last lines of output in a collapsed
 * <details> block), question, and on the PR a revision that changed
 * nothing. The text goes into outbox payloads (outbox.h); the sender adds
 * the hidden marker. Everything quoted from elsewhere (issue titles, agent
 * output, questions) is made inert: it cannot close a code block, open an
 * HTML comment or pass for a farm marker.
 */
#ifndef FARM_FARM_REPORT_REPORT_H
#define FARM_FARM_REPORT_REPORT_H

#include "farm/store/store.h"

#include <stdint.h>

#define REPORT_TAIL_LINES 30          /* lines of output shown for a failure */
#define REPORT_TAIL_BYTES (8u << 10)  /* ... and at most this many bytes of them */
#define REPORT_TEXT_MAX   (16u << 10) /* a question, summary, test report or diffstat */
#define REPORT_BODY_MAX   (96u << 10) /* a whole rendered comment */

typedef enum {
    REPORT_STARTED,   /* the agent is on it */
    REPORT_PR_OPENED, /* the pull request is open (summary, tests, diffstat), or a draft
                         one (draft, draft_reason) with its own heading; without
                         session->pr_url the link is OUTBOX_PR_URL, for a PR entry's
                         then_comment (outbox.h) */
    REPORT_FAILED,    /* the run failed: reason and the output's last lines */
    REPORT_QUESTION,  /* the agent asks; a reply resumes the session */
    REPORT_UNCHANGED, /* on the PR: a revision changed nothing (why in reason when known,
                         the agent's summary, its output's last lines when it failed) */
} report_milestone;

/* A destination the sandbox's egress proxy refused during the run (the
 * session log's "egress" events with decision "deny"). */
typedef struct report_egress {
    const char *host; /* as the agent asked for it */
    int port;
    const char *reason; /* "not on the allowlist", "resolve failed", ... */
    const char *step;   /* "agent", "setup", "test" */
    uint64_t count;     /* connections refused */
} report_egress;

#define REPORT_EGRESS_MAX 10 /* denied destinations named in a comment */

/* What a report says. Only session is required; NULL fields are left out. */
typedef struct report_info {
    const store_session *session; /* id, state, repo, number, created_ms, branch, pr_url */
    const char *public_url;       /* "http://host:port": the session page is
                                     <public_url>/sessions/<id>; NULL: no link */
    const char *step;             /* the current step in words ("running the tests") */
    int64_t now_ms;               /* for the elapsed time; 0: now */
    int64_t ended_ms;             /* when a final session ended; 0: it has not */
    const char *reason;           /* failure: why */
    const char *output;           /* failure: the output, of which the last lines are shown */
    const char *tests;            /* test results ("41 passed, 1 failed"), a few lines at most;
                                     a `code span` in it (the test command) stays code */
    const char *diffstat;         /* "3 files changed, 20 insertions(+), 4 deletions(-)" */
    const char *question;         /* the agent's question */
    const char *summary;          /* the agent's summary of its work */
    int run;                      /* the session's run number (> 1 is said), 0: not said */
    int draft;                    /* PR opened: it is a draft ... */
    const char *draft_reason;     /* ... because of this ("the tests still fail"), or NULL */
    const report_egress *denied;  /* destinations the egress proxy refused (status, PR and
                                     failure comments say "the agent tried to reach ...") */
    size_t ndenied;
    const char *hold; /* the issue is on hold (`/farm hold`): by whom, or NULL */
} report_info;

#define REPORT_INFO_INIT                                                                           \
    {                                                                                              \
        NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, 0, NULL      \
    }

/* The status comment's body. *out is a heap string the caller frees.
 * Returns 0, FARM_EINVALID (no session) or FARM_ENOMEM. */
int report_status_render(char **out, const report_info *r);

/* A milestone comment's body. *out is a heap string the caller frees.
 * Returns 0, FARM_EINVALID or FARM_ENOMEM. */
int report_milestone_render(char **out, report_milestone m, const report_info *r);

/* "4s", "3m 05s", "2h 07m", "3d 4h": a duration for people. out holds at
 * least 32 bytes. */
void report_duration(char *out, size_t n, int64_t ms);

/* The last `lines` lines of text, at most max_bytes of them (cut at a line
 * start, or inside a long line at a UTF-8 boundary), trailing blank lines
 * dropped. A pointer into text. */
const char *report_tail(const char *text, int lines, size_t max_bytes);

#endif
