/*
 * config_check.h - the checking toolkit behind config.c and config_repo.c:
 * typed getters that report every problem by its key's path and carry on,
 * so one pass over the file lists all that is wrong. Internal to
 * farm/config/config*.c.
 */
#ifndef FARM_FARM_CONFIG_CONFIG_CHECK_H
#define FARM_FARM_CONFIG_CONFIG_CHECK_H

#include "base/buf.h"
#include "base/strv.h"

#include <jansson.h>
#include <stddef.h>

#define CONFIG_PATH_MAX 256

typedef struct cc {
    buf errors;  /* one "path: problem" line each */
    int nerrors; /* how many were reported (also past the buffer's cap) */
    int oom;
} cc;

/* Report a problem at path ("repos[2].trigger.label"). */
void cc_error(cc *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* path + "." + key (or just key at the root) into out. */
void cc_join(char *out, const char *path, const char *key);

/* Report every key of obj not in known (NULL-terminated). */
void cc_unknown_keys(cc *c, json_t *obj, const char *path, const char *const *known);

/* The getters: absent keys and JSON null take the default; wrong types and
 * out-of-range values are reported and also leave the default. Strings are
 * heap copies (NULL default stays NULL). */
void cc_string(cc *c, json_t *obj, const char *path, const char *key, char **out, const char *def,
               int required);
void cc_int(cc *c, json_t *obj, const char *path, const char *key, long long *out, long long def,
            long long min, long long max);
void cc_bool(cc *c, json_t *obj, const char *path, const char *key, int *out, int def);
/* One of the NULL-terminated choices. */
void cc_choice(cc *c, json_t *obj, const char *path, const char *key, char **out, const char *def,
               const char *const *choices);
/* An array of non-empty strings: *out NULL-terminated (NULL when absent). */
void cc_strings(cc *c, json_t *obj, const char *path, const char *key, char ***out, size_t *n);
/* An object, or NULL when absent (reported when of another type). */
json_t *cc_object(cc *c, json_t *obj, const char *path, const char *key);

/* A secret: "env:NAME" or "file:PATH", resolved and registered with the
 * logger's redaction list; a literal value is refused. */
void cc_secret(cc *c, json_t *obj, const char *path, const char *key, char **out, int required);

#endif
