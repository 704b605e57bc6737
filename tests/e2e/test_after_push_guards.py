#!/usr/bin/env python3
"""test_after_push_guards.py - what must never happen after the first push,
end to end: `farm serve` against the fake GitHub (which delivers the farm's
own comments back to it, as GitHub does), a real bare remote and a command
agent in the sandbox.

Cases:
- the farm's own comments never steer: the agent's plan holds a line
  `/farm approve`, and the farm's token is not the configured
  github.bot_login (so the sender looks like any collaborator): the plan
  comment comes back and neither approves the plan nor asks for a revised
  one (it carries the farm's marker); alice's `/farm approve` does.
- `/farm retry` on a session whose plan round failed writes the plan again
  and waits for approval; it never starts the implementation; on a plan
  waiting for approval it asks for a new plan round, not the implementation.
- a held issue starts nothing: with `/farm hold`, a push to the base and a
  failing CI check on the farm's pull request queue an update and a CI fix
  job that end `parked` without a run; `/farm unhold` queues both again and
  the base is merged in.
- check events on the farm's own push of a fix commit start no second round
  while a check of that commit still runs.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")

# A plan task: a plan whose second line is a command, unless the issue
# thread says "no plan yet" without "please plan again" (then no plan: the
# round fails). Any other task: the fix.
PLAN_AGENT = ["/bin/sh", "-c",
              "if grep -q '## Your task: write a plan' \"$FARM_PROMPT_FILE\"; then"
              " if grep -q 'no plan yet' \"$FARM_PROMPT_FILE\""
              " && ! grep -q 'please plan again' \"$FARM_PROMPT_FILE\"; then"
              " echo 'no plan this time'; exit 1; fi;"
              " printf 'Plan: fix greeting.txt.\\n/farm approve\\n' > \"$FARM_PLAN_FILE\";"
              " else printf 'hello, world\\n' > greeting.txt; fi"]


def comment(w, n, body):
    st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, n), {"body": body},
                       token=farmtest.PERSON_PAT)
    assert st == 201, (st, c)
    return c


def events(w, sid, kind):
    return farmtest.session_events(w.farm, sid, kind)


def run_kinds(w, sid):
    return [e[3]["kind"] for e in events(w, sid, "run_started")]


def deliveries_done(w):
    return all(d["status"] is not None
               for d in w.fake.ctl("GET", "/_fake/deliveries")["deliveries"])


def plans_posted(w, n):
    return [c for c in w.comments(n) if "A plan for this issue" in c["body"]]


def idle(w, sid):
    with w.farm.db() as c:
        return c.execute("SELECT count(*) FROM job WHERE session_id = ? AND kind <> 'cancel'"
                         " AND state IN ('queued', 'leased')", (sid,)).fetchone()[0] == 0


def plan_world(**kw):
    w = farmtest.GitHubWorld(repo_extra={"test": "true"},
                             extra={"agent": {"command": PLAN_AGENT},
                                    "review": {"debounce_s": 1}}, **kw)
    return w


def test_own_plan_comment_never_approves():
    w = plan_world()
    # the token speaks as farm-bot, the config says the farm is farm-robot:
    # the farm's comments come back from a collaborator it does not know
    w.farm.config["github"]["bot_login"] = "farm-robot"
    with open(w.farm.config_path, "w") as f:
        json.dump(w.farm.config, f)
    with w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX), label=False)
        comment(w, n, "/farm plan")
        s = w.wait_session(n, lambda s: s["state"] in FINAL + ("awaiting_approval",),
                           what="the plan")
        assert s["state"] == "awaiting_approval", s
        sid = s["id"]
        farmtest.wait_for(lambda: plans_posted(w, n), timeout=30, what="the plan on the issue")
        body = plans_posted(w, n)[0]["body"]
        assert "\n/farm approve\n" in body, body  # the agent's line, at the start of a line
        # every comment the farm wrote came back to it and was ignored
        farmtest.wait_for(lambda: deliveries_done(w) and idle(w, sid), timeout=30,
                          what="the farm's comments delivered back")
        s = w.session(n)
        assert not events(w, sid, "plan_approved"), "the farm's own comment approved its plan"
        assert not events(w, sid, "plan_queued"), "the farm's own comment asked for a new plan"
        assert s["state"] == "awaiting_approval" and s["runs"] == 1, s
        assert len(plans_posted(w, n)) == 1
        with w.farm.db() as c:
            own = c.execute("SELECT count(*) FROM delivery WHERE event = 'issue_comment'"
                            " AND reason LIKE '%the farm''s marker%'").fetchone()[0]
        assert own >= 1, own

        comment(w, n, "/farm approve")
        s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=120, what="the PR")
        assert s["state"] == "review" and s["pr_number"] > 0, s
        assert len(events(w, sid, "plan_approved")) == 1


def test_retry_on_a_failed_plan_plans_again():
    with plan_world() as w:
        n = w.open_issue("Fix the greeting", "Please fix the greeting; no plan yet.", label=False)
        comment(w, n, "/farm plan")
        s = w.wait_session(n, lambda s: s["state"] in FINAL + ("awaiting_approval",),
                           what="the failed plan")
        assert s["state"] == "failed", s
        sid = s["id"]
        assert "wrote no plan" in events(w, sid, "failed")[-1][3]["reason"]

        comment(w, n, "please plan again\n\n/farm retry")
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in
                           FINAL + ("awaiting_approval",), timeout=90, what="the retried plan")
        assert s["state"] == "awaiting_approval", s
        assert run_kinds(w, sid) == ["plan", "plan"], run_kinds(w, sid)
        assert s["pr_number"] == 0 and w.pulls() == []
        assert events(w, sid, "pushed") == []
        farmtest.wait_for(lambda: plans_posted(w, n), timeout=30, what="the plan on the issue")
        farmtest.wait_for(lambda: [c for c in w.comments(n) if "Trying the plan again" in
                                   c["body"]], timeout=30, what="the retry reply")

        # /farm retry on the waiting plan: a new plan round, not the implementation
        comment(w, n, "/farm retry")
        s = w.wait_session(n, lambda s: s["runs"] == 3 and s["state"] in
                           FINAL + ("awaiting_approval",), timeout=90, what="the third plan")
        assert s["state"] == "awaiting_approval", s
        assert run_kinds(w, sid) == ["plan", "plan", "plan"], run_kinds(w, sid)
        assert w.pulls() == []

        comment(w, n, "/farm approve")
        s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=120, what="the PR")
        assert s["state"] == "review" and s["pr_number"] > 0, s
        assert run_kinds(w, sid) == ["plan", "plan", "plan", "run"], run_kinds(w, sid)


def head(w, ref):
    return repos.git("rev-parse", ref, cwd=w.bare).strip()


def move_main(w, path, text):
    work = os.path.join(w.tmp, "person-%d" % len(os.listdir(w.tmp)))
    repos.git("clone", "-q", w.bare, work)
    with open(os.path.join(work, path), "w") as f:
        f.write(text)
    repos.git("commit", "-qam", "main moves: " + path, cwd=work)
    repos.git("push", "-q", "origin", "main", cwd=work)
    return head(w, "main")


def check(w, sha, name, conclusion, branch, log="", status="completed"):
    return w.fake.ctl("POST", "/_fake/checks", {
        "repo": w.repo, "sha": sha, "name": name, "status": status, "conclusion": conclusion,
        "branch": branch, "log": log})


def test_hold_parks_ci_and_update():
    with farmtest.GitHubWorld(repo_extra={"ci": {"fix": True}},
                              extra={"ci": {"settle_s": 1}, "review": {"debounce_s": 1}}) as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
        assert s["state"] == "review", s
        sid, branch = s["id"], s["branch"]
        h1 = head(w, branch)

        comment(w, n, "/farm hold")
        farmtest.wait_for(lambda: events(w, sid, "hold"), timeout=30, what="the hold")
        base = move_main(w, "README.md", "# demo\n\nThe README moved on main.\n")
        w.fake.ctl("POST", "/_fake/emit", {
            "repo": w.repo, "event": "push", "sender": farmtest.PERSON,
            "payload": {"ref": "refs/heads/main", "before": "0" * 40, "after": base,
                        "deleted": False, "forced": False}})
        check(w, h1, "build / test", "failure", branch, log="boom\n")

        def parked():
            return sorted(e[3]["kind"] for e in events(w, sid, "parked"))
        farmtest.wait_for(lambda: parked() == ["ci", "update"], timeout=60,
                          what="the update and the CI job parked")
        farmtest.wait_for(lambda: idle(w, sid), timeout=30, what="no job left")
        s = w.session(n)
        assert s["runs"] == 1 and s["state"] == "review", s
        assert head(w, branch) == h1
        assert run_kinds(w, sid) == ["run"]
        assert not events(w, sid, "ci_fix")

        comment(w, n, "/farm unhold")
        farmtest.wait_for(lambda: sorted(e[3]["kind"] for e in events(w, sid, "unparked"))
                          == ["ci", "update"], timeout=30, what="both queued again")
        farmtest.wait_for(lambda: "update" in run_kinds(w, sid) and idle(w, sid)
                          and w.session(n)["state"] in FINAL, timeout=150,
                          what="the update after the hold")
        parents = repos.git("log", "-1", "--format=%P", branch, cwd=w.bare).split()
        assert base in parents, (parents, base)
        subprocess.run(["git", "merge-base", "--is-ancestor", h1, branch], cwd=w.bare,
                       check=True, timeout=60)


def test_checks_on_the_fix_commit_wait_for_each_other():
    agent = ["/bin/sh", "-c",
             "if grep -q 'Your task: make the pull request' \"$FARM_PROMPT_FILE\"; then"
             " n=1; while [ -e ci-fix-$n.md ]; do n=$((n+1)); done;"
             " cp \"$FARM_PROMPT_FILE\" ci-fix-$n.md;"
             " else printf 'hello, world\\n' > greeting.txt; fi"]
    with farmtest.GitHubWorld(repo_extra={"ci": {"fix": True}},
                              extra={"ci": {"settle_s": 1}, "agent": {"command": agent}}) as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
        sid, branch = s["id"], s["branch"]
        check(w, head(w, branch), "build / test", "failure", branch, log="first failure\n")
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=120,
                           what="the CI fix round")
        assert s["state"] == "review", s
        h2 = head(w, branch)
        # the farm's own push of the fix commit: the checks start (created,
        # in progress), and one of them fails while the other still runs
        check(w, h2, "lint", None, branch, status="in_progress")
        check(w, h2, "build / test", "failure", branch, log="another failure\n")
        farmtest.wait_for(lambda: deliveries_done(w) and idle(w, sid)
                          and len(events(w, sid, "ci_check")) >= 2, timeout=60,
                          what="the fix commit's check events handled")
        assert len(events(w, sid, "ci_fix")) == 1, "a second round began before lint ended"
        assert w.session(n)["runs"] == 2
        assert not events(w, sid, "ci_verdict")
        # lint ends: now the commit is decided, one more round
        check(w, h2, "lint", "success", branch)
        s = w.wait_session(n, lambda s: s["runs"] == 3 and s["state"] in FINAL, timeout=120,
                           what="the second CI fix round")
        fixes = events(w, sid, "ci_fix")
        assert [f[3]["sha"] for f in fixes][-1] == h2, fixes


if __name__ == "__main__":
    farmtest.run([test_own_plan_comment_never_approves, test_retry_on_a_failed_plan_plans_again,
                  test_hold_parks_ci_and_update, test_checks_on_the_fix_commit_wait_for_each_other])
