/*
 * buf.c - the bounded growable buffer (see buf.h).
 *
 * Growth doubles, clamped to the maximum, so a buffer filled to its cap costs
 * O(log n) reallocations and never more than max+1 bytes.
 */
#include "buf.h"
#include "error.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int grow(buf *b, size_t need)
{
    if (need > b->max) {
        farm_error_set("buffer over its cap of %zu bytes", b->max);
        return FARM_ETOOBIG;
    }
    if (need <= b->cap && b->data)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > b->max / 2 ? b->max : cap * 2;
    if (cap < need)
        cap = need;
    char *p = realloc(b->data, cap + 1);
    if (!p) {
        farm_error_set("out of memory growing a buffer to %zu bytes", cap);
        return FARM_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    assert(b && (p || n == 0));
    if (n > b->max || b->len > b->max - n) {
        farm_error_set("buffer over its cap of %zu bytes", b->max);
        return FARM_ETOOBIG;
    }
    int rc = grow(b, b->len + n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(buf *b, const char *s)
{
    assert(s);
    return buf_append(b, s, strlen(s));
}

int buf_putc(buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        farm_error_set("bad format string");
        return FARM_EINVALID;
    }
    if ((size_t)n > b->max || b->len > b->max - (size_t)n) {
        farm_error_set("buffer over its cap of %zu bytes", b->max);
        return FARM_ETOOBIG;
    }
    int rc = grow(b, b->len + (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *buf_cstr(const buf *b)
{
    return b->data ? b->data : "";
}

char *buf_detach(buf *b)
{
    char *p = b->data ? b->data : strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
