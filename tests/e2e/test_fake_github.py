"""test_fake_github - the GitHub fake that the tracker tests and the end-to-end
tests stand on behaves like GitHub where they depend on it: pagination with
Link headers, ETags and 304s, RS256 JWTs really verified, installation
tokens that expire, the 65,536-character limit, rate limits, injected
failures and hangs, and signed webhook deliveries, which the real farm
accepts.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import farmtest

PAT = "ghp_fake_selftest_0123456789"
ALICE = "ghp_alice_selftest_0123456789"


class Fake:
    def __init__(self):
        script = os.path.join(farmtest.SOURCE_DIR, "tests", "fakes", "fake_github.py")
        self.proc = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE)
        self.url = "http://127.0.0.1:%d" % int(self.proc.stdout.readline())

    def ctl(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def api(self, method, path, body=None, token=PAT, headers=None, timeout=30):
        """(status, headers, parsed body or None)."""
        h = {"Authorization": "Bearer " + token} if token else {}
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, r.headers, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, e.headers, json.loads(raw) if raw else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def seeded():
    f = Fake()
    f.ctl("POST", "/_fake/state", {
        "tokens": {PAT: "farm-bot", ALICE: "alice"},
        "repos": {"o/r": {"issues": [{"title": "Crash", "body": "It crashes.", "user": "alice"}],
                          "permissions": {"alice": "admin"}}}})
    return f


def test_pagination_and_etags():
    f = seeded()
    try:
        for i in range(5):
            st, _, _ = f.api("POST", "/repos/o/r/issues/1/comments", {"body": "c%d" % i})
            assert st == 201, st
        seen, url, pages = [], "/repos/o/r/issues/1/comments?per_page=2", 0
        while url:
            st, h, body = f.api("GET", url)
            assert st == 200
            seen += [c["body"] for c in body]
            pages += 1
            link = h.get("Link") or ""
            nxt = [p.split(";")[0].strip()[1:-1] for p in link.split(",") if 'rel="next"' in p]
            url = nxt[0][len(f.url):] if nxt else None
        assert seen == ["c%d" % i for i in range(5)], seen
        assert pages == 3, pages

        st, h, _ = f.api("GET", "/repos/o/r/issues/1")
        etag = h["ETag"]
        st2, h2, body = f.api("GET", "/repos/o/r/issues/1", headers={"If-None-Match": etag})
        assert st2 == 304 and body is None, st2
        # a 304 is free; a change gives a new ETag
        assert int(h2["x-ratelimit-remaining"]) == int(h["x-ratelimit-remaining"]), (h, h2)
        f.api("PATCH", "/repos/o/r/issues/1", {"title": "Crash on start"})
        st3, h3, body = f.api("GET", "/repos/o/r/issues/1", headers={"If-None-Match": etag})
        assert st3 == 200 and body["title"] == "Crash on start" and h3["ETag"] != etag
        assert f.ctl("GET", "/_fake/stats")["not_modified"] == 1
        # GitHub Enterprise's /api/v3 prefix is accepted
        st, _, body = f.api("GET", "/api/v3/repos/o/r/issues/1")
        assert st == 200 and body["number"] == 1
    finally:
        f.stop()


def jwt(key_path, claims):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    signing = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + \
        b64(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path],
                         input=signing.encode(), capture_output=True, check=True).stdout
    return signing + "." + b64(sig)


def test_app_jwt_and_installation_tokens():
    if not shutil.which("openssl"):
        print("# skipped: no openssl command")
        return
    tmp = tempfile.mkdtemp(prefix="fake-gh-")
    f = seeded()
    try:
        key = os.path.join(tmp, "app.pem")
        pub = os.path.join(tmp, "app.pub")
        subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub], check=True,
                       capture_output=True)
        with open(pub) as p:
            f.ctl("POST", "/_fake/state", {
                "apps": {"9": {"public_key": p.read(), "slug": "farmapp"}},
                "installations": {"31": {"app_id": 9, "repos": ["o/r"]}}})
        now = int(time.time())
        good = jwt(key, {"iat": now - 60, "exp": now + 540, "iss": 9})
        st, _, body = f.api("POST", "/app/installations/31/access_tokens", token=good)
        assert st == 201, (st, body)
        tok = body["token"]
        st, _, body = f.api("POST", "/repos/o/r/issues/1/comments", {"body": "hi"}, token=tok)
        assert st == 201 and body["user"]["login"] == "farmapp[bot]", body
        st, _, body = f.api("GET", "/repos/o/r/installation", token=good)
        assert st == 200 and body["id"] == 31

        # refused: a tampered signature, an expired JWT, one that lives too long
        assert f.api("POST", "/app/installations/31/access_tokens",
                     token=good[:-6] + "AAAAAA")[0] == 401
        old = jwt(key, {"iat": now - 700, "exp": now - 100, "iss": 9})
        assert f.api("POST", "/app/installations/31/access_tokens", token=old)[0] == 401
        long = jwt(key, {"iat": now, "exp": now + 3600, "iss": 9})
        assert f.api("POST", "/app/installations/31/access_tokens", token=long)[0] == 401
        # a JWT is not an installation token
        assert f.api("GET", "/repos/o/r/issues/1", token=good)[0] == 401

        # an expired installation token is refused
        f.ctl("POST", "/_fake/tokens/expire", {})
        st, _, body = f.api("GET", "/repos/o/r/issues/1", token=tok)
        assert st == 401 and body["message"] == "Bad credentials", body
    finally:
        f.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_limits_and_injected_failures():
    f = seeded()
    try:
        st, _, body = f.api("POST", "/repos/o/r/issues/1/comments", {"body": "x" * 65537})
        assert st == 422 and "too long" in body["errors"][0]["message"], body
        assert f.api("POST", "/repos/o/r/issues/1/comments", {"body": "x" * 65536})[0] == 201
        assert f.api("GET", "/repos/o/r/issues/1", token="ghp_nope")[0] == 401
        assert f.api("GET", "/repos/o/missing/issues/1")[0] == 404

        f.ctl("POST", "/_fake/fail", {"status": 429, "retry_after": 7, "method": "POST"})
        st, h, _ = f.api("POST", "/repos/o/r/issues/1/comments", {"body": "a"})
        assert st == 429 and h["Retry-After"] == "7"
        f.ctl("POST", "/_fake/fail", {"status": 500, "skip": 1, "count": 1})
        assert f.api("GET", "/repos/o/r/issues/1")[0] == 200     # skipped
        assert f.api("GET", "/repos/o/r/issues/1")[0] == 500
        assert f.api("GET", "/repos/o/r/issues/1")[0] == 200     # used up

        f.ctl("POST", "/_fake/fail", {"hang": 5, "method": "GET"})
        t0 = time.monotonic()
        try:
            f.api("GET", "/repos/o/r/issues/1", timeout=0.5)
            raise AssertionError("a hang answered")
        except (socket.timeout, TimeoutError, urllib.error.URLError):
            pass
        assert time.monotonic() - t0 < 3

        f.ctl("POST", "/_fake/ratelimit", {"login": "farm-bot", "remaining": 0, "reset_in": 30})
        st, h, body = f.api("GET", "/repos/o/r/issues/1")
        assert st == 403 and h["x-ratelimit-remaining"] == "0", (st, body)
        assert int(h["x-ratelimit-reset"]) > time.time() + 20

        reqs = f.ctl("GET", "/_fake/requests")["requests"]
        assert reqs[0]["method"] == "POST" and reqs[0]["headers"]["authorization"] == \
            "Bearer " + PAT
        # the hung one has no status yet (None) or, once dropped, 0
        assert [r["status"] for r in reqs[-4:]] in ([500, 200, None, 403], [500, 200, 0, 403])
    finally:
        f.stop()


class Receiver:
    """A webhook receiver that keeps what it got."""

    def __init__(self):
        self.got = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers["Content-Length"])
                outer.got.append(({k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(n)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_webhooks_are_signed_and_in_order():
    f = seeded()
    rcv = Receiver()
    try:
        f.ctl("POST", "/_fake/hooks", {"url": rcv.url, "secret": "hook-secret"})
        st, _, issue = f.api("POST", "/repos/o/r/issues",
                             {"title": "New", "body": "b", "labels": ["agent"]}, token=ALICE)
        assert st == 201
        n = issue["number"]
        f.api("POST", "/repos/o/r/issues/%d/comments" % n, {"body": "@farm-bot go"},
              token=ALICE)
        f.api("PATCH", "/repos/o/r/issues/%d" % n, {"state": "closed"}, token=ALICE)
        farmtest.wait_for(lambda: len(rcv.got) == 4, what="four deliveries")
        events = [(h["x-github-event"], json.loads(b)["action"]) for h, b in rcv.got]
        assert events == [("issues", "opened"), ("issues", "labeled"),
                          ("issue_comment", "created"), ("issues", "closed")], events
        for h, b in rcv.got:
            want = "sha256=" + hmac.new(b"hook-secret", b, hashlib.sha256).hexdigest()
            assert h["x-hub-signature-256"] == want
        ids = [h["x-github-delivery"] for h, _ in rcv.got]
        assert len(set(ids)) == 4
        p = json.loads(rcv.got[1][1])
        assert p["label"]["name"] == "agent" and p["issue"]["number"] == n
        assert p["repository"]["full_name"] == "o/r" and p["sender"]["login"] == "alice"
        assert p["issue"]["author_association"] == "OWNER"
        p = json.loads(rcv.got[2][1])
        assert p["comment"]["body"] == "@farm-bot go"

        # a redelivery repeats the id; the log shows each delivery's answer
        f.ctl("POST", "/_fake/redeliver", {"id": ids[0]})
        farmtest.wait_for(lambda: len(rcv.got) == 5, what="the redelivery")
        assert rcv.got[4][0]["x-github-delivery"] == ids[0]
        d = f.ctl("GET", "/_fake/deliveries")["deliveries"]
        assert [x["status"] for x in d] == [202] * 4 and d[0]["attempts"] == 2, d
    finally:
        rcv.stop()
        f.stop()


def test_the_farm_accepts_the_fakes_webhooks():
    f = seeded()
    farm = farmtest.Farm(
        serve_args=["--intake-only"],  # no run: its comments would be deliveries too
        repos=[{"name": "o/r", "tracker": "github", "clone_url": "https://example.invalid/o/r",
                "trigger": {"label": "agent"}}],
        extra={"github": {"api_url": f.url, "token": "env:FARM_TEST_GH_TOKEN",
                          "webhook_secret": "env:FARM_TEST_GH_SECRET", "bot_login": "farm-bot"}})
    farm.env["FARM_TEST_GH_TOKEN"] = PAT
    try:
        farm.start()
        f.ctl("POST", "/_fake/hooks", {"url": "http://127.0.0.1:%d/hooks/github" % farm.port,
                                       "secret": farmtest.GITHUB_SECRET})
        st, _, issue = f.api("POST", "/repos/o/r/issues",
                             {"title": "Fix the typo", "body": "In README.", "labels": ["agent"]},
                             token=ALICE)
        assert st == 201

        def answered():
            d = f.ctl("GET", "/_fake/deliveries")["deliveries"]
            return len(d) == 2 and all(x["status"] for x in d) and d
        d = farmtest.wait_for(answered, timeout=20, what="the farm to answer both deliveries")
        # opened (with the label already on) and labeled: one starts work, the
        # other finds it started
        assert sorted(x["status"] for x in d) == [200, 202], \
            [(x["status"], x["answer"]) for x in d]
        with farm.db() as c:
            rows = c.execute("SELECT repo, number FROM session").fetchall()
        assert rows == [("o/r", issue["number"])], rows
    finally:
        farm.kill()
        f.stop()


if __name__ == "__main__":
    farmtest.run([test_pagination_and_etags, test_app_jwt_and_installation_tokens,
                  test_limits_and_injected_failures, test_webhooks_are_signed_and_in_order,
                  test_the_farm_accepts_the_fakes_webhooks])
