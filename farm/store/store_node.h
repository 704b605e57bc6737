/*
 * store_node.h - the farm processes that share one store, each seen by its
 * heartbeat: which node, what role, how many slots, how many runs at work,
 * when it last beat. The scheduler beats (farm/sched/scheduler.c) and
 * removes its row when it stops; `farm nodes` and GET /api/nodes list them.
 * A node whose beat is old has died or hangs: its job leases expire and
 * another node takes its work over (store_job.h), whatever this table says.
 * It calls the store's backend (store_backend.h: the node table).
 */
#ifndef FARM_FARM_STORE_STORE_NODE_H
#define FARM_FARM_STORE_STORE_NODE_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_node {
    char *id;   /* the scheduler's lease owner id ("host:pid:random") */
    char *host; /* the machine's host name */
    char *role; /* "serve" (later "worker") */
    int64_t pid;
    int64_t slots;   /* runs it may hold at once */
    int64_t running; /* runs at work at its last beat */
    int64_t started_ms;
    int64_t beat_ms; /* its last heartbeat */
} store_node;

/* Record n's heartbeat (now): its row is created or updated. The strings
 * are at most 255 bytes. Returns 0, FARM_EINVALID or FARM_EIO. */
int store_node_beat(store *s, const store_node *n);

/* Remove node id's row (it stopped cleanly). Returns 0 or FARM_EIO. */
int store_node_remove(store *s, const char *id);

/* Every node, the most recent beat first (at most STORE_LIST_MAX). *out is
 * freed with store_node_list_free(). Returns 0, FARM_ENOMEM or FARM_EIO. */
int store_node_list(store_node **out, size_t *n, store *s);
void store_node_list_free(store_node *v, size_t n);

/*
 * State the nodes share instead of each keeping its own (tables
 * shared_pace and shared_state): a rate budget, a back-off and a once-only
 * claim, each named by a key of at most 1,100 bytes. Times are wall ms: the
 * nodes' clocks are expected to agree (NTP) to well under a second.
 */

/* Take one place in key's windows, per_minute (1..100000) in any 60 s and
 * per_hour (1..100000) in any hour, across every node: *wait_ms is 0 when
 * taken (recorded at now), else how long until one fits (nothing taken).
 * Atomic against every other node. Returns 0, FARM_EINVALID or FARM_EIO. */
int store_node_pace(int64_t *wait_ms, store *s, const char *key, int per_minute, int per_hour);

/* *until_ms: when key's back-off ends (0 when none was recorded). Returns 0,
 * FARM_EINVALID or FARM_EIO. */
int store_node_block_get(int64_t *until_ms, store *s, const char *key);

/* Back key off until until_ms; a later end already recorded stays. Returns
 * 0, FARM_EINVALID or FARM_EIO. */
int store_node_block_set(store *s, const char *key, int64_t until_ms);

/* Claim key for owner until until_ms: *won is 1 when nobody else holds it
 * (never claimed, claimed by owner itself, or the other claim ended before
 * now), and the claim is then (re)written; else 0. Returns 0, FARM_EINVALID
 * or FARM_EIO. */
int store_node_claim(int *won, store *s, const char *key, const char *owner, int64_t until_ms);

#endif
