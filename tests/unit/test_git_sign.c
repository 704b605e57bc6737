/*
 * test_git_sign.c - signed commits: keys made by ssh-keygen in the test,
 * commits signed by vcs/git with base/sshsig, checked by the real
 * `git verify-commit` (gpg.format=ssh, an allowed-signers file); a key that
 * cannot sign never yields an unsigned commit; git.signing_key in the
 * config refused at load with where the key was to be found.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/sshsig.h"
#include "farm/config/config.h"
#include "test_git_helpers.h"

typedef struct fx {
    char *dir;
    char data[PATH_MAX];
    char url[PATH_MAX + 8];
    vcs_mirror *m;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char home[PATH_MAX];
    vcs_remote r = VCS_REMOTE_INIT;

    if (!f || !(f->dir = th_tmpdir()))
        return -1;
    snprintf(home, sizeof(home), "%s/home", f->dir);
    mkdir(home, 0700);
    th_env_setup(home);
    if (th_remote_make(f->dir, "app") != 0)
        return -1;
    snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
    snprintf(f->url, sizeof(f->url), "file://%s/app.git", f->dir);
    r.url = f->url;
    r.name = "octo/app";
    if (vcs_mirror_open(&f->m, f->data, "github/octo/app") != 0 || vcs_mirror_fetch(f->m, &r))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    vcs_mirror_free(f->m);
    vcs_tree_remove(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A key made by ssh-keygen at <dir>/<name> (passphrase "" for none); its
 * private text (heap). */
static char *keygen(fx *f, const char *name, const char *type, const char *passphrase)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    int rc = th_run(
        NULL, 0, f->dir,
        TH_ARGV("ssh-keygen", "-q", "-t", type, "-N", passphrase, "-C", "farm-test", "-f", path));
    assert_int_equal(rc, 0);
    char *text = th_read(path);
    assert_non_null(text);
    return text;
}

/* An allowed-signers file naming the key at <dir>/<name>.pub for the bot. */
static void allowed_signers(fx *f, const char *name, char out[PATH_MAX])
{
    char pub[PATH_MAX], line[16384];
    snprintf(pub, sizeof(pub), "%s/%s.pub", f->dir, name);
    char *text = th_read(pub);
    assert_non_null(text);
    snprintf(line, sizeof(line), "farm-bot@example.com namespaces=\"git\" %s", text);
    free(text);
    snprintf(out, PATH_MAX, "%s/allowed-%s", f->dir, name);
    th_write(out, line);
}

static vcs_worktree *wt_make(fx *f, const char *name, const char *branch)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/wt/%s", f->dir, name);
    worktree_opts o = WORKTREE_OPTS_INIT;
    o.path = path;
    o.branch = branch;
    o.base = "main";
    vcs_worktree *wt = NULL;
    assert_int_equal(vcs_worktree_create(&wt, f->m, &o), 0);
    return wt;
}

static int commit_with(worktree_commit_result *res, vcs_worktree *wt, const char *key,
                       const char *text)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/README.md", vcs_worktree_path(wt));
    th_write(p, text);
    worktree_commit_opts o = WORKTREE_COMMIT_OPTS_INIT;
    o.message = "Sign me\n";
    o.author_name = "farm-bot";
    o.author_email = "farm-bot@example.com";
    o.signing_key = key;
    return vcs_worktree_commit(res, wt, &o);
}

static int verify(const char *worktree, const char *allowed)
{
    char opt[PATH_MAX + 64];
    snprintf(opt, sizeof(opt), "gpg.ssh.allowedSignersFile=%s", allowed);
    return th_run(NULL, 0, worktree,
                  TH_ARGV("git", "-c", "gpg.format=ssh", "-c", opt, "verify-commit", "HEAD"));
}

static void signed_commit_verifies(fx *f, const char *type)
{
    char *key = keygen(f, type, type, "");
    char allowed[PATH_MAX], out[65536];
    vcs_worktree *wt = wt_make(f, type, "farm/1-sign");
    worktree_commit_result res;

    if (commit_with(&res, wt, key, "# signed\n") != 0)
        fail_msg("commit: %s", farm_error_last());
    assert_int_equal(res.empty, 0);
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "cat-file", "commit", "HEAD"), 0);
    assert_non_null(strstr(out, "\ngpgsig -----BEGIN SSH SIGNATURE-----\n"));
    allowed_signers(f, type, allowed);
    assert_int_equal(verify(vcs_worktree_path(wt), allowed), 0);

    /* the check can fail: another key is not accepted */
    free(keygen(f, "other", "ed25519", ""));
    allowed_signers(f, "other", allowed);
    assert_int_not_equal(verify(vcs_worktree_path(wt), allowed), 0);
    vcs_worktree_free(wt);
    free(key);
}

static void signs_with_ed25519(void **state)
{
    signed_commit_verifies(*state, "ed25519");
}

static void signs_with_rsa(void **state)
{
    signed_commit_verifies(*state, "rsa");
}

/* The key never makes an unsigned commit: a broken or encrypted key fails
 * the commit, and nothing moves. */
static void broken_key_commits_nothing(void **state)
{
    fx *f = *state;
    vcs_worktree *wt = wt_make(f, "broken", "farm/2-broken");
    char head[VCS_OID_HEXSZ], out[256];
    worktree_commit_result res;
    const char *garbage = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                          "-----END OPENSSH PRIVATE KEY-----\n";

    memcpy(head, vcs_worktree_head(wt), sizeof(head));
    assert_int_equal(commit_with(&res, wt, garbage, "# never\n"), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "signing_key"));
    assert_string_equal(vcs_worktree_head(wt), head);
    assert_int_equal(
        TH_GIT_OUT(out, sizeof(out), vcs_worktree_path(wt), "rev-parse", "farm/2-broken"), 0);
    th_chomp(out);
    assert_string_equal(out, head);

    char *enc = keygen(f, "enc", "ed25519", "a passphrase");
    sshsig_key *k = NULL;
    assert_int_equal(sshsig_key_parse(&k, enc), FARM_EINVALID);
    assert_null(k);
    assert_non_null(strstr(farm_error_last(), "passphrase"));
    assert_int_equal(commit_with(&res, wt, enc, "# never\n"), FARM_EINVALID);
    assert_string_equal(vcs_worktree_head(wt), head);
    free(enc);
    vcs_worktree_free(wt);
}

/* git.signing_key: read and parsed at load; a missing or bad key is
 * refused with its path. */
static void config_refuses_bad_key(void **state)
{
    fx *f = *state;
    char cfgpath[PATH_MAX], text[2 * PATH_MAX], keypath[PATH_MAX];
    config *c = NULL;
    char *errors = NULL;

    snprintf(cfgpath, sizeof(cfgpath), "%s/farm.json", f->dir);
    snprintf(text, sizeof(text), "{\"git\": {\"signing_key\": \"file:%s/nokey\"}}", f->dir);
    th_write(cfgpath, text);
    assert_int_equal(config_load(&c, cfgpath, &errors), FARM_EINVALID);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "git.signing_key"));
    snprintf(keypath, sizeof(keypath), "%s/nokey", f->dir);
    assert_non_null(strstr(errors, keypath));
    free(errors);
    errors = NULL;

    snprintf(keypath, sizeof(keypath), "%s/notakey", f->dir);
    th_write(keypath, "hello\n");
    snprintf(text, sizeof(text), "{\"git\": {\"signing_key\": \"file:%s\"}}", keypath);
    th_write(cfgpath, text);
    assert_int_equal(config_load(&c, cfgpath, &errors), FARM_EINVALID);
    assert_non_null(strstr(errors, keypath));
    assert_non_null(strstr(errors, "OpenSSH private key"));
    free(errors);
    errors = NULL;

    free(keygen(f, "good", "ed25519", ""));
    snprintf(text, sizeof(text), "{\"git\": {\"signing_key\": \"file:%s/good\"}}", f->dir);
    th_write(cfgpath, text);
    if (config_load(&c, cfgpath, &errors) != 0)
        fail_msg("config_load: %s", errors ? errors : farm_error_last());
    assert_non_null(c->git.signing_key);
    assert_non_null(strstr(c->git.signing_key, "OPENSSH PRIVATE KEY"));
    config_free(c);
}

int main(void)
{
    vcs_git_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(signs_with_ed25519, setup, teardown),
        cmocka_unit_test_setup_teardown(signs_with_rsa, setup, teardown),
        cmocka_unit_test_setup_teardown(broken_key_commits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(config_refuses_bad_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
