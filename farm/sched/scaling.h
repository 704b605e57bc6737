/*
 * scaling.h - the scaling limits in force: the config's "scaling" section,
 * overridden key by key by runtime settings (the `setting` table, written
 * by PUT /api/scaling and `farm scale`), so a change takes effect without a
 * restart and survives one.
 */
#ifndef FARM_FARM_SCHED_SCALING_H
#define FARM_FARM_SCHED_SCALING_H

#include "farm/config/config.h"
#include "farm/store/store.h"

enum {
    SCALING_MAX_AGENTS,   /* runs at once, in total: 1..256 */
    SCALING_MAX_PER_REPO, /* runs at once for one repository: 1..max_agents */
    SCALING_MIN_WARM,     /* warm slots kept prepared: 0..max_agents */
    SCALING_IDLE_TIMEOUT, /* seconds an idle slot lives: 1..604800 */
    SCALING_NFIELDS
};

#define SCALING_MAX_AGENTS_CAP 256

typedef struct scaling_limits {
    int value[SCALING_NFIELDS];
    int from_setting[SCALING_NFIELDS]; /* 1: a runtime setting, 0: the config */
} scaling_limits;

/* A change: only the fields with set[i] are changed. */
typedef struct scaling_change {
    int set[SCALING_NFIELDS];
    long long value[SCALING_NFIELDS];
} scaling_change;

/* The field's name as in the config and the API ("max_agents", ...), and
 * its setting key ("scaling.max_agents"). Static strings. */
const char *scaling_field_name(int field);
const char *scaling_field_key(int field);

/* The field named name, or -1. */
int scaling_field_find(const char *name);

/* The limits in force: cfg's values overridden by the settings in s (a
 * stored value that is not a valid number is ignored with a warning).
 * max_per_repo and min_warm are capped at max_agents. Returns 0 or
 * FARM_EIO. */
int scaling_get(scaling_limits *out, const config *cfg, store *s);

/* This node's own cap on runs at once: worker.slots when set, never above
 * the global max_agents in force (which the store enforces across every
 * node anyway; the node cap only keeps one process from taking more). */
int scaling_node_slots(const scaling_limits *l, const config *cfg);

/* Check limits against the ranges above. Returns 0, or FARM_EINVALID with
 * *bad_field (when non-NULL) the first field out of range (a static string)
 * and a message naming it in the error slot. */
int scaling_validate(const scaling_limits *l, const char **bad_field);

/* Apply a change: the limits in force merged with c are validated and the
 * changed fields written as settings, in one write (two concurrent changes
 * cannot pass validation against each other's old values). *out (may be
 * NULL) is the limits in force afterwards. Returns 0, FARM_EINVALID (with
 * *bad_field as for scaling_validate) or FARM_EIO. */
int scaling_update(scaling_limits *out, const config *cfg, store *s, const scaling_change *c,
                   const char **bad_field);

#endif
