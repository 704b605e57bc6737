/*
 * stream_http.c - /v1/stream/...: the Durable Streams protocol over HTTP.
 * This file holds the route (access and dispatch by method) and what every
 * method answers with: the protocol's headers and its error bodies. The
 * methods are in stream_http_read.c (GET, HEAD) and stream_http_write.c
 * (PUT, POST, DELETE, and POST /api/sessions/{id}/messages).
 *
 * Reads need the viewer role, writes member (web_authorize). Session logs
 * ("sessions/{id}") are written by the farm only: the engine answers 403.
 */
#include "stream_http.h"
#include "routes.h"
#include "metrics.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/stream/stream.h"

#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- answering with protocol headers ------------------------------------- */

/* Browsers may reach streams from other origins (CORS) only where every
 * request carries a bearer token: with no tokens configured, loopback
 * clients are served without one, and a page from anywhere could then read
 * and write the farm's streams through the browser of someone on the host. */
#define CORS_METHODS "GET, HEAD, PUT, POST, DELETE, OPTIONS"
#define CORS_ALLOW                                                                                 \
    "Authorization, Content-Type, If-None-Match, Last-Event-ID, Stream-TTL, Stream-Expires-At, "   \
    "Stream-Seq, Stream-Closed, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, "  \
    "Producer-Id, Producer-Epoch, Producer-Seq"
#define CORS_EXPOSE                                                                                \
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "            \
    "Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, "                  \
    "Producer-Expected-Seq, Producer-Received-Seq, ETag, Location, Content-Type"

static int cors_allowed(web_request *req)
{
    return req->cfg && req->cfg->ntokens > 0 && web_header(req, "Origin");
}

/* Every answer of /v1/stream/: no MIME sniffing, no document (a stream is
 * data: served to a browser as a page, it runs no script and reaches no
 * origin), and CORS where it is allowed. */
static void common_headers(web_request *req, struct MHD_Response *r)
{
    /* never run, never framed: the same as every other answer of the farm,
     * but readable cross-origin where CORS allows it (a stream's point) */
    web_security_headers_set(r, "sandbox; frame-ancestors 'none'", "cross-origin");
    if (cors_allowed(req)) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Expose-Headers", CORS_EXPOSE);
    }
}

/* Content types served as they are: JSON, plain text, octets. Any other
 * (text/html, image/svg+xml, ...) is also served as an attachment, so a
 * browser pointed at the stream downloads it rather than showing it. */
static int type_is_inert(const char *ct)
{
    char mt[128];
    if (stream_content_type_is_json(ct))
        return 1;
    stream_media_type(mt, sizeof(mt), ct);
    return !strcmp(mt, "text/plain") || !strcmp(mt, "application/octet-stream");
}

void stream_http_result_headers(struct MHD_Response *r, const stream_result *res)
{
    char num[32];
    if (res->next_offset[0])
        MHD_add_response_header(r, "Stream-Next-Offset", res->next_offset);
    if (res->closed)
        MHD_add_response_header(r, "Stream-Closed", "true");
    if (res->producer_epoch >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->producer_epoch);
        MHD_add_response_header(r, "Producer-Epoch", num);
    }
    if (res->producer_seq >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->producer_seq);
        MHD_add_response_header(r, "Producer-Seq", num);
    }
    if (res->expected_seq >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->expected_seq);
        MHD_add_response_header(r, "Producer-Expected-Seq", num);
    }
    if (res->received_seq >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->received_seq);
        MHD_add_response_header(r, "Producer-Received-Seq", num);
    }
}

void stream_http_meta_headers(struct MHD_Response *r, const stream_result *res)
{
    char num[40];
    if (res->content_type[0]) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
        if (!type_is_inert(res->content_type))
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, "attachment");
    }
    if (res->ttl_s >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, res->ttl_s);
        MHD_add_response_header(r, "Stream-TTL", num);
    }
    if (res->expires_at_ms >= 0) {
        clock_format_rfc3339(num, sizeof(num), res->expires_at_ms);
        MHD_add_response_header(r, "Stream-Expires-At", num);
    }
}

/* Queue r with status; marks the request answered. Takes r. */
int stream_http_queue(web_request *req, int status, struct MHD_Response *r)
{
    common_headers(req, r);
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    req->answered = 1;
    req->status = status;
    metrics_http_count(req->route ? req->route->name : "stream", status);
    if (ok != MHD_YES) {
        farm_error_set("could not queue the response");
        return FARM_EIO;
    }
    return 0;
}

struct MHD_Response *stream_http_response(const void *body, size_t len)
{
    return MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
}

/* A 4xx/5xx from the engine: JSON error body plus the protocol headers. */
int stream_http_reply_result(web_request *req, const stream_result *res)
{
    json_t *o = json_pack("{s:s}", "error", res->error[0] ? res->error : "error");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    struct MHD_Response *r = stream_http_response(text, text ? strlen(text) : 0);
    free(text);
    if (!r)
        return FARM_ENOMEM;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    stream_http_result_headers(r, res);
    return stream_http_queue(req, res->status, r);
}

int stream_http_reply_store_error(web_request *req, int rc)
{
    log_error("stream request failed", "path", req->path, "error", farm_error_last());
    return web_reply_error(req, rc == FARM_ENOMEM ? 500 : 503, "the store failed",
                           "try again; see the farm's log");
}

const char *stream_http_path(web_request *req)
{
    return req->path + strlen(STREAM_HTTP_PREFIX);
}

/* "Stream-Closed: true" (case-insensitive); anything else is absent. */
int stream_http_header_true(web_request *req, const char *name)
{
    const char *v = web_header(req, name);
    return v && !strcasecmp(v, "true");
}

/* ---- the route ------------------------------------------------------------ */

/* A CORS preflight: no credentials come with it, so none are asked for. */
static int preflight(web_request *req)
{
    struct MHD_Response *r = stream_http_response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    if (cors_allowed(req)) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", CORS_METHODS);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", CORS_ALLOW);
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    MHD_add_response_header(r, "Allow", CORS_METHODS);
    return stream_http_queue(req, 204, r);
}

/* The stream's path as the request names it, checked before anything is
 * done with it: 1 when it may go on, else 0 and answered. */
static int path_ok(web_request *req)
{
    const char *p = stream_http_path(req);
    size_t n = strlen(p);
    char hint[64];
    if (n > STREAM_MAX_PATH) {
        snprintf(hint, sizeof(hint), "a stream path has at most %d bytes", STREAM_MAX_PATH);
        web_reply_error(req, 414, "stream path too long", hint);
        return 0;
    }
    if (strchr(p, '%')) {
        web_reply_error(req, 400, "malformed %-escape in the stream path",
                        "escape a byte as % and two hex digits");
        return 0;
    }
    if (!stream_path_valid(p)) {
        web_reply_error(req, 400, "invalid stream path",
                        "no empty, . or .. segment, no control character, space, ?, # or \\");
        return 0;
    }
    if (stream_path_control(p)) {
        web_reply_error(req, 501, "__ds/ holds the protocol's control APIs (subscriptions)",
                        "this server does not offer them");
        return 0;
    }
    return 1;
}

int route_stream(web_request *req)
{
    const char *m = req->method;
    if (!strcmp(m, "OPTIONS"))
        return preflight(req);
    int write = strcmp(m, "GET") && strcmp(m, "HEAD");
    if (!req->state && !web_authorize(req, write ? AUTH_MEMBER : AUTH_VIEWER))
        return 0;
    if (!req->state && !path_ok(req))
        return 0;
    if (!strcmp(m, "GET"))
        return stream_http_get(req);
    if (!strcmp(m, "HEAD"))
        return stream_http_head(req);
    if (!strcmp(m, "PUT"))
        return stream_http_put(req);
    if (!strcmp(m, "POST"))
        return stream_http_post(req);
    if (!strcmp(m, "DELETE"))
        return stream_http_delete(req);
    return web_reply_error(req, 405, "method not allowed", CORS_METHODS);
}
