/*
 * hook_json.h - defensive field access for the webhook parsers.
 *
 * Tracker payloads are untrusted: any field may be missing, null or of the
 * wrong type. These helpers walk a path of object keys and return NULL (or 0)
 * instead of failing when the shape is not what was expected, so a parser
 * reads like a description of the payload and never dereferences a surprise.
 * Internal to webhook/.
 */
#ifndef FARM_WEBHOOK_HOOK_JSON_H
#define FARM_WEBHOOK_HOOK_JSON_H

#include <jansson.h>
#include <stdint.h>

/* Follow object keys (NULL-terminated) from v; NULL when any step is not an
 * object or lacks the key. Keys may contain dots ("System.Title"). */
json_t *hook_json_path(json_t *v, ...) __attribute__((sentinel));

/* The string value of v, or NULL when v is not a string. */
const char *hook_json_str(json_t *v);

/* v as an integer: an integer, an integral real, or a string of digits;
 * 0 otherwise. */
int64_t hook_json_int(json_t *v);

/* 1 when v is true, 0 otherwise. */
int hook_json_true(json_t *v);

/* Copy the string value of v into *dst (a heap copy the event owns). Leaves
 * *dst alone when v is not a string. Returns 0 or FARM_ENOMEM. */
int hook_json_dup(char **dst, json_t *v);

/* Copy a C string (may be NULL) into *dst. Returns 0 or FARM_ENOMEM. */
int hook_str_dup(char **dst, const char *s);

/* Parse body as JSON; NULL with the error slot set when it does not parse or
 * is not an object. The caller json_decref()s the result. */
json_t *hook_json_load(const char *body, size_t len);

#endif
