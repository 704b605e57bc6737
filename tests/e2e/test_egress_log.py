#!/usr/bin/env python3
"""test_egress_log.py - the sandbox's egress proxy's decisions in the session
log and on the tracker (docs/sandbox.md, "Network"), end to end: `farm serve`
against the fake GitHub and a real bare remote, `sandbox.network:
allowlist` allowing one local fake server, and the `command` preset running
a small Python agent in the real sandbox.

The agent fetches the allowed server once through the proxy, then tries a
host that is not on the allowlist five times, writes a file and its summary.
Cases: the allowed fetch worked (the fake saw it); the log has one "egress"
allow event, and for the denied host its first occurrence and one repeat
event counting five (not five events); the pull request comment and the
status comment name the denied host and why.
"""
import http.server
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")
DENIED = "blocked.invalid"

AGENT = r'''
import os, sys, urllib.request, urllib.error
# the farm keeps the gateway off the proxy with NO_PROXY=127.0.0.1; this
# agent's allowed server is on 127.0.0.1 behind the proxy, so it goes through
for k in ("NO_PROXY", "no_proxy"):
    os.environ.pop(k, None)
proxy = os.environ["HTTP_PROXY"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
with opener.open("http://127.0.0.1:%PORT%/hello", timeout=20) as r:
    print("ALLOWED", r.status, r.read().decode().strip(), flush=True)
for i in range(5):
    try:
        opener.open("http://%DENIED%/x", timeout=20)
        print("DENIED HOST ANSWERED", flush=True)
    except urllib.error.HTTPError as e:
        print("DENIED", e.code, flush=True)
with open("EGRESS.txt", "w") as f:
    f.write("done\n")
with open(os.environ["FARM_SUMMARY_FILE"], "w") as f:
    f.write("Wrote EGRESS.txt.\n")
'''


class Hello(http.server.BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):
        Hello.hits.append(self.path)
        body = b"hello from the allowed host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_egress_events_and_comment():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    agent = AGENT.replace("%PORT%", str(port)).replace("%DENIED%", DENIED)
    try:
        w = farmtest.GitHubWorld(
            repo_extra={"test": "true"},
            extra={"agent": {"command": ["python3", "-c", agent]},
                   "sandbox": {"memory_mb": 512, "wall_timeout_s": 60, "network": "allowlist",
                               "allow_hosts": ["127.0.0.1:%d" % port]}})
        with w:
            n = w.open_issue("Fetch and write", "Please write EGRESS.txt.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
            sid = s["id"]
            events = farmtest.session_events(w.farm, sid)
            assert s["state"] == "review", (s, events[-12:])
            assert Hello.hits == ["/hello"], Hello.hits

            eg = [b for _, _, k, b in events if k == "egress"]
            allow = [b for b in eg if b["decision"] == "allow"]
            deny = [b for b in eg if b["decision"] == "deny"]
            assert len(allow) == 1, eg
            assert allow[0]["host"] == "127.0.0.1" and allow[0]["port"] == port, allow
            assert allow[0]["step"] == "agent", allow
            # first occurrence, then one event with the count: not five events
            assert len(deny) == 2, eg
            assert all(b["host"] == DENIED and b["port"] == 80 for b in deny), deny
            assert deny[0]["count"] == 1 and not deny[0].get("repeat"), deny
            assert deny[1]["count"] == 5 and deny[1].get("repeat") is True, deny
            assert deny[0]["reason"] == "not on the allowlist", deny

            def pr_comment():
                for c in w.comments(n):
                    if "Pull request opened" in c["body"] and "tried to reach" in c["body"]:
                        return c["body"]
                return None
            body = farmtest.wait_for(pr_comment, timeout=30, what="the PR comment")
            assert "The agent tried to reach `%s:80` (denied: not on the allowlist, 5 times)"\
                % DENIED in body, body
            assert "sandbox.allow\\_hosts" in body or "sandbox.allow_hosts" in body, body

            def status_names_it():
                for c in w.comments(n):
                    if "Network denied" in c["body"] and DENIED in c["body"]:
                        return c["body"]
                return None
            farmtest.wait_for(status_names_it, timeout=30, what="the status comment")
    finally:
        srv.shutdown()


if __name__ == "__main__":
    farmtest.run([test_egress_events_and_comment])
