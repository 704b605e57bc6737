/*
 * test_prompt.c - prompt composition: order, caps, templates, and that
 * repository files are never read through symbolic links.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "guidelines/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/farm-prompt-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char d[128];
    snprintf(d, sizeof(d), "%s/.github", tmpdir);
    mkdir(d, 0755);
    char g[512];
    snprintf(g, sizeof(g), "%s/guidelines",
             getenv("FARM_SOURCE_DIR") ? getenv("FARM_SOURCE_DIR") : ".");
    setenv("FARM_GUIDELINES_DIR", g, 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void order_is_guidelines_repo_issue_task(void **state)
{
    write_file("AGENTS.md", "AGENTS-MARKER use tabs");
    write_file(".github/copilot-instructions.md", "COPILOT-MARKER");
    prompt_comment comments[] = {{"alice", "2026-11-20T10:00:00Z", "COMMENT-ONE"},
                                 {"bob", NULL, "COMMENT-TWO"}};
    prompt_input in = PROMPT_INPUT_INIT;
    in.worktree = tmpdir;
    in.repo = "octo/app";
    in.issue_number = 12;
    in.issue_title = "Fix the login typo";
    in.issue_body = "ISSUE-BODY";
    in.comments = comments;
    in.ncomments = 2;
    in.branch = "farm/12-fix-the-login-typo";
    in.test_command = "make test";
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    const char *g = strstr(p, "How to work on this repository");
    const char *a = strstr(p, "AGENTS-MARKER");
    const char *c = strstr(p, "COPILOT-MARKER");
    const char *body = strstr(p, "ISSUE-BODY");
    const char *c1 = strstr(p, "COMMENT-ONE");
    const char *c2 = strstr(p, "COMMENT-TWO");
    const char *task = strstr(p, "Resolve issue #12 of `octo/app`");
    assert_true(g && a && c && body && c1 && c2 && task);
    assert_true(g < a && a < c && c < body && body < c1 && c1 < c2 && c2 < task);
    assert_non_null(strstr(p, "farm/12-fix-the-login-typo"));
    assert_non_null(strstr(p, "runs `make test`"));
    assert_null(strstr(p, "CLAUDE.md")); /* absent file, no heading */
    free(p);
}

static void untrusted_text_is_not_expanded(void **state)
{
    prompt_input in = PROMPT_INPUT_INIT;
    in.repo = "octo/app";
    in.issue_number = 3;
    in.issue_title = "{{branch}} title";
    in.issue_body = "body mentions {{test_output}}";
    in.branch = "farm/3-x";
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_non_null(strstr(p, "body mentions {{test_output}}"));
    assert_non_null(strstr(p, "(\"{{branch}} title\")"));
    free(p);
}

static void links_are_not_followed(void **state)
{
    write_file("secret.txt", "TOP-SECRET");
    char target[128], link[128];
    snprintf(target, sizeof(target), "%s/secret.txt", tmpdir);
    snprintf(link, sizeof(link), "%s/CLAUDE.md", tmpdir);
    assert_int_equal(symlink(target, link), 0);
    char *text = NULL;
    int trunc = 0;
    assert_int_equal(prompt_read_repo_file(&text, &trunc, tmpdir, "CLAUDE.md", 100),
                     FARM_ENOTFOUND);
    assert_int_equal(prompt_read_repo_file(&text, &trunc, tmpdir, "../etc/passwd", 100),
                     FARM_ENOTFOUND);
    /* a linked directory on the way is refused too */
    char ldir[128];
    snprintf(ldir, sizeof(ldir), "%s/linked", tmpdir);
    assert_int_equal(symlink("/etc", ldir), 0);
    assert_int_equal(prompt_read_repo_file(&text, &trunc, tmpdir, "linked/hostname", 100),
                     FARM_ENOTFOUND);
    assert_int_equal(prompt_read_repo_file(&text, &trunc, tmpdir, "secret.txt", 3), 0);
    assert_string_equal(text, "TOP");
    assert_int_equal(trunc, 1);
    free(text);

    prompt_input in = PROMPT_INPUT_INIT;
    in.worktree = tmpdir;
    in.repo = "r";
    in.issue_number = 1;
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_null(strstr(p, "TOP-SECRET"));
    free(p);
}

static void fix_round_keeps_tail_of_output(void **state)
{
    size_t n = PROMPT_MAX_TEST_OUTPUT * 3;
    char *out = malloc(n + 32);
    memset(out, 'x', n);
    strcpy(out + n, "LAST-FAILURE-LINE");
    prompt_input in = PROMPT_INPUT_INIT;
    in.step = PROMPT_FIX_ROUND;
    in.repo = "r";
    in.issue_number = 5;
    in.round = 1;
    in.max_rounds = 2;
    in.test_command = "make test";
    in.test_status = 2;
    in.test_output = out;
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_non_null(strstr(p, "round 1 of 2"));
    assert_non_null(strstr(p, "(exit status 2)"));
    assert_non_null(strstr(p, "LAST-FAILURE-LINE"));
    assert_non_null(strstr(p, "earlier bytes cut"));
    assert_true(strlen(p) < PROMPT_MAX_TEST_OUTPUT * 2);
    free(p);
    free(out);
}

static void huge_issue_still_has_task(void **state)
{
    size_t n = PROMPT_MAX_TOTAL * 2;
    char *body = malloc(n + 1);
    memset(body, 'y', n);
    body[n] = 0;
    prompt_comment many[200];
    for (int i = 0; i < 200; i++)
        many[i] = (prompt_comment){"spammer", NULL, body};
    prompt_input in = PROMPT_INPUT_INIT;
    in.repo = "r";
    in.issue_number = 9;
    in.issue_body = body;
    in.comments = many;
    in.ncomments = 200;
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_true(strlen(p) <= PROMPT_MAX_TOTAL);
    assert_non_null(strstr(p, "Resolve issue #9"));
    free(p);
    free(body);
}

static void revision_lists_review_comments(void **state)
{
    prompt_review_comment rc[] = {{"carol", "src/a.c", 10, "Use a constant here", "@@ -1 +1 @@"},
                                  {"dave", NULL, 0, "Overall looks good", NULL}};
    prompt_input in = PROMPT_INPUT_INIT;
    in.step = PROMPT_REVISION;
    in.repo = "r";
    in.issue_number = 4;
    in.branch = "farm/4-x";
    in.reviews = rc;
    in.nreviews = 2;
    in.history = "Run 1 opened PR #7.";
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_non_null(strstr(p, "`src/a.c` line 10 (carol)"));
    assert_non_null(strstr(p, "Use a constant here"));
    assert_non_null(strstr(p, "Review by dave"));
    assert_non_null(strstr(p, "Run 1 opened PR #7."));
    free(p);
}

/* A merge round lists the conflicted files; a plan round asks for the plan
 * file (and shows the previous plan); an implementation shows the approved
 * plan before its task. */
static void merge_and_plan_steps(void **state)
{
    prompt_input in = PROMPT_INPUT_INIT;
    char *p = NULL;
    (void)state;
    in.repo = "octo/app";
    in.issue_number = 9;
    in.issue_title = "Fix it";
    in.branch = "farm/9-fix-it";
    in.base_branch = "trunk";

    in.step = PROMPT_MERGE;
    in.conflicts = "- `src/a.c`\n- `README.md`\n";
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_non_null(strstr(p, "## Your task: resolve the merge conflicts"));
    assert_non_null(strstr(p, "- `src/a.c`\n- `README.md`"));
    assert_non_null(strstr(p, "merged `trunk` into the branch"));
    free(p);

    in.step = PROMPT_PLAN;
    in.conflicts = NULL;
    in.plan = "OLD-PLAN-TEXT";
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_non_null(strstr(p, "## Your task: write a plan"));
    assert_non_null(strstr(p, "FARM_PLAN_FILE"));
    char *prev = strstr(p, "# Your previous plan");
    assert_non_null(prev);
    assert_non_null(strstr(prev, "OLD-PLAN-TEXT"));
    assert_true(prev < strstr(p, "## Your task")); /* context, before the task */
    free(p);

    in.step = PROMPT_FIRST_RUN;
    in.plan = "APPROVED-PLAN-TEXT";
    assert_int_equal(prompt_compose(&p, &in), 0);
    char *approved = strstr(p, "# The approved plan");
    assert_non_null(approved);
    assert_non_null(strstr(approved, "APPROVED-PLAN-TEXT"));
    assert_true(approved < strstr(p, "## Your task"));
    free(p);

    in.plan = NULL;
    assert_int_equal(prompt_compose(&p, &in), 0);
    assert_null(strstr(p, "# The approved plan"));
    free(p);
}

static void missing_guidelines_is_clear(void **state)
{
    prompt_input in = PROMPT_INPUT_INIT;
    in.guidelines_dir = "/nonexistent";
    char *p = NULL;
    assert_int_equal(prompt_compose(&p, &in), FARM_ENOTFOUND);
    assert_null(p);
    assert_non_null(strstr(farm_error_last(), "/nonexistent/coding.md"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(order_is_guidelines_repo_issue_task),
        cmocka_unit_test(untrusted_text_is_not_expanded),
        cmocka_unit_test(links_are_not_followed),
        cmocka_unit_test(fix_round_keeps_tail_of_output),
        cmocka_unit_test(huge_issue_still_has_task),
        cmocka_unit_test(revision_lists_review_comments),
        cmocka_unit_test(merge_and_plan_steps),
        cmocka_unit_test(missing_guidelines_is_clear),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
