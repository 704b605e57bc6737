/*
 * gateway.c - the gateway's life: listening on the Unix socket (and a
 * loopback port), one thread per agent connection, and stopping.
 *
 * The pattern is the egress proxy's (sandbox/proxy.c): one thread accepts,
 * each connection gets a thread of its own (at most max_conns), and stopping
 * shuts every connection down and joins its thread. A connection's thread
 * reads requests (conn.c) and serves each one (call.c) in turn, so a slow
 * model holds up nothing but its own agent. The runs are in run.c.
 */
#include "internal.h"

#include "base/error.h"
#include "base/http.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define THREAD_STACK (512 * 1024) /* curl and OpenSSL in a TLS handshake stay well within it */

/* ---- the calls of a run, for removal and stop ------------------------------------ */

void gw_conn_serving(gw_conn *c, gw_run *r)
{
    pthread_mutex_lock(&c->gw->lock);
    c->run = r;
    if (r && (r->revoked || c->gw->stopping))
        c->cancel = 1; /* removed between the token check and now */
    pthread_mutex_unlock(&c->gw->lock);
}

void gw_stop_calls_locked(gateway *gw, gw_run *r)
{
    for (int i = 0; i < gw->o.max_conns; i++) {
        gw_conn *c = gw->conns[i];
        if (!c || c->done || (r && c->run != r))
            continue;
        c->cancel = 1;
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    }
}

/* ---- connections ------------------------------------------------------------------ */

static void *conn_main(void *arg)
{
    gw_conn *c = arg;
    gw_in in = {NULL, 0};
    for (;;) {
        gw_req q;
        int status;
        if (gw_req_read_head(&q, &status, c, &in)) {
            if (status)
                gw_send_error(c, &q, 0, status, "invalid_request_error", NULL, gw_reason(status),
                              1);
            gw_req_free(&q);
            break;
        }
        int again = gw_call_serve(c, &q, &in);
        gw_req_free(&q);
        if (!again || c->cancel)
            break;
    }
    free(in.data);
    pthread_mutex_lock(&c->gw->lock);
    close(c->fd);
    c->fd = -1;
    c->done = 1;
    pthread_mutex_unlock(&c->gw->lock);
    return NULL;
}

/* Join finished connections; with the lock held. Returns a free slot or -1. */
static int reap_locked(gateway *gw)
{
    int slot = -1;
    for (int i = 0; i < gw->o.max_conns; i++) {
        if (gw->conns[i] && gw->conns[i]->done) {
            pthread_join(gw->conns[i]->th, NULL);
            free(gw->conns[i]);
            gw->conns[i] = NULL;
        }
        if (!gw->conns[i] && slot < 0)
            slot = i;
    }
    return slot;
}

static void refuse(int fd, const char *status)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     status);
    ssize_t w = send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

static void adopt(gateway *gw, int fd, int is_tcp)
{
    struct timeval tv = {gw->o.client_timeout_ms / 1000, (gw->o.client_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (is_tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    pthread_mutex_lock(&gw->lock);
    int slot = reap_locked(gw);
    gw_conn *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        pthread_mutex_unlock(&gw->lock);
        refuse(fd, "503 Service Unavailable");
        close(fd);
        return;
    }
    c->gw = gw;
    c->fd = fd;
    c->is_tcp = is_tcp;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int rc = pthread_create(&c->th, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_unlock(&gw->lock);
        refuse(fd, "503 Service Unavailable");
        close(fd);
        free(c);
        return;
    }
    gw->conns[slot] = c;
    pthread_mutex_unlock(&gw->lock);
}

static void *accept_loop(void *arg)
{
    gateway *gw = arg;
    for (;;) {
        struct pollfd pf[3] = {{gw->stop_r, POLLIN, 0},
                               {gw->lfd_unix, gw->lfd_unix >= 0 ? POLLIN : 0, 0},
                               {gw->lfd_tcp, gw->lfd_tcp >= 0 ? POLLIN : 0, 0}};
        if (poll(pf, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("gateway: poll failed; no more connections", "error", strerror(errno));
            break;
        }
        if (pf[0].revents)
            break;
        for (int k = 1; k <= 2; k++) {
            if (!(pf[k].revents & POLLIN))
                continue;
            int fd = accept4(pf[k].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                adopt(gw, fd, k == 2);
        }
    }
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------- */

static int listen_unix(gateway *gw, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        farm_error_set("gateway: socket path too long: %s", path);
        return FARM_EINVALID;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            farm_error_set("gateway: %s exists and is not a socket", path);
            return FARM_EINVALID;
        }
        unlink(path);
    }
    gw->lfd_unix = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    mode_t old = umask(0177); /* never reachable by others, not even for a moment */
    int rc = gw->lfd_unix < 0 ? -1 : bind(gw->lfd_unix, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(gw->lfd_unix, 128) < 0) {
        farm_error_set("gateway: cannot listen on %s: %s", path, strerror(errno));
        return FARM_EIO;
    }
    if (!(gw->unix_path = strdup(path)))
        return FARM_ENOMEM;
    return 0;
}

static int listen_tcp(gateway *gw, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    gw->lfd_tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (gw->lfd_tcp < 0 ||
        setsockopt(gw->lfd_tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(gw->lfd_tcp, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(gw->lfd_tcp, 128) < 0) {
        farm_error_set("gateway: cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
        return FARM_EIO;
    }
    socklen_t len = sizeof(sa);
    getsockname(gw->lfd_tcp, (struct sockaddr *)&sa, &len);
    gw->tcp_port = ntohs(sa.sin_port);
    return 0;
}

static void defaults(gateway_opts *o)
{
    gateway_opts d = GATEWAY_OPTS_INIT;
    if (o->max_conns <= 0)
        o->max_conns = d.max_conns;
    if (o->max_request == 0)
        o->max_request = d.max_request;
    if (o->connect_timeout_ms <= 0)
        o->connect_timeout_ms = d.connect_timeout_ms;
    if (o->idle_timeout_ms <= 0)
        o->idle_timeout_ms = d.idle_timeout_ms;
    if (o->call_timeout_ms <= 0)
        o->call_timeout_ms = d.call_timeout_ms;
    if (o->client_timeout_ms <= 0)
        o->client_timeout_ms = d.client_timeout_ms;
}

static void gateway_free(gateway *gw)
{
    if (gw->lfd_unix >= 0)
        close(gw->lfd_unix);
    if (gw->lfd_tcp >= 0)
        close(gw->lfd_tcp);
    if (gw->unix_path)
        unlink(gw->unix_path);
    if (gw->stop_r >= 0)
        close(gw->stop_r);
    if (gw->stop_w >= 0)
        close(gw->stop_w);
    while (gw->runs) {
        gw_run *r = gw->runs;
        gw->runs = r->next;
        gw_run_free(r);
    }
    free(gw->unix_path);
    free(gw->conns);
    pthread_cond_destroy(&gw->changed);
    pthread_mutex_destroy(&gw->lock);
    free(gw);
}

int gateway_start(gateway **out, const gateway_opts *o)
{
    *out = NULL;
    if (!o || (!o->unix_path && o->tcp_port < 0) || o->tcp_port > 65535) {
        farm_error_set("gateway: nothing to listen on (a Unix socket path or a TCP port)");
        return FARM_EINVALID;
    }
    int rc = http_global_init();
    if (rc)
        return rc;
    gateway *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        farm_error_set("gateway: out of memory");
        return FARM_ENOMEM;
    }
    gw->o = *o;
    defaults(&gw->o);
    gw->o.unix_path = NULL;
    gw->lfd_unix = gw->lfd_tcp = gw->stop_r = gw->stop_w = -1;
    gw->tcp_port = -1;
    pthread_mutex_init(&gw->lock, NULL);
    pthread_cond_init(&gw->changed, NULL);
    int sp[2];
    if (!(gw->conns = calloc((size_t)gw->o.max_conns, sizeof(gw_conn *)))) {
        farm_error_set("gateway: out of memory");
        rc = FARM_ENOMEM;
    } else if (pipe2(sp, O_CLOEXEC) < 0) {
        farm_error_set("gateway: pipe: %s", strerror(errno));
        rc = FARM_EIO;
    } else {
        gw->stop_r = sp[0];
        gw->stop_w = sp[1];
    }
    if (rc == 0 && o->unix_path)
        rc = listen_unix(gw, o->unix_path);
    if (rc == 0 && o->tcp_port >= 0)
        rc = listen_tcp(gw, o->tcp_port);
    if (rc == 0 && pthread_create(&gw->acceptor, NULL, accept_loop, gw) != 0) {
        farm_error_set("gateway: cannot start its thread");
        rc = FARM_EIO;
    }
    if (rc) {
        gateway_free(gw);
        return rc;
    }
    *out = gw;
    return 0;
}

int gateway_tcp_port(const gateway *gw)
{
    return gw ? gw->tcp_port : -1;
}

void gateway_stop(gateway *gw)
{
    if (!gw)
        return;
    ssize_t w = write(gw->stop_w, "x", 1);
    (void)w;
    pthread_join(gw->acceptor, NULL);
    pthread_mutex_lock(&gw->lock);
    gw->stopping = 1;
    gw_stop_calls_locked(gw, NULL);
    pthread_mutex_unlock(&gw->lock);
    for (int i = 0; i < gw->o.max_conns; i++) {
        if (gw->conns[i]) {
            pthread_join(gw->conns[i]->th, NULL);
            free(gw->conns[i]);
        }
    }
    gateway_free(gw);
}
