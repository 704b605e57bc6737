"""farmtest - shared helpers for the end-to-end tests: start the real `farm`
binary (FARM_BIN) on a free port with a temporary config and data directory,
send it signed webhook deliveries, read its API and its store.

    with farmtest.Farm(github_secret="s3cret...") as farm:
        status, body = farm.post_github("issues", payload)

Python 3 standard library only. Every wait polls a condition with a deadline.
"""
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid

FARM_BIN = os.environ.get("FARM_BIN", "farm")
SOURCE_DIR = os.environ.get("FARM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.environ.get("FARM_FIXTURES", "/work/shared/fixtures")

GITHUB_SECRET = "gh-webhook-secret-for-tests-0123456789"
VIEWER_TOKEN = "viewer-token-for-tests-0123456789"
ADMIN_TOKEN = "admin-token-for-tests-0123456789ab"


def github_fixture(name):
    """A GitHub payload from tests/fixtures/github/<name>.json, as a dict."""
    with open(os.path.join(SOURCE_DIR, "tests", "fixtures", "github", name + ".json")) as f:
        return json.load(f)


def azure_fixture(name):
    """An Azure DevOps payload: the shared samples first, then ours."""
    for d in (os.path.join(FIXTURES, "azure"), os.path.join(SOURCE_DIR, "tests", "fixtures", "azure")):
        p = os.path.join(d, name + ".json")
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)
    raise FileNotFoundError(name)


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wait_for(cond, timeout=10.0, what="condition"):
    """Poll cond() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Farm:
    """One `farm serve` child process with its own config and data dir."""

    def __init__(self, github_secret=GITHUB_SECRET, tokens=True, repos=None, azure=None,
                 extra=None, tmp=None, serve_args=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="farm-e2e-")
        self.own_tmp = tmp is None
        self.data_dir = os.path.join(self.tmp, "data")
        self.github_secret = github_secret
        self.env = dict(os.environ)
        self.env["FARM_TEST_GH_SECRET"] = github_secret or ""
        self.env["FARM_TEST_VIEWER"] = VIEWER_TOKEN
        self.env["FARM_TEST_ADMIN"] = ADMIN_TOKEN
        self.env["FARM_TEST_AZ_PASSWORD"] = "azure-password-for-tests"
        cfg = {
            "listen": "127.0.0.1:0",
            "data_dir": self.data_dir,
            "log_level": "debug",
            "github": {"api_url": "http://127.0.0.1:9", "bot_login": "farm-bot[bot]"},
        }
        if github_secret:
            cfg["github"]["webhook_secret"] = "env:FARM_TEST_GH_SECRET"
        if tokens:
            cfg["tokens"] = [
                {"name": "viewer", "token": "env:FARM_TEST_VIEWER", "role": "viewer"},
                {"name": "admin", "token": "env:FARM_TEST_ADMIN", "role": "admin"},
            ]
        if azure:
            cfg["azure"] = azure
        cfg["repos"] = repos if repos is not None else [
            {"name": "octo/app", "tracker": "github", "clone_url": "https://github.com/octo/app.git",
             "trigger": {"label": "agent", "assignee": True, "mention": "@farm-bot"}}]
        if extra:
            cfg.update(extra)
        self.config = cfg
        self.config_path = os.path.join(self.tmp, "farm.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.tmp, "farm.log")
        self.log_lines = []
        self.serve_args = list(serve_args or [])

    # ---- process ----------------------------------------------------------

    def start(self, timeout=20.0):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([FARM_BIN, "serve", "--config", self.config_path]
                                     + self.serve_args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=self.env)
        self.port = None
        started = threading.Event()

        def pump(stream, proc):
            for raw in stream:
                self.log.write(raw)
                self.log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log_lines.append(line)
                if self.port is None and line.startswith("{"):
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("msg") == "listening":
                        self.address = rec["address"]
                        self.port = int(rec["address"].rsplit(":", 1)[1])
                        started.set()
            started.set()

        self.pump = threading.Thread(target=pump, args=(self.proc.stderr, self.proc), daemon=True)
        self.pump.start()
        if not started.wait(timeout) or self.port is None:
            self.kill()
            raise AssertionError("farm did not start:\n" + "\n".join(self.log_lines[-30:]))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Stop the farm with sig and return its exit status."""
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.pump.join(5)
        self.log.close()
        self.proc = None
        return rc

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait(30)
            self.pump.join(5)
            self.log.close()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill() if exc[0] else self.stop()
        if self.own_tmp and not exc[0]:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    # ---- HTTP -------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        """(status, headers dict (lower-case names), body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get_json(self, path, token=ADMIN_TOKEN):
        h = {"Authorization": "Bearer " + token} if token else {}
        status, _, data = self.request("GET", path, headers=h)
        return status, (json.loads(data) if data else None)

    def post_github(self, event, payload, delivery=None, secret="default", headers=None):
        """POST a GitHub delivery signed with the farm's secret (or `secret`,
        or unsigned when secret is None). Returns (status, parsed body)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if secret == "default":
            secret = self.github_secret
        h = {"Content-Type": "application/json", "X-GitHub-Event": event,
             "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/test"}
        if secret:
            h["X-Hub-Signature-256"] = sign(secret, body)
        if headers:
            h.update(headers)
        status, _, data = self.request("POST", "/hooks/github", body=body, headers=h)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def post_azure(self, payload, headers=None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        status, _, data = self.request("POST", "/hooks/azure", body=body, headers=h)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def metrics(self):
        status, _, data = self.request("GET", "/metrics")
        assert status == 200, status
        return data.decode()

    def metric(self, name, **labels):
        """The value of one series of /metrics, or 0 when absent."""
        want = ",".join('%s="%s"' % (k, v) for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if "{" in key:
                n, _, rest = key.partition("{")
                got = ",".join(sorted(rest.rstrip("}").split(",")))
            else:
                n, got = key, ""
            if n == name and got == want:
                return float(value)
        return 0.0

    # ---- the store ----------------------------------------------------------

    def db(self):
        """A read-only connection to the farm's SQLite store."""
        path = os.path.join(self.data_dir, "farm.db")
        return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)

    def deliveries(self):
        with self.db() as c:
            return c.execute("SELECT tracker, delivery_id, outcome FROM delivery").fetchall()

    def logs(self):
        """The JSON log records seen so far."""
        out = []
        for line in list(self.log_lines):
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def run(tests):
    """Run test functions in order, print ok / not ok, exit non-zero on failure."""
    import sys
    import traceback
    failed = 0
    for t in tests:
        try:
            t()
            print("ok", t.__name__, flush=True)
        except Exception:
            failed += 1
            print("not ok", t.__name__, flush=True)
            traceback.print_exc()
    sys.exit(1 if failed else 0)
