/*
 * local.c - the local tracker (see local.h): the tracker.h ops over a
 * backend the farm provides, and merging a pull request's branch in its bare
 * repository. The records and the events a person's actions become are in
 * local_item.c.
 *
 * It behaves like a small GitHub: the farm's comments carry the same hidden
 * markers and are split the same way (at LOCAL_COMMENT_UNITS), a pull
 * request resolves its issue ("Resolves #N" in its body), review comments
 * hang off a pull request with a file and line, and replies answer one.
 * There are no accounts: every user may write (whoever can run `farm issue`
 * can also write the farm's data directory), and the farm writes as its bot
 * name.
 */
#include "local.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "vcs/git/git.h"

#include <assert.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PARTS 16

typedef struct lt {
    tracker base;
    const local_backend *b;
    char *bot;
    tracker_local_repo *repos; /* copies */
    size_t nrepos;
} lt;

/* ---- helpers ------------------------------------------------------------ */

/* The item behind a ref, checked to be in ref->repo and of the right kind
 * (want_pr: 1 a PR, 0 an issue, -1 either). */
static int item_of(local_item **out, lt *l, const char *repo, int64_t number, int want_pr)
{
    local_item *it = NULL;
    int rc = l->b->item_get(&it, l->b->ctx, number);
    *out = NULL;
    if (rc == FARM_ENOTFOUND || (rc == 0 && strcasecmp(it->repo, repo) != 0) ||
        (rc == 0 && want_pr >= 0 && it->is_pr != want_pr)) {
        local_item_free(it);
        farm_error_set("local: no %s #%lld in %s", want_pr == 1 ? "pull request" : "issue",
                       (long long)number, repo);
        return FARM_ENOTFOUND;
    }
    if (rc < 0)
        return rc;
    *out = it;
    return 0;
}

static int is_bot(const lt *l, const char *author)
{
    return author && strcasecmp(author, l->bot) == 0;
}

/* The part of key's marker a body carries (1, 2, ...), 0 without one. */
static int marker_part(const char *body, const char *key)
{
    for (int p = 1; p <= MAX_PARTS; p++)
        if (tracker_body_has_marker(body, key, p))
            return p;
    return 0;
}

static int split(char ***parts, size_t *n, const char *key, const char *body)
{
    if (strlen(body) > (size_t)MAX_PARTS * LOCAL_BODY_MAX) {
        farm_error_set("local: a comment of %zu bytes is too long", strlen(body));
        return FARM_ETOOBIG;
    }
    return tracker_body_split(parts, n, key, body, LOCAL_COMMENT_UNITS, MAX_PARTS);
}

static int comment_new(int64_t *out_id, lt *l, int64_t number, const char *body, int review,
                       const char *path, int line, int64_t in_reply_to)
{
    local_comment c = {0};
    c.number = number;
    c.author = l->bot;
    c.body = (char *)body;
    c.review = review;
    c.path = (char *)path;
    c.line = line;
    c.in_reply_to = in_reply_to;
    return l->b->comment_insert(out_id, l->b->ctx, &c);
}

/* ---- comments ----------------------------------------------------------- */

static int lt_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                             const char *body)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    char **parts = NULL;
    size_t n = 0;
    int rc;
    if ((rc = item_of(&it, l, ref->repo, ref->number, -1)) < 0)
        return rc;
    if ((rc = split(&parts, &n, key, body)) < 0)
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t id = 0;
        rc = comment_new(&id, l, ref->number, parts[i], 0, NULL, 0, 0);
        if (rc == 0 && i == 0)
            *out_id = id;
    }
out:
    tracker_parts_free(parts);
    local_item_free(it);
    return rc;
}

/* ids[p]: the farm's conversation comment carrying key's marker part p. */
static int marked(int64_t *ids, lt *l, int64_t number, const char *key)
{
    local_comment *cs = NULL;
    size_t n = 0;
    int rc = l->b->comment_list(&cs, &n, l->b->ctx, number, 0);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!is_bot(l, cs[i].author))
            continue;
        int p = marker_part(cs[i].body, key);
        if (p >= 1 && !ids[p])
            ids[p] = cs[i].id;
    }
    local_comment_list_free(cs, n);
    return 0;
}

static int lt_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                             const char *body)
{
    lt *l = (lt *)t;
    local_comment *c = NULL;
    char **parts = NULL;
    size_t n = 0;
    int64_t ids[MAX_PARTS + 1] = {0};
    int rc;

    if ((rc = l->b->comment_get(&c, l->b->ctx, id)) < 0)
        return rc;
    if (c->number != ref->number) {
        farm_error_set("local: comment %lld is not on #%lld", (long long)id,
                       (long long)ref->number);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    if (!is_bot(l, c->author)) {
        /* as on GitHub: only the author edits a comment */
        farm_error_set("local: comment %lld is %s's, not the farm's", (long long)id, c->author);
        rc = FARM_EAUTH;
        goto out;
    }
    if ((rc = split(&parts, &n, key, body)) < 0 ||
        (rc = l->b->comment_update(l->b->ctx, id, parts[0])) < 0 ||
        (rc = marked(ids, l, ref->number, key)) < 0)
        goto out;
    for (size_t i = 1; i < n && rc == 0; i++) {
        if (ids[i + 1])
            rc = l->b->comment_update(l->b->ctx, ids[i + 1], parts[i]);
        else
            rc = comment_new(&ids[i + 1], l, ref->number, parts[i], 0, NULL, 0, 0);
    }
    for (size_t p = n + 1; p <= MAX_PARTS && rc == 0; p++) {
        if (ids[p] && (rc = l->b->comment_delete(l->b->ctx, ids[p])) == FARM_ENOTFOUND)
            rc = 0;
    }
out:
    tracker_parts_free(parts);
    local_comment_list_free(c, c ? 1 : 0);
    return rc;
}

static int lt_comment_find(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key)
{
    lt *l = (lt *)t;
    int64_t ids[MAX_PARTS + 1] = {0};
    local_item *it = NULL;
    int rc;
    if ((rc = item_of(&it, l, ref->repo, ref->number, -1)) < 0)
        return rc;
    local_item_free(it);
    if ((rc = marked(ids, l, ref->number, key)) < 0)
        return rc;
    if (!ids[1]) {
        farm_error_set("local: no comment with marker %s on #%lld", key, (long long)ref->number);
        return FARM_ENOTFOUND;
    }
    *out_id = ids[1];
    return 0;
}

static int lt_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    int rc;
    if (comment_id > 0) {
        local_comment *c = NULL;
        if ((rc = l->b->comment_get(&c, l->b->ctx, comment_id)) < 0)
            return rc;
        int64_t number = c->number;
        local_comment_list_free(c, 1);
        if (ref->number > 0 && number != ref->number) {
            farm_error_set("local: comment %lld is not on #%lld", (long long)comment_id,
                           (long long)ref->number);
            return FARM_ENOTFOUND;
        }
        if ((rc = item_of(&it, l, ref->repo, number, -1)) < 0)
            return rc;
    } else if ((rc = item_of(&it, l, ref->repo, ref->number, -1)) < 0) {
        return rc;
    }
    rc = l->b->reaction_add(l->b->ctx, it->number, comment_id, reaction, l->bot);
    local_item_free(it);
    return rc;
}

/* ---- labels and threads ------------------------------------------------- */

static int labels(tracker *t, const tracker_ref *ref, const char *const *v, size_t n, int add)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    int rc;
    if ((rc = item_of(&it, l, ref->repo, ref->number, -1)) < 0)
        return rc;
    if (add && it->nlabels + n > LOCAL_LABELS_MAX) {
        farm_error_set("local: #%lld would have more than %d labels", (long long)it->number,
                       LOCAL_LABELS_MAX);
        rc = FARM_ETOOBIG;
    } else {
        rc = l->b->labels_change(l->b->ctx, it->number, v, n, add);
    }
    local_item_free(it);
    return rc;
}

static int lt_labels_add(tracker *t, const tracker_ref *ref, const char *const *v, size_t n)
{
    return labels(t, ref, v, n, 1);
}

static int lt_labels_remove(tracker *t, const tracker_ref *ref, const char *const *v, size_t n)
{
    return labels(t, ref, v, n, 0);
}

static char *rfc3339(int64_t ms)
{
    char s[40];
    if (ms <= 0)
        return NULL;
    clock_format_rfc3339(s, sizeof s, ms);
    return strdup(s);
}

static int lt_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    local_comment *cs = NULL;
    size_t n = 0;
    tracker_thread *th = NULL;
    int rc, oom = 0;

    if ((rc = item_of(&it, l, ref->repo, ref->number, ref->is_pr ? 1 : -1)) < 0)
        return rc;
    if ((rc = l->b->comment_list(&cs, &n, l->b->ctx, it->number, 0)) < 0)
        goto out;
    if (!(th = calloc(1, sizeof *th)) || (n && !(th->comments = calloc(n, sizeof *th->comments)))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    th->number = it->number;
    th->title = it->title, it->title = NULL;
    th->body = it->body, it->body = NULL;
    th->author = it->author, it->author = NULL;
    th->state = strdup(strcmp(it->state, "open") == 0 ? "open" : "closed");
    th->url = local_item_url(it);
    th->created_at = rfc3339(it->created_ms);
    th->labels = it->labels, it->labels = NULL;
    th->nlabels = it->nlabels, it->nlabels = 0;
    oom = !th->state || !th->url;
    for (size_t i = 0; i < n; i++) {
        tracker_comment *c = &th->comments[th->ncomments++];
        c->id = cs[i].id;
        c->author = cs[i].author, cs[i].author = NULL;
        c->body = cs[i].body, cs[i].body = NULL;
        c->created_at = rfc3339(cs[i].created_ms);
        if (cs[i].updated_ms > cs[i].created_ms)
            c->updated_at = rfc3339(cs[i].updated_ms);
    }
    if (oom) {
        rc = FARM_ENOMEM;
        goto out;
    }
    *out = th;
    th = NULL;
out:
    tracker_thread_free(th);
    local_comment_list_free(cs, n);
    local_item_free(it);
    return rc;
}

/* ---- pull requests ------------------------------------------------------ */

static int pr_from_item(tracker_pr **out, local_item *it)
{
    tracker_pr *pr = calloc(1, sizeof *pr);
    *out = NULL;
    if (!pr)
        return FARM_ENOMEM;
    pr->number = it->number;
    pr->url = local_item_url(it);
    pr->state = it->state, it->state = NULL;
    pr->title = it->title, it->title = NULL;
    pr->body = it->body, it->body = NULL;
    pr->head_branch = it->head_branch, it->head_branch = NULL;
    pr->base_branch = it->base_branch, it->base_branch = NULL;
    pr->author = it->author, it->author = NULL;
    if (!pr->url) {
        tracker_pr_free(pr);
        return FARM_ENOMEM;
    }
    *out = pr;
    return 0;
}

static int pr_body(char **out, const char *body, int64_t issue, const char *key)
{
    buf b = BUF_INIT(LOCAL_BODY_MAX);
    int rc = buf_puts(&b, body ? body : "");
    if (rc == 0 && issue > 0)
        rc = buf_printf(&b, "\n\nResolves #%lld", (long long)issue);
    if (rc == 0)
        rc = buf_puts(&b, "\n\n");
    if (rc == 0) {
        char *m = tracker_marker(key, 1);
        rc = m ? buf_puts(&b, m) : FARM_ENOMEM;
        free(m);
    }
    if (rc == 0 && !(*out = buf_detach(&b)))
        rc = FARM_ENOMEM;
    if (rc == FARM_ETOOBIG)
        farm_error_set("local: a pull request body over %u bytes", LOCAL_BODY_MAX);
    buf_free(&b);
    return rc;
}

/* ---- the bare repository ------------------------------------------------ */

/* The path of a local clone_url ("file:///srv/x.git" or "/srv/x.git"), or
 * NULL for a URL of another kind. */
static const char *local_path(const char *clone_url)
{
    if (!clone_url)
        return NULL;
    if (strncmp(clone_url, "file://", 7) == 0)
        return clone_url + 7;
    return clone_url[0] == '/' ? clone_url : NULL;
}

static int bare_open(git_repository **out, const char *clone_url)
{
    const char *path = local_path(clone_url);
    *out = NULL;
    if (vcs_git_init() < 0)
        return FARM_ERROR;
    if (!path) {
        farm_error_set("local: %s is not a local repository (file://...)", clone_url);
        return FARM_EUNSUPPORTED;
    }
    if (git_repository_open_ext(out, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) < 0) {
        farm_error_set("local: cannot open the repository %s", clone_url);
        return FARM_ENOTFOUND;
    }
    return 0;
}

static int branch_oid(git_oid *out, git_repository *repo, const char *clone_url, const char *branch)
{
    char ref[1200];
    snprintf(ref, sizeof ref, "refs/heads/%s", branch);
    if (git_reference_name_to_id(out, repo, ref) < 0) {
        farm_error_set("local: there is no branch %s in %s", branch, clone_url);
        return FARM_ENOTFOUND;
    }
    return 0;
}

int local_branch_fast_forward(const char *clone_url, const char *base, const char *head)
{
    git_repository *repo = NULL;
    git_reference *ref = NULL, *moved = NULL;
    git_oid from, to;
    char name[1200];
    int rc;
    if ((rc = bare_open(&repo, clone_url)) < 0)
        return rc;
    if ((rc = branch_oid(&from, repo, clone_url, base)) < 0 ||
        (rc = branch_oid(&to, repo, clone_url, head)) < 0)
        goto out;
    if (git_oid_equal(&from, &to))
        goto out;
    if (git_graph_descendant_of(repo, &to, &from) != 1) {
        farm_error_set("local: %s is not a fast-forward of %s in %s; merge it with git", head, base,
                       clone_url);
        rc = FARM_ECONFLICT;
        goto out;
    }
    snprintf(name, sizeof name, "refs/heads/%s", base);
    /* moves only if base is still where it was read: a racing push wins */
    if (git_reference_lookup(&ref, repo, name) < 0 ||
        git_reference_set_target(&moved, ref, &to, "farm issue merge") < 0) {
        const git_error *e = git_error_last();
        farm_error_set("local: cannot move %s in %s: %s", base, clone_url,
                       e && e->message ? e->message : "unknown error");
        rc = FARM_ECONFLICT;
    }
out:
    git_reference_free(moved);
    git_reference_free(ref);
    git_repository_free(repo);
    return rc;
}

static const tracker_local_repo *repo_of(const lt *l, const char *name)
{
    for (size_t i = 0; i < l->nrepos; i++)
        if (strcasecmp(l->repos[i].name, name) == 0)
            return &l->repos[i];
    return NULL;
}

static int lt_pr_find(tracker_pr **out, tracker *t, const tracker_ref *ref, const char *branch)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    int rc = l->b->pr_find(&it, l->b->ctx, ref->repo, branch);
    if (rc == FARM_ENOTFOUND)
        farm_error_set("local: no pull request from branch %s in %s", branch, ref->repo);
    if (rc < 0)
        return rc;
    rc = pr_from_item(out, it);
    local_item_free(it);
    return rc;
}

static int lt_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref,
                        const tracker_pr_spec *spec)
{
    lt *l = (lt *)t;
    local_item *it = NULL, rec = {0};
    char *body = NULL;
    int64_t number = 0;
    int rc;

    const tracker_local_repo *r = repo_of(l, ref->repo);
    if (l->nrepos && !r) {
        farm_error_set("local: %s is not a local repository", ref->repo);
        return FARM_ENOTFOUND;
    }
    if (r && local_path(r->clone_url)) {
        /* as on GitHub (422): both branches must be there */
        git_repository *repo = NULL;
        git_oid oid;
        if ((rc = bare_open(&repo, r->clone_url)) == 0 &&
            (rc = branch_oid(&oid, repo, r->clone_url, spec->base_branch)) == 0)
            rc = branch_oid(&oid, repo, r->clone_url, spec->head_branch);
        git_repository_free(repo);
        if (rc == FARM_ENOTFOUND)
            rc = FARM_EINVALID;
        if (rc < 0)
            return rc;
    }
    if (strlen(spec->title) > LOCAL_TITLE_MAX) {
        farm_error_set("local: a pull request title over %d bytes", LOCAL_TITLE_MAX);
        return FARM_EINVALID;
    }
    rc = l->b->pr_find(&it, l->b->ctx, ref->repo, spec->head_branch);
    if (rc == 0 && strcmp(it->state, "open") == 0) {
        farm_error_set("local: pull request #%lld from %s is already open", (long long)it->number,
                       spec->head_branch);
        rc = FARM_EEXISTS;
    }
    local_item_free(it);
    it = NULL;
    if (rc != 0 && rc != FARM_ENOTFOUND)
        return rc;
    if (ref->number > 0 && (rc = item_of(&it, l, ref->repo, ref->number, 0)) < 0)
        return rc;
    local_item_free(it);
    it = NULL;
    if ((rc = pr_body(&body, spec->body, ref->number, spec->key)) < 0)
        return rc;
    rec.repo = (char *)ref->repo;
    rec.is_pr = 1;
    rec.title = (char *)spec->title;
    rec.body = body;
    rec.author = l->bot;
    rec.state = "open";
    rec.head_branch = (char *)spec->head_branch;
    rec.base_branch = (char *)spec->base_branch;
    rec.issue = ref->number;
    if ((rc = l->b->item_insert(&number, l->b->ctx, &rec)) < 0 ||
        (rc = l->b->item_get(&it, l->b->ctx, number)) < 0)
        goto out;
    rc = pr_from_item(out, it);
out:
    local_item_free(it);
    free(body);
    return rc;
}

static int lt_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number,
                        const tracker_pr_spec *spec)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    char *body = NULL;
    int rc;
    if ((rc = item_of(&it, l, ref->repo, pr_number, 1)) < 0)
        return rc;
    if (spec->title && strlen(spec->title) > LOCAL_TITLE_MAX) {
        farm_error_set("local: a pull request title over %d bytes", LOCAL_TITLE_MAX);
        rc = FARM_EINVALID;
    }
    if (rc == 0 && spec->body)
        rc = pr_body(&body, spec->body, it->issue, spec->key);
    if (rc == 0)
        rc = l->b->item_update(l->b->ctx, pr_number, spec->title, body, NULL);
    free(body);
    local_item_free(it);
    return rc;
}

static int lt_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                                 const tracker_ref *ref, int64_t pr_number)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    local_comment *cs = NULL;
    size_t cnt = 0;
    tracker_review_comment *v = NULL;
    int rc;
    if ((rc = item_of(&it, l, ref->repo, pr_number, 1)) < 0)
        return rc;
    local_item_free(it);
    if ((rc = l->b->comment_list(&cs, &cnt, l->b->ctx, pr_number, 1)) < 0)
        return rc;
    if (cnt && !(v = calloc(cnt, sizeof *v))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < cnt; i++) {
        v[i].id = cs[i].id;
        v[i].path = cs[i].path, cs[i].path = NULL;
        v[i].line = cs[i].line;
        v[i].body = cs[i].body, cs[i].body = NULL;
        v[i].author = cs[i].author, cs[i].author = NULL;
        v[i].created_at = rfc3339(cs[i].created_ms);
        v[i].in_reply_to = cs[i].in_reply_to;
    }
    *out = v;
    *n = cnt;
out:
    local_comment_list_free(cs, cnt);
    return rc;
}

static int lt_review_reply(int64_t *out_id, tracker *t, const tracker_ref *ref, int64_t pr_number,
                           int64_t comment_id, const char *key, const char *body)
{
    lt *l = (lt *)t;
    local_item *it = NULL;
    local_comment *c = NULL;
    char **parts = NULL;
    size_t n = 0;
    int rc;
    if ((rc = item_of(&it, l, ref->repo, pr_number, 1)) < 0)
        return rc;
    local_item_free(it);
    if ((rc = l->b->comment_get(&c, l->b->ctx, comment_id)) < 0)
        return rc;
    if (c->number != pr_number || !c->review) {
        farm_error_set("local: %lld is not a review comment of pull request #%lld",
                       (long long)comment_id, (long long)pr_number);
        rc = FARM_ENOTFOUND;
        goto out;
    }
    if ((rc = split(&parts, &n, key, body)) < 0)
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t id = 0;
        rc = comment_new(&id, l, pr_number, parts[i], 1, c->path, c->line, comment_id);
        if (rc == 0 && i == 0)
            *out_id = id;
    }
out:
    tracker_parts_free(parts);
    local_comment_list_free(c, c ? 1 : 0);
    return rc;
}

static int lt_permission_get(tracker_permission *out, tracker *t, const tracker_ref *ref,
                             const char *user)
{
    lt *l = (lt *)t;
    /* no accounts: whoever can use the tracker can write the data directory */
    *out = is_bot(l, user) ? TRACKER_PERM_ADMIN : TRACKER_PERM_WRITE;
    return 0;
}

/* ---- construction ------------------------------------------------------- */

static void lt_free(tracker *t)
{
    lt *l = (lt *)t;
    if (!l)
        return;
    for (size_t i = 0; i < l->nrepos; i++) {
        free((char *)l->repos[i].name);
        free((char *)l->repos[i].clone_url);
    }
    free(l->repos);
    free(l->bot);
    free(l);
}

static const tracker_ops lt_ops = {
    .name = "local",
    .comment_create = lt_comment_create,
    .comment_update = lt_comment_update,
    .comment_find_by_marker = lt_comment_find,
    .react = lt_react,
    .labels_add = lt_labels_add,
    .labels_remove = lt_labels_remove,
    .thread_get = lt_thread_get,
    .pr_create = lt_pr_create,
    .pr_find_by_branch = lt_pr_find,
    .pr_update = lt_pr_update,
    .pr_review_comments = lt_pr_review_comments,
    .review_comment_reply = lt_review_reply,
    .permission_get = lt_permission_get,
    .free = lt_free,
};

int tracker_local_new(tracker **out, const tracker_local_opts *opts)
{
    lt *l;
    *out = NULL;
    assert(opts && opts->backend);
    if (!(l = calloc(1, sizeof *l)))
        return FARM_ENOMEM;
    l->base.ops = &lt_ops;
    l->b = opts->backend;
    l->bot = strdup(opts->bot_name && *opts->bot_name ? opts->bot_name : "farm-bot");
    if (!l->bot)
        goto oom;
    if (opts->nrepos) {
        if (!(l->repos = calloc(opts->nrepos, sizeof *l->repos)))
            goto oom;
        for (size_t i = 0; i < opts->nrepos; i++, l->nrepos++) {
            const tracker_local_repo *r = &opts->repos[i];
            l->repos[i].name = strdup(r->name ? r->name : "");
            l->repos[i].clone_url = r->clone_url ? strdup(r->clone_url) : NULL;
            if (!l->repos[i].name || (r->clone_url && !l->repos[i].clone_url)) {
                l->nrepos++;
                goto oom;
            }
        }
    }
    *out = &l->base;
    return 0;
oom:
    lt_free(&l->base);
    return FARM_ENOMEM;
}
