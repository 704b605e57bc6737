/*
 * json.c - dotted-path getters, a depth check and the bounded loader (see
 * json.h).
 *
 * The path walk allocates nothing unless a key contains an escaped dot, so
 * the getters are cheap enough to use field by field in payload parsers.
 */
#include "json.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Length of the segment at p (up to an unescaped '.' or the end), and whether
 * it holds an escape. */
static size_t segment_len(const char *p, int *escaped)
{
    size_t i = 0;
    *escaped = 0;
    while (p[i] && p[i] != '.') {
        if (p[i] == '\\' && p[i + 1]) {
            *escaped = 1;
            i++;
        }
        i++;
    }
    return i;
}

static int all_digits(const char *p, size_t n)
{
    if (n == 0 || n > 9)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

int json_get(json_t **out, json_t *obj, const char *path)
{
    *out = NULL;
    if (!obj || !path) {
        farm_error_set("json: no document or no path");
        return FARM_EINVALID;
    }
    json_t *cur = obj;
    const char *p = path;
    if (*p) {
        for (;;) {
            int escaped;
            size_t n = segment_len(p, &escaped);
            size_t upto = (size_t)(p - path) + n; /* the path so far, for messages */
            if (n == 0) {
                farm_error_set("json: empty segment in path '%s'", path);
                return FARM_EINVALID;
            }
            json_t *next;
            if (json_is_array(cur) && all_digits(p, n)) {
                next = json_array_get(cur, (size_t)strtoul(p, NULL, 10));
            } else if (json_is_object(cur)) {
                if (escaped) {
                    char *key = malloc(n + 1);
                    if (!key) {
                        farm_error_set("json: out of memory");
                        return FARM_ENOMEM;
                    }
                    size_t k = 0;
                    for (size_t i = 0; i < n; i++) {
                        if (p[i] == '\\' && i + 1 < n)
                            i++;
                        key[k++] = p[i];
                    }
                    next = json_object_getn(cur, key, k);
                    free(key);
                } else {
                    next = json_object_getn(cur, p, n);
                }
            } else {
                if (p == path)
                    farm_error_set("json: the document is %s, cannot look up '%.*s' in it",
                                   type_name(cur), (int)n, p);
                else
                    farm_error_set("json: %.*s is %s, cannot look up '%.*s' in it",
                                   (int)(p - path - 1), path, type_name(cur), (int)n, p);
                return FARM_EINVALID;
            }
            if (!next || json_is_null(next)) {
                farm_error_set("json: %.*s is %s", (int)upto, path, next ? "null" : "missing");
                return FARM_ENOTFOUND;
            }
            cur = next;
            p += n;
            if (!*p)
                break;
            p++; /* the dot */
            if (!*p) {
                farm_error_set("json: path '%s' ends with a dot", path);
                return FARM_EINVALID;
            }
        }
    }
    if (json_is_null(cur)) {
        farm_error_set("json: the document is null");
        return FARM_ENOTFOUND;
    }
    *out = cur;
    return 0;
}

/* Get the value at path and check its type. */
static int get_typed(json_t **v, json_t *obj, const char *path, int (*is)(const json_t *),
                     const char *want)
{
    int rc = json_get(v, obj, path);
    if (rc)
        return rc;
    if (!is(*v)) {
        farm_error_set("json: %s is %s, not %s", *path ? path : "the document", type_name(*v),
                       want);
        *v = NULL;
        return FARM_EINVALID;
    }
    return 0;
}

static int is_string(const json_t *v)
{
    return json_is_string(v);
}
static int is_integer(const json_t *v)
{
    return json_is_integer(v);
}
static int is_boolean(const json_t *v)
{
    return json_is_boolean(v);
}
static int is_object(const json_t *v)
{
    return json_is_object(v);
}
static int is_array(const json_t *v)
{
    return json_is_array(v);
}

int json_get_str(const char **out, json_t *obj, const char *path)
{
    json_t *v;
    int rc = get_typed(&v, obj, path, is_string, "a string");
    if (rc == 0)
        *out = json_string_value(v);
    return rc;
}

int json_get_int64(int64_t *out, json_t *obj, const char *path)
{
    json_t *v;
    int rc = get_typed(&v, obj, path, is_integer, "an integer");
    if (rc == 0)
        *out = (int64_t)json_integer_value(v);
    return rc;
}

int json_get_bool(int *out, json_t *obj, const char *path)
{
    json_t *v;
    int rc = get_typed(&v, obj, path, is_boolean, "a boolean");
    if (rc == 0)
        *out = json_is_true(v);
    return rc;
}

int json_get_object(json_t **out, json_t *obj, const char *path)
{
    json_t *v;
    int rc = get_typed(&v, obj, path, is_object, "an object");
    if (rc == 0)
        *out = v;
    return rc;
}

int json_get_array(json_t **out, json_t *obj, const char *path)
{
    json_t *v;
    int rc = get_typed(&v, obj, path, is_array, "an array");
    if (rc == 0)
        *out = v;
    return rc;
}

char *json_strdup_path(json_t *obj, const char *path)
{
    if (!obj || !path)
        return NULL;
    /* Keep the caller's error slot as it was: absence is not an error here. */
    char saved[1024];
    snprintf(saved, sizeof(saved), "%s", farm_error_last());
    const char *s = NULL;
    char *copy = NULL;
    if (json_get_str(&s, obj, path) == 0)
        copy = strdup(s);
    farm_error_set("%s", saved);
    return copy;
}

/* Depth of v, but stops counting once past limit (so a hostile document costs
 * at most limit levels of recursion). */
static int depth_of(json_t *v, int limit)
{
    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    if (limit <= 0)
        return 1;
    int deepest = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            int d = depth_of(e, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest >= limit)
                break;
        }
    } else {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            int d = depth_of(e, limit - 1);
            if (d > deepest)
                deepest = d;
            if (deepest >= limit)
                break;
        }
    }
    return deepest + 1;
}

int json_check_depth(json_t *v, int max_depth)
{
    if (!v) {
        farm_error_set("json: no document");
        return FARM_EINVALID;
    }
    if (max_depth < 0)
        max_depth = 0;
    if (depth_of(v, max_depth) > max_depth) {
        farm_error_set("json: nested deeper than %d levels", max_depth);
        return FARM_EINVALID;
    }
    return 0;
}

int json_parse_bounded(json_t **out, const char *data, size_t len, size_t max_len, int max_depth)
{
    *out = NULL;
    if (!data) {
        farm_error_set("json: no data");
        return FARM_EINVALID;
    }
    if (len > max_len) {
        farm_error_set("json: document of %zu bytes over the cap of %zu", len, max_len);
        return FARM_ETOOBIG;
    }
    json_error_t err;
    json_t *v = json_loadb(data, len, 0, &err);
    if (!v) {
        farm_error_set("json: %s at line %d, column %d", err.text, err.line, err.column);
        return FARM_EINVALID;
    }
    if (max_depth > 0 && json_check_depth(v, max_depth)) {
        json_decref(v);
        return FARM_EINVALID;
    }
    *out = v;
    return 0;
}
