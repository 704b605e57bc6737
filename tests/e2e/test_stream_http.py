"""End-to-end: the Durable Streams protocol on the real farm binary over HTTP
(/v1/stream/...), the session logs, person messages, authorisation on every
route, and live delivery: 1,000 forced disconnects of a live SSE reader
while events are appended (0 lost, 0 duplicated, checked by seq), several
readers seeing identical sequences, and a stalled reader not delaying the
others."""
import http.client
import json
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import ADMIN_TOKEN, VIEWER_TOKEN, Farm  # noqa: E402
from sse import SSE  # noqa: E402

MEMBER_TOKEN = "member-token-for-tests-0123456789ab"
ADMIN = {"Authorization": "Bearer " + ADMIN_TOKEN}
MEMBER = {"Authorization": "Bearer " + MEMBER_TOKEN}
VIEWER = {"Authorization": "Bearer " + VIEWER_TOKEN}
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}


def new_farm(tmp=None):
    # --intake-only: no run appends to the session logs these tests read
    f = Farm(tmp=tmp, serve_args=["--intake-only"], extra={"tokens": [
        {"name": "viewer", "token": "env:FARM_TEST_VIEWER", "role": "viewer"},
        {"name": "mia", "token": "env:FARM_TEST_MEMBER", "role": "member"},
        {"name": "admin", "token": "env:FARM_TEST_ADMIN", "role": "admin"},
    ]})
    f.env["FARM_TEST_MEMBER"] = MEMBER_TOKEN
    return f


def h(*dicts):
    out = {}
    for d in dicts:
        out.update(d)
    return out


def new_session(farm, number=12):
    p = farmtest.github_fixture("issues.labeled")
    p["label"] = {"name": "agent"}
    p["issue"]["number"] = number
    status, body = farm.post_github("issues", p)
    assert status == 202, (status, body)
    return body["session"]


def test_protocol():
    with new_farm() as farm:
        rq = farm.request
        s, hd, _ = rq("PUT", "/v1/stream/chat/room-1", body=b'[{"n":0}]', headers=h(MEMBER, JSON))
        assert s == 201 and hd["location"] == "/v1/stream/chat/room-1", (s, hd)
        assert hd["stream-next-offset"] == "0000000000000001", hd
        assert hd["x-content-type-options"] == "nosniff"
        s, _, _ = rq("PUT", "/v1/stream/chat/room-1", headers=h(MEMBER, JSON))
        assert s == 200
        s, _, _ = rq("PUT", "/v1/stream/chat/room-1", headers=h(MEMBER, TEXT))
        assert s == 409
        s, _, _ = rq("PUT", "/v1/stream/x", headers=h(MEMBER, {"Stream-TTL": "60",
                                                                  "Stream-Expires-At": "2099-01-01T00:00:00Z"}))
        assert s == 400
        s, _, _ = rq("PUT", "/v1/stream/x", headers=h(MEMBER, {"Stream-TTL": "03600"}))
        assert s == 400

        s, hd, _ = rq("POST", "/v1/stream/chat/room-1", body=b'[{"n":1},{"n":2}]', headers=h(MEMBER, JSON))
        assert s == 204 and hd["stream-next-offset"] == "0000000000000003", (s, hd)
        assert rq("POST", "/v1/stream/chat/room-1", body=b"", headers=h(MEMBER, JSON))[0] == 400
        assert rq("POST", "/v1/stream/chat/room-1", body=b"[]", headers=h(MEMBER, JSON))[0] == 400
        assert rq("POST", "/v1/stream/chat/room-1", body=b"{oops", headers=h(MEMBER, JSON))[0] == 400
        assert rq("POST", "/v1/stream/chat/room-1", body=b"x", headers=h(MEMBER, TEXT))[0] == 409
        assert rq("POST", "/v1/stream/nope", body=b"1", headers=h(MEMBER, JSON))[0] == 404
        s, hd, _ = rq("POST", "/v1/stream/chat/room-1", body=b'{"n":3}',
                      headers=h(MEMBER, JSON, {"Stream-Seq": "b"}))
        assert s == 204
        s, hd, _ = rq("POST", "/v1/stream/chat/room-1", body=b'{"n":3}',
                      headers=h(MEMBER, JSON, {"Stream-Seq": "a"}))
        assert s == 409

        # catch-up, ETag, 304
        s, hd, body = rq("GET", "/v1/stream/chat/room-1?offset=-1", headers=VIEWER)
        assert s == 200 and json.loads(body) == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}], body
        assert hd["content-type"] == "application/json" and hd["stream-up-to-date"] == "true"
        etag = hd["etag"]
        s, hd2, body = rq("GET", "/v1/stream/chat/room-1?offset=-1", headers=h(VIEWER, {"If-None-Match": etag}))
        assert s == 304 and body == b"", s
        s, hd, body = rq("GET", "/v1/stream/chat/room-1?offset=now", headers=VIEWER)
        assert s == 200 and body == b"[]" and "etag" not in hd and hd["cache-control"] == "no-store"
        assert hd["stream-next-offset"] == "0000000000000004"
        assert rq("GET", "/v1/stream/chat/room-1?offset=bogus", headers=VIEWER)[0] == 400
        s, hd, _ = rq("HEAD", "/v1/stream/chat/room-1", headers=VIEWER)
        assert s == 200 and hd["stream-next-offset"] == "0000000000000004" and hd["cache-control"] == "no-store"

        # idempotent producers through headers
        def produce(epoch, seq, body=b'{"p":1}', close=False):
            hh = h(MEMBER, JSON, {"Producer-Id": "w1", "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)})
            if close:
                hh["Stream-Closed"] = "true"
            return rq("POST", "/v1/stream/prod", body=body, headers=hh)
        assert rq("PUT", "/v1/stream/prod", headers=h(MEMBER, JSON))[0] == 201
        s, hd, _ = produce(0, 0)
        assert s == 200 and hd["producer-epoch"] == "0" and hd["producer-seq"] == "0", (s, hd)
        assert produce(0, 0)[0] == 204
        s, hd, _ = produce(0, 5)
        assert s == 409 and hd["producer-expected-seq"] == "1" and hd["producer-received-seq"] == "5"
        assert produce(1, 0)[0] == 200
        s, hd, _ = produce(0, 1)
        assert s == 403 and hd["producer-epoch"] == "1"
        s, _, _ = rq("POST", "/v1/stream/prod", body=b"1", headers=h(MEMBER, JSON, {"Producer-Id": "w2"}))
        assert s == 400
        s, hd, _ = produce(1, 1, close=True)
        assert s == 200 and hd["stream-closed"] == "true"
        s, hd, _ = produce(1, 1, close=True)
        assert s == 204 and hd["stream-closed"] == "true"
        s, hd, _ = rq("POST", "/v1/stream/prod", body=b"1", headers=h(MEMBER, JSON))
        assert s == 409 and hd["stream-closed"] == "true" and "stream-next-offset" in hd

        # closed streams: catch-up EOF, long-poll returns at once, SSE ends
        tail = hd["stream-next-offset"]
        s, hd, body = rq("GET", "/v1/stream/prod?offset=" + tail, headers=VIEWER)
        assert s == 200 and body == b"[]" and hd["stream-closed"] == "true"
        t0 = time.monotonic()
        s, hd, _ = rq("GET", "/v1/stream/prod?offset=%s&live=long-poll" % tail, headers=VIEWER)
        assert s == 204 and hd["stream-closed"] == "true" and hd["stream-up-to-date"] == "true"
        assert time.monotonic() - t0 < 2
        r = SSE(farm.port, "/v1/stream/prod", "-1", headers=VIEWER)
        r.read_until(lambda x: x.closed or x.eof)
        assert r.controls[-1].get("streamClosed") is True and len(r.messages) == 3, r.controls
        r.close()

        # long-poll: 204 on timeout with a cursor; wakes on an append
        s, hd, _ = rq("GET", "/v1/stream/chat/room-1?offset=0000000000000004&live=long-poll&timeout=1",
                      headers=VIEWER)
        assert s == 204 and hd["stream-up-to-date"] == "true" and hd["stream-cursor"], hd
        assert hd["stream-next-offset"] == "0000000000000004"
        cur = hd["stream-cursor"]
        s, hd, _ = rq("GET", "/v1/stream/chat/room-1?offset=0000000000000004&live=long-poll&timeout=1&cursor="
                      + cur, headers=VIEWER)
        assert int(hd["stream-cursor"]) > int(cur), (cur, hd["stream-cursor"])

        def later():
            time.sleep(0.3)
            rq("POST", "/v1/stream/chat/room-1", body=b'{"n":4}', headers=h(MEMBER, JSON))
        t = threading.Thread(target=later)
        t.start()
        t0 = time.monotonic()
        s, hd, body = rq("GET", "/v1/stream/chat/room-1?offset=now&live=long-poll", headers=VIEWER)
        t.join()
        assert s == 200 and json.loads(body) == [{"n": 4}], (s, body)
        assert time.monotonic() - t0 < 5
        assert rq("GET", "/v1/stream/chat/room-1?live=long-poll", headers=VIEWER)[0] == 400

        # SSE on a byte stream is base64
        assert rq("PUT", "/v1/stream/bin", body=b"\x00\x01\x02", headers=h(MEMBER, {"Content-Type": "application/octet-stream"}))[0] == 201
        r = SSE(farm.port, "/v1/stream/bin", "-1", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        assert r.headers["stream-sse-data-encoding"] == "base64" and r.messages == ["AAEC"], (r.headers, r.messages)
        r.close()

        # forks
        s, hd, _ = rq("PUT", "/v1/stream/chat/fork", headers=h(MEMBER, {
            "Stream-Forked-From": "/v1/stream/chat/room-1", "Stream-Fork-Offset": "0000000000000002"}))
        assert s == 201 and hd["content-type"] == "application/json", (s, hd)
        s, _, body = rq("GET", "/v1/stream/chat/fork?offset=-1", headers=VIEWER)
        assert json.loads(body) == [{"n": 0}, {"n": 1}], body

        # delete
        assert rq("DELETE", "/v1/stream/bin", headers=MEMBER)[0] == 204
        assert rq("GET", "/v1/stream/bin", headers=VIEWER)[0] == 404
        assert rq("DELETE", "/v1/stream/bin", headers=MEMBER)[0] == 404
        assert rq("DELETE", "/v1/stream/chat/room-1", headers=MEMBER)[0] == 204  # soft: a fork reads it
        assert rq("GET", "/v1/stream/chat/room-1", headers=VIEWER)[0] == 410
        assert rq("GET", "/v1/stream/chat/fork", headers=VIEWER)[0] == 200

        # a clean exit with a live SSE reader and a long-poll still waiting
        r = SSE(farm.port, "/v1/stream/chat/fork", "now", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        t = threading.Thread(target=rq, args=("GET", "/v1/stream/chat/fork?offset=now&live=long-poll",),
                             kwargs={"headers": VIEWER})
        t.start()
        assert farm.stop() == 0
        t.join()
        r.close()


def test_authorization():
    with new_farm() as farm:
        rq = farm.request
        sid = new_session(farm)
        cases = [("GET", "/v1/stream/a"), ("HEAD", "/v1/stream/a"), ("PUT", "/v1/stream/a"),
                 ("POST", "/v1/stream/a"), ("DELETE", "/v1/stream/a"),
                 ("GET", "/v1/stream/sessions/%d" % sid),
                 ("POST", "/api/sessions/%d/messages" % sid)]
        for method, path in cases:
            s, hd, _ = rq(method, path, body=b'{"text":"x"}' if method == "POST" else None,
                          headers={"Content-Type": "application/json"})
            assert s == 401, (method, path, s)
            s, _, _ = rq(method, path, body=b'{"text":"x"}' if method == "POST" else None,
                         headers=h(JSON, {"Authorization": "Bearer not-a-token-at-all-0000"}))
            assert s == 401, (method, path, s)
        for method, path in [("PUT", "/v1/stream/a"), ("POST", "/v1/stream/a"), ("DELETE", "/v1/stream/a"),
                             ("POST", "/api/sessions/%d/messages" % sid)]:
            s, _, _ = rq(method, path, body=b'{"text":"x"}', headers=h(VIEWER, JSON))
            assert s == 403, (method, path, s)
        assert rq("PUT", "/v1/stream/a", headers=h(MEMBER, JSON))[0] == 201
        assert rq("GET", "/v1/stream/a", headers=VIEWER)[0] == 200
        assert rq("HEAD", "/v1/stream/a", headers=VIEWER)[0] == 200
        # the session log is the farm's to write, whoever asks
        for tok in (MEMBER, ADMIN):
            assert rq("POST", "/v1/stream/sessions/%d" % sid, body=b"{}", headers=h(tok, JSON))[0] == 403
            assert rq("DELETE", "/v1/stream/sessions/%d" % sid, headers=tok)[0] == 403
            assert rq("PUT", "/v1/stream/sessions/%d" % sid, headers=h(tok, JSON))[0] == 403
    # no tokens configured: loopback clients are served
    with Farm(tokens=False) as farm:
        assert farm.request("PUT", "/v1/stream/open", headers=JSON)[0] == 201
        assert farm.request("GET", "/v1/stream/open")[0] == 200


def test_session_log_and_messages():
    with new_farm() as farm:
        rq = farm.request
        sid = new_session(farm)
        path = "/v1/stream/sessions/%d" % sid
        s, hd, body = rq("GET", path + "?offset=-1", headers=VIEWER)
        assert s == 200 and hd["content-type"] == "application/json", (s, hd)
        before = json.loads(body)
        r = SSE(farm.port, path, "now", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        s, _, body = rq("POST", "/api/sessions/%d/messages" % sid, body=b'{"text":"please add tests"}',
                        headers=h(MEMBER, JSON))
        assert s == 201, (s, body)
        seq = json.loads(body)["seq"]
        assert seq == len(before) + 1
        r.read_until(lambda x: x.messages)
        m = r.messages[0]
        assert m["seq"] == seq and m["kind"] == "message" and m["actor"] == "mia", m
        assert m["body"]["text"] == "please add tests" and m["ts"].endswith("Z"), m
        r.close()
        assert rq("POST", "/api/sessions/%d/messages" % sid, body=b'{"text":""}', headers=h(MEMBER, JSON))[0] == 400
        assert rq("POST", "/api/sessions/%d/messages" % sid, body=b'nope', headers=h(MEMBER, JSON))[0] == 400
        assert rq("POST", "/api/sessions/99999/messages", body=b'{"text":"x"}', headers=h(MEMBER, JSON))[0] == 404
        # EventSource resumes with Last-Event-ID (over the offset in the URL)
        first = "%016x" % (seq - 1)
        r = SSE(farm.port, path, "-1", headers=h(VIEWER, {"Last-Event-ID": first}))
        r.read_until(lambda x: x.controls)
        assert [x["seq"] for x in r.messages] == [seq], r.messages
        r.close()


def test_forced_disconnects():
    """1,000 forced disconnects of a live SSE reader while events are appended."""
    with new_farm() as farm:
        sid = new_session(farm, 40)
        path = "/v1/stream/sessions/%d" % sid
        stop = threading.Event()
        sent = [0]

        refused = [0]

        def writer():
            while not stop.is_set():
                try:
                    s, _, _ = farm.request("POST", "/api/sessions/%d/messages" % sid,
                                           body=json.dumps({"text": "m%d" % sent[0]}).encode(),
                                           headers=h(MEMBER, JSON))
                except (ConnectionResetError, http.client.RemoteDisconnected):
                    # this address holds many aborted readers the server has not reaped
                    # yet: its per-address connection limit refuses the writer; a
                    # client tries again (the message was not taken, so none is lost)
                    refused[0] += 1
                    time.sleep(0.05)
                    continue
                assert s == 201
                sent[0] += 1
                time.sleep(0.001)

        w = threading.Thread(target=writer)
        w.start()
        rnd = random.Random(6)
        seen = []
        offset = "-1"
        try:
            for i in range(1000):
                r = SSE(farm.port, path, offset, headers=VIEWER)
                budget = rnd.randint(1, 1500)  # cut off anywhere, mid-event too
                got = 0
                while got < budget:
                    n = r.read_some(min(4096, budget - got))
                    if n <= 0:
                        break
                    got += n
                if rnd.random() < 0.5:  # an abortive close (RST) half of the time
                    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                r.close()
                seen.extend(m["seq"] for m in r.messages)
                offset = r.offset
        finally:
            stop.set()
            w.join()
        # catch up with everything (a response may be partial: follow until up to date)
        while True:
            s, hd, body = farm.request("GET", path + "?offset=" + offset, headers=VIEWER)
            assert s == 200, s
            seen.extend(m["seq"] for m in json.loads(body))
            offset = hd["stream-next-offset"]
            if hd.get("stream-up-to-date") == "true":
                break
        assert sent[0] > 50 and refused[0] < sent[0], (sent[0], refused[0])
        assert seen == list(range(1, len(seen) + 1)), "lost or duplicated: %r" % seen[:50]
        s, hd, _ = farm.request("HEAD", path, headers=VIEWER)
        assert len(seen) == int(hd["stream-next-offset"], 16), (len(seen), hd)


def test_readers_identical_and_stalled():
    with new_farm() as farm:
        rq = farm.request
        assert rq("PUT", "/v1/stream/fan", headers=h(MEMBER, JSON))[0] == 201
        stalled = SSE(farm.port, "/v1/stream/fan", "-1", headers=VIEWER, rcvbuf=4096)  # never read
        readers = [SSE(farm.port, "/v1/stream/fan", "-1", headers=VIEWER) for _ in range(5)]
        for r in readers:
            r.read_until(lambda x: x.controls)
        pad = "x" * 2000
        n = 400
        for i in range(n):
            s, _, _ = rq("POST", "/v1/stream/fan", body=json.dumps({"i": i, "pad": pad}).encode(),
                         headers=h(MEMBER, JSON))
            assert s == 204
        t_last = time.monotonic()
        # every live reader has everything soon after the last append, though
        # one reader has not read a byte of its ~800 KB
        for r in readers:
            r.read_until(lambda x: len(x.messages) >= n, timeout=10)
        lag = time.monotonic() - t_last
        seqs = [[m["i"] for m in r.messages] for r in readers]
        assert all(s == list(range(n)) for s in seqs), "readers differ"
        assert lag < 2.0, lag
        assert len(stalled.messages) < n
        # the stalled reader is dropped (30 s without taking anything): the
        # server closes its end (its FIN waits behind the data the reader
        # never took, so watch the server's socket leave ESTABLISHED)
        def server_side_state(client_port):
            for name in ("/proc/net/tcp", "/proc/net/tcp6"):
                with open(name) as fh:
                    for line in fh.readlines()[1:]:
                        f = line.split()
                        if (int(f[1].rsplit(":", 1)[1], 16) == farm.port
                                and int(f[2].rsplit(":", 1)[1], 16) == client_port):
                            return f[3]
            return "gone"
        port = stalled.sock.getsockname()[1]
        assert server_side_state(port) == "01"
        farmtest.wait_for(lambda: server_side_state(port) != "01", 90, "the stalled reader dropped")
        got = [m["i"] for m in stalled.messages]  # confirmed before it stalled
        assert got == list(range(len(got))), "gap in what the stalled reader got"
        again = SSE(farm.port, "/v1/stream/fan", stalled.offset, headers=VIEWER)
        again.read_until(lambda x: len(got) + len(x.messages) >= n, timeout=10)
        assert got + [m["i"] for m in again.messages] == list(range(n))
        again.close()
        stalled.close()
        for r in readers:
            r.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_cli_logs_follow_across_restart():
    """`farm say` sends, `farm logs` prints, `farm logs -f` follows and
    resumes across a farm restart without repeating or skipping a line."""
    import subprocess
    import shutil
    import tempfile
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="farm-e2e-logs-")
    f = new_farm(tmp)
    f.config["listen"] = "127.0.0.1:%d" % port
    with open(f.config_path, "w") as fh:
        json.dump(f.config, fh)
    server = "http://127.0.0.1:%d" % port
    env = dict(os.environ, FARM_TOKEN=MEMBER_TOKEN)
    with f:
        sid = new_session(f)
        out = subprocess.run([farmtest.FARM_BIN, "say", "--server", server, str(sid), "first words"],
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "sent to session" in out.stdout, out
        out = subprocess.run([farmtest.FARM_BIN, "say", "--server", server, str(sid), "x"],
                             env=dict(os.environ, FARM_TOKEN=VIEWER_TOKEN), capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 1 and "member" in out.stderr, out
        out = subprocess.run([farmtest.FARM_BIN, "logs", "--server", server, str(sid)],
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "mia: first words" in out.stdout, out
        follower = subprocess.Popen([farmtest.FARM_BIN, "logs", "-f", "--json", "--server", server, str(sid)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []

        def pump():
            for line in follower.stdout:
                lines.append(json.loads(line))
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        farmtest.wait_for(lambda: any(m["body"].get("text") == "first words" for m in lines), 10, "first line")
        f.stop()
    # the farm is down: the follower keeps trying; bring it back on the same port and data
    f2 = new_farm(tmp)
    f2.config = f.config
    with open(f2.config_path, "w") as fh:
        json.dump(f.config, fh)
    with f2:
        out = subprocess.run([farmtest.FARM_BIN, "say", "--server", server, str(sid), "after restart"],
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        farmtest.wait_for(lambda: any(m["body"].get("text") == "after restart" for m in lines), 20,
                          "the line after the restart")
        follower.terminate()
        follower.wait(10)
        seqs = [m["seq"] for m in lines]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    farmtest.run([test_protocol, test_authorization, test_session_log_and_messages,
                  test_forced_disconnects, test_readers_identical_and_stalled,
                  test_cli_logs_follow_across_restart])
