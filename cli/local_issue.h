/*
 * local_issue.h - filing an issue in the local tracker as a person does,
 * shared by `farm issue new` and `farm demo`: store it with its labels and
 * hand its "opened" event to farm_ingest(), as a webhook delivery would be.
 */
#ifndef FARM_CLI_LOCAL_ISSUE_H
#define FARM_CLI_LOCAL_ISSUE_H

#include "farm/farm.h"
#include "farm/intake/ingest.h"
#include "vcs/tracker/local.h"

#include <stddef.h>
#include <stdint.h>

/* File issue `title` / `body` (checked by the caller: sizes, UTF-8) with
 * labels in repo, by actor. *out_number is set as soon as the issue is saved
 * (0 until then), so a caller can tell "not saved" from "saved, but the farm
 * could not record the event"; *res holds what farm_ingest() decided.
 * Returns 0 or a negative FARM_E* code with farm_error_last() saying why. */
int local_issue_open(int64_t *out_number, ingest_result *res, farm *f, const local_backend *b,
                     const char *repo, const char *title, const char *body,
                     const char *const *labels, size_t nlabels, const char *actor);

#endif
