#!/usr/bin/env python3
"""test_update_github.py - keeping a farm pull request mergeable, end to end:
`farm serve` against the fake GitHub, a real bare remote and the stand-in
agent in the sandbox.

Cases: main moves under an open farm PR without touching its files (a `push`
webhook): the farm merges main into the branch with a merge commit, tests
run, the push is a fast-forward (the old head is an ancestor of the new one,
never a force-push) and the PR hears it. main moves with a conflicting
change and someone writes `/farm update`: the merge conflicts, the agent's
round gets the conflicted file in its prompt (and resolves it), and the
merge commit lands after the tests. A push to another branch does nothing.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")


def world():
    return farmtest.GitHubWorld(extra={"review": {"debounce_s": 1}})


def in_review(w):
    n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
    s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
    assert s["state"] == "review" and s["pr_number"] > 0, s
    return n, s


def head(bare, ref):
    return repos.git("rev-parse", ref, cwd=bare).strip()


def move_main(w, path, text):
    """A person pushes a commit to main changing path; its oid."""
    work = os.path.join(w.tmp, "person-%d" % len(os.listdir(w.tmp)))
    repos.git("clone", "-q", w.bare, work)
    with open(os.path.join(work, path), "w") as f:
        f.write(text)
    repos.git("commit", "-qam", "main moves: " + path, cwd=work)
    repos.git("push", "-q", "origin", "main", cwd=work)
    return head(w.bare, "main")


def push_hook(w, branch, after, before="0" * 40):
    w.fake.ctl("POST", "/_fake/emit", {
        "repo": w.repo, "event": "push", "sender": farmtest.PERSON,
        "payload": {"ref": "refs/heads/" + branch, "before": before, "after": after,
                    "deleted": False, "forced": False}})


def parents(bare, ref):
    return repos.git("log", "-1", "--format=%P", ref, cwd=bare).split()


def is_ancestor(bare, a, b):
    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=bare,
                          capture_output=True, timeout=60).returncode == 0


def wait_update(w, n, sid, runs):
    s = w.wait_session(n, lambda s: s["runs"] == runs and s["state"] in FINAL, timeout=120,
                       what="the update run")
    finished = [e for e in farmtest.session_events(w.farm, sid, "run_finished")]
    return s, finished[-1][3]


def test_base_moved_without_conflict():
    with world() as w:
        n, s = in_review(w)
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]
        old = head(w.bare, branch)

        # a push to another branch concerns nobody
        push_hook(w, "feature/x", "1" * 40)
        base = move_main(w, "README.md", "# demo\n\nThe README moved on main.\n")
        push_hook(w, "main", base)

        s, fin = wait_update(w, n, sid, 2)
        assert s["state"] == "review", (s, fin)
        assert fin["kind"] == "update", fin
        new = head(w.bare, branch)
        assert new != old
        assert parents(w.bare, branch) == [old, base]
        assert is_ancestor(w.bare, old, new)  # a fast-forward: nothing reviewed was rewritten
        assert repos.branch_file(w.bare, branch, "README.md").endswith("moved on main.\n")
        assert repos.branch_file(w.bare, branch, "greeting.txt") == "hello, world\n"
        msg = repos.git("log", "-1", "--format=%B", branch, cwd=w.bare)
        assert msg.startswith("Merge branch 'main' into " + branch), msg
        # the tests ran on the merge, no agent round was needed
        tests = farmtest.session_events(w.farm, sid, "test_result")
        assert tests[-1][3]["passed"] is True, tests
        starts = farmtest.session_events(w.farm, sid, "run_started")
        agents = [e for e in farmtest.session_events(w.farm, sid, "step")
                  if e[0] > starts[-1][0] and e[3].get("step") == "agent"]
        assert agents == [], agents
        farmtest.wait_for(lambda: [c for c in w.comments(pr) if "Merged `main`" in c["body"]],
                          timeout=30, what="the update comment on the PR")
        # the other branch's push queued nothing
        with w.farm.db() as c:
            jobs = c.execute("SELECT count(*) FROM job WHERE kind = 'update'").fetchone()[0]
        assert jobs == 1, jobs


def test_conflict_goes_to_the_agent_on_farm_update():
    with world() as w:
        n, s = in_review(w)
        sid, pr, branch = s["id"], s["pr_number"], s["branch"]
        old = head(w.bare, branch)
        base = move_main(w, "greeting.txt", "hello there\n")

        st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, pr),
                           {"body": "/farm update"}, token=farmtest.PERSON_PAT)
        assert st == 201, (st, c)
        s, fin = wait_update(w, n, sid, 2)
        assert s["state"] == "review", (s, fin, farmtest.session_events(w.farm, sid)[-12:])

        merge = [e for e in farmtest.session_events(w.farm, sid, "step")
                 if e[3].get("step") == "merge" and e[3].get("status") == "done"]
        assert merge and merge[-1][3]["conflicts"] == ["greeting.txt"], merge
        # the agent's round: the conflicted file was in its prompt, and it resolved it
        out = [e[3]["line"] for e in farmtest.session_events(w.farm, sid, "output")
               if e[3].get("step") == "agent" and e[0] > merge[-1][0]]
        assert any("resolved 1 conflict(s) in greeting.txt" in l for l in out), out
        new = head(w.bare, branch)
        assert parents(w.bare, branch) == [old, base]
        assert is_ancestor(w.bare, old, new)
        assert repos.branch_file(w.bare, branch, "greeting.txt") == "hello, world\n"
        tests = farmtest.session_events(w.farm, sid, "test_result")
        assert tests[-1][3]["passed"] is True, tests
        farmtest.wait_for(lambda: [c for c in w.comments(pr)
                                   if "resolved the conflicts in 1 file" in c["body"]],
                          timeout=30, what="the update comment")
        assert [c for c in w.comments(pr) if "Bringing `main` into" in c["body"]]

        # asked again: up to date, said so, nothing pushed
        pushes = len(farmtest.session_events(w.farm, sid, "pushed"))
        st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, pr),
                           {"body": "/farm update"}, token=farmtest.PERSON_PAT)
        assert st == 201
        s, fin = wait_update(w, n, sid, 3)
        assert fin["outcome"] == "up_to_date", fin
        assert len(farmtest.session_events(w.farm, sid, "pushed")) == pushes
        farmtest.wait_for(lambda: [c for c in w.comments(pr) if "nothing to merge" in c["body"]],
                          timeout=30, what="the up-to-date reply")


def test_markers_left_fail_without_a_push():
    with world() as w:
        n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX, standin="merge skip"))
        s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
        assert s["state"] == "review", s
        sid, branch = s["id"], s["branch"]
        old = head(w.bare, branch)
        base = move_main(w, "greeting.txt", "hello there\n")
        push_hook(w, "main", base)
        s = w.wait_session(n, lambda s: s["runs"] == 2 and s["state"] in FINAL, timeout=120,
                           what="the update")
        assert s["state"] == "failed", s
        failed = farmtest.session_events(w.farm, sid, "failed")
        assert "greeting.txt still holds conflict markers" in failed[-1][3]["reason"], failed
        assert head(w.bare, branch) == old  # nothing pushed
        assert len(farmtest.session_events(w.farm, sid, "pushed")) == 1


if __name__ == "__main__":
    farmtest.run([test_base_moved_without_conflict,
                  test_conflict_goes_to_the_agent_on_farm_update,
                  test_markers_left_fail_without_a_push])
