"""test_worker - `farm worker` beside `farm serve --intake-only` on one
store: the serve process takes the webhook and runs no jobs, the worker
(no HTTP) leases the job and runs the stand-in agent in the real sandbox,
and the pull request is opened (by whichever process's outbox leases the
entry); /api/nodes (served by the serve process)
shows the worker's heartbeat with role "worker" and no node for the
intake-only process; SIGTERM stops the worker cleanly and removes its row.
Waits are on the fake tracker's and the farm's answers.
"""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from farmtest import VIEWER_TOKEN  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")
WAIT = 120.0


def nodes(farm):
    s, body = farm.get_json("/api/nodes", token=VIEWER_TOKEN)
    assert s == 200, (s, body)
    return body["nodes"]


def test_worker_runs_what_serve_takes_in():
    w = farmtest.GitHubWorld()
    w.farm.serve_args = ["--intake-only"]
    worker = None
    ok = False
    log = open(os.path.join(w.tmp, "worker.log"), "wb")
    try:
        w.start()
        worker = subprocess.Popen([farmtest.FARM_BIN, "worker", "--config", w.farm.config_path],
                                  stdout=subprocess.DEVNULL, stderr=log, env=w.farm.env)
        farmtest.wait_for(lambda: len(nodes(w.farm)) == 1, WAIT, "the worker's heartbeat")
        n = nodes(w.farm)[0]
        assert n["role"] == "worker" and n["pid"] == worker.pid, n

        num = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        s = w.wait_session(num, lambda s: s["state"] in FINAL, what="a PR")
        assert s["state"] == "review", s
        pulls = w.pulls()
        assert len(pulls) == 1, pulls
        assert pulls[0]["head"]["ref"] == s["branch"], pulls

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        worker = None
        farmtest.wait_for(lambda: nodes(w.farm) == [], WAIT, "the worker's row to go")
        ok = True
    finally:
        if worker:
            worker.kill()
            worker.wait(30)
        log.close()
        w.close(ok)


if __name__ == "__main__":
    farmtest.run([test_worker_runs_what_serve_takes_in])
