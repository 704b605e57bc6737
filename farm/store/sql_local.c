/*
 * sql_local.c - the local tracker's tables and every SQL statement about
 * them (see store_local.h).
 *
 * Issues and pull requests share one table and one number sequence (the
 * rowid), as on GitHub; labels keep the order they were added in and are
 * unique per item without regard to case; comments carry the review fields
 * used on pull requests. Writes go through store_write(), so they are
 * durable on return. Case-blind matches (a repository, a label) say
 * lower() on both backends; the tables are in sqlite_schema.c and
 * pg_schema.c. Written once for both backends (store_sql.h).
 */
#include "store_sql.h"
#include "store_local.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>

#define ITEM_COLS                                                                                  \
    "number, repo, is_pr, title, body, author, state, head_branch, base_branch, issue,"            \
    " created_ms, updated_ms"
#define COMMENT_COLS                                                                               \
    "id, number, author, body, review, path, line, in_reply_to, created_ms, updated_ms"

/* ---- reading ------------------------------------------------------------ */

static int item_read(local_item *it, sql_stmt *st)
{
    int oom = 0;
    memset(it, 0, sizeof *it);
    it->number = sql_col_int64(st, 0);
    it->repo = sql_col_dup(st, 1, &oom);
    it->is_pr = sql_col_int(st, 2);
    it->title = sql_col_dup(st, 3, &oom);
    it->body = sql_col_dup(st, 4, &oom);
    it->author = sql_col_dup(st, 5, &oom);
    it->state = sql_col_dup(st, 6, &oom);
    it->head_branch = sql_col_dup(st, 7, &oom);
    it->base_branch = sql_col_dup(st, 8, &oom);
    it->issue = sql_col_int64(st, 9);
    it->created_ms = sql_col_int64(st, 10);
    it->updated_ms = sql_col_int64(st, 11);
    return oom ? FARM_ENOMEM : 0;
}

static int labels_read(local_item *it, store *s, sql_conn *db)
{
    sql_stmt *st = NULL;
    int rc = sql_prepare(&st, s, db, "SELECT label FROM local_label WHERE number = $1 ORDER BY id");
    size_t cap = 0;
    if (rc)
        return rc;
    sql_bind_int64(st, 1, it->number);
    for (;;) {
        int step = sql_step(st);
        if (step == SQL_DONE)
            break;
        if (step != SQL_ROW) {
            rc = sql_err(st, "reading local labels");
            break;
        }
        if ((rc = sql_grow(&it->labels, &cap, it->nlabels + 1, sizeof(*it->labels))))
            break;
        int oom = 0;
        it->labels[it->nlabels] = sql_col_dup(st, 0, &oom);
        if (oom || !it->labels[it->nlabels]) {
            rc = FARM_ENOMEM;
            break;
        }
        it->labels[++it->nlabels] = NULL;
    }
    sql_finalize(st);
    return rc;
}

/* Run an item query (binding done by bind) and collect up to max rows with
 * their labels. */
typedef void (*bind_fn)(sql_stmt *st, const void *arg);

static int items_query(local_item **out, size_t *n, store *s, const char *sql, bind_fn bind,
                       const void *arg, size_t max)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    local_item *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = sql_prepare(&st, s, db, sql);
    *out = NULL;
    *n = 0;
    if (rc)
        goto out;
    bind(st, arg);
    while (cnt < max) {
        int step = sql_step(st);
        if (step == SQL_DONE)
            break;
        if (step != SQL_ROW) {
            rc = sql_err(st, "reading local issues");
            goto out;
        }
        if ((rc = sql_grow(&v, &cap, cnt, sizeof(*v))))
            goto out;
        rc = item_read(&v[cnt], st);
        cnt++;
        if (rc)
            goto out;
    }
    sql_finalize(st);
    st = NULL;
    for (size_t i = 0; i < cnt && rc == 0; i++)
        rc = labels_read(&v[i], s, db);
    if (rc)
        goto out;
    *out = v;
    *n = cnt;
    v = NULL;
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    local_item_list_free(v, cnt);
    return rc;
}

static void bind_number(sql_stmt *st, const void *arg)
{
    sql_bind_int64(st, 1, *(const int64_t *)arg);
}

static int item_get(local_item **out, void *ctx, int64_t number)
{
    local_item *v = NULL;
    size_t n = 0;
    int rc = items_query(&v, &n, ctx, "SELECT " ITEM_COLS " FROM local_item WHERE number = $1",
                         bind_number, &number, 1);
    *out = NULL;
    if (rc)
        return rc;
    if (n == 0) {
        farm_error_set("local: no issue or pull request #%lld", (long long)number);
        return FARM_ENOTFOUND;
    }
    /* hand over the one record as a heap object of its own */
    *out = v;
    return 0;
}

typedef struct list_args {
    const char *repo;
    const char *state;
    int limit;
} list_args;

static void bind_list(sql_stmt *st, const void *arg)
{
    const list_args *a = arg;
    sql_bind_text(st, 1, a->repo);
    sql_bind_text(st, 2, a->state);
    sql_bind_int(st, 3, a->limit);
}

static int item_list(local_item **out, size_t *n, void *ctx, const char *repo, const char *state,
                     int limit)
{
    list_args a = {repo, state, sql_limit(limit)};
    return items_query(out, n, ctx,
                       "SELECT " ITEM_COLS " FROM local_item"
                       " WHERE ($1 IS NULL OR lower(repo) = lower($1))"
                       "   AND ($2 IS NULL OR state = $2)"
                       " ORDER BY number DESC LIMIT $3",
                       bind_list, &a, (size_t)a.limit);
}

typedef struct branch_args {
    const char *repo;
    const char *branch;
} branch_args;

static void bind_branch(sql_stmt *st, const void *arg)
{
    const branch_args *a = arg;
    sql_bind_text(st, 1, a->repo);
    sql_bind_text(st, 2, a->branch);
}

static int pr_find(local_item **out, void *ctx, const char *repo, const char *branch)
{
    branch_args a = {repo, branch};
    local_item *v = NULL;
    size_t n = 0;
    int rc = items_query(&v, &n, ctx,
                         "SELECT " ITEM_COLS " FROM local_item"
                         " WHERE is_pr = 1 AND lower(repo) = lower($1) AND head_branch = $2"
                         " ORDER BY state = 'open' DESC, number DESC LIMIT 1",
                         bind_branch, &a, 1);
    *out = NULL;
    if (rc)
        return rc;
    if (n == 0) {
        farm_error_set("local: no pull request from %s in %s", branch, repo);
        return FARM_ENOTFOUND;
    }
    *out = v;
    return 0;
}

static int prs_for_issue(local_item **out, size_t *n, void *ctx, int64_t issue)
{
    return items_query(out, n, ctx,
                       "SELECT " ITEM_COLS " FROM local_item"
                       " WHERE is_pr = 1 AND issue = $1 ORDER BY number DESC LIMIT 100",
                       bind_number, &issue, 100);
}

static int comment_read(local_comment *c, sql_stmt *st)
{
    int oom = 0;
    memset(c, 0, sizeof *c);
    c->id = sql_col_int64(st, 0);
    c->number = sql_col_int64(st, 1);
    c->author = sql_col_dup(st, 2, &oom);
    c->body = sql_col_dup(st, 3, &oom);
    c->review = sql_col_int(st, 4);
    c->path = sql_col_dup(st, 5, &oom);
    c->line = sql_col_int(st, 6);
    c->in_reply_to = sql_col_int64(st, 7);
    c->created_ms = sql_col_int64(st, 8);
    c->updated_ms = sql_col_int64(st, 9);
    return oom ? FARM_ENOMEM : 0;
}

static int comments_query(local_comment **out, size_t *n, store *s, const char *sql, int64_t a,
                          int b)
{
    sql_conn *db = sql_reader_get(s);
    sql_stmt *st = NULL;
    local_comment *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = sql_prepare(&st, s, db, sql);
    *out = NULL;
    *n = 0;
    if (rc)
        goto out;
    sql_bind_int64(st, 1, a);
    sql_bind_int(st, 2, b);
    for (;;) {
        int step = sql_step(st);
        if (step == SQL_DONE)
            break;
        if (step != SQL_ROW) {
            rc = sql_err(st, "reading local comments");
            goto out;
        }
        if ((rc = sql_grow(&v, &cap, cnt, sizeof(*v))))
            goto out;
        rc = comment_read(&v[cnt], st);
        cnt++;
        if (rc)
            goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    sql_finalize(st);
    sql_reader_put(s, db);
    local_comment_list_free(v, cnt);
    return rc;
}

static int comment_get(local_comment **out, void *ctx, int64_t id)
{
    size_t n = 0;
    int rc = comments_query(
        out, &n, ctx, "SELECT " COMMENT_COLS " FROM local_comment WHERE id = $1 AND $2 = 0", id, 0);
    if (rc == 0 && n == 0) {
        farm_error_set("local: no comment %lld", (long long)id);
        return FARM_ENOTFOUND;
    }
    return rc;
}

static int comment_list(local_comment **out, size_t *n, void *ctx, int64_t number, int review)
{
    return comments_query(out, n, ctx,
                          "SELECT " COMMENT_COLS " FROM local_comment"
                          " WHERE number = $1 AND ($2 < 0 OR review = $2) ORDER BY id",
                          number, review);
}

/* ---- writing ------------------------------------------------------------ */

/* One statement in a write function; *changes (may be NULL) is how many
 * rows it touched. Foreign keys failing mean the item is not there. */
static int tx_run_id(store_tx *tx, sql_stmt *st, int *changes, int64_t *id, const char *what)
{
    int step = sql_step(st);
    int rc = 0;
    if (step == SQL_ERROR && sql_failure(st) == SQL_FAIL_FOREIGN_KEY) {
        farm_error_set("local: no such issue or pull request");
        rc = FARM_ENOTFOUND;
    } else if (step != SQL_DONE && step != SQL_ROW) {
        rc = sql_err(st, what);
    } else {
        if (changes)
            *changes = (int)sql_changes(st);
        if (id)
            *id = step == SQL_ROW ? sql_col_int64(st, 0) : 0;
    }
    sql_finalize(st);
    return rc;
}

static int tx_run(store_tx *tx, sql_stmt *st, int *changes, const char *what)
{
    return tx_run_id(tx, st, changes, NULL, what);
}

static int tx_label_add(store_tx *tx, int64_t number, const char *label)
{
    sql_stmt *st = NULL;
    int rc = sql_tx_prepare(&st, tx,
                            "INSERT INTO local_label (number, label) VALUES ($1, $2)"
                            " ON CONFLICT DO NOTHING");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, number);
    sql_bind_text(st, 2, label);
    return tx_run(tx, st, NULL, "adding a local label");
}

typedef struct insert_args {
    const local_item *it;
    int64_t number;
} insert_args;

static int insert_write(store_tx *tx, void *arg)
{
    insert_args *a = arg;
    const local_item *it = a->it;
    int64_t now = clock_wall_ms();
    sql_stmt *st = NULL;
    int rc =
        sql_tx_prepare(&st, tx,
                       "INSERT INTO local_item (repo, is_pr, title, body, author, state,"
                       " head_branch, base_branch, issue, created_ms, updated_ms)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING number");
    if (rc)
        return rc;
    sql_bind_text(st, 1, it->repo);
    sql_bind_int(st, 2, it->is_pr ? 1 : 0);
    sql_bind_text(st, 3, it->title);
    sql_bind_text(st, 4, it->body ? it->body : "");
    sql_bind_text(st, 5, it->author);
    sql_bind_text(st, 6, it->state ? it->state : "open");
    sql_bind_text(st, 7, it->head_branch);
    sql_bind_text(st, 8, it->base_branch);
    sql_bind_int64(st, 9, it->issue);
    sql_bind_int64(st, 10, now);
    if ((rc = tx_run_id(tx, st, NULL, &a->number, "creating a local issue")))
        return rc;
    for (size_t i = 0; i < it->nlabels && rc == 0; i++)
        rc = tx_label_add(tx, a->number, it->labels[i]);
    return rc;
}

static int item_insert(int64_t *out_number, void *ctx, const local_item *it)
{
    insert_args a = {it, 0};
    *out_number = 0;
    if (!it->repo || !it->title || !it->author) {
        farm_error_set("local: an issue needs a repository, a title and an author");
        return FARM_EINVALID;
    }
    int rc = store_write(ctx, insert_write, &a);
    if (rc == 0)
        *out_number = a.number;
    return rc;
}

typedef struct update_args {
    int64_t number;
    const char *title, *body, *state;
} update_args;

static int update_write(store_tx *tx, void *arg)
{
    update_args *a = arg;
    sql_stmt *st = NULL;
    int changes = 0;
    int rc = sql_tx_prepare(&st, tx,
                            "UPDATE local_item SET title = coalesce($2, title),"
                            " body = coalesce($3, body), state = coalesce($4, state),"
                            " updated_ms = $5 WHERE number = $1");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, a->number);
    sql_bind_text(st, 2, a->title);
    sql_bind_text(st, 3, a->body);
    sql_bind_text(st, 4, a->state);
    sql_bind_int64(st, 5, clock_wall_ms());
    if ((rc = tx_run(tx, st, &changes, "updating a local issue")))
        return rc;
    if (changes == 0) {
        farm_error_set("local: no issue or pull request #%lld", (long long)a->number);
        return FARM_ENOTFOUND;
    }
    return 0;
}

static int item_update(void *ctx, int64_t number, const char *title, const char *body,
                       const char *state)
{
    update_args a = {number, title, body, state};
    return store_write(ctx, update_write, &a);
}

typedef struct labels_args {
    int64_t number;
    const char *const *labels;
    size_t n;
    int add;
} labels_args;

static int labels_write(store_tx *tx, void *arg)
{
    labels_args *a = arg;
    update_args touch = {a->number, NULL, NULL, NULL};
    int rc = update_write(tx, &touch); /* also: the item must exist */
    for (size_t i = 0; i < a->n && rc == 0; i++) {
        if (a->add) {
            rc = tx_label_add(tx, a->number, a->labels[i]);
        } else {
            sql_stmt *st = NULL;
            rc = sql_tx_prepare(
                &st, tx, "DELETE FROM local_label WHERE number = $1 AND lower(label) = lower($2)");
            if (rc == 0) {
                sql_bind_int64(st, 1, a->number);
                sql_bind_text(st, 2, a->labels[i]);
                rc = tx_run(tx, st, NULL, "removing a local label");
            }
        }
    }
    return rc;
}

static int labels_change(void *ctx, int64_t number, const char *const *labels, size_t n, int add)
{
    labels_args a = {number, labels, n, add};
    return store_write(ctx, labels_write, &a);
}

typedef struct comment_args {
    const local_comment *c;
    int64_t id;
    const char *body;
    int del;
} comment_args;

static int comment_insert_write(store_tx *tx, void *arg)
{
    comment_args *a = arg;
    const local_comment *c = a->c;
    sql_stmt *st = NULL;
    int rc = sql_tx_prepare(&st, tx,
                            "INSERT INTO local_comment (number, author, body, review, path, line,"
                            " in_reply_to, created_ms, updated_ms)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, c->number);
    sql_bind_text(st, 2, c->author);
    sql_bind_text(st, 3, c->body);
    sql_bind_int(st, 4, c->review ? 1 : 0);
    sql_bind_text(st, 5, c->path);
    sql_bind_int(st, 6, c->line);
    sql_bind_int64(st, 7, c->in_reply_to);
    sql_bind_int64(st, 8, clock_wall_ms());
    if ((rc = tx_run_id(tx, st, NULL, &a->id, "adding a local comment")))
        return rc;
    update_args touch = {c->number, NULL, NULL, NULL};
    return update_write(tx, &touch);
}

static int comment_insert(int64_t *out_id, void *ctx, const local_comment *c)
{
    comment_args a = {c, 0, NULL, 0};
    *out_id = 0;
    if (!c->author || !c->body) {
        farm_error_set("local: a comment needs an author and a body");
        return FARM_EINVALID;
    }
    if (strlen(c->body) > LOCAL_BODY_MAX) {
        farm_error_set("local: a comment of %zu bytes is over the %u-byte limit", strlen(c->body),
                       LOCAL_BODY_MAX);
        return FARM_ETOOBIG;
    }
    int rc = store_write(ctx, comment_insert_write, &a);
    if (rc == 0)
        *out_id = a.id;
    return rc;
}

static int comment_change_write(store_tx *tx, void *arg)
{
    comment_args *a = arg;
    sql_stmt *st = NULL;
    int changes = 0, rc;
    if (a->del) {
        rc = sql_tx_prepare(&st, tx, "DELETE FROM local_reaction WHERE comment_id = $1");
        if (rc)
            return rc;
        sql_bind_int64(st, 1, a->id);
        if ((rc = tx_run(tx, st, NULL, "deleting a local comment's reactions")))
            return rc;
        rc = sql_tx_prepare(&st, tx, "DELETE FROM local_comment WHERE id = $1");
    } else {
        rc = sql_tx_prepare(&st, tx,
                            "UPDATE local_comment SET body = $2, updated_ms = $3 WHERE id = $1");
    }
    if (rc)
        return rc;
    sql_bind_int64(st, 1, a->id);
    if (!a->del) {
        sql_bind_text(st, 2, a->body);
        sql_bind_int64(st, 3, clock_wall_ms());
    }
    if ((rc = tx_run(tx, st, &changes, "changing a local comment")))
        return rc;
    if (changes == 0) {
        farm_error_set("local: no comment %lld", (long long)a->id);
        return FARM_ENOTFOUND;
    }
    return 0;
}

static int comment_update(void *ctx, int64_t id, const char *body)
{
    comment_args a = {NULL, id, body, 0};
    if (strlen(body) > LOCAL_BODY_MAX) {
        farm_error_set("local: a comment of %zu bytes is over the %u-byte limit", strlen(body),
                       LOCAL_BODY_MAX);
        return FARM_ETOOBIG;
    }
    return store_write(ctx, comment_change_write, &a);
}

static int comment_delete(void *ctx, int64_t id)
{
    comment_args a = {NULL, id, NULL, 1};
    return store_write(ctx, comment_change_write, &a);
}

typedef struct reaction_args {
    int64_t number, comment_id;
    const char *reaction, *user;
} reaction_args;

static int reaction_write(store_tx *tx, void *arg)
{
    reaction_args *a = arg;
    sql_stmt *st = NULL;
    int rc = sql_tx_prepare(&st, tx,
                            "INSERT INTO local_reaction"
                            " (number, comment_id, reaction, \"user\", created_ms)"
                            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING");
    if (rc)
        return rc;
    sql_bind_int64(st, 1, a->number);
    sql_bind_int64(st, 2, a->comment_id);
    sql_bind_text(st, 3, a->reaction);
    sql_bind_text(st, 4, a->user);
    sql_bind_int64(st, 5, clock_wall_ms());
    return tx_run(tx, st, NULL, "adding a local reaction");
}

static int reaction_add(void *ctx, int64_t number, int64_t comment_id, const char *reaction,
                        const char *user)
{
    reaction_args a = {number, comment_id, reaction, user};
    return store_write(ctx, reaction_write, &a);
}

/* ---- the local tracker's backend ----------------------------------------- */

void sql_local_backend(local_backend *out, store *s)
{
    memset(out, 0, sizeof *out);
    out->ctx = s;
    out->item_insert = item_insert;
    out->item_get = item_get;
    out->item_update = item_update;
    out->item_list = item_list;
    out->pr_find = pr_find;
    out->prs_for_issue = prs_for_issue;
    out->labels_change = labels_change;
    out->comment_insert = comment_insert;
    out->comment_update = comment_update;
    out->comment_delete = comment_delete;
    out->comment_get = comment_get;
    out->comment_list = comment_list;
    out->reaction_add = reaction_add;
}
