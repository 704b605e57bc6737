/*
 * pipeline_update.c - an "update" run: the base branch brought into the
 * session's branch (farm/intake/update.h says what queues one).
 *
 * After fetch and worktree (at what the farm pushed last), the merge step
 * merges the base's head into the files (vcs_worktree_merge()). A branch
 * that has the base already ends the run with nothing to do. A clean merge
 * counts as the run's first agent round: the tests run on it, and failing
 * tests get fix rounds as usual. Conflicts go to the agent first, with the
 * files listed in its prompt (templates/merge.md) and git's markers in
 * them. The commit is a merge commit (two parents, signed like any other),
 * made only when no conflicted file holds a marker any more; the push is
 * a fast-forward of what reviewers saw, never a force-push.
 */
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/strv.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/report/report.h"
#include "farm/store/store_run.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARKER_SCAN_MAX (8u << 20) /* bytes of one conflicted file looked at */

/* Whether the update was asked for with `/farm update` (the last
 * "update_queued" event says why). */
static int asked_by_command(pl_run *r)
{
    static const char *const kinds[] = {"update_queued", NULL};
    store_event *e = NULL;
    int asked = 0;

    if (store_event_last_kind(&e, r->f->store, r->s->id, kinds, 0) != 0 || !e)
        return 0;
    json_t *b = json_loads(e->body, 0, NULL);
    const char *why = json_string_value(json_object_get(b, "why"));
    asked = why && !strcmp(why, "/farm update");
    json_decref(b);
    store_event_list_free(e, 1);
    return asked;
}

/* Nothing to merge: back to review, saying so when someone asked. */
static int run_up_to_date(pl_run *r, const char *base_oid)
{
    char body[512], name[64];
    pl_tx t;
    int rc;

    pl_tx_init(&t, r);
    t.state = "review";
    t.step_words = "waiting for review";
    t.skip_if_final = 1;
    pl_tx_event(&t, "run_finished", pl_finished_body(r, "up_to_date", NULL));
    if (asked_by_command(r)) {
        snprintf(body, sizeof(body),
                 "This branch already has the head of `%s` (%.12s): nothing to merge.",
                 r->repo->base_branch, base_oid);
        snprintf(name, sizeof(name), "r%lld:uptodate", (long long)r->run_no);
        pl_tx_outbox(&t, OUTBOX_COMMENT, name,
                     json_pack("{s:s,s:b}", "body", body, "on_pr", r->s->pr_number > 0));
    }
    rc = pl_tx_commit(&t);
    pl_cleanup_dirs(r);
    return rc;
}

int pl_step_merge(pl_run *r, pl_progress *p)
{
    char base[VCS_OID_HEXSZ];
    vcs_merge_result mr;
    int64_t t0 = clock_mono_ms();
    int rc;

    if (p->merge)
        return 0;
    if ((rc = pl_set_state(r, "revising", "merging the base branch")) ||
        (rc = pl_step_started(r, "merge", 0)))
        return rc;
    if ((rc = vcs_mirror_branch_oid(base, r->m, r->repo->base_branch)) ||
        (rc = vcs_worktree_merge(&mr, r->wt, base))) {
        pl_step_failed(r, "merge", 0, farm_error_last());
        return rc;
    }
    if (mr.up_to_date) {
        vcs_merge_result_free(&mr);
        if ((rc = pl_step_done_commit(r, "merge", 0, t0,
                                      json_pack("{s:s,s:b}", "base", base, "up_to_date", 1))) ||
            (rc = run_up_to_date(r, base)))
            return rc;
        return 1;
    }
    json_t *files = json_array();
    for (size_t i = 0; files && mr.conflicts && mr.conflicts[i]; i++)
        json_array_append_new(files, json_string(mr.conflicts[i]));
    json_t *extra = json_pack("{s:s,s:b,s:I,s:o}", "base", base, "up_to_date", 0, "nconflicts",
                              (json_int_t)mr.nconflicts, "conflicts", files);
    p->merge = 1;
    memcpy(p->merge_base, base, sizeof(p->merge_base));
    strv_list_free(p->conflicts);
    p->conflicts = mr.conflicts;
    mr.conflicts = NULL;
    if (!p->conflicts) {
        p->agent_round = 1; /* the merge is the first round: the tests come next */
        p->agent_exit = 0;
    }
    vcs_merge_result_free(&mr);
    log_info("base merged into the branch", "repo", r->repo->name, "conflicts",
             p->conflicts ? "yes" : "no");
    return pl_step_done_commit(r, "merge", 0, t0, extra);
}

/* 1 when the file at path (in the worktree) holds a line starting with a
 * conflict marker. A missing file (the agent deleted it) holds none. */
static int has_markers(const char *wt, const char *rel)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", wt, rel) >= (int)sizeof(path))
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    buf b = BUF_INIT(MARKER_SCAN_MAX);
    char chunk[8192];
    ssize_t n;
    while (b.len < MARKER_SCAN_MAX && (n = read(fd, chunk, sizeof(chunk))) > 0)
        if (buf_append(&b, chunk,
                       b.len + (size_t)n > MARKER_SCAN_MAX ? MARKER_SCAN_MAX - b.len : (size_t)n))
            break;
    close(fd);
    const char *s = buf_cstr(&b);
    int found = 0;
    for (const char *line = s; line && *line && !found; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        /* git's labelled markers; a bare "=======" is also a heading underline */
        found = !strncmp(line, "<<<<<<< ", 8) || !strncmp(line, ">>>>>>> ", 8);
    }
    buf_free(&b);
    return found;
}

int pl_merge_check(pl_run *r, const pl_progress *p)
{
    char reason[600];
    for (size_t i = 0; p->conflicts && p->conflicts[i]; i++) {
        if (!has_markers(r->wt_path, p->conflicts[i]))
            continue;
        snprintf(reason, sizeof(reason),
                 "merging %s: %s still holds conflict markers after the agent's rounds, so "
                 "nothing was pushed; resolve it by hand, or comment `/farm update` to try "
                 "again",
                 r->repo->base_branch, p->conflicts[i]);
        int rc = pl_run_fail(r, reason, p->agent_tail);
        return rc ? rc : 1;
    }
    return 0;
}

char *pl_merge_message(pl_run *r, const pl_progress *p)
{
    buf msg = BUF_INIT(16384);
    size_t n = 0;

    while (p->conflicts && p->conflicts[n])
        n++;
    buf_printf(&msg, "Merge branch '%s' into %s\n\n", r->repo->base_branch, r->branch);
    if (n) {
        buf_puts(&msg, "Conflicts resolved by the agent:\n");
        for (size_t i = 0; i < n && i < 50; i++)
            buf_printf(&msg, "\t%s\n", p->conflicts[i]);
        if (n > 50)
            buf_printf(&msg, "\t... and %zu more\n", n - 50);
        buf_puts(&msg, "\n");
    }
    buf_printf(&msg, "Made by farm, session %lld, run %lld", (long long)r->s->id,
               (long long)r->run_no);
    if (r->cfg->public_url)
        buf_printf(&msg, ": %s/sessions/%lld", r->cfg->public_url, (long long)r->s->id);
    buf_puts(&msg, ".\n");
    char *s = buf_detach(&msg);
    buf_free(&msg);
    return s;
}

char *pl_conflicts_markdown(const pl_progress *p)
{
    buf b = BUF_INIT(64u << 10);
    for (size_t i = 0; p->conflicts && p->conflicts[i]; i++)
        if (buf_printf(&b, "- `%s`\n", p->conflicts[i]))
            break;
    char *s = buf_detach(&b);
    buf_free(&b);
    return s;
}

int pl_update_comment(pl_run *r, const pl_progress *p)
{
    buf body = BUF_INIT(8192);
    char name[64];
    size_t n = 0;
    pl_tx t;

    while (p->conflicts && p->conflicts[n])
        n++;
    buf_printf(&body, "Merged `%s` (%.12s) into this branch with a merge commit (%.12s)",
               r->repo->base_branch, p->merge_base, vcs_worktree_head(r->wt));
    if (n)
        buf_printf(&body, "; the agent resolved the conflicts in %zu file%s", n, n == 1 ? "" : "s");
    buf_puts(&body, ".");
    if (r->repo->test && p->test_round > 0)
        buf_puts(&body, p->test_status == 0 ? " The tests pass." : " The tests still fail.");
    if (r->cfg->public_url)
        buf_printf(&body, " [Session log](%s/sessions/%lld).", r->cfg->public_url,
                   (long long)r->s->id);
    pl_tx_init(&t, r);
    snprintf(name, sizeof(name), "r%lld:updated", (long long)r->run_no);
    pl_tx_outbox(&t, OUTBOX_COMMENT, name,
                 json_pack("{s:s,s:b}", "body", buf_cstr(&body), "on_pr", r->s->pr_number > 0));
    buf_free(&body);
    return pl_tx_commit(&t);
}
