#!/usr/bin/env python3
"""test_review_github.py - the review loop and `/farm` commands end to end:
`farm serve` against the fake GitHub (tests/fakes/fake_github.py), a real bare
remote (tests/e2e/repos.py) and the stand-in agent in the sandbox. People act
through the fake's API; the fake delivers the webhooks to the farm.

Cases: a review with three comments is one revision, one push and three
replies, and a second review during that revision is queued (the PR is told)
and becomes one more revision; the farm's own comments trigger nothing; a
non-collaborator's `/farm run` gets at most one reply and nothing else;
`/farm stop` during a run stops it; a PR comment mentioning the bot is a
revision that gets the comment; `/farm help` answers on the PR; a merged PR
ends the session `done`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")
AT_WORK = ("preparing", "running", "testing", "pushing", "revising")
MALLORY_PAT = "ghp_mallory_token_for_tests_0123456789"


def new_file(path, text):
    """A unified diff that creates path holding one line."""
    return "--- /dev/null\n+++ b/%s\n@@ -0,0 +1 @@\n+%s\n" % (path, text)


def note_comment(name):
    return {"path": "greeting.txt", "line": 1,
            "body": "Please add a note.\n\n```diff\n" + new_file("notes/%s.txt" % name, name)
            + "```\n"}


def world(**kw):
    extra = {"review": {"debounce_s": 2}}
    extra.update(kw.pop("extra", {}))
    return farmtest.GitHubWorld(extra=extra, **kw)


def review(w, pr, event, body, comments):
    st, r = w.fake.api("POST", "/repos/%s/pulls/%d/reviews" % (w.repo, pr),
                       {"event": event, "body": body, "comments": comments},
                       token=farmtest.PERSON_PAT)
    assert st == 200, (st, r)
    return r


def comment(w, number, body, token=farmtest.PERSON_PAT):
    st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, number),
                       {"body": body}, token=token)
    assert st == 201, (st, c)
    return c


def outbox_idle(w):
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0] == 0


def jobs(w, sid, kind):
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM job WHERE session_id = ? AND kind = ?",
                         (sid, kind)).fetchone()[0]


def events(w, sid, kind):
    return farmtest.session_events(w.farm, sid, kind)


def in_review(w, title="Fix the greeting", standin=None):
    n = w.open_issue(title, repos.issue_body(repos.FIX, standin=standin))
    s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
    assert s["state"] == "review", s
    assert s["pr_number"] > 0, s
    return n, s


def test_reviews_become_revisions_with_replies():
    with world() as w:
        n, s = in_review(w, standin="sleep 2")
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]

        review(w, pr, "REQUEST_CHANGES", "Three things.",
               [note_comment("a"), note_comment("b"), note_comment("c")])
        human = [c["id"] for c in w.state()["review_comments"] if c["user"]["login"] == "alice"]
        assert len(human) == 3, human

        # the revision starts after the debounce window; a second review
        # arrives while its agent is at work (its prompt written)
        w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in AT_WORK,
                       what="the first revision at work")
        farmtest.wait_for(lambda: [e for e in events(w, sid, "output")
                                   if e[3].get("step") == "agent" and "sleeping" in e[3]["line"]
                                   and e[0] > events(w, sid, "run_started")[-1][0]],
                          timeout=60, what="the first revision's agent")
        review(w, pr, "COMMENT", "", [note_comment("d")])
        d = [c["id"] for c in w.state()["review_comments"]
             if c["user"]["login"] == "alice" and c["id"] not in human]
        assert len(d) == 1, d

        # the PR hears that it is queued behind the running revision
        farmtest.wait_for(lambda: [c for c in w.comments(pr)
                                   if "queued behind the running revision" in c["body"]],
                          timeout=60, what="the queued notice on the PR")
        farmtest.wait_for(lambda: len(events(w, sid, "run_finished")) == 3, timeout=150,
                          what="the second revision")
        s = w.wait_session(n, lambda s: s["runs"] == 3 and s["state"] in FINAL, timeout=60,
                           what="the session back in review")
        assert s["state"] == "review", s

        # two revisions (not one per comment), three pushes in all
        assert jobs(w, sid, "revise") == 2
        assert len(events(w, sid, "pushed")) == 3
        for name in "abcd":
            assert repos.branch_file(w.bare, branch, "notes/%s.txt" % name) == name + "\n", name
        assert len(w.pulls()) == 1

        # one reply in each thread, from the farm, naming the commit
        def replies():
            return [c for c in w.state()["review_comments"] if c["user"]["login"] == "farm-bot"]
        farmtest.wait_for(lambda: len(replies()) == 4, timeout=60, what="four replies")
        assert sorted(c["in_reply_to_id"] for c in replies()) == sorted(human + d)
        assert all("Addressed in" in c["body"] for c in replies())
        notices = [c for c in w.comments(pr) if "queued behind" in c["body"]]
        assert len(notices) == 1, notices

        # the farm's own comments and replies reached the farm and did nothing
        with w.farm.db() as c:
            own = c.execute("SELECT count(*), sum(CASE WHEN outcome = 'ignored' THEN 1 ELSE 0 END)"
                            " FROM delivery"
                            " WHERE reason = 'event from a bot'").fetchone()
        assert own[0] >= 5 and own[0] == own[1], own
        assert jobs(w, sid, "revise") == 2


def test_strangers_get_one_reply_and_stop_stops():
    with world() as w:
        w.fake.ctl("POST", "/_fake/state", {"tokens": {MALLORY_PAT: "mallory"}})
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX, standin="sleep 30"))
        s = w.wait_session(n, lambda s: s["state"] == "running", what="the agent at work")
        sid = s["id"]

        for _ in range(2):
            comment(w, n, "/farm run", token=MALLORY_PAT)
            comment(w, n, "/farm stop", token=MALLORY_PAT)
        farmtest.wait_for(lambda: len([c for c in w.comments(n) if "write access" in c["body"]])
                          >= 1, timeout=30, what="the polite reply")
        # every one of mallory's commands was recorded and refused
        def refused():
            with w.farm.db() as c:
                return c.execute("SELECT count(*) FROM delivery WHERE reason LIKE"
                                 " '%without write access%'").fetchone()[0]
        farmtest.wait_for(lambda: refused() >= 4, timeout=30, what="four refusals")
        assert refused() == 4, refused()
        assert jobs(w, sid, "cancel") == 0
        assert w.session(n)["state"] in AT_WORK

        # alice stops it
        comment(w, n, "Hold on.\n\n/farm stop\n")
        s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=30, what="the stop")
        assert s["state"] == "cancelled", s
        assert len([c for c in w.comments(n) if "write access" in c["body"]]) == 1
        assert events(w, sid, "cancel_requested")


def test_mention_help_and_merged_pr():
    with world() as w:
        n, s = in_review(w)
        sid, pr = s["id"], s["pr_number"]

        comment(w, pr, "/farm help")
        comment(w, n, "> /farm stop\nquoted, so nothing")
        farmtest.wait_for(lambda: [c for c in w.comments(pr) if "/farm retry" in c["body"]],
                          timeout=30, what="the help reply on the PR")

        # an issue the farm has no session for still gets its answers, once each
        q = w.open_issue("Just asking", "What can the farm do?", label=False)
        comment(w, q, "/farm help")
        comment(w, q, "/farm status")
        farmtest.wait_for(lambda: len([c for c in w.comments(q)
                                       if c["user"] == "farm-bot"]) == 2,
                          timeout=30, what="two answers on an issue without a session")
        farmtest.wait_for(lambda: outbox_idle(w), timeout=30, what="the outbox to drain")
        mine = [c["body"] for c in w.comments(q) if c["user"] == "farm-bot"]
        assert len(mine) == 2, mine
        assert len([b for b in mine if "/farm retry" in b]) == 2, mine
        assert len([b for b in mine if "no session for this issue" in b]) == 1, mine
        assert w.session(q) is None

        # a PR comment that mentions the bot is a revision, and its text reaches the agent
        comment(w, pr, "@farm-bot please add a note too.\n\n```diff\n"
                + new_file("notes/m.txt", "m") + "```\n")
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=90,
                           what="the revision a mention asked for")
        assert s["state"] == "review", s
        assert repos.branch_file(w.bare, s["branch"], "notes/m.txt") == "m\n"
        assert jobs(w, sid, "revise") == 1
        st, r = w.fake.api("PUT", "/repos/%s/pulls/%d/merge" % (w.repo, pr), {},
                           token=farmtest.PERSON_PAT)
        assert st == 200, (st, r)
        s = w.wait_session(n, lambda s: s["state"] == "done", timeout=30, what="done")
        assert jobs(w, sid, "cancel") == 0
        assert not events(w, sid, "cancel_requested")


if __name__ == "__main__":
    farmtest.run([test_reviews_become_revisions_with_replies,
                  test_strangers_get_one_reply_and_stop_stops,
                  test_mention_help_and_merged_pr])
