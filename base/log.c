/*
 * log.c - structured logging (see log.h).
 *
 * Each line is built in a local buffer and written with one write(2), so lines
 * from different threads never interleave.
 */
#include "log.h"
#include "buf.h"
#include "clock.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SECRETS    64
#define LINE_MAX_BYTES (64 * 1024)

static log_level min_level = LOG_INFO;
static log_format format = LOG_FORMAT_AUTO;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[MAX_SECRETS];
static int nsecrets;

void log_set_level(log_level lvl)
{
    min_level = lvl;
}

void log_set_format(log_format fmt)
{
    format = fmt;
}

int log_level_parse(const char *s)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void log_secret_add(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i], secret) == 0)
            goto out;
    if (nsecrets < MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy)
            secrets[nsecrets++] = copy;
    }
out:
    pthread_mutex_unlock(&secrets_lock);
}

/* Append s to b, JSON-escaped when json is set, with registered secrets
 * replaced by [redacted]. Called with secrets_lock held. The JSON line is
 * escaped here rather than built with jansson: a message that is not valid
 * UTF-8 (a line of a child's output) must still be logged, and jansson
 * refuses to dump such a string. */
static void put_value(buf *b, const char *s, int json)
{
    while (*s) {
        int hit = 0;
        for (int i = 0; i < nsecrets; i++) {
            size_t n = strlen(secrets[i]);
            if (strncmp(s, secrets[i], n) == 0) {
                buf_puts(b, "[redacted]");
                s += n;
                hit = 1;
                break;
            }
        }
        if (hit)
            continue;
        unsigned char c = (unsigned char)*s++;
        if (!json) {
            buf_putc(b, (c == '\n' || c == '\r') ? ' ' : (char)c);
        } else if (c == '"' || c == '\\') {
            buf_putc(b, '\\');
            buf_putc(b, (char)c);
        } else if (c == '\n') {
            buf_puts(b, "\\n");
        } else if (c == '\t') {
            buf_puts(b, "\\t");
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_putc(b, (char)c);
        }
    }
}

void log_write(log_level lvl, const char *msg, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < min_level)
        return;
    int json = format == LOG_FORMAT_JSON || (format == LOG_FORMAT_AUTO && !isatty(2));
    char ts[40];
    clock_format_rfc3339(ts, sizeof(ts), clock_wall_ms());

    buf b = BUF_INIT(LINE_MAX_BYTES);
    pthread_mutex_lock(&secrets_lock);
    if (json) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, names[lvl]);
        put_value(&b, msg, 1);
        buf_putc(&b, '"');
    } else {
        buf_printf(&b, "%s %-5s ", ts, names[lvl]);
        put_value(&b, msg, 0);
    }
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (!v)
            v = "";
        if (json) {
            buf_puts(&b, ",\"");
            put_value(&b, k, 1);
            buf_puts(&b, "\":\"");
            put_value(&b, v, 1);
            buf_putc(&b, '"');
        } else {
            buf_printf(&b, " %s=", k);
            put_value(&b, v, 0);
        }
    }
    va_end(ap);
    pthread_mutex_unlock(&secrets_lock);
    if (json)
        buf_putc(&b, '}');
    if (buf_putc(&b, '\n') != 0 && b.len > 0)
        b.data[b.len - 1] = '\n'; /* a line over the cap is cut, but still ends */
    if (b.data) {
        ssize_t off = 0;
        while ((size_t)off < b.len) {
            ssize_t w = write(2, b.data + off, b.len - (size_t)off);
            if (w <= 0)
                break;
            off += w;
        }
    }
    buf_free(&b);
}

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("farm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}
