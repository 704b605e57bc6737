#!/usr/bin/env python3
"""test_farm_chaos.py - exactly once through the whole farm (`farm serve`,
the fake GitHub, real bare remotes, the stand-in agent in the sandbox) when
things go wrong.

Cases:
- the tracker answers 500 or 429 (with Retry-After) to about 30% of the
  farm's writes: every issue still ends with one PR and each of the farm's
  comments is on the issue once;
- the farm is SIGKILLed at random moments during a 20-issue run and started
  again on the same data directory, ten times over: every issue ends with
  exactly one PR and no comment is posted twice.

Random choices come from a fixed seed printed in the output (FARM_CHAOS_SEED
overrides it, to replay or explore).
"""
import collections
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

SEED = int(os.environ.get("FARM_CHAOS_SEED", "20261121"))
WRITES = "/(comments|pulls|reactions)(/\\d+)?$"


def marker(text):
    i = text.find("<!-- farm:")
    return text[i + 10:text.index(" -->", i)] if i >= 0 else None


def arm(fake, rnd, rules=150):
    """Make about 30% of the farm's writes fail: each rule lets 1..3 writes of
    its method through, then fails one with a 500 or a 429 (Retry-After 1)."""
    fake.ctl("DELETE", "/_fake/fail")
    for i in range(rules):
        rule = {"method": "PATCH" if i % 4 == 3 else "POST", "skip": rnd.randint(1, 3),
                "path": WRITES}
        if rnd.random() < 0.5:
            rule["status"] = 500
        else:
            rule.update(status=429, retry_after=1)
        fake.ctl("POST", "/_fake/fail", rule)


def ended(w, numbers):
    ss = [w.session(n) for n in numbers]
    return all(s and s["state"] in ("review", "failed", "done", "cancelled") for s in ss)


def outbox_idle(w):
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0] == 0


def orphans(w):
    """Processes left running bubblewrap over this test's directories."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"bwrap") and any(w.tmp.encode() in a for a in cmd):
            out.append(int(d))
    return out


def check_exactly_once(w, numbers):
    """Every issue: session in review with its PR; one PR per branch, with
    the change in the remote; each farm comment once; one status comment."""
    state = w.state()
    pulls = state["pulls"]
    by_head = collections.Counter(p["head"]["ref"] for p in pulls)
    dup = {h: k for h, k in by_head.items() if k > 1}
    assert not dup, "branches with more than one PR: %s" % dup
    assert len(pulls) == len(numbers), (len(pulls), len(numbers))
    comments = state["comments"]
    for n in numbers:
        s = w.session(n)
        assert s["state"] == "review", s
        mine = [p for p in pulls if p["head"]["ref"] == s["branch"]]
        assert len(mine) == 1, (n, s["branch"], [p["head"]["ref"] for p in pulls])
        assert s["pr_number"] == mine[0]["number"], (s, mine[0]["number"])
        assert "#%d" % n in mine[0]["body"]
        assert repos.branch_file(w.bare, s["branch"], "greeting.txt") == "hello, world\n"
        keys = [marker(c["body"]) for c in comments if c["issue"] == n]
        counts = collections.Counter(keys)
        twice = {k: v for k, v in counts.items() if v > 1}
        assert not twice, "issue %d: comments posted more than once: %s" % (n, twice)
        sid = s["id"]
        for k in ("s%d:status" % sid, "s%d:r1:started" % sid, "s%d:r1:pr:comment" % sid):
            assert counts.get(k) == 1, (n, k, keys)
        assert None not in counts, "issue %d has a comment without a marker" % n
    with w.farm.db() as c:
        failed = c.execute("SELECT idem_key, last_error FROM outbox WHERE state = 'failed'"
                           ).fetchall()
    assert not failed, failed


def at_work(w):
    """This farm process holds a job's lease: one of its runs is at work now (a
    lease left by a killed process does not count; its owner names its pid)."""
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM job WHERE state = 'leased' AND lease_owner LIKE ?",
                         ("%%:%d:%%" % w.farm.proc.pid,)).fetchone()[0] > 0


def test_tracker_failing_30_percent_of_writes():
    rnd = random.Random(SEED)
    print("# seed %d" % SEED, flush=True)
    with farmtest.GitHubWorld() as w:
        arm(w.fake, rnd)
        numbers = [w.open_issue("Greeting %d" % i, repos.issue_body(repos.FIX)) for i in range(5)]
        farmtest.wait_for(lambda: ended(w, numbers), 150, "5 sessions to end")
        farmtest.wait_for(lambda: outbox_idle(w), 120, "the outbox to drain")
        check_exactly_once(w, numbers)
        stats = w.fake.ctl("GET", "/_fake/stats")["by_status"]
        print("# fake GitHub answered: %s" % stats, flush=True)
        assert stats.get("500", 0) > 0 and stats.get("429", 0) > 0, stats


def test_sigkill_ten_times_during_twenty_issues():
    rnd = random.Random(SEED + 1)
    print("# seed %d" % (SEED + 1), flush=True)
    body = repos.issue_body(repos.FIX, standin="sleep 0.3")
    t0 = time.monotonic()
    with farmtest.GitHubWorld() as w:
        numbers = [w.open_issue("Greeting %d" % i, body) for i in range(20)]
        # every delivery is in the store before the first kill (the fake does
        # not redeliver to a farm that is down)
        farmtest.wait_for(lambda: all(w.session(n) for n in numbers), 60, "20 sessions")
        kills = []
        for i in range(10):
            if i == 0:
                # the first kill lands while a run is at work: wait for this
                # process to hold a lease (the event), so a slow machine (a
                # sanitizer build under load) cannot make every kill land
                # before the first lease; the others at random moments
                farmtest.wait_for(lambda: at_work(w) or ended(w, numbers), 60, "a run at work")
                wait = rnd.uniform(0.0, 0.3)
            else:
                wait = rnd.uniform(0.2, 2.5)
            time.sleep(wait)  # not synchronisation: where the kill lands is the point
            kills.append(round(wait, 2))
            w.farm.kill()
            # no sandbox outlives the farm (bubblewrap dies with its parent)
            farmtest.wait_for(lambda: not orphans(w), 15, "the sandboxes to go")
            w.farm.start()  # on the same data directory
            w.hook()
        print("# killed after %s s of each life (the first after a run was at work)" % kills,
              flush=True)
        farmtest.wait_for(lambda: ended(w, numbers), 180, "20 sessions to end")
        farmtest.wait_for(lambda: outbox_idle(w), 120, "the outbox to drain")
        check_exactly_once(w, numbers)
        # the kills hit work in progress: some runs were taken up again
        with w.farm.db() as c:
            redone = c.execute("SELECT count(*) FROM job WHERE attempts >= 2").fetchone()[0]
        print("# jobs taken up again: %d; took %.1f s" % (redone, time.monotonic() - t0),
              flush=True)
        assert redone > 0, "no kill hit a run at work"


if __name__ == "__main__":
    tests = [test_tracker_failing_30_percent_of_writes, test_sigkill_ten_times_during_twenty_issues]
    only = sys.argv[1:]
    farmtest.run([t for t in tests if not only or t.__name__ in only])
