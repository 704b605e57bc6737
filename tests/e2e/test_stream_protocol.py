"""End-to-end: the MUSTs of the Durable Streams protocol (PROTOCOL.md, the
version with closure, forks, sub-offsets and the reserved __ds prefix) on the
real farm binary, one test per area, each checking the requirements of its
sections as a client sees them over HTTP. Beside them, what the farm adds of
its own: stream paths validated (414, 400, never cut short), content a browser
could run served inert, JSON appends bounded in messages and in the farm's
memory, and messages sent without a token signed as a person would read it.

docs/streams.md lists each MUST with the test here that checks it."""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import VIEWER_TOKEN, Farm  # noqa: E402
from sse import SSE  # noqa: E402

MEMBER_TOKEN = "member-token-for-tests-0123456789ab"
MEMBER = {"Authorization": "Bearer " + MEMBER_TOKEN}
VIEWER = {"Authorization": "Bearer " + VIEWER_TOKEN}
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
OCTETS = {"Content-Type": "application/octet-stream"}
S = "/v1/stream/"


def new_farm(tmp=None):
    f = Farm(tmp=tmp, serve_args=["--intake-only"], extra={"tokens": [
        {"name": "viewer", "token": "env:FARM_TEST_VIEWER", "role": "viewer"},
        {"name": "mia", "token": "env:FARM_TEST_MEMBER", "role": "member"},
    ]})
    f.env["FARM_TEST_MEMBER"] = MEMBER_TOKEN
    return f


def h(*dicts):
    out = {}
    for d in dicts:
        out.update(d)
    return out


def raw(port, request, timeout=5.0):
    """Send bytes as they are (no client-side normalisation); the whole answer."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    s.sendall(request if isinstance(request, bytes) else request.encode("latin-1"))
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    s.close()
    return out


def status_of(answer):
    return int(answer.split(b"\r\n", 1)[0].split()[1])


def head_of(answer):
    lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}


def produce(rq, path, epoch, seq, body=b'{"p":1}', close=False, ct=JSON):
    hh = h(MEMBER, {"Producer-Id": "w1", "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)})
    if body:
        hh.update(ct)
    if close:
        hh["Stream-Closed"] = "true"
    return rq("POST", S + path, body=body or None, headers=hh)


def sse_raw(port, path, offset, headers=None, extra="", timeout=1.5):
    hh = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    return raw(port, "GET %s%s?offset=%s&live=sse%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
               % (S, path, offset, extra, hh), timeout)


def test_create():
    """5.1 and 4.1: create, idempotent re-create, closure status, TTL syntax, Stream-Closed values."""
    with new_farm() as farm:
        rq = farm.request
        s, hd, _ = rq("PUT", S + "c/one", body=b"abc", headers=h(MEMBER, TEXT))
        assert s == 201 and hd["location"] == S + "c/one", (s, hd)
        assert hd["content-type"] == "text/plain" and hd["stream-next-offset"] == "0000000000000003", hd
        assert rq("PUT", S + "c/one", headers=h(MEMBER, TEXT))[0] == 200
        assert rq("PUT", S + "c/one", headers=h(MEMBER, JSON))[0] == 409
        assert rq("PUT", S + "c/one", headers=h(MEMBER, TEXT, {"Stream-TTL": "60"}))[0] == 409
        # closure status is part of the configuration
        assert rq("PUT", S + "c/one", headers=h(MEMBER, TEXT, {"Stream-Closed": "true"}))[0] == 409
        s, hd, _ = rq("PUT", S + "c/shut", headers=h(MEMBER, TEXT, {"Stream-Closed": "TRUE"}))
        assert s == 201 and hd["stream-closed"] == "true", hd
        assert rq("PUT", S + "c/shut", headers=h(MEMBER, TEXT))[0] == 409
        assert rq("PUT", S + "c/shut", headers=h(MEMBER, TEXT, {"Stream-Closed": "true"}))[0] == 200
        # a Stream-Closed that is not "true" is absent, not an error
        s, hd, _ = rq("PUT", S + "c/open", headers=h(MEMBER, TEXT, {"Stream-Closed": "yes"}))
        assert s == 201 and "stream-closed" not in hd, hd
        for ttl in ("+3600", "03600", "3600.0", "3.6e3", "-1"):
            assert rq("PUT", S + "c/ttl", headers=h(MEMBER, {"Stream-TTL": ttl}))[0] == 400, ttl
        assert rq("PUT", S + "c/ttl", headers=h(MEMBER, {"Stream-TTL": "60",
                                                         "Stream-Expires-At": "2099-01-01T00:00:00Z"}))[0] == 400
        s, hd, _ = rq("PUT", S + "c/ttl", headers=h(MEMBER, {"Stream-TTL": "3600"}))
        assert s == 201 and hd["content-type"] == "application/octet-stream" and hd["stream-ttl"] == "3600"


def test_append():
    """5.2 and 5.3: content type, empty bodies, close-only, Stream-Seq byte order, appends to a closed stream."""
    with new_farm() as farm:
        rq = farm.request
        assert rq("PUT", S + "a", headers=h(MEMBER, TEXT))[0] == 201
        assert rq("POST", S + "a", body=b"x", headers=h(MEMBER, JSON))[0] == 409
        assert rq("POST", S + "a", body=b"", headers=h(MEMBER, TEXT))[0] == 400
        assert rq("POST", S + "a", body=b"x", headers=MEMBER)[0] == 400  # no Content-Type
        assert rq("POST", S + "nope", body=b"x", headers=h(MEMBER, TEXT))[0] == 404
        # Stream-Seq compares byte-wise: "10" sorts before "9"
        assert rq("POST", S + "a", body=b"1", headers=h(MEMBER, TEXT, {"Stream-Seq": "9"}))[0] == 204
        assert rq("POST", S + "a", body=b"2", headers=h(MEMBER, TEXT, {"Stream-Seq": "10"}))[0] == 409
        assert rq("POST", S + "a", body=b"2", headers=h(MEMBER, TEXT, {"Stream-Seq": "9"}))[0] == 409
        assert rq("POST", S + "a", body=b"2", headers=h(MEMBER, TEXT, {"Stream-Seq": "9a"}))[0] == 204
        # "Stream-Closed: yes" is absent: the append does not close
        s, hd, _ = rq("POST", S + "a", body=b"3", headers=h(MEMBER, TEXT, {"Stream-Closed": "yes"}))
        assert s == 204 and "stream-closed" not in hd, hd
        # close-only: a Content-Type, even a wrong one, is no reason to refuse
        s, hd, _ = rq("POST", S + "a", headers=h(MEMBER, {"Content-Type": "image/png"}, {"Stream-Closed": "true"}))
        assert s == 204 and hd["stream-closed"] == "true" and hd["stream-next-offset"] == "0000000000000003", hd
        s, hd, _ = rq("POST", S + "a", headers=h(MEMBER, {"Stream-Closed": "true"}))
        assert s == 204 and hd["stream-closed"] == "true", (s, hd)  # again: idempotent
        for extra in ({}, {"Stream-Closed": "true"}):  # a body, with or without closing again
            s, hd, _ = rq("POST", S + "a", body=b"late", headers=h(MEMBER, TEXT, extra))
            assert s == 409 and hd["stream-closed"] == "true", (s, hd)
            assert hd["stream-next-offset"] == "0000000000000003", hd
        # closed is checked before the content type
        s, hd, _ = rq("POST", S + "a", body=b"1", headers=h(MEMBER, JSON))
        assert s == 409 and hd["stream-closed"] == "true"
        # an append and its close in one request
        assert rq("PUT", S + "b", headers=h(MEMBER, TEXT))[0] == 201
        s, hd, _ = rq("POST", S + "b", body=b"last", headers=h(MEMBER, TEXT, {"Stream-Closed": "true"}))
        assert s == 204 and hd["stream-closed"] == "true" and hd["stream-next-offset"] == "0000000000000004"


def test_producers():
    """5.2.1: producer headers, fencing, and closing with a producer (state, duplicates, the sliding TTL)."""
    with new_farm() as farm:
        rq = farm.request
        assert rq("PUT", S + "p", headers=h(MEMBER, JSON))[0] == 201
        for bad in ({"Producer-Id": "w"}, {"Producer-Id": "w", "Producer-Epoch": "0"},
                    {"Producer-Id": "", "Producer-Epoch": "0", "Producer-Seq": "0"},
                    {"Producer-Id": "w", "Producer-Epoch": "9007199254740992", "Producer-Seq": "0"},
                    {"Producer-Id": "w", "Producer-Epoch": "0", "Producer-Seq": "1.0"},
                    {"Producer-Id": "w", "Producer-Epoch": "-1", "Producer-Seq": "0"}):
            assert rq("POST", S + "p", body=b"1", headers=h(MEMBER, JSON, bad))[0] == 400, bad
        s, hd, _ = produce(rq, "p", 0, 0)
        assert s == 200 and hd["producer-epoch"] == "0" and hd["producer-seq"] == "0", (s, hd)
        s, hd, _ = produce(rq, "p", 0, 0)
        assert s == 204 and hd["producer-seq"] == "0"
        s, hd, _ = produce(rq, "p", 0, 3)
        assert s == 409 and hd["producer-expected-seq"] == "1" and hd["producer-received-seq"] == "3"
        assert produce(rq, "p", 1, 1)[0] == 400  # a new epoch starts at 0
        assert produce(rq, "p", 1, 0)[0] == 200
        s, hd, _ = produce(rq, "p", 0, 1)
        assert s == 403 and hd["producer-epoch"] == "1"
        # close-only with producer headers: 204, the producer's state moves on
        s, hd, _ = produce(rq, "p", 1, 1, body=None, close=True)
        assert s == 204 and hd["stream-closed"] == "true" and hd["producer-seq"] == "1", (s, hd)
        s, hd, _ = produce(rq, "p", 1, 1, body=None, close=True)  # its retry
        assert s == 204 and hd["stream-closed"] == "true" and hd["producer-seq"] == "1", (s, hd)
        s, hd, _ = produce(rq, "p", 1, 2)  # the producer's next request: the stream is closed
        assert s == 409 and hd["stream-closed"] == "true"
        s, hd, _ = produce(rq, "p", 1, 0, body=None, close=True)  # not the request that closed it
        assert s == 409 and hd["stream-closed"] == "true"
        s, _, body = rq("GET", S + "p", headers=VIEWER)
        assert json.loads(body) == [{"p": 1}, {"p": 1}], body
        # a producer's close-only request is a write: it slides the TTL
        assert rq("PUT", S + "t", headers=h(MEMBER, JSON, {"Stream-TTL": "4"}))[0] == 201
        assert produce(rq, "t", 0, 0)[0] == 200
        time.sleep(2.5)
        assert produce(rq, "t", 0, 1, body=None, close=True)[0] == 204
        time.sleep(2.5)  # 5 s after the append, 2.5 s after the close
        s, hd, _ = rq("HEAD", S + "t", headers=VIEWER)
        assert s == 200 and hd["stream-closed"] == "true", s
        farmtest.wait_for(lambda: rq("HEAD", S + "t", headers=VIEWER)[0] == 404, 10, "the stream to expire")


def test_closed_reads():
    """5.6, 5.7, 5.8 and 8: EOF in every read mode, offset=now on a closed stream, ETags that see the close."""
    with new_farm() as farm:
        rq = farm.request
        assert rq("PUT", S + "e", body=b'[{"a":1}]', headers=h(MEMBER, JSON))[0] == 201
        s, hd, body = rq("GET", S + "e?offset=-1", headers=VIEWER)
        etag = hd["etag"]
        assert s == 200 and "stream-closed" not in hd and hd["stream-up-to-date"] == "true"
        assert rq("POST", S + "e", headers=h(MEMBER, {"Stream-Closed": "true"}))[0] == 204
        # the ETag changes with the closure: no 304 hides it
        s, hd, body = rq("GET", S + "e?offset=-1", headers=h(VIEWER, {"If-None-Match": etag}))
        assert s == 200 and hd["etag"] != etag and hd["stream-closed"] == "true", (s, hd)
        tail = hd["stream-next-offset"]
        s, hd, body = rq("GET", S + "e?offset=" + tail, headers=VIEWER)
        assert s == 200 and body == b"[]" and hd["stream-closed"] == "true" and hd["stream-up-to-date"] == "true"
        for offset in (tail, "now"):
            t0 = time.monotonic()
            s, hd, _ = rq("GET", S + "e?offset=%s&live=long-poll" % offset, headers=VIEWER)
            assert s == 204 and hd["stream-closed"] == "true" and hd["stream-up-to-date"] == "true", (s, hd)
            assert hd["stream-next-offset"] == tail and time.monotonic() - t0 < 2
            r = SSE(farm.port, S + "e", offset, headers=VIEWER)
            r.read_until(lambda x: x.closed or x.eof, timeout=5)
            assert r.closed and r.controls == [{"streamNextOffset": tail, "upToDate": True, "streamClosed": True}], \
                r.controls
            r.close()
        s, hd, body = rq("GET", S + "e?offset=now", headers=VIEWER)
        assert s == 200 and body == b"[]" and hd["stream-closed"] == "true" and hd["stream-up-to-date"] == "true"
        assert hd["stream-next-offset"] == tail and "etag" not in hd
        # a read from the start of a closed stream ends with the close
        r = SSE(farm.port, S + "e", "-1", headers=VIEWER)
        r.read_until(lambda x: x.closed or x.eof, timeout=5)
        assert r.messages == [{"a": 1}] and r.controls[-1].get("streamClosed") is True
        assert "streamCursor" not in r.controls[-1]
        r.close()


def test_live_reads():
    """5.7, 5.8, 8 and 10.1: long-poll and SSE headers, cursors that never go back, offset=now waiting."""
    with new_farm() as farm:
        rq = farm.request
        assert rq("PUT", S + "l", headers=h(MEMBER, JSON))[0] == 201
        assert rq("PUT", S + "lt", headers=h(MEMBER, TEXT))[0] == 201

        # offset=now on an empty stream, JSON and text: the long-poll waits for the append
        for path, body, want in (("l", b'{"n":1}', [{"n": 1}]), ("lt", b"hi", b"hi")):
            def later(path=path, body=body):
                time.sleep(0.4)
                rq("POST", S + path, body=body, headers=h(MEMBER, JSON if path == "l" else TEXT))
            t = threading.Thread(target=later)
            t.start()
            t0 = time.monotonic()
            s, hd, got = rq("GET", S + path + "?offset=now&live=long-poll&timeout=10", headers=VIEWER)
            t.join()
            assert s == 200 and time.monotonic() - t0 >= 0.3, (s, got)
            assert (json.loads(got) if path == "l" else got) == want, got
            assert hd["stream-cursor"] and hd["etag"] and hd["stream-up-to-date"] == "true", hd

        tail = rq("HEAD", S + "l", headers=VIEWER)[1]["stream-next-offset"]
        s, hd, _ = rq("GET", S + "l?offset=now&live=long-poll&timeout=1", headers=VIEWER)
        assert s == 204 and hd["stream-next-offset"] == tail and hd["stream-up-to-date"] == "true"
        assert int(hd["stream-cursor"]) > 0 and hd["cache-control"] == "no-store", hd
        # a cursor at or past the current interval comes back strictly greater
        for client in (hd["stream-cursor"], "99999999"):
            s, hd2, _ = rq("GET", S + "l?offset=%s&live=long-poll&timeout=1&cursor=%s" % (tail, client),
                           headers=VIEWER)
            assert s == 204 and int(hd2["stream-cursor"]) > int(client), (client, hd2)
            assert int(hd2["stream-cursor"]) <= int(client) + 180  # 1..3600 s of 20 s intervals
            a = sse_raw(farm.port, "l", tail, VIEWER, "&cursor=" + client)
            ctl = json.loads(a.split(b"data: ", 1)[1].split(b"\n", 1)[0])
            assert int(ctl["streamCursor"]) > int(client), ctl

        # SSE: an event stream, chunked (no Content-Length), not cached
        a = sse_raw(farm.port, "l", "-1", VIEWER)
        hd = head_of(a)
        assert status_of(a) == 200 and hd["content-type"] == "text/event-stream", hd
        assert "content-length" not in hd and hd["transfer-encoding"] == "chunked", hd
        assert hd["cache-control"] == "no-store", hd
        r = SSE(farm.port, S + "l", "-1", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        c = r.controls[-1]
        assert c["streamNextOffset"] == tail and c["streamCursor"] and c["upToDate"] is True, c
        r.close()
        # offset=now: the first control event carries the tail and upToDate, no history
        r = SSE(farm.port, S + "l", "now", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        assert r.messages == [] and r.controls[0]["streamNextOffset"] == tail and r.controls[0]["upToDate"] is True
        rq("POST", S + "l", body=b'{"n":2}', headers=h(MEMBER, JSON))
        r.read_until(lambda x: x.messages)
        assert r.messages == [{"n": 2}], r.messages
        r.close()

        # text: one data: line per line of the payload, whatever ends it
        assert rq("PUT", S + "lines", body=b"one\ntwo\r\nthree\rfour", headers=h(MEMBER, TEXT))[0] == 201
        a = sse_raw(farm.port, "lines", "-1", VIEWER)
        assert b"event: data\ndata: one\ndata: two\ndata: three\ndata: four\n\n" in a, a
        r = SSE(farm.port, S + "lines", "-1", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        assert r.messages == ["one\ntwo\nthree\nfour"], r.messages
        r.close()
        # other types: base64, and the header that says so
        assert rq("PUT", S + "bin", body=b"\x00\xff\n", headers=h(MEMBER, OCTETS))[0] == 201
        r = SSE(farm.port, S + "bin", "-1", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        assert r.headers["stream-sse-data-encoding"] == "base64" and r.messages == ["AP8K"], r.messages
        r.close()


def test_forks():
    """4.2, 5.7 and 8: forks at offsets and sub-offsets (bytes and JSON), their idempotence and conflicts,
    chains, closed sources, what they do not inherit, and live reads that see only the fork."""
    with new_farm() as farm:
        rq = farm.request

        def fork(path, src, offset=None, sub=None, extra=None):
            hh = h(MEMBER, {"Stream-Forked-From": S + src}, extra or {})
            if offset is not None:
                hh["Stream-Fork-Offset"] = offset
            if sub is not None:
                hh["Stream-Fork-Sub-Offset"] = str(sub)
            return rq("PUT", S + path, headers=hh)

        def read(path):
            return rq("GET", S + path + "?offset=-1", headers=VIEWER)[2]

        # bytes: two appends, "hello" then "world"
        assert rq("PUT", S + "b", body=b"hello", headers=h(MEMBER, TEXT))[0] == 201
        s, hd, _ = rq("POST", S + "b", body=b"world", headers=h(MEMBER, TEXT, {"Stream-Seq": "5"}))
        mid = "0000000000000005"
        s, hd, _ = fork("b1", "b", mid, 2)
        assert s == 201 and hd["stream-next-offset"] == "0000000000000007" and hd["content-type"] == "text/plain"
        assert read("b1") == b"hellowo"
        assert fork("b1", "b", mid, 2)[0] == 200  # the same fork again
        assert fork("b1", "b", mid, 3)[0] == 409  # another sub-offset
        assert fork("b1", "b", mid)[0] == 409
        assert fork("b1", "b")[0] == 409  # the source's tail
        assert fork("bx", "b", mid, 6)[0] == 400  # past the append at the offset
        assert fork("bx", "b", "0000000000000000", 6)[0] == 400
        assert fork("bx", "b", mid, 5)[0] == 201 and read("bx") == b"helloworld"
        assert fork("by", "b", mid, "x")[0] == 400
        assert fork("by", "b", "00000000000000ff")[0] == 400
        assert fork("by", "b", "bogus")[0] == 400
        assert fork("by", "nope")[0] == 404
        assert fork("by", "b", extra=JSON)[0] == 409
        # the fork is a stream of its own: appends, no Stream-Seq from the source
        assert rq("POST", S + "b1", body=b"XY", headers=h(MEMBER, TEXT, {"Stream-Seq": "1"}))[0] == 204
        assert read("b1") == b"hellowoXY" and read("b") == b"helloworld"
        assert rq("GET", S + "b1?offset=0000000000000006", headers=VIEWER)[2] == b"oXY"
        # chains: a fork of the fork, at a sub-offset inside its own append
        s, hd, _ = fork("b2", "b1", "0000000000000007", 1)
        assert s == 201 and read("b2") == b"hellowoX", read("b2")
        s, hd, _ = fork("b3", "b1", mid, 1)  # inside the range b1 inherits from b
        assert s == 201 and read("b3") == b"hellow"
        assert fork("b4", "b1", mid, 3)[0] == 400  # b1 inherits only up to 7
        # JSON: sub-offsets count messages
        assert rq("PUT", S + "j", body=b"[1,2,3]", headers=h(MEMBER, JSON))[0] == 201
        assert rq("POST", S + "j", body=b"[4,5,6]", headers=h(MEMBER, JSON))[0] == 204
        s, hd, _ = fork("j1", "j", "0000000000000003", 2)
        assert s == 201 and hd["content-type"] == "application/json" and json.loads(read("j1")) == [1, 2, 3, 4, 5]
        assert fork("j1", "j", "0000000000000003", 2)[0] == 200
        assert fork("j1", "j", "0000000000000003", 1)[0] == 409
        assert fork("jx", "j", "0000000000000003", 4)[0] == 400
        assert rq("POST", S + "j1", body=b"[7]", headers=h(MEMBER, JSON))[0] == 204
        assert json.loads(read("j1")) == [1, 2, 3, 4, 5, 7]
        s, _, body = rq("GET", S + "j1?offset=0000000000000004", headers=VIEWER)
        assert json.loads(body) == [5, 7], body
        s, _, _ = fork("j2", "j1", "0000000000000000", 1)
        assert s == 201 and json.loads(read("j2")) == [1]
        # producers start over on a fork
        assert rq("PUT", S + "pp", headers=h(MEMBER, JSON))[0] == 201
        assert produce(rq, "pp", 3, 0)[0] == 200
        assert fork("pf", "pp")[0] == 201
        assert produce(rq, "pf", 0, 0)[0] == 200  # epoch 0 would be stale on the source
        # a closed source forks into an open stream
        assert rq("POST", S + "b", headers=h(MEMBER, {"Stream-Closed": "true"}))[0] == 204
        s, hd, _ = fork("bc", "b", mid, 2)
        assert s == 201 and "stream-closed" not in hd and read("bc") == b"hellowo"
        assert rq("POST", S + "bc", body=b"!", headers=h(MEMBER, TEXT))[0] == 204
        # live reads of a fork: the inherited range at once; at its tail only its own appends wake it
        s, hd, body = rq("GET", S + "b1?offset=0000000000000000&live=long-poll", headers=VIEWER)
        assert s == 200 and body == b"hellowoXY"
        assert rq("PUT", S + "src", body=b"abc", headers=h(MEMBER, TEXT))[0] == 201
        assert fork("f", "src")[0] == 201

        def source_append():
            time.sleep(0.3)
            rq("POST", S + "src", body=b"not for the fork", headers=h(MEMBER, TEXT))
        t = threading.Thread(target=source_append)
        t.start()
        s, hd, _ = rq("GET", S + "f?offset=0000000000000003&live=long-poll&timeout=2", headers=VIEWER)
        t.join()
        assert s == 204, s
        r = SSE(farm.port, S + "f", "-1", headers=VIEWER)
        r.read_until(lambda x: x.controls)
        rq("POST", S + "src", body=b"nor this", headers=h(MEMBER, TEXT))
        rq("POST", S + "f", body=b"def", headers=h(MEMBER, TEXT))
        r.read_until(lambda x: "".join(x.messages).endswith("def"))
        assert "".join(r.messages) == "abcdef", r.messages
        r.close()
        # a fork whose source is deleted still reads; the deleted source is 410 everywhere, 409 to PUT
        assert rq("DELETE", S + "src", headers=MEMBER)[0] == 204
        for method in ("GET", "HEAD", "DELETE"):
            assert rq(method, S + "src", headers=MEMBER)[0] == 410, method
        assert rq("POST", S + "src", body=b"x", headers=h(MEMBER, TEXT))[0] == 410
        assert rq("PUT", S + "src", headers=h(MEMBER, TEXT))[0] == 409
        assert fork("g", "src")[0] == 409
        assert read("f") == b"abcdef"
        assert rq("DELETE", S + "f", headers=MEMBER)[0] == 204
        farmtest.wait_for(lambda: rq("HEAD", S + "src", headers=VIEWER)[0] == 404, 10, "the source's removal")


def test_json_mode():
    """9.1: message boundaries, one level flattened, empty arrays, validation, empty reads."""
    with new_farm() as farm:
        rq = farm.request
        s, hd, _ = rq("PUT", S + "j", body=b"[]", headers=h(MEMBER, JSON))
        assert s == 201 and hd["stream-next-offset"] == "0000000000000000"
        s, hd, body = rq("GET", S + "j", headers=VIEWER)
        assert body == b"[]" and hd["content-type"] == "application/json"
        assert rq("POST", S + "j", body=b"[]", headers=h(MEMBER, JSON))[0] == 400
        assert rq("POST", S + "j", body=b' [ ] ', headers=h(MEMBER, JSON))[0] == 400
        s, _, body = rq("POST", S + "j", body=b'{"a":', headers=h(MEMBER, JSON))
        assert s == 400 and b"invalid JSON" in body, body
        for b in (b'{"event": "created"}', b'[{"event": "a"}, {"event": "b"}]', b"[[1,2], [3,4]]",
                  b"[[[1,2,3]]]", b'"\\u00e9"', b"[1.5e3]"):
            assert rq("POST", S + "j", body=b, headers=h(MEMBER, JSON))[0] == 204, b
        s, _, body = rq("GET", S + "j", headers=VIEWER)
        assert json.loads(body) == [{"event": "created"}, {"event": "a"}, {"event": "b"}, [1, 2], [3, 4],
                                    [[1, 2, 3]], "\u00e9", 1500.0], body


def test_offsets():
    """8: -1 and omitted are the start, offsets grow and are single URL-safe tokens, never a sentinel."""
    with new_farm() as farm:
        rq = farm.request
        assert rq("PUT", S + "o", body=b"a", headers=h(MEMBER, TEXT))[0] == 201
        seen = []
        for i in range(5):
            seen.append(rq("POST", S + "o", body=b"b" * (i + 1), headers=h(MEMBER, TEXT))[1]["stream-next-offset"])
        assert seen == sorted(seen) and len(set(seen)) == 5, seen
        for o in seen:
            assert o not in ("-1", "now") and not any(c in o for c in ",&=?/"), o
        assert rq("GET", S + "o?offset=-1", headers=VIEWER)[2] == rq("GET", S + "o", headers=VIEWER)[2]
        s, hd, body = rq("GET", S + "o?offset=" + seen[0], headers=VIEWER)
        assert body == b"bbbbbbbbbbbbbb" and hd["stream-next-offset"] == seen[-1]
        s, hd, body = rq("GET", S + "o?offset=" + seen[-1], headers=VIEWER)
        assert s == 200 and body == b"" and hd["stream-next-offset"] == seen[-1] and hd["stream-up-to-date"] == "true"


def test_reserved_control_prefix():
    """6: __ds/ is routed before the streams: the farm offers no subscriptions and no stream lives there."""
    with new_farm() as farm:
        rq = farm.request
        for method, path in (("PUT", "__ds/subscriptions/s1"), ("GET", "__ds/subscriptions/s1"),
                             ("DELETE", "__ds/subscriptions/s1"), ("GET", "__ds/jwks.json"),
                             ("POST", "__ds/subscriptions/s1/claim"), ("PUT", "__ds")):
            s, _, body = rq(method, S + path, body=b"{}" if method in ("PUT", "POST") else None,
                            headers=h(MEMBER, JSON))
            assert s == 501 and b"__ds" in body, (method, path, s, body)
        assert rq("PUT", S + "__dsx", headers=h(MEMBER, JSON))[0] == 201  # only the segment is reserved


def test_paths_validated():
    """12.2: a stream path is refused, never cut short or re-read: too long 414, a NUL, a bad escape
    or a dot segment 400."""
    with new_farm() as farm:
        rq = farm.request
        long = "x" * 600
        s, hd, _ = rq("PUT", S + long, headers=h(MEMBER, TEXT))
        assert s == 414 and "location" not in hd, (s, hd)
        assert rq("HEAD", S + long[:512], headers=VIEWER)[0] == 404  # nothing under the first 512
        assert rq("GET", S + long, headers=VIEWER)[0] == 414
        assert rq("PUT", S + "y" * 512, headers=h(MEMBER, TEXT))[0] == 201  # the limit itself is fine
        auth = "Authorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n" % MEMBER_TOKEN
        for path in ("x%00/../../y", "x%00", "a%zzb", "a%2", "a/../b", "a/./b", "../b", "a//b", "a%2F..%2Fb"):
            a = raw(farm.port, "PUT %s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (S, path, auth))
            assert status_of(a) == 400, (path, a[:200])
        for name in ("x", "y", "b", "a"):
            assert rq("HEAD", S + name, headers=VIEWER)[0] == 404, name
        assert rq("PUT", S + "a%2Fb", headers=h(MEMBER, TEXT))[0] == 201  # an escaped slash is a slash
        assert rq("HEAD", S + "a/b", headers=VIEWER)[0] == 200


def test_browser_safety():
    """12.7: what a browser could run is served inert; CORS for token holders, If-None-Match in a preflight."""
    with new_farm() as farm:
        rq = farm.request
        page = b"<script>alert(document.domain)</script>"
        for ct in ("text/html", "image/svg+xml", "application/xhtml+xml; charset=utf-8", "text/javascript"):
            assert rq("PUT", S + "h", body=page, headers=h(MEMBER, {"Content-Type": ct}))[0] == 201, ct
            for method in ("GET", "HEAD"):
                s, hd, _ = rq(method, S + "h", headers=VIEWER)
                assert s == 200 and hd["content-disposition"] == "attachment", (ct, hd)
                csp = [d.strip() for d in hd["content-security-policy"].split(";")]
                assert "sandbox" in csp and "frame-ancestors 'none'" in csp, hd
                assert hd["x-content-type-options"] == "nosniff" and hd["x-frame-options"] == "DENY", hd
            s, hd, _ = rq("GET", S + "h?offset=-1&live=long-poll", headers=VIEWER)
            assert s == 200 and hd["content-disposition"] == "attachment", hd
            assert rq("DELETE", S + "h", headers=MEMBER)[0] == 204
        for ct, body in (("application/json", b"[1]"), ("text/plain", b"a"), ("application/octet-stream", b"a")):
            assert rq("PUT", S + "ok", body=body, headers=h(MEMBER, {"Content-Type": ct}))[0] == 201
            s, hd, _ = rq("GET", S + "ok", headers=VIEWER)
            assert "content-disposition" not in hd, (ct, hd)
            assert "sandbox" in [d.strip() for d in hd["content-security-policy"].split(";")], (ct, hd)
            assert rq("DELETE", S + "ok", headers=MEMBER)[0] == 204
        # CORS: a preflight needs no token and allows what the protocol's requests send
        origin = {"Origin": "https://app.example"}
        s, hd, _ = rq("OPTIONS", S + "any/stream", headers=h(origin, {
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, if-none-match, producer-id"}))
        assert s == 204 and hd["access-control-allow-origin"] == "*", (s, hd)
        allowed = [x.strip().lower() for x in hd["access-control-allow-headers"].split(",")]
        for need in ("if-none-match", "authorization", "content-type", "producer-id", "stream-closed",
                     "stream-fork-sub-offset", "last-event-id"):
            assert need in allowed, need
        assert "PUT" in hd["access-control-allow-methods"]
        s, hd, _ = rq("PUT", S + "cors", headers=h(MEMBER, TEXT, origin))
        assert s == 201 and hd["access-control-allow-origin"] == "*"
        exposed = hd["access-control-expose-headers"].lower()
        for need in ("stream-next-offset", "stream-cursor", "stream-up-to-date", "stream-closed", "etag"):
            assert need in exposed, need
    # with no tokens, loopback clients are served without one: no other origin may use that
    with Farm(tokens=False) as farm:
        s, hd, _ = farm.request("OPTIONS", S + "x", headers={"Origin": "https://evil.example",
                                                             "Access-Control-Request-Method": "PUT"})
        assert "access-control-allow-origin" not in hd, hd
        s, hd, _ = farm.request("PUT", S + "x", headers=h(TEXT, {"Origin": "https://evil.example"}))
        assert "access-control-allow-origin" not in hd, hd


def rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def test_json_append_bounded():
    """An 8 MiB append of 2.8 million tiny messages is refused (413) and the farm's memory grows by far less
    than 200 MiB; appends up to the limit of messages go in, with memory that follows the body."""
    with new_farm() as farm:
        rq = farm.request
        pid = farm.proc.pid
        assert rq("PUT", S + "big", headers=h(MEMBER, JSON))[0] == 201
        before = rss_kib(pid)
        body = b"[" + b",".join([b"{}"] * (((8 << 20) - 2) // 3)) + b"]"
        assert len(body) <= 8 << 20
        s, _, answer = rq("POST", S + "big", body=body, headers=h(MEMBER, JSON), timeout=120)
        assert s == 413 and b"65536" in answer, (s, answer)
        after = rss_kib(pid)
        grown = (after["VmHWM"] - before["VmRSS"]) // 1024
        print("  8 MiB of {} (%d messages): 413; RSS %d -> %d MiB, peak %d MiB (+%d MiB)"
              % (body.count(b"{}"), before["VmRSS"] // 1024, after["VmRSS"] // 1024, after["VmHWM"] // 1024, grown))
        assert grown < 200, grown
        # the same as the initial body of a new stream
        s, _, answer = rq("PUT", S + "big2", body=body, headers=h(MEMBER, JSON), timeout=120)
        assert s == 413 and rq("HEAD", S + "big2", headers=VIEWER)[0] == 404
        # at the limit: accepted, in one piece
        ok = b"[" + b",".join([b'{"i":1}'] * 65536) + b"]"
        s, hd, _ = rq("POST", S + "big", body=ok, headers=h(MEMBER, JSON), timeout=120)
        assert s == 204 and hd["stream-next-offset"] == "%016x" % 65536, (s, hd)
        over = b"[" + b",".join([b"1"] * 65537) + b"]"
        assert rq("POST", S + "big", body=over, headers=h(MEMBER, JSON), timeout=120)[0] == 413
        # 8 MiB in messages jansson has to judge (escapes): accepted, memory near the body's size
        msg = b'{"t":"\\u00e9' + b"x" * 100 + b'"}'
        many = b"[" + b",".join([msg] * 65536) + b"]"
        s, hd, _ = rq("POST", S + "big", body=many, headers=h(MEMBER, JSON), timeout=120)
        assert s == 204, s
        final = rss_kib(pid)
        grown = (final["VmHWM"] - before["VmRSS"]) // 1024
        print("  then 65,536 messages and %d escaped ones (8 MiB): peak +%d MiB" % (many.count(b"\\u00e9"), grown))
        # AddressSanitizer keeps freed memory in quarantine (256 MiB by default), so
        # under it the peak measures the sanitizer; the bound is for the real binary
        if "ASAN_OPTIONS" not in os.environ:
            assert grown < 200, grown
        s, hd, body = rq("GET", S + "big?offset=%016x" % (65536 + 65536 // 2), headers=VIEWER)
        assert s == 200 and json.loads(body)[0] == {"t": "\u00e9" + "x" * 100}


def test_local_messages_signed():
    """A message sent without a token (a farm with no tokens serves its own host) is signed
    "local user", or "NAME (local)" when the request names its sender."""
    with Farm(tokens=False) as farm:
        p = farmtest.github_fixture("issues.labeled")
        p["label"] = {"name": "agent"}
        p["issue"]["number"] = 7
        status, body = farm.post_github("issues", p)
        assert status == 202, (status, body)
        sid = body["session"]
        path = "/api/sessions/%d/messages" % sid
        for body, headers, want in ((b'{"text":"hi"}', {}, "local user"),
                                    (b'{"text":"hi","user":"alice"}', {}, "alice (local)"),
                                    (b'{"text":"hi"}', {"Farm-User": "bob"}, "bob (local)"),
                                    (b'{"text":"hi","user":"x\\u0001y"}', {}, "local user"),
                                    (b'{"text":"hi","user":"' + b"z" * 65 + b'"}', {}, "local user")):
            s, _, answer = farm.request("POST", path, body=body, headers=h(JSON, headers))
            assert s == 201, (s, answer)
            seq = json.loads(answer)["seq"]
            s, _, log = farm.request("GET", "/v1/stream/sessions/%d?offset=%016x" % (sid, seq - 1))
            m = json.loads(log)[0]
            assert m["kind"] == "message" and m["actor"] == want and m["body"]["author"] == want, m


if __name__ == "__main__":
    farmtest.run([test_create, test_append, test_producers, test_closed_reads, test_live_reads, test_forks,
                  test_json_mode, test_offsets, test_reserved_control_prefix, test_paths_validated,
                  test_browser_safety, test_json_append_bounded, test_local_messages_signed])
