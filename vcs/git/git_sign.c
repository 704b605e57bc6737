/*
 * git_sign.c - writing one commit object, signed when the farm has a
 * signing key.
 *
 * With a key, the commit is built as text (git_commit_create_buffer()), the
 * text is signed in git's SSH format (base/sshsig.h, namespace "git") and
 * the commit is written with the signature in its "gpgsig" header, the
 * header `git verify-commit` reads with gpg.format=ssh. A key that cannot
 * be read or a signature that fails is an error: the farm never falls back
 * to an unsigned commit when it was told to sign.
 */
#include "git_internal.h"
#include "base/error.h"
#include "base/sshsig.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void vcs_error_prefix(const char *fmt, ...)
{
    char prefix[512], last[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    snprintf(last, sizeof(last), "%s", farm_error_last());
    farm_error_set("%s%s", prefix, last);
}

int vcs_commit_write(git_oid *out, git_repository *repo, const git_signature *who, const char *msg,
                     const git_tree *tree, size_t nparents, const git_commit **parents,
                     const char *signing_key)
{
    git_buf text = GIT_BUF_INIT;
    sshsig_key *key = NULL;
    char *sig = NULL;
    int rc = 0, e;

    assert(out && repo && who && msg && tree);
    if (!signing_key) {
        if ((e = git_commit_create(out, repo, NULL, who, who, "UTF-8", msg, tree, nparents,
                                   parents)) < 0)
            return vcs_git_fail(e, FARM_EIO, NULL, "commit failed");
        return 0;
    }
    if ((rc = sshsig_key_parse(&key, signing_key))) {
        vcs_error_prefix("commit not made: git.signing_key: ");
        return rc;
    }
    if ((e = git_commit_create_buffer(&text, repo, who, who, "UTF-8", msg, tree, nparents,
                                      parents)) < 0) {
        rc = vcs_git_fail(e, FARM_EIO, NULL, "commit failed");
        goto out;
    }
    if ((rc = sshsig_sign(&sig, key, "git", text.ptr, text.size))) {
        vcs_error_prefix("commit not made: signing it failed: ");
        goto out;
    }
    if ((e = git_commit_create_with_signature(out, repo, text.ptr, sig, "gpgsig")) < 0)
        rc = vcs_git_fail(e, FARM_EIO, NULL, "signed commit failed");
out:
    free(sig);
    git_buf_dispose(&text);
    sshsig_key_free(key);
    return rc;
}
