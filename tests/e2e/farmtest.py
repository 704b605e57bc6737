"""farmtest - shared helpers for the end-to-end tests: start the real `farm`
binary (FARM_BIN) on a free port with a temporary config and data directory,
send it signed webhook deliveries, read its API and its store (through
farm-store-probe, FARM_STORE_PROBE: never through the store's files).

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
import subprocess
import tempfile
import threading
import time
import uuid

FARM_BIN = os.environ.get("FARM_BIN", "farm")
# tests/support/store_probe.c, built beside the tests (tests/CMakeLists.txt)
STORE_PROBE = os.environ.get("FARM_STORE_PROBE") or os.path.join(
    os.path.dirname(os.path.abspath(FARM_BIN)), "tests", "farm-store-probe")
SOURCE_DIR = os.environ.get("FARM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures")

GITHUB_SECRET = "gh-webhook-secret-for-tests-0123456789"
VIEWER_TOKEN = "viewer-token-for-tests-0123456789"
ADMIN_TOKEN = "admin-token-for-tests-0123456789ab"


def github_fixture(name):
    """A GitHub payload from tests/fixtures/github/<name>.json, as a dict."""
    with open(os.path.join(FIXTURES, "github", name + ".json")) as f:
        return json.load(f)


def azure_fixture(name):
    """An Azure DevOps payload from tests/fixtures/azure/<name>.json, as a dict."""
    with open(os.path.join(FIXTURES, "azure", name + ".json")) as f:
        return json.load(f)


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


def pg_url():
    """The throwaway PostgreSQL of tests/support/pg-start when the test runs
    on it (FARM_TEST_STORE_URL), else None."""
    u = os.environ.get("FARM_TEST_STORE_URL", "")
    return u if u.startswith("postgres") else None


def pg_schema_url():
    """A new schema in the test PostgreSQL (through psql) and the store URL
    that uses it."""
    schema = "e" + os.urandom(8).hex()
    p = subprocess.run(["psql", "-q", "-X", pg_url(), "-c", "CREATE SCHEMA " + schema],
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        why = "cannot create a schema in the test PostgreSQL: " + p.stderr.decode("utf-8",
                                                                                 "replace")
        if os.environ.get("CI") != "true":  # no PostgreSQL here: skipped (ctest: 77)
            print("# skipped: " + why, flush=True)
            os._exit(77)
        raise AssertionError(why)
    sep = "&" if "?" in pg_url() else "?"
    return pg_url() + sep + "options=-csearch_path%3D" + schema


class StoreError(Exception):
    """farm-store-probe refused: bad SQL, a constraint, a store that cannot open."""


def store_probe(data_dir, *args, stdin=None, url=None):
    """Run `farm-store-probe --data-dir DATA_DIR ARGS...` (query, exec or
    batch; see tests/support/store_probe.c) and return its JSON output. url:
    the farm's store.url when it is not the data directory's SQLite."""
    env = dict(os.environ, FARM_PROBE_STORE_URL=url or "")
    p = subprocess.run([STORE_PROBE, "--data-dir", data_dir] + list(args), input=stdin,
                       capture_output=True, timeout=120, env=env)
    if p.returncode != 0:
        raise StoreError(p.stderr.decode("utf-8", "replace").strip()
                         or "farm-store-probe exited with %d" % p.returncode)
    return json.loads(p.stdout)


class StoreRows:
    """A statement's result with a cursor's small surface."""

    def __init__(self, rows, rowcount=-1):
        self.rows = rows
        self.rowcount = rowcount

    def fetchall(self):
        return list(self.rows)

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def __iter__(self):
        return iter(self.rows)


class Store:
    """A farm's store as the tests see it, with the small surface of a
    DB-API connection they use: execute(sql, params).fetchall() / fetchone(),
    iteration, `with`, and row_factory = dict for rows as dicts (tuples
    otherwise). Each statement is one run of farm-store-probe: a query on a
    read connection, anything else one group-committed write; batch() runs
    several statements in one write. The SQL must be portable (see
    farm/store/store_inspect.h): the store may not be SQLite."""

    def __init__(self, data_dir, url=None):
        self.data_dir = data_dir
        self.url = url
        self.row_factory = None

    def execute(self, sql, params=()):
        args = [sql] + [json.dumps(p) for p in params]
        if sql.lstrip().split(None, 1)[0].upper() in ("SELECT", "WITH"):
            rows = store_probe(self.data_dir, "query", *args, url=self.url)
            if self.row_factory is not dict:
                rows = [tuple(r.values()) for r in rows]
            return StoreRows(rows)
        return StoreRows([], store_probe(self.data_dir, "exec", *args, url=self.url)["changes"])

    def batch(self, statements):
        """Run (sql, params) pairs in one write, all or none; the rows changed."""
        lines = "".join(json.dumps({"sql": sql, "params": list(params)}) + "\n"
                        for sql, params in statements)
        return store_probe(self.data_dir, "batch", stdin=lines.encode(), url=self.url)["changes"]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Farm:
    """One `farm serve` child process with its own config and data dir."""

    def __init__(self, github_secret=GITHUB_SECRET, tokens=True, repos=None, azure=None,
                 extra=None, tmp=None, serve_args=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="farm-e2e-")
        self.own_tmp = tmp is None
        # as root each agent runs as a uid of its own, which must pass through
        # to the data directory (farm_reach_check): searchable, not listable
        os.chmod(self.tmp, 0o711)
        self.data_dir = os.path.join(self.tmp, "data")
        self.github_secret = github_secret
        self.env = dict(os.environ)
        self.env["FARM_TEST_GH_SECRET"] = github_secret or ""
        self.env["FARM_TEST_VIEWER"] = VIEWER_TOKEN
        self.env["FARM_TEST_ADMIN"] = ADMIN_TOKEN
        self.env["FARM_TEST_AZ_PASSWORD"] = "azure-password-for-tests"
        # a leak inside libgit2 1.5 that the farm cannot free (see the file)
        self.env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "lsan.supp"))
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
        # the PostgreSQL variants of the e2e tests (tests/CMakeLists.txt): the
        # store in a schema of its own in the throwaway server
        self.store_url = None
        if pg_url() and "store" not in cfg:
            self.store_url = pg_schema_url()
            cfg["store"] = {"url": self.store_url}
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
        """The farm's store (a Store, through farm-store-probe)."""
        return Store(self.data_dir, self.store_url)

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


# ---- fake trackers and whole-farm runs (tests/e2e/test_farm_*.py) ----------

class FakeTracker:
    """tests/fakes/<script> (fake_github.py or fake_azure.py) as a child
    process on a free port; ctl() speaks its /_fake/ control API, api() its
    tracker API as a person with a token."""

    def __init__(self, script="fake_github.py"):
        import sys
        import urllib.request  # noqa: F401
        path = os.path.join(SOURCE_DIR, "tests", "fakes", script)
        self.proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.proc.kill()
            raise AssertionError("%s did not start: %r" % (script, line))
        self.port = int(line)
        self.url = "http://127.0.0.1:%d" % self.port

    def _call(self, method, path, body=None, headers=None):
        import urllib.error
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw

    def ctl(self, method, path, body=None):
        status, obj = self._call(method, path, body)
        if status >= 300:
            raise AssertionError("%s %s: %d %s" % (method, path, status, obj))
        return obj

    def api(self, method, path, body=None, token=None, headers=None):
        """(status, parsed body) of a tracker API call, as the token's owner."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = "token " + token
        return self._call(method, path, body, h)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc.stdout.close()
            self.proc = None


def session_rows(farm, where="1 = 1", *params):
    """Sessions in the farm's store as dicts (every column), oldest first."""
    c = farm.db()
    c.row_factory = dict
    return c.execute("SELECT * FROM session WHERE " + where + " ORDER BY id", params).fetchall()


def session_events(farm, session_id, kind=None):
    """A session's log as (seq, ts_ms, kind, body dict), in order."""
    with farm.db() as c:
        rows = c.execute("SELECT seq, ts_ms, kind, body FROM event WHERE session_id = ?"
                         " ORDER BY seq", (session_id,)).fetchall()
    out = []
    for seq, t, k, body in rows:
        if kind and k != kind:
            continue
        try:
            b = json.loads(body) if body else {}
        except ValueError:
            b = {"raw": body}
        out.append((seq, t, k, b))
    return out


BOT_PAT = "ghp_farm_bot_token_for_tests_0123456789"
PERSON_PAT = "ghp_alice_token_for_tests_0123456789ab"
PERSON = "alice"


class GitHubWorld:
    """A fake GitHub holding repository `repo` (alice may write to it), a
    real bare git remote for it (tests/e2e/repos.py), and a `farm serve`
    configured for both with the stand-in agent in the real sandbox; the fake
    sends its webhooks to the farm. open_issue() files an issue as alice and
    labels it "agent", as a person would.

        with farmtest.GitHubWorld(scaling={"max_agents": 3}) as w:
            n = w.open_issue("Fix the greeting", repos.issue_body(repos.FIX))
            s = w.wait_session(n, lambda s: s["state"] == "review")
    """

    def __init__(self, repo="octo/app", scaling=None, budgets=None, repo_extra=None,
                 extra=None):
        import repos as _repos
        self.repo = repo
        self.tmp = tempfile.mkdtemp(prefix="farm-e2e-world-")
        self.bare = _repos.make_remote(self.tmp)
        self.fake = FakeTracker("fake_github.py")
        self.fake.ctl("POST", "/_fake/state", {
            "tokens": {BOT_PAT: "farm-bot", PERSON_PAT: PERSON},
            "repos": {repo: {"permissions": {PERSON: "admin", "farm-bot": "write"}}}})
        rc = {"name": repo, "tracker": "github", "clone_url": "file://" + self.bare,
              "trigger": {"label": "agent"}, "test": "sh test.sh", "max_fix_rounds": 1}
        rc.update(repo_extra or {})
        cfg = {"github": {"api_url": self.fake.url, "token": "env:FARM_TEST_GH_TOKEN",
                          "webhook_secret": "env:FARM_TEST_GH_SECRET", "bot_login": "farm-bot"},
               "agent": {"preset": "standin"},
               "scaling": dict({"max_agents": 4, "max_per_repo": 4}, **(scaling or {})),
               "sandbox": {"memory_mb": 256, "wall_timeout_s": 60}}
        if budgets:
            cfg["budgets"] = budgets
        cfg.update(extra or {})
        self.farm = Farm(repos=[rc], extra=cfg, tmp=self.tmp)
        self.farm.env["FARM_TEST_GH_TOKEN"] = BOT_PAT

    def start(self):
        self.farm.start()
        self.hook()
        return self

    def hook(self):
        """(Re)point the fake's webhooks at the farm's current port."""
        self.fake.ctl("DELETE", "/_fake/hooks")
        self.fake.ctl("POST", "/_fake/hooks", {
            "url": "http://127.0.0.1:%d/hooks/github" % self.farm.port,
            "secret": self.farm.github_secret})

    def restart(self, sig=None):
        """Stop the farm (SIGKILL by default) and start it on the same data."""
        if sig is None:
            self.farm.kill()
        else:
            self.farm.stop(sig)
        self.farm.start()
        self.hook()

    def close(self, ok=True):
        try:
            if ok:
                rc = self.farm.stop()
                if rc != 0:
                    ok = False
                    tail = [l for l in self.farm.log_lines if not l.startswith("{")][-60:]
                    raise AssertionError("farm exited with %s:\n%s" % (rc, "\n".join(tail)))
            else:
                self.farm.kill()
        finally:
            self.fake.stop()
            if ok:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                print("# kept for inspection:", self.tmp, flush=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close(ok=False)
            raise

    def __exit__(self, *exc):
        self.close(ok=exc[0] is None)
        return False

    # ---- the person and the fake ----

    def open_issue(self, title, body, label=True):
        """File an issue as alice (and label it "agent"); its number."""
        st, issue = self.fake.api("POST", "/repos/%s/issues" % self.repo,
                                  {"title": title, "body": body}, token=PERSON_PAT)
        assert st == 201, (st, issue)
        n = issue["number"]
        if label:
            st, r = self.fake.api("POST", "/repos/%s/issues/%d/labels" % (self.repo, n),
                                  {"labels": ["agent"]}, token=PERSON_PAT)
            assert st == 200, (st, r)
        return n

    def state(self):
        """The repository as the fake holds it: issues, comments, pulls..."""
        return self.fake.ctl("GET", "/_fake/state")["repos"][self.repo]

    def comments(self, number):
        """The issue's comments on the fake, oldest first."""
        return [c for c in self.state()["comments"] if c["issue"] == number]

    def pulls(self):
        return self.state()["pulls"]

    # ---- the farm ----

    def session(self, number):
        rows = session_rows(self.farm, "tracker = 'github' AND number = ?", number)
        return rows[-1] if rows else None

    def wait_session(self, number, cond, timeout=90.0, what=None):
        """Poll the store until the issue's session satisfies cond; return it."""
        def check():
            s = self.session(number)
            return s if s and cond(s) else None
        try:
            return wait_for(check, timeout=timeout, what=what or "session of issue %d" % number)
        except AssertionError:
            s = self.session(number)
            if s:
                tail = session_events(self.farm, s["id"])[-15:]
                print("# session:", s, "\n# last events:", tail, flush=True)
            raise
