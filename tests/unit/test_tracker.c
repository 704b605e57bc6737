/*
 * test_tracker.c - the tracker-neutral helpers: idempotency keys and hidden
 * markers, splitting long bodies over several comments (UTF-8 safe), and the
 * argument checks the public entry points do before any tracker is called.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/error.h"
#include "vcs/tracker/tracker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void keys_are_checked(void **state)
{
    assert_int_equal(tracker_key_check("session-12/status"), 0);
    assert_int_equal(tracker_key_check("a.b_c:d=e+f@g"), 0);
    assert_int_equal(tracker_key_check(""), FARM_EINVALID);
    assert_int_equal(tracker_key_check(NULL), FARM_EINVALID);
    assert_int_equal(tracker_key_check("a--b"), FARM_EINVALID);
    assert_int_equal(tracker_key_check("a#2"), FARM_EINVALID);
    assert_int_equal(tracker_key_check("a b"), FARM_EINVALID);
    assert_int_equal(tracker_key_check("a>b"), FARM_EINVALID);
    char longkey[202];
    memset(longkey, 'k', 201);
    longkey[201] = 0;
    assert_int_equal(tracker_key_check(longkey), FARM_EINVALID);
    longkey[200] = 0;
    assert_int_equal(tracker_key_check(longkey), 0);
}

static void markers_are_exact(void **state)
{
    char *m = tracker_marker("k1", 1);
    assert_string_equal(m, "<!-- farm:k1 -->");
    free(m);
    m = tracker_marker("k1", 3);
    assert_string_equal(m, "<!-- farm:k1#3 -->");
    free(m);
    assert_true(tracker_body_has_marker("hello\n\n<!-- farm:k1 -->", "k1", 1));
    /* a key that is a prefix of another, or another part, does not match */
    assert_false(tracker_body_has_marker("hello\n\n<!-- farm:k10 -->", "k1", 1));
    assert_false(tracker_body_has_marker("hello\n\n<!-- farm:k1#2 -->", "k1", 1));
    assert_true(tracker_body_has_marker("x <!-- farm:k1#2 -->", "k1", 2));
    assert_false(tracker_body_has_marker(NULL, "k1", 1));
    assert_int_equal(tracker_body_part_count("*(part 2 of 4)*\n\nabc"), 4);
    assert_int_equal(tracker_body_part_count("plain"), 1);
    assert_int_equal(tracker_body_part_count("*(part 5 of 4)*"), 1);
}

static void utf16_length(void **state)
{
    assert_int_equal(tracker_utf16_len("abc", 3), 3);
    assert_int_equal(tracker_utf16_len("\xc3\xa9", 2), 1);         /* é */
    assert_int_equal(tracker_utf16_len("\xe2\x82\xac", 3), 1);     /* € */
    assert_int_equal(tracker_utf16_len("\xf0\x9f\x98\x80", 4), 2); /* emoji: a surrogate pair */
    assert_int_equal(tracker_utf16_len("\xc3", 1), -1);            /* truncated */
    assert_int_equal(tracker_utf16_len("\xc0\xaf", 2), -1);        /* overlong */
    assert_int_equal(tracker_utf16_len("\xed\xa0\x80", 3), -1);    /* surrogate */
    assert_int_equal(tracker_utf16_len("\xff", 1), -1);
}

static void short_body_is_one_part(void **state)
{
    char **parts;
    size_t n;
    assert_int_equal(tracker_body_split(&parts, &n, "k", "hello", 65535, 16), 0);
    assert_int_equal(n, 1);
    assert_string_equal(parts[0], "hello\n\n<!-- farm:k -->");
    assert_null(parts[1]);
    tracker_parts_free(parts);
}

/* Strip the part line and the marker again; return the text in between. */
static void part_text(buf *acc, const char *part, size_t i, size_t n, const char *key)
{
    char head[64];
    snprintf(head, sizeof head, "*(part %zu of %zu)*\n\n", i, n);
    assert_memory_equal(part, head, strlen(head));
    char *m = tracker_marker(key, (int)i);
    size_t plen = strlen(part), mlen = strlen(m);
    assert_true(plen > strlen(head) + mlen + 2);
    assert_string_equal(part + plen - mlen, m);
    assert_memory_equal(part + plen - mlen - 2, "\n\n", 2);
    assert_int_equal(buf_append(acc, part + strlen(head), plen - strlen(head) - mlen - 2), 0);
    free(m);
}

static void long_body_splits_and_rejoins(void **state)
{
    size_t len = 200000;
    char *body = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        body[i] = (i % 97 == 96) ? '\n' : (char)('a' + i % 26);
    body[len] = 0;
    char **parts;
    size_t n;
    assert_int_equal(tracker_body_split(&parts, &n, "big", body, 65535, 16), 0);
    assert_int_equal(n, 4);
    buf acc = BUF_INIT(1 << 20);
    for (size_t i = 0; i < n; i++) {
        assert_true(tracker_utf16_len(parts[i], strlen(parts[i])) <= 65535);
        part_text(&acc, parts[i], i + 1, n, "big");
        /* a cut prefers a line break: every part but the last ends in one */
        if (i + 1 < n)
            assert_int_equal(acc.data[acc.len - 1], '\n');
    }
    assert_int_equal(acc.len, len);
    assert_memory_equal(acc.data, body, len);
    buf_free(&acc);
    tracker_parts_free(parts);
    free(body);
}

static void split_never_cuts_utf8(void **state)
{
    /* 70,000 three-byte characters and no line breaks: 210,000 bytes */
    size_t nchars = 70000;
    char *body = malloc(nchars * 3 + 1);
    for (size_t i = 0; i < nchars; i++)
        memcpy(body + 3 * i, "\xe2\x82\xac", 3);
    body[nchars * 3] = 0;
    char **parts;
    size_t n;
    assert_int_equal(tracker_body_split(&parts, &n, "euro", body, 65535, 16), 0);
    assert_int_equal(n, 2);
    buf acc = BUF_INIT(1 << 20);
    for (size_t i = 0; i < n; i++) {
        long u = tracker_utf16_len(parts[i], strlen(parts[i]));
        assert_true(u > 0 && u <= 65535); /* valid UTF-8 on its own, and fits */
        part_text(&acc, parts[i], i + 1, n, "euro");
    }
    assert_int_equal(acc.len, nchars * 3);
    assert_memory_equal(acc.data, body, nchars * 3);
    buf_free(&acc);
    tracker_parts_free(parts);

    /* surrogate pairs count twice: 40,000 emoji do not fit in one comment */
    char *emoji = malloc(40000 * 4 + 1);
    for (size_t i = 0; i < 40000; i++)
        memcpy(emoji + 4 * i, "\xf0\x9f\x98\x80", 4);
    emoji[160000] = 0;
    assert_int_equal(tracker_body_split(&parts, &n, "emoji", emoji, 65535, 16), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        assert_true(tracker_utf16_len(parts[i], strlen(parts[i])) <= 65535);
    tracker_parts_free(parts);
    free(emoji);
    free(body);
}

static void split_refuses_bad_input(void **state)
{
    char **parts = (char **)1;
    size_t n = 7;
    assert_int_equal(tracker_body_split(&parts, &n, "k", "bad \xff utf8", 65535, 16),
                     FARM_EINVALID);
    assert_null(parts);
    assert_int_equal(n, 0);
    assert_int_equal(tracker_body_split(&parts, &n, "k--x", "x", 65535, 16), FARM_EINVALID);
    /* too many parts for the cap */
    char *body = malloc(300001);
    memset(body, 'x', 300000);
    body[300000] = 0;
    assert_int_equal(tracker_body_split(&parts, &n, "k", body, 65535, 4), FARM_ETOOBIG);
    assert_null(parts);
    assert_int_equal(tracker_body_split(&parts, &n, "k", body, 65535, 5), 0);
    assert_int_equal(n, 5);
    tracker_parts_free(parts);
    free(body);
}

/* A tracker that counts the calls reaching it: the entry points must stop
 * bad arguments before that. */
typedef struct counting {
    tracker base;
    int calls;
} counting;

static int count_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                        const char *body)
{
    ((counting *)t)->calls++;
    tracker_retry_after_set(1234);
    farm_error_set("slow down");
    return FARM_EAGAIN;
}

static const tracker_ops counting_ops = {.name = "counting", .comment_create = count_create};

static void entry_points_check_arguments(void **state)
{
    counting c = {{&counting_ops}, 0};
    tracker *t = &c.base;
    tracker_ref ref = TRACKER_REF_INIT;
    int64_t id = 99;
    assert_int_equal(tracker_comment_create(&id, t, &ref, "k", "b"), FARM_EINVALID);
    ref.repo = "o/r";
    assert_int_equal(tracker_comment_create(&id, t, &ref, "k", "b"), FARM_EINVALID); /* no number */
    ref.number = 5;
    assert_int_equal(tracker_comment_create(&id, t, &ref, "bad key", "b"), FARM_EINVALID);
    assert_int_equal(tracker_comment_create(&id, t, &ref, "k", NULL), FARM_EINVALID);
    assert_int_equal(c.calls, 0);
    assert_int_equal(tracker_comment_create(&id, t, &ref, "k", "b"), FARM_EAGAIN);
    assert_int_equal(c.calls, 1);
    assert_int_equal(tracker_retry_after_ms(), 1234);
    assert_int_equal(id, 0);
    /* an op the tracker lacks; and the retry-after slot is cleared by the next call */
    assert_int_equal(tracker_react(t, &ref, 0, "eyes"), FARM_EUNSUPPORTED);
    assert_int_equal(tracker_retry_after_ms(), 0);
    assert_int_equal(tracker_react(t, &ref, 0, "thumbsup"), FARM_EINVALID);
    const char *labels[] = {"ok", ""};
    assert_int_equal(tracker_labels_add(t, &ref, labels, 2), FARM_EINVALID);
    assert_int_equal(tracker_labels_add(t, &ref, labels, 0), 0);
    tracker_pr *pr = NULL;
    tracker_pr_spec spec = TRACKER_PR_SPEC_INIT;
    spec.title = "t";
    assert_int_equal(tracker_pr_create(&pr, t, &ref, &spec), FARM_EINVALID);
    tracker_permission p;
    assert_int_equal(tracker_permission_get(&p, t, &ref, ""), FARM_EINVALID);
    assert_string_equal(tracker_name(t), "counting");
    assert_string_equal(tracker_permission_name(TRACKER_PERM_WRITE), "write");
    tracker_free(NULL);
    tracker_thread_free(NULL);
    tracker_pr_free(NULL);
    tracker_review_comments_free(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_are_checked),
        cmocka_unit_test(markers_are_exact),
        cmocka_unit_test(utf16_length),
        cmocka_unit_test(short_body_is_one_part),
        cmocka_unit_test(long_body_splits_and_rejoins),
        cmocka_unit_test(split_never_cuts_utf8),
        cmocka_unit_test(split_refuses_bad_input),
        cmocka_unit_test(entry_points_check_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
