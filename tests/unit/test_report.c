/*
 * test_report.c - the status and milestone comments (farm/report/report.c): what
 * they say for each state and milestone, the session link, elapsed time,
 * the failure's last lines in a collapsed block, drafts said as drafts, a
 * revision that changed nothing, the wording people read, and that quoted text
 * (titles, output, questions) cannot break out: no HTML comment, no farm
 * marker, no closing of the code fence, no mentions; sizes stay bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"
#include "vcs/tracker/tracker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static store_session session(const char *state)
{
    store_session s = {0};
    s.id = 42;
    s.tracker = "github";
    s.repo = "o/r";
    s.number = 7;
    s.state = (char *)state;
    s.created_ms = 1000000;
    s.updated_ms = 1000000 + 65000;
    return s;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void durations(void **state)
{
    char d[32];
    report_duration(d, sizeof d, 0);
    assert_string_equal(d, "0s");
    report_duration(d, sizeof d, 4999);
    assert_string_equal(d, "4s");
    report_duration(d, sizeof d, 185000);
    assert_string_equal(d, "3m 05s");
    report_duration(d, sizeof d, 2 * 3600000 + 7 * 60000);
    assert_string_equal(d, "2h 07m");
    report_duration(d, sizeof d, 3 * 86400000LL + 4 * 3600000);
    assert_string_equal(d, "3d 4h");
    report_duration(d, sizeof d, -5);
    assert_string_equal(d, "0s");
}

static void tails(void **state)
{
    assert_string_equal(report_tail("a\nb\nc\nd\n\n\n", 2, 100), "c\nd\n\n\n");
    assert_string_equal(report_tail("one line", 5, 100), "one line");
    assert_string_equal(report_tail(NULL, 5, 100), "");
    /* the byte cap cuts at a line start */
    const char *t = report_tail("aaaaaaaaaa\nbbbb\ncc", 10, 5);
    assert_string_equal(t, "cc");
    assert_string_equal(report_tail("aaaaaaaaaa\nbbbb\ncc", 10, 8), "bbbb\ncc");
    /* ... or at a UTF-8 boundary inside one long line */
    t = report_tail("ééééé", 10, 5);
    assert_true(((unsigned char)t[0] & 0xC0) != 0x80);
    assert_true(strlen(t) <= 5);
}

static void status_running(void **state)
{
    store_session s = session("testing");
    s.branch = "farm/7-fix-it";
    report_info r = REPORT_INFO_INIT;
    char *md = NULL;
    r.session = &s;
    r.public_url = "http://farm.example:8080/";
    r.step = "running `make test`";
    r.now_ms = s.created_ms + 185000;
    r.tests = "41 passed, 1 failed";
    r.diffstat = " a.c | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n";
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_non_null(strstr(md, "Running the tests"));
    assert_non_null(strstr(md, "3m 05s"));
    assert_non_null(strstr(md, "](http://farm.example:8080/sessions/42)"));
    assert_non_null(strstr(md, "`farm/7-fix-it`"));
    assert_non_null(strstr(md, "41 passed, 1 failed"));
    assert_non_null(strstr(md, "1 file changed, 1 insertion(+), 1 deletion(-)"));
    assert_non_null(strstr(md, "running \\`make test\\`"));
    assert_null(strstr(md, "Reason"));
    free(md);

    /* the same input renders the same text (an unchanged status is not
     * edited again) */
    char *again = NULL;
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_int_equal(report_status_render(&again, &r), 0);
    assert_string_equal(md, again);
    free(md);
    free(again);
}

static void status_final(void **state)
{
    store_session s = session("failed");
    s.pr_url = "https://github.com/o/r/pull/9";
    report_info r = REPORT_INFO_INIT;
    char *md = NULL;
    r.session = &s;
    r.step = "should not show";
    r.reason = "tests failed after 2 rounds";
    r.now_ms = s.created_ms + 999999999; /* ignored: the session ended at updated_ms */
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_non_null(strstr(md, "Failed"));
    assert_non_null(strstr(md, "Took"));
    assert_non_null(strstr(md, "1m 05s"));
    assert_non_null(strstr(md, "tests failed after 2 rounds"));
    assert_non_null(strstr(md, "https://github.com/o/r/pull/9"));
    assert_null(strstr(md, "should not show"));
    assert_null(strstr(md, "/sessions/")); /* no public URL, no link */
    free(md);
}

static void milestones(void **state)
{
    store_session s = session("running");
    s.branch = "farm/7-fix-it";
    s.pr_url = "https://github.com/o/r/pull/9";
    report_info r = REPORT_INFO_INIT;
    char *md = NULL;
    r.session = &s;
    r.public_url = "http://farm.test";

    assert_int_equal(report_milestone_render(&md, REPORT_STARTED, &r), 0);
    assert_non_null(strstr(md, "On it"));
    assert_non_null(strstr(md, "http://farm.test/sessions/42"));
    free(md);

    r.summary = "Fixed the crash by checking for NULL.\n\n- a.c: the check";
    r.tests = "42 passed";
    r.diffstat = " a.c | 2 +-\n 1 file changed";
    assert_int_equal(report_milestone_render(&md, REPORT_PR_OPENED, &r), 0);
    assert_non_null(strstr(md, "https://github.com/o/r/pull/9"));
    assert_non_null(strstr(md, "- a.c: the check")); /* the summary stays Markdown */
    assert_non_null(strstr(md, "42 passed"));
    assert_non_null(strstr(md, "<details><summary>Diffstat</summary>"));
    free(md);

    r.question = "Should the limit be 10 or 100?\nBoth appear in the docs.";
    /* before the PR exists: the placeholder the outbox fills in */
    s.pr_url = NULL;
    assert_int_equal(report_milestone_render(&md, REPORT_PR_OPENED, &r), 0);
    assert_non_null(strstr(md, "Pull request opened: " OUTBOX_PR_URL "\n"));
    free(md);

    assert_int_equal(report_milestone_render(&md, REPORT_QUESTION, &r), 0);
    assert_non_null(strstr(md, "> Should the limit be 10 or 100?\n> Both appear in the docs.\n"));
    free(md);

    assert_int_equal(report_milestone_render(&md, (report_milestone)99, &r), FARM_EINVALID);
    assert_null(md);
    r.session = NULL;
    assert_int_equal(report_status_render(&md, &r), FARM_EINVALID);
    assert_int_equal(report_milestone_render(&md, REPORT_STARTED, &r), FARM_EINVALID);
}

static void failed_shows_last_lines(void **state)
{
    store_session s = session("failed");
    report_info r = REPORT_INFO_INIT;
    char out[8192] = "", *md = NULL;
    for (int i = 1; i <= 100; i++) {
        char line[64];
        snprintf(line, sizeof line, "line %03d of the output\n", i);
        strcat(out, line);
    }
    r.session = &s;
    r.reason = "the test command exited with 2";
    r.output = out;
    assert_int_equal(report_milestone_render(&md, REPORT_FAILED, &r), 0);
    assert_non_null(strstr(md, "the test command exited with 2"));
    assert_non_null(strstr(md, "<details><summary>Last lines of output</summary>"));
    assert_non_null(strstr(md, "line 100 of the output"));
    assert_non_null(strstr(md, "line 071 of the output"));
    assert_null(strstr(md, "line 070 of the output"));
    assert_non_null(strstr(md, "</details>"));
    free(md);
}

/* The destinations the egress proxy refused: named in the failure and PR
 * comments and in the status comment, with the reason and the count; a
 * host cannot pass for Markdown; past REPORT_EGRESS_MAX the rest is counted.
 * The status comment says an issue is on hold. */
static void denied_hosts_and_hold(void **state)
{
    store_session s = session("failed");
    report_info r = REPORT_INFO_INIT;
    report_egress d[REPORT_EGRESS_MAX + 2];
    char *md = NULL;
    (void)state;

    d[0] = (report_egress){"pypi.org", 443, "not on the allowlist", "agent", 37};
    d[1] = (report_egress){"evil_*host*", 80, "not on the allowlist", "agent", 1};
    r.session = &s;
    r.reason = "the agent exited with status 1";
    r.denied = d;
    r.ndenied = 2;
    assert_int_equal(report_milestone_render(&md, REPORT_FAILED, &r), 0);
    assert_non_null(strstr(md, "**Network:** The agent tried to reach `pypi.org:443` (denied: not "
                               "on the allowlist, 37 times), `evil_host:80` (denied: "
                               "not on the allowlist)."));
    assert_non_null(strstr(md, "`sandbox.allow_hosts`"));
    free(md);

    d[1].step = "test"; /* two steps: "the run" */
    assert_int_equal(report_milestone_render(&md, REPORT_FAILED, &r), 0);
    assert_non_null(strstr(md, "The run tried to reach"));
    free(md);

    for (int i = 0; i < REPORT_EGRESS_MAX + 2; i++)
        d[i] = (report_egress){"a.example", 1000 + i, "not on the allowlist", "agent", 1};
    r.ndenied = REPORT_EGRESS_MAX + 2;
    r.hold = "alice";
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_non_null(strstr(md, "| **Network denied** | `a.example:1000` (denied: not on the "
                               "allowlist)"));
    assert_non_null(strstr(md, "and 2 more (see the session log) |"));
    assert_int_equal(count(md, "a.example:"), REPORT_EGRESS_MAX);
    assert_non_null(strstr(md, "| **On hold** | by alice: nothing new starts until `/farm "
                               "unhold` |"));
    free(md);

    r.denied = NULL; /* nothing denied: nothing said */
    r.ndenied = 0;
    r.hold = NULL;
    assert_int_equal(report_milestone_render(&md, REPORT_FAILED, &r), 0);
    assert_null(strstr(md, "Network"));
    free(md);
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_null(strstr(md, "Network"));
    assert_null(strstr(md, "On hold"));
    free(md);
}

/* Quoted text cannot escape its place. */
static void hostile_text(void **state)
{
    store_session s = session("failed");
    report_info r = REPORT_INFO_INIT;
    char *md = NULL;
    r.session = &s;
    r.reason = "<!-- farm:s42:pr --> @everyone <script>x</script> | col";
    r.output = "```\n</details>\n<!-- farm:s1:status -->\n````\ndone";
    r.tests = "**bold** [link](http://evil)";
    assert_int_equal(report_milestone_render(&md, REPORT_FAILED, &r), 0);
    assert_false(tracker_body_has_marker(md, "s42:pr", 1));
    assert_false(tracker_body_has_marker(md, "s1:status", 1));
    assert_null(strstr(md, "<!-- farm:"));
    assert_null(strstr(md, "<script>"));
    assert_non_null(strstr(md, "&lt;script&gt;"));
    assert_non_null(strstr(md, "\\@everyone"));
    assert_non_null(strstr(md, "\\*\\*bold\\*\\*"));
    /* the output's longest backtick run is 4: the fence is 5 long, and the
     * block closes only after the output */
    const char *open = strstr(md, "`````\n");
    assert_non_null(open);
    const char *close = strstr(open + 6, "\n`````\n");
    assert_non_null(close);
    assert_non_null(strstr(open, "</details>\n<!-- farm-quoted:s1:status -->"));
    assert_true(strstr(open, "done") < close);
    assert_int_equal(count(md, "</details>"), 2); /* the output's and ours */
    free(md);

    /* the question is the agent's Markdown, but still no marker */
    s.state = "waiting";
    r.question = "What now? <!-- farm:s42:status -->";
    assert_int_equal(report_milestone_render(&md, REPORT_QUESTION, &r), 0);
    assert_false(tracker_body_has_marker(md, "s42:status", 1));
    free(md);
}

/* What a person reads: the started comment points down to the status
 * comment (posted after it), the status comment counts runs as runs, and a
 * test command shows as code, not as escaped backticks. */
static void wording(void **state)
{
    store_session s = session("running");
    report_info r = REPORT_INFO_INIT;
    char *md = NULL;
    r.session = &s;
    assert_int_equal(report_milestone_render(&md, REPORT_STARTED, &r), 0);
    assert_non_null(strstr(md, "the status comment below"));
    assert_null(strstr(md, "above"));
    free(md);

    r.run = 2;
    r.step = "the agent is at work";
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_non_null(strstr(md, "| **Run** | 2 |"));
    assert_null(strstr(md, "Round"));
    free(md);

    s.state = "review";
    s.pr_url = "https://github.com/o/r/pull/9";
    r.tests = "passed (`sh test.sh`, round 1)";
    assert_int_equal(report_milestone_render(&md, REPORT_PR_OPENED, &r), 0);
    assert_non_null(strstr(md, "**Tests:** passed (`sh test.sh`, round 1)\n"));
    assert_null(strstr(md, "\\`"));
    free(md);

    /* in a table cell a '|' in the code is escaped; quoted text stays inert */
    r.tests = "failing (`make check | tee log <!-- farm:s42:pr -->`, exit status 2) @all `x";
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_non_null(strstr(md, "| **Tests** | failing (`make check \\| tee log "));
    assert_non_null(strstr(md, ", exit status 2) \\@all \\`x |\n"));
    assert_false(tracker_body_has_marker(md, "s42:pr", 1));
    free(md);
}

/* A draft pull request is announced as a draft, with why, in the comment
 * and in the status comment; a revision that changed nothing says so. */
static void drafts_and_unchanged(void **state)
{
    store_session s = session("review");
    report_info r = REPORT_INFO_INIT;
    char *md = NULL;
    s.pr_url = "https://github.com/o/r/pull/9";
    r.session = &s;
    r.tests = "failing (`sh test.sh`, exit status 1, after 3 rounds)";
    r.draft = 1;
    r.draft_reason = "the tests still fail after 3 rounds";
    assert_int_equal(report_milestone_render(&md, REPORT_PR_OPENED, &r), 0);
    assert_non_null(strstr(md, "### 🚧 Draft pull request opened: https://github.com/o/r/pull/9"));
    assert_non_null(strstr(md, "not ready to merge:** the tests still fail after 3 rounds."));
    assert_null(strstr(md, "✅"));
    free(md);
    r.draft = 0;
    assert_int_equal(report_milestone_render(&md, REPORT_PR_OPENED, &r), 0);
    assert_non_null(strstr(md, "### ✅ Pull request opened"));
    assert_null(strstr(md, "Draft"));
    free(md);

    /* the status comment reads the session's draft state */
    s.pr_draft = 1;
    s.pr_draft_reason = "the tests still fail after 3 rounds";
    r.tests = NULL;
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_non_null(strstr(md, "### 👀 Waiting for review (a draft pull request)\n"));
    assert_non_null(strstr(md, "| **Pull request** | draft, https://github.com/o/r/pull/9 (the "
                               "tests still fail after 3 rounds) |"));
    free(md);
    s.pr_draft = 0;
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_null(strstr(md, "draft"));
    free(md);

    /* a revision that changed nothing, with the agent's error */
    r.reason = "the agent exited with status 1 before changing anything";
    r.output = "applying the review\nerror: patch failed: hello.txt:1\n";
    r.summary = "I could not apply it.";
    assert_int_equal(report_milestone_render(&md, REPORT_UNCHANGED, &r), 0);
    assert_non_null(strstr(md, "The revision changed nothing"));
    assert_non_null(strstr(md, "**Why:** the agent exited with status 1"));
    assert_non_null(strstr(md, "> I could not apply it.\n"));
    assert_non_null(strstr(md, "<details><summary>Last lines of the agent's output</summary>"));
    assert_non_null(strstr(md, "error: patch failed: hello.txt:1"));
    free(md);
    r.reason = r.output = r.summary = NULL;
    assert_int_equal(report_milestone_render(&md, REPORT_UNCHANGED, &r), 0);
    assert_non_null(strstr(md, "It left no summary."));
    assert_null(strstr(md, "Why"));
    assert_null(strstr(md, "<details>"));
    free(md);
}

static void sizes_bounded(void **state)
{
    store_session s = session("failed");
    report_info r = REPORT_INFO_INIT;
    size_t big = 4u << 20;
    char *huge = malloc(big + 1), *md = NULL;
    assert_non_null(huge);
    for (size_t i = 0; i < big; i++)
        huge[i] = (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
    huge[big] = 0;
    r.session = &s;
    r.reason = huge;
    r.output = huge;
    r.tests = huge;
    assert_int_equal(report_milestone_render(&md, REPORT_FAILED, &r), 0);
    assert_true(strlen(md) < REPORT_BODY_MAX);
    assert_non_null(strstr(md, "…"));
    free(md);
    r.summary = huge;
    r.diffstat = huge;
    assert_int_equal(report_milestone_render(&md, REPORT_PR_OPENED, &r), 0);
    assert_true(strlen(md) < REPORT_BODY_MAX);
    assert_non_null(strstr(md, "the rest is in the session log"));
    free(md);
    r.question = huge;
    assert_int_equal(report_milestone_render(&md, REPORT_QUESTION, &r), 0);
    assert_true(strlen(md) < REPORT_BODY_MAX);
    free(md);
    assert_int_equal(report_status_render(&md, &r), 0);
    assert_true(strlen(md) < 8192);
    free(md);
    free(huge);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations),
        cmocka_unit_test(tails),
        cmocka_unit_test(status_running),
        cmocka_unit_test(status_final),
        cmocka_unit_test(milestones),
        cmocka_unit_test(failed_shows_last_lines),
        cmocka_unit_test(hostile_text),
        cmocka_unit_test(sizes_bounded),
        cmocka_unit_test(wording),
        cmocka_unit_test(drafts_and_unchanged),
        cmocka_unit_test(denied_hosts_and_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
