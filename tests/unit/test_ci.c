/*
 * test_ci.c - the CI fix loop's pure parts: GitHub's check_run,
 * check_suite, workflow_run and status deliveries and Azure DevOps's
 * build.complete as tracker events (completions only; wrong shapes give an
 * error, never a crash), the tail a log is cut to, and the issue a farm
 * branch names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/intake/ci.h"
#include "vcs/tracker/tracker.h"
#include "webhook/hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHA "6dcb09b5b57875f334f61aebed695e2e4193db5e"

static int gh(tracker_event *ev, const char *event, const char *json)
{
    return hook_github_parse(ev, event, "d-1", json, strlen(json));
}

static void check_run_completed(void **state)
{
    (void)state;
    tracker_event ev;
    const char *body =
        "{\"action\": \"completed\", \"repository\": {\"full_name\": \"octo/app\"},"
        " \"sender\": {\"login\": \"github-actions[bot]\", \"type\": \"Bot\"},"
        " \"check_run\": {\"id\": 4, \"name\": \"build / test\", \"head_sha\": \"" SHA "\","
        "  \"status\": \"completed\", \"conclusion\": \"failure\","
        "  \"html_url\": \"https://github.com/octo/app/runs/4\","
        "  \"check_suite\": {\"head_branch\": \"farm/12-fix-typo\"},"
        "  \"pull_requests\": [{\"number\": 34}, {\"number\": 35}]}}";
    assert_int_equal(gh(&ev, "check_run", body), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_string_equal(ev.repo, "octo/app");
    assert_string_equal(ev.head_sha, SHA);
    assert_string_equal(ev.head_branch, "farm/12-fix-typo");
    assert_string_equal(ev.check_name, "build / test");
    assert_string_equal(ev.check_conclusion, "failure");
    assert_int_equal(ev.number, 34);
    assert_true(ev.is_pr);
    assert_true(ev.actor_is_bot);
    assert_string_equal(tracker_event_kind_name(ev.kind), "check_completed");
    tracker_event_free(&ev);

    /* created / in progress: nothing to act on yet */
    const char *running = "{\"action\": \"created\", \"repository\": {\"full_name\": \"octo/app\"},"
                          " \"check_run\": {\"id\": 4, \"name\": \"t\", \"head_sha\": \"" SHA "\","
                          "  \"status\": \"in_progress\"}}";
    assert_int_equal(gh(&ev, "check_run", running), 0);
    assert_int_equal(ev.kind, TEV_OTHER);
    tracker_event_free(&ev);
}

static void suite_and_workflow_run(void **state)
{
    (void)state;
    tracker_event ev;
    const char *suite =
        "{\"action\": \"completed\", \"repository\": {\"full_name\": \"octo/app\"},"
        " \"check_suite\": {\"head_sha\": \"" SHA "\", \"head_branch\": \"farm/3-x\","
        "  \"conclusion\": \"success\", \"app\": {\"name\": \"GitHub Actions\"},"
        "  \"pull_requests\": []}}";
    assert_int_equal(gh(&ev, "check_suite", suite), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_string_equal(ev.check_name, "GitHub Actions");
    assert_string_equal(ev.check_conclusion, "success");
    assert_string_equal(ev.head_branch, "farm/3-x");
    assert_int_equal(ev.number, 0); /* no PR named: the branch says which */
    assert_false(ev.is_pr);
    tracker_event_free(&ev);

    const char *wf = "{\"action\": \"completed\", \"repository\": {\"full_name\": \"octo/app\"},"
                     " \"workflow_run\": {\"name\": \"CI\", \"head_sha\": \"" SHA "\","
                     "  \"head_branch\": \"farm/3-x\", \"conclusion\": \"timed_out\","
                     "  \"pull_requests\": [{\"number\": 7}]}}";
    assert_int_equal(gh(&ev, "workflow_run", wf), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_string_equal(ev.check_name, "CI");
    assert_string_equal(ev.check_conclusion, "timed_out");
    assert_int_equal(ev.number, 7);
    tracker_event_free(&ev);
}

static void commit_status(void **state)
{
    (void)state;
    tracker_event ev;
    const char *st = "{\"sha\": \"" SHA "\", \"state\": \"error\", \"context\": \"ci/jenkins\","
                     " \"repository\": {\"full_name\": \"octo/app\"},"
                     " \"branches\": [{\"name\": \"main\"}, {\"name\": \"farm/9-y\"}]}";
    assert_int_equal(gh(&ev, "status", st), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_string_equal(ev.check_name, "ci/jenkins");
    assert_string_equal(ev.check_conclusion, "error");
    assert_string_equal(ev.head_branch, "farm/9-y"); /* the farm's branch is preferred */
    tracker_event_free(&ev);

    const char *pending = "{\"sha\": \"" SHA "\", \"state\": \"pending\","
                          " \"repository\": {\"full_name\": \"octo/app\"}}";
    assert_int_equal(gh(&ev, "status", pending), 0);
    assert_int_equal(ev.kind, TEV_OTHER);
    tracker_event_free(&ev);
}

static void github_wrong_shapes(void **state)
{
    (void)state;
    tracker_event ev;
    static const struct {
        const char *event, *body;
    } bad[] = {
        {"check_run", "{\"action\": \"completed\", \"repository\": {\"full_name\": \"o/r\"}}"},
        {"check_run", "{\"action\": \"completed\", \"repository\": {\"full_name\": \"o/r\"},"
                      " \"check_run\": {\"name\": \"x\"}}"},
        {"check_suite", "{\"action\": \"completed\", \"check_suite\": {\"head_sha\": \"a\"}}"},
        {"workflow_run", "{\"action\": \"completed\", \"repository\": {\"full_name\": \"o/r\"},"
                         " \"workflow_run\": []}"},
        {"status", "{\"state\": \"failure\", \"repository\": {\"full_name\": \"o/r\"}}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gh(&ev, bad[i].event, bad[i].body), FARM_EINVALID);
        assert_null(ev.tracker); /* nothing left behind */
    }
    /* odd but harmless: a status with branches of the wrong type */
    const char *odd = "{\"sha\": \"" SHA "\", \"state\": \"failure\", \"branches\": [1, null],"
                      " \"repository\": {\"full_name\": \"o/r\"}}";
    assert_int_equal(gh(&ev, "status", odd), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_null(ev.head_branch);
    tracker_event_free(&ev);
}

static void azure_build_complete(void **state)
{
    (void)state;
    tracker_event ev;
    hook_azure_where w;
    const char *pr_build =
        "{\"id\": \"e-1\", \"eventType\": \"build.complete\", \"resource\": {"
        " \"id\": 55, \"status\": \"completed\", \"result\": \"failed\","
        " \"sourceBranch\": \"refs/pull/21/merge\", \"sourceVersion\": \"ffff\","
        " \"definition\": {\"id\": 3, \"name\": \"PR build\"},"
        " \"project\": {\"name\": \"Proj\"}, \"repository\": {\"name\": \"web\"},"
        " \"triggerInfo\": {\"pr.number\": \"21\", \"pr.sourceSha\": \"" SHA "\","
        "  \"pr.sourceBranch\": \"refs/heads/farm/4-z\"}}}";
    assert_int_equal(hook_azure_parse_where(&ev, &w, pr_build, strlen(pr_build)), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_string_equal(ev.repo, "Proj/web");
    assert_string_equal(w.project, "Proj");
    assert_string_equal(w.repository, "web");
    assert_int_equal(ev.number, 21);
    assert_true(ev.is_pr);
    assert_string_equal(ev.head_sha, SHA); /* the PR's commit, not the merge commit */
    assert_string_equal(ev.head_branch, "farm/4-z");
    assert_string_equal(ev.check_name, "PR build");
    assert_string_equal(ev.check_conclusion, "failed");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    const char *branch_build =
        "{\"id\": \"e-2\", \"eventType\": \"build.complete\", \"resource\": {"
        " \"id\": 56, \"status\": \"completed\", \"result\": \"succeeded\","
        " \"sourceBranch\": \"refs/heads/farm/4-z\", \"sourceVersion\": \"" SHA "\","
        " \"definition\": {\"name\": \"CI\", \"project\": {\"name\": \"Proj\"}},"
        " \"repository\": {\"name\": \"web\"}}}";
    assert_int_equal(hook_azure_parse_where(&ev, &w, branch_build, strlen(branch_build)), 0);
    assert_int_equal(ev.kind, TEV_CHECK_COMPLETED);
    assert_int_equal(ev.number, 0);
    assert_string_equal(ev.head_branch, "farm/4-z");
    assert_string_equal(ev.head_sha, SHA);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    const char *no_repo = "{\"id\": \"e-3\", \"eventType\": \"build.complete\", \"resource\": {"
                          " \"status\": \"completed\", \"sourceVersion\": \"" SHA "\"}}";
    assert_int_equal(hook_azure_parse_where(&ev, &w, no_repo, strlen(no_repo)), 0);
    assert_int_equal(ev.kind, TEV_OTHER); /* nothing says where it belongs */
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
    const char *no_sha = "{\"id\": \"e-4\", \"eventType\": \"build.complete\", \"resource\": {"
                         " \"status\": \"completed\", \"project\": {\"name\": \"P\"},"
                         " \"repository\": {\"name\": \"r\"}}}";
    assert_int_equal(hook_azure_parse_where(&ev, &w, no_sha, strlen(no_sha)), FARM_EINVALID);
}

static void log_tail_is_bounded(void **state)
{
    (void)state;
    char *t = tracker_text_tail("short\r\nlog\n", 11, 100);
    assert_string_equal(t, "short\nlog\n"); /* carriage returns dropped */
    free(t);

    /* over the cap: cut to a line's start within the last max bytes */
    const char *s = "aaaa\nbbbb\ncccc\n";
    t = tracker_text_tail(s, strlen(s), 8);
    assert_string_equal(t, "cccc\n");
    free(t);

    /* no line starts in the kept part: cut, but never inside a UTF-8 sequence */
    const char *u = "xxxx\xc3\xa9\xc3\xa9\xc3\xa9";
    t = tracker_text_tail(u, strlen(u), 5);
    assert_true(strlen(t) <= 5);
    assert_true(((unsigned char)t[0] & 0xC0) != 0x80);
    assert_string_equal(t, "\xc3\xa9\xc3\xa9");
    free(t);

    /* NUL bytes in a log never end the text early */
    const char nul[] = {'a', '\0', 'b', '\n'};
    t = tracker_text_tail(nul, sizeof nul, 100);
    assert_string_equal(t, "ab\n");
    free(t);

    /* a big log: the tail is at most the cap and ends with the log's end */
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 61 == 60 ? '\n' : 'a' + (char)(i % 26);
    t = tracker_text_tail(big, n, 6144);
    assert_true(strlen(t) <= 6144);
    assert_true(strlen(t) > 6000);
    assert_memory_equal(t + strlen(t) - 10, big + n - 10, 10);
    free(t);
    free(big);

    t = tracker_text_tail(NULL, 0, 10);
    assert_string_equal(t, "");
    free(t);
}

static void branch_names_their_issue(void **state)
{
    (void)state;
    assert_int_equal(ci_branch_issue("farm/12-fix-typo"), 12);
    assert_int_equal(ci_branch_issue("farm/7"), 7);
    assert_int_equal(ci_branch_issue("farm/0-x"), 0);
    assert_int_equal(ci_branch_issue("farm/-1-x"), 0);
    assert_int_equal(ci_branch_issue("farm/12x"), 0);
    assert_int_equal(ci_branch_issue("feature/12-x"), 0);
    assert_int_equal(ci_branch_issue("farm/"), 0);
    assert_int_equal(ci_branch_issue(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_run_completed),
        cmocka_unit_test(suite_and_workflow_run),
        cmocka_unit_test(commit_status),
        cmocka_unit_test(github_wrong_shapes),
        cmocka_unit_test(azure_build_complete),
        cmocka_unit_test(log_tail_is_bounded),
        cmocka_unit_test(branch_names_their_issue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
