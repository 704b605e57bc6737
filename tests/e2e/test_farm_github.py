#!/usr/bin/env python3
"""test_farm_github.py - the whole farm as a user runs it: `farm serve` with a
config pointing at the fake GitHub (tests/fakes/fake_github.py), a real bare
git remote over file:// (tests/e2e/repos.py), and the stand-in agent in the
real sandbox (bubblewrap). A person files an issue and labels it "agent"; the
fake delivers the webhooks to the farm; what the farm does shows on the fake
and in the bare remote.

Cases: a labelled issue becomes a PR; failing tests get a fix round; an agent
that changes nothing is an explained failure; the run wall limit pushes a
partial draft; cancelling (`farm cancel`, the API, closing the issue) stops a
running session and removes its sandbox.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")


def marker(text):
    """The farm's hidden marker key in a comment body, or None."""
    i = text.find("<!-- farm:")
    return text[i + 10:text.index(" -->", i)] if i >= 0 else None


def reactions(w, number):
    st, r = w.fake.api("GET", "/repos/%s/issues/%d/reactions" % (w.repo, number),
                       token=farmtest.PERSON_PAT)
    assert st == 200, (st, r)
    return [(x["content"], x["user"]["login"]) for x in r]


def status_comments(w, number, sid):
    return [c for c in w.comments(number) if marker(c["body"]) == "s%d:status" % sid]


def test_labelled_issue_becomes_pr():
    with farmtest.GitHubWorld() as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
        assert s["state"] == "review", s
        branch = "farm/%d-fix-the-greeting" % n
        assert s["branch"] == branch, s

        # the branch is in the real remote with the change, one commit on main
        assert branch in repos.branches(w.bare), repos.branches(w.bare)
        assert repos.branch_file(w.bare, branch, "greeting.txt") == "hello, world\n"
        assert repos.commit_count(w.bare, "main", branch) == 1
        assert repos.branch_file(w.bare, "main", "greeting.txt") == "hello\n"

        # one PR, from that branch to main, not a draft, linking the issue
        pulls = w.pulls()
        assert len(pulls) == 1, pulls
        pr = pulls[0]
        assert pr["head"]["ref"] == branch and pr["base"]["ref"] == "main", pr
        assert not pr["draft"], pr
        assert "#%d" % n in pr["body"], pr["body"]
        assert pr["user"]["login"] == "farm-bot"
        assert s["pr_number"] == pr["number"], (s, pr)

        # the tests passed in the session's log
        results = farmtest.session_events(w.farm, s["id"], "test_result")
        assert results and results[-1][3]["passed"] is True, results

        # comments: started (with 👀 on the issue), PR opened, one status
        sid = s["id"]
        farmtest.wait_for(lambda: any(marker(c["body"]) == "s%d:r1:pr:comment" % sid
                                      for c in w.comments(n)), 30, "the PR-opened comment")
        started = [c for c in w.comments(n) if marker(c["body"]) == "s%d:r1:started" % sid]
        assert len(started) == 1, w.comments(n)
        assert ("eyes", "farm-bot") in reactions(w, n), reactions(w, n)
        opened = [c for c in w.comments(n) if marker(c["body"]) == "s%d:r1:pr:comment" % sid]
        assert len(opened) == 1 and pr["html_url"] in opened[0]["body"], opened
        # the status comment is edited in place: one of them, ending on the PR
        farmtest.wait_for(lambda: len(status_comments(w, n, sid)) == 1
                          and "Waiting for review" in status_comments(w, n, sid)[0]["body"],
                          30, "the status comment to show the review state")
        st = status_comments(w, n, sid)[0]
        assert pr["html_url"] in st["body"], st["body"]
        assert all(c["user"] == "farm-bot" for c in w.comments(n))
        # nothing else: no duplicate of any comment
        keys = [marker(c["body"]) for c in w.comments(n)]
        assert len(keys) == len(set(keys)), keys


def test_failing_tests_get_a_fix_round():
    with farmtest.GitHubWorld() as w:
        n = w.open_issue("Finish the greeting",
                         repos.issue_body(repos.HALF, repos.REST, standin="cost 0.25"))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
        assert s["state"] == "review", s
        results = [e[3] for e in farmtest.session_events(w.farm, s["id"], "test_result")]
        assert [r["passed"] for r in results] == [False, True], results
        assert [r["round"] for r in results] == [1, 2], results
        # what the agent said each round cost adds up in the session and the digest
        with w.farm.db() as c:
            cost = c.execute("SELECT cost FROM session WHERE id = ?", (s["id"],)).fetchone()[0]
        assert abs(cost - 0.5) < 1e-9, cost
        st, digest = w.farm.get_json("/api/digest?since=1h")
        assert st == 200, (st, digest)
        assert abs(digest["totals"]["cost"] - 0.5) < 1e-9, digest["totals"]
        pulls = w.pulls()
        assert len(pulls) == 1 and not pulls[0]["draft"], pulls
        branch = pulls[0]["head"]["ref"]
        assert repos.branch_file(w.bare, branch, "greeting.txt") == "hello, world\n"


def test_failing_agent_leaves_a_draft_that_says_so():
    with farmtest.GitHubWorld() as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX, standin="exit 3"))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a draft PR")
        pulls = w.pulls()
        assert len(pulls) == 1, pulls
        assert pulls[0]["draft"], pulls[0]
        assert "the agent exited with status 3" in pulls[0]["body"], pulls[0]["body"]
        assert s["pr_number"] == pulls[0]["number"], s


def test_no_change_is_an_explained_failure():
    with farmtest.GitHubWorld() as w:
        n = w.open_issue("Think about the greeting", "No patch here, on purpose.\n")
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="the failure")
        assert s["state"] == "failed", s
        assert not s["pr_number"], s
        sid = s["id"]

        def failure():
            return [c for c in w.comments(n) if "The run failed" in c["body"]
                    and marker(c["body"]) != "s%d:status" % sid]
        got = farmtest.wait_for(failure, 30, "the failure comment")
        assert len(got) == 1, got
        # it says what the agent said (its summary)
        assert "nothing was changed" in got[0]["body"], got[0]["body"]
        assert w.pulls() == []
        assert repos.branches(w.bare) == ["main"], repos.branches(w.bare)
        # the status comment ends on the failure
        farmtest.wait_for(lambda: len(status_comments(w, n, sid)) == 1
                          and "Failed" in status_comments(w, n, sid)[0]["body"],
                          30, "the status comment to show the failure")


def test_wall_limit_pushes_partial_draft():
    # The stand-in sleeps before it applies anything, so a partial draft
    # needs an agent that works first and then outlives the wall limit: a
    # shell command that edits, says so, and sleeps (the sandbox shows it
    # nothing of this source tree, so it cannot hand over to the stand-in).
    agent = ["/bin/sh", "-c", "printf 'hello, world\\n' > greeting.txt && echo edited"
             " && exec sleep 120"]
    with farmtest.GitHubWorld(budgets={"run_wall_s": 6, "partial_margin_s": 3},
                              extra={"agent": {"command": agent}}) as w:
        n = w.open_issue("Slow greeting", "Take your time.\n")
        t0 = time.monotonic()
        s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=60, what="a draft")
        took = time.monotonic() - t0
        assert took < 40, took
        assert s["state"] == "review", s
        pulls = w.pulls()
        assert len(pulls) == 1 and pulls[0]["draft"], pulls
        assert "time limit" in pulls[0]["body"], pulls[0]["body"]
        assert repos.branch_file(w.bare, pulls[0]["head"]["ref"], "greeting.txt") \
            == "hello, world\n"
        # the agent was stopped: the tests never ran on the partial work
        steps = [e[3] for e in farmtest.session_events(w.farm, s["id"], "step")]
        assert not any(x["step"] == "test" and x["status"] == "started" for x in steps), steps


def agent_running(w, number):
    s = w.session(number)
    if not s or s["state"] != "running":
        return None
    out = farmtest.session_events(w.farm, s["id"], "output")
    return s if any("sleeping" in e[3].get("line", "") for e in out) else None


def descendants(pid):
    """Every process below pid: {pid: cmdline}."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append((int(d), cmd))
    out, todo = {}, [pid]
    while todo:
        for child, cmd in children.get(todo.pop(), []):
            out[child] = cmd
            todo.append(child)
    return out


def sandboxes(w):
    """The farm's processes running bubblewrap or the agent (pids)."""
    if not w.farm.proc:
        return set()
    return {p for p, cmd in descendants(w.farm.proc.pid).items()
            if "bwrap" in cmd or "farm-standin-agent" in cmd}


def wait_cancelled(w, number, before):
    s = w.wait_session(number, lambda s: s["state"] in FINAL, timeout=30, what="cancelled")
    assert s["state"] == "cancelled", s
    # the agent's process tree is gone (no stand-in of ours left)
    farmtest.wait_for(lambda: not (sandboxes(w) & before), 15, "the sandbox to go")
    assert w.pulls() == []
    return s


def start_slow(w, title):
    """An issue whose agent sleeps; returns (number, session, sandbox pids)
    once the agent is at work."""
    n = w.open_issue(title, repos.issue_body(repos.FIX, standin="sleep 120"))
    s = farmtest.wait_for(lambda: agent_running(w, n), 60, "the agent to run")
    mine = sandboxes(w)
    assert mine, "no sandbox below the farm"
    return n, s, mine


def test_cancel_through_the_api():
    with farmtest.GitHubWorld() as w:
        n, s, mine = start_slow(w, "Slow one")
        st, _, body = w.farm.request("POST", "/api/sessions/%d/cancel" % s["id"], body=b"{}",
                                     headers={"Authorization": "Bearer " + farmtest.ADMIN_TOKEN,
                                              "Content-Type": "application/json"})
        assert st in (200, 202), (st, body)
        wait_cancelled(w, n, mine)


def test_closing_the_issue_cancels():
    with farmtest.GitHubWorld() as w:
        n, s, mine = start_slow(w, "Slow two")
        st, r = w.fake.api("PATCH", "/repos/%s/issues/%d" % (w.repo, n), {"state": "closed"},
                           token=farmtest.PERSON_PAT)
        assert st == 200, (st, r)
        wait_cancelled(w, n, mine)
        assert "farm/%d-slow-two" % n not in repos.branches(w.bare)


def test_farm_cancel_command():
    with farmtest.GitHubWorld() as w:
        n, s, mine = start_slow(w, "Slow three")
        env = dict(w.farm.env, FARM_TOKEN=farmtest.ADMIN_TOKEN)
        p = subprocess.run([farmtest.FARM_BIN, "cancel", "--server",
                            "http://127.0.0.1:%d" % w.farm.port, str(s["id"])],
                           capture_output=True, env=env, timeout=30)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        wait_cancelled(w, n, mine)


if __name__ == "__main__":
    tests = [test_labelled_issue_becomes_pr, test_failing_tests_get_a_fix_round,
             test_failing_agent_leaves_a_draft_that_says_so,
             test_no_change_is_an_explained_failure, test_wall_limit_pushes_partial_draft,
             test_cancel_through_the_api, test_closing_the_issue_cancels,
             test_farm_cancel_command]
    only = sys.argv[1:]
    farmtest.run([t for t in tests if not only or t.__name__ in only])
