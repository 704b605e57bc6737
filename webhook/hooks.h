/*
 * hooks.h - turning tracker webhook deliveries into tracker-neutral events.
 *
 * The parsers are pure: JSON text in, one tracker_event out, no config, no
 * store, no I/O, so they can be unit-tested and fuzzed on their own. They
 * accept any valid JSON of the wrong shape (missing fields, wrong types,
 * nulls) without crashing: a payload that cannot name what it is about is
 * FARM_EINVALID (the server answers 400), an envelope it understands but has
 * nothing to act on is a TEV_OTHER event (the server answers 200 "ignored").
 *
 * Azure DevOps deliveries do not name a configured repository; the mapping
 * from the work item's project, area path and tags (or the pull request's
 * Azure Repos repository) to a configured `repos[]` entry is a separate step,
 * hook_azure_route(), which is the only function here that reads the config.
 */
#ifndef FARM_WEBHOOK_HOOKS_H
#define FARM_WEBHOOK_HOOKS_H

#include "farm/config/config.h"
#include "vcs/tracker/event.h"

#include <stddef.h>

/* Parse a GitHub delivery. event_name is the X-GitHub-Event header and
 * delivery_id the X-GitHub-Delivery header (either may be NULL: a missing
 * event name is FARM_EINVALID). On success *out holds heap strings the caller
 * releases with tracker_event_free(); on failure *out is zeroed and the error
 * slot says why. Returns 0, FARM_EINVALID or FARM_ENOMEM. */
int hook_github_parse(tracker_event *out, const char *event_name, const char *delivery_id,
                      const char *body, size_t len);

/* GitHub's other content type, application/x-www-form-urlencoded, sends the
 * JSON as the form field `payload`. Decode it: on success *out is a heap
 * NUL-terminated copy of the JSON (freed by the caller) and *outlen its
 * length. Returns 0, FARM_EINVALID (no `payload` field, bad %-escape) or
 * FARM_ENOMEM. */
int hook_github_form_payload(char **out, size_t *outlen, const char *body, size_t len);

/* Where an Azure DevOps delivery comes from, for hook_azure_route(). All
 * strings are heap copies released with hook_azure_where_free(). */
typedef struct hook_azure_where {
    char *project;    /* work item System.TeamProject, or the PR repository's project */
    char *area_path;  /* work item System.AreaPath, or NULL */
    char *repository; /* PR, build and push events: the Azure Repos repository name */
    /* git.push: every branch the push moved and its new head, parallel lists
     * (the event names the first; hook_azure_route() names the configured
     * base branch when the push moved it too) */
    char **pushed_branches;
    char **pushed_oids;
    size_t npushed, npushed_oids;
} hook_azure_where;

void hook_azure_where_free(hook_azure_where *w);

/* Parse an Azure DevOps service hook delivery (the envelope's `id` is the
 * delivery id). ev->repo is a provisional "project" (work items) or
 * "project/repository" (pull requests) until hook_azure_route() names the
 * configured repository. Ownership and errors as hook_github_parse(). */
int hook_azure_parse(tracker_event *out, const char *body, size_t len);

/* The same, also filling *where (may be NULL) for hook_azure_route(). On
 * failure *where is zeroed too. */
int hook_azure_parse_where(tracker_event *out, hook_azure_where *where, const char *body,
                           size_t len);

/* Find the configured repository an Azure event belongs to and set ev->repo to
 * its configured name. Work items match a `repos[]` entry with tracker
 * "azure" whose azure_project equals the project (case-insensitively), whose
 * azure_area_path, when set, is a prefix of the work item's area path (at a
 * `\` boundary), and whose azure_tag, when set, is among the work item's tags.
 * Pull requests, builds and pushes match an entry named
 * "<org>/<project>/<repository>" (case-insensitively, any org); a push that
 * moved several branches names the entry's base_branch when it is among them.
 * Returns 0 when a repository was found,
 * FARM_ENOTFOUND when none matches (ev->repo is left as it was), FARM_ENOMEM. */
int hook_azure_route(tracker_event *ev, const hook_azure_where *where, const config *c);

#endif
