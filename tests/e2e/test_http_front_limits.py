"""test_http_front_limits - the HTTP front's per-client limits under attack,
against the real binary and its default limits, on loopback only: the
attacker connects from 127.0.0.2, the farm's real clients from 127.0.0.1.

  - many never-finished large webhook bodies: a signed delivery and an API
    write are still answered within 5 s;
  - slowloris (headers or a body sent a byte at a time): closed by the header
    deadline and the body rate, while /healthz answers within 1 s;
  - 3,000 idle connections from one address, with the farm's open files at a
    common 1024: /healthz keeps answering within 1 s.

Every flood is bounded in connections, bytes and time; waits are on events
(a thread done, a socket closed, a counter in /metrics), with deadlines.
"""
import http.client
import json
import os
import resource
import selectors
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import Farm  # noqa: E402

ATTACKER = "127.0.0.2"  # Linux routes all of 127/8 to loopback
MIB = 1 << 20


def attacker_socket(port, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((ATTACKER, 0))
    s.connect(("127.0.0.1", port))
    return s


def healthz_within(farm, seconds=1.0):
    """GET /healthz from 127.0.0.1 answers 200 within `seconds`; the time taken."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", farm.port, timeout=seconds)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        took = time.monotonic() - t0
        assert r.status == 200, r.status
        assert took <= seconds, took
        return took
    finally:
        c.close()


def closed(s):
    """Has the server closed (or reset) s? Reads whatever it answered."""
    try:
        s.setblocking(False)
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def labeled(number):
    p = farmtest.github_fixture("issues.labeled")
    p["issue"]["number"] = number
    p["issue"]["html_url"] = "https://github.com/octo/app/issues/%d" % number
    return p


# ---- the body budget --------------------------------------------------------------

def test_body_flood():
    """48 connections each declare a 20 MiB delivery, send 12 MiB of it and
    stall: 576 MiB if the farm held them all. The attacker gets two large
    bodies at once; the rest are refused at their headers. A signed
    delivery and an API write from elsewhere are answered within 5 s."""
    with Farm(tokens=False, serve_args=["--intake-only"]) as farm:
        status, body = farm.post_github("issues", labeled(1))
        assert status == 202, (status, body)
        sid = body["session"]

        conns, answers, lock = [], [], threading.Lock()
        chunk = b"x" * (256 * 1024)

        def flood():
            try:
                s = attacker_socket(farm.port)
            except OSError as e:
                with lock:
                    answers.append("connect: %s" % e)
                return
            with lock:
                conns.append(s)
            try:
                s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          b"Content-Type: application/json\r\nX-GitHub-Event: issues\r\n"
                          b"X-GitHub-Delivery: %s\r\nX-Hub-Signature-256: sha256=%s\r\n"
                          b"Content-Length: %d\r\n\r\n"
                          % (farm.port, uuid.uuid4().hex.encode(), b"0" * 64, 20 * MIB))
                for _ in range(12 * MIB // len(chunk)):
                    s.sendall(chunk)
                with lock:
                    answers.append("held")
            except OSError:
                try:
                    answer = s.recv(4096)
                except OSError:
                    answer = b""
                with lock:
                    answers.append(answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed")

        threads = [threading.Thread(target=flood) for _ in range(48)]
        for t in threads:
            t.start()
        for t in threads:  # every attacker has sent what it will send (or was refused)
            t.join(60)
        assert not any(t.is_alive() for t in threads), "the flood did not finish"
        try:
            held = answers.count("held")
            assert held <= 4, answers
            refused = [a for a in answers if a.startswith("HTTP/1.1 429") or a == "closed"]
            assert len(refused) >= 40, answers

            t0 = time.monotonic()
            status, body = farm.post_github("issues", labeled(2))
            assert status == 202, (status, body)
            status, _, data = farm.request("POST", "/api/sessions/%d/messages" % sid,
                                           body=b'{"text": "still here?"}',
                                           headers={"Content-Type": "application/json"})
            assert status == 201, (status, data)
            took = time.monotonic() - t0
            assert took < 5.0, took
            assert farm.metric("farm_http_refused_total", reason="large_bodies") >= 40
        finally:
            for s in conns:
                s.close()


# ---- slowloris --------------------------------------------------------------------

def test_slowloris():
    """40 connections send request headers a line a second (each line keeps an
    idle timeout happy), 8 more send a body a byte a second: the header
    deadline (10 s by default) and the body rate close all of them, while
    /healthz answers within 1 s throughout."""
    with Farm(serve_args=["--intake-only"]) as farm:
        heads, bodies = [], []
        for _ in range(40):
            s = attacker_socket(farm.port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % farm.port)
            heads.append(s)
        for _ in range(8):
            s = attacker_socket(farm.port)
            s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Content-Type: application/json\r\nX-GitHub-Event: ping\r\n"
                      b"X-GitHub-Delivery: slow\r\nContent-Length: 5000\r\n\r\n{" % farm.port)
            bodies.append(s)
        t0 = time.monotonic()
        open_heads, open_bodies = set(heads), set(bodies)
        worst = 0.0
        while (open_heads or open_bodies) and time.monotonic() - t0 < 16:
            for s in list(open_heads):
                try:
                    s.sendall(b"X-Drip-%d: a\r\n" % int(time.monotonic() * 1000))
                except OSError:
                    pass
                if closed(s):
                    open_heads.discard(s)
            for s in list(open_bodies):
                try:
                    s.sendall(b" ")
                except OSError:
                    pass
                if closed(s):
                    open_bodies.discard(s)
            worst = max(worst, healthz_within(farm, 1.0))
            time.sleep(0.5)  # the drip's own pace: the attacker sends every half second
        took = time.monotonic() - t0
        for s in heads + bodies:
            s.close()
        assert not open_heads, "%d slow header senders still connected after %.1f s" % (
            len(open_heads), took)
        assert not open_bodies, "%d slow body senders still connected after %.1f s" % (
            len(open_bodies), took)
        assert took >= 8, "closed before the header deadline: %.1f s" % took
        assert farm.metric("farm_http_refused_total", reason="header_timeout") >= 40
        assert farm.metric("farm_http_refused_total", reason="body_too_slow") >= 8
        print("# slowloris closed after %.1f s; slowest /healthz %.3f s" % (took, worst))


# ---- idle connections -------------------------------------------------------------

def test_idle_connection_flood():
    """3,000 idle connections from one address, the farm's open-file limit at
    1024: the address keeps at most its share, the rest are refused at once,
    and /healthz from another address answers within 1 s all along."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3300:
        print("# skipped: the open-file limit (%d) is too low for 3,000 connections" % hard)
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the farm inherits this
    try:
        farm = Farm(serve_args=["--intake-only"]).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    try:
        worst = 0.0
        for i in range(3000):
            try:
                socks.append(attacker_socket(farm.port, timeout=2.0))
            except OSError:
                pass  # a full backlog: the attacker's problem
            if i % 100 == 99:
                worst = max(worst, healthz_within(farm, 1.0))
        worst = max(worst, healthz_within(farm, 1.0))
        # the refused ones were closed at once; what stays is the address's share
        farmtest.wait_for(lambda: farm.metric("farm_http_refused_total",
                                              reason="connections_per_ip") >= 2000,
                          timeout=10, what="refused connections in /metrics")
        still = sum(1 for s in socks if not closed(s))
        assert still <= 64 + 8, still
        status, body = farm.get_json("/api/sessions", token=farmtest.VIEWER_TOKEN)
        assert status == 200, (status, body)
        print("# %d of 3000 idle connections kept; slowest /healthz %.3f s" % (still, worst))
    finally:
        for s in socks:
            s.close()
        assert farm.stop() == 0


if __name__ == "__main__":
    farmtest.run([test_body_flood, test_slowloris, test_idle_connection_flood])
