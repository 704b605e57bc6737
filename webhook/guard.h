/*
 * guard.h - what a request must pass at its headers, before any route sees
 * it: a well-formed target, a Host this farm answers to, the farm's own
 * origin on a write, one framing of the body, and JSON on an API write.
 *
 * These are pure functions on strings: no libmicrohttpd, no I/O, no clock,
 * so they are unit-tested and fuzzed on their own (tests/fuzz/
 * fuzz_request.c). server.c calls them in order on every request and
 * answers the status they give: 414, 400, 421, 403 or 415.
 *
 * The names the farm answers to (guard_hosts) come from the config: the
 * listen address, public_url's host, http.allowed_hosts, and the loopback
 * names (localhost, 127.0.0.1, ::1) when the farm listens on loopback or on
 * every address; plus the local address a connection arrived on, which the
 * caller passes per request. The Host check compares names only (a name an
 * attacker's DNS points at us is the DNS-rebinding case it refuses); the
 * Origin check compares the port too, since another port on the same host
 * is another origin.
 */
#ifndef FARM_WEBHOOK_GUARD_H
#define FARM_WEBHOOK_GUARD_H

#include "farm/config/config.h"

#include <stddef.h>

/* The longest request target (path and query, as received) the farm takes:
 * longer is 414. */
#define GUARD_TARGET_MAX 2048

/* The longest host name compared (a DNS name is at most 253 characters). */
#define GUARD_NAME_MAX 256

/* Check a request target as received, still %-encoded: it must be an
 * absolute path (optionally with a query) of at most GUARD_TARGET_MAX
 * bytes, without control characters, spaces or NUL (literal or %00), and
 * every '%' must start a valid escape. len is the target's length as
 * received (a literal NUL before it is an error). Returns 0, or the status
 * to answer (400 or 414) with *why a static message saying what is wrong. */
int guard_target_check(const char *target, size_t len, const char **why);

/* Parse a Host header value: "name", "name:port", "1.2.3.4:port" or
 * "[v6]:port". On success name (namelen bytes) holds the lower-cased name
 * without brackets or a trailing dot, IP literals in their canonical form,
 * and *port the port or -1 when none is given. Returns 0 or FARM_EINVALID. */
int guard_host_parse(char *name, size_t namelen, int *port, const char *host);

/* Parse an Origin header value, "http://host[:port]" or
 * "https://host[:port]", into the same form as guard_host_parse(), with
 * *port defaulted by the scheme (80 or 443). "null", a path, user info or
 * any other scheme is FARM_EINVALID. */
int guard_origin_parse(char *name, size_t namelen, int *port, const char *origin);

/* A request's Content-Length and Transfer-Encoding headers, as counted by
 * the caller: a body framed twice (two Content-Length headers, or one with
 * Transfer-Encoding) or a Content-Length that is not a decimal number is
 * 400 (request smuggling). Returns 0 or 400 with *why. */
int guard_framing_check(int content_lengths, const char *content_length, int transfer_encodings,
                        const char **why);

/* 1 when a Content-Type header is application/json (parameters such as
 * charset allowed), else 0 (NULL too). */
int guard_json_type(const char *content_type);

/* ---- the names the farm answers to ---------------------------------------- */

typedef struct guard_hosts guard_hosts;

/* Build the set from cfg's listen address, public_url and
 * http.allowed_hosts; bound_port is the port actually bound (listen may
 * say 0). On success *out is released with guard_hosts_free(). Returns 0,
 * FARM_EINVALID (a name that does not parse) or FARM_ENOMEM. */
int guard_hosts_init(guard_hosts **out, const config *cfg, int bound_port);

void guard_hosts_free(guard_hosts *h);

/* Is name (from guard_host_parse) one the farm answers to? local is the
 * local address the connection arrived on, canonical text, or NULL. */
int guard_host_allowed(const guard_hosts *h, const char *name, const char *local);

/* Is the origin (from guard_origin_parse) the farm's own? */
int guard_origin_allowed(const guard_hosts *h, const char *name, int port, const char *local);

#endif
