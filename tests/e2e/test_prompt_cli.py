"""test_prompt_cli - `farm prompt --repo NAME --issue N` through the real
binary: it prints what an agent would get for the first run of an issue of
a local repository, in order (the farm's guidelines, the repository's own
AGENTS.md / CLAUDE.md / .github/copilot-instructions.md, the issue's title,
body and comments, the task), leaves the farm's own comments out, and gives
clear errors (exit 1 or 2) for an unknown repository, a missing issue or a
bad number, without touching the session log.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402


def git(*args, cwd=None):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com"] + list(args),
                   cwd=cwd, check=True, capture_output=True)


def make_farm(tmp):
    bare = os.path.join(tmp, "demo.git")
    work = os.path.join(tmp, "work")
    git("init", "-q", "--bare", bare)
    git("init", "-q", "-b", "main", work)
    files = {
        "hello.txt": "hello\n",
        "AGENTS.md": "AGENTS-MARKER: run make check before you finish.\n",
        "CLAUDE.md": "CLAUDE-MARKER: prefer small functions.\n",
        ".github/copilot-instructions.md": "COPILOT-MARKER: no tabs.\n",
    }
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(work, name)), exist_ok=True)
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "seed", cwd=work)
    git("push", "-q", bare, "main", cwd=work)
    repos = [{"name": "demo", "tracker": "local", "clone_url": "file://" + bare,
              "test": "make check", "trigger": {"label": "agent"}}]
    return farmtest.Farm(repos=repos, tmp=tmp)


def farm_cmd(farm, *args):
    p = subprocess.run([farmtest.FARM_BIN] + list(args) + ["--config", farm.config_path],
                       capture_output=True, env=farm.env, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def events(farm):
    with farm.db() as c:
        return c.execute("SELECT count(*) FROM event").fetchone()[0]


def test_prompt_of_an_issue():
    tmp = tempfile.mkdtemp(prefix="farm-e2e-prompt-")
    try:
        farm = make_farm(tmp)
        rc, out, err = farm_cmd(farm, "issue", "new", "--repo", "demo", "--title",
                                "Greet politely", "--body", "BODY-MARKER: say hello, please.")
        assert rc == 0, err
        number = out.strip().split()[-1].lstrip("#")
        rc, out, err = farm_cmd(farm, "issue", "comment", number, "COMMENT-MARKER: and wave.")
        assert rc == 0, err
        before = events(farm)

        rc, out, err = farm_cmd(farm, "prompt", "--repo", "demo", "--issue", number)
        assert rc == 0, "farm prompt failed: " + err
        order = ["AGENTS-MARKER", "CLAUDE-MARKER", "COPILOT-MARKER", "Greet politely",
                 "BODY-MARKER", "COMMENT-MARKER", "## Your task"]
        pos = [out.find(m) for m in order]
        for m, p in zip(order, pos):
            assert p >= 0, "%s missing from the prompt:\n%s" % (m, out)
        assert pos == sorted(pos), "prompt parts out of order: %s" % list(zip(order, pos))
        assert "make check" in out  # the test command is named in the task
        assert "farm/%s-greet-politely" % number in out  # the branch a run would use
        assert events(farm) == before, "farm prompt wrote to the session log"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_prompt_errors():
    tmp = tempfile.mkdtemp(prefix="farm-e2e-prompt-")
    try:
        farm = make_farm(tmp)
        rc, out, err = farm_cmd(farm, "prompt", "--repo", "nope", "--issue", "1")
        assert rc == 1 and "not a configured repository" in err, (rc, err)
        rc, out, err = farm_cmd(farm, "prompt", "--repo", "demo", "--issue", "99")
        assert rc == 1 and err.strip(), (rc, err)
        rc, out, err = farm_cmd(farm, "prompt", "--repo", "demo", "--issue", "x1")
        assert rc == 2 and "positive number" in err, (rc, err)
        rc, out, err = farm_cmd(farm, "prompt", "--repo", "demo")
        assert rc == 2 and "usage" in err, (rc, err)
        assert out == ""
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    farmtest.run([test_prompt_of_an_issue, test_prompt_errors])
