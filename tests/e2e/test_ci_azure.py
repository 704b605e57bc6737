#!/usr/bin/env python3
"""test_ci_azure.py - the CI fix loop with Azure DevOps: `farm serve` against
tests/fakes/fake_azure.py (builds, their timelines and logs), a real bare
remote and a command agent in the sandbox that, in a CI fix round, commits
the prompt it got. The fake sends no service hooks, so the test posts the
`build.complete` deliveries Azure DevOps would.

Case: a PR validation build failing on the farm's pull request becomes one
fix round on the same branch whose prompt held the failed task's last log
lines (not its first); the same delivery again is a duplicate; a build
passing on the fix commit is said in the pull request's threads.
"""
import base64
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from test_ci_github import AGENT  # noqa: E402

PAT = "azure-pat-for-farm-tests-0123456789"
BOT = "farm-bot@example.com"
PERSON = "jamal@example.com"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"farm:azure-password-for-tests").decode()}
FINAL = ("review", "failed", "done", "cancelled")


def test_failing_build_becomes_a_fix_round():
    fake = farmtest.FakeTracker("fake_azure.py")
    tmp = tempfile.mkdtemp(prefix="farm-e2e-ci-azure-")
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
                    "test": "sh test.sh", "ci": {"fix": True}}],
            extra={"agent": {"command": AGENT}, "ci": {"settle_s": 1}})
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
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]
        h1 = repos.git("rev-parse", branch, cwd=bare).strip()

        log = ["##[section]Starting: Run tests", "FIRST LOG LINE"]
        log += ["test %d ... ok" % i for i in range(900)]
        log += ["test_widget ... FAILED", "AssertionError: 3 != 4", "##[error]exit code 1"]
        build = fake.ctl("POST", "/_fake/builds", {
            "project": "Proj", "repo": "app", "branch": branch, "sha": h1, "pr": pr,
            "definition": "PR build", "result": "failed", "task": "Run tests",
            "log": "\n".join(log)})
        st, body = farm.post_azure(build["delivery"], headers=AUTH)
        assert st == 202, (st, body)
        st, body = farm.post_azure(build["delivery"], headers=AUTH)  # delivered twice
        assert st == 200, (st, body)

        s = farmtest.wait_for(lambda: session(lambda s: s["runs"] == 2 and s["state"] in FINAL),
                              120, "the CI fix round")
        assert s["state"] == "review", s
        fixes = farmtest.session_events(farm, sid, "ci_fix")
        assert len(fixes) == 1 and fixes[0][3]["checks"] == ["PR build"], fixes
        assert repos.commit_count(bare, "main", branch) == 2
        prompt = repos.branch_file(bare, branch, "ci-fix-1.md")
        assert prompt is not None
        assert "PR build" in prompt and "task: Run tests" in prompt
        assert "AssertionError: 3 != 4" in prompt
        assert "FIRST LOG LINE" not in prompt, "the log was not cut to its tail"

        # the build passes on the fix commit: the PR's threads hear it
        h2 = repos.git("rev-parse", branch, cwd=bare).strip()
        green = fake.ctl("POST", "/_fake/builds", {
            "project": "Proj", "repo": "app", "branch": branch, "sha": h2, "pr": pr,
            "definition": "PR build", "result": "succeeded"})
        st, body = farm.post_azure(green["delivery"], headers=AUTH)
        assert st == 202, (st, body)

        def said():
            prs = fake.ctl("GET", "/_fake/state")["prs"]
            return [c for p in prs for t in p["threads"] for c in t["comments"]
                    if "CI passes after fix round 1" in c["content"]]
        farmtest.wait_for(said, 60, "the passing comment in the PR")
        assert len(said()) == 1
        assert farmtest.session_rows(farm, "tracker = 'azure'")[0]["runs"] == 2
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
    farmtest.run([test_failing_build_becomes_a_fix_round])
