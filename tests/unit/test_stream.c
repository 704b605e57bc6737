/*
 * test_stream.c - the durable streams engine against a real store: every
 * MUST of the protocol that lives below HTTP (creation idempotence, appends
 * in byte and JSON mode, Stream-Seq, idempotent producers, closure, offsets,
 * ETags, TTL and expiry, retention, deletion with forks, forks), live
 * waiters, and the session logs as views over the event table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store.h"
#include "farm/stream/stream.h"
#include "farm/stream/stream_internal.h"
#include "support/store_backend_test.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    store *st;
    stream_hub *h;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/farm-test-stream-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(test_store_open(&f->st, f->dir), 0);
    assert_int_equal(stream_hub_open(&f->h, f->st, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    stream_hub_close(f->h);
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int create(fixture *f, const char *path, const char *ct, const char *body)
{
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;
    q.content_type = ct;
    q.body = body;
    q.body_len = body ? strlen(body) : 0;
    assert_int_equal(stream_create(&r, f->h, path, &q), 0);
    return r.status;
}

static int append(stream_result *r, fixture *f, const char *path, const char *ct, const char *body)
{
    stream_append_req q = STREAM_APPEND_REQ_INIT;
    q.content_type = ct;
    q.body = body;
    q.body_len = body ? strlen(body) : 0;
    assert_int_equal(stream_append(r, f->h, path, &q), 0);
    return r->status;
}

/* Read from offset into a heap string (the GET body). */
static char *read_all(stream_result *r, fixture *f, const char *path, const char *offset)
{
    buf b = BUF_INIT(1 << 20);
    stream_read_req q = STREAM_READ_REQ_INIT;
    q.offset = offset;
    assert_int_equal(stream_read_body(r, &b, f->h, path, &q), 0);
    return buf_detach(&b);
}

static void create_is_idempotent(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;

    assert_int_equal(create(f, "a/b", "text/plain", NULL), 201);
    assert_int_equal(create(f, "a/b", "text/plain", NULL), 200);
    assert_int_equal(create(f, "a/b", "TEXT/PLAIN; charset=utf-8", NULL), 200);
    assert_int_equal(create(f, "a/b", "application/json", NULL), 409);
    q.content_type = "text/plain";
    q.ttl = "60";
    assert_int_equal(stream_create(&r, f->h, "a/b", &q), 0);
    assert_int_equal(r.status, 409); /* different TTL */
    q.closed = 1;
    q.ttl = NULL;
    assert_int_equal(stream_create(&r, f->h, "a/b", &q), 0);
    assert_int_equal(r.status, 409); /* closure status differs */
    /* default content type */
    assert_int_equal(create(f, "raw", NULL, NULL), 201);
    stream_head(&r, f->h, "raw");
    assert_string_equal(r.content_type, "application/octet-stream");
}

static void create_rejects_bad_headers(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;
    const char *bad_ttls[] = {"+3600", "03600", "3600.0", "3.6e3", "-1", "", "x"};
    for (size_t i = 0; i < sizeof(bad_ttls) / sizeof(bad_ttls[0]); i++) {
        q.ttl = bad_ttls[i];
        assert_int_equal(stream_create(&r, f->h, "t", &q), 0);
        assert_int_equal(r.status, 400);
    }
    q.ttl = "60";
    q.expires_at = "2099-01-01T00:00:00Z";
    assert_int_equal(stream_create(&r, f->h, "t", &q), 0);
    assert_int_equal(r.status, 400); /* both */
    q.ttl = NULL;
    q.expires_at = "tomorrow";
    assert_int_equal(stream_create(&r, f->h, "t", &q), 0);
    assert_int_equal(r.status, 400);
    q.expires_at = NULL;
    q.content_type = "nonsense";
    assert_int_equal(stream_create(&r, f->h, "t", &q), 0);
    assert_int_equal(r.status, 400);
    q.content_type = NULL;
    assert_int_equal(stream_create(&r, f->h, "../etc", &q), 0);
    assert_int_equal(r.status, 400);
    assert_int_equal(stream_create(&r, f->h, "__ds/subscriptions/a", &q), 0);
    assert_int_equal(r.status, 400); /* the protocol's control prefix */
    assert_int_equal(stream_create(&r, f->h, "a%00b", &q), 0);
    assert_int_equal(r.status, 400);
    q.content_type = "application/json";
    q.body = "{nope";
    q.body_len = 5;
    assert_int_equal(stream_create(&r, f->h, "t", &q), 0);
    assert_int_equal(r.status, 400);
    q.body = "[]"; /* an empty array creates an empty JSON stream */
    q.body_len = 2;
    assert_int_equal(stream_create(&r, f->h, "t", &q), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.next_offset, "0000000000000000");
}

static void bytes_append_and_read(void **state)
{
    fixture *f = *state;
    stream_result r;
    char *body;

    assert_int_equal(create(f, "log", "text/plain", "hello "), 201);
    assert_int_equal(append(&r, f, "log", "text/plain", "world"), 204);
    assert_string_equal(r.next_offset, "000000000000000b");
    assert_int_equal(append(&r, f, "log", "text/plain", NULL), 400);      /* empty */
    assert_int_equal(append(&r, f, "log", NULL, "x"), 400);               /* no type */
    assert_int_equal(append(&r, f, "log", "application/json", "1"), 409); /* mismatch */
    assert_int_equal(append(&r, f, "nothere", "text/plain", "x"), 404);

    body = read_all(&r, f, "log", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(body, "hello world");
    assert_true(r.up_to_date);
    assert_false(r.closed);
    assert_string_equal(r.next_offset, "000000000000000b");
    free(body);
    body = read_all(&r, f, "log", "-1");
    assert_string_equal(body, "hello world");
    free(body);
    body = read_all(&r, f, "log", "0000000000000006");
    assert_string_equal(body, "world");
    free(body);
    /* at the tail: empty, up to date, next = the offset asked */
    body = read_all(&r, f, "log", "000000000000000b");
    assert_string_equal(body, "");
    assert_true(r.up_to_date);
    assert_string_equal(r.next_offset, "000000000000000b");
    free(body);
    /* now: empty, the tail, no ETag */
    body = read_all(&r, f, "log", "now");
    assert_string_equal(body, "");
    assert_string_equal(r.next_offset, "000000000000000b");
    assert_true(r.up_to_date);
    assert_string_equal(r.etag, "");
    free(body);
    free(read_all(&r, f, "log", "zz"));
    assert_int_equal(r.status, 400);
    free(read_all(&r, f, "log", "00000000000000ff"));
    assert_int_equal(r.status, 400); /* past the tail */
    free(read_all(&r, f, "missing", NULL));
    assert_int_equal(r.status, 404);
}

static void offsets_increase(void **state)
{
    fixture *f = *state;
    stream_result r;
    char prev[STREAM_OFFSET_LEN] = "";
    assert_int_equal(create(f, "o", "application/octet-stream", NULL), 201);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(append(&r, f, "o", "application/octet-stream", "abcdefghijklmnopq"), 204);
        assert_true(strcmp(r.next_offset, prev) > 0);
        assert_false(strcmp(r.next_offset, "-1") == 0 || strcmp(r.next_offset, "now") == 0);
        for (const char *p = r.next_offset; *p; p++)
            assert_null(strchr(",&=?/", *p));
        memcpy(prev, r.next_offset, sizeof(prev));
    }
}

static void json_mode(void **state)
{
    fixture *f = *state;
    stream_result r;
    char *body;

    assert_int_equal(create(f, "j", "application/json", "{\"a\": 1}"), 201);
    assert_int_equal(append(&r, f, "j", "application/json", "[{\"b\":2}, [3, 4]]"), 204);
    assert_int_equal(append(&r, f, "j", "application/json", "[[[5]]]"), 204);
    assert_int_equal(append(&r, f, "j", "application/json", "[]"), 400);
    assert_int_equal(append(&r, f, "j", "application/json", "{bad"), 400);
    assert_int_equal(append(&r, f, "j", "application/json", "\"text\""), 204);
    body = read_all(&r, f, "j", "-1");
    assert_int_equal(r.status, 200);
    assert_string_equal(body, "[{\"a\":1},{\"b\":2},[3,4],[[5]],\"text\"]");
    assert_int_equal(r.count, 5);
    free(body);
    /* offsets count messages: from the third message on */
    body = read_all(&r, f, "j", "0000000000000002");
    assert_string_equal(body, "[[3,4],[[5]],\"text\"]");
    free(body);
    body = read_all(&r, f, "j", "now");
    assert_string_equal(body, "[]");
    free(body);
}

/* The quick path of JSON appends (stream_json.c) writes what jansson would,
 * message for message, or leaves the body to jansson. */
static void json_quick_path_matches_jansson(void **state)
{
    (void)state;
    static const char *quick[] = {
        "{\"a\": 1}",
        " [ {\"b\":2} , [3, 4] ] ",
        "[[[5]]]",
        "\"text\"",
        "0",
        "-12",
        "123456789012345678",
        "true",
        "false",
        "null",
        "[null,true,false]",
        "{}",
        "[{}, []]",
        "{\"z\":1,\"a\":{\"y\":[1,2,{\"x\":\"\"}]},\"m\":-7}",
        "\t\r\n{\"k\" :\n\"v\"}\n",
        "{\"a\":{\"a\":1},\"b\":{\"a\":2}}",
        "\"~ del\x7f /slash\"",
        "{\"kind\":\"agent_output\",\"text\":\"compiling src/main.c ... ok (0.42s)\"}",
    };
    static const char *declined[] = {
        "",
        " ",
        "[]",
        " [ ] ",
        "{bad",
        "{\"a\":1,\"a\":2}",
        "1.5",
        "1e3",
        "-0",
        "01",
        "\"\\n\"",
        "\"caf\xc3\xa9\"",
        "\"a\tb\"",
        "[1,]",
        "{\"a\":}",
        "1 2",
        "1234567890123456789",
        "nul",
        "[1",
        "\"open",
        "{\"a\" 1}",
        "-",
        "[1,2]x",
    };
    char out[1024]; /* stream_json_compact() wants n + 1 bytes: more than the longest input */
    size_t spans[9], n, len;
    for (size_t i = 0; i < sizeof(quick) / sizeof(*quick); i++) {
        const char *in = quick[i];
        assert_int_equal(stream_json_compact(out, &len, spans, 8, &n, in, strlen(in)), 1);
        json_t *v = json_loads(in, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        size_t want = json_is_array(v) ? json_array_size(v) : 1;
        assert_int_equal(n, want);
        for (size_t k = 0; k < n; k++) {
            json_t *m = json_is_array(v) ? json_array_get(v, k) : v;
            char *d = json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY);
            assert_int_equal(spans[k + 1] - 1 - spans[k], strlen(d));
            assert_memory_equal(out + spans[k], d, strlen(d));
            free(d);
        }
        json_decref(v);
    }
    for (size_t i = 0; i < sizeof(declined) / sizeof(*declined); i++)
        assert_int_equal(
            stream_json_compact(out, &len, spans, 8, &n, declined[i], strlen(declined[i])), 0);
    /* deep nesting and many keys are left to jansson too */
    char deep[128] = "", keys[512] = "{";
    for (int d = 0; d < 40; d++)
        strcat(deep, "[");
    for (int d = 0; d < 40; d++)
        strcat(deep, "]");
    assert_int_equal(stream_json_compact(out, &len, spans, 8, &n, deep, strlen(deep)), 0);
    assert_int_equal(stream_json_compact(out, &len, spans, 8, &n, deep + 20, 40), 1);
    for (int k = 0; k < 40; k++)
        snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "%s\"k%d\":%d", k ? "," : "", k,
                 k);
    strcat(keys, "}");
    assert_int_equal(stream_json_compact(out, &len, spans, 8, &n, keys, strlen(keys)), 0);
    /* more messages than the caller has room for: jansson's turn too */
    assert_int_equal(stream_json_compact(out, &len, spans, 2, &n, "[1,2,3]", 7), 0);
}

static void stream_seq_rejects_regressions(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_append_req q = STREAM_APPEND_REQ_INIT;
    assert_int_equal(create(f, "s", "text/plain", NULL), 201);
    q.content_type = "text/plain";
    q.body = "x";
    q.body_len = 1;
    q.stream_seq = "0002";
    assert_int_equal(stream_append(&r, f->h, "s", &q), 0);
    assert_int_equal(r.status, 204);
    q.stream_seq = "0002";
    assert_int_equal(stream_append(&r, f->h, "s", &q), 0);
    assert_int_equal(r.status, 409);
    q.stream_seq = "0001";
    assert_int_equal(stream_append(&r, f->h, "s", &q), 0);
    assert_int_equal(r.status, 409);
    q.stream_seq = "0010"; /* byte-wise: "0010" > "0002" */
    assert_int_equal(stream_append(&r, f->h, "s", &q), 0);
    assert_int_equal(r.status, 204);
}

static int produce(stream_result *r, fixture *f, const char *path, const char *id,
                   const char *epoch, const char *seq, const char *body, int close)
{
    stream_append_req q = STREAM_APPEND_REQ_INIT;
    q.content_type = "text/plain";
    q.body = body;
    q.body_len = body ? strlen(body) : 0;
    q.producer_id = id;
    q.producer_epoch = epoch;
    q.producer_seq = seq;
    q.close = close;
    assert_int_equal(stream_append(r, f->h, path, &q), 0);
    return r->status;
}

static void idempotent_producers(void **state)
{
    fixture *f = *state;
    stream_result r;
    char *body;
    assert_int_equal(create(f, "p", "text/plain", NULL), 201);

    assert_int_equal(produce(&r, f, "p", "w1", "0", "0", "a", 0), 200);
    assert_int_equal(r.producer_epoch, 0);
    assert_int_equal(r.producer_seq, 0);
    assert_int_equal(produce(&r, f, "p", "w1", "0", "1", "b", 0), 200);
    assert_int_equal(produce(&r, f, "p", "w1", "0", "1", "b", 0), 204); /* retry */
    assert_int_equal(r.producer_seq, 1);
    assert_int_equal(produce(&r, f, "p", "w1", "0", "0", "a", 0), 204); /* old retry */
    assert_int_equal(produce(&r, f, "p", "w1", "0", "5", "z", 0), 409); /* gap */
    assert_int_equal(r.expected_seq, 2);
    assert_int_equal(r.received_seq, 5);
    assert_int_equal(produce(&r, f, "p", "w1", "1", "3", "c", 0), 400); /* new epoch, seq != 0 */
    assert_int_equal(produce(&r, f, "p", "w1", "1", "0", "c", 0), 200); /* new epoch */
    assert_int_equal(produce(&r, f, "p", "w1", "0", "2", "zombie", 0), 403);
    assert_int_equal(r.producer_epoch, 1);
    assert_int_equal(produce(&r, f, "p", "w2", "0", "1", "x", 0), 409); /* new producer at 1 */
    assert_int_equal(r.expected_seq, 0);
    /* malformed producer headers */
    assert_int_equal(produce(&r, f, "p", "", "0", "0", "x", 0), 400);
    assert_int_equal(produce(&r, f, "p", "w3", "-1", "0", "x", 0), 400);
    assert_int_equal(produce(&r, f, "p", "w3", "0", "9007199254740992", "x", 0), 400);
    assert_int_equal(produce(&r, f, "p", "w3", "0", NULL, "x", 0), 400);
    assert_int_equal(produce(&r, f, "p", "w3", NULL, NULL, "x", 0), 400);
    body = read_all(&r, f, "p", NULL);
    assert_string_equal(body, "abc"); /* duplicates were not appended */
    free(body);
    /* close by a producer; its retry is a duplicate, anyone else a conflict */
    assert_int_equal(produce(&r, f, "p", "w1", "1", "1", "d", 1), 200);
    assert_true(r.closed);
    assert_int_equal(produce(&r, f, "p", "w1", "1", "1", "d", 1), 204);
    assert_true(r.closed);
    assert_int_equal(produce(&r, f, "p", "w1", "1", "2", "e", 0), 409);
    assert_true(r.closed);
    assert_int_equal(produce(&r, f, "p", "w1", "1", "2", NULL, 1), 409); /* not its closer */
    assert_true(r.closed);
    /* close-only by a producer: 204 (5.3), its state moves on, its retry is 204 */
    assert_int_equal(create(f, "q", "text/plain", NULL), 201);
    assert_int_equal(produce(&r, f, "q", "w1", "0", "0", "a", 0), 200);
    assert_int_equal(produce(&r, f, "q", "w1", "0", "1", NULL, 1), 204);
    assert_true(r.closed);
    assert_int_equal(r.producer_seq, 1);
    assert_int_equal(produce(&r, f, "q", "w1", "0", "1", NULL, 1), 204);
    assert_int_equal(r.producer_seq, 1);
    assert_int_equal(produce(&r, f, "q", "w1", "0", "0", NULL, 1), 409);
}

static void closure(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_append_req q = STREAM_APPEND_REQ_INIT;
    stream_create_req c = STREAM_CREATE_REQ_INIT;
    char *body;

    assert_int_equal(create(f, "c", "text/plain", "abc"), 201);
    q.close = 1;
    assert_int_equal(stream_append(&r, f->h, "c", &q), 0);
    assert_int_equal(r.status, 204);
    assert_true(r.closed);
    assert_string_equal(r.next_offset, "0000000000000003");
    assert_int_equal(stream_append(&r, f->h, "c", &q), 0); /* again: idempotent */
    assert_int_equal(r.status, 204);
    assert_true(r.closed);
    assert_int_equal(append(&r, f, "c", "text/plain", "more"), 409);
    assert_true(r.closed);
    assert_string_equal(r.next_offset, "0000000000000003");
    /* closed first, before the content type */
    assert_int_equal(append(&r, f, "c", "application/json", "1"), 409);
    assert_true(r.closed);

    body = read_all(&r, f, "c", NULL);
    assert_string_equal(body, "abc");
    assert_true(r.closed);
    free(body);
    body = read_all(&r, f, "c", "0000000000000003");
    assert_string_equal(body, "");
    assert_true(r.closed);
    assert_true(r.up_to_date);
    free(body);
    body = read_all(&r, f, "c", "0000000000000001"); /* partial from a closed stream */
    assert_true(r.closed);
    free(body);
    stream_head(&r, f->h, "c");
    assert_int_equal(r.status, 200);
    assert_true(r.closed);

    c.content_type = "text/plain";
    assert_int_equal(stream_create(&r, f->h, "c", &c), 0);
    assert_int_equal(r.status, 409); /* open requested, closed exists */
    c.closed = 1;
    assert_int_equal(stream_create(&r, f->h, "c", &c), 0);
    assert_int_equal(r.status, 200);
    /* create closed, with final content */
    c.body = "done";
    c.body_len = 4;
    assert_int_equal(stream_create(&r, f->h, "c2", &c), 0);
    assert_int_equal(r.status, 201);
    assert_true(r.closed);
    assert_int_equal(append(&r, f, "c2", "text/plain", "x"), 409);
    /* append-and-close in one step */
    assert_int_equal(create(f, "c3", "text/plain", NULL), 201);
    q.content_type = "text/plain";
    q.body = "last";
    q.body_len = 4;
    assert_int_equal(stream_append(&r, f->h, "c3", &q), 0);
    assert_int_equal(r.status, 204);
    assert_true(r.closed);
    assert_int_equal(stream_append(&r, f->h, "c3", &q), 0);
    assert_int_equal(r.status, 409); /* append-and-close is not idempotent */
}

static void etags(void **state)
{
    fixture *f = *state;
    stream_result r;
    buf b = BUF_INIT(1 << 16);
    stream_read_req q = STREAM_READ_REQ_INIT;
    assert_int_equal(create(f, "e", "text/plain", "abc"), 201);
    assert_int_equal(stream_read_body(&r, &b, f->h, "e", &q), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.etag[0] == '"');
    char etag[96];
    snprintf(etag, sizeof(etag), "%s", r.etag);
    q.if_none_match = etag;
    assert_int_equal(stream_read_body(&r, &b, f->h, "e", &q), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(b.len, 0);
    /* closing changes the ETag even without new data */
    stream_append_req a = STREAM_APPEND_REQ_INIT;
    a.close = 1;
    assert_int_equal(stream_append(&r, f->h, "e", &a), 0);
    assert_int_equal(stream_read_body(&r, &b, f->h, "e", &q), 0);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(r.etag, etag);
    buf_free(&b);
}

static void expiry_and_ttl(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;
    q.expires_at = "2001-01-01T00:00:00Z";
    assert_int_equal(stream_create(&r, f->h, "old", &q), 0);
    assert_int_equal(r.status, 201);
    stream_head(&r, f->h, "old");
    assert_int_equal(r.status, 404); /* expired already */
    free(read_all(&r, f, "old", NULL));
    assert_int_equal(r.status, 404);
    /* the path is free again */
    q.expires_at = NULL;
    assert_int_equal(stream_create(&r, f->h, "old", &q), 0);
    assert_int_equal(r.status, 201);

    q.ttl = "1";
    assert_int_equal(stream_create(&r, f->h, "ttl", &q), 0);
    assert_int_equal(r.status, 201);
    stream_head(&r, f->h, "ttl");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.ttl_s, 1);
    int64_t deadline = clock_mono_ms() + 5000;
    do {
        usleep(50000); /* polling a condition with a deadline */
        stream_head(&r, f->h, "ttl");
    } while (r.status == 200 && clock_mono_ms() < deadline);
    assert_int_equal(r.status, 404);
}

static void retention_410(void **state)
{
    fixture *f = *state;
    stream_result r;
    assert_int_equal(create(f, "ret", "text/plain", "0123456789"), 201);
    assert_int_equal(append(&r, f, "ret", "text/plain", "abc"), 204);
    assert_int_equal(stream_trim(&r, f->h, "ret", "000000000000000a"), 0);
    assert_int_equal(r.status, 204);
    free(read_all(&r, f, "ret", "0000000000000002"));
    assert_int_equal(r.status, 410);
    char *body = read_all(&r, f, "ret", "000000000000000a");
    assert_string_equal(body, "abc");
    free(body);
    body = read_all(&r, f, "ret", "-1"); /* the start is the first retained */
    assert_string_equal(body, "abc");
    free(body);
}

static void forks(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;
    char *body;

    assert_int_equal(create(f, "src", "application/json", "[1,2,3]"), 201);
    q.forked_from = "src";
    q.fork_offset = "0000000000000002";
    assert_int_equal(stream_create(&r, f->h, "fork", &q), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.content_type, "application/json"); /* inherited */
    assert_string_equal(r.next_offset, "0000000000000002");
    assert_int_equal(stream_create(&r, f->h, "fork", &q), 0);
    assert_int_equal(r.status, 200); /* same fork again */
    assert_int_equal(append(&r, f, "fork", "application/json", "\"f\""), 204);
    assert_int_equal(append(&r, f, "src", "application/json", "\"s\""), 204);
    body = read_all(&r, f, "fork", NULL);
    assert_string_equal(body, "[1,2,\"f\"]");
    free(body);
    body = read_all(&r, f, "src", NULL);
    assert_string_equal(body, "[1,2,3,\"s\"]");
    free(body);
    /* sub-offset: one message past the anchor */
    q.fork_sub_offset = "1";
    assert_int_equal(stream_create(&r, f->h, "fork2", &q), 0);
    assert_int_equal(r.status, 201);
    body = read_all(&r, f, "fork2", NULL);
    assert_string_equal(body, "[1,2,3]");
    free(body);
    q.fork_sub_offset = "9";
    assert_int_equal(stream_create(&r, f->h, "fork3", &q), 0);
    assert_int_equal(r.status, 400);
    q.fork_sub_offset = NULL;
    q.fork_offset = "00000000000000ff";
    assert_int_equal(stream_create(&r, f->h, "fork3", &q), 0);
    assert_int_equal(r.status, 400);
    q.fork_offset = NULL;
    q.content_type = "text/plain";
    assert_int_equal(stream_create(&r, f->h, "fork3", &q), 0);
    assert_int_equal(r.status, 409);
    q.content_type = NULL;
    q.forked_from = "nope";
    assert_int_equal(stream_create(&r, f->h, "fork3", &q), 0);
    assert_int_equal(r.status, 404);

    /* deleting the source while forks read it: soft */
    assert_int_equal(stream_delete(&r, f->h, "src"), 0);
    assert_int_equal(r.status, 204);
    free(read_all(&r, f, "src", NULL));
    assert_int_equal(r.status, 410);
    stream_head(&r, f->h, "src");
    assert_int_equal(r.status, 410);
    assert_int_equal(stream_delete(&r, f->h, "src"), 0);
    assert_int_equal(r.status, 410);
    assert_int_equal(append(&r, f, "src", "application/json", "1"), 410);
    assert_int_equal(create(f, "src", "application/json", NULL), 409);
    q.forked_from = "src";
    assert_int_equal(stream_create(&r, f->h, "fork4", &q), 0);
    assert_int_equal(r.status, 409); /* a soft-deleted source */
    body = read_all(&r, f, "fork", NULL);
    assert_string_equal(body, "[1,2,\"f\"]");
    free(body);
    /* the last fork gone, the source goes too */
    assert_int_equal(stream_delete(&r, f->h, "fork"), 0);
    assert_int_equal(r.status, 204);
    assert_int_equal(stream_delete(&r, f->h, "fork2"), 0);
    assert_int_equal(r.status, 204);
    stream_head(&r, f->h, "src");
    assert_int_equal(r.status, 404);
    assert_int_equal(create(f, "src", "application/json", NULL), 201);
}

static void byte_fork_sub_offset(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;
    assert_int_equal(create(f, "b", "text/plain", "hello world"), 201);
    q.forked_from = "b";
    q.fork_offset = "0000000000000000";
    q.fork_sub_offset = "5";
    assert_int_equal(stream_create(&r, f->h, "bf", &q), 0);
    assert_int_equal(r.status, 201);
    assert_int_equal(append(&r, f, "bf", "text/plain", "!"), 204);
    char *body = read_all(&r, f, "bf", NULL);
    assert_string_equal(body, "hello!");
    free(body);
    body = read_all(&r, f, "bf", "0000000000000002");
    assert_string_equal(body, "llo!");
    free(body);
}

/* A sub-offset refines the fork point inside the append at the fork
 * offset, no further (bytes); in a chain, no further than what the fork in
 * between inherits. */
static void fork_sub_offset_bounds(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req q = STREAM_CREATE_REQ_INIT;
    char *body;
    assert_int_equal(create(f, "s", "text/plain", "hello"), 201);
    assert_int_equal(append(&r, f, "s", "text/plain", "world"), 204);
    q.forked_from = "s";
    q.fork_offset = "0000000000000000";
    q.fork_sub_offset = "6"; /* past "hello" */
    assert_int_equal(stream_create(&r, f->h, "s1", &q), 0);
    assert_int_equal(r.status, 400);
    q.fork_offset = "0000000000000005";
    q.fork_sub_offset = "6"; /* past "world" */
    assert_int_equal(stream_create(&r, f->h, "s1", &q), 0);
    assert_int_equal(r.status, 400);
    q.fork_sub_offset = "2";
    assert_int_equal(stream_create(&r, f->h, "s1", &q), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.next_offset, "0000000000000007");
    assert_int_equal(stream_create(&r, f->h, "s1", &q), 0);
    assert_int_equal(r.status, 200); /* idempotent */
    q.fork_sub_offset = "1";
    assert_int_equal(stream_create(&r, f->h, "s1", &q), 0);
    assert_int_equal(r.status, 409);
    /* s1 inherits [0, 7): a fork of it at 5 may go up to 7 */
    assert_int_equal(append(&r, f, "s1", "text/plain", "XY"), 204);
    q.forked_from = "s1";
    q.fork_sub_offset = "3";
    assert_int_equal(stream_create(&r, f->h, "s2", &q), 0);
    assert_int_equal(r.status, 400);
    q.fork_sub_offset = "2";
    assert_int_equal(stream_create(&r, f->h, "s2", &q), 0);
    assert_int_equal(r.status, 201);
    body = read_all(&r, f, "s2", NULL);
    assert_string_equal(body, "hellowo");
    free(body);
    q.fork_offset = "0000000000000007"; /* in s1's own "XY" */
    q.fork_sub_offset = "1";
    assert_int_equal(stream_create(&r, f->h, "s3", &q), 0);
    assert_int_equal(r.status, 201);
    body = read_all(&r, f, "s3", NULL);
    assert_string_equal(body, "hellowoX");
    free(body);
    q.fork_offset = NULL; /* the tail: nothing past it */
    q.fork_sub_offset = "1";
    assert_int_equal(stream_create(&r, f->h, "s4", &q), 0);
    assert_int_equal(r.status, 400);
    q.fork_sub_offset = "0";
    assert_int_equal(stream_create(&r, f->h, "s4", &q), 0);
    assert_int_equal(r.status, 201);
    /* JSON: messages, up to the source's tail */
    assert_int_equal(create(f, "js", "application/json", "[1,2,3]"), 201);
    assert_int_equal(append(&r, f, "js", "application/json", "[4,5]"), 204);
    q.forked_from = "js";
    q.fork_offset = "0000000000000003";
    q.fork_sub_offset = "1";
    assert_int_equal(stream_create(&r, f->h, "js1", &q), 0);
    assert_int_equal(r.status, 201);
    body = read_all(&r, f, "js1", NULL);
    assert_string_equal(body, "[1,2,3,4]");
    free(body);
    q.fork_sub_offset = "3";
    assert_int_equal(stream_create(&r, f->h, "js2", &q), 0);
    assert_int_equal(r.status, 400);
}

/* A JSON body of [1,1,...] with n messages. */
static char *json_body_of(size_t n, const char *msg)
{
    size_t m = strlen(msg);
    char *p = malloc(n * (m + 1) + 2), *w = p;
    *w++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        memcpy(w, msg, m);
        w += m;
    }
    *w++ = ']';
    *w = '\0';
    return p;
}

/* STREAM_MAX_MESSAGES per append or initial body: 413 past it, counted
 * before anything is built for the messages; the quick path and jansson
 * both take bodies up to it. */
static void json_message_limit(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_create_req c = STREAM_CREATE_REQ_INIT;
    assert_int_equal(create(f, "m", "application/json", NULL), 201);
    char *at = json_body_of(STREAM_MAX_MESSAGES, "{}");
    char *over = json_body_of(STREAM_MAX_MESSAGES + 1, "{}");
    char *slow = json_body_of(STREAM_MAX_MESSAGES, "\"\\u00e9\""); /* jansson's */
    char *slow_over = json_body_of(STREAM_MAX_MESSAGES + 1, "\"\\u00e9\"");
    assert_int_equal(append(&r, f, "m", "application/json", over), 413);
    assert_non_null(strstr(r.error, "65536"));
    assert_int_equal(append(&r, f, "m", "application/json", slow_over), 413);
    assert_int_equal(append(&r, f, "m", "application/json", at), 204);
    assert_int_equal(r.next_pos, STREAM_MAX_MESSAGES);
    assert_int_equal(append(&r, f, "m", "application/json", slow), 204);
    assert_int_equal(r.next_pos, 2 * STREAM_MAX_MESSAGES);
    c.content_type = "application/json";
    c.body = over;
    c.body_len = strlen(over);
    assert_int_equal(stream_create(&r, f->h, "m2", &c), 0);
    assert_int_equal(r.status, 413);
    stream_head(&r, f->h, "m2");
    assert_int_equal(r.status, 404);
    /* bytes streams count bytes, not messages */
    assert_int_equal(create(f, "raw", "text/plain", over), 201);
    free(at);
    free(over);
    free(slow);
    free(slow_over);
}

typedef struct wake_rec {
    int fired;
    stream_wake_reason why;
} wake_rec;

static void on_wake(void *arg, stream_wake_reason why)
{
    wake_rec *w = arg;
    w->fired++;
    w->why = why;
}

static void waiters(void **state)
{
    fixture *f = *state;
    stream_result r;
    stream_waiter *w1, *w2, *w3;
    wake_rec a = {0}, b = {0}, c = {0};

    assert_int_equal(create(f, "live", "text/plain", "x"), 201);
    int64_t id = r.stream_id;
    stream_head(&r, f->h, "live");
    id = r.stream_id;
    assert_int_equal(stream_wait(&w1, f->h, "live", id, 1, 0, on_wake, &a), 0);
    assert_int_equal(stream_wait(&w2, f->h, "live", id, 0, 0, on_wake, &b), 0);
    assert_int_equal(b.fired, 1); /* data already past 0 */
    assert_int_equal(b.why, STREAM_WAKE_DATA);
    assert_int_equal(a.fired, 0);
    assert_int_equal(stream_wait(&w3, f->h, "live", id, 1, clock_mono_ms() + 100, on_wake, &c), 0);
    assert_int_equal(append(&r, f, "live", "text/plain", "y"), 204);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.why, STREAM_WAKE_DATA);
    stream_wait_cancel(f->h, w1);
    stream_wait_cancel(f->h, w2);
    stream_wait_cancel(f->h, w3);

    /* a deadline */
    memset(&c, 0, sizeof(c));
    assert_int_equal(stream_wait(&w3, f->h, "live", id, 2, clock_mono_ms() + 100, on_wake, &c), 0);
    int64_t deadline = clock_mono_ms() + 3000;
    while (!__atomic_load_n(&c.fired, __ATOMIC_SEQ_CST) && clock_mono_ms() < deadline)
        usleep(10000);
    assert_int_equal(c.fired, 1);
    assert_int_equal(c.why, STREAM_WAKE_TIMEOUT);
    stream_wait_cancel(f->h, w3);

    /* deletion */
    memset(&a, 0, sizeof(a));
    assert_int_equal(stream_wait(&w1, f->h, "live", id, 2, 0, on_wake, &a), 0);
    assert_int_equal(stream_delete(&r, f->h, "live"), 0);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.why, STREAM_WAKE_GONE);
    stream_wait_cancel(f->h, w1);
    assert_int_equal(stream_hub_waiters(f->h), 0);
}

typedef struct sess_ins {
    int64_t id;
} sess_ins;

static int insert_session(store_tx *tx, void *arg)
{
    sess_ins *s = arg;
    store_session ss = {0};
    ss.tracker = "local";
    ss.repo = "demo";
    ss.number = 7;
    return store_tx_session_insert(&s->id, tx, &ss);
}

static void session_logs(void **state)
{
    fixture *f = *state;
    stream_result r;
    sess_ins s = {0};
    char path[64];
    assert_int_equal(store_write(f->st, insert_session, &s), 0);
    snprintf(path, sizeof(path), "sessions/%lld", (long long)s.id);

    char *body = read_all(&r, f, path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(body, "[]");
    free(body);

    stream_waiter *w;
    wake_rec a = {0};
    stream_head(&r, f->h, path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_int_equal(stream_wait(&w, f->h, path, 0, 0, 0, on_wake, &a), 0);
    int64_t seq;
    assert_int_equal(stream_session_append(&seq, f->h, s.id, "message", "ann", "{\"text\":\"hi\"}"),
                     0);
    assert_int_equal(seq, 1);
    assert_int_equal(a.fired, 1);
    stream_wait_cancel(f->h, w);
    assert_int_equal(stream_session_append(NULL, f->h, s.id, "step", NULL, NULL), 0);

    body = read_all(&r, f, path, "-1");
    json_t *v = json_loads(body, 0, NULL);
    assert_non_null(v);
    assert_int_equal(json_array_size(v), 2);
    json_t *m = json_array_get(v, 0);
    assert_int_equal(json_integer_value(json_object_get(m, "seq")), 1);
    assert_string_equal(json_string_value(json_object_get(m, "kind")), "message");
    assert_string_equal(json_string_value(json_object_get(m, "actor")), "ann");
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "body"), "text")),
                        "hi");
    assert_non_null(json_string_value(json_object_get(m, "ts")));
    json_decref(v);
    free(body);
    assert_string_equal(r.next_offset, "0000000000000002");
    body = read_all(&r, f, path, "0000000000000001");
    assert_non_null(strstr(body, "\"seq\":2"));
    assert_null(strstr(body, "\"seq\":1"));
    free(body);

    /* written by the farm only */
    assert_int_equal(append(&r, f, path, "application/json", "{}"), 403);
    assert_int_equal(stream_delete(&r, f->h, path), 0);
    assert_int_equal(r.status, 403);
    assert_int_equal(create(f, path, "application/json", NULL), 403);
    free(read_all(&r, f, "sessions/999999", NULL));
    assert_int_equal(r.status, 404);
    /* the prefix is reserved: no stream can pose as a session log */
    assert_int_equal(create(f, "sessions/01", "application/json", NULL), 403);
    assert_int_equal(create(f, "sessions/abc/x", "application/json", NULL), 403);
    free(read_all(&r, f, "sessions/abc", NULL));
    assert_int_equal(r.status, 404);
    stream_head(&r, f->h, "sessions/01");
    assert_int_equal(r.status, 404);
}

/* Events written without a notification still reach waiters (the poll). */
static int append_event(store_tx *tx, void *arg)
{
    sess_ins *s = arg;
    return store_tx_event_append(NULL, tx, s->id, "quiet", NULL, NULL);
}

static void session_poll_catches_silent_writers(void **state)
{
    fixture *f = *state;
    sess_ins s = {0};
    char path[64];
    stream_waiter *w;
    wake_rec a = {0};
    assert_int_equal(store_write(f->st, insert_session, &s), 0);
    snprintf(path, sizeof(path), "sessions/%lld", (long long)s.id);
    assert_int_equal(stream_wait(&w, f->h, path, 0, 0, 0, on_wake, &a), 0);
    assert_int_equal(store_write(f->st, append_event, &s), 0);
    int64_t deadline = clock_mono_ms() + 3000;
    while (!__atomic_load_n(&a.fired, __ATOMIC_SEQ_CST) && clock_mono_ms() < deadline)
        usleep(10000);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.why, STREAM_WAKE_DATA);
    stream_wait_cancel(f->h, w);
}

/* Concurrent appends are serialised: no position is given twice. */
typedef struct th_arg {
    fixture *f;
    int n;
} th_arg;

static void *appender(void *p)
{
    th_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        stream_result r;
        stream_append_req q = STREAM_APPEND_REQ_INIT;
        q.content_type = "application/json";
        q.body = "{\"x\":1}";
        q.body_len = 7;
        if (stream_append(&r, a->f->h, "conc", &q) || r.status != 204)
            return (void *)1;
    }
    return NULL;
}

static void concurrent_appends(void **state)
{
    fixture *f = *state;
    stream_result r;
    pthread_t t[4];
    th_arg a = {f, 50};
    assert_int_equal(create(f, "conc", "application/json", NULL), 201);
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, appender, &a);
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    char *body = read_all(&r, f, "conc", NULL);
    json_t *v = json_loads(body, 0, NULL);
    assert_int_equal(json_array_size(v), 200);
    assert_string_equal(r.next_offset, "00000000000000c8");
    json_decref(v);
    free(body);
}

static void helpers(void **state)
{
    char off[STREAM_OFFSET_LEN], cur[32], next[32];
    uint64_t pos;
    stream_offset_format(off, 0x1234abcdULL);
    assert_string_equal(off, "000000001234abcd");
    assert_int_equal(stream_offset_parse(&pos, off), 0);
    assert_int_equal(pos, 0x1234abcdULL);
    assert_int_equal(stream_offset_parse(&pos, "000000001234ABCD"), FARM_EINVALID);
    assert_int_equal(stream_offset_parse(&pos, "-1"), FARM_EINVALID);
    assert_int_equal(stream_offset_parse(&pos, "ffffffffffffffff"), FARM_EINVALID);
    assert_true(stream_content_type_is_json("Application/JSON; charset=utf-8"));
    assert_true(stream_content_type_is_json("application/vnd.farm+json"));
    assert_false(stream_content_type_is_json("text/json-ish"));
    assert_true(stream_content_type_is_text("text/plain"));
    assert_false(stream_content_type_is_text("application/octet-stream"));
    int64_t sid;
    assert_true(stream_path_session("sessions/42", &sid));
    assert_int_equal(sid, 42);
    assert_false(stream_path_session("sessions/042", &sid));
    assert_false(stream_path_session("sessions/4/x", &sid));
    assert_true(stream_path_reserved("sessions/x"));
    assert_true(stream_path_control("__ds"));
    assert_true(stream_path_control("__ds/subscriptions/a"));
    assert_false(stream_path_control("__dsx"));
    assert_false(stream_path_control("a/__ds"));
    assert_false(stream_path_valid("a%zz"));
    assert_false(stream_path_valid("a/../b"));
    assert_false(stream_path_valid("a//b"));
    assert_true(stream_path_valid("a/b.c/d..e"));
    /* messages counted without a parse */
    assert_int_equal(stream_json_count("[]", 2, 10), 0);
    assert_int_equal(stream_json_count(" [ ] ", 5, 10), 0);
    assert_int_equal(stream_json_count("{\"a\":[1,2]}", 11, 10), 1);
    assert_int_equal(stream_json_count("7", 1, 10), 1);
    const char *arr = "[1, \"a,]\\\"\", {\"k\": [2, 3]}, [[4]], null, -5e3]";
    assert_int_equal(stream_json_count(arr, strlen(arr), 10), 6);
    assert_true(stream_json_count(arr, strlen(arr), 2) > 2);
    /* cursors never go backwards: echoing one at or past the current
     * interval gets a strictly greater one */
    stream_cursor_next(cur, sizeof(cur), NULL);
    stream_cursor_next(next, sizeof(next), cur);
    assert_true(strtoll(next, NULL, 10) > strtoll(cur, NULL, 10));
    stream_cursor_next(next, sizeof(next), "999999999999");
    assert_true(strtoll(next, NULL, 10) > 999999999999LL);
    stream_cursor_next(next, sizeof(next), "1"); /* an old cursor: the current interval */
    assert_true(strtoll(next, NULL, 10) - strtoll(cur, NULL, 10) <= 1);
    assert_true(strtoll(next, NULL, 10) >= strtoll(cur, NULL, 10));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(helpers),
        cmocka_unit_test_setup_teardown(create_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(create_rejects_bad_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(bytes_append_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(offsets_increase, setup, teardown),
        cmocka_unit_test_setup_teardown(json_mode, setup, teardown),
        cmocka_unit_test(json_quick_path_matches_jansson),
        cmocka_unit_test_setup_teardown(stream_seq_rejects_regressions, setup, teardown),
        cmocka_unit_test_setup_teardown(idempotent_producers, setup, teardown),
        cmocka_unit_test_setup_teardown(closure, setup, teardown),
        cmocka_unit_test_setup_teardown(etags, setup, teardown),
        cmocka_unit_test_setup_teardown(expiry_and_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(retention_410, setup, teardown),
        cmocka_unit_test_setup_teardown(forks, setup, teardown),
        cmocka_unit_test_setup_teardown(byte_fork_sub_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(fork_sub_offset_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(json_message_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(session_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(session_poll_catches_silent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_appends, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
