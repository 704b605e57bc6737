/*
 * stream_http_write.c - the writes of /v1/stream/ (PUT creates, POST
 * appends, DELETE), and POST /api/sessions/{id}/messages, which appends a
 * person's message to a session's log.
 *
 * Writes wait for a group commit (an fsync) without holding a thread that
 * serves other connections: appends are handed to the engine's appender and
 * the request is suspended until it calls back; creation, deletion and
 * messages run on the server's worker threads (web_defer).
 */
#include "stream_http.h"
#include "routes.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/intake/ingest.h"
#include "farm/store/store.h"
#include "farm/stream/stream.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_MAX    (64u << 10)
#define LOCAL_NAME_MAX 64 /* bytes of a sender's name given without a token */

/* ---- PUT, POST, DELETE ---------------------------------------------------- */

/* Writes wait for a group commit (an fsync). Appends are handed to the
 * engine's appender and the request is suspended until it calls back;
 * creation and deletion run on the server's worker threads (web_defer). Either
 * way the polling threads keep feeding live readers meanwhile. The request's
 * headers are read into the job before it is handed over. */
typedef struct write_job {
    stream_create_req create;
    stream_append_req append;
    stream_result res;
    int rc;
    char path[STREAM_MAX_PATH + 1];
    struct MHD_Connection *conn;
    atomic_int finished; /* an asynchronous append completed */
} write_job;

static void write_job_free(void *p)
{
    free(p);
}

static void write_work(web_request *req)
{
    write_job *j = req->state;
    stream_hub *h = farm_streams(req->farm);
    if (!strcmp(req->method, "PUT"))
        j->rc = stream_create(&j->res, h, j->path, &j->create);
    else
        j->rc = stream_delete(&j->res, h, j->path);
}

/* Defer the write in req->state; 0 when deferred (answer later). */
static int defer_write(web_request *req, write_job *j)
{
    snprintf(j->path, sizeof(j->path), "%s", stream_http_path(req));
    req->state = j;
    req->state_free = write_job_free;
    if (web_defer(req, write_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}

int stream_http_put(web_request *req)
{
    if (!req->deferred) {
        write_job *j = calloc(1, sizeof(*j));
        if (!j)
            return FARM_ENOMEM;
        stream_create_req init = STREAM_CREATE_REQ_INIT;
        stream_create_req *q = &j->create;
        *q = init;
        q->content_type = web_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        q->ttl = web_header(req, "Stream-TTL");
        q->expires_at = web_header(req, "Stream-Expires-At");
        q->closed = stream_http_header_true(req, "Stream-Closed");
        q->forked_from = web_header(req, "Stream-Forked-From");
        q->fork_offset = web_header(req, "Stream-Fork-Offset");
        q->fork_sub_offset = web_header(req, "Stream-Fork-Sub-Offset");
        q->body = req->body.data;
        q->body_len = req->body.len;
        /* the source may be named by its URL path */
        if (q->forked_from &&
            !strncmp(q->forked_from, STREAM_HTTP_PREFIX, strlen(STREAM_HTTP_PREFIX)))
            q->forked_from += strlen(STREAM_HTTP_PREFIX);
        else if (q->forked_from && q->forked_from[0] == '/')
            q->forked_from++;
        return defer_write(req, j);
    }
    write_job *j = req->state;
    stream_result res = j->res;
    int rc = j->rc;
    if (rc)
        return stream_http_reply_store_error(req, rc);
    if (res.status != 200 && res.status != 201)
        return stream_http_reply_result(req, &res);
    struct MHD_Response *r = stream_http_response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    stream_http_meta_headers(r, &res);
    stream_http_result_headers(r, &res);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (res.status == 201)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, req->path);
    return stream_http_queue(req, res.status, r);
}

/* An append decided (on the hub's appender thread): wake the request. */
static void post_done(void *arg, int rc, const stream_result *res)
{
    write_job *j = arg;
    (void)res; /* it is j->res */
    j->rc = rc;
    atomic_store(&j->finished, 1);
    MHD_resume_connection(j->conn);
}

/* Appends wait for no thread: the request is suspended and the engine's
 * appender resumes it once the batch holding it is committed. */
int stream_http_post(web_request *req)
{
    if (req->state && atomic_load(&((write_job *)req->state)->finished)) {
        req->suspended = 0;
        req->deferred = 1;
    }
    if (!req->deferred) {
        write_job *j = calloc(1, sizeof(*j));
        if (!j)
            return FARM_ENOMEM;
        stream_append_req init = STREAM_APPEND_REQ_INIT;
        stream_append_req *q = &j->append;
        *q = init;
        q->content_type = web_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        q->body = req->body.data;
        q->body_len = req->body.len;
        q->stream_seq = web_header(req, "Stream-Seq");
        q->producer_id = web_header(req, "Producer-Id");
        q->producer_epoch = web_header(req, "Producer-Epoch");
        q->producer_seq = web_header(req, "Producer-Seq");
        q->close = stream_http_header_true(req, "Stream-Closed");
        snprintf(j->path, sizeof(j->path), "%s", stream_http_path(req));
        j->conn = req->conn;
        req->state = j;
        req->state_free = write_job_free;
        req->suspended = 1;
        MHD_suspend_connection(req->conn);
        int rc = stream_append_async(farm_streams(req->farm), j->path, q, &j->res, post_done, j);
        if (rc) {
            req->suspended = 0;
            MHD_resume_connection(req->conn);
            return stream_http_reply_store_error(req, rc);
        }
        return 0;
    }
    write_job *j = req->state;
    stream_result res = j->res;
    int rc = j->rc;
    if (rc)
        return stream_http_reply_store_error(req, rc);
    if (res.status != 200 && res.status != 204)
        return stream_http_reply_result(req, &res);
    struct MHD_Response *r = stream_http_response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    stream_http_result_headers(r, &res);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return stream_http_queue(req, res.status, r);
}

int stream_http_delete(web_request *req)
{
    if (!req->deferred) {
        write_job *j = calloc(1, sizeof(*j));
        if (!j)
            return FARM_ENOMEM;
        return defer_write(req, j);
    }
    write_job *j = req->state;
    stream_result res = j->res;
    int rc = j->rc;
    if (rc)
        return stream_http_reply_store_error(req, rc);
    if (res.status != 204)
        return stream_http_reply_result(req, &res);
    struct MHD_Response *r = stream_http_response(NULL, 0);
    if (!r)
        return FARM_ENOMEM;
    return stream_http_queue(req, 204, r);
}

/* ---- POST /api/sessions/{id}/messages ------------------------------------- */

typedef struct message_job {
    long long session;
    char author[128];
    char *body; /* {"text", "author"} */
    int64_t seq;
    int64_t job; /* the answer job queued, 0 when the session was not waiting */
    int rc;
} message_job;

static void message_job_free(void *p)
{
    message_job *j = p;
    if (j)
        free(j->body);
    free(j);
}

static void message_work(web_request *req)
{
    message_job *j = req->state;
    store_session *s = NULL;
    j->rc = store_session_get(&s, farm_store(req->farm), j->session);
    store_session_free(s);
    if (!j->rc)
        j->rc = stream_session_append(&j->seq, farm_streams(req->farm), j->session, "message",
                                      j->author, j->body);
    /* a member's message answers the agent when the session waits for one */
    if (!j->rc && farm_session_message_note(req->farm, j->session, &j->job) != 0)
        log_error("message recorded but the answer job was not queued", "session_id",
                  req->segment[0], "error", farm_error_last());
}

/* A name from the request for a message sent without a token: printable,
 * short, no quotes or brackets, or NULL. */
static const char *local_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!n || n > LOCAL_NAME_MAX)
        return NULL;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '"' || c == '(' || c == ')' || c == '<' || c == '>')
            return NULL;
    }
    return s;
}

/* Who signs a message: the token's name; without a token (a farm with no
 * tokens serves its own host) "local user", or "NAME (local)" when the
 * request names its sender: the "user" field of the body or the
 * Farm-User header (e.g. the OS user running `farm say`). */
static void message_author(char *out, size_t n, web_request *req, const auth_identity *who,
                           json_t *in)
{
    if (req->cfg->ntokens > 0) {
        snprintf(out, n, "%s", who->name ? who->name : "unknown");
        return;
    }
    const char *name = local_name(json_string_value(json_object_get(in, "user")));
    if (!name)
        name = local_name(web_header(req, "Farm-User"));
    if (name)
        snprintf(out, n, "%s (local)", name);
    else
        snprintf(out, n, "local user");
}

int route_api_session_message(web_request *req)
{
    if (req->deferred) {
        message_job *j = req->state;
        if (j->rc == FARM_ENOTFOUND)
            return web_reply_error(req, 404, "no such session", NULL);
        if (j->rc)
            return stream_http_reply_store_error(req, j->rc);
        log_info("session message", "author", j->author);
        return web_reply_json(req, 201,
                              json_pack("{s:I,s:I,s:I}", "session", (json_int_t)j->session, "seq",
                                        (json_int_t)j->seq, "answer_job", (json_int_t)j->job));
    }
    auth_identity who;
    if (!web_authorize(req, AUTH_MEMBER))
        return 0;
    auth_api_identify(&who, req->cfg, web_header(req, "Authorization"), req->loopback);
    char *end;
    long long id = strtoll(req->segment[0], &end, 10);
    if (*end || id <= 0)
        return web_reply_error(req, 404, "no such session", NULL);
    json_error_t jerr;
    json_t *in = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, &jerr);
    const char *text = in ? json_string_value(json_object_get(in, "text")) : NULL;
    if (!text || !*text || strlen(text) > MESSAGE_MAX) {
        json_decref(in);
        return web_reply_error(req, 400, "expected {\"text\": \"...\"}",
                               "a non-empty string of at most 64 KiB");
    }
    message_job *j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(in);
        return FARM_ENOMEM;
    }
    j->session = id;
    message_author(j->author, sizeof(j->author), req, &who, in);
    json_t *body = json_pack("{s:s,s:s}", "text", text, "author", j->author);
    json_decref(in);
    j->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!j->body) {
        message_job_free(j);
        return FARM_ENOMEM;
    }
    req->state = j;
    req->state_free = message_job_free;
    if (web_defer(req, message_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}
