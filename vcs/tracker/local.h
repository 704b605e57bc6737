/*
 * local.h - the local tracker: issues, comments, labels and pull requests
 * kept in the farm's own store, for the demo and for trying the farm
 * without a GitHub or Azure DevOps account.
 *
 * vcs/ sits below the store, so the local tracker does not touch it
 * directly: whoever creates one hands it a local_backend (farm/ gives one
 * over its store, see farm/store/store_local.h) and local.c does the rest: the
 * tracker.h ops, markers and splitting, and turning what a person does
 * (`farm issue new`, `farm issue comment`) into the same tracker_event a
 * webhook delivery would be.
 *
 * Numbers are shared by the issues and pull requests of every local
 * repository (one counter, like one GitHub repository), so `farm issue show
 * N` needs no repository. A pull request is a record naming a branch of the
 * repository's clone_url (a local bare repository, file://...).
 */
#ifndef FARM_VCS_TRACKER_LOCAL_H
#define FARM_VCS_TRACKER_LOCAL_H

#include "event.h"
#include "tracker.h"

#include <stddef.h>
#include <stdint.h>

#define LOCAL_TITLE_MAX     1024       /* bytes */
#define LOCAL_BODY_MAX      (1u << 20) /* bytes of an issue body or one comment */
#define LOCAL_COMMENT_UNITS 262144     /* a longer comment is split, as on GitHub */
#define LOCAL_LABELS_MAX    100

/* An issue or a pull request. Strings are heap copies owned by the record. */
typedef struct local_item {
    int64_t number;
    char *repo;
    int is_pr;
    char *title;
    char *body;
    char *author;
    char *state;   /* "open", "closed"; PRs also "merged" */
    char **labels; /* NULL-terminated, may be NULL */
    size_t nlabels;
    char *head_branch; /* PR: the farm's branch */
    char *base_branch; /* PR: the branch it goes into */
    int64_t issue;     /* PR: the issue it resolves, 0 when none */
    int64_t created_ms;
    int64_t updated_ms;
} local_item;

/* A comment on an issue or PR; on a PR, a review comment has review set and
 * may name a file and line. */
typedef struct local_comment {
    int64_t id;
    int64_t number; /* the issue or PR it is on */
    char *author;
    char *body;
    int review;
    char *path; /* review comment: file, or NULL */
    int line;
    int64_t in_reply_to; /* review comment: the one it answers, 0 when none */
    int64_t created_ms;
    int64_t updated_ms;
} local_comment;

void local_item_free(local_item *it);
void local_item_list_free(local_item *v, size_t n);
void local_comment_list_free(local_comment *v, size_t n);

/* Where the local tracker keeps its records. Every function returns 0 or a
 * negative code (FARM_ENOTFOUND for an unknown number or id); outputs are
 * freed with the functions above. */
typedef struct local_backend {
    void *ctx;
    /* Store a new issue or PR (it->number ignored) with its labels. */
    int (*item_insert)(int64_t *out_number, void *ctx, const local_item *it);
    int (*item_get)(local_item **out, void *ctx, int64_t number);
    /* Change title, body and/or state (NULL: unchanged). */
    int (*item_update)(void *ctx, int64_t number, const char *title, const char *body,
                       const char *state);
    /* Issues and PRs, newest first: repo NULL for every repository, state
     * NULL for any; at most limit. */
    int (*item_list)(local_item **out, size_t *n, void *ctx, const char *repo, const char *state,
                     int limit);
    /* The PR of repo whose head is branch: the open one, else the newest. */
    int (*pr_find)(local_item **out, void *ctx, const char *repo, const char *branch);
    /* The PRs that resolve an issue, newest first. */
    int (*prs_for_issue)(local_item **out, size_t *n, void *ctx, int64_t issue);
    /* Add (add=1) or remove labels; case-insensitive, idempotent. */
    int (*labels_change)(void *ctx, int64_t number, const char *const *labels, size_t n, int add);
    int (*comment_insert)(int64_t *out_id, void *ctx, const local_comment *c);
    int (*comment_update)(void *ctx, int64_t id, const char *body);
    int (*comment_delete)(void *ctx, int64_t id);
    int (*comment_get)(local_comment **out, void *ctx, int64_t id);
    /* The comments of an item, oldest first: review -1 all, 0 conversation,
     * 1 review comments. */
    int (*comment_list)(local_comment **out, size_t *n, void *ctx, int64_t number, int review);
    /* Record a reaction (idempotent); comment_id 0 reacts to the item. */
    int (*reaction_add)(void *ctx, int64_t number, int64_t comment_id, const char *reaction,
                        const char *user);
} local_backend;

typedef struct tracker_local_repo {
    const char *name;      /* the configured name */
    const char *clone_url; /* the local bare repository PR branches live in */
} tracker_local_repo;

typedef struct tracker_local_opts {
    const local_backend *backend; /* borrowed: must outlive the tracker */
    const char *bot_name;         /* author of what the farm writes; default "farm-bot" */
    const tracker_local_repo *repos;
    size_t nrepos;
} tracker_local_opts;

#define TRACKER_LOCAL_OPTS_INIT                                                                    \
    {                                                                                              \
        NULL, NULL, NULL, 0                                                                        \
    }

/* A local tracker over a backend. Strings are copied. *out is freed with
 * tracker_free(). */
int tracker_local_new(tracker **out, const tracker_local_opts *opts);

/* Merge a local pull request's branch: move base to head in the bare
 * repository at clone_url (file://...) when that is a fast-forward. Returns
 * 0, FARM_ENOTFOUND (no such repository or branch), FARM_ECONFLICT (not a
 * fast-forward, or base moved meanwhile) or FARM_EUNSUPPORTED (not a local
 * URL). */
int local_branch_fast_forward(const char *clone_url, const char *base, const char *head);

/* The human URL of a local issue or PR: "local://REPO/issues/N" or
 * ".../pulls/N". Heap string freed by the caller; NULL on ENOMEM. */
char *local_item_url(const local_item *it);

/*
 * Events: what a person did, as the tracker_event a webhook delivery of it
 * would be (tracker "local", a fresh delivery id, the actor with write
 * access: anyone who can write the farm's data directory can do everything
 * the farm can). *out is cleared with tracker_event_free() by the caller.
 */
int local_event_opened(tracker_event *out, const local_item *it, const char *actor);
int local_event_labeled(tracker_event *out, const local_item *it, const char *label,
                        const char *actor);
int local_event_closed(tracker_event *out, const local_item *it, const char *actor);
int local_event_comment(tracker_event *out, const local_item *it, const local_comment *c);

#endif
