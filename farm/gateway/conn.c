/*
 * conn.c - the gateway's side facing the agent: reading HTTP/1.1 requests
 * off a connection and writing answers back.
 *
 * The agent is untrusted, so the parser is strict and bounded: a request head
 * of at most GW_HEAD_MAX bytes and GW_HEADERS_MAX headers, no obsolete line
 * folding, no control characters in values, Content-Length or chunked (not
 * both, nothing else), a body of at most max_request bytes, and a deadline on
 * every read (client_timeout_ms). The bytes read past a request stay in a
 * gw_in for the next one; its buffer is freed once the body is in, so a call
 * that streams for minutes holds no input buffer.
 */
#include "internal.h"

#include "base/error.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- reading ---------------------------------------------------------------- */

/* Wait for bytes from the agent and append what comes to in (up to cap
 * bytes in all). 0, FARM_ETIMEOUT, or FARM_EIO when it hung up. */
static int read_more(gw_conn *c, gw_in *in, size_t cap)
{
    if (!in->data && !(in->data = malloc(GW_HEAD_MAX + 1)))
        return FARM_ENOMEM;
    if (in->len >= cap)
        return FARM_ETOOBIG;
    struct pollfd pf = {c->fd, POLLIN, 0};
    for (;;) {
        int pr = poll(&pf, 1, (int)c->gw->o.client_timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return FARM_ETIMEOUT;
        if (pr < 0)
            return FARM_EIO;
        ssize_t r = recv(c->fd, in->data + in->len, cap - in->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return FARM_EIO;
        in->len += (size_t)r;
        return 0;
    }
}

static void consume(gw_in *in, size_t n)
{
    memmove(in->data, in->data + n, in->len - n);
    in->len -= n;
}

/* The length of the head in in (through its blank line), or 0 when not all
 * of it is there. Bare LF line ends are taken as CRLF. */
static size_t head_end(const gw_in *in)
{
    for (size_t i = 0; i + 1 < in->len; i++) {
        if (in->data[i] != '\n')
            continue;
        if (in->data[i + 1] == '\n')
            return i + 2;
        if (in->data[i + 1] == '\r' && i + 2 < in->len && in->data[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static int is_tchar(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* One "Name: value" line (NUL-terminated, no line end) into q->h. */
static int parse_header(gw_req *q, char *line)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return 400;
    for (char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return 400;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = '\0';
    for (const char *p = v; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 400;
    if (q->nh >= GW_HEADERS_MAX)
        return 431;
    q->h[q->nh].name = line;
    q->h[q->nh].value = v;
    q->nh++;
    return 0;
}

static int has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t l = len;
        while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        if (l == n && strncasecmp(p, tok, n) == 0)
            return 1;
        p += len;
    }
    return 0;
}

/* What the headers say about the body and the connection. */
static int read_framing(gw_req *q, size_t max_request)
{
    q->content_length = -1;
    for (int i = 0; i < q->nh; i++) {
        const char *n = q->h[i].name, *v = q->h[i].value;
        if (strcasecmp(n, "Content-Length") == 0) {
            if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 15)
                return 400;
            int64_t len = strtoll(v, NULL, 10);
            if (q->content_length >= 0 && q->content_length != len)
                return 400;
            q->content_length = len;
        } else if (strcasecmp(n, "Transfer-Encoding") == 0) {
            if (strcasecmp(v, "chunked") != 0)
                return 501;
            q->chunked = 1;
        } else if (strcasecmp(n, "Connection") == 0) {
            if (has_token(v, "close"))
                q->keep_alive = 0;
            else if (has_token(v, "keep-alive"))
                q->keep_alive = 1;
        } else if (strcasecmp(n, "Expect") == 0) {
            if (strcasecmp(v, "100-continue") != 0)
                return 417;
            q->expect_continue = 1;
        }
    }
    if (q->chunked && q->content_length >= 0)
        return 400; /* both: the way requests get smuggled */
    if (q->content_length > (int64_t)max_request)
        return 413;
    return 0;
}

/* The request line and headers of q->head, in place. Returns 0 or a status. */
static int parse_head(gw_req *q, size_t max_request)
{
    char *p = q->head;
    while (*p == '\r' || *p == '\n') /* stray line ends before a request */
        p++;
    char *eol = strchr(p, '\n');
    if (!eol)
        return 400;
    *eol = '\0';
    if (eol > p && eol[-1] == '\r')
        eol[-1] = '\0';
    char *sp1 = strchr(p, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' '))
        return 400;
    size_t ml = (size_t)(sp1 - p);
    if (ml == 0 || ml >= sizeof(q->method) || strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != ml)
        return 400;
    memcpy(q->method, p, ml);
    q->method[ml] = '\0';
    *sp1 = *sp2 = '\0';
    q->target = sp1 + 1;
    if (q->target[0] != '/')
        return 400;
    for (const char *t = q->target; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
            return 400;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        q->keep_alive = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        q->http10 = 1;
    else
        return 505;
    q->path = strndup(q->target, strcspn(q->target, "?#"));
    if (!q->path)
        return 500;

    for (char *line = eol + 1; *line;) {
        char *end = strchr(line, '\n');
        if (!end)
            return 400;
        *end = '\0';
        if (end > line && end[-1] == '\r')
            end[-1] = '\0';
        if (!*line)
            break; /* the blank line */
        if (*line == ' ' || *line == '\t')
            return 400; /* obsolete line folding */
        int st = parse_header(q, line);
        if (st)
            return st;
        line = end + 1;
    }
    return read_framing(q, max_request);
}

int gw_req_read_head(gw_req *q, int *status, gw_conn *c, gw_in *in)
{
    memset(q, 0, sizeof(*q));
    buf_init(&q->body, c->gw->o.max_request);
    q->content_length = -1;
    *status = 0;
    size_t len;
    while ((len = head_end(in)) == 0) {
        size_t had = in->len;
        int rc = read_more(c, in, GW_HEAD_MAX);
        if (rc == FARM_ETOOBIG) {
            *status = 431;
            return rc;
        }
        if (rc) {
            /* silence or a hang-up between requests is the normal end */
            *status = had > 0 && rc == FARM_ETIMEOUT ? 408 : 0;
            return rc == FARM_ENOMEM ? rc : FARM_EIO;
        }
    }
    if (!(q->head = malloc(len + 1))) {
        *status = 500;
        return FARM_ENOMEM;
    }
    memcpy(q->head, in->data, len);
    q->head[len] = '\0';
    consume(in, len);
    int st = parse_head(q, c->gw->o.max_request);
    if (st) {
        *status = st;
        return FARM_EINVALID;
    }
    return 0;
}

/* Copy n body bytes, from what was read already and then the socket. */
static int read_exact(gw_req *q, gw_conn *c, gw_in *in, size_t n)
{
    while (n > 0) {
        if (in->len == 0) {
            int rc = read_more(c, in, GW_HEAD_MAX);
            if (rc)
                return rc;
        }
        size_t k = in->len < n ? in->len : n;
        int rc = buf_append(&q->body, in->data, k);
        if (rc)
            return rc;
        consume(in, k);
        n -= k;
    }
    return 0;
}

/* One line of a chunked body (without its line end) into line. */
static int read_line(char *line, size_t size, gw_conn *c, gw_in *in)
{
    for (;;) {
        char *nl = in->data ? memchr(in->data, '\n', in->len) : NULL;
        if (nl) {
            size_t l = (size_t)(nl - in->data);
            if (l >= size)
                return FARM_EINVALID;
            memcpy(line, in->data, l);
            line[l] = '\0';
            if (l > 0 && line[l - 1] == '\r')
                line[l - 1] = '\0';
            consume(in, l + 1);
            return 0;
        }
        if (in->len >= size)
            return FARM_EINVALID;
        int rc = read_more(c, in, GW_HEAD_MAX);
        if (rc)
            return rc;
    }
}

static int read_chunked(gw_req *q, gw_conn *c, gw_in *in)
{
    char line[256];
    for (;;) {
        int rc = read_line(line, sizeof(line), c, in);
        if (rc)
            return rc;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(line, &end, 16);
        if (end == line || errno || (*end && *end != ';' && *end != ' ' && *end != '\t'))
            return FARM_EINVALID;
        if (n > q->body.max - q->body.len)
            return FARM_ETOOBIG;
        if (n == 0)
            break;
        if ((rc = read_exact(q, c, in, (size_t)n)) != 0)
            return rc;
        if ((rc = read_line(line, sizeof(line), c, in)) != 0)
            return rc;
        if (line[0])
            return FARM_EINVALID;
    }
    do { /* trailers, up to the blank line */
        int rc = read_line(line, sizeof(line), c, in);
        if (rc)
            return rc;
    } while (line[0]);
    return 0;
}

int gw_req_read_body(gw_req *q, int *status, gw_conn *c, gw_in *in)
{
    *status = 0;
    int rc = 0;
    if (q->expect_continue && (q->chunked || q->content_length > 0) && !q->http10) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (gw_send(c, cont, sizeof(cont) - 1))
            return FARM_EIO;
    }
    if (q->chunked)
        rc = read_chunked(q, c, in);
    else if (q->content_length > 0)
        rc = read_exact(q, c, in, (size_t)q->content_length);
    if (rc == FARM_ETOOBIG)
        *status = 413;
    else if (rc == FARM_EINVALID)
        *status = 400;
    else if (rc == FARM_ETIMEOUT)
        *status = 408;
    else if (rc == FARM_ENOMEM)
        *status = 500;
    if (in->len == 0) { /* nothing pipelined: no input buffer while the call runs */
        free(in->data);
        in->data = NULL;
    }
    return rc;
}

const char *gw_req_header(const gw_req *q, const char *name)
{
    for (int i = 0; i < q->nh; i++)
        if (strcasecmp(q->h[i].name, name) == 0)
            return q->h[i].value;
    return NULL;
}

void gw_req_free(gw_req *q)
{
    free(q->head);
    free(q->path);
    buf_free(&q->body);
    memset(q, 0, sizeof(*q));
}

/* ---- writing ---------------------------------------------------------------- */

int gw_send(gw_conn *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return FARM_EIO; /* gone, or SO_SNDTIMEO: not reading */
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

const char *gw_reason(long status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 529:
        return "Overloaded";
    default:
        return "Status";
    }
}

int gw_send_error(gw_conn *c, const gw_req *q, int anthropic, int status, const char *type,
                  const char *code, const char *message, int close_after)
{
    json_t *body = anthropic ? json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                                         type, "message", message)
                             : json_pack("{s:{s:s, s:s, s:n, s:s?}}", "error", "message", message,
                                         "type", type, "param", "code", code);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return FARM_ENOMEM;
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.%d %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     q && q->http10 ? 0 : 1, status, gw_reason(status), strlen(text),
                     status < 500 ? "x-should-retry: false\r\n" : "",
                     close_after || !q || !q->keep_alive ? "Connection: close\r\n" : "");
    int rc = gw_send(c, head, (size_t)n);
    if (rc == 0)
        rc = gw_send(c, text, strlen(text));
    free(text);
    return rc;
}
