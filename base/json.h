/*
 * json.h - small helpers over jansson for parsers and the API.
 *
 * Typed getters walk a dotted path ("issue.user.login", "commits.0.id") and
 * tell a missing value (FARM_ENOTFOUND) from one of the wrong type
 * (FARM_EINVALID), each with a message in the error slot that names the path.
 * json_parse_bounded() is the one way untrusted text becomes a json_t: it
 * refuses documents that are too large or too deeply nested.
 *
 * Paths: segments are separated by '.'; a segment of digits indexes an array
 * when the value there is an array (on an object it is an ordinary key); a
 * key that contains a dot is written with a backslash before it
 * ("resource.fields.System\\.Title" in C source). The empty path names obj
 * itself. JSON null counts as missing: tracker payloads use null for an
 * absent optional field ("assignee": null).
 */
#ifndef FARM_BASE_JSON_H
#define FARM_BASE_JSON_H

#include <jansson.h>

#include <stddef.h>
#include <stdint.h>

/* The value at path, borrowed from obj (no new reference). FARM_ENOTFOUND
 * when a step is missing or null; FARM_EINVALID when a step is not an object
 * or array that can be walked into, or the path is malformed. *out is NULL
 * on failure. */
int json_get(json_t **out, json_t *obj, const char *path);

/* Typed getters: 0 and *out set; FARM_ENOTFOUND (missing or null) or
 * FARM_EINVALID (present with another type) and *out left as it was.
 * Strings and containers are borrowed from obj: valid while obj lives. */
int json_get_str(const char **out, json_t *obj, const char *path);
int json_get_int64(int64_t *out, json_t *obj, const char *path); /* integers only, not reals */
int json_get_bool(int *out, json_t *obj, const char *path);      /* 1 or 0 */
int json_get_object(json_t **out, json_t *obj, const char *path);
int json_get_array(json_t **out, json_t *obj, const char *path);

/* A heap copy of the string at path (the caller frees it), or NULL when it is
 * absent, null or not a string (or on ENOMEM). Never touches the error slot. */
char *json_strdup_path(json_t *obj, const char *path);

/* 0 when no object or array in v is nested deeper than max_depth (a scalar
 * is depth 0, "[]" and "{}" are 1, "[[1]]" is 2); FARM_EINVALID otherwise. */
int json_check_depth(json_t *v, int max_depth);

/* Parse len bytes of data as one JSON object or array. Refuses len > max_len
 * (FARM_ETOOBIG, before parsing), text that does not parse, has trailing
 * garbage or a \u0000 in a string, and nesting deeper than max_depth
 * (FARM_EINVALID; max_depth <= 0 leaves only jansson's own limit of 2048).
 * Duplicate keys are accepted, the last one winning. On success *out is a new
 * reference the caller json_decref()s; NULL on failure. */
int json_parse_bounded(json_t **out, const char *data, size_t len, size_t max_len, int max_depth);

#endif
