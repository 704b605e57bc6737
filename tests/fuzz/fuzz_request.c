/*
 * fuzz_request.c - libFuzzer target for the parsing the HTTP front does
 * itself before a route sees a request (webhook/guard.h, webhook/clients.h):
 * the request target as received, the Host and Origin headers, the body's
 * framing, the content type, and X-Forwarded-For from a trusted proxy.
 *
 * Input: up to six fields separated by '\n': target, Host, Origin,
 * Content-Length, Content-Type, X-Forwarded-For (the target may hold NUL
 * bytes; the other fields are cut at one, as headers arrive). Every parser
 * must return without a crash or a leak, and:
 *   - guard_target_check() accepts exactly what a plain re-implementation
 *     here accepts, and gives 414 only past GUARD_TARGET_MAX;
 *   - a Host or Origin that parses gives a canonical name (lower case, no
 *     brackets, no ':' outside an IPv6 literal) that parses again to itself;
 *   - the farm's own names are allowed and a name it was not given is not.
 */
#include "base/error.h"
#include "farm/config/config.h"
#include "webhook/clients.h"
#include "webhook/guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define NFIELDS 6

static guard_hosts *hosts;
static clients *limits;

static void setup(void)
{
    static char *allowed[] = {"farm.example.com", "10.1.2.3:9000", NULL};
    static char *trusted[] = {"127.0.0.1", "::1", NULL};
    static config cfg;
    cfg.listen = "127.0.0.1:8080";
    cfg.public_url = "https://farm.example.org/farm";
    cfg.http.allowed_hosts = allowed;
    cfg.http.nallowed_hosts = 2;
    if (guard_hosts_init(&hosts, &cfg, 8080) != 0)
        abort();
    clients_options o = CLIENTS_OPTIONS_INIT;
    o.trusted = trusted;
    o.ntrusted = 2;
    if (clients_start(&limits, &o) != 0)
        abort();
}

static int hex(int c)
{
    return isxdigit(c);
}

/* The target rules, written out once more. */
static int target_ok(const char *t, size_t n)
{
    if (n == 0 || t[0] != '/' || n > GUARD_TARGET_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == 0 || c <= 0x20 || c == 0x7f || c == '#')
            return 0;
        if (c == '%') {
            if (i + 2 >= n || !hex((unsigned char)t[i + 1]) || !hex((unsigned char)t[i + 2]))
                return 0;
            if (t[i + 1] == '0' && t[i + 2] == '0')
                return 0;
            i += 2;
        }
    }
    return 1;
}

static void check_name(const char *name)
{
    char again[GUARD_NAME_MAX + 2], bracketed[GUARD_NAME_MAX + 4];
    int port;
    size_t n = strlen(name);
    if (n == 0)
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (isupper((unsigned char)name[i]) || name[i] == '[' || name[i] == ']')
            __builtin_trap();
    /* the canonical form parses to itself (IPv6 literals in brackets) */
    snprintf(bracketed, sizeof(bracketed), strchr(name, ':') ? "[%s]" : "%s", name);
    if (guard_host_parse(again, sizeof(again), &port, bracketed) != 0 || strcmp(again, name) ||
        port != -1)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    const char *field[NFIELDS] = {NULL};
    size_t flen[NFIELDS] = {0};
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t start = 0;
    for (int f = 0; f < NFIELDS && start <= size; f++) {
        char *nl = memchr(copy + start, '\n', size - start);
        size_t end = nl ? (size_t)(nl - copy) : size;
        copy[end] = '\0';
        field[f] = copy + start;
        flen[f] = end - start;
        start = end + 1;
        if (!nl)
            break;
    }

    const char *why = NULL;
    if (field[0]) {
        int st = guard_target_check(field[0], flen[0], &why);
        int want = target_ok(field[0], flen[0]);
        if ((st == 0) != want || (st && !why) || (st == 414 && flen[0] <= GUARD_TARGET_MAX))
            __builtin_trap();
    }

    char name[GUARD_NAME_MAX];
    int port;
    if (field[1] && guard_host_parse(name, sizeof(name), &port, field[1]) == 0) {
        check_name(name);
        if (port < -1 || port > 65535)
            __builtin_trap();
        guard_host_allowed(hosts, name, NULL);
        guard_host_allowed(hosts, name, "192.0.2.1");
    }
    if (field[2] && guard_origin_parse(name, sizeof(name), &port, field[2]) == 0) {
        check_name(name);
        if (port < 0 || port > 65535)
            __builtin_trap();
        int ok = guard_origin_allowed(hosts, name, port, NULL);
        if (ok && strcmp(name, "127.0.0.1") && strcmp(name, "localhost") && strcmp(name, "::1") &&
            strcmp(name, "farm.example.com") && strcmp(name, "farm.example.org") &&
            strcmp(name, "10.1.2.3"))
            __builtin_trap(); /* an origin the farm was never given */
    }
    if (field[3]) {
        int st = guard_framing_check(1, field[3], 0, &why);
        size_t n = strlen(field[3]);
        int digits = n > 0 && n <= 18 && strspn(field[3], "0123456789") == n;
        if ((st == 0) != digits)
            __builtin_trap();
        if (guard_framing_check(2, field[3], 0, &why) != 400 ||
            guard_framing_check(1, field[3], 1, &why) != 400)
            __builtin_trap();
    }
    if (field[4]) {
        int json = guard_json_type(field[4]);
        const char *p = field[4];
        while (*p == ' ' || *p == '\t')
            p++;
        if (json && strncasecmp(p, "application/json", 16))
            __builtin_trap();
    }
    if (field[5]) {
        struct sockaddr_in peer = {0};
        client_key k1, k2;
        peer.sin_family = AF_INET;
        peer.sin_addr.s_addr = htonl(0x7f000001); /* a trusted proxy */
        clients_key_for(&k1, limits, (struct sockaddr *)&peer, field[5]);
        peer.sin_addr.s_addr = htonl(0xc0000201); /* not one: its X-Forwarded-For is ignored */
        clients_key_for(&k2, limits, (struct sockaddr *)&peer, field[5]);
        static const unsigned char self[16] = {0, 0, 0,    0,    0,   0, 0, 0,
                                               0, 0, 0xff, 0xff, 192, 0, 2, 1};
        if (memcmp(k2.a, self, 16))
            __builtin_trap();
    }
    free(copy);
    return 0;
}
