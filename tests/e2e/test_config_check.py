"""test_config_check - `farm config check` on the real binary: a good config
prints a summary and exits 0; a bad one lists every problem by its key on
stderr, one per line, and exits 1; a literal secret is refused without being
echoed; a server beyond loopback without secrets and tokens is refused; a
data_dir that cannot be created (under /proc, in place of a file) is refused,
and checking one that can creates nothing.

Python 3 standard library only.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

FARM_BIN = os.environ.get("FARM_BIN", "farm")


class ConfigCheck(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="farm-e2e-config-")
        self.env = dict(os.environ)
        self.env["FARM_E2E_GH_TOKEN"] = "ghp_e2e_token_value_0123456789"
        self.env["FARM_E2E_SECRET"] = "webhook-secret-e2e-0123456789"
        self.env.pop("FARM_E2E_UNSET", None)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, cfg=None, raw=None, args=None):
        argv = [FARM_BIN, "config", "check"]
        if cfg is not None or raw is not None:
            path = os.path.join(self.dir, "farm.json")
            with open(path, "w") as f:
                f.write(raw if raw is not None else json.dumps(cfg))
            argv += ["--config", path]
        if args:
            argv = [FARM_BIN, "config"] + args
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_defaults_are_fine(self):
        rc, out, err = self.check()
        self.assertEqual(rc, 0, err)
        self.assertIn("127.0.0.1:8080", out)
        self.assertIn("repos:    0", out)

    def test_good_config_prints_a_summary(self):
        cfg = {
            "listen": "127.0.0.1:0",
            "github": {"token": "env:FARM_E2E_GH_TOKEN", "webhook_secret": "env:FARM_E2E_SECRET"},
            "repos": [{"name": "octo/app", "tracker": "github",
                       "clone_url": "https://github.com/octo/app.git",
                       "trigger": {"label": "agent"}}],
        }
        rc, out, err = self.check(cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("ok", out)
        self.assertIn("github octo/app", out)
        self.assertIn("repos:    1", out)
        self.assertIn("trackers: github", out)
        self.assertNotIn("ghp_e2e_token_value", out + err)

    def test_every_problem_is_named_one_per_line(self):
        cfg = {
            "lisen": "x",
            "scaling": {"max_agents": "four"},
            "github": {"token": "ghp_literal_0123456789", "webhook_secret": "env:FARM_E2E_UNSET"},
            "repos": [
                {"name": "octo/app", "tracker": "github", "clone_url": "x"},
                {"name": "octo/lib", "tracker": "azure", "clone_url": "x"},
                {"name": "octo/x", "tracker": "github", "clone_url": "x",
                 "trigger": {"label": 3}},
            ],
        }
        rc, out, err = self.check(cfg)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        lines = err.strip().split("\n")
        expected = [
            "lisen: unknown key",
            "scaling.max_agents: expected an integer",
            "github.token: secrets must not be written in the config file",
            "github.webhook_secret: environment variable FARM_E2E_UNSET is not set",
            "repos[1].tracker: \"azure\" needs an \"azure\" section",
            "repos[2].trigger.label: expected a string",
        ]
        for e in expected:
            self.assertTrue(any(line.startswith(e) for line in lines), "%r not in %r" % (e, lines))
        self.assertEqual(len(lines), len(expected), lines)
        self.assertNotIn("ghp_literal_0123456789", err)

    def test_malformed_json_and_missing_file(self):
        rc, _, err = self.check(raw='{"listen": }')
        self.assertEqual(rc, 1)
        self.assertIn("not valid JSON", err)
        rc, _, err = self.check(args=["check", "--config", os.path.join(self.dir, "nope.json")])
        self.assertEqual(rc, 1)
        self.assertIn("cannot read", err)

    def test_beyond_loopback_needs_secrets_and_tokens(self):
        rc, _, err = self.check({"listen": "0.0.0.0:8080", "github": {}})
        self.assertEqual(rc, 1)
        self.assertIn("github.webhook_secret: required when listening beyond loopback", err)
        self.assertIn("tokens: at least one API token is required", err)
        secret_file = os.path.join(self.dir, "admin.token")
        with open(secret_file, "w") as f:
            f.write("admin-token-e2e-0123456789abcdef\n")
        rc, out, err = self.check({
            "listen": "0.0.0.0:8080",
            "github": {"webhook_secret": "env:FARM_E2E_SECRET"},
            "tokens": [{"name": "ops", "token": "file:" + secret_file, "role": "admin"}],
        })
        self.assertEqual(rc, 0, err)
        self.assertIn("beyond loopback", out)

    def test_data_dir_must_be_creatable(self):
        rc, out, err = self.check({"data_dir": "/proc/farmdata"})
        self.assertEqual(rc, 1, out)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("data_dir: cannot be created: mkdir /proc/farmdata: "), err)
        taken = os.path.join(self.dir, "a-file")
        open(taken, "w").close()
        rc, out, err = self.check({"data_dir": taken})
        self.assertEqual(rc, 1)
        self.assertIn("data_dir: %s exists and is not a directory" % taken, err)
        rc, out, err = self.check({"data_dir": os.path.join(taken, "data")})
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("data_dir: "), err)
        fine = os.path.join(self.dir, "new", "data")
        rc, out, err = self.check({"data_dir": fine})
        self.assertEqual(rc, 0, err)
        self.assertIn("data_dir: %s" % fine, out)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "new")), "a check creates nothing")

    def test_usage_errors(self):
        rc, _, err = self.check(args=["frobnicate"])
        self.assertEqual(rc, 2)
        self.assertIn("usage:", err)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
