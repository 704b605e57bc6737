/*
 * test_pipeline_history.c - the session-history digest every run's prompt
 * carries (farm/run/history.c): earlier runs with their outcome, tests and
 * commit, questions and answers, reviews and messages, in log order;
 * quoted text flattened and cut; the whole digest capped; output lines and
 * other noise left out; nothing at all for a first run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "base/error.h"
#include "farm/run/history.h"
#include "farm/store/store.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static store *st;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/farm-history-XXXXXX");
    if (!mkdtemp(dir) || store_open(&st, dir) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(st);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

struct new_session {
    int64_t number;
    int64_t id;
};

static int session_fn(store_tx *tx, void *arg)
{
    struct new_session *n = arg;
    store_session s = {0};
    s.tracker = "local";
    s.repo = "demo";
    s.number = n->number;
    return store_tx_session_insert(&n->id, tx, &s);
}

static int64_t new_session(int64_t number)
{
    struct new_session n = {number, 0};
    assert_int_equal(store_write(st, session_fn, &n), 0);
    return n.id;
}

static int64_t ev(int64_t sid, const char *kind, const char *actor, const char *body)
{
    int64_t seq = 0;
    assert_int_equal(store_event_append(&seq, st, sid, kind, actor, body), 0);
    return seq;
}

static void first_run_has_no_history(void **state)
{
    (void)state;
    int64_t sid = new_session(1);
    char *d = (char *)1;
    ev(sid, "triggered", "alice", "{\"rule\":\"label\"}");
    ev(sid, "output", NULL, "{\"step\":\"agent\",\"stream\":\"stdout\",\"line\":\"x\"}");
    assert_int_equal(history_digest(&d, st, sid, 0), 0);
    assert_null(d);
}

static void runs_questions_reviews_in_order(void **state)
{
    (void)state;
    int64_t sid = new_session(2);
    char *d = NULL;
    ev(sid, "run_started", NULL, "{\"run\":1,\"kind\":\"run\",\"job\":1}");
    ev(sid, "output", NULL, "{\"step\":\"agent\",\"stream\":\"stdout\",\"line\":\"NOISE\"}");
    ev(sid, "question", NULL, "{\"run\":1,\"question\":\"Which\\ncolour?\"}");
    ev(sid, "run_finished", NULL, "{\"run\":1,\"outcome\":\"question\",\"kind\":\"run\"}");
    ev(sid, "answer", NULL,
       "{\"question\":\"Which colour?\",\"text\":\"Blue.\",\"author\":\"bob\"}");
    ev(sid, "run_started", NULL, "{\"run\":2,\"kind\":\"answer\",\"job\":2}");
    ev(sid, "run_finished", NULL,
       "{\"run\":2,\"outcome\":\"pr\",\"kind\":\"answer\",\"tests\":\"passed\","
       "\"commit\":\"0123456789abcdef0123456789abcdef01234567\"}");
    ev(sid, "review_comment", "carol", "{\"body\":\"Use a constant\",\"path\":\"src/a.c\"}");
    ev(sid, "message", "dave", "{\"text\":\"also update the docs\",\"author\":\"dave\"}");
    int64_t later = ev(sid, "run_started", NULL, "{\"run\":3,\"kind\":\"revise\",\"job\":3}");
    ev(sid, "review", "erin", "{\"body\":\"AFTER-THE-CUT\"}");

    assert_int_equal(history_digest(&d, st, sid, later), 0);
    assert_non_null(d);
    const char *order[] = {"Run 1 (run) started",
                           "The agent asked: \"Which colour?\"",
                           "Run 1 ended: question",
                           "bob answered: \"Blue.\"",
                           "Run 2 (answer) started",
                           "Run 2 ended: pr; tests: passed; commit 0123456789ab",
                           "Reviewer carol on `src/a.c`: \"Use a constant\"",
                           "Message from dave: \"also update the docs\""};
    const char *prev = d;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *p = strstr(d, order[i]);
        if (!p || p < prev)
            fail_msg("\"%s\" missing or out of order in:\n%s", order[i], d);
        prev = p;
    }
    assert_null(strstr(d, "NOISE"));
    assert_null(strstr(d, "AFTER-THE-CUT"));
    assert_null(strstr(d, "Run 3"));
    free(d);
}

static void long_text_is_cut_and_the_digest_capped(void **state)
{
    (void)state;
    int64_t sid = new_session(3);
    char *d = NULL;
    /* one answer far over the item cap, with a multi-byte character at the cut */
    size_t n = HISTORY_ITEM_MAX * 3;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "{\"text\":\"");
    size_t off = strlen(text);
    for (size_t i = 0; off + 3 < n; i++) {
        memcpy(text + off, "\xc3\xa9", 2); /* é */
        off += 2;
    }
    strcpy(text + off, "\",\"author\":\"bob\"}");
    ev(sid, "answer", NULL, text);
    free(text);
    for (int i = 0; i < 40; i++)
        ev(sid, "review", "carol",
           "{\"body\":\"a long review comment that repeats itself to fill the digest with "
           "words, words, words, words, words, words, words, words, words, words, words, "
           "words, words, words, words, words, words, words, words, words, words, words, "
           "words, words, words, words, words, words, words, words, words, words, words\"}");
    assert_int_equal(history_digest(&d, st, sid, 0), 0);
    assert_non_null(d);
    assert_true(strlen(d) <= HISTORY_MAX + 64);
    assert_non_null(strstr(d, " [...]\""));
    assert_non_null(strstr(d, "history cut here"));
    /* still valid UTF-8: no half é before the cut mark */
    const char *cut = strstr(d, " [...]");
    assert_true(((unsigned char)cut[-1] & 0xC0) != 0xC0);
    assert_true(((unsigned char)cut[-2]) == 0xC3 || ((unsigned char)cut[-1]) != 0xC3);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_run_has_no_history),
        cmocka_unit_test(runs_questions_reviews_in_order),
        cmocka_unit_test(long_text_is_cut_and_the_digest_capped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
