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


def test_worker_refuses_local_tracker_without_shared_fs():
    """The local tracker's file:// repositories need one file system for
    every node: without store.shared_fs, `farm worker` refuses to start and
    says what to set; with it, the worker starts."""
    import json
    f = farmtest.Farm(repos=[{"name": "demo", "tracker": "local",
                              "clone_url": "file:///nonexistent/demo.git"}])
    worker = None
    try:
        p = subprocess.run([farmtest.FARM_BIN, "worker", "--config", f.config_path],
                           capture_output=True, env=f.env, timeout=60)
        err = p.stderr.decode()
        assert p.returncode != 0, (p.returncode, err)
        assert "local tracker" in err and '"shared_fs": true' in err, err

        cfg = dict(f.config)
        cfg["store"] = dict(cfg.get("store") or {}, shared_fs=True)
        shared = os.path.join(f.tmp, "shared.json")
        with open(shared, "w") as fp:
            json.dump(cfg, fp)
        log_path = os.path.join(f.tmp, "worker.log")
        with open(log_path, "wb") as log:
            worker = subprocess.Popen([farmtest.FARM_BIN, "worker", "--config", shared],
                                      stdout=subprocess.DEVNULL, stderr=log, env=f.env)

        def started():
            assert worker.poll() is None, open(log_path).read()
            return "scheduler started" in open(log_path).read()
        farmtest.wait_for(started, WAIT, "the worker with store.shared_fs to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        worker = None
    finally:
        if worker:
            worker.kill()
            worker.wait(30)
        f.kill()


if __name__ == "__main__":
    farmtest.run([test_worker_runs_what_serve_takes_in,
                  test_worker_refuses_local_tracker_without_shared_fs])
