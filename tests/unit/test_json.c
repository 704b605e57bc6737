/*
 * test_json.c - dotted-path getters, the depth check and the bounded loader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char doc_text[] =
    "{\"action\":\"opened\",\"number\":42,\"big\":9007199254740993,\"ratio\":0.5,"
    "\"draft\":false,\"locked\":true,\"assignee\":null,"
    "\"issue\":{\"title\":\"Crash on start\",\"user\":{\"login\":\"octocat\",\"id\":1},"
    "\"labels\":[{\"name\":\"bug\"},{\"name\":\"farm\"}],\"body\":null},"
    "\"resource\":{\"fields\":{\"System.Title\":\"Azure title\",\"System.Id\":7}},"
    "\"7\":\"digit key\",\"list\":[10,[20,21],\"x\"]}";

static json_t *doc(void)
{
    json_t *d = json_loads(doc_text, 0, NULL);
    assert_non_null(d);
    return d;
}

static void get_str_by_path(void **state)
{
    json_t *d = doc();
    const char *s = NULL;
    assert_int_equal(json_get_str(&s, d, "action"), 0);
    assert_string_equal(s, "opened");
    assert_int_equal(json_get_str(&s, d, "issue.user.login"), 0);
    assert_string_equal(s, "octocat");
    /* array indices */
    assert_int_equal(json_get_str(&s, d, "issue.labels.1.name"), 0);
    assert_string_equal(s, "farm");
    assert_int_equal(json_get_str(&s, d, "list.2"), 0);
    assert_string_equal(s, "x");
    /* a digit key on an object is an ordinary key */
    assert_int_equal(json_get_str(&s, d, "7"), 0);
    assert_string_equal(s, "digit key");
    /* a key with a dot in it */
    assert_int_equal(json_get_str(&s, d, "resource.fields.System\\.Title"), 0);
    assert_string_equal(s, "Azure title");

    /* missing vs wrong type, each naming the path */
    s = "untouched";
    assert_int_equal(json_get_str(&s, d, "issue.user.name"), FARM_ENOTFOUND);
    assert_string_equal(s, "untouched");
    assert_non_null(strstr(farm_error_last(), "issue.user.name"));
    assert_non_null(strstr(farm_error_last(), "missing"));
    assert_int_equal(json_get_str(&s, d, "number"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "number is an integer, not a string"));
    assert_int_equal(json_get_str(&s, d, "issue.user"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "issue.user is an object"));
    assert_string_equal(s, "untouched");
    /* null is missing */
    assert_int_equal(json_get_str(&s, d, "issue.body"), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "issue.body is null"));
    assert_int_equal(json_get_str(&s, d, "assignee.login"), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "assignee is null"));
    /* walking into a scalar or indexing past the end */
    assert_int_equal(json_get_str(&s, d, "action.x"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "action is a string"));
    assert_int_equal(json_get_str(&s, d, "issue.labels.name"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "issue.labels is an array"));
    assert_int_equal(json_get_str(&s, d, "issue.labels.5.name"), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "issue.labels.5 is missing"));
    /* malformed paths */
    assert_int_equal(json_get_str(&s, d, "issue..title"), FARM_EINVALID);
    assert_int_equal(json_get_str(&s, d, "issue."), FARM_EINVALID);
    assert_int_equal(json_get_str(&s, d, ".issue"), FARM_EINVALID);
    assert_int_equal(json_get_str(&s, d, NULL), FARM_EINVALID);
    assert_int_equal(json_get_str(&s, NULL, "a"), FARM_EINVALID);
    assert_string_equal(s, "untouched");
    json_decref(d);
}

static void get_other_types(void **state)
{
    json_t *d = doc();
    int64_t n = -1;
    assert_int_equal(json_get_int64(&n, d, "number"), 0);
    assert_int_equal(n, 42);
    assert_int_equal(json_get_int64(&n, d, "big"), 0);
    assert_true(n == 9007199254740993LL); /* beyond a double's exact range */
    assert_int_equal(json_get_int64(&n, d, "list.1.0"), 0);
    assert_int_equal(n, 20);
    assert_int_equal(json_get_int64(&n, d, "resource.fields.System\\.Id"), 0);
    assert_int_equal(n, 7);
    n = -1;
    assert_int_equal(json_get_int64(&n, d, "ratio"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "ratio is a real number, not an integer"));
    assert_int_equal(json_get_int64(&n, d, "action"), FARM_EINVALID);
    assert_int_equal(json_get_int64(&n, d, "nope"), FARM_ENOTFOUND);
    assert_int_equal(n, -1);

    int b = -1;
    assert_int_equal(json_get_bool(&b, d, "draft"), 0);
    assert_int_equal(b, 0);
    assert_int_equal(json_get_bool(&b, d, "locked"), 0);
    assert_int_equal(b, 1);
    b = -1;
    assert_int_equal(json_get_bool(&b, d, "number"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "number is an integer, not a boolean"));
    assert_int_equal(json_get_bool(&b, d, "assignee"), FARM_ENOTFOUND);
    assert_int_equal(b, -1);

    json_t *o = NULL;
    assert_int_equal(json_get_object(&o, d, "issue.user"), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
    assert_int_equal(json_get_object(&o, d, ""), 0); /* the document itself */
    assert_ptr_equal(o, d);
    o = NULL;
    assert_int_equal(json_get_object(&o, d, "issue.labels"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "issue.labels is an array, not an object"));
    assert_int_equal(json_get_object(&o, d, "issue.milestone"), FARM_ENOTFOUND);
    assert_null(o);

    json_t *a = NULL;
    assert_int_equal(json_get_array(&a, d, "issue.labels"), 0);
    assert_int_equal(json_array_size(a), 2);
    assert_int_equal(json_get_array(&a, d, "list.1"), 0);
    assert_int_equal(json_array_size(a), 2);
    a = NULL;
    assert_int_equal(json_get_array(&a, d, "issue"), FARM_EINVALID);
    assert_int_equal(json_get_array(&a, d, "assignee"), FARM_ENOTFOUND);
    assert_null(a);

    /* the generic getter */
    json_t *v = NULL;
    assert_int_equal(json_get(&v, d, "issue.labels.0"), 0);
    assert_true(json_is_object(v));
    assert_int_equal(json_get(&v, d, "nope"), FARM_ENOTFOUND);
    assert_null(v);

    /* a top-level array */
    json_t *arr = json_loads("[{\"id\":5}]", 0, NULL);
    assert_int_equal(json_get_int64(&n, arr, "0.id"), 0);
    assert_int_equal(n, 5);
    assert_int_equal(json_get_int64(&n, arr, "id"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "the document is an array"));
    json_decref(arr);
    json_decref(d);
}

static void strdup_path(void **state)
{
    json_t *d = doc();
    farm_error_set("earlier error");
    char *s = json_strdup_path(d, "issue.title");
    assert_non_null(s);
    assert_string_equal(s, "Crash on start");
    free(s);
    assert_null(json_strdup_path(d, "issue.body"));    /* null */
    assert_null(json_strdup_path(d, "issue.nothing")); /* missing */
    assert_null(json_strdup_path(d, "number"));        /* not a string */
    assert_null(json_strdup_path(d, NULL));
    assert_null(json_strdup_path(NULL, "a"));
    /* absence is not an error: the slot is left alone */
    assert_string_equal(farm_error_last(), "earlier error");
    json_decref(d);
}

/* "[[[...]]]" nested n deep (n >= 1). */
static char *nested_arrays(int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    memset(s, '[', (size_t)n);
    memset(s + n, ']', (size_t)n);
    s[2 * n] = '\0';
    return s;
}

static void depth_check(void **state)
{
    json_t *v = json_loads("{\"a\":{\"b\":[1,{\"c\":2}]},\"d\":3}", 0, NULL);
    assert_int_equal(json_check_depth(v, 4), 0);
    assert_int_equal(json_check_depth(v, 3), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "deeper than 3"));
    assert_int_equal(json_check_depth(v, 0), FARM_EINVALID);
    json_decref(v);

    v = json_loads("[]", 0, NULL);
    assert_int_equal(json_check_depth(v, 1), 0);
    assert_int_equal(json_check_depth(v, 0), FARM_EINVALID);
    json_decref(v);
    v = json_integer(5);
    assert_int_equal(json_check_depth(v, 0), 0);
    json_decref(v);
    assert_int_equal(json_check_depth(NULL, 5), FARM_EINVALID);

    /* the deep branch is found wherever it is */
    v = json_loads("[1,2,{\"x\":[[[0]]]},3]", 0, NULL);
    assert_int_equal(json_check_depth(v, 5), 0);
    assert_int_equal(json_check_depth(v, 4), FARM_EINVALID);
    json_decref(v);

    char *s = nested_arrays(1000);
    v = json_loads(s, 0, NULL);
    assert_non_null(v);
    assert_int_equal(json_check_depth(v, 1000), 0);
    assert_int_equal(json_check_depth(v, 999), FARM_EINVALID);
    assert_int_equal(json_check_depth(v, 64), FARM_EINVALID);
    json_decref(v);
    free(s);
}

static void parse_bounded(void **state)
{
    json_t *v = (json_t *)1;
    const char *ok = "{\"a\":[1,2,{\"b\":null}]}";
    assert_int_equal(json_parse_bounded(&v, ok, strlen(ok), 1024, 8), 0);
    assert_non_null(v);
    json_t *b;
    assert_int_equal(json_get(&b, v, "a.2"), 0);
    json_decref(v);

    /* len counts, not the NUL: a prefix of a longer buffer */
    const char *two = "[1][2]";
    assert_int_equal(json_parse_bounded(&v, two, 3, 1024, 8), 0);
    assert_int_equal(json_array_size(v), 1);
    json_decref(v);

    /* too big, checked before parsing (even garbage) */
    assert_int_equal(json_parse_bounded(&v, ok, strlen(ok), strlen(ok) - 1, 8), FARM_ETOOBIG);
    assert_null(v);
    assert_non_null(strstr(farm_error_last(), "cap"));
    assert_int_equal(json_parse_bounded(&v, "garbage", 7, 3, 8), FARM_ETOOBIG);
    assert_int_equal(json_parse_bounded(&v, ok, strlen(ok), strlen(ok), 8), 0);
    json_decref(v);

    /* too deep */
    assert_int_equal(json_parse_bounded(&v, ok, strlen(ok), 1024, 2), FARM_EINVALID);
    assert_null(v);
    assert_non_null(strstr(farm_error_last(), "deeper than 2"));
    assert_int_equal(json_parse_bounded(&v, ok, strlen(ok), 1024, 3), 0);
    json_decref(v);
    char *deep = nested_arrays(100);
    assert_int_equal(json_parse_bounded(&v, deep, strlen(deep), 1 << 20, 64), FARM_EINVALID);
    assert_int_equal(json_parse_bounded(&v, deep, strlen(deep), 1 << 20, 100), 0);
    json_decref(v);
    assert_int_equal(json_parse_bounded(&v, deep, strlen(deep), 1 << 20, 0), 0); /* no own limit */
    json_decref(v);
    free(deep);
    /* deeper than jansson's own limit is refused whatever max_depth says */
    deep = nested_arrays(5000);
    assert_int_equal(json_parse_bounded(&v, deep, strlen(deep), 1 << 20, 10000), FARM_EINVALID);
    assert_null(v);
    free(deep);

    /* malformed, with a position */
    const char *bad = "{\"a\":1,}";
    assert_int_equal(json_parse_bounded(&v, bad, strlen(bad), 1024, 8), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "line 1"));
    assert_int_equal(json_parse_bounded(&v, "{} x", 4, 1024, 8), FARM_EINVALID); /* trailing */
    assert_int_equal(json_parse_bounded(&v, "", 0, 1024, 8), FARM_EINVALID);
    assert_int_equal(json_parse_bounded(&v, "42", 2, 1024, 8), FARM_EINVALID); /* not a container */
    assert_int_equal(json_parse_bounded(&v, "[\"a\\u0000b\"]", 12, 1024, 8), FARM_EINVALID);
    assert_int_equal(json_parse_bounded(&v, "[1]\0[2]", 7, 1024, 8), FARM_EINVALID);
    assert_int_equal(json_parse_bounded(&v, NULL, 0, 1024, 8), FARM_EINVALID);
    assert_null(v);

    /* duplicate keys are accepted, the last one wins */
    const char *dup = "{\"a\":1,\"a\":2}";
    assert_int_equal(json_parse_bounded(&v, dup, strlen(dup), 1024, 8), 0);
    int64_t n;
    assert_int_equal(json_get_int64(&n, v, "a"), 0);
    assert_int_equal(n, 2);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_str_by_path), cmocka_unit_test(get_other_types),
        cmocka_unit_test(strdup_path),     cmocka_unit_test(depth_check),
        cmocka_unit_test(parse_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
