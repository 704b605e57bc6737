/*
 * test_outbox_trackers.c - the outbox over the other trackers, with the
 * clients the farm builds from its config (farm_tracker_get): the local
 * tracker in the farm's own store, and Azure DevOps against
 * tests/fakes/fake_azure.py (a work item's comments and status, and an
 * Azure Repos pull request linked to the work item, each exactly once even
 * when the sender crashed after Azure accepted it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_outbox_helpers.h"

#include "farm/store_local.h"
#include "vcs/azure.h"
#include "vcs/local.h"

#define AZ_PAT "azure-outbox-test-pat"
#define AZ_BOT "farm@example.com"

static int teardown(void **state)
{
    fixture_free(*state);
    return 0;
}

/* ---- the local tracker ------------------------------------------------------ */

#define LOCAL_CONFIG                                                                               \
    "{ \"data_dir\": \"@DIR@/data\","                                                              \
    "  \"repos\": [ { \"name\": \"demo\", \"tracker\": \"local\","                                 \
    "                 \"clone_url\": \"file://@DIR@/demo.git\","                                   \
    "                 \"trigger\": { \"label\": \"agent\" } } ] }"

static int setup_local(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || !farm_on(fx, LOCAL_CONFIG)) {
        fixture_free(fx);
        return -1;
    }
    /* the bare repository PR branches live in: main and the farm's branch */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; git init -q --bare demo.git; git init -q -b main work; cd work;"
             " echo a > a.txt; git add a.txt;"
             " git -c user.name=t -c user.email=t@example.com commit -q -m one;"
             " git push -q ../demo.git main; git checkout -q -b farm/1-faster;"
             " echo b > b.txt; git add b.txt;"
             " git -c user.name=t -c user.email=t@example.com commit -q -m two;"
             " git push -q ../demo.git farm/1-faster",
             fx->dir);
    if (system(cmd) != 0) {
        fixture_free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int marked_local(local_backend *b, int64_t number, const char *key)
{
    local_comment *c = NULL;
    size_t n = 0;
    int count = 0;
    assert_int_equal(b->comment_list(&c, &n, b->ctx, number, -1), 0);
    for (size_t i = 0; i < n; i++)
        count += tracker_body_has_marker(c[i].body, key, 1);
    local_comment_list_free(c, n);
    return count;
}

static void local_comment_status_and_pr(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    local_backend b;
    local_item it = {0};
    int64_t number = 0;
    char key[256], pkey[256], ckey[300], skey[200];

    store_local_backend(&b, fx->s);
    it.repo = "demo";
    it.title = "Make it faster";
    it.body = "It is slow.";
    it.author = "alice";
    it.state = "open";
    assert_int_equal(b.item_insert(&number, b.ctx, &it), 0);
    int64_t sid = new_session(fx, "local", "demo", number);

    outbox_key(key, sizeof key, sid, "started");
    outbox_key(pkey, sizeof pkey, sid, "pr");
    outbox_key(skey, sizeof skey, sid, "status");
    snprintf(ckey, sizeof ckey, "%s:comment", pkey);
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"queued\"}"), 0);
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"On it.\"}");
    enqueue(fx, sid, OUTBOX_PR, pkey,
            "{\"title\": \"Faster\", \"body\": \"Made it faster.\", \"head\": \"farm/1-faster\","
            " \"state_after\": \"review\", \"then_comment\": \"PR is open.\"}");
    assert_int_equal(outbox_status(fx->s, sid, "{\"body\": \"in review\"}"), 0);
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    assert_int_equal(wait_all_settled(fx, 20000), 0);

    outbox_entry *e = NULL;
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, ckey), 0);
    assert_string_equal(e->state, "sent");
    outbox_entry_free(e);
    assert_int_equal(marked_local(&b, number, key), 1);
    assert_int_equal(marked_local(&b, number, ckey), 1);
    assert_int_equal(marked_local(&b, number, skey), 1);

    local_item *pr = NULL;
    assert_int_equal(b.pr_find(&pr, b.ctx, "demo", "farm/1-faster"), 0);
    assert_int_equal(pr->issue, number);
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, sid), 0);
    assert_int_equal(s->pr_number, pr->number);
    assert_string_equal(s->state, "review");
    assert_non_null(s->pr_url);
    store_session_free(s);
    local_item_free(pr);

    /* the status comment holds the newest text */
    local_comment *c = NULL;
    size_t n = 0, found = 0;
    assert_int_equal(b.comment_list(&c, &n, b.ctx, number, -1), 0);
    for (size_t i = 0; i < n; i++)
        if (tracker_body_has_marker(c[i].body, skey, 1)) {
            found++;
            assert_non_null(strstr(c[i].body, "in review"));
        }
    local_comment_list_free(c, n);
    assert_int_equal(found, 1);
}

/* ---- Azure DevOps ----------------------------------------------------------- */

#define AZ_CONFIG                                                                                  \
    "{ \"data_dir\": \"@DIR@/data\","                                                              \
    "  \"azure\": { \"org_url\": \"%s/org\", \"token\": \"env:FARM_TEST_OUTBOX_AZ_PAT\" },"        \
    "  \"repos\": [ { \"name\": \"org/Proj/app\", \"tracker\": \"azure\", \"clone_url\": \"x\","   \
    "                 \"azure_project\": \"Proj\", \"trigger\": { \"label\": \"agent\" } } ] }"

static int64_t az_workitem;

static int setup_azure(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || fake_start(&fx->az, "fake_azure.py") != 0)
        return -1;
    setenv("FARM_TEST_OUTBOX_AZ_PAT", AZ_PAT, 1);
    json_t *j = ctl(&fx->az, "POST", "/_fake/state",
                    "{\"reset\": true, \"tokens\": {\"" AZ_PAT "\": \"" AZ_BOT "\"},"
                    " \"projects\": {\"Proj\": {\"repos\": [\"app\"], \"workitems\": ["
                    "  {\"title\": \"Fix the login\", \"created_by\": \"alice@example.com\"}]}}}");
    az_workitem = json_integer_value(json_array_get(json_object_get(j, "workitems"), 0));
    json_decref(j);
    if (az_workitem <= 0 || !farm_on(fx, AZ_CONFIG, fx->az.url)) {
        fixture_free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static json_t *az_state(fixture *fx)
{
    return ctl(&fx->az, "GET", "/_fake/state", NULL);
}

/* The live comments of the work item carrying the marker for key. */
static int marked_azure(fixture *fx, const char *key)
{
    json_t *st = az_state(fx), *w, *c;
    size_t i, k;
    int n = 0;
    json_array_foreach(json_object_get(st, "workitems"), i, w)
    {
        if (json_integer_value(json_object_get(w, "id")) != az_workitem)
            continue;
        json_array_foreach(json_object_get(w, "comments"), k, c)
        {
            if (json_is_true(json_object_get(c, "isDeleted")))
                continue;
            n += tracker_body_has_marker(json_string_value(json_object_get(c, "text")), key, 1);
        }
    }
    json_decref(st);
    return n;
}

static void azure_comment_and_pr(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char key[256], pkey[256], ckey[300];
    int64_t sid = new_session(fx, "azure", "org/Proj/app", az_workitem);
    outbox_entry *e = NULL;

    outbox_key(key, sizeof key, sid, "started");
    outbox_key(pkey, sizeof pkey, sid, "pr");
    snprintf(ckey, sizeof ckey, "%s:comment", pkey);
    enqueue(fx, sid, OUTBOX_COMMENT, key, "{\"body\": \"On it.\"}");
    enqueue(fx, sid, OUTBOX_PR, pkey,
            "{\"title\": \"Fix the login\", \"body\": \"Fixed.\", \"head\": \"farm/1-login\","
            " \"base\": \"main\", \"state_after\": \"review\", \"then_comment\": \"PR open.\"}");

    /* the comment: the crashed sender had posted it already */
    assert_int_equal(store_outbox_lease(&e, fx->s, "deadhost:1:1/w0", clock_wall_ms(), -1), 0);
    assert_string_equal(e->key, key);
    outbox_entry_free(e);
    tracker *t = NULL;
    int64_t posted = 0;
    assert_int_equal(farm_tracker_get(&t, fx->f, "azure"), 0);
    assert_string_equal(tracker_name(t), "azure");
    tracker_ref ref = {"org/Proj/app", az_workitem, 0, 0};
    assert_int_equal(tracker_comment_create(&posted, t, &ref, key, "On it."), 0);

    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    assert_int_equal(wait_all_settled(fx, 30000), 0);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, key), 0);
    assert_string_equal(e->state, "sent");
    assert_int_equal(strtoll(e->remote_id, NULL, 10), posted);
    outbox_entry_free(e);
    assert_int_equal(marked_azure(fx, key), 1);
    assert_int_equal(marked_azure(fx, ckey), 1);

    /* one PR in Azure Repos, linked to the work item */
    json_t *st = az_state(fx);
    json_t *prs = json_object_get(st, "prs");
    assert_int_equal(json_array_size(prs), 1);
    char *dump = json_dumps(json_array_get(prs, 0), JSON_COMPACT);
    char wi[32];
    snprintf(wi, sizeof wi, "%lld", (long long)az_workitem);
    assert_non_null(strstr(dump, "farm/1-login"));
    assert_non_null(strstr(dump, wi));
    free(dump);
    json_decref(st);
    store_session *s = NULL;
    assert_int_equal(store_session_get(&s, fx->s, sid), 0);
    assert_true(s->pr_number > 0);
    assert_string_equal(s->state, "review");
    store_session_free(s);
}

static void azure_pr_retry_after_500(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    char pkey[256];
    int64_t sid = new_session(fx, "azure", "org/Proj/app", az_workitem);
    tracker *t = NULL;
    tracker_azure_opts ao = TRACKER_AZURE_OPTS_INIT;
    char org[128];

    /* a client without retries of its own */
    snprintf(org, sizeof org, "%s/org", fx->az.url);
    ao.org_url = org;
    ao.token = AZ_PAT;
    ao.max_retries = 0;
    ao.timeout_ms = 5000;
    assert_int_equal(tracker_azure_new(&t, &ao), 0);
    farm_tracker_set(fx->f, "azure", t);
    CTL(&fx->az, "POST", "/_fake/fail",
        "{\"method\": \"POST\", \"path\": \"(?i)pullrequests$\", \"status\": 500, \"count\": 2}");
    outbox_key(pkey, sizeof pkey, sid, "pr");
    enqueue(fx, sid, OUTBOX_PR, pkey,
            "{\"title\": \"Fix\", \"body\": \"Fixed.\", \"head\": \"farm/1-retry\"}");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    outbox_entry *e = wait_settled(fx, pkey, 30000);
    assert_non_null(e);
    assert_string_equal(e->state, "sent");
    assert_int_equal(e->attempts, 3);
    outbox_entry_free(e);
    json_t *st = az_state(fx);
    assert_int_equal(json_array_size(json_object_get(st, "prs")), 1);
    json_decref(st);
    assert_int_equal(fake_count(&fx->az, "POST", "ullRequests"), 3); /* 500, 500, created */
}

int main(void)
{
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(local_comment_status_and_pr, setup_local, teardown),
        cmocka_unit_test_setup_teardown(azure_comment_and_pr, setup_azure, teardown),
        cmocka_unit_test_setup_teardown(azure_pr_retry_after_500, setup_azure, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
