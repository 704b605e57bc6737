#!/usr/bin/env python3
"""test_nodes_chaos.py - exactly once across nodes: `farm serve
--intake-only` takes the webhooks and two `farm worker` processes share its
store (PostgreSQL in the .pg variant, one SQLite file otherwise), the fake
GitHub, real bare remotes, the stand-in agent in the sandbox. A random
worker among those holding a lease is SIGKILLed, three times, and started again;
its leases expire and the work is taken over. Every issue ends with exactly
one PR, no comment is posted twice, max_agents (3) is never exceeded across
the nodes (from the overlap of the agent steps in the session logs), and no
sandbox is left behind.

Random choices come from a fixed seed printed in the output (FARM_CHAOS_SEED
overrides it).
"""
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from test_farm_chaos import check_exactly_once, ended, orphans, outbox_idle  # noqa: E402
from test_farm_scale import agent_intervals, max_overlap  # noqa: E402

SEED = int(os.environ.get("FARM_CHAOS_SEED", "20261206"))


def start_worker(w, i):
    log = open(os.path.join(w.tmp, "worker-%d.log" % i), "ab")
    p = subprocess.Popen([farmtest.FARM_BIN, "worker", "--config", w.farm.config_path],
                         stdout=subprocess.DEVNULL, stderr=log, env=w.farm.env)
    log.close()
    return p


def holds_lease(w, pid):
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM job WHERE state = 'leased' AND lease_owner LIKE ?",
                         ("%%:%d:%%" % pid,)).fetchone()[0] > 0


def test_workers_sigkilled_during_ten_issues():
    rnd = random.Random(SEED)
    print("# seed %d" % SEED, flush=True)
    body = repos.issue_body(repos.FIX, standin="sleep 0.5")
    w = farmtest.GitHubWorld(scaling={"max_agents": 3, "max_per_repo": 3})
    w.farm.serve_args = ["--intake-only"]
    workers = [None, None]
    ok = False
    t0 = time.monotonic()
    try:
        w.start()
        workers = [start_worker(w, 0), start_worker(w, 1)]
        numbers = [w.open_issue("Greeting %d" % i, body) for i in range(10)]
        farmtest.wait_for(lambda: all(w.session(n) for n in numbers), 60, "10 sessions")
        killed = 0
        for _ in range(3):
            # the victim is one of the workers at work: which one takes the jobs is
            # the scheduler's race, so a worker chosen beforehand may never get one
            def busy():
                return [k for k in range(2) if holds_lease(w, workers[k].pid)]
            farmtest.wait_for(lambda: busy() or ended(w, numbers), 120, "a worker at work")
            if ended(w, numbers):
                break
            at_work = busy()
            if not at_work:  # its run ended between the two looks: look again
                continue
            i = rnd.choice(at_work)
            time.sleep(rnd.uniform(0.0, 0.5))  # not synchronisation: where the kill lands
            workers[i].kill()
            workers[i].wait(30)
            killed += 1
            workers[i] = start_worker(w, i)
        print("# %d workers killed at work" % killed, flush=True)
        farmtest.wait_for(lambda: ended(w, numbers), 300, "10 sessions to end")
        farmtest.wait_for(lambda: outbox_idle(w), 120, "the outbox to drain")
        check_exactly_once(w, numbers)
        overlap = max_overlap(agent_intervals(w.farm))
        print("# most agents at once: %d; took %.1f s" % (overlap, time.monotonic() - t0),
              flush=True)
        assert 1 <= overlap <= 3, overlap
        assert killed > 0, "no kill hit a worker at work"
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            assert p.wait(60) == 0
        workers = []
        farmtest.wait_for(lambda: not orphans(w), 15, "no sandbox left behind")
        ok = True
    finally:
        for p in workers:
            if p and p.poll() is None:
                p.kill()
                p.wait(30)
        w.close(ok)


if __name__ == "__main__":
    farmtest.run([test_workers_sigkilled_during_ten_issues])
