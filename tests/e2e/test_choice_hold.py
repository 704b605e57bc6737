#!/usr/bin/env python3
"""test_choice_hold.py - which agent runs an issue, and the hold, end to end
(docs/commands.md, docs/agents.md): `farm serve` against the fake GitHub and
a real bare remote, the agent configured as a `command` (a small script that
writes CMD.txt), the repository allowing `command` and `standin`.

Cases:
- presets: an issue labelled `agent:standin` runs the stand-in (its patch
  lands, session.agent "standin"); one without runs the default "command";
  one labelled `agent:codex` starts nothing and gets a comment naming the
  allowed presets and how to allow more.
- hold: `/farm hold` on an unlabelled issue; then the trigger label and a
  `/farm run` start nothing (the run's reply says it is on hold);
  `/farm unhold`, then `/farm run` starts the work and it reaches review.
- parked: a revision queued (waiting out the review debounce) when the hold
  comes does not start: its job ends "parked"; `/farm unhold` queues it
  again and the revision runs.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")
AGENT = r'''
import os
with open("CMD.txt", "w") as f:
    f.write("by the command preset\n")
with open(os.environ["FARM_SUMMARY_FILE"], "w") as f:
    f.write("Wrote CMD.txt.\n")
'''


def world(extra=None):
    return farmtest.GitHubWorld(
        repo_extra={"test": "true", "agents": ["command", "standin"]},
        extra=dict({"agent": {"command": ["python3", "-c", AGENT]}}, **(extra or {})))


def open_labelled(w, title, body, labels):
    st, issue = w.fake.api("POST", "/repos/%s/issues" % w.repo, {"title": title, "body": body},
                           token=farmtest.PERSON_PAT)
    assert st == 201, (st, issue)
    n = issue["number"]
    if labels:
        st, r = w.fake.api("POST", "/repos/%s/issues/%d/labels" % (w.repo, n),
                           {"labels": labels}, token=farmtest.PERSON_PAT)
        assert st == 200, (st, r)
    return n


def comment(w, n, body):
    st, r = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, n), {"body": body},
                       token=farmtest.PERSON_PAT)
    assert st == 201, (st, r)


def farm_said(w, n, text):
    def check():
        for c in w.comments(n):
            if text in c["body"]:
                return c["body"]
        return None
    return farmtest.wait_for(check, timeout=30, what="a comment saying %r" % text)


def test_presets_per_issue():
    with world() as w:
        a = open_labelled(w, "Fix the greeting", repos.issue_body(repos.FIX),
                          ["agent:standin", "agent"])
        b = open_labelled(w, "Write CMD.txt", "Please write CMD.txt.", ["agent"])
        c = open_labelled(w, "Use codex", "Please.", ["agent:codex", "agent"])
        sa = w.wait_session(a, lambda s: s["state"] in FINAL)
        sb = w.wait_session(b, lambda s: s["state"] in FINAL)
        assert sa["state"] == "review" and sa["agent"] == "standin", sa
        assert sb["state"] == "review" and sb["agent"] == "command", sb
        assert repos.git("show", "%s:greeting.txt" % sa["branch"], cwd=w.bare) == "hello, world\n"
        assert repos.git("show", "%s:CMD.txt" % sb["branch"], cwd=w.bare) == \
            "by the command preset\n"
        _, api = w.farm.get_json("/api/sessions/%d" % sa["id"])
        assert api["agent"] == "standin", api
        body = farm_said(w, c, "is not allowed for this repository")
        assert "`codex`" in body and "`command`, `standin`" in body, body
        assert "agents" in body, body
        assert w.session(c) is None, w.session(c)


def test_hold_then_unhold():
    with world() as w:
        n = open_labelled(w, "Write CMD.txt", "Please write CMD.txt.", [])
        comment(w, n, "/farm hold")
        farm_said(w, n, "On hold: nothing new starts")
        # the trigger label starts nothing while held
        st, r = w.fake.api("POST", "/repos/%s/issues/%d/labels" % (w.repo, n),
                           {"labels": ["agent"]}, token=farmtest.PERSON_PAT)
        assert st == 200, (st, r)
        comment(w, n, "/farm run")
        farm_said(w, n, "This issue is on hold")
        with w.farm.db() as c:
            rows = c.execute("SELECT outcome, reason FROM delivery WHERE number = ?",
                             (n,)).fetchall()
        assert any(o == "ignored" and "on hold" in (why or "") for o, why in rows), rows
        assert w.session(n) is None, w.session(n)
        comment(w, n, "/farm unhold")
        farm_said(w, n, "Hold lifted")
        comment(w, n, "/farm run")
        s = w.wait_session(n, lambda s: s["state"] in FINAL)
        assert s["state"] == "review" and s["agent"] == "command", s


def kinds(w, sid):
    return [k for _, _, k, _ in farmtest.session_events(w.farm, sid)]


def test_hold_parks_queued_work():
    with world({"review": {"debounce_s": 3}}) as w:
        n = open_labelled(w, "Write CMD.txt", "Please write CMD.txt.", ["agent"])
        s = w.wait_session(n, lambda s: s["state"] in FINAL)
        assert s["state"] == "review" and s["runs"] == 1, s
        sid, pr = s["id"], s["pr_number"]
        # a revision asked on the PR waits out the debounce; the hold comes first
        comment(w, pr, "@farm-bot please have another look")
        comment(w, n, "/farm hold")
        farmtest.wait_for(lambda: "parked" in kinds(w, sid), timeout=30, what="the job parked")
        farm_said(w, n, "| **On hold** | by alice: nothing new starts until `/farm unhold` |")
        assert kinds(w, sid).count("run_started") == 1, kinds(w, sid)
        assert w.session(n)["runs"] == 1, w.session(n)
        comment(w, n, "/farm unhold")
        farm_said(w, n, "the work that was waiting when the hold came starts now")
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL)
        ks = kinds(w, sid)
        assert ks.count("run_started") == 2 and "unparked" in ks, ks
        assert ks.index("parked") < ks.index("unparked") < len(ks) - 1 - ks[::-1].index("run_started"), ks


if __name__ == "__main__":
    farmtest.run([test_presets_per_issue, test_hold_then_unhold, test_hold_parks_queued_work])
