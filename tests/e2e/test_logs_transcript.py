"""End-to-end: `farm logs` prints an agent's transcript (agent_message,
tool_call, tool_result, file_change, command: farm/run/transcript.c, logged
by farm/run/pipeline_exec.c) in words, like the session page's narrative: a
tool call's result names the call, a command its exit status. The session is
the UI tests' seeded claude run (tests/ui/seed.py transcript), written
through farm-store-probe into a farm that only takes in work."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ui"))
import farmtest  # noqa: E402
import seed  # noqa: E402


def test_logs_tell_the_transcript_in_words():
    with farmtest.Farm(serve_args=["--intake-only"]) as farm:
        sid = seed.seed_transcript(farm.data_dir)["transcript"]
        env = dict(farm.env, FARM_TOKEN=farmtest.ADMIN_TOKEN)
        p = subprocess.run([farmtest.FARM_BIN, "logs", str(sid), "--server",
                            "http://127.0.0.1:%d" % farm.port], capture_output=True, timeout=60, env=env)
        out = p.stdout.decode()
        assert p.returncode == 0, (p.returncode, out, p.stderr.decode())
        want = [
            r"agent_message +the agent says: I'll make the parser split on tabs as well as spaces\.$",
            r"tool_call +calls Edit src/parser\.c$",
            r"tool_result +Edit src/parser\.c succeeded$",
            r"file_change +changed src/parser\.c$",
            r"tool_result +Bash make test failed$",
            r"command +ran `make test`: exit 2$",
            r"command +ran `make test TESTS=test_tabs`: exit 0$",
            r"agent_message +the agent says: Done: the parser accepts tabs; test_tabs passes\.$",
        ]
        lines = out.splitlines()
        at = 0
        for w in want:  # in this order
            k = next((i for i in range(at, len(lines)) if re.search(w, lines[i])), None)
            assert k is not None, (w, out)
            at = k + 1


if __name__ == "__main__":
    farmtest.run([test_logs_tell_the_transcript_in_words])
