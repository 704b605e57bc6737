"""End-to-end: the real farm binary receives GitHub and Azure DevOps deliveries
over HTTP and records them; status codes, the store, the read API, /metrics,
the CLI and shutdown are checked from the outside."""
import base64
import json
import re
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import ADMIN_TOKEN, FARM_BIN, GITHUB_SECRET, VIEWER_TOKEN, Farm  # noqa: E402

CAP = 256 * 1024  # a small body cap so the test is quick; the default is 25 MiB

AZURE = {"org_url": "https://dev.azure.com/fabrikam", "webhook_user": "farm",
         "webhook_password": "env:FARM_TEST_AZ_PASSWORD"}
REPOS = [
    {"name": "octo/app", "tracker": "github", "clone_url": "https://github.com/octo/app.git",
     "trigger": {"label": "agent", "assignee": True, "mention": "@farm-bot"}},
    {"name": "fabrikam/GoodCompanyCloud", "tracker": "azure",
     "clone_url": "https://dev.azure.com/fabrikam/GoodCompanyCloud/_git/app",
     "azure_project": "GoodCompanyCloud", "trigger": {"on_open": True},
     "allowed_actors": ["Jamal Hartnett"]},
]


def new_farm(**kw):
    kw.setdefault("repos", REPOS)
    kw.setdefault("azure", AZURE)
    kw.setdefault("extra", {"max_body_bytes": CAP})
    kw.setdefault("serve_args", ["--intake-only"])  # sessions stay queued: intake alone is tested
    return Farm(**kw)


def labeled(number):
    p = farmtest.github_fixture("issues.labeled")
    p["issue"]["number"] = number
    p["issue"]["html_url"] = "https://github.com/octo/app/issues/%d" % number
    return p


def test_github_statuses():
    with new_farm() as farm:
        # ping: recorded, ignored
        status, body = farm.post_github("ping", farmtest.github_fixture("ping"), delivery="ping-1")
        assert status == 200 and body == {"result": "ignored", "reason": "ping"}, (status, body)

        # a label that triggers work: 202 with the session
        status, body = farm.post_github("issues", labeled(12), delivery="lab-12")
        assert status == 202, (status, body)
        assert body["result"] == "accepted" and body["session"] > 0, body
        session = body["session"]

        # the same delivery again: 200 duplicate, nothing new
        status, body = farm.post_github("issues", labeled(12), delivery="lab-12")
        assert status == 200 and body == {"result": "duplicate"}, (status, body)

        # GitHub's form content type: the JSON in the `payload` field, signed as sent
        form = ("payload=" + urllib.parse.quote_plus(json.dumps(labeled(15)))).encode()
        status, body = farm.post_github("issues", form, delivery="form-15", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 202 and body["result"] == "accepted", (status, body)

        # an event the farm does not understand: 200 ignored, recorded
        status, body = farm.post_github("star", farmtest.github_fixture("star.created"),
                                        delivery="star-1")
        assert status == 200 and body["result"] == "ignored", (status, body)

        # signature: wrong, missing, other secret
        status, body = farm.post_github("issues", labeled(13), secret="not-the-secret")
        assert status == 401 and "error" in body and "hint" in body, (status, body)
        status, body = farm.post_github("issues", labeled(13), secret=None)
        assert status == 401, status
        payload = json.dumps(labeled(13)).encode()
        status, body = farm.post_github("issues", payload,
                                        headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
        assert status == 401, status

        # JSON that does not parse, and the wrong shape: 400
        status, body = farm.post_github("issues", b"{\"action\": \"opened\", ")
        assert status == 400 and "JSON" in body["error"], (status, body)
        status, body = farm.post_github("issues", b"[1, 2, 3]")
        assert status == 400, status
        status, body = farm.post_github("issues", {"action": "opened", "repository": {"full_name": "octo/app"}})
        assert status == 400 and "issue" in body["error"], (status, body)
        # no delivery id
        body_bytes = json.dumps(farmtest.github_fixture("ping")).encode()
        status, _, data = farm.request("POST", "/hooks/github", body=body_bytes, headers={
            "X-GitHub-Event": "ping", "X-Hub-Signature-256": farmtest.sign(GITHUB_SECRET, body_bytes)})
        assert status == 400 and b"X-GitHub-Delivery" in data, (status, data)

        # fields past the store's bounds: 400, not a 503 the tracker would retry forever
        status, body = farm.post_github("issues", labeled(14), delivery="x" * 100,
                                        headers={"X-GitHub-Event": "issues" + "s" * 300})
        assert status == 400, (status, body)

        # 413 from Content-Length, before the body is read
        big = b"{\"x\":\"" + b"a" * CAP + b"\"}"
        status, body = farm.post_github("ping", big)
        assert status == 413, status
        # 413 (or the connection cut) for a streamed body passing the cap
        assert chunked_over_cap(farm.port) in (413, "closed")

        # 405 with Allow, 404
        status, headers, data = farm.request("GET", "/hooks/github")
        assert status == 405 and headers.get("allow") == "POST", (status, headers)
        assert json.loads(data)["error"] == "method not allowed"
        status, headers, _ = farm.request("DELETE", "/api/sessions")
        assert status == 405 and "GET" in headers.get("allow", ""), (status, headers)
        status, _, data = farm.request("GET", "/nowhere")
        assert status == 404 and "hint" in json.loads(data)

        # the store holds what was accepted or ignored, once each
        rows = {d[1]: d for d in farm.deliveries()}
        assert set(rows) == {"ping-1", "lab-12", "star-1", "form-15"}, rows
        assert rows["lab-12"][2] == "accepted" and rows["star-1"][2] == "ignored", rows
        with farm.db() as c:
            n = c.execute("SELECT count(*) FROM session WHERE repo='octo/app' AND number=12").fetchone()[0]
        assert n == 1, n

        # metrics
        assert farm.metric("farm_webhook_deliveries_total", tracker="github", event="issues",
                           outcome="accepted") == 2
        assert farm.metric("farm_webhook_deliveries_total", tracker="github", event="issues",
                           outcome="duplicate") == 1
        assert farm.metric("farm_webhook_deliveries_total", tracker="github", event="issues",
                           outcome="unauthorized") == 3
        assert farm.metric("farm_webhook_deliveries_total", tracker="github", event="other",
                           outcome="ignored") == 1
        assert farm.metric("farm_webhook_deliveries_total", tracker="github", event="other",
                           outcome="too_large") >= 1
        assert farm.metric("farm_http_requests_total", route="hook_github", status="202") == 2
        assert farm.metric("farm_http_requests_total", route="hook_github", status="401") == 3
        assert farm.metric("farm_webhook_ack_seconds_count") >= 10
        assert farm.metric("farm_sessions", state="queued") == 2
        assert farm.metric("farm_queue_depth", state="queued") >= 1
        assert farm.metric("farm_store_commits_total") >= 1
        assert farm.metric("farm_deliveries_recorded", tracker="github", event="issues",
                           outcome="accepted") == 2

        # the secrets never reach the log; every delivery line names its id
        log = open(farm.log_path, "rb").read().decode()
        for secret in (GITHUB_SECRET, VIEWER_TOKEN, ADMIN_TOKEN):
            assert secret not in log
        lines = [r for r in farm.logs() if r.get("msg") == "delivery"]
        assert {r["delivery"] for r in lines} >= {"ping-1", "lab-12", "star-1"}, lines
        assert session


def chunked_over_cap(port):
    """Stream a chunked body past the cap; the farm answers 413 or cuts the
    connection, and never reads the whole body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
              b"X-GitHub-Event: ping\r\nX-GitHub-Delivery: big\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    sent = 0
    try:
        for _ in range(4 * CAP // 65536 + 64):  # far more than the cap
            s.sendall(chunk)
            sent += 65536
    except OSError:
        pass
    try:
        s.settimeout(10)
        data = s.recv(4096)
    except OSError:
        data = b""
    s.close()
    if data.startswith(b"HTTP/1.1 413"):
        return 413
    if data.startswith(b"HTTP/1.1 100") and b"413" in data:
        return 413
    return "closed" if not data or data.startswith(b"HTTP/1.1 100") else data[:40]


def test_api_reads():
    with new_farm() as farm:
        for n in (21, 22, 23):
            status, body = farm.post_github("issues", labeled(n))
            assert status == 202, (status, body)
        farm.post_github("ping", farmtest.github_fixture("ping"))

        # reads need a token: none, a wrong one
        status, body = farm.get_json("/api/sessions", token=None)
        assert status == 401 and "hint" in body, (status, body)
        status, body = farm.get_json("/api/sessions", token="wrong-token-wrong-token")
        assert status == 401
        status, body = farm.get_json("/api/sessions", token=VIEWER_TOKEN)
        assert status == 200, status
        numbers = [s["number"] for s in body["sessions"]]
        assert numbers == [23, 22, 21], numbers  # newest first
        s = body["sessions"][0]
        assert s["repo"] == "octo/app" and s["state"] == "queued" and s["tracker"] == "github", s
        assert s["links"]["stream"] == "/v1/stream/sessions/%d" % s["id"], s

        status, one = farm.get_json("/api/sessions/%d" % s["id"])
        assert status == 200 and one["id"] == s["id"] and one["number"] == 23, one
        assert farm.get_json("/api/sessions/99999")[0] == 404
        assert farm.get_json("/api/sessions/abc")[0] == 404

        status, body = farm.get_json("/api/sessions?limit=2")
        assert [x["number"] for x in body["sessions"]] == [23, 22] and "next_before" in body, body
        status, body = farm.get_json("/api/sessions?limit=2&before=%d" % body["next_before"])
        assert [x["number"] for x in body["sessions"]] == [21], body
        assert farm.get_json("/api/sessions?state=done")[1]["sessions"] == []
        assert len(farm.get_json("/api/sessions?state=queued&repo=OCTO/APP&since=1h")[1]["sessions"]) == 3
        assert farm.get_json("/api/sessions?repo=octo/other")[1]["sessions"] == []
        for bad in ("limit=0", "limit=abc", "limit=100000", "since=yesterday", "state=sleeping"):
            status, body = farm.get_json("/api/sessions?" + bad)
            assert status == 400 and "hint" in body, (bad, status, body)

        status, body = farm.get_json("/api/deliveries")
        assert status == 200
        events = [d["event"] for d in body["deliveries"]]
        assert events == ["ping", "issues", "issues", "issues"], events
        assert body["deliveries"][1]["session"] > 0
        status, body = farm.get_json("/api/deliveries?outcome=ignored&tracker=github")
        assert [d["event"] for d in body["deliveries"]] == ["ping"], body
        assert farm.get_json("/api/deliveries?tracker=azure")[1]["deliveries"] == []

        status, _, data = farm.request("GET", "/healthz")
        assert status == 200 and json.loads(data) == {"status": "ok"}
        status, _, data = farm.request("HEAD", "/healthz")
        assert status == 200 and data == b"", (status, data)

        # /metrics is well-formed Prometheus text: every series has a TYPE
        # and a numeric value
        typed = set()
        for line in farm.metrics().splitlines():
            if line.startswith("# TYPE "):
                typed.add(line.split()[2])
                continue
            if line.startswith("#") or not line:
                continue
            m = re.fullmatch(r'([a-z_]+)(\{([a-z_]+="[^"\\]*(\\.[^"\\]*)*",?)*\})? (\S+)', line)
            assert m, line
            float(m.group(5))
            base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            assert m.group(1) in typed or base in typed, line

        # the CLI reads the same through --server and FARM_TOKEN
        env = dict(os.environ, FARM_TOKEN=VIEWER_TOKEN)
        url = "http://127.0.0.1:%d" % farm.port
        out = subprocess.run([FARM_BIN, "deliveries", "--server", url, "--json"], env=env,
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)["deliveries"]) == 4
        out = subprocess.run([FARM_BIN, "sessions", "--server", url, "--state", "queued"], env=env,
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 0 and "octo/app" in out.stdout and "#23" in out.stdout, out
        out = subprocess.run([FARM_BIN, "sessions", str(s["id"]), "--server", url], env=env,
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 0 and "queued" in out.stdout, out
        out = subprocess.run([FARM_BIN, "deliveries", "--server", url],
                             env=dict(os.environ, FARM_TOKEN=""), capture_output=True, timeout=30,
                             text=True)
        assert out.returncode == 1 and "FARM_TOKEN" in out.stderr, out
        out = subprocess.run([FARM_BIN, "sessions", "--server", url, "--limit", "0"], env=env,
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 1 and "limit" in out.stderr, out
        # --config finds the server by its listen address (port 0 here: nothing listens)
        out = subprocess.run([FARM_BIN, "deliveries", "--config", farm.config_path], env=farm.env,
                             capture_output=True, timeout=30, text=True)
        assert out.returncode == 1 and "cannot reach the farm" in out.stderr, out


def test_azure():
    with new_farm() as farm:
        good = {"Authorization": "Basic " + base64.b64encode(b"farm:azure-password-for-tests").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"farm:nope").decode()}
        created = farmtest.azure_fixture("workitem.created")
        assert farm.post_azure(created)[0] == 401
        assert farm.post_azure(created, headers=bad)[0] == 401
        status, body = farm.post_azure(created, headers=good)
        assert status == 202 and body["result"] == "accepted", (status, body)
        status, body = farm.post_azure(created, headers=good)
        assert status == 200 and body["result"] == "duplicate", (status, body)
        for name in ("workitem.updated", "workitem.commented", "git.pullrequest.created",
                     "git.pullrequest.merged", "ms.vss-code.git-pullrequest-comment-event",
                     "build.complete"):
            status, body = farm.post_azure(farmtest.azure_fixture(name), headers=good)
            assert status in (200, 202), (name, status, body)
        assert farm.post_azure(b"{not json", headers=good)[0] == 400
        assert farm.post_azure({"eventType": "workitem.created"}, headers=good)[0] == 400
        with farm.db() as c:
            rows = dict(c.execute("SELECT delivery_id, repo FROM delivery WHERE tracker='azure'"))
            sessions = c.execute("SELECT repo, number FROM session WHERE tracker='azure'").fetchall()
        assert rows["d2d46fb1-dba5-403c-9373-427583f19e8c"] == "fabrikam/GoodCompanyCloud", rows
        assert len(rows) == 7, rows
        assert sessions == [("fabrikam/GoodCompanyCloud", 5)], sessions
        assert farm.metric("farm_webhook_deliveries_total", tracker="azure", event="workitem.created",
                           outcome="accepted") == 1
        assert farm.metric("farm_webhook_deliveries_total", tracker="azure", event="other",
                           outcome="unauthorized") == 2


def test_azure_header_secret():
    """The alternative to basic auth: a shared secret in a configured header."""
    azure = {"org_url": "https://dev.azure.com/fabrikam", "webhook_header": "X-Farm-Secret",
             "webhook_header_secret": "env:FARM_TEST_AZ_PASSWORD"}
    with new_farm(azure=azure) as farm:
        created = farmtest.azure_fixture("workitem.created")
        assert farm.post_azure(created)[0] == 401
        assert farm.post_azure(created, headers={"X-Farm-Secret": "azure-password-for-test"})[0] == 401
        status, body = farm.post_azure(created, headers={"X-Farm-Secret": "azure-password-for-tests"})
        assert status == 202 and body["result"] == "accepted", (status, body)


def test_loopback_without_secrets():
    """No secret and no tokens on loopback: reads are served to loopback
    clients (the demo), but the webhook is off: an unsigned delivery is never
    accepted, not even from loopback."""
    with Farm(github_secret=None, tokens=False) as farm:
        status, body = farm.post_github("issues", labeled(5), secret=None)
        assert status == 404 and "github.webhook_secret" in body["error"], (status, body)
        status, body = farm.get_json("/api/sessions", token=None)
        assert status == 200 and len(body["sessions"]) == 0, body


def test_refuses_beyond_loopback():
    farm = Farm(github_secret=None, tokens=False, extra={"listen": "0.0.0.0:0"})
    out = subprocess.run([FARM_BIN, "serve", "--config", farm.config_path], env=farm.env,
                         capture_output=True, timeout=30, text=True)
    assert out.returncode == 1, out
    assert "webhook_secret" in out.stderr and "tokens" in out.stderr, out.stderr


def test_sigterm_drains():
    farm = new_farm().start()
    status, _ = farm.post_github("issues", labeled(40))
    assert status == 202
    rc = farm.stop(signal.SIGTERM)
    assert rc == 0, rc
    msgs = [r.get("msg") for r in farm.logs()]
    assert "stopping" in msgs and msgs[-1] == "stopped", msgs[-5:]
    # restarting on the same data dir keeps everything
    farm.start()
    status, body = farm.get_json("/api/deliveries")
    assert status == 200 and len(body["deliveries"]) == 1, body
    assert farm.stop(signal.SIGINT) == 0


if __name__ == "__main__":
    farmtest.run([test_github_statuses, test_api_reads, test_azure, test_azure_header_secret,
                  test_loopback_without_secrets, test_refuses_beyond_loopback, test_sigterm_drains])
