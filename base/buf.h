/*
 * buf.h - one growable byte buffer with a hard maximum.
 *
 * A webhook body, an agent's output chunk or a tracker response can never
 * grow past the cap given at init: appending past it fails with FARM_ETOOBIG
 * and leaves the buffer as it was, so the caller can answer 413 or write a
 * truncation marker. The data is always NUL-terminated (the NUL is not
 * counted in len and not in the cap).
 */
#ifndef FARM_BASE_BUF_H
#define FARM_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap; /* allocated bytes, excluding the terminator */
    size_t max; /* hard maximum for len */
} buf;

#define BUF_INIT(max_)                                                                             \
    {                                                                                              \
        NULL, 0, 0, (max_)                                                                         \
    }

void buf_init(buf *b, size_t max);
/* Release the memory; the buffer is empty and reusable with the same max. */
void buf_free(buf *b);
/* Forget the contents but keep the memory. */
void buf_reset(buf *b);

int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
int buf_putc(buf *b, char c);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The contents as a C string: "" for an empty buffer, never NULL. */
const char *buf_cstr(const buf *b);

/* Hand the contents to the caller, who frees them with free(); the buffer is
 * left empty. Returns a heap "" for an empty buffer; NULL only on ENOMEM. */
char *buf_detach(buf *b);

#endif
