"""seed - write sessions in every state, with the events the pipeline writes,
straight into a farm's store, for the UI tests, the digest tests and the
queue-page benchmark. The farm picks up events written this way within its
250 ms poll (docs/streams.md), so a test can also append "live" events.

    python3 seed.py DB all              # one session per state (prints the ids as JSON)
    python3 seed.py DB many N           # N sessions spread over the states
    python3 seed.py DB append ID KIND BODY_JSON   # one more event (prints its seq)

Python 3 standard library only.
"""
import json
import sqlite3
import sys
import time

STATES = ["queued", "preparing", "running", "testing", "pushing", "review", "revising",
          "waiting", "done", "failed", "cancelled"]


def connect(db):
    c = sqlite3.connect(db, timeout=30)
    c.execute("PRAGMA busy_timeout = 30000")
    return c


def append(c, sid, kind, body, ts=None, actor=None):
    """Append one event to session sid with the next seq; returns the seq."""
    ts = ts or int(time.time() * 1000)
    seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM event WHERE session_id = ?",
                    (sid,)).fetchone()[0]
    c.execute("INSERT INTO event (session_id, seq, ts_ms, kind, actor, body) VALUES (?,?,?,?,?,?)",
              (sid, seq, ts, kind, actor, json.dumps(body)))
    c.execute("UPDATE session SET last_seq = ?, updated_ms = MAX(updated_ms, ?) WHERE id = ?",
              (seq, ts, sid))
    return seq


def session(c, state, number, title, repo="octo/app", age_s=3600, tracker="github"):
    """A session in `state` with the log a real run leaves for it."""
    now = int(time.time() * 1000)
    created = now - age_s * 1000
    cur = c.execute(
        "INSERT INTO session (tracker, repo, number, title, url, state, branch, runs,"
        " agent_seconds, cost, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (tracker, repo, number, title, "https://github.com/%s/issues/%d" % (repo, number), state,
         "farm/%d-work" % number, 0 if state == "queued" else 1, 0.0, 0.0, created, created))
    sid = cur.lastrowid
    t = created
    tick = max(1, age_s * 1000 // 40)

    def ev(kind, body, actor=None):
        nonlocal t
        t += tick
        return append(c, sid, kind, body, ts=min(t, now), actor=actor)

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
    c.execute("UPDATE session SET pr_number = ?, pr_url = ?, agent_seconds = 61, cost = 0.42"
              " WHERE id = ?", (100 + number, "https://github.com/%s/pull/%d" % (repo, 100 + number), sid))
    ev("state", {"from": "pushing", "to": "review", "run": 1})
    if state == "revising":
        ev("run_started", {"job": sid, "run": 2, "kind": "revise"})
        ev("state", {"from": "review", "to": "revising", "run": 2})
        ev("step", {"run": 2, "step": "agent", "status": "started", "round": 1})
    if state == "done":
        ev("state", {"from": "review", "to": "done", "run": 1})
    return sid


def set_state(c, sid, state):
    c.execute("UPDATE session SET state = ? WHERE id = ?", (state, sid))


def seed_all(db):
    """One session per state; returns {state: id}."""
    with connect(db) as c:
        ids = {}
        for i, st in enumerate(STATES):
            sid = session(c, st, 10 + i, "Fix the %s thing" % st, age_s=600 + 60 * i)
            set_state(c, sid, st)
            ids[st] = sid
        return ids


def seed_many(db, n):
    with connect(db) as c:
        for i in range(n):
            st = STATES[i % len(STATES)]
            sid = session(c, st, 1000 + i, "Issue number %d: make it better" % i,
                          repo="octo/repo%d" % (i % 7), age_s=300 + i)
            set_state(c, sid, st)


def main(argv):
    db, what = argv[1], argv[2]
    if what == "all":
        print(json.dumps(seed_all(db)))
    elif what == "many":
        seed_many(db, int(argv[3]))
    elif what == "append":
        with connect(db) as c:
            print(append(c, int(argv[3]), argv[4], json.loads(argv[5])))
    else:
        raise SystemExit("seed.py: unknown command " + what)


if __name__ == "__main__":
    main(sys.argv)
