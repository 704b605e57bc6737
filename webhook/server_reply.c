/*
 * server_reply.c - answering a request (see routes.h): JSON and error
 * bodies, and the headers every answer carries.
 *
 * Every answer says how a browser may use it: a Content-Security-Policy
 * (the page's own from route_ui.c, else one that allows nothing), never in a
 * frame (frame-ancestors 'none' and X-Frame-Options: DENY), no MIME
 * sniffing, no Referer to wherever its links lead, and not for another
 * site's pages to embed (Cross-Origin-Resource-Policy: same-origin). An answer given at the
 * headers to a request that has a body still to come closes the
 * connection: the body is never read, and nothing of it can be taken for a
 * next request.
 */
#include "metrics.h"
#include "server_internal.h"
#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_CSP "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

void web_security_headers_set(struct MHD_Response *r, const char *csp, const char *corp)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, csp);
    MHD_add_response_header(r, MHD_HTTP_HEADER_X_FRAME_OPTIONS, "DENY");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", corp);
}

void web_security_headers(web_request *req, struct MHD_Response *r)
{
    /* another site's page cannot even embed an answer (a loopback client
     * with no tokens is trusted, so its browser is too) */
    web_security_headers_set(r, req && req->csp ? req->csp : API_CSP, "same-origin");
}

/* Is a body on its way that this answer leaves unread? */
static int body_pending(web_request *req)
{
    if (req->body_done)
        return 0;
    const char *cl = web_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return web_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING) ||
           (cl && strspn(cl, "0") != strlen(cl));
}

int server__reply(web_request *req, int status, const char *content_type, const char *body,
                  size_t len, const char *allow)
{
    if (req->answered) {
        farm_error_set("request answered twice");
        return FARM_ERROR;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r) {
        farm_error_set("out of memory building a response");
        return FARM_ENOMEM;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    web_security_headers(req, r);
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 429 || status == 503)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "5");
    if (body_pending(req))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(req->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    req->answered = 1;
    req->status = status;
    if (req->route && !strncmp(req->route->pattern, "/hooks/", 7)) {
        metrics_ack_observe(clock_mono_ns() - req->start_ns);
        if (status == 413) /* "hook_github" -> "github" */
            metrics_delivery_count(req->route->name + 5, NULL, "too_large");
    }
    metrics_http_count(req->route ? req->route->name : "unknown", status);
    if (ok != MHD_YES) {
        farm_error_set("could not queue the response");
        return FARM_EIO;
    }
    return 0;
}

int web_reply(web_request *req, int status, const char *content_type, const char *body, size_t len)
{
    return server__reply(req, status, content_type, body, len, NULL);
}

int web_reply_json(web_request *req, int status, json_t *v)
{
    /* 15 significant digits: 0.077 prints as 0.077, not 0.076999999999999999 */
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(v);
    if (!text)
        return server__reply(req, 500, "application/json",
                             "{\"error\":\"out of memory\",\"hint\":\"try again\"}", 45, NULL);
    buf b = BUF_INIT((size_t)-2);
    int rc = buf_puts(&b, text);
    free(text);
    if (!rc)
        rc = buf_putc(&b, '\n');
    if (!rc)
        rc = server__reply(req, status, "application/json", b.data, b.len, NULL);
    buf_free(&b);
    return rc;
}

int server__reply_error_allow(web_request *req, int status, const char *error, const char *hint,
                              const char *allow)
{
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "error", json_string(error));
        if (hint)
            json_object_set_new(o, "hint", json_string(hint));
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = server__reply(req, status, "application/json", text ? text : "{\"error\":\"error\"}",
                           text ? strlen(text) : 17, allow);
    free(text);
    return rc;
}

json_t *web_body_object(web_request *req, size_t max, const char *hint)
{
    json_error_t jerr;
    json_t *in;

    if (req->body.len > max) {
        web_reply_error(req, 413, "the body is too large", "a small JSON object");
        return NULL;
    }
    in = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        web_reply_error(req, 400, "expected a JSON object", hint);
        return NULL;
    }
    return in;
}

int web_reply_error(web_request *req, int status, const char *error, const char *hint)
{
    return server__reply_error_allow(req, status, error, hint, NULL);
}
