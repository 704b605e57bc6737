"""test_local_tracker - the local tracker end to end through the real binary:
`farm issue new --label agent` prints the new issue's number and the farm
records a delivery, a queued session and its run job, exactly as for a
webhook; comments show in `farm issue show` and reach the session's log; a
label added later triggers; everything works beside a running `farm serve`
on the same data directory; bad input gets a clear error and changes
nothing.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402

def git(*args, cwd=None):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com"] + list(args),
                   cwd=cwd, check=True, capture_output=True)


def local_repos(tmp):
    """A bare repository with main and farm/1-fix-the-login one commit ahead."""
    bare = os.path.join(tmp, "demo.git")
    work = os.path.join(tmp, "work")
    git("init", "-q", "--bare", bare)
    git("init", "-q", "-b", "main", work)
    with open(os.path.join(work, "a.txt"), "w") as f:
        f.write("a\n")
    git("add", "a.txt", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("push", "-q", bare, "main", cwd=work)
    git("checkout", "-q", "-b", "farm/1-fix-the-login", cwd=work)
    with open(os.path.join(work, "b.txt"), "w") as f:
        f.write("b\n")
    git("add", "b.txt", cwd=work)
    git("commit", "-q", "-m", "two", cwd=work)
    git("push", "-q", bare, "farm/1-fix-the-login", cwd=work)
    return [{"name": "demo", "tracker": "local", "clone_url": "file://" + bare,
             "trigger": {"label": "agent"}}]


@contextlib.contextmanager
def new_farm(serve=False):
    """A config with one local repository (trigger label "agent") in a temp
    dir, removed afterwards; with serve, `farm serve` runs on it too."""
    tmp = tempfile.mkdtemp(prefix="farm-e2e-local-")
    try:
        farm = farmtest.Farm(repos=local_repos(tmp), tmp=tmp)
        if serve:
            with farm:
                yield farm
        else:
            yield farm
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def issue(farm, *args, stdin=None, ok=True):
    """Run `farm issue ARGS --config CFG`; (exit status, stdout, stderr)."""
    p = subprocess.run([farmtest.FARM_BIN, "issue"] + list(args) + ["--config", farm.config_path],
                       input=stdin, capture_output=True, env=farm.env, timeout=60)
    out, err = p.stdout.decode(), p.stderr.decode()
    if ok and p.returncode != 0:
        raise AssertionError("farm issue %s failed (%d): %s" % (args, p.returncode, err))
    return p.returncode, out, err


def rows(farm, sql, *params):
    with farm.db() as c:
        return c.execute(sql, params).fetchall()


def session_of(farm, number):
    return rows(farm, "SELECT id, state, title FROM session WHERE tracker = 'local' AND "
                      "repo = 'demo' AND number = ?", number)


def test_new_issue_with_the_label_starts_a_session():
    with new_farm() as farm:
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "Fix the login",
                             "--body", "The form rejects valid passwords.", "--label", "agent",
                             "--label", "bug")
        number = int(out.strip())
        assert number >= 1, out
        assert "accepted" in err, err
        s = session_of(farm, number)
        assert len(s) == 1, s
        sid, state, title = s[0]
        assert state == "queued" and title == "Fix the login", s
        jobs = rows(farm, "SELECT kind, state FROM job WHERE session_id = ?", sid)
        assert jobs == [("run", "queued")], jobs
        d = rows(farm, "SELECT event, action, outcome FROM delivery WHERE tracker = 'local' AND "
                       "number = ?", number)
        assert d == [("issues", "opened", "accepted")], d

        # a comment shows in `farm issue show` and joins the session's log
        rc, out, err = issue(farm, "comment", str(number), "Please also cover the signup form.")
        rc, out, err = issue(farm, "show", str(number))
        assert "Fix the login" in out and "Please also cover the signup form." in out, out
        assert "agent, bug" in out, out
        assert "local://demo/issues/%d" % number in out, out
        ev = rows(farm, "SELECT kind, actor, body FROM event WHERE session_id = ? AND kind = 'comment'",
                  sid)
        assert len(ev) == 1 and "signup form" in ev[0][2], ev

        rc, out, err = issue(farm, "show", str(number), "--json")
        j = json.loads(out)
        assert j["number"] == number and j["labels"] == ["agent", "bug"], j
        assert [c["body"] for c in j["comments"]] == ["Please also cover the signup form."], j
        assert j["clone_url"].startswith("file://"), j


def test_label_added_later_triggers():
    with new_farm() as farm:
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "Tidy the README")
        number = int(out.strip())
        assert session_of(farm, number) == [], "an issue without the label must not start work"
        d = rows(farm, "SELECT outcome FROM delivery WHERE number = ?", number)
        assert d == [("ignored",)], d
        issue(farm, "label", str(number), "agent")
        assert len(session_of(farm, number)) == 1
        # the same label again sends nothing new
        before = rows(farm, "SELECT count(*) FROM delivery")[0][0]
        issue(farm, "label", str(number), "AGENT")
        assert rows(farm, "SELECT count(*) FROM delivery")[0][0] == before
        rc, out, err = issue(farm, "list", "--json")
        listed = json.loads(out)["issues"]
        assert [i["number"] for i in listed] == [number] and listed[0]["labels"] == ["agent"], listed
        rc, out, err = issue(farm, "close", str(number))
        rc, out, err = issue(farm, "list", "--state", "closed")
        assert "Tidy the README" in out, out


def test_body_file_and_stdin():
    with new_farm() as farm:
        path = os.path.join(farm.tmp, "body.md")
        with open(path, "w") as f:
            f.write("# Steps\n\n1. open the page\n2. see the error\n")
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "From a file",
                             "--body-file", path)
        n = int(out.strip())
        rc, out, err = issue(farm, "comment", str(n), "--body-file", "-", stdin=b"from stdin\n")
        rc, out, err = issue(farm, "show", str(n))
        assert "1. open the page" in out and "from stdin" in out, out


def test_beside_a_running_farm():
    with new_farm(serve=True) as farm:
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "While serving",
                             "--label", "agent")
        number = int(out.strip())
        status, body = farm.get_json("/api/sessions?repo=demo")
        assert status == 200, (status, body)
        found = [s for s in body["sessions"] if s["number"] == number and s["tracker"] == "local"]
        assert len(found) == 1, body
        rc, out, err = issue(farm, "comment", str(number), "a comment while serving")
        rc, out, err = issue(farm, "show", str(number))
        assert "a comment while serving" in out, out


def test_review_comments_on_a_pull_request():
    with new_farm() as farm:
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "Fix the login")
        number = int(out.strip())
        # the farm opens local PRs through the tracker; stand in for it here
        with farm.db() as c:
            c.execute("INSERT INTO local_item (repo, is_pr, title, body, author, state,"
                      " head_branch, base_branch, issue, created_ms, updated_ms) VALUES"
                      " ('demo', 1, 'Fix the login', 'Resolves #1', 'farm-bot', 'open',"
                      " 'farm/1-fix-the-login', 'main', ?, 1, 1)", (number,))
            pr = c.execute("SELECT max(number) FROM local_item WHERE repo = 'demo' AND is_pr = 1"
                           " AND issue = ?", (number,)).fetchone()[0]
        rc, out, err = issue(farm, "show", str(number))
        assert "pull request #%d (open)" % pr in out and "farm/1-fix-the-login" in out, out
        rc, out, err = issue(farm, "comment", str(pr), "use a constant", "--path", "src/login.c",
                             "--line", "42")
        first = int(out.strip())
        rc, out, err = issue(farm, "comment", str(pr), "and a test", "--reply-to", str(first))
        rc, out, err = issue(farm, "show", str(pr), "--json")
        j = json.loads(out)
        assert j["is_pr"] and j["head_branch"] == "farm/1-fix-the-login", j
        rc_ = [(c["path"], c["line"], c["in_reply_to"], c["review"]) for c in j["comments"]]
        assert rc_ == [("src/login.c", 42, 0, True), ("src/login.c", 42, first, True)], rc_
        d = rows(farm, "SELECT event FROM delivery WHERE number = ? ORDER BY id", pr)
        assert d == [("pull_request_review_comment",)] * 2, d
        # review options on an issue are refused
        rc, out, err = issue(farm, "comment", str(number), "x", "--path", "a.c", ok=False)
        assert rc == 1 and "pull request" in err, (rc, err)

        # merging fast-forwards main, marks the PR merged and closes the issue
        rc, out, err = issue(farm, "merge", str(pr))
        assert "merged farm/1-fix-the-login into main" in out, out
        bare = os.path.join(farm.tmp, "demo.git")
        heads = [subprocess.run(["git", "--git-dir", bare, "rev-parse", b], check=True,
                                capture_output=True).stdout for b in
                 ("main", "farm/1-fix-the-login")]
        assert heads[0] == heads[1], heads
        st = rows(farm, "SELECT number, state FROM local_item ORDER BY number")
        assert st == [(number, "closed"), (pr, "merged")], st
        d = rows(farm, "SELECT event, action FROM delivery ORDER BY id")[-2:]
        assert d == [("pull_request", "closed"), ("issues", "closed")], d
        rc, out, err = issue(farm, "merge", str(pr), ok=False)
        assert rc == 1 and "not an open pull request" in err, (rc, err)


def test_bad_input_is_refused():
    with new_farm() as farm:
        rc, out, err = issue(farm, "new", "--repo", "nope", "--title", "x", ok=False)
        assert rc == 1 and "no local repository" in err, (rc, err)
        rc, out, err = issue(farm, "new", "--repo", "demo", ok=False)
        assert rc == 2 and "usage" in err, (rc, err)
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "x", "--body", "a",
                             "--body-file", "/dev/null", ok=False)
        assert rc == 2, (rc, err)
        rc, out, err = issue(farm, "show", "999", ok=False)
        assert rc == 1 and "999" in err, (rc, err)
        rc, out, err = issue(farm, "show", "abc", ok=False)
        assert rc == 1 and "not an issue number" in err, (rc, err)
        rc, out, err = issue(farm, "comment", "999", "hello", ok=False)
        assert rc == 1, (rc, err)
        big = os.path.join(farm.tmp, "big.md")
        with open(big, "wb") as f:
            f.write(b"x" * ((1 << 20) + 1))
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "big", "--body-file", big,
                             ok=False)
        assert rc == 1 and "over" in err, (rc, err)
        rc, out, err = issue(farm, "new", "--repo", "demo", "--title", "bad \xff utf8".encode(
            "latin-1").decode("utf-8", "surrogateescape"), ok=False)
        assert rc == 1 and "UTF-8" in err, (rc, err)
        rc, out, err = issue(farm, "frobnicate", ok=False)
        assert rc == 2, (rc, err)
        # nothing was created by any of that
        rc, out, err = issue(farm, "list", "--json")
        assert json.loads(out)["issues"] == [], out


if __name__ == "__main__":
    farmtest.run([test_new_issue_with_the_label_starts_a_session, test_label_added_later_triggers,
                  test_body_file_and_stdin, test_beside_a_running_farm,
                  test_review_comments_on_a_pull_request, test_bad_input_is_refused])
