#!/usr/bin/env python3
"""test_plan_github.py - plan first, end to end: `farm serve` against the fake
GitHub, a real bare remote and the stand-in agent in the sandbox.

Cases: `/farm plan` on an issue: the agent's first round writes a plan
(FARM_PLAN_FILE), the farm posts it on the issue once, the session waits
`awaiting_approval` and the digest lists it; a comment from alice revises
the plan (a second plan round); `/farm approve` starts the implementation,
whose prompt holds the approved plan, and a PR follows. An issue labelled
`plan` starts with a plan too, and a stranger's `/farm approve` does
nothing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")
MALLORY_PAT = "ghp_mallory_token_for_tests_0123456789"


def comment(w, number, body, token=farmtest.PERSON_PAT):
    st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, number),
                       {"body": body}, token=token)
    assert st == 201, (st, c)
    return c


def plans_posted(w, n):
    return [c for c in w.comments(n) if c["user"] == "farm-bot"
            and "A plan for this issue" in c["body"]]


def test_plan_comment_approve_pr():
    with farmtest.GitHubWorld(extra={"review": {"debounce_s": 1}}) as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX), label=False)
        comment(w, n, "Let's see a plan first.\n\n/farm plan\n")
        s = w.wait_session(n, lambda s: s["state"] in FINAL + ("awaiting_approval",),
                           what="the plan")
        assert s["state"] == "awaiting_approval", s
        sid = s["id"]
        assert s["pr_number"] == 0 and w.pulls() == []
        farmtest.wait_for(lambda: plans_posted(w, n), timeout=30, what="the plan on the issue")
        assert "greeting.txt" in plans_posted(w, n)[0]["body"]
        assert "/farm approve" in plans_posted(w, n)[0]["body"]
        plan_ev = farmtest.session_events(w.farm, sid, "plan")
        assert len(plan_ev) == 1 and plan_ev[0][3]["plan"].startswith("Stand-in plan"), plan_ev
        # nothing was committed or pushed by the plan round
        assert farmtest.session_events(w.farm, sid, "pushed") == []
        assert repos.branches(w.bare) == ["main"]

        # the review queue and the digest show it
        st, d = w.farm.get_json("/api/digest")
        assert st == 200, (st, d)
        assert [p["id"] for p in d["plans"]] == [sid], d["plans"]
        assert d["plans"][0]["plan"].startswith("Stand-in plan"), d["plans"][0]
        assert d["totals"]["plans"] == 1, d["totals"]

        # a comment revises it: a second plan round, posted once
        comment(w, n, "Please also say how you will test it.")
        farmtest.wait_for(lambda: len(plans_posted(w, n)) == 2, timeout=60,
                          what="the revised plan")
        assert "revised" in plans_posted(w, n)[1]["body"]
        s = w.wait_session(n, lambda s: s["state"] == "awaiting_approval" and s["runs"] == 2,
                           what="waiting again")

        # a stranger cannot approve it
        w.fake.ctl("POST", "/_fake/state", {"tokens": {MALLORY_PAT: "mallory"}})
        comment(w, n, "/farm approve", token=MALLORY_PAT)
        farmtest.wait_for(lambda: [c for c in w.comments(n) if "write access" in c["body"]],
                          timeout=30, what="the polite refusal")
        assert w.session(n)["state"] == "awaiting_approval"

        # alice approves: the implementation, with the plan in its prompt, then a PR
        comment(w, n, "/farm approve")
        s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=120, what="the PR")
        assert s["state"] == "review" and s["pr_number"] > 0, s
        assert farmtest.session_events(w.farm, sid, "plan_approved")
        starts = farmtest.session_events(w.farm, sid, "run_started")
        assert [e[3]["kind"] for e in starts] == ["plan", "plan", "run"], starts
        out = [e[3]["line"] for e in farmtest.session_events(w.farm, sid, "output")
               if e[0] > starts[-1][0] and e[3].get("step") == "agent"]
        assert any("following the approved plan: Stand-in plan (revised" in l for l in out), out
        assert repos.branch_file(w.bare, s["branch"], "greeting.txt") == "hello, world\n"
        assert len(plans_posted(w, n)) == 2
        st, d = w.farm.get_json("/api/digest")
        assert d["plans"] == [], d["plans"]


def test_plan_label():
    with farmtest.GitHubWorld() as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX), label=False)
        st, r = w.fake.api("POST", "/repos/%s/issues/%d/labels" % (w.repo, n),
                           {"labels": ["plan"]}, token=farmtest.PERSON_PAT)
        assert st == 200, (st, r)
        st, r = w.fake.api("POST", "/repos/%s/issues/%d/labels" % (w.repo, n),
                           {"labels": ["agent"]}, token=farmtest.PERSON_PAT)
        assert st == 200, (st, r)
        s = w.wait_session(n, lambda s: s["state"] in FINAL + ("awaiting_approval",),
                           what="the plan")
        assert s["state"] == "awaiting_approval", s
        farmtest.wait_for(lambda: plans_posted(w, n), timeout=30, what="the plan on the issue")


if __name__ == "__main__":
    farmtest.run([test_plan_comment_approve_pr, test_plan_label])
