#!/usr/bin/env python3
"""bench_setup - how long from an issue's webhook reaching the farm to its
agent being spawned, on the second and later issues of a repository, with
the setup cache against without it, in the same run.

Each configuration is a real `farm serve` (tests/e2e/farmtest.GitHubWorld:
the fake GitHub, a bare remote over file://, an agent command in the real
sandbox). The repository's setup command stands for `npm ci`: it waits
--fetch-s seconds (the registry's download) and writes --deps files of 4 KiB
into node_modules/ and a few into HOME (the extraction). With the cache
(repos[].setup_cache_key: ["package-lock.json"]) the first issue runs setup
and keeps what it made; the next ones restore it. Without it every issue
runs setup. The first issue of each configuration is not measured; then -n
issues are, one after another on an idle farm:

  received  the accepted delivery's received_ms (the farm's clock)
  spawn     the agent step's "started" event (fetch, worktree, setup done)
  setup     the "setup" event's ms (ran: the command; restored: the copy)

Prints the medians and the ratio cached/uncached.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("FARM_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
import farmtest  # noqa: E402
import repos  # noqa: E402

INSTALL_PY = """import os, sys, time
time.sleep(float(sys.argv[1]))
n = int(sys.argv[2])
block = b"x" * 4096
for i in range(n):
    d = "node_modules/pkg%03d" % (i % 200)
    os.makedirs(d, exist_ok=True)
    with open("%s/f%05d.js" % (d, i), "wb") as f:
        f.write(block)
h = os.path.join(os.environ["HOME"], ".npm", "_cacache")
os.makedirs(h, exist_ok=True)
for i in range(20):
    with open(os.path.join(h, "c%02d" % i), "wb") as f:
        f.write(block)
print("installed", n)
"""

AGENT = ["/bin/sh", "-c", "printf 'hello, world\\n' > greeting.txt"]


def push_project(w, deps, fetch_s):
    seed = os.path.join(w.tmp, "origin-seed")
    for name, text in (("install.py", INSTALL_PY), ("package-lock.json", '{"lockfileVersion": 3}\n'),
                       (".gitignore", "node_modules/\n")):
        with open(os.path.join(seed, name), "w") as f:
            f.write(text)
    repos.git("add", "-A", cwd=seed)
    repos.git("commit", "-q", "-m", "a project with dependencies", cwd=seed)
    repos.git("push", "-q", w.bare, "main", cwd=seed)


def measure(n, cached, deps, fetch_s):
    spawn, setup = [], []
    extra = {"setup": "python3 install.py %s %d" % (fetch_s, deps)}
    if cached:
        extra["setup_cache_key"] = ["package-lock.json"]
    world = farmtest.GitHubWorld(repo_extra=extra, extra={"log_level": "info",
                                                          "agent": {"command": AGENT}})
    push_project(world, deps, fetch_s)
    with world as w:
        farm = w.farm
        for i in range(n + 1):
            num = w.open_issue("Complete the greeting %d" % i, "Say hello, world.")
            s = w.wait_session(num, lambda s: s["state"] in ("review", "failed", "done"),
                               timeout=300)
            assert s["state"] == "review", s
            if i == 0:
                continue  # the first issue of the repository: setup runs either way
            with farm.db() as c:
                (received,) = c.execute(
                    "SELECT received_ms FROM delivery WHERE session_id = ? AND outcome = 'accepted'",
                    (s["id"],)).fetchone()
            ev = farmtest.session_events(farm, s["id"])
            t_spawn = next(t for _, t, k, b in ev
                           if k == "step" and b.get("step") == "agent" and b.get("status") == "started")
            st = next(b for _, t, k, b in ev if k == "setup")
            assert st["mode"] == ("restored" if cached else "ran"), st
            spawn.append(t_spawn - received)
            setup.append(st["ms"])
    return spawn, setup


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="measured issues per configuration (5)")
    ap.add_argument("--deps", type=int, default=3000, help="files setup writes (3000)")
    ap.add_argument("--fetch-s", type=float, default=1.0,
                    help="seconds setup waits, standing for the download (1.0)")
    a = ap.parse_args()
    if not os.environ.get("FARM_BIN"):
        sys.exit("bench_setup: set FARM_BIN to the farm binary")
    t0 = time.monotonic()
    un_spawn, un_setup = measure(a.n, False, a.deps, a.fetch_s)
    ca_spawn, ca_setup = measure(a.n, True, a.deps, a.fetch_s)
    med = statistics.median
    print("bench/setup: %d issues each after the first, setup = %.1f s wait + %d files, %.0f s" %
          (a.n, a.fetch_s, a.deps, time.monotonic() - t0))
    print("%-34s %12s" % ("", "median ms"))
    print("%-34s %12.0f" % ("without cache: setup ran", med(un_setup)))
    print("%-34s %12.0f" % ("with cache:    setup restored", med(ca_setup)))
    print("%-34s %12.0f" % ("without cache: received -> agent", med(un_spawn)))
    print("%-34s %12.0f" % ("with cache:    received -> agent", med(ca_spawn)))
    print("ratio cached/uncached (received -> agent): %.2f" % (med(ca_spawn) / med(un_spawn)))
    print("ratio restored/ran (setup step):            %.2f" % (med(ca_setup) / med(un_setup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
