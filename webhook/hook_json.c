/*
 * hook_json.c - defensive field access for the webhook parsers (see
 * hook_json.h).
 */
#include "hook_json.h"
#include "base/error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

json_t *hook_json_path(json_t *v, ...)
{
    va_list ap;
    va_start(ap, v);
    for (const char *k = va_arg(ap, const char *); k && v; k = va_arg(ap, const char *))
        v = json_is_object(v) ? json_object_get(v, k) : NULL;
    va_end(ap);
    return v;
}

const char *hook_json_str(json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int64_t hook_json_int(json_t *v)
{
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.0e15)
            return (int64_t)d;
        return 0;
    }
    const char *s = hook_json_str(v);
    if (s && *s >= '0' && *s <= '9') {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (!*end && errno == 0)
            return n;
    }
    return 0;
}

int hook_json_true(json_t *v)
{
    return json_is_true(v);
}

int hook_str_dup(char **dst, const char *s)
{
    if (!s)
        return 0;
    char *copy = strdup(s);
    if (!copy) {
        farm_error_set("out of memory copying a webhook field");
        return FARM_ENOMEM;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

int hook_json_dup(char **dst, json_t *v)
{
    return hook_str_dup(dst, hook_json_str(v));
}

json_t *hook_json_load(const char *body, size_t len)
{
    json_error_t err;
    if (!body) {
        farm_error_set("empty body: expected a JSON object");
        return NULL;
    }
    json_t *root = json_loadb(body, len, 0, &err);
    if (!root) {
        farm_error_set("body is not valid JSON: %s at line %d column %d", err.text, err.line,
                       err.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        farm_error_set("body is JSON but not an object");
        return NULL;
    }
    return root;
}
