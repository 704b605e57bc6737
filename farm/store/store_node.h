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

#endif
