#!/usr/bin/env python3
"""test_agent_program.py - the agent's program inside the sandbox, and the
run's HOME (docs/sandbox.md, docs/agents.md).

An agent installed outside /usr and /opt (an npm prefix under $HOME,
~/.local/bin) used to be found on the farm's PATH but not inside the sandbox:
exit 127. Here the `command` preset's program is a script in a temporary
folder, reached through a symbolic link in another one (as ~/.local/bin/x ->
~/.local/share/x/...): the farm follows the link and binds the real file,
read-only, at its own path. Without that bind the run fails with exit 127.

Cases:
- the run works: the script writes a file (the PR carries it), sees HOME =
  /home/sandbox, writable, and finds there on round 2 what it left on round 1
  (the HOME lasts the run); the run's HOME is removed with the run directory;
- `farm serve` refuses to start when the program is not there inside the
  sandbox (it needs a file beside it that nothing binds), naming the path and
  what to set; `farm doctor` says the same and exits 1; both find a program
  that is not installed at all;
- with repos[].agents, each preset a repository allows is checked, each named:
  a second repository that also allows codex, whose CLI is not there, stops
  `farm serve` and makes `farm doctor` say "agent program (codex) MISSING";
  once a codex is on the farm's PATH both say ok.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")

AGENT = r"""#!/bin/sh
# a coding agent installed outside the system folders
set -e
echo "HOME=$HOME"
echo "round $FARM_ROUND" >> "$HOME/rounds.log"
echo "ROUNDS $(wc -l < "$HOME/rounds.log")"
printf 'written by an agent outside /usr\n' > AGENT.txt
echo "Wrote AGENT.txt" > "$FARM_SUMMARY_FILE"
"""


def make_agent(tmp):
    """The script in <tmp>/pkg/agent.sh, reached as <tmp>/bin/my-agent."""
    for d in ("pkg", "bin"):
        os.makedirs(os.path.join(tmp, d))
    real = os.path.join(tmp, "pkg", "agent.sh")
    with open(real, "w") as f:
        f.write(AGENT)
    os.chmod(real, 0o755)
    link = os.path.join(tmp, "bin", "my-agent")
    os.symlink(real, link)
    os.chmod(tmp, 0o755)
    return link


def output_lines(w, sid):
    return [b.get("line", "") for _, _, _, b in farmtest.session_events(w.farm, sid, "output")]


def test_program_outside_usr_runs():
    tmp = tempfile.mkdtemp(prefix="farm-agent-prog-")
    try:
        link = make_agent(tmp)
        # the repository's test fails on the first round, passes on the second:
        # a fix round, the same HOME
        test = "test -f .round2 || { touch .round2; exit 1; }"
        with farmtest.GitHubWorld(repo_extra={"test": test},
                                  extra={"agent": {"command": [link]}}) as w:
            n = w.open_issue("Write AGENT.txt", "Please.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
            lines = output_lines(w, s["id"])
            assert s["state"] == "review", (s, lines[-20:])
            got = repos.git("show", "%s:AGENT.txt" % s["branch"], cwd=w.bare)
            assert got == "written by an agent outside /usr\n", got
            assert "HOME=/home/sandbox" in lines, lines
            rounds = [x for x in lines if x.startswith("ROUNDS ")]
            assert rounds == ["ROUNDS 1", "ROUNDS 2"], lines  # HOME kept across rounds
            # the run's directory, HOME with it, is gone once the run ended
            farmtest.wait_for(lambda: not glob.glob(os.path.join(w.farm.data_dir, "runs", "*",
                                                                 "home")),
                              10, "the run's HOME to be removed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start_fails(farm):
    """Start farm serve expecting it to refuse; its stderr."""
    proc = subprocess.run([farmtest.FARM_BIN, "serve", "--config", farm.config_path],
                          env=farm.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc
    return proc.stderr


def doctor(farm):
    proc = subprocess.run([farmtest.FARM_BIN, "doctor", "--config", farm.config_path],
                          env=farm.env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def test_serve_and_doctor_refuse_a_missing_program():
    tmp = tempfile.mkdtemp(prefix="farm-agent-prog-")
    try:
        # runs on this host, not in the sandbox: it needs a file beside it,
        # which is not bound (only the program is)
        os.makedirs(os.path.join(tmp, "pkg"))
        real = os.path.join(tmp, "pkg", "claude")
        with open(real, "w") as f:
            f.write('#!/bin/sh\n. "$(dirname "$0")/lib.sh"\necho "1.0 (fake)"\n')
        with open(os.path.join(tmp, "pkg", "lib.sh"), "w") as f:
            f.write("true\n")
        os.chmod(real, 0o755)
        os.chmod(tmp, 0o755)
        assert subprocess.run([real, "--version"], capture_output=True).returncode == 0

        farm = farmtest.Farm(extra={"agent": {"preset": "claude", "path": real}})
        try:
            err = start_fails(farm)
            assert "cannot run in the sandbox" in err, err
            assert real in err and "exits" in err and "agent.path" in err, err
            rc, out = doctor(farm)
            assert rc == 1 and "agent program" in out and "MISSING" in out, out
            assert real in out, out

            # a working one: doctor says ok with the version it printed
            with open(real, "w") as f:
                f.write('#!/bin/sh\necho "1.0 (fake)"\n')
            rc, out = doctor(farm)
            assert rc == 0 and "1.0 (fake)" in out, out
        finally:
            shutil.rmtree(farm.tmp, ignore_errors=True)

        # not installed at all
        farm = farmtest.Farm(extra={"agent": {"preset": "codex",
                                              "path": os.path.join(tmp, "nope", "codex")}})
        try:
            err = start_fails(farm)
            assert "agent.path is %s" % os.path.join(tmp, "nope", "codex") in err, err
        finally:
            shutil.rmtree(farm.tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_allowed_preset_is_checked():
    tmp = tempfile.mkdtemp(prefix="farm-agent-prog-")
    try:
        for d in ("pkg", "bin"):
            os.makedirs(os.path.join(tmp, d))
        claude = os.path.join(tmp, "pkg", "claude")
        with open(claude, "w") as f:
            f.write('#!/bin/sh\necho "2.0 (fake claude)"\n')
        os.chmod(claude, 0o755)
        os.chmod(tmp, 0o755)
        repo = {"tracker": "github", "trigger": {"label": "agent"}}
        farm = farmtest.Farm(
            repos=[dict(repo, name="octo/app", clone_url="https://github.com/octo/app.git"),
                   dict(repo, name="octo/lib", clone_url="https://github.com/octo/lib.git",
                        agents=["claude", "codex"])],
            extra={"agent": {"preset": "claude", "path": claude}})
        bindir = os.path.join(tmp, "bin")
        farm.env["PATH"] = bindir + ":/usr/bin:/bin"  # no codex anywhere on it
        try:
            err = start_fails(farm)
            assert "agent preset codex cannot run in the sandbox" in err, err
            assert "agent preset claude cannot" not in err, err  # claude passed
            rc, out = doctor(farm)
            assert rc == 1, out
            lines = [x.strip() for x in out.splitlines() if x.strip().startswith("agent program")]
            assert len(lines) == 2, lines  # claude once, however often it is allowed
            assert re.match(r"agent program \(claude\)\s+ok: ", lines[0]) and "2.0 (fake claude)" in lines[0], lines
            assert re.match(r"agent program \(codex\)\s+MISSING: ", lines[1]), lines
            assert "take it out of repos[].agents" in lines[1], lines

            # a codex on the farm's PATH: both are there
            codex = os.path.join(bindir, "codex")
            with open(codex, "w") as f:
                f.write('#!/bin/sh\necho "codex-cli 0.1 (fake)"\n')
            os.chmod(codex, 0o755)
            rc, out = doctor(farm)
            lines = [x.strip() for x in out.splitlines() if x.strip().startswith("agent program")]
            assert rc == 0, out
            assert re.match(r"agent program \(codex\)\s+ok: ", lines[1]) and "codex-cli 0.1 (fake)" in lines[1], lines
        finally:
            shutil.rmtree(farm.tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    farmtest.run([test_program_outside_usr_runs, test_serve_and_doctor_refuse_a_missing_program,
                  test_every_allowed_preset_is_checked])
