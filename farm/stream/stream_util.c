/*
 * stream_util.c - the small pure pieces of the stream protocol: offsets,
 * content types, header values (TTL, RFC 3339 times, producer integers) and
 * the live cursor. No state, no I/O.
 */
#include "stream.h"
#include "stream_internal.h"

#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void stream_offset_format(char out[STREAM_OFFSET_LEN], uint64_t pos)
{
    /* by hand: this runs for every reader on every event */
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, pos >>= 4)
        out[i] = hex[pos & 15];
    out[16] = '\0';
}

int stream_offset_parse(uint64_t *pos, const char *s)
{
    uint64_t v = 0;
    if (!s || strlen(s) != 16)
        goto bad;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            goto bad;
        v = v << 4 | (uint64_t)d;
    }
    if (v > (uint64_t)INT64_MAX)
        goto bad;
    *pos = v;
    return 0;
bad:
    farm_error_set("malformed offset");
    return FARM_EINVALID;
}

/* The media type of a content type: its part before ';', trimmed, into out
 * (lower-cased). */
void stream_media_type(char *out, size_t n, const char *ct)
{
    size_t i = 0;
    if (!n)
        return;
    if (ct) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        for (; *ct && *ct != ';' && i + 1 < n; ct++)
            out[i++] = (char)tolower((unsigned char)*ct);
    }
    while (i > 0 && (out[i - 1] == ' ' || out[i - 1] == '\t'))
        i--;
    out[i] = '\0';
}

int stream_content_type_valid(const char *ct)
{
    char mt[128];
    if (!ct || !*ct || strlen(ct) >= 128)
        return 0;
    for (const char *p = ct; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    stream_media_type(mt, sizeof(mt), ct);
    const char *slash = strchr(mt, '/');
    return slash && slash != mt && slash[1] && !strchr(slash + 1, '/') && !strchr(mt, ' ');
}

int stream_content_type_same(const char *a, const char *b)
{
    char ma[128], mb[128];
    if (a && b && !strcmp(a, b))
        return 1; /* the usual case: the writer sends the type it created with */
    stream_media_type(ma, sizeof(ma), a);
    stream_media_type(mb, sizeof(mb), b);
    return strcmp(ma, mb) == 0;
}

int stream_content_type_is_json(const char *ct)
{
    char mt[128];
    if (ct && !strcmp(ct, "application/json"))
        return 1; /* asked for every append: spare the parse */
    stream_media_type(mt, sizeof(mt), ct);
    size_t n = strlen(mt);
    return !strcmp(mt, "application/json") ||
           (!strncmp(mt, "application/", 12) && n > 5 && !strcmp(mt + n - 5, "+json"));
}

int stream_content_type_is_text(const char *ct)
{
    char mt[128];
    stream_media_type(mt, sizeof(mt), ct);
    return !strncmp(mt, "text/", 5) || stream_content_type_is_json(ct);
}

/* A non-negative decimal integer without sign, leading zeros, point or
 * exponent, at most max. */
int stream_parse_uint(int64_t *out, const char *s, int64_t max)
{
    int64_t v = 0;
    if (!s || !*s || (s[0] == '0' && s[1]))
        return FARM_EINVALID;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return FARM_EINVALID;
        if (v > (max - (*p - '0')) / 10)
            return FARM_EINVALID;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

int stream_parse_rfc3339(int64_t *out_ms, const char *s)
{
    int y, mo, d, h, mi, sec, ms = 0;
    const char *p = s;
    if (!s)
        return FARM_EINVALID;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' ') || !*p++ || digits(&p, 2, &h) ||
        *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &sec))
        return FARM_EINVALID;
    if (*p == '.') {
        int n = 0;
        p++;
        if (!isdigit((unsigned char)*p))
            return FARM_EINVALID;
        for (; isdigit((unsigned char)*p); p++, n++)
            if (n < 3)
                ms = ms * 10 + (*p - '0');
        for (; n < 3; n++)
            ms *= 10;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return FARM_EINVALID;
        off = sign * (oh * 60 + om);
    } else {
        return FARM_EINVALID;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return FARM_EINVALID;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *out_ms = ((int64_t)t - (int64_t)off * 60) * 1000 + ms;
    return 0;
}

/* Cursor intervals: 20 s counted from 2024-10-09T00:00:00Z (PROTOCOL.md). */
#define CURSOR_EPOCH_S    1728432000LL
#define CURSOR_INTERVAL_S 20

void stream_cursor_next(char *out, size_t n, const char *client_cursor)
{
    int64_t now = clock_wall_ms() / 1000;
    int64_t cur = (now - CURSOR_EPOCH_S) / CURSOR_INTERVAL_S;
    int64_t client;
    if (client_cursor && !stream_parse_uint(&client, client_cursor, INT64_MAX / 2) &&
        client >= cur) {
        /* never go backwards: jump past the client's cursor by 1..3600 s of
         * intervals, chosen at random */
        unsigned char r[2] = {0, 0};
        crypto_random(r, sizeof(r));
        int64_t jitter_s = 1 + ((int64_t)r[0] << 8 | r[1]) % 3600;
        int64_t steps = (jitter_s + CURSOR_INTERVAL_S - 1) / CURSOR_INTERVAL_S;
        cur = client + steps;
    }
    char tmp[24];
    int len = 0;
    do {
        tmp[len++] = (char)('0' + cur % 10);
        cur /= 10;
    } while (cur > 0 && len < (int)sizeof(tmp));
    if (!n)
        return;
    size_t i = 0;
    for (; len > 0 && i + 1 < n; i++)
        out[i] = tmp[--len];
    out[i] = '\0';
}

int stream_path_session(const char *path, int64_t *session_id)
{
    size_t plen = strlen(STREAM_SESSION_PREFIX);
    int64_t id;
    if (!path || strncmp(path, STREAM_SESSION_PREFIX, plen) != 0)
        return 0;
    if (stream_parse_uint(&id, path + plen, INT64_MAX) || id <= 0)
        return 0;
    *session_id = id;
    return 1;
}

int stream_path_reserved(const char *path)
{
    return path && !strncmp(path, STREAM_SESSION_PREFIX, strlen(STREAM_SESSION_PREFIX));
}

int stream_path_control(const char *path)
{
    return path && !strncmp(path, "__ds", 4) && (path[4] == '\0' || path[4] == '/');
}

int stream_path_valid(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (!n || n > STREAM_MAX_PATH || path[0] == '/' || path[n - 1] == '/')
        return 0;
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        /* '%': what is left of a bad escape once the URL was decoded */
        if (c < 0x21 || c == 0x7f || c == '?' || c == '#' || c == '\\' || c == '%')
            return 0;
        if (c == '/' && p[1] == '/')
            return 0;
    }
    /* no "." or ".." segments */
    for (const char *seg = path; seg;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        seg = end ? end + 1 : NULL;
    }
    return 1;
}
