/*
 * hook_github.c - GitHub webhook deliveries to tracker events.
 *
 * GitHub names the event in the X-GitHub-Event header and the action inside
 * the payload. Each understood (event, action) pair becomes one
 * tracker_event_kind; the subject (an issue or a pull request) is read the
 * same way whatever the event. What the actor may do comes from the
 * `author_association` GitHub puts on the object the actor wrote, and only
 * when the sender is that object's author: an association describes the
 * author, not whoever happened to trigger the delivery.
 */
#include "hooks.h"
#include "hook_json.h"
#include "hook_ci.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/strv.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static tracker_actor_access association_access(const char *assoc)
{
    static const char *const writers[] = {"OWNER", "MEMBER", "COLLABORATOR"};
    if (!assoc)
        return ACTOR_UNKNOWN;
    for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++)
        if (!strcmp(assoc, writers[i]))
            return ACTOR_WRITE;
    return ACTOR_NONE;
}

/* The access of the sender, as told by the association on `object` (an issue,
 * comment, review or pull request), when the sender wrote that object. */
static tracker_actor_access sender_access(json_t *root, json_t *object)
{
    const char *sender = hook_json_str(hook_json_path(root, "sender", "login", NULL));
    const char *author = hook_json_str(hook_json_path(object, "user", "login", NULL));
    if (!sender || !author || strcmp(sender, author) != 0)
        return ACTOR_UNKNOWN;
    return association_access(hook_json_str(hook_json_path(object, "author_association", NULL)));
}

static int is_bot_login(const char *login)
{
    size_t n = login ? strlen(login) : 0;
    return n > 5 && !strcmp(login + n - 5, "[bot]");
}

static int read_sender(tracker_event *ev, json_t *root)
{
    json_t *sender = hook_json_path(root, "sender", NULL);
    int rc = hook_json_dup(&ev->actor, hook_json_path(sender, "login", NULL));
    if (!rc)
        rc = hook_json_dup(&ev->actor_display, hook_json_path(sender, "login", NULL));
    const char *type = hook_json_str(hook_json_path(sender, "type", NULL));
    ev->actor_is_bot = (type && !strcmp(type, "Bot")) || is_bot_login(ev->actor);
    return rc;
}

/* Labels arrive as objects with a name (webhooks) or, in older shapes, as
 * plain strings; anything else is skipped. */
static int read_labels(tracker_event *ev, json_t *labels)
{
    size_t i;
    json_t *l;
    if (!json_is_array(labels))
        return 0;
    json_array_foreach(labels, i, l)
    {
        const char *name = json_is_string(l) ? json_string_value(l)
                                             : hook_json_str(hook_json_path(l, "name", NULL));
        if (name) {
            int rc = strv_list_add(&ev->labels, &ev->nlabels, name);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int read_assignees(tracker_event *ev, json_t *subject)
{
    size_t i;
    json_t *a;
    json_t *list = hook_json_path(subject, "assignees", NULL);
    if (json_is_array(list)) {
        json_array_foreach(list, i, a)
        {
            const char *login = hook_json_str(hook_json_path(a, "login", NULL));
            if (login) {
                int rc = strv_list_add(&ev->assignees, &ev->nassignees, login);
                if (rc)
                    return rc;
            }
        }
    }
    const char *single = hook_json_str(hook_json_path(subject, "assignee", "login", NULL));
    if (!ev->nassignees && single)
        return strv_list_add(&ev->assignees, &ev->nassignees, single);
    return 0;
}

/* The issue or pull request an event is about. */
static int read_subject(tracker_event *ev, json_t *subject, const char *what)
{
    int rc;
    if (!json_is_object(subject)) {
        farm_error_set("%s delivery without a %s object", ev->event, what);
        return FARM_EINVALID;
    }
    if (!ev->number)
        ev->number = hook_json_int(hook_json_path(subject, "number", NULL));
    if (ev->number <= 0) {
        farm_error_set("%s delivery without a valid %s.number", ev->event, what);
        return FARM_EINVALID;
    }
    if ((rc = hook_json_dup(&ev->title, hook_json_path(subject, "title", NULL))) ||
        (rc = hook_json_dup(&ev->body, hook_json_path(subject, "body", NULL))) ||
        (rc = hook_json_dup(&ev->url, hook_json_path(subject, "html_url", NULL))) ||
        (rc = read_labels(ev, hook_json_path(subject, "labels", NULL))) ||
        (rc = read_assignees(ev, subject)))
        return rc;
    if (ev->is_pr)
        rc = hook_json_dup(&ev->head_branch, hook_json_path(subject, "head", "ref", NULL));
    return rc;
}

static int read_comment(tracker_event *ev, json_t *root, json_t *comment)
{
    int rc;
    if (!json_is_object(comment)) {
        farm_error_set("%s delivery without a comment object", ev->event);
        return FARM_EINVALID;
    }
    ev->comment_id = hook_json_int(hook_json_path(comment, "id", NULL));
    if ((rc = hook_json_dup(&ev->comment_body, hook_json_path(comment, "body", NULL))) ||
        (rc = hook_json_dup(&ev->comment_url, hook_json_path(comment, "html_url", NULL))))
        return rc;
    ev->actor_access = sender_access(root, comment);
    return 0;
}

/* Map an action to a kind through a small table; TEV_OTHER when unlisted. */
struct action_kind {
    const char *action;
    tracker_event_kind kind;
};

static tracker_event_kind kind_of(const struct action_kind *t, size_t n, const char *action)
{
    for (size_t i = 0; action && i < n; i++)
        if (!strcmp(t[i].action, action))
            return t[i].kind;
    return TEV_OTHER;
}

#define KIND_OF(table, action) kind_of(table, sizeof(table) / sizeof(table[0]), action)

static int parse_issues(tracker_event *ev, json_t *root)
{
    static const struct action_kind table[] = {
        {"opened", TEV_ISSUE_OPENED},     {"edited", TEV_ISSUE_EDITED},
        {"labeled", TEV_ISSUE_LABELED},   {"unlabeled", TEV_ISSUE_UNLABELED},
        {"assigned", TEV_ISSUE_ASSIGNED}, {"closed", TEV_ISSUE_CLOSED},
        {"reopened", TEV_ISSUE_REOPENED},
    };
    json_t *issue = hook_json_path(root, "issue", NULL);
    ev->is_pr = json_is_object(hook_json_path(issue, "pull_request", NULL));
    int rc = read_subject(ev, issue, "issue");
    if (rc)
        return rc;
    ev->kind = KIND_OF(table, ev->action);
    switch (ev->kind) {
    case TEV_ISSUE_LABELED:
    case TEV_ISSUE_UNLABELED:
        if ((rc = hook_json_dup(&ev->label, hook_json_path(root, "label", "name", NULL))))
            return rc;
        /* Only people with triage access or more can label or assign. */
        ev->actor_access = ACTOR_WRITE;
        break;
    case TEV_ISSUE_ASSIGNED:
        if ((rc = hook_json_dup(&ev->assignee, hook_json_path(root, "assignee", "login", NULL))))
            return rc;
        ev->actor_access = ACTOR_WRITE;
        break;
    default:
        ev->actor_access = sender_access(root, issue);
        break;
    }
    return 0;
}

static int parse_issue_comment(tracker_event *ev, json_t *root)
{
    static const struct action_kind table[] = {
        {"created", TEV_COMMENT_CREATED},
        {"edited", TEV_COMMENT_EDITED},
    };
    json_t *issue = hook_json_path(root, "issue", NULL);
    ev->is_pr = json_is_object(hook_json_path(issue, "pull_request", NULL));
    int rc = read_subject(ev, issue, "issue");
    if (!rc)
        rc = read_comment(ev, root, hook_json_path(root, "comment", NULL));
    if (!rc)
        ev->kind = KIND_OF(table, ev->action);
    return rc;
}

static int parse_review(tracker_event *ev, json_t *root)
{
    json_t *review = hook_json_path(root, "review", NULL);
    ev->is_pr = 1;
    int rc = read_subject(ev, hook_json_path(root, "pull_request", NULL), "pull_request");
    if (rc)
        return rc;
    if (!json_is_object(review)) {
        farm_error_set("pull_request_review delivery without a review object");
        return FARM_EINVALID;
    }
    ev->review_id = hook_json_int(hook_json_path(review, "id", NULL));
    if ((rc = hook_json_dup(&ev->review_state, hook_json_path(review, "state", NULL))) ||
        (rc = hook_json_dup(&ev->comment_body, hook_json_path(review, "body", NULL))) ||
        (rc = hook_json_dup(&ev->comment_url, hook_json_path(review, "html_url", NULL))))
        return rc;
    /* Webhooks say "approved"; the REST API says "APPROVED". Keep one form. */
    for (char *p = ev->review_state; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    ev->actor_access = sender_access(root, review);
    if (ev->action && !strcmp(ev->action, "submitted"))
        ev->kind = TEV_REVIEW_SUBMITTED;
    return 0;
}

static int parse_review_comment(tracker_event *ev, json_t *root)
{
    json_t *comment = hook_json_path(root, "comment", NULL);
    ev->is_pr = 1;
    int rc = read_subject(ev, hook_json_path(root, "pull_request", NULL), "pull_request");
    if (!rc)
        rc = read_comment(ev, root, comment);
    if (rc)
        return rc;
    if ((rc = hook_json_dup(&ev->path, hook_json_path(comment, "path", NULL))))
        return rc;
    int64_t line = hook_json_int(hook_json_path(comment, "line", NULL));
    if (!line) /* outdated comments keep only their original line */
        line = hook_json_int(hook_json_path(comment, "original_line", NULL));
    ev->line = line > 0 && line < 1000000000 ? (int)line : 0;
    ev->in_reply_to = hook_json_int(hook_json_path(comment, "in_reply_to_id", NULL));
    if (ev->action && !strcmp(ev->action, "created"))
        ev->kind = TEV_REVIEW_COMMENT;
    return 0;
}

static int parse_pull_request(tracker_event *ev, json_t *root)
{
    static const struct action_kind table[] = {
        {"opened", TEV_PR_OPENED},  {"reopened", TEV_PR_OPENED}, {"synchronize", TEV_PR_UPDATED},
        {"edited", TEV_PR_UPDATED}, {"closed", TEV_PR_CLOSED},
    };
    json_t *pr = hook_json_path(root, "pull_request", NULL);
    ev->is_pr = 1;
    ev->number = hook_json_int(hook_json_path(root, "number", NULL));
    int rc = read_subject(ev, pr, "pull_request");
    if (rc)
        return rc;
    ev->kind = KIND_OF(table, ev->action);
    ev->merged = hook_json_true(hook_json_path(pr, "merged", NULL));
    /* null while GitHub still computes it: only an explicit false counts */
    ev->unmergeable = json_is_false(hook_json_path(pr, "mergeable", NULL));
    ev->actor_access = sender_access(root, pr);
    return 0;
}

/* A push: which branch moved and to what. Tags, deleted branches and
 * anything else are TEV_OTHER; whether the branch is a configured base is
 * ingest's business. */
static int parse_push(tracker_event *ev, json_t *root)
{
    const char *ref = hook_json_str(hook_json_path(root, "ref", NULL));
    const char *after = hook_json_str(hook_json_path(root, "after", NULL));
    int rc;

    ev->kind = TEV_OTHER;
    if (!ref || strncmp(ref, "refs/heads/", 11) != 0 || !ref[11] ||
        hook_json_true(hook_json_path(root, "deleted", NULL)) || !after || strlen(after) != 40 ||
        strspn(after, "0123456789abcdef") != 40 ||
        !strcmp(after, "0000000000000000000000000000000000000000"))
        return 0;
    if ((rc = hook_str_dup(&ev->pushed_branch, ref + 11)) ||
        (rc = hook_str_dup(&ev->pushed_oid, after)))
        return rc;
    ev->kind = TEV_BRANCH_PUSHED;
    return 0;
}

static int parse_installation(tracker_event *ev, json_t *root, tracker_event_kind kind)
{
    if (!json_is_object(hook_json_path(root, "installation", NULL)) || !ev->installation_id) {
        farm_error_set("%s delivery without installation.id", ev->event);
        return FARM_EINVALID;
    }
    ev->kind = kind;
    return 0;
}

int hook_github_form_payload(char **out, size_t *outlen, const char *body, size_t len)
{
    *out = NULL;
    *outlen = 0;
    const char *p = body, *end = body ? body + len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *field_end = amp ? amp : end;
        if (field_end - p >= 8 && !memcmp(p, "payload=", 8)) {
            const char *v = p + 8;
            char *dst = malloc((size_t)(field_end - v) + 1);
            size_t n = 0;
            if (!dst) {
                farm_error_set("out of memory decoding the form payload");
                return FARM_ENOMEM;
            }
            for (const char *q = v; q < field_end; q++) {
                if (*q == '+') {
                    dst[n++] = ' ';
                } else if (*q == '%') {
                    int hi = q + 2 < field_end ? crypto_hex_value(q[1]) : -1;
                    int lo = hi >= 0 ? crypto_hex_value(q[2]) : -1;
                    if (lo < 0) {
                        free(dst);
                        farm_error_set("the form field `payload` has a bad %%-escape");
                        return FARM_EINVALID;
                    }
                    dst[n++] = (char)(hi * 16 + lo);
                    q += 2;
                } else {
                    dst[n++] = *q;
                }
            }
            dst[n] = '\0';
            *out = dst;
            *outlen = n;
            return 0;
        }
        p = amp ? amp + 1 : end;
    }
    farm_error_set("a form-encoded delivery without a `payload` field");
    return FARM_EINVALID;
}

int hook_github_parse(tracker_event *out, const char *event_name, const char *delivery_id,
                      const char *body, size_t len)
{
    tracker_event ev;
    json_t *root = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&ev, 0, sizeof(ev));
    if (!event_name || !*event_name) {
        farm_error_set("missing X-GitHub-Event header");
        rc = FARM_EINVALID;
        goto out;
    }
    if (!(root = hook_json_load(body, len))) {
        rc = FARM_EINVALID;
        goto out;
    }
    if ((rc = hook_str_dup(&ev.tracker, "github")) ||
        (rc = hook_str_dup(&ev.delivery_id, delivery_id)) ||
        (rc = hook_str_dup(&ev.event, event_name)) ||
        (rc = hook_json_dup(&ev.action, hook_json_path(root, "action", NULL))) ||
        (rc = hook_json_dup(&ev.repo, hook_json_path(root, "repository", "full_name", NULL))) ||
        (rc = read_sender(&ev, root)))
        goto out;
    ev.installation_id = hook_json_int(hook_json_path(root, "installation", "id", NULL));

    if (!strcmp(event_name, "ping")) {
        ev.kind = TEV_PING;
        rc = 0;
        goto out;
    }
    if (!strcmp(event_name, "installation")) {
        rc = parse_installation(&ev, root, TEV_INSTALLATION);
        goto out;
    }
    if (!strcmp(event_name, "installation_repositories")) {
        rc = parse_installation(&ev, root, TEV_INSTALLATION_REPOS);
        goto out;
    }

    if (hook_github_ci_event(event_name)) { /* hook_ci.c */
        rc = hook_github_ci_parse(&ev, root);
        goto out;
    }

    static const struct {
        const char *name;
        int (*parse)(tracker_event *, json_t *);
    } subjects[] = {
        {"issues", parse_issues},
        {"issue_comment", parse_issue_comment},
        {"pull_request_review", parse_review},
        {"pull_request_review_comment", parse_review_comment},
        {"pull_request", parse_pull_request},
        {"push", parse_push},
    };
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
        if (strcmp(event_name, subjects[i].name) != 0)
            continue;
        if (!ev.repo) {
            farm_error_set("%s delivery without repository.full_name", event_name);
            rc = FARM_EINVALID;
            goto out;
        }
        rc = subjects[i].parse(&ev, root);
        goto out;
    }
    ev.kind = TEV_OTHER; /* an event the farm does not act on */
    rc = 0;

out:
    json_decref(root);
    if (rc)
        tracker_event_free(&ev);
    else
        *out = ev;
    return rc;
}
