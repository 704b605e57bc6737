/*
 * routes.h - how the HTTP front dispatches a request, and the routes it has.
 *
 * server.c owns libmicrohttpd. When a request's headers are in, before a
 * byte of its body is read, it checks the request (guard.h: target, Host,
 * framing, the origin of a write, JSON on an API write), matches it to a
 * route in its table (method and path pattern), checks the caller's bearer
 * token against the route's role and runs the route's `early` check (a
 * webhook that is off, Azure DevOps credentials), and charges the body to
 * the client (clients.h). It then collects the body when the route wants
 * one (bounded by config.max_body_bytes: 413 as soon as it passes the cap),
 * counts and times every request for /metrics, and calls the route's
 * handler once the request is complete. A handler answers with one of the
 * web_reply*() calls; every answer carries the security headers (a
 * Content-Security-Policy, no framing, no sniffing, no referrer). Each route
 * lives in its own route_*.c; adding one is one line in the table in
 * server_routes.c and one prototype below.
 *
 * Handlers that must not hold an HTTP thread (ingest waits for a group
 * commit; long-poll and SSE wait for data) call web_defer(): the connection
 * is suspended, the work runs on a worker thread, and when it is done the
 * handler is called again with req->deferred set, to answer.
 */
#ifndef FARM_WEBHOOK_ROUTES_H
#define FARM_WEBHOOK_ROUTES_H

#include "auth.h"
#include "clients.h"
#include "base/buf.h"
#include "farm/farm.h"

#include <jansson.h>
#include <stdint.h>

struct MHD_Connection;
typedef struct server server;
typedef struct web_request web_request;

typedef int (*web_handler)(web_request *req);
typedef void (*web_work)(web_request *req);

enum {
    WEB_BODY = 1 << 0, /* collect the request body (bounded) before calling the handler */
};

typedef struct web_route {
    const char *method;  /* "GET" (also serves HEAD), "POST", ... */
    const char *pattern; /* the path; each "*" in it matches one non-empty segment, and a
                            final "**" the non-empty rest of the path */
    const char *name;    /* the route's label in /metrics ("api_session") */
    web_handler handler;
    int flags;         /* WEB_BODY */
    auth_role role;    /* the bearer role checked at the headers; AUTH_NONE: none */
    web_handler early; /* run at the headers, before the body; answers to refuse, or NULL */
} web_route;

struct web_request {
    server *srv;
    farm *farm;
    const config *cfg;
    struct MHD_Connection *conn;
    const web_route *route;
    const char *method;
    const char *path;       /* the URL path, without the query */
    const char *segment[4]; /* what each `*` of the pattern matched (owned by the request) */
    int loopback;           /* the client connected from a loopback address and no proxy
                               forwarded the request: trusted when no tokens are set */
    int64_t start_ns;       /* when the request's headers were in (clock_mono_ns) */
    buf body;               /* the body, when the route has WEB_BODY */
    int deferred;           /* set when the handler is called again after web_defer() */
    void *state;            /* the route's own per-request state */
    void (*state_free)(void *state);
    char delivery[128]; /* the delivery id, for logs, when there is one */
    int status;         /* the status answered, once answered */
    int answered;
    int suspended;       /* set by a handler that suspended the connection itself (and
                            cleared by it when called again); web_defer() does not use it */
    int defers;          /* how many times web_defer() was called */
    size_t charged;      /* body bytes charged to the client and the farm (clients.h) */
    int large;           /* the body holds a large-body slot */
    client_key key;      /* who the body is charged to */
    client_conn *client; /* the connection's deadlines (clients.h), or NULL */
    const char *csp;     /* the Content-Security-Policy answered; NULL: "default-src 'none'" */
    int begun;           /* the headers were checked (the first call of the handler) */
    int body_done;       /* the whole body is in (or there is none) */
    int target_status;   /* the target as received failed guard_target_check(): its status */
    const char *target_why;
    size_t target_len; /* the target's length as received, up to a literal NUL */
    web_work work;
    web_request *next_work; /* server's work queue */
};

/* A request header (case-insensitive name), or NULL. Valid for the request. */
const char *web_header(web_request *req, const char *name);

/* A query parameter, or NULL. Valid for the request. */
const char *web_query(web_request *req, const char *name);

/* Answer: status, a content type and a body (copied). Returns 0, or
 * FARM_ENOMEM / FARM_EIO when the response could not be queued (the
 * connection is then closed). */
int web_reply(web_request *req, int status, const char *content_type, const char *body, size_t len);

/* The headers every answer carries (see server_reply.c): for a route that
 * builds its own libmicrohttpd response. */
struct MHD_Response;
void web_security_headers(web_request *req, struct MHD_Response *r);
/* The same headers with a policy and a Cross-Origin-Resource-Policy of the
 * caller's (the durable streams: "sandbox", readable cross-origin). */
void web_security_headers_set(struct MHD_Response *r, const char *csp, const char *corp);

/* Answer with a JSON value; the reference is stolen. */
int web_reply_json(web_request *req, int status, json_t *v);

/* Answer {"error": error, "hint": hint} (hint may be NULL). */
int web_reply_error(web_request *req, int status, const char *error, const char *hint);

/* The request body as a JSON object of at most max bytes (the caller
 * json_decref()s it), or NULL after answering 413 (too large) or 400 (not
 * a JSON object; hint says what is expected). */
json_t *web_body_object(web_request *req, size_t max, const char *hint);

/* Check the caller's bearer token (see auth.h) for at least role `need`.
 * Returns 1 when allowed; otherwise answers 401 (no valid token) or 403 (a
 * weaker role) and returns 0. */
int web_authorize(web_request *req, auth_role need);

/* Suspend the connection and run work(req) on a worker thread; the handler
 * is then called again with req->deferred = 1 to answer. Returns 0, or
 * FARM_EAGAIN when the server is shutting down or too many requests wait
 * already (answer 503 with farm_error_last()). */
int web_defer(web_request *req, web_work work);

/* ---- the routes ---------------------------------------------------------- */

int route_hook_github(web_request *req);         /* POST /hooks/github */
int route_hook_azure(web_request *req);          /* POST /hooks/azure */
int route_hook_github_early(web_request *req);   /* at the headers: the hook is off */
int route_hook_azure_early(web_request *req);    /* at the headers: off, or credentials */
int route_healthz(web_request *req);             /* GET /healthz */
int route_metrics(web_request *req);             /* GET /metrics */
int route_api_sessions(web_request *req);        /* GET /api/sessions */
int route_api_session(web_request *req);         /* GET /api/sessions/{id} */
int route_api_deliveries(web_request *req);      /* GET /api/deliveries */
int route_stream(web_request *req);              /* /v1/stream/... (stream_http.c) */
int route_api_session_message(web_request *req); /* POST /api/sessions/{id}/messages */
int route_api_scaling(web_request *req);         /* GET /api/scaling (route_scaling.c) */
int route_api_scaling_put(web_request *req);     /* PUT /api/scaling */
int route_api_status(web_request *req);          /* GET /api/status */
int route_api_budgets(web_request *req);         /* GET /api/budgets (route_budgets.c) */
int route_api_budgets_put(web_request *req);     /* PUT or PATCH /api/budgets */
int route_api_nodes(web_request *req);           /* GET /api/nodes (route_nodes.c) */
int route_api_session_cancel(web_request *req);  /* POST /api/sessions/{id}/cancel */
int route_api_digest(web_request *req);          /* GET /api/digest (route_digest.c) */
int route_ui_queue(web_request *req);            /* GET / (route_ui.c) */
int route_ui_session(web_request *req);          /* GET /sessions/{id} */
int route_ui_admin(web_request *req);            /* GET /admin */
int route_ui_static(web_request *req);           /* GET /static/{name} */

#endif
