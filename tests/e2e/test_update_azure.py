#!/usr/bin/env python3
"""test_update_azure.py - keeping a farm pull request mergeable with Azure
DevOps: `farm serve` against tests/fakes/fake_azure.py, a real bare remote
and the stand-in agent in the sandbox. The fake sends no service hooks, so
the test posts the `git.push` ("Code pushed") deliveries Azure DevOps would.

Case: main moves under the farm's open pull request: the push of the farm's
own branch and a push to another branch start nothing; the push to main
(delivered twice: the second is a duplicate) brings one update run whose
merge commit has the old head and main's new head as parents, the push is a
fast-forward (never a force-push), the tests ran on the merge, and the pull
request's threads hear it.
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

PAT = "azure-pat-for-farm-tests-0123456789"
BOT = "farm-bot@example.com"
PERSON = "jamal@example.com"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"farm:azure-password-for-tests").decode()}
FINAL = ("review", "failed", "done", "cancelled")


def head(bare, ref):
    return repos.git("rev-parse", ref, cwd=bare).strip()


def is_ancestor(bare, a, b):
    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=bare,
                          capture_output=True, timeout=60).returncode == 0


def move_main(tmp, bare, path, text):
    """A person pushes a commit to main changing path; its oid."""
    work = os.path.join(tmp, "person")
    repos.git("clone", "-q", bare, work)
    with open(os.path.join(work, path), "w") as f:
        f.write(text)
    repos.git("commit", "-qam", "main moves: " + path, cwd=work)
    repos.git("push", "-q", "origin", "main", cwd=work)
    return head(bare, "main")


def test_base_pushed_updates_the_pull_request():
    fake = farmtest.FakeTracker("fake_azure.py")
    tmp = tempfile.mkdtemp(prefix="farm-e2e-update-azure-")
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
            extra={"review": {"debounce_s": 1}})
        farm.env["FARM_TEST_AZ_PAT"] = PAT
        farm.start()

        created = farmtest.azure_fixture("workitem.created")
        created["id"] = "wi-created-%d" % wid
        created["resource"]["id"] = wid
        created["resource"]["fields"].update({
            "System.TeamProject": "Proj", "System.AreaPath": "Proj",
            "System.Title": "Fix the greeting", "System.CreatedBy": PERSON,
            "System.ChangedBy": PERSON})
        st, body = farm.post_azure(created, headers=AUTH)
        assert st == 202, (st, body)

        def session(cond):
            rows = farmtest.session_rows(farm, "tracker = 'azure'")
            return rows[0] if rows and cond(rows[0]) else None
        s = farmtest.wait_for(lambda: session(lambda s: s["state"] in FINAL), 90,
                              "the first run's PR")
        assert s["state"] == "review", s
        sid, branch = s["id"], s["branch"]
        old = head(bare, branch)

        def post(delivery, want):
            st, body = farm.post_azure(delivery, headers=AUTH)
            assert st == want, (st, body)
            return body

        # the farm's own push of its branch, and a push to another branch:
        # nobody's base moved, nothing is queued
        own = fake.ctl("POST", "/_fake/push", {"project": "Proj", "repo": "app",
                                               "branch": branch, "new": old, "by": BOT})
        assert post(own["delivery"], 200)["result"] == "ignored"
        other = fake.ctl("POST", "/_fake/push", {"project": "Proj", "repo": "app",
                                                 "branch": "feature/x", "new": "1" * 40,
                                                 "by": PERSON})
        assert post(other["delivery"], 200)["result"] == "ignored"

        before = head(bare, "main")
        base = move_main(tmp, bare, "README.md", "# demo\n\nThe README moved on main.\n")
        # one push that moved another branch first and main after it: main is found
        push = fake.ctl("POST", "/_fake/push", {
            "project": "Proj", "repo": "app", "by": PERSON,
            "refs": [{"branch": "feature/y", "new": "2" * 40},
                     {"branch": "main", "new": base, "old": before}]})
        post(push["delivery"], 202)
        post(push["delivery"], 200)  # delivered twice: a duplicate

        s = farmtest.wait_for(lambda: session(lambda s: s["runs"] == 2 and s["state"] in FINAL),
                              120, "the update run")
        assert s["state"] == "review", (s, farmtest.session_events(farm, sid)[-12:])
        fin = farmtest.session_events(farm, sid, "run_finished")[-1][3]
        assert fin["kind"] == "update", fin
        new = head(bare, branch)
        assert new != old
        parents = repos.git("log", "-1", "--format=%P", branch, cwd=bare).split()
        assert parents == [old, base], (parents, old, base)
        assert is_ancestor(bare, old, new)  # a fast-forward: nothing reviewed was rewritten
        assert repos.branch_file(bare, branch, "README.md").endswith("moved on main.\n")
        assert repos.branch_file(bare, branch, "greeting.txt") == "hello, world\n"
        tests = farmtest.session_events(farm, sid, "test_result")
        assert tests[-1][3]["passed"] is True, tests
        moved = farmtest.session_events(farm, sid, "base_moved")
        assert len(moved) == 1 and moved[0][3]["oid"] == base, moved
        with farm.db() as c:
            jobs = c.execute("SELECT count(*) FROM job WHERE kind = 'update'").fetchone()[0]
        assert jobs == 1, jobs

        def said():
            prs = fake.ctl("GET", "/_fake/state")["prs"]
            return [c for p in prs for t in p["threads"] for c in t["comments"]
                    if "Merged `main`" in c["content"]]
        farmtest.wait_for(said, 60, "the update comment in the PR")
        assert len(said()) == 1
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
    farmtest.run([test_base_pushed_updates_the_pull_request])
