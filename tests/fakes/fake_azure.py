#!/usr/bin/env python3
"""fake_azure.py - an in-memory stand-in for the Azure DevOps REST API, for tests.

Run it as `python3 fake_azure.py [--port N] [--host H]`; it binds port 0 by
default and prints the port it got as the first line on stdout. Point a
client's org_url at http://127.0.0.1:PORT/ORG (any organization name is
accepted; the first path segment is taken as it).

It keeps projects with work items (fields, tags, revisions), work item
comments (with reactions), Azure Repos repositories, pull requests (with
workItemRefs) and their comment threads, and personal access tokens. Like
Azure DevOps it wants basic auth with the PAT as the password, an
api-version on every call (with "-preview" on the comment and reaction
endpoints), JSON Patch (application/json-patch+json) for work item updates
with a working "test" of /rev, pages work item comments with continuation
tokens, answers 409 to a second active PR for the same branches, and refuses
a comment over max_comment characters and a PR description over 4,000.

Control endpoints (no authentication), all JSON, as in fake_github.py:
  GET    /_fake/requests[?since=SEQ]   every API request: seq, method, path,
                                       query, headers (lower-case), body, status
  DELETE /_fake/requests               forget them
  POST   /_fake/fail                   queue a failure rule: {"count": 1,
         "status": 500|429|503|..., "retry_after": seconds, "message": "...",
         "hang": seconds, "then": "drop"|"process", "method": "POST",
         "path": "regex searched in the path"}; with "hang" the request waits
         that long and then is dropped (default) or served normally
  DELETE /_fake/fail                   clear the rules
  GET    /_fake/state                  everything, as JSON
  POST   /_fake/state                  seed: {"reset": bool,
         "tokens": {PAT: UNIQUE_NAME},
         "projects": {"P": {"repos": ["app"],
             "workitems": [{"title", "description", "state", "tags": "a; b",
                            "created_by", "comments": [{"text", "by"}]}],
             "prs": [{"repo", "source", "target", "title", "description",
                      "status", "by", "threads": [{"file", "line",
                      "comments": [{"content", "by"}]}]}]}},
         "config": {...}}; answers with the ids it assigned
  GET    /_fake/stats                  counters: requests, by_status
  POST   /_fake/config                 {"page_size", "max_comment", "signin_page"
                                        (answer unknown PATs with 203 and HTML)}
  POST   /_fake/tokens/expire          {"token": T} or {} for every token
  POST   /_fake/ratelimit              {"remaining": 0, "reset_in": seconds}:
                                       answer 429 with Retry-After until then

Builds (Azure Pipelines), as the build REST API shows them:
  GET {org}/{project}/_apis/build/builds?branchName=REF   newest first ($top), each with
        status, result, sourceBranch, sourceVersion, definition, triggerInfo, _links.web
  GET .../builds/{id}/timeline                 records: a passing checkout task, the failing
                                               task (with its log id) and the job
  GET .../builds/{id}/logs                     {"count", "value": [{"id", "lineCount"}]}
  GET .../builds/{id}/logs/{log}?startLine=N&endLine=M   the lines as {"count", "value"}
                                               (what Azure answers a JSON client)
  POST /_fake/builds   {"project", "repo", "branch", "sha", "definition" (name),
         "status" (default "completed"), "result" ("failed", "succeeded", ...),
         "log" (the failing task's log), "task" (its name), "pr" (a PR validation
         build: its id)}: a build; answers {"id", "delivery"}, the `build.complete`
         service hook delivery Azure DevOps would send (the fake sends no hooks)

Pushes (Azure Repos; the fake holds no git objects: the test's bare remote does):
  POST /_fake/push     {"project", "repo", "branch" (or "refs": [{"branch", "new",
         "old"}] for several), "new" (the branch's new head), "old" (default zeros),
         "by" (unique name)}: answers {"delivery"}, the `git.push` ("Code pushed")
         service hook delivery Azure DevOps would send
"""

import argparse
import base64
import hashlib
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BODY = 64 << 20
PR_DESCRIPTION_MAX = 4000


def iso(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def guid(s):
    h = hashlib.sha1(s.encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


def identity(name):
    return {"id": guid(name.lower()), "uniqueName": name, "displayName": name.split("@")[0],
            "descriptor": "aad." + base64.b64encode(name.encode()).decode()}


class ApiError(Exception):
    def __init__(self, status, message, headers=None, type_key="Exception"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.type_key = type_key


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.reset()

    def reset(self):
        self.projects = {}   # lower name -> project
        self.tokens = {}     # PAT -> {"name", "expired"}
        self.workitems = {}  # id -> work item (ids are collection-wide, as in Azure)
        self.prs = {}        # id -> pull request
        self.requests = []
        self.failures = []
        self.stats = {"requests": 0, "by_status": {}}
        self.config = {"page_size": 200, "max_comment": 150000, "signin_page": False}
        self.rate = None     # {"until": t} while rate-limited
        self.next_id = 1
        self.next_comment = 1000
        self.builds = {}     # id -> build (see _build_new)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def project(self, name, create=False):
        p = self.projects.get(name.lower())
        if p is None and create:
            p = {"name": name, "id": guid("project/" + name.lower()), "repos": {}}
            self.projects[name.lower()] = p
        return p

    def repo(self, project, name, create=False):
        r = project["repos"].get(name.lower())
        if r is None and create:
            r = {"name": name, "id": guid("repo/%s/%s" % (project["name"], name.lower()))}
            project["repos"][name.lower()] = r
        return r


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-azure-devops/1.0"
    state = None  # set in main

    def log_message(self, fmt, *args):
        pass

    # ---- plumbing ----

    def _send(self, status, obj=None, headers=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (b"" if obj is None else json.dumps(obj).encode())
        self.send_response(status)
        if data:
            self.send_header("Content-Type", ctype + "; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

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
            self._finish(rec, status, {"$id": "1", "message": rule.get("message", "injected failure"),
                                       "typeKey": "InjectedFailure"}, headers)
            return

        try:
            with st.lock:
                ident = self._auth()
                if ident is None:
                    self._finish(rec, 203, None, {}, raw=(
                        b"<html><head><title>Sign In</title></head><body>Azure DevOps Services "
                        b"| Sign In</body></html>"), ctype="text/html")
                    return
                self._rate_check()
                body = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise ApiError(400, "The request body could not be parsed as JSON.")
                status, obj = self._route(ident, path, query, body)
        except ApiError as e:
            self._finish(rec, e.status, {"$id": "1", "innerException": None, "message": e.message,
                                         "typeName": e.type_key, "typeKey": e.type_key,
                                         "errorCode": 0, "eventId": 3000}, e.headers)
            return
        self._finish(rec, status, obj, {})

    def _finish(self, rec, status, obj, headers, raw=None, ctype="application/json"):
        st = self.state
        with st.lock:
            rec["status"] = status
            k = str(status)
            st.stats["by_status"][k] = st.stats["by_status"].get(k, 0) + 1
        self._send(status, obj, headers, raw, ctype)

    def _take_failure(self, path):
        st = self.state
        for rule in st.failures:
            if rule.get("method") and rule["method"].upper() != self.command:
                continue
            if rule.get("path") and not re.search(rule["path"], path):
                continue
            rule["count"] = int(rule.get("count", 1)) - 1
            if rule["count"] <= 0:
                st.failures.remove(rule)
            return dict(rule)
        return None

    # ---- authentication and limits ----

    def _auth(self):
        st = self.state
        h = (self.headers.get("Authorization") or "").strip()
        m = re.match(r"(?i)basic\s+(\S+)$", h)
        if not m:
            raise ApiError(401, "TF400813: The user '' is not authorized to access this resource.",
                           {"WWW-Authenticate": 'Basic realm="https://dev.azure.com/"'},
                           "UnauthorizedRequestException")
        try:
            user_pass = base64.b64decode(m.group(1), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(401, "TF400813: malformed basic credentials")
        pat = user_pass.split(":", 1)[1] if ":" in user_pass else user_pass
        t = st.tokens.get(pat)
        if not t or t.get("expired"):
            if st.config["signin_page"] and not t:
                return None
            raise ApiError(401, "TF400813: The user is not authorized to access this resource "
                                "(personal access token expired or revoked).",
                           {"WWW-Authenticate": 'Basic realm="https://dev.azure.com/"'},
                           "UnauthorizedRequestException")
        return identity(t["name"])

    def _rate_check(self):
        st = self.state
        if not st.rate:
            return
        left = st.rate["until"] - time.time()
        if left <= 0:
            st.rate = None
            return
        raise ApiError(429, "Request was blocked due to exceeding usage of resource 'Core' in "
                            "namespace 'User'.",
                       {"Retry-After": int(left) + 1, "X-RateLimit-Resource": "Core",
                        "X-RateLimit-Delay": "1.0", "X-RateLimit-Limit": 200,
                        "X-RateLimit-Remaining": 0, "X-RateLimit-Reset": int(st.rate["until"])})

    # ---- control ----

    def _control(self, path, query, raw):
        st = self.state
        body = json.loads(raw) if raw else {}
        with st.lock:
            if path == "/_fake/builds" and self.command == "POST":
                return 200, self._build_new(body)
            if path == "/_fake/push" and self.command == "POST":
                return 200, self._push_delivery(body)
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
                    if body.get("token") in (None, tok):
                        t["expired"] = True
                        n += 1
                return 200, {"expired": n}
            if path == "/_fake/ratelimit":
                if int(body.get("remaining", 0)) > 0:
                    st.rate = None
                else:
                    st.rate = {"until": time.time() + float(body.get("reset_in", 60))}
                return 200, {"limited": st.rate is not None}
            if path == "/_fake/state":
                if self.command == "POST":
                    return 200, self._seed(body)
                return 200, self._dump()
            if path == "/_fake/shutdown":
                st.stop.set()
                threading.Thread(target=self.server.shutdown, daemon=True).start()
                return 200, {"ok": True}
        return 404, {"message": "no such control endpoint"}

    def _dump(self):
        st = self.state
        return {
            "projects": {p["name"]: {"id": p["id"], "repos": sorted(r["name"] for r in
                                                                     p["repos"].values())}
                         for p in st.projects.values()},
            "tokens": {k: v["name"] for k, v in st.tokens.items()},
            "workitems": [dict(self._wi_json(w), comments=[self._comment_json(w, c, all_=True)
                                                           for c in w["comments"]])
                          for w in sorted(st.workitems.values(), key=lambda w: w["id"])],
            "prs": [dict(self._pr_json(p), threads=[self._thread_json(t, all_=True)
                                                    for t in p["threads"]])
                    for p in sorted(st.prs.values(), key=lambda p: p["pullRequestId"])],
            "config": st.config,
        }

    def _seed(self, body):
        st = self.state
        if body.get("reset"):
            failures = st.failures
            st.reset()
            st.failures = failures
        for k, v in body.get("config", {}).items():
            if k not in st.config:
                raise ValueError("unknown config key " + k)
            st.config[k] = v
        for tok, name in body.get("tokens", {}).items():
            st.tokens[tok] = {"name": name, "expired": False}
        out = {"workitems": [], "prs": []}
        for pname, pspec in body.get("projects", {}).items():
            p = st.project(pname, create=True)
            for rname in pspec.get("repos", []):
                st.repo(p, rname, create=True)
            for w in pspec.get("workitems", []):
                wi = self._wi_new(p, identity(w.get("created_by", "someone@example.com")), {
                    "System.Title": w.get("title", "untitled"),
                    "System.Description": w.get("description", ""),
                    "System.State": w.get("state", "New"),
                    "System.Tags": w.get("tags", ""),
                    "System.AreaPath": w.get("area_path", p["name"]),
                })
                for c in w.get("comments", []):
                    self._comment_new(wi, identity(c.get("by", "someone@example.com")), c["text"])
                out["workitems"].append(wi["id"])
            for spec in pspec.get("prs", []):
                repo = st.repo(p, spec["repo"], create=True)
                pr = self._pr_new(p, repo, identity(spec.get("by", "someone@example.com")), {
                    "sourceRefName": "refs/heads/" + spec["source"],
                    "targetRefName": "refs/heads/" + spec.get("target", "main"),
                    "title": spec.get("title", "a change"),
                    "description": spec.get("description", ""),
                })
                pr["status"] = spec.get("status", "active")
                threads = []
                for t in spec.get("threads", []):
                    ctx = None
                    if t.get("file"):
                        ctx = {"filePath": "/" + t["file"].lstrip("/"),
                               "rightFileStart": {"line": t.get("line", 1), "offset": 1},
                               "rightFileEnd": {"line": t.get("line", 1), "offset": 1}}
                    th = self._thread_new(pr, ctx, t.get("status", "active"))
                    cids = []
                    for c in t.get("comments", []):
                        cm = self._thread_comment_new(th, identity(c.get("by", "someone@example.com")),
                                                      c["content"], c.get("parent", 0))
                        cids.append(cm["id"])
                    threads.append({"id": th["id"], "comments": cids})
                out["prs"].append({"id": pr["pullRequestId"], "threads": threads})
        return out

    # ---- records ----

    def _base(self):
        return "http://%s:%d/%s" % (self.server.server_address[0], self.server.server_address[1],
                                    self.org)

    def _wi_new(self, project, by, fields):
        st = self.state
        wid = st.new_id()
        now = iso()
        f = {"System.Id": wid, "System.TeamProject": project["name"],
             "System.WorkItemType": "Issue", "System.State": "New",
             "System.CreatedBy": by, "System.CreatedDate": now, "System.ChangedBy": by,
             "System.ChangedDate": now, "System.Tags": ""}
        f.update(fields)
        wi = {"id": wid, "rev": 1, "fields": f, "project": project["name"], "comments": []}
        st.workitems[wid] = wi
        return wi

    def _wi_json(self, w):
        fields = {k: v for k, v in w["fields"].items() if v != "" or k != "System.Tags"}
        return {"id": w["id"], "rev": w["rev"], "fields": fields,
                "url": "%s/%s/_apis/wit/workItems/%d" % (self._base_org(), w["project"], w["id"]),
                "_links": {"html": {"href": "%s/%s/_workitems/edit/%d" % (
                    self._base_org(), w["project"], w["id"])}}}

    def _base_org(self):
        return self._base() if hasattr(self, "org") else ""

    def _comment_new(self, wi, by, text):
        st = self.state
        st.next_comment += 1
        now = iso()
        c = {"id": st.next_comment, "workItemId": wi["id"], "version": 1, "text": text,
             "createdBy": by, "createdDate": now, "modifiedBy": by, "modifiedDate": now,
             "isDeleted": False, "reactions": {}, "format": "markdown"}
        wi["comments"].append(c)
        return c

    def _comment_json(self, wi, c, all_=False):
        out = {k: v for k, v in c.items() if k != "reactions"}
        out["renderedText"] = re.sub(r"<!--.*?-->", "", c["text"], flags=re.S)
        out["reactions"] = [{"type": t, "count": len(u), "isCurrentUserEngaged": False}
                            for t, u in sorted(c["reactions"].items()) if u]
        if all_:
            out["reactedBy"] = {t: sorted(u) for t, u in c["reactions"].items()}
        return out

    def _pr_new(self, project, repo, by, spec):
        st = self.state
        pid = st.new_id()
        pr = {"pullRequestId": pid, "codeReviewId": pid, "status": "active",
              "createdBy": by, "creationDate": iso(), "title": spec["title"],
              "description": spec.get("description", ""),
              "sourceRefName": spec["sourceRefName"], "targetRefName": spec["targetRefName"],
              "isDraft": bool(spec.get("isDraft", False)), "mergeStatus": "queued",
              "workItemRefs": list(spec.get("workItemRefs") or []),
              "labels": [], "project": project["name"], "repo": repo["name"],
              "repoId": repo["id"], "threads": []}
        st.prs[pid] = pr
        return pr

    def _pr_json(self, p):
        out = {k: v for k, v in p.items() if k not in ("threads", "project", "repo", "repoId")}
        out["repository"] = {"id": p["repoId"], "name": p["repo"],
                             "project": {"name": p["project"]}}
        out["url"] = "%s/%s/_apis/git/repositories/%s/pullRequests/%d" % (
            self._base_org(), p["project"], p["repoId"], p["pullRequestId"])
        return out

    def _thread_new(self, pr, ctx, status):
        st = self.state
        th = {"id": st.new_id(), "publishedDate": iso(), "lastUpdatedDate": iso(),
              "status": status, "threadContext": ctx, "comments": [], "isDeleted": False,
              "properties": {}}
        pr["threads"].append(th)
        return th

    def _thread_comment_new(self, th, by, content, parent):
        cid = max([c["id"] for c in th["comments"]] + [0]) + 1
        if cid > 500:
            raise ApiError(400, "A thread cannot hold more than 500 comments.")
        now = iso()
        c = {"id": cid, "parentCommentId": int(parent or 0), "author": by, "content": content,
             "publishedDate": now, "lastUpdatedDate": now, "lastContentUpdatedDate": now,
             "commentType": "text", "isDeleted": False, "usersLiked": []}
        th["comments"].append(c)
        return c

    def _thread_json(self, th, all_=False):
        out = dict(th)
        out["comments"] = [dict(c) for c in th["comments"] if all_ or not c["isDeleted"]]
        if out["threadContext"] is None:
            del out["threadContext"]
        return out

    # ---- routing ----

    def _need_version(self, query, preview):
        v = query.get("api-version")
        if not v:
            raise ApiError(400, "No api-version was supplied for the \"%s\" request. The version "
                                "must be supplied either as part of the Accept header (e.g. "
                                "\"application/json; api-version=1.0\") or as a query parameter "
                                "(e.g. \"?api-version=1.0\")." % self.command,
                           type_key="VssVersionNotSpecifiedException")
        if preview and "-preview" not in v:
            raise ApiError(400, "The requested version \"%s\" of the resource is under preview. "
                                "The -preview flag must be supplied in the api-version for such "
                                "requests." % v, type_key="VssInvalidPreviewVersionException")

    def _text(self, body, field, limit=None):
        if not isinstance(body, dict) or not isinstance(body.get(field), str):
            raise ApiError(400, "The request body must have a string '%s'." % field)
        text = body[field]
        limit = limit or self.state.config["max_comment"]
        if len(text.encode("utf-16-le")) // 2 > limit:
            raise ApiError(400, "The %s is %d characters, over the limit of %d." % (
                field, len(text), limit))
        return text

    def _route(self, me, path, query, body):
        st = self.state
        segs = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]
        if len(segs) < 2:
            raise ApiError(404, "The resource cannot be found.")
        self.org = segs[0]
        segs = segs[1:]
        low = [s.lower() for s in segs]
        m = self.command

        if low == ["_apis", "connectiondata"]:
            return 200, {"authenticatedUser": {
                "id": me["id"], "descriptor": me["descriptor"],
                "subjectDescriptor": me["descriptor"], "providerDisplayName": me["displayName"],
                "isActive": True,
                "properties": {"Account": {"$type": "System.String", "$value": me["uniqueName"]}}},
                "authorizedUser": {"id": me["id"], "providerDisplayName": me["displayName"]},
                "instanceId": guid("instance/" + self.org), "locationServiceData": {}}

        project = st.project(segs[0])
        if project is None or len(segs) < 4 or low[1] != "_apis":
            raise ApiError(404, "TF200016: The following project does not exist: %s." % segs[0],
                           type_key="ProjectDoesNotExistWithNameException")
        rest, lrest = segs[2:], low[2:]

        if lrest[:2] == ["wit", "workitems"] and len(rest) >= 3:
            try:
                wid = int(rest[2])
            except ValueError:
                raise ApiError(400, "Invalid work item id")
            wi = st.workitems.get(wid)
            if wi is None or wi["project"].lower() != project["name"].lower():
                raise ApiError(404, "TF401232: Work item %d does not exist, or you do not have "
                                    "permissions to read it." % wid,
                               type_key="WorkItemUnauthorizedAccessException")
            return self._workitem(me, project, wi, rest[3:], query, body)

        if lrest[:2] == ["build", "builds"]:
            self._need_version(query, False)
            return self._builds(project, rest[2:], query)

        if lrest[:2] == ["git", "repositories"] and len(rest) >= 4 and \
                lrest[3] == "pullrequests":
            repo = None
            for r in project["repos"].values():
                if r["name"].lower() == rest[2].lower() or r["id"] == rest[2].lower():
                    repo = r
            if repo is None:
                raise ApiError(404, "TF401019: The Git repository with name or identifier %s "
                                    "does not exist or you do not have permissions for the "
                                    "operation you are attempting." % rest[2],
                               type_key="GitRepositoryNotFoundException")
            return self._pulls(me, project, repo, rest[4:], query, body)
        raise ApiError(404, "The resource cannot be found.")

    def _build_new(self, body):
        """POST /_fake/builds (under st.lock)."""
        st = self.state
        project = st.project(body["project"], create=True)
        repo = st.repo(project, body["repo"], create=True)
        bid = st.new_id()
        name = body.get("definition", "CI")
        log = body.get("log", "")
        b = {"id": bid, "buildNumber": "%s_%d" % (name, bid),
             "status": body.get("status", "completed"), "result": body.get("result"),
             "definition": {"id": int(hashlib.sha1(name.encode()).hexdigest()[:6], 16),
                            "name": name},
             "project": {"id": project["id"], "name": project["name"]},
             "repository": {"id": repo["id"], "name": repo["name"], "type": "TfsGit"},
             "sourceBranch": "refs/heads/" + body["branch"], "sourceVersion": body["sha"],
             "queueTime": iso(), "_task": body.get("task", "Run tests"),
             "_lines": log.splitlines()}
        if body.get("pr"):
            b["sourceBranch"] = "refs/pull/%d/merge" % int(body["pr"])
            b["sourceVersion"] = hashlib.sha1(("merge" + body["sha"]).encode()).hexdigest()
            b["triggerInfo"] = {"pr.number": str(body["pr"]), "pr.sourceSha": body["sha"],
                                "pr.sourceBranch": "refs/heads/" + body["branch"]}
        st.builds[bid] = b
        delivery = {"subscriptionId": guid("sub"), "notificationId": bid,
                    "id": str(guid("build/%d/%f" % (bid, time.time()))),
                    "eventType": "build.complete", "publisherId": "tfs",
                    "message": {"text": "Build %s %s" % (b["buildNumber"], b["result"])},
                    "resource": self._build_json(b), "resourceVersion": "2.0",
                    "createdDate": iso()}
        return {"id": bid, "delivery": delivery}

    def _push_delivery(self, body):
        """POST /_fake/push (under st.lock): a git.push delivery, resourceVersion 1.0."""
        st = self.state
        project = st.project(body["project"], create=True)
        repo = st.repo(project, body["repo"], create=True)
        refs = body.get("refs") or [{"branch": body["branch"], "new": body["new"],
                                     "old": body.get("old")}]
        by = identity(body.get("by", "someone@example.com"))
        push_id = st.new_id()
        updates = [{"name": "refs/heads/" + r["branch"], "oldObjectId": r.get("old") or "0" * 40,
                    "newObjectId": r["new"]} for r in refs]
        names = ", ".join(r["branch"] for r in refs)
        remote = "%s/%s/_git/%s" % (self._base_org(), project["name"], repo["name"])
        return {"delivery": {
            "subscriptionId": guid("sub"), "notificationId": push_id,
            "id": str(guid("push/%d/%f" % (push_id, time.time()))),
            "eventType": "git.push", "publisherId": "tfs",
            "message": {"text": "%s pushed updates to %s:%s." % (
                by["displayName"], repo["name"], names)},
            "resource": {
                "commits": [{"commitId": r["new"], "comment": "a change"} for r in refs],
                "refUpdates": updates,
                "repository": {"id": repo["id"], "name": repo["name"],
                               "url": "%s/%s/_apis/git/repositories/%s" % (
                                   self._base_org(), project["name"], repo["id"]),
                               "project": {"id": project["id"], "name": project["name"],
                                           "state": "wellFormed"},
                               "defaultBranch": "refs/heads/main", "remoteUrl": remote},
                "pushedBy": by, "pushId": push_id, "date": iso()},
            "resourceVersion": "1.0", "createdDate": iso()}}

    def _build_json(self, b):
        o = {k: v for k, v in b.items() if not k.startswith("_")}
        o["_links"] = {"web": {"href": "%s/%s/_build/results?buildId=%d" % (
            self._base_org(), b["project"]["name"], b["id"])}}
        return o

    def _builds(self, project, rest, query):
        """The build endpoints below {project}/_apis/build/builds."""
        st = self.state
        if not rest:
            ref = query.get("branchName")
            items = [b for b in st.builds.values()
                     if b["project"]["name"].lower() == project["name"].lower()
                     and (not ref or b["sourceBranch"] == ref)]
            items.sort(key=lambda b: -b["id"])
            items = items[:int(query.get("$top", 1000))]
            return 200, {"count": len(items), "value": [self._build_json(b) for b in items]}
        try:
            b = st.builds[int(rest[0])]
        except (ValueError, KeyError):
            raise ApiError(404, "The requested build %s could not be found." % rest[0],
                           type_key="BuildNotFoundException")
        failed = b["result"] == "failed"
        if rest[1:] == ["timeline"]:
            recs = [{"id": guid("rec1/%d" % b["id"]), "type": "Task", "name": "Checkout",
                     "state": "completed", "result": "succeeded", "log": {"id": 1}},
                    {"id": guid("rec2/%d" % b["id"]), "type": "Task", "name": b["_task"],
                     "state": "completed", "result": "failed" if failed else "succeeded",
                     "log": {"id": 2}},
                    {"id": guid("rec3/%d" % b["id"]), "type": "Job", "name": "Job",
                     "state": "completed", "result": b["result"], "log": {"id": 3}}]
            return 200, {"id": guid("timeline/%d" % b["id"]), "records": recs}
        logs = {1: ["Syncing repository"], 2: b["_lines"], 3: ["Job done"]}
        if rest[1:] == ["logs"]:
            return 200, {"count": 3, "value": [{"id": k, "lineCount": len(v)}
                                               for k, v in logs.items()]}
        if len(rest) == 3 and rest[1] == "logs" and rest[2].isdigit() and int(rest[2]) in logs:
            lines = logs[int(rest[2])]
            start = int(query.get("startLine", 0) or 0)
            end = int(query.get("endLine", len(lines)) or len(lines))
            part = lines[start:end]
            return 200, {"count": len(part), "value": part}
        raise ApiError(404, "The resource cannot be found.")

    def _workitem(self, me, project, wi, rest, query, body):
        st = self.state
        m = self.command
        low = [s.lower() for s in rest]
        if not rest:
            self._need_version(query, False)
            if m == "GET":
                return 200, self._wi_json(wi)
            if m == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/json-patch+json":
                    raise ApiError(415, "Work item updates take application/json-patch+json.")
                if not isinstance(body, list):
                    raise ApiError(400, "You must pass a valid patch document in the body of "
                                        "the request.")
                new_fields = dict(wi["fields"])
                for op in body:
                    p = op.get("path", "")
                    if op.get("op") == "test":
                        if p == "/rev" and op.get("value") != wi["rev"]:
                            raise ApiError(412, "TF26071: This work item has been changed by "
                                                "someone else since you opened it.",
                                           type_key="WorkItemRevisionMismatchException")
                    elif op.get("op") in ("add", "replace") and p.startswith("/fields/"):
                        new_fields[p[len("/fields/"):]] = op.get("value")
                    elif op.get("op") == "remove" and p.startswith("/fields/"):
                        new_fields.pop(p[len("/fields/"):], None)
                    else:
                        raise ApiError(400, "Unsupported patch operation %s %s" % (
                            op.get("op"), p))
                wi["fields"] = new_fields
                wi["fields"]["System.ChangedBy"] = me
                wi["fields"]["System.ChangedDate"] = iso()
                wi["rev"] += 1
                return 200, self._wi_json(wi)
            raise ApiError(405, "Method not allowed")
        if low[0] != "comments":
            raise ApiError(404, "The resource cannot be found.")
        if len(rest) == 1:
            self._need_version(query, True)
            if m == "POST":
                text = self._text(body, "text")
                c = self._comment_new(wi, me, text)
                c["format"] = query.get("format", "html")
                return 200, self._comment_json(wi, c)
            if m == "GET":
                live = [c for c in wi["comments"]
                        if not c["isDeleted"] or query.get("includeDeleted") == "true"]
                if query.get("order") == "desc":
                    live = live[::-1]
                top = min(int(query.get("$top", st.config["page_size"])), st.config["page_size"])
                start = int(query.get("continuationToken") or 0)
                page = live[start:start + top]
                token = str(start + top) if start + top < len(live) else None
                out = {"totalCount": len([c for c in wi["comments"] if not c["isDeleted"]]),
                       "count": len(page),
                       "comments": [self._comment_json(wi, c) for c in page]}
                if token:
                    out["continuationToken"] = token
                    out["nextPage"] = "%s/%s/_apis/wit/workItems/%d/comments?continuationToken=%s" % (
                        self._base(), project["name"], wi["id"], token)
                return 200, out
            raise ApiError(405, "Method not allowed")
        try:
            cid = int(rest[1])
        except ValueError:
            raise ApiError(400, "Invalid comment id")
        c = next((c for c in wi["comments"] if c["id"] == cid and not c["isDeleted"]), None)
        if c is None:
            raise ApiError(404, "Comment %d of work item %d does not exist." % (cid, wi["id"]),
                           type_key="CommentNotFoundException")
        if len(rest) == 2:
            self._need_version(query, True)
            if m == "GET":
                return 200, self._comment_json(wi, c)
            if m == "PATCH":
                if c["createdBy"]["id"] != me["id"]:
                    raise ApiError(403, "Only the author can edit a comment.")
                c["text"] = self._text(body, "text")
                c["version"] += 1
                c["modifiedBy"] = me
                c["modifiedDate"] = iso(time.time() + 0.001)
                return 200, self._comment_json(wi, c)
            if m == "DELETE":
                if c["createdBy"]["id"] != me["id"]:
                    raise ApiError(403, "Only the author can delete a comment.")
                c["isDeleted"] = True
                return 204, None
            raise ApiError(405, "Method not allowed")
        if low[2] == "reactions" and len(rest) == 4:
            self._need_version(query, True)
            rtype = low[3]
            if rtype not in ("like", "dislike", "heart", "hooray", "smile", "confused"):
                raise ApiError(400, "Unknown reaction type %s" % rest[3])
            users = c["reactions"].setdefault(rtype, [])
            if m == "PUT":
                if me["uniqueName"] not in users:
                    users.append(me["uniqueName"])
            elif m == "DELETE":
                if me["uniqueName"] in users:
                    users.remove(me["uniqueName"])
            else:
                raise ApiError(405, "Method not allowed")
            return 200, {"commentId": c["id"], "type": rtype, "count": len(users),
                         "isCurrentUserEngaged": me["uniqueName"] in users}
        raise ApiError(404, "The resource cannot be found.")

    def _pulls(self, me, project, repo, rest, query, body):
        st = self.state
        m = self.command
        self._need_version(query, False)
        mine = [p for p in st.prs.values() if p["repoId"] == repo["id"]]
        if not rest:
            if m == "GET":
                src = query.get("searchCriteria.sourceRefName")
                status = query.get("searchCriteria.status", "active")
                out = [p for p in sorted(mine, key=lambda p: -p["pullRequestId"])
                       if (not src or p["sourceRefName"] == src) and
                       (status == "all" or p["status"] == status)]
                top = int(query.get("$top", 101))
                out = out[:top]
                return 200, {"value": [self._pr_json(p) for p in out], "count": len(out)}
            if m == "POST":
                if not isinstance(body, dict):
                    raise ApiError(400, "A pull request needs a body.")
                for k in ("sourceRefName", "targetRefName", "title"):
                    if not isinstance(body.get(k), str) or not body[k]:
                        raise ApiError(400, "Value cannot be null. Parameter name: %s" % k)
                desc = body.get("description") or ""
                if len(desc.encode("utf-16-le")) // 2 > PR_DESCRIPTION_MAX:
                    raise ApiError(400, "TF401384: The description of a pull request is limited "
                                        "to %d characters." % PR_DESCRIPTION_MAX)
                for p in mine:
                    if p["status"] == "active" and p["sourceRefName"] == body["sourceRefName"] \
                            and p["targetRefName"] == body["targetRefName"]:
                        raise ApiError(409, "TF401179: An active pull request for the source "
                                            "and target branch already exists.",
                                       type_key="GitPullRequestExistsException")
                refs = body.get("workItemRefs") or []
                for r in refs:
                    if int(r.get("id", 0)) not in st.workitems:
                        raise ApiError(400, "Work item %s does not exist." % r.get("id"))
                pr = self._pr_new(project, repo, me, body)
                pr["workItemRefs"] = [{"id": str(r["id"]), "url": ""} for r in refs]
                return 201, self._pr_json(pr)
            raise ApiError(405, "Method not allowed")
        try:
            pid = int(rest[0])
        except ValueError:
            raise ApiError(400, "Invalid pull request id")
        pr = st.prs.get(pid)
        if pr is None or pr["repoId"] != repo["id"]:
            raise ApiError(404, "TF401180: The requested pull request was not found.",
                           type_key="GitPullRequestNotFoundException")
        low = [s.lower() for s in rest]
        if len(rest) == 1:
            if m == "GET":
                return 200, self._pr_json(pr)
            if m == "PATCH":
                if not isinstance(body, dict):
                    raise ApiError(400, "A pull request update needs a body.")
                if "description" in body:
                    d = body["description"] or ""
                    if len(d.encode("utf-16-le")) // 2 > PR_DESCRIPTION_MAX:
                        raise ApiError(400, "TF401384: The description of a pull request is "
                                            "limited to %d characters." % PR_DESCRIPTION_MAX)
                    pr["description"] = d
                if "title" in body:
                    pr["title"] = body["title"]
                if "status" in body:
                    pr["status"] = body["status"]
                return 200, self._pr_json(pr)
            raise ApiError(405, "Method not allowed")
        if low[1] == "labels":
            return self._pr_labels(me, pr, rest[2:], body)
        if low[1] != "threads":
            raise ApiError(404, "The resource cannot be found.")
        if len(rest) == 2:
            if m == "GET":
                live = [self._thread_json(t) for t in pr["threads"] if not t["isDeleted"]]
                return 200, {"value": live, "count": len(live)}
            if m == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("comments"), list) or \
                        not body["comments"]:
                    raise ApiError(400, "A thread needs at least one comment.")
                th = self._thread_new(pr, body.get("threadContext"), body.get("status", "active"))
                for c in body["comments"]:
                    self._thread_comment_new(th, me, self._text(c, "content"),
                                             c.get("parentCommentId", 0))
                return 200, self._thread_json(th)
            raise ApiError(405, "Method not allowed")
        try:
            tid = int(rest[2])
        except ValueError:
            raise ApiError(400, "Invalid thread id")
        th = next((t for t in pr["threads"] if t["id"] == tid and not t["isDeleted"]), None)
        if th is None:
            raise ApiError(404, "Thread %d does not exist." % tid)
        if len(rest) == 3:
            if m == "GET":
                return 200, self._thread_json(th)
            raise ApiError(405, "Method not allowed")
        if low[3] != "comments":
            raise ApiError(404, "The resource cannot be found.")
        if len(rest) == 4:
            if m == "GET":
                live = [c for c in th["comments"] if not c["isDeleted"]]
                return 200, {"value": live, "count": len(live)}
            if m == "POST":
                parent = int((body or {}).get("parentCommentId") or 0)
                if parent and not any(c["id"] == parent for c in th["comments"]):
                    raise ApiError(400, "Parent comment %d does not exist." % parent)
                return 200, self._thread_comment_new(th, me, self._text(body, "content"), parent)
            raise ApiError(405, "Method not allowed")
        try:
            cid = int(rest[4])
        except ValueError:
            raise ApiError(400, "Invalid comment id")
        c = next((c for c in th["comments"] if c["id"] == cid and not c["isDeleted"]), None)
        if c is None:
            raise ApiError(404, "Comment %d does not exist in thread %d." % (cid, tid))
        if len(rest) == 5:
            if m == "GET":
                return 200, c
            if m == "PATCH":
                if c["author"]["id"] != me["id"]:
                    raise ApiError(403, "Only the author can edit a comment.")
                c["content"] = self._text(body, "content")
                c["lastContentUpdatedDate"] = c["lastUpdatedDate"] = iso(time.time() + 0.001)
                return 200, c
            if m == "DELETE":
                if c["author"]["id"] != me["id"]:
                    raise ApiError(403, "Only the author can delete a comment.")
                c["isDeleted"] = True
                return 200, None
            raise ApiError(405, "Method not allowed")
        if low[5] == "likes" and len(rest) == 6:
            if m == "POST":
                if me["uniqueName"] not in c["usersLiked"]:
                    c["usersLiked"].append(me["uniqueName"])
                return 204, None
            if m == "DELETE":
                if me["uniqueName"] in c["usersLiked"]:
                    c["usersLiked"].remove(me["uniqueName"])
                return 204, None
            if m == "GET":
                return 200, {"value": [identity(u) for u in c["usersLiked"]]}
        raise ApiError(404, "The resource cannot be found.")


    def _pr_labels(self, me, pr, rest, body):
        m = self.command
        if not rest:
            if m == "GET":
                return 200, {"value": pr["labels"], "count": len(pr["labels"])}
            if m == "POST":
                name = (body or {}).get("name")
                if not isinstance(name, str) or not name.strip():
                    raise ApiError(400, "A label needs a name.")
                for lab in pr["labels"]:
                    if lab["name"].lower() == name.lower():
                        return 200, lab
                lab = {"id": guid("label/" + name.lower()), "name": name, "active": True}
                pr["labels"].append(lab)
                return 200, lab
            raise ApiError(405, "Method not allowed")
        if len(rest) == 1 and m == "DELETE":
            for lab in pr["labels"]:
                if lab["name"].lower() == rest[0].lower() or lab["id"] == rest[0]:
                    pr["labels"].remove(lab)
                    return 204, None
            raise ApiError(404, "The label %s is not on this pull request." % rest[0])
        raise ApiError(404, "The resource cannot be found.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    Handler.state = State()
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
