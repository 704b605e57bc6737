/*
 * event.c - names and cleanup for the tracker-neutral event (see event.h).
 */
#include "event.h"

#include <stdlib.h>
#include <string.h>

const char *tracker_event_kind_name(tracker_event_kind k)
{
    switch (k) {
    case TEV_PING:
        return "ping";
    case TEV_ISSUE_OPENED:
        return "issue_opened";
    case TEV_ISSUE_EDITED:
        return "issue_edited";
    case TEV_ISSUE_LABELED:
        return "issue_labeled";
    case TEV_ISSUE_UNLABELED:
        return "issue_unlabeled";
    case TEV_ISSUE_ASSIGNED:
        return "issue_assigned";
    case TEV_ISSUE_CLOSED:
        return "issue_closed";
    case TEV_ISSUE_REOPENED:
        return "issue_reopened";
    case TEV_COMMENT_CREATED:
        return "comment_created";
    case TEV_COMMENT_EDITED:
        return "comment_edited";
    case TEV_REVIEW_SUBMITTED:
        return "review_submitted";
    case TEV_REVIEW_COMMENT:
        return "review_comment";
    case TEV_PR_OPENED:
        return "pr_opened";
    case TEV_PR_UPDATED:
        return "pr_updated";
    case TEV_PR_CLOSED:
        return "pr_closed";
    case TEV_INSTALLATION:
        return "installation";
    case TEV_INSTALLATION_REPOS:
        return "installation_repositories";
    case TEV_CHECK_COMPLETED:
        return "check_completed";
    case TEV_BRANCH_PUSHED:
        return "branch_pushed";
    case TEV_OTHER:
        break;
    }
    return "other";
}

static void free_list(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}

void tracker_event_free(tracker_event *ev)
{
    if (!ev)
        return;
    free(ev->tracker);
    free(ev->delivery_id);
    free(ev->event);
    free(ev->action);
    free(ev->repo);
    free(ev->title);
    free(ev->body);
    free(ev->url);
    free(ev->actor);
    free(ev->actor_display);
    free_list(ev->labels);
    free(ev->label);
    free_list(ev->assignees);
    free(ev->assignee);
    free(ev->comment_body);
    free(ev->comment_url);
    free(ev->review_state);
    free(ev->path);
    free(ev->head_branch);
    free(ev->head_sha);
    free(ev->check_name);
    free(ev->check_conclusion);
    free(ev->pushed_branch);
    free(ev->pushed_oid);
    memset(ev, 0, sizeof(*ev));
}
