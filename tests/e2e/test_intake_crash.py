"""End-to-end: kill -9 the farm in the middle of a burst of 500 concurrent
deliveries, restart it on the same data directory, and check that every
delivery that was answered 2xx is recorded, that none is recorded twice, and
that redelivering the whole burst (as trackers do) completes it exactly once."""
import http.client
import json
import os
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import Farm  # noqa: E402

N = 500


def payload(number):
    p = farmtest.github_fixture("issues.labeled")
    p["issue"]["number"] = number
    return json.dumps(p).encode()


def send(port, event, body, delivery, secret):
    """(status or None when the connection failed, body)"""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/hooks/github", body=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": farmtest.sign(secret, body)})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data
    except (OSError, http.client.HTTPException):
        return None, b""


def test_kill_during_burst():
    farm = Farm().start()
    try:
        burst = [("kill-%d-%s" % (i, uuid.uuid4().hex[:8]), 1000 + i) for i in range(N)]
        results = {}
        done = threading.Semaphore(0)
        gate = threading.Barrier(N + 1)
        port = farm.port

        def one(delivery, number):
            gate.wait()
            results[delivery] = send(port, "issues", payload(number), delivery, farm.github_secret)
            done.release()

        threads = [threading.Thread(target=one, args=b, daemon=True) for b in burst]
        for t in threads:
            t.start()
        gate.wait()
        # Let part of the burst be answered, then kill -9 with the rest in flight.
        farmtest.wait_for(lambda: sum(1 for r in list(results.values()) if r[0]) >= N // 5,
                          timeout=60, what="a fifth of the burst to be answered")
        farm.kill()
        for t in threads:
            t.join(60)
        answered = {d for d, (status, _) in results.items() if status and 200 <= status < 300}
        failed = {d for d, (status, _) in results.items() if status is None}
        assert len(answered) >= N // 5, len(answered)
        assert all(s in (None, 202) for s, _ in results.values()), \
            {s for s, _ in results.values()}
        print("answered before the kill: %d, cut off: %d" % (len(answered), len(failed)))

        farm.start()
        with farm.db() as c:
            rows = c.execute("SELECT delivery_id, count(*) FROM delivery GROUP BY delivery_id").fetchall()
            dup_sessions = c.execute(
                "SELECT number, count(*) FROM session GROUP BY tracker, repo, number HAVING count(*) > 1"
            ).fetchall()
        recorded = dict(rows)
        missing = answered - set(recorded)
        assert not missing, "answered 2xx but not recorded: %s" % sorted(missing)[:10]
        assert all(n == 1 for n in recorded.values())
        assert not dup_sessions, dup_sessions
        # Every recorded delivery of this burst made its session, in the same transaction.
        with farm.db() as c:
            orphans = c.execute("SELECT count(*) FROM delivery WHERE outcome='accepted' AND "
                                "session_id IS NULL").fetchone()[0]
        assert orphans == 0, orphans

        # The tracker redelivers everything: recorded ones are duplicates.
        statuses = {}
        for delivery, number in burst:
            status, data = send(farm.port, "issues", payload(number), delivery, farm.github_secret)
            statuses[delivery] = (status, json.loads(data).get("result", data) if data else None)
        for delivery in recorded:
            if delivery in statuses:
                assert statuses[delivery] == (200, "duplicate"), (delivery, statuses[delivery])
        for delivery, _ in burst:
            if delivery not in recorded:
                assert statuses[delivery] == (202, "accepted"), (delivery, statuses[delivery])
        with farm.db() as c:
            total = c.execute("SELECT count(*) FROM delivery").fetchone()[0]
            sessions = c.execute("SELECT count(DISTINCT number), count(*) FROM session").fetchone()
        assert total == N, total
        assert sessions == (N, N), sessions
        assert farm.stop() == 0
    finally:
        farm.kill()


if __name__ == "__main__":
    farmtest.run([test_kill_during_burst])
