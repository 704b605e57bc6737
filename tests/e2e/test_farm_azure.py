#!/usr/bin/env python3
"""test_farm_azure.py - the whole farm with Azure DevOps: `farm serve` with
an azure section pointing at tests/fakes/fake_azure.py, a real bare git
remote over file:// as the repository's clone URL, and the stand-in agent in
the real sandbox. The fake sends no service hooks, so the test posts the
`workitem.created` delivery Azure DevOps would (basic auth, as configured).

Case: a work item becomes an Azure Repos pull request linked to it through
workItemRefs, with the branch in the remote and the farm's comments on the
work item (started, status, PR opened), each once.
"""
import base64
import os
import shutil
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

PAT = "azure-pat-for-farm-tests-0123456789"
BOT = "farm-bot@example.com"
PERSON = "jamal@example.com"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"farm:azure-password-for-tests").decode()}


def marker(text):
    i = text.find("<!-- farm:")
    return text[i + 10:text.index(" -->", i)] if i >= 0 else None


def created_delivery(wid, title):
    """The service hook Azure DevOps sends for a new work item."""
    p = farmtest.azure_fixture("workitem.created")
    p["id"] = str(uuid.uuid4())
    r = p["resource"]
    r["id"] = wid
    r["fields"].update({"System.TeamProject": "Proj", "System.AreaPath": "Proj",
                        "System.Title": title, "System.CreatedBy": PERSON,
                        "System.ChangedBy": PERSON})
    return p


def test_work_item_becomes_azure_repos_pr():
    fake = farmtest.FakeTracker("fake_azure.py")
    tmp = tempfile.mkdtemp(prefix="farm-e2e-azure-")
    farm = None
    ok = False
    try:
        bare = repos.make_remote(tmp)
        ids = fake.ctl("POST", "/_fake/state", {
            "tokens": {PAT: BOT},
            "projects": {"Proj": {"repos": ["app"], "workitems": [
                {"title": "Fix the greeting", "description": repos.issue_body(repos.FIX),
                 "created_by": PERSON}]}}})
        wid = ids["workitems"][0]
        farm = farmtest.Farm(
            tmp=tmp,
            azure={"org_url": fake.url + "/fabrikam", "token": "env:FARM_TEST_AZ_PAT",
                   "webhook_user": "farm", "webhook_password": "env:FARM_TEST_AZ_PASSWORD",
                   "bot_name": BOT},
            repos=[{"name": "fabrikam/Proj/app", "tracker": "azure",
                    "clone_url": "file://" + bare, "azure_project": "Proj",
                    "trigger": {"on_open": True}, "allowed_actors": [PERSON],
                    "test": "sh test.sh"}],
            extra={"agent": {"preset": "standin"}})
        farm.env["FARM_TEST_AZ_PAT"] = PAT
        farm.start()

        delivery = created_delivery(wid, "Fix the greeting")
        st, body = farm.post_azure(delivery, headers=AUTH)
        assert st == 202, (st, body)
        st, body = farm.post_azure(delivery, headers=AUTH)  # the same delivery again
        assert st == 200, (st, body)

        def session():
            rows = farmtest.session_rows(farm, "tracker = 'azure'")
            return rows[0] if rows and rows[0]["state"] in ("review", "failed", "done") else None
        s = farmtest.wait_for(session, 90, "the Azure session to end")
        assert s["state"] == "review", s
        assert len(farmtest.session_rows(farm)) == 1

        state = fake.ctl("GET", "/_fake/state")
        prs = state["prs"]
        assert len(prs) == 1, prs
        pr = prs[0]
        branch = "farm/%d-fix-the-greeting" % wid
        assert pr["sourceRefName"] == "refs/heads/" + branch, pr
        assert pr["targetRefName"] == "refs/heads/main", pr
        assert pr["repository"]["name"] == "app" and pr["repository"]["project"]["name"] == "Proj"
        assert not pr["isDraft"], pr
        assert [str(r["id"]) for r in pr["workItemRefs"]] == [str(wid)], pr["workItemRefs"]
        assert pr["createdBy"]["uniqueName"] == BOT
        assert s["pr_number"] == pr["pullRequestId"], (s, pr["pullRequestId"])
        assert repos.branch_file(bare, branch, "greeting.txt") == "hello, world\n"

        # the farm's comments on the work item: started, one status, PR opened
        sid = s["id"]

        def comments():
            wi = [w for w in fake.ctl("GET", "/_fake/state")["workitems"] if w["id"] == wid][0]
            return [c for c in wi["comments"] if not c["isDeleted"]]
        farmtest.wait_for(lambda: any(marker(c["text"]) == "s%d:r1:pr:comment" % sid
                                      for c in comments()), 30, "the PR-opened comment")
        keys = [marker(c["text"]) for c in comments()]
        assert len(keys) == len(set(keys)), keys
        for k in ("r1:started", "status", "r1:pr:comment"):
            assert "s%d:%s" % (sid, k) in keys, keys
        assert all(c["createdBy"]["uniqueName"] == BOT for c in comments())
        # no side effect failed along the way
        errors = farmtest.session_events(farm, sid, "tracker_error")
        assert errors == [], errors
        assert farm.stop() == 0
        farm = None
        ok = True
    finally:
        if farm:
            farm.kill()
        fake.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("# kept for inspection:", tmp, flush=True)


if __name__ == "__main__":
    farmtest.run([test_work_item_becomes_azure_repos_pr])
