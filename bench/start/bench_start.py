#!/usr/bin/env python3
"""bench_start - how long from an issue's webhook reaching the farm to its
agent process starting, over N issues, warm against cold.

Each configuration is a real `farm serve` (tests/e2e/farmtest.GitHubWorld:
the fake GitHub delivering signed webhooks, a bare remote over file:// with
--files extra files, the stand-in agent in the real sandbox). Issues are
filed one after another (each waits for the previous session to end, so
every start is measured on an idle farm). For each:

  received  the accepted delivery's received_ms (the farm's clock, as the
            webhook was recorded)
  spawn     the agent step's "started" event: the farm is spawning the agent
            (fetch, worktree, setup are done)
  first     the agent's first output line reached the session log (the
            sandboxed process is running; includes the interpreter's start)

The warm configuration keeps --warm slots (scaling.min_warm: mirror fetched,
worktree prepared); the baseline has none (min_warm 0), in the same run.
Prints p50 / p99 of received->spawn and received->first for both and the
ratio warm/cold of the p50s. The target is a p50 (received->spawn) under
100 ms with warm slots.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("FARM_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import farmtest  # noqa: E402
import repos  # noqa: E402


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def grow_remote(w, nfiles):
    """Add nfiles small files to the world's remote (one commit on main)."""
    if nfiles <= 0:
        return
    seed = os.path.join(w.tmp, "origin-seed")
    d = os.path.join(seed, "src")
    os.makedirs(d, exist_ok=True)
    for i in range(nfiles):
        sub = os.path.join(d, "m%02d" % (i % 50))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%05d.txt" % i), "w") as f:
            f.write("file %d\n" % i)
    repos.git("add", "-A", cwd=seed)
    repos.git("commit", "-q", "-m", "more files", cwd=seed)
    repos.git("push", "-q", w.bare, "main", cwd=seed)


def measure(n, warm, nfiles):
    spawn, first = [], []
    world = farmtest.GitHubWorld(scaling={"max_agents": 4, "max_per_repo": 4, "min_warm": warm},
                                 extra={"log_level": "info"})
    grow_remote(world, nfiles)
    with world as w:
        farm = w.farm
        if warm:
            farmtest.wait_for(
                lambda: farm.get_json("/api/status")[1]["scheduler"]["warm"] >= warm,
                timeout=120, what="%d warm slots" % warm)
        for i in range(n):
            num = w.open_issue("Fix the greeting %d" % i, repos.issue_body(repos.FIX))
            s = w.wait_session(num, lambda s: s["state"] in ("review", "failed", "done"),
                               timeout=120)
            with farm.db() as c:
                (received,) = c.execute(
                    "SELECT received_ms FROM delivery WHERE session_id = ? AND outcome = 'accepted'",
                    (s["id"],)).fetchone()
            ev = farmtest.session_events(farm, s["id"])
            t_spawn = next(t for _, t, k, b in ev
                           if k == "step" and b.get("step") == "agent" and b.get("status") == "started")
            t_first = next(t for _, t, k, b in ev if k == "output" and b.get("step") == "agent")
            spawn.append(t_spawn - received)
            first.append(t_first - received)
            if warm:
                # the next issue finds its warm slot again (as a farm between issues would)
                farmtest.wait_for(
                    lambda: farm.get_json("/api/status")[1]["scheduler"]["warm"] >= warm,
                    timeout=60, what="warm slots refilled")
    return spawn, first


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=50, help="issues per configuration (50)")
    ap.add_argument("--warm", type=int, default=2, help="min_warm of the warm farm (2)")
    ap.add_argument("--files", type=int, default=2000, help="extra files in the repository (2000)")
    a = ap.parse_args()
    if not os.environ.get("FARM_BIN"):
        sys.exit("bench_start: set FARM_BIN to the farm binary")

    t0 = time.monotonic()
    cold_spawn, cold_first = measure(a.n, 0, a.files)
    warm_spawn, warm_first = measure(a.n, a.warm, a.files)
    print("bench/start: %d issues each, repository of %d files, %.0f s" %
          (a.n, a.files + 3, time.monotonic() - t0))
    print("%-28s %10s %10s" % ("received -> ...", "p50 ms", "p99 ms"))
    for name, v in (("cold  agent spawn", cold_spawn), ("warm  agent spawn", warm_spawn),
                    ("cold  agent first line", cold_first), ("warm  agent first line", warm_first)):
        print("%-28s %10.0f %10.0f" % (name, pct(v, 50), pct(v, 99)))
    ratio = pct(warm_spawn, 50) / pct(cold_spawn, 50) if pct(cold_spawn, 50) else float("nan")
    print("ratio warm/cold p50 (spawn): %.2f" % ratio)
    target = pct(warm_spawn, 50) < 100
    print("target p50 < 100 ms (warm, spawn): %s" % ("met" if target else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
