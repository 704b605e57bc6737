#!/usr/bin/env python3
"""test_setup_cache.py - the setup command cached between runs and its
secrets kept from the agent, end to end: `farm serve` against the fake
GitHub, a real bare remote and an agent command in the real sandbox.

The repository's setup (setup.sh) "installs" node_modules/dep (ignored by
git) and a file in HOME, prints SETUP-RAN, the SHA-256 of its secret
(repos[].setup_env SETUP_TOKEN from "env:") and what a probe (probe.py)
finds of the secret, and leaves a process running in the background with
the secret in its environment.

Cases: the first issue runs setup (a "setup" event with mode "ran"), and the
secret reached setup (its hash) and the probe found it there; setup echoing
it leaves "*"s in the session log, and the value is in no event and not in
the farm's log; the agent's
probe searches its environment, HOME, /tmp, the worktree and every
/proc/*/environ and cmdline, and finds nothing, while it does find what setup
installed (restored); no process on the host holds the secret but the farm
itself; the second issue restores setup (mode "restored", same key, no
SETUP-RAN line: the log's counter of runs of setup stays at one; the
sandbox lets setup write nowhere outside the worktree and HOME, so the
session log is where the count is kept); a changed
lock file runs setup again (a new key). `farm logs` says it in words.
"""
import hashlib
import json
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")

SETUP_SH = """#!/bin/sh
set -e
echo SETUP-RAN
echo "the token is $SETUP_TOKEN"
python3 probe.py setup
printf 'SETUP-TOKEN-SHA %s\\n' "$(printf %s "$SETUP_TOKEN" | sha256sum | cut -d' ' -f1)"
mkdir -p node_modules/dep "$HOME/.cache/dep"
echo 'module.exports = 1' > node_modules/dep/index.js
echo blob > "$HOME/.cache/dep/blob"
# a process of setup that would outlive it if the sandbox were not torn down
sleep 300 &
"""

# The probe gets the needle reversed, so neither this file nor its own
# command line holds it; it prints where it found it, never the value.
PROBE_PY = r"""import os, sys
needle = %r[::-1].encode()
who = sys.argv[1]
found = []
if any(needle in ("%%s=%%s" %% kv).encode() for kv in os.environ.items()):
    found.append("env")
me = str(os.getpid())
for pid in os.listdir("/proc"):
    if not pid.isdigit() or pid == me:
        continue
    for what in ("environ", "cmdline"):
        try:
            with open("/proc/%%s/%%s" %% (pid, what), "rb") as f:
                if needle in f.read():
                    found.append("/proc/%%s/%%s" %% (pid, what))
        except OSError:
            pass
files = 0
for top in (os.environ.get("HOME", "/nonexistent"), "/tmp", os.getcwd()):
    for d, subs, names in os.walk(top):
        if ".git" in subs and d == os.getcwd():
            subs.remove(".git")
        for n in names:
            p = os.path.join(d, n)
            try:
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                with open(p, "rb") as f:
                    files += 1
                    if needle in f.read():
                        found.append(p)
            except OSError:
                pass
deps = os.path.isfile("node_modules/dep/index.js") and os.path.isfile(
    os.path.join(os.environ.get("HOME", "/nonexistent"), ".cache/dep/blob"))
print("PROBE %%s files=%%d deps=%%s found=%%s" %% (who, files, "yes" if deps else "no",
                                             ",".join(found) or "nothing"))
"""


def push_files(w, files, message):
    """Commit files (name -> text) on main of the world's remote."""
    seed = os.path.join(w.tmp, "origin-seed")
    for name, text in files.items():
        with open(os.path.join(seed, name), "w") as f:
            f.write(text)
    repos.git("add", "-A", cwd=seed)
    repos.git("commit", "-q", "-m", message, cwd=seed)
    repos.git("push", "-q", w.bare, "main", cwd=seed)


def outputs(w, sid, step):
    return [e[3]["line"] for e in farmtest.session_events(w.farm, sid, "output")
            if e[3].get("step") == step]


def setup_event(w, sid):
    ev = farmtest.session_events(w.farm, sid, "setup")
    assert len(ev) == 1, ev
    return ev[0][3]


def probe_line(lines, who):
    got = [l for l in lines if l.startswith("PROBE %s " % who)]
    assert len(got) == 1, lines
    return dict(kv.split("=", 1) for kv in got[0].split()[2:])


def host_holders(secret, farm_pid):
    """Host processes (but the farm and this test) whose environment or
    command line holds the secret."""
    held = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in (farm_pid, os.getpid()):
            continue
        for what in ("environ", "cmdline"):
            try:
                with open("/proc/%s/%s" % (pid, what), "rb") as f:
                    if secret.encode() in f.read():
                        held.append((pid, what))
            except OSError:
                pass
    return held


def farm_logs(w, sid):
    env = dict(os.environ, FARM_TOKEN=farmtest.ADMIN_TOKEN)
    p = subprocess.run([farmtest.FARM_BIN, "logs", "--server", "http://127.0.0.1:%d" % w.farm.port,
                        str(sid)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, (p.returncode, p.stderr)
    return p.stdout


def run_issue(w, title):
    n = w.open_issue(title, "Complete the greeting.")
    s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=120, what="the run's end")
    assert s["state"] == "review", s
    return s["id"]


def test_setup_cached_and_secret_for_setup_only():
    secret = "farmsetup-" + secrets.token_hex(16)
    agent = ["/bin/sh", "-c", "python3 probe.py agent; printf 'hello, world\\n' > greeting.txt"]
    w = farmtest.GitHubWorld(
        repo_extra={"setup": "sh setup.sh", "setup_cache_key": ["package-lock.json"],
                    "setup_env": {"SETUP_TOKEN": "env:FARM_TEST_SETUP_TOKEN"}},
        extra={"agent": {"command": agent}})
    w.farm.env["FARM_TEST_SETUP_TOKEN"] = secret
    ok = False
    try:
        push_files(w, {"setup.sh": SETUP_SH, "probe.py": PROBE_PY % secret[::-1],
                       "package-lock.json": '{"lockfileVersion": 3}\n',
                       ".gitignore": "node_modules/\n"}, "a project with a setup")
        w.start()

        # 1. setup runs: the secret reaches it (its hash), the probe finds it there
        s1 = run_issue(w, "First")
        ev1 = setup_event(w, s1)
        assert ev1["mode"] == "ran" and ev1.get("saved") is True and len(ev1["key"]) == 64, ev1
        out = outputs(w, s1, "setup")
        assert out.count("SETUP-RAN") == 1, out
        want = "SETUP-TOKEN-SHA " + hashlib.sha256(secret.encode()).hexdigest()
        assert want in out, (want, out)
        assert "env" in probe_line(out, "setup")["found"].split(","), out
        # setup printed it: the log keeps the line with the value cut out
        assert "the token is " + "*" * len(secret) in out, out
        for sid_ in (s1,):
            for e in farmtest.session_events(w.farm, sid_):
                assert secret not in json.dumps(e[3]), ("the secret is in the session log", e)
        assert not [l for l in w.farm.log_lines if secret in l], "the secret is in the farm's log"

        # 2. the agent: nothing of the secret anywhere it can look, setup's files there
        pa = probe_line(outputs(w, s1, "agent"), "agent")
        assert pa["found"] == "nothing", pa
        assert int(pa["files"]) > 3 and pa["deps"] == "yes", pa

        # the agent and the tests started from sandboxes spawned ahead
        done = [e[3] for e in farmtest.session_events(w.farm, s1, "step")
                if e[3].get("status") == "done" and e[3].get("step") in ("agent", "test")]
        assert len(done) == 2 and all(d.get("prepared") is True for d in done), done

        # 3. nothing of setup still runs on the host with the secret
        held = host_holders(secret, w.farm.proc.pid)
        assert not held, held
        # (the scan does find a holder: the farm, which has it in its environment)
        assert (str(w.farm.proc.pid), "environ") in host_holders(secret, -1)

        # 4. the second issue restores setup: same key, setup's output absent
        s2 = run_issue(w, "Second")
        ev2 = setup_event(w, s2)
        assert ev2["mode"] == "restored" and ev2["key"] == ev1["key"], (ev1, ev2)
        assert ev2["files"] >= 2, ev2
        assert "SETUP-RAN" not in outputs(w, s2, "setup"), outputs(w, s2, "setup")
        runs = sum(outputs(w, sid, "setup").count("SETUP-RAN") for sid in (s1, s2))
        assert runs == 1, runs
        pa2 = probe_line(outputs(w, s2, "agent"), "agent")
        assert pa2["deps"] == "yes" and pa2["found"] == "nothing", pa2
        text = farm_logs(w, s2)
        assert "setup restored from the cache" in text, text

        # 5. a changed lock file: setup runs again, under a new key
        push_files(w, {"package-lock.json": '{"lockfileVersion": 3, "x": 1}\n'}, "new lock")
        s3 = run_issue(w, "Third")
        ev3 = setup_event(w, s3)
        assert ev3["mode"] == "ran" and ev3["key"] != ev1["key"], (ev1, ev3)
        assert outputs(w, s3, "setup").count("SETUP-RAN") == 1
        assert "setup ran in" in farm_logs(w, s3)
        ok = True
    finally:
        w.close(ok=ok)


def test_warm_slot_holds_setup():
    """A warm slot made once the cache holds setup restores it ahead: the
    run that adopts it starts with setup done."""
    agent = ["/bin/sh", "-c", "python3 probe.py agent; printf 'hello, world\\n' > greeting.txt"]
    w = farmtest.GitHubWorld(
        scaling={"min_warm": 1},
        repo_extra={"setup": "sh setup.sh", "setup_cache_key": ["package-lock.json"]},
        extra={"agent": {"command": agent}})
    ok = False
    try:
        push_files(w, {"setup.sh": SETUP_SH, "probe.py": PROBE_PY % "nothing-to-find",
                       "package-lock.json": "{}\n", ".gitignore": "node_modules/\n"}, "setup")
        w.start()
        s1 = run_issue(w, "First")
        assert setup_event(w, s1)["mode"] == "ran"
        warm = os.path.join(w.farm.data_dir, "warm")

        def slot_with_setup():
            return os.path.isdir(warm) and [d for d in os.listdir(warm) if d.endswith("-home")]
        farmtest.wait_for(slot_with_setup, 30, "a warm slot with setup restored")
        s2 = run_issue(w, "Second")
        ev = setup_event(w, s2)
        assert ev["mode"] == "restored" and ev.get("warm") is True, ev
        pa = probe_line(outputs(w, s2, "agent"), "agent")
        assert pa["deps"] == "yes", pa
        wt = [e[3] for e in farmtest.session_events(w.farm, s2, "step")
              if e[3].get("step") == "worktree" and e[3].get("status") == "done"]
        assert wt and wt[0]["warm"] is True, wt
        assert "in a warm slot" in farm_logs(w, s2)
        ok = True
    finally:
        w.close(ok=ok)


if __name__ == "__main__":
    farmtest.run([test_setup_cached_and_secret_for_setup_only, test_warm_slot_holds_setup])
