/*
 * farm.h - the top of farm/: one running farm, its rooms wired together.
 *
 * farm/farm.c owns the farm handle's life. farm_open() fills the handle
 * (farm/handle) with the config (farm/config), the store (farm/store) and
 * the durable streams (farm/stream); farm_close() stops what was started on
 * it, the scheduler (farm/sched) and the outbox's senders and tracker
 * clients (farm/report), before closing what they stand on. The CLI opens
 * and closes the farm (cli/serve_common.c, cmd_issue.c, cmd_prompt.c) and
 * starts the workers on it itself (outbox_start(), scheduler_start(),
 * digest_daily_start()); the HTTP front (webhook/) is handed an open farm.
 *
 * farm_open() is what `farm serve` (and every test that needs a real farm)
 * calls after loading the config: it creates the data directory (mode 0700),
 * opens the store inside it, runs the schema migrations and starts the
 * store's writer thread. Everything that acts on tracker events goes through
 * the handle (farm_ingest() in farm/intake/ingest.h).
 */
#ifndef FARM_FARM_FARM_H
#define FARM_FARM_FARM_H

#include "farm/handle/handle.h"

/* Open a farm on cfg. The farm TAKES OWNERSHIP of cfg: on success and on
 * failure alike, cfg is freed by the farm (by farm_close() or before
 * farm_open() returns an error), so the caller never frees it after this
 * call. On success *out is a handle the caller releases with farm_close().
 * Returns 0, FARM_EIO (data directory or database cannot be created or
 * opened), FARM_ENEWER (the data directory was written by a newer farm) or
 * FARM_ENOMEM, with the message in farm_error_last(). */
int farm_open(farm **out, config *cfg);

/* Whether agents could run on cfg: when the farm runs as root with the
 * sandbox on, each agent runs as a uid of its own, which must be able to
 * search every directory above the data directory (and the sandbox
 * helper), or every run fails at its agent step. Run it before opening a
 * farm that will run agents (`farm serve`, `farm demo`, `farm doctor`); it
 * creates nothing. Returns 0 (also with sandbox.mode "unsafe-none" or as an
 * ordinary user, whose uid the sandbox keeps), or FARM_EINVALID with
 * farm_error_last() naming each directory and the fix. */
int farm_reach_check(const config *cfg);

/* Start the model gateway (docs/gateway.md) when the agent needs a model
 * API (a preset other than the stand-in, with agent.api_key): on a Unix
 * socket in the data directory, and with sandbox.mode "unsafe-none" on a
 * loopback port as well (there is no sandbox to relay it). Each run then
 * registers with it. Returns 0 (also when none is needed) or FARM_EIO /
 * FARM_EINVALID. farm_close() stops it. */
int farm_gateway_start(farm *f);

/* Stop the writer thread (after it has committed what is queued), close the
 * store and free the config. NULL is accepted. */
void farm_close(farm *f);

#endif
