/*
 * event.h - the tracker-neutral event.
 *
 * webhook/ turns a GitHub or Azure DevOps delivery into one of these, and the
 * local tracker (vcs/tracker/local.c) makes them directly; nothing above this point
 * ever reads tracker JSON. All strings are heap copies owned by the event;
 * tracker_event_free() releases them. Absent strings are NULL, absent numbers 0.
 */
#ifndef FARM_VCS_TRACKER_EVENT_H
#define FARM_VCS_TRACKER_EVENT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TEV_OTHER = 0, /* understood envelope, nothing to act on */
    TEV_PING,
    TEV_ISSUE_OPENED,
    TEV_ISSUE_EDITED,
    TEV_ISSUE_LABELED,   /* `label` holds the label added */
    TEV_ISSUE_UNLABELED, /* `label` holds the label removed */
    TEV_ISSUE_ASSIGNED,  /* `assignee` holds who was assigned */
    TEV_ISSUE_CLOSED,
    TEV_ISSUE_REOPENED,
    TEV_COMMENT_CREATED, /* on an issue or a PR (is_pr), `comment_*` set */
    TEV_COMMENT_EDITED,
    TEV_REVIEW_SUBMITTED, /* `review_state`, `comment_body` = review body */
    TEV_REVIEW_COMMENT,   /* an inline PR review comment: `path`, `line`, `comment_*` */
    TEV_PR_OPENED,
    TEV_PR_UPDATED,
    TEV_PR_CLOSED,          /* `merged` says whether it was merged */
    TEV_INSTALLATION,       /* GitHub App installation created/deleted/... */
    TEV_INSTALLATION_REPOS, /* repositories added to/removed from an installation */
    TEV_CHECK_COMPLETED,    /* a CI check on a commit completed: `head_sha`, `check_name`,
                               `check_conclusion`, the PR (`number`, is_pr) when the tracker
                               names it, else `head_branch` */
    TEV_BRANCH_PUSHED,      /* a branch moved (GitHub `push`, Azure `git.push`): `pushed_branch`,
                               `pushed_oid` */
} tracker_event_kind;

/* What the actor may do on the repository, as far as the delivery says. */
typedef enum {
    ACTOR_UNKNOWN =
        0,       /* the delivery does not say (Azure DevOps: decided by the config allowlist) */
    ACTOR_NONE,  /* no write access (GitHub CONTRIBUTOR, NONE, FIRST_TIMER, ...) */
    ACTOR_WRITE, /* write access (GitHub OWNER, MEMBER, COLLABORATOR) */
} tracker_actor_access;

typedef struct tracker_event {
    tracker_event_kind kind;
    char *tracker;     /* "github", "azure" or "local" */
    char *delivery_id; /* X-GitHub-Delivery, the Azure event id, or a local id */
    char *event;       /* the tracker's own event name ("issues", "workitem.updated") */
    char *action;      /* the tracker's own action ("labeled"), or NULL */
    char *repo;        /* configured repository name: "owner/name" (GitHub),
                          "org/project/repo" or "org/project" (Azure), local name */
    int64_t number;    /* issue, work item or PR number; 0 when none */
    int is_pr;         /* number names a pull request */
    int64_t pr_number; /* for Azure PR events that reference a work item: the PR id */
    char *title;
    char *body;
    char *url;   /* human URL of the issue or PR */
    char *actor; /* login / unique name of who caused the event */
    char *actor_display;
    tracker_actor_access actor_access;
    int actor_is_bot; /* GitHub sender.type "Bot" or a login ending in "[bot]" */
    char **labels;    /* current labels (NULL-terminated array, may be NULL) */
    size_t nlabels;
    char *label;      /* the label this event added or removed */
    char **assignees; /* current assignees (NULL-terminated array, may be NULL) */
    size_t nassignees;
    char *assignee; /* the assignee this event added */
    int64_t comment_id;
    char *comment_body;
    char *comment_url;
    int64_t review_id;
    char *review_state;      /* "approved", "changes_requested", "commented" */
    char *path;              /* review comment: file path */
    int line;                /* review comment: line (0 when none) */
    int64_t in_reply_to;     /* review comment: the comment it replies to */
    char *head_branch;       /* PR events: the source branch ("farm/12-fix-typo") */
    int merged;              /* TEV_PR_CLOSED: merged or not */
    int64_t installation_id; /* GitHub App installation, when the delivery names one */
    char *head_sha;          /* TEV_CHECK_COMPLETED: the commit checked */
    char *check_name;        /* TEV_CHECK_COMPLETED: the check, status context or pipeline */
    char *check_conclusion;  /* TEV_CHECK_COMPLETED: "success", "failure", "failed", ... */
    int unmergeable;         /* PR events: the tracker says the PR does not merge cleanly
                                (GitHub mergeable false, Azure DevOps mergeStatus conflicts) */
    char *pushed_branch;     /* TEV_BRANCH_PUSHED: the branch ("main") */
    char *pushed_oid;        /* TEV_BRANCH_PUSHED: its new head (hex) */
} tracker_event;

const char *tracker_event_kind_name(tracker_event_kind k);
void tracker_event_free(tracker_event *ev);

#endif
