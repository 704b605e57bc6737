"""test_demo_path - the README's demo path end to end, with only the
commands the README and the demo print. `farm demo` runs as ./scripts/demo
runs it (its data in farm-data under the working directory); from that
directory, while it serves, the commands it prints to carry on, which must
be the README's own, word for word: a review comment on the pull request
(the farm revises it on its branch), the merge (main fast-forwards, issue #1
closes, the session is done), a second issue (its pull request opened from
the merged main, tests passing), `farm sessions`; and the two it prints at
start, `farm logs -f` (the agent's step with its exit status and summary,
the run with its files changed) and `farm issue show`. The demo's terminal
says what became of each step.

Without the demo's config, `farm issue comment` and `farm issue new` on the
demo's repository are refused (exit 1) with the fix, and store nothing.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from test_demo import Demo, git, new_tmp  # noqa: E402

README = os.path.join(farmtest.SOURCE_DIR, "README.md")
STEPS = ("1. review the PR:", "2. merge the PR:", "3. a second issue:", "every session:")


def readme_commands():
    """The commands of the README's ```sh block that carries the demo on,
    each as its words."""
    with open(README) as f:
        text = f.read()
    at = text.index("carry on from another terminal")
    block = text[text.index("```sh\n", at) + 6:]
    block = block[:block.index("```")]
    return [shlex.split(line, comments=True) for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def printed(demo, label):
    """The command the demo printed after `farm demo: ... label`."""
    for line in list(demo.lines):
        if line.startswith("farm demo:") and label in line:
            return line.split(label, 1)[1].strip()
    raise AssertionError("the demo printed no %r:\n%s" % (label, demo.text()))


def run(cmd, cwd):
    """Run a printed command (a string, as a person pastes it)."""
    p = subprocess.run(shlex.split(cmd), cwd=cwd, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Follow:
    """A printed `farm logs -f ...` running; its output collected."""

    def __init__(self, cmd, cwd):
        self.proc = subprocess.Popen(shlex.split(cmd), cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def wait(self, pattern, timeout=120):
        rx = re.compile(pattern)
        return farmtest.wait_for(lambda: next((ln for ln in list(self.lines) if rx.search(ln)),
                                              None), timeout, "farm logs -f to show " + pattern)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(30)
        self.pump.join(10)
        return rc


def test_the_readme_demo_path():
    tmp = new_tmp()
    bare = os.path.join(tmp, "farm-data", "demo", "greeter.git")
    demo = Demo(tmp, "farm-data")
    follow = None
    try:
        demo.wait_line("farm demo:   every session:")
        farm = os.path.realpath(farmtest.FARM_BIN)
        cmds = [printed(demo, label) for label in STEPS]
        review, merge, second, sessions = cmds

        # the README's commands are the demo's, with ./build/farm for the binary
        ours = [shlex.split(c) for c in cmds]
        assert all(words[0] == farm for words in ours), cmds
        theirs = readme_commands()
        assert [w[0] for w in theirs] == ["./build/farm"] * len(STEPS), theirs
        assert [w[1:] for w in theirs] == [w[1:] for w in ours], (theirs, ours)
        assert "--config farm-data/demo.json" in review, review

        # without the demo's config: refused, with the fix, and nothing stored
        rc, out, err = run("%s issue comment 2 --data-dir farm-data 'looks good'" % farm, tmp)
        assert rc == 1 and "not a local repository" in err and "--config" in err, (rc, err)
        assert "ignored" not in err, err
        rc, out, err = run("%s issue new --data-dir farm-data --repo demo/greeter --title x" % farm,
                           tmp)
        assert rc == 1 and "demo.json" in err, (rc, err)
        rc, out, err = run(printed(demo, "the issue and its comments:"), tmp)
        assert rc == 0 and "looks good" not in out, (rc, out, err)
        assert "pull request #2 (open)" in out, out

        follow = Follow(printed(demo, "follow in a terminal:"), tmp)

        # 1. a review comment: the farm revises the pull request on its branch
        rc, out, err = run(review, tmp)
        assert rc == 0 and out.strip().isdigit(), (rc, out, err)
        assert "accepted" in err and not any(ln.startswith("{") for ln in err.splitlines()), err
        demo.wait_line("farm demo: session 1: the revision is pushed to farm/1-")
        branch = demo.line("farm demo: pull request opened: #2, branch ").split("branch ")[1]
        branch = branch.split(" ")[0]
        shown = git("show", "%s:greeter.sh" % branch, cwd=bare).stdout.decode()
        assert "prints a friendly greeting: Hello, world!" in shown, shown

        # 2. the merge: main is the branch, issue #1 is closed, the session done
        rc, out, err = run(merge, tmp)
        assert rc == 0 and "merged %s into main" % branch in out, (rc, out, err)
        demo.wait_line("farm demo: session 1 is done")
        main = git("show", "main:greeter.sh", cwd=bare).stdout.decode()
        assert 'echo "Hello, world!"' in main, main

        # 3. a second issue, worked on from the merged main: its tests pass
        rc, out, err = run(second, tmp)
        assert rc == 0 and out.strip() == "3", (rc, out, err)
        pr = demo.wait_line("farm demo: pull request opened: #4, branch farm/3-")
        assert "draft" not in pr, pr
        readme = git("show", "farm/3-say-how-to-run-the-greeter:README.md", cwd=bare)
        assert "## Usage" in readme.stdout.decode(), readme

        # every session, and the first issue as it is now
        rc, out, err = run(sessions, tmp)
        assert rc == 0, (rc, out, err)
        states = {ln.split()[0]: ln.split()[1] for ln in out.splitlines()[1:] if ln.strip()}
        assert states == {"1": "done", "2": "review"}, out
        rc, out, err = run(printed(demo, "the issue and its comments:"), tmp)
        assert rc == 0 and "state    closed" in out and "pull request #2 (merged)" in out, out

        # farm logs -f: what the agent did, in words a person reads
        agent = follow.wait(r"step +agent done \(round 1\): exit 0, ")
        assert "stand-in agent" in agent, agent
        follow.wait(r"run_finished run 1: pr, tests passed .*1 file changed \(\+1 -1\)")
        follow.wait(r"run_finished run 2: pr")
        assert follow.stop() == 0
        follow = None

        assert demo.stop() == 0, demo.text()
    except BaseException:
        if follow:
            follow.stop()
        demo.kill()
        print("\n".join(demo.lines[-60:]), file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    farmtest.run([test_the_readme_demo_path])
