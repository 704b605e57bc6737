/*
 * hook_azure.c - Azure DevOps service hook deliveries to tracker events.
 *
 * Azure DevOps sends one envelope for every event: `id` (the delivery id),
 * `eventType` and a `resource`. Work item events carry the item's fields;
 * `workitem.updated` carries the changed fields as {oldValue, newValue} and
 * the whole new revision beside them, and its `workItemId` may be 0 (the
 * revision's `id` names the item then). Identities are strings ("Name
 * <unique>") in resourceVersion 1.0 and objects ({displayName, uniqueName})
 * in the resource versions after it; both are read.
 *
 * The parser does not know the farm's repositories: it leaves a provisional
 * repo and the work item's project and area path in a hook_azure_where, and
 * hook_azure_route() (the one function here that reads the config) names the
 * configured repository.
 */
#include "hooks.h"
#include "hook_json.h"
#include "hook_ci.h"
#include "base/error.h"
#include "base/strv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void hook_azure_where_free(hook_azure_where *w)
{
    if (!w)
        return;
    free(w->project);
    free(w->area_path);
    free(w->repository);
    strv_list_free(w->pushed_branches);
    strv_list_free(w->pushed_oids);
    memset(w, 0, sizeof(*w));
}

/* An identity: an object {uniqueName, displayName} or a string, either
 * "Display Name <unique@name>" or just a name. */
static int read_identity(char **login, char **display, json_t *v)
{
    int rc = 0;
    if (json_is_object(v)) {
        json_t *unique = hook_json_path(v, "uniqueName", NULL);
        json_t *name = hook_json_path(v, "displayName", NULL);
        if (!hook_json_str(name))
            name = hook_json_path(v, "name", NULL);
        if (!hook_json_str(unique))
            unique = name;
        if (login && (rc = hook_json_dup(login, unique)))
            return rc;
        if (display)
            rc = hook_json_dup(display, name);
        return rc;
    }
    const char *s = hook_json_str(v);
    if (!s || !*s)
        return 0;
    const char *lt = strrchr(s, '<');
    size_t n = strlen(s);
    if (lt && n > 0 && s[n - 1] == '>' && lt + 1 < s + n - 1) {
        char *u = strndup(lt + 1, (size_t)(s + n - 1 - (lt + 1)));
        size_t dn = (size_t)(lt - s);
        while (dn > 0 && s[dn - 1] == ' ')
            dn--;
        char *d = strndup(s, dn);
        if (!u || !d) {
            free(u);
            free(d);
            farm_error_set("out of memory reading an identity");
            return FARM_ENOMEM;
        }
        if (login) {
            free(*login);
            *login = u;
        } else {
            free(u);
        }
        if (display) {
            free(*display);
            *display = d;
        } else {
            free(d);
        }
        return 0;
    }
    if (login && (rc = hook_str_dup(login, s)))
        return rc;
    if (display)
        rc = hook_str_dup(display, s);
    return rc;
}

/* The new value of a changed field in workitem.updated: {oldValue, newValue}. */
static json_t *change_new(json_t *changes, const char *field)
{
    return hook_json_path(changes, field, "newValue", NULL);
}

static json_t *change_old(json_t *changes, const char *field)
{
    return hook_json_path(changes, field, "oldValue", NULL);
}

/* Does the "; "-separated tag list `tags` hold `tag` (case-insensitively)? */
static int tags_have(const char *tags, const char *tag)
{
    size_t tn = strlen(tag);
    const char *p = tags;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == tn && n > 0 && !strncasecmp(p, tag, n))
            return 1;
        p = end;
    }
    return 0;
}

/* Split a tag list into labels. */
static int read_tags(char ***list, size_t *n, const char *tags)
{
    const char *p = tags;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len > 0) {
            char *tag = strndup(p, len);
            if (!tag) {
                farm_error_set("out of memory reading tags");
                return FARM_ENOMEM;
            }
            int rc = strv_list_add(list, n, tag);
            free(tag);
            if (rc)
                return rc;
        }
        p = end;
    }
    return 0;
}

static void free_list(char **list)
{
    for (char **p = list; p && *p; p++)
        free(*p);
    free(list);
}

/* The first tag in `now` that is not in `before`, or NULL; a heap copy. */
static int tag_difference(char **out, const char *now, const char *before)
{
    char **tags = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = read_tags(&tags, &n, now);
    for (size_t i = 0; !rc && i < n; i++) {
        if (!before || !tags_have(before, tags[i])) {
            rc = hook_str_dup(out, tags[i]);
            break;
        }
    }
    free_list(tags);
    return rc;
}

static int is_closed_state(const char *s)
{
    static const char *const closed[] = {"Closed", "Done", "Removed", "Resolved", "Completed"};
    for (size_t i = 0; s && i < sizeof(closed) / sizeof(closed[0]); i++)
        if (!strcasecmp(s, closed[i]))
            return 1;
    return 0;
}

/* The human URL of a work item: _links.html when the delivery has it, else
 * the API URL. */
static int read_item_url(tracker_event *ev, json_t *resource, json_t *revision)
{
    json_t *html = hook_json_path(revision, "_links", "html", "href", NULL);
    if (!hook_json_str(html))
        html = hook_json_path(resource, "_links", "html", "href", NULL);
    if (!hook_json_str(html))
        html = hook_json_path(revision, "url", NULL);
    if (!hook_json_str(html))
        html = hook_json_path(resource, "url", NULL);
    return hook_json_dup(&ev->url, html);
}

static int parse_workitem(tracker_event *ev, hook_azure_where *where, json_t *resource)
{
    int updated = !strcmp(ev->event, "workitem.updated");
    json_t *revision = updated ? hook_json_path(resource, "revision", NULL) : NULL;
    json_t *fields = hook_json_path(updated ? revision : resource, "fields", NULL);
    json_t *changes = updated ? hook_json_path(resource, "fields", NULL) : NULL;
    int rc;

    if (updated) {
        ev->number = hook_json_int(hook_json_path(resource, "workItemId", NULL));
        if (!ev->number)
            ev->number = hook_json_int(hook_json_path(revision, "id", NULL));
    } else {
        ev->number = hook_json_int(hook_json_path(resource, "id", NULL));
    }
    if (ev->number <= 0) {
        farm_error_set("%s delivery without a work item id", ev->event);
        return FARM_EINVALID;
    }
    if (!json_is_object(fields)) {
        farm_error_set("%s delivery without the work item's fields", ev->event);
        return FARM_EINVALID;
    }
    const char *project = hook_json_str(hook_json_path(fields, "System.TeamProject", NULL));
    if (!project || !*project) {
        farm_error_set("%s delivery without System.TeamProject", ev->event);
        return FARM_EINVALID;
    }
    if ((rc = hook_str_dup(&ev->repo, project)) || (rc = hook_str_dup(&where->project, project)) ||
        (rc = hook_json_dup(&where->area_path, hook_json_path(fields, "System.AreaPath", NULL))) ||
        (rc = hook_json_dup(&ev->title, hook_json_path(fields, "System.Title", NULL))) ||
        (rc = hook_json_dup(&ev->body, hook_json_path(fields, "System.Description", NULL))) ||
        (rc = read_item_url(ev, resource, revision)))
        return rc;

    /* Tags and the assignee as they are now: a change's new value wins over
     * the revision (which may predate it). */
    json_t *tags = change_new(changes, "System.Tags");
    if (!json_is_string(tags))
        tags = hook_json_path(fields, "System.Tags", NULL);
    if ((rc = read_tags(&ev->labels, &ev->nlabels, hook_json_str(tags))))
        return rc;
    json_t *assigned = change_new(changes, "System.AssignedTo");
    if (!assigned)
        assigned = hook_json_path(fields, "System.AssignedTo", NULL);
    char *who = NULL;
    if ((rc = read_identity(&who, NULL, assigned)))
        return rc;
    if (who) {
        rc = strv_list_add(&ev->assignees, &ev->nassignees, who);
        free(who);
        if (rc)
            return rc;
    }

    if (!strcmp(ev->event, "workitem.created")) {
        ev->kind = TEV_ISSUE_OPENED;
        return read_identity(&ev->actor, &ev->actor_display,
                             hook_json_path(fields, "System.CreatedBy", NULL));
    }
    json_t *changed_by = change_new(changes, "System.ChangedBy");
    if (!changed_by)
        changed_by = hook_json_path(resource, "revisedBy", NULL);
    if (!changed_by || json_is_null(changed_by))
        changed_by = hook_json_path(fields, "System.ChangedBy", NULL);
    if ((rc = read_identity(&ev->actor, &ev->actor_display, changed_by)))
        return rc;

    if (!strcmp(ev->event, "workitem.commented")) {
        ev->kind = TEV_COMMENT_CREATED;
        ev->comment_id =
            hook_json_int(hook_json_path(resource, "commentVersionRef", "commentId", NULL));
        if ((rc = hook_json_dup(&ev->comment_body, hook_json_path(fields, "System.History", NULL))))
            return rc;
        return hook_json_dup(&ev->comment_url,
                             hook_json_path(resource, "commentVersionRef", "url", NULL));
    }

    /* workitem.updated: the change that matters most names the kind. */
    const char *tags_new = hook_json_str(change_new(changes, "System.Tags"));
    const char *tags_old = hook_json_str(change_old(changes, "System.Tags"));
    if (changes && hook_json_path(changes, "System.Tags", NULL)) {
        if ((rc = tag_difference(&ev->label, tags_new, tags_old)))
            return rc;
        if (ev->label) {
            ev->kind = TEV_ISSUE_LABELED;
            return 0;
        }
        if ((rc = tag_difference(&ev->label, tags_old, tags_new)))
            return rc;
        if (ev->label) {
            ev->kind = TEV_ISSUE_UNLABELED;
            return 0;
        }
    }
    json_t *assignee = change_new(changes, "System.AssignedTo");
    if (assignee && !json_is_null(assignee)) {
        if ((rc = read_identity(&ev->assignee, NULL, assignee)))
            return rc;
        if (ev->assignee) {
            ev->kind = TEV_ISSUE_ASSIGNED;
            return 0;
        }
    }
    const char *state_new = hook_json_str(change_new(changes, "System.State"));
    const char *state_old = hook_json_str(change_old(changes, "System.State"));
    if (state_new && is_closed_state(state_new) && !is_closed_state(state_old))
        ev->kind = TEV_ISSUE_CLOSED;
    else if (state_new && state_old && is_closed_state(state_old) && !is_closed_state(state_new))
        ev->kind = TEV_ISSUE_REOPENED;
    else
        ev->kind = TEV_ISSUE_EDITED;
    return 0;
}

/* The pull request object of a PR event (resource itself) or of a PR
 * comment event (resource.pullRequest). */
static int read_pull_request(tracker_event *ev, hook_azure_where *where, json_t *pr)
{
    int rc;
    ev->is_pr = 1;
    ev->number = hook_json_int(hook_json_path(pr, "pullRequestId", NULL));
    ev->pr_number = ev->number;
    const char *project = hook_json_str(hook_json_path(pr, "repository", "project", "name", NULL));
    const char *repository = hook_json_str(hook_json_path(pr, "repository", "name", NULL));
    if (ev->number <= 0 || !project || !*project || !repository || !*repository) {
        farm_error_set("%s delivery without pullRequestId, repository.name and "
                       "repository.project.name",
                       ev->event);
        return FARM_EINVALID;
    }
    char *repo = NULL;
    if (asprintf(&repo, "%s/%s", project, repository) < 0) {
        farm_error_set("out of memory naming a repository");
        return FARM_ENOMEM;
    }
    free(ev->repo);
    ev->repo = repo;
    if ((rc = hook_str_dup(&where->project, project)) ||
        (rc = hook_str_dup(&where->repository, repository)) ||
        (rc = hook_json_dup(&ev->title, hook_json_path(pr, "title", NULL))) ||
        (rc = hook_json_dup(&ev->body, hook_json_path(pr, "description", NULL))))
        return rc;

    const char *remote = hook_json_str(hook_json_path(pr, "repository", "remoteUrl", NULL));
    if (remote) {
        if (asprintf(&ev->url, "%s/pullrequest/%lld", remote, (long long)ev->number) < 0) {
            ev->url = NULL;
            farm_error_set("out of memory building a URL");
            return FARM_ENOMEM;
        }
    } else if ((rc = hook_json_dup(&ev->url, hook_json_path(pr, "_links", "web", "href", NULL))) ||
               (!ev->url && (rc = hook_json_dup(&ev->url, hook_json_path(pr, "url", NULL))))) {
        return rc;
    }
    const char *ref = hook_json_str(hook_json_path(pr, "sourceRefName", NULL));
    if (ref && !strncmp(ref, "refs/heads/", 11))
        ref += 11;
    if ((rc = hook_str_dup(&ev->head_branch, ref)))
        return rc;

    size_t i;
    json_t *l;
    json_t *labels = hook_json_path(pr, "labels", NULL);
    if (json_is_array(labels)) {
        json_array_foreach(labels, i, l)
        {
            const char *name = hook_json_str(hook_json_path(l, "name", NULL));
            if (name && (rc = strv_list_add(&ev->labels, &ev->nlabels, name)))
                return rc;
        }
    }
    return 0;
}

static int parse_pull_request(tracker_event *ev, hook_azure_where *where, json_t *resource)
{
    int rc = read_pull_request(ev, where, resource);
    if (rc)
        return rc;
    const char *status = hook_json_str(hook_json_path(resource, "status", NULL));
    const char *merge = hook_json_str(hook_json_path(resource, "mergeStatus", NULL));
    json_t *who = hook_json_path(resource, "createdBy", NULL);
    if (!strcmp(ev->event, "git.pullrequest.created")) {
        ev->kind = TEV_PR_OPENED;
    } else if (status && !strcmp(status, "completed")) {
        ev->kind = TEV_PR_CLOSED;
        ev->merged = !merge || !strcmp(merge, "succeeded");
        if (hook_json_path(resource, "closedBy", NULL))
            who = hook_json_path(resource, "closedBy", NULL);
    } else if (status && !strcmp(status, "abandoned")) {
        ev->kind = TEV_PR_CLOSED;
        ev->merged = 0;
        if (hook_json_path(resource, "closedBy", NULL))
            who = hook_json_path(resource, "closedBy", NULL);
    } else {
        ev->kind = TEV_PR_UPDATED;
        ev->unmergeable = merge && !strcmp(merge, "conflicts");
    }
    return read_identity(&ev->actor, &ev->actor_display, who);
}

static int parse_pr_comment(tracker_event *ev, hook_azure_where *where, json_t *resource)
{
    json_t *comment = hook_json_path(resource, "comment", NULL);
    json_t *pr = hook_json_path(resource, "pullRequest", NULL);
    int rc = read_pull_request(ev, where, pr);
    if (rc)
        return rc;
    if (!json_is_object(comment)) {
        farm_error_set("%s delivery without a comment object", ev->event);
        return FARM_EINVALID;
    }
    ev->comment_id = hook_json_int(hook_json_path(comment, "id", NULL));
    ev->in_reply_to = hook_json_int(hook_json_path(comment, "parentCommentId", NULL));
    if ((rc = hook_json_dup(&ev->comment_body, hook_json_path(comment, "content", NULL))) ||
        (rc = hook_json_dup(&ev->comment_url,
                            hook_json_path(comment, "_links", "self", "href", NULL))) ||
        (rc = read_identity(&ev->actor, &ev->actor_display,
                            hook_json_path(comment, "author", NULL))))
        return rc;
    const char *published = hook_json_str(hook_json_path(comment, "publishedDate", NULL));
    const char *updated = hook_json_str(hook_json_path(comment, "lastUpdatedDate", NULL));
    if (hook_json_true(hook_json_path(comment, "isDeleted", NULL)))
        ev->kind = TEV_OTHER;
    else if (published && updated && strcmp(published, updated) != 0)
        ev->kind = TEV_COMMENT_EDITED;
    else
        ev->kind = TEV_COMMENT_CREATED;
    return 0;
}

/* A 40-digit lower-case hex object id that is not all zeros (a deletion). */
static int is_new_oid(const char *s)
{
    return s && strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40 && strspn(s, "0") != 40;
}

/* git.push ("Code pushed"): which branches of which Azure Repos repository
 * moved, and to what. resource.refUpdates[] holds each ref's name and its
 * old and new object ids; tags, deleted branches and malformed entries are
 * skipped, and a push that moved no branch is TEV_OTHER. Whether a branch is
 * a configured base is for hook_azure_route() and ingest. */
static int parse_push(tracker_event *ev, hook_azure_where *where, json_t *resource)
{
    const char *project =
        hook_json_str(hook_json_path(resource, "repository", "project", "name", NULL));
    const char *repository = hook_json_str(hook_json_path(resource, "repository", "name", NULL));
    json_t *updates = hook_json_path(resource, "refUpdates", NULL);
    size_t i;
    json_t *u;
    int rc;

    if (!project || !*project || !repository || !*repository) {
        farm_error_set("git.push delivery without resource.repository.name and "
                       "resource.repository.project.name");
        return FARM_EINVALID;
    }
    free(ev->repo);
    ev->repo = NULL;
    if (asprintf(&ev->repo, "%s/%s", project, repository) < 0) {
        ev->repo = NULL;
        farm_error_set("out of memory naming a repository");
        return FARM_ENOMEM;
    }
    if ((rc = hook_str_dup(&where->project, project)) ||
        (rc = hook_str_dup(&where->repository, repository)) ||
        (rc = read_identity(&ev->actor, &ev->actor_display,
                            hook_json_path(resource, "pushedBy", NULL))))
        return rc;
    ev->kind = TEV_OTHER;
    if (!json_is_array(updates))
        return 0;
    json_array_foreach(updates, i, u)
    {
        const char *ref = hook_json_str(hook_json_path(u, "name", NULL));
        const char *oid = hook_json_str(hook_json_path(u, "newObjectId", NULL));
        if (!ref || strncmp(ref, "refs/heads/", 11) != 0 || !ref[11] || !is_new_oid(oid))
            continue;
        if ((rc = strv_list_add(&where->pushed_branches, &where->npushed, ref + 11)) ||
            (rc = strv_list_add(&where->pushed_oids, &where->npushed_oids, oid)))
            return rc;
    }
    if (where->npushed == 0)
        return 0;
    if ((rc = hook_str_dup(&ev->pushed_branch, where->pushed_branches[0])) ||
        (rc = hook_str_dup(&ev->pushed_oid, where->pushed_oids[0])))
        return rc;
    ev->kind = TEV_BRANCH_PUSHED;
    return 0;
}

/* A push that moved several branches stands for the one that matters to
 * repository r: its base branch when the push moved it. */
static int push_pick_base(tracker_event *ev, const hook_azure_where *where, const config_repo *r)
{
    if (ev->kind != TEV_BRANCH_PUSHED || !r->base_branch)
        return 0;
    for (size_t i = 0; i < where->npushed && i < where->npushed_oids; i++) {
        if (strcmp(where->pushed_branches[i], r->base_branch) != 0)
            continue;
        int rc;
        if ((rc = hook_str_dup(&ev->pushed_branch, where->pushed_branches[i])) ||
            (rc = hook_str_dup(&ev->pushed_oid, where->pushed_oids[i])))
            return rc;
        return 0;
    }
    return 0;
}

int hook_azure_parse_where(tracker_event *out, hook_azure_where *where, const char *body,
                           size_t len)
{
    static const struct {
        const char *event;
        int (*parse)(tracker_event *, hook_azure_where *, json_t *);
    } events[] = {
        {"workitem.created", parse_workitem},
        {"workitem.updated", parse_workitem},
        {"workitem.commented", parse_workitem},
        {"git.pullrequest.created", parse_pull_request},
        {"git.pullrequest.updated", parse_pull_request},
        {"git.pullrequest.merged", parse_pull_request},
        {"ms.vss-code.git-pullrequest-comment-event", parse_pr_comment},
        {"build.complete", hook_azure_build_parse}, /* hook_ci.c */
        {"git.push", parse_push},
    };
    tracker_event ev;
    hook_azure_where w;
    json_t *root = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&ev, 0, sizeof(ev));
    memset(&w, 0, sizeof(w));
    if (where)
        memset(where, 0, sizeof(*where));
    if (!(root = hook_json_load(body, len))) {
        rc = FARM_EINVALID;
        goto out;
    }
    const char *id = hook_json_str(hook_json_path(root, "id", NULL));
    const char *type = hook_json_str(hook_json_path(root, "eventType", NULL));
    if (!id || !*id || !type || !*type) {
        farm_error_set("not an Azure DevOps service hook delivery: `id` and `eventType` must "
                       "be strings");
        rc = FARM_EINVALID;
        goto out;
    }
    if ((rc = hook_str_dup(&ev.tracker, "azure")) || (rc = hook_str_dup(&ev.delivery_id, id)) ||
        (rc = hook_str_dup(&ev.event, type)))
        goto out;
    ev.actor_access = ACTOR_UNKNOWN; /* Azure DevOps does not say; the config decides */
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (strcmp(type, events[i].event) != 0)
            continue;
        json_t *resource = hook_json_path(root, "resource", NULL);
        if (!json_is_object(resource)) {
            farm_error_set("%s delivery without a resource object", type);
            rc = FARM_EINVALID;
            goto out;
        }
        rc = events[i].parse(&ev, &w, resource);
        goto out;
    }
    ev.kind = TEV_OTHER;
    rc = 0;

out:
    json_decref(root);
    if (rc) {
        tracker_event_free(&ev);
        hook_azure_where_free(&w);
        return rc;
    }
    *out = ev;
    if (where)
        *where = w;
    else
        hook_azure_where_free(&w);
    return 0;
}

int hook_azure_parse(tracker_event *out, const char *body, size_t len)
{
    return hook_azure_parse_where(out, NULL, body, len);
}

/* Is `prefix` the area path `path` or one of its ancestors ("A\B" covers
 * "A\B" and "A\B\C" but not "A\BC")? */
static int area_covers(const char *prefix, const char *path)
{
    size_t n = strlen(prefix);
    if (!path || strncasecmp(prefix, path, n) != 0)
        return 0;
    return path[n] == '\0' || path[n] == '\\';
}

static int has_label(const tracker_event *ev, const char *tag)
{
    for (size_t i = 0; i < ev->nlabels; i++)
        if (!strcasecmp(ev->labels[i], tag))
            return 1;
    return 0;
}

/* "org/project/repo" ends with "/<project>/<repository>" (case-insensitive). */
static int names_repository(const char *name, const char *project, const char *repository)
{
    const char *slash = strchr(name, '/');
    if (!slash)
        return 0;
    const char *rest = slash + 1;
    size_t pn = strlen(project);
    return !strncasecmp(rest, project, pn) && rest[pn] == '/' &&
           !strcasecmp(rest + pn + 1, repository);
}

int hook_azure_route(tracker_event *ev, const hook_azure_where *where, const config *c)
{
    if (!where || !where->project || !c)
        return FARM_ENOTFOUND;
    for (size_t i = 0; i < c->nrepos; i++) {
        const config_repo *r = &c->repos[i];
        if (!r->tracker || strcmp(r->tracker, "azure") != 0 || !r->name)
            continue;
        if (where->repository) {
            if (!names_repository(r->name, where->project, where->repository))
                continue;
            int rc = push_pick_base(ev, where, r);
            if (rc)
                return rc;
        } else {
            if (!r->azure_project || strcasecmp(r->azure_project, where->project) != 0)
                continue;
            if (r->azure_area_path && !area_covers(r->azure_area_path, where->area_path))
                continue;
            if (r->azure_tag && !has_label(ev, r->azure_tag))
                continue;
        }
        return hook_str_dup(&ev->repo, r->name);
    }
    return FARM_ENOTFOUND;
}
