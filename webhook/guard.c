/*
 * guard.c - the header-time checks of a request: its target, Host, Origin,
 * body framing and content type (see guard.h).
 *
 * Everything here reads strings and answers yes or no; nothing allocates
 * except guard_hosts_init(). A name is compared in one canonical form
 * (lower case, no brackets, no trailing dot, IP literals as inet_ntop()
 * writes them), so "LOCALHOST.", "[0:0::1]" and "::1" compare as they should.
 */
#include "guard.h"
#include "base/crypto.h"
#include "base/error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the target ------------------------------------------------------------ */

int guard_target_check(const char *target, size_t len, const char **why)
{
    *why = NULL;
    if (!target || len == 0 || target[0] != '/') {
        *why = "the request target must be an absolute path, such as /healthz";
        return 400;
    }
    if (len > GUARD_TARGET_MAX) {
        *why = "the request target is longer than 2048 bytes";
        return 414;
    }
    if (strnlen(target, len) != len) {
        *why = "the request target holds a NUL byte";
        return 400;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c == 0x7f || c == '#') {
            *why = "the request target holds a space, a control character or a '#'";
            return 400;
        }
        if (c != '%')
            continue;
        if (i + 2 >= len || crypto_hex_value(target[i + 1]) < 0 ||
            crypto_hex_value(target[i + 2]) < 0) {
            *why = "the request target holds a '%' that is not followed by two hex digits";
            return 400;
        }
        if (target[i + 1] == '0' && target[i + 2] == '0') {
            *why = "the request target holds an escaped NUL (%00)";
            return 400;
        }
        i += 2;
    }
    return 0;
}

/* ---- names ---------------------------------------------------------------- */

/* name (n bytes, not terminated) into out in canonical form. */
static int name_canonical(char *out, size_t outlen, const char *name, size_t n, int bracketed)
{
    char tmp[GUARD_NAME_MAX];
    if (n == 0 || n >= sizeof(tmp) || n >= outlen)
        return FARM_EINVALID;
    memcpy(tmp, name, n);
    tmp[n] = '\0';
    if (bracketed) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, tmp, &a6) != 1 || !inet_ntop(AF_INET6, &a6, out, (socklen_t)outlen))
            return FARM_EINVALID;
        return 0;
    }
    if (tmp[n - 1] == '.') /* "example.com." is "example.com" */
        tmp[--n] = '\0';
    if (n == 0 || tmp[0] == '.' || tmp[n - 1] == '.' || strstr(tmp, "..")) /* an empty label */
        return FARM_EINVALID;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)tmp[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return FARM_EINVALID;
        tmp[i] = (char)tolower(c);
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) == 1)
        return inet_ntop(AF_INET, &a4, out, (socklen_t)outlen) ? 0 : FARM_EINVALID;
    memcpy(out, tmp, n + 1);
    return 0;
}

/* "0".."65535", digits only (0 is public_url's "any port" before the bind). */
static int port_parse(const char *s, size_t n)
{
    int port = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port <= 65535 ? port : -1;
}

/* host (n bytes) as "name", "name:port" or "[v6]:port". */
static int authority_parse(char *name, size_t namelen, int *port, const char *host, size_t n)
{
    *port = -1;
    if (n == 0)
        return FARM_EINVALID;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', n);
        if (!close)
            return FARM_EINVALID;
        size_t rest = n - (size_t)(close + 1 - host);
        if (rest > 0) {
            if (close[1] != ':' || (*port = port_parse(close + 2, rest - 1)) < 0)
                return FARM_EINVALID;
        }
        return name_canonical(name, namelen, host + 1, (size_t)(close - host - 1), 1);
    }
    const char *colon = memchr(host, ':', n);
    size_t hn = n;
    if (colon) {
        hn = (size_t)(colon - host);
        if ((*port = port_parse(colon + 1, n - hn - 1)) < 0) /* also refuses a second ':' */
            return FARM_EINVALID;
    }
    return name_canonical(name, namelen, host, hn, 0);
}

int guard_host_parse(char *name, size_t namelen, int *port, const char *host)
{
    *port = -1;
    if (!host)
        return FARM_EINVALID;
    size_t n = strlen(host);
    while (n > 0 && (host[n - 1] == ' ' || host[n - 1] == '\t'))
        n--;
    while (n > 0 && (*host == ' ' || *host == '\t')) {
        host++;
        n--;
    }
    if (n > GUARD_NAME_MAX + 8)
        return FARM_EINVALID;
    return authority_parse(name, namelen, port, host, n);
}

int guard_origin_parse(char *name, size_t namelen, int *port, const char *origin)
{
    int defport;
    size_t skip;
    *port = -1;
    if (!origin)
        return FARM_EINVALID;
    if (!strncasecmp(origin, "http://", 7)) {
        skip = 7;
        defport = 80;
    } else if (!strncasecmp(origin, "https://", 8)) {
        skip = 8;
        defport = 443;
    } else {
        return FARM_EINVALID; /* "null", file:, chrome-extension:, ... */
    }
    const char *a = origin + skip;
    size_t n = strlen(a);
    if (n == 0 || n > GUARD_NAME_MAX + 8 || strpbrk(a, "/?#@ \t\\"))
        return FARM_EINVALID;
    if (authority_parse(name, namelen, port, a, n) != 0)
        return FARM_EINVALID;
    if (*port < 0)
        *port = defport;
    return 0;
}

/* ---- framing and type ---------------------------------------------------- */

int guard_framing_check(int content_lengths, const char *content_length, int transfer_encodings,
                        const char **why)
{
    *why = NULL;
    if (content_lengths > 1) {
        *why = "the request has more than one Content-Length header";
        return 400;
    }
    if (transfer_encodings > 1) {
        *why = "the request has more than one Transfer-Encoding header";
        return 400;
    }
    if (content_lengths && transfer_encodings) {
        *why = "the request has both Content-Length and Transfer-Encoding";
        return 400;
    }
    if (content_lengths) {
        size_t n = content_length ? strlen(content_length) : 0;
        if (n == 0 || n > 18 || strspn(content_length, "0123456789") != n) {
            *why = "the Content-Length header is not a decimal number";
            return 400;
        }
    }
    return 0;
}

int guard_json_type(const char *content_type)
{
    if (!content_type)
        return 0;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    if (strncasecmp(content_type, "application/json", 16) != 0)
        return 0;
    char next = content_type[16];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

/* ---- the names the farm answers to ---------------------------------------- */

enum {
    NAME_LOCAL,   /* the listen address and the loopback names: the bound port */
    NAME_PUBLIC,  /* public_url's host: its port, or the bound one */
    NAME_ALLOWED, /* http.allowed_hosts: its port, or the bound one, 80 or 443 */
};

typedef struct name_entry {
    char name[GUARD_NAME_MAX];
    int kind;
    int port; /* NAME_PUBLIC, NAME_ALLOWED: the port named, or -1 */
} name_entry;

struct guard_hosts {
    name_entry *v;
    size_t n;
    int bound_port;
};

static int add(guard_hosts *h, size_t cap, const char *name, int kind, int port)
{
    if (h->n == cap)
        return FARM_ENOMEM; /* cap is computed from the config: a bug */
    name_entry *e = &h->v[h->n++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->kind = kind;
    e->port = port;
    return 0;
}

static int is_wildcard(const char *host)
{
    return !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

/* public_url's "scheme://authority" (its path dropped). */
static int public_host(char *name, size_t namelen, int *port, const char *url)
{
    char origin[GUARD_NAME_MAX + 16];
    const char *a = url ? strstr(url, "://") : NULL;
    if (!a)
        return FARM_EINVALID;
    size_t n = strcspn(a + 3, "/?#") + (size_t)(a + 3 - url);
    if (n >= sizeof(origin))
        return FARM_EINVALID;
    memcpy(origin, url, n);
    origin[n] = '\0';
    return guard_origin_parse(name, namelen, port, origin);
}

int guard_hosts_init(guard_hosts **out, const config *cfg, int bound_port)
{
    static const char *const loopback[] = {"localhost", "127.0.0.1", "::1"};
    char host[GUARD_NAME_MAX], name[GUARD_NAME_MAX], bracketed[GUARD_NAME_MAX + 2];
    int port, rc = 0;

    *out = NULL;
    size_t cap = 8 + cfg->http.nallowed_hosts;
    guard_hosts *h = calloc(1, sizeof(*h));
    if (h)
        h->v = calloc(cap, sizeof(*h->v));
    if (!h || !h->v) {
        free(h);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    h->bound_port = bound_port;
    if (config_listen_split(cfg, host, sizeof(host), &port) != 0) {
        guard_hosts_free(h);
        return FARM_EINVALID;
    }
    if (is_wildcard(host) || config_listen_is_loopback(cfg))
        for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]) && !rc; i++)
            rc = add(h, cap, loopback[i], NAME_LOCAL, -1);
    if (!is_wildcard(host) && !rc) {
        snprintf(bracketed, sizeof(bracketed), strchr(host, ':') ? "[%s]" : "%s", host);
        if (guard_host_parse(name, sizeof(name), &port, bracketed) == 0)
            rc = add(h, cap, name, NAME_LOCAL, -1);
    }
    if (!rc && cfg->public_url) {
        if (public_host(name, sizeof(name), &port, cfg->public_url) != 0) {
            farm_error_set("public_url: cannot read a host in \"%s\"", cfg->public_url);
            rc = FARM_EINVALID;
        } else {
            rc = add(h, cap, name, NAME_PUBLIC, port == 0 ? bound_port : port);
        }
    }
    for (size_t i = 0; i < cfg->http.nallowed_hosts && !rc; i++) {
        if (guard_host_parse(name, sizeof(name), &port, cfg->http.allowed_hosts[i]) != 0) {
            farm_error_set("http.allowed_hosts[%zu]: not a host name (\"%s\")", i,
                           cfg->http.allowed_hosts[i]);
            rc = FARM_EINVALID;
        } else {
            rc = add(h, cap, name, NAME_ALLOWED, port);
        }
    }
    if (rc) {
        guard_hosts_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void guard_hosts_free(guard_hosts *h)
{
    if (!h)
        return;
    free(h->v);
    free(h);
}

int guard_host_allowed(const guard_hosts *h, const char *name, const char *local)
{
    if (local && !strcmp(name, local))
        return 1;
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->v[i].name, name))
            return 1;
    return 0;
}

/* Does port belong to the entry, for an Origin? */
static int port_ok(const guard_hosts *h, const name_entry *e, int port)
{
    switch (e->kind) {
    case NAME_LOCAL:
        return port == h->bound_port;
    case NAME_PUBLIC:
        return port == h->bound_port || port == e->port;
    default:
        if (e->port > 0)
            return port == e->port;
        return port == h->bound_port || port == 80 || port == 443;
    }
}

int guard_origin_allowed(const guard_hosts *h, const char *name, int port, const char *local)
{
    if (local && !strcmp(name, local) && port == h->bound_port)
        return 1;
    for (size_t i = 0; i < h->n; i++)
        if (!strcmp(h->v[i].name, name) && port_ok(h, &h->v[i], port))
            return 1;
    return 0;
}
