"""seed - write sessions in every state, with the events the pipeline writes,
into a farm's store, for the UI tests, the digest tests and the queue-page
benchmark. It goes through farm-store-probe (tests/support/store_probe.c,
FARM_STORE_PROBE), never the store's files, so it works on every store
backend. The farm picks up events written this way within its 250 ms poll
(docs/streams.md), so a test can also append "live" events.

    python3 seed.py DATA_DIR all              # one session per state (prints the ids as JSON)
    python3 seed.py DATA_DIR many N           # N sessions spread over the states
    python3 seed.py DATA_DIR prs              # a local PR (the demo's) and a draft PR (prints the ids)
    python3 seed.py DATA_DIR transcript       # a claude run with its transcript events (prints the id)
    python3 seed.py DATA_DIR egress           # a run with egress events, picked preset, hold (the id)
    python3 seed.py DATA_DIR plan             # a plan waiting for approval, revised once (the id)
    python3 seed.py DATA_DIR spend            # today's model spend of two repositories
    python3 seed.py DATA_DIR append ID KIND BODY_JSON   # one more event (prints its seq)

Sessions are written in one write, then their logs in a second (an event's
body names its session's id). Python 3 standard library only.
"""
import json
import os
import subprocess
import sys
import time

STATES = ["queued", "preparing", "running", "testing", "pushing", "review", "revising",
          "waiting", "done", "failed", "cancelled"]

FARM_BIN = os.environ.get("FARM_BIN", "farm")
STORE_PROBE = os.environ.get("FARM_STORE_PROBE") or os.path.join(
    os.path.dirname(os.path.abspath(FARM_BIN)), "tests", "farm-store-probe")


def probe(data_dir, *args, stdin=None):
    """farm-store-probe --data-dir DATA_DIR ARGS...: its JSON output."""
    p = subprocess.run([STORE_PROBE, "--data-dir", data_dir] + list(args), input=stdin,
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit("seed.py: %s" % (p.stderr.decode("utf-8", "replace").strip()
                                          or "farm-store-probe exited with %d" % p.returncode))
    return json.loads(p.stdout)


def query(data_dir, sql, *params):
    return probe(data_dir, "query", sql, *[json.dumps(p) for p in params])


class Batch:
    """Statements run by farm-store-probe in one write."""

    def __init__(self):
        self.lines = []

    def execute(self, sql, params=()):
        self.lines.append(json.dumps({"sql": sql, "params": list(params)}))

    def run(self, data_dir):
        if self.lines:
            probe(data_dir, "batch", stdin=("\n".join(self.lines) + "\n").encode())
        self.lines = []


def event(b, sid, seq, kind, body, ts, actor=None):
    """Append event seq (the next one) to session sid's log, into batch b,
    as the farm appends: the session's last_seq and updated_ms follow."""
    b.execute("INSERT INTO event (session_id, seq, ts_ms, kind, actor, body) VALUES (?,?,?,?,?,?)",
              (sid, seq, ts, kind, actor, json.dumps(body)))
    b.execute("UPDATE session SET last_seq = ?,"
              " updated_ms = CASE WHEN updated_ms > ? THEN updated_ms ELSE ? END WHERE id = ?",
              (seq, ts, ts, sid))
    return seq


def append(data_dir, sid, kind, body, ts=None, actor=None):
    """Append one event to session sid with the next seq, in one write;
    returns the seq."""
    ts = ts or int(time.time() * 1000)
    text = json.dumps(body)
    b = Batch()
    b.execute("INSERT INTO event (session_id, seq, ts_ms, kind, actor, body)"
              " SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM event WHERE session_id = ?",
              (sid, ts, kind, actor, text, sid))
    b.execute("UPDATE session SET last_seq = (SELECT MAX(seq) FROM event WHERE session_id = ?),"
              " updated_ms = CASE WHEN updated_ms > ? THEN updated_ms ELSE ? END WHERE id = ?",
              (sid, ts, ts, sid))
    b.run(data_dir)
    rows = query(data_dir, "SELECT MAX(seq) FROM event WHERE session_id = ? AND ts_ms = ?"
                 " AND kind = ? AND body = ?", sid, ts, kind, text)
    return list(rows[0].values())[0]


def session_row(b, state, number, title, repo, created, tracker="github"):
    """A session's row in `state`, into batch b."""
    b.execute(
        "INSERT INTO session (tracker, repo, number, title, url, state, branch, runs,"
        " agent_seconds, cost, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (tracker, repo, number, title, "https://github.com/%s/issues/%d" % (repo, number), state,
         "farm/%d-work" % number, 0 if state == "queued" else 1, 0.0, 0.0, created, created))


def session_log(b, sid, state, number, title, repo, created, now):
    """The log a real run leaves for session sid in `state`, into batch b."""
    t = created
    tick = max(1, (now - created) // 40)
    seq = 0

    def ev(kind, body, actor=None):
        nonlocal t, seq
        t += tick
        seq += 1
        return event(b, sid, seq, kind, body, ts=min(t, now), actor=actor)

    ev("triggered", {"event": "issues", "action": "labeled", "label": "agent"}, actor="octocat")
    if state == "queued":
        return sid
    ev("run_started", {"job": sid, "run": 1, "kind": "run"})
    ev("state", {"from": "queued", "to": "preparing", "run": 1})
    ev("step", {"run": 1, "step": "fetch", "status": "started"})
    ev("step", {"run": 1, "step": "fetch", "status": "done", "ms": 420})
    if state == "preparing":
        ev("step", {"run": 1, "step": "worktree", "status": "started"})
        return sid
    ev("state", {"from": "preparing", "to": "running", "run": 1})
    ev("step", {"run": 1, "step": "agent", "status": "started", "round": 1})
    for i in range(3):
        ev("output", {"step": "agent", "stream": "stdout", "line": "agent: working on %s (%d)" % (title, i),
                      "round": 1})
    if state in ("running", "cancelled"):
        if state == "cancelled":
            ev("cancel_requested", {"job": sid}, actor="admin")
            ev("run_finished", {"run": 1, "outcome": "cancelled", "kind": "run"})
            ev("state", {"from": "running", "to": "cancelled", "run": 1})
        return sid
    ev("step", {"run": 1, "step": "agent", "status": "done", "round": 1, "exit": 0, "ms": 61000})
    if state == "waiting":
        ev("question", {"run": 1, "question": "Should the parser accept tabs as separators?"})
        ev("run_finished", {"run": 1, "outcome": "question", "kind": "run"})
        ev("state", {"from": "running", "to": "waiting", "run": 1})
        return sid
    ev("state", {"from": "running", "to": "testing", "run": 1})
    ev("step", {"run": 1, "step": "test", "status": "started", "round": 1})
    passed = state != "failed"
    ev("output", {"step": "test", "stream": "stdout", "line": "ran 12 tests: %s" % ("ok" if passed else "2 failed"),
                  "round": 1})
    if state == "testing":
        return sid
    ev("step", {"run": 1, "step": "test", "status": "done", "round": 1, "exit": 0 if passed else 1,
                "passed": passed, "tail": "ok" if passed else "FAIL test_split"})
    ev("test_result", {"run": 1, "round": 1, "exit": 0 if passed else 1, "passed": passed})
    if state == "failed":
        ev("failed", {"run": 1, "reason": "the tests still fail after 2 fix rounds"})
        ev("run_finished", {"run": 1, "outcome": "failed", "kind": "run",
                            "reason": "the tests still fail after 2 fix rounds"})
        ev("state", {"from": "testing", "to": "failed", "run": 1})
        return sid
    ev("state", {"from": "testing", "to": "pushing", "run": 1})
    ev("step", {"run": 1, "step": "push", "status": "started"})
    if state == "pushing":
        return sid
    ev("step", {"run": 1, "step": "push", "status": "done", "ms": 800})
    ev("run_finished", {"run": 1, "outcome": "pr", "kind": "run", "tests": "passed",
                        "diffstat": {"files": 3, "insertions": 42, "deletions": 7}})
    b.execute("UPDATE session SET pr_number = ?, pr_url = ?, agent_seconds = 61, cost = 0.42"
              " WHERE id = ?", (100 + number, "https://github.com/%s/pull/%d" % (repo, 100 + number), sid))
    ev("state", {"from": "pushing", "to": "review", "run": 1})
    if state == "revising":
        ev("run_started", {"job": sid, "run": 2, "kind": "revise"})
        ev("state", {"from": "review", "to": "revising", "run": 2})
        ev("step", {"run": 2, "step": "agent", "status": "started", "round": 1})
    if state == "done":
        ev("state", {"from": "review", "to": "done", "run": 1})
    return sid


def seed(data_dir, specs):
    """Write sessions from specs, (state, number, title, repo, age_s) each,
    with their logs; returns their ids in order."""
    now = int(time.time() * 1000)
    b = Batch()
    for state, number, title, repo, age_s in specs:
        session_row(b, state, number, title, repo, now - age_s * 1000, "github")
    b.run(data_dir)
    newest = {}
    for r in query(data_dir, "SELECT id, repo, number FROM session WHERE tracker = 'github'"):
        key = (r["repo"], r["number"])
        newest[key] = max(newest.get(key, 0), r["id"])
    ids = [newest[(repo, number)] for _, number, _, repo, _ in specs]
    for sid, (state, number, title, repo, age_s) in zip(ids, specs):
        session_log(b, sid, state, number, title, repo, now - age_s * 1000, now)
        b.execute("UPDATE session SET state = ? WHERE id = ?", (state, sid))
    b.run(data_dir)
    return ids


def seed_all(data_dir):
    """One session per state; returns {state: id}."""
    specs = [(st, 10 + i, "Fix the %s thing" % st, "octo/app", 600 + 60 * i)
             for i, st in enumerate(STATES)]
    return dict(zip(STATES, seed(data_dir, specs)))


def draft_reason(spec):
    """What farm/run/pipeline_pr.c says of a PR whose tests still fail after
    the spec's rounds, or None when the last round passed."""
    n = len(spec["rounds"])
    if spec["rounds"][-1][2] == 0:
        return None
    return "the tests still fail after %d round%s" % (n, "" if n == 1 else "s")


def pr_log(b, sid, spec, created, now):
    """The log farm/run/ writes for a run that opens a pull request after
    spec["rounds"] (agent, test) rounds, each a list of test output lines
    and an exit status; the run's end, then the tracker's answer (pr_opened,
    written by the outbox, which moves the session to review without a
    "state" event)."""
    t = created
    seq = 0
    rounds = spec["rounds"]
    tick = max(1, (now - created) // (24 + 8 * len(rounds)))

    def ev(kind, body, actor=None):
        nonlocal t, seq
        t += tick
        seq += 1
        return event(b, sid, seq, kind, body, ts=min(t, now), actor=actor)

    ev("triggered", {"rule": "label agent", "number": spec["number"], "url": spec["url"], "job": sid},
       actor=spec["author"])
    ev("run_started", {"job": sid, "run": 1, "kind": "run"})
    ev("state", {"from": "queued", "to": "preparing", "run": 1})
    for step in ("fetch", "worktree"):
        ev("step", {"run": 1, "step": step, "status": "started"})
        ev("step", {"run": 1, "step": step, "status": "done", "ms": 300})
    ev("state", {"from": "preparing", "to": "running", "run": 1})
    exit_code = 0
    for n, rnd in enumerate(rounds, 1):
        agent_lines, test_lines, exit_code = rnd[:3]
        transcript = rnd[3] if len(rnd) > 3 else {}  # agent line index -> its events
        if n > 1:
            ev("state", {"from": "testing", "to": "running", "run": 1})
        ev("step", {"run": 1, "step": "agent", "status": "started", "round": n})
        for i, line in enumerate(agent_lines):
            ev("output", {"step": "agent", "stream": "stdout", "line": line, "round": n})
            for kind, body in transcript.get(i, []):
                ev(kind, dict(body, step="agent", round=n))
        ev("step", {"run": 1, "step": "agent", "status": "done", "round": n, "exit": 0, "ms": 21000})
        ev("state", {"from": "running", "to": "testing", "run": 1})
        ev("step", {"run": 1, "step": "test", "status": "started", "round": n})
        for line in test_lines:
            ev("output", {"step": "test", "stream": "stdout", "line": line, "round": n})
        ev("step", {"run": 1, "step": "test", "status": "done", "round": n, "ms": 900, "exit": exit_code,
                    "passed": exit_code == 0, "tail": "\n".join(test_lines) + "\n"})
        ev("test_result", {"run": 1, "round": n, "exit": exit_code, "passed": exit_code == 0})
    draft = exit_code != 0
    ev("state", {"from": "testing", "to": "pushing", "run": 1})
    oid = "3f1c9a0e5b7d2c4f6a8e0b1d3c5e7f9a1b2c3d4e"
    ev("step", {"run": 1, "step": "commit", "status": "started"})
    ev("step", {"run": 1, "step": "commit", "status": "done", "ms": 40, "empty": False, "oid": oid,
                "head": oid})
    ev("step", {"run": 1, "step": "push", "status": "started"})
    ev("step", {"run": 1, "step": "push", "status": "done", "ms": 200, "oid": oid})
    ev("pushed", {"run": 1, "oid": oid, "branch": spec["branch"]})
    why = {"draft_reason": draft_reason(spec)} if draft else {}
    ev("step", dict({"run": 1, "step": "pr", "status": "done", "ms": 5, "draft": draft}, **why))
    tests = ("failing (`%s`, exit status %d, after %d rounds)" % (spec["test"], exit_code, len(rounds))
             if draft else "passed (`%s`, round %d)" % (spec["test"], len(rounds)))
    ev("run_finished", dict({"run": 1, "outcome": "draft" if draft else "pr", "kind": "run", "tests": tests,
                             "commit": oid, "draft": draft}, **why, diffstat=spec["diffstat"]))
    ev("pr_opened", {"number": spec["pr_number"], "url": spec["pr_url"]})


def seed_prs(data_dir):
    """Two sessions in review: the demo's (the local tracker: its PR is a
    branch of the repository's clone, local://, no web page; the tests fail
    in round 1, then pass) and a draft PR whose tests still fail after two
    rounds. Returns {"local": id, "draft": id}."""
    now = int(time.time() * 1000)
    specs = {
        "local": {
            "tracker": "local", "repo": "demo/greeter", "number": 1, "author": "you",
            "title": "Fix the typo in the greeting", "url": "local://demo/greeter/issues/1",
            "branch": "farm/1-fix-the-typo-in-the-greeting", "pr_number": 2,
            "pr_url": "local://demo/greeter/pulls/2", "test": "./test.sh", "age_s": 240,
            "diffstat": {"files": 1, "insertions": 1, "deletions": 1},
            "rounds": [
                (["reading greeter.sh and test.sh"],
                 ["checking that greeter.sh prints: Hello, world!", 'FAIL: greeter.sh prints "Hello, wrold!"'], 1),
                (["the greeting says wrold: fixing the typo in greeter.sh"],
                 ["checking that greeter.sh prints: Hello, world!", 'ok: greeter.sh prints "Hello, world!"'], 0),
            ],
        },
        "draft": {
            "tracker": "github", "repo": "octo/app", "number": 40, "author": "octocat",
            "title": "Accept tabs as separators in the config parser", "url": "https://github.com/octo/app/issues/40",
            "branch": "farm/40-accept-tabs", "pr_number": 140, "pr_url": "https://github.com/octo/app/pull/140",
            "test": "make test", "age_s": 900,
            "diffstat": {"files": 2, "insertions": 18, "deletions": 3},
            "rounds": [
                (["splitting on any whitespace in parse_line()"],
                 ["ran 12 tests", "FAIL test_tabs: expected 3 fields, got 1"], 1),
                (["trying a regex split instead"],
                 ["ran 12 tests", "FAIL test_tabs: expected 3 fields, got 2"], 1),
            ],
        },
    }
    return seed_specs(data_dir, specs, now)


def claude_line(content, kind="assistant"):
    """One line of Claude Code's stream-json, as the agent printed it."""
    return json.dumps({"type": kind, "message": {"role": kind, "content": content}})


def seed_transcript(data_dir):
    """A session in review whose agent (the claude preset) printed
    stream-json: its raw output lines, and the transcript events
    farm/run/pipeline_exec.c logs after them (what the agent said, its tool
    calls and their results, a failed command, the files it changed).
    Returns {"transcript": id}."""
    now = int(time.time() * 1000)
    w, e, b = "toolu_01FakeWrite01", "toolu_01FakeBash02", "toolu_01FakeBash03"
    path = "src/parser.c"  # relative to the agent's worktree
    raw = [
        json.dumps({"type": "system", "subtype": "init", "cwd": "/work", "model": "claude-opus-5-5"}),
        claude_line([{"type": "text", "text": "I'll make the parser split on tabs as well as spaces."}]),
        claude_line([{"type": "tool_use", "id": w, "name": "Edit",
                      "input": {"file_path": path, "old_string": "' '", "new_string": "\" \\t\""}}]),
        claude_line([{"type": "tool_result", "tool_use_id": w, "content": "The file was updated."}], "user"),
        claude_line([{"type": "tool_use", "id": e, "name": "Bash", "input": {"command": "make test"}}]),
        claude_line([{"type": "tool_result", "tool_use_id": e, "is_error": True,
                      "content": "Exit code 2\nFAIL test_tabs"}], "user"),
        claude_line([{"type": "tool_use", "id": b, "name": "Bash",
                      "input": {"command": "make test TESTS=test_tabs"}}]),
        claude_line([{"type": "tool_result", "tool_use_id": b, "content": "ran 1 test: ok"}], "user"),
        claude_line([{"type": "text", "text": "Done: the parser accepts tabs; test_tabs passes."}]),
        json.dumps({"type": "result", "subtype": "success", "is_error": False, "total_cost_usd": 0.0412}),
    ]
    transcript = {
        1: [("agent_message", {"text": "I'll make the parser split on tabs as well as spaces."})],
        2: [("tool_call", {"id": w, "tool": "Edit", "summary": path})],
        3: [("tool_result", {"id": w, "ok": True}), ("file_change", {"path": path, "kind": "update"})],
        4: [("tool_call", {"id": e, "tool": "Bash", "summary": "make test"})],
        5: [("tool_result", {"id": e, "ok": False}), ("command", {"command": "make test", "exit_code": 2})],
        6: [("tool_call", {"id": b, "tool": "Bash", "summary": "make test TESTS=test_tabs"})],
        7: [("tool_result", {"id": b, "ok": True}),
            ("command", {"command": "make test TESTS=test_tabs", "exit_code": 0})],
        8: [("agent_message", {"text": "Done: the parser accepts tabs; test_tabs passes."})],
    }
    specs = {
        "transcript": {
            "tracker": "github", "repo": "octo/app", "number": 41, "author": "octocat",
            "title": "Split config fields on tabs", "url": "https://github.com/octo/app/issues/41",
            "branch": "farm/41-split-on-tabs", "pr_number": 141, "pr_url": "https://github.com/octo/app/pull/141",
            "test": "make test", "age_s": 600,
            "diffstat": {"files": 1, "insertions": 2, "deletions": 1},
            "rounds": [(raw, ["ran 12 tests", "ok"], 0, transcript)],
        },
    }
    return seed_specs(data_dir, specs, now)


def seed_egress(data_dir):
    """A session in review whose agent (the codex preset, picked by the
    issue) ran under `network: allowlist`: the egress proxy let it reach its
    package index and refused pypi.org, 37 times (farm/run/pipeline_egress.c:
    the first one at once, the count when the step ended); the issue is on
    hold (`/farm hold` by alice). Returns {"egress": id}."""
    now = int(time.time() * 1000)
    deny = {"host": "pypi.org", "port": 443, "decision": "deny", "reason": "not on the allowlist"}
    raw = ["installing the test dependencies", "pip: could not reach pypi.org, retrying",
           "giving up on pypi.org; using the vendored copy", "done"]
    events = {
        0: [("egress", {"host": "packages.internal", "port": 443, "decision": "allow", "count": 1})],
        1: [("egress", dict(deny, count=1))],
        3: [("egress", dict(deny, count=37, repeat=True))],
    }
    specs = {
        "egress": {
            "tracker": "github", "repo": "octo/app", "number": 51, "author": "octocat",
            "title": "Vendor the YAML parser", "url": "https://github.com/octo/app/issues/51",
            "branch": "farm/51-vendor-yaml", "pr_number": 151, "pr_url": "https://github.com/octo/app/pull/151",
            "test": "make test", "age_s": 900,
            "diffstat": {"files": 4, "insertions": 310, "deletions": 2},
            "rounds": [(raw, ["ran 20 tests", "ok"], 0, events)],
        },
    }
    ids = seed_specs(data_dir, specs, now)
    b = Batch()
    b.execute("UPDATE session SET agent = 'codex' WHERE id = ?", (ids["egress"],))
    b.execute("INSERT INTO setting (key, value, updated_ms) VALUES (?, ?, ?)",
              ("hold/github/octo/app#51", json.dumps({"by": "alice", "since_ms": now}), now))
    b.run(data_dir)
    return ids


FIRST_PLAN = "1. Rewrite the parser from scratch."
REVISED_PLAN = (
    "1. Keep parse_line() and split on runs of spaces or tabs (str.split() with no argument).\n"
    "2. Add test_tabs and test_mixed_whitespace to tests/test_parser.py.\n"
    "3. Say in README.md that tabs separate fields too.\n"
    "Files: config/parser.py, tests/test_parser.py, README.md. Risk: a value with an embedded "
    "tab now splits; none of the sample configs has one. No new dependency, no migration, "
    "nothing else changes in the public interface of the module or its callers.")


def seed_plan(data_dir):
    """A session in awaiting_approval (plan first, farm/run/pipeline_plan.c):
    run 1 wrote a plan, a comment asked for another, run 2 wrote the revised
    plan (over 300 characters: the queue shortens it). Returns {"plan": id}."""
    now = int(time.time() * 1000)
    created = now - 1500 * 1000
    b = Batch()
    session_row(b, "running", 60, "Accept tabs in the config file", "octo/app", created)
    b.run(data_dir)
    sid = query(data_dir, "SELECT id FROM session WHERE tracker = 'github' AND number = 60"
                " ORDER BY id DESC LIMIT 1")[0]["id"]
    t, seq = created, 0

    def ev(kind, body, actor=None):
        nonlocal t, seq
        t += 20000
        seq += 1
        return event(b, sid, seq, kind, body, ts=min(t, now), actor=actor)

    ev("triggered", {"event": "issues", "action": "labeled", "label": "agent"}, actor="octocat")
    for run, plan, frm in ((1, FIRST_PLAN, "queued"), (2, REVISED_PLAN, "awaiting_approval")):
        if run == 2:
            ev("comment", {"body": "Keep the parser; a smaller change, please."}, actor="octocat")
        ev("run_started", {"job": sid, "run": run, "kind": "plan"})
        ev("state", {"from": frm, "to": "running", "run": run})
        ev("step", {"run": run, "step": "agent", "status": "started", "round": 1})
        ev("output", {"step": "agent", "stream": "stdout", "line": "reading config/parser.py", "round": 1})
        ev("step", {"run": run, "step": "agent", "status": "done", "round": 1, "exit": 0, "ms": 30000})
        ev("plan", {"run": run, "plan": plan})
        ev("run_finished", {"run": run, "outcome": "plan", "kind": "plan"})
        ev("state", {"from": "running", "to": "awaiting_approval", "run": run})
    b.execute("UPDATE session SET state = 'awaiting_approval', runs = 2 WHERE id = ?", (sid,))
    b.run(data_dir)
    return {"plan": sid}


def seed_spend(data_dir):
    """Today's model spend (the model_spend table, per UTC day and
    repository, as the gateway's calls add to it): octo/app $3.2175, and
    octo/lib-with-a-long-name $0.0042. Returns the rows as JSON."""
    day = int(time.time() * 1000) // 86400000
    rows = {"octo/app": 3.2175, "octo/lib-with-a-rather-long-name": 0.0042}
    b = Batch()
    for repo, usd in rows.items():
        b.execute("INSERT INTO model_spend (day, repo, usd) VALUES (?, ?, ?)"
                  " ON CONFLICT (day, repo) DO UPDATE SET usd = excluded.usd", (day, repo, usd))
    b.run(data_dir)
    return rows


def seed_specs(data_dir, specs, now):
    b = Batch()
    for name, sp in specs.items():
        created = now - sp["age_s"] * 1000
        b.execute("INSERT INTO session (tracker, repo, number, title, url, state, branch, runs, agent_seconds,"
                  " cost, created_ms, updated_ms) VALUES (?,?,?,?,?,'pushing',?,1,42,0.31,?,?)",
                  (sp["tracker"], sp["repo"], sp["number"], sp["title"], sp["url"], sp["branch"], created, created))
    b.run(data_dir)
    ids = {}
    for name, sp in specs.items():
        rows = query(data_dir, "SELECT id FROM session WHERE tracker = ? AND repo = ? AND number = ?"
                     " ORDER BY id DESC LIMIT 1", sp["tracker"], sp["repo"], sp["number"])
        ids[name] = rows[0]["id"]
    for name, sp in specs.items():
        sid = ids[name]
        pr_log(b, sid, sp, now - sp["age_s"] * 1000, now)
        # the run's commit records whether the PR is a draft and why (the
        # session's pr_draft, pr_draft_reason); the outbox, once the tracker
        # has opened the PR, its number and URL and the state
        why = draft_reason(sp)
        b.execute("UPDATE session SET pr_draft = ?, pr_draft_reason = ? WHERE id = ?",
                  (1 if why else 0, why, sid))
        b.execute("UPDATE session SET state = 'review', pr_number = ?, pr_url = ? WHERE id = ?",
                  (sp["pr_number"], sp["pr_url"], sid))
    b.run(data_dir)
    return ids


def seed_many(data_dir, n):
    seed(data_dir, [(STATES[i % len(STATES)], 1000 + i, "Issue number %d: make it better" % i,
                     "octo/repo%d" % (i % 7), 300 + i) for i in range(n)])


def main(argv):
    data_dir, what = argv[1], argv[2]
    if what == "all":
        print(json.dumps(seed_all(data_dir)))
    elif what == "many":
        seed_many(data_dir, int(argv[3]))
    elif what == "prs":
        print(json.dumps(seed_prs(data_dir)))
    elif what == "transcript":
        print(json.dumps(seed_transcript(data_dir)))
    elif what == "egress":
        print(json.dumps(seed_egress(data_dir)))
    elif what == "plan":
        print(json.dumps(seed_plan(data_dir)))
    elif what == "spend":
        print(json.dumps(seed_spend(data_dir)))
    elif what == "append":
        print(append(data_dir, int(argv[3]), argv[4], json.loads(argv[5])))
    else:
        raise SystemExit("seed.py: unknown command " + what)


if __name__ == "__main__":
    main(sys.argv)
