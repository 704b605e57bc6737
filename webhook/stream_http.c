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

static void common_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "cross-origin");
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
    if (res->content_type[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
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
    common_headers(r);
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

int route_stream(web_request *req)
{
    const char *m = req->method;
    int write = strcmp(m, "GET") && strcmp(m, "HEAD");
    if (!req->state && !web_authorize(req, write ? AUTH_MEMBER : AUTH_VIEWER))
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
    return web_reply_error(req, 405, "method not allowed", "GET, HEAD, PUT, POST, DELETE");
}
