#!/usr/bin/env python3
"""test_signing.py - signed commits end to end: `farm serve` with
git.signing_key (an Ed25519 key made by ssh-keygen here) against the fake
GitHub, a real bare remote and the stand-in agent: the pushed commit carries
an SSH signature that `git verify-commit` accepts with an allowed-signers
file, and a key that is missing, not a key, or encrypted stops `farm serve`
at start with the key's path in the message (so no unsigned commit can
ever be made by a farm told to sign).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402


def keygen(path, passphrase=""):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "farm-bot",
                    "-f", path], check=True, capture_output=True, timeout=60)
    os.chmod(path, 0o600)


def test_pushed_commit_verifies():
    keys = tempfile.mkdtemp(prefix="farm-e2e-keys-")
    try:
        key = os.path.join(keys, "signing_key")
        keygen(key)
        with farmtest.GitHubWorld(extra={"git": {"signing_key": "file:" + key}}) as w:
            n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
            s = w.wait_session(n, lambda s: s["state"] in ("review", "failed"), what="a PR")
            assert s["state"] == "review", s
            raw = repos.git("cat-file", "commit", s["branch"], cwd=w.bare)
            assert "\ngpgsig -----BEGIN SSH SIGNATURE-----\n" in raw, raw
            allowed = os.path.join(keys, "allowed_signers")
            with open(key + ".pub") as f:
                pub = f.read()
            with open(allowed, "w") as f:
                f.write('farm-bot@users.noreply.local namespaces="git" ' + pub)
            v = subprocess.run(["git", "-c", "gpg.format=ssh", "-c",
                                "gpg.ssh.allowedSignersFile=" + allowed, "verify-commit",
                                s["branch"]], cwd=w.bare, capture_output=True, timeout=60)
            assert v.returncode == 0, v.stderr.decode()
            assert b"Good \"git\" signature" in v.stderr, v.stderr
            # the merge commit that keeps the branch mergeable is signed too
            work = os.path.join(w.tmp, "person")
            repos.git("clone", "-q", w.bare, work)
            with open(os.path.join(work, "README.md"), "w") as f:
                f.write("# demo\n\nmoved on main\n")
            repos.git("commit", "-qam", "main moves", cwd=work)
            repos.git("push", "-q", "origin", "main", cwd=work)
            base = repos.git("rev-parse", "main", cwd=w.bare).strip()
            comment = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, s["pr_number"]),
                                 {"body": "/farm update"}, token=farmtest.PERSON_PAT)
            assert comment[0] == 201, comment
            w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in ("review", "failed"),
                           what="the update")
            parents = repos.git("log", "-1", "--format=%P", s["branch"], cwd=w.bare).split()
            assert len(parents) == 2 and parents[1] == base, parents
            v = subprocess.run(["git", "-c", "gpg.format=ssh", "-c",
                                "gpg.ssh.allowedSignersFile=" + allowed, "verify-commit",
                                s["branch"]], cwd=w.bare, capture_output=True, timeout=60)
            assert v.returncode == 0, v.stderr.decode()
            # the key never reached the worktree or the sandbox's files
            with open(key) as f:
                secret = f.read().splitlines()[1]
            for root, _, files in os.walk(os.path.join(w.farm.data_dir, "work")):
                for name in files:
                    p = os.path.join(root, name)
                    if os.path.isfile(p) and not os.path.islink(p):
                        with open(p, "rb") as f:
                            assert secret.encode() not in f.read(), p
    finally:
        shutil.rmtree(keys, ignore_errors=True)


def test_bad_key_refused_at_start():
    tmp = tempfile.mkdtemp(prefix="farm-e2e-badkey-")
    try:
        notakey = os.path.join(tmp, "notakey")
        with open(notakey, "w") as f:
            f.write("hello\n")
        encrypted = os.path.join(tmp, "encrypted")
        keygen(encrypted, passphrase="a passphrase")
        cases = [(os.path.join(tmp, "missing"), "cannot read file"),
                 (notakey, "not an OpenSSH private key"),
                 (encrypted, "passphrase")]
        for path, why in cases:
            cfg = os.path.join(tmp, "farm.json")
            with open(cfg, "w") as f:
                json.dump({"data_dir": os.path.join(tmp, "data"), "listen": "127.0.0.1:0",
                           "git": {"signing_key": "file:" + path}}, f)
            p = subprocess.run([os.environ["FARM_BIN"], "serve", "--config", cfg],
                               capture_output=True, timeout=30)
            err = p.stderr.decode()
            assert p.returncode != 0, (path, err)
            assert "git.signing_key" in err and path in err and why in err, (path, err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    farmtest.run([test_pushed_commit_verifies, test_bad_key_refused_at_start])
