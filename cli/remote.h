/*
 * remote.h - what the CLI commands that read a running farm share: the
 * --server / --config options, the FARM_TOKEN bearer token, and a GET that
 * turns every failure into a message saying what to do next.
 */
#ifndef FARM_CLI_REMOTE_H
#define FARM_CLI_REMOTE_H

#include "base/buf.h"

#include <jansson.h>

typedef struct remote {
    char server[512];      /* "http://127.0.0.1:8080", no trailing slash */
    const char *not_found; /* said instead of the server's answer to a 404 (the server's
                              hints name HTTP routes, a person wants the command), or NULL */
} remote;

/* Work out the server URL: --server when given, else the listen address of
 * --config FILE (or of the defaults); not_found is NULL. Returns 0, or
 * prints the problem and returns the exit status (1). */
int remote_init(remote *r, const char *server_opt, const char *config_path);

/* Append "name=value" (percent-encoded) to a query string being built. */
int remote_query_add(buf *q, const char *name, const char *value);

/* GET path (with its query) from the farm, with FARM_TOKEN as a bearer
 * token. On success *out is the parsed JSON body (json_decref by the
 * caller). On failure prints "farm: ..." with a hint and returns 1. */
int remote_get_json(json_t **out, const remote *r, const char *path);

/* remote_get_json() with another method and a JSON body (NULL for none),
 * e.g. PUT /api/scaling; any 2xx answer with a JSON body is success. */
int remote_send_json(json_t **out, const remote *r, const char *method, const char *path,
                     const char *body);

/* Live settings at path (/api/scaling, /api/budgets): read (GET) when
 * change is empty, else change is sent with method (PUT or PATCH) and the
 * settings in force come back. change stays the caller's. Returns 0 or 1 as
 * remote_get_json(). */
int remote_settings(json_t **out, const remote *r, const char *path, const char *method,
                    const json_t *change);

/* Print an answer: indented JSON with as_json, else through print(body).
 * Then release body. Returns 0. */
int remote_print(json_t *body, int as_json, void (*print)(json_t *body));

/* The string member `key` of o, or "-" when it is absent or not a string
 * (for tables). Valid as long as o is. */
const char *remote_str(json_t *o, const char *key);

/* A table cell: s (or "" when NULL) into out, control characters as spaces,
 * cut to fit n bytes without splitting a UTF-8 character. */
void remote_cell(char *out, size_t n, const char *s);

/* An RFC 3339 time ("2026-11-21T19:47:46.035Z") as "2026-11-21 19:47:46" for
 * tables, into out (at least 20 bytes); "-" when absent. */
void remote_time_short(char *out, size_t n, const char *rfc3339);

#endif
