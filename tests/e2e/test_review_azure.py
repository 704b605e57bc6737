#!/usr/bin/env python3
"""test_review_azure.py - the review loop for Azure DevOps through the real
`farm serve` (intake only, so the jobs it queues stay in the store to be
looked at): a comment in a pull request thread of a session's PR becomes a
revision job, comments that follow join it, someone outside the configured
allowlist gets one polite reply and nothing else, the farm's own identity
triggers nothing, and `/farm stop` in a work item comment (HTML, as Azure
sends it) stops the session.
"""
import base64
import copy
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402

AUTH = {"Authorization": "Basic " + base64.b64encode(b"farm:azure-password-for-tests").decode()}
AZURE = {"org_url": "https://dev.azure.com/fabrikam", "webhook_user": "farm",
         "webhook_password": "env:FARM_TEST_AZ_PASSWORD", "bot_name": "Farm Bot"}
_PR = farmtest.azure_fixture("ms.vss-code.git-pullrequest-comment-event")["resource"]["pullRequest"]
PROJECT = _PR["repository"]["project"]["name"]
REPO = "fabrikam/%s/%s" % (PROJECT, _PR["repository"]["name"])
REVIEWER = "fabrikamfiber16@hotmail.com"


def pr_comment(text, author=REVIEWER, comment_id=2, thread=21):
    """The shared PR comment sample, with a fresh id, text and author."""
    ev = copy.deepcopy(farmtest.azure_fixture("ms.vss-code.git-pullrequest-comment-event"))
    ev["id"] = str(uuid.uuid4())
    c = ev["resource"]["comment"]
    c["id"] = comment_id
    c["content"] = text
    c["author"]["uniqueName"] = author
    c["author"]["displayName"] = author
    base = c["_links"]["self"]["href"].rsplit("/threads/", 1)[0]
    c["_links"]["self"]["href"] = "%s/threads/%d/comments/%d" % (base, thread, comment_id)
    return ev


def workitem(event, project=PROJECT):
    ev = copy.deepcopy(farmtest.azure_fixture(event))
    ev["id"] = str(uuid.uuid4())
    ev["resource"].setdefault("fields", {})["System.TeamProject"] = project
    if "revision" in ev["resource"]:
        ev["resource"]["revision"].setdefault("fields", {})["System.TeamProject"] = project
    return ev


def post(farm, ev):
    status, body = farm.post_azure(ev, headers=AUTH)
    assert status in (200, 202), (status, body)
    with farm.db() as c:
        return c.execute("SELECT outcome, reason, session_id, job_id FROM delivery"
                         " WHERE delivery_id = ?", (ev["id"],)).fetchone()


def count(farm, sql, *args):
    with farm.db() as c:
        return c.execute(sql, args).fetchone()[0]


def test_azure_pr_thread_comment_is_a_revision():
    repos = [{"name": REPO, "tracker": "azure",
              "clone_url": "https://dev.azure.com/" + REPO,
              "azure_project": PROJECT, "trigger": {"on_open": True},
              "allowed_actors": ["Jamal Hartnett", REVIEWER]}]
    farm = farmtest.Farm(repos=repos, azure=AZURE, serve_args=["--intake-only"],
                         extra={"review": {"debounce_s": 60}})
    with farm:
        created = workitem("workitem.created")
        outcome = post(farm, created)
        assert outcome[0] == "accepted", outcome
        sid = outcome[2]
        number = created["resource"]["id"]

        # the first run opened PR 1 and is waiting for review (written as the
        # pipeline would have left it; the farm is stopped meanwhile)
        farm.stop()
        farm.db().batch([
            ("UPDATE session SET pr_number = ?, state = 'review', runs = 1 WHERE id = ?",
             (_PR["pullRequestId"], sid)),
            ("UPDATE job SET state = 'done' WHERE session_id = ?", (sid,))])
        farm.start()

        outcome = post(farm, pr_comment("Please handle an empty name."))
        assert outcome[0] == "accepted" and "revise job" in outcome[1], outcome
        assert outcome[2] == sid and outcome[3] > 0, outcome
        job = outcome[3]
        outcome = post(farm, pr_comment("And log it.", comment_id=3))
        assert "queued already" in outcome[1], outcome
        assert count(farm, "SELECT count(*) FROM job WHERE session_id = ? AND kind = 'revise'",
                     sid) == 1
        due = count(farm, "SELECT not_before_ms - created_ms FROM job WHERE id = ?", job)
        assert 59000 <= due <= 61000, due  # the debounce window

        # someone outside the allowlist: one polite reply, no job
        for i in range(2):
            outcome = post(farm, pr_comment("/farm run", author="eve@fabrikam.test",
                                            comment_id=10 + i, thread=22))
            assert "without write access" in outcome[1], outcome
        assert count(farm, "SELECT count(*) FROM outbox WHERE idem_key = ?", "s%d:polite" % sid) == 1
        assert count(farm, "SELECT count(*) FROM job WHERE session_id = ?", sid) == 2

        # the farm itself: nothing
        outcome = post(farm, pr_comment("/farm run", author="Farm Bot", comment_id=12))
        assert outcome[1] == "event from a bot", outcome

        # /farm stop in a work item comment, as HTML
        commented = workitem("workitem.commented")
        commented["resource"]["id"] = number
        commented["resource"].setdefault("fields", {})["System.History"] = \
            "<div>Enough.</div><div>/farm stop</div>"
        outcome = post(farm, commented)
        assert outcome[2] == sid and "cancel job" in outcome[1], outcome
        assert count(farm, "SELECT count(*) FROM job WHERE session_id = ? AND kind = 'cancel'",
                     sid) == 1


if __name__ == "__main__":
    farmtest.run([test_azure_pr_thread_comment_is_a_revision])
