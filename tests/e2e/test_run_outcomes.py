#!/usr/bin/env python3
"""test_run_outcomes.py - what a person reads about a run's outcome, end to
end: `farm serve` against the fake GitHub (tests/fakes/fake_github.py), a real
bare remote (tests/e2e/repos.py) and the stand-in agent in the sandbox.

Cases: a review that changes nothing leaves a good session in review and says
so on the PR (the stand-in does not re-apply the issue's patch); the commit on
the PR branch credits the person who asked (Co-authored-by); a draft PR with
failing tests is called a draft, and why, in the comments, the status comment,
the session's JSON (/api/sessions, /api/digest: pr_draft, pr_draft_reason) and
the stand-in's summary; the 👀 comment points at the status comment below it.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")


def marker(text):
    """The farm's hidden marker key in a comment body, or None."""
    i = text.find("<!-- farm:")
    return text[i + 10:text.index(" -->", i)] if i >= 0 else None


def world(**kw):
    extra = {"review": {"debounce_s": 1}}
    extra.update(kw.pop("extra", {}))
    return farmtest.GitHubWorld(extra=extra, **kw)


def review(w, pr, event, body, comments=()):
    st, r = w.fake.api("POST", "/repos/%s/pulls/%d/reviews" % (w.repo, pr),
                       {"event": event, "body": body, "comments": list(comments)},
                       token=farmtest.PERSON_PAT)
    assert st == 200, (st, r)
    return r


def commit_message(bare, branch):
    return repos.git("log", "-1", "--format=%an <%ae>%n%B", branch, cwd=bare)


def test_review_without_change_goes_back_to_review():
    with world() as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
        assert s["state"] == "review", s
        sid, pr = s["id"], s["pr_number"]
        assert pr > 0, s

        # the commit credits alice, who opened and labelled the issue
        msg = commit_message(w.bare, s["branch"])
        assert re.search(r"\n\nCo-authored-by: alice <(\d+\+)?alice@users\.noreply\.github\.com>\n",
                         msg), msg
        assert msg.startswith("farm-bot <"), msg

        # a review with a question and no patch: a revision that changes nothing
        review(w, pr, "REQUEST_CHANGES", "Why 'hello, world' and not 'hi'?")
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=120,
                           what="the revision's end")
        assert s["state"] == "review", s
        fin = farmtest.session_events(w.farm, sid, "run_finished")
        assert fin[-1][3]["outcome"] == "unchanged", fin[-1]
        # no output of the agent says it re-applied the issue's patch
        out = [e[3]["line"] for e in farmtest.session_events(w.farm, sid, "output")
               if e[3].get("step") == "agent" and e[0] > fin[-2][0]]
        assert not [line for line in out if "patch failed" in line or "does not apply" in line], out

        def said():
            return [c for c in w.comments(pr) if "The revision changed nothing" in c["body"]]
        got = farmtest.wait_for(said, 30, "the PR comment")
        assert len(got) == 1, got
        assert "hold no patch" in got[0]["body"], got[0]["body"]
        assert not [c for c in w.comments(n) if "The run failed" in c["body"]], w.comments(n)
        assert len(farmtest.session_events(w.farm, sid, "pushed")) == 1
        assert w.pulls()[0]["state"] == "open"


def test_draft_is_called_a_draft():
    with world(repo_extra={"max_fix_rounds": 1}) as w:
        n = w.open_issue("Finish the greeting", repos.issue_body(repos.HALF))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a draft PR")
        assert s["state"] == "review", s
        sid = s["id"]
        pulls = w.pulls()
        assert len(pulls) == 1 and pulls[0]["draft"], pulls

        # the stand-in's summary (its last round had no patch) is true to the branch
        assert "nothing was changed" not in pulls[0]["body"], pulls[0]["body"]
        assert "changed nothing more" in pulls[0]["body"], pulls[0]["body"]

        # the store and the API say draft and why
        assert s["pr_draft"] == 1, s
        assert s["pr_draft_reason"] == "the tests still fail after 2 rounds", s
        st, one = w.farm.get_json("/api/sessions/%d" % sid)
        assert st == 200, (st, one)
        assert one["pr_draft"] is True, one
        assert one["pr_draft_reason"] == "the tests still fail after 2 rounds", one
        assert round(one["agent_seconds"], 3) == one["agent_seconds"], one
        st, lst = w.farm.get_json("/api/sessions?state=review")
        assert st == 200, (st, lst)
        listed = lst["sessions"] if isinstance(lst, dict) else lst
        assert [x for x in listed if x["id"] == sid and x["pr_draft"] is True], lst
        st, digest = w.farm.get_json("/api/digest?since=1h")
        assert st == 200, (st, digest)
        mine = [x for x in digest["review"] if x["id"] == sid]
        assert mine and mine[0]["pr_draft"] is True, digest["review"]
        assert mine[0]["pr_draft_reason"] == "the tests still fail after 2 rounds", mine

        # the comments: a draft, not a success; the tests' command as code
        def opened():
            return [c for c in w.comments(n) if marker(c["body"]) == "s%d:r1:pr:comment" % sid]
        got = farmtest.wait_for(opened, 30, "the PR-opened comment")
        body = got[0]["body"]
        assert "Draft pull request opened" in body, body
        assert "✅" not in body, body
        assert "the tests still fail after 2 rounds" in body, body
        assert "(`sh test.sh`, exit status 1, after 2 rounds)" in body, body
        assert "\\`" not in body, body
        started = [c for c in w.comments(n) if marker(c["body"]) == "s%d:r1:started" % sid]
        assert "the status comment below" in started[0]["body"], started

        def status():
            sc = [c for c in w.comments(n) if marker(c["body"]) == "s%d:status" % sid]
            return sc if sc and "(a draft pull request)" in sc[0]["body"] else None
        sc = farmtest.wait_for(status, 30, "the status comment to say draft")
        assert "draft, " + pulls[0]["html_url"] in sc[0]["body"], sc[0]["body"]
        assert "Round" not in sc[0]["body"], sc[0]["body"]


if __name__ == "__main__":
    farmtest.run([test_review_without_change_goes_back_to_review, test_draft_is_called_a_draft])
