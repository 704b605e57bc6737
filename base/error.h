/*
 * error.h - error codes and the per-thread error slot.
 *
 * Every fallible function in the farm returns 0 or one of the negative codes
 * below, and leaves a human-readable message in this thread's error slot with
 * farm_error_set(). The caller decides whether and how to log it.
 */
#ifndef FARM_BASE_ERROR_H
#define FARM_BASE_ERROR_H

enum {
    FARM_OK = 0,
    FARM_ERROR = -1,         /* generic failure */
    FARM_ENOMEM = -2,        /* allocation failed */
    FARM_EINVALID = -3,      /* bad argument or malformed input */
    FARM_ENOTFOUND = -4,     /* no such thing */
    FARM_EEXISTS = -5,       /* already there (duplicate) */
    FARM_EIO = -6,           /* I/O, disk or database failure */
    FARM_ETOOBIG = -7,       /* a size cap was hit */
    FARM_ETIMEOUT = -8,      /* a deadline passed */
    FARM_EAUTH = -9,         /* authentication or authorisation refused */
    FARM_EAGAIN = -10,       /* transient: try again later (rate limit, 5xx, busy) */
    FARM_ECONFLICT = -11,    /* state conflict (lease lost, push rejected, 409) */
    FARM_EUNSUPPORTED = -12, /* the host or build cannot do this */
    FARM_ECANCELLED = -13,   /* stopped on request */
    FARM_ENEWER = -14,       /* data written by a newer farm */
};

/* Set this thread's error message (printf format). Returns nothing; the
 * message is truncated at 1 KiB. */
void farm_error_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* This thread's last error message, or "" when none was set. The pointer is
 * valid until the next farm_error_set() on this thread. */
const char *farm_error_last(void);

/* Clear this thread's error message. */
void farm_error_clear(void);

/* A short stable name for an error code ("ENOTFOUND"), for logs and JSON. */
const char *farm_error_name(int code);

#endif
