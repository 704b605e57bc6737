/*
 * test_hooks.c - the webhook parsers, the Azure repository mapping and the
 * webhook/API authentication: every event kind the farm understands,
 * normalised from realistic payloads, and payloads of the wrong shape, which
 * must give a clear error or an "other" event, never a crash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "base/crypto.h"
#include "base/error.h"
#include "webhook/auth.h"
#include "webhook/hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static char *fixture(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    const char *src = getenv("FARM_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/fixtures/%s/%s.json", src ? src : FARM_SOURCE_DIR, dir,
             name);
    return slurp(path, len);
}

/* Parse tests/fixtures/github/<file>.json as event `event`. */
static void github(tracker_event *ev, const char *event, const char *file)
{
    size_t len;
    char *body = fixture("github", file, &len);
    int rc = hook_github_parse(ev, event, "72d3162e-cc78-11e3-81ab-4c9367dc0958", body, len);
    free(body);
    if (rc)
        fail_msg("%s: %s", file, farm_error_last());
    assert_string_equal(ev->tracker, "github");
    assert_string_equal(ev->delivery_id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_string_equal(ev->event, event);
}

static void test_github_ping(void **state)
{
    tracker_event ev;
    github(&ev, "ping", "ping");
    assert_int_equal(ev.kind, TEV_PING);
    assert_string_equal(ev.repo, "octo/app");
    tracker_event_free(&ev);
}

static void test_github_issue_opened(void **state)
{
    tracker_event ev;
    github(&ev, "issues", "issues.opened");
    assert_int_equal(ev.kind, TEV_ISSUE_OPENED);
    assert_string_equal(ev.action, "opened");
    assert_string_equal(ev.repo, "octo/app");
    assert_int_equal(ev.number, 12);
    assert_false(ev.is_pr);
    assert_string_equal(ev.title, "Fix the typo in the README");
    assert_non_null(strstr(ev.body, "`teh`"));
    assert_string_equal(ev.url, "https://github.com/octo/app/issues/12");
    assert_string_equal(ev.actor, "octocat");
    assert_int_equal(ev.actor_access, ACTOR_WRITE); /* OWNER, and the sender wrote it */
    assert_false(ev.actor_is_bot);
    assert_int_equal(ev.nlabels, 1);
    assert_string_equal(ev.labels[0], "bug");
    assert_null(ev.labels[1]);
    assert_int_equal(ev.installation_id, 4242);
    tracker_event_free(&ev);

    github(&ev, "issues", "issues.opened.stranger");
    assert_int_equal(ev.kind, TEV_ISSUE_OPENED);
    assert_string_equal(ev.actor, "drive-by");
    assert_int_equal(ev.actor_access, ACTOR_NONE);
    tracker_event_free(&ev);
}

static void test_github_issue_actions(void **state)
{
    static const struct {
        const char *file;
        tracker_event_kind kind;
    } cases[] = {
        {"issues.edited", TEV_ISSUE_EDITED},
        {"issues.closed", TEV_ISSUE_CLOSED},
        {"issues.reopened", TEV_ISSUE_REOPENED},
        {"issues.milestoned", TEV_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tracker_event ev;
        github(&ev, "issues", cases[i].file);
        assert_int_equal(ev.kind, cases[i].kind);
        assert_int_equal(ev.number, 12);
        assert_string_equal(ev.repo, "octo/app");
        tracker_event_free(&ev);
    }
}

static void test_github_issue_labeled(void **state)
{
    tracker_event ev;
    github(&ev, "issues", "issues.labeled");
    assert_int_equal(ev.kind, TEV_ISSUE_LABELED);
    assert_string_equal(ev.label, "agent");
    assert_int_equal(ev.nlabels, 2);
    assert_string_equal(ev.labels[1], "agent");
    assert_int_equal(ev.actor_access, ACTOR_WRITE);
    tracker_event_free(&ev);

    github(&ev, "issues", "issues.unlabeled");
    assert_int_equal(ev.kind, TEV_ISSUE_UNLABELED);
    assert_string_equal(ev.label, "agent");
    assert_int_equal(ev.nlabels, 1);
    tracker_event_free(&ev);
}

static void test_github_issue_assigned(void **state)
{
    tracker_event ev;
    github(&ev, "issues", "issues.assigned");
    assert_int_equal(ev.kind, TEV_ISSUE_ASSIGNED);
    assert_string_equal(ev.assignee, "farm-bot[bot]");
    assert_int_equal(ev.nassignees, 1);
    assert_string_equal(ev.assignees[0], "farm-bot[bot]");
    tracker_event_free(&ev);
}

static void test_github_comments(void **state)
{
    tracker_event ev;
    github(&ev, "issue_comment", "issue_comment.created");
    assert_int_equal(ev.kind, TEV_COMMENT_CREATED);
    assert_false(ev.is_pr);
    assert_int_equal(ev.number, 12);
    assert_int_equal(ev.comment_id, 1500000001);
    assert_string_equal(ev.comment_body, "@farm-bot please also fix the typo in CONTRIBUTING.md");
    assert_string_equal(ev.comment_url,
                        "https://github.com/octo/app/issues/12#issuecomment-1500000001");
    assert_int_equal(ev.actor_access, ACTOR_WRITE); /* MEMBER */
    tracker_event_free(&ev);

    github(&ev, "issue_comment", "issue_comment.edited");
    assert_int_equal(ev.kind, TEV_COMMENT_EDITED);
    assert_string_equal(ev.comment_body, "@farm-bot please fix CONTRIBUTING.md too");
    tracker_event_free(&ev);

    github(&ev, "issue_comment", "issue_comment.created.pr");
    assert_int_equal(ev.kind, TEV_COMMENT_CREATED);
    assert_true(ev.is_pr);
    assert_int_equal(ev.number, 34);
    assert_string_equal(ev.comment_body, "/farm retry");
    tracker_event_free(&ev);

    github(&ev, "issue_comment", "issue_comment.deleted");
    assert_int_equal(ev.kind, TEV_OTHER);
    tracker_event_free(&ev);
}

static void test_github_review(void **state)
{
    tracker_event ev;
    github(&ev, "pull_request_review", "pull_request_review.submitted");
    assert_int_equal(ev.kind, TEV_REVIEW_SUBMITTED);
    assert_true(ev.is_pr);
    assert_int_equal(ev.number, 34);
    assert_int_equal(ev.review_id, 80);
    assert_string_equal(ev.review_state, "changes_requested");
    assert_string_equal(ev.comment_body, "Please also update the changelog.");
    assert_string_equal(ev.head_branch, "farm/12-fix-the-typo");
    assert_int_equal(ev.actor_access, ACTOR_WRITE); /* COLLABORATOR */
    tracker_event_free(&ev);
}

static void test_github_review_comment(void **state)
{
    tracker_event ev;
    github(&ev, "pull_request_review_comment", "pull_request_review_comment.created");
    assert_int_equal(ev.kind, TEV_REVIEW_COMMENT);
    assert_true(ev.is_pr);
    assert_int_equal(ev.number, 34);
    assert_string_equal(ev.path, "README.md");
    assert_int_equal(ev.line, 3);
    assert_int_equal(ev.in_reply_to, 2600000000LL);
    assert_int_equal(ev.comment_id, 2600000001LL);
    assert_string_equal(ev.comment_body, "Capitalise this one.");
    assert_int_equal(ev.actor_access, ACTOR_NONE); /* CONTRIBUTOR: no write access */
    tracker_event_free(&ev);
}

static void test_github_pull_request(void **state)
{
    tracker_event ev;
    github(&ev, "pull_request", "pull_request.opened");
    assert_int_equal(ev.kind, TEV_PR_OPENED);
    assert_true(ev.is_pr);
    assert_int_equal(ev.number, 34);
    assert_string_equal(ev.head_branch, "farm/12-fix-the-typo");
    assert_true(ev.actor_is_bot);
    tracker_event_free(&ev);

    github(&ev, "pull_request", "pull_request.synchronize");
    assert_int_equal(ev.kind, TEV_PR_UPDATED);
    tracker_event_free(&ev);

    github(&ev, "pull_request", "pull_request.closed.merged");
    assert_int_equal(ev.kind, TEV_PR_CLOSED);
    assert_true(ev.merged);
    tracker_event_free(&ev);

    github(&ev, "pull_request", "pull_request.closed.unmerged");
    assert_int_equal(ev.kind, TEV_PR_CLOSED);
    assert_false(ev.merged);
    tracker_event_free(&ev);
}

/* A fixture with one string replaced (it must occur), parsed. */
static int parse_edited(tracker_event *ev, const char *dir, const char *name, const char *from,
                        const char *to, const char *event)
{
    size_t len;
    char *body = fixture(dir, name, &len);
    char *at = strstr(body, from);
    assert_non_null(at);
    size_t fl = strlen(from), tl = strlen(to);
    char *edited = malloc(len - fl + tl + 1);
    memcpy(edited, body, (size_t)(at - body));
    memcpy(edited + (at - body), to, tl);
    strcpy(edited + (at - body) + tl, at + fl);
    free(body);
    int rc = event ? hook_github_parse(ev, event, "d", edited, strlen(edited))
                   : hook_azure_parse(ev, edited, strlen(edited));
    free(edited);
    return rc;
}

/* A push names the branch and its new head; tags and deletions are not
 * pushes of a branch. A PR GitHub says will not merge is unmergeable (null:
 * not computed yet, is not). */
static void test_github_push_and_mergeable(void **state)
{
    tracker_event ev;
    const char *push = "{\"ref\":\"refs/heads/main\",\"before\":\""
                       "1111111111111111111111111111111111111111\",\"after\":\""
                       "2222222222222222222222222222222222222222\",\"deleted\":false,"
                       "\"repository\":{\"full_name\":\"octo/app\"},"
                       "\"sender\":{\"login\":\"alice\",\"type\":\"User\"}}";
    assert_int_equal(hook_github_parse(&ev, "push", "d", push, strlen(push)), 0);
    assert_int_equal(ev.kind, TEV_BRANCH_PUSHED);
    assert_string_equal(ev.pushed_branch, "main");
    assert_string_equal(ev.pushed_oid, "2222222222222222222222222222222222222222");
    assert_string_equal(ev.repo, "octo/app");
    assert_string_equal(tracker_event_kind_name(ev.kind), "branch_pushed");
    tracker_event_free(&ev);

    const char *others[] = {
        "{\"repository\":{\"full_name\":\"o/r\"},\"ref\":\"refs/tags/"
        "v1\",\"after\":\"2222222222222222222222222222222222222222\"}",
        "{\"repository\":{\"full_name\":\"o/r\"},\"ref\":\"refs/heads/"
        "main\",\"deleted\":true,\"after\":"
        "\"0000000000000000000000000000000000000000\"}",
        "{\"repository\":{\"full_name\":\"o/r\"},\"ref\":\"refs/heads/"
        "main\",\"after\":\"not-an-oid\"}",
        "{\"repository\":{\"full_name\":\"o/r\"},\"ref\":\"refs/heads/"
        "\",\"after\":\"2222222222222222222222222222222222222222\"}",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        assert_int_equal(hook_github_parse(&ev, "push", "d", others[i], strlen(others[i])), 0);
        assert_int_equal(ev.kind, TEV_OTHER);
        assert_null(ev.pushed_branch);
        tracker_event_free(&ev);
    }

    github(&ev, "pull_request", "pull_request.synchronize");
    assert_false(ev.unmergeable);
    tracker_event_free(&ev);
    assert_int_equal(parse_edited(&ev, "github", "pull_request.synchronize", "\"mergeable\": null",
                                  "\"mergeable\": false", "pull_request"),
                     0);
    assert_int_equal(ev.kind, TEV_PR_UPDATED);
    assert_true(ev.unmergeable);
    tracker_event_free(&ev);

    assert_int_equal(parse_edited(&ev, "azure", "git.pullrequest.updated",
                                  "\"mergeStatus\": \"succeeded\"",
                                  "\"mergeStatus\": \"conflicts\"", NULL),
                     0);
    assert_int_equal(ev.kind, TEV_PR_UPDATED);
    assert_true(ev.unmergeable);
    tracker_event_free(&ev);
    (void)state;
}

static void test_github_installation(void **state)
{
    tracker_event ev;
    github(&ev, "installation", "installation.created");
    assert_int_equal(ev.kind, TEV_INSTALLATION);
    assert_string_equal(ev.action, "created");
    assert_int_equal(ev.installation_id, 4242);
    tracker_event_free(&ev);

    github(&ev, "installation_repositories", "installation_repositories.added");
    assert_int_equal(ev.kind, TEV_INSTALLATION_REPOS);
    assert_string_equal(ev.action, "added");
    assert_int_equal(ev.installation_id, 4242);
    tracker_event_free(&ev);
}

static void test_github_other_event(void **state)
{
    tracker_event ev;
    github(&ev, "star", "star.created");
    assert_int_equal(ev.kind, TEV_OTHER);
    assert_string_equal(ev.event, "star");
    assert_string_equal(ev.repo, "octo/app");
    tracker_event_free(&ev);
}

/* Bodies of the wrong shape: each must be refused (FARM_EINVALID) or read as
 * "other", and the event must be zeroed on refusal. */
static void test_github_wrong_shapes(void **state)
{
    static const struct {
        const char *event;
        const char *body;
        int rc; /* expected: 0 (then kind is checked) or FARM_EINVALID */
        tracker_event_kind kind;
    } cases[] = {
        {"issues", "", FARM_EINVALID, 0},
        {"issues", "{", FARM_EINVALID, 0},
        {"issues", "[]", FARM_EINVALID, 0},
        {"issues", "null", FARM_EINVALID, 0},
        {"issues", "\"issues\"", FARM_EINVALID, 0},
        {"issues", "{}", FARM_EINVALID, 0},
        {"issues", "{\"action\":\"opened\",\"repository\":{\"full_name\":\"o/r\"}}", FARM_EINVALID,
         0},
        {"issues", "{\"action\":\"opened\",\"repository\":{\"full_name\":\"o/r\"},\"issue\":null}",
         FARM_EINVALID, 0},
        {"issues",
         "{\"action\":\"opened\",\"repository\":{\"full_name\":\"o/r\"},\"issue\":{\"number\":-3}}",
         FARM_EINVALID, 0},
        {"issues",
         "{\"action\":\"opened\",\"repository\":{\"full_name\":42},\"issue\":{\"number\":3}}",
         FARM_EINVALID, 0},
        {"issues",
         "{\"action\":7,\"repository\":{\"full_name\":\"o/r\"},\"issue\":{\"number\":3,"
         "\"title\":[1],\"body\":{},\"labels\":{\"a\":1},\"assignees\":\"x\",\"user\":5}}",
         0, TEV_OTHER},
        {"issues",
         "{\"action\":\"labeled\",\"repository\":{\"full_name\":\"o/r\"},\"issue\":{\"number\":3,"
         "\"labels\":[null,1,{\"name\":null},{\"name\":\"ok\"},\"plain\"]},\"label\":null}",
         0, TEV_ISSUE_LABELED},
        {"issue_comment",
         "{\"action\":\"created\",\"repository\":{\"full_name\":\"o/r\"},\"issue\":{\"number\":3}}",
         FARM_EINVALID, 0},
        {"issue_comment",
         "{\"action\":\"created\",\"repository\":{\"full_name\":\"o/r\"},\"issue\":{\"number\":3},"
         "\"comment\":[]}",
         FARM_EINVALID, 0},
        {"pull_request_review",
         "{\"action\":\"submitted\",\"repository\":{\"full_name\":\"o/r\"},\"pull_request\":{"
         "\"number\":3},\"review\":\"x\"}",
         FARM_EINVALID, 0},
        {"pull_request_review_comment",
         "{\"action\":\"created\",\"repository\":{\"full_name\":\"o/r\"},\"pull_request\":{"
         "\"number\":3},\"comment\":{\"line\":\"x\",\"path\":1,\"in_reply_to_id\":1e300}}",
         0, TEV_REVIEW_COMMENT},
        {"pull_request", "{\"action\":\"closed\",\"repository\":{\"full_name\":\"o/r\"}}",
         FARM_EINVALID, 0},
        {"pull_request",
         "{\"action\":\"closed\",\"number\":1e400,\"repository\":{\"full_name\":\"o/r\"},"
         "\"pull_request\":{\"number\":9,\"merged\":\"yes\"}}",
         FARM_EINVALID, 0},
        {"installation", "{\"action\":\"created\",\"installation\":{\"id\":\"x\"}}", FARM_EINVALID,
         0},
        {"ping", "{}", 0, TEV_PING},
        {"anything", "{\"x\":[[[[[]]]]]}", 0, TEV_OTHER},
        {NULL, "{}", FARM_EINVALID, 0},
        {"", "{}", FARM_EINVALID, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tracker_event ev;
        int rc = hook_github_parse(&ev, cases[i].event, "d", cases[i].body, strlen(cases[i].body));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, expected %d (%s)", i, cases[i].body, rc, cases[i].rc,
                     farm_error_last());
        if (rc == 0) {
            assert_int_equal(ev.kind, cases[i].kind);
            tracker_event_free(&ev);
        } else {
            assert_null(ev.tracker);
            assert_null(ev.repo);
            assert_true(strlen(farm_error_last()) > 0);
        }
    }
}

/* 1e300 as in_reply_to_id is no integer: it reads as 0, not as UB. */
static void test_github_numbers(void **state)
{
    const char *body = "{\"action\":\"created\",\"repository\":{\"full_name\":\"o/r\"},"
                       "\"pull_request\":{\"number\":3.0},\"comment\":{\"in_reply_to_id\":1e300,"
                       "\"line\":99999999999,\"original_line\":4}}";
    tracker_event ev;
    assert_int_equal(hook_github_parse(&ev, "pull_request_review_comment", "d", body, strlen(body)),
                     0);
    assert_int_equal(ev.number, 3);
    assert_int_equal(ev.in_reply_to, 0);
    assert_int_equal(ev.line, 0);
    tracker_event_free(&ev);
}

static void test_github_deep_and_huge(void **state)
{
    /* Nesting far deeper than any payload: refused by the JSON parser or
     * read as "other", but no crash. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    assert_non_null(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    tracker_event ev;
    assert_int_equal(hook_github_parse(&ev, "issues", "d", deep, 2 * depth), FARM_EINVALID);
    free(deep);

    /* A 4 MiB title is carried whole. */
    size_t n = 4u << 20;
    const char *head = "{\"action\":\"opened\",\"repository\":{\"full_name\":\"o/r\"},"
                       "\"issue\":{\"number\":5,\"title\":\"";
    const char *tail = "\"}}";
    char *huge = malloc(strlen(head) + n + strlen(tail) + 1);
    assert_non_null(huge);
    strcpy(huge, head);
    memset(huge + strlen(head), 'x', n);
    strcpy(huge + strlen(head) + n, tail);
    assert_int_equal(hook_github_parse(&ev, "issues", "d", huge, strlen(huge)), 0);
    assert_int_equal(strlen(ev.title), n);
    tracker_event_free(&ev);
    free(huge);

    /* An embedded NUL (escaped) is refused rather than silently cut. */
    const char *nul = "{\"action\":\"opened\",\"repository\":{\"full_name\":\"o/r\\u0000x\"},"
                      "\"issue\":{\"number\":5}}";
    assert_int_equal(hook_github_parse(&ev, "issues", "d", nul, strlen(nul)), FARM_EINVALID);
}

static void test_github_form_payload(void **state)
{
    char *json = NULL;
    size_t n = 0;
    const char *form = "x=1&payload=%7B%22zen%22%3A%22a+b%25%22%7D&y=2";
    assert_int_equal(hook_github_form_payload(&json, &n, form, strlen(form)), 0);
    assert_string_equal(json, "{\"zen\":\"a b%\"}");
    assert_int_equal(n, strlen(json));
    tracker_event ev;
    assert_int_equal(hook_github_parse(&ev, "ping", "d", json, n), 0);
    assert_int_equal(ev.kind, TEV_PING);
    tracker_event_free(&ev);
    free(json);

    static const char *const bad[] = {"",           "payload",     "payloads=x", "x=1&y=2",
                                      "payload=%7", "payload=%zz", "payload=ab%"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(hook_github_form_payload(&json, &n, bad[i], strlen(bad[i])),
                         FARM_EINVALID);
        assert_null(json);
    }
    assert_int_equal(hook_github_form_payload(&json, &n, "payload=", 8), 0);
    assert_string_equal(json, "");
    free(json);
}

/* ---- Azure DevOps --------------------------------------------------------- */

static void azure(tracker_event *ev, hook_azure_where *w, const char *name)
{
    size_t len;
    char *body = fixture("azure", name, &len);
    int rc = hook_azure_parse_where(ev, w, body, len);
    free(body);
    if (rc)
        fail_msg("%s: %s", name, farm_error_last());
    assert_string_equal(ev->tracker, "azure");
    assert_int_equal(ev->actor_access, ACTOR_UNKNOWN);
}

static void test_azure_workitem_created(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "workitem.created");
    assert_int_equal(ev.kind, TEV_ISSUE_OPENED);
    assert_string_equal(ev.delivery_id, "d2d46fb1-dba5-403c-9373-427583f19e8c");
    assert_string_equal(ev.event, "workitem.created");
    assert_int_equal(ev.number, 5);
    assert_string_equal(ev.title, "Some great new idea!");
    assert_string_equal(ev.actor, "Jamal Hartnett");
    assert_string_equal(ev.repo, "GoodCompanyCloud");
    assert_string_equal(w.project, "GoodCompanyCloud");
    assert_string_equal(w.area_path, "GoodCompanyCloud");
    assert_null(w.repository);
    assert_non_null(ev.url);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

static void test_azure_workitem_updated(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "workitem.updated");
    /* workItemId is 0 in this sample: the revision names the item. */
    assert_int_equal(ev.number, 5);
    assert_int_equal(ev.kind, TEV_ISSUE_ASSIGNED);
    assert_string_equal(ev.assignee, "Jamal Hartnet");
    assert_int_equal(ev.nassignees, 1);
    assert_string_equal(ev.title, "Some great new idea!");
    assert_string_equal(ev.actor, "Jamal Hartnett");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

static void test_azure_workitem_commented(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "workitem.commented");
    assert_int_equal(ev.kind, TEV_COMMENT_CREATED);
    assert_int_equal(ev.number, 5);
    assert_false(ev.is_pr);
    assert_string_equal(ev.comment_body, "This is a great new idea");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

/* workitem.updated variants built from the shape of the sample. */
static void test_azure_workitem_update_kinds(void **state)
{
    static const struct {
        const char *changes;
        tracker_event_kind kind;
        const char *label;
    } cases[] = {
        {"\"System.Tags\":{\"oldValue\":\"bug\",\"newValue\":\"bug; Agent\"}", TEV_ISSUE_LABELED,
         "Agent"},
        {"\"System.Tags\":{\"oldValue\":\"bug; agent\",\"newValue\":\"bug\"}", TEV_ISSUE_UNLABELED,
         "agent"},
        {"\"System.State\":{\"oldValue\":\"Active\",\"newValue\":\"Closed\"}", TEV_ISSUE_CLOSED,
         NULL},
        {"\"System.State\":{\"oldValue\":\"Done\",\"newValue\":\"Active\"}", TEV_ISSUE_REOPENED,
         NULL},
        {"\"System.Title\":{\"oldValue\":\"a\",\"newValue\":\"b\"}", TEV_ISSUE_EDITED, NULL},
        {"\"System.AssignedTo\":{\"newValue\":{\"displayName\":\"Farm Bot\",\"uniqueName\":"
         "\"farm@fabrikam.com\"}}",
         TEV_ISSUE_ASSIGNED, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[2048];
        snprintf(body, sizeof(body),
                 "{\"id\":\"e%zu\",\"eventType\":\"workitem.updated\",\"resource\":{\"id\":3,"
                 "\"workItemId\":77,\"revisedBy\":{\"displayName\":\"Normal Paulk\",\"uniqueName\":"
                 "\"np@fabrikam.com\"},\"fields\":{%s},\"revision\":{\"id\":77,\"fields\":{"
                 "\"System.TeamProject\":\"Fabrikam\",\"System.AreaPath\":\"Fabrikam\\\\Web\","
                 "\"System.Title\":\"b\",\"System.Tags\":\"bug\"},\"_links\":{\"html\":{\"href\":"
                 "\"https://dev.azure.com/fabrikam/Fabrikam/_workitems/edit/77\"}}}}}",
                 i, cases[i].changes);
        tracker_event ev;
        int rc = hook_azure_parse(&ev, body, strlen(body));
        if (rc)
            fail_msg("case %zu: %s", i, farm_error_last());
        assert_int_equal(ev.kind, cases[i].kind);
        assert_int_equal(ev.number, 77);
        assert_string_equal(ev.actor, "np@fabrikam.com");
        assert_string_equal(ev.actor_display, "Normal Paulk");
        assert_string_equal(ev.url, "https://dev.azure.com/fabrikam/Fabrikam/_workitems/edit/77");
        if (cases[i].label)
            assert_string_equal(ev.label, cases[i].label);
        if (cases[i].kind == TEV_ISSUE_ASSIGNED)
            assert_string_equal(ev.assignee, "farm@fabrikam.com");
        tracker_event_free(&ev);
    }
}

static void test_azure_pull_requests(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "git.pullrequest.created");
    assert_int_equal(ev.kind, TEV_PR_OPENED);
    assert_true(ev.is_pr);
    assert_int_equal(ev.number, 1);
    assert_int_equal(ev.pr_number, 1);
    assert_string_equal(ev.title, "my first pull request");
    assert_string_equal(ev.head_branch, "mytopic");
    assert_string_equal(ev.actor, "fabrikamfiber4@hotmail.com");
    assert_string_equal(ev.actor_display, "Jamal Hartnett");
    assert_string_equal(ev.url, "https://dev.azure.com/fabrikam/DefaultCollection/_git/Fabrikam/"
                                "pullrequest/1");
    assert_string_equal(ev.repo, "Fabrikam-Fiber-Git/Fabrikam");
    assert_string_equal(w.project, "Fabrikam-Fiber-Git");
    assert_string_equal(w.repository, "Fabrikam");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    azure(&ev, &w, "git.pullrequest.updated");
    assert_int_equal(ev.kind, TEV_PR_UPDATED);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    azure(&ev, &w, "git.pullrequest.updated.completed");
    assert_int_equal(ev.kind, TEV_PR_CLOSED);
    assert_true(ev.merged);
    assert_string_equal(ev.actor, "fabrikamfiber16@hotmail.com");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    azure(&ev, &w, "git.pullrequest.updated.abandoned");
    assert_int_equal(ev.kind, TEV_PR_CLOSED);
    assert_false(ev.merged);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    azure(&ev, &w, "git.pullrequest.merged");
    assert_int_equal(ev.kind, TEV_PR_CLOSED);
    assert_true(ev.merged);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

static void test_azure_pr_comment(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "ms.vss-code.git-pullrequest-comment-event");
    assert_int_equal(ev.kind, TEV_COMMENT_CREATED);
    assert_true(ev.is_pr);
    assert_int_equal(ev.number, 1);
    assert_int_equal(ev.comment_id, 2);
    assert_int_equal(ev.in_reply_to, 1);
    assert_string_equal(ev.comment_body, "This is my comment.");
    assert_string_equal(ev.actor, "fabrikamfiber16@hotmail.com");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

static void test_azure_other(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "build.complete");
    assert_int_equal(ev.kind, TEV_OTHER);
    assert_string_equal(ev.delivery_id, "4a7a9b21-0000-4c2d-9d1e-1a2b3c4d5e71");
    assert_null(w.project);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

/* git.push: the repository, the branch that moved and its new head, and
 * who pushed; tags and deletions are no branch push; a push that moved
 * several branches names the configured base when it is among them. */
static void test_azure_push(void **state)
{
    tracker_event ev;
    hook_azure_where w;
    azure(&ev, &w, "git.push");
    assert_int_equal(ev.kind, TEV_BRANCH_PUSHED);
    assert_string_equal(ev.pushed_branch, "master");
    assert_string_equal(ev.pushed_oid, "33b55f7cb7e7e245323987634f960cf4a6e6bc74");
    assert_string_equal(ev.repo, "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git");
    assert_string_equal(ev.delivery_id, "03c164c2-8912-4d5e-8009-3707d5f83734");
    assert_string_equal(ev.actor, "Windows Live ID\\fabrikamfiber4@hotmail.com");
    assert_string_equal(w.project, "Fabrikam-Fiber-Git");
    assert_string_equal(w.repository, "Fabrikam-Fiber-Git");
    assert_false(ev.is_pr);
    assert_int_equal(ev.number, 0);

    config_repo repos[1];
    memset(repos, 0, sizeof(repos));
    repos[0].name = "fabrikam/fabrikam-fiber-git/FABRIKAM-FIBER-GIT";
    repos[0].tracker = "azure";
    repos[0].base_branch = "master";
    config c;
    memset(&c, 0, sizeof(c));
    c.repos = repos;
    c.nrepos = 1;
    assert_int_equal(hook_azure_route(&ev, &w, &c), 0);
    assert_string_equal(ev.repo, "fabrikam/fabrikam-fiber-git/FABRIKAM-FIBER-GIT");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    /* A feature branch and then the base in one push: the base is named. */
    const char *two =
        "{\"id\":\"p2\",\"eventType\":\"git.push\",\"resource\":{\"repository\":{"
        "\"name\":\"app\",\"project\":{\"name\":\"Proj\"}},\"refUpdates\":["
        "{\"name\":\"refs/tags/v1\",\"newObjectId\":\"1111111111111111111111111111111111111111\"},"
        "{\"name\":\"refs/heads/"
        "gone\",\"newObjectId\":\"0000000000000000000000000000000000000000\"},"
        "{\"name\":\"refs/heads/"
        "feature\",\"newObjectId\":\"2222222222222222222222222222222222222222\"},"
        "{\"name\":\"refs/heads/"
        "main\",\"newObjectId\":\"3333333333333333333333333333333333333333\"}]}}";
    assert_int_equal(hook_azure_parse_where(&ev, &w, two, strlen(two)), 0);
    assert_int_equal(ev.kind, TEV_BRANCH_PUSHED);
    assert_string_equal(ev.pushed_branch, "feature");
    assert_int_equal(w.npushed, 2);
    repos[0].name = "org/Proj/app";
    repos[0].base_branch = "main";
    assert_int_equal(hook_azure_route(&ev, &w, &c), 0);
    assert_string_equal(ev.repo, "org/Proj/app");
    assert_string_equal(ev.pushed_branch, "main");
    assert_string_equal(ev.pushed_oid, "3333333333333333333333333333333333333333");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    /* Only a tag, a deletion and a bad oid: nothing moved that is a branch. */
    const char *none =
        "{\"id\":\"p3\",\"eventType\":\"git.push\",\"resource\":{\"repository\":{"
        "\"name\":\"app\",\"project\":{\"name\":\"Proj\"}},\"refUpdates\":["
        "{\"name\":\"refs/tags/v1\",\"newObjectId\":\"1111111111111111111111111111111111111111\"},"
        "{\"name\":\"refs/heads/"
        "main\",\"newObjectId\":\"0000000000000000000000000000000000000000\"},"
        "{\"name\":\"refs/heads/main\",\"newObjectId\":\"XYZ\"},{\"name\":7},3]}}";
    assert_int_equal(hook_azure_parse_where(&ev, &w, none, strlen(none)), 0);
    assert_int_equal(ev.kind, TEV_OTHER);
    assert_null(ev.pushed_branch);
    assert_string_equal(ev.repo, "Proj/app");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

static void test_azure_wrong_shapes(void **state)
{
    static const struct {
        const char *body;
        int rc;
    } cases[] = {
        {"", FARM_EINVALID},
        {"[]", FARM_EINVALID},
        {"{}", FARM_EINVALID},
        {"{\"id\":1,\"eventType\":\"workitem.created\"}", FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"workitem.created\"}", FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"workitem.created\",\"resource\":[]}", FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"workitem.created\",\"resource\":{\"id\":5}}",
         FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"workitem.created\",\"resource\":{\"id\":5,\"fields\":{}}}",
         FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"workitem.updated\",\"resource\":{\"id\":5,\"fields\":{"
         "\"System.TeamProject\":\"P\"}}}",
         FARM_EINVALID}, /* updated: the id is the update's, and no revision */
        {"{\"id\":\"a\",\"eventType\":\"workitem.created\",\"resource\":{\"id\":5,\"fields\":{"
         "\"System.TeamProject\":\"P\",\"System.Title\":null,\"System.Tags\":7,"
         "\"System.CreatedBy\":{\"displayName\":[]}}}}",
         0},
        {"{\"id\":\"a\",\"eventType\":\"workitem.created\",\"resource\":{\"id\":5,\"fields\":{"
         "\"System.TeamProject\":\"P\",\"System.CreatedBy\":\"<>\",\"System.Tags\":\";;; ;\"}}}",
         0},
        {"{\"id\":\"a\",\"eventType\":\"git.pullrequest.created\",\"resource\":{"
         "\"pullRequestId\":3}}",
         FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"git.pullrequest.updated\",\"resource\":{"
         "\"pullRequestId\":3,\"repository\":{\"name\":\"r\",\"project\":{\"name\":\"p\"}},"
         "\"status\":null,\"labels\":[1,{\"name\":2}]}}",
         0},
        {"{\"id\":\"a\",\"eventType\":\"ms.vss-code.git-pullrequest-comment-event\","
         "\"resource\":{\"pullRequest\":{\"pullRequestId\":3,\"repository\":{\"name\":\"r\","
         "\"project\":{\"name\":\"p\"}}}}}",
         FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"git.push\",\"resource\":{\"refUpdates\":[]}}",
         FARM_EINVALID},
        {"{\"id\":\"a\",\"eventType\":\"git.push\",\"resource\":{\"repository\":{"
         "\"name\":\"r\",\"project\":{\"name\":\"p\"}},\"refUpdates\":{},"
         "\"pushedBy\":[]}}",
         0},
        {"{\"id\":\"a\",\"eventType\":\"something.else\"}", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tracker_event ev;
        hook_azure_where w;
        int rc = hook_azure_parse_where(&ev, &w, cases[i].body, strlen(cases[i].body));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, expected %d (%s)", i, cases[i].body, rc, cases[i].rc,
                     farm_error_last());
        if (!rc) {
            tracker_event_free(&ev);
            hook_azure_where_free(&w);
        } else {
            assert_null(ev.tracker);
            assert_null(w.project);
        }
    }
}

static void test_azure_route(void **state)
{
    config_repo repos[4];
    memset(repos, 0, sizeof(repos));
    repos[0].name = "octo/app";
    repos[0].tracker = "github";
    repos[1].name = "fabrikam/Fabrikam-Fiber-Git/Fabrikam";
    repos[1].tracker = "azure";
    repos[2].name = "fabrikam/GoodCompanyCloud/web";
    repos[2].tracker = "azure";
    repos[2].azure_project = "goodcompanycloud";
    repos[2].azure_area_path = "GoodCompanyCloud\\Web";
    repos[3].name = "fabrikam/GoodCompanyCloud/all";
    repos[3].tracker = "azure";
    repos[3].azure_project = "GoodCompanyCloud";
    repos[3].azure_tag = "agent";
    config c;
    memset(&c, 0, sizeof(c));
    c.repos = repos;
    c.nrepos = 4;

    tracker_event ev;
    hook_azure_where w;
    /* Area path "GoodCompanyCloud" is not under "GoodCompanyCloud\Web", and
     * the item has no "agent" tag: no repository. */
    azure(&ev, &w, "workitem.created");
    assert_int_equal(hook_azure_route(&ev, &w, &c), FARM_ENOTFOUND);
    assert_string_equal(ev.repo, "GoodCompanyCloud");
    /* With the tag, the project-wide entry takes it. */
    ev.labels = calloc(2, sizeof(char *));
    assert_non_null(ev.labels);
    ev.labels[0] = strdup("Agent");
    ev.nlabels = 1;
    assert_int_equal(hook_azure_route(&ev, &w, &c), 0);
    assert_string_equal(ev.repo, "fabrikam/GoodCompanyCloud/all");
    /* Under the area path, the first entry takes it. */
    free(w.area_path);
    w.area_path = strdup("GoodCompanyCloud\\Web\\Checkout");
    assert_int_equal(hook_azure_route(&ev, &w, &c), 0);
    assert_string_equal(ev.repo, "fabrikam/GoodCompanyCloud/web");
    /* A sibling whose name merely starts the same is not under it. */
    free(w.area_path);
    w.area_path = strdup("GoodCompanyCloud\\WebShop");
    assert_int_equal(hook_azure_route(&ev, &w, &c), 0);
    assert_string_equal(ev.repo, "fabrikam/GoodCompanyCloud/all");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);

    /* Pull requests map by project and repository, any case. */
    azure(&ev, &w, "git.pullrequest.created");
    free(w.repository);
    w.repository = strdup("FABRIKAM");
    assert_int_equal(hook_azure_route(&ev, &w, &c), 0);
    assert_string_equal(ev.repo, "fabrikam/Fabrikam-Fiber-Git/Fabrikam");
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
    azure(&ev, &w, "git.pullrequest.created");
    free(w.repository);
    w.repository = strdup("Other");
    assert_int_equal(hook_azure_route(&ev, &w, &c), FARM_ENOTFOUND);
    tracker_event_free(&ev);
    hook_azure_where_free(&w);
}

/* ---- authentication -------------------------------------------------------- */

static void test_auth_github(void **state)
{
    config c;
    memset(&c, 0, sizeof(c));
    const char *body = "{\"zen\":\"x\"}";
    /* No secret: the hook is off, for everyone. */
    assert_false(auth_github_on(&c));
    assert_int_equal(auth_github_check(&c, body, strlen(body), NULL), FARM_EAUTH);
    assert_non_null(strstr(farm_error_last(), "github.webhook_secret"));

    c.github.webhook_secret = "It's a Secret to Everybody";
    unsigned char mac[32];
    char sig[80] = "sha256=";
    assert_int_equal(crypto_hmac_sha256(mac, c.github.webhook_secret,
                                        strlen(c.github.webhook_secret), body, strlen(body)),
                     0);
    crypto_hex(sig + 7, mac, 32);
    assert_int_equal(auth_github_check(&c, body, strlen(body), sig), 0);
    assert_int_equal(auth_github_check(&c, body, strlen(body), NULL), FARM_EAUTH);
    assert_int_equal(auth_github_check(&c, body, strlen(body) - 1, sig), FARM_EAUTH);
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    assert_int_equal(auth_github_check(&c, body, strlen(body), sig), FARM_EAUTH);
    assert_null(strstr(farm_error_last(), c.github.webhook_secret));
}

static void test_auth_azure(void **state)
{
    config c;
    memset(&c, 0, sizeof(c));
    /* No credentials: the hook is off, for everyone. */
    assert_false(auth_azure_on(&c));
    assert_int_equal(auth_azure_check(&c, NULL, NULL), FARM_EAUTH);

    c.azure.webhook_user = "farm";
    c.azure.webhook_password = "s3cret-pass";
    char *good = crypto_base64_encode("farm:s3cret-pass", 16, 0);
    char *bad = crypto_base64_encode("farm:s3cret-pasS", 16, 0);
    char *user = crypto_base64_encode("farn:s3cret-pass", 16, 0);
    char h[128];
    snprintf(h, sizeof(h), "Basic %s", good);
    assert_int_equal(auth_azure_check(&c, h, NULL), 0);
    snprintf(h, sizeof(h), "basic   %s", good);
    assert_int_equal(auth_azure_check(&c, h, NULL), 0);
    snprintf(h, sizeof(h), "Basic %s", bad);
    assert_int_equal(auth_azure_check(&c, h, NULL), FARM_EAUTH);
    snprintf(h, sizeof(h), "Basic %s", user);
    assert_int_equal(auth_azure_check(&c, h, NULL), FARM_EAUTH);
    assert_int_equal(auth_azure_check(&c, "Basic !!!", NULL), FARM_EAUTH);
    assert_int_equal(auth_azure_check(&c, "Bearer x", NULL), FARM_EAUTH);
    assert_int_equal(auth_azure_check(&c, NULL, NULL), FARM_EAUTH);
    free(good);
    free(bad);
    free(user);

    c.azure.webhook_header = "X-Farm-Secret";
    c.azure.webhook_header_secret = "header-secret-1";
    assert_int_equal(auth_azure_check(&c, NULL, "header-secret-1"), 0);
    assert_int_equal(auth_azure_check(&c, NULL, "header-secret-2"), FARM_EAUTH);
    assert_int_equal(auth_azure_check(&c, NULL, "header-secret-"), FARM_EAUTH);
}

static void test_auth_api(void **state)
{
    config c;
    memset(&c, 0, sizeof(c));
    auth_identity who;
    assert_int_equal(auth_api_identify(&who, &c, NULL, 1), 0);
    assert_int_equal(who.role, AUTH_ADMIN);
    assert_int_equal(auth_api_identify(&who, &c, NULL, 0), FARM_EAUTH);

    config_token tokens[2] = {{"ci", "viewer-token-123", "viewer"},
                              {"ops", "admin-token-456", "admin"}};
    c.tokens = tokens;
    c.ntokens = 2;
    assert_int_equal(auth_api_identify(&who, &c, NULL, 1), FARM_EAUTH); /* tokens: loopback too */
    assert_int_equal(auth_api_identify(&who, &c, "Bearer viewer-token-123", 0), 0);
    assert_int_equal(who.role, AUTH_VIEWER);
    assert_string_equal(who.name, "ci");
    assert_true(auth_role_allows(who.role, AUTH_VIEWER));
    assert_false(auth_role_allows(who.role, AUTH_MEMBER));
    assert_int_equal(auth_api_identify(&who, &c, "Bearer admin-token-456", 0), 0);
    assert_int_equal(who.role, AUTH_ADMIN);
    assert_true(auth_role_allows(who.role, AUTH_MEMBER));
    assert_int_equal(auth_api_identify(&who, &c, "Bearer admin-token-45", 0), FARM_EAUTH);
    assert_int_equal(auth_api_identify(&who, &c, "Bearer admin-token-4567", 0), FARM_EAUTH);
    assert_int_equal(auth_api_identify(&who, &c, "Basic admin-token-456", 0), FARM_EAUTH);
    assert_int_equal(auth_api_identify(&who, &c, "Bearer ", 0), FARM_EAUTH);
    assert_int_equal(who.role, AUTH_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_github_ping),
        cmocka_unit_test(test_github_push_and_mergeable),
        cmocka_unit_test(test_github_issue_opened),
        cmocka_unit_test(test_github_issue_actions),
        cmocka_unit_test(test_github_issue_labeled),
        cmocka_unit_test(test_github_issue_assigned),
        cmocka_unit_test(test_github_comments),
        cmocka_unit_test(test_github_review),
        cmocka_unit_test(test_github_review_comment),
        cmocka_unit_test(test_github_pull_request),
        cmocka_unit_test(test_github_installation),
        cmocka_unit_test(test_github_other_event),
        cmocka_unit_test(test_github_wrong_shapes),
        cmocka_unit_test(test_github_numbers),
        cmocka_unit_test(test_github_deep_and_huge),
        cmocka_unit_test(test_github_form_payload),
        cmocka_unit_test(test_azure_workitem_created),
        cmocka_unit_test(test_azure_workitem_updated),
        cmocka_unit_test(test_azure_workitem_commented),
        cmocka_unit_test(test_azure_workitem_update_kinds),
        cmocka_unit_test(test_azure_pull_requests),
        cmocka_unit_test(test_azure_pr_comment),
        cmocka_unit_test(test_azure_other),
        cmocka_unit_test(test_azure_push),
        cmocka_unit_test(test_azure_wrong_shapes),
        cmocka_unit_test(test_azure_route),
        cmocka_unit_test(test_auth_github),
        cmocka_unit_test(test_auth_azure),
        cmocka_unit_test(test_auth_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
