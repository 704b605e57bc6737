#!/usr/bin/env python3
"""test_budgets_live.py - an admin sees and changes the model budgets of a
running farm (GET/PATCH /api/budgets, `farm budget`), and the next model
call is checked against the change, with no restart; /metrics shows the
model calls' tokens, cost, outcomes and latencies from the store.

The world is test_gateway_run.py's: `farm serve`, the fake GitHub, the fake
model (each call costs CALL_COST) and a small agent that makes two model
calls per run in the real sandbox.

1. budgets.session_usd = $0.001 in the config: the run's first call passes,
   the second is refused; the work goes to a draft PR.
2. The API: viewers read, only admins change, bad amounts are 400s naming
   the field; the spend today is there, in total and for the repository.
3. `farm budget --session-usd 1` raises it live; `/farm retry` runs again and
   both of its calls pass.
4. Lowered live below what the session spent: the next run's first call is
   refused.
5. /metrics: tokens by model and kind, cost, calls by outcome and status,
   the call-duration and time-to-first-byte histograms.
"""
import json
import os
import secrets
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import test_gateway_run as gr  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")


def cli(farm, *args, token=farmtest.ADMIN_TOKEN):
    env = dict(farm.env)
    env.pop("FARM_TOKEN", None)
    if token:
        env["FARM_TOKEN"] = token
    p = subprocess.run([farmtest.FARM_BIN] + list(args) +
                       ["--server", "http://127.0.0.1:%d" % farm.port],
                       capture_output=True, env=env, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def patch(farm, body, token=farmtest.ADMIN_TOKEN):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    status, _, raw = farm.request("PATCH", "/api/budgets", body=data, headers=h)
    return status, (json.loads(raw) if raw else None)


def comment(w, number, body):
    st, c = w.fake.api("POST", "/repos/%s/issues/%d/comments" % (w.repo, number),
                       {"body": body}, token=farmtest.PERSON_PAT)
    assert st == 201, (st, c)


def calls_of(w, sid, run):
    return [b for _, _, k, b in farmtest.session_events(w.farm, sid)
            if k == "model_call" and b.get("run") == run]


def check_api(w, sid):
    farm = w.farm
    st, b = farm.get_json("/api/budgets", token=farmtest.VIEWER_TOKEN)
    assert st == 200, (st, b)
    assert b["session_usd"] == 0.001 and b["source"]["session_usd"] == "config", b
    assert b["repo_daily_usd"] == 0 and b["daily_usd"] == 0, b
    assert abs(b["spend"]["daily_usd"] - gr.CALL_COST) < 1e-9, b
    assert abs(b["spend"]["repos"][w.repo] - gr.CALL_COST) < 1e-9, b
    assert len(b["spend"]["day"]) == 10, b
    assert farm.get_json("/api/budgets", token=None)[0] == 401

    # only an admin changes them; nothing changes on a refusal
    assert patch(farm, {"session_usd": 1}, token=farmtest.VIEWER_TOKEN)[0] == 403
    assert patch(farm, {"session_usd": 1}, token=None)[0] == 401
    for body, field in (({"session_usd": -1}, "session_usd"),
                        ({"daily_usd": "ten"}, "daily_usd"),
                        ({"repo_daily_usd": 1e12}, "repo_daily_usd"),
                        ({"session_usd": 1, "weekly_usd": 3}, ""),
                        ({}, None), (b"not json", None), (b"[1]", None)):
        st, r = patch(farm, body)
        assert st == 400, (body, st, r)
        assert r.get("error"), r
        if field is not None:
            assert r.get("field") == field, (body, r)
    st, b = farm.get_json("/api/budgets")
    assert b["session_usd"] == 0.001 and b["source"]["session_usd"] == "config", b

    # the CLI: a viewer reads, a bad amount is refused before it is sent
    rc, out, err = cli(farm, "budget", token=farmtest.VIEWER_TOKEN)
    assert rc == 0, (rc, out, err)
    assert "session_usd" in out and "$0.001" in out and "(config)" in out, out
    assert w.repo in out, out
    rc, out, err = cli(farm, "budget", "--session-usd", "1", token=farmtest.VIEWER_TOKEN)
    assert rc != 0, (rc, out, err)
    rc, out, err = cli(farm, "budget", "--session-usd", "-1")
    assert rc == 2 and "--session-usd" in err, (rc, out, err)
    rc, out, err = cli(farm, "budget", "--clear", "weekly")
    assert rc == 2, (rc, out, err)


def test_budgets_live():
    key = gr.KEY_PREFIX + secrets.token_hex(16)
    fake = gr.FakeModel(key)
    try:
        gr.setup_fake(fake)
        with gr.world(key, fake, budgets={"session_usd": 0.001}) as w:
            # 1. the config's budget stops the second call
            n = w.open_issue("Write the model file", "Please write MODEL.txt.")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="a draft PR")
            sid = s["id"]
            assert s["state"] == "review" and s["pr_draft"] == 1, s
            assert [c["outcome"] for c in calls_of(w, sid, 1)] == ["ok", "budget"]

            # 2. the API and the CLI
            check_api(w, sid)

            # 3. raised live: the retry's calls pass
            rc, out, err = cli(w.farm, "budget", "--session-usd", "1", "--daily-usd", "5")
            assert rc == 0, (rc, out, err)
            assert "$1 " in out and "(live)" in out, out
            st, b = w.farm.get_json("/api/budgets")
            assert b["session_usd"] == 1 and b["source"]["session_usd"] == "live", b
            assert b["daily_usd"] == 5 and b["source"]["daily_usd"] == "live", b
            rc, out, err = cli(w.farm, "budget", "--clear", "daily")
            assert rc == 0 and "(live)" in out, (rc, out, err)
            st, b = w.farm.get_json("/api/budgets")
            assert b["daily_usd"] == 0 and b["source"]["daily_usd"] == "config", b
            comment(w, n, "/farm retry")
            s = w.wait_session(n, lambda s: s["runs"] >= 2 and s["state"] in FINAL,
                               what="the retried run")
            assert [c["outcome"] for c in calls_of(w, sid, 2)] == ["ok", "ok"]
            fin = [b for _, _, k, b in farmtest.session_events(w.farm, sid)
                   if k == "run_finished" and b.get("run") == 2]
            assert fin and fin[-1].get("reason") != "budget", fin
            assert abs(s["cost"] - 3 * gr.CALL_COST) < 1e-9, s

            # 4. lowered live below the session's spend: the next call is refused
            st, b = patch(w.farm, {"session_usd": 0.002})
            assert st == 200 and b["session_usd"] == 0.002, (st, b)
            comment(w, n, "/farm retry")
            s = w.wait_session(n, lambda s: s["runs"] >= 3 and s["state"] in FINAL,
                               what="the run after the budget was lowered")
            calls = calls_of(w, sid, 3)
            assert calls and calls[0]["outcome"] == "budget", calls
            reqs = [r for r in fake.requests() if r["path"].startswith("/v1/")]
            assert len(reqs) == 3, reqs  # runs 1 and 2 only
            # a revision the budget stops before it changed anything goes back
            # to review "unchanged", but says "budget", not the agent's exit
            # status, and its comment names the budget and how to go on
            assert s["state"] == "review", s
            fin = [b for _, _, k, b in farmtest.session_events(w.farm, sid)
                   if k == "run_finished" and b.get("run") == 3]
            assert fin and fin[-1]["outcome"] == "unchanged", fin
            assert fin[-1].get("reason") == "budget", fin
            key3 = "s%d:r3:unchanged" % sid

            def unchanged_comment():
                for c in w.state()["comments"]:
                    if key3 in c["body"]:
                        return c["body"].replace("\\_", "_").replace("\\`", "`")
                return None
            text = farmtest.wait_for(unchanged_comment, 30, "run 3's comment")
            assert "budgets.session_usd" in text, text
            assert "farm budget --session-usd" in text, text
            assert "/farm retry" in text, text
            assert "exited with status" not in text, text

            # 5. /metrics, from the store
            m = w.farm.metric
            model = gr.MODEL
            assert m("farm_model_tokens_total", model=model, kind="input") == 3 * 120
            assert m("farm_model_tokens_total", model=model, kind="output") == 3 * 42
            assert m("farm_model_tokens_total", model=model, kind="cache_read") == 3 * 3000
            assert m("farm_model_tokens_total", model=model, kind="cache_write") == 3 * 500
            assert abs(m("farm_model_cost_usd_total", model=model) - 3 * gr.CALL_COST) < 1e-9
            assert m("farm_model_calls_total", model=model, outcome="ok", status="200") == 3
            assert m("farm_model_calls_total", model=model, outcome="budget", status="400") == 2
            assert m("farm_model_call_duration_seconds_count") == 3
            assert m("farm_model_call_duration_seconds_bucket", le="+Inf") == 3
            assert m("farm_model_ttfb_seconds_count") == 3
            page = w.farm.metrics()
            assert "# TYPE farm_model_call_duration_seconds histogram" in page, page
            assert "# TYPE farm_model_ttfb_seconds histogram" in page, page
    finally:
        fake.stop()


if __name__ == "__main__":
    farmtest.run([test_budgets_live])
