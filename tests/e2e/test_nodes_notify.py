"""test_nodes_notify - wake-ups across nodes on one PostgreSQL store: what one
process commits wakes the live readers of another through NOTIFY/LISTEN,
not through the session poll (which every farm here runs only every ten
minutes: FARM_STREAM_POLL_MS), so each delivery below can only come from a
notification.

- two `farm serve --intake-only` on one store: a plain /v1/stream/ stream
  written on A is read on B by an SSE reader and a long-poll reader, and a
  plain catch-up GET on B at B's cached tail sees A's appends (the hot cache
  does not answer "up to date" from a stale tail); a session log written on
  A (messages) reaches an SSE reader on B; the latencies are well under the
  250 ms poll this replaces (p50 under 100 ms);
- both nodes' LISTEN connections killed: B's reader still gets A's appends,
  B reconnects, and appends arrive at notification speed again;
- `farm serve --intake-only` and a `farm worker`: an SSE reader and a
  long-poll reader of the session log on the serve node see the worker's
  events of a real run as they are committed.

PostgreSQL only (the .pg variant); on SQLite one process owns the file and
the test is skipped (77).
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from farmtest import ADMIN_TOKEN, VIEWER_TOKEN, Farm  # noqa: E402
from sse import SSE  # noqa: E402

VIEWER = {"Authorization": "Bearer " + VIEWER_TOKEN}
ADMIN = {"Authorization": "Bearer " + ADMIN_TOKEN}
JSON = {"Content-Type": "application/json"}
POLL_OFF = "600000"  # the safety poll: ten minutes, so only NOTIFY is in time
FINAL = ("review", "failed", "done", "cancelled")


def h(*dicts):
    out = {}
    for d in dicts:
        out.update(d)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def quiet_farm(**kw):
    f = Farm(**kw)
    f.env["FARM_STREAM_POLL_MS"] = POLL_OFF
    return f


def two_serves():
    a = quiet_farm(serve_args=["--intake-only"])
    b = quiet_farm(serve_args=["--intake-only"], extra={"store": {"url": a.store_url}})
    return a, b


def read_timed(r, want, timeout):
    """Read r until it holds want messages; the arrival time of each."""
    arrived = []
    deadline = time.monotonic() + timeout
    while len(r.messages) < want:
        if time.monotonic() > deadline or r.eof or r.closed:
            raise AssertionError("SSE: %d of %d messages" % (len(r.messages), want))
        r.sock.settimeout(max(0.05, deadline - time.monotonic()))
        n = len(r.messages)
        r.read_some()
        now = time.monotonic()
        arrived.extend([now] * (len(r.messages) - n))
    return arrived


def test_plain_stream_across_serves():
    a, b = two_serves()
    with a, b:
        # A makes the stream; a live reader on B makes B's entry of it hot
        # (tail 1 cached): plain reads on B are answered from that entry
        s, _, _ = a.request("PUT", "/v1/stream/x/chat", body=b'[{"n":0}]', headers=h(ADMIN, JSON))
        assert s == 201, s
        r0 = SSE(b.port, "/v1/stream/x/chat", "-1", headers=VIEWER)
        r0.read_until(lambda x: x.messages == [{"n": 0}] and x.controls)
        s, hd, body = b.request("GET", "/v1/stream/x/chat?offset=-1", headers=VIEWER)
        assert s == 200 and json.loads(body) == [{"n": 0}], (s, body)
        tail = hd["stream-next-offset"]

        # an append on A: a catch-up GET on B at its cached tail sees it
        # (not "up to date" from the stale tail), and so does the live reader
        t0 = time.monotonic()
        s, _, _ = a.request("POST", "/v1/stream/x/chat", body=b'{"n":1}', headers=h(ADMIN, JSON))
        assert s in (200, 204), s

        def caught_up():
            s, _, body = b.request("GET", "/v1/stream/x/chat?offset=" + tail, headers=VIEWER)
            return s == 200 and json.loads(body) == [{"n": 1}]
        farmtest.wait_for(caught_up, 5.0, "B to see A's append at its cached tail")
        assert time.monotonic() - t0 < 2.0
        r0.read_until(lambda x: len(x.messages) == 2)
        assert r0.messages == [{"n": 0}, {"n": 1}], r0.messages
        r0.close()

        # live readers on B: one SSE, one long-poll, woken by A's appends
        s, hd, _ = b.request("GET", "/v1/stream/x/chat?offset=-1", headers=VIEWER)
        tail = hd["stream-next-offset"]
        r = SSE(b.port, "/v1/stream/x/chat", tail, headers=VIEWER)
        r.read_until(lambda x: x.controls)
        got = {}

        def long_poll():
            got["r"] = b.request("GET", "/v1/stream/x/chat?offset=%s&live=long-poll" % tail,
                                 headers=VIEWER, timeout=30)
        t = threading.Thread(target=long_poll)
        t.start()  # waiting, or (when late) answered at once from the first append
        n, lat, sent = 40, [], []
        for i in range(n):
            sent.append(time.monotonic())
            s, _, _ = a.request("POST", "/v1/stream/x/chat", body=json.dumps({"i": i}).encode(),
                                headers=h(ADMIN, JSON))
            assert s in (200, 204), s
            arrived = read_timed(r, i + 1, 5.0)
            lat.append(arrived[-1] - sent[-1] if arrived else 0.0)
        assert [m["i"] for m in r.messages] == list(range(n)), r.messages
        t.join(30)
        s, _, body = got["r"]
        assert s == 200 and json.loads(body)[0] == {"i": 0}, (s, body)
        r.close()
        p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
        print("# plain stream, A -> B: p50 %.1f ms, p99 %.1f ms (%d appends)" % (p50, p99, n),
              flush=True)
        assert p50 < 100, lat
        assert p99 < 1000, lat


def listen_suffix(store_url):
    """The channel suffix pg_notify.c gives the schema of store_url."""
    schema = store_url.rsplit("search_path%3D", 1)[1].split("&")[0]
    h = 14695981039346656037
    for ch in schema.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "_%016x" % h


def kill_listeners(store_url):
    """Terminate every LISTEN connection of the store's schema (both nodes');
    the number killed."""
    sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
           " WHERE query LIKE 'LISTEN %%%s\"'" % listen_suffix(store_url))
    p = subprocess.run(["psql", "-qtAX", farmtest.pg_url(), "-c", sql], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.strip())


def test_lost_listen_connection():
    """Both nodes' LISTEN connections are killed: B's live reader still gets
    A's appends (reads go to the store until B listens again, then every
    watched stream is reloaded), and once B listens again appends arrive
    at notification speed."""
    a, b = two_serves()
    with a, b:
        s, _, _ = a.request("PUT", "/v1/stream/x/lost", body=b'[]', headers=h(ADMIN, JSON))
        assert s == 201, s
        r = SSE(b.port, "/v1/stream/x/lost", "-1", headers=VIEWER, timeout=30)
        r.read_until(lambda x: x.controls)
        assert kill_listeners(a.store_url) == 2
        s, _, _ = a.request("POST", "/v1/stream/x/lost", body=b'{"i":0}', headers=h(ADMIN, JSON))
        assert s in (200, 204), s
        read_timed(r, 1, 10.0)
        farmtest.wait_for(lambda: any("listening again" in x for x in b.log_lines), 10,
                          "B to listen again")
        lat = []
        for i in range(1, 21):
            t0 = time.monotonic()
            s, _, _ = a.request("POST", "/v1/stream/x/lost", body=json.dumps({"i": i}).encode(),
                                headers=h(ADMIN, JSON))
            assert s in (200, 204), s
            lat.append(read_timed(r, i + 1, 5.0)[-1] - t0)
        assert [m["i"] for m in r.messages] == list(range(21)), r.messages
        assert any("the LISTEN connection broke" in x for x in b.log_lines)
        assert pct(lat, 50) < 0.1, lat
        r.close()


def new_session(farm, number):
    p = farmtest.github_fixture("issues.labeled")
    p["label"] = {"name": "agent"}
    p["issue"]["number"] = number
    status, body = farm.post_github("issues", p)
    assert status == 202, (status, body)
    return body["session"]


def test_session_log_across_serves():
    a, b = two_serves()
    with a, b:
        sid = new_session(a, 12)
        path = "/v1/stream/sessions/%d" % sid
        r = SSE(b.port, path, "now", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        n, lat = 30, []
        for i in range(n):
            t0 = time.monotonic()
            s, _, body = a.request("POST", "/api/sessions/%d/messages" % sid,
                                   body=json.dumps({"text": "note %d" % i}).encode(),
                                   headers=h(ADMIN, JSON))
            assert s == 201, (s, body)
            arrived = read_timed(r, i + 1, 5.0)
            lat.append(arrived[-1] - t0)
        assert [m["body"]["text"] for m in r.messages] == ["note %d" % i for i in range(n)]
        r.close()
        p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
        print("# session log, A -> B: p50 %.1f ms, p99 %.1f ms (%d events)" % (p50, p99, n),
              flush=True)
        assert p50 < 100, lat
        assert p99 < 1000, lat


def test_worker_events_reach_serve_readers():
    w = farmtest.GitHubWorld()
    w.farm.serve_args = ["--intake-only"]
    w.farm.env["FARM_STREAM_POLL_MS"] = POLL_OFF
    worker = None
    ok = False
    log = open(os.path.join(w.tmp, "worker.log"), "wb")
    try:
        w.start()
        env = dict(w.farm.env)
        worker = subprocess.Popen([farmtest.FARM_BIN, "worker", "--config", w.farm.config_path],
                                  stdout=subprocess.DEVNULL, stderr=log, env=env)
        farm = w.farm
        farmtest.wait_for(lambda: len(farm.get_json("/api/nodes", token=VIEWER_TOKEN)[1]["nodes"])
                          == 1, 120, "the worker's heartbeat")
        num = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
        sess = w.wait_session(num, lambda s: True, what="the session")
        sid = sess["id"]
        path = "/v1/stream/sessions/%d" % sid
        r = SSE(farm.port, path, "-1", headers=VIEWER, timeout=120)
        r.read_until(lambda x: x.controls)
        live_from = time.time()  # events committed from here on were read live
        seen_at = {}
        lp_seqs = []
        stop = threading.Event()

        def long_poller():
            _, hd, body = farm.request("GET", path + "?offset=-1", headers=VIEWER)
            lp_seqs.extend(m["seq"] for m in json.loads(body))
            off = hd["stream-next-offset"]
            while not stop.is_set():
                try:
                    s, hd, body = farm.request("GET", "%s?offset=%s&live=long-poll" % (path, off),
                                               headers=VIEWER, timeout=60)
                except OSError:
                    if stop.is_set():  # the farm stopped under the last wait
                        return
                    raise
                if s == 200:
                    lp_seqs.extend(m["seq"] for m in json.loads(body))
                off = hd.get("stream-next-offset", off)
        lp = threading.Thread(target=long_poller, daemon=True)
        lp.start()

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            n = len(r.messages)
            r.sock.settimeout(1.0)
            r.read_some()
            now = time.time()
            for m in r.messages[n:]:
                seen_at[m["seq"]] = now
            row = farmtest.session_rows(farm, "id = ?", sid)
            if row and row[0]["state"] in FINAL and len(r.messages) >= row[0]["last_seq"]:
                break
        row = farmtest.session_rows(farm, "id = ?", sid)[0]
        assert row["state"] == "review", row
        events = farmtest.session_events(farm, sid)
        seqs = [e[0] for e in events]
        ts_ms = {e[0]: e[1] for e in events}
        assert [m["seq"] for m in r.messages] == seqs, (r.messages, seqs)
        # the events the worker appended while the reader was live: each
        # arrived within a fraction of the ten-minute poll
        live = [m for m in r.messages
                if m["seq"] in seen_at and ts_ms[m["seq"]] / 1000.0 > live_from]
        lat = [seen_at[m["seq"]] - ts_ms[m["seq"]] / 1000.0 for m in live]
        late = [(m["seq"], m["kind"], round(x, 3)) for m, x in zip(live, lat) if x > 2.0]
        assert not late, late
        farmtest.wait_for(lambda: len(set(lp_seqs)) >= len(seqs), 10, "the long-poll reader")
        assert sorted(set(lp_seqs)) == seqs, lp_seqs
        stop.set()
        r.close()
        if lat:
            print("# worker -> serve reader: p50 %.1f ms, max %.1f ms (%d events)"
                  % (pct(lat, 50) * 1000, max(lat) * 1000, len(lat)), flush=True)
        ok = True
    finally:
        if worker:
            worker.terminate()
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(30)
        log.close()
        w.close(ok)


if __name__ == "__main__":
    if not farmtest.pg_url():
        print("# skipped: wake-ups across nodes need the PostgreSQL store (the .pg variant)",
              flush=True)
        sys.exit(77)
    farmtest.run([test_plain_stream_across_serves, test_session_log_across_serves,
                  test_lost_listen_connection, test_worker_events_reach_serve_readers])
