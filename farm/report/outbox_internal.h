/*
 * outbox_internal.h - what the outbox's two files share: the sender and its
 * workers, which outbox.c starts, stops and feeds with leased entries, and
 * the delivery of one leased entry on its tracker, which outbox_send.c does.
 * Names shared here but not exported are written outbox__x. Nothing outside
 * farm/report/outbox*.c includes this.
 */
#ifndef FARM_FARM_REPORT_OUTBOX_INTERNAL_H
#define FARM_FARM_REPORT_OUTBOX_INTERNAL_H

#include "outbox.h"
#include "farm/store/store_outbox.h"

#include <pthread.h>
#include <stdint.h>

#define OUTBOX_WORKERS_MAX 64
#define OUTBOX_LABELS_MAX  100 /* labels added or removed by one entry */
#define OUTBOX_OWNER_MAX   160

/* The sender of one farm (f->outbox while started). */
struct outbox_sender {
    farm *f;
    outbox_opts o;                /* settled: every field set (owner NULL) */
    char owner[OUTBOX_OWNER_MAX]; /* "<host>:<pid>:<start ms>"; workers add "/w<i>" */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* kicks and stop; CLOCK_MONOTONIC */
    int stopping;
    uint64_t kicks;
    struct store_notify_sub *notify; /* other nodes' entries wake us (store_notify.h) */
    int nthreads;
    pthread_t threads[OUTBOX_WORKERS_MAX];
};

/* One sender thread; it frees this when it ends. */
typedef struct outbox_worker {
    struct outbox_sender *s;
    int index;
    char owner[OUTBOX_OWNER_MAX + 16]; /* the lease owner: the sender's plus "/w<index>" */
    unsigned int seed;                 /* jitter */
} outbox_worker;

/* Deliver e, leased by w, through its session's tracker and record the
 * outcome in the store: sent (with the remote id), retried after a backoff,
 * skipped or failed. Errors are recorded and logged, not returned. */
void outbox__send(outbox_worker *w, outbox_entry *e);

#endif
