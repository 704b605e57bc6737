#!/usr/bin/env python3
"""test_gateway_run.py - a run's agent reaches its model API through the
farm's model gateway (docs/gateway.md), end to end: `farm serve` against the
fake GitHub, a real bare remote, tests/fakes/fake_model.py as the provider
(it accepts only the real key), and the `command` preset running a small
Python agent (below) in the real sandbox with `network: none`.

The agent calls $FARM_MODEL_BASE_URL/v1/messages with $FARM_MODEL_TOKEN, does
the one tool call the fake scripts (write a file), sends the tool's result
back, and writes its summary. Before that it probes its world for the real
key's prefix: its environment, every /proc/*/environ and cmdline it can
read, and every file it can read under HOME, /tmp, /farm, /work and /run.

Cases: the PR carries the file; the fake saw the real key on every call and
never the token; the probe found nothing; each call is a model_call event
with tokens and cost (agent.prices), summed into the session's cost. A
session budget of $0.001 lets the first call through (nothing spent yet) and
refuses the second: the work is pushed as a draft PR whose comment names the
budget and says how to go on.
"""
import json
import os
import secrets
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_MODEL = os.path.join(HERE, "..", "fakes", "fake_model.py")
KEY_PREFIX = "sk-farmtest-REAL-"
MODEL = "farm-test-model"
# USD per million tokens; the fake reports 120 in, 42 out, 3000 cache reads, 500 cache writes
PRICES = {MODEL: {"input": 1, "output": 10, "cache_read": 0.1, "cache_write": 1.25}}
CALL_COST = (120 * 1 + 42 * 10 + 3000 * 0.1 + 500 * 1.25) / 1e6
FINAL = ("review", "failed", "done", "cancelled")

AGENT = r'''
import json, os, sys, urllib.request, urllib.error

PREFIX = "sk-farmtest-" + "REAL-"

def probe():
    hits, scanned = [], 0
    for k, v in os.environ.items():
        if PREFIX in k or PREFIX in v:
            hits.append("env:" + k)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for name in ("environ", "cmdline"):
            try:
                with open("/proc/%s/%s" % (pid, name), "rb") as f:
                    if PREFIX.encode() in f.read():
                        hits.append("/proc/%s/%s" % (pid, name))
            except OSError:
                pass
    roots = [os.environ.get("HOME", "/tmp"), "/tmp", "/farm", "/work", "/run", "/home"]
    for root in roots:
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x != ".git" or d != "/work"]
            for fn in files:
                p = os.path.join(d, fn)
                try:
                    if os.path.islink(p) or not os.path.isfile(p):
                        continue
                    with open(p, "rb") as f:
                        data = f.read(8 << 20)
                except OSError:
                    continue
                scanned += 1
                if PREFIX.encode() in data:
                    hits.append(p)
    print("PROBE hits=%d scanned=%d %s" % (len(hits), scanned, json.dumps(hits)), flush=True)

def call(messages):
    body = json.dumps({"model": "%MODEL%", "max_tokens": 1024, "stream": False,
                       "messages": messages}).encode()
    req = urllib.request.Request(os.environ["FARM_MODEL_BASE_URL"] + "/v1/messages", data=body,
                                 headers={"x-api-key": os.environ["FARM_MODEL_TOKEN"],
                                          "anthropic-version": "2023-06-01",
                                          "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        print("MODEL ERROR %d %s" % (e.code, e.read().decode(errors="replace")), flush=True)
        sys.exit(3)

probe()
print("BASE", os.environ.get("FARM_MODEL_BASE_URL"), flush=True)
messages = [{"role": "user", "content": open(os.environ["FARM_PROMPT_FILE"]).read()}]
for turn in range(4):
    ans = call(messages)
    uses = [c for c in ans["content"] if c.get("type") == "tool_use"]
    if not uses:
        text = "".join(c.get("text", "") for c in ans["content"])
        with open(os.environ["FARM_SUMMARY_FILE"], "w") as f:
            f.write(text + "\n")
        print("FINAL", text, flush=True)
        break
    messages.append({"role": "assistant", "content": ans["content"]})
    results = []
    for u in uses:
        path = u["input"]["file_path"]
        with open(path, "w") as f:
            f.write(u["input"]["content"])
        print("WROTE", path, flush=True)
        results.append({"type": "tool_result", "tool_use_id": u["id"], "content": "ok"})
    messages.append({"role": "user", "content": results})
'''.replace("%MODEL%", MODEL)


class FakeModel:
    def __init__(self, key):
        self.proc = subprocess.Popen([sys.executable, FAKE_MODEL, "--key", key],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline().strip())
        self.url = "http://127.0.0.1:%d" % self.port

    def ctl(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def requests(self):
        r = self.ctl("GET", "/_fake/requests")
        return r["requests"] if isinstance(r, dict) else r

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def world(key, fake, budgets=None, network="none"):
    w = farmtest.GitHubWorld(
        repo_extra={"test": "true"},
        budgets=budgets,
        extra={"agent": {"command": ["python3", "-c", AGENT],
                         "api_key": "env:FARM_TEST_MODEL_KEY",
                         "api_key_env": "ANTHROPIC_API_KEY",
                         "api_url": fake.url,
                         "prices": PRICES},
               "sandbox": {"memory_mb": 512, "wall_timeout_s": 60, "network": network}})
    w.farm.env["FARM_TEST_MODEL_KEY"] = key
    return w


def output_text(w, sid):
    out = []
    for _, _, _, b in farmtest.session_events(w.farm, sid, "output"):
        for line in b.get("lines", []) if isinstance(b.get("lines"), list) else [b.get("line", "")]:
            out.append(line if isinstance(line, str) else json.dumps(line))
        if "text" in b:
            out.append(b["text"])
    return "\n".join(out)


def all_events_text(w, sid):
    return "\n".join(json.dumps(b) for _, _, _, b in farmtest.session_events(w.farm, sid))


def auth_of(req):
    h = req.get("headers", {})
    return h.get("x-api-key") or (h.get("authorization") or "").replace("Bearer ", "")


def setup_fake(fake):
    fake.ctl("POST", "/_fake/config", {"reset": True, "script": True,
                                        "file_path": "MODEL.txt",  # the agent runs in its worktree
                                        "content": "written through the gateway\n"})


def test_gateway_run_key_stays_outside():
    key = KEY_PREFIX + secrets.token_hex(16)
    fake = FakeModel(key)
    try:
        setup_fake(fake)
        with world(key, fake) as w:
            n = w.open_issue("Write the model file", "Please write MODEL.txt.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
            sid = s["id"]
            events = farmtest.session_events(w.farm, sid)
            assert s["state"] == "review", (s, events[-12:])
            assert s["pr_number"] > 0, s
            # the PR's branch carries the file the scripted tool call wrote
            got = repos.git("show", "%s:MODEL.txt" % s["branch"], cwd=w.bare)
            assert got == "written through the gateway\n", got

            # the fake saw the real key on every call, never the token
            reqs = [r for r in fake.requests() if r["path"].startswith("/v1/")]
            assert len(reqs) == 2, reqs
            for r in reqs:
                assert auth_of(r) == key, r["headers"]

            # the agent's probe found the key nowhere, and it reached the gateway
            out = output_text(w, sid)
            assert "PROBE hits=0 " in out, out[-3000:]
            scanned = int(out.split("PROBE hits=0 scanned=")[1].split()[0])
            assert scanned >= 1, out[-3000:]  # /farm/prompt.md at least
            assert "BASE http://127.0.0.1:3129" in out, out[-3000:]
            assert key not in all_events_text(w, sid)
            assert key not in "\n".join(w.farm.log_lines)

            # each call is a model_call event with tokens and cost
            calls = [b for _, _, k, b in events if k == "model_call"]
            assert len(calls) == 2, calls
            for c in calls:
                assert c["model"] == MODEL, c
                assert c["outcome"] == "ok" and c["status"] == 200, c
                assert (c["input_tokens"], c["output_tokens"]) == (120, 42), c
                assert (c["cache_read_tokens"], c["cache_write_tokens"]) == (3000, 500), c
                assert abs(c["cost_usd"] - CALL_COST) < 1e-9, c
                assert c["ttfb_ms"] >= 0 and c["total_ms"] >= 0, c
            s = w.session(n)
            assert abs(s["cost"] - 2 * CALL_COST) < 1e-9, s
    finally:
        fake.stop()


def test_gateway_budget_stops_second_call(budget="session_usd"):
    key = KEY_PREFIX + secrets.token_hex(16)
    fake = FakeModel(key)
    try:
        setup_fake(fake)
        with world(key, fake, budgets={budget: 0.001}) as w:
            n = w.open_issue("Write the model file", "Please write MODEL.txt.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a draft PR")
            sid = s["id"]
            events = farmtest.session_events(w.farm, sid)
            assert s["state"] == "review", (s, events[-12:])
            assert s["pr_draft"] == 1, s
            assert "budgets." + budget in (s["pr_draft_reason"] or ""), s

            # one call went through; the second was refused without reaching the fake
            reqs = [r for r in fake.requests() if r["path"].startswith("/v1/")]
            assert len(reqs) == 1, reqs
            assert auth_of(reqs[0]) == key
            calls = [b for _, _, k, b in events if k == "model_call"]
            assert [c["outcome"] for c in calls] == ["ok", "budget"], calls
            assert calls[1]["cost_usd"] == 0, calls

            # the work is on the draft PR
            got = repos.git("show", "%s:MODEL.txt" % s["branch"], cwd=w.bare)
            assert got == "written through the gateway\n", got
            pulls = w.pulls()
            assert pulls and pulls[-1].get("draft"), pulls

            fin = [b for _, _, k, b in events if k == "run_finished"]
            assert fin and fin[-1].get("reason") == "budget", fin

            # the comment names the budget and how to go on
            text = "\n".join(c["body"] for c in w.comments(n))
            text = text.replace("\\_", "_").replace("\\`", "`")  # Markdown escapes
            assert "budgets." + budget in text, text
            assert "/farm retry" in text, text
            assert "tests still fail" not in text, text
    finally:
        fake.stop()


def test_gateway_repo_daily_budget():
    """The same stop from the repository's spend today (the store's sum)."""
    test_gateway_budget_stops_second_call("repo_daily_usd")


def test_gateway_daily_budget():
    test_gateway_budget_stops_second_call("daily_usd")


def test_gateway_run_allowlist_mode():
    """The gateway is relayed beside the egress proxy too, and is no proxy
    destination: the agent reaches it directly on the sandbox's loopback."""
    key = KEY_PREFIX + secrets.token_hex(16)
    fake = FakeModel(key)
    try:
        setup_fake(fake)
        with world(key, fake, network="allowlist") as w:
            n = w.open_issue("Write the model file", "Please write MODEL.txt.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a PR")
            events = farmtest.session_events(w.farm, s["id"])
            assert s["state"] == "review" and not s["pr_draft"], (s, events[-12:])
            calls = [b for _, _, k, b in events if k == "model_call"]
            assert [c["outcome"] for c in calls] == ["ok", "ok"], calls
            assert "PROBE hits=0 " in output_text(w, s["id"])
    finally:
        fake.stop()


if __name__ == "__main__":
    farmtest.run([test_gateway_run_key_stays_outside, test_gateway_budget_stops_second_call,
                  test_gateway_repo_daily_budget, test_gateway_daily_budget,
                  test_gateway_run_allowlist_mode])
