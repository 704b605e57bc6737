/*
 * azure.h - the Azure DevOps tracker (azure.c): work item comments, tags,
 * pull requests in Azure Repos linked to their work item, replies in PR
 * comment threads, with a personal access token.
 *
 * Which Azure Repos repository serves which project comes from the config:
 * each configured repository is given here by its farm name with the project
 * that owns its work items and the Git repository its pull requests go to.
 * A name the list does not know is read as "org/project/repo" (or
 * "org/project", without Git calls).
 */
#ifndef FARM_VCS_TRACKER_AZURE_H
#define FARM_VCS_TRACKER_AZURE_H

#include "tracker.h"

#include <stddef.h>

typedef struct tracker_azure_repo {
    const char *name;                  /* the farm's name for it: "org/project/repo" */
    const char *project;               /* the project owning the work items; NULL: from the name */
    const char *repository;            /* the Azure Repos repository; NULL: the name's third part */
    const char *const *allowed_actors; /* unique names with write access, or NULL */
    size_t nallowed_actors;
} tracker_azure_repo;

typedef struct tracker_azure_opts {
    const char *org_url;  /* "https://dev.azure.com/ORG" (no trailing slash needed) */
    const char *token;    /* personal access token (basic auth, empty user) */
    const char *bot_name; /* the farm's unique name; NULL: asked once from connectionData */
    const tracker_azure_repo *repos;
    size_t nrepos;
    long timeout_ms;          /* per request, default 30000 */
    int max_retries;          /* per request on 5xx/429/transport errors, default 3 */
    long max_retry_wait_ms;   /* longest wait slept through inside a call, default 1000;
                                 longer ones become FARM_EAGAIN */
    size_t max_comment_chars; /* a longer body is split; default 150000 (0: default) */
} tracker_azure_opts;

#define TRACKER_AZURE_OPTS_INIT                                                                    \
    {                                                                                              \
        NULL, NULL, NULL, NULL, 0, 30000, 3, 1000, 0                                               \
    }

/* An Azure DevOps tracker. Needs org_url and token; every string (and the
 * repos array) is copied. *out is freed with tracker_free(). Returns 0,
 * FARM_EINVALID or FARM_ENOMEM. */
int tracker_azure_new(tracker **out, const tracker_azure_opts *opts);

/* Azure's own limit on a pull request description, in characters. */
#define AZURE_PR_DESCRIPTION_MAX 4000

#endif
