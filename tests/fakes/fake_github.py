#!/usr/bin/env python3
"""fake_github.py - an in-memory stand-in for the GitHub REST API, for tests.

Run it as `python3 fake_github.py [--port N] [--host H]`; it binds port 0 by
default and prints the port it got as the first line on stdout. Point a
client's api_url at http://127.0.0.1:PORT (a leading /api/v3, as GitHub
Enterprise has, is accepted and ignored).

It keeps repositories with issues, comments, reactions, labels, pull
requests, review comments and collaborator permissions, personal access
tokens, GitHub Apps (RS256 JWTs are really verified, with a pure-Python RSA
check) and installation tokens. Like GitHub it paginates with Link headers,
answers conditional GETs with 304 (which do not count against the rate
limit), sends x-ratelimit-* headers, and refuses bodies over 65,536
characters with 422.

Control endpoints (no authentication), all JSON:
  GET    /_fake/requests[?since=SEQ]   every API request: seq, method, path,
                                       query, headers (lower-case), body, status
  DELETE /_fake/requests               forget them
  POST   /_fake/fail                   queue a failure rule: {"count": 1,
         "status": 500|429|403|..., "retry_after": seconds, "message": "...",
         "hang": seconds, "then": "drop"|"process", "method": "POST",
         "path": "regex searched in the path", "skip": N, "raw": "body sent as is
         instead of the JSON message"}; the first `skip`
         matching requests pass untouched; with "hang" the request waits
         that long and then is dropped (default) or served normally
  DELETE /_fake/fail                   clear the rules
  GET    /_fake/state                  everything, as JSON
  POST   /_fake/state                  seed: {"reset": bool, "tokens": {TOKEN: LOGIN},
         "users": [LOGIN], "apps": {ID: {"public_key": PEM, "slug": S}},
         "installations": {ID: {"app_id": N, "repos": ["o/r"]}},
         "repos": {"o/r": {"issues": [...], "comments": [...], "pulls": [...],
                           "review_comments": [...], "permissions": {LOGIN: PERM}}},
         "config": {...}}; answers with the ids it assigned
  GET    /_fake/stats                  counters: requests, not_modified, by_status,
                                       tokens_issued
  POST   /_fake/config                 {"max_per_page", "token_ttl" (s), "rate_limit",
         "secondary_per_minute" (0: off), "max_body", "link_base" (another origin for
         pagination links, to test that clients refuse to follow them)}
  POST   /_fake/tokens/expire          {"token": T} or {} for every installation token
  POST   /_fake/ratelimit              {"login": L (default: everyone), "remaining": N,
                                        "reset_in": seconds}

Webhooks. Register a receiver and every change made through the API is
delivered to it the way GitHub would (in order, from one background thread,
signed with X-Hub-Signature-256, with X-GitHub-Event and X-GitHub-Delivery):
issues (opened, edited, closed, reopened, labeled, unlabeled, assigned),
issue_comment (created, edited, deleted), pull_request (opened, edited,
closed, reopened; closed with merged after PUT .../merge),
pull_request_review (submitted, after POST .../pulls/N/reviews) and
pull_request_review_comment (created). Seeding through /_fake/state sends
nothing. Act as a person by seeding a token for them ({"tokens": {T: LOGIN}}).
  POST   /_fake/hooks                  {"url": U, "secret": S, "events": [optional filter]}
  GET    /_fake/hooks                  the receivers;  DELETE: forget them
  GET    /_fake/deliveries[?since=N]   every delivery: seq, id, event, action, url,
                                       payload, status (None while in flight), error
  POST   /_fake/emit                   {"repo": "o/r", "event": E, "action": A,
                                        "sender": LOGIN, "payload": {...}}: deliver any event
  POST   /_fake/redeliver              {"id": DELIVERY_ID}: send it again, same id

CI. Check runs and commit statuses per commit, as GitHub keeps them:
  GET  /repos/o/r/commits/{sha}/check-runs   {"total_count", "check_runs"}: the latest run
                                             of each name on that commit
  GET  /repos/o/r/commits/{sha}/status       the combined status: "state", "sha", "statuses"
                                             (the latest of each context)
  POST /repos/o/r/statuses/{sha}             a status ({"state", "context", "description",
                                             "target_url"}); delivers a `status` event
  GET  /repos/o/r/actions/jobs/{id}/logs     302 to http://localhost:PORT/_blobs/joblogs/
                                             {id}?sig=... (another host name, as GitHub's log
                                             URLs are on another host), which answers the job's
                                             log as text/plain with no authentication
  POST /_fake/checks                         {"repo", "sha", "name", "status" (default
         "completed"), "conclusion", "log", "branch", "pr" (default: the open PR whose head is
         branch), "app" (default "github-actions"), "events": ["check_run", "check_suite",
         "workflow_run"] (default ["check_run"])}: a check run (an Actions job with that log)
         and its webhook deliveries; answers {"id"}
  GET  /_fake/blob_requests                  each log download: {"id", "authorization"}
"""

import argparse
import base64
import hashlib
import hmac
import json
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BODY = 64 << 20


def iso(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


class ApiError(Exception):
    def __init__(self, status, message, headers=None, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.errors = errors


# ---- RSA / JWT, standard library only ---------------------------------------

def _der_read(b, i):
    tag = b[i]
    ln = b[i + 1]
    i += 2
    if ln & 0x80:
        nb = ln & 0x7F
        ln = int.from_bytes(b[i:i + nb], "big")
        i += nb
    return tag, b[i:i + ln], i + ln


def _der_items(content):
    items, i = [], 0
    while i < len(content):
        tag, val, i = _der_read(content, i)
        items.append((tag, val))
    return items


def rsa_public_from_pem(pem):
    """(n, e) from a PEM RSA key: public (SPKI or PKCS#1) or private (PKCS#8 or PKCS#1)."""
    m = re.search(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END", pem, re.S)
    if not m:
        raise ValueError("not a PEM key")
    kind, der = m.group(1), base64.b64decode("".join(m.group(2).split()))
    _, body, _ = _der_read(der, 0)
    items = _der_items(body)
    as_int = lambda v: int.from_bytes(v, "big")
    if kind == "RSA PUBLIC KEY":
        return as_int(items[0][1]), as_int(items[1][1])
    if kind == "PUBLIC KEY":
        _, inner, _ = _der_read(items[1][1][1:], 0)
        it = _der_items(inner)
        return as_int(it[0][1]), as_int(it[1][1])
    if kind == "RSA PRIVATE KEY":
        return as_int(items[1][1]), as_int(items[2][1])
    if kind == "PRIVATE KEY":
        _, inner, _ = _der_read(items[2][1], 0)
        it = _der_items(inner)
        return as_int(it[1][1]), as_int(it[2][1])
    raise ValueError("unsupported key type " + kind)


_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def rs256_verify(n, e, data, sig):
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    t = _SHA256_PREFIX + hashlib.sha256(data).digest()
    want = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return em == want


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---- state -------------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.reset()

    def reset(self):
        self.repos = {}
        self.tokens = {}         # token -> {"login", "kind", "installation", "expires"}
        self.apps = {}           # app id (str) -> {"key": (n, e), "slug"}
        self.installations = {}  # installation id (str) -> {"app_id", "repos"}
        self.users = set()
        self.requests = []
        self.failures = []
        self.stats = {"requests": 0, "not_modified": 0, "by_status": {}, "tokens_issued": 0}
        self.config = {"max_per_page": 100, "token_ttl": 3600, "rate_limit": 5000,
                       "secondary_per_minute": 0, "max_body": 65536, "link_base": None}
        self.rate = {}           # login -> {"remaining", "reset"}
        self.content_times = {}  # login -> [times of content-creating requests]
        self.next_id = 1000
        self.next_token = 1
        self.hooks = []          # {"id", "url", "secret", "events"}
        self.deliveries = []     # see deliver()
        self.blob_requests = []  # job log downloads: {"id", "authorization"}
        self.outgoing = queue.Queue()

    def deliver_loop(self):
        """The one thread that sends webhook deliveries, in order."""
        while not self.stop.is_set():
            try:
                rec = self.outgoing.get(timeout=0.2)
            except queue.Empty:
                continue
            self.deliver(rec)

    def deliver(self, rec):
        data = rec["_data"]
        sig = "sha256=" + hmac.new(rec["_secret"].encode(), data, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/fake",
                   "X-GitHub-Event": rec["event"], "X-GitHub-Delivery": rec["id"],
                   "X-GitHub-Hook-ID": str(rec["hook"]), "X-Hub-Signature-256": sig,
                   "X-GitHub-Hook-Installation-Target-Type": "repository"}
        status, error, answer = 0, None, ""
        try:
            req = urllib.request.Request(rec["url"], data=data, method="POST", headers=headers)
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, answer = resp.status, resp.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read(4096).decode("utf-8", "replace")
        except (OSError, ValueError) as e:
            error = str(e)
        with self.lock:
            rec.update(status=status, error=error, answer=answer, attempts=rec["attempts"] + 1)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def repo(self, name, create=False):
        r = self.repos.get(name.lower())
        if r is None and create:
            r = {"name": name, "issues": {}, "comments": {}, "pulls": {}, "review_comments": {},
                 "permissions": {}, "next_number": 1, "id": self.new_id()}
            self.repos[name.lower()] = r
        return r


def user_json(login):
    return {"login": login, "id": int(hashlib.sha1(login.encode()).hexdigest()[:7], 16),
            "type": "Bot" if login.endswith("[bot]") else "User"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-github/1.0"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    state = None  # set in main

    def log_message(self, fmt, *args):
        pass

    # ---- plumbing ----

    def _send(self, status, obj=None, headers=None, raw=None):
        data = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(status)
        if data or status not in (204, 304):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        try:
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test)

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def _handle(self):
        st = self.state
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if path.startswith("/api/v3/"):
            path = path[len("/api/v3"):]
        self.prefix = "/api/v3" if url.path.startswith("/api/v3/") else ""
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_REQUEST_BODY:
            self._send(413, {"message": "request body too large"})
            return
        raw = self.rfile.read(n) if n > 0 else b""
        if path.startswith("/_fake/"):
            try:
                status, obj = self._control(path, query, raw)
            except (ValueError, KeyError, TypeError) as e:
                status, obj = 400, {"message": "bad control request: %s" % e}
            self._send(status, obj)
            return

        if path.startswith("/_blobs/joblogs/") and self.command == "GET":
            self._blob(path, query)
            return

        rec = {"method": self.command, "path": path, "query": query,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": raw.decode("utf-8", "replace"), "status": None, "time": time.time()}
        with st.lock:
            rec["seq"] = len(st.requests) + 1
            st.requests.append(rec)
            st.stats["requests"] += 1
            rule = self._take_failure(path)

        if rule and rule.get("hang"):
            st.stop.wait(float(rule["hang"]))
            if rule.get("then", "drop") == "drop":
                rec["status"] = 0
                self.close_connection = True
                return
        elif rule:
            status = int(rule.get("status", 500))
            headers = {}
            if rule.get("retry_after") is not None:
                headers["Retry-After"] = int(rule["retry_after"])
            if rule.get("ratelimit_reset_in") is not None:
                headers["x-ratelimit-remaining"] = 0
                headers["x-ratelimit-reset"] = int(time.time() + float(rule["ratelimit_reset_in"]))
            if rule.get("raw") is not None:  # a broken answer: any text, as is
                self._finish(rec, status, None, headers, raw=str(rule["raw"]).encode())
            else:
                self._finish(rec, status, {"message": rule.get("message", "injected failure")},
                             headers)
            return

        try:
            body = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, "Problems parsing JSON")
            with st.lock:
                ident = self._auth(path)
                rl_headers = self._rate_check(ident)
                self._secondary_check(ident)
                status, obj, headers = self._route(ident, path, query, body)
        except ApiError as e:
            obj = {"message": e.message,
                   "documentation_url": "https://docs.github.com/rest"}
            if e.errors:
                obj["errors"] = e.errors
            h = dict(e.headers)
            self._finish(rec, e.status, obj, h)
            return

        headers = dict(headers or {})
        headers.update(rl_headers)
        data = b"" if obj is None else json.dumps(obj).encode()
        if self.command == "GET" and status == 200:
            etag = '"%s"' % hashlib.sha1(data).hexdigest()
            headers["ETag"] = etag
            inm = self.headers.get("If-None-Match")
            if inm and etag in [t.strip() for t in inm.split(",")]:
                with st.lock:
                    st.stats["not_modified"] += 1
                    r = st.rate.get(ident.get("login")) if ident else None
                    if r and "x-ratelimit-remaining" in headers:
                        r["remaining"] += 1  # 304s are free
                        headers["x-ratelimit-remaining"] = r["remaining"]
                        headers["x-ratelimit-used"] = st.config["rate_limit"] - r["remaining"]
                self._finish(rec, 304, None, headers, raw=b"")
                return
        self._finish(rec, status, obj, headers, raw=data)

    def _blob(self, path, query):
        """A job log at its short-lived URL: no token needed, a signature instead."""
        st = self.state
        with st.lock:
            job = path.rsplit("/", 1)[-1]
            st.blob_requests.append({"id": job,
                                     "authorization": self.headers.get("Authorization")})
            found = None
            for r in st.repos.values():
                for c in r.get("check_runs", []):
                    if str(c["id"]) == job:
                        found = c
        if found is None or query.get("sig") != hashlib.sha1(job.encode()).hexdigest():
            self._send(404, raw=b"BlobNotFound")
            return
        data = found.get("log", "").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _check_json(self, r, c):
        return {"id": c["id"], "name": c["name"], "head_sha": c["head_sha"],
                "status": c["status"], "conclusion": c["conclusion"],
                "html_url": "https://github.example/%s/runs/%d" % (r["name"], c["id"]),
                "details_url": "https://github.example/%s/runs/%d" % (r["name"], c["id"]),
                "output": {"title": c.get("title"), "summary": None},
                "app": {"slug": c["app"], "name": c["app"]},
                "check_suite": {"id": c["id"] + 500000, "head_branch": c.get("branch")},
                "pull_requests": [{"number": c["pr"]}] if c.get("pr") else []}

    def _check_new(self, body):
        """POST /_fake/checks (under st.lock)."""
        st = self.state
        r = st.repo(body["repo"])
        if r is None:
            raise ValueError("no repository " + body["repo"])
        branch = body.get("branch")
        pr = body.get("pr")
        if pr is None and branch:
            for p in r["pulls"].values():
                if p["head"] == branch and r["issues"][p["number"]]["state"] == "open":
                    pr = p["number"]
        c = {"id": st.new_id(), "name": body["name"], "head_sha": body["sha"],
             "status": body.get("status", "completed"), "conclusion": body.get("conclusion"),
             "log": body.get("log", ""), "branch": branch, "pr": pr,
             "app": body.get("app", "github-actions"), "title": body.get("title")}
        r.setdefault("check_runs", []).append(c)
        cj = self._check_json(r, c)
        action = "completed" if c["status"] == "completed" else "created"
        for ev in body.get("events", ["check_run"]):
            if ev == "check_run":
                self._emit(r, "check_run", action, "github-actions[bot]", check_run=cj)
            elif ev == "check_suite":
                self._emit(r, "check_suite", action, "github-actions[bot]", check_suite={
                    "id": cj["check_suite"]["id"], "head_sha": c["head_sha"],
                    "head_branch": branch, "status": c["status"],
                    "conclusion": c["conclusion"], "app": cj["app"],
                    "pull_requests": cj["pull_requests"]})
            elif ev == "workflow_run":
                self._emit(r, "workflow_run", action, "github-actions[bot]", workflow_run={
                    "id": c["id"] + 900000, "name": c["name"], "head_sha": c["head_sha"],
                    "head_branch": branch, "status": c["status"],
                    "conclusion": c["conclusion"], "pull_requests": cj["pull_requests"],
                    "html_url": cj["html_url"]})
        return {"id": c["id"], "pr": pr}

    def _ci_route(self, r, m, rest, body, me):
        """The CI endpoints; None when rest is not one of them."""
        st = self.state
        if m == "GET" and len(rest) == 3 and rest[0] == "commits" and rest[2] == "check-runs":
            latest = {}
            for c in r.get("check_runs", []):
                if c["head_sha"] == rest[1]:
                    latest[c["name"]] = c
            runs = [self._check_json(r, c) for c in latest.values()]
            return 200, {"total_count": len(runs), "check_runs": runs}, None
        if m == "GET" and len(rest) == 3 and rest[0] == "commits" and rest[2] == "status":
            latest = {}
            for s_ in r.get("statuses", []):
                if s_["sha"] == rest[1]:
                    latest[s_["context"]] = s_
            sts = list(latest.values())
            states = [x["state"] for x in sts]
            state = ("failure" if any(x in ("failure", "error") for x in states) else
                     "pending" if not states or "pending" in states else "success")
            return 200, {"state": state, "sha": rest[1], "total_count": len(sts),
                         "statuses": sts}, None
        if m == "POST" and len(rest) == 2 and rest[0] == "statuses":
            state = (body or {}).get("state")
            if state not in ("error", "failure", "pending", "success"):
                raise ApiError(422, "Validation Failed")
            s_ = {"id": st.new_id(), "sha": rest[1], "state": state,
                  "context": body.get("context", "default"),
                  "description": body.get("description"), "target_url": body.get("target_url"),
                  "created_at": iso()}
            r.setdefault("statuses", []).append(s_)
            branches = [{"name": p["head"]} for p in r["pulls"].values()
                        if body.get("branch") == p["head"]]
            self._emit(r, "status", None, me, sha=rest[1], state=state,
                       context=s_["context"], description=s_["description"],
                       target_url=s_["target_url"], branches=branches)
            return 201, s_, None
        if m == "GET" and len(rest) == 4 and rest[:2] == ["actions", "jobs"] and \
                rest[3] == "logs":
            for c in r.get("check_runs", []):
                if str(c["id"]) == rest[2] and c["app"] == "github-actions":
                    sig = hashlib.sha1(rest[2].encode()).hexdigest()
                    # another host name for the same server, as GitHub's log URLs are
                    # on another host: a client must not carry its token there
                    return 302, None, {"Location": "http://localhost:%d/_blobs/joblogs/%s?sig=%s"
                                       % (self.server.server_address[1], rest[2], sig)}
            raise ApiError(404, "Not Found")
        return None

    def _finish(self, rec, status, obj, headers, raw=None):
        st = self.state
        with st.lock:
            rec["status"] = status
            k = str(status)
            st.stats["by_status"][k] = st.stats["by_status"].get(k, 0) + 1
        self._send(status, obj, headers, raw)

    def _take_failure(self, path):
        st = self.state
        for rule in st.failures:
            if rule.get("method") and rule["method"].upper() != self.command:
                continue
            if rule.get("path") and not re.search(rule["path"], path):
                continue
            if int(rule.get("skip", 0)) > 0:
                rule["skip"] = int(rule["skip"]) - 1
                return None
            rule["count"] = int(rule.get("count", 1)) - 1
            if rule["count"] <= 0:
                st.failures.remove(rule)
            return dict(rule)
        return None

    # ---- authentication and limits ----

    def _auth(self, path):
        st = self.state
        h = self.headers.get("Authorization") or ""
        m = re.match(r"(?i)(bearer|token)\s+(\S+)$", h.strip())
        if not m:
            raise ApiError(401, "Requires authentication")
        cred = m.group(2)
        if cred.count(".") == 2 and cred.startswith("ey"):
            return self._jwt(cred)
        t = st.tokens.get(cred)
        if not t:
            raise ApiError(401, "Bad credentials")
        if t.get("expires") and t["expires"] <= time.time():
            raise ApiError(401, "Bad credentials")
        return t

    def _jwt(self, jwt):
        st = self.state
        try:
            h64, p64, s64 = jwt.split(".")
            header = json.loads(b64url_decode(h64))
            claims = json.loads(b64url_decode(p64))
            sig = b64url_decode(s64)
        except (ValueError, TypeError):
            raise ApiError(401, "A JSON web token could not be decoded")
        if header.get("alg") != "RS256":
            raise ApiError(401, "'alg' must be RS256")
        app = st.apps.get(str(claims.get("iss")))
        if not app:
            raise ApiError(401, "Integration not found")
        if not rs256_verify(app["key"][0], app["key"][1], (h64 + "." + p64).encode(), sig):
            raise ApiError(401, "A JSON web token could not be decoded")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise ApiError(401, "'iat' and 'exp' must be integers")
        if iat > now + 60:
            raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing a "
                                "time in the past.")
        if exp <= now:
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value "
                                "representing the future time at which the assertion expires.")
        if exp - iat > 600:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        return {"kind": "jwt", "app_id": str(claims["iss"]), "login": app["slug"] + "[bot]"}

    def _rate_check(self, ident):
        st = self.state
        if ident["kind"] == "jwt":
            return {}
        login = ident["login"]
        now = time.time()
        r = st.rate.get(login)
        if not r or r["reset"] <= now:
            r = {"remaining": st.config["rate_limit"], "reset": int(now) + 3600}
            st.rate[login] = r
        limit = st.config["rate_limit"]
        if r["remaining"] <= 0:
            raise ApiError(403, "API rate limit exceeded for user %s." % login, {
                "x-ratelimit-limit": limit, "x-ratelimit-remaining": 0,
                "x-ratelimit-used": limit, "x-ratelimit-reset": int(r["reset"]),
                "x-ratelimit-resource": "core"})
        r["remaining"] -= 1
        return {"x-ratelimit-limit": limit, "x-ratelimit-remaining": r["remaining"],
                "x-ratelimit-used": limit - r["remaining"], "x-ratelimit-reset": int(r["reset"]),
                "x-ratelimit-resource": "core"}

    def _secondary_check(self, ident):
        st = self.state
        cap = st.config["secondary_per_minute"]
        if not cap or self.command == "GET" or ident["kind"] == "jwt":
            return
        now = time.time()
        times = [t for t in st.content_times.get(ident["login"], []) if t > now - 60]
        if len(times) >= cap:
            st.content_times[ident["login"]] = times
            raise ApiError(403, "You have exceeded a secondary rate limit. Please wait a few "
                                "minutes before you try again.",
                           {"Retry-After": int(times[0] + 60 - now) + 1})
        times.append(now)
        st.content_times[ident["login"]] = times

    # ---- control ----

    def _control(self, path, query, raw):
        st = self.state
        body = json.loads(raw) if raw else {}
        with st.lock:
            if path == "/_fake/requests":
                if self.command == "DELETE":
                    st.requests = []
                    return 200, {"ok": True}
                since = int(query.get("since", 0))
                return 200, {"requests": [r for r in st.requests if r["seq"] > since],
                             "total": len(st.requests)}
            if path == "/_fake/fail":
                if self.command == "DELETE":
                    st.failures = []
                    return 200, {"rules": 0}
                rule = dict(body)
                rule.setdefault("count", 1)
                st.failures.append(rule)
                return 200, {"rules": len(st.failures)}
            if path == "/_fake/stats":
                return 200, st.stats
            if path == "/_fake/config" and self.command == "POST":
                for k, v in body.items():
                    if k not in st.config:
                        raise ValueError("unknown config key " + k)
                    st.config[k] = v
                return 200, st.config
            if path == "/_fake/tokens/expire":
                n = 0
                for tok, t in st.tokens.items():
                    if t["kind"] == "installation" and body.get("token") in (None, tok):
                        t["expires"] = time.time() - 1
                        n += 1
                return 200, {"expired": n}
            if path == "/_fake/ratelimit":
                logins = [body["login"]] if body.get("login") else \
                    sorted({t["login"] for t in st.tokens.values()})
                for login in logins:
                    st.rate[login] = {"remaining": int(body.get("remaining", 0)),
                                      "reset": int(time.time() + float(body.get("reset_in", 60)))}
                return 200, {"logins": logins}
            if path == "/_fake/state":
                if self.command == "POST":
                    return 200, self._seed(body)
                return 200, self._dump()
            if path == "/_fake/hooks":
                if self.command == "POST":
                    if not isinstance(body.get("url"), str):
                        raise ValueError("url is required")
                    h = {"id": st.new_id(), "url": body["url"],
                         "secret": body.get("secret", ""), "events": body.get("events") or []}
                    st.hooks.append(h)
                    return 200, h
                if self.command == "DELETE":
                    st.hooks = []
                return 200, {"hooks": st.hooks}
            if path == "/_fake/deliveries":
                since = int(query.get("since", 0))
                return 200, {"deliveries": [
                    {k: v for k, v in d.items() if not k.startswith("_")}
                    for d in st.deliveries if d["seq"] > since]}
            if path == "/_fake/emit" and self.command == "POST":
                r = st.repo(body["repo"])
                if r is None:
                    raise ValueError("no repository " + body["repo"])
                self._emit(r, body["event"], body.get("action"), body.get("sender", "octocat"),
                           **body.get("payload", {}))
                return 200, {"deliveries": len(st.deliveries)}
            if path == "/_fake/checks" and self.command == "POST":
                return 200, self._check_new(body)
            if path == "/_fake/blob_requests":
                return 200, list(st.blob_requests)
            if path == "/_fake/redeliver" and self.command == "POST":
                for d in st.deliveries:
                    if d["id"] == body["id"]:
                        st.outgoing.put(d)
                        return 200, {"ok": True}
                return 404, {"message": "no such delivery"}
            if path == "/_fake/shutdown":
                st.stop.set()
                threading.Thread(target=self.server.shutdown, daemon=True).start()
                return 200, {"ok": True}
        return 404, {"message": "no such control endpoint"}

    def _dump(self):
        st = self.state
        out = {"repos": {}, "tokens": {k: v["login"] for k, v in st.tokens.items()},
               "users": sorted(st.users), "config": st.config}
        for name, r in st.repos.items():
            out["repos"][r["name"]] = {
                "issues": [self._issue_json(r, i) for i in sorted(r["issues"].values(),
                                                                   key=lambda i: i["number"])],
                "comments": [dict(c, reactions=list(c["reactions"])) for c in
                             sorted(r["comments"].values(), key=lambda c: c["id"])],
                "pulls": [self._pr_json(r, p) for p in sorted(r["pulls"].values(),
                                                              key=lambda p: p["number"])],
                "review_comments": [self._rc_json(r, c) for c in
                                    sorted(r["review_comments"].values(), key=lambda c: c["id"])],
                "permissions": r["permissions"]}
        return out

    def _seed(self, body):
        st = self.state
        if body.get("reset"):
            st.reset()
        for k, v in body.get("config", {}).items():
            st.config[k] = v
        for tok, login in body.get("tokens", {}).items():
            st.tokens[tok] = {"login": login, "kind": "pat", "installation": None, "expires": 0}
            st.users.add(login)
        for login in body.get("users", []):
            st.users.add(login)
        for app_id, a in body.get("apps", {}).items():
            st.apps[str(app_id)] = {"key": rsa_public_from_pem(a["public_key"]),
                                    "slug": a.get("slug", "farm")}
        for iid, inst in body.get("installations", {}).items():
            st.installations[str(iid)] = {"app_id": str(inst["app_id"]),
                                          "repos": [x.lower() for x in inst.get("repos", [])]}
        ids = {}
        for name, rs in body.get("repos", {}).items():
            r = st.repo(name, create=True)
            for login, perm in rs.get("permissions", {}).items():
                r["permissions"][login] = perm
                st.users.add(login)
            out = ids.setdefault(name, {"issues": [], "comments": [], "pulls": [],
                                        "review_comments": []})
            for i in rs.get("issues", []):
                out["issues"].append(self._issue_new(r, i.get("user", "octocat"), i)["number"])
            for p in rs.get("pulls", []):
                out["pulls"].append(self._pr_new(r, p.get("user", "octocat"), p)["number"])
            for c in rs.get("comments", []):
                out["comments"].append(
                    self._comment_new(r, int(c["issue"]), c.get("user", "octocat"),
                                      c["body"])["id"])
            for c in rs.get("review_comments", []):
                out["review_comments"].append(
                    self._rc_new(r, int(c["pull"]), c.get("user", "octocat"), c)["id"])
        return {"ok": True, "ids": ids}

    # ---- objects ----

    def _base(self):
        host = self.headers.get("Host") or "127.0.0.1"
        return "http://%s%s" % (host, self.prefix)

    def _issue_new(self, r, login, src):
        st = self.state
        num = int(src.get("number") or r["next_number"])
        r["next_number"] = max(r["next_number"], num + 1)
        now = iso()
        issue = {"id": st.new_id(), "number": num, "title": src.get("title", ""),
                 "body": src.get("body"), "user": login, "state": src.get("state", "open"),
                 "labels": list(dict.fromkeys(src.get("labels", []))), "created_at": now,
                 "updated_at": now, "reactions": [], "is_pr": bool(src.get("is_pr")),
                 "assignees": list(dict.fromkeys(src.get("assignees", [])))}
        r["issues"][num] = issue
        return issue

    def _emit(self, r, event, action, actor, **objs):
        """Queue a webhook delivery of event to every receiver (under st.lock)."""
        st = self.state
        hooks = [h for h in st.hooks if not h["events"] or event in h["events"]]
        if not hooks:
            return
        payload = {"action": action} if action else {}
        payload.update(objs)
        owner, name = r["name"].split("/", 1)
        payload["repository"] = {"id": r["id"], "name": name, "full_name": r["name"],
                                 "owner": user_json(owner), "private": False,
                                 "html_url": "https://github.example/" + r["name"],
                                 "default_branch": "main"}
        payload["sender"] = user_json(actor)
        for iid, inst in sorted(st.installations.items()):
            if not inst["repos"] or r["name"].lower() in inst["repos"]:
                payload["installation"] = {"id": int(iid)}
                break
        data = json.dumps(payload).encode()
        for h in hooks:
            rec = {"seq": len(st.deliveries) + 1, "id": str(uuid.uuid4()), "hook": h["id"],
                   "event": event, "action": action, "url": h["url"], "payload": payload,
                   "status": None, "error": None, "answer": None, "attempts": 0,
                   "_data": data, "_secret": h["secret"]}
            st.deliveries.append(rec)
            st.outgoing.put(rec)

    def _issue_json(self, r, i):
        o = {"id": i["id"], "number": i["number"], "title": i["title"], "body": i["body"],
             "user": user_json(i["user"]), "state": i["state"],
             "labels": [{"name": n} for n in i["labels"]],
             "assignees": [user_json(a) for a in i["assignees"]],
             "assignee": user_json(i["assignees"][0]) if i["assignees"] else None,
             "comments": sum(1 for c in r["comments"].values() if c["issue"] == i["number"]),
             "created_at": i["created_at"], "updated_at": i["updated_at"],
             "html_url": "https://github.example/%s/%s/%d" % (
                 r["name"], "pull" if i["is_pr"] else "issues", i["number"]),
             "author_association": self._association(r, i["user"])}
        if i["is_pr"]:
            o["pull_request"] = {"url": "%s/repos/%s/pulls/%d" % (self._base(), r["name"],
                                                                  i["number"])}
        return o

    def _association(self, r, login):
        p = r["permissions"].get(login)
        if p == "admin":
            return "OWNER"
        if p in ("write", "maintain"):
            return "COLLABORATOR"
        return "NONE"

    def _comment_new(self, r, number, login, body):
        st = self.state
        if number not in r["issues"]:
            raise ApiError(404, "Not Found")
        now = iso()
        c = {"id": st.new_id(), "issue": number, "body": body, "user": login,
             "created_at": now, "updated_at": now, "reactions": []}
        r["comments"][c["id"]] = c
        return c

    def _comment_json(self, r, c):
        return {"id": c["id"], "body": c["body"], "user": user_json(c["user"]),
                "created_at": c["created_at"], "updated_at": c["updated_at"],
                "html_url": "https://github.example/%s/issues/%d#issuecomment-%d" % (
                    r["name"], c["issue"], c["id"]),
                "issue_url": "%s/repos/%s/issues/%d" % (self._base(), r["name"], c["issue"]),
                "author_association": self._association(r, c["user"])}

    def _pr_new(self, r, login, src):
        issue = self._issue_new(r, login, dict(src, is_pr=True))
        p = {"number": issue["number"], "head": src["head"], "base": src.get("base", "main"),
             "draft": bool(src.get("draft")), "merged": bool(src.get("merged"))}
        if p["merged"]:
            issue["state"] = "closed"
        r["pulls"][p["number"]] = p
        return p

    def _pr_json(self, r, p):
        i = r["issues"][p["number"]]
        owner = r["name"].split("/")[0]
        return {"id": i["id"], "number": p["number"], "title": i["title"], "body": i["body"],
                "state": i["state"], "merged": p["merged"], "draft": p["draft"],
                "user": user_json(i["user"]),
                "author_association": self._association(r, i["user"]),
                "head": {"ref": p["head"], "label": "%s:%s" % (owner, p["head"]),
                         "sha": hashlib.sha1(p["head"].encode()).hexdigest()},
                "base": {"ref": p["base"], "label": "%s:%s" % (owner, p["base"])},
                "html_url": "https://github.example/%s/pull/%d" % (r["name"], p["number"]),
                "created_at": i["created_at"], "updated_at": i["updated_at"]}

    def _rc_new(self, r, pull, login, src):
        st = self.state
        if pull not in r["pulls"]:
            raise ApiError(404, "Not Found")
        reply_to = src.get("in_reply_to")
        if reply_to is not None:
            parent = r["review_comments"].get(int(reply_to))
            if not parent or parent["pull"] != pull:
                raise ApiError(404, "Not Found")
            # replies live in the thread of the first comment
            while parent.get("in_reply_to"):
                parent = r["review_comments"][parent["in_reply_to"]]
            path, line, reply_to = parent["path"], parent["line"], parent["id"]
        else:
            path, line = src.get("path"), src.get("line")
            if not path:
                raise ApiError(422, "Validation Failed",
                               errors=[{"resource": "PullRequestReviewComment",
                                        "field": "path", "code": "missing_field"}])
        now = iso()
        c = {"id": st.new_id(), "pull": pull, "path": path, "line": line, "body": src["body"],
             "user": login, "in_reply_to": reply_to, "created_at": now, "updated_at": now}
        r["review_comments"][c["id"]] = c
        return c

    def _rc_json(self, r, c):
        o = {"id": c["id"], "pull_request_review_id": c["id"] + 500000, "path": c["path"],
             "line": c["line"], "original_line": c["line"], "body": c["body"],
             "user": user_json(c["user"]), "created_at": c["created_at"],
             "updated_at": c["updated_at"],
             "author_association": self._association(r, c["user"]),
             "html_url": "https://github.example/%s/pull/%d#discussion_r%d" % (
                 r["name"], c["pull"], c["id"])}
        if c["in_reply_to"]:
            o["in_reply_to_id"] = c["in_reply_to"]
        return o

    # ---- REST ----

    def _paginate(self, items, path, query):
        st = self.state
        try:
            per_page = int(query.get("per_page", 30))
            page = int(query.get("page", 1))
        except ValueError:
            raise ApiError(400, "per_page and page must be integers")
        per_page = max(1, min(per_page, 100, int(st.config["max_per_page"])))
        page = max(1, page)
        last = max(1, (len(items) + per_page - 1) // per_page)
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(p, rel):
            q = dict(query, page=str(p), per_page=str(per_page))
            base = st.config["link_base"] or self._base()
            links.append('<%s%s?%s>; rel="%s"' % (base, path,
                                                  urllib.parse.urlencode(q), rel))
        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
            link(page - 1, "prev")
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _body_text(self, body, field="body", required=True, resource="IssueComment"):
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        v = body.get(field)
        if v is None and not required:
            return None
        if not isinstance(v, str) or (required and v == ""):
            raise ApiError(422, "Validation Failed",
                           errors=[{"resource": resource, "field": field,
                                    "code": "missing_field"}])
        if len(v) > int(self.state.config["max_body"]):
            raise ApiError(422, "Validation Failed", errors=[{
                "resource": resource, "code": "custom", "field": field,
                "message": "%s is too long (maximum is %d characters)" % (
                    field, self.state.config["max_body"])}])
        return v

    def _repo_for(self, ident, name):
        st = self.state
        r = st.repo(name)
        if r is None:
            raise ApiError(404, "Not Found")
        if ident["kind"] == "installation":
            inst = st.installations.get(str(ident["installation"]))
            if inst is None or (inst["repos"] and name.lower() not in inst["repos"]):
                raise ApiError(404, "Not Found")
        return r

    def _route(self, ident, path, query, body):
        st = self.state
        m = self.command
        seg = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]

        if ident["kind"] == "jwt":
            if m == "GET" and seg == ["app"]:
                a = st.apps[ident["app_id"]]
                return 200, {"id": int(ident["app_id"]), "slug": a["slug"],
                             "name": a["slug"]}, None
            if m == "POST" and len(seg) == 4 and seg[:2] == ["app", "installations"] and \
                    seg[3] == "access_tokens":
                inst = st.installations.get(seg[2])
                if inst is None or inst["app_id"] != ident["app_id"]:
                    raise ApiError(404, "Not Found")
                tok = "ghs_fake%06d%s" % (st.next_token, hashlib.sha1(
                    str(time.time()).encode()).hexdigest()[:20])
                st.next_token += 1
                expires = time.time() + float(st.config["token_ttl"])
                st.tokens[tok] = {"login": st.apps[ident["app_id"]]["slug"] + "[bot]",
                                  "kind": "installation", "installation": seg[2],
                                  "expires": expires}
                st.stats["tokens_issued"] += 1
                return 201, {"token": tok, "expires_at": iso(expires),
                             "permissions": {"issues": "write", "pull_requests": "write"}}, None
            if m == "GET" and len(seg) == 4 and seg[0] == "repos" and seg[3] == "installation":
                name = seg[1] + "/" + seg[2]
                for iid, inst in st.installations.items():
                    if inst["app_id"] == ident["app_id"] and (
                            not inst["repos"] or name.lower() in inst["repos"]):
                        return 200, {"id": int(iid), "app_id": int(inst["app_id"])}, None
                raise ApiError(404, "Not Found")
            raise ApiError(401, "A JSON web token cannot be used for this endpoint")

        if seg == ["user"] and m == "GET":
            if ident["kind"] != "pat":
                raise ApiError(403, "Resource not accessible by integration")
            return 200, user_json(ident["login"]), None

        if len(seg) < 3 or seg[0] != "repos":
            raise ApiError(404, "Not Found")
        r = self._repo_for(ident, seg[1] + "/" + seg[2])
        rest = seg[3:]
        me = ident["login"]

        if not rest and m == "GET":
            return 200, {"id": r["id"], "full_name": r["name"], "default_branch": "main"}, None
        ci = self._ci_route(r, m, rest, body, me)
        if ci is not None:
            return ci

        # /issues
        if rest == ["issues"]:
            if m == "GET":
                items = [self._issue_json(r, i) for i in sorted(
                    r["issues"].values(), key=lambda i: -i["number"])
                    if query.get("state", "open") in ("all", i["state"])]
                chunk, h = self._paginate(items, path, query)
                return 200, chunk, h
            if m == "POST":
                title = self._body_text(body, "title", resource="Issue")
                i = self._issue_new(r, me, {"title": title, "body": body.get("body"),
                                            "labels": body.get("labels", []),
                                            "assignees": body.get("assignees", [])})
                self._emit(r, "issues", "opened", me, issue=self._issue_json(r, i))
                for name in i["labels"]:
                    self._emit(r, "issues", "labeled", me, issue=self._issue_json(r, i),
                               label={"name": name})
                for a in i["assignees"]:
                    self._emit(r, "issues", "assigned", me, issue=self._issue_json(r, i),
                               assignee=user_json(a))
                return 201, self._issue_json(r, i), None
        if len(rest) >= 2 and rest[0] == "issues" and rest[1] == "comments":
            if len(rest) < 3 or not rest[2].isdigit():
                raise ApiError(404, "Not Found")
            c = r["comments"].get(int(rest[2]))
            if c is None:
                raise ApiError(404, "Not Found")
            if len(rest) == 3:
                if m == "GET":
                    return 200, self._comment_json(r, c), None
                if m == "PATCH":
                    if c["user"] != me:
                        raise ApiError(403, "Must have admin rights to Repository.")
                    old = c["body"]
                    c["body"] = self._body_text(body)
                    c["updated_at"] = iso()
                    if old != c["body"]:
                        self._emit(r, "issue_comment", "edited", me,
                                   issue=self._issue_json(r, r["issues"][c["issue"]]),
                                   comment=self._comment_json(r, c),
                                   changes={"body": {"from": old}})
                    return 200, self._comment_json(r, c), None
                if m == "DELETE":
                    if c["user"] != me:
                        raise ApiError(403, "Must have admin rights to Repository.")
                    del r["comments"][c["id"]]
                    self._emit(r, "issue_comment", "deleted", me,
                               issue=self._issue_json(r, r["issues"][c["issue"]]),
                               comment=self._comment_json(r, c))
                    return 204, None, None
            if len(rest) == 4 and rest[3] == "reactions":
                return self._reactions(c, m, body, me, query, path)
            raise ApiError(404, "Not Found")
        if len(rest) >= 2 and rest[0] == "issues":
            if not rest[1].isdigit():
                raise ApiError(404, "Not Found")
            i = r["issues"].get(int(rest[1]))
            if i is None:
                raise ApiError(404, "Not Found")
            sub = rest[2:]
            if not sub:
                if m == "GET":
                    return 200, self._issue_json(r, i), None
                if m == "PATCH":
                    return self._issue_patch(r, i, body, me)
            if sub == ["comments"]:
                if m == "GET":
                    items = [self._comment_json(r, c) for c in sorted(
                        r["comments"].values(), key=lambda c: c["id"])
                        if c["issue"] == i["number"]]
                    chunk, h = self._paginate(items, path, query)
                    return 200, chunk, h
                if m == "POST":
                    c = self._comment_new(r, i["number"], me, self._body_text(body))
                    self._emit(r, "issue_comment", "created", me, issue=self._issue_json(r, i),
                               comment=self._comment_json(r, c))
                    return 201, self._comment_json(r, c), None
            if sub == ["reactions"]:
                return self._reactions(i, m, body, me, query, path)
            if sub and sub[0] == "labels":
                before = list(i["labels"])
                out = self._labels(i, m, body, sub[1:], query, path)
                self._label_events(r, i, before, me)
                return out
            if sub == ["assignees"] and m == "POST":
                return self._issue_patch(r, i, {"assignees": i["assignees"] + list(
                    (body or {}).get("assignees", []))}, me, status=201)
            raise ApiError(404, "Not Found")

        # /pulls
        if rest == ["pulls"]:
            if m == "GET":
                state = query.get("state", "open")
                head = query.get("head")
                items = []
                for p in sorted(r["pulls"].values(), key=lambda p: -p["number"]):
                    i = r["issues"][p["number"]]
                    if state != "all" and i["state"] != state:
                        continue
                    if head and head != "%s:%s" % (r["name"].split("/")[0], p["head"]):
                        continue
                    if query.get("base") and query["base"] != p["base"]:
                        continue
                    items.append(self._pr_json(r, p))
                chunk, h = self._paginate(items, path, query)
                return 200, chunk, h
            if m == "POST":
                title = self._body_text(body, "title", resource="PullRequest")
                head = self._body_text(body, "head", resource="PullRequest")
                base = self._body_text(body, "base", resource="PullRequest")
                self._body_text(body, "body", required=False, resource="PullRequest")
                if ":" in head:
                    head = head.split(":", 1)[1]
                for p in r["pulls"].values():
                    if p["head"] == head and r["issues"][p["number"]]["state"] == "open":
                        raise ApiError(422, "Validation Failed", errors=[{
                            "resource": "PullRequest", "code": "custom",
                            "message": "A pull request already exists for %s:%s." % (
                                r["name"].split("/")[0], head)}])
                p = self._pr_new(r, me, {"title": title, "body": body.get("body"),
                                         "head": head, "base": base,
                                         "draft": body.get("draft", False)})
                self._emit(r, "pull_request", "opened", me, number=p["number"],
                           pull_request=self._pr_json(r, p))
                return 201, self._pr_json(r, p), None
        if len(rest) >= 2 and rest[0] == "pulls" and rest[1] == "comments":
            if len(rest) == 3 and rest[2].isdigit() and m == "GET":
                c = r["review_comments"].get(int(rest[2]))
                if c is None:
                    raise ApiError(404, "Not Found")
                return 200, self._rc_json(r, c), None
            raise ApiError(404, "Not Found")
        if len(rest) >= 2 and rest[0] == "pulls":
            if not rest[1].isdigit() or int(rest[1]) not in r["pulls"]:
                raise ApiError(404, "Not Found")
            p = r["pulls"][int(rest[1])]
            i = r["issues"][p["number"]]
            sub = rest[2:]
            if not sub:
                if m == "GET":
                    return 200, self._pr_json(r, p), None
                if m == "PATCH":
                    old = (i["title"], i["body"], p["base"], i["state"])
                    if "title" in body:
                        i["title"] = self._body_text(body, "title", resource="PullRequest")
                    if "body" in body:
                        i["body"] = self._body_text(body, "body", resource="PullRequest")
                    if body.get("state") in ("open", "closed"):
                        i["state"] = body["state"]
                    if "base" in body:
                        p["base"] = body["base"]
                    i["updated_at"] = iso()
                    if old[:3] != (i["title"], i["body"], p["base"]):
                        self._emit(r, "pull_request", "edited", me, number=p["number"],
                                   pull_request=self._pr_json(r, p))
                    if old[3] != i["state"]:
                        self._emit(r, "pull_request",
                                   "closed" if i["state"] == "closed" else "reopened", me,
                                   number=p["number"], pull_request=self._pr_json(r, p))
                    return 200, self._pr_json(r, p), None
            if sub == ["merge"] and m == "PUT":
                if i["state"] != "open":
                    raise ApiError(405, "Pull Request is not mergeable")
                p["merged"] = True
                i["state"] = "closed"
                i["updated_at"] = iso()
                self._emit(r, "pull_request", "closed", me, number=p["number"],
                           pull_request=self._pr_json(r, p))
                return 200, {"merged": True, "message": "Pull Request successfully merged",
                             "sha": hashlib.sha1(p["head"].encode()).hexdigest()}, None
            if sub == ["reviews"] and m == "POST":
                event = (body or {}).get("event", "COMMENT")
                states = {"APPROVE": "approved", "REQUEST_CHANGES": "changes_requested",
                          "COMMENT": "commented"}
                if event not in states:
                    raise ApiError(422, "Validation Failed", errors=[{
                        "resource": "PullRequestReview", "field": "event", "code": "invalid"}])
                review = {"id": st.new_id(), "body": (body or {}).get("body") or "",
                          "state": states[event], "user": user_json(me),
                          "author_association": self._association(r, me),
                          "submitted_at": iso(),
                          "html_url": "https://github.example/%s/pull/%d" % (
                              r["name"], p["number"])}
                made = []
                for rc in (body or {}).get("comments", []):
                    c = self._rc_new(r, p["number"], me, {
                        "body": rc.get("body", ""), "path": rc.get("path"),
                        "line": rc.get("line")})
                    made.append(c)
                self._emit(r, "pull_request_review", "submitted", me, review=review,
                           pull_request=self._pr_json(r, p))
                for c in made:
                    self._emit(r, "pull_request_review_comment", "created", me,
                               comment=self._rc_json(r, c), pull_request=self._pr_json(r, p))
                return 200, review, None
            if sub == ["comments"]:
                if m == "GET":
                    items = [self._rc_json(r, c) for c in sorted(
                        r["review_comments"].values(), key=lambda c: c["id"])
                        if c["pull"] == p["number"]]
                    chunk, h = self._paginate(items, path, query)
                    return 200, chunk, h
                if m == "POST":
                    text = self._body_text(body, resource="PullRequestReviewComment")
                    c = self._rc_new(r, p["number"], me, dict(body, body=text))
                    self._emit(r, "pull_request_review_comment", "created", me,
                               comment=self._rc_json(r, c), pull_request=self._pr_json(r, p))
                    return 201, self._rc_json(r, c), None
            if len(sub) == 3 and sub[0] == "comments" and sub[2] == "replies" and \
                    sub[1].isdigit() and m == "POST":
                text = self._body_text(body, resource="PullRequestReviewComment")
                c = self._rc_new(r, p["number"], me, {"body": text, "in_reply_to": int(sub[1])})
                self._emit(r, "pull_request_review_comment", "created", me,
                           comment=self._rc_json(r, c), pull_request=self._pr_json(r, p))
                return 201, self._rc_json(r, c), None
            raise ApiError(404, "Not Found")

        # /collaborators/{user}/permission
        if len(rest) == 3 and rest[0] == "collaborators" and rest[2] == "permission" and \
                m == "GET":
            login = rest[1]
            if login not in st.users and login not in r["permissions"]:
                raise ApiError(404, "Not Found")
            perm = r["permissions"].get(login, "none")
            legacy = {"maintain": "write", "triage": "read"}.get(perm, perm)
            return 200, {"permission": legacy, "role_name": perm,
                         "user": user_json(login)}, None

        raise ApiError(404, "Not Found")

    def _reactions(self, obj, m, body, me, query, path):
        allowed = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
        if m == "GET":
            items = [{"id": rid, "content": content, "user": user_json(login)}
                     for rid, login, content in obj["reactions"]]
            chunk, h = self._paginate(items, path, query)
            return 200, chunk, h
        if m == "POST":
            content = (body or {}).get("content")
            if content not in allowed:
                raise ApiError(422, "Validation Failed", errors=[{
                    "resource": "Reaction", "field": "content", "code": "invalid"}])
            for rid, login, c in obj["reactions"]:
                if login == me and c == content:
                    return 200, {"id": rid, "content": c, "user": user_json(login)}, None
            rid = self.state.new_id()
            obj["reactions"].append((rid, me, content))
            return 201, {"id": rid, "content": content, "user": user_json(me)}, None
        raise ApiError(404, "Not Found")

    def _issue_patch(self, r, i, body, me, status=200):
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        old_title, old_body, old_state = i["title"], i["body"], i["state"]
        before_labels, before_assignees = list(i["labels"]), list(i["assignees"])
        if "title" in body:
            i["title"] = self._body_text(body, "title", resource="Issue")
        if "body" in body:
            i["body"] = self._body_text(body, "body", required=False, resource="Issue")
        if body.get("state") in ("open", "closed"):
            i["state"] = body["state"]
        if "labels" in body:
            i["labels"] = list(dict.fromkeys(body["labels"]))
        if "assignees" in body:
            i["assignees"] = list(dict.fromkeys(body["assignees"]))
        i["updated_at"] = iso()
        if (old_title, old_body) != (i["title"], i["body"]):
            changes = {}
            if old_title != i["title"]:
                changes["title"] = {"from": old_title}
            if old_body != i["body"]:
                changes["body"] = {"from": old_body}
            self._emit(r, "issues", "edited", me, issue=self._issue_json(r, i), changes=changes)
        if old_state != i["state"]:
            self._emit(r, "issues", "closed" if i["state"] == "closed" else "reopened", me,
                       issue=self._issue_json(r, i))
        self._label_events(r, i, before_labels, me)
        for a in i["assignees"]:
            if a not in before_assignees:
                self._emit(r, "issues", "assigned", me, issue=self._issue_json(r, i),
                           assignee=user_json(a))
        return status, self._issue_json(r, i), None

    def _label_events(self, r, i, before, me):
        event = "pull_request" if i["is_pr"] else "issues"
        key = "pull_request" if i["is_pr"] else "issue"

        def obj():
            if i["is_pr"]:
                return self._pr_json(r, r["pulls"][i["number"]])
            return self._issue_json(r, i)
        for name in before:
            if name not in i["labels"]:
                self._emit(r, event, "unlabeled", me, label={"name": name}, **{key: obj()})
        for name in i["labels"]:
            if name not in before:
                self._emit(r, event, "labeled", me, label={"name": name}, **{key: obj()})

    def _labels(self, issue, m, body, rest, query, path):
        def out():
            return [{"name": n} for n in issue["labels"]]
        if not rest:
            if m == "GET":
                chunk, h = self._paginate(out(), path, query)
                return 200, chunk, h
            if m in ("POST", "PUT"):
                labels = body.get("labels") if isinstance(body, dict) else body
                if not isinstance(labels, list) or not all(
                        isinstance(x, str) and x for x in labels):
                    raise ApiError(422, "Validation Failed", errors=[{
                        "resource": "Label", "field": "labels", "code": "invalid"}])
                if m == "PUT":
                    issue["labels"] = []
                for x in labels:
                    if x not in issue["labels"]:
                        issue["labels"].append(x)
                return 200, out(), None
            if m == "DELETE":
                issue["labels"] = []
                return 204, None, None
        if len(rest) == 1 and m == "DELETE":
            if rest[0] not in issue["labels"]:
                raise ApiError(404, "Label does not exist")
            issue["labels"].remove(rest[0])
            return 200, out(), None
        raise ApiError(404, "Not Found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    Handler.state = State()
    threading.Thread(target=Handler.state.deliver_loop, daemon=True).start()
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        Handler.state.stop.set()
        srv.server_close()


if __name__ == "__main__":
    sys.exit(main())
