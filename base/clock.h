/*
 * clock.h - the two clocks: wall time for records, monotonic time for
 * durations and deadlines.
 */
#ifndef FARM_BASE_CLOCK_H
#define FARM_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_wall_ms(void);
/* Milliseconds on CLOCK_MONOTONIC, for durations and deadlines. */
int64_t clock_mono_ms(void);
/* Nanoseconds on CLOCK_MONOTONIC, for latency measurements. */
int64_t clock_mono_ns(void);
/* Format a wall time in ms as RFC 3339 UTC with milliseconds
 * ("2026-11-21T19:14:23.123Z") into out (at least 32 bytes). */
void clock_format_rfc3339(char *out, size_t n, int64_t wall_ms);
/* Parse a duration such as "24h", "90m", "30s", "2d" or a bare number of
 * seconds; or an RFC 3339 time. On success *out_ms is an absolute wall time in
 * ms (durations count back from now). Returns 0 or FARM_EINVALID. */
int clock_parse_since(int64_t *out_ms, const char *s);

#endif
