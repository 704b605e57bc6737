"""test_examples - what ships under examples/ and what `cmake --install`
puts in place: examples/production.json passes `farm config check` with the
variables it names set (and names each one that is missing), the systemd
unit runs that check and `farm serve` with the hardening options, and an
install into a temporary prefix has the binary, the guidelines, the
stand-in agent and the examples.

Python 3 standard library only.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

FARM_BIN = os.environ.get("FARM_BIN", "farm")
SOURCE_DIR = os.environ.get("FARM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = os.path.join(SOURCE_DIR, "examples")


def env_names(cfg):
    """Every NAME of an "env:NAME" value in the config."""
    out = set()

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v.startswith("env:"):
            out.add(v[4:])
    walk(cfg)
    return out


class Examples(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(EXAMPLES, "production.json")) as f:
            self.cfg = json.load(f)
        self.names = env_names(self.cfg)
        self.env = {k: v for k, v in os.environ.items() if k not in self.names}

    def check(self, env):
        return subprocess.run([FARM_BIN, "config", "check", "--config",
                               os.path.join(EXAMPLES, "production.json")],
                              env=env, capture_output=True, text=True, timeout=60)

    def test_production_config_passes_with_its_variables_set(self):
        # a GitHub App, Azure DevOps, tokens of each role, an allowlist network policy
        self.assertIn("app_id", self.cfg["github"])
        self.assertIn("app_private_key", self.cfg["github"])
        self.assertIn("azure", self.cfg)
        self.assertEqual({t["role"] for t in self.cfg["tokens"]}, {"viewer", "member", "admin"})
        self.assertEqual(self.cfg["sandbox"]["network"], "allowlist")
        self.assertTrue(self.cfg["sandbox"]["allow_hosts"])
        self.assertGreaterEqual(len(self.names), 8)
        env = dict(self.env)
        for i, n in enumerate(sorted(self.names)):
            env[n] = "value-for-%s-%02d-0123456789abcdef" % (n.lower(), i)
        p = self.check(env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("production.json: ok", p.stdout)
        self.assertIn("beyond loopback", p.stdout)
        self.assertIn("github contoso/web", p.stdout)
        self.assertIn("azure contoso/platform/billing", p.stdout)
        # no secret value is echoed
        for n in self.names:
            self.assertNotIn(env[n], p.stdout + p.stderr)

    def test_each_missing_variable_is_named(self):
        env = dict(self.env)
        missing = sorted(self.names)[0]
        for n in self.names:
            if n != missing:
                env[n] = "value-0123456789abcdef-" + n
        p = self.check(env)
        self.assertEqual(p.returncode, 1)
        self.assertIn("environment variable %s is not set" % missing, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)

    def test_systemd_unit(self):
        self.check_unit("farm.service", "serve")

    def test_systemd_worker_unit(self):
        self.check_unit("farm-worker.service", "worker")

    def check_unit(self, unit, role):
        with open(os.path.join(EXAMPLES, unit)) as f:
            text = f.read()
        keys = {}
        for line in text.splitlines():
            m = re.match(r"^([A-Za-z]+)=(.*)$", line)
            if m:
                keys.setdefault(m.group(1), []).append(m.group(2))
        self.assertRegex(keys["ExecStart"][0], r"/farm %s --config /etc/farm/farm\.json$" % role)
        self.assertRegex(keys["ExecStartPre"][0], r"/farm config check --config /etc/farm/farm\.json$")
        for k, v in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                     ("PrivateTmp", "yes"), ("User", "farm"), ("StateDirectory", "farm")]:
            self.assertEqual(keys.get(k), [v], k)
        self.assertEqual(keys["CapabilityBoundingSet"], [""])
        # bubblewrap needs namespaces: they must not be restricted
        self.assertNotIn("RestrictNamespaces", keys)
        # the env file names every variable the production config reads
        for n in self.names:
            self.assertIn(n, text)
        if shutil.which("systemd-analyze"):
            # every directive known and well-formed; the binary exists only once installed
            p = subprocess.run(["systemd-analyze", "verify", os.path.join(EXAMPLES, unit)],
                               capture_output=True, text=True, timeout=60)
            bad = [l for l in (p.stdout + p.stderr).splitlines()
                   if l.startswith(unit + ":") and "is not executable" not in l]
            self.assertEqual(bad, [])

    def test_cmake_install(self):
        build = os.path.dirname(os.path.abspath(FARM_BIN))
        if not shutil.which("cmake") or not os.path.exists(os.path.join(build, "cmake_install.cmake")):
            self.skipTest("no cmake build directory beside FARM_BIN")
        prefix = tempfile.mkdtemp(prefix="farm-e2e-install-")
        try:
            p = subprocess.run(["cmake", "--install", build, "--prefix", prefix],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            for rel in ["bin/farm", "share/farm/guidelines/coding.md",
                        "share/farm/agents/farm-standin-agent", "share/doc/farm/README.md",
                        "share/doc/farm/examples/farm.service",
                        "share/doc/farm/examples/farm-worker.service",
                        "share/doc/farm/examples/production.json"]:
                self.assertTrue(os.path.isfile(os.path.join(prefix, rel)), rel)
            for rel in ["bin/farm", "share/farm/agents/farm-standin-agent"]:
                self.assertTrue(os.access(os.path.join(prefix, rel), os.X_OK), rel)
            # the web UI is inside the binary: no asset directory is needed
            out = subprocess.run([os.path.join(prefix, "bin/farm"), "help"], capture_output=True,
                                 text=True, timeout=30)
            self.assertIn("digest", out.stdout + out.stderr)
        finally:
            shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
