/*
 * trackers.h - the farm's tracker clients, built from its config.
 *
 * One client per tracker kind ("github", "azure", "local"), made the first
 * time something asks for it and then shared by every thread (tracker.h
 * clients are thread-safe) until farm_close(). GitHub uses the personal
 * access token, or the GitHub App (app_id and private key) when one is
 * configured: a call then needs the installation id in its tracker_ref.
 * Azure DevOps gets the repositories configured with tracker "azure" (their
 * project and allowed actors); the local tracker writes into the farm's own
 * store.
 */
#ifndef FARM_FARM_REPORT_TRACKERS_H
#define FARM_FARM_REPORT_TRACKERS_H

#include "vcs/tracker/tracker.h"

typedef struct farm farm;

/* The farm's client for tracker_name. *out is owned by the farm (never
 * freed by the caller) and valid until farm_close(). Thread-safe. Returns
 * 0, FARM_ENOTFOUND (that tracker is not configured: no "github" or
 * "azure" section), FARM_EINVALID (an unknown name) or what the client's
 * constructor returns. */
int farm_tracker_get(tracker **out, farm *f, const char *tracker_name);

/* Replace the client for tracker_name (tests: a client with short timeouts
 * and no internal retries). The farm takes ownership of t; an earlier
 * client is freed, so nobody may be using it. */
void farm_tracker_set(farm *f, const char *tracker_name, tracker *t);

/* Free every client (farm_close() calls this). */
void farm_trackers_close(farm *f);

#endif
