/*
 * choice.h - what people choose about the work on one issue: a hold, and
 * which agent preset runs it.
 *
 * A hold (`/farm hold`, lifted by `/farm unhold`) means nothing new starts
 * on the issue or its pull request: no new session, no revision, no run or
 * retry. It is kept by the store (farm/store/store_hold.h), so it outlives
 * restarts and exists before any session does; a run already at work goes
 * on, and a job that was queued when the hold came is parked by the run
 * that finds it (farm/run) and queued again when the hold is lifted.
 *
 * The agent preset of a new session is picked, in order, by `/farm run
 * <preset>`, an `agent:<preset>` label on the issue, else the repository's
 * default (config_repo_agent_default()); it must be one the repository allows
 * (repos[].agents).
 *
 * Called by ingest.c and review.c inside ingest's write; reads only the config.
 */
#ifndef FARM_FARM_INTAKE_CHOICE_H
#define FARM_FARM_INTAKE_CHOICE_H

#include "commands.h"
#include "farm/config/config.h"
#include "farm/store/store.h"
#include "farm/store/store_hold.h"
#include "vcs/tracker/event.h"

#include <stddef.h>
#include <stdint.h>

#define CHOICE_LABEL_PREFIX "agent:"

/* The preset a new session on ev's issue runs: cmd's argument (a `/farm run
 * <preset>` command, may be NULL), else an `agent:<preset>` label of the
 * event, else the repository's default. *preset points to static, config
 * or event storage (valid while ev and cfg are). Returns 1 when the
 * repository allows it, 0 when it does not (then *preset is the one asked
 * for, for the reply). */
int choice_preset_pick(const char **preset, const config *cfg, const config_repo *repo,
                       const tracker_event *ev, const command *cmd);

/* The reply when a preset is not allowed: which ones are and how to allow
 * more. Heap string the caller frees, or NULL (out of memory). */
char *choice_preset_refusal(const config *cfg, const config_repo *repo, const char *preset);

#endif
