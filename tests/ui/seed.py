"""seed - write sessions in every state, with the events the pipeline writes,
into a farm's store, for the UI tests, the digest tests and the queue-page
benchmark. It goes through farm-store-probe (tests/support/store_probe.c,
FARM_STORE_PROBE), never the store's files, so it works on every store
backend. The farm picks up events written this way within its 250 ms poll
(docs/streams.md), so a test can also append "live" events.

    python3 seed.py DATA_DIR all              # one session per state (prints the ids as JSON)
    python3 seed.py DATA_DIR many N           # N sessions spread over the states
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
        ev("output", {"step": "agent", "stream": "stdout", "text": "agent: working on %s (%d)" % (title, i)})
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
    ev("output", {"step": "test", "stream": "stdout", "text": "ran 12 tests: %s" % ("ok" if passed else "2 failed")})
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


def seed_many(data_dir, n):
    seed(data_dir, [(STATES[i % len(STATES)], 1000 + i, "Issue number %d: make it better" % i,
                     "octo/repo%d" % (i % 7), 300 + i) for i in range(n)])


def main(argv):
    data_dir, what = argv[1], argv[2]
    if what == "all":
        print(json.dumps(seed_all(data_dir)))
    elif what == "many":
        seed_many(data_dir, int(argv[3]))
    elif what == "append":
        print(append(data_dir, int(argv[3]), argv[4], json.loads(argv[5])))
    else:
        raise SystemExit("seed.py: unknown command " + what)


if __name__ == "__main__":
    main(sys.argv)
