#!/usr/bin/env python3
"""bench_nodes - the farm on several processes sharing one store.

1. Webhook intake, PostgreSQL against SQLite: bench_webhook (signed
   deliveries over keep-alive connections to `farm serve --intake-only`)
   with the store in SQLite (the baseline) and in a fresh schema of a
   throwaway PostgreSQL (tests/support/pg-start: Unix socket, fsync on),
   alternately, --rounds times; medians of deliveries/s and p99, and the
   ratio PostgreSQL/SQLite.

2. Agents started per second on 1, 2 and 3 `farm worker` processes: a
   `farm serve --intake-only` takes the webhooks, K workers (worker.slots
   each, scaling.max_agents high enough never to bind) run the stand-in
   agent in the real sandbox, sleeping --sleep seconds. --issues issues are
   filed at once; the figure is the agent starts per second: the number of
   agent steps over the time from the first start to the last start plus
   one agent step's mean length (so runs in waves of `slots` are not
   counted as faster than they are), from the session logs (the farm's
   clock), and the ratio against one worker. All on PostgreSQL (the
   multi-node store). The whole run of each takes at least a minute for
   another reason: GitHub's write pacing (80 a minute) is shared by the
   nodes, and every issue makes several writes.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("FARM_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))


def pg_start(d):
    p = subprocess.run([os.path.join(SRC, "tests", "support", "pg-start"), d],
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        sys.exit("bench_nodes: cannot start PostgreSQL: " + p.stderr.decode())
    return p.stdout.decode().strip().splitlines()[-1]


def pg_stop(d):
    subprocess.run([os.path.join(SRC, "tests", "support", "pg-stop"), d],
                   capture_output=True, timeout=120)


LINE = re.compile(r"^\s+farm\s+(\d+) deliveries/s\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms")


def intake_once(store, n):
    """deliveries/s and p99 ms of the median run of one bench_webhook."""
    exe = os.environ.get("BENCH_WEBHOOK") or "bench_webhook"
    p = subprocess.run([exe, "--intake-only", "--runs", "1", "-n", str(n), "-c", "16",
                        "--store", store], capture_output=True, timeout=1200)
    out = p.stdout.decode()
    if p.returncode != 0:
        sys.exit("bench_nodes: bench_webhook failed:\n" + out + p.stderr.decode())
    # the last "farm" line is the median block's
    m = [LINE.match(x) for x in out.splitlines()]
    m = [x for x in m if x][-1]
    return float(m.group(1)), float(m.group(3))


def intake(farmtest, n, rounds):
    res = {"sqlite": [], "postgresql": []}
    for r in range(rounds):
        for name in ("sqlite", "postgresql"):
            store = "sqlite:" if name == "sqlite" else farmtest.pg_schema_url()
            res[name].append(intake_once(store, n))
    print("webhook intake, %d deliveries x %d rounds (farm serve --intake-only):" % (n, rounds))
    med = {}
    for name, v in res.items():
        med[name] = (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        print("  %-10s %7.0f deliveries/s   p99 %7.2f ms   (runs: %s)" % (
            name, med[name][0], med[name][1], ", ".join("%.0f" % x[0] for x in v)))
    print("  ratio postgresql/sqlite throughput: %.2f" % (med["postgresql"][0] / med["sqlite"][0]))


def agent_steps(w):
    """[(start_ms, end_ms)] of the agent steps, by start."""
    from test_farm_scale import agent_intervals
    return sorted(agent_intervals(w.farm))


def starts_with(farmtest, repos, k, issues, sleep, slots):
    from test_farm_chaos import ended
    from test_nodes_chaos import start_worker
    body = repos.issue_body(repos.FIX, standin="sleep %g" % sleep)
    w = farmtest.GitHubWorld(scaling={"max_agents": 64, "max_per_repo": 64},
                             extra={"worker": {"slots": slots}})
    w.farm.serve_args = ["--intake-only"]
    workers = []
    try:
        w.start()
        workers = [start_worker(w, i) for i in range(k)]
        # every worker beating: all are ready before the issues come
        farmtest.wait_for(lambda: len(w.farm.get_json("/api/nodes")[1]["nodes"]) == k, 60,
                          "%d workers" % k)
        t0 = time.monotonic()
        numbers = [w.open_issue("Greeting %d" % i, body) for i in range(issues)]
        farmtest.wait_for(lambda: ended(w, numbers), 600, "%d sessions to end" % issues)
        wall = time.monotonic() - t0
        st = agent_steps(w)
        span = (st[-1][0] - st[0][0]) / 1000.0 if st else float("nan")
        step = statistics.mean((b - a) / 1000.0 for a, b in st) if st else float("nan")
        rate = len(st) / (span + step) if st else float("nan")
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            p.wait(60)
        workers = []
        return rate, len(st), wall, step
    finally:
        for p in workers:
            p.kill()
            p.wait(30)
        w.close(True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000, help="deliveries per intake run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--issues", type=int, default=24)
    ap.add_argument("--sleep", type=float, default=2.0, help="the stand-in agent's sleep, s")
    ap.add_argument("--slots", type=int, default=2, help="worker.slots of each worker")
    ap.add_argument("--skip-intake", action="store_true")
    a = ap.parse_args()

    pgdir = tempfile.mkdtemp(prefix="bench-nodes-pg-")
    os.environ["FARM_TEST_STORE_URL"] = pg_start(pgdir)
    import farmtest
    import repos
    try:
        print("load average at start: %.2f %.2f %.2f on %d CPUs" % (os.getloadavg() +
                                                                    (os.cpu_count(),)))
        if not a.skip_intake:
            intake(farmtest, a.n, a.rounds)
        print("agents started per second, stand-in agent sleeping %g s, %d issues, "
              "worker.slots %d, farm serve --intake-only + K workers on PostgreSQL:" % (
                  a.sleep, a.issues, a.slots))
        base = None
        for k in (1, 2, 3):
            rate, n, wall, step = starts_with(farmtest, repos, k, a.issues, a.sleep, a.slots)
            base = base or rate
            print("  %d worker%s %6.2f starts/s  (%d starts, agent step %.2f s; all done in %.1f s)"
                  "  ratio to 1: %.2f (ideal %d)  load %.2f" % (
                      k, " " if k == 1 else "s", rate, n, step, wall, rate / base, k,
                      os.getloadavg()[0]), flush=True)
    finally:
        pg_stop(pgdir)


if __name__ == "__main__":
    main()
