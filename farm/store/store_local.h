/*
 * store_local.h - the local tracker's issues, comments, labels, reactions
 * and pull requests, kept in the farm's store and handed to
 * vcs/tracker/local.c as a local_backend. It calls the store's backend
 * (store_backend.h, which fills the local_backend; all the SQL is in
 * sql_local.c for both backends) and vcs/tracker to make the tracker;
 * farm/report (trackers.c) and the CLI (`farm issue`, `farm demo`) call it.
 *
 * `farm issue` opens the store directly, whether or not `farm serve` runs
 * on the same data directory: the default backend (SQLite in WAL mode with
 * a busy timeout) lets both write, and every write here is group-committed
 * like any other.
 */
#ifndef FARM_FARM_STORE_STORE_LOCAL_H
#define FARM_FARM_STORE_STORE_LOCAL_H

#include "farm/config/config.h"
#include "store.h"

#include "vcs/tracker/local.h"
#include "vcs/tracker/tracker.h"

/* Fill *out with a backend over s (out->ctx = s). The backend borrows s: it
 * must outlive every tracker made over it. */
void store_local_backend(local_backend *out, store *s);

/* A local tracker over s for the repositories cfg configures with tracker
 * "local", writing as cfg's bot login. *backend is filled in and must live
 * as long as the tracker (the tracker borrows it). *out is freed with
 * tracker_free(). */
int store_local_tracker_new(tracker **out, local_backend *backend, store *s, const config *cfg);

#endif
