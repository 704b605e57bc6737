"""test_cli_words - what the `farm` commands say to a person, through the
real binary:

- `farm help NOSUCH` is an unknown command (exit 2); `farm COMMAND --help`
  (or -h) prints the command's usage and exits 0, `farm serve --help` too;
  `farm issue frob` names the word it does not know;
- `farm doctor` names a data directory the sandbox's uid cannot reach, with
  the chmod that fixes it, and `farm serve` refuses to start on it (as root,
  with the sandbox on);
- on a farm that ran: `farm issue new` prints text, never the server's JSON
  log; `farm status` and `farm digest` count in words ("1 job started",
  "1 session touched, 1 run"); `farm logs` shows the agent's step with its
  exit status and summary; `farm sessions 999` points at the command, not
  at an HTTP route; a draft pull request reads "review (draft)" in `farm
  sessions` and "open (draft)" in `farm issue list`.
"""
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


def farm_cmd(*args, cwd=None, env=None):
    p = subprocess.run([farmtest.FARM_BIN] + list(args), capture_output=True, timeout=120,
                       cwd=cwd, env=env)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_help_and_unknown_words():
    rc, out, err = farm_cmd("help", "nosuch")
    assert rc == 2 and "unknown command 'nosuch'" in err and out == "", (rc, out, err)
    rc, out, err = farm_cmd("help", "serve")
    assert rc == 0 and out.startswith("usage: farm serve"), (rc, out, err)
    for cmd in (["serve", "--help"], ["demo", "-h"], ["issue", "--help"], ["logs", "--help"]):
        rc, out, err = farm_cmd(*cmd)
        assert rc == 0 and out.startswith("usage: farm " + cmd[0]), (cmd, rc, out, err)
    rc, out, err = farm_cmd("issue", "frob")
    assert rc == 2 and "unknown subcommand 'frob'" in err and "usage:" in err, (rc, err)
    rc, out, err = farm_cmd("nosuch")
    assert rc == 2 and "unknown command 'nosuch'" in err, (rc, err)


def check(tmp, cfg):
    path = os.path.join(tmp, "farm.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return farm_cmd("config", "check", "--config", path)


def closed_home():
    """A 0711 temporary directory and, inside it, a 0700 one (a home
    directory on Debian 12): what the sandbox's uid cannot pass."""
    tmp = tempfile.mkdtemp(prefix="farm-e2e-words-")
    os.chmod(tmp, 0o711)
    closed = os.path.join(tmp, "home")
    os.mkdir(closed)
    os.chmod(closed, 0o700)
    return tmp, closed


def test_doctor_names_an_unreachable_data_dir():
    if os.geteuid() != 0:
        print("# skipped: not root (the sandbox keeps an ordinary user's uid)")
        return
    tmp, closed = closed_home()
    try:
        rc, out, err = check(tmp, {"data_dir": os.path.join(closed, "farm-data")})
        cfg = os.path.join(tmp, "farm.json")
        rc, out, err = farm_cmd("doctor", "--config", cfg)
        assert rc == 1, (rc, out, err)
        assert re.search(r"data directory +OUT OF REACH", out), out
        assert "%s (mode 700) is not searchable by other users" % closed in out, out
        assert "chmod o+x %s" % closed in out, out
        # unsafe-none: no other uid, nothing to reach
        check(tmp, {"data_dir": os.path.join(closed, "farm-data"),
                    "sandbox": {"mode": "unsafe-none"}})
        rc, out, err = farm_cmd("doctor", "--config", cfg)
        assert rc == 0 and re.search(r"data directory +not checked", out), (rc, out)
        # reachable
        check(tmp, {"data_dir": os.path.join(tmp, "farm-data")})
        rc, out, err = farm_cmd("doctor", "--config", cfg)
        assert re.search(r"data directory +ok", out) and "OUT OF REACH" not in out, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_serve_refuses_an_unreachable_data_dir():
    """`farm serve` refuses at start, with the fix, instead of accepting
    issues whose every run would fail at the agent step."""
    if os.geteuid() != 0:
        print("# skipped: not root (the sandbox keeps an ordinary user's uid)")
        return
    tmp, closed = closed_home()
    try:
        data = os.path.join(closed, "farm-data")
        check(tmp, {"data_dir": data, "listen": "127.0.0.1:0"})
        rc, out, err = farm_cmd("serve", "--config", os.path.join(tmp, "farm.json"))
        assert rc != 0, (rc, out, err)
        assert "chmod o+x %s" % closed in err, err
        assert not os.path.exists(data), "nothing may be created before the refusal"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def session_state(farm, sid):
    rows = farmtest.session_rows(farm, "id = ?", sid)
    return rows[0]["state"] if rows else None


def test_words_on_a_farm_that_ran():
    tmp = tempfile.mkdtemp(prefix="farm-e2e-words-")
    bare = repos.make_remote(tmp)
    farm = farmtest.Farm(tmp=tmp, repos=[
        {"name": "demo", "tracker": "local", "clone_url": "file://" + bare,
         "trigger": {"label": "agent"}, "test": "sh test.sh", "max_fix_rounds": 0}],
        extra={"agent": {"preset": "standin"},
               "sandbox": {"memory_mb": 256, "wall_timeout_s": 60}})
    env = dict(farm.env, FARM_TOKEN=farmtest.ADMIN_TOKEN)
    ok = False
    try:
        farm.start()
        def cli(*args):
            """issue reads the store through --config; the others ask the server"""
            where = ["--config", farm.config_path] if args[0] == "issue" else \
                ["--server", "http://127.0.0.1:%d" % farm.port]
            return farm_cmd(*(list(args) + where), env=env)

        rc, out, err = cli("issue", "new", "--repo", "demo", "--title", "Fix the greeting",
                           "--label", "agent", "--body", repos.issue_body(repos.FIX))
        assert rc == 0 and out.strip() == "1", (rc, out, err)
        assert "accepted, session 1" in err, err
        assert not any(ln.lstrip().startswith("{") for ln in err.splitlines()), err
        farmtest.wait_for(lambda: session_state(farm, 1) == "review", 120, "session 1 in review")
        farmtest.wait_for(lambda: farm.get_json("/api/status")[1]["scheduler"]["busy"] == 0, 60,
                          "the slot to be free")

        # reals as people write them: 0.077, never 0.076999999999999999
        status, _, raw = farm.request("GET", "/api/sessions",
                                      headers={"Authorization": "Bearer " + farmtest.ADMIN_TOKEN})
        assert status == 200 and not re.search(rb"\d\.\d{16,}", raw), raw[:400]
        assert b'"agent_seconds":' in raw, raw[:400]

        rc, out, err = cli("status")
        assert rc == 0 and re.search(r"since +1 job started, 0 memory waits, 0 leases lost",
                                     out), (rc, out, err)
        rc, out, err = cli("digest")
        assert rc == 0 and "  1 session touched, 1 run, agent time" in out, (rc, out, err)

        rc, out, err = cli("logs", "1")
        assert rc == 0, (rc, out, err)
        agent = [ln for ln in out.splitlines() if " agent done (round 1)" in ln]
        assert agent and re.search(r"agent done \(round 1\): exit 0, .*: _This change was made by "
                                   r"the farm's \*\*stand-in agent\*\*", agent[0]), out
        assert re.search(r"run_finished run 1: pr, tests passed .*1 file changed \(\+1 -1\)",
                         out), out
        assert re.search(r"state +queued -> preparing", out), out

        rc, out, err = cli("sessions", "999")
        assert rc == 1 and "no session 999" in err and "`farm sessions` lists them" in err, err
        assert "GET /api" not in err, err
        rc, out, err = cli("cancel", "999")
        assert rc == 1 and "no such session 999" in err and "GET /api" not in err, err

        # a run whose tests still fail: its pull request is a draft
        rc, out, err = cli("issue", "new", "--repo", "demo", "--title", "Half a greeting",
                           "--label", "agent", "--body", repos.issue_body(repos.HALF))
        assert rc == 0 and out.strip() == "3", (rc, out, err)
        farmtest.wait_for(lambda: session_state(farm, 2) == "review", 120, "session 2 in review")
        farmtest.wait_for(lambda: farmtest.session_rows(farm, "id = 2")[0]["pr_number"], 60,
                          "the draft pull request")
        rc, out, err = cli("sessions")
        assert rc == 0, (rc, out, err)
        rows = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
        assert re.match(r"2 +review \(draft\) +demo ", rows["2"]), out
        assert re.match(r"1 +review +demo ", rows["1"]), out
        rc, out, err = cli("sessions", "2")
        assert rc == 0 and out.startswith("session 2: review (draft)\n"), out
        rc, out, err = cli("issue", "list")
        assert rc == 0, (rc, out, err)
        rows = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
        assert re.match(r"4 +PR +open \(draft\) +demo ", rows["4"]), out
        assert re.match(r"2 +PR +open +demo ", rows["2"]), out
        rc, out, err = cli("issue", "list", "--json")
        prs = {i["number"]: i["draft"] for i in json.loads(out)["issues"] if i["is_pr"]}
        assert prs == {4: True, 2: False}, prs
        ok = True
    finally:
        if ok:
            assert farm.stop() == 0
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            farm.kill()
            print("# kept for inspection:", tmp, flush=True)


if __name__ == "__main__":
    farmtest.run([test_help_and_unknown_words, test_doctor_names_an_unreachable_data_dir,
                  test_serve_refuses_an_unreachable_data_dir, test_words_on_a_farm_that_ran])
