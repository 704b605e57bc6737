/*
 * clock.c - wall and monotonic clocks, and the time formats the farm uses.
 */
#include "clock.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void clock_format_rfc3339(char *out, size_t n, int64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
}

int clock_parse_since(int64_t *out_ms, const char *s)
{
    if (!s || !*s)
        goto bad;
    /* An RFC 3339 time: 2026-11-21T19:14:23Z (fractions and offsets other than Z are refused) */
    if (strlen(s) >= 20 && s[4] == '-' && s[10] == 'T') {
        struct tm tm = {0};
        const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end)
            goto bad;
        int ms = 0;
        if (*end == '.') {
            char *e2;
            long frac = strtol(end + 1, &e2, 10);
            size_t digits = (size_t)(e2 - end - 1);
            while (digits > 3) {
                frac /= 10;
                digits--;
            }
            while (digits < 3) {
                frac *= 10;
                digits++;
            }
            ms = (int)frac;
            end = e2;
        }
        if (strcmp(end, "Z") != 0)
            goto bad;
        *out_ms = (int64_t)timegm(&tm) * 1000 + ms;
        return 0;
    }
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        goto bad;
    long long mult = 1000;
    if (*end == 's')
        mult = 1000, end++;
    else if (*end == 'm')
        mult = 60000, end++;
    else if (*end == 'h')
        mult = 3600000, end++;
    else if (*end == 'd')
        mult = 86400000, end++;
    if (*end || v > 100LL * 365 * 86400)
        goto bad;
    *out_ms = clock_wall_ms() - v * mult;
    return 0;
bad:
    farm_error_set("'%s' is neither a duration (24h, 90m, 30s, 2d) nor an RFC 3339 time",
                   s ? s : "");
    return FARM_EINVALID;
}
