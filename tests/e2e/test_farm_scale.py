#!/usr/bin/env python3
"""test_farm_scale.py - concurrency limits of the whole farm (`farm serve`,
the fake GitHub, a real bare remote, the stand-in agent in the sandbox).

Concurrency is measured from the sessions' own logs: each agent step has a
"started" and a "done" event with the store's timestamps, so the number of
agents at work at any moment is the number of those intervals that overlap.

Cases: 20 issues with max_agents 3 never run more than 3 agents at once and
all end with a PR; a PUT /api/scaling while jobs queue is followed at once.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402


def agent_intervals(farm):
    """[(start_ms, end_ms)] of every agent step that has ended."""
    out = []
    for s in farmtest.session_rows(farm):
        start = None
        for _, ts, _, b in farmtest.session_events(farm, s["id"], "step"):
            if b.get("step") != "agent":
                continue
            if b.get("status") == "started":
                start = ts
            elif start is not None:
                out.append((start, ts))
                start = None
    return out


def max_overlap(intervals, lo=None, hi=None):
    """The most intervals open at one moment, counting only moments in
    [lo, hi) when given."""
    points = []
    for a, b in intervals:
        if lo is not None:
            a = max(a, lo)
        if hi is not None:
            b = min(b, hi)
        if a < b:
            points += [(a, 1), (b, -1)]
    best = cur = 0
    for _, d in sorted(points):  # an end sorts before a start at the same ms
        cur += d
        best = max(best, cur)
    return best


def all_in_review(w, numbers):
    states = [w.session(n) for n in numbers]
    return all(s and s["state"] in ("review", "failed", "done", "cancelled") for s in states)


def test_twenty_issues_three_agents():
    body = repos.issue_body(repos.FIX, standin="sleep 0.7")
    with farmtest.GitHubWorld(scaling={"max_agents": 3, "max_per_repo": 3}) as w:
        numbers = [w.open_issue("Greeting %d" % i, body) for i in range(20)]
        farmtest.wait_for(lambda: all_in_review(w, numbers), 150, "20 sessions to end")
        states = [w.session(n)["state"] for n in numbers]
        assert states == ["review"] * 20, states
        pulls = w.pulls()
        assert len(pulls) == 20, len(pulls)
        assert len({p["head"]["ref"] for p in pulls}) == 20
        iv = agent_intervals(w.farm)
        assert len(iv) == 20, iv
        peak = max_overlap(iv)
        print("# peak agents at once: %d of 3" % peak, flush=True)
        assert peak <= 3, peak
        assert peak == 3, "the limit was never used: peak %d" % peak


def put_scaling(w, change):
    st, _, body = w.farm.request("PUT", "/api/scaling", body=json.dumps(change).encode(),
                                 headers={"Authorization": "Bearer " + farmtest.ADMIN_TOKEN,
                                          "Content-Type": "application/json"})
    return st, body


def test_live_scaling_change():
    body = repos.issue_body(repos.FIX, standin="sleep 1")
    with farmtest.GitHubWorld(scaling={"max_agents": 1, "max_per_repo": 1}) as w:
        # a viewer may not change it
        st, _, _ = w.farm.request("PUT", "/api/scaling", body=b'{"max_agents": 3}',
                                  headers={"Authorization": "Bearer " + farmtest.VIEWER_TOKEN})
        assert st == 403, st
        st, body_ = put_scaling(w, {"max_agents": "three"})
        assert st == 400, (st, body_)

        numbers = [w.open_issue("Queued %d" % i, body) for i in range(7)]
        # the first agent is at work and the rest wait behind max_agents 1
        farmtest.wait_for(lambda: len(agent_intervals(w.farm)) >= 1, 60, "a first agent")
        assert max_overlap(agent_intervals(w.farm)) == 1
        changed_ms = int(time.time() * 1000)
        st, body_ = put_scaling(w, {"max_agents": 3, "max_per_repo": 3})
        assert st == 200, (st, body_)
        st, got = w.farm.get_json("/api/scaling", token=farmtest.VIEWER_TOKEN)
        assert st == 200 and got["max_agents"] == 3, got

        farmtest.wait_for(lambda: all_in_review(w, numbers), 120, "the queue to drain")
        assert [w.session(n)["state"] for n in numbers] == ["review"] * 7
        iv = agent_intervals(w.farm)
        before = max_overlap(iv, hi=changed_ms)
        after = max_overlap(iv, lo=changed_ms)
        print("# agents at once: %d before the change, %d after" % (before, after), flush=True)
        assert before == 1, before
        assert after == 3, after



def test_scaling_change_survives_restart():
    with farmtest.GitHubWorld(scaling={"max_agents": 1, "max_per_repo": 1}) as w:
        st, body_ = put_scaling(w, {"max_agents": 2, "max_per_repo": 2})
        assert st == 200, (st, body_)
        w.restart()
        st, got = w.farm.get_json("/api/scaling", token=farmtest.VIEWER_TOKEN)
        assert st == 200 and got["max_agents"] == 2 and got["max_per_repo"] == 2, got


if __name__ == "__main__":
    tests = [test_twenty_issues_three_agents, test_live_scaling_change,
             test_scaling_change_survives_restart]
    only = sys.argv[1:]
    farmtest.run([t for t in tests if not only or t.__name__ in only])
