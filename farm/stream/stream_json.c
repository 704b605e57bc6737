/*
 * stream_json.c - the quick way through a JSON-mode append: validate the
 * body and write its compact form in one pass over the text, without
 * building a jansson tree and dumping it again.
 *
 * It covers the common subset only (strings without escapes or non-ASCII
 * bytes, integers, literals, objects with distinct keys, arrays, bounded
 * depth), where the compact form is the text minus its whitespace, exactly
 * what json_dumps(JSON_COMPACT) of json_loadb() gives. Anything else, valid
 * or not, answers "not simple" and stream_records.c goes through jansson,
 * which stays the judge of what is valid and how it is written.
 */
#include "stream_internal.h"

#include <string.h>

#define JSON_MAX_DEPTH  32 /* deeper: jansson's turn (each level keeps its keys on the stack) */
#define JSON_MAX_KEYS   32 /* keys of one object checked for duplicates; more: jansson */
#define JSON_MAX_DIGITS 18 /* an integer that surely fits json_int_t */

typedef struct jscan {
    const char *p, *end;
    char *o;
    int depth;
} jscan;

static void skip_ws(jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int scan_value(jscan *s);

/* A string with no escape, control or non-ASCII byte: copied as it is. */
static int scan_string(jscan *s)
{
    const char *q = s->p + 1;
    while (q < s->end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c == '\\' || c < 0x20 || c >= 0x80)
            return 0;
        q++;
    }
    if (q >= s->end)
        return 0;
    size_t n = (size_t)(q + 1 - s->p);
    memcpy(s->o, s->p, n);
    s->o += n;
    s->p = q + 1;
    return 1;
}

/* An integer jansson writes back digit for digit ("-0" it writes as "0"). */
static int scan_integer(jscan *s)
{
    const char *q = s->p;
    if (*q == '-')
        q++;
    const char *d = q;
    while (q < s->end && *q >= '0' && *q <= '9')
        q++;
    size_t nd = (size_t)(q - d);
    if (!nd || nd > JSON_MAX_DIGITS || (*d == '0' && (nd > 1 || d != s->p)))
        return 0;
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E'))
        return 0;
    size_t n = (size_t)(q - s->p);
    memcpy(s->o, s->p, n);
    s->o += n;
    s->p = q;
    return 1;
}

static int scan_literal(jscan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n))
        return 0;
    memcpy(s->o, lit, n);
    s->o += n;
    s->p += n;
    return 1;
}

static int scan_object(jscan *s)
{
    const char *key[JSON_MAX_KEYS];
    size_t klen[JSON_MAX_KEYS], nkeys = 0;
    *s->o++ = '{';
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        *s->o++ = '}';
        s->p++;
        return 1;
    }
    for (;;) {
        if (s->p >= s->end || *s->p != '"' || nkeys == JSON_MAX_KEYS)
            return 0;
        const char *k = s->o;
        if (!scan_string(s))
            return 0;
        size_t kn = (size_t)(s->o - k);
        for (size_t i = 0; i < nkeys; i++)
            if (klen[i] == kn && !memcmp(key[i], k, kn))
                return 0; /* jansson keeps the last value only */
        key[nkeys] = k;
        klen[nkeys++] = kn;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return 0;
        *s->o++ = ':';
        s->p++;
        skip_ws(s);
        if (!scan_value(s))
            return 0;
        skip_ws(s);
        if (s->p >= s->end)
            return 0;
        if (*s->p == '}') {
            *s->o++ = '}';
            s->p++;
            return 1;
        }
        if (*s->p != ',')
            return 0;
        *s->o++ = ',';
        s->p++;
        skip_ws(s);
    }
}

static int scan_array(jscan *s)
{
    *s->o++ = '[';
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        *s->o++ = ']';
        s->p++;
        return 1;
    }
    for (;;) {
        if (!scan_value(s))
            return 0;
        skip_ws(s);
        if (s->p >= s->end)
            return 0;
        if (*s->p == ']') {
            *s->o++ = ']';
            s->p++;
            return 1;
        }
        if (*s->p != ',')
            return 0;
        *s->o++ = ',';
        s->p++;
        skip_ws(s);
    }
}

static int scan_value(jscan *s)
{
    if (s->p >= s->end)
        return 0;
    int rc;
    switch (*s->p) {
    case '"':
        return scan_string(s);
    case '{':
    case '[':
        if (++s->depth > JSON_MAX_DEPTH)
            return 0;
        rc = *s->p == '{' ? scan_object(s) : scan_array(s);
        s->depth--;
        return rc;
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        return scan_literal(s, "null", 4);
    default:
        return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && scan_integer(s);
    }
}

int stream_json_compact(char *out, size_t *out_len, size_t *spans, size_t max_spans, size_t *nspans,
                        const char *p, size_t n)
{
    jscan s = {p, p + n, out, 0};
    *nspans = 0;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '[') {
        /* the top level array: each element is a message */
        *s.o++ = '[';
        s.p++;
        s.depth = 1;
        skip_ws(&s);
        if (s.p >= s.end || *s.p == ']')
            return 0; /* empty: the caller's rules */
        for (;;) {
            if (*nspans == max_spans)
                return 0;
            spans[*nspans] = (size_t)(s.o - out);
            if (!scan_value(&s))
                return 0;
            (*nspans)++;
            skip_ws(&s);
            if (s.p >= s.end)
                return 0;
            if (*s.p == ']') {
                s.p++;
                break;
            }
            if (*s.p != ',')
                return 0;
            *s.o++ = ',';
            s.p++;
            skip_ws(&s);
        }
        spans[*nspans] = (size_t)(s.o - out) + 1; /* where the next would start */
        *s.o++ = ']';
    } else {
        spans[0] = 0;
        if (!scan_value(&s))
            return 0;
        *nspans = 1;
        spans[1] = (size_t)(s.o - out) + 1;
    }
    skip_ws(&s);
    if (s.p != s.end)
        return 0;
    *out_len = (size_t)(s.o - out);
    return 1;
}

/* Messages in a body: the elements of a top-level array, else 1. One pass
 * that tracks strings and nesting and builds nothing, so a body can be
 * refused for its count before anything is allocated per message. Counting
 * stops past `stop`. A malformed body gets some count; the parse judges it. */
size_t stream_json_count(const char *p, size_t n, size_t stop)
{
    const char *end = p + n;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p >= end || *p != '[')
        return 1;
    size_t count = 0;
    int depth = 0, item = 0; /* item: the current top-level element has begun */
    for (; p < end && count <= stop; p++) {
        char c = *p;
        if (c == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            if (depth == 1 && !item) {
                item = 1;
                count++;
            }
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (c == '[' || c == '{') {
            if (depth == 1 && !item) {
                item = 1;
                count++;
            }
            depth++;
        } else if (c == ']' || c == '}') {
            if (--depth <= 0)
                break;
        } else if (c == ',') {
            if (depth == 1)
                item = 0;
        } else if (depth == 1 && !item) {
            item = 1; /* a number or a literal */
            count++;
        }
    }
    return count;
}
