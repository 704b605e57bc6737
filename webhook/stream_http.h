/*
 * stream_http.h - what the files of /v1/stream/ share (private to webhook/):
 * stream_http.c (the route, and answering with the protocol's headers),
 * stream_http_read.c (GET and HEAD: catch-up, long-poll, SSE) and
 * stream_http_write.c (PUT, POST, DELETE, and a session's messages).
 *
 * The engine (farm/stream/stream.h) decides every outcome; these files map
 * requests to it and its results to status codes and headers.
 */
#ifndef FARM_WEBHOOK_STREAM_HTTP_H
#define FARM_WEBHOOK_STREAM_HTTP_H

#include "routes.h"
#include "farm/stream/stream.h"

#include <stddef.h>

struct MHD_Response;

#define STREAM_HTTP_PREFIX "/v1/stream/"

/* ---- answering (stream_http.c) ------------------------------------------- */

/* The headers of an outcome: Stream-Next-Offset, Stream-Closed, Producer-*. */
void stream_http_result_headers(struct MHD_Response *r, const stream_result *res);
/* The headers of a stream: Content-Type, Stream-TTL, Stream-Expires-At. */
void stream_http_meta_headers(struct MHD_Response *r, const stream_result *res);
/* Queue r with status; marks the request answered. Takes r. */
int stream_http_queue(web_request *req, int status, struct MHD_Response *r);
/* A response holding a copy of body (NULL: empty); NULL when out of memory. */
struct MHD_Response *stream_http_response(const void *body, size_t len);
/* A 4xx/5xx from the engine: JSON error body plus the protocol headers. */
int stream_http_reply_result(web_request *req, const stream_result *res);
/* The engine failed (rc < 0): 500 when out of memory, else 503. */
int stream_http_reply_store_error(web_request *req, int rc);
/* The stream's path: the request's path after the prefix. */
const char *stream_http_path(web_request *req);
/* "Stream-Closed: true" (case-insensitive); anything else is absent. */
int stream_http_header_true(web_request *req, const char *name);

/* ---- the methods ---------------------------------------------------------- */

int stream_http_get(web_request *req);    /* stream_http_read.c */
int stream_http_head(web_request *req);   /* stream_http_read.c */
int stream_http_put(web_request *req);    /* stream_http_write.c */
int stream_http_post(web_request *req);   /* stream_http_write.c */
int stream_http_delete(web_request *req); /* stream_http_write.c */

#endif
