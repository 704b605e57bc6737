"""repos - real git remotes for the end-to-end tests: a bare repository over
file:// holding a small project whose test command is `sh test.sh`, and the
patches an issue body carries for the stand-in agent.

    bare = repos.make_remote(tmp)               # file://<tmp>/origin.git, branch main
    body = repos.issue_body(repos.FIX)          # one ```diff block the agent applies
    repos.branch_file(bare, "farm/1-x", "greeting.txt")  # the file on a pushed branch

The project: greeting.txt says "hello"; test.sh passes when it says
"hello, world". Python 3 standard library only.
"""
import os
import subprocess

GREETING = "hello\n"

TEST_SH = """#!/bin/sh
# passes when the greeting is complete
if [ "$(cat greeting.txt)" = "hello, world" ]; then
  echo "greeting ok"
  exit 0
fi
echo "greeting is wrong: $(cat greeting.txt)"
exit 1
"""


def git(*args, cwd=None, check=True):
    """Run git with a fixed identity; returns its stdout (text)."""
    p = subprocess.run(["git", "-c", "user.name=tester", "-c", "user.email=tester@example.com",
                        "-c", "init.defaultBranch=main"] + list(args),
                       cwd=cwd, capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("git %s failed: %s" % (" ".join(args), p.stderr.decode()))
    return p.stdout.decode()


def make_remote(tmp, name="origin"):
    """A bare repository <tmp>/<name>.git with one commit on main (the
    project above). The directories are left reachable (0711/0755) so a
    sandbox running as another uid can read what the farm checks out.
    Returns the bare repository's path."""
    os.chmod(tmp, 0o711)
    bare = os.path.join(tmp, name + ".git")
    seed = os.path.join(tmp, name + "-seed")
    git("init", "-q", "--bare", "-b", "main", bare)
    git("init", "-q", "-b", "main", seed)
    with open(os.path.join(seed, "greeting.txt"), "w") as f:
        f.write(GREETING)
    with open(os.path.join(seed, "test.sh"), "w") as f:
        f.write(TEST_SH)
    with open(os.path.join(seed, "README.md"), "w") as f:
        f.write("# demo\n\nA greeting and its test (`sh test.sh`).\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", bare, "main", cwd=seed)
    return bare


def patch(old, new, path="greeting.txt"):
    """A unified diff changing the one-line file path from old to new."""
    return ("--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-{o}\n+{n}\n").format(p=path, o=old, n=new)


# The greeting fixed in one step; half-fixed (tests still fail); and the rest.
FIX = patch("hello", "hello, world")
HALF = patch("hello", "hello,")
REST = patch("hello,", "hello, world")


def issue_body(*patches, text="Please fix the greeting.", standin=None):
    """An issue body: text, then each patch in a ```diff block (round N of
    the stand-in agent applies patch N), then an optional ```standin block
    (lines such as "sleep 5")."""
    parts = [text]
    for p in patches:
        parts.append("```diff\n" + p + "```")
    if standin:
        parts.append("```standin\n" + standin.rstrip("\n") + "\n```")
    return "\n\n".join(parts) + "\n"


def branches(bare):
    """The branch names in a bare repository."""
    out = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=bare)
    return [line for line in out.splitlines() if line]


def branch_file(bare, branch, path):
    """The contents of path at the tip of branch, or None when absent."""
    p = subprocess.run(["git", "show", "%s:%s" % (branch, path)], cwd=bare,
                       capture_output=True, timeout=60)
    return p.stdout.decode() if p.returncode == 0 else None


def commit_count(bare, base, branch):
    """Commits on branch that are not on base."""
    return int(git("rev-list", "--count", "%s..%s" % (base, branch), cwd=bare).strip())
