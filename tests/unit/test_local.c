/*
 * test_local.c - the local tracker over the farm's store: every tracker.h op
 * (comments with markers and splitting, labels, reactions, threads, pull
 * requests, review comments and replies, permissions), the events a
 * person's actions become and their way through farm_ingest(), and two
 * store handles on one data directory writing side by side (as `farm issue`
 * does beside `farm serve`).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/intake/ingest.h"
#include "farm/store/store_local.h"
#include "vcs/tracker/local.h"
#include "vcs/tracker/tracker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char dir[256];
    farm *f;
    local_backend b;
    tracker *t;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char path[300], *errors = NULL;
    config *cfg = NULL;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/farm-test-local-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    /* the bare repository PR branches live in: main and a farm branch one
     * commit ahead of it */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; git init -q --bare demo.git; git init -q -b main work; cd work;"
             " echo a > a.txt; git add a.txt;"
             " git -c user.name=t -c user.email=t@example.com commit -q -m one;"
             " git push -q ../demo.git main; git checkout -q -b farm/1-fix-the-login;"
             " echo b > b.txt; git add b.txt;"
             " git -c user.name=t -c user.email=t@example.com commit -q -m two;"
             " git push -q ../demo.git farm/1-fix-the-login; git checkout -q main;"
             " git checkout -q -b side; echo c > c.txt; git add c.txt;"
             " git -c user.name=t -c user.email=t@example.com commit -q -m three;"
             " git push -q ../demo.git side",
             fx->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/farm.json", fx->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "{\"data_dir\": \"%s/data\", \"repos\": [{\"name\": \"demo\", \"tracker\": \"local\","
            " \"clone_url\": \"file://%s/demo.git\", \"trigger\": {\"label\": \"agent\"}}]}",
            fx->dir, fx->dir);
    fclose(fp);
    if (config_load(&cfg, path, &errors) < 0) {
        fprintf(stderr, "%s\n", errors ? errors : farm_error_last());
        free(errors);
        fail();
    }
    assert_int_equal(farm_open(&fx->f, cfg), 0);
    assert_int_equal(store_local_tracker_new(&fx->t, &fx->b, farm_store(fx->f), farm_config(fx->f)),
                     0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char cmd[300];
    tracker_free(fx->t);
    farm_close(fx->f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fx->dir);
    free(fx);
    return 0;
}

static int64_t issue_new(fixture *fx, const char *title, const char *label)
{
    char *labels[] = {(char *)label, NULL};
    local_item it = {0};
    int64_t n = 0;
    it.repo = "demo";
    it.title = (char *)title;
    it.body = "the body";
    it.author = "alice";
    it.labels = label ? labels : NULL;
    it.nlabels = label ? 1 : 0;
    assert_int_equal(fx->b.item_insert(&n, fx->b.ctx, &it), 0);
    assert_true(n > 0);
    return n;
}

static void comments_with_markers(void **state)
{
    fixture *fx = *state;
    int64_t n = issue_new(fx, "Fix the login", NULL);
    tracker_ref ref = {"demo", n, 0, 0};
    int64_t id = 0, found = 0;

    assert_string_equal(tracker_name(fx->t), "local");
    assert_int_equal(tracker_comment_create(&id, fx->t, &ref, "s1/status", "Working"), 0);
    assert_int_equal(tracker_comment_find_by_marker(&found, fx->t, &ref, "s1/status"), 0);
    assert_int_equal(found, id);
    assert_int_equal(tracker_comment_find_by_marker(&found, fx->t, &ref, "s1/none"),
                     FARM_ENOTFOUND);
    assert_int_equal(tracker_comment_update(fx->t, &ref, id, "s1/status", "Done"), 0);

    /* a person's comment with the farm's marker is not the farm's */
    local_comment spoof = {0};
    int64_t sid;
    spoof.number = n;
    spoof.author = "mallory";
    spoof.body = "<!-- farm:s2 -->";
    assert_int_equal(fx->b.comment_insert(&sid, fx->b.ctx, &spoof), 0);
    assert_int_equal(tracker_comment_find_by_marker(&found, fx->t, &ref, "s2"), FARM_ENOTFOUND);
    /* and the farm does not edit it */
    assert_int_equal(tracker_comment_update(fx->t, &ref, sid, "s2", "mine now"), FARM_EAUTH);

    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, fx->t, &ref), 0);
    assert_string_equal(th->title, "Fix the login");
    assert_string_equal(th->author, "alice");
    assert_string_equal(th->state, "open");
    assert_string_equal(th->url, "local://demo/issues/1");
    assert_int_equal(th->ncomments, 2);
    assert_string_equal(th->comments[0].author, "farm-bot");
    assert_non_null(strstr(th->comments[0].body, "Done\n\n<!-- farm:s1/status -->"));
    assert_non_null(th->comments[0].created_at);
    tracker_thread_free(th);

    /* the wrong repository, an unknown issue */
    tracker_ref other = {"other", n, 0, 0};
    assert_int_equal(tracker_comment_create(&id, fx->t, &other, "k", "x"), FARM_ENOTFOUND);
    tracker_ref missing = {"demo", 999, 0, 0};
    assert_int_equal(tracker_comment_create(&id, fx->t, &missing, "k", "x"), FARM_ENOTFOUND);
}

static void body_of_600000_chars_is_split(void **state)
{
    fixture *fx = *state;
    int64_t n = issue_new(fx, "big", NULL);
    tracker_ref ref = {"demo", n, 0, 0};
    size_t len = 600000;
    char *body = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        body[i] = (i % 100 == 99) ? '\n' : 'x';
    body[len] = 0;
    int64_t id = 0;
    assert_int_equal(tracker_comment_create(&id, fx->t, &ref, "big", body), 0);
    local_comment *cs = NULL;
    size_t nc = 0;
    assert_int_equal(fx->b.comment_list(&cs, &nc, fx->b.ctx, n, -1), 0);
    assert_int_equal(nc, 3);
    for (size_t i = 0; i < nc; i++) {
        assert_true(strlen(cs[i].body) <= LOCAL_COMMENT_UNITS);
        char part[64];
        snprintf(part, sizeof part, "*(part %d of 3)*", (int)i + 1);
        assert_non_null(strstr(cs[i].body, part));
    }
    local_comment_list_free(cs, nc);

    assert_int_equal(tracker_comment_update(fx->t, &ref, id, "big", "short"), 0);
    assert_int_equal(fx->b.comment_list(&cs, &nc, fx->b.ctx, n, -1), 0);
    assert_int_equal(nc, 1);
    assert_int_equal(cs[0].id, id);
    local_comment_list_free(cs, nc);
    free(body);
}

static void labels_and_reactions(void **state)
{
    fixture *fx = *state;
    int64_t n = issue_new(fx, "labels", "bug");
    tracker_ref ref = {"demo", n, 0, 0};
    const char *add[] = {"farm:working", "BUG"};
    assert_int_equal(tracker_labels_add(fx->t, &ref, add, 2), 0);
    const char *rm[] = {"bug", "absent"};
    assert_int_equal(tracker_labels_remove(fx->t, &ref, rm, 2), 0);
    local_item *it = NULL;
    assert_int_equal(fx->b.item_get(&it, fx->b.ctx, n), 0);
    assert_int_equal(it->nlabels, 1);
    assert_string_equal(it->labels[0], "farm:working");
    local_item_free(it);

    int64_t cid;
    assert_int_equal(tracker_comment_create(&cid, fx->t, &ref, "k", "hi"), 0);
    assert_int_equal(tracker_react(fx->t, &ref, cid, "+1"), 0);
    assert_int_equal(tracker_react(fx->t, &ref, cid, "+1"), 0);
    assert_int_equal(tracker_react(fx->t, &ref, 0, "eyes"), 0);
    assert_int_equal(tracker_react(fx->t, &ref, 424242, "eyes"), FARM_ENOTFOUND);

    tracker_permission p;
    assert_int_equal(tracker_permission_get(&p, fx->t, &ref, "anyone"), 0);
    assert_int_equal(p, TRACKER_PERM_WRITE);
}

static void pull_requests_and_reviews(void **state)
{
    fixture *fx = *state;
    int64_t n = issue_new(fx, "Fix the login", NULL);
    tracker_ref ref = {"demo", n, 0, 0};
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    tracker_pr *pr = NULL, *again = NULL;
    spec.key = "s1/pr";
    spec.title = "Fix the login";
    spec.body = "Changed the check.";
    spec.head_branch = "farm/1-fix-the-login";
    spec.base_branch = "main";
    assert_int_equal(tracker_pr_create(&pr, fx->t, &ref, &spec), 0);
    assert_true(pr->number > n);
    assert_string_equal(pr->state, "open");
    assert_string_equal(pr->head_branch, "farm/1-fix-the-login");
    assert_string_equal(pr->author, "farm-bot");
    assert_non_null(strstr(pr->body, "Resolves #1"));
    assert_non_null(strstr(pr->body, "<!-- farm:s1/pr -->"));
    assert_non_null(strstr(pr->url, "local://demo/pulls/"));
    assert_int_equal(tracker_pr_create(&again, fx->t, &ref, &spec), FARM_EEXISTS);
    /* a branch that is not in the repository: refused, as GitHub does */
    tracker_pr_spec missing = spec;
    missing.head_branch = "farm/not-pushed";
    assert_int_equal(tracker_pr_create(&again, fx->t, &ref, &missing), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "farm/not-pushed"));

    assert_int_equal(tracker_pr_find_by_branch(&again, fx->t, &ref, "farm/1-fix-the-login"), 0);
    assert_int_equal(again->number, pr->number);
    tracker_pr_free(again);
    assert_int_equal(tracker_pr_find_by_branch(&again, fx->t, &ref, "farm/none"), FARM_ENOTFOUND);

    tracker_pr_spec upd = TRACKER_PR_SPEC_INIT;
    upd.title = "Fix the login (v2)";
    assert_int_equal(tracker_pr_update(fx->t, &ref, pr->number, &upd), 0);
    assert_int_equal(tracker_pr_find_by_branch(&again, fx->t, &ref, "farm/1-fix-the-login"), 0);
    assert_string_equal(again->title, "Fix the login (v2)");
    assert_non_null(strstr(again->body, "Changed the check."));
    tracker_pr_free(again);

    /* the issue lists its PR */
    local_item *prs = NULL;
    size_t np = 0;
    assert_int_equal(fx->b.prs_for_issue(&prs, &np, fx->b.ctx, n), 0);
    assert_int_equal(np, 1);
    assert_int_equal(prs[0].number, pr->number);
    local_item_list_free(prs, np);

    /* a review comment by a person, and the farm's reply */
    local_comment rc = {0};
    int64_t rid = 0, reply = 0;
    rc.number = pr->number;
    rc.author = "alice";
    rc.body = "use a constant";
    rc.review = 1;
    rc.path = "src/login.c";
    rc.line = 42;
    assert_int_equal(fx->b.comment_insert(&rid, fx->b.ctx, &rc), 0);
    tracker_review_comment *v = NULL;
    size_t nv = 0;
    assert_int_equal(tracker_pr_review_comments(&v, &nv, fx->t, &ref, pr->number), 0);
    assert_int_equal(nv, 1);
    assert_string_equal(v[0].path, "src/login.c");
    assert_int_equal(v[0].line, 42);
    tracker_review_comments_free(v, nv);
    assert_int_equal(
        tracker_review_comment_reply(&reply, fx->t, &ref, pr->number, rid, "s1/r", "Done"), 0);
    assert_int_equal(tracker_pr_review_comments(&v, &nv, fx->t, &ref, pr->number), 0);
    assert_int_equal(nv, 2);
    assert_int_equal(v[1].id, reply);
    assert_int_equal(v[1].in_reply_to, rid);
    assert_string_equal(v[1].path, "src/login.c");
    tracker_review_comments_free(v, nv);
    /* replying to a conversation comment is refused */
    int64_t cid;
    tracker_ref pref = {"demo", pr->number, 1, 0};
    assert_int_equal(tracker_comment_create(&cid, fx->t, &pref, "c", "conversation"), 0);
    assert_int_equal(
        tracker_review_comment_reply(&reply, fx->t, &ref, pr->number, cid, "s1/r2", "x"),
        FARM_ENOTFOUND);
    tracker_thread *th = NULL;
    assert_int_equal(tracker_thread_get(&th, fx->t, &pref), 0);
    assert_int_equal(th->ncomments, 1); /* review comments are not the conversation */
    tracker_thread_free(th);
    tracker_pr_free(pr);
}

static void merging_fast_forwards(void **state)
{
    fixture *fx = *state;
    char url[300], cmd[1200];
    snprintf(url, sizeof url, "file://%s/demo.git", fx->dir);
    /* side is not a descendant of the farm branch: refused, nothing moves */
    assert_int_equal(local_branch_fast_forward(url, "farm/1-fix-the-login", "side"),
                     FARM_ECONFLICT);
    assert_int_equal(local_branch_fast_forward(url, "main", "farm/1-fix-the-login"), 0);
    snprintf(cmd, sizeof cmd,
             "test \"$(git --git-dir='%s/demo.git' rev-parse main)\" = "
             "\"$(git --git-dir='%s/demo.git' rev-parse farm/1-fix-the-login)\"",
             fx->dir, fx->dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(local_branch_fast_forward(url, "main", "farm/1-fix-the-login"), 0);
    assert_int_equal(local_branch_fast_forward(url, "main", "nope"), FARM_ENOTFOUND);
    assert_int_equal(local_branch_fast_forward("https://example.com/x.git", "main", "side"),
                     FARM_EUNSUPPORTED);
    snprintf(url, sizeof url, "file://%s/absent.git", fx->dir);
    assert_int_equal(local_branch_fast_forward(url, "main", "side"), FARM_ENOTFOUND);
}

static void events_enter_the_farm(void **state)
{
    fixture *fx = *state;
    int64_t n = issue_new(fx, "Add a flag", "agent");
    local_item *it = NULL;
    tracker_event ev;
    ingest_result r;
    assert_int_equal(fx->b.item_get(&it, fx->b.ctx, n), 0);

    assert_int_equal(local_event_opened(&ev, it, "alice"), 0);
    assert_int_equal(ev.kind, TEV_ISSUE_OPENED);
    assert_string_equal(ev.tracker, "local");
    assert_string_equal(ev.repo, "demo");
    assert_int_equal(ev.number, n);
    assert_int_equal(ev.actor_access, ACTOR_WRITE);
    assert_int_equal(ev.nlabels, 1);
    assert_string_equal(ev.labels[0], "agent");
    assert_int_equal(strncmp(ev.delivery_id, "local-", 6), 0);
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", ev.delivery_id);
    assert_int_equal(farm_ingest(fx->f, &ev, &r), 0);
    assert_int_equal(r.outcome, INGEST_ACCEPTED);
    assert_true(r.session_id > 0 && r.job_id > 0);
    tracker_event_free(&ev);

    local_comment c = {0};
    int64_t cid;
    local_comment *saved = NULL;
    c.number = n;
    c.author = "bob";
    c.body = "also the docs";
    assert_int_equal(fx->b.comment_insert(&cid, fx->b.ctx, &c), 0);
    assert_int_equal(fx->b.comment_get(&saved, fx->b.ctx, cid), 0);
    assert_int_equal(local_event_comment(&ev, it, saved), 0);
    assert_int_equal(ev.kind, TEV_COMMENT_CREATED);
    assert_string_equal(ev.comment_body, "also the docs");
    assert_string_equal(ev.actor, "bob");
    assert_string_not_equal(ev.delivery_id, first_id);
    ingest_result r2;
    assert_int_equal(farm_ingest(fx->f, &ev, &r2), 0);
    assert_int_equal(r2.outcome, INGEST_ACCEPTED);
    assert_int_equal(r2.session_id, r.session_id);
    tracker_event_free(&ev);
    local_comment_list_free(saved, 1);

    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, farm_store(fx->f), r.session_id), 0);
    assert_string_equal(s->tracker, "local");
    assert_string_equal(s->repo, "demo");
    assert_int_equal(s->number, n);
    store_session_free(s);
    local_item_free(it);
}

/* ---- two handles on one directory ---------------------------------------- */

typedef struct writer_arg {
    local_backend *b;
    int count;
    int failures;
} writer_arg;

static void *writer(void *p)
{
    writer_arg *w = p;
    for (int i = 0; i < w->count; i++) {
        local_item it = {0};
        int64_t n;
        it.repo = "demo";
        it.title = "concurrent";
        it.author = "w";
        if (w->b->item_insert(&n, w->b->ctx, &it) < 0)
            w->failures++;
    }
    return NULL;
}

static void two_stores_write_side_by_side(void **state)
{
    fixture *fx = *state;
    char data[300];
    store *other = NULL;
    local_backend b2;
    snprintf(data, sizeof data, "%s/data", fx->dir);
    assert_int_equal(store_open(&other, data), 0);
    store_local_backend(&b2, other);

    writer_arg a = {&fx->b, 40, 0}, b = {&b2, 40, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, writer, &a);
    pthread_create(&tb, NULL, writer, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.failures, 0);
    assert_int_equal(b.failures, 0);

    local_item *v = NULL;
    size_t n = 0;
    assert_int_equal(fx->b.item_list(&v, &n, fx->b.ctx, "DEMO", "open", 1000), 0);
    assert_int_equal(n, 80);
    /* numbers are unique and newest first */
    for (size_t i = 1; i < n; i++)
        assert_true(v[i - 1].number > v[i].number);
    local_item_list_free(v, n);
    store_close(other);
}

static void bad_input_is_refused(void **state)
{
    fixture *fx = *state;
    int64_t n = issue_new(fx, "x", NULL);
    local_comment c = {0};
    int64_t id;
    c.number = 4242;
    c.author = "a";
    c.body = "on nothing";
    assert_int_equal(fx->b.comment_insert(&id, fx->b.ctx, &c), FARM_ENOTFOUND);
    char *huge = malloc(LOCAL_BODY_MAX + 2);
    memset(huge, 'a', LOCAL_BODY_MAX + 1);
    huge[LOCAL_BODY_MAX + 1] = 0;
    c.number = n;
    c.body = huge;
    assert_int_equal(fx->b.comment_insert(&id, fx->b.ctx, &c), FARM_ETOOBIG);
    free(huge);
    assert_int_equal(fx->b.item_update(fx->b.ctx, 4242, "t", NULL, NULL), FARM_ENOTFOUND);
    const char *l[] = {"x"};
    assert_int_equal(fx->b.labels_change(fx->b.ctx, 4242, l, 1, 1), FARM_ENOTFOUND);
    local_item *it = NULL;
    assert_int_equal(fx->b.item_get(&it, fx->b.ctx, 4242), FARM_ENOTFOUND);
    tracker_ref ref = {"demo", n, 0, 0};
    int64_t cid;
    assert_int_equal(tracker_comment_create(&cid, fx->t, &ref, "k", "\xff\xfe"), FARM_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(comments_with_markers, setup, teardown),
        cmocka_unit_test_setup_teardown(body_of_600000_chars_is_split, setup, teardown),
        cmocka_unit_test_setup_teardown(labels_and_reactions, setup, teardown),
        cmocka_unit_test_setup_teardown(pull_requests_and_reviews, setup, teardown),
        cmocka_unit_test_setup_teardown(merging_fast_forwards, setup, teardown),
        cmocka_unit_test_setup_teardown(events_enter_the_farm, setup, teardown),
        cmocka_unit_test_setup_teardown(two_stores_write_side_by_side, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
