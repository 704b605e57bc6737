/*
 * local_issue.c - filing an issue in the local tracker (see local_issue.h).
 */
#include "local_issue.h"
#include "base/error.h"

#include <string.h>

int local_issue_open(int64_t *out_number, ingest_result *res, farm *f, const local_backend *b,
                     const char *repo, const char *title, const char *body,
                     const char *const *labels, size_t nlabels, const char *actor)
{
    local_item it = {0};
    local_item *saved = NULL;
    tracker_event ev;
    int64_t number = 0;
    int rc;

    *out_number = 0;
    memset(res, 0, sizeof(*res));
    it.repo = (char *)repo;
    it.title = (char *)title;
    it.body = (char *)body;
    it.author = (char *)actor;
    it.state = "open";
    it.labels = (char **)labels;
    it.nlabels = nlabels;
    if ((rc = b->item_insert(&number, b->ctx, &it)) < 0)
        goto out;
    *out_number = number;
    if ((rc = b->item_get(&saved, b->ctx, number)) < 0)
        goto out;
    if ((rc = local_event_opened(&ev, saved, actor)) < 0)
        goto out;
    rc = farm_ingest(f, &ev, res);
    tracker_event_free(&ev);
out:
    local_item_free(saved);
    return rc;
}
