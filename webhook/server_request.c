/*
 * server_request.c - what a request passes once its headers are in, before
 * a byte of its body is read, and its body as it arrives.
 *
 * The checks run in this order, and the first that fails answers:
 *
 *   1. the target as received (guard_target_check): 414 too long, 400 for
 *      a NUL, a bad %-escape or a control character; never cut short;
 *   2. the body's framing: two Content-Length headers, or one with
 *      Transfer-Encoding, is 400; so are two Host headers;
 *   3. the Host: a name the farm answers to, else 421;
 *   4. the route: 404, or 405 with Allow;
 *   5. a write (POST, PUT, DELETE, PATCH) from another origin: its Origin,
 *      or failing that Sec-Fetch-Site, names another site: 403;
 *   6. the bearer token, for a route with a role: 401 or 403;
 *   7. the route's own early check (a webhook that is off: 404);
 *   8. an API write that is not JSON: 415 (so no "simple" cross-site
 *      request reaches one);
 *   9. the body: over max_body_bytes is 413; then it is charged to the
 *      client (clients.h): 429 when the client's own share is full, 503
 *      when the farm's is.
 *
 * A request forwarded by a proxy (Forwarded, X-Forwarded-For, X-Real-IP) is
 * never taken for a loopback client, whatever address it came from.
 */
#include "metrics.h"
#include "server_internal.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- who and where ---------------------------------------------------------- */

static const struct sockaddr *peer_address(web_request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci ? ci->client_addr : NULL;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

static int forwarded(web_request *req)
{
    return web_header(req, "Forwarded") || web_header(req, "X-Forwarded-For") ||
           web_header(req, "X-Real-IP");
}

/* The local address the connection arrived on, canonical text (as
 * guard_host_parse() writes names); "" when unknown. Only needed when the
 * farm listens on every address. */
static void local_address(char *out, size_t n, web_request *req)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || getsockname(ci->connect_fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)n);
    } else if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, a->s6_addr + 12, out, (socklen_t)n);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)n);
    }
}

/* ---- refusing ---------------------------------------------------------------- */

static enum MHD_Result answered(int rc)
{
    return rc == 0 ? MHD_YES : MHD_NO;
}

/* Answer a request refused before any route took it, counted by reason. */
static enum MHD_Result refuse(web_request *req, int status, const char *reason, const char *error,
                              const char *hint)
{
    metrics_http_refused(reason);
    log_debug("request refused", "reason", reason, "error", error);
    return answered(web_reply_error(req, status, error, hint));
}

/* ---- the checks ---------------------------------------------------------------- */

typedef struct header_count {
    int host, content_length, transfer_encoding;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    header_count *n = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_HOST))
        n->host++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        n->content_length++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        n->transfer_encoding++;
    return MHD_YES;
}

/* 2: one framing of the body, one Host. Returns 0 or answers. */
static int framing_refused(web_request *req, enum MHD_Result *ret)
{
    header_count n = {0, 0, 0};
    const char *why;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &n);
    int status =
        guard_framing_check(n.content_length, web_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH),
                            n.transfer_encoding, &why);
    if (!status && n.host > 1) {
        status = 400;
        why = "the request has more than one Host header";
    }
    if (!status)
        return 0;
    *ret = refuse(req, status, "bad_request", why,
                  "send one Content-Length (or chunked) and one Host");
    return 1;
}

/* 3: the Host names this farm. */
static int host_refused(server *s, web_request *req, const char *local, enum MHD_Result *ret)
{
    const char *host = web_header(req, MHD_HTTP_HEADER_HOST);
    char name[GUARD_NAME_MAX], hint[GUARD_NAME_MAX + 128];
    int port;
    if (!host) /* HTTP/1.0 without a Host: no browser sends that */
        return 0;
    if (guard_host_parse(name, sizeof(name), &port, host) != 0) {
        *ret = refuse(req, 400, "bad_request", "the Host header is not a host name", NULL);
        return 1;
    }
    if (guard_host_allowed(s->hosts, name, local))
        return 0;
    snprintf(hint, sizeof(hint),
             "this farm does not answer to the name \"%s\": use its public_url, or add the name "
             "to http.allowed_hosts",
             name);
    *ret = refuse(req, 421, "misdirected", "misdirected request: unknown Host", hint);
    return 1;
}

static int is_write(const char *method)
{
    return !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "DELETE") ||
           !strcmp(method, "PATCH");
}

/* 5: a write comes from the farm's own origin (or from no browser). */
static int origin_refused(server *s, web_request *req, const char *local, enum MHD_Result *ret)
{
    if (!is_write(req->method))
        return 0;
    /* The streams speak CORS to pages that hold a token (stream_http.c): a
     * browser never sends a bearer token on its own, so such a write is no
     * forgery. */
    if (req->cfg->ntokens > 0 && web_header(req, "Authorization") &&
        !strcmp(req->route->name, "stream"))
        return 0;
    const char *origin = web_header(req, MHD_HTTP_HEADER_ORIGIN);
    int ok;
    if (origin) {
        char name[GUARD_NAME_MAX];
        int port;
        ok = guard_origin_parse(name, sizeof(name), &port, origin) == 0 &&
             guard_origin_allowed(s->hosts, name, port, local);
    } else {
        const char *site = web_header(req, "Sec-Fetch-Site");
        ok = !site || (strcasecmp(site, "cross-site") && strcasecmp(site, "same-site"));
    }
    if (ok)
        return 0;
    *ret = refuse(req, 403, "cross_origin", "cross-origin request refused",
                  "a page of another origin may not change this farm; use its own pages, the "
                  "CLI or the API with a token");
    return 1;
}

/* 8: an API write sends JSON. */
static int type_refused(web_request *req, enum MHD_Result *ret)
{
    if (!is_write(req->method) || strncmp(req->path, "/api/", 5) ||
        guard_json_type(web_header(req, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return 0;
    *ret = answered(web_reply_error(req, 415, "unsupported media type",
                                    "send the body as JSON with Content-Type: application/json"));
    return 1;
}

/* 9: the body's size and its charge. */
static int body_refused(server *s, web_request *req, enum MHD_Result *ret)
{
    const char *cl = web_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0; /* digits: checked in 2 */
    int chunked = web_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
    char hint[96];
    int own;

    if (!declared && !chunked) {
        req->body_done = 1;
        clients_conn_busy(s->clients, req->client);
        return 0;
    }
    clients_conn_body(s->clients, req->client); /* the body rate's clock starts */
    if (!(req->route->flags & WEB_BODY) || !declared)
        return 0; /* dropped as it comes; a chunked body is charged as it comes */
    if (declared > s->cfg->max_body_bytes) {
        snprintf(hint, sizeof(hint), "the body is over the limit of %zu bytes",
                 s->cfg->max_body_bytes);
        *ret = answered(web_reply_error(req, 413, "payload too large", hint));
        return 1;
    }
    int large = declared > CLIENTS_LARGE_BODY;
    if (clients_body_charge(s->clients, &req->key, (size_t)declared, large, &own) != 0) {
        *ret = answered(
            web_reply_error(req, own ? 429 : 503,
                            own ? "too many request bodies from this address" : "the farm is busy",
                            farm_error_last()));
        return 1;
    }
    req->charged = (size_t)declared;
    req->large = large;
    return 0;
}

enum MHD_Result server__request_begin(server *s, web_request *req)
{
    char allow[128], local[64] = "";
    enum MHD_Result ret = MHD_YES;

    req->begun = 1;
    req->start_ns = clock_mono_ns();
    const struct sockaddr *peer = peer_address(req);
    req->loopback = is_loopback(peer) && !forwarded(req);
    clients_key_for(&req->key, s->clients, peer, web_header(req, "X-Forwarded-For"));
    buf_init(&req->body, s->cfg->max_body_bytes);
    if (s->wildcard)
        local_address(local, sizeof(local), req);

    if (req->target_status) /* 1 */
        return refuse(req, req->target_status, "bad_request", req->target_why,
                      req->target_status == 414 ? "use a shorter path and query" : NULL);
    if (framing_refused(req, &ret) || host_refused(s, req, local[0] ? local : NULL, &ret))
        return ret;
    req->route = server__route_find(req, req->method, req->path, allow, sizeof(allow)); /* 4 */
    if (!req->route) {
        if (allow[0])
            return answered(
                server__reply_error_allow(req, 405, "method not allowed", allow, allow));
        return answered(web_reply_error(req, 404, "not found",
                                        "see /healthz, /metrics, /api/sessions, /hooks/github"));
    }
    if (origin_refused(s, req, local[0] ? local : NULL, &ret))
        return ret;
    if (req->route->role != AUTH_NONE && !web_authorize(req, req->route->role)) /* 6 */
        return answered(0);
    if (req->route->early) { /* 7 */
        req->route->early(req);
        if (req->answered)
            return MHD_YES;
    }
    if (type_refused(req, &ret) || body_refused(s, req, &ret))
        return ret;
    return MHD_YES;
}

enum MHD_Result server__request_body(server *s, web_request *req, const char *data, size_t n)
{
    char hint[96];
    int own;

    clients_conn_received(req->client, n);
    if (!(req->route->flags & WEB_BODY))
        return MHD_YES; /* a body the route does not read is dropped */
    if (!web_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
        /* chunked: charged as it comes; past CLIENTS_LARGE_BODY it needs a slot */
        int large = !req->large && req->charged + n > CLIENTS_LARGE_BODY;
        if (clients_body_charge(s->clients, &req->key, n, large, &own) != 0) {
            buf_free(&req->body);
            log_warn("request body refused", "route", req->route->name, "error", farm_error_last());
            return answered(web_reply_error(req, own ? 429 : 503,
                                            own ? "too many request bodies from this address"
                                                : "the farm is busy",
                                            "retry later"));
        }
        req->charged += n;
        req->large |= large;
    }
    if (buf_append(&req->body, data, n) != 0) {
        buf_free(&req->body);
        snprintf(hint, sizeof(hint), "the body is over the limit of %zu bytes",
                 s->cfg->max_body_bytes);
        /* Stop reading here: the answer goes out now and the connection is
         * closed after it. */
        return answered(web_reply_error(req, 413, "payload too large", hint));
    }
    return MHD_YES;
}

void server__request_end(server *s, web_request *req)
{
    clients_body_release(s->clients, &req->key, req->charged, req->large);
    req->charged = 0;
    req->large = 0;
}
