#!/usr/bin/env python3
"""test_nodes_chaos_many.py - issue 14's end-to-end test: one `farm serve`
(which runs jobs too) and two `farm worker` processes on one store
(PostgreSQL in the .pg variant, one SQLite file otherwise), the fake GitHub,
real bare remotes, the stand-in agent in the sandbox. Twenty issues; a
random node (serve or a worker) is SIGKILLed five times while it holds a
lease (chosen at random among the nodes at work), and started again. Afterwards: exactly 20 PRs, no comment posted
twice, every session terminal, no sandbox left behind on any node, no work
directory left behind (the nodes sweep them), and max_agents (3) never
exceeded across the nodes (from the overlap of the agent steps in the
session logs). Each node's worker.slots is 2, so the cap of 3 is held by the
store across nodes, not by any one node.

Random choices come from a fixed seed printed in the output (FARM_CHAOS_SEED
overrides it). The stand-in agent sleeps 0.3 s a round, so the whole test
stays within a few minutes (most of it waiting for the killed nodes'
leases to expire).
"""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from test_farm_chaos import check_exactly_once, ended, orphans, outbox_idle  # noqa: E402
from test_farm_scale import agent_intervals, max_overlap  # noqa: E402
from test_nodes_chaos import start_worker  # noqa: E402

SEED = int(os.environ.get("FARM_CHAOS_SEED", "20261214"))
ISSUES = 20
KILLS = 5
MAX_AGENTS = 3


def leasing_pids(w):
    """The pids of the processes holding a job lease now (owners read
    "host:pid:random")."""
    with w.farm.db() as c:
        rows = c.execute("SELECT lease_owner FROM job WHERE state = 'leased'").fetchall()
    return {int(r[0].split(":")[1]) for r in rows if r[0] and r[0].count(":") >= 2}


def left_dirs(w):
    out = []
    for sub in ("work", "runs"):
        d = os.path.join(w.farm.data_dir, sub)
        if os.path.isdir(d):
            out += [os.path.join(sub, e) for e in os.listdir(d)]
    return out


def test_three_nodes_twenty_issues_five_kills():
    rnd = random.Random(SEED)
    print("# seed %d" % SEED, flush=True)
    body = repos.issue_body(repos.FIX, standin="sleep 0.3")
    # worker.slots 2 on each node (6 in all) against max_agents 3: the global
    # cap binds, and serve (which wakes at once on its own intake, where the
    # workers poll) cannot take every run
    w = farmtest.GitHubWorld(scaling={"max_agents": MAX_AGENTS, "max_per_repo": MAX_AGENTS},
                             extra={"worker": {"slots": 2}})
    workers = [None, None]
    ok = False
    t0 = time.monotonic()
    try:
        w.start()
        workers = [start_worker(w, 0), start_worker(w, 1)]
        numbers = [w.open_issue("Greeting %d" % i, body) for i in range(ISSUES)]
        farmtest.wait_for(lambda: all(w.session(n) for n in numbers), 60, "20 sessions")
        killed = []
        for _ in range(KILLS):
            # a random node among those at work (0, 1: a worker; 2: serve)
            def at_work():
                pids = leasing_pids(w)
                nodes = [workers[0].pid, workers[1].pid, w.farm.proc.pid]
                return [i for i in range(3) if nodes[i] in pids]
            farmtest.wait_for(lambda: at_work() or ended(w, numbers), 180, "a node at work")
            busy = at_work()
            if not busy:
                break  # all ended
            i = rnd.choice(busy)
            time.sleep(rnd.uniform(0.0, 0.5))  # not synchronisation: where the kill lands
            if i == 2:
                w.restart()  # SIGKILL, then the same config and data again
            else:
                workers[i].kill()
                workers[i].wait(30)
                workers[i] = start_worker(w, i)
            killed.append("serve" if i == 2 else "worker-%d" % i)
        print("# killed at work: %s" % ", ".join(killed), flush=True)
        farmtest.wait_for(lambda: ended(w, numbers), 420, "20 sessions to end")
        farmtest.wait_for(lambda: outbox_idle(w), 120, "the outbox to drain")
        check_exactly_once(w, numbers)
        states = [w.session(n)["state"] for n in numbers]
        assert all(s == "review" for s in states), states
        overlap = max_overlap(agent_intervals(w.farm))
        print("# most agents at once: %d; took %.1f s" % (overlap, time.monotonic() - t0),
              flush=True)
        assert 1 <= overlap <= MAX_AGENTS, overlap
        assert killed, "no kill hit a node at work"
        farmtest.wait_for(lambda: not orphans(w), 30, "no sandbox left behind")
        # the killed runs' worktrees and run directories: swept by the nodes
        farmtest.wait_for(lambda: not left_dirs(w), 90, "no work directory left behind")
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            assert p.wait(60) == 0
        workers = []
        ok = True
    finally:
        for p in workers:
            if p and p.poll() is None:
                p.kill()
                p.wait(30)
        w.close(ok)


if __name__ == "__main__":
    farmtest.run([test_three_nodes_twenty_issues_five_kills])
