/*
 * demo_sample.h - the sample project `farm demo` works on: a bare git
 * repository whose greeter.sh prints a typo and whose test.sh checks the
 * greeting, the issue that asks for the fix, and the bodies of what a
 * person does next (a second issue, a review comment on the pull request).
 * Each body carries the patch the stand-in agent applies; a real agent
 * finds the change on its own.
 */
#ifndef FARM_CLI_DEMO_SAMPLE_H
#define FARM_CLI_DEMO_SAMPLE_H

#define DEMO_REPO  "demo/greeter"
#define DEMO_LABEL "agent"
#define DEMO_TITLE "Fix the typo in the greeting"

/* The next steps: a second issue, and a review comment on the first PR
 * (on DEMO_REVIEW_PATH, line DEMO_REVIEW_LINE), their bodies in files of
 * these names in the directory demo_sample_next_write() writes. */
#define DEMO_NEXT_TITLE      "Say how to run the greeter"
#define DEMO_NEXT_ISSUE_FILE "usage-issue.md"
#define DEMO_REVIEW_FILE     "review.md"
#define DEMO_REVIEW_PATH     "greeter.sh"
#define DEMO_REVIEW_LINE     2

/* The body of the demo issue (DEMO_TITLE). */
extern const char demo_issue_body[];

/* Create the bare repository `bare` with one commit on main holding the
 * sample project, unless it exists (*created says which). Built beside it
 * and renamed into place, so an interrupted run leaves no half repository.
 * Returns 0 or a negative FARM_E* code with farm_error_last() saying why. */
int demo_sample_repo_make(const char *bare, int *created);

/* Write (or rewrite) DEMO_NEXT_ISSUE_FILE and DEMO_REVIEW_FILE in dir.
 * Returns 0 or FARM_EIO with farm_error_last() saying why. */
int demo_sample_next_write(const char *dir);

#endif
