/*
 * config_check.c - typed getters for the config that name the key of every
 * problem and keep going, and the resolution of "env:" and "file:" secrets
 * (see config_check.h).
 */
#include "config_check.h"

#include "base/error.h"
#include "base/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_FILE_MAX (64 * 1024)

void cc_error(cc *c, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->nerrors++;
    /* past the cap the count still grows; config.c reports how many more */
    if (buf_printf(&c->errors, "%s: %s\n", path && *path ? path : "(top level)", msg) ==
        FARM_ENOMEM)
        c->oom = 1;
}

void cc_join(char *out, const char *path, const char *key)
{
    if (path && *path)
        snprintf(out, CONFIG_PATH_MAX, "%s.%s", path, key);
    else
        snprintf(out, CONFIG_PATH_MAX, "%s", key);
}

void cc_unknown_keys(cc *c, json_t *obj, const char *path, const char *const *known)
{
    const char *key;
    json_t *v;
    char p[CONFIG_PATH_MAX];

    json_object_foreach(obj, key, v)
    {
        int found = 0;
        for (const char *const *k = known; *k && !found; k++)
            found = !strcmp(*k, key);
        if (!found) {
            cc_join(p, path, key);
            cc_error(c, p, "unknown key");
        }
    }
}

static char *dup_or_oom(cc *c, const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        c->oom = 1;
    return d;
}

/* The value at key, or NULL when absent or null; reports a missing required
 * key. */
static json_t *value(cc *c, json_t *obj, const char *path, const char *key, int required)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v && json_is_null(v))
        v = NULL;
    if (!v && required) {
        char p[CONFIG_PATH_MAX];
        cc_join(p, path, key);
        cc_error(c, p, "required key is missing");
    }
    return v;
}

void cc_string(cc *c, json_t *obj, const char *path, const char *key, char **out, const char *def,
               int required)
{
    char p[CONFIG_PATH_MAX];
    json_t *v = value(c, obj, path, key, required);

    *out = NULL;
    cc_join(p, path, key);
    if (v && !json_is_string(v)) {
        cc_error(c, p, "expected a string");
    } else if (v && json_string_length(v) == 0) {
        cc_error(c, p, "must not be empty (leave the key out for the default)");
    } else if (v && strlen(json_string_value(v)) != json_string_length(v)) {
        cc_error(c, p, "must not contain NUL characters");
    } else if (v) {
        *out = dup_or_oom(c, json_string_value(v));
        return;
    }
    *out = dup_or_oom(c, def);
}

void cc_int(cc *c, json_t *obj, const char *path, const char *key, long long *out, long long def,
            long long min, long long max)
{
    char p[CONFIG_PATH_MAX];
    json_t *v = value(c, obj, path, key, 0);

    *out = def;
    if (!v)
        return;
    cc_join(p, path, key);
    if (!json_is_integer(v)) {
        cc_error(c, p, "expected an integer");
        return;
    }
    long long n = json_integer_value(v);
    if (n < min || n > max) {
        cc_error(c, p, "must be between %lld and %lld (got %lld)", min, max, n);
        return;
    }
    *out = n;
}

void cc_bool(cc *c, json_t *obj, const char *path, const char *key, int *out, int def)
{
    char p[CONFIG_PATH_MAX];
    json_t *v = value(c, obj, path, key, 0);

    *out = def;
    if (!v)
        return;
    if (!json_is_boolean(v)) {
        cc_join(p, path, key);
        cc_error(c, p, "expected true or false");
        return;
    }
    *out = json_is_true(v);
}

void cc_choice(cc *c, json_t *obj, const char *path, const char *key, char **out, const char *def,
               const char *const *choices)
{
    char p[CONFIG_PATH_MAX];

    cc_string(c, obj, path, key, out, def, 0);
    if (!*out)
        return;
    for (const char *const *ch = choices; *ch; ch++)
        if (!strcmp(*ch, *out))
            return;

    char list[256] = "";
    size_t len = 0;
    for (const char *const *ch = choices; *ch; ch++)
        len += (size_t)snprintf(list + len, len < sizeof(list) ? sizeof(list) - len : 0, "%s%s",
                                ch == choices ? "" : ", ", *ch);
    cc_join(p, path, key);
    cc_error(c, p, "must be one of %s (got \"%s\")", list, *out);
    free(*out);
    *out = dup_or_oom(c, def);
}

void cc_strings(cc *c, json_t *obj, const char *path, const char *key, char ***out, size_t *n)
{
    char p[CONFIG_PATH_MAX], ip[CONFIG_PATH_MAX + 32];
    json_t *v = value(c, obj, path, key, 0), *item;
    size_t i, count = 0;
    char **arr;

    *out = NULL;
    *n = 0;
    if (!v)
        return;
    cc_join(p, path, key);
    if (!json_is_array(v)) {
        cc_error(c, p, "expected an array of strings");
        return;
    }
    if (!(arr = calloc(json_array_size(v) + 1, sizeof(*arr)))) {
        c->oom = 1;
        return;
    }
    json_array_foreach(v, i, item)
    {
        snprintf(ip, sizeof(ip), "%s[%zu]", p, i);
        if (!json_is_string(item)) {
            cc_error(c, ip, "expected a string");
        } else if (json_string_length(item) == 0 ||
                   strlen(json_string_value(item)) != json_string_length(item)) {
            cc_error(c, ip, "must be a non-empty string");
        } else if (!(arr[count] = strdup(json_string_value(item)))) {
            c->oom = 1;
        } else {
            count++;
        }
    }
    *out = arr;
    *n = count;
}

json_t *cc_object(cc *c, json_t *obj, const char *path, const char *key)
{
    char p[CONFIG_PATH_MAX];
    json_t *v = value(c, obj, path, key, 0);

    if (v && !json_is_object(v)) {
        cc_join(p, path, key);
        cc_error(c, p, "expected an object");
        return NULL;
    }
    return v;
}

static int env_name_ok(const char *s)
{
    if (!*s || isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

/* Read a secret file: at most SECRET_FILE_MAX bytes, trailing newlines
 * stripped. Returns a heap string or NULL with the problem in why. */
static char *read_secret_file(const char *path, char *why, size_t whylen)
{
    char *data = NULL;
    size_t len = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, whylen, "cannot read file %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file", path);
        goto out;
    }
    if (!(data = malloc(SECRET_FILE_MAX + 1))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, data + len, SECRET_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "cannot read file %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > SECRET_FILE_MAX) {
            snprintf(why, whylen, "file %s is larger than %d bytes", path, SECRET_FILE_MAX);
            goto fail;
        }
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    data[len] = '\0';
    if (len == 0) {
        snprintf(why, whylen, "file %s is empty", path);
        goto fail;
    }
    if (strlen(data) != len) {
        snprintf(why, whylen, "file %s contains NUL bytes", path);
        goto fail;
    }
    goto out;
fail:
    free(data);
    data = NULL;
out:
    close(fd);
    return data;
}

void cc_secret(cc *c, json_t *obj, const char *path, const char *key, char **out, int required)
{
    char p[CONFIG_PATH_MAX], why[512];
    char *ref = NULL;

    *out = NULL;
    cc_join(p, path, key);
    cc_string(c, obj, path, key, &ref, NULL, required);
    if (!ref)
        return;
    if (!strncmp(ref, "env:", 4)) {
        const char *name = ref + 4;
        const char *val = env_name_ok(name) ? getenv(name) : NULL;
        if (!env_name_ok(name))
            cc_error(c, p, "\"env:%s\" is not a valid environment variable name", name);
        else if (!val)
            cc_error(c, p, "environment variable %s is not set", name);
        else if (!*val)
            cc_error(c, p, "environment variable %s is empty", name);
        else if (!(*out = strdup(val)))
            c->oom = 1;
    } else if (!strncmp(ref, "file:", 5)) {
        if (!ref[5])
            cc_error(c, p, "\"file:\" needs a path");
        else if (!(*out = read_secret_file(ref + 5, why, sizeof(why))))
            cc_error(c, p, "%s", why);
    } else {
        /* never echo the value: it may be the secret itself */
        cc_error(c, p,
                 "secrets must not be written in the config file; put it in an environment "
                 "variable or a file and write \"env:NAME\" or \"file:PATH\" instead");
    }
    if (*out)
        log_secret_add(*out);
    free(ref);
}
