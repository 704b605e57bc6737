#!/usr/bin/env python3
"""test_ci_github.py - the CI fix loop end to end on GitHub: `farm serve`
against the fake GitHub (tests/fakes/fake_github.py: check runs, statuses,
Actions job logs behind a 302), a real bare remote and a command agent in
the sandbox. The agent fixes the greeting on a first run; in a CI fix round
it commits the prompt it was given as ci-fix-<n>.md, so the test reads on the
branch what the agent saw.

Cases: a failing check (while another one still runs) becomes exactly one fix
commit on the same branch once the checks settle, whose prompt held the
failing check's name and the end of its log (and not its beginning); the
redelivered event and late events for that commit start nothing more; the
checks passing on the fix commit are said on the PR. The same failure after
a fix round stops the loop with a comment. A failing commit status, which names
no pull request, is matched by the farm's branch. Checks on a branch that is
not the farm's, and on a repository without ci.fix, are recorded and ignored.
Checks the farm may not read are said on the PR, and the session stays in
review.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")

# A first run fixes the greeting; a CI fix round keeps its prompt as evidence.
AGENT = ["/bin/sh", "-c",
         "if grep -q 'Your task: make the pull request' \"$FARM_PROMPT_FILE\"; then"
         " n=1; while [ -e ci-fix-$n.md ]; do n=$((n+1)); done;"
         " cp \"$FARM_PROMPT_FILE\" ci-fix-$n.md; echo ci round $n;"
         " else printf 'hello, world\\n' > greeting.txt; fi"]

NOISE_HEAD = "FIRST LINE OF A LONG LOG"


def long_log(error, stamp="2026-01-01T10:00:00.1234567Z"):
    """A job log longer than the farm keeps: noise first, the error at the end,
    every line stamped the way GitHub stamps Actions logs."""
    lines = [NOISE_HEAD] + ["step %d: compiling module %d" % (i, i) for i in range(600)]
    lines += ["FAIL: test_widget", error, "Error: Process completed with exit code 1."]
    return "".join("%s %s\n" % (stamp, l) for l in lines)


def world(ci_fix=True, **kw):
    return farmtest.GitHubWorld(
        repo_extra={"ci": {"fix": ci_fix}},
        extra={"ci": {"settle_s": 1, "max_fix_rounds": 3}, "agent": {"command": AGENT}}, **kw)


def in_review(w):
    n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
    s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
    assert s["state"] == "review", s
    return n, s


def head(w, branch):
    return repos.git("rev-parse", branch, cwd=w.bare).strip()


def check(w, sha, name, conclusion, branch, log="", status="completed", events=None):
    body = {"repo": w.repo, "sha": sha, "name": name, "status": status,
            "conclusion": conclusion, "branch": branch, "log": log}
    if events:
        body["events"] = events
    return w.fake.ctl("POST", "/_fake/checks", body)


def events(w, sid, kind):
    return farmtest.session_events(w.farm, sid, kind)


def jobs(w, sid, kind, state=None):
    q = "SELECT count(*) FROM job WHERE session_id = ? AND kind = ?"
    args = [sid, kind]
    if state:
        q += " AND state = ?"
        args.append(state)
    with w.farm.db() as c:
        return c.execute(q, args).fetchone()[0]


def ci_idle(w, sid):
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM job WHERE session_id = ? AND kind = 'ci'"
                         " AND state IN ('queued', 'leased')", (sid,)).fetchone()[0] == 0


def deliveries_done(w):
    return all(d["status"] is not None for d in w.fake.ctl("GET", "/_fake/deliveries")["deliveries"])


def pr_comments(w, pr, text):
    return [c for c in w.comments(pr) if c["user"] == "farm-bot" and text in c["body"]]


def test_failing_check_becomes_one_fix_round():
    with world() as w:
        n, s = in_review(w)
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]
        h1 = head(w, branch)
        assert repos.commit_count(w.bare, "main", branch) == 1

        # lint still runs while the tests fail: nothing happens until it ends
        check(w, h1, "lint", None, branch, status="in_progress")
        failing = check(w, h1, "build / test", "failure", branch,
                        log=long_log("AssertionError: widget count 3 != 4"),
                        events=["check_run", "check_suite", "workflow_run"])
        assert failing["pr"] == pr, failing
        farmtest.wait_for(lambda: deliveries_done(w) and ci_idle(w, sid)
                          and len(events(w, sid, "ci_check")) == 3, timeout=60,
                          what="the failing check's events handled")
        assert not events(w, sid, "ci_fix"), "a round began while lint was still running"
        assert w.session(n)["runs"] == 1

        check(w, h1, "lint", "success", branch)
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=120,
                           what="the CI fix round")
        assert s["state"] == "review", s
        fixes = events(w, sid, "ci_fix")
        assert len(fixes) == 1, fixes
        assert fixes[0][3]["sha"] == h1 and fixes[0][3]["checks"] == ["build / test"], fixes

        # one fix commit on the same branch, whose prompt held the log's tail
        assert repos.commit_count(w.bare, "main", branch) == 2
        prompt = repos.branch_file(w.bare, branch, "ci-fix-1.md")
        assert prompt is not None
        assert "build / test" in prompt
        assert "AssertionError: widget count 3 != 4" in prompt
        assert "Process completed with exit code 1" in prompt
        assert NOISE_HEAD not in prompt, "the log was not cut to its tail"
        assert "lint" not in prompt.split("## Your task")[-1], "a passing check was listed"
        assert len(w.pulls()) == 1
        # the log was read at the URL the logs endpoint redirected to (another host), and
        # the farm's token did not follow the redirect there
        blobs = w.fake.ctl("GET", "/_fake/blob_requests")
        assert [b["id"] for b in blobs] == [str(failing["id"])], blobs
        assert all(b["authorization"] is None for b in blobs), blobs

        # a redelivery and a late event for the same commit start nothing
        first = [d for d in w.fake.ctl("GET", "/_fake/deliveries")["deliveries"] if d["event"] == "check_run"
                 and d["payload"]["check_run"]["conclusion"] == "failure"][0]
        w.fake.ctl("POST", "/_fake/redeliver", {"id": first["id"]})
        check(w, h1, "build / test", "failure", branch, log=long_log("AssertionError: again"))
        farmtest.wait_for(lambda: deliveries_done(w) and ci_idle(w, sid), timeout=60,
                          what="the late events handled")
        with w.farm.db() as c:
            dup = c.execute("SELECT outcome FROM delivery WHERE delivery_id = ?",
                            (first["id"],)).fetchall()
        assert dup == [("accepted",)], dup
        assert len(events(w, sid, "ci_fix")) == 1
        assert w.session(n)["runs"] == 2

        # the checks pass on the fix commit: the PR hears it, once
        h2 = head(w, branch)
        assert h2 != h1
        check(w, h2, "lint", "success", branch)
        check(w, h2, "build / test", "success", branch)
        farmtest.wait_for(lambda: pr_comments(w, pr, "CI passes after fix round 1"), timeout=60,
                          what="the passing comment")
        check(w, h2, "build / test", "success", branch)
        farmtest.wait_for(lambda: deliveries_done(w) and ci_idle(w, sid), timeout=60,
                          what="the last event handled")
        assert len(pr_comments(w, pr, "CI passes after fix round 1")) == 1
        assert w.session(n)["runs"] == 2


def test_same_failure_twice_stops_and_strangers_are_ignored():
    with world() as w:
        n, s = in_review(w)
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]
        h1 = head(w, branch)
        check(w, h1, "build / test", "failure", branch,
              log=long_log("AssertionError: flaky", stamp="2026-01-01T10:00:00.1Z"))
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=120,
                           what="the first CI fix round")
        h2 = head(w, branch)
        assert h2 != h1
        # the same failure (only the timestamps differ) on the fix commit
        check(w, h2, "build / test", "failure", branch,
              log=long_log("AssertionError: flaky", stamp="2026-01-01T11:22:33.9Z"))
        farmtest.wait_for(lambda: pr_comments(w, pr, "fails the same way after fix round 1"),
                          timeout=60, what="the stop comment")
        farmtest.wait_for(lambda: ci_idle(w, sid), timeout=30, what="the CI job done")
        assert len(events(w, sid, "ci_fix")) == 1
        verdicts = [e[3]["outcome"] for e in events(w, sid, "ci_verdict")]
        assert verdicts == ["same_failure"], verdicts
        assert w.session(n)["runs"] == 2
        assert repos.commit_count(w.bare, "main", branch) == 2

        # a check on somebody else's branch starts nothing
        check(w, h1, "build / test", "failure", "feature/other", log="boom\n")
        farmtest.wait_for(lambda: deliveries_done(w), timeout=30, what="the delivery")
        with w.farm.db() as c:
            r = c.execute("SELECT outcome, reason FROM delivery WHERE reason LIKE"
                          " '%not on a farm pull request%'").fetchall()
        assert r and all(o == "ignored" for o, _ in r), r
        assert len(events(w, sid, "ci_fix")) == 1


def test_failing_status_found_by_branch():
    """A commit status names no pull request: the farm's branch says whose it is."""
    with world() as w:
        n, s = in_review(w)
        sid, branch = s["id"], s["branch"]
        st, r = w.fake.api("POST", "/repos/%s/statuses/%s" % (w.repo, head(w, branch)),
                           {"state": "failure", "context": "ci/jenkins", "branch": branch,
                            "description": "3 tests failed in widget_test"},
                           token=farmtest.PERSON_PAT)
        assert st == 201, (st, r)
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=120,
                           what="the CI fix round")
        assert s["state"] == "review", s
        prompt = repos.branch_file(w.bare, branch, "ci-fix-1.md")
        assert "ci/jenkins" in prompt and "3 tests failed in widget_test" in prompt, prompt
        assert "no log the farm can read" in prompt
        assert [e[3]["checks"] for e in events(w, sid, "ci_fix")] == [["ci/jenkins"]]


def test_unreadable_checks_do_not_fail_the_session():
    with world() as w:
        n, s = in_review(w)
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]
        w.fake.ctl("POST", "/_fake/fail", {"count": 5, "status": 403, "path": "/check-runs$",
                                           "message": "Resource not accessible by integration"})
        check(w, head(w, branch), "build / test", "failure", branch, log="boom\n")
        got = farmtest.wait_for(lambda: pr_comments(w, pr, "could not read the CI checks"),
                                timeout=60, what="the comment saying the checks are unreadable")
        assert "Resource not accessible" in got[0]["body"], got
        farmtest.wait_for(lambda: ci_idle(w, sid), timeout=30, what="the CI job done")
        s = w.session(n)
        assert s["state"] == "review" and s["runs"] == 1, s
        assert [e[3]["outcome"] for e in events(w, sid, "ci_verdict")] == ["unreadable"]


def test_off_unless_configured():
    with world(ci_fix=False) as w:
        n, s = in_review(w)
        sid, branch = s["id"], s["branch"]
        check(w, head(w, branch), "build / test", "failure", branch, log="boom\n")
        farmtest.wait_for(lambda: deliveries_done(w), timeout=30, what="the delivery")
        with w.farm.db() as c:
            r = c.execute("SELECT outcome FROM delivery WHERE reason LIKE"
                          " '%CI fixing is off%'").fetchall()
        assert r == [("ignored",)], r
        assert jobs(w, sid, "ci") == 0
        assert w.session(n)["runs"] == 1


if __name__ == "__main__":
    farmtest.run([test_failing_check_becomes_one_fix_round,
                  test_same_failure_twice_stops_and_strangers_are_ignored,
                  test_failing_status_found_by_branch,
                  test_unreadable_checks_do_not_fail_the_session,
                  test_off_unless_configured])
