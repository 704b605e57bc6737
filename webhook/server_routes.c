/*
 * server_routes.c - the route table and how a request finds its route.
 *
 * A route is a method and a path pattern: each "*" matches one non-empty
 * segment, a final "**" the non-empty rest of the path. GET routes serve
 * HEAD too. A path that matches with another method gives the Allow list
 * of a 405. Adding a route is one line in the table.
 */
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The route table. A later route is one more line here: method, pattern,
 * metrics name, handler, flags, the bearer role checked at the headers and
 * a check of its own at the headers. */
static const web_route routes[] = {
    {"POST", "/hooks/github", "hook_github", route_hook_github, WEB_BODY, AUTH_NONE,
     route_hook_github_early},
    {"POST", "/hooks/azure", "hook_azure", route_hook_azure, WEB_BODY, AUTH_NONE,
     route_hook_azure_early},
    {"GET", "/healthz", "healthz", route_healthz, 0, AUTH_NONE, NULL},
    {"GET", "/metrics", "metrics", route_metrics, 0, AUTH_NONE, NULL},
    {"GET", "/api/sessions", "api_sessions", route_api_sessions, 0, AUTH_VIEWER, NULL},
    {"GET", "/api/sessions/*", "api_session", route_api_session, 0, AUTH_VIEWER, NULL},
    {"GET", "/api/deliveries", "api_deliveries", route_api_deliveries, 0, AUTH_VIEWER, NULL},
    {"POST", "/api/sessions/*/messages", "api_session_message", route_api_session_message, WEB_BODY,
     AUTH_MEMBER, NULL},
    {"GET", "/api/digest", "api_digest", route_api_digest, 0, AUTH_VIEWER, NULL},
    {"GET", "/", "ui_queue", route_ui_queue, 0, AUTH_NONE, NULL},
    {"GET", "/sessions/*", "ui_session", route_ui_session, 0, AUTH_NONE, NULL},
    {"GET", "/admin", "ui_admin", route_ui_admin, 0, AUTH_NONE, NULL},
    {"GET", "/static/*", "ui_static", route_ui_static, 0, AUTH_NONE, NULL},
    {"GET", "/api/scaling", "api_scaling", route_api_scaling, 0, AUTH_VIEWER, NULL},
    {"PUT", "/api/scaling", "api_scaling", route_api_scaling_put, WEB_BODY, AUTH_ADMIN, NULL},
    {"GET", "/api/status", "api_status", route_api_status, 0, AUTH_VIEWER, NULL},
    {"GET", "/api/budgets", "api_budgets", route_api_budgets, 0, AUTH_VIEWER, NULL},
    {"PUT", "/api/budgets", "api_budgets", route_api_budgets_put, WEB_BODY, AUTH_ADMIN, NULL},
    {"PATCH", "/api/budgets", "api_budgets", route_api_budgets_put, WEB_BODY, AUTH_ADMIN, NULL},
    {"GET", "/api/nodes", "api_nodes", route_api_nodes, 0, AUTH_VIEWER, NULL},
    {"POST", "/api/sessions/*/cancel", "api_session_cancel", route_api_session_cancel, WEB_BODY,
     AUTH_MEMBER, NULL},
    {"GET", "/v1/stream/**", "stream", route_stream, 0, AUTH_VIEWER, NULL},
    {"PUT", "/v1/stream/**", "stream", route_stream, WEB_BODY, AUTH_MEMBER, NULL},
    {"POST", "/v1/stream/**", "stream", route_stream, WEB_BODY, AUTH_MEMBER, NULL},
    {"DELETE", "/v1/stream/**", "stream", route_stream, 0, AUTH_MEMBER, NULL},
    {"OPTIONS", "/v1/stream/**", "stream", route_stream, 0, AUTH_NONE, NULL}, /* CORS preflight */
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Does path match pattern? Fills seg[] with the `*` segments (heap copies,
 * only when it matches). */
static int pattern_match(const char *pattern, const char *path, const char *seg[4])
{
    const char *found[4];
    size_t lens[4];
    int n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (p[0] == '*' && p[1] == '*' && !p[2]) { /* the rest of the path */
            if (n == 4)
                return 0;
            found[n] = s;
            lens[n++] = strlen(s);
            s += strlen(s);
            p += 2;
        } else if (*p == '*') {
            size_t len = strcspn(s, "/");
            if (len == 0 || n == 4)
                return 0;
            found[n] = s;
            lens[n++] = len;
            s += len;
            p++;
        } else if (*p++ != *s++) {
            return 0;
        }
    }
    if (*p || *s)
        return 0;
    for (int i = 0; i < n; i++) {
        seg[i] = strndup(found[i], lens[i]);
        if (!seg[i])
            return 0;
    }
    return 1;
}

static int method_matches(const char *route_method, const char *method)
{
    return !strcmp(route_method, method) ||
           (!strcmp(route_method, "GET") && !strcmp(method, "HEAD"));
}

const web_route *server__route_find(web_request *req, const char *method, const char *path,
                                    char *allow, size_t allowlen)
{
    allow[0] = '\0';
    for (size_t i = 0; i < NROUTES; i++) {
        const char *seg[4] = {NULL, NULL, NULL, NULL};
        if (!pattern_match(routes[i].pattern, path, seg))
            continue;
        if (method_matches(routes[i].method, method)) {
            memcpy(req->segment, seg, sizeof(seg));
            return &routes[i];
        }
        for (int k = 0; k < 4; k++)
            free((char *)seg[k]);
        size_t used = strlen(allow);
        snprintf(allow + used, allowlen - used, "%s%s%s", used ? ", " : "", routes[i].method,
                 strcmp(routes[i].method, "GET") ? "" : ", HEAD");
    }
    return NULL;
}

/* ---- the request's headers and query ---------------------------------------- */

const char *web_header(web_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *web_query(web_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}
