#!/usr/bin/env python3
"""test_farm_conversation.py - people talking to a session through the
tracker, with the whole farm (`farm serve`, the fake GitHub delivering its
webhooks, a real bare remote, the stand-in agent in the sandbox).

Cases: the agent asks a question (the session waits, the question is posted
on the issue), a person answers with a comment and the run goes on to a PR;
a review asking for changes on the PR starts a revision that pushes a second
commit to the same branch and opens no second PR.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")


def marker(text):
    i = text.find("<!-- farm:")
    return text[i + 10:text.index(" -->", i)] if i >= 0 else None


def test_question_then_answer():
    with farmtest.GitHubWorld() as w:
        body = repos.issue_body(repos.FIX, standin="question Should it say world or everyone?")
        n = w.open_issue("Ask about the greeting", body)
        s = w.wait_session(n, lambda s: s["state"] in FINAL + ("waiting",), what="the question")
        assert s["state"] == "waiting", s
        asked = farmtest.wait_for(
            lambda: [c for c in w.comments(n) if "Should it say world or everyone?" in c["body"]
                     and c["user"] == "farm-bot"], 30, "the question on the issue")
        assert len(asked) == 1, asked
        assert w.pulls() == []

        st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, n),
                           {"body": "World, please."}, token=farmtest.PERSON_PAT)
        assert st == 201, (st, c)
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="the PR after the answer")
        assert s["state"] == "review", s
        pulls = w.pulls()
        assert len(pulls) == 1 and not pulls[0]["draft"], pulls
        assert repos.branch_file(w.bare, s["branch"], "greeting.txt") == "hello, world\n"
        # the answer reached the agent's prompt: it ran a second time
        runs = farmtest.session_events(w.farm, s["id"], "run_started")
        assert len(runs) == 2, runs


def test_question_answered_through_the_api():
    # the web UI's answer box and `farm say` post here instead of on the tracker
    with farmtest.GitHubWorld() as w:
        body = repos.issue_body(repos.FIX, standin="question Which greeting?")
        n = w.open_issue("Ask through the farm", body)
        s = w.wait_session(n, lambda s: s["state"] in FINAL + ("waiting",), what="the question")
        assert s["state"] == "waiting", s
        st, _, data = w.farm.request(
            "POST", "/api/sessions/%d/messages" % s["id"], json.dumps({"text": "World."}),
            {"Authorization": "Bearer " + farmtest.ADMIN_TOKEN,
             "Content-Type": "application/json"})
        assert st == 201, (st, data)
        assert json.loads(data)["answer_job"] > 0, data
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="the PR after the answer")
        assert s["state"] == "review", s
        assert len(farmtest.session_events(w.farm, s["id"], "run_started")) == 2
        # a message to a session that is not waiting queues nothing
        st, _, data = w.farm.request(
            "POST", "/api/sessions/%d/messages" % s["id"], json.dumps({"text": "Thanks!"}),
            {"Authorization": "Bearer " + farmtest.ADMIN_TOKEN,
             "Content-Type": "application/json"})
        assert st == 201 and json.loads(data)["answer_job"] == 0, (st, data)


def test_review_starts_a_revision_on_the_same_branch():
    # reviews arriving together are debounced into one revision: 1 s here
    with farmtest.GitHubWorld(extra={"review": {"debounce_s": 1}}) as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="the PR")
        assert s["state"] == "review", s
        pr = w.pulls()[0]
        branch = s["branch"]
        assert repos.commit_count(w.bare, "main", branch) == 1

        review = ("Almost: add an exclamation mark.\n\n```diff\n"
                  + repos.patch("hello, world", "hello, world!") + "```\n")
        st, r = w.fake.api("POST", "/repos/%s/pulls/%d/reviews" % (w.repo, pr["number"]),
                           {"body": review, "event": "REQUEST_CHANGES"},
                           token=farmtest.PERSON_PAT)
        assert st in (200, 201), (st, r)
        farmtest.wait_for(
            lambda: repos.branch_file(w.bare, branch, "greeting.txt") == "hello, world!\n",
            90, "the revision on the branch")
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="review again")
        assert s["state"] == "review", s
        assert repos.commit_count(w.bare, "main", branch) == 2
        pulls = w.pulls()
        assert len(pulls) == 1 and pulls[0]["number"] == pr["number"], pulls
        keys = [marker(c["body"]) for c in w.comments(n)]
        assert len(keys) == len(set(keys)), keys


if __name__ == "__main__":
    tests = [test_question_then_answer, test_question_answered_through_the_api,
             test_review_starts_a_revision_on_the_same_branch]
    only = sys.argv[1:]
    farmtest.run([t for t in tests if not only or t.__name__ in only])
