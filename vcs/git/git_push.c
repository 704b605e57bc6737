/*
 * git_push.c - pushing a session's branch with a lease.
 *
 * The remote is anonymous, built from the configured clone URL, never from
 * anything in the worktree; the token goes only into the credential
 * callback. One connection does both halves of the lease: the remote's
 * advertised refs are compared with what the farm last pushed, and the push
 * that follows names that advertised value as the old one, so a server that
 * saw the branch move in between refuses the update.
 */
#include "git_internal.h"
#include "base/error.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* The remote's current value of refname: 1 found (oid set), 0 absent. */
static int remote_ref(git_oid *oid, git_remote *gr, const char *refname)
{
    const git_remote_head **heads = NULL;
    size_t n = 0;
    if (git_remote_ls(&heads, &n, gr) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(heads[i]->name, refname) == 0) {
            git_oid_cpy(oid, &heads[i]->oid);
            return 1;
        }
    return 0;
}

int vcs_worktree_push(vcs_worktree *wt, const vcs_remote *remote, const char *expected)
{
    git_repository *repo = NULL;
    git_remote *gr = NULL;
    git_reference *ref = NULL;
    git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
    git_push_options po = GIT_PUSH_OPTIONS_INIT;
    git_remote_callbacks cb;
    vcs_cb_state st;
    git_oid head, want, have;
    char spec[600], url[512], have_hex[VCS_OID_HEXSZ];
    const char *name;
    int rc = 0, e, connected = 0, watched = 0;

    assert(wt);
    if (!remote || !remote->url || !*remote->url) {
        farm_error_set("push of %s: no clone URL", wt->branch);
        return FARM_EINVALID;
    }
    name = remote->name ? remote->name : "the repository";
    vcs_url_redact(url, sizeof(url), remote->url);
    if (expected && git_oid_fromstr(&want, expected) < 0) {
        farm_error_set("push of %s: expected value '%.64s' is not a full commit id", wt->branch,
                       expected);
        return FARM_EINVALID;
    }
    if ((rc = wt_repo_open(&repo, wt)) < 0)
        return rc;
    git_oid_fromstr(&head, wt->head);
    /* push from the branch ref as the farm recorded it, not as the agent left it */
    if ((e = git_reference_create(&ref, repo, wt->refname, &head, 1, NULL)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "push of %s: cannot set the local branch", wt->branch);
        goto out;
    }
    ro.repository = repo;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    if ((e = git_remote_create_with_opts(&gr, remote->url, &ro)) < 0) {
        rc = vcs_git_fail(e, FARM_EINVALID, remote->token, "push to %s: bad clone URL %s", name,
                          url);
        goto out;
    }
    vcs_callbacks_init(&cb, &st, remote);
    vcs_watch_start(&st.watch, st.watch.stall_ms);
    watched = 1;
    if ((e = git_remote_connect(gr, GIT_DIRECTION_PUSH, &cb, NULL, NULL)) < 0) {
        rc = vcs_net_fail(e, &st, "push");
        goto out;
    }
    connected = 1;
    vcs_watch_touch(&st.watch);
    int found = remote_ref(&have, gr, wt->refname);
    if (found < 0) {
        rc = vcs_net_fail(GIT_ERROR, &st, "push");
        goto out;
    }
    if (found)
        git_oid_tostr(have_hex, sizeof(have_hex), &have);
    if (found && git_oid_equal(&have, &head))
        goto out; /* already there: a repeat after a crash, say */
    if (expected && !found) {
        farm_error_set("push to %s rejected by the lease: branch %s no longer exists on %s "
                       "(deleted since the farm pushed %.12s)",
                       name, wt->branch, url, expected);
        rc = FARM_ECONFLICT;
        goto out;
    }
    if (!expected && found) {
        farm_error_set("push to %s rejected by the lease: branch %s already exists on %s at "
                       "%.12s and the farm has not pushed it",
                       name, wt->branch, url, have_hex);
        rc = FARM_ECONFLICT;
        goto out;
    }
    if (expected && !git_oid_equal(&have, &want)) {
        farm_error_set("push to %s rejected by the lease: branch %s on %s is at %.12s, not at "
                       "%.12s which the farm last pushed (someone else pushed to it)",
                       name, wt->branch, url, have_hex, expected);
        rc = FARM_ECONFLICT;
        goto out;
    }

    /* Forced, because the lease already holds: the server compares the
     * old value it advertised above and refuses if the branch moved. */
    snprintf(spec, sizeof(spec), "+%s:%s", wt->refname, wt->refname);
    char *specp = spec;
    git_strarray specs = {&specp, 1};
    po.callbacks = cb;
    po.pb_parallelism = 1;
    if ((e = git_remote_upload(gr, &specs, &po)) < 0) {
        rc = vcs_net_fail(e, &st, "push");
        if (rc == FARM_EIO && st.rejected[0] == '\0' && git_error_last() &&
            strstr(git_error_last()->message, "rejected"))
            rc = FARM_ECONFLICT;
        goto out;
    }
    if (st.rejected[0]) {
        farm_error_set("push of %s to %s (%s) rejected by the server: %s", wt->branch, name, url,
                       st.rejected);
        rc = FARM_ECONFLICT;
        goto out;
    }
out:
    if (connected)
        git_remote_disconnect(gr);
    if (watched)
        vcs_watch_stop(&st.watch);
    git_remote_free(gr);
    git_reference_free(ref);
    git_repository_free(repo);
    return rc;
}
