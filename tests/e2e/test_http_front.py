"""test_http_front - the HTTP front as an outside attacker sees it, against the
real binary: a farm with no tokens still serves its own CLI on loopback, and
nothing works from another origin or another host name; unsigned webhooks are
never accepted; request targets and body framing are checked before use;
every answer carries the security headers; a second `farm serve` on a busy
port stops before it touches anything.

The limits under load (body budgets, slowloris, connection floods) are in
test_http_front_limits.py.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import FARM_BIN, Farm  # noqa: E402

LOCAL_REPO = [{"name": "demo", "tracker": "local", "clone_url": "file:///nonexistent/demo.git",
               "trigger": {"label": "agent"}}]
JSON = {"Content-Type": "application/json"}
EVIL = "http://evil.example"


def open_farm(**kw):
    """No tokens, no webhook secret, loopback: the demo's setup. Jobs stay
    queued (--intake-only)."""
    kw.setdefault("github_secret", None)
    kw.setdefault("tokens", False)
    kw.setdefault("repos", LOCAL_REPO)
    kw.setdefault("serve_args", ["--intake-only"])
    return Farm(**kw)


def cli(farm, *args):
    """Run the farm CLI against the running farm; (exit status, stdout, stderr)."""
    p = subprocess.run([FARM_BIN] + list(args), capture_output=True, env=farm.env, timeout=60,
                       text=True)
    return p.returncode, p.stdout, p.stderr


def new_session(farm, title="Fix the login"):
    """File an issue on the local tracker with the trigger label; its session id."""
    rc, out, err = cli(farm, "issue", "new", "--repo", "demo", "--title", title, "--label",
                       "agent", "--config", farm.config_path)
    assert rc == 0, err
    number = int(out.strip())
    with farm.db() as c:
        row = c.execute("SELECT id FROM session WHERE tracker = 'local' AND number = ?",
                        (number,)).fetchone()
    assert row, "no session for issue %d" % number
    return row[0]


def raw(port, data, timeout=10.0):
    """Send bytes as they are; the whole answer (until the server closes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def status_of(answer):
    line = answer.split(b"\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else None


def messages(farm, sid):
    with farm.db() as c:
        return c.execute("SELECT count(*) FROM event WHERE session_id = ? AND kind = 'message'",
                         (sid,)).fetchone()[0]


def state(farm, sid):
    with farm.db() as c:
        return c.execute("SELECT state FROM session WHERE id = ?", (sid,)).fetchone()[0]


# ---- 2: with no tokens, the farm's own CLI on loopback works ------------------

def test_no_tokens_loopback_cli_works():
    with open_farm() as farm:
        sid = new_session(farm)
        url = "http://127.0.0.1:%d" % farm.port
        rc, out, err = cli(farm, "sessions", "--server", url)
        assert rc == 0 and "demo" in out, (rc, out, err)
        rc, out, err = cli(farm, "say", str(sid), "please add a test", "--server", url)
        assert rc == 0, (rc, out, err)
        assert messages(farm, sid) == 1
        # the names of this host, with and without the port, are this farm
        for host in ("127.0.0.1:%d" % farm.port, "localhost:%d" % farm.port, "localhost",
                     "LOCALHOST.", "[::1]:%d" % farm.port):
            status, _, body = farm.request("GET", "/api/sessions/%d" % sid,
                                           headers={"Host": host})
            assert status == 200, (host, status, body)
        # the same origin may write
        status, _, body = farm.request(
            "POST", "/api/sessions/%d/messages" % sid, body=b'{"text": "and docs"}',
            headers=dict(JSON, Origin="http://127.0.0.1:%d" % farm.port))
        assert status == 201, (status, body)
        rc, out, err = cli(farm, "cancel", str(sid), "--server", url)
        assert rc == 0 and "cancel" in (out + err).lower(), (rc, out, err)


# ---- 1: cross-origin writes and DNS rebinding, no tokens ----------------------

def test_cross_origin_writes_refused():
    with open_farm() as farm:
        sid = new_session(farm)
        msg = "/api/sessions/%d/messages" % sid
        cancel = "/api/sessions/%d/cancel" % sid
        text = b'{"text": "rm -rf /"}'
        attempts = [
            # the "simple" requests a page of any origin can send without a preflight
            (msg, {"Content-Type": "text/plain", "Origin": EVIL}, 403),
            (msg, {"Content-Type": "text/plain"}, 415),
            (msg, {"Content-Type": "application/x-www-form-urlencoded"}, 415),
            (msg, {"Content-Type": "multipart/form-data; boundary=x"}, 415),
            (msg, {}, 415),
            (cancel, {"Content-Type": "text/plain", "Origin": EVIL}, 403),
            (cancel, {"Content-Type": "text/plain"}, 415),
            # JSON, but from another origin (or said so by Sec-Fetch-Site)
            (msg, dict(JSON, Origin=EVIL), 403),
            (msg, dict(JSON, Origin="null"), 403),
            (msg, dict(JSON, Origin="http://127.0.0.1:%d" % (farm.port + 1)), 403),
            (msg, dict(JSON, Origin="https://127.0.0.1:%d.evil.example" % farm.port), 403),
            (msg, dict(JSON, **{"Sec-Fetch-Site": "cross-site"}), 403),
            (msg, dict(JSON, **{"Sec-Fetch-Site": "same-site"}), 403),
            (cancel, dict(JSON, Origin=EVIL), 403),
            (cancel, dict(JSON, **{"Sec-Fetch-Site": "cross-site"}), 403),
        ]
        for path, headers, want in attempts:
            status, _, body = farm.request("POST", path, body=text, headers=headers)
            assert status == want, (path, headers, status, body)
        assert messages(farm, sid) == 0, "a refused write reached the session"
        assert state(farm, sid) == "queued", state(farm, sid)
        assert farm.metric("farm_http_refused_total", reason="cross_origin") >= 10


def test_rebinding_refused():
    with open_farm() as farm:
        sid = new_session(farm)
        for host in ("rebind.example", "rebind.example:%d" % farm.port, "127.0.0.1.nip.io",
                     "attacker.example."):
            for method, path, body, headers in (
                    ("GET", "/api/sessions", None, {}),
                    ("GET", "/api/sessions/%d" % sid, None, {}),
                    ("POST", "/api/sessions/%d/messages" % sid, b'{"text": "x"}', JSON),
                    ("POST", "/api/sessions/%d/cancel" % sid, b"{}", JSON),
                    ("GET", "/v1/stream/sessions/%d" % sid, None, {}),
                    ("GET", "/metrics", None, {}),
                    ("GET", "/", None, {})):
                h = dict(headers, Host=host)
                status, _, data = farm.request(method, path, body=body, headers=h)
                assert status == 421, (host, method, path, status, data)
        assert b"allowed_hosts" in farm.request("GET", "/api/sessions",
                                                headers={"Host": "rebind.example"})[2]
        assert messages(farm, sid) == 0 and state(farm, sid) == "queued"
        assert farm.metric("farm_http_refused_total", reason="misdirected") >= 28


def test_allowed_hosts_and_public_url():
    extra = {"public_url": "https://farm.example.com/",
             "http": {"allowed_hosts": ["farm.lan", "10.1.2.3:9000"]}}
    with open_farm(extra=extra) as farm:
        sid = new_session(farm)
        for host in ("farm.example.com", "farm.lan", "FARM.LAN:8443", "10.1.2.3"):
            status, _, _ = farm.request("GET", "/api/sessions", headers={"Host": host})
            assert status == 200, (host, status)
        assert farm.request("GET", "/api/sessions", headers={"Host": "farm.example.org"})[0] == 421
        # origins: public_url's scheme and port; an allowed host on its port, 80 or 443
        for origin, want in (("https://farm.example.com", 201), ("http://farm.example.com", 403),
                             ("https://farm.lan", 201), ("http://farm.lan:%d" % farm.port, 201),
                             ("http://farm.lan:3000", 403), ("http://10.1.2.3:9000", 201),
                             ("http://10.1.2.3", 403)):
            status, _, body = farm.request("POST", "/api/sessions/%d/messages" % sid,
                                           body=b'{"text": "hi"}', headers=dict(JSON, Origin=origin))
            assert status == want, (origin, status, body)
        # a request a proxy forwarded is never a loopback client: with no tokens, 401
        status, _, body = farm.request("GET", "/api/sessions",
                                       headers={"X-Forwarded-For": "203.0.113.9"})
        assert status == 401, (status, body)


def test_unsigned_webhooks_refused():
    with open_farm() as farm:
        logs = [r for r in farm.logs() if r.get("msg") == "webhook off"]
        assert {r["hook"] for r in logs} == {"/hooks/github", "/hooks/azure"}, logs
        assert any("github.webhook_secret" in r["reason"] for r in logs), logs
        payload = farmtest.github_fixture("issues.labeled")
        status, body = farm.post_github("issues", payload, secret=None)
        assert status == 404 and "github.webhook_secret" in body["error"], (status, body)
        # a signature made up with some secret changes nothing: no secret, no hook
        status, body = farm.post_github("issues", payload, secret="guessed")
        assert status == 404, (status, body)
        status, body = farm.post_azure(farmtest.azure_fixture("workitem.created"))
        assert status == 404 and "azure" in body["error"], (status, body)
        assert farm.deliveries() == []
        assert farm.metric("farm_webhook_deliveries_total", tracker="github", event="issues",
                           outcome="off") == 2


def test_signed_webhook_checked_at_the_headers():
    """With a secret, an unsigned or badly signed delivery is 401, and the
    Azure DevOps credentials are refused before the body is read."""
    azure = {"org_url": "https://dev.azure.com/fabrikam", "webhook_user": "farm",
             "webhook_password": "env:FARM_TEST_AZ_PASSWORD"}
    with Farm(tokens=False, azure=azure, serve_args=["--intake-only"]) as farm:
        payload = farmtest.github_fixture("ping")
        assert farm.post_github("ping", payload, secret=None)[0] == 401
        assert farm.post_github("ping", payload)[0] == 200
        # credentials wrong: the answer comes before the (never sent) body
        s = socket.create_connection(("127.0.0.1", farm.port), timeout=10)
        s.sendall(b"POST /hooks/azure HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nAuthorization: Basic Zm9vOmJhcg==\r\nContent-Length: 100000\r\n\r\n")
        answer = s.recv(4096)
        s.close()
        assert status_of(answer) == 401, answer


def test_bearer_checked_at_the_headers():
    """A write with a wrong token is answered 401 at its headers: the farm does
    not wait for (nor read) the megabyte it announces."""
    with Farm(serve_args=["--intake-only"]) as farm:
        for token in ("Bearer wrong-token-wrong-token", None):
            s = socket.create_connection(("127.0.0.1", farm.port), timeout=5)
            auth = b"Authorization: %s\r\n" % token.encode() if token else b""
            s.sendall(b"POST /api/sessions/1/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Content-Type: application/json\r\n%sContent-Length: 1000000\r\n\r\n"
                      % (farm.port, auth))
            answer = s.recv(4096)
            s.close()
            assert status_of(answer) == 401, answer
            assert b"Connection: close" in answer, answer


# ---- 4: request targets and framing ----------------------------------------------

def test_paths_and_framing():
    with open_farm() as farm:
        p = farm.port
        get = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"

        def target(t):
            return status_of(raw(p, get % (t, p)))

        assert target(b"/healthz") == 200
        assert target(b"/healthz?x=%41") == 200
        assert target(b"/" + b"a" * 3000) == 414
        assert target(b"/healthz?" + b"q" * 3000) == 414
        assert target(b"/healthz\x00x") == 400, "a NUL must not cut the path to /healthz"
        assert target(b"/healthz\x00") == 400
        assert target(b"/healthz%00x") == 400
        assert target(b"/healthz%00") == 400
        assert target(b"/healthz?state=queued%00x") == 400
        assert target(b"/healthz%zz") == 400
        assert target(b"/healthz%4") == 400
        assert target(b"/healthz%") == 400
        assert target(b"/api/sessions/%2") == 400
        assert target(b"/heal\x01thz") == 400
        assert target(b"http://127.0.0.1/healthz") == 400
        assert target(b"*") == 400
        ans = raw(p, get % (b"/healthz%00x", p))
        assert b"%00" in ans and b"application/json" in ans, ans

        post = (b"POST /api/sessions/1/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Content-Type: application/json\r\n%s\r\n%s")
        two_cl = post % (p, b"Content-Length: 12\r\nContent-Length: 12\r\n", b'{"text":"x"}')
        assert status_of(raw(p, two_cl)) == 400
        two_cl_differ = post % (p, b"Content-Length: 12\r\nContent-Length: 0\r\n", b'{"text":"x"}')
        assert status_of(raw(p, two_cl_differ)) == 400
        folded = post % (p, b"Content-Length: 12, 12\r\n", b'{"text":"x"}')
        assert status_of(raw(p, folded)) == 400
        cl_te = post % (p, b"Content-Length: 12\r\nTransfer-Encoding: chunked\r\n",
                        b'c\r\n{"text":"x"}\r\n0\r\n\r\n')
        assert status_of(raw(p, cl_te)) == 400
        two_hosts = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n"
        assert status_of(raw(p, two_hosts)) == 400
        assert farm.metric("farm_http_refused_total", reason="bad_request") >= 18
        # still serving
        assert farm.request("GET", "/healthz")[0] == 200


# ---- 5: security headers on every answer --------------------------------------------

def test_security_headers():
    with Farm(tokens=True, github_secret=farmtest.GITHUB_SECRET,
              serve_args=["--intake-only"]) as farm:
        answers = {}
        for method, path, body, headers in (
                ("GET", "/", None, {}), ("GET", "/sessions/1", None, {}),
                ("GET", "/admin", None, {}), ("GET", "/static/app.js", None, {}),
                ("GET", "/static/favicon.svg", None, {}), ("GET", "/healthz", None, {}),
                ("HEAD", "/healthz", None, {}), ("GET", "/metrics", None, {}),
                ("GET", "/api/sessions", None, {}),
                ("GET", "/api/sessions", None, {"Authorization": "Bearer " + farmtest.VIEWER_TOKEN}),
                ("GET", "/nowhere", None, {}), ("DELETE", "/api/sessions", None, {}),
                ("POST", "/hooks/github", b"{}", JSON),
                ("GET", "/api/sessions", None, {"Host": "rebind.example"}),
                ("POST", "/api/scaling", b"{}", JSON),
                ("GET", "/healthz%00", None, {})):
            status, h, _ = farm.request(method, path, body=body, headers=headers)
            answers[(method, path, json.dumps(headers))] = status
            assert h.get("x-frame-options") == "DENY", (path, status, h)
            assert h.get("x-content-type-options") == "nosniff", (path, status, h)
            assert h.get("referrer-policy") in ("no-referrer", "same-origin"), (path, status, h)
            assert h.get("cross-origin-resource-policy") == "same-origin", (path, status, h)
            csp = h.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, (path, status, csp)
            if path in ("/", "/sessions/1", "/admin"):
                assert h["content-type"].startswith("text/html"), h
                # what the pages need: their own scripts, styles, API calls; nothing inline
                for need in ("script-src 'self'", "style-src 'self'", "connect-src 'self'",
                             "base-uri 'none'", "img-src 'self' data:"):
                    assert need in csp, (path, csp)
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
            else:
                assert "default-src 'none'" in csp, (path, csp)
        assert sorted(set(answers.values())) == [200, 400, 401, 404, 405, 421], answers


# ---- 6: farm serve --listen, and a busy port ----------------------------------------

def test_serve_busy_port():
    with open_farm() as farm:
        tmp = tempfile.mkdtemp(prefix="farm-e2e-busy-")
        data = os.path.join(tmp, "data")
        cfg = os.path.join(tmp, "farm.json")
        with open(cfg, "w") as f:
            json.dump({"data_dir": data, "log_level": "debug",
                       "listen": "127.0.0.1:%d" % farm.port}, f)
        t0 = time.monotonic()
        p = subprocess.run([FARM_BIN, "serve", "--config", cfg], capture_output=True, timeout=30,
                           text=True, env=farm.env)
        took = time.monotonic() - t0
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert took < 10, took
        err = p.stderr
        assert "127.0.0.1:%d" % farm.port in err and "in use" in err, err
        assert "Failed to bind" not in err, err
        # nothing was started or created before the bind failed
        assert not os.path.exists(data), os.listdir(data)
        for started in ("scheduler", "outbox", "sandbox", "listening"):
            assert started not in err.lower(), (started, err)
        assert "--listen" in err, err  # how to choose another port
        # the same with --listen naming the busy port
        p = subprocess.run([FARM_BIN, "serve", "--config", cfg, "--listen",
                            "localhost:%d" % farm.port], capture_output=True, timeout=30,
                           text=True, env=farm.env)
        assert p.returncode == 1 and "localhost:%d" % farm.port in p.stderr, p.stderr
        assert not os.path.exists(data), os.listdir(data)
        # --listen takes another address
        port = free_port()
        p = subprocess.Popen([FARM_BIN, "serve", "--config", cfg, "--intake-only", "--listen",
                              "127.0.0.1:%d" % port], stderr=subprocess.PIPE, env=farm.env,
                             text=True)
        try:
            for line in p.stderr:
                if '"msg":"listening"' in line:
                    assert '"address":"127.0.0.1:%d"' % port in line, line
                    break
            else:
                raise AssertionError("the second farm did not start")
            status, _, _ = farm.request("GET", "/healthz")
            assert status == 200
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                      % port)
            assert c.recv(64).startswith(b"HTTP/1.1 200"), "no answer on --listen's port"
            c.close()
        finally:
            p.terminate()
            p.wait(30)
            p.stderr.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    farmtest.run([test_no_tokens_loopback_cli_works, test_cross_origin_writes_refused,
                  test_rebinding_refused, test_allowed_hosts_and_public_url,
                  test_unsigned_webhooks_refused, test_signed_webhook_checked_at_the_headers,
                  test_bearer_checked_at_the_headers,
                  test_paths_and_framing, test_security_headers, test_serve_busy_port])
