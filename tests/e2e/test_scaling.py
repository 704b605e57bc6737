"""test_scaling - the scheduler's surface through the real binary:
GET/PUT /api/scaling with and without the right token (tokens configured),
validation naming the bad field, a change kept in the store across a
restart, `farm scale` and `farm status` output, the scheduler's /metrics,
cancelling a session (POST /api/sessions/{id}/cancel, `farm cancel`), and
20 issues through the whole farm (fake GitHub, real sandbox, stand-in
agent) within max_agents, with a live change honoured.

Every wait is on the farm's state (its API, its /metrics, its store), never
on how long something should take: the scheduler takes up a new limit when
/metrics says so, a live status is judged against the limit the same answer
reports, and a pull request is there when the fake tracker holds it.
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import ADMIN_TOKEN, VIEWER_TOKEN, Farm  # noqa: E402

MEMBER_TOKEN = "member-token-for-tests-0123456789abc"
ADMIN = {"Authorization": "Bearer " + ADMIN_TOKEN}
VIEWER = {"Authorization": "Bearer " + VIEWER_TOKEN}
MEMBER = {"Authorization": "Bearer " + MEMBER_TOKEN}
JSON = {"Content-Type": "application/json"}
# how long a wait on the farm's state may take before the test gives up: a
# deadline for a hung farm, not a guess at how fast it is (a loaded host is slow)
WAIT = 120.0


def new_farm():
    f = Farm(extra={
        "scaling": {"max_agents": 4, "max_per_repo": 2, "min_warm": 0, "idle_timeout_s": 120},
        "sandbox": {"memory_mb": 64},  # admitted on any test host
        "tokens": [
            {"name": "viewer", "token": "env:FARM_TEST_VIEWER", "role": "viewer"},
            {"name": "mia", "token": "env:FARM_TEST_MEMBER", "role": "member"},
            {"name": "admin", "token": "env:FARM_TEST_ADMIN", "role": "admin"}]},
        # a repository that cannot be fetched: a run fails early and is retried later
        repos=[{"name": "octo/app", "tracker": "github", "clone_url": "file:///nonexistent/app.git",
                "trigger": {"label": "agent"}}])
    f.env["FARM_TEST_MEMBER"] = MEMBER_TOKEN
    return f


def put(farm, body, headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    s, _, out = farm.request("PUT", "/api/scaling", body=data, headers=dict(JSON, **headers))
    try:
        return s, json.loads(out)
    except ValueError:
        return s, out


def cli(farm, *args, token=ADMIN_TOKEN):
    env = dict(farm.env)
    env.pop("FARM_TOKEN", None)
    if token:
        env["FARM_TOKEN"] = token
    p = subprocess.run([farmtest.FARM_BIN] + list(args) +
                       ["--server", "http://127.0.0.1:%d" % farm.port],
                       capture_output=True, env=env, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_scaling_api():
    farm = new_farm()
    try:
        farm.start()
        s, _, _ = farm.request("GET", "/api/scaling")
        assert s == 401, s
        s, body = farm.get_json("/api/scaling", token=VIEWER_TOKEN)
        assert s == 200, (s, body)
        assert body["max_agents"] == 4 and body["max_per_repo"] == 2, body
        assert body["min_warm"] == 0 and body["idle_timeout_s"] == 120, body
        assert body["source"] == {"max_agents": "config", "max_per_repo": "config",
                                  "min_warm": "config", "idle_timeout_s": "config"}, body

        # writes need the admin role
        assert put(farm, {"max_agents": 6}, {})[0] == 401
        assert put(farm, {"max_agents": 6}, VIEWER)[0] == 403
        assert put(farm, {"max_agents": 6}, MEMBER)[0] == 403
        assert put(farm, {"max_agents": 6}, {"Authorization": "Bearer wrong"})[0] == 401

        # validation names the field; nothing is written
        for bad, field in (({"max_agents": 0}, "max_agents"), ({"max_agents": 257}, "max_agents"),
                           ({"max_per_repo": 5}, "max_per_repo"),
                           ({"max_agents": 2, "max_per_repo": 3}, "max_per_repo"),
                           ({"min_warm": -1}, "min_warm"), ({"min_warm": 5}, "min_warm"),
                           ({"idle_timeout_s": 0}, "idle_timeout_s")):
            s, body = put(farm, bad, ADMIN)
            assert s == 400 and body["field"] == field and field in body["error"], (bad, s, body)
        for bad, what in ((b"not json", "JSON object"), (b"[1]", "JSON object"),
                          ({}, "nothing to change"), ({"max_agent": 3}, "max_agent"),
                          ({"max_agents": "3"}, "integer"), ({"max_agents": 2.5}, "integer")):
            s, body = put(farm, bad, ADMIN)
            assert s == 400 and what in body["error"], (bad, s, body)
        assert farm.get_json("/api/scaling")[1]["max_agents"] == 4

        s, body = put(farm, {"max_agents": 6, "min_warm": 0}, ADMIN)
        assert s == 200, (s, body)
        assert body["max_agents"] == 6 and body["source"]["max_agents"] == "setting", body
        assert body["source"]["max_per_repo"] == "config", body
        farmtest.wait_for(lambda: any(r.get("msg") == "scaling changed" and r.get("by") == "admin"
                                      for r in farm.logs()),
                          timeout=WAIT, what="the change logged with who made it")
        # the scheduler takes it up without a restart
        farmtest.wait_for(lambda: farm.metric("farm_scaling_limit", limit="max_agents") == 6,
                          timeout=WAIT, what="the scheduler to use max_agents 6")

        # kept in the store across a restart
        assert farm.stop() == 0
        farm.start()
        s, body = farm.get_json("/api/scaling", token=VIEWER_TOKEN)
        assert s == 200 and body["max_agents"] == 6 and body["max_per_repo"] == 2, body
        assert body["source"]["max_agents"] == "setting", body
        farmtest.wait_for(lambda: farm.metric("farm_scaling_limit", limit="max_agents") == 6,
                          timeout=WAIT, what="the restarted scheduler to use max_agents 6")
    finally:
        farm.kill()


def test_scale_and_status_cli():
    with new_farm() as farm:
        rc, out, err = cli(farm, "scale", token=VIEWER_TOKEN)
        assert rc == 0, (rc, out, err)
        assert "max_agents" in out and "4" in out and "(config)" in out, out

        rc, out, err = cli(farm, "scale", "--max", "3", "--per-repo", "1", "--min-warm", "0")
        assert rc == 0, (rc, out, err)
        lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
        assert lines["max_agents"].split()[1] == "3" and "(setting)" in lines["max_agents"], out
        assert lines["max_per_repo"].split()[1] == "1", out

        rc, out, err = cli(farm, "scale", "--max", "3", token=VIEWER_TOKEN)
        assert rc == 1 and "role" in err, (rc, out, err)
        rc, out, err = cli(farm, "scale", "--max", "0")
        assert rc == 1 and "max_agents" in err, (rc, out, err)
        rc, out, err = cli(farm, "scale", "--max", "three")
        assert rc == 2 and "whole number" in err, (rc, out, err)

        rc, out, err = cli(farm, "scale", "--json", token=VIEWER_TOKEN)
        assert rc == 0 and json.loads(out)["max_agents"] == 3, (rc, out, err)

        rc, out, err = cli(farm, "status", token=VIEWER_TOKEN)
        assert rc == 0, (rc, out, err)
        assert "0 in use of 3 (max_agents)" in out, out
        assert "0 queued" in out, out
        assert "max_agents 3 (setting), max_per_repo 1 (setting)" in out, out
        assert "outbox" in out, out
        rc, out, err = cli(farm, "status", "--json", token=VIEWER_TOKEN)
        st = json.loads(out)
        assert st["scheduler"]["running"] is True and st["scaling"]["max_agents"] == 3, st
        rc, out, err = cli(farm, "status", token=None)
        assert rc == 1 and "FARM_TOKEN" in err, (rc, out, err)

        # the scheduler takes the new limits up on its next pass: wait for it to say so
        farmtest.wait_for(lambda: farm.metric("farm_scaling_limit", limit="max_per_repo") == 1,
                          timeout=WAIT, what="the scheduler to use max_per_repo 1")
        m = farm.metrics()
        for series in ('farm_slots{state="busy"} 0', 'farm_jobs{state="queued"} 0',
                       "farm_admission_waits_total 0", 'farm_scaling_limit{limit="max_per_repo"} 1'):
            assert series in m, series


def session_state(farm, sid):
    with farm.db() as c:
        return c.execute("SELECT state FROM session WHERE id = ?", (sid,)).fetchone()[0]


def event_kinds(farm, sid):
    with farm.db() as c:
        return [r[0] for r in c.execute("SELECT kind FROM event WHERE session_id = ? ORDER BY seq",
                                        (sid,)).fetchall()]


def labeled(number):
    p = farmtest.github_fixture("issues.labeled")
    p["issue"]["number"] = number
    p["label"] = {"name": "agent"}
    p["repository"]["full_name"] = "octo/app"
    return p


def test_cancel():
    """Cancels recorded while no scheduler runs (intake only) are taken first
    once one does: the sessions end cancelled and their run jobs do nothing."""
    farm = new_farm()
    farm.serve_args = ["--intake-only"]
    try:
        farm.start()
        for number in (7, 8):
            s, body = farm.post_github("issues", labeled(number))
            assert s == 202, (s, body)
        with farm.db() as c:
            sids = [r[0] for r in c.execute("SELECT id FROM session ORDER BY number").fetchall()]
        sid, sid2 = sids
        path = "/api/sessions/%d/cancel" % sid
        assert farm.request("POST", path)[0] == 401
        assert farm.request("POST", path, headers=VIEWER)[0] == 403
        # an API write takes JSON only (no "simple" cross-site request reaches one)
        assert farm.request("POST", path, headers=MEMBER)[0] == 415
        assert farm.request("POST", "/api/sessions/999/cancel", headers=dict(JSON, **MEMBER))[0] == 404
        assert farm.request("POST", "/api/sessions/x/cancel", headers=dict(JSON, **MEMBER))[0] == 404

        s, _, out = farm.request("POST", path, headers=dict(JSON, **MEMBER))
        assert s == 202, (s, out)
        assert json.loads(out)["state"] == "cancelling"
        rc, out, err = cli(farm, "cancel", str(sid2), token=MEMBER_TOKEN)
        assert rc == 0 and "cancelling" in out, (rc, out, err)
        rc, out, err = cli(farm, "cancel", "999", token=MEMBER_TOKEN)
        assert rc == 1 and "no such session" in err, (rc, out, err)
        rc, out, err = cli(farm, "cancel", "abc", token=MEMBER_TOKEN)
        assert rc == 2, (rc, out, err)
        for x in (sid, sid2):
            assert event_kinds(farm, x).count("cancel_requested") == 1, event_kinds(farm, x)
            assert session_state(farm, x) == "queued"

        # a farm that runs jobs: the cancels go before the runs
        assert farm.stop() == 0
        farm.serve_args = []
        farm.start()
        for x in (sid, sid2):
            farmtest.wait_for(lambda: session_state(farm, x) == "cancelled", timeout=WAIT,
                              what="session %d cancelled" % x)
            farmtest.wait_for(lambda: jobs_of(farm, x) == {"run": "done", "cancel": "done"},
                              timeout=WAIT, what="the jobs of session %d ended" % x)
            assert "run_started" not in event_kinds(farm, x), event_kinds(farm, x)
        # an ended session cannot be cancelled again
        s, _, out = farm.request("POST", path, headers=dict(JSON, **MEMBER))
        assert s == 409, (s, out)
        rc, out, err = cli(farm, "cancel", str(sid2), token=MEMBER_TOKEN)
        assert rc == 1 and "409" in err, (rc, out, err)
    finally:
        farm.kill()


def jobs_of(farm, sid):
    with farm.db() as c:
        return dict(c.execute("SELECT kind, state FROM job WHERE session_id = ?", (sid,)).fetchall())


def run_intervals(farm):
    """(session, started ms, finished ms) of every run, from the session logs."""
    with farm.db() as c:
        rows = c.execute("SELECT session_id, kind, ts_ms FROM event WHERE kind IN"
                         " ('run_started', 'run_finished') ORDER BY session_id, seq").fetchall()
    out, open_ = [], {}
    for sid, kind, ts in rows:
        if kind == "run_started":
            open_[sid] = ts
        elif sid in open_:
            out.append((sid, open_.pop(sid), ts))
    return out


def max_overlap(intervals):
    points = sorted([(a, 1) for _, a, _ in intervals] + [(b, -1) for _, _, b in intervals],
                    key=lambda p: (p[0], p[1]))
    cur = best = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def test_twenty_issues_within_max_agents():
    """20 issues with max_agents 2, raised to 3 while they run: never more
    runs at once than the limit in force, and every issue gets its PR. Half
    the issues are opened once the scheduler has taken up the new limit, so
    there is work for a third slot however slow the host is."""
    import repos
    with farmtest.GitHubWorld(scaling={"max_agents": 2, "max_per_repo": 2}) as w:
        farm = w.farm
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    s, st = farm.get_json("/api/status", token=VIEWER_TOKEN)
                except OSError:  # a slow answer on a loaded host: take the next one
                    continue
                if s == 200:
                    # busy and the limit from one answer: the limit is stored before
                    # the scheduler uses it, so busy never exceeds it
                    samples.append((st["scheduler"]["busy"], st["scaling"]["max_agents"]))
                time.sleep(0.02)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def busy():
            s, st = farm.get_json("/api/status", token=VIEWER_TOKEN)
            return st["scheduler"]["busy"] if s == 200 else -1

        def finished():
            with farm.db() as c:
                return c.execute("SELECT count(*) FROM session WHERE state IN"
                                 " ('review', 'failed', 'done', 'cancelled')").fetchone()[0]

        def issue(i):
            return w.open_issue("Fix the greeting %d" % i,
                                repos.issue_body(repos.FIX, standin="sleep 1"))
        try:
            numbers = [issue(i) for i in range(10)]
            farmtest.wait_for(lambda: finished() >= 4, timeout=300, what="4 sessions finished")
            before = max_overlap(run_intervals(farm))
            s, body = put(farm, {"max_agents": 3, "max_per_repo": 3}, ADMIN)
            assert s == 200 and body["max_agents"] == 3, (s, body)
            farmtest.wait_for(lambda: farm.metric("farm_scaling_limit", limit="max_agents") == 3,
                              timeout=WAIT, what="the scheduler to use max_agents 3")
            numbers += [issue(i) for i in range(10, 20)]
            farmtest.wait_for(lambda: busy() == 3, timeout=300, what="three runs at once")
            farmtest.wait_for(lambda: finished() == 20, timeout=480, what="all 20 sessions")
            farmtest.wait_for(lambda: len(w.pulls()) == 20, timeout=WAIT,
                              what="the 20 pull requests on the tracker")
        finally:
            stop.set()
            sampler.join(30)
        with farm.db() as c:
            states = c.execute("SELECT state, count(*) FROM session GROUP BY state").fetchall()
        assert states == [("review", 20)], states
        assert before <= 2, before
        # from the store: never more runs at once than 3, and 3 were used
        assert max_overlap(run_intervals(farm)) == 3, max_overlap(run_intervals(farm))
        # from the live status: within the limit in force at each moment
        assert samples and all(b <= m for b, m in samples), samples
        assert any(m == 2 for _, m in samples) and any(m == 3 for _, m in samples), samples
        assert len(set(numbers)) == 20


if __name__ == "__main__":
    farmtest.run([test_scaling_api, test_scale_and_status_cli, test_cancel,
                  test_twenty_issues_within_max_agents])
