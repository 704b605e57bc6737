/*
 * farm_internal.h - the farm handle's fields, for the files of farm/ that
 * hang off it (ingest.c now; the scheduler and outbox later). Nothing
 * outside farm/ includes this.
 */
#ifndef FARM_FARM_FARM_INTERNAL_H
#define FARM_FARM_FARM_INTERNAL_H

#include "config.h"
#include "store.h"
#include "stream.h"

struct farm {
    config *cfg;                    /* owned */
    store *store;                   /* owned */
    stream_hub *streams;            /* owned: durable streams and session logs */
    struct farm_trackers *trackers; /* owned: tracker clients, made on first use (trackers.c) */
    struct outbox_sender *outbox; /* owned: the outbox's sender threads while started (outbox.c) */
    struct scheduler *sched;      /* owned: the scheduler while started (scheduler.c) */
};

#endif
