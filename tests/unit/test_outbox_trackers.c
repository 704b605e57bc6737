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

#include "farm/store/store_local.h"
#include "vcs/tracker/azure.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include "vcs/tracker/local.h"

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
            /* newest: the one the PR entry added when the session went to review */
            assert_non_null(strstr(c[i].body, "Waiting for review"));
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
    /* work items take no reactions: skipped, not an error */
    enqueue(fx, sid, OUTBOX_REACT, "s1:eyes", "{\"comment_id\": 0, \"reaction\": \"eyes\"}");
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
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:eyes"), 0);
    assert_string_equal(e->state, "skipped");
    assert_int_equal(e->attempts, 1);
    outbox_entry_free(e);
    store_event *ev = NULL;
    size_t nev = 0;
    assert_int_equal(store_event_list(&ev, &nev, fx->s, sid, 0, 0), 0);
    for (size_t i = 0; i < nev; i++)
        assert_string_not_equal(ev[i].kind, "tracker_error");
    store_event_list_free(ev, nev);

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

/* ---- GitHub as an App ------------------------------------------------------ */

#define APP_CONFIG                                                                                 \
    "{ \"data_dir\": \"@DIR@/data\","                                                              \
    "  \"github\": { \"api_url\": \"%s\", \"app_id\": 4242,"                                       \
    "              \"app_private_key\": \"file:@DIR@/app.pem\" },"                                 \
    "  \"repos\": [ { \"name\": \"o/r\", \"tracker\": \"github\", \"clone_url\": \"x\","           \
    "                 \"trigger\": { \"label\": \"agent\" } } ] }"

static char *bio_text(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1); /* not NUL-terminated: no strndup */
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    BIO_free(b);
    return s;
}

static int setup_app(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    if (!fx || fake_start(&fx->gh, "fake_github.py") != 0)
        return -1;
    if (asprintf(&fx->dir, "%s/farm-test-outbox-XXXXXX", base) < 0 || !mkdtemp(fx->dir))
        return -1;
    EVP_PKEY *k = EVP_RSA_gen(2048);
    if (!k)
        return -1;
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *pem = bio_text(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *pub = bio_text(b);
    EVP_PKEY_free(k);
    snprintf(path, sizeof path, "%s/app.pem", fx->dir);
    FILE *fp = fopen(path, "w");
    if (!fp || !pem || !pub)
        return -1;
    fputs(pem, fp);
    fclose(fp);
    json_t *pj = json_string(pub);
    char *pubj = json_dumps(pj, JSON_ENCODE_ANY);
    json_decref(ctl(&fx->gh, "POST", "/_fake/state",
                    "{\"apps\": {\"4242\": {\"public_key\": %s, \"slug\": \"farmapp\"}},"
                    " \"installations\": {\"77\": {\"app_id\": 4242, \"repos\": [\"o/r\"]}},"
                    " \"repos\": {\"o/r\": {\"issues\": [{\"title\": \"one\"}]}}}",
                    pubj));
    free(pubj);
    json_decref(pj);
    free(pem);
    free(pub);
    if (!farm_on(fx, APP_CONFIG, fx->gh.url)) {
        fixture_free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

/* As an App, every call needs the installation: it travels in the payload
 * (sessions do not keep it), and a PR's then_comment inherits it. */
static void github_app_installation_from_payload(void **state)
{
    fixture *fx = *state;
    outbox_opts o = test_opts();
    int64_t sid = new_session(fx, "github", "o/r", 1);

    o.permanent_attempts = 1;
    enqueue(fx, sid, OUTBOX_COMMENT, "s1:started",
            "{\"body\": \"On it.\", \"installation_id\": 77}");
    enqueue(fx, sid, OUTBOX_PR, "s1:pr",
            "{\"title\": \"Fix\", \"body\": \"Fixed.\", \"head\": \"farm/1-app\","
            " \"then_comment\": \"PR: {{pr_url}}\", \"installation_id\": 77}");
    /* without one the client asks GitHub for the repository's installation */
    enqueue(fx, sid, OUTBOX_COMMENT, "s1:lookup", "{\"body\": \"looked up\"}");
    /* a wrong one is refused for good */
    enqueue(fx, sid, OUTBOX_COMMENT, "s1:wrong",
            "{\"body\": \"wrong installation\", \"installation_id\": 999}");
    assert_int_equal(outbox_start_opts(fx->f, &o), 0);
    assert_int_equal(wait_all_settled(fx, 30000), 0);

    outbox_entry *e = NULL;
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:pr:comment"), 0);
    assert_string_equal(e->state, "sent");
    assert_non_null(strstr(e->payload, "\"installation_id\":77"));
    outbox_entry_free(e);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:started"), 0);
    assert_string_equal(e->state, "sent");
    outbox_entry_free(e);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:lookup"), 0);
    assert_string_equal(e->state, "sent");
    outbox_entry_free(e);
    assert_int_equal(store_outbox_get_by_key(&e, fx->s, "s1:wrong"), 0);
    assert_string_equal(e->state, "failed");
    outbox_entry_free(e);

    json_t *st = ctl(&fx->gh, "GET", "/_fake/state", NULL), *c;
    json_t *list =
        json_object_get(json_object_get(json_object_get(st, "repos"), "o/r"), "comments");
    size_t i;
    int n = 0;
    json_array_foreach(list, i, c)
    {
        const char *who = json_string_value(json_object_get(json_object_get(c, "user"), "login"));
        if (!who)
            who = json_string_value(json_object_get(c, "user"));
        assert_non_null(who);
        assert_string_equal(who, "farmapp[bot]");
        n++;
    }
    assert_int_equal(n, 3);
    json_decref(st);
}

int main(void)
{
    http_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(local_comment_status_and_pr, setup_local, teardown),
        cmocka_unit_test_setup_teardown(azure_comment_and_pr, setup_azure, teardown),
        cmocka_unit_test_setup_teardown(azure_pr_retry_after_500, setup_azure, teardown),
        cmocka_unit_test_setup_teardown(github_app_installation_from_payload, setup_app, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
