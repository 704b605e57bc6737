"""test_nodes - the farm processes sharing a store, seen by their heartbeats:
a serving farm's scheduler beats into the store's node table, GET
/api/nodes (viewer token) and `farm nodes` list it with its host, pid,
role and slots; a clean stop removes its row, a SIGKILL leaves one whose
heartbeat ages. Waits are on the farm's answers, never on a sleep.
"""
import json
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
from farmtest import VIEWER_TOKEN, Farm  # noqa: E402

WAIT = 60.0


def new_farm(**extra):
    return Farm(extra=dict({
        "scaling": {"max_agents": 3, "max_per_repo": 2, "min_warm": 0, "idle_timeout_s": 60},
        "tokens": [{"name": "viewer", "token": "env:FARM_TEST_VIEWER", "role": "viewer"},
                   {"name": "admin", "token": "env:FARM_TEST_ADMIN", "role": "admin"}]}, **extra))


def nodes(farm):
    s, body = farm.get_json("/api/nodes", token=VIEWER_TOKEN)
    assert s == 200, (s, body)
    return body["nodes"]


def test_serving_farm_is_a_node():
    farm = new_farm()
    try:
        farm.start()
        s, _, _ = farm.request("GET", "/api/nodes")
        assert s == 401, s
        farmtest.wait_for(lambda: len(nodes(farm)) == 1, WAIT, "the farm's first heartbeat")
        n = nodes(farm)[0]
        assert n["pid"] == farm.proc.pid, n
        assert n["host"] == socket.gethostname(), n
        assert n["role"] == "serve" and n["slots"] == 3 and n["running"] == 0, n
        assert n["beat_age_ms"] >= 0 and n["beat_ms"] >= n["started_ms"], n

        env = dict(farm.env, FARM_TOKEN=VIEWER_TOKEN)
        p = subprocess.run([farmtest.FARM_BIN, "nodes", "--server",
                            "http://127.0.0.1:%d" % farm.port], capture_output=True, env=env,
                           timeout=60)
        out = p.stdout.decode()
        assert p.returncode == 0, (p.returncode, out, p.stderr.decode())
        assert "HOST" in out and socket.gethostname() in out and str(farm.proc.pid) in out, out
        assert n["id"] in out, out
        p = subprocess.run([farmtest.FARM_BIN, "nodes", "--json", "--server",
                            "http://127.0.0.1:%d" % farm.port], capture_output=True, env=env,
                           timeout=60)
        assert json.loads(p.stdout)["nodes"][0]["id"] == n["id"], p.stdout

        # a clean stop takes the row away; a restarted farm is a new node
        old = n["id"]
        farm.stop()
        farm.start()
        farmtest.wait_for(lambda: [x["id"] for x in nodes(farm)] not in ([], [old]), WAIT,
                          "the restarted farm's heartbeat")
        assert [x["id"] for x in nodes(farm)] != [old]
        assert old not in [x["id"] for x in nodes(farm)]

        # a killed farm leaves its row behind, its heartbeat ageing
        killed = nodes(farm)[0]["id"]
        farm.stop(sig=signal.SIGKILL)
        farm.start()
        farmtest.wait_for(lambda: len(nodes(farm)) == 2, WAIT, "the new farm next to the dead one")
        dead = [x for x in nodes(farm) if x["id"] == killed][0]
        assert dead["beat_age_ms"] >= 0, dead
    finally:
        farm.kill()


def put_scaling(farm, **change):
    s, _, out = farm.request("PUT", "/api/scaling", body=json.dumps(change).encode(),
                             headers={"Content-Type": "application/json",
                                      "Authorization": "Bearer " + farmtest.ADMIN_TOKEN})
    assert s == 200, (s, out)


def test_worker_slots_cap_one_node():
    """worker.slots caps this node; a live max_agents below it caps it too."""
    farm = new_farm(worker={"slots": 2})
    try:
        farm.start()
        farmtest.wait_for(lambda: [x["slots"] for x in nodes(farm)] == [2], WAIT,
                          "the node's heartbeat with worker.slots 2")
        put_scaling(farm, max_agents=1, max_per_repo=1)
        farmtest.wait_for(lambda: [x["slots"] for x in nodes(farm)] == [1], WAIT,
                          "the node capped by the live max_agents 1")
        put_scaling(farm, max_agents=5)
        farmtest.wait_for(lambda: [x["slots"] for x in nodes(farm)] == [2], WAIT,
                          "worker.slots 2 again below max_agents 5")
    finally:
        farm.kill()


if __name__ == "__main__":
    farmtest.run([test_serving_farm_is_a_node, test_worker_slots_cap_one_node])
