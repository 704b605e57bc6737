/*
 * handle.h - the farm handle: what every subsystem of farm/ hangs off.
 *
 * Owns nothing of its own: it is the struct that holds the config, the
 * store, the streams and each subsystem's state (by an opaque pointer that
 * only that subsystem dereferences). It stands on config, store and stream;
 * report, run, sched, intake and digest include it to reach those; farm/farm.c
 * (the top) fills it in farm_open() and empties it in farm_close(). Nothing
 * outside farm/ includes it: they use farm/farm.h.
 */
#ifndef FARM_FARM_HANDLE_HANDLE_H
#define FARM_FARM_HANDLE_HANDLE_H

#include "farm/config/config.h"
#include "farm/store/store.h"
#include "farm/stream/stream.h"

typedef struct farm farm;

struct farm {
    config *cfg;         /* owned */
    store *store;        /* owned */
    stream_hub *streams; /* owned: durable streams and session logs */
    /* owned: tracker clients, made on first use (farm/report/trackers.c) */
    struct farm_trackers *trackers;
    /* owned: the outbox's sender threads while started (farm/report/outbox.c) */
    struct outbox_sender *outbox;
    /* owned: the scheduler while started (farm/sched/scheduler.c) */
    struct scheduler *sched;
    /* owned: the model gateway while serving runs that need a model API
     * (farm/gateway/gateway.h; started by farm_gateway_start()), or NULL */
    struct gateway *gateway;
};

/* The config the farm runs on; owned by the farm, valid until farm_close(). */
const config *farm_config(const farm *f);

/* The farm's store; owned by the farm, valid until farm_close(). */
store *farm_store(farm *f);

/* The farm's durable streams (farm/stream/stream.h); owned by the farm,
 * valid until farm_close(). Session events appended through
 * stream_session_append() wake the session's live readers at once. */
stream_hub *farm_streams(farm *f);

#endif
