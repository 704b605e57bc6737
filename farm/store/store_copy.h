/*
 * store_copy.h - moving a farm's whole state from one store to another:
 * `farm store copy --from sqlite:DIR --to postgres://...`, for a team that
 * started on one machine and moves to PostgreSQL. Every table of the
 * schema is copied row for row with its ids (sessions, their logs, jobs,
 * deliveries, the outbox, settings, streams, the local tracker, model
 * spend), and the target's id sequences are moved past them. Built on the
 * inspect door (store_inspect.h), so it reads and writes like the tests do:
 * in pages, each page one write of the target.
 */
#ifndef FARM_FARM_STORE_STORE_COPY_H
#define FARM_FARM_STORE_STORE_COPY_H

#include "store.h"

#include <stdint.h>

/* Called after each page: the table and the rows copied from it so far. */
typedef void (*store_copy_progress_fn)(void *arg, const char *table, int64_t rows);

/* Copy everything from `from` (a SQLite store) to `to` (a PostgreSQL store
 * at the same schema version, both opened and so migrated). Refuses a
 * target that holds any session, delivery, job, outbox entry, setting,
 * stream or local issue (FARM_EEXISTS, "the target store is not empty"),
 * and a pair of backends it cannot copy between (FARM_EINVALID). *rows (may
 * be NULL) is the number of rows copied. Returns 0, FARM_EEXISTS,
 * FARM_EINVALID, FARM_ENOMEM or FARM_EIO; on failure the target may hold
 * part of the data: empty it (drop and create the database) and copy
 * again. */
int store_copy(int64_t *rows, store *from, store *to, store_copy_progress_fn progress, void *arg);

#endif
