#!/usr/bin/env python3
"""test_real_agents.py - the real Claude Code, Codex and opencode CLIs, pinned in
tests/agents/package.json, run by the farm end to end: `farm serve` against
the fake GitHub and a real bare remote, the CLI in the real sandbox with
`network: none`, and tests/fakes/fake_model.py behind the farm's model
gateway as their model API (Anthropic Messages for claude and opencode,
OpenAI Responses for codex, all streamed). The fake holds the only key it accepts, the real
one; the CLI gets the gateway's URL and a per-run token.

The fake scripts one tool call and then a final answer. The tool call is a
shell command (Claude's Bash, Codex's exec_command, opencode's bash): PROBE below, which
searches the agent's world for the real key (the environment, every
/proc/*/environ and cmdline, HOME, /tmp, /home, /work, /farm, /run) and
writes what it found into PROBE.txt. So for each CLI (found on the farm's
PATH as node_modules/.bin/<cli>, a link into its package, or named by
agent.path): the PR carries exactly
PROBE.txt saying "probe: clean"; the fake saw the real key on every call;
each call is a model_call event with tokens and cost. test_probe_can_fail
runs PROBE on this host with the key planted, to show it finds it.

The CLIs come from `npm ci` in tests/agents (scripts/install-deps --test).
Without them the test is skipped (exit 77) and says so; with CI=true it
fails instead, since CI reaches npm.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402
from test_gateway_run import FakeModel, auth_of  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
AGENTS = os.path.normpath(os.path.join(HERE, "..", "agents"))
BIN = os.path.join(AGENTS, "node_modules", ".bin")
KEY_PREFIX = "sk-farmtest-REAL-"
FINAL = ("review", "failed", "done", "cancelled")

# The probe, as one bash command. The key's prefix is put together inside
# grep's pattern file (a process substitution), so it is in no process's
# argv for the search to find itself; a hit names where.
PROBE = r"""has() { grep -qaF -f <(printf '%s%s\n' sk-farmtest- REAL-) "$@" 2>/dev/null; }
hits=""
env | has && hits="$hits env"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do has "$f" && hits="$hits $f"; done
for d in "$HOME" ${PROBE_ROOTS:-/tmp /home /work /farm /run}; do
  [ -d "$d" ] || continue
  for f in $(grep -rlaF --exclude-dir=.git -f <(printf '%s%s\n' sk-farmtest- REAL-) "$d" 2>/dev/null | head -20); do
    hits="$hits $f"
  done
done
printf 'probe: %s\n' "${hits:-clean}" > PROBE.txt"""

CLAUDE_MODEL = "claude-sonnet-4-5"
CODEX_MODEL = "gpt-5.5"  # a model Codex knows (docs/agents.md)
PRICES = {m: {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}
          for m in (CLAUDE_MODEL, CODEX_MODEL)}


def clis_present():
    return all(os.access(os.path.join(BIN, n), os.X_OK) for n in ("claude", "codex", "opencode"))


def require_clis():
    if clis_present():
        return
    why = ("the real agent CLIs are not installed in %s (run scripts/install-deps --test, "
           "or `npm ci` there)" % AGENTS)
    if os.environ.get("CI") == "true":
        print("FAIL: CI=true but " + why, flush=True)
        sys.exit(1)
    print("SKIP: " + why, flush=True)
    sys.exit(77)


def run_probe(env, cwd):
    subprocess.run(["bash", "-c", PROBE], env=env, cwd=cwd, check=True, timeout=60)
    with open(os.path.join(cwd, "PROBE.txt")) as f:
        return f.read()


def test_probe_can_fail():
    """The probe finds a key in the environment and in a file under HOME."""
    key = KEY_PREFIX + secrets.token_hex(8)
    tmp = tempfile.mkdtemp(prefix="farm-probe-")
    try:
        home = os.path.join(tmp, "home")
        os.mkdir(home)
        with open(os.path.join(home, ".leaked"), "w") as f:
            f.write("token=" + key + "\n")
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "PROBE_ROOTS": home,
               "LEAKED_KEY": key}
        got = run_probe(env, tmp)
        assert " env" in got and os.path.join(home, ".leaked") in got, got
        assert "/proc/" in got, got  # bash's own environ holds LEAKED_KEY
        # and with nothing planted it is clean
        os.remove(os.path.join(home, ".leaked"))
        del env["LEAKED_KEY"]
        assert run_probe(env, tmp) == "probe: clean\n", run_probe(env, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def branch_files(bare, branch):
    out = repos.git("diff", "--name-only", "main", branch, cwd=bare)
    return sorted(x for x in out.split("\n") if x)


def run_real(preset, model, agent_extra, farm_path=None, anthropic_tool="Bash", side_models=()):
    key = KEY_PREFIX + secrets.token_hex(16)
    fake = FakeModel(key)
    try:
        fake.ctl("POST", "/_fake/config", {
            "reset": True, "script": True,
            "tool": {"anthropic": {"name": anthropic_tool,
                                   "input": {"command": PROBE, "description": "probe"}},
                     "openai": {"name": "exec_command", "arguments": {"cmd": PROBE}}},
            "final_text": "Done: PROBE.txt says what the probe found."})
        agent = {"preset": preset, "api_key": "env:FARM_TEST_MODEL_KEY", "api_url": fake.url,
                 "model": model, "prices": PRICES}
        agent.update(agent_extra)
        w = farmtest.GitHubWorld(
            repo_extra={"test": "true"},
            extra={"agent": agent,
                   "sandbox": {"memory_mb": 2048, "wall_timeout_s": 180, "network": "none"}})
        w.farm.env["FARM_TEST_MODEL_KEY"] = key
        if farm_path:
            w.farm.env["PATH"] = farm_path + ":" + w.farm.env.get("PATH", "/usr/bin:/bin")
        with w:
            n = w.open_issue("Run the probe", "Run the probe and write PROBE.txt.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, timeout=240, what="a PR")
            sid = s["id"]
            events = farmtest.session_events(w.farm, sid)
            tail = [(k, b) for _, _, k, b in events][-25:]
            assert s["state"] == "review" and not s["pr_draft"], (s, tail)

            # the PR carries exactly the scripted change, and the probe found nothing
            assert branch_files(w.bare, s["branch"]) == ["PROBE.txt"], \
                branch_files(w.bare, s["branch"])
            got = repos.git("show", "%s:PROBE.txt" % s["branch"], cwd=w.bare)
            assert got == "probe: clean\n", got

            # the fake saw the real key on every call, and every call was the CLI's
            reqs = [r for r in fake.requests() if r["path"].startswith("/v1/")]
            assert len(reqs) >= 2, reqs
            for r in reqs:
                assert auth_of(r) == key, (r["path"], r["headers"])
            # the key is in no event and no log line
            assert key not in json.dumps([b for _, _, _, b in events])
            assert key not in "\n".join(w.farm.log_lines)

            # each call is a model_call event with tokens and cost
            calls = [b for _, _, k, b in events if k == "model_call"]
            assert len(calls) == len(reqs), (calls, len(reqs))
            assert sum(c["model"] == model for c in calls) >= 2, calls
            for c in calls:
                assert c["model"] == model or c["model"] in side_models, c
                assert c["outcome"] == "ok" and c["status"] == 200, c
                assert c["input_tokens"] > 0 and c["output_tokens"] == 42, c
                assert c["cost_usd"] > 0, c
            s = w.session(n)
            assert abs(s["cost"] - sum(c["cost_usd"] for c in calls)) < 1e-9, s
            return s, events, reqs
    finally:
        fake.stop()


def test_real_claude():
    """Claude Code found through the farm's PATH (node_modules/.bin/claude, a
    link into the package), outside /usr and /opt."""
    s, events, reqs = run_real("claude", CLAUDE_MODEL, {}, farm_path=BIN)
    assert all(r["path"] == "/v1/messages" for r in reqs), [r["path"] for r in reqs]
    kinds = {k for _, _, k, _ in events}
    assert "tool_call" in kinds, kinds  # its stream-json transcript was read


def test_real_codex():
    """Codex named by agent.path (node_modules/.bin/codex, a node script)."""
    s, events, reqs = run_real("codex", CODEX_MODEL, {"path": os.path.join(BIN, "codex")})
    assert all(r["path"] == "/v1/responses" for r in reqs), [r["path"] for r in reqs]
    kinds = {k for _, _, k, _ in events}
    assert "command" in kinds, kinds


def test_real_opencode():
    """opencode through its per-run config in HOME (the anthropic provider's
    baseURL at the gateway); it also asks for a title on a small model. Its
    JSON output is read into the transcript events."""
    s, events, reqs = run_real("opencode", CLAUDE_MODEL, {}, farm_path=BIN, anthropic_tool="bash",
                               side_models=("claude-haiku-4-5-20251001",))
    assert all(r["path"] == "/v1/messages" for r in reqs), [r["path"] for r in reqs]
    # its `run --format json` transcript was read: the scripted bash call
    # (PROBE) is a tool_call, its result and the command with its exit
    calls = [b for _, _, k, b in events if k == "tool_call"]
    assert [c["tool"] for c in calls] == ["bash"], calls
    assert calls[0]["summary"] == PROBE[:197].replace("\n", " ") + "...", calls  # one line, cut
    cid = calls[0]["id"]
    results = [b for _, _, k, b in events if k == "tool_result"]
    assert results == [dict(id=cid, ok=True, step="agent", round=1)], results
    cmds = [b for _, _, k, b in events if k == "command"]
    assert len(cmds) == 1 and cmds[0]["command"] == PROBE and cmds[0]["exit_code"] == 0, cmds
    said = [b["text"] for _, _, k, b in events if k == "agent_message"]
    assert said == ["Done: PROBE.txt says what the probe found."], said


if __name__ == "__main__":
    require_clis()
    farmtest.run([test_probe_can_fail, test_real_claude, test_real_codex, test_real_opencode])
