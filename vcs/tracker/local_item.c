/*
 * local_item.c - the local tracker's records outside the tracker ops (see
 * local.h): freeing an item or a comment list, an item's local:// URL, and
 * the tracker_event a person's action on an item becomes (`farm issue new`,
 * `farm issue comment`, ...), the same one a webhook delivery of it would
 * be.
 */
#include "local.h"

#include "base/buf.h"
#include "base/crypto.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

/* ---- records ------------------------------------------------------------ */

static void item_clear(local_item *it)
{
    free(it->repo);
    free(it->title);
    free(it->body);
    free(it->author);
    free(it->state);
    for (size_t i = 0; i < it->nlabels; i++)
        free(it->labels[i]);
    free(it->labels);
    free(it->head_branch);
    free(it->base_branch);
}

void local_item_free(local_item *it)
{
    if (!it)
        return;
    item_clear(it);
    free(it);
}

void local_item_list_free(local_item *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        item_clear(&v[i]);
    free(v);
}

void local_comment_list_free(local_comment *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].author);
        free(v[i].body);
        free(v[i].path);
    }
    free(v);
}

char *local_item_url(const local_item *it)
{
    buf b = BUF_INIT(LOCAL_TITLE_MAX + 64);
    if (buf_printf(&b, "local://%s/%s/%lld", it->repo, it->is_pr ? "pulls" : "issues",
                   (long long)it->number) < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b);
}

/* ---- events ------------------------------------------------------------- */

static char *dup0(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *c = strdup(s);
    if (!c)
        *oom = 1;
    return c;
}

/* The envelope every local event shares. */
static int event_base(tracker_event *ev, tracker_event_kind kind, const char *event,
                      const char *action, const local_item *it, const char *actor)
{
    char id[64] = "local-";
    int oom = 0;
    memset(ev, 0, sizeof *ev);
    if (crypto_random_hex(id + 6, 16) < 0)
        return FARM_EIO;
    ev->kind = kind;
    ev->tracker = dup0("local", &oom);
    ev->delivery_id = dup0(id, &oom);
    ev->event = dup0(event, &oom);
    ev->action = dup0(action, &oom);
    ev->repo = dup0(it->repo, &oom);
    ev->number = it->number;
    ev->is_pr = it->is_pr;
    ev->title = dup0(it->title, &oom);
    ev->body = dup0(it->body, &oom);
    ev->url = local_item_url(it);
    ev->actor = dup0(actor, &oom);
    ev->actor_display = dup0(actor, &oom);
    ev->actor_access = ACTOR_WRITE;
    ev->head_branch = dup0(it->head_branch, &oom);
    if (it->nlabels) {
        ev->labels = calloc(it->nlabels + 1, sizeof *ev->labels);
        if (!ev->labels)
            oom = 1;
        for (size_t i = 0; ev->labels && i < it->nlabels; i++, ev->nlabels++)
            ev->labels[i] = dup0(it->labels[i], &oom);
    }
    if (oom || !ev->url) {
        tracker_event_free(ev);
        memset(ev, 0, sizeof *ev);
        return FARM_ENOMEM;
    }
    return 0;
}

int local_event_opened(tracker_event *out, const local_item *it, const char *actor)
{
    return event_base(out, it->is_pr ? TEV_PR_OPENED : TEV_ISSUE_OPENED,
                      it->is_pr ? "pull_request" : "issues", "opened", it, actor);
}

int local_event_labeled(tracker_event *out, const local_item *it, const char *label,
                        const char *actor)
{
    int rc = event_base(out, TEV_ISSUE_LABELED, "issues", "labeled", it, actor);
    if (rc == 0 && !(out->label = strdup(label))) {
        tracker_event_free(out);
        memset(out, 0, sizeof *out);
        rc = FARM_ENOMEM;
    }
    return rc;
}

int local_event_closed(tracker_event *out, const local_item *it, const char *actor)
{
    int rc = event_base(out, it->is_pr ? TEV_PR_CLOSED : TEV_ISSUE_CLOSED,
                        it->is_pr ? "pull_request" : "issues", "closed", it, actor);
    if (rc == 0)
        out->merged = it->is_pr && it->state && strcmp(it->state, "merged") == 0;
    return rc;
}

int local_event_comment(tracker_event *out, const local_item *it, const local_comment *c)
{
    int rc = event_base(out, c->review ? TEV_REVIEW_COMMENT : TEV_COMMENT_CREATED,
                        c->review ? "pull_request_review_comment" : "issue_comment", "created", it,
                        c->author);
    if (rc < 0)
        return rc;
    int oom = 0;
    out->comment_id = c->id;
    out->comment_body = dup0(c->body, &oom);
    out->path = dup0(c->path, &oom);
    out->line = c->line;
    out->in_reply_to = c->in_reply_to;
    buf u = BUF_INIT(LOCAL_TITLE_MAX + 128);
    if (buf_printf(&u, "local://%s/%s/%lld#comment-%lld", it->repo, it->is_pr ? "pulls" : "issues",
                   (long long)it->number, (long long)c->id) == 0)
        out->comment_url = buf_detach(&u);
    buf_free(&u);
    if (oom || !out->comment_url) {
        tracker_event_free(out);
        memset(out, 0, sizeof *out);
        return FARM_ENOMEM;
    }
    return 0;
}
