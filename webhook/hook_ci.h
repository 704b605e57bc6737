/*
 * hook_ci.h - CI deliveries (checks and builds completing) to tracker
 * events, for hook_github.c and hook_azure.c. Internal to webhook/.
 *
 * GitHub: `check_run`, `check_suite` and `workflow_run` with action
 * "completed", and `status` (no action) with a final state, become
 * TEV_CHECK_COMPLETED with the commit, the check's name and conclusion, and
 * the pull request when the payload names one (else the head branch; a
 * status names the branches holding the commit). Anything else of those
 * events (requested, in progress, pending) is TEV_OTHER.
 * Azure DevOps: `build.complete` becomes TEV_CHECK_COMPLETED with the build
 * definition's name and result, the source commit and branch, and the pull
 * request for a PR validation build. A build without a project and a
 * repository (an older payload shape) is TEV_OTHER: nothing says where it
 * belongs.
 */
#ifndef FARM_WEBHOOK_HOOK_CI_H
#define FARM_WEBHOOK_HOOK_CI_H

#include "hooks.h"

#include <jansson.h>

/* 1 when event_name is one of GitHub's CI events above. */
int hook_github_ci_event(const char *event_name);

/* Fill ev (tracker, delivery, event, action, repo and sender already read)
 * from a GitHub CI delivery. Returns 0, FARM_EINVALID or FARM_ENOMEM. */
int hook_github_ci_parse(tracker_event *ev, json_t *root);

/* Fill ev and *where from an Azure DevOps `build.complete` resource. */
int hook_azure_build_parse(tracker_event *ev, hook_azure_where *where, json_t *resource);

#endif
