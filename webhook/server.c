/*
 * server.c - the HTTP front on libmicrohttpd: routing, bounded bodies,
 * deferred work, and a clean drain at shutdown.
 *
 * The daemon runs a small pool of polling threads on epoll with
 * suspend/resume allowed. A request is matched to a route when its headers
 * are in: an unknown path is answered 404 and a known path with another
 * method 405 (with Allow) at once, without reading a body. A route that
 * wants the body gets it in a bounded buffer: a Content-Length over the cap
 * is answered 413 before a byte of the body is read, and a streamed body is
 * cut off as soon as it passes the cap. The handler runs once the request is
 * complete; one that must wait (ingest) calls web_defer(), which suspends
 * the connection and queues the work for the worker threads, so the polling
 * threads keep serving everyone else.
 */
#include "server.h"
#include "metrics.h"
#include "routes.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/stream/stream.h"

#include <assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WORKERS 256
/* Deferred requests waiting for a worker: past this, 503 (the tracker retries). */
#define MAX_QUEUED 10000
/* Request bodies held in memory at once, all connections together: past
 * this, 503. Each body is bounded by config.max_body_bytes on its own. */
#define MAX_BODY_BYTES_TOTAL ((size_t)512 << 20)

/* The route table. A later route is one more line here. */
static const web_route routes[] = {
    {"POST", "/hooks/github", "hook_github", route_hook_github, WEB_BODY},
    {"POST", "/hooks/azure", "hook_azure", route_hook_azure, WEB_BODY},
    {"GET", "/healthz", "healthz", route_healthz, 0},
    {"GET", "/metrics", "metrics", route_metrics, 0},
    {"GET", "/api/sessions", "api_sessions", route_api_sessions, 0},
    {"GET", "/api/sessions/*", "api_session", route_api_session, 0},
    {"GET", "/api/deliveries", "api_deliveries", route_api_deliveries, 0},
    {"POST", "/api/sessions/*/messages", "api_session_message", route_api_session_message,
     WEB_BODY},
    {"GET", "/api/digest", "api_digest", route_api_digest, 0},
    {"GET", "/", "ui_queue", route_ui_queue, 0},
    {"GET", "/sessions/*", "ui_session", route_ui_session, 0},
    {"GET", "/admin", "ui_admin", route_ui_admin, 0},
    {"GET", "/static/*", "ui_static", route_ui_static, 0},
    {"GET", "/api/scaling", "api_scaling", route_api_scaling, 0},
    {"PUT", "/api/scaling", "api_scaling", route_api_scaling_put, WEB_BODY},
    {"GET", "/api/status", "api_status", route_api_status, 0},
    {"POST", "/api/sessions/*/cancel", "api_session_cancel", route_api_session_cancel, WEB_BODY},
    {"GET", "/v1/stream/**", "stream", route_stream, 0},
    {"PUT", "/v1/stream/**", "stream", route_stream, WEB_BODY},
    {"POST", "/v1/stream/**", "stream", route_stream, WEB_BODY},
    {"DELETE", "/v1/stream/**", "stream", route_stream, 0},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

struct server {
    farm *farm;
    const config *cfg;
    struct MHD_Daemon *daemon;
    char address[96];

    pthread_mutex_t lock; /* guards the work queue and stopping */
    pthread_cond_t wake;
    web_request *head, *tail;
    int queued; /* requests in the work queue */
    int stopping;
    pthread_t workers[MAX_WORKERS];
    int nworkers;

    atomic_int inflight;      /* requests begun and not yet completed */
    atomic_size_t body_bytes; /* request bodies held (charged on arrival) */
};

/* ---- matching ------------------------------------------------------------ */

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

/* Find the route for (method, path). When the path is known but the method
 * is not, *allow lists the methods that are. */
static const web_route *route_find(web_request *req, const char *method, const char *path,
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

/* ---- answering ----------------------------------------------------------- */

const char *web_header(web_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *web_query(web_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

static int reply_with(web_request *req, int status, const char *content_type, const char *body,
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
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
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
    return reply_with(req, status, content_type, body, len, NULL);
}

int web_reply_json(web_request *req, int status, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return reply_with(req, 500, "application/json",
                          "{\"error\":\"out of memory\",\"hint\":\"try again\"}", 45, NULL);
    buf b = BUF_INIT((size_t)-2);
    int rc = buf_puts(&b, text);
    free(text);
    if (!rc)
        rc = buf_putc(&b, '\n');
    if (!rc)
        rc = reply_with(req, status, "application/json", b.data, b.len, NULL);
    buf_free(&b);
    return rc;
}

static int reply_error_allow(web_request *req, int status, const char *error, const char *hint,
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
    int rc = reply_with(req, status, "application/json", text ? text : "{\"error\":\"error\"}",
                        text ? strlen(text) : 17, allow);
    free(text);
    return rc;
}

int web_reply_error(web_request *req, int status, const char *error, const char *hint)
{
    return reply_error_allow(req, status, error, hint, NULL);
}

/* ---- deferred work ------------------------------------------------------- */

int web_defer(web_request *req, web_work work)
{
    server *s = req->srv;
    pthread_mutex_lock(&s->lock);
    if (s->stopping || s->nworkers == 0) {
        pthread_mutex_unlock(&s->lock);
        farm_error_set("the farm is shutting down");
        return FARM_EAGAIN;
    }
    if (s->queued >= MAX_QUEUED) {
        pthread_mutex_unlock(&s->lock);
        farm_error_set("the farm is busy: %d requests wait for the store", MAX_QUEUED);
        return FARM_EAGAIN;
    }
    s->queued++;
    req->work = work;
    req->defers++; /* read by this (the polling) thread only, after the handler returns */
    req->next_work = NULL;
    MHD_suspend_connection(req->conn);
    if (s->tail)
        s->tail->next_work = req;
    else
        s->head = req;
    s->tail = req;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void *worker_main(void *arg)
{
    server *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->wake, &s->lock);
        web_request *req = s->head;
        if (!req)
            break; /* stopping, and the queue is drained */
        s->head = req->next_work;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        pthread_mutex_unlock(&s->lock);

        req->work(req);
        req->deferred = 1;
        MHD_resume_connection(req->conn); /* req belongs to the polling thread again */

        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the libmicrohttpd callbacks ------------------------------------------ */

static int client_is_loopback(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return 0;
    const struct sockaddr *sa = ci->client_addr;
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

/* A Content-Length that is over the cap (or unparseable): 1; else 0. */
static int content_length_over(web_request *req, size_t max)
{
    const char *cl = web_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno != 0 || end == cl || n > max;
}

static enum MHD_Result request_begin(server *s, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
    web_request *req = calloc(1, sizeof(*req));
    if (!req)
        return MHD_NO;
    atomic_fetch_add(&s->inflight, 1);
    *con_cls = req;
    req->srv = s;
    req->farm = s->farm;
    req->cfg = s->cfg;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->start_ns = clock_mono_ns();
    req->loopback = client_is_loopback(conn);
    buf_init(&req->body, s->cfg->max_body_bytes);

    char allow[128];
    req->route = route_find(req, method, url, allow, sizeof(allow));
    if (!req->route) {
        if (allow[0])
            return reply_error_allow(req, 405, "method not allowed", allow, allow) ? MHD_NO
                                                                                   : MHD_YES;
        return web_reply_error(req, 404, "not found",
                               "see /healthz, /metrics, /api/sessions, /hooks/github") == 0
                   ? MHD_YES
                   : MHD_NO;
    }
    if ((req->route->flags & WEB_BODY) && content_length_over(req, s->cfg->max_body_bytes)) {
        char hint[96];
        snprintf(hint, sizeof(hint), "the body is over the limit of %zu bytes",
                 s->cfg->max_body_bytes);
        return web_reply_error(req, 413, "payload too large", hint) ? MHD_NO : MHD_YES;
    }
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls)
{
    server *s = cls;
    web_request *req = *con_cls;
    if (!req)
        return request_begin(s, conn, url, method, con_cls);
    if (req->answered) {
        *upload_size = 0; /* a body after an early answer is dropped */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (!(req->route->flags & WEB_BODY))
            return MHD_YES;
        if (atomic_fetch_add(&s->body_bytes, n) + n > MAX_BODY_BYTES_TOTAL) {
            atomic_fetch_sub(&s->body_bytes, n);
            buf_free(&req->body);
            log_warn("request bodies over the memory budget: connection refused", "route",
                     req->route->name);
            return web_reply_error(req, 503, "the farm is busy", "retry later") ? MHD_NO : MHD_YES;
        }
        req->charged += n;
        if (buf_append(&req->body, upload_data, n) != 0) {
            buf_free(&req->body);
            char hint[96];
            snprintf(hint, sizeof(hint), "the body is over the limit of %zu bytes",
                     s->cfg->max_body_bytes);
            /* Stop reading here: the answer goes out now, or, when it cannot
             * be queued mid-body, the connection is closed. */
            return web_reply_error(req, 413, "payload too large", hint) ? MHD_NO : MHD_YES;
        }
        return MHD_YES;
    }
    int defers = req->defers;
    int rc = req->route->handler(req);
    if (req->defers != defers || req->suspended)
        return MHD_YES; /* suspended: a worker has it, and may already have resumed it */
    if (!req->answered) {
        log_error("handler did not answer", "route", req->route->name, "error",
                  rc ? farm_error_last() : "");
        return web_reply_error(req, 500, "internal error", "see the farm's log") ? MHD_NO : MHD_YES;
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    web_request *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    if (req->state_free)
        req->state_free(req->state);
    for (int i = 0; i < 4; i++)
        free((char *)req->segment[i]);
    buf_free(&req->body);
    atomic_fetch_sub(&s->body_bytes, req->charged);
    free(req);
    atomic_fetch_sub(&s->inflight, 1);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http server", "detail", msg);
}

/* ---- start and stop ------------------------------------------------------- */

static int resolve_listen(struct sockaddr_storage *ss, const config *cfg)
{
    char host[256];
    int port;
    if (config_listen_split(cfg, host, sizeof(host), &port) != 0)
        return FARM_EINVALID;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host[0] ? host : NULL, NULL, &hints, &res);
    if (gai != 0 || !res) {
        farm_error_set("listen: cannot resolve '%s': %s", host, gai_strerror(gai));
        return FARM_EINVALID;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    return 0;
}

static void format_address(char *out, size_t n, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, n, "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, ntohs(in->sin_port));
    }
}

static void workers_stop(server *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    s->nworkers = 0;
}

int server_start(server **out, farm *f, const server_options *opt)
{
    server_options defaults = SERVER_OPTIONS_INIT;
    struct sockaddr_storage ss;
    server *s = NULL;
    int rc;

    assert(out && f);
    *out = NULL;
    if (!opt)
        opt = &defaults;
    if (!(s = calloc(1, sizeof(*s)))) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    s->farm = f;
    s->cfg = farm_config(f);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    atomic_init(&s->inflight, 0);
    atomic_init(&s->body_bytes, 0);
    if ((rc = resolve_listen(&ss, s->cfg)))
        goto out;

    int workers = opt->workers > 0 ? opt->workers : 64;
    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
            farm_error_set("cannot start worker threads");
            rc = FARM_ENOMEM;
            goto out;
        }
        s->nworkers++;
    }

    int threads = opt->threads;
    if (threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 2 ? 2 : cpus > 8 ? 8 : (int)cpus;
    }
    /* Live stream readers hold a connection each (and no thread): allow as
     * many as the open-file limit can carry, with small buffers. */
    unsigned max_conns = opt->max_connections;
    if (!max_conns) {
        struct rlimit rl;
        max_conns = 4096;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur > 4096 + 256)
            max_conns = (unsigned)(rl.rlim_cur - 256);
    }
    size_t conn_memory = opt->conn_memory ? opt->conn_memory : 8u << 10;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)1024, MHD_OPTION_END);
    if (!s->daemon) {
        farm_error_set("cannot listen on %s: address in use or not available", s->cfg->listen);
        rc = FARM_EIO;
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    if (di)
        format_address(s->address, sizeof(s->address), di->listen_fd);
    rc = 0;

out:
    if (rc) {
        workers_stop(s);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

const char *server_address(const server *s)
{
    return s->address;
}

static void wait_idle(server *s, int64_t deadline_ms)
{
    while (atomic_load(&s->inflight) > 0 && clock_mono_ms() < deadline_ms)
        usleep(5000); /* a shutdown poll, bounded by the deadline */
}

void server_stop(server *s, int drain_ms)
{
    if (!s)
        return;
    int64_t deadline = clock_mono_ms() + (drain_ms > 0 ? drain_ms : 0);
    MHD_socket listen_fd = MHD_quiesce_daemon(s->daemon);
    /* live stream readers are suspended: wake them to finish (MHD must not
     * be stopped with suspended connections) */
    stream_hub_shutdown(farm_streams(s->farm));
    wait_idle(s, deadline);
    workers_stop(s); /* deferred work finishes and its connections are resumed */
    wait_idle(s, deadline);
    MHD_stop_daemon(s->daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}
