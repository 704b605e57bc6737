#!/usr/bin/env python3
"""test_nodes_cancel - a cancel reaches the node that owns the run, and a
node's work directories go when nobody comes back to them.

`farm serve --intake-only` takes the webhook and the cancel (POST
/api/sessions/N/cancel); a `farm worker` (another process on the same
store, the PostgreSQL one in the .pg variant) runs the stand-in agent,
which sleeps. The cancel is recorded by serve as a job in the store; the
worker's scheduler sees it (store_job_session_stopping) and stops its run:
the session ends cancelled, the sandbox is gone, and the worktree and run
directory under the data directory are removed while the worker keeps
running. Then a run dir left as a killed node leaves it (a session with no
job) is removed by the worker's sweep of its work directories.
Waits are on observable conditions, never on a sleep.
"""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from test_farm_chaos import orphans  # noqa: E402
from test_nodes_chaos import holds_lease, start_worker  # noqa: E402

WAIT = 120.0


def work_dirs(w, sid):
    out = []
    for sub, prefix in (("work", "s%d" % sid), ("runs", "s%d-r" % sid)):
        d = os.path.join(w.farm.data_dir, sub)
        if os.path.isdir(d):
            out += [os.path.join(sub, e) for e in os.listdir(d)
                    if e == prefix or (prefix.endswith("-r") and e.startswith(prefix))]
    return out


def test_cancel_reaches_the_worker_and_dirs_go():
    w = farmtest.GitHubWorld(scaling={"max_agents": 2, "max_per_repo": 2})
    w.farm.serve_args = ["--intake-only"]
    worker = None
    ok = False
    try:
        w.start()
        worker = start_worker(w, 0)
        num = w.open_issue("Slow", repos.issue_body(repos.FIX, standin="sleep 120"))
        farmtest.wait_for(lambda: w.session(num), 60, "the session")
        farmtest.wait_for(lambda: holds_lease(w, worker.pid) and orphans(w), WAIT,
                          "the worker's agent at work in its sandbox")
        sid = w.session(num)["id"]
        assert work_dirs(w, sid), "no work directory while the agent runs"

        # the cancel goes to serve, which runs no jobs; the worker stops its run
        s, _, out = w.farm.request("POST", "/api/sessions/%d/cancel" % sid, body=b"{}",
                                   headers={"Content-Type": "application/json",
                                            "Authorization": "Bearer " + farmtest.ADMIN_TOKEN})
        assert s == 202, (s, out)
        w.wait_session(num, lambda s: s["state"] == "cancelled", timeout=WAIT,
                       what="the session cancelled")
        farmtest.wait_for(lambda: not orphans(w), 60, "the worker's sandbox gone")
        farmtest.wait_for(lambda: not work_dirs(w, sid), 60, "the run's directories removed")
        assert worker.poll() is None, "the worker died"

        # a run directory a killed node left behind (its session has no job
        # any more) goes with the next sweep, once it is quiet
        left = os.path.join(w.farm.data_dir, "runs", "s%d-r99" % sid)
        os.makedirs(os.path.join(left, "out"))
        old = 1_000_000_000
        os.utime(left, (old, old))
        farmtest.wait_for(lambda: not os.path.exists(left), 90, "the left run directory swept")
        with open(os.path.join(w.tmp, "worker-0.log")) as f:
            swept = [json.loads(x) for x in f if x.startswith("{") and "work directory removed" in x]
        assert any(r.get("path", "").endswith("s%d-r99" % sid) for r in swept), swept

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        worker = None
        ok = True
    finally:
        if worker and worker.poll() is None:
            worker.kill()
            worker.wait(30)
        w.close(ok)


if __name__ == "__main__":
    farmtest.run([test_cancel_reaches_the_worker_and_dirs_go])
