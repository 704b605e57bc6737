"""test_demo - the README's first command, `farm demo`, through the real
binary: it generates the sample repository, serves, files the sample issue
on the local tracker, says which agent runs and where to watch, and prints
the pull request line once the session reaches review (the stand-in agent
in the real sandbox). The PR branch in the generated bare repository holds
the fixed greeting and its test passes there (and fails on main); the local
issue has the farm's comments and the PR record; SIGTERM stops it with
status 0. A second run on the same data directory files no second issue. A
data directory the sandbox cannot reach is refused before anything is
filed, with a message naming the directory (as root: an ordinary user's
sandbox keeps its uid).

Every command the demo prints is one that works where it was started: the
binary by the path it was run by (relative to the working directory when
under it), the demo's own config (DATA_DIR/demo.json) with --config, also
with --data-dir given, in the last hint too.
"""
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402

DEADLINE = 240.0  # the whole pipeline (clone, sandbox, tests, push) under sanitizers too


class Demo:
    """One `farm demo` child process; its stderr lines collected by a thread."""

    def __init__(self, tmp, data_dir, extra=None):
        self.env = dict(os.environ)
        self.env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "lsan.supp"))
        self.lines = []
        self.log = open(os.path.join(tmp, "demo-%d.log" % len(os.listdir(tmp))), "wb")
        self.proc = subprocess.Popen([farmtest.FARM_BIN, "demo", "--listen", "127.0.0.1:0",
                                      "--data-dir", data_dir] + list(extra or []),
                                     cwd=tmp, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=self.env)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        for raw in self.proc.stderr:
            self.log.write(raw)
            self.log.flush()
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def text(self):
        return "\n".join(line for line in list(self.lines) if not line.startswith("{"))

    def line(self, prefix):
        """The first human line starting with prefix, or None."""
        for line in list(self.lines):
            if line.startswith(prefix):
                return line
        return None

    def wait_line(self, prefix, timeout=DEADLINE):
        def seen():
            if self.line(prefix):
                return True
            if self.line("farm demo: the session failed") or self.proc.poll() is not None:
                raise AssertionError("farm demo stopped or failed before %r:\n%s"
                                     % (prefix, "\n".join(self.lines[-40:])))
            return False
        farmtest.wait_for(seen, timeout, prefix)
        return self.line(prefix)

    def address(self):
        return self.wait_line("farm: listening on http://", 30).rsplit("/", 1)[1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        self.pump.join(10)
        self.log.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.pump.join(10)
        self.log.close()


def get(address, path):
    host, port = address.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def issue_json(data_dir, *args):
    p = subprocess.run([farmtest.FARM_BIN, "issue"] + list(args) + ["--json", "--data-dir",
                                                                     data_dir],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def git(*args, cwd=None, check=True):
    p = subprocess.run(["git"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("git %s: %s" % (args, p.stderr.decode()))
    return p


def sh_test(bare, branch, where):
    """Check out branch of the bare repository into where; run `sh test.sh`
    there; (exit status, output)."""
    git("clone", "-q", "--branch", branch, bare, where)
    p = subprocess.run(["sh", "test.sh"], cwd=where, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def new_tmp():
    tmp = tempfile.mkdtemp(prefix="farm-e2e-demo-")
    os.chmod(tmp, 0o711)  # the sandbox's uid walks through to the worktrees
    return tmp


def test_demo_opens_a_pull_request_and_a_second_run_files_no_issue():
    tmp = new_tmp()
    data = os.path.join(tmp, "data")
    bare = os.path.join(data, "demo", "greeter.git")
    demo = Demo(tmp, data)
    try:
        address = demo.address()
        assert not address.endswith(":0"), address
        agent = demo.wait_line("farm demo: agent: ", 30)
        assert agent == ("farm demo: agent: stand-in (no real agent CLI is installed and "
                         "configured; see README: Agents)"), agent
        page = demo.wait_line("farm demo: watch the session:", 30)
        assert page.endswith("http://%s/sessions/1" % address), page
        assert demo.line("farm demo: filed issue #1 "), demo.text()
        assert demo.line("farm demo: sample repository file://%s (generated" % bare), demo.text()
        farm = os.path.realpath(farmtest.FARM_BIN)  # not under tmp: absolute
        cfg = "data/demo.json"  # under the working directory: relative
        assert demo.line("farm demo: the config: %s " % cfg), demo.text()
        shown = demo.line("farm demo: the issue and its comments: ")
        assert shown.endswith("%s issue show 1 --config %s" % (farm, cfg)), shown
        follow = demo.line("farm demo: follow in a terminal: ")
        assert follow.endswith("%s logs -f --config %s 1" % (farm, cfg)), follow
        with open(os.path.join(data, "demo.json")) as f:
            written = json.load(f)
        assert written["data_dir"] == os.path.realpath(data), written
        assert written["listen"] == address, written  # port 0: the port it got

        pr = demo.wait_line("farm demo: pull request opened: ")
        assert pr.startswith("farm demo: pull request opened: #2, branch farm/1-"), pr
        branch = pr.split("branch ", 1)[1].split(" ")[0]
        # the last hint keeps what the store is found by
        assert pr.endswith("(%s issue show 2 --config %s)" % (farm, cfg)), pr
        p = subprocess.run(shlex.split(pr[pr.index("(") + 1:-1]), cwd=tmp, capture_output=True,
                           timeout=60)
        assert p.returncode == 0 and branch in p.stdout.decode(), p

        # the session is in review, and its page (the URL printed) is served
        status, body = get(address, "/sessions/1")
        assert status == 200, (status, body[:200])
        rows = farmtest.Store(data).execute(
            "SELECT state, branch FROM session WHERE id = 1").fetchall()
        assert rows == [("review", branch)], rows

        # the branch holds the fix and its test passes there; main still fails
        show = git("show", "%s:greeter.sh" % branch, cwd=bare).stdout.decode()
        assert 'echo "Hello, world!"' in show, show
        rc, out = sh_test(bare, branch, os.path.join(tmp, "on-branch"))
        assert rc == 0 and "ok: greeter.sh prints" in out, (rc, out)
        rc, out = sh_test(bare, "main", os.path.join(tmp, "on-main"))
        assert rc == 1 and "Hello, wrold!" in out, (rc, out)

        # the local issue: the farm's comments and the pull request record
        j = issue_json(data, "show", "1")
        assert j["title"] == "Fix the typo in the greeting" and j["labels"] == ["agent"], j
        assert "```diff" in j["body"] and "sh test.sh" in j["body"], j["body"]
        bot = [c for c in j["comments"] if c["author"] == "farm-bot"]
        assert bot, j["comments"]
        prs = j["pull_requests"]
        assert len(prs) == 1 and prs[0]["head_branch"] == branch, prs
        assert prs[0]["base_branch"] == "main" and prs[0]["state"] == "open", prs

        assert demo.stop() == 0, demo.text()
    except BaseException:
        demo.kill()
        print("\n".join(demo.lines[-60:]), file=sys.stderr)
        raise

    # a second run on the same data directory files no second issue
    again = Demo(tmp, data)
    try:
        again.wait_line("farm demo: the demo issue #1 is already filed", 60)
        assert again.line("farm demo: sample repository file://%s (as before)" % bare), \
            again.text()
        page = again.wait_line("farm demo: watch the session:", 30)
        assert page.endswith("/sessions/1"), page
        again.wait_line("farm demo: pull request opened: #2, branch %s " % branch, 60)
        issues = issue_json(data, "list")["issues"]
        assert [(i["number"], i["is_pr"]) for i in issues] == [(2, True), (1, False)], issues
        assert again.stop() == 0, again.text()
    except BaseException:
        again.kill()
        print("\n".join(again.lines[-60:]), file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def test_unreachable_data_dir_is_refused_before_filing():
    if os.geteuid() != 0:
        print("# skipped: not root (the sandbox keeps an ordinary user's uid)")
        return
    tmp = new_tmp()
    try:
        closed = os.path.join(tmp, "closed")
        os.mkdir(closed, 0o700)
        os.chmod(closed, 0o700)
        data = os.path.join(closed, "data")
        p = subprocess.run([farmtest.FARM_BIN, "demo", "--listen", "127.0.0.1:0",
                            "--data-dir", data], cwd=tmp, capture_output=True, timeout=60)
        err = p.stderr.decode()
        assert p.returncode == 1, (p.returncode, err)
        assert "%s (mode 700) is not searchable by other users" % closed in err, err
        assert "chmod o+x %s" % closed in err and "--data-dir" in err, err
        assert not os.path.exists(os.path.join(data, "farm.db")), "nothing may be filed"
        assert not os.path.exists(os.path.join(data, "demo")), "no sample repository either"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_hints_name_the_binary_as_it_was_run():
    """Run as ./DIR/farm from the binary's grandparent directory: the hints
    say ./DIR/farm, and the config by its absolute path (not under the
    working directory); with --data-dir, every hint keeps the store."""
    binary = os.path.abspath(farmtest.FARM_BIN)
    if not os.path.isabs(farmtest.FARM_BIN) and os.sep not in farmtest.FARM_BIN:
        print("# skipped: FARM_BIN is found through PATH")
        return
    where = os.path.dirname(os.path.dirname(binary))
    typed = "./" + os.path.relpath(binary, where)
    tmp = new_tmp()
    data = os.path.join(tmp, "data")
    env = dict(os.environ)
    env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "lsan.supp"))
    proc = subprocess.Popen([typed, "demo", "--listen", "127.0.0.1:0", "--data-dir", data],
                            cwd=where, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    lines = []
    try:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if line.startswith("farm demo: the issue and its comments: ") or \
                    proc.poll() is not None:
                break
        cfg = os.path.join(os.path.realpath(data), "demo.json")
        if cfg.startswith(os.path.realpath(where) + os.sep):  # under the working directory
            cfg = os.path.relpath(cfg, os.path.realpath(where))
        text = "\n".join(lines)
        assert ("farm demo: follow in a terminal: %s logs -f --config %s 1" % (typed, cfg)) \
            in text, text
        assert lines[-1] == ("farm demo: the issue and its comments: %s issue show 1 --config %s"
                             % (typed, cfg)), text
        # and it works, typed where the demo was started
        p = subprocess.run(shlex.split(lines[-1].split(": ", 2)[2]), cwd=where,
                           capture_output=True, timeout=60)
        assert p.returncode == 0 and b"Fix the typo in the greeting" in p.stdout, p
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def test_bad_arguments():
    p = subprocess.run([farmtest.FARM_BIN, "demo", "--frobnicate"], capture_output=True,
                       timeout=60)
    assert p.returncode == 2 and "usage: " in p.stderr.decode(), p
    p = subprocess.run([farmtest.FARM_BIN, "demo", "extra"], capture_output=True, timeout=60)
    assert p.returncode == 2, p


if __name__ == "__main__":
    farmtest.run([test_demo_opens_a_pull_request_and_a_second_run_files_no_issue,
                  test_unreachable_data_dir_is_refused_before_filing,
                  test_hints_name_the_binary_as_it_was_run, test_bad_arguments])
