/*
 * server.c - the HTTP front on libmicrohttpd: the daemon's callbacks,
 * binding, start, and a clean drain at shutdown (the route table is in
 * server_routes.c, deferred work in server_work.c).
 *
 * The daemon runs a small pool of polling threads on epoll with
 * suspend/resume allowed. A new connection is first put to the accept
 * policy (clients_admit: connections per address, room kept for others)
 * and, once set up, to the watchdog (clients.h: a deadline for its request
 * headers, a minimum rate for its body). A request's target is checked as
 * received, still %-encoded (the URI log callback runs before
 * libmicrohttpd decodes it); once its headers are in it passes the checks
 * of server_request.c before a byte of its body is read: an unknown path is
 * answered 404 and a known path with another method 405 (with Allow) at
 * once. A route that wants the body gets it in a bounded buffer, charged
 * to the client. The handler runs once the request is complete; one that
 * must wait (ingest) calls web_defer(), which suspends the connection and
 * queues the work for the worker threads, so the polling threads keep
 * serving everyone else.
 */
#include "metrics.h"
#include "server_internal.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/stream/stream.h"

#include <assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Request bodies held in memory at once, all connections together: past
 * this, 503. Each body is bounded by config.max_body_bytes on its own. */
#define MAX_BODY_BYTES_TOTAL ((size_t)512 << 20)
/* Open files kept for the store, git, the sandbox and logs: not for connections. */
#define FD_RESERVE 256
/* libmicrohttpd's own messages (a refused connection, a bad request): at
 * most this many lines per 10 s window, so a flood cannot flood the log. */
#define MHD_LOG_LINES 20

/* ---- the libmicrohttpd callbacks ------------------------------------------ */

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    server *s = cls;
    return clients_admit(s->clients, addr) ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *addr =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context =
            addr && fd ? clients_conn_open(s->clients, addr->client_addr, fd->connect_fd) : NULL;
        return;
    }
    clients_conn_close(s->clients, *socket_context); /* before libmicrohttpd closes the socket */
    *socket_context = NULL;
}

/* The request line is in: the target is checked here, as received, before
 * libmicrohttpd decodes it (a %00 would cut it short). The request lives
 * from here to on_completed(). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    server *s = cls;
    web_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    atomic_fetch_add(&s->inflight, 1);
    req->srv = s;
    req->farm = s->farm;
    req->cfg = s->cfg;
    req->conn = conn;
    req->target_len = strlen(uri);
    req->target_status = guard_target_check(uri, req->target_len, &req->target_why);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    req->client = ci ? ci->socket_context : NULL;
    return req;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls)
{
    server *s = cls;
    web_request *req = *con_cls;
    if (!req)
        return MHD_NO; /* on_uri() ran out of memory: drop the connection */
    if (!req->begun) {
        req->method = method;
        req->path = url;
        /* The target was the bytes from url up to the space before the
         * version: when they are more than the C string on_uri() saw, a
         * literal NUL cut it ("/healthz\0x" is not "/healthz"). */
        if (!req->target_status && version > url && version - url < 65536 &&
            (size_t)(version - 1 - url) != req->target_len) {
            req->target_status = 400;
            req->target_why = "the request target holds a NUL byte";
        }
        return server__request_begin(s, req);
    }
    if (req->answered) {
        *upload_size = 0; /* a body after an early answer is dropped */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return server__request_body(s, req, upload_data, n);
    }
    if (!req->body_done) {
        req->body_done = 1;
        clients_conn_busy(s->clients, req->client); /* no deadline while the handler works */
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
    server__request_end(s, req);
    /* a kept-alive connection waits for its next request's headers */
    clients_conn_wait_headers(s->clients, req->client);
    free(req);
    atomic_fetch_sub(&s->inflight, 1);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static int64_t window;
    static int lines, dropped;
    char msg[512], more[32] = "";

    pthread_mutex_lock(&lock);
    int64_t now = clock_mono_ms();
    if (now - window >= 10000) {
        if (dropped)
            snprintf(more, sizeof(more), "%d", dropped);
        window = now;
        lines = dropped = 0;
    }
    int keep = lines < MHD_LOG_LINES;
    if (keep)
        lines++;
    else
        dropped++;
    pthread_mutex_unlock(&lock);
    if (more[0])
        log_warn("http server messages suppressed", "count", more);
    if (!keep)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http server", "detail", msg);
}

/* ---- binding ------------------------------------------------------------------ */

static int resolve_listen(struct sockaddr_storage *ss, socklen_t *sslen, const config *cfg)
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
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    return 0;
}

int server_bind(int *fd_out, const config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int one = 1, rc;

    assert(fd_out && cfg);
    *fd_out = -1;
    if ((rc = resolve_listen(&ss, &sslen, cfg)))
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        farm_error_set("cannot listen on %s: %s", cfg->listen, strerror(errno));
        return FARM_EIO;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) /* as libmicrohttpd does: IPv6 only, no mapped IPv4 */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 1024) != 0) {
        int err = errno;
        close(fd);
        if (err == EADDRINUSE)
            farm_error_set("cannot listen on %s: the port is in use (another farm or another "
                           "program listens there); choose another port with `--listen "
                           "HOST:PORT` or the config's \"listen\" (port 0 picks a free one)",
                           cfg->listen);
        else if (err == EACCES)
            farm_error_set("cannot listen on %s: permission denied (ports below 1024 need "
                           "privileges); choose a port above 1023 with `--listen HOST:PORT`",
                           cfg->listen);
        else if (err == EADDRNOTAVAIL)
            farm_error_set("cannot listen on %s: no interface of this host has that address; "
                           "listen on 127.0.0.1, 0.0.0.0 or one of its addresses",
                           cfg->listen);
        else
            farm_error_set("cannot listen on %s: %s", cfg->listen, strerror(err));
        return FARM_EIO;
    }
    *fd_out = fd;
    return 0;
}

/* "127.0.0.1:PORT" or "[::1]:PORT" into out; the port into *port. */
static void format_address(char *out, size_t n, int *port, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    *port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(out, n, "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        *port = ntohs(in6->sin6_port);
        snprintf(out, n, "[%s]:%d", ip, *port);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        *port = ntohs(in->sin_port);
        snprintf(out, n, "%s:%d", ip, *port);
    }
}

/* ---- start and stop --------------------------------------------------------------- */

/* Open files this process may have. */
static unsigned fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (1u << 24))
        return 1u << 16;
    return (unsigned)rl.rlim_cur;
}

/* How many connections the server takes: what it was told (options, then
 * http.max_connections), never more than the open files leave room for. */
static unsigned connections_max(const server_options *opt, const config *cfg)
{
    unsigned fds = fd_limit();
    unsigned room = fds > 2 * FD_RESERVE ? fds - FD_RESERVE : fds / 2;
    unsigned want = opt->max_connections            ? opt->max_connections
                    : cfg->http.max_connections > 0 ? (unsigned)cfg->http.max_connections
                                                    : room;
    if (want > room) {
        char a[16], b[16];
        snprintf(a, sizeof(a), "%u", want);
        snprintf(b, sizeof(b), "%u", room);
        log_warn("fewer connections than configured: the open-file limit leaves room for fewer",
                 "configured", a, "taken", b, "hint", "raise the open-file limit (LimitNOFILE=)");
        want = room;
    }
    return want < 16 ? 16 : want;
}

static int limits_start(server *s, const server_options *opt)
{
    const config *c = s->cfg;
    clients_options co = CLIENTS_OPTIONS_INIT;
    co.max_connections = connections_max(opt, c);
    co.max_per_ip = (unsigned)c->http.max_connections_per_ip;
    co.header_timeout_ms = c->http.header_timeout_s * 1000;
    co.body_min_rate = (size_t)c->http.body_min_rate;
    co.body_bytes_per_ip =
        c->http.body_bytes_per_ip ? c->http.body_bytes_per_ip : 2 * c->max_body_bytes;
    co.body_bytes_total = MAX_BODY_BYTES_TOTAL;
    co.max_large = c->http.max_large_bodies > 0 ? (unsigned)c->http.max_large_bodies : 8;
    co.trusted = c->http.trusted_proxies;
    co.ntrusted = c->http.ntrusted_proxies;
    return clients_start(&s->clients, &co);
}

/* Say once which webhooks are off: no secret, no unsigned deliveries. */
static void hooks_log(const config *c)
{
    if (!auth_github_on(c))
        log_write(c->github.enabled ? LOG_WARN : LOG_INFO, "webhook off", "hook", "/hooks/github",
                  "reason", "the GitHub webhook is off: set github.webhook_secret",
                  (const char *)0);
    if (!auth_azure_on(c))
        log_write(c->azure.enabled ? LOG_WARN : LOG_INFO, "webhook off", "hook", "/hooks/azure",
                  "reason",
                  "the Azure DevOps webhook is off: set azure.webhook_password or "
                  "azure.webhook_header_secret",
                  (const char *)0);
}

static void server_free(server *s)
{
    server__workers_stop(s);
    clients_stop(s->clients);
    guard_hosts_free(s->hosts);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}

int server_start(server **out, farm *f, const server_options *opt)
{
    server_options defaults = SERVER_OPTIONS_INIT;
    server *s = NULL;
    char host[256];
    int rc, port;

    assert(out && f);
    *out = NULL;
    if (!opt)
        opt = &defaults;
    int fd = opt->listen_fd;
    if (!(s = calloc(1, sizeof(*s)))) {
        if (fd >= 0)
            close(fd);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    s->farm = f;
    s->cfg = farm_config(f);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    atomic_init(&s->inflight, 0);
    if (fd < 0 && (rc = server_bind(&fd, s->cfg)))
        goto out;
    format_address(s->address, sizeof(s->address), &s->port, fd);
    if (config_listen_split(s->cfg, host, sizeof(host), &port) == 0)
        s->wildcard = !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
    if ((rc = guard_hosts_init(&s->hosts, s->cfg, s->port)) || (rc = limits_start(s, opt)))
        goto out;

    int workers = opt->workers > 0 ? opt->workers : 64;
    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&s->workers[i], NULL, server__worker_main, s) != 0) {
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
    /* The accept policy keeps to the limits (clients.h); libmicrohttpd's own
     * limit, split between its threads, only stops the open files running
     * out. */
    unsigned fds = fd_limit();
    unsigned backstop = fds > 64 ? fds - 64 : fds;
    size_t conn_memory = opt->conn_memory ? opt->conn_memory : 8u << 10;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sslen);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        MHD_OPTION_CONNECTION_LIMIT, backstop, MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory,
        MHD_OPTION_END);
    if (!s->daemon) {
        farm_error_set("cannot serve on %s: the HTTP server did not start", s->cfg->listen);
        rc = FARM_EIO;
        goto out;
    }
    fd = -1; /* the daemon's now */
    hooks_log(s->cfg);
    rc = 0;

out:
    if (rc) {
        if (fd >= 0)
            close(fd);
        server_free(s);
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
    server__workers_stop(s); /* deferred work finishes and its connections are resumed */
    wait_idle(s, deadline);
    MHD_stop_daemon(s->daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    server_free(s);
}
