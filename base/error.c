/*
 * error.c - the per-thread error slot (see error.h).
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char slot[1024];

void farm_error_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(slot, sizeof(slot), fmt, ap);
    va_end(ap);
}

const char *farm_error_last(void)
{
    return slot;
}

void farm_error_clear(void)
{
    slot[0] = '\0';
}

const char *farm_error_name(int code)
{
    switch (code) {
    case FARM_OK:
        return "OK";
    case FARM_ERROR:
        return "ERROR";
    case FARM_ENOMEM:
        return "ENOMEM";
    case FARM_EINVALID:
        return "EINVALID";
    case FARM_ENOTFOUND:
        return "ENOTFOUND";
    case FARM_EEXISTS:
        return "EEXISTS";
    case FARM_EIO:
        return "EIO";
    case FARM_ETOOBIG:
        return "ETOOBIG";
    case FARM_ETIMEOUT:
        return "ETIMEOUT";
    case FARM_EAUTH:
        return "EAUTH";
    case FARM_EAGAIN:
        return "EAGAIN";
    case FARM_ECONFLICT:
        return "ECONFLICT";
    case FARM_EUNSUPPORTED:
        return "EUNSUPPORTED";
    case FARM_ECANCELLED:
        return "ECANCELLED";
    case FARM_ENEWER:
        return "ENEWER";
    default:
        return "EUNKNOWN";
    }
}
