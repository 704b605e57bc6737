/*
 * proxy.c - the egress proxy of one allowlist-mode run.
 *
 * The sandbox has no network but its own loopback. The farm runs this proxy
 * outside, on a Unix socket that is bound into the sandbox; the helper inside
 * (helper.c) offers it on the sandbox's 127.0.0.1 as HTTP_PROXY/HTTPS_PROXY.
 * It speaks HTTP CONNECT (for TLS and anything else) and plain HTTP with an
 * absolute URL, allows only the configured host[:port] patterns, resolves
 * names itself, and reports each allowed or denied request to the caller.
 * One thread accepts; each connection gets a thread of its own (at most
 * MAX_CONNS at once), so a slow upstream never holds up the others.
 */
#include "internal.h"

#include "base/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS          64
#define HEAD_MAX           16384
#define HEAD_TIMEOUT_MS    10000
#define CONNECT_TIMEOUT_MS 10000

typedef struct conn {
    struct sbx_proxy *p;
    int fd; /* from the sandbox */
    int up; /* to the destination, or -1 */
    int done;
    pthread_t th;
} conn;

struct sbx_proxy {
    int lfd;
    int stop_r, stop_w;
    char *sock;
    char **allow;
    char *target; /* forwarding mode (sbx_forward_start): every connection goes here */
    sandbox_proxy_fn fn;
    void *ctx;
    pthread_t acceptor;
    pthread_mutex_t lock;
    int stopping;
    conn *conns[MAX_CONNS];
};

/* --- allowlist ---------------------------------------------------------- */

static int host_match(const char *pat, size_t pl, const char *host)
{
    size_t hl = strlen(host);
    if (pl == 1 && pat[0] == '*')
        return 1;
    if (pl > 2 && pat[0] == '*' && pat[1] == '.') {
        /* "*.example.com" matches a.example.com and a.b.example.com */
        size_t sl = pl - 1; /* ".example.com" */
        return hl > sl && strncasecmp(host + hl - sl, pat + 1, sl) == 0;
    }
    return hl == pl && strncasecmp(host, pat, pl) == 0;
}

int sandbox_allow_match(const char *const *allow, const char *host, int port)
{
    if (!host || !*host || port < 1 || port > 65535)
        return 0;
    for (size_t i = 0; allow && allow[i]; i++) {
        const char *a = allow[i];
        const char *colon = strrchr(a, ':');
        size_t pl = colon ? (size_t)(colon - a) : strlen(a);
        if (!host_match(a, pl, host))
            continue;
        if (!colon) {
            if (port == 80 || port == 443)
                return 1;
        } else if (strcmp(colon + 1, "*") == 0 || atoi(colon + 1) == port) {
            return 1;
        }
    }
    return 0;
}

/* --- one connection ----------------------------------------------------- */

static void reply(int fd, const char *status, const char *why)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s\n",
                     status, strlen(why) + 1, why);
    if (n > 0)
        sbx_send_all(fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

static void report(struct sbx_proxy *p, int allowed, const char *host, int port, const char *reason)
{
    if (p->fn)
        p->fn(p->ctx, allowed, host, port, reason);
}

/* Read the request head (up to the blank line) into h: *len is its length
 * including the blank line, *total the bytes read (more may follow).
 * Returns 0, FARM_ETIMEOUT, FARM_EIO (the sandbox hung up) or FARM_ETOOBIG
 * (no blank line in cap - 1 bytes); sets no error (the thread answers the
 * sandbox). */
static int read_head(size_t *len, size_t *total, int fd, char *h, size_t cap)
{
    size_t n = 0;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, HEAD_TIMEOUT_MS);
        if (pr <= 0)
            return pr == 0 ? FARM_ETIMEOUT : FARM_EIO;
        ssize_t r = recv(fd, h + n, cap - 1 - n, 0);
        if (r <= 0)
            return FARM_EIO;
        n += (size_t)r;
        h[n] = '\0';
        char *end = strstr(h, "\r\n\r\n");
        if (end) {
            *len = (size_t)(end + 4 - h);
            *total = n;
            return 0;
        }
        if (n >= cap - 1)
            return FARM_ETOOBIG;
    }
}

/* Split "host:port" or "[v6]:port"; port defaults to def. Returns 0 or
 * FARM_EINVALID. */
static int split_hostport(const char *s, size_t len, char *host, size_t hcap, int *port, int def)
{
    char tmp[300];
    if (len == 0 || len >= sizeof(tmp))
        return FARM_EINVALID;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *h = tmp, *ps = NULL;
    if (tmp[0] == '[') {
        char *close = strchr(tmp, ']');
        if (!close)
            return FARM_EINVALID;
        *close = '\0';
        h = tmp + 1;
        if (close[1] == ':')
            ps = close + 2;
        else if (close[1])
            return FARM_EINVALID;
    } else {
        char *c = strrchr(tmp, ':');
        if (c) {
            *c = '\0';
            ps = c + 1;
        }
    }
    *port = def;
    if (ps) {
        char *end;
        long v = strtol(ps, &end, 10);
        if (!*ps || *end || v < 1 || v > 65535)
            return FARM_EINVALID;
        *port = (int)v;
    }
    if (!*h || strlen(h) >= hcap)
        return FARM_EINVALID;
    for (const char *c = h; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_' || *c == ':'))
            return FARM_EINVALID;
    snprintf(host, hcap, "%s", h);
    return 0;
}

/* Addresses a name may not lead to: loopback (the farm's own ports),
 * link-local (cloud metadata services), unspecified and multicast. An
 * allowlisted name that resolves there (DNS rebinding, a hostile record) is
 * refused; an address written out in the allowlist is taken as meant. */
static int forbidden(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return (a >> 24) == 127 || (a >> 16) == 0xa9fe || a == 0 || (a >> 28) == 0xe;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            struct sockaddr_in v4 = {.sin_family = AF_INET};
            memcpy(&v4.sin_addr, &a->s6_addr[12], 4);
            return forbidden((const struct sockaddr *)&v4);
        }
        return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
               IN6_IS_ADDR_MULTICAST(a);
    }
    return 1;
}

static int is_literal(const char *host)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

/* Connect to host:port, the socket into *out. Returns 0, FARM_ENOTFOUND
 * when the name does not resolve, FARM_EAUTH when it resolves only to
 * forbidden addresses, FARM_EIO when no connect worked. */
static int dial(int *out, const char *host, int port)
{
    char ps[8];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    if (getaddrinfo(host, ps, &hints, &res) != 0) {
        hints.ai_flags = 0;
        if (getaddrinfo(host, ps, &hints, &res) != 0)
            return FARM_ENOTFOUND;
    }
    int fd = -1, tried = 0, literal = is_literal(host);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!literal && forbidden(ai->ai_addr))
            continue;
        tried = 1;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd pf = {fd, POLLOUT, 0};
            int err = 0;
            socklen_t el = sizeof(err);
            if (poll(&pf, 1, CONNECT_TIMEOUT_MS) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
                break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return tried ? FARM_EIO : FARM_EAUTH;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *out = fd;
    return 0;
}

/* The length of the origin-form path: up to the space before the version,
 * or just "/" when the URL had no path. */
static size_t slash_or_root_len(const char *path, const char *sp2)
{
    return path >= sp2 || path < sp2 - HEAD_MAX ? 1 : (size_t)(sp2 - path);
}

/* A request read from the sandbox. */
typedef struct request {
    char *head;       /* HEAD_MAX bytes: the head, then whatever followed it */
    size_t head_len;  /* up to and with the blank line */
    size_t total;     /* bytes read */
    char *eol;        /* the end of the request line */
    char *sp1, *sp2;  /* the spaces around the target */
    int is_connect;   /* CONNECT host:port, else an absolute http:// URL */
    const char *path; /* plain HTTP: the URL's path, or "/" */
    char host[256];
    int port;
} request;

/* The request line. Returns 0, or FARM_EINVALID with *why the reason to
 * give the sandbox. */
static int parse_request(request *q, const char **why)
{
    char *head = q->head;
    q->eol = strstr(head, "\r\n");
    q->sp1 = memchr(head, ' ', (size_t)(q->eol - head));
    q->sp2 = q->sp1 ? memchr(q->sp1 + 1, ' ', (size_t)(q->eol - q->sp1 - 1)) : NULL;
    if (!q->sp1 || !q->sp2) {
        *why = "malformed request line";
        return FARM_EINVALID;
    }
    q->is_connect = (size_t)(q->sp1 - head) == 7 && strncmp(head, "CONNECT", 7) == 0;
    const char *target = q->sp1 + 1;
    size_t tl = (size_t)(q->sp2 - target);
    if (q->is_connect) {
        if (split_hostport(target, tl, q->host, sizeof(q->host), &q->port, 443) < 0 ||
            q->port == 0) {
            *why = "CONNECT needs host:port";
            return FARM_EINVALID;
        }
        return 0;
    }
    if (tl < 8 || strncasecmp(target, "http://", 7) != 0) {
        *why = "only CONNECT and absolute http:// URLs go through this proxy";
        return FARM_EINVALID;
    }
    const char *auth = target + 7;
    const char *slash = memchr(auth, '/', tl - 7);
    q->path = slash ? slash : "/";
    size_t al = slash ? (size_t)(slash - auth) : tl - 7;
    const char *at = memchr(auth, '@', al); /* drop userinfo */
    if (at) {
        al -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    if (split_hostport(auth, al, q->host, sizeof(q->host), &q->port, 80) < 0) {
        *why = "bad host in URL";
        return FARM_EINVALID;
    }
    return 0;
}

/* Plain HTTP: the request line in origin form and the headers minus
 * Proxy-*, to up. Returns 0 or FARM_EIO. */
static int send_origin_head(int up, const request *q)
{
    const char *head = q->head;
    char line[HEAD_MAX + 64];
    size_t pl = slash_or_root_len(q->path, q->sp2);
    int n = snprintf(line, sizeof(line), "%.*s %.*s%.*s\r\n", (int)(q->sp1 - head), head, (int)pl,
                     q->path, (int)(q->eol - q->sp2), q->sp2);
    if (n < 0 || (size_t)n >= sizeof(line) || sbx_send_all(up, line, (size_t)n) < 0)
        return FARM_EIO;
    for (const char *h = q->eol + 2; h < head + q->head_len - 2;) {
        const char *e = strstr(h, "\r\n");
        if (!e)
            break;
        if (strncasecmp(h, "Proxy-", 6) != 0 && sbx_send_all(up, h, (size_t)(e + 2 - h)) < 0)
            return FARM_EIO;
        h = e + 2;
    }
    return sbx_send_all(up, "\r\n", 2);
}

/* Connect to the destination for an allowed request; the socket goes into
 * c->up. Returns 0, or a FARM_E* code once the sandbox has its answer. */
static int connect_upstream(conn *c, const request *q)
{
    struct sbx_proxy *p = c->p;
    int up = -1;
    int rc = dial(&up, q->host, q->port);
    if (rc < 0) {
        const char *why = rc == FARM_ENOTFOUND ? "resolve failed"
                          : rc == FARM_EAUTH   ? "resolves to a loopback or link-local address"
                                               : "connect failed";
        report(p, 0, q->host, q->port, why);
        reply(c->fd, rc == FARM_EAUTH ? "403 Forbidden" : "502 Bad Gateway", why);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    c->up = up;
    int stopping = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return stopping ? FARM_ECANCELLED : 0;
}

/* Forwarding mode: connect to the target socket and relay both ways. */
static void forward(conn *c)
{
    struct sbx_proxy *p = c->p;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->target);
    int up = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (up < 0)
        return;
    if (connect(up, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(up);
        return;
    }
    pthread_mutex_lock(&p->lock);
    c->up = up;
    int stopping = p->stopping;
    pthread_mutex_unlock(&p->lock);
    if (!stopping)
        sbx_relay(c->fd, c->up);
}

/* One connection's thread: read the request, check it against the
 * allowlist, connect, pass the head on, then relay both ways. */
static void *serve(void *arg)
{
    conn *c = arg;
    struct sbx_proxy *p = c->p;
    request q = {.head = NULL};
    const char *why = NULL;
    if (p->target) {
        forward(c);
        goto out;
    }
    if (!(q.head = malloc(HEAD_MAX)))
        goto out;
    int rc = read_head(&q.head_len, &q.total, c->fd, q.head, HEAD_MAX);
    if (rc < 0) {
        if (rc == FARM_ETOOBIG)
            reply(c->fd, "431 Request Header Fields Too Large", "request head too large");
        goto out;
    }
    if (parse_request(&q, &why) < 0) {
        reply(c->fd, "400 Bad Request", why);
        goto out;
    }
    if (!sandbox_allow_match((const char *const *)p->allow, q.host, q.port)) {
        report(p, 0, q.host, q.port, "not on the allowlist");
        reply(c->fd, "403 Forbidden", "farm sandbox: destination not on the allowlist");
        goto out;
    }
    if (connect_upstream(c, &q) < 0)
        goto out;
    report(p, 1, q.host, q.port, "allowlisted");
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    rc = q.is_connect ? sbx_send_all(c->fd, ok, sizeof(ok) - 1) : send_origin_head(c->up, &q);
    if (rc < 0 || (q.total > q.head_len &&
                   sbx_send_all(c->up, q.head + q.head_len, q.total - q.head_len) < 0))
        goto out;
    sbx_relay(c->fd, c->up);
out:
    free(q.head);
    pthread_mutex_lock(&p->lock);
    if (c->up >= 0)
        close(c->up);
    close(c->fd);
    c->up = c->fd = -1;
    c->done = 1;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Join finished connections; with the lock held. Returns a free slot or -1. */
static int reap(struct sbx_proxy *p)
{
    int slot = -1;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (p->conns[i] && p->conns[i]->done) {
            pthread_join(p->conns[i]->th, NULL);
            free(p->conns[i]);
            p->conns[i] = NULL;
        }
        if (!p->conns[i] && slot < 0)
            slot = i;
    }
    return slot;
}

static void *accept_loop(void *arg)
{
    struct sbx_proxy *p = arg;
    for (;;) {
        struct pollfd pf[2] = {{p->lfd, POLLIN, 0}, {p->stop_r, POLLIN, 0}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[1].revents)
            break;
        int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&p->lock);
        int slot = reap(p);
        conn *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            pthread_mutex_unlock(&p->lock);
            reply(fd, "503 Service Unavailable", "too many connections");
            close(fd);
            continue;
        }
        c->p = p;
        c->fd = fd;
        c->up = -1;
        if (pthread_create(&c->th, NULL, serve, c) != 0) {
            pthread_mutex_unlock(&p->lock);
            close(fd);
            free(c);
            continue;
        }
        p->conns[slot] = c;
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

int sbx_proxy_start(sbx_proxy **out, const char *sock, const char *const *allow,
                    sandbox_proxy_fn fn, void *ctx)
{
    *out = NULL;
    int rc = FARM_EIO;
    struct sbx_proxy *p = calloc(1, sizeof(*p));
    if (!p) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    p->lfd = p->stop_r = p->stop_w = -1;
    pthread_mutex_init(&p->lock, NULL);
    p->fn = fn;
    p->ctx = ctx;
    size_t n = 0;
    while (allow && allow[n])
        n++;
    p->allow = calloc(n + 1, sizeof(char *));
    p->sock = strdup(sock);
    if (!p->allow || !p->sock)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (!(p->allow[i] = strdup(allow[i])))
            goto nomem;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path)) {
        farm_error_set("proxy: socket path too long: %s", sock);
        rc = FARM_EINVALID;
        goto out;
    }
    strcpy(sa.sun_path, sock);
    int sp[2];
    if (pipe2(sp, O_CLOEXEC) < 0) {
        farm_error_set("proxy: pipe: %s", strerror(errno));
        goto out;
    }
    p->stop_r = sp[0];
    p->stop_w = sp[1];
    p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chmod(sock, 0600) < 0 || listen(p->lfd, 64) < 0) {
        farm_error_set("proxy: cannot listen on %s: %s", sock, strerror(errno));
        goto out;
    }
    if (pthread_create(&p->acceptor, NULL, accept_loop, p) != 0) {
        farm_error_set("proxy: cannot start its thread");
        unlink(sock);
        goto out;
    }
    *out = p;
    return 0;
nomem:
    farm_error_set("out of memory");
    rc = FARM_ENOMEM;
out:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->stop_r >= 0)
        close(p->stop_r);
    if (p->stop_w >= 0)
        close(p->stop_w);
    for (size_t i = 0; p->allow && p->allow[i]; i++)
        free(p->allow[i]);
    free(p->allow);
    free(p->sock);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return rc;
}

int sbx_forward_start(sbx_proxy **out, const char *sock, const char *target)
{
    int rc = sbx_proxy_start(out, sock, NULL, NULL, NULL);
    if (rc < 0)
        return rc;
    char *t = strdup(target);
    if (!t) {
        sbx_proxy_stop(*out);
        *out = NULL;
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    /* the acceptor reads it under the lock when a connection comes */
    pthread_mutex_lock(&(*out)->lock);
    (*out)->target = t;
    pthread_mutex_unlock(&(*out)->lock);
    return 0;
}

void sbx_proxy_stop(sbx_proxy *p)
{
    if (!p)
        return;
    ssize_t w = write(p->stop_w, "x", 1);
    (void)w;
    pthread_join(p->acceptor, NULL);
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    for (int i = 0; i < MAX_CONNS; i++) {
        conn *c = p->conns[i];
        if (c && !c->done) {
            if (c->fd >= 0)
                shutdown(c->fd, SHUT_RDWR);
            if (c->up >= 0)
                shutdown(c->up, SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < MAX_CONNS; i++) {
        if (p->conns[i]) {
            pthread_join(p->conns[i]->th, NULL);
            free(p->conns[i]);
        }
    }
    close(p->lfd);
    close(p->stop_r);
    close(p->stop_w);
    unlink(p->sock);
    for (size_t i = 0; p->allow[i]; i++)
        free(p->allow[i]);
    free(p->allow);
    free(p->sock);
    free(p->target);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
