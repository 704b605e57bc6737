#!/usr/bin/env python3
"""test_image_run.py - repos[].image end to end: `farm serve` against the fake
GitHub, a real bare remote and an agent given as agent.command, on an OCI
image built here from Debian's busybox-static (tests/support/make_oci.py, no
registry).

Cases: the agent inside the image sees the image's /bin (busybox, the file
of its first layer, not the one its second layer whited out) and not the
host's (no /usr/bin/python3, no /usr/bin/git); the test command runs in the
image too; the session log has one "image" event with the image's digest;
`farm image ls` lists it and `farm image prune` keeps it while configured.
A corrupt image (a layer whose bytes do not match its digest) fails the
session with a reason naming the image and the problem, and leaves nothing
in the cache.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import farmtest  # noqa: E402
import repos  # noqa: E402

FINAL = ("review", "failed", "done", "cancelled")
HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_OCI = os.path.join(HERE, "..", "support", "make_oci.py")

AGENT = r"""
echo "probe busybox=$(test -x /bin/busybox && echo yes || echo no)"
echo "probe host-python=$(test -e /usr/bin/python3 && echo yes || echo no)"
echo "probe host-git=$(test -e /usr/bin/git && echo yes || echo no)"
echo "probe gone=$(test -e /etc/gone.txt && echo yes || echo no)"
echo "probe hello=$(cat /etc/hello.txt)"
echo "hello, world" > greeting.txt
"""


def make_image(tmp, bad=None):
    out = os.path.join(tmp, "image-bad" if bad else "image")
    args = [sys.executable, MAKE_OCI, out, "--tag", "1"] + (["--bad", bad] if bad else [])
    digest = subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
    os.chmod(tmp, 0o711)
    return out, digest


def world(image_ref):
    return farmtest.GitHubWorld(
        repo_extra={"image": image_ref},
        extra={"agent": {"command": ["/bin/sh", "-c", AGENT]}})


def farm_cli(w, *args):
    p = subprocess.run([farmtest.FARM_BIN] + list(args) + ["--config", w.farm.config_path],
                       capture_output=True, text=True, env=w.farm.env, timeout=60)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p.stdout


def agent_lines(w, sid, step="agent"):
    return [e[3].get("line", "") for e in farmtest.session_events(w.farm, sid, "output")
            if e[3].get("step") == step]


def test_agent_sees_the_image_not_the_host():
    if not os.access("/bin/busybox", os.X_OK):
        print("# SKIP busybox-static is not installed (scripts/install-deps --test)")
        return
    import tempfile
    tmp = tempfile.mkdtemp(prefix="farm-e2e-image-")
    try:
        layout, digest = make_image(tmp)
        ref = "oci:%s:1" % layout
        with world(ref) as w:
            n = w.open_issue("Fix the greeting", "Please fix the greeting.\n")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="the run's end")
            sid = s["id"]
            lines = agent_lines(w, sid)
            probes = dict(l.split(" ", 1)[1].split("=", 1) for l in lines
                          if l.startswith("probe "))
            assert probes.get("busybox") == "yes", lines
            assert probes.get("host-python") == "no", lines
            assert probes.get("host-git") == "no", lines
            assert probes.get("gone") == "no", lines
            assert probes.get("hello") == "hello from the image", lines
            # the test command ran in the image too, and passed
            assert [l for l in agent_lines(w, sid, "test") if "greeting ok" in l], \
                agent_lines(w, sid, "test")
            assert s["state"] == "review", s
            ev = farmtest.session_events(w.farm, sid, "image")
            assert len(ev) == 1, ev
            assert ev[0][3]["image"] == ref and ev[0][3]["digest"] == digest, ev

            listed = json.loads(farm_cli(w, "image", "ls", "--json"))
            assert [x["digest"] for x in listed] == [digest], listed
            assert listed[0]["source"] == ref and listed[0]["size"] > 1000000, listed
            out = farm_cli(w, "image", "prune")
            assert "removed 0 images" in out, out
            doctor = subprocess.run([farmtest.FARM_BIN, "doctor", "--config",
                                     w.farm.config_path], capture_output=True, text=True,
                                    env=w.farm.env, timeout=60).stdout
            assert "1 unpacked" in doctor and ref + " unpacked" in doctor, doctor
            out = farm_cli(w, "image", "prune", "--older-than", "0", "--dry-run")
            assert "would remove 1 image" in out, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_corrupt_image_fails_the_session_clearly():
    if not os.access("/bin/busybox", os.X_OK):
        print("# SKIP busybox-static is not installed (scripts/install-deps --test)")
        return
    import tempfile
    tmp = tempfile.mkdtemp(prefix="farm-e2e-image-")
    try:
        layout, _ = make_image(tmp, bad="wrong-digest")
        ref = "oci:%s:1" % layout
        with world(ref) as w:
            n = w.open_issue("Fix the greeting", "Please fix the greeting.\n")
            s = w.wait_session(n, lambda s: s["state"] in FINAL, what="the run's end")
            assert s["state"] == "failed", s
            text = json.dumps(s) + json.dumps(farmtest.session_events(w.farm, s["id"]))
            assert ref in text and "does not match its digest" in text, text[-2000:]
            assert not agent_lines(w, s["id"]), "the agent ran"
            listed = json.loads(farm_cli(w, "image", "ls", "--json"))
            assert listed == [], listed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    farmtest.run([test_agent_sees_the_image_not_the_host,
                  test_corrupt_image_fails_the_session_clearly])
