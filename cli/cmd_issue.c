/*
 * cmd_issue.c - `farm issue`: the local tracker from the command line.
 *
 * It opens the farm's store directly (SQLite in WAL mode lets it run beside
 * `farm serve` on the same data directory), keeps issues, labels and
 * comments there, and hands what a person does to farm_ingest() as the
 * tracker event a webhook delivery would be, in this process: a new issue
 * with the trigger label starts a session exactly as a GitHub one would.
 */
#include "cli.h"
#include "local_issue.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/intake/ingest.h"
#include "farm/store/store_local.h"
#include "vcs/tracker/local.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define USAGE                                                                                      \
    "farm issue new --repo NAME --title TEXT [--body TEXT | --body-file FILE] [--label L]...\n"    \
    "       farm issue list [--repo NAME] [--state open|closed|merged] [--limit N] [--json]\n"     \
    "       farm issue show N [--json]\n"                                                          \
    "       farm issue comment N (TEXT | --body-file FILE) [--path FILE [--line L]]\n"             \
    "                          [--reply-to COMMENT]   (review comments on a pull request)\n"       \
    "       farm issue label N LABEL...\n"                                                         \
    "       farm issue close N\n"                                                                  \
    "       farm issue merge N   (fast-forward a pull request's base branch)\n"                    \
    "  every form also takes [--config FILE | --data-dir DIR] [--as USER]"

typedef struct opts {
    const char *config_path;
    const char *data_dir;
    const char *repo;
    const char *title;
    const char *body;
    const char *body_file;
    const char *state;
    const char *as;
    const char *path; /* comment: a review comment on this file */
    int line;         /* ... and line */
    int64_t reply_to; /* comment: a reply to this review comment */
    const char **labels;
    size_t nlabels;
    int limit;
    int json;
} opts;

typedef struct ctx {
    farm *f;
    local_backend b;
    const char *actor;
} ctx;

/* ---- input ---------------------------------------------------------------- */

static int utf8_ok(const char *what, const char *s)
{
    if (tracker_utf16_len(s, strlen(s)) < 0) {
        fprintf(stderr, "farm issue: the %s is not valid UTF-8\n", what);
        return 0;
    }
    return 1;
}

/* Read a body from FILE ("-": standard input), at most LOCAL_BODY_MAX. */
static char *body_read(const char *path)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "farm issue: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    buf b = BUF_INIT(LOCAL_BODY_MAX);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        rc = buf_append(&b, chunk, n);
    int err = ferror(fp);
    if (fp != stdin)
        fclose(fp);
    if (rc == FARM_ETOOBIG) {
        fprintf(stderr, "farm issue: %s is over %u bytes\n", path, LOCAL_BODY_MAX);
    } else if (rc < 0 || err) {
        fprintf(stderr, "farm issue: cannot read %s\n", path);
    } else if (memchr(buf_cstr(&b), '\0', b.len)) {
        fprintf(stderr, "farm issue: %s holds a NUL byte; bodies are text\n", path);
    } else {
        return buf_detach(&b);
    }
    buf_free(&b);
    return NULL;
}

static int number_parse(int64_t *out, const char *s)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v <= 0) {
        fprintf(stderr, "farm issue: \"%s\" is not an issue number\n", s ? s : "");
        return 0;
    }
    *out = v;
    return 1;
}

static int label_ok(const char *l)
{
    if (!*l || strlen(l) > 256 || !utf8_ok("label", l)) {
        fprintf(stderr, "farm issue: a label must be 1 to 256 bytes of text\n");
        return 0;
    }
    for (const unsigned char *p = (const unsigned char *)l; *p; p++) {
        if (*p < 0x20) {
            fprintf(stderr, "farm issue: a label cannot hold control characters\n");
            return 0;
        }
    }
    return 1;
}

/* ---- the farm ------------------------------------------------------------- */

static int open_farm(ctx *c, const opts *o)
{
    config *cfg = NULL;
    char *errors = NULL;
    int rc;
    if (o->config_path) {
        rc = config_load(&cfg, o->config_path, &errors);
        if (rc < 0) {
            fprintf(stderr, "farm issue: %s:\n%s\n", o->config_path,
                    errors ? errors : farm_error_last());
            free(errors);
            return rc;
        }
    } else if ((rc = config_default(&cfg)) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        return rc;
    }
    if (o->data_dir) {
        char *d = strdup(o->data_dir);
        if (!d) {
            config_free(cfg);
            return FARM_ENOMEM;
        }
        free(cfg->data_dir);
        cfg->data_dir = d;
    }
    if ((rc = farm_open(&c->f, cfg)) < 0) { /* cfg is the farm's now */
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        return rc;
    }
    store_local_backend(&c->b, farm_store(c->f));
    return 0;
}

/* Say what came of handing an event to the farm (rc and r from farm_ingest()). */
static int ingest_report(int64_t number, const char *kind, int rc, const ingest_result *r)
{
    if (rc < 0) {
        fprintf(stderr, "farm issue: #%lld is saved, but the farm could not record the %s: %s\n",
                (long long)number, kind, farm_error_last());
    } else if (r->outcome == INGEST_ACCEPTED) {
        fprintf(stderr, "farm issue: #%lld %s: accepted%s", (long long)number, kind,
                r->session_id ? "" : "\n");
        if (r->session_id)
            fprintf(stderr, ", session %lld%s\n", (long long)r->session_id,
                    r->job_id ? " queued" : "");
    } else {
        fprintf(stderr, "farm issue: #%lld %s: %s (%s)\n", (long long)number, kind,
                ingest_outcome_name(r->outcome), r->reason);
    }
    return rc < 0 ? 1 : 0;
}

/* Hand the event to the farm as a webhook delivery, and say what came of it. */
static int deliver(ctx *c, tracker_event *ev)
{
    ingest_result r;
    int rc = farm_ingest(c->f, ev, &r);
    rc = ingest_report(ev->number, tracker_event_kind_name(ev->kind), rc, &r);
    tracker_event_free(ev);
    return rc;
}

/* 1 when the item's repository is a local repository of the config; else
 * says so (a change there would reach no farm) and returns 0. */
static int repo_configured(const ctx *c, const local_item *it)
{
    const config *cfg = farm_config(c->f);
    if (config_repo_find(cfg, "local", it->repo))
        return 1;
    fprintf(stderr,
            "farm issue: #%lld is in %s, which is not a local repository of %s%s; nothing was "
            "changed. Pass the --config that configures it (`farm demo` writes its own to "
            "DATA_DIR/demo.json)\n",
            (long long)it->number, it->repo, cfg->path ? "the config " : "the embedded defaults",
            cfg->path ? cfg->path : "");
    return 0;
}

/* ---- the subcommands ------------------------------------------------------ */

static int cmd_new(ctx *c, const opts *o)
{
    char *body = NULL;
    int64_t number = 0;
    int rc = 1;

    if (!o->repo || !o->title || (o->body && o->body_file))
        return cli_usage("issue");
    const config *cfg = farm_config(c->f);
    const config_repo *repo = config_repo_find(cfg, "local", o->repo);
    if (!repo) {
        fprintf(stderr,
                "farm issue: no local repository \"%s\" in %s%s: add a repos[] entry with "
                "\"tracker\": \"local\", or pass the --config that has it (`farm demo` writes "
                "its own to DATA_DIR/demo.json)\n",
                o->repo, cfg->path ? "the config " : "the embedded defaults",
                cfg->path ? cfg->path : "");
        return 1;
    }
    if (!*o->title || strlen(o->title) > LOCAL_TITLE_MAX || !utf8_ok("title", o->title)) {
        fprintf(stderr, "farm issue: a title is 1 to %d bytes of text\n", LOCAL_TITLE_MAX);
        return 1;
    }
    if (o->body_file && !(body = body_read(o->body_file)))
        return 1;
    if (!body && !(body = strdup(o->body ? o->body : "")))
        return 1;
    if (strlen(body) > LOCAL_BODY_MAX) {
        fprintf(stderr, "farm issue: the body is over %u bytes\n", LOCAL_BODY_MAX);
        goto out;
    }
    if (!utf8_ok("body", body))
        goto out;
    if (o->nlabels > LOCAL_LABELS_MAX) {
        fprintf(stderr, "farm issue: at most %d labels\n", LOCAL_LABELS_MAX);
        goto out;
    }
    for (size_t i = 0; i < o->nlabels; i++)
        if (!label_ok(o->labels[i]))
            goto out;

    ingest_result r;
    int irc = local_issue_open(&number, &r, c->f, &c->b, repo->name, o->title, body, o->labels,
                               o->nlabels, c->actor);
    if (number == 0) { /* not saved */
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    printf("%lld\n", (long long)number);
    fflush(stdout);
    rc = ingest_report(number, tracker_event_kind_name(TEV_ISSUE_OPENED), irc, &r);
out:
    free(body);
    return rc;
}

static const char *when(char *out, size_t n, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%SZ", &tm);
    return out;
}

/* The farm's sessions on the local tracker, to tell which of the pull
 * requests it opened as drafts. */
typedef struct drafts {
    store_session *v;
    size_t n;
} drafts;

static void drafts_load(drafts *d, const ctx *c)
{
    store_session_filter flt = STORE_SESSION_FILTER_INIT;
    flt.tracker = "local";
    flt.limit = STORE_LIST_MAX;
    d->v = NULL;
    d->n = 0;
    if (store_session_list(&d->v, &d->n, farm_store(c->f), &flt) != 0) {
        d->v = NULL; /* then no PR is shown as a draft */
        d->n = 0;
    }
}

/* The session whose pull request it is, or NULL. */
static const store_session *pr_session(const drafts *d, const local_item *it)
{
    for (size_t i = 0; it->is_pr && i < d->n; i++)
        if (d->v[i].pr_number == it->number && !strcasecmp(d->v[i].repo, it->repo))
            return &d->v[i];
    return NULL;
}

/* The item's state for a table: "open", or "open (draft)" for a pull
 * request the farm opened as a draft. */
static const char *state_shown(char *out, size_t n, const local_item *it, const store_session *s)
{
    snprintf(out, n, "%s%s", it->state, s && s->pr_draft ? " (draft)" : "");
    return out;
}

/* An issue or PR as JSON; s, when known, is the session of a PR. */
static json_t *item_json(const local_item *it, const store_session *s)
{
    json_t *labels = json_array();
    for (size_t i = 0; i < it->nlabels; i++)
        json_array_append_new(labels, json_string(it->labels[i]));
    char *url = local_item_url(it);
    json_t *j = json_pack("{s:I,s:s,s:b,s:s,s:s,s:s,s:s,s:o,s:s?,s:I,s:I}", "number",
                          (json_int_t)it->number, "repo", it->repo, "is_pr", it->is_pr, "title",
                          it->title, "author", it->author, "state", it->state, "body", it->body,
                          "labels", labels, "url", url, "created_ms", (json_int_t)it->created_ms,
                          "updated_ms", (json_int_t)it->updated_ms);
    free(url);
    if (j && it->is_pr) {
        json_object_set_new(j, "head_branch", json_string(it->head_branch ? it->head_branch : ""));
        json_object_set_new(j, "base_branch", json_string(it->base_branch ? it->base_branch : ""));
        json_object_set_new(j, "issue", json_integer(it->issue));
        json_object_set_new(j, "draft", json_boolean(s && s->pr_draft));
        if (s && s->pr_draft && s->pr_draft_reason)
            json_object_set_new(j, "draft_reason", json_string(s->pr_draft_reason));
    }
    return j;
}

static void json_print(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    if (text)
        puts(text);
    free(text);
}

/* One line: control characters shown as spaces, at most n bytes. */
static void line_print(const char *s, size_t n)
{
    for (size_t i = 0; s && s[i] && i < n; i++)
        putchar((unsigned char)s[i] < 0x20 ? ' ' : s[i]);
}

static int cmd_list(ctx *c, const opts *o)
{
    local_item *v = NULL;
    size_t n = 0;
    drafts d;
    char st[32];
    if (c->b.item_list(&v, &n, c->b.ctx, o->repo, o->state, o->limit) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        return 1;
    }
    drafts_load(&d, c);
    if (o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, item_json(&v[i], pr_session(&d, &v[i])));
        json_t *j = json_pack("{s:o}", "issues", arr);
        json_print(j);
        json_decref(j);
    } else {
        printf("%-6s %-3s %-12s %-24s %s\n", "#", "", "STATE", "REPO", "TITLE");
        for (size_t i = 0; i < n; i++) {
            printf("%-6lld %-3s %-12s %-24.24s ", (long long)v[i].number, v[i].is_pr ? "PR" : "",
                   state_shown(st, sizeof(st), &v[i], pr_session(&d, &v[i])), v[i].repo);
            line_print(v[i].title, 80);
            for (size_t k = 0; k < v[i].nlabels; k++) {
                printf("%s", k ? ", " : "  [");
                line_print(v[i].labels[k], 40);
            }
            printf("%s\n", v[i].nlabels ? "]" : "");
        }
        if (n == 0)
            printf("(no issues)\n");
    }
    store_session_list_free(d.v, d.n);
    local_item_list_free(v, n);
    return 0;
}

static int cmd_show(ctx *c, const opts *o, int64_t number)
{
    drafts d = {NULL, 0};
    local_item *it = NULL, *prs = NULL;
    local_comment *cs = NULL;
    size_t ncs = 0, nprs = 0;
    int rc = 1;
    char t[32];

    if (c->b.item_get(&it, c->b.ctx, number) < 0 ||
        c->b.comment_list(&cs, &ncs, c->b.ctx, number, -1) < 0 ||
        (!it->is_pr && c->b.prs_for_issue(&prs, &nprs, c->b.ctx, number) < 0)) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    const config *cfg = farm_config(c->f);
    const config_repo *repo = config_repo_find(cfg, "local", it->repo);
    drafts_load(&d, c);
    const store_session *ps = pr_session(&d, it);
    if (o->json) {
        json_t *j = item_json(it, ps), *arr = json_array(), *parr = json_array();
        for (size_t i = 0; i < ncs; i++)
            json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:b,s:s?,s:i,s:I,s:I,s:I}", "id",
                                                 (json_int_t)cs[i].id, "author", cs[i].author,
                                                 "body", cs[i].body, "review", cs[i].review, "path",
                                                 cs[i].path, "line", cs[i].line, "in_reply_to",
                                                 (json_int_t)cs[i].in_reply_to, "created_ms",
                                                 (json_int_t)cs[i].created_ms, "updated_ms",
                                                 (json_int_t)cs[i].updated_ms));
        for (size_t i = 0; i < nprs; i++)
            json_array_append_new(parr, item_json(&prs[i], pr_session(&d, &prs[i])));
        json_object_set_new(j, "comments", arr);
        json_object_set_new(j, "pull_requests", parr);
        if (repo && repo->clone_url)
            json_object_set_new(j, "clone_url", json_string(repo->clone_url));
        json_print(j);
        json_decref(j);
        rc = 0;
        goto out;
    }
    char *url = local_item_url(it);
    printf("%s #%lld: ", it->is_pr ? "pull request" : "issue", (long long)it->number);
    line_print(it->title, LOCAL_TITLE_MAX);
    printf("\n  state    %s%s%s%s\n  repo     %s\n  author   %s, %s\n  url      %s\n", it->state,
           ps && ps->pr_draft ? " (draft: " : "",
           ps && ps->pr_draft ? (ps->pr_draft_reason ? ps->pr_draft_reason : "not ready") : "",
           ps && ps->pr_draft ? ")" : "", it->repo, it->author, when(t, sizeof t, it->created_ms),
           url ? url : "-");
    free(url);
    if (it->nlabels) {
        printf("  labels   ");
        for (size_t i = 0; i < it->nlabels; i++) {
            printf("%s", i ? ", " : "");
            line_print(it->labels[i], 256);
        }
        printf("\n");
    }
    if (it->is_pr) {
        printf("  branch   %s -> %s%s%s\n", it->head_branch ? it->head_branch : "-",
               it->base_branch ? it->base_branch : "-", repo && repo->clone_url ? " of " : "",
               repo && repo->clone_url ? repo->clone_url : "");
        if (it->issue)
            printf("  resolves #%lld\n", (long long)it->issue);
    }
    for (size_t i = 0; i < nprs; i++) {
        char *pu = local_item_url(&prs[i]);
        char st[32];
        printf("  pull request #%lld (%s) %s: branch %s%s%s\n", (long long)prs[i].number,
               state_shown(st, sizeof(st), &prs[i], pr_session(&d, &prs[i])), pu ? pu : "-",
               prs[i].head_branch ? prs[i].head_branch : "-", repo && repo->clone_url ? " of " : "",
               repo && repo->clone_url ? repo->clone_url : "");
        free(pu);
    }
    if (it->body && *it->body)
        printf("\n%s\n", it->body);
    for (size_t i = 0; i < ncs; i++) {
        printf("\n--- comment %lld by %s, %s", (long long)cs[i].id, cs[i].author,
               when(t, sizeof t, cs[i].created_ms));
        if (cs[i].review)
            printf(" (review%s%s:%d)", cs[i].path ? " on " : "", cs[i].path ? cs[i].path : "",
                   cs[i].line);
        printf("\n%s\n", cs[i].body);
    }
    rc = 0;
out:
    store_session_list_free(d.v, d.n);
    local_item_list_free(prs, nprs);
    local_comment_list_free(cs, ncs);
    local_item_free(it);
    return rc;
}

static int cmd_comment(ctx *c, const opts *o, int64_t number, const char *text)
{
    local_item *it = NULL;
    local_comment *saved = NULL, *parent = NULL;
    char *body = NULL;
    tracker_event ev;
    int64_t id = 0;
    int rc = 1;

    if ((text && o->body_file) || (!text && !o->body_file))
        return cli_usage("issue");
    if (o->body_file ? !(body = body_read(o->body_file)) : !(body = strdup(text)))
        return 1;
    if (!*body || strlen(body) > LOCAL_BODY_MAX || !utf8_ok("comment", body)) {
        fprintf(stderr, "farm issue: a comment is 1 to %u bytes of text\n", LOCAL_BODY_MAX);
        goto out;
    }
    local_comment cm = {0};
    cm.number = number;
    cm.author = (char *)c->actor;
    cm.body = body;
    if (c->b.item_get(&it, c->b.ctx, number) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    if (!repo_configured(c, it))
        goto out;
    if (o->path || o->reply_to) {
        /* a review comment: on a file and line of a pull request, or a reply */
        if (!it->is_pr) {
            fprintf(stderr,
                    "farm issue: #%lld is an issue; --path and --reply-to are for pull "
                    "requests\n",
                    (long long)number);
            goto out;
        }
        cm.review = 1;
        cm.path = (char *)o->path;
        cm.line = o->line;
        if (o->reply_to) {
            if (c->b.comment_get(&parent, c->b.ctx, o->reply_to) < 0 || parent->number != number ||
                !parent->review) {
                fprintf(stderr, "farm issue: %lld is not a review comment of #%lld\n",
                        (long long)o->reply_to, (long long)number);
                goto out;
            }
            cm.in_reply_to = parent->id;
            if (!cm.path) {
                cm.path = parent->path;
                cm.line = parent->line;
            }
        }
        if (cm.path && (!*cm.path || strlen(cm.path) > 4096 || !utf8_ok("path", cm.path)))
            goto out;
    }
    if (c->b.comment_insert(&id, c->b.ctx, &cm) < 0 || c->b.comment_get(&saved, c->b.ctx, id) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    printf("%lld\n", (long long)id);
    fflush(stdout);
    if (local_event_comment(&ev, it, saved) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    rc = deliver(c, &ev);
out:
    local_comment_list_free(parent, parent ? 1 : 0);
    local_comment_list_free(saved, saved ? 1 : 0);
    local_item_free(it);
    free(body);
    return rc;
}

static int cmd_label(ctx *c, int64_t number, char **labels, int n)
{
    local_item *it = NULL;
    int rc = 0;
    if (n < 1)
        return cli_usage("issue");
    for (int i = 0; i < n; i++)
        if (!label_ok(labels[i]))
            return 1;
    if (c->b.item_get(&it, c->b.ctx, number) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        return 1;
    }
    if (!repo_configured(c, it)) {
        local_item_free(it);
        return 1;
    }
    if (it->nlabels + (size_t)n > LOCAL_LABELS_MAX) {
        fprintf(stderr, "farm issue: #%lld would have more than %d labels\n", (long long)number,
                LOCAL_LABELS_MAX);
        local_item_free(it);
        return 1;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        int had = 0;
        for (size_t k = 0; k < it->nlabels; k++)
            had |= strcasecmp(it->labels[k], labels[i]) == 0;
        if (had)
            continue; /* GitHub sends nothing for a label already there */
        const char *one[] = {labels[i]};
        tracker_event ev;
        if (c->b.labels_change(c->b.ctx, number, one, 1, 1) < 0 ||
            local_event_labeled(&ev, it, labels[i], c->actor) < 0) {
            fprintf(stderr, "farm issue: %s\n", farm_error_last());
            rc = 1;
            break;
        }
        rc = deliver(c, &ev);
    }
    local_item_free(it);
    return rc;
}

static int cmd_close(ctx *c, int64_t number)
{
    local_item *it = NULL;
    tracker_event ev;
    int rc = 1;
    if (c->b.item_get(&it, c->b.ctx, number) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        return 1;
    }
    if (!repo_configured(c, it))
        goto out;
    if (strcmp(it->state, "open") != 0) {
        fprintf(stderr, "farm issue: #%lld is already %s\n", (long long)number, it->state);
        rc = 0;
        goto out;
    }
    if (c->b.item_update(c->b.ctx, number, NULL, NULL, "closed") < 0 ||
        local_event_closed(&ev, it, c->actor) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    rc = deliver(c, &ev);
out:
    local_item_free(it);
    return rc;
}

/* Merge a local pull request: fast-forward its base branch in the bare
 * repository, mark it merged, and close the issue it resolves (as "Fixes #N"
 * does on GitHub); each change enters the farm as its event. */
static int cmd_merge(ctx *c, int64_t number)
{
    local_item *it = NULL, *issue = NULL;
    tracker_event ev;
    int rc = 1;
    if (c->b.item_get(&it, c->b.ctx, number) < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        return 1;
    }
    const config_repo *repo = config_repo_find(farm_config(c->f), "local", it->repo);
    if (!repo_configured(c, it))
        goto out;
    if (!it->is_pr || strcmp(it->state, "open") != 0) {
        fprintf(stderr, "farm issue: #%lld is not an open pull request\n", (long long)number);
        goto out;
    }
    if (!repo->clone_url) {
        fprintf(stderr, "farm issue: %s has no clone_url to merge in\n", it->repo);
        goto out;
    }
    if (local_branch_fast_forward(repo->clone_url, it->base_branch, it->head_branch) < 0 ||
        c->b.item_update(c->b.ctx, number, NULL, NULL, "merged") < 0) {
        fprintf(stderr, "farm issue: %s\n", farm_error_last());
        goto out;
    }
    printf("merged %s into %s\n", it->head_branch, it->base_branch);
    fflush(stdout);
    free(it->state);
    if (!(it->state = strdup("merged")) || local_event_closed(&ev, it, c->actor) < 0)
        goto out;
    rc = deliver(c, &ev);
    if (rc == 0 && it->issue > 0 && c->b.item_get(&issue, c->b.ctx, it->issue) == 0 &&
        strcmp(issue->state, "open") == 0) {
        if (c->b.item_update(c->b.ctx, issue->number, NULL, NULL, "closed") < 0 ||
            local_event_closed(&ev, issue, c->actor) < 0) {
            fprintf(stderr, "farm issue: %s\n", farm_error_last());
            rc = 1;
            goto out;
        }
        rc = deliver(c, &ev);
    }
out:
    local_item_free(issue);
    local_item_free(it);
    return rc;
}

/* ---- the command ---------------------------------------------------------- */

typedef enum {
    SUB_NEW,
    SUB_LIST,
    SUB_SHOW,
    SUB_COMMENT,
    SUB_LABEL,
    SUB_CLOSE,
    SUB_MERGE,
} sub_kind;

/* The options after the subcommand into o (o->labels has room for argc
 * entries). Returns 0, 1 (a bad --reply-to, said on stderr) or 2 (a usage
 * error, for the caller to print). */
static int opts_parse(opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"repo", required_argument, NULL, 'r'},
        {"title", required_argument, NULL, 't'},
        {"body", required_argument, NULL, 'b'},
        {"body-file", required_argument, NULL, 'f'},
        {"label", required_argument, NULL, 'l'},
        {"state", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'n'},
        {"as", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"path", required_argument, NULL, 'p'},
        {"line", required_argument, NULL, 'L'},
        {"reply-to", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    optind = 2;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config_path = optarg;
            break;
        case 'd':
            o->data_dir = optarg;
            break;
        case 'r':
            o->repo = optarg;
            break;
        case 't':
            o->title = optarg;
            break;
        case 'b':
            o->body = optarg;
            break;
        case 'f':
            o->body_file = optarg;
            break;
        case 'l':
            o->labels[o->nlabels++] = optarg;
            break;
        case 's':
            o->state = optarg;
            if (strcmp(o->state, "open") && strcmp(o->state, "closed") &&
                strcmp(o->state, "merged"))
                return 2;
            break;
        case 'n':
            o->limit = atoi(optarg);
            if (o->limit <= 0)
                return 2;
            break;
        case 'a':
            o->as = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'p':
            o->path = optarg;
            break;
        case 'L':
            o->line = atoi(optarg);
            if (o->line <= 0)
                return 2;
            break;
        case 'R':
            if (!number_parse(&o->reply_to, optarg))
                return 1;
            break;
        default:
            return 2;
        }
    }
    if (o->config_path && o->data_dir) {
        fprintf(stderr, "farm issue: give --config or --data-dir, not both\n");
        return 2;
    }
    return 0;
}

/* The subcommand named sub and its nrest operands: *number is the issue
 * number that every form but new and list starts with. Returns 0, 1 (a bad
 * number, said on stderr) or 2 (a usage error, for the caller to print). */
static const char *const sub_names[] = {"new",   "list",  "show", "comment",
                                        "label", "close", "merge"};

static int sub_known(const char *sub)
{
    for (size_t k = 0; k < sizeof(sub_names) / sizeof(sub_names[0]); k++)
        if (!strcmp(sub, sub_names[k]))
            return 1;
    return 0;
}

static int sub_parse(sub_kind *out, int64_t *number, const char *sub, char **rest, int nrest)
{
    size_t k = 0;
    int ok = 0;

    while (k < sizeof(sub_names) / sizeof(sub_names[0]) && strcmp(sub, sub_names[k]))
        k++;
    if (k == sizeof(sub_names) / sizeof(sub_names[0]))
        return 2;
    switch ((sub_kind)k) {
    case SUB_NEW:
    case SUB_LIST:
        ok = nrest == 0;
        break;
    case SUB_SHOW:
    case SUB_CLOSE:
    case SUB_MERGE:
        ok = nrest == 1;
        break;
    case SUB_COMMENT:
        ok = nrest >= 1 && nrest <= 2;
        break;
    case SUB_LABEL:
        ok = nrest >= 2;
        break;
    }
    if (!ok)
        return 2;
    if (k != SUB_NEW && k != SUB_LIST && !number_parse(number, rest[0]))
        return 1;
    *out = (sub_kind)k;
    return 0;
}

/* Who acts: --as, else $USER, else "local-user". Returns 0 or 1. */
static int actor_pick(ctx *c, const opts *o)
{
    c->actor = o->as ? o->as : getenv("USER");
    if (!c->actor || !*c->actor)
        c->actor = "local-user";
    if (strlen(c->actor) > 256 || !utf8_ok("user name", c->actor))
        return 1;
    return 0;
}

/* Open the farm, run subcommand s with its operands, close the farm.
 * Returns the exit status. */
static int sub_run(const opts *o, sub_kind s, int64_t number, char **rest, int nrest)
{
    ctx c = {0};
    int rc = 2;

    if (actor_pick(&c, o) || open_farm(&c, o) < 0)
        return 1;
    switch (s) {
    case SUB_NEW:
        rc = cmd_new(&c, o);
        break;
    case SUB_LIST:
        rc = cmd_list(&c, o);
        break;
    case SUB_SHOW:
        rc = cmd_show(&c, o, number);
        break;
    case SUB_COMMENT:
        rc = cmd_comment(&c, o, number, nrest == 2 ? rest[1] : NULL);
        break;
    case SUB_LABEL:
        rc = cmd_label(&c, number, rest + 1, nrest - 1);
        break;
    case SUB_CLOSE:
        rc = cmd_close(&c, number);
        break;
    case SUB_MERGE:
        rc = cmd_merge(&c, number);
        break;
    }
    farm_close(c.f);
    return rc;
}

static int issue(int argc, char **argv)
{
    opts o = {0};
    sub_kind s = SUB_NEW;
    int64_t number = 0;
    int rc;

    if (argc < 2)
        return cli_usage("issue");
    /* a person's command: warnings and errors only, as text, not the server's JSON log */
    log_set_level(LOG_WARN);
    log_set_format(LOG_FORMAT_TEXT);
    if (!sub_known(argv[1])) {
        fprintf(stderr, "farm issue: unknown subcommand '%s'\n", argv[1]);
        return cli_usage("issue");
    }
    if (!(o.labels = calloc((size_t)argc, sizeof *o.labels)))
        return 1;
    if (!(rc = opts_parse(&o, argc, argv)))
        rc = sub_parse(&s, &number, argv[1], argv + optind, argc - optind);
    if (rc == 2)
        rc = cli_usage("issue");
    else if (!rc)
        rc = sub_run(&o, s, number, argv + optind, argc - optind);
    free(o.labels);
    return rc;
}

CLI_COMMAND("issue", "the local tracker: new, list, show, comment, label, close, merge", USAGE,
            issue)
